//! Services compiled into the dataplane's [`ServiceTable`], and kept
//! compiled: [`ServiceCompiler`] holds what it needs between generations so
//! that a change to one Service or one of its EndpointSlices recompiles that
//! Service only.
//!
//! # What goes into the table
//!
//! For every service port view (one per Service, port and IP family):
//! - an address front end (`by_addr`) for its cluster IP, each external IP
//!   and each load-balancer VIP, on the port and protocol;
//! - a node port (`node_ports`) for its nodePort, when it has one;
//! - one count in `cluster_ips` for its cluster IP.
//!
//! A front end's [`Outcome`] per [`SourceClass`] is [`resolve`] of its key
//! for that class over the ports that bear on the key: those serving the
//! address and port, plus, when the address is one of the node's NodePort
//! addresses, those holding the port as a node port (dispatch falls through
//! from an address to the node ports when no address entry takes the
//! packet). Resolving per class in advance is what lets the dataplane
//! classify only the source. `Dnat` outcomes point at a [`ServiceRing`]
//! over exactly the endpoint set `resolve` returned; every front end (of
//! any Service) with the same set shares one ring.
//!
//! Load-balancer source ranges go on the VIP front ends of a port that has
//! them, as prefixes; when they admit the node's primary address of the
//! family, the port's VIPs are added as host prefixes (`source_allowed`: a
//! node reaching a VIP it hosts sends from the VIP).
//!
//! # What is kept between compiles
//!
//! - every port's view, categorized once, with a stable number (the front
//!   end's `service_port`), by Service;
//! - which ports serve each (protocol, address, port) and hold each
//!   (family, protocol, node port): the ports a key's outcome depends on;
//! - which EndpointSlices name each Service (`kubernetes.io/service-name`);
//! - the rings, by endpoint set, with how many front ends use each; a ring
//!   is built once and dropped when its last front end goes;
//! - the table itself, whose next generation is a clone (see
//!   [`ShardedMap`](sluice_dataplane::tables::services::ShardedMap)).
//!
//! A change to Services or EndpointSlices is applied in two steps:
//! [`ServiceCompiler::prepare`] reads the new objects and builds the new
//! views without changing anything (it is where a change can be refused),
//! [`ServiceCompiler::apply`] then replaces the changed Services' ports and
//! recomputes exactly the keys they had or have, plus the address keys on
//! NodePort addresses that share a changed node port.

use super::classify::{resolve, FrontendKey, NodeConfig, PortRules, Probe, SourceClass, Verdict};
use super::view::{views_with_slices, ServicePortName, SERVICE_NAME_LABEL};
use super::IpFamily;
use crate::compile::CompileError;
use crate::model::names::Protocol;
use crate::model::{DesiredState, Kind, Object, ObjectKey, DEFAULT_NAMESPACE};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use sluice_dataplane::tables::maglev::MAX_BACKENDS;
use sluice_dataplane::tables::services::{
    Endpoint, FamilyNum, Frontend, L4Addr, Lookup, Outcome, Prefix, ServiceRing, ServiceTable,
};
use sluice_dataplane::tables::NetworkId;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The network whose packets the Service rules apply to: the default one.
/// Kubernetes Services live in the pod network, which the node reaches
/// through its default routing domain.
pub const SERVICE_NETWORK: NetworkId = 0;

/// A Service: (namespace, name).
pub type ServiceKey = (String, String);

/// A service port in one family, as [`super::ServiceSet`] orders them.
type PortId = (ServicePortName, IpFamily);

/// The family number the dataplane uses.
pub fn family_num(f: IpFamily) -> FamilyNum {
    match f {
        IpFamily::V4 => 4,
        IpFamily::V6 => 6,
    }
}

/// An address as the dataplane keeps it (IPv4 in the low 32 bits).
pub fn addr_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn addr_of(family: FamilyNum, bits: u128) -> IpAddr {
    if family == 4 {
        IpAddr::V4((bits as u32).into())
    } else {
        IpAddr::V6(bits.into())
    }
}

