//! Policy in the service pipeline: judged once per new connection, on the
//! endpoint; replies of allowed connections pass because the connection
//! exists, unsolicited traffic is dropped as `policy_denied` (and judged
//! again on every packet, since nothing is created); with two workers.

use sluice_dataplane::engine::{Engine, EngineConfig};
use sluice_dataplane::io::mem::{MemPeer, MemPort, MemPortConfig, RssMode};
use sluice_dataplane::io::Port;
use sluice_dataplane::stages::service::{ServiceConfig, Steering};
use sluice_dataplane::stages::{service_pipeline, Action};
use sluice_dataplane::stats::DropReason;
use sluice_dataplane::tables::cell::TableCell;
use sluice_dataplane::tables::policy::{
    PodSpec, PolicyDirection, PolicyEntry, PolicyParts, PolicyTable, PolicyTier, PortMatch,
    ProfileSpec, RuleAction, RuleInfo,
};
use sluice_dataplane::tables::Tables;
use sluice_dataplane::testing::*;
use sluice_dataplane::wire::builder::{tcp_flags, PacketBuilder};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENT: &str = "10.0.0.10";
const STRANGER: &str = "10.0.0.200";
const SERVER: &str = "20.0.1.10";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// The server pod is isolated for ingress and allows the client pod on
/// 80/TCP; the client pod is isolated for ingress and allows nothing.
fn policy() -> PolicyTable {
    let rule = |policy: &str, index, action| RuleInfo {
        policy: policy.into(),
        tier: PolicyTier::NetworkPolicy,
        direction: PolicyDirection::Ingress,
        index,
        name: None,
        action,
    };
    PolicyTable::build(PolicyParts {
        rules: vec![
            rule("NetworkPolicy x/server", Some(0), RuleAction::Allow),
            rule("NetworkPolicy x/server", None, RuleAction::Deny),
            rule("NetworkPolicy x/client", None, RuleAction::Deny),
        ],
        pods: vec![
            PodSpec {
                addresses: vec![ip(SERVER)],
                class: 1,
                ingress: 1,
                egress: 0,
                named_ports: vec![],
            },
            PodSpec {
                addresses: vec![ip(CLIENT)],
                class: 2,
                ingress: 2,
                egress: 0,
                named_ports: vec![],
            },
        ],
        profiles: vec![
            ProfileSpec::default(),
            ProfileSpec {
                isolated: true,
                isolation_rule: 1,
                any_peer: vec![],
            },
            ProfileSpec {
                isolated: true,
                isolation_rule: 2,
                any_peer: vec![],
            },
        ],
        entries: vec![(
            (1, 2),
            vec![PolicyEntry {
                order: 0,
                rule: 0,
                tier: PolicyTier::NetworkPolicy,
                action: RuleAction::Allow,
                ports: PortMatch::Range {
                    proto: 6,
                    lo: 80,
                    hi: 80,
                },
            }],
        )],
        ..Default::default()
    })
    .unwrap()
}

fn tables() -> Tables {
    let mut b = router_lab();
    b.policy = policy();
    b.build().unwrap()
}

fn syn(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    PacketBuilder::new(MAC_CLIENT, MAC_P0)
        .ipv4(v4(src), v4(dst))
        .tcp(sport, dport, tcp_flags::SYN)
        .build()
}

fn from_server(dst: &str, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    PacketBuilder::new(MAC_GW1, MAC_P1)
        .ipv4(v4(SERVER), v4(dst))
        .tcp(sport, dport, flags)
        .build()
}

#[test]
fn allowed_connections_and_their_replies_pass_others_are_denied() {
    let mut h = Harness::new(tables(), service_pipeline(&ServiceConfig::default()));
    h.neighbours.learn(
        0,
        sluice_dataplane::state::neighbour::Family::V4,
        u32::from(v4(CLIENT)) as u128,
        MAC_CLIENT,
        h.now_ns,
    );
    // Allowed: the SYN, the SYN-ACK (a reply), the ACK.
    assert_eq!(
        h.run_one(0, syn(CLIENT, SERVER, 40000, 80)).0,
        Action::Tx(1)
    );
    let synack = from_server(CLIENT, 80, 40000, tcp_flags::SYN | tcp_flags::ACK);
    assert_eq!(h.run_one(1, synack).0, Action::Tx(0));
    let ack = PacketBuilder::new(MAC_CLIENT, MAC_P0)
        .ipv4(v4(CLIENT), v4(SERVER))
        .tcp(40000, 80, tcp_flags::ACK)
        .build();
    assert_eq!(h.run_one(0, ack).0, Action::Tx(1));
    // Another port, another source: denied, every time.
    for _ in 0..3 {
        assert_eq!(
            h.run_one(0, syn(CLIENT, SERVER, 40001, 81)).0,
            Action::Drop(DropReason::PolicyDenied)
        );
        assert_eq!(
            h.run_one(0, syn(STRANGER, SERVER, 40002, 80)).0,
            Action::Drop(DropReason::PolicyDenied)
        );
    }
    // Unsolicited from the server to the client, and a forged "reply".
    assert_eq!(
        h.run_one(1, from_server(CLIENT, 5555, 22, tcp_flags::SYN))
            .0,
        Action::Drop(DropReason::PolicyDenied)
    );
    assert_eq!(
        h.run_one(
            1,
            from_server(CLIENT, 80, 40009, tcp_flags::SYN | tcp_flags::ACK)
        )
        .0,
        Action::Drop(DropReason::PolicyDenied)
    );
    let c = h.tables.policy.counters().unwrap();
    assert_eq!(c.get(0).allowed_connections, 1);
    assert_eq!(c.get(1).denied_packets, 6);
    assert_eq!(c.get(2).denied_packets, 2);
    assert!(c.get(1).denied_bytes >= 6 * 40);
}

