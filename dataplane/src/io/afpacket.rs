//! AF_PACKET ports: a Linux interface (a NIC, a veth, a bridge port) read
//! and written through memory-mapped packet rings, no driver needed.
//!
//! **Receive.** Each receive queue is one `AF_PACKET` socket with its own
//! ring; with several queues the sockets join one `PACKET_FANOUT_HASH`
//! group, so the kernel spreads flows over them by its symmetric flow hash
//! (both directions of a connection reach the same queue). Two ring layouts:
//!
//! * **TPACKET_V3** (the default): frames are packed into large blocks, and
//!   the kernel hands over a block when it is full or when it has waited
//!   `v3_block_timeout_ms`. Few status words to touch, little memory per
//!   frame; a frame may wait up to the timeout when traffic is light.
//! * **TPACKET_V2**: one fixed 2 KiB slot per frame, each handed over as
//!   soon as it is written: the lowest latency, at more memory per frame.
//!
//! Each receive copies the frame from the ring into a pool buffer (the
//! ring's memory belongs to the kernel). While copying, the backend
//! repairs what the kernel's receive path did to the frame:
//!
//! * a VLAN tag the kernel took out into metadata (`TP_STATUS_VLAN_VALID`)
//!   is put back in the frame, with its TPID when the kernel reports one;
//! * a frame whose TCP or UDP checksum was left to "hardware" by a local
//!   sender (`TP_STATUS_CSUMNOTREADY`, common on veth: the field holds only
//!   the pseudo-header sum) gets its checksum completed in software
//!   ([`complete_partial_checksum`]), so the pipeline and the next hop see a
//!   frame that verifies.
//!
//! Sockets set `PACKET_IGNORE_OUTGOING`, so a port never receives what it
//! (or the kernel) sends out of the interface, and join the interface's
//! promiscuous mode when `promiscuous` is set (the membership ends with the
//! socket). Frames longer than a pool buffer ([`DATA_ROOM`]) or than the
//! ring's slot are dropped and counted.
//!
//! **Transmit.** Each transmit queue is one socket with a TPACKET_V2 TX
//! ring and `PACKET_QDISC_BYPASS` (frames go straight to the driver, as a
//! DPDK port's do) and `PACKET_LOSS` (a frame the driver refuses is skipped,
//! not retried forever). A burst copies each frame into a free slot and
//! marks it for sending; one `sendto` kick per burst hands them all to the
//! kernel. A slot stays busy until the kernel frees the frame, so a full
//! ring leaves the rest of the burst with the caller.
//!
//! Sets on receive: `Packet::rx_port` (`port_id`), `Packet::rx_queue`,
//! `Packet::rss_hash` (the kernel's flow hash on TPACKET_V3, 0 on V2).
//! Counters per queue ([`QueueCounters`]): `rx_dropped` counts frames lost
//! on the way to the pipeline (truncated, no pool buffer) plus, summed in
//! [`Port::stats`], the frames the kernel dropped because the ring was full
//! (`PACKET_STATISTICS`); `tx_dropped` counts frames too long for the
//! interface and frames left with the caller because the ring was full.
//!
//! Cost: `rx_burst` reads status words in shared memory and makes no
//! system call; `tx_burst` makes one (`sendto`, the kick) per burst it
//! wrote to. Nothing is allocated after the port is opened.
//!
//! The sockets belong to the network namespace of the thread that opens
//! the port; so does the interface name.

use super::{bump, netdev, Port, PortError, PortInfo, PortStats, QueueCounters, RxQueue, TxQueue};
use crate::buf::{Batch, PoolCache, DATA_ROOM};
use crate::wire::{checksum, ethertype, ip_proto};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

/// The kernel's `linux/if_packet.h`, the parts this backend uses.
mod sys {
    use libc::c_int;

    pub const SOL_PACKET: c_int = 263;
    pub const PACKET_ADD_MEMBERSHIP: c_int = 1;
    pub const PACKET_RX_RING: c_int = 5;
    pub const PACKET_STATISTICS: c_int = 6;
    pub const PACKET_VERSION: c_int = 10;
    pub const PACKET_TX_RING: c_int = 13;
    pub const PACKET_LOSS: c_int = 14;
    pub const PACKET_FANOUT: c_int = 18;
    pub const PACKET_QDISC_BYPASS: c_int = 20;
    pub const PACKET_IGNORE_OUTGOING: c_int = 23;

    pub const PACKET_MR_PROMISC: u16 = 1;
    pub const PACKET_FANOUT_HASH: u32 = 0;
    /// Asks the kernel to pick an unused group id (read back with
    /// getsockopt); only the first socket of a group sets it.
    pub const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;

    pub const TPACKET_V2: c_int = 1;
    pub const TPACKET_V3: c_int = 2;

    pub const TP_STATUS_KERNEL: u32 = 0;
    pub const TP_STATUS_USER: u32 = 1 << 0;
    pub const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
    pub const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
    pub const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
    pub const TP_STATUS_AVAILABLE: u32 = 0;
    pub const TP_STATUS_SEND_REQUEST: u32 = 1 << 0;
    pub const TP_STATUS_WRONG_FORMAT: u32 = 1 << 2;
    pub const TP_FT_REQ_FILL_RXHASH: u32 = 1;

    /// `struct tpacket_req` (V2 rings).
    #[repr(C)]
    pub struct TpacketReq {
        pub block_size: u32,
        pub block_nr: u32,
        pub frame_size: u32,
        pub frame_nr: u32,
    }

    /// `struct tpacket_req3` (V3 rings).
    #[repr(C)]
    pub struct TpacketReq3 {
        pub block_size: u32,
        pub block_nr: u32,
        pub frame_size: u32,
        pub frame_nr: u32,
        pub retire_blk_tov: u32,
        pub sizeof_priv: u32,
        pub feature_req_word: u32,
    }

