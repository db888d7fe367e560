//! The control plane's side of a chain's `mirror` hop and of NSM route
//! weights: a mirror endpoint compiles and shows in `sluicectl get chain`
//! with its counters; a bad mirror interface is refused by name; and the
//! candidates of a hop share clients in proportion to their routes'
//! weights (checked by running many client addresses through the compiled
//! table's chain stage).

mod common;

use common::{sluicectl, sluicectl_ok, tempdir, Daemon};
use sluice_control::compile::{compile, NodeContext, PortDecl};
use sluice_control::model::{parse_manifests, Change, DesiredState};
use sluice_dataplane::stages::service::ServiceConfig;
use sluice_dataplane::stages::service_pipeline;
use sluice_dataplane::testing::Harness;
use sluice_dataplane::wire::builder::PacketBuilder;
use std::net::Ipv4Addr;

const MIRROR_CHAIN: &str = r#"
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: span}
spec: {backend: "mem:span", mac: "02:00:00:00:00:05"}
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: cnf-in}
spec: {backend: "mem:cnf-in", mac: "02:00:00:00:00:06"}
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: cnf-out}
spec: {backend: "mem:cnf-out", mac: "02:00:00:00:00:07"}
---
apiVersion: sluice.dev/v1
kind: NetworkServiceEndpoint
metadata: {name: fw}
spec:
  function: {firewall: {defaultAction: Allow}}
---
apiVersion: sluice.dev/v1
kind: NetworkServiceEndpoint
metadata: {name: span}
spec:
  function: {mirror: {interface: span, direction: Forward}}
---
apiVersion: sluice.dev/v1
kind: NetworkServiceEndpoint
metadata: {name: nat}
spec:
  function: {nat: {inside: 10.0.0.0/24, outside: 192.0.2.0/24}}
---
apiVersion: sluice.dev/v1
kind: Chain
metadata: {name: tap}
spec:
  endpoints: [fw, span, nat]
  steering: [{source: [10.0.0.0/24], protocol: TCP}]
"#;

#[test]
fn a_mirror_hop_compiles_and_shows_in_get_chain() {
    let dir = tempdir("chain-mirror");
    let sock = dir.join("api.sock");
    let api = format!("unix:{}", sock.display());
    let config = dir.join("sluiced.toml");
    std::fs::write(
        &config,
        format!(
            r#"
state_dir = "{state}"
workers = 1
[api]
listen = ["{api}"]
[[port]]
name = "p0"
backend = "mem:p0"
[[port]]
name = "p1"
backend = "mem:p1"
[[port]]
name = "span"
backend = "mem:span"
[[port]]
name = "cnf-in"
backend = "mem:cnf-in"
[[port]]
name = "cnf-out"
backend = "mem:cnf-out"
"#,
            state = dir.join("state").display(),
        ),
    )
    .unwrap();
    let d = Daemon::start(&config);
    let manifest = dir.join("chain.yaml");
    std::fs::write(&manifest, MIRROR_CHAIN).unwrap();
    sluicectl_ok(&api, &["apply", "-f", manifest.to_str().unwrap()]);
    let table = sluicectl_ok(&api, &["get", "chain"]);
    let span = table
        .lines()
        .find(|l| l.contains("chain/tap") && l.contains(" span "))
        .unwrap_or_else(|| panic!("the mirror hop in:\n{table}"));
    assert!(span.contains("mirror"), "{span}");
    assert!(table.contains("MIRRORED-PKTS/BYTES"), "{table}");
    assert!(span.contains("0/0 (0 dropped)"), "{span}");
    let json = sluicectl_ok(&api, &["stats", "-o", "json"]);
    assert!(json.contains("\"mirror_dropped\""), "{json}");

    // Refused whole, naming the endpoint and the field: a port the node
    // does not have, and a port of an external function.
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        MIRROR_CHAIN.replace("interface: span", "interface: nope"),
    )
    .unwrap();
    let out = sluicectl(&api, &["apply", "-f", bad.to_str().unwrap()], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("NetworkServiceEndpoint span")
            && err.contains("spec.function.mirror.interface")
            && err.contains("\"nope\""),
        "{err}"
    );
    let cnf = r#"
