//! Geneve (RFC 8926): the base header, its variable-length options, and the
//! encapsulated payload, carried over UDP port [`PORT`].
//!
//! ```text
//! |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//! |        Virtual Network Identifier (VNI)       |    Reserved   |
//! |                    Variable-Length Options                    |
//! ```
//!
//! `new_checked` ensures the options area (Opt Len × 4 bytes) fits; the
//! options themselves are walked by [`OptionsIter`] and by `Repr::parse`.

use super::{Error, Result};

/// The IANA-assigned UDP destination port.
pub const PORT: u16 = 6081;
/// Length of the base header.
pub const HEADER_LEN: usize = 8;
/// The only version defined.
pub const VERSION: u8 = 0;
/// Longest options area: Opt Len is 6 bits of 4-byte words.
pub const MAX_OPTIONS_LEN: usize = 63 * 4;
/// Length of an option's class, type and length fields.
pub const OPTION_HEADER_LEN: usize = 4;
/// Longest option data: the length is 5 bits of 4-byte words.
pub const MAX_OPTION_DATA_LEN: usize = 31 * 4;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;

/// Flags in byte 1.
pub mod flags {
    /// O: a control message; do not forward the payload as data.
    pub const OAM: u8 = 0x80;
    /// C: critical options are present.
    pub const CRITICAL: u8 = 0x40;
}

/// The high bit of an option type marks it critical: an endpoint that does
/// not understand it must drop the packet.
pub const OPTION_TYPE_CRITICAL: u8 = 0x80;

mod field {
    pub type Field = core::ops::Range<usize>;

    pub const VER_OPT_LEN: usize = 0;
    pub const FLAGS: usize = 1;
    pub const PROTOCOL_TYPE: Field = 2..4;
    pub const VNI: Field = 4..7;
    pub const RESERVED: usize = 7;
}

/// A zero-copy view of a Geneve header, its options and payload.
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

    /// `Truncated` if the buffer cannot hold the base header and the
    /// options area its Opt Len claims.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < self.header_len() {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_OPT_LEN] >> 6
    }

    /// Length of the options area in bytes.
    #[inline]
    pub fn options_len(&self) -> usize {
        (self.buffer.as_ref()[field::VER_OPT_LEN] & 0x3f) as usize * 4
    }

    /// Base header plus options: where the payload starts.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// The flags byte (see [`flags`]; the low six bits are reserved).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    #[inline]
    pub fn oam(&self) -> bool {
        self.flags() & flags::OAM != 0
    }

    #[inline]
    pub fn critical_options(&self) -> bool {
        self.flags() & flags::CRITICAL != 0
    }

    /// The EtherType of the payload (`ethertype::TEB` for Ethernet frames).
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        let data = &self.buffer.as_ref()[field::PROTOCOL_TYPE];
        u16::from_be_bytes([data[0], data[1]])
    }

    #[inline]
    pub fn vni(&self) -> u32 {
        let v = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, v[0], v[1], v[2]])
    }

    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    #[inline]
    pub fn options_iter(&self) -> OptionsIter<'_> {
        OptionsIter::new(self.options())
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version (2 bits) and the options length in bytes (a multiple
    /// of 4, at most 252). Accessors trust it: keep it within the buffer.
    #[inline]
    pub fn set_version_and_options_len(&mut self, version: u8, options_len: usize) {
        debug_assert!(version < 4 && options_len & 3 == 0 && options_len <= MAX_OPTIONS_LEN);
        self.buffer.as_mut()[field::VER_OPT_LEN] =
            (version << 6) | ((options_len / 4) as u8 & 0x3f);
    }

    #[inline]
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    #[inline]
    pub fn set_protocol_type(&mut self, value: u16) {
        self.buffer.as_mut()[field::PROTOCOL_TYPE].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the 24-bit VNI (higher bits are dropped).
    #[inline]
    pub fn set_vni(&mut self, value: u32) {
        debug_assert!(value <= MAX_VNI);
        let [_, a, b, c] = value.to_be_bytes();
        self.buffer.as_mut()[field::VNI].copy_from_slice(&[a, b, c]);
    }

    #[inline]
    pub fn set_reserved(&mut self, value: u8) {
        self.buffer.as_mut()[field::RESERVED] = value;
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

/// One Geneve option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneveOption<'a> {
    pub class: u16,
    /// The type, critical bit included.
    pub option_type: u8,
    pub data: &'a [u8],
}

impl GeneveOption<'_> {
    #[inline]
    pub fn is_critical(&self) -> bool {
        self.option_type & OPTION_TYPE_CRITICAL != 0
    }

    /// Header plus data: the bytes the option takes.
    #[inline]
    pub fn total_len(&self) -> usize {
        OPTION_HEADER_LEN + self.data.len()
    }
}

/// Walks Geneve options. Yields `Err(Malformed)` once, then stops, for an
/// option header cut short or an option running past the options area.
#[derive(Debug, Clone)]
pub struct OptionsIter<'a> {
    data: &'a [u8],
}

