//! IPv6 extension headers (RFC 8200 §4) and the walk over their chain.
//!
//! Views:
//! * [`Header`]: the shape shared by hop-by-hop options (0), routing (43)
//!   and destination options (60): next header, length in 8-octet units not
//!   counting the first, then data. [`Header::options_iter`] reads the
//!   options of hop-by-hop and destination options headers.
//! * [`RoutingHeader`]: routing type, segments left and type-specific data.
//! * [`FragmentHeader`]: the fixed 8-byte fragment header (44).
//!
//! [`walk`] follows the chain from the first byte after the fixed header to
//! the upper-layer header. It also steps over AH (51), whose length is in
//! 4-octet units; ESP (50) is opaque and ends the walk like any upper-layer
//! protocol. The walk is bounded by [`MAX_EXT_HEADERS`] and reads each
//! length field only after checking it is in the buffer, so hostile chains
//! can neither make it loop nor panic.

use core::fmt;

use super::{ip_proto, Error, Result};

mod field {
    use core::ops::Range;

    pub const NXT_HDR: usize = 0;
    pub const LENGTH: usize = 1;
    pub const DATA_START: usize = 2;

    pub const ROUTING_TYPE: usize = 2;
    pub const SEGMENTS_LEFT: usize = 3;
    pub const ROUTING_DATA_START: usize = 4;

    pub const FRAG_RESERVED: usize = 1;
    pub const FRAG_OFF_M: Range<usize> = 2..4;
    pub const FRAG_IDENT: Range<usize> = 4..8;
}

/// The most extension headers [`walk`] follows before giving up.
pub const MAX_EXT_HEADERS: usize = 8;
/// Length of the fragment header.
pub const FRAGMENT_HEADER_LEN: usize = 8;
/// Shortest extension header in 8-octet units (hdr ext len 0).
pub const MIN_HEADER_LEN: usize = 8;
/// Shortest AH: next header, length, reserved, SPI and sequence number.
pub const MIN_AH_LEN: usize = 12;

/// Whether `next_header` names a header [`walk`] steps over.
#[inline]
pub const fn is_extension_header(next_header: u8) -> bool {
    matches!(
        next_header,
        ip_proto::HOPOPTS
            | ip_proto::IPV6_ROUTE
            | ip_proto::IPV6_FRAG
            | ip_proto::IPV6_OPTS
            | ip_proto::AH
    )
}

#[inline]
fn read_u16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

/// Length in bytes of a header in 8-octet units, from its length field.
#[inline]
const fn units8_len(hdr_ext_len: u8) -> usize {
    (hdr_ext_len as usize + 1) * 8
}

/// Checks that `buf` holds the two leading bytes and a header of the length
/// they announce (8-octet units).
#[inline]
fn check_units8(buf: &[u8]) -> Result<()> {
    match buf.get(field::LENGTH) {
        None => Err(Error::Truncated),
        Some(&len) if units8_len(len) > buf.len() => Err(Error::Truncated),
        Some(_) => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Generic header: hop-by-hop, destination options, routing.
// ---------------------------------------------------------------------------

/// A zero-copy view of an extension header whose length is in 8-octet units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Header<T> {
        Header { buffer }
    }

    /// Wraps `buffer` after checking that the whole header is in it.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Header<T>> {
        let header = Self::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    /// `Err(Truncated)` if the buffer is shorter than the header its length
    /// field announces.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        check_units8(self.buffer.as_ref())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// The raw length field: 8-octet units after the first eight bytes.
    #[inline]
    pub fn hdr_ext_len(&self) -> u8 {
        self.buffer.as_ref()[field::LENGTH]
    }

    /// The header's length in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        units8_len(self.hdr_ext_len())
    }

    /// Everything after the two leading bytes, to the end of the header.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA_START..self.header_len()]
    }

    /// The options of a hop-by-hop or destination options header.
    #[inline]
    pub fn options_iter(&self) -> OptionsIter<'_> {
        OptionsIter::new(self.data())
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Header<&'a T> {
    /// The bytes after this header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    #[inline]
    pub fn set_next_header(&mut self, next_header: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = next_header;
    }

    #[inline]
    pub fn set_hdr_ext_len(&mut self, len: u8) {
        self.buffer.as_mut()[field::LENGTH] = len;
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::DATA_START..end]
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Header<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A parsed generic extension header; `data` borrows from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeaderRepr<'a> {
    pub next_header: u8,
    /// Bytes after next header and length. Emit pads them with zeros (Pad1
    /// in an options header) to a multiple of 8 bytes in all.
    pub data: &'a [u8],
}

impl<'a> HeaderRepr<'a> {
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(header: &Header<&'a T>) -> Result<HeaderRepr<'a>> {
        header.check_len()?;
        let buf: &'a [u8] = header.buffer.as_ref();
        Ok(HeaderRepr {
            next_header: header.next_header(),
            data: &buf[field::DATA_START..header.header_len()],
        })
    }

    /// Bytes emit writes: 2 + data rounded up to 8 (at most 2048).
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        (field::DATA_START + self.data.len() + 7) & !7
    }

    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, header: &mut Header<&mut T>) {
        let len = self.buffer_len();
        debug_assert!(len <= units8_len(u8::MAX));
        header.set_next_header(self.next_header);
        header.set_hdr_ext_len((len / 8 - 1) as u8);
        let data = header.data_mut();
        data[..self.data.len()].copy_from_slice(self.data);
        data[self.data.len()..].fill(0);
    }
}

