//! Ethernet II frame header: destination MAC, source MAC, EtherType.
//!
//! The view covers the 14-byte header and everything after it; it neither
//! expects nor strips the FCS (NICs deliver frames without it). VLAN tags are
//! not part of this header: when [`Frame::ethertype`] is one of the tag
//! protocol identifiers, [`super::vlan`] reads the tag that follows.
//!
//! An EtherType below 0x0600 is an IEEE 802.3 length field (an LLC frame);
//! [`Frame::ethertype`] returns it unchanged and callers that care test it
//! with [`is_length_field`].

use core::fmt;

use super::{Error, Result};

/// A 48-bit IEEE MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// Reads an address from the first six bytes of `bytes`, or `None` if
    /// there are fewer than six.
    #[inline]
    pub fn from_slice(bytes: &[u8]) -> Option<EthernetAddress> {
        let b: [u8; 6] = bytes.get(..6)?.try_into().ok()?;
        Some(EthernetAddress(b))
    }

    #[inline]
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// The group bit (I/G, least significant bit of the first octet) is set;
    /// broadcast is a multicast address too.
    #[inline]
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    #[inline]
    pub const fn is_broadcast(&self) -> bool {
        let a = self.0;
        a[0] & a[1] & a[2] & a[3] & a[4] & a[5] == 0xff
    }

    /// An individual (not group) address.
    #[inline]
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// The U/L bit is set: the address was assigned locally, not by a vendor.
    #[inline]
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            a[0], a[1], a[2], a[3], a[4], a[5]
        )
    }
}

impl From<[u8; 6]> for EthernetAddress {
    #[inline]
    fn from(bytes: [u8; 6]) -> Self {
        EthernetAddress(bytes)
    }
}

/// Whether a value in the EtherType position is an 802.3 length (< 0x0600)
/// rather than an EtherType.
#[inline]
pub const fn is_length_field(ethertype: u16) -> bool {
    ethertype < 0x0600
}

