//! SCTP (RFC 9260): the common header, CRC32c, a chunk iterator, and views
//! of the chunks a stateful filter reads (INIT/INIT-ACK, DATA, SHUTDOWN).
//!
//! SCTP has no length field: the view's buffer must be exactly the IP
//! payload, which the CRC32c covers. The CRC (Castagnoli, reflected,
//! polynomial 0x82F63B78; RFC 9260 Appendix A) is computed here with
//! slicing-by-8 tables built at compile time. It goes on the wire least
//! significant byte first, so [`Packet::checksum`] reads it little-endian and
//! it compares directly with [`crc32c`].

use super::{Error, Result};

/// Length of the common header.
pub const HEADER_LEN: usize = 12;
/// Length of a chunk's type, flags and length fields.
pub const CHUNK_HEADER_LEN: usize = 4;

mod field {
    pub type Field = core::ops::Range<usize>;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const VERIFICATION_TAG: Field = 4..8;
    pub const CHECKSUM: Field = 8..12;
}

/// Chunk types (RFC 9260 §3.2).
pub mod chunk_type {
    pub const DATA: u8 = 0;
    pub const INIT: u8 = 1;
    pub const INIT_ACK: u8 = 2;
    pub const SACK: u8 = 3;
    pub const HEARTBEAT: u8 = 4;
    pub const HEARTBEAT_ACK: u8 = 5;
    pub const ABORT: u8 = 6;
    pub const SHUTDOWN: u8 = 7;
    pub const SHUTDOWN_ACK: u8 = 8;
    pub const ERROR: u8 = 9;
    pub const COOKIE_ECHO: u8 = 10;
    pub const COOKIE_ACK: u8 = 11;
    pub const ECNE: u8 = 12;
    pub const CWR: u8 = 13;
    pub const SHUTDOWN_COMPLETE: u8 = 14;
}

/// Chunk flag bits.
pub mod chunk_flags {
    /// DATA: E, the last fragment of a user message.
    pub const DATA_END: u8 = 0x01;
    /// DATA: B, the first fragment of a user message.
    pub const DATA_BEGIN: u8 = 0x02;
    /// DATA: U, unordered.
    pub const DATA_UNORDERED: u8 = 0x04;
    /// DATA: I, the receiver should SACK immediately (RFC 7053).
    pub const DATA_IMMEDIATE: u8 = 0x08;
    /// ABORT and SHUTDOWN COMPLETE: T, the verification tag is the sender's
    /// own (reflected) rather than the peer's.
    pub const TAG_REFLECTED: u8 = 0x01;
}

const CRC32C_POLY: u32 = 0x82f6_3b78;

/// Slicing-by-8 tables: `T[0]` is the ordinary byte-at-a-time table, and
/// `T[k][b]` is the CRC of byte `b` followed by `k` zero bytes.
const fn crc32c_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ CRC32C_POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][i] = crc;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut k = 1;
        while k < 8 {
            let prev = tables[k - 1][i];
            tables[k][i] = (prev >> 8) ^ tables[0][(prev & 0xff) as usize];
            k += 1;
        }
        i += 1;
    }
    tables
}

static CRC32C_TABLES: [[u32; 256]; 8] = crc32c_tables();

/// Advances the raw (not inverted) CRC register over `data`.
#[inline]
fn crc32c_update(mut crc: u32, data: &[u8]) -> u32 {
    let t = &CRC32C_TABLES;
    let mut blocks = data.chunks_exact(8);
    for b in &mut blocks {
        let lo = crc ^ u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][b[4] as usize]
            ^ t[2][b[5] as usize]
            ^ t[1][b[6] as usize]
            ^ t[0][b[7] as usize];
    }
    for &byte in blocks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ byte as u32) & 0xff) as usize];
    }
    crc
}

/// CRC32c of `data`.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    !crc32c_update(!0, data)
}

/// Extends a finished CRC32c: `crc32c_append(crc32c(a), b) == crc32c(a ++ b)`.
#[inline]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    !crc32c_update(!crc, data)
}

