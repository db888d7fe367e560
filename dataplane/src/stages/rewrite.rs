//! Rewrite: resolve the next hop's MAC, rewrite Ethernet, decrement TTL.
//!
//! Reads: `next_hop`, `network`, `family`, `dst`, `l3_offset`; the next
//! hop (static MAC, gateway), static neighbours, the neighbour cache.
//! Writes: the frame — the Ethernet header (VLAN tags of the received frame
//! are removed: ports are untagged), the TTL or hop limit, and the IPv4
//! header checksum, updated incrementally (RFC 1624).
//! Decides: `Tx(port)`, or `Punt(Resolve)` when the MAC is unknown.
//! Next: transmit.

use super::{Action, Burst, Context, PacketMeta, Punt, Stage};
use crate::buf::Packet;
use crate::state::neighbour::{Family, NeighbourCache};
use crate::tables::{Network, NextHop};
use crate::wire::checksum;

/// The rewrite stage.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rewrite;

impl Stage for Rewrite {
    #[inline]
    fn process(&mut self, cx: &Context<'_>, burst: &mut Burst) {
        let n = burst.pkts.len();
        for i in 0..n {
            if burst.action[i] != Action::Continue {
                continue;
            }
            let meta = &burst.meta[i];
            let net = &cx.tables.networks[meta.network as usize];
            let nh = &net.next_hops[meta.next_hop as usize];
            burst.action[i] = match resolve(net, nh, meta, cx.neighbours) {
                Some(mac) => {
                    rewrite_l2_and_ttl(&mut burst.pkts[i], meta, nh, mac);
                    Action::Tx(nh.port)
                }
                None => Action::Punt(Punt::Resolve),
            };
        }
    }
}

/// The address the next hop resolves: its gateway, or for a connected
/// route the packet's destination.
#[inline(always)]
pub fn resolve_target(nh: &NextHop, meta: &PacketMeta) -> u128 {
    nh.gateway.unwrap_or(meta.dst)
}

/// The next hop's MAC, if known.
#[inline(always)]
pub fn resolve(
    net: &Network,
    nh: &NextHop,
    meta: &PacketMeta,
    cache: &NeighbourCache,
) -> Option<[u8; 6]> {
    if let Some(mac) = nh.dst_mac {
        return Some(mac);
    }
    let target = resolve_target(nh, meta);
    if let Some(mac) = net.static_neighbours.get(&target) {
        return Some(*mac);
    }
    let family = if meta.family == 4 {
        Family::V4
    } else {
        Family::V6
    };
    cache.lookup(meta.network, family, target).map(|n| n.mac)
}

/// Writes the Ethernet header for `nh` and decrements the TTL / hop limit.
#[inline(always)]
pub fn rewrite_l2_and_ttl(pkt: &mut Packet, meta: &PacketMeta, nh: &NextHop, dst_mac: [u8; 6]) {
    let mut l3 = meta.l3_offset as usize;
    if l3 != 14 {
        // Remove the received VLAN tags: move the frame start up to them.
        pkt.strip_front(l3 - 14);
        l3 = 14;
    }
    let d = pkt.data_mut();
    d[0..6].copy_from_slice(&dst_mac);
    d[6..12].copy_from_slice(&nh.src_mac);
    if meta.family == 4 {
        d[12] = 0x08;
        d[13] = 0x00;
        let ttl = d[l3 + 8];
        let proto = d[l3 + 9];
        d[l3 + 8] = ttl.wrapping_sub(1);
        let old = u16::from_be_bytes([ttl, proto]);
        let new = u16::from_be_bytes([ttl.wrapping_sub(1), proto]);
        let check = u16::from_be_bytes([d[l3 + 10], d[l3 + 11]]);
        let check = checksum::update16(check, old, new);
        d[l3 + 10..l3 + 12].copy_from_slice(&check.to_be_bytes());
    } else {
        d[12] = 0x86;
        d[13] = 0xdd;
        d[l3 + 7] = d[l3 + 7].wrapping_sub(1);
    }
}
