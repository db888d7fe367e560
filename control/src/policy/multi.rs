//! MultiNetworkPolicy (`k8s.cni.cncf.io/v1beta1`): NetworkPolicy for the
//! secondary networks pods join through Multus, compiled into one policy
//! table per Sluice Network by the same compiler as NetworkPolicy.
//!
//! Reads: MultiNetworkPolicies (their `policy-for` annotation,
//! [`multus::policy_networks`]), NetworkAttachmentDefinitions (the Sluice
//! Network each one joins), Pods (labels, named container ports and their
//! attachments' addresses from the network-status annotation) and
//! Namespaces (labels). Produces: per network id, a [`PolicyTable`] (empty
//! for networks no MultiNetworkPolicy is for).
//!
//! # What a policy means (as multi-networkpolicy has it)
//!
//! A MultiNetworkPolicy is for the attachment definitions its annotation
//! names (`[namespace/]name`, the policy's namespace by default). In the
//! table of network N (the Sluice Network those definitions join):
//!
//! * the pods of the policy's namespace that its `podSelector` selects are
//!   isolated *on their attachments through those definitions* (their
//!   addresses in N); a pod without such an attachment is not selected,
//!   and its pod-network address is never in N's table;
//! * a `podSelector` / `namespaceSelector` peer stands for the selected
//!   pods' addresses on attachments through the policy's definitions, not
//!   their pod IPs (a pod attached to N through a definition the policy is
//!   not for is not that peer);
//! * an `ipBlock` peer is the addresses of N in the block.
//!
//! Everything else is NetworkPolicy's semantics (`policyTypes` defaults,
//! rules that only allow, ports, named ports against the destination pod's
//! container ports), because it is NetworkPolicy's compiler: each network
//! gets its own [`super::Compiler`] whose pods are the attachments in that
//! network (one per attachment, labelled with its definition) and whose
//! policies are the MultiNetworkPolicies for it, each resolved within its
//! definitions (the compiler's *scope*).
//!
//! A definition that does not exist (yet), is another plugin's, or names a
//! Network that does not exist, contributes nothing: the policy takes effect
//! on it when it appears. NetworkPolicy and the admin tiers stay in the pod
//! network; MultiNetworkPolicy never reaches it.

use super::Compiler;
use crate::model::multus::{self, AttachmentConfig};
use crate::model::{DesiredState, Kind, Object};
use sluice_dataplane::tables::policy::PolicyTable;
use sluice_dataplane::tables::NetworkId;
use std::collections::{BTreeMap, HashMap};

/// A MultiNetworkPolicy for one network: the object and the definitions
/// (`namespace/name`) it is for there.
type ForNetwork<'a> = (&'a Object, Vec<String>);

