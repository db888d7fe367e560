//! The memory an AF_XDP socket shares with the kernel: the UMEM (the frames)
//! and the four single-producer, single-consumer rings of descriptors.
//!
//! A ring is an array of `size` slots (a power of two) with a producer and a
//! consumer index that run freely and wrap at 2^32. The producer writes
//! slots, then publishes them with a release store of its index; the
//! consumer reads the producer index with an acquire load, reads the slots,
//! then gives them back with a release store of its own index. Each side
//! keeps a cached copy of the other's index and reloads it only when the
//! cache says there is not enough, so a burst touches the shared line once.
//!
//! This process produces on the fill and TX rings and consumes the RX and
//! completion rings; the kernel does the opposite.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicU32, Ordering};
use std::io;
use std::os::fd::RawFd;

/// A memory mapping, unmapped on drop.
pub(super) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory. Who may touch which bytes is decided
// by its owners (a ring by its one user, UMEM frames by the queue half that
// owns them), not by the thread that holds the mapping.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Zeroed private memory, populated up front (the UMEM).
    pub(super) fn anonymous(len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh anonymous mapping aliases nothing.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        Mapping::checked(ptr, len)
    }

    /// One of a socket's rings, at the page offset the kernel names it by.
    fn socket(fd: RawFd, len: usize, pgoff: u64) -> io::Result<Mapping> {
        // SAFETY: mapping a socket's ring creates new memory shared with the
        // kernel; nothing in this process aliases it yet.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        Mapping::checked(ptr, len)
    }

    fn checked(ptr: *mut libc::c_void, len: usize) -> io::Result<Mapping> {
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?,
            len,
        })
    }

    pub(super) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by this value and nothing borrows it
        // past its owner's lifetime.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A frame descriptor of the RX and TX rings (`struct xdp_desc`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct XdpDesc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

/// Where a ring's pieces sit in its mapping (`struct xdp_ring_offset`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RingOffsets {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}

/// The four rings' offsets (`struct xdp_mmap_offsets`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct MmapOffsets {
    pub rx: RingOffsets,
    pub tx: RingOffsets,
    pub fill: RingOffsets,
    pub completion: RingOffsets,
}

/// One mapped ring of `T` (a frame address for fill and completion, an
/// [`XdpDesc`] for RX and TX), used from one side only.
pub(super) struct Ring<T: Copy> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    slots: NonNull<T>,
    mask: u32,
    size: u32,
    /// Producer side: the next index to publish. Consumer side: the last
    /// producer index seen.
    cached_prod: u32,
    /// Consumer side: the next index to release. Producer side: the last
    /// consumer index seen.
    cached_cons: u32,
    _map: Mapping,
    _slot: PhantomData<T>,
}

// SAFETY: a ring is used by the one thread that holds it; the indices it
// shares with the kernel are atomics, and its slots are only touched between
// the acquire and release of those indices.
unsafe impl<T: Copy> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// Maps the ring of `size` slots that the kernel set up for `fd`.
    pub(super) fn map(fd: RawFd, off: &RingOffsets, size: u32, pgoff: u64) -> io::Result<Ring<T>> {
        debug_assert!(size.is_power_of_two());
        let len = off.desc as usize + size as usize * core::mem::size_of::<T>();
        let map = Mapping::socket(fd, len, pgoff)?;
        let at = |offset: u64| {
            // SAFETY: the kernel's offsets lie inside the mapping it sized.
            unsafe { NonNull::new_unchecked(map.as_ptr().add(offset as usize)) }
        };
        let producer: NonNull<AtomicU32> = at(off.producer).cast();
        let consumer: NonNull<AtomicU32> = at(off.consumer).cast();
        let mut ring = Ring {
            producer,
            consumer,
            flags: at(off.flags).cast(),
            slots: at(off.desc).cast(),
            mask: size - 1,
            size,
            cached_prod: 0,
            cached_cons: 0,
            _map: map,
            _slot: PhantomData,
        };
        ring.cached_prod = ring.producer().load(Ordering::Relaxed);
        ring.cached_cons = ring.consumer().load(Ordering::Relaxed);
        Ok(ring)
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: a kernel-aligned u32 inside the mapping this ring owns.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.consumer.as_ref() }
    }

    pub(super) fn size(&self) -> u32 {
        self.size
    }

    /// Whether the kernel asked to be woken up (by `sendto` for TX,
    /// `recvfrom` or `poll` for fill) before it processes this ring again.
    #[inline]
    pub(super) fn needs_wakeup(&self) -> bool {
        // The kernel sets the flag and then rechecks the ring; the fence keeps
        // our index store from passing this load, so one of the two sides
        // sees the other's write.
        fence(Ordering::SeqCst);
        // SAFETY: as for `producer`.
        let flags = unsafe { self.flags.as_ref() };
        flags.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // --- producer side (fill, TX) ---

    /// Free slots, at least `want` if there are that many; reads the
    /// consumer index only when the cached one shows fewer.
    #[inline]
    pub(super) fn free(&mut self, want: u32) -> u32 {
        let free = self.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free >= want {
            return free;
        }
        self.cached_cons = self.consumer().load(Ordering::Acquire);
        self.size - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Writes the `i`-th slot after the published ones. The caller checked
    /// with [`free`](Ring::free) that it is free.
    #[inline]
    pub(super) fn write(&mut self, i: u32, value: T) {
        let slot = (self.cached_prod.wrapping_add(i) & self.mask) as usize;
        // SAFETY: slot <= mask < size, inside the slot array; a free slot is
        // not read by the kernel until it is published.
        unsafe { self.slots.as_ptr().add(slot).write(value) }
    }

    /// Publishes the next `n` written slots.
    #[inline]
    pub(super) fn submit(&mut self, n: u32) {
        self.cached_prod = self.cached_prod.wrapping_add(n);
        self.producer().store(self.cached_prod, Ordering::Release);
    }

    // --- consumer side (RX, completion) ---

    /// Slots ready to read, at most `want`; reads the producer index only
    /// when the cached view is empty.
    #[inline]
    pub(super) fn ready(&mut self, want: u32) -> u32 {
        let mut ready = self.cached_prod.wrapping_sub(self.cached_cons);
        if ready == 0 {
            self.cached_prod = self.producer().load(Ordering::Acquire);
            ready = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        ready.min(want)
    }

    /// Reads the `i`-th ready slot. The caller checked with
    /// [`ready`](Ring::ready) that it is ready.
    #[inline]
    pub(super) fn read(&self, i: u32) -> T {
        let slot = (self.cached_cons.wrapping_add(i) & self.mask) as usize;
        // SAFETY: slot < size; a ready slot was published by the kernel
        // (acquire in `ready`) and is ours until `release`.
        unsafe { self.slots.as_ptr().add(slot).read() }
    }

    /// Gives the next `n` read slots back to the kernel.
    #[inline]
    pub(super) fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        self.consumer().store(self.cached_cons, Ordering::Release);
    }
}
