//! The policy table: NetworkPolicy and the cluster-wide admin tiers
//! compiled for the first packet of a connection.
//!
//! Built by the control plane (the control crate's `policy` module) from
//! NetworkPolicies, AdminNetworkPolicies, BaselineAdminNetworkPolicies and
//! ClusterNetworkPolicies; read by the [`service`](crate::stages::service)
//! stage once per new connection, on the real endpoint after Service
//! translation. Packets of known connections never come here: the
//! connection table holds them, so replies of allowed connections pass.
//!
//! # What a lookup does
//!
//! [`PolicyTable::evaluate`] takes (family, protocol, source, destination,
//! destination port):
//! 1. a source that is one of the node's addresses is allowed (Kubernetes:
//!    traffic from the node is always allowed);
//! 2. each address becomes an identity: a pod of the cluster (exact-match
//!    hash: its peer class, its ingress and egress profiles, its named
//!    container ports), or any other address (a binary search over the
//!    disjoint address ranges that the ipBlock / network / node peers cut
//!    the address space into, giving a peer class);
//! 3. egress at the source pod, then ingress at the destination pod, each
//!    decided by the pod's [`Profile`] against the other side's class:
//!    one hash lookup of (profile, peer class) gives the entries whose peer
//!    holds that class, merged in precedence order with the profile's
//!    entries for any peer, and scanned: Admin tier (Accept / Deny / Pass,
//!    by priority) → NetworkPolicy (allow entries; isolation denies when
//!    none matched) → Baseline tier → allowed.
//!
//! The cost is a few lookups and a scan of the entries of the rules that
//! select this pod and name this peer: independent of how many policies
//! the cluster has.
//!
//! A *peer class* is a set of addresses that every peer of every rule
//! either holds entirely or not at all, so one class id stands for all of
//! them; the compiler computes the classes.
//!
//! # Counters
//!
//! Each rule counts the connections it allowed and the packets and bytes
//! it denied ([`RuleCounters`]), updated once per evaluation (new
//! connections and denied packets only), with relaxed atomic adds shared by
//! the workers of one generation. A new generation starts from zero.
//!
//! # Networks
//!
//! A table describes one network. The top-level table is the pod
//! network's ([`POD_NETWORK`]): its pods are known by their
//! `status.podIPs`, and NetworkPolicy and the admin tiers fill it. It
//! carries one more table per secondary network that MultiNetworkPolicies
//! name ([`PolicyTable::with_networks`]), whose pods are known by their
//! addresses in that network (Multus attachments). A connection is judged
//! by the table of its own network only ([`PolicyTable::for_network`]), so
//! an address another network reuses is never mistaken for a pod; a
//! network without a table is not judged.

use crate::tables::services::FamilyNum;
use crate::tables::{NetworkId, POD_NETWORK};
use core::sync::atomic::{AtomicU64, Ordering};
use hashbrown::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// A peer class: an index into the classes the compiler made. Class 0 is
/// the class of addresses no peer names.
pub type ClassId = u32;
/// An index into the profiles; profile 0 is "no policy applies".
pub type ProfileId = u32;
/// An index into [`PolicyTable::rules`].
pub type RuleId = u32;
/// No rule: the default verdict decided.
pub const NO_RULE: RuleId = u32::MAX;

/// Where a rule sits in the evaluation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyTier {
    /// AdminNetworkPolicy, ClusterNetworkPolicy tier Admin.
    Admin = 0,
    /// NetworkPolicy.
    NetworkPolicy = 1,
    /// BaselineAdminNetworkPolicy, ClusterNetworkPolicy tier Baseline.
    Baseline = 2,
}

impl PolicyTier {
    pub fn name(self) -> &'static str {
        match self {
            PolicyTier::Admin => "Admin",
            PolicyTier::NetworkPolicy => "NetworkPolicy",
            PolicyTier::Baseline => "Baseline",
        }
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleAction {
    Allow,
    Deny,
    /// Skip the rest of the Admin tier (Admin tier only).
    Pass,
}

impl RuleAction {
    pub fn name(self) -> &'static str {
        match self {
            RuleAction::Allow => "Allow",
            RuleAction::Deny => "Deny",
            RuleAction::Pass => "Pass",
        }
    }
}

/// Which side of a connection a rule guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyDirection {
    Ingress,
    Egress,
}

impl PolicyDirection {
    pub fn name(self) -> &'static str {
        match self {
            PolicyDirection::Ingress => "Ingress",
            PolicyDirection::Egress => "Egress",
        }
    }
}

/// A rule as people know it, for explain and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// `NetworkPolicy ns/name`, `ClusterNetworkPolicy name`, ...
    pub policy: String,
    pub tier: PolicyTier,
    pub direction: PolicyDirection,
    /// The rule's index in the policy's ingress or egress list; `None` for
    /// a NetworkPolicy's isolation (no rule allowed the connection).
    pub index: Option<u32>,
    /// The rule's `name` field, where the kind has one.
    pub name: Option<String>,
    pub action: RuleAction,
}

