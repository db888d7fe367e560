//! ARP (RFC 826).
//!
//! The [`Packet`] view reads any hardware/protocol address sizes (its
//! address fields are slices whose lengths come from `hlen`/`plen`); the
//! [`Repr`] is Ethernet + IPv4 only, which is all Sluice answers or sends.
//!
//! ```text
//! +---------------+---------------+-------+-------+---------------+
//! |   hw type     | proto type    | hlen  | plen  |  operation    |
//! +---------------+---------------+-------+-------+---------------+
//! | sender hw (hlen) | sender proto (plen) | target hw | target proto |
//! ```

use core::fmt;
use std::net::Ipv4Addr;

use super::ethernet::EthernetAddress;
use super::{ethertype, Error, Result};

/// ARP hardware type for Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;

/// Length of an Ethernet/IPv4 ARP packet.
pub const ETHERNET_IPV4_LEN: usize = 28;

mod field {
    use core::ops::Range;

    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    /// Start of the variable-length addresses.
    pub const ADDRS: usize = 8;

    #[inline]
    pub const fn sha(hlen: u8, _plen: u8) -> Range<usize> {
        ADDRS..ADDRS + hlen as usize
    }

    #[inline]
    pub const fn spa(hlen: u8, plen: u8) -> Range<usize> {
        let start = sha(hlen, plen).end;
        start..start + plen as usize
    }

    #[inline]
    pub const fn tha(hlen: u8, plen: u8) -> Range<usize> {
        let start = spa(hlen, plen).end;
        start..start + hlen as usize
    }

    #[inline]
    pub const fn tpa(hlen: u8, plen: u8) -> Range<usize> {
        let start = tha(hlen, plen).end;
        start..start + plen as usize
    }
}

/// Length of the fixed part, before the addresses.
pub const FIXED_LEN: usize = field::ADDRS;

/// The ARP operation code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Request,
    Reply,
    /// Any other code (RARP, InARP, ...).
    Unknown(u16),
}

impl From<u16> for Operation {
    #[inline]
    fn from(code: u16) -> Self {
        match code {
            1 => Operation::Request,
            2 => Operation::Reply,
            other => Operation::Unknown(other),
        }
    }
}

impl From<Operation> for u16 {
    #[inline]
    fn from(op: Operation) -> u16 {
        match op {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Unknown(code) => code,
        }
    }
}

