//! AF_XDP ports: a Linux interface's queues read and written through XSK
//! sockets, with an XDP program steering the interface's frames to them.
//!
//! [`AfXdpPort::open`] opens one XSK socket per queue pair (queue `q` of the
//! port is queue `q` of the interface), each with its own UMEM and four
//! rings, loads the six-instruction XDP program (`afxdp/bpf.rs`) with its
//! XSKMAP, puts each socket in the map under its queue id and attaches it:
//! natively (the driver's hook, `XDP_FLAGS_DRV_MODE`) where the driver has
//! one, which includes veth, else generically (`XDP_FLAGS_SKB_MODE`, after
//! the kernel built an skb). [`AfXdpPort::mode`] and `PortInfo::driver`
//! (`afxdp-native-copy`, `afxdp-generic-copy`, `afxdp-native-zerocopy`) say
//! which. Sockets bind in copy mode (`XDP_COPY`: the kernel copies between
//! its buffers and the UMEM), or zero-copy (`XDP_ZEROCOPY`: the NIC reads and
//! writes the UMEM) when asked; zero-copy needs the native hook and a driver
//! that supports it, and is refused otherwise rather than quietly degraded.
//! All sockets bind with `XDP_USE_NEED_WAKEUP`.
//!
//! Frames on queues without a socket, or arriving before the sockets are in
//! the map, go to the kernel's stack (the program's fallback verdict is
//! `XDP_PASS`). When the port and all its queue handles are gone, the
//! sockets and the BPF link close, which detaches the program.
//!
//! **Memory.** The UMEM is separate from the [`PacketPool`]: receiving
//! copies each frame out of the UMEM into a pool buffer and gives the UMEM
//! frame straight back to the fill ring; transmitting copies the packet into
//! a free UMEM frame and frees the pool buffer at once. One copy per packet
//! each way (on top of the kernel's in copy mode), in exchange for the
//! pipeline keeping one buffer type and a packet never pinning a UMEM frame.
//! Using the pool's arena as the UMEM (it is laid out for unaligned chunk
//! mode) would remove that copy; it is not done yet.
//!
//! **Queues.** The receive and transmit halves of a socket use disjoint
//! halves of its UMEM and different rings, so the worker holding receive
//! queue `q` and the one holding transmit queue `q` share nothing but the
//! socket's descriptor. A port has as many queue pairs as asked (by default
//! all the interface's); more than the interface has is refused, because a
//! transmit queue needs a socket and a socket needs a queue of its own.
//!
//! **System calls.** None per packet. Receive: one `recvfrom` when a poll
//! finds the RX ring empty and the kernel flagged the fill ring as needing a
//! wakeup (only zero-copy drivers do). Transmit: in copy mode the kernel
//! only sends from within `sendto`, a bounded batch per call, so
//! `tx_burst` and [`TxQueue::flush`] (called on every idle poll and on the
//! drain timer) call `sendto` once while frames are outstanding, that is,
//! submitted and not yet back on the completion ring; in zero-copy mode only
//! when the kernel flags the TX ring. Completed frames are reclaimed at the
//! start of every `tx_burst` and `flush`.
//!
//! Sets on receive: `Packet::rx_port` (the configured `port_id`),
//! `Packet::rx_queue`, `Packet::rss_hash` 0 (copy mode has no hardware
//! hash). Counters: `rx_dropped` counts frames that found the pool empty or
//! were larger than a packet buffer, plus the kernel's drops for the socket
//! (RX ring full, no fill frame); `tx_dropped` counts packets `tx_burst`
//! left in the batch because no UMEM frame or TX slot was free.
//!
//! [`PacketPool`]: crate::buf::PacketPool

mod bpf;
mod netdev;
mod ring;
mod xsk;

use super::{bump, Port, PortError, PortInfo, PortStats, QueueCounters, RxQueue, TxQueue};
use crate::buf::{Batch, PoolCache};
use bpf::{XdpProgram, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
use netdev::NetDev;
use ring::XdpDesc;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use xsk::{BindOptions, RxRings, TxRings, XskSocket, FRAME_SIZE};

/// Which XDP hook the program is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver, before any skb exists (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// In the generic receive path, after the skb is built
    /// (`XDP_FLAGS_SKB_MODE`); works on every interface.
    Generic,
}

