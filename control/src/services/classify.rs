//! What kube-proxy's rules do with one packet: the verdict for a probe
//! (source, destination, protocol, port) given the Services, their
//! endpoints and the node.
//!
//! The order is the nftables proxier's (`syncProxyRules`, `setupNFTables`)
//! for a packet arriving at the node (prerouting), which is how every packet
//! reaches Sluice, through one of its ports:
//!
//! 1. LoadBalancer source ranges (`firewall-check`): a packet to a
//!    load-balancer VIP of a port with `loadBalancerSourceRanges` from a
//!    source outside them is dropped.
//! 2. Service dispatch (`services`): the destination address, protocol and
//!    port are looked up among cluster IPs, external IPs and load-balancer
//!    VIPs; failing that, the protocol and port among node ports, when the
//!    destination is one of the node's NodePort addresses. A hit DNATs to
//!    the port's endpoints for that kind of traffic, or, for
//!    externalTrafficPolicy Local without local endpoints, falls through.
//! 3. What was not DNATed is checked for services without (usable)
//!    endpoints (`service-endpoints-check`, `nodeport-endpoints-check`):
//!    REJECT when the port has no endpoints at all, DROP when it has some
//!    but none for this traffic (a Local policy without local endpoints).
//! 4. Then for cluster IPs (`cluster-ips-check`): a packet to a cluster IP on
//!    a port it does not serve is rejected, one to an unallocated address in
//!    the service CIDRs dropped.
//! 5. Anything else is no business of the Service rules.

use super::topology::CategorizedEndpoints;
use super::view::{ServicePortView, ServiceSet};
use super::IpFamily;
use crate::model::names::Protocol;
use ipnet::IpNet;
pub use sluice_dataplane::tables::services::SourceClass;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

/// What the Service rules need to know about the node they run on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeConfig {
    /// The node's name, as EndpointSlices' `nodeName` and `hints.forNodes`
    /// spell it: endpoints with this node name are local.
    pub name: String,
    /// The node's `topology.kubernetes.io/zone` label, for zone hints.
    pub zone: Option<String>,
    /// The node's primary address of each family (kube-proxy's node IP).
    /// When a LoadBalancer's source ranges admit it, packets from the
    /// port's own VIPs are admitted too (a node reaching a VIP it hosts
    /// sends from the VIP).
    pub primary_ips: Vec<IpAddr>,
    /// Every address the node owns: what nftables' `fib saddr/daddr type
    /// local` matches. Sources here are the node's own traffic; NodePorts
    /// are served on (some of) these.
    pub local_ips: Vec<IpAddr>,
    /// Sources in these CIDRs are pods of this cluster (kube-proxy's
    /// LocalTrafficDetector, ClusterCIDR mode). Traffic from anything else
    /// to a cluster IP is masqueraded, and pods reaching an
    /// externalTrafficPolicy Local address skip the policy. No CIDR of a
    /// family means no detector for that family.
    pub cluster_cidrs: Vec<IpNet>,
    /// The service CIDRs: packets to an address in them that no Service
    /// holds are dropped.
    pub service_cidrs: Vec<IpNet>,
    /// `--nodeport-addresses`: NodePorts are served on the node's addresses
    /// within these CIDRs. No CIDR of a family: every non-loopback address
    /// of the node in that family.
    pub node_port_addresses: Vec<IpNet>,
    /// `--masquerade-all`: masquerade all traffic to cluster IPs.
    pub masquerade_all: bool,
}

impl NodeConfig {
    fn is_local_ip(&self, ip: IpAddr) -> bool {
        self.local_ips.contains(&ip) || self.primary_ips.contains(&ip)
    }

    fn has_detector(&self, family: IpFamily) -> bool {
        self.cluster_cidrs
            .iter()
            .any(|c| IpFamily::of(c.addr()) == family)
    }

    fn is_pod_ip(&self, ip: IpAddr) -> bool {
        self.cluster_cidrs.iter().any(|c| c.contains(&ip))
    }

