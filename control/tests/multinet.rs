//! Multi-network pods (Multus) through the controller into a running
//! worker on in-memory ports: a pod in the pod network and in Networks
//! blue and red is reached in each network only through its own
//! attachment; Services and NetworkPolicy belong to the pod network, so
//! a ClusterIP is translated there and only routed in blue, and a policy
//! that denies in the pod network does not judge red, where the pod has
//! the same address. A MultiNetworkPolicy for red judges red's
//! connections (replies of allowed ones pass) and nothing else.

mod common;

use common::lab::changes;
use common::tempdir;
use sluice_control::compile::{NodeContext, PortDecl, ServiceSettings};
use sluice_control::controller::Controller;
use sluice_control::model::{Change, Kind, ObjectKey};
use sluice_dataplane::buf::{Packet, PacketPool};
use sluice_dataplane::engine::{Engine, EngineConfig};
use sluice_dataplane::io::mem::{MemPeer, MemPort, MemPortConfig, RssMode};
use sluice_dataplane::io::Port;
use sluice_dataplane::stages::service::ServiceConfig;
use sluice_dataplane::stages::service_pipeline;
use sluice_dataplane::tables::NodeIdentity;
use sluice_dataplane::wire::builder::{tcp_flags, PacketBuilder};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The node's ports, in id order: the pod network's client side (d0) and
/// pod side (d1); blue's client side (b0) and two pod ports (b-a, b-b);
/// red's client side (r0) and pod port (r-a).
const PORTS: [&str; 7] = ["d0", "d1", "b0", "b-a", "b-b", "r0", "r-a"];

fn port_mac(i: usize) -> [u8; 6] {
    [2, 0, 0, 0, 0, i as u8 + 1]
}

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0xc0, 1];
const POD_A_BLUE_MAC: [u8; 6] = [2, 0, 0, 0, 0xb1, 5];
const POD_A_RED_MAC: [u8; 6] = [2, 0, 0, 0, 0xe1, 5];
const TWIN_MAC: [u8; 6] = [2, 0, 0, 0, 0xb2, 10];

fn ctx() -> NodeContext {
    NodeContext {
        node: NodeIdentity {
            name: "node-a".into(),
            zone: String::new(),
            addresses: vec!["10.0.0.1".parse().unwrap(), "10.244.0.1".parse().unwrap()],
        },
        ports: PORTS
            .iter()
            .map(|n| PortDecl {
                name: n.to_string(),
                backend: format!("mem:{n}"),
            })
            .collect(),
        services: ServiceSettings {
            cluster_cidrs: vec!["10.244.0.0/16".parse().unwrap()],
            service_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
            ..Default::default()
        },
    }
}

const NETWORK: &str = r#"
apiVersion: sluice.dev/v1
kind: Network
metadata: {name: blue}
spec: {}
---
apiVersion: sluice.dev/v1
kind: Network
metadata: {name: red}
spec: {}
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: d0}
spec: {backend: "mem:d0", mac: "02:00:00:00:00:01", addresses: [10.0.0.1/24]}
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: d1}
spec: {backend: "mem:d1", mac: "02:00:00:00:00:02", addresses: [10.244.0.1/24]}
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: b0}
spec: {backend: "mem:b0", mac: "02:00:00:00:00:03", network: blue, addresses: [10.0.0.1/24]}
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: b-a}
spec: {backend: "mem:b-a", mac: "02:00:00:00:00:04", network: blue, addresses: [10.10.0.1/24]}
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: b-b}
spec: {backend: "mem:b-b", mac: "02:00:00:00:00:05", network: blue}
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: r0}
spec: {backend: "mem:r0", mac: "02:00:00:00:00:06", network: red, addresses: [10.0.0.1/24]}
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: r-a}
spec: {backend: "mem:r-a", mac: "02:00:00:00:00:07", network: red}
---
apiVersion: sluice.dev/v1
kind: Neighbour
metadata: {name: client}
spec: {ip: 10.0.0.10, mac: "02:00:00:00:c0:01"}
---
apiVersion: sluice.dev/v1
kind: Neighbour
metadata: {name: blue-client}
spec: {network: blue, ip: 10.0.0.10, mac: "02:00:00:00:c0:01"}
---
apiVersion: sluice.dev/v1
kind: Neighbour
metadata: {name: red-client}
spec: {network: red, ip: 10.0.0.10, mac: "02:00:00:00:c0:01"}
---
apiVersion: sluice.dev/v1
kind: Neighbour
metadata: {name: pod-a}
spec: {ip: 10.244.0.5, mac: "02:00:00:00:a0:05"}
---
apiVersion: sluice.dev/v1
kind: Neighbour
metadata: {name: pod-web}
spec: {ip: 10.244.0.7, mac: "02:00:00:00:a0:07"}
"#;

