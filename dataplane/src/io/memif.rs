//! memif ports: the shared-memory packet interface of VPP, DPDK
//! (`net_memif`) and Network Service Mesh, for joining Sluice to a CNF on
//! the same host without a kernel in between.
//!
//! Two processes share a memory region and talk over a Unix socket
//! (`SOCK_SEQPACKET`) to set it up; see [`control`](self) for the
//! handshake and `memif/wire.rs` for the formats (memif 2.0). Roles:
//!
//! * **master** (DPDK: `server`): binds the socket and waits. It owns no
//!   packet memory: it maps what the slave sends.
//! * **slave** (`client`): connects (and reconnects, every
//!   [`MemifConfig::reconnect`], after the master goes away), creates the
//!   region (a sealed memfd: all rings, then all buffers), one eventfd per
//!   ring, and hands them over with `SCM_RIGHTS`.
//!
//! Each queue pair is two rings: S2M (slave to master) and M2S (master to
//! slave). The slave owns every buffer; on M2S it posts empty buffers by
//! advancing `head`, and the master fills them and advances `tail`; on S2M
//! the slave fills buffers and advances `head`, and the master consumes
//! them and advances `tail`. Each index has one writer, which stores it
//! with Release after writing the descriptors and buffers it publishes;
//! the reader loads it with Acquire. A frame longer than one buffer spans
//! several descriptors chained with the NEXT flag; received chains are
//! gathered into one Sluice buffer (up to [`DATA_ROOM`] bytes).
//!
//! Interrupts: a ring's receiver sets `MASK_INT` in the ring's flags when
//! it polls. After publishing frames, a transmitter signals the ring's
//! eventfd if the receiver has not set the mask (DPDK's and VPP's
//! interrupt mode). Sluice polls by default and sets the mask on its
//! receive rings; with [`MemifConfig::interrupt`] it leaves the mask clear
//! and [`MemifPort::wait_rx`] sleeps until the peer signals.
//!
//! Data path: copies between Sluice's pool buffers and the shared buffers
//! (no zero-copy). A burst makes one Acquire load and one Release store of
//! a ring index, reads or writes one 16-byte descriptor and copies one
//! frame per packet, and, only when the peer asks for interrupts, makes
//! one `write(2)` on the eventfd. Nothing is allocated or locked per
//! packet. A queue handle notices a new or lost connection by one load of
//! the port's generation counter per burst.
//!
//! Trust: descriptors written by the peer are read once and checked
//! against the mapped regions before any copy; a faulty peer can garble
//! frames but not make Sluice touch memory outside the regions. As with
//! every memif implementation, a peer that truncates its memfd under the
//! mapping can crash the process (the slave side seals its own memfd
//! against shrinking).
//!
//! Sets on receive: `Packet::rx_port` (`port_id`), `Packet::rx_queue`;
//! `rss_hash` is 0. Counters per queue: `rx_dropped` counts frames lost
//! (longer than a buffer, malformed descriptors, shorter than an Ethernet
//! header); `tx_dropped` counts frames left with the caller (ring full, or
//! not connected).

mod control;
mod shm;
pub mod wire;

use super::{bump, Port, PortError, PortInfo, PortStats, QueueCounters, RxQueue, TxQueue};
use crate::buf::{Batch, Packet, PoolCache, DATA_ROOM};
use control::{Connection, Control};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use shm::{Region, Ring};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Which end of the memif a port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemifRole {
    /// Listens on the socket; maps the slave's memory.
    Master,
    /// Connects to the socket; creates the memory.
    Slave,
}

