//! Parse: validate a received frame's headers and fill its metadata.
//!
//! Reads: the frame; the receiving port's configuration (MAC, network).
//! Writes: every [`PacketMeta`] field but `flow_hash` (0: computed on
//! demand with [`flow_hash`]) and `next_hop`.
//! Decides: `Drop` for malformed frames (by reason), frames for another
//! host's MAC and EtherTypes not handled; `Punt(Arp)` for ARP.
//! Next: `route` for IPv4 and IPv6.
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
            if let Err(a) = parse_frame(pkt.data(), pkt.rx_port, cx.tables, meta) {
                burst.action[i] = a;
            }
        }
    }
}

#[inline(always)]
fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

#[inline(always)]
fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

#[inline(always)]
fn drop(r: DropReason) -> Action {
    Action::Drop(r)
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
    if d.len() < 14 {
        return Err(drop(DropReason::Truncated));
    }
    let port = tables.port(rx_port).ok_or(drop(DropReason::UnknownPort))?;
    let mut fl = 0u16;
    if d[0] & 1 != 0 {
        fl |= flags::L2_MULTICAST;
    } else if d[0..6] != port.mac {
        return Err(drop(DropReason::L2OtherHost));
    }
    let mut et = be16(d, 12);
    let mut off = 14usize;
    let mut vlan = 0u16;
    let mut tags = 0;
    while et == ethertype::VLAN || et == ethertype::QINQ || et == ethertype::QINQ_9100 {
        if tags == 2 {
            return Err(drop(DropReason::L2Unsupported));
        }
        if d.len() < off + 4 {
            return Err(drop(DropReason::Truncated));
        }
        vlan = be16(d, off) & 0x0fff;
        et = be16(d, off + 2);
        off += 4;
        tags += 1;
    }
    meta.l3_offset = off as u16;
    meta.vlan = vlan;
    meta.network = port.network;
    meta.sport = 0;
    meta.dport = 0;
    match et {
        ethertype::IPV4 => parse_ipv4(d, off, fl, meta)?,
        ethertype::IPV6 => parse_ipv6(d, off, fl, meta)?,
        ethertype::ARP => {
            meta.family = 0;
            meta.flags = fl;
            return Err(Action::Punt(Punt::Arp));
        }
        _ => return Err(drop(DropReason::L2Unsupported)),
    }
    // The flow hash is computed by the stages that need it (ECMP, load
    // balancing), not for every packet.
    meta.flow_hash = 0;
    Ok(())
}

#[inline(always)]
fn parse_ipv4(d: &[u8], off: usize, mut fl: u16, meta: &mut PacketMeta) -> Result<(), Action> {
    if d.len() < off + 20 {
        return Err(drop(DropReason::Truncated));
    }
    let vihl = d[off];
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if vihl >> 4 != 4 || ihl < 20 {
        return Err(drop(DropReason::Ipv4Header));
    }
    let total = be16(d, off + 2) as usize;
    if total < ihl {
        return Err(drop(DropReason::Ipv4Header));
    }
    if d.len() < off + total {
        return Err(drop(DropReason::Truncated));
    }
    let ok = match <&[u8; 20]>::try_from(&d[off..off + ihl]) {
        Ok(h) => checksum::verify_ipv4_header_20(h),
        Err(_) => checksum::verify(&d[off..off + ihl]),
    };
    if !ok {
        return Err(drop(DropReason::Ipv4Checksum));
    }
    if ihl > 20 {
        fl |= flags::IP_OPTIONS;
    }
    let frag = be16(d, off + 6);
    if frag & 0x4000 != 0 {
        fl |= flags::DONT_FRAGMENT;
    }
    if frag & 0x3fff != 0 {
        fl |= flags::FRAGMENT;
        if frag & 0x1fff != 0 {
            fl |= flags::LATER_FRAGMENT;
        }
    }
    let dst = be32(d, off + 16);
    if dst >> 28 == 0xe {
        fl |= flags::IP_MULTICAST;
    }
    meta.family = 4;
    meta.ttl = d[off + 8];
    meta.proto = d[off + 9];
    meta.src = be32(d, off + 12) as u128;
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
    if d.len() < off + 40 {
        return Err(drop(DropReason::Truncated));
    }
    if d[off] >> 4 != 6 {
        return Err(drop(DropReason::Ipv6Header));
    }
    let payload = be16(d, off + 4) as usize;
    let mut next = d[off + 6];
    if payload == 0 && next == ip_proto::HOPOPTS {
        // A jumbogram (RFC 2675): never valid on a link with a 16-bit length.
        return Err(drop(DropReason::Ipv6Header));
    }
    let end = off + 40 + payload;
    if d.len() < end {
        return Err(drop(DropReason::Truncated));
    }
    let src = u128::from_be_bytes(d[off + 8..off + 24].try_into().unwrap_or([0; 16]));
    let dst = u128::from_be_bytes(d[off + 24..off + 40].try_into().unwrap_or([0; 16]));
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
    meta.ttl = d[off + 7];
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
    let need = match meta.proto {
        ip_proto::TCP => 20,
        ip_proto::UDP => 8,
        ip_proto::SCTP => 12,
        ip_proto::ICMP | ip_proto::ICMPV6 => 8,
        _ => return Ok(()),
    };
    if end < l4 + need || d.len() < l4 + need {
        return Err(drop(DropReason::L4Header));
    }
    match meta.proto {
        ip_proto::ICMP | ip_proto::ICMPV6 => {
            // Echo identifier as the "port": ICMP flows hash by it.
            meta.sport = be16(d, l4 + 4);
            meta.dport = d[l4] as u16;
        }
        ip_proto::TCP => {
            let doff = (d[l4 + 12] >> 4) as usize * 4;
            if doff < 20 || l4 + doff > end {
                return Err(drop(DropReason::L4Header));
            }
            meta.sport = be16(d, l4);
            meta.dport = be16(d, l4 + 2);
        }
        ip_proto::UDP => {
            let len = be16(d, l4 + 4) as usize;
            if len < 8 || l4 + len > end {
                return Err(drop(DropReason::L4Header));
            }
            meta.sport = be16(d, l4);
            meta.dport = be16(d, l4 + 2);
        }
        _ => {
            meta.sport = be16(d, l4);
            meta.dport = be16(d, l4 + 2);
        }
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
