//! IPv4 longest-prefix match: DIR-24-8, as DPDK's `rte_lpm`.
//!
//! Contract:
//! * Reads: a destination address (host-order `u32`, i.e. `u32::from_be_bytes`
//!   of the header field).
//! * Returns: the next-hop id (< 2^24) of the longest prefix that covers it, or
//!   `None`.
//! * Cost: one load from `tbl24` (indexed by the top 24 bits), and a second
//!   load from a 256-entry `tbl8` group only when a prefix longer than /24
//!   lives under that /24. No allocation, no panic, no loop.
//!
//! Every table entry is a `u32`:
//!
//! ```text
//!  31     30        29..24   23..0
//! VALID EXTENDED   depth    next hop        (tbl24 route entry, tbl8 entry)
//!   0      1         0      tbl8 group      (tbl24 entry pointing at a group)
//! ```
//!
//! The depth is the length of the prefix that wrote the entry. An insert
//! overwrites only entries written by a prefix no longer than itself, and a
//! remove rewrites only entries of its own depth, with the longest remaining
//! prefix that covers it, looked up in the exact-prefix maps. Those maps (one
//! per length) are the source of truth for [`Lpm4::get`], [`Lpm4::iter`] and
//! deletes; the tables are a compiled view of them.
//!
//! `tbl24` is allocated zeroed (`calloc`), so the pages of address space that
//! no prefix touches are never mapped. A `tbl8` group is reclaimed as soon as
//! no prefix longer than /24 remains in it: its 256 entries are then all equal
//! and fold back into the `tbl24` entry.

use core::fmt;
use std::collections::BTreeSet;

use hashbrown::HashMap;

/// Entries of `tbl24` (one per /24).
const TBL24_LEN: usize = 1 << 24;
/// Entries in one `tbl8` group (one per address of a /24).
const TBL8_GROUP_LEN: usize = 256;
/// Groups are numbered in the 24 value bits of a `tbl24` entry.
const MAX_TBL8_GROUPS: usize = 1 << 24;

const VALID: u32 = 1 << 31;
const EXTENDED: u32 = 1 << 30;
const DEPTH_SHIFT: u32 = 24;
const DEPTH_MASK: u32 = 0x3f;
const VALUE_MASK: u32 = (1 << 24) - 1;

/// The largest next-hop id a table stores (ids take the low 24 bits of an entry).
pub const MAX_VALUE: u32 = VALUE_MASK;

/// Why a route was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LpmError {
    /// The prefix length is longer than the address.
    PrefixLength {
        /// The length given.
        len: u8,
        /// The longest length the address family allows (32 or 128).
        max: u8,
    },
    /// The next-hop id does not fit in 24 bits.
    Value {
        /// The id given.
        value: u32,
    },
    /// Every `tbl8` group number is in use (2^24 groups, 16 GiB of groups).
    Tbl8Exhausted,
}

impl fmt::Display for LpmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LpmError::PrefixLength { len, max } => write!(
                f,
                "route prefix length /{len} is invalid: expected 0 to {max}"
            ),
            LpmError::Value { value } => write!(
                f,
                "route next-hop id {value} is invalid: expected at most {MAX_VALUE} (24 bits)"
            ),
            LpmError::Tbl8Exhausted => {
                write!(f, "route table is full: all 2^24 tbl8 groups are in use")
            }
        }
    }
}

impl std::error::Error for LpmError {}

/// An IPv4 route table with DIR-24-8 lookups. See the module documentation.
pub struct Lpm4 {
    /// One entry per /24, indexed by the top 24 bits of the address. A boxed
    /// array, so that indexing with `addr >> 8` needs no bounds check.
    tbl24: Box<[u32; TBL24_LEN]>,
    /// `TBL8_GROUP_LEN` entries per group, indexed by the low 8 bits.
    tbl8: Vec<u32>,
    /// Groups inside `tbl8` that are not in use. The lowest is reused first,
    /// and free groups at the end are truncated, so the table stays compact.
    tbl8_free: BTreeSet<u32>,
    /// `prefixes[len]` maps a masked address to its next hop.
    prefixes: Vec<HashMap<u32, u32>>,
    count: usize,
}

