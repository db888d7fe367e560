//! Stateful TCP: many concurrent connections with smoltcp as the stack on
//! both ends, request/response traffic, opened at a rate with a cap on
//! how many are open at once. How Services, conntrack and policy get
//! tested with real handshakes, retransmissions and closes, without the
//! kernel. See `docs/pktgen.md` ("Stateful TCP").
//!
//! The pieces:
//!
//! - [`device`]: a port's queues as smoltcp devices, static neighbours,
//!   retransmit counting;
//! - [`shard`]: one smoltcp interface and a few sockets, polled only when
//!   it has work;
//! - [`client`] and [`server`]: the two ends' connection slots and what
//!   they do between a poll's ingress and egress;
//! - [`dut`]: Sluice's Service pipeline in this process, between a client
//!   port and a server port;
//! - here: the configuration, the run loop and the report.
//!
//! One thread runs everything: each pass receives bursts from every port
//! and hands each frame to the shard that owns its connection, opens the
//! connections the rate allows, polls the shards that are due (smoltcp's
//! ingress, the application step: receive, send, close; smoltcp's egress),
//! and sends the transmit batches. One address family a run: IPv4 or
//! IPv6.

pub mod client;
pub mod device;
pub mod dut;
pub mod server;
pub mod shard;

use crate::clock::Clock;
use crate::link::LinkConfig;
use crate::measure::{LatencyHistogram, LatencyReport};
use crate::ports::PortSpec;
use client::{ClientCounts, ClientSide};
use device::{
    announce, arp_answer, classify, na_answer, Addr, Frame, Io, IoCounters, SeqTracker, ACK, SYN,
};
use serde::Serialize;
use server::{ServerCounts, ServerSide};
use sluice_dataplane::buf::{Batch, Packet, PacketPool, BURST_SIZE};
use sluice_dataplane::io::Port;
use smoltcp::wire::IpAddress;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

pub(crate) type Histogram = LatencyHistogram;

/// Bursts received per pass of the run loop before the shards are
/// polled: the more frames a shard gets per poll, the fewer walks of its
/// sockets per frame.
const RX_BURSTS: usize = 64;

/// What requests and responses are made of.
pub(crate) static PATTERN: [u8; 16 * 1024] = [b's'; 16 * 1024];

/// A stateful TCP run.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpConfig {
    /// Client addresses: a contiguous range, all of one family (the
    /// run's: targets and listeners are of the same).
    pub clients: Vec<IpAddr>,
    /// Client ports, first and last.
    pub client_ports: (u16, u16),
    /// Where clients connect, in turn.
    pub targets: Vec<SocketAddr>,
    /// Where the server side listens.
    pub listeners: Vec<SocketAddr>,
    /// New connections per second (None: as fast as slots free up).
    pub cps: Option<f64>,
    /// Connections open at most at once.
    pub concurrent: usize,
    /// Request and response sizes (bytes of TCP payload).
    pub request: usize,
    pub response: usize,
    /// Request/response exchanges per connection (1: close after the
    /// first; more: keep-alive).
    pub requests_per_connection: u32,
    /// Open connections for this long...
    pub seconds: Option<f64>,
    /// ...or this many, whichever comes first.
    pub count: Option<u64>,
    /// A connection not done this long after it was opened is aborted and
    /// counted failed.
    pub timeout_ns: u64,
    /// After the last connection is opened, wait this long at most for the
    /// open ones to finish.
    pub drain_ns: u64,
    pub client_mac: [u8; 6],
    /// Where the client side sends every frame (its gateway's MAC).
    pub client_next_hop: [u8; 6],
    pub server_mac: [u8; 6],
    pub server_next_hop: [u8; 6],
    /// Connections per shard (per smoltcp interface).
    pub shard_size: usize,
    /// Packet buffers in the generator's pool.
    pub pool_size: u32,
    /// Announce every address at start (gratuitous ARP, or an unsolicited
    /// neighbour advertisement).
    pub announce: bool,
    pub seed: u64,
    pub report_every_ns: u64,
}

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xc0, 0x01];
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xc0, 0x02];

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            clients: (0..100)
                .map(|i| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 100)) + i)))
                .collect(),
            client_ports: (1024, 65535),
            targets: vec![SocketAddr::new(Ipv4Addr::new(10, 1, 0, 1).into(), 80)],
            listeners: vec![SocketAddr::new(Ipv4Addr::new(10, 1, 0, 1).into(), 80)],
            cps: None,
            concurrent: 100,
            request: 100,
            response: 1000,
            requests_per_connection: 1,
            seconds: Some(5.0),
            count: None,
            timeout_ns: 10_000_000_000,
            drain_ns: 12_000_000_000,
            client_mac: CLIENT_MAC,
            client_next_hop: SERVER_MAC,
            server_mac: SERVER_MAC,
            server_next_hop: CLIENT_MAC,
            shard_size: 8,
            pool_size: 32 * 1024,
            announce: true,
            seed: 0x5eed_7c90,
            report_every_ns: 1_000_000_000,
        }
    }
}

