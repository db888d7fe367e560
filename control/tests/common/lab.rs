//! The controller-and-workers lab: three in-memory ports p0–p2 with the
//! dataplane's lab MACs, their Interfaces and two static gateways.

use sluice_control::compile::{NodeContext, PortDecl, ServiceSettings};
use sluice_control::model::{parse_manifests, Change};
use sluice_dataplane::io::mem::{MemPeer, MemPort, MemPortConfig, RssMode};
use sluice_dataplane::io::Port;
use sluice_dataplane::tables::NodeIdentity;
use sluice_dataplane::testing::{MAC_P0, MAC_P1, MAC_P2};
use std::sync::Arc;

/// Interfaces p0 (10.0.0.1/24), p1 (10.0.1.1/24), p2 (10.0.2.1/24) and
/// static neighbours for the gateways 10.0.1.254 and 10.0.2.254.
pub const LAB: &str = r#"
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

/// A batch applying every object of `yaml`.
pub fn changes(yaml: &str) -> Vec<Change> {
    parse_manifests(yaml)
        .unwrap()
        .into_iter()
        .map(Change::Apply)
        .collect()
}

/// The node: ports p0–p2 as `mem:pN`; with `services`, the node's
/// addresses and kube-proxy's settings for pods in 10.244.0.0/16 and
/// Services in 10.96.0.0/12.
pub fn node(services: bool) -> NodeContext {
    let mut ctx = NodeContext {
        ports: (0..3)
            .map(|i| PortDecl {
                name: format!("p{i}"),
                backend: format!("mem:p{i}"),
            })
            .collect(),
        ..Default::default()
    };
    if services {
        ctx.node = NodeIdentity {
            name: "node-a".into(),
            zone: String::new(),
            addresses: ["10.0.0.1", "10.0.1.1", "10.0.2.1"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect(),
        };
        ctx.services = ServiceSettings {
            cluster_cidrs: vec!["10.244.0.0/16".parse().unwrap()],
            service_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
            ..Default::default()
        };
    }
    ctx
}

/// Ports p0–p2 with `queues` queues each (symmetric RSS) and their peers.
pub fn mem_ports(queues: u16, ring_size: usize) -> (Vec<Arc<dyn Port>>, Vec<MemPeer>) {
    let mut ports: Vec<Arc<dyn Port>> = Vec::new();
    let mut peers = Vec::new();
    for (i, mac) in [MAC_P0, MAC_P1, MAC_P2].into_iter().enumerate() {
        let (p, peer) = MemPort::new(
            &format!("p{i}"),
            MemPortConfig {
                port_id: i as u16,
                rx_queues: queues,
                tx_queues: queues,
                ring_size,
                mac,
                mtu: 1500,
                rss: RssMode::Symmetric,
            },
        );
        ports.push(p);
        peers.push(peer);
    }
    (ports, peers)
}