impl<'a> OptionsIter<'a> {
    #[inline]
    pub fn new(options: &'a [u8]) -> OptionsIter<'a> {
        OptionsIter { data: options }
    }
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = Result<GeneveOption<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let data = self.data;
        if data.is_empty() {
            return None;
        }
        let (class, option_type, data_len) = match data {
            [c0, c1, t, len, ..] => (
                u16::from_be_bytes([*c0, *c1]),
                *t,
                (*len & 0x1f) as usize * 4,
            ),
            _ => {
                self.data = &[];
                return Some(Err(Error::Malformed));
            }
        };
        let end = OPTION_HEADER_LEN + data_len;
        if end > data.len() {
            self.data = &[];
            return Some(Err(Error::Malformed));
        }
        self.data = &data[end..];
        Some(Ok(GeneveOption {
            class,
            option_type,
            data: &data[OPTION_HEADER_LEN..end],
        }))
    }
}

/// Writes one option at the start of `buf`; returns its length. `Malformed`
/// if `data` is not a multiple of 4 bytes or longer than 124; `Truncated` if
/// `buf` is too short.
pub fn emit_option(buf: &mut [u8], class: u16, option_type: u8, data: &[u8]) -> Result<usize> {
    if data.len() & 3 != 0 || data.len() > MAX_OPTION_DATA_LEN {
        return Err(Error::Malformed);
    }
    let len = OPTION_HEADER_LEN + data.len();
    let out = buf.get_mut(..len).ok_or(Error::Truncated)?;
    out[0..2].copy_from_slice(&class.to_be_bytes());
    out[2] = option_type;
    out[3] = (data.len() / 4) as u8;
    out[OPTION_HEADER_LEN..].copy_from_slice(data);
    Ok(len)
}

/// A parsed Geneve header. Options stay in the buffer; `options_len` says
/// how many bytes they take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub protocol_type: u16,
    pub vni: u32,
    pub oam: bool,
    pub critical_options: bool,
    pub options_len: usize,
}

