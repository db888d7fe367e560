//! The poll-mode worker: receive a burst, run the pipeline, transmit grouped
//! by port, repeat.
//!
//! A worker owns its receive queues, one transmit queue per port, a packet
//! cache, a table reader and its counters. Nothing it touches per packet is
//! shared for writing, so the loop takes no locks. Per poll it:
//! 1. checks for a new table generation (one atomic load);
//! 2. for each receive queue: takes a burst, runs the pipeline over it, and
//!    sorts the packets by decision: transmit ones into a pending batch per
//!    output port (sent as soon as it holds a full burst, as DPDK's l3fwd
//!    does), drops freed and counted, punts to the slow path;
//! 3. flushes partial batches when the drain timer fires or the queues were
//!    idle, so a lone packet waits at most `drain` (100 µs by default).
//!
//! Copies (port mirroring; see [`crate::stages::Copies`]): while the tables
//! hold a function that copies packets, the worker keeps up to
//! [`COPY_CAPACITY`] free buffers from its pool cache in the burst's side
//! output, topping them up before each burst (a pop from the cache per
//! buffer used, nothing when none was). After the burst's own packets are
//! placed, the copies go out on their ports at once, a `tx_burst` per run
//! of copies to one port; a copy the queue does not take is freed, counted
//! (`copy_tx_full`) and reported to the stage that made it
//! ([`Stage::copies_not_sent`]).
//!
//! [`Worker::poll`] is the loop's body and takes the time as an argument, so
//! tests drive a worker deterministically; [`spawn`] runs it on a pinned
//! thread until stopped, yielding the core once every 64 empty polls in a
//! row (at once back on a core of its own; on a shared core the control
//! plane gets to run without waiting for the scheduler to preempt a spinning
//! worker). Step 1 runs on every poll, idle or not, and before any receive:
//! that is what lets the control plane's acknowledgement of a generation
//! (see [`crate::tables::cell`]) cover every packet received after it.

use crate::buf::{Batch, Packet, PacketPool, PoolCache, BURST_SIZE};
use crate::defer::DeferQueue;
use crate::io::{RxQueue, TxQueue};
use crate::stages::slowpath::SlowPath;
use crate::stages::{Action, Burst, Context, Copies, CopyTag, Stage, COPY_CAPACITY};
use crate::state::neighbour::NeighbourCache;
use crate::stats::{DropReason, Event, WorkerStats};
use crate::tables::cell::{TableCell, TableReader};
use crate::tables::PortId;
use arrayvec::ArrayVec;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A ring of packets handed to a worker by the others, each with the set
/// of workers that already looked for its connection.
pub type HandoffRing = crossbeam_queue::ArrayQueue<(Packet, u32)>;

/// A worker's end of the handoff mesh: its own inbound ring, and every
/// worker's ring by worker id (its own included).
#[derive(Default, Clone)]
pub struct Handoff {
    pub inbound: Option<Arc<HandoffRing>>,
    pub peers: Vec<Arc<HandoffRing>>,
}

impl Handoff {
    /// The mesh for `workers` workers, each inbound ring holding `size`
    /// packets; element `w` is worker `w`'s end.
    pub fn mesh(workers: usize, size: usize) -> Vec<Handoff> {
        let rings: Vec<Arc<HandoffRing>> = (0..workers)
            .map(|_| Arc::new(HandoffRing::new(size.max(1))))
            .collect();
        (0..workers)
            .map(|w| Handoff {
                inbound: Some(rings[w].clone()),
                peers: rings.clone(),
            })
            .collect()
    }
}

/// Shaped packets a worker holds at most (their buffers come from the
/// pool: 25 ms at 10 Gbit/s of full-size frames is about 21,000).
pub const DEFER_CAPACITY: usize = 32_768;

/// Everything a worker needs, handed over when it starts.
pub struct WorkerSpec {
    pub id: u16,
    /// The core to pin to; `None` leaves the thread unpinned.
    pub core: Option<usize>,
    /// Receive queues this worker polls.
    pub rx: Vec<Box<dyn RxQueue>>,
    /// Transmit queues by port id; `None` where this worker cannot send.
    pub tx: Vec<Option<Box<dyn TxQueue>>>,
    pub pool: PacketPool,
    pub tables: Arc<TableCell>,
    pub neighbours: Arc<NeighbourCache>,
    /// The longest a packet waits in a partial transmit batch.
    pub drain: Duration,
    /// Rings to and from the other workers ([`Handoff::mesh`]); default
    /// for a worker alone.
    pub handoff: Handoff,
}

