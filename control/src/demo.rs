//! `sluiced demo`: the router on its embedded default, with no set-up.
//!
//! Three in-memory ports in the lab topology of
//! [`sluice_dataplane::testing`]: port 0 replays a fixed mix of frames at
//! memory speed (IPv4 and IPv6 flows to routed prefixes, an ECMP prefix, and
//! a few frames that must be refused: expired TTL, no route, bad checksum),
//! ports 1 and 2 are sinks. Workers forward; the main thread prints a line a
//! second and a summary at the end.

use serde::Serialize;
use sluice_dataplane::engine::{default_cores, Engine, EngineConfig};
use sluice_dataplane::io::mem::{MemPort, MemPortConfig, ReplayLimit, RssMode};
use sluice_dataplane::io::Port;
use sluice_dataplane::stages::router;
use sluice_dataplane::stats::{Event, StatsSnapshot};
use sluice_dataplane::testing::{router_lab, MAC_CLIENT, MAC_P0, MAC_P1, MAC_P2};
use sluice_dataplane::wire::builder::PacketBuilder;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `sluiced demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub seconds: u64,
    pub workers: usize,
    pub json: bool,
}

/// The final summary (`--json` prints it as one object).
#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    pub seconds: f64,
    pub workers: usize,
    pub received: u64,
    /// Packets routed out of a port (not counting those the appliance made).
    pub forwarded: u64,
    /// ICMP errors and replies the appliance generated.
    pub generated: u64,
    pub dropped: u64,
    /// Received packets per second, in millions.
    pub mpps: f64,
    pub drops_by_reason: BTreeMap<&'static str, u64>,
    pub events: BTreeMap<&'static str, u64>,
    pub table_generation: u64,
}

/// The demo's traffic: one frame per flow.
pub fn demo_traffic() -> Vec<Vec<u8>> {
    let from_client = || PacketBuilder::new(MAC_CLIENT, MAC_P0);
    let mut frames = Vec::new();
    for i in 0..700u32 {
        let dst = Ipv4Addr::from(0x1400_0000 + i * 977);
        frames.push(
            from_client()
                .ipv4([10, 0, 0, 10], dst)
                .udp(1024 + i as u16, 53)
                .frame_len(64)
                .build(),
        );
    }
    for i in 0..200u32 {
        let dst = Ipv4Addr::from(0x1e00_0000 + i * 4099);
        frames.push(
            from_client()
                .ipv4([10, 0, 0, 11], dst)
                .udp(2048 + i as u16, 443)
                .frame_len(64)
                .build(),
        );
    }
    for i in 0..150u16 {
        let dst = Ipv6Addr::new(0x2001, 0xdb8, 0x20, i, 0, 0, 0, 1);
        frames.push(
            from_client()
                .ipv6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10), dst)
                .udp(3000 + i, 53)
                .frame_len(78)
                .build(),
        );
    }
    for i in 0..4u16 {
        frames.push(
            from_client()
                .ipv4([10, 0, 0, 12], [20, 0, 0, 1])
                .ttl(1)
                .udp(4000 + i, 33434)
                .frame_len(64)
                .build(),
        );
        frames.push(
            from_client()
                .ipv4([10, 0, 0, 12], [99, 0, 0, i as u8])
                .udp(5000 + i, 80)
                .frame_len(64)
                .build(),
        );
        frames.push(
            from_client()
                .ipv4([10, 0, 0, 12], [20, 0, 0, 2])
                .udp(6000 + i, 80)
                .frame_len(64)
                .bad_ipv4_checksum()
                .build(),
        );
    }
    frames
}

fn mem_cfg(port_id: u16, mac: [u8; 6], workers: usize) -> MemPortConfig {
    MemPortConfig {
        port_id,
        rx_queues: workers as u16,
        tx_queues: workers as u16,
        ring_size: 1024,
        mac,
        mtu: 1500,
        rss: RssMode::Toeplitz,
    }
}

fn generated(s: &StatsSnapshot) -> u64 {
    [
        Event::IcmpErrorSent,
        Event::EchoReplySent,
        Event::ArpReplySent,
        Event::ArpRequestSent,
        Event::NdAdvertSent,
        Event::NdSolicitSent,
    ]
    .iter()
    .map(|e| s.events.get(e.name()).copied().unwrap_or(0))
    .sum()
}

/// Runs the demo and returns its summary.
pub fn run(opts: &DemoOptions) -> Result<DemoSummary, String> {
    let workers = opts.workers.max(1);
    let tables = router_lab().build().map_err(|e| e.to_string())?;
    let ports: Vec<Arc<dyn Port>> = vec![
        MemPort::replay(
            "p0",
            demo_traffic(),
            mem_cfg(0, MAC_P0, workers),
            ReplayLimit::Forever,
        )
        .map_err(|e| e.to_string())?,
        MemPort::sink("p1", mem_cfg(1, MAC_P1, workers)),
        MemPort::sink("p2", mem_cfg(2, MAC_P2, workers)),
    ];
    let cfg = EngineConfig {
        workers,
        cores: default_cores(workers),
        ..EngineConfig::default()
    };
    let engine = Engine::start(ports, tables, &cfg, router).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut last = StatsSnapshot::default();
    let mut last_t = start;
    for sec in 1..=opts.seconds {
        let target = start + Duration::from_secs(sec);
        std::thread::sleep(target.saturating_duration_since(Instant::now()));
        let now = Instant::now();
        let s = engine.stats();
        let dt = now.duration_since(last_t).as_secs_f64();
        let rate = |a: u64, b: u64| (a - b) as f64 / dt / 1e6;
        if !opts.json {
            println!(
                "{sec:>3}s  in {:>7.2} Mpps  out {:>7.2} Mpps  dropped {:>6.3} Mpps  (total in {} out {} dropped {})",
                rate(s.rx_packets, last.rx_packets),
                rate(s.tx_packets, last.tx_packets),
                rate(s.dropped, last.dropped),
                s.rx_packets,
                s.tx_packets,
                s.dropped
            );
        }
        last = s;
        last_t = now;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let s = engine.stats();
    engine.stop();
    let generated = generated(&s);
    Ok(DemoSummary {
        seconds: elapsed,
        workers,
        received: s.rx_packets,
        forwarded: s.tx_packets.saturating_sub(generated),
        generated,
        dropped: s.dropped,
        mpps: s.rx_packets as f64 / elapsed / 1e6,
        drops_by_reason: s.drops.clone(),
        events: s.events.clone(),
        table_generation: s.generation,
    })
}

/// Prints the human summary.
pub fn print_summary(s: &DemoSummary) {
    println!(
        "\n{} worker(s), {:.1} s: received {}, forwarded {}, generated {}, dropped {} — {:.2} Mpps",
        s.workers, s.seconds, s.received, s.forwarded, s.generated, s.dropped, s.mpps
    );
    for (reason, n) in &s.drops_by_reason {
        println!("  dropped {reason:<24} {n}");
    }
    for (event, n) in &s.events {
        println!("  {event:<32} {n}");
    }
}
