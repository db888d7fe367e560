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
//! each network's FIBs and static neighbour table. NetworkPolicies and the
//! cluster-wide policy kinds, with the Pods, Namespaces and Nodes they
//! select, become the policy table ([`crate::policy`]). Other Kubernetes
//! kinds (Services, EndpointSlices) and the other Sluice kinds are kept
//! in the desired state and compiled by the stages that enforce them, as
//! those land.
//!
//! An Interface must name a port this node opened, with the same backend:
//! ports are hardware of the node, opened from its configuration at start;
//! the API configures them.

use crate::model::sluice::RouteType;
use crate::model::{DesiredState, Kind, Object, DEFAULT_NETWORK};
use core::fmt;
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

/// What the compiler knows of the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeContext {
    pub node: NodeIdentity,
    pub ports: Vec<PortDecl>,
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

/// Compiles `state` for the node described by `ctx`.
pub fn compile(state: &DesiredState, ctx: &NodeContext) -> Result<Tables, CompileError> {
    let mut b = TablesBuilder::new();
    b.node = ctx.node.clone();

    // Networks: "default" is id 0; the rest in name order.
    let mut networks: BTreeMap<&str, u16> = BTreeMap::new();
    networks.insert(DEFAULT_NETWORK, 0);
    for so in state.iter() {
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
    let mut interfaces = BTreeMap::new();
    for so in state.iter() {
        if let Object::Interface(i) = &so.object {
            interfaces.insert(i.metadata.name.clone().unwrap_or_default(), i);
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
    for so in state.iter() {
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
    b.policy = crate::policy::compile_policy(state, &ctx.node.addresses);
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

/// The kinds `compile` turns into tables today.
pub const COMPILED_KINDS: &[Kind] = &[
    Kind::Network,
    Kind::Interface,
    Kind::Route,
    Kind::Neighbour,
    Kind::NetworkPolicy,
    Kind::AdminNetworkPolicy,
    Kind::BaselineAdminNetworkPolicy,
    Kind::ClusterNetworkPolicy,
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