/// The secondary networks' policy tables: entry `id` for the network named
/// `network_names[id]` (entry 0, the pod network, and networks without
/// MultiNetworkPolicy are empty tables).
pub fn compile_networks(state: &DesiredState, network_names: &[&str]) -> Vec<PolicyTable> {
    let policies = state
        .list(Kind::MultiNetworkPolicy, None, None)
        .unwrap_or_default();
    if policies.is_empty() {
        return Vec::new();
    }
    let ids: HashMap<&str, NetworkId> = network_names
        .iter()
        .enumerate()
        .filter(|(id, _)| *id > 0)
        .map(|(id, n)| (*n, id as NetworkId))
        .collect();
    // Definition `namespace/name` -> the network it joins.
    let mut definitions: HashMap<String, NetworkId> = HashMap::new();
    for so in state
        .list(Kind::NetworkAttachmentDefinition, None, None)
        .unwrap_or_default()
    {
        let Object::NetworkAttachmentDefinition(nad) = &so.object else {
            continue;
        };
        if let Ok(AttachmentConfig::Sluice { network, .. }) = multus::attachment_config(nad) {
            if let Some(&id) = ids.get(network.as_str()) {
                let key = so.object.key();
                let ns = key.namespace.unwrap_or_default();
                definitions.insert(format!("{ns}/{}", key.name), id);
            }
        }
    }
    let mut by_network: BTreeMap<NetworkId, Vec<ForNetwork<'_>>> = BTreeMap::new();
    for so in &policies {
        let Object::MultiNetworkPolicy(mnp) = &so.object else {
            continue;
        };
        // Validation refused a bad annotation; should one be stored all the
        // same, the policy applies to nothing.
        let Ok(targets) = multus::policy_networks(mnp) else {
            continue;
        };
        let mut per_net: BTreeMap<NetworkId, Vec<String>> = BTreeMap::new();
        for (ns, name) in targets {
            let q = format!("{ns}/{name}");
            if let Some(&id) = definitions.get(&q) {
                per_net.entry(id).or_default().push(q);
            }
        }
        for (id, defs) in per_net {
            by_network.entry(id).or_default().push((&so.object, defs));
        }
    }
    if by_network.is_empty() {
        return Vec::new();
    }
    let objects: Vec<&Object> = state.iter().map(|s| &s.object).collect();
    // Every pod's attachments, read once for all networks.
    let mut attached: Vec<(&Object, Vec<multus::PodAttachment>)> = Vec::new();
    for o in &objects {
        let Object::Pod(p) = o else { continue };
        if p.spec.as_ref().is_none_or(|s| s.host_network == Some(true)) {
            continue;
        }
        // The model checked the annotations; a pod whose annotations do
        // not read has no attachments here.
        if let Ok(a) = multus::pod_attachments(p) {
            if a.iter().any(|a| !a.ips.is_empty()) {
                attached.push((o, a));
            }
        }
    }
    let mut out = vec![PolicyTable::default(); network_names.len()];
    for (id, list) in by_network {
        let name = network_names.get(id as usize).copied().unwrap_or_default();
        let in_network: Vec<&str> = definitions
            .iter()
            .filter(|(_, &n)| n == id)
            .map(|(d, _)| d.as_str())
            .collect();
        if let Some(slot) = out.get_mut(id as usize) {
            *slot = compile_network(&objects, &attached, name, &in_network, &list);
        }
    }
    out
}

