//! Service ports and their endpoints as kube-proxy sees them.
//!
//! A [`ServicePortView`] is one port of one Service in one IP family, with
//! the endpoints its EndpointSlices give it: what kube-proxy's
//! `ServicePortMap` and `EndpointsMap` hold for one `ServicePortName`. A
//! [`ServiceSet`] holds the views of a whole desired state.

use super::topology::{categorize_endpoints, CategorizedEndpoints, TrafficPolicies};
use super::IpFamily;
use crate::model::names::Protocol;
use crate::model::{DesiredState, Object, DEFAULT_NAMESPACE};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The label that ties an EndpointSlice to its Service (`discovery.LabelServiceName`).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The Node label that names its zone (`v1.LabelTopologyZone`).
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// ClientIP session affinity's timeout when the Service names none (the API
/// server's default, `v1.DefaultClientIPServiceAffinitySeconds`).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;

/// Identifies a service port: kube-proxy's `ServicePortName`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub namespace: String,
    pub name: String,
    /// The port's name; `""` for a Service's single unnamed port.
    pub port: String,
    pub protocol: Protocol,
}

/// `ns1/svc1:p80/TCP`
impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}:{}/{}",
            self.namespace,
            self.name,
            self.port,
            self.protocol.as_str()
        )
    }
}

/// One endpoint of a service port, with the conditions resolved the way
/// kube-proxy resolves them (`EndpointSliceCache.addEndpoints`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointView {
    /// The endpoint's first address and the EndpointSlice's port number for
    /// the service port (the Service's targetPort, resolved per pod by the
    /// EndpointSlice controller; kube-proxy never reads targetPort itself).
    pub addr: SocketAddr,
    pub node_name: Option<String>,
    pub zone: Option<String>,
    /// `conditions.ready`; nil counts as true.
    pub ready: bool,
    /// `conditions.serving`; nil counts as true (kube-proxy's rule, not the
    /// API comment's "defer to ready": see docs/services.md).
    pub serving: bool,
    /// `conditions.terminating`; nil counts as false.
    pub terminating: bool,
    /// `hints.forZones[*].name`.
    pub zone_hints: BTreeSet<String>,
    /// `hints.forNodes[*].name`.
    pub node_hints: BTreeSet<String>,
}

impl EndpointView {
    /// An endpoint with the given readiness and nothing else set.
    pub fn new(addr: SocketAddr, ready: bool, serving: bool, terminating: bool) -> EndpointView {
        EndpointView {
            addr,
            node_name: None,
            zone: None,
            ready,
            serving,
            terminating,
            zone_hints: BTreeSet::new(),
            node_hints: BTreeSet::new(),
        }
    }

    /// Whether the endpoint runs on `node` (`EndpointSliceCache.isLocal`:
    /// an empty node name is never local).
    pub fn is_local(&self, node: &str) -> bool {
        !node.is_empty() && self.node_name.as_deref() == Some(node)
    }

    /// Reads one EndpointSlice endpoint for a port number, or `None` when it
    /// has no address or its first address is not of `family`.
    fn from_slice_endpoint(ep: &Endpoint, port: u16, family: IpFamily) -> Option<EndpointView> {
        // kube-proxy uses the first address only.
        let ip: IpAddr = ep.addresses.first()?.parse().ok()?;
        if IpFamily::of(ip) != family {
            return None;
        }
        let c = ep.conditions.as_ref();
        let names = |v: Option<Vec<String>>| v.into_iter().flatten().collect::<BTreeSet<_>>();
        let hints = ep.hints.as_ref();
        Some(EndpointView {
            addr: SocketAddr::new(ip, port),
            node_name: ep.node_name.clone(),
            zone: ep.zone.clone(),
            ready: c.and_then(|c| c.ready).unwrap_or(true),
            serving: c.and_then(|c| c.serving).unwrap_or(true),
            terminating: c.and_then(|c| c.terminating).unwrap_or(false),
            zone_hints: names(
                hints
                    .and_then(|h| h.for_zones.as_ref())
                    .map(|z| z.iter().map(|z| z.name.clone()).collect()),
            ),
            node_hints: names(
                hints
                    .and_then(|h| h.for_nodes.as_ref())
                    .map(|n| n.iter().map(|n| n.name.clone()).collect()),
            ),
        })
    }
}

