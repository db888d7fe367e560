//! The service pipeline (parse → service → route → rewrite) over the router
//! lab with a set of Services: DNAT and reverse NAT, masquerade, node
//! ports, reject and drop verdicts, session affinity, hairpin, SCTP, ICMP
//! errors, endpoint removal, and several workers with RSS.

use sluice_dataplane::engine::{Engine, EngineConfig};
use sluice_dataplane::io::mem::{MemPeer, MemPort, MemPortConfig, RssMode};
use sluice_dataplane::io::Port;
use sluice_dataplane::stages::service::{ServiceConfig, Steering};
use sluice_dataplane::stages::{service_pipeline, Action, Punt, Stage};
use sluice_dataplane::state::neighbour::Family;
use sluice_dataplane::stats::{DropReason, Event};
use sluice_dataplane::tables::cell::TableCell;
use sluice_dataplane::tables::services::{
    Endpoint, Frontend, L4Addr, Outcome, Prefix, ServiceRing, ServiceTable,
};
use sluice_dataplane::tables::Tables;
use sluice_dataplane::testing::*;
use sluice_dataplane::wire::builder::{tcp_flags, PacketBuilder};
use sluice_dataplane::wire::checksum;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn a4(s: &str) -> u128 {
    u32::from(s.parse::<Ipv4Addr>().unwrap()) as u128
}
fn a6(s: &str) -> u128 {
    u128::from(s.parse::<Ipv6Addr>().unwrap())
}
fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const SCTP: u8 = 132;

fn ring(family: u8, eps: &[(u128, u16)]) -> Arc<ServiceRing> {
    let eps: Vec<Endpoint> = eps
        .iter()
        .map(|&(addr, port)| Endpoint { addr, port })
        .collect();
    Arc::new(ServiceRing::build(family, &eps).unwrap())
}

/// A front end: pods are not masqueraded, the node and others are (a
/// ClusterIP with a pod CIDR detector).
fn cluster_ip(r: &Arc<ServiceRing>, service_port: u32) -> Frontend {
    let d = |masquerade| Outcome::Dnat {
        ring: r.clone(),
        masquerade,
    };
    Frontend {
        outcome: [d(false), d(true), d(true)],
        source_ranges: None,
        affinity_timeout_s: 0,
        service_port,
    }
}

fn key(family: u8, proto: u8, addr: u128, port: u16) -> L4Addr {
    L4Addr {
        family,
        proto,
        port,
        addr,
    }
}

const VIP: &str = "172.30.0.10";
const VIP_AFFINITY: &str = "172.30.0.11";
const VIP_EMPTY: &str = "172.30.0.12";
const VIP_HAIRPIN: &str = "172.30.0.13";
const VIP6: &str = "fd00:30::10";
const CLIENT: &str = "10.0.0.10";
/// A host on p0's link outside the pod CIDR.
const EXTERNAL: &str = "10.0.0.200";
const NODE_P0: &str = "10.0.0.1";
const NODE_P1: &str = "10.0.1.1";

fn web_endpoints() -> Vec<(u128, u16)> {
    vec![(a4("20.0.1.1"), 8080), (a4("20.0.1.2"), 8080)]
}

