//! `sluice-perf run`'s side-by-side flags, through the binary: refusals,
//! `--out`, the report's shape, a missing peer listed as skipped, and (with
//! `--ignored`, where dpdk-testpmd is installed) a real run beside testpmd.

use std::path::PathBuf;
use std::process::{Command, Output};

fn perf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice-perf"))
        .args(args)
        .output()
        .expect("sluice-perf runs")
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-perf-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn peers_are_refused_where_a_scenario_has_none() {
    let out = perf(&["run", "l3fwd", "--peers", "linux"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scenario \"l3fwd\" has no linux peer"),
        "stderr: {err}"
    );
    let out = perf(&["run", "l3fwd", "--peers", "vpp"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown peer \"vpp\""));
}

#[test]
fn out_writes_the_report_in_the_shared_shape() {
    let dir = temp("out");
    let file = dir.join("sub/io.json");
    let out = perf(&[
        "run",
        "io",
        "--seconds",
        "1",
        "--routes",
        "1000",
        "--flows",
        "100",
        "--json",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(printed, written);
    assert_eq!(written["scenario"], "io");
    assert_eq!(written["rounds"], 1);
    assert_eq!(written["ratios"], serde_json::json!({}));
    assert_eq!(written["skipped"], serde_json::json!([]));
    let r = &written["results"][0];
    assert_eq!(r["system"], "sluice");
    assert!(r["mpps"].as_f64().unwrap() > 0.0);
    assert!(r["round_mpps"].is_array());
    std::fs::remove_dir_all(&dir).ok();
}

/// The EAL arguments of the DPDK tests: no hugepages, nothing shared.
#[cfg(feature = "dpdk")]
const EAL: &str = "--eal=--no-huge -m 1024 --no-shconf";

#[cfg(feature = "dpdk")]
#[test]
fn a_missing_peer_is_listed_as_skipped_never_measured() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-perf"))
        .args([
            "run",
            "dpdk-io",
            "--peers",
            "testpmd",
            "--rounds",
            "2",
            "--seconds",
            "1",
            "--flows",
            "100",
            "--routes",
            "1000",
            EAL,
            "--json",
        ])
        // No PATH: dpdk-testpmd cannot be found.
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("skipping testpmd: dpdk-testpmd is not on PATH"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["scenario"], "dpdk-io");
    assert_eq!(v["rounds"], 2);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{v}");
    assert_eq!(results[0]["system"], "sluice");
    assert_eq!(results[0]["round_mpps"].as_array().unwrap().len(), 2);
    assert!(results[0]["mpps"].as_f64().unwrap() > 0.0);
    assert_eq!(v["skipped"][0]["system"], "testpmd");
    assert_eq!(v["ratios"], serde_json::json!({}));
}

/// A real side-by-side run beside dpdk-testpmd (a few seconds; needs
/// dpdk-testpmd, and takes hugepages when run as root).
#[cfg(feature = "dpdk")]
#[test]
#[ignore = "starts dpdk-testpmd on cores 0 and 1: cargo test --features dpdk --test peers -- --ignored"]
fn side_by_side_with_testpmd() {
    if Command::new("dpdk-testpmd")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("dpdk-testpmd is not installed: nothing to compare with");
        return;
    }
    let out = perf(&[
        "run",
        "dpdk-io",
        "--peers",
        "testpmd",
        "--rounds",
        "1",
        "--seconds",
        "2",
        "--flows",
        "1000",
        "--routes",
        "1000",
        EAL,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let systems: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["system"].as_str().unwrap())
        .collect();
    assert_eq!(systems, ["sluice", "testpmd"], "{v}");
    for r in v["results"].as_array().unwrap() {
        assert!(r["mpps"].as_f64().unwrap() > 0.1, "{r}");
        assert_eq!(r["per_second_mpps"].as_array().unwrap().len(), 2, "{r}");
    }
    let ratio = v["ratios"]["sluice/testpmd"].as_f64().unwrap();
    assert!(ratio > 0.0 && ratio < 10.0, "{ratio}");
    // Nothing left behind: no testpmd, no runtime directory.
    let ps = Command::new("pgrep")
        .args(["-f", "sluice-perf-tp-"])
        .output()
        .unwrap();
    assert!(ps.stdout.is_empty(), "a testpmd is still running");
}