/// One port of one Service in one IP family, as kube-proxy's proxier for
/// that family holds it (`BaseServicePortInfo` plus its endpoints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortView {
    pub name: ServicePortName,
    pub family: IpFamily,
    /// The Service's cluster IP of this family.
    pub cluster_ip: IpAddr,
    pub port: u16,
    /// `None` when the port has no node port.
    pub node_port: Option<u16>,
    /// `spec.externalIPs` of this family.
    pub external_ips: BTreeSet<IpAddr>,
    /// `status.loadBalancer.ingress[*].ip` of this family whose `ipMode` is
    /// VIP (or unset): addresses the node itself captures.
    pub load_balancer_vips: BTreeSet<IpAddr>,
    /// `spec.loadBalancerSourceRanges` of this family, whitespace trimmed.
    pub load_balancer_source_ranges: Vec<IpNet>,
    /// externalTrafficPolicy Local on a Service reachable from outside
    /// (`apiservice.ExternalPolicyLocal`).
    pub external_policy_local: bool,
    /// internalTrafficPolicy Local.
    pub internal_policy_local: bool,
    /// ClientIP session affinity's timeout; `None` without affinity.
    pub session_affinity_timeout: Option<u32>,
    /// The health-check node port of a LoadBalancer with
    /// externalTrafficPolicy Local (`apiservice.NeedsHealthCheck`).
    pub health_check_node_port: Option<u16>,
    /// `spec.trafficDistribution`, kept for people reading the view. It
    /// does not steer endpoint choice: as in kube-proxy, the EndpointSlice
    /// controller turns it into hints, and the hints decide.
    pub traffic_distribution: Option<String>,
    /// The port's endpoints, by address, each address once.
    pub endpoints: Vec<EndpointView>,
}

impl ServicePortView {
    /// Reachable other than by cluster IP: a node port, an external IP or a
    /// load-balancer VIP (`BaseServicePortInfo.ExternallyAccessible`).
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some()
            || !self.load_balancer_vips.is_empty()
            || !self.external_ips.is_empty()
    }

    pub fn policies(&self) -> TrafficPolicies {
        TrafficPolicies {
            internal_local: self.internal_policy_local,
            external_local: self.external_policy_local,
            externally_accessible: self.externally_accessible(),
        }
    }

    /// The port's endpoints in kube-proxy's categories, as seen from the
    /// node `node_name` in `zone`.
    pub fn categorize(&self, node_name: &str, zone: Option<&str>) -> CategorizedEndpoints {
        categorize_endpoints(&self.endpoints, self.policies(), node_name, zone)
    }
}

/// The cluster IP a Service has in `family`, or `None` when kube-proxy's
/// proxier for that family would skip it (`ShouldSkipService`,
/// `GetClusterIPByFamily`): headless and ExternalName Services, and
/// Services without an address of that family.
///
/// `GetClusterIPByFamily` pairs `ipFamilies[i]` with `clusterIPs[i]`; the
/// API server keeps the two aligned, so picking the address of the family
/// from `clusterIPs` (or `clusterIP` when `clusterIPs` is empty, as in
/// hand-written manifests) is the same thing.
fn cluster_ip(service: &Service, family: IpFamily) -> Option<IpAddr> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let ips: Vec<&str> = match spec.cluster_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        _ => spec.cluster_ip.as_deref().into_iter().collect(),
    };
    ips.into_iter()
        .filter(|s| *s != "None" && !s.is_empty())
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .find(|ip| IpFamily::of(*ip) == family)
}

