//! In-process ports: rings in memory instead of a wire, for tests, traffic
//! generators and benchmarks.
//!
//! Three kinds, chosen when the port is made:
//!
//! * **Rings** ([`MemPort::new`]): each queue is a bounded ring per direction.
//!   The dataplane holds the [`MemPort`]; the other end of the "wire" is a
//!   [`MemPeer`], which injects frames into the receive rings (steered by
//!   software RSS, like a NIC) and collects what the dataplane transmitted.
//! * **Replay** ([`MemPort::replay`]): each receive queue re-emits a fixed set
//!   of frames forever, copying each into a fresh buffer as a NIC's DMA would,
//!   so a benchmark measures the pipeline and not a generator. Transmit queues
//!   behave as a sink.
//! * **Sink** ([`MemPort::sink`]): transmit counts and frees everything;
//!   receive returns nothing.
//!
//! Sets on receive: `Packet::rx_port` (the configured `port_id`),
//! `Packet::rx_queue`, `Packet::rss_hash` (0 when RSS is off or the frame is
//! not IP). Counters: per queue, in [`QueueCounters`]; `rx_dropped` counts
//! injections that found the ring full, `tx_dropped` counts packets that
//! `tx_burst` left in the batch because the ring was full.
//!
//! Cost: a burst is one ring pop or push per packet (a CAS on
//! `crossbeam_queue::ArrayQueue`), plus a copy per packet in replay mode. No
//! allocation, lock or system call happens in `rx_burst` or `tx_burst`.

use super::rss::{Reta, Toeplitz};
use super::{bump, Port, PortError, PortInfo, PortStats, QueueCounters, RxQueue, TxQueue};
use crate::buf::{Batch, Packet, PoolCache, DATA_ROOM};
use core::sync::atomic::{AtomicBool, Ordering};
use crossbeam_queue::ArrayQueue;
use std::sync::Arc;

/// How frames are spread over receive queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RssMode {
    /// Toeplitz with the Microsoft default key, as most NICs ship.
    Toeplitz,
    /// Toeplitz with the symmetric key: both directions of a flow reach
    /// the same queue.
    Symmetric,
    /// No hashing: everything arrives on queue 0 with `rss_hash` 0.
    None,
}

/// The shape of a memory port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemPortConfig {
    /// Stamped into `Packet::rx_port` of every received packet.
    pub port_id: u16,
    pub rx_queues: u16,
    pub tx_queues: u16,
    /// Packets each ring holds (rings mode only).
    pub ring_size: usize,
    pub mac: [u8; 6],
    pub mtu: u16,
    pub rss: RssMode,
}

impl Default for MemPortConfig {
    fn default() -> Self {
        MemPortConfig {
            port_id: 0,
            rx_queues: 1,
            tx_queues: 1,
            ring_size: 1024,
            mac: [0x02, 0, 0, 0, 0, 0x01],
            mtu: 1500,
            rss: RssMode::Toeplitz,
        }
    }
}

/// How many packets each replay queue emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayLimit {
    Forever,
    /// After this many packets the queue returns nothing.
    Packets(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rings,
    Replay,
    Sink,
}

/// One queue's counters, exclusivity flag and (rings mode) ring, padded so
/// that queues served by different workers share no cache line.
#[repr(align(128))]
struct QueueSlot {
    counters: QueueCounters,
    taken: AtomicBool,
    ring: Option<ArrayQueue<Packet>>,
}

impl QueueSlot {
    fn new(ring_size: Option<usize>) -> Arc<QueueSlot> {
        Arc::new(QueueSlot {
            counters: QueueCounters::default(),
            taken: AtomicBool::new(false),
            ring: ring_size.map(ArrayQueue::new),
        })
    }
}

/// Hash and queue choice for frames entering the port.
struct Steering {
    hasher: Option<Toeplitz>,
    reta: Reta,
}

impl Steering {
    fn new(mode: RssMode, rx_queues: u16) -> Steering {
        let hasher = match mode {
            RssMode::Toeplitz => Some(Toeplitz::microsoft()),
            RssMode::Symmetric => Some(Toeplitz::symmetric()),
            RssMode::None => None,
        };
        Steering {
            hasher,
            reta: Reta::round_robin(rx_queues),
        }
    }

    /// The RSS hash of `frame` and its receive queue. Frames that are not IP
    /// go to queue 0 with hash 0, as on a NIC.
    #[inline]
    fn steer(&self, frame: &[u8]) -> (u32, u16) {
        match self.hasher.as_ref().and_then(|h| h.hash_frame(frame)) {
            Some(hash) => (hash, self.reta.queue(hash)),
            None => (0, 0),
        }
    }
}

