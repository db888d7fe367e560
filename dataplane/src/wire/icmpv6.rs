//! ICMPv6 (RFC 4443) with Neighbor Discovery (RFC 4861): a message view,
//! an ND options iterator, its `Repr`, and emitters for the messages the
//! appliance originates itself: errors ([`emit_error`]), neighbor
//! solicitations and advertisements.
//!
//! The checksum covers the IPv6 pseudo-header and the whole message, so the
//! view's buffer must be exactly the ICMPv6 message (the IP payload after any
//! extension headers). `new_checked` checks that the fixed part of the
//! message type in the header fits (8 bytes; 16 for RA; 24 for NS and NA; 40
//! for Redirect). Accessors for fields of other types never panic either:
//! they read as zero, and their setters do nothing, where the buffer is too
//! short to hold them.

use core::ops::Range;

use super::checksum;
use super::{ip_proto, Error, Result};

/// Length of the header every message shares (type, code, checksum, 4 bytes).
pub const HEADER_LEN: usize = 8;
/// The IPv6 minimum MTU (RFC 8200 §5).
pub const MIN_MTU: usize = 1280;
/// Longest ICMPv6 error after a bare 40-byte IPv6 header: RFC 4443 §2.4(c)
/// keeps errors within the minimum MTU.
pub const MAX_ERROR_LEN: usize = MIN_MTU - 40;

mod field {
    pub type Field = core::ops::Range<usize>;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const REST_OF_HEADER: Field = 4..8;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQ_NO: Field = 6..8;

    // Router Advertisement
    pub const CUR_HOP_LIMIT: usize = 4;
    pub const ROUTER_FLAGS: usize = 5;
    pub const ROUTER_LIFETIME: Field = 6..8;
    pub const REACHABLE_TIME: usize = 8;
    pub const RETRANS_TIME: usize = 12;

    // Neighbor Solicitation / Advertisement, Redirect
    pub const NEIGHBOR_FLAGS: usize = 4;
    pub const TARGET_ADDR: usize = 8;
    pub const DEST_ADDR: usize = 24;
}

/// Message types (IANA "ICMPv6 Type Numbers").
pub mod message {
    pub const DST_UNREACHABLE: u8 = 1;
    pub const PKT_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const MLD_QUERY: u8 = 130;
    pub const MLD_REPORT: u8 = 131;
    pub const MLD_DONE: u8 = 132;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const REDIRECT: u8 = 137;
    pub const MLDV2_REPORT: u8 = 143;
}

/// ND option types (RFC 4861 §4.6).
pub mod nd_option {
    pub const SOURCE_LL_ADDR: u8 = 1;
    pub const TARGET_LL_ADDR: u8 = 2;
    pub const PREFIX_INFO: u8 = 3;
    pub const REDIRECTED_HEADER: u8 = 4;
    pub const MTU: u8 = 5;
}

/// Prefix Information option flags.
pub mod prefix_flags {
    /// L: the prefix is on-link.
    pub const ON_LINK: u8 = 0x80;
    /// A: the prefix may be used for address autoconfiguration.
    pub const AUTONOMOUS: u8 = 0x40;
}

/// Whether `msg_type` is an error message (types below 128, RFC 4443 §2.1).
#[inline]
pub const fn is_error(msg_type: u8) -> bool {
    msg_type < 128
}

/// The fixed length of a message of type `msg_type`, before options or data.
#[inline]
pub const fn fixed_len(msg_type: u8) -> usize {
    match msg_type {
        message::ROUTER_ADVERT => 16,
        message::NEIGHBOR_SOLICIT | message::NEIGHBOR_ADVERT => 24,
        message::REDIRECT => 40,
        _ => HEADER_LEN,
    }
}

/// The solicited-node multicast address of `addr` (RFC 4291 §2.7.1):
/// ff02::1:ff00:0/104 plus its low 24 bits. Neighbor solicitations go there.
#[inline]
pub const fn solicited_node(addr: [u8; 16]) -> [u8; 16] {
    [
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, addr[13], addr[14], addr[15],
    ]
}

macro_rules! flag_byte {
    ($(#[$meta:meta])* $name:ident { $($(#[$flag_meta:meta])* $flag:ident = $bit:expr,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(u8);

        impl $name {
            $($(#[$flag_meta])* pub const $flag: $name = $name($bit);)*

            #[inline]
            pub const fn empty() -> $name {
                $name(0)
            }

            #[inline]
            pub const fn from_bits(bits: u8) -> $name {
                $name(bits)
            }

            #[inline]
            pub const fn bits(self) -> u8 {
                self.0
            }

            #[inline]
            pub const fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }
        }

        impl core::ops::BitOr for $name {
            type Output = $name;
            #[inline]
            fn bitor(self, rhs: $name) -> $name {
                $name(self.0 | rhs.0)
            }
        }
    };
}

flag_byte! {
    /// Neighbor Advertisement flags (the whole byte, reserved bits included).
    NeighborFlags {
        /// R: the sender is a router.
        ROUTER = 0x80,
        /// S: sent in response to a solicitation.
        SOLICITED = 0x40,
        /// O: override an existing cache entry.
        OVERRIDE = 0x20,
    }
}

flag_byte! {
    /// Router Advertisement flags (the whole byte: M, O, and the bits later
    /// RFCs define, kept as they came).
    RouterFlags {
        /// M: addresses are available via DHCPv6.
        MANAGED = 0x80,
        /// O: other configuration is available via DHCPv6.
        OTHER = 0x40,
    }
}

/// Destination Unreachable codes (RFC 4443 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    NoRoute,
    AdminProhibited,
    BeyondScope,
    AddrUnreachable,
    PortUnreachable,
    FailedPolicy,
    RejectRoute,
    SourceRoutingHeader,
    Other(u8),
}

impl Unreachable {
    #[inline]
    pub const fn from_code(code: u8) -> Unreachable {
        match code {
            0 => Unreachable::NoRoute,
            1 => Unreachable::AdminProhibited,
            2 => Unreachable::BeyondScope,
            3 => Unreachable::AddrUnreachable,
            4 => Unreachable::PortUnreachable,
            5 => Unreachable::FailedPolicy,
            6 => Unreachable::RejectRoute,
            7 => Unreachable::SourceRoutingHeader,
            other => Unreachable::Other(other),
        }
    }

    #[inline]
    pub const fn code(self) -> u8 {
        match self {
            Unreachable::NoRoute => 0,
            Unreachable::AdminProhibited => 1,
            Unreachable::BeyondScope => 2,
            Unreachable::AddrUnreachable => 3,
            Unreachable::PortUnreachable => 4,
            Unreachable::FailedPolicy => 5,
            Unreachable::RejectRoute => 6,
            Unreachable::SourceRoutingHeader => 7,
            Unreachable::Other(code) => code,
        }
    }
}

/// Time Exceeded codes (RFC 4443 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeExceeded {
    HopLimitExceeded,
    FragReassembly,
    Other(u8),
}

