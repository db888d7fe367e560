//! A standard router topology and a harness that runs frames through a
//! pipeline, for the table-driven tests, the benchmarks and the demo.
//!
//! The lab: three ports in network "default".
//!
//! | port | MAC | IPv4 | IPv6 | MTU |
//! |---|---|---|---|---|
//! | 0 `p0` | 02:00:00:00:00:01 | 10.0.0.1/24 | 2001:db8::1/64 | 1500 |
//! | 1 `p1` | 02:00:00:00:00:02 | 10.0.1.1/24 | 2001:db8:1::1/64 | 1500 |
//! | 2 `p2` | 02:00:00:00:00:03 | 10.0.2.1/24 | 2001:db8:2::1/64 | 1300 |
//!
//! Routes: 20.0.0.0/8 and 2001:db8:20::/48 via the p1 gateway (10.0.1.254 /
//! 2001:db8:1::fe, static MAC 02:00:00:00:01:fe); 30.0.0.0/8 ECMP via the p1
//! and p2 gateways (10.0.2.254 is static too, 02:00:00:00:02:fe); 40.0.0.0/8
//! blackhole; 50.0.0.0/8 unreachable; 60.0.0.0/8 prohibit; 70.0.0.0/8 via
//! 10.0.1.77, whose MAC is not configured (dynamic resolution).

use crate::buf::{PacketPool, PoolCache};
use crate::stages::{Action, Burst, Context, Stage};
use crate::state::neighbour::NeighbourCache;
use crate::stats::WorkerStats;
use crate::tables::{NextHopSpec, RouteTarget, Tables, TablesBuilder};
use std::net::IpAddr;

pub mod netns;

pub const MAC_P0: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const MAC_P1: [u8; 6] = [2, 0, 0, 0, 0, 2];
pub const MAC_P2: [u8; 6] = [2, 0, 0, 0, 0, 3];
/// A host on p0's link that sends the test traffic.
pub const MAC_CLIENT: [u8; 6] = [2, 0, 0, 0, 0xc0, 0x01];
pub const MAC_GW1: [u8; 6] = [2, 0, 0, 0, 1, 0xfe];
pub const MAC_GW2: [u8; 6] = [2, 0, 0, 0, 2, 0xfe];

fn ip(s: &str) -> IpAddr {
    s.parse().expect("literal address")
}

/// The lab topology described in the module docs.
pub fn router_lab() -> TablesBuilder {
    let mut b = TablesBuilder::new();
    let p0 = b.port("p0", 0, MAC_P0, 1500);
    let p1 = b.port("p1", 0, MAC_P1, 1500);
    let p2 = b.port("p2", 0, MAC_P2, 1300);
    for (p, v4, v6) in [
        (p0, "10.0.0.1", "2001:db8::1"),
        (p1, "10.0.1.1", "2001:db8:1::1"),
        (p2, "10.0.2.1", "2001:db8:2::1"),
    ] {
        b.address(p, ip(v4), 24).expect("lab address");
        b.address(p, ip(v6), 64).expect("lab address");
    }
    b.neighbour(0, ip("10.0.1.254"), MAC_GW1);
    b.neighbour(0, ip("2001:db8:1::fe"), MAC_GW1);
    b.neighbour(0, ip("10.0.2.254"), MAC_GW2);
    let via = |g: &str| RouteTarget::Via(vec![NextHopSpec::gateway(ip(g))]);
    let routes = [
        ("20.0.0.0", 8, via("10.0.1.254")),
        ("2001:db8:20::", 48, via("2001:db8:1::fe")),
        (
            "30.0.0.0",
            8,
            RouteTarget::Via(vec![
                NextHopSpec::gateway(ip("10.0.1.254")),
                NextHopSpec::gateway(ip("10.0.2.254")),
            ]),
        ),
        ("40.0.0.0", 8, RouteTarget::Blackhole),
        ("50.0.0.0", 8, RouteTarget::Unreachable),
        ("60.0.0.0", 8, RouteTarget::Prohibit),
        ("70.0.0.0", 8, via("10.0.1.77")),
    ];
    for (dest, len, target) in routes {
        b.route(0, ip(dest), len, target).expect("lab route");
    }
    b
}

/// Runs frames through a pipeline the way a worker does, without threads.
pub struct Harness<P: Stage> {
    pub tables: Tables,
    pub neighbours: NeighbourCache,
    pub stats: WorkerStats,
    pub pipeline: P,
    pub cache: PoolCache,
    pub now_ns: u64,
}

impl<P: Stage> Harness<P> {
    pub fn new(tables: Tables, pipeline: P) -> Harness<P> {
        let pool = PacketPool::new("harness", 1024);
        Harness {
            tables,
            neighbours: NeighbourCache::new(1024),
            stats: WorkerStats::default(),
            pipeline,
            cache: pool.cache(256),
            now_ns: 1_000_000_000,
        }
    }

    /// Runs one burst of `(rx_port, frame)` and returns each packet's
    /// decision with the frame as the pipeline left it.
    pub fn run(&mut self, frames: &[(u16, Vec<u8>)]) -> Vec<(Action, Vec<u8>)> {
        let mut out = Vec::with_capacity(frames.len());
        for chunk in frames.chunks(crate::buf::BURST_SIZE) {
            let mut burst = Burst::default();
            for (port, f) in chunk {
                let mut p = self.cache.alloc().expect("harness pool");
                assert!(p.fill(f), "frame fits a buffer");
                p.rx_port = *port;
                burst.pkts.push(p);
            }
            burst.reset_actions();
            let cx = Context {
                workers: 1,
                tables: &self.tables,
                neighbours: &self.neighbours,
                stats: &self.stats,
                now_ns: self.now_ns,
                worker: 0,
            };
            self.pipeline.process(&cx, &mut burst);
            for (i, p) in burst.pkts.drain(..).enumerate() {
                out.push((burst.action[i], p.data().to_vec()));
                self.cache.free(p);
            }
        }
        out
    }

    /// Runs one frame.
    pub fn run_one(&mut self, rx_port: u16, frame: Vec<u8>) -> (Action, Vec<u8>) {
        self.run(&[(rx_port, frame)]).pop().expect("one result")
    }
}
