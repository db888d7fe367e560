//! Packet buffers: one preallocated arena per pool, fixed-size buffers with
//! headroom for encapsulation, recycled through per-worker caches without
//! allocation.
//!
//! The layout follows DPDK's mempool + mbuf: a [`PacketPool`] owns an arena of
//! `capacity` buffers of [`BUF_STRIDE`] bytes and a lock-free queue of free
//! buffer indices. Each worker takes a [`PoolCache`], a plain stack of indices it
//! refills from and spills to the shared queue 32 at a time, so allocating and
//! freeing a packet on the hot path is a push or pop on a local array.
//!
//! A [`Packet`] exclusively owns one buffer until it is freed. Freeing it into a
//! cache of the same pool ([`PoolCache::free`]) is the fast path; dropping it is
//! the slow but always-correct path (it returns the buffer to the shared queue).
//!
//! Lifetime: the arena is freed when the last reference goes. References are
//! the pool handles, the caches, and every buffer that is *outside* the shared
//! free queue (in a cache or in a `Packet`). Caches move buffers in and out in
//! bulk, so the shared reference count changes once per 32 buffers, not once
//! per packet. This is what makes `Packet` safe to keep after every handle to
//! its pool is gone.
//!
//! External buffers: an [`ExternalPool`] lets buffers that another allocator
//! owns travel as `Packet`s without a copy (the DPDK port's mbufs, whose
//! data buffers have the same layout: [`HEADROOM`] bytes in front of
//! [`DATA_ROOM`]). Such a packet points at the foreign buffer and, when it
//! is freed or dropped, hands it back through the pool's release function
//! instead of the free queue; a backend that owns the allocator takes the
//! buffer back out of the packet with [`ExternalPool::into_raw`]. Packets of
//! Sluice's own pools never take that branch: a cache frees them before it
//! is reached.
//!
//! The arena stride is 2176 bytes (34 cache lines), deliberately not a power of
//! two: with a 2048-byte stride the first line of every frame falls into one
//! of only two L1 cache sets, and a burst of 32 frames thrashes them (the
//! reason DPDK pads mempool objects). With 34 lines, 32 consecutive buffers
//! start in 32 different sets. An AF_XDP UMEM over this arena uses unaligned
//! chunk mode.

use arrayvec::ArrayVec;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use crossbeam_queue::ArrayQueue;
use std::alloc::{self, Layout};

/// The most packets a burst carries (receive, process and transmit).
pub const BURST_SIZE: usize = 32;
/// Bytes between a buffer's start and a freshly received frame: room to
/// prepend VXLAN/Geneve over IPv6 (14 + 40 + 8 + 8 + options) or a VLAN tag
/// without moving the frame.
pub const HEADROOM: usize = 128;
/// Bytes from one buffer to the next in the arena (see the module docs for
/// why it is not a power of two).
pub const BUF_STRIDE: usize = 2176;
/// The largest frame a buffer holds at the default headroom (2048 bytes: a
/// 1500-byte MTU plus Ethernet, two VLAN tags and an outer tunnel header fit).
pub const DATA_ROOM: usize = BUF_STRIDE - HEADROOM;

/// Copies the whole 64-byte lines of `src` into `dst` with fixed-size
/// moves (no call into `memcpy`); a partial last line is left out.
#[inline(always)]
fn copy_lines(dst: &mut [u8], src: &[u8]) {
    for (dst, src) in dst.chunks_exact_mut(64).zip(src.chunks_exact(64)) {
        let src: &[u8; 64] = src.try_into().expect("chunks_exact yields 64 bytes");
        let dst: &mut [u8; 64] = dst.try_into().expect("chunks_exact yields 64 bytes");
        *dst = *src;
    }
}

/// A burst of packets.
pub type Batch = ArrayVec<Packet, BURST_SIZE>;

