//! Connection tracking: one worker's table of connections, each with its
//! protocol state, timestamps, NAT translation, endpoint and counters.
//!
//! Owned by exactly one worker; no locks. Nothing allocates after
//! [`Conntrack::new`], nothing reads a clock (time comes in as `now_ns`), and
//! no input makes it panic.
//!
//! # Keys and the two directions
//!
//! A key is (network, family, protocol, source, destination, source port,
//! destination port) ([`ConnKey`]). A connection is stored once and indexed
//! twice, as Linux conntrack and VPP's NAT do: under its *original* tuple
//! (the first packet as it arrived) and under its *reply* tuple (what the
//! other side's packets carry, after NAT). Either direction is found with
//! one lookup, and the lookup says which direction matched.
//!
//! For ICMP echo the identifier is the "port": `sport` holds it in both
//! directions and `dport` is 0 (so [`ConnKey::reversed`] swaps the addresses
//! only). The echo type travels in [`L4Event::IcmpEcho`].
//!
//! # Layout (why a flow costs what it costs)
//!
//! IPv4 and IPv6 connections live in two tables of the same generic type, so
//! an IPv4 address takes 4 bytes, not 16. Each table is:
//! * an entry pool, `capacity` entries (a power of two), each holding both
//!   tuples, both networks, protocol, state, flags, TCP/SCTP flags seen per
//!   direction, endpoint, creation time, last-seen time and packet/byte
//!   counters per direction: 80 bytes for IPv4, 128 for IPv6;
//! * an index of `capacity / 4` buckets of one cache line each: ten slots of
//!   (16-bit tag, 32-bit entry reference with the direction in bit 0). Two
//!   keys per connection fill at most 80% of the slots; that is 16 bytes
//!   per connection.
//!
//! So a tracked flow, both lookup entries included, costs 96 bytes for IPv4
//! and 144 for IPv6 (target: 128; four 16-byte addresses are 64 bytes on
//! their own). [`Conntrack::bytes_per_flow`] reports it.
//!
//! A key may live in one of two buckets: `b1` from the hash's low bits and
//! `b2 = b1 ^ f(tag)`, so a key can move between its two buckets knowing only
//! its tag (the partial-key cuckoo hashing of MemC3 and DPDK's rte_hash). An
//! insert takes `b1` while it has a free slot, else `b2`; when both are full
//! it first reclaims an expired entry referenced from them, then moves one
//! resident key to its other bucket (one step, no chains), then evicts by
//! the policy below. A lookup reads `b1`, and `b2` only when the key is not
//! in `b1` — at half load (four keys per ten slots on average) fewer than
//! one key in 300 has spilled to `b2`, so a hit costs one bucket and one
//! entry; a burst prefetches only the `b1`s, then the entries, or the `b2`
//! of keys not found in `b1`. A lookup reads the entry behind each slot
//! whose 16-bit tag matches: almost always only the one it wants (in a
//! full table a miss meets a false tag match once in about 4 000 lookups).
//! The hash is keyed with a per-table seed, so a sender who does not know it
//! cannot aim keys at one bucket.
//!
//! # Eviction when full (SYN floods)
//!
//! When the entry pool is exhausted, or both buckets of a key are full of
//! live entries and nothing can move, a victim is chosen among the
//! connections referenced from the new keys' buckets (at most 40), by rank,
//! then oldest last-seen first:
//! 0. expired entries (reclaimed, counted as expired, not as evictions);
//! 1. entries that are not assured: unreplied, half-open, picked up
//!    mid-stream, ICMP;
//! 2. assured entries that are closing: TCP FIN_WAIT, CLOSE_WAIT, LAST_ACK,
//!    TIME_WAIT, CLOSE; SCTP SHUTDOWN_* and CLOSED (Linux's `early_drop`
//!    takes these too);
//! 3. assured, live entries: only if [`ConntrackConfig::evict_assured`] is
//!    set. By default (as Linux) a new connection that finds nothing of rank
//!    0–2 is refused ([`Refused::Full`]) rather than break a working one.
//!
//! A flood of unreplied SYNs therefore only ever displaces other unreplied
//! entries (and closing ones); assured connections survive it, and a
//! legitimate new connection still gets a slot by evicting the oldest
//! half-open one. Every eviction and refusal is counted
//! ([`ConntrackCounters`]).
//!
//! # Expiry
//!
//! An entry expires `timeout(state)` after the last packet that changed or
//! refreshed it ([`Timeouts`]). Expired entries are absent to lookups at
//! once; their memory is reclaimed lazily (by an insert whose buckets they
//! occupy, or whose key they hold) and by [`Conntrack::expire`], an
//! incremental sweep the worker runs on idle polls with a budget.
//!
//! # TCP, UDP, SCTP, ICMP
//!
//! TCP follows Linux's `nf_conntrack_proto_tcp` state table (SYN_SENT,
//! SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE,
//! SYN_SENT2 for simultaneous open), driven by the segment's flags and
//! direction; a RST closes. Unlike Linux it does not track sequence windows.
//! A SYN in the original direction on a TIME_WAIT or CLOSE connection
//! reopens the tuple: the old entry is removed and the caller handles the
//! packet as a new connection ([`Verdict::Reopen`]). A connection is
//! *assured* once it reaches ESTABLISHED having seen a reply. Mid-stream
//! pickup (a first packet that is a bare ACK, Linux's `nf_conntrack_tcp_loose`)
//! is on by default and gives an unassured ESTABLISHED entry with a short
//! timeout until the other side answers.
//!
//! UDP: unreplied until a packet comes back, then assured (Linux's
//! `nf_conntrack_udp_timeout` and `_stream`). SCTP: COOKIE_WAIT,
//! COOKIE_ECHOED, ESTABLISHED (assured), SHUTDOWN_SENT/RECD/ACK_SENT,
//! CLOSED, from the chunk types present ([`sctp_chunks`]). ICMP and ICMPv6
//! echo: by identifier, request then replied, never assured. Anything else:
//! unreplied then replied (assured), with Linux's generic timeout.
//!
//! # NAT and the owning worker
//!
//! Both directions of a connection must reach the worker that owns its
//! state. With the symmetric RSS key ([`crate::io::rss::SYMMETRIC_KEY`],
//! `RssMode::Symmetric`) an untranslated flow's two directions hash alike, so
//! they land on one queue. After source NAT the reply's tuple is a different
//! flow; [`Conntrack::choose_port`] picks the NAT port so that the NIC's RSS
//! of the *reply* tuple selects this worker's queue (VPP's "NAT port
//! selection that hashes back to the owning worker"), and so that the reply
//! tuple is not in this worker's table. No coordination between workers is
//! needed for uniqueness: a reply tuple hashes to exactly one queue, so only
//! one worker can ever choose it. The scheme works with any key (symmetric
//! or not) for the SNAT'd flows. It cannot steer a flow whose reply differs
//! but carries no port this appliance chooses (destination NAT without
//! source NAT, ICMP): [`rss_queue`] tells the caller where such a reply
//! will land, for a hand-off between workers.
//!
//! # Use from a stage
//!
//! Reads: `PacketMeta` (via [`ConnKey::from_meta`]), the TCP flags or SCTP
//! chunk types, the IP length. Writes: nothing in the packet; the verdict
//! carries the tuple the packet must leave with ([`Forward::rewrite`]).
//! Per burst: [`Conntrack::hash`] each key once, [`Conntrack::prefetch`]
//! (or [`Conntrack::lookup_burst`]), then [`Conntrack::track`] each packet
//! and [`Conntrack::create`] the misses.

use crate::io::rss::{Reta, Toeplitz, RSS_INPUT_MAX};
use crate::stages::PacketMeta;
pub use crate::state::neighbour::Family;
use crate::tables::lpm4::prefetch;
use crate::wire::ip_proto;
use crate::wire::sctp::chunk_type;
use serde::{Deserialize, Serialize};

/// Slots per index bucket: ten (tag, reference) pairs fill a cache line.
const SLOTS: usize = 10;
const SLOT_MASK: u32 = (1 << SLOTS) - 1;
/// Connections per index bucket (each connection has two keys): 2 keys ×
/// 4 connections / 10 slots = 80% of the slots at full capacity.
const CONNS_PER_BUCKET: usize = 4;
/// The smallest table (16 buckets).
pub const MIN_CAPACITY: usize = 64;
/// The largest table: entry references keep the direction in bit 0.
pub const MAX_CAPACITY: usize = 1 << 30;
const NIL: u32 = u32::MAX;
/// Set in a hash (and a [`ConnId`]) for the IPv6 table.
const V6_BIT: u64 = 1 << 63;
const ID_V6: u32 = 1 << 31;

/// `Entry::status` of a free entry.
const FREE: u8 = 0;
/// `Entry::status`: the state's code in the low five bits, flags above.
const CODE_MASK: u8 = 0x1f;
const ASSURED: u8 = 1 << 5;
const SEEN_REPLY: u8 = 1 << 6;
/// The reply tuple is not the reversed original: packets are rewritten.
const TRANSLATED: u8 = 1 << 7;

/// TCP header flag bits (byte 13 of the header).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// Which TCP segments a direction has sent ([`Connection::seen`]).
pub mod tcp_seen {
    pub const SYN: u8 = 1 << 0;
    pub const SYN_ACK: u8 = 1 << 1;
    pub const ACK: u8 = 1 << 2;
    pub const FIN: u8 = 1 << 3;
    pub const RST: u8 = 1 << 4;
}

/// The SCTP chunk types a packet carries, as a bit set
/// ([`L4Event::Sctp`]); the low eight bits are also what
/// [`Connection::seen`] records per direction.
pub mod sctp_chunks {
    use super::chunk_type;

    pub const INIT: u16 = 1 << 0;
    pub const INIT_ACK: u16 = 1 << 1;
    pub const COOKIE_ECHO: u16 = 1 << 2;
    pub const COOKIE_ACK: u16 = 1 << 3;
    pub const SHUTDOWN: u16 = 1 << 4;
    pub const SHUTDOWN_ACK: u16 = 1 << 5;
    pub const SHUTDOWN_COMPLETE: u16 = 1 << 6;
    pub const ABORT: u16 = 1 << 7;
    /// DATA, SACK, HEARTBEAT and every other chunk.
    pub const OTHER: u16 = 1 << 8;

    /// The bit for one chunk type (fold a packet's chunks with `|`).
    pub fn of_type(t: u8) -> u16 {
        match t {
            chunk_type::INIT => INIT,
            chunk_type::INIT_ACK => INIT_ACK,
            chunk_type::COOKIE_ECHO => COOKIE_ECHO,
            chunk_type::COOKIE_ACK => COOKIE_ACK,
            chunk_type::SHUTDOWN => SHUTDOWN,
            chunk_type::SHUTDOWN_ACK => SHUTDOWN_ACK,
            chunk_type::SHUTDOWN_COMPLETE => SHUTDOWN_COMPLETE,
            chunk_type::ABORT => ABORT,
            _ => OTHER,
        }
    }
}

/// A connection's key: one direction's tuple as it appears on the wire.
///
/// Addresses are `u128` for both families, as in
/// [`PacketMeta`]; for IPv4 only the low 32 bits count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnKey {
    pub network: u16,
    pub family: Family,
    pub proto: u8,
    pub src: u128,
    pub dst: u128,
    /// Source port; the echo identifier for ICMP.
    pub sport: u16,
    /// Destination port; 0 for ICMP.
    pub dport: u16,
}

impl core::hash::Hash for ConnKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        (
            self.network,
            self.family as u8,
            self.proto,
            self.src,
            self.dst,
            self.sport,
            self.dport,
        )
            .hash(state)
    }
}

/// Whether a protocol's tuple carries ports that RSS hashes (as NICs do).
#[inline]
fn carries_ports(proto: u8) -> bool {
    matches!(proto, ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP)
}

#[inline]
fn is_icmp(proto: u8) -> bool {
    matches!(proto, ip_proto::ICMP | ip_proto::ICMPV6)
}

impl ConnKey {
    /// An IPv4 key.
    pub fn v4(network: u16, proto: u8, src: u32, dst: u32, sport: u16, dport: u16) -> ConnKey {
        ConnKey {
            network,
            family: Family::V4,
            proto,
            src: src as u128,
            dst: dst as u128,
            sport,
            dport,
        }
    }

    /// An IPv6 key.
    pub fn v6(network: u16, proto: u8, src: u128, dst: u128, sport: u16, dport: u16) -> ConnKey {
        ConnKey {
            network,
            family: Family::V6,
            proto,
            src,
            dst,
            sport,
            dport,
        }
    }

    /// The key of a parsed packet; `None` if it is not IP. For ICMP the
    /// parse stage leaves the type in `dport`; the key has 0 there.
    #[inline]
    pub fn from_meta(meta: &PacketMeta) -> Option<ConnKey> {
        let family = match meta.family {
            4 => Family::V4,
            6 => Family::V6,
            _ => return None,
        };
        let icmp = is_icmp(meta.proto);
        Some(ConnKey {
            network: meta.network,
            family,
            proto: meta.proto,
            src: meta.src,
            dst: meta.dst,
            sport: meta.sport,
            dport: if icmp { 0 } else { meta.dport },
        })
    }

    /// The key the other direction carries when nothing is translated:
    /// addresses and ports swapped (for ICMP only the addresses: the
    /// identifier stays in `sport`).
    #[inline]
    pub fn reversed(&self) -> ConnKey {
        let (sport, dport) = if is_icmp(self.proto) {
            (self.sport, self.dport)
        } else {
            (self.dport, self.sport)
        };
        ConnKey {
            src: self.dst,
            dst: self.src,
            sport,
            dport,
            ..*self
        }
    }

    /// The field a NAT port goes into in a reply tuple: `dport`, or the
    /// identifier (`sport`) for ICMP.
    fn set_nat_port(&mut self, port: u16) {
        if is_icmp(self.proto) {
            self.sport = port;
        } else {
            self.dport = port;
        }
    }
}

/// A tuple as a packet should leave after translation ([`Forward::rewrite`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowTuple {
    pub src: u128,
    pub dst: u128,
    pub sport: u16,
    pub dport: u16,
}

/// Which way a packet goes relative to the connection's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Original = 0,
    Reply = 1,
}

impl Direction {
    #[inline]
    fn from_bit(bit: usize) -> Direction {
        if bit & 1 == 0 {
            Direction::Original
        } else {
            Direction::Reply
        }
    }
}

/// A connection's handle. Valid until the connection is removed; an entry
/// is reused afterwards, so do not keep one across calls that insert,
/// remove or expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(u32);

impl ConnId {
    #[inline]
    fn new(family: Family, index: u32) -> ConnId {
        ConnId(match family {
            Family::V4 => index,
            Family::V6 => index | ID_V6,
        })
    }

    pub fn family(self) -> Family {
        if self.0 & ID_V6 != 0 {
            Family::V6
        } else {
            Family::V4
        }
    }

    #[inline]
    fn index(self) -> u32 {
        self.0 & !ID_V6
    }
}

/// Where [`Conntrack::sweep_translated`] goes on from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepCursor {
    v4: u32,
    v6: u32,
}

/// A successful lookup: the connection and the direction the key matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hit {
    pub id: ConnId,
    pub dir: Direction,
}

/// What the packet tells the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Event {
    /// The TCP flags byte ([`tcp_flags`]).
    Tcp(u8),
    Udp,
    /// The chunk types present ([`sctp_chunks`]).
    Sctp(u16),
    /// An ICMP or ICMPv6 echo request (`reply: false`) or reply.
    IcmpEcho {
        reply: bool,
    },
    /// Any other protocol.
    Other,
}

/// Connection states, across protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum ConnState {
    TcpSynSent = 1,
    TcpSynRecv = 2,
    TcpEstablished = 3,
    TcpFinWait = 4,
    TcpCloseWait = 5,
    TcpLastAck = 6,
    TcpTimeWait = 7,
    TcpClose = 8,
    /// Simultaneous open: both sides sent a SYN.
    TcpSynSent2 = 9,
    UdpUnreplied = 10,
    UdpReplied = 11,
    SctpCookieWait = 12,
    SctpCookieEchoed = 13,
    SctpEstablished = 14,
    SctpShutdownSent = 15,
    SctpShutdownRecd = 16,
    SctpShutdownAckSent = 17,
    SctpClosed = 18,
    IcmpRequest = 19,
    IcmpReplied = 20,
    OtherUnreplied = 21,
    OtherReplied = 22,
}

/// Room in the per-state tables (codes are below 32).
const STATE_SLOTS: usize = 32;
const _: () = assert!(ConnState::OtherReplied as usize <= CODE_MASK as usize);

impl ConnState {
    const ALL: [ConnState; 22] = [
        ConnState::TcpSynSent,
        ConnState::TcpSynRecv,
        ConnState::TcpEstablished,
        ConnState::TcpFinWait,
        ConnState::TcpCloseWait,
        ConnState::TcpLastAck,
        ConnState::TcpTimeWait,
        ConnState::TcpClose,
        ConnState::TcpSynSent2,
        ConnState::UdpUnreplied,
        ConnState::UdpReplied,
        ConnState::SctpCookieWait,
        ConnState::SctpCookieEchoed,
        ConnState::SctpEstablished,
        ConnState::SctpShutdownSent,
        ConnState::SctpShutdownRecd,
        ConnState::SctpShutdownAckSent,
        ConnState::SctpClosed,
        ConnState::IcmpRequest,
        ConnState::IcmpReplied,
        ConnState::OtherUnreplied,
        ConnState::OtherReplied,
    ];

