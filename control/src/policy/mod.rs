//! The policy compiler: NetworkPolicies and the cluster-wide tiers
//! (AdminNetworkPolicy, BaselineAdminNetworkPolicy, ClusterNetworkPolicy)
//! in, a [`PolicyTable`] out.
//!
//! Reads: Namespaces (labels), Pods (labels, IPs, container ports; pods on
//! the host network are not pods to policy: their address is the node's),
//! Nodes (labels, addresses, for `nodes` peers) and the four policy kinds,
//! from the desired state. Pure: the same objects give the same table.
//!
//! # How
//!
//! 1. Every policy becomes rules in one internal form: tier, precedence
//!    (tier, priority, kind, name, rule index), direction, action, peers,
//!    ports. v1alpha1 AdminNetworkPolicy / BaselineAdminNetworkPolicy and
//!    v1alpha2 ClusterNetworkPolicy convert to the same form; a
//!    NetworkPolicy's rules are Allow rules in the NetworkPolicy tier, and
//!    it isolates the pods it selects in each of its policy types.
//! 2. Selectors become address sets: a peer by namespaces and/or pods is
//!    the set of pods it selects (resolved once per distinct selector pair,
//!    through a label index); ipBlock / networks / nodes peers are prefix
//!    sets (include minus except).
//! 3. Peer classes: pods (per address) and address regions (the longest
//!    match among all peer prefixes) with the same membership in every
//!    peer set share one class.
//! 4. Profiles: pods selected by the same policies in a direction share a
//!    profile; per (profile, class) the entries of the rules whose peers
//!    hold that class, and per profile the entries whose peer is every
//!    address.
//!
//! Peers and ports that cannot be understood (a selector that does not
//! parse, a CIDR that does not, an unknown protocol, an experimental peer
//! such as `domainNames`) fail closed: in a Deny rule they match every
//! address or port; in an Allow or Pass rule they match nothing.
//!
//! MultiNetworkPolicy ([`multi`]) runs this same compiler once per
//! secondary network, with that network's attachments as the pods;
//! [`compile_all_policy`] puts those tables into the pod network's.

pub mod explain;
pub mod multi;
#[cfg(test)]
mod oracle_tests;

use crate::model::policy_api::{
    AdminAction, AdminPort, BaselineAction, ClusterAction, ClusterProtocol, EgressPeer,
    IngressPeer, NamespacedPod, Subject, Tier,
};
use crate::model::{DesiredState, Object, Selector};
use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sluice_dataplane::tables::policy::{
    prefix_ranges, ClassId, NamedPort, PodSpec, PolicyDirection, PolicyEntry, PolicyParts,
    PolicyTable, PolicyTier, PortMatch, ProfileId, ProfileSpec, RuleAction, RuleId, RuleInfo,
    NO_RULE,
};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

const TCP: u8 = 6;
const UDP: u8 = 17;
const SCTP: u8 = 132;

/// How big the compiled policy came out (for benchmarks and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyStats {
    pub rules: usize,
    pub pods: usize,
    pub classes: usize,
    pub profiles: usize,
    pub peer_sets: usize,
    pub entries: usize,
}

/// Compiles the policies of `state`. `node_addresses` are the node's own
/// addresses (allowed as sources).
pub fn compile_policy(state: &DesiredState, node_addresses: &[IpAddr]) -> PolicyTable {
    compile_objects(state.iter().map(|s| &s.object), node_addresses).0
}

/// Compiles every network's policy: the pod network's as
/// [`compile_policy`] does, with the secondary networks' MultiNetworkPolicy
/// tables ([`multi::compile_networks`]) in it. `networks` names the
/// networks by id, as the routing tables number them.
pub fn compile_all_policy(
    state: &DesiredState,
    node_addresses: &[IpAddr],
    networks: &[&str],
) -> PolicyTable {
    compile_policy(state, node_addresses).with_networks(multi::compile_networks(state, networks))
}

/// [`compile_policy`] over any list of objects, with its size.
pub fn compile_objects<'a>(
    objects: impl IntoIterator<Item = &'a Object>,
    node_addresses: &[IpAddr],
) -> (PolicyTable, PolicyStats) {
    let objects: Vec<&Object> = objects.into_iter().collect();
    let is_policy = |o: &&&Object| {
        matches!(
            o,
            Object::NetworkPolicy(_)
                | Object::AdminNetworkPolicy(_)
                | Object::BaselineAdminNetworkPolicy(_)
                | Object::ClusterNetworkPolicy(_)
        )
    };
    if !objects.iter().any(|o| is_policy(&o)) {
        return (PolicyTable::default(), PolicyStats::default());
    }
    let mut c = Compiler::default();
    c.inventory(&objects);
    let mut any_policy = false;
    for o in &objects {
        any_policy |= c.policy(o);
    }
    if !any_policy {
        return (PolicyTable::default(), PolicyStats::default());
    }
    c.finish(node_addresses)
}

/// A pod as policy sees it.
struct PodInfo<'a> {
    namespace: &'a str,
    labels: &'a BTreeMap<String, String>,
    addresses: Vec<IpAddr>,
    /// (name id, protocol, port)
    ports: Vec<NamedPort>,
    /// In a secondary network: the attachment definition these addresses
    /// come from (an index into `Compiler::definitions`); [`NO_SCOPE`] in
    /// the pod network.
    definition: u32,
}

/// No attachment definition: a pod-network pod, or a policy that applies
/// to every pod.
const NO_SCOPE: u32 = u32::MAX;

/// A peer of a rule after resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerRef {
    /// Every address.
    All,
    /// A peer set (pods or prefixes).
    Set(u32),
}

