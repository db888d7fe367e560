//! TCP (RFC 9293): a header view, flags, an options iterator, its `Repr`,
//! checksums over both IP pseudo-headers, and incremental rewrites for NAT
//! and MSS clamping.
//!
//! TCP has no length field: the view's buffer must be exactly the segment
//! (the IP payload), since the checksum and the payload run to its end.
//! `new_checked` validates the data offset (5..=15 words, within the buffer);
//! options are validated lazily by [`OptionsIter`] and by `Repr::parse`.

use core::fmt;
use core::ops;

use super::checksum;
use super::{ip_proto, Error, Result};

/// Length of the TCP header without options.
pub const HEADER_LEN: usize = 20;
/// Longest header: data offset 15 words.
pub const MAX_HEADER_LEN: usize = 60;
/// Longest options area.
pub const MAX_OPTIONS_LEN: usize = MAX_HEADER_LEN - HEADER_LEN;

mod field {
    pub type Field = core::ops::Range<usize>;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset in the high nibble; the low nibble is reserved.
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
    pub const OPTIONS_START: usize = 20;
}

/// Option kinds (IANA "TCP Option Kind Numbers").
pub mod option_kind {
    pub const END_OF_LIST: u8 = 0;
    pub const NO_OPERATION: u8 = 1;
    pub const MAX_SEG_SIZE: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
}

/// The eight TCP control flags (byte 13 of the header).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    pub const FIN: Flags = Flags(0x01);
    pub const SYN: Flags = Flags(0x02);
    pub const RST: Flags = Flags(0x04);
    pub const PSH: Flags = Flags(0x08);
    pub const ACK: Flags = Flags(0x10);
    pub const URG: Flags = Flags(0x20);
    pub const ECE: Flags = Flags(0x40);
    pub const CWR: Flags = Flags(0x80);

    const NAMES: [(Flags, &'static str); 8] = [
        (Flags::FIN, "FIN"),
        (Flags::SYN, "SYN"),
        (Flags::RST, "RST"),
        (Flags::PSH, "PSH"),
        (Flags::ACK, "ACK"),
        (Flags::URG, "URG"),
        (Flags::ECE, "ECE"),
        (Flags::CWR, "CWR"),
    ];

    #[inline]
    pub const fn empty() -> Flags {
        Flags(0)
    }

    #[inline]
    pub const fn from_bits(bits: u8) -> Flags {
        Flags(bits)
    }

    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }

    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every flag in `other` is set.
    #[inline]
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag in `other` is set.
    #[inline]
    pub const fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }

    #[inline]
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    #[inline]
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }

    #[inline]
    pub fn remove(&mut self, other: Flags) {
        self.0 &= !other.0;
    }
}

