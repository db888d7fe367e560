//! IPv6 longest-prefix match: a 24-bit direct table in front of a
//! Poptrie-style compressed multibit trie (6-bit strides, popcount-indexed
//! children, leaf runs compressed).
//!
//! Contract:
//! * Reads: a destination address as a `u128` in network order
//!   (`u128::from_be_bytes` of the header field).
//! * Returns: the next-hop id (< 2^24) of the longest prefix that covers it, or
//!   `None`.
//! * Cost: one load from the direct table (indexed by the top 24 bits); if
//!   prefixes longer than /24 live under that /24, one 24-byte node per 6 bits
//!   of the matched prefix beyond /24 (a /32 route takes 2 nodes, a /48 takes
//!   4, a /64 takes 7), then one leaf. At most [`MAX_LEVELS`] nodes for any
//!   address, never a chain. No allocation, no panic.
//!
//! # Structure
//!
//! A node covers 6 bits of the address, i.e. 64 positions. Its `child_map`
//! marks the positions that lead to a deeper node; those nodes sit
//! contiguously in the node pool, so child `i` is at `child_base + (number of
//! set bits of child_map below i)`. Every other position is a leaf holding
//! the best route for it (routes are pushed down to the leaves, as in
//! DIR-24-8); runs of equal leaves are stored once, with `leaf_map` marking
//! where runs start, so leaf `i` is in the run numbered by the set bits of
//! `leaf_map` up to and including `i`, counted from `leaf_base`. This is the
//! Poptrie layout (Asai and Ohara, SIGCOMM 2015).
//!
//! Leaves and direct entries carry the length of the route that wrote them
//! (`(len + 1) << 24 | next hop`, 0 meaning no route), so inserts and removes
//! can tell which leaves a route owns, as in `rte_lpm`. Per-length exact
//! prefix maps are the source of truth for [`Lpm6::get`], [`Lpm6::iter`] and
//! for finding the covering route when one is removed. Nodes whose subtree no
//! longer holds a route longer than the node's depth fold back into a leaf.
//!
//! # Why this structure
//!
//! Measured with the `measure` test below (release build, this crate's
//! 2-core AMD EPYC VM, 4 KiB pages) on
//! [`synth::ipv6_table`](super::synth::ipv6_table) (realistic length mix and
//! clustering) and on uniformly random /48s in 2000::/3 (the worst case for
//! any trie). "Structure" is the direct table's touched pages plus nodes and
//! leaves; "+ maps" adds the exact-prefix maps. "DIR" is what `rte_lpm6`'s
//! layout (24-bit first level, then 8-bit groups of 256 four-byte entries)
//! needs in groups alone, counted from the same tables. Lookups are over 1M
//! random addresses inside random routes of the table, so at 1M routes
//! nearly every node visited is a cache and TLB miss.
//!
//! | table         | nodes | structure | + maps   | DIR      | lookup | burst of 32 |
//! |---------------|-------|-----------|----------|----------|--------|-------------|
//! | synth 1k      | 2.2k  | 0.1 MiB   | 0.2 MiB  | 1.6 MiB  | 27 ns  | 32 ns       |
//! | synth 100k    | 189k  | 5.7 MiB   | 7.5 MiB  | 123 MiB  | 87 ns  | 35 ns       |
//! | synth 1M      | 1.66M | 55 MiB    | 70 MiB   | 1.05 GiB | 301 ns | 74 ns       |
//! | random /48 1M | 3.79M | 117 MiB   | 140 MiB  | 2.66 GiB | 416 ns | 92 ns       |
//!
//! Inserts take 0.9–1.5 µs each. The same trie behind a 16-bit direct table
//! (256 KiB, always resident) needed 12% more nodes (63 MiB of structure at
//! synth 1M) and was slower everywhere (413 ns single, 85 ns burst at synth
//! 1M) because a /48 costs two more dependent node loads, so the first level
//! is 24 bits. A single lookup is a chain of dependent loads (direct entry,
//! root, one node per 6 bits, leaf); [`Lpm6::lookup_burst`] walks 32 chains
//! side by side, which is why it is 4x faster on large tables. Binary search
//! on prefix lengths (Waldvogel) needs ~4 dependent hash probes for the
//! length mix above, each a random miss into a large hash table, plus marker
//! entries; here the upper levels are shared by many routes and stay cached.
//!
//! Without the `popcnt` target feature, `count_ones` compiles to a short
//! bit-twiddling sequence; building with `-C target-feature=+popcnt` (or a
//! `target-cpu` that has it) turns it into one instruction.

use core::fmt;

use arrayvec::ArrayVec;
use hashbrown::HashMap;

use super::lpm4::{copy_nonzero_pages, prefetch, zeroed_direct_table};
pub use super::lpm4::{LpmError, MAX_VALUE};

/// Address bits resolved by the direct table.
const DIRECT_BITS: u32 = 24;
const DIRECT_LEN: usize = 1 << DIRECT_BITS;
/// Address bits per trie node.
const STRIDE: u32 = 6;
/// The most nodes a lookup visits: enough strides to cover bits 24..128.
pub const MAX_LEVELS: usize = (128 - DIRECT_BITS).div_ceil(STRIDE) as usize;

const VALUE_MASK: u32 = (1 << 24) - 1;
/// Top byte of a direct entry that points at a root node (route entries have
/// `len + 1 <= 129` there).
const NODE_TAG: u32 = 0xff;

