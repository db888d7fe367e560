//! Route: longest-prefix match in the packet's network, ECMP, TTL and MTU.
//!
//! Reads: `family`, `src`, `dst`, `ttl`, `l3_len`, `flags`, `network`,
//! `flow_hash`; the network's FIBs, adjacencies and next hops.
//! Writes: `next_hop`; `flow_hash` when it picks among ECMP next hops.
//! Decides: `Punt(Local)` for the appliance's own addresses (and IPv6
//! multicast ICMPv6: neighbour discovery), `Punt(NoRoute | Unreachable |
//! TtlExpired | TooBig)` for the slow path to answer with ICMP, `Drop` for
//! martians, blackholes, link-local and unrouted multicast.
//! Next: `rewrite`.
//!
//! The IPv4 FIB slot of every packet was prefetched by `parse`, so the
//! lookups' cache misses overlap; IPv6 lookups of a burst walk their tries
//! side by side (`Lpm6::lookup_burst`) for the same reason.

use super::{flags, Action, Burst, Context, PacketMeta, Punt, Stage};
use crate::buf::BURST_SIZE;
use crate::stats::DropReason;
use crate::tables::{AdjacencyKind, Network};
use crate::wire::ip_proto;

/// The route stage.
#[derive(Debug, Default, Clone, Copy)]
pub struct Route;

impl Stage for Route {
    #[inline]
    fn process(&mut self, cx: &Context<'_>, burst: &mut Burst) {
        let n = burst.pkts.len();
        let networks = &cx.tables.networks[..];
        // A burst almost always belongs to one network: look it up once.
        let first = burst.meta[0].network;
        let Some(net0) = networks.get(first as usize) else {
            for i in 0..n {
                if burst.action[i] == Action::Continue {
                    burst.action[i] = route_in(networks, &mut burst.meta[i]);
                }
            }
            return;
        };
        // IPv6 lookups walk a trie: walk the burst's tries side by side so
        // their cache misses overlap (IPv4's DIR-24-8 slot was prefetched by
        // parse and needs no such help).
        let mut v6_found = [None; BURST_SIZE];
        let mut v6_addrs = [0u128; BURST_SIZE];
        let mut v6_index = [0u8; BURST_SIZE];
        let mut k = 0;
        for i in 0..n {
            let m = &burst.meta[i];
            if burst.action[i] == Action::Continue && m.family == 6 && m.network == first {
                v6_addrs[k] = m.dst;
                v6_index[k] = i as u8;
                k += 1;
            }
        }
        let mut looked_up = [None; BURST_SIZE];
        if k > 0 {
            net0.fib6.lookup_burst(&v6_addrs[..k], &mut v6_found[..k]);
            for j in 0..k {
                looked_up[v6_index[j] as usize] = Some(v6_found[j]);
            }
        }
        for (i, found) in looked_up.iter().enumerate().take(n) {
            if burst.action[i] != Action::Continue {
                continue;
            }
            let meta = &mut burst.meta[i];
            burst.action[i] = if meta.network != first {
                route_in(networks, meta)
            } else if let Some(found) = *found {
                decide(net0, meta, found)
            } else {
                route_one(net0, meta)
            };
        }
    }
}

#[cold]
fn route_in(networks: &[Network], meta: &mut PacketMeta) -> Action {
    match networks.get(meta.network as usize) {
        Some(net) => route_one(net, meta),
        None => Action::Drop(DropReason::UnknownPort),
    }
}

/// IPv4 sources RFC 1812 §5.3.7 says never to forward from.
#[inline(always)]
fn martian_source_v4(a: u32) -> bool {
    let top = a >> 24;
    top == 0 || top == 127 || a >> 28 >= 0xe
}

#[inline(always)]
fn martian_destination_v4(a: u32) -> bool {
    let top = a >> 24;
    top == 0 || top == 127 || a == u32::MAX
}

#[inline(always)]
fn link_local_v6(a: u128) -> bool {
    a >> 118 == 0xfe80 >> 6
}

/// Routes one parsed packet in `net`. Also used by the slow path for the
/// packets it generates.
#[inline(always)]
pub fn route_one(net: &Network, meta: &mut PacketMeta) -> Action {
    let found = if meta.family == 4 {
        net.fib4.lookup(meta.dst as u32)
    } else {
        net.fib6.lookup(meta.dst)
    };
    decide(net, meta, found)
}

/// Decides for one packet given its FIB result `found`.
#[inline(always)]
fn decide(net: &Network, meta: &mut PacketMeta, found: Option<u32>) -> Action {
    if meta.family == 4 {
        let (src, dst) = (meta.src as u32, meta.dst as u32);
        if martian_source_v4(src) {
            return Action::Drop(DropReason::MartianSource);
        }
        if meta.flags & flags::IP_MULTICAST != 0 {
            return Action::Drop(DropReason::MulticastNotRouted);
        }
        if martian_destination_v4(dst) {
            return Action::Drop(DropReason::MartianDestination);
        }
    } else {
        let (src, dst) = (meta.src, meta.dst);
        if src >> 120 == 0xff || src == 1 || dst == 1 || dst == 0 {
            return Action::Drop(DropReason::MartianSource);
        }
        if meta.flags & flags::IP_MULTICAST != 0 {
            // Neighbour discovery and MLD are link-scoped multicast ICMPv6:
            // the appliance's business. Other multicast is not routed here.
            return if meta.proto == ip_proto::ICMPV6 && dst >> 112 == 0xff02 {
                Action::Punt(Punt::Local)
            } else {
                Action::Drop(DropReason::MulticastNotRouted)
            };
        }
    }
    let Some(adj) = found.and_then(|i| net.adjacencies.get(i as usize)) else {
        return Action::Punt(Punt::NoRoute);
    };
    match adj.kind {
        AdjacencyKind::Forward => {}
        AdjacencyKind::Local => return Action::Punt(Punt::Local),
        AdjacencyKind::Blackhole => return Action::Drop(DropReason::Blackhole),
        AdjacencyKind::Unreachable => return Action::Punt(Punt::Unreachable { prohibited: false }),
        AdjacencyKind::Prohibit => return Action::Punt(Punt::Unreachable { prohibited: true }),
    }
    if meta.family == 6 && (link_local_v6(meta.src) || link_local_v6(meta.dst)) {
        return Action::Drop(DropReason::LinkLocal);
    }
    if meta.ttl <= 1 {
        return Action::Punt(Punt::TtlExpired);
    }
    let pick = if adj.count > 1 {
        if meta.flow_hash == 0 {
            meta.flow_hash = super::parse::flow_hash(meta);
        }
        // Lemire's multiply-shift: a uniform pick without a division.
        ((meta.flow_hash as u64 * adj.count as u64) >> 32) as u32
    } else {
        0
    };
    let nh_index = adj.first + pick;
    let Some(nh) = net.next_hops.get(nh_index as usize) else {
        return Action::Punt(Punt::NoRoute);
    };
    meta.next_hop = nh_index;
    if meta.l3_len > nh.mtu {
        return Action::Punt(Punt::TooBig);
    }
    Action::Continue
}
