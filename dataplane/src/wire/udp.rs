//! UDP (RFC 768): a header view, its `Repr`, checksums over both IP
//! pseudo-headers, and incremental rewrites for NAT.
//!
//! The view's buffer starts at the UDP header and may run past the datagram
//! (Ethernet padding, say): the length field, checked once by `new_checked`,
//! decides where the payload ends and what the checksum covers.
//!
//! Checksum rules: over IPv4 a zero checksum field means "not computed" and
//! verifies; a computed checksum of zero is sent as 0xffff (RFC 768). Over
//! IPv6 the checksum is mandatory (RFC 8200 §8.1), so a zero field fails
//! `verify_checksum_v6`; tunnels that allow zero checksums (RFC 6935) test
//! `checksum() == 0` themselves.

use super::checksum;
use super::{ip_proto, Error, Result};

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

mod field {
    pub type Field = core::ops::Range<usize>;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

/// A zero-copy view of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// A computed checksum of zero goes on the wire as 0xffff, because zero
/// means "no checksum" over IPv4.
#[inline]
fn nonzero_checksum(check: u16) -> u16 {
    if check == 0 {
        0xffff
    } else {
        check
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is too short.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures the header fits and the length field is between the header
    /// length and the buffer length: `Truncated` if the buffer is too short,
    /// `Malformed` if the length field is below 8.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let buffer_len = self.buffer.as_ref().len();
        if buffer_len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let datagram_len = self.len() as usize;
        if datagram_len < HEADER_LEN {
            Err(Error::Malformed)
        } else if datagram_len > buffer_len {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn read_u16(&self, range: field::Field) -> u16 {
        let data = &self.buffer.as_ref()[range];
        u16::from_be_bytes([data[0], data[1]])
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        self.read_u16(field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.read_u16(field::DST_PORT)
    }

    /// The length field: header plus payload, in bytes.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        self.read_u16(field::LENGTH)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// The header and payload, as far as the length field says.
    #[inline]
    pub fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.len() as usize]
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len() as usize]
    }

    #[inline]
    fn folded_sum(&self, pseudo: u32) -> u16 {
        checksum::fold(checksum::combine(pseudo, checksum::sum(self.datagram(), 0)))
    }

    /// Whether the checksum verifies over the IPv4 pseudo-header; a zero
    /// checksum ("not computed") verifies.
    #[inline]
    pub fn verify_checksum_v4(&self, src: [u8; 4], dst: [u8; 4]) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let pseudo = checksum::pseudo_header_v4(src, dst, ip_proto::UDP, self.len());
        self.folded_sum(pseudo) == 0xffff
    }

