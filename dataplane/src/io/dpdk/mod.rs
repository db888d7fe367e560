//! DPDK ports: any ethdev DPDK drives (a NIC by PCI address, or a virtual
//! device such as `net_null`, `net_ring`, `net_pcap`, `net_af_packet`),
//! behind the `dpdk` cargo feature.
//!
//! Start-up, once per process: [`Dpdk::init`] runs `rte_eal_init` with the
//! given EAL arguments and creates the one mbuf pool every DPDK port
//! receives into. `rte_eal_init` pins the calling thread to the main
//! lcore's CPU; `init` puts the thread's previous affinity back afterwards,
//! so threads it starts later (workers pin themselves; the control plane
//! does not) are not confined to that CPU. Without a core list (`-l`,
//! `-c`, `--lcores`) in the arguments, `init` adds `-l CPU` with the first
//! CPU the calling thread may run on: EAL needs only its main lcore, as
//! Sluice's workers are its own threads. EAL cannot be initialised twice
//! in one process: a second `init` with the same arguments returns the
//! first, with other arguments it fails.
//!
//! Then [`DpdkPort::open`] finds the device by name (probing it first when
//! it is a virtual device not named in the EAL arguments), configures the
//! requested receive and transmit queues (RSS over IP/TCP/UDP when it has
//! more than one receive queue and the device hashes) and starts it.
//!
//! Packets are mbufs, zero-copy: the pool's mbufs have Sluice's buffer
//! layout (a 128-byte header, then [`HEADROOM`] bytes in front of
//! [`DATA_ROOM`](crate::buf::DATA_ROOM), no private area), so a received
//! mbuf becomes a [`Packet`](crate::buf::Packet) of the [`ExternalPool`]
//! "dpdk" that points at its data buffer, and a packet of that pool is
//! transmitted by handing its mbuf back to the device with the frame window
//! the pipeline left (`data_off`, `data_len`). Freeing such a packet
//! anywhere (a drop, a non-DPDK port) frees the mbuf. Packets from Sluice's
//! own pools (the slow path's replies, frames received on other backends)
//! are copied into a fresh mbuf on transmit, and so are received mbufs that
//! are not plain single-segment buffers of our pool (from a device that
//! brought its own). [`DpdkPortConfig::zero_copy`] off copies every
//! received frame into the worker's pool instead, for comparison.
//!
//! Sets on receive: `Packet::rx_port` (the configured `port_id`),
//! `rx_queue`, `rss_hash` (the device's, 0 when it gave none). Multi-segment
//! packets are dropped and counted in `rx_dropped` (the port never enables
//! scatter, so only a device that ignores that sends them), as are frames
//! that found no buffer. `rx_dropped` also includes the device's own
//! `imissed` and `rx_nombuf`.
//!
//! Threads: a worker thread that uses a queue is registered with EAL
//! (`rte_thread_register`, which leaves its affinity alone) the first time
//! it does, so mbuf allocation and freeing on it go through a per-lcore
//! mempool cache rather than the pool's shared ring; it is unregistered,
//! and its cache flushed, when the thread exits.
//!
//! Cost: one call into the C shim per burst in each direction, plus one
//! per packet that is freed rather than sent (`rte_pktmbuf_free`) or
//! copied. After a thread's first burst (which registers it), no
//! allocation, lock or system call happens in `rx_burst` or `tx_burst`.

mod ffi;

use super::{bump, Port, PortError, PortInfo, PortStats, QueueCounters, RxQueue, TxQueue};
use crate::buf::{Batch, ExternalPool, PoolCache, BUF_STRIDE, BURST_SIZE, HEADROOM};
use core::ffi::{c_char, c_int};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};
use std::cell::Cell;
use std::ffi::CString;
use std::sync::{Arc, Mutex};

/// How to start DPDK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkConfig {
    /// EAL arguments, without the program name: for example
    /// `--in-memory --no-pci --vdev net_null0`, or `--no-huge -m 512
    /// --file-prefix sluice --no-pci` without hugepages.
    pub eal_args: Vec<String>,
    /// Mbufs in the pool all DPDK ports receive into. It must cover every
    /// receive descriptor of every queue, every per-lcore cache and every
    /// packet in flight.
    pub mbufs: u32,
    /// Mbufs each lcore's mempool cache holds (at most 512).
    pub mbuf_cache: u32,
}

impl Default for DpdkConfig {
    fn default() -> Self {
        DpdkConfig {
            eal_args: Vec::new(),
            mbufs: 32 * 1024 - 1,
            mbuf_cache: 256,
        }
    }
}

