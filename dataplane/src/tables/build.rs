//! Building a [`Tables`] generation from ports, addresses, routes and
//! neighbours. The control plane's compiler, the demo, the benchmarks and the
//! tests all build tables through this one path.
//!
//! What it derives: each port address gives a connected route (forward to the
//! port, resolving the destination itself) and a host route to the appliance
//! (`Local`); static routes' gateways are resolved to the port whose connected
//! subnet holds them; identical route targets share one adjacency, so a
//! million routes through four next hops cost four adjacencies.

use super::lpm4::Lpm4;
use super::lpm6::Lpm6;
use super::{
    link_local_from_mac, prefix_contains_v4, prefix_contains_v6, Adjacency, AdjacencyKind,
    IcmpLimits, NeighbourTimers, Network, NetworkId, NextHop, NodeIdentity, PortConfig, PortId,
    Tables,
};
use core::fmt;
use hashbrown::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// What a route does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteTarget {
    /// Forward through these next hops (several: ECMP by flow hash).
    Via(Vec<NextHopSpec>),
    Blackhole,
    Unreachable,
    Prohibit,
}

/// A next hop as configured: a gateway, a port, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NextHopSpec {
    /// `None`: the destination is on the port's link (an interface route).
    pub gateway: Option<IpAddr>,
    /// `None`: the port whose connected subnet holds the gateway.
    pub port: Option<PortId>,
}

impl NextHopSpec {
    pub fn gateway(ip: IpAddr) -> NextHopSpec {
        NextHopSpec {
            gateway: Some(ip),
            port: None,
        }
    }
}

/// A refused configuration, naming the object and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablesError {
    pub object: String,
    pub field: String,
    pub message: String,
}

impl fmt::Display for TablesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.field, self.message)
    }
}

impl std::error::Error for TablesError {}

fn err(object: impl Into<String>, field: &str, message: impl Into<String>) -> TablesError {
    TablesError {
        object: object.into(),
        field: field.to_string(),
        message: message.into(),
    }
}

#[derive(Clone)]
struct NetworkSpec {
    name: String,
    routes: Vec<(IpAddr, u8, RouteTarget)>,
    neighbours: Vec<(IpAddr, [u8; 6])>,
}

/// Collects configuration, then [`build`](TablesBuilder::build)s a generation.
#[derive(Clone)]
pub struct TablesBuilder {
    pub node: NodeIdentity,
    pub icmp: IcmpLimits,
    pub neighbour_timers: NeighbourTimers,
    /// Service rules, built apart (see [`crate::tables::services`]) and
    /// carried into the generation as they are.
    pub services: crate::tables::services::ServiceTable,
    /// Per-pod bandwidth limits, likewise.
    pub bandwidth: crate::tables::bandwidth::BandwidthTable,
    /// Policy rules, built apart (see [`crate::tables::policy`]).
    pub policy: crate::tables::policy::PolicyTable,
    ports: Vec<PortConfig>,
    networks: Vec<NetworkSpec>,
}

impl Default for TablesBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

impl TablesBuilder {
    /// A builder with one network, "default" (id 0).
    pub fn new() -> TablesBuilder {
        TablesBuilder {
            node: NodeIdentity::default(),
            icmp: IcmpLimits::default(),
            neighbour_timers: NeighbourTimers::default(),
            services: Default::default(),
            bandwidth: Default::default(),
            policy: Default::default(),
            ports: Vec::new(),
            networks: vec![NetworkSpec {
                name: "default".into(),
                routes: Vec::new(),
                neighbours: Vec::new(),
            }],
        }
    }

    /// The id of network `name`, created if new.
    pub fn network(&mut self, name: &str) -> NetworkId {
        if let Some(i) = self.networks.iter().position(|n| n.name == name) {
            return i as NetworkId;
        }
        self.networks.push(NetworkSpec {
            name: name.into(),
            routes: Vec::new(),
            neighbours: Vec::new(),
        });
        (self.networks.len() - 1) as NetworkId
    }

