//! IPv6 fixed header (RFC 8200 §3).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-------+---------------+---------------------------------------+
//! |Version| Traffic Class |              Flow Label               |
//! +-------+---------------+-------+---------------+---------------+
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! +-------------------------------+---------------+---------------+
//! |                   Source Address (128 bits)                   |
//! |                Destination Address (128 bits)                 |
//! +---------------------------------------------------------------+
//! ```
//!
//! The payload starts with any extension headers; [`super::ipv6ext::walk`]
//! finds the upper-layer header behind them. Jumbograms (payload length 0
//! with a hop-by-hop Jumbo Payload option, RFC 2675) are not supported.

use core::fmt;
use std::net::Ipv6Addr;

use super::{ip_proto, Error, Result};

mod field {
    use core::ops::Range;

    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

const FLOW_LABEL_MASK: u32 = 0x000f_ffff;

/// A zero-copy view of an IPv6 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without any checks.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`Packet::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks, in order: 40 bytes present (`Truncated`), version 6
    /// (`Malformed`), not a jumbogram (`Unsupported`), 40 + payload length
    /// within the buffer (`Truncated`).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed);
        }
        let payload_len = self.payload_len() as usize;
        if payload_len == 0 && self.next_header() == ip_proto::HOPOPTS {
            return Err(Error::Unsupported);
        }
        if HEADER_LEN + payload_len > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn first_word(&self) -> u32 {
        let d = self.buffer.as_ref();
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.first_word() >> 20) as u8
    }

    /// The DSCP, the upper six bits of the traffic class.
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.traffic_class() >> 2
    }

    /// The ECN, the lower two bits of the traffic class.
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.traffic_class() & 0x03
    }

    /// The 20-bit flow label.
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.first_word() & FLOW_LABEL_MASK
    }

    /// Bytes after the fixed header, extension headers included.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[field::LENGTH.start], d[field::LENGTH.start + 1]])
    }

    /// The first extension header's or the upper layer's protocol number.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        Ipv6Addr::from(a)
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        Ipv6Addr::from(a)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The `payload_len` bytes after the fixed header (link padding excluded).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + self.payload_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn set_first_word(&mut self, word: u32) {
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&word.to_be_bytes());
    }

    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let word = (self.first_word() & 0x0fff_ffff) | (((version & 0x0f) as u32) << 28);
        self.set_first_word(word);
    }

    #[inline]
    pub fn set_traffic_class(&mut self, tc: u8) {
        let word = (self.first_word() & 0xf00f_ffff) | ((tc as u32) << 20);
        self.set_first_word(word);
    }

    /// Sets the flow label (low 20 bits of `label`).
    #[inline]
    pub fn set_flow_label(&mut self, label: u32) {
        let word = (self.first_word() & !FLOW_LABEL_MASK) | (label & FLOW_LABEL_MASK);
        self.set_first_word(word);
    }

    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    #[inline]
    pub fn set_next_header(&mut self, next_header: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = next_header;
    }

    #[inline]
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Decrements the hop limit and returns the new value. There is no
    /// header checksum to patch. A hop limit of 0 is left alone (and 0
    /// returned): the caller handles expired packets before forwarding.
    #[inline]
    pub fn decrement_hop_limit(&mut self) -> u8 {
        let hop_limit = &mut self.buffer.as_mut()[field::HOP_LIMIT];
        *hop_limit = hop_limit.saturating_sub(1);
        *hop_limit
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + self.payload_len() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A parsed IPv6 fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    /// The first extension header's or the upper layer's protocol number.
    pub next_header: u8,
    /// Bytes after the fixed header, extension headers included.
    pub payload_len: usize,
    pub hop_limit: u8,
    pub traffic_class: u8,
    /// 20 bits; emit uses the low 20 bits.
    pub flow_label: u32,
}

