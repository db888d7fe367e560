//! Multi-network pods in the routing tables.
//!
//! A pod sits in the pod network (Sluice's network `default`, id 0, with
//! the addresses of `status.podIPs`) and, through Multus attachments
//! ([`crate::model::multus`]), in other Sluice Networks. Each attachment
//! whose NetworkAttachmentDefinition is of type `sluice` makes the pod's
//! addresses in that network (from the network-status annotation)
//! reachable *in that network only*, through one port:
//!
//! 1. the Interface named like the attachment's pod interface (`@blue0`
//!    in the annotation), when the attachment's network has one: one port
//!    per attachment, as a veth or memif per pod interface gives;
//! 2. otherwise the Interface of that network whose subnet holds the
//!    address (pods on a shared segment behind one port).
//!
//! Each address becomes a host route (/32 or /128) through that port in
//! the attachment's network, and, when network-status reports the pod
//! interface's MAC, a static neighbour there, so the first packet needs
//! no ARP or ND. Nothing is added to any other network, so the same
//! address may belong to different pods (or be a ClusterIP, or a pod
//! address) in different networks.
//!
//! Only pods on this node get routes (`spec.nodeName` is this node, or
//! unset); other nodes' pods are reached through the network's Routes.
//! The pod network's own addresses are routed as the node's Interfaces
//! and Routes say, as before.
//!
//! Refused, naming the pod and the annotation: an attachment address no
//! port of its network leads to, an address two pods claim in one
//! network, an address that is a Route's destination, a static
//! Neighbour's address or an Interface's own address in that network.

use crate::compile::CompileError;
use crate::model::multus::{self, AttachmentConfig};
use crate::model::sluice::MacAddr;
use crate::model::{DesiredState, Interface, Kind, Object, ObjectKey};
use k8s_openapi::api::core::v1::Pod;
use sluice_dataplane::tables::{NetworkId, NextHopSpec, PortId, RouteTarget, TablesBuilder};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// One address of one pod attachment, before its port is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRoute {
    /// The Sluice Network the attachment joins.
    pub network: String,
    pub address: IpAddr,
    /// The interface name inside the pod (`net1`, or the one asked for).
    pub pod_interface: String,
    /// The pod interface's MAC, when network-status reports it.
    pub mac: Option<MacAddr>,
    /// The NetworkAttachmentDefinition, `namespace/name`.
    pub definition: String,
}

/// The routes of every pod with Sluice attachments on this node.
pub type AttachmentRoutes = BTreeMap<ObjectKey, Vec<AttachmentRoute>>;

/// Whether a pod runs on the node named `node` (an unscheduled pod, or a
/// node without a name, counts as local).
fn on_node(pod: &Pod, node: &str) -> bool {
    match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        Some(n) if !n.is_empty() && !node.is_empty() => n == node,
        _ => true,
    }
}

fn field_of_status() -> String {
    multus::annotation_field(multus::NETWORK_STATUS_ANNOTATION)
}

/// The routes one pod's Sluice attachments ask for (none for a pod on
/// another node, or whose attachments are other plugins' or not yet
/// reported).
pub fn pod_routes(
    state: &DesiredState,
    key: &ObjectKey,
    pod: &Pod,
    node: &str,
) -> Result<Vec<AttachmentRoute>, CompileError> {
    if !on_node(pod, node) {
        return Ok(Vec::new());
    }
    // The model checked the annotations; a failure here is reported the
    // same way all the same.
    let attachments = multus::pod_attachments(pod).map_err(|(field, message)| CompileError {
        object: key.to_string(),
        field,
        message,
    })?;
    let mut out = Vec::new();
    for a in attachments {
        if a.ips.is_empty() {
            continue;
        }
        let nad_key = ObjectKey::namespaced(
            Kind::NetworkAttachmentDefinition,
            a.selection.namespace.clone(),
            a.selection.name.clone(),
        );
        let Some(Object::NetworkAttachmentDefinition(nad)) = state.get(&nad_key).map(|s| &s.object)
        else {
            continue;
        };
        let Ok(AttachmentConfig::Sluice { network, .. }) = multus::attachment_config(nad) else {
            continue;
        };
        for ip in &a.ips {
            out.push(AttachmentRoute {
                network: network.clone(),
                address: *ip,
                pod_interface: a.selection.interface.clone(),
                mac: a.mac,
                definition: a.selection.qualified_name(),
            });
        }
    }
    Ok(out)
}

