//! The slow path: what the fast path punts, handled on the same worker after
//! the burst.
//!
//! * ARP: requests for the appliance's addresses are answered; every valid
//!   ARP packet refreshes the sender's entry in the neighbour cache.
//! * Neighbour discovery: solicitations for the appliance's addresses are
//!   answered with advertisements (RFC 4861 §7.2.4); advertisements and the
//!   source link-layer option of solicitations refresh the cache.
//! * ICMP echo requests to the appliance are answered.
//! * Unresolved next hops: the packet is dropped and counted
//!   (`neighbour_unresolved`), and an ARP request or neighbour solicitation
//!   goes out, at most once per `retrans` per address.
//! * ICMP errors (time exceeded, unreachable, fragmentation needed / packet
//!   too big) are generated under a per-worker token bucket, never in
//!   answer to an ICMP error, a non-first fragment, or a multicast or
//!   broadcast packet (RFC 1812 §4.3.2.7, RFC 4443 §2.4(e)).
//!
//! * IPv4 packets larger than the next hop's MTU without DF are fragmented.
//!
//! Generated packets are routed with the same functions as the fast path.
//! Nothing here allocates: replies reuse the punted packet's buffer or take
//! one from the worker's cache.

use super::rewrite::resolve;
use super::route::route_one;
use super::{flags, Action, Context, PacketMeta, Punt};
use crate::buf::{Packet, PoolCache};
use crate::state::neighbour::Family;
use crate::state::ratelimit::TokenBucket;
use crate::stats::{DropReason, Event};
use crate::tables::{Network, PortId, Tables};
use crate::wire::{checksum, ethertype, ip_proto};

/// Per-worker slow-path state.
pub struct SlowPath {
    icmp: TokenBucket,
}

/// Where the slow path sends what it makes.
pub type Emit<'a> = dyn FnMut(PortId, Packet, &mut PoolCache) + 'a;

const ICMP4_TIME_EXCEEDED: u8 = 11;
const ICMP4_UNREACHABLE: u8 = 3;
const ICMP6_UNREACHABLE: u8 = 1;
const ICMP6_TOO_BIG: u8 = 2;
const ICMP6_TIME_EXCEEDED: u8 = 3;
const ND_NS: u8 = 135;
const ND_NA: u8 = 136;

#[inline]
fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

impl SlowPath {
    pub fn new(tables: &Tables) -> SlowPath {
        SlowPath {
            icmp: TokenBucket::new(tables.icmp.per_second as u64, tables.icmp.burst as u64),
        }
    }

    /// A new table generation: take its limits.
    pub fn on_tables(&mut self, tables: &Tables) {
        self.icmp
            .set(tables.icmp.per_second as u64, tables.icmp.burst as u64);
    }

    /// Handles one punted packet; consumes it.
    pub fn handle(
        &mut self,
        cx: &Context<'_>,
        cache: &mut PoolCache,
        pkt: Packet,
        meta: &PacketMeta,
        punt: Punt,
        emit: &mut Emit<'_>,
    ) {
        match punt {
            Punt::Arp => self.arp(cx, cache, pkt, meta, emit),
            Punt::Local => self.local(cx, cache, pkt, meta, emit),
            Punt::Resolve => {
                cx.stats.drop_packet(DropReason::NeighbourUnresolved);
                self.solicit(cx, cache, meta, emit);
                cache.free(pkt);
            }
            Punt::TtlExpired => {
                cx.stats.drop_packet(DropReason::TtlExpired);
                let (t, c) = if meta.family == 4 {
                    (ICMP4_TIME_EXCEEDED, 0)
                } else {
                    (ICMP6_TIME_EXCEEDED, 0)
                };
                self.icmp_error(cx, cache, pkt, meta, t, c, 0, emit);
            }
            Punt::NoRoute => {
                cx.stats.drop_packet(DropReason::NoRoute);
                // Network unreachable (v4 code 0) / no route (v6 code 0).
                let t = if meta.family == 4 {
                    ICMP4_UNREACHABLE
                } else {
                    ICMP6_UNREACHABLE
                };
                self.icmp_error(cx, cache, pkt, meta, t, 0, 0, emit);
            }
            Punt::Unreachable { prohibited } => {
                cx.stats.drop_packet(DropReason::Unreachable);
                let (t, c) = match (meta.family, prohibited) {
                    (4, false) => (ICMP4_UNREACHABLE, 1), // host unreachable
                    (4, true) => (ICMP4_UNREACHABLE, 13), // communication administratively prohibited
                    (_, false) => (ICMP6_UNREACHABLE, 3), // address unreachable
                    (_, true) => (ICMP6_UNREACHABLE, 1),  // administratively prohibited
                };
                self.icmp_error(cx, cache, pkt, meta, t, c, 0, emit);
            }
            Punt::TooBig => {
                let net = &cx.tables.networks[meta.network as usize];
                let mtu = net
                    .next_hops
                    .get(meta.next_hop as usize)
                    .map_or(1280, |n| n.mtu) as u32;
                if meta.family == 4 && meta.flags & flags::DONT_FRAGMENT == 0 {
                    self.fragment_v4(cx, cache, pkt, meta, emit);
                    return;
                }
                cx.stats.drop_packet(DropReason::MtuExceeded);
                if meta.family == 4 {
                    // Fragmentation needed and DF set; next-hop MTU in the low 16 bits.
                    self.icmp_error(cx, cache, pkt, meta, ICMP4_UNREACHABLE, 4, mtu, emit);
                } else {
                    self.icmp_error(cx, cache, pkt, meta, ICMP6_TOO_BIG, 0, mtu, emit);
                }
            }
        }
    }

