//! Ports: the one abstraction every I/O backend implements.
//!
//! A [`Port`] is a device with some receive and transmit queues. A worker
//! takes exclusive handles to the queues it serves ([`Port::rx_queue`],
//! [`Port::tx_queue`]); a queue handle is used by one thread only, so bursts
//! need no locks, as with DPDK's per-queue `rte_eth_rx_burst`. Port counters
//! are kept per queue by the owning thread and summed by [`Port::stats`].
//!
//! Backends: [`mem`] (in-process rings with software RSS, replay and sink
//! modes), [`pcap`] (read and write capture files), [`afpacket`] (a Linux
//! interface through memory-mapped AF_PACKET rings), `afxdp` (a Linux
//! interface through AF_XDP sockets, Linux only), [`tap`] (a TAP device
//! the port creates), [`memif`] (shared-memory interfaces to VPP, DPDK and
//! other CNFs, either role) and, with the `dpdk` cargo feature, `dpdk` (any
//! device DPDK drives).

pub mod afpacket;
#[cfg(target_os = "linux")]
pub mod afxdp;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod mem;
pub mod memif;
mod netdev;
pub mod pcap;
pub mod rss;
pub mod tap;

use crate::buf::{Batch, PoolCache};
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use serde::Serialize;

/// What a port says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortInfo {
    pub name: String,
    /// The backend: "mem", "pcap", ...
    pub driver: &'static str,
    pub mac: [u8; 6],
    /// Largest IP packet (L3 MTU) the port carries.
    pub mtu: u16,
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub link_up: bool,
    /// Link speed in Mbit/s, 0 if unknown or not meaningful.
    pub speed_mbps: u32,
}

/// Counters of one port (the sum over its queues).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Received frames lost before the dataplane saw them (ring full, no
    /// buffer, truncated capture record).
    pub rx_dropped: u64,
    /// Frames handed to `tx_burst` that the port did not take.
    pub tx_dropped: u64,
}

impl core::ops::AddAssign for PortStats {
    fn add_assign(&mut self, o: PortStats) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.rx_dropped += o.rx_dropped;
        self.tx_dropped += o.tx_dropped;
    }
}

/// Counters written by exactly one thread (the queue's owner) and read by any.
///
/// Single-writer: an update is a relaxed load and store, not a locked
/// read-modify-write, so it costs what a plain `+=` costs.
#[derive(Debug, Default)]
pub struct QueueCounters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub rx_dropped: AtomicU64,
    pub tx_dropped: AtomicU64,
}

/// Adds `n` to a counter that only the calling thread writes.
#[inline(always)]
pub fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl QueueCounters {
    pub fn snapshot(&self) -> PortStats {
        PortStats {
            rx_packets: self.rx_packets.load(Ordering::Relaxed),
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
            tx_packets: self.tx_packets.load(Ordering::Relaxed),
            tx_bytes: self.tx_bytes.load(Ordering::Relaxed),
            rx_dropped: self.rx_dropped.load(Ordering::Relaxed),
            tx_dropped: self.tx_dropped.load(Ordering::Relaxed),
        }
    }
}

/// Why a port or queue could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortError {
    /// The queue number is past the port's queue count.
    NoSuchQueue {
        port: String,
        queue: u16,
        queues: u16,
    },
    /// Another worker already holds this queue.
    QueueTaken { port: String, queue: u16 },
    /// The backend failed (file, socket, device); the text says how.
    Backend(String),
}

impl fmt::Display for PortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortError::NoSuchQueue {
                port,
                queue,
                queues,
            } => {
                write!(f, "port {port}: no queue {queue} (it has {queues})")
            }
            PortError::QueueTaken { port, queue } => {
                write!(f, "port {port}: queue {queue} is already in use")
            }
            PortError::Backend(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for PortError {}

/// A device with receive and transmit queues.
pub trait Port: Send + Sync {
    fn info(&self) -> PortInfo;
    /// Counters summed over all queues.
    fn stats(&self) -> PortStats;
    /// Takes the exclusive handle to receive queue `queue`.
    fn rx_queue(&self, queue: u16) -> Result<Box<dyn RxQueue>, PortError>;
    /// Takes the exclusive handle to transmit queue `queue`.
    fn tx_queue(&self, queue: u16) -> Result<Box<dyn TxQueue>, PortError>;
}

/// One receive queue, owned by one worker.
pub trait RxQueue: Send {
    /// Appends up to `out.remaining_capacity()` received packets to `out`,
    /// allocating buffers from `pool` where the backend copies, and returns
    /// how many it added. Never blocks.
    fn rx_burst(&mut self, pool: &mut PoolCache, out: &mut Batch) -> usize;
}

/// One transmit queue, owned by one worker.
pub trait TxQueue: Send {
    /// Transmits packets from the front of `pkts`, removing those it took
    /// (buffers it is done with go back to `pool`); returns how many. Packets
    /// left in `pkts` were not sent: the caller retries or drops them.
    fn tx_burst(&mut self, pkts: &mut Batch, pool: &mut PoolCache) -> usize;

    /// Pushes out anything the backend buffers internally (a capture file's
    /// write buffer, a socket's pending kick). Called on the drain timer.
    fn flush(&mut self) {}
}