/// One entry of a profile: a rule's action on a protocol and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyEntry {
    /// Precedence across the whole table: lower is evaluated first. The
    /// compiler orders by tier, priority, policy and rule index.
    pub order: u32,
    pub rule: RuleId,
    pub tier: PolicyTier,
    pub action: RuleAction,
    pub ports: PortMatch,
}

/// Which packets an entry matches, beyond its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortMatch {
    /// Every protocol, every port (a rule without ports).
    Any,
    /// One protocol, destination ports `lo..=hi`.
    Range { proto: u8, lo: u16, hi: u16 },
    /// A container port name on the destination pod; `proto` 0 for any
    /// protocol (the container port's).
    Named { proto: u8, name: u32 },
}

/// A named container port of a pod: interned name, protocol, number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NamedPort {
    pub name: u32,
    pub proto: u8,
    pub port: u16,
}

/// A pod as the compiler describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    pub addresses: Vec<IpAddr>,
    pub class: ClassId,
    pub ingress: ProfileId,
    pub egress: ProfileId,
    pub named_ports: Vec<NamedPort>,
}

/// A profile as the compiler describes it: the policies that select a pod
/// in one direction, compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileSpec {
    /// A NetworkPolicy selects the pod in this direction.
    pub isolated: bool,
    /// The rule reported when isolation denies (the first such policy).
    pub isolation_rule: RuleId,
    /// Entries whose peer is every address.
    pub any_peer: Vec<PolicyEntry>,
}

/// Everything the compiler produces; [`PolicyTable::build`] flattens it.
#[derive(Debug, Clone, Default)]
pub struct PolicyParts {
    pub rules: Vec<RuleInfo>,
    pub pods: Vec<PodSpec>,
    /// Address prefixes and the class of the addresses whose longest match
    /// they are (addresses no prefix covers are class 0).
    pub prefixes: Vec<(IpAddr, u8, ClassId)>,
    /// Index 0 must be the empty profile (it is forced to be).
    pub profiles: Vec<ProfileSpec>,
    /// Entries per (profile, peer class), any order.
    pub entries: Vec<((ProfileId, ClassId), Vec<PolicyEntry>)>,
    /// The node's own addresses (allowed as sources).
    pub node_addresses: Vec<IpAddr>,
    /// Interned named-port names, indexed by the ids in entries and pods.
    pub port_names: Vec<String>,
}

/// An identity of a pod address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PodIdentity {
    class: ClassId,
    ingress: ProfileId,
    egress: ProfileId,
    ports_at: u32,
    ports_len: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Profile {
    isolated: bool,
    isolation_rule: RuleId,
    any_at: u32,
    any_len: u32,
}

/// Per-rule counters, shared by the workers of one generation.
#[derive(Debug, Default)]
pub struct RuleCounters {
    allowed: Box<[AtomicU64]>,
    denied_packets: Box<[AtomicU64]>,
    denied_bytes: Box<[AtomicU64]>,
}

/// One rule's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleCount {
    /// Connections this rule allowed.
    pub allowed_connections: u64,
    pub denied_packets: u64,
    pub denied_bytes: u64,
}

impl RuleCounters {
    fn new(n: usize) -> RuleCounters {
        let z = || (0..n).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        RuleCounters {
            allowed: z(),
            denied_packets: z(),
            denied_bytes: z(),
        }
    }

    pub fn get(&self, rule: RuleId) -> RuleCount {
        let i = rule as usize;
        let l = |a: &[AtomicU64]| a.get(i).map_or(0, |c| c.load(Ordering::Relaxed));
        RuleCount {
            allowed_connections: l(&self.allowed),
            denied_packets: l(&self.denied_packets),
            denied_bytes: l(&self.denied_bytes),
        }
    }
}

struct Compiled {
    rules: Box<[RuleInfo]>,
    pods: HashMap<(FamilyNum, u128), PodIdentity>,
    named_ports: Box<[NamedPort]>,
    /// Sorted starts of disjoint ranges covering the space, and their class.
    ranges4: Box<[(u128, ClassId)]>,
    ranges6: Box<[(u128, ClassId)]>,
    profiles: Box<[Profile]>,
    any_entries: Box<[PolicyEntry]>,
    pairs: HashMap<(ProfileId, ClassId), (u32, u32)>,
    pair_entries: Box<[PolicyEntry]>,
    node_addresses: Box<[(FamilyNum, u128)]>,
    port_names: Box<[String]>,
    counters: RuleCounters,
}

/// The compiled policies of one generation. Cloning shares them.
#[derive(Clone, Default)]
pub struct PolicyTable {
    inner: Option<Arc<Compiled>>,
    /// The secondary networks' tables, indexed by [`NetworkId`] (entry
    /// [`POD_NETWORK`] and networks without MultiNetworkPolicy are empty
    /// tables); `None` when no network has one.
    networks: Option<Arc<[PolicyTable]>>,
}

impl core::fmt::Debug for PolicyTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PolicyTable")
            .field("rules", &self.rules().len())
            .finish()
    }
}

/// The verdict on a new connection, and the rule that decided it
/// ([`NO_RULE`] when the default did).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyVerdict {
    pub allow: bool,
    pub rule: RuleId,
}