    #[inline]
    fn from_code(code: u8) -> Option<ConnState> {
        ConnState::ALL.get((code as usize).wrapping_sub(1)).copied()
    }

    /// The connection is being torn down: such entries may be evicted
    /// even when assured (eviction rank 2).
    pub fn is_closing(self) -> bool {
        use ConnState::*;
        matches!(
            self,
            TcpFinWait
                | TcpCloseWait
                | TcpLastAck
                | TcpTimeWait
                | TcpClose
                | SctpShutdownSent
                | SctpShutdownRecd
                | SctpShutdownAckSent
                | SctpClosed
        )
    }
}

/// Timeouts in seconds, per state.
///
/// | state | default | Linux sysctl (its default) |
/// |---|---|---|
/// | TCP SYN_SENT, SYN_SENT2 | 120 | `nf_conntrack_tcp_timeout_syn_sent` (120) |
/// | TCP SYN_RECV | 60 | `_syn_recv` (60) |
/// | TCP ESTABLISHED | 86 400 | `_established` (432 000; kube-proxy sets 86 400) |
/// | TCP ESTABLISHED, no reply yet (mid-stream pickup) | 300 | `_unacknowledged` (300) |
/// | TCP FIN_WAIT | 60 | `_fin_wait` (120) |
/// | TCP CLOSE_WAIT | 60 | `_close_wait` (60; kube-proxy sets 3 600) |
/// | TCP LAST_ACK | 30 | `_last_ack` (30) |
/// | TCP TIME_WAIT | 120 | `_time_wait` (120) |
/// | TCP CLOSE | 10 | `_close` (10) |
/// | UDP unreplied | 30 | `nf_conntrack_udp_timeout` (30) |
/// | UDP replied (assured) | 120 | `nf_conntrack_udp_timeout_stream` (120) |
/// | SCTP COOKIE_WAIT, COOKIE_ECHOED | 3 | `nf_conntrack_sctp_timeout_cookie_*` (3) |
/// | SCTP ESTABLISHED | 210 | `_established` (210) |
/// | SCTP SHUTDOWN_SENT/RECD/ACK_SENT | 3 | `_shutdown_*` (3) |
/// | SCTP CLOSED | 10 | `_closed` (10) |
/// | ICMP/ICMPv6 echo | 30 | `nf_conntrack_icmp_timeout` (30) |
/// | other protocols | 600 | `nf_conntrack_generic_timeout` (600) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    pub tcp_syn_sent: u32,
    pub tcp_syn_recv: u32,
    pub tcp_established: u32,
    pub tcp_established_unreplied: u32,
    pub tcp_fin_wait: u32,
    pub tcp_close_wait: u32,
    pub tcp_last_ack: u32,
    pub tcp_time_wait: u32,
    pub tcp_close: u32,
    pub udp_unreplied: u32,
    pub udp_replied: u32,
    pub sctp_cookie: u32,
    pub sctp_established: u32,
    pub sctp_shutdown: u32,
    pub sctp_closed: u32,
    pub icmp: u32,
    pub other: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn_sent: 120,
            tcp_syn_recv: 60,
            tcp_established: 86_400,
            tcp_established_unreplied: 300,
            tcp_fin_wait: 60,
            tcp_close_wait: 60,
            tcp_last_ack: 30,
            tcp_time_wait: 120,
            tcp_close: 10,
            udp_unreplied: 30,
            udp_replied: 120,
            sctp_cookie: 3,
            sctp_established: 210,
            sctp_shutdown: 3,
            sctp_closed: 10,
            icmp: 30,
            other: 600,
        }
    }
}

impl Timeouts {
    /// The timeout of a state in seconds, for an unassured and an assured
    /// connection.
    pub fn of(&self, state: ConnState) -> [u32; 2] {
        use ConnState::*;
        let t = match state {
            TcpSynSent | TcpSynSent2 => self.tcp_syn_sent,
            TcpSynRecv => self.tcp_syn_recv,
            TcpEstablished => {
                return [
                    self.tcp_established_unreplied.min(self.tcp_established),
                    self.tcp_established,
                ]
            }
            TcpFinWait => self.tcp_fin_wait,
            TcpCloseWait => self.tcp_close_wait,
            TcpLastAck => self.tcp_last_ack,
            TcpTimeWait => self.tcp_time_wait,
            TcpClose => self.tcp_close,
            UdpUnreplied => self.udp_unreplied,
            UdpReplied => self.udp_replied,
            SctpCookieWait | SctpCookieEchoed => self.sctp_cookie,
            SctpEstablished => self.sctp_established,
            SctpShutdownSent | SctpShutdownRecd | SctpShutdownAckSent => self.sctp_shutdown,
            SctpClosed => self.sctp_closed,
            IcmpRequest | IcmpReplied => self.icmp,
            OtherUnreplied | OtherReplied => self.other,
        };
        [t, t]
    }
}

/// How a worker's table is built. Chosen once, at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConntrackConfig {
    /// IPv4 connections (rounded up to a power of two, at least
    /// [`MIN_CAPACITY`]).
    pub capacity_v4: usize,
    /// IPv6 connections (likewise).
    pub capacity_v6: usize,
    pub timeouts: Timeouts,
    /// Track a TCP connection whose first packet seen is a bare ACK (its
    /// SYN went by before this table existed), as Linux's
    /// `nf_conntrack_tcp_loose` does. Consistent endpoint selection (Maglev)
    /// sends such a connection to the endpoint it already had.
    pub tcp_loose: bool,
    /// When nothing else can go, evict the least recently seen assured
    /// connection rather than refuse the new one.
    pub evict_assured: bool,
    /// First and last NAT source port ([`Conntrack::choose_port`]).
    pub nat_ports: (u16, u16),
    /// Ports tried per choice before giving up.
    pub nat_port_attempts: u32,
    /// Keys the table's hash. Give each worker a random one in production
    /// (the default is fixed so tests are reproducible).
    pub seed: u64,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            capacity_v4: 1 << 18,
            capacity_v6: 1 << 16,
            timeouts: Timeouts::default(),
            tcp_loose: true,
            evict_assured: false,
            nat_ports: (1024, 65535),
            nat_port_attempts: 1024,
            seed: 0x5eed_c0de_7ac4_0001,
        }
    }
}

/// Events counted by one worker's table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackCounters {
    /// Connections created.
    pub created: u64,
    /// Creations refused: full and nothing evictable.
    pub refused_full: u64,
    /// Creations refused: the first packet cannot open a connection.
    pub refused_invalid: u64,
    /// Creations refused: the original key is already tracked.
    pub refused_exists: u64,
    /// Creations refused: the reply tuple belongs to another connection.
    pub refused_reply_in_use: u64,
    /// Evicted while not assured (eviction rank 1).
    pub evicted_unassured: u64,
    /// Evicted while closing (rank 2).
    pub evicted_closing: u64,
    /// Evicted while assured and live (rank 3, only with `evict_assured`).
    pub evicted_assured: u64,
    /// Reclaimed after their timeout (lazily or by the sweep).
    pub expired: u64,
    /// Removed by [`Conntrack::remove`].
    pub removed: u64,
    /// Removed because a new connection reused a closed one's tuple.
    pub reopened: u64,
    /// Packets not valid in their connection's state (dropped by the
    /// caller; the state did not change).
    pub invalid: u64,
    /// Keys moved to their other bucket to make room.
    pub displaced: u64,
    /// [`Conntrack::choose_port`] found no port.
    pub nat_port_exhausted: u64,
}

impl ConntrackCounters {
    /// Every eviction, whatever its rank.
    pub fn evicted(&self) -> u64 {
        self.evicted_unassured + self.evicted_closing + self.evicted_assured
    }

    /// Every refused creation.
    pub fn refused(&self) -> u64 {
        self.refused_full + self.refused_invalid + self.refused_exists + self.refused_reply_in_use
    }
}

/// A new connection: the tuple its first packet arrived with, the tuple
/// replies will carry, and the endpoint it was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewConnection {
    pub original: ConnKey,
    pub reply: ConnKey,
    pub endpoint: u32,
}

impl NewConnection {
    /// No translation: replies are the reversed original.
    pub fn new(original: ConnKey) -> NewConnection {
        NewConnection {
            original,
            reply: original.reversed(),
            endpoint: u32::MAX,
        }
    }

    /// Destination NAT to an endpoint (the port is ignored for ICMP).
    pub fn dnat(mut self, addr: u128, port: u16, endpoint: u32) -> NewConnection {
        self.reply.src = addr;
        if !is_icmp(self.reply.proto) {
            self.reply.sport = port;
        }
        self.endpoint = endpoint;
        self
    }

    /// Source NAT (masquerade) to `addr` and `port` (the echo identifier
    /// for ICMP), usually from [`Conntrack::choose_port`].
    pub fn snat(mut self, addr: u128, port: u16) -> NewConnection {
        self.reply.dst = addr;
        self.reply.set_nat_port(port);
        self
    }

    /// Replies arrive in another network (routing domain).
    pub fn reply_network(mut self, network: u16) -> NewConnection {
        self.reply.network = network;
        self
    }
}

/// Why a connection was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The original key is already tracked (two first packets in one
    /// burst, say): observe the packet on this connection instead.
    Exists(Hit),
    /// The reply tuple belongs to another live connection: translate to
    /// another port ([`Conntrack::choose_port`]) and retry.
    ReplyInUse,
    /// The first packet cannot open a connection: a TCP segment other than
    /// a SYN (or a bare ACK when loose), SCTP without INIT, an ICMP echo
    /// reply, an event of another protocol, mixed families or protocols, or
    /// a tuple that is its own reply.
    Invalid,
    /// No room, and nothing the policy lets go.
    Full,
}

/// The decision for a packet of a tracked connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Forward(Forward),
    /// The packet does not fit the connection's state (a SYN-ACK from the
    /// client, say): drop it. Nothing changed.
    Invalid,
    /// A new connection reuses a closed connection's tuple (a SYN after
    /// TIME_WAIT or a RST): the old entry is gone; handle the packet as the
    /// first of a new connection.
    Reopen,
}

/// How to send a packet of a tracked connection on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub id: ConnId,
    pub dir: Direction,
    pub state: ConnState,
    /// The tuple the packet leaves with; `None` when the connection is not
    /// translated.
    pub rewrite: Option<FlowTuple>,
    /// The network the packet continues in (the other direction's).
    pub network: u16,
    pub endpoint: u32,
}

/// A copy of one connection, for people and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub id: ConnId,
    pub original: ConnKey,
    pub reply: ConnKey,
    pub state: ConnState,
    pub assured: bool,
    pub seen_reply: bool,
    pub endpoint: u32,
    /// Creation time, seconds of the caller's clock.
    pub created_s: u32,
    pub last_seen_ns: u64,
    pub expires_ns: u64,
    /// TCP segments ([`tcp_seen`]) or SCTP chunks ([`sctp_chunks`]) seen,
    /// per direction.
    pub seen: [u8; 2],
    /// Per direction: original, reply.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

// ---------------------------------------------------------------------------
// Storage

/// An address as stored: 4 bytes for IPv4, 16 for IPv6.
trait Addr: Copy + Eq + Default + core::fmt::Debug {
    const FAMILY: Family;
    fn from_u128(a: u128) -> Self;
    fn to_u128(self) -> u128;
    /// The two 64-bit words a pair of addresses hash as.
    fn mix(src: Self, dst: Self, rest: u64, seed: &[u64; 4]) -> u64;
}

impl Addr for u32 {
    const FAMILY: Family = Family::V4;
    #[inline(always)]
    fn from_u128(a: u128) -> u32 {
        a as u32
    }
    #[inline(always)]
    fn to_u128(self) -> u128 {
        self as u128
    }
    #[inline(always)]
    fn mix(src: u32, dst: u32, rest: u64, seed: &[u64; 4]) -> u64 {
        let h = fold(((src as u64) << 32 | dst as u64) ^ seed[0], rest ^ seed[1]);
        fold(h ^ seed[2], seed[3]) & !V6_BIT
    }
}

/// An IPv6 address as four words (4-byte aligned, so entries pack tightly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct V6Addr([u32; 4]);

impl Addr for V6Addr {
    const FAMILY: Family = Family::V6;
    #[inline(always)]
    fn from_u128(a: u128) -> V6Addr {
        V6Addr([
            (a >> 96) as u32,
            (a >> 64) as u32,
            (a >> 32) as u32,
            a as u32,
        ])
    }
    #[inline(always)]
    fn to_u128(self) -> u128 {
        let [a, b, c, d] = self.0;
        (a as u128) << 96 | (b as u128) << 64 | (c as u128) << 32 | d as u128
    }
    #[inline(always)]
    fn mix(src: V6Addr, dst: V6Addr, rest: u64, seed: &[u64; 4]) -> u64 {
        let (s, d) = (src.to_u128(), dst.to_u128());
        let x = fold((s >> 64) as u64 ^ seed[0], s as u64 ^ seed[1]);
        let y = fold((d >> 64) as u64 ^ seed[2], d as u64 ^ seed[3]);
        fold(x ^ rest ^ seed[1], y ^ seed[2]) | V6_BIT
    }
}

/// The folded 64×64→128-bit multiply (as in wyhash and aHash).
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = a as u128 * b as u128;
    p as u64 ^ (p >> 64) as u64
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
struct Tuple<A> {
    src: A,
    dst: A,
    sport: u16,
    dport: u16,
}

impl<A: Addr> Tuple<A> {
    #[inline(always)]
    fn of(k: &ConnKey) -> Tuple<A> {
        Tuple {
            src: A::from_u128(k.src),
            dst: A::from_u128(k.dst),
            sport: k.sport,
            dport: k.dport,
        }
    }

    fn key(&self, network: u16, proto: u8) -> ConnKey {
        ConnKey {
            network,
            family: A::FAMILY,
            proto,
            src: self.src.to_u128(),
            dst: self.dst.to_u128(),
            sport: self.sport,
            dport: self.dport,
        }
    }

    /// The tuple a packet answering this one carries, untranslated.
    #[inline(always)]
    fn reversed(&self, proto: u8) -> Tuple<A> {
        let (sport, dport) = if is_icmp(proto) {
            (self.sport, self.dport)
        } else {
            (self.dport, self.sport)
        };
        Tuple {
            src: self.dst,
            dst: self.src,
            sport,
            dport,
        }
    }
}

#[inline(always)]
fn hash_tuple<A: Addr>(seed: &[u64; 4], network: u16, proto: u8, t: &Tuple<A>) -> u64 {
    let rest = (t.sport as u64) << 48
        | (t.dport as u64) << 32
        | (network as u64) << 16
        | (proto as u64) << 8
        | A::FAMILY as u64;
    A::mix(t.src, t.dst, rest, seed)
}

/// One connection: 80 bytes for IPv4, 128 for IPv6. What a lookup reads
/// (tuples, last-seen time, networks, protocol, status) comes first, in the
/// first 40 bytes of an IPv4 entry.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Entry<A> {
    /// Original, reply.
    tuple: [Tuple<A>; 2],
    last_seen_ns: u64,
    network: [u16; 2],
    proto: u8,
    /// A `ConnState` code (`CODE_MASK`) and the flags `ASSURED`,
    /// `SEEN_REPLY`, `TRANSLATED`; `FREE` when the entry is unused.
    status: u8,
    seen: [u8; 2],
    /// The endpoint; while the entry is free, the next free entry.
    endpoint: u32,
    created_s: u32,
    packets: [u64; 2],
    bytes: [u64; 2],
}

impl<A> Entry<A> {
    #[inline(always)]
    fn code(&self) -> u8 {
        self.status & CODE_MASK
    }

    #[inline(always)]
    fn has(&self, flag: u8) -> bool {
        self.status & flag != 0
    }
}

impl<A: Addr> Entry<A> {
    fn free() -> Entry<A> {
        Entry {
            tuple: [Tuple::default(); 2],
            network: [0; 2],
            endpoint: NIL,
            created_s: 0,
            proto: 0,
            status: FREE,
            seen: [0; 2],
            last_seen_ns: 0,
            packets: [0; 2],
            bytes: [0; 2],
        }
    }

    #[inline(always)]
    fn matches(&self, dir: usize, t: &Tuple<A>, network: u16, proto: u8) -> bool {
        self.tuple[dir] == *t && self.network[dir] == network && self.proto == proto
    }
}

/// One cache line of the index: slot `i` is empty when `tags[i] == 0`,
/// else `refs[i]` is `entry << 1 | direction`.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    tags: [u16; SLOTS],
    refs: [u32; SLOTS],
}

impl Bucket {
    const EMPTY: Bucket = Bucket {
        tags: [0; SLOTS],
        refs: [0; SLOTS],
    };