/// The lab's Services.
fn services() -> ServiceTable {
    let mut st = ServiceTable::new(0);
    st.pod_cidrs = vec![
        Prefix {
            family: 4,
            addr: a4("10.0.0.0"),
            len: 25,
        },
        Prefix {
            family: 6,
            addr: a6("2001:db8::"),
            len: 64,
        },
    ];
    st.service_cidrs = vec![
        Prefix {
            family: 4,
            addr: a4("172.30.0.0"),
            len: 16,
        },
        Prefix {
            family: 6,
            addr: a6("fd00:30::"),
            len: 108,
        },
    ];
    for a in ["10.0.0.1", "10.0.1.1", "10.0.2.1"] {
        st.local_ips.push((4, a4(a)));
    }
    st.node_port_addrs.push((4, a4(NODE_P0)));
    let web = ring(4, &web_endpoints());
    st.insert_frontend(key(4, TCP, a4(VIP), 80), cluster_ip(&web, 1));
    st.insert_frontend(
        key(4, UDP, a4(VIP), 53),
        cluster_ip(&ring(4, &[(a4("20.0.1.1"), 5353)]), 2),
    );
    st.insert_frontend(
        key(4, SCTP, a4(VIP), 80),
        cluster_ip(&ring(4, &[(a4("20.0.1.1"), 8080)]), 3),
    );
    st.count_cluster_ip(4, a4(VIP), 3);
    // A NodePort (externalTrafficPolicy Cluster): always masqueraded.
    let d = Outcome::Dnat {
        ring: web.clone(),
        masquerade: true,
    };
    st.insert_node_port(
        4,
        TCP,
        30080,
        Frontend {
            outcome: [d.clone(), d.clone(), d],
            source_ranges: None,
            affinity_timeout_s: 0,
            service_port: 4,
        },
    );
    let eps: Vec<(u128, u16)> = (1..=4).map(|i| (a4(&format!("20.0.2.{i}")), 80)).collect();
    let mut f = cluster_ip(&ring(4, &eps), 5);
    f.affinity_timeout_s = 10800;
    st.insert_frontend(key(4, TCP, a4(VIP_AFFINITY), 80), f);
    st.count_cluster_ip(4, a4(VIP_AFFINITY), 1);
    st.insert_frontend(
        key(4, TCP, a4(VIP_EMPTY), 80),
        Frontend {
            outcome: [Outcome::Reject, Outcome::Reject, Outcome::Reject],
            source_ranges: None,
            affinity_timeout_s: 0,
            service_port: 6,
        },
    );
    st.count_cluster_ip(4, a4(VIP_EMPTY), 1);
    st.insert_frontend(
        key(4, TCP, a4(VIP_HAIRPIN), 80),
        cluster_ip(&ring(4, &[(a4(CLIENT), 8080)]), 7),
    );
    st.count_cluster_ip(4, a4(VIP_HAIRPIN), 1);
    st.insert_frontend(
        key(6, TCP, a6(VIP6), 80),
        cluster_ip(&ring(6, &[(a6("2001:db8:20::1"), 8080)]), 8),
    );
    st.count_cluster_ip(6, a6(VIP6), 1);
    st
}

fn tables_with(st: ServiceTable) -> Tables {
    let mut b = router_lab();
    b.services = st;
    b.build().unwrap()
}

fn harness() -> Harness<sluice_dataplane::stages::ServicePipeline> {
    harness_with(services())
}

/// A harness whose neighbour cache knows the hosts on p0's link.
fn harness_with(st: ServiceTable) -> Harness<sluice_dataplane::stages::ServicePipeline> {
    harness_cfg(st, &ServiceConfig::default())
}

fn harness_cfg(
    st: ServiceTable,
    cfg: &ServiceConfig,
) -> Harness<sluice_dataplane::stages::ServicePipeline> {
    let h = Harness::new(tables_with(st), service_pipeline(cfg));
    for a in [CLIENT, EXTERNAL] {
        h.neighbours
            .learn(0, Family::V4, a4(a), MAC_CLIENT, h.now_ns);
    }
    h.neighbours
        .learn(0, Family::V6, a6("2001:db8::10"), MAC_CLIENT, h.now_ns);
    h
}

fn from_client() -> PacketBuilder {
    PacketBuilder::new(MAC_CLIENT, MAC_P0)
}
fn from_gw1() -> PacketBuilder {
    PacketBuilder::new(MAC_GW1, MAC_P1)
}

/// The L3/L4 view of a frame, with its checksums verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    src: u128,
    dst: u128,
    proto: u8,
    sport: u16,
    dport: u16,
    flags: u8,
}

