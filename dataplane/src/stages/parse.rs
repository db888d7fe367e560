//! Parse: validate a received frame's headers and fill its metadata.
//!
//! Reads: the frame; the receiving port's configuration (MAC, network).
//! Writes: every [`PacketMeta`] field but `flow_hash` (0: computed on
//! demand with [`flow_hash`]) and `next_hop`.
//! Decides: `Drop` for malformed frames (by reason), frames for another
//! host's MAC and EtherTypes not handled; `Punt(Arp)` for ARP.
//! Next: `route` for IPv4 and IPv6 (whose IPv4 FIB slot parse prefetches).
//!
//! Checks are those RFC 1812 §5.2.2 asks of a router: the IPv4 version,
//! header length, total length against the frame, and the header checksum;
//! IPv6 version and payload length; extension-header chains are walked with
//! a bound. L4 headers of first fragments must be whole (later stages read
//! ports), which also drops "tiny fragment" attacks.

use super::{flags, Action, Burst, Context, PacketMeta, Punt, Stage};
use crate::stats::DropReason;
use crate::tables::Tables;
use crate::wire::{checksum, ethertype, ip_proto};

/// The parse stage.
#[derive(Debug, Default, Clone, Copy)]
pub struct Parse;

impl Stage for Parse {
    #[inline]
    fn process(&mut self, cx: &Context<'_>, burst: &mut Burst) {
        let n = burst.pkts.len();
        for i in 0..n {
            if burst.action[i] != Action::Continue {
                continue;
            }
            let pkt = &burst.pkts[i];
            let meta = &mut burst.meta[i];
            match parse_frame(pkt.data(), pkt.rx_port, cx.tables, meta) {
                Ok(()) => {
                    // Start the route lookup's memory access now, so it has
                    // landed by the time `route` reaches this packet.
                    if meta.family == 4 {
                        if let Some(net) = cx.tables.networks.get(meta.network as usize) {
                            net.fib4.prefetch(meta.dst as u32);
                        }
                    }
                }
                Err(a) => burst.action[i] = a,
            }
        }
    }
}

#[inline(always)]
fn drop(r: DropReason) -> Action {
    Action::Drop(r)
}

#[inline(always)]
fn is_vlan_tpid(et: u16) -> bool {
    et == ethertype::VLAN || et == ethertype::QINQ || et == ethertype::QINQ_9100
}

/// The fixed-size header at `off`, if the frame holds it. Reading fields
/// from a `&[u8; N]` needs no further bounds checks.
#[inline(always)]
fn header<const N: usize>(d: &[u8], off: usize) -> Option<&[u8; N]> {
    d.get(off..)?.first_chunk::<N>()
}

/// Parses one frame received on `rx_port`. `Err` carries the decision for a
/// frame that goes no further down the fast path.
#[inline(always)]
pub fn parse_frame(
    d: &[u8],
    rx_port: u16,
    tables: &Tables,
    meta: &mut PacketMeta,
) -> Result<(), Action> {
    let Some(eth) = d.first_chunk::<14>() else {
        return Err(drop(DropReason::Truncated));
    };
    let port = tables.port(rx_port).ok_or(drop(DropReason::UnknownPort))?;
    let mut fl = 0u16;
    if eth[0] & 1 != 0 {
        fl |= flags::L2_MULTICAST;
    } else if eth[0..6] != port.mac {
        return Err(drop(DropReason::L2OtherHost));
    }
    meta.network = port.network;
    match parse_headers(d, fl, meta)? {
        ethertype::IPV4 | ethertype::IPV6 => Ok(()),
        ethertype::ARP => Err(Action::Punt(Punt::Arp)),
        _ => Err(drop(DropReason::L2Unsupported)),
    }
}

