//! The measurement against a link whose behaviour is known: the loss and
//! latency the receiver reports must be the ones the mem link was told to
//! cause, and the pacer must hold its rate.
//! Rate accuracy is in `rate.rs`, a test binary of its own so that these
//! tests, run in parallel, do not take the generator's core.

use sluice_dataplane::io::Port;
use sluice_pktgen::clock::Clock;
use sluice_pktgen::gen::Generator;
use sluice_pktgen::link::{LinkConfig, LinkPort};
use sluice_pktgen::rate::Rate;
use sluice_pktgen::run::{run, RunConfig, RunReport};
use sluice_pktgen::spec::StreamSpec;

const STREAM: &str = "udp src=10.0.0.1-10.0.0.255 dst=10.1.0.1 sport=1000-2000 dport=53 size=64";

fn run_link(
    link: LinkConfig,
    rate: Rate,
    count: u64,
) -> (RunReport, sluice_dataplane::io::PortStats) {
    let clock = Clock::new();
    let port = LinkPort::new("link", link, clock).unwrap();
    let mut tx = port.tx_queue(0).unwrap();
    let mut rx = port.rx_queue(0).unwrap();
    let spec = StreamSpec::parse_short(1, STREAM).unwrap();
    let mut gen = Generator::new(&[spec], 1).unwrap();
    let cfg = RunConfig {
        rate,
        seconds: None,
        count: Some(count),
        drain_ns: 200_000_000,
        ..RunConfig::default()
    };
    let report = run(
        &mut gen,
        tx.as_mut(),
        Some(rx.as_mut()),
        &cfg,
        clock,
        None,
        &mut |_| {},
    );
    (report, port.stats())
}

#[test]
fn measured_loss_matches_the_links_loss() {
    let n = 200_000;
    let (r, stats) = run_link(
        LinkConfig {
            loss: 0.02,
            seed: 42,
            ..LinkConfig::default()
        },
        Rate::Unlimited,
        n,
    );
    let s = &r.streams[0];
    assert_eq!(s.tx_packets, n);
    // Exactly the packets the link dropped are missing...
    assert_eq!(s.lost, stats.rx_dropped, "{s:?}");
    assert_eq!(s.rx_packets + s.lost, n);
    assert_eq!((s.duplicates, s.reordered), (0, 0));
    // ...and they are the configured 2% (binomial sd 0.03%; 5 sd).
    assert!((s.loss_pct - 2.0).abs() < 0.16, "loss {}%", s.loss_pct);
}

#[test]
fn lossless_link_loses_nothing() {
    let (r, _) = run_link(LinkConfig::default(), Rate::Pps(100_000.0), 20_000);
    let s = &r.streams[0];
    assert_eq!((s.tx_packets, s.rx_packets, s.lost), (20_000, 20_000, 0));
    assert_eq!(s.latency_ns.samples, 20_000);
}

#[test]
fn measured_latency_matches_the_links_delay() {
    let delay = 2_000_000;
    let (r, _) = run_link(
        LinkConfig {
            delay_ns: delay,
            ..LinkConfig::default()
        },
        Rate::Pps(20_000.0),
        10_000,
    );
    let l = &r.streams[0].latency_ns;
    assert_eq!(l.samples, 10_000);
    // The link never delivers early (the histogram keeps 3 significant
    // digits, so a value may read up to 0.1% low)...
    assert!(l.min as f64 >= delay as f64 * 0.999, "{l:?}");
    // ...and the receiver polls continuously, so the median is the delay
    // plus at most a poll's worth (generous for a shared machine).
    assert!(l.p50 < delay + 500_000, "{l:?}");
}

#[test]
fn capped_link_drops_what_exceeds_its_rate() {
    let (r, stats) = run_link(
        LinkConfig {
            cap_pps: Some(50_000.0),
            cap_depth: Some(32),
            ..LinkConfig::default()
        },
        Rate::Pps(100_000.0),
        20_000,
    );
    let s = &r.streams[0];
    assert_eq!(s.lost, stats.rx_dropped);
    // At most the cap goes (plus the bucket's 32 packets). No lower bound:
    // a generator that lost its core for a while sends the late packets in
    // one burst, which the bucket rightly drops, so on a busy machine far
    // fewer than the cap may pass.
    let allowed = 50_000.0 * r.tx_seconds + 32.0;
    assert!(s.rx_packets as f64 <= allowed * 1.01, "{s:?}");
    assert!(s.rx_packets > 0, "{s:?}");
}