// ---------------------------------------------------------------------------
// Hop-by-hop and destination options.
// ---------------------------------------------------------------------------

/// Option types (IANA "Destination Options and Hop-by-Hop Options").
pub mod option_type {
    pub const PAD1: u8 = 0x00;
    pub const PADN: u8 = 0x01;
    pub const ROUTER_ALERT: u8 = 0x05;
    pub const TUNNEL_ENCAP_LIMIT: u8 = 0x04;
    pub const JUMBO_PAYLOAD: u8 = 0xc2;
    pub const HOME_ADDRESS: u8 = 0xc9;
}

/// One option of a hop-by-hop or destination options header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Option<'a> {
    Pad1,
    /// PadN with this many padding bytes after the length octet.
    PadN(u8),
    /// Any other option; `data` excludes the type and length octets.
    Tlv {
        kind: u8,
        data: &'a [u8],
    },
}

/// What a node must do with an option type it does not recognise (the two
/// high-order bits of the type, RFC 8200 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnknownOptionAction {
    Skip,
    Discard,
    DiscardSendParamProblem,
    DiscardSendParamProblemUnlessMulticast,
}

impl UnknownOptionAction {
    #[inline]
    pub const fn of(kind: u8) -> UnknownOptionAction {
        match kind >> 6 {
            0 => UnknownOptionAction::Skip,
            1 => UnknownOptionAction::Discard,
            2 => UnknownOptionAction::DiscardSendParamProblem,
            _ => UnknownOptionAction::DiscardSendParamProblemUnlessMulticast,
        }
    }
}

/// Whether an option's data may change en route (the third-highest bit).
#[inline]
pub const fn option_may_change(kind: u8) -> bool {
    kind & 0x20 != 0
}

/// Walks hop-by-hop/destination options. Yields `Err(Malformed)` once, then
/// stops, if an option's length octet is missing or its data runs past the
/// end of the header.
#[derive(Debug, Clone)]
pub struct OptionsIter<'a> {
    rest: &'a [u8],
}

impl<'a> OptionsIter<'a> {
    /// Iterates `data`: a header's bytes after next header and length.
    #[inline]
    pub const fn new(data: &'a [u8]) -> OptionsIter<'a> {
        OptionsIter { rest: data }
    }
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = Result<Ipv6Option<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after_kind) = self.rest.split_first()?;
        if kind == option_type::PAD1 {
            self.rest = after_kind;
            return Some(Ok(Ipv6Option::Pad1));
        }
        let Some(&len) = after_kind.first() else {
            self.rest = &[];
            return Some(Err(Error::Malformed));
        };
        let end = 2 + len as usize;
        if end > self.rest.len() {
            self.rest = &[];
            return Some(Err(Error::Malformed));
        }
        let data = &self.rest[2..end];
        self.rest = &self.rest[end..];
        Some(Ok(if kind == option_type::PADN {
            Ipv6Option::PadN(len)
        } else {
            Ipv6Option::Tlv { kind, data }
        }))
    }
}

impl core::iter::FusedIterator for OptionsIter<'_> {}

// ---------------------------------------------------------------------------
// Routing header.
// ---------------------------------------------------------------------------

/// Routing types (IANA "Routing Types").
pub mod routing_type {
    /// Deprecated (RFC 5095); must not be processed.
    pub const SOURCE_ROUTE: u8 = 0;
    pub const NIMROD: u8 = 1;
    /// Mobile IPv6 (RFC 6275).
    pub const TYPE2: u8 = 2;
    /// RPL source route (RFC 6554).
    pub const RPL: u8 = 3;
    /// Segment routing header (RFC 8754).
    pub const SEGMENT_ROUTING: u8 = 4;
}

/// A zero-copy view of a routing header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RoutingHeader<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> RoutingHeader<T> {
        RoutingHeader { buffer }
    }

    /// Wraps `buffer` after checking that the whole header is in it.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<RoutingHeader<T>> {
        let header = Self::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    /// `Err(Truncated)` if the buffer is shorter than the header its length
    /// field announces (which is never less than 8 bytes).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        check_units8(self.buffer.as_ref())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    #[inline]
    pub fn hdr_ext_len(&self) -> u8 {
        self.buffer.as_ref()[field::LENGTH]
    }

    #[inline]
    pub fn header_len(&self) -> usize {
        units8_len(self.hdr_ext_len())
    }

    /// See [`routing_type`].
    #[inline]
    pub fn routing_type(&self) -> u8 {
        self.buffer.as_ref()[field::ROUTING_TYPE]
    }

    #[inline]
    pub fn segments_left(&self) -> u8 {
        self.buffer.as_ref()[field::SEGMENTS_LEFT]
    }

    /// Type-specific data: everything after segments left.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::ROUTING_DATA_START..self.header_len()]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> RoutingHeader<&'a T> {
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RoutingHeader<T> {
    #[inline]
    pub fn set_next_header(&mut self, next_header: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = next_header;
    }

    #[inline]
    pub fn set_hdr_ext_len(&mut self, len: u8) {
        self.buffer.as_mut()[field::LENGTH] = len;
    }

    #[inline]
    pub fn set_routing_type(&mut self, routing_type: u8) {
        self.buffer.as_mut()[field::ROUTING_TYPE] = routing_type;
    }

    #[inline]
    pub fn set_segments_left(&mut self, segments_left: u8) {
        self.buffer.as_mut()[field::SEGMENTS_LEFT] = segments_left;
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::ROUTING_DATA_START..end]
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for RoutingHeader<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A parsed routing header; `data` borrows from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoutingRepr<'a> {
    pub next_header: u8,
    pub routing_type: u8,
    pub segments_left: u8,
    /// Type-specific data. Emit pads it with zeros to a multiple of 8 bytes
    /// in all.
    pub data: &'a [u8],
}

