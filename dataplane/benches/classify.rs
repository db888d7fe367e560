//! Chain classification: the first-match scan against the tuple-space
//! index (`tables::classify`), over rule lists of the shapes service-chain
//! steering produces.
//!
//! Each list of N rules cycles through four shapes: a Service's address
//! and TCP port (`dst /32, TCP, dport`), a client subnet (`src /24`), a
//! destination block for UDP (`dst /16, UDP`) and a receiving port with a
//! UDP port range (scanned, not hashed: one rule in 64). The traffic is
//! 4,096 tuples: half hit a random rule, half match none (most of a node's
//! packets go through no chain, and a scan pays the most for those).
//! Throughput is in lookups.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_dataplane::tables::chain::{PortRange, Prefix, Tuple, TupleMatch};
use sluice_dataplane::tables::classify::{first_match, Rule, TupleSpace};

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
const TUPLES: usize = 4_096;

fn v4(a: u32, len: u8) -> Prefix {
    Prefix {
        family: 4,
        addr: u128::from(a),
        len,
    }
}

fn rules(n: usize) -> Vec<Rule> {
    (0..n as u32)
        .map(|i| {
            let tuple = match i % 4 {
                0 => TupleMatch {
                    dst: v4(0x0a60_0000 + i, 32),
                    proto: 6,
                    dport: PortRange::one(8000 + (i % 1000) as u16),
                    ..TupleMatch::default()
                },
                1 => TupleMatch {
                    src: v4(0x0a00_0000 + (i << 8), 24),
                    ..TupleMatch::default()
                },
                2 => TupleMatch {
                    dst: v4(0xac00_0000 + (i << 16), 16),
                    proto: 17,
                    ..TupleMatch::default()
                },
                _ if i % 64 == 3 => TupleMatch {
                    proto: 17,
                    dport: PortRange {
                        lo: 40_000 + (i % 1000) as u16,
                        hi: 40_010 + (i % 1000) as u16,
                    },
                    ..TupleMatch::default()
                },
                _ => TupleMatch {
                    dst: v4(0x0a60_0000 + i, 32),
                    proto: 17,
                    dport: PortRange::one(53),
                    ..TupleMatch::default()
                },
            };
            Rule {
                network: None,
                port: (i % 64 == 3).then_some((i % 4) as u16),
                tuple,
            }
        })
        .collect()
}

/// Tuples: even ones hit the rule `(k * 7919) % n`, odd ones miss.
fn traffic(rules: &[Rule]) -> Vec<Tuple> {
    (0..TUPLES)
        .map(|k| {
            let mut t = Tuple {
                family: 4,
                proto: 6,
                src: u128::from(0xc0a8_0000 + k as u32),
                dst: u128::from(0xc0a9_0000 + k as u32),
                sport: 33_000,
                dport: 443,
            };
            if k % 2 == 0 {
                let r = &rules[(k * 7919) % rules.len()].tuple;
                if r.src.len > 0 {
                    t.src = r.src.addr | 7;
                }
                if r.dst.len > 0 {
                    t.dst = r.dst.addr | if r.dst.len < 32 { 9 } else { 0 };
                }
                if r.proto != 0 {
                    t.proto = r.proto;
                }
                t.dport = r.dport.lo;
            }
            t
        })
        .collect()
}

fn classify(c: &mut Criterion) {
    let mut group = c.benchmark_group("chain_classify");
    group.throughput(Throughput::Elements(TUPLES as u64));
    for n in SIZES {
        let rules = rules(n);
        let tuples = traffic(&rules);
        let index = TupleSpace::build(rules.clone());
        // The same answers, or the comparison means nothing.
        for t in &tuples {
            assert_eq!(index.lookup(0, 1, t), first_match(&rules, 0, 1, t));
        }
        group.bench_with_input(BenchmarkId::new("scan", n), &tuples, |b, tuples| {
            b.iter(|| {
                let mut acc = 0u32;
                for t in tuples {
                    acc = acc.wrapping_add(first_match(&rules, 0, 1, black_box(t)).unwrap_or(0));
                }
                black_box(acc)
            })
        });
        group.bench_with_input(BenchmarkId::new("index", n), &tuples, |b, tuples| {
            b.iter(|| {
                let mut acc = 0u32;
                for t in tuples {
                    acc = acc.wrapping_add(index.lookup(0, 1, black_box(t)).unwrap_or(0));
                }
                black_box(acc)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, classify);
criterion_main!(benches);
