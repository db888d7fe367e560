//! The service-lb scenario: one worker runs the Kubernetes node pipeline
//! (parse → service → route → rewrite) over traffic to many Services, from
//! an in-memory generator port to an in-memory sink.
//!
//! The state: `--services` ClusterIP Services (half TCP port 80, half UDP
//! port 53), each with `--endpoints` endpoints behind one gateway; clients
//! are pods (destination NAT only, as most Service traffic is).
//!
//! The traffic, 64-byte frames:
//! 1. Warm-up: `--flows` connections are opened and answered: each one's
//!    first packet (TCP SYN or UDP), then its reply from the endpoint the
//!    Maglev ring chose (TCP SYN-ACK or UDP), then, for TCP, the client's
//!    ACK, so that every connection is established and assured, as live
//!    connections are.
//! 2. Measured: each packet is, with probability `--new-share`, the first
//!    packet of a connection never seen before (a new source address and
//!    port), otherwise a packet of one of the established connections
//!    (spread over all of them by a stride, so the connection table is
//!    read all over).
//!
//! The generator writes a template and patches addresses, ports and
//! checksums per packet: its cost is part of the measured core's work, as
//! the replay port's copy is in l3fwd.

use crate::machine::{self, Machine};
use serde::Serialize;
use sluice_dataplane::buf::{Batch, PoolCache};
use sluice_dataplane::engine::{default_cores, Engine, EngineConfig};
use sluice_dataplane::io::mem::{MemPort, MemPortConfig, RssMode};
use sluice_dataplane::io::{
    bump, Port, PortError, PortInfo, PortStats, QueueCounters, RxQueue, TxQueue,
};
use sluice_dataplane::stages::service::ServiceConfig;
use sluice_dataplane::stages::{parse, service_pipeline, PacketMeta};
use sluice_dataplane::state::conntrack::{Conntrack, ConntrackConfig, Family};
use sluice_dataplane::tables::cell::TableCell;
use sluice_dataplane::tables::services::{
    Endpoint, Frontend, L4Addr, Outcome, Prefix, ServiceRing, ServiceTable,
};
use sluice_dataplane::tables::{NextHopSpec, RouteTarget, Tables, TablesBuilder};
use sluice_dataplane::wire::builder::{tcp_flags, PacketBuilder};
use sluice_dataplane::wire::checksum;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args, Serialize)]
#[group(id = "service_lb")]
pub struct Params {
    /// ClusterIP Services (one port each: even ones TCP/80, odd ones UDP/53).
    #[arg(long, default_value_t = 10_000)]
    pub services: u32,
    /// Endpoints per Service.
    #[arg(long, default_value_t = 10)]
    pub endpoints: u32,
    /// Established connections the measured traffic runs over.
    #[arg(long, default_value_t = 1_000_000)]
    pub connections: u32,
    /// Share of measured packets that open a new connection.
    #[arg(long, default_value_t = 0.10)]
    pub new_share: f64,
    /// IPv4 connection-table capacity of the worker (rounded up to a
    /// power of two).
    #[arg(long, default_value_t = 1 << 21)]
    pub conntrack_capacity: usize,
    /// Synthetic routes added to the table (the `full` scenario's routing
    /// table), all via the one gateway; set from `--routes` there.
    #[arg(skip)]
    pub extra_routes: usize,
    /// Seconds of steady traffic between the connections' warm-up and the
    /// measurement; set from `--warmup`.
    #[arg(skip = 1u64)]
    pub settle_seconds: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub params: Params,
    pub seconds: u64,
    pub frame_size: usize,
    pub machine: Machine,
    pub results: Vec<crate::l3fwd::SystemResult>,
    /// Connections created per second while measured (the new-flow rate).
    pub new_connections_per_second: f64,
    /// Connections in the table at the end.
    pub connections: u64,
    pub evicted: u64,
    /// Bytes of connection table per tracked IPv4 flow, both lookup keys
    /// included.
    pub bytes_per_flow: usize,
    pub warmup_seconds: f64,
}