struct PoolShared {
    arena: NonNull<u8>,
    layout: Layout,
    capacity: u32,
    free: ArrayQueue<u32>,
    /// Handles + caches + buffers outside `free`; see the module docs.
    refs: AtomicUsize,
    /// Allocations that found the pool empty.
    exhausted: AtomicU64,
    name: String,
    /// Set for an [`ExternalPool`]: how its buffers go back to their owner.
    /// Such a pool has no arena and is never freed.
    external: Option<unsafe fn(NonNull<u8>)>,
}

// SAFETY: the arena is plain bytes; every buffer in it is accessed only by the
// one `Packet` that owns it, and the shared bookkeeping is atomic.
unsafe impl Send for PoolShared {}
// SAFETY: as above; `&PoolShared` only exposes atomics and the lock-free queue.
unsafe impl Sync for PoolShared {}

impl PoolShared {
    #[inline]
    fn acquire(&self, n: usize) {
        self.refs.fetch_add(n, Ordering::Relaxed);
    }

    /// Drops `n` references; the one that drops the last frees the pool.
    ///
    /// # Safety
    /// `this` must point to a live `PoolShared` on which the caller holds `n`
    /// references, and the caller must not use the pointer afterwards.
    unsafe fn release(this: NonNull<PoolShared>, n: usize) {
        if n == 0 {
            return;
        }
        // SAFETY: the caller holds references, so the pool is alive.
        let shared = unsafe { this.as_ref() };
        if shared.refs.fetch_sub(n, Ordering::Release) == n {
            fence(Ordering::Acquire);
            // SAFETY: that was the last reference: no handle, cache or packet
            // can reach the arena or the box any more.
            unsafe {
                alloc::dealloc(shared.arena.as_ptr(), shared.layout);
                drop(Box::from_raw(this.as_ptr()));
            }
        }
    }

    #[inline]
    fn buffer(&self, index: u32) -> NonNull<u8> {
        debug_assert!(index < self.capacity);
        // SAFETY: index < capacity, so the offset stays inside the arena.
        unsafe { NonNull::new_unchecked(self.arena.as_ptr().add(index as usize * BUF_STRIDE)) }
    }
}

/// A handle to a pool of packet buffers. Cloning it is cheap.
pub struct PacketPool {
    shared: NonNull<PoolShared>,
}

// SAFETY: the handle is a counted reference to a Sync structure.
unsafe impl Send for PacketPool {}
// SAFETY: as above.
unsafe impl Sync for PacketPool {}

impl PacketPool {
    /// Allocates a pool of `capacity` zeroed buffers. This is the only
    /// allocation packet buffers ever cause.
    ///
    /// # Panics
    /// If `capacity` is zero or the arena cannot be allocated.
    pub fn new(name: &str, capacity: u32) -> PacketPool {
        assert!(capacity > 0, "a packet pool needs at least one buffer");
        let layout = Layout::from_size_align(capacity as usize * BUF_STRIDE, 4096)
            .expect("packet pool size overflows");
        // SAFETY: the layout has a non-zero size.
        let arena = unsafe { alloc::alloc_zeroed(layout) };
        let arena = NonNull::new(arena).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        let free = ArrayQueue::new(capacity as usize);
        for i in 0..capacity {
            let _ = free.push(i);
        }
        let shared = Box::new(PoolShared {
            arena,
            layout,
            capacity,
            free,
            refs: AtomicUsize::new(1),
            exhausted: AtomicU64::new(0),
            name: name.to_string(),
            external: None,
        });
        PacketPool {
            // SAFETY: Box::into_raw never returns null.
            shared: unsafe { NonNull::new_unchecked(Box::into_raw(shared)) },
        }
    }

    #[inline]
    fn shared(&self) -> &PoolShared {
        // SAFETY: this handle holds a reference, so the pool is alive.
        unsafe { self.shared.as_ref() }
    }

    /// A per-thread cache holding at most `max` buffers (at least 2 bursts).
    pub fn cache(&self, max: usize) -> PoolCache {
        let max = max.max(2 * BURST_SIZE);
        self.shared().acquire(1);
        PoolCache {
            shared: self.shared,
            local: Vec::with_capacity(max),
            max,
        }
    }

    pub fn name(&self) -> &str {
        &self.shared().name
    }

