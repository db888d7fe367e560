//! The l3fwd scenarios: one worker routes a replayed capture of many flows
//! through a large table into a sink, both ports in memory, so the number is
//! the cost of Sluice's own work (plus one 64-byte copy per packet on
//! receive, which stands for a NIC's DMA).

use crate::machine::{self, Machine};
use serde::Serialize;
use sluice_dataplane::engine::{default_cores, Engine, EngineConfig};
use sluice_dataplane::io::mem::{MemPort, MemPortConfig, ReplayLimit, RssMode};
use sluice_dataplane::io::Port;
use sluice_dataplane::stages::{
    parse, route, router, shaped_router, Action, Burst, Context, Stage,
};
use sluice_dataplane::tables::bandwidth::{BandwidthTable, Limiter, Mode as ShapeMode, PodLimits};
use sluice_dataplane::tables::services::ShardedMap;
use sluice_dataplane::tables::{synth, NextHopSpec, RouteTarget, TablesBuilder};
use sluice_dataplane::wire::builder::PacketBuilder;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// What the worker does with each packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The router pipeline.
    Route,
    /// Every packet straight to the output port, untouched (testpmd's "io"
    /// forwarding): the cost of Sluice's I/O path alone.
    Io,
    /// Parse, then straight to the output port: the parse stage's cost.
    ParseOnly,
    /// Parse and route (lookup, checks), then straight to the output port.
    ParseRoute,
}

/// Ends a partial pipeline: what is still undecided goes to port 1.
#[derive(Debug, Default, Clone, Copy)]
pub struct ToPort1;

impl Stage for ToPort1 {
    #[inline]
    fn process(&mut self, _cx: &Context<'_>, burst: &mut Burst) {
        let n = burst.pkts.len();
        for a in &mut burst.action[..n] {
            if *a == Action::Continue {
                *a = Action::Tx(1);
            }
        }
    }
}

/// The "io" pipeline: every received packet to port 1, untouched.
#[derive(Debug, Default, Clone, Copy)]
pub struct IoForward;

impl Stage for IoForward {
    #[inline]
    fn process(&mut self, _cx: &Context<'_>, burst: &mut Burst) {
        let n = burst.pkts.len();
        burst.action[..n].fill(Action::Tx(1));
    }
}

#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct Params {
    /// Routes in the table (synthetic, realistic prefix lengths).
    #[arg(long, default_value_t = 100_000)]
    pub routes: usize,
    /// Distinct flows in the traffic.
    #[arg(long, default_value_t = 10_000)]
    pub flows: usize,
    /// Frame size in bytes (without FCS); at least the headers' size.
    #[arg(long)]
    pub frame_size: Option<usize>,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Seconds of traffic before the measured ones.
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
    /// Seed of the synthetic table and traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Pods with bandwidth limits in the table (the router then runs the
    /// shaping stages). Their addresses are not the traffic's unless
    /// `--shape-traffic`.
    #[arg(long, default_value_t = 0)]
    pub shaped_pods: usize,
    /// Limit the traffic's own destinations too (at 100 Gbit/s each, so
    /// every packet conforms and pays a limiter's compare-and-swap).
    #[arg(long)]
    pub shape_traffic: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SystemResult {
    pub system: String,
    pub workers: usize,
    pub mpps: f64,
    pub mpps_per_core: f64,
    pub ns_per_packet: f64,
    pub cycles_per_packet: f64,
    pub received: u64,
    pub forwarded: u64,
    pub dropped: u64,
    pub drops_by_reason: BTreeMap<&'static str, u64>,
    /// Mpps of each measured second, to show the spread.
    pub per_second_mpps: Vec<f64>,
    /// Resident memory of the whole process (tables, pool, rings), MiB.
    pub resident_mib: f64,
    /// Mpps of each round when the system was measured over several
    /// alternating rounds (the fields above then hold the median round).
    #[serde(default)]
    pub round_mpps: Vec<f64>,
}

/// A peer the run could not measure, and why (never a made-up number).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Skipped {
    pub system: String,
    pub reason: String,
}

