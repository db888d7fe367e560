//! The packet tracer: what the running tables do with one packet, stage by
//! stage, as the first packet of a new connection (VPP's `trace`, Open
//! vSwitch's `ofproto/trace`).
//!
//! The packet is built from the request, received on the port the route
//! back to its source leaves by (the port it would arrive on), and run
//! through the node pipeline's stages one at a time over the generation
//! the workers run, with a connection table, affinity table and neighbour
//! cache of its own: nothing the workers hold is read or changed, and
//! next hops whose link-layer address only the workers have learned show
//! as "unresolved". Network-service chains show hop by hop; the tracer's
//! chain stages add nothing to the hops' counters and make no mirror
//! copies (a policer hop does charge the traced packet to its bucket, as
//! the shaping stages do).

use sluice_dataplane::buf::PacketPool;
use sluice_dataplane::stages::chain::{ChainStage, HopVisit};
use sluice_dataplane::stages::l2chain::L2ChainStage;
use sluice_dataplane::stages::service::{ServiceConfig, ServiceStage};
use sluice_dataplane::stages::{
    parse::Parse, rewrite::Rewrite, route::Route, shape, Action, Burst, Context, PacketMeta, Punt,
    Stage,
};
use sluice_dataplane::state::conntrack::ConntrackConfig;
use sluice_dataplane::state::neighbour::NeighbourCache;
use sluice_dataplane::stats::WorkerStats;
use sluice_dataplane::tables::chain::Function;
use sluice_dataplane::tables::services::{Lookup, Outcome, SourceClass};
use sluice_dataplane::tables::{AdjacencyKind, PortId, Tables};
use sluice_dataplane::wire::builder::{tcp_flags, PacketBuilder};
use std::fmt::Write as _;
use std::net::IpAddr;

/// What to trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRequest {
    pub from: IpAddr,
    pub to: IpAddr,
    /// "tcp", "udp", "sctp" or "icmp".
    pub protocol: String,
    pub port: u16,
    pub source_port: u16,
    /// The port it arrives on, by name; `None`: the one the route to
    /// `from` leaves by.
    pub in_port: Option<String>,
}

/// One stage's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub stage: &'static str,
    /// "continue", "tx p1", "drop service_drop", "slow path: reject", ...
    pub decision: String,
    /// What the stage saw or changed.
    pub detail: String,
}

/// The trace: each stage that ran, and the final decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub steps: Vec<Step>,
    pub verdict: String,
}

const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0xee, 0xee];

fn port_name(t: &Tables, id: PortId) -> String {
    t.port(id)
        .map_or_else(|| format!("port {id}"), |p| p.name.clone())
}

fn decision(t: &Tables, a: &Action, m: &PacketMeta) -> String {
    match a {
        Action::Continue => "continue".into(),
        Action::Tx(p) => format!("transmit on {}", port_name(t, *p)),
        Action::Defer(p) => format!(
            "transmit on {} at {} ns (shaped)",
            port_name(t, *p),
            m.depart_ns
        ),
        Action::Drop(r) => format!("drop: {} ({})", r.name(), r.description()),
        Action::Punt(Punt::Reject) => {
            "slow path: reject (TCP reset or ICMP port unreachable from the Service address)".into()
        }
        Action::Punt(p) => format!("slow path: {p:?}"),
        Action::Handoff(w) => format!("hand off to worker {w}"),
    }
}

fn tuple(m: &PacketMeta) -> String {
    let ip = |a: u128| -> IpAddr {
        if m.family == 4 {
            IpAddr::from((a as u32).to_be_bytes())
        } else {
            IpAddr::from(a.to_be_bytes())
        }
    };
    format!(
        "{}:{} -> {}:{} proto {}",
        ip(m.src),
        m.sport,
        ip(m.dst),
        m.dport,
        m.proto
    )
}

/// The port the route to `from` leaves by, or port 0.
fn arrival_port(t: &Tables, from: IpAddr) -> PortId {
    let Some(net) = t.networks.first() else {
        return 0;
    };
    let found = match from {
        IpAddr::V4(a) => net.fib4.lookup(u32::from(a)),
        IpAddr::V6(a) => net.fib6.lookup(u128::from(a)),
    };
    let Some(adj) = found.and_then(|i| net.adjacencies.get(i as usize)) else {
        return 0;
    };
    match adj.kind {
        AdjacencyKind::Forward => net
            .next_hops
            .get(adj.first as usize)
            .map_or(0, |nh| nh.port),
        AdjacencyKind::Local => adj.port,
        _ => 0,
    }
}