fn seen(f: &[u8]) -> Seen {
    let et = u16::from_be_bytes([f[12], f[13]]);
    let (src, dst, proto, l4, end, pseudo) = if et == 0x0800 {
        let ihl = (f[14] & 0xf) as usize * 4;
        assert!(checksum::verify(&f[14..14 + ihl]), "IPv4 header checksum");
        let total = u16::from_be_bytes([f[16], f[17]]) as usize;
        let src: [u8; 4] = f[26..30].try_into().unwrap();
        let dst: [u8; 4] = f[30..34].try_into().unwrap();
        let proto = f[23];
        let len = (total - ihl) as u16;
        (
            u32::from_be_bytes(src) as u128,
            u32::from_be_bytes(dst) as u128,
            proto,
            14 + ihl,
            14 + total,
            checksum::pseudo_header_v4(src, dst, proto, len),
        )
    } else {
        assert_eq!(et, 0x86dd);
        let plen = u16::from_be_bytes([f[18], f[19]]) as usize;
        let src: [u8; 16] = f[22..38].try_into().unwrap();
        let dst: [u8; 16] = f[38..54].try_into().unwrap();
        let proto = f[20];
        (
            u128::from_be_bytes(src),
            u128::from_be_bytes(dst),
            proto,
            54,
            54 + plen,
            checksum::pseudo_header_v6(src, dst, proto, plen as u32),
        )
    };
    let seg = &f[l4..end];
    match proto {
        TCP | UDP => {
            let skip_udp = proto == UDP && et == 0x0800 && seg[6..8] == [0, 0];
            if !skip_udp {
                assert_eq!(
                    checksum::fold(checksum::sum(seg, pseudo)),
                    0xffff,
                    "L4 checksum"
                );
            }
        }
        SCTP => {
            let p = sluice_dataplane::wire::sctp::Packet::new_checked(seg).unwrap();
            assert!(p.verify_checksum(), "SCTP CRC32c");
        }
        1 => assert!(checksum::verify(seg), "ICMP checksum"),
        58 => assert_eq!(checksum::fold(checksum::sum(seg, pseudo)), 0xffff),
        _ => {}
    }
    let (sport, dport) = match proto {
        1 | 58 => (u16::from_be_bytes([seg[4], seg[5]]), seg[0] as u16),
        _ => (
            u16::from_be_bytes([seg[0], seg[1]]),
            u16::from_be_bytes([seg[2], seg[3]]),
        ),
    };
    Seen {
        src,
        dst,
        proto,
        sport,
        dport,
        flags: if proto == TCP { seg[13] } else { 0 },
    }
}

fn syn(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    from_client()
        .ipv4(v4(src), v4(dst))
        .tcp(sport, dport, tcp_flags::SYN)
        .build()
}

#[test]
fn clusterip_dnat_and_reverse_nat() {
    let mut h = harness();
    let (action, out) = h.run_one(0, syn(CLIENT, VIP, 40000, 80));
    assert_eq!(action, Action::Tx(1), "to the endpoint behind p1");
    let s = seen(&out);
    let eps: BTreeSet<(u128, u16)> = web_endpoints().into_iter().collect();
    assert!(
        eps.contains(&(s.dst, s.dport)),
        "DNAT to an endpoint: {s:?}"
    );
    assert_eq!(s.src, a4(CLIENT), "a pod's source is kept");
    assert_eq!(s.sport, 40000);
    let ep = (s.dst, s.dport);

    // The same flow keeps its endpoint.
    let again = from_client()
        .ipv4(v4(CLIENT), v4(VIP))
        .tcp(40000, 80, tcp_flags::ACK)
        .build();
    // (The handshake is not done: an ACK before the reply is invalid in
    // SYN_SENT; the SYN-ACK first.)
    let syn_ack = from_gw1()
        .ipv4(Ipv4Addr::from(ep.0 as u32), v4(CLIENT))
        .tcp(ep.1, 40000, tcp_flags::SYN | tcp_flags::ACK)
        .build();
    let (action, out) = h.run_one(1, syn_ack);
    assert_eq!(action, Action::Tx(0), "the reply goes back to the client");
    let r = seen(&out);
    assert_eq!((r.src, r.sport), (a4(VIP), 80), "reply comes from the VIP");
    assert_eq!((r.dst, r.dport), (a4(CLIENT), 40000));
    let (action, out) = h.run_one(0, again);
    assert_eq!(action, Action::Tx(1));
    let s2 = seen(&out);
    assert_eq!((s2.dst, s2.dport), ep);

    // Many flows spread over both endpoints.
    let mut by_ep: BTreeMap<u128, usize> = BTreeMap::new();
    for p in 0..400u16 {
        let (_, out) = h.run_one(0, syn(CLIENT, VIP, 10000 + p, 80));
        *by_ep.entry(seen(&out).dst).or_default() += 1;
    }
    assert_eq!(by_ep.len(), 2);
    assert!(by_ep.values().all(|&n| n > 120), "balance: {by_ep:?}");
}