/// Which hook to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpAttach {
    /// Native, and generic if the driver has no native hook.
    #[default]
    Auto,
    /// Native only: fail if the driver has no native hook.
    Native,
    /// Generic only (`skb` in the daemon's spec).
    Generic,
}

/// How to open an AF_XDP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfXdpConfig {
    /// Stamped into `Packet::rx_port` of every received packet.
    pub port_id: u16,
    /// Queue pairs to open (interface queues `0..queues`); 0 means all the
    /// interface has.
    pub queues: u16,
    /// Bind with `XDP_ZEROCOPY` instead of `XDP_COPY`.
    pub zerocopy: bool,
    pub attach: XdpAttach,
    /// Slots per ring (fill, RX, TX, completion); a power of two. Each
    /// socket's UMEM holds twice this many 4 KiB frames.
    pub ring_size: u32,
}

impl Default for AfXdpConfig {
    fn default() -> Self {
        AfXdpConfig {
            port_id: 0,
            queues: 0,
            zerocopy: false,
            attach: XdpAttach::Auto,
            ring_size: 2048,
        }
    }
}

/// Padding so the receive and transmit counters of a queue, written by
/// different workers, never share a cache line.
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

/// One queue pair: its socket, the two halves waiting to be taken, and
/// their counters.
struct QueueSlot {
    socket: XskSocket,
    rx: Mutex<Option<RxRings>>,
    tx: Mutex<Option<TxRings>>,
    rx_counters: Padded<QueueCounters>,
    tx_counters: Padded<QueueCounters>,
}

/// What the queue handles keep alive. Fields drop in order: the sockets
/// close (leaving the map), then the link (detaching the program).
struct Shared {
    queues: Box<[QueueSlot]>,
    _link: OwnedFd,
    _program: XdpProgram,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A Linux interface driven through AF_XDP. See the module docs.
pub struct AfXdpPort {
    name: String,
    iface: String,
    cfg: AfXdpConfig,
    dev: NetDev,
    mode: XdpMode,
    shared: Arc<Shared>,
}

impl AfXdpPort {
    /// Opens `iface` (in the caller's network namespace) as the port `name`.
    /// Needs root, or CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_IPC_LOCK
    /// (or a memlock limit that covers the UMEMs: 16 MiB per queue by default).
    pub fn open(name: &str, iface: &str, cfg: AfXdpConfig) -> Result<Arc<AfXdpPort>, PortError> {
        let fail =
            |what: String| PortError::Backend(format!("port {name} (af_xdp on {iface}): {what}"));
        if !cfg.ring_size.is_power_of_two() || !(64..=32768).contains(&cfg.ring_size) {
            return Err(fail(format!(
                "ring size {} is not a power of two from 64 to 32768",
                cfg.ring_size
            )));
        }
        if cfg.zerocopy && cfg.attach == XdpAttach::Generic {
            return Err(fail(
                "zero-copy needs the native XDP hook; the generic (skb) one was asked for".into(),
            ));
        }
        let dev = NetDev::query(iface).map_err(|e| fail(e.to_string()))?;
        let available = dev.rx_queues.min(dev.tx_queues);
        let queues = if cfg.queues == 0 {
            available
        } else {
            u32::from(cfg.queues)
        };
        if queues > available {
            return Err(fail(format!(
                "{queues} queues asked for, the interface has {} receive and {} transmit queues \
                 (raise them with `ethtool -L {iface} combined {queues}`, or for veth create it \
                 with numrxqueues/numtxqueues)",
                dev.rx_queues, dev.tx_queues
            )));
        }
        let program =
            XdpProgram::load(dev.rx_queues.max(queues)).map_err(|e| fail(e.to_string()))?;
        let mut slots = Vec::with_capacity(queues as usize);
        for q in 0..queues {
            let (socket, rx, tx) = XskSocket::open(BindOptions {
                ifindex: dev.index,
                queue: q,
                ring_size: cfg.ring_size,
                zerocopy: cfg.zerocopy,
            })
            .map_err(|e| fail(e.to_string()))?;
            program
                .insert(q, socket.fd())
                .map_err(|e| fail(e.to_string()))?;
            slots.push(QueueSlot {
                socket,
                rx: Mutex::new(Some(rx)),
                tx: Mutex::new(Some(tx)),
                rx_counters: Padded::default(),
                tx_counters: Padded::default(),
            });
        }
        let (link, mode) = attach(&program, dev.index, cfg.attach, cfg.zerocopy)
            .map_err(|e| fail(e.to_string()))?;
        Ok(Arc::new(AfXdpPort {
            name: name.to_string(),
            iface: iface.to_string(),
            cfg: AfXdpConfig {
                queues: queues as u16,
                ..cfg
            },
            dev,
            mode,
            shared: Arc::new(Shared {
                queues: slots.into_boxed_slice(),
                _link: link,
                _program: program,
            }),
        }))
    }

