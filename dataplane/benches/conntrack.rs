//! Connection tracking at a million connections.
//!
//! * `conntrack_lookup_1M`: lookups that hit (half original, half reply
//!   direction) and miss, one at a time (hash + lookup) and in bursts of 32
//!   (hash all, then `lookup_burst`, which prefetches buckets and entries).
//! * `conntrack_track_1M`: the per-packet path of a stage: a burst is hashed
//!   and prefetched, then each packet is looked up and run through its
//!   state machine (`track`).
//! * `conntrack_create`: new connections per second, in bursts of 32 as a
//!   stage creates them (hash and prefetch both keys' buckets, then
//!   `create`): into a table filling from empty to 1M, and into a full
//!   table of unreplied SYNs, where every new connection evicts one.
//!
//! Every key is generated before timing: service connections from random
//! clients to 64 service addresses, DNATed to 256 endpoints. Throughput is
//! in lookups or connections.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_dataplane::state::conntrack::{
    tcp_flags, ConnKey, Conntrack, ConntrackConfig, Hit, L4Event, NewConnection,
};
use std::time::{Duration, Instant};

const CONNS: usize = 1_000_000;
const CAPACITY: usize = 1 << 20;
const PROBES: usize = 1 << 16;
const BURST: usize = 32;
const BATCH: usize = 1 << 14;
const NOW: u64 = 1_000_000_000_000;
const TCP: u8 = 6;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `n` service connections: a client of 10.0.0.0/8 to one of 64 service
/// addresses, DNATed to one of 256 endpoints.
fn connections(n: usize, seed: u64) -> Vec<NewConnection> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let r = rng.next();
            let vip = 0x0a60_0000 | (r >> 56) as u32 & 63;
            let client = ConnKey::v4(
                0,
                TCP,
                0x0a00_0000 | r as u32 & 0xff_ffff,
                vip,
                (r >> 24) as u16,
                443,
            );
            let endpoint = (r >> 40) as u32 & 255;
            NewConnection::new(client).dnat(0x0af4_0000 | endpoint as u128, 8443, endpoint)
        })
        .collect()
}

fn config() -> ConntrackConfig {
    ConntrackConfig {
        capacity_v4: CAPACITY,
        capacity_v6: 64,
        ..ConntrackConfig::default()
    }
}

/// Creates connections in bursts, as a stage does: hash and prefetch both
/// keys of the burst, then create each. Returns how many were created.
fn create_bursts(ct: &mut Conntrack, news: &[NewConnection], now: u64) -> usize {
    let mut created = 0;
    let mut hashes = [0u64; BURST];
    for burst in news.chunks(BURST) {
        for (h, new) in hashes.iter_mut().zip(burst) {
            *h = ct.hash(&new.original);
            ct.prefetch(*h);
            ct.prefetch(ct.hash(&new.reply));
        }
        for (&h, new) in hashes.iter().zip(burst) {
            created += ct
                .create(new, h, L4Event::Tcp(tcp_flags::SYN), 60, now)
                .is_ok() as usize;
        }
    }
    created
}

fn full_table(news: &[NewConnection]) -> Conntrack {
    let mut ct = Conntrack::new(&config());
    let created = create_bursts(&mut ct, news, NOW);
    assert!(created >= news.len() - 16, "{created} of {}", news.len());
    ct
}

fn lookup(c: &mut Criterion) {
    let news = connections(CONNS, 1);
    let ct = full_table(&news);
    let mut rng = Rng(2);
    let hits: Vec<ConnKey> = (0..PROBES)
        .map(|i| {
            let new = &news[rng.next() as usize % CONNS];
            if i % 2 == 0 {
                new.original
            } else {
                new.reply
            }
        })
        .collect();
    let misses: Vec<ConnKey> = connections(PROBES, 3)
        .iter()
        .map(|n| ConnKey {
            src: n.original.src | 0x0b00_0000,
            ..n.original
        })
        .collect();

    let mut group = c.benchmark_group("conntrack_lookup_1M");
    group.throughput(Throughput::Elements(PROBES as u64));
    for (name, keys, want) in [("hit", &hits, PROBES), ("miss", &misses, 0)] {
        assert_eq!(
            keys.iter().filter(|k| ct.lookup(k, NOW).is_some()).count(),
            want
        );
        group.bench_with_input(BenchmarkId::new(name, "single"), keys, |b, keys| {
            b.iter(|| {
                let mut found = 0usize;
                for k in keys.iter() {
                    found += ct.lookup(black_box(k), NOW).is_some() as usize;
                }
                black_box(found)
            })
        });
        group.bench_with_input(BenchmarkId::new(name, "burst32"), keys, |b, keys| {
            let mut hashes = [0u64; BURST];
            let mut out: [Option<Hit>; BURST] = [None; BURST];
            b.iter(|| {
                for burst in keys.chunks(BURST) {
                    for (h, k) in hashes.iter_mut().zip(burst) {
                        *h = ct.hash(k);
                    }
                    ct.lookup_burst(black_box(burst), &hashes, NOW, &mut out);
                    black_box(&out);
                }
            })
        });
    }
    group.finish();

    // Track: lookup and state machine, with prefetching one burst ahead of
    // the lookups inside it.
    let mut ct = ct;
    let mut group = c.benchmark_group("conntrack_track_1M");
    group.throughput(Throughput::Elements(PROBES as u64));
    group.bench_function("hit/burst32", |b| {
        let mut hashes = [0u64; BURST];
        b.iter(|| {
            for burst in hits.chunks(BURST) {
                for (h, k) in hashes.iter_mut().zip(burst) {
                    *h = ct.hash(k);
                    ct.prefetch(*h);
                }
                for (&h, k) in hashes.iter().zip(burst) {
                    black_box(ct.track(k, h, L4Event::Tcp(tcp_flags::SYN), 60, NOW));
                }
            }
        })
    });
    group.finish();
}

fn create(c: &mut Criterion) {
    let news = connections(CONNS, 4);
    let mut group = c.benchmark_group("conntrack_create");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(30);

    // From empty to 1M: each measured batch goes into the same table, which
    // is replaced (untimed) when the pre-generated keys run out.
    group.bench_function("fill_to_1M/burst32", |b| {
        let mut ct = Conntrack::new(&config());
        let mut next = 0;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if next + BATCH > news.len() {
                    ct = Conntrack::new(&config());
                    next = 0;
                }
                let start = Instant::now();
                black_box(create_bursts(&mut ct, &news[next..next + BATCH], NOW));
                total += start.elapsed();
                next += BATCH;
            }
            total
        })
    });

    // A full table of unreplied SYNs: every new connection evicts the
    // oldest unreplied one among its candidates.
    let flood = connections(1 << 22, 5);
    let mut ct = full_table(&connections(CAPACITY, 6));
    assert!(ct.len() > CAPACITY - 64, "nearly every entry in use");
    group.bench_function("syn_flood_full_1M/burst32", |b| {
        let mut next = 0;
        let mut now = NOW;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if next + BATCH > flood.len() {
                    next = 0;
                }
                now += 1_000_000;
                let start = Instant::now();
                black_box(create_bursts(&mut ct, &flood[next..next + BATCH], now));
                total += start.elapsed();
                next += BATCH;
            }
            let c = ct.counters();
            assert!(c.evicted_unassured > 0 && c.evicted_assured == 0);
            total
        })
    });
    group.finish();
}

criterion_group!(benches, lookup, create);
criterion_main!(benches);