pub(crate) const MAC_IN: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_OUT: [u8; 6] = [2, 0, 0, 0, 0, 2];
pub(crate) const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0xc0, 1];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];

pub(crate) const VIP_BASE: u32 = 0xac1e_0000; // 172.30.0.0/16
pub(crate) const EP_BASE: u32 = 0x0a80_0000; // 10.128.0.0/9
pub(crate) const EST_BASE: u32 = 0x0a40_0000; // 10.64.0.0/11: established clients
const NEW_BASE: u32 = 0x0a60_0000; // 10.96.0.0/11: new clients
const TCP: u8 = 6;

pub(crate) fn proto_of(service: u32) -> (u8, u16) {
    if service.is_multiple_of(2) {
        (TCP, 80)
    } else {
        (17, 53)
    }
}

pub(crate) fn build_tables(p: &Params) -> Result<(Tables, Vec<Arc<ServiceRing>>), String> {
    let mut b = TablesBuilder::new();
    let p0 = b.port("in", 0, MAC_IN, 1500);
    let p1 = b.port("out", 0, MAC_OUT, 1500);
    let e = |e: sluice_dataplane::tables::TablesError| e.to_string();
    b.address(p0, "10.0.0.1".parse().unwrap(), 24).map_err(e)?;
    b.address(p1, "10.0.1.1".parse().unwrap(), 24).map_err(e)?;
    let gw: IpAddr = "10.0.1.254".parse().unwrap();
    b.neighbour(0, gw, GW_MAC);
    for (net, len) in [("10.128.0.0", 9), ("10.64.0.0", 10)] {
        b.route(
            0,
            net.parse().unwrap(),
            len,
            RouteTarget::Via(vec![NextHopSpec::gateway(gw)]),
        )
        .map_err(e)?;
    }
    if p.extra_routes > 0 {
        for (prefix, len) in sluice_dataplane::tables::synth::ipv4_table(p.extra_routes, 1) {
            b.route(
                0,
                IpAddr::V4(Ipv4Addr::from(prefix)),
                len,
                RouteTarget::Via(vec![NextHopSpec::gateway(gw)]),
            )
            .map_err(e)?;
        }
    }
    let mut st = ServiceTable::new(0);
    st.pod_cidrs.push(Prefix {
        family: 4,
        addr: 0x0a00_0000,
        len: 8,
    });
    st.service_cidrs.push(Prefix {
        family: 4,
        addr: VIP_BASE as u128,
        len: 16,
    });
    st.local_ips.push((4, 0x0a00_0001));
    st.local_ips.push((4, 0x0a00_0101));
    let mut rings = Vec::with_capacity(p.services as usize);
    for s in 0..p.services {
        let (proto, port) = proto_of(s);
        let eps: Vec<Endpoint> = (0..p.endpoints)
            .map(|j| Endpoint {
                addr: (EP_BASE + s * p.endpoints + j) as u128,
                port: 8080,
            })
            .collect();
        let ring = Arc::new(ServiceRing::build(4, &eps).map_err(|e| e.to_string())?);
        let d = |masquerade| Outcome::Dnat {
            ring: ring.clone(),
            masquerade,
        };
        st.insert_frontend(
            L4Addr {
                family: 4,
                proto,
                port,
                addr: (VIP_BASE + s) as u128,
            },
            Frontend {
                outcome: [d(false), d(true), d(true)],
                source_ranges: None,
                affinity_timeout_s: 0,
                service_port: s,
            },
        );
        st.count_cluster_ip(4, (VIP_BASE + s) as u128, 1);
        rings.push(ring);
    }
    b.services = st;
    Ok((b.build().map_err(e)?, rings))
}

/// A frame template with all-zero addresses and ports; patched per packet.
struct Template {
    frame: Vec<u8>,
    proto: u8,
}