    /// The hook the program is attached to.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// Whether the sockets are bound zero-copy.
    pub fn zerocopy(&self) -> bool {
        self.cfg.zerocopy
    }

    /// The interface's name.
    pub fn interface(&self) -> &str {
        &self.iface
    }

    /// The configuration in force (`queues` as opened).
    pub fn config(&self) -> &AfXdpConfig {
        &self.cfg
    }

    fn driver(&self) -> &'static str {
        match (self.mode, self.cfg.zerocopy) {
            (XdpMode::Native, false) => "afxdp-native-copy",
            (XdpMode::Native, true) => "afxdp-native-zerocopy",
            (XdpMode::Generic, false) => "afxdp-generic-copy",
            (XdpMode::Generic, true) => "afxdp-generic-zerocopy",
        }
    }

    fn slot(&self, queue: u16) -> Result<&QueueSlot, PortError> {
        self.shared
            .queues
            .get(queue as usize)
            .ok_or_else(|| PortError::NoSuchQueue {
                port: self.name.clone(),
                queue,
                queues: self.shared.queues.len() as u16,
            })
    }

    fn taken(&self, queue: u16) -> PortError {
        PortError::QueueTaken {
            port: self.name.clone(),
            queue,
        }
    }
}

/// Attaches at the asked hook, native first under `Auto`.
fn attach(
    program: &XdpProgram,
    ifindex: u32,
    want: XdpAttach,
    zerocopy: bool,
) -> io::Result<(OwnedFd, XdpMode)> {
    let native = || {
        program
            .attach(ifindex, XDP_FLAGS_DRV_MODE)
            .map(|l| (l, XdpMode::Native))
    };
    let generic = || {
        program
            .attach(ifindex, XDP_FLAGS_SKB_MODE)
            .map(|l| (l, XdpMode::Generic))
            .map_err(|e| bpf::context(e, "cannot attach the XDP program (generic mode)"))
    };
    match want {
        XdpAttach::Generic => generic(),
        XdpAttach::Native => {
            native().map_err(|e| bpf::context(e, "cannot attach the XDP program (native mode)"))
        }
        XdpAttach::Auto => match native() {
            Ok(r) => Ok(r),
            // Another program holds the hook: generic mode would be refused
            // too, so report the real cause.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EEXIST)) => Err(
                bpf::context(e, "cannot attach the XDP program (native mode)"),
            ),
            Err(e) if zerocopy => Err(bpf::context(
                e,
                "cannot attach the XDP program natively, which zero-copy needs",
            )),
            Err(_) => generic(),
        },
    }
}

impl Port for AfXdpPort {
    fn info(&self) -> PortInfo {
        let queues = self.shared.queues.len() as u16;
        PortInfo {
            name: self.name.clone(),
            driver: self.driver(),
            mac: self.dev.mac,
            mtu: self.dev.mtu,
            rx_queues: queues,
            tx_queues: queues,
            link_up: NetDev::query(&self.iface).is_ok_and(|d| d.running),
            speed_mbps: 0,
        }
    }

    fn stats(&self) -> PortStats {
        let mut total = PortStats::default();
        for slot in self.shared.queues.iter() {
            total += slot.rx_counters.0.snapshot();
            total += slot.tx_counters.0.snapshot();
            total.rx_dropped += slot.socket.kernel_rx_dropped();
        }
        total
    }