/// Two workers, symmetric RSS: allowed connections complete (every
/// SYN-ACK reaches the client), unsolicited SYNs from the server and SYNs
/// from a stranger never leave.
#[test]
fn replies_pass_and_unsolicited_traffic_is_denied_with_two_workers() {
    let cfg = MemPortConfig {
        rx_queues: 2,
        tx_queues: 2,
        rss: RssMode::Symmetric,
        ring_size: 4096,
        ..MemPortConfig::default()
    };
    let port = |id: u16| MemPortConfig {
        port_id: id,
        ..cfg.clone()
    };
    let (p0, client) = MemPort::new("p0", port(0));
    let (p1, server) = MemPort::new("p1", port(1));
    let (p2, _other) = MemPort::new("p2", port(2));
    let ports: Vec<Arc<dyn Port>> = vec![p0, p1, p2];
    let ecfg = EngineConfig {
        workers: 2,
        cores: vec![],
        ..EngineConfig::default()
    };
    let engine = Engine::start_each(ports, TableCell::new(tables()), &ecfg, |w| {
        service_pipeline(&ServiceConfig {
            steering: Steering::rss(&sluice_dataplane::io::rss::SYMMETRIC_KEY, 2, w),
            ..ServiceConfig::default()
        })
    })
    .unwrap();
    let pool = engine.pool().clone();
    let mut cache = pool.cache(64);
    let send = |peer: &MemPeer, cache: &mut sluice_dataplane::buf::PoolCache, f: Vec<u8>| {
        let mut p = cache.alloc().expect("pool");
        assert!(p.fill(&f));
        peer.inject(p).expect("ring room");
    };
    for mac_ip in [[10, 0, 0, 10], [10, 0, 0, 200]] {
        let garp = PacketBuilder::new(MAC_CLIENT, [0xff; 6])
            .arp(2, MAC_CLIENT, mac_ip, MAC_P0, [10, 0, 0, 1])
            .build();
        send(&client, &mut cache, garp);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.neighbours().list().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let flows: Vec<u16> = (0..200u16).map(|i| 20000 + i).collect();
    for &sport in &flows {
        send(&client, &mut cache, syn(CLIENT, SERVER, sport, 80));
        send(&client, &mut cache, syn(STRANGER, SERVER, sport, 80));
    }
    // The server answers each SYN it sees, and also tries to open
    // connections of its own to the client.
    let mut seen_syns = BTreeSet::new();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen_syns.len() < flows.len() && Instant::now() < deadline {
        got.clear();
        server.collect_all(&mut got);
        for p in got.drain(..) {
            let d = p.data();
            if d[12..14] != [0x08, 0x00] {
                continue;
            }
            let src = Ipv4Addr::new(d[26], d[27], d[28], d[29]);
            let sport = u16::from_be_bytes([d[34], d[35]]);
            assert_eq!(
                src,
                v4(CLIENT),
                "only the allowed client reaches the server"
            );
            drop(p);
            seen_syns.insert(sport);
            send(
                &server,
                &mut cache,
                from_server(CLIENT, 80, sport, tcp_flags::SYN | tcp_flags::ACK),
            );
            send(
                &server,
                &mut cache,
                from_server(CLIENT, 6000, sport, tcp_flags::SYN),
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        seen_syns.len(),
        flows.len(),
        "every allowed SYN reached the server"
    );
    let mut replies = BTreeSet::new();
    let mut back = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while replies.len() < flows.len() && Instant::now() < deadline {
        back.clear();
        client.collect_all(&mut back);
        for p in back.drain(..) {
            let d = p.data();
            if d[12..14] != [0x08, 0x00] {
                continue;
            }
            let sport = u16::from_be_bytes([d[34], d[35]]);
            let flags = d[47];
            assert_eq!(sport, 80, "only replies from port 80 reach the client");
            assert_eq!(flags, tcp_flags::SYN | tcp_flags::ACK);
            replies.insert(u16::from_be_bytes([d[36], d[37]]));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(replies.len(), flows.len(), "every reply passed");
    let want = 2 * flows.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stats = engine.stats();
    while stats.drops.get("policy_denied").copied().unwrap_or(0) < want && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
        stats = engine.stats();
    }
    assert_eq!(
        stats.drops.get("policy_denied").copied(),
        Some(want),
        "the stranger's SYNs and the server's own: {:?}",
        stats.drops
    );
    engine.stop();
}