/// The initialised EAL and its mbuf pool; lives as long as the process.
#[derive(Debug)]
pub struct Dpdk {
    config: DpdkConfig,
    pool: NonNull<ffi::RteMempool>,
    /// Received mbufs as Sluice packets.
    mbufs: ExternalPool,
    /// The ethdev ports some [`DpdkPort`] holds open.
    open_ports: Mutex<Vec<u16>>,
}

// SAFETY: the mempool is DPDK's thread-safe pool (its ring is multi-producer,
// multi-consumer); the pointer is never freed.
unsafe impl Send for Dpdk {}
// SAFETY: as above; the rest is behind a mutex.
unsafe impl Sync for Dpdk {}

static EAL: Mutex<Option<&'static Dpdk>> = Mutex::new(None);

fn rte_error(what: &str) -> PortError {
    // SAFETY: reads the calling thread's rte_errno.
    let e = unsafe { ffi::sluice_errno() };
    PortError::Backend(format!("{what}: {}", ffi::strerror(e)))
}

impl Dpdk {
    /// Initialises EAL with `config.eal_args` and creates the mbuf pool.
    /// See the module docs for what happens to the calling thread.
    pub fn init(config: &DpdkConfig) -> Result<&'static Dpdk, PortError> {
        let mut slot = EAL.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dpdk) = *slot {
            if dpdk.config == *config {
                return Ok(dpdk);
            }
            return Err(PortError::Backend(format!(
                "DPDK is already initialised in this process with {:?}; it cannot be initialised again with {:?}",
                dpdk.config, config
            )));
        }
        // SAFETY: pure functions of the build's headers.
        let (header, headroom) = unsafe {
            (
                ffi::sluice_mbuf_header_size(),
                ffi::sluice_pktmbuf_headroom(),
            )
        };
        if header != 128 || headroom as usize != HEADROOM {
            return Err(PortError::Backend(format!(
                "DPDK's mbuf header is {header} bytes and its headroom {headroom}; Sluice needs 128 and {HEADROOM}"
            )));
        }
        let affinity = Affinity::current();
        let mut eal_args = config.eal_args.clone();
        // Sluice's workers are its own threads, so EAL needs one lcore (the
        // main one); without a core list it would start an idle thread for
        // every allowed CPU.
        let has_cores = eal_args.iter().any(|a| {
            a == "-l"
                || a == "-c"
                || a.starts_with("--lcores")
                || a.starts_with("-l") && a.len() > 2
        });
        if !has_cores {
            let cpu = affinity.as_ref().and_then(Affinity::first).unwrap_or(0);
            eal_args.splice(0..0, ["-l".to_string(), cpu.to_string()]);
        }
        let mut args = vec![CString::new("sluice").expect("no NUL")];
        for a in &eal_args {
            args.push(CString::new(a.as_str()).map_err(|_| {
                PortError::Backend(format!("EAL argument {a:?} contains a NUL byte"))
            })?);
        }
        // EAL may keep pointers into argv and reorders it: both the strings
        // and the array live as long as the process.
        let args: &'static [CString] = Vec::leak(args);
        let argv: &'static mut [*mut c_char] = Vec::leak(
            args.iter()
                .map(|a| a.as_ptr() as *mut c_char)
                .chain(core::iter::once(core::ptr::null_mut()))
                .collect(),
        );
        // SAFETY: argv is a NULL-terminated array of NUL-terminated strings
        // that outlive the process's use of them; the EAL lock above (and
        // the `EAL` slot) make this the only call in the process.
        let rc = unsafe { ffi::rte_eal_init((argv.len() - 1) as c_int, argv.as_mut_ptr()) };
        if let Some(a) = affinity {
            a.restore();
        }
        if rc < 0 {
            return Err(rte_error(&format!("rte_eal_init({})", eal_args.join(" "))));
        }
        let name = CString::new("sluice_mbufs").expect("no NUL");
        // SAFETY: EAL is initialised; the name is a valid C string. The
        // data room is one Sluice buffer: HEADROOM in front, DATA_ROOM after.
        let pool = unsafe {
            ffi::sluice_pool_create(
                name.as_ptr(),
                config.mbufs,
                config.mbuf_cache.min(512),
                BUF_STRIDE as u16,
            )
        };
        let pool = NonNull::new(pool).ok_or_else(|| {
            rte_error(&format!(
                "creating a pool of {} mbufs (EAL memory: -m or hugepages)",
                config.mbufs
            ))
        })?;
        // SAFETY: `release_mbuf` frees an mbuf of any pool, on any thread,
        // and every buffer wrapped is a received mbuf handed over whole.
        let mbufs = unsafe { ExternalPool::new("dpdk", release_mbuf) };
        let dpdk: &'static Dpdk = Box::leak(Box::new(Dpdk {
            config: config.clone(),
            pool,
            mbufs,
            open_ports: Mutex::new(Vec::new()),
        }));
        *slot = Some(dpdk);
        Ok(dpdk)
    }

    /// The instance [`Dpdk::init`] made, if it ran.
    pub fn get() -> Option<&'static Dpdk> {
        *EAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> &DpdkConfig {
        &self.config
    }

    /// Mbufs free in the pool (shared ring plus lcore caches).
    pub fn mbufs_available(&self) -> u32 {
        // SAFETY: the pool lives as long as the process.
        unsafe { ffi::sluice_pool_available(self.pool.as_ptr()) }
    }

    fn pool_ptr(&self) -> *mut ffi::RteMempool {
        self.pool.as_ptr()
    }
}

