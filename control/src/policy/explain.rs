//! Explain: why policy allows or denies a connection, computed from the
//! compiled [`PolicyTable`] the workers run (the same evaluation, with the
//! deciding rules named).
//!
//! Endpoints are `NAMESPACE/POD` (resolved to the pod's IP through the
//! desired state; with two families, the one the other side uses) or an
//! IP address. In a secondary network ([`resolve_endpoint_in`]) a pod is
//! its attachments' addresses there, judged by that network's
//! MultiNetworkPolicy table.

use crate::model::multus::{self, AttachmentConfig};
use crate::model::{Kind, Object, ObjectKey, DEFAULT_NETWORK};
use sluice_dataplane::tables::policy::{
    DirectionDecision, Explanation, PolicyTable, RuleCount, RuleId, RuleInfo, NO_RULE,
};
use std::net::IpAddr;

/// An endpoint as asked for, resolved to addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEndpoint {
    /// `NAMESPACE/POD` when named so.
    pub pod: Option<String>,
    pub addresses: Vec<IpAddr>,
}

/// Reads `NAMESPACE/POD` or an IP address; `lookup` finds objects.
pub fn resolve_endpoint(
    text: &str,
    lookup: impl Fn(&ObjectKey) -> Option<Object>,
) -> Result<ResolvedEndpoint, String> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(ResolvedEndpoint {
            pod: None,
            addresses: vec![ip],
        });
    }
    let Some((ns, name)) = text.split_once('/') else {
        return Err(format!("{text:?}: expected NAMESPACE/POD or an IP address"));
    };
    let key = ObjectKey::namespaced(Kind::Pod, ns, name);
    let Some(Object::Pod(pod)) = lookup(&key) else {
        return Err(format!("Pod {ns}/{name}: no such pod"));
    };
    let addresses = super::pod_ips(&pod);
    if addresses.is_empty() {
        return Err(format!(
            "Pod {ns}/{name}: status.podIPs: the pod has no IP address yet"
        ));
    }
    Ok(ResolvedEndpoint {
        pod: Some(text.to_string()),
        addresses,
    })
}

/// [`resolve_endpoint`] in a Sluice Network: in the pod network (`""` or
/// `default`) a pod is its pod IPs; in another Network it is the addresses
/// of its attachments through definitions that join that Network.
pub fn resolve_endpoint_in(
    text: &str,
    network: &str,
    lookup: impl Fn(&ObjectKey) -> Option<Object>,
) -> Result<ResolvedEndpoint, String> {
    let text = text.trim();
    if network.is_empty() || network == DEFAULT_NETWORK || text.parse::<IpAddr>().is_ok() {
        return resolve_endpoint(text, lookup);
    }
    let Some((ns, name)) = text.split_once('/') else {
        return Err(format!("{text:?}: expected NAMESPACE/POD or an IP address"));
    };
    let key = ObjectKey::namespaced(Kind::Pod, ns, name);
    let Some(Object::Pod(pod)) = lookup(&key) else {
        return Err(format!("Pod {ns}/{name}: no such pod"));
    };
    let attachments = multus::pod_attachments(&pod).map_err(|(f, m)| format!("{key}: {f}: {m}"))?;
    let mut addresses: Vec<IpAddr> = Vec::new();
    for a in attachments {
        let nad = ObjectKey::namespaced(
            Kind::NetworkAttachmentDefinition,
            a.selection.namespace.clone(),
            a.selection.name.clone(),
        );
        let Some(Object::NetworkAttachmentDefinition(d)) = lookup(&nad) else {
            continue;
        };
        let joins = matches!(
            multus::attachment_config(&d),
            Ok(AttachmentConfig::Sluice { network: n, .. }) if n == network
        );
        for ip in a.ips.into_iter().filter(|_| joins) {
            if !addresses.contains(&ip) {
                addresses.push(ip);
            }
        }
    }
    if addresses.is_empty() {
        return Err(format!(
            "Pod {ns}/{name}: no attachment with an address in network {network:?} \
             ({})",
            multus::NETWORK_STATUS_ANNOTATION
        ));
    }
    Ok(ResolvedEndpoint {
        pod: Some(text.to_string()),
        addresses,
    })
}

/// Reads a protocol name (`tcp`, `udp`, `sctp`, any case; empty is TCP).
pub fn protocol_number(text: &str) -> Result<u8, String> {
    match text.to_ascii_lowercase().as_str() {
        "" | "tcp" => Ok(6),
        "udp" => Ok(17),
        "sctp" => Ok(132),
        other => Err(format!("protocol {other:?}: expected tcp, udp or sctp")),
    }
}

/// A rule with its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRule {
    pub info: RuleInfo,
    pub count: RuleCount,
}

/// One direction as people read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectionReport {
    pub applies: bool,
    pub allowed: bool,
    pub rule: Option<NamedRule>,
    pub passed_by: Option<NamedRule>,
}

/// What [`explain`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainReport {
    pub from: IpAddr,
    pub to: IpAddr,
    pub allowed: bool,
    pub rule: Option<NamedRule>,
    pub from_node: bool,
    pub egress: DirectionReport,
    pub ingress: DirectionReport,
}

