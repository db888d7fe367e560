//! Publishing table generations to workers without stopping them.
//!
//! The control plane calls [`TableCell::publish`]; each worker holds a
//! [`TableReader`] and calls [`TableReader::refresh`] at the start of every
//! poll, before it receives a burst (also when it has no traffic). The
//! common case costs one atomic load (the generation number) and takes no
//! lock. When the number changed, the reader takes the new `Arc` under a
//! mutex that only publishers, switching readers and registration touch,
//! records the generation it now runs, and hands the old one back to the
//! cell, so the (possibly large) deallocation happens on the publisher's
//! thread, not the worker's.
//!
//! # The protocol
//!
//! * **Publish.** Under the `current` lock: number the new generation
//!   (previous + 1, so numbers start at 1 and never repeat), swap it in and
//!   store its number in `generation`. The lock orders publishers; the
//!   number is stored before the lock is released, so whoever takes the lock
//!   next sees a `generation` no older than `current`.
//! * **Refresh.** A reader compares `generation` with the number it runs.
//!   On a difference it takes `current` under the lock (never older than
//!   what it had: `current` only moves forward), makes it the generation it
//!   reads, and only then stores the number in its `running` slot (Release).
//! * **Acknowledge.** [`oldest_running`](TableCell::oldest_running) is the
//!   smallest `running` over the registered readers (Acquire loads).
//!   Generation `g` is *acknowledged* once `publish` has returned `g` and
//!   `oldest_running() >= g`; [`wait_for`](TableCell::wait_for) waits for
//!   that.
//! * **Register.** [`reader`](TableCell::reader) takes `current` and adds
//!   the reader's slot while holding the `current` lock, so a publish is
//!   either before the registration (the reader starts on it) or after it
//!   (its `oldest_running` includes the reader). A reader dropped removes its
//!   slot.
//! * **Reclaim.** A reader that switched pushes the `Arc` it left into the
//!   `retired` queue; [`reclaim`](TableCell::reclaim) (run by every publish)
//!   drops them. A generation is freed when its last `Arc` goes: once every
//!   reader moved past it and the publisher reclaimed. If the queue is full
//!   (nobody publishes or reclaims), the reader drops the `Arc` itself.
//!
//! # The guarantee
//!
//! Once `g` is acknowledged, every reader's [`tables`](TableReader::tables)
//! is generation `g` or newer, and so is every reader registered later. For
//! a worker: every packet it receives after the acknowledgement is decided
//! by a generation ≥ `g`. Its `running` store comes after its switch in
//! program order, and the switch comes before the receive in the same poll;
//! a packet injected after the publisher saw `running >= g` cannot have been
//! received before that store (the receive would have read a value written
//! after it). Packets the worker had already decided (in a partial transmit
//! batch, or waiting for a neighbour) may still leave afterwards: they were
//! decided before the acknowledgement.
//!
//! The model in `loom` below checks this, the per-reader order of
//! generations and the reclamation under every interleaving of one
//! publisher and two readers (`RUSTFLAGS="--cfg loom"`, see
//! `scripts/test`); `tests/publish.rs` checks it end to end with workers
//! forwarding traffic while generations change over 1,000 times a second.

use super::Tables;
use crate::sync::{Arc, AtomicU64, BoundedQueue, Mutex, Ordering};
use std::time::{Duration, Instant};

/// What a [`TableCell`] publishes: a value that carries its own generation
/// number, so whoever reads it can tell which generation it is.
pub trait Generational {
    fn generation(&self) -> u64;
    /// Set by the cell when it publishes the value.
    fn set_generation(&mut self, generation: u64);
}

impl Generational for Tables {
    fn generation(&self) -> u64 {
        self.generation
    }

    fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
    }
}

/// How many handed-back generations wait for the publisher before readers
/// free them themselves.
const RETIRED_CAPACITY: usize = 256;

/// The shared slot holding the current generation.
pub struct TableCell<T = Tables> {
    current: Mutex<Arc<T>>,
    /// The number of `current`, readable without the lock.
    generation: AtomicU64,
    retired: BoundedQueue<Arc<T>>,
    /// Each registered reader's `running` slot.
    readers: Mutex<Vec<Arc<AtomicU64>>>,
}

