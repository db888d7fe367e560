//! IPv4 header (RFC 791), with options.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-------+-------+-----------+---+-------------------------------+
//! |Version|  IHL  |   DSCP    |ECN|          Total Length         |
//! +-------+-------+-----------+---+-+-+-+-------------------------+
//! |         Identification        |R|D|M|     Fragment Offset     |
//! +---------------+---------------+-+-+-+-------------------------+
//! |      TTL      |    Protocol   |        Header Checksum        |
//! +---------------+---------------+-------------------------------+
//! |                        Source Address                         |
//! |                      Destination Address                      |
//! |                    Options (IHL*4 - 20 bytes)                 |
//! +---------------------------------------------------------------+
//! ```
//!
//! [`Packet::new_checked`] validates version, IHL and total length against
//! the buffer; the payload is `header_len..total_len`, so link-layer padding
//! after the datagram is never mistaken for payload. [`Repr::parse`] also
//! verifies the header checksum and the option structure.

use core::fmt;
use std::net::Ipv4Addr;

use super::{checksum, Error, Result};

mod field {
    use core::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
    pub const OPTIONS_START: usize = 20;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = field::OPTIONS_START;
/// Longest header: IHL 15.
pub const MAX_HEADER_LEN: usize = 60;
/// Most option bytes a header can carry.
pub const MAX_OPTIONS_LEN: usize = MAX_HEADER_LEN - HEADER_LEN;

const FLAG_RESERVED: u16 = 0x8000;
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// Option type octets (IANA "IP Option Numbers") Sluice names.
pub mod option_kind {
    pub const END_OF_LIST: u8 = 0;
    pub const NO_OPERATION: u8 = 1;
    pub const RECORD_ROUTE: u8 = 7;
    pub const TIMESTAMP: u8 = 68;
    pub const LOOSE_SOURCE_ROUTE: u8 = 131;
    pub const STRICT_SOURCE_ROUTE: u8 = 137;
    pub const ROUTER_ALERT: u8 = 148;
}

/// A zero-copy view of an IPv4 packet.
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