    fn arp(
        &mut self,
        cx: &Context<'_>,
        cache: &mut PoolCache,
        mut pkt: Packet,
        meta: &PacketMeta,
        emit: &mut Emit<'_>,
    ) {
        let l3 = meta.l3_offset as usize;
        let d = pkt.data();
        if d.len() < l3 + 28
            || be16(d, l3) != 1
            || be16(d, l3 + 2) != ethertype::IPV4
            || d[l3 + 4] != 6
            || d[l3 + 5] != 4
        {
            cx.stats.drop_packet(DropReason::ArpInvalid);
            cache.free(pkt);
            return;
        }
        let op = be16(d, l3 + 6);
        let sha: [u8; 6] = d[l3 + 8..l3 + 14].try_into().unwrap_or([0; 6]);
        let spa = u32::from_be_bytes(d[l3 + 14..l3 + 18].try_into().unwrap_or([0; 4]));
        let tpa = u32::from_be_bytes(d[l3 + 24..l3 + 28].try_into().unwrap_or([0; 4]));
        let Some(port) = cx.tables.port(pkt.rx_port) else {
            cx.stats.drop_packet(DropReason::UnknownPort);
            cache.free(pkt);
            return;
        };
        if sha[0] & 1 != 0 || (op != 1 && op != 2) {
            cx.stats.drop_packet(DropReason::ArpInvalid);
            cache.free(pkt);
            return;
        }
        if spa != 0 {
            cx.neighbours
                .learn(meta.network, Family::V4, spa as u128, sha, cx.now_ns);
            cx.stats.event(Event::NeighbourLearned);
        }
        if op == 1 && port.owns_v4(tpa.into()) {
            // Answer in place: the request's buffer becomes the reply.
            let rx_port = pkt.rx_port;
            let mac = port.mac;
            let d = pkt.data_mut();
            d[0..6].copy_from_slice(&sha);
            d[6..12].copy_from_slice(&mac);
            d[l3 + 6..l3 + 8].copy_from_slice(&2u16.to_be_bytes());
            d[l3 + 18..l3 + 24].copy_from_slice(&sha);
            d[l3 + 24..l3 + 28].copy_from_slice(&spa.to_be_bytes());
            d[l3 + 8..l3 + 14].copy_from_slice(&mac);
            d[l3 + 14..l3 + 18].copy_from_slice(&tpa.to_be_bytes());
            untag(&mut pkt, l3);
            cx.stats.event(Event::ArpReplySent);
            emit(rx_port, pkt, cache);
        } else {
            // Learned from; nothing to answer.
            cx.stats.drop_packet(DropReason::LocalUnhandled);
            cache.free(pkt);
        }
    }

