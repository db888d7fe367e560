//! Sluice's Kubernetes Service pipeline in this process, between the
//! client side and the server side: one dataplane worker (parse → service
//! → route → rewrite, with connection tracking and NAT) over memory ports
//! with the router lab of `sluice_dataplane::testing` and one ClusterIP
//! Service.
//!
//! | | |
//! |---|---|
//! | clients | on p0's link (10.0.0.0/24; 2001:db8::/64), pod addresses (the pod CIDRs are 10.0.0.0/25 and 2001:db8::/121, so no masquerade), MAC 02:00:00:00:c0:01, next hop p0 |
//! | Service | ClusterIP 172.30.0.10 and 2001:db8:30::a (dual stack), TCP port 80, endpoints 20.0.1.1..N or 2001:db8:20:1::1..N, port 8080 (a Maglev ring per family) |
//! | servers | the endpoints, behind the lab's gateway 10.0.1.254 / 2001:db8:1::fe on p1 (so they answer to MAC 02:00:00:00:01:fe), next hop p1 |
//!
//! Clients connect to the VIP; the worker picks an endpoint, rewrites the
//! destination, tracks the connection, and un-NATs the replies, so the
//! clients see the VIP answer. The client side announces its addresses
//! (gratuitous ARP, unsolicited neighbour advertisements) before the run
//! and answers the worker's ARP requests and neighbour solicitations.

use super::client::ClientSide;
use super::device::Io;
use super::server::ServerSide;
use super::{run, Stack, TcpConfig, TcpProgress, TcpReport};
use crate::clock::Clock;
use sluice_dataplane::buf::{Batch, Packet, PacketPool, PoolCache, BURST_SIZE};
use sluice_dataplane::engine::{default_cores, Engine, EngineConfig};
use sluice_dataplane::io::mem::{MemPeer, MemPort, MemPortConfig, RssMode};
use sluice_dataplane::io::{Port, RxQueue, TxQueue};
use sluice_dataplane::stages::service::ServiceConfig;
use sluice_dataplane::stages::service_pipeline;
use sluice_dataplane::state::conntrack::ConntrackConfig;
use sluice_dataplane::stats::StatsSnapshot;
use sluice_dataplane::tables::services::{
    Endpoint, Frontend, L4Addr, Outcome, Prefix, ServiceRing, ServiceTable,
};
use sluice_dataplane::testing::{router_lab, MAC_CLIENT, MAC_GW1, MAC_P0, MAC_P1, MAC_P2};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The Service's cluster IPs and port.
pub const VIP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(172, 30, 0, 10), 80);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x30, 0, 0, 0, 0, 0xa);
/// The endpoints' port.
pub const ENDPOINT_PORT: u16 = 8080;

/// The Service's address of a family.
pub fn vip(v6: bool) -> SocketAddr {
    if v6 {
        SocketAddr::new(VIP6.into(), VIP.port())
    } else {
        VIP.into()
    }
}

/// Endpoint `i` (from 0) of the Service.
pub fn endpoint(i: usize) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from(Ipv4Addr::new(20, 0, 1, 1)) + i as u32),
        ENDPOINT_PORT,
    )
}

/// Endpoint `i` (from 0) of the Service in a family.
pub fn endpoint_of(i: usize, v6: bool) -> SocketAddr {
    if v6 {
        let base = u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0x20, 1, 0, 0, 0, 1));
        SocketAddr::new(Ipv6Addr::from(base + i as u128).into(), ENDPOINT_PORT)
    } else {
        endpoint(i).into()
    }
}

/// A run configuration for the Service: `endpoints` servers, clients
/// 10.0.0.2 to 10.0.0.126 or 2001:db8::2 to 2001:db8::7e (pods), MACs and
/// next hops as in the module docs. Rate, concurrency, sizes and duration
/// stay the caller's.
pub fn service_config(base: &TcpConfig, endpoints: usize, v6: bool) -> TcpConfig {
    let client = |i: u8| -> IpAddr {
        if v6 {
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16).into()
        } else {
            Ipv4Addr::new(10, 0, 0, i).into()
        }
    };
    TcpConfig {
        clients: (2..=126).map(client).collect(),
        targets: vec![vip(v6)],
        listeners: (0..endpoints).map(|i| endpoint_of(i, v6)).collect(),
        client_mac: MAC_CLIENT,
        client_next_hop: MAC_P0,
        server_mac: MAC_GW1,
        server_next_hop: MAC_P1,
        ..base.clone()
    }
}