/// Describes what the service table holds for the packet's destination.
fn service_detail(t: &Tables, m: &PacketMeta) -> String {
    let st = &t.services;
    if st.is_empty() || m.network != st.network {
        return "no Service rules".into();
    }
    let class = st.source_class(m.family, m.src);
    let class_name = match class {
        SourceClass::Pod => "a pod",
        SourceClass::Node => "the node",
        SourceClass::Other => "outside the cluster",
    };
    match st.lookup(m.family, m.proto, m.dst, m.dport) {
        Lookup::NoMatch => "not a Service address".into(),
        Lookup::Reject => "a cluster IP on a port it does not serve: reject".into(),
        Lookup::Drop => "an unallocated address in the service CIDRs: drop".into(),
        Lookup::Frontend(f) => {
            let mut s = format!(
                "front end (service port {}); source is {class_name}",
                f.service_port
            );
            if !f.admits(m.family, m.src) {
                s.push_str("; outside the load balancer's source ranges");
            }
            match &f.outcome[class as usize] {
                Outcome::Dnat { ring, masquerade } => {
                    let _ = write!(
                        s,
                        "; DNAT to one of {} endpoint(s) by Maglev{}{}",
                        ring.endpoints.len(),
                        if *masquerade { ", masqueraded" } else { "" },
                        if f.affinity_timeout_s > 0 {
                            format!(", client affinity {} s", f.affinity_timeout_s)
                        } else {
                            String::new()
                        }
                    );
                }
                Outcome::Reject => s.push_str("; no usable endpoints: reject"),
                Outcome::Drop => s.push_str("; no endpoint for this traffic: drop"),
            }
            s
        }
    }
}

/// What a chain stage did with the traced packet, hop by hop.
fn chain_detail(t: &Tables, visits: &[HopVisit], action: &Action) -> String {
    let chains = &t.chains;
    let Some(first) = visits.first() else {
        return "no chain steers this packet".into();
    };
    let chain = chains
        .chains()
        .iter()
        .find(|c| first.hop >= c.first as usize && first.hop < c.first as usize + c.len as usize);
    // Hops run first to last going forward, last to first in reverse.
    let direction = match visits {
        [a, b, ..] if b.hop > a.hop => " forward",
        [a, b, ..] if b.hop < a.hop => " reverse",
        _ if first.forward > 0 => " forward",
        _ if first.reverse > 0 => " reverse",
        _ => "",
    };
    let mut out = format!(
        "{}{direction}:",
        chain.map_or("a chain".to_string(), |c| c.name.clone())
    );
    for (i, v) in visits.iter().enumerate() {
        let hop = chains.hops().get(v.hop);
        let name = hop.map_or("?", |h| h.name.as_str());
        let kind = hop
            .and_then(|h| h.candidates.first())
            .map_or("no endpoint", Function::kind);
        let last = i + 1 == visits.len();
        let what = if v.skipped > 0 {
            "down, skipped".to_string()
        } else if v.dropped > 0 {
            match action {
                Action::Drop(r) => format!("dropped ({})", r.name()),
                _ => "dropped".to_string(),
            }
        } else if kind == "external" && last {
            match action {
                Action::Tx(p) => format!("sent to the function on {}", port_name(t, *p)),
                _ => "sent to the function".to_string(),
            }
        } else if v.mirrored + v.mirror_dropped > 0 {
            "passed; a copy for its mirror port (not made by the tracer)".to_string()
        } else {
            "passed".to_string()
        };
        let _ = write!(out, " {name} ({kind}) {what};");
    }
    out.pop();
    out
}

/// One stage run over the trace's burst, returning its detail line.
type StageFn<'a> = dyn FnMut(&mut Burst) -> String + 'a;

