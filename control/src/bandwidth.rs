//! Per-pod bandwidth limits: Bandwidth objects and the pod annotations
//! real manifests carry, compiled into the dataplane's
//! [`BandwidthTable`].
//!
//! Where limits come from, per pod and direction:
//! 1. a Bandwidth object in the pod's namespace that names the pod or
//!    selects it (several: the first by name decides);
//! 2. else the annotations `kubernetes.io/ingress-bandwidth` and
//!    `kubernetes.io/egress-bandwidth` (Kubernetes quantities in bits per
//!    second, `1k` to `1P`, as kubelet's `ExtractPodBandwidthResources`
//!    accepts them). Annotations carry no burst; as containerd hands them to
//!    the CNI bandwidth plugin, the burst is `u32::MAX` bits.
//!
//! Every address of the pod (`status.podIPs`) gets the limits. A pod's
//! limiter is carried over from the previous generation while its limits do
//! not change, so its bucket and counters survive a table swap.

use crate::compile::CompileError;
use crate::model::sluice::BandwidthMode;
use crate::model::{DesiredState, Kind, Object, Selector};
use k8s_openapi::api::core::v1::Pod;
use sluice_dataplane::tables::bandwidth::{BandwidthTable, Limiter, Mode, PodLimits};
use sluice_dataplane::tables::services::ShardedMap;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

pub const INGRESS_ANNOTATION: &str = "kubernetes.io/ingress-bandwidth";
pub const EGRESS_ANNOTATION: &str = "kubernetes.io/egress-bandwidth";
/// The burst of a limit from an annotation, in bits.
pub const ANNOTATION_BURST_BITS: u64 = u32::MAX as u64;
/// kubelet's bounds for the annotations, bits per second.
pub const MIN_RATE: u64 = 1_000;
pub const MAX_RATE: u64 = 1_000_000_000_000_000;

/// Parses a Kubernetes quantity (`100M`, `1Gi`, `2500k`, `1e6`, `10`) to an
/// integer, rounding a fraction up as `Quantity.Value()` does.
pub fn parse_quantity(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "{s:?} is not a quantity: expected a number, e.g. 10M"
        ));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a quantity: expected a number, e.g. 10M"))?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().map_err(|_| format!("{s:?}: bad exponent"))?;
            10f64.powi(exp)
        }
        other => {
            return Err(format!(
            "{s:?}: unknown suffix {other:?}; expected k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi or Ei"
        ))
        }
    };
    let v = (value * mult).ceil();
    if !v.is_finite() || v > u64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(v as u64)
}

/// The rate an annotation asks for, checked against kubelet's bounds.
pub fn annotation_rate(value: &str) -> Result<u64, String> {
    let rate = parse_quantity(value)?;
    if rate < MIN_RATE {
        return Err(format!("{value:?} is unreasonably small (< 1kbit)"));
    }
    if rate > MAX_RATE {
        return Err(format!("{value:?} is unreasonably large (> 1Pbit)"));
    }
    Ok(rate)
}

/// A pod's annotation limits: (ingress, egress) rates in bits/s.
pub fn pod_annotation_rates(pod: &Pod) -> Result<(Option<u64>, Option<u64>), (String, String)> {
    let Some(a) = &pod.metadata.annotations else {
        return Ok((None, None));
    };
    let get = |key: &str| -> Result<Option<u64>, (String, String)> {
        a.get(key)
            .map(|v| annotation_rate(v).map_err(|e| (format!("metadata.annotations[{key}]"), e)))
            .transpose()
    };
    Ok((get(INGRESS_ANNOTATION)?, get(EGRESS_ANNOTATION)?))
}

/// One direction's limit as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limit {
    rate: u64,
    burst: u64,
    mode: Mode,
}

fn limiter(limit: Limit, prev: Option<&Arc<Limiter>>) -> Arc<Limiter> {
    let fresh = Limiter::new(limit.rate, limit.burst, limit.mode);
    match prev {
        Some(p) if p.same_limits(&fresh) => p.clone(),
        _ => Arc::new(fresh),
    }
}

