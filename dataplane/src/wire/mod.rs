//! Wire formats: zero-copy header views and their parsed representations.
//!
//! Every protocol follows the same two-layer shape (after smoltcp's `wire`):
//!
//! * `Packet<T: AsRef<[u8]>>` (or `Frame`/`Header` where that reads better) is a
//!   view over a byte buffer. `new_checked` validates the lengths once; after it
//!   returns `Ok`, no accessor panics. Getters need `AsRef<[u8]>`, setters need
//!   `AsMut<[u8]>`, so mutability lives in the type. Field byte ranges are in a
//!   private `mod field`.
//! * `Repr` is the parsed, owned form: `parse(&Packet) -> Result<Repr>`,
//!   `buffer_len()`, and `emit(&mut Packet)` which writes every field.
//!
//! Tests in each file start from golden byte arrays, round-trip parse/emit into a
//! buffer pre-filled with 0xa5 (which catches fields `emit` forgot), and include
//! negative cases (truncated buffers, impossible length fields).

pub mod arp;
pub mod builder;
pub mod checksum;
pub mod ethernet;
pub mod geneve;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod ipv6ext;
pub mod sctp;
pub mod tcp;
pub mod udp;
pub mod vlan;
pub mod vxlan;

use core::fmt;

/// Why a buffer could not be read as a given header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than the header (or than a length field claims).
    Truncated,
    /// A field holds a value the format does not allow (bad version, a length
    /// field smaller than the fixed header, an option running past its end, ...).
    Malformed,
    /// A checksum did not verify.
    Checksum,
    /// Valid on the wire, but not something this parser handles.
    Unsupported,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated",
            Error::Malformed => "malformed",
            Error::Checksum => "bad checksum",
            Error::Unsupported => "unsupported",
        })
    }
}

impl std::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers") that Sluice names.
pub mod ip_proto {
    pub const HOPOPTS: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const IGMP: u8 = 2;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6_ROUTE: u8 = 43;
    pub const IPV6_FRAG: u8 = 44;
    pub const GRE: u8 = 47;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const IPV6_NONXT: u8 = 59;
    pub const IPV6_OPTS: u8 = 60;
    pub const SCTP: u8 = 132;
}

/// EtherType values that Sluice names.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
    pub const QINQ: u16 = 0x88a8;
    /// The pre-standard QinQ outer tag some switches still send.
    pub const QINQ_9100: u16 = 0x9100;
    pub const TEB: u16 = 0x6558;
}
