//! Route lookups and inserts on synthetic tables of realistic shape.
//!
//! Every lookup bench walks a pre-generated vector of 2^16 destination
//! addresses inside random routes of the table (so lookups hit, as traffic
//! does, and the table is touched at random, as many flows do). Throughput
//! is in lookups.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_dataplane::tables::lpm4::Lpm4;
use sluice_dataplane::tables::lpm6::Lpm6;
use sluice_dataplane::tables::synth;

const SIZES: [(&str, usize); 3] = [("1k", 1_000), ("100k", 100_000), ("1M", 1_000_000)];
const ADDRESSES: usize = 1 << 16;
const BURST: usize = 32;

fn lpm4_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("lpm4_lookup");
    group.throughput(Throughput::Elements(ADDRESSES as u64));
    for (name, n) in SIZES {
        let routes = synth::ipv4_table(n, 1);
        let mut table = Lpm4::new();
        for (i, &(addr, len)) in routes.iter().enumerate() {
            table
                .insert(addr, len, i as u32)
                .expect("synthetic routes are valid");
        }
        let addrs = synth::addresses_covered_v4(&routes, ADDRESSES, 2);
        group.bench_with_input(BenchmarkId::new("single", name), &addrs, |b, addrs| {
            b.iter(|| {
                let mut acc = 0u32;
                for &a in addrs {
                    acc = acc.wrapping_add(table.lookup(black_box(a)).unwrap_or(0));
                }
                black_box(acc)
            })
        });
        group.bench_with_input(BenchmarkId::new("burst32", name), &addrs, |b, addrs| {
            let mut out = [None; BURST];
            b.iter(|| {
                for burst in addrs.chunks(BURST) {
                    table.lookup_burst(black_box(burst), &mut out);
                    black_box(&out);
                }
            })
        });
    }
    group.finish();
}

fn lpm6_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("lpm6_lookup");
    group.throughput(Throughput::Elements(ADDRESSES as u64));
    for (name, n) in SIZES {
        let routes = synth::ipv6_table(n, 1);
        let mut table = Lpm6::new();
        for (i, &(addr, len)) in routes.iter().enumerate() {
            table
                .insert(addr, len, i as u32)
                .expect("synthetic routes are valid");
        }
        let addrs = synth::addresses_covered_v6(&routes, ADDRESSES, 2);
        group.bench_with_input(BenchmarkId::new("single", name), &addrs, |b, addrs| {
            b.iter(|| {
                let mut acc = 0u32;
                for &a in addrs {
                    acc = acc.wrapping_add(table.lookup(black_box(a)).unwrap_or(0));
                }
                black_box(acc)
            })
        });
        group.bench_with_input(BenchmarkId::new("burst32", name), &addrs, |b, addrs| {
            let mut out = [None; BURST];
            b.iter(|| {
                for burst in addrs.chunks(BURST) {
                    table.lookup_burst(black_box(burst), &mut out);
                    black_box(&out);
                }
            })
        });
    }
    group.finish();
}

/// Building a 100k-route table from empty, one insert at a time.
fn lpm_insert(c: &mut Criterion) {
    const N: usize = 100_000;
    let mut group = c.benchmark_group("lpm_insert_100k");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N as u64));
    let routes4 = synth::ipv4_table(N, 1);
    group.bench_function("lpm4", |b| {
        b.iter(|| {
            let mut table = Lpm4::new();
            for (i, &(addr, len)) in routes4.iter().enumerate() {
                table.insert(black_box(addr), len, i as u32).expect("valid");
            }
            table
        })
    });
    let routes6 = synth::ipv6_table(N, 1);
    group.bench_function("lpm6", |b| {
        b.iter(|| {
            let mut table = Lpm6::new();
            for (i, &(addr, len)) in routes6.iter().enumerate() {
                table.insert(black_box(addr), len, i as u32).expect("valid");
            }
            table
        })
    });
    group.finish();
}

criterion_group!(benches, lpm4_lookup, lpm6_lookup, lpm_insert);
criterion_main!(benches);