/// An address as the generator keys it: IPv4 in the low 32 bits.
#[inline]
pub(crate) fn addr(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(a) => u32::from(a) as Addr,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The smoltcp address of a generator address of the run's family.
#[inline]
pub(crate) fn ip_address(a: Addr, v6: bool) -> IpAddress {
    if v6 {
        IpAddress::Ipv6(a.into())
    } else {
        IpAddress::Ipv4((a as u32).into())
    }
}

/// Parses client addresses: `10.0.0.1`, `10.0.0.1-10.0.0.99`,
/// `10.0.0.0/24` (the hosts of the prefix), or the same in IPv6
/// (`fd00::1-fd00::ff`, `fd00::/120`: a prefix's addresses but its first,
/// the subnet-router anycast address).
pub fn parse_addr_range(s: &str) -> Result<Vec<IpAddr>, String> {
    let ip = |t: &str| -> Result<IpAddr, String> {
        let t = t.trim();
        t.parse::<IpAddr>()
            .map_err(|_| format!("expected an IPv4 or IPv6 address, got {t:?}"))
    };
    let (lo, hi) = if let Some((a, b)) = s.split_once('-') {
        let (a, b) = (ip(a)?, ip(b)?);
        if a.is_ipv4() != b.is_ipv4() {
            return Err(format!("{s:?}: both ends must be of one address family"));
        }
        (a, b)
    } else if let Some((a, len)) = s.split_once('/') {
        let a = ip(a)?;
        let bits = if a.is_ipv4() { 32 } else { 128 };
        let len: u32 = len
            .parse()
            .ok()
            .filter(|l| *l <= bits)
            .ok_or_else(|| format!("expected a prefix length 0-{bits} in {s:?}"))?;
        let host = bits - len;
        if host > 20 {
            return Err(format!("{s:?}: more than 1,048,576 addresses"));
        }
        let size = 1u128 << host;
        let base = addr(a) & !(size - 1);
        let (lo, hi) = match (a, size) {
            // Without the network and broadcast addresses.
            (IpAddr::V4(_), 3..) => (base + 1, base + size - 2),
            (IpAddr::V6(_), 2..) => (base + 1, base + size - 1),
            _ => (base, base + size - 1),
        };
        let of = |x: Addr| match a {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(x as u32)),
            IpAddr::V6(_) => IpAddr::V6(x.into()),
        };
        (of(lo), of(hi))
    } else {
        let a = ip(s)?;
        (a, a)
    };
    let (l, h) = (addr(lo), addr(hi));
    if h < l {
        return Err(format!("{s:?}: the range ends before it starts"));
    }
    if h - l >= 1 << 20 {
        return Err(format!("{s:?}: more than 1,048,576 addresses"));
    }
    Ok((l..=h)
        .map(|x| match lo {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(x as u32)),
            IpAddr::V6(_) => IpAddr::V6(x.into()),
        })
        .collect())
}