impl<'a> RoutingRepr<'a> {
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        header: &RoutingHeader<&'a T>,
    ) -> Result<RoutingRepr<'a>> {
        header.check_len()?;
        let buf: &'a [u8] = header.buffer.as_ref();
        Ok(RoutingRepr {
            next_header: header.next_header(),
            routing_type: header.routing_type(),
            segments_left: header.segments_left(),
            data: &buf[field::ROUTING_DATA_START..header.header_len()],
        })
    }

    /// Bytes emit writes: 4 + data rounded up to 8 (at most 2048).
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        (field::ROUTING_DATA_START + self.data.len() + 7) & !7
    }

    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, header: &mut RoutingHeader<&mut T>) {
        let len = self.buffer_len();
        debug_assert!(len <= units8_len(u8::MAX));
        header.set_next_header(self.next_header);
        header.set_hdr_ext_len((len / 8 - 1) as u8);
        header.set_routing_type(self.routing_type);
        header.set_segments_left(self.segments_left);
        let data = header.data_mut();
        data[..self.data.len()].copy_from_slice(self.data);
        data[self.data.len()..].fill(0);
    }
}

// ---------------------------------------------------------------------------
// Fragment header.
// ---------------------------------------------------------------------------

/// A zero-copy view of the fragment header.
///
/// ```text
/// +---------------+---------------+-------------------------+---+-+
/// |  Next Header  |   Reserved    |     Fragment Offset     |Res|M|
/// +---------------+---------------+-------------------------+---+-+
/// |                        Identification                         |
/// +---------------------------------------------------------------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FragmentHeader<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> FragmentHeader<T> {
        FragmentHeader { buffer }
    }

    #[inline]
    pub fn new_checked(buffer: T) -> Result<FragmentHeader<T>> {
        let header = Self::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    /// `Err(Truncated)` if the buffer is shorter than 8 bytes.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < FRAGMENT_HEADER_LEN {
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
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// Fragment offset in bytes (the 13-bit field × 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FRAG_OFF_M.start) & 0xfff8
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FRAG_OFF_M.start) & 0x0001 != 0
    }

    #[inline]
    pub fn ident(&self) -> u32 {
        let d = self.buffer.as_ref();
        u32::from_be_bytes([d[4], d[5], d[6], d[7]])
    }

    /// The fragment's position and identity.
    #[inline]
    pub fn info(&self) -> FragmentInfo {
        FragmentInfo {
            offset: self.frag_offset(),
            more: self.more_frags(),
            ident: self.ident(),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> FragmentHeader<&'a T> {
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[FRAGMENT_HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FragmentHeader<T> {
    #[inline]
    fn set_off_m(&mut self, word: u16) {
        self.buffer.as_mut()[field::FRAG_OFF_M].copy_from_slice(&word.to_be_bytes());
    }

    #[inline]
    pub fn set_next_header(&mut self, next_header: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = next_header;
    }

    /// Zeroes the reserved octet and the two reserved bits.
    #[inline]
    pub fn clear_reserved(&mut self) {
        self.buffer.as_mut()[field::FRAG_RESERVED] = 0;
        let word = read_u16(self.buffer.as_ref(), field::FRAG_OFF_M.start) & 0xfff9;
        self.set_off_m(word);
    }

    /// Sets the offset from a byte offset (a multiple of 8).
    #[inline]
    pub fn set_frag_offset(&mut self, offset: u16) {
        let word =
            (read_u16(self.buffer.as_ref(), field::FRAG_OFF_M.start) & 0x0007) | (offset & 0xfff8);
        self.set_off_m(word);
    }

    #[inline]
    pub fn set_more_frags(&mut self, more: bool) {
        let word = (read_u16(self.buffer.as_ref(), field::FRAG_OFF_M.start) & !1) | more as u16;
        self.set_off_m(word);
    }

    #[inline]
    pub fn set_ident(&mut self, ident: u32) {
        self.buffer.as_mut()[field::FRAG_IDENT].copy_from_slice(&ident.to_be_bytes());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[FRAGMENT_HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for FragmentHeader<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A parsed fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentRepr {
    pub next_header: u8,
    /// Offset in bytes (a multiple of 8).
    pub frag_offset: u16,
    pub more_frags: bool,
    pub ident: u32,
}

impl FragmentRepr {
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(header: &FragmentHeader<&T>) -> Result<FragmentRepr> {
        header.check_len()?;
        Ok(FragmentRepr {
            next_header: header.next_header(),
            frag_offset: header.frag_offset(),
            more_frags: header.more_frags(),
            ident: header.ident(),
        })
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        FRAGMENT_HEADER_LEN
    }

    /// Writes all 8 bytes, reserved fields as zero.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, header: &mut FragmentHeader<&mut T>) {
        header.set_next_header(self.next_header);
        header.buffer.as_mut()[field::FRAG_RESERVED] = 0;
        header.set_off_m((self.frag_offset & 0xfff8) | self.more_frags as u16);
        header.set_ident(self.ident);
    }
}

// ---------------------------------------------------------------------------
// The chain walk.
// ---------------------------------------------------------------------------

/// Where a packet sits in its fragment series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentInfo {
    /// Offset in bytes of this fragment's data in the original payload.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
    pub ident: u32,
}

impl FragmentInfo {
    /// The first fragment, which carries the upper-layer header.
    #[inline]
    pub const fn is_first(&self) -> bool {
        self.offset == 0
    }

    /// An atomic fragment (RFC 6946): offset 0 and no more fragments, so
    /// the packet is whole.
    #[inline]
    pub const fn is_atomic(&self) -> bool {
        self.offset == 0 && !self.more
    }
}

/// The result of [`walk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtChain {
    /// The protocol after the last extension header (59 if none follows).
    pub upper_protocol: u8,
    /// Offset of the upper-layer header in the walked buffer.
    pub upper_offset: usize,
    /// Set if a fragment header was found. For a non-first fragment the walk
    /// stops right after the fragment header: `upper_protocol` is that
    /// header's next header, but `upper_offset` points into the middle of
    /// the fragmented data, not at an upper-layer header.
    pub fragment: Option<FragmentInfo>,
    /// Extension headers stepped over.
    pub count: u8,
}

impl ExtChain {
    /// Whether an upper-layer header starts at `upper_offset` (false for
    /// non-first fragments).
    #[inline]
    pub const fn has_upper_header(&self) -> bool {
        match self.fragment {
            Some(f) => f.offset == 0,
            None => true,
        }
    }
}

impl fmt::Display for ExtChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ext headers, upper {} at {}",
            self.count, self.upper_protocol, self.upper_offset
        )?;
        if let Some(frag) = self.fragment {
            write!(
                f,
                ", frag off {}{}",
                frag.offset,
                if frag.more { "+" } else { "" }
            )?;
        }
        Ok(())
    }
}

