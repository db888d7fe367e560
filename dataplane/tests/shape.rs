//! Per-pod bandwidth limits through a worker driven by a simulated clock:
//! policing and shaping hold the configured rate within 2% from 1 Mbit/s
//! to 10 Gbit/s, bursts pass at once, shaped packets leave paced, and the
//! counters add up.

use sluice_dataplane::buf::PacketPool;
use sluice_dataplane::io::mem::{MemPeer, MemPort, MemPortConfig, RssMode};
use sluice_dataplane::io::Port;
use sluice_dataplane::stages::{shaped_router, ShapedRouterPipeline};
use sluice_dataplane::state::neighbour::NeighbourCache;
use sluice_dataplane::tables::bandwidth::{BandwidthTable, Limiter, Mode, PodLimits};
use sluice_dataplane::tables::cell::TableCell;
use sluice_dataplane::tables::services::ShardedMap;
use sluice_dataplane::testing::*;
use sluice_dataplane::wire::builder::PacketBuilder;
use sluice_dataplane::worker::{Worker, WorkerSpec};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

/// The client 10.0.0.10 (p0's link) sends to 20.0.1.1 (behind p1).
const CLIENT: u32 = 0x0a00_000a;
const SERVER: u32 = 0x1400_0101;

struct Rig {
    worker: Worker<ShapedRouterPipeline>,
    peers: Vec<MemPeer>,
    pool: PacketPool,
    limiter: Arc<Limiter>,
}

fn rig(limit_on: u32, ingress: bool, rate: u64, burst: u64, mode: Mode) -> Rig {
    let pool = PacketPool::new("shape", 65_536);
    let mut ports = Vec::new();
    let mut peers = Vec::new();
    for (i, mac) in [MAC_P0, MAC_P1, MAC_P2].into_iter().enumerate() {
        let (p, peer) = MemPort::new(
            &format!("p{i}"),
            MemPortConfig {
                port_id: i as u16,
                rx_queues: 1,
                tx_queues: 1,
                ring_size: 65_536,
                mac,
                mtu: 1500,
                rss: RssMode::None,
            },
        );
        ports.push(p);
        peers.push(peer);
    }
    let limiter = Arc::new(Limiter::new(rate, burst, mode));
    let mut pods = ShardedMap::new();
    pods.insert(
        (4, limit_on as u128),
        PodLimits {
            ingress: ingress.then(|| limiter.clone()),
            egress: (!ingress).then(|| limiter.clone()),
            pod: Arc::from("default/pod"),
        },
    );
    let mut b = router_lab();
    b.bandwidth = BandwidthTable::new(pods);
    let spec = WorkerSpec {
        id: 0,
        core: None,
        rx: ports.iter().map(|p| p.rx_queue(0).unwrap()).collect(),
        tx: ports.iter().map(|p| Some(p.tx_queue(0).unwrap())).collect(),
        pool: pool.clone(),
        tables: TableCell::new(b.build().unwrap()),
        neighbours: Arc::new(NeighbourCache::new(256)),
        drain: Duration::from_micros(100),
        handoff: Default::default(),
    };
    Rig {
        worker: Worker::new(spec, shaped_router()),
        peers,
        pool,
        limiter,
    }
}

fn frame(len: usize) -> Vec<u8> {
    PacketBuilder::new(MAC_CLIENT, MAC_P0)
        .ipv4(Ipv4Addr::from(CLIENT), Ipv4Addr::from(SERVER))
        .udp(1000, 2000)
        .frame_len(len)
        .build()
}

/// Offers `len`-byte frames at `offered_bps` for `seconds` of simulated
/// time, polling every `step_ns`; returns the arrival time of every frame
/// that left on p1 (to the resolution of the polls).
fn run(r: &mut Rig, len: usize, offered_bps: u64, seconds: f64, step_ns: u64) -> Vec<u64> {
    let f = frame(len);
    let gap = (len as u64 * 8 * 1_000_000_000 / offered_bps).max(1);
    let start = 1_000_000_000u64;
    let end = start + (seconds * 1e9) as u64;
    let mut next_send = start;
    let mut now = start;
    let mut out = Vec::new();
    let mut got = Vec::new();
    while now < end + 100_000_000 {
        while next_send <= now && next_send < end {
            let mut p = r.pool.alloc().expect("pool");
            assert!(p.fill(&f));
            r.peers[0].inject(p).expect("ring");
            next_send += gap;
        }
        r.worker.poll(now);
        r.worker.flush_all();
        got.clear();
        r.peers[1].collect_all(&mut got);
        out.extend(std::iter::repeat_n(now, got.len()));
        got.clear();
        now += step_ns;
    }
    out
}