    /// Checks, in order: 20 bytes present (`Truncated`), version 4
    /// (`Malformed`), IHL ≥ 5 (`Malformed`), header within the buffer
    /// (`Truncated`), total length ≥ header length (`Malformed`), total
    /// length within the buffer (`Truncated`).
    ///
    /// Setting the header or total length afterwards invalidates the check.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::Malformed);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if header_len > len {
            return Err(Error::Truncated);
        }
        let total_len = self.total_len() as usize;
        if total_len < header_len {
            return Err(Error::Malformed);
        }
        if total_len > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn read_u16(&self, at: usize) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[at], d[at + 1]])
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[field::VER_IHL] & 0x0f) as usize) * 4
    }

    /// Differentiated services code point (0..=63).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification (0..=3).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Header plus payload, in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        self.read_u16(field::LENGTH.start)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        self.read_u16(field::IDENT.start)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.read_u16(field::FLG_OFF.start) & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.read_u16(field::FLG_OFF.start) & FLAG_MF != 0
    }

    /// The reserved ("evil") flag bit; must be zero on the wire.
    #[inline]
    pub fn reserved_flag(&self) -> bool {
        self.read_u16(field::FLG_OFF.start) & FLAG_RESERVED != 0
    }

    /// Fragment offset in bytes (the field × 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.read_u16(field::FLG_OFF.start) & OFFSET_MASK) << 3
    }

    /// Whether this is a fragment (MF set or a non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.read_u16(field::FLG_OFF.start) & (FLAG_MF | OFFSET_MASK) != 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The payload's protocol (see [`super::ip_proto`]).
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM.start)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        let d = self.buffer.as_ref();
        Ipv4Addr::new(d[12], d[13], d[14], d[15])
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let d = self.buffer.as_ref();
        Ipv4Addr::new(d[16], d[17], d[18], d[19])
    }

    /// The option bytes, including any padding to the 4-byte boundary.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS_START..self.header_len()]
    }

    #[inline]
    pub fn options_iter(&self) -> OptionsIter<'_> {
        OptionsIter::new(self.options())
    }

    /// Whether the header checksum verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(&self.buffer.as_ref()[..self.header_len()])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The bytes between the header and `total_len` (link padding excluded).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn write_u16(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets IHL to `len / 4`; `len` should be a multiple of 4 in 20..=60.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    /// Sets the DSCP (low six bits of `dscp`), keeping the ECN bits.
    #[inline]
    pub fn set_dscp(&mut self, dscp: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (dscp << 2);
    }

    /// Sets the ECN (low two bits of `ecn`), keeping the DSCP.
    #[inline]
    pub fn set_ecn(&mut self, ecn: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (ecn & 0x03);
    }

    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        self.write_u16(field::LENGTH.start, len);
    }

    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        self.write_u16(field::IDENT.start, ident);
    }

    #[inline]
    fn set_flg_off_bits(&mut self, mask: u16, bits: u16) {
        let word = (self.read_u16(field::FLG_OFF.start) & !mask) | (bits & mask);
        self.write_u16(field::FLG_OFF.start, word);
    }

    /// Clears all three flag bits (reserved, DF, MF).
    #[inline]
    pub fn clear_flags(&mut self) {
        self.set_flg_off_bits(!OFFSET_MASK, 0);
    }

    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flg_off_bits(FLAG_DF, if value { FLAG_DF } else { 0 });
    }

    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flg_off_bits(FLAG_MF, if value { FLAG_MF } else { 0 });
    }

    /// Sets the fragment offset from a byte offset (a multiple of 8).
    #[inline]
    pub fn set_frag_offset(&mut self, offset: u16) {
        self.set_flg_off_bits(OFFSET_MASK, offset >> 3);
    }

    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    #[inline]
    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        self.write_u16(field::CHECKSUM.start, checksum);
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS_START..end]
    }

    /// The bytes between the header and `total_len`.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), self.total_len() as usize);
        &mut self.buffer.as_mut()[start..end]
    }

    /// Computes the header checksum and writes it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let check = checksum::checksum(&self.buffer.as_ref()[..self.header_len()]);
        self.set_checksum(check);
    }

    /// Decrements the TTL and patches the checksum incrementally (RFC 1624),
    /// returning the new TTL. A TTL of 0 is left alone (and 0 returned): the
    /// caller decides what to do with expired packets before forwarding.
    #[inline]
    pub fn decrement_ttl_incremental(&mut self) -> u8 {
        let d = self.buffer.as_mut();
        let ttl = d[field::TTL];
        if ttl == 0 {
            return 0;
        }
        // TTL shares its 16-bit checksum word with the protocol byte.
        let old = u16::from_be_bytes([ttl, d[field::PROTOCOL]]);
        let new = old - 0x0100;
        d[field::TTL] = ttl - 1;
        let check = u16::from_be_bytes([d[field::CHECKSUM.start], d[field::CHECKSUM.start + 1]]);
        let check = checksum::update16(check, old, new);
        d[field::CHECKSUM].copy_from_slice(&check.to_be_bytes());
        ttl - 1
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// One IPv4 option, as [`OptionsIter`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Option<'a> {
    /// End of option list; the iterator stops after it (the rest is padding).
    EndOfList,
    NoOperation,
    /// Any type-length-value option; `data` excludes the type and length octets.
    Tlv {
        kind: u8,
        data: &'a [u8],
    },
}

/// Walks IPv4 options. Yields `Err(Malformed)` once, then stops, if a TLV's
/// length is below 2 or runs past the end of the option bytes.
#[derive(Debug, Clone)]
pub struct OptionsIter<'a> {
    rest: &'a [u8],
}

impl<'a> OptionsIter<'a> {
    #[inline]
    pub const fn new(options: &'a [u8]) -> OptionsIter<'a> {
        OptionsIter { rest: options }
    }
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = Result<Ipv4Option<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after_kind) = self.rest.split_first()?;
        match kind {
            option_kind::END_OF_LIST => {
                self.rest = &[];
                Some(Ok(Ipv4Option::EndOfList))
            }
            option_kind::NO_OPERATION => {
                self.rest = after_kind;
                Some(Ok(Ipv4Option::NoOperation))
            }
            _ => {
                let len = after_kind.first().map_or(0, |&l| l as usize);
                if len < 2 || len > self.rest.len() {
                    self.rest = &[];
                    return Some(Err(Error::Malformed));
                }
                let data = &self.rest[2..len];
                self.rest = &self.rest[len..];
                Some(Ok(Ipv4Option::Tlv { kind, data }))
            }
        }
    }
}