/// A zero-copy view of an SCTP packet.
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

    /// `Truncated` if the buffer cannot hold the common header. Chunks are
    /// checked as they are walked.
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

    #[inline]
    pub fn src_port(&self) -> u16 {
        let data = &self.buffer.as_ref()[field::SRC_PORT];
        u16::from_be_bytes([data[0], data[1]])
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        let data = &self.buffer.as_ref()[field::DST_PORT];
        u16::from_be_bytes([data[0], data[1]])
    }

    #[inline]
    pub fn verification_tag(&self) -> u32 {
        let data = &self.buffer.as_ref()[field::VERIFICATION_TAG];
        u32::from_be_bytes([data[0], data[1], data[2], data[3]])
    }

    /// The CRC32c as a number (the field is stored least significant byte first).
    #[inline]
    pub fn checksum(&self) -> u32 {
        let data = &self.buffer.as_ref()[field::CHECKSUM];
        u32::from_le_bytes([data[0], data[1], data[2], data[3]])
    }

    /// The chunks, unparsed.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    #[inline]
    pub fn chunks(&self) -> ChunksIter<'_> {
        ChunksIter::new(self.payload())
    }

    /// The CRC32c of the packet with its checksum field taken as zero.
    #[inline]
    pub fn compute_checksum(&self) -> u32 {
        let data = self.buffer.as_ref();
        let crc = crc32c_update(!0, &data[..field::CHECKSUM.start]);
        let crc = crc32c_update(crc, &[0; 4]);
        !crc32c_update(crc, &data[field::CHECKSUM.end..])
    }

    #[inline]
    pub fn verify_checksum(&self) -> bool {
        self.compute_checksum() == self.checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_verification_tag(&mut self, value: u32) {
        self.buffer.as_mut()[field::VERIFICATION_TAG].copy_from_slice(&value.to_be_bytes());
    }

    /// Stores a CRC32c value (least significant byte first).
    #[inline]
    pub fn set_checksum(&mut self, value: u32) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_le_bytes());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Computes and stores the CRC32c. Unlike the Internet checksum it cannot
    /// be updated incrementally, so any rewrite (NAT of the ports) must refill it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        let crc = self.compute_checksum();
        self.set_checksum(crc);
    }
}

/// One chunk: its type, flags and value (without the padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub chunk_type: u8,
    pub flags: u8,
    pub value: &'a [u8],
}

impl Chunk<'_> {
    /// The length field: header plus value, without padding.
    #[inline]
    pub fn length(&self) -> usize {
        CHUNK_HEADER_LEN + self.value.len()
    }

    /// For ABORT and SHUTDOWN COMPLETE: whether the T bit is set.
    #[inline]
    pub fn tag_reflected(&self) -> bool {
        self.flags & chunk_flags::TAG_REFLECTED != 0
    }
}

/// Walks the chunks after the common header. Yields `Err(Malformed)` once,
/// then stops, for a chunk header cut short, a length below 4, or a length
/// past the end. The padding of the last chunk may be missing.
#[derive(Debug, Clone)]
pub struct ChunksIter<'a> {
    data: &'a [u8],
}

impl<'a> ChunksIter<'a> {
    #[inline]
    pub fn new(chunks: &'a [u8]) -> ChunksIter<'a> {
        ChunksIter { data: chunks }
    }
}

impl<'a> Iterator for ChunksIter<'a> {
    type Item = Result<Chunk<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let data = self.data;
        if data.is_empty() {
            return None;
        }
        let len = match data {
            [_, _, hi, lo, ..] => u16::from_be_bytes([*hi, *lo]) as usize,
            _ => 0,
        };
        if len < CHUNK_HEADER_LEN || len > data.len() {
            self.data = &[];
            return Some(Err(Error::Malformed));
        }
        let padded = (len + 3) & !3;
        self.data = &data[padded.min(data.len())..];
        Some(Ok(Chunk {
            chunk_type: data[0],
            flags: data[1],
            value: &data[CHUNK_HEADER_LEN..len],
        }))
    }
}

#[inline]
fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[inline]
fn be16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

/// The fixed fields of INIT and INIT ACK (RFC 9260 §3.3.2-3); parameters
/// follow in `Chunk::value[16..]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitChunk {
    /// The tag the sender expects in every packet sent to it.
    pub initiate_tag: u32,
    pub a_rwnd: u32,
    pub outbound_streams: u16,
    pub inbound_streams: u16,
    pub initial_tsn: u32,
}

impl InitChunk {
    pub const FIXED_LEN: usize = 16;

    /// `Unsupported` for another chunk type; `Malformed` if the value is short.
    pub fn parse(chunk: &Chunk<'_>) -> Result<InitChunk> {
        if !matches!(chunk.chunk_type, chunk_type::INIT | chunk_type::INIT_ACK) {
            return Err(Error::Unsupported);
        }
        let v = chunk.value;
        if v.len() < Self::FIXED_LEN {
            return Err(Error::Malformed);
        }
        Ok(InitChunk {
            initiate_tag: be32(&v[0..4]),
            a_rwnd: be32(&v[4..8]),
            outbound_streams: be16(&v[8..10]),
            inbound_streams: be16(&v[10..12]),
            initial_tsn: be32(&v[12..16]),
        })
    }