/// One trie node: 6 bits of address, 64 positions. 24 bytes.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
#[repr(C)]
struct Node {
    child_map: u64,
    leaf_map: u64,
    child_base: u32,
    leaf_base: u32,
}

/// Where a node lives: roots (one per direct slot) in their own pool, so that
/// their index fits in a direct entry; other nodes in their parent's block.
#[derive(Clone, Copy, Debug)]
enum NodeId {
    Root(u32),
    Inner(u32),
}

/// What an update does to the leaves a route covers.
#[derive(Clone, Copy, Debug)]
enum Update {
    /// Route `len` with entry `entry` is added or replaced: it takes every
    /// leaf written by an equal or shorter route.
    Insert { len: u8, entry: u32 },
    /// Route `len` is gone: its leaves go to `replacement`, the entry of the
    /// longest remaining route covering it (or 0).
    Remove { len: u8, replacement: u32 },
}

impl Update {
    fn apply(self, e: u32) -> u32 {
        match self {
            Update::Insert { len, entry } if e == 0 || entry_len(e) <= len => entry,
            Update::Remove { len, replacement } if e != 0 && entry_len(e) == len => replacement,
            _ => e,
        }
    }

    fn is_insert(self) -> bool {
        matches!(self, Update::Insert { .. })
    }
}

/// Blocks of 1 to 64 contiguous items (a node's children, or its leaf runs),
/// with a free list per block size.
#[derive(Clone, Debug)]
struct BlockPool<T> {
    items: Vec<T>,
    free: Vec<Vec<u32>>,
    in_use: usize,
}

impl<T: Copy> BlockPool<T> {
    fn new() -> Self {
        BlockPool {
            items: Vec::new(),
            free: (0..=64).map(|_| Vec::new()).collect(),
            in_use: 0,
        }
    }

    fn alloc(&mut self, block: &[T]) -> u32 {
        if block.is_empty() {
            return 0;
        }
        self.in_use += block.len();
        if let Some(base) = self.free[block.len()].pop() {
            self.items[base as usize..base as usize + block.len()].copy_from_slice(block);
            base
        } else {
            let base = self.items.len() as u32;
            self.items.extend_from_slice(block);
            base
        }
    }

    fn release(&mut self, base: u32, len: usize) {
        if len > 0 {
            self.in_use -= len;
            self.free[len].push(base);
        }
    }

    fn bytes(&self) -> usize {
        self.items.len() * core::mem::size_of::<T>()
            + self.free.iter().map(|f| f.len() * 4).sum::<usize>()
    }
}

/// Exact routes, one map per length; lengths up to 64 key on the top half
/// only, which halves the map for the routes the Internet carries.
#[derive(Clone, Debug)]
struct PrefixMaps {
    short: Vec<HashMap<u64, u32>>,
    long: Vec<HashMap<u128, u32>>,
}

impl PrefixMaps {
    fn new() -> Self {
        PrefixMaps {
            short: (0..=64).map(|_| HashMap::new()).collect(),
            long: (65..=128).map(|_| HashMap::new()).collect(),
        }
    }

    /// `addr` must be masked to `len <= 128`.
    fn get(&self, addr: u128, len: u8) -> Option<u32> {
        if len <= 64 {
            self.short[len as usize]
                .get(&((addr >> 64) as u64))
                .copied()
        } else {
            self.long[len as usize - 65].get(&addr).copied()
        }
    }

    fn insert(&mut self, addr: u128, len: u8, value: u32) -> Option<u32> {
        if len <= 64 {
            self.short[len as usize].insert((addr >> 64) as u64, value)
        } else {
            self.long[len as usize - 65].insert(addr, value)
        }
    }

    fn remove(&mut self, addr: u128, len: u8) -> Option<u32> {
        if len <= 64 {
            self.short[len as usize].remove(&((addr >> 64) as u64))
        } else {
            self.long[len as usize - 65].remove(&addr)
        }
    }

    fn has_length(&self, len: u8) -> bool {
        if len <= 64 {
            !self.short[len as usize].is_empty()
        } else {
            !self.long[len as usize - 65].is_empty()
        }
    }

    fn iter(&self) -> impl Iterator<Item = (u128, u8, u32)> + '_ {
        let short = self.short.iter().enumerate().flat_map(|(len, m)| {
            m.iter()
                .map(move |(&a, &v)| ((a as u128) << 64, len as u8, v))
        });
        let long = self
            .long
            .iter()
            .enumerate()
            .flat_map(|(i, m)| m.iter().map(move |(&a, &v)| (a, (i + 65) as u8, v)));
        short.chain(long)
    }

    fn bytes(&self) -> usize {
        let short: usize = self.short.iter().map(|m| m.capacity() * 13).sum();
        let long: usize = self.long.iter().map(|m| m.capacity() * 33).sum();
        short + long
    }
}

/// An IPv6 route table. See the module documentation.
pub struct Lpm6 {
    /// One entry per /24: a route entry, or `NODE_TAG << 24 | root`.
    direct: Box<[u32; DIRECT_LEN]>,
    roots: Vec<Node>,
    free_roots: Vec<u32>,
    nodes: BlockPool<Node>,
    leaves: BlockPool<u32>,
    prefixes: PrefixMaps,
    count: usize,
}

impl Lpm6 {
    /// Creates an empty table (64 MiB of direct table, mapped only as it is
    /// written).
    pub fn new() -> Self {
        Lpm6 {
            direct: zeroed_direct_table(),
            roots: Vec::new(),
            free_roots: Vec::new(),
            nodes: BlockPool::new(),
            leaves: BlockPool::new(),
            prefixes: PrefixMaps::new(),
            count: 0,
        }
    }

