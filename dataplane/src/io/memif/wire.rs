//! memif's wire formats: the control messages exchanged on the Unix socket
//! and the layout of a ring in shared memory (memif version 2.0, as
//! libmemif, VPP and DPDK's `net_memif` define it).
//!
//! Every control message is one 128-byte `SOCK_SEQPACKET` record: a
//! little-endian `u16` type, then the packed body of that type. A message
//! that carries a file descriptor (ADD_REGION: the region's memfd;
//! ADD_RING: the ring's eventfd) carries it as `SCM_RIGHTS` ancillary data.
//!
//! Rings (`memif_ring_t`): cookie (`u32`) at 0, flags (`u16`) at 4, head
//! (`u16`) at 6, tail (`u16`) alone on the next cache line (64), and the
//! descriptors from 128 on, 16 bytes each: flags (`u16`), region (`u16`),
//! length (`u32`), offset (`u32`), metadata (`u32`).
//!
//! Directions: S2M (slave to master; newer sources call it C2S) and M2S
//! (master to slave, S2C). The slave creates every region and ring.

/// Bytes in every control message.
pub const MSG_SIZE: usize = 128;
/// `MEMIF_COOKIE`: the first word of every ring.
pub const COOKIE: u32 = 0x03E3_1F20;
/// Version 2.0, `(major << 8) | minor`.
pub const VERSION: u16 = 0x0200;
/// Bytes in a name field.
pub const NAME_SIZE: usize = 32;
/// Bytes in the INIT message's secret.
pub const SECRET_SIZE: usize = 24;
/// Bytes in a DISCONNECT message's reason.
pub const REASON_SIZE: usize = 96;

/// ADD_RING flag: the ring carries frames from slave to master.
pub const ADD_RING_FLAG_S2M: u16 = 1;
/// Ring flag set by a ring's receiver: do not signal its eventfd.
pub const RING_FLAG_MASK_INT: u16 = 1;
/// Descriptor flag: the frame continues in the next descriptor.
pub const DESC_FLAG_NEXT: u16 = 1;
/// `MEMIF_INTERFACE_MODE_ETHERNET`, the only mode Sluice speaks.
pub const MODE_ETHERNET: u8 = 0;

/// Byte offsets inside a ring.
pub mod ring {
    pub const COOKIE: usize = 0;
    pub const FLAGS: usize = 4;
    pub const HEAD: usize = 6;
    pub const TAIL: usize = 64;
    pub const DESC: usize = 128;
    /// Bytes per descriptor.
    pub const DESC_SIZE: usize = 16;

    /// Bytes a ring of `2^log2` descriptors occupies.
    pub const fn bytes(log2: u8) -> usize {
        DESC + DESC_SIZE * (1usize << log2)
    }
}

/// Message types (`memif_msg_type_t`).
mod kind {
    pub const ACK: u16 = 1;
    pub const HELLO: u16 = 2;
    pub const INIT: u16 = 3;
    pub const ADD_REGION: u16 = 4;
    pub const ADD_RING: u16 = 5;
    pub const CONNECT: u16 = 6;
    pub const CONNECTED: u16 = 7;
    pub const DISCONNECT: u16 = 8;
}

/// A NUL-padded name field.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name(pub [u8; NAME_SIZE]);

impl Name {
    /// `s`, cut to 31 bytes so a NUL always ends it (as `strlcpy` does).
    pub fn new(s: &str) -> Name {
        Name(padded(s.as_bytes()))
    }

    /// The text up to the first NUL.
    pub fn as_string(&self) -> String {
        text(&self.0)
    }
}

impl core::fmt::Debug for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_string())
    }
}

fn padded<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = s.len().min(N - 1);
    out[..n].copy_from_slice(&s[..n]);
    out
}

fn text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// HELLO (master → slave): what the master accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub name: Name,
    pub min_version: u16,
    pub max_version: u16,
    /// Highest region index the master accepts.
    pub max_region: u16,
    /// Highest M2S ring index the master accepts.
    pub max_m2s_ring: u16,
    /// Highest S2M ring index the master accepts.
    pub max_s2m_ring: u16,
    pub max_log2_ring_size: u8,
}

/// INIT (slave → master): which interface the slave wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Init {
    pub version: u16,
    pub id: u32,
    pub mode: u8,
    pub secret: [u8; SECRET_SIZE],
    pub name: Name,
}

/// ADD_RING (slave → master), with the ring's eventfd attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddRing {
    pub flags: u16,
    pub index: u16,
    pub region: u16,
    /// Offset of the ring inside its region.
    pub offset: u32,
    pub log2_ring_size: u8,
    pub private_hdr_size: u16,
}