/// The routes of every pod on this node.
pub fn all_routes(state: &DesiredState, node: &str) -> Result<AttachmentRoutes, CompileError> {
    let mut out = AttachmentRoutes::new();
    for so in state.list(Kind::Pod, None, None).unwrap_or_default() {
        if let Object::Pod(p) = &so.object {
            let key = so.object.key();
            let routes = pod_routes(state, &key, p, node)?;
            if !routes.is_empty() {
                out.insert(key, routes);
            }
        }
    }
    Ok(out)
}

/// What the routing compile knows when it installs attachment routes.
pub(crate) struct RoutingView<'a> {
    /// Network name -> id.
    pub networks: &'a BTreeMap<&'a str, NetworkId>,
    /// Interface name -> object.
    pub interfaces: &'a BTreeMap<String, &'a Interface>,
    /// Port name -> id.
    pub port_ids: &'a BTreeMap<&'a str, PortId>,
}

/// Installs the routes: host routes and static neighbours in each
/// attachment's network. Returns, for each route the builder may name in
/// an error (`route A/L in network N`), the pod that asked for it.
pub(crate) fn install(
    b: &mut TablesBuilder,
    state: &DesiredState,
    routes: &AttachmentRoutes,
    view: &RoutingView<'_>,
) -> Result<BTreeMap<String, String>, CompileError> {
    let mut named = BTreeMap::new();
    if routes.is_empty() {
        return Ok(named);
    }
    // What the network's own objects already hold.
    let mut taken: HashMap<(&str, IpAddr), String> = HashMap::new();
    for so in state.list(Kind::Route, None, None).unwrap_or_default() {
        if let Object::Route(r) = &so.object {
            let d = r.spec.destination;
            if d.prefix_len() == d.max_prefix_len() {
                taken.insert(
                    (r.spec.network.as_str(), d.addr()),
                    so.object.key().to_string(),
                );
            }
        }
    }
    for so in state.list(Kind::Neighbour, None, None).unwrap_or_default() {
        if let Object::Neighbour(n) = &so.object {
            taken.insert(
                (n.spec.network.as_str(), n.spec.ip),
                so.object.key().to_string(),
            );
        }
    }
    for (name, i) in view.interfaces {
        for a in &i.spec.addresses {
            taken.insert(
                (i.spec.network.as_str(), a.addr()),
                format!("Interface {name}"),
            );
        }
    }
    for (pod, list) in routes {
        for r in list {
            let fail = |message: String| CompileError {
                object: pod.to_string(),
                field: field_of_status(),
                message,
            };
            let Some(&net) = view.networks.get(r.network.as_str()) else {
                return Err(fail(format!(
                    "attachment {} joins network {:?}, which does not exist",
                    r.definition, r.network
                )));
            };
            let port = port_for(r, view).ok_or_else(|| {
                fail(format!(
                    "no port of network {:?} leads to {} (attachment {}, pod interface {}): \
                     name an Interface of that network after the pod interface \
                     (\"@name\" in {}), or give one of its Interfaces a subnet that holds the address",
                    r.network,
                    r.address,
                    r.definition,
                    r.pod_interface,
                    multus::NETWORKS_ANNOTATION
                ))
            })?;
            let holder = format!("{pod} ({})", r.definition);
            if let Some(other) = taken.insert((r.network.as_str(), r.address), holder) {
                return Err(fail(format!(
                    "address {} in network {:?} is already used by {other}",
                    r.address, r.network
                )));
            }
            let len = if r.address.is_ipv4() { 32 } else { 128 };
            named.insert(
                format!("route {}/{len} in network {}", r.address, r.network),
                pod.to_string(),
            );
            b.route(
                net,
                r.address,
                len,
                RouteTarget::Via(vec![NextHopSpec {
                    gateway: None,
                    port: Some(port),
                }]),
            )
            .map_err(|e| fail(e.message))?;
            if let Some(mac) = r.mac {
                b.neighbour(net, r.address, mac.0);
            }
        }
    }
    Ok(named)
}

