//! The service table: Kubernetes Services compiled for the dataplane.
//!
//! Built by the control plane from Services and EndpointSlices (with
//! kube-proxy's semantics, see the control crate's `services` module), read
//! by the [`service`](crate::stages::service) stage for the first packet of
//! every connection. Packets of known connections never come here: the
//! connection table holds their translation.
//!
//! # What a lookup does
//!
//! [`ServiceTable::lookup`] takes (family, protocol, destination, port) and
//! answers in kube-proxy's nftables order:
//! 1. a front end on that address and port (cluster IP, external IP or
//!    load-balancer VIP), else
//! 2. a node port, when the destination is one of the node's NodePort
//!    addresses, else
//! 3. [`Lookup::Reject`] for a cluster IP on a port it does not serve, else
//! 4. [`Lookup::Drop`] for an unallocated address in the service CIDRs, else
//! 5. [`Lookup::NoMatch`]: not a service packet.
//!
//! A [`Frontend`] holds one [`Outcome`] per [`SourceClass`] (a pod of this
//! cluster, the node itself, anything else): the control plane resolves
//! traffic policies, fall-through and the no-endpoint verdicts per class in
//! advance, so the stage only classifies the source. A load-balancer VIP
//! with `loadBalancerSourceRanges` also carries the admitted prefixes.
//!
//! # Sharing between generations
//!
//! At 100k Services the maps hold millions of keys; rebuilding them for one
//! changed EndpointSlice would take longer than the change is worth. Every
//! map is a [`ShardedMap`]: 256 shards, each behind an `Arc`. A new
//! generation starts as a clone of the last (256 reference-count
//! increments), and a change copies only the shards it touches
//! ([`Arc::make_mut`]). Rings ([`ServiceRing`]) are shared the same way,
//! so an unchanged Service costs nothing to carry into the next generation.

use crate::tables::maglev::{Backend, MaglevError, MaglevRing};
use crate::tables::{prefix_contains_v4, prefix_contains_v6, NetworkId};
use core::hash::{BuildHasher, Hash};
use hashbrown::HashMap;
use std::sync::Arc;

/// Number of shards of a [`ShardedMap`] (a power of two).
pub const SHARDS: usize = 256;

/// A hash map split into [`SHARDS`] copy-on-write shards. Cloning is 256
/// reference-count increments; [`insert`](Self::insert) and
/// [`remove`](Self::remove) copy the one shard they change if another
/// generation still shares it.
#[derive(Clone)]
pub struct ShardedMap<K, V> {
    shards: Box<[Arc<HashMap<K, V>>]>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl<K: Hash + Eq + Clone, V: Clone> Default for ShardedMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> ShardedMap<K, V> {
    pub fn new() -> Self {
        let empty = Arc::new(HashMap::new());
        ShardedMap {
            shards: (0..SHARDS).map(|_| empty.clone()).collect(),
            // A fixed hasher: the shard of a key is the same in every
            // generation, so clones stay shard-compatible.
            hasher: hashbrown::DefaultHashBuilder::default(),
        }
    }

    #[inline]
    fn shard(&self, key: &K) -> usize {
        // The high bits pick the shard; the map inside uses its own hash.
        (self.hasher.hash_one(key) >> 56) as usize & (SHARDS - 1)
    }

    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        self.shards[self.shard(key)].get(key)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let s = self.shard(key);
        Arc::make_mut(&mut self.shards[s]).get_mut(key)
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let s = self.shard(&key);
        Arc::make_mut(&mut self.shards[s]).insert(key, value)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let s = self.shard(key);
        if !self.shards[s].contains_key(key) {
            return None;
        }
        Arc::make_mut(&mut self.shards[s]).remove(key)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.is_empty())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    /// Bytes of the maps' tables (an estimate: capacity × entry size).
    pub fn memory_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.capacity() * (core::mem::size_of::<(K, V)>() + 1))
            .sum()
    }

    /// How many shards this map shares with `other` (the same allocation).
    pub fn shared_shards(&self, other: &Self) -> usize {
        self.shards
            .iter()
            .zip(other.shards.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count()
    }
}

/// An address family's number as [`crate::stages::PacketMeta::family`] has it.
pub type FamilyNum = u8;

/// A (family, protocol, address, port) key: a front end or an endpoint.
/// IPv4 addresses sit in the low 32 bits of `addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct L4Addr {
    pub family: FamilyNum,
    pub proto: u8,
    pub port: u16,
    pub addr: u128,
}