/// How to make a memif port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemifConfig {
    /// Stamped into `Packet::rx_port` of every received packet.
    pub port_id: u16,
    pub role: MemifRole,
    /// The control socket: a path, or `@NAME` for the abstract namespace
    /// (DPDK's `socket-abstract=yes`).
    pub socket: String,
    /// The interface id both sides must agree on.
    pub id: u32,
    /// Queue pairs. A slave uses the smaller of this and what the master
    /// offers; a master accepts up to this many.
    pub queues: u16,
    /// log2 of descriptors per ring (slave; the master takes the slave's).
    pub log2_ring_size: u8,
    /// Bytes per shared buffer (slave; the master takes the slave's).
    pub buffer_size: u32,
    /// Up to 23 bytes the slave must present (empty: none).
    pub secret: String,
    /// Ask the peer to signal each ring's eventfd (interrupt mode) instead
    /// of polling.
    pub interrupt: bool,
    /// The interface name told to the peer.
    pub name: String,
    /// Largest IP packet the port carries.
    pub mtu: u16,
    /// A slave's wait between connection attempts.
    pub reconnect: Duration,
}

impl Default for MemifConfig {
    fn default() -> Self {
        MemifConfig {
            port_id: 0,
            role: MemifRole::Master,
            socket: "/run/sluice/memif.sock".into(),
            id: 0,
            queues: 1,
            log2_ring_size: 10,
            buffer_size: 2048,
            secret: String::new(),
            interrupt: false,
            name: "sluice".into(),
            mtu: 1500,
            reconnect: control::DEFAULT_RECONNECT,
        }
    }
}

/// The connection generation, alone on its cache lines: queue handles
/// read it every burst and the control thread writes it only on connect
/// and disconnect.
#[repr(align(128))]
struct Generation(AtomicU64);

#[repr(align(128))]
#[derive(Default)]
struct QueueSlot {
    counters: QueueCounters,
    rx_taken: AtomicBool,
    tx_taken: AtomicBool,
}

/// What the port, its control thread and its queue handles share.
pub(crate) struct Shared {
    generation: Generation,
    link: Mutex<Option<Arc<Connection>>>,
    status: Mutex<String>,
    stop: AtomicBool,
    queues: Box<[QueueSlot]>,
}

impl Shared {
    /// Installs (or, with `None`, withdraws) the connection the queues use.
    fn publish(&self, conn: Option<Arc<Connection>>) {
        let up = conn.is_some();
        *self.link.lock().unwrap_or_else(|e| e.into_inner()) = conn;
        self.generation.0.fetch_add(1, Ordering::Release);
        if up {
            self.set_status("connected".into());
        }
    }

