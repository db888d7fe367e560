//! The server side: listeners on a set of addresses and ports, in shards;
//! every `request` bytes received are answered with `response` bytes; a
//! connection is closed when the client has closed its side and the
//! answers are sent.
//!
//! A connection's shard is a hash of the client's address and port, so the
//! run loop finds it from any segment. smoltcp answers a SYN with the first
//! socket listening on its address and port and resets it if none is, so
//! before each poll a shard gets one listening socket per listener for
//! every SYN the run loop handed it (at least one): a socket that took a
//! connection is re-armed (`listen` again) once it is closed.

use super::client::buffer;
use super::device::{Addr, FlowKey, Io, Role, SeqTracker};
use super::shard::Shard;
use super::{TcpConfig, PATTERN};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::State;
use smoltcp::wire::{IpAddress, IpListenEndpoint};
use std::collections::VecDeque;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Free,
    Listening,
    Serving,
    Closing,
}

struct Slot {
    handle: SocketHandle,
    phase: Phase,
    listener: u16,
    accepted_ns: u64,
    /// Bytes of the current request received so far.
    partial: usize,
    /// Response bytes owed.
    owed: u64,
    key: FlowKey,
}

/// What the server side counted.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct ServerCounts {
    /// Connections that left LISTEN (SYN received).
    pub accepted: u64,
    /// Connections closed after the client closed and every answer went.
    pub completed: u64,
    /// Connections reset or aborted before that.
    pub reset: u64,
    /// Connections idle past `--timeout` (aborted).
    pub timeout: u64,
    /// Requests answered.
    pub requests: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub retransmits: u64,
}

pub struct ServerShard {
    pub shard: Shard,
    slots: Vec<Slot>,
    free: VecDeque<u32>,
    /// Listening sockets per listener.
    listening: Vec<u32>,
}

pub struct ServerSide {
    pub shards: Vec<ServerShard>,
    pub schedule: super::shard::Schedule,
    listeners: Vec<SocketAddr>,
    pub active: u64,
    pub counts: ServerCounts,
    /// Connections each listener accepted.
    pub per_listener: Vec<u64>,
    request: usize,
    response: usize,
    timeout_ns: u64,
    rx_buf: usize,
    tx_buf: usize,
    pub mac: [u8; 6],
}

impl ServerSide {
    pub fn is_v6(&self) -> bool {
        self.listeners.first().is_some_and(SocketAddr::is_ipv6)
    }

    pub fn new(cfg: &TcpConfig, shards: usize, seed: u64) -> ServerSide {
        let per = cfg.concurrent.div_ceil(shards) + cfg.listeners.len() * 4;
        let (rx_buf, tx_buf) = (buffer(cfg.request), buffer(cfg.response));
        let mut side = ServerSide {
            shards: (0..shards)
                .map(|i| ServerShard {
                    shard: Shard::new(
                        Role::Server,
                        cfg.server_mac,
                        cfg.server_next_hop,
                        !seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                        per,
                    ),
                    slots: Vec::with_capacity(per),
                    free: VecDeque::with_capacity(per),
                    listening: vec![0; cfg.listeners.len()],
                })
                .collect(),
            schedule: super::shard::Schedule::new(shards),
            listeners: cfg.listeners.clone(),
            active: 0,
            counts: ServerCounts::default(),
            per_listener: vec![0; cfg.listeners.len()],
            request: cfg.request,
            response: cfg.response,
            timeout_ns: cfg.timeout_ns,
            rx_buf,
            tx_buf,
            mac: cfg.server_mac,
        };
        // Sockets for the expected concurrency up front, so the run
        // allocates none unless it needs more.
        for si in 0..shards {
            for _ in 0..per {
                side.add_slot(si);
            }
            side.arm(si, 1);
        }
        side
    }

    fn add_slot(&mut self, si: usize) -> u32 {
        let ss = &mut self.shards[si];
        let handle = ss.shard.add_socket(self.rx_buf, self.tx_buf);
        ss.slots.push(Slot {
            handle,
            phase: Phase::Free,
            listener: 0,
            accepted_ns: 0,
            partial: 0,
            owed: 0,
            key: (0, 0),
        });
        let i = ss.slots.len() as u32 - 1;
        ss.free.push_back(i);
        i
    }

    /// Whether a segment to `addr:port` from `src:sport` is for this side,
    /// and its shard.
    #[inline]
    pub fn shard_of(&self, addr: Addr, port: u16, src: Addr, sport: u16) -> Option<usize> {
        self.listeners
            .iter()
            .any(|l| super::addr(l.ip()) == addr && l.port() == port)
            .then(|| {
                let a = src as u64 ^ (src >> 64) as u64;
                let h = (a ^ (sport as u64) << 32).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                ((h >> 32) % self.shards.len() as u64) as usize
            })
    }

    pub fn owns_addr(&self, addr: Addr) -> bool {
        self.listeners.iter().any(|l| super::addr(l.ip()) == addr)
    }

