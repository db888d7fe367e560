//! Services at scale (issue 3's benchmarks): compile 100k Services × 10
//! endpoints from scratch, then change one EndpointSlice at a time through
//! the controller while a worker runs, and time each change until every
//! worker runs its generation.
//!
//! ```sh
//! taskset -c 1 cargo bench -p sluice-control --bench services            # 100k, 200 changes
//! taskset -c 1 cargo bench -p sluice-control --bench services -- 10000 50 # smaller
//! ```
//!
//! The state also holds 100k Pods and 10k NetworkPolicies over them: they
//! are stored (and validated) but not compiled yet. Prints one JSON object
//! on the last line.

use serde_json::json;
use sluice_control::compile::{compile, NodeContext, PortDecl, ServiceSettings};
use sluice_control::controller::Controller;
use sluice_control::model::{Change, DesiredState, Object};
use sluice_dataplane::engine::{Engine, EngineConfig};
use sluice_dataplane::io::mem::{MemPort, MemPortConfig};
use sluice_dataplane::io::Port;
use sluice_dataplane::stages::router;
use sluice_dataplane::tables::NodeIdentity;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ENDPOINTS: usize = 10;
const NODES: usize = 100;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn pod_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + i as u32)
}

fn service_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 1 + i as u32)
}

fn obj(v: serde_json::Value) -> Object {
    Object::from_value(v).unwrap()
}

fn service(i: usize) -> Object {
    obj(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": format!("ns{}", i % 100), "name": format!("svc{i}")},
        "spec": {"clusterIP": service_ip(i).to_string(),
                 "selector": {"app": format!("a{}", i % 1000)},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }))
}

/// Service `i`'s slice; `variant` moves its first endpoint to another pod.
fn slice(i: usize, pods: usize, variant: usize) -> Object {
    let endpoints: Vec<serde_json::Value> = (0..ENDPOINTS)
        .map(|k| {
            let p = if k == 0 {
                (i * ENDPOINTS + variant * 7919) % pods
            } else {
                (i * ENDPOINTS + k) % pods
            };
            json!({"addresses": [pod_ip(p).to_string()],
                   "nodeName": format!("node-{}", p % NODES),
                   "conditions": {"ready": true, "serving": true, "terminating": false}})
        })
        .collect();
    obj(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": format!("ns{}", i % 100), "name": format!("svc{i}-1"),
                     "labels": {"kubernetes.io/service-name": format!("svc{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints
    }))
}

fn pod(i: usize) -> Object {
    obj(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": format!("ns{}", i % 100), "name": format!("pod{i}"),
                     "labels": {"app": format!("a{}", i % 1000)}},
        "spec": {"nodeName": format!("node-{}", i % NODES),
                 "containers": [{"name": "app", "image": "app:1",
                                 "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"podIP": pod_ip(i).to_string(), "podIPs": [{"ip": pod_ip(i).to_string()}]}
    }))
}

fn policy(i: usize) -> Object {
    obj(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"namespace": format!("ns{}", i % 100), "name": format!("np{i}")},
        "spec": {"podSelector": {"matchLabels": {"app": format!("a{}", i % 1000)}},
                 "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": format!("a{}", (i + 1) % 1000)}}}],
                              "ports": [{"protocol": "TCP", "port": 8080}]}]}
    }))
}

