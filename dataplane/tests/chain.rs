//! Service chains through the node pipeline: a firewall → an external
//! function on a port pair → a Maglev load balancer, both directions, with
//! the hop found again from the port a packet comes back on; fail-closed
//! and skip when the function's link is down; fragments; counters.

use sluice_dataplane::stages::service::ServiceConfig;
use sluice_dataplane::stages::{service_pipeline, Action, ServicePipeline};
use sluice_dataplane::stats::DropReason;
use sluice_dataplane::tables::chain::*;
use sluice_dataplane::tables::Tables;
use sluice_dataplane::testing::*;
use sluice_dataplane::wire::builder::PacketBuilder;
use sluice_dataplane::wire::checksum;
use std::net::Ipv4Addr;
use std::sync::Arc;

const MAC_CNF_IN: [u8; 6] = [2, 0, 0, 0, 0, 0x31];
const MAC_CNF_OUT: [u8; 6] = [2, 0, 0, 0, 0, 0x32];
const CNF_IN: u16 = 3;
const CNF_OUT: u16 = 4;
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const VIP: Ipv4Addr = Ipv4Addr::new(20, 0, 0, 100);
const BACKENDS: [Ipv4Addr; 2] = [Ipv4Addr::new(20, 0, 1, 1), Ipv4Addr::new(20, 0, 1, 2)];

fn v4(a: Ipv4Addr) -> u128 {
    u32::from(a) as u128
}

fn host(a: Ipv4Addr) -> Prefix {
    Prefix::host(4, v4(a))
}

fn hop(name: &str, f: Function) -> Hop {
    Hop {
        name: name.into(),
        candidates: vec![f].into(),
    }
}

/// The router lab plus the CNF's two ports; one chain steering TCP from
/// 10.0.0.0/24 to the VIP: firewall (port 80 only) → CNF → LB.
fn tables(fail: FailMode) -> Tables {
    let mut b = router_lab();
    b.port("cnf-in", 0, MAC_CNF_IN, 1500);
    b.port("cnf-out", 0, MAC_CNF_OUT, 1500);
    b.neighbour(0, CLIENT.into(), MAC_CLIENT);
    let mut t = b.build().unwrap();
    let client_net = Prefix {
        family: 4,
        addr: v4(Ipv4Addr::new(10, 0, 0, 0)),
        len: 24,
    };
    let fw = Firewall {
        rules: vec![FirewallRule {
            tuple: TupleMatch {
                dst: host(VIP),
                proto: 6,
                dport: PortRange::one(80),
                ..Default::default()
            },
            allow: true,
        }]
        .into(),
        default_allow: false,
        allow_non_ip: true,
    };
    let lb = LoadBalancer::new(
        4,
        v4(VIP),
        80,
        6,
        BACKENDS
            .iter()
            .map(|b| LbBackend {
                addr: v4(*b),
                port: 8080,
            })
            .collect(),
    )
    .unwrap();
    let cnf = External {
        ingress: CNF_IN,
        egress: CNF_OUT,
        // A wire: frames are addressed to the port they come back on.
        ingress_dst_mac: MAC_CNF_OUT,
        egress_dst_mac: MAC_CNF_IN,
        ingress_src_mac: MAC_CNF_IN,
        egress_src_mac: MAC_CNF_OUT,
    };
    let mut classifiers = vec![Classifier {
        chain: 0,
        direction: Direction::Forward,
        network: Some(0),
        port: None,
        tuple: TupleMatch {
            src: client_net,
            dst: host(VIP),
            proto: 6,
            ..Default::default()
        },
    }];
    for b in BACKENDS {
        classifiers.push(Classifier {
            chain: 0,
            direction: Direction::Reverse,
            network: None,
            port: None,
            tuple: TupleMatch {
                src: host(b),
                dst: client_net,
                proto: 6,
                sport: PortRange::one(8080),
                ..Default::default()
            },
        });
    }
    let parts = ChainParts {
        chains: vec![Chain {
            name: "web".into(),
            fail,
            first: 0,
            len: 3,
        }],
        hops: vec![
            hop("fw", Function::Firewall(fw)),
            hop("cnf", Function::External(cnf)),
            hop("lb", Function::LoadBalancer(lb)),
        ],
        classifiers,
        ..Default::default()
    };
    t.chains = ChainTable::build(parts, Arc::default()).unwrap();
    t
}