/// How a packet carrying an mbuf gives it back.
///
/// # Safety
/// `buf` must be the data buffer of an mbuf with no private area, owned by
/// the caller, and not used afterwards.
unsafe fn release_mbuf(buf: NonNull<u8>) {
    // SAFETY: per the contract, the mbuf header precedes `buf` and is ours.
    unsafe { ffi::sluice_mbuf_free(buf.as_ptr()) }
}

/// A thread's CPU affinity, to put back after `rte_eal_init` changed it.
struct Affinity(libc::cpu_set_t);

impl Affinity {
    fn current() -> Option<Affinity> {
        // SAFETY: cpu_set_t is plain data; zeroed is an empty set.
        let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
        // SAFETY: the set is as large as the size passed.
        let rc = unsafe {
            libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set)
        };
        (rc == 0).then_some(Affinity(set))
    }

    fn first(&self) -> Option<usize> {
        // SAFETY: CPU_ISSET only reads the set.
        (0..libc::CPU_SETSIZE as usize).find(|&c| unsafe { libc::CPU_ISSET(c, &self.0) })
    }

    fn restore(&self) {
        // SAFETY: as above. Failure leaves the thread pinned, which is safe.
        unsafe {
            libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &self.0);
        }
    }
}

/// The shape of a DPDK port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkPortConfig {
    /// Stamped into `Packet::rx_port` of every received packet.
    pub port_id: u16,
    pub rx_queues: u16,
    pub tx_queues: u16,
    /// Descriptors per queue (the driver may round them).
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
    /// Receive frames addressed to any MAC (on by default: a router's
    /// parse stage drops frames for other hosts itself).
    pub promiscuous: bool,
    /// Received mbufs become packets as they are (on by default); off, each
    /// frame is copied into a buffer of the worker's pool and the mbuf
    /// freed at once.
    pub zero_copy: bool,
}

impl Default for DpdkPortConfig {
    fn default() -> Self {
        DpdkPortConfig {
            port_id: 0,
            rx_queues: 1,
            tx_queues: 1,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            promiscuous: true,
            zero_copy: true,
        }
    }
}

/// One queue's counters and exclusivity flag, padded so that queues served
/// by different workers share no cache line.
#[repr(align(128))]
#[derive(Default)]
struct QueueSlot {
    counters: QueueCounters,
    taken: AtomicBool,
}

/// The started device; queue handles keep it alive.
struct Device {
    dpdk: &'static Dpdk,
    name: String,
    eth: u16,
    cfg: DpdkPortConfig,
    rx: Box<[QueueSlot]>,
    tx: Box<[QueueSlot]>,
}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: the port was started by `open`; no queue handle is left
        // (each holds an Arc to this device), so no burst runs on it.
        unsafe {
            ffi::rte_eth_dev_stop(self.eth);
        }
        let mut open = self
            .dpdk
            .open_ports
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        open.retain(|&p| p != self.eth);
    }
}

/// A port DPDK drives. See the module docs.
pub struct DpdkPort {
    dev: Arc<Device>,
}

