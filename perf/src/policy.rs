//! The policy scenario: service-lb's traffic (10k Services x 10 endpoints,
//! 1M established connections, 10% new) with policy in force, so every
//! new connection is judged by the policy table on its endpoint, and the
//! compile time and table size of that policy.
//!
//! The state (`--namespaces` namespaces; the Services' endpoints are the
//! pods, 10 per Service, 100 per namespace at the defaults):
//! * every endpoint is a pod `ns-N/svc-S-J` with labels `app: svc-S` in a
//!   namespace labelled `team: tT` (T = N mod 100);
//! * one NetworkPolicy per Service (10k): it selects `app: svc-S`, allows
//!   ingress from the client block 10.64.0.0/10 and from the pods of the
//!   next Service on the Service's protocol and target port, and allows
//!   egress to its namespace on 53/UDP;
//! * `--cluster-policies` ClusterNetworkPolicies (1k), half in each tier,
//!   each selecting the namespaces of one team: Admin ones deny ingress
//!   from the pods of one Service of another namespace and deny egress to
//!   a /24 outside the cluster; Baseline ones deny ingress from one
//!   namespace.
//!
//! The clients are outside the cluster (the block 10.64.0.0/10), so each
//! new connection is an address-class lookup for the source and a pod
//! lookup for the endpoint, then the endpoint's ingress profile.

use crate::service_lb::{self, Params};
use serde::Serialize;
use sluice_control::model::Object;
use sluice_control::policy::{compile_objects, PolicyStats};
use std::time::Instant;

#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct PolicyParams {
    /// Namespaces the endpoint pods are spread over.
    #[arg(long, default_value_t = 1000)]
    pub namespaces: u32,
    /// ClusterNetworkPolicies, half Admin, half Baseline.
    #[arg(long, default_value_t = 1000)]
    pub cluster_policies: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    pub policy_params: PolicyParams,
    pub pods: u32,
    pub network_policies: u32,
    pub cluster_policies: u32,
    /// Wall time of the policy compiler for the whole state.
    pub compile_seconds: f64,
    /// The compiled policy table (an estimate from its allocations).
    pub table_mib: f64,
    /// Resident size of the process just after compiling (the objects
    /// themselves included).
    pub resident_mib_after_compile: f64,
    pub compiled: CompiledSize,
    #[serde(flatten)]
    pub run: service_lb::Report,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompiledSize {
    pub rules: usize,
    pub classes: usize,
    pub profiles: usize,
    pub peer_sets: usize,
    pub entries: usize,
}

fn object(v: serde_json::Value) -> Result<Object, String> {
    Object::from_value(v).map_err(|e| e.to_string())
}

/// The objects of the state described in the module docs.
pub fn build_state(p: &Params, pp: &PolicyParams) -> Result<Vec<Object>, String> {
    use serde_json::json;
    let pods = p.services * p.endpoints;
    let namespaces = pp.namespaces.max(1);
    let per_ns = pods.div_ceil(namespaces).max(1);
    let ns_of_pod = |i: u32| i / per_ns;
    let ns_of_service = |s: u32| ns_of_pod(s * p.endpoints);
    let mut out =
        Vec::with_capacity((pods + p.services + namespaces + pp.cluster_policies) as usize);
    for n in 0..namespaces {
        out.push(object(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": format!("ns-{n}"), "labels": {"team": format!("t{}", n % 100)}}}))?);
    }
    for s in 0..p.services {
        let (proto, _) = if s % 2 == 0 { ("TCP", 80) } else { ("UDP", 53) };
        for j in 0..p.endpoints {
            let i = s * p.endpoints + j;
            let ip = std::net::Ipv4Addr::from(0x0a80_0000 + i).to_string();
            out.push(object(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("svc-{s}-{j}"), "namespace": format!("ns-{}", ns_of_pod(i)),
                             "labels": {"app": format!("svc-{s}")}},
                "spec": {"containers": [{"name": "app", "image": "app",
                    "ports": [{"name": "serve", "containerPort": 8080, "protocol": proto}]}]},
                "status": {"podIP": ip, "podIPs": [{"ip": ip}]}}))?);
        }
        let next = (s + 1) % p.services;
        out.push(object(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": format!("svc-{s}"), "namespace": format!("ns-{}", ns_of_service(s))},
            "spec": {
                "podSelector": {"matchLabels": {"app": format!("svc-{s}")}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{
                    "from": [{"ipBlock": {"cidr": "10.64.0.0/10"}},
                             {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": format!("svc-{next}")}}}],
                    "ports": [{"protocol": proto, "port": 8080}]}],
                "egress": [{"to": [{"podSelector": {}}], "ports": [{"protocol": "UDP", "port": 53}]}]}}))?);
    }
    for c in 0..pp.cluster_policies {
        let team = c % 100;
        let other_ns = (c * 7 + 3) % namespaces;
        let victim = (c * 13 + 5) % p.services;
        let admin = c % 2 == 0;
        let spec = if admin {
            json!({"tier": "Admin", "priority": c % 1000,
                "subject": {"namespaces": {"matchLabels": {"team": format!("t{team}")}}},
                "ingress": [{"name": "deny-from-one-service", "action": "Deny",
                    "from": [{"pods": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": format!("ns-{}", ns_of_service(victim))}},
                                       "podSelector": {"matchLabels": {"app": format!("svc-{victim}")}}}}]}],
                "egress": [{"name": "deny-to-a-block", "action": "Deny",
                    "to": [{"networks": [format!("192.168.{}.0/24", c % 250)]}],
                    "protocols": [{"tcp": {"destinationPort": {"range": {"start": 1, "end": 1024}}}}]}]})
        } else {
            json!({"tier": "Baseline", "priority": c % 1000,
                "subject": {"namespaces": {"matchLabels": {"team": format!("t{team}")}}},
                "ingress": [{"name": "deny-from-one-namespace", "action": "Deny",
                    "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": format!("ns-{other_ns}")}}}]}]})
        };
        out.push(object(json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": format!("cnp-{c}")}, "spec": spec}))?);
    }
    Ok(out)
}

/// The scenario under `name` (`policy`, or `full`: the same with a large
/// routing table, `p.extra_routes`).
pub fn run(
    name: &str,
    p: &Params,
    pp: &PolicyParams,
    seconds: u64,
    progress: bool,
) -> Result<PolicyReport, String> {
    let t = Instant::now();
    let objects = build_state(p, pp)?;
    if progress {
        eprintln!(
            "{name}: {} objects built in {:.2}s",
            objects.len(),
            t.elapsed().as_secs_f64()
        );
    }
    let t = Instant::now();
    let (table, stats): (_, PolicyStats) = compile_objects(objects.iter(), &[]);
    let compile_seconds = t.elapsed().as_secs_f64();
    let resident_mib_after_compile = crate::machine::resident_mib();
    let table_mib = table.memory_bytes() as f64 / (1 << 20) as f64;
    if progress {
        eprintln!("{name}: compiled in {compile_seconds:.3}s, table {table_mib:.1} MiB, {stats:?}");
    }
    drop(objects);
    let run = service_lb::run_scenario(name, p, seconds, progress, Some(table))?;
    Ok(PolicyReport {
        policy_params: pp.clone(),
        pods: p.services * p.endpoints,
        network_policies: p.services,
        cluster_policies: pp.cluster_policies,
        compile_seconds,
        table_mib,
        resident_mib_after_compile,
        compiled: CompiledSize {
            rules: stats.rules,
            classes: stats.classes,
            profiles: stats.profiles,
            peer_sets: stats.peer_sets,
            entries: stats.entries,
        },
        run,
    })
}