impl TimeExceeded {
    #[inline]
    pub const fn from_code(code: u8) -> TimeExceeded {
        match code {
            0 => TimeExceeded::HopLimitExceeded,
            1 => TimeExceeded::FragReassembly,
            other => TimeExceeded::Other(other),
        }
    }

    #[inline]
    pub const fn code(self) -> u8 {
        match self {
            TimeExceeded::HopLimitExceeded => 0,
            TimeExceeded::FragReassembly => 1,
            TimeExceeded::Other(code) => code,
        }
    }
}

/// Parameter Problem codes (RFC 4443 §3.4, RFC 7112).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamProblem {
    ErroneousHeaderField,
    UnrecognizedNextHeader,
    UnrecognizedOption,
    IncompleteHeaderChain,
    Other(u8),
}

impl ParamProblem {
    #[inline]
    pub const fn from_code(code: u8) -> ParamProblem {
        match code {
            0 => ParamProblem::ErroneousHeaderField,
            1 => ParamProblem::UnrecognizedNextHeader,
            2 => ParamProblem::UnrecognizedOption,
            3 => ParamProblem::IncompleteHeaderChain,
            other => ParamProblem::Other(other),
        }
    }

    #[inline]
    pub const fn code(self) -> u8 {
        match self {
            ParamProblem::ErroneousHeaderField => 0,
            ParamProblem::UnrecognizedNextHeader => 1,
            ParamProblem::UnrecognizedOption => 2,
            ParamProblem::IncompleteHeaderChain => 3,
            ParamProblem::Other(code) => code,
        }
    }
}

/// The Prefix Information option (RFC 4861 §4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixInfo {
    pub prefix_len: u8,
    /// See [`prefix_flags`].
    pub flags: u8,
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
    pub prefix: [u8; 16],
}

/// Length of an encoded Prefix Information option.
const PREFIX_INFO_LEN: usize = 32;
/// Length of an Ethernet link-layer address or MTU option.
const SHORT_OPTION_LEN: usize = 8;

/// One ND option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdOption<'a> {
    /// An Ethernet source link-layer address (option length 1).
    SourceLinkLayerAddr([u8; 6]),
    /// An Ethernet target link-layer address (option length 1).
    TargetLinkLayerAddr([u8; 6]),
    PrefixInformation(PrefixInfo),
    /// The quoted packet of a Redirect (after the option's 6 reserved bytes).
    RedirectedHeader(&'a [u8]),
    Mtu(u32),
    /// An option this parser does not interpret (including link-layer
    /// addresses of non-Ethernet length); `data` follows the type and length.
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

/// Walks ND options. Yields `Err(Malformed)` once, then stops, for an option
/// with length 0, one running past the end, or a prefix or MTU option of
/// the wrong size.
#[derive(Debug, Clone)]
pub struct NdOptionsIter<'a> {
    data: &'a [u8],
}

impl<'a> NdOptionsIter<'a> {
    #[inline]
    pub fn new(options: &'a [u8]) -> NdOptionsIter<'a> {
        NdOptionsIter { data: options }
    }
}

#[inline]
fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[inline]
fn parse_nd_option(data: &[u8]) -> Result<(NdOption<'_>, usize)> {
    let (kind, units) = match data {
        [kind, units, ..] => (*kind, *units),
        _ => return Err(Error::Malformed),
    };
    let len = units as usize * 8;
    if len == 0 || len > data.len() {
        return Err(Error::Malformed);
    }
    let body = &data[2..len];
    let mac = |body: &[u8]| [body[0], body[1], body[2], body[3], body[4], body[5]];
    let option = match (kind, units) {
        (nd_option::SOURCE_LL_ADDR, 1) => NdOption::SourceLinkLayerAddr(mac(body)),
        (nd_option::TARGET_LL_ADDR, 1) => NdOption::TargetLinkLayerAddr(mac(body)),
        (nd_option::PREFIX_INFO, 4) => {
            let mut prefix = [0u8; 16];
            prefix.copy_from_slice(&body[14..30]);
            NdOption::PrefixInformation(PrefixInfo {
                prefix_len: body[0],
                flags: body[1],
                valid_lifetime: be32(&body[2..6]),
                preferred_lifetime: be32(&body[6..10]),
                prefix,
            })
        }
        (nd_option::REDIRECTED_HEADER, _) => NdOption::RedirectedHeader(&data[8..len]),
        (nd_option::MTU, 1) => NdOption::Mtu(be32(&body[2..6])),
        (nd_option::PREFIX_INFO | nd_option::MTU, _) => return Err(Error::Malformed),
        (kind, _) => NdOption::Unknown { kind, data: body },
    };
    Ok((option, len))
}

impl<'a> Iterator for NdOptionsIter<'a> {
    type Item = Result<NdOption<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        match parse_nd_option(self.data) {
            Ok((option, len)) => {
                self.data = &self.data[len..];
                Some(Ok(option))
            }
            Err(err) => {
                self.data = &[];
                Some(Err(err))
            }
        }
    }
}

/// Writes a link-layer address option; returns its length.
#[inline]
fn put_lladdr_option(out: &mut [u8], kind: u8, mac: [u8; 6]) -> usize {
    out[0] = kind;
    out[1] = 1;
    out[2..8].copy_from_slice(&mac);
    SHORT_OPTION_LEN
}

#[inline]
fn put_mtu_option(out: &mut [u8], mtu: u32) -> usize {
    out[..4].copy_from_slice(&[nd_option::MTU, 1, 0, 0]);
    out[4..8].copy_from_slice(&mtu.to_be_bytes());
    SHORT_OPTION_LEN
}

#[inline]
fn put_prefix_option(out: &mut [u8], info: &PrefixInfo) -> usize {
    out[..4].copy_from_slice(&[nd_option::PREFIX_INFO, 4, info.prefix_len, info.flags]);
    out[4..8].copy_from_slice(&info.valid_lifetime.to_be_bytes());
    out[8..12].copy_from_slice(&info.preferred_lifetime.to_be_bytes());
    out[12..16].fill(0);
    out[16..32].copy_from_slice(&info.prefix);
    PREFIX_INFO_LEN
}

