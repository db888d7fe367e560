//! The controller and the workers on one table cell: a batch the controller
//! applied and whose generation it saw acknowledged (`apply` then
//! `wait_for_workers`) decides every packet sent afterwards.
//!
//! The rate and loss test of publishing itself is the dataplane's
//! `tests/publish.rs`; this one checks the wiring through the controller.

use sluice_control::compile::{NodeContext, PortDecl};
use sluice_control::controller::Controller;
use sluice_control::model::{parse_manifests, Change};
use sluice_dataplane::buf::{Packet, PacketPool};
use sluice_dataplane::engine::{Engine, EngineConfig};
use sluice_dataplane::io::mem::{MemPeer, MemPort, MemPortConfig, RssMode};
use sluice_dataplane::io::Port;
use sluice_dataplane::stages::router;
use sluice_dataplane::testing::{MAC_CLIENT, MAC_GW1, MAC_GW2, MAC_P0, MAC_P1, MAC_P2};
use sluice_dataplane::wire::builder::PacketBuilder;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LAB: &str = r#"
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: p0}
spec: {backend: "mem:p0", mac: "02:00:00:00:00:01", addresses: ["10.0.0.1/24"]}
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: p1}
spec: {backend: "mem:p1", mac: "02:00:00:00:00:02", addresses: ["10.0.1.1/24"]}
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: p2}
spec: {backend: "mem:p2", mac: "02:00:00:00:00:03", addresses: ["10.0.2.1/24"]}
---
apiVersion: sluice.dev/v1
kind: Neighbour
metadata: {name: gw1}
spec: {ip: 10.0.1.254, mac: "02:00:00:00:01:fe"}
---
apiVersion: sluice.dev/v1
kind: Neighbour
metadata: {name: gw2}
spec: {ip: 10.0.2.254, mac: "02:00:00:00:02:fe"}
"#;

fn route_via(gateway: &str) -> Vec<Change> {
    let yaml = format!(
        "apiVersion: sluice.dev/v1\nkind: Route\nmetadata: {{name: to-20}}\n\
         spec: {{destination: 20.0.0.0/8, nextHops: [{{gateway: {gateway}}}]}}\n"
    );
    parse_manifests(&yaml)
        .unwrap()
        .into_iter()
        .map(Change::Apply)
        .collect()
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sluice-publish-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Collects one frame from `peer`, waiting for the worker to send it.
fn one_frame(peer: &MemPeer) -> Packet {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.is_empty() {
        assert!(Instant::now() < deadline, "no frame came out");
        peer.collect_all(&mut out);
        std::thread::sleep(Duration::from_micros(100));
    }
    assert_eq!(out.len(), 1);
    out.pop().unwrap()
}

#[test]
fn packets_sent_after_acknowledgement_follow_the_applied_route() {
    let dir = tempdir();
    let ctx = NodeContext {
        ports: (0..3)
            .map(|i| PortDecl {
                name: format!("p{i}"),
                backend: format!("mem:p{i}"),
            })
            .collect(),
        ..Default::default()
    };
    let controller = Controller::open(&dir, ctx).unwrap();
    let lab = parse_manifests(LAB)
        .unwrap()
        .into_iter()
        .map(Change::Apply)
        .collect();
    controller.apply(lab, false).unwrap();

    let mut ports: Vec<Arc<dyn Port>> = Vec::new();
    let mut peers = Vec::new();
    for (i, mac) in [MAC_P0, MAC_P1, MAC_P2].into_iter().enumerate() {
        let (p, peer) = MemPort::new(
            &format!("p{i}"),
            MemPortConfig {
                port_id: i as u16,
                rx_queues: 2,
                tx_queues: 2,
                ring_size: 256,
                mac,
                mtu: 1500,
                rss: RssMode::Symmetric,
            },
        );
        ports.push(p);
        peers.push(peer);
    }
    // The engine runs on the controller's cell, so the controller's
    // publishes reach it and its acknowledgement counts its workers.
    let engine = Engine::start_with_cell(
        ports,
        controller.tables().clone(),
        &EngineConfig {
            workers: 2,
            ..Default::default()
        },
        router,
    )
    .unwrap();

    let pool = PacketPool::new("client", 64);
    for i in 0..20u8 {
        let (gateway, port, mac) = if i % 2 == 0 {
            ("10.0.1.254", 1, MAC_GW1)
        } else {
            ("10.0.2.254", 2, MAC_GW2)
        };
        let applied = controller.apply(route_via(gateway), false).unwrap();
        assert!(
            controller.wait_for_workers(applied.generation, Duration::from_secs(10)),
            "workers acknowledged generation {}",
            applied.generation
        );
        assert_eq!(controller.generations().1, applied.generation);
        // Several flows, so both workers forward some.
        for flow in 0..4u16 {
            let mut p = pool.alloc().unwrap();
            p.fill(
                &PacketBuilder::new(MAC_CLIENT, MAC_P0)
                    .ipv4([10, 0, 0, 10], [20, 0, i, 1])
                    .udp(1000 + flow, 9)
                    .build(),
            );
            peers[0].inject(p).unwrap();
            let out = one_frame(&peers[port]);
            assert_eq!(&out.data()[0..6], &mac, "change {i}: via {gateway}");
        }
        let mut stray = Vec::new();
        for peer in &peers {
            peer.collect_all(&mut stray);
        }
        assert!(stray.is_empty(), "change {i}: a frame left by another port");
    }
    let stats = engine.stats();
    engine.stop();
    assert_eq!(stats.dropped, 0, "{:?}", stats.drops);
    drop(controller);
    std::fs::remove_dir_all(&dir).ok();
}