    /// Adds or replaces the route `addr/len`, returning the next hop it had.
    ///
    /// Host bits of `addr` beyond `len` are ignored.
    pub fn insert(&mut self, addr: u128, len: u8, value: u32) -> Result<Option<u32>, LpmError> {
        if len > 128 {
            return Err(LpmError::PrefixLength { len, max: 128 });
        }
        if value > MAX_VALUE {
            return Err(LpmError::Value { value });
        }
        let addr = mask(addr, len);
        self.update(
            addr,
            len,
            Update::Insert {
                len,
                entry: route_entry(len, value),
            },
        );
        let old = self.prefixes.insert(addr, len, value);
        if old.is_none() {
            self.count += 1;
        }
        Ok(old)
    }

    /// Removes the route `addr/len`, returning its next hop. Addresses it
    /// covered fall back to the longest remaining prefix that covers them.
    pub fn remove(&mut self, addr: u128, len: u8) -> Option<u32> {
        if len > 128 {
            return None;
        }
        let addr = mask(addr, len);
        let old = self.prefixes.remove(addr, len)?;
        self.count -= 1;
        let replacement = (0..len)
            .rev()
            .filter(|&l| self.prefixes.has_length(l))
            .find_map(|l| {
                self.prefixes
                    .get(mask(addr, l), l)
                    .map(|v| route_entry(l, v))
            })
            .unwrap_or(0);
        self.update(addr, len, Update::Remove { len, replacement });
        Some(old)
    }

    /// The next hop of exactly `addr/len`, if that route exists.
    pub fn get(&self, addr: u128, len: u8) -> Option<u32> {
        if len > 128 {
            return None;
        }
        self.prefixes.get(mask(addr, len), len)
    }

    /// The next hop of the longest prefix covering `addr`.
    #[inline]
    pub fn lookup(&self, addr: u128) -> Option<u32> {
        let mut e = self.direct[(addr >> (128 - DIRECT_BITS)) as usize];
        if e >> 24 == NODE_TAG {
            e = self.walk(e & VALUE_MASK, addr);
        }
        (e != 0).then_some(e & VALUE_MASK)
    }

    #[inline]
    fn walk(&self, root: u32, addr: u128) -> u32 {
        let Some(mut node) = self.roots.get(root as usize) else {
            return 0;
        };
        let mut rest = addr << DIRECT_BITS;
        for _ in 0..MAX_LEVELS {
            let bit = 1u64 << (rest >> (128 - STRIDE)) as u32;
            rest <<= STRIDE;
            if node.child_map & bit != 0 {
                match self.nodes.items.get(child_slot(node, bit)) {
                    Some(child) => node = child,
                    None => return 0,
                }
            } else {
                return self
                    .leaves
                    .items
                    .get(leaf_slot(node, bit))
                    .copied()
                    .unwrap_or(0);
            }
        }
        0
    }

