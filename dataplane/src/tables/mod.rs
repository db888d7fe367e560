//! Read-side lookup structures, built by the control plane and published to the
//! workers as one immutable generation ([`Tables`]).
//!
//! Workers never edit a generation; the control plane builds the next one
//! (sharing unchanged parts through `Arc`) and publishes it through a
//! [`cell::TableCell`]. A worker checks for a new generation once per burst.

pub mod bandwidth;
pub mod build;
pub mod cell;
pub mod chain;
pub mod classify;
pub mod lpm4;
pub mod lpm6;
pub mod maglev;
pub mod policy;
pub mod services;
pub mod synth;

pub use build::{NextHopSpec, RouteTarget, TablesBuilder, TablesError};

use hashbrown::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// A port's index in [`Tables::ports`] and in the worker's queue arrays.
pub type PortId = u16;
/// A routing domain's index in [`Tables::networks`].
pub type NetworkId = u16;

/// The pod network (Kubernetes' cluster network, Sluice's `default`):
/// Services, NetworkPolicy and the admin tiers, and per-pod bandwidth
/// limits apply to its packets only. A packet in another network (a
/// Multus attachment's) is never looked up in those tables, whose keys
/// are pod-network addresses that other networks may reuse; its own
/// network's MultiNetworkPolicy table judges it, if there is one.
pub const POD_NETWORK: NetworkId = 0;

/// One immutable generation of everything the workers read.
#[derive(Clone)]
pub struct Tables {
    /// Set by the publisher; 0 for a generation not yet published.
    pub generation: u64,
    pub node: NodeIdentity,
    /// Indexed by [`PortId`].
    pub ports: Vec<PortConfig>,
    /// Indexed by [`NetworkId`].
    pub networks: Vec<Network>,
    pub icmp: IcmpLimits,
    pub neighbour: NeighbourTimers,
    /// Kubernetes Services (empty for a plain router).
    pub services: services::ServiceTable,
    /// Per-pod bandwidth limits (empty: nothing limited).
    pub bandwidth: bandwidth::BandwidthTable,
    /// NetworkPolicy and the admin tiers, with the secondary networks'
    /// MultiNetworkPolicy tables inside (empty: everything allowed).
    pub policy: policy::PolicyTable,
    /// Network service chains (empty: no traffic is steered).
    pub chains: chain::ChainTable,
}

/// Who this node is; carried from the start so that multi-node features
/// (topology-aware routing, tunnels) have it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeIdentity {
    pub name: String,
    pub zone: String,
    pub addresses: Vec<std::net::IpAddr>,
}

/// How a port takes part in routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    pub name: String,
    pub network: NetworkId,
    pub mac: [u8; 6],
    /// IP MTU: the largest IP packet sent out of this port.
    pub mtu: u16,
    pub ipv4: Vec<(Ipv4Addr, u8)>,
    /// Global and unique-local addresses; the link-local one is derived.
    pub ipv6: Vec<(Ipv6Addr, u8)>,
    /// The EUI-64 link-local address (fe80::/64) derived from the MAC.
    pub ipv6_link_local: Ipv6Addr,
}

impl PortConfig {
    /// The address to source ICMP errors and ARP requests from on this port.
    pub fn primary_v4(&self) -> Option<Ipv4Addr> {
        self.ipv4.first().map(|(a, _)| *a)
    }

    /// A global IPv6 address if there is one, else the link-local one.
    pub fn primary_v6(&self) -> Ipv6Addr {
        self.ipv6
            .first()
            .map(|(a, _)| *a)
            .unwrap_or(self.ipv6_link_local)
    }

    /// The v4 address of this port within the subnet that holds `peer`.
    pub fn v4_source_for(&self, peer: Ipv4Addr) -> Option<Ipv4Addr> {
        let p = u32::from(peer);
        self.ipv4
            .iter()
            .find(|(a, len)| prefix_contains_v4(u32::from(*a), *len, p))
            .or(self.ipv4.first())
            .map(|(a, _)| *a)
    }

    /// Whether `ip` is one of this port's own IPv6 addresses.
    pub fn owns_v6(&self, ip: Ipv6Addr) -> bool {
        ip == self.ipv6_link_local || self.ipv6.iter().any(|(a, _)| *a == ip)
    }