fn harness(fail: FailMode) -> Harness<ServicePipeline> {
    Harness::new(tables(fail), service_pipeline(&ServiceConfig::default()))
}

fn syn(sport: u16, dport: u16) -> Vec<u8> {
    PacketBuilder::new(MAC_CLIENT, MAC_P0)
        .ipv4(CLIENT, VIP)
        .tcp(sport, dport, 0x02)
        .build()
}

fn ipv4_src_dst_ports(f: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16, u16) {
    let ip = &f[14..34];
    let l4 = &f[34..];
    (
        Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        u16::from_be_bytes([l4[0], l4[1]]),
        u16::from_be_bytes([l4[2], l4[3]]),
    )
}

/// The IPv4 header and TCP checksums verify.
fn checksums_ok(f: &[u8]) -> bool {
    let ip = &f[14..34];
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let tcp = &f[34..14 + total];
    let mut src = [0u8; 4];
    let mut dst = [0u8; 4];
    src.copy_from_slice(&ip[12..16]);
    dst.copy_from_slice(&ip[16..20]);
    let pseudo = checksum::pseudo_header_v4(src, dst, 6, tcp.len() as u16);
    checksum::verify(ip) && checksum::fold(checksum::sum(tcp, pseudo)) == 0xffff
}

#[test]
fn both_directions_run_every_hop_and_come_back_from_the_function_by_port() {
    let mut h = harness(FailMode::Closed);
    // Forward: the firewall passes it, the CNF gets it on its ingress port,
    // addressed to the port it comes back on.
    let (a, f) = h.run_one(0, syn(40000, 80));
    assert_eq!(a, Action::Tx(CNF_IN));
    assert_eq!(&f[0..6], &MAC_CNF_OUT);
    assert_eq!(&f[6..12], &MAC_CNF_IN);
    assert_eq!(
        ipv4_src_dst_ports(&f),
        (CLIENT, VIP, 40000, 80),
        "unchanged so far"
    );
    // Back from the CNF on its egress port: the LB picks a backend and the
    // router forwards towards it.
    let (a, f) = h.run_one(CNF_OUT, f);
    assert_eq!(a, Action::Tx(1));
    let (src, dst, sport, dport) = ipv4_src_dst_ports(&f);
    assert_eq!((src, sport, dport), (CLIENT, 40000, 8080));
    assert!(BACKENDS.contains(&dst), "{dst}");
    assert!(checksums_ok(&f));
    // The reply: reverse direction, the LB gives the VIP back, then the CNF
    // from its egress side.
    let reply = PacketBuilder::new(MAC_GW1, MAC_P1)
        .ipv4(dst, CLIENT)
        .tcp(8080, 40000, 0x12)
        .build();
    let (a, f) = h.run_one(1, reply);
    assert_eq!(a, Action::Tx(CNF_OUT));
    assert_eq!(&f[0..6], &MAC_CNF_IN);
    assert_eq!(ipv4_src_dst_ports(&f), (VIP, CLIENT, 80, 40000));
    assert!(checksums_ok(&f));
    // Back on the ingress port: the firewall (reflected rule) and on to
    // the client.
    let (a, f) = h.run_one(CNF_IN, f);
    assert_eq!(a, Action::Tx(0));
    assert_eq!(ipv4_src_dst_ports(&f), (VIP, CLIENT, 80, 40000));
    // Counters per hop and direction.
    let counts = h.tables.chains.counts();
    let fw = counts[0].3;
    assert_eq!((fw.forward_packets, fw.reverse_packets), (1, 1));
    let cnf = counts[1].3;
    assert_eq!((cnf.forward_packets, cnf.reverse_packets), (1, 1));
    let lb = counts[2].3;
    assert_eq!((lb.forward_packets, lb.reverse_packets), (1, 1));
    assert_eq!(counts[2].1, "lb");
}