    pub fn capacity(&self) -> u32 {
        self.shared().capacity
    }

    /// Buffers in the shared free queue (not counting those in caches).
    pub fn available(&self) -> usize {
        self.shared().free.len()
    }

    /// How many allocations found the pool empty.
    pub fn exhausted(&self) -> u64 {
        self.shared().exhausted.load(Ordering::Relaxed)
    }

    /// Allocates one packet through the shared queue (slow path; workers use
    /// a [`PoolCache`]).
    pub fn alloc(&self) -> Option<Packet> {
        let shared = self.shared();
        match shared.free.pop() {
            Some(index) => {
                shared.acquire(1);
                Some(Packet::new(self.shared, shared.buffer(index), index))
            }
            None => {
                shared.exhausted.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

impl Clone for PacketPool {
    fn clone(&self) -> Self {
        self.shared().acquire(1);
        PacketPool {
            shared: self.shared,
        }
    }
}

impl Drop for PacketPool {
    fn drop(&mut self) {
        // SAFETY: this handle's reference is given up and not used again.
        unsafe { PoolShared::release(self.shared, 1) }
    }
}

impl fmt::Debug for PacketPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketPool")
            .field("name", &self.name())
            .field("capacity", &self.capacity())
            .field("available", &self.available())
            .finish()
    }
}

/// Buffers owned by another allocator, carried as [`Packet`]s without
/// copying (see the module docs). Made once per allocator and kept for the
/// life of the process; copying the handle is free.
#[derive(Clone, Copy)]
pub struct ExternalPool {
    shared: NonNull<PoolShared>,
}

// SAFETY: the handle points to a pool that is never freed and whose fields
// are immutable or atomic.
unsafe impl Send for ExternalPool {}
// SAFETY: as above.
unsafe impl Sync for ExternalPool {}

impl ExternalPool {
    /// A pool whose packets give their buffer back with `release`. The
    /// bookkeeping (a few hundred bytes) is never freed.
    ///
    /// # Safety
    /// `release` must be sound to call, on any thread, once for every
    /// buffer passed to [`wrap`](ExternalPool::wrap) and not taken back
    /// with [`into_raw`](ExternalPool::into_raw).
    pub unsafe fn new(name: &str, release: unsafe fn(NonNull<u8>)) -> ExternalPool {
        let shared = Box::new(PoolShared {
            arena: NonNull::dangling(),
            layout: Layout::new::<u8>(),
            capacity: 0,
            free: ArrayQueue::new(1),
            // Never released: the pool outlives every packet.
            refs: AtomicUsize::new(1),
            exhausted: AtomicU64::new(0),
            name: name.to_string(),
            external: Some(release),
        });
        ExternalPool {
            shared: NonNull::from(Box::leak(shared)),
        }
    }

    pub fn name(&self) -> &str {
        // SAFETY: the pool is never freed.
        unsafe { &self.shared.as_ref().name }
    }

    /// Makes a packet of the frame `[head, head + len)` of `buf`.
    ///
    /// # Safety
    /// `buf` must point to [`BUF_STRIDE`] bytes that the caller owns
    /// exclusively and hands over to the packet (it goes back through the
    /// pool's release function, or [`into_raw`](ExternalPool::into_raw)).
    /// `head + len` must not exceed `BUF_STRIDE`.
    #[inline]
    pub unsafe fn wrap(&self, buf: NonNull<u8>, head: u16, len: u16) -> Packet {
        debug_assert!(head as usize + len as usize <= BUF_STRIDE);
        Packet {
            pool: self.shared,
            buf,
            index: u32::MAX,
            head,
            len,
            rx_port: 0,
            rx_queue: 0,
            rss_hash: 0,
        }
    }

    /// Whether `pkt` carries one of this pool's buffers.
    #[inline]
    pub fn owns(&self, pkt: &Packet) -> bool {
        pkt.pool == self.shared
    }

    /// The buffer and frame window (`buf`, `head`, `len`) of a packet of
    /// this pool, without giving up the packet.
    #[inline]
    pub fn parts(&self, pkt: &Packet) -> Option<(NonNull<u8>, u16, u16)> {
        self.owns(pkt).then_some((pkt.buf, pkt.head, pkt.len))
    }

    /// Takes the buffer back out of a packet of this pool: the caller owns
    /// it again and must release it. Other packets come back unchanged.
    #[inline]
    pub fn into_raw(&self, pkt: Packet) -> Result<(NonNull<u8>, u16, u16), Packet> {
        if !self.owns(&pkt) {
            return Err(pkt);
        }
        let parts = (pkt.buf, pkt.head, pkt.len);
        // The buffer's ownership moves to the caller; an external packet
        // holds no pool reference to give up.
        core::mem::forget(pkt);
        Ok(parts)
    }
}

impl fmt::Debug for ExternalPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalPool")
            .field("name", &self.name())
            .finish()
    }
}

