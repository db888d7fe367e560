//! The chain scenario: the cost of a service chain's built-in hops.
//!
//! l3fwd's traffic (64-byte UDP frames of `--flows` flows from 10.0.0.10,
//! routed by a `--routes` table) goes through the Kubernetes node pipeline
//! (parse → shaping → service → chain → route → rewrite → shaping), from an
//! in-memory replay port to an in-memory sink, once without any chain and
//! once per hop count in `--hops`: every packet is steered (source
//! 10.0.0.0/24, UDP) into one chain of that many built-in hops of the kind
//! `--hop-kind`:
//! * `firewall`: a two-rule ACL whose first rule (a deny for another
//!   prefix) misses and whose second allows;
//! * `counter`: counts only;
//! * `nat`: a 1:1 prefix NAT of the source (10.0.0.0/24 to 10.0.0.0/24,
//!   so every hop rewrites the address and both checksums and the traffic
//!   stays the same);
//! * `mirror`: a port mirror: every packet is copied (a buffer from the
//!   worker's pool and a `memcpy`) and the copy sent to a third in-memory
//!   sink port. A burst may make two copies per packet, so use at most two
//!   mirror hops (`--hops 1,2`); `forwarded` counts the copies too.
//!
//! With `--payload ethernet` the chain is an Ethernet chain (a bump in the
//! wire from the replay port to the sink, docs/chains.md): the same frames
//! are steered by an Ethernet classifier on the receiving port (source
//! 10.0.0.0/24, UDP), run through the hops before `parse`, and leave on the
//! sink port unchanged, without being routed; `nat` is refused there. The
//! "no chain" run is the routed pipeline in both cases.
//!
//! The report gives each configuration's Mpps per core and ns per packet,
//! the cost of steering plus one hop (`hops = 1` minus no chain) and the
//! cost of each further hop (the slope between the smallest and largest
//! hop counts).