/// Pod `a`: 10.244.0.5 in the pod network, 10.10.0.5 in blue (port b-a,
/// whose subnet holds it) and 10.244.0.5 again in red (port r-a, named
/// by the attachment's interface). Pod `twin`: 10.96.0.10 in blue, the
/// address of Service `web` in the pod network. A NetworkPolicy isolates
/// pod `a` for ingress; a Bandwidth object polices its egress to 1 Mbit/s
/// with a burst of 1000 bytes.
const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: blue-net, namespace: apps}
spec:
  config: '{"cniVersion":"1.0.0","type":"sluice","network":"blue","ipam":{"type":"whereabouts"}}'
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: red-net, namespace: apps}
spec:
  config: '{"cniVersion":"1.0.0","name":"red","plugins":[{"type":"sluice","network":"red"},{"type":"tuning"}]}'
---
apiVersion: v1
kind: Pod
metadata:
  name: a
  namespace: apps
  labels: {app: a}
  annotations:
    k8s.v1.cni.cncf.io/networks: '[{"name":"blue-net"},{"name":"red-net","interface":"r-a"}]'
    k8s.v1.cni.cncf.io/network-status: |-
      [{"name":"kindnet","interface":"eth0","ips":["10.244.0.5"],"default":true},
       {"name":"apps/blue-net","interface":"net1","ips":["10.10.0.5"],"mac":"02:00:00:00:b1:05"},
       {"name":"apps/red-net","interface":"r-a","ips":["10.244.0.5"],"mac":"02:00:00:00:e1:05"}]