    /// Whether NodePorts are served on `ip` (`NodePortAddresses`:
    /// `MatchAll` when no CIDR of the family is given, otherwise the node's
    /// addresses inside the CIDRs; loopback never).
    pub fn serves_node_ports_on(&self, ip: IpAddr) -> bool {
        if ip.is_loopback() || !self.is_local_ip(ip) {
            return false;
        }
        let family = IpFamily::of(ip);
        let mut cidrs = self
            .node_port_addresses
            .iter()
            .filter(|c| IpFamily::of(c.addr()) == family)
            .peekable();
        cidrs.peek().is_none() || cidrs.any(|c| c.contains(&ip))
    }
}

/// A packet to classify: the first packet of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: Protocol,
    pub dst_port: u16,
}

/// What the Service rules do with a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Rewrite the destination to one of `endpoints` (the dataplane picks
    /// one per connection, e.g. from a Maglev ring over exactly this set).
    /// `masquerade`: also rewrite the source to the node's address on the
    /// way out. Independently of it, a connection whose chosen endpoint is
    /// its own source is always masqueraded (see [`hairpin`]).
    Dnat {
        endpoints: BTreeSet<SocketAddr>,
        masquerade: bool,
    },
    /// Refuse: ICMP unreachable / TCP reset.
    Reject,
    /// Drop silently.
    Drop,
    /// Not the Service rules' packet: forward it unchanged.
    NoMatch,
}

/// Whether a connection from `src` sent to `endpoint` must be masqueraded
/// because it comes back to itself (each endpoint chain's `ip saddr <ip>
/// jump mark-for-masquerade`): without it the endpoint would answer itself
/// directly, bypassing the reverse NAT.
pub fn hairpin(src: IpAddr, endpoint: SocketAddr) -> bool {
    endpoint.ip() == src
}

/// A front end the Service rules dispatch on, before the source is looked
/// at: what the dataplane's service table is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrontendKey {
    /// A packet to `addr:port` over `protocol`: a cluster IP, external IP
    /// or load-balancer VIP, or any other address (then only the node-port
    /// fall-through and steps 3–4 can match).
    Address {
        protocol: Protocol,
        addr: IpAddr,
        port: u16,
    },
    /// A packet to `port` over `protocol` on one of the node's NodePort
    /// addresses of `family`, which no address front end claimed.
    NodePort {
        family: IpFamily,
        protocol: Protocol,
        port: u16,
    },
}

impl FrontendKey {
    pub fn family(&self) -> IpFamily {
        match self {
            FrontendKey::Address { addr, .. } => IpFamily::of(*addr),
            FrontendKey::NodePort { family, .. } => *family,
        }
    }

    pub fn protocol(&self) -> Protocol {
        match self {
            FrontendKey::Address { protocol, .. } | FrontendKey::NodePort { protocol, .. } => {
                *protocol
            }
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            FrontendKey::Address { port, .. } | FrontendKey::NodePort { port, .. } => *port,
        }
    }
}

impl NodeConfig {
    /// The class of a source address, as the rules tell sources apart: a
    /// pod when a detector (a cluster CIDR) exists for its family and holds
    /// it, else the node when it is one of the node's addresses, else
    /// other.
    pub fn source_class(&self, src: IpAddr) -> SourceClass {
        if self.has_detector(IpFamily::of(src)) && self.is_pod_ip(src) {
            SourceClass::Pod
        } else if self.is_local_ip(src) {
            SourceClass::Node
        } else {
            SourceClass::Other
        }
    }

    /// Every address the node owns (its local IPs and primary IPs), each
    /// once, in order.
    pub fn own_ips(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for ip in self.local_ips.iter().chain(&self.primary_ips) {
            if !out.contains(ip) {
                out.push(*ip);
            }
        }
        out
    }

    /// Whether a detector of pod traffic exists for `family`.
    pub fn detects_pods(&self, family: IpFamily) -> bool {
        self.has_detector(family)
    }
}