/// Whether the Service is reachable from outside the cluster at all
/// (`apiservice.ExternallyAccessible`). An absent type is ClusterIP, as the
/// API server defaults it.
fn service_externally_accessible(service: &Service) -> bool {
    let Some(spec) = &service.spec else {
        return false;
    };
    match spec.type_.as_deref().unwrap_or("ClusterIP") {
        "LoadBalancer" | "NodePort" => true,
        "ClusterIP" | "" => spec.external_ips.as_ref().is_some_and(|v| !v.is_empty()),
        _ => false,
    }
}

fn port_u16(n: Option<i32>) -> Option<u16> {
    n.and_then(|n| u16::try_from(n).ok()).filter(|&n| n != 0)
}

fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
}

/// Whether `slice` belongs to `service`: same namespace and a
/// `kubernetes.io/service-name` label naming it (`endpointSliceCacheKeys`).
fn slice_belongs_to(slice: &EndpointSlice, service: &Service) -> bool {
    let Some(name) = service.metadata.name.as_deref() else {
        return false;
    };
    namespace_of(&slice.metadata) == namespace_of(&service.metadata)
        && slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .is_some_and(|n| n == name)
}

/// The endpoints of one service port in one family, from the Service's
/// slices (`EndpointSliceCache.endpointInfoByServicePort` and
/// `addEndpoints`):
///
/// - only IPv4 and IPv6 slices of `family` count (FQDN slices are not
///   proxied);
/// - a slice port serves the service port when its name and protocol are
///   the service port's; an absent name is `""` and an absent protocol TCP,
///   as the API server defaults them; a port without a number (or 0) is
///   skipped;
/// - each endpoint contributes its first address with that slice port's
///   number, so one service port may reach different target ports in
///   different slices (a named targetPort resolved per pod);
/// - an address:port seen twice keeps the first entry unless a later one
///   is not terminating (a pod that reuses a terminating pod's IP wins).
///   Slices are read in name order, so the result does not depend on the
///   order they arrived in (kube-proxy reads them in map order).
fn endpoints_for(
    name: &ServicePortName,
    family: IpFamily,
    slices: &[&EndpointSlice],
) -> Vec<EndpointView> {
    let mut slices: Vec<&EndpointSlice> = slices.to_vec();
    slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    // Every candidate in slice order, then a stable sort by address: each
    // address's candidates stay in the order they were read, and one pass
    // picks the winner of each (no map: a Service's few endpoints cost one
    // vector).
    let mut all: Vec<EndpointView> = Vec::new();
    for slice in slices {
        if slice.address_type != family.as_str() {
            continue;
        }
        for p in slice.ports.iter().flatten() {
            if p.name.as_deref().unwrap_or("") != name.port
                || Protocol::from_k8s(p.protocol.as_deref()) != Some(name.protocol)
            {
                continue;
            }
            let Some(port) = port_u16(p.port) else {
                continue;
            };
            all.extend(
                slice
                    .endpoints
                    .iter()
                    .flatten()
                    .filter_map(|ep| EndpointView::from_slice_endpoint(ep, port, family)),
            );
        }
    }
    all.sort_by_key(|v| v.addr);
    let mut out: Vec<EndpointView> = Vec::with_capacity(all.len());
    for view in all {
        match out.last_mut() {
            // A later one replaces the first unless it is terminating.
            Some(last) if last.addr == view.addr => {
                if !view.terminating {
                    *last = view;
                }
            }
            _ => out.push(view),
        }
    }
    out
}

/// The views of one Service, one per port and family it is proxied in
/// (`serviceToServiceMap` and `newBaseServiceInfo`, for each family's
/// proxier), with the endpoints of the slices in `slices` that belong to
/// it. In family order, then port order as the Service lists them.
pub fn service_port_views<'a>(
    service: &Service,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Vec<ServicePortView> {
    let own: Vec<&EndpointSlice> = slices
        .into_iter()
        .filter(|s| slice_belongs_to(s, service))
        .collect();
    views_with_slices(service, &own)
}

