//! Real Service and EndpointSlice manifests through the controller into
//! running workers: a ClusterIP works once applied, follows its
//! EndpointSlice as it changes, and is dropped once the Service is gone.

mod common;

use common::lab::{changes, mem_ports, node, LAB};
use sluice_control::controller::Controller;
use sluice_control::model::{Change, Kind, Object, ObjectKey};
use sluice_dataplane::buf::{Packet, PacketPool};
use sluice_dataplane::engine::{Engine, EngineConfig};
use sluice_dataplane::io::mem::MemPeer;
use sluice_dataplane::io::rss::SYMMETRIC_KEY;
use sluice_dataplane::stages::service::{ServiceConfig, Steering};
use sluice_dataplane::stages::service_pipeline;
use sluice_dataplane::testing::{MAC_CLIENT, MAC_P0};
use sluice_dataplane::wire::builder::{tcp_flags, PacketBuilder};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What these tests add to the lab: the client's MAC, and the pods behind
/// the first gateway.
const EXTRA: &str = r#"
apiVersion: sluice.dev/v1
kind: Neighbour
metadata: {name: client}
spec: {ip: 10.0.0.10, mac: "02:00:00:00:c0:01"}
---
apiVersion: sluice.dev/v1
kind: Route
metadata: {name: pods}
spec: {destination: 10.244.0.0/16, nextHops: [{gateway: 10.0.1.254}]}
"#;

/// The tests here run one at a time: each runs two spinning workers, and
/// the rate test measures the control plane, not the scheduler.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The lab with [`EXTRA`], a controller on it and two workers running the
/// node pipeline on three ports with two queues each.
fn start(dir: &std::path::Path, ring_size: usize) -> (Arc<Controller>, Engine, Vec<MemPeer>) {
    let controller = Arc::new(Controller::open(dir, node(true)).unwrap());
    let mut first = changes(LAB);
    first.extend(changes(EXTRA));
    controller.apply(first, false).unwrap();
    let (ports, peers) = mem_ports(2, ring_size);
    let engine = Engine::start_each(
        ports,
        controller.tables().clone(),
        &EngineConfig {
            workers: 2,
            ..Default::default()
        },
        |w| {
            service_pipeline(&ServiceConfig {
                steering: Steering::rss(&SYMMETRIC_KEY, 2, w),
                ..ServiceConfig::default()
            })
        },
    )
    .unwrap();
    (controller, engine, peers)
}

const SHOP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  clusterIP: 10.96.0.10
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc12
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
- addresses: ["10.244.1.5"]
  conditions: {ready: true}
- addresses: ["10.244.2.7"]
  conditions: {ready: false, serving: true, terminating: true}
ports:
- {name: http, port: 8080, protocol: TCP}
"#;

fn frames(peer: &MemPeer, n: usize) -> Vec<Packet> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        peer.collect_all(&mut out);
        std::thread::sleep(Duration::from_micros(200));
    }
    out
}

/// (destination address, destination port, source address) of an IPv4
/// frame.
fn tuple(p: &Packet) -> (Ipv4Addr, u16, Ipv4Addr) {
    let d = p.data();
    let ihl = (d[14] & 0xf) as usize * 4;
    let dst = Ipv4Addr::new(d[30], d[31], d[32], d[33]);
    let src = Ipv4Addr::new(d[26], d[27], d[28], d[29]);
    (
        dst,
        u16::from_be_bytes([d[14 + ihl + 2], d[14 + ihl + 3]]),
        src,
    )
}

