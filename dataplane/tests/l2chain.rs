//! Ethernet chains through the node pipeline: a bump in the wire between
//! two ports. Frames for other hosts go firewall → an external function on
//! a port pair → counter and leave the other end byte for byte as they
//! came, both ways; ARP, unknown EtherTypes and VLAN tags are carried; the
//! firewall, hops that are down, frames no classifier takes and malformed
//! frames.

use sluice_dataplane::stages::service::ServiceConfig;
use sluice_dataplane::stages::{service_pipeline, Action, ServicePipeline};
use sluice_dataplane::stats::DropReason;
use sluice_dataplane::tables::chain::*;
use sluice_dataplane::tables::Tables;
use sluice_dataplane::testing::*;
use sluice_dataplane::wire::builder::PacketBuilder;
use std::net::Ipv4Addr;
use std::sync::Arc;

const ENTRY: u16 = 3;
const EXIT: u16 = 4;
const CNF_IN: u16 = 5;
const CNF_OUT: u16 = 6;
const MAC_ENTRY: [u8; 6] = [2, 0, 0, 0, 0, 0x41];
const MAC_EXIT: [u8; 6] = [2, 0, 0, 0, 0, 0x42];
/// The two hosts on either side of the wire (not Sluice's MACs).
const MAC_A: [u8; 6] = [2, 0xaa, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0xbb, 0, 0, 0, 2];
const A: Ipv4Addr = Ipv4Addr::new(10, 0, 7, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 7, 2);
const LOCAL_EXPERIMENTAL: u16 = 0x88b5;

fn hop(name: &str, f: Function) -> Hop {
    Hop {
        name: name.into(),
        candidates: vec![f].into(),
    }
}

fn firewall(allow_non_ip: bool) -> Function {
    Function::Firewall(Firewall {
        rules: vec![FirewallRule {
            tuple: TupleMatch {
                proto: 6,
                dport: PortRange::one(22),
                ..Default::default()
            },
            allow: false,
        }]
        .into(),
        default_allow: true,
        allow_non_ip,
    })
}

fn forward(ip: Option<TupleMatch>, vlan: Option<u16>, ethertype: Option<u16>) -> L2Classifier {
    L2Classifier {
        chain: 0,
        direction: Direction::Forward,
        port: ENTRY,
        vlan,
        ethertype,
        src_mac: None,
        dst_mac: None,
        ip,
    }
}

/// The router lab, the wire's two ends and the CNF's two ports; one chain
/// firewall (denies TCP to port 22) → CNF (a wire) → counter, taking from
/// the entry: ARP, IP from 10.0.7.0/24, VLAN 100, and the local
/// experimental EtherType.
fn parts(fail: FailMode, allow_non_ip: bool) -> ChainParts {
    let cnf = External {
        ingress: CNF_IN,
        egress: CNF_OUT,
        ingress_dst_mac: [0; 6],
        egress_dst_mac: [0; 6],
        ingress_src_mac: [0; 6],
        egress_src_mac: [0; 6],
    };
    let lan = TupleMatch {
        src: Prefix {
            family: 4,
            addr: u32::from(Ipv4Addr::new(10, 0, 7, 0)) as u128,
            len: 24,
        },
        ..Default::default()
    };
    let fwd = vec![
        forward(None, None, Some(0x0806)),
        forward(Some(lan), None, None),
        forward(None, Some(100), None),
        forward(None, None, Some(LOCAL_EXPERIMENTAL)),
    ];
    let mut l2_classifiers = fwd.clone();
    l2_classifiers.extend(fwd.iter().map(|k| k.reflected(EXIT)));
    ChainParts {
        chains: vec![Chain {
            name: "chain/wire".into(),
            fail,
            first: 0,
            len: 3,
        }],
        hops: vec![
            hop("fw", firewall(allow_non_ip)),
            hop("cnf", Function::External(cnf)),
            hop("count", Function::Counter),
        ],
        classifiers: vec![],
        l2: vec![L2Chain {
            chain: 0,
            entry: ENTRY,
            exit: EXIT,
        }],
        l2_classifiers,
    }
}

fn tables(parts: ChainParts) -> Tables {
    let mut b = router_lab();
    b.port("wire-a", 0, MAC_ENTRY, 1500);
    b.port("wire-b", 0, MAC_EXIT, 1500);
    b.port("cnf-in", 0, [2, 0, 0, 0, 0, 0x31], 1500);
    b.port("cnf-out", 0, [2, 0, 0, 0, 0, 0x32], 1500);
    let mut t = b.build().unwrap();
    t.chains = ChainTable::build(parts, Arc::default()).unwrap();
    t
}