/// A prefix of either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    pub family: FamilyNum,
    pub addr: u128,
    pub len: u8,
}

impl Prefix {
    #[inline]
    pub fn contains(&self, family: FamilyNum, addr: u128) -> bool {
        self.family == family
            && if family == 4 {
                prefix_contains_v4(self.addr as u32, self.len, addr as u32)
            } else {
                prefix_contains_v6(self.addr, self.len, addr)
            }
    }
}

/// Who sent a packet, as far as Service rules care (kube-proxy's
/// LocalTrafficDetector and `fib saddr type local`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceClass {
    /// An address in the cluster's pod CIDRs.
    Pod = 0,
    /// One of the node's own addresses.
    Node = 1,
    /// Anything else (external clients).
    Other = 2,
}

impl SourceClass {
    pub const ALL: [SourceClass; 3] = [SourceClass::Pod, SourceClass::Node, SourceClass::Other];
}

/// One endpoint a ring can choose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// IPv4 in the low 32 bits.
    pub addr: u128,
    pub port: u16,
}

/// A Maglev ring over one set of endpoints; shared by every front end that
/// uses the same set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRing {
    pub family: FamilyNum,
    pub maglev: MaglevRing,
    /// The endpoints, sorted (the ring's ids index this).
    pub endpoints: Box<[Endpoint]>,
    /// The endpoints in the ring's position order, so a pick reads the
    /// slot and the endpoint, not the ids in between.
    by_position: Box<[Endpoint]>,
}

impl ServiceRing {
    /// A ring over `endpoints` (each weight 1) for `family`. The table is a
    /// function of the set, not of its order.
    pub fn build(family: FamilyNum, endpoints: &[Endpoint]) -> Result<ServiceRing, MaglevError> {
        let mut eps = endpoints.to_vec();
        eps.sort_unstable();
        eps.dedup();
        let keys: Vec<Vec<u8>> = eps.iter().map(|e| endpoint_key(family, e)).collect();
        let backends: Vec<Backend<'_>> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| Backend {
                key: k,
                weight: 1,
                id: i as u32,
            })
            .collect();
        let maglev = MaglevRing::build(&backends, None)?;
        let by_position = maglev.ids().iter().map(|&id| eps[id as usize]).collect();
        Ok(ServiceRing {
            family,
            maglev,
            endpoints: eps.into_boxed_slice(),
            by_position,
        })
    }

    /// The endpoint for a flow hash; `None` for an empty ring.
    #[inline]
    pub fn pick(&self, hash: u32) -> Option<Endpoint> {
        let position = self.maglev.lookup_position(hash)?;
        self.by_position.get(position as usize).copied()
    }

    pub fn memory_bytes(&self) -> usize {
        self.maglev.memory_bytes() + 2 * core::mem::size_of_val::<[Endpoint]>(&self.endpoints)
    }
}

/// The bytes Maglev hashes for an endpoint: address then port, network order.
pub fn endpoint_key(family: FamilyNum, e: &Endpoint) -> Vec<u8> {
    let mut k = Vec::with_capacity(18);
    if family == 4 {
        k.extend_from_slice(&(e.addr as u32).to_be_bytes());
    } else {
        k.extend_from_slice(&e.addr.to_be_bytes());
    }
    k.extend_from_slice(&e.port.to_be_bytes());
    k
}

/// What a front end does with a new connection from one class of source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Translate the destination to an endpoint from `ring`; `masquerade`:
    /// translate the source to the node's address too.
    Dnat {
        ring: Arc<ServiceRing>,
        masquerade: bool,
    },
    /// Refuse: TCP reset, or ICMP port unreachable.
    Reject,
    /// Drop silently.
    Drop,
}

/// One service port on one address (or one node port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    /// Indexed by [`SourceClass`].
    pub outcome: [Outcome; 3],
    /// Load-balancer source ranges: a source outside them is dropped.
    /// `None`: every source is admitted.
    pub source_ranges: Option<Arc<[Prefix]>>,
    /// sessionAffinity ClientIP: seconds a client keeps its endpoint after
    /// its last connection; 0 for no affinity.
    pub affinity_timeout_s: u32,
    /// A number for counters and for affinity keys: the service port.
    pub service_port: u32,
}

impl Frontend {
    /// Whether `src` may use this front end (source ranges).
    #[inline]
    pub fn admits(&self, family: FamilyNum, src: u128) -> bool {
        match &self.source_ranges {
            None => true,
            Some(r) => r.iter().any(|p| p.contains(family, src)),
        }
    }
}