/// One control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    Ack,
    Hello(Hello),
    Init(Init),
    /// With the region's memfd attached.
    AddRegion {
        index: u16,
        size: u64,
    },
    AddRing(AddRing),
    /// The slave's interface name.
    Connect(Name),
    /// The master's interface name.
    Connected(Name),
    Disconnect {
        code: u32,
        reason: [u8; REASON_SIZE],
    },
}

/// Why a received record is not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Not exactly [`MSG_SIZE`] bytes.
    Length(usize),
    /// A type this version does not define.
    UnknownType(u16),
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::Length(n) => write!(f, "message of {n} bytes (expected {MSG_SIZE})"),
            WireError::UnknownType(t) => write!(f, "unknown message type {t}"),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b[at..at + N].try_into().expect("N bytes")
}

impl Message {
    /// A DISCONNECT carrying `reason` (cut to 95 bytes).
    pub fn disconnect(reason: &str) -> Message {
        Message::Disconnect {
            code: 0,
            reason: padded(reason.as_bytes()),
        }
    }

    /// The reason text of a DISCONNECT.
    pub fn reason_text(reason: &[u8; REASON_SIZE]) -> String {
        text(reason)
    }

    /// Parses one received record.
    pub fn parse(b: &[u8]) -> Result<Message, WireError> {
        if b.len() != MSG_SIZE {
            return Err(WireError::Length(b.len()));
        }
        // The body starts right after the 2-byte type (the struct is packed).
        let body = 2;
        Ok(match u16_at(b, 0) {
            kind::ACK => Message::Ack,
            kind::HELLO => Message::Hello(Hello {
                name: Name(array(b, body)),
                min_version: u16_at(b, body + 32),
                max_version: u16_at(b, body + 34),
                max_region: u16_at(b, body + 36),
                max_m2s_ring: u16_at(b, body + 38),
                max_s2m_ring: u16_at(b, body + 40),
                max_log2_ring_size: b[body + 42],
            }),
            kind::INIT => Message::Init(Init {
                version: u16_at(b, body),
                id: u32_at(b, body + 2),
                mode: b[body + 6],
                secret: array(b, body + 7),
                name: Name(array(b, body + 31)),
            }),
            kind::ADD_REGION => Message::AddRegion {
                index: u16_at(b, body),
                size: u64_at(b, body + 2),
            },
            kind::ADD_RING => Message::AddRing(AddRing {
                flags: u16_at(b, body),
                index: u16_at(b, body + 2),
                region: u16_at(b, body + 4),
                offset: u32_at(b, body + 6),
                log2_ring_size: b[body + 10],
                private_hdr_size: u16_at(b, body + 11),
            }),
            kind::CONNECT => Message::Connect(Name(array(b, body))),
            kind::CONNECTED => Message::Connected(Name(array(b, body))),
            kind::DISCONNECT => Message::Disconnect {
                code: u32_at(b, body),
                reason: array(b, body + 4),
            },
            t => return Err(WireError::UnknownType(t)),
        })
    }

    /// Writes the message into a zeroed 128-byte record.
    pub fn emit(&self) -> [u8; MSG_SIZE] {
        let mut b = [0u8; MSG_SIZE];
        let body = 2;
        let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
        let t = match self {
            Message::Ack => kind::ACK,
            Message::Hello(h) => {
                put(body, &h.name.0);
                put(body + 32, &h.min_version.to_le_bytes());
                put(body + 34, &h.max_version.to_le_bytes());
                put(body + 36, &h.max_region.to_le_bytes());
                put(body + 38, &h.max_m2s_ring.to_le_bytes());
                put(body + 40, &h.max_s2m_ring.to_le_bytes());
                put(body + 42, &[h.max_log2_ring_size]);
                kind::HELLO
            }
            Message::Init(i) => {
                put(body, &i.version.to_le_bytes());
                put(body + 2, &i.id.to_le_bytes());
                put(body + 6, &[i.mode]);
                put(body + 7, &i.secret);
                put(body + 31, &i.name.0);
                kind::INIT
            }
            Message::AddRegion { index, size } => {
                put(body, &index.to_le_bytes());
                put(body + 2, &size.to_le_bytes());
                kind::ADD_REGION
            }
            Message::AddRing(r) => {
                put(body, &r.flags.to_le_bytes());
                put(body + 2, &r.index.to_le_bytes());
                put(body + 4, &r.region.to_le_bytes());
                put(body + 6, &r.offset.to_le_bytes());
                put(body + 10, &[r.log2_ring_size]);
                put(body + 11, &r.private_hdr_size.to_le_bytes());
                kind::ADD_RING
            }
            Message::Connect(n) => {
                put(body, &n.0);
                kind::CONNECT
            }
            Message::Connected(n) => {
                put(body, &n.0);
                kind::CONNECTED
            }
            Message::Disconnect { code, reason } => {
                put(body, &code.to_le_bytes());
                put(body + 4, reason);
                kind::DISCONNECT
            }
        };
        b[..2].copy_from_slice(&t.to_le_bytes());
        b
    }

