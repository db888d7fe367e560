//! ICMPv4 (RFC 792, RFC 1191 for "fragmentation needed"): a message view,
//! its `Repr`, and [`emit_error`] to build an error quoting the packet that
//! caused it.
//!
//! Every message starts with an 8-byte header (type, code, checksum and four
//! type-specific bytes); the checksum covers the whole message, so the view's
//! buffer must be exactly the IP payload. `Repr` does not copy the bytes after
//! the header (echo data, or the quoted packet of an error): it records their
//! length, and `emit` checksums whatever the buffer holds there.

use core::ops::Range;

use super::checksum;
use super::{Error, Result};

/// Length of the ICMPv4 header (type, code, checksum, rest of header).
pub const HEADER_LEN: usize = 8;

mod field {
    pub type Field = core::ops::Range<usize>;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const TYPE_CODE: Field = 0..2;
    pub const CHECKSUM: Field = 2..4;
    pub const REST_OF_HEADER: Field = 4..8;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQ_NO: Field = 6..8;
    pub const NEXT_HOP_MTU: Field = 6..8;
    pub const POINTER: usize = 4;
}

/// Message types (IANA "ICMP Type Numbers").
pub mod message {
    pub const ECHO_REPLY: u8 = 0;
    pub const DST_UNREACHABLE: u8 = 3;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const ROUTER_ADVERT: u8 = 9;
    pub const ROUTER_SOLICIT: u8 = 10;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
    pub const TIMESTAMP: u8 = 13;
    pub const TIMESTAMP_REPLY: u8 = 14;
}

/// Whether `msg_type` is an error message (one that quotes another packet,
/// and that must never be sent in answer to another error).
#[inline]
pub const fn is_error(msg_type: u8) -> bool {
    matches!(
        msg_type,
        message::DST_UNREACHABLE
            | message::REDIRECT
            | message::TIME_EXCEEDED
            | message::PARAM_PROBLEM
    )
}

/// Destination Unreachable codes (RFC 792, RFC 1122, RFC 1812).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    Net,
    Host,
    Protocol,
    Port,
    /// Code 4: the packet needs fragmenting but has DF set; carries the MTU of
    /// the next hop (RFC 1191), zero from routers that predate it.
    FragNeeded {
        next_hop_mtu: u16,
    },
    SourceRouteFailed,
    NetUnknown,
    HostUnknown,
    SourceHostIsolated,
    NetProhibited,
    HostProhibited,
    NetForTos,
    HostForTos,
    AdminProhibited,
    HostPrecedenceViolation,
    PrecedenceCutoff,
    Other(u8),
}

impl Unreachable {
    /// The reason for `code`; `next_hop_mtu` is used only by code 4.
    #[inline]
    pub const fn from_code(code: u8, next_hop_mtu: u16) -> Unreachable {
        match code {
            0 => Unreachable::Net,
            1 => Unreachable::Host,
            2 => Unreachable::Protocol,
            3 => Unreachable::Port,
            4 => Unreachable::FragNeeded { next_hop_mtu },
            5 => Unreachable::SourceRouteFailed,
            6 => Unreachable::NetUnknown,
            7 => Unreachable::HostUnknown,
            8 => Unreachable::SourceHostIsolated,
            9 => Unreachable::NetProhibited,
            10 => Unreachable::HostProhibited,
            11 => Unreachable::NetForTos,
            12 => Unreachable::HostForTos,
            13 => Unreachable::AdminProhibited,
            14 => Unreachable::HostPrecedenceViolation,
            15 => Unreachable::PrecedenceCutoff,
            other => Unreachable::Other(other),
        }
    }