#[test]
fn rfc2544_finds_the_cap_of_a_link() {
    use sluice_pktgen::rfc2544::{rfc2544, Rfc2544Args};
    let args = Rfc2544Args {
        // A deep bucket (20 ms) absorbs the bursts of a generator that lost
        // its core for a moment; a 0.5 s trial above 104 kpps still
        // overflows it.
        dut: "mem:loop,cap=100kpps,depth=2000".into(),
        sizes: vec![64],
        trial_seconds: 0.5,
        pdr: 0.5,
        max_rate: Some("200kpps".into()),
        resolution: 2.0,
        latency_at: vec![50.0],
        json: true,
        quiet: true,
    };
    let r = rfc2544(&args, &mut |_| {}).unwrap();
    let s = &r.results[0];
    // The link passes 100 kpps (104 within a trial); the search's
    // resolution is 4 kpps. Below, only a loose bound: a trial loses
    // packets whenever the generator was off its core for over 20 ms.
    assert!(s.ndr_pps <= 104_000.0 + 4_000.0, "{s:?}");
    assert!(s.ndr_pps > 0.0, "{s:?}");
    assert!(s.pdr_pps >= s.ndr_pps);
    assert!(
        s.trials
            .iter()
            .any(|t| t.target_pps == Some(200_000.0) && t.loss_pct > 40.0),
        "{s:?}"
    );
}

#[test]
fn rfc2544_through_the_router() {
    use sluice_pktgen::rfc2544::{rfc2544, Rfc2544Args};
    let args = Rfc2544Args {
        dut: "router".into(),
        sizes: vec![64, 1514],
        trial_seconds: 0.1,
        pdr: 0.5,
        max_rate: Some("50kpps".into()),
        resolution: 10.0,
        latency_at: vec![100.0],
        json: true,
        quiet: true,
    };
    let r = rfc2544(&args, &mut |_| {}).unwrap();
    for s in &r.results {
        // The router forwards every marked packet (with its TTL and MACs
        // rewritten, its mark intact) at this modest rate.
        assert!(s.ndr_pps > 0.0, "{s:?}");
        assert!(
            s.trials.iter().any(|t| t.lost == 0 && t.tx_packets > 0),
            "{s:?}"
        );
    }
}

#[test]
fn measured_duplicates_match_the_links_duplicates() {
    let n = 100_000;
    let (r, _) = run_link(
        LinkConfig {
            dup: 0.01,
            seed: 7,
            ..LinkConfig::default()
        },
        Rate::Unlimited,
        n,
    );
    let s = &r.streams[0];
    // Every packet arrives, some twice: the extra ones are the duplicates.
    assert_eq!(s.lost, 0, "{s:?}");
    assert_eq!(s.rx_packets, n + s.duplicates, "{s:?}");
    assert_eq!(s.reordered, 0);
    let pct = s.duplicates as f64 * 100.0 / n as f64;
    assert!((pct - 1.0).abs() < 0.2, "duplicates {pct}%");
}

#[test]
fn measured_reordering_matches_the_links_reordering() {
    let n = 100_000;
    let (r, _) = run_link(
        LinkConfig {
            reorder: 0.01,
            seed: 9,
            ..LinkConfig::default()
        },
        Rate::Unlimited,
        n,
    );
    let s = &r.streams[0];
    // Every packet arrives once; each held-back one arrives after a later
    // sequence number.
    assert_eq!((s.lost, s.duplicates, s.rx_packets), (0, 0, n), "{s:?}");
    let pct = s.reordered as f64 * 100.0 / n as f64;
    assert!((pct - 1.0).abs() < 0.2, "reordered {pct}%");
}