    fn rx_queue(&self, queue: u16) -> Result<Box<dyn RxQueue>, PortError> {
        let rings = lock(&self.slot(queue)?.rx)
            .take()
            .ok_or_else(|| self.taken(queue))?;
        Ok(Box::new(AfXdpRx {
            shared: self.shared.clone(),
            queue,
            port_id: self.cfg.port_id,
            rings: Some(rings),
        }))
    }

    fn tx_queue(&self, queue: u16) -> Result<Box<dyn TxQueue>, PortError> {
        let rings = lock(&self.slot(queue)?.tx)
            .take()
            .ok_or_else(|| self.taken(queue))?;
        Ok(Box::new(AfXdpTx {
            shared: self.shared.clone(),
            queue,
            copy_mode: !self.cfg.zerocopy,
            rings: Some(rings),
        }))
    }
}

impl core::fmt::Debug for AfXdpPort {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AfXdpPort")
            .field("name", &self.name)
            .field("iface", &self.iface)
            .field("mode", &self.mode)
            .field("cfg", &self.cfg)
            .finish()
    }
}

/// The bytes `[addr, addr + len)` of the UMEM, or `None` if they lie
/// outside it (which a correct kernel never hands out).
///
/// # Safety
/// The range must be a frame the calling queue half owns (received and not
/// yet given back, or free and not yet submitted), so that neither the
/// kernel nor another thread touches it while the slice lives, and the
/// mapping must outlive the slice.
#[inline]
unsafe fn frame<'a>(umem: (*mut u8, usize), addr: u64, len: u32) -> Option<&'a mut [u8]> {
    let (base, size) = umem;
    let start = usize::try_from(addr).ok()?;
    let end = start.checked_add(len as usize)?;
    if end > size {
        return None;
    }
    // SAFETY: [start, end) is inside the mapping; exclusivity and lifetime
    // are the caller's promise.
    Some(unsafe { core::slice::from_raw_parts_mut(base.add(start), len as usize) })
}

/// A frame's first byte, from any address inside it.
#[inline]
fn frame_start(addr: u64) -> u64 {
    addr & !(u64::from(FRAME_SIZE) - 1)
}

/// The receive half of one queue.
struct AfXdpRx {
    shared: Arc<Shared>,
    queue: u16,
    port_id: u16,
    /// `Some` until the handle is dropped, when the rings go back to the slot.
    rings: Option<RxRings>,
}

impl AfXdpRx {
    #[cold]
    fn wake(fd: RawFd) {
        // SAFETY: a zero-length, non-blocking receive with no buffers; the
        // kernel only uses it to run the driver's wakeup.
        unsafe {
            libc::recvfrom(
                fd,
                core::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
            )
        };
    }
}

impl RxQueue for AfXdpRx {
    #[inline]
    fn rx_burst(&mut self, pool: &mut PoolCache, out: &mut Batch) -> usize {
        let Some(rings) = self.rings.as_mut() else {
            return 0;
        };
        let slot = &self.shared.queues[self.queue as usize];
        let want = out.remaining_capacity() as u32;
        if want == 0 {
            return 0;
        }
        let n = rings.rx.ready(want);
        if n == 0 {
            if rings.fill.needs_wakeup() {
                AfXdpRx::wake(slot.socket.fd());
            }
            return 0;
        }
        // Every receive frame has a fill slot (see xsk.rs), so this is at
        // least `n`.
        let room = rings.fill.free(n);
        debug_assert!(room >= n);
        let umem = slot.socket.umem();
        let (mut received, mut bytes, mut dropped) = (0usize, 0usize, 0u64);
        for i in 0..n {
            let desc: XdpDesc = rings.rx.read(i);
            // SAFETY: a received frame is this half's until it goes back to
            // the fill ring below; `self.shared` keeps the UMEM mapped.
            let data = unsafe { frame(umem, desc.addr, desc.len) };
            match (data, pool.alloc()) {
                (Some(data), Some(mut pkt)) => {
                    if pkt.fill(data) {
                        pkt.rx_port = self.port_id;
                        pkt.rx_queue = self.queue;
                        pkt.rss_hash = 0;
                        bytes += data.len();
                        out.push(pkt);
                        received += 1;
                    } else {
                        pool.free(pkt);
                        dropped += 1;
                    }
                }
                (None, Some(pkt)) => {
                    pool.free(pkt);
                    dropped += 1;
                }
                (_, None) => dropped += 1,
            }
            rings.fill.write(i, frame_start(desc.addr));
        }
        rings.rx.release(n);
        rings.fill.submit(n);
        let counters = &slot.rx_counters.0;
        bump(&counters.rx_packets, received as u64);
        bump(&counters.rx_bytes, bytes as u64);
        if dropped > 0 {
            bump(&counters.rx_dropped, dropped);
        }
        received
    }
}