#[test]
fn udp_and_sctp_are_translated_with_valid_checksums() {
    let mut h = harness();
    let q = from_client()
        .ipv4(v4(CLIENT), v4(VIP))
        .udp(5000, 53)
        .payload(b"query")
        .build();
    let (action, out) = h.run_one(0, q);
    assert_eq!(action, Action::Tx(1));
    let s = seen(&out);
    assert_eq!((s.dst, s.dport), (a4("20.0.1.1"), 5353));
    let answer = from_gw1()
        .ipv4(v4("20.0.1.1"), v4(CLIENT))
        .udp(5353, 5000)
        .payload(b"answer")
        .build();
    let (action, out) = h.run_one(1, answer);
    assert_eq!(action, Action::Tx(0));
    let r = seen(&out);
    assert_eq!((r.src, r.sport), (a4(VIP), 53));

    // SCTP INIT: ports change, so the CRC32c is recomputed.
    let mut init = vec![1u8, 0, 0, 20];
    init.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1]);
    let f = from_client()
        .ipv4(v4(CLIENT), v4(VIP))
        .sctp(7000, 80, 0)
        .payload(&init)
        .build();
    let (action, out) = h.run_one(0, f);
    assert_eq!(action, Action::Tx(1));
    let s = seen(&out);
    assert_eq!((s.proto, s.dst, s.dport), (SCTP, a4("20.0.1.1"), 8080));
}

#[test]
fn ipv6_clusterip() {
    let mut h = harness();
    let f = from_client()
        .ipv6(v6("2001:db8::10"), v6(VIP6))
        .tcp(40000, 80, tcp_flags::SYN)
        .build();
    let (action, out) = h.run_one(0, f);
    assert_eq!(action, Action::Tx(1));
    let s = seen(&out);
    assert_eq!((s.dst, s.dport), (a6("2001:db8:20::1"), 8080));
    let back = from_gw1()
        .ipv6(v6("2001:db8:20::1"), v6("2001:db8::10"))
        .tcp(8080, 40000, tcp_flags::SYN | tcp_flags::ACK)
        .build();
    let (action, out) = h.run_one(1, back);
    assert_eq!(action, Action::Tx(0));
    assert_eq!(seen(&out).src, a6(VIP6));
}

#[test]
fn node_port_from_outside_is_masqueraded_and_replies_return() {
    let mut h = harness();
    let f = PacketBuilder::new(MAC_CLIENT, MAC_P0)
        .ipv4(v4(EXTERNAL), v4(NODE_P0))
        .tcp(55555, 30080, tcp_flags::SYN)
        .build();
    let (action, out) = h.run_one(0, f);
    assert_eq!(action, Action::Tx(1));
    let s = seen(&out);
    assert_eq!(s.src, a4(NODE_P1), "masqueraded behind the egress port");
    assert!(s.dport == 8080);
    let nat_port = s.sport;
    let back = from_gw1()
        .ipv4(Ipv4Addr::from(s.dst as u32), v4(NODE_P1))
        .tcp(8080, nat_port, tcp_flags::SYN | tcp_flags::ACK)
        .build();
    let (action, out) = h.run_one(1, back);
    assert_eq!(action, Action::Tx(0));
    let r = seen(&out);
    assert_eq!((r.src, r.sport), (a4(NODE_P0), 30080));
    assert_eq!((r.dst, r.dport), (a4(EXTERNAL), 55555));
    // A node port on an address that does not serve node ports: not a
    // Service packet (routed as it is: to the appliance itself).
    let f = PacketBuilder::new(MAC_CLIENT, MAC_P0)
        .ipv4(v4(EXTERNAL), v4("10.0.2.1"))
        .tcp(55556, 30080, tcp_flags::SYN)
        .build();
    assert_eq!(h.run_one(0, f).0, Action::Punt(Punt::Local));
}