/// A single-thread cache of free buffers from one pool.
pub struct PoolCache {
    shared: NonNull<PoolShared>,
    local: Vec<u32>,
    max: usize,
}

// SAFETY: the cache owns the buffers whose indices it holds; moving it to
// another thread moves that ownership. It is not Sync: one thread uses it.
unsafe impl Send for PoolCache {}

impl PoolCache {
    #[inline]
    fn shared<'a>(&self) -> &'a PoolShared {
        // SAFETY: the cache holds a reference, so the pool is alive for as
        // long as the cache is, and callers use the result within a method.
        unsafe { &*self.shared.as_ptr() }
    }

    /// Takes up to one burst of buffers from the shared queue.
    #[cold]
    fn refill(&mut self) -> bool {
        let shared = self.shared();
        // Count the references first so the total never dips below the truth.
        shared.acquire(BURST_SIZE);
        let mut got = 0;
        while got < BURST_SIZE {
            match shared.free.pop() {
                Some(i) => {
                    self.local.push(i);
                    got += 1;
                }
                None => break,
            }
        }
        if got < BURST_SIZE {
            // SAFETY: the cache's own reference keeps the pool alive, so this
            // cannot be the last release.
            unsafe { PoolShared::release(self.shared, BURST_SIZE - got) };
        }
        got > 0
    }

    /// Returns half the cache to the shared queue.
    #[cold]
    fn spill(&mut self) {
        let keep = self.max / 2;
        let n = self.local.len() - keep;
        let shared = self.shared();
        for i in self.local.drain(keep..) {
            // Cannot fail: every index is in exactly one place, and the queue
            // has room for all of them.
            let _ = shared.free.push(i);
        }
        // SAFETY: the cache's own reference keeps the pool alive.
        unsafe { PoolShared::release(self.shared, n) };
    }

    /// Allocates a packet with the default headroom and length 0.
    #[inline]
    pub fn alloc(&mut self) -> Option<Packet> {
        if self.local.is_empty() && !self.refill() {
            self.shared().exhausted.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let index = self.local.pop()?;
        Some(Packet::new(self.shared, self.shared().buffer(index), index))
    }

    /// Frees a packet. The fast path when it came from this cache's pool.
    #[inline]
    pub fn free(&mut self, pkt: Packet) {
        if pkt.pool != self.shared {
            drop(pkt); // another pool's buffer goes home the slow way
            return;
        }
        if self.local.len() >= self.max {
            self.spill();
        }
        self.local.push(pkt.index);
        // The buffer's reference now belongs to the cache.
        core::mem::forget(pkt);
    }

    /// Frees every packet in `batch`.
    #[inline]
    pub fn free_batch(&mut self, batch: &mut Batch) {
        for pkt in batch.drain(..) {
            self.free(pkt);
        }
    }

    /// Buffers held by this cache.
    pub fn len(&self) -> usize {
        self.local.len()
    }

    pub fn is_empty(&self) -> bool {
        self.local.is_empty()
    }

    /// A handle to the pool this cache draws from.
    pub fn pool(&self) -> PacketPool {
        self.shared().acquire(1);
        PacketPool {
            shared: self.shared,
        }
    }
}

impl Drop for PoolCache {
    fn drop(&mut self) {
        let shared = self.shared();
        let n = self.local.len();
        for i in self.local.drain(..) {
            let _ = shared.free.push(i);
        }
        // SAFETY: the cache's own reference and its buffers' are given up.
        unsafe { PoolShared::release(self.shared, n + 1) };
    }
}

/// One packet: exclusive ownership of a pool buffer, and the window
/// `[head, head + len)` of it that holds the frame.
pub struct Packet {
    pool: NonNull<PoolShared>,
    buf: NonNull<u8>,
    index: u32,
    head: u16,
    len: u16,
    /// The port the packet arrived on (set by the receiving backend).
    pub rx_port: u16,
    /// The queue the packet arrived on.
    pub rx_queue: u16,
    /// The receive-side flow hash (software or hardware RSS), 0 if none.
    pub rss_hash: u32,
}

// SAFETY: a Packet is the only reference to its buffer; moving it to another
// thread moves that exclusive access. The pool bookkeeping it touches on drop
// is atomic.
unsafe impl Send for Packet {}

impl Packet {
    #[inline]
    fn new(pool: NonNull<PoolShared>, buf: NonNull<u8>, index: u32) -> Packet {
        Packet {
            pool,
            buf,
            index,
            head: HEADROOM as u16,
            len: 0,
            rx_port: 0,
            rx_queue: 0,
            rss_hash: 0,
        }
    }