/// Reads a frame's headers after its Ethernet addresses: up to two VLAN
/// tags, then IPv4 or IPv6 with the L4 ports, into `meta` (all but
/// `network` and `next_hop`); `fl` holds the flags found so far. Returns
/// the (inner) EtherType; a frame that is not IP gets `family` 0. Used by
/// [`parse_frame`] and by the Ethernet chain stage, which reads frames
/// that are not addressed to the port.
#[inline(always)]
pub fn parse_headers(d: &[u8], fl: u16, meta: &mut PacketMeta) -> Result<u16, Action> {
    let Some(eth) = d.first_chunk::<14>() else {
        return Err(drop(DropReason::Truncated));
    };
    let mut et = u16::from_be_bytes([eth[12], eth[13]]);
    let mut off = 14usize;
    let mut vlan = 0u16;
    if is_vlan_tpid(et) {
        (off, et, vlan) = parse_vlan_tags(d, et)?;
    }
    meta.l3_offset = off as u16;
    meta.vlan = vlan;
    meta.sport = 0;
    meta.dport = 0;
    // The flow hash is computed by the stages that need it (ECMP, load
    // balancing), not for every packet.
    meta.flow_hash = 0;
    meta.depart_ns = 0;
    match et {
        ethertype::IPV4 => parse_ipv4(d, off, fl, meta)?,
        ethertype::IPV6 => parse_ipv6(d, off, fl, meta)?,
        _ => {
            meta.family = 0;
            meta.flags = fl;
        }
    }
    Ok(et)
}

/// Walks up to two VLAN tags; returns the L3 offset, the inner EtherType
/// and the innermost VLAN id.
#[cold]
fn parse_vlan_tags(d: &[u8], mut et: u16) -> Result<(usize, u16, u16), Action> {
    let mut off = 14;
    let mut vlan = 0;
    let mut tags = 0;
    while is_vlan_tpid(et) {
        if tags == 2 {
            return Err(drop(DropReason::L2Unsupported));
        }
        let Some(tag) = header::<4>(d, off) else {
            return Err(drop(DropReason::Truncated));
        };
        vlan = u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff;
        et = u16::from_be_bytes([tag[2], tag[3]]);
        off += 4;
        tags += 1;
    }
    Ok((off, et, vlan))
}

#[inline(always)]
fn parse_ipv4(d: &[u8], off: usize, mut fl: u16, meta: &mut PacketMeta) -> Result<(), Action> {
    let Some(h) = header::<20>(d, off) else {
        return Err(drop(DropReason::Truncated));
    };
    let vihl = h[0];
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if vihl >> 4 != 4 || ihl < 20 {
        return Err(drop(DropReason::Ipv4Header));
    }
    let total = u16::from_be_bytes([h[2], h[3]]) as usize;
    if total < ihl {
        return Err(drop(DropReason::Ipv4Header));
    }
    if d.len() < off + total {
        return Err(drop(DropReason::Truncated));
    }
    let ok = if ihl == 20 {
        checksum::verify_ipv4_header_20(h)
    } else {
        fl |= flags::IP_OPTIONS;
        checksum::verify(&d[off..off + ihl])
    };
    if !ok {
        return Err(drop(DropReason::Ipv4Checksum));
    }
    let frag = u16::from_be_bytes([h[6], h[7]]);
    if frag & 0x4000 != 0 {
        fl |= flags::DONT_FRAGMENT;
    }
    if frag & 0x3fff != 0 {
        fl |= flags::FRAGMENT;
        if frag & 0x1fff != 0 {
            fl |= flags::LATER_FRAGMENT;
        }
    }
    let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
    if dst >> 28 == 0xe {
        fl |= flags::IP_MULTICAST;
    }
    meta.family = 4;
    meta.ttl = h[8];
    meta.proto = h[9];
    meta.src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]) as u128;
    meta.dst = dst as u128;
    meta.l3_len = total as u16;
    meta.l4_offset = (off + ihl) as u16;
    meta.flags = fl;
    if fl & flags::LATER_FRAGMENT == 0 {
        parse_l4(d, off + ihl, off + total, meta)?;
    }
    Ok(())
}