/// The port an attachment address is reached through (see the module
/// documentation).
fn port_for(r: &AttachmentRoute, view: &RoutingView<'_>) -> Option<PortId> {
    let by_name = view
        .interfaces
        .get(&r.pod_interface)
        .filter(|i| i.spec.network == r.network)
        .map(|_| r.pod_interface.as_str());
    let by_subnet = || {
        view.interfaces
            .iter()
            .find(|(_, i)| {
                i.spec.network == r.network
                    && i.spec.addresses.iter().any(|a| a.contains(&r.address))
            })
            .map(|(name, _)| name.as_str())
    };
    let name = by_name.or_else(by_subnet)?;
    view.port_ids.get(name).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{compile, Compiler, NodeContext, PortDecl};
    use crate::model::{parse_manifests, Change};
    use sluice_dataplane::tables::{AdjacencyKind, NodeIdentity, Tables};

    fn ctx() -> NodeContext {
        NodeContext {
            node: NodeIdentity {
                name: "node-a".into(),
                ..Default::default()
            },
            ports: ["d0", "b0", "b-a", "r0", "r-a"]
                .iter()
                .map(|n| PortDecl {
                    name: n.to_string(),
                    backend: format!("mem:{n}"),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn changes(yaml: &str) -> Vec<Change> {
        parse_manifests(yaml)
            .unwrap()
            .into_iter()
            .map(Change::Apply)
            .collect()
    }

    fn state(yaml: &str) -> DesiredState {
        let mut s = DesiredState::new();
        s.apply(&changes(yaml)).unwrap_or_else(|e| panic!("{e}"));
        s
    }

    /// Networks blue and red, each with a client port and a pod port; the
    /// pod port of red has no subnet (the pod is found by name).
    const NETS: &str = r#"
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
metadata: {name: b0}
spec: {backend: "mem:b0", mac: "02:00:00:00:00:02", network: blue, addresses: [10.1.0.1/24]}
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: b-a}
spec: {backend: "mem:b-a", mac: "02:00:00:00:00:03", network: blue, addresses: [10.10.0.1/24]}
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: r0}
spec: {backend: "mem:r0", mac: "02:00:00:00:00:04", network: red, addresses: [10.2.0.1/24]}
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: r-a}
spec: {backend: "mem:r-a", mac: "02:00:00:00:00:05", network: red}
---
apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: blue-net, namespace: apps}
spec:
  config: '{"cniVersion":"1.0.0","type":"sluice","network":"blue"}'
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: red-net, namespace: apps}
spec:
  config: '{"cniVersion":"1.0.0","type":"sluice","network":"red"}'