fn harness_with(fail: FailMode, allow_non_ip: bool) -> Harness<ServicePipeline> {
    Harness::new(
        tables(parts(fail, allow_non_ip)),
        service_pipeline(&ServiceConfig::default()),
    )
}

fn harness() -> Harness<ServicePipeline> {
    harness_with(FailMode::Closed, true)
}

fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> PacketBuilder {
    let (sm, dm) = if src == A {
        (MAC_A, MAC_B)
    } else {
        (MAC_B, MAC_A)
    };
    PacketBuilder::new(sm, dm)
        .ipv4(src, dst)
        .tcp(sport, dport, flags)
}

/// Sends `frame` in on `rx`, expects it on the CNF's port `to_cnf`, sends
/// it back from the CNF's other port and returns where it finally goes;
/// every step must leave the frame unchanged.
fn through(h: &mut Harness<ServicePipeline>, rx: u16, to_cnf: u16, frame: &[u8]) -> Action {
    let (a, f) = h.run_one(rx, frame.to_vec());
    assert_eq!(a, Action::Tx(to_cnf), "to the function");
    assert_eq!(f, frame, "unchanged on its way to the function");
    let back = if to_cnf == CNF_IN { CNF_OUT } else { CNF_IN };
    let (a, f) = h.run_one(back, f);
    assert_eq!(f, frame, "unchanged at the other end");
    a
}

#[test]
fn frames_cross_every_hop_unchanged_in_both_directions() {
    let mut h = harness();
    let syn = tcp(A, B, 40000, 80, 0x02).build();
    assert_eq!(through(&mut h, ENTRY, CNF_IN, &syn), Action::Tx(EXIT));
    let synack = tcp(B, A, 80, 40000, 0x12).build();
    assert_eq!(through(&mut h, EXIT, CNF_OUT, &synack), Action::Tx(ENTRY));
    let counts = h.tables.chains.counts();
    assert_eq!(counts.len(), 3);
    for (chain, hop, _, c, payload) in &counts {
        assert_eq!((chain.as_str(), *payload), ("chain/wire", "ETHERNET"));
        assert_eq!((c.forward_packets, c.reverse_packets), (1, 1), "hop {hop}");
        assert_eq!(c.forward_bytes, syn.len() as u64, "hop {hop}: frame bytes");
    }
}

#[test]
fn arp_and_unknown_ethertypes_are_carried() {
    let mut h = harness();
    let who_has = PacketBuilder::new(MAC_A, [0xff; 6])
        .arp(1, MAC_A, A.octets(), [0; 6], B.octets())
        .build();
    assert_eq!(through(&mut h, ENTRY, CNF_IN, &who_has), Action::Tx(EXIT));
    let is_at = PacketBuilder::new(MAC_B, MAC_A)
        .arp(2, MAC_B, B.octets(), MAC_A, A.octets())
        .build();
    assert_eq!(through(&mut h, EXIT, CNF_OUT, &is_at), Action::Tx(ENTRY));
    let odd = PacketBuilder::new(MAC_A, MAC_B)
        .ethertype(LOCAL_EXPERIMENTAL)
        .payload(&[7; 50])
        .build();
    assert_eq!(through(&mut h, ENTRY, CNF_IN, &odd), Action::Tx(EXIT));
    // A firewall that denies what is not IP stops them at the first hop.
    let mut h = harness_with(FailMode::Closed, false);
    assert_eq!(
        h.run_one(ENTRY, who_has).0,
        Action::Drop(DropReason::ChainDenied)
    );
    assert_eq!(h.tables.chains.hop_count(0).dropped, 1);
    // IP still passes that firewall.
    let syn = tcp(A, B, 40000, 80, 0x02).build();
    assert_eq!(through(&mut h, ENTRY, CNF_IN, &syn), Action::Tx(EXIT));
}

#[test]
fn vlan_tagged_frames_keep_their_tag() {
    let mut h = harness();
    // Not from 10.0.7.0/24: steered by its VLAN.
    let tagged = PacketBuilder::new(MAC_A, MAC_B)
        .vlan(100)
        .ipv4(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2))
        .udp(5000, 53)
        .build();
    assert_eq!(&tagged[12..14], &[0x81, 0x00]);
    assert_eq!(through(&mut h, ENTRY, CNF_IN, &tagged), Action::Tx(EXIT));
    let reply = PacketBuilder::new(MAC_B, MAC_A)
        .vlan(100)
        .ipv4(Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 1))
        .udp(53, 5000)
        .build();
    assert_eq!(through(&mut h, EXIT, CNF_OUT, &reply), Action::Tx(ENTRY));
    // Another VLAN from elsewhere is not the chain's: for Sluice only if
    // addressed to it, and then routed.
    let other = PacketBuilder::new(MAC_A, MAC_B)
        .vlan(200)
        .ipv4(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2))
        .udp(5000, 53)
        .build();
    assert_eq!(
        h.run_one(ENTRY, other).0,
        Action::Drop(DropReason::L2OtherHost)
    );
}