    #[inline]
    pub const fn code(self) -> u8 {
        match self {
            Unreachable::Net => 0,
            Unreachable::Host => 1,
            Unreachable::Protocol => 2,
            Unreachable::Port => 3,
            Unreachable::FragNeeded { .. } => 4,
            Unreachable::SourceRouteFailed => 5,
            Unreachable::NetUnknown => 6,
            Unreachable::HostUnknown => 7,
            Unreachable::SourceHostIsolated => 8,
            Unreachable::NetProhibited => 9,
            Unreachable::HostProhibited => 10,
            Unreachable::NetForTos => 11,
            Unreachable::HostForTos => 12,
            Unreachable::AdminProhibited => 13,
            Unreachable::HostPrecedenceViolation => 14,
            Unreachable::PrecedenceCutoff => 15,
            Unreachable::Other(code) => code,
        }
    }

    /// The four type-specific header bytes this reason puts on the wire.
    #[inline]
    const fn rest_of_header(self) -> u32 {
        match self {
            Unreachable::FragNeeded { next_hop_mtu } => next_hop_mtu as u32,
            _ => 0,
        }
    }
}

/// Time Exceeded codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeExceeded {
    /// Code 0: TTL reached zero in transit.
    TtlExpired,
    /// Code 1: fragment reassembly timed out.
    FragReassembly,
    Other(u8),
}

impl TimeExceeded {
    #[inline]
    pub const fn from_code(code: u8) -> TimeExceeded {
        match code {
            0 => TimeExceeded::TtlExpired,
            1 => TimeExceeded::FragReassembly,
            other => TimeExceeded::Other(other),
        }
    }

    #[inline]
    pub const fn code(self) -> u8 {
        match self {
            TimeExceeded::TtlExpired => 0,
            TimeExceeded::FragReassembly => 1,
            TimeExceeded::Other(code) => code,
        }
    }
}

/// A zero-copy view of an ICMPv4 message.
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

    /// `Truncated` if the buffer cannot hold the 8-byte header. Every field
    /// this view reads lies in those 8 bytes.
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
    fn read_u16(&self, range: field::Field) -> u16 {
        let data = &self.buffer.as_ref()[range];
        u16::from_be_bytes([data[0], data[1]])
    }

    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// The four type-specific header bytes as one big-endian word.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        let data = &self.buffer.as_ref()[field::REST_OF_HEADER];
        u32::from_be_bytes([data[0], data[1], data[2], data[3]])
    }

    /// Echo identifier (meaningful for echo request and reply).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        self.read_u16(field::ECHO_IDENT)
    }

    /// Echo sequence number (meaningful for echo request and reply).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        self.read_u16(field::ECHO_SEQ_NO)
    }

    /// Next-hop MTU (meaningful for "fragmentation needed").
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        self.read_u16(field::NEXT_HOP_MTU)
    }

    /// Pointer to the offending octet (meaningful for parameter problem).
    #[inline]
    pub fn pointer(&self) -> u8 {
        self.buffer.as_ref()[field::POINTER]
    }

    /// The bytes after the header: echo data, or the quoted packet of an error.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn write_u16(&mut self, range: field::Field, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    #[inline]
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(field::CHECKSUM, value)
    }

    #[inline]
    pub fn set_rest_of_header(&mut self, value: u32) {
        self.buffer.as_mut()[field::REST_OF_HEADER].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        self.write_u16(field::ECHO_IDENT, value)
    }

    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        self.write_u16(field::ECHO_SEQ_NO, value)
    }

    #[inline]
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        self.write_u16(field::NEXT_HOP_MTU, value)
    }

    #[inline]
    pub fn set_pointer(&mut self, value: u8) {
        self.buffer.as_mut()[field::POINTER] = value;
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Computes the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let check = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(check);
    }

    /// Rewrites type and code, updating the checksum incrementally (turning an
    /// echo request into a reply without summing its data).
    #[inline]
    pub fn set_type_code_incremental(&mut self, msg_type: u8, code: u8) {
        let old = self.read_u16(field::TYPE_CODE);
        let new = u16::from_be_bytes([msg_type, code]);
        self.write_u16(field::TYPE_CODE, new);
        let check = checksum::update16(self.checksum(), old, new);
        self.set_checksum(check);
    }

    /// Rewrites the echo identifier (the "port" of ICMP query NAT), updating
    /// the checksum incrementally.
    #[inline]
    pub fn set_echo_ident_incremental(&mut self, value: u16) {
        let old = self.echo_ident();
        self.set_echo_ident(value);
        let check = checksum::update16(self.checksum(), old, value);
        self.set_checksum(check);
    }
}

