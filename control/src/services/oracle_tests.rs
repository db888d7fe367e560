//! Replays kube-proxy's own expectations (testdata/oracles/kube-proxy, see
//! its README): `TestCategorizeEndpoints` against [`categorize_endpoints`].
//!
//! Each test prints a table with one line per case or row and its result,
//! then asserts that every row passes except those in an explicit list of
//! argued differences (empty today). Run with `--nocapture` to see the
//! tables.

use super::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Rows whose expected result Sluice deliberately does not reproduce:
/// (case, row, why). Each must still fail; a row listed here that passes
/// is an error, so the list cannot go stale.
const ACCEPTED_DIFFERENCES: &[(&str, &str, &str)] = &[];

fn oracle(file: &str) -> Value {
    let dir = match std::env::var("SLUICE_SHARED_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata"),
    };
    let path = dir.join("oracles/kube-proxy").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the oracle data was not found at {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn addr_set(v: &Value) -> BTreeSet<SocketAddr> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().parse().unwrap())
        .collect()
}

fn opt_addr_set(v: &Value) -> Option<BTreeSet<SocketAddr>> {
    (!v.is_null()).then(|| addr_set(v))
}

fn show(set: &Option<BTreeSet<SocketAddr>>) -> String {
    match set {
        None => "nil".into(),
        Some(s) => show_set(s),
    }
}

fn show_set(s: &BTreeSet<SocketAddr>) -> String {
    let v: Vec<String> = s.iter().map(|a| a.to_string()).collect();
    format!("[{}]", v.join(", "))
}

struct Row {
    case: String,
    row: String,
    expected: String,
    got: String,
    pass: bool,
}

/// Prints the table and the counts, and checks the failures against
/// [`ACCEPTED_DIFFERENCES`]. Returns (passed, failed).
fn report(title: &str, rows: &[Row]) -> (usize, usize) {
    println!("\n== {title} ==");
    for r in rows {
        println!(
            "{} | {} | {}\n    expected: {}\n    got:      {}",
            if r.pass { "pass" } else { "FAIL" },
            r.case,
            r.row,
            r.expected,
            r.got
        );
    }
    let passed = rows.iter().filter(|r| r.pass).count();
    let failed = rows.len() - passed;
    println!(
        "{title}: {passed} passed, {failed} failed, of {}",
        rows.len()
    );
    let accepted = |r: &Row| {
        ACCEPTED_DIFFERENCES
            .iter()
            .any(|(c, n, _)| *c == r.case && *n == r.row)
    };
    let unexpected: Vec<String> = rows
        .iter()
        .filter(|r| !r.pass && !accepted(r))
        .map(|r| {
            format!(
                "{} | {}: expected {}, got {}",
                r.case, r.row, r.expected, r.got
            )
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} rows differ from kube-proxy:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    let stale: Vec<&str> = rows
        .iter()
        .filter(|r| r.pass && accepted(r))
        .map(|r| r.row.as_str())
        .collect();
    assert!(
        stale.is_empty(),
        "accepted differences that now pass: {stale:?}"
    );
    (passed, failed)
}

/// `TestCategorizeEndpoints` (pkg/proxy/topology_test.go), all 26 cases.
#[test]
fn services_oracle_categorize_endpoints() {
    const NODE: &str = "test-node";
    let data = oracle("categorize-endpoints.json");
    let mut rows = Vec::new();
    for case in data["cases"].as_array().unwrap() {
        let zone = case["nodeLabels"][ZONE_LABEL].as_str();
        let info = &case["serviceInfo"];
        let policies = TrafficPolicies {
            internal_local: info["internalPolicyLocal"].as_bool().unwrap(),
            external_local: info["externalPolicyLocal"].as_bool().unwrap(),
            // `ExternallyAccessible`: the test's services have no external
            // IPs or VIPs, only (maybe) a node port.
            externally_accessible: info["nodePort"].as_i64().unwrap() != 0,
        };
        let endpoints: Vec<EndpointView> = case["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let flag = |k: &str| e[k].as_bool().unwrap_or(false);
                let mut v = EndpointView::new(
                    e["endpoint"].as_str().unwrap().parse().unwrap(),
                    flag("ready"),
                    flag("serving"),
                    flag("terminating"),
                );
                if flag("isLocal") {
                    v.node_name = Some(NODE.into());
                }
                v.zone_hints = e["zoneHints"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|z| z.as_str().unwrap().to_string())
                    .collect();
                v
            })
            .collect();
        let got = categorize_endpoints(&endpoints, policies, NODE, zone);
        let want = &case["expected"];
        let want_cluster = opt_addr_set(&want["clusterEndpoints"]);
        let want_local = opt_addr_set(&want["localEndpoints"]);
        let want_all = addr_set(&want["allEndpoints"]);
        let want_any = want["hasAnyEndpoints"].as_bool().unwrap();
        let pass = got.cluster == want_cluster
            && got.local == want_local
            && got.all_reachable == want_all
            && got.has_any_endpoints == want_any;
        let fmt = |c: &Option<BTreeSet<SocketAddr>>,
                   l: &Option<BTreeSet<SocketAddr>>,
                   a: &BTreeSet<SocketAddr>,
                   any: bool| {
            format!(
                "cluster {} local {} all {} any {any}",
                show(c),
                show(l),
                show_set(a)
            )
        };
        rows.push(Row {
            case: "TestCategorizeEndpoints".into(),
            row: case["name"].as_str().unwrap().into(),
            expected: fmt(&want_cluster, &want_local, &want_all, want_any),
            got: fmt(
                &got.cluster,
                &got.local,
                &got.all_reachable,
                got.has_any_endpoints,
            ),
            pass,
        });
    }
    let (passed, failed) = report("categorize-endpoints.json", &rows);
    assert_eq!((passed + failed, failed), (26, 0));
}