/// A zero-copy view of an ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; accessors of the 8-byte header may
    /// panic if it is too short.
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

    /// `Truncated` if the buffer cannot hold the 8-byte header or the fixed
    /// part of its message type.
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

    /// `N` bytes at `start`, or zeros if the buffer is too short.
    #[inline]
    fn bytes<const N: usize>(&self, start: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.buffer.as_ref().get(start..start + N) {
            out.copy_from_slice(src);
        }
        out
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

    /// The fixed length of this message's type: where options or data start.
    #[inline]
    pub fn header_len(&self) -> usize {
        fixed_len(self.msg_type())
    }

    /// The four type-specific bytes after the checksum, as one word.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::REST_OF_HEADER])
    }

    #[inline]
    pub fn echo_ident(&self) -> u16 {
        self.read_u16(field::ECHO_IDENT)
    }

    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        self.read_u16(field::ECHO_SEQ_NO)
    }

    /// MTU of a Packet Too Big message.
    #[inline]
    pub fn pkt_too_big_mtu(&self) -> u32 {
        self.rest_of_header()
    }

    /// Pointer of a Parameter Problem message.
    #[inline]
    pub fn param_problem_ptr(&self) -> u32 {
        self.rest_of_header()
    }

    #[inline]
    pub fn cur_hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::CUR_HOP_LIMIT]
    }

    #[inline]
    pub fn router_flags(&self) -> RouterFlags {
        RouterFlags(self.buffer.as_ref()[field::ROUTER_FLAGS])
    }

    #[inline]
    pub fn router_lifetime(&self) -> u16 {
        self.read_u16(field::ROUTER_LIFETIME)
    }

    #[inline]
    pub fn reachable_time(&self) -> u32 {
        u32::from_be_bytes(self.bytes(field::REACHABLE_TIME))
    }

    #[inline]
    pub fn retrans_time(&self) -> u32 {
        u32::from_be_bytes(self.bytes(field::RETRANS_TIME))
    }

    #[inline]
    pub fn neighbor_flags(&self) -> NeighborFlags {
        NeighborFlags(self.buffer.as_ref()[field::NEIGHBOR_FLAGS])
    }

    /// Target address of NS, NA and Redirect.
    #[inline]
    pub fn target_addr(&self) -> [u8; 16] {
        self.bytes(field::TARGET_ADDR)
    }

    /// Destination address of Redirect.
    #[inline]
    pub fn dest_addr(&self) -> [u8; 16] {
        self.bytes(field::DEST_ADDR)
    }

    /// The bytes after the common 8-byte header (echo data, the quoted
    /// packet of an error, or an ND message's body).
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// The options after the fixed part of an ND message.
    #[inline]
    pub fn nd_options(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }

    #[inline]
    pub fn nd_options_iter(&self) -> NdOptionsIter<'_> {
        NdOptionsIter::new(self.nd_options())
    }

    #[inline]
    fn pseudo_header(&self, src: [u8; 16], dst: [u8; 16]) -> u32 {
        let len = self.buffer.as_ref().len() as u32;
        checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, len)
    }

    #[inline]
    pub fn verify_checksum(&self, src: [u8; 16], dst: [u8; 16]) -> bool {
        let acc = checksum::sum(self.buffer.as_ref(), self.pseudo_header(src, dst));
        checksum::fold(acc) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes `bytes` at `start` if the buffer holds them.
    #[inline]
    fn put(&mut self, start: usize, bytes: &[u8]) {
        if let Some(dst) = self.buffer.as_mut().get_mut(start..start + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
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
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_rest_of_header(&mut self, value: u32) {
        self.buffer.as_mut()[field::REST_OF_HEADER].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        self.buffer.as_mut()[field::ECHO_IDENT].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        self.buffer.as_mut()[field::ECHO_SEQ_NO].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_cur_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::CUR_HOP_LIMIT] = value;
    }

    #[inline]
    pub fn set_router_flags(&mut self, value: RouterFlags) {
        self.buffer.as_mut()[field::ROUTER_FLAGS] = value.0;
    }

    #[inline]
    pub fn set_router_lifetime(&mut self, value: u16) {
        self.buffer.as_mut()[field::ROUTER_LIFETIME].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_reachable_time(&mut self, value: u32) {
        self.put(field::REACHABLE_TIME, &value.to_be_bytes());
    }

    #[inline]
    pub fn set_retrans_time(&mut self, value: u32) {
        self.put(field::RETRANS_TIME, &value.to_be_bytes());
    }

    /// Sets the NA flags byte and clears the three reserved bytes after it.
    #[inline]
    pub fn set_neighbor_flags(&mut self, value: NeighborFlags) {
        self.set_rest_of_header((value.0 as u32) << 24);
    }

    #[inline]
    pub fn set_target_addr(&mut self, value: [u8; 16]) {
        self.put(field::TARGET_ADDR, &value);
    }

    #[inline]
    pub fn set_dest_addr(&mut self, value: [u8; 16]) {
        self.put(field::DEST_ADDR, &value);
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    #[inline]
    pub fn nd_options_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        self.buffer.as_mut().get_mut(start..).unwrap_or(&mut [])
    }

    /// Computes the checksum over the pseudo-header and the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self, src: [u8; 16], dst: [u8; 16]) {
        self.set_checksum(0);
        let acc = checksum::sum(self.buffer.as_ref(), self.pseudo_header(src, dst));
        self.set_checksum(!checksum::fold(acc));
    }
}

/// A parsed ICMPv6 message. Echo data and quoted packets are described by
/// length only; ND messages carry the options Sluice uses (unknown options,
/// prefixes after the first, and a Redirect's quoted header are dropped).
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
    DstUnreachable {
        reason: Unreachable,
        invoking_len: usize,
    },
    PacketTooBig {
        mtu: u32,
        invoking_len: usize,
    },
    TimeExceeded {
        reason: TimeExceeded,
        invoking_len: usize,
    },
    ParamProblem {
        reason: ParamProblem,
        pointer: u32,
        invoking_len: usize,
    },
    RouterSolicit {
        source_lladdr: Option<[u8; 6]>,
    },
    RouterAdvert {
        hop_limit: u8,
        flags: RouterFlags,
        router_lifetime: u16,
        reachable_time: u32,
        retrans_time: u32,
        source_lladdr: Option<[u8; 6]>,
        mtu: Option<u32>,
        prefix: Option<PrefixInfo>,
    },
    NeighborSolicit {
        target: [u8; 16],
        source_lladdr: Option<[u8; 6]>,
    },
    NeighborAdvert {
        flags: NeighborFlags,
        target: [u8; 16],
        target_lladdr: Option<[u8; 6]>,
    },
    Redirect {
        target: [u8; 16],
        dest: [u8; 16],
        target_lladdr: Option<[u8; 6]>,
    },
    /// Any other message (MLD, an echo or Packet Too Big with a non-zero
    /// code, ...), kept verbatim.
    Other {
        msg_type: u8,
        code: u8,
        rest_of_header: u32,
        data_len: usize,
    },
}