    /// A bit per slot whose tag is `tag` (0: the empty slots).
    #[inline(always)]
    fn matches(&self, tag: u16) -> u32 {
        let mut m = 0;
        for (i, &t) in self.tags.iter().enumerate() {
            m |= ((t == tag) as u32) << i;
        }
        m
    }
}

/// The other bucket of a key with this tag: `b2 = b1 ^ alt_offset(tag)`.
#[inline(always)]
fn alt_offset(tag: u16, mask: usize) -> usize {
    let x = ((tag as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 34) as usize & mask;
    x | (x == 0) as usize
}

/// Settings the tables read, and the counters they bump.
struct Shared {
    /// `[state][assured]`, in ns.
    timeout_ns: [[u64; 2]; STATE_SLOTS],
    seed: [u64; 4],
    tcp_loose: bool,
    max_rank: u8,
    counters: ConntrackCounters,
}

impl Shared {
    #[inline(always)]
    fn timeout<A>(&self, e: &Entry<A>) -> u64 {
        self.timeout_ns[e.code() as usize % STATE_SLOTS][e.has(ASSURED) as usize]
    }

    #[inline(always)]
    fn expired<A>(&self, e: &Entry<A>, now: u64) -> bool {
        now.saturating_sub(e.last_seen_ns) >= self.timeout(e)
    }

    /// Eviction rank (see the module docs): lower goes first.
    fn rank<A>(&self, e: &Entry<A>, now: u64) -> u8 {
        if self.expired(e, now) {
            0
        } else if !e.has(ASSURED) {
            1
        } else if ConnState::from_code(e.code()).is_some_and(ConnState::is_closing) {
            2
        } else {
            3
        }
    }

    fn count_removal(&mut self, rank: u8) {
        let c = &mut self.counters;
        match rank {
            0 => c.expired += 1,
            1 => c.evicted_unassured += 1,
            2 => c.evicted_closing += 1,
            _ => c.evicted_assured += 1,
        }
    }
}

/// What a new entry starts with.
struct NewEntry<A> {
    tuple: [Tuple<A>; 2],
    network: [u16; 2],
    proto: u8,
    endpoint: u32,
    state: ConnState,
    seen: u8,
    bytes: u32,
}

/// One family's connections.
struct FlowTable<A> {
    buckets: Box<[Bucket]>,
    mask: usize,
    entries: Box<[Entry<A>]>,
    free_head: u32,
    /// Entries from here on were never used.
    fresh: u32,
    live: u32,
    sweep_at: u32,
}

impl<A: Addr> FlowTable<A> {
    fn new(capacity: usize) -> FlowTable<A> {
        let buckets = (capacity / CONNS_PER_BUCKET).max(2);
        FlowTable {
            buckets: boxed_table(buckets, Bucket::EMPTY),
            mask: buckets - 1,
            entries: boxed_table(capacity, Entry::free()),
            free_head: NIL,
            fresh: 0,
            live: 0,
            sweep_at: 0,
        }
    }

    fn memory_bytes(&self) -> usize {
        core::mem::size_of_val(&*self.buckets) + core::mem::size_of_val(&*self.entries)
    }

    #[inline(always)]
    fn locate(&self, h: u64) -> (usize, usize, u16) {
        let tag = ((h >> 47) as u16).max(1);
        let b1 = h as usize & self.mask;
        (b1, b1 ^ alt_offset(tag, self.mask), tag)
    }

    /// Starts loading a key's first bucket, where keys live unless it was
    /// full when they were inserted.
    #[inline(always)]
    fn prefetch(&self, h: u64) {
        let (b1, _, _) = self.locate(h);
        prefetch(&self.buckets[b1]);
    }

    /// Brings in the entry the first tag match in the first bucket points
    /// at (the bucket should already be cached); without a match there,
    /// starts loading the second bucket.
    #[inline(always)]
    fn prefetch_entry(&self, h: u64) {
        let (b1, b2, tag) = self.locate(h);
        let bucket = &self.buckets[b1];
        let m = bucket.matches(tag);
        if m != 0 {
            let r = bucket.refs[m.trailing_zeros() as usize % SLOTS];
            if let Some(e) = self.entries.get((r >> 1) as usize) {
                // An entry spans at most two cache lines.
                prefetch(&e.tuple);
                prefetch(&e.bytes[1]);
            }
        } else {
            prefetch(&self.buckets[b2]);
        }
    }

    /// The entry and direction holding a key, expired or not.
    #[inline(always)]
    fn find(&self, h: u64, t: &Tuple<A>, network: u16, proto: u8) -> Option<(u32, usize)> {
        let (b1, b2, tag) = self.locate(h);
        for b in [b1, b2] {
            let bucket = &self.buckets[b];
            let mut m = bucket.matches(tag);
            while m != 0 {
                let s = m.trailing_zeros() as usize % SLOTS;
                m &= m - 1;
                let r = bucket.refs[s];
                let dir = (r & 1) as usize;
                if let Some(e) = self.entries.get((r >> 1) as usize) {
                    if e.matches(dir, t, network, proto) {
                        return Some((r >> 1, dir));
                    }
                }
            }
        }
        None
    }

    #[inline(always)]
    fn lookup(&self, sh: &Shared, key: &ConnKey, h: u64, now: u64) -> Option<(u32, usize)> {
        let (idx, dir) = self.find(h, &Tuple::of(key), key.network, key.proto)?;
        let e = &self.entries[idx as usize];
        (!sh.expired(e, now)).then_some((idx, dir))
    }

    /// A free slot for a key: in its first bucket if there is one (so a
    /// lookup almost always reads one bucket), else in its second.
    fn free_slot(&self, b1: usize, b2: usize) -> Option<(usize, usize)> {
        let f1 = self.buckets[b1].matches(0);
        if f1 != 0 {
            return Some((b1, f1.trailing_zeros() as usize));
        }
        let f2 = self.buckets[b2].matches(0);
        (f2 != 0).then(|| (b2, f2.trailing_zeros() as usize))
    }

    /// Moves one key out of `b1` or `b2` into its other bucket; returns
    /// the slot it left.
    fn displace(&mut self, b1: usize, b2: usize) -> Option<(usize, usize)> {
        for b in [b1, b2] {
            for s in 0..SLOTS {
                let tag = self.buckets[b].tags[s];
                let alt = b ^ alt_offset(tag, self.mask);
                let free = self.buckets[alt].matches(0);
                if free != 0 {
                    let t = free.trailing_zeros() as usize;
                    self.buckets[alt].tags[t] = tag;
                    self.buckets[alt].refs[t] = self.buckets[b].refs[s];
                    self.buckets[b].tags[s] = 0;
                    return Some((b, s));
                }
            }
        }
        None
    }

    /// The best victim among the connections referenced from `buckets`
    /// (never `exclude`) whose rank is at most `max_rank`: lowest rank,
    /// then least recently seen.
    fn victim(
        &self,
        sh: &Shared,
        buckets: &[usize],
        now: u64,
        exclude: u32,
        max_rank: u8,
    ) -> Option<(u32, u8)> {
        // The candidates' entries are independent loads: start them all
        // before ranking, so their cache misses overlap.
        for &b in buckets {
            let bucket = &self.buckets[b];
            let mut m = !bucket.matches(0) & SLOT_MASK;
            while m != 0 {
                let s = m.trailing_zeros() as usize % SLOTS;
                m &= m - 1;
                if let Some(e) = self.entries.get((bucket.refs[s] >> 1) as usize) {
                    prefetch(&e.status);
                }
            }
        }
        let mut best: Option<(u8, u64, u32)> = None;
        for &b in buckets {
            let bucket = &self.buckets[b];
            let mut m = !bucket.matches(0) & SLOT_MASK;
            while m != 0 {
                let s = m.trailing_zeros() as usize % SLOTS;
                m &= m - 1;
                let idx = bucket.refs[s] >> 1;
                let Some(e) = self.entries.get(idx as usize) else {
                    continue;
                };
                if idx == exclude {
                    continue;
                }
                let rank = sh.rank(e, now);
                if rank <= max_rank && best.is_none_or(|(r, t, _)| (rank, e.last_seen_ns) < (r, t))
                {
                    best = Some((rank, e.last_seen_ns, idx));
                    if rank == 0 {
                        break;
                    }
                }
            }
        }
        best.map(|(rank, _, idx)| (idx, rank))
    }

    /// A slot for a key hashing to `h`, making room if need be.
    fn room_for(
        &mut self,
        sh: &mut Shared,
        h: u64,
        now: u64,
        exclude: u32,
    ) -> Option<(usize, usize)> {
        let (b1, b2, _) = self.locate(h);
        if let Some(slot) = self.free_slot(b1, b2) {
            return Some(slot);
        }
        if let Some((idx, rank)) = self.victim(sh, &[b1, b2], now, exclude, 0) {
            sh.count_removal(rank);
            self.unlink(&sh.seed, idx);
            return self.free_slot(b1, b2);
        }
        if let Some(slot) = self.displace(b1, b2) {
            sh.counters.displaced += 1;
            return Some(slot);
        }
        let (idx, rank) = self.victim(sh, &[b1, b2], now, exclude, sh.max_rank)?;
        sh.count_removal(rank);
        self.unlink(&sh.seed, idx);
        self.free_slot(b1, b2)
    }

    /// Clears the slot holding reference `r` of a key hashing to `h`.
    fn clear_key(&mut self, h: u64, r: u32) {
        let (b1, b2, tag) = self.locate(h);
        for b in [b1, b2] {
            let bucket = &mut self.buckets[b];
            let mut m = bucket.matches(tag);
            while m != 0 {
                let s = m.trailing_zeros() as usize % SLOTS;
                m &= m - 1;
                if bucket.refs[s] == r {
                    bucket.tags[s] = 0;
                    return;
                }
            }
        }
        debug_assert!(false, "a live entry's key is always indexed");
    }

    fn alloc(&mut self) -> Option<u32> {
        if self.free_head != NIL {
            let idx = self.free_head;
            self.free_head = self.entries[idx as usize].endpoint;
            return Some(idx);
        }
        if (self.fresh as usize) < self.entries.len() {
            self.fresh += 1;
            return Some(self.fresh - 1);
        }
        None
    }

    fn release(&mut self, idx: u32) {
        let e = &mut self.entries[idx as usize];
        e.status = FREE;
        e.endpoint = self.free_head;
        self.free_head = idx;
        self.live -= 1;
    }

    /// Removes a connection: both keys, then the entry.
    fn unlink(&mut self, seed: &[u64; 4], idx: u32) {
        let Some(&e) = self.entries.get(idx as usize) else {
            return;
        };
        if e.status == FREE {
            return;
        }
        for dir in 0..2 {
            let h = hash_tuple(seed, e.network[dir], e.proto, &e.tuple[dir]);
            self.clear_key(h, idx << 1 | dir as u32);
        }
        self.release(idx);
    }

    fn insert(
        &mut self,
        sh: &mut Shared,
        new: &NewEntry<A>,
        h: [u64; 2],
        now: u64,
    ) -> Result<u32, Refused> {
        // Every bucket this insert may read, loading at once rather than
        // one after another.
        for &hash in &h {
            let (b1, b2, _) = self.locate(hash);
            prefetch(&self.buckets[b1]);
            prefetch(&self.buckets[b2]);
        }
        // Keys already present: expired ones are reclaimed here.
        for (dir, (&hash, (tuple, &network))) in
            h.iter().zip(new.tuple.iter().zip(&new.network)).enumerate()
        {
            let found = self.find(hash, tuple, network, new.proto);
            if let Some((idx, d)) = found {
                if sh.expired(&self.entries[idx as usize], now) {
                    sh.counters.expired += 1;
                    self.unlink(&sh.seed, idx);
                } else if dir == 0 {
                    let id = ConnId::new(A::FAMILY, idx);
                    return Err(Refused::Exists(Hit {
                        id,
                        dir: Direction::from_bit(d),
                    }));
                } else {
                    return Err(Refused::ReplyInUse);
                }
            }
        }
        let idx = match self.alloc() {
            Some(idx) => idx,
            None => {
                let (a1, a2, _) = self.locate(h[0]);
                let (c1, c2, _) = self.locate(h[1]);
                let (victim, rank) = self
                    .victim(sh, &[a1, a2, c1, c2], now, NIL, sh.max_rank)
                    .ok_or(Refused::Full)?;
                sh.count_removal(rank);
                self.unlink(&sh.seed, victim);
                self.alloc().ok_or(Refused::Full)?
            }
        };
        let translated =
            new.tuple[1] != new.tuple[0].reversed(new.proto) || new.network[0] != new.network[1];
        self.entries[idx as usize] = Entry {
            tuple: new.tuple,
            network: new.network,
            endpoint: new.endpoint,
            created_s: (now / 1_000_000_000) as u32,
            proto: new.proto,
            status: new.state as u8 | if translated { TRANSLATED } else { 0 },
            seen: [new.seen, 0],
            last_seen_ns: now,
            packets: [1, 0],
            bytes: [new.bytes as u64, 0],
        };
        self.live += 1;
        for dir in 0..2 {
            let Some((b, s)) = self.room_for(sh, h[dir], now, idx) else {
                if dir == 1 {
                    // The first key may have moved buckets since; find it by
                    // its reference.
                    self.clear_key(h[0], idx << 1);
                }
                self.release(idx);
                return Err(Refused::Full);
            };
            let tag = self.locate(h[dir]).2;
            self.buckets[b].tags[s] = tag;
            self.buckets[b].refs[s] = idx << 1 | dir as u32;
        }
        Ok(idx)
    }

    fn forward(&self, idx: u32, dir: usize) -> Forward {
        let e = &self.entries[idx as usize];
        let other = &e.tuple[dir ^ 1];
        let rewrite = e.has(TRANSLATED).then(|| {
            let out = other.reversed(e.proto);
            FlowTuple {
                src: out.src.to_u128(),
                dst: out.dst.to_u128(),
                sport: out.sport,
                dport: out.dport,
            }
        });
        Forward {
            id: ConnId::new(A::FAMILY, idx),
            dir: Direction::from_bit(dir),
            state: ConnState::from_code(e.code()).unwrap_or(ConnState::OtherUnreplied),
            rewrite,
            network: e.network[dir ^ 1],
            endpoint: e.endpoint,
        }
    }

    fn observe(
        &mut self,
        sh: &mut Shared,
        idx: u32,
        dir: usize,
        event: L4Event,
        bytes: u32,
        now: u64,
    ) -> Verdict {
        let Some(e) = self.entries.get_mut(idx as usize) else {
            sh.counters.invalid += 1;
            return Verdict::Invalid;
        };
        let Some(state) = ConnState::from_code(e.code()) else {
            sh.counters.invalid += 1;
            return Verdict::Invalid;
        };
        let dir = dir & 1;
        match transition(e.proto, state, Direction::from_bit(dir), event) {
            Next::Invalid => {
                sh.counters.invalid += 1;
                Verdict::Invalid
            }
            Next::Reopen => {
                sh.counters.reopened += 1;
                self.unlink(&sh.seed, idx);
                Verdict::Reopen
            }
            Next::Ignore => {
                e.packets[dir] = e.packets[dir].wrapping_add(1);
                e.bytes[dir] = e.bytes[dir].wrapping_add(bytes as u64);
                Verdict::Forward(self.forward(idx, dir))
            }
            Next::To(next, seen) => {
                let mut status = e.status & !CODE_MASK | next as u8;
                if dir == 1 {
                    status |= SEEN_REPLY;
                }
                if becomes_assured(next, status & SEEN_REPLY != 0) {
                    status |= ASSURED;
                }
                e.status = status;
                e.seen[dir] |= seen;
                e.last_seen_ns = e.last_seen_ns.max(now);
                e.packets[dir] = e.packets[dir].wrapping_add(1);
                e.bytes[dir] = e.bytes[dir].wrapping_add(bytes as u64);
                Verdict::Forward(self.forward(idx, dir))
            }
        }
    }

    /// Examines up to `budget` entries from the sweep cursor on, reclaiming
    /// the expired ones.
    fn expire(&mut self, sh: &mut Shared, now: u64, budget: usize) -> usize {
        let mut reclaimed = 0;
        for _ in 0..budget.min(self.fresh as usize) {
            if self.sweep_at >= self.fresh {
                self.sweep_at = 0;
            }
            let idx = self.sweep_at;
            self.sweep_at += 1;
            let e = &self.entries[idx as usize];
            if e.status != FREE && sh.expired(e, now) {
                sh.counters.expired += 1;
                self.unlink(&sh.seed, idx);
                reclaimed += 1;
            }
        }
        reclaimed
    }

    /// Examines up to `budget` entries from `*cursor` on and removes the
    /// live, translated ones `keep` refuses. Returns (examined, removed);
    /// `*cursor` wraps to 0 at the end of the table.
    fn sweep_translated(
        &mut self,
        sh: &mut Shared,
        cursor: &mut u32,
        budget: usize,
        keep: &mut dyn FnMut(&ConnKey) -> bool,
    ) -> (usize, usize) {
        let mut removed = 0;
        let n = budget.min(self.fresh as usize);
        for _ in 0..n {
            if *cursor >= self.fresh {
                *cursor = 0;
            }
            let idx = *cursor;
            *cursor += 1;
            let e = &self.entries[idx as usize];
            if e.status == FREE || !e.has(TRANSLATED) {
                continue;
            }
            let reply = e.tuple[1].key(e.network[1], e.proto);
            if !keep(&reply) {
                sh.counters.removed += 1;
                self.unlink(&sh.seed, idx);
                removed += 1;
            }
        }
        (n, removed)
    }

    fn connection(&self, sh: &Shared, idx: u32) -> Option<Connection> {
        let e = self.entries.get(idx as usize)?;
        let state = ConnState::from_code(e.code())?;
        Some(Connection {
            id: ConnId::new(A::FAMILY, idx),
            original: e.tuple[0].key(e.network[0], e.proto),
            reply: e.tuple[1].key(e.network[1], e.proto),
            state,
            assured: e.has(ASSURED),
            seen_reply: e.has(SEEN_REPLY),
            endpoint: e.endpoint,
            created_s: e.created_s,
            last_seen_ns: e.last_seen_ns,
            expires_ns: e.last_seen_ns.saturating_add(sh.timeout(e)),
            seen: e.seen,
            packets: e.packets,
            bytes: e.bytes,
        })
    }
}

/// A table allocated once, offered to the kernel for transparent huge
/// pages before it is first written (a lookup over hundreds of MiB with
/// 4 KiB pages misses the TLB on almost every packet), then filled, so no
/// page is faulted in on the packet path.
fn boxed_table<T: Copy>(n: usize, fill: T) -> Box<[T]> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    advise_huge_pages(v.spare_capacity_mut());
    v.resize(n, fill);
    v.into_boxed_slice()
}