/// One network's table: its attachments as the pods, its
/// MultiNetworkPolicies as NetworkPolicies, each within its definitions.
fn compile_network<'a>(
    objects: &[&'a Object],
    attached: &[(&'a Object, Vec<multus::PodAttachment>)],
    network: &str,
    definitions: &[&str],
    policies: &[ForNetwork<'a>],
) -> PolicyTable {
    let mut c = Compiler::default();
    c.inventory_namespaces_and_nodes(objects);
    let mut def_ids: Vec<&str> = definitions.to_vec();
    def_ids.sort_unstable();
    let def_id = |q: &str| def_ids.binary_search(&q).ok().map(|i| i as u32);
    for (o, attachments) in attached {
        for a in attachments {
            if let Some(d) = def_id(&a.selection.qualified_name()) {
                c.add_pod(o, a.ips.clone(), d);
            }
        }
    }
    for &(o, ref defs) in policies {
        let Object::MultiNetworkPolicy(mnp) = o else {
            continue;
        };
        let mut scope: Vec<u32> = defs.iter().filter_map(|d| def_id(d)).collect();
        scope.sort_unstable();
        scope.dedup();
        c.scope = Some(c.scopes.len() as u32);
        c.scopes.push(scope);
        let ns: &'a str = o.namespace().unwrap_or("default");
        let label = format!("MultiNetworkPolicy {ns}/{} (network {network})", o.name());
        c.network_policy(&label, ns, &mnp.spec);
    }
    c.scope = None;
    // Secondary networks have no "from the node" exemption: the node's
    // addresses are pod-network ones.
    c.finish(&[]).0
}

#[cfg(test)]
mod tests {
    use super::super::compile_all_policy;
    use crate::model::{parse_manifests, Change, DesiredState, Kind, ObjectKey};
    use sluice_dataplane::tables::policy::PolicyTable;

    /// Network ids as the routing part numbers them: default, then by name.
    const NETWORKS: [&str; 3] = ["default", "blue", "red"];
    const BLUE: u16 = 1;
    pub(super) const RED: u16 = 2;
    const TCP: u8 = 6;

    /// Namespaces x and y; Networks blue and red; definitions x/red-net and
    /// x/red-alt (both red), x/blue-net (blue). Pods (pod IP; attachments):
    /// x/a app=a (10.244.0.10; red-net 10.10.0.10), x/b app=b (10.244.0.11;
    /// red-net 10.10.0.11), x/c app=a (10.244.0.12; blue-net 10.20.0.12
    /// only), x/e app=b (10.244.0.14; red-alt 10.10.0.50), y/f app=b
    /// (10.244.0.15; x/red-net 10.10.0.60). a and b also have fd10::10 and
    /// fd10::11 on red-net.
    pub(super) const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Namespace
metadata: {name: y, labels: {team: y}}
---
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
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: red-net, namespace: x}
spec: {config: '{"cniVersion":"1.0.0","type":"sluice","network":"red"}'}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: red-alt, namespace: x}
spec: {config: '{"cniVersion":"1.0.0","type":"sluice","network":"red"}'}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: blue-net, namespace: x}
spec: {config: '{"cniVersion":"1.0.0","type":"sluice","network":"blue"}'}
---
apiVersion: v1
kind: Pod
metadata:
  name: a
  namespace: x
  labels: {app: a}
  annotations:
    k8s.v1.cni.cncf.io/networks: red-net
    k8s.v1.cni.cncf.io/network-status: '[{"name":"x/red-net","interface":"net1","ips":["10.10.0.10","fd10::10"]}]'
spec: {containers: [{name: c, image: i, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.244.0.10}
---
apiVersion: v1
kind: Pod
metadata:
  name: b
  namespace: x
  labels: {app: b}
  annotations:
    k8s.v1.cni.cncf.io/networks: red-net
    k8s.v1.cni.cncf.io/network-status: '[{"name":"x/red-net","interface":"net1","ips":["10.10.0.11","fd10::11"]}]'
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.244.0.11}
---
apiVersion: v1
kind: Pod
metadata:
  name: c
  namespace: x
  labels: {app: a}
  annotations:
    k8s.v1.cni.cncf.io/networks: blue-net
    k8s.v1.cni.cncf.io/network-status: '[{"name":"x/blue-net","interface":"net1","ips":["10.20.0.12"]}]'
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.244.0.12}
---
apiVersion: v1
kind: Pod
metadata:
  name: e
  namespace: x
  labels: {app: b}
  annotations:
    k8s.v1.cni.cncf.io/networks: red-alt
    k8s.v1.cni.cncf.io/network-status: '[{"name":"x/red-alt","interface":"net1","ips":["10.10.0.50"]}]'
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.244.0.14}
---
apiVersion: v1
kind: Pod
metadata:
  name: f
  namespace: y
  labels: {app: b}
  annotations:
    k8s.v1.cni.cncf.io/networks: x/red-net
    k8s.v1.cni.cncf.io/network-status: '[{"name":"x/red-net","interface":"net1","ips":["10.10.0.60"]}]'
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.244.0.15}
"#;

    /// Ingress to x/a on red-net: from app=b pods (of x) on TCP 80 and the
    /// named port `http`, and from namespace y; egress to 10.10.0.0/24
    /// except 10.10.0.128/25. `policy-for` names the definition without
    /// its namespace.
    pub(super) const A_POLICY: &str = r#"
apiVersion: k8s.cni.cncf.io/v1beta1
kind: MultiNetworkPolicy
metadata:
  name: a-in
  namespace: x
  annotations: {k8s.v1.cni.cncf.io/policy-for: red-net}
spec:
  podSelector: {matchLabels: {app: a}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: b}}}]
    ports: [{protocol: TCP, port: 80}, {port: http}]
  - from: [{namespaceSelector: {matchLabels: {team: y}}}]
  egress:
  - to: [{ipBlock: {cidr: 10.10.0.0/24, except: [10.10.0.128/25]}}]
