//! One XSK socket: its UMEM, its four rings, and the bind to an interface
//! queue.
//!
//! The UMEM holds `2 * ring_size` frames of [`FRAME_SIZE`] bytes, split in
//! two halves that never meet: the receive half circulates between the fill
//! ring and the RX ring and belongs to whoever holds the receive queue; the
//! transmit half circulates between a free list, the TX ring and the
//! completion ring and belongs to whoever holds the transmit queue. So the
//! two directions of one socket can be served by different threads without
//! sharing anything but the socket's file descriptor.
//!
//! Every receive frame is always either in the fill ring, in the kernel, or
//! in the RX ring; the fill ring has a slot for each, so giving a frame back
//! after a receive never waits. Likewise the TX and completion rings have a
//! slot for every transmit frame.

use super::bpf::context;
use super::ring::{Mapping, MmapOffsets, Ring, XdpDesc};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Bytes per UMEM frame: one page, so a transmitted frame of any size a
/// packet buffer holds fits, and a received one of up to 3840 bytes (the
/// kernel keeps 256 bytes of headroom in front of it).
pub(super) const FRAME_SIZE: u32 = 4096;

/// The socket's receive half: the frames the kernel fills.
pub(super) struct RxRings {
    pub fill: Ring<u64>,
    pub rx: Ring<XdpDesc>,
}

/// The socket's transmit half: the frames it sends.
pub(super) struct TxRings {
    pub tx: Ring<XdpDesc>,
    pub completion: Ring<u64>,
    /// Transmit frames not in the kernel (addresses into the UMEM).
    pub free: Vec<u64>,
    /// Frames submitted to the TX ring whose completion has not been seen.
    pub outstanding: u32,
}

/// An open, bound socket and its UMEM. The fd is closed before the UMEM is
/// unmapped (field order).
pub(super) struct XskSocket {
    fd: OwnedFd,
    umem: Mapping,
}

/// How to bind.
#[derive(Debug, Clone, Copy)]
pub(super) struct BindOptions {
    pub ifindex: u32,
    pub queue: u32,
    /// Slots per ring; a power of two.
    pub ring_size: u32,
    pub zerocopy: bool,
}

fn setsockopt<T>(fd: RawFd, opt: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live T and its size is passed with it.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            (value as *const T).cast(),
            core::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl XskSocket {
    /// Creates the socket, registers its UMEM, maps its rings, puts every
    /// receive frame in the fill ring and binds to `opts.queue`.
    pub(super) fn open(opts: BindOptions) -> io::Result<(XskSocket, RxRings, TxRings)> {
        let n = opts.ring_size;
        assert!(n.is_power_of_two(), "ring size must be a power of two");
        // SAFETY: plain socket creation.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(context(
                io::Error::last_os_error(),
                "cannot create an AF_XDP socket",
            ));
        }
        // SAFETY: a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let raw = fd.as_raw_fd();

        let frames = 2 * n as usize;
        let umem = Mapping::anonymous(frames * FRAME_SIZE as usize)
            .map_err(|e| context(e, "cannot map the UMEM"))?;
        let reg = libc::xdp_umem_reg {
            addr: umem.as_ptr() as u64,
            len: umem.len() as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(raw, libc::XDP_UMEM_REG, &reg)
            .map_err(|e| context(e, "cannot register the UMEM (XDP_UMEM_REG)"))?;
        for (opt, what) in [
            (libc::XDP_UMEM_FILL_RING, "fill"),
            (libc::XDP_UMEM_COMPLETION_RING, "completion"),
            (libc::XDP_RX_RING, "RX"),
            (libc::XDP_TX_RING, "TX"),
        ] {
            setsockopt(raw, opt, &n)
                .map_err(|e| context(e, &format!("cannot size the {what} ring")))?;
        }

        let mut off = MmapOffsets::default();
        let mut len = core::mem::size_of::<MmapOffsets>() as libc::socklen_t;
        // SAFETY: `off` is a live xdp_mmap_offsets and `len` its size; the
        // kernel writes at most `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut MmapOffsets).cast(),
                &mut len,
            )
        };
        if r < 0 || len as usize != core::mem::size_of::<MmapOffsets>() {
            return Err(context(
                io::Error::last_os_error(),
                "cannot read the ring offsets (XDP_MMAP_OFFSETS; Linux 5.4 or later is needed)",
            ));
        }
        let map_err = |e| context(e, "cannot map a ring");
        let mut fill: Ring<u64> =
            Ring::map(raw, &off.fill, n, libc::XDP_UMEM_PGOFF_FILL_RING).map_err(map_err)?;
        let completion: Ring<u64> = Ring::map(
            raw,
            &off.completion,
            n,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
        )
        .map_err(map_err)?;
        let rx: Ring<XdpDesc> =
            Ring::map(raw, &off.rx, n, libc::XDP_PGOFF_RX_RING as u64).map_err(map_err)?;
        let tx: Ring<XdpDesc> =
            Ring::map(raw, &off.tx, n, libc::XDP_PGOFF_TX_RING as u64).map_err(map_err)?;

        // Receive frames are 0..n, transmit frames n..2n.
        let free = fill.free(n);
        debug_assert_eq!(free, n);
        for i in 0..n {
            fill.write(i, u64::from(i) * u64::from(FRAME_SIZE));
        }
        fill.submit(n);
        let free_tx: Vec<u64> = (n..2 * n)
            .rev()
            .map(|i| u64::from(i) * u64::from(FRAME_SIZE))
            .collect();

        let mode = if opts.zerocopy {
            libc::XDP_ZEROCOPY
        } else {
            libc::XDP_COPY
        };
        let addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_USE_NEED_WAKEUP | mode,
            sxdp_ifindex: opts.ifindex,
            sxdp_queue_id: opts.queue,
            sxdp_shared_umem_fd: 0,
        };
        // A socket on this queue that was just closed releases the queue
        // from a kernel work item, a moment after close returns.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            // SAFETY: `addr` is a live sockaddr_xdp and its size is passed.
            let r = unsafe {
                libc::bind(
                    raw,
                    (&addr as *const libc::sockaddr_xdp).cast(),
                    core::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            let hint = match e.raw_os_error() {
                Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) if opts.zerocopy => {
                    " (the driver does not support zero-copy AF_XDP)"
                }
                Some(libc::EBUSY) => " (another AF_XDP socket is bound to this queue)",
                _ => "",
            };
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot bind an AF_XDP socket to queue {} ({} mode): {e}{hint}",
                    opts.queue,
                    if opts.zerocopy { "zero-copy" } else { "copy" }
                ),
            ));
        }

        Ok((
            XskSocket { fd, umem },
            RxRings { fill, rx },
            TxRings {
                tx,
                completion,
                free: free_tx,
                outstanding: 0,
            },
        ))
    }

    pub(super) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub(super) fn umem(&self) -> (*mut u8, usize) {
        (self.umem.as_ptr(), self.umem.len())
    }

    /// The kernel's drop counters for this socket: frames it could not put
    /// in the RX ring (full, or no fill frame) or that it dropped otherwise.
    pub(super) fn kernel_rx_dropped(&self) -> u64 {
        let mut st = libc::xdp_statistics {
            rx_dropped: 0,
            rx_invalid_descs: 0,
            tx_invalid_descs: 0,
            rx_ring_full: 0,
            rx_fill_ring_empty_descs: 0,
            tx_ring_empty_descs: 0,
        };
        let mut len = core::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `st` is a live xdp_statistics and `len` its size; the
        // kernel writes at most `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&mut st as *mut libc::xdp_statistics).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return 0;
        }
        st.rx_dropped + st.rx_ring_full
    }
}