    fn set_status(&self, s: String) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    fn connection(&self) -> Option<Arc<Connection>> {
        self.link.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A memif interface as a port. See the module docs.
pub struct MemifPort {
    name: String,
    cfg: MemifConfig,
    shared: Arc<Shared>,
    wake: OwnedFd,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl MemifPort {
    /// Opens port `name`: a master binds its socket now (and fails if it
    /// cannot); a slave starts connecting in the background. Either way
    /// the link comes up when the peer completes the handshake.
    pub fn open(name: &str, cfg: MemifConfig) -> Result<Arc<MemifPort>, PortError> {
        let fail = |what: &str| PortError::Backend(format!("memif {name}: {what}"));
        if cfg.queues == 0 || cfg.queues > 256 {
            return Err(fail("queues must be 1 to 256"));
        }
        if !(1..=control::MAX_LOG2_RING_SIZE).contains(&cfg.log2_ring_size) {
            return Err(fail(&format!(
                "log2_ring_size must be 1 to {}",
                control::MAX_LOG2_RING_SIZE
            )));
        }
        if !(64..=65536).contains(&cfg.buffer_size) || !cfg.buffer_size.is_multiple_of(64) {
            return Err(fail(
                "buffer_size must be a multiple of 64 from 64 to 65536",
            ));
        }
        if cfg.secret.len() >= wire::SECRET_SIZE {
            return Err(fail("a secret has at most 23 bytes"));
        }
        let listener = match cfg.role {
            MemifRole::Master => Some(
                control::listen(&cfg.socket)
                    .map_err(|e| fail(&format!("listening on {}: {e}", cfg.socket)))?,
            ),
            MemifRole::Slave => None,
        };
        let wake = shm::eventfd().map_err(|e| fail(&format!("eventfd: {e}")))?;
        let shared = Arc::new(Shared {
            generation: Generation(AtomicU64::new(0)),
            link: Mutex::new(None),
            status: Mutex::new("waiting for the peer".into()),
            stop: AtomicBool::new(false),
            queues: (0..cfg.queues).map(|_| QueueSlot::default()).collect(),
        });
        let control = Control {
            shared: shared.clone(),
            cfg: cfg.clone(),
            listener,
            wake: wake.try_clone().map_err(|e| fail(&e.to_string()))?,
        };
        let thread = std::thread::Builder::new()
            .name(format!("memif-{name}"))
            .spawn(move || control.run())
            .map_err(|e| fail(&format!("control thread: {e}")))?;
        Ok(Arc::new(MemifPort {
            name: name.to_string(),
            cfg,
            shared,
            wake,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Whether the handshake with the peer has completed.
    pub fn is_connected(&self) -> bool {
        self.shared.connection().is_some()
    }

    /// Waits up to `timeout` for the link to come up.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.is_connected() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// The link's state in words: "connected", or why it is not (the
    /// peer's or our own DISCONNECT reason, a connect error).
    pub fn status(&self) -> String {
        self.shared
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The peer's application name and interface name, when connected.
    pub fn peer(&self) -> Option<(String, String)> {
        self.shared
            .connection()
            .map(|c| (c.peer_name.clone(), c.peer_interface.clone()))
    }

    /// Queue pairs in use on the current connection (rx, tx): fewer than
    /// configured when the peer offers fewer.
    pub fn connected_queues(&self) -> (u16, u16) {
        self.shared.connection().map_or((0, 0), |c| {
            let count = |f: &dyn Fn(u16) -> bool| (0..self.cfg.queues).filter(|&q| f(q)).count();
            (
                count(&|q| c.rx_ring(q).is_some()) as u16,
                count(&|q| c.tx_ring(q).is_some()) as u16,
            )
        })
    }

    /// In interrupt mode: sleeps until the peer signals receive queue
    /// `queue` or `timeout` passes; true if it signalled. Returns at once
    /// with false when the link is down.
    pub fn wait_rx(&self, queue: u16, timeout: Duration) -> bool {
        let Some(conn) = self.shared.connection() else {
            return false;
        };
        let Some(side) = conn.rx_ring(queue) else {
            return false;
        };
        shm::wait(
            &side.event,
            timeout.as_millis().min(i32::MAX as u128) as i32,
        )
    }

    fn take(&self, queue: u16, rx: bool) -> Result<(), PortError> {
        let q = self
            .shared
            .queues
            .get(queue as usize)
            .ok_or_else(|| PortError::NoSuchQueue {
                port: self.name.clone(),
                queue,
                queues: self.cfg.queues,
            })?;
        let flag = if rx { &q.rx_taken } else { &q.tx_taken };
        if flag.swap(true, Ordering::Acquire) {
            return Err(PortError::QueueTaken {
                port: self.name.clone(),
                queue,
            });
        }
        Ok(())
    }
}

impl Drop for MemifPort {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let one = 1u64;
        // SAFETY: write(2) of 8 bytes to our own eventfd, waking the thread.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl core::fmt::Debug for MemifPort {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemifPort")
            .field("name", &self.name)
            .field("cfg", &self.cfg)
            .field("status", &self.status())
            .finish()
    }
}

impl Port for MemifPort {
    fn info(&self) -> PortInfo {
        let [hi, lo] = self.cfg.port_id.to_be_bytes();
        PortInfo {
            name: self.name.clone(),
            driver: "memif",
            mac: [0x02, 0x5c, 0x6d, 0x66, hi, lo],
            mtu: self.cfg.mtu,
            rx_queues: self.cfg.queues,
            tx_queues: self.cfg.queues,
            link_up: self.is_connected(),
            speed_mbps: 0,
        }
    }

    fn stats(&self) -> PortStats {
        let mut total = PortStats::default();
        for q in self.shared.queues.iter() {
            total += q.counters.snapshot();
        }
        total
    }

    fn rx_queue(&self, queue: u16) -> Result<Box<dyn RxQueue>, PortError> {
        self.take(queue, true)?;
        Ok(Box::new(MemifRx {
            q: Handle::new(self.shared.clone(), queue),
            spare: None,
            port_id: self.cfg.port_id,
        }))
    }

    fn tx_queue(&self, queue: u16) -> Result<Box<dyn TxQueue>, PortError> {
        self.take(queue, false)?;
        Ok(Box::new(MemifTx {
            q: Handle::new(self.shared.clone(), queue),
        }))
    }
}

/// Where a queue handle finds the buffers of its ring.
#[derive(Clone, Copy)]
enum Buffers {
    /// The slave's own layout: slot `i` at `base + i * size`, which is
    /// `offset + i * size` in region 0.
    Own {
        base: *mut u8,
        size: u32,
        offset: u32,
    },
    /// The master's view: each descriptor names a region and an offset,
    /// checked against the regions' lengths.
    Peer {
        regions: *const Region,
        count: usize,
    },
}

impl Buffers {
    /// The buffer of `slot` described by `d`, if `len` bytes fit in it.
    #[inline(always)]
    fn get(&self, slot: u16, mask: u16, d: &shm::Desc, len: u32) -> Option<*mut u8> {
        match *self {
            Buffers::Own { base, size, .. } => (len <= size).then(|| {
                // SAFETY: the slave laid out one `size`-byte buffer per
                // slot inside region 0; `slot & mask` is a slot.
                unsafe { base.add((slot & mask) as usize * size as usize) }
            }),
            Buffers::Peer { regions, count } => {
                if d.region as usize >= count {
                    return None;
                }
                // SAFETY: `regions` points to the connection's `count`
                // regions, which the handle's `Arc` keeps alive.
                unsafe { (*regions.add(d.region as usize)).buffer(d.offset, len) }
            }
        }
    }
}

/// A queue's binding to the current connection.
struct Bound {
    /// Keeps the regions mapped while this handle uses them.
    _conn: Arc<Connection>,
    ring: Ring,
    event: RawFd,
    buffers: Buffers,
    role: MemifRole,
    /// Next slot this side reads (rx) or writes (tx).
    cursor: u16,
}

/// What receive and transmit handles share: the port, the queue, and the
/// connection they last saw.
struct Handle {
    shared: Arc<Shared>,
    queue: u16,
    seen: u64,
    bound: Option<Bound>,
}

// SAFETY: `Bound` holds raw pointers into regions its `Arc<Connection>`
// keeps mapped; the handle is used by one thread at a time.
unsafe impl Send for Handle {}

impl Handle {
    fn new(shared: Arc<Shared>, queue: u16) -> Handle {
        Handle {
            shared,
            queue,
            seen: u64::MAX,
            bound: None,
        }
    }

    /// Follows the port to a new connection, or off a lost one.
    #[inline(always)]
    fn refresh(&mut self, rx: bool) {
        let g = self.shared.generation.0.load(Ordering::Acquire);
        if g != self.seen {
            self.rebind(g, rx);
        }
    }

    #[cold]
    fn rebind(&mut self, g: u64, rx: bool) {
        self.seen = g;
        self.bound = None;
        let Some(conn) = self.shared.connection() else {
            return;
        };
        let side = if rx {
            conn.rx_ring(self.queue)
        } else {
            conn.tx_ring(self.queue)
        };
        let Some(side) = side else { return };
        let ring = side.ring;
        let buffers = match conn.role {
            MemifRole::Slave => Buffers::Own {
                base: conn.regions[0].at(side.buffers as usize),
                size: conn.buffer_size,
                offset: side.buffers,
            },
            MemifRole::Master => Buffers::Peer {
                regions: conn.regions.as_ptr(),
                count: conn.regions.len(),
            },
        };
        // Where this side stands, from the index it writes (so a handle
        // taken again mid-connection carries on where the last one left).
        let cursor = match (conn.role, rx) {
            (MemifRole::Master, _) => ring.tail().load(Ordering::Acquire),
            (MemifRole::Slave, false) => ring.head().load(Ordering::Acquire),
            (MemifRole::Slave, true) => ring
                .head()
                .load(Ordering::Acquire)
                .wrapping_sub(ring.size()),
        };
        self.bound = Some(Bound {
            ring,
            event: side.event.as_raw_fd(),
            buffers,
            role: conn.role,
            cursor,
            _conn: conn.clone(),
        });
    }

    fn counters(&self) -> &QueueCounters {
        &self.shared.queues[self.queue as usize].counters
    }
}

struct MemifRx {
    q: Handle,
    /// A buffer kept from a lost frame, so a bad peer costs no allocation.
    spare: Option<Packet>,
    port_id: u16,
}

impl RxQueue for MemifRx {
    fn rx_burst(&mut self, pool: &mut PoolCache, out: &mut Batch) -> usize {
        self.q.refresh(true);
        let Some(b) = self.q.bound.as_mut() else {
            return 0;
        };
        let ring = b.ring;
        let mask = ring.mask();
        let end = match b.role {
            MemifRole::Master => ring.head().load(Ordering::Acquire),
            MemifRole::Slave => ring.tail().load(Ordering::Acquire),
        };
        let mut cur = b.cursor;
        if cur == end {
            return 0;
        }
        // A peer claiming more than a ring's worth is faulty: read at most
        // one ring.
        let end = if end.wrapping_sub(cur) > ring.size() {
            cur.wrapping_add(ring.size())
        } else {
            end
        };
        let start = out.len();
        let (mut bytes, mut lost) = (0u64, 0u64);
        while cur != end && !out.is_full() {
            let Some(mut pkt) = self.spare.take().or_else(|| pool.alloc()) else {
                break; // no buffer: the frames wait in the ring
            };
            let mut len = 0usize;
            let mut ok = true;
            {
                let frame = pkt.reset(DATA_ROOM).expect("DATA_ROOM fits");
                loop {
                    let slot = cur;
                    let d = ring.desc(slot);
                    cur = cur.wrapping_add(1);
                    let n = d.length as usize;
                    match b.buffers.get(slot, mask, &d, d.length) {
                        Some(src) if ok && len + n <= DATA_ROOM => {
                            // SAFETY: `src` is `n` bytes inside a mapped
                            // region (checked by `get`), the peer handed
                            // the slot over (index loaded with Acquire),
                            // and `frame[len..len + n]` is ours.
                            unsafe {
                                core::ptr::copy_nonoverlapping(src, frame.as_mut_ptr().add(len), n)
                            };
                            len += n;
                        }
                        _ => ok = false,
                    }
                    if d.flags & wire::DESC_FLAG_NEXT == 0 {
                        break;
                    }
                    if cur == end {
                        ok = false; // a chain cut short
                        break;
                    }
                }
            }
            if !ok || len < 14 {
                lost += 1;
                self.spare = Some(pkt);
                continue;
            }
            pkt.truncate(len);
            pkt.rx_port = self.port_id;
            pkt.rx_queue = self.q.queue;
            pkt.rss_hash = 0;
            bytes += len as u64;
            out.push(pkt);
        }
        b.cursor = cur;
        match b.role {
            // Hand the slots back.
            MemifRole::Master => ring.tail().store(cur, Ordering::Release),
            MemifRole::Slave => {
                // Post the consumed buffers again, at full length.
                let size = match b.buffers {
                    Buffers::Own { size, .. } => size,
                    Buffers::Peer { .. } => unreachable!("a slave owns its buffers"),
                };
                let target = cur.wrapping_add(ring.size());
                let mut head = ring.head().load(Ordering::Relaxed);
                while head != target {
                    ring.set_length(head, size);
                    head = head.wrapping_add(1);
                }
                ring.head().store(head, Ordering::Release);
            }
        }
        let n = out.len() - start;
        let c = self.q.counters();
        if n > 0 {
            bump(&c.rx_packets, n as u64);
            bump(&c.rx_bytes, bytes);
        }
        if lost > 0 {
            bump(&c.rx_dropped, lost);
        }
        n
    }
}

impl Drop for MemifRx {
    fn drop(&mut self) {
        self.q.shared.queues[self.q.queue as usize]
            .rx_taken
            .store(false, Ordering::Release);
    }
}

struct MemifTx {
    q: Handle,
}

impl TxQueue for MemifTx {
    fn tx_burst(&mut self, pkts: &mut Batch, pool: &mut PoolCache) -> usize {
        self.q.refresh(false);
        let Some(b) = self.q.bound.as_mut() else {
            if !pkts.is_empty() {
                bump(&self.q.counters().tx_dropped, pkts.len() as u64);
            }
            return 0;
        };
        let ring = b.ring;
        let mask = ring.mask();
        let mut cur = b.cursor;
        let free = match b.role {
            // Buffers the slave has posted and we have not filled.
            MemifRole::Master => ring.head().load(Ordering::Acquire).wrapping_sub(cur),
            // Slots the master has handed back.
            MemifRole::Slave => ring
                .size()
                .wrapping_sub(cur.wrapping_sub(ring.tail().load(Ordering::Acquire))),
        };
        let mut free = free.min(ring.size());
        let (mut taken, mut bytes) = (0usize, 0u64);
        'packets: for pkt in pkts.iter() {
            let frame = pkt.data();
            let (mut off, mut used) = (0usize, 0u16);
            loop {
                if used == free {
                    break 'packets; // ring full: the rest stays with the caller
                }
                let slot = cur.wrapping_add(used);
                let mut d = ring.desc(slot);
                let cap = match b.buffers {
                    Buffers::Own { size, .. } => size,
                    Buffers::Peer { .. } => d.length,
                };
                let n = (frame.len() - off).min(cap as usize);
                let Some(dst) = b.buffers.get(slot, mask, &d, n as u32) else {
                    break 'packets; // a descriptor outside the regions
                };
                if n == 0 && off < frame.len() {
                    break 'packets; // a zero-length buffer: the peer is confused
                }
                // SAFETY: `dst` has room for `n` bytes inside a mapped
                // region (checked by `get`), the slot is ours until we
                // publish it, and `frame[off..off + n]` is readable.
                unsafe { core::ptr::copy_nonoverlapping(frame.as_ptr().add(off), dst, n) };
                off += n;
                used += 1;
                d.length = n as u32;
                d.flags = if off < frame.len() {
                    wire::DESC_FLAG_NEXT
                } else {
                    0
                };
                if let Buffers::Own { size, offset, .. } = b.buffers {
                    // Our own layout, whatever the peer left in the slot.
                    d.region = 0;
                    d.offset = offset + (slot & mask) as u32 * size;
                }
                ring.set_desc(slot, d);
                if off == frame.len() {
                    break;
                }
            }
            cur = cur.wrapping_add(used);
            free -= used;
            taken += 1;
            bytes += frame.len() as u64;
        }
        if taken > 0 {
            b.cursor = cur;
            match b.role {
                MemifRole::Master => ring.tail().store(cur, Ordering::Release),
                MemifRole::Slave => ring.head().store(cur, Ordering::Release),
            }
            if ring.flags().load(Ordering::Relaxed) & wire::RING_FLAG_MASK_INT == 0 {
                let one = 1u64;
                // SAFETY: write(2) of 8 bytes to the ring's eventfd, kept
                // open by the connection this handle holds.
                unsafe { libc::write(b.event, (&one as *const u64).cast(), 8) };
            }
        }
        for pkt in pkts.drain(..taken) {
            pool.free(pkt);
        }
        let c = self.q.counters();
        if taken > 0 {
            bump(&c.tx_packets, taken as u64);
            bump(&c.tx_bytes, bytes);
        }
        if !pkts.is_empty() {
            bump(&c.tx_dropped, pkts.len() as u64);
        }
        taken
    }
}

impl Drop for MemifTx {
    fn drop(&mut self) {
        self.q.shared.queues[self.q.queue as usize]
            .tx_taken
            .store(false, Ordering::Release);
    }
}
