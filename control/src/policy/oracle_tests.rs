//! Oracle replay: the upstream NetworkPolicy e2e truth tables
//! (testdata/oracles/netpol-e2e) and the network-policy-api conformance
//! suites (testdata/oracles/network-policy-api), each case built as a
//! desired state, compiled, and every probe evaluated against the
//! compiled table. docs/policy.md reports the counts.

use super::compile_policy;
use crate::model::{Change, DesiredState, Kind, Object, ObjectKey};
use serde_json::{json, Value};
use sluice_dataplane::stages::service::ServiceConfig;
use sluice_dataplane::stages::{service_pipeline, Action, ServicePipeline};
use sluice_dataplane::stats::DropReason;
use sluice_dataplane::tables::policy::PolicyTable;
use sluice_dataplane::testing::{router_lab, Harness, MAC_CLIENT, MAC_P0};
use sluice_dataplane::wire::builder::{tcp_flags, PacketBuilder};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

fn oracle(path: &str) -> Value {
    let p = format!("{}/../testdata/oracles/{path}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}")))
        .unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn proto_num(p: &str) -> u8 {
    match p {
        "TCP" => 6,
        "UDP" => 17,
        "SCTP" => 132,
        other => panic!("protocol {other}"),
    }
}

fn ip_u128(a: IpAddr) -> (u8, u128) {
    match a {
        IpAddr::V4(a) => (4, u32::from(a) as u128),
        IpAddr::V6(a) => (6, u128::from(a)),
    }
}

/// The objects of a case as they stand, applied to a desired state one
/// batch per step, as the API would.
struct Cluster {
    state: DesiredState,
    objects: BTreeMap<ObjectKey, Object>,
    pod_ips: HashMap<String, IpAddr>,
    node_addresses: Vec<IpAddr>,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            state: DesiredState::new(),
            objects: BTreeMap::new(),
            pod_ips: HashMap::new(),
            node_addresses: Vec::new(),
        }
    }

    fn apply(&mut self, values: Vec<Value>) {
        let mut batch = Vec::new();
        for v in values {
            let o = Object::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
            self.objects.insert(o.key(), o.clone());
            batch.push(Change::Apply(o));
        }
        self.state
            .apply(&batch)
            .unwrap_or_else(|e| panic!("batch refused: {e}"));
    }

    fn delete(&mut self, keys: Vec<ObjectKey>) {
        let batch: Vec<Change> = keys.into_iter().map(Change::Delete).collect();
        self.state
            .apply(&batch)
            .unwrap_or_else(|e| panic!("delete refused: {e}"));
    }

    fn compile(&self) -> PolicyTable {
        compile_policy(&self.state, &self.node_addresses)
    }

    /// Evaluates a probe from pod to pod; both must exist.
    fn allowed(&self, t: &PolicyTable, from: &str, to: &str, proto: &str, port: u16) -> bool {
        let (f, src) = ip_u128(self.pod_ips[from]);
        let (_, dst) = ip_u128(self.pod_ips[to]);
        let _ = f;
        t.evaluate(f, proto_num(proto), src, dst, port).allow
    }
}