"#;

    pub(super) fn state(yaml: &str) -> DesiredState {
        let mut s = DesiredState::new();
        let batch: Vec<Change> = parse_manifests(yaml)
            .unwrap()
            .into_iter()
            .map(Change::Apply)
            .collect();
        s.apply(&batch).unwrap_or_else(|e| panic!("{e}"));
        s
    }

    pub(super) fn compile(s: &DesiredState) -> PolicyTable {
        compile_all_policy(s, &["10.0.0.1".parse().unwrap()], &NETWORKS)
    }

    fn a(s: &str) -> u128 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()) as u128
    }

    /// Whether a new TCP connection `src -> dst:port` in `network` may be
    /// created: not judged (allowed) where the network has no table.
    fn allows(t: &PolicyTable, network: u16, src: &str, dst: &str, port: u16) -> bool {
        t.for_network(network)
            .is_none_or(|p| p.evaluate(4, TCP, a(src), a(dst), port).allow)
    }

    #[test]
    fn a_policy_for_red_judges_red_attachments_only() {
        let t = compile(&state(&format!("{BASE}---{A_POLICY}")));
        assert!(t.for_network(RED).is_some());
        // Neither the pod network nor blue has policy.
        assert!(t.for_network(0).is_none() && t.for_network(BLUE).is_none());
        assert!(!t.is_empty());

        // Peers by podSelector are b's red address, not its pod IP.
        assert!(allows(&t, RED, "10.10.0.11", "10.10.0.10", 80));
        assert!(
            allows(&t, RED, "10.10.0.11", "10.10.0.10", 8080),
            "named port"
        );
        assert!(!allows(&t, RED, "10.10.0.11", "10.10.0.10", 81));
        assert!(!allows(&t, RED, "10.244.0.11", "10.10.0.10", 80));
        // An address nobody has in red: isolated.
        assert!(!allows(&t, RED, "10.10.0.99", "10.10.0.10", 80));
        // y/f is in namespace y (namespaceSelector), on red-net.
        assert!(allows(&t, RED, "10.10.0.60", "10.10.0.10", 22));
        // e has app=b but reaches red through red-alt, which the policy is
        // not for: not the peer.
        assert!(!allows(&t, RED, "10.10.0.50", "10.10.0.10", 80));
        // ...and e is not isolated (the policy selects red-net attachments).
        assert!(allows(&t, RED, "10.10.0.99", "10.10.0.50", 1));

        // a's pod-network address is not a pod in red: nothing isolates it
        // there, and the pod network (no NetworkPolicy) is not judged.
        assert!(allows(&t, RED, "10.10.0.99", "10.244.0.10", 80));
        assert!(allows(&t, 0, "10.244.0.11", "10.244.0.10", 81));
        // c has app=a but no red attachment: its blue address is not
        // judged, in blue or in red.
        assert!(allows(&t, BLUE, "10.20.0.99", "10.20.0.12", 81));
        assert!(allows(&t, RED, "10.10.0.99", "10.20.0.12", 81));

        // IPv6 attachment addresses are pods too.
        let v6 = |s: &str| u128::from(s.parse::<std::net::Ipv6Addr>().unwrap());
        let red = t.for_network(RED).unwrap();
        assert!(
            red.evaluate(6, TCP, v6("fd10::11"), v6("fd10::10"), 80)
                .allow
        );
        assert!(
            !red.evaluate(6, TCP, v6("fd10::99"), v6("fd10::10"), 80)
                .allow
        );

        // Egress from a: the ipBlock with its except.
        assert!(allows(&t, RED, "10.10.0.10", "10.10.0.11", 5000));
        assert!(!allows(&t, RED, "10.10.0.10", "10.10.0.200", 5000));
        assert!(!allows(&t, RED, "10.10.0.10", "192.0.2.1", 5000));

        // The node's address is no exemption in red.
        assert!(!allows(&t, RED, "10.0.0.1", "10.10.0.10", 81));

        // Rules are named after the policy and the network.
        let red = t.for_network(RED).unwrap();
        let v = red.evaluate(4, TCP, a("10.10.0.11"), a("10.10.0.10"), 80);
        let r = red.rule(v.rule).unwrap();
        assert_eq!(r.policy, "MultiNetworkPolicy x/a-in (network red)");
        assert_eq!(r.index, Some(0));
        let tables: Vec<u16> = t.tables().map(|(id, _)| id).collect();
        assert_eq!(tables, [RED]);
    }

    #[test]
    fn network_policy_and_multi_network_policy_keep_to_their_networks() {
        // A NetworkPolicy denying all ingress to app=a in the pod network,
        // with the MultiNetworkPolicy in red.
        let t = compile(&state(&format!(
            "{BASE}---{A_POLICY}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: deny-a, namespace: x}}
spec: {{podSelector: {{matchLabels: {{app: a}}}}, ingress: []}}
"
        )));
        // The pod network: b's pod IP is denied, as NetworkPolicy says,
        // even on the port red allows.
        assert!(!allows(&t, 0, "10.244.0.11", "10.244.0.10", 80));
        assert!(t
            .for_network(0)
            .unwrap()
            .rules()
            .iter()
            .all(|r| r.policy.starts_with("NetworkPolicy")));
        // Red: the MultiNetworkPolicy only.
        assert!(allows(&t, RED, "10.10.0.11", "10.10.0.10", 80));
        let tables: Vec<u16> = t.tables().map(|(id, _)| id).collect();
        assert_eq!(tables, [0, RED]);
    }

    #[test]
    fn definitions_that_do_not_exist_yet_take_effect_when_they_appear() {
        // A policy for a definition that does not exist is accepted and
        // judges nothing.
        let policy = A_POLICY.replace("policy-for: red-net", "policy-for: 'x/red-later, red-net'");
        let late = A_POLICY
            .replace("policy-for: red-net", "policy-for: red-later")
            .replace("name: a-in", "name: later");
        let mut s = state(&format!("{BASE}---{policy}---{late}"));
        let t = compile(&s);
        // a-in still works through red-net.
        assert!(!allows(&t, RED, "10.10.0.99", "10.10.0.10", 80));
        let red = t.for_network(RED).unwrap();
        assert!(!red.rules().iter().any(|r| r.policy.contains("x/later")));
        // The definition appears (joining blue): `later` now isolates
        // app=a pods attached through it.
        let batch: Vec<Change> = parse_manifests(
            r#"
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: red-later, namespace: x}
spec: {config: '{"cniVersion":"1.0.0","type":"sluice","network":"blue"}'}
---
apiVersion: v1
kind: Pod
metadata:
  name: g
  namespace: x
  labels: {app: a}
  annotations:
    k8s.v1.cni.cncf.io/networks: red-later
    k8s.v1.cni.cncf.io/network-status: '[{"name":"x/red-later","interface":"net1","ips":["10.20.0.70"]}]'
spec: {containers: [{name: c, image: i}]}
"#,
        )
        .unwrap()
        .into_iter()
        .map(Change::Apply)
        .collect();
        s.apply(&batch).unwrap();
        let t = compile(&s);
        assert!(!allows(&t, BLUE, "10.20.0.99", "10.20.0.70", 80));
        // c (app=a, on blue through blue-net) is still not selected.
        assert!(allows(&t, BLUE, "10.20.0.99", "10.20.0.12", 80));
        // a-in is for red-later too: in blue's table under its name.
        let blue = t.for_network(BLUE).unwrap();
        assert!(blue
            .rules()
            .iter()
            .any(|r| r.policy == "MultiNetworkPolicy x/a-in (network blue)"));
        // Deleting the policies leaves no table anywhere.
        s.apply(&[
            Change::Delete(ObjectKey::namespaced(Kind::MultiNetworkPolicy, "x", "a-in")),
            Change::Delete(ObjectKey::namespaced(
                Kind::MultiNetworkPolicy,
                "x",
                "later",
            )),
        ])
        .unwrap();
        assert!(compile(&s).is_empty());
    }

    #[test]
    fn the_policy_for_annotation_is_required_and_checked() {
        let mut s = state(BASE);
        for (annotations, needle) in [
            ("{}", "required"),
            ("{k8s.v1.cni.cncf.io/policy-for: ' '}", "at least one"),
            ("{k8s.v1.cni.cncf.io/policy-for: 'red-net,,x'}", "item 2"),
            (
                "{k8s.v1.cni.cncf.io/policy-for: 'a/b/c'}",
                "more than one '/'",
            ),
            ("{k8s.v1.cni.cncf.io/policy-for: 'Red'}", "name"),
            ("{k8s.v1.cni.cncf.io/policy-for: 'bad_ns/red'}", "namespace"),
        ] {
            let yaml = A_POLICY.replace(
                "annotations: {k8s.v1.cni.cncf.io/policy-for: red-net}",
                &format!("annotations: {annotations}"),
            );
            let batch: Vec<Change> = parse_manifests(&yaml)
                .unwrap()
                .into_iter()
                .map(Change::Apply)
                .collect();
            let e = s.apply(&batch).unwrap_err();
            assert_eq!(e.object, "MultiNetworkPolicy x/a-in", "{annotations}");
            assert_eq!(
                e.field, "metadata.annotations[k8s.v1.cni.cncf.io/policy-for]",
                "{annotations}"
            );
            assert!(e.message.contains(needle), "{annotations}: {e}");
        }
        // The spec is checked as a NetworkPolicy's.
        let yaml = A_POLICY.replace("port: 80}", "port: 80, endPort: 70}");
        let batch: Vec<Change> = parse_manifests(&yaml)
            .unwrap()
            .into_iter()
            .map(Change::Apply)
            .collect();
        let e = s.apply(&batch).unwrap_err();
        assert_eq!(
            (e.object.as_str(), e.field.as_str()),
            (
                "MultiNetworkPolicy x/a-in",
                "spec.ingress[0].ports[0].endPort"
            )
        );
        assert!(s
            .get(&ObjectKey::namespaced(
                Kind::MultiNetworkPolicy,
                "x",
                "a-in"
            ))
            .is_none());
        // Round trip as a manifest.
        let o = parse_manifests(A_POLICY).unwrap().remove(0);
        assert_eq!(o.kind(), Kind::MultiNetworkPolicy);
        assert_eq!(parse_manifests(&o.to_yaml()).unwrap().remove(0), o);
    }
}