use crate::l3fwd::{self, Family, Params, SystemResult};
use crate::machine::{self, Machine};
use serde::Serialize;
use sluice_dataplane::engine::{default_cores, Engine, EngineConfig};
use sluice_dataplane::io::mem::{MemPort, ReplayLimit};
use sluice_dataplane::io::Port;
use sluice_dataplane::stages::service::ServiceConfig;
use sluice_dataplane::stages::service_pipeline;
use sluice_dataplane::tables::chain::{
    Chain, ChainParts, ChainTable, Classifier, Direction, FailMode, Firewall, FirewallRule,
    Function, Hop, L2Chain, L2Classifier, Mirror, Netmap, PortRange, Prefix, TupleMatch,
};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct ChainParams {
    /// Hop counts to measure (each against no chain at all).
    #[arg(long, value_delimiter = ',', default_value = "1,3,5")]
    pub hops: Vec<usize>,
    /// firewall, counter, nat or mirror.
    #[arg(long, default_value = "firewall")]
    pub hop_kind: String,
    /// ip (the chain stage after `service`) or ethernet (the Ethernet
    /// chain stage before `parse`, frames forwarded unchanged).
    #[arg(long, default_value = "ip")]
    pub payload: String,
    /// Chain classifiers in the table (IP payload): the one that steers
    /// the traffic comes last, after `N - 1` that match none of it (Service
    /// address and TCP port, client /24, UDP /16 shapes in turn), so every
    /// packet searches the whole list.
    #[arg(long, default_value_t = 1)]
    pub classifiers: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainRun {
    pub hops: usize,
    #[serde(flatten)]
    pub result: SystemResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    pub scenario: String,
    pub params: Params,
    pub chain: ChainParams,
    pub frame_size: usize,
    pub machine: Machine,
    /// No chain first, then each hop count.
    pub runs: Vec<ChainRun>,
    /// ns per packet with one hop minus without a chain: classification
    /// and one hop.
    pub first_hop_ns: Option<f64>,
    /// ns per packet per further hop (slope from the fewest to the most
    /// hops).
    pub ns_per_hop: Option<f64>,
}

fn net24(a: [u8; 4]) -> Prefix {
    Prefix {
        family: 4,
        addr: u32::from_be_bytes(a) as u128,
        len: 24,
    }
}

fn function(kind: &str) -> Result<Function, String> {
    Ok(match kind {
        "counter" => Function::Counter,
        "firewall" => Function::Firewall(Firewall {
            rules: vec![
                FirewallRule {
                    tuple: TupleMatch {
                        src: net24([192, 168, 7, 0]),
                        proto: 17,
                        ..Default::default()
                    },
                    allow: false,
                },
                FirewallRule {
                    tuple: TupleMatch {
                        src: net24([10, 0, 0, 0]),
                        proto: 17,
                        dport: PortRange::one(9),
                        ..Default::default()
                    },
                    allow: true,
                },
            ]
            .into(),
            default_allow: false,
            allow_non_ip: true,
        }),
        "nat" => Function::Nat(Netmap {
            inside: net24([10, 0, 0, 0]),
            outside: net24([10, 0, 0, 0]),
        }),
        "mirror" => Function::Mirror(Mirror {
            port: MIRROR_PORT,
            forward: true,
            reverse: true,
        }),
        other => {
            return Err(format!(
                "--hop-kind {other:?}: expected firewall, counter, nat or mirror"
            ))
        }
    })
}

/// The sink port the `mirror` hop kind copies to.
const MIRROR_PORT: u16 = 2;

/// `n` classifiers of chain 0 that match none of the scenario's traffic
/// (which comes from 10.0.0.0/24 to the l3fwd routes' addresses).
fn decoy_classifiers(n: usize) -> impl Iterator<Item = Classifier> {
    (0..n as u32).map(|i| {
        let host = |a: u32| Prefix {
            family: 4,
            addr: u128::from(a),
            len: 32,
        };
        let tuple = match i % 3 {
            0 => TupleMatch {
                dst: host(0x0a60_0000 + i),
                proto: 6,
                dport: PortRange::one(8000 + (i % 1000) as u16),
                ..Default::default()
            },
            1 => TupleMatch {
                src: Prefix {
                    len: 24,
                    ..host(0x0b00_0000 + (i << 8))
                },
                ..Default::default()
            },
            _ => TupleMatch {
                dst: Prefix {
                    len: 16,
                    ..host(0xac00_0000 + (i << 16))
                },
                proto: 6,
                ..Default::default()
            },
        };
        Classifier {
            chain: 0,
            direction: Direction::Forward,
            network: None,
            port: None,
            tuple,
        }
    })
}

fn chain_table(hops: usize, c: &ChainParams) -> Result<ChainTable, String> {
    let (kind, payload) = (c.hop_kind.as_str(), c.payload.as_str());
    if c.classifiers == 0 {
        return Err("--classifiers: at least 1 (the one that steers the traffic)".into());
    }
    if c.classifiers > 1 && payload != "ip" {
        return Err("--classifiers: only with --payload ip".into());
    }
    if hops == 0 {
        return Ok(ChainTable::default());
    }
    let f = function(kind)?;
    let udp_from_clients = TupleMatch {
        src: net24([10, 0, 0, 0]),
        proto: 17,
        ..Default::default()
    };
    let mut parts = ChainParts {
        chains: vec![Chain {
            name: "perf".into(),
            fail: FailMode::Closed,
            first: 0,
            len: hops as u16,
        }],
        hops: (0..hops)
            .map(|i| Hop {
                name: format!("{kind}-{i}"),
                candidates: vec![f.clone()].into(),
            })
            .collect(),
        ..Default::default()
    };
    match payload {
        "ip" => {
            parts
                .classifiers
                .extend(decoy_classifiers(c.classifiers - 1));
            parts.classifiers.push(Classifier {
                chain: 0,
                direction: Direction::Forward,
                network: None,
                port: None,
                tuple: udp_from_clients,
            })
        }
        "ethernet" => {
            // From the replay port (0) to the sink (1).
            parts.l2.push(L2Chain {
                chain: 0,
                entry: 0,
                exit: 1,
            });
            parts.l2_classifiers.push(L2Classifier {
                chain: 0,
                direction: Direction::Forward,
                port: 0,
                vlan: None,
                ethertype: None,
                src_mac: None,
                dst_mac: None,
                ip: Some(udp_from_clients),
            });
        }
        other => return Err(format!("--payload {other:?}: expected ip or ethernet")),
    }
    ChainTable::build(parts, Arc::default()).map_err(|e| e.0)
}

fn one(
    scenario: &str,
    p: &Params,
    hops: usize,
    c: &ChainParams,
    progress: bool,
) -> Result<ChainRun, String> {
    let frame_size = p.frame_size.unwrap_or(64);
    let mut tables = l3fwd::tables(Family::V4, p.routes, p.seed)?;
    tables.chains = chain_table(hops, c)?;
    let frames = l3fwd::traffic(Family::V4, p.flows, frame_size, p.seed, p.routes);
    let workers = p.workers.max(1);
    let mut ports: Vec<Arc<dyn Port>> = vec![
        MemPort::replay(
            "in",
            frames,
            l3fwd::mem_cfg(0, [2, 0, 0, 0, 0, 1], workers),
            ReplayLimit::Forever,
        )
        .map_err(|e| e.to_string())?,
        MemPort::sink("out", l3fwd::mem_cfg(1, [2, 0, 0, 0, 0, 2], workers)),
    ];
    if c.hop_kind == "mirror" {
        ports.push(MemPort::sink(
            "mirror",
            l3fwd::mem_cfg(MIRROR_PORT, [2, 0, 0, 0, 0, 3], workers),
        ));
    }
    let cfg = EngineConfig {
        workers,
        cores: default_cores(workers),
        ..EngineConfig::default()
    };
    let engine = Engine::start(ports, tables, &cfg, || {
        service_pipeline(&ServiceConfig::default())
    })
    .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs(1));
    let label = format!("{scenario} payload={} hops={hops}", c.payload);
    let m = crate::measure::measure(engine, p.seconds, &label, progress);
    if m.result.forwarded < m.result.received / 2 {
        return Err(format!(
            "{label}: forwarded {} of {} (drops {:?}): the chain is not passing the traffic",
            m.result.forwarded, m.result.received, m.result.drops_by_reason
        ));
    }
    Ok(ChainRun {
        hops,
        result: m.result,
    })
}

