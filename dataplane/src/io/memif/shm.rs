//! Shared memory for memif: regions (a memfd mapped by both sides), rings
//! inside them, and the eventfds that carry interrupts.
//!
//! A ring's `head` and `tail` are the only words both sides write to
//! synchronise: each is written by one side only (with Release, after the
//! descriptors and buffers it publishes) and read by the other (with
//! Acquire, before it touches those descriptors and buffers). `flags` is
//! written by the ring's receiver only. Descriptors and buffers are plain
//! memory, read and written only by the side that owns the slot at the
//! time.

use super::wire::{self, ring};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU16, Ordering};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A shared mapping of one region.
pub(super) struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is memory shared with the peer. Which side may touch
// a ring slot is decided by the ring's head and tail, accessed atomically,
// and each ring is used by one queue handle only.
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` hands out only pointers.
unsafe impl Sync for Region {}

impl Region {
    /// Maps `len` bytes of `fd`, which must be at least that long (checked:
    /// touching a page past the end of a file is SIGBUS).
    pub(super) fn map(fd: &OwnedFd, len: u64) -> io::Result<Region> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("region too large"))?;
        if len == 0 {
            return Err(io::Error::other("empty region"));
        }
        // SAFETY: fstat fills the zeroed stat buffer it is given.
        let mut st: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: `fd` is open and `st` is a valid out-pointer.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
            return Err(io::Error::last_os_error());
        }
        if (st.st_size as u64) < len as u64 {
            return Err(io::Error::other(format!(
                "region of {len} bytes, but its file has only {}",
                st.st_size
            )));
        }
        // SAFETY: a fresh shared mapping of `len` bytes of the file; the
        // result is checked before use.
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
        Ok(Region { ptr, len })
    }

    /// Creates a sealed-against-shrinking memfd of `len` bytes and maps it.
    pub(super) fn create(name: &str, len: u64) -> io::Result<(OwnedFd, Region)> {
        let cname = std::ffi::CString::new(name).map_err(io::Error::other)?;
        // SAFETY: memfd_create with a NUL-terminated name; checked below.
        let fd = unsafe {
            libc::memfd_create(cname.as_ptr(), libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC)
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain calls on our own descriptor.
        unsafe {
            if libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) < 0 {
                return Err(io::Error::last_os_error());
            }
            // The peer maps the file too: a shrink would be SIGBUS for both.
            if libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let region = Region::map(&fd, len)?;
        Ok((fd, region))
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The byte at `offset`.
    #[inline(always)]
    pub(super) fn at(&self, offset: usize) -> *mut u8 {
        debug_assert!(offset <= self.len);
        // SAFETY: callers stay inside the mapping.
        unsafe { self.ptr.as_ptr().add(offset) }
    }

    /// The buffer `[offset, offset + len)`, if it lies inside the region.
    #[inline(always)]
    pub(super) fn buffer(&self, offset: u32, len: u32) -> Option<*mut u8> {
        let end = offset as usize + len as usize;
        (end <= self.len).then(|| self.at(offset as usize))
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `map` mapped; nothing refers to it
        // any more (rings and handles hold the region's owner alive).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One descriptor, as read from or written to a ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub(super) struct Desc {
    pub flags: u16,
    pub region: u16,
    pub length: u32,
    pub offset: u32,
    pub metadata: u32,
}

const _: () = assert!(core::mem::size_of::<Desc>() == ring::DESC_SIZE);

/// A ring inside a mapped region. Copyable: the region it points into is
/// kept alive by whoever holds the connection.
#[derive(Clone, Copy)]
pub(super) struct Ring {
    base: NonNull<u8>,
    pub log2: u8,
}

// SAFETY: see `Region`: the words both sides write are atomics, and one
// queue handle uses a ring at a time.
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

impl Ring {
    /// The ring at `offset` of `region`, if it fits and is aligned for its
    /// fields.
    pub(super) fn new(region: &Region, offset: u32, log2: u8) -> Option<Ring> {
        let offset = offset as usize;
        if !offset.is_multiple_of(8) || offset + ring::bytes(log2) > region.len() {
            return None;
        }
        Some(Ring {
            base: NonNull::new(region.at(offset))?,
            log2,
        })
    }

    #[inline(always)]
    pub(super) fn size(&self) -> u16 {
        (1u32 << self.log2) as u16
    }

    #[inline(always)]
    pub(super) fn mask(&self) -> u16 {
        ((1u32 << self.log2) - 1) as u16
    }

    #[inline(always)]
    fn word(&self, at: usize) -> &AtomicU16 {
        // SAFETY: `at` is one of the ring's 2-byte-aligned header words,
        // inside the mapping (checked in `new`), and both sides access it
        // atomically.
        unsafe { AtomicU16::from_ptr(self.base.as_ptr().add(at).cast()) }
    }

    #[inline(always)]
    pub(super) fn head(&self) -> &AtomicU16 {
        self.word(ring::HEAD)
    }

    #[inline(always)]
    pub(super) fn tail(&self) -> &AtomicU16 {
        self.word(ring::TAIL)
    }

    #[inline(always)]
    pub(super) fn flags(&self) -> &AtomicU16 {
        self.word(ring::FLAGS)
    }

    pub(super) fn cookie(&self) -> u32 {
        // SAFETY: the first 4 bytes of the ring, inside the mapping and
        // 8-aligned; a volatile read because the peer wrote it.
        unsafe { core::ptr::read_volatile(self.base.as_ptr().cast::<u32>()) }
    }

    pub(super) fn set_cookie(&self) {
        // SAFETY: as in `cookie`.
        unsafe { core::ptr::write_volatile(self.base.as_ptr().cast::<u32>(), wire::COOKIE) }
    }

    #[inline(always)]
    fn desc_ptr(&self, slot: u16) -> *mut Desc {
        let i = (slot & self.mask()) as usize;
        // SAFETY: `i` < ring size, so the descriptor is inside the ring
        // (checked against the region in `new`).
        unsafe {
            self.base
                .as_ptr()
                .add(ring::DESC + i * ring::DESC_SIZE)
                .cast()
        }
    }

    /// Reads descriptor `slot` (modulo the ring size). Call only for a slot
    /// this side owns (see the module docs).
    #[inline(always)]
    pub(super) fn desc(&self, slot: u16) -> Desc {
        // SAFETY: an aligned descriptor inside the mapping; volatile so the
        // value is read once even if a faulty peer scribbles on it.
        unsafe { core::ptr::read_volatile(self.desc_ptr(slot)) }
    }

    /// Writes descriptor `slot`. Call only for a slot this side owns.
    #[inline(always)]
    pub(super) fn set_desc(&self, slot: u16, d: Desc) {
        // SAFETY: as in `desc`.
        unsafe { core::ptr::write_volatile(self.desc_ptr(slot), d) }
    }

    /// Sets only the length of descriptor `slot` (a receive refill).
    #[inline(always)]
    pub(super) fn set_length(&self, slot: u16, length: u32) {
        // SAFETY: as in `desc`; `length` is at byte 4 of the descriptor.
        unsafe {
            core::ptr::write_volatile(
                core::ptr::addr_of_mut!((*self.desc_ptr(slot)).length),
                length,
            )
        }
    }

    /// Prepares a fresh ring: cookie, empty, interrupts wanted.
    pub(super) fn init(&self) {
        self.set_cookie();
        self.flags().store(0, Ordering::Relaxed);
        self.head().store(0, Ordering::Relaxed);
        self.tail().store(0, Ordering::Relaxed);
    }
}

/// A nonblocking eventfd.
pub(super) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd(2) with flags; checked below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits up to `timeout_ms` for an eventfd to be signalled and clears it.
pub(super) fn wait(fd: &OwnedFd, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) on one pollfd we own.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if n <= 0 {
        return false;
    }
    let mut v = 0u64;
    // SAFETY: read(2) of 8 bytes into `v`.
    unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    true
}