/// Parses `10.1.0.1:80,10.1.0.2:80` or `[fd01::1]:80,...`.
pub fn parse_endpoints(s: &str) -> Result<Vec<SocketAddr>, String> {
    s.split(',')
        .map(|e| {
            let e = e.trim();
            e.parse::<SocketAddr>()
                .ok()
                .filter(|a| a.port() != 0)
                .ok_or_else(|| {
                    format!("expected ADDRESS:PORT or [IPv6ADDRESS]:PORT (port 1-65535), got {e:?}")
                })
        })
        .collect()
}

/// Parses `02:00:00:00:00:01`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let err = || format!("expected a MAC address like 02:00:00:00:00:01, got {s:?}");
    if parts.len() != 6 {
        return Err(err());
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        m[i] = u8::from_str_radix(p, 16).map_err(|_| err())?;
    }
    if m[0] & 1 != 0 {
        return Err(format!(
            "{s:?} is a multicast MAC address; give a unicast one"
        ));
    }
    Ok(m)
}

impl TcpConfig {
    /// Whether the run is IPv6 (its client addresses are).
    pub fn is_v6(&self) -> bool {
        self.clients.first().is_some_and(IpAddr::is_ipv6)
    }

    /// Shards per side.
    pub fn shards(&self) -> usize {
        self.concurrent.div_ceil(self.shard_size.max(1)).max(1)
    }

    /// Checks the configuration; the error names the option.
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrent == 0 {
            return Err("--concurrent: must be at least 1".into());
        }
        if self.concurrent > 1_000_000 {
            return Err(format!(
                "--concurrent: at most 1,000,000, got {}",
                self.concurrent
            ));
        }
        if self.request == 0 {
            return Err("--request: must be at least 1 byte".into());
        }
        if self.response == 0 {
            return Err("--response: must be at least 1 byte".into());
        }
        if self.requests_per_connection == 0 {
            return Err("--requests: must be at least 1".into());
        }
        if let Some(c) = self.cps {
            if !(c.is_finite() && c > 0.0) {
                return Err(format!("--cps: must be above zero, got {c}"));
            }
        }
        match (self.seconds, self.count) {
            (None, None) => return Err("give --seconds or --connections".into()),
            (Some(s), _) if !(s.is_finite() && s > 0.0) => {
                return Err(format!("--seconds: must be positive, got {s}"))
            }
            (_, Some(0)) => return Err("--connections: must be at least 1".into()),
            _ => {}
        }
        if self.clients.is_empty() {
            return Err("--clients: no addresses".into());
        }
        if self.targets.is_empty() {
            return Err("--servers: no address".into());
        }
        if self.listeners.is_empty() {
            return Err("--listen: no address".into());
        }
        if self.shard_size == 0 {
            return Err("--shard-size: must be at least 1".into());
        }
        let (lo, hi) = self.client_ports;
        if lo == 0 || hi < lo {
            return Err(format!(
                "--client-ports: expected FIRST-LAST within 1-65535, got {lo}-{hi}"
            ));
        }
        let shards = self.shards();
        let ports_per_shard = ((hi - lo) as usize + 1) / shards;
        let tuples = ports_per_shard * self.clients.len();
        let slots = self.concurrent.div_ceil(shards);
        if tuples < 4 * slots {
            return Err(format!(
                "--clients × --client-ports: {} addresses × {} ports are too few for {} concurrent connections \
                 (each of the {shards} shards needs 4 addresses and ports per connection slot so a tuple is not reused while in use)",
                self.clients.len(),
                hi as usize - lo as usize + 1,
                self.concurrent
            ));
        }
        let v6 = self.is_v6();
        if let Some(c) = self.clients.iter().find(|c| c.is_ipv6() != v6) {
            return Err(format!(
                "--clients: {c} is of another address family than {}",
                self.clients[0]
            ));
        }
        for (what, list) in [("--servers", &self.targets), ("--listen", &self.listeners)] {
            if let Some(e) = list.iter().find(|e| e.is_ipv6() != v6) {
                return Err(format!(
                    "{what}: {e} is of another address family than the clients ({})",
                    self.clients[0]
                ));
            }
        }
        let (first, last) = (
            addr(self.clients[0]),
            addr(*self.clients.last().expect("not empty")),
        );
        if last < first || (last - first) as usize + 1 != self.clients.len() {
            return Err("--clients: must be a contiguous range of addresses, in order".into());
        }
        for l in &self.listeners {
            let a = addr(l.ip());
            if a >= first && a <= last {
                return Err(format!(
                    "--listen: {l} is among the client addresses; give the server side other addresses"
                ));
            }
        }
        Ok(())
    }
}

