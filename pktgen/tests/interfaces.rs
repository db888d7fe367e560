//! The generator on real interfaces: each test makes a namespace with a
//! veth pair `a`–`b` (IPv6 off, so the kernel adds no frames of its own)
//! and runs the generator inside it, sending on one end and receiving on
//! the other through the kernel's veth, over AF_PACKET and over AF_XDP.
//! The namespace goes when the test ends, passed or failed.
//!
//! Needs root; skipped with a message otherwise.

use sluice_dataplane::testing::netns::{can_run, veth, Netns};
use sluice_pktgen::ports::PortSpec;
use sluice_pktgen::rate::Rate;
use sluice_pktgen::run::{run_ports as run_streams, RunConfig};
use sluice_pktgen::spec::StreamSpec;
use sluice_pktgen::tcp::{run_ports, TcpConfig};

fn lab(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.disable_ipv6();
    veth(&ns, "a", &ns, "b");
    ns
}

fn port(kind: &str, dev: &str) -> PortSpec {
    let spec = match kind {
        "afxdp" => format!("afxdp:{dev},skb"),
        _ => format!("{kind}:{dev}"),
    };
    PortSpec::parse(&spec).unwrap()
}

#[test]
fn streams_cross_a_veth_and_are_counted_on_the_far_end() {
    if !can_run("streams_cross_a_veth_and_are_counted_on_the_far_end") {
        return;
    }
    let ns = lab("pg-streams");
    for kind in ["afpacket", "afxdp"] {
        let stream = StreamSpec::parse_short(
            1,
            "udp src=198.18.0.1-198.18.0.100 dst=198.19.0.1 dport=4789 size=128",
        )
        .unwrap();
        let cfg = RunConfig {
            rate: Rate::Pps(50_000.0),
            burst: 8,
            seconds: None,
            count: Some(20_000),
            drain_ns: 300_000_000,
            ..RunConfig::default()
        };
        let (tx, rx) = (port(kind, "a"), port(kind, "b"));
        let r = ns
            .enter(|| run_streams(&[stream], &tx, Some(&rx), &cfg, None, &mut |_| {}))
            .unwrap();
        assert_eq!(r.tx.packets, 20_000, "{kind}: {r:#?}");
        assert_eq!(r.tx_unsent, 0, "{kind}");
        // Every frame arrived, marked as ours, at the other end.
        assert_eq!(r.rx.packets, 20_000, "{kind}: {:?}", r.rx);
        assert_eq!(r.rx_unmarked, 0, "{kind}");
        assert_eq!(r.rx.bytes, 20_000 * 128, "{kind}");
    }
}

#[test]
fn tcp_connections_cross_a_veth_between_the_two_sides() {
    if !can_run("tcp_connections_cross_a_veth_between_the_two_sides") {
        return;
    }
    let ns = lab("pg-tcp");
    for (kind, v6) in [("afpacket", false), ("afpacket", true), ("afxdp", false)] {
        let mut cfg = TcpConfig {
            count: Some(300),
            seconds: Some(30.0),
            concurrent: 50,
            request: 200,
            response: 3000,
            ..TcpConfig::default()
        };
        if v6 {
            cfg.clients = sluice_pktgen::tcp::parse_addr_range("fd00::100-fd00::1ff").unwrap();
            cfg.targets = sluice_pktgen::tcp::parse_endpoints("[fd01::1]:80").unwrap();
            cfg.listeners = cfg.targets.clone();
        }
        let (client, server) = (port(kind, "a"), port(kind, "b"));
        let r = ns
            .enter(|| run_ports(&cfg, &client, Some(&server), &mut |_| {}))
            .unwrap();
        let what = format!("{kind} v6={v6}");
        assert_eq!(r.client.completed, 300, "{what}: {r:#?}");
        assert_eq!((r.client.failed, r.unfinished), (0, 0), "{what}");
        assert_eq!(r.server.accepted, 300, "{what}");
        assert_eq!(r.server.response_bytes, 300 * 3000, "{what}");
        assert_eq!(r.client.response_bytes, 300 * 3000, "{what}");
        // Two ports: each side received what the other sent (the
        // announcements aside, which the other side does not serve).
        assert_eq!(r.ports.len(), 2);
        let (c, s) = (&r.ports[0], &r.ports[1]);
        assert_eq!(c.rx_malformed + s.rx_malformed, 0, "{what}");
        assert_eq!(
            c.tx_packets - c.arp_announced,
            s.rx_packets - s.rx_not_ours,
            "{what}: {c:?} {s:?}"
        );
    }
}

#[test]
fn a_server_port_that_is_the_client_port_or_a_loop_is_refused() {
    let cfg = TcpConfig::default();
    let a = PortSpec::parse("afpacket:a").unwrap();
    let e = run_ports(&cfg, &a, Some(&a), &mut |_| {}).unwrap_err();
    assert!(e.contains("--server-port"), "{e}");
    let lo = PortSpec::parse("mem:loop").unwrap();
    let e = run_ports(&cfg, &lo, Some(&a), &mut |_| {}).unwrap_err();
    assert!(e.contains("--server-port"), "{e}");
}
