//! Deterministic synthetic route tables and traffic for benches, the perf
//! harness and tests.
//!
//! The tables imitate the shape of today's Internet routing tables, because
//! that shape decides how LPM structures perform: how many `tbl8` groups or
//! trie nodes exist, how clustered they are, how many pages are touched.
//!
//! * IPv4: ~60% /24, ~21% /22–/23, ~15% /16–/21, under 1% shorter, ~1.5%
//!   longer than /24. Only public unicast space (no 0/8, 10/8, 127/8,
//!   RFC 1918, link-local, documentation, benchmarking, multicast or class E).
//!   About a third of the /17–/32 routes are more-specifics of a shorter route
//!   in the table, as in real tables where deaggregation is common.
//! * IPv6: inside 2000::/3, in the regional registries' blocks (2001::/16,
//!   2400::/12, 2600::/12, 2800::/12, 2a00::/12, 2c00::/12). ~45% /48,
//!   ~9% /32, then /44, /40, /36, /29, /56–/64 and a few other lengths.
//!   Longer prefixes are mostly carved out of shorter ones in the table
//!   (assignments inside allocations), which clusters them as in reality.
//!
//! Same `(n, seed)`, same table: generation uses `SmallRng::seed_from_u64`
//! only. Prefixes are unique and returned masked, in generation order.
//! Sizes up to a few million routes are practical.

use hashbrown::HashSet;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// `(prefix length, relative weight)` for IPv4 routes.
const IPV4_LENGTHS: &[(u8, u32)] = &[
    (8, 2),
    (9, 1),
    (10, 2),
    (11, 4),
    (12, 8),
    (13, 12),
    (14, 20),
    (15, 30),
    (16, 130),
    (17, 90),
    (18, 150),
    (19, 300),
    (20, 400),
    (21, 450),
    (22, 1100),
    (23, 1000),
    (24, 6000),
    (25, 30),
    (26, 30),
    (27, 25),
    (28, 25),
    (29, 20),
    (30, 10),
    (31, 5),
    (32, 5),
];

/// Blocks that carry no public unicast routes.
const IPV4_RESERVED: &[(u32, u8)] = &[
    (0x0000_0000, 8),  // "this network"
    (0x0a00_0000, 8),  // private
    (0x6440_0000, 10), // shared address space
    (0x7f00_0000, 8),  // loopback
    (0xa9fe_0000, 16), // link-local
    (0xac10_0000, 12), // private
    (0xc000_0000, 24), // IETF protocol assignments
    (0xc000_0200, 24), // documentation
    (0xc0a8_0000, 16), // private
    (0xc612_0000, 15), // benchmarking
    (0xc633_6400, 24), // documentation
    (0xcb00_7100, 24), // documentation
    (0xe000_0000, 3),  // multicast, class E, broadcast
];

/// `(prefix length, relative weight)` for IPv6 routes.
const IPV6_LENGTHS: &[(u8, u32)] = &[
    (29, 5),
    (30, 1),
    (31, 1),
    (32, 10),
    (33, 1),
    (34, 1),
    (35, 1),
    (36, 6),
    (38, 1),
    (40, 9),
    (42, 1),
    (44, 10),
    (46, 1),
    (47, 1),
    (48, 50),
    (52, 1),
    (56, 6),
    (60, 1),
    (64, 5),
];

/// Regional registry blocks `(prefix, length, relative weight)`.
const IPV6_POOLS: &[(u128, u8, u32)] = &[
    (0x2001 << 112, 16, 5),
    (0x2400 << 112, 12, 25),
    (0x2600 << 112, 12, 27),
    (0x2800 << 112, 12, 8),
    (0x2a00 << 112, 12, 33),
    (0x2c00 << 112, 12, 2),
];

/// A synthetic IPv4 routing table of `n` unique masked prefixes.
pub fn ipv4_table(n: usize, seed: u64) -> Vec<(u32, u8)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut seen = HashSet::with_capacity(n);
    let mut table = Vec::with_capacity(n);
    // Routes that more-specifics may be carved from.
    let mut aggregates: Vec<(u32, u8)> = Vec::new();
    while table.len() < n {
        let len = weighted(&mut rng, IPV4_LENGTHS);
        let mut addr = rng.gen::<u32>();
        if len > 16 && !aggregates.is_empty() && rng.gen_bool(0.35) {
            for _ in 0..8 {
                let (parent, parent_len) = aggregates[rng.gen_range(0..aggregates.len())];
                if parent_len < len {
                    addr = parent | (addr & !mask32(parent_len));
                    break;
                }
            }
        }
        let addr = addr & mask32(len);
        if IPV4_RESERVED
            .iter()
            .any(|&(r, rl)| overlaps32(addr, len, r, rl))
        {
            continue;
        }
        if !seen.insert((addr, len)) {
            continue;
        }
        if len <= 22 {
            aggregates.push((addr, len));
        }
        table.push((addr, len));
    }
    table
}