fn num(a: impl Into<IpAddr>) -> (u8, u128) {
    match a.into() {
        IpAddr::V4(a) => (4, u32::from(a) as u128),
        IpAddr::V6(a) => (6, u128::from(a)),
    }
}

fn prefix(a: impl Into<IpAddr>, len: u8) -> Prefix {
    let (family, addr) = num(a);
    Prefix { family, addr, len }
}

/// The lab's Service table: the dual-stack ClusterIP with `endpoints`
/// endpoints in each family.
pub fn service_table(endpoints: usize) -> Result<ServiceTable, String> {
    let mut st = ServiceTable::new(0);
    st.pod_cidrs = vec![
        prefix(Ipv4Addr::new(10, 0, 0, 0), 25),
        prefix(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 121),
    ];
    st.service_cidrs = vec![
        prefix(Ipv4Addr::new(172, 30, 0, 0), 16),
        prefix(Ipv6Addr::new(0x2001, 0xdb8, 0x30, 0, 0, 0, 0, 0), 112),
    ];
    for a in [
        "10.0.0.1",
        "10.0.1.1",
        "10.0.2.1",
        "2001:db8::1",
        "2001:db8:1::1",
        "2001:db8:2::1",
    ] {
        st.local_ips
            .push(num(a.parse::<IpAddr>().expect("a lab address")));
    }
    for v6 in [false, true] {
        let eps: Vec<Endpoint> = (0..endpoints)
            .map(|i| Endpoint {
                addr: num(endpoint_of(i, v6).ip()).1,
                port: ENDPOINT_PORT,
            })
            .collect();
        let (family, vip_addr) = num(vip(v6).ip());
        let ring = Arc::new(ServiceRing::build(family, &eps).map_err(|e| format!("{e:?}"))?);
        let d = |masquerade| Outcome::Dnat {
            ring: ring.clone(),
            masquerade,
        };
        st.insert_frontend(
            L4Addr {
                family,
                proto: 6,
                port: VIP.port(),
                addr: vip_addr,
            },
            Frontend {
                outcome: [d(false), d(true), d(true)],
                source_ranges: None,
                affinity_timeout_s: 0,
                service_port: 1,
            },
        );
        st.count_cluster_ip(family, vip_addr, 1);
    }
    Ok(st)
}

/// The worker's connection tracking: 2M IPv4 entries, 1M IPv6 ones and a
/// 10 s TIME-WAIT
/// (Linux's and the default's is 120 s). At 100,000 connections a second
/// the default table (262,144 entries, 120 s) is full of TIME-WAIT entries
/// within three seconds, after which the worker makes room by evicting
/// connections that are not yet assured, which are the new ones (as
/// Linux's early drop does), and handshakes fail; a benchmark of the
/// pipeline's connection rate wants the table to hold what the rate leaves
/// behind.
pub fn dut_conntrack() -> ConntrackConfig {
    let mut c = ConntrackConfig {
        capacity_v4: 1 << 21,
        capacity_v6: 1 << 20,
        ..ConntrackConfig::default()
    };
    c.timeouts.tcp_time_wait = 10;
    c
}

/// Receives what a rings-mode port transmitted, in order, a burst at a
/// time (the peer hands over everything at once; the stash keeps it
/// reversed so each packet is popped off the end).
struct PeerRxInOrder {
    peer: MemPeer,
    stash: Vec<Packet>,
}

impl RxQueue for PeerRxInOrder {
    fn rx_burst(&mut self, _pool: &mut PoolCache, out: &mut Batch) -> usize {
        if self.stash.is_empty() {
            self.peer.collect(0, &mut self.stash);
            self.stash.reverse();
        }
        let mut n = 0;
        while !out.is_full() {
            let Some(p) = self.stash.pop() else { break };
            out.push(p);
            n += 1;
        }
        n
    }
}

/// Puts frames on a rings-mode port's receive ring; what does not fit stays
/// in the batch (the generator counts it as refused, `tx_dropped`).
struct PeerTxCounted(MemPeer);

impl TxQueue for PeerTxCounted {
    fn tx_burst(&mut self, pkts: &mut Batch, _pool: &mut PoolCache) -> usize {
        let mut all = core::mem::take(pkts);
        let mut rest = all.drain(..);
        let mut sent = 0;
        for p in rest.by_ref() {
            if let Err(p) = self.0.inject_to(0, p) {
                pkts.push(p);
                break;
            }
            sent += 1;
        }
        pkts.extend(rest);
        sent
    }
}