pub fn run(
    scenario: &str,
    p: &Params,
    c: &ChainParams,
    progress: bool,
) -> Result<ChainReport, String> {
    function(&c.hop_kind)?;
    // Refused up front (nat in an Ethernet chain, an unknown payload).
    chain_table(1, c)?;
    let mut counts = vec![0];
    counts.extend(c.hops.iter().copied().filter(|h| *h > 0));
    counts.sort_unstable();
    counts.dedup();
    let mut runs = Vec::new();
    for h in counts {
        runs.push(one(scenario, p, h, c, progress)?);
    }
    let ns = |h: usize| {
        runs.iter()
            .find(|r| r.hops == h)
            .map(|r| r.result.ns_per_packet)
    };
    let first_hop_ns = ns(1).zip(ns(0)).map(|(a, b)| a - b);
    let chained: Vec<&ChainRun> = runs.iter().filter(|r| r.hops > 0).collect();
    let ns_per_hop = match (chained.first(), chained.last()) {
        (Some(a), Some(b)) if b.hops > a.hops => {
            Some((b.result.ns_per_packet - a.result.ns_per_packet) / (b.hops - a.hops) as f64)
        }
        _ => None,
    };
    Ok(ChainReport {
        scenario: scenario.to_string(),
        params: p.clone(),
        chain: c.clone(),
        frame_size: p.frame_size.unwrap_or(64),
        machine: machine::describe(),
        runs,
        first_hop_ns,
        ns_per_hop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kind: &str, payload: &str, classifiers: usize) -> ChainParams {
        ChainParams {
            hops: vec![1],
            hop_kind: kind.into(),
            payload: payload.into(),
            classifiers,
        }
    }

    #[test]
    fn the_ethernet_variant_builds_an_ethernet_chain_and_refuses_nat() {
        let t = chain_table(3, &params("firewall", "ethernet", 1)).unwrap();
        assert!(t.has_l2());
        assert_eq!(t.l2_ends(0), Some((0, 1)));
        assert!(t.classifiers().is_empty());
        let ip = chain_table(3, &params("firewall", "ip", 1)).unwrap();
        assert!(!ip.has_l2() && ip.classifiers().len() == 1);
        let e = chain_table(1, &params("nat", "ethernet", 1)).unwrap_err();
        assert!(e.contains("rewrites addresses"), "{e}");
        assert!(chain_table(1, &params("counter", "mpls", 1)).is_err());
    }

    /// The decoys match none of the traffic: the last classifier steers it.
    #[test]
    fn decoy_classifiers_leave_the_steering_to_the_last() {
        use sluice_dataplane::tables::chain::Tuple;
        let t = chain_table(1, &params("counter", "ip", 1000)).unwrap();
        assert_eq!(t.classifiers().len(), 1000);
        let frames = l3fwd::traffic(Family::V4, 64, 64, 1, 1000);
        for f in &frames {
            let ip = &f[14..34];
            let tuple = Tuple {
                family: 4,
                proto: ip[9],
                src: u128::from(u32::from_be_bytes(ip[12..16].try_into().unwrap())),
                dst: u128::from(u32::from_be_bytes(ip[16..20].try_into().unwrap())),
                sport: u16::from_be_bytes([f[34], f[35]]),
                dport: u16::from_be_bytes([f[36], f[37]]),
            };
            assert_eq!(t.classify(0, 0, &tuple), Some((0, Direction::Forward)));
            let first = &t.classifiers()[..999];
            assert!(!first.iter().any(|k| k.tuple.matches(&tuple)), "{tuple:?}");
        }
        assert!(chain_table(1, &params("counter", "ethernet", 2)).is_err());
        assert!(chain_table(1, &params("counter", "ip", 0)).is_err());
    }
}