/// The views of one Service with its own slices (already filtered).
pub(crate) fn views_with_slices(
    service: &Service,
    slices: &[&EndpointSlice],
) -> Vec<ServicePortView> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    let namespace = namespace_of(&service.metadata).to_string();
    let svc_name = service.metadata.name.clone().unwrap_or_default();
    let externally_accessible = service_externally_accessible(service);
    let external_policy_local =
        externally_accessible && spec.external_traffic_policy.as_deref() == Some("Local");
    let internal_policy_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let session_affinity_timeout =
        (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
        });
    let health_check_node_port = (spec.type_.as_deref() == Some("LoadBalancer")
        && external_policy_local)
        .then(|| port_u16(spec.health_check_node_port))
        .flatten();

    let mut out = Vec::new();
    for family in IpFamily::ALL {
        let Some(cluster_ip) = cluster_ip(service, family) else {
            continue;
        };
        let of_family = |ip: &IpAddr| IpFamily::of(*ip) == family;
        let external_ips: BTreeSet<IpAddr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|s| s.trim().parse().ok())
            .filter(of_family)
            .collect();
        // The ingress addresses the load balancer delivers to unchanged
        // (ipMode VIP, the default); "Proxy" ones are the balancer's own.
        let load_balancer_vips: BTreeSet<IpAddr> = service
            .status
            .iter()
            .flat_map(|s| s.load_balancer.iter())
            .flat_map(|lb| lb.ingress.iter().flatten())
            .filter(|ing| ing.ip_mode.as_deref().is_none_or(|m| m == "VIP"))
            .filter_map(|ing| ing.ip.as_deref()?.parse().ok())
            .filter(of_family)
            .collect();
        let ranges: BTreeSet<IpNet> = spec
            .load_balancer_source_ranges
            .iter()
            .flatten()
            .filter_map(|s| s.trim().parse::<IpNet>().ok())
            .filter(|n| of_family(&n.addr()))
            .collect();
        for p in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::from_k8s(p.protocol.as_deref()) else {
                continue;
            };
            let Some(port) = port_u16(Some(p.port)) else {
                continue;
            };
            let name = ServicePortName {
                namespace: namespace.clone(),
                name: svc_name.clone(),
                port: p.name.clone().unwrap_or_default(),
                protocol,
            };
            let endpoints = endpoints_for(&name, family, slices);
            out.push(ServicePortView {
                name,
                family,
                cluster_ip,
                port,
                node_port: port_u16(p.node_port),
                external_ips: external_ips.clone(),
                load_balancer_vips: load_balancer_vips.clone(),
                load_balancer_source_ranges: ranges.iter().copied().collect(),
                external_policy_local,
                internal_policy_local,
                session_affinity_timeout,
                health_check_node_port,
                traffic_distribution: spec.traffic_distribution.clone(),
                endpoints,
            });
        }
    }
    out
}

/// Every proxied service port of a desired state, in (name, family) order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSet {
    ports: Vec<ServicePortView>,
}

impl ServiceSet {
    /// The views of `services`, each with the slices of `slices` that
    /// belong to it.
    pub fn from_objects<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> ServiceSet {
        // Slices by (namespace, service name), so each Service only looks at
        // its own.
        let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
        for s in slices {
            if let Some(svc) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            {
                by_service
                    .entry((namespace_of(&s.metadata), svc.as_str()))
                    .or_default()
                    .push(s);
            }
        }
        let mut ports: Vec<ServicePortView> = Vec::new();
        for svc in services {
            let key = (
                namespace_of(&svc.metadata),
                svc.metadata.name.as_deref().unwrap_or(""),
            );
            let own = by_service.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            ports.extend(views_with_slices(svc, own));
        }
        ports.sort_by(|a, b| (&a.name, a.family).cmp(&(&b.name, b.family)));
        ServiceSet { ports }
    }

    /// The views of every Service in the desired state.
    pub fn from_state(state: &DesiredState) -> ServiceSet {
        let mut services = Vec::new();
        let mut slices = Vec::new();
        for so in state.iter() {
            match &so.object {
                Object::Service(s) => services.push(&**s),
                Object::EndpointSlice(s) => slices.push(&**s),
                _ => {}
            }
        }
        ServiceSet::from_objects(services, slices)
    }