/// The answer of [`ServiceTable::lookup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    Frontend(&'a Frontend),
    Reject,
    Drop,
    NoMatch,
}

/// Key of the node-port map: the address is unused (0).
#[inline]
fn node_port_key(family: FamilyNum, proto: u8, port: u16) -> L4Addr {
    L4Addr {
        family,
        proto,
        port,
        addr: 0,
    }
}

/// Every Service rule of one generation. See the module documentation.
#[derive(Clone, Default)]
pub struct ServiceTable {
    /// The routing domain whose packets the rules apply to.
    pub network: NetworkId,
    /// Front ends by (family, protocol, address, port).
    pub by_addr: ShardedMap<L4Addr, Frontend>,
    /// Node ports by (family, protocol, port).
    pub node_ports: ShardedMap<L4Addr, Frontend>,
    /// Cluster IPs (with a count of the ports that hold them).
    pub cluster_ips: ShardedMap<(FamilyNum, u128), u32>,
    /// Endpoints of every ring, with the number of rings holding each:
    /// packets from them may be replies of connections another worker owns.
    pub endpoints: ShardedMap<L4Addr, u32>,
    /// The node's addresses on which node ports are served.
    pub node_port_addrs: Vec<(FamilyNum, u128)>,
    /// The node's own addresses (sources of class [`SourceClass::Node`]).
    pub local_ips: Vec<(FamilyNum, u128)>,
    /// Pod CIDRs (sources of class [`SourceClass::Pod`]).
    pub pod_cidrs: Vec<Prefix>,
    /// Service CIDRs: unallocated addresses in them are dropped.
    pub service_cidrs: Vec<Prefix>,
}

impl ServiceTable {
    pub fn new(network: NetworkId) -> ServiceTable {
        ServiceTable {
            network,
            ..ServiceTable::default()
        }
    }