/// One service port with its endpoint categories and what kube-proxy
/// derives from them in `syncProxyRules`. Categorizing costs allocations,
/// so callers that resolve many keys prepare each port once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRules {
    pub view: ServicePortView,
    pub cat: CategorizedEndpoints,
}

impl PortRules {
    pub fn new(view: ServicePortView, node: &NodeConfig) -> PortRules {
        let cat = view.categorize(&node.name, node.zone.as_deref());
        PortRules { view, cat }
    }

    /// `hasEndpoints`: usable endpoints somewhere in the cluster.
    fn has_endpoints(&self) -> bool {
        self.cat.has_any_endpoints
    }

    /// `hasInternalEndpoints`.
    fn has_internal_endpoints(&self) -> bool {
        self.has_endpoints()
            && !(self.view.internal_policy_local && self.cat.local_or_empty().is_empty())
    }

    /// `hasExternalEndpoints`.
    fn has_external_endpoints(&self) -> bool {
        self.has_endpoints()
            && !(self.view.external_policy_local && self.cat.local_or_empty().is_empty())
    }

    /// The verdict of the no-endpoint maps: REJECT without any endpoint,
    /// DROP when only the policy's (local) ones are missing.
    fn no_endpoint_verdict(&self) -> Verdict {
        if self.has_endpoints() {
            Verdict::Drop
        } else {
            Verdict::Reject
        }
    }

    /// Traffic to the cluster IP (the internal policy chain): masquerade
    /// when masquerading everything, or when the source is not a pod.
    fn internal(&self, node: &NodeConfig, class: SourceClass) -> Verdict {
        let endpoints = if self.view.internal_policy_local {
            self.cat.local_or_empty()
        } else {
            self.cat.cluster_or_empty()
        };
        // A pod class implies a detector for the family.
        let masquerade = node.masquerade_all
            || (node.has_detector(self.view.family) && class != SourceClass::Pod);
        Verdict::Dnat {
            endpoints,
            masquerade,
        }
    }

    /// Traffic to an external IP, load-balancer VIP or node port (the
    /// service's "external" chain). `None` when the chain falls through
    /// without DNAT (externalTrafficPolicy Local, no local endpoint, and
    /// neither a pod nor the node sent it).
    fn external(&self, class: SourceClass) -> Option<Verdict> {
        let cluster = || self.cat.cluster_or_empty();
        if !self.view.external_policy_local {
            // Endpoints may be on other nodes: masquerade so replies come
            // back through this node.
            return Some(Verdict::Dnat {
                endpoints: cluster(),
                masquerade: true,
            });
        }
        match class {
            // Pods reaching an external address are treated as if they had
            // gone out to the load balancer and back: Cluster policy, source
            // kept ("short-circuit pod traffic").
            SourceClass::Pod => Some(Verdict::Dnat {
                endpoints: cluster(),
                masquerade: false,
            }),
            // The node's own traffic: Cluster policy, masqueraded, as its
            // source address may be the VIP itself ("short-circuit local
            // traffic").
            SourceClass::Node => Some(Verdict::Dnat {
                endpoints: cluster(),
                masquerade: true,
            }),
            SourceClass::Other => self.has_external_endpoints().then(|| Verdict::Dnat {
                endpoints: self.cat.local_or_empty(),
                masquerade: false,
            }),
        }
    }

    /// Whether the port's load-balancer source ranges admit the node's
    /// primary address of the port's family: then packets from the port's
    /// own VIPs are admitted too (see [`PortRules::source_allowed`]).
    pub fn admits_node(&self, node: &NodeConfig) -> bool {
        let ranges = &self.view.load_balancer_source_ranges;
        node.primary_ips
            .iter()
            .filter(|ip| IpFamily::of(**ip) == self.view.family)
            .any(|ip| ranges.iter().any(|r| r.contains(ip)))
    }

