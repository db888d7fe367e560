//! VXLAN (RFC 7348): the 8-byte header in front of an inner Ethernet frame,
//! carried over UDP port [`PORT`].
//!
//! ```text
//! |R|R|R|R|I|R|R|R|            Reserved (24)                       |
//! |                VXLAN Network Identifier (24)   | Reserved (8)   |
//! ```
//!
//! Receivers must ignore the reserved bits (RFC 7348 §5), so `Repr::parse`
//! only requires the I flag; `emit` writes them as zero.

use super::{Error, Result};

/// The IANA-assigned UDP destination port.
pub const PORT: u16 = 4789;
/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// The I flag: the VNI is valid.
pub const FLAG_VNI_VALID: u8 = 0x08;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;

mod field {
    pub type Field = core::ops::Range<usize>;

    pub const FLAGS: usize = 0;
    pub const RESERVED1: Field = 1..4;
    pub const VNI: Field = 4..7;
    pub const RESERVED2: usize = 7;
}

/// A zero-copy view of a VXLAN header and its inner frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
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

    /// `Truncated` if the buffer cannot hold the 8-byte header.
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

    /// The flags byte (I is [`FLAG_VNI_VALID`]; the rest are reserved).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    #[inline]
    pub fn vni_valid(&self) -> bool {
        self.flags() & FLAG_VNI_VALID != 0
    }

    #[inline]
    pub fn vni(&self) -> u32 {
        let v = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, v[0], v[1], v[2]])
    }

    /// The inner Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets the 24-bit VNI (higher bits are dropped).
    #[inline]
    pub fn set_vni(&mut self, value: u32) {
        debug_assert!(value <= MAX_VNI);
        let [_, a, b, c] = value.to_be_bytes();
        self.buffer.as_mut()[field::VNI].copy_from_slice(&[a, b, c]);
    }

    /// Zeroes the reserved bytes (the bits of the flags byte are `set_flags`'s).
    #[inline]
    pub fn clear_reserved(&mut self) {
        let data = self.buffer.as_mut();
        data[field::RESERVED1].fill(0);
        data[field::RESERVED2] = 0;
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// A parsed VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub vni: u32,
}

impl Repr {
    /// `Malformed` if the I flag is clear.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if !packet.vni_valid() {
            return Err(Error::Malformed);
        }
        Ok(Repr { vni: packet.vni() })
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the whole header: the I flag, the VNI, reserved bits zero.
    ///
    /// # Panics
    /// If the buffer is shorter than the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_flags(FLAG_VNI_VALID);
        packet.clear_reserved();
        packet.set_vni(self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // VNI 0x1234 (4660) carrying an ARP request from 02:00:00:00:00:01 for
    // 10.0.0.2; decoded by tshark as VXLAN, VNI 4660, then ARP.
    const VXLAN_ARP: [u8; 50] = [
        0x08, 0x00, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, // I flag, VNI 0x001234
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, // inner Ethernet
        0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x01, //
        0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, // ARP request
        0x00, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x01, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, //
        0x00, 0x02,
    ];

    #[test]
    fn golden_parse_and_emit() {
        let packet = Packet::new_checked(&VXLAN_ARP[..]).unwrap();
        assert_eq!(packet.flags(), FLAG_VNI_VALID);
        assert_eq!(packet.vni(), 4660);
        assert_eq!(packet.payload(), &VXLAN_ARP[8..]);
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(repr, Repr { vni: 4660 });

        let mut buf = [0xa5u8; 50];
        buf[HEADER_LEN..].copy_from_slice(&VXLAN_ARP[HEADER_LEN..]);
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, VXLAN_ARP);
    }

    #[test]
    fn vni_extremes() {
        for vni in [0, 1, MAX_VNI] {
            let mut buf = [0xa5u8; HEADER_LEN];
            Repr { vni }.emit(&mut Packet::new_unchecked(&mut buf[..]));
            assert_eq!(
                Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
                Ok(Repr { vni })
            );
            assert_eq!(buf[7], 0);
        }
    }

    #[test]
    fn reserved_bits_are_ignored_but_i_flag_is_required() {
        let mut buf = VXLAN_ARP;
        buf[0] = 0xff;
        buf[1] = 0xff;
        buf[7] = 0xff;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
            Ok(Repr { vni: 4660 })
        );
        buf[0] = 0xf7;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&VXLAN_ARP[..len]).unwrap_err(),
                Error::Truncated
            );
            assert_eq!(
                Repr::parse(&Packet::new_unchecked(&VXLAN_ARP[..len])),
                Err(Error::Truncated)
            );
        }
        for len in HEADER_LEN..VXLAN_ARP.len() {
            let packet = Packet::new_checked(&VXLAN_ARP[..len]).unwrap();
            assert_eq!(packet.payload().len(), len - HEADER_LEN);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..24)) {
            if let Ok(packet) = Packet::new_checked(&data[..]) {
                let _ = (packet.flags(), packet.payload());
                if let Ok(repr) = Repr::parse(&packet) {
                    prop_assert!(repr.vni <= MAX_VNI);
                }
            }
        }
    }
}
