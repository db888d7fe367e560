//! Sluice's own kinds (`apiVersion: sluice.dev/v1`): the ports it owns
//! (Interface), routing domains (Network), static routes and neighbours,
//! bandwidth limits for pods (as the CNI bandwidth plugin has them), the
//! Network Service Mesh model of chained network functions, and multicast
//! groups.
//!
//! Addresses, CIDRs and MACs are typed, so a manifest with a malformed one is
//! refused while it is read, with the field's path; [`super::validate`]
//! checks the rest (ranges, families, required fields).

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::{DEFAULT_NETWORK, SLUICE_API_VERSION};

/// An Ethernet address, written `02:00:00:00:00:01` (`-` separators and
/// upper case are accepted on input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }

    pub fn is_zero(self) -> bool {
        self.0 == [0; 6]
    }
}

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<MacAddr, String> {
        let bad = || format!("expected a MAC address like 02:00:00:00:00:01, got {s:?}");
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde for addresses and CIDRs with messages that say what was expected.
mod text {
    use super::*;

    pub fn parse<T: FromStr>(s: &str, what: &str, example: &str) -> Result<T, String> {
        s.parse::<T>()
            .map_err(|_| format!("expected {what} like {example}, got {s:?}"))
    }

    pub mod ip {
        use super::*;
        pub fn serialize<S: Serializer>(v: &IpAddr, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(v)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
            let s = String::deserialize(d)?;
            parse(&s, "an IP address", "10.0.0.1 or fd00::1").map_err(serde::de::Error::custom)
        }
    }

    pub mod opt_ip {
        use super::*;
        pub fn serialize<S: Serializer>(v: &Option<IpAddr>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.collect_str(v),
                None => s.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
            let s = Option::<String>::deserialize(d)?;
            s.map(|s| parse(&s, "an IP address", "10.0.0.1 or fd00::1"))
                .transpose()
                .map_err(serde::de::Error::custom)
        }
    }

    pub mod net {
        use super::*;
        pub fn serialize<S: Serializer>(v: &IpNet, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(v)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
            let s = String::deserialize(d)?;
            parse(&s, "a CIDR", "10.0.0.0/24 or fd00::/64").map_err(serde::de::Error::custom)
        }
    }

    pub mod nets {
        use super::*;

        #[derive(Serialize, Deserialize)]
        struct One(#[serde(with = "super::net")] IpNet);

        pub fn serialize<S: Serializer>(v: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(|n| One(*n)))
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
            let v = Vec::<One>::deserialize(d)?;
            Ok(v.into_iter().map(|o| o.0).collect())
        }
    }
}

fn default_network() -> String {
    DEFAULT_NETWORK.to_string()
}

// ---- Interface ----

/// The port backends Sluice's I/O layer knows, as named in backend specs
/// (`sluiced`'s spellings; `af_packet` and `af_xdp` are accepted too).
pub const BACKENDS: &[&str] = &[
    "mem",
    "pcap",
    "afpacket",
    "af_packet",
    "afxdp",
    "af_xdp",
    "tap",
    "memif",
    "dpdk",
];

/// One port of the appliance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InterfaceSpec {
    /// `<backend>:<argument>`, e.g. `mem:a`, `af_xdp:eth0`, `pcap:in.pcap`.
    pub backend: String,
    pub mac: MacAddr,
    /// 68-9216; 1500 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The routing domain the port is in.
    #[serde(default = "default_network")]
    pub network: String,
    /// The port's own addresses with their subnets' prefix lengths, e.g.
    /// `10.0.0.1/24`; each gives a connected route.
    #[serde(default, with = "text::nets")]
    pub addresses: Vec<IpNet>,
}

impl InterfaceSpec {
    pub const DEFAULT_MTU: u32 = 1500;

    pub fn mtu(&self) -> u32 {
        self.mtu.unwrap_or(Self::DEFAULT_MTU)
    }

    /// The backend's name and its argument, e.g. `("mem", "a")`.
    pub fn backend_parts(&self) -> Option<(&str, &str)> {
        self.backend.split_once(':')
    }
}

resource! {
    /// A port of the appliance.
    Interface, api_version: SLUICE_API_VERSION, spec: InterfaceSpec
}

// ---- Network ----

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

resource! {
    /// A routing domain (a VRF): its own routes and neighbours; its
    /// interfaces forward only among themselves.
    Network, api_version: SLUICE_API_VERSION, spec: NetworkSpec
}

// ---- Route ----