"#;

    /// Pod `a` in blue (by subnet, port b-a) and red (by name, port r-a),
    /// with the same address in both.
    fn pod(name: &str, node: &str, ip: &str, mac: &str) -> String {
        format!(
            r#"
---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: apps
  annotations:
    k8s.v1.cni.cncf.io/networks: blue-net, red-net@r-a
    k8s.v1.cni.cncf.io/network-status: '[{{"name":"kindnet","interface":"eth0","ips":["10.244.0.5"],"default":true}},{{"name":"apps/blue-net","interface":"net1","ips":["{ip}"],"mac":"{mac}"}},{{"name":"apps/red-net","interface":"r-a","ips":["{ip}","fd20::5"]}}]'
spec: {{nodeName: {node}, containers: [{{name: c, image: i}}]}}
status: {{podIP: 10.244.0.5, podIPs: [{{ip: 10.244.0.5}}]}}
"#
        )
    }

    fn lookup4(t: &Tables, net: &str, ip: &str) -> Option<(AdjacencyKind, PortId, u32)> {
        let n = t.networks.iter().find(|n| n.name == net).unwrap();
        let a: std::net::Ipv4Addr = ip.parse().unwrap();
        let adj = n.adjacencies[n.fib4.lookup(u32::from(a))? as usize];
        let port = match adj.kind {
            AdjacencyKind::Forward => n.next_hops[adj.first as usize].port,
            _ => adj.port,
        };
        let len = n
            .fib4
            .iter()
            .filter(|(p, l, _)| sluice_dataplane::tables::prefix_contains_v4(*p, *l, u32::from(a)))
            .map(|(_, l, _)| l as u32)
            .max()
            .unwrap_or(0);
        Some((adj.kind, port, len))
    }

    fn port(t: &Tables, name: &str) -> PortId {
        t.ports.iter().position(|p| p.name == name).unwrap() as PortId
    }

    #[test]
    fn a_pod_in_two_networks_is_routed_in_each_only_through_its_attachment() {
        let t = compile(
            &state(&format!(
                "{NETS}{}",
                pod("a", "node-a", "10.10.0.5", "02:00:00:00:b1:05")
            )),
            &ctx(),
        )
        .unwrap();
        // Blue: a host route through b-a, whose subnet holds the address,
        // and the reported MAC as a static neighbour.
        assert_eq!(
            lookup4(&t, "blue", "10.10.0.5"),
            Some((AdjacencyKind::Forward, port(&t, "b-a"), 32))
        );
        let blue = t.networks.iter().find(|n| n.name == "blue").unwrap();
        let ip = u32::from("10.10.0.5".parse::<std::net::Ipv4Addr>().unwrap()) as u128;
        assert_eq!(
            blue.static_neighbours.get(&ip),
            Some(&[2, 0, 0, 0, 0xb1, 5])
        );
        // Red: the same address, through the port named after the pod
        // interface (it has no subnet), no neighbour (no MAC reported).
        assert_eq!(
            lookup4(&t, "red", "10.10.0.5"),
            Some((AdjacencyKind::Forward, port(&t, "r-a"), 32))
        );
        let red = t.networks.iter().find(|n| n.name == "red").unwrap();
        assert!(!red.static_neighbours.contains_key(&ip));
        let v6: std::net::Ipv6Addr = "fd20::5".parse().unwrap();
        let adj = red.adjacencies[red.fib6.lookup(u128::from(v6)).unwrap() as usize];
        assert_eq!(red.next_hops[adj.first as usize].port, port(&t, "r-a"));
        // Nowhere else: the default network has no route to it, blue has
        // none to the v6 address.
        assert_eq!(lookup4(&t, "default", "10.10.0.5"), None);
        assert!(blue.fib6.lookup(u128::from(v6)).is_none());
    }

    #[test]
    fn pods_of_other_nodes_and_unreported_attachments_get_no_routes() {
        let t = compile(
            &state(&format!(
                "{NETS}{}",
                pod("a", "node-b", "10.10.0.5", "02:00:00:00:b1:05")
            )),
            &ctx(),
        )
        .unwrap();
        // Blue's connected subnet still covers it; red has nothing.
        assert_eq!(
            lookup4(&t, "blue", "10.10.0.5").map(|(_, _, l)| l),
            Some(24)
        );
        assert_eq!(lookup4(&t, "red", "10.10.0.5"), None);

        let unreported = pod("a", "node-a", "10.10.0.5", "02:00:00:00:b1:05")
            .lines()
            .filter(|l| !l.contains("network-status"))
            .collect::<Vec<_>>()
            .join("\n");
        let t = compile(&state(&format!("{NETS}{unreported}")), &ctx()).unwrap();
        assert_eq!(lookup4(&t, "red", "10.10.0.5"), None);
    }

    #[test]
    fn conflicts_and_unreachable_attachments_name_the_pod() {
        // Two pods with one address in blue.
        let s = state(&format!(
            "{NETS}{}{}",
            pod("a", "node-a", "10.10.0.5", "02:00:00:00:b1:05"),
            pod("b", "node-a", "10.10.0.5", "02:00:00:00:b1:06")
        ));
        let e = compile(&s, &ctx()).unwrap_err();
        assert_eq!(e.object, "Pod apps/b", "{e}");
        assert_eq!(e.field, field_of_status());
        assert!(e.message.contains("already used by Pod apps/a"), "{e}");

        // An address no blue port leads to.
        let s = state(&format!(
            "{NETS}{}",
            pod("a", "node-a", "10.99.0.5", "02:00:00:00:b1:05")
        ));
        let e = compile(&s, &ctx()).unwrap_err();
        assert_eq!(e.object, "Pod apps/a");
        assert!(e.message.contains("no port of network \"blue\""), "{e}");

        // The address of blue's own port.
        let s = state(&format!(
            "{NETS}{}",
            pod("a", "node-a", "10.10.0.1", "02:00:00:00:b1:05")
        ));
        let e = compile(&s, &ctx()).unwrap_err();
        assert!(e.message.contains("Interface b-a"), "{e}");
    }

    /// Every network's routes, adjacencies, next hops and static
    /// neighbours, comparable across compiles.
    fn routing(t: &Tables) -> Vec<String> {
        t.networks
            .iter()
            .map(|n| {
                let mut v4: Vec<_> = n.fib4.iter().collect();
                v4.sort();
                let mut v6: Vec<_> = n.fib6.iter().collect();
                v6.sort();
                let mut neigh: Vec<_> = n.static_neighbours.iter().collect();
                neigh.sort();
                format!(
                    "{} {v4:?} {v6:?} {:?} {:?} {neigh:?}",
                    n.name, n.adjacencies, n.next_hops
                )
            })
            .collect()
    }

    #[test]
    fn pod_changes_rebuild_routing_only_when_attachments_change() {
        let a = pod("a", "node-a", "10.10.0.5", "02:00:00:00:b1:05");
        let mut s = state(&format!("{NETS}{a}"));
        let (mut c, _) = Compiler::new(&s, ctx()).unwrap();
        // A label changes: the same routes.
        let relabelled = a.replace(
            "namespace: apps\n  annotations",
            "namespace: apps\n  labels: {x: y}\n  annotations",
        );
        s.apply(&changes(&relabelled)).unwrap();
        let key = ObjectKey::namespaced(Kind::Pod, "apps", "a");
        let p = c.prepare(&s, std::slice::from_ref(&key)).unwrap();
        assert!(!p.rebuilds_routing());
        c.apply(p);
        // The blue address moves: rebuilt.
        s.apply(&changes(&relabelled.replace("10.10.0.5", "10.10.0.6")))
            .unwrap();
        let p = c.prepare(&s, std::slice::from_ref(&key)).unwrap();
        assert!(p.rebuilds_routing());
        let t = c.apply(p);
        assert_eq!(
            lookup4(&t, "blue", "10.10.0.5").map(|(_, _, l)| l),
            Some(24)
        );
        assert_eq!(
            lookup4(&t, "blue", "10.10.0.6").map(|(_, _, l)| l),
            Some(32)
        );
        assert_eq!(routing(&t), routing(&compile(&s, &ctx()).unwrap()));
        // Deleted: its routes go.
        s.apply(&[Change::Delete(key.clone())]).unwrap();
        let p = c.prepare(&s, &[key]).unwrap();
        assert!(p.rebuilds_routing());
        let t = c.apply(p);
        assert_eq!(lookup4(&t, "red", "10.10.0.6"), None);
        assert_eq!(routing(&t), routing(&compile(&s, &ctx()).unwrap()));
    }

    /// The cost of attachments at scale: `PODS` pods on this node, each in
    /// blue and red, compiled from scratch; then one pod's attachment
    /// address changes (the routing part is rebuilt) and one pod's label
    /// changes (it is not). Prints the times; run with
    /// `cargo test --release -p sluice-control --lib attachment_scale -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn attachment_scale() {
        const PODS: u32 = 5000;
        let mut yaml = NETS
            .replace("10.10.0.1/24", "10.10.0.1/16")
            .replace("network: red}", "network: red, addresses: [10.20.0.1/16]}");
        let ip = |base: u32, i: u32| format!("10.{base}.{}.{}", (i + 2) / 250, (i + 2) % 250 + 2);
        let pod = |i: u32, blue: &str| {
            format!(
                "\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p{i}\n  namespace: apps\n  annotations:\n    \
k8s.v1.cni.cncf.io/networks: blue-net, red-net\n    k8s.v1.cni.cncf.io/network-status: \
'[{{\"name\":\"apps/blue-net\",\"interface\":\"net1\",\"ips\":[\"{blue}\"],\"mac\":\"02:00:00:00:b1:05\"}},\
{{\"name\":\"apps/red-net\",\"interface\":\"net2\",\"ips\":[\"{}\"]}}]'\n\
spec: {{nodeName: node-a, containers: [{{name: c, image: i}}]}}\n",
                ip(20, i)
            )
        };
        for i in 0..PODS {
            yaml.push_str(&pod(i, &ip(10, i)));
        }
        let mut s = state(&yaml);
        let t = std::time::Instant::now();
        let (mut c, tables) = Compiler::new(&s, ctx()).unwrap();
        let scratch = t.elapsed();
        let blue = tables.networks.iter().find(|n| n.name == "blue").unwrap();
        assert_eq!(blue.fib4.len(), PODS as usize + 4);

        let key = ObjectKey::namespaced(Kind::Pod, "apps", "p7");
        s.apply(&changes(&pod(7, "10.10.200.7"))).unwrap();
        let t = std::time::Instant::now();
        let p = c.prepare(&s, std::slice::from_ref(&key)).unwrap();
        assert!(p.rebuilds_routing());
        c.apply(p);
        let moved = t.elapsed();

        s.apply(&changes(&pod(7, "10.10.200.7").replace(
            "namespace: apps\n",
            "namespace: apps\n  labels: {x: y}\n",
        )))
        .unwrap();
        let t = std::time::Instant::now();
        let p = c.prepare(&s, std::slice::from_ref(&key)).unwrap();
        assert!(!p.rebuilds_routing());
        c.apply(p);
        let relabelled = t.elapsed();
        println!(
            "{PODS} pods x 2 attachments: compile from scratch {scratch:?}; \
             one attachment address changes {moved:?}; one pod relabelled {relabelled:?}"
        );
    }
}