impl Lpm4 {
    /// Creates an empty table (64 MiB of `tbl24`, mapped only as it is written).
    pub fn new() -> Self {
        Lpm4 {
            tbl24: zeroed_direct_table(),
            tbl8: Vec::new(),
            tbl8_free: BTreeSet::new(),
            prefixes: (0..=32).map(|_| HashMap::new()).collect(),
            count: 0,
        }
    }

    /// Adds or replaces the route `addr/len`, returning the next hop it had.
    ///
    /// Host bits of `addr` beyond `len` are ignored.
    pub fn insert(&mut self, addr: u32, len: u8, value: u32) -> Result<Option<u32>, LpmError> {
        if len > 32 {
            return Err(LpmError::PrefixLength { len, max: 32 });
        }
        if value > MAX_VALUE {
            return Err(LpmError::Value { value });
        }
        let addr = mask(addr, len);
        let new = route_entry(len, value);
        let may_overwrite = |e: u32| e & VALID == 0 || depth(e) <= len;
        if len <= 24 {
            let first = (addr >> 8) as usize;
            for slot in first..first + (1 << (24 - len)) {
                let e = self.tbl24[slot];
                if e & EXTENDED != 0 {
                    for t in self.group_mut(e) {
                        if may_overwrite(*t) {
                            *t = new;
                        }
                    }
                } else if may_overwrite(e) {
                    self.tbl24[slot] = new;
                }
            }
        } else {
            let slot = (addr >> 8) as usize;
            let mut e = self.tbl24[slot];
            if e & EXTENDED == 0 {
                let group = self.alloc_group(e)?;
                e = EXTENDED | group;
                self.tbl24[slot] = e;
            }
            let low = (addr & 0xff) as usize;
            let group = self.group_mut(e);
            for t in &mut group[low..low + (1 << (32 - len))] {
                if may_overwrite(*t) {
                    *t = new;
                }
            }
        }
        let old = self.prefixes[len as usize].insert(addr, value);
        if old.is_none() {
            self.count += 1;
        }
        Ok(old)
    }

    /// Removes the route `addr/len`, returning its next hop. Addresses it
    /// covered fall back to the longest remaining prefix that covers them.
    pub fn remove(&mut self, addr: u32, len: u8) -> Option<u32> {
        let addr = mask(addr, len);
        let old = self.prefixes.get_mut(len as usize)?.remove(&addr)?;
        self.count -= 1;
        let replacement = self.covering_entry(addr, len);
        let written_by_this = |e: u32| e & VALID != 0 && depth(e) == len;
        if len <= 24 {
            let first = (addr >> 8) as usize;
            for slot in first..first + (1 << (24 - len)) {
                let e = self.tbl24[slot];
                if e & EXTENDED != 0 {
                    // The group still holds the longer prefix that made it.
                    for t in self.group_mut(e) {
                        if written_by_this(*t) {
                            *t = replacement;
                        }
                    }
                } else if written_by_this(e) {
                    self.tbl24[slot] = replacement;
                }
            }
        } else {
            let slot = (addr >> 8) as usize;
            let e = self.tbl24[slot];
            debug_assert!(e & EXTENDED != 0, "a /{len} route lives in a tbl8 group");
            if e & EXTENDED == 0 {
                return Some(old);
            }
            let low = (addr & 0xff) as usize;
            let group = self.group_mut(e);
            for t in &mut group[low..low + (1 << (32 - len))] {
                if written_by_this(*t) {
                    *t = replacement;
                }
            }
            // With no prefix longer than /24 left, all 256 entries were
            // written by the same /24-or-shorter prefix (or none): fold back.
            if !group.iter().any(|&t| t & VALID != 0 && depth(t) > 24) {
                self.tbl24[slot] = group[0];
                self.free_group(e & VALUE_MASK);
            }
        }
        Some(old)
    }