---
apiVersion: sluice.dev/v1
kind: NetworkServiceEndpoint
metadata: {name: cnf}
spec:
  interfaces: {ingress: cnf-in, egress: cnf-out}
"#;
    std::fs::write(
        &bad,
        MIRROR_CHAIN.replace("interface: span", "interface: cnf-out") + cnf,
    )
    .unwrap();
    let out = sluicectl(&api, &["apply", "-f", bad.to_str().unwrap()], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("NetworkServiceEndpoint span")
            && err.contains("spec.function.mirror.interface")
            && err.contains("external endpoint \"cnf\""),
        "{err}"
    );
    // The first chain is still what runs.
    let again = sluicectl_ok(&api, &["get", "chain"]);
    assert!(again.contains(" span "), "{again}");
    drop(d);
    std::fs::remove_dir_all(&dir).ok();
}

fn state(yaml: &str) -> DesiredState {
    let mut s = DesiredState::new();
    let batch: Vec<Change> = parse_manifests(yaml)
        .unwrap()
        .into_iter()
        .map(Change::Apply)
        .collect();
    s.apply(&batch).unwrap();
    s
}

/// A service whose one hop is either of two NATs (a to 100.64/16, b to
/// 100.65/16), chosen by routes with these weights (`None`: no weight).
fn weighted(a: Option<u32>, b: Option<u32>) -> String {
    let w = |x: Option<u32>| x.map(|w| format!(", weight: {w}")).unwrap_or_default();
    format!(
        r#"
apiVersion: sluice.dev/v1
kind: NetworkServiceEndpoint
metadata: {{name: nat-a}}
spec:
  networkServiceNames: [out]
  networkServiceLabels: {{out: {{labels: {{app: a}}}}}}
  function: {{nat: {{inside: 10.0.0.0/16, outside: 100.64.0.0/16}}}}
---
apiVersion: sluice.dev/v1
kind: NetworkServiceEndpoint
metadata: {{name: nat-b}}
spec:
  networkServiceNames: [out]
  networkServiceLabels: {{out: {{labels: {{app: b}}}}}}
  function: {{nat: {{inside: 10.0.0.0/16, outside: 100.65.0.0/16}}}}
---
apiVersion: sluice.dev/v1
kind: NetworkService
metadata: {{name: out}}
spec:
  matches:
  - routes: [{{destinationSelector: {{app: a}}{}}}, {{destinationSelector: {{app: b}}{}}}]
  steering: [{{source: [10.0.0.0/16], protocol: UDP}}]
"#,
        w(a),
        w(b)
    )
}

/// How many of 4096 clients (addresses scattered over 10.0.0.0/16) each
/// NAT took (a, b, neither).
fn shares(a: Option<u32>, b: Option<u32>) -> (usize, usize, usize) {
    let ctx = NodeContext {
        ports: ["p0", "p1"]
            .iter()
            .map(|n| PortDecl {
                name: n.to_string(),
                backend: format!("mem:{n}"),
            })
            .collect(),
        ..Default::default()
    };
    let tables = compile(&state(&weighted(a, b)), &ctx).unwrap();
    let mac = tables.ports[0].mac;
    let mut h = Harness::new(tables, service_pipeline(&ServiceConfig::default()));
    let frames: Vec<(u16, Vec<u8>)> = (0..4096u32)
        .map(|i| {
            // Scattered over the /16, not consecutive.
            let host = (i.wrapping_mul(0x2545_f491) >> 9 ^ i.wrapping_mul(40503)) & 0xffff;
            let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + host);
            (
                0,
                PacketBuilder::new([2, 0, 0, 0, 0xc0, 1], mac)
                    .ipv4(src, Ipv4Addr::new(20, 0, 0, 1))
                    .udp(1000, 53)
                    .build(),
            )
        })
        .collect();
    let mut n = (0, 0, 0);
    for (_, f) in h.run(&frames) {
        match (f[26], f[27]) {
            (100, 64) => n.0 += 1,
            (100, 65) => n.1 += 1,
            _ => n.2 += 1,
        }
    }
    n
}