    /// The `firewall-check` verdict: whether the source may reach this
    /// port's load-balancer VIPs.
    pub fn source_allowed(&self, node: &NodeConfig, src: IpAddr) -> bool {
        let ranges = &self.view.load_balancer_source_ranges;
        if ranges.iter().any(|r| r.contains(&src)) {
            return true;
        }
        self.admits_node(node) && self.view.load_balancer_vips.contains(&src)
    }

    /// Whether this port is reached at `addr:port` over `protocol` (its
    /// cluster IP, an external IP or a VIP).
    pub fn serves_address(&self, protocol: Protocol, addr: IpAddr, port: u16) -> bool {
        self.view.name.protocol == protocol
            && self.view.port == port
            && (self.view.cluster_ip == addr
                || self.view.external_ips.contains(&addr)
                || self.view.load_balancer_vips.contains(&addr))
    }

    /// Whether this port has node port `port` over `protocol`.
    pub fn serves_node_port(&self, protocol: Protocol, port: u16) -> bool {
        self.view.name.protocol == protocol && self.view.node_port == Some(port)
    }

    /// Whether the source-range check guards this port at `addr`.
    pub fn guards(&self, addr: IpAddr) -> bool {
        self.view.load_balancer_vips.contains(&addr)
            && !self.view.load_balancer_source_ranges.is_empty()
    }
}

/// What the Service rules do with a new connection to `key` from a source
/// of class `class`: steps 2–4 of the module comment. `ports` are the
/// service ports of the key's family in [`ServiceSet`] order; ports that
/// neither serve the key's address and port nor have its node port are
/// ignored, except by step 4 (a cluster IP on another port), which only an
/// address key that no port serves reaches.
///
/// For an address key with a port serving it, the answer is never
/// [`Verdict::NoMatch`]: dispatch or the no-endpoint check decides. For a
/// node-port key with a port holding the node port, likewise.
pub fn resolve(
    ports: &[&PortRules],
    node: &NodeConfig,
    key: &FrontendKey,
    class: SourceClass,
) -> Verdict {
    let family = key.family();
    let protocol = key.protocol();
    let port = key.port();
    let node_ports =
        |f: &&&PortRules| f.view.family == family && f.serves_node_port(protocol, port);
    // Dispatch on node ports, then their no-endpoint check.
    let node_port_dispatch = || {
        ports
            .iter()
            .find(node_ports)
            .filter(|f| f.has_endpoints())
            .and_then(|f| f.external(class))
    };
    let node_port_check = || {
        ports
            .iter()
            .filter(node_ports)
            .find(|f| !f.has_external_endpoints())
            .map(|f| f.no_endpoint_verdict())
    };
    let dst = match *key {
        FrontendKey::NodePort { .. } => {
            return node_port_dispatch()
                .or_else(node_port_check)
                .unwrap_or(Verdict::NoMatch);
        }
        FrontendKey::Address { addr, .. } => addr,
    };
    let on_addr = |f: &&&PortRules| f.serves_address(protocol, dst, port);

    // 2. Dispatch: cluster IPs, external IPs and VIPs first, then node
    // ports. A VIP or node port entry exists only while the port has
    // endpoints; once an entry matched, a fall-through ends dispatch.
    let by_address = ports.iter().filter(on_addr).find_map(|f| {
        if dst == f.view.cluster_ip {
            f.has_internal_endpoints()
                .then(|| Some(f.internal(node, class)))
        } else {
            f.has_endpoints().then(|| f.external(class))
        }
    });
    let dispatched = match by_address {
        Some(v) => v,
        None if node.serves_node_ports_on(dst) => node_port_dispatch(),
        None => None,
    };
    if let Some(v) = dispatched {
        return v;
    }

    // 3. Ports without usable endpoints for this traffic.
    for f in ports.iter().filter(on_addr) {
        if dst == f.view.cluster_ip {
            if !f.has_internal_endpoints() {
                return f.no_endpoint_verdict();
            }
        } else if !f.has_external_endpoints() {
            return f.no_endpoint_verdict();
        }
    }
    if node.serves_node_ports_on(dst) {
        if let Some(v) = node_port_check() {
            return v;
        }
    }

    // 4. Cluster IPs on other ports, and unallocated service addresses.
    if ports.iter().any(|f| f.view.cluster_ip == dst) {
        return Verdict::Reject;
    }
    if node.service_cidrs.iter().any(|c| c.contains(&dst)) {
        return Verdict::Drop;
    }
    Verdict::NoMatch
}