impl ops::BitOr for Flags {
    type Output = Flags;
    #[inline]
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl ops::BitOrAssign for Flags {
    #[inline]
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl ops::BitAnd for Flags {
    type Output = Flags;
    #[inline]
    fn bitand(self, rhs: Flags) -> Flags {
        Flags(self.0 & rhs.0)
    }
}

impl ops::Not for Flags {
    type Output = Flags;
    #[inline]
    fn not(self) -> Flags {
        Flags(!self.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("(none)");
        }
        let mut first = true;
        for (flag, name) in Flags::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// The blocks of a SACK option (RFC 2018): 1 to 4 `(left, right)` edges.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SackBlocks<'a>(&'a [u8]);

impl<'a> SackBlocks<'a> {
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len() / 8
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.len() < 8
    }

    #[inline]
    pub fn get(&self, index: usize) -> Option<(u32, u32)> {
        let block = self.0.get(index * 8..index * 8 + 8)?;
        Some((
            u32::from_be_bytes([block[0], block[1], block[2], block[3]]),
            u32::from_be_bytes([block[4], block[5], block[6], block[7]]),
        ))
    }

    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + 'a {
        let blocks = *self;
        (0..blocks.len()).filter_map(move |i| blocks.get(i))
    }
}

impl fmt::Debug for SackBlocks<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    EndOfList,
    NoOperation,
    MaxSegmentSize(u16),
    WindowScale(u8),
    SackPermitted,
    Sack(SackBlocks<'a>),
    Timestamps {
        tsval: u32,
        tsecr: u32,
    },
    /// A well-formed option this parser does not interpret; `data` excludes
    /// the kind and length bytes.
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

/// Walks an options area. Yields `Err(Malformed)` once, then stops, if an
/// option's length is below 2, runs past the end, or does not fit its kind;
/// stops after `EndOfList`.
#[derive(Debug, Clone)]
pub struct OptionsIter<'a> {
    data: &'a [u8],
    done: bool,
}

impl<'a> OptionsIter<'a> {
    #[inline]
    pub fn new(options: &'a [u8]) -> OptionsIter<'a> {
        OptionsIter {
            data: options,
            done: false,
        }
    }
}

/// Reads one kind-length-value option at the start of `data` (whose first
/// byte is neither EOL nor NOP); returns it and its length.
#[inline]
fn parse_tlv(data: &[u8]) -> Result<(TcpOption<'_>, usize)> {
    let (kind, len) = match data {
        [kind, len, ..] => (*kind, *len as usize),
        _ => return Err(Error::Malformed),
    };
    if len < 2 || len > data.len() {
        return Err(Error::Malformed);
    }
    let value = &data[2..len];
    let option = match (kind, value.len()) {
        (option_kind::MAX_SEG_SIZE, 2) => {
            TcpOption::MaxSegmentSize(u16::from_be_bytes([value[0], value[1]]))
        }
        (option_kind::WINDOW_SCALE, 1) => TcpOption::WindowScale(value[0]),
        (option_kind::SACK_PERMITTED, 0) => TcpOption::SackPermitted,
        (option_kind::SACK, n) if n & 7 == 0 && (8..=32).contains(&n) => {
            TcpOption::Sack(SackBlocks(value))
        }
        (option_kind::TIMESTAMPS, 8) => TcpOption::Timestamps {
            tsval: u32::from_be_bytes([value[0], value[1], value[2], value[3]]),
            tsecr: u32::from_be_bytes([value[4], value[5], value[6], value[7]]),
        },
        (
            option_kind::MAX_SEG_SIZE
            | option_kind::WINDOW_SCALE
            | option_kind::SACK_PERMITTED
            | option_kind::SACK
            | option_kind::TIMESTAMPS,
            _,
        ) => return Err(Error::Malformed),
        (kind, _) => TcpOption::Unknown { kind, data: value },
    };
    Ok((option, len))
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = Result<TcpOption<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.data.is_empty() {
            return None;
        }
        match self.data[0] {
            option_kind::END_OF_LIST => {
                self.done = true;
                Some(Ok(TcpOption::EndOfList))
            }
            option_kind::NO_OPERATION => {
                self.data = &self.data[1..];
                Some(Ok(TcpOption::NoOperation))
            }
            _ => match parse_tlv(self.data) {
                Ok((option, len)) => {
                    self.data = &self.data[len..];
                    Some(Ok(option))
                }
                Err(err) => {
                    self.done = true;
                    Some(Err(err))
                }
            },
        }
    }
}

/// A zero-copy view of a TCP segment.
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

    /// `Truncated` if the buffer is shorter than 20 bytes or than the data
    /// offset; `Malformed` if the data offset is below 5 words.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            Err(Error::Malformed)
        } else if header_len > len {
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
    fn read_u16(&self, range: field::Field) -> u16 {
        let data = &self.buffer.as_ref()[range];
        u16::from_be_bytes([data[0], data[1]])
    }

    #[inline]
    fn read_u32(&self, range: field::Field) -> u32 {
        let data = &self.buffer.as_ref()[range];
        u32::from_be_bytes([data[0], data[1], data[2], data[3]])
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        self.read_u16(field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.read_u16(field::DST_PORT)
    }

    #[inline]
    pub fn seq_number(&self) -> u32 {
        self.read_u32(field::SEQ_NUM)
    }

    #[inline]
    pub fn ack_number(&self) -> u32 {
        self.read_u32(field::ACK_NUM)
    }

    /// The header length in bytes (data offset × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[field::DATA_OFFSET] >> 4) as usize) * 4
    }

    #[inline]
    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS])
    }

    #[inline]
    pub fn window_len(&self) -> u16 {
        self.read_u16(field::WINDOW)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    #[inline]
    pub fn urgent_at(&self) -> u16 {
        self.read_u16(field::URGENT)
    }

    /// The options area (between the fixed header and the data offset).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS_START..self.header_len()]
    }

    #[inline]
    pub fn options_iter(&self) -> OptionsIter<'_> {
        OptionsIter::new(self.options())
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// The whole segment; the checksum covers it.
    #[inline]
    pub fn segment(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    #[inline]
    fn folded_sum(&self, pseudo: u32) -> u16 {
        checksum::fold(checksum::combine(pseudo, checksum::sum(self.segment(), 0)))
    }

    #[inline]
    pub fn verify_checksum_v4(&self, src: [u8; 4], dst: [u8; 4]) -> bool {
        let len = self.segment().len() as u16;
        self.folded_sum(checksum::pseudo_header_v4(src, dst, ip_proto::TCP, len)) == 0xffff
    }

    #[inline]
    pub fn verify_checksum_v6(&self, src: [u8; 16], dst: [u8; 16]) -> bool {
        let len = self.segment().len() as u32;
        self.folded_sum(checksum::pseudo_header_v6(src, dst, ip_proto::TCP, len)) == 0xffff
    }

    /// Byte offset of the MSS option's value within the segment, if present.
    fn mss_offset(&self) -> Result<Option<usize>> {
        let options = self.options();
        let mut pos = 0;
        while pos < options.len() {
            match options[pos] {
                option_kind::END_OF_LIST => break,
                option_kind::NO_OPERATION => pos += 1,
                kind => {
                    let (_, len) = parse_tlv(&options[pos..])?;
                    if kind == option_kind::MAX_SEG_SIZE {
                        return Ok(Some(field::OPTIONS_START + pos + 2));
                    }
                    pos += len;
                }
            }
        }
        Ok(None)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn write_u16(&mut self, range: field::Field, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    fn write_u32(&mut self, range: field::Field, value: u32) {
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

    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        self.write_u32(field::SEQ_NUM, value)
    }

    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        self.write_u32(field::ACK_NUM, value)
    }

    /// Sets the data offset from a length in bytes (a multiple of 4, 20..=60)
    /// and clears the reserved bits. Accessors trust it: keep it within the buffer.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        debug_assert!(len & 3 == 0 && (HEADER_LEN..=MAX_HEADER_LEN).contains(&len));
        self.buffer.as_mut()[field::DATA_OFFSET] = ((len / 4) as u8) << 4;
    }

    #[inline]
    pub fn set_flags(&mut self, flags: Flags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        self.write_u16(field::WINDOW, value)
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(field::CHECKSUM, value)
    }

    #[inline]
    pub fn set_urgent_at(&mut self, value: u16) {
        self.write_u16(field::URGENT, value)
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS_START..end]
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }

    #[inline]
    pub fn fill_checksum_v4(&mut self, src: [u8; 4], dst: [u8; 4]) {
        self.set_checksum(0);
        let len = self.segment().len() as u16;
        let check = !self.folded_sum(checksum::pseudo_header_v4(src, dst, ip_proto::TCP, len));
        self.set_checksum(check);
    }

    #[inline]
    pub fn fill_checksum_v6(&mut self, src: [u8; 16], dst: [u8; 16]) {
        self.set_checksum(0);
        let len = self.segment().len() as u32;
        let check = !self.folded_sum(checksum::pseudo_header_v6(src, dst, ip_proto::TCP, len));
        self.set_checksum(check);
    }

    #[inline]
    fn update_checksum16(&mut self, old: u16, new: u16) {
        let check = checksum::update16(self.checksum(), old, new);
        self.set_checksum(check);
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
        let check = checksum::update32(
            self.checksum(),
            u32::from_be_bytes(old),
            u32::from_be_bytes(new),
        );
        self.set_checksum(check);
    }

    /// Updates the checksum after an IPv6 address in the enclosing header
    /// changed from `old` to `new`.
    #[inline]
    pub fn update_checksum_for_addr_v6(&mut self, old: [u8; 16], new: [u8; 16]) {
        let check = checksum::update128(
            self.checksum(),
            u128::from_be_bytes(old),
            u128::from_be_bytes(new),
        );
        self.set_checksum(check);
    }

    /// Lowers an MSS option above `max_mss` to `max_mss`, updating the
    /// checksum incrementally. Returns whether the segment changed;
    /// `Malformed` if the options cannot be walked.
    pub fn clamp_mss(&mut self, max_mss: u16) -> Result<bool> {
        let Some(offset) = self.mss_offset()? else {
            return Ok(false);
        };
        let mss = offset..offset + 2;
        let old = self.read_u16(mss.clone());
        if old <= max_mss {
            return Ok(false);
        }
        self.write_u16(mss, max_mss);
        self.update_checksum16(old, max_mss);
        Ok(true)
    }
}

