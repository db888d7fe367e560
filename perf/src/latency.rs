//! The latency scenario: sluice-pktgen sends marked frames (a sequence
//! number and a transmit timestamp in each) at a fixed rate through one
//! Sluice worker running the router pipeline, and receives what comes out;
//! the time from the mark to the frame's return is each packet's latency.
//!
//! The wire is memory: the generator pushes onto the input port's receive
//! ring, the worker routes (parse → route → rewrite, with the l3fwd table
//! plus a route for the stream's destinations) and transmits onto the output
//! port's ring, which the generator's thread drains. The generator runs on
//! a core other than the worker's (the first one that is not the worker's),
//! so the numbers are the pipeline's plus two ring hand-offs between cores
//! and the wait of a packet for the worker's next poll, not a NIC's.
//!
//! The histogram covers the measured seconds only (not the warm-up) and is
//! kept here, not only in the generator, so the report carries the whole
//! distribution (`latency_cdf`) as well as the percentiles.

use crate::l3fwd::{self, Family, Params, SystemResult};
use crate::machine::{self, Machine};
use hdrhistogram::Histogram;
use serde::Serialize;
use sluice_dataplane::buf::{Batch, Packet, PoolCache};
use sluice_dataplane::engine::{default_cores, Engine, EngineConfig};
use sluice_dataplane::io::mem::{MemPeer, MemPort, MemPortConfig, RssMode};
use sluice_dataplane::io::{Port, RxQueue, TxQueue};
use sluice_dataplane::stages::router;
use sluice_pktgen::clock::Clock;
use sluice_pktgen::gen::Generator;
use sluice_pktgen::rate::Rate;
use sluice_pktgen::run::{run as run_generator, RunConfig};
use sluice_pktgen::spec::StreamSpec;
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args, Serialize)]
#[group(id = "latency")]
pub struct LatencyParams {
    /// The latency scenario's offered rate, packets per second.
    #[arg(long, default_value_t = 1_000_000.0)]
    pub rate_pps: f64,
    /// The latency scenario's stream (sluice-pktgen's short form; marks are
    /// always on). Default: UDP from 10.0.0.10 to 198.18.0.0/22.
    #[arg(long)]
    pub stream: Option<String>,
}

/// The stream when none is given: 1,024 destinations, 1,024 source ports.
pub fn default_stream(frame_size: usize) -> String {
    format!(
        "udp src=10.0.0.10 dst=198.18.0.0-198.18.3.255 sport=1024-2047 dport=9 size={frame_size}"
    )
}

/// Latency percentiles of the measured seconds, nanoseconds.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
#[serde(default)]
pub struct Percentiles {
    pub samples: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    pub scenario: String,
    pub params: Params,
    pub latency_params: LatencyParams,
    pub io: String,
    pub stream: String,
    pub frame_size: usize,
    pub machine: Machine,
    /// The worker's counters over the measured seconds (at the offered
    /// rate: its cycles per packet include idle polling).
    pub results: Vec<SystemResult>,
    pub sent: u64,
    pub received: u64,
    /// Sent and never received (sent less distinct received).
    pub lost: u64,
    pub latency_ns: Percentiles,
    /// (latency ns, fraction of packets at or below it), increasing.
    pub latency_cdf: Vec<(u64, f64)>,
    pub ratios: BTreeMap<String, f64>,
    pub rounds: usize,
    pub skipped: Vec<l3fwd::Skipped>,
}

fn port_cfg(port_id: u16, mac: [u8; 6]) -> MemPortConfig {
    MemPortConfig {
        port_id,
        rx_queues: 1,
        tx_queues: 1,
        ring_size: 4096,
        mac,
        mtu: 1500,
        rss: RssMode::None,
    }
}

/// The generator's transmit side: onto the input port's receive ring.
struct InjectTx {
    peer: MemPeer,
}

impl TxQueue for InjectTx {
    fn tx_burst(&mut self, pkts: &mut Batch, _pool: &mut PoolCache) -> usize {
        let mut sent = 0;
        while !pkts.is_empty() {
            let pkt = pkts.remove(0);
            match self.peer.inject(pkt) {
                Ok(()) => sent += 1,
                Err(pkt) => {
                    // The ring is full: the rest stays for the next call.
                    pkts.insert(0, pkt);
                    break;
                }
            }
        }
        sent
    }
}

/// The generator's receive side: drains the output port's transmit ring,
/// recording each marked frame's latency once the warm-up is over.
struct CollectRx {
    peer: MemPeer,
    pending: VecDeque<Packet>,
    scratch: Vec<Packet>,
    clock: Clock,
    record_from_ns: u64,
    record_until_ns: u64,
    histogram: Histogram<u64>,
}