/// A synthetic IPv6 routing table of `n` unique masked prefixes.
pub fn ipv6_table(n: usize, seed: u64) -> Vec<(u128, u8)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut seen = HashSet::with_capacity(n);
    let mut table = Vec::with_capacity(n);
    // Routes that longer ones may be carved from (allocations, sub-allocations
    // and end-site assignments).
    let mut aggregates: Vec<(u128, u8)> = Vec::new();
    let pool_weights: Vec<(usize, u32)> = IPV6_POOLS
        .iter()
        .enumerate()
        .map(|(i, p)| (i, p.2))
        .collect();
    while table.len() < n {
        let len = weighted(&mut rng, IPV6_LENGTHS);
        let nest_probability = match len {
            0..=32 => 0.0,
            33..=48 => 0.6,
            _ => 0.9,
        };
        let mut addr = None;
        if !aggregates.is_empty() && rng.gen_bool(nest_probability) {
            for _ in 0..8 {
                let (parent, parent_len) = aggregates[rng.gen_range(0..aggregates.len())];
                if parent_len < len {
                    addr = Some(parent | (rng.gen::<u128>() & !mask128(parent_len)));
                    break;
                }
            }
        }
        let addr = addr.unwrap_or_else(|| {
            let (pool, pool_len, _) = IPV6_POOLS[weighted(&mut rng, &pool_weights)];
            pool | (rng.gen::<u128>() & !mask128(pool_len))
        }) & mask128(len);
        if !seen.insert((addr, len)) {
            continue;
        }
        if len <= 48 {
            aggregates.push((addr, len));
        }
        table.push((addr, len));
    }
    table
}

/// `count` addresses, each inside a prefix of `table` picked at random (so
/// every lookup finds a route, as real traffic mostly does). Empty when the
/// table is.
pub fn addresses_covered_v4(table: &[(u32, u8)], count: usize, seed: u64) -> Vec<u32> {
    if table.is_empty() {
        return Vec::new();
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let (addr, len) = table[rng.gen_range(0..table.len())];
            (addr & mask32(len)) | (rng.gen::<u32>() & !mask32(len))
        })
        .collect()
}

/// The IPv6 twin of [`addresses_covered_v4`].
pub fn addresses_covered_v6(table: &[(u128, u8)], count: usize, seed: u64) -> Vec<u128> {
    if table.is_empty() {
        return Vec::new();
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let (addr, len) = table[rng.gen_range(0..table.len())];
            (addr & mask128(len)) | (rng.gen::<u128>() & !mask128(len))
        })
        .collect()
}

fn weighted<T: Copy>(rng: &mut SmallRng, choices: &[(T, u32)]) -> T {
    let total: u32 = choices.iter().map(|c| c.1).sum();
    let mut pick = rng.gen_range(0..total);
    for &(choice, weight) in choices {
        if pick < weight {
            return choice;
        }
        pick -= weight;
    }
    choices[choices.len() - 1].0
}

fn mask32(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

fn overlaps32(a: u32, a_len: u8, b: u32, b_len: u8) -> bool {
    let m = mask32(a_len.min(b_len));
    a & m == b & m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share<T: Copy>(table: &[(T, u8)], lens: impl Fn(u8) -> bool) -> f64 {
        table.iter().filter(|p| lens(p.1)).count() as f64 / table.len() as f64
    }

    #[test]
    fn ipv4_is_deterministic_unique_and_shaped() {
        let t = ipv4_table(20_000, 7);
        assert_eq!(t, ipv4_table(20_000, 7));
        assert_ne!(t, ipv4_table(20_000, 8));
        assert_eq!(t.iter().collect::<HashSet<_>>().len(), t.len());
        for &(a, l) in &t {
            assert_eq!(a & !mask32(l), 0, "masked");
            assert!((8..=32).contains(&l));
            let first = (a >> 24) as u8;
            assert!(first != 0 && first != 10 && first != 127 && first < 224);
        }
        let s24 = share(&t, |l| l == 24);
        assert!((0.57..0.64).contains(&s24), "/24 share {s24}");
        let s22 = share(&t, |l| l == 22 || l == 23);
        assert!((0.18..0.24).contains(&s22), "/22-/23 share {s22}");
        let s16 = share(&t, |l| (16..=21).contains(&l));
        assert!((0.13..0.18).contains(&s16), "/16-/21 share {s16}");
        let long = share(&t, |l| l > 24);
        assert!((0.01..0.02).contains(&long), "longer than /24: {long}");
    }

    #[test]
    fn ipv6_is_deterministic_unique_and_shaped() {
        let t = ipv6_table(20_000, 7);
        assert_eq!(t, ipv6_table(20_000, 7));
        assert_eq!(t.iter().collect::<HashSet<_>>().len(), t.len());
        for &(a, l) in &t {
            assert_eq!(a & !mask128(l), 0, "masked");
            assert_eq!(a >> 125, 1, "inside 2000::/3");
            assert!((29..=64).contains(&l));
        }
        let s48 = share(&t, |l| l == 48);
        assert!((0.42..0.48).contains(&s48), "/48 share {s48}");
        let s32 = share(&t, |l| l == 32);
        assert!((0.07..0.11).contains(&s32), "/32 share {s32}");
    }

    #[test]
    fn covered_addresses_fall_inside_the_table() {
        let t4 = ipv4_table(500, 1);
        let a4 = addresses_covered_v4(&t4, 1000, 2);
        assert_eq!(a4.len(), 1000);
        assert_eq!(a4, addresses_covered_v4(&t4, 1000, 2));
        for a in a4 {
            assert!(t4.iter().any(|&(p, l)| a & mask32(l) == p));
        }
        let t6 = ipv6_table(500, 1);
        for a in addresses_covered_v6(&t6, 1000, 2) {
            assert!(t6.iter().any(|&(p, l)| a & mask128(l) == p));
        }
        assert!(addresses_covered_v4(&[], 10, 0).is_empty());
        assert!(addresses_covered_v6(&[], 10, 0).is_empty());
    }
}