fn advise_huge_pages<T>(mem: &mut [T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = mem.as_mut_ptr() as usize;
        let end = start + core::mem::size_of_val(mem);
        let aligned = (start + HUGE - 1) & !(HUGE - 1);
        if aligned < end {
            let len = (end - aligned) & !(HUGE - 1);
            if len > 0 {
                // SAFETY: the range lies inside an allocation this table
                // owns; MADV_HUGEPAGE only changes how the kernel backs the
                // pages, never their contents.
                unsafe {
                    libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
                }
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = mem;
}

// ---------------------------------------------------------------------------
// State machines

enum Next {
    /// Move to a state; record these seen-bits for the direction.
    To(ConnState, u8),
    /// Let the packet through; change nothing.
    Ignore,
    Invalid,
    Reopen,
}

/// A TCP segment's class, as Linux's conntrack sorts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    Syn,
    SynAck,
    Fin,
    Ack,
    Rst,
}

impl Segment {
    /// The class of a flags byte; `None` for combinations no TCP stack
    /// sends (SYN+FIN, a bare FIN, no flags, ...).
    fn of(flags: u8) -> Option<Segment> {
        use tcp_flags::*;
        match flags & (FIN | SYN | RST | ACK | URG) {
            f if f == SYN || f == SYN | URG => Some(Segment::Syn),
            f if f == SYN | ACK => Some(Segment::SynAck),
            f if f == RST || f == RST | ACK => Some(Segment::Rst),
            f if f == FIN | ACK || f == FIN | ACK | URG => Some(Segment::Fin),
            f if f == ACK || f == ACK | URG => Some(Segment::Ack),
            _ => None,
        }
    }

    fn seen_bit(self) -> u8 {
        match self {
            Segment::Syn => tcp_seen::SYN,
            Segment::SynAck => tcp_seen::SYN_ACK,
            Segment::Fin => tcp_seen::FIN,
            Segment::Ack => tcp_seen::ACK,
            Segment::Rst => tcp_seen::RST,
        }
    }
}

/// Linux's TCP conntrack table (`tcp_conntracks` in
/// nf_conntrack_proto_tcp.c), less the NONE column (see [`initial`]).
/// Like Linux it does not record which side sent the first FIN: FIN_WAIT
/// means one FIN seen, CLOSE_WAIT that it was acknowledged, LAST_ACK that
/// both sides sent one.
fn tcp_next(state: ConnState, dir: Direction, seg: Segment) -> Next {
    use ConnState::*;
    use Direction::*;
    use Segment::*;
    let to = |s| Next::To(s, seg.seen_bit());
    match (seg, dir, state) {
        (Rst, _, _) => to(TcpClose),
        (Syn, Original, TcpSynSent) => to(TcpSynSent),
        (Syn, Original, TcpSynSent2) => to(TcpSynSent2),
        (Syn, Original, TcpTimeWait | TcpClose) => Next::Reopen,
        (Syn, Original, _) => Next::Ignore,
        (Syn, Reply, TcpSynSent | TcpSynSent2) => to(TcpSynSent2),
        (Syn, Reply, _) => Next::Invalid,
        (SynAck, Original, TcpSynSent2) => to(TcpSynRecv),
        (SynAck, Original, TcpSynSent) => Next::Invalid,
        (SynAck, Original, _) => Next::Ignore,
        (SynAck, Reply, TcpSynSent | TcpSynSent2) => to(TcpSynRecv),
        (SynAck, Reply, _) => Next::Ignore,
        (Fin, _, TcpSynSent | TcpSynSent2) => Next::Invalid,
        (Fin, _, TcpSynRecv | TcpEstablished) => to(TcpFinWait),
        (Fin, _, TcpFinWait | TcpCloseWait | TcpLastAck) => to(TcpLastAck),
        (Fin, _, TcpTimeWait) => to(TcpTimeWait),
        (Fin, _, TcpClose) => to(TcpClose),
        (Ack, Original, TcpSynSent | TcpSynSent2) => Next::Invalid,
        (Ack, Reply, TcpSynSent | TcpSynSent2) => Next::Ignore,
        (Ack, Original, TcpSynRecv) => to(TcpEstablished),
        (Ack, Reply, TcpSynRecv) => to(TcpSynRecv),
        (Ack, _, TcpEstablished) => to(TcpEstablished),
        (Ack, _, TcpFinWait | TcpCloseWait) => to(TcpCloseWait),
        (Ack, _, TcpLastAck | TcpTimeWait) => to(TcpTimeWait),
        (Ack, _, TcpClose) => to(TcpClose),
        _ => Next::Invalid,
    }
}

fn sctp_next(state: ConnState, dir: Direction, chunks: u16) -> Next {
    use sctp_chunks::*;
    use ConnState::*;
    let to = |s| Next::To(s, chunks as u8);
    if chunks == 0 {
        return Next::Invalid;
    }
    if chunks & ABORT != 0 {
        return to(SctpClosed);
    }
    if chunks & SHUTDOWN_COMPLETE != 0 {
        return match state {
            SctpShutdownSent | SctpShutdownRecd | SctpShutdownAckSent => to(SctpClosed),
            _ => Next::Ignore,
        };
    }
    if chunks & SHUTDOWN_ACK != 0 {
        return match state {
            SctpEstablished | SctpShutdownSent | SctpShutdownRecd | SctpShutdownAckSent => {
                to(SctpShutdownAckSent)
            }
            _ => Next::Ignore,
        };
    }
    if chunks & SHUTDOWN != 0 {
        return match (state, dir) {
            (SctpEstablished, Direction::Original) => to(SctpShutdownSent),
            (SctpEstablished, Direction::Reply) => to(SctpShutdownRecd),
            (SctpShutdownSent | SctpShutdownRecd, _) => to(state),
            _ => Next::Ignore,
        };
    }
    if chunks & INIT != 0 {
        return match (state, dir) {
            (SctpClosed, Direction::Original) => Next::Reopen,
            (SctpCookieWait, Direction::Original) => to(SctpCookieWait),
            _ => Next::Ignore,
        };
    }
    match state {
        SctpCookieWait if chunks & INIT_ACK != 0 && dir == Direction::Reply => to(SctpCookieWait),
        SctpCookieWait if chunks & COOKIE_ECHO != 0 && dir == Direction::Original => {
            to(SctpCookieEchoed)
        }
        SctpCookieEchoed if chunks & COOKIE_ACK != 0 && dir == Direction::Reply => {
            to(SctpEstablished)
        }
        SctpClosed => Next::Ignore,
        _ => to(state),
    }
}

/// The next state of a connection of protocol `proto` on a packet.
fn transition(proto: u8, state: ConnState, dir: Direction, event: L4Event) -> Next {
    match (proto, event) {
        (ip_proto::TCP, L4Event::Tcp(flags)) => match Segment::of(flags) {
            Some(seg) => tcp_next(state, dir, seg),
            None => Next::Invalid,
        },
        (ip_proto::UDP, L4Event::Udp) => match dir {
            Direction::Original => Next::To(state, 0),
            Direction::Reply => Next::To(ConnState::UdpReplied, 0),
        },
        (ip_proto::SCTP, L4Event::Sctp(chunks)) => sctp_next(state, dir, chunks),
        (p, L4Event::IcmpEcho { reply }) if is_icmp(p) => match (dir, reply) {
            (Direction::Original, false) => Next::To(state, 0),
            (Direction::Reply, true) => Next::To(ConnState::IcmpReplied, 0),
            _ => Next::Invalid,
        },
        (p, L4Event::Other)
            if !matches!(p, ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP) && !is_icmp(p) =>
        {
            match dir {
                Direction::Original => Next::To(state, 0),
                Direction::Reply => Next::To(ConnState::OtherReplied, 0),
            }
        }
        _ => Next::Invalid,
    }
}

/// The state a connection starts in, from its first packet.
fn initial(proto: u8, event: L4Event, tcp_loose: bool) -> Option<(ConnState, u8)> {
    match (proto, event) {
        (ip_proto::TCP, L4Event::Tcp(flags)) => match Segment::of(flags)? {
            Segment::Syn => Some((ConnState::TcpSynSent, tcp_seen::SYN)),
            Segment::Ack if tcp_loose => Some((ConnState::TcpEstablished, tcp_seen::ACK)),
            _ => None,
        },
        (ip_proto::UDP, L4Event::Udp) => Some((ConnState::UdpUnreplied, 0)),
        (ip_proto::SCTP, L4Event::Sctp(chunks)) if chunks & sctp_chunks::INIT != 0 => {
            Some((ConnState::SctpCookieWait, chunks as u8))
        }
        (p, L4Event::IcmpEcho { reply: false }) if is_icmp(p) => Some((ConnState::IcmpRequest, 0)),
        (p, L4Event::Other)
            if !matches!(p, ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP) && !is_icmp(p) =>
        {
            Some((ConnState::OtherUnreplied, 0))
        }
        _ => None,
    }
}

fn becomes_assured(state: ConnState, seen_reply: bool) -> bool {
    match state {
        ConnState::TcpEstablished => seen_reply,
        ConnState::UdpReplied | ConnState::SctpEstablished | ConnState::OtherReplied => true,
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// The table

/// One worker's connection tracking: an IPv4 and an IPv6 table, their
/// settings and counters. See the module docs.
pub struct Conntrack {
    v4: FlowTable<u32>,
    v6: FlowTable<V6Addr>,
    sh: Shared,
    nat_ports: (u16, u16),
    nat_port_attempts: u32,
    rng: u64,
}

impl core::fmt::Debug for Conntrack {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Conntrack")
            .field("capacity_v4", &self.v4.entries.len())
            .field("capacity_v6", &self.v6.entries.len())
            .field("live_v4", &self.v4.live)
            .field("live_v6", &self.v6.live)
            .field("counters", &self.sh.counters)
            .finish()
    }
}

/// The receive queue a NIC's RSS sends a packet with this tuple to: the
/// Toeplitz hash of source and destination address, then (TCP, UDP, SCTP)
/// source and destination port, through the redirection table, as
/// [`crate::io::rss`] computes it from a frame.
#[inline]
pub fn rss_queue(key: &ConnKey, rss: &Toeplitz, reta: &Reta) -> u16 {
    let mut input = [0u8; RSS_INPUT_MAX];
    let mut n = match key.family {
        Family::V4 => {
            input[0..4].copy_from_slice(&(key.src as u32).to_be_bytes());
            input[4..8].copy_from_slice(&(key.dst as u32).to_be_bytes());
            8
        }
        Family::V6 => {
            input[0..16].copy_from_slice(&key.src.to_be_bytes());
            input[16..32].copy_from_slice(&key.dst.to_be_bytes());
            32
        }
    };
    if carries_ports(key.proto) {
        input[n..n + 2].copy_from_slice(&key.sport.to_be_bytes());
        input[n + 2..n + 4].copy_from_slice(&key.dport.to_be_bytes());
        n += 4;
    }
    reta.queue(rss.hash(&input[..n]))
}

impl Conntrack {
    pub fn new(config: &ConntrackConfig) -> Conntrack {
        let capacity = |c: usize| c.clamp(MIN_CAPACITY, MAX_CAPACITY).next_power_of_two();
        let mut timeout_ns = [[u64::MAX; 2]; STATE_SLOTS];
        for state in ConnState::ALL {
            let [unassured, assured] = config.timeouts.of(state);
            timeout_ns[state as usize] = [
                unassured as u64 * 1_000_000_000,
                assured as u64 * 1_000_000_000,
            ];
        }
        let mut s = config.seed;
        let seed = [
            splitmix(&mut s),
            splitmix(&mut s),
            splitmix(&mut s),
            splitmix(&mut s) | 1,
        ];
        let (a, b) = config.nat_ports;
        Conntrack {
            v4: FlowTable::new(capacity(config.capacity_v4)),
            v6: FlowTable::new(capacity(config.capacity_v6)),
            sh: Shared {
                timeout_ns,
                seed,
                tcp_loose: config.tcp_loose,
                max_rank: if config.evict_assured { 3 } else { 2 },
                counters: ConntrackCounters::default(),
            },
            nat_ports: (a.min(b), a.max(b)),
            nat_port_attempts: config.nat_port_attempts.max(1),
            rng: splitmix(&mut s),
        }
    }

    /// The key's hash, computed once per packet and passed to
    /// [`prefetch`](Self::prefetch), [`lookup_hashed`](Self::lookup_hashed),
    /// [`track`](Self::track) and [`create`](Self::create). Opaque; its top
    /// bit selects the family's table.
    #[inline]
    pub fn hash(&self, key: &ConnKey) -> u64 {
        match key.family {
            Family::V4 => hash_tuple::<u32>(&self.sh.seed, key.network, key.proto, &Tuple::of(key)),
            Family::V6 => {
                hash_tuple::<V6Addr>(&self.sh.seed, key.network, key.proto, &Tuple::of(key))
            }
        }
    }

    /// Starts loading the two index buckets of a key, so that a lookup a
    /// few packets later finds them in cache.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        if hash & V6_BIT == 0 {
            self.v4.prefetch(hash)
        } else {
            self.v6.prefetch(hash)
        }
    }

    /// The live connection holding `key`, and the direction it matched.
    #[inline]
    pub fn lookup(&self, key: &ConnKey, now_ns: u64) -> Option<Hit> {
        self.lookup_hashed(key, self.hash(key), now_ns)
    }

    /// [`lookup`](Self::lookup) with the key's [`hash`](Self::hash).
    #[inline]
    pub fn lookup_hashed(&self, key: &ConnKey, hash: u64, now_ns: u64) -> Option<Hit> {
        let (idx, dir) = match key.family {
            Family::V4 => self.v4.lookup(&self.sh, key, hash, now_ns)?,
            Family::V6 => self.v6.lookup(&self.sh, key, hash, now_ns)?,
        };
        Some(Hit {
            id: ConnId::new(key.family, idx),
            dir: Direction::from_bit(dir),
        })
    }

    /// Looks up a burst: buckets are prefetched for every key, then the
    /// entries the tags point at, then each key is resolved, so the cache
    /// misses of the burst overlap. `out[i]` is `lookup_hashed(keys[i],
    /// hashes[i])`, for `i` below the shortest of the three lengths.
    #[inline]
    pub fn lookup_burst(
        &self,
        keys: &[ConnKey],
        hashes: &[u64],
        now_ns: u64,
        out: &mut [Option<Hit>],
    ) {
        let n = keys.len().min(hashes.len()).min(out.len());
        for &h in &hashes[..n] {
            self.prefetch(h);
        }
        for &h in &hashes[..n] {
            if h & V6_BIT == 0 {
                self.v4.prefetch_entry(h)
            } else {
                self.v6.prefetch_entry(h)
            }
        }
        for ((k, &h), o) in keys.iter().zip(hashes).zip(out.iter_mut()).take(n) {
            *o = self.lookup_hashed(k, h, now_ns);
        }
    }

    /// Runs a packet of a tracked connection through its state machine:
    /// updates state, flags, timestamps and counters, and says how to
    /// forward it.
    #[inline]
    pub fn observe(&mut self, hit: Hit, event: L4Event, bytes: u32, now_ns: u64) -> Verdict {
        let (idx, dir) = (hit.id.index(), hit.dir as usize);
        match hit.id.family() {
            Family::V4 => self
                .v4
                .observe(&mut self.sh, idx, dir, event, bytes, now_ns),
            Family::V6 => self
                .v6
                .observe(&mut self.sh, idx, dir, event, bytes, now_ns),
        }
    }

    /// Lookup and [`observe`](Self::observe) in one: `None` when the key
    /// is not tracked (create the connection).
    #[inline]
    pub fn track(
        &mut self,
        key: &ConnKey,
        hash: u64,
        event: L4Event,
        bytes: u32,
        now_ns: u64,
    ) -> Option<Verdict> {
        let hit = self.lookup_hashed(key, hash, now_ns)?;
        Some(self.observe(hit, event, bytes, now_ns))
    }

    /// Creates a connection from its first packet (`event`, `bytes`) and
    /// the hash of `new.original`. Evicts by the policy in the module docs
    /// when full; counts every refusal.
    pub fn create(
        &mut self,
        new: &NewConnection,
        hash: u64,
        event: L4Event,
        bytes: u32,
        now_ns: u64,
    ) -> Result<(Hit, Forward), Refused> {
        let result = self.create_inner(new, hash, event, bytes, now_ns);
        let c = &mut self.sh.counters;
        match result {
            Ok(_) => c.created += 1,
            Err(Refused::Full) => c.refused_full += 1,
            Err(Refused::Invalid) => c.refused_invalid += 1,
            Err(Refused::Exists(_)) => c.refused_exists += 1,
            Err(Refused::ReplyInUse) => c.refused_reply_in_use += 1,
        }
        result
    }

    fn create_inner(
        &mut self,
        new: &NewConnection,
        hash: u64,
        event: L4Event,
        bytes: u32,
        now_ns: u64,
    ) -> Result<(Hit, Forward), Refused> {
        let (o, r) = (&new.original, &new.reply);
        if o.family != r.family || o.proto != r.proto {
            return Err(Refused::Invalid);
        }
        let (state, seen) = initial(o.proto, event, self.sh.tcp_loose).ok_or(Refused::Invalid)?;
        let reply_hash = self.hash(r);
        // The reply key's buckets load while the original's are searched.
        self.prefetch(reply_hash);
        let h = [hash, reply_hash];
        let (idx, fwd) = match o.family {
            Family::V4 => create_in(
                &mut self.v4,
                &mut self.sh,
                new,
                h,
                state,
                seen,
                bytes,
                now_ns,
            )?,
            Family::V6 => create_in(
                &mut self.v6,
                &mut self.sh,
                new,
                h,
                state,
                seen,
                bytes,
                now_ns,
            )?,
        };
        let hit = Hit {
            id: ConnId::new(o.family, idx),
            dir: Direction::Original,
        };
        Ok((hit, fwd))
    }

    /// A copy of a connection.
    pub fn get(&self, id: ConnId) -> Option<Connection> {
        match id.family() {
            Family::V4 => self.v4.connection(&self.sh, id.index()),
            Family::V6 => self.v6.connection(&self.sh, id.index()),
        }
    }

    /// Removes a connection (an endpoint went away, say). False if there
    /// was none.
    pub fn remove(&mut self, id: ConnId) -> bool {
        let seed = &self.sh.seed;
        let gone = match id.family() {
            Family::V4 => {
                let before = self.v4.live;
                self.v4.unlink(seed, id.index());
                self.v4.live < before
            }
            Family::V6 => {
                let before = self.v6.live;
                self.v6.unlink(seed, id.index());
                self.v6.live < before
            }
        };
        if gone {
            self.sh.counters.removed += 1;
        }
        gone
    }

    /// The incremental sweep: examines up to `budget` entries of each
    /// family's table, from where the last call stopped, and reclaims the
    /// expired ones. Returns how many it reclaimed. Call on idle polls.
    pub fn expire(&mut self, now_ns: u64, budget: usize) -> usize {
        self.v4.expire(&mut self.sh, now_ns, budget) + self.v6.expire(&mut self.sh, now_ns, budget)
    }

    /// An incremental sweep over translated connections: examines up to
    /// `budget` entries of each family from `cursor` on, removing those
    /// whose reply tuple `keep` refuses (the endpoint a connection was
    /// sent to no longer exists, say). Returns how many entries it
    /// examined and how many it removed. Call with the same cursor until
    /// it has covered [`capacity`](Self::capacity) entries.
    pub fn sweep_translated(
        &mut self,
        cursor: &mut SweepCursor,
        budget: usize,
        mut keep: impl FnMut(&ConnKey) -> bool,
    ) -> (usize, usize) {
        let (a, b) = self
            .v4
            .sweep_translated(&mut self.sh, &mut cursor.v4, budget, &mut keep);
        let (c, d) = self
            .v6
            .sweep_translated(&mut self.sh, &mut cursor.v6, budget, &mut keep);
        (a + c, b + d)
    }

    /// Entries ever used, per family: what a full sweep must examine.
    pub fn used(&self) -> (usize, usize) {
        (self.v4.fresh as usize, self.v6.fresh as usize)
    }

    /// Chooses a source-NAT port for a connection whose reply tuple will be
    /// `reply` with the port filled in (`dport`, or the ICMP identifier in
    /// `sport`): one whose reply RSS steers to `want_queue` (this worker's
    /// queue) and whose reply tuple is not in the table. Tries ports of the
    /// configured range from a random start, at most
    /// `nat_port_attempts` of them. `None` when none fits (counted).
    ///
    /// For protocols RSS hashes without ports (ICMP, others) the queue does
    /// not depend on the port: `None` unless the addresses already steer to
    /// `want_queue`.
    pub fn choose_port(
        &mut self,
        reply: &ConnKey,
        want_queue: u16,
        rss: &Toeplitz,
        reta: &Reta,
        now_ns: u64,
    ) -> Option<u16> {
        let (first, last) = self.nat_ports;
        let span = (last - first) as u32 + 1;
        let start = (splitmix(&mut self.rng) % span as u64) as u32;
        let port_steers = carries_ports(reply.proto);
        let mut key = *reply;
        if port_steers || rss_queue(&key, rss, reta) == want_queue {
            for i in 0..self.nat_port_attempts.min(span) {
                let port = first + ((start + i) % span) as u16;
                key.set_nat_port(port);
                if port_steers && rss_queue(&key, rss, reta) != want_queue {
                    continue;
                }
                if self.lookup(&key, now_ns).is_none() {
                    return Some(port);
                }
            }
        }
        self.sh.counters.nat_port_exhausted += 1;
        None
    }

    /// Whether `port` is in the source-NAT port range.
    #[inline]
    pub fn is_nat_port(&self, port: u16) -> bool {
        (self.nat_ports.0..=self.nat_ports.1).contains(&port)
    }

    pub fn counters(&self) -> &ConntrackCounters {
        &self.sh.counters
    }

    /// Connections stored, expired ones not yet reclaimed included.
    pub fn len(&self) -> usize {
        (self.v4.live + self.v6.live) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most connections a family's table holds.
    pub fn capacity(&self, family: Family) -> usize {
        match family {
            Family::V4 => self.v4.entries.len(),
            Family::V6 => self.v6.entries.len(),
        }
    }

    /// Every byte the tables hold; fixed at creation.
    pub fn memory_bytes(&self) -> usize {
        core::mem::size_of::<Conntrack>() + self.v4.memory_bytes() + self.v6.memory_bytes()
    }

    /// Bytes per tracked connection of a family, both keys' index slots
    /// included: the table's memory over its capacity.
    pub fn bytes_per_flow(&self, family: Family) -> usize {
        match family {
            Family::V4 => self.v4.memory_bytes() / self.v4.entries.len(),
            Family::V6 => self.v6.memory_bytes() / self.v6.entries.len(),
        }
    }

    /// Every stored connection that has not expired at `now_ns`.
    pub fn connections(&self, now_ns: u64) -> impl Iterator<Item = Connection> + '_ {
        let v4 = (0..self.v4.fresh).filter_map(move |i| self.v4.connection(&self.sh, i));
        let v6 = (0..self.v6.fresh).filter_map(move |i| self.v6.connection(&self.sh, i));
        v4.chain(v6).filter(move |c| c.expires_ns > now_ns)
    }
}

#[allow(clippy::too_many_arguments)]
fn create_in<A: Addr>(
    table: &mut FlowTable<A>,
    sh: &mut Shared,
    new: &NewConnection,
    h: [u64; 2],
    state: ConnState,
    seen: u8,
    bytes: u32,
    now: u64,
) -> Result<(u32, Forward), Refused> {
    let entry = NewEntry {
        tuple: [Tuple::of(&new.original), Tuple::of(&new.reply)],
        network: [new.original.network, new.reply.network],
        proto: new.original.proto,
        endpoint: new.endpoint,
        state,
        seen,
        bytes,
    };
    if entry.tuple[0] == entry.tuple[1] && entry.network[0] == entry.network[1] {
        return Err(Refused::Invalid);
    }
    let idx = table.insert(sh, &entry, h, now)?;
    Ok((idx, table.forward(idx, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::rss::RETA_SIZE;
    use crate::wire::builder::PacketBuilder;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};
    use std::net::{Ipv4Addr, Ipv6Addr};
    use tcp_flags::{ACK, FIN, PSH, RST, SYN};

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_000 * S;
    const TCP: u8 = ip_proto::TCP;
    const UDP: u8 = ip_proto::UDP;

    fn ip4(a: u8, b: u8, c: u8, d: u8) -> u32 {
        u32::from_be_bytes([a, b, c, d])
    }

    fn ip6(s: &str) -> u128 {
        s.parse::<Ipv6Addr>().unwrap().into()
    }

    fn table(capacity: usize) -> Conntrack {
        Conntrack::new(&ConntrackConfig {
            capacity_v4: capacity,
            capacity_v6: capacity,
            ..ConntrackConfig::default()
        })
    }

    fn client(i: u32) -> ConnKey {
        ConnKey::v4(0, TCP, ip4(10, 1, 0, 0) + i, ip4(10, 96, 0, 10), 30_000, 80)
    }

    /// Creates a connection from a first packet, panicking on refusal.
    fn open(ct: &mut Conntrack, new: NewConnection, event: L4Event, now: u64) -> Hit {
        let h = ct.hash(&new.original);
        ct.create(&new, h, event, 60, now).expect("created").0
    }

    /// A packet on the connection `key` belongs to.
    fn packet(ct: &mut Conntrack, key: &ConnKey, event: L4Event, now: u64) -> Option<Verdict> {
        let h = ct.hash(key);
        ct.track(key, h, event, 60, now)
    }

    fn forwarded(v: Option<Verdict>) -> Forward {
        match v {
            Some(Verdict::Forward(f)) => f,
            other => panic!("expected a forward, got {other:?}"),
        }
    }

    /// Opens a TCP connection through its handshake; returns it.
    fn established(ct: &mut Conntrack, new: NewConnection, now: u64) -> Hit {
        let hit = open(ct, new, L4Event::Tcp(SYN), now);
        forwarded(packet(ct, &new.reply, L4Event::Tcp(SYN | ACK), now));
        forwarded(packet(ct, &new.original, L4Event::Tcp(ACK), now));
        hit
    }

    #[test]
    fn layout_and_bytes_per_flow() {
        assert_eq!(core::mem::size_of::<Bucket>(), 64);
        assert_eq!(core::mem::size_of::<Entry<u32>>(), 80);
        assert_eq!(core::mem::size_of::<Entry<V6Addr>>(), 128);
        let ct = table(1 << 12);
        let v4 = ct.bytes_per_flow(Family::V4);
        let v6 = ct.bytes_per_flow(Family::V6);
        println!("bytes per tracked flow (both keys + entry): IPv4 {v4}, IPv6 {v6}");
        assert_eq!(v4, 80 + 64 / CONNS_PER_BUCKET);
        assert!(v4 <= 128, "IPv4: {v4} bytes per flow");
        assert_eq!(v6, 128 + 64 / CONNS_PER_BUCKET);
        assert!(ct.memory_bytes() >= (v4 + v6) << 12);
        assert_eq!(ct.capacity(Family::V4), 1 << 12);
        assert_eq!(table(100).capacity(Family::V4), 128);
        assert_eq!(table(0).capacity(Family::V6), MIN_CAPACITY);
    }

    #[test]
    fn both_directions_are_found_v4() {
        let mut ct = table(256);
        // Untranslated.
        let plain = ConnKey::v4(0, UDP, ip4(10, 0, 0, 1), ip4(10, 0, 0, 2), 5000, 53);
        let hit = open(&mut ct, NewConnection::new(plain), L4Event::Udp, T0);
        assert_eq!(hit.dir, Direction::Original);
        let back = ct.lookup(&plain.reversed(), T0).unwrap();
        assert_eq!((back.id, back.dir), (hit.id, Direction::Reply));
        let f = forwarded(packet(&mut ct, &plain.reversed(), L4Event::Udp, T0));
        assert_eq!(f.rewrite, None, "nothing to translate");

        // A service: DNAT to an endpoint and SNAT to the node.
        let orig = client(1);
        let new = NewConnection::new(orig)
            .dnat(ip4(10, 244, 1, 5) as u128, 8080, 7)
            .snat(ip4(192, 168, 0, 1) as u128, 40_000);
        assert_eq!(
            new.reply,
            ConnKey::v4(
                0,
                TCP,
                ip4(10, 244, 1, 5),
                ip4(192, 168, 0, 1),
                8080,
                40_000
            )
        );
        let h = ct.hash(&orig);
        let (hit, f) = ct.create(&new, h, L4Event::Tcp(SYN), 60, T0).unwrap();
        assert_eq!(f.endpoint, 7);
        assert_eq!(
            f.rewrite,
            Some(FlowTuple {
                src: ip4(192, 168, 0, 1) as u128,
                dst: ip4(10, 244, 1, 5) as u128,
                sport: 40_000,
                dport: 8080,
            }),
            "the client's packet leaves from the node to the endpoint"
        );
        let f = forwarded(packet(&mut ct, &new.reply, L4Event::Tcp(SYN | ACK), T0));
        assert_eq!((f.id, f.dir), (hit.id, Direction::Reply));
        assert_eq!(
            f.rewrite,
            Some(FlowTuple {
                src: ip4(10, 96, 0, 10) as u128,
                dst: orig.src,
                sport: 80,
                dport: 30_000,
            }),
            "the endpoint's reply goes back from the service address"
        );
        // Neither the untranslated reverse of the original nor other
        // networks, protocols or families match.
        assert!(ct.lookup(&orig.reversed(), T0).is_none());
        assert!(ct.lookup(&ConnKey { network: 1, ..orig }, T0).is_none());
        assert!(ct.lookup(&ConnKey { proto: UDP, ..orig }, T0).is_none());
        assert!(ct
            .lookup(&ConnKey::v6(0, TCP, orig.src, orig.dst, 30_000, 80), T0)
            .is_none());
        let c = ct.get(hit.id).unwrap();
        assert_eq!((c.original, c.reply), (orig, new.reply));
        assert_eq!((c.packets, c.bytes), ([1, 1], [60, 60]));
        assert_eq!(ct.len(), 2);
    }

    #[test]
    fn both_directions_are_found_v6() {
        let mut ct = table(256);
        let orig = ConnKey::v6(3, TCP, ip6("2001:db8::1"), ip6("fd00::10"), 40_001, 443);
        let new = NewConnection::new(orig)
            .dnat(ip6("2001:db8:44::9"), 8443, 1)
            .snat(ip6("2001:db8::fe"), 50_000);
        let hit = established(&mut ct, new, T0);
        assert_eq!(hit.id.family(), Family::V6);
        let back = ct.lookup(&new.reply, T0).unwrap();
        assert_eq!((back.id, back.dir), (hit.id, Direction::Reply));
        let c = ct.get(hit.id).unwrap();
        assert_eq!(c.state, ConnState::TcpEstablished);
        assert!(c.assured);
        assert_eq!((c.original, c.reply), (orig, new.reply));
        // The same low bits as an IPv4 key do not collide.
        let v4 = ConnKey::v4(3, TCP, orig.src as u32, orig.dst as u32, 40_001, 443);
        assert!(ct.lookup(&v4, T0).is_none());
        // High address bits count.
        let other = ConnKey {
            src: orig.src ^ 1 << 100,
            ..orig
        };
        assert!(ct.lookup(&other, T0).is_none());
    }

    #[test]
    fn tcp_lifecycle_and_timeouts() {
        let mut ct = table(256);
        let t = Timeouts::default();
        let orig = client(2);
        let new = NewConnection::new(orig).dnat(ip4(10, 244, 0, 2) as u128, 80, 1);
        let (o, r) = (&new.original.clone(), &new.reply.clone());
        let hit = open(&mut ct, new, L4Event::Tcp(SYN), T0);
        let expires = |ct: &Conntrack| {
            let c = ct.get(hit.id).unwrap();
            (c.state, (c.expires_ns - c.last_seen_ns) / S)
        };
        assert_eq!(expires(&ct), (ConnState::TcpSynSent, 120));
        // A retransmitted SYN refreshes SYN_SENT.
        forwarded(packet(&mut ct, o, L4Event::Tcp(SYN), T0 + S));
        let mut now = T0 + 2 * S;
        let mut step =
            |ct: &mut Conntrack, key: &ConnKey, flags: u8, want: ConnState, secs: u32| {
                let f = forwarded(packet(ct, key, L4Event::Tcp(flags), now));
                assert_eq!(f.state, want, "flags {flags:#x}");
                assert_eq!(expires(ct), (want, secs as u64));
                now += S;
            };
        step(&mut ct, r, SYN | ACK, ConnState::TcpSynRecv, t.tcp_syn_recv);
        assert!(!ct.get(hit.id).unwrap().assured);
        step(&mut ct, o, ACK, ConnState::TcpEstablished, 86_400);
        assert!(ct.get(hit.id).unwrap().assured);
        step(&mut ct, o, ACK | PSH, ConnState::TcpEstablished, 86_400);
        step(&mut ct, r, ACK, ConnState::TcpEstablished, 86_400);
        step(&mut ct, o, FIN | ACK, ConnState::TcpFinWait, 60);
        step(&mut ct, r, ACK, ConnState::TcpCloseWait, 60);
        step(&mut ct, r, FIN | ACK, ConnState::TcpLastAck, 30);
        step(&mut ct, o, ACK, ConnState::TcpTimeWait, 120);
        let c = ct.get(hit.id).unwrap();
        assert_eq!(c.seen[0], tcp_seen::SYN | tcp_seen::ACK | tcp_seen::FIN);
        assert_eq!(c.seen[1], tcp_seen::SYN_ACK | tcp_seen::ACK | tcp_seen::FIN);
        assert_eq!(c.packets, [6, 4]);
        // TIME_WAIT lasts 120 s after the last packet, and no longer.
        let last = c.last_seen_ns;
        assert!(ct.lookup(o, last + 120 * S - 1).is_some());
        assert!(ct.lookup(r, last + 120 * S - 1).is_some());
        assert!(ct.lookup(o, last + 120 * S).is_none());
        assert!(ct.lookup(r, last + 120 * S).is_none());
        assert!(packet(&mut ct, o, L4Event::Tcp(ACK), last + 120 * S).is_none());
        assert_eq!(ct.len(), 1, "reclaimed lazily");
        assert_eq!(ct.expire(last + 120 * S, 16), 1);
        assert!(ct.is_empty());
        assert_eq!(ct.counters().expired, 1);
    }

    #[test]
    fn timeouts_are_configurable() {
        let mut ct = Conntrack::new(&ConntrackConfig {
            capacity_v4: 64,
            timeouts: Timeouts {
                tcp_syn_sent: 5,
                udp_unreplied: 1,
                ..Timeouts::default()
            },
            ..ConntrackConfig::default()
        });
        open(
            &mut ct,
            NewConnection::new(client(1)),
            L4Event::Tcp(SYN),
            T0,
        );
        let udp = ConnKey::v4(0, UDP, 1, 2, 3, 4);
        open(&mut ct, NewConnection::new(udp), L4Event::Udp, T0);
        assert!(ct.lookup(&udp, T0 + S - 1).is_some());
        assert!(ct.lookup(&udp, T0 + S).is_none());
        assert!(ct.lookup(&client(1), T0 + 5 * S - 1).is_some());
        assert!(ct.lookup(&client(1), T0 + 5 * S).is_none());
        let json = r#"{"tcp_established": 3600, "udp_replied": 180}"#;
        let t: Timeouts = serde_json::from_str(json).unwrap();
        assert_eq!(
            (t.tcp_established, t.udp_replied, t.tcp_close),
            (3600, 180, 10)
        );
        assert!(serde_json::from_str::<Timeouts>(r#"{"tcp_establish": 1}"#).is_err());
    }

    #[test]
    fn rst_closes() {
        let mut ct = table(64);
        for (from_reply, flags) in [(false, RST), (true, RST | ACK)] {
            let new = NewConnection::new(client(from_reply as u32));
            let hit = established(&mut ct, new, T0);
            let key = if from_reply { new.reply } else { new.original };
            let f = forwarded(packet(&mut ct, &key, L4Event::Tcp(flags), T0 + S));
            assert_eq!(f.state, ConnState::TcpClose);
            let c = ct.get(hit.id).unwrap();
            assert_eq!(c.expires_ns, T0 + 11 * S, "CLOSE lasts 10 s");
            assert!(ct.lookup(&new.original, T0 + 11 * S).is_none());
        }
        // A RST answering a SYN (connection refused) closes too.
        let new = NewConnection::new(client(9));
        open(&mut ct, new, L4Event::Tcp(SYN), T0);
        let f = forwarded(packet(&mut ct, &new.reply, L4Event::Tcp(RST | ACK), T0));
        assert_eq!(f.state, ConnState::TcpClose);
    }

    #[test]
    fn syn_on_a_closed_tuple_reopens() {
        let mut ct = table(64);
        let new = NewConnection::new(client(3)).dnat(ip4(10, 244, 0, 3) as u128, 80, 3);
        established(&mut ct, new, T0);
        forwarded(packet(&mut ct, &new.original, L4Event::Tcp(RST), T0 + S));
        let v = packet(&mut ct, &new.original, L4Event::Tcp(SYN), T0 + 2 * S);
        assert_eq!(v, Some(Verdict::Reopen));
        assert!(ct.lookup(&new.original, T0 + 2 * S).is_none());
        assert!(ct.lookup(&new.reply, T0 + 2 * S).is_none());
        assert_eq!(ct.counters().reopened, 1);
        // The caller opens it again, to another endpoint if it likes.
        let again = NewConnection::new(client(3)).dnat(ip4(10, 244, 0, 4) as u128, 80, 4);
        let hit = open(&mut ct, again, L4Event::Tcp(SYN), T0 + 2 * S);
        assert_eq!(ct.get(hit.id).unwrap().endpoint, 4);
    }

    #[test]
    fn segments_that_do_not_fit_change_nothing() {
        let mut ct = table(64);
        let new = NewConnection::new(client(4));
        let hit = open(&mut ct, new, L4Event::Tcp(SYN), T0);
        let (o, r) = (new.original, new.reply);
        for (key, flags) in [
            (o, SYN | ACK), // the client cannot answer its own SYN
            (o, ACK),       // nor acknowledge before the SYN-ACK
            (o, FIN | ACK),
            (r, SYN | FIN), // a combination no stack sends
            (r, 0),
            (r, FIN),
        ] {
            let v = packet(&mut ct, &key, L4Event::Tcp(flags), T0 + S);
            assert_eq!(v, Some(Verdict::Invalid), "flags {flags:#x}");
        }
        // Another protocol's event on a TCP connection.
        assert_eq!(
            packet(&mut ct, &o, L4Event::Udp, T0 + S),
            Some(Verdict::Invalid)
        );
        let c = ct.get(hit.id).unwrap();
        assert_eq!(
            (c.state, c.last_seen_ns, c.packets),
            (ConnState::TcpSynSent, T0, [1, 0])
        );
        assert_eq!(ct.counters().invalid, 7);
        // A SYN-ACK repeated in SYN_RECV is let through, unchanged.
        forwarded(packet(&mut ct, &r, L4Event::Tcp(SYN | ACK), T0 + S));
        let f = forwarded(packet(&mut ct, &r, L4Event::Tcp(SYN | ACK), T0 + 2 * S));
        assert_eq!(f.state, ConnState::TcpSynRecv);
        assert_eq!(ct.get(hit.id).unwrap().last_seen_ns, T0 + S);
    }

    #[test]
    fn simultaneous_open() {
        let mut ct = table(64);
        let new = NewConnection::new(client(5));
        open(&mut ct, new, L4Event::Tcp(SYN), T0);
        let f = forwarded(packet(&mut ct, &new.reply, L4Event::Tcp(SYN), T0));
        assert_eq!(f.state, ConnState::TcpSynSent2);
        let f = forwarded(packet(&mut ct, &new.original, L4Event::Tcp(SYN | ACK), T0));
        assert_eq!(f.state, ConnState::TcpSynRecv);
    }

    #[test]
    fn first_packets() {
        let mut ct = table(64);
        let k = client(6);
        for flags in [SYN | ACK, FIN | ACK, RST, 0] {
            let r = ct.create(
                &NewConnection::new(k),
                ct.hash(&k),
                L4Event::Tcp(flags),
                60,
                T0,
            );
            assert_eq!(r.unwrap_err(), Refused::Invalid, "flags {flags:#x}");
        }
        let r = ct.create(&NewConnection::new(k), ct.hash(&k), L4Event::Udp, 60, T0);
        assert_eq!(r.unwrap_err(), Refused::Invalid, "a UDP event for TCP");
        assert_eq!(ct.counters().refused_invalid, 5);
        assert!(ct.is_empty());

        // Mid-stream pickup: ESTABLISHED, not assured, short timeout, until
        // the other side answers.
        let hit = open(&mut ct, NewConnection::new(k), L4Event::Tcp(ACK), T0);
        let c = ct.get(hit.id).unwrap();
        assert_eq!((c.state, c.assured), (ConnState::TcpEstablished, false));
        assert_eq!(c.expires_ns, T0 + 300 * S);
        forwarded(packet(&mut ct, &k.reversed(), L4Event::Tcp(ACK), T0 + S));
        let c = ct.get(hit.id).unwrap();
        assert!(c.assured);
        assert_eq!(c.expires_ns, T0 + S + 86_400 * S);

        let mut strict = Conntrack::new(&ConntrackConfig {
            capacity_v4: 64,
            tcp_loose: false,
            ..ConntrackConfig::default()
        });
        let r = strict.create(
            &NewConnection::new(k),
            strict.hash(&k),
            L4Event::Tcp(ACK),
            60,
            T0,
        );
        assert_eq!(r.unwrap_err(), Refused::Invalid);

        // Keys of mixed families or protocols, and self-replies.
        let mut bad = NewConnection::new(client(7));
        bad.reply.family = Family::V6;
        assert_eq!(
            ct.create(&bad, ct.hash(&bad.original), L4Event::Tcp(SYN), 1, T0),
            Err(Refused::Invalid)
        );
        let own = ConnKey::v4(0, UDP, 5, 5, 9, 9);
        assert_eq!(
            ct.create(&NewConnection::new(own), ct.hash(&own), L4Event::Udp, 1, T0),
            Err(Refused::Invalid)
        );
    }

    #[test]
    fn udp_is_assured_on_reply() {
        let mut ct = table(64);
        let k = ConnKey::v4(0, UDP, ip4(10, 0, 0, 1), ip4(10, 96, 0, 53), 33_333, 53);
        let new = NewConnection::new(k).dnat(ip4(10, 244, 0, 53) as u128, 53, 2);
        let hit = open(&mut ct, new, L4Event::Udp, T0);
        let c = ct.get(hit.id).unwrap();
        assert_eq!((c.state, c.assured), (ConnState::UdpUnreplied, false));
        assert_eq!(c.expires_ns, T0 + 30 * S);
        // More queries refresh but do not assure.
        forwarded(packet(&mut ct, &k, L4Event::Udp, T0 + 20 * S));
        assert!(ct.lookup(&k, T0 + 49 * S).is_some());
        let f = forwarded(packet(&mut ct, &new.reply, L4Event::Udp, T0 + 21 * S));
        assert_eq!(f.state, ConnState::UdpReplied);
        let c = ct.get(hit.id).unwrap();
        assert!(c.assured && c.seen_reply);
        assert_eq!(c.expires_ns, T0 + 141 * S);
        assert!(ct.lookup(&k, T0 + 141 * S - 1).is_some());
        assert!(ct.lookup(&k, T0 + 141 * S).is_none());
    }

    #[test]
    fn sctp_lifecycle() {
        use sctp_chunks::*;
        let mut ct = table(64);
        let k = ConnKey::v4(0, ip_proto::SCTP, 1, 2, 3868, 3868);
        let new = NewConnection::new(k);
        let ev = L4Event::Sctp;
        assert_eq!(
            ct.create(&new, ct.hash(&k), ev(OTHER), 1, T0),
            Err(Refused::Invalid)
        );
        let hit = open(&mut ct, new, ev(INIT), T0);
        let (o, r) = (new.original, new.reply);
        let st = |ct: &mut Conntrack, key: &ConnKey, chunks: u16| {
            forwarded(packet(ct, key, ev(chunks), T0)).state
        };
        assert_eq!(ct.get(hit.id).unwrap().state, ConnState::SctpCookieWait);
        assert_eq!(st(&mut ct, &r, INIT_ACK), ConnState::SctpCookieWait);
        assert_eq!(
            st(&mut ct, &o, COOKIE_ECHO | OTHER),
            ConnState::SctpCookieEchoed
        );
        assert_eq!(st(&mut ct, &r, COOKIE_ACK), ConnState::SctpEstablished);
        let c = ct.get(hit.id).unwrap();
        assert!(c.assured);
        assert_eq!(c.expires_ns, T0 + 210 * S);
        assert_eq!(st(&mut ct, &o, OTHER), ConnState::SctpEstablished);
        assert_eq!(st(&mut ct, &r, SHUTDOWN), ConnState::SctpShutdownRecd);
        assert_eq!(
            st(&mut ct, &o, SHUTDOWN_ACK),
            ConnState::SctpShutdownAckSent
        );
        assert_eq!(st(&mut ct, &r, SHUTDOWN_COMPLETE), ConnState::SctpClosed);
        assert_eq!(ct.get(hit.id).unwrap().expires_ns, T0 + 10 * S);
        assert_eq!(packet(&mut ct, &o, ev(INIT), T0), Some(Verdict::Reopen));
        assert_eq!(packet(&mut ct, &o, ev(0), T0), None);
        // ABORT closes from anywhere.
        let hit = open(&mut ct, new, ev(INIT), T0);
        assert_eq!(st(&mut ct, &r, ABORT), ConnState::SctpClosed);
        assert_eq!(packet(&mut ct, &o, ev(0), T0), Some(Verdict::Invalid));
        assert!(ct.get(hit.id).is_some());
        assert_eq!(of_type(chunk_type::COOKIE_ECHO), COOKIE_ECHO);
        assert_eq!(of_type(chunk_type::DATA), OTHER);
    }

    #[test]
    fn icmp_echo_by_identifier() {
        let mut ct = table(64);
        let k = ConnKey::v4(
            0,
            ip_proto::ICMP,
            ip4(10, 0, 0, 1),
            ip4(8, 8, 8, 8),
            0x1234,
            0,
        );
        let meta = PacketMeta {
            family: 4,
            proto: ip_proto::ICMP,
            src: k.src,
            dst: k.dst,
            sport: 0x1234,
            dport: 8, // the echo-request type, as parse leaves it
            ..PacketMeta::default()
        };
        assert_eq!(ConnKey::from_meta(&meta), Some(k));
        assert_eq!(k.reversed().sport, 0x1234, "the identifier stays put");
        let new = NewConnection::new(k).snat(ip4(192, 168, 0, 1) as u128, 0x9999);
        assert_eq!(
            new.reply,
            ConnKey::v4(
                0,
                ip_proto::ICMP,
                ip4(8, 8, 8, 8),
                ip4(192, 168, 0, 1),
                0x9999,
                0
            )
        );
        let reply_first = L4Event::IcmpEcho { reply: true };
        assert_eq!(
            ct.create(&new, ct.hash(&k), reply_first, 84, T0),
            Err(Refused::Invalid)
        );
        let hit = open(&mut ct, new, L4Event::IcmpEcho { reply: false }, T0);
        let f = forwarded(packet(&mut ct, &new.reply, reply_first, T0 + S));
        assert_eq!((f.id, f.state), (hit.id, ConnState::IcmpReplied));
        assert_eq!(
            f.rewrite,
            Some(FlowTuple {
                src: k.dst,
                dst: k.src,
                sport: 0x1234,
                dport: 0
            }),
            "the reply goes back with the client's identifier"
        );
        assert!(!ct.get(hit.id).unwrap().assured, "ICMP is never assured");
        assert!(ct.lookup(&k, T0 + 31 * S - 1).is_some());
        assert!(ct.lookup(&k, T0 + 31 * S).is_none());
        // Another identifier is another flow.
        assert!(ct.lookup(&ConnKey { sport: 1, ..k }, T0).is_none());
    }

    #[test]
    fn other_protocols() {
        let mut ct = table(64);
        let gre = ConnKey::v4(0, ip_proto::GRE, 1, 2, 0, 0);
        let hit = open(&mut ct, NewConnection::new(gre), L4Event::Other, T0);
        assert_eq!(ct.get(hit.id).unwrap().expires_ns, T0 + 600 * S);
        let f = forwarded(packet(&mut ct, &gre.reversed(), L4Event::Other, T0));
        assert_eq!(f.state, ConnState::OtherReplied);
        assert!(ct.get(hit.id).unwrap().assured);
    }

    #[test]
    fn expiry_and_the_incremental_sweep() {
        let mut ct = table(1024);
        let memory = ct.memory_bytes();
        for i in 0..600 {
            let k = ConnKey::v4(0, UDP, i, 1, 1000, 53);
            open(
                &mut ct,
                NewConnection::new(k),
                L4Event::Udp,
                T0 + (i as u64 % 10) * S,
            );
        }
        // Keep one alive with a reply.
        let keep = ConnKey::v4(0, UDP, 7, 1, 1000, 53);
        forwarded(packet(&mut ct, &keep.reversed(), L4Event::Udp, T0 + 20 * S));
        let later = T0 + 45 * S;
        assert!(ct
            .lookup(&ConnKey::v4(0, UDP, 3, 1, 1000, 53), later)
            .is_none());
        assert!(ct.lookup(&keep, later).is_some());
        assert_eq!(ct.len(), 600, "nothing reclaimed yet");
        assert_eq!(ct.connections(later).count(), 1);
        // A budget bounds each sweep; repeated sweeps get everything.
        assert!(ct.expire(later, 100) <= 100);
        let mut rounds = 1;
        while ct.len() > 1 {
            ct.expire(later, 100);
            rounds += 1;
            assert!(rounds < 20);
        }
        assert_eq!(ct.counters().expired, 599);
        assert!(ct.lookup(&keep, later).is_some());
        assert!(ct.lookup(&keep.reversed(), later).is_some());
        assert_eq!(ct.memory_bytes(), memory);
        assert_eq!(ct.expire(later, 100), 0);
    }

    #[test]
    fn expired_keys_are_reclaimed_by_inserts() {
        let mut ct = table(64);
        let k = ConnKey::v4(0, UDP, 1, 2, 3, 4);
        open(&mut ct, NewConnection::new(k), L4Event::Udp, T0);
        // Same original key after expiry: the stale entry gives way.
        let hit = open(&mut ct, NewConnection::new(k), L4Event::Udp, T0 + 30 * S);
        assert_eq!(ct.len(), 1);
        assert_eq!(ct.counters().expired, 1);
        assert_eq!(ct.get(hit.id).unwrap().last_seen_ns, T0 + 30 * S);
        // A live key is refused, and the caller learns where it is.
        let r = ct.create(
            &NewConnection::new(k),
            ct.hash(&k),
            L4Event::Udp,
            1,
            T0 + 31 * S,
        );
        assert_eq!(r, Err(Refused::Exists(hit)));
        // A reply tuple held by another live connection is refused.
        let other = ConnKey::v4(0, UDP, 9, 2, 3, 4);
        let clash = NewConnection::new(other).snat(1, 3);
        assert_eq!(clash.reply, k.reversed());
        let r = ct.create(&clash, ct.hash(&other), L4Event::Udp, 1, T0 + 31 * S);
        assert_eq!(r, Err(Refused::ReplyInUse));
        assert_eq!(ct.counters().refused(), 2);
        // Once that connection has expired its reply tuple is free.
        let r = ct.create(&clash, ct.hash(&other), L4Event::Udp, 1, T0 + 61 * S);
        assert!(r.is_ok());
        assert_eq!(ct.len(), 1);
    }

    /// A SYN from a random source to the service.
    fn syn(rng: &mut u64) -> NewConnection {
        let r = splitmix(rng);
        NewConnection::new(ConnKey::v4(
            0,
            TCP,
            r as u32,
            ip4(10, 96, 0, 1),
            (r >> 32) as u16,
            443,
        ))
    }

    #[test]
    fn a_new_flow_evicts_the_oldest_unreplied_syn() {
        let mut ct = table(64);
        let mut rng = 1;
        let mut first = Vec::new();
        while ct.len() < 64 {
            let new = syn(&mut rng);
            let h = ct.hash(&new.original);
            if ct
                .create(&new, h, L4Event::Tcp(SYN), 60, T0 + ct.len() as u64)
                .is_ok()
            {
                first.push(new.original);
            }
        }
        let legit = NewConnection::new(client(77));
        // The candidates: connections referenced from the new keys' buckets.
        let mut candidates = HashSet::new();
        for k in [legit.original, legit.reply] {
            let (b1, b2, _) = ct.v4.locate(ct.hash(&k));
            for b in [b1, b2] {
                let bucket = &ct.v4.buckets[b];
                for s in 0..SLOTS {
                    if bucket.tags[s] != 0 {
                        candidates.insert(bucket.refs[s] >> 1);
                    }
                }
            }
        }
        let oldest = candidates
            .iter()
            .map(|&i| ct.get(ConnId::new(Family::V4, i)).unwrap())
            .min_by_key(|c| c.last_seen_ns)
            .unwrap();
        open(&mut ct, legit, L4Event::Tcp(SYN), T0 + S);
        assert_eq!(ct.len(), 64);
        assert_eq!(ct.counters().evicted_unassured, 1);
        assert_eq!(ct.counters().refused(), 0);
        assert!(ct.lookup(&legit.original, T0 + S).is_some());
        let gone: Vec<_> = first
            .iter()
            .filter(|k| ct.lookup(k, T0 + S).is_none())
            .collect();
        assert_eq!(gone, [&oldest.original], "the oldest candidate went");
    }

    #[test]
    fn assured_connections_survive_a_syn_flood() {
        let capacity = 1024;
        let mut ct = table(capacity);
        let memory = ct.memory_bytes();
        let mut good = Vec::new();
        for i in 0..capacity as u32 / 2 {
            let new = NewConnection::new(ConnKey::v4(
                0,
                TCP,
                ip4(10, 2, 0, 0) + i,
                ip4(10, 96, 0, 1),
                1000,
                443,
            ))
            .dnat(ip4(10, 244, 0, 1) as u128, 8443, 1);
            established(&mut ct, new, T0);
            good.push(new);
        }
        let mut rng = 2;
        let mut now = T0 + S;
        for _ in 0..10 * capacity {
            let new = syn(&mut rng);
            let h = ct.hash(&new.original);
            let _ = ct.create(&new, h, L4Event::Tcp(SYN), 60, now);
            now += 1_000;
            assert!(ct.len() <= 2 * capacity);
        }
        for new in &good {
            assert!(ct.lookup(&new.original, now).is_some());
            assert!(ct.lookup(&new.reply, now).is_some());
        }
        let c = *ct.counters();
        assert_eq!(c.evicted_assured + c.evicted_closing, 0);
        assert!(c.evicted_unassured > 0);
        assert_eq!(ct.capacity(Family::V4), capacity);
        assert!(ct.v4.live as usize <= capacity);
        assert_eq!(ct.memory_bytes(), memory, "no growth");
        // While the flood is on, a legitimate client still gets in.
        let legit = NewConnection::new(client(12345));
        open(&mut ct, legit, L4Event::Tcp(SYN), now);
        println!("flood: {c:?}");
    }

    #[test]
    fn full_of_assured_refuses_unless_configured() {
        for evict_assured in [false, true] {
            let mut ct = Conntrack::new(&ConntrackConfig {
                capacity_v4: 64,
                evict_assured,
                ..ConntrackConfig::default()
            });
            let mut i = 0;
            while ct.len() < 64 {
                i += 1;
                let new = NewConnection::new(client(i));
                let h = ct.hash(&new.original);
                if ct
                    .create(&new, h, L4Event::Tcp(SYN), 1, T0 + i as u64)
                    .is_ok()
                {
                    forwarded(packet(
                        &mut ct,
                        &new.reply,
                        L4Event::Tcp(SYN | ACK),
                        T0 + i as u64,
                    ));
                    forwarded(packet(
                        &mut ct,
                        &new.original,
                        L4Event::Tcp(ACK),
                        T0 + i as u64,
                    ));
                }
            }
            let new = NewConnection::new(client(5000));
            let r = ct.create(&new, ct.hash(&new.original), L4Event::Tcp(SYN), 1, T0 + S);
            if evict_assured {
                assert!(r.is_ok());
                assert_eq!(ct.counters().evicted_assured, 1);
            } else {
                assert_eq!(r.unwrap_err(), Refused::Full);
                assert_eq!(ct.counters().refused_full, 1);
                assert_eq!(ct.counters().evicted(), 0);
            }
            assert_eq!(ct.len(), 64);
        }
    }

    #[test]
    fn closing_connections_go_before_assured_ones() {
        let mut ct = table(64);
        let mut i = 0;
        let mut closing = Vec::new();
        while ct.len() < 64 {
            i += 1;
            let new = NewConnection::new(client(i));
            let h = ct.hash(&new.original);
            if ct.create(&new, h, L4Event::Tcp(SYN), 1, T0).is_ok() {
                forwarded(packet(&mut ct, &new.reply, L4Event::Tcp(SYN | ACK), T0));
                forwarded(packet(&mut ct, &new.original, L4Event::Tcp(ACK), T0));
                if i % 2 == 0 {
                    forwarded(packet(&mut ct, &new.original, L4Event::Tcp(FIN | ACK), T0));
                    closing.push(new.original);
                }
            }
        }
        let new = NewConnection::new(client(9999));
        open(&mut ct, new, L4Event::Tcp(SYN), T0 + S);
        assert_eq!(ct.counters().evicted_closing, 1);
        assert_eq!(
            closing
                .iter()
                .filter(|k| ct.lookup(k, T0 + S).is_none())
                .count(),
            1
        );
    }

    #[test]
    fn a_full_index_window_moves_keys_before_evicting() {
        // Many keys into few buckets: displacement keeps inserts going at
        // full capacity without eviction.
        let mut ct = table(1 << 12);
        for i in 0..1u32 << 12 {
            let k = ConnKey::v4(0, UDP, i, 1, 2, 3);
            open(&mut ct, NewConnection::new(k), L4Event::Udp, T0);
        }
        assert_eq!(ct.len(), 1 << 12);
        assert_eq!(ct.counters().evicted() + ct.counters().refused(), 0);
        for i in 0..1u32 << 12 {
            let k = ConnKey::v4(0, UDP, i, 1, 2, 3);
            assert!(ct.lookup(&k, T0).is_some());
            assert!(ct.lookup(&k.reversed(), T0).is_some());
        }
        println!("displaced {}", ct.counters().displaced);
    }

    #[test]
    fn remove_and_list() {
        let mut ct = table(64);
        let a = open(
            &mut ct,
            NewConnection::new(client(1)),
            L4Event::Tcp(SYN),
            T0,
        );
        let b = ConnKey::v6(0, UDP, 1, 2, 3, 4);
        let hb = open(&mut ct, NewConnection::new(b), L4Event::Udp, T0);
        let listed: Vec<_> = ct.connections(T0).map(|c| c.id).collect();
        assert_eq!(listed, [a.id, hb.id]);
        assert!(ct.remove(a.id));
        assert!(!ct.remove(a.id));
        assert!(ct.lookup(&client(1), T0).is_none());
        assert!(ct.lookup(&client(1).reversed(), T0).is_none());
        assert_eq!(ct.counters().removed, 1);
        assert_eq!(ct.len(), 1);
        // A removed entry's handle observes nothing.
        assert_eq!(ct.observe(a, L4Event::Tcp(ACK), 1, T0), Verdict::Invalid);
        assert!(ct.get(a.id).is_none());
    }

    #[test]
    fn burst_lookup_matches_single_lookups() {
        let mut ct = table(1024);
        let keys: Vec<ConnKey> = (0..64u32)
            .map(|i| ConnKey::v4(0, TCP, i, 2, 3, 4))
            .chain((0..32u128).map(|i| ConnKey::v6(0, TCP, i << 64, 2, 3, 4)))
            .collect();
        for k in keys.iter().step_by(2) {
            open(&mut ct, NewConnection::new(*k), L4Event::Tcp(SYN), T0);
        }
        let probe: Vec<ConnKey> = keys.iter().flat_map(|k| [*k, k.reversed()]).collect();
        let hashes: Vec<u64> = probe.iter().map(|k| ct.hash(k)).collect();
        let mut out = vec![None; probe.len()];
        ct.lookup_burst(&probe, &hashes, T0, &mut out);
        for (i, k) in probe.iter().enumerate() {
            assert_eq!(out[i], ct.lookup(k, T0), "{k:?}");
        }
        assert_eq!(out.iter().filter(|o| o.is_some()).count(), keys.len());
    }

    // -- NAT port choice and workers ------------------------------------

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    /// The frame a reply with this tuple is, on the wire.
    fn frame(k: &ConnKey) -> Vec<u8> {
        let b = PacketBuilder::new(MAC, MAC);
        let b = match k.family {
            Family::V4 => b.ipv4(Ipv4Addr::from(k.src as u32), Ipv4Addr::from(k.dst as u32)),
            Family::V6 => b.ipv6(Ipv6Addr::from(k.src), Ipv6Addr::from(k.dst)),
        };
        match k.proto {
            ip_proto::UDP => b.udp(k.sport, k.dport),
            ip_proto::ICMP => b.echo_request(k.sport, 1),
            _ => b.tcp(k.sport, k.dport, SYN | ACK),
        }
        .build()
    }

    /// The queue the NIC picks for a key, from its frame.
    fn nic_queue(k: &ConnKey, rss: &Toeplitz, reta: &Reta) -> u16 {
        reta.queue(rss.hash_frame(&frame(k)).unwrap())
    }

    #[test]
    fn rss_queue_agrees_with_the_nic() {
        let reta = Reta::round_robin(4);
        for rss in [Toeplitz::symmetric(), Toeplitz::microsoft()] {
            let mut rng = 3;
            for i in 0..400 {
                let r = splitmix(&mut rng);
                let k = match i % 3 {
                    0 => ConnKey::v4(
                        0,
                        TCP,
                        r as u32,
                        (r >> 32) as u32,
                        r as u16,
                        (r >> 16) as u16,
                    ),
                    1 => ConnKey::v6(0, UDP, r as u128 * 77, !r as u128, (r >> 8) as u16, 53),
                    _ => ConnKey::v4(0, ip_proto::ICMP, r as u32, 7, (r >> 40) as u16, 0),
                };
                assert_eq!(
                    rss_queue(&k, &rss, &reta),
                    nic_queue(&k, &rss, &reta),
                    "{k:?}"
                );
            }
        }
    }

    #[test]
    fn nat_ports_steer_replies_to_the_wanted_queue() {
        let reta = Reta::round_robin(4);
        for rss in [Toeplitz::symmetric(), Toeplitz::microsoft()] {
            let mut ct = table(1 << 14);
            let templates = [
                ConnKey::v4(0, TCP, ip4(10, 244, 3, 7), ip4(192, 168, 0, 1), 8080, 0),
                ConnKey::v4(0, UDP, ip4(8, 8, 8, 8), ip4(192, 168, 0, 1), 53, 0),
                ConnKey::v6(0, TCP, ip6("2001:db8:44::9"), ip6("2001:db8::fe"), 443, 0),
            ];
            for tpl in templates {
                let mut used = HashSet::new();
                for n in 0..400u32 {
                    let want = (n % 4) as u16;
                    let port = ct.choose_port(&tpl, want, &rss, &reta, T0).expect("a port");
                    let reply = ConnKey { dport: port, ..tpl };
                    assert_eq!(rss_queue(&reply, &rss, &reta), want);
                    assert_eq!(nic_queue(&reply, &rss, &reta), want, "as the NIC sees it");
                    assert!(used.insert(port), "port {port} chosen twice");
                    // Track it, so the port is taken.
                    let orig = ConnKey {
                        src: tpl.dst ^ (0x100 + n as u128),
                        dst: tpl.src,
                        sport: 1000 + n as u16,
                        dport: tpl.sport,
                        ..tpl
                    };
                    let new = NewConnection::new(orig).snat(tpl.dst, port);
                    assert_eq!(new.reply, reply);
                    open(&mut ct, new, L4Event::Udp.into_for(tpl.proto), T0);
                }
            }
            assert_eq!(ct.counters().nat_port_exhausted, 0);
        }
    }

    impl L4Event {
        /// A first packet of protocol `proto`.
        fn into_for(self, proto: u8) -> L4Event {
            match proto {
                ip_proto::TCP => L4Event::Tcp(SYN),
                ip_proto::UDP => L4Event::Udp,
                _ => self,
            }
        }
    }

    #[test]
    fn nat_ports_run_out_and_say_so() {
        let reta = Reta::round_robin(4);
        let rss = Toeplitz::symmetric();
        let mut ct = Conntrack::new(&ConntrackConfig {
            capacity_v4: 1024,
            nat_ports: (20_100, 20_000), // reversed bounds are accepted
            ..ConntrackConfig::default()
        });
        let tpl = ConnKey::v4(0, UDP, ip4(10, 244, 0, 9), ip4(192, 168, 0, 1), 53, 0);
        let steering_to_1 = (20_000..=20_100)
            .filter(|&p| rss_queue(&ConnKey { dport: p, ..tpl }, &rss, &reta) == 1)
            .count();
        assert!(steering_to_1 > 0);
        let mut got = 0;
        while let Some(port) = ct.choose_port(&tpl, 1, &rss, &reta, T0) {
            assert!((20_000..=20_100).contains(&port));
            let orig = ConnKey::v4(0, UDP, ip4(10, 0, 0, 1), ip4(10, 96, 0, 10), port, 53);
            open(
                &mut ct,
                NewConnection::new(orig)
                    .dnat(tpl.src, 53, 1)
                    .snat(tpl.dst, port),
                L4Event::Udp,
                T0,
            );
            got += 1;
            assert!(got <= steering_to_1);
        }
        assert_eq!(
            got, steering_to_1,
            "every port that steers to the queue, once"
        );
        assert_eq!(ct.counters().nat_port_exhausted, 1);
        // When the connections expire their ports come back.
        assert!(ct.choose_port(&tpl, 1, &rss, &reta, T0 + 30 * S).is_some());
    }

    #[test]
    fn icmp_identifiers_do_not_steer() {
        let reta = Reta::round_robin(4);
        let rss = Toeplitz::symmetric();
        let mut ct = table(64);
        let tpl = ConnKey::v4(
            0,
            ip_proto::ICMP,
            ip4(8, 8, 8, 8),
            ip4(192, 168, 0, 1),
            0,
            0,
        );
        let q = rss_queue(&tpl, &rss, &reta);
        let id = ct.choose_port(&tpl, q, &rss, &reta, T0).unwrap();
        assert_eq!(rss_queue(&ConnKey { sport: id, ..tpl }, &rss, &reta), q);
        assert_eq!(ct.choose_port(&tpl, (q + 1) % 4, &rss, &reta, T0), None);
    }

    /// The multi-worker rule: four workers, each owning the connections
    /// that RSS gives its queue. Every reply — untranslated, or source
    /// NATed with a port from `choose_port` — arrives on the queue of the
    /// worker holding its connection, and no two workers pick one reply
    /// tuple.
    #[test]
    fn replies_reach_the_worker_that_owns_the_connection() {
        const WORKERS: u16 = 4;
        let reta = Reta::round_robin(WORKERS);
        let rss = Toeplitz::symmetric();
        let node = ip4(192, 168, 0, 1) as u128;
        let mut workers: Vec<Conntrack> = (0..WORKERS)
            .map(|w| {
                Conntrack::new(&ConntrackConfig {
                    capacity_v4: 4096,
                    capacity_v6: 1024,
                    seed: 100 + w as u64,
                    ..ConntrackConfig::default()
                })
            })
            .collect();
        let mut rng = 4;
        let mut replies = HashSet::new();
        let mut per_worker = [0usize; WORKERS as usize];
        for i in 0..3000u32 {
            let r = splitmix(&mut rng);
            let v6 = i % 5 == 0;
            let orig = if v6 {
                ConnKey::v6(
                    0,
                    TCP,
                    ip6("2001:db8:1::") + (r as u16) as u128,
                    ip6("fd00::10"),
                    (r >> 16) as u16,
                    443,
                )
            } else {
                ConnKey::v4(
                    0,
                    TCP,
                    ip4(10, 1, 0, 0) + (r as u32 & 0xffff),
                    ip4(10, 96, 0, 10),
                    (r >> 16) as u16,
                    80,
                )
            };
            // The original packet lands where the NIC sends it.
            let w = nic_queue(&orig, &rss, &reta);
            let ct = &mut workers[w as usize];
            let new = match i % 3 {
                // A routed, untranslated flow.
                0 => NewConnection::new(orig),
                // Egress masquerade: source NAT only.
                1 => {
                    let tpl = ConnKey {
                        dst: if v6 { ip6("2001:db8::fe") } else { node },
                        ..orig.reversed()
                    };
                    let port = ct.choose_port(&tpl, w, &rss, &reta, T0).unwrap();
                    NewConnection::new(orig).snat(tpl.dst, port)
                }
                // A service: DNAT to an endpoint, SNAT to the node.
                _ => {
                    let (ep, snat) = if v6 {
                        (ip6("2001:db8:44::9"), ip6("2001:db8::fe"))
                    } else {
                        (ip4(10, 244, 2, 9) as u128, node)
                    };
                    let dnat = NewConnection::new(orig).dnat(ep, 8080, 9);
                    let tpl = ConnKey {
                        dport: 0,
                        ..dnat.reply
                    };
                    let tpl = ConnKey { dst: snat, ..tpl };
                    let port = ct.choose_port(&tpl, w, &rss, &reta, T0).unwrap();
                    dnat.snat(snat, port)
                }
            };
            let h = ct.hash(&orig);
            match ct.create(&new, h, L4Event::Tcp(SYN), 60, T0) {
                Ok(_) => {}
                // A random client tuple repeated: it is the same connection.
                Err(Refused::Exists(_)) => continue,
                Err(e) => panic!("{e:?}"),
            }
            per_worker[w as usize] += 1;
            assert!(
                replies.insert(new.reply),
                "reply tuple {:?} taken twice",
                new.reply
            );
            // The reply, as a frame, reaches worker `w` and only it knows it.
            let q = nic_queue(&new.reply, &rss, &reta);
            assert_eq!(q, w, "{new:?}");
            for (other, ct) in workers.iter_mut().enumerate() {
                let hit = packet(ct, &new.reply, L4Event::Tcp(SYN | ACK), T0);
                if other == w as usize {
                    assert_eq!(forwarded(hit).dir, Direction::Reply);
                } else {
                    assert_eq!(hit, None);
                }
            }
        }
        assert!(per_worker.iter().all(|&n| n > 400), "{per_worker:?}");
        // Without the symmetric key an untranslated reply may land elsewhere:
        // the symmetric key is what keeps those flows together.
        let ms = Toeplitz::microsoft();
        let moved = (0..200u32)
            .map(|i| {
                ConnKey::v4(
                    0,
                    TCP,
                    ip4(10, 1, 0, 0) + i,
                    ip4(10, 96, 0, 10),
                    1000 + i as u16,
                    80,
                )
            })
            .filter(|k| nic_queue(k, &ms, &reta) != nic_queue(&k.reversed(), &ms, &reta))
            .count();
        assert!(moved > 0);
        assert_eq!(RETA_SIZE % WORKERS as usize, 0);
    }

    // -- Properties -----------------------------------------------------

    #[derive(Debug, Clone)]
    enum Op {
        Create {
            key: usize,
            nat: u8,
            event: u8,
        },
        Packet {
            key: usize,
            reply: bool,
            event: u8,
            flags: u8,
        },
        Advance(u64),
        Expire(usize),
        Remove(usize),
        ChoosePort(usize, u16),
    }

    /// Operations; time steps up to `max_step` ns.
    fn op(max_step: u64) -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..1024usize, any::<u8>(), any::<u8>()).prop_map(|(key, nat, event)| Op::Create { key, nat, event }),
            6 => (0..1024usize, any::<bool>(), any::<u8>(), any::<u8>())
                .prop_map(|(key, reply, event, flags)| Op::Packet { key, reply, event, flags }),
            1 => (0..max_step).prop_map(Op::Advance),
            1 => (0..64usize).prop_map(Op::Expire),
            1 => (0..1024usize).prop_map(Op::Remove),
            1 => (0..1024usize, 0..4u16).prop_map(|(k, q)| Op::ChoosePort(k, q)),
        ]
    }

    /// A small universe of keys over every protocol and both families, so
    /// that operations collide.
    fn universe(protos: &[u8], n: u32) -> Vec<ConnKey> {
        (0..n)
            .map(|i| {
                let proto = protos[i as usize % protos.len()];
                if i % 4 == 3 {
                    ConnKey::v6(
                        i as u16 % 2,
                        proto,
                        (i % 5) as u128,
                        1 << 100,
                        (i / 5) as u16,
                        7,
                    )
                } else {
                    ConnKey::v4(i as u16 % 2, proto, i % 5, 9, (i / 5) as u16, 7)
                }
            })
            .collect()
    }

    fn event(proto: u8, e: u8, flags: u8) -> L4Event {
        match e % 8 {
            0 | 1 => match proto {
                ip_proto::TCP => L4Event::Tcp(flags),
                ip_proto::UDP => L4Event::Udp,
                ip_proto::SCTP => L4Event::Sctp(flags as u16 | (e as u16) << 8),
                p if is_icmp(p) => L4Event::IcmpEcho {
                    reply: flags & 1 == 1,
                },
                _ => L4Event::Other,
            },
            2 => L4Event::Tcp(flags),
            3 => L4Event::Tcp([SYN, ACK, SYN | ACK, FIN | ACK, RST][flags as usize % 5]),
            4 => L4Event::Udp,
            5 => L4Event::Sctp(flags as u16),
            6 => L4Event::IcmpEcho {
                reply: flags & 1 == 0,
            },
            _ => L4Event::Other,
        }
    }

    /// Mostly a first packet that opens a connection of `proto`, sometimes
    /// anything.
    fn first_event(proto: u8, e: u8, flags: u8) -> L4Event {
        match (e % 4, proto) {
            (0, _) => event(proto, e >> 2, flags),
            (_, ip_proto::TCP) => L4Event::Tcp(if flags & 1 == 0 { SYN } else { ACK }),
            (_, ip_proto::UDP) => L4Event::Udp,
            (_, ip_proto::SCTP) => L4Event::Sctp(sctp_chunks::INIT | flags as u16),
            (_, p) if is_icmp(p) => L4Event::IcmpEcho { reply: false },
            _ => L4Event::Other,
        }
    }

    fn translated(k: &ConnKey, nat: u8) -> NewConnection {
        let new = NewConnection::new(*k);
        match nat % 4 {
            0 => new,
            1 => new.dnat(k.dst ^ 0x40, 8080, nat as u32),
            2 => new.snat(k.src ^ 0x80, 1000 + (nat as u16 >> 2) % 4),
            _ => new
                .dnat(3, 9, 1)
                .snat(4, (nat as u16) % 3)
                .reply_network(k.network ^ 1),
        }
    }

    /// Every live connection is indexed under both keys, and each key
    /// leads back to it.
    fn check_invariants(ct: &Conntrack, now: u64) {
        assert!(ct.v4.live as usize <= ct.capacity(Family::V4));
        assert!(ct.v6.live as usize <= ct.capacity(Family::V6));
        let mut stored = 0;
        for fam in [Family::V4, Family::V6] {
            let fresh = if fam == Family::V4 {
                ct.v4.fresh
            } else {
                ct.v6.fresh
            };
            for i in 0..fresh {
                let Some(c) = ct.get(ConnId::new(fam, i)) else {
                    continue;
                };
                stored += 1;
                let live = c.expires_ns > now;
                for (key, dir) in [
                    (c.original, Direction::Original),
                    (c.reply, Direction::Reply),
                ] {
                    let found = ct.lookup(&key, now);
                    if live {
                        assert_eq!(found, Some(Hit { id: c.id, dir }), "{c:?}");
                    } else {
                        assert_eq!(found, None);
                    }
                }
            }
        }
        assert_eq!(stored, ct.len());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random operations on a tiny table never panic, never grow it and
        /// keep every stored connection reachable under both keys.
        #[test]
        fn random_operations_never_panic(ops in proptest::collection::vec(op(10 * S), 1..600), evict_assured: bool, seed: u64, slow_clock: bool) {
            let keys = universe(&[TCP, UDP, ip_proto::SCTP, ip_proto::ICMP, ip_proto::ICMPV6, ip_proto::GRE], 200);
            let mut ct = Conntrack::new(&ConntrackConfig {
                capacity_v4: 0,
                capacity_v6: 0,
                evict_assured,
                seed,
                nat_ports: (1000, 1003),
                nat_port_attempts: 3,
                ..ConntrackConfig::default()
            });
            let memory = ct.memory_bytes();
            let (rss, reta) = (Toeplitz::symmetric(), Reta::round_robin(4));
            let mut now = T0;
            for op in ops {
                match op {
                    Op::Create { key, nat, event: e } => {
                        let k = &keys[key % keys.len()];
                        let new = translated(k, nat);
                        let _ = ct.create(&new, ct.hash(k), first_event(k.proto, e, nat), 40, now);
                    }
                    Op::Packet { key, reply, event: e, flags } => {
                        let k = if reply { keys[key % keys.len()].reversed() } else { keys[key % keys.len()] };
                        let _ = packet(&mut ct, &k, event(k.proto, e, flags), now);
                    }
                    Op::Advance(ns) => now += if slow_clock { ns / 64 } else { ns },
                    Op::Expire(budget) => { ct.expire(now, budget); }
                    Op::Remove(key) => {
                        if let Some(hit) = ct.lookup(&keys[key % keys.len()], now) {
                            prop_assert!(ct.remove(hit.id));
                        }
                    }
                    Op::ChoosePort(key, q) => {
                        if let Some(p) = ct.choose_port(&keys[key % keys.len()], q, &rss, &reta, now) {
                            prop_assert!((1000..=1003).contains(&p));
                        }
                    }
                }
                check_invariants(&ct, now);
                prop_assert_eq!(ct.memory_bytes(), memory);
            }
        }

        /// UDP connections against a HashMap model: every lookup agrees,
        /// except for connections the table says it evicted.
        #[test]
        fn lookups_agree_with_a_model(ops in proptest::collection::vec(op(S / 2), 1..800), seed: u64, small: bool) {
            #[derive(Debug)]
            struct Model {
                original: ConnKey,
                last_seen: u64,
                replied: bool,
            }
            // The small table is outgrown (evictions); the large one never is.
            let keys = universe(&[UDP], if small { 200 } else { 48 });
            let capacity = if small { 64 } else { 256 };
            let mut ct = Conntrack::new(&ConntrackConfig {
                capacity_v4: capacity,
                capacity_v6: capacity,
                seed,
                ..ConntrackConfig::default()
            });
            let mut conns: HashMap<usize, Model> = HashMap::new();
            let mut index: HashMap<ConnKey, (usize, Direction)> = HashMap::new();
            let mut next = 0;
            let mut now = T0;
            let mut unexplained_misses = 0;
            let expired = |m: &Model, now: u64| {
                now - m.last_seen >= if m.replied { 120 * S } else { 30 * S }
            };
            let live = |conns: &HashMap<usize, Model>, index: &HashMap<ConnKey, (usize, Direction)>, k: &ConnKey, now: u64| {
                index.get(k).copied().filter(|(c, _)| !expired(&conns[c], now))
            };
            let forget = |conns: &mut HashMap<usize, Model>, index: &mut HashMap<ConnKey, (usize, Direction)>, c: usize| {
                conns.remove(&c);
                index.retain(|_, (x, _)| *x != c);
            };
            for op in ops {
                match op {
                    Op::Create { key, nat, .. } => {
                        let new = translated(&keys[key % keys.len()], nat);
                        let want = if let Some((c, d)) = live(&conns, &index, &new.original, now) {
                            Some(Err((c, d)))
                        } else if live(&conns, &index, &new.reply, now).is_some() {
                            Some(Ok(()))
                        } else {
                            None
                        };
                        let got = ct.create(&new, ct.hash(&new.original), L4Event::Udp, 1, now);
                        match (want, got) {
                            (Some(Err((c, d))), Err(Refused::Exists(hit))) => {
                                prop_assert_eq!(hit.dir, d);
                                prop_assert_eq!(ct.get(hit.id).unwrap().original, conns[&c].original);
                            }
                            (Some(Ok(())), Err(Refused::ReplyInUse)) => {}
                            (None, Ok(_)) => {
                                for k in [new.original, new.reply] {
                                    if let Some((c, _)) = index.get(&k).copied() {
                                        forget(&mut conns, &mut index, c);
                                    }
                                }
                                conns.insert(next, Model { original: new.original, last_seen: now, replied: false });
                                index.insert(new.original, (next, Direction::Original));
                                index.insert(new.reply, (next, Direction::Reply));
                                next += 1;
                            }
                            (None, Err(Refused::Full)) => {}
                            (want, got) => prop_assert!(false, "model {want:?}, table {got:?}"),
                        }
                    }
                    Op::Packet { key, reply, .. } => {
                        let k = if reply { keys[key % keys.len()].reversed() } else { keys[key % keys.len()] };
                        let v = packet(&mut ct, &k, L4Event::Udp, now);
                        if let Some((c, d)) = live(&conns, &index, &k, now) {
                            if v.is_some() {
                                let m = conns.get_mut(&c).unwrap();
                                m.last_seen = now;
                                m.replied |= d == Direction::Reply;
                            }
                        }
                    }
                    Op::Advance(ns) => now += ns,
                    Op::Expire(budget) => { ct.expire(now, budget); }
                    Op::Remove(key) => {
                        if let Some(hit) = ct.lookup(&keys[key % keys.len()], now) {
                            ct.remove(hit.id);
                        }
                        if let Some((c, _)) = live(&conns, &index, &keys[key % keys.len()], now) {
                            forget(&mut conns, &mut index, c);
                        }
                    }
                    Op::ChoosePort(..) => {}
                }
                // Every key of the universe, both ways.
                for k in keys.iter().flat_map(|k| [*k, k.reversed()]) {
                    let real = ct.lookup(&k, now);
                    match (live(&conns, &index, &k, now), real) {
                        (Some((c, d)), Some(hit)) => {
                            prop_assert_eq!(hit.dir, d);
                            prop_assert_eq!(ct.get(hit.id).unwrap().original, conns[&c].original);
                        }
                        (None, None) => {}
                        (Some((c, _)), None) => {
                            // Only an eviction explains a missing connection.
                            unexplained_misses += 1;
                            prop_assert!(unexplained_misses as u64 <= ct.counters().evicted(),
                                "{k:?} lost without an eviction");
                            forget(&mut conns, &mut index, c);
                        }
                        (None, Some(hit)) => prop_assert!(false, "phantom {k:?} -> {hit:?}"),
                    }
                }
            }
            if !small {
                prop_assert_eq!(ct.counters().evicted(), 0);
            }
        }
    }
}