    /// Looks up `addrs[i]` into `out[i]` for every `i` below the shorter of
    /// the two lengths.
    /// `out[i]` is what [`lookup`](Self::lookup) returns: `None` when no
    /// route covers the address (an `Option` rather than a sentinel value,
    /// so a missing route cannot be mistaken for a next hop).
    ///
    /// Works in bursts of 32, level by level: each round reads one node for
    /// every lookup still walking and prefetches the next one, so the cache
    /// misses of the burst overlap instead of following one another.
    #[inline]
    pub fn lookup_burst(&self, addrs: &[u128], out: &mut [Option<u32>]) {
        const BURST: usize = 32;
        for (addrs, out) in addrs.chunks(BURST).zip(out.chunks_mut(BURST)) {
            let n = addrs.len().min(out.len());
            for &a in &addrs[..n] {
                prefetch(&self.direct[(a >> (128 - DIRECT_BITS)) as usize]);
            }
            // Per lookup: the node to read next (None once resolved), the
            // address bits not consumed yet, and the entry found (or the
            // slot of the leaf to read at the end).
            let mut next: [Option<&Node>; BURST] = [None; BURST];
            let mut rest = [0u128; BURST];
            let mut entry = [0u32; BURST];
            let mut leaf = [usize::MAX; BURST];
            let mut walking = 0;
            for i in 0..n {
                let e = self.direct[(addrs[i] >> (128 - DIRECT_BITS)) as usize];
                if e >> 24 == NODE_TAG {
                    next[i] = self.roots.get((e & VALUE_MASK) as usize);
                    if let Some(node) = next[i] {
                        prefetch(node);
                        walking += 1;
                    }
                    rest[i] = addrs[i] << DIRECT_BITS;
                } else {
                    entry[i] = e;
                }
            }
            let mut rounds = 0;
            while walking > 0 && rounds < MAX_LEVELS {
                rounds += 1;
                for i in 0..n {
                    let Some(node) = next[i] else { continue };
                    let bit = 1u64 << (rest[i] >> (128 - STRIDE)) as u32;
                    rest[i] <<= STRIDE;
                    if node.child_map & bit != 0 {
                        next[i] = self.nodes.items.get(child_slot(node, bit));
                        match next[i] {
                            Some(child) => prefetch(child),
                            None => walking -= 1,
                        }
                    } else {
                        next[i] = None;
                        walking -= 1;
                        // The leaf is this lookup's last miss: issue it now,
                        // read it once every walk is done.
                        leaf[i] = leaf_slot(node, bit);
                        if let Some(l) = self.leaves.items.get(leaf[i]) {
                            prefetch(l);
                        }
                    }
                }
            }
            for ((o, &e), &l) in out[..n].iter_mut().zip(&entry).zip(&leaf) {
                let e = if l == usize::MAX {
                    e
                } else {
                    self.leaves.items.get(l).copied().unwrap_or(0)
                };
                *o = (e != 0).then_some(e & VALUE_MASK);
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
    pub fn iter(&self) -> impl Iterator<Item = (u128, u8, u32)> + '_ {
        self.prefixes.iter()
    }

    /// The number of trie nodes in use (roots included).
    pub fn node_count(&self) -> usize {
        self.roots.len() - self.free_roots.len() + self.nodes.in_use
    }

    /// Bytes allocated: the direct table (64 MiB, though pages no route has
    /// written are never mapped), nodes, leaves and the exact-prefix maps.
    pub fn memory_bytes(&self) -> usize {
        DIRECT_LEN * 4 + self.structure_bytes() + self.prefixes.bytes()
    }

    /// Nodes, leaves and their free lists.
    fn structure_bytes(&self) -> usize {
        self.roots.len() * core::mem::size_of::<Node>()
            + self.free_roots.len() * 4
            + self.nodes.bytes()
            + self.leaves.bytes()
    }

    /// Applies `update` for route `addr/len` (masked) to the direct table and
    /// the trie.
    fn update(&mut self, addr: u128, len: u8, update: Update) {
        if u32::from(len) <= DIRECT_BITS {
            let first = (addr >> (128 - DIRECT_BITS)) as usize;
            for slot in first..first + (1 << (DIRECT_BITS - u32::from(len))) {
                let e = self.direct[slot];
                self.direct[slot] = if e >> 24 == NODE_TAG {
                    let root = NodeId::Root(e & VALUE_MASK);
                    match self.update_all(root, update) {
                        Some(uniform) => self.free_root(e & VALUE_MASK, uniform),
                        None => e,
                    }
                } else {
                    update.apply(e)
                };
            }
            return;
        }
        let slot = (addr >> (128 - DIRECT_BITS)) as usize;
        let mut e = self.direct[slot];
        if e >> 24 != NODE_TAG {
            if !update.is_insert() {
                return;
            }
            e = NODE_TAG << 24 | self.new_root(e);
            self.direct[slot] = e;
        }
        let root = e & VALUE_MASK;
        if let Some(uniform) = self.update_path(NodeId::Root(root), DIRECT_BITS, addr, len, update)
        {
            self.direct[slot] = self.free_root(root, uniform);
        }
    }

    /// Applies `update` below node `id` at `depth`, for a route longer than
    /// `depth`. Returns the node's single leaf entry if it no longer needs to
    /// exist (no children, one leaf run).
    fn update_path(
        &mut self,
        id: NodeId,
        depth: u32,
        addr: u128,
        len: u8,
        update: Update,
    ) -> Option<u32> {
        let node = self.node(id);
        let mut folded = ArrayVec::<(u32, u32), 64>::new();
        if u32::from(len) <= depth + STRIDE {
            // The route ends in this node: it covers a run of positions.
            let first = chunk(addr, depth);
            let positions = first..first + (1 << (depth + STRIDE - u32::from(len)));
            for v in positions.clone() {
                if node.child_map & (1 << v) != 0 {
                    let child = NodeId::Inner(child_slot(&node, 1 << v) as u32);
                    if let Some(uniform) = self.update_all(child, update) {
                        folded.push((v, uniform));
                    }
                }
            }
            return self.rewrite(id, positions, update, &folded);
        }
        let v = chunk(addr, depth);
        if node.child_map & (1 << v) == 0 {
            if !update.is_insert() {
                return None;
            }
            self.add_child(id, v);
        }
        let node = self.node(id);
        let child = NodeId::Inner(child_slot(&node, 1 << v) as u32);
        match self.update_path(child, depth + STRIDE, addr, len, update) {
            Some(uniform) => {
                folded.push((v, uniform));
                self.rewrite(id, 0..0, update, &folded)
            }
            None => None,
        }
    }

    /// Applies `update` to every leaf of the subtree at `id`, which the route
    /// covers entirely. Returns the node's single leaf entry if it no longer
    /// needs to exist.
    fn update_all(&mut self, id: NodeId, update: Update) -> Option<u32> {
        let node = self.node(id);
        let mut folded = ArrayVec::<(u32, u32), 64>::new();
        let mut children = node.child_map;
        while children != 0 {
            let v = children.trailing_zeros();
            children &= children - 1;
            let child = NodeId::Inner(child_slot(&node, 1 << v) as u32);
            if let Some(uniform) = self.update_all(child, update) {
                folded.push((v, uniform));
            }
        }
        self.rewrite(id, 0..64, update, &folded)
    }

    /// Rewrites node `id` after its children were updated: applies `update`
    /// to its leaves in `positions`, and turns the `folded` children into
    /// leaves. Returns the node's single leaf entry if it no longer needs to
    /// exist.
    fn rewrite(
        &mut self,
        id: NodeId,
        positions: core::ops::Range<u32>,
        update: Update,
        folded: &[(u32, u32)],
    ) -> Option<u32> {
        let node = self.node(id);
        let mut leaves = self.leaves_of(&node);
        for v in positions {
            if node.child_map & (1 << v) == 0 {
                leaves[v as usize] = update.apply(leaves[v as usize]);
            }
        }
        let node = if folded.is_empty() {
            self.store_leaves(id, node, &leaves)
        } else {
            let mut children = self.children_of(&node);
            for &(v, uniform) in folded {
                let Some(i) = children.iter().position(|c| c.0 == v) else {
                    continue;
                };
                let (_, child) = children.remove(i);
                // A folded child has no children and one leaf.
                self.leaves.release(child.leaf_base, 1);
                leaves[v as usize] = uniform;
            }
            self.store_children(id, node, &children, &leaves)
        };
        (node.child_map == 0 && node.leaf_map == 1)
            .then(|| self.leaves.items[node.leaf_base as usize])
    }

    /// Turns leaf position `v` of node `id` into a child whose 64 positions
    /// all hold that leaf's entry.
    fn add_child(&mut self, id: NodeId, v: u32) {
        let node = self.node(id);
        let leaves = self.leaves_of(&node);
        let mut children = self.children_of(&node);
        let child = Node {
            child_map: 0,
            leaf_map: 1,
            child_base: 0,
            leaf_base: self.leaves.alloc(&[leaves[v as usize]]),
        };
        let at = children
            .iter()
            .position(|c| c.0 > v)
            .unwrap_or(children.len());
        children.insert(at, (v, child));
        self.store_children(id, node, &children, &leaves);
    }

    fn new_root(&mut self, fill: u32) -> u32 {
        let root = Node {
            child_map: 0,
            leaf_map: 1,
            child_base: 0,
            leaf_base: self.leaves.alloc(&[fill]),
        };
        match self.free_roots.pop() {
            Some(r) => {
                self.roots[r as usize] = root;
                r
            }
            None => {
                self.roots.push(root);
                (self.roots.len() - 1) as u32
            }
        }
    }

    /// Frees a root that folded to `uniform`, returning the direct entry that
    /// replaces it.
    fn free_root(&mut self, root: u32, uniform: u32) -> u32 {
        let node = self.roots[root as usize];
        self.leaves.release(node.leaf_base, 1);
        self.free_roots.push(root);
        uniform
    }

    fn node(&self, id: NodeId) -> Node {
        match id {
            NodeId::Root(r) => self.roots[r as usize],
            NodeId::Inner(i) => self.nodes.items[i as usize],
        }
    }

    fn set_node(&mut self, id: NodeId, node: Node) {
        match id {
            NodeId::Root(r) => self.roots[r as usize] = node,
            NodeId::Inner(i) => self.nodes.items[i as usize] = node,
        }
    }

    /// The node's 64 leaf entries, expanded; positions with a child hold 0.
    fn leaves_of(&self, node: &Node) -> [u32; 64] {
        let mut leaves = [0u32; 64];
        for (v, leaf) in leaves.iter_mut().enumerate() {
            let bit = 1u64 << v;
            if node.child_map & bit == 0 {
                *leaf = self.leaves.items[leaf_slot(node, bit)];
            }
        }
        leaves
    }

    fn children_of(&self, node: &Node) -> ArrayVec<(u32, Node), 64> {
        let base = node.child_base as usize;
        let mut children = ArrayVec::new();
        let mut map = node.child_map;
        while map != 0 {
            let v = map.trailing_zeros();
            map &= map - 1;
            children.push((v, self.nodes.items[base + children.len()]));
        }
        children
    }

    /// Stores `leaves` (run-compressed, child positions skipped) as the
    /// leaves of `node`, which lives at `id`.
    fn store_leaves(&mut self, id: NodeId, mut node: Node, leaves: &[u32; 64]) -> Node {
        let (leaf_map, runs) = compress(node.child_map, leaves);
        let old_runs = node.leaf_map.count_ones() as usize;
        if runs.len() == old_runs {
            let base = node.leaf_base as usize;
            self.leaves.items[base..base + runs.len()].copy_from_slice(&runs);
        } else {
            self.leaves.release(node.leaf_base, old_runs);
            node.leaf_base = self.leaves.alloc(&runs);
        }
        node.leaf_map = leaf_map;
        self.set_node(id, node);
        node
    }

    /// Gives `node`, which lives at `id`, a new set of children (sorted by
    /// position) and leaves.
    fn store_children(
        &mut self,
        id: NodeId,
        mut node: Node,
        children: &[(u32, Node)],
        leaves: &[u32; 64],
    ) -> Node {
        let old_children = node.child_map.count_ones() as usize;
        self.nodes.release(node.child_base, old_children);
        let block: ArrayVec<Node, 64> = children.iter().map(|c| c.1).collect();
        node.child_base = self.nodes.alloc(&block);
        node.child_map = children.iter().fold(0, |m, c| m | 1 << c.0);
        self.store_leaves(id, node, leaves)
    }
}

impl Default for Lpm6 {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for Lpm6 {
    /// Copies only the written pages of the direct table, so the copy maps no
    /// more memory than the original.
    fn clone(&self) -> Self {
        let mut direct = zeroed_direct_table();
        copy_nonzero_pages(&self.direct[..], &mut direct[..]);
        Lpm6 {
            direct,
            roots: self.roots.clone(),
            free_roots: self.free_roots.clone(),
            nodes: self.nodes.clone(),
            leaves: self.leaves.clone(),
            prefixes: self.prefixes.clone(),
            count: self.count,
        }
    }
}

impl fmt::Debug for Lpm6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lpm6")
            .field("routes", &self.count)
            .field("nodes", &self.node_count())
            .finish_non_exhaustive()
    }
}

/// Index in the node pool of the child at position `bit` (which is set in
/// `child_map`).
#[inline(always)]
fn child_slot(node: &Node, bit: u64) -> usize {
    node.child_base as usize + (node.child_map & (bit - 1)).count_ones() as usize
}

/// Index in the leaf pool of the leaf at position `bit` (which is clear in
/// `child_map`): the run that started at or before it.
#[inline(always)]
fn leaf_slot(node: &Node, bit: u64) -> usize {
    let runs = (node.leaf_map & (bit | (bit - 1))).count_ones() as usize;
    (node.leaf_base as usize + runs).wrapping_sub(1)
}

/// Run-compresses the leaves at positions without a child: the map of run
/// starts and one entry per run.
fn compress(child_map: u64, leaves: &[u32; 64]) -> (u64, ArrayVec<u32, 64>) {
    let mut leaf_map = 0u64;
    let mut runs = ArrayVec::new();
    for (v, &leaf) in leaves.iter().enumerate() {
        if child_map & (1 << v) != 0 {
            continue;
        }
        if runs.last() != Some(&leaf) {
            leaf_map |= 1 << v;
            runs.push(leaf);
        }
    }
    (leaf_map, runs)
}

/// The 6 address bits starting at bit `depth` (from the top), zero-padded
/// past bit 127, as the lookup consumes them.
fn chunk(addr: u128, depth: u32) -> u32 {
    ((addr << depth) >> (128 - STRIDE)) as u32
}

fn route_entry(len: u8, value: u32) -> u32 {
    (u32::from(len) + 1) << 24 | value
}

/// The length of the route that wrote a (non-zero) entry.
fn entry_len(e: u32) -> u8 {
    ((e >> 24) as u8).wrapping_sub(1)
}

/// `addr` with the bits beyond `len` cleared.
fn mask(addr: u128, len: u8) -> u128 {
    addr & u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::synth;
    use proptest::prelude::*;

    fn v6(s: &str) -> u128 {
        u128::from_be_bytes(s.parse::<std::net::Ipv6Addr>().unwrap().octets())
    }

    #[test]
    fn empty_table_finds_nothing() {
        let t = Lpm6::new();
        assert!(t.is_empty());
        assert_eq!(t.lookup(0), None);
        assert_eq!(t.lookup(u128::MAX), None);
        assert_eq!(t.node_count(), 0);
    }

    #[test]
    fn default_route_and_host_routes() {
        let mut t = Lpm6::default();
        assert_eq!(t.insert(0, 0, 7), Ok(None));
        assert_eq!(t.lookup(v6("2001:db8::1")), Some(7));
        assert_eq!(t.lookup(u128::MAX), Some(7));
        assert_eq!(t.insert(v6("2001:db8::1"), 128, 9), Ok(None));
        assert_eq!(t.insert(u128::MAX, 128, 10), Ok(None));
        assert_eq!(t.insert(0, 128, 11), Ok(None));
        assert_eq!(t.lookup(v6("2001:db8::1")), Some(9));
        assert_eq!(t.lookup(v6("2001:db8::")), Some(7));
        assert_eq!(t.lookup(v6("2001:db8::2")), Some(7));
        assert_eq!(t.lookup(v6("2001:db8::3")), Some(7));
        assert_eq!(t.lookup(u128::MAX), Some(10));
        assert_eq!(t.lookup(u128::MAX - 1), Some(7));
        assert_eq!(t.lookup(0), Some(11));
        assert_eq!(t.lookup(1), Some(7));
        assert_eq!(t.len(), 4);
        // Each /128 needs a root and 17 nodes below it.
        assert_eq!(t.node_count(), 3 * (1 + MAX_LEVELS - 1));
        assert_eq!(t.remove(0, 0), Some(7));
        assert_eq!(t.lookup(v6("2001:db8::2")), None);
        assert_eq!(t.lookup(v6("2001:db8::1")), Some(9));
        assert_eq!(t.remove(v6("2001:db8::1"), 128), Some(9));
        assert_eq!(t.lookup(v6("2001:db8::1")), None);
        assert_eq!(t.remove(u128::MAX, 128), Some(10));
        assert_eq!(t.remove(0, 128), Some(11));
        assert_eq!(t.node_count(), 0);
        assert!(t.is_empty());
    }

    #[test]
    fn replace_returns_old_value_and_invalid_routes_are_refused() {
        let mut t = Lpm6::new();
        let p = v6("2001:db8::");
        assert_eq!(t.insert(p, 32, 1), Ok(None));
        assert_eq!(t.insert(p | 0xffff, 32, 2), Ok(Some(1)));
        assert_eq!(t.get(p | 0xabc, 32), Some(2));
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.insert(p, 129, 1),
            Err(LpmError::PrefixLength { len: 129, max: 128 })
        );
        assert_eq!(
            t.insert(p, 48, 1 << 24),
            Err(LpmError::Value { value: 1 << 24 })
        );
        assert_eq!(t.remove(p, 129), None);
        assert_eq!(t.get(p, 129), None);
        assert_eq!(t.remove(p, 48), None);
        assert_eq!(t.remove(v6("2001:db9::"), 32), None);
        assert_eq!(t.iter().collect::<Vec<_>>(), vec![(p, 32, 2)]);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn nested_prefixes_removed_in_every_order() {
        // Includes a /64 and /60 that end mid-stride.
        let routes = [
            (v6("2000::"), 8, 1),
            (v6("2001:db8::"), 32, 2),
            (v6("2001:db8:1::"), 48, 3),
            (v6("2001:db8:1:10::"), 60, 4),
            (v6("2001:db8:1:12::"), 64, 5),
        ];
        let probes = [
            v6("20ff::1"),
            v6("2001:db8:ff::1"),
            v6("2001:db8:1:ff::1"),
            v6("2001:db8:1:1f::1"),
            v6("2001:db8:1:12::1"),
        ];
        let expected = |present: &[bool], probe: usize| {
            (0..=probe).rev().find(|&i| present[i]).map(|i| routes[i].2)
        };
        let mut t = Lpm6::new();
        for order in permutations(routes.len()) {
            for &(a, l, v) in &routes {
                t.insert(a, l, v).unwrap();
            }
            let mut present = vec![true; routes.len()];
            for &r in &order {
                assert_eq!(t.remove(routes[r].0, routes[r].1), Some(routes[r].2));
                present[r] = false;
                for (p, &addr) in probes.iter().enumerate() {
                    assert_eq!(t.lookup(addr), expected(&present, p), "order {order:?}");
                }
                assert_eq!(t.lookup(v6("3000::")), None);
            }
            assert_eq!(t.node_count(), 0, "order {order:?}");
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
        assert_eq!(t.node_count(), 0);
        assert_eq!(t.nodes.in_use + t.leaves.in_use, 0);
    }

    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        let mut out = vec![];
        for p in permutations(n - 1) {
            for i in 0..=p.len() {
                let mut q = p.clone();
                q.insert(i, n - 1);
                out.push(q);
            }
        }
        out
    }

    #[test]
    fn nodes_are_reclaimed() {
        let mut t = Lpm6::new();
        let base = v6("2001:db8::");
        t.insert(base, 32, 1).unwrap();
        // A /32 ends in the second stride below the /24: a root and a child.
        assert_eq!(t.node_count(), 2);
        let structure = t.structure_bytes();
        for i in 0..50u128 {
            t.insert(base | i << 80, 48, 100 + i as u32).unwrap();
        }
        let grown = t.node_count();
        assert!(grown > 1);
        for i in 0..50u128 {
            assert_eq!(t.lookup(base | i << 80 | 1), Some(100 + i as u32));
            assert_eq!(t.remove(base | i << 80, 48), Some(100 + i as u32));
        }
        assert_eq!(t.node_count(), 2);
        assert_eq!(t.lookup(base | 1), Some(1));
        // Freed blocks are reused, so re-adding the routes does not grow the pools.
        let pools = t.structure_bytes();
        for i in 0..50u128 {
            t.insert(base | i << 80, 48, 100 + i as u32).unwrap();
        }
        assert_eq!(t.node_count(), grown);
        for i in 0..50u128 {
            t.remove(base | i << 80, 48);
        }
        assert_eq!(t.structure_bytes(), pools);
        t.remove(base, 32);
        assert_eq!(t.node_count(), 0);
        assert!(structure <= pools);
    }

    #[test]
    fn clone_is_independent() {
        let mut a = Lpm6::new();
        a.insert(v6("2001:db8::"), 32, 1).unwrap();
        a.insert(v6("2001:db8::1"), 128, 2).unwrap();
        let mut b = a.clone();
        b.remove(v6("2001:db8::1"), 128);
        b.insert(v6("2002::"), 16, 3).unwrap();
        assert_eq!(a.lookup(v6("2001:db8::1")), Some(2));
        assert_eq!(a.lookup(v6("2002::1")), None);
        assert_eq!(b.lookup(v6("2001:db8::1")), Some(1));
        assert_eq!(b.lookup(v6("2002::1")), Some(3));
    }

    #[test]
    fn synthetic_table_and_burst_agree_with_single_lookups() {
        let table = synth::ipv6_table(3000, 1);
        let mut t = Lpm6::new();
        for (i, &(a, l)) in table.iter().enumerate() {
            assert_eq!(t.insert(a, l, i as u32), Ok(None));
        }
        assert_eq!(t.len(), table.len());
        let mut addrs = synth::addresses_covered_v6(&table, 200, 2);
        addrs.extend([0, u128::MAX, v6("2001:db8::1")]);
        let mut out = vec![Some(u32::MAX); addrs.len() + 5];
        t.lookup_burst(&addrs, &mut out);
        for (a, o) in addrs.iter().zip(&out) {
            assert_eq!(*o, t.lookup(*a));
        }
        assert!(out[addrs.len()..].iter().all(|&o| o == Some(u32::MAX)));
        assert!(addrs[..200].iter().all(|&a| t.lookup(a).is_some()));
        for &(a, l) in &table {
            assert!(t.remove(a, l).is_some());
        }
        assert_eq!(t.node_count(), 0);
        assert_eq!(t.lookup(addrs[0]), None);
    }

    fn reference_lookup(routes: &[(u128, u8, u32)], addr: u128) -> Option<u32> {
        routes
            .iter()
            .filter(|&&(a, l, _)| mask(addr, l) == a)
            .max_by_key(|&&(_, l, _)| l)
            .map(|&(_, _, v)| v)
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u128, u8, u32),
        Remove(u128, u8),
    }