/// Length of an AH header from its buffer: (payload length + 2) × 4 bytes,
/// which for IPv6 must be a multiple of 8 and at least [`MIN_AH_LEN`].
#[inline]
pub fn ah_header_len(buf: &[u8]) -> Result<usize> {
    let len_field = *buf.get(field::LENGTH).ok_or(Error::Truncated)?;
    let len = (len_field as usize + 2) * 4;
    if len < MIN_AH_LEN || len & 7 != 0 {
        return Err(Error::Malformed);
    }
    if len > buf.len() {
        return Err(Error::Truncated);
    }
    Ok(len)
}

/// Follows the extension-header chain in `buf` (the bytes after the fixed
/// IPv6 header), starting from the fixed header's next header.
///
/// Errors: `Truncated` if a header runs past `buf`; `Malformed` for
/// hop-by-hop anywhere but first (RFC 8200 §4.1), a second fragment header,
/// or an impossible AH length; `Unsupported` past [`MAX_EXT_HEADERS`].
/// Option contents are not checked here; [`Header::options_iter`] does that
/// for the stages that read options.
#[inline]
pub fn walk(first_next_header: u8, buf: &[u8]) -> Result<ExtChain> {
    let mut next = first_next_header;
    let mut offset = 0usize;
    let mut count = 0u8;
    let mut fragment = None;
    while is_extension_header(next) {
        if next == ip_proto::HOPOPTS && count != 0 {
            return Err(Error::Malformed);
        }
        if count as usize == MAX_EXT_HEADERS {
            return Err(Error::Unsupported);
        }
        // `offset` only ever advances past a header that was in `buf`.
        let rest = buf.get(offset..).ok_or(Error::Truncated)?;
        let (following, len) = match next {
            ip_proto::IPV6_FRAG => {
                let header = FragmentHeader::new_checked(rest)?;
                if fragment.is_some() {
                    return Err(Error::Malformed);
                }
                let info = header.info();
                fragment = Some(info);
                if !info.is_first() {
                    return Ok(ExtChain {
                        upper_protocol: header.next_header(),
                        upper_offset: offset + FRAGMENT_HEADER_LEN,
                        fragment,
                        count: count + 1,
                    });
                }
                (header.next_header(), FRAGMENT_HEADER_LEN)
            }
            ip_proto::AH => {
                let len = ah_header_len(rest)?;
                (rest[field::NXT_HDR], len)
            }
            _ => {
                let header = Header::new_checked(rest)?;
                (header.next_header(), header.header_len())
            }
        };
        next = following;
        offset += len;
        count += 1;
    }
    Ok(ExtChain {
        upper_protocol: next,
        upper_offset: offset,
        fragment,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The hop-by-hop header of an MLDv2 report: next header ICMPv6, length
    // 0 (8 bytes), Router Alert (type 5, length 2, value 0 = MLD), PadN
    // with no padding bytes.
    const HBH_ROUTER_ALERT: [u8; 8] = [0x3a, 0x00, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00];

    // Destination options padded with PadN(4); next header: none.
    const DEST_OPTS_PADN: [u8; 8] = [0x3b, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00];

    // A segment routing header (type 4) with two segments, segments left 1,
    // last entry 1: 8 + 2×16 = 40 bytes, hdr ext len 4. Next header UDP.
    const SRH: [u8; 40] = [
        0x11, 0x04, 0x04, 0x01, // next UDP, len 4, type 4, segments left 1
        0x01, 0x00, 0x00, 0x00, // last entry 1, flags 0, tag 0
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // segment[0] 2001:db8::3
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, //
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // segment[1] 2001:db8::2
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, //
    ];

    // A middle fragment: next UDP, offset 185 × 8 = 1480, M set; the
    // offset/flags word is 185 << 3 | 1 = 0x05c9. Ident 0xdeadbeef.
    const FRAG_MIDDLE: [u8; 8] = [0x11, 0x00, 0x05, 0xc9, 0xde, 0xad, 0xbe, 0xef];

    // First fragment: offset 0, M set.
    const FRAG_FIRST: [u8; 8] = [0x11, 0x00, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef];

    // AH (RFC 4302) with a 96-bit ICV: payload length 4 → (4 + 2) × 4 = 24
    // bytes. Next header TCP, SPI 0x100, sequence 1.
    const AH_HMAC96: [u8; 24] = [
        0x06, 0x04, 0x00, 0x00, // next TCP, payload length 4, reserved
        0x00, 0x00, 0x01, 0x00, // SPI
        0x00, 0x00, 0x00, 0x01, // sequence number
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, // ICV
    ];

    // A UDP header (port 53 → 53, length 8, checksum 0) as the upper layer.
    const UDP: [u8; 8] = [0x00, 0x35, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00];

    /// HBH(→60) + DestOpts(→43) + SRH(→44) + first fragment(→17) + UDP.
    fn full_chain() -> Vec<u8> {
        let mut chain = Vec::new();
        let mut hbh = HBH_ROUTER_ALERT;
        hbh[0] = ip_proto::IPV6_OPTS;
        chain.extend_from_slice(&hbh);
        let mut dst = DEST_OPTS_PADN;
        dst[0] = ip_proto::IPV6_ROUTE;
        chain.extend_from_slice(&dst);
        let mut srh = SRH;
        srh[0] = ip_proto::IPV6_FRAG;
        chain.extend_from_slice(&srh);
        chain.extend_from_slice(&FRAG_FIRST);
        chain.extend_from_slice(&UDP);
        chain
    }

    #[test]
    fn golden_hop_by_hop() {
        let h = Header::new_checked(&HBH_ROUTER_ALERT[..]).unwrap();
        assert_eq!(h.next_header(), ip_proto::ICMPV6);
        assert_eq!(h.hdr_ext_len(), 0);
        assert_eq!(h.header_len(), 8);
        assert_eq!(h.data(), &HBH_ROUTER_ALERT[2..]);
        assert!(h.payload().is_empty());
        let options: Vec<_> = h.options_iter().collect();
        assert_eq!(
            options,
            [
                Ok(Ipv6Option::Tlv {
                    kind: option_type::ROUTER_ALERT,
                    data: &[0, 0]
                }),
                Ok(Ipv6Option::PadN(0)),
            ]
        );
        let repr = HeaderRepr::parse(&h).unwrap();
        assert_eq!(
            repr,
            HeaderRepr {
                next_header: 58,
                data: &HBH_ROUTER_ALERT[2..]
            }
        );
        let mut buf = [0xa5u8; 8];
        repr.emit(&mut Header::new_unchecked(&mut buf[..]));
        assert_eq!(repr.buffer_len(), 8);
        assert_eq!(buf, HBH_ROUTER_ALERT);
    }

    #[test]
    fn golden_destination_options() {
        let h = Header::new_checked(&DEST_OPTS_PADN[..]).unwrap();
        assert_eq!(h.next_header(), ip_proto::IPV6_NONXT);
        let options: Vec<_> = h.options_iter().collect();
        assert_eq!(options, [Ok(Ipv6Option::PadN(4))]);
        // Emit pads short data with zeros (Pad1 options).
        let repr = HeaderRepr {
            next_header: 59,
            data: &[0x01, 0x02],
        };
        assert_eq!(repr.buffer_len(), 8);
        let mut buf = [0xa5u8; 8];
        repr.emit(&mut Header::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [0x3b, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00]);
        let padded = Header::new_checked(&buf[..]).unwrap();
        let options: Vec<_> = padded.options_iter().collect();
        assert_eq!(
            options,
            [
                Ok(Ipv6Option::PadN(2)),
                Ok(Ipv6Option::Pad1),
                Ok(Ipv6Option::Pad1)
            ]
        );
        // A 7-byte data field makes a 16-byte header.
        let long = HeaderRepr {
            next_header: 6,
            data: &[1; 7],
        };
        assert_eq!(long.buffer_len(), 16);
        let mut buf = [0xa5u8; 16];
        long.emit(&mut Header::new_unchecked(&mut buf[..]));
        assert_eq!(buf[..9], [6, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(buf[9..], [0; 7]);
    }

    #[test]
    fn golden_routing() {
        let r = RoutingHeader::new_checked(&SRH[..]).unwrap();
        assert_eq!(r.next_header(), ip_proto::UDP);
        assert_eq!(r.hdr_ext_len(), 4);
        assert_eq!(r.header_len(), 40);
        assert_eq!(r.routing_type(), routing_type::SEGMENT_ROUTING);
        assert_eq!(r.segments_left(), 1);
        assert_eq!(r.data(), &SRH[4..]);
        let repr = RoutingRepr::parse(&r).unwrap();
        assert_eq!(
            repr,
            RoutingRepr {
                next_header: 17,
                routing_type: 4,
                segments_left: 1,
                data: &SRH[4..],
            }
        );
        let mut buf = [0xa5u8; 40];
        repr.emit(&mut RoutingHeader::new_unchecked(&mut buf[..]));
        assert_eq!(repr.buffer_len(), 40);
        assert_eq!(buf, SRH);
    }

    #[test]
    fn routing_setters() {
        let mut buf = SRH;
        let mut r = RoutingHeader::new_checked(&mut buf[..]).unwrap();
        r.set_segments_left(0);
        r.set_routing_type(routing_type::TYPE2);
        r.set_next_header(ip_proto::TCP);
        r.data_mut()[0] = 0;
        r.set_hdr_ext_len(2);
        r.payload_mut().fill(0xee);
        assert_eq!(&buf[..5], &[6, 2, 2, 0, 0]);
        assert_eq!(&buf[24..], &[0xee; 16]);
    }

    #[test]
    fn golden_fragment() {
        let f = FragmentHeader::new_checked(&FRAG_MIDDLE[..]).unwrap();
        assert_eq!(f.next_header(), ip_proto::UDP);
        assert_eq!(f.frag_offset(), 1480);
        assert!(f.more_frags());
        assert_eq!(f.ident(), 0xdead_beef);
        let repr = FragmentRepr::parse(&f).unwrap();
        assert_eq!(
            repr,
            FragmentRepr {
                next_header: 17,
                frag_offset: 1480,
                more_frags: true,
                ident: 0xdead_beef
            }
        );
        let mut buf = [0xa5u8; 8];
        repr.emit(&mut FragmentHeader::new_unchecked(&mut buf[..]));
        assert_eq!(repr.buffer_len(), 8);
        assert_eq!(buf, FRAG_MIDDLE);

        let info = FragmentHeader::new_checked(&FRAG_FIRST[..]).unwrap().info();
        assert!(info.is_first() && info.more && !info.is_atomic());
    }

    #[test]
    fn fragment_setters() {
        let mut buf = [0xffu8; 10];
        let mut f = FragmentHeader::new_checked(&mut buf[..]).unwrap();
        f.clear_reserved();
        assert_eq!((f.frag_offset(), f.more_frags()), (0xfff8, true));
        f.set_frag_offset(8);
        f.set_more_frags(false);
        f.set_ident(7);
        f.set_next_header(ip_proto::ICMPV6);
        f.payload_mut().fill(0);
        assert_eq!(buf, [58, 0, 0x00, 0x08, 0, 0, 0, 7, 0, 0]);
        // The reserved bits are ignored on read.
        let odd = [0x11, 0xff, 0x00, 0x0e, 0, 0, 0, 1];
        let f = FragmentHeader::new_checked(&odd[..]).unwrap();
        assert_eq!((f.frag_offset(), f.more_frags()), (8, false));
    }

    #[test]
    fn truncated_views_at_every_length() {
        for len in 0..8 {
            assert_eq!(
                Header::new_checked(&HBH_ROUTER_ALERT[..len]).unwrap_err(),
                Error::Truncated
            );
            assert_eq!(
                FragmentHeader::new_checked(&FRAG_MIDDLE[..len]).unwrap_err(),
                Error::Truncated
            );
        }
        for len in 0..SRH.len() {
            assert_eq!(
                RoutingHeader::new_checked(&SRH[..len]).unwrap_err(),
                Error::Truncated
            );
            assert_eq!(
                Header::new_checked(&SRH[..len]).unwrap_err(),
                Error::Truncated
            );
        }
        // A length field past the end of a larger buffer.
        let mut big = [0u8; 64];
        big[1] = 8; // 72 bytes
        assert_eq!(Header::new_checked(&big[..]).unwrap_err(), Error::Truncated);
        big[1] = 7; // 64 bytes: fits exactly
        assert!(Header::new_checked(&big[..]).unwrap().payload().is_empty());
    }

    #[test]
    fn malformed_options() {
        let cases: [&[u8]; 4] = [
            &[0x05],                         // length octet missing
            &[0x05, 0x03, 0x00, 0x00],       // runs one past the end
            &[0x01, 0x05, 0x00, 0x00, 0x00], // PadN past the end
            &[0x00, 0x00, 0xc2, 0x04, 0x00], // Jumbo cut short after Pad1s
        ];
        for data in cases {
            let items: Vec<_> = OptionsIter::new(data).collect();
            assert_eq!(items.last(), Some(&Err(Error::Malformed)), "{data:02x?}");
            assert_eq!(items.iter().filter(|i| i.is_err()).count(), 1);
        }
        // In a header: the option runs past the header into the next one.
        let hbh = [0x3b, 0x00, 0x05, 0x06, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff];
        let h = Header::new_checked(&hbh[..]).unwrap();
        assert_eq!(h.options_iter().last(), Some(Err(Error::Malformed)));
        assert_eq!(OptionsIter::new(&[]).next(), None);
    }

    #[test]
    fn option_type_bits() {
        assert_eq!(
            UnknownOptionAction::of(option_type::PADN),
            UnknownOptionAction::Skip
        );
        assert_eq!(UnknownOptionAction::of(0x4f), UnknownOptionAction::Discard);
        assert_eq!(
            UnknownOptionAction::of(option_type::JUMBO_PAYLOAD),
            UnknownOptionAction::DiscardSendParamProblemUnlessMulticast
        );
        assert_eq!(
            UnknownOptionAction::of(0x80),
            UnknownOptionAction::DiscardSendParamProblem
        );
        assert!(option_may_change(0x3e) && !option_may_change(option_type::ROUTER_ALERT));
    }

    #[test]
    fn walk_full_chain() {
        let chain = full_chain();
        let walked = walk(ip_proto::HOPOPTS, &chain).unwrap();
        assert_eq!(
            walked,
            ExtChain {
                upper_protocol: ip_proto::UDP,
                upper_offset: 64,
                fragment: Some(FragmentInfo {
                    offset: 0,
                    more: true,
                    ident: 0xdead_beef
                }),
                count: 4,
            }
        );
        assert!(walked.has_upper_header());
        assert_eq!(&chain[walked.upper_offset..], &UDP);
    }

    #[test]
    fn walk_without_extension_headers() {
        for proto in [
            ip_proto::TCP,
            ip_proto::UDP,
            ip_proto::ICMPV6,
            ip_proto::SCTP,
            ip_proto::ESP,
            59,
        ] {
            let walked = walk(proto, &UDP).unwrap();
            assert_eq!(
                walked,
                ExtChain {
                    upper_protocol: proto,
                    upper_offset: 0,
                    fragment: None,
                    count: 0
                }
            );
        }
        assert_eq!(walk(ip_proto::TCP, &[]).unwrap().upper_offset, 0);
        // Destination options with No Next Header.
        let walked = walk(ip_proto::IPV6_OPTS, &DEST_OPTS_PADN).unwrap();
        assert_eq!(
            (walked.upper_protocol, walked.upper_offset, walked.count),
            (59, 8, 1)
        );
    }

    #[test]
    fn walk_stops_at_non_first_fragment() {
        let mut buf = FRAG_MIDDLE.to_vec();
        // Mid-datagram bytes that look like an extension header must not be
        // followed.
        buf.extend_from_slice(&[0x2b, 0xff, 0, 0]);
        let walked = walk(ip_proto::IPV6_FRAG, &buf).unwrap();
        assert_eq!(
            walked,
            ExtChain {
                upper_protocol: ip_proto::UDP,
                upper_offset: 8,
                fragment: Some(FragmentInfo {
                    offset: 1480,
                    more: true,
                    ident: 0xdead_beef
                }),
                count: 1,
            }
        );
        assert!(!walked.has_upper_header());
    }

    #[test]
    fn walk_ah() {
        let mut buf = AH_HMAC96.to_vec();
        buf.extend_from_slice(&[0; 20]);
        let walked = walk(ip_proto::AH, &buf).unwrap();
        assert_eq!(
            (walked.upper_protocol, walked.upper_offset, walked.count),
            (ip_proto::TCP, 24, 1)
        );
        assert_eq!(ah_header_len(&AH_HMAC96), Ok(24));
        for len in 0..24 {
            assert_eq!(
                walk(ip_proto::AH, &AH_HMAC96[..len]).unwrap_err(),
                Error::Truncated,
                "{len}"
            );
        }
        // Lengths that are not a multiple of 8, or shorter than the fixed part.
        for bad in [0u8, 1, 3] {
            let mut ah = AH_HMAC96;
            ah[1] = bad;
            assert_eq!(
                walk(ip_proto::AH, &ah).unwrap_err(),
                Error::Malformed,
                "{bad}"
            );
        }
    }

    #[test]
    fn walk_truncated_at_every_length() {
        let chain = full_chain();
        for len in 0..64 {
            assert_eq!(
                walk(ip_proto::HOPOPTS, &chain[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
        // The walk does not look at the upper-layer header itself.
        assert_eq!(
            walk(ip_proto::HOPOPTS, &chain[..64]).unwrap().upper_offset,
            64
        );
    }

    #[test]
    fn walk_length_past_the_end() {
        let mut chain = full_chain();
        chain[8 + 1] = 200; // destination options claims 1608 bytes
        assert_eq!(
            walk(ip_proto::HOPOPTS, &chain).unwrap_err(),
            Error::Truncated
        );
        let mut chain = full_chain();
        chain[16 + 1] = 7; // routing header claims 64 bytes: 8 past the end
        assert_eq!(
            walk(ip_proto::HOPOPTS, &chain).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn walk_rejects_hop_by_hop_after_first() {
        let mut buf = DEST_OPTS_PADN.to_vec();
        buf[0] = ip_proto::HOPOPTS;
        buf.extend_from_slice(&HBH_ROUTER_ALERT);
        assert_eq!(
            walk(ip_proto::IPV6_OPTS, &buf).unwrap_err(),
            Error::Malformed
        );
        // A hop-by-hop header pointing at itself.
        let mut looped = HBH_ROUTER_ALERT;
        looped[0] = ip_proto::HOPOPTS;
        assert_eq!(
            walk(ip_proto::HOPOPTS, &looped.repeat(4)).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn walk_rejects_second_fragment_header() {
        let mut buf = FRAG_FIRST.to_vec();
        buf[0] = ip_proto::IPV6_FRAG;
        buf.extend_from_slice(&FRAG_FIRST);
        assert_eq!(
            walk(ip_proto::IPV6_FRAG, &buf).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn walk_is_bounded() {
        // Eight destination options headers, each pointing at the next, then TCP.
        let mut buf = Vec::new();
        for i in 0..MAX_EXT_HEADERS {
            let next = if i + 1 == MAX_EXT_HEADERS {
                ip_proto::TCP
            } else {
                ip_proto::IPV6_OPTS
            };
            buf.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        let walked = walk(ip_proto::IPV6_OPTS, &buf).unwrap();
        assert_eq!(
            (walked.upper_protocol, walked.upper_offset, walked.count),
            (ip_proto::TCP, 64, 8)
        );
        // A ninth is refused.
        buf[MAX_EXT_HEADERS * 8 - 8] = ip_proto::IPV6_OPTS;
        buf.extend_from_slice(&[ip_proto::TCP, 0, 1, 4, 0, 0, 0, 0]);
        assert_eq!(
            walk(ip_proto::IPV6_OPTS, &buf).unwrap_err(),
            Error::Unsupported
        );
        // An endless routing-header loop ends the same way.
        let mut rh = SRH;
        rh[0] = ip_proto::IPV6_ROUTE;
        assert_eq!(
            walk(ip_proto::IPV6_ROUTE, &rh.repeat(20)).unwrap_err(),
            Error::Unsupported
        );
    }

    #[test]
    fn display() {
        let walked = walk(ip_proto::IPV6_FRAG, &FRAG_MIDDLE).unwrap();
        assert_eq!(
            walked.to_string(),
            "1 ext headers, upper 17 at 8, frag off 1480+"
        );
    }

    fn ext_or_any() -> impl Strategy<Value = u8> {
        prop_oneof![
            Just(ip_proto::HOPOPTS),
            Just(ip_proto::IPV6_ROUTE),
            Just(ip_proto::IPV6_FRAG),
            Just(ip_proto::IPV6_OPTS),
            Just(ip_proto::AH),
            any::<u8>(),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            first in ext_or_any(),
            bytes in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            if let Ok(walked) = walk(first, &bytes) {
                prop_assert!(walked.upper_offset <= bytes.len());
                prop_assert!(walked.count as usize <= MAX_EXT_HEADERS);
                prop_assert!(!is_extension_header(walked.upper_protocol) || !walked.has_upper_header());
            }
            if let Ok(h) = Header::new_checked(&bytes[..]) {
                let _ = (h.payload(), HeaderRepr::parse(&h).unwrap());
                for _ in h.options_iter() {}
            }
            if let Ok(r) = RoutingHeader::new_checked(&bytes[..]) {
                let _ = (r.payload(), RoutingRepr::parse(&r).unwrap());
            }
            if let Ok(f) = FragmentHeader::new_checked(&bytes[..]) {
                let _ = (f.payload(), FragmentRepr::parse(&f).unwrap());
            }
        }

        /// Chains of plausible headers with small random lengths: the walk
        /// must end (with a result or an error) without panicking.
        #[test]
        fn plausible_chains_never_panic(
            first in ext_or_any(),
            headers in proptest::collection::vec((ext_or_any(), 0u8..4, any::<u8>()), 0..12),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut buf = Vec::new();
            for (next, len, fill) in &headers {
                let size = (*len as usize + 1) * 8;
                let start = buf.len();
                buf.resize(start + size, *fill);
                buf[start] = *next;
                buf[start + 1] = *len;
            }
            let _ = walk(first, &buf);
            let cut = cut.index(buf.len() + 1);
            let _ = walk(first, &buf[..cut]);
        }

        #[test]
        fn repr_round_trips(
            next_header in any::<u8>(),
            data in proptest::collection::vec(any::<u8>(), 6..70),
            routing_type in any::<u8>(), segments_left in any::<u8>(),
            frag_units in 0u16..0x2000, more in any::<bool>(), ident in any::<u32>(),
        ) {
            // Data sized to the 8-byte grid round-trips exactly.
            let aligned = &data[..(data.len() + 2) / 8 * 8 - 2];
            let repr = HeaderRepr { next_header, data: aligned };
            let mut buf = vec![0xa5u8; repr.buffer_len()];
            repr.emit(&mut Header::new_unchecked(&mut buf[..]));
            prop_assert_eq!(HeaderRepr::parse(&Header::new_checked(&buf[..]).unwrap()).unwrap(), repr);

            let aligned = &data[..(data.len() + 4) / 8 * 8 - 4];
            let repr = RoutingRepr { next_header, routing_type, segments_left, data: aligned };
            let mut buf = vec![0xa5u8; repr.buffer_len()];
            repr.emit(&mut RoutingHeader::new_unchecked(&mut buf[..]));
            prop_assert_eq!(
                RoutingRepr::parse(&RoutingHeader::new_checked(&buf[..]).unwrap()).unwrap(),
                repr
            );

            let repr = FragmentRepr { next_header, frag_offset: frag_units * 8, more_frags: more, ident };
            let mut buf = [0xa5u8; 8];
            repr.emit(&mut FragmentHeader::new_unchecked(&mut buf[..]));
            prop_assert_eq!(
                FragmentRepr::parse(&FragmentHeader::new_checked(&buf[..]).unwrap()).unwrap(),
                repr
            );
        }
    }
}