#[test]
fn reject_and_drop_verdicts() {
    let mut h = harness();
    // No endpoints.
    let (a, _) = h.run_one(0, syn(CLIENT, VIP_EMPTY, 1000, 80));
    assert_eq!(a, Action::Punt(Punt::Reject));
    // A port the VIP does not serve.
    let (a, _) = h.run_one(0, syn(CLIENT, VIP, 1000, 81));
    assert_eq!(a, Action::Punt(Punt::Reject));
    // An unallocated address in the service CIDR.
    let (a, _) = h.run_one(0, syn(CLIENT, "172.30.9.9", 1000, 80));
    assert_eq!(a, Action::Drop(DropReason::ServiceDrop));
    // Outside the service CIDR: routed as usual.
    let (a, _) = h.run_one(0, syn(CLIENT, "20.9.9.9", 1000, 80));
    assert_eq!(a, Action::Tx(1));
}

#[test]
fn load_balancer_source_ranges() {
    let mut st = services();
    let r = ring(4, &web_endpoints());
    let d = Outcome::Dnat {
        ring: r,
        masquerade: true,
    };
    st.insert_frontend(
        key(4, TCP, a4("192.0.2.80"), 443),
        Frontend {
            outcome: [d.clone(), d.clone(), d],
            source_ranges: Some(Arc::from(vec![Prefix {
                family: 4,
                addr: a4("30.1.0.0"),
                len: 16,
            }])),
            affinity_timeout_s: 0,
            service_port: 9,
        },
    );
    let mut h = harness_with(st);
    let admitted = PacketBuilder::new(MAC_CLIENT, MAC_P0)
        .ipv4(v4("30.1.2.3"), v4("192.0.2.80"))
        .tcp(1000, 443, tcp_flags::SYN)
        .build();
    assert_eq!(h.run_one(0, admitted).0, Action::Tx(1));
    let refused = PacketBuilder::new(MAC_CLIENT, MAC_P0)
        .ipv4(v4("30.2.2.3"), v4("192.0.2.80"))
        .tcp(1000, 443, tcp_flags::SYN)
        .build();
    assert_eq!(
        h.run_one(0, refused).0,
        Action::Drop(DropReason::ServiceSourceRange)
    );
}

#[test]
fn session_affinity_keeps_a_client_on_one_endpoint() {
    let mut h = harness();
    let mut eps = BTreeSet::new();
    for p in 0..50u16 {
        let (a, out) = h.run_one(0, syn(CLIENT, VIP_AFFINITY, 20000 + p, 80));
        assert_eq!(a, Action::Tx(1));
        eps.insert(seen(&out).dst);
    }
    assert_eq!(eps.len(), 1, "one endpoint for one client");
    // Other clients spread.
    let mut others = BTreeSet::new();
    for c in 11..60 {
        let (_, out) = h.run_one(0, syn(&format!("10.0.0.{c}"), VIP_AFFINITY, 20000, 80));
        others.insert(seen(&out).dst);
    }
    assert!(others.len() >= 3, "{others:?}");
    // After the timeout the choice is made again (by client hash: the
    // same endpoint, as no endpoint changed).
    h.now_ns += 10_801 * 1_000_000_000;
    let (_, out) = h.run_one(0, syn(CLIENT, VIP_AFFINITY, 30000, 80));
    assert!(eps.contains(&seen(&out).dst));
}

#[test]
fn hairpin_is_masqueraded() {
    let mut h = harness();
    let (a, out) = h.run_one(0, syn(CLIENT, VIP_HAIRPIN, 40000, 80));
    assert_eq!(a, Action::Tx(0), "back out the port it came from");
    let s = seen(&out);
    assert_eq!((s.dst, s.dport), (a4(CLIENT), 8080));
    assert_eq!(s.src, a4(NODE_P0), "source rewritten to the node");
    let back = from_client()
        .ipv4(v4(CLIENT), v4(NODE_P0))
        .tcp(8080, s.sport, tcp_flags::SYN | tcp_flags::ACK)
        .build();
    let (a, out) = h.run_one(0, back);
    assert_eq!(a, Action::Tx(0));
    let r = seen(&out);
    assert_eq!(
        (r.src, r.sport, r.dst, r.dport),
        (a4(VIP_HAIRPIN), 80, a4(CLIENT), 40000)
    );
}