    pub fn ports(&self) -> &[ServicePortView] {
        &self.ports
    }

    /// The views of one family.
    pub fn family(&self, family: IpFamily) -> impl Iterator<Item = &ServicePortView> {
        self.ports.iter().filter(move |v| v.family == family)
    }

    /// The view of a service port in a family.
    pub fn get(&self, name: &ServicePortName, family: IpFamily) -> Option<&ServicePortView> {
        self.ports
            .iter()
            .find(|v| &v.name == name && v.family == family)
    }
}

/// The zone label of the Node named `node_name` in the desired state: what
/// kube-proxy reads from its own Node object for topology.
pub fn node_zone(state: &DesiredState, node_name: &str) -> Option<String> {
    let key = crate::model::ObjectKey::cluster(crate::model::Kind::Node, node_name);
    match &state.get(&key)?.object {
        Object::Node(n) => n
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ZONE_LABEL))
            .filter(|z| !z.is_empty())
            .cloned(),
        _ => None,
    }
}

/// The port a Service port's traffic reaches on `pod`: what the
/// EndpointSlice controller writes into the pod's slice
/// (`podutil.FindPort`). A numeric targetPort is itself (absent or 0: the
/// Service port, as the API server defaults it); a named one is the
/// container port of that name and the Service port's protocol, looked up
/// in the containers and then the sidecars (init containers with
/// `restartPolicy: Always`). `None` when the pod has no such port.
pub fn find_target_port(pod: &Pod, port: &ServicePort) -> Option<u16> {
    let protocol = Protocol::from_k8s(port.protocol.as_deref())?;
    match &port.target_port {
        None | Some(IntOrString::Int(0)) => port_u16(Some(port.port)),
        Some(IntOrString::Int(n)) => port_u16(Some(*n)),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && Protocol::from_k8s(p.protocol.as_deref()) == Some(protocol)
                })
                .and_then(|p| port_u16(Some(p.container_port)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn web() -> Service {
        svc(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "shop", "name": "web"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "dns", "port": 53, "protocol": "UDP"}
            ]}
        }))
    }

    #[test]
    fn nil_conditions_follow_kube_proxy() {
        let s = slice(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "shop", "name": "web-1",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.0.0.1"]},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": false, "terminating": true}},
                {"addresses": ["10.0.0.4"], "conditions": {"serving": false, "terminating": true, "ready": false}}
            ]
        }));
        let views = service_port_views(&web(), [&s]);
        let http = &views[0];
        let got: Vec<(SocketAddr, bool, bool, bool)> = http
            .endpoints
            .iter()
            .map(|e| (e.addr, e.ready, e.serving, e.terminating))
            .collect();
        assert_eq!(
            got,
            vec![
                // Every condition nil: ready, serving, not terminating.
                (sa("10.0.0.1:8080"), true, true, false),
                // serving nil counts as true even though ready is false.
                (sa("10.0.0.2:8080"), false, true, false),
                (sa("10.0.0.3:8080"), false, true, true),
                (sa("10.0.0.4:8080"), false, false, true),
            ]
        );
        // The UDP port has no slice port of its name and protocol.
        assert!(views[1].endpoints.is_empty());
        // serving nil with ready false and terminating: a usable
        // serving-terminating endpoint when nothing is ready.
        let only = EndpointView {
            addr: sa("10.0.0.3:8080"),
            ..http.endpoints[2].clone()
        };
        let c = categorize_endpoints(&[only], TrafficPolicies::default(), "n1", None);
        assert_eq!(c.cluster, Some([sa("10.0.0.3:8080")].into()));
    }

    #[test]
    fn slice_ports_match_by_name_and_protocol_and_vary_per_slice() {
        let svc = svc(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "shop", "name": "web"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"}
            ]}
        }));
        // Pods whose "http" container port differs land in two slices.
        let a = slice(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "shop", "name": "web-a",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"},
                      {"name": "dns-tcp", "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.0.0.1"]}]
        }));
        let b = slice(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "shop", "name": "web-b",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 9090}, {"name": "dns", "port": 53, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.0.0.2", "10.0.0.99"]}]
        }));
        // Slices of another Service, another namespace, without the label,
        // or of FQDN type are not the Service's.
        let other = slice(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "shop", "name": "api-1",
                         "labels": {"kubernetes.io/service-name": "api"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 1}],
            "endpoints": [{"addresses": ["10.9.9.1"]}]
        }));
        let other_ns = slice(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "dev", "name": "web-1",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 1}],
            "endpoints": [{"addresses": ["10.9.9.2"]}]
        }));
        let unlabelled = slice(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "shop", "name": "web-manual"},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 1}],
            "endpoints": [{"addresses": ["10.9.9.3"]}]
        }));
        let fqdn = slice(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "shop", "name": "web-fqdn",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "FQDN", "ports": [{"name": "http", "port": 1}],
            "endpoints": [{"addresses": ["example.com"]}]
        }));
        let views = service_port_views(&svc, [&b, &other, &a, &other_ns, &unlabelled, &fqdn]);
        let addrs =
            |i: usize| -> Vec<SocketAddr> { views[i].endpoints.iter().map(|e| e.addr).collect() };
        assert_eq!(views.len(), 3);
        // Only the first address of an endpoint is used.
        assert_eq!(addrs(0), vec![sa("10.0.0.1:8080"), sa("10.0.0.2:9090")]);
        assert_eq!(addrs(1), vec![sa("10.0.0.1:5353")]);
        // A slice port without a number is skipped; "dns" in slice b is TCP,
        // not the "dns-tcp" port.
        assert!(addrs(2).is_empty());
        // ServiceSet indexes slices by Service and agrees (in name order).
        let set = ServiceSet::from_objects([&svc], [&a, &b, &other, &other_ns, &unlabelled, &fqdn]);
        let mut sorted = views.clone();
        sorted.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(set.ports(), &sorted[..]);
    }

    #[test]
    fn duplicate_addresses_prefer_the_non_terminating_entry() {
        let mk = |name: &str, ready: bool, terminating: bool, node: &str| {
            slice(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"namespace": "shop", "name": name,
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
                "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": node,
                               "conditions": {"ready": ready, "terminating": terminating}}]
            }))
        };
        // The terminating pod's slice sorts first; the new pod wins.
        let old = mk("web-a", false, true, "n1");
        let new = mk("web-b", true, false, "n2");
        let views = service_port_views(&web(), [&new, &old]);
        assert_eq!(views[0].endpoints.len(), 1);
        assert_eq!(views[0].endpoints[0].node_name.as_deref(), Some("n2"));
        // Both terminating: the first (in slice-name order) stays.
        let old2 = mk("web-b", false, true, "n2");
        let views = service_port_views(&web(), [&old2, &old]);
        assert_eq!(views[0].endpoints[0].node_name.as_deref(), Some("n1"));
    }

    #[test]
    fn dual_stack_services_give_one_view_per_family() {
        let svc = svc(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "shop", "name": "web"},
            "spec": {
                "type": "LoadBalancer",
                "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00:96::10"],
                "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack",
                "externalIPs": ["192.0.2.1", "2001:db8::1"],
                "loadBalancerSourceRanges": ["198.51.100.0/24", " 2001:db8:1::/48"],
                "externalTrafficPolicy": "Local", "healthCheckNodePort": 30100,
                "sessionAffinity": "ClientIP",
                "ports": [{"name": "http", "port": 80, "nodePort": 30080}]
            },
            "status": {"loadBalancer": {"ingress": [
                {"ip": "203.0.113.1"}, {"ip": "2001:db8:2::1", "ipMode": "VIP"},
                {"ip": "203.0.113.2", "ipMode": "Proxy"}, {"hostname": "lb.example"}
            ]}}
        }));
        let v4 = slice(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "shop", "name": "web-v4",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["10.0.0.1"]}]
        }));
        let v6 = slice(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "shop", "name": "web-v6",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv6", "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["fd00::1"]}]
        }));
        let views = service_port_views(&svc, [&v4, &v6]);
        assert_eq!(views.len(), 2);
        let (a, b) = (&views[0], &views[1]);
        assert_eq!((a.family, b.family), (IpFamily::V4, IpFamily::V6));
        assert_eq!(a.cluster_ip, "10.96.0.10".parse::<IpAddr>().unwrap());
        assert_eq!(b.cluster_ip, "fd00:96::10".parse::<IpAddr>().unwrap());
        assert_eq!(a.endpoints[0].addr, sa("10.0.0.1:8080"));
        assert_eq!(b.endpoints[0].addr, sa("[fd00::1]:8080"));
        assert_eq!(a.external_ips, ["192.0.2.1".parse().unwrap()].into());
        assert_eq!(b.external_ips, ["2001:db8::1".parse().unwrap()].into());
        // Proxy-mode ingress addresses and hostnames are not captured.
        assert_eq!(
            a.load_balancer_vips,
            ["203.0.113.1".parse().unwrap()].into()
        );
        assert_eq!(
            b.load_balancer_vips,
            ["2001:db8:2::1".parse().unwrap()].into()
        );
        assert_eq!(
            a.load_balancer_source_ranges,
            vec!["198.51.100.0/24".parse().unwrap()]
        );
        assert_eq!(
            b.load_balancer_source_ranges,
            vec!["2001:db8:1::/48".parse().unwrap()]
        );
        for v in &views {
            assert_eq!(v.node_port, Some(30080));
            assert!(v.external_policy_local && !v.internal_policy_local);
            assert_eq!(v.health_check_node_port, Some(30100));
            assert_eq!(
                v.session_affinity_timeout,
                Some(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
            );
        }
    }

    #[test]
    fn skipped_services() {
        let mk = |spec: serde_json::Value| {
            svc(json!({"apiVersion": "v1", "kind": "Service",
                       "metadata": {"namespace": "shop", "name": "x"}, "spec": spec}))
        };
        let none: [&EndpointSlice; 0] = [];
        // Headless, ExternalName, no cluster IP: not proxied.
        for spec in [
            json!({"clusterIP": "None", "ports": [{"port": 80}]}),
            json!({"type": "ExternalName", "externalName": "example.com", "ports": [{"port": 80}]}),
            json!({"ports": [{"port": 80}]}),
        ] {
            assert!(service_port_views(&mk(spec), none).is_empty());
        }
        // An IPv6-only Service has no IPv4 view.
        let v = service_port_views(
            &mk(json!({"clusterIP": "fd00::10", "ports": [{"port": 80}]})),
            none,
        );
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].family, IpFamily::V6);
        // externalTrafficPolicy Local only counts when the Service is
        // reachable from outside; a ClusterIP Service with external IPs is.
        let v = service_port_views(
            &mk(
                json!({"clusterIP": "10.96.0.1", "externalTrafficPolicy": "Local",
                       "ports": [{"port": 80}]}),
            ),
            none,
        );
        assert!(!v[0].external_policy_local);
        let v = service_port_views(
            &mk(
                json!({"clusterIP": "10.96.0.1", "externalTrafficPolicy": "Local",
                       "externalIPs": ["192.0.2.7"], "ports": [{"port": 80}]}),
            ),
            none,
        );
        assert!(v[0].external_policy_local);
        // No health-check node port unless LoadBalancer with eTP Local.
        assert_eq!(v[0].health_check_node_port, None);
    }

    #[test]
    fn views_from_the_desired_state() {
        let text = r#"
apiVersion: v1
kind: Node
metadata: {name: node-a, labels: {topology.kubernetes.io/zone: z1}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: [10.0.0.1]
  nodeName: node-a
  zone: z1
  hints: {forZones: [{name: z1}], forNodes: [{name: node-a}]}
"#;
        let mut state = DesiredState::new();
        let objects = crate::model::parse_manifests(text).unwrap();
        let batch: Vec<_> = objects
            .into_iter()
            .map(crate::model::Change::Apply)
            .collect();
        state.apply(&batch).unwrap();
        assert_eq!(node_zone(&state, "node-a").as_deref(), Some("z1"));
        assert_eq!(node_zone(&state, "node-b"), None);
        let set = ServiceSet::from_state(&state);
        assert_eq!(set.ports().len(), 1);
        let v = &set.ports()[0];
        assert_eq!(v.name.to_string(), "shop/web:http/TCP");
        let e = &v.endpoints[0];
        assert_eq!(e.addr, sa("10.0.0.1:8080"));
        assert!(e.is_local("node-a") && !e.is_local("node-b") && !e.is_local(""));
        assert_eq!(e.zone.as_deref(), Some("z1"));
        assert_eq!(e.zone_hints, ["z1".to_string()].into());
        assert_eq!(e.node_hints, ["node-a".to_string()].into());
        assert!(set.get(&v.name, IpFamily::V4).is_some());
        assert!(set.get(&v.name, IpFamily::V6).is_none());
    }

    #[test]
    fn traffic_distribution_acts_through_hints() {
        let svc = svc(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "shop", "name": "web"},
            "spec": {"clusterIP": "10.96.0.10", "trafficDistribution": "PreferClose",
                     "ports": [{"name": "http", "port": 80}]}
        }));
        let mk = |hinted: bool| {
            let hints = |z: &str| {
                if hinted {
                    json!({"forZones": [{"name": z}]})
                } else {
                    json!(null)
                }
            };
            slice(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"namespace": "shop", "name": "web-1",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
                "endpoints": [
                    {"addresses": ["10.0.0.1"], "zone": "z1", "hints": hints("z1")},
                    {"addresses": ["10.0.0.2"], "zone": "z2", "hints": hints("z2")}
                ]
            }))
        };
        // Without hints (a slice the controller has not annotated yet) the
        // Service's trafficDistribution does not narrow anything.
        let v = &service_port_views(&svc, [&mk(false)])[0];
        assert_eq!(v.traffic_distribution.as_deref(), Some("PreferClose"));
        let c = v.categorize("node-a", Some("z1"));
        assert_eq!(c.cluster.unwrap().len(), 2);
        // With the controller's zone hints, the node's zone is preferred.
        let v = &service_port_views(&svc, [&mk(true)])[0];
        let c = v.categorize("node-a", Some("z1"));
        assert_eq!(c.cluster, Some([sa("10.0.0.1:8080")].into()));
    }

    #[test]
    fn target_ports_resolve_per_pod() {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": "shop", "name": "web-0"},
            "spec": {
                "containers": [{"name": "app", "ports": [
                    {"name": "http", "containerPort": 8080},
                    {"name": "dns", "containerPort": 5353, "protocol": "UDP"}
                ]}],
                "initContainers": [
                    {"name": "proxy", "restartPolicy": "Always",
                     "ports": [{"name": "admin", "containerPort": 9901}]},
                    {"name": "setup", "ports": [{"name": "setup", "containerPort": 7000}]}
                ]
            }
        }))
        .unwrap();
        let port = |v: serde_json::Value| -> ServicePort { serde_json::from_value(v).unwrap() };
        let find = |v| find_target_port(&pod, &port(v));
        assert_eq!(find(json!({"port": 80, "targetPort": "http"})), Some(8080));
        assert_eq!(
            find(json!({"port": 53, "targetPort": "dns", "protocol": "UDP"})),
            Some(5353)
        );
        // The name must match with the Service port's protocol.
        assert_eq!(find(json!({"port": 53, "targetPort": "dns"})), None);
        // Sidecars count; ordinary init containers do not.
        assert_eq!(find(json!({"port": 1, "targetPort": "admin"})), Some(9901));
        assert_eq!(find(json!({"port": 1, "targetPort": "setup"})), None);
        assert_eq!(find(json!({"port": 80, "targetPort": 9000})), Some(9000));
        assert_eq!(find(json!({"port": 80})), Some(80));
        assert_eq!(find(json!({"port": 80, "targetPort": "missing"})), None);
    }
}
