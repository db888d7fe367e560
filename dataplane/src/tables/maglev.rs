//! Maglev consistent hashing: the lookup table that picks a service's endpoint
//! for a flow (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
//! Load Balancer", NSDI '16, §3.4 and Pseudocode 1).
//!
//! Contract:
//! * Built by the control plane from a service's backends, each a stable
//!   `key` (the endpoint's address and port as bytes), an integer `weight`
//!   and the caller's `id`. Immutable once built.
//! * Reads: a 32-bit flow hash.
//! * Returns: the `id` of the backend that owns slot `hash % M`, or `None`
//!   when the ring has no backend. One division-free modulo, two loads, no
//!   allocation, no panic, no loop.
//!
//! # Filling the table
//!
//! Each backend has a preference list, a permutation of the `M` slots (`M`
//! prime): `offset = h1(key) mod M`, `skip = h2(key) mod (M - 1) + 1`, and its
//! `j`-th preference is `(offset + j * skip) mod M`. Backends take turns; on
//! its turn a backend claims its most preferred slot that is still free, until
//! every slot is owned. With equal weights every backend takes one turn per
//! round (the paper's round robin), so each one owns `⌊M/N⌋` or `⌈M/N⌉`
//! slots.
//!
//! # Weights
//!
//! As Katran's `MaglevHashV2`: in every round each backend adds its weight to
//! a credit; a backend whose credit reaches the largest weight `w_max` spends
//! `w_max` of it and takes a turn. So backend `i` takes its `k`-th turn in
//! round `⌈k · w_max / w_i⌉`, turns within a round go in key order, and a
//! backend's share of the slots is its share of the total weight `W`: it owns
//! within `1 + N · w_i / W` slots of `M · w_i / W`. With equal weights this is
//! exactly the unweighted algorithm. Weight 0 keeps a backend out of the ring;
//! a backend whose share `M · w_i / W` is below one slot may own none.
//! (Katran's first version let a weight `w` take `w` turns in the first round
//! only, which barely changes the shares of a large table.)
//!
//! Turns are taken from a priority queue ordered by (round, key order), so a
//! build costs `O(M log N)` in queue operations even when the weights are
//! very unequal, plus the slot probes (about `M ln M` in all).
//!
//! # Disruption
//!
//! Removing a backend frees its slots, and the others' claims shift a little
//! as they take them, so a few slots change hands between backends that
//! stay. Measured with equal weights, the share of the slots of the
//! remaining backends that change owner when one backend is removed (adding
//! one is alike). At M = 65537, keys `10.0.0.0:8080` onwards, every backend
//! removed in turn:
//!
//! | N, M                 | mean  | worst |
//! |----------------------|-------|-------|
//! | 100, 65537           | 0.57% | 0.63% |
//! | 500, 65537           | 0.90% | 0.98% |
//! | 1000, 65537          | 0.60% | 0.66% |
//!
//! At `size_for(N)`, random 6-byte keys (the `disruption_report` test):
//!
//! | N, M                 | mean  | worst seen |
//! |----------------------|-------|------------|
//! | 10, 1021             | 2.8%  | 11%        |
//! | 20, 2039             | 2.5%  | 4.7%       |
//! | 50, 6143             | 1.9%  | 2.8%       |
//! | 100, 12281           | 1.5%  | 2.0%       |
//! | 200, 24571           | 1.4%  | 1.5%       |
//!
//! These are means and the worst of a few hundred sets; the tail is longer.
//! Over 40,000 random sets of 50–200 keys of 1–19 bytes, one in a thousand
//! moved more than 2.7% and the worst moved 4.9%.
//!
//! A few backends shuffle more (3 → 2 moved up to 11%, 2 → 3 up to 33%): the
//! paper's round robin is near-minimal only for many backends.
//!
//! # Determinism
//!
//! The table is a pure function of the set of `(key, weight, id)` and `M`:
//! backends are sorted by key bytes before anything else happens, and `h1` and
//! `h2` are SipHash-2-4 (Aumasson and Bernstein, the reference test vectors
//! are checked below) with the two fixed keys [`H1_KEY`] and [`H2_KEY`]. No
//! seed, no insertion order, no platform-dependent hash: every node computes
//! the same table, so nodes behind ECMP send a flow to the same endpoint.
//! Two backends with the same key are refused ([`MaglevError::DuplicateKey`]):
//! either choice of which one to keep would be arbitrary, so the caller
//! decides.
//!
//! # Table size
//!
//! [`MaglevRing::size_for`] picks the smallest prime in [`SIZES`] that is at
//! least `100 × N` (the paper's `M ≫ N`, which keeps the max/min share ratio at
//! or below 1.01) and at least 251. The primes are those just under `2^k` and
//! `1.5 × 2^k`, and 65537; the last, 4194301, is the cap:
//!
//! | backends      | M         | table bytes |
//! |---------------|-----------|-------------|
//! | 1–2           | 251       | 502         |
//! | 3             | 383       | 766         |
//! | 4–5           | 509       | 1018        |
//! | 6–7           | 761       | 1522        |
//! | 8–10          | 1021      | 2042        |
//! | 11–15         | 1531      | 3062        |
//! | 16–20         | 2039      | 4078        |
//! | 101–122       | 12281     | 24562       |
//! | 492–655       | 65537     | 131074      |
//! | 983–1310      | 131071    | 262142      |
//! | 31458–41943   | 4194301   | 8388602     |
//! | 41944–65535   | 4194301 (cap, M/N ≥ 64) | 8388602 |
//!
//! A service of 10 endpoints costs 2042 bytes of table, 40 bytes of ids and
//! the 48-byte ring itself: about 2.1 KB, so 100k such services take about
//! 213 MB. Rings depend on the endpoint set only, so services (and ports of a
//! service) with the same endpoints can share one ring through an `Arc`.
//!
//! `M` steps when `N` crosses a row of the table, and then the whole table is
//! reshuffled. It cannot step lazily (keep the old size while it still
//! fits) because that would make `M` depend on history, and nodes would
//! disagree. Established connections keep their endpoint through connection
//! tracking; only new flows, and flows arriving on a node that has no entry
//! for them, see the new table.
//!
//! # Entries
//!
//! Slots hold `u16` positions into the key-sorted list of backends, and a
//! separate array maps positions to the caller's `u32` ids. Versus storing
//! the ids in the slots this halves the table, which is what dominates the
//! memory of many small services, for one extra load from an array of `N`
//! entries that stays in L1 for a busy service. It limits a ring to
//! [`MAX_BACKENDS`] = 65535 backends of non-zero weight (`u16::MAX` marks a
//! free slot while the table is filled).