    /// Whether the checksum verifies over the IPv6 pseudo-header; a zero
    /// checksum does not.
    #[inline]
    pub fn verify_checksum_v6(&self, src: [u8; 16], dst: [u8; 16]) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        let pseudo = checksum::pseudo_header_v6(src, dst, ip_proto::UDP, self.len() as u32);
        self.folded_sum(pseudo) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn write_u16(&mut self, range: field::Field, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        self.write_u16(field::SRC_PORT, value)
    }

    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        self.write_u16(field::DST_PORT, value)
    }

    /// Sets the length field. Accessors trust it, so after changing it call
    /// `check_len` again (or keep it within the buffer).
    #[inline]
    pub fn set_len(&mut self, value: u16) {
        self.write_u16(field::LENGTH, value)
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(field::CHECKSUM, value)
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.len() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Computes the checksum over the IPv4 pseudo-header and the datagram.
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: [u8; 4], dst: [u8; 4]) {
        self.set_checksum(0);
        let pseudo = checksum::pseudo_header_v4(src, dst, ip_proto::UDP, self.len());
        let check = nonzero_checksum(!self.folded_sum(pseudo));
        self.set_checksum(check);
    }

    /// Computes the checksum over the IPv6 pseudo-header and the datagram.
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: [u8; 16], dst: [u8; 16]) {
        self.set_checksum(0);
        let pseudo = checksum::pseudo_header_v6(src, dst, ip_proto::UDP, self.len() as u32);
        let check = nonzero_checksum(!self.folded_sum(pseudo));
        self.set_checksum(check);
    }

    /// Applies an RFC 1624 update for one changed 16-bit word, leaving a zero
    /// ("not computed") checksum alone.
    #[inline]
    fn update_checksum16(&mut self, old: u16, new: u16) {
        let check = self.checksum();
        if check != 0 {
            self.set_checksum(nonzero_checksum(checksum::update16(check, old, new)));
        }
    }

    /// Rewrites the source port and updates the checksum incrementally.
    #[inline]
    pub fn set_src_port_incremental(&mut self, value: u16) {
        let old = self.src_port();
        self.set_src_port(value);
        self.update_checksum16(old, value);
    }

    /// Rewrites the destination port and updates the checksum incrementally.
    #[inline]
    pub fn set_dst_port_incremental(&mut self, value: u16) {
        let old = self.dst_port();
        self.set_dst_port(value);
        self.update_checksum16(old, value);
    }

    /// Updates the checksum after an IPv4 address in the enclosing header
    /// changed from `old` to `new` (the pseudo-header covers it).
    #[inline]
    pub fn update_checksum_for_addr_v4(&mut self, old: [u8; 4], new: [u8; 4]) {
        let check = self.checksum();
        if check != 0 {
            let updated =
                checksum::update32(check, u32::from_be_bytes(old), u32::from_be_bytes(new));
            self.set_checksum(nonzero_checksum(updated));
        }
    }

    /// Updates the checksum after an IPv6 address in the enclosing header
    /// changed from `old` to `new`.
    #[inline]
    pub fn update_checksum_for_addr_v6(&mut self, old: [u8; 16], new: [u8; 16]) {
        let check = self.checksum();
        if check != 0 {
            let updated =
                checksum::update128(check, u128::from_be_bytes(old), u128::from_be_bytes(new));
            self.set_checksum(nonzero_checksum(updated));
        }
    }
}