/// The ND options a `Repr` keeps.
#[derive(Default)]
struct NdOptions {
    source_lladdr: Option<[u8; 6]>,
    target_lladdr: Option<[u8; 6]>,
    mtu: Option<u32>,
    prefix: Option<PrefixInfo>,
}

impl NdOptions {
    fn parse(options: NdOptionsIter<'_>) -> Result<NdOptions> {
        let mut found = NdOptions::default();
        for option in options {
            match option? {
                NdOption::SourceLinkLayerAddr(mac) => found.source_lladdr = Some(mac),
                NdOption::TargetLinkLayerAddr(mac) => found.target_lladdr = Some(mac),
                NdOption::Mtu(mtu) => found.mtu = Some(mtu),
                NdOption::PrefixInformation(info) => {
                    found.prefix.get_or_insert(info);
                }
                NdOption::RedirectedHeader(_) | NdOption::Unknown { .. } => {}
            }
        }
        Ok(found)
    }
}

#[inline]
fn is_multicast(addr: &[u8; 16]) -> bool {
    addr[0] == 0xff
}

#[inline]
fn lladdr_option_len(mac: Option<[u8; 6]>) -> usize {
    if mac.is_some() {
        SHORT_OPTION_LEN
    } else {
        0
    }
}

impl Repr {
    /// Reads the message. ND messages must have code 0 and well-formed
    /// options, and NS/NA targets must not be multicast (RFC 4861 §7.1),
    /// else `Malformed`. Does not verify the checksum (it needs the IP
    /// addresses): call `Packet::verify_checksum` first.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        let data_len = packet.data().len();
        let msg_type = packet.msg_type();
        let code = packet.msg_code();
        let is_nd = matches!(msg_type, message::ROUTER_SOLICIT..=message::REDIRECT);
        if is_nd && code != 0 {
            return Err(Error::Malformed);
        }
        let repr = match (msg_type, code) {
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
                reason: Unreachable::from_code(code),
                invoking_len: data_len,
            },
            (message::PKT_TOO_BIG, 0) => Repr::PacketTooBig {
                mtu: packet.pkt_too_big_mtu(),
                invoking_len: data_len,
            },
            (message::TIME_EXCEEDED, code) => Repr::TimeExceeded {
                reason: TimeExceeded::from_code(code),
                invoking_len: data_len,
            },
            (message::PARAM_PROBLEM, code) => Repr::ParamProblem {
                reason: ParamProblem::from_code(code),
                pointer: packet.param_problem_ptr(),
                invoking_len: data_len,
            },
            (message::ROUTER_SOLICIT, _) => {
                let options = NdOptions::parse(packet.nd_options_iter())?;
                Repr::RouterSolicit {
                    source_lladdr: options.source_lladdr,
                }
            }
            (message::ROUTER_ADVERT, _) => {
                let options = NdOptions::parse(packet.nd_options_iter())?;
                Repr::RouterAdvert {
                    hop_limit: packet.cur_hop_limit(),
                    flags: packet.router_flags(),
                    router_lifetime: packet.router_lifetime(),
                    reachable_time: packet.reachable_time(),
                    retrans_time: packet.retrans_time(),
                    source_lladdr: options.source_lladdr,
                    mtu: options.mtu,
                    prefix: options.prefix,
                }
            }
            (message::NEIGHBOR_SOLICIT, _) => {
                let target = packet.target_addr();
                if is_multicast(&target) {
                    return Err(Error::Malformed);
                }
                let options = NdOptions::parse(packet.nd_options_iter())?;
                Repr::NeighborSolicit {
                    target,
                    source_lladdr: options.source_lladdr,
                }
            }
            (message::NEIGHBOR_ADVERT, _) => {
                let target = packet.target_addr();
                if is_multicast(&target) {
                    return Err(Error::Malformed);
                }
                let options = NdOptions::parse(packet.nd_options_iter())?;
                Repr::NeighborAdvert {
                    flags: packet.neighbor_flags(),
                    target,
                    target_lladdr: options.target_lladdr,
                }
            }
            (message::REDIRECT, _) => {
                let options = NdOptions::parse(packet.nd_options_iter())?;
                Repr::Redirect {
                    target: packet.target_addr(),
                    dest: packet.dest_addr(),
                    target_lladdr: options.target_lladdr,
                }
            }
            (msg_type, code) => Repr::Other {
                msg_type,
                code,
                rest_of_header: packet.rest_of_header(),
                data_len,
            },
        };
        Ok(repr)
    }

    /// For echo, errors and `Other`: where the data after the 8-byte header
    /// sits in the message. ND messages have none (an empty range).
    #[inline]
    pub fn data_range(&self) -> Range<usize> {
        let len = match *self {
            Repr::EchoRequest { data_len, .. }
            | Repr::EchoReply { data_len, .. }
            | Repr::Other { data_len, .. } => data_len,
            Repr::DstUnreachable { invoking_len, .. }
            | Repr::PacketTooBig { invoking_len, .. }
            | Repr::TimeExceeded { invoking_len, .. }
            | Repr::ParamProblem { invoking_len, .. } => invoking_len,
            _ => 0,
        };
        HEADER_LEN..HEADER_LEN + len
    }

    #[inline]
    fn msg_type(&self) -> u8 {
        match self {
            Repr::EchoRequest { .. } => message::ECHO_REQUEST,
            Repr::EchoReply { .. } => message::ECHO_REPLY,
            Repr::DstUnreachable { .. } => message::DST_UNREACHABLE,
            Repr::PacketTooBig { .. } => message::PKT_TOO_BIG,
            Repr::TimeExceeded { .. } => message::TIME_EXCEEDED,
            Repr::ParamProblem { .. } => message::PARAM_PROBLEM,
            Repr::RouterSolicit { .. } => message::ROUTER_SOLICIT,
            Repr::RouterAdvert { .. } => message::ROUTER_ADVERT,
            Repr::NeighborSolicit { .. } => message::NEIGHBOR_SOLICIT,
            Repr::NeighborAdvert { .. } => message::NEIGHBOR_ADVERT,
            Repr::Redirect { .. } => message::REDIRECT,
            Repr::Other { msg_type, .. } => *msg_type,
        }
    }

    /// The whole message length.
    pub fn buffer_len(&self) -> usize {
        match *self {
            Repr::RouterSolicit { source_lladdr } => HEADER_LEN + lladdr_option_len(source_lladdr),
            Repr::RouterAdvert {
                source_lladdr,
                mtu,
                prefix,
                ..
            } => {
                fixed_len(message::ROUTER_ADVERT)
                    + lladdr_option_len(source_lladdr)
                    + if mtu.is_some() { SHORT_OPTION_LEN } else { 0 }
                    + if prefix.is_some() { PREFIX_INFO_LEN } else { 0 }
            }
            Repr::NeighborSolicit { source_lladdr, .. } => {
                fixed_len(message::NEIGHBOR_SOLICIT) + lladdr_option_len(source_lladdr)
            }
            Repr::NeighborAdvert { target_lladdr, .. } => {
                fixed_len(message::NEIGHBOR_ADVERT) + lladdr_option_len(target_lladdr)
            }
            Repr::Redirect { target_lladdr, .. } => {
                fixed_len(message::REDIRECT) + lladdr_option_len(target_lladdr)
            }
            _ => self.data_range().end,
        }
    }

    /// Writes every field, the ND options, and the checksum over the
    /// pseudo-header and the whole buffer, which must be `buffer_len()` long
    /// (with echo data or the quoted packet already in place).
    ///
    /// # Panics
    /// If the buffer is shorter than `buffer_len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: [u8; 16],
        dst: [u8; 16],
    ) {
        debug_assert_eq!(packet.buffer.as_ref().len(), self.buffer_len());
        packet.set_msg_type(self.msg_type());
        packet.set_msg_code(0);
        packet.set_rest_of_header(0);
        match *self {
            Repr::EchoRequest { ident, seq_no, .. } | Repr::EchoReply { ident, seq_no, .. } => {
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
            }
            Repr::DstUnreachable { reason, .. } => packet.set_msg_code(reason.code()),
            Repr::PacketTooBig { mtu, .. } => packet.set_rest_of_header(mtu),
            Repr::TimeExceeded { reason, .. } => packet.set_msg_code(reason.code()),
            Repr::ParamProblem {
                reason, pointer, ..
            } => {
                packet.set_msg_code(reason.code());
                packet.set_rest_of_header(pointer);
            }
            Repr::RouterSolicit { source_lladdr } => {
                if let Some(mac) = source_lladdr {
                    put_lladdr_option(packet.nd_options_mut(), nd_option::SOURCE_LL_ADDR, mac);
                }
            }
            Repr::RouterAdvert {
                hop_limit,
                flags,
                router_lifetime,
                reachable_time,
                retrans_time,
                source_lladdr,
                mtu,
                prefix,
            } => {
                packet.set_cur_hop_limit(hop_limit);
                packet.set_router_flags(flags);
                packet.set_router_lifetime(router_lifetime);
                packet.set_reachable_time(reachable_time);
                packet.set_retrans_time(retrans_time);
                let options = packet.nd_options_mut();
                let mut pos = 0;
                if let Some(mac) = source_lladdr {
                    pos += put_lladdr_option(&mut options[pos..], nd_option::SOURCE_LL_ADDR, mac);
                }
                if let Some(mtu) = mtu {
                    pos += put_mtu_option(&mut options[pos..], mtu);
                }
                if let Some(info) = prefix {
                    put_prefix_option(&mut options[pos..], &info);
                }
            }
            Repr::NeighborSolicit {
                target,
                source_lladdr,
            } => {
                packet.set_target_addr(target);
                if let Some(mac) = source_lladdr {
                    put_lladdr_option(packet.nd_options_mut(), nd_option::SOURCE_LL_ADDR, mac);
                }
            }
            Repr::NeighborAdvert {
                flags,
                target,
                target_lladdr,
            } => {
                packet.set_neighbor_flags(flags);
                packet.set_target_addr(target);
                if let Some(mac) = target_lladdr {
                    put_lladdr_option(packet.nd_options_mut(), nd_option::TARGET_LL_ADDR, mac);
                }
            }
            Repr::Redirect {
                target,
                dest,
                target_lladdr,
            } => {
                packet.set_target_addr(target);
                packet.set_dest_addr(dest);
                if let Some(mac) = target_lladdr {
                    put_lladdr_option(packet.nd_options_mut(), nd_option::TARGET_LL_ADDR, mac);
                }
            }
            Repr::Other {
                code,
                rest_of_header,
                ..
            } => {
                packet.set_msg_code(code);
                packet.set_rest_of_header(rest_of_header);
            }
        }
        packet.fill_checksum(src, dst);
    }
}