impl Repr {
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len() as usize,
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// Length of the fixed header (what emit writes).
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes all 40 header bytes. `payload_len` must fit in 16 bits.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        debug_assert!(self.payload_len <= u16::MAX as usize);
        let word = (6u32 << 28)
            | ((self.traffic_class as u32) << 20)
            | (self.flow_label & FLOW_LABEL_MASK);
        packet.set_first_word(word);
        packet.set_payload_len(self.payload_len as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IPv6 {} > {} nxt {} len {} hlim {}",
            self.src_addr, self.dst_addr, self.next_header, self.payload_len, self.hop_limit
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // An ICMPv6 echo request 2001:db8::1 -> 2001:db8::2 with 8 bytes of
    // data (payload 16 = 8 ICMPv6 header + 8 data), hop limit 64, traffic
    // class 0xb8 (DSCP 46/EF, ECN 0) and flow label 0x12345:
    // 6 << 28 | 0xb8 << 20 | 0x12345 = 0x6b812345.
    const ECHO_REQUEST: [u8; 56] = [
        0x6b, 0x81, 0x23, 0x45, // version, traffic class, flow label
        0x00, 0x10, 0x3a, 0x40, // payload length 16, ICMPv6, hop limit 64
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // src 2001:db8::1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // dst 2001:db8::2
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, //
        0x80, 0x00, 0x80, 0x75, 0x12, 0x34, 0x00, 0x01, // echo request, id 0x1234, seq 1
        0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, // "abcdefgh"
    ];

    fn echo_repr() -> Repr {
        Repr {
            src_addr: "2001:db8::1".parse().unwrap(),
            dst_addr: "2001:db8::2".parse().unwrap(),
            next_header: ip_proto::ICMPV6,
            payload_len: 16,
            hop_limit: 64,
            traffic_class: 0xb8,
            flow_label: 0x12345,
        }
    }

    #[test]
    fn golden_view() {
        let p = Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!((p.dscp(), p.ecn()), (46, 0));
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 16);
        assert_eq!(p.next_header(), 58);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload(), &ECHO_REQUEST[40..]);
        // The ICMPv6 checksum (0x8075, computed independently) verifies over
        // the pseudo-header, so the golden bytes are a consistent packet.
        let pseudo = crate::wire::checksum::pseudo_header_v6(
            ECHO_REQUEST[8..24].try_into().unwrap(),
            ECHO_REQUEST[24..40].try_into().unwrap(),
            ip_proto::ICMPV6,
            16,
        );
        let sum = crate::wire::checksum::sum(p.payload(), pseudo);
        assert_eq!(crate::wire::checksum::fold(sum), 0xffff);
    }

    #[test]
    fn golden_parse_and_emit() {
        let p = Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        let repr = Repr::parse(&p).unwrap();
        assert_eq!(repr, echo_repr());
        assert_eq!(repr.buffer_len(), 56);
        let mut buf = [0xa5u8; 56];
        buf[40..].copy_from_slice(&ECHO_REQUEST[40..]);
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, ECHO_REQUEST);
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..ECHO_REQUEST.len() {
            assert_eq!(
                Packet::new_checked(&ECHO_REQUEST[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
    }

    #[test]
    fn bogus_lengths_and_versions() {
        let mut b = ECHO_REQUEST;
        b[5] = 17; // payload length one past the buffer
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Truncated);
        b[4] = 0xff;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Truncated);

        let mut b = ECHO_REQUEST;
        b[0] = 0x4b;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);

        // Jumbogram: payload length 0 with a hop-by-hop header.
        let mut b = ECHO_REQUEST;
        b[4] = 0;
        b[5] = 0;
        b[6] = ip_proto::HOPOPTS;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Unsupported);

        // Payload length 0 otherwise is an empty payload; padding is ignored.
        b[6] = ip_proto::IPV6_NONXT;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.payload().is_empty());
        assert_eq!(Repr::parse(&p).unwrap().payload_len, 0);
    }

    #[test]
    fn setters_and_hop_limit() {
        let mut buf = ECHO_REQUEST;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_flow_label(0xfff_ffff);
        assert_eq!(p.flow_label(), 0xfffff);
        assert_eq!(p.traffic_class(), 0xb8);
        p.set_traffic_class(0x01);
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 1, 0xfffff)
        );
        p.set_version(6);
        p.set_payload_len(8);
        p.set_next_header(ip_proto::UDP);
        p.set_hop_limit(2);
        assert_eq!(p.decrement_hop_limit(), 1);
        assert_eq!(p.decrement_hop_limit(), 0);
        assert_eq!(p.decrement_hop_limit(), 0);
        p.set_src_addr(Ipv6Addr::LOCALHOST);
        p.set_dst_addr(Ipv6Addr::UNSPECIFIED);
        p.payload_mut().fill(0);
        assert_eq!(&buf[..8], &[0x60, 0x1f, 0xff, 0xff, 0x00, 0x08, 0x11, 0x00]);
        assert_eq!(buf[23], 1);
        assert_eq!(&buf[24..40], &[0; 16]);
        assert_eq!(&buf[40..48], &[0; 8]);
        assert_eq!(&buf[48..], &ECHO_REQUEST[48..]);
    }

    #[test]
    fn display() {
        assert_eq!(
            echo_repr().to_string(),
            "IPv6 2001:db8::1 > 2001:db8::2 nxt 58 len 16 hlim 64"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = p.payload();
                let _ = Repr::parse(&p).unwrap();
            }
        }

        #[test]
        fn plausible_headers_never_panic(
            payload_len in 0u16..64, next_header in any::<u8>(),
            rest in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut bytes = vec![0x60, 0, 0, 0];
            bytes.extend_from_slice(&payload_len.to_be_bytes());
            bytes.push(next_header);
            bytes.extend_from_slice(&rest);
            if let Ok(mut p) = Packet::new_checked(&mut bytes[..]) {
                let _ = p.decrement_hop_limit();
                let _ = p.payload_mut();
                let p = Packet::new_checked(&bytes[..]).unwrap();
                prop_assert_eq!(p.payload().len(), payload_len as usize);
                let _ = Repr::parse(&p).unwrap();
            }
        }

        #[test]
        fn emit_then_parse_round_trips(
            src in any::<u128>(), dst in any::<u128>(), next_header in 1u8..=255,
            payload_len in 0usize..64, hop_limit in any::<u8>(), traffic_class in any::<u8>(),
            flow_label in 0u32..0x10_0000,
        ) {
            let repr = Repr {
                src_addr: Ipv6Addr::from(src),
                dst_addr: Ipv6Addr::from(dst),
                next_header, payload_len, hop_limit, traffic_class, flow_label,
            };
            let mut buf = vec![0xa5u8; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(), repr);
        }
    }
}