    fn local(
        &mut self,
        cx: &Context<'_>,
        cache: &mut PoolCache,
        pkt: Packet,
        meta: &PacketMeta,
        emit: &mut Emit<'_>,
    ) {
        let l4 = meta.l4_offset as usize;
        let d = pkt.data();
        match (meta.family, meta.proto) {
            (4, ip_proto::ICMP) if d.get(l4) == Some(&8) && meta.flags & flags::FRAGMENT == 0 => {
                self.echo_reply(cx, cache, pkt, meta, emit)
            }
            (6, ip_proto::ICMPV6) => match d.get(l4) {
                Some(&128)
                    if meta.flags & flags::IP_MULTICAST == 0
                        && meta.flags & flags::FRAGMENT == 0 =>
                {
                    self.echo_reply(cx, cache, pkt, meta, emit)
                }
                Some(&ND_NS) => self.neighbour_solicit(cx, cache, pkt, meta, emit),
                Some(&ND_NA) => self.neighbour_advert(cx, cache, pkt, meta),
                _ => {
                    cx.stats.drop_packet(DropReason::LocalUnhandled);
                    cache.free(pkt);
                }
            },
            _ => {
                cx.stats.drop_packet(DropReason::LocalUnhandled);
                cache.free(pkt);
            }
        }
    }