    /// The frame.
    #[inline]
    pub fn data(&self) -> &[u8] {
        // SAFETY: head + len <= BUF_STRIDE is kept by every setter, and this
        // packet owns the buffer exclusively.
        unsafe {
            core::slice::from_raw_parts(
                self.buf.as_ptr().add(self.head as usize),
                self.len as usize,
            )
        }
    }

    /// The frame, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and `&mut self` makes the access unique.
        unsafe {
            core::slice::from_raw_parts_mut(
                self.buf.as_ptr().add(self.head as usize),
                self.len as usize,
            )
        }
    }

    /// The whole buffer, headroom and tailroom included.
    #[inline]
    fn buffer_mut(&mut self) -> &mut [u8] {
        // SAFETY: the buffer is BUF_STRIDE bytes inside the arena and owned
        // exclusively by this packet.
        unsafe { core::slice::from_raw_parts_mut(self.buf.as_ptr(), BUF_STRIDE) }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes free in front of the frame.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.head as usize
    }

    /// Bytes free after the frame.
    #[inline]
    pub fn tailroom(&self) -> usize {
        BUF_STRIDE - self.head as usize - self.len as usize
    }

    /// Sets the frame to `len` bytes at the default headroom, for a backend
    /// that is about to fill it. Returns the writable frame.
    #[inline]
    pub fn reset(&mut self, len: usize) -> Option<&mut [u8]> {
        if len > DATA_ROOM {
            return None;
        }
        self.head = HEADROOM as u16;
        self.len = len as u16;
        Some(self.data_mut())
    }

