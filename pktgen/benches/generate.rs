//! Generation cost: bursts of 32 packets filled from a stream and freed
//! again (what a mem sink does), per stream shape.
//!
//! ```sh
//! taskset -c 1 cargo bench -p sluice-pktgen --bench generate -- --warm-up-time 1 --measurement-time 3
//! ```

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_dataplane::buf::{Batch, PacketPool, BURST_SIZE};
use sluice_pktgen::gen::Generator;
use sluice_pktgen::measure::Receiver;
use sluice_pktgen::spec::StreamSpec;
use std::hint::black_box;

const SHAPES: &[(&str, &str)] = &[
    (
        "udp64_4fields",
        "udp src=10.0.0.1-10.0.0.255 dst=10.1.0.1-10.1.0.100 sport=1000-2000 dport=53-60 size=64 mark=off",
    ),
    (
        "udp64_4fields_marked",
        "udp src=10.0.0.1-10.0.0.255 dst=10.1.0.1-10.1.0.100 sport=1000-2000 dport=53-60 size=64",
    ),
    (
        "udp64_4fields_random",
        "udp src=rand:10.0.0.0/16 dst=rand:10.1.0.0/16 sport=rand:1024-65535 dport=rand:1-1024 size=64 mark=off",
    ),
    ("udp_imix_marked", "udp src=10.0.0.1-10.0.0.255 sport=1000-2000 size=imix"),
    ("tcp6_78_marked", "tcp src=2001:db8::1-2001:db8::ff dst=2001:db8:1::1 dport=80 size=94"),
    ("sctp64", "sctp src=10.0.0.1-10.0.0.255 sport=1-100 size=64 mark=off"),
];

fn generate(c: &mut Criterion) {
    let mut g = c.benchmark_group("generate");
    g.throughput(Throughput::Elements(BURST_SIZE as u64));
    for (name, stream) in SHAPES {
        let spec = StreamSpec::parse_short(1, stream).expect("valid stream");
        let mut gen = Generator::new(&[spec], 1).expect("valid stream");
        let pool = PacketPool::new("bench", 1024);
        let mut cache = pool.cache(256);
        let mut batch = Batch::new();
        let mut ts = 0u64;
        g.bench_function(*name, |b| {
            b.iter(|| {
                ts += 1;
                gen.fill(&mut cache, &mut batch, BURST_SIZE, black_box(ts));
                cache.free_batch(black_box(&mut batch));
            })
        });
    }
    g.finish();
}

/// The receive side's cost: generating a burst of 32 marked frames (as
/// `generate/udp64_4fields_marked`) and recording each (reading the mark,
/// the sequence window, the HDR histogram); the difference from the
/// generation alone is the receiver's share.
fn receive(c: &mut Criterion) {
    let spec = StreamSpec::parse_short(1, SHAPES[1].1).expect("valid stream");
    let mut gen = Generator::new(&[spec], 1).expect("valid stream");
    let pool = PacketPool::new("bench", 1024);
    let mut cache = pool.cache(256);
    let mut receiver = Receiver::new(1);
    let mut g = c.benchmark_group("receive");
    g.throughput(Throughput::Elements(BURST_SIZE as u64));
    let mut batch = Batch::new();
    let mut now = 0u64;
    g.bench_function("generate_and_record_marked", |b| {
        b.iter(|| {
            now += 1_000;
            gen.fill(&mut cache, &mut batch, BURST_SIZE, now);
            receiver.record_all(batch.iter(), black_box(now + 1_500));
            cache.free_batch(&mut batch);
        })
    });
    g.finish();
}

criterion_group!(benches, generate, receive);
criterion_main!(benches);
