//! The command line: runs, errors people see, capture and replay.

use sluice_dataplane::io::pcap::PcapReader;
use std::path::PathBuf;
use std::process::Command;

fn pktgen(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-pktgen"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sluice-pktgen-{}-{name}", std::process::id()))
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn run_over_a_lossy_loop_reports_json() {
    let (code, out, err) = pktgen(&[
        "run",
        "--port",
        "mem:loop,loss=10%,delay=50us",
        "--stream",
        "udp src=10.0.0.1-10.0.0.255 dst=10.1.0.1 sport=1000-2000 dport=53 size=64",
        "--rate",
        "100kpps",
        "--count",
        "20000",
        "--json",
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    let r = json(&out);
    assert_eq!(r["tx"]["packets"], 20000);
    let s = &r["streams"][0];
    let loss = s["loss_pct"].as_f64().unwrap();
    assert!((loss - 10.0).abs() < 1.5, "{s}");
    assert!(s["latency_ns"]["p50"].as_u64().unwrap() >= 49_900, "{s}");
    for k in ["p50", "p90", "p99", "p999", "max"] {
        assert!(s["latency_ns"][k].is_u64(), "{k}");
    }
}

#[test]
fn profiles_run() {
    let dir = env!("CARGO_MANIFEST_DIR");
    for p in ["profiles/mixed.yaml", "profiles/vxlan.toml"] {
        let path = format!("{dir}/{p}");
        let (code, out, err) = pktgen(&[
            "run",
            "--port",
            "mem:loop",
            "--profile",
            &path,
            "--rate",
            "50kpps",
            "--seconds",
            "0.2",
            "--json",
            "-q",
        ]);
        assert_eq!(code, 0, "{p}: {err}");
        let r = json(&out);
        for s in r["streams"].as_array().unwrap() {
            assert!(s["tx_packets"].as_u64().unwrap() > 0, "{p}: {s}");
            assert_eq!(s["lost"], 0, "{p}: {s}");
        }
    }
}

#[test]
fn bad_input_is_one_line_naming_the_field() {
    let profile = temp("bad.yaml");
    std::fs::write(
        &profile,
        "streams:\n  - proto: udp\n    name: dns\n    dport: 99999\n",
    )
    .unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "run",
                "--port",
                "mem:sink",
                "--profile",
                profile.to_str().unwrap(),
            ],
            "stream 1 (dns): field dport: 99999 is out of range 0-65535",
        ),
        (
            vec!["run", "--port", "mem:sink", "--stream", "udp sport=abc"],
            "stream 1: field sport: expected a number, got \"abc\"",
        ),
        (
            vec![
                "run", "--port", "mem:sink", "--stream", "udp", "--rate", "fast",
            ],
            "--rate",
        ),
        (vec!["run", "--port", "eth9", "--stream", "udp"], "--port"),
        (
            vec![
                "run",
                "--port",
                "mem:sink",
                "--stream",
                "tcp size=60 mark=on",
            ],
            "field mark",
        ),
    ];
    for (args, want) in cases {
        let (code, out, err) = pktgen(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(err.starts_with("sluice-pktgen: "), "{err}");
    }
    let _ = std::fs::remove_file(profile);
}

