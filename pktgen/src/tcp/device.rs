//! The wire under smoltcp: a port's queues, split into one smoltcp
//! `Device` per shard, with static neighbours and retransmit counting.
//!
//! [`Io`] owns a port's receive and transmit queues, the generator's pool
//! cache and a transmit batch. The run loop receives bursts itself and
//! hands each frame to the shard that owns its connection (see
//! `tcp::demux`); a shard's [`ShardDevice`] then gives smoltcp those frames
//! and takes its transmissions: each `TxToken` takes a buffer from the pool
//! cache, lets smoltcp write the frame into it, and queues it in the
//! batch, which goes out a burst at a time.
//!
//! Neighbours are static. Every shard's interface has the private link
//! addresses [`LINK_ADDR`] and [`LINK_ADDR6`] with default routes via
//! [`LINK_GATEWAY`] and [`LINK_GATEWAY6`]; the gateway's MAC is the side's
//! configured next hop. smoltcp learns it from an ARP reply or an IPv6
//! neighbour advertisement this module makes up ([`gateway_reply`]) and
//! puts in the shard's receive queue at start, and whenever smoltcp asks
//! again (its cache entries last a minute) the request or solicitation
//! never reaches the wire: the token turns it into the answer in place and
//! loops it back. So nothing for the gateway is ever sent, and nothing on
//! the wire carries a link address. ARP requests and neighbour
//! solicitations from the wire for the generator's own addresses are
//! answered by the run loop ([`arp_answer`], [`na_answer`]).
//!
//! Retransmits: smoltcp keeps no count, so each shard's [`SeqTracker`]
//! remembers per connection the initial sequence number and the highest
//! sequence number sent, and counts a segment that starts below it.
//!
//! Nothing here allocates per packet, except the tracker's table when a
//! shard holds more connections than ever before.

use sluice_dataplane::buf::{Batch, Packet, PoolCache, BURST_SIZE};
use sluice_dataplane::io::{RxQueue, TxQueue};
use sluice_dataplane::wire::checksum;
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The address every shard interface holds (never on the wire).
pub const LINK_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 1);
/// The default gateway of every shard interface; its MAC is the side's
/// next hop.
pub const LINK_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 2);
/// Prefix length of the link network.
pub const LINK_PREFIX: u8 = 30;
/// The IPv6 link address and gateway (a unique-local /126, never on the
/// wire).
pub const LINK_ADDR6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1);
pub const LINK_GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2);
pub const LINK_PREFIX6: u8 = 126;

/// Largest frame (Ethernet header included, no FCS).
pub const MAX_FRAME: usize = 1514;

/// Packet counts of one port, as the generator sees them.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct IoCounters {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Frames the port refused or the pool could not hold.
    pub tx_dropped: u64,
    /// Frames for addresses or ports the generator does not serve.
    pub rx_not_ours: u64,
    /// Frames too short or otherwise not parseable.
    pub rx_malformed: u64,
    /// ARP requests and neighbour solicitations from the wire answered
    /// for the generator's addresses.
    pub arp_answered: u64,
    /// Gratuitous ARP or unsolicited neighbour advertisements sent at start.
    pub arp_announced: u64,
    /// SYNs again for a connection the server side already has (the
    /// client sent its SYN again): dropped, because smoltcp would give
    /// them to a listening socket and open a second connection on the same
    /// addresses and ports; the connection's own socket sends its SYN-ACK
    /// again on its timer.
    pub rx_duplicate_syn: u64,
}

/// One port's queues and the buffers that move through them.
pub struct Io {
    rx: Box<dyn RxQueue>,
    tx: Box<dyn TxQueue>,
    pub cache: PoolCache,
    out: Batch,
    /// Where smoltcp writes when the pool is empty (the frame is lost,
    /// as on a full NIC ring; TCP sends it again).
    scratch: Box<[u8; MAX_FRAME]>,
    pub counters: IoCounters,
}

