//! An in-memory link that loses, duplicates, delays and rate-limits: what
//! one end transmits arrives at the other end's receive queue (a loopback
//! when the generator holds both), after `delay`, minus a fraction `loss`
//! of the packets chosen at random, plus a copy of a fraction `dup`, with a
//! fraction `reorder` held back behind the packet after them, and minus
//! whatever exceeds `cap` packets per second. For tests of the measurement (the loss and latency it reports
//! must be the configured ones) and a stand-in device for RFC 2544 runs.
//!
//! A transmitted packet goes into one bounded ring with the time it is due;
//! receive takes packets whose time has come. The ring is FIFO and the
//! delay constant, so due times never go backwards. Lost packets are freed
//! at once and counted as `rx_dropped`, as a wire would lose them; a full
//! ring leaves packets in the transmitter's batch (`tx_dropped`).

use crate::clock::Clock;
use crate::field::Rng;
use crossbeam_queue::ArrayQueue;
use sluice_dataplane::buf::{Batch, Packet, PoolCache};
use sluice_dataplane::io::{
    bump, Port, PortError, PortInfo, PortStats, QueueCounters, RxQueue, TxQueue,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How a link behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// Fraction of packets lost, 0 to 1.
    pub loss: f64,
    /// Fraction of the packets that arrive twice, 0 to 1.
    pub dup: f64,
    /// Fraction of the packets held back and delivered after the next
    /// one, 0 to 1.
    pub reorder: f64,
    /// Time from transmit to receive.
    pub delay_ns: u64,
    /// Packets the link holds in flight.
    pub ring: usize,
    /// Packets per second the link passes at most (excess is lost), with a
    /// bucket of 1 ms worth of packets (at least 32).
    pub cap_pps: Option<f64>,
    /// Packets the cap's bucket holds (default: 1 ms worth, at least 32).
    pub cap_depth: Option<u32>,
    pub seed: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            loss: 0.0,
            dup: 0.0,
            reorder: 0.0,
            delay_ns: 0,
            ring: 16384,
            cap_pps: None,
            cap_depth: None,
            seed: 1,
        }
    }
}

struct Shared {
    name: String,
    cfg: LinkConfig,
    ring: ArrayQueue<(Packet, u64)>,
    counters: QueueCounters,
    rx_taken: AtomicBool,
    tx_taken: AtomicBool,
    clock: Clock,
}

/// A link port. See the module docs.
pub struct LinkPort {
    shared: Arc<Shared>,
}

impl LinkPort {
    pub fn new(name: &str, cfg: LinkConfig, clock: Clock) -> Result<Arc<LinkPort>, PortError> {
        if !(0.0..=1.0).contains(&cfg.loss) {
            return Err(PortError::Backend(format!(
                "{name}: loss must be within 0-100%, got {}",
                cfg.loss
            )));
        }
        if !(0.0..=1.0).contains(&cfg.reorder) {
            return Err(PortError::Backend(format!(
                "{name}: reorder must be within 0-100%, got {}",
                cfg.reorder
            )));
        }
        if !(0.0..=1.0).contains(&cfg.dup) {
            return Err(PortError::Backend(format!(
                "{name}: dup must be within 0-100%, got {}",
                cfg.dup
            )));
        }
        if cfg.ring == 0 {
            return Err(PortError::Backend(format!(
                "{name}: ring must be at least 1"
            )));
        }
        Ok(Arc::new(LinkPort {
            shared: Arc::new(Shared {
                name: name.to_string(),
                ring: ArrayQueue::new(cfg.ring),
                cfg,
                counters: QueueCounters::default(),
                rx_taken: AtomicBool::new(false),
                tx_taken: AtomicBool::new(false),
                clock,
            }),
        }))
    }

    pub fn config(&self) -> &LinkConfig {
        &self.shared.cfg
    }
}

impl Port for LinkPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            name: self.shared.name.clone(),
            driver: "mem-link",
            mac: [2, 0, 0, 0, 0xc0, 1],
            mtu: 1500,
            rx_queues: 1,
            tx_queues: 1,
            link_up: true,
            speed_mbps: 0,
        }
    }

    fn stats(&self) -> PortStats {
        self.shared.counters.snapshot()
    }

    fn rx_queue(&self, queue: u16) -> Result<Box<dyn RxQueue>, PortError> {
        take(&self.shared, &self.shared.rx_taken, queue)?;
        Ok(Box::new(LinkRx {
            shared: self.shared.clone(),
            pending: None,
        }))
    }

    fn tx_queue(&self, queue: u16) -> Result<Box<dyn TxQueue>, PortError> {
        take(&self.shared, &self.shared.tx_taken, queue)?;
        let cfg = &self.shared.cfg;
        Ok(Box::new(LinkTx {
            shared: self.shared.clone(),
            rng: Rng::new(cfg.seed),
            loss_threshold: (cfg.loss * u64::MAX as f64) as u64,
            lossy: cfg.loss > 0.0,
            dup_threshold: (cfg.dup * u64::MAX as f64) as u64,
            dups: cfg.dup > 0.0,
            reorder_threshold: (cfg.reorder * u64::MAX as f64) as u64,
            reorders: cfg.reorder > 0.0,
            held: None,
            tokens: cap_depth(cfg.cap_pps.unwrap_or(0.0), cfg.cap_depth),
            last_ns: None,
        }))
    }
}

