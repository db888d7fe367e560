//! RFC 2544 §26.1 throughput: a binary search for the highest rate a
//! device forwards without loss (NDR) and with at most a given loss (PDR),
//! per frame size, then latency (§26.2) at fractions of the NDR.
//!
//! The device under test is either an in-memory link (`mem:loop,...`: a
//! `cap=` makes it drop what exceeds a rate, so the search has something
//! to find) or Sluice's L3 router running in this process: one worker of
//! the dataplane's `Engine` over memory ports, with the lab tables of
//! `sluice_dataplane::testing` (the generator sends from the lab's client
//! to 20.0.0.0/8, which the router forwards out of port 1).
//!
//! Each trial is a fresh generator and receiver; the search starts with a
//! trial at the ceiling (the given maximum rate, or as fast as the
//! generator goes) and halves the interval until it is narrower than the
//! resolution.

use crate::clock::Clock;
use crate::gen::Generator;
use crate::ports::PortSpec;
use crate::rate::Rate;
use crate::run::{run, RunConfig, RunReport};
use crate::spec::StreamSpec;
use serde::Serialize;
use sluice_dataplane::buf::{Batch, Packet, PoolCache};
use sluice_dataplane::engine::{default_cores, Engine, EngineConfig};
use sluice_dataplane::io::mem::{MemPeer, MemPort, MemPortConfig, RssMode};
use sluice_dataplane::io::{Port, RxQueue, TxQueue};
use sluice_dataplane::stages::router;
use sluice_dataplane::testing::{router_lab, MAC_CLIENT, MAC_P0};
use std::sync::Arc;

#[derive(Debug, Clone, clap::Args)]
pub struct Rfc2544Args {
    /// The device: `router` (Sluice's L3 router in-process) or a link
    /// (`mem:loop,cap=2mpps,delay=10us`).
    #[arg(long, default_value = "router")]
    pub dut: String,
    /// Frame sizes (bytes without FCS, as everywhere in Sluice: RFC 2544's
    /// 1518 with FCS is 1514 here).
    #[arg(
        long,
        default_value = "64,128,256,512,1024,1280,1514",
        value_delimiter = ','
    )]
    pub sizes: Vec<usize>,
    /// Seconds per trial.
    #[arg(long, default_value_t = 1.0)]
    pub trial_seconds: f64,
    /// Loss allowed at the partial drop rate, percent.
    #[arg(long, default_value_t = 0.5)]
    pub pdr: f64,
    /// Highest rate tried (default: as fast as the generator goes).
    #[arg(long)]
    pub max_rate: Option<String>,
    /// Stop when the interval is narrower than this percentage of the maximum.
    #[arg(long, default_value_t = 0.5)]
    pub resolution: f64,
    /// Latency trials at these percentages of the NDR.
    #[arg(long, default_value = "50,90,100", value_delimiter = ',')]
    pub latency_at: Vec<f64>,
    #[arg(long)]
    pub json: bool,
    #[arg(long, short)]
    pub quiet: bool,
}

/// One trial's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub target_pps: Option<f64>,
    pub tx_pps: f64,
    pub tx_packets: u64,
    pub lost: u64,
    pub loss_pct: f64,
    pub latency_p50_ns: u64,
    pub latency_p99_ns: u64,
    pub latency_max_ns: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyPoint {
    pub percent_of_ndr: f64,
    pub trial: Trial,
}

#[derive(Debug, Clone, Serialize)]
pub struct SizeResult {
    pub frame_size: usize,
    /// The highest rate offered (the first trial).
    pub ceiling_pps: f64,
    pub ndr_pps: f64,
    pub ndr_mbps: f64,
    pub pdr_pps: f64,
    pub pdr_mbps: f64,
    pub trials: Vec<Trial>,
    pub latency: Vec<LatencyPoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rfc2544Report {
    pub dut: String,
    pub trial_seconds: f64,
    pub pdr_loss_pct: f64,
    pub results: Vec<SizeResult>,
}

/// The device under test, as the generator sees it.
pub enum Dut {
    Link(Arc<dyn Port>),
    Router(RouterDut),
}

/// Sluice's router on memory ports, one worker.
pub struct RouterDut {
    engine: Option<Engine>,
    input: MemPeer,
    output: MemPeer,
}

impl Drop for RouterDut {
    fn drop(&mut self) {
        if let Some(e) = self.engine.take() {
            e.stop();
        }
    }
}

impl RouterDut {
    pub fn start() -> Result<RouterDut, String> {
        let tables = router_lab().build().map_err(|e| e.to_string())?;
        let cfg = |id: u16, mac: [u8; 6]| MemPortConfig {
            port_id: id,
            rx_queues: 1,
            tx_queues: 1,
            ring_size: 4096,
            mac,
            mtu: 1500,
            rss: RssMode::None,
        };
        let (p0, input) = MemPort::new("p0", cfg(0, MAC_P0));
        let (p1, output) = MemPort::new("p1", cfg(1, sluice_dataplane::testing::MAC_P1));
        let p2 = MemPort::sink("p2", cfg(2, sluice_dataplane::testing::MAC_P2));
        let ports: Vec<Arc<dyn Port>> = vec![p0, p1, p2];
        let ecfg = EngineConfig {
            workers: 1,
            cores: default_cores(1),
            ..EngineConfig::default()
        };
        let engine = Engine::start(ports, tables, &ecfg, router).map_err(|e| e.to_string())?;
        Ok(RouterDut {
            engine: Some(engine),
            input,
            output,
        })
    }