    /// Turns an echo request into the reply in place and routes it back.
    fn echo_reply(
        &mut self,
        cx: &Context<'_>,
        cache: &mut PoolCache,
        mut pkt: Packet,
        meta: &PacketMeta,
        emit: &mut Emit<'_>,
    ) {
        let (l3, l4, end) = (
            meta.l3_offset as usize,
            meta.l4_offset as usize,
            meta.l3_offset as usize + meta.l3_len as usize,
        );
        let d = pkt.data_mut();
        if meta.family == 4 {
            if !checksum::verify(&d[l4..end]) {
                cx.stats.drop_packet(DropReason::L4Header);
                cache.free(pkt);
                return;
            }
            let (src, dst) = (meta.src as u32, meta.dst as u32);
            d[l3 + 12..l3 + 16].copy_from_slice(&dst.to_be_bytes());
            d[l3 + 16..l3 + 20].copy_from_slice(&src.to_be_bytes());
            d[l3 + 8] = 64;
            d[l3 + 10..l3 + 12].fill(0);
            let c = checksum::checksum(&d[l3..l4]);
            d[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            // Type 8 -> 0: the checksum changes by the type word.
            let old = be16(d, l4);
            d[l4] = 0;
            let c = checksum::update16(be16(d, l4 + 2), old, be16(d, l4));
            d[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
        } else {
            let src: [u8; 16] = d[l3 + 8..l3 + 24].try_into().unwrap_or([0; 16]);
            let dst: [u8; 16] = d[l3 + 24..l3 + 40].try_into().unwrap_or([0; 16]);
            let pseudo = checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, (end - l4) as u32);
            if checksum::fold(checksum::sum(&d[l4..end], pseudo)) != 0xffff {
                cx.stats.drop_packet(DropReason::L4Header);
                cache.free(pkt);
                return;
            }
            d[l3 + 8..l3 + 24].copy_from_slice(&dst);
            d[l3 + 24..l3 + 40].copy_from_slice(&src);
            d[l3 + 7] = 64;
            let old = be16(d, l4);
            d[l4] = 129;
            let c = checksum::update16(be16(d, l4 + 2), old, be16(d, l4));
            d[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
        }
        let mut m = *meta;
        core::mem::swap(&mut m.src, &mut m.dst);
        m.ttl = 64;
        m.flags = flags::LOCAL_ORIGIN;
        cx.stats.event(Event::EchoReplySent);
        self.send_local(cx, cache, pkt, m, emit);
    }

    fn neighbour_solicit(
        &mut self,
        cx: &Context<'_>,
        cache: &mut PoolCache,
        mut pkt: Packet,
        meta: &PacketMeta,
        emit: &mut Emit<'_>,
    ) {
        let (l3, l4, end) = (
            meta.l3_offset as usize,
            meta.l4_offset as usize,
            meta.l3_offset as usize + meta.l3_len as usize,
        );
        let Some(port) = cx.tables.port(pkt.rx_port) else {
            cx.stats.drop_packet(DropReason::UnknownPort);
            cache.free(pkt);
            return;
        };
        let d = pkt.data();
        // RFC 4861 §7.1.1: hop limit 255, code 0, length >= 24, checksum.
        if !nd_valid(d, meta, l3, l4, end, 24) {
            cx.stats.drop_packet(DropReason::NdInvalid);
            cache.free(pkt);
            return;
        }
        let target = u128::from_be_bytes(d[l4 + 8..l4 + 24].try_into().unwrap_or([0; 16]));
        let source_lla = nd_option(&d[l4 + 24..end], 1);
        if let Some(mac) = source_lla {
            if meta.src != 0 {
                cx.neighbours
                    .learn(meta.network, Family::V6, meta.src, mac, cx.now_ns);
                cx.stats.event(Event::NeighbourLearned);
            }
        }
        if !port.owns_v6(target.into()) {
            cx.stats.drop_packet(DropReason::LocalUnhandled);
            cache.free(pkt);
            return;
        }
        // The advertisement: to the soliciting node, or to all-nodes when
        // the solicitation came from the unspecified address (DAD).
        let (dst_ip, dst_mac, solicited) = match (meta.src, source_lla) {
            (0, _) => (
                0xff02_0000_0000_0000_0000_0000_0000_0001u128,
                [0x33, 0x33, 0, 0, 0, 1],
                false,
            ),
            (src, Some(mac)) => (src, mac, true),
            (_, None) => (meta.src, [d[6], d[7], d[8], d[9], d[10], d[11]], true),
        };
        let rx_port = pkt.rx_port;
        let mac = port.mac;
        let len = 14 + 40 + 32;
        let Some(f) = pkt.reset(len) else {
            cache.free(pkt);
            return;
        };
        write_eth(f, dst_mac, mac, ethertype::IPV6);
        let flags_word: u32 = if solicited { 0x6000_0000 } else { 0x2000_0000 }; // R=0, S, O=1
        write_ipv6(f, 14, target, dst_ip, ip_proto::ICMPV6, 32, 255);
        let m = &mut f[54..86];
        m[0] = ND_NA;
        m[1] = 0;
        m[2..4].fill(0);
        m[4..8].copy_from_slice(&flags_word.to_be_bytes());
        m[8..24].copy_from_slice(&target.to_be_bytes());
        m[24] = 2; // target link-layer address
        m[25] = 1;
        m[26..32].copy_from_slice(&mac);
        let c = icmpv6_checksum(target, dst_ip, m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        cx.stats.event(Event::NdAdvertSent);
        emit(rx_port, pkt, cache);
    }

    fn neighbour_advert(
        &mut self,
        cx: &Context<'_>,
        cache: &mut PoolCache,
        pkt: Packet,
        meta: &PacketMeta,
    ) {
        let (l3, l4, end) = (
            meta.l3_offset as usize,
            meta.l4_offset as usize,
            meta.l3_offset as usize + meta.l3_len as usize,
        );
        let d = pkt.data();
        if !nd_valid(d, meta, l3, l4, end, 24) {
            cx.stats.drop_packet(DropReason::NdInvalid);
            cache.free(pkt);
            return;
        }
        let target = u128::from_be_bytes(d[l4 + 8..l4 + 24].try_into().unwrap_or([0; 16]));
        if let Some(mac) = nd_option(&d[l4 + 24..end], 2) {
            cx.neighbours
                .learn(meta.network, Family::V6, target, mac, cx.now_ns);
            cx.stats.event(Event::NeighbourLearned);
        }
        cx.stats.drop_packet(DropReason::LocalUnhandled);
        cache.free(pkt);
    }

    /// Splits an IPv4 packet without DF into fragments that fit the next
    /// hop's MTU (RFC 791 §3.2, RFC 1812 §4.2.2.7): the first carries all
    /// options, the rest only those with the copy bit; data in multiples of 8
    /// bytes; MF on all but the last (on all if the packet was itself a
    /// non-final fragment); TTL decremented and checksums recomputed.
    fn fragment_v4(
        &mut self,
        cx: &Context<'_>,
        cache: &mut PoolCache,
        pkt: Packet,
        meta: &PacketMeta,
        emit: &mut Emit<'_>,
    ) {
        let net = &cx.tables.networks[meta.network as usize];
        let Some(nh) = net.next_hops.get(meta.next_hop as usize).copied() else {
            cache.free(pkt);
            return;
        };
        let Some(mac) = resolve(net, &nh, meta, cx.neighbours) else {
            cx.stats.drop_packet(DropReason::NeighbourUnresolved);
            self.solicit(cx, cache, meta, emit);
            cache.free(pkt);
            return;
        };
        let l3 = meta.l3_offset as usize;
        let ip = &pkt.data()[l3..l3 + meta.l3_len as usize];
        let hl = ((ip[0] & 0x0f) as usize) * 4;
        let mtu = nh.mtu as usize;
        // The options later fragments carry: those with the copy bit.
        let mut copied = [0u8; 40];
        let mut copied_len = 0;
        let mut o = 20;
        while o < hl {
            match ip[o] {
                0 => break,
                1 => o += 1,
                kind => {
                    let len = ip.get(o + 1).copied().unwrap_or(0) as usize;
                    if len < 2 || o + len > hl {
                        break;
                    }
                    if kind & 0x80 != 0 {
                        copied[copied_len..copied_len + len].copy_from_slice(&ip[o..o + len]);
                        copied_len += len;
                    }
                    o += len;
                }
            }
        }
        let later_hl = 20 + copied_len.next_multiple_of(4);
        if mtu < hl + 8 || mtu < later_hl + 8 {
            cx.stats.drop_packet(DropReason::FragmentFailed);
            cache.free(pkt);
            return;
        }
        let frag_field = u16::from_be_bytes([ip[6], ip[7]]);
        let base_offset = (frag_field & 0x1fff) as usize * 8;
        let more_after = frag_field & 0x2000 != 0;
        let payload = &ip[hl..];
        let mut done = 0;
        let mut first = true;
        while done < payload.len() {
            let this_hl = if first { hl } else { later_hl };
            let room = (mtu - this_hl) / 8 * 8;
            let take = room.min(payload.len() - done);
            let last = done + take == payload.len();
            let Some(mut f) = cache.alloc() else {
                cx.stats.drop_packet(DropReason::NoBuffer);
                break;
            };
            let Some(buf) = f.reset(14 + this_hl + take) else {
                cache.free(f);
                break;
            };
            buf[0..6].copy_from_slice(&mac);
            buf[6..12].copy_from_slice(&nh.src_mac);
            buf[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
            let h = &mut buf[14..14 + this_hl];
            h[..20].copy_from_slice(&ip[..20]);
            if first {
                h[20..].copy_from_slice(&ip[20..hl]);
            } else {
                h[20..20 + copied_len].copy_from_slice(&copied[..copied_len]);
                h[20 + copied_len..].fill(0); // end-of-list padding
            }
            h[0] = 0x40 | (this_hl / 4) as u8;
            h[2..4].copy_from_slice(&((this_hl + take) as u16).to_be_bytes());
            let mf = !last || more_after;
            let field = (frag_field & 0x8000)
                | if mf { 0x2000 } else { 0 }
                | (((base_offset + done) / 8) as u16 & 0x1fff);
            h[6..8].copy_from_slice(&field.to_be_bytes());
            h[8] = ip[8].wrapping_sub(1);
            h[10..12].fill(0);
            let c = checksum::checksum(h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            buf[14 + this_hl..].copy_from_slice(&payload[done..done + take]);
            emit(nh.port, f, cache);
            done += take;
            first = false;
        }
        if done == payload.len() {
            cx.stats.event(Event::Fragmented);
        }
        cache.free(pkt);
    }

    /// Sends an ARP request or neighbour solicitation for the next hop of
    /// `meta`, at most once per retransmission interval per address.
    fn solicit(
        &mut self,
        cx: &Context<'_>,
        cache: &mut PoolCache,
        meta: &PacketMeta,
        emit: &mut Emit<'_>,
    ) {
        let net = &cx.tables.networks[meta.network as usize];
        let Some(nh) = net.next_hops.get(meta.next_hop as usize) else {
            return;
        };
        let Some(port) = cx.tables.port(nh.port) else {
            return;
        };
        let target = nh.gateway.unwrap_or(meta.dst);
        let family = if meta.family == 4 {
            Family::V4
        } else {
            Family::V6
        };
        if !cx.neighbours.should_solicit(
            meta.network,
            family,
            target,
            cx.now_ns,
            cx.tables.neighbour.retrans_ns,
        ) {
            return;
        }
        let Some(mut pkt) = cache.alloc() else {
            cx.stats.drop_packet(DropReason::NoBuffer);
            return;
        };
        if meta.family == 4 {
            let Some(src) = port.v4_source_for((target as u32).into()) else {
                cache.free(pkt);
                return;
            };
            let Some(f) = pkt.reset(60) else { return };
            f.fill(0);
            write_eth(f, [0xff; 6], port.mac, ethertype::ARP);
            f[14..16].copy_from_slice(&1u16.to_be_bytes());
            f[16..18].copy_from_slice(&ethertype::IPV4.to_be_bytes());
            f[18] = 6;
            f[19] = 4;
            f[20..22].copy_from_slice(&1u16.to_be_bytes());
            f[22..28].copy_from_slice(&port.mac);
            f[28..32].copy_from_slice(&u32::from(src).to_be_bytes());
            f[38..42].copy_from_slice(&(target as u32).to_be_bytes());
            cx.stats.event(Event::ArpRequestSent);
        } else {
            // To the solicited-node multicast group ff02::1:ffXX:XXXX.
            let group = 0xff02_0000_0000_0000_0000_0001_ff00_0000u128 | (target & 0x00ff_ffff);
            let gmac = [
                0x33,
                0x33,
                0xff,
                (target >> 16) as u8,
                (target >> 8) as u8,
                target as u8,
            ];
            let src = u128::from(port.primary_v6());
            let Some(f) = pkt.reset(14 + 40 + 32) else {
                return;
            };
            write_eth(f, gmac, port.mac, ethertype::IPV6);
            write_ipv6(f, 14, src, group, ip_proto::ICMPV6, 32, 255);
            let m = &mut f[54..86];
            m[0] = ND_NS;
            m[1..8].fill(0);
            m[8..24].copy_from_slice(&target.to_be_bytes());
            m[24] = 1; // source link-layer address
            m[25] = 1;
            m[26..32].copy_from_slice(&port.mac);
            let c = icmpv6_checksum(src, group, m);
            m[2..4].copy_from_slice(&c.to_be_bytes());
            cx.stats.event(Event::NdSolicitSent);
        }
        emit(nh.port, pkt, cache);
    }

    /// Builds an ICMP/ICMPv6 error about `pkt` and routes it to the sender.
    #[allow(clippy::too_many_arguments)]
    fn icmp_error(
        &mut self,
        cx: &Context<'_>,
        cache: &mut PoolCache,
        pkt: Packet,
        meta: &PacketMeta,
        icmp_type: u8,
        code: u8,
        rest: u32,
        emit: &mut Emit<'_>,
    ) {
        if !error_allowed(pkt.data(), meta) {
            cache.free(pkt);
            return;
        }
        if !self.icmp.take(cx.now_ns, 1) {
            cx.stats.event(Event::IcmpRateLimited);
            cache.free(pkt);
            return;
        }
        let Some(port) = cx.tables.port(pkt.rx_port) else {
            cache.free(pkt);
            return;
        };
        let Some(mut out) = cache.alloc() else {
            cx.stats.drop_packet(DropReason::NoBuffer);
            cache.free(pkt);
            return;
        };
        let l3 = meta.l3_offset as usize;
        let orig = &pkt.data()[l3..l3 + meta.l3_len as usize];
        let mut m = *meta;
        m.flags = flags::LOCAL_ORIGIN;
        m.ttl = 64;
        m.dst = meta.src;
        let built = if meta.family == 4 {
            let Some(src) = port.v4_source_for((meta.src as u32).into()) else {
                cache.free(out);
                cache.free(pkt);
                return;
            };
            // RFC 1812 §4.3.2.3: quote as much as fits in 576 bytes.
            let quote = orig.len().min(576 - 28);
            let len = 14 + 28 + quote;
            out.reset(len).map(|f| {
                write_eth(f, [0; 6], [0; 6], ethertype::IPV4);
                let ip = &mut f[14..34];
                ip[0] = 0x45;
                ip[1] = 0xc0; // internetwork control
                ip[2..4].copy_from_slice(&((28 + quote) as u16).to_be_bytes());
                ip[4..8].fill(0);
                ip[8] = 64;
                ip[9] = ip_proto::ICMP;
                ip[10..12].fill(0);
                ip[12..16].copy_from_slice(&u32::from(src).to_be_bytes());
                ip[16..20].copy_from_slice(&(meta.src as u32).to_be_bytes());
                let c = checksum::checksum(ip);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                let icmp = &mut f[34..];
                icmp[0] = icmp_type;
                icmp[1] = code;
                icmp[2..4].fill(0);
                icmp[4..8].copy_from_slice(&rest.to_be_bytes());
                icmp[8..].copy_from_slice(&orig[..quote]);
                let c = checksum::checksum(icmp);
                icmp[2..4].copy_from_slice(&c.to_be_bytes());
                m.src = u32::from(src) as u128;
                m.proto = ip_proto::ICMP;
                m.l3_len = (28 + quote) as u16;
            })
        } else {
            let src = port
                .ipv6
                .iter()
                .map(|(a, _)| u128::from(*a))
                .next()
                .unwrap_or_else(|| u128::from(port.ipv6_link_local));
            // RFC 4443 §2.4(c): as much as fits in the minimum MTU.
            let quote = orig.len().min(1280 - 48);
            let len = 14 + 48 + quote;
            out.reset(len).map(|f| {
                write_eth(f, [0; 6], [0; 6], ethertype::IPV6);
                write_ipv6(
                    f,
                    14,
                    src,
                    meta.src,
                    ip_proto::ICMPV6,
                    (8 + quote) as u16,
                    64,
                );
                let icmp = &mut f[54..];
                icmp[0] = icmp_type;
                icmp[1] = code;
                icmp[2..4].fill(0);
                icmp[4..8].copy_from_slice(&rest.to_be_bytes());
                icmp[8..].copy_from_slice(&orig[..quote]);
                let c = icmpv6_checksum(src, meta.src, icmp);
                icmp[2..4].copy_from_slice(&c.to_be_bytes());
                m.src = src;
                m.proto = ip_proto::ICMPV6;
                m.l3_len = (48 + quote) as u16;
            })
        };
        cache.free(pkt);
        if built.is_none() {
            cache.free(out);
            return;
        }
        m.l3_offset = 14;
        m.l4_offset = if meta.family == 4 { 34 } else { 54 };
        cx.stats.event(Event::IcmpErrorSent);
        self.send_local(cx, cache, out, m, emit);
    }

    /// Routes a packet the appliance generated (its frame starts with a
    /// 14-byte Ethernet header whose MACs are filled here).
    fn send_local(
        &mut self,
        cx: &Context<'_>,
        cache: &mut PoolCache,
        mut pkt: Packet,
        mut m: PacketMeta,
        emit: &mut Emit<'_>,
    ) {
        let l3 = m.l3_offset as usize;
        if l3 != 14 {
            pkt.strip_front(l3 - 14);
            m.l3_offset = 14;
            m.l4_offset -= (l3 - 14) as u16;
        }
        let Some(net) = cx.tables.networks.get(m.network as usize) else {
            cache.free(pkt);
            return;
        };
        match route_one(net, &mut m) {
            Action::Continue => {}
            Action::Punt(Punt::TooBig) => {
                // A reply larger than the path MTU (a big echo): not sent.
                cx.stats.drop_packet(DropReason::MtuExceeded);
                cache.free(pkt);
                return;
            }
            Action::Drop(r) => {
                cx.stats.drop_packet(r);
                cache.free(pkt);
                return;
            }
            _ => {
                // No route back, or back to ourselves: nothing to send.
                cx.stats.drop_packet(DropReason::NoRoute);
                cache.free(pkt);
                return;
            }
        }
        let nh = net.next_hops[m.next_hop as usize];
        match next_hop_mac(net, &nh, &m, cx) {
            Some(mac) => {
                let d = pkt.data_mut();
                d[0..6].copy_from_slice(&mac);
                d[6..12].copy_from_slice(&nh.src_mac);
                emit(nh.port, pkt, cache);
            }
            None => {
                cx.stats.drop_packet(DropReason::NeighbourUnresolved);
                self.solicit(cx, cache, &m, emit);
                cache.free(pkt);
            }
        }
    }
}

fn next_hop_mac(
    net: &Network,
    nh: &crate::tables::NextHop,
    m: &PacketMeta,
    cx: &Context<'_>,
) -> Option<[u8; 6]> {
    resolve(net, nh, m, cx.neighbours)
}

/// Removes VLAN tags in front of `l3` so the frame leaves untagged.
fn untag(pkt: &mut Packet, l3: usize) {
    if l3 > 14 {
        let d = pkt.data_mut();
        d.copy_within(0..12, l3 - 14);
        pkt.strip_front(l3 - 14);
    }
}

fn write_eth(f: &mut [u8], dst: [u8; 6], src: [u8; 6], et: u16) {
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&et.to_be_bytes());
}

fn write_ipv6(
    f: &mut [u8],
    at: usize,
    src: u128,
    dst: u128,
    next: u8,
    payload: u16,
    hop_limit: u8,
) {
    let h = &mut f[at..at + 40];
    h[0..4].copy_from_slice(&(6u32 << 28).to_be_bytes());
    h[4..6].copy_from_slice(&payload.to_be_bytes());
    h[6] = next;
    h[7] = hop_limit;
    h[8..24].copy_from_slice(&src.to_be_bytes());
    h[24..40].copy_from_slice(&dst.to_be_bytes());
}

fn icmpv6_checksum(src: u128, dst: u128, msg: &[u8]) -> u16 {
    let pseudo = checksum::pseudo_header_v6(
        src.to_be_bytes(),
        dst.to_be_bytes(),
        ip_proto::ICMPV6,
        msg.len() as u32,
    );
    !checksum::fold(checksum::sum(msg, pseudo))
}

/// RFC 4861 validity checks common to NS and NA.
fn nd_valid(d: &[u8], meta: &PacketMeta, l3: usize, l4: usize, end: usize, min: usize) -> bool {
    if meta.ttl != 255
        || end < l4 + min
        || d.len() < end
        || d[l4 + 1] != 0
        || meta.flags & flags::FRAGMENT != 0
    {
        return false;
    }
    let src: [u8; 16] = d[l3 + 8..l3 + 24].try_into().unwrap_or([0; 16]);
    let dst: [u8; 16] = d[l3 + 24..l3 + 40].try_into().unwrap_or([0; 16]);
    let pseudo = checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, (end - l4) as u32);
    if checksum::fold(checksum::sum(&d[l4..end], pseudo)) != 0xffff {
        return false;
    }
    // Options must each have a non-zero length and fit.
    let mut o = &d[l4 + min..end];
    while o.len() >= 2 {
        let len = o[1] as usize * 8;
        if len == 0 || len > o.len() {
            return false;
        }
        o = &o[len..];
    }
    o.is_empty()
}

/// The link-layer address in ND option `kind` (1 source, 2 target).
fn nd_option(mut o: &[u8], kind: u8) -> Option<[u8; 6]> {
    while o.len() >= 8 {
        let len = o[1] as usize * 8;
        if len == 0 || len > o.len() {
            return None;
        }
        if o[0] == kind && len >= 8 {
            return Some([o[2], o[3], o[4], o[5], o[6], o[7]]);
        }
        o = &o[len..];
    }
    None
}

/// Whether an ICMP error may be sent about this packet.
fn error_allowed(d: &[u8], meta: &PacketMeta) -> bool {
    if meta.flags & (flags::L2_MULTICAST | flags::IP_MULTICAST | flags::LATER_FRAGMENT) != 0 {
        return false;
    }
    if meta.family == 4 {
        let src = meta.src as u32;
        if src == 0 || src >> 24 == 127 || src >> 28 >= 0xe {
            return false;
        }
    } else if meta.src == 0 || meta.src >> 120 == 0xff {
        return false;
    }
    let l4 = meta.l4_offset as usize;
    match (meta.family, meta.proto) {
        // Never about an ICMP error: only echo/info messages (v4 types 0, 8,
        // 13-18) and ICMPv6 informational (>= 128) may trigger one.
        (4, ip_proto::ICMP) => d.get(l4).is_some_and(|t| matches!(t, 0 | 8 | 13..=18)),
        (6, ip_proto::ICMPV6) => d.get(l4).is_some_and(|t| *t >= 128),
        _ => true,
    }
}
