//! The client side: connection slots in shards, opened at a rate, each
//! connection a handshake, `requests` request/response exchanges and a
//! close.
//!
//! Addresses and ports: shard `s` of `S` uses the client ports `p` with
//! `(p - first) % S == s`, with every client address, the address varying
//! fastest; so the run loop finds a segment's shard from its destination
//! port alone, and a tuple comes back only after the shard has gone
//! through all of its others. A slot's socket is reused for the next
//! connection as soon as the last one reached TIME-WAIT or CLOSED (the
//! tuple is not reused, so TIME-WAIT's protection is not needed);
//! free slots are taken oldest first.

use super::device::{Addr, FlowKey, Io, Role, SeqTracker};
use super::shard::Shard;
use super::{Histogram, TcpConfig, PATTERN};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::State;
use smoltcp::wire::{IpAddress, IpEndpoint};
use std::collections::VecDeque;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Free,
    Connecting,
    /// Sending request `done + 1` and reading its response.
    Exchanging,
    Closing,
}

struct Slot {
    handle: SocketHandle,
    phase: Phase,
    opened_ns: u64,
    request_ns: u64,
    done: u32,
    sent: usize,
    received: usize,
    key: FlowKey,
}

/// What the client side counted.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct ClientCounts {
    /// Connections opened (SYN sent).
    pub attempted: u64,
    /// Handshakes completed.
    pub established: u64,
    /// Connections that did all their requests and closed.
    pub completed: u64,
    /// Connections that ended otherwise: `failed_timeout + failed_reset`.
    pub failed: u64,
    /// Not done within `--timeout` of opening (then aborted).
    pub failed_timeout: u64,
    /// Reset or closed by the peer before all responses arrived.
    pub failed_reset: u64,
    /// Request/response exchanges completed.
    pub requests: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// Segments sent again (retransmission timer, fast retransmit).
    pub retransmits: u64,
}

pub struct ClientShard {
    pub shard: Shard,
    slots: Vec<Slot>,
    free: VecDeque<u32>,
    /// This shard's index, and the next tuple it uses.
    index: u32,
    port_step: u32,
    addr_i: u32,
}

pub struct ClientSide {
    pub shards: Vec<ClientShard>,
    pub schedule: super::shard::Schedule,
    addrs: Vec<Addr>,
    v6: bool,
    first_port: u16,
    /// Ports each shard has: (last - first + 1) / shards.
    ports_per_shard: u32,
    targets: Vec<SocketAddr>,
    next_target: usize,
    next_shard: usize,
    /// Connections open now, and the most there were.
    pub active: u64,
    pub peak: u64,
    pub counts: ClientCounts,
    pub connect_ns: Histogram,
    pub request_ns: Histogram,
    request: usize,
    response: usize,
    requests: u32,
    timeout_ns: u64,
    /// Connections open at most (the slots round it up to whole shards).
    limit: u64,
    /// The side's MAC (ARP answers, announcements).
    pub mac: [u8; 6],
}

impl ClientSide {
    pub fn new(cfg: &TcpConfig, shards: usize, seed: u64) -> ClientSide {
        let slots_per = cfg.concurrent.div_ceil(shards);
        let (rx_buf, tx_buf) = (buffer(cfg.response), buffer(cfg.request));
        let ports = (cfg.client_ports.1 - cfg.client_ports.0) as u32 + 1;
        let shards = (0..shards)
            .map(|i| {
                let mut shard = Shard::new(
                    Role::Client,
                    cfg.client_mac,
                    cfg.client_next_hop,
                    seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    slots_per,
                );
                let slots = (0..slots_per)
                    .map(|_| Slot {
                        handle: shard.add_socket(rx_buf, tx_buf),
                        phase: Phase::Free,
                        opened_ns: 0,
                        request_ns: 0,
                        done: 0,
                        sent: 0,
                        received: 0,
                        key: (0, 0),
                    })
                    .collect();
                ClientShard {
                    shard,
                    slots,
                    free: (0..slots_per as u32).collect(),
                    index: i as u32,
                    port_step: 0,
                    addr_i: 0,
                }
            })
            .collect::<Vec<_>>();
        ClientSide {
            ports_per_shard: ports / shards.len() as u32,
            schedule: super::shard::Schedule::new(shards.len()),
            shards,
            addrs: cfg.clients.iter().map(|&a| super::addr(a)).collect(),
            v6: cfg.is_v6(),
            first_port: cfg.client_ports.0,
            targets: cfg.targets.clone(),
            next_target: 0,
            next_shard: 0,
            active: 0,
            peak: 0,
            counts: ClientCounts::default(),
            connect_ns: Histogram::new(),
            request_ns: Histogram::new(),
            request: cfg.request,
            response: cfg.response,
            requests: cfg.requests_per_connection,
            timeout_ns: cfg.timeout_ns,
            limit: cfg.concurrent as u64,
            mac: cfg.client_mac,
        }
    }

    /// Whether a segment to `addr:port` is for this side, and its shard.
    #[inline]
    pub fn shard_of(&self, addr: Addr, port: u16) -> Option<usize> {
        let first = *self.addrs.first()?;
        let last = *self.addrs.last()?;
        if addr < first || addr > last || port < self.first_port {
            return None;
        }
        let off = (port - self.first_port) as u32;
        let n = self.shards.len() as u32;
        if off / n >= self.ports_per_shard {
            return None;
        }
        Some((off % n) as usize)
    }

    pub fn owns_addr(&self, addr: Addr) -> bool {
        matches!((self.addrs.first(), self.addrs.last()), (Some(&f), Some(&l)) if addr >= f && addr <= l)
    }