impl RxQueue for CollectRx {
    fn rx_burst(&mut self, _pool: &mut PoolCache, out: &mut Batch) -> usize {
        if self.pending.is_empty() {
            self.peer.collect(0, &mut self.scratch);
            self.pending.extend(self.scratch.drain(..));
        }
        if self.pending.is_empty() {
            return 0;
        }
        let now = self.clock.now_ns();
        let mut n = 0;
        while out.remaining_capacity() > 0 {
            let Some(pkt) = self.pending.pop_front() else {
                break;
            };
            if now >= self.record_from_ns && now < self.record_until_ns {
                if let Some(m) = sluice_pktgen::mark::read(pkt.data()) {
                    self.histogram
                        .saturating_record(now.saturating_sub(m.tx_ns).max(1));
                }
            }
            out.push(pkt);
            n += 1;
        }
        n
    }
}

/// The distribution as (value, cumulative fraction) points: every
/// percentile to 99, then ever finer steps into the tail, then the maximum.
pub fn cdf_points(h: &Histogram<u64>) -> Vec<(u64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut qs: Vec<f64> = (1..100).map(|i| i as f64 / 100.0).collect();
    for k in 1..=12 {
        // 99 + the k-th step of ten per decade towards 99.9999.
        let q = 1.0 - 0.01 * 10f64.powf(-(k as f64) / 3.0);
        qs.push(q);
    }
    let mut out: Vec<(u64, f64)> = Vec::with_capacity(qs.len() + 2);
    out.push((h.min(), 0.0));
    for q in qs {
        let v = h.value_at_quantile(q);
        if out.last().is_some_and(|&(pv, pq)| v < pv || q <= pq) {
            continue;
        }
        out.push((v, q));
    }
    out.push((h.max(), 1.0));
    out
}

pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        samples: h.len(),
        min: h.min(),
        mean: (h.mean() * 10.0).round() / 10.0,
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

/// A core for the generator: the first one that is not the worker's.
fn generator_core(worker: Option<usize>) -> Option<usize> {
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0..online.max(1)).find(|&c| Some(c) != worker)
}