/// A peer set's content.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SetKey {
    /// Pods, by index (sorted).
    Pods(Vec<u32>),
    /// Prefixes minus excepted prefixes.
    Prefixes(Vec<IpNet>, Vec<IpNet>),
}

/// (tier, priority, kind rank, policy name, rule index): the precedence
/// of a rule.
type SortKey = (PolicyTier, i32, u8, String, u32);

/// A NetworkPolicy rule's peers and ports.
type NpRule<'b> = (
    Option<&'b Vec<NetworkPolicyPeer>>,
    Option<&'b Vec<NetworkPolicyPort>>,
);

struct CompiledRule {
    id: RuleId,
    sort_key: SortKey,
    action: RuleAction,
    peers: Vec<PeerRef>,
    /// `None`: every port and protocol.
    ports: Option<Vec<PortMatch>>,
}

/// The rules of one policy in one direction, and whether it isolates.
struct PolicyDirectionRules {
    subject: Vec<u32>,
    direction: PolicyDirection,
    rules: Vec<CompiledRule>,
    /// NetworkPolicy isolation: the rule reported when it denies.
    isolation: Option<RuleId>,
}

/// A pod peer as resolved: (namespace selector, pod selector, only this
/// namespace, scope).
type PodSetKey<'a> = (Selector, Selector, Option<&'a str>, Option<u32>);

#[derive(Default)]
struct Compiler<'a> {
    namespaces: HashMap<&'a str, &'a BTreeMap<String, String>>,
    pods: Vec<PodInfo<'a>>,
    pods_by_namespace: HashMap<&'a str, Vec<u32>>,
    /// (label key, value) -> pods, for selectors with an equality.
    label_index: HashMap<(&'a str, &'a str), Vec<u32>>,
    nodes: Vec<(&'a BTreeMap<String, String>, Vec<IpAddr>)>,
    port_names: Vec<String>,
    port_name_ids: HashMap<String, u32>,
    rules: Vec<RuleInfo>,
    groups: Vec<PolicyDirectionRules>,
    sets: Vec<SetKey>,
    set_ids: HashMap<SetKey, u32>,
    pod_sets: HashMap<PodSetKey<'a>, Option<u32>>,
    empty_labels: BTreeMap<String, String>,
    /// Sets of attachment definitions a MultiNetworkPolicy is for (sorted
    /// definition ids), interned; `scope` indexes it while that policy's
    /// subject and peers are resolved ([`NO_SCOPE`]: every pod).
    scopes: Vec<Vec<u32>>,
    scope: Option<u32>,
}

fn protocol(p: Option<&str>) -> Option<u8> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(TCP),
        "UDP" => Some(UDP),
        "SCTP" => Some(SCTP),
        _ => None,
    }
}

fn port_u16(p: i32) -> Option<u16> {
    u16::try_from(p).ok().filter(|&p| p > 0)
}

fn range(proto: u8, lo: i32, hi: i32) -> Option<PortMatch> {
    let (lo, hi) = (port_u16(lo)?, port_u16(hi)?);
    (lo <= hi).then_some(PortMatch::Range { proto, lo, hi })
}

fn fail_closed_port(action: RuleAction) -> Option<PortMatch> {
    (action == RuleAction::Deny).then_some(PortMatch::Any)
}

fn fail_closed_peer(action: RuleAction) -> Option<PeerRef> {
    (action == RuleAction::Deny).then_some(PeerRef::All)
}