/// Replaces `{"podCIDR": "ns/pod", "prefix": N}` with the masked CIDR.
fn resolve_pod_cidrs(v: &mut Value, ips: &HashMap<String, IpAddr>) {
    match v {
        Value::Object(m) => {
            if let Some(pod) = m.get("podCIDR").and_then(Value::as_str) {
                let ip = ips[pod];
                let len = m.get("prefix").and_then(Value::as_u64).unwrap_or(32) as u8;
                let net = ipnet::IpNet::new(ip, len).unwrap().trunc();
                *v = Value::String(net.to_string());
                return;
            }
            for (_, x) in m.iter_mut() {
                resolve_pod_cidrs(x, ips);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| resolve_pod_cidrs(x, ips)),
        _ => {}
    }
}

/// The same probes through the real pipeline (parse → service (policy)
/// → route → rewrite) over the router lab, where 20.0.0.0/8 lies behind
/// p1's gateway: the first packet of each probe enters on p0 and must
/// leave on p1 (allowed) or be dropped as `policy_denied`.
struct Pipeline {
    h: Harness<ServicePipeline>,
    sport: u16,
}

impl Pipeline {
    fn new(table: &PolicyTable) -> Pipeline {
        let mut b = router_lab();
        b.policy = table.clone();
        Pipeline {
            h: Harness::new(
                b.build().unwrap(),
                service_pipeline(&ServiceConfig::default()),
            ),
            sport: 10000,
        }
    }

    fn allowed(&mut self, from: IpAddr, to: IpAddr, proto: &str, port: u16) -> bool {
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (from, to) else {
            panic!("the lab replays IPv4")
        };
        self.sport += 1;
        let b = PacketBuilder::new(MAC_CLIENT, MAC_P0).ipv4(src, dst);
        let f = match proto {
            "TCP" => b.tcp(self.sport, port, tcp_flags::SYN).build(),
            "UDP" => b.udp(self.sport, port).payload(b"probe").build(),
            _ => {
                let mut init = vec![1u8, 0, 0, 20];
                init.extend_from_slice(&[
                    0xaa, 0xbb, 0xcc, 0xdd, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1,
                ]);
                b.sctp(self.sport, port, 0).payload(&init).build()
            }
        };
        match self.h.run_one(0, f).0 {
            Action::Tx(1) => true,
            Action::Drop(DropReason::PolicyDenied) => false,
            other => panic!("{from} -> {to} {proto}/{port}: {other:?}"),
        }
    }
}

#[derive(Default, Debug)]
struct Tally {
    pass: usize,
    fail: usize,
    failures: Vec<String>,
    /// Probes whose pipeline verdict differs from the table's.
    pipeline_mismatches: Vec<String>,
    pipeline_probes: usize,
}

impl Tally {
    fn check_pipeline(&mut self, what: &str, table: bool, pipeline: bool) {
        self.pipeline_probes += 1;
        if table != pipeline {
            self.pipeline_mismatches.push(what.to_string());
        }
    }

    fn check(&mut self, what: String, expect_allow: bool, got_allow: bool) {
        if expect_allow == got_allow {
            self.pass += 1;
        } else {
            self.fail += 1;
            if self.failures.len() < 40 {
                self.failures.push(format!(
                    "{what}: expected {}, got {}",
                    if expect_allow { "allow" } else { "deny" },
                    if got_allow { "allow" } else { "deny" }
                ));
            }
        }
    }
}

fn netpol_e2e_tally() -> Tally {
    let d = oracle("netpol-e2e/netpol-e2e.json");
    let model = &d["model"];
    let mut tally = Tally::default();
    for case in d["cases"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        let mut c = Cluster::new();
        let mut base = Vec::new();
        for (i, ns) in model["namespaces"].as_array().unwrap().iter().enumerate() {
            base.push(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns["name"], "labels": ns["labels"]}}));
            let _ = i;
        }
        for (i, p) in model["pods"].as_array().unwrap().iter().enumerate() {
            let key = format!(
                "{}/{}",
                p["namespace"].as_str().unwrap(),
                p["name"].as_str().unwrap()
            );
            let ip: IpAddr = format!("20.0.{}.{}", i / 200, i % 200 + 10)
                .parse()
                .unwrap();
            c.pod_ips.insert(key, ip);
            let containers: Vec<Value> = p["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|port| {
                    json!({"name": port["container"], "image": "agnhost",
                        "ports": [{"name": port["name"], "containerPort": port["port"], "protocol": port["protocol"]}]})
                })
                .collect();
            base.push(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": p["name"], "namespace": p["namespace"], "labels": p["labels"]},
                "spec": {"containers": containers},
                "status": {"podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}]}}));
        }
        c.apply(base);
        for step in case["steps"].as_array().unwrap() {
            if let Some(list) = step.get("apply").or_else(|| step.get("update")) {
                let mut list = list.clone();
                resolve_pod_cidrs(&mut list, &c.pod_ips);
                c.apply(list.as_array().unwrap().clone());
            } else if let Some(list) = step.get("delete") {
                let keys = list
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| {
                        ObjectKey::namespaced(
                            Kind::NetworkPolicy,
                            k["namespace"].as_str().unwrap(),
                            k["name"].as_str().unwrap(),
                        )
                    })
                    .collect();
                c.delete(keys);
            } else if let Some(l) = step.get("labelNamespace") {
                let key = ObjectKey::cluster(Kind::Namespace, l["namespace"].as_str().unwrap());
                let mut o: Value = serde_json::from_str(&c.objects[&key].to_json()).unwrap();
                for (k, v) in l["add"].as_object().unwrap() {
                    o["metadata"]["labels"][k] = v.clone();
                }
                c.apply(vec![o]);
            } else if let Some(l) = step.get("labelPod") {
                let (ns, name) = l["pod"].as_str().unwrap().split_once('/').unwrap();
                let key = ObjectKey::namespaced(Kind::Pod, ns, name);
                let mut o: Value = serde_json::from_str(&c.objects[&key].to_json()).unwrap();
                for (k, v) in l["add"].as_object().unwrap() {
                    o["metadata"]["labels"][k] = v.clone();
                }
                c.apply(vec![o]);
            } else if let Some(p) = step.get("probe") {
                let t = c.compile();
                let mut pipe = Pipeline::new(&t);
                let port = p["port"].as_u64().unwrap() as u16;
                let proto = p["protocol"].as_str().unwrap();
                for (from, row) in p["matrix"].as_object().unwrap() {
                    for (to, cell) in row.as_object().unwrap() {
                        let expect = match cell.as_str().unwrap() {
                            "allow" => true,
                            "deny" => false,
                            _ => continue,
                        };
                        let got = c.allowed(&t, from, to, proto, port);
                        let what = format!("{id} {from} -> {to} {proto}/{port}");
                        let through = pipe.allowed(c.pod_ips[from], c.pod_ips[to], proto, port);
                        tally.check_pipeline(&what, got, through);
                        tally.check(what, expect, got);
                    }
                }
            } else {
                panic!("{id}: unknown step {step}");
            }
        }
    }
    tally
}

