//! Replays kube-proxy's own expectations (testdata/oracles/kube-proxy, see
//! its README): `TestCategorizeEndpoints` against [`categorize_endpoints`]
//! and the nftables proxier's packet-flow rows against [`classify`].
//!
//! Each test prints a table with one line per case or row and its result,
//! then asserts that every row passes except those in an explicit list of
//! argued differences (empty today). Run with `--nocapture` to see the
//! tables.

use super::*;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
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

fn nets(v: &Value) -> Vec<ipnet::IpNet> {
    let strings: Vec<&str> = match v {
        Value::String(s) => s.split(',').collect(),
        Value::Array(a) => a.iter().map(|s| s.as_str().unwrap()).collect(),
        _ => vec![],
    };
    strings
        .into_iter()
        .map(|s| s.trim().parse().unwrap())
        .collect()
}

fn ips(v: &Value) -> Vec<IpAddr> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().parse().unwrap())
        .collect()
}

/// The fake proxier's environment (`NewFakeProxier`) with a case's
/// overrides, as a [`NodeConfig`].
fn node_config(env: &Value, overrides: &Value) -> NodeConfig {
    let mut env = env.as_object().unwrap().clone();
    if let Some(o) = overrides.as_object() {
        for (k, v) in o {
            env.insert(k.clone(), v.clone());
        }
    }
    let detector = &env["localTrafficDetector"];
    NodeConfig {
        name: env["nodeName"].as_str().unwrap().into(),
        zone: None,
        primary_ips: vec![env["nodeIP"].as_str().unwrap().parse().unwrap()],
        local_ips: ips(&env["localNodeIPsForTracer"]),
        cluster_cidrs: if detector["mode"] == "ClusterCIDR" {
            nets(&detector["cidr"])
        } else {
            vec![]
        },
        service_cidrs: nets(&env["serviceCIDRs"]),
        node_port_addresses: nets(&env["nodePortAddresses"]),
        masquerade_all: env["masqueradeAll"].as_bool().unwrap_or(false),
    }
}

fn show_verdict(v: &Verdict, masq: bool) -> String {
    match v {
        Verdict::Dnat { endpoints, .. } => format!("{} masq {masq}", show_set(endpoints)),
        Verdict::Reject => format!("REJECT masq {masq}"),
        Verdict::Drop => format!("DROP masq {masq}"),
        Verdict::NoMatch => format!("\"\" masq {masq}"),
    }
}

/// Every `runPacketFlowTests` row of the nftables proxier's tests
/// (pkg/proxy/nftables/proxier_test.go), 37 cases and 207 rows. The
/// Services and EndpointSlices go straight to the pure functions: the
/// tests' NodePorts (3001-3003) lie outside the API server's default node
/// port range, which Sluice's validation enforces, so the objects would
/// not be admitted to a desired state as they are.
#[test]
fn services_oracle_nftables_packet_flows() {
    let (cases, rows) = packet_flow_rows(Mode::Classify);
    let (passed, failed) = report("nftables-packet-flows.json", &rows);
    assert_eq!((cases, passed + failed), (37, 207));
}

/// The same rows through the compiled [`ServiceTable`]: each case's
/// objects compiled by [`ServiceCompiler`], each probe answered by
/// [`table_verdict`] (the table's lookup, source ranges, source class and
/// the ring's whole endpoint set).
///
/// [`ServiceTable`]: sluice_dataplane::tables::services::ServiceTable
#[test]
fn services_oracle_nftables_packet_flows_compiled() {
    let (cases, rows) = packet_flow_rows(Mode::Table);
    let (passed, failed) = report("nftables-packet-flows.json, compiled table", &rows);
    assert_eq!((cases, passed + failed), (37, 207));
}

/// The same rows as packets through the dataplane: each case's compiled
/// table in a generation, each probe sent as many first packets (from
/// different source ports) through parse and the service stage; the
/// endpoints they were translated to must be exactly the expected set,
/// and some must be masqueraded exactly when kube-proxy masquerades.
#[test]
fn services_oracle_nftables_packet_flows_pipeline() {
    let (cases, rows) = packet_flow_rows(Mode::Pipeline);
    let (passed, failed) = report("nftables-packet-flows.json, through the pipeline", &rows);
    assert_eq!((cases, passed + failed), (37, 207));
}

