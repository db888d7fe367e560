//! Which endpoints a Service's traffic may go to, with kube-proxy's
//! semantics, as pure functions of the desired state and the node.
//!
//! Reads: Services and EndpointSlices (k8s-openapi types, straight from the
//! desired state or from any list of objects), the node's identity and
//! addresses ([`NodeConfig`]). Produces: one [`ServicePortView`] per service
//! port and IP family (what kube-proxy's service and endpoint caches hold),
//! the endpoint categories kube-proxy derives from it
//! ([`CategorizedEndpoints`]: cluster, local, all reachable, whether any
//! exist), and for a probe packet the [`Verdict`] kube-proxy's rules give it:
//! DNAT to a set of endpoints (with or without masquerade), REJECT, DROP, or
//! no match.
//!
//! The rules are kube-proxy's, read from its Go source (kubernetes/kubernetes
//! `pkg/proxy`): `newBaseServiceInfo` and `serviceToServiceMap` (which
//! Services and ports are proxied, per IP family), `EndpointSliceCache`
//! (`endpointInfoByServicePort`, `addEndpoints`: how slices become endpoints),
//! `CategorizeEndpoints` with `topologyModeFromHints` and
//! `availableForTopology` (topology.go), and the nftables proxier's
//! `syncProxyRules` (which map a packet hits, in what order, and when it is
//! marked for masquerade). Function comments name the upstream function
//! they follow. docs/services.md lists the rules and where Sluice differs.
//!
//! Every output is sorted (`BTreeSet`s, views in name order), so the same
//! state gives the same sets on every node and every run: the dataplane
//! builds Maglev rings from them, and rings must not depend on the order
//! objects arrived in.

mod classify;
mod table;
mod topology;
mod view;

#[cfg(test)]
mod oracle_tests;
#[cfg(test)]
mod pipeline_replay;

pub use classify::{
    classify, hairpin, resolve, FrontendKey, NodeConfig, PortRules, Probe, SourceClass, Verdict,
};
pub use table::{
    addr_bits, describe_table, family_num, proto_num, table_verdict, FrontendSummary,
    PreparedServices, ServiceCompiler, ServiceKey, TableSummary, SERVICE_NETWORK,
};
pub use topology::{
    categorize_endpoints, topology_mode_from_hints, CategorizedEndpoints, TopologyMode,
    TrafficPolicies,
};
pub use view::{
    find_target_port, node_zone, service_port_views, EndpointView, ServicePortName,
    ServicePortView, ServiceSet, DEFAULT_AFFINITY_TIMEOUT_SECONDS, SERVICE_NAME_LABEL, ZONE_LABEL,
};

use std::fmt;
use std::net::IpAddr;

/// An IP family, as Services' `ipFamilies` and EndpointSlices'
/// `addressType` name them. kube-proxy runs one proxier per family; every
/// view and every lookup here is for one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub const ALL: [IpFamily; 2] = [IpFamily::V4, IpFamily::V6];

    pub fn of(ip: IpAddr) -> IpFamily {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// `"IPv4"` or `"IPv6"`, as the Kubernetes API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
