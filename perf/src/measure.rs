//! The measurement every scenario makes: counters sampled once a second
//! for the measured seconds, then Sluice's result from their difference.

use crate::l3fwd::SystemResult;
use crate::machine;
use sluice_dataplane::engine::Engine;
use sluice_dataplane::stats::StatsSnapshot;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a measurement saw: the counters at its start and end, and Sluice's
/// result.
pub struct Measured {
    pub before: StatsSnapshot,
    pub after: StatsSnapshot,
    pub seconds: f64,
    pub result: SystemResult,
}

/// Measures `engine` (already warmed up) for `seconds`, printing a line a
/// second under `label` when `progress`, then stops it.
pub fn measure(engine: Engine, seconds: u64, label: &str, progress: bool) -> Measured {
    let workers = engine.workers();
    let s0 = engine.stats();
    let t0 = Instant::now();
    let c0 = machine::tsc();
    let mut per_second = Vec::new();
    let mut last = s0.rx_packets;
    for sec in 1..=seconds {
        std::thread::sleep(
            (t0 + Duration::from_secs(sec)).saturating_duration_since(Instant::now()),
        );
        let s = engine.stats();
        let mpps = (s.rx_packets - last) as f64 / 1e6;
        last = s.rx_packets;
        per_second.push((mpps * 1000.0).round() / 1000.0);
        if progress {
            eprintln!("{label}: {sec}/{seconds}s {mpps:.2} Mpps");
        }
    }
    let s1 = engine.stats();
    let resident_mib = machine::resident_mib();
    let dt = t0.elapsed().as_secs_f64();
    let cycles = (machine::tsc() - c0) as f64;
    engine.stop();
    let received = s1.rx_packets - s0.rx_packets;
    let pps = received as f64 / dt;
    let mut drops_by_reason = BTreeMap::new();
    for (k, v) in &s1.drops {
        let before = s0.drops.get(k).copied().unwrap_or(0);
        if *v > before {
            drops_by_reason.insert(*k, *v - before);
        }
    }
    let result = SystemResult {
        system: "sluice".into(),
        workers,
        mpps: pps / 1e6,
        mpps_per_core: pps / 1e6 / workers as f64,
        ns_per_packet: 1e9 / (pps / workers as f64),
        cycles_per_packet: cycles * workers as f64 / received.max(1) as f64,
        received,
        forwarded: s1.tx_packets - s0.tx_packets,
        dropped: s1.dropped - s0.dropped,
        drops_by_reason,
        per_second_mpps: per_second,
        resident_mib,
        round_mpps: Vec::new(),
    };
    Measured {
        before: s0,
        after: s1,
        seconds: dt,
        result,
    }
}