    /// `struct packet_mreq`.
    #[repr(C)]
    pub struct PacketMreq {
        pub ifindex: c_int,
        pub kind: u16,
        pub alen: u16,
        pub address: [u8; 8],
    }

    /// `struct tpacket_stats` (V2), which V3's begins with.
    #[repr(C)]
    #[derive(Default)]
    pub struct TpacketStatsV3 {
        pub packets: u32,
        pub drops: u32,
        pub freeze_q_cnt: u32,
    }

    // Byte offsets in `struct tpacket_block_desc` (V3 block header).
    pub const BLOCK_STATUS: usize = 8;
    pub const BLOCK_NUM_PKTS: usize = 12;
    pub const BLOCK_FIRST_PKT: usize = 16;

    // Byte offsets in `struct tpacket3_hdr`.
    pub const V3_NEXT_OFFSET: usize = 0;
    pub const V3_SNAPLEN: usize = 12;
    pub const V3_LEN: usize = 16;
    pub const V3_STATUS: usize = 20;
    pub const V3_MAC: usize = 24;
    pub const V3_RXHASH: usize = 28;
    pub const V3_VLAN_TCI: usize = 32;
    pub const V3_VLAN_TPID: usize = 36;
    pub const V3_HDR_LEN: usize = 48;

    // Byte offsets in `struct tpacket2_hdr`.
    pub const V2_STATUS: usize = 0;
    pub const V2_LEN: usize = 4;
    pub const V2_SNAPLEN: usize = 8;
    pub const V2_MAC: usize = 12;
    pub const V2_VLAN_TCI: usize = 24;
    pub const V2_VLAN_TPID: usize = 26;
    pub const V2_HDR_LEN: usize = 32;
    /// Where a TX frame's data starts without `PACKET_TX_HAS_OFF`:
    /// `TPACKET2_HDRLEN - sizeof(struct sockaddr_ll)`.
    pub const V2_TX_DATA: usize = 32;
}

/// Which ring layout receive queues use (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxRingVersion {
    /// Blocks of packed frames: throughput; up to the block timeout of delay.
    V3,
    /// One slot per frame: lowest latency.
    V2,
}

/// How to open an AF_PACKET port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfPacketConfig {
    /// Stamped into `Packet::rx_port` of every received packet.
    pub port_id: u16,
    /// Receive sockets, in one fanout group when more than one.
    pub rx_queues: u16,
    /// Transmit sockets (one per worker).
    pub tx_queues: u16,
    pub rx_version: RxRingVersion,
    /// Bytes of receive ring per queue (rounded down to whole blocks).
    pub rx_ring_bytes: usize,
    /// TPACKET_V3 block size: a power of two, at least a page.
    pub v3_block_bytes: usize,
    /// TPACKET_V3: how long the kernel fills a block before handing it over
    /// anyway, in milliseconds.
    pub v3_block_timeout_ms: u32,
    /// Frames in each transmit ring.
    pub tx_frames: u32,
    /// Send straight to the driver, skipping the interface's qdisc.
    pub qdisc_bypass: bool,
    /// Put the interface in promiscuous mode while the port is open, so
    /// that frames to the MAC the control plane gives the port arrive even
    /// when it is not the interface's own.
    pub promiscuous: bool,
}

impl Default for AfPacketConfig {
    fn default() -> Self {
        AfPacketConfig {
            port_id: 0,
            rx_queues: 1,
            tx_queues: 1,
            rx_version: RxRingVersion::V3,
            rx_ring_bytes: 2 << 20,
            v3_block_bytes: 256 << 10,
            v3_block_timeout_ms: 1,
            tx_frames: 512,
            qdisc_bypass: true,
            promiscuous: true,
        }
    }
}

/// A V2 receive slot: header, alignment and a 1500-byte-MTU frame with two
/// VLAN tags fit.
const V2_RX_FRAME: usize = 2048;
const V2_RX_BLOCK: usize = 64 << 10;
/// A transmit slot holds the header and any frame a pool buffer holds.
const TX_FRAME: usize = 4096;
const TX_MAX_DATA: usize = TX_FRAME - sys::V2_TX_DATA;
const _: () = assert!(TX_MAX_DATA >= DATA_ROOM);
/// Ethernet header plus one VLAN tag: what an interface's MTU does not count.
const L2_OVERHEAD: usize = 18;

/// A status word in the ring, shared with the kernel.
///
/// # Safety
/// `at` must be 4-byte aligned, inside a live ring mapping.
#[inline(always)]
unsafe fn status_word<'a>(at: *mut u8) -> &'a AtomicU32 {
    // SAFETY: the caller guarantees alignment and liveness; the kernel
    // accesses the word atomically on its side (smp_store_release /
    // smp_load_acquire around it).
    unsafe { AtomicU32::from_ptr(at.cast()) }
}

/// Reads a plain ring field the kernel wrote before it released the slot.
///
/// # Safety
/// `at..at + size_of::<T>()` must be inside a live ring mapping, and the
/// slot must be owned by user space (its status word read with Acquire).
#[inline(always)]
unsafe fn field<T: Copy>(at: *const u8) -> T {
    // SAFETY: as the caller guarantees; the read cannot race with the
    // kernel, which does not touch a slot it has handed over.
    unsafe { core::ptr::read_unaligned(at.cast::<T>()) }
}