#[test]
fn one_flow_always_gets_one_backend_and_flows_spread() {
    let mut h = harness(FailMode::Closed);
    let mut seen = std::collections::HashSet::new();
    for sport in 1000..1064u16 {
        let mut first = None;
        for _ in 0..2 {
            let (_, f) = h.run_one(0, syn(sport, 80));
            let (a, f) = h.run_one(CNF_OUT, f);
            assert_eq!(a, Action::Tx(1));
            let dst = ipv4_src_dst_ports(&f).1;
            assert_eq!(*first.get_or_insert(dst), dst, "flow {sport} moved");
            seen.insert(dst);
        }
    }
    assert_eq!(seen.len(), 2);
}

#[test]
fn the_firewall_drops_what_it_does_not_allow_and_counts_it() {
    let mut h = harness(FailMode::Closed);
    let (a, _) = h.run_one(0, syn(40000, 22));
    assert_eq!(a, Action::Drop(DropReason::ChainDenied));
    assert_eq!(h.tables.chains.hop_count(0).dropped, 1);
    // A reply-looking packet from a backend's other port is not chain
    // traffic at all: routed as usual.
    let other = PacketBuilder::new(MAC_GW1, MAC_P1)
        .ipv4(BACKENDS[0], CLIENT)
        .tcp(22, 40000, 0x12)
        .build();
    assert_eq!(h.run_one(1, other).0, Action::Tx(0));
}

#[test]
fn traffic_no_classifier_steers_is_routed_untouched() {
    let mut h = harness(FailMode::Closed);
    let f = PacketBuilder::new(MAC_CLIENT, MAC_P0)
        .ipv4(CLIENT, Ipv4Addr::new(20, 0, 0, 5))
        .tcp(1, 80, 0x02)
        .build();
    let (a, out) = h.run_one(0, f);
    assert_eq!(a, Action::Tx(1));
    assert_eq!(
        ipv4_src_dst_ports(&out),
        (CLIENT, Ipv4Addr::new(20, 0, 0, 5), 1, 80)
    );
    assert!(h
        .tables
        .chains
        .counts()
        .iter()
        .all(|c| c.3 == HopCount::default()));
}

#[test]
fn a_function_without_link_fails_closed_or_is_skipped() {
    let mut h = harness(FailMode::Closed);
    h.tables.chains.links().set(CNF_OUT, false);
    assert_eq!(
        h.run_one(0, syn(40000, 80)).0,
        Action::Drop(DropReason::ChainHopDown)
    );
    assert_eq!(h.tables.chains.hop_count(1).dropped, 1);
    h.tables.chains.links().set(CNF_OUT, true);
    assert_eq!(h.run_one(0, syn(40000, 80)).0, Action::Tx(CNF_IN));

    let mut h = harness(FailMode::Skip);
    h.tables.chains.links().set(CNF_IN, false);
    let (a, f) = h.run_one(0, syn(40000, 80));
    assert_eq!(
        a,
        Action::Tx(1),
        "the CNF is passed over, the LB still runs"
    );
    assert!(BACKENDS.contains(&ipv4_src_dst_ports(&f).1));
    assert_eq!(h.tables.chains.hop_count(1).skipped, 1);
}

#[test]
fn non_first_fragments_of_chain_traffic_are_dropped() {
    let mut h = harness(FailMode::Closed);
    let frag = PacketBuilder::new(MAC_CLIENT, MAC_P0)
        .ipv4(CLIENT, VIP)
        .ipv4_frag(7, 100)
        .ip_proto(6)
        .payload(&[0; 64])
        .build();
    assert_eq!(h.run_one(0, frag).0, Action::Drop(DropReason::ChainDenied));
}