    pub fn owns_v4(&self, ip: Ipv4Addr) -> bool {
        self.ipv4.iter().any(|(a, _)| *a == ip)
    }
}

/// One routing domain (VRF): its two FIBs and what their entries mean.
#[derive(Clone)]
pub struct Network {
    pub name: String,
    /// Values are indices into `adjacencies`.
    pub fib4: Arc<lpm4::Lpm4>,
    pub fib6: Arc<lpm6::Lpm6>,
    pub adjacencies: Vec<Adjacency>,
    /// Next hops, referenced by ranges from `adjacencies` (ECMP groups).
    pub next_hops: Vec<NextHop>,
    /// Statically configured neighbours, by address (v4 as the low 32 bits).
    pub static_neighbours: HashMap<u128, [u8; 6]>,
}

/// What a FIB entry does with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjacencyKind {
    /// Forward through one of `count` next hops from `first`, by flow hash.
    Forward,
    /// One of the appliance's own addresses.
    Local,
    /// Drop silently.
    Blackhole,
    /// Drop with ICMP destination unreachable (host unreachable).
    Unreachable,
    /// Drop with ICMP destination unreachable (administratively prohibited).
    Prohibit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adjacency {
    pub kind: AdjacencyKind,
    pub first: u32,
    pub count: u16,
    /// For `Local`: the port that owns the address.
    pub port: PortId,
}

/// Where a forwarded packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    pub port: PortId,
    /// The gateway to resolve; `None` for a connected route, where the
    /// packet's own destination is resolved.
    pub gateway: Option<u128>,
    /// The source MAC for the rewrite (the egress port's).
    pub src_mac: [u8; 6],
    /// The gateway's MAC when it is statically known.
    pub dst_mac: Option<[u8; 6]>,
    pub mtu: u16,
}

/// Rate limit for ICMP errors, per worker (a token bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpLimits {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for IcmpLimits {
    fn default() -> Self {
        // Linux's default icmp_ratelimit is one per ms per destination; one
        // bucket per worker at 1000/s with a burst of 50 is the same order.
        IcmpLimits {
            per_second: 1000,
            burst: 50,
        }
    }
}

/// Neighbour timing (RFC 4861 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourTimers {
    /// How long a learned entry is used without being refreshed.
    pub reachable_ns: u64,
    /// The least time between two solicitations for one address.
    pub retrans_ns: u64,
}

impl Default for NeighbourTimers {
    fn default() -> Self {
        NeighbourTimers {
            reachable_ns: 30_000_000_000,
            retrans_ns: 1_000_000_000,
        }
    }
}

impl Tables {
    /// A generation with no ports and no networks.
    pub fn empty() -> Tables {
        Tables {
            generation: 0,
            node: NodeIdentity::default(),
            ports: Vec::new(),
            networks: Vec::new(),
            icmp: IcmpLimits::default(),
            neighbour: NeighbourTimers::default(),
            services: services::ServiceTable::default(),
            bandwidth: bandwidth::BandwidthTable::default(),
            policy: policy::PolicyTable::default(),
            chains: chain::ChainTable::default(),
        }
    }

    #[inline]
    pub fn port(&self, id: PortId) -> Option<&PortConfig> {
        self.ports.get(id as usize)
    }
}

/// Whether `addr` lies in `prefix/len` (IPv4).
#[inline]
pub fn prefix_contains_v4(prefix: u32, len: u8, addr: u32) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - len.min(32))
    };
    (prefix ^ addr) & mask == 0
}

/// Whether `addr` lies in `prefix/len` (IPv6).
#[inline]
pub fn prefix_contains_v6(prefix: u128, len: u8, addr: u128) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len.min(128))
    };
    (prefix ^ addr) & mask == 0
}

/// The EUI-64 link-local address for a MAC (RFC 4291 appendix A).
pub fn link_local_from_mac(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

impl core::fmt::Debug for Tables {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tables")
            .field("generation", &self.generation)
            .field("node", &self.node.name)
            .field("ports", &self.ports.len())
            .field(
                "networks",
                &self.networks.iter().map(|n| &n.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}