impl core::iter::FusedIterator for OptionsIter<'_> {}

/// IPv4 options carried by value: up to 40 bytes, no allocation.
///
/// Bytes past `len` are always zero, so the derived comparisons compare
/// only the options themselves.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Options {
    bytes: [u8; MAX_OPTIONS_LEN],
    len: u8,
}

impl Options {
    pub const EMPTY: Options = Options {
        bytes: [0; MAX_OPTIONS_LEN],
        len: 0,
    };

    /// Copies `bytes` after checking that they fit (40 bytes, else
    /// `Unsupported`) and that every option is well-formed (`Malformed`).
    #[inline]
    pub fn new(bytes: &[u8]) -> Result<Options> {
        if bytes.len() > MAX_OPTIONS_LEN {
            return Err(Error::Unsupported);
        }
        for option in OptionsIter::new(bytes) {
            option?;
        }
        let mut options = Options::EMPTY;
        options.bytes[..bytes.len()].copy_from_slice(bytes);
        options.len = bytes.len() as u8;
        Ok(options)
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Length on the wire, padded with End-of-List octets to 4 bytes.
    #[inline]
    pub fn padded_len(&self) -> usize {
        (self.len as usize + 3) & !3
    }

    #[inline]
    pub fn iter(&self) -> OptionsIter<'_> {
        OptionsIter::new(self.as_bytes())
    }
}

impl Default for Options {
    #[inline]
    fn default() -> Self {
        Options::EMPTY
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Options").field(&self.as_bytes()).finish()
    }
}

/// A parsed IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: u8,
    /// Bytes after the header, up to `total_len`.
    pub payload_len: usize,
    pub ttl: u8,
    /// 0..=63; emit uses the low six bits.
    pub dscp: u8,
    /// 0..=3; emit uses the low two bits.
    pub ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u16,
    pub options: Options,
}

