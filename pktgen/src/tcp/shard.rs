//! A shard: one smoltcp interface and the sockets it polls.
//!
//! smoltcp's `Interface::poll` walks its whole socket set: for every
//! received segment to find the socket it belongs to, and once more to see
//! which sockets have something to send. With thousands of connections in
//! one set that walk is the cost of every packet. So connections are split
//! into shards of a few sockets (8 by default), each with its own
//! interface; the run loop hands each received frame to the shard that
//! owns its connection, and polls a shard only when it has received
//! frames, when the application side gave it work, or when smoltcp's
//! `poll_at` (a retransmit, a delayed ACK, a timeout) falls due
//! ([`Schedule`]). A poll is [`Shard::ingress`], the side's application
//! step, then [`Shard::egress`].

use super::device::{
    gateway_reply_packet, Io, Role, SeqTracker, ShardDevice, LINK_ADDR, LINK_ADDR6, LINK_GATEWAY,
    LINK_GATEWAY6, LINK_PREFIX, LINK_PREFIX6,
};
use sluice_dataplane::buf::Packet;
use smoltcp::iface::{Config, Interface, PollIngressSingleResult, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Longest time a shard goes without a poll.
const HOUSEKEEPING_NS: u64 = 1_000_000_000;

/// smoltcp's time from the generator's clock.
#[inline]
pub fn instant(now_ns: u64) -> Instant {
    Instant::from_micros((now_ns / 1000) as i64)
}

pub struct Shard {
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    pub rx: VecDeque<Packet>,
    spent: Vec<Packet>,
    pub tracker: SeqTracker,
    pub mac: [u8; 6],
    pub gateway_mac: [u8; 6],
    /// Received frames or application work since the last poll (and so
    /// on the side's ready list).
    pub dirty: bool,
    /// When smoltcp wants to be polled next (ns on the generator's clock).
    pub poll_at_ns: u64,
    /// The time of this shard's live entry in its side's timer heap
    /// (`u64::MAX`: none).
    timer_at: u64,
    /// SYNs handed to this shard since its last poll (server side: that
    /// many listening sockets must be ready).
    pub syns: u32,
}

impl Shard {
    pub fn new(role: Role, mac: [u8; 6], gateway_mac: [u8; 6], seed: u64, sockets: usize) -> Shard {
        let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        cfg.random_seed = seed;
        let mut iface = Interface::new(cfg, &mut super::device::NullDevice, Instant::ZERO);
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(LINK_ADDR.into(), LINK_PREFIX))
                .expect("room for an address");
            a.push(IpCidr::new(LINK_ADDR6.into(), LINK_PREFIX6))
                .expect("room for an address");
        });
        iface
            .routes_mut()
            .add_default_ipv4_route(LINK_GATEWAY)
            .expect("room for the default route");
        iface
            .routes_mut()
            .add_default_ipv6_route(LINK_GATEWAY6)
            .expect("room for the default route");
        // Segments for any address reach the sockets; the run loop hands a
        // shard only what belongs to it.
        iface.set_any_ip(true);
        Shard {
            iface,
            sockets: SocketSet::new(Vec::with_capacity(sockets)),
            rx: VecDeque::with_capacity(64),
            spent: Vec::with_capacity(64),
            tracker: SeqTracker::new(role, sockets * 2),
            mac,
            gateway_mac,
            dirty: true,
            poll_at_ns: 0,
            timer_at: u64::MAX,
            syns: 0,
        }
    }

    /// Tells the interface its gateways' MAC (see `device`).
    pub fn prime(&mut self, io: &mut Io) {
        for v6 in [false, true] {
            if let Some(p) = gateway_reply_packet(&mut io.cache, self.mac, self.gateway_mac, v6) {
                self.rx.push_back(p);
            }
        }
    }

    /// A socket with buffers of the given sizes and the generator's options:
    /// no Nagle (requests and responses go when written), smoltcp's
    /// default delayed ACK (so an answer carries the ACK).
    pub fn add_socket(&mut self, rx_buffer: usize, tx_buffer: usize) -> SocketHandle {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; rx_buffer]),
            tcp::SocketBuffer::new(vec![0; tx_buffer]),
        );
        s.set_nagle_enabled(false);
        s.set_ack_delay(Some(Duration::from_millis(10)));
        self.sockets.add(s)
    }

    /// Lets smoltcp process what was received (the first half of a poll;
    /// the application step comes next, then [`Shard::egress`], so what the
    /// application writes goes out in the same poll, with the ACK of what
    /// it answers).
    pub fn ingress(&mut self, io: &mut Io, now_ns: u64) {
        let ts = instant(now_ns);
        let mut dev = ShardDevice {
            io,
            rx: &mut self.rx,
            spent: &mut self.spent,
            tracker: &mut self.tracker,
            own_mac: self.mac,
            gateway_mac: self.gateway_mac,
        };
        self.iface.poll_maintenance(ts);
        while self
            .iface
            .poll_ingress_single(ts, &mut dev, &mut self.sockets)
            != PollIngressSingleResult::None
        {}
        for p in self.spent.drain(..) {
            io.cache.free(p);
        }
        self.syns = 0;
    }

    /// Lets smoltcp send what is queued: one walk of the set, one segment
    /// per socket (a socket with more to send makes `poll_at` say "now",
    /// so [`Shard::schedule`] has the shard polled again on the next pass
    /// instead of walking every socket again here).
    pub fn egress(&mut self, io: &mut Io, now_ns: u64) {
        let ts = instant(now_ns);
        let mut dev = ShardDevice {
            io,
            rx: &mut self.rx,
            spent: &mut self.spent,
            tracker: &mut self.tracker,
            own_mac: self.mac,
            gateway_mac: self.gateway_mac,
        };
        self.iface.poll_egress(ts, &mut dev, &mut self.sockets);
        // A gateway ARP answered in place is waiting in `rx`.
        self.dirty = !self.rx.is_empty();
    }

    /// Asks smoltcp when it next needs a poll (a walk of the sockets: done
    /// once after the application step, not per packet).
    /// At the latest a second from now, so the application step sees every
    /// connection's timeout even when smoltcp has no timer running.
    pub fn schedule(&mut self, now_ns: u64) {
        let smoltcp = match self.iface.poll_at(instant(now_ns), &self.sockets) {
            Some(t) => (t.total_micros().max(0) as u64).saturating_mul(1000),
            None => u64::MAX,
        };
        self.poll_at_ns = smoltcp.min(now_ns + HOUSEKEEPING_NS);
    }

    pub fn socket(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    /// Frees what the shard still holds.
    pub fn release(&mut self, io: &mut Io) {
        for p in self.rx.drain(..).chain(self.spent.drain(..)) {
            io.cache.free(p);
        }
    }
}

