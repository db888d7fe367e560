//! The compiler: desired state in, one table generation out.
//!
//! `compile` is a pure function of the desired state and the node it runs on
//! (its identity and the ports its configuration opened). It never reads the
//! clock, the store or the network, so the same state gives the same tables
//! on every node and after every restart.
//!
//! What it compiles today: Networks become routing domains (network
//! "default" always exists, id 0; the others follow in name order so ids are
//! stable), Interfaces configure the node's ports by name (network, MAC, MTU,
//! addresses, hence connected and local routes), Routes and Neighbours fill
//! each network's FIBs and static neighbour table, and pods' Multus
//! attachments add host routes to their addresses in the attachments'
//! networks ([`crate::multinet`]). Services and
//! EndpointSlices (with the node's Node object for its zone) become the
//! service table ([`ServiceCompiler`], docs/services.md). NetworkPolicies
//! and the cluster-wide policy kinds, with the Pods, Namespaces and Nodes
//! they select, become the policy table ([`crate::policy`]); Pods'
//! bandwidth annotations and Bandwidth objects the per-pod limits
//! ([`crate::bandwidth`]); NetworkServices, NetworkServiceEndpoints and
//! Chains the service-chain table ([`crate::chains`]). The other Sluice kinds are kept in the desired
//! state and compiled by the stages that enforce them, as those land.
//!
//! [`compile`] builds everything from scratch; [`Compiler`] keeps what it
//! needs between batches and recompiles only what a batch touched.
//!
//! An Interface must name a port this node opened, with the same backend:
//! ports are hardware of the node, opened from its configuration at start;
//! the API configures them.

use crate::bandwidth::compile_bandwidth;
use crate::chains::{ChainCompiler, CHAIN_INPUTS};
use crate::model::sluice::RouteType;
use crate::model::{DesiredState, Kind, Object, ObjectKey, StoredObject, DEFAULT_NETWORK};
use crate::multinet::{self, AttachmentRoutes};
use crate::policy::compile_all_policy;
use crate::services::{self, NodeConfig, PreparedServices, ServiceCompiler};
use core::fmt;
use ipnet::IpNet;
use sluice_dataplane::tables::bandwidth::BandwidthTable;
use sluice_dataplane::tables::policy::PolicyTable;
use sluice_dataplane::tables::{
    NextHopSpec, NodeIdentity, PortId, RouteTarget, Tables, TablesBuilder,
};
use std::collections::BTreeMap;

/// A port this node opened, in port-id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortDecl {
    pub name: String,
    /// The backend spec it was opened with, e.g. `mem:a`.
    pub backend: String,
}

/// kube-proxy's node settings for the Service rules (sluiced's
/// `[services]` table).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSettings {
    /// Pod CIDRs: sources in them are pods (the local traffic detector).
    pub cluster_cidrs: Vec<IpNet>,
    /// Service CIDRs: unallocated addresses in them are dropped.
    pub service_cidrs: Vec<IpNet>,
    /// `--nodeport-addresses`; none of a family: every node address.
    pub node_port_addresses: Vec<IpNet>,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
}

/// What the compiler knows of the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeContext {
    pub node: NodeIdentity,
    pub ports: Vec<PortDecl>,
    pub services: ServiceSettings,
}

/// A state that cannot be compiled on this node, naming the object and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub object: String,
    pub field: String,
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.field, self.message)
    }
}

impl std::error::Error for CompileError {}