    /// Prefixes clustered around a few bases, so that they nest and overlap.
    fn prefix() -> impl Strategy<Value = (u128, u8)> {
        let len = prop_oneof![
            1 => 0u8..24,
            14 => 24u8..=64,
            7 => 65u8..=128,
        ];
        (0..3usize, any::<u128>(), 0u32..128, len).prop_map(|(b, r, shift, len)| {
            const BASES: [u128; 3] = [
                0x2001_0db8_0000_0000_0000_0000_0000_0000,
                0x2001_0db8_0001_0012_0000_0000_0000_0000,
                0xfe80_0000_0000_0000_0000_0000_0000_0001,
            ];
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
                             probes in prop::collection::vec((any::<u128>(), 0u32..128), 64)) {
            let mut t = Lpm6::new();
            let mut reference: Vec<(u128, u8, u32)> = vec![];
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
            let mut addrs = vec![];
            for &(a, l, _) in &reference {
                let last = a | !mask(u128::MAX, l);
                addrs.extend([a, last, last.wrapping_add(1), a.wrapping_sub(1)]);
            }
            for &(r, shift) in &probes {
                addrs.push(0x2001_0db8_0001_0012_0000_0000_0000_0000 ^ (r >> shift));
            }
            for &a in &addrs {
                prop_assert_eq!(t.lookup(a), reference_lookup(&reference, a), "addr {:#x}", a);
            }
            let mut out = vec![None; addrs.len()];
            t.lookup_burst(&addrs, &mut out);
            for (&a, &o) in addrs.iter().zip(&out) {
                prop_assert_eq!(o, reference_lookup(&reference, a));
            }
            // Removing everything folds every node away.
            for &(a, l, _) in &reference {
                t.remove(a, l);
            }
            prop_assert!(t.is_empty());
            prop_assert_eq!(t.node_count(), 0);
            prop_assert_eq!(t.leaves.in_use, 0);
        }
    }
}

/// The numbers behind the module documentation's table. Run with
/// `cargo test --release -p sluice-dataplane --lib lpm6::measure -- --ignored --nocapture`.
#[cfg(test)]
mod measure {
    use super::*;
    use crate::tables::synth;
    use hashbrown::HashSet;
    use rand::{rngs::SmallRng, Rng, SeedableRng};
    use std::time::Instant;