/// Sluice's Service pipeline, one worker, between two memory ports.
pub struct ServiceDut {
    engine: Option<Engine>,
    client_peer: MemPeer,
    server_peer: MemPeer,
}

impl Drop for ServiceDut {
    fn drop(&mut self) {
        if let Some(e) = self.engine.take() {
            e.stop();
        }
    }
}

impl ServiceDut {
    /// Starts the worker (pinned to `core`, or to the last core).
    pub fn start(endpoints: usize, core: Option<usize>) -> Result<ServiceDut, String> {
        if endpoints == 0 || endpoints > 250 {
            return Err(format!("--endpoints: 1-250, got {endpoints}"));
        }
        let mut b = router_lab();
        b.services = service_table(endpoints)?;
        let tables = b.build().map_err(|e| e.to_string())?;
        let cfg = |id: u16, mac: [u8; 6]| MemPortConfig {
            port_id: id,
            rx_queues: 1,
            tx_queues: 1,
            ring_size: 32 * 1024,
            mac,
            mtu: 1500,
            rss: RssMode::None,
        };
        let (p0, client_peer) = MemPort::new("p0", cfg(0, MAC_P0));
        let (p1, server_peer) = MemPort::new("p1", cfg(1, MAC_P1));
        let p2 = MemPort::sink("p2", cfg(2, MAC_P2));
        let ports: Vec<Arc<dyn Port>> = vec![p0, p1, p2];
        let ecfg = EngineConfig {
            workers: 1,
            cores: core.map_or_else(|| default_cores(1), |c| vec![c]),
            pool_size: 32 * 1024,
            ..EngineConfig::default()
        };
        let engine = Engine::start(ports, tables, &ecfg, || {
            service_pipeline(&ServiceConfig {
                conntrack: dut_conntrack(),
                ..ServiceConfig::default()
            })
        })
        .map_err(|e| e.to_string())?;
        Ok(ServiceDut {
            engine: Some(engine),
            client_peer,
            server_peer,
        })
    }

    /// The worker's counters (drops by reason, events).
    pub fn stats(&self) -> StatsSnapshot {
        self.engine.as_ref().expect("running").stats()
    }

    /// Neighbours the worker knows.
    pub fn neighbours(&self) -> usize {
        self.engine
            .as_ref()
            .expect("running")
            .neighbours()
            .list()
            .len()
    }

    /// Runs `cfg` (see [`service_config`]) through the worker.
    pub fn run(
        &self,
        cfg: &TcpConfig,
        progress: &mut dyn FnMut(&TcpProgress),
    ) -> Result<TcpReport, String> {
        cfg.validate()?;
        let clock = Clock::new();
        let pool = PacketPool::new("pktgen-tcp", cfg.pool_size.max(4 * BURST_SIZE as u32));
        let io = |peer: &MemPeer| {
            Io::new(
                Box::new(PeerRxInOrder {
                    peer: peer.clone(),
                    stash: Vec::with_capacity(16 * 1024),
                }),
                Box::new(PeerTxCounted(peer.clone())),
                pool.cache(4 * BURST_SIZE),
            )
        };
        let shards = cfg.shards();
        let mut stacks = [
            Stack::new(
                io(&self.client_peer),
                Some(ClientSide::new(cfg, shards, cfg.seed)),
                None,
            ),
            Stack::new(
                io(&self.server_peer),
                None,
                Some(ServerSide::new(cfg, shards, cfg.seed)),
            ),
        ];
        if cfg.announce {
            let before = self.neighbours();
            stacks[0].announce();
            // The worker learns the clients before the first reply needs
            // them (else it resolves them itself, which also works, but
            // loses the first SYN-ACKs to its resolution).
            let deadline = Instant::now() + Duration::from_secs(2);
            let want = before + cfg.clients.len();
            while self.neighbours() < want && Instant::now() < deadline {
                stacks[0].receive();
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let before = self.stats();
        let mut report = run(&mut stacks, cfg, clock, progress);
        let after = self.stats();
        let delta = |a: &std::collections::BTreeMap<&'static str, u64>,
                     b: &std::collections::BTreeMap<&'static str, u64>| {
            a.iter()
                .map(|(k, v)| (k.to_string(), v - b.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect()
        };
        report.dut_drops = delta(&after.drops, &before.drops);
        report.dut_events = delta(&after.events, &before.events);
        Ok(report)
    }
}