fn named(table: &PolicyTable, rule: RuleId) -> Option<NamedRule> {
    if rule == NO_RULE {
        return None;
    }
    Some(NamedRule {
        info: table.rule(rule)?.clone(),
        count: table.counters().map(|c| c.get(rule)).unwrap_or_default(),
    })
}

fn direction(table: &PolicyTable, d: &DirectionDecision) -> DirectionReport {
    DirectionReport {
        applies: d.applies,
        allowed: d.allow,
        rule: named(table, d.rule),
        passed_by: named(table, d.passed_by),
    }
}

/// Picks a pair of addresses of one family (IPv4 first).
pub fn pick_pair(from: &[IpAddr], to: &[IpAddr]) -> Result<(IpAddr, IpAddr), String> {
    for v4 in [true, false] {
        let f = from.iter().find(|a| a.is_ipv4() == v4);
        let t = to.iter().find(|a| a.is_ipv4() == v4);
        if let (Some(f), Some(t)) = (f, t) {
            return Ok((*f, *t));
        }
    }
    Err("the two endpoints have no address family in common".into())
}

/// The verdict policy gives a new connection `from` → `to:port`.
pub fn explain(
    table: &PolicyTable,
    from: IpAddr,
    to: IpAddr,
    proto: u8,
    port: u16,
) -> ExplainReport {
    let (family, src, dst) = match (from, to) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (4, u32::from(a) as u128, u32::from(b) as u128),
        (IpAddr::V6(a), IpAddr::V6(b)) => (6, u128::from(a), u128::from(b)),
        // Mixed families never form a connection; report no policy.
        _ => (0, 0, 0),
    };
    let x: Explanation = table.explain(family, proto, src, dst, port);
    ExplainReport {
        from,
        to,
        allowed: x.verdict.allow,
        rule: named(table, x.verdict.rule),
        from_node: x.from_node,
        egress: direction(table, &x.egress),
        ingress: direction(table, &x.ingress),
    }
}

/// One line naming a rule: policy, tier, direction, index, name, action.
pub fn describe_rule(r: &RuleInfo) -> String {
    let which = match r.index {
        Some(i) => format!("{} rule {i}", r.direction.name().to_lowercase()),
        None => format!(
            "{} isolation (no rule of the policies selecting the pod allows it)",
            r.direction.name().to_lowercase()
        ),
    };
    let name = r
        .name
        .as_deref()
        .map(|n| format!(" {n:?}"))
        .unwrap_or_default();
    format!(
        "{} (tier {}), {which}{name}: {}",
        r.policy,
        r.tier.name(),
        r.action.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse_manifests, Change, DesiredState};

    const STATE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: web}}
spec: {containers: [{name: c, image: i, ports: [{name: http, containerPort: 80}]}]}
status: {podIP: 10.244.0.10, podIPs: [{ip: 10.244.0.10}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: client}}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.244.0.11, podIPs: [{ip: 10.244.0.11}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: http}]}]
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: no-ssh}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {}}
  ingress: [{name: deny-ssh, action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 22}}}]}]
"#;

    #[test]
    fn explains_the_deciding_rule() {
        let mut s = DesiredState::new();
        let batch: Vec<Change> = parse_manifests(STATE)
            .unwrap()
            .into_iter()
            .map(Change::Apply)
            .collect();
        s.apply(&batch).unwrap();
        let table = super::super::compile_policy(&s, &[]);
        let lookup = |k: &ObjectKey| s.get(k).map(|o| o.object.clone());
        let a = resolve_endpoint("x/a", lookup).unwrap();
        let b = resolve_endpoint("x/b", lookup).unwrap();
        assert_eq!(a.addresses, vec!["10.244.0.10".parse::<IpAddr>().unwrap()]);
        assert!(resolve_endpoint("x/zz", lookup).is_err());
        assert!(resolve_endpoint("nonsense", lookup).is_err());
        let (from, to) = pick_pair(&b.addresses, &a.addresses).unwrap();

        let r = explain(&table, from, to, 6, 80);
        assert!(r.allowed);
        let rule = r.rule.unwrap().info;
        assert_eq!(
            describe_rule(&rule),
            "NetworkPolicy x/web (tier NetworkPolicy), ingress rule 0: Allow"
        );
        let r = explain(&table, from, to, 6, 81);
        assert!(!r.allowed);
        assert!(describe_rule(&r.rule.unwrap().info).contains("ingress isolation"));
        let r = explain(&table, from, to, 6, 22);
        assert!(!r.allowed);
        assert_eq!(
            describe_rule(&r.rule.unwrap().info),
            "ClusterNetworkPolicy no-ssh (tier Admin), ingress rule 0 \"deny-ssh\": Deny"
        );
        // The other way: a's egress is not isolated, b has no ingress policy.
        let r = explain(&table, to, from, 6, 80);
        assert!(r.allowed && r.rule.is_none());
        assert_eq!(protocol_number("SCTP"), Ok(132));
        assert!(protocol_number("icmp").is_err());
    }
}