/// A port whose wire is memory. See the module docs.
pub struct MemPort {
    name: String,
    cfg: MemPortConfig,
    kind: Kind,
    rx: Box<[Arc<QueueSlot>]>,
    tx: Box<[Arc<QueueSlot>]>,
    /// Replay mode: the frames, shared by the receive queues.
    templates: Option<Arc<ReplayTemplates>>,
    replay_limit: ReplayLimit,
}

impl MemPort {
    /// A port with a ring per queue and direction, and the peer that feeds
    /// and drains them.
    ///
    /// # Panics
    /// If the port has no receive queue, no transmit queue, or a ring size of 0.
    pub fn new(name: &str, cfg: MemPortConfig) -> (Arc<MemPort>, MemPeer) {
        assert!(
            cfg.ring_size > 0,
            "mem port {name}: ring_size must be at least 1"
        );
        let port = Arc::new(MemPort::build(
            name,
            cfg,
            Kind::Rings,
            None,
            ReplayLimit::Forever,
        ));
        let peer = MemPeer {
            name: port.name.clone(),
            rx: port.rx.iter().cloned().collect(),
            tx: port.tx.iter().cloned().collect(),
            steering: Arc::new(Steering::new(port.cfg.rss, port.cfg.rx_queues)),
        };
        (port, peer)
    }

    /// A port whose receive queues re-emit `frames` in a loop, each queue the
    /// frames that RSS assigns to it, in their original order. Transmit
    /// queues behave as [`MemPort::sink`]'s.
    ///
    /// Fails if a frame is longer than a packet buffer holds.
    ///
    /// # Panics
    /// If the port has no receive queue or no transmit queue.
    pub fn replay(
        name: &str,
        frames: Vec<Vec<u8>>,
        cfg: MemPortConfig,
        limit: ReplayLimit,
    ) -> Result<Arc<MemPort>, PortError> {
        let steering = Steering::new(cfg.rss, cfg.rx_queues);
        let templates = ReplayTemplates::new(name, &frames, &steering, cfg.rx_queues)?;
        Ok(Arc::new(MemPort::build(
            name,
            cfg,
            Kind::Replay,
            Some(Arc::new(templates)),
            limit,
        )))
    }

    /// A port that counts and frees whatever it transmits and never
    /// receives anything.
    ///
    /// # Panics
    /// If the port has no receive queue or no transmit queue.
    pub fn sink(name: &str, cfg: MemPortConfig) -> Arc<MemPort> {
        Arc::new(MemPort::build(
            name,
            cfg,
            Kind::Sink,
            None,
            ReplayLimit::Forever,
        ))
    }

    fn build(
        name: &str,
        cfg: MemPortConfig,
        kind: Kind,
        templates: Option<Arc<ReplayTemplates>>,
        replay_limit: ReplayLimit,
    ) -> MemPort {
        assert!(
            cfg.rx_queues > 0,
            "mem port {name}: rx_queues must be at least 1"
        );
        assert!(
            cfg.tx_queues > 0,
            "mem port {name}: tx_queues must be at least 1"
        );
        let ring = (kind == Kind::Rings).then_some(cfg.ring_size);
        MemPort {
            name: name.to_string(),
            rx: (0..cfg.rx_queues).map(|_| QueueSlot::new(ring)).collect(),
            tx: (0..cfg.tx_queues).map(|_| QueueSlot::new(ring)).collect(),
            cfg,
            kind,
            templates,
            replay_limit,
        }
    }

    pub fn config(&self) -> &MemPortConfig {
        &self.cfg
    }

    fn take<'a>(
        &self,
        slots: &'a [Arc<QueueSlot>],
        queue: u16,
    ) -> Result<&'a Arc<QueueSlot>, PortError> {
        let slot = slots
            .get(queue as usize)
            .ok_or_else(|| PortError::NoSuchQueue {
                port: self.name.clone(),
                queue,
                queues: slots.len() as u16,
            })?;
        if slot.taken.swap(true, Ordering::Acquire) {
            return Err(PortError::QueueTaken {
                port: self.name.clone(),
                queue,
            });
        }
        Ok(slot)
    }
}

impl Port for MemPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            name: self.name.clone(),
            driver: "mem",
            mac: self.cfg.mac,
            mtu: self.cfg.mtu,
            rx_queues: self.cfg.rx_queues,
            tx_queues: self.cfg.tx_queues,
            link_up: true,
            speed_mbps: 0,
        }
    }

    fn stats(&self) -> PortStats {
        let mut total = PortStats::default();
        for slot in self.rx.iter().chain(self.tx.iter()) {
            total += slot.counters.snapshot();
        }
        total
    }

    fn rx_queue(&self, queue: u16) -> Result<Box<dyn RxQueue>, PortError> {
        let slot = self.take(&self.rx, queue)?.clone();
        let port_id = self.cfg.port_id;
        Ok(match (self.kind, &self.templates) {
            (Kind::Replay, Some(templates)) => {
                let frames = templates.queues[queue as usize].clone();
                Box::new(ReplayRx {
                    templates: templates.clone(),
                    cursor: frames.start,
                    frames,
                    remaining: match self.replay_limit {
                        ReplayLimit::Forever => u64::MAX,
                        ReplayLimit::Packets(n) => n,
                    },
                    port_id,
                    queue,
                    slot,
                })
            }
            (Kind::Rings, _) => Box::new(RingRx { slot, port_id }),
            _ => Box::new(EmptyRx { slot }),
        })
    }

    fn tx_queue(&self, queue: u16) -> Result<Box<dyn TxQueue>, PortError> {
        let slot = self.take(&self.tx, queue)?.clone();
        Ok(match self.kind {
            Kind::Rings => Box::new(RingTx { slot }),
            Kind::Replay | Kind::Sink => Box::new(SinkTx { slot }),
        })
    }
}