    /// Whether the table has no rules at all.
    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
            && self.node_ports.is_empty()
            && self.cluster_ips.is_empty()
            && self.service_cidrs.is_empty()
    }

    /// What the Service rules do with the first packet of a connection.
    #[inline]
    pub fn lookup(&self, family: FamilyNum, proto: u8, dst: u128, dport: u16) -> Lookup<'_> {
        let key = L4Addr {
            family,
            proto,
            port: dport,
            addr: dst,
        };
        if let Some(f) = self.by_addr.get(&key) {
            return Lookup::Frontend(f);
        }
        if !self.node_ports.is_empty() && self.serves_node_ports_on(family, dst) {
            if let Some(f) = self.node_ports.get(&node_port_key(family, proto, dport)) {
                return Lookup::Frontend(f);
            }
        }
        if self.cluster_ips.contains_key(&(family, dst)) {
            return Lookup::Reject;
        }
        if self.service_cidrs.iter().any(|p| p.contains(family, dst)) {
            return Lookup::Drop;
        }
        Lookup::NoMatch
    }

    #[inline]
    pub fn serves_node_ports_on(&self, family: FamilyNum, addr: u128) -> bool {
        self.node_port_addrs.contains(&(family, addr))
    }

    /// The class of a source address.
    #[inline]
    pub fn source_class(&self, family: FamilyNum, src: u128) -> SourceClass {
        if self.pod_cidrs.iter().any(|p| p.contains(family, src)) {
            SourceClass::Pod
        } else if self.local_ips.contains(&(family, src)) {
            SourceClass::Node
        } else {
            SourceClass::Other
        }
    }

    /// Whether (family, proto, addr, port) is an endpoint of some ring.
    #[inline]
    pub fn is_endpoint(&self, family: FamilyNum, proto: u8, addr: u128, port: u16) -> bool {
        !self.endpoints.is_empty()
            && self.endpoints.contains_key(&L4Addr {
                family,
                proto,
                port,
                addr,
            })
    }

    /// Adds a front end on an address; returns the one it replaced.
    pub fn insert_frontend(&mut self, key: L4Addr, f: Frontend) -> Option<Frontend> {
        self.account(&f, key.proto, 1);
        let old = self.by_addr.insert(key, f);
        if let Some(o) = &old {
            self.account(o, key.proto, -1);
        }
        old
    }

    pub fn remove_frontend(&mut self, key: &L4Addr) -> Option<Frontend> {
        let old = self.by_addr.remove(key);
        if let Some(o) = &old {
            self.account(o, key.proto, -1);
        }
        old
    }

    /// Adds a node port; returns the one it replaced.
    pub fn insert_node_port(
        &mut self,
        family: FamilyNum,
        proto: u8,
        port: u16,
        f: Frontend,
    ) -> Option<Frontend> {
        self.account(&f, proto, 1);
        let old = self
            .node_ports
            .insert(node_port_key(family, proto, port), f);
        if let Some(o) = &old {
            self.account(o, proto, -1);
        }
        old
    }

    pub fn remove_node_port(
        &mut self,
        family: FamilyNum,
        proto: u8,
        port: u16,
    ) -> Option<Frontend> {
        let old = self.node_ports.remove(&node_port_key(family, proto, port));
        if let Some(o) = &old {
            self.account(o, proto, -1);
        }
        old
    }

    /// Counts an endpoint in (`delta` 1) or out (-1) of
    /// [`endpoints`](Self::endpoints) apart from any ring: a terminating
    /// endpoint that no ring uses still exists, and its connections go on.
    pub fn count_endpoint(&mut self, key: L4Addr, delta: i32) {
        count(&mut self.endpoints, key, delta);
    }

    /// Counts a cluster IP in (`delta` 1) or out (-1).
    pub fn count_cluster_ip(&mut self, family: FamilyNum, addr: u128, delta: i32) {
        count(&mut self.cluster_ips, (family, addr), delta);
    }

    /// Keeps [`endpoints`](Self::endpoints) equal to the union of the
    /// endpoints of every front end's rings.
    fn account(&mut self, f: &Frontend, proto: u8, delta: i32) {
        let mut seen: [Option<&Arc<ServiceRing>>; 3] = [None; 3];
        for (i, o) in f.outcome.iter().enumerate() {
            if let Outcome::Dnat { ring, .. } = o {
                if seen[..i].iter().flatten().any(|r| Arc::ptr_eq(r, ring)) {
                    continue;
                }
                seen[i] = Some(ring);
                let family = ring.family;
                for e in ring.endpoints.iter() {
                    let key = L4Addr {
                        family,
                        proto,
                        port: e.port,
                        addr: e.addr,
                    };
                    count(&mut self.endpoints, key, delta);
                }
            }
        }
    }

    /// Bytes held by the maps and the rings they reference (rings shared by
    /// several front ends counted once).
    pub fn memory_bytes(&self) -> usize {
        let mut rings: hashbrown::HashSet<*const ServiceRing> = hashbrown::HashSet::new();
        let mut ring_bytes = 0;
        for (_, f) in self.by_addr.iter().chain(self.node_ports.iter()) {
            for o in &f.outcome {
                if let Outcome::Dnat { ring, .. } = o {
                    if rings.insert(Arc::as_ptr(ring)) {
                        ring_bytes += ring.memory_bytes();
                    }
                }
            }
        }
        self.by_addr.memory_bytes()
            + self.node_ports.memory_bytes()
            + self.cluster_ips.memory_bytes()
            + self.endpoints.memory_bytes()
            + ring_bytes
    }
}

fn count<K: Hash + Eq + Clone>(map: &mut ShardedMap<K, u32>, key: K, delta: i32) {
    if delta > 0 {
        match map.get_mut(&key) {
            Some(n) => *n += delta as u32,
            None => {
                map.insert(key, delta as u32);
            }
        }
    } else {
        let gone = match map.get_mut(&key) {
            Some(n) => {
                *n = n.saturating_sub((-delta) as u32);
                *n == 0
            }
            None => false,
        };
        if gone {
            map.remove(&key);
        }
    }
}