/// What a route does with matching packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum RouteType {
    /// Forward through `nextHops`.
    #[default]
    Unicast,
    /// Drop silently.
    Blackhole,
    /// Drop with ICMP destination unreachable.
    Unreachable,
    /// Drop with ICMP administratively prohibited.
    Prohibit,
}

/// A gateway, an interface, or both. Without a gateway the destination is on
/// the interface's link; without an interface the gateway is reached through
/// whichever interface's subnet holds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteNextHop {
    #[serde(
        default,
        with = "text::opt_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteSpec {
    #[serde(default = "default_network")]
    pub network: String,
    /// The destination prefix; host bits must be zero.
    #[serde(with = "text::net")]
    pub destination: IpNet,
    #[serde(default, rename = "type")]
    pub route_type: RouteType,
    /// Several next hops share traffic by flow hash (ECMP).
    #[serde(default)]
    pub next_hops: Vec<RouteNextHop>,
}

impl Default for RouteSpec {
    fn default() -> Self {
        RouteSpec {
            network: default_network(),
            destination: IpNet::V4(Default::default()),
            route_type: RouteType::Unicast,
            next_hops: Vec::new(),
        }
    }
}

resource! {
    /// A static route in a network.
    Route, api_version: SLUICE_API_VERSION, spec: RouteSpec
}

// ---- Neighbour ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NeighbourSpec {
    #[serde(default = "default_network")]
    pub network: String,
    #[serde(with = "text::ip")]
    pub ip: IpAddr,
    pub mac: MacAddr,
}

impl Default for NeighbourSpec {
    fn default() -> Self {
        NeighbourSpec {
            network: default_network(),
            ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            mac: MacAddr::default(),
        }
    }
}

resource! {
    /// A static ARP/ND entry in a network.
    Neighbour, api_version: SLUICE_API_VERSION, spec: NeighbourSpec
}

// ---- Bandwidth ----

/// The pod a limit applies to, by name, in the Bandwidth's namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodRef {
    pub name: String,
}

/// Rate limits for pods, as the CNI bandwidth plugin takes them: rates in
/// bits per second, bursts in bits. A direction is limited when both its
/// rate and burst are set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BandwidthSpec {
    /// Pods in this namespace; exactly one of `podSelector` and `pod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
    /// Traffic to the pod, bits/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_rate: Option<u64>,
    /// bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_burst: Option<u64>,
    /// Traffic from the pod, bits/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_rate: Option<u64>,
    /// bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_burst: Option<u64>,
    /// What happens beyond the burst: `Shape` (queue up to 25 ms, then
    /// drop; the bandwidth plugin's behaviour, the default) or `Police`
    /// (drop at once).
    #[serde(default, skip_serializing_if = "is_default_mode")]
    pub mode: BandwidthMode,
}

/// See [`BandwidthSpec::mode`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BandwidthMode {
    #[default]
    Shape,
    Police,
}

fn is_default_mode(m: &BandwidthMode) -> bool {
    *m == BandwidthMode::Shape
}

resource! {
    /// Ingress and egress rate limits for pods.
    Bandwidth, api_version: SLUICE_API_VERSION, spec: BandwidthSpec
}

// ---- Network Service Mesh ----
//
// NetworkService and NetworkServiceEndpoint have Network Service Mesh's
// registry shape (github.com/networkservicemesh/api, registry.proto):
// a service's `matches` pick, for a client's labels, the endpoints its
// traffic goes to; an endpoint offers services and carries labels per
// service. Sluice adds what NSM leaves to its forwarders: what each
// endpoint is (a built-in function, or an external one joined by two
// interfaces), which traffic enters a service (`steering`), and what
// happens when a hop is down. Chain is the explicit alternative: an
// ordered list of endpoints, no selectors. docs/chains.md explains both.

/// What a network service carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Payload {
    /// IP packets (the default): forwarded by address between hops.
    #[default]
    Ip,
    /// Ethernet frames, forwarded unchanged.
    Ethernet,
}

/// What a chain does when a hop has no working endpoint (its interfaces
/// have no link, or no endpoint is ready).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum FailureMode {
    /// Drop the traffic (the default): a chain that enforces something
    /// must not be bypassed.
    #[default]
    FailClosed,
    /// Leave the hop out until it works again.
    Skip,
}

/// A label map, as NSM's selectors are (not Kubernetes' LabelSelector: no
/// expressions). Values may be templates such as `{{.nodeName}}`, filled in
/// from the client's labels.
pub type Labels = std::collections::BTreeMap<String, String>;