    /// The next hop of exactly `addr/len`, if that route exists.
    pub fn get(&self, addr: u32, len: u8) -> Option<u32> {
        self.prefixes
            .get(len as usize)?
            .get(&mask(addr, len))
            .copied()
    }

    /// The next hop of the longest prefix covering `addr`.
    #[inline(always)]
    pub fn lookup(&self, addr: u32) -> Option<u32> {
        let mut e = self.tbl24[(addr >> 8) as usize];
        if e & EXTENDED != 0 {
            e = self.tbl8_entry(e, addr);
        }
        (e & VALID != 0).then_some(e & VALUE_MASK)
    }

    /// Prefetches the `tbl24` entry for `addr`, so that a lookup a few
    /// packets later finds it in cache.
    #[inline(always)]
    pub fn prefetch(&self, addr: u32) {
        prefetch(&self.tbl24[(addr >> 8) as usize]);
    }

    /// Looks up `addrs[i]` into `out[i]` for every `i` below the shorter of
    /// the two lengths.
    /// `out[i]` is what [`lookup`](Self::lookup) returns: `None` when no
    /// route covers the address (an `Option` rather than a sentinel value,
    /// so a missing route cannot be mistaken for a next hop).
    ///
    /// Works in bursts of 32: first prefetches every `tbl24` entry of the
    /// burst, then reads them and prefetches the `tbl8` entries the burst
    /// needs, then resolves. The misses of a burst overlap instead of
    /// following one another.
    #[inline]
    pub fn lookup_burst(&self, addrs: &[u32], out: &mut [Option<u32>]) {
        const BURST: usize = 32;
        for (addrs, out) in addrs.chunks(BURST).zip(out.chunks_mut(BURST)) {
            for &a in addrs {
                prefetch(&self.tbl24[(a >> 8) as usize]);
            }
            let mut entries = [0u32; BURST];
            for (e, &a) in entries.iter_mut().zip(addrs) {
                *e = self.tbl24[(a >> 8) as usize];
                if *e & EXTENDED != 0 {
                    if let Some(t) = self.tbl8.get(tbl8_index(*e, a)) {
                        prefetch(t);
                    }
                }
            }
            for ((o, &e), &a) in out.iter_mut().zip(&entries).zip(addrs) {
                let e = if e & EXTENDED != 0 {
                    self.tbl8_entry(e, a)
                } else {
                    e
                };
                *o = (e & VALID != 0).then_some(e & VALUE_MASK);
            }
        }
    }