    /// The chunk value's fixed part.
    pub fn to_bytes(&self) -> [u8; Self::FIXED_LEN] {
        let mut out = [0u8; Self::FIXED_LEN];
        out[0..4].copy_from_slice(&self.initiate_tag.to_be_bytes());
        out[4..8].copy_from_slice(&self.a_rwnd.to_be_bytes());
        out[8..10].copy_from_slice(&self.outbound_streams.to_be_bytes());
        out[10..12].copy_from_slice(&self.inbound_streams.to_be_bytes());
        out[12..16].copy_from_slice(&self.initial_tsn.to_be_bytes());
        out
    }
}

/// A DATA chunk (RFC 9260 §3.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataChunk<'a> {
    /// See `chunk_flags::DATA_*`.
    pub flags: u8,
    pub tsn: u32,
    pub stream_id: u16,
    pub stream_seq: u16,
    pub ppid: u32,
    pub user_data: &'a [u8],
}

impl<'a> DataChunk<'a> {
    pub const FIXED_LEN: usize = 12;

    /// `Unsupported` for another chunk type; `Malformed` if the value is short.
    pub fn parse(chunk: &Chunk<'a>) -> Result<DataChunk<'a>> {
        if chunk.chunk_type != chunk_type::DATA {
            return Err(Error::Unsupported);
        }
        let v = chunk.value;
        if v.len() < Self::FIXED_LEN {
            return Err(Error::Malformed);
        }
        Ok(DataChunk {
            flags: chunk.flags,
            tsn: be32(&v[0..4]),
            stream_id: be16(&v[4..6]),
            stream_seq: be16(&v[6..8]),
            ppid: be32(&v[8..12]),
            user_data: &v[12..],
        })
    }
}

/// The cumulative TSN ack of a SHUTDOWN chunk (RFC 9260 §3.3.8).
pub fn shutdown_cum_tsn_ack(chunk: &Chunk<'_>) -> Result<u32> {
    if chunk.chunk_type != chunk_type::SHUTDOWN {
        return Err(Error::Unsupported);
    }
    if chunk.value.len() != 4 {
        return Err(Error::Malformed);
    }
    Ok(be32(chunk.value))
}

/// Writes one chunk (header, `value`, zero padding to 4 bytes) at the start
/// of `buf`; returns the padded length. `Truncated` if `buf` is too short,
/// `Malformed` if `value` does not fit the 16-bit length.
pub fn emit_chunk(buf: &mut [u8], chunk_type: u8, flags: u8, value: &[u8]) -> Result<usize> {
    let len = CHUNK_HEADER_LEN + value.len();
    if len > u16::MAX as usize {
        return Err(Error::Malformed);
    }
    let padded = (len + 3) & !3;
    let out = buf.get_mut(..padded).ok_or(Error::Truncated)?;
    out[0] = chunk_type;
    out[1] = flags;
    out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    out[CHUNK_HEADER_LEN..len].copy_from_slice(value);
    out[len..].fill(0);
    Ok(padded)
}

/// A parsed common header. The chunks stay in the buffer; `chunks_len`
/// says how many bytes they take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub verification_tag: u32,
    pub chunks_len: usize,
}