fn err(object: impl fmt::Display, field: &str, message: impl Into<String>) -> CompileError {
    CompileError {
        object: object.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

/// The MTU a port gets when no Interface configures it.
const UNCONFIGURED_MTU: u16 = 1500;

/// Compiles `state` for the node described by `ctx`, from scratch.
pub fn compile(state: &DesiredState, ctx: &NodeContext) -> Result<Tables, CompileError> {
    Ok(Compiler::new(state, ctx.clone())?.1)
}

/// The kinds the policy table depends on.
const POLICY_INPUTS: &[Kind] = &[
    Kind::NetworkPolicy,
    Kind::AdminNetworkPolicy,
    Kind::BaselineAdminNetworkPolicy,
    Kind::ClusterNetworkPolicy,
    Kind::Pod,
    Kind::Namespace,
    Kind::Node,
    // MultiNetworkPolicy: per secondary network, which the definitions
    // and Networks (their ids) decide.
    Kind::MultiNetworkPolicy,
    Kind::NetworkAttachmentDefinition,
    Kind::Network,
];

/// The kinds whose changes rebuild the routing part of the tables (ports,
/// networks, FIBs).
/// Pods' attachments are routing input too, compared pod by pod
/// ([`Compiler::prepare`]).
const NETWORK_KINDS: &[Kind] = &[
    Kind::Network,
    Kind::Interface,
    Kind::Route,
    Kind::Neighbour,
    Kind::NetworkAttachmentDefinition,
];

/// The node settings the Service rules run with: the configuration's
/// `[services]` settings and node identity, with the zone of the Node
/// object named after this node when the state has one (its
/// `topology.kubernetes.io/zone` label, as kube-proxy reads it), else the
/// configured zone. The node's primary address of each family is the first
/// configured address of that family.
pub fn service_node(state: &DesiredState, ctx: &NodeContext) -> NodeConfig {
    let zone = services::node_zone(state, &ctx.node.name)
        .or_else(|| Some(ctx.node.zone.clone()).filter(|z| !z.is_empty()));
    let mut primary_ips = Vec::new();
    for ip in &ctx.node.addresses {
        if !primary_ips
            .iter()
            .any(|p: &std::net::IpAddr| p.is_ipv4() == ip.is_ipv4())
        {
            primary_ips.push(*ip);
        }
    }
    NodeConfig {
        name: ctx.node.name.clone(),
        zone,
        primary_ips,
        local_ips: ctx.node.addresses.clone(),
        cluster_cidrs: ctx.services.cluster_cidrs.clone(),
        service_cidrs: ctx.services.service_cidrs.clone(),
        node_port_addresses: ctx.services.node_port_addresses.clone(),
        masquerade_all: ctx.services.masquerade_all,
    }
}

/// The compiler with what it keeps between generations, so that a change
/// recompiles what depends on it:
///
/// - a change to Networks, Interfaces, Routes, Neighbours or
///   NetworkAttachmentDefinitions, or to a pod's attachment routes
///   ([`crate::multinet`]), rebuilds the ports and every network's FIBs
///   (the routing part); otherwise the last generation's networks are
///   reused (their FIBs are shared `Arc`s);
/// - a change to Services or EndpointSlices recompiles those Services only
///   ([`ServiceCompiler`]), into a clone of the last service table;
/// - a change to the node's Node object that changes its zone rebuilds the
///   service table from scratch (every Service's topology depends on it);
/// - other kinds are not compiled yet: their changes reuse everything.
///
/// [`prepare`](Compiler::prepare) does the work that can fail without
/// changing the compiler; [`apply`](Compiler::apply) installs it.
pub struct Compiler {
    ctx: NodeContext,
    /// The routing part of the last generation (its service table unused).
    base: Tables,
    /// The pods' multi-network attachment routes the routing part holds.
    attachments: AttachmentRoutes,
    services: ServiceCompiler,
    /// Per-pod limits; recompiled when Pods or Bandwidths change, carrying
    /// unchanged limiters (and their state) over.
    bandwidth: BandwidthTable,
    /// Policy, every network's; recompiled when a policy or what policies
    /// select (Pods, Namespaces, Nodes, and for MultiNetworkPolicy the
    /// definitions and Networks) changes.
    policy: PolicyTable,
    /// Service chains; recompiled when their kinds (or the pods and ports
    /// they name) change.
    chains: ChainCompiler,
}

/// A compile that [`Compiler::prepare`] checked, ready to apply.
pub struct PreparedCompile {
    /// New routing tables, when routing kinds changed.
    base: Option<Tables>,
    /// The attachment routes they hold, when they changed.
    attachments: Option<AttachmentRoutes>,
    services: PreparedServiceChange,
    bandwidth: Option<BandwidthTable>,
    policy: Option<PolicyTable>,
    chains: Option<ChainCompiler>,
}

enum PreparedServiceChange {
    None,
    Incremental(PreparedServices),
    Full(Box<ServiceCompiler>),
}

impl PreparedCompile {
    /// Whether the service table is rebuilt from scratch.
    pub fn rebuilds_services(&self) -> bool {
        matches!(self.services, PreparedServiceChange::Full(_))
    }

    /// Whether the routing tables are rebuilt.
    pub fn rebuilds_routing(&self) -> bool {
        self.base.is_some()
    }
}

impl Compiler {
    /// Compiles `state` from scratch; returns the compiler and the tables.
    pub fn new(state: &DesiredState, ctx: NodeContext) -> Result<(Compiler, Tables), CompileError> {
        let attachments = multinet::all_routes(state, &ctx.node.name)?;
        let base = compile_routing(state, &ctx, &attachments)?;
        let services = ServiceCompiler::full(state, service_node(state, &ctx))?;
        let bandwidth = compile_bandwidth(state, &BandwidthTable::default())?;
        let policy = compile_all_policy(state, &ctx.node.addresses, &network_names(&base));
        let chains = ChainCompiler::default().compile(state, &base)?;
        let mut tables = base.clone();
        tables.services = services.table().clone();
        tables.bandwidth = bandwidth.clone();
        tables.policy = policy.clone();
        tables.chains = chains.table().clone();
        Ok((
            Compiler {
                ctx,
                base,
                attachments,
                services,
                bandwidth,
                policy,
                chains,
            },
            tables,
        ))
    }

    pub fn context(&self) -> &NodeContext {
        &self.ctx
    }

    /// The Service part, for inspection.
    pub fn services(&self) -> &ServiceCompiler {
        &self.services
    }

    /// Prepares the compile of `state`, which differs from the state last
    /// compiled by the objects `changed`.
    pub fn prepare(
        &self,
        state: &DesiredState,
        changed: &[ObjectKey],
    ) -> Result<PreparedCompile, CompileError> {
        let attachments = self.changed_attachments(state, changed)?;
        let base =
            if attachments.is_some() || changed.iter().any(|k| NETWORK_KINDS.contains(&k.kind)) {
                let routes = attachments.as_ref().unwrap_or(&self.attachments);
                Some(compile_routing(state, &self.ctx, routes)?)
            } else {
                None
            };
        let node_changed = changed.iter().any(|k| k.kind == Kind::Node)
            && service_node(state, &self.ctx) != *self.services.node();
        let services = if node_changed {
            PreparedServiceChange::Full(Box::new(
                self.services
                    .rebuild(state, service_node(state, &self.ctx))?,
            ))
        } else if changed
            .iter()
            .any(|k| matches!(k.kind, Kind::Service | Kind::EndpointSlice))
        {
            PreparedServiceChange::Incremental(self.services.prepare(state, changed)?)
        } else {
            PreparedServiceChange::None
        };
        let bandwidth = if changed
            .iter()
            .any(|k| matches!(k.kind, Kind::Pod | Kind::Bandwidth))
        {
            Some(compile_bandwidth(state, &self.bandwidth)?)
        } else {
            None
        };
        let policy = changed
            .iter()
            .any(|k| POLICY_INPUTS.contains(&k.kind))
            .then(|| {
                let routing = base.as_ref().unwrap_or(&self.base);
                compile_all_policy(state, &self.ctx.node.addresses, &network_names(routing))
            });
        let chains = if base.is_some() || changed.iter().any(|k| CHAIN_INPUTS.contains(&k.kind)) {
            Some(
                self.chains
                    .compile(state, base.as_ref().unwrap_or(&self.base))?,
            )
        } else {
            None
        };
        Ok(PreparedCompile {
            base,
            attachments,
            services,
            bandwidth,
            policy,
            chains,
        })
    }

    /// The pods' attachment routes after `changed`, when they differ from
    /// the last compile's: all of them when an attachment definition or a
    /// routing kind changed, else those of the changed pods.
    fn changed_attachments(
        &self,
        state: &DesiredState,
        changed: &[ObjectKey],
    ) -> Result<Option<AttachmentRoutes>, CompileError> {
        let node = &self.ctx.node.name;
        if changed.iter().any(|k| NETWORK_KINDS.contains(&k.kind)) {
            let all = multinet::all_routes(state, node)?;
            return Ok((all != self.attachments).then_some(all));
        }
        let mut next: Option<AttachmentRoutes> = None;
        for key in changed.iter().filter(|k| k.kind == Kind::Pod) {
            let routes = match state.get(key).map(|s| &s.object) {
                Some(Object::Pod(p)) => multinet::pod_routes(state, key, p, node)?,
                _ => Vec::new(),
            };
            let current = next.as_ref().unwrap_or(&self.attachments);
            if current.get(key).map_or(routes.is_empty(), |r| *r == routes) {
                continue;
            }
            let n = next.get_or_insert_with(|| self.attachments.clone());
            if routes.is_empty() {
                n.remove(key);
            } else {
                n.insert(key.clone(), routes);
            }
        }
        Ok(next)
    }

    /// Installs a prepared compile and returns the new generation's tables.
    pub fn apply(&mut self, prepared: PreparedCompile) -> Tables {
        if let Some(base) = prepared.base {
            self.base = base;
        }
        if let Some(a) = prepared.attachments {
            self.attachments = a;
        }
        match prepared.services {
            PreparedServiceChange::None => {}
            PreparedServiceChange::Incremental(p) => self.services.apply(p),
            PreparedServiceChange::Full(c) => self.services = *c,
        }
        if let Some(b) = prepared.bandwidth {
            self.bandwidth = b;
        }
        if let Some(p) = prepared.policy {
            self.policy = p;
        }
        if let Some(c) = prepared.chains {
            self.chains = c;
        }
        let mut tables = self.base.clone();
        tables.services = self.services.table().clone();
        tables.bandwidth = self.bandwidth.clone();
        tables.policy = self.policy.clone();
        tables.chains = self.chains.table().clone();
        tables
    }
}

/// The networks' names by id, as the routing part numbers them.
fn network_names(routing: &Tables) -> Vec<&str> {
    routing.networks.iter().map(|n| n.name.as_str()).collect()
}

/// The routing part: ports, networks, FIBs, neighbours.
fn compile_routing(
    state: &DesiredState,
    ctx: &NodeContext,
    attachments: &AttachmentRoutes,
) -> Result<Tables, CompileError> {
    let mut b = TablesBuilder::new();
    b.node = ctx.node.clone();

    // Networks: "default" is id 0; the rest in name order.
    let mut networks: BTreeMap<&str, u16> = BTreeMap::new();
    networks.insert(DEFAULT_NETWORK, 0);
    for so in of_kind(state, Kind::Network) {
        if let Object::Network(n) = &so.object {
            let name = n.metadata.name.as_deref().unwrap_or_default();
            if name != DEFAULT_NETWORK {
                let id = b.network(name);
                networks.insert(name, id);
            }
        }
    }
    let network_id = |object: &dyn fmt::Display, name: &str| {
        networks
            .get(name)
            .copied()
            .ok_or_else(|| err(object, "spec.network", format!("no Network named {name:?}")))
    };

    // Interfaces by name, then the node's ports in id order.
    let mut interfaces: BTreeMap<String, &crate::model::Interface> = BTreeMap::new();
    for so in of_kind(state, Kind::Interface) {
        if let Object::Interface(i) = &so.object {
            interfaces.insert(i.metadata.name.clone().unwrap_or_default(), &**i);
        }
    }
    for name in interfaces.keys() {
        if !ctx.ports.iter().any(|p| &p.name == name) {
            let known: Vec<&str> = ctx.ports.iter().map(|p| p.name.as_str()).collect();
            return Err(err(
                format!("Interface {name}"),
                "metadata.name",
                format!(
                    "this node has no port named {name:?} (its ports: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    let mut port_ids: BTreeMap<&str, PortId> = BTreeMap::new();
    for (id, decl) in ctx.ports.iter().enumerate() {
        let id = id as PortId;
        port_ids.insert(&decl.name, id);
        match interfaces.get(&decl.name) {
            None => {
                // Unconfigured: in the default network with no MAC or
                // address, so unicast frames to it are dropped and counted.
                b.port(&decl.name, 0, [0; 6], UNCONFIGURED_MTU);
            }
            Some(i) => {
                let object = format!("Interface {}", decl.name);
                if i.spec.backend != decl.backend {
                    return Err(err(
                        &object,
                        "spec.backend",
                        format!(
                            "the port was opened as {:?}, not {:?}",
                            decl.backend, i.spec.backend
                        ),
                    ));
                }
                let net = network_id(&object, &i.spec.network)?;
                let mtu = u16::try_from(i.spec.mtu())
                    .map_err(|_| err(&object, "spec.mtu", "must fit in 16 bits"))?;
                let pid = b.port(&decl.name, net, i.spec.mac.0, mtu);
                for (k, a) in i.spec.addresses.iter().enumerate() {
                    b.address(pid, a.addr(), a.prefix_len())
                        .map_err(|e| err(&object, &format!("spec.addresses[{k}]"), e.message))?;
                }
            }
        }
    }

    // The builder names a route by its prefix and network; errors are
    // reported against the Route object that declared it.
    let mut route_objects: BTreeMap<String, String> = BTreeMap::new();
    let routes = of_kind(state, Kind::Route);
    for so in routes.chain(of_kind(state, Kind::Neighbour)) {
        match &so.object {
            Object::Route(r) => {
                let object = format!("Route {}", r.metadata.name.as_deref().unwrap_or_default());
                let net = network_id(&object, &r.spec.network)?;
                let target = match r.spec.route_type {
                    RouteType::Blackhole => RouteTarget::Blackhole,
                    RouteType::Unreachable => RouteTarget::Unreachable,
                    RouteType::Prohibit => RouteTarget::Prohibit,
                    RouteType::Unicast => {
                        let mut hops = Vec::with_capacity(r.spec.next_hops.len());
                        for (k, h) in r.spec.next_hops.iter().enumerate() {
                            let port = match &h.interface {
                                None => None,
                                Some(name) => {
                                    Some(*port_ids.get(name.as_str()).ok_or_else(|| {
                                        err(
                                            &object,
                                            &format!("spec.nextHops[{k}].interface"),
                                            format!("this node has no port named {name:?}"),
                                        )
                                    })?)
                                }
                            };
                            hops.push(NextHopSpec {
                                gateway: h.gateway,
                                port,
                            });
                        }
                        RouteTarget::Via(hops)
                    }
                };
                let dest = r.spec.destination;
                route_objects.insert(
                    format!(
                        "route {}/{} in network {}",
                        dest.addr(),
                        dest.prefix_len(),
                        r.spec.network
                    ),
                    object.clone(),
                );
                b.route(net, dest.addr(), dest.prefix_len(), target)
                    .map_err(|e| err(&object, "spec.destination", e.message))?;
            }
            Object::Neighbour(n) => {
                let object = format!(
                    "Neighbour {}",
                    n.metadata.name.as_deref().unwrap_or_default()
                );
                let net = network_id(&object, &n.spec.network)?;
                b.neighbour(net, n.spec.ip, n.spec.mac.0);
            }
            _ => {}
        }
    }
    // Pods' attachments to Networks: host routes in their own network.
    let view = multinet::RoutingView {
        networks: &networks,
        interfaces: &interfaces,
        port_ids: &port_ids,
    };
    route_objects.extend(multinet::install(&mut b, state, attachments, &view)?);
    b.build().map_err(|e| {
        // The builder names routes and ports by prefix and port; map the
        // field onto the API object's spec.
        let field = match e.field.as_str() {
            "nextHops" => "spec.nextHops".to_string(),
            f if f.starts_with("nextHops[") => format!("spec.{f}"),
            "prefix" => "spec.destination".to_string(),
            f => f.to_string(),
        };
        CompileError {
            object: route_objects.remove(&e.object).unwrap_or(e.object),
            field,
            message: e.message,
        }
    })
}

fn of_kind(state: &DesiredState, kind: Kind) -> impl Iterator<Item = &StoredObject> {
    // Without a selector, listing cannot fail.
    state.list(kind, None, None).unwrap_or_default().into_iter()
}

/// The kinds `compile` turns into tables today.
pub const COMPILED_KINDS: &[Kind] = &[
    Kind::Network,
    Kind::Interface,
    Kind::Route,
    Kind::Neighbour,
    Kind::Node,
    Kind::Service,
    Kind::EndpointSlice,
    Kind::NetworkPolicy,
    Kind::AdminNetworkPolicy,
    Kind::BaselineAdminNetworkPolicy,
    Kind::ClusterNetworkPolicy,
    Kind::Pod,
    Kind::Namespace,
    Kind::Bandwidth,
    Kind::NetworkAttachmentDefinition,
    Kind::NetworkService,
    Kind::NetworkServiceEndpoint,
    Kind::Chain,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse_manifests, Change};
    use sluice_dataplane::tables::AdjacencyKind;

    fn ctx() -> NodeContext {
        NodeContext {
            node: NodeIdentity {
                name: "node-a".into(),
                zone: "z1".into(),
                addresses: vec![],
            },
            ports: vec![
                PortDecl {
                    name: "p0".into(),
                    backend: "mem:p0".into(),
                },
                PortDecl {
                    name: "p1".into(),
                    backend: "mem:p1".into(),
                },
            ],
            services: ServiceSettings::default(),
        }
    }

    fn state(yaml: &str) -> DesiredState {
        let mut s = DesiredState::new();
        let batch: Vec<Change> = parse_manifests(yaml)
            .unwrap()
            .into_iter()
            .map(Change::Apply)
            .collect();
        s.apply(&batch).unwrap();
        s
    }

    const BASE: &str = r#"
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: p0}
spec: {backend: "mem:p0", mac: "02:00:00:00:00:01", addresses: ["10.0.0.1/24", "2001:db8::1/64"]}
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: p1}
spec: {backend: "mem:p1", mac: "02:00:00:00:00:02", mtu: 9000, addresses: ["10.0.1.1/24"]}
---
apiVersion: sluice.dev/v1
kind: Route
metadata: {name: to-20}
spec: {destination: 20.0.0.0/8, nextHops: [{gateway: 10.0.1.254}]}
---
apiVersion: sluice.dev/v1
kind: Neighbour
metadata: {name: gw}
spec: {ip: 10.0.1.254, mac: "02:00:00:00:01:fe"}
---
apiVersion: sluice.dev/v1
kind: Route
metadata: {name: bh}
spec: {destination: 40.0.0.0/8, type: Blackhole}
"#;

    #[test]
    fn interfaces_routes_and_neighbours_become_tables() {
        let t = compile(&state(BASE), &ctx()).unwrap();
        assert_eq!(t.node.name, "node-a");
        assert_eq!(t.ports.len(), 2);
        assert_eq!(t.ports[1].mtu, 9000);
        assert_eq!(t.ports[0].mac, [2, 0, 0, 0, 0, 1]);
        let n = &t.networks[0];
        let adj = n.adjacencies[n.fib4.lookup(0x1401_0203).unwrap() as usize];
        assert_eq!(adj.kind, AdjacencyKind::Forward);
        let nh = n.next_hops[adj.first as usize];
        assert_eq!(nh.port, 1);
        assert_eq!(nh.dst_mac, Some([2, 0, 0, 0, 1, 0xfe]));
        let bh = n.adjacencies[n.fib4.lookup(0x2801_0101).unwrap() as usize];
        assert_eq!(bh.kind, AdjacencyKind::Blackhole);
        assert_eq!(
            n.adjacencies[n.fib4.lookup(0x0a00_0001).unwrap() as usize].kind,
            AdjacencyKind::Local
        );
    }

    #[test]
    fn compile_is_deterministic() {
        let a = compile(&state(BASE), &ctx()).unwrap();
        let b = compile(&state(BASE), &ctx()).unwrap();
        assert_eq!(a.ports, b.ports);
        let (na, nb) = (&a.networks[0], &b.networks[0]);
        assert_eq!(na.adjacencies, nb.adjacencies);
        assert_eq!(na.next_hops, nb.next_hops);
        let mut ra: Vec<_> = na.fib4.iter().collect();
        let mut rb: Vec<_> = nb.fib4.iter().collect();
        ra.sort();
        rb.sort();
        assert_eq!(ra, rb);
    }

    #[test]
    fn networks_separate_routing_domains() {
        let yaml = format!(
            "{BASE}\n---\napiVersion: sluice.dev/v1\nkind: Network\nmetadata: {{name: blue}}\nspec: {{}}\n---\n\
apiVersion: sluice.dev/v1\nkind: Route\nmetadata: {{name: blue-20}}\nspec: {{network: blue, destination: 20.0.0.0/8, type: Unreachable}}\n"
        );
        let t = compile(&state(&yaml), &ctx()).unwrap();
        assert_eq!(t.networks.len(), 2);
        assert_eq!(t.networks[1].name, "blue");
        let blue = &t.networks[1];
        assert_eq!(
            blue.adjacencies[blue.fib4.lookup(0x1400_0001).unwrap() as usize].kind,
            AdjacencyKind::Unreachable
        );
    }

    #[test]
    fn interfaces_must_name_this_nodes_ports() {
        let yaml = BASE
            .replace("name: p1}", "name: p9}")
            .replace("mem:p1", "mem:p9");
        let mut s = DesiredState::new();
        let batch: Vec<Change> = parse_manifests(&yaml)
            .unwrap()
            .into_iter()
            .map(Change::Apply)
            .collect();
        s.apply(&batch).unwrap_or_else(|e| panic!("{e}"));
        let e = compile(&s, &ctx()).unwrap_err();
        assert_eq!(e.object, "Interface p9");
        assert_eq!(e.field, "metadata.name");

        let yaml = BASE.replace("mem:p1", "af_xdp:eth1");
        let e = compile(&state(&yaml), &ctx()).unwrap_err();
        assert_eq!(
            (e.object.as_str(), e.field.as_str()),
            ("Interface p1", "spec.backend")
        );
    }

    #[test]
    fn policies_fill_the_policy_table() {
        assert!(compile(&state(BASE), &ctx()).unwrap().policy.is_empty());
        let yaml = format!(
            "{BASE}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: x}}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {{name: a, namespace: x}}\nspec: {{containers: [{{name: c, image: i}}]}}\nstatus: {{podIP: 10.244.0.10}}\n---\n\
apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: deny, namespace: x}}\nspec: {{podSelector: {{}}}}\n"
        );
        let t = compile(&state(&yaml), &ctx()).unwrap();
        let v = t.policy.evaluate(4, 6, 0x0a00_0005, 0x0af4_000a, 80);
        assert!(!v.allow);
        assert_eq!(
            t.policy.rule(v.rule).unwrap().policy,
            "NetworkPolicy x/deny"
        );
    }

    #[test]
    fn unreachable_gateways_are_named() {
        let yaml = BASE.replace("gateway: 10.0.1.254", "gateway: 192.168.9.9");
        let e = compile(&state(&yaml), &ctx()).unwrap_err();
        // The builder's "route 20.0.0.0/8 in network default" is reported
        // as the Route object that declared it.
        assert_eq!(e.object, "Route to-20", "{e}");
        assert_eq!(e.field, "spec.nextHops[0].gateway");
    }
}

#[cfg(test)]
mod service_tests {
    //! The incremental service compile against a compile from scratch.

    use super::*;
    use crate::model::Change;
    use crate::services::{describe_table, table_verdict, Probe, Verdict};
    use serde_json::{json, Value};
    use sluice_dataplane::tables::services::Outcome;
    use std::collections::HashSet;
    use std::sync::Arc;

    fn ctx() -> NodeContext {
        NodeContext {
            node: NodeIdentity {
                name: "node-a".into(),
                zone: "z1".into(),
                addresses: vec![
                    "192.168.0.2".parse().unwrap(),
                    "192.168.1.2".parse().unwrap(),
                ],
            },
            ports: vec![],
            services: ServiceSettings {
                cluster_cidrs: vec!["10.1.0.0/16".parse().unwrap()],
                service_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
                node_port_addresses: vec![],
                masquerade_all: false,
            },
        }
    }

    /// xorshift64*: a seeded generator without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn coin(&mut self) -> bool {
            self.below(2) == 0
        }
        fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
            &v[self.below(v.len() as u64) as usize]
        }
    }

    const SERVICES: u64 = 6;
    const SLICES: u64 = 10;

    fn random_service(r: &mut Rng, i: u64) -> Value {
        let ty = *r.pick(&["ClusterIP", "NodePort", "LoadBalancer"]);
        let external = ty != "ClusterIP";
        let mut http = json!({"name": "http", "port": *r.pick(&[80, 30001]), "protocol": "TCP"});
        let mut dns = json!({"name": "dns", "port": 53, "protocol": "UDP"});
        if external {
            http["nodePort"] = json!(*r.pick(&[30001, 30002, 30003]));
            if r.coin() {
                dns["nodePort"] = json!(*r.pick(&[30001, 30002]));
            }
        }
        let mut spec = json!({
            "type": ty,
            "clusterIP": format!("10.96.0.{}", i + 1),
            "ports": [http, dns],
        });
        if r.coin() {
            // The node's own address as an external IP: its keys fall
            // through to node ports.
            spec["externalIPs"] = json!([*r.pick(&["192.168.0.2", "192.0.2.50", "192.168.1.2"])]);
        }
        if external && r.coin() {
            spec["externalTrafficPolicy"] = json!("Local");
        }
        if r.below(3) == 0 {
            spec["internalTrafficPolicy"] = json!("Local");
        }
        if r.below(3) == 0 {
            spec["sessionAffinity"] = json!("ClientIP");
        }
        if ty == "LoadBalancer" && r.coin() {
            spec["loadBalancerSourceRanges"] =
                json!([*r.pick(&["203.0.113.0/25", "192.168.0.0/16"])]);
        }
        let mut svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "ns", "name": format!("s{i}")},
            "spec": spec,
        });
        if ty == "LoadBalancer" {
            svc["status"] =
                json!({"loadBalancer": {"ingress": [{"ip": format!("203.0.113.{}", 200 + i)}]}});
        }
        svc
    }

    fn random_slice(r: &mut Rng, j: u64) -> Value {
        let n = 1 + r.below(4);
        let endpoints: Vec<Value> = (0..n)
            .map(|_| {
                json!({
                    "addresses": [format!("10.1.0.{}", 1 + r.below(8))],
                    "nodeName": *r.pick(&["node-a", "node-b"]),
                    "conditions": {"ready": r.below(4) != 0, "serving": r.coin(), "terminating": r.coin()},
                })
            })
            .collect();
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "ns", "name": format!("e{j}"),
                         "labels": {"kubernetes.io/service-name": format!("s{}", r.below(SERVICES))}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                      {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": endpoints,
        })
    }

    fn random_change(r: &mut Rng, state: &DesiredState) -> Change {
        let apply = |v: Value| Change::Apply(Object::from_value(v).unwrap());
        match r.below(10) {
            0..=3 => {
                let i = r.below(SERVICES);
                apply(random_service(r, i))
            }
            4..=7 => {
                let j = r.below(SLICES);
                apply(random_slice(r, j))
            }
            8 => {
                let kind = *r.pick(&[Kind::Service, Kind::EndpointSlice]);
                let all = state.list(kind, None, None).unwrap();
                match all.is_empty() {
                    true => apply(random_slice(r, 0)),
                    false => Change::Delete(r.pick(&all).object.key()),
                }
            }
            _ => apply(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "node-a",
                             "labels": {"topology.kubernetes.io/zone": *r.pick(&["z1", "z2"])}},
            })),
        }
    }

    fn distinct_rings(t: &sluice_dataplane::tables::services::ServiceTable) -> usize {
        let mut seen = HashSet::new();
        for (_, f) in t.by_addr.iter().chain(t.node_ports.iter()) {
            for o in &f.outcome {
                if let Outcome::Dnat { ring, .. } = o {
                    seen.insert(Arc::as_ptr(ring));
                }
            }
        }
        seen.len()
    }

    #[test]
    fn incremental_equals_from_scratch() {
        for seed in 1..=8u64 {
            let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut state = DesiredState::new();
            let (mut compiler, _) = Compiler::new(&state, ctx()).unwrap();
            let mut accepted = 0;
            for step in 0..150 {
                let n = 1 + r.below(3);
                let batch: Vec<Change> = (0..n).map(|_| random_change(&mut r, &state)).collect();
                let keys: Vec<ObjectKey> = batch.iter().map(Change::key).collect();
                if state.apply(&batch).is_err() {
                    continue;
                }
                accepted += 1;
                let prepared = compiler.prepare(&state, &keys).unwrap();
                let incremental = compiler.apply(prepared);
                let scratch = compile(&state, &ctx()).unwrap();
                assert_eq!(
                    describe_table(&incremental.services),
                    describe_table(&scratch.services),
                    "seed {seed} step {step}: {batch:?}"
                );
                assert_eq!(
                    compiler.services().ring_count(),
                    distinct_rings(&incremental.services),
                    "seed {seed} step {step}: the ring cache holds exactly the table's rings"
                );
            }
            assert!(
                accepted > 60,
                "seed {seed}: only {accepted} batches accepted"
            );
        }
    }

    const SVC: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, nodePort: 30080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.1.0.1]
  nodeName: node-a