impl<'a> Compiler<'a> {
    fn inventory(&mut self, objects: &[&'a Object]) {
        self.inventory_namespaces_and_nodes(objects);
        for o in objects {
            let Object::Pod(p) = o else { continue };
            if p.spec.as_ref().is_none_or(|s| s.host_network == Some(true)) {
                continue;
            }
            self.add_pod(o, pod_ips(p), NO_SCOPE);
        }
    }

    fn inventory_namespaces_and_nodes(&mut self, objects: &[&'a Object]) {
        for o in objects {
            match o {
                Object::Namespace(n) => {
                    if let Some(name) = n.metadata.name.as_deref() {
                        self.namespaces.insert(name, o.labels());
                    }
                }
                Object::Node(n) => {
                    let addrs = n
                        .status
                        .iter()
                        .flat_map(|s| s.addresses.iter().flatten())
                        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
                        .filter_map(|a| a.address.parse().ok())
                        .collect();
                    self.nodes.push((o.labels(), addrs));
                }
                _ => {}
            }
        }
    }

    /// A pod with `addresses` (its pod IPs, or one attachment's addresses
    /// in a secondary network, from `definition`); none: not a pod to
    /// policy.
    fn add_pod(&mut self, o: &'a Object, addresses: Vec<IpAddr>, definition: u32) {
        let Object::Pod(p) = o else { return };
        let Some(spec) = &p.spec else { return };
        if addresses.is_empty() {
            return;
        }
        let mut ports = Vec::new();
        for c in &spec.containers {
            for cp in c.ports.iter().flatten() {
                let (Some(name), Some(proto), Some(port)) = (
                    cp.name.as_deref(),
                    protocol(cp.protocol.as_deref()),
                    port_u16(cp.container_port),
                ) else {
                    continue;
                };
                let name = self.port_name(name);
                ports.push(NamedPort { name, proto, port });
            }
        }
        let namespace = o.namespace().unwrap_or("default");
        let idx = self.pods.len() as u32;
        self.pods.push(PodInfo {
            namespace,
            labels: o.labels(),
            addresses,
            ports,
            definition,
        });
        self.pods_by_namespace
            .entry(namespace)
            .or_default()
            .push(idx);
        for (k, v) in o.labels() {
            self.label_index.entry((k, v)).or_default().push(idx);
        }
    }

    fn port_name(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.port_name_ids.get(name) {
            return id;
        }
        let id = self.port_names.len() as u32;
        self.port_names.push(name.to_string());
        self.port_name_ids.insert(name.to_string(), id);
        id
    }

    fn namespace_labels(&self, ns: &str) -> &BTreeMap<String, String> {
        self.namespaces
            .get(ns)
            .copied()
            .unwrap_or(&self.empty_labels)
    }

    /// Pods in namespaces matching `ns` (or in `only_ns`) whose labels match
    /// `pods`, sorted.
    fn select_pods(&self, ns: &Selector, pods: &Selector, only_ns: Option<&str>) -> Vec<u32> {
        // Start from the smallest candidate list an equality offers.
        let mut candidates: Option<&Vec<u32>> = None;
        for r in &pods.requirements {
            if r.operator == crate::model::selector::Operator::Equals {
                if let Some(v) = r.values.first() {
                    let list = self.label_index.get(&(r.key.as_str(), v.as_str()));
                    let Some(list) = list else { return Vec::new() };
                    if candidates.is_none_or(|c| list.len() < c.len()) {
                        candidates = Some(list);
                    }
                }
            }
        }
        let ns_ok = |n: &str| match only_ns {
            Some(o) => n == o,
            None => ns.matches(self.namespace_labels(n)),
        };
        let in_scope = |p: &PodInfo<'_>| match self.scope.and_then(|s| self.scopes.get(s as usize))
        {
            Some(defs) => defs.binary_search(&p.definition).is_ok(),
            None => true,
        };
        let mut out = Vec::new();
        let mut consider = |i: u32| {
            let p = &self.pods[i as usize];
            if ns_ok(p.namespace) && pods.matches(p.labels) && in_scope(p) {
                out.push(i);
            }
        };
        match (candidates, only_ns) {
            (Some(c), _) => c.iter().copied().for_each(&mut consider),
            (None, Some(n)) => self
                .pods_by_namespace
                .get(n)
                .into_iter()
                .flatten()
                .copied()
                .for_each(&mut consider),
            (None, None) => {
                let mut names: Vec<&&str> = self.pods_by_namespace.keys().collect();
                names.sort();
                for n in names {
                    if ns.matches(self.namespace_labels(n)) {
                        for &i in &self.pods_by_namespace[*n] {
                            let p = &self.pods[i as usize];
                            if pods.matches(p.labels) && in_scope(p) {
                                out.push(i);
                            }
                        }
                    }
                }
            }
        }
        out.sort_unstable();
        out
    }

    fn set(&mut self, key: SetKey) -> u32 {
        if let Some(&id) = self.set_ids.get(&key) {
            return id;
        }
        let id = self.sets.len() as u32;
        self.sets.push(key.clone());
        self.set_ids.insert(key, id);
        id
    }

    /// A peer selecting pods; `None` if the selectors cannot be read.
    fn pods_peer(
        &mut self,
        ns: Option<&LabelSelector>,
        pods: Option<&LabelSelector>,
        only_ns: Option<&'a str>,
    ) -> Option<PeerRef> {
        let read = |s: Option<&LabelSelector>| match s {
            None => Some(Selector::everything()),
            Some(s) => Selector::from_label_selector(s).ok(),
        };
        let (ns, pods) = (read(ns)?, read(pods)?);
        let key = (ns, pods, only_ns, self.scope);
        if let Some(&id) = self.pod_sets.get(&key) {
            return id.map(PeerRef::Set);
        }
        let list = self.select_pods(&key.0, &key.1, only_ns);
        let id = Some(self.set(SetKey::Pods(list)));
        self.pod_sets.insert(key, id);
        id.map(PeerRef::Set)
    }

    fn prefixes_peer(&mut self, include: &[String], except: &[String]) -> Option<PeerRef> {
        let parse = |v: &[String]| -> Option<Vec<IpNet>> {
            v.iter()
                .map(|s| s.parse::<IpNet>().ok().map(|n| n.trunc()))
                .collect()
        };
        let (mut inc, mut exc) = (parse(include)?, parse(except)?);
        inc.sort();
        exc.sort();
        Some(PeerRef::Set(self.set(SetKey::Prefixes(inc, exc))))
    }

    fn nodes_peer(&mut self, sel: &LabelSelector) -> Option<PeerRef> {
        let sel = Selector::from_label_selector(sel).ok()?;
        let mut hosts: Vec<IpNet> = self
            .nodes
            .iter()
            .filter(|(labels, _)| sel.matches(labels))
            .flat_map(|(_, a)| a.iter().map(|a| IpNet::from(*a)))
            .collect();
        hosts.sort();
        hosts.dedup();
        Some(PeerRef::Set(self.set(SetKey::Prefixes(hosts, Vec::new()))))
    }

    /// A v1alpha1/v1alpha2 subject: the pods it selects.
    fn subject(&self, s: &Subject) -> Option<Vec<u32>> {
        match (&s.namespaces, &s.pods) {
            (Some(ns), None) => {
                let ns = Selector::from_label_selector(ns).ok()?;
                Some(self.select_pods(&ns, &Selector::everything(), None))
            }
            (None, Some(np)) => {
                let ns = Selector::from_label_selector(&np.namespace_selector).ok()?;
                let pods = Selector::from_label_selector(&np.pod_selector).ok()?;
                Some(self.select_pods(&ns, &pods, None))
            }
            _ => None,
        }
    }

    fn namespaced_pod_peer(&mut self, np: &NamespacedPod) -> Option<PeerRef> {
        self.pods_peer(Some(&np.namespace_selector), Some(&np.pod_selector), None)
    }

    fn ingress_peer(&mut self, p: &IngressPeer) -> Option<PeerRef> {
        match (&p.namespaces, &p.pods) {
            (Some(ns), None) => self.pods_peer(Some(ns), None, None),
            (None, Some(np)) => self.namespaced_pod_peer(np),
            _ => None,
        }
    }

    fn egress_peer(&mut self, p: &EgressPeer) -> Option<PeerRef> {
        match p {
            EgressPeer {
                namespaces: Some(ns),
                pods: None,
                nodes: None,
                networks: None,
                domain_names: None,
            } => self.pods_peer(Some(ns), None, None),
            EgressPeer {
                namespaces: None,
                pods: Some(np),
                nodes: None,
                networks: None,
                domain_names: None,
            } => self.namespaced_pod_peer(np),
            EgressPeer {
                namespaces: None,
                pods: None,
                nodes: Some(n),
                networks: None,
                domain_names: None,
            } => self.nodes_peer(n),
            EgressPeer {
                namespaces: None,
                pods: None,
                nodes: None,
                networks: Some(nets),
                domain_names: None,
            } => self.prefixes_peer(nets, &[]),
            _ => None,
        }
    }

    fn rule_info(
        &mut self,
        policy: &str,
        tier: PolicyTier,
        direction: PolicyDirection,
        index: Option<u32>,
        name: Option<&String>,
        action: RuleAction,
    ) -> RuleId {
        let id = self.rules.len() as RuleId;
        self.rules.push(RuleInfo {
            policy: policy.to_string(),
            tier,
            direction,
            index,
            name: name.cloned(),
            action,
        });
        id
    }

    /// Adds a policy object's rules; false for objects that are not
    /// policies.
    fn policy(&mut self, o: &'a Object) -> bool {
        match o {
            Object::NetworkPolicy(np) => {
                let ns: &'a str = o.namespace().unwrap_or("default");
                let name = format!("NetworkPolicy {ns}/{}", o.name());
                if let Some(spec) = &np.spec {
                    self.network_policy(&name, ns, spec);
                }
                true
            }
            Object::AdminNetworkPolicy(p) => {
                let name = format!("AdminNetworkPolicy {}", o.name());
                let subject = self.subject(&p.spec.subject);
                let conv = |a: AdminAction| match a {
                    AdminAction::Allow => RuleAction::Allow,
                    AdminAction::Deny => RuleAction::Deny,
                    AdminAction::Pass => RuleAction::Pass,
                };
                let ingress: Vec<_> = p
                    .spec
                    .ingress
                    .iter()
                    .flatten()
                    .map(|r| {
                        (
                            r.name.as_ref(),
                            conv(r.action),
                            Gress::In(&r.from),
                            Ports::Admin(r.ports.as_ref()),
                        )
                    })
                    .collect();
                let egress: Vec<_> = p
                    .spec
                    .egress
                    .iter()
                    .flatten()
                    .map(|r| {
                        (
                            r.name.as_ref(),
                            conv(r.action),
                            Gress::Out(&r.to),
                            Ports::Admin(r.ports.as_ref()),
                        )
                    })
                    .collect();
                self.admin_policy(
                    &name,
                    PolicyTier::Admin,
                    p.spec.priority,
                    1,
                    subject,
                    ingress,
                    egress,
                );
                true
            }
            Object::BaselineAdminNetworkPolicy(p) => {
                let name = format!("BaselineAdminNetworkPolicy {}", o.name());
                let subject = self.subject(&p.spec.subject);
                let conv = |a: BaselineAction| match a {
                    BaselineAction::Allow => RuleAction::Allow,
                    BaselineAction::Deny => RuleAction::Deny,
                };
                let ingress: Vec<_> = p
                    .spec
                    .ingress
                    .iter()
                    .flatten()
                    .map(|r| {
                        (
                            r.name.as_ref(),
                            conv(r.action),
                            Gress::In(&r.from),
                            Ports::Admin(r.ports.as_ref()),
                        )
                    })
                    .collect();
                let egress: Vec<_> = p
                    .spec
                    .egress
                    .iter()
                    .flatten()
                    .map(|r| {
                        (
                            r.name.as_ref(),
                            conv(r.action),
                            Gress::BaselineOut(&r.to),
                            Ports::Admin(r.ports.as_ref()),
                        )
                    })
                    .collect();
                self.admin_policy(&name, PolicyTier::Baseline, 0, 1, subject, ingress, egress);
                true
            }
            Object::ClusterNetworkPolicy(p) => {
                let name = format!("ClusterNetworkPolicy {}", o.name());
                let subject = self.subject(&p.spec.subject);
                let tier = match p.spec.tier {
                    Tier::Admin => PolicyTier::Admin,
                    Tier::Baseline => PolicyTier::Baseline,
                };
                let conv = |a: ClusterAction| match a {
                    ClusterAction::Accept => RuleAction::Allow,
                    ClusterAction::Deny => RuleAction::Deny,
                    // Pass in the Baseline tier has nothing left to skip
                    // to but the default.
                    ClusterAction::Pass => RuleAction::Pass,
                };
                let ingress: Vec<_> = p
                    .spec
                    .ingress
                    .iter()
                    .flatten()
                    .map(|r| {
                        (
                            r.name.as_ref(),
                            conv(r.action),
                            Gress::In(&r.from),
                            Ports::Cluster(r.protocols.as_ref()),
                        )
                    })
                    .collect();
                let egress: Vec<_> = p
                    .spec
                    .egress
                    .iter()
                    .flatten()
                    .map(|r| {
                        (
                            r.name.as_ref(),
                            conv(r.action),
                            Gress::Out(&r.to),
                            Ports::Cluster(r.protocols.as_ref()),
                        )
                    })
                    .collect();
                self.admin_policy(&name, tier, p.spec.priority, 0, subject, ingress, egress);
                true
            }
            _ => false,
        }
    }

    /// A NetworkPolicy spec in namespace `ns`, its rules reported as
    /// `name`: Allow rules in the NetworkPolicy tier, isolating the pods it
    /// selects in each of its policy types. Pods and peers are limited to
    /// the current scope (a MultiNetworkPolicy's attachments).
    fn network_policy(&mut self, name: &str, ns: &'a str, spec: &'a NetworkPolicySpec) {
        let subject = match &spec.pod_selector {
            None => self.select_pods(&Selector::everything(), &Selector::everything(), Some(ns)),
            Some(s) => match Selector::from_label_selector(s) {
                Ok(s) => self.select_pods(&Selector::everything(), &s, Some(ns)),
                // Fail closed: isolate the whole namespace.
                Err(_) => {
                    self.select_pods(&Selector::everything(), &Selector::everything(), Some(ns))
                }
            },
        };
        let types: Vec<&str> = match &spec.policy_types {
            Some(t) if !t.is_empty() => t.iter().map(String::as_str).collect(),
            _ if spec.egress.is_some() => vec!["Ingress", "Egress"],
            _ => vec!["Ingress"],
        };
        for (dir, key) in [
            (PolicyDirection::Ingress, "Ingress"),
            (PolicyDirection::Egress, "Egress"),
        ] {
            if !types.contains(&key) {
                continue;
            }
            let iso = self.rule_info(
                name,
                PolicyTier::NetworkPolicy,
                dir,
                None,
                None,
                RuleAction::Deny,
            );
            let rules_in: Vec<NpRule<'_>> = match dir {
                PolicyDirection::Ingress => spec
                    .ingress
                    .iter()
                    .flatten()
                    .map(|r| (r.from.as_ref(), r.ports.as_ref()))
                    .collect(),
                PolicyDirection::Egress => spec
                    .egress
                    .iter()
                    .flatten()
                    .map(|r| (r.to.as_ref(), r.ports.as_ref()))
                    .collect(),
            };
            let mut rules = Vec::new();
            for (i, (peers, ports)) in rules_in.into_iter().enumerate() {
                let id = self.rule_info(
                    name,
                    PolicyTier::NetworkPolicy,
                    dir,
                    Some(i as u32),
                    None,
                    RuleAction::Allow,
                );
                let peers = match peers.filter(|p| !p.is_empty()) {
                    None => vec![PeerRef::All],
                    Some(list) => list.iter().filter_map(|p| self.np_peer(p, ns)).collect(),
                };
                let ports = ports.filter(|p| !p.is_empty()).map(|list| {
                    list.iter()
                        .filter_map(|p| self.np_port(p))
                        .collect::<Vec<_>>()
                });
                rules.push(CompiledRule {
                    id,
                    sort_key: (PolicyTier::NetworkPolicy, 0, 0, name.to_string(), i as u32),
                    action: RuleAction::Allow,
                    peers,
                    ports,
                });
            }
            self.groups.push(PolicyDirectionRules {
                subject: subject.clone(),
                direction: dir,
                rules,
                isolation: Some(iso),
            });
        }
    }

    fn np_peer(&mut self, p: &NetworkPolicyPeer, ns: &'a str) -> Option<PeerRef> {
        match (&p.ip_block, &p.namespace_selector, &p.pod_selector) {
            (Some(b), None, None) => self.prefixes_peer(
                std::slice::from_ref(&b.cidr),
                b.except.as_deref().unwrap_or(&[]),
            ),
            (None, None, Some(pods)) => self.pods_peer(None, Some(pods), Some(ns)),
            (None, Some(nss), pods) => self.pods_peer(Some(nss), pods.as_ref(), None),
            // An empty peer or an ipBlock with selectors: not understood;
            // NetworkPolicy rules only allow, so it allows nothing.
            _ => None,
        }
    }

    fn np_port(&mut self, p: &NetworkPolicyPort) -> Option<PortMatch> {
        let proto = protocol(p.protocol.as_deref())?;
        match (&p.port, p.end_port) {
            (None, None) => Some(PortMatch::Range {
                proto,
                lo: 0,
                hi: u16::MAX,
            }),
            (Some(IntOrString::Int(n)), None) => range(proto, *n, *n),
            (Some(IntOrString::Int(n)), Some(e)) => range(proto, *n, e),
            (Some(IntOrString::String(s)), None) => {
                if let Ok(n) = s.parse::<i32>() {
                    return range(proto, n, n);
                }
                let name = self.port_name(s);
                Some(PortMatch::Named { proto, name })
            }
            _ => None,
        }
    }

    fn admin_port(&mut self, p: &AdminPort, action: RuleAction) -> Option<PortMatch> {
        let m = match (&p.port_number, &p.named_port, &p.port_range) {
            (Some(n), None, None) => {
                protocol(n.protocol.as_deref()).and_then(|pr| range(pr, n.port, n.port))
            }
            (None, Some(name), None) => Some(PortMatch::Named {
                proto: 0,
                name: self.port_name(name),
            }),
            (None, None, Some(r)) => {
                protocol(r.protocol.as_deref()).and_then(|pr| range(pr, r.start, r.end))
            }
            _ => None,
        };
        m.or_else(|| fail_closed_port(action))
    }

    fn cluster_protocol(&mut self, p: &ClusterProtocol, action: RuleAction) -> Option<PortMatch> {
        let one = |proto: u8, ports: &crate::model::policy_api::ProtocolPorts| match &ports
            .destination_port
        {
            None => Some(PortMatch::Range {
                proto,
                lo: 0,
                hi: u16::MAX,
            }),
            Some(cp) => match (cp.number, &cp.range) {
                (Some(n), None) => range(proto, n, n),
                (None, Some(r)) => range(proto, r.start, r.end),
                _ => None,
            },
        };
        let m = match (&p.tcp, &p.udp, &p.sctp, &p.destination_named_port) {
            (Some(t), None, None, None) => one(TCP, t),
            (None, Some(u), None, None) => one(UDP, u),
            (None, None, Some(s), None) => one(SCTP, s),
            (None, None, None, Some(name)) => Some(PortMatch::Named {
                proto: 0,
                name: self.port_name(name),
            }),
            _ => None,
        };
        m.or_else(|| fail_closed_port(action))
    }

    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn admin_policy(
        &mut self,
        name: &str,
        tier: PolicyTier,
        priority: i32,
        kind_rank: u8,
        subject: Option<Vec<u32>>,
        ingress: Vec<(Option<&String>, RuleAction, Gress<'_>, Ports<'_>)>,
        egress: Vec<(Option<&String>, RuleAction, Gress<'_>, Ports<'_>)>,
    ) {
        // A subject that cannot be read selects nothing: the policy's
        // Deny rules cannot be placed safely on unknown pods, and Allow
        // rules must not open anything.
        let subject = subject.unwrap_or_default();
        for (dir, list) in [
            (PolicyDirection::Ingress, ingress),
            (PolicyDirection::Egress, egress),
        ] {
            if list.is_empty() {
                continue;
            }
            let mut rules = Vec::new();
            for (i, (rule_name, action, peers, ports)) in list.into_iter().enumerate() {
                let id = self.rule_info(name, tier, dir, Some(i as u32), rule_name, action);
                let peers: Vec<PeerRef> = match peers {
                    Gress::In(list) => list
                        .iter()
                        .filter_map(|p| self.ingress_peer(p).or_else(|| fail_closed_peer(action)))
                        .collect(),
                    Gress::Out(list) => list
                        .iter()
                        .filter_map(|p| self.egress_peer(p).or_else(|| fail_closed_peer(action)))
                        .collect(),
                    Gress::BaselineOut(list) => list
                        .iter()
                        .filter_map(|p| {
                            let e = EgressPeer {
                                namespaces: p.namespaces.clone(),
                                pods: p.pods.clone(),
                                nodes: p.nodes.clone(),
                                networks: p.networks.clone(),
                                domain_names: None,
                            };
                            self.egress_peer(&e).or_else(|| fail_closed_peer(action))
                        })
                        .collect(),
                };
                let ports = match ports {
                    Ports::Admin(None) | Ports::Cluster(None) => None,
                    Ports::Admin(Some(list)) => Some(
                        list.iter()
                            .filter_map(|p| self.admin_port(p, action))
                            .collect::<Vec<_>>(),
                    ),
                    Ports::Cluster(Some(list)) => Some(
                        list.iter()
                            .filter_map(|p| self.cluster_protocol(p, action))
                            .collect::<Vec<_>>(),
                    ),
                };
                rules.push(CompiledRule {
                    id,
                    sort_key: (tier, priority, kind_rank, name.to_string(), i as u32),
                    action,
                    peers,
                    ports,
                });
            }
            self.groups.push(PolicyDirectionRules {
                subject: subject.clone(),
                direction: dir,
                rules,
                isolation: None,
            });
        }
    }

    fn finish(mut self, node_addresses: &[IpAddr]) -> (PolicyTable, PolicyStats) {
        // Precedence: one order number per rule.
        let mut keys: Vec<(&SortKey, RuleId)> = self
            .groups
            .iter()
            .flat_map(|g| g.rules.iter().map(|r| (&r.sort_key, r.id)))
            .collect();
        keys.sort();
        let mut order = vec![0u32; self.rules.len()];
        for (i, (_, id)) in keys.iter().enumerate() {
            order[*id as usize] = i as u32;
        }

        // Peer classes. Prefix regions first: every include and except
        // prefix of every prefix set is a boundary.
        let mut boundaries: Vec<IpNet> = Vec::new();
        for s in &self.sets {
            if let SetKey::Prefixes(inc, exc) = s {
                boundaries.extend(inc.iter().chain(exc.iter()).copied());
            }
        }
        boundaries.sort();
        boundaries.dedup();
        let region_members: Vec<Vec<u32>> = boundaries
            .iter()
            .map(|b| {
                let mut m = Vec::new();
                for (sid, s) in self.sets.iter().enumerate() {
                    if let SetKey::Prefixes(inc, exc) = s {
                        if inc.iter().any(|i| i.contains(b)) && !exc.iter().any(|e| e.contains(b)) {
                            m.push(sid as u32);
                        }
                    }
                }
                m
            })
            .collect();
        // Regions for pod addresses: the same ranges the table will use.
        let split = |fam4: bool| -> Vec<(u128, u32)> {
            let list: Vec<(u128, u8, u32)> = boundaries
                .iter()
                .enumerate()
                .filter(|(_, b)| b.addr().is_ipv4() == fam4)
                .map(|(i, b)| (addr_u128(b.addr()), b.prefix_len(), i as u32 + 1))
                .collect();
            prefix_ranges(list, if fam4 { 32 } else { 128 }).into_vec()
        };
        let (r4, r6) = (split(true), split(false));
        let region_of = |a: IpAddr| -> Option<usize> {
            let (r, x) = match a {
                IpAddr::V4(_) => (&r4, addr_u128(a)),
                IpAddr::V6(_) => (&r6, addr_u128(a)),
            };
            let i = r.partition_point(|&(s, _)| s <= x);
            let id = r.get(i.wrapping_sub(1))?.1;
            (id > 0).then(|| id as usize - 1)
        };

        let mut pod_members: Vec<Vec<u32>> = vec![Vec::new(); self.pods.len()];
        for (sid, s) in self.sets.iter().enumerate() {
            if let SetKey::Pods(list) = s {
                for &p in list {
                    pod_members[p as usize].push(sid as u32);
                }
            }
        }
        let mut class_ids: HashMap<Vec<u32>, ClassId> = HashMap::new();
        let mut class_members: Vec<Vec<u32>> = vec![Vec::new()];
        class_ids.insert(Vec::new(), 0);
        let mut intern = |mut m: Vec<u32>| -> ClassId {
            m.sort_unstable();
            m.dedup();
            if let Some(&c) = class_ids.get(&m) {
                return c;
            }
            let c = class_members.len() as ClassId;
            class_members.push(m.clone());
            class_ids.insert(m, c);
            c
        };
        let prefixes: Vec<(IpAddr, u8, ClassId)> = boundaries
            .iter()
            .zip(&region_members)
            .map(|(b, m)| (b.addr(), b.prefix_len(), intern(m.clone())))
            .collect();
        // (pod, address, class)
        let mut pod_classes: Vec<Vec<(IpAddr, ClassId)>> = Vec::with_capacity(self.pods.len());
        for (i, p) in self.pods.iter().enumerate() {
            let mut v = Vec::with_capacity(p.addresses.len());
            for &a in &p.addresses {
                let mut m = pod_members[i].clone();
                if let Some(r) = region_of(a) {
                    m.extend_from_slice(&region_members[r]);
                }
                v.push((a, intern(m)));
            }
            pod_classes.push(v);
        }
        let mut set_classes: Vec<Vec<ClassId>> = vec![Vec::new(); self.sets.len()];
        for (c, m) in class_members.iter().enumerate() {
            for &s in m {
                set_classes[s as usize].push(c as ClassId);
            }
        }

        // Profiles: pods by the groups that select them, per direction.
        let mut pod_groups: [Vec<Vec<u32>>; 2] = [
            vec![Vec::new(); self.pods.len()],
            vec![Vec::new(); self.pods.len()],
        ];
        for (gi, g) in self.groups.iter().enumerate() {
            let d = (g.direction == PolicyDirection::Egress) as usize;
            for &p in &g.subject {
                pod_groups[d][p as usize].push(gi as u32);
            }
        }
        let mut profile_ids: HashMap<Vec<u32>, ProfileId> = HashMap::new();
        profile_ids.insert(Vec::new(), 0);
        let mut profiles: Vec<ProfileSpec> = vec![ProfileSpec::default()];
        let mut entries: HashMap<(ProfileId, ClassId), Vec<PolicyEntry>> = HashMap::new();
        let mut pod_profiles = vec![[0 as ProfileId; 2]; self.pods.len()];
        for d in 0..2 {
            for (p, gs) in pod_groups[d].iter().enumerate() {
                if let Some(&id) = profile_ids.get(gs) {
                    pod_profiles[p][d] = id;
                    continue;
                }
                let id = profiles.len() as ProfileId;
                profile_ids.insert(gs.clone(), id);
                pod_profiles[p][d] = id;
                let mut spec = ProfileSpec {
                    isolated: false,
                    isolation_rule: NO_RULE,
                    any_peer: Vec::new(),
                };
                for &gi in gs {
                    let g = &self.groups[gi as usize];
                    if let Some(iso) = g.isolation {
                        if !spec.isolated {
                            spec.isolated = true;
                            spec.isolation_rule = iso;
                        }
                    }
                    for r in &g.rules {
                        let ports: Vec<PortMatch> = match &r.ports {
                            None => vec![PortMatch::Any],
                            Some(list) => list.clone(),
                        };
                        let tier = r.sort_key.0;
                        for peer in &r.peers {
                            for &pm in &ports {
                                let e = PolicyEntry {
                                    order: order[r.id as usize],
                                    rule: r.id,
                                    tier,
                                    action: r.action,
                                    ports: pm,
                                };
                                match *peer {
                                    PeerRef::All => spec.any_peer.push(e),
                                    PeerRef::Set(s) => {
                                        for &c in &set_classes[s as usize] {
                                            entries.entry((id, c)).or_default().push(e);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                spec.any_peer.sort_by_key(|e| e.order);
                spec.any_peer.dedup();
                profiles.push(spec);
            }
        }
        let mut n_entries = profiles.iter().map(|p| p.any_peer.len()).sum::<usize>();
        let entries: Vec<((ProfileId, ClassId), Vec<PolicyEntry>)> = entries
            .into_iter()
            .map(|(k, mut v)| {
                v.sort_by_key(|e| e.order);
                v.dedup();
                n_entries += v.len();
                (k, v)
            })
            .collect();
        let pods: Vec<PodSpec> = self
            .pods
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                let prof = pod_profiles[i];
                pod_classes[i].iter().map(move |&(a, class)| PodSpec {
                    addresses: vec![a],
                    class,
                    ingress: prof[0],
                    egress: prof[1],
                    named_ports: p.ports.clone(),
                })
            })
            .collect();
        let stats = PolicyStats {
            rules: self.rules.len(),
            pods: self.pods.len(),
            classes: class_members.len(),
            profiles: profiles.len(),
            peer_sets: self.sets.len(),
            entries: n_entries,
        };
        let parts = PolicyParts {
            rules: std::mem::take(&mut self.rules),
            pods,
            prefixes,
            profiles,
            entries,
            node_addresses: node_addresses.to_vec(),
            port_names: std::mem::take(&mut self.port_names),
        };
        // The parts are consistent by construction; should they not be,
        // nothing is enforced rather than something wrong.
        let table = PolicyTable::build(parts).unwrap_or_default();
        (table, stats)
    }
}

enum Gress<'b> {
    In(&'b Vec<IngressPeer>),
    Out(&'b Vec<EgressPeer>),
    BaselineOut(&'b Vec<crate::model::policy_api::BaselineEgressPeer>),
}

enum Ports<'b> {
    Admin(Option<&'b Vec<AdminPort>>),
    Cluster(Option<&'b Vec<ClusterProtocol>>),
}

/// A pod's pod-network addresses: `status.podIPs`, and `status.podIP` if
/// it is not among them (unparsable ones are skipped).
pub(crate) fn pod_ips(pod: &k8s_openapi::api::core::v1::Pod) -> Vec<IpAddr> {
    let mut addresses: Vec<IpAddr> = Vec::new();
    if let Some(st) = &pod.status {
        for ip in st.pod_ips.iter().flatten() {
            if let Ok(a) = ip.ip.parse() {
                addresses.push(a);
            }
        }
        if let Some(a) = st.pod_ip.as_deref().and_then(|a| a.parse().ok()) {
            if !addresses.contains(&a) {
                addresses.push(a);
            }
        }
    }
    addresses
}

fn addr_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse_manifests, Change};

    fn table(yaml: &str) -> PolicyTable {
        let mut s = DesiredState::new();
        let batch: Vec<Change> = parse_manifests(yaml)
            .unwrap()
            .into_iter()
            .map(Change::Apply)
            .collect();
        s.apply(&batch).unwrap_or_else(|e| panic!("{e}"));
        compile_policy(&s, &["10.0.0.1".parse().unwrap()])
    }

    /// Compiled without the state's validation, as a table from a newer
    /// or looser source could be.
    fn table_unchecked(yaml: &str) -> PolicyTable {
        let objects = parse_manifests(yaml).unwrap();
        compile_objects(objects.iter(), &[]).0
    }

    fn a(s: &str) -> u128 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()) as u128
    }

    const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {containers: [{name: c, image: i, ports: [{name: dns, containerPort: 53, protocol: UDP}]}]}
status: {podIP: 10.244.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.244.0.11}
"#;

    #[test]
    fn no_policy_is_an_empty_table() {
        assert!(table(PODS).is_empty());
    }

    #[test]
    fn unknown_peers_fail_closed() {
        // A Deny rule with a domainNames peer denies everything it could
        // mean; an Accept with one allows nothing.
        let t = table_unchecked(&format!(
            "{PODS}---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {{name: dn}}
spec:
  tier: Admin
  priority: 1
  subject: {{namespaces: {{}}}}
  egress:
  - {{name: allow-dn, action: Accept, to: [{{domainNames: [\"example.com\"]}}]}}
  - {{name: deny-dn, action: Deny, to: [{{domainNames: [\"*.example.org\"]}}]}}
"
        ));
        let v = t.evaluate(4, 6, a("10.244.0.10"), a("192.0.2.1"), 443);
        assert!(!v.allow);
        assert_eq!(t.rule(v.rule).unwrap().name.as_deref(), Some("deny-dn"));
        // An Accept with one, validated: allows nothing, so the default
        // (allow) decides, not the rule.
        let t = table(&format!(
            "{PODS}---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {{name: dn}}
spec:
  tier: Admin
  priority: 1
  subject: {{namespaces: {{}}}}
  egress:
  - {{name: allow-dn, action: Accept, to: [{{domainNames: [\"example.com\"]}}]}}
  - {{name: deny-all, action: Deny, to: [{{networks: [\"0.0.0.0/0\"]}}]}}
"
        ));
        let v = t.evaluate(4, 6, a("10.244.0.10"), a("192.0.2.1"), 443);
        assert!(!v.allow);
        assert_eq!(t.rule(v.rule).unwrap().name.as_deref(), Some("deny-all"));
        // The node is allowed in whatever the rules say.
        let t = table(&format!(
            "{PODS}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: deny, namespace: x}}
spec: {{podSelector: {{}}, ingress: []}}
"
        ));
        assert!(t.evaluate(4, 6, a("10.0.0.1"), a("10.244.0.10"), 22).allow);
        assert!(!t.evaluate(4, 6, a("10.0.0.2"), a("10.244.0.10"), 22).allow);
    }

    #[test]
    fn egress_named_ports_resolve_on_the_destination() {
        let t = table(&format!(
            "{PODS}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: b-out, namespace: x}}
spec:
  podSelector: {{matchLabels: {{app: b}}}}
  policyTypes: [Egress]
  egress: [{{to: [{{podSelector: {{}}}}], ports: [{{protocol: UDP, port: dns}}]}}]
"
        ));
        let (b, pa) = (a("10.244.0.11"), a("10.244.0.10"));
        assert!(t.evaluate(4, 17, b, pa, 53).allow);
        assert!(!t.evaluate(4, 17, b, pa, 54).allow);
        assert!(
            !t.evaluate(4, 6, b, pa, 53).allow,
            "TCP is not the port's protocol"
        );
        // a is not isolated: anything goes out of it.
        assert!(t.evaluate(4, 6, pa, b, 1).allow);
    }
}