impl<T: Generational> TableCell<T> {
    /// A cell holding `tables` as generation 1.
    pub fn new(mut tables: T) -> std::sync::Arc<TableCell<T>> {
        tables.set_generation(1);
        std::sync::Arc::new(TableCell {
            current: Mutex::new(Arc::new(tables)),
            generation: AtomicU64::new(1),
            retired: BoundedQueue::new(RETIRED_CAPACITY),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Makes `tables` the current generation and returns its number.
    pub fn publish(&self, mut tables: T) -> u64 {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let g = cur.generation() + 1;
        tables.set_generation(g);
        let old = std::mem::replace(&mut *cur, Arc::new(tables));
        // Stored before the lock is released: a reader that takes the lock
        // after seeing `g` finds `g` (or newer) in `current`.
        self.generation.store(g, Ordering::Release);
        drop(cur);
        drop(old);
        self.reclaim();
        g
    }

    /// Frees the generations readers have handed back (those no other
    /// reader still runs); returns how many `Arc`s it dropped.
    pub fn reclaim(&self) -> usize {
        let mut n = 0;
        while let Some(t) = self.retired.pop() {
            drop(t);
            n += 1;
        }
        n
    }

    /// The newest published generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current generation, for the control plane's own reads.
    pub fn load(&self) -> Arc<T> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The oldest generation any registered reader runs (the newest
    /// published if there are none).
    pub fn oldest_running(&self) -> u64 {
        let readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        readers
            .iter()
            .map(|r| r.load(Ordering::Acquire))
            .min()
            .unwrap_or_else(|| self.generation())
    }

    /// Waits until every registered reader runs `generation` or newer,
    /// which acknowledges it (see the module docs); `false` on timeout.
    ///
    /// Workers refresh at the start of every poll, idle or not, so this
    /// usually takes one poll. It yields first (on a shared core the worker
    /// may be waiting for this one), then sleeps in short steps.
    pub fn wait_for(&self, generation: u64, timeout: Duration) -> bool {
        let start = Instant::now();
        let mut tries = 0u32;
        loop {
            if self.oldest_running() >= generation {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            tries += 1;
            if tries < 64 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(20));
            }
        }
    }

    /// A reader for one worker, starting at the current generation.
    pub fn reader(self: &std::sync::Arc<Self>) -> TableReader<T> {
        // Registering while holding `current` keeps a concurrent publish on
        // one side of it: either this reader starts on the new generation,
        // or the publish comes after and its acknowledgement counts us.
        let cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let tables = cur.clone();
        let generation = tables.generation();
        let running = Arc::new(AtomicU64::new(generation));
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(running.clone());
        drop(cur);
        TableReader {
            cell: self.clone(),
            tables,
            generation,
            running,
        }
    }
}

/// One worker's view of the current generation.
pub struct TableReader<T: Generational = Tables> {
    cell: std::sync::Arc<TableCell<T>>,
    tables: Arc<T>,
    generation: u64,
    /// This reader's slot in the cell's `readers`: the generation it runs.
    running: Arc<AtomicU64>,
}

impl<T: Generational> TableReader<T> {
    /// Picks up a newer generation if there is one; `true` if it switched.
    #[inline(always)]
    pub fn refresh(&mut self) -> bool {
        if self.cell.generation.load(Ordering::Acquire) == self.generation {
            return false;
        }
        self.switch();
        true
    }

    #[cold]
    fn switch(&mut self) {
        let new = self.cell.load();
        self.generation = new.generation();
        let old = std::mem::replace(&mut self.tables, new);
        // Only now that this reader reads the new generation may the
        // publisher count it as acknowledged.
        self.running.store(self.generation, Ordering::Release);
        if let Err(old) = self.cell.retired.push(old) {
            drop(old); // the publisher is not reclaiming: free it here
        }
    }

    #[inline(always)]
    pub fn tables(&self) -> &T {
        &self.tables
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl<T: Generational> Drop for TableReader<T> {
    fn drop(&mut self) {
        let mut readers = self.cell.readers.lock().unwrap_or_else(|e| e.into_inner());
        readers.retain(|r| !Arc::ptr_eq(r, &self.running));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn named(n: &str) -> Tables {
        let mut t = Tables::empty();
        t.node.name = n.into();
        t
    }

    #[test]
    fn readers_switch_once_per_publish_and_old_generations_are_freed() {
        let cell = TableCell::new(named("a"));
        let mut r = cell.reader();
        assert!(!r.refresh());
        assert_eq!(r.tables().node.name, "a");
        let weak_a = {
            let a = cell.load();
            Arc::downgrade(&a)
        };
        assert_eq!(cell.publish(named("b")), 2);
        assert_eq!(cell.oldest_running(), 1);
        assert!(
            weak_a.upgrade().is_some(),
            "the reader still runs generation 1"
        );
        assert!(r.refresh());
        assert_eq!(r.tables().node.name, "b");
        assert_eq!(r.generation(), 2);
        assert_eq!(cell.oldest_running(), 2);
        assert_eq!(cell.reclaim(), 1);
        assert!(
            weak_a.upgrade().is_none(),
            "generation 1 freed by the publisher"
        );
    }

    #[test]
    fn acknowledgement_waits_for_every_reader_and_ignores_dropped_ones() {
        let cell = TableCell::new(named("a"));
        let mut r1 = cell.reader();
        let r2 = cell.reader();
        let g = cell.publish(named("b"));
        assert!(!cell.wait_for(g, Duration::from_millis(1)));
        r1.refresh();
        assert_eq!(cell.oldest_running(), 1, "r2 still runs generation 1");
        drop(r2);
        assert!(
            cell.wait_for(g, Duration::ZERO),
            "a dropped reader is not waited for"
        );
        // A reader registered after the publish starts on it.
        let r3 = cell.reader();
        assert_eq!(r3.generation(), g);
        assert_eq!(cell.oldest_running(), g);
        drop((r1, r3));
        assert_eq!(cell.oldest_running(), g, "no readers: the newest");
    }

    #[test]
    fn concurrent_readers_always_see_a_whole_generation() {
        let cell = TableCell::new(named("0"));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut handles = Vec::new();
        for _ in 0..2 {
            let mut r = cell.reader();
            let stop = stop.clone();
            handles.push(std::thread::spawn(move || {
                let mut last = 0u64;
                loop {
                    let stopping = stop.load(Ordering::Relaxed);
                    r.refresh();
                    let t = r.tables();
                    // The name and the generation were published together.
                    assert_eq!(t.node.name, (t.generation - 1).to_string());
                    assert!(t.generation >= last, "generations never go back");
                    last = t.generation;
                    if stopping {
                        break;
                    }
                }
                last
            }));
        }
        for i in 1..=2000u64 {
            cell.publish(named(&i.to_string()));
        }
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            // Each reader refreshed after the last publish, so it runs the newest.
            assert_eq!(h.join().unwrap(), 2001);
        }
    }
}

/// A model of the protocol for loom, which runs it under every interleaving
/// (and every outcome the memory model allows) up to a preemption bound:
/// `RUSTFLAGS="--cfg loom" cargo test -p sluice-dataplane --lib cell::loom`
/// (`LOOM_MAX_PREEMPTIONS` overrides the default bound of 3).
///
/// One publisher (the model's main thread) publishes generations 2 and 3 and
/// after each checks `oldest_running`; when that acknowledges the generation,
/// it raises `acked`. Reader 1 is registered before the publishes, reader 2
/// registers on its own thread while they happen. Each reader, twice, reads
/// `acked`, then checks its generation before and after a refresh.
#[cfg(all(test, loom))]
mod loom {
    use super::{Generational, TableCell, TableReader};
    use ::loom::cell::UnsafeCell;
    use ::loom::sync::atomic::{AtomicU64, Ordering};
    use ::loom::sync::Arc;
    use ::loom::thread;
    use std::sync::atomic::AtomicUsize;

    /// A published value: `contents` is written by the publisher after the
    /// value is made and before it is published, through a cell loom
    /// watches, so a reader that could see it before the write (a torn
    /// generation) is reported. Dropping it counts in `freed`.
    struct Gen {
        generation: u64,
        /// The generation the publisher expects this value to get.
        expected: u64,
        contents: UnsafeCell<u64>,
        freed: std::sync::Arc<AtomicUsize>,
    }

    impl Gen {
        fn new(expected: u64, freed: &std::sync::Arc<AtomicUsize>) -> Gen {
            let g = Gen {
                generation: 0,
                expected,
                contents: UnsafeCell::new(0),
                freed: freed.clone(),
            };
            // SAFETY: `g` is not shared yet; this thread is its only user.
            g.contents.with_mut(|p| unsafe { *p = expected * 100 });
            g
        }
    }

    impl Generational for Gen {
        fn generation(&self) -> u64 {
            self.generation
        }

        fn set_generation(&mut self, generation: u64) {
            self.generation = generation;
        }
    }

    impl Drop for Gen {
        fn drop(&mut self) {
            self.freed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// (a) the generation is whole: its number is the one it was made for
    /// and its contents were written before this thread could see it.
    fn check_whole(t: &Gen) -> u64 {
        assert_eq!(
            t.generation, t.expected,
            "numbered as the publisher expected"
        );
        // SAFETY: published values are only read; loom reports a read that
        // is not ordered after the publisher's write.
        let contents = t.contents.with(|p| unsafe { *p });
        assert_eq!(
            contents,
            t.expected * 100,
            "contents written before publish"
        );
        t.generation
    }

    /// Two rounds of: read `acked`, check the generation held, refresh,
    /// check again.
    fn run_reader(r: &mut TableReader<Gen>, acked: &AtomicU64) {
        let mut last = check_whole(r.tables());
        for _ in 0..2 {
            let mark = acked.load(Ordering::Acquire);
            let before = check_whole(r.tables());
            // (c) an acknowledged generation is what every reader holds,
            // even before its next refresh.
            assert!(
                before >= mark,
                "holds {before} after {mark} was acknowledged"
            );
            r.refresh();
            let after = check_whole(r.tables());
            // (b) generations never go back.
            assert!(after >= before && before >= last, "went back");
            assert_eq!(after, r.generation());
            last = after;
        }
    }

    fn model() {
        let freed = std::sync::Arc::new(AtomicUsize::new(0));
        let cell = TableCell::new(Gen::new(1, &freed));
        let acked = Arc::new(AtomicU64::new(1));

        let mut r1 = cell.reader();
        let t1 = {
            let acked = acked.clone();
            thread::spawn(move || {
                run_reader(&mut r1, &acked);
                r1
            })
        };
        let t2 = {
            let acked = acked.clone();
            let cell = cell.clone();
            thread::spawn(move || {
                // Registers while the publisher publishes.
                let mut r2 = cell.reader();
                run_reader(&mut r2, &acked);
                r2
            })
        };

        let mut seen = 1;
        for g in 2..=3 {
            assert_eq!(cell.publish(Gen::new(g, &freed)), g);
            let oldest = cell.oldest_running();
            assert!(oldest >= seen, "oldest_running went back");
            seen = oldest;
            if oldest >= g {
                acked.store(g, Ordering::Release);
            }
        }

        let mut r1 = t1.join().unwrap();
        let mut r2 = t2.join().unwrap();
        // (d) once every reader has moved to the newest generation and the
        // publisher reclaimed, every older generation is freed...
        r1.refresh();
        r2.refresh();
        assert_eq!(cell.oldest_running(), 3);
        cell.reclaim();
        assert_eq!(freed.load(std::sync::atomic::Ordering::Relaxed), 2);
        // ...and the newest when the last holder goes.
        drop((r1, r2));
        drop(cell);
        assert_eq!(freed.load(std::sync::atomic::Ordering::Relaxed), 3);
    }

    #[test]
    fn publish_acknowledge_reclaim() {
        let mut builder = ::loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(model);
    }
}
