//! One packet builder for tests, fuzz seeds, benchmarks, the demo and the
//! generator: Ethernet, VLAN tags, ARP, IPv4 (with options), IPv6 (with
//! extension headers), TCP, UDP, SCTP, ICMPv4 and ICMPv6, with every length
//! and checksum filled in.
//!
//! ```
//! use sluice_dataplane::wire::builder::PacketBuilder;
//! let frame = PacketBuilder::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
//!     .ipv4([10, 0, 0, 1], [10, 1, 2, 3])
//!     .udp(1234, 53)
//!     .frame_len(64)
//!     .build();
//! assert_eq!(frame.len(), 64);
//! ```

use super::checksum;
use super::ethertype;
use super::ip_proto;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone)]
enum L3 {
    None {
        ethertype: u16,
    },
    Arp {
        op: u16,
        sha: [u8; 6],
        spa: [u8; 4],
        tha: [u8; 6],
        tpa: [u8; 4],
    },
    V4 {
        src: [u8; 4],
        dst: [u8; 4],
        ttl: u8,
        tos: u8,
        ident: u16,
        frag: u16,
        options: Vec<u8>,
    },
    V6 {
        src: [u8; 16],
        dst: [u8; 16],
        hop_limit: u8,
        tclass: u8,
        flow: u32,
        ext: Vec<(u8, Vec<u8>)>,
    },
}

#[derive(Debug, Clone)]
enum L4 {
    None,
    Raw {
        proto: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        options: Vec<u8>,
    },
    Sctp {
        sport: u16,
        dport: u16,
        vtag: u32,
    },
    Icmp {
        icmp_type: u8,
        code: u8,
        rest: u32,
    },
}

/// TCP flag bits for [`PacketBuilder::tcp_full`].
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// Builds one frame. Every setter returns the builder; `build` emits.
#[derive(Debug, Clone)]
pub struct PacketBuilder {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    vlans: Vec<(u16, u16)>,
    l3: L3,
    l4: L4,
    payload: Vec<u8>,
    frame_len: Option<usize>,
    corrupt_l3_checksum: bool,
}

impl PacketBuilder {
    /// A frame from `src_mac` to `dst_mac` (note the order: source first).
    pub fn new(src_mac: [u8; 6], dst_mac: [u8; 6]) -> PacketBuilder {
        PacketBuilder {
            dst_mac,
            src_mac,
            vlans: Vec::new(),
            l3: L3::None { ethertype: 0x88b5 },
            l4: L4::None,
            payload: Vec::new(),
            frame_len: None,
            corrupt_l3_checksum: false,
        }
    }

    /// Adds an 802.1Q tag (outermost first; a second call makes QinQ, with
    /// the outer tag's TPID 0x88a8).
    pub fn vlan(mut self, vid: u16) -> Self {
        self.vlans.push((ethertype::VLAN, vid & 0x0fff));
        if self.vlans.len() == 2 {
            self.vlans[0].0 = ethertype::QINQ;
        }
        self
    }

    /// A frame with a bare EtherType and the payload after it.
    pub fn ethertype(mut self, ethertype: u16) -> Self {
        self.l3 = L3::None { ethertype };
        self
    }