/// A Bandwidth object: its name, its selector (if it selects), its spec.
type ByName<'a> = (
    &'a str,
    Option<Selector>,
    &'a crate::model::sluice::BandwidthSpec,
);

/// Compiles every pod's limits. `prev` is the previous generation's table:
/// unchanged limiters are carried over.
pub fn compile_bandwidth(
    state: &DesiredState,
    prev: &BandwidthTable,
) -> Result<BandwidthTable, CompileError> {
    // Bandwidth objects by namespace, in name order.
    let mut objects: BTreeMap<&str, Vec<ByName<'_>>> = BTreeMap::new();
    for so in state.iter() {
        if let Object::Bandwidth(b) = &so.object {
            let ns = so.object.namespace().unwrap_or("default");
            let sel = match &b.spec.pod_selector {
                Some(s) => Some(Selector::from_label_selector(s).map_err(|e| CompileError {
                    object: so.object.key().to_string(),
                    field: format!("spec.podSelector{}", e.field),
                    message: e.message,
                })?),
                None => None,
            };
            objects
                .entry(ns)
                .or_default()
                .push((so.object.name(), sel, &b.spec));
        }
    }
    let mut pods = ShardedMap::new();
    for so in state.iter() {
        let Object::Pod(pod) = &so.object else {
            continue;
        };
        let ns = so.object.namespace().unwrap_or("default");
        let name = so.object.name();
        let labels = so.object.labels();
        let chosen = objects.get(ns).and_then(|list| {
            list.iter().find(|(_, sel, spec)| match (&spec.pod, sel) {
                (Some(p), _) => p.name == name,
                (None, Some(sel)) => sel.matches(labels),
                (None, None) => false,
            })
        });
        let (ingress, egress) = match chosen {
            Some((_, _, spec)) => {
                let mode = match spec.mode {
                    BandwidthMode::Shape => Mode::Shape,
                    BandwidthMode::Police => Mode::Police,
                };
                let lim = |r: Option<u64>, b: Option<u64>| {
                    r.zip(b).map(|(rate, burst)| Limit { rate, burst, mode })
                };
                (
                    lim(spec.ingress_rate, spec.ingress_burst),
                    lim(spec.egress_rate, spec.egress_burst),
                )
            }
            None => {
                let (i, e) =
                    pod_annotation_rates(pod).map_err(|(field, message)| CompileError {
                        object: so.object.key().to_string(),
                        field,
                        message,
                    })?;
                let lim = |r: Option<u64>| {
                    r.map(|rate| Limit {
                        rate,
                        burst: ANNOTATION_BURST_BITS,
                        mode: Mode::Shape,
                    })
                };
                (lim(i), lim(e))
            }
        };
        if ingress.is_none() && egress.is_none() {
            continue;
        }
        let ips: Vec<IpAddr> = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ips.as_ref())
            .map(|l| l.iter().filter_map(|p| p.ip.parse().ok()).collect())
            .unwrap_or_default();
        let pod_name: Arc<str> = Arc::from(format!("{ns}/{name}"));
        // One limiter per pod and direction, shared by its addresses.
        let first = ips.first().map(|ip| key(*ip));
        let old = first.and_then(|k| prev.pods.get(&k));
        let limits = PodLimits {
            ingress: ingress.map(|l| limiter(l, old.and_then(|o| o.ingress.as_ref()))),
            egress: egress.map(|l| limiter(l, old.and_then(|o| o.egress.as_ref()))),
            pod: pod_name,
        };
        for ip in ips {
            pods.insert(key(ip), limits.clone());
        }
    }
    let _ = Kind::Pod;
    Ok(BandwidthTable::new(pods))
}