impl DpdkPort {
    /// Opens the device `devargs` names: a PCI address (`0000:01:00.0`) or
    /// a virtual device with its arguments (`net_ring0`,
    /// `net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap`). A device the EAL
    /// arguments did not create is probed now. `name` is Sluice's name for
    /// the port.
    pub fn open(
        dpdk: &'static Dpdk,
        name: &str,
        devargs: &str,
        cfg: DpdkPortConfig,
    ) -> Result<Arc<DpdkPort>, PortError> {
        if cfg.rx_queues == 0 && cfg.tx_queues == 0 {
            return Err(PortError::Backend(format!(
                "port {name}: a DPDK port needs at least one queue"
            )));
        }
        let device = devargs.split(',').next().unwrap_or(devargs);
        let c_device = CString::new(device)
            .map_err(|_| PortError::Backend(format!("port {name}: NUL in {devargs:?}")))?;
        let c_devargs = CString::new(devargs)
            .map_err(|_| PortError::Backend(format!("port {name}: NUL in {devargs:?}")))?;
        let mut open = dpdk.open_ports.lock().unwrap_or_else(|e| e.into_inner());
        let mut eth = 0u16;
        // SAFETY: valid C string and out-pointer.
        if unsafe { ffi::rte_eth_dev_get_port_by_name(c_device.as_ptr(), &mut eth) } != 0 {
            // SAFETY: valid C string; EAL is initialised.
            let rc = unsafe { ffi::rte_dev_probe(c_devargs.as_ptr()) };
            if rc < 0 {
                return Err(PortError::Backend(format!(
                    "port {name}: DPDK could not probe {devargs:?}: {}",
                    ffi::strerror(rc)
                )));
            }
            // SAFETY: as above.
            if unsafe { ffi::rte_eth_dev_get_port_by_name(c_device.as_ptr(), &mut eth) } != 0 {
                return Err(PortError::Backend(format!(
                    "port {name}: DPDK probed {devargs:?} but has no ethdev named {device:?}"
                )));
            }
        }
        if open.contains(&eth) {
            return Err(PortError::Backend(format!(
                "port {name}: DPDK device {device:?} is already open"
            )));
        }
        // SAFETY: the port exists and is not started by anyone else (the
        // open list says no DpdkPort holds it); the pool lives forever.
        let rc = unsafe {
            ffi::sluice_port_configure(
                eth,
                cfg.rx_queues,
                cfg.tx_queues,
                cfg.rx_descriptors,
                cfg.tx_descriptors,
                dpdk.pool_ptr(),
            )
        };
        if rc != 0 {
            return Err(PortError::Backend(format!(
                "port {name} ({devargs}): configuring {} receive and {} transmit queues: {}",
                cfg.rx_queues,
                cfg.tx_queues,
                ffi::strerror(rc)
            )));
        }
        if cfg.promiscuous {
            // SAFETY: a configured port. Devices without the mode refuse;
            // that is not an error for us.
            unsafe {
                ffi::rte_eth_promiscuous_enable(eth);
            }
        }
        // SAFETY: a configured port.
        let rc = unsafe { ffi::rte_eth_dev_start(eth) };
        if rc != 0 {
            return Err(PortError::Backend(format!(
                "port {name} ({devargs}): starting the device: {}",
                ffi::strerror(rc)
            )));
        }
        open.push(eth);
        Ok(Arc::new(DpdkPort {
            dev: Arc::new(Device {
                dpdk,
                name: name.to_string(),
                eth,
                rx: (0..cfg.rx_queues).map(|_| QueueSlot::default()).collect(),
                tx: (0..cfg.tx_queues).map(|_| QueueSlot::default()).collect(),
                cfg,
            }),
        }))
    }

    /// DPDK's port id of the device.
    pub fn ethdev_port(&self) -> u16 {
        self.dev.eth
    }

    fn take(&self, rx: bool, queue: u16) -> Result<(), PortError> {
        let slots = if rx { &self.dev.rx } else { &self.dev.tx };
        let slot = slots
            .get(queue as usize)
            .ok_or_else(|| PortError::NoSuchQueue {
                port: self.dev.name.clone(),
                queue,
                queues: slots.len() as u16,
            })?;
        if slot.taken.swap(true, Ordering::Acquire) {
            return Err(PortError::QueueTaken {
                port: self.dev.name.clone(),
                queue,
            });
        }
        Ok(())
    }
}

impl Port for DpdkPort {
    fn info(&self) -> PortInfo {
        let mut c = ffi::PortInfoC::default();
        // SAFETY: a started port and a valid out-pointer.
        unsafe {
            ffi::sluice_port_info(self.dev.eth, &mut c);
        }
        PortInfo {
            name: self.dev.name.clone(),
            driver: "dpdk",
            mac: c.mac,
            mtu: c.mtu,
            rx_queues: self.dev.cfg.rx_queues,
            tx_queues: self.dev.cfg.tx_queues,
            link_up: c.link_up != 0,
            speed_mbps: c.speed_mbps,
        }
    }