use core::fmt;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Table sizes that [`MaglevRing::size_for`] chooses from, increasing. All
/// prime.
pub const SIZES: [u32; 29] = [
    251, 383, 509, 761, 1021, 1531, 2039, 3067, 4093, 6143, 8191, 12281, 16381, 24571, 32749,
    49139, 65537, 98299, 131071, 196597, 262139, 393209, 524287, 786431, 1048573, 1572853, 2097143,
    3145721, 4194301,
];

/// The smallest table [`MaglevRing::size_for`] returns.
pub const MIN_SIZE: u32 = SIZES[0];
/// The largest table a ring may have, chosen or given (8 MiB of `u16`).
pub const MAX_SIZE: u32 = SIZES[SIZES.len() - 1];
/// How many slots per backend [`MaglevRing::size_for`] aims for.
pub const SLOTS_PER_BACKEND: usize = 100;
/// The most backends of non-zero weight a ring holds (positions are `u16`,
/// and `u16::MAX` is the free-slot marker).
pub const MAX_BACKENDS: usize = u16::MAX as usize;

/// SipHash-2-4 key for `h1`, which gives a backend's offset: the ASCII bytes
/// of `"sluice-maglev-h1"`.
pub const H1_KEY: [u8; 16] = *b"sluice-maglev-h1";
/// SipHash-2-4 key for `h2`, which gives a backend's skip: the ASCII bytes of
/// `"sluice-maglev-h2"`.
pub const H2_KEY: [u8; 16] = *b"sluice-maglev-h2";

/// Marks a free slot while the table is filled.
const FREE: u16 = u16::MAX;

/// One backend offered to [`MaglevRing::build`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend<'a> {
    /// What identifies the backend on every node: the endpoint's address
    /// and port as bytes (e.g. the 4 or 16 address bytes then the port in
    /// network order). Unique within a ring.
    pub key: &'a [u8],
    /// Relative share of the slots; 0 keeps the backend out of the ring.
    pub weight: u32,
    /// What [`MaglevRing::lookup`] returns for this backend.
    pub id: u32,
}

/// Why a ring was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaglevError {
    /// Two backends have the same key.
    DuplicateKey {
        key: Vec<u8>,
        /// Their positions in the slice given to [`MaglevRing::build`].
        first: usize,
        second: usize,
    },
    /// More than [`MAX_BACKENDS`] backends have a non-zero weight.
    TooManyBackends { count: usize },
    /// The table size given is not prime, so preference lists would not
    /// cover the table.
    SizeNotPrime { size: usize },
    /// The table size given is smaller than the number of backends, or than 2.
    SizeTooSmall { size: usize, min: usize },
    /// The table size given is larger than [`MAX_SIZE`].
    SizeTooLarge { size: usize },
}

impl fmt::Display for MaglevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaglevError::DuplicateKey { key, first, second } => {
                write!(f, "backend key ")?;
                for b in key {
                    write!(f, "{b:02x}")?;
                }
                write!(
                    f,
                    " is given twice (backends {first} and {second}): expected unique keys"
                )
            }
            MaglevError::TooManyBackends { count } => write!(
                f,
                "ring has {count} backends of non-zero weight: expected at most {MAX_BACKENDS}"
            ),
            MaglevError::SizeNotPrime { size } => {
                write!(f, "ring size {size} is invalid: expected a prime")
            }
            MaglevError::SizeTooSmall { size, min } => {
                write!(f, "ring size {size} is invalid: expected at least {min}")
            }
            MaglevError::SizeTooLarge { size } => {
                write!(
                    f,
                    "ring size {size} is invalid: expected at most {MAX_SIZE}"
                )
            }
        }
    }
}

impl std::error::Error for MaglevError {}

/// A Maglev lookup table. See the module documentation.
#[derive(Clone, PartialEq, Eq)]
pub struct MaglevRing {
    /// `size` entries, each a position in `ids`; empty for a ring without
    /// backends.
    slots: Box<[u16]>,
    /// The caller's ids of the backends in the ring, in key order.
    ids: Box<[u32]>,
    /// `M`; 0 for a ring without backends.
    size: u32,
    /// Lemire's constant for `hash % size` without a division.
    fastmod: u64,
}