#[test]
fn icmp_errors_about_translated_connections_are_translated_back() {
    let mut h = harness();
    let (_, out) = h.run_one(0, syn(CLIENT, VIP, 40001, 80));
    let s = seen(&out);
    // A router past p1 says the translated packet was too big; it quotes
    // the packet as it left the appliance.
    let quote = &out[14..14 + 40];
    let err = from_gw1()
        .ipv4(v4("20.0.0.254"), v4(CLIENT))
        .icmp(3, 4, 1400)
        .payload(quote)
        .build();
    let (a, out) = h.run_one(1, err);
    assert_eq!(a, Action::Tx(0));
    let e = seen(&out);
    assert_eq!(e.dst, a4(CLIENT));
    // The quote now names the VIP the client used.
    let q = &out[14 + 20 + 8..];
    assert_eq!(&q[16..20], &v4(VIP).octets());
    assert_eq!(u16::from_be_bytes([q[22], q[23]]), 80);
    assert!(checksum::verify(&q[..20]), "quoted header checksum");
    assert_eq!(h.stats.snapshot().events["icmp_error_translated"], 1);
    let _ = s;
}

#[test]
fn connections_to_removed_endpoints_are_swept() {
    let mut h = harness();
    for p in 0..100u16 {
        h.run_one(0, syn(CLIENT, VIP, 1000 + p, 80));
    }
    let ct = |h: &Harness<sluice_dataplane::stages::ServicePipeline>| {
        sluice_dataplane::stages::service_stage(&h.pipeline)
            .conntrack()
            .len()
    };
    assert_eq!(ct(&h), 100);
    // Endpoint 20.0.1.2 goes away (from both front ends that use it).
    let mut st = services();
    st.remove_node_port(4, TCP, 30080);
    st.remove_frontend(&key(4, TCP, a4(VIP), 80));
    st.insert_frontend(
        key(4, TCP, a4(VIP), 80),
        cluster_ip(&ring(4, &[(a4("20.0.1.1"), 8080)]), 1),
    );
    let mut t = tables_with(st);
    t.generation = 2;
    h.tables = t;
    let cx_run = |h: &mut Harness<sluice_dataplane::stages::ServicePipeline>| {
        let cx = sluice_dataplane::stages::Context {
            tables: &h.tables,
            neighbours: &h.neighbours,
            stats: &h.stats,
            now_ns: h.now_ns,
            worker: 0,
            workers: 1,
        };
        for _ in 0..64 {
            h.pipeline.housekeeping(&cx, true);
        }
    };
    cx_run(&mut h);
    let left = ct(&h);
    assert!(left > 20 && left < 80, "about half remain: {left}");
    assert_eq!(
        h.stats.snapshot().events["ct_endpoint_gone"] as usize,
        100 - left
    );
}

// ---------------------------------------------------------------------------
// Several workers