/// Builds an ICMPv6 error in `buf`: the 8-byte header, as much of `invoking`
/// (the offending packet from its IPv6 header on) as fits in both `buf` and
/// `max_len`, and the checksum over the pseudo-header for `src` -> `dst`.
/// Returns the message length, or 0 if the header does not fit.
///
/// RFC 4443 §2.4(c): the error, with its IPv6 header, must not exceed the
/// minimum MTU, so pass [`MAX_ERROR_LEN`] less any extension headers.
#[allow(clippy::too_many_arguments)] // mirrors the wire fields one for one
pub fn emit_error(
    buf: &mut [u8],
    src: [u8; 16],
    dst: [u8; 16],
    icmp_type: u8,
    code: u8,
    rest_of_header: u32,
    invoking: &[u8],
    max_len: usize,
) -> usize {
    let room = buf.len().min(max_len);
    if room < HEADER_LEN {
        return 0;
    }
    let quoted = invoking.len().min(room - HEADER_LEN);
    let len = HEADER_LEN + quoted;
    buf[HEADER_LEN..len].copy_from_slice(&invoking[..quoted]);
    let mut packet = Packet::new_unchecked(&mut buf[..len]);
    packet.set_msg_type(icmp_type);
    packet.set_msg_code(code);
    packet.set_rest_of_header(rest_of_header);
    packet.fill_checksum(src, dst);
    len
}

fn emit_nd(buf: &mut [u8], repr: Repr, src: [u8; 16], dst: [u8; 16]) -> Result<usize> {
    let len = repr.buffer_len();
    let out = buf.get_mut(..len).ok_or(Error::Truncated)?;
    repr.emit(&mut Packet::new_unchecked(out), src, dst);
    Ok(len)
}

