//! Maglev ring builds and lookups.
//!
//! Builds: rings of 10 and 1000 equal-weight endpoints (IPv4 address and
//! port keys) at their `size_for` table sizes (1021 and 131071 slots), and
//! 1000 endpoints of weights 1 to 4 (the priority-queue path). The input is
//! shuffled, so the sort is part of the cost, as it is for the control plane.
//!
//! Lookups walk a pre-generated vector of 2^16 random flow hashes; throughput
//! is in lookups.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sluice_dataplane::tables::maglev::{Backend, MaglevRing};

const ENDPOINTS: [(&str, u32); 2] = [("10", 10), ("1k", 1_000)];
const HASHES: usize = 1 << 16;
const BURST: usize = 32;

/// `10.x.y.z:8080` keys, shuffled.
fn endpoint_keys(n: u32) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut k = (0x0a00_0000 | i).to_be_bytes().to_vec();
            k.extend_from_slice(&8080u16.to_be_bytes());
            k
        })
        .collect();
    keys.shuffle(&mut SmallRng::seed_from_u64(1));
    keys
}

fn backends(keys: &[Vec<u8>], weight: impl Fn(usize) -> u32) -> Vec<Backend<'_>> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| Backend {
            key: k,
            weight: weight(i),
            id: i as u32,
        })
        .collect()
}

fn maglev_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("maglev_build");
    for (name, n) in ENDPOINTS {
        let keys = endpoint_keys(n);
        let equal = backends(&keys, |_| 1);
        group.bench_with_input(BenchmarkId::new("equal", name), &equal, |b, equal| {
            b.iter(|| MaglevRing::build(black_box(equal), None).expect("valid backends"))
        });
    }
    let keys = endpoint_keys(1_000);
    let weighted = backends(&keys, |i| 1 + (i % 4) as u32);
    group.bench_with_input(
        BenchmarkId::new("weighted", "1k"),
        &weighted,
        |b, weighted| {
            b.iter(|| MaglevRing::build(black_box(weighted), None).expect("valid backends"))
        },
    );
    group.finish();
}

fn maglev_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("maglev_lookup");
    group.throughput(Throughput::Elements(HASHES as u64));
    let mut rng = SmallRng::seed_from_u64(2);
    let hashes: Vec<u32> = (0..HASHES).map(|_| rng.gen()).collect();
    for (name, n) in ENDPOINTS {
        let keys = endpoint_keys(n);
        let ring = MaglevRing::build(&backends(&keys, |_| 1), None).expect("valid backends");
        group.bench_with_input(BenchmarkId::new("single", name), &hashes, |b, hashes| {
            b.iter(|| {
                let mut acc = 0u32;
                for &h in hashes {
                    acc = acc.wrapping_add(ring.lookup(black_box(h)).unwrap_or(0));
                }
                black_box(acc)
            })
        });
        group.bench_with_input(BenchmarkId::new("burst32", name), &hashes, |b, hashes| {
            let mut out = [None; BURST];
            b.iter(|| {
                for burst in hashes.chunks(BURST) {
                    ring.lookup_burst(black_box(burst), &mut out);
                    black_box(&out);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, maglev_build, maglev_lookup);
criterion_main!(benches);