impl Repr {
    /// `Unsupported` for a version other than 0 (RFC 8926 §3.4 says drop);
    /// `Malformed` if the options do not walk.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.version() != VERSION {
            return Err(Error::Unsupported);
        }
        for option in packet.options_iter() {
            option?;
        }
        Ok(Repr {
            protocol_type: packet.protocol_type(),
            vni: packet.vni(),
            oam: packet.oam(),
            critical_options: packet.critical_options(),
            options_len: packet.options_len(),
        })
    }

    /// Base header plus options.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len
    }

    /// Same as `header_len`: the payload is not part of the `Repr`.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        self.header_len()
    }

    /// Writes every base header field; the options area (`options_len`
    /// bytes, written with [`emit_option`]) is left as the buffer holds it.
    ///
    /// # Panics
    /// If the buffer is shorter than the base header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version_and_options_len(VERSION, self.options_len);
        let mut bits = 0;
        if self.oam {
            bits |= flags::OAM;
        }
        if self.critical_options {
            bits |= flags::CRITICAL;
        }
        packet.set_flags(bits);
        packet.set_protocol_type(self.protocol_type);
        packet.set_vni(self.vni);
        packet.set_reserved(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethertype;
    use proptest::prelude::*;

    // VNI 10, Ethernet payload, one critical OVN option (class 0x0102, type
    // 0x80, 4 bytes of metadata), carrying an ARP request. Decoded by tshark
    // as Geneve with "Critical Options Present" and the OVN option.
    const GENEVE_OVN: [u8; 58] = [
        0x02, 0x40, 0x65, 0x58, 0x00, 0x00, 0x0a, 0x00, // ver 0 opt len 2, C, TEB, VNI 10
        0x01, 0x02, 0x80, 0x01, 0x00, 0x01, 0x00, 0x02, // OVN option, 1 word of data
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, // inner Ethernet
        0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x01, //
        0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, // ARP request
        0x00, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x01, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, //
        0x00, 0x02,
    ];

    fn golden_repr() -> Repr {
        Repr {
            protocol_type: ethertype::TEB,
            vni: 10,
            oam: false,
            critical_options: true,
            options_len: 8,
        }
    }

    #[test]
    fn golden_parse() {
        let packet = Packet::new_checked(&GENEVE_OVN[..]).unwrap();
        assert_eq!(packet.version(), 0);
        assert_eq!(packet.options_len(), 8);
        assert_eq!(packet.header_len(), 16);
        assert!(packet.critical_options());
        assert!(!packet.oam());
        assert_eq!(packet.protocol_type(), ethertype::TEB);
        assert_eq!(packet.vni(), 10);
        assert_eq!(packet.payload(), &GENEVE_OVN[16..]);
        let options: Vec<_> = packet.options_iter().collect::<Result<_>>().unwrap();
        assert_eq!(
            options,
            [GeneveOption {
                class: 0x0102,
                option_type: 0x80,
                data: &[0, 1, 0, 2]
            }]
        );
        assert!(options[0].is_critical());
        assert_eq!(options[0].total_len(), 8);
        assert_eq!(Repr::parse(&packet).unwrap(), golden_repr());
    }

    #[test]
    fn golden_emit() {
        let repr = golden_repr();
        let mut buf = [0xa5u8; 58];
        buf[16..].copy_from_slice(&GENEVE_OVN[16..]);
        let len = emit_option(&mut buf[HEADER_LEN..], 0x0102, 0x80, &[0, 1, 0, 2]).unwrap();
        assert_eq!(len, repr.options_len);
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, GENEVE_OVN);
    }

    #[test]
    fn no_options_and_oam() {
        let repr = Repr {
            protocol_type: ethertype::IPV4,
            vni: MAX_VNI,
            oam: true,
            critical_options: false,
            options_len: 0,
        };
        let mut buf = [0xa5u8; HEADER_LEN];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [0x00, 0x80, 0x08, 0x00, 0xff, 0xff, 0xff, 0x00]);
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.options_iter().count(), 0);
        assert_eq!(Repr::parse(&packet), Ok(repr));
    }

    #[test]
    fn emit_option_rejects_bad_lengths() {
        let mut buf = [0u8; 256];
        assert_eq!(emit_option(&mut buf, 1, 2, &[0; 3]), Err(Error::Malformed));
        assert_eq!(
            emit_option(&mut buf, 1, 2, &[0; 128]),
            Err(Error::Malformed)
        );
        assert_eq!(emit_option(&mut buf, 1, 2, &[0; 124]), Ok(128));
        assert_eq!(
            emit_option(&mut buf[..7], 1, 2, &[0; 4]),
            Err(Error::Truncated)
        );
        assert_eq!(emit_option(&mut buf, 1, 2, &[]), Ok(4));
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..16 {
            assert_eq!(
                Packet::new_checked(&GENEVE_OVN[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
        for len in 16..GENEVE_OVN.len() {
            let packet = Packet::new_checked(&GENEVE_OVN[..len]).unwrap();
            assert_eq!(Repr::parse(&packet), Ok(golden_repr()));
        }
    }

    #[test]
    fn bogus_option_lengths() {
        // The option claims 2 words of data; only 1 is in the options area.
        let mut buf = GENEVE_OVN;
        buf[11] = 0x02;
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Err(Error::Malformed));
        let mut iter = packet.options_iter();
        assert_eq!(iter.next(), Some(Err(Error::Malformed)));
        assert_eq!(iter.next(), None);
        // An option header cut short by Opt Len.
        assert_eq!(
            OptionsIter::new(&[1, 2, 3]).next(),
            Some(Err(Error::Malformed))
        );
        // Opt Len past the buffer.
        let mut buf = GENEVE_OVN;
        buf[0] = 0x3f;
        assert_eq!(Packet::new_checked(&buf[..]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn other_versions_are_unsupported() {
        let mut buf = GENEVE_OVN;
        buf[0] |= 0x40;
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.version(), 1);
        assert_eq!(Repr::parse(&packet), Err(Error::Unsupported));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(packet) = Packet::new_checked(&data[..]) {
                let _ = (packet.flags(), packet.protocol_type(), packet.vni(), packet.payload());
                for option in packet.options_iter().flatten() {
                    let _ = option.is_critical();
                }
                if let Ok(repr) = Repr::parse(&packet) {
                    let mut out = data.clone();
                    repr.emit(&mut Packet::new_unchecked(&mut out[..]));
                    prop_assert_eq!(Repr::parse(&Packet::new_checked(&out[..]).unwrap()), Ok(repr));
                }
            }
        }
    }
}