fn check_rate(arrivals: &[u64], len: usize, rate: u64, burst: u64, seconds: f64) {
    let bits = arrivals.len() as f64 * len as f64 * 8.0;
    let want = rate as f64 * seconds + burst as f64;
    let err = (bits - want).abs() / want;
    assert!(
        err < 0.02,
        "rate {rate}: delivered {bits} bits in {seconds}s, want {want} (error {:.2}%)",
        err * 100.0
    );
}

#[test]
fn policing_holds_the_rate_from_1_mbit_to_10_gbit() {
    for (rate, seconds, step) in [
        (1_000_000u64, 4.0, 1_000_000u64),
        (100_000_000, 1.0, 100_000),
        (10_000_000_000, 0.05, 2_000),
    ] {
        let burst = rate / 100;
        let mut r = rig(CLIENT, false, rate, burst, Mode::Police);
        let arrivals = run(&mut r, 1500, rate * 2, seconds, step);
        check_rate(&arrivals, 1500, rate, burst, seconds);
        let s = r.limiter.snapshot();
        assert!(s.dropped_packets > 0);
        assert_eq!(s.conform_packets as usize, arrivals.len());
        assert_eq!(s.queued_packets, 0);
    }
}

#[test]
fn shaping_holds_the_rate_and_paces() {
    for (rate, seconds, step) in [
        (1_000_000u64, 4.0, 100_000u64),
        (100_000_000, 1.0, 20_000),
        (10_000_000_000, 0.05, 2_000),
    ] {
        let burst = rate / 100;
        let mut r = rig(SERVER, true, rate, burst, Mode::Shape);
        let arrivals = run(&mut r, 1500, rate * 2, seconds, step);
        // Shaped packets still queued when the offer ends leave within
        // 25 ms: count the delivery up to the end of the offer plus that.
        let end = 1_000_000_000 + (seconds * 1e9) as u64 + 25_000_000;
        let within: Vec<u64> = arrivals.iter().copied().filter(|&t| t <= end).collect();
        check_rate(&within, 1500, rate, burst, seconds + 0.025);
        // Paced: once the burst is spent (offered at twice the rate, a
        // burst of 10 ms lasts 20 ms), no tenth of the run carries more
        // than the rate allows plus 20%.
        let span = (seconds * 1e9) as u64 / 10;
        let per_window = rate as f64 * span as f64 / 1e9 / (1500.0 * 8.0);
        let burst_spent = 1_000_000_000 + 20_000_000;
        for w in 1..10u64 {
            let lo = 1_000_000_000 + w * span;
            if lo < burst_spent {
                continue;
            }
            let n = within.iter().filter(|&&t| t >= lo && t < lo + span).count();
            assert!(
                (n as f64) < per_window * 1.2 + 2.0,
                "rate {rate}: window {w} carried {n}, rate allows {per_window}"
            );
        }
        let s = r.limiter.snapshot();
        assert!(s.queued_packets > 0, "shaping queued packets");
    }
}

#[test]
fn a_burst_passes_at_once() {
    // 8 Mbit/s with a 120 kbit burst: ten 1500-byte frames at once.
    let mut r = rig(CLIENT, false, 8_000_000, 120_000, Mode::Police);
    let f = frame(1500);
    for _ in 0..20 {
        let mut p = r.pool.alloc().unwrap();
        assert!(p.fill(&f));
        r.peers[0].inject(p).unwrap();
    }
    r.worker.poll(5_000_000_000);
    r.worker.flush_all();
    let mut got = Vec::new();
    r.peers[1].collect_all(&mut got);
    assert!((10..=11).contains(&got.len()), "{}", got.len());
    let stats = r.worker.stats().snapshot();
    assert_eq!(stats.drops["bandwidth_exceeded"] as usize, 20 - got.len());
}