/// The live numbers, once a second.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TcpProgress {
    pub t: f64,
    /// Connections completed per second over the last interval.
    pub cps: f64,
    pub attempted: u64,
    pub established: u64,
    pub completed: u64,
    pub failed: u64,
    /// Open now.
    pub concurrent: u64,
    pub tx_pps: f64,
    pub rx_pps: f64,
}

impl TcpProgress {
    pub fn line(&self) -> String {
        format!(
            "{:>6.1}s  {:>9.0} conn/s  open {:>6}  attempted {}  established {}  completed {}  failed {}  tx {:.3} Mpps  rx {:.3} Mpps",
            self.t,
            self.cps,
            self.concurrent,
            self.attempted,
            self.established,
            self.completed,
            self.failed,
            self.tx_pps / 1e6,
            self.rx_pps / 1e6
        )
    }
}

/// Connections one listener accepted.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ListenerReport {
    pub listener: String,
    pub accepted: u64,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TcpReport {
    /// Seconds from the first connection to the last one finishing.
    pub seconds: f64,
    pub target_cps: Option<f64>,
    /// Completed connections per second over `seconds`.
    pub cps: f64,
    pub concurrent_limit: usize,
    /// The most connections open at once.
    pub peak_concurrent: u64,
    /// Still open at the end (neither completed nor failed).
    pub unfinished: u64,
    pub request_bytes: usize,
    pub response_bytes: usize,
    pub requests_per_connection: u32,
    pub shards: usize,
    pub client: ClientCounts,
    pub server: ServerCounts,
    /// From SYN sent to the handshake seen complete.
    pub connect_latency_ns: LatencyReport,
    /// From a request's first byte written to its response's last byte read.
    pub request_latency_ns: LatencyReport,
    pub listeners: Vec<ListenerReport>,
    /// Per port the generator uses (one for a loop, two through a DUT).
    pub ports: Vec<IoCounters>,
    /// What the device under test dropped, by reason, and its
    /// connection-tracking events (empty on a loop).
    pub dut_drops: std::collections::BTreeMap<String, u64>,
    pub dut_events: std::collections::BTreeMap<String, u64>,
    pub per_second: Vec<TcpProgress>,
}

/// One port and the sides that use it.
pub struct Stack {
    pub io: Io,
    pub client: Option<ClientSide>,
    pub server: Option<ServerSide>,
    batch: Batch,
    /// The shards one pass polls.
    due: Vec<u32>,
}

impl Stack {
    pub fn new(io: Io, client: Option<ClientSide>, server: Option<ServerSide>) -> Stack {
        Stack {
            io,
            client,
            server,
            batch: Batch::new(),
            due: Vec::new(),
        }
    }

    /// Announces every address of the sides on this port.
    pub fn announce(&mut self) {
        if let Some(c) = &self.client {
            for &a in c.addrs() {
                announce(&mut self.io, c.mac, a, c.is_v6());
            }
        }
        if let Some(s) = &self.server {
            for a in s.addrs() {
                announce(&mut self.io, s.mac, a, s.is_v6());
            }
        }
        self.io.flush();
    }