impl Template {
    fn new(proto: u8, flags: u8) -> Template {
        let b = PacketBuilder::new(CLIENT_MAC, MAC_IN)
            .ipv4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED);
        let b = if proto == TCP {
            b.tcp(0, 0, flags)
        } else {
            b.udp(0, 0)
        };
        Template {
            frame: b.frame_len(64).build(),
            proto,
        }
    }

    /// Writes the template with these fields into `out`, checksums fixed
    /// from the template's (zero) values.
    #[inline]
    fn write(&self, out: &mut [u8], src: u32, dst: u32, sport: u16, dport: u16) {
        out.copy_from_slice(&self.frame);
        out[26..30].copy_from_slice(&src.to_be_bytes());
        out[30..34].copy_from_slice(&dst.to_be_bytes());
        let ip = u16::from_be_bytes([out[24], out[25]]);
        let ip = checksum::update32(checksum::update32(ip, 0, src), 0, dst);
        out[24..26].copy_from_slice(&ip.to_be_bytes());
        out[34..36].copy_from_slice(&sport.to_be_bytes());
        out[36..38].copy_from_slice(&dport.to_be_bytes());
        let at = if self.proto == TCP { 34 + 16 } else { 34 + 6 };
        let mut c = u16::from_be_bytes([out[at], out[at + 1]]);
        c = checksum::update32(c, 0, src);
        c = checksum::update32(c, 0, dst);
        c = checksum::update16(c, 0, sport);
        c = checksum::update16(c, 0, dport);
        if c == 0 && self.proto != TCP {
            c = 0xffff;
        }
        out[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// What the generator needs, shared by its port and its queue.
struct Plan {
    services: u32,
    services_magic: u64,
    flows: u32,
    /// The endpoint each established flow was sent to (for the warm-up's
    /// replies).
    endpoint: Vec<(u32, u16)>,
    /// New-connection threshold on a 32-bit random number.
    new_threshold: u32,
    syn: Template,
    syn_ack: Template,
    ack: Template,
    udp: Template,
    steady: AtomicBool,
    counters: QueueCounters,
    taken: AtomicBool,
}

impl Plan {
    #[inline]
    fn flow(&self, f: u32) -> (u32, u16, u32, u16, u8) {
        // f % services without a division (Lemire's fastmod).
        let low = self.services_magic.wrapping_mul(f as u64);
        let s = ((low as u128 * self.services as u128) >> 64) as u32;
        established(f, s)
    }
}

/// Established flow `f` of service `s` (`f` mod the Services): source,
/// source port, VIP, port, protocol.
#[inline]
fn established(f: u32, s: u32) -> (u32, u16, u32, u16, u8) {
    let (proto, port) = proto_of(s);
    (
        EST_BASE + (f >> 8),
        1024 + (f & 0xff) as u16,
        VIP_BASE + s,
        port,
        proto,
    )
}

struct GenPort {
    plan: Arc<Plan>,
}

struct GenRx {
    plan: Arc<Plan>,
    n: u64,
    cursor: u32,
    stride: u32,
    new_count: u64,
    rng: u64,
}

impl Port for GenPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            name: "gen".into(),
            driver: "generator",
            mac: MAC_IN,
            mtu: 1500,
            rx_queues: 1,
            tx_queues: 1,
            link_up: true,
            speed_mbps: 0,
        }
    }

    fn stats(&self) -> PortStats {
        self.plan.counters.snapshot()
    }

    fn rx_queue(&self, queue: u16) -> Result<Box<dyn RxQueue>, PortError> {
        if queue != 0 || self.plan.taken.swap(true, Ordering::AcqRel) {
            return Err(PortError::QueueTaken {
                port: "gen".into(),
                queue,
            });
        }
        // A stride coprime with the flow count visits every flow.
        let mut stride = ((self.plan.flows / 2 + 7919) | 1) % self.plan.flows.max(1);
        while gcd(stride, self.plan.flows) != 1 {
            stride = (stride + 2) % self.plan.flows.max(1);
        }
        Ok(Box::new(GenRx {
            plan: self.plan.clone(),
            n: 0,
            cursor: 0,
            stride,
            new_count: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
        }))
    }

    fn tx_queue(&self, _queue: u16) -> Result<Box<dyn TxQueue>, PortError> {
        Ok(Box::new(Discard))
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

struct Discard;

impl TxQueue for Discard {
    fn tx_burst(&mut self, pkts: &mut Batch, pool: &mut PoolCache) -> usize {
        let n = pkts.len();
        pool.free_batch(pkts);
        n
    }
}

impl RxQueue for GenRx {
    fn rx_burst(&mut self, pool: &mut PoolCache, out: &mut Batch) -> usize {
        let plan = &*self.plan;
        let f = plan.flows as u64;
        let mut added = 0;
        let mut bytes = 0;
        while out.remaining_capacity() > 0 {
            let Some(mut pkt) = pool.alloc() else {
                break;
            };
            let Some(buf) = pkt.reset(64) else {
                pool.free(pkt);
                break;
            };
            let n = self.n;
            self.n += 1;
            if n < f {
                let (src, sport, dst, dport, proto) = plan.flow(n as u32);
                let t = if proto == TCP { &plan.syn } else { &plan.udp };
                t.write(buf, src, dst, sport, dport);
            } else if n < 2 * f {
                let i = (n - f) as u32;
                let (src, sport, _, _, proto) = plan.flow(i);
                let (ep, ep_port) = plan.endpoint[i as usize];
                let t = if proto == TCP {
                    &plan.syn_ack
                } else {
                    &plan.udp
                };
                t.write(buf, ep, src, ep_port, sport);
            } else if n < 3 * f {
                let (src, sport, dst, dport, proto) = plan.flow((n - 2 * f) as u32);
                let t = if proto == TCP { &plan.ack } else { &plan.udp };
                t.write(buf, src, dst, sport, dport);
            } else {
                if n == 3 * f {
                    plan.steady.store(true, Ordering::Release);
                }
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                if (self.rng as u32) < plan.new_threshold {
                    let c = self.new_count;
                    self.new_count += 1;
                    let s = (c % plan.services as u64) as u32;
                    let (proto, port) = proto_of(s);
                    let src = NEW_BASE + ((c >> 14) as u32 & 0x1f_ffff);
                    let sport = 1024 + (c & 0x3fff) as u16;
                    let t = if proto == TCP { &plan.syn } else { &plan.udp };
                    t.write(buf, src, VIP_BASE + s, sport, port);
                } else {
                    // cursor += stride (mod flows), without a division.
                    self.cursor += self.stride;
                    if self.cursor >= plan.flows {
                        self.cursor -= plan.flows;
                    }
                    let (src, sport, dst, dport, proto) = plan.flow(self.cursor);
                    let t = if proto == TCP { &plan.ack } else { &plan.udp };
                    t.write(buf, src, dst, sport, dport);
                }
            }
            pkt.rx_port = 0;
            bytes += 64;
            out.push(pkt);
            added += 1;
        }
        bump(&plan.counters.rx_packets, added as u64);
        bump(&plan.counters.rx_bytes, bytes);
        added
    }
}

/// The scenario, with a policy table in the generation when given (the
/// `policy` scenario).
pub fn run_scenario(
    name: &str,
    p: &Params,
    seconds: u64,
    progress: bool,
    policy: Option<sluice_dataplane::tables::policy::PolicyTable>,
) -> Result<Report, String> {
    let machine = machine::describe();
    if p.services == 0 || p.endpoints == 0 || p.connections == 0 {
        return Err("--services, --endpoints and --connections must be at least 1".into());
    }
    let t_build = Instant::now();
    let (mut tables, rings) = build_tables(p)?;
    if let Some(policy) = policy {
        tables.policy = policy;
    }
    if progress {
        eprintln!(
            "{name}: {} services x {} endpoints built in {:.2}s",
            p.services,
            p.endpoints,
            t_build.elapsed().as_secs_f64()
        );
    }
    // The endpoint each established flow gets: the ring's pick for the
    // flow hash the pipeline computes.
    let mut endpoint = Vec::with_capacity(p.connections as usize);
    for f in 0..p.connections {
        let s = f % p.services;
        let (src, sport, dst, dport, proto) = established(f, s);
        let m = PacketMeta {
            family: 4,
            proto,
            src: src as u128,
            dst: dst as u128,
            sport,
            dport,
            ..PacketMeta::default()
        };
        let ep = rings[s as usize]
            .pick(parse::flow_hash(&m))
            .ok_or("empty ring")?;
        endpoint.push((ep.addr as u32, ep.port));
    }
    drop(rings);
    let plan = Arc::new(Plan {
        services: p.services,
        services_magic: (u64::MAX / p.services as u64).wrapping_add(1),
        flows: p.connections,
        endpoint,
        new_threshold: (p.new_share.clamp(0.0, 1.0) * u32::MAX as f64) as u32,
        syn: Template::new(TCP, tcp_flags::SYN),
        syn_ack: Template::new(TCP, tcp_flags::SYN | tcp_flags::ACK),
        ack: Template::new(TCP, tcp_flags::ACK),
        udp: Template::new(17, 0),
        steady: AtomicBool::new(false),
        counters: QueueCounters::default(),
        taken: AtomicBool::new(false),
    });
    let sink_cfg = MemPortConfig {
        port_id: 1,
        rx_queues: 1,
        tx_queues: 1,
        ring_size: 1024,
        mac: MAC_OUT,
        mtu: 1500,
        rss: RssMode::None,
    };
    let ports: Vec<Arc<dyn Port>> = vec![
        Arc::new(GenPort { plan: plan.clone() }),
        MemPort::sink("out", sink_cfg),
    ];
    let cfg = EngineConfig {
        workers: 1,
        cores: default_cores(1),
        ..EngineConfig::default()
    };
    let ct = ConntrackConfig {
        capacity_v4: p.conntrack_capacity,
        ..ConntrackConfig::default()
    };
    let bytes_per_flow = Conntrack::new(&ConntrackConfig {
        capacity_v4: 1 << 16,
        ..ct.clone()
    })
    .bytes_per_flow(Family::V4);
    let svc = ServiceConfig {
        conntrack: ct,
        ..ServiceConfig::default()
    };
    let engine = Engine::start_each(ports, TableCell::new(tables), &cfg, move |_| {
        service_pipeline(&svc)
    })
    .map_err(|e| e.to_string())?;
    let warm = Instant::now();
    while !plan.steady.load(Ordering::Acquire) {
        if warm.elapsed() > Duration::from_secs(120) {
            engine.stop();
            return Err("warm-up did not finish in 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let warmup_seconds = warm.elapsed().as_secs_f64();
    if progress {
        eprintln!("{name}: warm-up done in {warmup_seconds:.2}s");
    }
    std::thread::sleep(Duration::from_secs(p.settle_seconds));
    let m = crate::measure::measure(engine, seconds, name, progress);
    let ev =
        |s: &sluice_dataplane::stats::StatsSnapshot, k: &str| s.events.get(k).copied().unwrap_or(0);
    let (s0, s1, dt) = (&m.before, &m.after, m.seconds);
    Ok(Report {
        scenario: name.into(),
        params: p.clone(),
        seconds,
        frame_size: 64,
        machine,
        results: vec![m.result.clone()],
        new_connections_per_second: (ev(s1, "ct_created") - ev(s0, "ct_created")) as f64 / dt,
        connections: ev(s1, "ct_connections"),
        evicted: ev(s1, "ct_evicted") - ev(s0, "ct_evicted"),
        bytes_per_flow,
        warmup_seconds,
    })
}