fn take(shared: &Shared, flag: &AtomicBool, queue: u16) -> Result<(), PortError> {
    if queue != 0 {
        return Err(PortError::NoSuchQueue {
            port: shared.name.clone(),
            queue,
            queues: 1,
        });
    }
    if flag.swap(true, Ordering::Acquire) {
        return Err(PortError::QueueTaken {
            port: shared.name.clone(),
            queue,
        });
    }
    Ok(())
}

struct LinkTx {
    shared: Arc<Shared>,
    rng: Rng,
    loss_threshold: u64,
    lossy: bool,
    dup_threshold: u64,
    dups: bool,
    reorder_threshold: u64,
    reorders: bool,
    /// A packet held back to go after the next one.
    held: Option<(Packet, u64)>,
    /// Token bucket of the cap (packets), and when it was last filled.
    tokens: f64,
    last_ns: Option<u64>,
}

/// The cap's bucket: `depth` packets if given, else 1 ms of packets (at
/// least 32), the queue a device has in front of its bottleneck.
fn cap_depth(cap_pps: f64, depth: Option<u32>) -> f64 {
    depth.map_or((cap_pps / 1000.0).max(32.0), |d| d.max(1) as f64)
}

impl TxQueue for LinkTx {
    fn tx_burst(&mut self, pkts: &mut Batch, pool: &mut PoolCache) -> usize {
        let now = self.shared.clock.now_ns();
        if let Some(cap) = self.shared.cfg.cap_pps {
            let last = self.last_ns.unwrap_or(now);
            self.tokens = (self.tokens + (now - last) as f64 * cap / 1e9)
                .min(cap_depth(cap, self.shared.cfg.cap_depth));
            self.last_ns = Some(now);
        }
        let due = now + self.shared.cfg.delay_ns;
        let ring = &self.shared.ring;
        let counters = &self.shared.counters;
        // Only this handle pushes, so the room can only grow meanwhile.
        let taken = pkts.len().min(ring.capacity() - ring.len());
        let (mut bytes, mut lost) = (0u64, 0u64);
        let sent = taken as u64;
        for pkt in pkts.drain(..taken) {
            bytes += pkt.len() as u64;
            let over_cap = match self.shared.cfg.cap_pps {
                Some(_) if self.tokens < 1.0 => true,
                Some(_) => {
                    self.tokens -= 1.0;
                    false
                }
                None => false,
            };
            if over_cap || (self.lossy && self.rng.next_u64() < self.loss_threshold) {
                lost += 1;
                pool.free(pkt);
                continue;
            }
            // A duplicate is a copy in a fresh buffer right behind the
            // original (dropped quietly if the pool or the ring is full).
            let copy = if self.dups && self.rng.next_u64() < self.dup_threshold {
                pool.alloc().map(|mut c| {
                    c.fill(pkt.data());
                    c
                })
            } else {
                None
            };
            if self.reorders && self.held.is_none() && self.rng.next_u64() < self.reorder_threshold
            {
                self.held = Some((pkt, due));
                continue;
            }
            if let Err((pkt, _)) = ring.push((pkt, due)) {
                lost += 1;
                pool.free(pkt);
            }
            if let Some((h, h_due)) = self.held.take() {
                // Behind the packet that overtook it (due no earlier, so
                // the ring's due times stay in order).
                if let Err((h, _)) = ring.push((h, h_due.max(due))) {
                    lost += 1;
                    pool.free(h);
                }
            }
            if let Some(c) = copy {
                if let Err((c, _)) = ring.push((c, due)) {
                    pool.free(c);
                }
            }
        }
        bump(&counters.tx_packets, sent);
        bump(&counters.tx_bytes, bytes);
        if lost > 0 {
            bump(&counters.rx_dropped, lost);
        }
        if !pkts.is_empty() {
            bump(&counters.tx_dropped, pkts.len() as u64);
        }
        taken
    }

    fn flush(&mut self) {
        self.release_held();
    }
}

impl LinkTx {
    /// Sends a held-back packet now (nothing came to overtake it).
    fn release_held(&mut self) {
        if let Some((h, due)) = self.held.take() {
            if let Err((h, _)) = self.shared.ring.push((h, due)) {
                bump(&self.shared.counters.rx_dropped, 1);
                drop(h);
            }
        }
    }
}

impl Drop for LinkTx {
    fn drop(&mut self) {
        self.release_held();
        self.shared.tx_taken.store(false, Ordering::Release);
    }
}

struct LinkRx {
    shared: Arc<Shared>,
    /// The ring's head, taken out but not yet due.
    pending: Option<(Packet, u64)>,
}

impl RxQueue for LinkRx {
    fn rx_burst(&mut self, _pool: &mut PoolCache, out: &mut Batch) -> usize {
        let now = self.shared.clock.now_ns();
        let mut n = 0;
        let mut bytes = 0;
        while !out.is_full() {
            let (pkt, due) = match self.pending.take() {
                Some(p) => p,
                None => match self.shared.ring.pop() {
                    Some(p) => p,
                    None => break,
                },
            };
            if due > now {
                self.pending = Some((pkt, due));
                break;
            }
            bytes += pkt.len();
            out.push(pkt);
            n += 1;
        }
        if n > 0 {
            bump(&self.shared.counters.rx_packets, n as u64);
            bump(&self.shared.counters.rx_bytes, bytes as u64);
        }
        n
    }
}

impl Drop for LinkRx {
    fn drop(&mut self) {
        self.shared.rx_taken.store(false, Ordering::Release);
    }
}