/// Retransmits counted by a side's shards.
pub fn retransmits<'a>(shards: impl IntoIterator<Item = &'a Shard>) -> u64 {
    shards.into_iter().map(|s| s.tracker.retransmits).sum()
}

/// Frees what a side's shards still hold.
pub fn release<'a>(shards: impl IntoIterator<Item = &'a mut Shard>, io: &mut Io) {
    for s in shards {
        s.release(io);
    }
}

/// Which shards of a side to poll: those with frames or work (`ready`),
/// and those whose `poll_at` has come (a heap of times). A pass costs the
/// shards that are due, not a look at every shard: with 100,000
/// connections there are 12,500 shards a side. A shard has at most one
/// live entry in the heap (its `timer_at`): a later `poll_at` waits for
/// the earlier entry to fire and is pushed then, so the heap stays as small
/// as the number of shards.
pub struct Schedule {
    ready: Vec<u32>,
    /// (time, shard); an entry whose time is not its shard's `timer_at` is
    /// stale and skipped.
    timers: BinaryHeap<Reverse<(u64, u32)>>,
}

impl Schedule {
    /// Every shard ready (each has its gateway's ARP reply to read).
    pub fn new(shards: usize) -> Schedule {
        Schedule {
            ready: (0..shards as u32).collect(),
            timers: BinaryHeap::with_capacity(shards * 2),
        }
    }

    /// Marks a shard as having work.
    #[inline]
    pub fn wake(&mut self, shard: &mut Shard, si: usize) {
        if !shard.dirty {
            shard.dirty = true;
            self.ready.push(si as u32);
        }
    }

    fn arm(&mut self, shard: &mut Shard, si: u32) {
        if shard.poll_at_ns < shard.timer_at {
            shard.timer_at = shard.poll_at_ns;
            self.timers.push(Reverse((shard.poll_at_ns, si)));
        }
    }

    /// Moves the shards due at `now_ns` into `out`.
    pub fn due(&mut self, now_ns: u64, shards: &mut [impl AsMut<Shard>], out: &mut Vec<u32>) {
        out.clear();
        out.append(&mut self.ready);
        while let Some(&Reverse((t, si))) = self.timers.peek() {
            if t > now_ns {
                break;
            }
            self.timers.pop();
            let sh = shards[si as usize].as_mut();
            if t != sh.timer_at {
                continue;
            }
            sh.timer_at = u64::MAX;
            if sh.dirty {
                continue; // already in `out` (it was ready)
            }
            if sh.poll_at_ns <= now_ns {
                sh.dirty = true;
                out.push(si);
            } else {
                self.arm(sh, si);
            }
        }
    }

    /// After a shard's poll and [`Shard::schedule`]: ready again if it
    /// still has frames, else waiting for its time.
    pub fn polled(&mut self, shard: &mut Shard, si: usize) {
        if shard.dirty {
            self.ready.push(si as u32);
        } else {
            self.arm(shard, si as u32);
        }
    }
}