#[cfg(test)]
mod explain_tests {
    //! Explain in a secondary network: pods are their attachments there.

    use super::super::explain::{explain, pick_pair, resolve_endpoint_in};
    use super::tests::{compile, state, A_POLICY, BASE, RED};

    #[test]
    fn explain_resolves_pods_to_their_red_addresses() {
        let s = state(&format!("{BASE}---{A_POLICY}"));
        let t = compile(&s);
        let lookup = |k: &crate::model::ObjectKey| s.get(k).map(|o| o.object.clone());
        let from = resolve_endpoint_in("x/b", "red", lookup).unwrap();
        let to = resolve_endpoint_in("x/a", "red", lookup).unwrap();
        assert_eq!(
            from.addresses,
            [
                "10.10.0.11".parse::<std::net::IpAddr>().unwrap(),
                "fd10::11".parse().unwrap()
            ]
        );
        let (src, dst) = pick_pair(&from.addresses, &to.addresses).unwrap();
        let red = t.for_network(RED).unwrap();
        let r = explain(red, src, dst, 6, 80);
        assert!(r.allowed);
        assert_eq!(
            r.rule.unwrap().info.policy,
            "MultiNetworkPolicy x/a-in (network red)"
        );
        assert!(!explain(red, src, dst, 6, 81).allowed);
        // In the pod network the same pods are their pod IPs.
        let a = resolve_endpoint_in("x/a", "", lookup).unwrap();
        assert_eq!(
            a.addresses,
            ["10.244.0.10".parse::<std::net::IpAddr>().unwrap()]
        );
        // A pod without a red attachment has no address there.
        let e = resolve_endpoint_in("x/c", "red", lookup).unwrap_err();
        assert!(e.contains("no attachment") && e.contains("\"red\""), "{e}");
        // Addresses stay addresses.
        assert!(resolve_endpoint_in("10.10.0.99", "red", lookup).is_ok());
    }
}