    /// An ARP packet (operation 1 request, 2 reply).
    pub fn arp(mut self, op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Self {
        self.l3 = L3::Arp {
            op,
            sha,
            spa,
            tha,
            tpa,
        };
        self
    }

    pub fn ipv4(mut self, src: impl Into<Ipv4Addr>, dst: impl Into<Ipv4Addr>) -> Self {
        self.l3 = L3::V4 {
            src: src.into().octets(),
            dst: dst.into().octets(),
            ttl: 64,
            tos: 0,
            ident: 0,
            frag: 0x4000,
            options: Vec::new(),
        };
        self
    }

    pub fn ipv6(mut self, src: impl Into<Ipv6Addr>, dst: impl Into<Ipv6Addr>) -> Self {
        self.l3 = L3::V6 {
            src: src.into().octets(),
            dst: dst.into().octets(),
            hop_limit: 64,
            tclass: 0,
            flow: 0,
            ext: Vec::new(),
        };
        self
    }

    /// IPv4 TTL or IPv6 hop limit.
    pub fn ttl(mut self, ttl: u8) -> Self {
        match &mut self.l3 {
            L3::V4 { ttl: t, .. } | L3::V6 { hop_limit: t, .. } => *t = ttl,
            _ => {}
        }
        self
    }

    /// IPv4 identification, flags (DF 0x4000, MF 0x2000) and fragment offset
    /// in 8-byte units, as the 16-bit field.
    pub fn ipv4_frag(mut self, ident: u16, flags_and_offset: u16) -> Self {
        if let L3::V4 { ident: i, frag, .. } = &mut self.l3 {
            *i = ident;
            *frag = flags_and_offset;
        }
        self
    }

    /// IPv4 options (padded to a multiple of 4 with EOL).
    pub fn ipv4_options(mut self, options: &[u8]) -> Self {
        if let L3::V4 { options: o, .. } = &mut self.l3 {
            *o = options.to_vec();
            while !o.len().is_multiple_of(4) {
                o.push(0);
            }
        }
        self
    }

    /// Appends an IPv6 extension header of type `next_header_type` (0, 43,
    /// 44, 60) whose body (after the next-header and length bytes) is
    /// `body`; the body is padded to make the header a multiple of 8 bytes
    /// (the fragment header is always 8).
    pub fn ipv6_ext(mut self, header_type: u8, body: &[u8]) -> Self {
        if let L3::V6 { ext, .. } = &mut self.l3 {
            let mut b = body.to_vec();
            while !(b.len() + 2).is_multiple_of(8) {
                b.push(0);
            }
            ext.push((header_type, b));
        }
        self
    }

    pub fn udp(mut self, sport: u16, dport: u16) -> Self {
        self.l4 = L4::Udp { sport, dport };
        self
    }

    /// A TCP segment with the given flags ([`tcp_flags`]).
    pub fn tcp(mut self, sport: u16, dport: u16, flags: u8) -> Self {
        self.l4 = L4::Tcp {
            sport,
            dport,
            seq: 1,
            ack: 0,
            flags,
            window: 65535,
            options: Vec::new(),
        };
        self
    }

    /// A TCP segment with every header field given.
    #[allow(clippy::too_many_arguments)] // one per header field, as on the wire
    pub fn tcp_full(
        mut self,
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        options: &[u8],
    ) -> Self {
        let mut o = options.to_vec();
        while !o.len().is_multiple_of(4) {
            o.push(0);
        }
        self.l4 = L4::Tcp {
            sport,
            dport,
            seq,
            ack,
            flags,
            window,
            options: o,
        };
        self
    }

    /// An SCTP common header (chunks go in the payload).
    pub fn sctp(mut self, sport: u16, dport: u16, vtag: u32) -> Self {
        self.l4 = L4::Sctp { sport, dport, vtag };
        self
    }

    /// An ICMP (v4) or ICMPv6 message, chosen by the IP family; `rest` is
    /// the header's second word (identifier and sequence, MTU, pointer).
    pub fn icmp(mut self, icmp_type: u8, code: u8, rest: u32) -> Self {
        self.l4 = L4::Icmp {
            icmp_type,
            code,
            rest,
        };
        self
    }

    /// An echo request (ICMP type 8, or ICMPv6 type 128 over IPv6).
    pub fn echo_request(self, ident: u16, seq: u16) -> Self {
        let t = if matches!(self.l3, L3::V6 { .. }) {
            128
        } else {
            8
        };
        self.icmp(t, 0, (ident as u32) << 16 | seq as u32)
    }

    /// An IP payload with this protocol number and no L4 header of ours.
    pub fn ip_proto(mut self, proto: u8) -> Self {
        self.l4 = L4::Raw { proto };
        self
    }

    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    /// Pads the payload (with zeros) so the frame is `len` bytes without
    /// FCS; a frame already longer is left alone.
    pub fn frame_len(mut self, len: usize) -> Self {
        self.frame_len = Some(len);
        self
    }

    /// Writes a wrong IPv4 header checksum (for negative tests).
    pub fn bad_ipv4_checksum(mut self) -> Self {
        self.corrupt_l3_checksum = true;
        self
    }

    fn l4_header_len(&self) -> usize {
        match &self.l4 {
            L4::None | L4::Raw { .. } => 0,
            L4::Udp { .. } | L4::Icmp { .. } => 8,
            L4::Tcp { options, .. } => 20 + options.len(),
            L4::Sctp { .. } => 12,
        }
    }

    fn l3_header_len(&self) -> usize {
        match &self.l3 {
            L3::None { .. } => 0,
            L3::Arp { .. } => 28,
            L3::V4 { options, .. } => 20 + options.len(),
            L3::V6 { ext, .. } => 40 + ext.iter().map(|(_, b)| b.len() + 2).sum::<usize>(),
        }
    }

    /// The frame's length once built.
    pub fn len(&self) -> usize {
        let base = 14
            + 4 * self.vlans.len()
            + self.l3_header_len()
            + self.l4_header_len()
            + self.payload.len();
        base.max(self.frame_len.unwrap_or(0))
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Emits the frame.
    pub fn build(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.len()];
        self.write(&mut out);
        out
    }

    /// Emits the frame into `out`, which must be at least [`len`](Self::len)
    /// bytes; returns the length.
    pub fn write(&self, out: &mut [u8]) -> usize {
        let total = self.len();
        let out = &mut out[..total];
        let header_end = 14 + 4 * self.vlans.len() + self.l3_header_len() + self.l4_header_len();
        let payload_len = total - header_end;
        out[0..6].copy_from_slice(&self.dst_mac);
        out[6..12].copy_from_slice(&self.src_mac);
        let mut off = 12;
        for (tpid, vid) in &self.vlans {
            out[off..off + 2].copy_from_slice(&tpid.to_be_bytes());
            out[off + 2..off + 4].copy_from_slice(&vid.to_be_bytes());
            off += 4;
        }
        let et = match &self.l3 {
            L3::None { ethertype } => *ethertype,
            L3::Arp { .. } => ethertype::ARP,
            L3::V4 { .. } => ethertype::IPV4,
            L3::V6 { .. } => ethertype::IPV6,
        };
        out[off..off + 2].copy_from_slice(&et.to_be_bytes());
        off += 2;
        let l3 = off;
        let l4 = l3 + self.l3_header_len();
        let l4_len = self.l4_header_len() + payload_len;
        // Payload first, so checksums cover it.
        let pl = l4 + self.l4_header_len();
        out[pl..pl + self.payload.len()].copy_from_slice(&self.payload);
        out[pl + self.payload.len()..].fill(0);
        let proto = match &self.l4 {
            L4::None => ip_proto::IPV6_NONXT,
            L4::Raw { proto } => *proto,
            L4::Udp { .. } => ip_proto::UDP,
            L4::Tcp { .. } => ip_proto::TCP,
            L4::Sctp { .. } => ip_proto::SCTP,
            L4::Icmp { .. } => {
                if matches!(self.l3, L3::V6 { .. }) {
                    ip_proto::ICMPV6
                } else {
                    ip_proto::ICMP
                }
            }
        };
        match &self.l3 {
            L3::None { .. } => {}
            L3::Arp {
                op,
                sha,
                spa,
                tha,
                tpa,
            } => {
                let a = &mut out[l3..l3 + 28];
                a[0..2].copy_from_slice(&1u16.to_be_bytes());
                a[2..4].copy_from_slice(&ethertype::IPV4.to_be_bytes());
                a[4] = 6;
                a[5] = 4;
                a[6..8].copy_from_slice(&op.to_be_bytes());
                a[8..14].copy_from_slice(sha);
                a[14..18].copy_from_slice(spa);
                a[18..24].copy_from_slice(tha);
                a[24..28].copy_from_slice(tpa);
            }
            L3::V4 {
                src,
                dst,
                ttl,
                tos,
                ident,
                frag,
                options,
            } => {
                let hl = 20 + options.len();
                let h = &mut out[l3..l3 + hl];
                h[0] = 0x40 | (hl / 4) as u8;
                h[1] = *tos;
                h[2..4].copy_from_slice(&((hl + l4_len) as u16).to_be_bytes());
                h[4..6].copy_from_slice(&ident.to_be_bytes());
                h[6..8].copy_from_slice(&frag.to_be_bytes());
                h[8] = *ttl;
                h[9] = proto;
                h[10..12].fill(0);
                h[12..16].copy_from_slice(src);
                h[16..20].copy_from_slice(dst);
                h[20..].copy_from_slice(options);
                let mut c = checksum::checksum(h);
                if self.corrupt_l3_checksum {
                    c ^= 0x5555;
                }
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            L3::V6 {
                src,
                dst,
                hop_limit,
                tclass,
                flow,
                ext,
            } => {
                let ext_len: usize = ext.iter().map(|(_, b)| b.len() + 2).sum();
                let h = &mut out[l3..l3 + 40];
                let vtf = 6u32 << 28 | (*tclass as u32) << 20 | (flow & 0xfffff);
                h[0..4].copy_from_slice(&vtf.to_be_bytes());
                h[4..6].copy_from_slice(&((ext_len + l4_len) as u16).to_be_bytes());
                h[6] = ext.first().map_or(proto, |(t, _)| *t);
                h[7] = *hop_limit;
                h[8..24].copy_from_slice(src);
                h[24..40].copy_from_slice(dst);
                let mut e = l3 + 40;
                for (i, (_, body)) in ext.iter().enumerate() {
                    let next = ext.get(i + 1).map_or(proto, |(t, _)| *t);
                    out[e] = next;
                    out[e + 1] = ((body.len() + 2) / 8 - 1) as u8;
                    out[e + 2..e + 2 + body.len()].copy_from_slice(body);
                    e += body.len() + 2;
                }
            }
        }
        let pseudo = match &self.l3 {
            L3::V4 { src, dst, .. } => checksum::pseudo_header_v4(*src, *dst, proto, l4_len as u16),
            L3::V6 { src, dst, .. } => checksum::pseudo_header_v6(*src, *dst, proto, l4_len as u32),
            _ => 0,
        };
        let is_v6 = matches!(self.l3, L3::V6 { .. });
        match &self.l4 {
            L4::None | L4::Raw { .. } => {}
            L4::Udp { sport, dport } => {
                let u = &mut out[l4..l4 + l4_len];
                u[0..2].copy_from_slice(&sport.to_be_bytes());
                u[2..4].copy_from_slice(&dport.to_be_bytes());
                u[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                u[6..8].fill(0);
                let mut c = !checksum::fold(checksum::sum(u, pseudo));
                if c == 0 {
                    c = 0xffff;
                }
                u[6..8].copy_from_slice(&c.to_be_bytes());
            }
            L4::Tcp {
                sport,
                dport,
                seq,
                ack,
                flags,
                window,
                options,
            } => {
                let t = &mut out[l4..l4 + l4_len];
                t[0..2].copy_from_slice(&sport.to_be_bytes());
                t[2..4].copy_from_slice(&dport.to_be_bytes());
                t[4..8].copy_from_slice(&seq.to_be_bytes());
                t[8..12].copy_from_slice(&ack.to_be_bytes());
                t[12] = (((20 + options.len()) / 4) as u8) << 4;
                t[13] = *flags;
                t[14..16].copy_from_slice(&window.to_be_bytes());
                t[16..20].fill(0);
                t[20..20 + options.len()].copy_from_slice(options);
                let c = !checksum::fold(checksum::sum(t, pseudo));
                t[16..18].copy_from_slice(&c.to_be_bytes());
            }
            L4::Sctp { sport, dport, vtag } => {
                let s = &mut out[l4..l4 + l4_len];
                s[0..2].copy_from_slice(&sport.to_be_bytes());
                s[2..4].copy_from_slice(&dport.to_be_bytes());
                s[4..8].copy_from_slice(&vtag.to_be_bytes());
                s[8..12].fill(0);
                let c = crc32c(s);
                // RFC 4960 appendix B: the CRC is stored in network order
                // of its reflected value, i.e. little-endian bytes.
                s[8..12].copy_from_slice(&c.to_le_bytes());
            }
            L4::Icmp {
                icmp_type,
                code,
                rest,
            } => {
                let m = &mut out[l4..l4 + l4_len];
                m[0] = *icmp_type;
                m[1] = *code;
                m[2..4].fill(0);
                m[4..8].copy_from_slice(&rest.to_be_bytes());
                let c = if is_v6 {
                    !checksum::fold(checksum::sum(m, pseudo))
                } else {
                    checksum::checksum(m)
                };
                m[2..4].copy_from_slice(&c.to_be_bytes());
            }
        }
        total
    }
}

/// CRC32c (Castagnoli), bitwise; the builder is not on the hot path.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    #[test]
    fn udp_v4_golden() {
        let f = PacketBuilder::new(A, B)
            .ipv4([192, 168, 0, 1], [192, 168, 0, 199])
            .udp(1, 2)
            .payload(b"hi")
            .build();
        assert_eq!(f.len(), 14 + 20 + 8 + 2);
        assert_eq!(&f[0..6], &B);
        assert_eq!(&f[6..12], &A);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(f[14], 0x45);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 30);
        assert!(checksum::verify(&f[14..34]));
        // UDP checksum verifies over the pseudo-header.
        let p = checksum::pseudo_header_v4([192, 168, 0, 1], [192, 168, 0, 199], 17, 10);
        assert_eq!(checksum::fold(checksum::sum(&f[34..], p)), 0xffff);
    }

    #[test]
    fn frame_len_pads_and_lengths_follow() {
        let f = PacketBuilder::new(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .udp(1, 2)
            .frame_len(64)
            .build();
        assert_eq!(f.len(), 64);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]) as usize, 64 - 14);
        assert_eq!(u16::from_be_bytes([f[38], f[39]]) as usize, 64 - 14 - 20);
    }

    #[test]
    fn v6_with_extension_headers_chains_next_header() {
        let f = PacketBuilder::new(A, B)
            .ipv6(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED)
            .ipv6_ext(ip_proto::HOPOPTS, &[1, 4, 0, 0, 0, 0])
            .ipv6_ext(ip_proto::IPV6_FRAG, &[0, 0, 0, 0, 0, 1])
            .tcp(80, 8080, tcp_flags::SYN)
            .build();
        assert_eq!(f[14 + 6], ip_proto::HOPOPTS);
        assert_eq!(f[54], ip_proto::IPV6_FRAG);
        assert_eq!(f[55], 0);
        assert_eq!(f[62], ip_proto::TCP);
        assert_eq!(u16::from_be_bytes([f[18], f[19]]), 16 + 20);
    }

    #[test]
    fn sctp_crc32c_matches_rfc3720_vector() {
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
    }

    #[test]
    fn vlan_and_qinq_tags() {
        let f = PacketBuilder::new(A, B)
            .vlan(100)
            .vlan(200)
            .ipv4([1, 1, 1, 1], [2, 2, 2, 2])
            .build();
        assert_eq!(&f[12..14], &[0x88, 0xa8]);
        assert_eq!(&f[14..16], &100u16.to_be_bytes());
        assert_eq!(&f[16..18], &[0x81, 0x00]);
        assert_eq!(&f[18..20], &200u16.to_be_bytes());
        assert_eq!(&f[20..22], &[0x08, 0x00]);
    }
}