/// Builds a complete, checksummed Neighbor Solicitation for `target` in
/// `buf`; returns its length, or `Truncated` if `buf` is too short. Send it
/// with hop limit 255, usually to `solicited_node(target)`. For duplicate
/// address detection `src` is `::` and `source_lladdr` must be `None`.
pub fn emit_neighbor_solicit(
    buf: &mut [u8],
    src: [u8; 16],
    dst: [u8; 16],
    target: [u8; 16],
    source_lladdr: Option<[u8; 6]>,
) -> Result<usize> {
    emit_nd(
        buf,
        Repr::NeighborSolicit {
            target,
            source_lladdr,
        },
        src,
        dst,
    )
}

/// Builds a complete, checksummed Neighbor Advertisement in `buf`; returns
/// its length, or `Truncated` if `buf` is too short. Send it with hop limit
/// 255; an answer to a solicitation sets `NeighborFlags::SOLICITED`.
pub fn emit_neighbor_advert(
    buf: &mut [u8],
    src: [u8; 16],
    dst: [u8; 16],
    flags: NeighborFlags,
    target: [u8; 16],
    target_lladdr: Option<[u8; 6]>,
) -> Result<usize> {
    emit_nd(
        buf,
        Repr::NeighborAdvert {
            flags,
            target,
            target_lladdr,
        },
        src,
        dst,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv6Addr;

    fn ip6(text: &str) -> [u8; 16] {
        text.parse::<Ipv6Addr>().unwrap().octets()
    }

    const MAC1: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const MAC2: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

    // Each golden message's checksum was confirmed by tshark (icmpv6.checksum.status).

    // Echo request 2001:db8::1 -> 2001:db8::2, ident 1, seq 1, data 00..07.
    const ECHO_REQUEST: [u8; 16] = [
        0x80, 0x00, 0x18, 0x2e, 0x00, 0x01, 0x00, 0x01, //
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
    ];

    // NS 2001:db8::1 -> ff02::1:ff00:2 for target 2001:db8::2, SLLA 02:00:00:00:00:01.
    const NEIGHBOR_SOLICIT: [u8; 32] = [
        0x87, 0x00, 0x1c, 0x27, 0x00, 0x00, 0x00, 0x00, //
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, //
        0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    ];

    // NA 2001:db8::2 -> 2001:db8::1, S|O, target 2001:db8::2, TLLA 02:00:00:00:00:02.
    const NEIGHBOR_ADVERT: [u8; 32] = [
        0x88, 0x00, 0x8a, 0x71, 0x60, 0x00, 0x00, 0x00, //
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, //
        0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
    ];

    // RS fe80::2 -> ff02::2 with SLLA 02:00:00:00:00:02.
    const ROUTER_SOLICIT: [u8; 16] = [
        0x85, 0x00, 0x7a, 0x2a, 0x00, 0x00, 0x00, 0x00, //
        0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
    ];

    // RA fe80::1 -> ff02::1: hop limit 64, lifetime 1800 s, SLLA, MTU 1500,
    // prefix 2001:db8::/64 L|A valid 30 days preferred 7 days.
    const ROUTER_ADVERT: [u8; 64] = [
        0x86, 0x00, 0xed, 0xe9, 0x40, 0x00, 0x07, 0x08, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reachable, retrans
        0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // SLLA
        0x05, 0x01, 0x00, 0x00, 0x00, 0x00, 0x05, 0xdc, // MTU 1500
        0x03, 0x04, 0x40, 0xc0, 0x00, 0x27, 0x8d, 0x00, // prefix info /64 L|A, valid
        0x00, 0x09, 0x3a, 0x80, 0x00, 0x00, 0x00, 0x00, // preferred, reserved
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    // Packet Too Big 2001:db8::fe -> 2001:db8::1, MTU 1280, quoting the IPv6
    // header and UDP header of a datagram 2001:db8::1 -> 2001:db8::2.
    const PACKET_TOO_BIG: [u8; 56] = [
        0x02, 0x00, 0x77, 0x28, 0x00, 0x00, 0x05, 0x00, //
        0x60, 0x00, 0x00, 0x00, 0x00, 0x0e, 0x11, 0x40, //
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, //
        0xc3, 0x50, 0x00, 0x07, 0x00, 0x0e, 0x94, 0xca,
    ];

    // Redirect fe80::1 -> fe80::2: use fe80::3 for 2001:db8:1::5, TLLA 02:00:00:00:00:03.
    const REDIRECT: [u8; 48] = [
        0x89, 0x00, 0x49, 0x49, 0x00, 0x00, 0x00, 0x00, //
        0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, //
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, //
        0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x03,
    ];

    struct Golden {
        bytes: &'static [u8],
        src: [u8; 16],
        dst: [u8; 16],
        repr: Repr,
    }

    fn goldens() -> Vec<Golden> {
        vec![
            Golden {
                bytes: &ECHO_REQUEST,
                src: ip6("2001:db8::1"),
                dst: ip6("2001:db8::2"),
                repr: Repr::EchoRequest {
                    ident: 1,
                    seq_no: 1,
                    data_len: 8,
                },
            },
            Golden {
                bytes: &NEIGHBOR_SOLICIT,
                src: ip6("2001:db8::1"),
                dst: ip6("ff02::1:ff00:2"),
                repr: Repr::NeighborSolicit {
                    target: ip6("2001:db8::2"),
                    source_lladdr: Some(MAC1),
                },
            },
            Golden {
                bytes: &NEIGHBOR_ADVERT,
                src: ip6("2001:db8::2"),
                dst: ip6("2001:db8::1"),
                repr: Repr::NeighborAdvert {
                    flags: NeighborFlags::SOLICITED | NeighborFlags::OVERRIDE,
                    target: ip6("2001:db8::2"),
                    target_lladdr: Some(MAC2),
                },
            },
            Golden {
                bytes: &ROUTER_SOLICIT,
                src: ip6("fe80::2"),
                dst: ip6("ff02::2"),
                repr: Repr::RouterSolicit {
                    source_lladdr: Some(MAC2),
                },
            },
            Golden {
                bytes: &ROUTER_ADVERT,
                src: ip6("fe80::1"),
                dst: ip6("ff02::1"),
                repr: Repr::RouterAdvert {
                    hop_limit: 64,
                    flags: RouterFlags::empty(),
                    router_lifetime: 1800,
                    reachable_time: 0,
                    retrans_time: 0,
                    source_lladdr: Some(MAC1),
                    mtu: Some(1500),
                    prefix: Some(PrefixInfo {
                        prefix_len: 64,
                        flags: prefix_flags::ON_LINK | prefix_flags::AUTONOMOUS,
                        valid_lifetime: 2_592_000,
                        preferred_lifetime: 604_800,
                        prefix: ip6("2001:db8::"),
                    }),
                },
            },
            Golden {
                bytes: &PACKET_TOO_BIG,
                src: ip6("2001:db8::fe"),
                dst: ip6("2001:db8::1"),
                repr: Repr::PacketTooBig {
                    mtu: 1280,
                    invoking_len: 48,
                },
            },
            Golden {
                bytes: &REDIRECT,
                src: ip6("fe80::1"),
                dst: ip6("fe80::2"),
                repr: Repr::Redirect {
                    target: ip6("fe80::3"),
                    dest: ip6("2001:db8:1::5"),
                    target_lladdr: Some([0x02, 0, 0, 0, 0, 0x03]),
                },
            },
        ]
    }

    #[test]
    fn golden_parse_and_emit() {
        for golden in goldens() {
            let packet = Packet::new_checked(golden.bytes).unwrap();
            assert!(
                packet.verify_checksum(golden.src, golden.dst),
                "{:?}",
                golden.repr
            );
            assert!(!packet.verify_checksum(golden.dst, ip6("::1")));
            let repr = Repr::parse(&packet).unwrap();
            assert_eq!(repr, golden.repr);
            assert_eq!(repr.buffer_len(), golden.bytes.len(), "{repr:?}");

            let mut buf = vec![0xa5u8; golden.bytes.len()];
            let data = repr.data_range();
            buf[data.clone()].copy_from_slice(&golden.bytes[data]);
            repr.emit(
                &mut Packet::new_unchecked(&mut buf[..]),
                golden.src,
                golden.dst,
            );
            assert_eq!(buf, golden.bytes, "{repr:?}");
        }
    }

    #[test]
    fn golden_fields() {
        let packet = Packet::new_checked(&ROUTER_ADVERT[..]).unwrap();
        assert_eq!(packet.msg_type(), message::ROUTER_ADVERT);
        assert_eq!(packet.header_len(), 16);
        assert_eq!(packet.cur_hop_limit(), 64);
        assert_eq!(packet.router_lifetime(), 1800);
        assert_eq!(packet.checksum(), 0xede9);
        let options: Vec<_> = packet.nd_options_iter().collect::<Result<_>>().unwrap();
        assert_eq!(options.len(), 3);
        assert_eq!(options[0], NdOption::SourceLinkLayerAddr(MAC1));
        assert_eq!(options[1], NdOption::Mtu(1500));
        assert!(matches!(
            options[2],
            NdOption::PrefixInformation(PrefixInfo { prefix_len: 64, .. })
        ));

        let packet = Packet::new_checked(&NEIGHBOR_ADVERT[..]).unwrap();
        assert!(packet.neighbor_flags().contains(NeighborFlags::SOLICITED));
        assert!(!packet.neighbor_flags().contains(NeighborFlags::ROUTER));
        assert_eq!(packet.target_addr(), ip6("2001:db8::2"));

        let packet = Packet::new_checked(&ECHO_REQUEST[..12]).unwrap();
        assert_eq!((packet.echo_ident(), packet.echo_seq_no()), (1, 1));
        // Fields of other message types read as zero, and their setters do
        // nothing, where the buffer is too short for them.
        assert_eq!(packet.target_addr(), [0; 16]);
        assert_eq!(packet.dest_addr(), [0; 16]);
        assert_eq!(packet.retrans_time(), 0);
        let mut short = [0u8; 12];
        short.copy_from_slice(&ECHO_REQUEST[..12]);
        let mut packet = Packet::new_checked(&mut short[..]).unwrap();
        packet.set_dest_addr([0xff; 16]);
        packet.set_target_addr([0xff; 16]);
        packet.set_retrans_time(7);
        assert_eq!(short, ECHO_REQUEST[..12]);
    }

    #[test]
    fn nd_emitters_build_golden_messages() {
        let mut buf = [0xa5u8; 64];
        let len = emit_neighbor_solicit(
            &mut buf,
            ip6("2001:db8::1"),
            solicited_node(ip6("2001:db8::2")),
            ip6("2001:db8::2"),
            Some(MAC1),
        )
        .unwrap();
        assert_eq!(&buf[..len], &NEIGHBOR_SOLICIT[..]);
        let len = emit_neighbor_advert(
            &mut buf,
            ip6("2001:db8::2"),
            ip6("2001:db8::1"),
            NeighborFlags::SOLICITED | NeighborFlags::OVERRIDE,
            ip6("2001:db8::2"),
            Some(MAC2),
        )
        .unwrap();
        assert_eq!(&buf[..len], &NEIGHBOR_ADVERT[..]);
        assert_eq!(buf[len], 0xa5);
        // Duplicate address detection: no link-layer option.
        let len = emit_neighbor_solicit(
            &mut buf,
            [0; 16],
            solicited_node(ip6("fe80::9")),
            ip6("fe80::9"),
            None,
        )
        .unwrap();
        assert_eq!(len, 24);
        assert!(Packet::new_checked(&buf[..len])
            .unwrap()
            .verify_checksum([0; 16], ip6("ff02::1:ff00:9")));
        assert_eq!(
            emit_neighbor_advert(
                &mut buf[..31],
                [0; 16],
                [0; 16],
                NeighborFlags::empty(),
                [0; 16],
                Some(MAC1)
            ),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn solicited_node_address() {
        assert_eq!(
            solicited_node(ip6("2001:db8::abcd:1234:5678")),
            ip6("ff02::1:ff34:5678")
        );
    }

    #[test]
    fn emit_error_reproduces_golden_and_respects_max_len() {
        let src = ip6("2001:db8::fe");
        let dst = ip6("2001:db8::1");
        let mut buf = [0xa5u8; 128];
        let len = emit_error(
            &mut buf,
            src,
            dst,
            message::PKT_TOO_BIG,
            0,
            1280,
            &PACKET_TOO_BIG[8..],
            MAX_ERROR_LEN,
        );
        assert_eq!(&buf[..len], &PACKET_TOO_BIG[..]);

        let big = [0x11u8; 1500];
        let mut buf = [0u8; 1500];
        let len = emit_error(
            &mut buf,
            src,
            dst,
            message::DST_UNREACHABLE,
            4,
            0,
            &big,
            MAX_ERROR_LEN,
        );
        assert_eq!(len, MAX_ERROR_LEN);
        assert_eq!(len + 40, MIN_MTU);
        let packet = Packet::new_checked(&buf[..len]).unwrap();
        assert!(packet.verify_checksum(src, dst));
        assert_eq!(
            Repr::parse(&packet).unwrap(),
            Repr::DstUnreachable {
                reason: Unreachable::PortUnreachable,
                invoking_len: MAX_ERROR_LEN - 8
            }
        );
        assert_eq!(
            emit_error(&mut buf[..100], src, dst, 1, 0, 0, &big, MAX_ERROR_LEN),
            100
        );
        assert_eq!(emit_error(&mut buf, src, dst, 1, 0, 0, &big, 7), 0);
    }

    #[test]
    fn error_and_other_reprs_round_trip() {
        let src = ip6("2001:db8::1");
        let dst = ip6("2001:db8::2");
        for repr in [
            Repr::EchoReply {
                ident: 7,
                seq_no: 9,
                data_len: 3,
            },
            Repr::DstUnreachable {
                reason: Unreachable::AdminProhibited,
                invoking_len: 4,
            },
            Repr::TimeExceeded {
                reason: TimeExceeded::FragReassembly,
                invoking_len: 0,
            },
            Repr::ParamProblem {
                reason: ParamProblem::UnrecognizedNextHeader,
                pointer: 6,
                invoking_len: 40,
            },
            Repr::Other {
                msg_type: message::MLD_QUERY,
                code: 0,
                rest_of_header: 0x2710_0000,
                data_len: 16,
            },
            Repr::Other {
                msg_type: message::ECHO_REQUEST,
                code: 3,
                rest_of_header: 1,
                data_len: 0,
            },
        ] {
            let mut buf = vec![0xa5u8; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]), src, dst);
            let packet = Packet::new_checked(&buf[..]).unwrap();
            assert!(packet.verify_checksum(src, dst));
            assert_eq!(Repr::parse(&packet).unwrap(), repr);
        }
        for code in 0..=255u8 {
            assert_eq!(Unreachable::from_code(code).code(), code);
            assert_eq!(TimeExceeded::from_code(code).code(), code);
            assert_eq!(ParamProblem::from_code(code).code(), code);
        }
        assert!(is_error(message::PKT_TOO_BIG));
        assert!(!is_error(message::NEIGHBOR_SOLICIT));
    }

    #[test]
    fn truncated_at_every_length() {
        for golden in goldens() {
            for len in 0..golden.bytes.len() {
                let bytes = &golden.bytes[..len];
                match Packet::new_checked(bytes) {
                    Err(err) => {
                        assert_eq!(err, Error::Truncated);
                        assert!(len < packet_fixed_len(golden.bytes));
                    }
                    Ok(packet) => {
                        // Past the fixed part, truncation cuts options or data:
                        // a cut option is Malformed, nothing panics.
                        assert!(!packet.verify_checksum(golden.src, golden.dst));
                        let _ = Repr::parse(&packet);
                    }
                }
            }
        }
    }

    fn packet_fixed_len(bytes: &[u8]) -> usize {
        fixed_len(bytes[0])
    }

    #[test]
    fn malformed_nd_messages() {
        // Option length 0.
        let mut buf = NEIGHBOR_SOLICIT;
        buf[25] = 0;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
            Err(Error::Malformed)
        );
        // Option running past the end.
        buf[25] = 2;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
            Err(Error::Malformed)
        );
        // Cut mid-option.
        assert_eq!(
            Repr::parse(&Packet::new_checked(&NEIGHBOR_SOLICIT[..28]).unwrap()),
            Err(Error::Malformed)
        );
        // Multicast target.
        let mut buf = NEIGHBOR_ADVERT;
        buf[8] = 0xff;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
            Err(Error::Malformed)
        );
        // Non-zero code.
        let mut buf = ROUTER_SOLICIT;
        buf[1] = 1;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
            Err(Error::Malformed)
        );
        // Prefix option of the wrong length; MTU option of the wrong length.
        let mut options = [3u8, 1, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            NdOptionsIter::new(&options).next(),
            Some(Err(Error::Malformed))
        );
        options[0] = 5;
        options[1] = 2;
        assert_eq!(
            NdOptionsIter::new(&options).next(),
            Some(Err(Error::Malformed))
        );
        // The iterator stops after an error.
        let mut iter = NdOptionsIter::new(&[1, 0, 1, 1]);
        assert_eq!(iter.next(), Some(Err(Error::Malformed)));
        assert_eq!(iter.next(), None);
        // Unknown and non-Ethernet link-layer options are passed over.
        let options = [
            1u8, 2, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 42, 1, 0, 0, 0, 0, 0, 0,
        ];
        let parsed: Vec<_> = NdOptionsIter::new(&options).collect::<Result<_>>().unwrap();
        assert_eq!(
            parsed[0],
            NdOption::Unknown {
                kind: 1,
                data: &options[2..16]
            }
        );
        assert_eq!(
            parsed[1],
            NdOption::Unknown {
                kind: 42,
                data: &[0; 6]
            }
        );
        // A redirected-header option yields the quoted packet.
        let options = [4u8, 2, 0, 0, 0, 0, 0, 0, 0x60, 1, 2, 3, 4, 5, 6, 7];
        assert_eq!(
            NdOptionsIter::new(&options).next(),
            Some(Ok(NdOption::RedirectedHeader(&options[8..])))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..96), kind in prop::sample::select(vec![1u8, 2, 3, 4, 128, 129, 133, 134, 135, 136, 137, 200])) {
            let mut data = data;
            // Bias towards the types with structure so the ND paths get exercised.
            if let Some(first) = data.first_mut() {
                *first = kind;
            }
            if let Some(code) = data.get_mut(1) {
                *code = 0;
            }
            let src = ip6("fe80::1");
            let dst = ip6("ff02::1");
            if let Ok(packet) = Packet::new_checked(&data[..]) {
                let _ = (packet.target_addr(), packet.dest_addr(), packet.reachable_time(), packet.retrans_time());
                let _ = packet.verify_checksum(src, dst);
                for option in packet.nd_options_iter() {
                    let _ = option;
                }
                if let Ok(repr) = Repr::parse(&packet) {
                    let mut out = vec![0u8; repr.buffer_len()];
                    repr.emit(&mut Packet::new_unchecked(&mut out[..]), src, dst);
                    let again = Packet::new_checked(&out[..]).unwrap();
                    prop_assert!(again.verify_checksum(src, dst));
                    prop_assert_eq!(Repr::parse(&again).unwrap(), repr);
                }
            }
        }

        #[test]
        fn raw_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(packet) = Packet::new_checked(&data[..]) {
                let _ = Repr::parse(&packet);
                let _ = packet.nd_options_iter().count();
            }
        }
    }
}