    fn prime(&mut self) {
        if let Some(c) = &mut self.client {
            for s in &mut c.shards {
                s.shard.prime(&mut self.io);
            }
        }
        if let Some(s) = &mut self.server {
            for sh in &mut s.shards {
                sh.shard.prime(&mut self.io);
            }
        }
    }

    /// Receives up to [`RX_BURSTS`] bursts and hands the frames out.
    /// Returns how many.
    fn receive(&mut self) -> usize {
        let mut total = 0;
        for _ in 0..RX_BURSTS {
            let n = self.io.receive(&mut self.batch);
            total += n;
            for pkt in self.batch.drain(..) {
                demux(&mut self.io, &mut self.client, &mut self.server, pkt);
            }
            if n < BURST_SIZE {
                break;
            }
        }
        total
    }

    /// Polls the shards that are due; returns how many were.
    fn poll(&mut self, now_ns: u64) -> usize {
        let mut polled = 0;
        let due = &mut self.due;
        if let Some(c) = &mut self.client {
            c.schedule.due(now_ns, &mut c.shards, due);
            polled += due.len();
            for &si in due.iter() {
                let si = si as usize;
                c.shards[si].shard.ingress(&mut self.io, now_ns);
                c.step(si, now_ns);
                let sh = &mut c.shards[si].shard;
                sh.egress(&mut self.io, now_ns);
                sh.schedule(now_ns);
                c.schedule.polled(&mut c.shards[si].shard, si);
            }
        }
        if let Some(s) = &mut self.server {
            s.schedule.due(now_ns, &mut s.shards, due);
            polled += due.len();
            for &si in due.iter() {
                let si = si as usize;
                s.prepare(si);
                s.shards[si].shard.ingress(&mut self.io, now_ns);
                s.step(si, now_ns);
                s.arm(si, 1);
                let sh = &mut s.shards[si].shard;
                sh.egress(&mut self.io, now_ns);
                sh.schedule(now_ns);
                s.schedule.polled(&mut s.shards[si].shard, si);
            }
        }
        self.io.flush();
        polled
    }

    fn release(&mut self) {
        if let Some(c) = &mut self.client {
            c.release(&mut self.io);
        }
        if let Some(s) = &mut self.server {
            s.release(&mut self.io);
        }
        self.io.flush();
    }
}

/// Hands a received frame to the shard that owns it, answers ARP for the
/// generator's addresses, and frees (and counts) the rest.
#[inline]
fn demux(
    io: &mut Io,
    client: &mut Option<ClientSide>,
    server: &mut Option<ServerSide>,
    pkt: Packet,
) {
    match classify(pkt.data()) {
        Frame::Tcp(seg) => {
            if let Some(c) = client {
                if let Some(si) = c.shard_of(seg.dst, seg.dport) {
                    let sh = &mut c.shards[si].shard;
                    sh.rx.push_back(pkt);
                    c.schedule.wake(sh, si);
                    return;
                }
            }
            if let Some(s) = server {
                if let Some(si) = s.shard_of(seg.dst, seg.dport, seg.src, seg.sport) {
                    let sh = &mut s.shards[si].shard;
                    if seg.flags & (SYN | ACK) == SYN {
                        if sh
                            .tracker
                            .knows(SeqTracker::key(seg.src, seg.sport, seg.dport))
                        {
                            io.counters.rx_duplicate_syn += 1;
                            io.cache.free(pkt);
                            return;
                        }
                        sh.syns += 1;
                    }
                    sh.rx.push_back(pkt);
                    s.schedule.wake(sh, si);
                    return;
                }
            }
            io.counters.rx_not_ours += 1;
            io.cache.free(pkt);
        }
        Frame::ArpRequest(asker_mac, asker, target) => {
            io.cache.free(pkt);
            match owner_mac(client, server, target as Addr, false) {
                Some(m) => arp_answer(io, m, asker_mac, asker, target),
                None => io.counters.rx_not_ours += 1,
            }
        }
        Frame::NeighbourSolicit(asker_mac, asker, target) => {
            io.cache.free(pkt);
            match owner_mac(client, server, target, true) {
                Some(m) => na_answer(io, m, asker_mac, asker, target),
                None => io.counters.rx_not_ours += 1,
            }
        }
        Frame::Other => {
            io.counters.rx_not_ours += 1;
            io.cache.free(pkt);
        }
        Frame::Malformed => {
            io.counters.rx_malformed += 1;
            io.cache.free(pkt);
        }
    }
}