impl core::fmt::Debug for MemPort {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemPort")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("cfg", &self.cfg)
            .finish()
    }
}

/// Gives the queue back when its handle goes, so a restarted worker can
/// take it again.
macro_rules! release_on_drop {
    ($handle:ty) => {
        impl Drop for $handle {
            fn drop(&mut self) {
                self.slot.taken.store(false, Ordering::Release);
            }
        }
    };
}

/// Receives what the peer injected.
struct RingRx {
    slot: Arc<QueueSlot>,
    port_id: u16,
}

impl RxQueue for RingRx {
    #[inline]
    fn rx_burst(&mut self, _pool: &mut PoolCache, out: &mut Batch) -> usize {
        let Some(ring) = &self.slot.ring else {
            return 0;
        };
        let mut n = 0;
        let mut bytes = 0;
        while !out.is_full() {
            let Some(mut pkt) = ring.pop() else {
                break;
            };
            pkt.rx_port = self.port_id;
            bytes += pkt.len();
            out.push(pkt);
            n += 1;
        }
        if n > 0 {
            bump(&self.slot.counters.rx_packets, n as u64);
            bump(&self.slot.counters.rx_bytes, bytes as u64);
        }
        n
    }
}
release_on_drop!(RingRx);

/// Hands transmitted packets to the peer.
struct RingTx {
    slot: Arc<QueueSlot>,
}

impl TxQueue for RingTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Batch, pool: &mut PoolCache) -> usize {
        let Some(ring) = &self.slot.ring else {
            return 0;
        };
        // This handle is the ring's only producer, so the free space can
        // only grow while we push: every one of the first `room` pushes fits.
        let room = ring.capacity() - ring.len();
        let take = pkts.len().min(room);
        let mut bytes = 0;
        let mut lost = 0u64;
        for pkt in pkts.drain(..take) {
            bytes += pkt.len();
            if let Err(pkt) = ring.push(pkt) {
                // Only if someone else pushes onto this ring, which no API
                // allows; the packet is not sent, and not leaked.
                lost += 1;
                bytes -= pkt.len();
                pool.free(pkt);
            }
        }
        let counters = &self.slot.counters;
        bump(&counters.tx_packets, take as u64 - lost);
        bump(&counters.tx_bytes, bytes as u64);
        let refused = (pkts.len() as u64) + lost;
        if refused > 0 {
            bump(&counters.tx_dropped, refused);
        }
        take
    }
}
release_on_drop!(RingTx);

/// Counts and frees everything.
struct SinkTx {
    slot: Arc<QueueSlot>,
}

impl TxQueue for SinkTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Batch, pool: &mut PoolCache) -> usize {
        let n = pkts.len();
        let mut bytes = 0;
        for pkt in pkts.drain(..) {
            bytes += pkt.len();
            pool.free(pkt);
        }
        bump(&self.slot.counters.tx_packets, n as u64);
        bump(&self.slot.counters.tx_bytes, bytes as u64);
        n
    }
}
release_on_drop!(SinkTx);

/// Receives nothing (a sink port's receive side).
struct EmptyRx {
    slot: Arc<QueueSlot>,
}

impl RxQueue for EmptyRx {
    fn rx_burst(&mut self, _pool: &mut PoolCache, _out: &mut Batch) -> usize {
        0
    }
}
release_on_drop!(EmptyRx);

/// Where one template sits in the byte store, with its precomputed RSS hash.
#[derive(Debug, Clone, Copy)]
struct Template {
    offset: u32,
    len: u16,
    hash: u32,
}

/// The frames of a replay port: all bytes in one allocation, grouped by
/// receive queue so each queue walks a contiguous region.
struct ReplayTemplates {
    bytes: Vec<u8>,
    templates: Vec<Template>,
    /// Each receive queue's range of `templates`.
    queues: Vec<core::ops::Range<usize>>,
}

/// Templates start on a cache line, so each copy begins aligned.
const TEMPLATE_ALIGN: usize = 64;

