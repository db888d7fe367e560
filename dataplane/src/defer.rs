//! Packets a worker holds until a time (shaped packets, `Action::Defer`).
//!
//! A timing wheel of [`WHEEL`] slots of [`TICK_NS`] each (67 ms in all,
//! more than the longest a shaped packet may wait: 25 ms behind its
//! sender's limit plus 25 ms behind its receiver's). Each slot is a FIFO
//! list threaded through a fixed array of nodes, so holding and releasing
//! a packet allocates nothing; when the array is full the packet is
//! refused and the caller drops it. Packets leave in the tick of their
//! time, in the order they were held: pacing is exact over milliseconds
//! and bursty only within one 16 µs tick.

use crate::buf::Packet;
use crate::tables::PortId;

/// Nanoseconds per slot.
pub const TICK_NS: u64 = 1 << 14;
/// Slots in the wheel.
pub const WHEEL: usize = 4096;
const NIL: u32 = u32::MAX;

struct Node {
    pkt: Option<Packet>,
    port: PortId,
    next: u32,
}

/// See the module documentation.
pub struct DeferQueue {
    nodes: Vec<Node>,
    free: u32,
    head: Box<[u32]>,
    tail: Box<[u32]>,
    /// The next tick to release.
    cursor: u64,
    len: usize,
}

impl DeferQueue {
    /// A queue that holds at most `capacity` packets.
    pub fn new(capacity: usize) -> DeferQueue {
        let capacity = capacity.clamp(1, NIL as usize - 1);
        let nodes = (0..capacity)
            .map(|i| Node {
                pkt: None,
                port: 0,
                next: if i + 1 < capacity { i as u32 + 1 } else { NIL },
            })
            .collect();
        DeferQueue {
            nodes,
            free: 0,
            head: vec![NIL; WHEEL].into_boxed_slice(),
            tail: vec![NIL; WHEEL].into_boxed_slice(),
            cursor: 0,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Holds `pkt` for `port` until `at_ns` (it is `now_ns` now); gives it
    /// back when full.
    #[inline]
    pub fn push(
        &mut self,
        port: PortId,
        pkt: Packet,
        at_ns: u64,
        now_ns: u64,
    ) -> Result<(), Packet> {
        if self.free == NIL {
            return Err(pkt);
        }
        if self.len == 0 {
            // Nothing held: the cursor may have fallen behind the clock.
            self.cursor = self.cursor.max(now_ns / TICK_NS);
        }
        let tick = (at_ns / TICK_NS).clamp(self.cursor, self.cursor + WHEEL as u64 - 1);
        let slot = (tick % WHEEL as u64) as usize;
        let n = self.free;
        let node = &mut self.nodes[n as usize];
        self.free = node.next;
        node.pkt = Some(pkt);
        node.port = port;
        node.next = NIL;
        if self.tail[slot] == NIL {
            self.head[slot] = n;
        } else {
            self.nodes[self.tail[slot] as usize].next = n;
        }
        self.tail[slot] = n;
        self.len += 1;
        Ok(())
    }

    /// Releases every packet whose time has come, in order, to `send`.
    #[inline]
    pub fn release(&mut self, now_ns: u64, send: &mut impl FnMut(PortId, Packet)) {
        let now_tick = now_ns / TICK_NS;
        while self.len > 0 && self.cursor <= now_tick {
            let slot = (self.cursor % WHEEL as u64) as usize;
            let mut n = self.head[slot];
            while n != NIL {
                let node = &mut self.nodes[n as usize];
                let next = node.next;
                if let Some(pkt) = node.pkt.take() {
                    self.len -= 1;
                    send(node.port, pkt);
                }
                node.next = self.free;
                self.free = n;
                n = next;
            }
            self.head[slot] = NIL;
            self.tail[slot] = NIL;
            self.cursor += 1;
        }
    }

    /// Gives back every held packet (at shutdown).
    pub fn drain(&mut self, send: &mut impl FnMut(PortId, Packet)) {
        self.release(u64::MAX - TICK_NS * WHEEL as u64, send);
        for node in &mut self.nodes {
            if let Some(p) = node.pkt.take() {
                send(node.port, p);
            }
        }
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::PacketPool;

    #[test]
    fn releases_in_time_order_and_refuses_when_full() {
        let pool = PacketPool::new("defer", 64);
        let mut cache = pool.cache(8);
        let mut q = DeferQueue::new(4);
        let t0 = 1_000_000_000;
        for (i, dt) in [3 * TICK_NS, TICK_NS, 2 * TICK_NS, TICK_NS]
            .iter()
            .enumerate()
        {
            let mut p = cache.alloc().unwrap();
            p.fill(&[i as u8]);
            assert!(q.push(i as u16, p, t0 + dt, t0).is_ok());
        }
        let extra = cache.alloc().unwrap();
        let back = q.push(9, extra, t0, t0).unwrap_err();
        cache.free(back);
        let mut out = Vec::new();
        q.release(t0, &mut |port, p| {
            out.push(port);
            cache.free(p)
        });
        assert!(out.is_empty());
        q.release(t0 + TICK_NS, &mut |port, p| {
            out.push(port);
            cache.free(p)
        });
        assert_eq!(out, vec![1, 3]);
        q.release(t0 + 10 * TICK_NS, &mut |port, p| {
            out.push(port);
            cache.free(p)
        });
        assert_eq!(out, vec![1, 3, 2, 0]);
        assert!(q.is_empty());
        // Far times are held no longer than the wheel's span.
        let p = cache.alloc().unwrap();
        q.push(5, p, t0 + 1_000_000_000_000, t0 + 10 * TICK_NS)
            .unwrap();
        let mut got = 0;
        q.release(t0 + 10 * TICK_NS + WHEEL as u64 * TICK_NS, &mut |_, p| {
            got += 1;
            cache.free(p)
        });
        assert_eq!(got, 1);
    }
}