/// The timestamps option's two values (RFC 7323).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamps {
    pub tsval: u32,
    pub tsecr: u32,
}

/// A parsed TCP header with the options Sluice understands.
///
/// Unknown options are skipped by `parse` and not emitted; to forward a
/// segment byte for byte, edit it through [`Packet`] instead. `emit` lays
/// options out as Linux does (MSS; SACK-permitted folded into the timestamps
/// word; window scale; SACK blocks), every option 4-byte aligned with NOPs,
/// so Linux-generated segments round-trip exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: u32,
    pub ack_number: u32,
    pub flags: Flags,
    pub window_len: u16,
    pub urgent_at: u16,
    pub max_seg_size: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    pub timestamps: Option<Timestamps>,
    /// SACK blocks, leading `Some`s used; `emit` drops trailing blocks that
    /// do not fit in 40 bytes of options.
    pub sack_blocks: [Option<(u32, u32)>; 4],
    pub payload_len: usize,
}

impl Repr {
    /// Reads the header and walks its options (`Malformed` if they do not
    /// walk). Ports of zero are `Malformed`. Does not verify the checksum.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.src_port() == 0 || packet.dst_port() == 0 {
            return Err(Error::Malformed);
        }
        let mut repr = Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            urgent_at: packet.urgent_at(),
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            timestamps: None,
            sack_blocks: [None; 4],
            payload_len: packet.payload().len(),
        };
        for option in packet.options_iter() {
            match option? {
                TcpOption::MaxSegmentSize(mss) => repr.max_seg_size = Some(mss),
                TcpOption::WindowScale(shift) => repr.window_scale = Some(shift),
                TcpOption::SackPermitted => repr.sack_permitted = true,
                TcpOption::Timestamps { tsval, tsecr } => {
                    repr.timestamps = Some(Timestamps { tsval, tsecr })
                }
                TcpOption::Sack(blocks) => {
                    repr.sack_blocks = [None; 4];
                    for (slot, block) in repr.sack_blocks.iter_mut().zip(blocks.iter()) {
                        *slot = Some(block);
                    }
                }
                TcpOption::EndOfList | TcpOption::NoOperation | TcpOption::Unknown { .. } => {}
            }
        }
        Ok(repr)
    }

    /// Options length without SACK blocks.
    #[inline]
    fn base_options_len(&self) -> usize {
        let mut len = 0;
        if self.max_seg_size.is_some() {
            len += 4;
        }
        if self.timestamps.is_some() {
            len += 12;
        } else if self.sack_permitted {
            len += 4;
        }
        if self.window_scale.is_some() {
            len += 4;
        }
        len
    }

    /// How many SACK blocks `emit` writes.
    #[inline]
    fn sack_blocks_emitted(&self) -> usize {
        let wanted = self.sack_blocks.iter().take_while(|b| b.is_some()).count();
        let room = MAX_OPTIONS_LEN.saturating_sub(self.base_options_len() + 4) / 8;
        wanted.min(room)
    }

    #[inline]
    fn options_len(&self) -> usize {
        let blocks = self.sack_blocks_emitted();
        self.base_options_len() + if blocks > 0 { 4 + 8 * blocks } else { 0 }
    }

    /// Header length including options.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// Header, options and payload.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Sequence space the segment occupies: payload plus one each for SYN and FIN.
    #[inline]
    pub fn segment_len(&self) -> usize {
        self.payload_len
            + self.flags.contains(Flags::SYN) as usize
            + self.flags.contains(Flags::FIN) as usize
    }

    fn write_options(&self, out: &mut [u8]) {
        let mut pos = 0;
        let mut put = |bytes: &[u8]| {
            out[pos..pos + bytes.len()].copy_from_slice(bytes);
            pos += bytes.len();
        };
        if let Some(mss) = self.max_seg_size {
            let [hi, lo] = mss.to_be_bytes();
            put(&[option_kind::MAX_SEG_SIZE, 4, hi, lo]);
        }
        if let Some(ts) = self.timestamps {
            if self.sack_permitted {
                put(&[option_kind::SACK_PERMITTED, 2]);
            } else {
                put(&[option_kind::NO_OPERATION, option_kind::NO_OPERATION]);
            }
            put(&[option_kind::TIMESTAMPS, 10]);
            put(&ts.tsval.to_be_bytes());
            put(&ts.tsecr.to_be_bytes());
        } else if self.sack_permitted {
            put(&[option_kind::NO_OPERATION, option_kind::NO_OPERATION]);
            put(&[option_kind::SACK_PERMITTED, 2]);
        }
        if let Some(shift) = self.window_scale {
            put(&[
                option_kind::NO_OPERATION,
                option_kind::WINDOW_SCALE,
                3,
                shift,
            ]);
        }
        let blocks = self.sack_blocks_emitted();
        if blocks > 0 {
            put(&[
                option_kind::NO_OPERATION,
                option_kind::NO_OPERATION,
                option_kind::SACK,
                (2 + 8 * blocks) as u8,
            ]);
            for (left, right) in self.sack_blocks.iter().take(blocks).flatten() {
                put(&left.to_be_bytes());
                put(&right.to_be_bytes());
            }
        }
    }

    /// Writes every header field and the options, with a zero checksum.
    ///
    /// # Panics
    /// If the buffer is shorter than `header_len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_header_len(self.header_len());
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_checksum(0);
        packet.set_urgent_at(self.urgent_at);
        self.write_options(packet.options_mut());
    }

    /// Writes the header and the IPv4 checksum over the whole buffer, which
    /// must be exactly the segment with its payload already in place.
    pub fn emit_v4<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: [u8; 4],
        dst: [u8; 4],
    ) {
        debug_assert_eq!(packet.segment().len(), self.buffer_len());
        self.emit(packet);
        packet.fill_checksum_v4(src, dst);
    }

    /// Writes the header and the IPv6 checksum over the whole buffer, which
    /// must be exactly the segment with its payload already in place.
    pub fn emit_v6<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: [u8; 16],
        dst: [u8; 16],
    ) {
        debug_assert_eq!(packet.segment().len(), self.buffer_len());
        self.emit(packet);
        packet.fill_checksum_v6(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CLIENT_V4: [u8; 4] = [10, 0, 0, 1];
    const SERVER_V4: [u8; 4] = [10, 0, 0, 2];
    const SERVER_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const CLIENT_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    // A Linux-style SYN, 10.0.0.1:43210 -> 10.0.0.2:80: MSS 1460,
    // SACK-permitted, timestamps, NOP, window scale 7. Checksum 0x112e,
    // confirmed by tshark with tcp.check_checksum on.
    const SYN_V4: [u8; 40] = [
        0xa8, 0xca, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78, // ports, seq
        0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, // ack, offset 10, SYN, window 64240
        0x11, 0x2e, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, // checksum, urgent, MSS 1460
        0x04, 0x02, 0x08, 0x0a, 0x0a, 0x0b, 0x0c, 0x0d, // SACK-perm, TS val
        0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07, // TS ecr, NOP, WS 7
    ];

    // PSH|ACK with timestamps and 13 bytes of data, [2001:db8::1]:443 ->
    // [2001:db8::2]:51000. Checksum 0x2de0 (tshark).
    const DATA_V6: [u8; 45] = [
        0x01, 0xbb, 0xc7, 0x38, 0xde, 0xad, 0xbe, 0xef, // ports, seq
        0x01, 0x02, 0x03, 0x04, 0x80, 0x18, 0x01, 0xf5, // ack, offset 8, PSH|ACK, window 501
        0x2d, 0xe0, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, // checksum, urgent, NOP NOP TS
        0x00, 0xbc, 0x61, 0x4e, 0x07, 0x5b, 0xcd, 0x15, // TS val 12345678, ecr 123456789
        b'h', b'e', b'l', b'l', b'o', b',', b' ', b'w', //
        b'o', b'r', b'l', b'd', b'\n',
    ];

    // ACK with timestamps and two SACK blocks, 10.0.0.2:80 -> 10.0.0.1:43210.
    // Checksum 0x9840 (tshark).
    const SACK_V4: [u8; 52] = [
        0x00, 0x50, 0xa8, 0xca, 0x00, 0x00, 0x01, 0x00, // ports, seq 256
        0x12, 0x34, 0x56, 0x79, 0xd0, 0x10, 0x04, 0x00, // ack, offset 13, ACK, window 1024
        0x98, 0x40, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, // checksum, urgent, NOP NOP TS
        0x00, 0xbc, 0x61, 0x4e, 0x07, 0x5b, 0xcd, 0x15, //
        0x01, 0x01, 0x05, 0x12, 0x00, 0x00, 0x03, 0xe8, // NOP NOP SACK len 18, 1000
        0x00, 0x00, 0x07, 0xd0, 0x00, 0x00, 0x0b, 0xb8, // 2000, 3000
        0x00, 0x00, 0x0f, 0xa0, // 4000
    ];

    fn syn_repr() -> Repr {
        Repr {
            src_port: 43210,
            dst_port: 80,
            seq_number: 0x1234_5678,
            ack_number: 0,
            flags: Flags::SYN,
            window_len: 64240,
            urgent_at: 0,
            max_seg_size: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some(Timestamps {
                tsval: 0x0a0b_0c0d,
                tsecr: 0,
            }),
            sack_blocks: [None; 4],
            payload_len: 0,
        }
    }

    fn data_repr() -> Repr {
        Repr {
            src_port: 443,
            dst_port: 51000,
            seq_number: 0xdead_beef,
            ack_number: 0x0102_0304,
            flags: Flags::PSH | Flags::ACK,
            window_len: 501,
            urgent_at: 0,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            timestamps: Some(Timestamps {
                tsval: 12_345_678,
                tsecr: 123_456_789,
            }),
            sack_blocks: [None; 4],
            payload_len: 13,
        }
    }

    fn sack_repr() -> Repr {
        Repr {
            src_port: 80,
            dst_port: 43210,
            seq_number: 256,
            ack_number: 0x1234_5679,
            flags: Flags::ACK,
            window_len: 1024,
            urgent_at: 0,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            timestamps: Some(Timestamps {
                tsval: 12_345_678,
                tsecr: 123_456_789,
            }),
            sack_blocks: [Some((1000, 2000)), Some((3000, 4000)), None, None],
            payload_len: 0,
        }
    }

    #[test]
    fn golden_syn_fields_and_options() {
        let packet = Packet::new_checked(&SYN_V4[..]).unwrap();
        assert_eq!(packet.src_port(), 43210);
        assert_eq!(packet.dst_port(), 80);
        assert_eq!(packet.seq_number(), 0x1234_5678);
        assert_eq!(packet.ack_number(), 0);
        assert_eq!(packet.header_len(), 40);
        assert_eq!(packet.flags(), Flags::SYN);
        assert_eq!(packet.window_len(), 64240);
        assert_eq!(packet.checksum(), 0x112e);
        assert_eq!(packet.urgent_at(), 0);
        assert!(packet.payload().is_empty());
        assert!(packet.verify_checksum_v4(CLIENT_V4, SERVER_V4));
        assert!(!packet.verify_checksum_v4(SERVER_V4, [10, 0, 0, 3]));
        let options: Vec<_> = packet.options_iter().collect::<Result<_>>().unwrap();
        assert_eq!(
            options,
            [
                TcpOption::MaxSegmentSize(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamps {
                    tsval: 0x0a0b_0c0d,
                    tsecr: 0
                },
                TcpOption::NoOperation,
                TcpOption::WindowScale(7),
            ]
        );
        assert_eq!(Repr::parse(&packet).unwrap(), syn_repr());
    }

    fn emit_golden(repr: Repr, golden: &[u8], ip: impl Fn(&mut Packet<&mut [u8]>, &Repr)) {
        let mut buf = vec![0xa5u8; golden.len()];
        let header_len = repr.header_len();
        buf[header_len..].copy_from_slice(&golden[header_len..]);
        let mut packet = Packet::new_unchecked(&mut buf[..]);
        ip(&mut packet, &repr);
        assert_eq!(buf, golden);
    }

    #[test]
    fn golden_emits() {
        assert_eq!(syn_repr().buffer_len(), SYN_V4.len());
        emit_golden(syn_repr(), &SYN_V4, |p, r| {
            r.emit_v4(p, CLIENT_V4, SERVER_V4)
        });
        emit_golden(data_repr(), &DATA_V6, |p, r| {
            r.emit_v6(p, SERVER_V6, CLIENT_V6)
        });
        emit_golden(sack_repr(), &SACK_V4, |p, r| {
            r.emit_v4(p, SERVER_V4, CLIENT_V4)
        });
    }

    #[test]
    fn golden_data_v6_and_sack_parse() {
        let packet = Packet::new_checked(&DATA_V6[..]).unwrap();
        assert!(packet.verify_checksum_v6(SERVER_V6, CLIENT_V6));
        assert_eq!(packet.payload(), b"hello, world\n");
        assert_eq!(Repr::parse(&packet).unwrap(), data_repr());
        assert_eq!(data_repr().segment_len(), 13);
        assert_eq!(syn_repr().segment_len(), 1);

        let packet = Packet::new_checked(&SACK_V4[..]).unwrap();
        assert!(packet.verify_checksum_v4(SERVER_V4, CLIENT_V4));
        let sack = packet
            .options_iter()
            .find_map(|o| match o {
                Ok(TcpOption::Sack(blocks)) => Some(blocks),
                _ => None,
            })
            .unwrap();
        assert_eq!(sack.len(), 2);
        assert_eq!(
            sack.iter().collect::<Vec<_>>(),
            [(1000, 2000), (3000, 4000)]
        );
        assert_eq!(sack.get(2), None);
        assert_eq!(Repr::parse(&packet).unwrap(), sack_repr());
    }

    #[test]
    fn sack_only_and_no_options_layouts() {
        let mut repr = sack_repr();
        repr.timestamps = None;
        repr.sack_permitted = true;
        repr.max_seg_size = Some(1400);
        repr.window_scale = Some(0);
        repr.sack_blocks = [Some((1, 2)), Some((3, 4)), Some((5, 6)), Some((7, 8))];
        // 4 (MSS) + 4 (SACK-perm) + 4 (WS) + 4 + 8n <= 40 leaves room for 3 blocks.
        assert_eq!(repr.header_len(), 20 + 12 + 4 + 24);
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        repr.emit_v4(
            &mut Packet::new_unchecked(&mut buf[..]),
            SERVER_V4,
            CLIENT_V4,
        );
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert!(packet.verify_checksum_v4(SERVER_V4, CLIENT_V4));
        let mut expected = repr;
        expected.sack_blocks[3] = None;
        assert_eq!(Repr::parse(&packet).unwrap(), expected);

        let bare = Repr {
            timestamps: None,
            sack_blocks: [None; 4],
            ..data_repr()
        };
        assert_eq!(bare.header_len(), HEADER_LEN);
        let mut buf = [0xa5u8; 20];
        bare.emit(&mut Packet::new_unchecked(&mut buf[..20]));
        assert_eq!(buf[12], 0x50);
        assert_eq!(buf[16..18], [0, 0]);
    }

    #[test]
    fn flags_behave_like_a_bit_set() {
        let mut flags = Flags::SYN | Flags::ACK;
        assert!(flags.contains(Flags::SYN));
        assert!(!flags.contains(Flags::SYN | Flags::FIN));
        assert!(flags.intersects(Flags::FIN | Flags::ACK));
        flags.remove(Flags::SYN);
        flags.insert(Flags::ECE | Flags::CWR);
        assert_eq!(flags.bits(), 0xd0);
        assert_eq!(format!("{flags:?}"), "ACK|ECE|CWR");
        assert_eq!(format!("{:?}", Flags::empty()), "(none)");
        assert_eq!((!Flags::FIN & Flags::from_bits(0x03)), Flags::SYN);
    }

    #[test]
    fn incremental_nat_rewrites_match_full_checksum() {
        let mut buf = SYN_V4;
        let mut packet = Packet::new_checked(&mut buf[..]).unwrap();
        packet.set_src_port_incremental(61000);
        packet.set_dst_port_incremental(8080);
        let nat_src = [198, 51, 100, 20];
        packet.update_checksum_for_addr_v4(CLIENT_V4, nat_src);
        assert!(packet.verify_checksum_v4(nat_src, SERVER_V4));
        let incremental = packet.checksum();
        packet.fill_checksum_v4(nat_src, SERVER_V4);
        // One's complement has two zeros; either is a valid TCP checksum.
        let full = packet.checksum();
        assert!(incremental == full || (incremental | full) == 0xffff && (incremental & full) == 0);

        let mut buf = DATA_V6;
        let mut packet = Packet::new_checked(&mut buf[..]).unwrap();
        let mut new_dst = CLIENT_V6;
        new_dst[15] = 0x99;
        packet.update_checksum_for_addr_v6(CLIENT_V6, new_dst);
        packet.set_dst_port_incremental(1);
        assert!(packet.verify_checksum_v6(SERVER_V6, new_dst));
    }

    #[test]
    fn clamp_mss_rewrites_and_keeps_checksum() {
        let mut buf = SYN_V4;
        let mut packet = Packet::new_checked(&mut buf[..]).unwrap();
        assert_eq!(packet.clamp_mss(1500), Ok(false));
        assert_eq!(packet.clamp_mss(1400), Ok(true));
        assert!(packet.verify_checksum_v4(CLIENT_V4, SERVER_V4));
        assert_eq!(Repr::parse(&packet).unwrap().max_seg_size, Some(1400));
        let mut buf = DATA_V6;
        assert_eq!(
            Packet::new_checked(&mut buf[..]).unwrap().clamp_mss(536),
            Ok(false)
        );
        let mut bad = SYN_V4;
        bad[21] = 40; // MSS length past the options
        assert_eq!(
            Packet::new_checked(&mut bad[..]).unwrap().clamp_mss(536),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..SYN_V4.len() {
            assert_eq!(
                Packet::new_checked(&SYN_V4[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
        // Without a length field, a short payload cannot be detected: the
        // view must still hold up.
        for len in 32..DATA_V6.len() {
            let packet = Packet::new_checked(&DATA_V6[..len]).unwrap();
            assert_eq!(packet.payload().len(), len - 32);
            assert!(Repr::parse(&packet).is_ok());
        }
    }

    #[test]
    fn bogus_data_offsets() {
        for offset in 0..5u8 {
            let mut buf = SYN_V4;
            buf[12] = offset << 4;
            assert_eq!(Packet::new_checked(&buf[..]).unwrap_err(), Error::Malformed);
        }
        for offset in 11..=15u8 {
            let mut buf = SYN_V4;
            buf[12] = offset << 4;
            assert_eq!(Packet::new_checked(&buf[..]).unwrap_err(), Error::Truncated);
        }
    }

    fn options_error(options: &[u8]) -> Option<Error> {
        OptionsIter::new(options).find_map(|o| o.err())
    }

    #[test]
    fn malformed_options() {
        assert_eq!(options_error(&[2]), Some(Error::Malformed)); // no length byte
        assert_eq!(options_error(&[2, 0, 0, 0]), Some(Error::Malformed)); // length 0
        assert_eq!(options_error(&[2, 1, 0, 0]), Some(Error::Malformed)); // length 1
        assert_eq!(options_error(&[2, 5, 0, 0]), Some(Error::Malformed)); // past the end
        assert_eq!(options_error(&[2, 3, 0, 1]), Some(Error::Malformed)); // MSS must be 4
        assert_eq!(options_error(&[3, 4, 0, 0]), Some(Error::Malformed)); // WS must be 3
        assert_eq!(options_error(&[4, 3, 0, 1]), Some(Error::Malformed)); // SACK-perm must be 2
        assert_eq!(options_error(&[8, 4, 0, 0]), Some(Error::Malformed)); // TS must be 10
        assert_eq!(options_error(&[5, 6, 0, 0, 0, 0]), Some(Error::Malformed)); // partial block
        assert_eq!(options_error(&[99, 4, 1, 2, 1, 0, 0, 0]), None); // unknown, then EOL
        let mut iter = OptionsIter::new(&[99, 4, 1, 2, 0, 7, 7, 7]);
        assert_eq!(
            iter.next(),
            Some(Ok(TcpOption::Unknown {
                kind: 99,
                data: &[1, 2]
            }))
        );
        assert_eq!(iter.next(), Some(Ok(TcpOption::EndOfList)));
        assert_eq!(iter.next(), None);
        let mut iter = OptionsIter::new(&[2, 9]);
        assert_eq!(iter.next(), Some(Err(Error::Malformed)));
        assert_eq!(iter.next(), None);

        let mut buf = SYN_V4;
        buf[38] = 30; // the window scale option now claims 30 bytes
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Err(Error::Malformed));
    }

    #[test]
    fn zero_ports_are_malformed() {
        let mut buf = SYN_V4;
        buf[0] = 0;
        buf[1] = 0;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
            Err(Error::Malformed)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(packet) = Packet::new_checked(&data[..]) {
                let _ = (packet.seq_number(), packet.ack_number(), packet.flags(), packet.urgent_at());
                let _ = packet.verify_checksum_v4(CLIENT_V4, SERVER_V4);
                let _ = packet.verify_checksum_v6(CLIENT_V6, SERVER_V6);
                for option in packet.options_iter() {
                    if let Ok(TcpOption::Sack(blocks)) = option {
                        let _ = blocks.iter().count();
                    }
                }
                let mut copy = data.clone();
                let _ = Packet::new_unchecked(&mut copy[..]).clamp_mss(536);
                if let Ok(repr) = Repr::parse(&packet) {
                    prop_assert_eq!(repr.payload_len, packet.payload().len());
                    // Re-emitting what we understood must produce a valid segment.
                    let mut out = vec![0xa5; repr.buffer_len()];
                    repr.emit_v4(&mut Packet::new_unchecked(&mut out[..]), CLIENT_V4, SERVER_V4);
                    let again = Packet::new_checked(&out[..]).unwrap();
                    prop_assert!(again.verify_checksum_v4(CLIENT_V4, SERVER_V4));
                    let reparsed = Repr::parse(&again).unwrap();
                    prop_assert_eq!(reparsed.flags, repr.flags);
                    prop_assert_eq!(reparsed.timestamps, repr.timestamps);
                }
            }
        }
    }
}