impl ReplayTemplates {
    fn new(
        port: &str,
        frames: &[Vec<u8>],
        steering: &Steering,
        rx_queues: u16,
    ) -> Result<ReplayTemplates, PortError> {
        let mut by_queue: Vec<Vec<(usize, u32)>> = vec![Vec::new(); rx_queues.max(1) as usize];
        for (index, frame) in frames.iter().enumerate() {
            if frame.len() > DATA_ROOM {
                return Err(PortError::Backend(format!(
                    "mem port {port}: replay frame {index} is {} bytes; a packet buffer holds at most {DATA_ROOM}",
                    frame.len()
                )));
            }
            let (hash, queue) = steering.steer(frame);
            by_queue[queue as usize].push((index, hash));
        }
        let mut bytes = Vec::new();
        let mut templates = Vec::with_capacity(frames.len());
        let mut queues = Vec::with_capacity(by_queue.len());
        for members in by_queue {
            let start = templates.len();
            for (index, hash) in members {
                let frame = &frames[index];
                let offset = bytes.len().next_multiple_of(TEMPLATE_ALIGN);
                bytes.resize(offset, 0);
                bytes.extend_from_slice(frame);
                let offset = u32::try_from(offset).map_err(|_| {
                    PortError::Backend(format!(
                        "mem port {port}: replay frames exceed 4 GiB in total"
                    ))
                })?;
                templates.push(Template {
                    offset,
                    len: frame.len() as u16,
                    hash,
                });
            }
            queues.push(start..templates.len());
        }
        // Whole lines are copied on receive: pad the last template's line.
        bytes.resize(bytes.len().next_multiple_of(TEMPLATE_ALIGN), 0);
        Ok(ReplayTemplates {
            bytes,
            templates,
            queues,
        })
    }
}

/// Copies templates into fresh buffers, round and round.
struct ReplayRx {
    templates: Arc<ReplayTemplates>,
    /// This queue's range of `templates.templates`.
    frames: core::ops::Range<usize>,
    cursor: usize,
    remaining: u64,
    port_id: u16,
    queue: u16,
    slot: Arc<QueueSlot>,
}

impl RxQueue for ReplayRx {
    #[inline]
    fn rx_burst(&mut self, pool: &mut PoolCache, out: &mut Batch) -> usize {
        if self.frames.is_empty() {
            return 0;
        }
        let want = (out.remaining_capacity() as u64).min(self.remaining) as usize;
        let store = &self.templates.bytes[..];
        let templates = &self.templates.templates[..];
        let mut n = 0;
        let mut bytes = 0;
        while n < want {
            // An empty pool stops the burst; nothing is lost, the next
            // burst resumes at the same template.
            let Some(pkt) = pool.alloc() else {
                break;
            };
            // Push first, then fill in place: building the packet on the
            // stack and moving it afterwards makes a wide load of fields
            // just written with narrow stores, which stalls store
            // forwarding on every packet.
            out.push(pkt);
            let pkt = out.last_mut().expect("just pushed");
            let t = templates[self.cursor];
            let start = t.offset as usize;
            // Cannot fail: lengths were checked against DATA_ROOM when the
            // port was built.
            let lines = (t.len as usize).next_multiple_of(TEMPLATE_ALIGN);
            pkt.fill_lines(&store[start..start + lines], t.len as usize);
            pkt.rss_hash = t.hash;
            pkt.rx_queue = self.queue;
            pkt.rx_port = self.port_id;
            bytes += t.len as usize;
            n += 1;
            self.cursor += 1;
            if self.cursor == self.frames.end {
                self.cursor = self.frames.start;
            }
        }
        if self.remaining != u64::MAX {
            self.remaining -= n as u64;
        }
        if n > 0 {
            bump(&self.slot.counters.rx_packets, n as u64);
            bump(&self.slot.counters.rx_bytes, bytes as u64);
        }
        n
    }
}
release_on_drop!(ReplayRx);

/// The far end of a rings-mode [`MemPort`]: what a test or a generator holds
/// to put frames on the wire and take transmitted ones off it.
///
/// Cheap to clone and usable from any thread. Each receive ring should have
/// one injecting thread and each transmit ring one collecting thread, like the
/// two ends of a NIC queue; more are safe but interleave unpredictably.
#[derive(Clone)]
pub struct MemPeer {
    name: String,
    rx: Arc<[Arc<QueueSlot>]>,
    tx: Arc<[Arc<QueueSlot>]>,
    steering: Arc<Steering>,
}

impl MemPeer {
    /// The RSS hash and receive queue the port would give `frame`.
    pub fn steer(&self, frame: &[u8]) -> (u32, u16) {
        self.steering.steer(frame)
    }

    /// Puts a packet on the wire: RSS picks the receive queue, and the
    /// packet carries the hash and queue. A full ring counts `rx_dropped`
    /// and hands the packet back.
    pub fn inject(&self, mut pkt: Packet) -> Result<(), Packet> {
        let (hash, queue) = self.steering.steer(pkt.data());
        pkt.rss_hash = hash;
        self.push(queue, pkt)
    }