    pub fn addrs(&self) -> Vec<Addr> {
        let mut v: Vec<Addr> = self.listeners.iter().map(|l| super::addr(l.ip())).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Makes sure every listener of shard `si` has `n` listening sockets.
    pub fn arm(&mut self, si: usize, n: u32) {
        for li in 0..self.listeners.len() {
            while self.shards[si].listening[li] < n {
                let slot_i = match self.shards[si].free.pop_front() {
                    Some(i) => i,
                    None => {
                        let i = self.add_slot(si);
                        self.shards[si].free.pop_back();
                        i
                    }
                };
                let l = self.listeners[li];
                let ss = &mut self.shards[si];
                let slot = &mut ss.slots[slot_i as usize];
                let sock = ss
                    .shard
                    .sockets
                    .get_mut::<smoltcp::socket::tcp::Socket>(slot.handle);
                let ep = IpListenEndpoint {
                    addr: Some(IpAddress::from(l.ip())),
                    port: l.port(),
                };
                if sock.listen(ep).is_err() {
                    // A free slot's socket is closed, so never; keep the
                    // slot out of use rather than loop.
                    break;
                }
                slot.phase = Phase::Listening;
                slot.listener = li as u16;
                ss.listening[li] += 1;
            }
        }
    }

    /// Before a poll: room for every SYN handed to the shard.
    pub fn prepare(&mut self, si: usize) {
        let syns = self.shards[si].shard.syns.max(1);
        self.arm(si, syns);
    }

    /// Between a shard's ingress and egress: answers requests and closes
    /// finished connections.
    pub fn step(&mut self, si: usize, now_ns: u64) {
        let ss = &mut self.shards[si];
        for (i, slot) in ss.slots.iter_mut().enumerate() {
            if slot.phase == Phase::Free {
                continue;
            }
            let sock = ss
                .shard
                .sockets
                .get_mut::<smoltcp::socket::tcp::Socket>(slot.handle);
            let state = sock.state();
            if slot.phase != Phase::Listening && state == State::Listen {
                // smoltcp puts a socket reset in SYN-RECEIVED back to
                // LISTEN: the connection is over, the socket listens again.
                self.counts.reset += 1;
                ss.shard.tracker.forget(slot.key);
                slot.phase = Phase::Listening;
                ss.listening[slot.listener as usize] += 1;
                self.active -= 1;
                continue;
            }
            if slot.phase == Phase::Listening {
                if state == State::Listen {
                    continue;
                }
                ss.listening[slot.listener as usize] -= 1;
                self.counts.accepted += 1;
                self.per_listener[slot.listener as usize] += 1;
                self.active += 1;
                slot.phase = Phase::Serving;
                slot.accepted_ns = now_ns;
                slot.partial = 0;
                slot.owed = 0;
                slot.key = match sock.remote_endpoint() {
                    Some(IpEndpoint { addr, port }) => SeqTracker::key(
                        super::addr(addr.into()),
                        port,
                        self.listeners[slot.listener as usize].port(),
                    ),
                    None => (0, 0),
                };
            }
            let mut end: Option<bool> = None; // Some(true): completed
            if slot.phase == Phase::Serving {
                while sock.can_recv() {
                    match sock.recv(|b| (b.len(), b.len())) {
                        Ok(n) if n > 0 => {
                            self.counts.request_bytes += n as u64;
                            slot.partial += n;
                        }
                        _ => break,
                    }
                }
                while slot.partial >= self.request {
                    slot.partial -= self.request;
                    slot.owed += self.response as u64;
                    self.counts.requests += 1;
                }
                while slot.owed > 0 && sock.can_send() {
                    let chunk = (slot.owed as usize).min(PATTERN.len());
                    match sock.send_slice(&PATTERN[..chunk]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            slot.owed -= n as u64;
                            self.counts.response_bytes += n as u64;
                        }
                    }
                }
                match state {
                    State::Closed | State::TimeWait => end = Some(false),
                    // The client is done sending: close once answered.
                    _ if !sock.may_recv() && slot.owed == 0 && state != State::SynReceived => {
                        sock.close();
                        slot.phase = Phase::Closing;
                    }
                    _ => {}
                }
            }
            if slot.phase == Phase::Closing
                && matches!(sock.state(), State::Closed | State::TimeWait)
            {
                end = Some(true);
            }
            if end.is_none() && now_ns.saturating_sub(slot.accepted_ns) > self.timeout_ns {
                sock.abort();
                self.counts.timeout += 1;
                end = Some(false);
            } else if end == Some(false) {
                self.counts.reset += 1;
            }
            if let Some(ok) = end {
                if ok {
                    self.counts.completed += 1;
                }
                ss.shard.tracker.forget(slot.key);
                slot.phase = Phase::Free;
                ss.free.push_back(i as u32);
                self.active -= 1;
            }
        }
    }

    /// Retransmits counted by every shard.
    pub fn retransmits(&self) -> u64 {
        super::shard::retransmits(self.shards.iter().map(|s| &s.shard))
    }

    pub fn release(&mut self, io: &mut Io) {
        super::shard::release(self.shards.iter_mut().map(|s| &mut s.shard), io);
    }
}

use smoltcp::wire::IpEndpoint;

impl AsMut<Shard> for ServerShard {
    fn as_mut(&mut self) -> &mut Shard {
        &mut self.shard
    }
}