    /// The message's name, for errors.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Message::Ack => "ACK",
            Message::Hello(_) => "HELLO",
            Message::Init(_) => "INIT",
            Message::AddRegion { .. } => "ADD_REGION",
            Message::AddRing(_) => "ADD_RING",
            Message::Connect(_) => "CONNECT",
            Message::Connected(_) => "CONNECTED",
            Message::Disconnect { .. } => "DISCONNECT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_matches_the_packed_c_layout() {
        let m = Message::Hello(Hello {
            name: Name::new("DPDK 22.11.0"),
            min_version: VERSION,
            max_version: VERSION,
            max_region: 255,
            max_m2s_ring: 3,
            max_s2m_ring: 4,
            max_log2_ring_size: 14,
        });
        let b = m.emit();
        assert_eq!(&b[..2], &[2, 0]);
        assert_eq!(&b[2..14], b"DPDK 22.11.0");
        assert_eq!(b[14..34], [0; 20]);
        // min/max version, max_region, max_m2s, max_s2m, log2.
        assert_eq!(&b[34..45], &[0, 2, 0, 2, 255, 0, 3, 0, 4, 0, 14]);
        assert!(b[45..].iter().all(|&x| x == 0));
        assert_eq!(Message::parse(&b), Ok(m));
    }

    #[test]
    fn init_add_region_add_ring_layouts() {
        let mut secret = [0u8; SECRET_SIZE];
        secret[..3].copy_from_slice(b"abc");
        let init = Message::Init(Init {
            version: VERSION,
            id: 0x0403_0201,
            mode: MODE_ETHERNET,
            secret,
            name: Name::new("sluice"),
        });
        let b = init.emit();
        assert_eq!(&b[..9], &[3, 0, 0, 2, 1, 2, 3, 4, 0]);
        assert_eq!(&b[9..12], b"abc");
        assert_eq!(&b[33..39], b"sluice");
        assert_eq!(Message::parse(&b), Ok(init));

        let region = Message::AddRegion {
            index: 1,
            size: 0x0102_0304_0506,
        };
        let b = region.emit();
        assert_eq!(&b[..12], &[4, 0, 1, 0, 6, 5, 4, 3, 2, 1, 0, 0]);
        assert_eq!(Message::parse(&b), Ok(region));

        let ring = Message::AddRing(AddRing {
            flags: ADD_RING_FLAG_S2M,
            index: 2,
            region: 0,
            offset: 0x4080,
            log2_ring_size: 10,
            private_hdr_size: 0,
        });
        let b = ring.emit();
        assert_eq!(
            &b[..15],
            &[5, 0, 1, 0, 2, 0, 0, 0, 0x80, 0x40, 0, 0, 10, 0, 0]
        );
        assert_eq!(Message::parse(&b), Ok(ring));
    }

    #[test]
    fn names_and_reasons_stay_nul_terminated() {
        let long = "x".repeat(40);
        let n = Name::new(&long);
        assert_eq!(n.as_string().len(), 31);
        assert_eq!(n.0[31], 0);
        let d = Message::disconnect(&"why".repeat(50));
        let Message::Disconnect { reason, .. } = Message::parse(&d.emit()).unwrap() else {
            panic!("not a disconnect");
        };
        assert_eq!(Message::reason_text(&reason).len(), 95);
        for m in [
            Message::Ack,
            Message::Connect(Name::new("a")),
            Message::Connected(Name::new("b")),
        ] {
            assert_eq!(Message::parse(&m.emit()), Ok(m));
        }
    }

    #[test]
    fn bad_records_are_refused() {
        assert_eq!(Message::parse(&[0; 64]), Err(WireError::Length(64)));
        let mut b = [0xa5u8; MSG_SIZE];
        b[0] = 9;
        b[1] = 0;
        assert_eq!(Message::parse(&b), Err(WireError::UnknownType(9)));
        b[0] = 0;
        assert_eq!(Message::parse(&b), Err(WireError::UnknownType(0)));
    }

    #[test]
    fn ring_layout() {
        assert_eq!(ring::bytes(10), 128 + 16 * 1024);
        assert_eq!(ring::TAIL % 64, 0);
    }
}