    fn stats(&self) -> PortStats {
        let mut total = PortStats::default();
        for slot in self.dev.rx.iter().chain(self.dev.tx.iter()) {
            total += slot.counters.snapshot();
        }
        // SAFETY: a started port.
        total.rx_dropped += unsafe { ffi::sluice_port_missed(self.dev.eth) };
        total
    }

    fn rx_queue(&self, queue: u16) -> Result<Box<dyn RxQueue>, PortError> {
        self.take(true, queue)?;
        Ok(Box::new(DpdkRx {
            dev: self.dev.clone(),
            queue,
            registered: false,
            views: [ffi::RxView::default(); BURST_SIZE],
        }))
    }

    fn tx_queue(&self, queue: u16) -> Result<Box<dyn TxQueue>, PortError> {
        self.take(false, queue)?;
        Ok(Box::new(DpdkTx {
            dev: self.dev.clone(),
            queue,
            registered: false,
            views: [ffi::TxView::default(); BURST_SIZE],
        }))
    }
}

thread_local! {
    /// Whether this thread registered itself with EAL (and so must
    /// unregister when it exits).
    static LCORE: LcoreRegistration = const { LcoreRegistration { ours: Cell::new(false), tried: Cell::new(false) } };
}

struct LcoreRegistration {
    ours: Cell<bool>,
    tried: Cell<bool>,
}

impl Drop for LcoreRegistration {
    fn drop(&mut self) {
        if self.ours.get() {
            if let Some(dpdk) = Dpdk::get() {
                // SAFETY: this thread registered itself and is exiting; its
                // cached mbufs go back to the pool before the id is released.
                unsafe { ffi::sluice_thread_unregister(dpdk.pool_ptr()) };
            }
        }
    }
}

/// Registers the calling thread with EAL once (see the module docs).
#[cold]
fn register_thread() {
    LCORE.with(|r| {
        if r.tried.replace(true) {
            return;
        }
        // SAFETY: EAL is initialised (a port exists); the call only
        // allocates an lcore id for this thread.
        if unsafe { ffi::sluice_thread_register() } == 1 {
            r.ours.set(true);
        }
    });
}

/// One receive queue, owned by one worker.
struct DpdkRx {
    dev: Arc<Device>,
    queue: u16,
    registered: bool,
    views: [ffi::RxView; BURST_SIZE],
}

impl RxQueue for DpdkRx {
    fn rx_burst(&mut self, pool: &mut PoolCache, out: &mut Batch) -> usize {
        if !self.registered {
            register_thread();
            self.registered = true;
        }
        let room = out.remaining_capacity().min(BURST_SIZE);
        if room == 0 {
            return 0;
        }
        let dev = &*self.dev;
        // SAFETY: this handle is the only user of the queue (taken
        // exclusively); the views array holds `room` entries.
        let n = unsafe {
            ffi::sluice_rx_burst(
                dev.eth,
                self.queue,
                dev.dpdk.pool_ptr(),
                self.views.as_mut_ptr(),
                room as u16,
            )
        } as usize;
        let (mut packets, mut bytes, mut dropped) = (0u64, 0u64, 0u64);
        let zero_copy = dev.cfg.zero_copy;
        for v in &self.views[..n] {
            let Some(buf) = NonNull::new(v.buf) else {
                continue;
            };
            let fits = v.data_off as usize + v.data_len as usize <= BUF_STRIDE;
            let packet = if zero_copy && v.flags & ffi::RX_FOREIGN == 0 && fits {
                // SAFETY: a single-segment mbuf of our pool (the shim checked
                // pool, refcount, segments and layout): its data buffer is
                // BUF_STRIDE bytes, the frame window fits, and it was just
                // received, so it is ours to hand to the packet.
                Some(unsafe { dev.dpdk.mbufs.wrap(buf, v.data_off, v.data_len) })
            } else {
                let copy = if v.flags & ffi::RX_SEGMENTS != 0 || !fits {
                    None
                } else {
                    pool.alloc().and_then(|mut p| {
                        // SAFETY: the device filled data_len bytes at data_off
                        // of this single-segment buffer, ours until freed below.
                        let frame = unsafe {
                            core::slice::from_raw_parts(
                                buf.as_ptr().add(v.data_off as usize),
                                v.data_len as usize,
                            )
                        };
                        if p.fill(frame) {
                            Some(p)
                        } else {
                            pool.free(p);
                            None
                        }
                    })
                };
                // SAFETY: the mbuf is ours (just received) and not used again.
                unsafe { release_mbuf(buf) };
                copy
            };
            match packet {
                Some(mut p) => {
                    p.rx_port = dev.cfg.port_id;
                    p.rx_queue = self.queue;
                    p.rss_hash = v.rss;
                    bytes += p.len() as u64;
                    packets += 1;
                    // Cannot fail: at most `room` packets were received.
                    let _ = out.try_push(p);
                }
                None => dropped += 1,
            }
        }
        let c = &dev.rx[self.queue as usize].counters;
        if packets > 0 {
            bump(&c.rx_packets, packets);
            bump(&c.rx_bytes, bytes);
        }
        if dropped > 0 {
            bump(&c.rx_dropped, dropped);
        }
        packets as usize
    }
}

