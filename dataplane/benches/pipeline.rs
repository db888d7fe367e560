//! The router pipeline over bursts of 32 packets, without I/O: the cost of
//! parse → route → rewrite per packet, with the lab topology and with a
//! 100k-route table across 10k flows.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_dataplane::buf::{PacketPool, BURST_SIZE};
use sluice_dataplane::stages::{router, Action, Burst, Context, Stage};
use sluice_dataplane::state::neighbour::NeighbourCache;
use sluice_dataplane::stats::WorkerStats;
use sluice_dataplane::tables::{synth, NextHopSpec, RouteTarget, Tables, TablesBuilder};
use sluice_dataplane::testing::{router_lab, MAC_CLIENT, MAC_P0};
use sluice_dataplane::wire::builder::PacketBuilder;
use std::net::{IpAddr, Ipv4Addr};

fn big_table(routes: usize) -> Tables {
    let mut b = TablesBuilder::new();
    let p0 = b.port("in", 0, MAC_P0, 1500);
    let p1 = b.port("out", 0, [2, 0, 0, 0, 0, 2], 1500);
    b.address(p0, "10.0.0.1".parse().unwrap(), 24).unwrap();
    b.address(p1, "10.0.1.1".parse().unwrap(), 24).unwrap();
    let gw: IpAddr = "10.0.1.254".parse().unwrap();
    b.neighbour(0, gw, [2, 0, 0, 0, 1, 0xfe]);
    for (p, l) in synth::ipv4_table(routes, 1) {
        b.route(
            0,
            IpAddr::V4(Ipv4Addr::from(p)),
            l,
            RouteTarget::Via(vec![NextHopSpec::gateway(gw)]),
        )
        .unwrap();
    }
    b.build().unwrap()
}

fn run(c: &mut Criterion, name: &str, tables: Tables, frames: Vec<Vec<u8>>) {
    let pool = PacketPool::new("bench", 256);
    let mut cache = pool.cache(128);
    let neighbours = NeighbourCache::new(64);
    let stats = WorkerStats::default();
    let mut pipeline = router();
    // Templates padded to whole cache lines, copied back before each burst
    // (the rewrite changes TTL and MACs).
    let lines: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut l = f.clone();
            l.resize(f.len().next_multiple_of(64), 0);
            l
        })
        .collect();
    let mut burst = Burst::default();
    for _ in 0..BURST_SIZE {
        burst.pkts.push(cache.alloc().unwrap());
    }
    let mut next = 0;
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BURST_SIZE as u64));
    g.bench_function(name, |b| {
        b.iter(|| {
            for p in burst.pkts.iter_mut() {
                p.fill_lines(&lines[next], frames[next].len());
                next = (next + 1) % frames.len();
            }
            burst.reset_actions();
            let cx = Context {
                tables: &tables,
                neighbours: &neighbours,
                stats: &stats,
                now_ns: 1,
                worker: 0,
                workers: 1,
            };
            pipeline.process(&cx, &mut burst);
            assert!(matches!(burst.action[0], Action::Tx(_)));
        })
    });
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    let lab = router_lab().build().unwrap();
    let frames: Vec<Vec<u8>> = (0..64u32)
        .map(|i| {
            PacketBuilder::new(MAC_CLIENT, MAC_P0)
                .ipv4([10, 0, 0, 10], Ipv4Addr::from(0x1400_0000 + i * 4099))
                .udp(1000 + i as u16, 53)
                .frame_len(64)
                .build()
        })
        .collect();
    run(c, "router_lab_ipv4_64B_burst32", lab, frames);

    let table = synth::ipv4_table(100_000, 1);
    let frames: Vec<Vec<u8>> = synth::addresses_covered_v4(&table, 10_000, 7)
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            PacketBuilder::new(MAC_CLIENT, MAC_P0)
                .ipv4([10, 0, 0, 10], Ipv4Addr::from(a))
                .udp(1024 + (i % 60000) as u16, 9)
                .frame_len(64)
                .build()
        })
        .collect();
    run(
        c,
        "routes_100k_flows_10k_ipv4_64B_burst32",
        big_table(100_000),
        frames,
    );
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
