//! The synchronisation types the table cell is built from.
//!
//! Normally these are std's (and crossbeam's lock-free queue). Built with
//! `RUSTFLAGS="--cfg loom"` for the library's tests, they are loom's, so the
//! model in `tables::cell` explores every interleaving of publishers and
//! readers that the memory model allows (tokio checks its primitives the
//! same way). Only the cell's own protocol goes through here; the rest of
//! the crate uses std directly.

#[cfg(all(test, loom))]
pub(crate) use loom::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};
#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};

/// A bounded multi-producer, multi-consumer queue whose `push` fails, giving
/// the value back, when it is full.
///
/// Normally crossbeam's lock-free `ArrayQueue`. Loom cannot see inside
/// crossbeam's atomics, so under loom it is a mutex around a deque with the
/// same contract: the model then checks the protocol around the queue, and
/// crossbeam's own tests check the queue.
pub(crate) struct BoundedQueue<T> {
    #[cfg(not(all(test, loom)))]
    inner: crossbeam_queue::ArrayQueue<T>,
    #[cfg(all(test, loom))]
    inner: Mutex<std::collections::VecDeque<T>>,
    #[cfg(all(test, loom))]
    capacity: usize,
}

impl<T> BoundedQueue<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        #[cfg(not(all(test, loom)))]
        {
            BoundedQueue {
                inner: crossbeam_queue::ArrayQueue::new(capacity),
            }
        }
        #[cfg(all(test, loom))]
        {
            BoundedQueue {
                inner: Mutex::new(std::collections::VecDeque::with_capacity(capacity)),
                capacity,
            }
        }
    }

    pub(crate) fn push(&self, value: T) -> Result<(), T> {
        #[cfg(not(all(test, loom)))]
        {
            self.inner.push(value)
        }
        #[cfg(all(test, loom))]
        {
            let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() == self.capacity {
                return Err(value);
            }
            q.push_back(value);
            Ok(())
        }
    }

    pub(crate) fn pop(&self) -> Option<T> {
        #[cfg(not(all(test, loom)))]
        {
            self.inner.pop()
        }
        #[cfg(all(test, loom))]
        {
            self.inner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front()
        }
    }
}