pub fn run(
    scenario: &str,
    p: &Params,
    lp: &LatencyParams,
    progress: bool,
) -> Result<LatencyReport, String> {
    let frame_size = p.frame_size.unwrap_or(64);
    let stream = lp
        .stream
        .clone()
        .unwrap_or_else(|| default_stream(frame_size));
    let marked = if stream.contains("mark=") {
        stream.clone()
    } else {
        format!("{stream} mark=on")
    };
    let spec = StreamSpec::parse_short(1, &marked).map_err(|e| format!("--stream: {e}"))?;
    if !(lp.rate_pps > 0.0 && lp.rate_pps.is_finite()) {
        return Err(format!(
            "--rate-pps: {} is not a positive rate",
            lp.rate_pps
        ));
    }
    let machine = machine::describe();
    let extra: Vec<(IpAddr, u8)> = vec![("198.18.0.0".parse().unwrap(), 15)];
    let tables = l3fwd::tables_with(Family::V4, p.routes, p.seed, &extra)?;
    let (input, in_peer) = MemPort::new("in", port_cfg(0, [2, 0, 0, 0, 0, 1]));
    let (output, out_peer) = MemPort::new("out", port_cfg(1, [2, 0, 0, 0, 0, 2]));
    let ports: Vec<Arc<dyn Port>> = vec![input, output];
    let cores = default_cores(1);
    let gen_core = generator_core(cores.first().copied());
    let cfg = EngineConfig {
        workers: 1,
        cores,
        ..EngineConfig::default()
    };
    let engine = Engine::start(ports, tables, &cfg, router).map_err(|e| e.to_string())?;
    // The generator starts once the worker polls (its pool and tables are
    // ready), so the first packets do not wait for its start-up.
    let ready = std::time::Instant::now();
    while engine.stats().polls == 0 {
        if ready.elapsed() > Duration::from_secs(60) {
            engine.stop();
            return Err("the worker did not start polling in 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut gen = Generator::new(&[spec], p.seed).map_err(|e| e.to_string())?;
    let clock = Clock::new();
    let warmup_ns = p.warmup * 1_000_000_000;
    let measure_ns = p.seconds.max(1) * 1_000_000_000;
    let name = scenario.to_string();
    let rate = lp.rate_pps;
    let generator = std::thread::spawn(move || {
        if let Some(c) = gen_core {
            core_affinity::set_for_current(core_affinity::CoreId { id: c });
        }
        let mut tx = InjectTx { peer: in_peer };
        let mut rx = CollectRx {
            peer: out_peer,
            pending: VecDeque::with_capacity(8192),
            scratch: Vec::with_capacity(8192),
            clock,
            record_from_ns: warmup_ns,
            record_until_ns: warmup_ns + measure_ns,
            histogram: Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds"),
        };
        let cfg = RunConfig {
            rate: Rate::Pps(rate),
            burst: 1,
            seconds: Some((warmup_ns + measure_ns) as f64 / 1e9),
            drain_ns: 500_000_000,
            ..RunConfig::default()
        };
        let report = run_generator(
            &mut gen,
            &mut tx,
            Some(&mut rx as &mut dyn RxQueue),
            &cfg,
            clock,
            None,
            &mut |pr| {
                if progress {
                    crate::progress::line(&format!(
                        "{name}: {:.0}s tx {:.3} Mpps rx {:.3} Mpps",
                        pr.t,
                        pr.tx_pps / 1e6,
                        pr.rx_pps / 1e6
                    ));
                }
            },
        );
        (report, rx.histogram)
    });
    std::thread::sleep(Duration::from_nanos(warmup_ns));
    // The worker's counters over the measured seconds; the engine stops
    // only once the generator has sent its last packet and drained the
    // output, so a backlog in the rings is received, not lost.
    let (s0, t0, c0) = (engine.stats(), std::time::Instant::now(), machine::tsc());
    std::thread::sleep(Duration::from_nanos(measure_ns));
    let (s1, dt, cycles) = (
        engine.stats(),
        t0.elapsed().as_secs_f64(),
        (machine::tsc() - c0) as f64,
    );
    let joined = generator.join();
    engine.stop();
    let (report, histogram) = joined.map_err(|_| "the generator thread panicked".to_string())?;
    let received = s1.rx_packets - s0.rx_packets;
    let pps = received as f64 / dt;
    let drops_by_reason: BTreeMap<&'static str, u64> = s1
        .drops
        .iter()
        .filter_map(|(k, v)| {
            let d = v - s0.drops.get(k).copied().unwrap_or(0);
            (d > 0).then_some((*k, d))
        })
        .collect();
    let worker = SystemResult {
        system: "sluice".into(),
        workers: 1,
        mpps: pps / 1e6,
        mpps_per_core: pps / 1e6,
        ns_per_packet: 1e9 / pps.max(1e-9),
        // At the offered rate the worker also polls idle: these cycles
        // are the core's, not the packet's.
        cycles_per_packet: cycles / received.max(1) as f64,
        received,
        forwarded: s1.tx_packets - s0.tx_packets,
        dropped: s1.dropped - s0.dropped,
        drops_by_reason,
        per_second_mpps: Vec::new(),
        resident_mib: machine::resident_mib(),
        round_mpps: Vec::new(),
    };
    if progress {
        crate::progress::done();
    }
    let stream_report = report
        .streams
        .first()
        .ok_or("the generator reported no stream")?;
    if histogram.is_empty() {
        return Err(format!(
            "no marked packet came back ({} sent, {} received; the worker received {}, forwarded {}, dropped {:?})",
            report.tx.packets,
            report.rx.packets,
            worker.received,
            worker.forwarded,
            worker.drops_by_reason
        ));
    }
    Ok(LatencyReport {
        scenario: scenario.to_string(),
        params: p.clone(),
        latency_params: lp.clone(),
        io: "mem rings; generator on its own core".into(),
        stream: marked,
        frame_size,
        machine,
        results: vec![worker],
        sent: report.tx.packets,
        received: report.rx.packets,
        lost: stream_report.lost,
        latency_ns: percentiles(&histogram),
        latency_cdf: cdf_points(&histogram),
        ratios: BTreeMap::new(),
        rounds: 1,
        skipped: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cdf_rises_from_min_to_max() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3).unwrap();
        for v in 1..=10_000u64 {
            h.record(1000 + v).unwrap();
        }
        h.record(1_000_000).unwrap();
        let c = cdf_points(&h);
        assert_eq!(c.first().unwrap().1, 0.0);
        assert_eq!(*c.last().unwrap(), (h.max(), 1.0));
        assert!(c.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1));
        let p = percentiles(&h);
        assert!((5990..=6010).contains(&p.p50), "{p:?}");
        assert!(p.max >= 1_000_000);
    }

    #[test]
    fn marked_frames_come_back_through_the_router_with_their_latency() {
        let p = Params {
            routes: 1000,
            flows: 10,
            frame_size: None,
            workers: 1,
            seconds: 1,
            warmup: 0,
            seed: 1,
            shaped_pods: 0,
            shape_traffic: false,
        };
        let lp = LatencyParams {
            rate_pps: 100_000.0,
            stream: None,
        };
        let r = run("latency", &p, &lp, false).unwrap();
        // 100k packets a second for 0.8 s, less what a full ring refused
        // while the worker shared a core with other tests.
        assert!(r.sent > 5_000, "{} sent", r.sent);
        // Every packet routed: nothing lost, nothing dropped by the worker.
        assert_eq!(r.lost, 0, "lost {} of {}", r.lost, r.sent);
        assert_eq!(r.received, r.sent);
        assert!(r.latency_ns.samples > 1_000, "{:?}", r.latency_ns);
        assert!(r.latency_ns.p50 > 0 && r.latency_ns.p50 <= r.latency_ns.p99);
        assert!(r.results[0].forwarded > 0);
        assert!(
            r.results[0].drops_by_reason.is_empty(),
            "{:?}",
            r.results[0].drops_by_reason
        );
    }
}