/// The MAC of the side that has `target` (of the family `v6` says).
fn owner_mac(
    client: &Option<ClientSide>,
    server: &Option<ServerSide>,
    target: Addr,
    v6: bool,
) -> Option<[u8; 6]> {
    client
        .as_ref()
        .filter(|c| c.is_v6() == v6 && c.owns_addr(target))
        .map(|c| c.mac)
        .or_else(|| {
            server
                .as_ref()
                .filter(|s| s.is_v6() == v6 && s.owns_addr(target))
                .map(|s| s.mac)
        })
}

fn client_of(stacks: &[Stack]) -> &ClientSide {
    stacks
        .iter()
        .find_map(|s| s.client.as_ref())
        .expect("a client side")
}

fn server_of(stacks: &[Stack]) -> Option<&ServerSide> {
    stacks.iter().find_map(|s| s.server.as_ref())
}

fn totals(stacks: &[Stack]) -> (u64, u64) {
    stacks.iter().fold((0, 0), |(t, r), s| {
        (t + s.io.counters.tx_packets, r + s.io.counters.rx_packets)
    })
}

/// Runs connections from the client side to the server side over
/// `stacks` (exactly one has a client side; the server side may be in the
/// same stack, in another, or elsewhere). `progress` is called once a
/// second.
pub fn run(
    stacks: &mut [Stack],
    cfg: &TcpConfig,
    clock: Clock,
    progress: &mut dyn FnMut(&TcpProgress),
) -> TcpReport {
    assert_eq!(
        stacks.iter().filter(|s| s.client.is_some()).count(),
        1,
        "one client side"
    );
    for st in stacks.iter_mut() {
        st.prime();
    }
    let start = clock.now_ns();
    let open_end = cfg
        .seconds
        .map_or(u64::MAX, |s| start.saturating_add((s * 1e9) as u64));
    let limit = cfg.count.unwrap_or(u64::MAX);
    // Connections the rate allows, as a bucket of at most 10 ms worth
    // (and at least a burst), so falling behind (slots all in use) is not
    // made up with a flood.
    let bucket = cfg.cps.map_or(0.0, |c| (c / 100.0).max(32.0));
    let mut tokens = 1.0f64;
    let mut last_fill = start;
    let mut closed_at: Option<u64> = None;
    let mut last_done = start;
    let mut next_report = start + cfg.report_every_ns;
    let mut last = (start, 0u64, 0u64, 0u64);
    let mut per_second = Vec::new();
    loop {
        let now = clock.now_ns();
        let (attempted, active) = {
            let c = client_of(stacks);
            (c.counts.attempted, c.active)
        };
        let opening = now < open_end && attempted < limit;
        if !opening {
            let end = *closed_at.get_or_insert(now);
            let server_active = server_of(stacks).map_or(0, |s| s.active);
            if (active == 0 && server_active == 0) || now >= end.saturating_add(cfg.drain_ns) {
                break;
            }
        }
        let mut busy = 0;
        for st in stacks.iter_mut() {
            busy += st.receive();
        }
        if opening {
            let c = stacks
                .iter_mut()
                .find_map(|s| s.client.as_mut())
                .expect("a client side");
            let mut allowed = match cfg.cps {
                Some(cps) => {
                    tokens = (tokens + (now - last_fill) as f64 * cps / 1e9).min(bucket);
                    last_fill = now;
                    tokens as u64
                }
                None => BURST_SIZE as u64,
            };
            allowed = allowed.min(limit - c.counts.attempted);
            let mut opened = 0;
            while opened < allowed && c.open(now) {
                opened += 1;
            }
            if cfg.cps.is_some() {
                tokens -= opened as f64;
            }
            busy += opened as usize;
        }
        for st in stacks.iter_mut() {
            busy += st.poll(now);
        }
        let c = client_of(stacks);
        if c.active > 0 || c.counts.attempted == 0 {
            last_done = now;
        }
        if now >= next_report {
            let (tx, rx) = totals(stacks);
            let c = client_of(stacks);
            let dt = (now - last.0) as f64 / 1e9;
            let p = TcpProgress {
                t: (now - start) as f64 / 1e9,
                cps: (c.counts.completed - last.1) as f64 / dt,
                attempted: c.counts.attempted,
                established: c.counts.established,
                completed: c.counts.completed,
                failed: c.counts.failed,
                concurrent: c.active,
                tx_pps: (tx - last.2) as f64 / dt,
                rx_pps: (rx - last.3) as f64 / dt,
            };
            progress(&p);
            per_second.push(p);
            last = (now, c.counts.completed, tx, rx);
            next_report += cfg.report_every_ns;
        }
        if busy == 0 {
            // Nothing came in and nothing was due: let a DUT's worker
            // sharing this core run.
            std::thread::yield_now();
        }
    }
    for st in stacks.iter_mut() {
        st.release();
    }
    let c = client_of(stacks);
    let mut client = c.counts.clone();
    client.retransmits = c.retransmits();
    let (server, listeners) = match server_of(stacks) {
        Some(s) => {
            let mut counts = s.counts.clone();
            counts.retransmits = s.retransmits();
            let l = cfg
                .listeners
                .iter()
                .zip(&s.per_listener)
                .map(|(l, n)| ListenerReport {
                    listener: l.to_string(),
                    accepted: *n,
                })
                .collect();
            (counts, l)
        }
        None => (ServerCounts::default(), Vec::new()),
    };
    let seconds = ((last_done.max(start + 1) - start) as f64 / 1e9).max(1e-9);
    TcpReport {
        seconds,
        target_cps: cfg.cps,
        cps: client.completed as f64 / seconds,
        concurrent_limit: cfg.concurrent,
        peak_concurrent: c.peak,
        unfinished: c.active,
        request_bytes: cfg.request,
        response_bytes: cfg.response,
        requests_per_connection: cfg.requests_per_connection,
        shards: cfg.shards(),
        client,
        server,
        connect_latency_ns: c.connect_ns.report(),
        request_latency_ns: c.request_ns.report(),
        listeners,
        ports: stacks.iter().map(|s| s.io.counters.clone()).collect(),
        dut_drops: Default::default(),
        dut_events: Default::default(),
        per_second,
    }
}