    pub fn addrs(&self) -> &[Addr] {
        &self.addrs
    }

    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// Opens a connection if a slot is free; false if none is.
    pub fn open(&mut self, now_ns: u64) -> bool {
        if self.active >= self.limit {
            return false;
        }
        let n = self.shards.len();
        for _ in 0..n {
            let si = self.next_shard;
            self.next_shard = (self.next_shard + 1) % n;
            let cs = &mut self.shards[si];
            let Some(slot_i) = cs.free.pop_front() else {
                continue;
            };
            let target = self.targets[self.next_target];
            self.next_target = (self.next_target + 1) % self.targets.len();
            let addr = self.addrs[cs.addr_i as usize];
            let port = self.first_port as u32 + cs.index + cs.port_step * n as u32;
            cs.addr_i += 1;
            if cs.addr_i as usize == self.addrs.len() {
                cs.addr_i = 0;
                cs.port_step = (cs.port_step + 1) % self.ports_per_shard;
            }
            let slot = &mut cs.slots[slot_i as usize];
            let local = IpEndpoint::new(super::ip_address(addr, self.v6), port as u16);
            let remote = IpEndpoint::new(IpAddress::from(target.ip()), target.port());
            let sock = cs
                .shard
                .sockets
                .get_mut::<smoltcp::socket::tcp::Socket>(slot.handle);
            if sock
                .connect(cs.shard.iface.context(), remote, local)
                .is_err()
            {
                // Only if the socket were still open, which a free slot's
                // never is; give the slot back and try no further.
                cs.free.push_back(slot_i);
                return false;
            }
            slot.phase = Phase::Connecting;
            slot.opened_ns = now_ns;
            slot.done = 0;
            slot.key = SeqTracker::key(addr, port as u16, target.port());
            self.schedule.wake(&mut cs.shard, si);
            self.counts.attempted += 1;
            self.active += 1;
            self.peak = self.peak.max(self.active);
            return true;
        }
        false
    }

    /// Between a shard's ingress and egress: moves each connection along
    /// (what it writes or closes goes out in the egress that follows).
    pub fn step(&mut self, si: usize, now_ns: u64) {
        let cs = &mut self.shards[si];
        for (i, slot) in cs.slots.iter_mut().enumerate() {
            if slot.phase == Phase::Free {
                continue;
            }
            let sock = cs
                .shard
                .sockets
                .get_mut::<smoltcp::socket::tcp::Socket>(slot.handle);
            let state = sock.state();
            let mut end: Option<Outcome> = None;
            if slot.phase == Phase::Connecting {
                match state {
                    State::SynSent | State::SynReceived => {}
                    State::Closed | State::TimeWait => end = Some(Outcome::Reset),
                    _ => {
                        self.counts.established += 1;
                        self.connect_ns.record(now_ns - slot.opened_ns);
                        slot.phase = Phase::Exchanging;
                        slot.request_ns = now_ns;
                        slot.sent = 0;
                        slot.received = 0;
                    }
                }
            }
            // Write what fits of the request, read what came; a finished
            // exchange starts the next one at once (keep-alive), so it goes
            // out in this poll's egress.
            while slot.phase == Phase::Exchanging {
                while slot.sent < self.request && sock.can_send() {
                    let chunk = (self.request - slot.sent).min(PATTERN.len());
                    match sock.send_slice(&PATTERN[..chunk]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            slot.sent += n;
                            self.counts.request_bytes += n as u64;
                        }
                    }
                }
                while sock.can_recv() {
                    match sock.recv(|b| (b.len(), b.len())) {
                        Ok(n) if n > 0 => {
                            slot.received += n;
                            self.counts.response_bytes += n as u64;
                        }
                        _ => break,
                    }
                }
                if slot.sent == self.request && slot.received >= self.response {
                    self.counts.requests += 1;
                    self.request_ns.record(now_ns - slot.request_ns);
                    slot.done += 1;
                    // Bytes past this response (a server that sends more
                    // than asked) count toward the next.
                    slot.received -= self.response;
                    if slot.done == self.requests {
                        sock.close();
                        slot.phase = Phase::Closing;
                    } else {
                        slot.request_ns = now_ns;
                        slot.sent = 0;
                        continue;
                    }
                } else if !sock.may_recv() || matches!(state, State::Closed | State::TimeWait) {
                    end = Some(Outcome::Reset);
                }
                break;
            }
            if slot.phase == Phase::Closing
                && matches!(sock.state(), State::TimeWait | State::Closed)
            {
                end = Some(Outcome::Completed);
            }
            if end.is_none() && now_ns.saturating_sub(slot.opened_ns) > self.timeout_ns {
                sock.abort();
                end = Some(Outcome::Timeout);
            }
            if let Some(o) = end {
                match o {
                    Outcome::Completed => self.counts.completed += 1,
                    Outcome::Timeout => {
                        self.counts.failed += 1;
                        self.counts.failed_timeout += 1;
                    }
                    Outcome::Reset => {
                        self.counts.failed += 1;
                        self.counts.failed_reset += 1;
                    }
                }
                cs.shard.tracker.forget(slot.key);
                slot.phase = Phase::Free;
                cs.free.push_back(i as u32);
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

enum Outcome {
    Completed,
    Timeout,
    Reset,
}

/// A socket buffer for `bytes` of data a message: the message, within
/// 1 KiB and 64 KiB.
pub fn buffer(bytes: usize) -> usize {
    bytes.next_power_of_two().clamp(1024, 64 * 1024)
}

impl AsMut<Shard> for ClientShard {
    fn as_mut(&mut self) -> &mut Shard {
        &mut self.shard
    }
}
