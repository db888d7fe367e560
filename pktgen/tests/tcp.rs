//! Stateful TCP (smoltcp on both ends): request/response exchanges over a
//! mem loopback, through Sluice's Service pipeline (DNAT, conntrack and the
//! un-NAT of replies, with real handshakes), and over a lossy link where
//! only retransmission gets every connection through.

use sluice_pktgen::link::LinkConfig;
use sluice_pktgen::tcp::dut::{endpoint_of, service_config, ServiceDut};
use sluice_pktgen::tcp::{run_loopback, TcpConfig, TcpReport};
use std::net::{IpAddr, Ipv4Addr};

fn base(count: u64, concurrent: usize) -> TcpConfig {
    TcpConfig {
        count: Some(count),
        seconds: Some(30.0),
        concurrent,
        shard_size: 16,
        ..TcpConfig::default()
    }
}

fn assert_all_completed(r: &TcpReport, n: u64, requests: u32, cfg: &TcpConfig) {
    let c = &r.client;
    let s = &r.server;
    assert_eq!(c.attempted, n, "{r:#?}");
    assert_eq!(c.established, n, "{r:#?}");
    assert_eq!(c.completed, n, "{r:#?}");
    assert_eq!((c.failed, c.failed_timeout, c.failed_reset), (0, 0, 0));
    assert_eq!(r.unfinished, 0);
    let exchanges = n * requests as u64;
    assert_eq!(c.requests, exchanges);
    assert_eq!(c.request_bytes, exchanges * cfg.request as u64);
    assert_eq!(c.response_bytes, exchanges * cfg.response as u64);
    // The server saw the same bytes, and closed every connection cleanly.
    assert_eq!(s.accepted, n, "{r:#?}");
    assert_eq!(s.completed, n, "{r:#?}");
    assert_eq!((s.reset, s.timeout), (0, 0));
    assert_eq!(s.requests, exchanges);
    assert_eq!(s.request_bytes, c.request_bytes);
    assert_eq!(s.response_bytes, c.response_bytes);
    assert_eq!(r.connect_latency_ns.samples, n);
    assert_eq!(r.request_latency_ns.samples, exchanges);
}

#[test]
fn loopback_exchanges_complete_with_matching_bytes() {
    // 1,000 connections, at most 200 open, responses of several segments;
    // then keep-alive: 300 connections of 5 exchanges each.
    let cfg = TcpConfig {
        request: 300,
        response: 5000,
        ..base(1000, 200)
    };
    let r = run_loopback(&cfg, &LinkConfig::default(), &mut |_| {}).unwrap();
    assert_all_completed(&r, 1000, 1, &cfg);
    assert!(
        r.peak_concurrent <= 200 && r.peak_concurrent > 1,
        "{}",
        r.peak_concurrent
    );
    assert_eq!(
        r.client.retransmits + r.server.retransmits,
        0,
        "a lossless link"
    );
    let p = &r.ports[0];
    assert_eq!(
        (p.rx_not_ours, p.rx_malformed, p.tx_dropped),
        (0, 0, 0),
        "{p:?}"
    );
    // Every packet sent came back (one port loops to itself).
    assert_eq!(p.tx_packets, p.rx_packets);

    let keep_alive = TcpConfig {
        request: 64,
        response: 64,
        requests_per_connection: 5,
        ..base(300, 50)
    };
    let r = run_loopback(&keep_alive, &LinkConfig::default(), &mut |_| {}).unwrap();
    assert_all_completed(&r, 300, 5, &keep_alive);
}

#[test]
fn connections_through_the_service_pipeline_reach_every_endpoint() {
    through_the_service_pipeline(false);
}

#[test]
fn ipv6_connections_through_the_service_pipeline_reach_every_endpoint() {
    through_the_service_pipeline(true);
}

fn through_the_service_pipeline(v6: bool) {
    let dut = ServiceDut::start(3, None).unwrap();
    let cfg = service_config(
        &TcpConfig {
            request: 200,
            response: 2000,
            ..base(600, 100)
        },
        3,
        v6,
    );
    assert_eq!(cfg.is_v6(), v6);
    let r = dut.run(&cfg, &mut |_| {}).unwrap();
    let stats = dut.stats();
    assert_all_completed(&r, 600, 1, &cfg);
    // Maglev spreads the connections over the three endpoints.
    assert_eq!(r.listeners.len(), 3);
    for (i, l) in r.listeners.iter().enumerate() {
        assert_eq!(l.listener, endpoint_of(i, v6).to_string());
        assert!(
            l.accepted > 100,
            "endpoint {}: {} of 600",
            l.listener,
            l.accepted
        );
    }
    // The clients only ever talked to the VIP: a reply that was not
    // un-NATed would have matched no client socket (and been reset).
    assert_eq!(r.ports[0].rx_not_ours, 0, "{:?}", r.ports[0]);
    assert_eq!(r.ports[1].rx_not_ours, 0, "{:?}", r.ports[1]);
    assert_eq!(r.client.retransmits, 0);
    // The worker tracked every connection: one conntrack entry each.
    assert_eq!(
        stats.events.get("ct_created").copied(),
        Some(600),
        "{:?}",
        stats.events
    );
    // Nothing but the announcements (gratuitous ARP or unsolicited
    // neighbour advertisements, learned from and then dropped) was dropped.
    let dropped: u64 = stats
        .drops
        .iter()
        .filter(|(k, _)| **k != "local_unhandled")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(dropped, 0, "drops: {:?}", stats.drops);
}