fn key(ip: IpAddr) -> (u8, u128) {
    match ip {
        IpAddr::V4(a) => (4, u32::from(a) as u128),
        IpAddr::V6(a) => (6, u128::from(a)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse_manifests, Change};

    fn state(yaml: &str) -> Result<DesiredState, String> {
        let mut s = DesiredState::new();
        let batch: Vec<Change> = parse_manifests(yaml)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(Change::Apply)
            .collect();
        s.apply(&batch).map_err(|e| e.to_string())?;
        Ok(s)
    }

    const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels: {app: web}
  annotations:
    kubernetes.io/ingress-bandwidth: 10M
    kubernetes.io/egress-bandwidth: 1G
spec: {containers: [{name: c, image: x}]}
status: {podIP: 10.1.0.5, podIPs: [{ip: 10.1.0.5}, {ip: "fd00::5"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {containers: [{name: c, image: x}]}
status: {podIPs: [{ip: 10.1.0.6}]}
"#;

    #[test]
    fn annotations_limit_every_address_of_the_pod() {
        let s = state(PODS).unwrap();
        let t = compile_bandwidth(&s, &BandwidthTable::default()).unwrap();
        let web = t.get(4, 0x0a01_0005).expect("v4 limited");
        let i = web.ingress.as_ref().unwrap();
        assert_eq!(
            (i.rate_bps, i.burst_bits, i.mode),
            (10_000_000, ANNOTATION_BURST_BITS, Mode::Shape)
        );
        assert_eq!(web.egress.as_ref().unwrap().rate_bps, 1_000_000_000);
        let v6 = t
            .get(
                6,
                u128::from("fd00::5".parse::<std::net::Ipv6Addr>().unwrap()),
            )
            .unwrap();
        assert!(
            Arc::ptr_eq(v6.ingress.as_ref().unwrap(), i),
            "one limiter per pod"
        );
        assert!(t.get(4, 0x0a01_0006).is_none(), "db has no limits");
        // The next generation keeps the limiter (and its state).
        let t2 = compile_bandwidth(&s, &t).unwrap();
        assert!(Arc::ptr_eq(
            t2.get(4, 0x0a01_0005).unwrap().ingress.as_ref().unwrap(),
            i
        ));
    }

    #[test]
    fn a_bandwidth_object_overrides_annotations() {
        let yaml = format!(
            "{PODS}---\napiVersion: sluice.dev/v1\nkind: Bandwidth\nmetadata: {{name: slow, namespace: shop}}\nspec: {{podSelector: {{matchLabels: {{app: db}}}}, egressRate: 5000000, egressBurst: 50000, mode: Police}}\n---\napiVersion: sluice.dev/v1\nkind: Bandwidth\nmetadata: {{name: web, namespace: shop}}\nspec: {{pod: {{name: web}}, ingressRate: 2000000, ingressBurst: 20000}}\n"
        );
        let s = state(&yaml).unwrap();
        let t = compile_bandwidth(&s, &BandwidthTable::default()).unwrap();
        let db = t.get(4, 0x0a01_0006).unwrap();
        let e = db.egress.as_ref().unwrap();
        assert_eq!(
            (e.rate_bps, e.burst_bits, e.mode),
            (5_000_000, 50_000, Mode::Police)
        );
        assert!(db.ingress.is_none());
        let web = t.get(4, 0x0a01_0005).unwrap();
        assert_eq!(web.ingress.as_ref().unwrap().rate_bps, 2_000_000);
        assert!(web.egress.is_none(), "the object replaces the annotations");
    }

    #[test]
    fn bad_annotations_are_refused_naming_the_field() {
        let bad = PODS.replace("10M", "10X");
        let e = state(&bad).unwrap_err();
        assert!(
            e.contains("metadata.annotations[kubernetes.io/ingress-bandwidth]"),
            "{e}"
        );
        let small = PODS.replace("10M", "\"500\"");
        assert!(state(&small).unwrap_err().contains("unreasonably small"));
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("10M").unwrap(), 10_000_000);
        assert_eq!(parse_quantity("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_quantity("2500k").unwrap(), 2_500_000);
        assert_eq!(parse_quantity("1e6").unwrap(), 1_000_000);
        assert_eq!(parse_quantity("1.5M").unwrap(), 1_500_000);
        assert_eq!(parse_quantity("100").unwrap(), 100);
        assert!(parse_quantity("10X").is_err());
        assert!(parse_quantity("M").is_err());
        assert!(parse_quantity("").is_err());
        assert!(annotation_rate("999").is_err());
        assert!(annotation_rate("2P").is_err());
        assert_eq!(annotation_rate("1k").unwrap(), 1000);
    }
}