impl Drop for DpdkRx {
    fn drop(&mut self) {
        self.dev.rx[self.queue as usize]
            .taken
            .store(false, Ordering::Release);
    }
}

/// One transmit queue, owned by one worker.
struct DpdkTx {
    dev: Arc<Device>,
    queue: u16,
    registered: bool,
    views: [ffi::TxView; BURST_SIZE],
}

impl TxQueue for DpdkTx {
    fn tx_burst(&mut self, pkts: &mut Batch, pool: &mut PoolCache) -> usize {
        if !self.registered {
            register_thread();
            self.registered = true;
        }
        let dev = &*self.dev;
        let offered = pkts.len().min(BURST_SIZE);
        // Bit i: packet i was copied into a fresh mbuf (it is not one).
        let mut copied = 0u32;
        let mut prepared = 0;
        for (i, (view, p)) in self.views.iter_mut().zip(&pkts[..offered]).enumerate() {
            if let Some((buf, head, len)) = dev.dpdk.mbufs.parts(p) {
                *view = ffi::TxView {
                    buf: buf.as_ptr(),
                    data_off: head,
                    data_len: len,
                    reserved: 0,
                };
            } else {
                // SAFETY: the pool lives as long as the process.
                let buf = unsafe { ffi::sluice_mbuf_alloc(dev.dpdk.pool_ptr()) };
                if buf.is_null() {
                    break;
                }
                // SAFETY: a fresh mbuf's data buffer is BUF_STRIDE bytes (the
                // pool's data room) and a frame is at most DATA_ROOM long, so
                // HEADROOM + len fits; nothing else references the new buffer.
                unsafe {
                    core::ptr::copy_nonoverlapping(p.data().as_ptr(), buf.add(HEADROOM), p.len());
                }
                *view = ffi::TxView {
                    buf,
                    data_off: HEADROOM as u16,
                    data_len: p.len() as u16,
                    reserved: 0,
                };
                copied |= 1 << i;
            }
            prepared += 1;
        }
        // SAFETY: the views name `prepared` single-segment mbufs of our pool:
        // fresh copies, or buffers the packets own (the packets stay in the
        // batch until the device took them); the queue is this handle's.
        let sent = unsafe {
            ffi::sluice_tx_burst(dev.eth, self.queue, self.views.as_ptr(), prepared as u16)
        } as usize;
        for (i, view) in self.views[..prepared].iter().enumerate().skip(sent) {
            if copied & (1 << i) != 0 {
                // SAFETY: a copy the device did not take: still ours.
                unsafe { ffi::sluice_mbuf_free(view.buf) };
            }
        }
        let mut bytes = 0u64;
        for (i, p) in pkts.drain(..sent).enumerate() {
            bytes += p.len() as u64;
            if copied & (1 << i) != 0 {
                pool.free(p);
            } else if let Err(p) = dev.dpdk.mbufs.into_raw(p) {
                // Unreachable: an uncopied packet is one of the pool's.
                pool.free(p);
            }
            // Otherwise the mbuf now belongs to the device.
        }
        let c = &dev.tx[self.queue as usize].counters;
        if sent > 0 {
            bump(&c.tx_packets, sent as u64);
            bump(&c.tx_bytes, bytes);
        }
        if !pkts.is_empty() {
            bump(&c.tx_dropped, pkts.len() as u64);
        }
        sent
    }
}

impl Drop for DpdkTx {
    fn drop(&mut self) {
        self.dev.tx[self.queue as usize]
            .taken
            .store(false, Ordering::Release);
    }
}