impl PolicyVerdict {
    pub const ALLOW: PolicyVerdict = PolicyVerdict {
        allow: true,
        rule: NO_RULE,
    };
}

/// How one direction was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectionDecision {
    /// The address is a pod whose policies were consulted.
    pub applies: bool,
    pub allow: bool,
    pub rule: RuleId,
    /// A Pass rule was met on the way (Admin tier).
    pub passed_by: RuleId,
}

impl DirectionDecision {
    const DEFAULT: DirectionDecision = DirectionDecision {
        applies: false,
        allow: true,
        rule: NO_RULE,
        passed_by: NO_RULE,
    };
}

/// What [`PolicyTable::explain`] finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Explanation {
    pub verdict: PolicyVerdict,
    /// The source is one of the node's addresses.
    pub from_node: bool,
    pub source_is_pod: bool,
    pub destination_is_pod: bool,
    pub source_class: ClassId,
    pub destination_class: ClassId,
    /// At the source pod.
    pub egress: DirectionDecision,
    /// At the destination pod.
    pub ingress: DirectionDecision,
}

/// A refused [`PolicyParts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyBuildError(pub String);

impl core::fmt::Display for PolicyBuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyBuildError {}

fn key_of(ip: IpAddr) -> (FamilyNum, u128) {
    match ip {
        IpAddr::V4(a) => (4, u32::from(a) as u128),
        IpAddr::V6(a) => (6, u128::from(a)),
    }
}

/// Disjoint ranges from prefixes under longest-prefix-match: a sorted
/// list of (first address, value), the first one starting at 0 (value 0
/// where no prefix covers). `bits` is 32 or 128.
pub fn prefix_ranges(mut prefixes: Vec<(u128, u8, ClassId)>, bits: u8) -> Box<[(u128, ClassId)]> {
    let span = |addr: u128, len: u8| -> (u128, u128) {
        let host_bits = (bits - len.min(bits)) as u32;
        let mask = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let max = if bits == 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        let start = addr & !mask & max;
        (start, start | (mask & max))
    };
    prefixes.sort_by_key(|&(a, l, _)| (span(a, l).0, l));
    prefixes.dedup_by_key(|&mut (a, l, _)| (span(a, l).0, l));
    let mut out: Vec<(u128, ClassId)> = vec![(0, 0)];
    fn push(start: u128, class: ClassId, out: &mut Vec<(u128, ClassId)>) {
        if let Some(last) = out.last_mut() {
            if last.0 == start {
                last.1 = class;
                if out.len() >= 2 && out[out.len() - 2].1 == class {
                    out.pop();
                }
                return;
            }
            if last.1 == class {
                return;
            }
        }
        out.push((start, class));
    }
    // Open (enclosing) prefixes: (end, class).
    let mut stack: Vec<(u128, ClassId)> = Vec::new();
    for &(a, l, class) in &prefixes {
        let (start, end) = span(a, l);
        while let Some(&(top_end, _)) = stack.last() {
            if top_end >= start {
                break;
            }
            stack.pop();
            // After the closed prefix: its encloser (or nothing) again.
            let next_class = stack.last().map_or(0, |t| t.1);
            if let Some(after) = top_end.checked_add(1) {
                push(after, next_class, &mut out);
            }
        }
        push(start, class, &mut out);
        stack.push((end, class));
    }
    while let Some((top_end, _)) = stack.pop() {
        let next_class = stack.last().map_or(0, |t| t.1);
        if let Some(after) = top_end.checked_add(1) {
            let max = if bits == 128 {
                u128::MAX
            } else {
                (1u128 << bits) - 1
            };
            if after <= max {
                push(after, next_class, &mut out);
            }
        }
    }
    out.into_boxed_slice()
}