impl Repr {
    /// Reads the header and walks the chunks: `Malformed` if there are none
    /// or one does not walk. Does not verify the CRC32c (it may be offloaded):
    /// call `Packet::verify_checksum` first.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        let mut chunks = 0usize;
        for chunk in packet.chunks() {
            chunk?;
            chunks += 1;
        }
        if chunks == 0 {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            verification_tag: packet.verification_tag(),
            chunks_len: packet.payload().len(),
        })
    }

    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.chunks_len
    }

    /// Writes the common header and the CRC32c over the whole buffer, which
    /// must be `buffer_len()` long with the chunks already in place.
    ///
    /// # Panics
    /// If the buffer is shorter than the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        debug_assert_eq!(packet.buffer.as_ref().len(), self.buffer_len());
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_verification_tag(self.verification_tag);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The textbook bit-at-a-time CRC32c, to check the tables against.
    fn crc32c_bitwise(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= byte as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ CRC32C_POLY
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    // An INIT from an independent SCTP implementation (a Diameter peer, port
    // 4068 -> 3868): verification tag 0 as INIT requires, CRC32c bytes
    // 9f 78 a7 04 (0x04a7789f), which tshark also verifies.
    const INIT: [u8; 32] = [
        0x0f, 0xe4, 0x0f, 0x1c, 0x00, 0x00, 0x00, 0x00, // ports, verification tag
        0x9f, 0x78, 0xa7, 0x04, 0x01, 0x00, 0x00, 0x14, // CRC32c; INIT, length 20
        0xbb, 0x7b, 0x0f, 0x9c, 0x00, 0x00, 0xfa, 0x00, // initiate tag, a_rwnd 64000
        0x00, 0x0a, 0x00, 0x0a, 0xbb, 0x7b, 0x0f, 0x9c, // 10 out, 10 in, initial TSN
    ];

    // DATA, 3868 -> 3868, tag 0x1a2b3c4d, B|E, TSN 1, stream 0, SSN 0, PPID 46
    // (Diameter), "hello" padded to 8. CRC32c confirmed by tshark.
    const DATA: [u8; 36] = [
        0x0f, 0x1c, 0x0f, 0x1c, 0x1a, 0x2b, 0x3c, 0x4d, //
        0x03, 0x7b, 0x78, 0x21, 0x00, 0x03, 0x00, 0x15, // CRC32c; DATA, B|E, length 21
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, // TSN, stream, SSN
        0x00, 0x00, 0x00, 0x2e, b'h', b'e', b'l', b'l', // PPID
        b'o', 0x00, 0x00, 0x00,
    ];

    #[test]
    fn crc32c_rfc3720_vectors() {
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let incrementing: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&incrementing), 0x46dd_794e);
        let decrementing: Vec<u8> = (0..32).rev().collect();
        assert_eq!(crc32c(&decrementing), 0x113f_db5c);
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn crc32c_append_continues() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for cut in [0, 1, 7, 8, 9, 500, 1000] {
            assert_eq!(
                crc32c_append(crc32c(&data[..cut]), &data[cut..]),
                crc32c(&data)
            );
        }
    }

    #[test]
    fn golden_init() {
        let packet = Packet::new_checked(&INIT[..]).unwrap();
        assert_eq!(packet.src_port(), 4068);
        assert_eq!(packet.dst_port(), 3868);
        assert_eq!(packet.verification_tag(), 0);
        assert_eq!(packet.checksum(), 0x04a7_789f);
        assert!(packet.verify_checksum());
        let chunks: Vec<_> = packet.chunks().collect::<Result<_>>().unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].chunk_type, chunk_type::INIT);
        assert_eq!(chunks[0].length(), 20);
        let init = InitChunk::parse(&chunks[0]).unwrap();
        assert_eq!(
            init,
            InitChunk {
                initiate_tag: 0xbb7b_0f9c,
                a_rwnd: 64000,
                outbound_streams: 10,
                inbound_streams: 10,
                initial_tsn: 0xbb7b_0f9c,
            }
        );
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Repr {
                src_port: 4068,
                dst_port: 3868,
                verification_tag: 0,
                chunks_len: 20
            }
        );

        let mut buf = [0xa5u8; 32];
        let len = emit_chunk(
            &mut buf[HEADER_LEN..],
            chunk_type::INIT,
            0,
            &init.to_bytes(),
        )
        .unwrap();
        assert_eq!(len, 20);
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, INIT);
    }

    #[test]
    fn golden_data() {
        let packet = Packet::new_checked(&DATA[..]).unwrap();
        assert!(packet.verify_checksum());
        let chunk = packet.chunks().next().unwrap().unwrap();
        assert_eq!(chunk.length(), 21);
        let data = DataChunk::parse(&chunk).unwrap();
        assert_eq!(
            data,
            DataChunk {
                flags: chunk_flags::DATA_BEGIN | chunk_flags::DATA_END,
                tsn: 1,
                stream_id: 0,
                stream_seq: 0,
                ppid: 46,
                user_data: b"hello",
            }
        );
        assert_eq!(InitChunk::parse(&chunk), Err(Error::Unsupported));
        assert_eq!(packet.chunks().count(), 1);

        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(repr.chunks_len, 24);
        let mut buf = [0xa5u8; 36];
        let mut value = [0u8; 17];
        value[..12].copy_from_slice(&DATA[16..28]);
        value[12..].copy_from_slice(b"hello");
        let len = emit_chunk(&mut buf[HEADER_LEN..], chunk_type::DATA, 0x03, &value).unwrap();
        assert_eq!(len, 24);
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, DATA);
    }

    #[test]
    fn several_chunks_and_named_types() {
        let mut buf = [0u8; 64];
        let mut pos = HEADER_LEN;
        pos += emit_chunk(
            &mut buf[pos..],
            chunk_type::SHUTDOWN,
            0,
            &7u32.to_be_bytes(),
        )
        .unwrap();
        pos += emit_chunk(
            &mut buf[pos..],
            chunk_type::ABORT,
            chunk_flags::TAG_REFLECTED,
            &[],
        )
        .unwrap();
        pos += emit_chunk(&mut buf[pos..], chunk_type::INIT_ACK, 0, &[0; 17]).unwrap();
        let repr = Repr {
            src_port: 1,
            dst_port: 2,
            verification_tag: 3,
            chunks_len: pos - HEADER_LEN,
        };
        repr.emit(&mut Packet::new_unchecked(&mut buf[..pos]));
        let packet = Packet::new_checked(&buf[..pos]).unwrap();
        assert!(packet.verify_checksum());
        let chunks: Vec<_> = packet.chunks().collect::<Result<_>>().unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(shutdown_cum_tsn_ack(&chunks[0]), Ok(7));
        assert!(chunks[1].tag_reflected());
        assert_eq!(chunks[1].value, &[] as &[u8]);
        assert_eq!(chunks[2].chunk_type, chunk_type::INIT_ACK);
        assert_eq!(chunks[2].value.len(), 17);
        assert_eq!(shutdown_cum_tsn_ack(&chunks[1]), Err(Error::Unsupported));
        assert_eq!(
            emit_chunk(&mut buf[..7], chunk_type::DATA, 0, &[1, 2, 3, 4]),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn corruption_and_rewrites_need_a_refill() {
        let mut buf = INIT;
        buf[20] ^= 0x80;
        assert!(!Packet::new_checked(&buf[..]).unwrap().verify_checksum());
        let mut buf = DATA;
        let mut packet = Packet::new_checked(&mut buf[..]).unwrap();
        packet.set_src_port(40000);
        assert!(!packet.verify_checksum());
        packet.fill_checksum();
        assert!(packet.verify_checksum());
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..INIT.len() {
            match Packet::new_checked(&INIT[..len]) {
                Err(err) => {
                    assert_eq!(err, Error::Truncated);
                    assert!(len < HEADER_LEN);
                }
                Ok(packet) => {
                    assert_eq!(Repr::parse(&packet), Err(Error::Malformed), "len {len}");
                    assert!(!packet.verify_checksum());
                }
            }
        }
        // Only DATA's padding may go missing.
        for len in HEADER_LEN..DATA.len() {
            let packet = Packet::new_checked(&DATA[..len]).unwrap();
            assert_eq!(Repr::parse(&packet).is_ok(), len >= 33, "len {len}");
        }
    }

    #[test]
    fn bogus_chunk_lengths() {
        for bad in [0u16, 1, 2, 3, 21, 0xffff] {
            let mut buf = INIT;
            buf[14..16].copy_from_slice(&bad.to_be_bytes());
            let packet = Packet::new_checked(&buf[..]).unwrap();
            assert_eq!(Repr::parse(&packet), Err(Error::Malformed), "length {bad}");
            let mut chunks = packet.chunks();
            assert_eq!(chunks.next(), Some(Err(Error::Malformed)));
            assert_eq!(chunks.next(), None);
        }
        let short_init = Chunk {
            chunk_type: chunk_type::INIT,
            flags: 0,
            value: &[0; 15],
        };
        assert_eq!(InitChunk::parse(&short_init), Err(Error::Malformed));
        let short_data = Chunk {
            chunk_type: chunk_type::DATA,
            flags: 0,
            value: &[0; 11],
        };
        assert_eq!(DataChunk::parse(&short_data), Err(Error::Malformed));
    }

    proptest! {
        #[test]
        fn tables_match_bitwise(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(crc32c(&data), crc32c_bitwise(&data));
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(packet) = Packet::new_checked(&data[..]) {
                let _ = (packet.verification_tag(), packet.checksum(), packet.verify_checksum());
                for chunk in packet.chunks().flatten() {
                    let _ = InitChunk::parse(&chunk);
                    let _ = DataChunk::parse(&chunk);
                    let _ = shutdown_cum_tsn_ack(&chunk);
                }
                if let Ok(repr) = Repr::parse(&packet) {
                    prop_assert_eq!(repr.buffer_len(), data.len());
                }
            }
        }
    }
}