spec: {nodeName: node-a, containers: [{name: c, image: i}]}
status: {podIP: 10.244.0.5, podIPs: [{ip: 10.244.0.5}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: twin
  namespace: apps
  annotations:
    k8s.v1.cni.cncf.io/networks: blue-net@b-b
    k8s.v1.cni.cncf.io/network-status: '[{"name":"apps/blue-net","interface":"b-b","ips":["10.96.0.10"],"mac":"02:00:00:00:b2:0a"}]'
spec: {nodeName: node-a, containers: [{name: c, image: i}]}
status: {podIP: 10.244.0.6, podIPs: [{ip: 10.244.0.6}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: apps, labels: {app: web}}
spec: {nodeName: node-a, containers: [{name: c, image: i}]}
status: {podIP: 10.244.0.7, podIPs: [{ip: 10.244.0.7}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: apps}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: apps, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.244.0.7]
  nodeName: node-a
---
apiVersion: sluice.dev/v1
kind: Bandwidth
metadata: {name: a-limit, namespace: apps}
spec: {pod: {name: a}, egressRate: 1000000, egressBurst: 8000, mode: Police}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: isolate-a, namespace: apps}
spec:
  podSelector: {matchLabels: {app: a}}
  policyTypes: [Ingress]
"#;

/// A state directory removed when the test ends, passed or not.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Lab {
    _dir: TempDir,
    controller: Arc<Controller>,
    engine: Engine,
    peers: Vec<MemPeer>,
    pool: PacketPool,
    sent: u64,
}

impl Lab {
    fn start() -> Lab {
        let dir = TempDir(tempdir("multinet"));
        let controller = Arc::new(Controller::open(&dir.0, ctx()).unwrap());
        let mut batch = changes(NETWORK);
        batch.extend(changes(PODS));
        let applied = controller.apply(batch, false).unwrap();
        let mut ports: Vec<Arc<dyn Port>> = Vec::new();
        let mut peers = Vec::new();
        for (i, name) in PORTS.iter().enumerate() {
            let (p, peer) = MemPort::new(
                name,
                MemPortConfig {
                    port_id: i as u16,
                    rx_queues: 1,
                    tx_queues: 1,
                    ring_size: 64,
                    mac: port_mac(i),
                    mtu: 1500,
                    rss: RssMode::Symmetric,
                },
            );
            ports.push(p);
            peers.push(peer);
        }
        let engine = Engine::start_each(
            ports,
            controller.tables().clone(),
            &EngineConfig::default(),
            |_| service_pipeline(&ServiceConfig::default()),
        )
        .unwrap();
        assert!(controller.wait_for_workers(applied.generation, Duration::from_secs(10)));
        Lab {
            _dir: dir,
            controller,
            engine,
            peers,
            pool: PacketPool::new("multinet-client", 64),
            sent: 0,
        }
    }

    fn port(name: &str) -> usize {
        PORTS.iter().position(|p| *p == name).unwrap()
    }

    /// Sends a TCP SYN from the client (10.0.0.10) into port `on`, and
    /// waits until the worker has decided it.
    fn syn(&mut self, on: &str, dst: &str, dport: u16) {
        let sport = 40000 + self.sent as u16;
        self.tcp(
            on,
            CLIENT_MAC,
            "10.0.0.10",
            sport,
            dst,
            dport,
            tcp_flags::SYN,
        );
    }

    /// Sends `n` 1000-byte UDP datagrams from `src` to the client
    /// (10.0.0.10) into port `on`, and waits until the worker has decided
    /// them.
    fn udp_burst(&mut self, on: &str, src: &str, n: u64) {
        for k in 0..n {
            let f = PacketBuilder::new([2, 0, 0, 0, 0xa0, 5], port_mac(Lab::port(on)))
                .ipv4(
                    src.parse::<Ipv4Addr>().unwrap(),
                    Ipv4Addr::new(10, 0, 0, 10),
                )
                .udp(5000 + k as u16, 53)
                .payload(&[0x5a; 972])
                .build();
            let mut p = self.pool.alloc().unwrap();
            assert!(p.fill(&f));
            self.peers[Lab::port(on)].inject(p).unwrap();
        }
        self.sent += n;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.engine.stats().rx_packets < self.sent {
            assert!(Instant::now() < deadline, "the worker took the packets");
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Sends one TCP segment `src:sport -> dst:dport` from `src_mac` into
    /// port `on`, and waits until the worker has decided it.
    #[allow(clippy::too_many_arguments)]
    fn tcp(
        &mut self,
        on: &str,
        src_mac: [u8; 6],
        src: &str,
        sport: u16,
        dst: &str,
        dport: u16,
        flags: u8,
    ) {
        let f = PacketBuilder::new(src_mac, port_mac(Lab::port(on)))
            .ipv4(
                src.parse::<Ipv4Addr>().unwrap(),
                dst.parse::<Ipv4Addr>().unwrap(),
            )
            .tcp(sport, dport, flags)
            .build();
        let mut p = self.pool.alloc().unwrap();
        assert!(p.fill(&f));
        self.peers[Lab::port(on)].inject(p).unwrap();
        self.sent += 1;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.engine.stats().rx_packets < self.sent {
            assert!(Instant::now() < deadline, "the worker took the packet");
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Applies manifests and waits until the workers run the result.
    fn apply(&self, yaml: &str) {
        let applied = self.controller.apply(changes(yaml), false).unwrap();
        assert!(self
            .controller
            .wait_for_workers(applied.generation, Duration::from_secs(10)));
    }

    /// Every frame transmitted on each port so far.
    fn collect(&self) -> Vec<Vec<Packet>> {
        // A forwarded frame is sent by the drain timer at the latest.
        std::thread::sleep(Duration::from_millis(20));
        self.peers
            .iter()
            .map(|peer| {
                let mut v = Vec::new();
                peer.collect_all(&mut v);
                v
            })
            .collect()
    }

    fn drops(&self, reason: &str) -> u64 {
        self.engine.stats().drops.get(reason).copied().unwrap_or(0)
    }
}

/// (destination MAC, destination address, destination port) of an IPv4
/// TCP frame.
fn dst(p: &Packet) -> ([u8; 6], Ipv4Addr, u16) {
    let d = p.data();
    let mac = d[0..6].try_into().unwrap();
    let ihl = (d[14] & 0xf) as usize * 4;
    (
        mac,
        Ipv4Addr::new(d[30], d[31], d[32], d[33]),
        u16::from_be_bytes([d[14 + ihl + 2], d[14 + ihl + 3]]),
    )
}

/// Asserts that exactly one frame left, on port `on`, with this
/// destination; nothing anywhere else.
fn only(out: &[Vec<Packet>], on: &str, want: ([u8; 6], &str, u16)) {
    for (i, frames) in out.iter().enumerate() {
        if PORTS[i] == on {
            assert_eq!(frames.len(), 1, "one frame on {on}");
            let (mac, ip, port) = dst(&frames[0]);
            assert_eq!((mac, ip, port), (want.0, want.1.parse().unwrap(), want.2));
        } else {
            assert!(frames.is_empty(), "nothing on {}", PORTS[i]);
        }
    }
}

/// Nothing left any pod port (the client ports may see ICMP errors).
fn no_pod_port(out: &[Vec<Packet>]) {
    for (i, frames) in out.iter().enumerate() {
        if !["d0", "b0", "r0"].contains(&PORTS[i]) {
            assert!(frames.is_empty(), "nothing on {}", PORTS[i]);
        }
    }
}

#[test]
fn a_pod_in_two_networks_is_reached_in_each_only_through_its_own_attachment() {
    let mut lab = Lab::start();

    // Blue reaches the pod's blue address through b-a, to its blue MAC.
    lab.syn("b0", "10.10.0.5", 80);
    only(&lab.collect(), "b-a", (POD_A_BLUE_MAC, "10.10.0.5", 80));
    // Red reaches the pod's red address through r-a: the same address as
    // the pod's pod-network address, which the policy isolates there.
    lab.syn("r0", "10.244.0.5", 80);
    only(&lab.collect(), "r-a", (POD_A_RED_MAC, "10.244.0.5", 80));

    // Blue cannot reach the red address, red cannot reach the blue one,
    // the pod network cannot reach the blue one: no route, counted.
    let before = lab.drops("no_route");
    lab.syn("b0", "10.244.0.5", 80);
    lab.syn("r0", "10.10.0.5", 80);
    lab.syn("d0", "10.10.0.5", 80);
    no_pod_port(&lab.collect());
    assert_eq!(lab.drops("no_route"), before + 3);

    // The pod network's policy isolates the pod's pod-network address,
    // and does not judge red (above: delivered).
    let denied = lab.drops("policy_denied");
    lab.syn("d0", "10.244.0.5", 80);
    no_pod_port(&lab.collect());
    assert_eq!(lab.drops("policy_denied"), denied + 1);
    assert_eq!(
        lab.engine.stats().drops.get("policy_denied").copied(),
        Some(1),
        "red's connection was not denied"
    );

    // The ClusterIP: translated to the endpoint in the pod network...
    lab.syn("d0", "10.96.0.10", 80);
    only(
        &lab.collect(),
        "d1",
        ([2, 0, 0, 0, 0xa0, 7], "10.244.0.7", 8080),
    );
    // ...and, in blue, routed untranslated to the pod that has that
    // address there.
    lab.syn("b0", "10.96.0.10", 80);
    only(&lab.collect(), "b-b", (TWIN_MAC, "10.96.0.10", 80));

    // The tracer agrees: blue's packet leaves on b-a, the pod network
    // has no route to the blue address.
    let trace = |in_port: &str, to: &str| {
        sluice_control::trace::trace(
            &lab.controller.tables().load(),
            &sluice_control::trace::TraceRequest {
                from: "10.0.0.10".parse().unwrap(),
                to: to.parse().unwrap(),
                protocol: "tcp".into(),
                port: 80,
                source_port: 40000,
                in_port: Some(in_port.into()),
            },
        )
        .unwrap()
        .verdict
    };
    assert_eq!(trace("b0", "10.10.0.5"), "transmit on b-a");
    assert_eq!(trace("d0", "10.10.0.5"), "slow path: NoRoute");
    assert_eq!(trace("b0", "10.96.0.10"), "transmit on b-b");
    assert_eq!(trace("d0", "10.96.0.10"), "transmit on d1");

    // The pod's bandwidth limit is on its pod-network address: red
    // traffic from the same address is not charged to it.
    let over = lab.drops("bandwidth_exceeded");
    lab.udp_burst("r-a", "10.244.0.5", 20);
    let out = lab.collect();
    assert_eq!(out[Lab::port("r0")].len(), 20, "red is not policed");
    assert_eq!(lab.drops("bandwidth_exceeded"), over);
    drop(out);
    lab.udp_burst("d1", "10.244.0.5", 20);
    let out = lab.collect();
    let passed = out[Lab::port("d0")].len() as u64;
    assert!(
        passed < 20,
        "the pod network is policed: {passed} of 20 passed"
    );
    assert_eq!(lab.drops("bandwidth_exceeded"), over + 20 - passed);
    drop(out);

    // The pod leaves red: its red address goes, blue stays.
    let mut a = sluice_control::model::parse_manifests(PODS)
        .unwrap()
        .into_iter()
        .find(|o| o.kind() == Kind::Pod && o.name() == "a")
        .unwrap();
    let ann = a.metadata_mut().annotations.as_mut().unwrap();
    ann.insert("k8s.v1.cni.cncf.io/networks".into(), "blue-net".into());
    let applied = lab.controller.apply(vec![Change::Apply(a)], false).unwrap();
    assert!(lab
        .controller
        .wait_for_workers(applied.generation, Duration::from_secs(10)));
    let before = lab.drops("no_route");
    lab.syn("r0", "10.244.0.5", 81);
    no_pod_port(&lab.collect());
    assert_eq!(lab.drops("no_route"), before + 1);
    lab.syn("b0", "10.10.0.5", 81);
    only(&lab.collect(), "b-a", (POD_A_BLUE_MAC, "10.10.0.5", 81));

    lab.engine.stop();
}

#[test]
fn attachments_to_missing_definitions_are_refused_whole() {
    let dir = TempDir(tempdir("multinet-refused"));
    let controller = Controller::open(&dir.0, ctx()).unwrap();
    controller.apply(changes(NETWORK), false).unwrap();
    // The pods name definitions the batch does not bring: nothing of it
    // is applied, and the error names the pod and the annotation.
    let batch: Vec<Change> = changes(PODS)
        .into_iter()
        .filter(|c| c.key().kind != Kind::NetworkAttachmentDefinition)
        .collect();
    let e = controller.apply(batch, false).unwrap_err().to_string();
    assert!(
        e.contains("Pod apps/a")
            && e.contains("metadata.annotations[k8s.v1.cni.cncf.io/networks]")
            && e.contains("NetworkAttachmentDefinition \"apps/blue-net\", which does not exist"),
        "{e}"
    );
    assert!(controller
        .get(&ObjectKey::namespaced(Kind::Pod, "apps", "web"))
        .is_none());
}

/// Pod `a` in red is isolated both ways by a MultiNetworkPolicy for
/// `red-net` that allows TCP 80 in from the client's red address only.
const RED_POLICY: &str = r#"
apiVersion: k8s.cni.cncf.io/v1beta1
kind: MultiNetworkPolicy
metadata:
  name: a-red
  namespace: apps
  annotations: {k8s.v1.cni.cncf.io/policy-for: apps/red-net}
spec:
  podSelector: {matchLabels: {app: a}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.10/32}}]
    ports: [{protocol: TCP, port: 80}]
  egress: []
"#;

#[test]
fn a_multi_network_policy_judges_red_connections_and_replies_of_allowed_ones_pass() {
    let mut lab = Lab::start();
    lab.apply(RED_POLICY);
    let denied = lab.drops("policy_denied");

    // Allowed: the client's SYN to a's red address on 80 reaches r-a...
    lab.tcp(
        "r0",
        CLIENT_MAC,
        "10.0.0.10",
        41000,
        "10.244.0.5",
        80,
        tcp_flags::SYN,
    );
    only(&lab.collect(), "r-a", (POD_A_RED_MAC, "10.244.0.5", 80));
    // ...and a's SYN-ACK passes back, though a's egress allows nothing
    // new: the connection exists.
    lab.tcp(
        "r-a",
        POD_A_RED_MAC,
        "10.244.0.5",
        80,
        "10.0.0.10",
        41000,
        tcp_flags::SYN | tcp_flags::ACK,
    );
    only(&lab.collect(), "r0", (CLIENT_MAC, "10.0.0.10", 41000));
    lab.tcp(
        "r0",
        CLIENT_MAC,
        "10.0.0.10",
        41000,
        "10.244.0.5",
        80,
        tcp_flags::ACK,
    );
    only(&lab.collect(), "r-a", (POD_A_RED_MAC, "10.244.0.5", 80));
    assert_eq!(lab.drops("policy_denied"), denied);

    // Denied: another port in, and a new connection out of a.
    lab.tcp(
        "r0",
        CLIENT_MAC,
        "10.0.0.10",
        41001,
        "10.244.0.5",
        81,
        tcp_flags::SYN,
    );
    no_pod_port(&lab.collect());
    lab.tcp(
        "r-a",
        POD_A_RED_MAC,
        "10.244.0.5",
        41002,
        "10.0.0.10",
        80,
        tcp_flags::SYN,
    );
    assert!(lab.collect().iter().all(|f| f.is_empty()), "nothing left");
    assert_eq!(lab.drops("policy_denied"), denied + 2);

    // Blue is not judged: a's blue address takes anything.
    lab.syn("b0", "10.10.0.5", 81);
    only(&lab.collect(), "b-a", (POD_A_BLUE_MAC, "10.10.0.5", 81));
    // The pod network keeps its own NetworkPolicy (isolate-a: nothing in),
    // and web, which no policy selects, is reached.
    lab.syn("d0", "10.244.0.5", 80);
    no_pod_port(&lab.collect());
    assert_eq!(lab.drops("policy_denied"), denied + 3);
    lab.syn("d0", "10.244.0.7", 8080);
    only(
        &lab.collect(),
        "d1",
        ([2, 0, 0, 0, 0xa0, 7], "10.244.0.7", 8080),
    );

    // Counters: red's rule allowed one connection, red's isolations
    // denied one packet each way; the pod network's isolation one.
    let tables = lab.controller.tables().load();
    let count = |policy: &str, index: Option<u32>, dir: &str| {
        tables
            .policy
            .tables()
            .flat_map(|(_, t)| {
                t.rules()
                    .iter()
                    .enumerate()
                    .map(move |(i, r)| (t, i as u32, r))
            })
            .find(|(_, _, r)| r.policy == policy && r.index == index && r.direction.name() == dir)
            .map(|(t, i, _)| t.counters().unwrap().get(i))
            .unwrap_or_else(|| panic!("{policy} {index:?} {dir}"))
    };
    let red = "MultiNetworkPolicy apps/a-red (network red)";
    assert_eq!(count(red, Some(0), "Ingress").allowed_connections, 1);
    assert_eq!(count(red, None, "Ingress").denied_packets, 1);
    assert_eq!(count(red, None, "Egress").denied_packets, 1);
    assert_eq!(
        count("NetworkPolicy apps/isolate-a", None, "Ingress").denied_packets,
        1
    );

    // Deleting the policy: red is not judged any more.
    let applied = lab
        .controller
        .apply(
            vec![Change::Delete(ObjectKey::namespaced(
                Kind::MultiNetworkPolicy,
                "apps",
                "a-red",
            ))],
            false,
        )
        .unwrap();
    assert!(lab
        .controller
        .wait_for_workers(applied.generation, Duration::from_secs(10)));
    lab.syn("r0", "10.244.0.5", 81);
    only(&lab.collect(), "r-a", (POD_A_RED_MAC, "10.244.0.5", 81));

    lab.engine.stop();
}
