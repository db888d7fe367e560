//! kube-proxy's endpoint categories: which endpoints Cluster and Local
//! traffic policy use on this node, with the ready → serving-terminating
//! fallback and topology hints (pkg/proxy/topology.go).

use super::view::EndpointView;
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// The traffic-policy facts about a service port that categorizing needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficPolicies {
    /// internalTrafficPolicy Local.
    pub internal_local: bool,
    /// externalTrafficPolicy Local (only meaningful when externally
    /// accessible).
    pub external_local: bool,
    /// Reachable by node port, external IP or load-balancer VIP.
    pub externally_accessible: bool,
}

impl TrafficPolicies {
    /// Whether the port ever sends traffic to Cluster-policy endpoints
    /// (`UsesClusterEndpoints`): internal traffic is Cluster, or the port
    /// takes external traffic at all (even with externalTrafficPolicy
    /// Local, pod and node traffic to external addresses short-circuits to
    /// the Cluster endpoints).
    pub fn uses_cluster_endpoints(self) -> bool {
        !self.internal_local || self.externally_accessible
    }

    /// Whether the port ever sends traffic to Local-policy endpoints
    /// (`UsesLocalEndpoints`).
    pub fn uses_local_endpoints(self) -> bool {
        self.internal_local || (self.external_local && self.externally_accessible)
    }
}

/// How endpoint hints narrow the Cluster endpoints on this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TopologyMode {
    /// No narrowing: every usable endpoint.
    #[default]
    None,
    /// Endpoints whose `hints.forZones` hold the node's zone.
    PreferSameZone,
    /// Endpoints whose `hints.forNodes` hold the node.
    PreferSameNode,
}

/// A service port's endpoints in kube-proxy's categories, for one node.
/// Sets are of `ip:port`, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategorizedEndpoints {
    /// The endpoints Cluster traffic policy uses, topology applied; `None`
    /// when the port never uses Cluster policy.
    pub cluster: Option<BTreeSet<SocketAddr>>,
    /// The node-local endpoints Local traffic policy uses; `None` when the
    /// port never uses Local policy.
    pub local: Option<BTreeSet<SocketAddr>>,
    /// Every endpoint reachable from this node: the union of the two.
    pub all_reachable: BTreeSet<SocketAddr>,
    /// Whether the port has a usable endpoint anywhere in the cluster (true
    /// even when none is reachable from this node under Local policy).
    pub has_any_endpoints: bool,
    /// The topology mode the Cluster endpoints were chosen with.
    pub topology: TopologyMode,
}

impl CategorizedEndpoints {
    /// The Cluster endpoints, empty when the category is not used.
    pub fn cluster_or_empty(&self) -> BTreeSet<SocketAddr> {
        self.cluster.clone().unwrap_or_default()
    }

    /// The Local endpoints, empty when the category is not used.
    pub fn local_or_empty(&self) -> BTreeSet<SocketAddr> {
        self.local.clone().unwrap_or_default()
    }
}

fn usable_set<'a>(
    endpoints: &'a [EndpointView],
    keep: impl Fn(&EndpointView) -> bool + 'a,
) -> BTreeSet<SocketAddr> {
    endpoints
        .iter()
        .filter(|e| keep(e))
        .map(|e| e.addr)
        .collect()
}

/// kube-proxy's `CategorizeEndpoints` for the node `node_name` in `zone`.
///
/// - Cluster endpoints (when the port uses Cluster policy): the ready
///   endpoints available under the topology mode chosen by
///   [`topology_mode_from_hints`]; when there are none, the endpoints that
///   are serving and terminating (topology ignored: the mode only narrows
///   when a ready endpoint exists for this node or zone, so an empty result
///   means nothing is ready anywhere).
/// - Local endpoints (when the port uses Local policy): the ready endpoints
///   on this node, or, when there are none, the serving-terminating ones on
///   this node. Topology never narrows them.
/// - Any endpoints: some endpoint anywhere is ready, or serving and
///   terminating.
///
/// A category that is used but has no endpoints is `Some(empty)` (kube-proxy
/// returns nil for it when the port has no endpoints at all; the Go tests
/// treat nil and empty alike there).
pub fn categorize_endpoints(
    endpoints: &[EndpointView],
    policies: TrafficPolicies,
    node_name: &str,
    zone: Option<&str>,
) -> CategorizedEndpoints {
    let zone = zone.filter(|z| !z.is_empty());
    let mut out = CategorizedEndpoints::default();

    if policies.uses_cluster_endpoints() {
        let mode = topology_mode_from_hints(endpoints, node_name, zone);
        let mut cluster = usable_set(endpoints, |e| {
            e.ready && available_for_topology(e, mode, node_name, zone)
        });
        if cluster.is_empty() {
            cluster = usable_set(endpoints, |e| e.serving && e.terminating);
        }
        out.has_any_endpoints = !cluster.is_empty();
        out.topology = mode;
        out.cluster = Some(cluster);
    }

    if policies.uses_local_endpoints() {
        let mut has_local_ready = false;
        let mut has_local_serving_terminating = false;
        for e in endpoints {
            if e.ready {
                out.has_any_endpoints = true;
                has_local_ready |= e.is_local(node_name);
            } else if e.serving && e.terminating {
                out.has_any_endpoints = true;
                has_local_serving_terminating |= e.is_local(node_name);
            }
        }
        let local = if has_local_ready {
            usable_set(endpoints, |e| e.is_local(node_name) && e.ready)
        } else if has_local_serving_terminating {
            usable_set(endpoints, |e| {
                e.is_local(node_name) && e.serving && e.terminating
            })
        } else {
            BTreeSet::new()
        };
        out.local = Some(local);
    }

    // kube-proxy avoids building the union when one list contains the other;
    // the union is the same set either way.
    out.all_reachable = out
        .cluster
        .iter()
        .chain(out.local.iter())
        .flatten()
        .copied()
        .collect();
    out
}