/// One destination of a match: endpoints whose labels for the service hold
/// every label of the selector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Destination {
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub destination_selector: Labels,
    /// NSM's relative weight: the endpoints this route selects get clients
    /// in proportion to it among the hop's candidates (1 when absent; 0:
    /// none). See docs/chains.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// NSM's match metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MatchMetadata {
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

/// A rule of a network service: clients whose labels hold the source
/// selector go to the endpoints its routes select.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Match {
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub source_selector: Labels,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Destination>,
    /// When the routes select no endpoint, try the next match instead of
    /// selecting none.
    #[serde(default)]
    pub fallthrough: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MatchMetadata>,
}

/// The IP protocol number of a protocol name as steering and firewall
/// rules take it.
pub fn chain_protocol(s: &str) -> Result<u8, String> {
    match s {
        "TCP" => Ok(6),
        "UDP" => Ok(17),
        "SCTP" => Ok(132),
        "ICMP" => Ok(1),
        "ICMPv6" => Ok(58),
        _ => Err(format!(
            "expected TCP, UDP, SCTP, ICMP or ICMPv6, got {s:?}"
        )),
    }
}

/// A port or a range of ports (`port` to `endPort`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortSpec {
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<u16>,
}

/// Which traffic enters a service or chain: every field that is set must
/// match. Pods are selected by labels (their addresses, as sources);
/// other clients by interface, network or addresses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Steering {
    /// Received in this Network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Received on this Interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Sent by pods these labels select (in the namespaces
    /// `namespaceSelector` selects; every namespace when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Source prefixes (any of them).
    #[serde(default, with = "text::nets", skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<IpNet>,
    /// Destination prefixes (any of them).
    #[serde(default, with = "text::nets", skip_serializing_if = "Vec::is_empty")]
    pub destination: Vec<IpNet>,
    /// TCP, UDP, SCTP, ICMP or ICMPv6; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Destination ports (any of them); needs a protocol with ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// The labels a client that is not a pod is matched with (NSM's
    /// source selectors); a pod's own labels otherwise.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// payload ETHERNET only: the frame's (innermost) VLAN id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// payload ETHERNET only: the EtherType after the VLAN tags (e.g.
    /// 2054 or 0x0806 for ARP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ether_type: Option<u16>,
    /// payload ETHERNET only: the frame's source MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_mac: Option<MacAddr>,
    /// payload ETHERNET only: the frame's destination MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_mac: Option<MacAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkServiceSpec {
    #[serde(default)]
    pub payload: Payload,
    /// Tried in order; the first whose source selector the client's labels
    /// hold decides (see `Match::fallthrough`). No matches: every endpoint
    /// of the service is a candidate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<Match>,
    /// The traffic that enters the service (Sluice's classifiers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steering: Vec<Steering>,
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// payload ETHERNET only (and required there): the Interface forward
    /// frames leave on, unchanged; frames received on it go back through
    /// the hops in reverse and leave on the steering's interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
}

resource! {
    /// A service made of network functions (Network Service Mesh's
    /// NetworkService): its matches chain endpoints by their labels.
    NetworkService, api_version: SLUICE_API_VERSION, spec: NetworkServiceSpec
}

/// An endpoint's labels for one service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkServiceLabels {
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

/// An external function's two interfaces: traffic goes in through
/// `ingress` and comes back on `egress` (replies the other way round).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointInterfaces {
    pub ingress: String,
    pub egress: String,
    /// The function's MAC, the destination of frames sent to it. Absent:
    /// the function forwards frames unchanged (a "wire", such as DPDK
    /// testpmd's io mode), and frames are addressed to the interface they
    /// come back on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum FirewallAction {
    Allow,
    #[default]
    Deny,
}

/// One firewall rule; unset fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FirewallRuleSpec {
    pub action: FirewallAction,
    #[serde(default, with = "text::nets", skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<IpNet>,
    #[serde(default, with = "text::nets", skip_serializing_if = "Vec::is_empty")]
    pub destination: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
}

/// A stateless firewall: the first rule that matches decides; replies are
/// matched against the rules reflected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FirewallSpec {
    #[serde(default)]
    pub rules: Vec<FirewallRuleSpec>,
    /// When no rule matches; Deny when absent.
    #[serde(default)]
    pub default_action: FirewallAction,
    /// In an ETHERNET chain, what happens to frames that are not IP (ARP,
    /// LLDP, ...), which the rules cannot judge; Allow when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_ip: Option<FirewallAction>,
}