#[inline(always)]
fn parse_ipv6(d: &[u8], off: usize, mut fl: u16, meta: &mut PacketMeta) -> Result<(), Action> {
    let Some(h) = header::<40>(d, off) else {
        return Err(drop(DropReason::Truncated));
    };
    if h[0] >> 4 != 6 {
        return Err(drop(DropReason::Ipv6Header));
    }
    let payload = u16::from_be_bytes([h[4], h[5]]) as usize;
    let mut next = h[6];
    if payload == 0 && next == ip_proto::HOPOPTS {
        // A jumbogram (RFC 2675): never valid on a link with a 16-bit length.
        return Err(drop(DropReason::Ipv6Header));
    }
    let end = off + 40 + payload;
    if d.len() < end {
        return Err(drop(DropReason::Truncated));
    }
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&h[at..at + 16]);
        u128::from_be_bytes(a)
    };
    let (src, dst) = (addr(8), addr(24));
    if dst >> 120 == 0xff {
        fl |= flags::IP_MULTICAST;
    }
    let mut l4 = off + 40;
    if is_extension_header(next) {
        let chain = walk_extensions(next, &d[l4..end])?;
        fl |= flags::IP_OPTIONS;
        if let Some(f) = chain.fragment {
            fl |= flags::FRAGMENT;
            if f.offset != 0 {
                fl |= flags::LATER_FRAGMENT;
            }
        }
        next = chain.upper_protocol;
        l4 += chain.upper_offset;
    }
    meta.family = 6;
    meta.ttl = h[7];
    meta.proto = next;
    meta.src = src;
    meta.dst = dst;
    meta.l3_len = (40 + payload) as u16;
    meta.l4_offset = l4 as u16;
    meta.flags = fl;
    if fl & flags::LATER_FRAGMENT == 0 {
        parse_l4(d, l4, end, meta)?;
    }
    Ok(())
}

#[inline(always)]
fn is_extension_header(nh: u8) -> bool {
    matches!(
        nh,
        ip_proto::HOPOPTS
            | ip_proto::IPV6_ROUTE
            | ip_proto::IPV6_FRAG
            | ip_proto::IPV6_OPTS
            | ip_proto::AH
    )
}

#[cold]
fn walk_extensions(first: u8, buf: &[u8]) -> Result<crate::wire::ipv6ext::ExtChain, Action> {
    crate::wire::ipv6ext::walk(first, buf).map_err(|e| match e {
        crate::wire::Error::Truncated => drop(DropReason::Truncated),
        _ => drop(DropReason::Ipv6ExtHeader),
    })
}

/// Reads the L4 ports (or ICMP identifiers) and checks the header is whole.
#[inline(always)]
fn parse_l4(d: &[u8], l4: usize, end: usize, meta: &mut PacketMeta) -> Result<(), Action> {
    // Only the IP payload counts: link padding after `end` is not L4 data.
    let payload = &d[..end.min(d.len())];
    match meta.proto {
        ip_proto::UDP => {
            let Some(u) = header::<8>(payload, l4) else {
                return Err(drop(DropReason::L4Header));
            };
            let len = u16::from_be_bytes([u[4], u[5]]) as usize;
            if len < 8 || l4 + len > end {
                return Err(drop(DropReason::L4Header));
            }
            meta.sport = u16::from_be_bytes([u[0], u[1]]);
            meta.dport = u16::from_be_bytes([u[2], u[3]]);
        }
        ip_proto::TCP => {
            let Some(t) = header::<20>(payload, l4) else {
                return Err(drop(DropReason::L4Header));
            };
            let doff = (t[12] >> 4) as usize * 4;
            if doff < 20 || l4 + doff > end {
                return Err(drop(DropReason::L4Header));
            }
            meta.sport = u16::from_be_bytes([t[0], t[1]]);
            meta.dport = u16::from_be_bytes([t[2], t[3]]);
        }
        ip_proto::SCTP => {
            let Some(s) = header::<12>(payload, l4) else {
                return Err(drop(DropReason::L4Header));
            };
            meta.sport = u16::from_be_bytes([s[0], s[1]]);
            meta.dport = u16::from_be_bytes([s[2], s[3]]);
        }
        ip_proto::ICMP | ip_proto::ICMPV6 => {
            let Some(m) = header::<8>(payload, l4) else {
                return Err(drop(DropReason::L4Header));
            };
            // Echo identifier as the "port": ICMP flows hash by it.
            meta.sport = u16::from_be_bytes([m[4], m[5]]);
            meta.dport = m[0] as u16;
        }
        _ => {}
    }
    Ok(())
}

/// A fast, well-mixed hash of the 5-tuple.
#[inline(always)]
pub fn flow_hash(m: &PacketMeta) -> u32 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let a = (m.src as u64) ^ ((m.src >> 64) as u64).rotate_left(21);
    let b = (m.dst as u64) ^ ((m.dst >> 64) as u64).rotate_left(43);
    let p = ((m.sport as u64) << 32) | ((m.dport as u64) << 16) | m.proto as u64;
    let mut h = a.wrapping_mul(K) ^ b.rotate_left(32) ^ p;
    h = (h ^ (h >> 31)).wrapping_mul(K);
    (h >> 32) as u32
}
