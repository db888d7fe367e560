//! Publishing table generations to workers without stopping them.
//!
//! The control plane calls [`TableCell::publish`]; each worker holds a
//! [`TableReader`] and calls [`TableReader::refresh`] once per burst. The
//! common case costs one atomic load (the generation number). When it
//! changed, the reader takes the new `Arc<Tables>` under a mutex that only
//! publishers and switching readers touch, records the generation it now
//! runs, and hands the old generation back to the cell, so the (possibly
//! large) deallocation happens on the publisher's thread, not the worker's.
//!
//! A generation is freed once no reader holds it: after a publish, the old
//! one goes when every reader has refreshed and the publisher has collected
//! the returned `Arc`s ([`TableCell::reclaim`], also run by `publish`).

use super::Tables;
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The shared slot holding the current generation.
pub struct TableCell {
    current: Mutex<Arc<Tables>>,
    generation: AtomicU64,
    retired: ArrayQueue<Arc<Tables>>,
    readers: Mutex<Vec<Arc<AtomicU64>>>,
}

impl TableCell {
    /// A cell holding `tables` as generation 1.
    pub fn new(mut tables: Tables) -> Arc<TableCell> {
        tables.generation = 1;
        Arc::new(TableCell {
            current: Mutex::new(Arc::new(tables)),
            generation: AtomicU64::new(1),
            retired: ArrayQueue::new(256),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Makes `tables` the current generation and returns its number.
    pub fn publish(&self, mut tables: Tables) -> u64 {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let g = cur.generation + 1;
        tables.generation = g;
        let old = std::mem::replace(&mut *cur, Arc::new(tables));
        // Release: a reader that sees `g` also sees the new Arc in `current`
        // (it takes the same mutex anyway).
        self.generation.store(g, Ordering::Release);
        drop(cur);
        drop(old);
        self.reclaim();
        g
    }

    /// Frees generations the readers have handed back.
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
    pub fn load(&self) -> Arc<Tables> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The oldest generation any reader runs (the newest if there are none).
    pub fn oldest_running(&self) -> u64 {
        let readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        readers
            .iter()
            .map(|r| r.load(Ordering::Acquire))
            .min()
            .unwrap_or_else(|| self.generation())
    }

    /// A reader for one worker, starting at the current generation.
    pub fn reader(self: &Arc<Self>) -> TableReader {
        let tables = self.load();
        let running = Arc::new(AtomicU64::new(tables.generation));
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(running.clone());
        TableReader {
            cell: self.clone(),
            generation: tables.generation,
            tables,
            running,
        }
    }
}

/// One worker's view of the current generation.
pub struct TableReader {
    cell: Arc<TableCell>,
    tables: Arc<Tables>,
    generation: u64,
    running: Arc<AtomicU64>,
}

impl TableReader {
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
        self.generation = new.generation;
        let old = std::mem::replace(&mut self.tables, new);
        self.running.store(self.generation, Ordering::Release);
        if let Err(old) = self.cell.retired.push(old) {
            drop(old); // the publisher is not reclaiming: free it here
        }
    }

    #[inline(always)]
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl Drop for TableReader {
    fn drop(&mut self) {
        let mut readers = self.cell.readers.lock().unwrap_or_else(|e| e.into_inner());
        readers.retain(|r| !Arc::ptr_eq(r, &self.running));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