impl Io {
    pub fn new(rx: Box<dyn RxQueue>, tx: Box<dyn TxQueue>, cache: PoolCache) -> Io {
        Io {
            rx,
            tx,
            cache,
            out: Batch::new(),
            scratch: Box::new([0; MAX_FRAME]),
            counters: IoCounters::default(),
        }
    }

    /// Receives one burst into `batch`; returns how many.
    #[inline]
    pub fn receive(&mut self, batch: &mut Batch) -> usize {
        let n = self.rx.rx_burst(&mut self.cache, batch);
        self.counters.rx_packets += n as u64;
        for p in batch.iter() {
            self.counters.rx_bytes += p.len() as u64;
        }
        n
    }

    /// Queues a frame; a full batch goes out.
    #[inline]
    pub fn send(&mut self, pkt: Packet) {
        self.counters.tx_packets += 1;
        self.counters.tx_bytes += pkt.len() as u64;
        self.out.push(pkt);
        if self.out.is_full() {
            self.flush();
        }
    }

    /// Transmits the batch. What the port refuses is lost (counted), as a
    /// full descriptor ring loses it: TCP retransmits.
    pub fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        self.tx.tx_burst(&mut self.out, &mut self.cache);
        if !self.out.is_empty() {
            self.counters.tx_dropped += self.out.len() as u64;
            self.counters.tx_packets -= self.out.len() as u64;
            for p in self.out.drain(..) {
                self.counters.tx_bytes -= p.len() as u64;
                self.cache.free(p);
            }
        }
        self.tx.flush();
    }

    /// Makes a frame with `fill` and sends it (ARP answers, announcements).
    pub fn send_frame(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> bool {
        let Some(mut pkt) = self.cache.alloc() else {
            self.counters.tx_dropped += 1;
            return false;
        };
        let Some(buf) = pkt.reset(len) else {
            self.cache.free(pkt);
            return false;
        };
        fill(buf);
        self.send(pkt);
        true
    }
}

/// Which end of the connections a shard holds: decides which address and
/// port of a segment name the connection in the [`SeqTracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// An address of either family: IPv4 in the low 32 bits (one run uses one
/// family, so the two never meet).
pub type Addr = u128;

/// A TCP segment's fields the generator looks at (IPv4 or IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub flags: u8,
    /// Sequence space the segment takes: payload, plus one each for SYN
    /// and FIN.
    pub seq_len: u32,
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

/// What a received frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    Tcp(Segment),
    /// An ARP request: (sender MAC, sender IP, target IP).
    ArpRequest([u8; 6], u32, u32),
    /// An IPv6 neighbour solicitation with the sender's link-layer
    /// address: (sender MAC, sender IP, target IP).
    NeighbourSolicit([u8; 6], u128, u128),
    /// Anything else the generator does not handle (ARP replies, UDP,
    /// IPv6 extension headers, VLAN-tagged frames...).
    Other,
    /// Too short for its own headers.
    Malformed,
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
fn be128(b: &[u8], at: usize) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    u128::from_be_bytes(a)
}

/// The fields of a TCP header at `l4` with `len` bytes of segment.
#[inline]
fn segment(f: &[u8], l4: usize, len: usize, src: Addr, dst: Addr) -> Frame {
    if len < 20 {
        return Frame::Malformed;
    }
    let doff = (f[l4 + 12] >> 4) as usize * 4;
    if doff < 20 || doff > len {
        return Frame::Malformed;
    }
    let flags = f[l4 + 13];
    let payload = (len - doff) as u32;
    Frame::Tcp(Segment {
        src,
        dst,
        sport: be16(f, l4),
        dport: be16(f, l4 + 2),
        seq: be32(f, l4 + 4),
        flags,
        seq_len: payload + (flags & SYN != 0) as u32 + (flags & FIN != 0) as u32,
    })
}