/// A worker's state; [`poll`](Worker::poll) runs one iteration.
pub struct Worker<P: Stage> {
    id: u16,
    pipeline: P,
    rx: Vec<Box<dyn RxQueue>>,
    tx: Vec<Option<Box<dyn TxQueue>>>,
    pending: Vec<Batch>,
    cache: PoolCache,
    reader: TableReader,
    neighbours: Arc<NeighbourCache>,
    stats: Arc<WorkerStats>,
    slow: SlowPath,
    burst: Box<Burst>,
    drain_ns: u64,
    last_drain_ns: u64,
    last_poll_ns: u64,
    last_poll_busy: bool,
    handoff: Handoff,
    deferred: DeferQueue,
    /// Free buffers to keep in the burst's side output: [`COPY_CAPACITY`]
    /// while the tables copy packets, else 0.
    copy_reserve: usize,
}

/// How many free buffers a worker keeps ready for copies under `t`.
fn copy_reserve(t: &crate::tables::Tables) -> usize {
    if t.chains.makes_copies() {
        COPY_CAPACITY
    } else {
        0
    }
}

impl<P: Stage> Worker<P> {
    pub fn new(spec: WorkerSpec, pipeline: P) -> Worker<P> {
        let reader = spec.tables.reader();
        let stats = Arc::new(WorkerStats::default());
        stats.set_generation(reader.generation());
        let slow = SlowPath::new(reader.tables());
        let reserve = copy_reserve(reader.tables());
        let ports = spec.tx.len();
        Worker {
            id: spec.id,
            pipeline,
            rx: spec.rx,
            tx: spec.tx,
            pending: (0..ports).map(|_| Batch::new()).collect(),
            cache: spec.pool.cache(512),
            reader,
            neighbours: spec.neighbours,
            stats,
            slow,
            burst: Box::default(),
            drain_ns: spec.drain.as_nanos() as u64,
            last_drain_ns: 0,
            last_poll_ns: 0,
            last_poll_busy: false,
            handoff: spec.handoff,
            deferred: DeferQueue::new(DEFER_CAPACITY),
            copy_reserve: reserve,
        }
    }

    /// This worker's counters (shared with readers).
    pub fn stats(&self) -> Arc<WorkerStats> {
        self.stats.clone()
    }