    /// The number of routes.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Every route as `(addr, len, next hop)`, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u8, u32)> + '_ {
        self.prefixes
            .iter()
            .enumerate()
            .flat_map(|(len, m)| m.iter().map(move |(&a, &v)| (a, len as u8, v)))
    }

    /// The number of `tbl8` groups in use.
    pub fn tbl8_groups(&self) -> usize {
        self.tbl8.len() / TBL8_GROUP_LEN - self.tbl8_free.len()
    }

    /// Bytes allocated: all of `tbl24` (though pages no route has written are
    /// never mapped), the `tbl8` groups and the exact-prefix maps.
    pub fn memory_bytes(&self) -> usize {
        TBL24_LEN * 4
            + self.tbl8.len() * 4
            + self
                .prefixes
                .iter()
                .map(|m| m.capacity() * (core::mem::size_of::<(u32, u32)>() + 1))
                .sum::<usize>()
    }

    #[inline(always)]
    fn tbl8_entry(&self, extended: u32, addr: u32) -> u32 {
        // Group numbers in the table are always in range; `get` keeps even a
        // broken invariant from turning into a panic on the packet path.
        self.tbl8
            .get(tbl8_index(extended, addr))
            .copied()
            .unwrap_or(0)
    }

    fn group_mut(&mut self, extended: u32) -> &mut [u32] {
        let first = (extended & VALUE_MASK) as usize * TBL8_GROUP_LEN;
        &mut self.tbl8[first..first + TBL8_GROUP_LEN]
    }

    /// Takes a group with all entries set to `fill` (the `tbl24` entry it replaces).
    fn alloc_group(&mut self, fill: u32) -> Result<u32, LpmError> {
        let group = match self.tbl8_free.pop_first() {
            Some(g) => g,
            None => {
                let g = self.tbl8.len() / TBL8_GROUP_LEN;
                if g >= MAX_TBL8_GROUPS {
                    return Err(LpmError::Tbl8Exhausted);
                }
                self.tbl8.resize(self.tbl8.len() + TBL8_GROUP_LEN, 0);
                g as u32
            }
        };
        self.group_mut(group).fill(fill);
        Ok(group)
    }

    fn free_group(&mut self, group: u32) {
        self.tbl8_free.insert(group);
        while let Some(&last) = self.tbl8_free.last() {
            if (last as usize + 1) * TBL8_GROUP_LEN != self.tbl8.len() {
                break;
            }
            self.tbl8_free.pop_last();
            self.tbl8.truncate(last as usize * TBL8_GROUP_LEN);
        }
    }

    /// The entry of the longest route strictly shorter than `len` covering
    /// `addr`, or 0 (no route).
    fn covering_entry(&self, addr: u32, len: u8) -> u32 {
        (0..len)
            .rev()
            .find_map(|l| {
                let m = &self.prefixes[l as usize];
                if m.is_empty() {
                    return None;
                }
                m.get(&mask(addr, l)).map(|&v| route_entry(l, v))
            })
            .unwrap_or(0)
    }
}

impl Default for Lpm4 {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for Lpm4 {
    /// Copies only the written parts of `tbl24`, so the copy maps no more
    /// memory than the original.
    fn clone(&self) -> Self {
        let mut tbl24 = zeroed_direct_table();
        copy_nonzero_pages(&self.tbl24[..], &mut tbl24[..]);
        Lpm4 {
            tbl24,
            tbl8: self.tbl8.clone(),
            tbl8_free: self.tbl8_free.clone(),
            prefixes: self.prefixes.clone(),
            count: self.count,
        }
    }
}

impl fmt::Debug for Lpm4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lpm4")
            .field("routes", &self.count)
            .field("tbl8_groups", &self.tbl8_groups())
            .finish_non_exhaustive()
    }
}

#[inline(always)]
fn tbl8_index(extended: u32, addr: u32) -> usize {
    ((extended & VALUE_MASK) as usize) << 8 | (addr & 0xff) as usize
}

fn route_entry(len: u8, value: u32) -> u32 {
    VALID | (len as u32) << DEPTH_SHIFT | value
}

fn depth(e: u32) -> u8 {
    ((e >> DEPTH_SHIFT) & DEPTH_MASK) as u8
}

/// `addr` with the bits beyond `len` cleared.
fn mask(addr: u32, len: u8) -> u32 {
    addr & u32::MAX.checked_shl(32 - len.min(32) as u32).unwrap_or(0)
}

/// A zeroed `[u32; N]` on the heap. `vec!` of zeros asks the allocator for
/// zeroed memory (`calloc`), which for a table this size maps pages lazily;
/// building the array on the stack first would overflow it.
///
/// The table is also offered to the kernel for transparent huge pages: a
/// lookup over 64 MiB with 4 KiB pages misses the TLB on almost every
/// packet when flows are spread over the table; with 2 MiB pages the whole
/// table needs 32 TLB entries.
pub(crate) fn zeroed_direct_table<const N: usize>() -> Box<[u32; N]> {
    let mut table: Box<[u32; N]> = match vec![0u32; N].into_boxed_slice().try_into() {
        Ok(table) => table,
        Err(_) => unreachable!("a boxed slice of N entries converts to [u32; N]"),
    };
    advise_huge_pages(&mut table[..]);
    table
}