impl MaglevRing {
    /// The table size for a ring of `endpoints` backends: the smallest prime
    /// in [`SIZES`] at least `100 × endpoints`, or [`MAX_SIZE`] beyond 41943
    /// endpoints.
    pub fn size_for(endpoints: usize) -> usize {
        let want = endpoints.saturating_mul(SLOTS_PER_BACKEND);
        SIZES
            .iter()
            .map(|&p| p as usize)
            .find(|&p| p >= want)
            .unwrap_or(MAX_SIZE as usize)
    }

    /// Builds the table for `backends` (in any order) with `size` slots, or
    /// with [`MaglevRing::size_for`] the number of backends of non-zero weight
    /// when `size` is `None`.
    ///
    /// A ring with no backend of non-zero weight is empty: it allocates no
    /// table, its [`size`](MaglevRing::size) is 0 and every lookup misses.
    pub fn build(backends: &[Backend<'_>], size: Option<usize>) -> Result<MaglevRing, MaglevError> {
        // Key order, with ties (duplicates) broken by position so that the
        // error names the same pair whatever the sort does.
        let mut order: Vec<usize> = (0..backends.len()).collect();
        order.sort_unstable_by(|&a, &b| backends[a].key.cmp(backends[b].key).then(a.cmp(&b)));
        if let Some(pair) = order
            .windows(2)
            .find(|w| backends[w[0]].key == backends[w[1]].key)
        {
            return Err(MaglevError::DuplicateKey {
                key: backends[pair[0]].key.to_vec(),
                first: pair[0],
                second: pair[1],
            });
        }
        let active: Vec<&Backend<'_>> = order
            .iter()
            .map(|&i| &backends[i])
            .filter(|b| b.weight > 0)
            .collect();
        if active.len() > MAX_BACKENDS {
            return Err(MaglevError::TooManyBackends {
                count: active.len(),
            });
        }
        let size = match size {
            Some(size) => {
                let min = active.len().max(2);
                if size < min {
                    return Err(MaglevError::SizeTooSmall { size, min });
                }
                if size > MAX_SIZE as usize {
                    return Err(MaglevError::SizeTooLarge { size });
                }
                if !is_prime(size as u32) {
                    return Err(MaglevError::SizeNotPrime { size });
                }
                size as u32
            }
            None => Self::size_for(active.len()) as u32,
        };
        if active.is_empty() {
            return Ok(MaglevRing::empty());
        }

        let preferences: Vec<(u32, u32)> = active.iter().map(|b| preference(b.key, size)).collect();
        let weights: Vec<u32> = active.iter().map(|b| b.weight).collect();
        Ok(MaglevRing {
            slots: populate(&preferences, &weights, size).into_boxed_slice(),
            ids: active.iter().map(|b| b.id).collect(),
            size,
            fastmod: fastmod_constant(size),
        })
    }

    /// A ring without backends.
    pub fn empty() -> MaglevRing {
        MaglevRing {
            slots: Box::new([]),
            ids: Box::new([]),
            size: 0,
            fastmod: 0,
        }
    }

    /// The id of the backend that owns the flow with this hash, or `None` when
    /// the ring has no backend.
    #[inline]
    pub fn lookup(&self, hash: u32) -> Option<u32> {
        // For an empty ring `fastmod` and `size` are 0, so the slot is 0 and
        // `get` misses.
        let slot = fastmod(hash, self.fastmod, self.size) as usize;
        let position = *self.slots.get(slot)?;
        self.ids.get(position as usize).copied()
    }

    /// The position (in [`ids`](MaglevRing::ids) order) of the backend
    /// that owns the flow with this hash: [`lookup`](MaglevRing::lookup)
    /// without reading the ids, for callers that keep their backends in
    /// that order.
    #[inline]
    pub fn lookup_position(&self, hash: u32) -> Option<u16> {
        let slot = fastmod(hash, self.fastmod, self.size) as usize;
        self.slots.get(slot).copied()
    }

    /// [`lookup`](MaglevRing::lookup) for each of `hashes`, into the front of
    /// `out` (as many as the shorter of the two holds).
    #[inline]
    pub fn lookup_burst(&self, hashes: &[u32], out: &mut [Option<u32>]) {
        for (o, &h) in out.iter_mut().zip(hashes) {
            *o = self.lookup(h);
        }
    }

    /// How many backends own slots or could (those of non-zero weight).
    #[inline]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// `M`, the number of slots; 0 for an empty ring.
    #[inline]
    pub fn size(&self) -> usize {
        self.size as usize
    }

    /// The ids of the backends in the ring, in key order.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Bytes the ring holds, itself included.
    pub fn memory_bytes(&self) -> usize {
        core::mem::size_of::<Self>()
            + core::mem::size_of_val::<[u16]>(&self.slots)
            + core::mem::size_of_val::<[u32]>(&self.ids)
    }
}

impl Default for MaglevRing {
    fn default() -> Self {
        MaglevRing::empty()
    }
}

impl fmt::Debug for MaglevRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaglevRing")
            .field("backends", &self.ids.len())
            .field("size", &self.size)
            .finish()
    }
}