/// A parsed ICMPv4 message. Trailing bytes are described by length only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data_len: usize,
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data_len: usize,
    },
    /// `invoking_len` bytes of the offending packet (its IP header and at
    /// least 8 bytes of its payload) follow the header; see [`Repr::data_range`].
    DstUnreachable {
        reason: Unreachable,
        invoking_len: usize,
    },
    TimeExceeded {
        reason: TimeExceeded,
        invoking_len: usize,
    },
    /// Any other type, or an echo with a non-zero code, kept verbatim.
    Other {
        msg_type: u8,
        code: u8,
        rest_of_header: u32,
        data_len: usize,
    },
}

impl Repr {
    /// Reads the message. Does not verify the checksum: call
    /// `Packet::verify_checksum` first where the NIC has not.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        let data_len = packet.data().len();
        let repr = match (packet.msg_type(), packet.msg_code()) {
            (message::ECHO_REQUEST, 0) => Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data_len,
            },
            (message::ECHO_REPLY, 0) => Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data_len,
            },
            (message::DST_UNREACHABLE, code) => Repr::DstUnreachable {
                reason: Unreachable::from_code(code, packet.next_hop_mtu()),
                invoking_len: data_len,
            },
            (message::TIME_EXCEEDED, code) => Repr::TimeExceeded {
                reason: TimeExceeded::from_code(code),
                invoking_len: data_len,
            },
            (msg_type, code) => Repr::Other {
                msg_type,
                code,
                rest_of_header: packet.rest_of_header(),
                data_len,
            },
        };
        Ok(repr)
    }

    /// Length of what follows the 8-byte header.
    #[inline]
    pub fn data_len(&self) -> usize {
        match *self {
            Repr::EchoRequest { data_len, .. }
            | Repr::EchoReply { data_len, .. }
            | Repr::Other { data_len, .. } => data_len,
            Repr::DstUnreachable { invoking_len, .. } | Repr::TimeExceeded { invoking_len, .. } => {
                invoking_len
            }
        }
    }

    /// Where the echo data or the quoted offending packet sits in the message.
    #[inline]
    pub fn data_range(&self) -> Range<usize> {
        HEADER_LEN..HEADER_LEN + self.data_len()
    }

    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data_len()
    }

    #[inline]
    fn type_code_rest(&self) -> (u8, u8, u32) {
        match *self {
            Repr::EchoRequest { ident, seq_no, .. } => (
                message::ECHO_REQUEST,
                0,
                (ident as u32) << 16 | seq_no as u32,
            ),
            Repr::EchoReply { ident, seq_no, .. } => {
                (message::ECHO_REPLY, 0, (ident as u32) << 16 | seq_no as u32)
            }
            Repr::DstUnreachable { reason, .. } => (
                message::DST_UNREACHABLE,
                reason.code(),
                reason.rest_of_header(),
            ),
            Repr::TimeExceeded { reason, .. } => (message::TIME_EXCEEDED, reason.code(), 0),
            Repr::Other {
                msg_type,
                code,
                rest_of_header,
                ..
            } => (msg_type, code, rest_of_header),
        }
    }

    /// Writes the header and the checksum over the whole buffer, which must
    /// be `buffer_len()` long with the data already in place.
    ///
    /// # Panics
    /// If the buffer is shorter than the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        debug_assert_eq!(packet.buffer.as_ref().len(), self.buffer_len());
        let (msg_type, code, rest) = self.type_code_rest();
        packet.set_msg_type(msg_type);
        packet.set_msg_code(code);
        packet.set_rest_of_header(rest);
        packet.fill_checksum();
    }
}