/// kube-proxy's `topologyModeFromHints` (with the
/// PreferSameTrafficDistribution gate on, its default in current releases):
///
/// - only ready endpoints are looked at; with none, no topology;
/// - PreferSameNode when every ready endpoint has a node hint and one of
///   them names this node;
/// - otherwise PreferSameZone when every ready endpoint has a zone hint and
///   one of them names this node's zone;
/// - otherwise none. So hints are all or nothing: one ready endpoint without
///   hints, or no endpoint hinted for this node's zone, and they are ignored.
///
/// The Service's `trafficDistribution` is not read here, as in kube-proxy:
/// the EndpointSlice controller writes hints for PreferClose/PreferSameZone
/// (zone hints) and PreferSameNode (node and zone hints), so PreferSameNode
/// falls back to the zone when this node has no endpoint.
pub fn topology_mode_from_hints(
    endpoints: &[EndpointView],
    node_name: &str,
    zone: Option<&str>,
) -> TopologyMode {
    let mut has_ready = false;
    let mut has_for_node = false;
    let mut all_have_node_hints = true;
    let mut has_for_zone = false;
    let mut all_have_zone_hints = true;
    for e in endpoints.iter().filter(|e| e.ready) {
        has_ready = true;
        if e.node_hints.is_empty() {
            all_have_node_hints = false;
        } else if e.node_hints.contains(node_name) {
            has_for_node = true;
        }
        if e.zone_hints.is_empty() {
            all_have_zone_hints = false;
        } else if zone.is_some_and(|z| e.zone_hints.contains(z)) {
            has_for_zone = true;
        }
    }
    if !has_ready {
        TopologyMode::None
    } else if all_have_node_hints && has_for_node {
        TopologyMode::PreferSameNode
    } else if all_have_zone_hints && has_for_zone {
        TopologyMode::PreferSameZone
    } else {
        TopologyMode::None
    }
}