#[test]
fn a_clusterip_follows_its_manifests() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("sluice-svc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (controller, engine, peers) = start(&dir, 256);
    let pool = PacketPool::new("client", 64);
    let syn = |sport: u16| {
        let f = PacketBuilder::new(MAC_CLIENT, MAC_P0)
            .ipv4(Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(10, 96, 0, 10))
            .tcp(sport, 80, tcp_flags::SYN)
            .build();
        let mut p = pool.alloc().unwrap();
        assert!(p.fill(&f));
        peers[0].inject(p).unwrap();
    };
    let wait = |applied: sluice_control::controller::Applied| {
        assert!(controller.wait_for_workers(applied.generation, Duration::from_secs(10)));
    };

    // Applied: the ready endpoint gets the connections (the terminating
    // one only serves when nothing is ready). The client is not a pod, so
    // it is masqueraded behind the egress port's address.
    wait(controller.apply(changes(SHOP), false).unwrap());
    for sport in 1000..1010 {
        syn(sport);
    }
    let out = frames(&peers[1], 10);
    assert_eq!(out.len(), 10, "every SYN reached an endpoint");
    for p in &out {
        assert_eq!(
            tuple(p),
            (
                Ipv4Addr::new(10, 244, 1, 5),
                8080,
                Ipv4Addr::new(10, 0, 1, 1)
            )
        );
    }
    drop(out);

    // The tracer sees the same: DNAT to the ready endpoint, masqueraded,
    // out of p1 towards the pods' gateway.
    let t = sluice_control::trace::trace(
        &controller.tables().load(),
        &sluice_control::trace::TraceRequest {
            from: "10.0.0.10".parse().unwrap(),
            to: "10.96.0.10".parse().unwrap(),
            protocol: "tcp".into(),
            port: 80,
            source_port: 40000,
            in_port: None,
        },
    )
    .unwrap();
    let stages: Vec<&str> = t.steps.iter().map(|s| s.stage).collect();
    assert_eq!(
        stages,
        [
            "parse",
            "shape-egress",
            "service",
            "route",
            "rewrite",
            "shape-ingress"
        ]
    );
    let svc = &t.steps[2].detail;
    assert!(
        svc.contains("DNAT to one of 1 endpoint(s) by Maglev, masqueraded"),
        "{svc}"
    );
    assert!(svc.contains("-> 10.244.1.5:8080"), "{svc}");
    assert_eq!(t.verdict, "transmit on p1");
    assert!(t.steps[0].detail.starts_with("received on p0"));

    // The slice changes: 10.244.1.5 is gone, 10.244.3.3 is ready.
    let slice = SHOP
        .split("---")
        .nth(2)
        .unwrap()
        .replace("10.244.1.5", "10.244.3.3");
    wait(controller.apply(changes(&slice), false).unwrap());
    for sport in 2000..2010 {
        syn(sport);
    }
    let out = frames(&peers[1], 10);
    assert_eq!(out.len(), 10);
    for p in &out {
        assert_eq!(tuple(p).0, Ipv4Addr::new(10, 244, 3, 3));
    }
    drop(out);

    // The Service is deleted: its address is now an unallocated service
    // address, dropped.
    let before = engine
        .stats()
        .drops
        .get("service_drop")
        .copied()
        .unwrap_or(0);
    wait(
        controller
            .apply(
                vec![Change::Delete(ObjectKey::namespaced(
                    Kind::Service,
                    "shop",
                    "web",
                ))],
                false,
            )
            .unwrap(),
    );
    syn(3000);
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine
        .stats()
        .drops
        .get("service_drop")
        .copied()
        .unwrap_or(0)
        == before
    {
        assert!(Instant::now() < deadline, "the SYN was not dropped");
        std::thread::sleep(Duration::from_millis(1));
    }
    engine.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Hitless updates through the controller: while packets flow, Service
/// endpoints change at over 1,000 object changes a second (each apply
/// replaces 64 EndpointSlices); every packet arrives, and none sent after
/// an apply was acknowledged reaches an endpoint older than that apply's.
#[test]
fn endpoint_changes_are_hitless_through_the_controller() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    const SERVICES: u32 = 64;
    const RUN: Duration = Duration::from_millis(2000);
    const IN_FLIGHT: u64 = 256;
    // Endpoint of service `i` in apply `n`: 10.244.0.0 + 64n + i (n ≥ 1).
    let endpoint = |n: u32, i: u32| Ipv4Addr::from(0x0af4_0000 + 64 * n + i);
    let decode = |a: Ipv4Addr| {
        let v = u32::from(a) - 0x0af4_0000;
        (v / 64, v % 64)
    };
    let slices = move |n: u32| -> Vec<Change> {
        (0..SERVICES)
            .map(|i| {
                let v = serde_json::json!({
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": format!("s{i}-1"), "namespace": "shop",
                                 "labels": {"kubernetes.io/service-name": format!("s{i}")}},
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": [endpoint(n, i).to_string()]}],
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
                });
                Change::Apply(Object::from_value(v).unwrap())
            })
            .collect()
    };
    let mut services = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    for i in 0..SERVICES {
        services.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: shop}}\nspec: {{clusterIP: 10.96.1.{i}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n"
        ));
    }

    let dir = std::env::temp_dir().join(format!("sluice-hitless-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (controller, engine, peers) = start(&dir, 1024);
    controller
        .apply(
            {
                let mut first = changes(&services);
                first.extend(slices(1));
                first
            },
            false,
        )
        .unwrap();
    assert!(controller.wait_for_workers(controller.generations().0, Duration::from_secs(10)));

    // The applier: apply n, wait until every worker runs it, then publish
    // n as acknowledged.
    let acked = Arc::new(AtomicU64::new(1));
    let done = Arc::new(AtomicBool::new(false));
    let applier = {
        let (controller, acked, done) = (controller.clone(), acked.clone(), done.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut n = 1;
            while start.elapsed() < RUN {
                n += 1;
                let a = controller.apply(slices(n), false).unwrap();
                assert!(controller.wait_for_workers(a.generation, Duration::from_secs(10)));
                acked.store(n as u64, Ordering::Release);
            }
            done.store(true, Ordering::Release);
            (n - 1, start.elapsed())
        })
    };

    // The traffic: packet k opens a connection to service k % 64 from a
    // pod (no masquerade, so its source port names it), stamped with the
    // apply acknowledged when it was sent.
    let pool = PacketPool::new("hitless", 1024);
    let mut sent_acked: Vec<u64> = Vec::new();
    let mut got: Vec<Option<(u32, u32)>> = Vec::new();
    let mut received = 0u64;
    let mut out = Vec::new();
    let client = Ipv4Addr::new(10, 244, 255, 1);
    let mut collect = |got: &mut Vec<Option<(u32, u32)>>, received: &mut u64| {
        out.clear();
        peers[1].collect_all(&mut out);
        for p in out.drain(..) {
            let (dst, dport, src) = tuple(&p);
            let d = p.data();
            let sport = u16::from_be_bytes([d[34], d[35]]);
            assert_eq!((src, dport), (client, 8080));
            let (n, i) = decode(dst);
            let k = (sport as usize - 1024) * SERVICES as usize + i as usize;
            assert!(got[k].is_none(), "packet {k} arrived twice");
            got[k] = Some((n, i));
            *received += 1;
        }
    };
    let mut k = 0u64;
    while !done.load(Ordering::Acquire) {
        if k - received >= IN_FLIGHT {
            collect(&mut got, &mut received);
            std::thread::yield_now();
            continue;
        }
        let i = (k % SERVICES as u64) as u32;
        let sport = 1024 + (k / SERVICES as u64) as u16;
        let f = PacketBuilder::new(MAC_CLIENT, MAC_P0)
            .ipv4(client, Ipv4Addr::new(10, 96, 1, i as u8))
            .tcp(sport, 80, tcp_flags::SYN)
            .build();
        sent_acked.push(acked.load(Ordering::Acquire));
        got.push(None);
        let mut p = pool.alloc().unwrap();
        assert!(p.fill(&f));
        peers[0].inject(p).unwrap();
        k += 1;
        collect(&mut got, &mut received);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while received < k && Instant::now() < deadline {
        collect(&mut got, &mut received);
        std::thread::sleep(Duration::from_millis(1));
    }
    let (applies, took) = applier.join().unwrap();
    let stats = engine.stats();
    engine.stop();
    assert_eq!(
        received, k,
        "every packet arrived; drops: {:?}",
        stats.drops
    );
    for (k, (g, a)) in got.iter().zip(&sent_acked).enumerate() {
        let (n, i) = g.unwrap();
        assert_eq!(i as u64, k as u64 % SERVICES as u64);
        assert!(
            n as u64 >= *a,
            "packet {k} sent after apply {a} was acknowledged reached apply {n}'s endpoint"
        );
    }
    let rate = (applies * SERVICES) as f64 / took.as_secs_f64();
    eprintln!(
        "{applies} applies ({} object changes) in {took:?}: {rate:.0} changes/s; {k} packets",
        applies * SERVICES
    );
    assert!(k > 1000, "traffic flowed: {k} packets");
    // The rate is the control plane's (validate, compile, commit durably,
    // publish, wait for every worker) and needs an optimised build:
    // scripts/test runs this file again with --release.
    if !cfg!(debug_assertions) {
        assert!(rate >= 1000.0, "{rate:.0} changes/s");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