#[test]
fn the_firewall_denies_by_port_in_both_directions() {
    let mut h = harness();
    let ssh = tcp(A, B, 40000, 22, 0x02).build();
    assert_eq!(
        h.run_one(ENTRY, ssh).0,
        Action::Drop(DropReason::ChainDenied)
    );
    // The reply direction is judged with the rule reflected: a reply from
    // port 22 is denied too, on the way back to the entry.
    let from_ssh = tcp(B, A, 22, 40000, 0x12).build();
    let (a, f) = h.run_one(EXIT, from_ssh);
    assert_eq!(a, Action::Tx(CNF_OUT), "the counter and CNF come first");
    assert_eq!(
        h.run_one(CNF_IN, f).0,
        Action::Drop(DropReason::ChainDenied)
    );
    assert_eq!(h.tables.chains.hop_count(0).dropped, 2);
    assert_eq!(h.tables.chains.hop_count(0).forward_packets, 0);
}

#[test]
fn a_function_without_link_fails_closed_or_is_skipped() {
    let syn = tcp(A, B, 40000, 80, 0x02).build();
    let mut h = harness_with(FailMode::Closed, true);
    h.tables.chains.links().set(CNF_OUT, false);
    assert_eq!(
        h.run_one(ENTRY, syn.clone()).0,
        Action::Drop(DropReason::ChainHopDown)
    );
    assert_eq!(h.tables.chains.hop_count(1).dropped, 1);
    h.tables.chains.links().set(CNF_OUT, true);
    assert_eq!(h.run_one(ENTRY, syn.clone()).0, Action::Tx(CNF_IN));

    let mut h = harness_with(FailMode::Skip, true);
    h.tables.chains.links().set(CNF_IN, false);
    let (a, f) = h.run_one(ENTRY, syn.clone());
    assert_eq!(a, Action::Tx(EXIT), "the CNF is passed over");
    assert_eq!(f, syn);
    let c = h.tables.chains.counts();
    assert_eq!(c[1].3.skipped, 1);
    assert_eq!(c[2].3.forward_packets, 1, "the counter after it still runs");
}

#[test]
fn a_hop_with_no_ready_endpoint_is_down() {
    let mut p = parts(FailMode::Closed, true);
    p.hops[2].candidates = vec![].into();
    let mut h = Harness::new(tables(p), service_pipeline(&ServiceConfig::default()));
    let syn = tcp(A, B, 40000, 80, 0x02).build();
    let (_, f) = h.run_one(ENTRY, syn);
    assert_eq!(
        h.run_one(CNF_OUT, f).0,
        Action::Drop(DropReason::ChainHopDown)
    );
}

#[test]
fn frames_no_classifier_takes_get_the_normal_l3_path() {
    let mut h = harness();
    // IP from outside 10.0.7.0/24, untagged, addressed to the entry port:
    // routed as usual (TTL decremented, MACs rewritten).
    let f = PacketBuilder::new(MAC_CLIENT, MAC_ENTRY)
        .ipv4(Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(20, 0, 0, 5))
        .ttl(64)
        .udp(1, 53)
        .build();
    let (a, out) = h.run_one(ENTRY, f);
    assert_eq!(a, Action::Tx(1));
    assert_eq!(&out[0..6], &MAC_GW1);
    assert_eq!(out[22], 63);
    // Frames on a port that is no chain's end are not looked at.
    let f = PacketBuilder::new(MAC_A, MAC_B)
        .ipv4(A, B)
        .tcp(1, 80, 2)
        .build();
    assert_eq!(h.run_one(0, f).0, Action::Drop(DropReason::L2OtherHost));
    assert!(h
        .tables
        .chains
        .counts()
        .iter()
        .all(|c| c.3 == HopCount::default()));
}