    /// Replaces the frame with a copy of `bytes`. Fails if it does not fit.
    #[inline]
    pub fn fill(&mut self, bytes: &[u8]) -> bool {
        match self.reset(bytes.len()) {
            Some(d) => {
                d.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }

    /// Makes this packet a copy of `src`: the frame at the same offset in
    /// the buffer (so a frame grown into its headroom fits too), its length
    /// and its receive metadata. A short frame's cache lines are copied
    /// whole with fixed-size moves, without a call into `memcpy` (at 64
    /// bytes, one or two line moves); a longer frame is one `memcpy`.
    #[inline]
    pub fn copy_from(&mut self, src: &Packet) {
        const LINE: usize = 64;
        const SHORT_COPY: usize = 4 * LINE;
        const _: () = assert!(BUF_STRIDE.is_multiple_of(LINE));
        let start = src.head as usize & !(LINE - 1);
        let end = (src.head as usize + src.len as usize).next_multiple_of(LINE);
        // SAFETY: `src` owns its BUF_STRIDE-byte buffer, whose bytes are all
        // initialised (the arena is zeroed when the pool is made), and
        // `end <= BUF_STRIDE` because head + len <= BUF_STRIDE and the
        // stride is a whole number of lines.
        let from = unsafe { core::slice::from_raw_parts(src.buf.as_ptr(), BUF_STRIDE) };
        if end - start <= SHORT_COPY {
            copy_lines(&mut self.buffer_mut()[start..end], &from[start..end]);
        } else {
            let frame = src.head as usize..src.head as usize + src.len as usize;
            self.buffer_mut()[frame.clone()].copy_from_slice(&from[frame]);
        }
        self.head = src.head;
        self.len = src.len;
        self.rx_port = src.rx_port;
        self.rx_queue = src.rx_queue;
        self.rss_hash = src.rss_hash;
    }

    /// Replaces the frame with the first `len` bytes of `lines`, copying
    /// whole 64-byte cache lines with fixed-size moves (no call into
    /// `memcpy`): the replay port's stand-in for a NIC's DMA. `lines` must be
    /// a multiple of 64 bytes, at least `len` and at most [`DATA_ROOM`].
    #[inline]
    pub fn fill_lines(&mut self, lines: &[u8], len: usize) -> bool {
        if !lines.len().is_multiple_of(64) || len > lines.len() || lines.len() > DATA_ROOM {
            return false;
        }
        self.head = HEADROOM as u16;
        self.len = lines.len() as u16;
        copy_lines(self.data_mut(), lines);
        self.len = len as u16;
        true
    }

    /// Grows the frame at the front by `n` bytes (for an encapsulation
    /// header) and returns the new front. `None` if the headroom is short.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.head as usize {
            return None;
        }
        self.head -= n as u16;
        self.len += n as u16;
        Some(&mut self.data_mut()[..n])
    }

    /// Removes `n` bytes from the front (decapsulation). `false` if the frame
    /// is shorter than `n`.
    #[inline]
    pub fn strip_front(&mut self, n: usize) -> bool {
        if n > self.len as usize {
            return false;
        }
        self.head += n as u16;
        self.len -= n as u16;
        true
    }

    /// Grows the frame at the back by `n` bytes and returns them.
    #[inline]
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.tailroom() {
            return None;
        }
        let start = self.head as usize + self.len as usize;
        self.len += n as u16;
        Some(&mut self.buffer_mut()[start..start + n])
    }

    /// Shortens the frame to `len` bytes (no-op if it is already shorter).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        if len < self.len as usize {
            self.len = len as u16;
        }
    }

    /// The buffer's index in its pool's arena (an AF_XDP UMEM chunk
    /// number); `u32::MAX` for a buffer of an [`ExternalPool`].
    #[inline]
    pub fn buffer_index(&self) -> u32 {
        self.index
    }
}

impl Drop for Packet {
    fn drop(&mut self) {
        // SAFETY: the packet holds one reference for its buffer (or, for an
        // external pool, the pool is never freed).
        let shared = unsafe { self.pool.as_ref() };
        if let Some(release) = shared.external {
            // SAFETY: this packet owned the buffer exclusively and gives it
            // back once, as `ExternalPool::new`'s contract requires.
            unsafe { release(self.buf) };
            return;
        }
        let _ = shared.free.push(self.index);
        // SAFETY: the buffer's reference is released and the pointer dropped.
        unsafe { PoolShared::release(self.pool, 1) };
    }
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("index", &self.index)
            .field("head", &self.head)
            .field("len", &self.len)
            .field("rx_port", &self.rx_port)
            .field("rx_queue", &self.rx_queue)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_and_free_recycle_without_growth() {
        let pool = PacketPool::new("t", 128);
        let mut cache = pool.cache(64);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let mut p = cache.alloc().expect("buffer");
            assert!(p.fill(&[1, 2, 3]));
            assert_eq!(p.data(), &[1, 2, 3]);
            seen.insert(p.buffer_index());
            cache.free(p);
        }
        // LIFO reuse: the same buffer serves every iteration.
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn exhaustion_is_counted_and_recovers() {
        let pool = PacketPool::new("t", 40);
        let mut cache = pool.cache(64);
        let mut held = Vec::new();
        while let Some(p) = cache.alloc() {
            held.push(p);
        }
        assert_eq!(held.len(), 40);
        assert!(pool.exhausted() >= 1);
        let mut other = pool.cache(64);
        assert!(other.alloc().is_none());
        for p in held.drain(..) {
            cache.free(p);
        }
        drop(cache); // returns its buffers to the shared queue
        assert_eq!(pool.available(), 40);
        assert!(other.alloc().is_some());
    }