impl Repr {
    /// Reads a header after checking lengths, checksum (`Checksum`) and the
    /// option structure (`Malformed`). The reserved flag is ignored.
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.total_len() as usize - packet.header_len(),
            ttl: packet.ttl(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
            options: Options::new(packet.options())?,
        })
    }

    /// Header length on the wire, options padded to 4 bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.padded_len()
    }

    /// Header plus payload.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.more_frags || self.frag_offset != 0
    }

    /// Writes every header byte, options and padding included, and the
    /// checksum. The payload is left alone. `buffer_len()` must fit in the
    /// 16-bit total length.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        let header_len = self.header_len();
        debug_assert!(self.buffer_len() <= u16::MAX as usize);
        let flags =
            if self.dont_frag { FLAG_DF } else { 0 } | if self.more_frags { FLAG_MF } else { 0 };
        let flg_off = flags | ((self.frag_offset >> 3) & OFFSET_MASK);
        {
            let d = packet.buffer.as_mut();
            d[field::VER_IHL] = 0x40 | (header_len / 4) as u8;
            d[field::DSCP_ECN] = (self.dscp << 2) | (self.ecn & 0x03);
            d[field::FLG_OFF].copy_from_slice(&flg_off.to_be_bytes());
            let options = self.options.as_bytes();
            let area = &mut d[field::OPTIONS_START..header_len];
            area[..options.len()].copy_from_slice(options);
            area[options.len()..].fill(option_kind::END_OF_LIST);
        }
        packet.set_total_len(self.buffer_len() as u16);
        packet.set_ident(self.ident);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IPv4 {} > {} proto {} len {} ttl {}",
            self.src_addr, self.dst_addr, self.protocol, self.payload_len, self.ttl
        )?;
        if self.is_fragment() {
            write!(
                f,
                " frag off {}{}",
                self.frag_offset,
                if self.more_frags { "+" } else { "" }
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip_proto;
    use proptest::prelude::*;

    // The widely used worked example (also in checksum.rs): UDP from
    // 192.168.0.1 to 192.168.0.199, total length 0x73 = 115, DF, TTL 64,
    // ident 0, checksum 0xb861 (verified by hand and by an independent
    // implementation). The 95 payload bytes are a counting pattern: only the
    // IP header is under test here.
    const UDP_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, // v4, IHL 5, tos 0, total length 115
        0x00, 0x00, 0x40, 0x00, // ident 0, DF, offset 0
        0x40, 0x11, 0xb8, 0x61, // TTL 64, UDP, checksum
        0xc0, 0xa8, 0x00, 0x01, // 192.168.0.1
        0xc0, 0xa8, 0x00, 0xc7, // 192.168.0.199
    ];

    fn udp_packet() -> [u8; 115] {
        let mut p = [0u8; 115];
        p[..20].copy_from_slice(&UDP_HEADER);
        for (i, b) in p[20..].iter_mut().enumerate() {
            *b = i as u8;
        }
        p
    }

    fn udp_repr() -> Repr {
        Repr {
            src_addr: Ipv4Addr::new(192, 168, 0, 1),
            dst_addr: Ipv4Addr::new(192, 168, 0, 199),
            protocol: ip_proto::UDP,
            payload_len: 95,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            options: Options::EMPTY,
        }
    }

    // An IGMPv2 membership report for 239.255.255.250 from 192.168.1.100,
    // as hosts send it: IHL 6 for the Router Alert option (94 04 00 00),
    // tos 0xc0 (DSCP 48, CS6), TTL 1, DF. IP checksum 0x3211, IGMP checksum
    // 0xfa04.
    const IGMP_REPORT: [u8; 32] = [
        0x46, 0xc0, 0x00, 0x20, // v4, IHL 6, DSCP 48, total length 32
        0x00, 0x00, 0x40, 0x00, // ident 0, DF
        0x01, 0x02, 0x32, 0x11, // TTL 1, IGMP, checksum
        0xc0, 0xa8, 0x01, 0x64, // 192.168.1.100
        0xef, 0xff, 0xff, 0xfa, // 239.255.255.250
        0x94, 0x04, 0x00, 0x00, // Router Alert
        0x16, 0x00, 0xfa, 0x04, 0xef, 0xff, 0xff, 0xfa, // IGMPv2 report
    ];

    fn igmp_repr() -> Repr {
        Repr {
            src_addr: Ipv4Addr::new(192, 168, 1, 100),
            dst_addr: Ipv4Addr::new(239, 255, 255, 250),
            protocol: ip_proto::IGMP,
            payload_len: 8,
            ttl: 1,
            dscp: 48,
            ecn: 0,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            options: Options::new(&[0x94, 0x04, 0x00, 0x00]).unwrap(),
        }
    }

    // A middle fragment: ident 0xabcd, MF, offset 1480 bytes (185 × 8),
    // ECN CE, TCP. The flags/offset word is 0x2000 | 185 = 0x20b9.
    const FRAGMENT_HEADER: [u8; 20] = [
        0x45, 0x03, 0x00, 0x1c, 0xab, 0xcd, 0x20, 0xb9, 0x3f, 0x06, 0x00, 0x00, 0x0a, 0x00, 0x00,
        0x01, 0x0a, 0x00, 0x00, 0x02,
    ];

    fn with_checksum(mut header: Vec<u8>, header_len: usize) -> Vec<u8> {
        header[10] = 0;
        header[11] = 0;
        let c = checksum::checksum(&header[..header_len]);
        header[10..12].copy_from_slice(&c.to_be_bytes());
        header
    }

    #[test]
    fn golden_view() {
        let bytes = udp_packet();
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!((p.dscp(), p.ecn()), (0, 0));
        assert_eq!(p.total_len(), 115);
        assert_eq!(p.ident(), 0);
        assert!(p.dont_frag() && !p.more_frags() && !p.reserved_flag());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), ip_proto::UDP);
        assert_eq!(p.checksum(), 0xb861);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(p.options().is_empty());
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &bytes[20..]);
    }

    #[test]
    fn golden_parse() {
        let bytes = udp_packet();
        assert_eq!(
            Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap(),
            udp_repr()
        );
        let p = Packet::new_checked(&IGMP_REPORT[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(p.payload(), &IGMP_REPORT[24..]);
        assert_eq!(Repr::parse(&p).unwrap(), igmp_repr());
    }

    #[test]
    fn golden_emit() {
        let repr = udp_repr();
        let mut buf = [0xa5u8; 115];
        buf[20..].copy_from_slice(&udp_packet()[20..]);
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(repr.buffer_len(), 115);
        assert_eq!(buf, udp_packet());

        let repr = igmp_repr();
        let mut buf = [0xa5u8; 32];
        buf[24..].copy_from_slice(&IGMP_REPORT[24..]);
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(repr.header_len(), 24);
        assert_eq!(buf, IGMP_REPORT);
    }

    #[test]
    fn golden_fragment() {
        let mut bytes = FRAGMENT_HEADER.to_vec();
        bytes.extend_from_slice(&[0xee; 8]);
        let bytes = with_checksum(bytes, 20);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.more_frags() && !p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
        assert!(p.is_fragment());
        assert_eq!(p.ecn(), 3);
        let repr = Repr::parse(&p).unwrap();
        assert_eq!(repr.ident, 0xabcd);
        assert_eq!(repr.frag_offset, 1480);
        assert!(repr.more_frags && repr.is_fragment());
        assert_eq!((repr.ttl, repr.protocol, repr.ecn), (63, ip_proto::TCP, 3));
        let mut out = vec![0xa5u8; 20];
        out.extend_from_slice(&[0xee; 8]);
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, bytes);

        // Offset alone (last fragment) is still a fragment.
        let mut last = bytes.clone();
        last[6] = 0x00;
        let p = Packet::new_checked(&last[..]).unwrap();
        assert!(!p.more_frags() && p.is_fragment());
    }

    #[test]
    fn emit_pads_options_to_four_bytes() {
        let mut repr = udp_repr();
        repr.payload_len = 0;
        // NOP, then Record Route with one empty slot: 1 + 7 = 8 bytes.
        let rr = [0x01, 0x07, 0x07, 0x04, 0x00, 0x00, 0x00, 0x00];
        assert_eq!(Options::new(&rr[..6]).unwrap_err(), Error::Malformed);
        repr.options = Options::new(&[0x01, 0x94, 0x04, 0x00, 0x00]).unwrap();
        assert_eq!(repr.options.len(), 5);
        assert_eq!(repr.header_len(), 28);
        let mut buf = [0xa5u8; 28];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf[0], 0x47);
        assert_eq!(&buf[20..], &[0x01, 0x94, 0x04, 0x00, 0x00, 0, 0, 0]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        let back = Repr::parse(&p).unwrap();
        assert_eq!(back.options.as_bytes(), &buf[20..28]);
        assert_eq!(Options::new(&rr).unwrap().len(), 8);
    }

    #[test]
    fn options_iterator() {
        let opts = [
            0x01, // NOP
            0x07, 0x07, 0x04, 0xc0, 0xa8, 0x00, 0x01, // Record Route, one slot
            0x94, 0x04, 0x00, 0x00, // Router Alert
            0x00, // EOL
            0xff, 0xff, 0xff, // padding is not parsed
        ];
        let mut it = OptionsIter::new(&opts);
        assert_eq!(it.next(), Some(Ok(Ipv4Option::NoOperation)));
        assert_eq!(
            it.next(),
            Some(Ok(Ipv4Option::Tlv {
                kind: option_kind::RECORD_ROUTE,
                data: &[0x04, 0xc0, 0xa8, 0x00, 0x01]
            }))
        );
        assert_eq!(
            it.next(),
            Some(Ok(Ipv4Option::Tlv {
                kind: option_kind::ROUTER_ALERT,
                data: &[0, 0]
            }))
        );
        assert_eq!(it.next(), Some(Ok(Ipv4Option::EndOfList)));
        assert_eq!(it.next(), None);
        assert_eq!(it.next(), None);
        assert_eq!(OptionsIter::new(&[]).next(), None);
    }

    #[test]
    fn malformed_options() {
        let cases: [&[u8]; 5] = [
            &[0x94],                   // length byte missing
            &[0x94, 0x01, 0x00, 0x00], // length < 2
            &[0x94, 0x00, 0x00, 0x00], // length 0 would loop forever
            &[0x94, 0x05, 0x00, 0x00], // runs past the end
            &[0x01, 0x01, 0x07, 0x27], // runs past the end after NOPs
        ];
        for opts in cases {
            let items: Vec<_> = OptionsIter::new(opts).collect();
            assert_eq!(items.last(), Some(&Err(Error::Malformed)), "{opts:02x?}");
            assert_eq!(items.iter().filter(|i| i.is_err()).count(), 1);
            assert_eq!(Options::new(opts).unwrap_err(), Error::Malformed);
        }
        // In a header: option length past the header (into the payload).
        let mut bytes = IGMP_REPORT.to_vec();
        bytes[21] = 0x08;
        let bytes = with_checksum(bytes, 24);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap_err(), Error::Malformed);
        assert_eq!(Options::new(&[0; 41]).unwrap_err(), Error::Unsupported);
    }

    #[test]
    fn truncated_at_every_length() {
        let bytes = udp_packet();
        for len in 0..bytes.len() {
            assert_eq!(
                Packet::new_checked(&bytes[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
        for len in 0..IGMP_REPORT.len() {
            assert_eq!(
                Packet::new_checked(&IGMP_REPORT[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
    }

    #[test]
    fn bogus_lengths() {
        let good = IGMP_REPORT;
        let check = |f: &dyn Fn(&mut [u8; 32])| {
            let mut b = good;
            f(&mut b);
            Packet::new_checked(&b[..]).map(|_| ()).unwrap_err()
        };
        assert_eq!(check(&|b| b[0] = 0x66), Error::Malformed); // version 6
        assert_eq!(check(&|b| b[0] = 0x06), Error::Malformed); // version 0
        assert_eq!(check(&|b| b[0] = 0x44), Error::Malformed); // IHL 4
        assert_eq!(check(&|b| b[0] = 0x40), Error::Malformed); // IHL 0
        assert_eq!(check(&|b| b[0] = 0x49), Error::Truncated); // IHL 9 = 36 > 32
        assert_eq!(check(&|b| b[0] = 0x4f), Error::Truncated); // IHL 15
        assert_eq!(check(&|b| b[3] = 23), Error::Malformed); // total < IHL*4
        assert_eq!(check(&|b| b[3] = 0), Error::Malformed);
        assert_eq!(check(&|b| b[3] = 33), Error::Truncated); // total > buffer
        assert_eq!(check(&|b| b[2] = 0xff), Error::Truncated);
        // total == header: an empty payload is fine.
        let mut b = good;
        b[3] = 24;
        assert!(Packet::new_checked(&b[..]).unwrap().payload().is_empty());
        // Link padding after total_len is not payload.
        let mut padded = [0u8; 46];
        padded[..32].copy_from_slice(&good);
        let p = Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.payload(), &good[24..]);
        assert_eq!(Repr::parse(&p).unwrap().payload_len, 8);
    }

    #[test]
    fn bad_checksum() {
        let mut b = IGMP_REPORT;
        b[11] ^= 1;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(!p.verify_checksum());
        assert_eq!(Repr::parse(&p).unwrap_err(), Error::Checksum);
        let mut b = IGMP_REPORT;
        b[8] = 2; // TTL changed without a checksum update
        assert_eq!(
            Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap_err(),
            Error::Checksum
        );
    }

    #[test]
    fn setters_round_trip() {
        let mut buf = IGMP_REPORT;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_dscp(46);
        p.set_ecn(2);
        assert_eq!((p.dscp(), p.ecn()), (46, 2));
        p.set_ecn(1);
        assert_eq!((p.dscp(), p.ecn()), (46, 1));
        p.set_ident(0x1234);
        p.set_dont_frag(false);
        p.set_more_frags(true);
        p.set_frag_offset(8 * 0x1fff);
        assert!(!p.dont_frag() && p.more_frags());
        assert_eq!(p.frag_offset(), 8 * 0x1fff);
        p.set_frag_offset(16);
        assert_eq!(p.frag_offset(), 16);
        assert!(p.more_frags());
        p.clear_flags();
        assert!(!p.more_frags() && !p.dont_frag() && p.frag_offset() == 16);
        p.set_ttl(9);
        p.set_protocol(ip_proto::UDP);
        p.set_src_addr(Ipv4Addr::new(10, 1, 2, 3));
        p.set_dst_addr(Ipv4Addr::new(10, 4, 5, 6));
        p.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        p.payload_mut().fill(0xcc);
        p.fill_checksum();
        assert!(p.verify_checksum());
        p.set_version(4);
        p.set_header_len(20);
        p.set_total_len(28);
        assert_eq!(p.header_len(), 20);
        assert_eq!(buf[0], 0x45);
        assert_eq!(&buf[4..6], &[0x12, 0x34]);
        assert_eq!(&buf[6..8], &[0x00, 0x02]);
        assert_eq!(&buf[12..20], &[10, 1, 2, 3, 10, 4, 5, 6]);
        assert_eq!(&buf[24..], &[0xcc; 8]);
    }

    #[test]
    fn decrement_ttl_matches_full_recompute() {
        let mut bytes = udp_packet();
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        assert_eq!(p.decrement_ttl_incremental(), 63);
        // Hand-checked: the same header with TTL 63 sums to 0xb961.
        assert_eq!(p.checksum(), 0xb961);
        for expected in (0..63u8).rev() {
            assert_eq!(p.decrement_ttl_incremental(), expected);
            assert!(p.verify_checksum(), "ttl {expected}");
            let incremental = p.checksum();
            p.fill_checksum();
            assert_eq!(p.checksum(), incremental, "ttl {expected}");
        }
        assert_eq!(p.ttl(), 0);
        let before = p.checksum();
        assert_eq!(p.decrement_ttl_incremental(), 0);
        assert_eq!((p.ttl(), p.checksum()), (0, before));

        // With options and a protocol byte that is not zero in the low half.
        let mut bytes = IGMP_REPORT;
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        assert_eq!(p.decrement_ttl_incremental(), 0);
        assert!(p.verify_checksum());
    }

    #[test]
    fn display() {
        assert_eq!(
            udp_repr().to_string(),
            "IPv4 192.168.0.1 > 192.168.0.199 proto 17 len 95 ttl 64"
        );
    }

    fn arb_options() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                Just(vec![0x01u8]),
                Just(vec![0x94, 0x04, 0x00, 0x00]),
                proptest::collection::vec(any::<u8>(), 0..6).prop_map(|d| {
                    let mut v = vec![0x44, d.len() as u8 + 2];
                    v.extend(d);
                    v
                }),
            ],
            0..5,
        )
        .prop_map(|parts| parts.concat())
        .prop_filter("fits", |o| o.len() <= MAX_OPTIONS_LEN)
    }

    prop_compose! {
        fn arb_repr()(
            src in any::<u32>(), dst in any::<u32>(), protocol in any::<u8>(),
            payload_len in 0usize..64, ttl in any::<u8>(), dscp in 0u8..64, ecn in 0u8..4,
            ident in any::<u16>(), dont_frag in any::<bool>(), more_frags in any::<bool>(),
            frag_units in 0u16..0x2000, options in arb_options(),
        ) -> Repr {
            Repr {
                src_addr: Ipv4Addr::from(src),
                dst_addr: Ipv4Addr::from(dst),
                protocol, payload_len, ttl, dscp, ecn, ident, dont_frag, more_frags,
                frag_offset: frag_units * 8,
                options: Options::new(&options).unwrap(),
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.payload(), p.options(), p.verify_checksum(), p.is_fragment());
                for _ in p.options_iter() {}
                let _ = Repr::parse(&p);
            }
        }

        #[test]
        fn plausible_headers_never_panic(
            ihl in 0u8..16, total_len in 0u16..100, fill_checksum in any::<bool>(),
            rest in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut bytes = vec![0x40 | ihl, 0];
            bytes.extend_from_slice(&total_len.to_be_bytes());
            bytes.extend_from_slice(&rest);
            if let Ok(mut p) = Packet::new_checked(&mut bytes[..]) {
                if fill_checksum {
                    p.fill_checksum();
                }
                let _ = p.decrement_ttl_incremental();
                let _ = p.payload_mut();
                let p = Packet::new_checked(&bytes[..]).unwrap();
                for _ in p.options_iter() {}
                let _ = Repr::parse(&p);
            }
        }

        #[test]
        fn emit_then_parse_round_trips(repr in arb_repr()) {
            let mut buf = vec![0xa5u8; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let p = Packet::new_checked(&buf[..]).unwrap();
            let mut back = Repr::parse(&p).unwrap();
            // Parsed options include the padding emit added.
            prop_assert_eq!(back.options.as_bytes().len(), repr.options.padded_len());
            prop_assert_eq!(&back.options.as_bytes()[..repr.options.len()], repr.options.as_bytes());
            back.options = repr.options;
            prop_assert_eq!(back, repr);
        }
    }
}