    fn random_48s(n: usize) -> Vec<(u128, u8)> {
        let mut rng = SmallRng::seed_from_u64(9);
        let mut seen = HashSet::new();
        while seen.len() < n {
            let a = (1u128 << 125 | rng.gen::<u128>() >> 3) & mask(u128::MAX, 48);
            seen.insert((a, 48u8));
        }
        let mut v: Vec<_> = seen.into_iter().collect();
        v.sort_unstable();
        v
    }

    /// Groups of 256 four-byte entries a DIR-24-8-8-… table would allocate.
    fn dir_groups(table: &[(u128, u8)]) -> usize {
        let mut groups = HashSet::new();
        for &(a, l) in table {
            let mut b = 24;
            while b < l {
                groups.insert((mask(a, b), b));
                b += 8;
            }
        }
        groups.len()
    }

    #[test]
    #[ignore = "measurement; run in release"]
    fn measure() {
        const MIB: f64 = (1 << 20) as f64;
        let cases: Vec<(&str, Vec<(u128, u8)>)> = vec![
            ("synth 1k", synth::ipv6_table(1_000, 1)),
            ("synth 100k", synth::ipv6_table(100_000, 1)),
            ("synth 1M", synth::ipv6_table(1_000_000, 1)),
            ("random /48 1M", random_48s(1_000_000)),
        ];
        println!("direct bits {DIRECT_BITS}, max levels {MAX_LEVELS}");
        for (name, table) in cases {
            let start = Instant::now();
            let mut t = Lpm6::new();
            for (i, &(a, l)) in table.iter().enumerate() {
                t.insert(a, l, i as u32 & MAX_VALUE).unwrap();
            }
            let build = start.elapsed();
            let pages = t
                .direct
                .chunks(1024)
                .filter(|p| p.iter().any(|&e| e != 0))
                .count();
            let structure = pages * 4096 + t.structure_bytes();
            let addrs = synth::addresses_covered_v6(&table, 1 << 20, 2);
            let start = Instant::now();
            let mut acc = 0u32;
            for _ in 0..4 {
                for &a in &addrs {
                    acc ^= t.lookup(core::hint::black_box(a)).unwrap_or(0);
                }
            }
            let single = start.elapsed().as_nanos() as f64 / (4 * addrs.len()) as f64;
            let mut out = [None; 32];
            let start = Instant::now();
            for _ in 0..4 {
                for chunk in addrs.chunks(32) {
                    t.lookup_burst(core::hint::black_box(chunk), &mut out);
                    acc ^= out[0].unwrap_or(0);
                }
            }
            let burst = start.elapsed().as_nanos() as f64 / (4 * addrs.len()) as f64;
            println!(
                "{name:14} build {:6.0} ns/insert  nodes {:8}  structure {:7.1} MiB  +map {:7.1} MiB  \
                 DIR groups {:8.1} MiB  lookup {single:5.1} ns  burst {burst:5.1} ns  ({acc})",
                build.as_nanos() as f64 / table.len() as f64,
                t.node_count(),
                structure as f64 / MIB,
                (structure + t.prefixes.bytes()) as f64 / MIB,
                dir_groups(&table) as f64 / 1024.0,
            );
        }
    }
}