impl PolicyTable {
    /// Flattens the compiler's output. Indices out of range are refused,
    /// so evaluation never meets one.
    pub fn build(parts: PolicyParts) -> Result<PolicyTable, PolicyBuildError> {
        let n_rules = parts.rules.len();
        let mut profiles_in = parts.profiles;
        if profiles_in.is_empty() {
            profiles_in.push(ProfileSpec::default());
        }
        profiles_in[0] = ProfileSpec {
            isolated: false,
            isolation_rule: NO_RULE,
            any_peer: Vec::new(),
        };
        let n_profiles = profiles_in.len();
        let check_entry = |e: &PolicyEntry| -> Result<(), PolicyBuildError> {
            if e.rule as usize >= n_rules {
                return Err(PolicyBuildError(format!(
                    "entry names rule {} of {n_rules}",
                    e.rule
                )));
            }
            Ok(())
        };
        let mut any_entries = Vec::new();
        let mut profiles = Vec::with_capacity(n_profiles);
        for p in profiles_in {
            if p.isolated && p.isolation_rule as usize >= n_rules {
                return Err(PolicyBuildError("isolation rule out of range".into()));
            }
            let mut any = p.any_peer;
            any.sort_by_key(|e| e.order);
            for e in &any {
                check_entry(e)?;
            }
            profiles.push(Profile {
                isolated: p.isolated,
                isolation_rule: p.isolation_rule,
                any_at: any_entries.len() as u32,
                any_len: any.len() as u32,
            });
            any_entries.extend(any);
        }
        let mut pairs = HashMap::with_capacity(parts.entries.len());
        let mut pair_entries = Vec::new();
        for ((profile, class), mut list) in parts.entries {
            if profile as usize >= n_profiles || profile == 0 {
                return Err(PolicyBuildError(format!("entries for profile {profile}")));
            }
            list.sort_by_key(|e| e.order);
            for e in &list {
                check_entry(e)?;
            }
            pairs.insert(
                (profile, class),
                (pair_entries.len() as u32, list.len() as u32),
            );
            pair_entries.extend(list);
        }
        let mut pods = HashMap::with_capacity(parts.pods.len());
        let mut named_ports = Vec::new();
        for p in parts.pods {
            if p.ingress as usize >= n_profiles || p.egress as usize >= n_profiles {
                return Err(PolicyBuildError("pod profile out of range".into()));
            }
            let id = PodIdentity {
                class: p.class,
                ingress: p.ingress,
                egress: p.egress,
                ports_at: named_ports.len() as u32,
                ports_len: p.named_ports.len() as u32,
            };
            named_ports.extend(p.named_ports);
            for a in p.addresses {
                pods.insert(key_of(a), id);
            }
        }
        let (mut p4, mut p6) = (Vec::new(), Vec::new());
        for (a, len, class) in parts.prefixes {
            match a {
                IpAddr::V4(a) if len <= 32 => p4.push((u32::from(a) as u128, len, class)),
                IpAddr::V6(a) if len <= 128 => p6.push((u128::from(a), len, class)),
                _ => return Err(PolicyBuildError(format!("prefix {a}/{len}"))),
            }
        }
        Ok(PolicyTable {
            networks: None,
            inner: Some(Arc::new(Compiled {
                rules: parts.rules.into_boxed_slice(),
                pods,
                named_ports: named_ports.into_boxed_slice(),
                ranges4: prefix_ranges(p4, 32),
                ranges6: prefix_ranges(p6, 128),
                profiles: profiles.into_boxed_slice(),
                any_entries: any_entries.into_boxed_slice(),
                pairs,
                pair_entries: pair_entries.into_boxed_slice(),
                node_addresses: parts.node_addresses.into_iter().map(key_of).collect(),
                port_names: parts.port_names.into_boxed_slice(),
                counters: RuleCounters::new(n_rules),
            })),
        })
    }