/// A backend's `(offset, skip)` in a table of `size` slots (prime, ≥ 2).
fn preference(key: &[u8], size: u32) -> (u32, u32) {
    let m = u64::from(size);
    let offset = siphash24(&H1_KEY, key) % m;
    let skip = siphash24(&H2_KEY, key) % (m - 1) + 1;
    (offset as u32, skip as u32)
}

/// Pseudocode 1 with weighted turns: `preferences[i]` and `weights[i]` (all
/// non-zero) belong to the backend at position `i`, in key order. Returns
/// each slot's owner position. `size` is prime and `preferences` not empty.
fn populate(preferences: &[(u32, u32)], weights: &[u32], size: u32) -> Vec<u16> {
    let mut slots = vec![FREE; size as usize];
    // The next slot each backend would try: its `next[i]`-th preference.
    let mut cursor: Vec<u32> = preferences.iter().map(|&(offset, _)| offset).collect();
    let mut claim = |i: usize, slots: &mut [u16]| {
        let skip = preferences[i].1;
        let mut c = cursor[i];
        // Ends: a free slot exists (the caller stops once all are owned) and
        // with `size` prime the preferences visit every slot.
        while slots[c as usize] != FREE {
            c += skip;
            if c >= size {
                c -= size;
            }
        }
        slots[c as usize] = i as u16;
        c += skip;
        if c >= size {
            c -= size;
        }
        cursor[i] = c;
    };

    let max_weight = weights.iter().copied().max().unwrap_or(1);
    if weights.iter().all(|&w| w == max_weight) {
        // Every backend takes a turn in every round.
        let mut filled = 0;
        loop {
            for i in 0..preferences.len() {
                claim(i, &mut slots);
                filled += 1;
                if filled == size {
                    return slots;
                }
            }
        }
    }

    // Backend `i`'s `k`-th turn comes in round `⌈k · w_max / w_i⌉`; ties go
    // in key order. This is the order Katran's credit loop produces, without
    // visiting the rounds in which only a few backends have a turn.
    let turn_round = |k: u64, w: u32| (k * u64::from(max_weight)).div_ceil(u64::from(w));
    let mut turns_taken = vec![0u64; preferences.len()];
    let mut queue: BinaryHeap<Reverse<(u64, u32)>> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Reverse((turn_round(1, w), i as u32)))
        .collect();
    for _ in 0..size {
        let Some(Reverse((_, i))) = queue.pop() else {
            break;
        };
        let i = i as usize;
        claim(i, &mut slots);
        turns_taken[i] += 1;
        queue.push(Reverse((
            turn_round(turns_taken[i] + 1, weights[i]),
            i as u32,
        )));
    }
    slots
}

/// Lemire, Kaser and Kurz, "Faster remainder by direct computation" (2019):
/// `a % d` for any 32-bit `a` and `d ≥ 1` from `c = ⌊(2^64 - 1) / d⌋ + 1`.
fn fastmod_constant(d: u32) -> u64 {
    (u64::MAX / u64::from(d)).wrapping_add(1)
}

#[inline(always)]
fn fastmod(a: u32, c: u64, d: u32) -> u32 {
    let low = c.wrapping_mul(u64::from(a));
    ((u128::from(low) * u128::from(d)) >> 64) as u32
}

fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 2u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