/// A parsed UDP header.
///
/// The payload is not copied: `payload_len` says how long it is, and `emit`
/// writes the header in front of whatever payload bytes the buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl Repr {
    /// Reads the header. Does not verify the checksum (that needs the IP
    /// addresses and may be offloaded): call `verify_checksum_v4/v6` first.
    /// A destination port of zero is `Malformed`.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.dst_port() == 0 {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: packet.len() as usize - HEADER_LEN,
        })
    }

    /// Header plus payload.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes every header field, with a zero checksum ("not computed",
    /// valid over IPv4 only).
    ///
    /// # Panics
    /// If the buffer is shorter than the header. The datagram length must fit
    /// in 16 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        debug_assert!(self.buffer_len() <= u16::MAX as usize);
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(self.buffer_len() as u16);
        packet.set_checksum(0);
    }

    /// Writes the header and the IPv4 checksum over it and the payload bytes
    /// already in the buffer.
    ///
    /// # Panics
    /// If the buffer is shorter than `buffer_len()`.
    pub fn emit_v4<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: [u8; 4],
        dst: [u8; 4],
    ) {
        self.emit(packet);
        packet.fill_checksum_v4(src, dst);
    }

    /// Writes the header and the IPv6 checksum over it and the payload bytes
    /// already in the buffer.
    ///
    /// # Panics
    /// If the buffer is shorter than `buffer_len()`.
    pub fn emit_v6<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: [u8; 16],
        dst: [u8; 16],
    ) {
        self.emit(packet);
        packet.fill_checksum_v6(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC_V4: [u8; 4] = [192, 168, 1, 10];
    const DST_V4: [u8; 4] = [192, 168, 1, 1];
    const SRC_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    // A DNS query for "example.com" A, 192.168.1.10:53211 -> 192.168.1.1:53.
    // Checksum 0xc29e, confirmed by tshark with udp.check_checksum on.
    const DNS_QUERY_V4: [u8; 37] = [
        0xcf, 0xdb, 0x00, 0x35, 0x00, 0x25, 0xc2, 0x9e, // ports, length 37, checksum
        0x1a, 0x2b, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, // DNS id, flags RD, 1 question
        0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x61, // "\x07exa"
        0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d, // "mple\x03com"
        0x00, 0x00, 0x01, 0x00, 0x01, // root, type A, class IN
    ];

    // "sluice" from [2001:db8::1]:50000 to [2001:db8::2]:7; checksum 0x94ca
    // (confirmed by tshark).
    const SLUICE_V6: [u8; 14] = [
        0xc3, 0x50, 0x00, 0x07, 0x00, 0x0e, 0x94, 0xca, //
        b's', b'l', b'u', b'i', b'c', b'e',
    ];

    #[test]
    fn golden_v4_fields() {
        let packet = Packet::new_checked(&DNS_QUERY_V4[..]).unwrap();
        assert_eq!(packet.src_port(), 53211);
        assert_eq!(packet.dst_port(), 53);
        assert_eq!(packet.len(), 37);
        assert_eq!(packet.checksum(), 0xc29e);
        assert_eq!(packet.payload(), &DNS_QUERY_V4[8..]);
        assert!(packet.verify_checksum_v4(SRC_V4, DST_V4));
        assert!(!packet.verify_checksum_v4(SRC_V4, [192, 168, 1, 2]));
        assert_eq!(
            Repr::parse(&packet).unwrap(),
            Repr {
                src_port: 53211,
                dst_port: 53,
                payload_len: 29
            }
        );
    }

    #[test]
    fn golden_v4_emit_into_poisoned_buffer() {
        let repr = Repr {
            src_port: 53211,
            dst_port: 53,
            payload_len: 29,
        };
        let mut buf = [0xa5u8; 37];
        buf[8..].copy_from_slice(&DNS_QUERY_V4[8..]);
        let mut packet = Packet::new_unchecked(&mut buf[..repr.buffer_len()]);
        repr.emit_v4(&mut packet, SRC_V4, DST_V4);
        assert_eq!(buf, DNS_QUERY_V4);
    }

    #[test]
    fn emit_without_checksum_writes_zero() {
        let repr = Repr {
            src_port: 1,
            dst_port: 2,
            payload_len: 0,
        };
        let mut buf = [0xa5u8; 8];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [0, 1, 0, 2, 0, 8, 0, 0]);
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert!(packet.verify_checksum_v4(SRC_V4, DST_V4));
        assert!(!packet.verify_checksum_v6(SRC_V6, DST_V6));
    }

    #[test]
    fn golden_v6_parse_and_emit() {
        let packet = Packet::new_checked(&SLUICE_V6[..]).unwrap();
        assert!(packet.verify_checksum_v6(SRC_V6, DST_V6));
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Repr {
                src_port: 50000,
                dst_port: 7,
                payload_len: 6
            }
        );
        let mut buf = [0xa5u8; 14];
        buf[8..].copy_from_slice(b"sluice");
        repr.emit_v6(&mut Packet::new_unchecked(&mut buf[..]), SRC_V6, DST_V6);
        assert_eq!(buf, SLUICE_V6);
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Choose the payload word so that the folded sum is 0xffff, making
        // the complement zero.
        let mut buf = [0u8; 10];
        Repr {
            src_port: 1000,
            dst_port: 2000,
            payload_len: 2,
        }
        .emit(&mut Packet::new_unchecked(&mut buf[..]));
        let pseudo = checksum::pseudo_header_v4(SRC_V4, DST_V4, ip_proto::UDP, 10);
        let partial = checksum::fold(checksum::combine(pseudo, checksum::sum(&buf, 0)));
        buf[8..10].copy_from_slice(&(!partial).to_be_bytes());
        let mut packet = Packet::new_checked(&mut buf[..]).unwrap();
        packet.fill_checksum_v4(SRC_V4, DST_V4);
        assert_eq!(packet.checksum(), 0xffff);
        assert!(packet.verify_checksum_v4(SRC_V4, DST_V4));
    }

    #[test]
    fn trailing_padding_is_not_payload() {
        let mut buf = DNS_QUERY_V4.to_vec();
        buf.extend_from_slice(&[0; 9]);
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.payload().len(), 29);
        assert!(packet.verify_checksum_v4(SRC_V4, DST_V4));
    }

    #[test]
    fn incremental_port_rewrites_match_full_checksum() {
        let mut buf = DNS_QUERY_V4;
        let mut packet = Packet::new_checked(&mut buf[..]).unwrap();
        for port in [0u16, 1, 1024, 40000, 65535, 53211] {
            packet.set_src_port_incremental(port);
            assert!(packet.verify_checksum_v4(SRC_V4, DST_V4), "src {port}");
            packet.set_dst_port_incremental(port ^ 0x5555);
            assert!(packet.verify_checksum_v4(SRC_V4, DST_V4), "dst {port}");
        }
        let mut v6 = SLUICE_V6;
        let mut packet = Packet::new_checked(&mut v6[..]).unwrap();
        packet.set_dst_port_incremental(9);
        assert!(packet.verify_checksum_v6(SRC_V6, DST_V6));
    }

    #[test]
    fn incremental_rewrite_keeps_absent_checksum_absent() {
        let mut buf = DNS_QUERY_V4;
        let mut packet = Packet::new_checked(&mut buf[..]).unwrap();
        packet.set_checksum(0);
        packet.set_src_port_incremental(1);
        packet.update_checksum_for_addr_v4(SRC_V4, [10, 0, 0, 1]);
        assert_eq!(packet.checksum(), 0);
    }

    #[test]
    fn address_rewrite_updates_pseudo_header_sum() {
        let mut buf = DNS_QUERY_V4;
        let mut packet = Packet::new_checked(&mut buf[..]).unwrap();
        let nat = [203, 0, 113, 7];
        packet.update_checksum_for_addr_v4(SRC_V4, nat);
        assert!(packet.verify_checksum_v4(nat, DST_V4));
        let mut v6 = SLUICE_V6;
        let mut packet = Packet::new_checked(&mut v6[..]).unwrap();
        let mut new_dst = DST_V6;
        new_dst[8] = 0xab;
        packet.update_checksum_for_addr_v6(DST_V6, new_dst);
        assert!(packet.verify_checksum_v6(SRC_V6, new_dst));
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..DNS_QUERY_V4.len() {
            assert_eq!(
                Packet::new_checked(&DNS_QUERY_V4[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
    }

    #[test]
    fn bogus_length_fields() {
        for bad in [0u16, 7] {
            let mut buf = DNS_QUERY_V4;
            buf[4..6].copy_from_slice(&bad.to_be_bytes());
            assert_eq!(Packet::new_checked(&buf[..]).unwrap_err(), Error::Malformed);
        }
        let mut buf = DNS_QUERY_V4;
        buf[4..6].copy_from_slice(&38u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&buf[..]).unwrap_err(), Error::Truncated);
        buf[4..6].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&buf[..]).unwrap().payload(),
            &[] as &[u8]
        );
    }

    #[test]
    fn zero_destination_port_is_malformed() {
        let mut buf = DNS_QUERY_V4;
        buf[2] = 0;
        buf[3] = 0;
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Err(Error::Malformed));
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&buf[..3])),
            Err(Error::Truncated)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(packet) = Packet::new_checked(&data[..]) {
                let _ = (packet.src_port(), packet.dst_port(), packet.checksum(), packet.payload());
                let _ = packet.verify_checksum_v4(SRC_V4, DST_V4);
                let _ = packet.verify_checksum_v6(SRC_V6, DST_V6);
                if let Ok(repr) = Repr::parse(&packet) {
                    prop_assert_eq!(repr.buffer_len(), packet.len() as usize);
                }
            }
        }
    }
}