/// Runs the trace over `tables`.
pub fn trace(tables: &Tables, req: &TraceRequest) -> Result<Trace, String> {
    if req.from.is_ipv4() != req.to.is_ipv4() {
        return Err("from and to must be of one address family".into());
    }
    let in_port = match &req.in_port {
        Some(name) => tables
            .ports
            .iter()
            .position(|p| &p.name == name)
            .ok_or_else(|| format!("no port named {name:?}"))? as PortId,
        None => arrival_port(tables, req.from),
    };
    let mac = tables.port(in_port).ok_or("the node has no ports")?.mac;
    let b = PacketBuilder::new(PEER_MAC, mac);
    let b = match (req.from, req.to) {
        (IpAddr::V4(s), IpAddr::V4(d)) => b.ipv4(s, d),
        (IpAddr::V6(s), IpAddr::V6(d)) => b.ipv6(s, d),
        _ => unreachable!("checked above"),
    };
    let b = match req.protocol.to_ascii_lowercase().as_str() {
        "tcp" => b.tcp(req.source_port, req.port, tcp_flags::SYN),
        "udp" => b.udp(req.source_port, req.port),
        "sctp" => b
            .sctp(req.source_port, req.port, 0)
            .payload(&[1, 0, 0, 20, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1]),
        "icmp" => b.echo_request(req.source_port, 1),
        other => {
            return Err(format!(
                "protocol {other:?}: expected tcp, udp, sctp or icmp"
            ))
        }
    };
    let frame = b.frame_len(64).build();

    let pool = PacketPool::new("trace", 8);
    let mut cache = pool.cache(4);
    let mut pkt = cache.alloc().ok_or("no buffer")?;
    pkt.fill(&frame);
    pkt.rx_port = in_port;
    let mut burst = Burst::default();
    burst.pkts.push(pkt);
    burst.reset_actions();
    let neighbours = NeighbourCache::new(16);
    let stats = WorkerStats::default();
    let cx = Context {
        tables,
        neighbours: &neighbours,
        stats: &stats,
        now_ns: 1_000_000_000,
        worker: 0,
        workers: 1,
    };
    let mut service = ServiceStage::new(&ServiceConfig {
        conntrack: ConntrackConfig {
            capacity_v4: 64,
            capacity_v6: 64,
            ..ConntrackConfig::default()
        },
        affinity_capacity: 4,
        ..ServiceConfig::default()
    });
    let mut steps = Vec::new();
    let mut record = |stage: &'static str, burst: &Burst, detail: String| {
        steps.push(Step {
            stage,
            decision: decision(tables, &burst.action[0], &burst.meta[0]),
            detail,
        });
    };
    if tables.chains.has_l2() {
        let mut l2 = L2ChainStage::tracing();
        l2.process(&cx, &mut burst);
        let detail = match (l2.visits().is_empty(), &burst.action[0]) {
            (true, Action::Continue) => "no Ethernet chain takes this frame".to_string(),
            (true, Action::Tx(_)) => "an Ethernet chain of no working hops passes it on".into(),
            _ => chain_detail(tables, &l2.visits(), &burst.action[0]),
        };
        record("l2chain", &burst, detail);
        if burst.action[0] != Action::Continue {
            let verdict = decision(tables, &burst.action[0], &burst.meta[0]);
            for p in burst.pkts.drain(..) {
                cache.free(p);
            }
            return Ok(Trace { steps, verdict });
        }
    }
    Parse.process(&cx, &mut burst);
    record(
        "parse",
        &burst,
        format!(
            "received on {}: {}",
            port_name(tables, in_port),
            tuple(&burst.meta[0])
        ),
    );
    let mut chain = ChainStage::tracing();
    let stages: [(&'static str, &mut StageFn<'_>); 6] = [
        ("shape-egress", &mut |b: &mut Burst| {
            shape::ShapeEgress.process(&cx, b);
            limit_detail(tables, b.meta[0].family, b.meta[0].src, "egress")
        }),
        ("service", &mut |b: &mut Burst| {
            let before = service_detail(tables, &b.meta[0]);
            service.process(&cx, b);
            format!("{before}; leaves as {}", tuple(&b.meta[0]))
        }),
        ("chain", &mut |b: &mut Burst| {
            chain.process(&cx, b);
            chain_detail(tables, &chain.visits(), &b.action[0])
        }),
        ("route", &mut |b: &mut Burst| {
            Route.process(&cx, b);
            let m = &b.meta[0];
            match tables
                .networks
                .get(m.network as usize)
                .and_then(|n| n.next_hops.get(m.next_hop as usize))
            {
                Some(nh) if b.action[0] == Action::Continue => format!(
                    "next hop via {} on {}",
                    nh.gateway
                        .map_or("the destination (connected)".into(), |g| {
                            if m.family == 4 {
                                IpAddr::from((g as u32).to_be_bytes()).to_string()
                            } else {
                                IpAddr::from(g.to_be_bytes()).to_string()
                            }
                        }),
                    port_name(tables, nh.port)
                ),
                _ => String::new(),
            }
        }),
        ("rewrite", &mut |b: &mut Burst| {
            Rewrite.process(&cx, b);
            if b.action[0] == Action::Punt(Punt::Resolve) {
                "the next hop's link-layer address is not known to the tracer (the workers learn it by ARP/ND)".into()
            } else {
                String::new()
            }
        }),
        ("shape-ingress", &mut |b: &mut Burst| {
            shape::ShapeIngress.process(&cx, b);
            limit_detail(tables, b.meta[0].family, b.meta[0].dst, "ingress")
        }),
    ];
    for (name, run) in stages {
        if name == "chain" && tables.chains.is_empty() {
            continue;
        }
        if burst.action[0] != Action::Continue && !matches!(burst.action[0], Action::Tx(_)) {
            break;
        }
        if name != "shape-ingress" && burst.action[0] != Action::Continue {
            break;
        }
        let detail = run(&mut burst);
        record(name, &burst, detail);
    }
    let verdict = decision(tables, &burst.action[0], &burst.meta[0]);
    for p in burst.pkts.drain(..) {
        cache.free(p);
    }
    Ok(Trace { steps, verdict })
}

fn limit_detail(t: &Tables, family: u8, addr: u128, direction: &str) -> String {
    match t.bandwidth.get(family, addr) {
        None => "no limit".into(),
        Some(l) => {
            let lim = if direction == "egress" {
                &l.egress
            } else {
                &l.ingress
            };
            match lim {
                Some(x) => format!(
                    "pod {} {direction} limit {} bit/s, burst {} bits ({:?})",
                    l.pod, x.rate_bps, x.burst_bits, x.mode
                ),
                None => format!("pod {} has no {direction} limit", l.pod),
            }
        }
    }
}