/// Classifies a frame with bounds checks only (smoltcp checks the
/// checksums of what it is given).
pub fn classify(f: &[u8]) -> Frame {
    if f.len() < 14 {
        return Frame::Malformed;
    }
    match be16(f, 12) {
        0x0800 => {
            if f.len() < 34 {
                return Frame::Malformed;
            }
            let ihl = (f[14] & 0x0f) as usize * 4;
            let total = be16(f, 16) as usize;
            if f[14] >> 4 != 4 || ihl < 20 || total < ihl || 14 + total > f.len() {
                return Frame::Malformed;
            }
            if f[23] != 6 {
                return Frame::Other;
            }
            // Fragments carry no ports the generator could match.
            if be16(f, 20) & 0x3fff != 0 {
                return Frame::Other;
            }
            segment(
                f,
                14 + ihl,
                total - ihl,
                be32(f, 26) as Addr,
                be32(f, 30) as Addr,
            )
        }
        0x86dd => {
            if f.len() < 54 {
                return Frame::Malformed;
            }
            let len = be16(f, 18) as usize;
            if f[14] >> 4 != 6 || 54 + len > f.len() {
                return Frame::Malformed;
            }
            let (src, dst) = (be128(f, 22), be128(f, 38));
            match f[20] {
                6 => segment(f, 54, len, src, dst),
                // A neighbour solicitation (RFC 4861 4.3) from a neighbour
                // that says its link-layer address.
                58 if len >= 24 && f[54] == 135 && f[54 + 1] == 0 && f[21] == 255 => {
                    let mut at = 54 + 24;
                    while at + 8 <= 54 + len {
                        let olen = f[at + 1] as usize * 8;
                        if olen == 0 || at + olen > 54 + len {
                            return Frame::Malformed;
                        }
                        if f[at] == 1 && olen == 8 {
                            let mut mac = [0u8; 6];
                            mac.copy_from_slice(&f[at + 2..at + 8]);
                            return Frame::NeighbourSolicit(mac, src, be128(f, 54 + 8));
                        }
                        at += olen;
                    }
                    Frame::Other
                }
                _ => Frame::Other,
            }
        }
        0x0806 => {
            if f.len() < 42 {
                return Frame::Malformed;
            }
            // Ethernet/IPv4 requests only.
            if be16(f, 14) != 1 || be16(f, 16) != 0x0800 || f[18] != 6 || f[19] != 4 {
                return Frame::Other;
            }
            if be16(f, 20) != 1 {
                return Frame::Other;
            }
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&f[22..28]);
            Frame::ArpRequest(mac, be32(f, 28), be32(f, 38))
        }
        _ => Frame::Other,
    }
}

/// Writes an ARP frame (42 bytes).
pub fn write_arp(
    f: &mut [u8],
    eth_dst: [u8; 6],
    op: u16,
    sha: [u8; 6],
    spa: u32,
    tha: [u8; 6],
    tpa: u32,
) {
    f[0..6].copy_from_slice(&eth_dst);
    f[6..12].copy_from_slice(&sha);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes());
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes());
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&op.to_be_bytes());
    f[22..28].copy_from_slice(&sha);
    f[28..32].copy_from_slice(&spa.to_be_bytes());
    f[32..38].copy_from_slice(&tha);
    f[38..42].copy_from_slice(&tpa.to_be_bytes());
}

/// Length of a neighbour advertisement with a target link-layer address
/// option, Ethernet header included.
pub const NA_LEN: usize = 86;

/// Writes an IPv6 neighbour advertisement (RFC 4861 4.4, [`NA_LEN`]
/// bytes): `mac` has `target`; from `src` to `dst` (link layer: `mac` to
/// `eth_dst`), with the solicited and override flags as given.
#[allow(clippy::too_many_arguments)]
pub fn write_na(
    f: &mut [u8],
    eth_dst: [u8; 6],
    mac: [u8; 6],
    src: u128,
    dst: u128,
    target: u128,
    solicited: bool,
) {
    f[0..6].copy_from_slice(&eth_dst);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let ip = &mut f[14..54];
    ip[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
    ip[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip[6] = 58;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&src.to_be_bytes());
    ip[24..40].copy_from_slice(&dst.to_be_bytes());
    let icmp = &mut f[54..NA_LEN];
    icmp[0] = 136;
    icmp[1] = 0;
    icmp[2..4].fill(0);
    // Override, and solicited when answering.
    icmp[4] = 0x20 | if solicited { 0x40 } else { 0 };
    icmp[5..8].fill(0);
    icmp[8..24].copy_from_slice(&target.to_be_bytes());
    icmp[24] = 2; // target link-layer address
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&mac);
    let pseudo = checksum::pseudo_header_v6(src.to_be_bytes(), dst.to_be_bytes(), 58, 32);
    let c = !checksum::fold(checksum::sum(icmp, pseudo));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
}