/// Asks for transparent huge pages over the 2 MiB-aligned part of `mem`.
/// Harmless where THP is off or unsupported (the call just fails).
fn advise_huge_pages(mem: &mut [u32]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = mem.as_mut_ptr() as usize;
        let end = start + core::mem::size_of_val(mem);
        let aligned = (start + HUGE - 1) & !(HUGE - 1);
        if aligned < end {
            let len = (end - aligned) & !(HUGE - 1);
            if len > 0 {
                // SAFETY: the range lies inside memory this table owns;
                // MADV_HUGEPAGE only changes how the kernel backs it, never
                // its contents (untouched pages still read as zero).
                unsafe {
                    libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
                }
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = mem;
}

/// Copies `src` into the zeroed `dst`, skipping 4 KiB pages that are all
/// zero, so pages that were never written stay unmapped in the copy too.
pub(crate) fn copy_nonzero_pages(src: &[u32], dst: &mut [u32]) {
    const PAGE: usize = 4096 / 4;
    for (s, d) in src.chunks(PAGE).zip(dst.chunks_mut(PAGE)) {
        if s.iter().any(|&e| e != 0) {
            d.copy_from_slice(s);
        }
    }
}

/// Hints the CPU to bring `r` into the cache. Never faults, changes nothing.
#[inline(always)]
pub(crate) fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is only a cache hint and cannot fault; the
    // pointer comes from a live reference anyway. SSE is part of x86_64.
    unsafe {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((r as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(a: u8, b: u8, c: u8, d: u8) -> u32 {
        u32::from_be_bytes([a, b, c, d])
    }

    #[test]
    fn empty_table_finds_nothing() {
        let t = Lpm4::new();
        assert!(t.is_empty());
        assert_eq!(t.lookup(0), None);
        assert_eq!(t.lookup(u32::MAX), None);
        assert_eq!(t.iter().count(), 0);
    }

    #[test]
    fn default_route_and_host_routes() {
        let mut t = Lpm4::default();
        assert_eq!(t.insert(0, 0, 7), Ok(None));
        assert_eq!(t.lookup(0), Some(7));
        assert_eq!(t.lookup(u32::MAX), Some(7));
        assert_eq!(t.insert(ip(192, 0, 2, 1), 32, 9), Ok(None));
        assert_eq!(t.insert(u32::MAX, 32, 10), Ok(None));
        assert_eq!(t.lookup(ip(192, 0, 2, 1)), Some(9));
        assert_eq!(t.lookup(ip(192, 0, 2, 0)), Some(7));
        assert_eq!(t.lookup(ip(192, 0, 2, 2)), Some(7));
        assert_eq!(t.lookup(u32::MAX), Some(10));
        assert_eq!(t.len(), 3);
        assert_eq!(t.remove(0, 0), Some(7));
        assert_eq!(t.lookup(ip(192, 0, 2, 2)), None);
        assert_eq!(t.lookup(ip(192, 0, 2, 1)), Some(9));
        assert_eq!(t.remove(ip(192, 0, 2, 1), 32), Some(9));
        assert_eq!(t.lookup(ip(192, 0, 2, 1)), None);
        assert_eq!(t.tbl8_groups(), 1, "the /32 at 255.255.255.255 remains");
        assert_eq!(t.remove(u32::MAX, 32), Some(10));
        assert_eq!(t.tbl8_groups(), 0);
        assert!(t.is_empty());
    }

    #[test]
    fn host_bits_are_ignored() {
        let mut t = Lpm4::new();
        t.insert(ip(10, 1, 2, 3), 16, 5).unwrap();
        assert_eq!(t.get(ip(10, 1, 0, 0), 16), Some(5));
        assert_eq!(t.get(ip(10, 1, 255, 255), 16), Some(5));
        assert_eq!(t.iter().collect::<Vec<_>>(), vec![(ip(10, 1, 0, 0), 16, 5)]);
        assert_eq!(t.remove(ip(10, 1, 9, 9), 16), Some(5));
    }

    #[test]
    fn replace_returns_old_value() {
        let mut t = Lpm4::new();
        assert_eq!(t.insert(ip(10, 0, 0, 0), 8, 1), Ok(None));
        assert_eq!(t.insert(ip(10, 0, 0, 0), 8, 2), Ok(Some(1)));
        assert_eq!(t.insert(ip(10, 0, 0, 64), 26, 3), Ok(None));
        assert_eq!(t.insert(ip(10, 0, 0, 64), 26, 4), Ok(Some(3)));
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(ip(10, 9, 9, 9)), Some(2));
        assert_eq!(t.lookup(ip(10, 0, 0, 65)), Some(4));
        assert_eq!(t.lookup(ip(10, 0, 0, 1)), Some(2));
        assert_eq!(t.remove(ip(10, 0, 0, 0), 8), Some(2));
        assert_eq!(t.remove(ip(10, 0, 0, 0), 8), None);
        assert_eq!(t.lookup(ip(10, 0, 0, 1)), None);
        assert_eq!(t.lookup(ip(10, 0, 0, 65)), Some(4));
    }

    #[test]
    fn invalid_routes_are_refused() {
        let mut t = Lpm4::new();
        assert_eq!(
            t.insert(0, 33, 1),
            Err(LpmError::PrefixLength { len: 33, max: 32 })
        );
        assert_eq!(
            t.insert(0, 8, 1 << 24),
            Err(LpmError::Value { value: 1 << 24 })
        );
        assert_eq!(t.insert(0, 8, MAX_VALUE), Ok(None));
        assert!(t
            .insert(0, 255, 1)
            .unwrap_err()
            .to_string()
            .contains("/255"));
        assert_eq!(t.remove(0, 33), None);
        assert_eq!(t.get(0, 200), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn nested_prefixes_removed_in_every_order() {
        // 10/8 ⊃ 10.1/16 ⊃ 10.1.2/24 ⊃ 10.1.2.16/28
        let routes = [
            (ip(10, 0, 0, 0), 8, 1),
            (ip(10, 1, 0, 0), 16, 2),
            (ip(10, 1, 2, 0), 24, 3),
            (ip(10, 1, 2, 16), 28, 4),
        ];
        // One probe address inside each level but outside the deeper ones.
        let probes = [
            ip(10, 200, 0, 1),
            ip(10, 1, 200, 1),
            ip(10, 1, 2, 200),
            ip(10, 1, 2, 17),
        ];
        let expected = |present: &[bool; 4], probe: usize| {
            (0..=probe).rev().find(|&i| present[i]).map(|i| routes[i].2)
        };
        let mut t = Lpm4::new();
        let mut orders = vec![];
        permutations(&mut [0, 1, 2, 3], 0, &mut orders);
        assert_eq!(orders.len(), 24);
        for order in orders {
            for &(a, l, v) in &routes {
                t.insert(a, l, v).unwrap();
            }
            let mut present = [true; 4];
            for &r in &order {
                assert_eq!(t.remove(routes[r].0, routes[r].1), Some(routes[r].2));
                present[r] = false;
                for (p, &addr) in probes.iter().enumerate() {
                    assert_eq!(t.lookup(addr), expected(&present, p), "order {order:?}");
                }
                assert_eq!(t.lookup(ip(11, 0, 0, 0)), None);
                assert_eq!(t.tbl8_groups(), usize::from(present[3]));
            }
            assert!(t.is_empty());
        }
        // The same, inserting in every order.
        let mut orders = vec![];
        permutations(&mut [0, 1, 2, 3], 0, &mut orders);
        for order in orders {
            let mut present = [false; 4];
            for &r in &order {
                t.insert(routes[r].0, routes[r].1, routes[r].2).unwrap();
                present[r] = true;
                for (p, &addr) in probes.iter().enumerate() {
                    assert_eq!(t.lookup(addr), expected(&present, p), "order {order:?}");
                }
            }
            for &(a, l, _) in &routes {
                t.remove(a, l);
            }
        }
    }

    fn permutations(items: &mut [usize; 4], k: usize, out: &mut Vec<[usize; 4]>) {
        if k == items.len() {
            out.push(*items);
            return;
        }
        for i in k..items.len() {
            items.swap(k, i);
            permutations(items, k + 1, out);
            items.swap(k, i);
        }
    }

    #[test]
    fn tbl8_groups_are_reclaimed() {
        let mut t = Lpm4::new();
        let base = t.memory_bytes();
        t.insert(ip(10, 0, 0, 0), 8, 1).unwrap();
        for i in 0..4u8 {
            t.insert(ip(10, 0, i, 128), 25, 10 + i as u32).unwrap();
        }
        t.insert(ip(10, 0, 1, 200), 30, 20).unwrap();
        assert_eq!(t.tbl8_groups(), 4);
        assert_eq!(t.memory_bytes() - base, 4 * 1024 + t.prefix_map_bytes());
        assert_eq!(t.lookup(ip(10, 0, 1, 201)), Some(20));
        assert_eq!(t.lookup(ip(10, 0, 1, 129)), Some(11));
        assert_eq!(t.lookup(ip(10, 0, 1, 1)), Some(1));
        // Group 1 still holds the /30.
        t.remove(ip(10, 0, 1, 128), 25);
        assert_eq!(t.tbl8_groups(), 4);
        assert_eq!(t.lookup(ip(10, 0, 1, 129)), Some(1));
        t.remove(ip(10, 0, 1, 200), 30);
        assert_eq!(t.tbl8_groups(), 3);
        assert_eq!(t.lookup(ip(10, 0, 1, 201)), Some(1));
        // A freed group is reused before the table grows.
        t.insert(ip(10, 0, 9, 0), 32, 30).unwrap();
        assert_eq!(t.tbl8_groups(), 4);
        assert_eq!(t.memory_bytes() - base, 4 * 1024 + t.prefix_map_bytes());
        for i in 0..4u8 {
            t.remove(ip(10, 0, i, 128), 25);
        }
        t.remove(ip(10, 0, 9, 0), 32);
        assert_eq!(t.tbl8_groups(), 0);
        assert_eq!(t.memory_bytes() - base, t.prefix_map_bytes());
        assert_eq!(t.lookup(ip(10, 0, 9, 0)), Some(1));
    }

    impl Lpm4 {
        fn prefix_map_bytes(&self) -> usize {
            self.memory_bytes() - TBL24_LEN * 4 - self.tbl8.len() * 4
        }
    }

    #[test]
    fn clone_is_independent() {
        let mut a = Lpm4::new();
        a.insert(ip(10, 0, 0, 0), 8, 1).unwrap();
        a.insert(ip(10, 0, 0, 1), 32, 2).unwrap();
        let mut b = a.clone();
        b.remove(ip(10, 0, 0, 1), 32);
        b.insert(ip(11, 0, 0, 0), 8, 3).unwrap();
        assert_eq!(a.lookup(ip(10, 0, 0, 1)), Some(2));
        assert_eq!(a.lookup(ip(11, 0, 0, 0)), None);
        assert_eq!(b.lookup(ip(10, 0, 0, 1)), Some(1));
        assert_eq!(b.lookup(ip(11, 0, 0, 0)), Some(3));
        assert_eq!(a.len(), 2);
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn burst_matches_single_lookups() {
        let mut t = Lpm4::new();
        for (i, (a, l)) in crate::tables::synth::ipv4_table(2000, 1)
            .into_iter()
            .enumerate()
        {
            t.insert(a, l, i as u32).unwrap();
        }
        let table: Vec<_> = t.iter().map(|(a, l, _)| (a, l)).collect();
        let mut addrs = crate::tables::synth::addresses_covered_v4(&table, 100, 2);
        addrs.extend([0, u32::MAX, ip(127, 0, 0, 1)]);
        let mut out = vec![Some(u32::MAX); addrs.len() + 5];
        t.lookup_burst(&addrs, &mut out);
        for (a, o) in addrs.iter().zip(&out) {
            assert_eq!(*o, t.lookup(*a));
        }
        assert!(out[addrs.len()..].iter().all(|&o| o == Some(u32::MAX)));
        assert!(addrs[..100].iter().all(|&a| t.lookup(a).is_some()));
        // A shorter output slice bounds the work.
        let mut short = [None; 3];
        t.lookup_burst(&addrs, &mut short);
        assert_eq!(short[2], t.lookup(addrs[2]));
    }

    /// Longest match by linear scan over `(addr, len, value)`.
    fn reference_lookup(routes: &[(u32, u8, u32)], addr: u32) -> Option<u32> {
        routes
            .iter()
            .filter(|&&(a, l, _)| mask(addr, l) == a)
            .max_by_key(|&&(_, l, _)| l)
            .map(|&(_, _, v)| v)
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32, u8, u32),
        Remove(u32, u8),
    }

    /// Prefixes clustered around a few bases, so that they nest and overlap.
    fn prefix() -> impl Strategy<Value = (u32, u8)> {
        let len = prop_oneof![
            1 => 0u8..8,
            14 => 8u8..=24,
            14 => 25u8..=32,
        ];
        (0..3usize, any::<u32>(), 0u32..32, len).prop_map(|(b, r, shift, len)| {
            const BASES: [u32; 3] = [0x0a00_0000, 0x0a01_0200, 0xc0a8_ff00];
            (mask(BASES[b] ^ (r >> shift), len), len)
        })
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (prefix(), 0..=MAX_VALUE).prop_map(|((a, l), v)| Op::Insert(a, l, v)),
            2 => prefix().prop_map(|(a, l)| Op::Remove(a, l)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn matches_reference(ops in prop::collection::vec(op(), 1..120),
                             probes in prop::collection::vec((any::<u32>(), 0u32..32), 64)) {
            let mut t = Lpm4::new();
            let mut reference: Vec<(u32, u8, u32)> = vec![];
            for op in &ops {
                match *op {
                    Op::Insert(a, l, v) => {
                        let old = reference.iter().position(|r| (r.0, r.1) == (a, l));
                        let old = old.map(|i| reference.swap_remove(i).2);
                        reference.push((a, l, v));
                        prop_assert_eq!(t.insert(a, l, v), Ok(old));
                    }
                    Op::Remove(a, l) => {
                        let old = reference.iter().position(|r| (r.0, r.1) == (a, l));
                        let old = old.map(|i| reference.swap_remove(i).2);
                        prop_assert_eq!(t.remove(a, l), old);
                    }
                }
            }
            prop_assert_eq!(t.len(), reference.len());
            let mut got: Vec<_> = t.iter().collect();
            got.sort_unstable();
            let mut want = reference.clone();
            want.sort_unstable();
            prop_assert_eq!(got, want);
            for &(a, l, v) in &reference {
                prop_assert_eq!(t.get(a, l), Some(v));
            }
            // Probe near every route (its first and last address, one beyond)
            // and around random addresses.
            let mut addrs = vec![];
            for &(a, l, _) in &reference {
                let last = a | !mask(u32::MAX, l);
                addrs.extend([a, last, last.wrapping_add(1), a.wrapping_sub(1)]);
            }
            for &(r, shift) in &probes {
                addrs.push(0x0a01_0200 ^ (r >> shift));
            }
            for &a in &addrs {
                prop_assert_eq!(t.lookup(a), reference_lookup(&reference, a), "addr {:#x}", a);
            }
            let mut out = vec![None; addrs.len()];
            t.lookup_burst(&addrs, &mut out);
            for (&a, &o) in addrs.iter().zip(&out) {
                prop_assert_eq!(o, reference_lookup(&reference, a));
            }
            // Removing everything leaves no tbl8 group behind.
            for &(a, l, _) in &reference {
                t.remove(a, l);
            }
            prop_assert_eq!(t.tbl8_groups(), 0);
            prop_assert!(t.tbl8.is_empty());
            prop_assert!(t.is_empty());
        }
    }
}