/// How a packet-flow row is answered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// [`classify`] over the views.
    Classify,
    /// [`table_verdict`] over the compiled table.
    Table,
    /// Packets through the dataplane's parse and service stages.
    Pipeline,
}

/// Every packet-flow row, answered as `mode` says. Returns the number of
/// cases and the rows.
fn packet_flow_rows(mode: Mode) -> (usize, Vec<Row>) {
    let data = oracle("nftables-packet-flows.json");
    let envs = &data["environments"];
    let mut rows = Vec::new();
    let mut cases = 0;
    for case in data["cases"].as_array().unwrap() {
        cases += 1;
        let label = format!(
            "{}{} ({})",
            case["test"].as_str().unwrap(),
            case["subtest"]
                .as_str()
                .map(|s| format!("/{s}"))
                .unwrap_or_default(),
            case["phase"].as_str().unwrap()
        );
        let node = node_config(
            &envs[case["environment"].as_str().unwrap()],
            &case["environmentOverrides"],
        );
        let services: Vec<Service> = case["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| serde_json::from_value(s.clone()).unwrap())
            .collect();
        let slices: Vec<EndpointSlice> = case["endpointSlices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| serde_json::from_value(s.clone()).unwrap())
            .collect();
        let set = ServiceSet::from_objects(&services, &slices);
        let table = (mode != Mode::Classify).then(|| {
            ServiceCompiler::from_objects(&services, &slices, node.clone())
                .unwrap_or_else(|e| panic!("{label}: {e}"))
                .table()
                .clone()
        });
        for row in case["rows"].as_array().unwrap() {
            let probe = Probe {
                src: row["sourceIP"].as_str().unwrap().parse().unwrap(),
                dst: row["destIP"].as_str().unwrap().parse().unwrap(),
                protocol: crate::model::names::protocol(row["protocol"].as_str().unwrap()).unwrap(),
                dst_port: row["destPort"].as_u64().unwrap() as u16,
            };
            let want = match &row["output"] {
                o if o.get("endpoints").is_some() => Verdict::Dnat {
                    endpoints: addr_set(&o["endpoints"]),
                    masquerade: false,
                },
                o => match o["verdict"].as_str().unwrap() {
                    "DROP" => Verdict::Drop,
                    "REJECT" => Verdict::Reject,
                    "" => Verdict::NoMatch,
                    other => panic!("unknown verdict {other:?}"),
                },
            };
            let want_masq = row["masq"].as_bool().unwrap();
            let (got, got_masq) = match (&table, mode) {
                (Some(t), Mode::Pipeline) => {
                    let want_n = match &want {
                        Verdict::Dnat { endpoints, .. } => endpoints.len(),
                        _ => 1,
                    };
                    super::pipeline_replay::verdict(t, &probe, 64 * want_n.max(1))
                }
                _ => {
                    let got = match &table {
                        Some(t) => table_verdict(t, &probe),
                        None => classify(&set, &node, &probe),
                    };
                    // The tracer follows every endpoint branch and reports
                    // whether any marked the packet: the flow's own
                    // masquerade, or a hairpin to one of the endpoints.
                    let masq = match &got {
                        Verdict::Dnat {
                            endpoints,
                            masquerade,
                        } => *masquerade || endpoints.iter().any(|e| hairpin(probe.src, *e)),
                        _ => false,
                    };
                    (got, masq)
                }
            };
            let same_verdict = match (&got, &want) {
                (Verdict::Dnat { endpoints: a, .. }, Verdict::Dnat { endpoints: b, .. }) => a == b,
                (a, b) => a == b,
            };
            rows.push(Row {
                case: label.clone(),
                row: format!(
                    "{}: {} -> {}:{}/{}",
                    row["name"].as_str().unwrap(),
                    probe.src,
                    probe.dst,
                    probe.dst_port,
                    probe.protocol.as_str()
                ),
                expected: show_verdict(&want, want_masq),
                got: show_verdict(&got, got_masq),
                pass: same_verdict && got_masq == want_masq,
            });
        }
    }
    (cases, rows)
}