    /// Puts a packet on receive queue `queue`, bypassing RSS steering (the
    /// hash is still computed, as a NIC's flow director does).
    ///
    /// # Panics
    /// If the port has no such queue.
    pub fn inject_to(&self, queue: u16, mut pkt: Packet) -> Result<(), Packet> {
        assert!(
            (queue as usize) < self.rx.len(),
            "mem port {}: no receive queue {queue} (it has {})",
            self.name,
            self.rx.len()
        );
        pkt.rss_hash = self.steering.steer(pkt.data()).0;
        self.push(queue, pkt)
    }

    fn push(&self, queue: u16, mut pkt: Packet) -> Result<(), Packet> {
        pkt.rx_queue = queue;
        let slot = &self.rx[queue as usize];
        let ring = slot
            .ring
            .as_ref()
            .expect("a peer exists only for a rings-mode port");
        ring.push(pkt).inspect_err(|_| {
            // The peer may be shared between threads, so this counter can
            // have several writers: a locked add, not `bump`.
            slot.counters.rx_dropped.fetch_add(1, Ordering::Relaxed);
        })
    }

    /// Moves what the dataplane transmitted on queue `queue` into `out`;
    /// returns how many.
    ///
    /// # Panics
    /// If the port has no such queue.
    pub fn collect(&self, queue: u16, out: &mut Vec<Packet>) -> usize {
        let slot = self.tx.get(queue as usize).unwrap_or_else(|| {
            panic!(
                "mem port {}: no transmit queue {queue} (it has {})",
                self.name,
                self.tx.len()
            )
        });
        let ring = slot
            .ring
            .as_ref()
            .expect("a peer exists only for a rings-mode port");
        let before = out.len();
        while let Some(pkt) = ring.pop() {
            out.push(pkt);
        }
        out.len() - before
    }

    /// [`MemPeer::collect`] over every transmit queue, in queue order.
    pub fn collect_all(&self, out: &mut Vec<Packet>) -> usize {
        (0..self.tx.len() as u16)
            .map(|q| self.collect(q, out))
            .sum()
    }

    pub fn rx_queues(&self) -> u16 {
        self.rx.len() as u16
    }

    pub fn tx_queues(&self) -> u16 {
        self.tx.len() as u16
    }
}