    #[test]
    fn headroom_prepend_strip_append() {
        let pool = PacketPool::new("t", 4);
        let mut p = pool.alloc().unwrap();
        assert!(p.fill(&[9; 60]));
        assert_eq!(p.headroom(), HEADROOM);
        const { assert!(HEADROOM >= 128) };
        let front = p.prepend(50).unwrap();
        front.fill(7);
        assert_eq!(p.len(), 110);
        assert_eq!(&p.data()[..50], &[7; 50]);
        assert_eq!(&p.data()[50..], &[9; 60]);
        assert!(p.prepend(HEADROOM).is_none(), "headroom overrun refused");
        assert!(p.strip_front(50));
        assert_eq!(p.data(), &[9; 60]);
        assert!(!p.strip_front(61));
        let tail = p.append(4).unwrap();
        tail.copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(&p.data()[60..], &[1, 2, 3, 4]);
        assert!(p.append(p.tailroom() + 1).is_none());
        p.truncate(10);
        assert_eq!(p.len(), 10);
        assert!(p.reset(DATA_ROOM + 1).is_none());
        let lines: Vec<u8> = (0..128u8).collect();
        assert!(p.fill_lines(&lines, 100));
        assert_eq!(p.data(), &lines[..100]);
        assert!(!p.fill_lines(&lines[..100], 100), "not whole lines");
        assert!(!p.fill_lines(&lines, 129));
        assert!(p.reset(DATA_ROOM).is_some());
    }

    /// A copy holds the same frame at the same offset and the same receive
    /// metadata, for short frames (whole lines), long ones (`memcpy`), a
    /// frame grown into its headroom and a full buffer; the original is
    /// unchanged and the copy's bytes are its own.
    #[test]
    fn copy_from_copies_frame_offset_and_metadata() {
        let pool = PacketPool::new("t", 4);
        let mut cache = pool.cache(4);
        let mut src = cache.alloc().unwrap();
        let mut dst = cache.alloc().unwrap();
        let pattern = |n: usize| (0..n).map(|i| (i * 7 + 3) as u8).collect::<Vec<u8>>();
        for len in [0, 1, 60, 64, 65, 191, 256, 257, 1500, DATA_ROOM] {
            assert!(src.fill(&pattern(len)));
            src.rx_port = 3;
            src.rx_queue = 1;
            src.rss_hash = 0xdead_beef ^ len as u32;
            dst.fill(&[0xee; 100]);
            dst.copy_from(&src);
            assert_eq!(dst.data(), src.data(), "{len} bytes");
            assert_eq!(dst.headroom(), HEADROOM);
            assert_eq!(
                (dst.rx_port, dst.rx_queue, dst.rss_hash),
                (3, 1, src.rss_hash)
            );
        }
        // Grown into the headroom (an encapsulation): past DATA_ROOM at the
        // default offset, still copied, at the source's offset.
        assert!(src.fill(&pattern(DATA_ROOM)));
        src.prepend(50).unwrap().fill(0x5a);
        dst.copy_from(&src);
        assert_eq!(dst.len(), DATA_ROOM + 50);
        assert_eq!(dst.headroom(), HEADROOM - 50);
        assert_eq!(dst.data(), src.data());
        // An odd offset: the frame starts mid-line.
        assert!(src.strip_front(13));
        dst.copy_from(&src);
        assert_eq!(dst.data(), src.data());
        dst.data_mut()[0] ^= 0xff;
        assert_ne!(dst.data()[0], src.data()[0], "the copy has its own bytes");
    }

