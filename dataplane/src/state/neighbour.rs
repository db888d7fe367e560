//! The dynamic neighbour cache (ARP and ND), shared by all workers.
//!
//! This is the one piece of mutable state every worker reads: a reply that
//! worker A receives must let worker B forward. Reads are on the hot path, so
//! they take no lock: each slot is a seqlock (a sequence number that is odd
//! while a writer is inside), and a reader retries if the number moved.
//! Writes come only from the slow path (an ARP reply or neighbour
//! advertisement, a solicitation being sent), so writers serialise on a
//! mutex that the forwarding path never touches.
//!
//! The table is open-addressed with a bounded probe window; when the window
//! is full, the least recently updated entry in it is replaced.

use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

const PROBE: usize = 8;

const STATE_EMPTY: u64 = 0;
const STATE_INCOMPLETE: u64 = 1;
const STATE_REACHABLE: u64 = 2;

#[derive(Default)]
struct Slot {
    seq: AtomicU32,
    addr_hi: AtomicU64,
    addr_lo: AtomicU64,
    /// network << 16 | family << 8 | state
    tag: AtomicU64,
    mac: AtomicU64,
    updated_ns: AtomicU64,
    solicited_ns: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SlotCopy {
    addr: u128,
    tag: u64,
    mac: u64,
    updated_ns: u64,
    solicited_ns: u64,
}

/// A resolved neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    pub mac: [u8; 6],
    /// When it was last confirmed (the caller's clock, ns).
    pub updated_ns: u64,
}

/// Which address family a key belongs to (a v4 address and a v6 address
/// with the same low bits are different neighbours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4 = 4,
    V6 = 6,
}

/// One entry as listed for people and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourListing {
    pub network: u16,
    pub family: Family,
    pub addr: u128,
    pub mac: Option<[u8; 6]>,
    pub updated_ns: u64,
}

pub struct NeighbourCache {
    slots: Box<[Slot]>,
    mask: usize,
    writer: Mutex<()>,
}

#[inline]
fn tag_of(network: u16, family: Family, state: u64) -> u64 {
    (network as u64) << 16 | (family as u64) << 8 | state
}

#[inline]
fn hash(network: u16, family: Family, addr: u128) -> u64 {
    // A multiply-xorshift mix: cheap, and good enough for a table whose
    // keys are addresses a peer cannot choose freely (they must be on-link).
    let mut h = (addr as u64) ^ ((addr >> 64) as u64).rotate_left(29);
    h ^= (network as u64) << 40 ^ (family as u64) << 56;
    h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

fn mac_to_u64(mac: [u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]])
}

fn u64_to_mac(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

impl Slot {
    /// A consistent copy, or `None` if a writer kept it busy.
    #[inline]
    fn read(&self) -> Option<SlotCopy> {
        for _ in 0..64 {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let copy = SlotCopy {
                addr: (self.addr_hi.load(Ordering::Relaxed) as u128) << 64
                    | self.addr_lo.load(Ordering::Relaxed) as u128,
                tag: self.tag.load(Ordering::Relaxed),
                mac: self.mac.load(Ordering::Relaxed),
                updated_ns: self.updated_ns.load(Ordering::Relaxed),
                solicited_ns: self.solicited_ns.load(Ordering::Relaxed),
            };
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return Some(copy);
            }
        }
        None
    }

    /// Writes a whole slot. Callers hold the writer mutex.
    fn write(&self, c: SlotCopy) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.addr_hi.store((c.addr >> 64) as u64, Ordering::Relaxed);
        self.addr_lo.store(c.addr as u64, Ordering::Relaxed);
        self.tag.store(c.tag, Ordering::Relaxed);
        self.mac.store(c.mac, Ordering::Relaxed);
        self.updated_ns.store(c.updated_ns, Ordering::Relaxed);
        self.solicited_ns.store(c.solicited_ns, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }
}

impl NeighbourCache {
    /// A cache with room for about `capacity` neighbours (rounded up to a
    /// power of two).
    pub fn new(capacity: usize) -> NeighbourCache {
        let n = capacity.max(PROBE).next_power_of_two();
        NeighbourCache {
            slots: (0..n).map(|_| Slot::default()).collect(),
            mask: n - 1,
            writer: Mutex::new(()),
        }
    }

    /// The resolved neighbour for `addr`, if any. Lock-free.
    #[inline]
    pub fn lookup(&self, network: u16, family: Family, addr: u128) -> Option<Neighbour> {
        let want = tag_of(network, family, STATE_REACHABLE);
        let start = hash(network, family, addr) as usize;
        for i in 0..PROBE {
            let slot = &self.slots[(start + i) & self.mask];
            let c = slot.read()?;
            if c.tag & 0xff == STATE_EMPTY {
                return None;
            }
            if c.addr == addr && c.tag == want {
                return Some(Neighbour {
                    mac: u64_to_mac(c.mac),
                    updated_ns: c.updated_ns,
                });
            }
        }
        None
    }

    /// The slot for a key, or where to put it: the key's slot, else the
    /// first empty one, else the least recently updated in the window.
    fn place(&self, network: u16, family: Family, addr: u128) -> (usize, Option<SlotCopy>) {
        let key = tag_of(network, family, 0);
        let start = hash(network, family, addr) as usize;
        let mut empty = None;
        let mut oldest: Option<(usize, u64)> = None;
        for i in 0..PROBE {
            let idx = (start + i) & self.mask;
            // Writers are serialised, so this read cannot race with a write.
            let c = self.slots[idx].read().expect("no writer is active");
            if c.tag & 0xff == STATE_EMPTY {
                empty.get_or_insert(idx);
                continue;
            }
            if c.addr == addr && c.tag & !0xff == key {
                return (idx, Some(c));
            }
            if oldest.is_none_or(|(_, t)| c.updated_ns.max(c.solicited_ns) < t) {
                oldest = Some((idx, c.updated_ns.max(c.solicited_ns)));
            }
        }
        // An empty slot inside the window is fine: lookups stop at the first
        // empty slot, and a key is only ever placed at or before it.
        (
            empty
                .or(oldest.map(|(i, _)| i))
                .unwrap_or(start & self.mask),
            None,
        )
    }