/// The IP protocol number.
pub fn proto_num(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

fn prefix_of(net: &ipnet::IpNet) -> Prefix {
    Prefix {
        family: family_num(IpFamily::of(net.addr())),
        addr: addr_bits(net.network()),
        len: net.prefix_len(),
    }
}

fn table_key(key: &FrontendKey) -> (bool, L4Addr) {
    match *key {
        FrontendKey::Address {
            protocol,
            addr,
            port,
        } => (
            true,
            L4Addr {
                family: family_num(IpFamily::of(addr)),
                proto: proto_num(protocol),
                port,
                addr: addr_bits(addr),
            },
        ),
        FrontendKey::NodePort {
            family,
            protocol,
            port,
        } => (
            false,
            L4Addr {
                family: family_num(family),
                proto: proto_num(protocol),
                port,
                addr: 0,
            },
        ),
    }
}

/// The keys a port puts in the table.
fn keys_of(rules: &PortRules) -> Vec<FrontendKey> {
    let v = &rules.view;
    let protocol = v.name.protocol;
    let mut addrs: Vec<IpAddr> = vec![v.cluster_ip];
    addrs.extend(v.external_ips.iter().copied());
    addrs.extend(v.load_balancer_vips.iter().copied());
    addrs.sort_unstable();
    addrs.dedup();
    let mut keys: Vec<FrontendKey> = addrs
        .into_iter()
        .map(|addr| FrontendKey::Address {
            protocol,
            addr,
            port: v.port,
        })
        .collect();
    if let Some(port) = v.node_port {
        keys.push(FrontendKey::NodePort {
            family: v.family,
            protocol,
            port,
        });
    }
    keys
}

/// A ring's identity: its family and sorted endpoints.
type RingKey = (FamilyNum, Box<[Endpoint]>);

fn ring_key(family: IpFamily, endpoints: &BTreeSet<SocketAddr>) -> RingKey {
    let mut eps: Vec<Endpoint> = endpoints
        .iter()
        .map(|e| Endpoint {
            addr: addr_bits(e.ip()),
            port: e.port(),
        })
        .collect();
    eps.sort_unstable();
    (family_num(family), eps.into_boxed_slice())
}

struct FrontendPlan {
    verdicts: [Verdict; 3],
    source_ranges: Option<Arc<[Prefix]>>,
    affinity_timeout_s: u32,
    service_port: u32,
}

struct PortEntry {
    rules: PortRules,
    id: u32,
}

/// The new views of the Services a change touches, ready to
/// [`apply`](ServiceCompiler::apply); made by
/// [`prepare`](ServiceCompiler::prepare).
pub struct PreparedServices {
    /// Each changed Service with its new ports (empty: gone or not
    /// proxied).
    services: Vec<(ServiceKey, Vec<PortRules>)>,
    /// Each changed EndpointSlice (namespace, name) with the Service it
    /// names now, if any.
    slices: Vec<((String, String), Option<ServiceKey>)>,
}

impl PreparedServices {
    /// How many Services the change recompiles.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

/// The Service part of the compiler and what it keeps between generations
/// (see the module documentation).
pub struct ServiceCompiler {
    node: NodeConfig,
    node_port_addrs: Vec<IpAddr>,
    ports: BTreeMap<PortId, PortEntry>,
    by_service: HashMap<ServiceKey, Vec<PortId>>,
    addr_users: HashMap<(Protocol, IpAddr, u16), Users>,
    node_port_users: HashMap<(IpFamily, Protocol, u16), Users>,
    slices_of: HashMap<ServiceKey, BTreeSet<String>>,
    slice_owner: HashMap<(String, String), ServiceKey>,
    rings: HashMap<RingKey, (Arc<ServiceRing>, u32)>,
    /// Rings of the compiler this one replaces (see [`ServiceCompiler::rebuild`]),
    /// taken instead of building a ring again; empty otherwise.
    reusable: HashMap<RingKey, Arc<ServiceRing>>,
    next_id: u32,
    table: ServiceTable,
}

/// The ports that use one front-end key, in order: a sorted vector, since
/// nearly every key has one user (a tree node each would cost a kilobyte).
#[derive(Debug, Clone, Default)]
struct Users(Vec<PortId>);

impl Users {
    fn insert(&mut self, p: PortId) {
        if let Err(i) = self.0.binary_search(&p) {
            self.0.insert(i, p);
        }
    }

    fn remove(&mut self, p: &PortId) {
        if let Ok(i) = self.0.binary_search(p) {
            self.0.remove(i);
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Users {
    type Item = &'a PortId;
    type IntoIter = std::slice::Iter<'a, PortId>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

fn namespace_or_default(ns: Option<&str>) -> String {
    ns.filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_string()
}

fn slice_service(slice: &EndpointSlice) -> Option<ServiceKey> {
    let name = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))?;
    Some((
        namespace_or_default(slice.metadata.namespace.as_deref()),
        name.clone(),
    ))
}

impl ServiceCompiler {
    /// A compiler with an empty table for the node `node`.
    pub fn new(node: NodeConfig) -> ServiceCompiler {
        let own = node.own_ips();
        let node_port_addrs: Vec<IpAddr> = own
            .iter()
            .copied()
            .filter(|ip| node.serves_node_ports_on(*ip))
            .collect();
        let mut table = ServiceTable::new(SERVICE_NETWORK);
        let bits = |ip: &IpAddr| (family_num(IpFamily::of(*ip)), addr_bits(*ip));
        table.node_port_addrs = node_port_addrs.iter().map(bits).collect();
        table.local_ips = own.iter().map(bits).collect();
        table.pod_cidrs = node.cluster_cidrs.iter().map(prefix_of).collect();
        table.service_cidrs = node.service_cidrs.iter().map(prefix_of).collect();
        ServiceCompiler {
            node,
            node_port_addrs,
            ports: BTreeMap::new(),
            by_service: HashMap::new(),
            addr_users: HashMap::new(),
            node_port_users: HashMap::new(),
            slices_of: HashMap::new(),
            slice_owner: HashMap::new(),
            rings: HashMap::new(),
            reusable: HashMap::new(),
            next_id: 1,
            table,
        }
    }

    /// Compiles every Service of `state` from scratch.
    pub fn full(state: &DesiredState, node: NodeConfig) -> Result<ServiceCompiler, CompileError> {
        let mut c = ServiceCompiler::new(node);
        let prepared = c.prepare(state, &Self::all_keys(state))?;
        c.apply(prepared);
        Ok(c)
    }

    /// Compiles every Service of `state` from scratch for `node` (the
    /// node's settings changed), taking the rings this compiler already
    /// built instead of building them again.
    pub fn rebuild(
        &self,
        state: &DesiredState,
        node: NodeConfig,
    ) -> Result<ServiceCompiler, CompileError> {
        let mut c = ServiceCompiler::new(node);
        c.reusable = self
            .rings
            .iter()
            .map(|(k, (r, _))| (k.clone(), r.clone()))
            .collect();
        let prepared = c.prepare(state, &Self::all_keys(state))?;
        c.apply(prepared);
        c.reusable = HashMap::new();
        Ok(c)
    }

    fn all_keys(state: &DesiredState) -> Vec<ObjectKey> {
        let mut keys: Vec<ObjectKey> = Vec::new();
        for kind in [Kind::Service, Kind::EndpointSlice] {
            let objects = state.list(kind, None, None).unwrap_or_default();
            keys.extend(objects.into_iter().map(|so| so.object.key()));
        }
        keys
    }

    /// Compiles Services and EndpointSlices given as objects (not
    /// through a desired state, so not validated): how the oracle replays
    /// kube-proxy's test objects through the compiled table.
    pub fn from_objects(
        services: &[Service],
        slices: &[EndpointSlice],
        node: NodeConfig,
    ) -> Result<ServiceCompiler, CompileError> {
        let mut c = ServiceCompiler::new(node);
        let mut by_service: BTreeMap<ServiceKey, Vec<&EndpointSlice>> = BTreeMap::new();
        let mut slice_ids = Vec::new();
        for s in slices {
            let owner = slice_service(s);
            if let Some(o) = &owner {
                by_service.entry(o.clone()).or_default().push(s);
            }
            let id = (
                namespace_or_default(s.metadata.namespace.as_deref()),
                s.metadata.name.clone().unwrap_or_default(),
            );
            slice_ids.push((id, owner));
        }
        let mut out = Vec::new();
        for svc in services {
            let key = (
                namespace_or_default(svc.metadata.namespace.as_deref()),
                svc.metadata.name.clone().unwrap_or_default(),
            );
            let own = by_service.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            let ports = c.port_rules(&key, svc, own)?;
            out.push((key, ports));
        }
        c.apply(PreparedServices {
            services: out,
            slices: slice_ids,
        });
        Ok(c)
    }

    /// A Service's ports, categorized, refusing a port with more endpoints
    /// than a ring holds.
    fn port_rules(
        &self,
        key: &ServiceKey,
        service: &Service,
        slices: &[&EndpointSlice],
    ) -> Result<Vec<PortRules>, CompileError> {
        let views = views_with_slices(service, slices);
        let mut ports = Vec::with_capacity(views.len());
        for v in views {
            if v.endpoints.len() > MAX_BACKENDS {
                return Err(CompileError {
                    object: format!("Service {}/{}", key.0, key.1),
                    field: format!("spec.ports[{}]", v.name.port),
                    message: format!(
                        "{} endpoints in {}; a service port may have at most {MAX_BACKENDS}",
                        v.endpoints.len(),
                        v.family
                    ),
                });
            }
            ports.push(PortRules::new(v, &self.node));
        }
        Ok(ports)
    }

    /// The node settings this compiler was made for.
    pub fn node(&self) -> &NodeConfig {
        &self.node
    }

    /// The table as of the last [`apply`](Self::apply); clone it for a
    /// generation (the clone shares every shard).
    pub fn table(&self) -> &ServiceTable {
        &self.table
    }

    /// How many distinct rings the table holds.
    pub fn ring_count(&self) -> usize {
        self.rings.len()
    }

    /// Reads the Services that `changed` (keys of Services and
    /// EndpointSlices, others ignored) touch in `state`, the state after
    /// the change, and builds their new views. Changes nothing; fails when
    /// a Service cannot be compiled.
    pub fn prepare(
        &self,
        state: &DesiredState,
        changed: &[ObjectKey],
    ) -> Result<PreparedServices, CompileError> {
        let mut services: BTreeSet<ServiceKey> = BTreeSet::new();
        let mut slices: BTreeMap<(String, String), Option<ServiceKey>> = BTreeMap::new();
        for key in changed {
            let ns = namespace_or_default(key.namespace.as_deref());
            match key.kind {
                Kind::Service => {
                    services.insert((ns, key.name.clone()));
                }
                Kind::EndpointSlice => {
                    let id = (ns, key.name.clone());
                    if let Some(old) = self.slice_owner.get(&id) {
                        services.insert(old.clone());
                    }
                    let new = match state.get(key).map(|s| &s.object) {
                        Some(Object::EndpointSlice(s)) => slice_service(s),
                        _ => None,
                    };
                    if let Some(svc) = &new {
                        services.insert(svc.clone());
                    }
                    slices.insert(id, new);
                }
                _ => {}
            }
        }
        // The changed slices by the Service they name now.
        let mut new_names: HashMap<&ServiceKey, Vec<&str>> = HashMap::new();
        for ((_, name), owner) in &slices {
            if let Some(owner) = owner {
                new_names.entry(owner).or_default().push(name);
            }
        }
        let mut out = Vec::with_capacity(services.len());
        for svc_key in &services {
            let svc_key = svc_key.clone();
            let object_key = ObjectKey::namespaced(Kind::Service, &svc_key.0, &svc_key.1);
            let Some(Object::Service(service)) = state.get(&object_key).map(|s| &s.object) else {
                out.push((svc_key, Vec::new()));
                continue;
            };
            // The Service's slices after the change: those it had, less the
            // changed ones, plus the changed ones that name it now.
            let mut names: BTreeSet<&str> = self
                .slices_of
                .get(&svc_key)
                .into_iter()
                .flatten()
                .map(String::as_str)
                .filter(|n| !slices.contains_key(&(svc_key.0.clone(), n.to_string())))
                .collect();
            names.extend(new_names.get(&svc_key).into_iter().flatten().copied());
            let mut objects: Vec<&EndpointSlice> = Vec::with_capacity(names.len());
            for name in names {
                let k = ObjectKey::namespaced(Kind::EndpointSlice, &svc_key.0, name);
                if let Some(Object::EndpointSlice(s)) = state.get(&k).map(|s| &s.object) {
                    objects.push(s);
                }
            }
            let ports = self.port_rules(&svc_key, service, &objects)?;
            out.push((svc_key, ports));
        }
        Ok(PreparedServices {
            services: out,
            slices: slices.into_iter().collect(),
        })
    }

    /// Applies prepared Services to the table: their old keys out, their
    /// new keys in, every key that depends on them recomputed. Never fails.
    pub fn apply(&mut self, prepared: PreparedServices) {
        for (id, owner) in prepared.slices {
            if let Some(old) = self.slice_owner.remove(&id) {
                if let Some(set) = self.slices_of.get_mut(&old) {
                    set.remove(&id.1);
                    if set.is_empty() {
                        self.slices_of.remove(&old);
                    }
                }
            }
            if let Some(new) = owner {
                self.slices_of
                    .entry(new.clone())
                    .or_default()
                    .insert(id.1.clone());
                self.slice_owner.insert(id, new);
            }
        }
        let mut dirty: BTreeSet<FrontendKey> = BTreeSet::new();
        for (svc, ports) in prepared.services {
            self.replace_service(svc, ports, &mut dirty);
        }
        // Address keys on NodePort addresses fall through to node ports of
        // the same protocol and port: recompute them when those change.
        let node_port_keys: Vec<FrontendKey> = dirty
            .iter()
            .filter(|k| matches!(k, FrontendKey::NodePort { .. }))
            .copied()
            .collect();
        for k in node_port_keys {
            for addr in &self.node_port_addrs {
                if IpFamily::of(*addr) != k.family() {
                    continue;
                }
                if self
                    .addr_users
                    .contains_key(&(k.protocol(), *addr, k.port()))
                {
                    dirty.insert(FrontendKey::Address {
                        protocol: k.protocol(),
                        addr: *addr,
                        port: k.port(),
                    });
                }
            }
        }
        for key in dirty {
            self.recompute(&key);
        }
    }

    fn replace_service(
        &mut self,
        svc: ServiceKey,
        ports: Vec<PortRules>,
        dirty: &mut BTreeSet<FrontendKey>,
    ) {
        let mut old_ids: HashMap<PortId, u32> = HashMap::new();
        for pid in self.by_service.remove(&svc).unwrap_or_default() {
            let Some(entry) = self.ports.remove(&pid) else {
                continue;
            };
            for key in keys_of(&entry.rules) {
                dirty.insert(key);
                self.unindex(&key, &pid);
            }
            let v = &entry.rules.view;
            self.table
                .count_cluster_ip(family_num(v.family), addr_bits(v.cluster_ip), -1);
            count_endpoints(&mut self.table, v, -1);
            old_ids.insert(pid, entry.id);
        }
        if ports.is_empty() {
            return;
        }
        let mut pids = Vec::with_capacity(ports.len());
        for rules in ports {
            let pid: PortId = (rules.view.name.clone(), rules.view.family);
            let id = old_ids.remove(&pid).unwrap_or_else(|| {
                let id = self.next_id;
                self.next_id = self.next_id.wrapping_add(1).max(1);
                id
            });
            for key in keys_of(&rules) {
                dirty.insert(key);
                self.index(&key, &pid);
            }
            let v = &rules.view;
            self.table
                .count_cluster_ip(family_num(v.family), addr_bits(v.cluster_ip), 1);
            count_endpoints(&mut self.table, v, 1);
            self.ports.insert(pid.clone(), PortEntry { rules, id });
            pids.push(pid);
        }
        self.by_service.insert(svc, pids);
    }

    fn index(&mut self, key: &FrontendKey, pid: &PortId) {
        match *key {
            FrontendKey::Address {
                protocol,
                addr,
                port,
            } => {
                self.addr_users
                    .entry((protocol, addr, port))
                    .or_default()
                    .insert(pid.clone());
            }
            FrontendKey::NodePort {
                family,
                protocol,
                port,
            } => {
                self.node_port_users
                    .entry((family, protocol, port))
                    .or_default()
                    .insert(pid.clone());
            }
        }
    }

    fn unindex(&mut self, key: &FrontendKey, pid: &PortId) {
        match *key {
            FrontendKey::Address {
                protocol,
                addr,
                port,
            } => {
                let k = (protocol, addr, port);
                if let Some(set) = self.addr_users.get_mut(&k) {
                    set.remove(pid);
                    if set.is_empty() {
                        self.addr_users.remove(&k);
                    }
                }
            }
            FrontendKey::NodePort {
                family,
                protocol,
                port,
            } => {
                let k = (family, protocol, port);
                if let Some(set) = self.node_port_users.get_mut(&k) {
                    set.remove(pid);
                    if set.is_empty() {
                        self.node_port_users.remove(&k);
                    }
                }
            }
        }
    }

    /// The ports `key`'s outcome depends on, in [`super::ServiceSet`]
    /// order, and whether any of them holds the key itself.
    fn candidates(&self, key: &FrontendKey) -> (Vec<&PortEntry>, bool) {
        let mut ids: Vec<&PortId> = Vec::new();
        let own = match *key {
            FrontendKey::Address {
                protocol,
                addr,
                port,
            } => {
                let own = self.addr_users.get(&(protocol, addr, port));
                ids.extend(own.into_iter().flatten());
                if self.node_port_addrs.contains(&addr) {
                    let np = self
                        .node_port_users
                        .get(&(IpFamily::of(addr), protocol, port));
                    ids.extend(np.into_iter().flatten());
                }
                own.is_some()
            }
            FrontendKey::NodePort {
                family,
                protocol,
                port,
            } => {
                let own = self.node_port_users.get(&(family, protocol, port));
                ids.extend(own.into_iter().flatten());
                own.is_some()
            }
        };
        ids.sort_unstable();
        ids.dedup();
        let entries = ids.into_iter().filter_map(|p| self.ports.get(p)).collect();
        (entries, own)
    }

    fn recompute(&mut self, key: &FrontendKey) {
        let (is_addr, tkey) = table_key(key);
        let (candidates, own) = self.candidates(key);
        let plan = own.then(|| self.plan_frontend(key, &candidates));
        let new = plan.map(|p| self.realize(key.family(), p));
        let old = if is_addr {
            self.table.by_addr.get(&tkey)
        } else {
            self.table.node_ports.get(&tkey)
        };
        if old == new.as_ref().map(|(f, _)| f) {
            // Same outcome: keep the shard (and the rings) untouched.
            if let Some((_, sets)) = new {
                for s in sets {
                    self.release(&s);
                }
            }
            return;
        }
        let old = match new {
            Some((f, _)) => {
                if is_addr {
                    self.table.insert_frontend(tkey, f)
                } else {
                    self.table
                        .insert_node_port(tkey.family, tkey.proto, tkey.port, f)
                }
            }
            None => {
                if is_addr {
                    self.table.remove_frontend(&tkey)
                } else {
                    self.table
                        .remove_node_port(tkey.family, tkey.proto, tkey.port)
                }
            }
        };
        if let Some(old) = old {
            for r in distinct_rings(&old) {
                self.release(&(r.family, r.endpoints.clone()));
            }
        }
    }

    /// What the front end for `key` over `candidates` is, before its rings
    /// are looked up.
    fn plan_frontend(&self, key: &FrontendKey, candidates: &[&PortEntry]) -> FrontendPlan {
        let rules: Vec<&PortRules> = candidates.iter().map(|e| &e.rules).collect();
        // The port the key belongs to: the first that serves it directly.
        let owner = candidates.iter().find(|e| match *key {
            FrontendKey::Address {
                protocol,
                addr,
                port,
            } => e.rules.serves_address(protocol, addr, port),
            FrontendKey::NodePort { protocol, port, .. } => {
                e.rules.serves_node_port(protocol, port)
            }
        });
        let verdicts = SourceClass::ALL.map(|c| resolve(&rules, &self.node, key, c));
        let family = family_num(key.family());
        let source_ranges = match *key {
            FrontendKey::Address {
                protocol,
                addr,
                port,
            } => candidates
                .iter()
                .find(|e| e.rules.serves_address(protocol, addr, port) && e.rules.guards(addr))
                .map(|e| {
                    let v = &e.rules.view;
                    let mut p: Vec<Prefix> = v
                        .load_balancer_source_ranges
                        .iter()
                        .map(prefix_of)
                        .collect();
                    if e.rules.admits_node(&self.node) {
                        for vip in &v.load_balancer_vips {
                            p.push(Prefix {
                                family,
                                addr: addr_bits(*vip),
                                len: if vip.is_ipv4() { 32 } else { 128 },
                            });
                        }
                    }
                    Arc::from(p)
                }),
            FrontendKey::NodePort { .. } => None,
        };
        let (affinity_timeout_s, service_port) = owner
            .map(|e| (e.rules.view.session_affinity_timeout.unwrap_or(0), e.id))
            .unwrap_or((0, 0));
        FrontendPlan {
            verdicts,
            source_ranges,
            affinity_timeout_s,
            service_port,
        }
    }

    /// The front end of a plan, with its rings from the cache, and the
    /// rings it took a reference on (one per distinct ring).
    fn realize(&mut self, family: IpFamily, plan: FrontendPlan) -> (Frontend, Vec<RingKey>) {
        let mut taken: Vec<RingKey> = Vec::new();
        let mut outcome: [Outcome; 3] = [Outcome::Drop, Outcome::Drop, Outcome::Drop];
        for (slot, v) in outcome.iter_mut().zip(plan.verdicts) {
            *slot = match v {
                Verdict::Dnat {
                    endpoints,
                    masquerade,
                } => {
                    let rk = ring_key(family, &endpoints);
                    let first = !taken.contains(&rk);
                    match self.ring(&rk, first) {
                        Some(ring) => {
                            if first {
                                taken.push(rk);
                            }
                            Outcome::Dnat { ring, masquerade }
                        }
                        None => Outcome::Drop,
                    }
                }
                Verdict::Reject => Outcome::Reject,
                // A key some port serves is always decided by dispatch or
                // the no-endpoint check (see `resolve`); NoMatch cannot
                // occur here, and Drop is the safe reading if it did.
                Verdict::Drop | Verdict::NoMatch => Outcome::Drop,
            };
        }
        (
            Frontend {
                outcome,
                source_ranges: plan.source_ranges,
                affinity_timeout_s: plan.affinity_timeout_s,
                service_port: plan.service_port,
            },
            taken,
        )
    }

    /// The ring over `key`'s endpoints, built if no front end has it yet;
    /// `count`: take a reference.
    fn ring(&mut self, key: &RingKey, count: bool) -> Option<Arc<ServiceRing>> {
        if let Some((ring, n)) = self.rings.get_mut(key) {
            if count {
                *n += 1;
            }
            return Some(ring.clone());
        }
        // The endpoint count was checked in `prepare`; a ring that cannot
        // be built is never stored.
        let ring = match self.reusable.get(key) {
            Some(r) => r.clone(),
            None => Arc::new(ServiceRing::build(key.0, &key.1).ok()?),
        };
        self.rings
            .insert(key.clone(), (ring.clone(), u32::from(count)));
        Some(ring)
    }

    fn release(&mut self, key: &RingKey) {
        if let Some((_, n)) = self.rings.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.rings.remove(key);
            }
        }
    }
}

fn distinct_rings(f: &Frontend) -> Vec<Arc<ServiceRing>> {
    let mut out: Vec<Arc<ServiceRing>> = Vec::new();
    for o in &f.outcome {
        if let Outcome::Dnat { ring, .. } = o {
            if !out.iter().any(|r| Arc::ptr_eq(r, ring)) {
                out.push(ring.clone());
            }
        }
    }
    out
}

/// Counts every endpoint of a port's slices (ready, serving or
/// terminating) in the table's endpoint set, apart from the rings: the
/// dataplane keeps connections to an endpoint while it is in that set, so a
/// terminating endpoint's connections go on after it left the rings.
fn count_endpoints(table: &mut ServiceTable, v: &super::ServicePortView, delta: i32) {
    let (family, proto) = (family_num(v.family), proto_num(v.name.protocol));
    for e in &v.endpoints {
        table.count_endpoint(
            L4Addr {
                family,
                proto,
                port: e.addr.port(),
                addr: addr_bits(e.addr.ip()),
            },
            delta,
        );
    }
}

/// What a compiled [`ServiceTable`] does with `probe`, in the terms of
/// [`classify`](super::classify): the table's lookup, the front end's
/// source ranges, then the outcome for the source's class, with the ring's
/// whole endpoint set as the candidates. Hairpin masquerade is left to
/// [`hairpin`](super::hairpin), as with `classify`.
pub fn table_verdict(table: &ServiceTable, probe: &Probe) -> Verdict {
    let family = IpFamily::of(probe.dst);
    if IpFamily::of(probe.src) != family {
        return Verdict::NoMatch;
    }
    let fam = family_num(family);
    let src = addr_bits(probe.src);
    match table.lookup(
        fam,
        proto_num(probe.protocol),
        addr_bits(probe.dst),
        probe.dst_port,
    ) {
        Lookup::Frontend(f) => {
            if !f.admits(fam, src) {
                return Verdict::Drop;
            }
            outcome_verdict(&f.outcome[table.source_class(fam, src) as usize])
        }
        Lookup::Reject => Verdict::Reject,
        Lookup::Drop => Verdict::Drop,
        Lookup::NoMatch => Verdict::NoMatch,
    }
}

fn outcome_verdict(o: &Outcome) -> Verdict {
    match o {
        Outcome::Dnat { ring, masquerade } => Verdict::Dnat {
            endpoints: ring_endpoints(ring),
            masquerade: *masquerade,
        },
        Outcome::Reject => Verdict::Reject,
        Outcome::Drop => Verdict::Drop,
    }
}

fn ring_endpoints(ring: &ServiceRing) -> BTreeSet<SocketAddr> {
    ring.endpoints
        .iter()
        .map(|e| SocketAddr::new(addr_of(ring.family, e.addr), e.port))
        .collect()
}

/// One front end of a table, in comparable form: what
/// [`describe_table`] lists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FrontendSummary {
    /// `true` for a node port (the address is 0).
    pub node_port: bool,
    pub key: L4Addr,
    /// Per source class: the verdict (endpoint set and masquerade).
    pub outcome: Vec<String>,
    pub source_ranges: Option<Vec<Prefix>>,
    pub affinity_timeout_s: u32,
}

/// Every key and outcome of a table, sorted (service-port numbers left
/// out: they are assigned in the order ports first appear), with the
/// cluster-IP counts and the endpoint counts. Two tables that describe the
/// same are the same to every packet.
pub type TableSummary = (
    Vec<FrontendSummary>,
    Vec<((FamilyNum, u128), u32)>,
    Vec<(L4Addr, u32)>,
);

pub fn describe_table(table: &ServiceTable) -> TableSummary {
    let summarize = |node_port: bool, k: &L4Addr, f: &Frontend| FrontendSummary {
        node_port,
        key: *k,
        outcome: f
            .outcome
            .iter()
            .map(|o| format!("{:?}", outcome_verdict(o)))
            .collect(),
        source_ranges: f.source_ranges.as_ref().map(|r| {
            let mut v = r.to_vec();
            v.sort();
            v
        }),
        affinity_timeout_s: f.affinity_timeout_s,
    };
    let mut fronts: Vec<FrontendSummary> = table
        .by_addr
        .iter()
        .map(|(k, f)| summarize(false, k, f))
        .chain(table.node_ports.iter().map(|(k, f)| summarize(true, k, f)))
        .collect();
    fronts.sort();
    let mut ips: Vec<_> = table.cluster_ips.iter().map(|(k, n)| (*k, *n)).collect();
    ips.sort();
    let mut eps: Vec<_> = table.endpoints.iter().map(|(k, n)| (*k, *n)).collect();
    eps.sort();
    (fronts, ips, eps)
}

#[cfg(test)]
mod endpoint_set_tests {
    use super::*;
    use serde_json::json;

    /// A terminating endpoint that no ring uses (a ready one exists) is
    /// still an endpoint: its connections are not swept.
    #[test]
    fn terminating_endpoints_stay_in_the_endpoint_set() {
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "ns", "name": "web"},
            "spec": {"clusterIP": "172.30.0.10", "ports": [{"name": "p", "port": 80}]}
        }))
        .unwrap();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "ns", "name": "web-1",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "p", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.1.0.1"]},
                {"addresses": ["10.1.0.2"],
                 "conditions": {"ready": false, "serving": true, "terminating": true}}
            ]
        }))
        .unwrap();
        let c = ServiceCompiler::from_objects(&[svc], &[slice], NodeConfig::default()).unwrap();
        let t = c.table();
        let ep = |last: u32| addr_bits(IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 0, last as u8)));
        assert!(t.is_endpoint(4, 6, ep(1), 8080), "the ready endpoint");
        assert!(t.is_endpoint(4, 6, ep(2), 8080), "the terminating one too");
        assert!(!t.is_endpoint(4, 6, ep(3), 8080));
        // Only the ready one is in the ring.
        match t.lookup(4, 6, addr_bits("172.30.0.10".parse().unwrap()), 80) {
            Lookup::Frontend(f) => match &f.outcome[0] {
                Outcome::Dnat { ring, .. } => assert_eq!(ring.endpoints.len(), 1),
                o => panic!("{o:?}"),
            },
            l => panic!("{l:?}"),
        }
    }
}