/// The reply to an ARP request from the wire: `mac` has `target`.
pub fn arp_answer(io: &mut Io, mac: [u8; 6], asker_mac: [u8; 6], asker: u32, target: u32) {
    if io.send_frame(42, |f| {
        write_arp(f, asker_mac, 2, mac, target, asker_mac, asker)
    }) {
        io.counters.arp_answered += 1;
    }
}

/// The advertisement answering a neighbour solicitation from the wire:
/// `mac` has `target`.
pub fn na_answer(io: &mut Io, mac: [u8; 6], asker_mac: [u8; 6], asker: u128, target: u128) {
    if io.send_frame(NA_LEN, |f| {
        write_na(f, asker_mac, mac, target, asker, target, true)
    }) {
        io.counters.arp_answered += 1;
    }
}

/// Tells the link that `mac` has `addr`, so a router learns the
/// generator's addresses before traffic needs them: a gratuitous ARP
/// request, or for IPv6 an unsolicited neighbour advertisement to all
/// nodes.
pub fn announce(io: &mut Io, mac: [u8; 6], addr: Addr, v6: bool) {
    let sent = if v6 {
        let all_nodes = u128::from(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1));
        io.send_frame(NA_LEN, |f| {
            write_na(
                f,
                [0x33, 0x33, 0, 0, 0, 1],
                mac,
                addr,
                all_nodes,
                addr,
                false,
            )
        })
    } else {
        let a = addr as u32;
        io.send_frame(42, |f| write_arp(f, [0xff; 6], 1, mac, a, [0; 6], a))
    };
    if sent {
        io.counters.arp_announced += 1;
    }
}

/// The made-up answer that tells a shard interface (MAC `own`) where its
/// gateway is (`gateway_mac`): an ARP reply, or a neighbour advertisement
/// for the IPv6 gateway. Returns the frame's length.
pub fn gateway_reply(f: &mut [u8], own: [u8; 6], gateway_mac: [u8; 6], v6: bool) -> usize {
    if v6 {
        let gw = u128::from(LINK_GATEWAY6);
        write_na(f, own, gateway_mac, gw, u128::from(LINK_ADDR6), gw, true);
        NA_LEN
    } else {
        write_arp(
            f,
            own,
            2,
            gateway_mac,
            u32::from(LINK_GATEWAY),
            own,
            u32::from(LINK_ADDR),
        );
        42
    }
}

/// A shard's answer for its gateway, in a fresh buffer.
pub fn gateway_reply_packet(
    cache: &mut PoolCache,
    own: [u8; 6],
    gateway_mac: [u8; 6],
    v6: bool,
) -> Option<Packet> {
    let mut p = cache.alloc()?;
    let len = if v6 { NA_LEN } else { 42 };
    match p.reset(len) {
        Some(f) => {
            gateway_reply(f, own, gateway_mac, v6);
            Some(p)
        }
        None => {
            cache.free(p);
            None
        }
    }
}

/// A connection in a [`SeqTracker`]: (client address, client port and
/// server port).
pub type FlowKey = (Addr, u32);

/// Per connection: the initial sequence number and one past the highest
/// sequence number sent. Keyed by (client address, client port, server
/// port).
pub struct SeqTracker {
    role: Role,
    flows: hashbrown::HashMap<FlowKey, (u32, u32)>,
    pub retransmits: u64,
}