/// One backend of a load balancer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendSpec {
    #[serde(with = "text::ip")]
    pub ip: IpAddr,
    /// The virtual port when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// A Maglev load balancer for one virtual address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    #[serde(with = "text::ip")]
    pub vip: IpAddr,
    /// Every port when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Every protocol when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    pub backends: Vec<BackendSpec>,
}

/// 1:1 prefix translation of sources (NETMAP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NatSpec {
    #[serde(with = "text::net")]
    pub inside: IpNet,
    #[serde(with = "text::net")]
    pub outside: IpNet,
}

/// A policer: bits per second and a burst in bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PoliceSpec {
    pub rate: u64,
    pub burst: u64,
}

/// No settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterSpec {}

/// Which packets a mirror copies: those going through the chain first hop
/// to last (`Forward`), the replies (`Reverse`), or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MirrorDirection {
    #[default]
    Both,
    Forward,
    Reverse,
}

/// A port mirror (SPAN): every packet passing the hop in a mirrored
/// direction is copied as it is at that point of the chain and the copy is
/// sent unchanged on `interface`; the packet goes on with the next hop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MirrorSpec {
    pub interface: String,
    #[serde(default)]
    pub direction: MirrorDirection,
}

/// A function that runs inside the worker; exactly one field is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BuiltinFunction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<FirewallSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<CounterSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub police: Option<PoliceSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorSpec>,
}

impl BuiltinFunction {
    /// The names of the fields that are set.
    pub fn set(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.firewall.is_some() {
            v.push("firewall");
        }
        if self.counter.is_some() {
            v.push("counter");
        }
        if self.load_balancer.is_some() {
            v.push("loadBalancer");
        }
        if self.nat.is_some() {
            v.push("nat");
        }
        if self.police.is_some() {
            v.push("police");
        }
        if self.mirror.is_some() {
            v.push("mirror");
        }
        v
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkServiceEndpointSpec {
    /// The network services this endpoint provides.
    #[serde(default)]
    pub network_service_names: Vec<String>,
    /// Its labels per service, which the services' destination selectors
    /// select on (and which are the source labels of the next hop).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub network_service_labels: std::collections::BTreeMap<String, NetworkServiceLabels>,
    /// An external function: the interfaces it is joined by. Exactly one
    /// of `interfaces` and `function`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<EndpointInterfaces>,
    /// A built-in function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<BuiltinFunction>,
    /// Whether the endpoint is healthy; a health checker sets it false to
    /// take the endpoint out of its chains (true when absent).
    #[serde(default = "yes")]
    pub ready: bool,
}

resource! {
    /// One network function instance (Network Service Mesh's
    /// NetworkServiceEndpoint), built in or external.
    NetworkServiceEndpoint, api_version: SLUICE_API_VERSION, spec: NetworkServiceEndpointSpec
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChainSpec {
    /// NetworkServiceEndpoint names, in the order packets visit them.
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub payload: Payload,
    /// The traffic that enters the chain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steering: Vec<Steering>,
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// payload ETHERNET only (and required there): the Interface forward
    /// frames leave on, unchanged; frames received on it go back through
    /// the hops in reverse and leave on the steering's interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
}

resource! {
    /// An explicit ordered list of network-function endpoints, for users
    /// who do not want selectors.
    Chain, api_version: SLUICE_API_VERSION, spec: ChainSpec
}

// ---- MulticastGroup ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MulticastGroupSpec {
    #[serde(default = "default_network")]
    pub network: String,
    /// An IPv4 (224.0.0.0/4) or IPv6 (ff00::/8) group address.
    #[serde(with = "text::ip")]
    pub group: IpAddr,
    /// Interface names that receive the group's traffic.
    pub members: Vec<String>,
}

impl Default for MulticastGroupSpec {
    fn default() -> Self {
        MulticastGroupSpec {
            network: default_network(),
            group: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            members: Vec::new(),
        }
    }
}

resource! {
    /// A multicast group and the interfaces it is replicated to.
    MulticastGroup, api_version: SLUICE_API_VERSION, spec: MulticastGroupSpec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_text() {
        let m: MacAddr = "02:00:0A:0b:0c:0d".parse().unwrap();
        assert_eq!(m.0, [2, 0, 0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(m.to_string(), "02:00:0a:0b:0c:0d");
        assert_eq!("02-00-00-00-00-01".parse::<MacAddr>().unwrap().0[5], 1);
        for bad in [
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "2:0:0:0:0:1",
            "zz:00:00:00:00:00",
            "",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert!(MacAddr([1, 0, 0, 0, 0, 0]).is_multicast());
    }
}