    /// Records (or refreshes) a resolved neighbour.
    pub fn learn(&self, network: u16, family: Family, addr: u128, mac: [u8; 6], now_ns: u64) {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let (idx, old) = self.place(network, family, addr);
        self.slots[idx].write(SlotCopy {
            addr,
            tag: tag_of(network, family, STATE_REACHABLE),
            mac: mac_to_u64(mac),
            updated_ns: now_ns,
            solicited_ns: old.map_or(0, |o| o.solicited_ns),
        });
    }

    /// Whether to send a solicitation for `addr` now: true at most once per
    /// `retrans_ns` per address. Creates an incomplete entry if none exists.
    pub fn should_solicit(
        &self,
        network: u16,
        family: Family,
        addr: u128,
        now_ns: u64,
        retrans_ns: u64,
    ) -> bool {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let (idx, old) = self.place(network, family, addr);
        let (tag, mac, updated) = match old {
            Some(o) => {
                if o.solicited_ns != 0 && now_ns.saturating_sub(o.solicited_ns) < retrans_ns {
                    return false;
                }
                (o.tag, o.mac, o.updated_ns)
            }
            None => (tag_of(network, family, STATE_INCOMPLETE), 0, 0),
        };
        self.slots[idx].write(SlotCopy {
            addr,
            tag,
            mac,
            updated_ns: updated,
            solicited_ns: now_ns.max(1),
        });
        true
    }

    /// Removes every entry (a new port configuration, say).
    pub fn clear(&self) {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        for s in self.slots.iter() {
            s.write(SlotCopy {
                addr: 0,
                tag: 0,
                mac: 0,
                updated_ns: 0,
                solicited_ns: 0,
            });
        }
    }

    /// Every entry, resolved or not.
    pub fn list(&self) -> Vec<NeighbourListing> {
        self.slots
            .iter()
            .filter_map(|s| s.read())
            .filter(|c| c.tag & 0xff != STATE_EMPTY)
            .map(|c| NeighbourListing {
                network: (c.tag >> 16) as u16,
                family: if (c.tag >> 8) & 0xff == 6 {
                    Family::V6
                } else {
                    Family::V4
                },
                addr: c.addr,
                mac: (c.tag & 0xff == STATE_REACHABLE).then(|| u64_to_mac(c.mac)),
                updated_ns: c.updated_ns,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn learn_lookup_and_families_are_distinct() {
        let c = NeighbourCache::new(64);
        assert!(c.lookup(0, Family::V4, 0x0a000001).is_none());
        c.learn(0, Family::V4, 0x0a000001, [1, 2, 3, 4, 5, 6], 100);
        let n = c.lookup(0, Family::V4, 0x0a000001).unwrap();
        assert_eq!(n.mac, [1, 2, 3, 4, 5, 6]);
        assert_eq!(n.updated_ns, 100);
        assert!(c.lookup(0, Family::V6, 0x0a000001).is_none());
        assert!(c.lookup(1, Family::V4, 0x0a000001).is_none());
        c.learn(0, Family::V4, 0x0a000001, [9, 9, 9, 9, 9, 9], 200);
        assert_eq!(c.lookup(0, Family::V4, 0x0a000001).unwrap().mac, [9; 6]);
        assert_eq!(c.list().len(), 1);
    }

    #[test]
    fn solicitations_are_rate_limited_per_address() {
        let c = NeighbourCache::new(64);
        assert!(c.should_solicit(0, Family::V6, 7, 1_000, 500));
        assert!(!c.should_solicit(0, Family::V6, 7, 1_200, 500));
        assert!(
            c.should_solicit(0, Family::V6, 8, 1_200, 500),
            "another address is independent"
        );
        assert!(c.should_solicit(0, Family::V6, 7, 1_600, 500));
        assert!(
            c.lookup(0, Family::V6, 7).is_none(),
            "incomplete entries do not resolve"
        );
        c.learn(0, Family::V6, 7, [1; 6], 1_700);
        assert!(c.lookup(0, Family::V6, 7).is_some());
    }

    #[test]
    fn full_windows_replace_the_oldest() {
        let c = NeighbourCache::new(8); // one probe window is the whole table
        for i in 0..8u128 {
            c.learn(0, Family::V4, i, [i as u8; 6], 10 + i as u64);
        }
        c.learn(0, Family::V4, 100, [0xaa; 6], 1000);
        assert!(c.lookup(0, Family::V4, 0).is_none(), "the oldest went");
        assert!(c.lookup(0, Family::V4, 100).is_some());
        for i in 1..8u128 {
            assert_eq!(c.lookup(0, Family::V4, i).unwrap().mac, [i as u8; 6]);
        }
    }

    #[test]
    fn readers_never_see_torn_entries() {
        let c = Arc::new(NeighbourCache::new(16));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (c, stop) = (c.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(n) = c.lookup(0, Family::V4, 42) {
                        // Writers always store mac == [t; 6] with updated_ns == t.
                        assert_eq!(n.mac, [n.updated_ns as u8; 6]);
                        seen += 1;
                    }
                }
                seen
            })
        };
        for t in 1..200_000u64 {
            c.learn(0, Family::V4, 42, [t as u8; 6], t);
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
    }
}