/// kube-proxy's `availableForTopology`: whether an endpoint may be used on
/// this node under `mode`. No fallback here; the fallback is in choosing
/// the mode.
fn available_for_topology(
    e: &EndpointView,
    mode: TopologyMode,
    node_name: &str,
    zone: Option<&str>,
) -> bool {
    match mode {
        TopologyMode::None => true,
        TopologyMode::PreferSameNode => e.node_hints.contains(node_name),
        TopologyMode::PreferSameZone => zone.is_some_and(|z| e.zone_hints.contains(z)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "node-a";

    fn ep(addr: &str, ready: bool) -> EndpointView {
        EndpointView::new(addr.parse().unwrap(), ready, ready, false)
    }

    fn zones(mut e: EndpointView, z: &[&str]) -> EndpointView {
        e.zone_hints = z.iter().map(|s| s.to_string()).collect();
        e
    }

    fn nodes(mut e: EndpointView, n: &[&str]) -> EndpointView {
        e.node_hints = n.iter().map(|s| s.to_string()).collect();
        e
    }

    fn local(mut e: EndpointView) -> EndpointView {
        e.node_name = Some(NODE.into());
        e
    }

    fn set(v: &[&str]) -> BTreeSet<SocketAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    const CLUSTER: TrafficPolicies = TrafficPolicies {
        internal_local: false,
        external_local: false,
        externally_accessible: false,
    };

    #[test]
    fn prefer_same_node_then_zone() {
        // The EndpointSlice controller's PreferSameNode hints: a node hint
        // and a zone hint per endpoint.
        let eps = vec![
            nodes(zones(ep("10.0.0.1:80", true), &["z1"]), &[NODE]),
            nodes(zones(ep("10.0.0.2:80", true), &["z1"]), &["node-b"]),
            nodes(zones(ep("10.0.0.3:80", true), &["z2"]), &["node-c"]),
        ];
        let c = categorize_endpoints(&eps, CLUSTER, NODE, Some("z1"));
        assert_eq!(c.topology, TopologyMode::PreferSameNode);
        assert_eq!(c.cluster, Some(set(&["10.0.0.1:80"])));
        // Another node in z1 with no endpoint of its own falls back to the
        // zone.
        let c = categorize_endpoints(&eps, CLUSTER, "node-d", Some("z1"));
        assert_eq!(c.topology, TopologyMode::PreferSameZone);
        assert_eq!(c.cluster, Some(set(&["10.0.0.1:80", "10.0.0.2:80"])));
        // A node in a zone nobody is hinted for: no topology.
        let c = categorize_endpoints(&eps, CLUSTER, "node-e", Some("z3"));
        assert_eq!(c.topology, TopologyMode::None);
        assert_eq!(c.cluster.unwrap().len(), 3);
        // A node without a zone label: zone hints never match.
        let c = categorize_endpoints(&eps, CLUSTER, "node-e", None);
        assert_eq!(c.topology, TopologyMode::None);
    }

    #[test]
    fn hints_are_all_or_nothing_over_ready_endpoints() {
        // One ready endpoint without a node hint: node hints ignored, zone
        // hints still apply.
        let eps = vec![
            nodes(zones(ep("10.0.0.1:80", true), &["z1"]), &[NODE]),
            zones(ep("10.0.0.2:80", true), &["z1"]),
            zones(ep("10.0.0.3:80", true), &["z2"]),
        ];
        let c = categorize_endpoints(&eps, CLUSTER, NODE, Some("z1"));
        assert_eq!(c.topology, TopologyMode::PreferSameZone);
        assert_eq!(c.cluster, Some(set(&["10.0.0.1:80", "10.0.0.2:80"])));
        // A ready endpoint without any hint: no topology at all.
        let mut eps2 = eps.clone();
        eps2.push(ep("10.0.0.4:80", true));
        let c = categorize_endpoints(&eps2, CLUSTER, NODE, Some("z1"));
        assert_eq!(c.topology, TopologyMode::None);
        assert_eq!(c.cluster.unwrap().len(), 4);
        // An unready endpoint without hints does not count.
        let mut eps3 = eps.clone();
        eps3.push(ep("10.0.0.5:80", false));
        let c = categorize_endpoints(&eps3, CLUSTER, NODE, Some("z1"));
        assert_eq!(c.topology, TopologyMode::PreferSameZone);
    }

    #[test]
    fn no_ready_endpoints_fall_back_to_serving_terminating_without_topology() {
        let mut term = zones(ep("10.0.0.1:80", false), &["z2"]);
        term.serving = true;
        term.terminating = true;
        let mut gone = ep("10.0.0.2:80", false);
        gone.terminating = true;
        let c = categorize_endpoints(&[term, gone], CLUSTER, NODE, Some("z1"));
        assert_eq!(c.topology, TopologyMode::None);
        assert_eq!(c.cluster, Some(set(&["10.0.0.1:80"])));
        assert!(c.has_any_endpoints);
        assert_eq!(c.local, None);
    }

    #[test]
    fn local_policy_uses_local_ready_then_local_terminating() {
        let itp = TrafficPolicies {
            internal_local: true,
            ..CLUSTER
        };
        let mut lt = local(ep("10.0.0.2:80", false));
        lt.serving = true;
        lt.terminating = true;
        let remote = zones(ep("10.0.0.3:80", true), &["z1"]);
        // Local ready wins over local terminating; topology is not applied.
        let eps = vec![local(ep("10.0.0.1:80", true)), lt.clone(), remote.clone()];
        let c = categorize_endpoints(&eps, itp, NODE, Some("z9"));
        assert_eq!(c.cluster, None);
        assert_eq!(c.local, Some(set(&["10.0.0.1:80"])));
        assert_eq!(c.all_reachable, set(&["10.0.0.1:80"]));
        // Only a terminating local endpoint: it is used.
        let c = categorize_endpoints(&[lt, remote.clone()], itp, NODE, None);
        assert_eq!(c.local, Some(set(&["10.0.0.2:80"])));
        // Only remote endpoints: none local, but some exist.
        let c = categorize_endpoints(&[remote], itp, NODE, None);
        assert_eq!(c.local, Some(BTreeSet::new()));
        assert!(c.has_any_endpoints);
        assert!(c.all_reachable.is_empty());
        // An empty node name is never local.
        let c = categorize_endpoints(&[local(ep("10.0.0.1:80", true))], itp, "", None);
        assert_eq!(c.local, Some(BTreeSet::new()));
    }

    #[test]
    fn policy_helpers() {
        let p = |i, e, x| TrafficPolicies {
            internal_local: i,
            external_local: e,
            externally_accessible: x,
        };
        assert!(p(false, false, false).uses_cluster_endpoints());
        assert!(!p(false, false, false).uses_local_endpoints());
        assert!(!p(true, false, false).uses_cluster_endpoints());
        assert!(p(true, false, true).uses_cluster_endpoints());
        assert!(p(false, true, true).uses_local_endpoints());
        assert!(!p(false, true, false).uses_local_endpoints());
    }
}