/// Both sides in this process over one port that loops back (`mem:loop`,
/// with its loss, delay and capacity options).
pub fn run_loopback(
    cfg: &TcpConfig,
    link: &LinkConfig,
    progress: &mut dyn FnMut(&TcpProgress),
) -> Result<TcpReport, String> {
    run_ports(cfg, &PortSpec::Loop(link.clone()), None, progress)
}

/// The client side on `client`'s port and the server side on `server`'s,
/// or, without `server`, on the client's port too if it loops back, else
/// nowhere (the servers are real hosts past the port). Ports that are
/// real interfaces announce the generator's addresses first (when
/// `cfg.announce`).
pub fn run_ports(
    cfg: &TcpConfig,
    client: &PortSpec,
    server: Option<&PortSpec>,
    progress: &mut dyn FnMut(&TcpProgress),
) -> Result<TcpReport, String> {
    cfg.validate()?;
    if let Some(s) = server {
        if s == client {
            return Err("--server-port: must differ from --port (one port carries both sides only when it loops back)".into());
        }
        if s.loops_back() || client.loops_back() {
            return Err("--server-port: a mem:loop port carries both sides by itself; give no --server-port".into());
        }
    }
    let clock = Clock::new();
    let client_port = client.open(if server.is_some() { "client" } else { "tcp" }, clock)?;
    let server = match server {
        Some(s) => ServerAt::Port(s.open("server", clock)?),
        None if client.loops_back() => ServerAt::ClientPort,
        None => ServerAt::Elsewhere,
    };
    Ok(run_on_ports(
        cfg,
        client_port,
        server,
        cfg.announce && client.is_interface(),
        clock,
        progress,
    ))
}