#[test]
fn capture_then_replay_with_and_without_timestamps() {
    let cap = temp("cap.pcap");
    let out1 = temp("out1.pcap");
    // 200 packets at 1 kpps: the capture spans about 0.2 s.
    let (code, _, err) = pktgen(&[
        "run",
        "--port",
        "mem:loop",
        "--stream",
        "udp size=100",
        "--rate",
        "1kpps",
        "--count",
        "200",
        "--capture",
        cap.to_str().unwrap(),
        "-q",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = pktgen(&[
        "replay",
        "--pcap",
        cap.to_str().unwrap(),
        "--port",
        &format!("pcap:out={}", out1.display()),
        "--fast",
        "--json",
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    let fast = json(&out);
    assert_eq!(fast["tx"]["packets"], 200);
    assert_eq!(fast["tx"]["bytes"], 200 * 100);
    // As recorded: never faster than the capture's span; twice as fast,
    // never faster than half of it.
    let span = {
        let mut r = PcapReader::open(&cap).unwrap();
        let mut buf = Vec::new();
        let mut ts = Vec::new();
        while let Some(rec) = r.read_record(&mut buf).unwrap() {
            ts.push(rec.ts_ns);
        }
        assert_eq!(ts.len(), 200);
        (ts[199] - ts[0]) as f64 / 1e9
    };
    assert!(span > 0.05, "capture span {span}");
    let (code, out, err) = pktgen(&[
        "replay",
        "--pcap",
        cap.to_str().unwrap(),
        "--port",
        "mem:sink",
        "--json",
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    let paced = json(&out);
    assert_eq!(paced["tx"]["packets"], 200);
    let t1 = paced["seconds"].as_f64().unwrap();
    assert!(
        t1 >= span * 0.99 && t1 < span + 1.0,
        "{t1} for a span of {span}"
    );
    let (_, out, _) = pktgen(&[
        "replay",
        "--pcap",
        cap.to_str().unwrap(),
        "--port",
        "mem:sink",
        "--speed",
        "2",
        "--json",
        "-q",
    ]);
    let t2 = json(&out)["seconds"].as_f64().unwrap();
    assert!(
        t2 >= span / 2.0 * 0.99 && t2 < span / 2.0 + 1.0,
        "{t2} for a span of {span}"
    );
    // What was replayed is what was captured.
    assert_eq!(
        std::fs::read(&cap).unwrap().len(),
        std::fs::read(&out1).unwrap().len()
    );
    for f in [cap, out1] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn show_prints_templates() {
    let (code, out, err) = pktgen(&["show", "--stream", "udp dport=53 size=64"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("stream 0 (s1): 64-64 bytes, marked"),
        "{out}"
    );
    assert!(
        out.contains("0000  02 00 00 00 00 01 02 00 00 00 c0 01 08 00 45 00"),
        "{out}"
    );
}

#[test]
fn tcp_reports_json_and_refuses_bad_options_by_name() {
    let (code, out, err) = pktgen(&[
        "tcp",
        "--port",
        "mem:loop",
        "--clients",
        "10.9.0.0/28",
        "--servers",
        "10.9.1.1:8000,10.9.1.2:8000",
        "--connections",
        "300",
        "--concurrent",
        "30",
        "--cps",
        "5000",
        "--request",
        "50",
        "--response",
        "700",
        "--requests",
        "2",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let r = json(&out);
    assert_eq!(r["client"]["completed"], 300, "{r}");
    assert_eq!(r["client"]["failed"], 0);
    assert_eq!(r["client"]["response_bytes"], 300 * 2 * 700);
    assert_eq!(r["server"]["request_bytes"], 300 * 2 * 50);
    assert!(r["peak_concurrent"].as_u64().unwrap() <= 30, "{r}");
    // Connections went to both servers, in turn.
    assert_eq!(r["listeners"][0]["accepted"], 150, "{r}");
    assert_eq!(r["listeners"][1]["accepted"], 150, "{r}");
    for k in ["p50", "p99", "max"] {
        assert!(r["connect_latency_ns"][k].as_u64().unwrap() > 0, "{k}");
        assert!(r["request_latency_ns"][k].as_u64().unwrap() > 0, "{k}");
    }

    for (args, needle) in [
        (vec!["--port", "mem:sink"], "carries no TCP"),
        (
            // IPv6 clients with the default (IPv4) servers: one family a run.
            vec!["--port", "mem:loop", "--clients", "fd00::1"],
            "--servers: 10.1.0.1:80 is of another address family",
        ),
        (
            vec!["--port", "mem:loop", "--servers", "10.1.0.1"],
            "--servers",
        ),
        (
            vec!["--port", "mem:loop", "--concurrent", "0"],
            "--concurrent",
        ),
        (
            vec!["--port", "mem:loop", "--client-mac", "01:00:00:00:00:01"],
            "multicast",
        ),
        (
            vec!["--dut", "service", "--clients", "10.0.0.5"],
            "fixed by --dut service",
        ),
        (vec!["--dut", "router"], "--dut"),
        (vec![], "--port"),
    ] {
        let mut a = vec!["tcp"];
        a.extend(args.iter().copied());
        let (code, _, err) = pktgen(&a);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
}