    /// One iteration of the loop at time `now_ns`; returns the packets received.
    #[inline]
    pub fn poll(&mut self, now_ns: u64) -> usize {
        if self.reader.refresh() {
            self.stats.event(Event::TablesSwapped);
            self.stats.set_generation(self.reader.generation());
            self.slow.on_tables(self.reader.tables());
            self.copy_reserve = copy_reserve(self.reader.tables());
            if self.copy_reserve == 0 {
                for p in self.burst.copies.take_spares() {
                    self.cache.free(p);
                }
            }
        }
        let mut received = 0;
        let mut bursts = 0;
        for q in 0..self.rx.len() {
            let n = self.rx[q].rx_burst(&mut self.cache, &mut self.burst.pkts);
            if n == 0 {
                continue;
            }
            received += n;
            bursts += 1;
            self.burst.tried[..n].fill(0);
            self.process_burst(now_ns, true);
        }
        if self.handoff.inbound.as_ref().is_some_and(|r| !r.is_empty()) {
            let inbound = self.handoff.inbound.clone().expect("checked");
            while !inbound.is_empty() {
                let burst = &mut *self.burst;
                let mut n = 0;
                while n < BURST_SIZE {
                    let Some((pkt, tried)) = inbound.pop() else {
                        break;
                    };
                    burst.tried[n] = tried;
                    burst.pkts.push(pkt);
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                received += n;
                bursts += 1;
                self.process_burst(now_ns, false);
            }
        }
        {
            let cx = Context {
                tables: self.reader.tables(),
                neighbours: &self.neighbours,
                stats: &self.stats,
                now_ns,
                worker: self.id,
                workers: self.handoff.peers.len().max(1) as u16,
            };
            self.pipeline.housekeeping(&cx, received == 0);
        }
        if !self.deferred.is_empty() {
            let mut out = Output {
                pending: &mut self.pending,
                tx: &mut self.tx,
                stats: &self.stats,
            };
            let cache = &mut self.cache;
            self.deferred
                .release(now_ns, &mut |port, pkt| out.send(port, pkt, cache));
        }
        if received == 0 || now_ns.wrapping_sub(self.last_drain_ns) >= self.drain_ns {
            self.flush_all();
            self.last_drain_ns = now_ns;
        }
        // Busy time without another clock read: a poll that found packets
        // lasted until the next poll began.
        let busy_ns = if self.last_poll_busy {
            now_ns.saturating_sub(self.last_poll_ns)
        } else {
            0
        };
        self.last_poll_ns = now_ns;
        self.last_poll_busy = received > 0;
        self.stats.poll(bursts, busy_ns);
        received
    }

    /// Runs the pipeline over the burst and sends, drops, punts or hands
    /// off each packet. `from_port`: the burst came from a receive queue
    /// (and is counted as received), not from the handoff ring.
    fn process_burst(&mut self, now_ns: u64, from_port: bool) {
        let burst = &mut *self.burst;
        burst.reset_actions();
        while burst.copies.spares() < self.copy_reserve {
            match self.cache.alloc() {
                Some(p) => {
                    if let Err(p) = burst.copies.add_spare(p) {
                        self.cache.free(p);
                        break;
                    }
                }
                // The pool is empty: the copies this burst cannot make are
                // counted by the stages that wanted them.
                None => break,
            }
        }
        if from_port {
            // A queue belongs to one port, so the whole burst shares rx_port.
            self.stats
                .rx(burst.pkts[0].rx_port, burst.pkts.len() as u64);
        }
        let cx = Context {
            tables: self.reader.tables(),
            neighbours: &self.neighbours,
            stats: &self.stats,
            now_ns,
            worker: self.id,
            workers: self.handoff.peers.len().max(1) as u16,
        };
        self.pipeline.process(&cx, burst);
        let mut out = Output {
            pending: &mut self.pending,
            tx: &mut self.tx,
            stats: &self.stats,
        };
        for (i, pkt) in burst.pkts.drain(..).enumerate() {
            match burst.action[i] {
                Action::Tx(port) => out.send(port, pkt, &mut self.cache),
                Action::Drop(reason) => {
                    self.stats.drop_packet(reason);
                    self.cache.free(pkt);
                }
                Action::Punt(punt) => {
                    let meta = burst.meta[i];
                    self.slow.handle(
                        &cx,
                        &mut self.cache,
                        pkt,
                        &meta,
                        punt,
                        &mut |port, p, c: &mut PoolCache| out.send(port, p, c),
                    );
                }
                Action::Defer(port) => {
                    let at = burst.meta[i].depart_ns;
                    if let Err(pkt) = self.deferred.push(port, pkt, at, now_ns) {
                        self.stats.drop_packet(DropReason::DeferFull);
                        self.cache.free(pkt);
                    }
                }
                Action::Handoff(w) => {
                    let tried = burst.tried[i] | 1 << (self.id as u32 & 31);
                    match self.handoff.peers.get(w as usize) {
                        Some(ring) => match ring.push((pkt, tried)) {
                            Ok(()) => self.stats.event(Event::HandoffSent),
                            Err((pkt, _)) => {
                                self.stats.drop_packet(DropReason::HandoffFull);
                                self.cache.free(pkt);
                            }
                        },
                        None => {
                            self.stats.drop_packet(DropReason::HandoffFull);
                            self.cache.free(pkt);
                        }
                    }
                }
                Action::Continue => {
                    // The pipeline ended without a decision: no stage handles it.
                    self.stats.drop_packet(DropReason::LocalUnhandled);
                    self.cache.free(pkt);
                }
            }
        }
        if burst.copies.pending() != 0 {
            let mut failed = ArrayVec::<CopyTag, COPY_CAPACITY>::new();
            send_copies(
                &mut burst.copies,
                &mut self.tx,
                &mut self.cache,
                &self.stats,
                &mut failed,
            );
            if !failed.is_empty() {
                self.pipeline.copies_not_sent(&cx, &failed);
            }
        }
    }

    /// Sends every partial batch.
    pub fn flush_all(&mut self) {
        let mut out = Output {
            pending: &mut self.pending,
            tx: &mut self.tx,
            stats: &self.stats,
        };
        for port in 0..out.pending.len() {
            if !out.pending[port].is_empty() {
                out.flush(port as PortId, &mut self.cache);
            }
        }
        for q in self.tx.iter_mut().flatten() {
            q.flush();
        }
    }

    /// Stops cleanly: sends what is pending and returns the packets it holds.
    pub fn shutdown(mut self) {
        for p in self.burst.copies.take_spares() {
            self.cache.free(p);
        }
        let cache = &mut self.cache;
        self.deferred.drain(&mut |_, pkt| cache.free(pkt));
        self.flush_all();
        if let Some(inbound) = &self.handoff.inbound {
            while let Some((pkt, _)) = inbound.pop() {
                self.cache.free(pkt);
            }
        }
        for b in &mut self.pending {
            self.cache.free_batch(b);
        }
    }
}

/// The transmit side of a worker, borrowed apart from the rest so the slow
/// path can send through it.
struct Output<'a> {
    pending: &'a mut Vec<Batch>,
    tx: &'a mut Vec<Option<Box<dyn TxQueue>>>,
    stats: &'a WorkerStats,
}