/// Where the server side runs.
pub enum ServerAt {
    /// On the client's port (which loops back).
    ClientPort,
    /// On a port of its own.
    Port(Arc<dyn Port>),
    /// Not here: the servers are real hosts past the client's port.
    Elsewhere,
}

/// [`run_ports`] over ports already open (for example each opened in its
/// own network namespace). `announce`: announce the sides' addresses on
/// their ports first. The configuration must have been validated.
pub fn run_on_ports(
    cfg: &TcpConfig,
    client: Arc<dyn Port>,
    server: ServerAt,
    announce: bool,
    clock: Clock,
    progress: &mut dyn FnMut(&TcpProgress),
) -> TcpReport {
    let pool = PacketPool::new("pktgen-tcp", cfg.pool_size.max(4 * BURST_SIZE as u32));
    let io = |port: &Arc<dyn Port>| -> Io {
        Io::new(
            port.rx_queue(0)
                .expect("queue 0 of a port the generator opened"),
            port.tx_queue(0)
                .expect("queue 0 of a port the generator opened"),
            pool.cache(4 * BURST_SIZE),
        )
    };
    let shards = cfg.shards();
    let client_side = Some(ClientSide::new(cfg, shards, cfg.seed));
    let server_side = || Some(ServerSide::new(cfg, shards, cfg.seed));
    let mut stacks = match &server {
        ServerAt::Port(s) => vec![
            Stack::new(io(&client), client_side, None),
            Stack::new(io(s), None, server_side()),
        ],
        ServerAt::ClientPort => vec![Stack::new(io(&client), client_side, server_side())],
        ServerAt::Elsewhere => vec![Stack::new(io(&client), client_side, None)],
    };
    if announce {
        for st in &mut stacks {
            st.announce();
        }
    }
    run(&mut stacks, cfg, clock, progress)
}

/// The human form of a report.
pub fn summary(r: &TcpReport) -> String {
    let c = &r.client;
    let s = &r.server;
    let l = |x: &LatencyReport| {
        format!(
            "p50 {:.1} p90 {:.1} p99 {:.1} max {:.1} µs",
            x.p50 as f64 / 1e3,
            x.p90 as f64 / 1e3,
            x.p99 as f64 / 1e3,
            x.max as f64 / 1e3
        )
    };
    let mut out = format!(
        "{} connections completed in {:.3} s: {:.0} conn/s{} (peak {} open, limit {})\n\
         client: attempted {} established {} completed {} failed {} (timeout {}, reset {}) requests {} retransmits {}\n\
         server: accepted {} completed {} reset {} timeout {} requests {} retransmits {}\n\
         connect latency: {}\nrequest latency: {}",
        c.completed,
        r.seconds,
        r.cps,
        r.target_cps.map_or(String::new(), |t| format!(" (target {t:.0})")),
        r.peak_concurrent,
        r.concurrent_limit,
        c.attempted,
        c.established,
        c.completed,
        c.failed,
        c.failed_timeout,
        c.failed_reset,
        c.requests,
        c.retransmits,
        s.accepted,
        s.completed,
        s.reset,
        s.timeout,
        s.requests,
        s.retransmits,
        l(&r.connect_latency_ns),
        l(&r.request_latency_ns),
    );
    if r.unfinished > 0 {
        out += &format!("\n{} connections unfinished at the end", r.unfinished);
    }
    out
}