/// A node for the suite's host-network pods (centaurs) and `nodes` peers.
const NODE_IP: &str = "20.0.255.2";

fn policy_api_tally(file: &str) -> Tally {
    let d = oracle(&format!("network-policy-api/{file}"));
    let base = &d["base"];
    let mut tally = Tally::default();
    for case in d["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut c = Cluster::new();
        let mut objs = vec![json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-1", "labels": {"kubernetes.io/os": "linux"}},
            "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}})];
        for ns in base["namespaces"].as_array().unwrap() {
            objs.push(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns["name"], "labels": ns["labels"]}}));
        }
        for (i, p) in base["pods"].as_array().unwrap().iter().enumerate() {
            let key = format!(
                "{}/{}",
                p["namespace"].as_str().unwrap(),
                p["name"].as_str().unwrap()
            );
            let host = p["hostNetwork"].as_bool().unwrap_or(false);
            let ip: IpAddr = if host {
                NODE_IP.parse().unwrap()
            } else {
                format!("20.0.0.{}", i + 10).parse().unwrap()
            };
            c.pod_ips.insert(key, ip);
            let containers: Vec<Value> = p["containers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|ct| {
                    let ports: Vec<Value> = ct["declaredPorts"].as_array().unwrap().clone();
                    json!({"name": ct["name"], "image": "agnhost", "ports": ports})
                })
                .collect();
            let mut spec = json!({"containers": containers});
            if host {
                spec["hostNetwork"] = json!(true);
            }
            objs.push(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": p["name"], "namespace": p["namespace"], "labels": p["labels"]},
                "spec": spec,
                "status": {"podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}]}}));
        }
        c.apply(objs);
        // The table and pipeline for the state as it stands; rebuilt after
        // a change.
        let mut current: Option<(PolicyTable, Pipeline)> = None;
        for step in case["steps"].as_array().unwrap() {
            if step.get("probe").is_none() {
                current = None;
            }
            if let Some(list) = step.get("apply").or_else(|| step.get("mutate")) {
                let mut list = list.clone();
                resolve_pod_cidrs(&mut list, &c.pod_ips);
                c.apply(list.as_array().unwrap().clone());
            } else if let Some(list) = step.get("delete") {
                let keys = list
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| {
                        let kind = Kind::from_api(
                            o["apiVersion"].as_str().unwrap(),
                            o["kind"].as_str().unwrap(),
                        )
                        .unwrap();
                        let m = &o["metadata"];
                        match m["namespace"].as_str() {
                            Some(ns) => {
                                ObjectKey::namespaced(kind, ns, m["name"].as_str().unwrap())
                            }
                            None => ObjectKey::cluster(kind, m["name"].as_str().unwrap()),
                        }
                    })
                    .collect();
                c.delete(keys);
            } else if let Some(p) = step.get("probe") {
                let (t, pipe) = current.get_or_insert_with(|| {
                    let t = c.compile();
                    let pipe = Pipeline::new(&t);
                    (t, pipe)
                });
                let (from, to) = (p["from"].as_str().unwrap(), p["to"].as_str().unwrap());
                let proto = p["protocol"].as_str().unwrap();
                let port = p["port"].as_u64().unwrap() as u16;
                let expect = p["expect"].as_str().unwrap() == "allow";
                let got = c.allowed(t, from, to, proto, port);
                let sub = step.get("subtest").and_then(Value::as_str).unwrap_or("");
                let what = format!("{name} [{sub}] {from} -> {to} {proto}/{port}");
                let through = pipe.allowed(c.pod_ips[from], c.pod_ips[to], proto, port);
                tally.check_pipeline(&what, got, through);
                tally.check(what, expect, got);
            } else {
                panic!("{name}: unknown step {step}");
            }
        }
    }
    tally
}