fn ctx() -> NodeContext {
    NodeContext {
        node: NodeIdentity {
            name: "node-0".into(),
            zone: "z1".into(),
            addresses: vec!["192.168.0.2".parse().unwrap()],
        },
        ports: vec![
            PortDecl {
                name: "p0".into(),
                backend: "mem:p0".into(),
            },
            PortDecl {
                name: "p1".into(),
                backend: "mem:p1".into(),
            },
        ],
        services: ServiceSettings {
            cluster_cidrs: vec!["10.128.0.0/9".parse().unwrap()],
            service_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
            node_port_addresses: vec![],
            masquerade_all: false,
        },
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    // `cargo bench` passes `--bench`; numbers are positional.
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let services = args.first().copied().unwrap_or(100_000);
    let changes = args.get(1).copied().unwrap_or(200);
    let pods = services;
    let policies = services / 10;

    let t = Instant::now();
    let mut batch: Vec<Change> = Vec::with_capacity(2 * services + pods + policies);
    for i in 0..services {
        batch.push(Change::Apply(service(i)));
        batch.push(Change::Apply(slice(i, pods, 0)));
    }
    for i in 0..pods {
        batch.push(Change::Apply(pod(i)));
    }
    for i in 0..policies {
        batch.push(Change::Apply(policy(i)));
    }
    let objects_s = t.elapsed().as_secs_f64();
    eprintln!("{} objects built in {objects_s:.2} s", batch.len());

    let t = Instant::now();
    let mut state = DesiredState::new();
    state.apply(&batch).unwrap();
    let state_s = t.elapsed().as_secs_f64();
    let rss_state = rss_bytes();
    eprintln!(
        "desired state checked and built in {state_s:.2} s, RSS {:.0} MiB",
        mib(rss_state)
    );

    let t = Instant::now();
    let tables = compile(&state, &ctx()).unwrap();
    let compile_s = t.elapsed().as_secs_f64();
    let rss_compiled = rss_bytes();
    let table_bytes = tables.services.memory_bytes() as u64;
    eprintln!(
        "compiled from scratch in {compile_s:.3} s: {} front ends, {} endpoints, service table {:.0} MiB, RSS {:.0} MiB (+{:.0} MiB)",
        tables.services.by_addr.len(),
        tables.services.endpoints.len(),
        mib(table_bytes),
        mib(rss_compiled),
        mib(rss_compiled.saturating_sub(rss_state)),
    );
    drop(tables);

    // The controller on a fresh store, loaded with the same state.
    let dir = std::env::temp_dir().join(format!("sluice-services-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let controller = Controller::open(&dir, ctx()).unwrap();
    drop(state);
    let t = Instant::now();
    controller.apply(batch, false).unwrap();
    let load_s = t.elapsed().as_secs_f64();
    eprintln!("loaded through the controller (check, compile, store) in {load_s:.2} s");

    let cfg = |id| MemPortConfig {
        port_id: id,
        ..Default::default()
    };
    let ports: Vec<Arc<dyn Port>> = vec![MemPort::sink("p0", cfg(0)), MemPort::sink("p1", cfg(1))];
    let engine = Engine::start_with_cell(
        ports,
        controller.tables().clone(),
        &EngineConfig::default(),
        router,
    )
    .unwrap();

    let mut to_ack = Vec::with_capacity(changes);
    let mut to_workers = Vec::with_capacity(changes);
    for c in 0..changes {
        let i = (c * 7_919) % services;
        let change = vec![Change::Apply(slice(i, pods, c + 1))];
        let t = Instant::now();
        let applied = controller.apply(change, false).unwrap();
        let acked = t.elapsed();
        assert!(controller.wait_for_workers(applied.generation, Duration::from_secs(5)));
        let all = t.elapsed();
        to_ack.push(acked.as_secs_f64() * 1e3);
        to_workers.push(all.as_secs_f64() * 1e3);
    }
    engine.stop();
    let rss_end = rss_bytes();
    to_ack.sort_by(f64::total_cmp);
    to_workers.sort_by(f64::total_cmp);
    let ack = (percentile(&to_ack, 0.5), percentile(&to_ack, 0.99));
    let all = (percentile(&to_workers, 0.5), percentile(&to_workers, 0.99));
    eprintln!(
        "one EndpointSlice changed, {changes} times: apply acknowledged p50 {:.2} ms p99 {:.2} ms; apply to every worker on the generation p50 {:.2} ms p99 {:.2} ms (max {:.2} ms)",
        ack.0,
        ack.1,
        all.0,
        all.1,
        to_workers.last().copied().unwrap_or(0.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{}",
        json!({
            "services": services, "endpoints_per_service": ENDPOINTS, "pods": pods,
            "network_policies": policies,
            "state_build_s": state_s, "compile_s": compile_s,
            "service_table_bytes": table_bytes,
            "rss_after_state_bytes": rss_state, "rss_after_compile_bytes": rss_compiled,
            "controller_load_s": load_s,
            "changes": changes,
            "apply_ack_ms": {"p50": ack.0, "p99": ack.1},
            "apply_to_workers_ms": {"p50": all.0, "p99": all.1, "max": to_workers.last()},
            "rss_end_bytes": rss_end,
        })
    );
}