    #[test]
    fn packets_outlive_their_pool_handles() {
        let pool = PacketPool::new("t", 8);
        let mut cache = pool.cache(64);
        let mut p = cache.alloc().unwrap();
        drop(cache);
        drop(pool);
        // The arena stays alive while the packet exists.
        assert!(p.fill(&[0xab; 1000]));
        assert_eq!(p.data()[999], 0xab);
        drop(p); // frees the arena (miri/asan would flag a leak or double free)
    }

    #[test]
    fn foreign_packets_go_home() {
        let a = PacketPool::new("a", 8);
        let b = PacketPool::new("b", 8);
        let mut cache_b = b.cache(64);
        let p = a.alloc().unwrap();
        assert_eq!(a.available(), 7);
        cache_b.free(p);
        assert_eq!(a.available(), 8);
        assert_eq!(cache_b.len(), 0);
    }

    #[test]
    fn external_buffers_go_back_to_their_owner() {
        static RELEASED: AtomicUsize = AtomicUsize::new(0);
        unsafe fn release(buf: NonNull<u8>) {
            // SAFETY: every buffer wrapped below came from Box::into_raw.
            drop(unsafe { Box::from_raw(buf.as_ptr() as *mut [u8; BUF_STRIDE]) });
            RELEASED.fetch_add(1, Ordering::Relaxed);
        }
        let buffer =
            || NonNull::new(Box::into_raw(Box::new([0u8; BUF_STRIDE])) as *mut u8).unwrap();
        // SAFETY: `release` frees exactly what `buffer` allocates.
        let ext = unsafe { ExternalPool::new("ext", release) };
        let pool = PacketPool::new("own", 8);
        let mut cache = pool.cache(64);

        // SAFETY: a fresh buffer, handed over.
        let mut p = unsafe { ext.wrap(buffer(), HEADROOM as u16, 0) };
        assert!(ext.owns(&p));
        assert_eq!(p.buffer_index(), u32::MAX);
        assert!(p.fill(&[5; 100]));
        p.prepend(14).unwrap().fill(1);
        assert_eq!(p.len(), 114);
        assert_eq!(ext.parts(&p).map(|(_, h, l)| (h, l)), Some((114, 114)));
        cache.free(p);
        assert_eq!(RELEASED.load(Ordering::Relaxed), 1);
        assert_eq!(cache.len(), 0, "not taken into a Sluice cache");

        // SAFETY: as above.
        drop(unsafe { ext.wrap(buffer(), 0, 60) });
        assert_eq!(RELEASED.load(Ordering::Relaxed), 2);

        // SAFETY: as above.
        let p = unsafe { ext.wrap(buffer(), 100, 60) };
        let (buf, head, len) = ext.into_raw(p).unwrap();
        assert_eq!((head, len), (100, 60));
        assert_eq!(
            RELEASED.load(Ordering::Relaxed),
            2,
            "the caller owns it again"
        );
        // SAFETY: taken back above, released once.
        unsafe { release(buf) };

        let own = cache.alloc().unwrap();
        assert!(!ext.owns(&own));
        let own = ext.into_raw(own).unwrap_err();
        cache.free(own);
        drop(cache);
        assert_eq!(pool.available(), 8);
    }

    #[test]
    fn packets_cross_threads() {
        let pool = PacketPool::new("t", 256);
        let (tx, rx) = crossbeam_channel::bounded::<Packet>(64);
        let producer = {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let mut cache = pool.cache(64);
                for i in 0..10_000u32 {
                    let mut p = loop {
                        if let Some(p) = cache.alloc() {
                            break p;
                        }
                        std::thread::yield_now();
                    };
                    p.fill(&i.to_be_bytes());
                    tx.send(p).unwrap();
                }
            })
        };
        let mut cache = pool.cache(64);
        for i in 0..10_000u32 {
            let p = rx.recv().unwrap();
            assert_eq!(p.data(), &i.to_be_bytes());
            cache.free(p);
        }
        producer.join().unwrap();
        drop(cache);
        assert_eq!(pool.available(), 256);
    }
}