#[inline]
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl SeqTracker {
    pub fn new(role: Role, capacity: usize) -> SeqTracker {
        SeqTracker {
            role,
            flows: hashbrown::HashMap::with_capacity(capacity),
            retransmits: 0,
        }
    }

    /// The key of a connection from its client and server ends.
    #[inline]
    pub fn key(client: Addr, client_port: u16, server_port: u16) -> FlowKey {
        (client, (client_port as u32) << 16 | server_port as u32)
    }

    #[inline]
    fn key_of(&self, s: &Segment) -> FlowKey {
        match self.role {
            Role::Client => Self::key(s.src, s.sport, s.dport),
            Role::Server => Self::key(s.dst, s.dport, s.sport),
        }
    }

    /// Looks at a transmitted segment.
    #[inline]
    pub fn sent(&mut self, s: &Segment) {
        let key = self.key_of(s);
        if s.flags & RST != 0 {
            self.flows.remove(&key);
            return;
        }
        if s.seq_len == 0 {
            return; // a pure ACK takes no sequence space
        }
        let end = s.seq.wrapping_add(s.seq_len);
        if s.flags & SYN != 0 {
            match self.flows.get_mut(&key) {
                Some((isn, high)) if *isn == s.seq => {
                    self.retransmits += 1;
                    if seq_lt(*high, end) {
                        *high = end;
                    }
                }
                // A new connection on the same addresses and ports.
                _ => {
                    self.flows.insert(key, (s.seq, end));
                }
            }
            return;
        }
        if let Some((_, high)) = self.flows.get_mut(&key) {
            if seq_lt(s.seq, *high) {
                self.retransmits += 1;
            }
            if seq_lt(*high, end) {
                *high = end;
            }
        }
    }

    /// Whether a connection is known (its first segment has gone out and
    /// its slot not yet freed).
    #[inline]
    pub fn knows(&self, key: FlowKey) -> bool {
        self.flows.contains_key(&key)
    }

    /// Forgets a connection.
    pub fn forget(&mut self, key: FlowKey) {
        self.flows.remove(&key);
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

/// A shard's view of the port, lent to smoltcp for one poll.
pub struct ShardDevice<'a> {
    pub io: &'a mut Io,
    /// Frames the run loop gave this shard.
    pub rx: &'a mut VecDeque<Packet>,
    /// Frames smoltcp has read, freed after the poll.
    pub spent: &'a mut Vec<Packet>,
    pub tracker: &'a mut SeqTracker,
    /// The interface's MAC and its gateway's (the next hop).
    pub own_mac: [u8; 6],
    pub gateway_mac: [u8; 6],
}

pub struct ShardRx<'a> {
    pkt: Packet,
    spent: &'a mut Vec<Packet>,
}

pub struct ShardTx<'a> {
    io: &'a mut Io,
    rx: &'a mut VecDeque<Packet>,
    tracker: &'a mut SeqTracker,
    own_mac: [u8; 6],
    gateway_mac: [u8; 6],
}

impl phy::RxToken for ShardRx<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let r = f(self.pkt.data());
        self.spent.push(self.pkt);
        r
    }
}

impl phy::TxToken for ShardTx<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let Some(mut pkt) = self.io.cache.alloc() else {
            self.io.counters.tx_dropped += 1;
            return f(&mut self.io.scratch[..len.min(MAX_FRAME)]);
        };
        let Some(buf) = pkt.reset(len) else {
            // Longer than a buffer: smoltcp was told the MTU, so never.
            self.io.cache.free(pkt);
            self.io.counters.tx_dropped += 1;
            return f(&mut self.io.scratch[..len.min(MAX_FRAME)]);
        };
        let r = f(buf);
        let gateway = match classify(pkt.data()) {
            Frame::Tcp(seg) => {
                self.tracker.sent(&seg);
                None
            }
            Frame::ArpRequest(_, _, target) if target == u32::from(LINK_GATEWAY) => Some(false),
            Frame::NeighbourSolicit(_, _, target) if target == u128::from(LINK_GATEWAY6) => {
                Some(true)
            }
            _ => None,
        };
        if let Some(v6) = gateway {
            // Answered here: the gateway is static.
            let len = if v6 { NA_LEN } else { 42 };
            if let Some(f) = pkt.reset(len) {
                gateway_reply(f, self.own_mac, self.gateway_mac, v6);
                self.rx.push_back(pkt);
            } else {
                self.io.cache.free(pkt);
            }
            return r;
        }
        self.io.send(pkt);
        r
    }
}