mod field {
    use core::ops::{Range, RangeFrom};

    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: RangeFrom<usize> = 14..;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A zero-copy view of an Ethernet II frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without checking its length; accessors may panic on a
    /// short buffer. Use [`Frame::new_checked`] for untrusted input.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps `buffer` after checking that it holds a whole header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// `Err(Truncated)` if the buffer is shorter than [`HEADER_LEN`].
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Bytes needed for a frame carrying `payload_len` bytes.
    #[inline]
    pub const fn buffer_len(payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    #[inline]
    pub fn dst_addr(&self) -> EthernetAddress {
        let d = self.buffer.as_ref();
        EthernetAddress([d[0], d[1], d[2], d[3], d[4], d[5]])
    }

    #[inline]
    pub fn src_addr(&self) -> EthernetAddress {
        let d = self.buffer.as_ref();
        EthernetAddress([d[6], d[7], d[8], d[9], d[10], d[11]])
    }

    /// The EtherType (see [`super::ethertype`]), or an 802.3 length.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[field::ETHERTYPE.start], d[field::ETHERTYPE.start + 1]])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Frame<&'a T> {
    /// Everything after the header (including any VLAN tag and link padding).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    #[inline]
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_ethertype(&mut self, ethertype: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Frame<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The parsed Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    pub dst_addr: EthernetAddress,
    pub src_addr: EthernetAddress,
    pub ethertype: u16,
}

impl Repr {
    /// Reads the header of a frame that passed [`Frame::new_checked`].
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &Frame<&T>) -> Result<Repr> {
        frame.check_len()?;
        Ok(Repr {
            dst_addr: frame.dst_addr(),
            src_addr: frame.src_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Length of the emitted header.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header; the payload is left alone.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, frame: &mut Frame<&mut T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Ethernet {} > {} type {:#06x}",
            self.src_addr, self.dst_addr, self.ethertype
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethertype;
    use proptest::prelude::*;

    // A broadcast ARP request as captured on a LAN: who-has 192.168.1.1
    // tell 192.168.1.100, from 00:1b:21:3a:4f:5c, padded to the 60-byte
    // minimum by the sender's NIC.
    const ARP_REQUEST_FRAME: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst: broadcast
        0x00, 0x1b, 0x21, 0x3a, 0x4f, 0x5c, // src
        0x08, 0x06, // EtherType ARP
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype, ptype, hlen, plen, oper
        0x00, 0x1b, 0x21, 0x3a, 0x4f, 0x5c, 0xc0, 0xa8, 0x01, 0x64, // sha, spa
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x01, 0x01, // tha, tpa
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    const SRC: EthernetAddress = EthernetAddress([0x00, 0x1b, 0x21, 0x3a, 0x4f, 0x5c]);

    fn golden_repr() -> Repr {
        Repr {
            dst_addr: EthernetAddress::BROADCAST,
            src_addr: SRC,
            ethertype: ethertype::ARP,
        }
    }

    #[test]
    fn golden_parse() {
        let frame = Frame::new_checked(&ARP_REQUEST_FRAME[..]).unwrap();
        assert_eq!(frame.dst_addr(), EthernetAddress::BROADCAST);
        assert_eq!(frame.src_addr(), SRC);
        assert_eq!(frame.ethertype(), 0x0806);
        assert_eq!(frame.payload(), &ARP_REQUEST_FRAME[14..]);
        assert_eq!(Repr::parse(&frame).unwrap(), golden_repr());
    }

    #[test]
    fn golden_emit() {
        let repr = golden_repr();
        let mut buf = [0xa5u8; 60];
        buf[HEADER_LEN..].copy_from_slice(&ARP_REQUEST_FRAME[HEADER_LEN..]);
        let mut frame = Frame::new_unchecked(&mut buf[..]);
        repr.emit(&mut frame);
        assert_eq!(repr.buffer_len(), HEADER_LEN);
        assert_eq!(buf, ARP_REQUEST_FRAME);
    }

    #[test]
    fn emit_writes_every_header_byte() {
        let mut buf = [0xa5u8; HEADER_LEN];
        golden_repr().emit(&mut Frame::new_unchecked(&mut buf[..]));
        assert_eq!(buf[..], ARP_REQUEST_FRAME[..HEADER_LEN]);
    }

    #[test]
    fn setters_and_payload_mut() {
        let mut buf = [0u8; 20];
        let mut frame = Frame::new_checked(&mut buf[..]).unwrap();
        frame.set_dst_addr(SRC);
        frame.set_src_addr(EthernetAddress::BROADCAST);
        frame.set_ethertype(ethertype::IPV6);
        frame.payload_mut().fill(7);
        assert_eq!(frame.dst_addr(), SRC);
        assert_eq!(frame.src_addr(), EthernetAddress::BROADCAST);
        assert_eq!(frame.ethertype(), 0x86dd);
        assert_eq!(&buf[12..14], &[0x86, 0xdd]);
        assert_eq!(&buf[14..], &[7; 6]);
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Frame::new_checked(&ARP_REQUEST_FRAME[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
        let frame = Frame::new_checked(&ARP_REQUEST_FRAME[..HEADER_LEN]).unwrap();
        assert!(frame.payload().is_empty());
    }

    #[test]
    fn address_classes() {
        let b = EthernetAddress::BROADCAST;
        assert!(b.is_broadcast() && b.is_multicast() && !b.is_unicast());
        let m = EthernetAddress([0x01, 0x00, 0x5e, 0x7f, 0xff, 0xfa]);
        assert!(m.is_multicast() && !m.is_broadcast() && !m.is_unicast());
        assert!(SRC.is_unicast() && !SRC.is_multicast() && !SRC.is_local());
        assert!(EthernetAddress([0x02, 0, 0, 0, 0, 1]).is_local());
        assert_eq!(SRC.to_string(), "00:1b:21:3a:4f:5c");
        assert_eq!(b.to_string(), "ff:ff:ff:ff:ff:ff");
        assert_eq!(
            EthernetAddress::from_slice(&ARP_REQUEST_FRAME[6..]),
            Some(SRC)
        );
        assert_eq!(EthernetAddress::from_slice(&[1, 2, 3]), None);
        assert!(is_length_field(0x05dc) && !is_length_field(ethertype::IPV4));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(frame) = Frame::new_checked(&bytes[..]) {
                let repr = Repr::parse(&frame).unwrap();
                let _ = frame.payload();
                let mut out = bytes.clone();
                repr.emit(&mut Frame::new_unchecked(&mut out[..]));
                prop_assert_eq!(out, bytes);
            }
        }
    }
}