impl core::fmt::Debug for ServiceTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServiceTable")
            .field("network", &self.network)
            .field("frontends", &self.by_addr.len())
            .field("node_ports", &self.node_ports.len())
            .field("cluster_ips", &self.cluster_ips.len())
            .field("endpoints", &self.endpoints.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(eps: &[(u32, u16)]) -> Arc<ServiceRing> {
        let eps: Vec<Endpoint> = eps
            .iter()
            .map(|&(a, p)| Endpoint {
                addr: a as u128,
                port: p,
            })
            .collect();
        Arc::new(ServiceRing::build(4, &eps).unwrap())
    }

    fn fe(r: &Arc<ServiceRing>) -> Frontend {
        let d = Outcome::Dnat {
            ring: r.clone(),
            masquerade: false,
        };
        Frontend {
            outcome: [d.clone(), d.clone(), d],
            source_ranges: None,
            affinity_timeout_s: 0,
            service_port: 1,
        }
    }

    const VIP: u32 = 0xac1e_000a; // 172.30.0.10

    fn key(addr: u32, port: u16) -> L4Addr {
        L4Addr {
            family: 4,
            proto: 6,
            port,
            addr: addr as u128,
        }
    }

    #[test]
    fn lookup_order() {
        let r = ring(&[(0x0a01_0001, 8080), (0x0a01_0002, 8080)]);
        let mut t = ServiceTable::new(0);
        t.insert_frontend(key(VIP, 80), fe(&r));
        t.count_cluster_ip(4, VIP as u128, 1);
        t.insert_node_port(4, 6, 30080, fe(&r));
        t.node_port_addrs.push((4, 0xc0a8_0002));
        t.service_cidrs.push(Prefix {
            family: 4,
            addr: 0xac1e_0000,
            len: 16,
        });
        assert!(matches!(
            t.lookup(4, 6, VIP as u128, 80),
            Lookup::Frontend(_)
        ));
        assert_eq!(t.lookup(4, 17, VIP as u128, 80), Lookup::Reject);
        assert_eq!(t.lookup(4, 6, VIP as u128, 81), Lookup::Reject);
        assert_eq!(t.lookup(4, 6, 0xac1e_0063, 80), Lookup::Drop);
        assert!(matches!(
            t.lookup(4, 6, 0xc0a8_0002, 30080),
            Lookup::Frontend(_)
        ));
        assert_eq!(t.lookup(4, 6, 0xc0a8_0003, 30080), Lookup::NoMatch);
        assert_eq!(t.lookup(6, 6, VIP as u128, 80), Lookup::NoMatch);
        assert!(t.is_endpoint(4, 6, 0x0a01_0001, 8080));
        assert!(!t.is_endpoint(4, 17, 0x0a01_0001, 8080));
        // Two front ends share the endpoints; removing one keeps them.
        t.remove_node_port(4, 6, 30080);
        assert!(t.is_endpoint(4, 6, 0x0a01_0002, 8080));
        t.remove_frontend(&key(VIP, 80));
        assert!(!t.is_endpoint(4, 6, 0x0a01_0002, 8080));
        assert!(t.endpoints.is_empty());
    }

    #[test]
    fn clones_share_untouched_shards() {
        let r = ring(&[(0x0a01_0001, 8080)]);
        let mut t = ServiceTable::new(0);
        for i in 0..10_000u32 {
            t.insert_frontend(key(VIP + i, 80), fe(&r));
        }
        let before = t.clone();
        t.remove_frontend(&key(VIP + 5, 80));
        let shared = t.by_addr.shared_shards(&before.by_addr);
        assert_eq!(shared, SHARDS - 1, "one change copies one shard");
        assert!(before.by_addr.get(&key(VIP + 5, 80)).is_some());
        assert!(t.by_addr.get(&key(VIP + 5, 80)).is_none());
    }

    #[test]
    fn ring_is_a_function_of_the_set() {
        let a = ring(&[(1, 80), (2, 80), (3, 80)]);
        let b = ring(&[(3, 80), (1, 80), (2, 80), (1, 80)]);
        assert_eq!(a, b);
        let e = a.pick(12345).unwrap();
        assert!(a.endpoints.contains(&e));
        assert!(ServiceRing::build(4, &[]).unwrap().pick(1).is_none());
    }

    #[test]
    fn source_classes_and_ranges() {
        let mut t = ServiceTable::new(0);
        t.pod_cidrs.push(Prefix {
            family: 4,
            addr: 0x0a00_0000,
            len: 8,
        });
        t.local_ips.push((4, 0xc0a8_0002));
        assert_eq!(t.source_class(4, 0x0a01_0203), SourceClass::Pod);
        assert_eq!(t.source_class(4, 0xc0a8_0002), SourceClass::Node);
        assert_eq!(t.source_class(4, 0x0101_0101), SourceClass::Other);
        assert_eq!(t.source_class(6, 0x0a01_0203), SourceClass::Other);
        let r = ring(&[(1, 80)]);
        let mut f = fe(&r);
        f.source_ranges = Some(Arc::from(vec![Prefix {
            family: 4,
            addr: 0x0101_0100,
            len: 24,
        }]));
        assert!(f.admits(4, 0x0101_0101));
        assert!(!f.admits(4, 0x0101_0201));
    }
}
