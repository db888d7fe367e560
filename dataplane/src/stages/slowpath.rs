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
use crate::tables::{PortId, Tables};
use crate::wire::ethernet::EthernetAddress;
use crate::wire::{arp, checksum, ethernet, ethertype, icmpv4, icmpv6, ip_proto, ipv4, ipv6, tcp};
use std::net::{Ipv4Addr, Ipv6Addr};

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
                self.icmp_error(cx, cache, pkt, meta, t, c, 0, None, emit);
            }
            Punt::NoRoute => {
                cx.stats.drop_packet(DropReason::NoRoute);
                // Network unreachable (v4 code 0) / no route (v6 code 0).
                let t = if meta.family == 4 {
                    ICMP4_UNREACHABLE
                } else {
                    ICMP6_UNREACHABLE
                };
                self.icmp_error(cx, cache, pkt, meta, t, 0, 0, None, emit);
            }
            Punt::Unreachable { prohibited } => {
                cx.stats.drop_packet(DropReason::Unreachable);
                let (t, c) = match (meta.family, prohibited) {
                    (4, false) => (ICMP4_UNREACHABLE, 1), // host unreachable
                    (4, true) => (ICMP4_UNREACHABLE, 13), // communication administratively prohibited
                    (_, false) => (ICMP6_UNREACHABLE, 3), // address unreachable
                    (_, true) => (ICMP6_UNREACHABLE, 1),  // administratively prohibited
                };
                self.icmp_error(cx, cache, pkt, meta, t, c, 0, None, emit);
            }
            Punt::Reject => {
                cx.stats.drop_packet(DropReason::ServiceReject);
                // As nftables' `reject`: a reset for TCP, port unreachable
                // otherwise, from the address the packet was sent to.
                if meta.proto == ip_proto::TCP {
                    self.tcp_reset(cx, cache, pkt, meta, emit);
                } else {
                    let (t, c) = if meta.family == 4 {
                        (ICMP4_UNREACHABLE, 3)
                    } else {
                        (ICMP6_UNREACHABLE, 4)
                    };
                    self.icmp_error(cx, cache, pkt, meta, t, c, 0, Some(meta.dst), emit);
                }
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
                    self.icmp_error(cx, cache, pkt, meta, ICMP4_UNREACHABLE, 4, mtu, None, emit);
                } else {
                    self.icmp_error(cx, cache, pkt, meta, ICMP6_TOO_BIG, 0, mtu, None, emit);
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
        let parsed = arp::Packet::new_checked(&pkt.data()[l3..]).and_then(|p| arp::Repr::parse(&p));
        let Ok(req) = parsed else {
            cx.stats.drop_packet(DropReason::ArpInvalid);
            cache.free(pkt);
            return;
        };
        let Some(port) = cx.tables.port(pkt.rx_port) else {
            cx.stats.drop_packet(DropReason::UnknownPort);
            cache.free(pkt);
            return;
        };
        if !req.source_hw.is_unicast() || matches!(req.operation, arp::Operation::Unknown(_)) {
            cx.stats.drop_packet(DropReason::ArpInvalid);
            cache.free(pkt);
            return;
        }
        if !req.source_ip.is_unspecified() {
            cx.neighbours.learn(
                meta.network,
                Family::V4,
                u32::from(req.source_ip) as u128,
                req.source_hw.0,
                cx.now_ns,
            );
            cx.stats.event(Event::NeighbourLearned);
        }
        if req.operation == arp::Operation::Request && port.owns_v4(req.target_ip) {
            // Answer in place: the request's buffer becomes the reply.
            let rx_port = pkt.rx_port;
            let mac = EthernetAddress(port.mac);
            untag(&mut pkt, l3);
            let reply = arp::Repr {
                operation: arp::Operation::Reply,
                source_hw: mac,
                source_ip: req.target_ip,
                target_hw: req.source_hw,
                target_ip: req.source_ip,
            };
            let f = pkt.data_mut();
            write_eth(f, req.source_hw.0, port.mac, ethertype::ARP);
            reply.emit(&mut arp::Packet::new_unchecked(
                &mut f[14..14 + arp::ETHERNET_IPV4_LEN],
            ));
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
                Some(&icmpv6::message::NEIGHBOR_SOLICIT) => {
                    self.neighbour_solicit(cx, cache, pkt, meta, emit)
                }
                Some(&icmpv6::message::NEIGHBOR_ADVERT) => {
                    self.neighbour_advert(cx, cache, pkt, meta)
                }
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
        let (header, message) = d[l3..end].split_at_mut(l4 - l3);
        if meta.family == 4 {
            let mut icmp = icmpv4::Packet::new_unchecked(message);
            if !icmp.verify_checksum() {
                cx.stats.drop_packet(DropReason::L4Header);
                cache.free(pkt);
                return;
            }
            icmp.set_type_code_incremental(icmpv4::message::ECHO_REPLY, 0);
            let mut ip = ipv4::Packet::new_unchecked(header);
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            ip.set_src_addr(dst);
            ip.set_dst_addr(src);
            ip.set_ttl(64);
            ip.fill_checksum();
        } else {
            let (src, dst) = (meta.src.to_be_bytes(), meta.dst.to_be_bytes());
            let mut icmp = icmpv6::Packet::new_unchecked(message);
            if !icmp.verify_checksum(src, dst) {
                cx.stats.drop_packet(DropReason::L4Header);
                cache.free(pkt);
                return;
            }
            icmp.set_msg_type(icmpv6::message::ECHO_REPLY);
            icmp.fill_checksum(dst, src);
            // Only the fixed header's addresses: an echo request with
            // extension headers is answered without them reordered.
            let mut ip = ipv6::Packet::new_unchecked(&mut header[..40]);
            ip.set_src_addr(Ipv6Addr::from(dst));
            ip.set_dst_addr(Ipv6Addr::from(src));
            ip.set_hop_limit(64);
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
        let Some(port) = cx.tables.port(pkt.rx_port) else {
            cx.stats.drop_packet(DropReason::UnknownPort);
            cache.free(pkt);
            return;
        };
        let Some(icmpv6::Repr::NeighborSolicit {
            target,
            source_lladdr,
        }) = parse_nd(pkt.data(), meta)
        else {
            cx.stats.drop_packet(DropReason::NdInvalid);
            cache.free(pkt);
            return;
        };
        if let Some(mac) = source_lladdr {
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
        // The advertisement (RFC 4861 §7.2.4): to the soliciting node, or to
        // all-nodes when the solicitation came from the unspecified address
        // (duplicate address detection), then unsolicited.
        let d = pkt.data();
        let (dst_ip, dst_mac, solicited) = match (meta.src, source_lladdr) {
            (0, _) => (ALL_NODES, [0x33, 0x33, 0, 0, 0, 1], false),
            (src, Some(mac)) => (src, mac, true),
            (src, None) => (src, [d[6], d[7], d[8], d[9], d[10], d[11]], true),
        };
        let mut flags = icmpv6::NeighborFlags::OVERRIDE;
        if solicited {
            flags = flags | icmpv6::NeighborFlags::SOLICITED;
        }
        let rx_port = pkt.rx_port;
        let (mac, src) = (port.mac, u128::from_be_bytes(target));
        let Some(f) = pkt.reset(14 + 40 + ND_LEN) else {
            cache.free(pkt);
            return;
        };
        write_eth(f, dst_mac, mac, ethertype::IPV6);
        write_ipv6(f, src, dst_ip, ND_LEN, 255);
        if icmpv6::emit_neighbor_advert(
            &mut f[54..],
            target,
            dst_ip.to_be_bytes(),
            flags,
            target,
            Some(mac),
        )
        .is_err()
        {
            cache.free(pkt);
            return;
        }
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
        match parse_nd(pkt.data(), meta) {
            Some(icmpv6::Repr::NeighborAdvert {
                target,
                target_lladdr,
                ..
            }) => {
                if let Some(mac) = target_lladdr {
                    cx.neighbours.learn(
                        meta.network,
                        Family::V6,
                        u128::from_be_bytes(target),
                        mac,
                        cx.now_ns,
                    );
                    cx.stats.event(Event::NeighbourLearned);
                }
                cx.stats.drop_packet(DropReason::LocalUnhandled);
            }
            _ => cx.stats.drop_packet(DropReason::NdInvalid),
        }
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
            let target = Ipv4Addr::from(target as u32);
            let (Some(src), Some(f)) = (port.v4_source_for(target), pkt.reset(60)) else {
                cache.free(pkt);
                return;
            };
            f.fill(0); // the minimum frame's padding
            write_eth(f, [0xff; 6], port.mac, ethertype::ARP);
            let request = arp::Repr {
                operation: arp::Operation::Request,
                source_hw: EthernetAddress(port.mac),
                source_ip: src,
                target_hw: EthernetAddress([0; 6]),
                target_ip: target,
            };
            request.emit(&mut arp::Packet::new_unchecked(
                &mut f[14..14 + arp::ETHERNET_IPV4_LEN],
            ));
            cx.stats.event(Event::ArpRequestSent);
        } else {
            let target = target.to_be_bytes();
            let group = icmpv6::solicited_node(target);
            let gmac = [0x33, 0x33, group[12], group[13], group[14], group[15]];
            let src = u128::from(port.primary_v6());
            let Some(f) = pkt.reset(14 + 40 + ND_LEN) else {
                cache.free(pkt);
                return;
            };
            write_eth(f, gmac, port.mac, ethertype::IPV6);
            write_ipv6(f, src, u128::from_be_bytes(group), ND_LEN, 255);
            if icmpv6::emit_neighbor_solicit(
                &mut f[54..],
                src.to_be_bytes(),
                group,
                target,
                Some(port.mac),
            )
            .is_err()
            {
                cache.free(pkt);
                return;
            }
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
        from: Option<u128>,
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
            let src = from
                .map(|a| Ipv4Addr::from(a as u32))
                .or_else(|| port.v4_source_for((meta.src as u32).into()));
            let Some(src) = src else {
                cache.free(out);
                cache.free(pkt);
                return;
            };
            // RFC 1812 §4.3.2.3: quote as much as fits in 576 bytes.
            let quote = orig.len().min(576 - 28);
            out.reset(14 + 28 + quote).map(|f| {
                write_eth(f, [0; 6], [0; 6], ethertype::IPV4);
                let ip = ipv4::Repr {
                    src_addr: src,
                    dst_addr: Ipv4Addr::from(meta.src as u32),
                    protocol: ip_proto::ICMP,
                    payload_len: 8 + quote,
                    ttl: 64,
                    dscp: 0x30, // CS6, internetwork control (RFC 1812 §4.3.2.5)
                    ecn: 0,
                    ident: 0,
                    dont_frag: false,
                    more_frags: false,
                    frag_offset: 0,
                    options: ipv4::Options::EMPTY,
                };
                ip.emit(&mut ipv4::Packet::new_unchecked(&mut f[14..34]));
                icmpv4::emit_error(&mut f[34..], icmp_type, code, rest, &orig[..quote]);
                m.src = u32::from(src) as u128;
                m.proto = ip_proto::ICMP;
                m.l3_len = (28 + quote) as u16;
            })
        } else {
            let src = from
                .map(Ipv6Addr::from)
                .unwrap_or_else(|| port.primary_v6());
            // RFC 4443 §2.4(c): as much as fits in the minimum MTU.
            let quote = orig.len().min(icmpv6::MAX_ERROR_LEN - 8);
            out.reset(14 + 48 + quote).map(|f| {
                write_eth(f, [0; 6], [0; 6], ethertype::IPV6);
                write_ipv6(f, u128::from(src), meta.src, 8 + quote, 64);
                let (s, d) = (src.octets(), meta.src.to_be_bytes());
                icmpv6::emit_error(
                    &mut f[54..],
                    s,
                    d,
                    icmp_type,
                    code,
                    rest,
                    &orig[..quote],
                    icmpv6::MAX_ERROR_LEN,
                );
                m.src = u128::from(src);
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

    /// Answers a TCP segment with a reset (RFC 9293 §3.10.7.1, a segment
    /// to a closed port), under the ICMP error rate limit.
    fn tcp_reset(
        &mut self,
        cx: &Context<'_>,
        cache: &mut PoolCache,
        pkt: Packet,
        meta: &PacketMeta,
        emit: &mut Emit<'_>,
    ) {
        let l4 = meta.l4_offset as usize;
        let header = pkt.data().get(l4..l4 + 20).map(|t| {
            let mut h = [0u8; 20];
            h.copy_from_slice(t);
            h
        });
        let no_answer = flags::L2_MULTICAST | flags::IP_MULTICAST | flags::LATER_FRAGMENT;
        let Some(t) = header.filter(|t| t[13] & 0x04 == 0 && meta.flags & no_answer == 0) else {
            cache.free(pkt);
            return;
        };
        if !self.icmp.take(cx.now_ns, 1) {
            cx.stats.event(Event::IcmpRateLimited);
            cache.free(pkt);
            return;
        }
        let seg_flags = t[13];
        let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
        let ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
        let doff = (t[12] >> 4) as usize * 4;
        let l3_header = l4 - meta.l3_offset as usize;
        let payload = (meta.l3_len as usize).saturating_sub(l3_header + doff) as u32;
        let seg_len = payload + (seg_flags & 0x02 != 0) as u32 + (seg_flags & 0x01 != 0) as u32;
        let (r_seq, r_ack, r_flags) = if seg_flags & 0x10 != 0 {
            (ack, 0, 0x04)
        } else {
            (0, seq.wrapping_add(seg_len), 0x14)
        };
        cache.free(pkt);
        let Some(mut out) = cache.alloc() else {
            cx.stats.drop_packet(DropReason::NoBuffer);
            return;
        };
        let (ip_len, l4_at) = if meta.family == 4 { (20, 34) } else { (40, 54) };
        let built = out.reset(14 + ip_len + 20).map(|f| {
            if meta.family == 4 {
                write_eth(f, [0; 6], [0; 6], ethertype::IPV4);
                let ip = ipv4::Repr {
                    src_addr: Ipv4Addr::from(meta.dst as u32),
                    dst_addr: Ipv4Addr::from(meta.src as u32),
                    protocol: ip_proto::TCP,
                    payload_len: 20,
                    ttl: 64,
                    dscp: 0,
                    ecn: 0,
                    ident: 0,
                    dont_frag: true,
                    more_frags: false,
                    frag_offset: 0,
                    options: ipv4::Options::EMPTY,
                };
                ip.emit(&mut ipv4::Packet::new_unchecked(&mut f[14..34]));
            } else {
                write_eth(f, [0; 6], [0; 6], ethertype::IPV6);
                write_ipv6(f, meta.dst, meta.src, 20, 64);
                f[20] = ip_proto::TCP;
            }
            let h = &mut f[l4_at..l4_at + 20];
            h[0..2].copy_from_slice(&meta.dport.to_be_bytes());
            h[2..4].copy_from_slice(&meta.sport.to_be_bytes());
            h[4..8].copy_from_slice(&r_seq.to_be_bytes());
            h[8..12].copy_from_slice(&r_ack.to_be_bytes());
            h[12] = 5 << 4;
            h[13] = r_flags;
            h[14..20].fill(0);
            let mut seg = tcp::Packet::new_unchecked(h);
            if meta.family == 4 {
                seg.fill_checksum_v4(
                    (meta.dst as u32).to_be_bytes(),
                    (meta.src as u32).to_be_bytes(),
                );
            } else {
                seg.fill_checksum_v6(meta.dst.to_be_bytes(), meta.src.to_be_bytes());
            }
        });
        if built.is_none() {
            cache.free(out);
            return;
        }
        let mut m = *meta;
        m.flags = flags::LOCAL_ORIGIN;
        m.ttl = 64;
        m.src = meta.dst;
        m.dst = meta.src;
        m.sport = meta.dport;
        m.dport = meta.sport;
        m.l3_len = (ip_len + 20) as u16;
        m.l3_offset = 14;
        m.l4_offset = l4_at as u16;
        cx.stats.event(Event::ResetSent);
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
        match resolve(net, &nh, &m, cx.neighbours) {
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

/// Removes VLAN tags in front of `l3` so the frame leaves untagged.
fn untag(pkt: &mut Packet, l3: usize) {
    if l3 > 14 {
        let d = pkt.data_mut();
        d.copy_within(0..12, l3 - 14);
        pkt.strip_front(l3 - 14);
    }
}

fn write_eth(f: &mut [u8], dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    let repr = ethernet::Repr {
        dst_addr: EthernetAddress(dst),
        src_addr: EthernetAddress(src),
        ethertype,
    };
    repr.emit(&mut ethernet::Frame::new_unchecked(
        &mut f[..ethernet::HEADER_LEN],
    ));
}

/// Writes an IPv6 header carrying ICMPv6 after the Ethernet header.
fn write_ipv6(f: &mut [u8], src: u128, dst: u128, payload_len: usize, hop_limit: u8) {
    let repr = ipv6::Repr {
        src_addr: Ipv6Addr::from(src),
        dst_addr: Ipv6Addr::from(dst),
        next_header: ip_proto::ICMPV6,
        payload_len,
        hop_limit,
        traffic_class: 0,
        flow_label: 0,
    };
    repr.emit(&mut ipv6::Packet::new_unchecked(&mut f[14..54]));
}

/// The all-nodes multicast address, ff02::1.
const ALL_NODES: u128 = 0xff02_0000_0000_0000_0000_0000_0000_0001;

/// An NS or NA with a source/target link-layer option: 24 + 8 bytes.
const ND_LEN: usize = 32;

/// Reads a neighbour discovery message after the checks of RFC 4861 §7.1:
/// hop limit 255, not fragmented, a valid checksum, code 0, well-formed
/// options, a unicast target (the last three in `icmpv6::Repr::parse`).
fn parse_nd(d: &[u8], meta: &PacketMeta) -> Option<icmpv6::Repr> {
    if meta.ttl != 255 || meta.flags & flags::FRAGMENT != 0 {
        return None;
    }
    let (l4, end) = (
        meta.l4_offset as usize,
        meta.l3_offset as usize + meta.l3_len as usize,
    );
    let msg = icmpv6::Packet::new_checked(d.get(l4..end)?).ok()?;
    if !msg.verify_checksum(meta.src.to_be_bytes(), meta.dst.to_be_bytes()) {
        return None;
    }
    icmpv6::Repr::parse(&msg).ok()
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