#[cfg(test)]
mod scale {
    //! Compile time at scale, MultiNetworkPolicy against the same policies
    //! as NetworkPolicies on the pod network:
    //! `taskset -c 1 cargo test --release -p sluice-control --lib policy::multi::scale -- --ignored --nocapture`.

    use super::super::{compile_all_policy, compile_policy};
    use crate::model::{Change, DesiredState, Object};
    use serde_json::json;
    use std::time::Instant;

    const NAMESPACES: usize = 100;
    const PODS_PER_NAMESPACE: usize = 100;
    const POLICIES_PER_NAMESPACE: usize = 10;

    fn state(multi: bool) -> DesiredState {
        let mut batch = vec![
            json!({"apiVersion": "sluice.dev/v1", "kind": "Network", "metadata": {"name": "red"}, "spec": {}}),
        ];
        for n in 0..NAMESPACES {
            let ns = format!("ns{n}");
            batch.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"team": format!("t{}", n % 10)}}}));
            batch.push(json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": "red-net", "namespace": ns},
                "spec": {"config": "{\"cniVersion\":\"1.0.0\",\"type\":\"sluice\",\"network\":\"red\"}"}}));
            for p in 0..PODS_PER_NAMESPACE {
                let i = n * PODS_PER_NAMESPACE + p;
                let (hi, lo) = (i / 250, i % 250 + 1);
                let status = format!(
                    "[{{\"name\":\"{ns}/red-net\",\"interface\":\"net1\",\"ips\":[\"10.20.{hi}.{lo}\"]}}]"
                );
                batch.push(json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("p{p}"), "namespace": ns,
                        "labels": {"app": format!("a{}", p % POLICIES_PER_NAMESPACE)},
                        "annotations": {"k8s.v1.cni.cncf.io/networks": "red-net",
                            "k8s.v1.cni.cncf.io/network-status": status}},
                    "spec": {"nodeName": "elsewhere", "containers": [{"name": "c", "image": "i"}]},
                    "status": {"podIP": format!("10.244.{hi}.{lo}")}}));
            }
            for k in 0..POLICIES_PER_NAMESPACE {
                let spec = json!({
                "podSelector": {"matchLabels": {"app": format!("a{k}")}},
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": {"app": format!("a{}", (k + 1) % POLICIES_PER_NAMESPACE)}}},
                              {"namespaceSelector": {"matchLabels": {"team": format!("t{k}")}}}],
                     "ports": [{"protocol": "TCP", "port": 8000 + k}]},
                    {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [format!("10.{k}.0.0/16")]}}]}
                ]});
                let name = format!("np{k}");
                batch.push(if multi {
                    json!({"apiVersion": "k8s.cni.cncf.io/v1beta1", "kind": "MultiNetworkPolicy",
                        "metadata": {"name": name, "namespace": ns,
                            "annotations": {"k8s.v1.cni.cncf.io/policy-for": "red-net"}},
                        "spec": spec})
                } else {
                    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                        "metadata": {"name": name, "namespace": ns}, "spec": spec})
                });
            }
        }
        let batch: Vec<Change> = batch
            .into_iter()
            .map(|v| Change::Apply(Object::from_value(v).unwrap()))
            .collect();
        let mut s = DesiredState::new();
        s.apply(&batch).unwrap();
        s
    }

    /// The best of five.
    fn best(f: impl Fn() -> usize) -> (f64, usize) {
        let mut best = f64::MAX;
        let mut size = 0;
        for _ in 0..5 {
            let t = Instant::now();
            size = f();
            best = best.min(t.elapsed().as_secs_f64());
        }
        (best, size)
    }

    #[test]
    #[ignore = "a measurement: run in release"]
    fn compile_time_at_scale() {
        let np = state(false);
        let mnp = state(true);
        let networks = ["default", "red"];
        let (t_np, b_np) = best(|| compile_policy(&np, &[]).memory_bytes());
        let (t_mnp, b_mnp) = best(|| {
            let t = compile_all_policy(&mnp, &[], &networks);
            assert!(t.for_network(1).is_some());
            t.memory_bytes()
        });
        println!(
            "{} pods, {} policies: NetworkPolicy (pod network) {:.1} ms, {} KiB; \
             MultiNetworkPolicy (network red) {:.1} ms, {} KiB; ratio {:.2}",
            NAMESPACES * PODS_PER_NAMESPACE,
            NAMESPACES * POLICIES_PER_NAMESPACE,
            t_np * 1e3,
            b_np / 1024,
            t_mnp * 1e3,
            b_mnp / 1024,
            t_mnp / t_np
        );
    }
}