/// SipHash-2-4 of `data` under the 128-bit `key` (the key's first 8 bytes are
/// `k0`, little-endian), as in the reference implementation.
pub fn siphash24(key: &[u8; 16], data: &[u8]) -> u64 {
    let mut k = [0u8; 8];
    k.copy_from_slice(&key[..8]);
    let k0 = u64::from_le_bytes(k);
    k.copy_from_slice(&key[8..]);
    let k1 = u64::from_le_bytes(k);
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        k.copy_from_slice(word);
        let m = u64::from_le_bytes(k);
        v[3] ^= m;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= m;
    }
    let mut last = (data.len() as u64) << 56;
    for (i, &b) in words.remainder().iter().enumerate() {
        last |= u64::from(b) << (8 * i);
    }
    v[3] ^= last;
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^= last;
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::SmallRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    /// `10.x.y.z:8080` for endpoint `n`, as address then port bytes.
    fn endpoint_key(n: u32) -> Vec<u8> {
        let mut key = (0x0a00_0000 | n).to_be_bytes().to_vec();
        key.extend_from_slice(&8080u16.to_be_bytes());
        key
    }

    fn keys(n: u32) -> Vec<Vec<u8>> {
        (0..n).map(endpoint_key).collect()
    }

    /// Backends over `keys`, all of weight 1, with `id` = position in `keys`.
    fn equal(keys: &[Vec<u8>]) -> Vec<Backend<'_>> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| Backend {
                key: k,
                weight: 1,
                id: i as u32,
            })
            .collect()
    }

    /// Each slot's owner id.
    fn owners(ring: &MaglevRing) -> Vec<u32> {
        ring.slots.iter().map(|&p| ring.ids[p as usize]).collect()
    }

    /// Slots owned per id, for ids below `n`.
    fn shares(ring: &MaglevRing, n: usize) -> Vec<usize> {
        let mut count = vec![0; n];
        for id in owners(ring) {
            count[id as usize] += 1;
        }
        count
    }

    /// Of the slots not owned by `moved` in `before` (or in `after`), the
    /// fraction whose owner differs between the two.
    fn disruption(before: &[u32], after: &[u32], moved: u32) -> f64 {
        let (mut kept, mut changed) = (0usize, 0usize);
        for (&b, &a) in before.iter().zip(after) {
            if b == moved || a == moved {
                continue;
            }
            kept += 1;
            if a != b {
                changed += 1;
            }
        }
        changed as f64 / kept as f64
    }

    #[test]
    fn siphash_matches_the_reference_vectors() {
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let msg: Vec<u8> = (0..64).collect();
        // vectors_sip64[0], [1], [7], [8] and [15] of the reference
        // implementation (the last is the paper's worked example).
        assert_eq!(siphash24(&key, &msg[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(&key, &msg[..1]), 0x74f8_39c5_93dc_67fd);
        assert_eq!(siphash24(&key, &msg[..7]), 0xab02_00f5_8b01_d137);
        assert_eq!(siphash24(&key, &msg[..8]), 0x93f5_f579_9a93_2462);
        assert_eq!(siphash24(&key, &msg[..15]), 0xa129_ca61_49be_45e5);
    }

    #[test]
    #[allow(deprecated)]
    fn siphash_matches_the_standard_library() {
        use core::hash::Hasher;
        // std's (deprecated) SipHasher is SipHash-2-4; `write` then
        // `finish` hashes the bytes alone.
        let msg: Vec<u8> = (0..=255u8).rev().collect();
        for key in [H1_KEY, H2_KEY] {
            let mut k = [0u8; 8];
            k.copy_from_slice(&key[..8]);
            let k0 = u64::from_le_bytes(k);
            k.copy_from_slice(&key[8..]);
            let k1 = u64::from_le_bytes(k);
            for len in 0..=msg.len() {
                let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
                h.write(&msg[..len]);
                assert_eq!(siphash24(&key, &msg[..len]), h.finish(), "length {len}");
            }
        }
    }

    #[test]
    fn fastmod_is_the_remainder() {
        let mut rng = SmallRng::seed_from_u64(1);
        for d in SIZES.iter().copied().chain([1, 2, 3, 7, u32::MAX]) {
            let c = fastmod_constant(d);
            for a in [0, 1, d - 1, d, d.wrapping_add(1), u32::MAX, u32::MAX - 1] {
                assert_eq!(fastmod(a, c, d), a % d, "{a} % {d}");
            }
            for _ in 0..10_000 {
                let a: u32 = rng.gen();
                assert_eq!(fastmod(a, c, d), a % d, "{a} % {d}");
            }
        }
    }

    #[test]
    fn sizes_are_increasing_primes() {
        assert!(SIZES.windows(2).all(|w| w[0] < w[1]));
        for p in SIZES {
            assert!(is_prime(p), "{p}");
        }
        assert!(!is_prime(0) && !is_prime(1) && !is_prime(65535) && !is_prime(1 << 20));
    }

    #[test]
    fn size_for_follows_the_table() {
        let cases = [
            (0, 251),
            (1, 251),
            (2, 251),
            (3, 383),
            (5, 509),
            (8, 1021),
            (10, 1021),
            (11, 1531),
            (100, 12281),
            (122, 12281),
            (491, 49139),
            (492, 65537),
            (655, 65537),
            (656, 98299),
            (1000, 131071),
            (1310, 131071),
            (41943, 4194301),
            (41944, 4194301),
            (65535, 4194301),
            (usize::MAX, 4194301),
        ];
        for (n, m) in cases {
            assert_eq!(MaglevRing::size_for(n), m, "{n} endpoints");
        }
        for n in 1..=41943 {
            let m = MaglevRing::size_for(n);
            assert!(m >= 100 * n, "{n} endpoints");
        }
    }

    #[test]
    fn memory_of_a_ten_endpoint_service() {
        let k = keys(10);
        let ring = MaglevRing::build(&equal(&k), None).unwrap();
        assert_eq!(ring.size(), 1021);
        assert_eq!(core::mem::size_of::<MaglevRing>(), 48);
        assert_eq!(ring.memory_bytes(), 48 + 2 * 1021 + 4 * 10);
    }

    /// Table 1 of the paper: three backends, M = 7.
    #[test]
    fn populate_reproduces_the_paper_example() {
        let preferences = [(3, 4), (0, 2), (3, 1)];
        assert_eq!(populate(&preferences, &[1, 1, 1], 7), [1, 0, 1, 0, 2, 2, 0]);
        // Scaling every weight changes nothing.
        assert_eq!(populate(&preferences, &[5, 5, 5], 7), [1, 0, 1, 0, 2, 2, 0]);
    }

    /// Pins the table, so that a change of hash, key order or fill order
    /// (which would break agreement with nodes running another version) fails
    /// here.
    #[test]
    fn golden_ring() {
        let k = keys(3);
        let ring = MaglevRing::build(&equal(&k), None).unwrap();
        assert_eq!(ring.size(), 383);
        assert_eq!(
            preference(&k[0], 383),
            GOLDEN_PREFERENCE_0,
            "h1/h2 of 10.0.0.0:8080"
        );
        assert_eq!(owners(&ring)[..24], GOLDEN_FIRST_SLOTS);
        assert_eq!(shares(&ring, 3), [128, 128, 127]);
    }
    /// Prints disruption over random key sets at `size_for(N)` (the numbers in
    /// the module documentation): `cargo test --lib maglev::tests::disruption_report
    /// -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn disruption_report() {
        let mut rng = SmallRng::seed_from_u64(99);
        for (n, trials) in [
            (2usize, 400),
            (3, 400),
            (5, 400),
            (10, 400),
            (20, 300),
            (50, 200),
            (100, 100),
            (200, 50),
        ] {
            let mut rem = vec![];
            let mut add = vec![];
            for _ in 0..trials {
                let mut set = std::collections::HashSet::new();
                while set.len() < n + 1 {
                    let k: Vec<u8> = (0..6).map(|_| rng.gen()).collect();
                    set.insert(k);
                }
                let k: Vec<Vec<u8>> = set.into_iter().collect();
                let m = MaglevRing::size_for(n);
                let before = owners(&MaglevRing::build(&equal(&k[..n]), Some(m)).unwrap());
                let r = rng.gen_range(0..n) as u32;
                let mut b = equal(&k[..n]);
                b.retain(|x| x.id != r);
                let after = owners(&MaglevRing::build(&b, Some(m)).unwrap());
                rem.push(disruption(&before, &after, r));
                let added = owners(&MaglevRing::build(&equal(&k), Some(m)).unwrap());
                add.push(disruption(&before, &added, n as u32));
            }
            rem.sort_by(|a, b| a.partial_cmp(b).unwrap());
            add.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let mean = |v: &[f64]| 100.0 * v.iter().sum::<f64>() / v.len() as f64;
            println!("N={n} M={} remove mean {:.2}% p99 {:.2}% max {:.2}% | add mean {:.2}% p99 {:.2}% max {:.2}%",
                MaglevRing::size_for(n), mean(&rem), 100.0*rem[rem.len()*99/100], 100.0*rem[rem.len()-1],
                mean(&add), 100.0*add[add.len()*99/100], 100.0*add[add.len()-1]);
        }
    }
    const GOLDEN_PREFERENCE_0: (u32, u32) = (355, 297);
    const GOLDEN_FIRST_SLOTS: [u32; 24] = [
        0, 0, 1, 0, 1, 2, 2, 1, 1, 0, 0, 0, 1, 1, 2, 2, 2, 1, 0, 2, 2, 2, 2, 1,
    ];

    /// Removing any one of 100 backends at M = 65537 moves at most 1% of the
    /// slots it did not own (measured: 0.57% on average, 0.63% at most), and
    /// adding a 101st moves at most 1% of the slots it does not take (0.55%).
    #[test]
    fn removing_or_adding_one_of_100_at_65537() {
        let k = keys(101);
        let before = owners(&MaglevRing::build(&equal(&k[..100]), Some(65537)).unwrap());
        for r in 0..100 {
            let mut b = equal(&k[..100]);
            b.retain(|x| x.id != r);
            let after = owners(&MaglevRing::build(&b, Some(65537)).unwrap());
            assert!(after.iter().all(|&id| id != r));
            let d = disruption(&before, &after, r);
            assert!(d <= 0.01, "removing {r} moved {:.3}%", 100.0 * d);
        }
        let after = owners(&MaglevRing::build(&equal(&k), Some(65537)).unwrap());
        let taken = after.iter().filter(|&&id| id == 100).count();
        assert!(taken == 65537 / 101 || taken == 65537usize.div_ceil(101));
        let d = disruption(&before, &after, 100);
        assert!(d <= 0.01, "adding moved {:.3}%", 100.0 * d);
    }

    #[test]
    fn no_backends() {
        let ring = MaglevRing::build(&[], None).unwrap();
        assert!(ring.is_empty());
        assert_eq!((ring.len(), ring.size()), (0, 0));
        assert_eq!(ring.memory_bytes(), core::mem::size_of::<MaglevRing>());
        for h in [0, 1, 250, 251, u32::MAX] {
            assert_eq!(ring.lookup(h), None);
        }
        assert_eq!(ring, MaglevRing::empty());
        assert_eq!(ring, MaglevRing::default());
    }

    #[test]
    fn all_weights_zero() {
        let k = keys(4);
        let mut backends = equal(&k);
        for b in &mut backends {
            b.weight = 0;
        }
        let ring = MaglevRing::build(&backends, None).unwrap();
        assert_eq!(ring, MaglevRing::empty());
        assert_eq!(ring.lookup(12345), None);
        // A size given is still checked.
        assert_eq!(
            MaglevRing::build(&backends, Some(100)),
            Err(MaglevError::SizeNotPrime { size: 100 })
        );
    }

    #[test]
    fn one_backend_owns_everything() {
        let k = keys(1);
        let backends = [Backend {
            key: &k[0],
            weight: 3,
            id: 77,
        }];
        let ring = MaglevRing::build(&backends, None).unwrap();
        assert_eq!((ring.len(), ring.size()), (1, 251));
        assert!(owners(&ring).iter().all(|&id| id == 77));
        for h in [0, 1, 250, 251, u32::MAX] {
            assert_eq!(ring.lookup(h), Some(77));
        }
    }

    #[test]
    fn zero_weight_backends_are_left_out() {
        let k = keys(5);
        let mut backends = equal(&k);
        backends[1].weight = 0;
        backends[3].weight = 0;
        let ring = MaglevRing::build(&backends, None).unwrap();
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.ids(), [0, 2, 4]);
        assert!(owners(&ring).iter().all(|&id| id != 1 && id != 3));
        // The same as a ring built without them.
        let without: Vec<_> = backends.iter().copied().filter(|b| b.weight > 0).collect();
        assert_eq!(ring, MaglevRing::build(&without, None).unwrap());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let k = keys(4);
        let mut backends = equal(&k);
        backends.push(Backend {
            key: &k[2],
            weight: 0,
            id: 9,
        });
        let err = MaglevRing::build(&backends, None).unwrap_err();
        assert_eq!(
            err,
            MaglevError::DuplicateKey {
                key: k[2].clone(),
                first: 2,
                second: 4
            }
        );
        assert_eq!(
            err.to_string(),
            "backend key 0a0000021f90 is given twice (backends 2 and 4): expected unique keys"
        );
    }

    #[test]
    fn sizes_given_are_checked() {
        let k = keys(3);
        let b = equal(&k);
        let built = |size| MaglevRing::build(&b, Some(size)).map(|r| r.size());
        assert_eq!(built(7), Ok(7));
        assert_eq!(built(65537), Ok(65537));
        assert_eq!(built(2), Err(MaglevError::SizeTooSmall { size: 2, min: 3 }));
        assert_eq!(built(9), Err(MaglevError::SizeNotPrime { size: 9 }));
        assert_eq!(
            built(4194319),
            Err(MaglevError::SizeTooLarge { size: 4194319 })
        );
        assert_eq!(MaglevRing::build(&b[..1], Some(2)).map(|r| r.size()), Ok(2));
        assert_eq!(
            MaglevRing::build(&b[..1], Some(1)).map(|r| r.size()),
            Err(MaglevError::SizeTooSmall { size: 1, min: 2 })
        );
    }

    #[test]
    fn lookup_reads_the_slot_of_hash_mod_size() {
        let k = keys(10);
        let ring = MaglevRing::build(&equal(&k), None).unwrap();
        let owner = owners(&ring);
        let mut rng = SmallRng::seed_from_u64(2);
        let hashes: Vec<u32> = (0..4096).map(|_| rng.gen()).collect();
        for &h in &hashes {
            assert_eq!(ring.lookup(h), Some(owner[(h % 1021) as usize]));
        }
        let mut out = vec![None; 4096];
        ring.lookup_burst(&hashes, &mut out);
        for (&h, &o) in hashes.iter().zip(&out) {
            assert_eq!(o, ring.lookup(h));
        }
    }

    #[test]
    fn input_order_does_not_matter() {
        let k = keys(200);
        let mut backends = equal(&k);
        for (i, b) in backends.iter_mut().enumerate() {
            b.weight = 1 + (i as u32 % 4);
        }
        let reference = MaglevRing::build(&backends, None).unwrap();
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..5 {
            backends.shuffle(&mut rng);
            assert!(reference == MaglevRing::build(&backends, None).unwrap());
        }
        backends.reverse();
        assert!(reference == MaglevRing::build(&backends, None).unwrap());
    }

    /// With equal weights and `M ≥ 100 N` every backend owns `⌊M/N⌋` or
    /// `⌈M/N⌉` slots, so the max/min ratio is at most 101/100.
    #[test]
    fn equal_weights_balance_at_65537() {
        for n in [100, 200, 300, 400, 500, 600, 650, 655] {
            let k = keys(n);
            let ring = MaglevRing::build(&equal(&k), Some(65537)).unwrap();
            let s = shares(&ring, n as usize);
            let (lo, hi) = (65537 / n as usize, 65537usize.div_ceil(n as usize));
            assert!(s.iter().all(|&c| c == lo || c == hi), "N = {n}");
            let (min, max) = (s.iter().min().unwrap(), s.iter().max().unwrap());
            assert!(*max as f64 / *min as f64 <= 1.01, "N = {n}");
        }
    }

    /// The paper's N = 1000 at M = 65537 (M/N = 65.5): every share within 1%
    /// of M/N, max/min at most 66/65.
    #[test]
    fn equal_weights_balance_of_1000_at_65537() {
        let k = keys(1000);
        let ring = MaglevRing::build(&equal(&k), Some(65537)).unwrap();
        let s = shares(&ring, 1000);
        let mean = 65537.0 / 1000.0;
        for &c in &s {
            assert!((c as f64 - mean).abs() / mean <= 0.01, "{c} slots");
        }
        let (min, max) = (s.iter().min().unwrap(), s.iter().max().unwrap());
        assert_eq!((*min, *max), (65, 66));
    }

    /// Katran's credit loop (`MaglevHashV2::generateHashRing`), transcribed,
    /// as the reference for the priority-queue order of turns.
    fn populate_by_credit(preferences: &[(u32, u32)], weights: &[u32], size: u32) -> Vec<u16> {
        let mut slots = vec![FREE; size as usize];
        let mut next = vec![0u64; preferences.len()];
        let mut credit = vec![0u64; preferences.len()];
        let max_weight = u64::from(*weights.iter().max().unwrap());
        let mut filled = 0;
        loop {
            for (i, &(offset, skip)) in preferences.iter().enumerate() {
                credit[i] += u64::from(weights[i]);
                if credit[i] < max_weight {
                    continue;
                }
                credit[i] -= max_weight;
                let at =
                    |j: u64| ((u64::from(offset) + j * u64::from(skip)) % u64::from(size)) as usize;
                while slots[at(next[i])] != FREE {
                    next[i] += 1;
                }
                slots[at(next[i])] = i as u16;
                next[i] += 1;
                filled += 1;
                if filled == size {
                    return slots;
                }
            }
        }
    }

    fn distinct_keys(range: core::ops::Range<usize>) -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::hash_set(prop::collection::vec(any::<u8>(), 1..20), range).prop_map(
            |set| {
                let mut v: Vec<_> = set.into_iter().collect();
                v.sort();
                v
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn turns_follow_katrans_credit_loop(
            backends in prop::collection::vec((0u32..1 << 20, 1u32..1 << 20, 1u32..40), 1..40),
            size in prop::sample::select(&SIZES[..8]),
        ) {
            let preferences: Vec<(u32, u32)> = backends
                .iter()
                .map(|&(o, s, _)| (o % size, s % (size - 1) + 1))
                .collect();
            let weights: Vec<u32> = backends.iter().map(|b| b.2).collect();
            prop_assert_eq!(
                populate(&preferences, &weights, size),
                populate_by_credit(&preferences, &weights, size)
            );
        }

        #[test]
        fn permuting_the_input_changes_nothing(
            keys in distinct_keys(1..60),
            weights in prop::collection::vec(0u32..5, 60),
            seed in any::<u64>(),
        ) {
            let mut backends: Vec<Backend<'_>> = keys
                .iter()
                .zip(&weights)
                .enumerate()
                .map(|(i, (k, &w))| Backend { key: k, weight: w, id: i as u32 })
                .collect();
            let reference = MaglevRing::build(&backends, None).unwrap();
            backends.shuffle(&mut SmallRng::seed_from_u64(seed));
            prop_assert!(reference == MaglevRing::build(&backends, None).unwrap());
        }

        /// Equal weights at `size_for(N)`: shares are `⌊M/N⌋` or `⌈M/N⌉`.
        #[test]
        fn equal_weights_balance(keys in distinct_keys(1..700)) {
            let n = keys.len();
            let ring = MaglevRing::build(&equal(&keys), None).unwrap();
            let m = ring.size();
            let s = shares(&ring, n);
            prop_assert!(s.iter().all(|&c| c == m / n || c == m.div_ceil(n)));
            let (min, max) = (*s.iter().min().unwrap(), *s.iter().max().unwrap());
            prop_assert!(max as f64 / min as f64 <= 1.01);
        }

        /// Each backend owns within `1 + N · w / W` slots of `M · w / W`.
        #[test]
        fn weighted_shares_follow_weights(
            keys in distinct_keys(2..200),
            weights in prop::collection::vec(prop_oneof![1 => Just(0u32), 9 => 1u32..=10], 200),
        ) {
            let backends: Vec<Backend<'_>> = keys
                .iter()
                .zip(&weights)
                .enumerate()
                .map(|(i, (k, &w))| Backend { key: k, weight: w, id: i as u32 })
                .collect();
            let ring = MaglevRing::build(&backends, None).unwrap();
            let active: Vec<&Backend<'_>> = backends.iter().filter(|b| b.weight > 0).collect();
            prop_assume!(!active.is_empty());
            let n = active.len() as f64;
            let total: f64 = active.iter().map(|b| f64::from(b.weight)).sum();
            let m = ring.size() as f64;
            let s = shares(&ring, backends.len());
            for b in &backends {
                let got = s[b.id as usize] as f64;
                if b.weight == 0 {
                    prop_assert_eq!(got, 0.0);
                    continue;
                }
                let w = f64::from(b.weight) / total;
                prop_assert!((got - m * w).abs() <= 1.0 + n * w + 1e-9,
                    "weight {} owns {} slots, expected {:.1}", b.weight, got, m * w);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 64,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x6d61_676c_6576),
            ..ProptestConfig::default()
        })]

        /// At `size_for(N)` and 50 ≤ N ≤ 200, removing or adding one backend
        /// moves at most 6% of the other slots. Disruption is a distribution,
        /// not a hard bound: over 40,000 random key sets the mean is 1.4–1.9%,
        /// one in a thousand exceeds 2.7% and the worst seen is 4.9% (at
        /// N ≈ 50). The cases come from a fixed seed so that a tail draw
        /// cannot make the suite flaky.
        #[test]
        fn removing_or_adding_one_moves_few_others(
            keys in distinct_keys(51..202),
            removed in any::<prop::sample::Index>(),
        ) {
            let n = keys.len() - 1;
            let m = MaglevRing::size_for(n);
            let base = equal(&keys[..n]);
            let before = owners(&MaglevRing::build(&base, Some(m)).unwrap());
            let r = removed.index(n) as u32;
            let fewer: Vec<_> = base.iter().copied().filter(|b| b.id != r).collect();
            let after = owners(&MaglevRing::build(&fewer, Some(m)).unwrap());
            let d = disruption(&before, &after, r);
            prop_assert!(d <= 0.06, "removing one of {} moved {:.2}%", n, 100.0 * d);
            let after = owners(&MaglevRing::build(&equal(&keys), Some(m)).unwrap());
            let d = disruption(&before, &after, n as u32);
            prop_assert!(d <= 0.06, "adding one to {} moved {:.2}%", n, 100.0 * d);
        }
    }
}