#[test]
fn malformed_frames_are_dropped_by_reason_never_a_panic() {
    let mut h = harness();
    let good = tcp(A, B, 40000, 80, 0x02).build();
    let tagged = PacketBuilder::new(MAC_A, MAC_B)
        .vlan(100)
        .ipv4(A, B)
        .udp(1, 2)
        .build();
    assert_eq!(
        h.run_one(ENTRY, good[..10].to_vec()).0,
        Action::Drop(DropReason::Truncated)
    );
    assert_eq!(
        h.run_one(ENTRY, good[..30].to_vec()).0,
        Action::Drop(DropReason::Truncated)
    );
    assert_eq!(
        h.run_one(CNF_OUT, good[..5].to_vec()).0,
        Action::Drop(DropReason::Truncated)
    );
    let bad_sum = PacketBuilder::new(MAC_A, MAC_B)
        .ipv4(A, B)
        .udp(1, 2)
        .bad_ipv4_checksum()
        .build();
    assert_eq!(
        h.run_one(ENTRY, bad_sum).0,
        Action::Drop(DropReason::Ipv4Checksum)
    );
    // Every truncation of a good frame, on every chain port: decided,
    // never a panic, never sent on half a frame's worth of headers.
    for f in [&good, &tagged] {
        for len in 0..f.len() {
            for port in [ENTRY, EXIT, CNF_IN, CNF_OUT] {
                let (a, _) = h.run_one(port, f[..len].to_vec());
                assert!(
                    matches!(a, Action::Drop(_) | Action::Tx(_)),
                    "len {len} port {port}: {a:?}"
                );
                if len < 14 {
                    assert_eq!(a, Action::Drop(DropReason::Truncated));
                }
            }
        }
    }
}

#[test]
fn non_first_fragments_steered_by_address_are_dropped() {
    let mut h = harness();
    let frag = PacketBuilder::new(MAC_A, MAC_B)
        .ipv4(A, B)
        .ipv4_frag(7, 100)
        .ip_proto(17)
        .payload(&[0; 64])
        .build();
    assert_eq!(
        h.run_one(ENTRY, frag).0,
        Action::Drop(DropReason::ChainDenied)
    );
}

#[test]
fn a_table_with_an_address_rewriting_hop_in_an_ethernet_chain_is_refused() {
    let mut p = parts(FailMode::Closed, true);
    p.hops[2] = hop(
        "nat",
        Function::Nat(Netmap {
            inside: Prefix::host(4, 1),
            outside: Prefix::host(4, 2),
        }),
    );
    let e = ChainTable::build(p, Arc::default()).unwrap_err();
    assert!(e.0.contains("hop nat: a nat rewrites addresses"), "{e}");
    // A forward classifier must sit on the entry.
    let mut p = parts(FailMode::Closed, true);
    p.l2_classifiers[0].port = EXIT;
    assert!(ChainTable::build(p, Arc::default()).is_err());
    // An end that is also a function's port.
    let mut p = parts(FailMode::Closed, true);
    p.l2[0].exit = CNF_IN;
    let e = ChainTable::build(p, Arc::default()).unwrap_err();
    assert!(e.0.contains("joins an external hop"), "{e}");
}

#[test]
fn a_burst_mixes_chain_frames_and_routed_ones() {
    let mut h = harness();
    let mut frames = Vec::new();
    for i in 0..40u16 {
        if i % 2 == 0 {
            frames.push((ENTRY, tcp(A, B, 1000 + i, 80, 2).build()));
        } else {
            frames.push((
                0,
                PacketBuilder::new(MAC_CLIENT, MAC_P0)
                    .ipv4(Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(20, 0, 0, 5))
                    .udp(i, 53)
                    .build(),
            ));
        }
    }
    let out = h.run(&frames);
    for (i, ((a, f), (_, sent))) in out.iter().zip(&frames).enumerate() {
        if i % 2 == 0 {
            assert_eq!(*a, Action::Tx(CNF_IN));
            assert_eq!(f, sent);
        } else {
            assert_eq!(*a, Action::Tx(1));
        }
    }
    assert_eq!(h.tables.chains.hop_count(0).forward_packets, 20);
}

#[test]
fn a_policer_hop_drops_what_exceeds_its_rate_by_frame_length() {
    use sluice_dataplane::tables::bandwidth::{Limiter, Mode};
    let mut p = parts(FailMode::Closed, true);
    // 1 kbit/s with a burst of about two frames of this size.
    let syn = tcp(A, B, 40000, 80, 0x02).build();
    let burst = 2 * 8 * syn.len() as u64;
    p.hops[0] = hop(
        "police",
        Function::Police(Arc::new(Limiter::new(1000, burst, Mode::Police))),
    );
    let mut h = Harness::new(tables(p), service_pipeline(&ServiceConfig::default()));
    let out = h.run(&vec![(ENTRY, syn.clone()); 6]);
    let passed = out.iter().filter(|(a, _)| *a == Action::Tx(CNF_IN)).count();
    let policed = out
        .iter()
        .filter(|(a, _)| *a == Action::Drop(DropReason::ChainPoliced))
        .count();
    assert!((1..=3).contains(&passed), "{out:?}");
    assert_eq!(passed + policed, 6);
    assert_eq!(h.tables.chains.hop_count(0).dropped, policed as u64);
}