impl Drop for AfXdpRx {
    fn drop(&mut self) {
        let slot = &self.shared.queues[self.queue as usize];
        *lock(&slot.rx) = self.rings.take();
    }
}

/// The transmit half of one queue.
struct AfXdpTx {
    shared: Arc<Shared>,
    queue: u16,
    /// Copy mode transmits only inside `sendto`; zero-copy when flagged.
    copy_mode: bool,
    rings: Option<TxRings>,
}

impl AfXdpTx {
    /// Takes back the frames the kernel finished with.
    #[inline]
    fn reclaim(rings: &mut TxRings) {
        let n = rings.completion.ready(rings.completion.size());
        if n == 0 {
            return;
        }
        for i in 0..n {
            rings.free.push(frame_start(rings.completion.read(i)));
        }
        rings.completion.release(n);
        rings.outstanding -= n;
    }

    /// The kick rule: while frames are outstanding, call `sendto` (in
    /// zero-copy mode, only when the kernel asks for it).
    #[inline]
    fn kick(rings: &TxRings, copy_mode: bool, fd: RawFd) {
        if rings.outstanding == 0 || !(copy_mode || rings.tx.needs_wakeup()) {
            return;
        }
        // SAFETY: a zero-length, non-blocking send with no buffer; it only
        // makes the kernel process the TX ring. EAGAIN, EBUSY, ENOBUFS and
        // ENETDOWN leave the frames in the ring for the next kick.
        unsafe {
            libc::sendto(
                fd,
                core::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                core::ptr::null(),
                0,
            )
        };
    }
}

impl TxQueue for AfXdpTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Batch, pool: &mut PoolCache) -> usize {
        let Some(rings) = self.rings.as_mut() else {
            return 0;
        };
        let slot = &self.shared.queues[self.queue as usize];
        AfXdpTx::reclaim(rings);
        let want = pkts.len() as u32;
        let room = rings.tx.free(want).min(rings.free.len() as u32);
        let take = want.min(room) as usize;
        let umem = slot.socket.umem();
        let mut bytes = 0usize;
        let mut written = 0u32;
        for pkt in pkts.drain(..take) {
            let data = pkt.data();
            // A pool buffer never holds more than a frame (DATA_ROOM < FRAME_SIZE).
            let addr = rings.free.pop().expect("room counted free frames");
            // SAFETY: a frame off the free list is this half's until it is
            // submitted below; `self.shared` keeps the UMEM mapped.
            match unsafe { frame(umem, addr, data.len() as u32) } {
                Some(dst) => {
                    dst.copy_from_slice(data);
                    rings.tx.write(
                        written,
                        XdpDesc {
                            addr,
                            len: data.len() as u32,
                            options: 0,
                        },
                    );
                    written += 1;
                    bytes += data.len();
                }
                None => rings.free.push(addr),
            }
            pool.free(pkt);
        }
        if written > 0 {
            rings.tx.submit(written);
            rings.outstanding += written;
        }
        AfXdpTx::kick(rings, self.copy_mode, slot.socket.fd());
        let counters = &slot.tx_counters.0;
        bump(&counters.tx_packets, u64::from(written));
        bump(&counters.tx_bytes, bytes as u64);
        let refused = pkts.len() as u64 + (take as u64 - u64::from(written));
        if refused > 0 {
            bump(&counters.tx_dropped, refused);
        }
        take
    }

    fn flush(&mut self) {
        let Some(rings) = self.rings.as_mut() else {
            return;
        };
        let fd = self.shared.queues[self.queue as usize].socket.fd();
        AfXdpTx::reclaim(rings);
        AfXdpTx::kick(rings, self.copy_mode, fd);
    }
}

impl Drop for AfXdpTx {
    fn drop(&mut self) {
        let slot = &self.shared.queues[self.queue as usize];
        *lock(&slot.tx) = self.rings.take();
    }
}