impl phy::Device for ShardDevice<'_> {
    type RxToken<'a>
        = ShardRx<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = ShardTx<'a>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(ShardRx<'_>, ShardTx<'_>)> {
        let pkt = self.rx.pop_front()?;
        Some((
            ShardRx {
                pkt,
                spent: self.spent,
            },
            ShardTx {
                io: self.io,
                rx: self.rx,
                tracker: self.tracker,
                own_mac: self.own_mac,
                gateway_mac: self.gateway_mac,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<ShardTx<'_>> {
        Some(ShardTx {
            io: self.io,
            rx: self.rx,
            tracker: self.tracker,
            own_mac: self.own_mac,
            gateway_mac: self.gateway_mac,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        capabilities()
    }
}

/// Ethernet, a 1500-byte MTU, checksums computed and verified in software,
/// and a burst's worth of frames per poll.
pub fn capabilities() -> DeviceCapabilities {
    let mut caps = DeviceCapabilities::default();
    caps.medium = Medium::Ethernet;
    caps.max_transmission_unit = MAX_FRAME;
    caps.max_burst_size = Some(BURST_SIZE);
    let mut cs = ChecksumCapabilities::default();
    cs.ipv4 = Checksum::Both;
    cs.tcp = Checksum::Both;
    cs.icmpv6 = Checksum::Both;
    caps.checksum = cs;
    caps
}

/// A device with nothing in it, to build interfaces with.
pub struct NullDevice;

impl phy::Device for NullDevice {
    type RxToken<'a> = ShardRx<'a>;
    type TxToken<'a> = ShardTx<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(ShardRx<'_>, ShardTx<'_>)> {
        None
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<ShardTx<'_>> {
        None
    }

    fn capabilities(&self) -> DeviceCapabilities {
        capabilities()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_dataplane::wire::builder::{tcp_flags, PacketBuilder};

    fn seg(seq: u32, flags: u8, payload: usize) -> Segment {
        let f = PacketBuilder::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 1, 0, 1))
            .tcp(1000, 80, flags)
            .payload(&vec![0u8; payload])
            .build();
        let Frame::Tcp(mut s) = classify(&f) else {
            panic!("a TCP frame")
        };
        s.seq = seq;
        s
    }

    #[test]
    fn classifies_tcp_and_arp_and_refuses_short_frames() {
        let s = seg(5, tcp_flags::SYN, 0);
        assert_eq!((s.sport, s.dport, s.seq_len), (1000, 80, 1));
        assert_eq!(s.src, u32::from(Ipv4Addr::new(10, 0, 0, 1)) as Addr);
        assert_eq!(seg(5, tcp_flags::ACK | tcp_flags::FIN, 10).seq_len, 11);
        let mut arp = [0u8; 42];
        write_arp(&mut arp, [0xff; 6], 1, [2, 0, 0, 0, 0, 9], 7, [0; 6], 9);
        assert_eq!(classify(&arp), Frame::ArpRequest([2, 0, 0, 0, 0, 9], 7, 9));
        assert_eq!(classify(&arp[..30]), Frame::Malformed);
        let f = PacketBuilder::new([2; 6], [3; 6])
            .ipv4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 1, 0, 1))
            .tcp(1, 2, tcp_flags::ACK)
            .build();
        for cut in [13, 20, 33, 40, 53] {
            assert_eq!(classify(&f[..cut]), Frame::Malformed, "cut at {cut}");
        }
    }

    #[test]
    fn neighbour_discovery_frames_are_what_smoltcp_reads_and_writes() {
        use smoltcp::wire::{
            EthernetAddress, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv6Packet, Ipv6Repr,
            NdiscNeighborFlags, NdiscRepr, RawHardwareAddress,
        };
        let asker: Ipv6Addr = "fd00::7".parse().unwrap();
        let target: Ipv6Addr = "fd00::1:2".parse().unwrap();
        let mac = [2, 0, 0, 0, 0, 7];
        // A solicitation as smoltcp sends it is recognised.
        let ns = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
            target_addr: target,
            lladdr: Some(RawHardwareAddress::from(EthernetAddress(mac))),
        });
        let ip = Ipv6Repr {
            src_addr: asker,
            dst_addr: "ff02::1:ff01:2".parse().unwrap(),
            next_header: IpProtocol::Icmpv6,
            payload_len: ns.buffer_len(),
            hop_limit: 255,
        };
        let mut f = vec![0u8; 14 + 40 + ns.buffer_len()];
        f[0..6].copy_from_slice(&[0x33, 0x33, 0xff, 0x01, 0, 2]);
        f[6..12].copy_from_slice(&mac);
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        ip.emit(&mut Ipv6Packet::new_unchecked(&mut f[14..54]));
        ns.emit(
            &ip.src_addr,
            &ip.dst_addr,
            &mut Icmpv6Packet::new_unchecked(&mut f[54..]),
            &ChecksumCapabilities::default(),
        );
        assert_eq!(
            classify(&f),
            Frame::NeighbourSolicit(mac, u128::from(asker), u128::from(target))
        );
        // A hop limit below 255 is not a neighbour's (RFC 4861 7.1.1).
        f[14 + 7] = 64;
        assert_eq!(classify(&f), Frame::Other);
        assert_eq!(classify(&f[..60]), Frame::Malformed);

        // The advertisement parses, verifies and says what it should.
        let mut na = [0u8; NA_LEN];
        let own = [2, 0, 0, 0, 0, 9];
        write_na(
            &mut na,
            mac,
            own,
            target.into(),
            asker.into(),
            target.into(),
            true,
        );
        let ipp = Ipv6Packet::new_checked(&na[14..]).unwrap();
        let ipr = Ipv6Repr::parse(&ipp).unwrap();
        assert_eq!(
            (ipr.src_addr, ipr.dst_addr, ipr.hop_limit),
            (target, asker, 255)
        );
        let icmp = Icmpv6Packet::new_checked(ipp.payload()).unwrap();
        assert!(icmp.verify_checksum(&ipr.src_addr, &ipr.dst_addr));
        match Icmpv6Repr::parse(
            &ipr.src_addr,
            &ipr.dst_addr,
            &icmp,
            &ChecksumCapabilities::default(),
        )
        .unwrap()
        {
            Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
                flags,
                target_addr,
                lladdr,
            }) => {
                assert_eq!(target_addr, target);
                assert!(
                    flags.contains(NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE)
                );
                assert_eq!(lladdr, Some(RawHardwareAddress::from(EthernetAddress(own))));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn counts_retransmits_not_new_data() {
        let mut t = SeqTracker::new(Role::Client, 4);
        t.sent(&seg(100, tcp_flags::SYN, 0));
        t.sent(&seg(100, tcp_flags::SYN, 0)); // SYN again
        assert_eq!(t.retransmits, 1);
        t.sent(&seg(101, tcp_flags::ACK, 10));
        t.sent(&seg(111, tcp_flags::ACK, 10));
        t.sent(&seg(121, tcp_flags::ACK, 0)); // pure ACK
        assert_eq!(t.retransmits, 1);
        t.sent(&seg(111, tcp_flags::ACK, 10)); // the second segment again
        assert_eq!(t.retransmits, 2);
        // A new connection on the same ports: another ISN, not a retransmit.
        t.sent(&seg(7, tcp_flags::SYN, 0));
        assert_eq!(t.retransmits, 2);
        t.sent(&seg(8, tcp_flags::RST, 0));
        assert!(t.is_empty());
    }
}