    /// The stream the router forwards: the lab client to 20.0.0.0/8.
    pub fn stream(size: usize) -> String {
        let m = |m: [u8; 6]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        format!(
            "udp smac={} dmac={} src=10.0.0.10 dst=20.0.0.1-20.0.0.255 sport=1024-2047 dport=9 size={size}",
            m(MAC_CLIENT),
            m(MAC_P0)
        )
    }
}

/// Transmits into a rings-mode port's receive side (a full ring loses the
/// packet, as a NIC's full descriptor ring does).
struct PeerTx(MemPeer);

impl TxQueue for PeerTx {
    fn tx_burst(&mut self, pkts: &mut Batch, pool: &mut PoolCache) -> usize {
        let n = pkts.len();
        for p in pkts.drain(..) {
            if let Err(p) = self.0.inject_to(0, p) {
                pool.free(p);
            }
        }
        n
    }
}

/// Receives what a rings-mode port transmitted.
struct PeerRx {
    peer: MemPeer,
    stash: Vec<Packet>,
}

impl RxQueue for PeerRx {
    fn rx_burst(&mut self, _pool: &mut PoolCache, out: &mut Batch) -> usize {
        if self.stash.is_empty() {
            self.peer.collect(0, &mut self.stash);
        }
        let k = out.remaining_capacity().min(self.stash.len());
        for p in self.stash.drain(..k) {
            out.push(p);
        }
        k
    }
}

impl Dut {
    pub fn open(spec: &str, clock: Clock) -> Result<Dut, String> {
        if spec == "router" {
            return Ok(Dut::Router(RouterDut::start()?));
        }
        let p = PortSpec::parse(spec).map_err(|e| format!("--dut: {e}"))?;
        if !p.loops_back() {
            return Err(format!(
                "--dut: {spec:?} does not bring packets back; use router or mem:loop,..."
            ));
        }
        Ok(Dut::Link(p.open("dut", clock)?))
    }

    fn stream(&self, size: usize) -> String {
        match self {
            Dut::Link(_) => format!(
                "udp src=10.0.0.1-10.0.0.255 dst=10.1.0.1 sport=1000-1999 dport=9 size={size}"
            ),
            Dut::Router(_) => RouterDut::stream(size),
        }
    }