fn report(suite: &str, t: &Tally) {
    eprintln!(
        "{suite}: {} pass, {} fail; pipeline: {} probes, {} differ from the table",
        t.pass,
        t.fail,
        t.pipeline_probes,
        t.pipeline_mismatches.len()
    );
    for f in &t.failures {
        eprintln!("  {f}");
    }
}

#[test]
fn netpol_e2e_truth_tables() {
    let t = netpol_e2e_tally();
    report("netpol-e2e", &t);
    assert_eq!(t.pass, 4680);
    assert_eq!(t.fail, 0, "{:#?}", t.failures);
    assert!(
        t.pipeline_mismatches.is_empty(),
        "{:#?}",
        t.pipeline_mismatches
    );
}

#[test]
fn cluster_network_policy_conformance() {
    let t = policy_api_tally("clusternetworkpolicy-v1alpha2.json");
    report("clusternetworkpolicy-v1alpha2", &t);
    assert_eq!(t.pass + t.fail, 301);
    assert_eq!(t.fail, 0, "{:#?}", t.failures);
    assert!(
        t.pipeline_mismatches.is_empty(),
        "{:#?}",
        t.pipeline_mismatches
    );
}

#[test]
fn admin_network_policy_conformance() {
    let t = policy_api_tally("adminnetworkpolicy-v1alpha1-v0.1.8.json");
    report("adminnetworkpolicy-v1alpha1-v0.1.8", &t);
    assert_eq!(t.pass + t.fail, 289);
    assert_eq!(t.fail, 0, "{:#?}", t.failures);
    assert!(
        t.pipeline_mismatches.is_empty(),
        "{:#?}",
        t.pipeline_mismatches
    );
}