/// Where the packets come from and go to.
#[derive(Debug, Clone)]
pub enum Io {
    /// An in-memory replay port into an in-memory sink.
    Mem,
    /// DPDK's net_pcap replaying the traffic into net_null.
    #[cfg(feature = "dpdk")]
    Dpdk(crate::dpdk::DpdkParams),
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub params: Params,
    /// "mem", or the DPDK run's EAL arguments and mode.
    pub io: String,
    pub frame_size: usize,
    pub machine: Machine,
    pub results: Vec<SystemResult>,
    /// "sluice/PEER": Sluice's Mpps per core over the peer's, per pair.
    #[serde(default)]
    pub ratios: BTreeMap<String, f64>,
    /// Alternating rounds each system was measured in (1: a single run).
    #[serde(default)]
    pub rounds: usize,
    /// Peers asked for but not measured, with the reason.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
}

pub(crate) const CLIENT: [u8; 6] = [2, 0, 0, 0, 0xc0, 1];
pub(crate) const MAC_IN: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_OUT: [u8; 6] = [2, 0, 0, 0, 0, 2];
pub(crate) const GATEWAYS: usize = 4;

pub(crate) fn mem_cfg(port_id: u16, mac: [u8; 6], workers: usize) -> MemPortConfig {
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

/// The table: p0 (in) and p1 (out); `routes` synthetic prefixes, each via
/// one of four gateways on p1 with static MACs.
pub(crate) fn tables(
    family: Family,
    routes: usize,
    seed: u64,
) -> Result<sluice_dataplane::tables::Tables, String> {
    tables_with(family, routes, seed, &[])
}

/// [`tables`] plus `extra` prefixes via the first gateway (the latency
/// scenario's destinations).
pub(crate) fn tables_with(
    family: Family,
    routes: usize,
    seed: u64,
    extra: &[(IpAddr, u8)],
) -> Result<sluice_dataplane::tables::Tables, String> {
    let mut b = TablesBuilder::new();
    let p0 = b.port("in", 0, MAC_IN, 1500);
    let p1 = b.port("out", 0, MAC_OUT, 1500);
    let e = |e: sluice_dataplane::tables::TablesError| e.to_string();
    b.address(p0, "10.0.0.1".parse().unwrap(), 24).map_err(e)?;
    b.address(p1, "10.0.1.1".parse().unwrap(), 24).map_err(e)?;
    b.address(p0, "fd00::1".parse().unwrap(), 64).map_err(e)?;
    b.address(p1, "fd00:1::1".parse().unwrap(), 64).map_err(e)?;
    let gws: Vec<IpAddr> = (0..GATEWAYS)
        .map(|i| match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::new(10, 0, 1, 100 + i as u8)),
            Family::V6 => IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0x100 + i as u16)),
        })
        .collect();
    for (i, g) in gws.iter().enumerate() {
        b.neighbour(0, *g, [2, 0, 0, 0, 1, i as u8]);
    }
    match family {
        Family::V4 => {
            let table = synth::ipv4_table(routes, seed);
            for (i, (p, l)) in table.iter().enumerate() {
                let target = RouteTarget::Via(vec![NextHopSpec::gateway(gws[i % GATEWAYS])]);
                b.route(0, IpAddr::V4(Ipv4Addr::from(*p)), *l, target)
                    .map_err(e)?;
            }
        }
        Family::V6 => {
            let table = synth::ipv6_table(routes, seed);
            for (i, (p, l)) in table.iter().enumerate() {
                let target = RouteTarget::Via(vec![NextHopSpec::gateway(gws[i % GATEWAYS])]);
                b.route(0, IpAddr::V6(Ipv6Addr::from(*p)), *l, target)
                    .map_err(e)?;
            }
        }
    }
    for (prefix, len) in extra {
        let target = RouteTarget::Via(vec![NextHopSpec::gateway(gws[0])]);
        b.route(0, *prefix, *len, target).map_err(e)?;
    }
    b.build().map_err(e)
}

pub(crate) fn traffic(
    family: Family,
    flows: usize,
    frame_size: usize,
    seed: u64,
    routes: usize,
) -> Vec<Vec<u8>> {
    let dests: Vec<IpAddr> = match family {
        Family::V4 => {
            let table = synth::ipv4_table(routes, seed);
            synth::addresses_covered_v4(&table, flows, seed ^ 0x5eed)
                .into_iter()
                .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
                .collect()
        }
        Family::V6 => {
            let table = synth::ipv6_table(routes, seed);
            synth::addresses_covered_v6(&table, flows, seed ^ 0x5eed)
                .into_iter()
                .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
                .collect()
        }
    };
    dests
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let b = PacketBuilder::new(CLIENT, MAC_IN);
            let b = match d {
                IpAddr::V4(d) => b.ipv4(Ipv4Addr::new(10, 0, 0, 10), d),
                IpAddr::V6(d) => b.ipv6("fd00::10".parse::<Ipv6Addr>().unwrap(), d),
            };
            b.udp(1024 + (i % 60000) as u16, 9)
                .frame_len(frame_size)
                .build()
        })
        .collect()
}