#[test]
fn a_lossy_link_costs_retransmits_not_connections() {
    let cfg = TcpConfig {
        request: 100,
        response: 3000,
        timeout_ns: 60_000_000_000,
        ..base(150, 150)
    };
    let link = LinkConfig {
        loss: 0.02,
        seed: 7,
        ..LinkConfig::default()
    };
    let r = run_loopback(&cfg, &link, &mut |_| {}).unwrap();
    assert_all_completed(&r, 150, 1, &cfg);
    let retransmits = r.client.retransmits + r.server.retransmits;
    assert!(retransmits > 0, "{r:#?}");
    // More packets went out than came back: the link lost some.
    let p = &r.ports[0];
    assert!(p.tx_packets > p.rx_packets, "{p:?}");
    let lost = p.tx_packets - p.rx_packets;
    assert!(
        retransmits <= lost * 5,
        "retransmits {retransmits} for {lost} lost"
    );
}

#[test]
fn bad_configurations_are_refused_naming_the_option() {
    let bad = |c: TcpConfig| run_loopback(&c, &LinkConfig::default(), &mut |_| {}).unwrap_err();
    assert!(bad(TcpConfig {
        concurrent: 0,
        ..TcpConfig::default()
    })
    .contains("--concurrent"));
    assert!(bad(TcpConfig {
        request: 0,
        ..TcpConfig::default()
    })
    .contains("--request"));
    assert!(bad(TcpConfig {
        cps: Some(-1.0),
        ..TcpConfig::default()
    })
    .contains("--cps"));
    assert!(bad(TcpConfig {
        clients: vec![Ipv4Addr::new(10, 1, 0, 1).into()],
        ..TcpConfig::default()
    })
    .contains("--listen"));
    assert!(bad(TcpConfig {
        clients: vec![Ipv4Addr::new(0, 0, 0, 1).into()],
        client_ports: (1000, 1010),
        concurrent: 100,
        ..TcpConfig::default()
    })
    .contains("too few"));
    // One address family a run.
    assert!(bad(TcpConfig {
        clients: vec!["fd00::1".parse().unwrap()],
        ..TcpConfig::default()
    })
    .contains("--servers"));
    let mixed: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "fd00::2".parse().unwrap()];
    assert!(bad(TcpConfig {
        clients: mixed,
        ..TcpConfig::default()
    })
    .contains("--clients"));
}

#[test]
fn ipv6_loopback_exchanges_complete() {
    // The shards resolve their gateway by neighbour discovery (answered in
    // place), so nothing but TCP crosses the link.
    let cfg = TcpConfig {
        clients: sluice_pktgen::tcp::parse_addr_range("fd00::100-fd00::1ff").unwrap(),
        targets: sluice_pktgen::tcp::parse_endpoints("[fd01::1]:80,[fd01::2]:443").unwrap(),
        listeners: sluice_pktgen::tcp::parse_endpoints("[fd01::1]:80,[fd01::2]:443").unwrap(),
        request: 300,
        response: 5000,
        ..base(500, 100)
    };
    let r = run_loopback(&cfg, &LinkConfig::default(), &mut |_| {}).unwrap();
    assert_all_completed(&r, 500, 1, &cfg);
    assert_eq!(r.listeners[0].accepted + r.listeners[1].accepted, 500);
    assert!(
        r.listeners.iter().all(|l| l.accepted == 250),
        "{:?}",
        r.listeners
    );
    let p = &r.ports[0];
    assert_eq!(
        (p.rx_not_ours, p.rx_malformed, p.tx_dropped),
        (0, 0, 0),
        "{p:?}"
    );
    assert_eq!(p.tx_packets, p.rx_packets);
}

#[test]
fn connections_that_get_nowhere_time_out_and_are_counted_failed() {
    let cfg = TcpConfig {
        timeout_ns: 200_000_000,
        drain_ns: 5_000_000_000,
        ..base(20, 20)
    };
    let link = LinkConfig {
        loss: 1.0,
        ..LinkConfig::default()
    };
    let t0 = std::time::Instant::now();
    let r = run_loopback(&cfg, &link, &mut |_| {}).unwrap();
    assert_eq!(r.client.attempted, 20);
    assert_eq!((r.client.established, r.client.completed), (0, 0));
    assert_eq!(
        (r.client.failed, r.client.failed_timeout),
        (20, 20),
        "{r:#?}"
    );
    assert_eq!(r.server.accepted, 0);
    assert_eq!(r.unfinished, 0);
    // Aborted at the timeout (shards are polled at least once a second),
    // not left to the drain.
    assert!(
        t0.elapsed() < std::time::Duration::from_millis(1800),
        "{:?}",
        t0.elapsed()
    );
}