    /// One trial at `rate`.
    pub fn trial(
        &self,
        size: usize,
        rate: Rate,
        seconds: f64,
        clock: Clock,
    ) -> Result<RunReport, String> {
        let spec = StreamSpec::parse_short(1, &self.stream(size)).map_err(|e| e.to_string())?;
        let mut gen = Generator::new(&[spec], 1).map_err(|e| e.to_string())?;
        let cfg = RunConfig {
            rate,
            seconds: Some(seconds),
            drain_ns: 50_000_000,
            ..RunConfig::default()
        };
        let mut quiet = |_: &crate::run::Progress| {};
        Ok(match self {
            Dut::Link(port) => {
                let mut tx = port.tx_queue(0).map_err(|e| e.to_string())?;
                let mut rx = port.rx_queue(0).map_err(|e| e.to_string())?;
                run(
                    &mut gen,
                    tx.as_mut(),
                    Some(rx.as_mut()),
                    &cfg,
                    clock,
                    None,
                    &mut quiet,
                )
            }
            Dut::Router(r) => {
                let mut tx = PeerTx(r.input.clone());
                let mut rx = PeerRx {
                    peer: r.output.clone(),
                    stash: Vec::with_capacity(8192),
                };
                run(
                    &mut gen,
                    &mut tx,
                    Some(&mut rx),
                    &cfg,
                    clock,
                    None,
                    &mut quiet,
                )
            }
        })
    }
}

fn summarise(r: &RunReport) -> Trial {
    let s = &r.streams[0];
    Trial {
        target_pps: r.target_pps,
        tx_pps: r.tx.pps,
        tx_packets: r.tx.packets,
        lost: s.lost,
        loss_pct: s.loss_pct,
        latency_p50_ns: s.latency_ns.p50,
        latency_p99_ns: s.latency_ns.p99,
        latency_max_ns: s.latency_ns.max,
    }
}

/// The search for one frame size.
pub fn search(
    dut: &Dut,
    size: usize,
    max_rate: Rate,
    a: &Rfc2544Args,
    clock: Clock,
    log: &mut dyn FnMut(&str),
) -> Result<SizeResult, String> {
    let mut trials = Vec::new();
    let mut go = |rate: Rate, trials: &mut Vec<Trial>| -> Result<Trial, String> {
        let r = dut.trial(size, rate, a.trial_seconds, clock)?;
        let t = summarise(&r);
        log(&format!(
            "  {size} B: offered {:.3} Mpps, loss {:.4}%, p99 {} ns",
            t.tx_pps / 1e6,
            t.loss_pct,
            t.latency_p99_ns
        ));
        trials.push(t.clone());
        Ok(t)
    };
    let first = go(max_rate, &mut trials)?;
    let ceiling = first.target_pps.unwrap_or(first.tx_pps);
    let pdr_frac = a.pdr / 100.0;
    let mut find = |threshold: f64, trials: &mut Vec<Trial>| -> Result<f64, String> {
        if first.loss_pct / 100.0 <= threshold {
            return Ok(ceiling);
        }
        let (mut lo, mut hi) = (0.0f64, ceiling);
        while hi - lo > ceiling * a.resolution / 100.0 {
            let mid = (lo + hi) / 2.0;
            let t = go(Rate::Pps(mid), trials)?;
            if t.loss_pct / 100.0 <= threshold {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    };
    let ndr = find(0.0, &mut trials)?;
    let pdr = find(pdr_frac, &mut trials)?.max(ndr);
    let mut latency = Vec::new();
    for pct in &a.latency_at {
        if ndr <= 0.0 {
            break;
        }
        let t = go(Rate::Pps(ndr * pct / 100.0), &mut trials)?;
        latency.push(LatencyPoint {
            percent_of_ndr: *pct,
            trial: t,
        });
    }
    let mbps = |pps: f64| pps * size as f64 * 8.0 / 1e6;
    Ok(SizeResult {
        frame_size: size,
        ceiling_pps: ceiling,
        ndr_pps: ndr,
        ndr_mbps: mbps(ndr),
        pdr_pps: pdr,
        pdr_mbps: mbps(pdr),
        trials,
        latency,
    })
}

/// The whole run.
pub fn rfc2544(a: &Rfc2544Args, log: &mut dyn FnMut(&str)) -> Result<Rfc2544Report, String> {
    if !(a.trial_seconds.is_finite() && a.trial_seconds > 0.0) {
        return Err(format!(
            "--trial-seconds: must be positive, got {}",
            a.trial_seconds
        ));
    }
    if !(0.0..100.0).contains(&a.pdr) {
        return Err(format!("--pdr: a loss percentage below 100, got {}", a.pdr));
    }
    if !(a.resolution > 0.0 && a.resolution < 100.0) {
        return Err(format!(
            "--resolution: a percentage in (0, 100), got {}",
            a.resolution
        ));
    }
    let max_rate = match &a.max_rate {
        Some(r) => Rate::parse(r, 1e10).map_err(|e| format!("--max-rate: {e}"))?,
        None => Rate::Unlimited,
    };
    let clock = Clock::new();
    let dut = Dut::open(&a.dut, clock)?;
    let mut results = Vec::new();
    for &size in &a.sizes {
        log(&format!("frame size {size}"));
        let r = search(&dut, size, max_rate, a, clock, log)?;
        log(&format!(
            "frame size {size}: NDR {:.3} Mpps, PDR ({}%) {:.3} Mpps",
            r.ndr_pps / 1e6,
            a.pdr,
            r.pdr_pps / 1e6
        ));
        results.push(r);
    }
    Ok(Rfc2544Report {
        dut: a.dut.clone(),
        trial_seconds: a.trial_seconds,
        pdr_loss_pct: a.pdr,
        results,
    })
}

/// `sluice-pktgen rfc2544`.
pub fn main(a: Rfc2544Args) -> Result<(), String> {
    let quiet = a.quiet;
    let report = rfc2544(&a, &mut |l| {
        if !quiet {
            eprintln!("{l}");
        }
    })?;
    if a.json {
        out!(
            "{}",
            serde_json::to_string(&report).expect("report serialises")
        );
    } else {
        out!(
            "| frame | NDR Mpps | NDR Mbit/s | PDR ({}%) Mpps | latency at NDR p50 / p99 ns |",
            a.pdr
        );
        out!("|---|---|---|---|---|");
        for r in &report.results {
            let lat = r
                .latency
                .iter()
                .find(|l| l.percent_of_ndr == 100.0)
                .map_or("-".to_string(), |l| {
                    format!("{} / {}", l.trial.latency_p50_ns, l.trial.latency_p99_ns)
                });
            out!(
                "| {} | {:.3} | {:.1} | {:.3} | {} |",
                r.frame_size,
                r.ndr_pps / 1e6,
                r.ndr_mbps,
                r.pdr_pps / 1e6,
                lat
            );
        }
    }
    Ok(())
}