/// Two workers, two mem ports with two queues each and the symmetric RSS
/// key; a client on p0 opens many connections to a ClusterIP (pod source:
/// destination NAT only, replies cannot be steered) and to a node port
/// (masqueraded: replies steered by the NAT port); a server on p1 answers
/// every SYN. Every connection must complete, whatever queue its reply
/// lands on.
#[test]
fn every_connection_completes_with_two_workers() {
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
    let cell = TableCell::new(tables_with(services()));
    let ecfg = EngineConfig {
        workers: 2,
        cores: vec![],
        ..EngineConfig::default()
    };
    let engine = Engine::start_each(ports, cell, &ecfg, |w| {
        service_pipeline(&ServiceConfig {
            steering: Steering::rss(&sluice_dataplane::io::rss::SYMMETRIC_KEY, 2, w),
            ..ServiceConfig::default()
        })
    })
    .unwrap();
    let pool = engine.pool().clone();
    let mut cache = pool.cache(64);
    // The hosts on p0's link announce themselves (gratuitous ARP).
    for (mac_ip, ip) in [([10, 0, 0, 10], CLIENT), ([10, 0, 0, 200], EXTERNAL)] {
        let garp = PacketBuilder::new(MAC_CLIENT, [0xff; 6])
            .arp(2, MAC_CLIENT, mac_ip, MAC_P0, [10, 0, 0, 1])
            .build();
        let mut p = cache.alloc().unwrap();
        assert!(p.fill(&garp));
        client.inject(p).unwrap();
        let _ = ip;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.neighbours().list().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let flows: Vec<(bool, u16)> = (0..200u16).map(|i| (i % 2 == 0, 20000 + i)).collect();
    let send = |peer: &MemPeer, cache: &mut sluice_dataplane::buf::PoolCache, f: Vec<u8>| {
        let mut p = cache.alloc().expect("pool");
        assert!(p.fill(&f));
        peer.inject(p).expect("ring room");
    };
    for &(to_vip, sport) in &flows {
        let f = if to_vip {
            syn(CLIENT, VIP, sport, 80)
        } else {
            PacketBuilder::new(MAC_CLIENT, MAC_P0)
                .ipv4(v4(EXTERNAL), v4(NODE_P0))
                .tcp(sport, 30080, tcp_flags::SYN)
                .build()
        };
        send(&client, &mut cache, f);
    }
    // The server answers each SYN it sees with a SYN-ACK.
    let mut answered = 0;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered < flows.len() && Instant::now() < deadline {
        got.clear();
        server.collect_all(&mut got);
        for p in got.drain(..) {
            if p.data()[12..14] != [0x08, 0x00] {
                continue;
            }
            let s = seen(p.data());
            let f = from_gw1()
                .ipv4(Ipv4Addr::from(s.dst as u32), Ipv4Addr::from(s.src as u32))
                .tcp(s.dport, s.sport, tcp_flags::SYN | tcp_flags::ACK)
                .build();
            drop(p);
            send(&server, &mut cache, f);
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(answered, flows.len(), "every SYN reached the server");
    // The client gets every SYN-ACK, translated back.
    let mut replies: BTreeMap<u16, Seen> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut back = Vec::new();
    while replies.len() < flows.len() && Instant::now() < deadline {
        back.clear();
        client.collect_all(&mut back);
        for p in back.drain(..) {
            if p.data()[12..14] != [0x08, 0x00] {
                continue;
            }
            let s = seen(p.data());
            replies.insert(s.dport, s);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats = engine.stats();
    for &(to_vip, sport) in &flows {
        let r = replies
            .get(&sport)
            .unwrap_or_else(|| panic!("no reply for client port {sport}; drops {:?}", stats.drops));
        let from = if to_vip {
            (a4(VIP), 80)
        } else {
            (a4(NODE_P0), 30080)
        };
        assert_eq!((r.src, r.sport), from);
        assert_eq!(r.flags, tcp_flags::SYN | tcp_flags::ACK);
    }
    assert!(
        stats.events.get("handoff_sent").copied().unwrap_or(0) > 0,
        "some replies landed on the other worker"
    );
    // The two gratuitous ARP replies are consumed (and counted) as
    // unsolicited; nothing else may be dropped.
    let dropped: u64 = stats
        .drops
        .iter()
        .filter(|(k, _)| **k != "local_unhandled")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(dropped, 0, "nothing dropped: {:?}", stats.drops);
    engine.stop();
    let _ = IpAddr::V4(v4(CLIENT));
    let _ = Event::HandoffSent;
}

/// Rejects leave the slow path as nftables' `reject` does: a TCP reset from
/// the address and port the client used, ICMP port unreachable for UDP.
#[test]
fn rejects_answer_with_a_reset_or_port_unreachable() {
    let cfg = MemPortConfig {
        rx_queues: 1,
        tx_queues: 1,
        ring_size: 256,
        ..MemPortConfig::default()
    };
    let port = |id: u16| MemPortConfig {
        port_id: id,
        ..cfg.clone()
    };
    let (p0, client) = MemPort::new("p0", port(0));
    let (p1, _server) = MemPort::new("p1", port(1));
    let (p2, _other) = MemPort::new("p2", port(2));
    let ports: Vec<Arc<dyn Port>> = vec![p0, p1, p2];
    let ecfg = EngineConfig {
        workers: 1,
        cores: vec![],
        ..EngineConfig::default()
    };
    let engine = Engine::start_each(
        ports,
        TableCell::new(tables_with(services())),
        &ecfg,
        |_| service_pipeline(&ServiceConfig::default()),
    )
    .unwrap();
    let mut cache = engine.pool().cache(16);
    let mut send = |f: Vec<u8>| {
        let mut p = cache.alloc().unwrap();
        assert!(p.fill(&f));
        client.inject(p).unwrap();
    };
    let garp = PacketBuilder::new(MAC_CLIENT, [0xff; 6])
        .arp(2, MAC_CLIENT, [10, 0, 0, 10], MAC_P0, [10, 0, 0, 1])
        .build();
    send(garp);
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.neighbours().list().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let syn = from_client()
        .ipv4(v4(CLIENT), v4(VIP_EMPTY))
        .tcp_full(40000, 80, 1000, 0, tcp_flags::SYN, 64240, &[])
        .build();
    send(syn);
    send(
        from_client()
            .ipv4(v4(CLIENT), v4(VIP))
            .udp(5000, 54)
            .payload(b"x")
            .build(),
    );
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < 2 && Instant::now() < deadline {
        client.collect_all(&mut got);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(got.len(), 2, "a reset and an ICMP error");
    let rst = seen(got[0].data());
    assert_eq!((rst.src, rst.sport), (a4(VIP_EMPTY), 80));
    assert_eq!((rst.dst, rst.dport), (a4(CLIENT), 40000));
    assert_eq!(rst.flags, tcp_flags::RST | tcp_flags::ACK);
    let d = got[0].data();
    assert_eq!(
        u32::from_be_bytes(d[42..46].try_into().unwrap()),
        1001,
        "ack = ISN + 1"
    );
    let icmp = seen(got[1].data());
    assert_eq!((icmp.proto, icmp.src, icmp.dst), (1, a4(VIP), a4(CLIENT)));
    let d = got[1].data();
    assert_eq!((d[34], d[35]), (3, 3), "port unreachable");
    let stats = engine.stats();
    assert_eq!(stats.drops["service_reject"], 2);
    assert_eq!(stats.events["tcp_reset_sent"], 1);
    drop(got);
    engine.stop();
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn valid(kind: u8, to_vip: bool) -> Vec<u8> {
        let dst = if to_vip { VIP } else { "20.1.2.3" };
        let b = from_client().ipv4(v4(CLIENT), v4(dst));
        match kind % 5 {
            0 => b.tcp(40000, 80, tcp_flags::SYN).frame_len(80).build(),
            1 => b.udp(5000, 53).payload(b"query").build(),
            2 => b
                .sctp(7000, 80, 0)
                .payload(&[1, 0, 0, 20, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1])
                .build(),
            3 => b.echo_request(7, 1).frame_len(80).build(),
            _ => from_gw1()
                .ipv4(v4("20.0.0.254"), v4(CLIENT))
                .icmp(3, 4, 1400)
                .payload(&syn(CLIENT, "20.0.1.1", 40000, 8080)[14..54])
                .build(),
        }
    }

    /// A harness with small tables: each case builds its own.
    fn harness() -> Harness<sluice_dataplane::stages::ServicePipeline> {
        let cfg = ServiceConfig {
            conntrack: sluice_dataplane::state::conntrack::ConntrackConfig {
                capacity_v4: 1024,
                capacity_v6: 1024,
                ..Default::default()
            },
            affinity_capacity: 64,
            ..ServiceConfig::default()
        };
        harness_cfg(services(), &cfg)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Arbitrary bytes never panic the service pipeline, and every
        /// packet gets a decision.
        #[test]
        fn arbitrary_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..200), port in 0u16..4) {
            let mut h = harness();
            let (action, _) = h.run_one(port, frame);
            prop_assert_ne!(action, Action::Continue);
        }

        /// Valid Service, routed and ICMP-error frames with a byte changed
        /// anywhere: never a panic; a forwarded IPv4 frame's header still
        /// verifies; the connection table stays usable.
        #[test]
        fn mutated_frames_are_handled(kind in any::<u8>(), to_vip in any::<bool>(), pos in 0usize..90, val in any::<u8>()) {
            let mut h = harness();
            let mut f = valid(kind, to_vip);
            let pos = pos % f.len();
            f[pos] = val;
            let first = h.run_one(0, valid(kind, to_vip));
            let (action, out) = h.run_one(0, f);
            prop_assert_ne!(action, Action::Continue);
            if let Action::Tx(_) = action {
                if out[12..14] == [8, 0] {
                    let ihl = (out[14] & 0xf) as usize * 4;
                    prop_assert!(checksum::verify(&out[14..14 + ihl]));
                }
            }
            let _ = first;
            // A fresh connection still works afterwards.
            let (a, _) = h.run_one(0, syn(CLIENT, VIP, 50000, 80));
            prop_assert_eq!(a, Action::Tx(1));
        }
    }
}