#[test]
fn route_weights_share_clients_in_proportion() {
    let (a, b, none) = shares(Some(1), Some(3));
    eprintln!("weights 1 and 3: {a} and {b} of 4096 client addresses");
    assert_eq!(none, 0);
    // 25% / 75% of 4096 is 1024 / 3072; a hash over addresses is within a
    // few percent.
    assert!((900..=1150).contains(&a), "a {a} b {b}");
    assert_eq!(a + b, 4096);
    // No weights: equal shares.
    let (a, b, _) = shares(None, None);
    assert!((1850..=2250).contains(&a), "a {a} b {b}");
    // Weight 0: no clients.
    assert_eq!(shares(Some(0), Some(5)), (0, 4096, 0));
    // An absent weight is 1: weights 2 and (1) give two thirds to a.
    let (a, b, _) = shares(Some(2), None);
    assert!((2600..=2860).contains(&a), "a {a} b {b}");
}

#[test]
fn slot_tables_stay_small_and_proportional() {
    use sluice_control::chains::{route_weight, slot_counts, MAX_SLOTS};
    assert_eq!(slot_counts(&[1, 3]), [1, 3]);
    assert_eq!(slot_counts(&[100, 300]), [1, 3], "divided by the gcd");
    assert_eq!(slot_counts(&[0, 7]), [0, 1]);
    assert_eq!(
        slot_counts(&[0, 0]),
        [0, 0],
        "every weight 0: the hop is down"
    );
    let big = slot_counts(&[1000, 1, 999]);
    assert!(big.iter().sum::<u64>() <= MAX_SLOTS + 3, "{big:?}");
    assert_eq!(big[1], 1, "a positive weight keeps a slot");
    assert!(big[0] >= big[2] && big[0] <= 32, "{big:?}");
    assert_eq!(route_weight(None), 1);
    assert_eq!(route_weight(Some(0)), 0);
}

#[test]
fn weighted_external_endpoints_fill_slots_of_one_hop() {
    let ctx = NodeContext {
        ports: ["p0", "a-in", "a-out", "b-in", "b-out"]
            .iter()
            .map(|n| PortDecl {
                name: n.to_string(),
                backend: format!("mem:{n}"),
            })
            .collect(),
        ..Default::default()
    };
    let mut yaml = String::new();
    for (i, n) in ["a-in", "a-out", "b-in", "b-out"].iter().enumerate() {
        yaml.push_str(&format!(
            "apiVersion: sluice.dev/v1\nkind: Interface\nmetadata: {{name: {n}}}\nspec: {{backend: \"mem:{n}\", mac: \"02:00:00:00:01:0{i}\"}}\n---\n"
        ));
    }
    for e in ["a", "b"] {
        yaml.push_str(&format!(
            "apiVersion: sluice.dev/v1\nkind: NetworkServiceEndpoint\nmetadata: {{name: cnf-{e}}}\nspec: {{networkServiceNames: [x], networkServiceLabels: {{x: {{labels: {{app: {e}}}}}}}, interfaces: {{ingress: {e}-in, egress: {e}-out}}}}\n---\n"
        ));
    }
    yaml.push_str(
        "apiVersion: sluice.dev/v1\nkind: NetworkService\nmetadata: {name: x}\nspec:\n  matches:\n  - routes: [{destinationSelector: {app: a}, weight: 1}, {destinationSelector: {app: b}, weight: 2}]\n  steering: [{source: [10.0.0.0/16]}]\n",
    );
    let t = compile(&state(&yaml), &ctx).unwrap().chains;
    assert_eq!(t.hops().len(), 1);
    assert_eq!(t.hops()[0].name, "cnf-a,cnf-b");
    assert_eq!(t.hops()[0].candidates.len(), 3, "a once, b twice");
    assert_eq!(t.counts()[0].2, "external");
    // Both functions' ports still name the hop.
    for port in 1..=4 {
        assert_eq!(t.port_hop(port).map(|p| p.position), Some(0), "port {port}");
    }
}