- addresses: [10.1.0.2]
  nodeName: node-b
"#;

    fn probe(src: &str, dst: &str, port: u16) -> Probe {
        Probe {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: crate::model::names::Protocol::Tcp,
            dst_port: port,
        }
    }

    #[test]
    fn services_compile_into_the_table() {
        let mut state = DesiredState::new();
        let batch: Vec<Change> = crate::model::parse_manifests(SVC)
            .unwrap()
            .into_iter()
            .map(Change::Apply)
            .collect();
        state.apply(&batch).unwrap();
        let t = compile(&state, &ctx()).unwrap();
        let s = &t.services;
        assert_eq!(s.network, 0);
        assert_eq!((s.by_addr.len(), s.node_ports.len()), (1, 1));
        let both = Verdict::Dnat {
            endpoints: [
                "10.1.0.1:8080".parse().unwrap(),
                "10.1.0.2:8080".parse().unwrap(),
            ]
            .into(),
            masquerade: false,
        };
        assert_eq!(table_verdict(s, &probe("10.1.5.5", "10.96.0.10", 80)), both);
        let Verdict::Dnat { masquerade, .. } =
            table_verdict(s, &probe("203.0.113.1", "192.168.1.2", 30080))
        else {
            panic!()
        };
        assert!(masquerade);
        assert_eq!(
            table_verdict(s, &probe("10.1.5.5", "10.96.0.10", 81)),
            Verdict::Reject
        );
        assert_eq!(
            table_verdict(s, &probe("10.1.5.5", "10.96.0.11", 80)),
            Verdict::Drop
        );
        // The cluster IP front end and the node port share one ring.
        assert_eq!(distinct_rings(s), 1);
        assert!(s.is_endpoint(4, 6, 0x0a01_0001, 8080));
    }
}