impl Output<'_> {
    #[inline(always)]
    fn send(&mut self, port: PortId, pkt: Packet, cache: &mut PoolCache) {
        let Some(batch) = self.pending.get_mut(port as usize) else {
            self.stats.drop_packet(DropReason::NoTxQueue);
            cache.free(pkt);
            return;
        };
        batch.push(pkt);
        if batch.is_full() {
            self.flush(port, cache);
        }
    }

    #[inline]
    fn flush(&mut self, port: PortId, cache: &mut PoolCache) {
        let batch = &mut self.pending[port as usize];
        let Some(Some(q)) = self.tx.get_mut(port as usize) else {
            self.stats
                .drops_n(DropReason::NoTxQueue, batch.len() as u64);
            cache.free_batch(batch);
            return;
        };
        let total = batch.len();
        let sent = q.tx_burst(batch, cache);
        self.stats.tx(port, sent as u64);
        if sent < total {
            self.stats
                .drops_n(DropReason::TxFull, (total - sent) as u64);
            cache.free_batch(batch);
        }
    }
}

/// Sends a burst's copies: a `tx_burst` per run of copies to one port.
/// The tags of those the port did not take go to `failed`.
fn send_copies(
    copies: &mut Copies,
    tx: &mut [Option<Box<dyn TxQueue>>],
    cache: &mut PoolCache,
    stats: &WorkerStats,
    failed: &mut ArrayVec<CopyTag, COPY_CAPACITY>,
) {
    let mut batch = Batch::new();
    let mut tags = ArrayVec::<CopyTag, BURST_SIZE>::new();
    let mut port: PortId = 0;
    let mut flush = |port: PortId,
                     batch: &mut Batch,
                     tags: &mut ArrayVec<CopyTag, BURST_SIZE>,
                     cache: &mut PoolCache| {
        let total = batch.len();
        let sent = match tx.get_mut(port as usize) {
            Some(Some(q)) => q.tx_burst(batch, cache),
            _ => 0,
        };
        stats.tx(port, sent as u64);
        stats.events_n(Event::CopySent, sent as u64);
        if sent < total {
            // The queue takes from the front: what is left is the tail.
            stats.drops_n(DropReason::CopyTxFull, (total - sent) as u64);
            for t in &tags[sent..] {
                let _ = failed.try_push(*t);
            }
            cache.free_batch(batch);
        }
        tags.clear();
    };
    for c in copies.drain() {
        if !batch.is_empty() && (c.port != port || batch.is_full()) {
            flush(port, &mut batch, &mut tags, cache);
        }
        port = c.port;
        batch.push(c.pkt);
        tags.push(c.tag);
    }
    if !batch.is_empty() {
        flush(port, &mut batch, &mut tags, cache);
    }
}

/// A running worker thread.
pub struct WorkerHandle {
    pub id: u16,
    stop: Arc<AtomicBool>,
    stats: Arc<WorkerStats>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.stats
    }

    /// Asks the worker to stop and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Empty polls in a row after which an idle worker yields its core once.
const IDLE_POLLS_PER_YIELD: u32 = 64;

/// Starts a worker on its own thread, pinned to `spec.core` if given.
pub fn spawn<P, F>(spec: WorkerSpec, make_pipeline: F) -> std::io::Result<WorkerHandle>
where
    P: Stage + 'static,
    F: FnOnce() -> P + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let (stats_tx, stats_rx) = std::sync::mpsc::sync_channel(1);
    let id = spec.id;
    let core = spec.core;
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name(format!("sluice-worker-{id}"))
            .spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(core_affinity::CoreId { id: c });
                }
                let mut w = Worker::new(spec, make_pipeline());
                let _ = stats_tx.send(w.stats());
                let start = Instant::now();
                let mut idle_polls = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let now = start.elapsed().as_nanos() as u64;
                    if w.poll(now) == 0 {
                        idle_polls = idle_polls.wrapping_add(1);
                        if idle_polls.is_multiple_of(IDLE_POLLS_PER_YIELD) {
                            // On a core of its own this returns at once; on
                            // a shared one it lets the control plane run
                            // (publish, acknowledge) without waiting for the
                            // scheduler to preempt a spinning worker.
                            std::thread::yield_now();
                        } else {
                            core::hint::spin_loop();
                        }
                    } else {
                        idle_polls = 0;
                    }
                }
                w.shutdown();
            })?
    };
    let stats = stats_rx
        .recv()
        .map_err(|_| std::io::Error::other(format!("worker {id} failed to start")))?;
    Ok(WorkerHandle {
        id,
        stop,
        stats,
        thread: Some(thread),
    })
}