    /// Adds a port; ids are given in order from 0 and must match the ports'
    /// ids in the I/O layer.
    pub fn port(&mut self, name: &str, network: NetworkId, mac: [u8; 6], mtu: u16) -> PortId {
        self.ports.push(PortConfig {
            name: name.into(),
            network,
            mac,
            mtu,
            ipv4: Vec::new(),
            ipv6: Vec::new(),
            ipv6_link_local: link_local_from_mac(mac),
        });
        (self.ports.len() - 1) as PortId
    }

    /// Gives a port an address with its subnet's prefix length.
    pub fn address(&mut self, port: PortId, ip: IpAddr, len: u8) -> Result<&mut Self, TablesError> {
        let p = self
            .ports
            .get_mut(port as usize)
            .ok_or_else(|| err(format!("port {port}"), "id", "no such port"))?;
        match ip {
            IpAddr::V4(a) if len <= 32 => p.ipv4.push((a, len)),
            IpAddr::V6(a) if len <= 128 => p.ipv6.push((a, len)),
            _ => {
                return Err(err(
                    format!("port {}", p.name),
                    "addresses",
                    format!("{ip}/{len}: prefix length out of range"),
                ))
            }
        }
        Ok(self)
    }

    /// Adds a route in a network.
    pub fn route(
        &mut self,
        network: NetworkId,
        dest: IpAddr,
        len: u8,
        target: RouteTarget,
    ) -> Result<&mut Self, TablesError> {
        let max = if dest.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(err(
                format!("route {dest}/{len}"),
                "prefix",
                "prefix length out of range",
            ));
        }
        let n = self
            .networks
            .get_mut(network as usize)
            .ok_or_else(|| err(format!("route {dest}/{len}"), "network", "no such network"))?;
        n.routes.push((dest, len, target));
        Ok(self)
    }

    /// Adds a static neighbour.
    pub fn neighbour(&mut self, network: NetworkId, ip: IpAddr, mac: [u8; 6]) -> &mut Self {
        if let Some(n) = self.networks.get_mut(network as usize) {
            n.neighbours.push((ip, mac));
        }
        self
    }

    pub fn ports(&self) -> &[PortConfig] {
        &self.ports
    }

    /// Compiles everything into one generation.
    pub fn build(&self) -> Result<Tables, TablesError> {
        let mut networks = Vec::with_capacity(self.networks.len());
        for (net_id, spec) in self.networks.iter().enumerate() {
            networks.push(self.build_network(net_id as NetworkId, spec)?);
        }
        for p in &self.ports {
            if p.network as usize >= networks.len() {
                return Err(err(
                    format!("port {}", p.name),
                    "network",
                    "no such network",
                ));
            }
        }
        Ok(Tables {
            generation: 0,
            node: self.node.clone(),
            ports: self.ports.clone(),
            networks,
            icmp: self.icmp,
            neighbour: self.neighbour_timers,
            services: self.services.clone(),
            bandwidth: self.bandwidth.clone(),
            policy: self.policy.clone(),
            chains: Default::default(),
        })
    }

    fn build_network(&self, net_id: NetworkId, spec: &NetworkSpec) -> Result<Network, TablesError> {
        let mut out = NetworkBuild {
            fib4: Lpm4::new(),
            fib6: Lpm6::new(),
            adjacencies: Vec::new(),
            next_hops: Vec::new(),
            dedup: HashMap::new(),
        };
        let static_neighbours: HashMap<u128, [u8; 6]> = spec
            .neighbours
            .iter()
            .map(|(ip, mac)| (to_u128(*ip), *mac))
            .collect();
        let ports: Vec<(PortId, &PortConfig)> = self
            .ports
            .iter()
            .enumerate()
            .filter(|(_, p)| p.network == net_id)
            .map(|(i, p)| (i as PortId, p))
            .collect();

        // Static routes first; connected and local routes then override any
        // static route for the same prefix, as in Linux's "local" table.
        for (dest, len, target) in &spec.routes {
            let object = format!("route {dest}/{len} in network {}", spec.name);
            let adj = match target {
                RouteTarget::Blackhole => out.simple(AdjacencyKind::Blackhole, 0),
                RouteTarget::Unreachable => out.simple(AdjacencyKind::Unreachable, 0),
                RouteTarget::Prohibit => out.simple(AdjacencyKind::Prohibit, 0),
                RouteTarget::Via(hops) => {
                    if hops.is_empty() {
                        return Err(err(object, "nextHops", "at least one next hop is required"));
                    }
                    if hops.len() > u16::MAX as usize {
                        return Err(err(object, "nextHops", "too many next hops"));
                    }
                    let mut resolved = Vec::with_capacity(hops.len());
                    for (i, h) in hops.iter().enumerate() {
                        resolved.push(self.resolve_hop(
                            &object,
                            i,
                            h,
                            dest,
                            &ports,
                            &static_neighbours,
                        )?);
                    }
                    resolved.sort_by_key(|h| (h.port, h.gateway));
                    resolved.dedup();
                    out.forward(resolved)
                }
            };
            out.insert(*dest, *len, adj, &object)?;
        }
        for (pid, p) in &ports {
            for (a, len) in &p.ipv4 {
                let object = format!("port {} address {a}/{len}", p.name);
                let connected = out.forward(vec![NextHop {
                    port: *pid,
                    gateway: None,
                    src_mac: p.mac,
                    dst_mac: None,
                    mtu: p.mtu,
                }]);
                out.insert(IpAddr::V4(*a), *len, connected, &object)?;
                let local = out.simple(AdjacencyKind::Local, *pid);
                out.insert(IpAddr::V4(*a), 32, local, &object)?;
            }
            for (a, len) in &p.ipv6 {
                let object = format!("port {} address {a}/{len}", p.name);
                let connected = out.forward(vec![NextHop {
                    port: *pid,
                    gateway: None,
                    src_mac: p.mac,
                    dst_mac: None,
                    mtu: p.mtu,
                }]);
                out.insert(IpAddr::V6(*a), *len, connected, &object)?;
                let local = out.simple(AdjacencyKind::Local, *pid);
                out.insert(IpAddr::V6(*a), 128, local, &object)?;
            }
            let local = out.simple(AdjacencyKind::Local, *pid);
            out.insert(
                IpAddr::V6(p.ipv6_link_local),
                128,
                local,
                &format!("port {}", p.name),
            )?;
        }
        Ok(Network {
            name: spec.name.clone(),
            fib4: Arc::new(out.fib4),
            fib6: Arc::new(out.fib6),
            adjacencies: out.adjacencies,
            next_hops: out.next_hops,
            static_neighbours,
        })
    }

    fn resolve_hop(
        &self,
        object: &str,
        index: usize,
        hop: &NextHopSpec,
        dest: &IpAddr,
        ports: &[(PortId, &PortConfig)],
        neighbours: &HashMap<u128, [u8; 6]>,
    ) -> Result<NextHop, TablesError> {
        let field = format!("nextHops[{index}]");
        if let Some(gw) = hop.gateway {
            if gw.is_ipv4() != dest.is_ipv4() {
                return Err(err(
                    object,
                    &format!("{field}.gateway"),
                    "gateway family differs from the destination's",
                ));
            }
        }
        let port = match (hop.port, hop.gateway) {
            (Some(p), _) => ports
                .iter()
                .find(|(id, _)| *id == p)
                .map(|(id, _)| *id)
                .ok_or_else(|| {
                    err(
                        object,
                        &format!("{field}.port"),
                        format!("port {p} is not in this network"),
                    )
                })?,
            (None, Some(gw)) => ports
                .iter()
                .find(|(_, p)| match gw {
                    IpAddr::V4(g) => p
                        .ipv4
                        .iter()
                        .any(|(a, l)| prefix_contains_v4(u32::from(*a), *l, u32::from(g))),
                    IpAddr::V6(g) => p
                        .ipv6
                        .iter()
                        .any(|(a, l)| prefix_contains_v6(u128::from(*a), *l, u128::from(g))),
                })
                .map(|(id, _)| *id)
                .ok_or_else(|| {
                    err(
                        object,
                        &format!("{field}.gateway"),
                        format!("{gw} is not on any connected subnet of this network; name a port"),
                    )
                })?,
            (None, None) => {
                return Err(err(
                    object,
                    &field,
                    "a next hop needs a gateway, a port, or both",
                ))
            }
        };
        let p = &self.ports[port as usize];
        let gateway = hop.gateway.map(to_u128);
        Ok(NextHop {
            port,
            gateway,
            src_mac: p.mac,
            dst_mac: gateway.and_then(|g| neighbours.get(&g).copied()),
            mtu: p.mtu,
        })
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum AdjKey {
    Simple(u8, PortId),
    Forward(Vec<(PortId, Option<u128>)>),
}

struct NetworkBuild {
    fib4: Lpm4,
    fib6: Lpm6,
    adjacencies: Vec<Adjacency>,
    next_hops: Vec<NextHop>,
    dedup: HashMap<AdjKey, u32>,
}

impl NetworkBuild {
    fn simple(&mut self, kind: AdjacencyKind, port: PortId) -> u32 {
        let key = AdjKey::Simple(kind as u8, port);
        if let Some(i) = self.dedup.get(&key) {
            return *i;
        }
        let i = self.adjacencies.len() as u32;
        self.adjacencies.push(Adjacency {
            kind,
            first: 0,
            count: 0,
            port,
        });
        self.dedup.insert(key, i);
        i
    }

    fn forward(&mut self, hops: Vec<NextHop>) -> u32 {
        let key = AdjKey::Forward(hops.iter().map(|h| (h.port, h.gateway)).collect());
        if let Some(i) = self.dedup.get(&key) {
            return *i;
        }
        let i = self.adjacencies.len() as u32;
        self.adjacencies.push(Adjacency {
            kind: AdjacencyKind::Forward,
            first: self.next_hops.len() as u32,
            count: hops.len() as u16,
            port: hops[0].port,
        });
        self.next_hops.extend(hops);
        self.dedup.insert(key, i);
        i
    }

    fn insert(&mut self, dest: IpAddr, len: u8, adj: u32, object: &str) -> Result<(), TablesError> {
        let r = match dest {
            IpAddr::V4(a) => self.fib4.insert(u32::from(a), len, adj),
            IpAddr::V6(a) => self.fib6.insert(u128::from(a), len, adj),
        };
        r.map(|_| ())
            .map_err(|e| err(object, "prefix", format!("{e:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
    }
    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
    }

    fn two_ports() -> TablesBuilder {
        let mut b = TablesBuilder::new();
        let p0 = b.port("p0", 0, [2, 0, 0, 0, 0, 1], 1500);
        let p1 = b.port("p1", 0, [2, 0, 0, 0, 0, 2], 1500);
        b.address(p0, v4("10.0.0.1"), 24).unwrap();
        b.address(p1, v4("10.0.1.1"), 24).unwrap();
        b.address(p0, v6("2001:db8::1"), 64).unwrap();
        b.address(p1, v6("2001:db8:1::1"), 64).unwrap();
        b
    }

    #[test]
    fn connected_and_local_routes() {
        let t = two_ports().build().unwrap();
        let n = &t.networks[0];
        let adj = |a: u32| n.adjacencies[n.fib4.lookup(a).unwrap() as usize];
        assert_eq!(adj(0x0a00_0001).kind, AdjacencyKind::Local);
        assert_eq!(adj(0x0a00_0001).port, 0);
        let c = adj(0x0a00_0105);
        assert_eq!(c.kind, AdjacencyKind::Forward);
        assert_eq!(n.next_hops[c.first as usize].port, 1);
        assert_eq!(n.next_hops[c.first as usize].gateway, None);
        assert!(n.fib4.lookup(0x0b00_0000).is_none());
        let ll = u128::from(t.ports[1].ipv6_link_local);
        let a6 = n.adjacencies[n.fib6.lookup(ll).unwrap() as usize];
        assert_eq!((a6.kind, a6.port), (AdjacencyKind::Local, 1));
    }

    #[test]
    fn gateways_resolve_to_ports_and_share_adjacencies() {
        let mut b = two_ports();
        b.neighbour(0, v4("10.0.1.254"), [2, 0, 0, 0, 0, 0xfe]);
        for i in 0..100u32 {
            let dest = IpAddr::V4(Ipv4Addr::from(0x1400_0000 + (i << 8)));
            b.route(
                0,
                dest,
                24,
                RouteTarget::Via(vec![NextHopSpec::gateway(v4("10.0.1.254"))]),
            )
            .unwrap();
        }
        let t = b.build().unwrap();
        let n = &t.networks[0];
        let a = n.adjacencies[n.fib4.lookup(0x1400_0505).unwrap() as usize];
        let nh = n.next_hops[a.first as usize];
        assert_eq!(nh.port, 1);
        assert_eq!(nh.dst_mac, Some([2, 0, 0, 0, 0, 0xfe]));
        // 100 routes, one forward adjacency for them + locals + connecteds.
        assert!(n.adjacencies.len() < 10, "{}", n.adjacencies.len());
    }

    #[test]
    fn ecmp_groups_are_order_independent() {
        let mut a = two_ports();
        let mut b = two_ports();
        let h1 = NextHopSpec::gateway(v4("10.0.0.9"));
        let h2 = NextHopSpec::gateway(v4("10.0.1.9"));
        a.route(0, v4("30.0.0.0"), 8, RouteTarget::Via(vec![h1, h2]))
            .unwrap();
        b.route(0, v4("30.0.0.0"), 8, RouteTarget::Via(vec![h2, h1]))
            .unwrap();
        let (ta, tb) = (a.build().unwrap(), b.build().unwrap());
        let hops = |t: &Tables| {
            let n = &t.networks[0];
            let adj = n.adjacencies[n.fib4.lookup(0x1e01_0101).unwrap() as usize];
            n.next_hops[adj.first as usize..(adj.first + adj.count as u32) as usize].to_vec()
        };
        assert_eq!(hops(&ta).len(), 2);
        assert_eq!(hops(&ta), hops(&tb));
    }

    #[test]
    fn bad_routes_are_refused_with_names() {
        let mut b = two_ports();
        b.route(
            0,
            v4("30.0.0.0"),
            8,
            RouteTarget::Via(vec![NextHopSpec::gateway(v4("192.168.9.9"))]),
        )
        .unwrap();
        let e = b.build().unwrap_err();
        assert!(e.object.contains("30.0.0.0/8"), "{e}");
        assert_eq!(e.field, "nextHops[0].gateway");

        let mut b = two_ports();
        assert!(b
            .route(0, v4("30.0.0.0"), 33, RouteTarget::Blackhole)
            .is_err());
        let mut b = two_ports();
        b.route(
            0,
            v6("2001:db8:9::"),
            48,
            RouteTarget::Via(vec![NextHopSpec::gateway(v4("10.0.0.9"))]),
        )
        .unwrap();
        assert_eq!(b.build().unwrap_err().field, "nextHops[0].gateway");
        let mut b = two_ports();
        b.route(0, v4("30.0.0.0"), 8, RouteTarget::Via(vec![]))
            .unwrap();
        assert_eq!(b.build().unwrap_err().field, "nextHops");
    }
}