/// The verdict kube-proxy's rules give `probe` on the node `node`, over the
/// service ports of `services` (see the module comment for the order): the
/// load-balancer source-range check, then [`resolve`] for the probe's
/// address key and source class.
pub fn classify(services: &ServiceSet, node: &NodeConfig, probe: &Probe) -> Verdict {
    let family = IpFamily::of(probe.dst);
    if IpFamily::of(probe.src) != family {
        return Verdict::NoMatch;
    }
    let prepared: Vec<PortRules> = services
        .family(family)
        .map(|v| PortRules::new(v.clone(), node))
        .collect();
    let ports: Vec<&PortRules> = prepared.iter().collect();

    // 1. LoadBalancer source ranges.
    for f in ports
        .iter()
        .filter(|f| f.serves_address(probe.protocol, probe.dst, probe.dst_port))
    {
        if f.guards(probe.dst) && !f.source_allowed(node, probe.src) {
            return Verdict::Drop;
        }
    }

    let key = FrontendKey::Address {
        protocol: probe.protocol,
        addr: probe.dst,
        port: probe.dst_port,
    };
    resolve(&ports, node, &key, node.source_class(probe.src))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::json;

    const NODE: &str = "node-a";

    fn node() -> NodeConfig {
        NodeConfig {
            name: NODE.into(),
            zone: None,
            primary_ips: vec![
                "192.168.0.2".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
            ],
            local_ips: vec![
                "192.168.0.2".parse().unwrap(),
                "192.168.1.2".parse().unwrap(),
                "127.0.0.1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
            ],
            cluster_cidrs: vec![
                "10.0.0.0/8".parse().unwrap(),
                "fd00:10::/48".parse().unwrap(),
            ],
            service_cidrs: vec!["172.30.0.0/16".parse().unwrap()],
            node_port_addresses: vec![],
            masquerade_all: false,
        }
    }

    fn probe(src: &str, dst: &str, port: u16) -> Probe {
        Probe {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: Protocol::Tcp,
            dst_port: port,
        }
    }

    fn dnat(eps: &[&str], masquerade: bool) -> Verdict {
        Verdict::Dnat {
            endpoints: eps.iter().map(|s| s.parse().unwrap()).collect(),
            masquerade,
        }
    }

    /// A LoadBalancer with one local and one remote endpoint.
    fn lb(extra_spec: serde_json::Value, local_ready: bool) -> ServiceSet {
        let mut spec = json!({
            "type": "LoadBalancer", "clusterIP": "172.30.0.10",
            "externalIPs": ["192.168.99.1"],
            "ports": [{"name": "p", "port": 80, "nodePort": 30080}]
        });
        spec.as_object_mut()
            .unwrap()
            .extend(extra_spec.as_object().unwrap().clone());
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "ns", "name": "web"},
            "spec": spec,
            "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}
        }))
        .unwrap();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "ns", "name": "web-1",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "p", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.1.0.1"], "nodeName": NODE,
                 "conditions": {"ready": local_ready}},
                {"addresses": ["10.1.0.2"], "nodeName": "node-b"}
            ]
        }))
        .unwrap();
        ServiceSet::from_objects([&svc], [&slice])
    }

    #[test]
    fn etp_local_without_local_endpoints() {
        let s = lb(json!({"externalTrafficPolicy": "Local"}), false);
        let n = node();
        // External clients: dropped on every external address.
        for (dst, port) in [
            ("1.2.3.4", 80),
            ("192.168.99.1", 80),
            ("192.168.0.2", 30080),
        ] {
            assert_eq!(
                classify(&s, &n, &probe("203.0.113.9", dst, port)),
                Verdict::Drop,
                "{dst}"
            );
        }
        // Pods and the node still reach the remote endpoint.
        assert_eq!(
            classify(&s, &n, &probe("10.2.0.1", "1.2.3.4", 80)),
            dnat(&["10.1.0.2:8080"], false)
        );
        assert_eq!(
            classify(&s, &n, &probe("192.168.0.2", "192.168.0.2", 30080)),
            dnat(&["10.1.0.2:8080"], true)
        );
        // The cluster IP is unaffected.
        assert_eq!(
            classify(&s, &n, &probe("10.2.0.1", "172.30.0.10", 80)),
            dnat(&["10.1.0.2:8080"], false)
        );
    }

    #[test]
    fn etp_local_with_local_endpoints_keeps_the_source() {
        let s = lb(json!({"externalTrafficPolicy": "Local"}), true);
        assert_eq!(
            classify(&s, &node(), &probe("203.0.113.9", "1.2.3.4", 80)),
            dnat(&["10.1.0.1:8080"], false)
        );
    }

    #[test]
    fn itp_local_drops_cluster_ip_traffic_without_local_endpoints() {
        let s = lb(json!({"internalTrafficPolicy": "Local"}), false);
        let n = node();
        assert_eq!(
            classify(&s, &n, &probe("10.2.0.1", "172.30.0.10", 80)),
            Verdict::Drop
        );
        // External traffic follows externalTrafficPolicy (Cluster).
        assert_eq!(
            classify(&s, &n, &probe("203.0.113.9", "1.2.3.4", 80)),
            dnat(&["10.1.0.2:8080"], true)
        );
        let s = lb(json!({"internalTrafficPolicy": "Local"}), true);
        assert_eq!(
            classify(&s, &n, &probe("10.2.0.1", "172.30.0.10", 80)),
            dnat(&["10.1.0.1:8080"], false)
        );
    }

    #[test]
    fn cluster_ip_ports_and_service_cidrs() {
        let s = lb(json!({}), true);
        let n = node();
        // A cluster IP on a port it does not serve, or another protocol.
        assert_eq!(
            classify(&s, &n, &probe("10.2.0.1", "172.30.0.10", 81)),
            Verdict::Reject
        );
        let mut udp = probe("10.2.0.1", "172.30.0.10", 80);
        udp.protocol = Protocol::Udp;
        assert_eq!(classify(&s, &n, &udp), Verdict::Reject);
        // An unallocated service address; an address outside the CIDRs.
        assert_eq!(
            classify(&s, &n, &probe("10.2.0.1", "172.30.9.9", 80)),
            Verdict::Drop
        );
        assert_eq!(
            classify(&s, &n, &probe("10.2.0.1", "8.8.8.8", 80)),
            Verdict::NoMatch
        );
        // Masquerading: non-pod sources, or everything with masquerade_all.
        assert_eq!(
            classify(&s, &n, &probe("192.168.5.5", "172.30.0.10", 80)),
            dnat(&["10.1.0.1:8080", "10.1.0.2:8080"], true)
        );
        let all = NodeConfig {
            masquerade_all: true,
            ..n.clone()
        };
        assert_eq!(
            classify(&s, &all, &probe("10.2.0.1", "172.30.0.10", 80)),
            dnat(&["10.1.0.1:8080", "10.1.0.2:8080"], true)
        );
        // No local traffic detector: cluster IP traffic is not masqueraded.
        let none = NodeConfig {
            cluster_cidrs: vec![],
            ..n
        };
        assert_eq!(
            classify(&s, &none, &probe("192.168.5.5", "172.30.0.10", 80)),
            dnat(&["10.1.0.1:8080", "10.1.0.2:8080"], false)
        );
    }

    #[test]
    fn node_port_addresses() {
        let s = lb(json!({}), true);
        let both = dnat(&["10.1.0.1:8080", "10.1.0.2:8080"], true);
        let mut n = node();
        // No CIDR: every non-loopback node address.
        assert_eq!(
            classify(&s, &n, &probe("203.0.113.9", "192.168.1.2", 30080)),
            both
        );
        assert_eq!(
            classify(&s, &n, &probe("127.0.0.1", "127.0.0.1", 30080)),
            Verdict::NoMatch
        );
        // Not a node address.
        assert_eq!(
            classify(&s, &n, &probe("203.0.113.9", "192.168.7.7", 30080)),
            Verdict::NoMatch
        );
        // Restricted to 192.168.0.0/24 (an IPv6 CIDR does not restrict IPv4).
        n.node_port_addresses = vec![
            "192.168.0.0/24".parse().unwrap(),
            "2001:db8::/64".parse().unwrap(),
        ];
        assert_eq!(
            classify(&s, &n, &probe("203.0.113.9", "192.168.0.2", 30080)),
            both
        );
        assert_eq!(
            classify(&s, &n, &probe("203.0.113.9", "192.168.1.2", 30080)),
            Verdict::NoMatch
        );
    }

    #[test]
    fn source_ranges() {
        let s = lb(
            json!({"loadBalancerSourceRanges": ["203.0.113.0/25"]}),
            true,
        );
        let n = node();
        let both = dnat(&["10.1.0.1:8080", "10.1.0.2:8080"], true);
        assert_eq!(classify(&s, &n, &probe("203.0.113.9", "1.2.3.4", 80)), both);
        assert_eq!(
            classify(&s, &n, &probe("203.0.113.200", "1.2.3.4", 80)),
            Verdict::Drop
        );
        // The node's primary address is outside the ranges, so packets from
        // the VIP itself are not admitted either.
        assert_eq!(
            classify(&s, &n, &probe("1.2.3.4", "1.2.3.4", 80)),
            Verdict::Drop
        );
        // Ranges guard the VIPs only: external IPs and node ports are open.
        assert_eq!(
            classify(&s, &n, &probe("203.0.113.200", "192.168.99.1", 80)),
            both
        );
        assert_eq!(
            classify(&s, &n, &probe("203.0.113.200", "192.168.0.2", 30080)),
            both
        );
    }

    #[test]
    fn families_do_not_mix_and_hairpins_are_reported() {
        let s = lb(json!({}), true);
        let n = node();
        assert_eq!(
            classify(&s, &n, &probe("fd00:10::1", "172.30.0.10", 80)),
            Verdict::NoMatch
        );
        // A pod reaching itself through its Service.
        let v = classify(&s, &n, &probe("10.1.0.1", "172.30.0.10", 80));
        let Verdict::Dnat {
            endpoints,
            masquerade,
        } = v
        else {
            panic!("{v:?}")
        };
        assert!(!masquerade);
        let src: IpAddr = "10.1.0.1".parse().unwrap();
        let hairpins: Vec<bool> = endpoints.iter().map(|e| hairpin(src, *e)).collect();
        assert_eq!(hairpins, vec![true, false]);
    }

    #[test]
    fn no_endpoints_reject_everywhere() {
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "ns", "name": "web"},
            "spec": {"type": "NodePort", "clusterIP": "172.30.0.10",
                     "ports": [{"port": 80, "nodePort": 30080, "protocol": "UDP"}]}
        }))
        .unwrap();
        let s = ServiceSet::from_objects([&svc], []);
        let n = node();
        let mut p = probe("10.2.0.1", "172.30.0.10", 80);
        p.protocol = Protocol::Udp;
        assert_eq!(classify(&s, &n, &p), Verdict::Reject);
        p.dst = "192.168.0.2".parse().unwrap();
        p.dst_port = 30080;
        assert_eq!(classify(&s, &n, &p), Verdict::Reject);
        // TCP to the UDP node port: nothing to do with the Service.
        p.protocol = Protocol::Tcp;
        assert_eq!(classify(&s, &n, &p), Verdict::NoMatch);
    }
}
