//! Table-driven tests of the router pipeline: {description, input frame,
//! expected decision and output frame}, over the lab topology in
//! `sluice_dataplane::testing`.

use proptest::prelude::*;
use sluice_dataplane::stages::{router, Action, Punt};
use sluice_dataplane::state::neighbour::Family;
use sluice_dataplane::stats::DropReason;
use sluice_dataplane::testing::*;
use sluice_dataplane::wire::builder::{tcp_flags, PacketBuilder};
use std::net::{Ipv4Addr, Ipv6Addr};

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// A frame from the client on p0's link to the router.
fn from_client() -> PacketBuilder {
    PacketBuilder::new(MAC_CLIENT, MAC_P0)
}

/// What the router should emit: same packet, new MACs, TTL one less.
fn forwarded(src_mac: [u8; 6], dst_mac: [u8; 6]) -> PacketBuilder {
    PacketBuilder::new(src_mac, dst_mac)
}

enum Expect {
    Tx(u16, Vec<u8>),
    Drop(DropReason),
    Slow(Punt),
}

struct Fixture {
    description: &'static str,
    rx_port: u16,
    input: Vec<u8>,
    expect: Expect,
}

fn fixtures() -> Vec<Fixture> {
    use Expect::*;
    let udp4 = |dst: &str, ttl: u8| {
        from_client()
            .ipv4(v4("10.0.0.10"), v4(dst))
            .ttl(ttl)
            .udp(1000, 2000)
            .frame_len(64)
    };
    vec![
        Fixture {
            description:
                "IPv4 UDP via a static gateway: MACs rewritten, TTL 64 -> 63, checksum updated",
            rx_port: 0,
            input: udp4("20.1.2.3", 64).build(),
            expect: Tx(
                1,
                forwarded(MAC_P1, MAC_GW1)
                    .ipv4(v4("10.0.0.10"), v4("20.1.2.3"))
                    .ttl(63)
                    .udp(1000, 2000)
                    .frame_len(64)
                    .build(),
            ),
        },
        Fixture {
            description: "IPv4 TCP SYN forwarded",
            rx_port: 0,
            input: from_client()
                .ipv4(v4("10.0.0.10"), v4("20.9.9.9"))
                .tcp(40000, 80, tcp_flags::SYN)
                .build(),
            expect: Tx(
                1,
                forwarded(MAC_P1, MAC_GW1)
                    .ipv4(v4("10.0.0.10"), v4("20.9.9.9"))
                    .ttl(63)
                    .tcp(40000, 80, tcp_flags::SYN)
                    .build(),
            ),
        },
        Fixture {
            description: "IPv6 UDP via a static gateway: hop limit 64 -> 63",
            rx_port: 0,
            input: from_client()
                .ipv6(v6("2001:db8::10"), v6("2001:db8:20::5"))
                .udp(1, 2)
                .payload(&[7; 20])
                .build(),
            expect: Tx(
                1,
                forwarded(MAC_P1, MAC_GW1)
                    .ipv6(v6("2001:db8::10"), v6("2001:db8:20::5"))
                    .ttl(63)
                    .udp(1, 2)
                    .payload(&[7; 20])
                    .build(),
            ),
        },
        Fixture {
            description: "802.1Q-tagged frame leaves untagged",
            rx_port: 0,
            input: from_client()
                .vlan(42)
                .ipv4(v4("10.0.0.10"), v4("20.1.2.3"))
                .udp(1, 2)
                .build(),
            expect: Tx(
                1,
                forwarded(MAC_P1, MAC_GW1)
                    .ipv4(v4("10.0.0.10"), v4("20.1.2.3"))
                    .ttl(63)
                    .udp(1, 2)
                    .build(),
            ),
        },
        Fixture {
            description: "QinQ-tagged frame leaves untagged",
            rx_port: 0,
            input: from_client()
                .vlan(10)
                .vlan(20)
                .ipv4(v4("10.0.0.10"), v4("20.1.2.3"))
                .udp(1, 2)
                .build(),
            expect: Tx(
                1,
                forwarded(MAC_P1, MAC_GW1)
                    .ipv4(v4("10.0.0.10"), v4("20.1.2.3"))
                    .ttl(63)
                    .udp(1, 2)
                    .build(),
            ),
        },
        Fixture {
            description: "IPv4 options are carried through",
            rx_port: 0,
            input: from_client()
                .ipv4(v4("10.0.0.10"), v4("20.1.2.3"))
                .ipv4_options(&[1, 1, 1, 0])
                .udp(1, 2)
                .build(),
            expect: Tx(
                1,
                forwarded(MAC_P1, MAC_GW1)
                    .ipv4(v4("10.0.0.10"), v4("20.1.2.3"))
                    .ipv4_options(&[1, 1, 1, 0])
                    .ttl(63)
                    .udp(1, 2)
                    .build(),
            ),
        },
        Fixture {
            description: "connected destination with a static neighbour",
            rx_port: 1,
            input: PacketBuilder::new(MAC_GW1, MAC_P1)
                .ipv4(v4("20.0.0.1"), v4("10.0.2.254"))
                .udp(1, 2)
                .build(),
            expect: Tx(
                2,
                forwarded(MAC_P2, MAC_GW2)
                    .ipv4(v4("20.0.0.1"), v4("10.0.2.254"))
                    .ttl(63)
                    .udp(1, 2)
                    .build(),
            ),
        },
        Fixture {
            description: "TTL 1 expires",
            rx_port: 0,
            input: udp4("20.1.2.3", 1).build(),
            expect: Slow(Punt::TtlExpired),
        },
        Fixture {
            description: "TTL 0 expires",
            rx_port: 0,
            input: udp4("20.1.2.3", 0).build(),
            expect: Slow(Punt::TtlExpired),
        },
        Fixture {
            description: "hop limit 1 expires",
            rx_port: 0,
            input: from_client()
                .ipv6(v6("2001:db8::10"), v6("2001:db8:20::5"))
                .ttl(1)
                .udp(1, 2)
                .build(),
            expect: Slow(Punt::TtlExpired),
        },
        Fixture {
            description: "TTL 1 to the router itself is delivered, not expired",
            rx_port: 0,
            input: from_client()
                .ipv4(v4("10.0.0.10"), v4("10.0.0.1"))
                .ttl(1)
                .echo_request(1, 1)
                .build(),
            expect: Slow(Punt::Local),
        },
        Fixture {
            description: "no route",
            rx_port: 0,
            input: udp4("99.1.1.1", 64).build(),
            expect: Slow(Punt::NoRoute),
        },
        Fixture {
            description: "no IPv6 route",
            rx_port: 0,
            input: from_client()
                .ipv6(v6("2001:db8::10"), v6("2001:db8:99::1"))
                .udp(1, 2)
                .build(),
            expect: Slow(Punt::NoRoute),
        },
        Fixture {
            description: "blackhole route",
            rx_port: 0,
            input: udp4("40.0.0.1", 64).build(),
            expect: Drop(DropReason::Blackhole),
        },
        Fixture {
            description: "unreachable route",
            rx_port: 0,
            input: udp4("50.0.0.1", 64).build(),
            expect: Slow(Punt::Unreachable { prohibited: false }),
        },
        Fixture {
            description: "prohibit route",
            rx_port: 0,
            input: udp4("60.0.0.1", 64).build(),
            expect: Slow(Punt::Unreachable { prohibited: true }),
        },
        Fixture {
            description: "dynamic neighbour not yet resolved",
            rx_port: 0,
            input: udp4("70.0.0.1", 64).build(),
            expect: Slow(Punt::Resolve),
        },
        Fixture {
            description: "connected destination without a neighbour entry",
            rx_port: 0,
            input: udp4("10.0.1.99", 64).build(),
            expect: Slow(Punt::Resolve),
        },
        Fixture {
            description: "larger than the egress MTU (1300 on p2)",
            rx_port: 0,
            input: from_client()
                .ipv4(v4("10.0.0.10"), v4("10.0.2.254"))
                .udp(1, 2)
                .frame_len(14 + 1400)
                .build(),
            expect: Slow(Punt::TooBig),
        },
        Fixture {
            description: "IPv6 larger than the egress MTU",
            rx_port: 0,
            input: from_client()
                .ipv6(v6("2001:db8::10"), v6("2001:db8:2::9"))
                .udp(1, 2)
                .frame_len(14 + 1400)
                .build(),
            expect: Slow(Punt::TooBig),
        },
        Fixture {
            description: "echo to the router",
            rx_port: 0,
            input: from_client()
                .ipv4(v4("10.0.0.10"), v4("10.0.1.1"))
                .echo_request(1, 1)
                .build(),
            expect: Slow(Punt::Local),
        },
        Fixture {
            description: "IPv6 to the router's link-local address",
            rx_port: 0,
            input: from_client()
                .ipv6(v6("fe80::1"), v6("fe80::ff:fe00:1"))
                .echo_request(1, 1)
                .build(),
            expect: Slow(Punt::Local),
        },
        Fixture {
            description: "neighbour solicitation to a solicited-node group",
            rx_port: 0,
            input: PacketBuilder::new(MAC_CLIENT, [0x33, 0x33, 0xff, 0, 0, 1])
                .ipv6(v6("2001:db8::10"), v6("ff02::1:ff00:1"))
                .ttl(255)
                .icmp(135, 0, 0)
                .payload(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
                .build(),
            expect: Slow(Punt::Local),
        },
        Fixture {
            description: "ARP",
            rx_port: 0,
            input: PacketBuilder::new(MAC_CLIENT, [0xff; 6])
                .arp(1, MAC_CLIENT, [10, 0, 0, 10], [0; 6], [10, 0, 0, 1])
                .build(),
            expect: Slow(Punt::Arp),
        },
        Fixture {
            description: "bad IPv4 header checksum",
            rx_port: 0,
            input: udp4("20.1.2.3", 64).bad_ipv4_checksum().build(),
            expect: Drop(DropReason::Ipv4Checksum),
        },
        Fixture {
            description: "IPv4 header length below 5 words",
            rx_port: 0,
            input: {
                let mut f = udp4("20.1.2.3", 64).build();
                f[14] = 0x44;
                f
            },
            expect: Drop(DropReason::Ipv4Header),
        },
        Fixture {
            description: "IPv4 total length beyond the frame",
            rx_port: 0,
            input: {
                let mut f = udp4("20.1.2.3", 64).build();
                f[16..18].copy_from_slice(&1000u16.to_be_bytes());
                f
            },
            expect: Drop(DropReason::Truncated),
        },
        Fixture {
            description: "IPv4 version 5",
            rx_port: 0,
            input: {
                let mut f = udp4("20.1.2.3", 64).build();
                f[14] = 0x55;
                f
            },
            expect: Drop(DropReason::Ipv4Header),
        },
        Fixture {
            description: "IPv6 payload length beyond the frame",
            rx_port: 0,
            input: {
                let mut f = from_client()
                    .ipv6(v6("2001:db8::10"), v6("2001:db8:20::5"))
                    .udp(1, 2)
                    .build();
                f[18..20].copy_from_slice(&500u16.to_be_bytes());
                f
            },
            expect: Drop(DropReason::Truncated),
        },
        Fixture {
            description: "runt frame",
            rx_port: 0,
            input: vec![0; 10],
            expect: Drop(DropReason::Truncated),
        },
        Fixture {
            description: "unknown receive port",
            rx_port: 9,
            input: udp4("20.1.2.3", 64).build(),
            expect: Drop(DropReason::UnknownPort),
        },
        Fixture {
            description: "unicast to another MAC",
            rx_port: 0,
            input: PacketBuilder::new(MAC_CLIENT, [2, 9, 9, 9, 9, 9])
                .ipv4(v4("10.0.0.10"), v4("20.1.2.3"))
                .udp(1, 2)
                .build(),
            expect: Drop(DropReason::L2OtherHost),
        },
        Fixture {
            description: "three VLAN tags",
            rx_port: 0,
            input: {
                let f = from_client()
                    .vlan(1)
                    .vlan(2)
                    .ipv4(v4("10.0.0.10"), v4("20.1.2.3"))
                    .udp(1, 2)
                    .build();
                let mut g = f[..12].to_vec();
                g.extend_from_slice(&[0x81, 0, 0, 3]);
                g.extend_from_slice(&f[12..]);
                g
            },
            expect: Drop(DropReason::L2Unsupported),
        },
        Fixture {
            description: "unknown EtherType",
            rx_port: 0,
            input: from_client().ethertype(0x88cc).payload(&[0; 46]).build(),
            expect: Drop(DropReason::L2Unsupported),
        },
        Fixture {
            description: "martian source 127/8",
            rx_port: 0,
            input: from_client()
                .ipv4(v4("127.0.0.1"), v4("20.1.2.3"))
                .udp(1, 2)
                .build(),
            expect: Drop(DropReason::MartianSource),
        },
        Fixture {
            description: "limited broadcast is not forwarded",
            rx_port: 0,
            input: PacketBuilder::new(MAC_CLIENT, [0xff; 6])
                .ipv4(v4("10.0.0.10"), v4("255.255.255.255"))
                .udp(68, 67)
                .build(),
            expect: Drop(DropReason::MartianDestination),
        },
        Fixture {
            description: "IPv4 multicast is not routed",
            rx_port: 0,
            input: PacketBuilder::new(MAC_CLIENT, [1, 0, 0x5e, 0, 0, 1])
                .ipv4(v4("10.0.0.10"), v4("224.0.0.1"))
                .udp(1, 2)
                .build(),
            expect: Drop(DropReason::MulticastNotRouted),
        },
        Fixture {
            description: "IPv6 link-local source is not forwarded",
            rx_port: 0,
            input: from_client()
                .ipv6(v6("fe80::10"), v6("2001:db8:20::5"))
                .udp(1, 2)
                .build(),
            expect: Drop(DropReason::LinkLocal),
        },
        Fixture {
            description: "TCP data offset below 5",
            rx_port: 0,
            input: {
                let mut f = from_client()
                    .ipv4(v4("10.0.0.10"), v4("20.1.2.3"))
                    .tcp(1, 2, tcp_flags::ACK)
                    .build();
                f[34 + 12] = 0x40;
                f
            },
            expect: Drop(DropReason::L4Header),
        },
        Fixture {
            description: "UDP length beyond the IP payload",
            rx_port: 0,
            input: {
                let mut f = udp4("20.1.2.3", 64).build();
                f[38..40].copy_from_slice(&200u16.to_be_bytes());
                f
            },
            expect: Drop(DropReason::L4Header),
        },
        Fixture {
            description: "IPv4 header too short for its UDP header (tiny first fragment)",
            rx_port: 0,
            input: from_client()
                .ipv4(v4("10.0.0.10"), v4("20.1.2.3"))
                .ip_proto(17)
                .payload(&[0; 4])
                .build(),
            expect: Drop(DropReason::L4Header),
        },
        Fixture {
            description: "IPv6 hop-by-hop + fragment (first) headers: walked, forwarded unchanged but the hop limit",
            rx_port: 0,
            input: from_client().ipv6(v6("2001:db8::10"), v6("2001:db8:20::5")).ipv6_ext(0, &[1, 4, 0, 0, 0, 0]).ipv6_ext(44, &[0, 1, 0, 0, 0, 9]).udp(1, 2).build(),
            expect: Tx(1, forwarded(MAC_P1, MAC_GW1).ipv6(v6("2001:db8::10"), v6("2001:db8:20::5")).ttl(63).ipv6_ext(0, &[1, 4, 0, 0, 0, 0]).ipv6_ext(44, &[0, 1, 0, 0, 0, 9]).udp(1, 2).build()),
        },
        Fixture {
            description: "IPv6 hop-by-hop header after another extension header",
            rx_port: 0,
            input: from_client().ipv6(v6("2001:db8::10"), v6("2001:db8:20::5")).ipv6_ext(60, &[1, 4, 0, 0, 0, 0]).ipv6_ext(0, &[1, 4, 0, 0, 0, 0]).udp(1, 2).build(),
            expect: Drop(DropReason::Ipv6ExtHeader),
        },
        Fixture {
            description: "IPv6 chain of nine destination-options headers",
            rx_port: 0,
            input: (0..9).fold(from_client().ipv6(v6("2001:db8::10"), v6("2001:db8:20::5")), |b, _| b.ipv6_ext(60, &[1, 4, 0, 0, 0, 0])).udp(1, 2).build(),
            expect: Drop(DropReason::Ipv6ExtHeader),
        },
        Fixture {
            description: "later IPv4 fragment forwards without an L4 header",
            rx_port: 0,
            input: from_client()
                .ipv4(v4("10.0.0.10"), v4("20.1.2.3"))
                .ipv4_frag(7, 0x0010)
                .ip_proto(17)
                .payload(&[1; 16])
                .build(),
            expect: Tx(
                1,
                forwarded(MAC_P1, MAC_GW1)
                    .ipv4(v4("10.0.0.10"), v4("20.1.2.3"))
                    .ipv4_frag(7, 0x0010)
                    .ttl(63)
                    .ip_proto(17)
                    .payload(&[1; 16])
                    .build(),
            ),
        },
    ]
}

#[test]
fn router_fixtures() {
    let mut h = sluice_dataplane::testing::Harness::new(router_lab().build().unwrap(), router());
    let fixtures = fixtures();
    let frames: Vec<(u16, Vec<u8>)> = fixtures
        .iter()
        .map(|f| (f.rx_port, f.input.clone()))
        .collect();
    // Run all fixtures as bursts, which also checks that packets in one burst
    // do not disturb each other.
    let results = h.run(&frames);
    let mut failures = Vec::new();
    for (f, (action, out)) in fixtures.iter().zip(results) {
        let ok = match &f.expect {
            Expect::Tx(port, frame) => action == Action::Tx(*port) && &out == frame,
            Expect::Drop(r) => action == Action::Drop(*r),
            Expect::Slow(p) => action == Action::Punt(*p),
        };
        if !ok {
            failures.push(format!("{}: got {:?}", f.description, action));
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn learned_neighbour_resolves_dynamic_next_hop() {
    let mut h = sluice_dataplane::testing::Harness::new(router_lab().build().unwrap(), router());
    let frame = from_client()
        .ipv4(v4("10.0.0.10"), v4("70.0.0.1"))
        .udp(1, 2)
        .build();
    assert_eq!(h.run_one(0, frame.clone()).0, Action::Punt(Punt::Resolve));
    let mac = [2, 0, 0, 0, 0x77, 0x77];
    h.neighbours.learn(
        0,
        Family::V4,
        u32::from(v4("10.0.1.77")) as u128,
        mac,
        h.now_ns,
    );
    let (action, out) = h.run_one(0, frame);
    assert_eq!(action, Action::Tx(1));
    assert_eq!(&out[0..6], &mac);
    assert_eq!(&out[6..12], &MAC_P1);
}

#[test]
fn ecmp_spreads_flows_and_keeps_each_flow_on_one_path() {
    let mut h = sluice_dataplane::testing::Harness::new(router_lab().build().unwrap(), router());
    let frames: Vec<(u16, Vec<u8>)> = (0..2000u16)
        .map(|i| {
            (
                0,
                from_client()
                    .ipv4(v4("10.0.0.10"), v4("30.0.0.1"))
                    .udp(1024 + i, 80)
                    .build(),
            )
        })
        .collect();
    let first = h.run(&frames);
    let again = h.run(&frames);
    let on_p1 = first.iter().filter(|(a, _)| *a == Action::Tx(1)).count();
    let on_p2 = first.iter().filter(|(a, _)| *a == Action::Tx(2)).count();
    assert_eq!(on_p1 + on_p2, 2000);
    assert!(
        (800..=1200).contains(&on_p1),
        "p1 got {on_p1} of 2000 flows"
    );
    for ((a, fa), (b, fb)) in first.iter().zip(&again) {
        assert_eq!(a, b, "a flow changed path");
        assert_eq!(fa, fb);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes never panic the pipeline and always get a decision.
    #[test]
    fn arbitrary_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..200), port in 0u16..4) {
        let mut h = sluice_dataplane::testing::Harness::new(router_lab().build().unwrap(), router());
        let (action, _) = h.run_one(port, frame);
        prop_assert_ne!(action, Action::Continue);
    }

    /// Valid frames with one byte flipped anywhere: never a panic, and a
    /// forwarded frame's IPv4 header still verifies.
    #[test]
    fn mutated_frames_are_handled(pos in 0usize..80, val in any::<u8>(), ipv6 in any::<bool>()) {
        let mut h = sluice_dataplane::testing::Harness::new(router_lab().build().unwrap(), router());
        let mut f = if ipv6 {
            from_client().ipv6(v6("2001:db8::10"), v6("2001:db8:20::5")).tcp(1, 2, tcp_flags::SYN).frame_len(80).build()
        } else {
            from_client().ipv4(v4("10.0.0.10"), v4("20.1.2.3")).tcp(1, 2, tcp_flags::SYN).frame_len(80).build()
        };
        f[pos] = val;
        let (action, out) = h.run_one(0, f);
        prop_assert_ne!(action, Action::Continue);
        if let Action::Tx(_) = action {
            if !ipv6 && out[12..14] == [8, 0] {
                let ihl = (out[14] & 0xf) as usize * 4;
                prop_assert!(sluice_dataplane::wire::checksum::verify(&out[14..14 + ihl]));
            }
        }
    }
}