impl core::fmt::Debug for MemPeer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemPeer").field("port", &self.name).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::rss::test_frames::{ipv4, ipv6};
    use super::*;
    use crate::buf::PacketPool;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn cfg(rx_queues: u16, tx_queues: u16, ring_size: usize, rss: RssMode) -> MemPortConfig {
        MemPortConfig {
            port_id: 7,
            rx_queues,
            tx_queues,
            ring_size,
            rss,
            ..MemPortConfig::default()
        }
    }

    fn packet(cache: &mut PoolCache, bytes: &[u8]) -> Packet {
        let mut p = cache.alloc().expect("pool has buffers");
        assert!(p.fill(bytes));
        p
    }

    fn random_flow(rng: &mut SmallRng) -> ([u8; 4], [u8; 4], u16, u16) {
        (rng.gen(), rng.gen(), rng.gen(), rng.gen())
    }

    #[test]
    fn inject_receive_transmit_collect_keeps_bytes() {
        let pool = PacketPool::new("t", 256);
        let mut cache = pool.cache(64);
        {
            let (port, peer) = MemPort::new("m0", cfg(1, 1, 64, RssMode::Toeplitz));
            let mut rx = port.rx_queue(0).unwrap();
            let mut tx = port.tx_queue(0).unwrap();
            let frames: Vec<Vec<u8>> = (0..40u16)
                .map(|i| ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, 1000 + i, 53, &[]))
                .collect();
            for f in &frames {
                peer.inject(packet(&mut cache, f)).unwrap();
            }
            let mut batch = Batch::new();
            let mut received = 0;
            loop {
                let n = rx.rx_burst(&mut cache, &mut batch);
                if n == 0 {
                    break;
                }
                received += n;
                for p in &batch {
                    assert_eq!(p.rx_port, 7);
                    assert_eq!(p.rx_queue, 0);
                    assert_eq!(Some(p.rss_hash), Toeplitz::microsoft().hash_frame(p.data()));
                }
                assert_eq!(tx.tx_burst(&mut batch, &mut cache), n);
                assert!(batch.is_empty());
            }
            assert_eq!(received, 40);
            let mut out = Vec::new();
            assert_eq!(peer.collect_all(&mut out), 40);
            for (p, f) in out.iter().zip(&frames) {
                assert_eq!(p.data(), &f[..]);
            }
            let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
            let stats = port.stats();
            assert_eq!(stats.rx_packets, 40);
            assert_eq!(stats.tx_packets, 40);
            assert_eq!(stats.rx_bytes, bytes);
            assert_eq!(stats.tx_bytes, bytes);
            assert_eq!(stats.rx_dropped + stats.tx_dropped, 0);
            for p in out {
                cache.free(p);
            }
            let info = port.info();
            assert_eq!((info.driver, info.rx_queues, info.tx_queues), ("mem", 1, 1));
        }
        drop(cache);
        assert_eq!(pool.available(), 256);
    }

    #[test]
    fn rss_spreads_flows_evenly() {
        let pool = PacketPool::new("t", 256);
        let mut cache = pool.cache(64);
        let (port, peer) = MemPort::new("m0", cfg(4, 1, 16, RssMode::Toeplitz));
        let mut rng = SmallRng::seed_from_u64(1);
        let mut per_queue = [0usize; 4];
        let mut rxs: Vec<_> = (0..4).map(|q| port.rx_queue(q).unwrap()).collect();
        let mut batch = Batch::new();
        for _ in 0..10_000 {
            let (src, dst, sport, dport) = random_flow(&mut rng);
            peer.inject(packet(&mut cache, &ipv4(src, dst, 6, sport, dport, &[])))
                .unwrap();
            for (q, rx) in rxs.iter_mut().enumerate() {
                let n = rx.rx_burst(&mut cache, &mut batch);
                per_queue[q] += n;
                for p in batch.drain(..) {
                    assert_eq!(p.rx_queue as usize, q);
                    cache.free(p);
                }
            }
        }
        assert_eq!(per_queue.iter().sum::<usize>(), 10_000);
        for (q, &n) in per_queue.iter().enumerate() {
            assert!(
                (2000..=3000).contains(&n),
                "queue {q} got {n} of 10000: {per_queue:?}"
            );
        }
    }

    #[test]
    fn symmetric_rss_keeps_both_directions_together() {
        let (_port, peer) = MemPort::new("m0", cfg(4, 1, 16, RssMode::Symmetric));
        let mut rng = SmallRng::seed_from_u64(2);
        let mut used = [false; 4];
        for _ in 0..2000 {
            let (a, b, pa, pb) = random_flow(&mut rng);
            let there = peer.steer(&ipv4(a, b, 17, pa, pb, &[]));
            let back = peer.steer(&ipv4(b, a, 17, pb, pa, &[]));
            assert_eq!(there, back);
            used[there.1 as usize] = true;

            let (a6, b6): ([u8; 16], [u8; 16]) = (rng.gen(), rng.gen());
            let there = peer.steer(&ipv6(a6, b6, 6, &[], pa, pb));
            let back = peer.steer(&ipv6(b6, a6, 6, &[], pb, pa));
            assert_eq!(there, back);
        }
        assert_eq!(used, [true; 4]);
    }

    #[test]
    fn rss_off_and_non_ip_use_queue_zero() {
        let arp = {
            let mut f = ipv4([1, 1, 1, 1], [2, 2, 2, 2], 6, 1, 2, &[]);
            f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
            f
        };
        let (_port, peer) = MemPort::new("m0", cfg(4, 1, 16, RssMode::Toeplitz));
        assert_eq!(peer.steer(&arp), (0, 0));
        let (_port, peer) = MemPort::new("m1", cfg(4, 1, 16, RssMode::None));
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..100 {
            let (src, dst, sport, dport) = random_flow(&mut rng);
            assert_eq!(peer.steer(&ipv4(src, dst, 6, sport, dport, &[])), (0, 0));
        }
    }

    #[test]
    fn replay_limit_yields_templates_in_order() {
        let pool = PacketPool::new("t", 128);
        let mut cache = pool.cache(64);
        let frames: Vec<Vec<u8>> = (0..5u16)
            .map(|i| {
                let mut f = ipv4([10, 0, 0, 1], [10, 0, 0, 2], 6, 2000 + i, 80, &[]);
                f.resize(60 + i as usize * 7, 0xee);
                f
            })
            .collect();
        let port = MemPort::replay(
            "r0",
            frames.clone(),
            cfg(1, 1, 1, RssMode::Toeplitz),
            ReplayLimit::Packets(77),
        )
        .unwrap();
        let mut rx = port.rx_queue(0).unwrap();
        let mut batch = Batch::new();
        let mut seen = 0usize;
        for _ in 0..10 {
            let n = rx.rx_burst(&mut cache, &mut batch);
            for p in batch.drain(..) {
                let f = &frames[seen % frames.len()];
                assert_eq!(p.data(), &f[..], "packet {seen}");
                assert_eq!(Some(p.rss_hash), Toeplitz::microsoft().hash_frame(f));
                assert_eq!((p.rx_port, p.rx_queue), (7, 0));
                seen += 1;
                cache.free(p);
            }
            assert!(n <= 32);
        }
        assert_eq!(seen, 77);
        assert_eq!(port.stats().rx_packets, 77);
        drop(rx);
        drop(port);
        drop(cache);
        assert_eq!(pool.available(), 128);
    }

    #[test]
    fn replay_spreads_templates_by_rss_and_runs_forever() {
        let pool = PacketPool::new("t", 256);
        let mut cache = pool.cache(64);
        let mut rng = SmallRng::seed_from_u64(4);
        let frames: Vec<Vec<u8>> = (0..64)
            .map(|_| {
                let (src, dst, sport, dport) = random_flow(&mut rng);
                ipv4(src, dst, 17, sport, dport, &[])
            })
            .collect();
        let config = cfg(2, 1, 1, RssMode::Toeplitz);
        let (_p, peer) = MemPort::new("ref", config.clone());
        let port = MemPort::replay("r0", frames.clone(), config, ReplayLimit::Forever).unwrap();
        for q in 0..2u16 {
            let expected: Vec<&Vec<u8>> = frames.iter().filter(|f| peer.steer(f).1 == q).collect();
            assert!(!expected.is_empty());
            let mut rx = port.rx_queue(q).unwrap();
            let mut batch = Batch::new();
            let mut seen = 0;
            while seen < 1000 {
                rx.rx_burst(&mut cache, &mut batch);
                for p in batch.drain(..) {
                    assert_eq!(p.data(), &expected[seen % expected.len()][..]);
                    assert_eq!(p.rx_queue, q);
                    seen += 1;
                    cache.free(p);
                }
            }
        }
        // Transmit on a replay port is a sink.
        let mut tx = port.tx_queue(0).unwrap();
        let mut batch: Batch = (0..3).map(|_| packet(&mut cache, &frames[0])).collect();
        assert_eq!(tx.tx_burst(&mut batch, &mut cache), 3);
        assert_eq!(port.stats().tx_packets, 3);
    }

    #[test]
    fn replay_rejects_oversized_frames_and_survives_an_empty_pool() {
        let err = MemPort::replay(
            "r0",
            vec![vec![0; DATA_ROOM + 1]],
            cfg(1, 1, 1, RssMode::None),
            ReplayLimit::Forever,
        )
        .unwrap_err();
        assert!(err.to_string().contains("r0"), "{err}");
        assert!(err.to_string().contains("frame 0"), "{err}");

        let pool = PacketPool::new("t", 40);
        let mut cache = pool.cache(64);
        let port = MemPort::replay(
            "r1",
            vec![vec![1; 60], vec![2; 61]],
            cfg(1, 1, 1, RssMode::None),
            ReplayLimit::Forever,
        )
        .unwrap();
        let mut rx = port.rx_queue(0).unwrap();
        let mut held = Vec::new();
        let mut batch = Batch::new();
        while rx.rx_burst(&mut cache, &mut batch) > 0 {
            held.extend(batch.drain(..));
        }
        assert_eq!(held.len(), 40);
        assert_eq!(port.stats().rx_dropped, 0);
        for p in held.drain(..) {
            cache.free(p);
        }
        // It resumes where it stopped: packet 40 is template 0 again.
        assert_eq!(rx.rx_burst(&mut cache, &mut batch), 32);
        assert_eq!(batch[0].data(), &[1; 60][..]);
        cache.free_batch(&mut batch);
    }

    #[test]
    fn sink_counts_and_frees() {
        let pool = PacketPool::new("t", 64);
        let mut cache = pool.cache(64);
        let port = MemPort::sink("s0", cfg(1, 2, 1, RssMode::None));
        let mut tx = port.tx_queue(1).unwrap();
        let mut rx = port.rx_queue(0).unwrap();
        let mut batch: Batch = (0..32).map(|_| packet(&mut cache, &[0xab; 100])).collect();
        assert_eq!(tx.tx_burst(&mut batch, &mut cache), 32);
        assert!(batch.is_empty());
        assert_eq!(rx.rx_burst(&mut cache, &mut batch), 0);
        let stats = port.stats();
        assert_eq!((stats.tx_packets, stats.tx_bytes), (32, 3200));
        drop(cache);
        assert_eq!(pool.available(), 64);
    }

    #[test]
    fn full_rings_count_drops() {
        let pool = PacketPool::new("t", 64);
        let mut cache = pool.cache(64);
        let (port, peer) = MemPort::new("m0", cfg(1, 1, 4, RssMode::Toeplitz));
        let frame = ipv4([1, 2, 3, 4], [5, 6, 7, 8], 6, 1, 2, &[]);
        for _ in 0..4 {
            peer.inject(packet(&mut cache, &frame)).unwrap();
        }
        let refused = peer.inject(packet(&mut cache, &frame)).unwrap_err();
        assert_eq!(refused.data(), &frame[..]);
        cache.free(refused);
        assert!(peer.inject_to(0, packet(&mut cache, &frame)).is_err());
        assert_eq!(port.stats().rx_dropped, 2);

        let mut tx = port.tx_queue(0).unwrap();
        let mut batch: Batch = (0..6u8).map(|i| packet(&mut cache, &[i; 64])).collect();
        assert_eq!(tx.tx_burst(&mut batch, &mut cache), 4);
        // The two it could not take stay in the batch, in order.
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].data(), &[4; 64][..]);
        assert_eq!(tx.tx_burst(&mut batch, &mut cache), 0);
        let stats = port.stats();
        assert_eq!((stats.tx_packets, stats.tx_dropped), (4, 4));

        let mut out = Vec::new();
        assert_eq!(peer.collect(0, &mut out), 4);
        assert_eq!(tx.tx_burst(&mut batch, &mut cache), 2);
        assert_eq!(peer.collect(0, &mut out), 2);
        let order: Vec<u8> = out.iter().map(|p| p.data()[0]).collect();
        assert_eq!(order, [0, 1, 2, 3, 4, 5]);
        for p in out {
            cache.free(p);
        }
        // Packets left in rings go home when the port and its peer go.
        drop((tx, port, peer));
        drop(cache);
        assert_eq!(pool.available(), 64);
    }

    #[test]
    fn queue_handles_are_exclusive() {
        let (port, _peer) = MemPort::new("m0", cfg(2, 1, 4, RssMode::Toeplitz));
        let rx0 = port.rx_queue(0).unwrap();
        assert!(matches!(
            port.rx_queue(0),
            Err(PortError::QueueTaken { ref port, queue: 0 }) if port == "m0"
        ));
        assert!(
            port.rx_queue(1).is_ok(),
            "queue 1 is free (and released at once)"
        );
        assert_eq!(
            port.rx_queue(2).err(),
            Some(PortError::NoSuchQueue {
                port: "m0".into(),
                queue: 2,
                queues: 2
            })
        );
        let tx0 = port.tx_queue(0).unwrap();
        assert!(port.tx_queue(0).is_err());
        assert!(port.tx_queue(1).is_err());
        // A dropped handle gives the queue back.
        drop((rx0, tx0));
        assert!(port.rx_queue(0).is_ok());
        assert!(port.tx_queue(0).is_ok());

        let sink = MemPort::sink("s0", cfg(1, 1, 1, RssMode::None));
        let _tx = sink.tx_queue(0).unwrap();
        assert!(sink.tx_queue(0).is_err());
    }

    #[test]
    fn peers_and_workers_on_threads_return_every_buffer() {
        let pool = PacketPool::new("t", 512);
        let (port, peer) = MemPort::new("m0", cfg(2, 2, 64, RssMode::Symmetric));
        const TOTAL: u64 = 20_000;
        let generator = {
            let pool = pool.clone();
            let peer = peer.clone();
            std::thread::spawn(move || {
                let mut cache = pool.cache(64);
                let mut rng = SmallRng::seed_from_u64(5);
                let mut sent = 0;
                while sent < TOTAL {
                    let Some(mut p) = cache.alloc() else {
                        std::thread::yield_now();
                        continue;
                    };
                    let (src, dst, sport, dport) = random_flow(&mut rng);
                    p.fill(&ipv4(src, dst, 6, sport, dport, &[]));
                    match peer.inject(p) {
                        Ok(()) => sent += 1,
                        Err(p) => {
                            cache.free(p);
                            std::thread::yield_now();
                        }
                    }
                }
            })
        };
        let workers: Vec<_> = (0..2u16)
            .map(|q| {
                let mut rx = port.rx_queue(q).unwrap();
                let mut tx = port.tx_queue(q).unwrap();
                let pool = pool.clone();
                let port = port.clone();
                std::thread::spawn(move || {
                    let mut cache = pool.cache(64);
                    let mut batch = Batch::new();
                    while port.stats().tx_packets + port.stats().tx_dropped < TOTAL {
                        if rx.rx_burst(&mut cache, &mut batch) == 0 {
                            std::thread::yield_now();
                        }
                        tx.tx_burst(&mut batch, &mut cache);
                        // Frames the ring refused are dropped here.
                        cache.free_batch(&mut batch);
                    }
                })
            })
            .collect();
        let mut cache = pool.cache(64);
        let mut out = Vec::new();
        let mut collected = 0u64;
        while collected + port.stats().tx_dropped < TOTAL {
            let n = peer.collect_all(&mut out);
            collected += n as u64;
            for p in out.drain(..) {
                assert!(p.rx_queue < 2);
                cache.free(p);
            }
            if n == 0 {
                std::thread::yield_now();
            }
        }
        generator.join().unwrap();
        for w in workers {
            w.join().unwrap();
        }
        let stats = port.stats();
        assert_eq!(stats.rx_packets, TOTAL);
        assert_eq!(stats.tx_packets + stats.tx_dropped, TOTAL);
        drop(cache);
        drop((port, peer));
        assert_eq!(pool.available(), 512);
    }
}