/// A zero-copy view of an ARP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking its length.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after checking that it holds the fixed part and both
    /// address pairs its `hlen`/`plen` announce.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` if the buffer is shorter than the fixed part or the
    /// addresses. Changing `hlen`/`plen` through the setters invalidates a
    /// previous check.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < FIXED_LEN {
            return Err(Error::Truncated);
        }
        if data.len() < field::tpa(self.hardware_len(), self.protocol_len()).end {
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
    pub fn hardware_type(&self) -> u16 {
        self.read_u16(field::HTYPE.start)
    }

    /// The protocol type, an EtherType.
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        self.read_u16(field::PTYPE.start)
    }

    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    #[inline]
    pub fn operation(&self) -> Operation {
        Operation::from(self.read_u16(field::OPER.start))
    }

    #[inline]
    pub fn source_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::sha(self.hardware_len(), self.protocol_len())]
    }

    #[inline]
    pub fn source_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::spa(self.hardware_len(), self.protocol_len())]
    }

    #[inline]
    pub fn target_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::tha(self.hardware_len(), self.protocol_len())]
    }

    #[inline]
    pub fn target_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::tpa(self.hardware_len(), self.protocol_len())]
    }

    /// Whether the packet is Ethernet/IPv4 (the only shape [`Repr`] reads).
    #[inline]
    pub fn is_ethernet_ipv4(&self) -> bool {
        self.hardware_type() == HTYPE_ETHERNET
            && self.protocol_type() == ethertype::IPV4
            && self.hardware_len() == 6
            && self.protocol_len() == 4
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn write_u16(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_hardware_type(&mut self, value: u16) {
        self.write_u16(field::HTYPE.start, value);
    }

    #[inline]
    pub fn set_protocol_type(&mut self, value: u16) {
        self.write_u16(field::PTYPE.start, value);
    }

    #[inline]
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    #[inline]
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    #[inline]
    pub fn set_operation(&mut self, op: Operation) {
        self.write_u16(field::OPER.start, op.into());
    }

    /// Panics if `addr.len()` differs from `hardware_len()`.
    #[inline]
    pub fn set_source_hardware_addr(&mut self, addr: &[u8]) {
        let r = field::sha(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[r].copy_from_slice(addr);
    }

    /// Panics if `addr.len()` differs from `protocol_len()`.
    #[inline]
    pub fn set_source_protocol_addr(&mut self, addr: &[u8]) {
        let r = field::spa(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[r].copy_from_slice(addr);
    }

    /// Panics if `addr.len()` differs from `hardware_len()`.
    #[inline]
    pub fn set_target_hardware_addr(&mut self, addr: &[u8]) {
        let r = field::tha(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[r].copy_from_slice(addr);
    }

    /// Panics if `addr.len()` differs from `protocol_len()`.
    #[inline]
    pub fn set_target_protocol_addr(&mut self, addr: &[u8]) {
        let r = field::tpa(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[r].copy_from_slice(addr);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A parsed Ethernet/IPv4 ARP request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    pub operation: Operation,
    pub source_hw: EthernetAddress,
    pub source_ip: Ipv4Addr,
    pub target_hw: EthernetAddress,
    pub target_ip: Ipv4Addr,
}

impl Repr {
    /// Reads an Ethernet/IPv4 request or reply. Other hardware/protocol
    /// types, address sizes or operations are `Unsupported`.
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        if !packet.is_ethernet_ipv4() {
            return Err(Error::Unsupported);
        }
        let operation = packet.operation();
        if let Operation::Unknown(_) = operation {
            return Err(Error::Unsupported);
        }
        // check_len and the 6/4 sizes guarantee the 28 bytes.
        let d: &[u8; ETHERNET_IPV4_LEN] = packet.buffer.as_ref()[..ETHERNET_IPV4_LEN]
            .try_into()
            .map_err(|_| Error::Truncated)?;
        Ok(Repr {
            operation,
            source_hw: EthernetAddress([d[8], d[9], d[10], d[11], d[12], d[13]]),
            source_ip: Ipv4Addr::new(d[14], d[15], d[16], d[17]),
            target_hw: EthernetAddress([d[18], d[19], d[20], d[21], d[22], d[23]]),
            target_ip: Ipv4Addr::new(d[24], d[25], d[26], d[27]),
        })
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        ETHERNET_IPV4_LEN
    }

    /// Writes all 28 bytes. The packet must be at least that long.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        packet.set_hardware_type(HTYPE_ETHERNET);
        packet.set_protocol_type(ethertype::IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(&self.source_hw.0);
        packet.set_source_protocol_addr(&self.source_ip.octets());
        packet.set_target_hardware_addr(&self.target_hw.0);
        packet.set_target_protocol_addr(&self.target_ip.octets());
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operation {
            Operation::Request => write!(
                f,
                "ARP who-has {} tell {} ({})",
                self.target_ip, self.source_ip, self.source_hw
            ),
            Operation::Reply => write!(
                f,
                "ARP {} is-at {} (to {} {})",
                self.source_ip, self.source_hw, self.target_ip, self.target_hw
            ),
            Operation::Unknown(code) => write!(f, "ARP op {code}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // who-has 192.168.1.1 tell 192.168.1.100 (00:1b:21:3a:4f:5c).
    const REQUEST: [u8; 28] = [
        0x00, 0x01, // htype Ethernet
        0x08, 0x00, // ptype IPv4
        0x06, 0x04, // hlen, plen
        0x00, 0x01, // request
        0x00, 0x1b, 0x21, 0x3a, 0x4f, 0x5c, // sha
        0xc0, 0xa8, 0x01, 0x64, // spa 192.168.1.100
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tha (unknown)
        0xc0, 0xa8, 0x01, 0x01, // tpa 192.168.1.1
    ];

    // 192.168.1.1 is-at 52:54:00:12:34:56, back to the requester.
    const REPLY: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, // reply
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // sha
        0xc0, 0xa8, 0x01, 0x01, // spa
        0x00, 0x1b, 0x21, 0x3a, 0x4f, 0x5c, // tha
        0xc0, 0xa8, 0x01, 0x64, // tpa
    ];

    const HOST: EthernetAddress = EthernetAddress([0x00, 0x1b, 0x21, 0x3a, 0x4f, 0x5c]);
    const ROUTER: EthernetAddress = EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

    fn request_repr() -> Repr {
        Repr {
            operation: Operation::Request,
            source_hw: HOST,
            source_ip: Ipv4Addr::new(192, 168, 1, 100),
            target_hw: EthernetAddress([0; 6]),
            target_ip: Ipv4Addr::new(192, 168, 1, 1),
        }
    }

    fn reply_repr() -> Repr {
        Repr {
            operation: Operation::Reply,
            source_hw: ROUTER,
            source_ip: Ipv4Addr::new(192, 168, 1, 1),
            target_hw: HOST,
            target_ip: Ipv4Addr::new(192, 168, 1, 100),
        }
    }

    #[test]
    fn golden_view() {
        let p = Packet::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), 0x0800);
        assert_eq!(p.hardware_len(), 6);
        assert_eq!(p.protocol_len(), 4);
        assert_eq!(p.operation(), Operation::Request);
        assert_eq!(p.source_hardware_addr(), &HOST.0);
        assert_eq!(p.source_protocol_addr(), &[192, 168, 1, 100]);
        assert_eq!(p.target_hardware_addr(), &[0; 6]);
        assert_eq!(p.target_protocol_addr(), &[192, 168, 1, 1]);
        assert!(p.is_ethernet_ipv4());
    }

    #[test]
    fn golden_parse() {
        assert_eq!(
            Repr::parse(&Packet::new_checked(&REQUEST[..]).unwrap()).unwrap(),
            request_repr()
        );
        assert_eq!(
            Repr::parse(&Packet::new_checked(&REPLY[..]).unwrap()).unwrap(),
            reply_repr()
        );
        // Trailing Ethernet padding is ignored.
        let mut padded = [0u8; 46];
        padded[..28].copy_from_slice(&REPLY);
        assert_eq!(
            Repr::parse(&Packet::new_checked(&padded[..]).unwrap()).unwrap(),
            reply_repr()
        );
    }

    #[test]
    fn golden_emit() {
        for (repr, golden) in [(request_repr(), REQUEST), (reply_repr(), REPLY)] {
            let mut buf = [0xa5u8; 28];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            assert_eq!(buf, golden);
            assert_eq!(repr.buffer_len(), 28);
        }
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..REQUEST.len() {
            assert_eq!(
                Packet::new_checked(&REQUEST[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
    }

    #[test]
    fn other_sizes_are_read_but_not_parsed() {
        // An address-size claim the buffer cannot hold.
        let mut big = REQUEST;
        big[4] = 16;
        assert_eq!(Packet::new_checked(&big[..]).unwrap_err(), Error::Truncated);

        // A hypothetical 8-byte hardware address: the view reads it.
        let mut odd = [0u8; 8 + 2 * (8 + 4)];
        odd[..8].copy_from_slice(&[0x00, 0x06, 0x08, 0x00, 8, 4, 0x00, 0x01]);
        odd[8..16].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        odd[16..20].copy_from_slice(&[10, 0, 0, 1]);
        odd[28..32].copy_from_slice(&[10, 0, 0, 2]);
        let p = Packet::new_checked(&odd[..]).unwrap();
        assert_eq!(p.source_hardware_addr(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(p.source_protocol_addr(), &[10, 0, 0, 1]);
        assert_eq!(p.target_hardware_addr(), &[0; 8]);
        assert_eq!(p.target_protocol_addr(), &[10, 0, 0, 2]);
        assert_eq!(Repr::parse(&p).unwrap_err(), Error::Unsupported);

        for (at, value) in [(1, 6u8), (2, 0x86), (4, 5), (5, 16), (7, 3)] {
            let mut other = [0u8; 64];
            other[..28].copy_from_slice(&REQUEST);
            other[at] = value;
            let p = Packet::new_checked(&other[..]).unwrap();
            assert_eq!(
                Repr::parse(&p).unwrap_err(),
                Error::Unsupported,
                "byte {at}"
            );
        }
    }

    #[test]
    fn operation_codes() {
        for code in 0..8u16 {
            assert_eq!(u16::from(Operation::from(code)), code);
        }
        assert_eq!(Operation::from(3), Operation::Unknown(3));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.source_hardware_addr(), p.source_protocol_addr());
                let _ = (p.target_hardware_addr(), p.target_protocol_addr(), p.operation());
                if let Ok(repr) = Repr::parse(&p) {
                    let mut out = bytes.clone();
                    repr.emit(&mut Packet::new_unchecked(&mut out[..]));
                    prop_assert_eq!(out, bytes);
                }
            }
        }

        #[test]
        fn plausible_packets_never_panic(
            hlen in 0u8..20, plen in 0u8..20, op in 0u16..5,
            rest in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut bytes = vec![0x00, 0x01, 0x08, 0x00, hlen, plen];
            bytes.extend_from_slice(&op.to_be_bytes());
            bytes.extend_from_slice(&rest);
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = p.target_protocol_addr();
                let _ = Repr::parse(&p);
            }
        }
    }
}