    /// No policy at all, in any network: every connection is allowed
    /// without a lookup.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.inner.is_none() && self.networks.is_none()
    }

    /// This (pod-network) table with the secondary networks' tables,
    /// `networks[id]` for network `id` (entry [`POD_NETWORK`] is ignored;
    /// the secondary tables' own secondary tables are dropped). Trailing
    /// and all-empty lists are stored as nothing.
    pub fn with_networks(mut self, networks: Vec<PolicyTable>) -> PolicyTable {
        let mut networks: Vec<PolicyTable> = networks
            .into_iter()
            .enumerate()
            .map(|(id, t)| {
                if id == POD_NETWORK as usize || id > NetworkId::MAX as usize {
                    PolicyTable::default()
                } else {
                    PolicyTable {
                        inner: t.inner,
                        networks: None,
                    }
                }
            })
            .collect();
        while networks.last().is_some_and(|t| t.inner.is_none()) {
            networks.pop();
        }
        self.networks = (!networks.is_empty()).then(|| networks.into());
        self
    }

    /// The table that judges new connections in `network`: this one for
    /// the pod network, the network's own for a secondary network; `None`
    /// when that network has no policy (nothing is judged there).
    #[inline]
    pub fn for_network(&self, network: NetworkId) -> Option<&PolicyTable> {
        if network == POD_NETWORK {
            return self.inner.is_some().then_some(self);
        }
        self.networks
            .as_deref()?
            .get(network as usize)
            .filter(|t| t.inner.is_some())
    }

    /// Whether a new connection in `network` is judged
    /// ([`for_network`](Self::for_network) has a table for it).
    #[inline]
    pub fn applies_to(&self, network: NetworkId) -> bool {
        self.for_network(network).is_some()
    }

    /// Every network's table that has policy: the pod network's first,
    /// then the secondary networks' by id.
    pub fn tables(&self) -> impl Iterator<Item = (NetworkId, &PolicyTable)> {
        let pod = self.inner.is_some().then_some((POD_NETWORK, self));
        let secondary = self
            .networks
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .enumerate()
            .filter(|(_, t)| t.inner.is_some())
            .map(|(id, t)| (id as NetworkId, t));
        pod.into_iter().chain(secondary)
    }

    pub fn rules(&self) -> &[RuleInfo] {
        self.inner.as_ref().map_or(&[], |c| &c.rules)
    }

    pub fn rule(&self, rule: RuleId) -> Option<&RuleInfo> {
        self.rules().get(rule as usize)
    }

    pub fn port_name(&self, id: u32) -> Option<&str> {
        self.inner
            .as_ref()
            .and_then(|c| c.port_names.get(id as usize))
            .map(String::as_str)
    }

    /// The counters of the rules of this generation.
    pub fn counters(&self) -> Option<&RuleCounters> {
        self.inner.as_ref().map(|c| &c.counters)
    }

    /// Counts a verdict: a connection allowed by its rule, or a packet of
    /// `bytes` denied by its rule. Default verdicts are not counted here.
    #[inline]
    pub fn count(&self, v: PolicyVerdict, bytes: u32) {
        let Some(c) = &self.inner else { return };
        let i = v.rule as usize;
        if v.allow {
            if let Some(a) = c.counters.allowed.get(i) {
                a.fetch_add(1, Ordering::Relaxed);
            }
        } else if let (Some(p), Some(b)) = (
            c.counters.denied_packets.get(i),
            c.counters.denied_bytes.get(i),
        ) {
            p.fetch_add(1, Ordering::Relaxed);
            b.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// Table size estimate in bytes, the secondary networks' included.
    pub fn memory_bytes(&self) -> usize {
        let secondary: usize = self
            .networks
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(PolicyTable::memory_bytes)
            .sum();
        secondary + self.own_memory_bytes()
    }

    fn own_memory_bytes(&self) -> usize {
        let Some(c) = &self.inner else { return 0 };
        use core::mem::size_of;
        c.pods.capacity() * (size_of::<((FamilyNum, u128), PodIdentity)>() + 1)
            + c.pairs.capacity() * (size_of::<((ProfileId, ClassId), (u32, u32))>() + 1)
            + (c.pair_entries.len() + c.any_entries.len()) * size_of::<PolicyEntry>()
            + c.named_ports.len() * size_of::<NamedPort>()
            + (c.ranges4.len() + c.ranges6.len()) * size_of::<(u128, ClassId)>()
            + c.profiles.len() * size_of::<Profile>()
            + c.rules.len() * (size_of::<RuleInfo>() + 48)
            + c.rules.len() * 24
    }

    /// Whether a connection from `src` to `dst:dport` may be created.
    /// Addresses of family 4 sit in the low 32 bits.
    #[inline]
    pub fn evaluate(
        &self,
        family: FamilyNum,
        proto: u8,
        src: u128,
        dst: u128,
        dport: u16,
    ) -> PolicyVerdict {
        match &self.inner {
            None => PolicyVerdict::ALLOW,
            Some(c) => c.explain(family, proto, src, dst, dport).verdict,
        }
    }

    /// The verdict with how each direction was decided: the same
    /// computation [`evaluate`](Self::evaluate) does.
    pub fn explain(
        &self,
        family: FamilyNum,
        proto: u8,
        src: u128,
        dst: u128,
        dport: u16,
    ) -> Explanation {
        match &self.inner {
            Some(c) => c.explain(family, proto, src, dst, dport),
            None => Explanation {
                verdict: PolicyVerdict::ALLOW,
                from_node: false,
                source_is_pod: false,
                destination_is_pod: false,
                source_class: 0,
                destination_class: 0,
                egress: DirectionDecision::DEFAULT,
                ingress: DirectionDecision::DEFAULT,
            },
        }
    }
}

impl Compiled {
    #[inline]
    fn address_class(&self, family: FamilyNum, addr: u128) -> ClassId {
        let r: &[(u128, ClassId)] = if family == 4 {
            &self.ranges4
        } else {
            &self.ranges6
        };
        let i = r.partition_point(|&(start, _)| start <= addr);
        r.get(i.wrapping_sub(1)).map_or(0, |&(_, c)| c)
    }

    #[inline]
    fn explain(
        &self,
        family: FamilyNum,
        proto: u8,
        src: u128,
        dst: u128,
        dport: u16,
    ) -> Explanation {
        let src_pod = self.pods.get(&(family, src)).copied();
        let dst_pod = self.pods.get(&(family, dst)).copied();
        let source_class = src_pod.map_or_else(|| self.address_class(family, src), |p| p.class);
        let destination_class =
            dst_pod.map_or_else(|| self.address_class(family, dst), |p| p.class);
        let from_node = self.node_addresses.contains(&(family, src));
        let mut out = Explanation {
            verdict: PolicyVerdict::ALLOW,
            from_node,
            source_is_pod: src_pod.is_some(),
            destination_is_pod: dst_pod.is_some(),
            source_class,
            destination_class,
            egress: DirectionDecision::DEFAULT,
            ingress: DirectionDecision::DEFAULT,
        };
        if from_node {
            return out;
        }
        let dst_ports: &[NamedPort] = match dst_pod {
            Some(p) => self
                .named_ports
                .get(p.ports_at as usize..(p.ports_at + p.ports_len) as usize)
                .unwrap_or(&[]),
            None => &[],
        };
        if let Some(p) = src_pod {
            out.egress = self.decide(p.egress, destination_class, proto, dport, dst_ports);
        }
        if out.egress.allow {
            if let Some(p) = dst_pod {
                out.ingress = self.decide(p.ingress, source_class, proto, dport, dst_ports);
            }
        }
        out.verdict = if !out.egress.allow {
            PolicyVerdict {
                allow: false,
                rule: out.egress.rule,
            }
        } else if !out.ingress.allow {
            PolicyVerdict {
                allow: false,
                rule: out.ingress.rule,
            }
        } else {
            PolicyVerdict {
                allow: true,
                rule: if out.ingress.rule != NO_RULE {
                    out.ingress.rule
                } else {
                    out.egress.rule
                },
            }
        };
        out
    }

    /// One direction at one pod: its profile against the peer's class.
    #[inline]
    fn decide(
        &self,
        profile: ProfileId,
        peer: ClassId,
        proto: u8,
        dport: u16,
        dst_ports: &[NamedPort],
    ) -> DirectionDecision {
        let mut d = DirectionDecision {
            applies: true,
            ..DirectionDecision::DEFAULT
        };
        if profile == 0 {
            return d;
        }
        let Some(p) = self.profiles.get(profile as usize) else {
            return d;
        };
        let any = self
            .any_entries
            .get(p.any_at as usize..(p.any_at + p.any_len) as usize)
            .unwrap_or(&[]);
        let specific = match self.pairs.get(&(profile, peer)) {
            Some(&(at, len)) => self
                .pair_entries
                .get(at as usize..(at + len) as usize)
                .unwrap_or(&[]),
            None => &[],
        };
        let (mut i, mut j) = (0, 0);
        let mut passed = false;
        let mut baseline_reached = false;
        loop {
            // The next entry in precedence order from the two sorted lists.
            let e = match (any.get(i), specific.get(j)) {
                (Some(a), Some(b)) if a.order <= b.order => {
                    i += 1;
                    a
                }
                (_, Some(b)) => {
                    j += 1;
                    b
                }
                (Some(a), None) => {
                    i += 1;
                    a
                }
                (None, None) => break,
            };
            match e.tier {
                PolicyTier::Admin if passed => continue,
                PolicyTier::Baseline if !baseline_reached => {
                    baseline_reached = true;
                    if p.isolated {
                        d.allow = false;
                        d.rule = p.isolation_rule;
                        return d;
                    }
                }
                _ => {}
            }
            if !matches(e.ports, proto, dport, dst_ports) {
                continue;
            }
            match e.action {
                // Pass in the Baseline tier: on to the default.
                RuleAction::Pass if e.tier == PolicyTier::Baseline => {
                    d.rule = e.rule;
                    return d;
                }
                RuleAction::Pass => {
                    passed = true;
                    d.passed_by = e.rule;
                }
                RuleAction::Allow => {
                    d.rule = e.rule;
                    return d;
                }
                RuleAction::Deny => {
                    d.allow = false;
                    d.rule = e.rule;
                    return d;
                }
            }
        }
        if p.isolated && !baseline_reached {
            d.allow = false;
            d.rule = p.isolation_rule;
        }
        d
    }
}

#[inline]
fn matches(m: PortMatch, proto: u8, dport: u16, dst_ports: &[NamedPort]) -> bool {
    match m {
        PortMatch::Any => true,
        PortMatch::Range { proto: p, lo, hi } => p == proto && lo <= dport && dport <= hi,
        PortMatch::Named { proto: p, name } => dst_ports.iter().any(|n| {
            n.name == name && n.proto == proto && (p == 0 || p == proto) && n.port == dport
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: u8 = 6;
    const UDP: u8 = 17;

    fn a4(s: &str) -> u128 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()) as u128
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn rule(policy: &str, tier: PolicyTier, action: RuleAction, index: Option<u32>) -> RuleInfo {
        RuleInfo {
            policy: policy.into(),
            tier,
            direction: PolicyDirection::Ingress,
            index,
            name: None,
            action,
        }
    }

    fn entry(
        order: u32,
        rule: RuleId,
        tier: PolicyTier,
        action: RuleAction,
        ports: PortMatch,
    ) -> PolicyEntry {
        PolicyEntry {
            order,
            rule,
            tier,
            action,
            ports,
        }
    }

    #[test]
    fn ranges_follow_longest_prefix_match() {
        let r = prefix_ranges(
            vec![
                (a4("10.0.0.0"), 8, 1),
                (a4("10.1.0.0"), 16, 2),
                (a4("10.1.2.3"), 32, 3),
                (a4("192.168.0.0"), 16, 4),
                (0, 0, 5),
            ],
            32,
        );
        let c = Compiled {
            rules: Box::new([]),
            pods: HashMap::new(),
            named_ports: Box::new([]),
            ranges4: r,
            ranges6: prefix_ranges(vec![(0, 0, 7), (1u128 << 127, 1, 8)], 128),
            profiles: Box::new([]),
            any_entries: Box::new([]),
            pairs: HashMap::new(),
            pair_entries: Box::new([]),
            node_addresses: Box::new([]),
            port_names: Box::new([]),
            counters: RuleCounters::new(0),
        };
        let class = |s: &str| c.address_class(4, a4(s));
        assert_eq!(class("1.2.3.4"), 5);
        assert_eq!(class("10.0.0.1"), 1);
        assert_eq!(class("10.1.0.1"), 2);
        assert_eq!(class("10.1.2.3"), 3);
        assert_eq!(class("10.1.2.4"), 2);
        assert_eq!(class("10.2.0.0"), 1);
        assert_eq!(class("10.255.255.255"), 1);
        assert_eq!(class("11.0.0.0"), 5);
        assert_eq!(class("192.168.255.255"), 4);
        assert_eq!(class("255.255.255.255"), 5);
        assert_eq!(c.address_class(6, 1), 7);
        assert_eq!(c.address_class(6, u128::MAX), 8);
        // Nothing covered: class 0.
        let r = prefix_ranges(vec![(a4("10.0.0.0"), 8, 1)], 32);
        assert_eq!(&r[..], &[(0, 0), (a4("10.0.0.0"), 1), (a4("11.0.0.0"), 0)]);
    }

    /// Pods 10.0.0.1 (class 1, ingress profile 1) and 10.0.0.2 (class 2,
    /// no policy); 192.168.0.0/16 is class 3.
    fn table() -> PolicyTable {
        let rules = vec![
            rule(
                "ClusterNetworkPolicy deny",
                PolicyTier::Admin,
                RuleAction::Deny,
                Some(0),
            ),
            rule(
                "ClusterNetworkPolicy pass",
                PolicyTier::Admin,
                RuleAction::Pass,
                Some(0),
            ),
            rule(
                "NetworkPolicy x/web",
                PolicyTier::NetworkPolicy,
                RuleAction::Allow,
                Some(0),
            ),
            rule(
                "NetworkPolicy x/web",
                PolicyTier::NetworkPolicy,
                RuleAction::Deny,
                None,
            ),
            rule(
                "ClusterNetworkPolicy base",
                PolicyTier::Baseline,
                RuleAction::Allow,
                Some(0),
            ),
        ];
        let profiles = vec![
            ProfileSpec::default(),
            ProfileSpec {
                isolated: true,
                isolation_rule: 3,
                any_peer: vec![entry(
                    0,
                    0,
                    PolicyTier::Admin,
                    RuleAction::Deny,
                    PortMatch::Range {
                        proto: TCP,
                        lo: 22,
                        hi: 22,
                    },
                )],
            },
        ];
        let entries = vec![
            (
                (1, 2),
                vec![
                    entry(
                        10,
                        2,
                        PolicyTier::NetworkPolicy,
                        RuleAction::Allow,
                        PortMatch::Range {
                            proto: TCP,
                            lo: 80,
                            hi: 90,
                        },
                    ),
                    entry(
                        11,
                        2,
                        PolicyTier::NetworkPolicy,
                        RuleAction::Allow,
                        PortMatch::Named {
                            proto: UDP,
                            name: 0,
                        },
                    ),
                ],
            ),
            (
                (1, 3),
                vec![
                    entry(1, 1, PolicyTier::Admin, RuleAction::Pass, PortMatch::Any),
                    entry(
                        20,
                        4,
                        PolicyTier::Baseline,
                        RuleAction::Allow,
                        PortMatch::Any,
                    ),
                ],
            ),
        ];
        PolicyTable::build(PolicyParts {
            rules,
            pods: vec![
                PodSpec {
                    addresses: vec![ip("10.0.0.1")],
                    class: 1,
                    ingress: 1,
                    egress: 0,
                    named_ports: vec![NamedPort {
                        name: 0,
                        proto: UDP,
                        port: 53,
                    }],
                },
                PodSpec {
                    addresses: vec![ip("10.0.0.2")],
                    class: 2,
                    ingress: 0,
                    egress: 0,
                    named_ports: vec![],
                },
            ],
            prefixes: vec![(ip("192.168.0.0"), 16, 3)],
            profiles,
            entries,
            node_addresses: vec![ip("10.0.0.254")],
            port_names: vec!["dns".into()],
        })
        .unwrap()
    }

    #[test]
    fn tiers_in_order() {
        let t = table();
        let ev = |src: &str, proto, port| t.evaluate(4, proto, a4(src), a4("10.0.0.1"), port);
        // NetworkPolicy allows the pod 10.0.0.2 on 80-90/TCP and the named port.
        assert_eq!(
            ev("10.0.0.2", TCP, 80),
            PolicyVerdict {
                allow: true,
                rule: 2
            }
        );
        assert_eq!(
            ev("10.0.0.2", TCP, 90),
            PolicyVerdict {
                allow: true,
                rule: 2
            }
        );
        assert_eq!(
            ev("10.0.0.2", TCP, 91),
            PolicyVerdict {
                allow: false,
                rule: 3
            }
        );
        assert_eq!(
            ev("10.0.0.2", UDP, 53),
            PolicyVerdict {
                allow: true,
                rule: 2
            }
        );
        assert_eq!(
            ev("10.0.0.2", UDP, 54),
            PolicyVerdict {
                allow: false,
                rule: 3
            }
        );
        // The admin deny on 22 comes first for everyone.
        assert_eq!(
            ev("10.0.0.2", TCP, 22),
            PolicyVerdict {
                allow: false,
                rule: 0
            }
        );
        // 192.168/16 is passed, then isolation denies before the baseline.
        assert_eq!(
            ev("192.168.1.1", TCP, 80),
            PolicyVerdict {
                allow: false,
                rule: 3
            }
        );
        // An unknown address: isolated.
        assert_eq!(
            ev("8.8.8.8", TCP, 80),
            PolicyVerdict {
                allow: false,
                rule: 3
            }
        );
        // The node is always allowed, even on 22.
        assert!(ev("10.0.0.254", TCP, 22).allow);
        // A destination without policy.
        assert!(t.evaluate(4, TCP, a4("10.0.0.1"), a4("10.0.0.2"), 1).allow);
        assert!(PolicyTable::default().evaluate(4, TCP, 1, 2, 3).allow);
        let x = t.explain(4, TCP, a4("192.168.1.1"), a4("10.0.0.1"), 80);
        assert_eq!(x.ingress.passed_by, 1);
        assert!(!x.source_is_pod && x.destination_is_pod);
    }

    #[test]
    fn baseline_decides_when_not_isolated() {
        let mut parts_profiles = vec![
            ProfileSpec::default(),
            ProfileSpec {
                isolated: false,
                isolation_rule: NO_RULE,
                any_peer: vec![entry(
                    5,
                    0,
                    PolicyTier::Baseline,
                    RuleAction::Deny,
                    PortMatch::Any,
                )],
            },
        ];
        let t = PolicyTable::build(PolicyParts {
            rules: vec![rule("b", PolicyTier::Baseline, RuleAction::Deny, Some(0))],
            pods: vec![PodSpec {
                addresses: vec![ip("10.0.0.1")],
                class: 1,
                ingress: 1,
                egress: 1,
                named_ports: vec![],
            }],
            profiles: std::mem::take(&mut parts_profiles),
            ..Default::default()
        })
        .unwrap();
        let v = t.evaluate(4, TCP, a4("1.1.1.1"), a4("10.0.0.1"), 80);
        assert_eq!(
            v,
            PolicyVerdict {
                allow: false,
                rule: 0
            }
        );
        // Egress at the pod is denied too.
        let v = t.evaluate(4, TCP, a4("10.0.0.1"), a4("1.1.1.1"), 80);
        assert_eq!(
            v,
            PolicyVerdict {
                allow: false,
                rule: 0
            }
        );
        t.count(v, 100);
        t.count(v, 50);
        let c = t.counters().unwrap().get(0);
        assert_eq!((c.denied_packets, c.denied_bytes), (2, 150));
    }

    #[test]
    fn each_network_is_judged_by_its_own_table() {
        let red = table();
        let pod = PolicyTable::default();
        assert!(pod.is_empty() && pod.for_network(POD_NETWORK).is_none());
        // Network 2 has the table; 1 and 3 have none; entry 0 of the list
        // is never the pod network's.
        let t = PolicyTable::default().with_networks(vec![
            red.clone(),
            PolicyTable::default(),
            red.clone(),
            PolicyTable::default(),
        ]);
        assert!(!t.is_empty());
        assert!(t.for_network(POD_NETWORK).is_none());
        assert!(t.for_network(1).is_none() && t.for_network(3).is_none());
        assert!(t.for_network(NetworkId::MAX).is_none());
        let r = t.for_network(2).unwrap();
        assert!(!r.evaluate(4, TCP, a4("8.8.8.8"), a4("10.0.0.1"), 80).allow);
        assert!(t.applies_to(2) && !t.applies_to(1));
        assert_eq!(t.tables().map(|(id, _)| id).collect::<Vec<_>>(), [2]);
        assert_eq!(t.memory_bytes(), red.memory_bytes());
        // With a pod-network table too: both, the pod network first; the
        // secondary tables share the counters of the table they were.
        let t = red
            .clone()
            .with_networks(vec![PolicyTable::default(), red.clone()]);
        assert_eq!(t.tables().map(|(id, _)| id).collect::<Vec<_>>(), [0, 1]);
        let v = t
            .for_network(1)
            .unwrap()
            .evaluate(4, TCP, a4("8.8.8.8"), a4("10.0.0.1"), 80);
        t.for_network(1).unwrap().count(v, 60);
        assert_eq!(red.counters().unwrap().get(3).denied_packets, 1);
        // Nothing but empty tables: stored as nothing.
        let t = PolicyTable::default().with_networks(vec![PolicyTable::default(); 3]);
        assert!(t.is_empty() && t.tables().next().is_none());
    }

    #[test]
    fn bad_parts_are_refused() {
        let bad = PolicyParts {
            rules: vec![],
            profiles: vec![ProfileSpec::default(), ProfileSpec::default()],
            entries: vec![(
                (1, 0),
                vec![entry(
                    0,
                    9,
                    PolicyTier::Admin,
                    RuleAction::Deny,
                    PortMatch::Any,
                )],
            )],
            ..Default::default()
        };
        assert!(PolicyTable::build(bad).is_err());
        let bad = PolicyParts {
            pods: vec![PodSpec {
                addresses: vec![],
                class: 0,
                ingress: 7,
                egress: 0,
                named_ports: vec![],
            }],
            ..Default::default()
        };
        assert!(PolicyTable::build(bad).is_err());
        let bad = PolicyParts {
            prefixes: vec![(ip("10.0.0.0"), 33, 1)],
            ..Default::default()
        };
        assert!(PolicyTable::build(bad).is_err());
    }
}