/// Builds an ICMPv4 error in `buf`: the 8-byte header, then as much of
/// `invoking` (the offending packet from its IP header on) as fits, then the
/// checksum. Returns the message length, or 0 if `buf` cannot hold the header.
///
/// Size `buf` to the limit: RFC 1812 §4.3.2.3 caps the whole error datagram
/// at 576 bytes, so pass at most `576 - ip_header_len` bytes.
pub fn emit_error(
    buf: &mut [u8],
    icmp_type: u8,
    code: u8,
    rest_of_header: u32,
    invoking: &[u8],
) -> usize {
    if buf.len() < HEADER_LEN {
        return 0;
    }
    let quoted = invoking.len().min(buf.len() - HEADER_LEN);
    let len = HEADER_LEN + quoted;
    buf[HEADER_LEN..len].copy_from_slice(&invoking[..quoted]);
    let mut packet = Packet::new_unchecked(&mut buf[..len]);
    packet.set_msg_type(icmp_type);
    packet.set_msg_code(code);
    packet.set_rest_of_header(rest_of_header);
    packet.fill_checksum();
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Echo request, ident 0x1234, seq 1, with the 32-byte pattern Windows
    // ping sends. Checksum 0x3b27, confirmed by tshark.
    const ECHO_REQUEST: [u8; 40] = [
        0x08, 0x00, 0x3b, 0x27, 0x12, 0x34, 0x00, 0x01, //
        b'a', b'b', b'c', b'd', b'e', b'f', b'g', b'h', //
        b'i', b'j', b'k', b'l', b'm', b'n', b'o', b'p', //
        b'q', b'r', b's', b't', b'u', b'v', b'w', b'a', //
        b'b', b'c', b'd', b'e', b'f', b'g', b'h', b'i',
    ];

    // The IPv4 header and first 8 bytes of a DNS query, 192.168.1.10:53211 ->
    // 192.168.1.1:53 (the datagram in udp.rs's tests).
    const INVOKING_DNS: [u8; 28] = [
        0x45, 0x00, 0x00, 0x39, 0x1c, 0x46, 0x40, 0x00, //
        0x40, 0x11, 0x9b, 0x12, 0xc0, 0xa8, 0x01, 0x0a, //
        0xc0, 0xa8, 0x01, 0x01, 0xcf, 0xdb, 0x00, 0x35, //
        0x00, 0x25, 0xc2, 0x9e,
    ];

    // Port unreachable quoting INVOKING_DNS. Checksum 0x6a28 (tshark).
    const PORT_UNREACHABLE: [u8; 36] = [
        0x03, 0x03, 0x6a, 0x28, 0x00, 0x00, 0x00, 0x00, //
        0x45, 0x00, 0x00, 0x39, 0x1c, 0x46, 0x40, 0x00, //
        0x40, 0x11, 0x9b, 0x12, 0xc0, 0xa8, 0x01, 0x0a, //
        0xc0, 0xa8, 0x01, 0x01, 0xcf, 0xdb, 0x00, 0x35, //
        0x00, 0x25, 0xc2, 0x9e,
    ];

    // Fragmentation needed, next-hop MTU 1400, quoting a TCP SYN from
    // 10.0.0.1:43210 to 10.0.0.2:80. Checksum 0xe5bc (tshark).
    const FRAG_NEEDED: [u8; 36] = [
        0x03, 0x04, 0xe5, 0xbc, 0x00, 0x00, 0x05, 0x78, //
        0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, //
        0x40, 0x06, 0x0a, 0x74, 0x0a, 0x00, 0x00, 0x01, //
        0x0a, 0x00, 0x00, 0x02, 0xa8, 0xca, 0x00, 0x50, //
        0x12, 0x34, 0x56, 0x78,
    ];

    // TTL exceeded in transit, quoting INVOKING_DNS. Checksum 0x622b (tshark).
    const TTL_EXCEEDED: [u8; 36] = [
        0x0b, 0x00, 0x62, 0x2b, 0x00, 0x00, 0x00, 0x00, //
        0x45, 0x00, 0x00, 0x39, 0x1c, 0x46, 0x40, 0x00, //
        0x40, 0x11, 0x9b, 0x12, 0xc0, 0xa8, 0x01, 0x0a, //
        0xc0, 0xa8, 0x01, 0x01, 0xcf, 0xdb, 0x00, 0x35, //
        0x00, 0x25, 0xc2, 0x9e,
    ];

    fn golden_cases() -> [(&'static [u8], Repr); 4] {
        [
            (
                &ECHO_REQUEST,
                Repr::EchoRequest {
                    ident: 0x1234,
                    seq_no: 1,
                    data_len: 32,
                },
            ),
            (
                &PORT_UNREACHABLE,
                Repr::DstUnreachable {
                    reason: Unreachable::Port,
                    invoking_len: 28,
                },
            ),
            (
                &FRAG_NEEDED,
                Repr::DstUnreachable {
                    reason: Unreachable::FragNeeded { next_hop_mtu: 1400 },
                    invoking_len: 28,
                },
            ),
            (
                &TTL_EXCEEDED,
                Repr::TimeExceeded {
                    reason: TimeExceeded::TtlExpired,
                    invoking_len: 28,
                },
            ),
        ]
    }

    #[test]
    fn golden_parse_and_emit() {
        for (golden, expected) in golden_cases() {
            let packet = Packet::new_checked(golden).unwrap();
            assert!(packet.verify_checksum(), "{expected:?}");
            let repr = Repr::parse(&packet).unwrap();
            assert_eq!(repr, expected);
            assert_eq!(repr.buffer_len(), golden.len());
            assert_eq!(&golden[repr.data_range()], packet.data());

            let mut buf = vec![0xa5u8; golden.len()];
            buf[repr.data_range()].copy_from_slice(packet.data());
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            assert_eq!(buf, golden, "{expected:?}");
        }
    }

    #[test]
    fn golden_echo_fields() {
        let packet = Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(packet.msg_type(), message::ECHO_REQUEST);
        assert_eq!(packet.msg_code(), 0);
        assert_eq!(packet.checksum(), 0x3b27);
        assert_eq!(packet.echo_ident(), 0x1234);
        assert_eq!(packet.echo_seq_no(), 1);
        assert_eq!(packet.rest_of_header(), 0x1234_0001);
        let packet = Packet::new_checked(&FRAG_NEEDED[..]).unwrap();
        assert_eq!(packet.next_hop_mtu(), 1400);
    }

    #[test]
    fn emit_error_reproduces_golden_errors() {
        let mut buf = [0xa5u8; 64];
        let len = emit_error(&mut buf, message::DST_UNREACHABLE, 3, 0, &INVOKING_DNS);
        assert_eq!(&buf[..len], &PORT_UNREACHABLE[..]);
        let len = emit_error(
            &mut buf,
            message::DST_UNREACHABLE,
            4,
            1400,
            &FRAG_NEEDED[8..],
        );
        assert_eq!(&buf[..len], &FRAG_NEEDED[..]);
        assert_eq!(buf[len], 0xa5);
    }

    #[test]
    fn emit_error_quotes_only_what_fits() {
        let big = [0x5au8; 1000];
        let mut buf = [0u8; 576 - 20];
        let len = emit_error(&mut buf, message::TIME_EXCEEDED, 0, 0, &big);
        assert_eq!(len, 556);
        let packet = Packet::new_checked(&buf[..len]).unwrap();
        assert!(packet.verify_checksum());
        assert_eq!(packet.data(), &big[..548]);
        assert_eq!(emit_error(&mut buf[..7], 3, 0, 0, &big), 0);
        assert_eq!(emit_error(&mut buf[..8], 3, 0, 0, &big), 8);
        assert!(Packet::new_checked(&buf[..8]).unwrap().verify_checksum());
    }

    #[test]
    fn echo_reply_in_place_is_incremental() {
        let mut buf = ECHO_REQUEST;
        let mut packet = Packet::new_checked(&mut buf[..]).unwrap();
        packet.set_type_code_incremental(message::ECHO_REPLY, 0);
        packet.set_echo_ident_incremental(0xbeef);
        assert!(packet.verify_checksum());
        assert_eq!(
            Repr::parse(&packet).unwrap(),
            Repr::EchoReply {
                ident: 0xbeef,
                seq_no: 1,
                data_len: 32
            }
        );
    }

    #[test]
    fn codes_round_trip() {
        for code in 0..=255u8 {
            assert_eq!(Unreachable::from_code(code, 1500).code(), code);
            assert_eq!(TimeExceeded::from_code(code).code(), code);
        }
        assert!(is_error(message::DST_UNREACHABLE));
        assert!(!is_error(message::ECHO_REQUEST));
    }

    #[test]
    fn other_messages_round_trip() {
        // Parameter problem, pointer 9, quoting four bytes.
        let mut golden = [12, 0, 0, 0, 9, 0, 0, 0, 0x45, 0, 0, 20];
        Packet::new_unchecked(&mut golden[..]).fill_checksum();
        let packet = Packet::new_checked(&golden[..]).unwrap();
        assert_eq!(packet.pointer(), 9);
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Repr::Other {
                msg_type: 12,
                code: 0,
                rest_of_header: 0x0900_0000,
                data_len: 4
            }
        );
        let mut buf = [0xa5u8; 12];
        buf[8..].copy_from_slice(&golden[8..]);
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, golden);
        // An echo with a non-zero code is kept verbatim, not mistaken for a ping.
        let mut odd = ECHO_REQUEST;
        odd[1] = 1;
        assert!(matches!(
            Repr::parse(&Packet::new_checked(&odd[..]).unwrap()),
            Ok(Repr::Other {
                msg_type: 8,
                code: 1,
                ..
            })
        ));
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&ECHO_REQUEST[..len]).unwrap_err(),
                Error::Truncated
            );
            assert_eq!(
                Repr::parse(&Packet::new_unchecked(&ECHO_REQUEST[..len])),
                Err(Error::Truncated)
            );
        }
        // No length field: a short message still parses, with less data, and
        // its checksum no longer verifies.
        for len in HEADER_LEN..ECHO_REQUEST.len() {
            let packet = Packet::new_checked(&ECHO_REQUEST[..len]).unwrap();
            assert!(!packet.verify_checksum());
            assert_eq!(Repr::parse(&packet).unwrap().data_len(), len - HEADER_LEN);
        }
    }

    #[test]
    fn corrupted_checksum_is_detected() {
        let mut buf = PORT_UNREACHABLE;
        buf[20] ^= 0x01;
        assert!(!Packet::new_checked(&buf[..]).unwrap().verify_checksum());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(packet) = Packet::new_checked(&data[..]) {
                let _ = (packet.rest_of_header(), packet.pointer(), packet.next_hop_mtu());
                let _ = packet.verify_checksum();
                let repr = Repr::parse(&packet).unwrap();
                prop_assert_eq!(repr.buffer_len(), data.len());
                let mut out = data.clone();
                repr.emit(&mut Packet::new_unchecked(&mut out[..]));
                prop_assert!(Packet::new_checked(&out[..]).unwrap().verify_checksum());
            }
        }

        #[test]
        fn emit_error_never_panics(len in 0usize..80, invoking in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut buf = vec![0u8; len];
            let written = emit_error(&mut buf, 3, 1, 0, &invoking);
            prop_assert!(written <= len);
            if written > 0 {
                prop_assert!(Packet::new_checked(&buf[..written]).unwrap().verify_checksum());
            }
        }
    }
}
