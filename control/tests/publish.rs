//! The controller and the workers on one table cell: a batch the controller
//! applied and whose generation it saw acknowledged (`apply` then
//! `wait_for_workers`) decides every packet sent afterwards.
//!
//! The rate and loss test of publishing itself is the dataplane's
//! `tests/publish.rs`; this one checks the wiring through the controller.

mod common;

use common::lab::{changes, mem_ports, node, LAB};
use sluice_control::controller::Controller;
use sluice_control::model::Change;
use sluice_dataplane::buf::{Packet, PacketPool};
use sluice_dataplane::engine::{Engine, EngineConfig};
use sluice_dataplane::io::mem::MemPeer;
use sluice_dataplane::stages::router;
use sluice_dataplane::testing::{MAC_CLIENT, MAC_GW1, MAC_GW2, MAC_P0};
use sluice_dataplane::wire::builder::PacketBuilder;
use std::time::{Duration, Instant};

fn route_via(gateway: &str) -> Vec<Change> {
    changes(&format!(
        "apiVersion: sluice.dev/v1\nkind: Route\nmetadata: {{name: to-20}}\n\
         spec: {{destination: 20.0.0.0/8, nextHops: [{{gateway: {gateway}}}]}}\n"
    ))
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
    let controller = Controller::open(&dir, node(false)).unwrap();
    controller.apply(changes(LAB), false).unwrap();
    let (ports, peers) = mem_ports(2, 256);
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