/// A shared mapping of a socket's ring.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is memory shared with the kernel. Which side may touch
// a slot is decided by its status word, read and written atomically, and
// only the one queue handle that holds the ring uses its slots.
unsafe impl Send for Mapping {}
// SAFETY: as above: `&Mapping` gives out nothing but the pointer, and the
// queue handle is the only user of the slots.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(fd: &OwnedFd, len: usize) -> io::Result<Mapping> {
        // SAFETY: maps `len` bytes of the socket's ring, which the kernel
        // sized to exactly that in the PACKET_*_RING call; the result is
        // checked before use.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }

    #[inline(always)]
    fn at(&self, offset: usize) -> *mut u8 {
        debug_assert!(offset < self.len);
        // SAFETY: callers stay inside the mapping (offsets below `len`).
        unsafe { self.ptr.as_ptr().add(offset) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `Mapping::new` and nothing uses it
        // after this (the owning ring is being dropped).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A socket and its mapped ring. The mapping goes before the socket.
struct Ring {
    map: Mapping,
    fd: OwnedFd,
}

fn packet_socket() -> io::Result<OwnedFd> {
    // Protocol 0: the socket receives nothing until `bind` names one, so
    // it never sees another interface's traffic.
    // SAFETY: plain socket(2); the result is checked before it is owned.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: &OwnedFd, opt: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of the size passed; every option used
    // here takes exactly that structure or an int.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            sys::SOL_PACKET,
            opt,
            (value as *const T).cast(),
            core::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn getsockopt<T>(fd: &OwnedFd, opt: libc::c_int, value: &mut T) -> io::Result<()> {
    let mut len = core::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live, writable `T`; the kernel writes at most
    // `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            sys::SOL_PACKET,
            opt,
            (value as *mut T).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn bind(fd: &OwnedFd, ifindex: i32, protocol: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; zero is valid for every field.
    let mut addr: libc::sockaddr_ll = unsafe { core::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = ifindex;
    // SAFETY: `addr` is a valid sockaddr_ll of the length passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            core::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The shape of a receive ring.
#[derive(Debug, Clone, Copy)]
enum RxLayout {
    V3 { block_size: usize, blocks: u32 },
    V2 { frames: u32 },
}

/// One receive queue: its socket and ring, counters and exclusivity flag,
/// padded so that queues served by different workers share no cache line.
#[repr(align(128))]
struct RxShared {
    ring: Ring,
    layout: RxLayout,
    counters: QueueCounters,
    /// Frames the kernel dropped (ring full), accumulated by `Port::stats`
    /// (reading `PACKET_STATISTICS` resets the kernel's count).
    kernel_drops: AtomicU64,
    taken: AtomicBool,
    /// Where the next handle starts reading (the block or slot the last
    /// one stopped at).
    cursor: AtomicU32,
}

#[repr(align(128))]
struct TxShared {
    ring: Ring,
    frames: u32,
    counters: QueueCounters,
    taken: AtomicBool,
    cursor: AtomicU32,
}

/// A Linux interface as a port. See the module docs.
pub struct AfPacketPort {
    name: String,
    ifname: String,
    cfg: AfPacketConfig,
    mac: [u8; 6],
    mtu: u16,
    /// For interface ioctls (link state).
    control: OwnedFd,
    rx: Box<[Arc<RxShared>]>,
    tx: Box<[Arc<TxShared>]>,
}

impl AfPacketPort {
    /// Opens port `name` on interface `ifname` (in the calling thread's
    /// network namespace): every ring is made and mapped here, so a port
    /// that opens can run.
    pub fn open(
        name: &str,
        ifname: &str,
        cfg: AfPacketConfig,
    ) -> Result<Arc<AfPacketPort>, PortError> {
        let fail = |what: &str, e: io::Error| {
            let hint = if e.raw_os_error() == Some(libc::EPERM) {
                " (AF_PACKET needs CAP_NET_RAW)"
            } else {
                ""
            };
            PortError::Backend(format!("afpacket {ifname}: {what}: {e}{hint}"))
        };
        let bad = |what: String| PortError::Backend(format!("afpacket {ifname}: {what}"));
        if cfg.rx_queues == 0 || cfg.tx_queues == 0 {
            return Err(bad(format!(
                "needs at least one receive and one transmit queue (asked for {} and {})",
                cfg.rx_queues, cfg.tx_queues
            )));
        }
        if !cfg.v3_block_bytes.is_power_of_two() || cfg.v3_block_bytes < 4096 {
            return Err(bad(format!(
                "v3_block_bytes must be a power of two of at least 4096, not {}",
                cfg.v3_block_bytes
            )));
        }
        if cfg.tx_frames == 0 {
            return Err(bad("tx_frames must be at least 1".into()));
        }
        let control = netdev::control_socket().map_err(|e| fail("control socket", e))?;
        let ifindex = netdev::index(control.as_fd(), ifname)
            .map_err(|e| PortError::Backend(e.to_string()))?;
        let mac =
            netdev::mac(control.as_fd(), ifname).map_err(|e| PortError::Backend(e.to_string()))?;
        let if_mtu =
            netdev::mtu(control.as_fd(), ifname).map_err(|e| PortError::Backend(e.to_string()))?;
        let room = match cfg.rx_version {
            RxRingVersion::V3 => DATA_ROOM - L2_OVERHEAD,
            // A V2 slot also holds the frame header and the kernel's
            // alignment in front of the frame (under 96 bytes), and the
            // kernel has taken an offloaded VLAN tag out.
            RxRingVersion::V2 => V2_RX_FRAME - 96 - 14,
        };
        let mtu = if_mtu.min(room as u32) as u16;

        let mut rx = Vec::with_capacity(cfg.rx_queues as usize);
        let mut fanout_id = None;
        for q in 0..cfg.rx_queues {
            let (ring, layout) = open_rx(ifindex, &cfg).map_err(|(what, e)| fail(what, e))?;
            if q == 0 && cfg.promiscuous {
                let mreq = sys::PacketMreq {
                    ifindex,
                    kind: sys::PACKET_MR_PROMISC,
                    alen: 0,
                    address: [0; 8],
                };
                setsockopt(&ring.fd, sys::PACKET_ADD_MEMBERSHIP, &mreq)
                    .map_err(|e| fail("promiscuous mode", e))?;
            }
            if cfg.rx_queues > 1 {
                fanout_id = Some(join_fanout(&ring.fd, fanout_id).map_err(|e| fail("fanout", e))?);
            }
            rx.push(Arc::new(RxShared {
                ring,
                layout,
                counters: QueueCounters::default(),
                kernel_drops: AtomicU64::new(0),
                taken: AtomicBool::new(false),
                cursor: AtomicU32::new(0),
            }));
        }
        let mut tx = Vec::with_capacity(cfg.tx_queues as usize);
        for _ in 0..cfg.tx_queues {
            let ring = open_tx(ifindex, &cfg).map_err(|(what, e)| fail(what, e))?;
            tx.push(Arc::new(TxShared {
                ring,
                frames: cfg.tx_frames,
                counters: QueueCounters::default(),
                taken: AtomicBool::new(false),
                cursor: AtomicU32::new(0),
            }));
        }
        Ok(Arc::new(AfPacketPort {
            name: name.to_string(),
            ifname: ifname.to_string(),
            cfg,
            mac,
            mtu,
            control,
            rx: rx.into(),
            tx: tx.into(),
        }))
    }

    pub fn config(&self) -> &AfPacketConfig {
        &self.cfg
    }

    /// The interface this port reads and writes.
    pub fn interface(&self) -> &str {
        &self.ifname
    }

    fn take<'a, T>(
        &self,
        slots: &'a [Arc<T>],
        queue: u16,
        taken: impl Fn(&T) -> &AtomicBool,
    ) -> Result<&'a Arc<T>, PortError> {
        let slot = slots
            .get(queue as usize)
            .ok_or_else(|| PortError::NoSuchQueue {
                port: self.name.clone(),
                queue,
                queues: slots.len() as u16,
            })?;
        if taken(slot).swap(true, Ordering::Acquire) {
            return Err(PortError::QueueTaken {
                port: self.name.clone(),
                queue,
            });
        }
        Ok(slot)
    }
}

/// Makes one receive socket with its ring, bound to the interface.
fn open_rx(
    ifindex: i32,
    cfg: &AfPacketConfig,
) -> Result<(Ring, RxLayout), (&'static str, io::Error)> {
    let fd = packet_socket().map_err(|e| ("socket", e))?;
    let (len, layout) = match cfg.rx_version {
        RxRingVersion::V3 => {
            setsockopt(&fd, sys::PACKET_VERSION, &sys::TPACKET_V3)
                .map_err(|e| ("TPACKET_V3", e))?;
            let block_size = cfg.v3_block_bytes;
            let blocks = (cfg.rx_ring_bytes / block_size).max(2) as u32;
            let req = sys::TpacketReq3 {
                block_size: block_size as u32,
                block_nr: blocks,
                frame_size: V2_RX_FRAME as u32,
                frame_nr: (block_size / V2_RX_FRAME) as u32 * blocks,
                retire_blk_tov: cfg.v3_block_timeout_ms.max(1),
                sizeof_priv: 0,
                feature_req_word: sys::TP_FT_REQ_FILL_RXHASH,
            };
            setsockopt(&fd, sys::PACKET_RX_RING, &req).map_err(|e| ("PACKET_RX_RING", e))?;
            (
                block_size * blocks as usize,
                RxLayout::V3 { block_size, blocks },
            )
        }
        RxRingVersion::V2 => {
            setsockopt(&fd, sys::PACKET_VERSION, &sys::TPACKET_V2)
                .map_err(|e| ("TPACKET_V2", e))?;
            let blocks = (cfg.rx_ring_bytes / V2_RX_BLOCK).max(1);
            let frames = (blocks * (V2_RX_BLOCK / V2_RX_FRAME)) as u32;
            let req = sys::TpacketReq {
                block_size: V2_RX_BLOCK as u32,
                block_nr: blocks as u32,
                frame_size: V2_RX_FRAME as u32,
                frame_nr: frames,
            };
            setsockopt(&fd, sys::PACKET_RX_RING, &req).map_err(|e| ("PACKET_RX_RING", e))?;
            (blocks * V2_RX_BLOCK, RxLayout::V2 { frames })
        }
    };
    let map = Mapping::new(&fd, len).map_err(|e| ("mmap of the receive ring", e))?;
    setsockopt(&fd, sys::PACKET_IGNORE_OUTGOING, &1 as &libc::c_int)
        .map_err(|e| ("PACKET_IGNORE_OUTGOING", e))?;
    bind(&fd, ifindex, libc::ETH_P_ALL as u16).map_err(|e| ("bind", e))?;
    Ok((Ring { map, fd }, layout))
}

/// Joins the port's fanout group, making it first when `id` is `None`;
/// returns the group id.
fn join_fanout(fd: &OwnedFd, id: Option<u16>) -> io::Result<u16> {
    match id {
        Some(id) => {
            let arg: u32 = (sys::PACKET_FANOUT_HASH << 16) | id as u32;
            setsockopt(fd, sys::PACKET_FANOUT, &arg)?;
            Ok(id)
        }
        None => {
            let arg: u32 = (sys::PACKET_FANOUT_HASH | sys::PACKET_FANOUT_FLAG_UNIQUEID) << 16;
            setsockopt(fd, sys::PACKET_FANOUT, &arg)?;
            let mut got: u32 = 0;
            getsockopt(fd, sys::PACKET_FANOUT, &mut got)?;
            Ok(got as u16)
        }
    }
}

/// Makes one transmit socket with its ring.
fn open_tx(ifindex: i32, cfg: &AfPacketConfig) -> Result<Ring, (&'static str, io::Error)> {
    let fd = packet_socket().map_err(|e| ("socket", e))?;
    setsockopt(&fd, sys::PACKET_VERSION, &sys::TPACKET_V2).map_err(|e| ("TPACKET_V2", e))?;
    setsockopt(&fd, sys::PACKET_LOSS, &1 as &libc::c_int).map_err(|e| ("PACKET_LOSS", e))?;
    if cfg.qdisc_bypass {
        setsockopt(&fd, sys::PACKET_QDISC_BYPASS, &1 as &libc::c_int)
            .map_err(|e| ("PACKET_QDISC_BYPASS", e))?;
    }
    let req = sys::TpacketReq {
        block_size: TX_FRAME as u32,
        block_nr: cfg.tx_frames,
        frame_size: TX_FRAME as u32,
        frame_nr: cfg.tx_frames,
    };
    setsockopt(&fd, sys::PACKET_TX_RING, &req).map_err(|e| ("PACKET_TX_RING", e))?;
    let map = Mapping::new(&fd, TX_FRAME * cfg.tx_frames as usize)
        .map_err(|e| ("mmap of the transmit ring", e))?;
    // Protocol 0: bound to the interface for sending, receives nothing.
    bind(&fd, ifindex, 0).map_err(|e| ("bind", e))?;
    Ok(Ring { map, fd })
}

impl Port for AfPacketPort {
    fn info(&self) -> PortInfo {
        let link_up = netdev::flags(self.control.as_fd(), &self.ifname)
            .map(|f| f & netdev::IFF_UP != 0 && f & netdev::IFF_RUNNING != 0)
            .unwrap_or(false);
        PortInfo {
            name: self.name.clone(),
            driver: "afpacket",
            mac: self.mac,
            mtu: self.mtu,
            rx_queues: self.cfg.rx_queues,
            tx_queues: self.cfg.tx_queues,
            link_up,
            speed_mbps: 0,
        }
    }

    fn stats(&self) -> PortStats {
        let mut total = PortStats::default();
        for slot in self.rx.iter() {
            let mut ks = sys::TpacketStatsV3::default();
            if getsockopt(&slot.ring.fd, sys::PACKET_STATISTICS, &mut ks).is_ok() && ks.drops > 0 {
                slot.kernel_drops
                    .fetch_add(ks.drops as u64, Ordering::Relaxed);
            }
            let mut s = slot.counters.snapshot();
            s.rx_dropped += slot.kernel_drops.load(Ordering::Relaxed);
            total += s;
        }
        for slot in self.tx.iter() {
            total += slot.counters.snapshot();
        }
        total
    }

    fn rx_queue(&self, queue: u16) -> Result<Box<dyn RxQueue>, PortError> {
        let slot = self.take(&self.rx, queue, |s| &s.taken)?.clone();
        let cursor = slot.cursor.load(Ordering::Acquire);
        Ok(match slot.layout {
            RxLayout::V3 { block_size, blocks } => Box::new(RxV3 {
                cursor: cursor % blocks,
                block_size,
                blocks,
                left: 0,
                offset: 0,
                open: false,
                port_id: self.cfg.port_id,
                queue,
                slot,
            }),
            RxLayout::V2 { frames } => Box::new(RxV2 {
                cursor: cursor % frames,
                frames,
                port_id: self.cfg.port_id,
                queue,
                slot,
            }),
        })
    }

    fn tx_queue(&self, queue: u16) -> Result<Box<dyn TxQueue>, PortError> {
        let slot = self.take(&self.tx, queue, |s| &s.taken)?.clone();
        let cursor = slot.cursor.load(Ordering::Acquire) % slot.frames;
        Ok(Box::new(AfPacketTx {
            cursor,
            max_frame: self.mtu as usize + L2_OVERHEAD,
            kick_pending: false,
            slot,
        }))
    }
}

impl core::fmt::Debug for AfPacketPort {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AfPacketPort")
            .field("name", &self.name)
            .field("interface", &self.ifname)
            .field("cfg", &self.cfg)
            .finish()
    }
}

/// What one received frame becomes.
struct Received {
    /// `tp_len`: the frame's length on the wire.
    wire_len: u32,
    /// `tp_status` of the frame.
    status: u32,
    vlan_tci: u16,
    vlan_tpid: u16,
    hash: u32,
}

/// Copies `frame` into a pool buffer and appends it to `out`, putting back
/// a VLAN tag the kernel took out and completing a partial checksum.
/// Returns the bytes delivered, or `None` when the frame is lost
/// (truncated by the ring, too long for a buffer, or no buffer).
#[inline]
fn deliver(
    frame: &[u8],
    meta: &Received,
    port_id: u16,
    queue: u16,
    pool: &mut PoolCache,
    out: &mut Batch,
) -> Option<usize> {
    if (frame.len() as u64) < meta.wire_len as u64 || frame.len() < 14 {
        return None;
    }
    let tagged = meta.status & sys::TP_STATUS_VLAN_VALID != 0;
    let len = frame.len() + if tagged { 4 } else { 0 };
    if len > DATA_ROOM {
        return None;
    }
    let mut pkt = pool.alloc()?;
    let dst = pkt.reset(len)?;
    if tagged {
        let tpid = if meta.status & sys::TP_STATUS_VLAN_TPID_VALID != 0 && meta.vlan_tpid != 0 {
            meta.vlan_tpid
        } else {
            ethertype::VLAN
        };
        dst[..12].copy_from_slice(&frame[..12]);
        dst[12..14].copy_from_slice(&tpid.to_be_bytes());
        dst[14..16].copy_from_slice(&meta.vlan_tci.to_be_bytes());
        dst[16..].copy_from_slice(&frame[12..]);
    } else {
        dst.copy_from_slice(frame);
    }
    if meta.status & sys::TP_STATUS_CSUMNOTREADY != 0 {
        complete_partial_checksum(dst);
    }
    pkt.rx_port = port_id;
    pkt.rx_queue = queue;
    pkt.rss_hash = meta.hash;
    out.push(pkt);
    Some(len)
}

/// A TPACKET_V3 receive queue.
struct RxV3 {
    slot: Arc<RxShared>,
    /// The block being read, or the next one to wait for.
    cursor: u32,
    block_size: usize,
    blocks: u32,
    /// Frames not yet read in the open block.
    left: u32,
    /// Offset of the next frame's header in the open block.
    offset: usize,
    /// Whether block `cursor` is ours (handed over, not yet given back).
    open: bool,
    port_id: u16,
    queue: u16,
}

impl RxV3 {
    #[inline(always)]
    fn block(&self) -> *mut u8 {
        self.slot
            .ring
            .map
            .at(self.cursor as usize * self.block_size)
    }

    /// Gives the open block back to the kernel and moves to the next.
    #[inline]
    fn release(&mut self) {
        // SAFETY: the block header's status word is 4-byte aligned (blocks
        // are page-aligned) and inside the mapping.
        unsafe { status_word(self.block().add(sys::BLOCK_STATUS)) }
            .store(sys::TP_STATUS_KERNEL, Ordering::Release);
        self.open = false;
        self.left = 0;
        self.cursor = (self.cursor + 1) % self.blocks;
    }
}

impl RxQueue for RxV3 {
    fn rx_burst(&mut self, pool: &mut PoolCache, out: &mut Batch) -> usize {
        let start = out.len();
        let mut bytes = 0usize;
        let mut lost = 0u64;
        while !out.is_full() {
            if !self.open {
                let block = self.block();
                // SAFETY: block header status word, aligned and in bounds.
                let status =
                    unsafe { status_word(block.add(sys::BLOCK_STATUS)) }.load(Ordering::Acquire);
                if status & sys::TP_STATUS_USER == 0 {
                    break;
                }
                // SAFETY: the block is ours (status read with Acquire); its
                // header lies at its start, inside the mapping.
                let (num, first) = unsafe {
                    (
                        field::<u32>(block.add(sys::BLOCK_NUM_PKTS)),
                        field::<u32>(block.add(sys::BLOCK_FIRST_PKT)),
                    )
                };
                self.open = true;
                self.left = num;
                self.offset = first as usize;
            }
            if self.left == 0 {
                self.release();
                continue;
            }
            let off = self.offset;
            if off.saturating_add(sys::V3_HDR_LEN) > self.block_size {
                // A frame header outside the block: the rest of the block
                // cannot be framed.
                lost += self.left as u64;
                self.release();
                continue;
            }
            // SAFETY: `off + V3_HDR_LEN <= block_size`, so the header is in
            // the block, which is ours.
            let (next, snaplen, meta, mac) = unsafe {
                let h = self.block().add(off);
                (
                    field::<u32>(h.add(sys::V3_NEXT_OFFSET)) as usize,
                    field::<u32>(h.add(sys::V3_SNAPLEN)) as usize,
                    Received {
                        wire_len: field::<u32>(h.add(sys::V3_LEN)),
                        status: field::<u32>(h.add(sys::V3_STATUS)),
                        hash: field::<u32>(h.add(sys::V3_RXHASH)),
                        vlan_tci: field::<u32>(h.add(sys::V3_VLAN_TCI)) as u16,
                        vlan_tpid: field::<u16>(h.add(sys::V3_VLAN_TPID)),
                    },
                    field::<u16>(h.add(sys::V3_MAC)) as usize,
                )
            };
            let data = off + mac;
            if data.saturating_add(snaplen) <= self.block_size {
                // SAFETY: `data..data + snaplen` is inside the block, ours.
                let frame = unsafe { core::slice::from_raw_parts(self.block().add(data), snaplen) };
                match deliver(frame, &meta, self.port_id, self.queue, pool, out) {
                    Some(n) => bytes += n,
                    None => lost += 1,
                }
            } else {
                lost += 1;
            }
            self.left -= 1;
            self.offset = if next == 0 {
                self.block_size
            } else {
                off + next
            };
        }
        // Hand a finished block back now rather than at the next poll.
        if self.open && self.left == 0 {
            self.release();
        }
        let n = out.len() - start;
        if n > 0 {
            bump(&self.slot.counters.rx_packets, n as u64);
            bump(&self.slot.counters.rx_bytes, bytes as u64);
        }
        if lost > 0 {
            bump(&self.slot.counters.rx_dropped, lost);
        }
        n
    }
}

impl Drop for RxV3 {
    fn drop(&mut self) {
        // The next handle starts at a fresh block: give back a block that
        // was being read (its unread frames are lost).
        if self.open {
            self.release();
        }
        self.slot.cursor.store(self.cursor, Ordering::Release);
        self.slot.taken.store(false, Ordering::Release);
    }
}

/// A TPACKET_V2 receive queue.
struct RxV2 {
    slot: Arc<RxShared>,
    cursor: u32,
    frames: u32,
    port_id: u16,
    queue: u16,
}

impl RxQueue for RxV2 {
    fn rx_burst(&mut self, pool: &mut PoolCache, out: &mut Batch) -> usize {
        let start = out.len();
        let mut bytes = 0usize;
        let mut lost = 0u64;
        while !out.is_full() {
            let h = self.slot.ring.map.at(self.cursor as usize * V2_RX_FRAME);
            // SAFETY: slot headers are 2048-byte aligned inside the mapping.
            let status = unsafe { status_word(h.add(sys::V2_STATUS)) };
            let st = status.load(Ordering::Acquire);
            if st & sys::TP_STATUS_USER == 0 {
                break;
            }
            // SAFETY: the slot is ours (status read with Acquire) and its
            // header is inside it.
            let (snaplen, mac, meta) = unsafe {
                (
                    field::<u32>(h.add(sys::V2_SNAPLEN)) as usize,
                    field::<u16>(h.add(sys::V2_MAC)) as usize,
                    Received {
                        wire_len: field::<u32>(h.add(sys::V2_LEN)),
                        status: st,
                        hash: 0,
                        vlan_tci: field::<u16>(h.add(sys::V2_VLAN_TCI)),
                        vlan_tpid: field::<u16>(h.add(sys::V2_VLAN_TPID)),
                    },
                )
            };
            if mac >= sys::V2_HDR_LEN && mac.saturating_add(snaplen) <= V2_RX_FRAME {
                // SAFETY: `mac..mac + snaplen` lies inside this slot.
                let frame = unsafe { core::slice::from_raw_parts(h.add(mac), snaplen) };
                match deliver(frame, &meta, self.port_id, self.queue, pool, out) {
                    Some(n) => bytes += n,
                    None => lost += 1,
                }
            } else {
                lost += 1;
            }
            status.store(sys::TP_STATUS_KERNEL, Ordering::Release);
            self.cursor = (self.cursor + 1) % self.frames;
        }
        let n = out.len() - start;
        if n > 0 {
            bump(&self.slot.counters.rx_packets, n as u64);
            bump(&self.slot.counters.rx_bytes, bytes as u64);
        }
        if lost > 0 {
            bump(&self.slot.counters.rx_dropped, lost);
        }
        n
    }
}

impl Drop for RxV2 {
    fn drop(&mut self) {
        self.slot.cursor.store(self.cursor, Ordering::Release);
        self.slot.taken.store(false, Ordering::Release);
    }
}

/// A transmit queue over a TPACKET_V2 TX ring.
struct AfPacketTx {
    slot: Arc<TxShared>,
    cursor: u32,
    /// Longest frame the interface takes (its MTU plus Ethernet and a tag).
    max_frame: usize,
    /// The last kick did not get through (the kernel was busy): kick again
    /// on the next flush.
    kick_pending: bool,
}

impl AfPacketTx {
    fn kick(&mut self) {
        // SAFETY: sendto with no buffer and no address on a packet socket
        // with a TX ring sends the ring's frames marked SEND_REQUEST;
        // MSG_DONTWAIT returns without waiting for them to complete.
        let rc = unsafe {
            libc::sendto(
                self.slot.ring.fd.as_raw_fd(),
                core::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                core::ptr::null(),
                0,
            )
        };
        self.kick_pending = rc < 0
            && matches!(
                io::Error::last_os_error().raw_os_error(),
                Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR)
            );
    }
}

impl TxQueue for AfPacketTx {
    fn tx_burst(&mut self, pkts: &mut Batch, pool: &mut PoolCache) -> usize {
        let mut taken = 0;
        let mut written = 0u64;
        let mut bytes = 0u64;
        let mut too_long = 0u64;
        for pkt in pkts.iter() {
            let frame = pkt.data();
            if frame.len() > self.max_frame || frame.len() < 14 {
                // The interface would refuse it; retrying cannot help.
                too_long += 1;
                taken += 1;
                continue;
            }
            let h = self.slot.ring.map.at(self.cursor as usize * TX_FRAME);
            // SAFETY: slot headers are TX_FRAME-aligned inside the mapping.
            let status = unsafe { status_word(h.add(sys::V2_STATUS)) };
            let st = status.load(Ordering::Acquire);
            if st != sys::TP_STATUS_AVAILABLE && st != sys::TP_STATUS_WRONG_FORMAT {
                break; // the kernel still holds this slot: the ring is full
            }
            // SAFETY: the slot is ours (status read with Acquire); the data
            // fits (`frame.len() <= max_frame <= TX_MAX_DATA`) and does not
            // overlap the packet's own buffer.
            unsafe {
                core::ptr::copy_nonoverlapping(frame.as_ptr(), h.add(sys::V2_TX_DATA), frame.len());
                core::ptr::write_unaligned(h.add(sys::V2_LEN).cast::<u32>(), frame.len() as u32);
            }
            status.store(sys::TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.cursor = (self.cursor + 1) % self.slot.frames;
            taken += 1;
            written += 1;
            bytes += frame.len() as u64;
        }
        for pkt in pkts.drain(..taken) {
            pool.free(pkt);
        }
        if written > 0 {
            self.kick();
        }
        let c = &self.slot.counters;
        if written > 0 {
            bump(&c.tx_packets, written);
            bump(&c.tx_bytes, bytes);
        }
        let left = pkts.len() as u64;
        if too_long + left > 0 {
            bump(&c.tx_dropped, too_long + left);
        }
        taken
    }

    fn flush(&mut self) {
        if self.kick_pending {
            self.kick();
        }
    }
}

impl Drop for AfPacketTx {
    fn drop(&mut self) {
        self.flush();
        self.slot.cursor.store(self.cursor, Ordering::Release);
        self.slot.taken.store(false, Ordering::Release);
    }
}

/// Completes the TCP or UDP checksum of an Ethernet frame whose sender left
/// it to the NIC (Linux's `CHECKSUM_PARTIAL`: the field holds the folded
/// pseudo-header sum, and the sum over the segment from the L4 header on,
/// complemented, is the checksum), as the kernel's `skb_checksum_help`
/// does. Walks up to two VLAN tags and IPv6 extension headers. Returns
/// whether it wrote a checksum; frames it cannot frame (truncated, not
/// TCP/UDP, fragments) are left alone.
pub fn complete_partial_checksum(frame: &mut [u8]) -> bool {
    let Some((l4, end, offset)) = partial_checksum_span(frame) else {
        return false;
    };
    let segment = &mut frame[l4..end];
    let mut value = !checksum::fold(checksum::sum(segment, 0));
    if offset == UDP_CHECKSUM && value == 0 {
        value = 0xffff; // UDP sends a computed zero as all ones (RFC 768)
    }
    segment[offset..offset + 2].copy_from_slice(&value.to_be_bytes());
    true
}

const TCP_CHECKSUM: usize = 16;
const UDP_CHECKSUM: usize = 6;

/// The L4 segment `l4..end` of a TCP or UDP frame and its checksum field's
/// offset in it.
fn partial_checksum_span(frame: &[u8]) -> Option<(usize, usize, usize)> {
    let be16 = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]))
    };
    let mut at = 12;
    let mut ether = be16(at)?;
    for _ in 0..2 {
        if matches!(
            ether,
            ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_9100
        ) {
            at += 4;
            ether = be16(at)?;
        }
    }
    let ip = at + 2;
    let (proto, l4, end) = match ether {
        ethertype::IPV4 => {
            let vihl = *frame.get(ip)?;
            let ihl = (vihl & 0x0f) as usize * 4;
            if vihl >> 4 != 4 || ihl < 20 {
                return None;
            }
            let total = be16(ip + 2)? as usize;
            let frag = be16(ip + 6)?;
            if frag & 0x3fff != 0 {
                return None; // a fragment: its L4 checksum covers the whole datagram
            }
            (*frame.get(ip + 9)?, ip + ihl, ip + total)
        }
        ethertype::IPV6 => {
            if *frame.get(ip)? >> 4 != 6 {
                return None;
            }
            let end = ip + 40 + be16(ip + 4)? as usize;
            let mut next = *frame.get(ip + 6)?;
            let mut at = ip + 40;
            for _ in 0..8 {
                match next {
                    ip_proto::HOPOPTS | ip_proto::IPV6_ROUTE | ip_proto::IPV6_OPTS => {
                        next = *frame.get(at)?;
                        at += (*frame.get(at + 1)? as usize + 1) * 8;
                    }
                    ip_proto::AH => {
                        next = *frame.get(at)?;
                        at += (*frame.get(at + 1)? as usize + 2) * 4;
                    }
                    _ => break,
                }
            }
            (next, at, end)
        }
        _ => return None,
    };
    let offset = match proto {
        ip_proto::TCP => TCP_CHECKSUM,
        ip_proto::UDP => UDP_CHECKSUM,
        _ => return None,
    };
    if end > frame.len() || l4 + offset + 2 > end {
        return None;
    }
    Some((l4, end, offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::PacketBuilder;
    use crate::wire::checksum::{pseudo_header_v4, pseudo_header_v6};

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    /// Replaces the L4 checksum at `field` (frame offset) with what a
    /// sender leaving it to the NIC writes: the folded pseudo-header sum.
    fn make_partial(frame: &mut [u8], field: usize, pseudo: u32) {
        frame[field..field + 2].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
    }

    #[test]
    fn completes_tcp_over_ipv4_as_the_sender_would() {
        let good = PacketBuilder::new(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 1, 2])
            .tcp(40000, 80, 0x18)
            .payload(b"GET / HTTP/1.1\r\n\r\n")
            .build();
        let mut f = good.clone();
        let l4_len = (good.len() - 34) as u16;
        make_partial(
            &mut f,
            34 + 16,
            pseudo_header_v4([10, 0, 0, 1], [10, 0, 1, 2], 6, l4_len),
        );
        assert_ne!(f, good);
        assert!(complete_partial_checksum(&mut f));
        assert_eq!(f, good);
    }

    #[test]
    fn completes_udp_over_ipv6_behind_a_vlan_tag_and_an_extension_header() {
        let src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let good = PacketBuilder::new(A, B)
            .vlan(7)
            .ipv6(src, dst)
            .ipv6_ext(ip_proto::IPV6_OPTS, &[1, 4, 0, 0, 0, 0])
            .udp(5353, 53)
            .payload(&[0xa5; 33])
            .build();
        let l4 = 18 + 40 + 8;
        let mut f = good.clone();
        let len = (good.len() - l4) as u32;
        make_partial(&mut f, l4 + 6, pseudo_header_v6(src, dst, 17, len));
        assert!(complete_partial_checksum(&mut f));
        assert_eq!(f, good);
    }

    #[test]
    fn ignores_ethernet_padding() {
        // A short TCP segment padded to the 60-byte minimum: the padding
        // is not part of the segment.
        let good = PacketBuilder::new(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 1, 2])
            .tcp(1, 2, 0x02)
            .build();
        let mut f = good.clone();
        make_partial(
            &mut f,
            50,
            pseudo_header_v4([10, 0, 0, 1], [10, 0, 1, 2], 6, 20),
        );
        f.resize(60, 0xee);
        assert!(complete_partial_checksum(&mut f));
        assert_eq!(&f[..good.len()], &good[..]);
    }

    #[test]
    fn leaves_what_it_cannot_frame() {
        let tcp = PacketBuilder::new(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 1, 2])
            .tcp(1, 2, 0x02)
            .build();
        for cut in 0..tcp.len() {
            let mut f = tcp[..cut].to_vec();
            let before = f.clone();
            assert!(!complete_partial_checksum(&mut f), "cut at {cut}");
            assert_eq!(f, before);
        }
        let mut icmp = PacketBuilder::new(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 1, 2])
            .echo_request(1, 1)
            .build();
        assert!(!complete_partial_checksum(&mut icmp));
        let mut frag = PacketBuilder::new(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 1, 2])
            .ipv4_frag(9, 0x2000)
            .udp(1, 2)
            .build();
        assert!(!complete_partial_checksum(&mut frag));
        let mut arp = PacketBuilder::new(A, B)
            .arp(1, A, [10, 0, 0, 1], [0; 6], [10, 0, 0, 2])
            .build();
        assert!(!complete_partial_checksum(&mut arp));
        // An IPv4 total length past the frame.
        let mut long = tcp.clone();
        long[16..18].copy_from_slice(&1000u16.to_be_bytes());
        assert!(!complete_partial_checksum(&mut long));
    }

    #[test]
    fn configuration_is_checked_before_any_socket() {
        let bad = |cfg: AfPacketConfig| AfPacketPort::open("p", "lo", cfg).unwrap_err().to_string();
        let e = bad(AfPacketConfig {
            rx_queues: 0,
            ..AfPacketConfig::default()
        });
        assert!(e.contains("at least one receive"), "{e}");
        let e = bad(AfPacketConfig {
            v3_block_bytes: 5000,
            ..AfPacketConfig::default()
        });
        assert!(e.contains("power of two"), "{e}");
    }

    #[test]
    fn a_missing_interface_is_named() {
        let e = AfPacketPort::open("p", "sluice-none0", AfPacketConfig::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("sluice-none0"), "{e}");
    }
}