/// `pods` limited pods at 10.200.0.0 onwards (or the destinations of
/// `frames`, when given, then more up to `pods`), each with both limits.
fn shaped(pods: usize, frames: Option<&[Vec<u8>]>) -> BandwidthTable {
    let mut map = ShardedMap::new();
    let fast = || {
        Arc::new(Limiter::new(
            100_000_000_000,
            1_000_000_000,
            ShapeMode::Shape,
        ))
    };
    let mut add = |key: (u8, u128)| {
        map.insert(
            key,
            PodLimits {
                ingress: Some(fast()),
                egress: Some(fast()),
                pod: Arc::from("perf/pod"),
            },
        );
    };
    let mut n = 0;
    for f in frames.unwrap_or(&[]) {
        if n >= pods {
            break;
        }
        let key = if u16::from_be_bytes([f[12], f[13]]) == 0x0800 {
            (4, u32::from_be_bytes([f[30], f[31], f[32], f[33]]) as u128)
        } else {
            (6, u128::from_be_bytes(f[38..54].try_into().unwrap()))
        };
        add(key);
        n += 1;
    }
    for i in n..pods {
        add((4, (0x0ac8_0000 + i as u32) as u128));
    }
    BandwidthTable::new(map)
}

pub fn run(
    scenario: &str,
    family: Family,
    mode: Mode,
    p: &Params,
    io: &Io,
    progress: bool,
) -> Result<Report, String> {
    let frame_size = p.frame_size.unwrap_or(match family {
        Family::V4 => 64,
        Family::V6 => 78,
    });
    let machine = machine::describe();
    let mut tables = tables(family, p.routes, p.seed)?;
    let frames = traffic(family, p.flows, frame_size, p.seed, p.routes);
    if p.shaped_pods > 0 {
        tables.bandwidth = shaped(p.shaped_pods, p.shape_traffic.then_some(&frames[..]));
    }
    let workers = p.workers.max(1);
    #[cfg(feature = "dpdk")]
    let mut _capture = None;
    let (ports, io_text): (Vec<Arc<dyn Port>>, String) = match io {
        Io::Mem => (
            vec![
                MemPort::replay(
                    "in",
                    frames,
                    mem_cfg(0, MAC_IN, workers),
                    ReplayLimit::Forever,
                )
                .map_err(|e| e.to_string())?,
                MemPort::sink("out", mem_cfg(1, MAC_OUT, workers)),
            ],
            "mem".to_string(),
        ),
        #[cfg(feature = "dpdk")]
        Io::Dpdk(d) => {
            let opened = crate::dpdk::ports(d, &frames, workers)?;
            let mode = if d.dpdk_copy { "copy" } else { "zero-copy" };
            let text = format!("dpdk ({mode}): {}", opened.eal.join(" "));
            _capture = Some(opened.capture);
            (opened.ports, text)
        }
    };
    let cfg = EngineConfig {
        workers,
        cores: default_cores(workers),
        ..EngineConfig::default()
    };
    let engine = match mode {
        Mode::Route if p.shaped_pods > 0 => Engine::start(ports, tables, &cfg, shaped_router),
        Mode::Route => Engine::start(ports, tables, &cfg, router),
        Mode::Io => Engine::start(ports, tables, &cfg, || IoForward),
        Mode::ParseOnly => Engine::start(ports, tables, &cfg, || (parse::Parse, ToPort1)),
        Mode::ParseRoute => Engine::start(ports, tables, &cfg, || {
            (parse::Parse, (route::Route, ToPort1))
        }),
    }
    .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs(p.warmup));
    let m = crate::measure::measure(engine, p.seconds, scenario, progress);
    Ok(Report {
        scenario: scenario.to_string(),
        params: p.clone(),
        io: io_text,
        frame_size,
        results: vec![m.result],
        machine,
        ratios: BTreeMap::new(),
        rounds: 1,
        skipped: Vec::new(),
    })
}
