//! Multi-network pods as Multus has them: the NetworkAttachmentDefinition
//! kind (`k8s.cni.cncf.io/v1`, the Network Plumbing Working Group's
//! de-facto standard), the pod annotation that selects attachments
//! (`k8s.v1.cni.cncf.io/networks`) and the one Multus writes back with the
//! result (`k8s.v1.cni.cncf.io/network-status`).
//!
//! A NetworkAttachmentDefinition carries a CNI configuration as a JSON
//! string (`spec.config`). Sluice reads the plugin whose `type` is
//! `"sluice"` (the configuration itself, or the first such entry of a
//! conflist's `plugins`) and, in it, `network`: the Sluice Network (a
//! routing domain) the attachment joins. Every other key (`name`, `ipam`,
//! `mtu`, ...) is the plugin's business and ignored here. A definition for
//! another plugin (macvlan, SR-IOV, ...) is accepted and stored, and Sluice
//! does nothing for its attachments.
//!
//! This module parses and checks one object on its own; which objects must
//! exist (the definition a pod names, the Network a definition names) is
//! checked with the batch ([`super::state`]), and what the attachments
//! become in the tables is `crate::multinet`.

use super::names;
use super::sluice::MacAddr;
use super::DEFAULT_NETWORK;
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::IpAddr;

/// The API group and version of NetworkAttachmentDefinition.
pub const NAD_API_VERSION: &str = "k8s.cni.cncf.io/v1";

/// The pod annotation that selects a pod's attachments.
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";

/// The pod annotation Multus writes with each attachment's interface,
/// addresses and MAC.
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";

/// The API group and version of MultiNetworkPolicy.
pub const MNP_API_VERSION: &str = "k8s.cni.cncf.io/v1beta1";

/// The MultiNetworkPolicy annotation naming the attachment definitions
/// (networks) the policy is for.
pub const POLICY_FOR_ANNOTATION: &str = "k8s.v1.cni.cncf.io/policy-for";

/// The CNI plugin type whose configuration Sluice reads.
pub const SLUICE_CNI_TYPE: &str = "sluice";

/// The pod interface of the default (cluster) network, as kubelet names
/// it; an attachment may not ask for it.
pub const DEFAULT_POD_INTERFACE: &str = "eth0";

/// The spec of a NetworkAttachmentDefinition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkAttachmentDefinitionSpec {
    /// A CNI configuration (or conflist) as a JSON string.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config: String,
}

resource! {
    /// A network pods may attach to besides the pod network (Multus).
    NetworkAttachmentDefinition, api_version: NAD_API_VERSION, spec: NetworkAttachmentDefinitionSpec
}

resource! {
    /// NetworkPolicy for Multus networks (the Network Plumbing Working
    /// Group's multi-networkpolicy): a NetworkPolicy spec that applies to
    /// the pods' attachments through the definitions its
    /// [`POLICY_FOR_ANNOTATION`] names, and to nothing else.
    MultiNetworkPolicy, api_version: MNP_API_VERSION,
        spec: k8s_openapi::api::networking::v1::NetworkPolicySpec
}

/// The definitions (`namespace/name`) a MultiNetworkPolicy is for, from
/// its [`POLICY_FOR_ANNOTATION`]: a comma-separated list of
/// `[namespace/]name` (white space ignored, as multi-networkpolicy does),
/// the policy's namespace where an item names none; duplicates are
/// dropped. Missing, empty or malformed: refused, naming the annotation.
pub fn policy_networks(mnp: &MultiNetworkPolicy) -> Result<Vec<(String, String)>, FieldError> {
    let field = annotation_field(POLICY_FOR_ANNOTATION);
    let Some(text) = mnp
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POLICY_FOR_ANNOTATION))
    else {
        return Err((
            field,
            "required: the NetworkAttachmentDefinitions the policy is for, as \
             \"[namespace/]name[,...]\""
                .into(),
        ));
    };
    let policy_ns = mnp
        .metadata
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(super::DEFAULT_NAMESPACE);
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err((
            field,
            "must name at least one NetworkAttachmentDefinition".into(),
        ));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, item) in compact.split(',').enumerate() {
        let at = |m: String| {
            (
                field.clone(),
                format!("item {} ({item:?}): {m}; expected [namespace/]name", i + 1),
            )
        };
        if item.is_empty() {
            return Err(at("empty".into()));
        }
        let (ns, name) = match item.split_once('/') {
            Some((ns, name)) => {
                if name.contains('/') {
                    return Err(at("more than one '/'".into()));
                }
                names::dns1123_label(ns).map_err(|m| at(format!("namespace: {m}")))?;
                (ns.to_string(), name)
            }
            None => (policy_ns.to_string(), item),
        };
        names::dns1123_subdomain(name).map_err(|m| at(format!("name: {m}")))?;
        let pair = (ns, name.to_string());
        if !out.contains(&pair) {
            out.push(pair);
        }
    }
    Ok(out)
}

/// What an attachment definition means to Sluice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentConfig {
    /// A Sluice attachment: pods join this Network.
    Sluice {
        /// The Sluice Network's name.
        network: String,
        /// Where `network` is, for errors: `spec.config.network` or
        /// `spec.config.plugins[1].network`.
        field: String,
    },
    /// Another plugin's attachment; Sluice leaves it alone.
    Other { plugin_type: String },
}

/// A refusal: the field's path and what was expected.
pub type FieldError = (String, String);

/// Reads what Sluice needs of a definition's CNI configuration.
pub fn attachment_config(
    nad: &NetworkAttachmentDefinition,
) -> Result<AttachmentConfig, FieldError> {
    const AT: &str = "spec.config";
    if nad.spec.config.trim().is_empty() {
        return Err((
            AT.into(),
            "required: a CNI configuration as a JSON string, e.g. \
             {\"cniVersion\":\"1.0.0\",\"type\":\"sluice\",\"network\":\"blue\"}"
                .into(),
        ));
    }
    let v: Value = serde_json::from_str(&nad.spec.config)
        .map_err(|e| (AT.to_string(), format!("not a JSON CNI configuration: {e}")))?;
    let Value::Object(top) = &v else {
        return Err((AT.into(), "must be a JSON object".into()));
    };
    match top.get("cniVersion") {
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(_) => return Err((format!("{AT}.cniVersion"), "must be a string".into())),
        None => return Err((format!("{AT}.cniVersion"), "required".into())),
    }
    // A conflist: the first plugin of Sluice's type (others, such as the
    // bandwidth or tuning plugins, may sit beside it).
    let (plugin, at) = match top.get("plugins") {
        Some(Value::Array(plugins)) => {
            let mut sluice = None;
            for (i, p) in plugins.iter().enumerate() {
                let at = format!("{AT}.plugins[{i}]");
                let Value::Object(p) = p else {
                    return Err((at, "must be a JSON object".into()));
                };
                plugin_type(p, &at)?;
                if sluice.is_none()
                    && p.get("type").and_then(Value::as_str) == Some(SLUICE_CNI_TYPE)
                {
                    sluice = Some((p, at));
                }
            }
            match sluice {
                Some(s) => s,
                None => {
                    let first = plugins
                        .first()
                        .and_then(|p| p.get("type"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    return Ok(AttachmentConfig::Other {
                        plugin_type: first.to_string(),
                    });
                }
            }
        }
        Some(_) => return Err((format!("{AT}.plugins"), "must be a list".into())),
        None => {
            let t = plugin_type(top, AT)?;
            if t != SLUICE_CNI_TYPE {
                return Ok(AttachmentConfig::Other {
                    plugin_type: t.to_string(),
                });
            }
            (top, AT.to_string())
        }
    };
    let field = format!("{at}.network");
    let network = match plugin.get("network") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err((field, "must be a string naming a Sluice Network".into())),
        None => {
            return Err((
                field,
                "required: the Sluice Network the attachment joins".into(),
            ))
        }
    };
    names::dns1123_label(&network).map_err(|m| (field.clone(), m))?;
    if network == DEFAULT_NETWORK {
        return Err((
            field,
            "the default network is the pod network, which pods join through status.podIPs; \
             attachments join other Networks"
                .into(),
        ));
    }
    Ok(AttachmentConfig::Sluice { network, field })
}

fn plugin_type<'a>(p: &'a serde_json::Map<String, Value>, at: &str) -> Result<&'a str, FieldError> {
    match p.get("type") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err((format!("{at}.type"), "must be a non-empty string".into())),
        None => Err((format!("{at}.type"), "required".into())),
    }
}

/// One attachment a pod asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSelection {
    /// The definition's namespace (the pod's when the annotation names none).
    pub namespace: String,
    /// The definition's name.
    pub name: String,
    /// The interface name in the pod: the one asked for, or Multus' default
    /// `net1`, `net2`, ... by position.
    pub interface: String,
}

impl NetworkSelection {
    /// `namespace/name`, as network-status names the attachment.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The annotation's field path, for errors.
pub fn annotation_field(key: &str) -> String {
    format!("metadata.annotations[{key}]")
}

/// An element of the annotation's JSON form (Multus'
/// NetworkSelectionElement; the keys Sluice does not use are ignored, as
/// Multus ignores unknown ones).
#[derive(Deserialize)]
struct SelectionElement {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    interface: Option<String>,
}

/// The attachments a pod selects, in annotation order. Both forms Multus
/// reads: a comma-separated list of `[namespace/]name[@interface]`, or a
/// JSON list of `{"name", "namespace", "interface", ...}` objects (chosen,
/// as Multus does, when the text holds `[`, `{` or `"`).
pub fn pod_network_selections(pod: &Pod) -> Result<Vec<NetworkSelection>, FieldError> {
    let Some(text) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NETWORKS_ANNOTATION))
    else {
        return Ok(Vec::new());
    };
    let field = annotation_field(NETWORKS_ANNOTATION);
    let pod_ns = pod
        .metadata
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(super::DEFAULT_NAMESPACE);
    let mut raw: Vec<(Option<String>, String, Option<String>)> = Vec::new();
    if text.contains(['[', '{', '"']) {
        let elements: Vec<SelectionElement> = serde_json::from_str(text).map_err(|e| {
            (
                field.clone(),
                format!("not a JSON list of network selection elements: {e}"),
            )
        })?;
        for e in elements {
            raw.push((e.namespace.filter(|n| !n.is_empty()), e.name, e.interface));
        }
    } else if !text.trim().is_empty() {
        for (i, item) in text.split(',').enumerate() {
            let item = item.trim();
            let bad = |m: &str| {
                (
                    field.clone(),
                    format!(
                        "item {} ({item:?}): {m}; expected [namespace/]name[@interface]",
                        i + 1
                    ),
                )
            };
            let (ns, rest) = match item.split_once('/') {
                Some((ns, rest)) => (Some(ns.trim().to_string()), rest),
                None => (None, item),
            };
            if rest.contains('/') {
                return Err(bad("more than one '/'"));
            }
            let (name, iface) = match rest.split_once('@') {
                Some((name, iface)) => (name.trim(), Some(iface.trim().to_string())),
                None => (rest.trim(), None),
            };
            if iface.as_deref().is_some_and(|i| i.contains('@')) {
                return Err(bad("more than one '@'"));
            }
            raw.push((ns, name.to_string(), iface));
        }
    }
    let mut out: Vec<NetworkSelection> = Vec::with_capacity(raw.len());
    for (i, (ns, name, iface)) in raw.into_iter().enumerate() {
        let at = |what: &str, m: String| (field.clone(), format!("item {}: {what}: {m}", i + 1));
        names::dns1123_subdomain(&name).map_err(|m| at("name", m))?;
        let namespace = match ns {
            Some(ns) => {
                names::dns1123_label(&ns).map_err(|m| at("namespace", m))?;
                ns
            }
            None => pod_ns.to_string(),
        };
        let interface = match iface {
            Some(i) => {
                interface_name(&i).map_err(|m| at("interface", m))?;
                i
            }
            None => format!("net{}", i + 1),
        };
        if interface == DEFAULT_POD_INTERFACE {
            return Err(at(
                "interface",
                format!("{interface:?} is the pod network's interface"),
            ));
        }
        if let Some(j) = out.iter().position(|s| s.interface == interface) {
            return Err(at(
                "interface",
                format!("{interface:?} is already used by item {}", j + 1),
            ));
        }
        out.push(NetworkSelection {
            namespace,
            name,
            interface,
        });
    }
    Ok(out)
}

/// A Linux interface name: 1-15 bytes, no '/', ':' or white space, not
/// `.` or `..`.
fn interface_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 15 {
        return Err(format!("must be 1-15 characters, got {s:?}"));
    }
    if s == "." || s == ".." || s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(format!(
            "{s:?} is not a valid interface name (no '/', ':' or spaces)"
        ));
    }
    Ok(())
}

/// One entry of the network-status annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentStatus {
    /// `namespace/name` of the definition, or the cluster network's name
    /// for the default network's entry.
    pub name: String,
    pub interface: Option<String>,
    pub ips: Vec<IpAddr>,
    pub mac: Option<MacAddr>,
    /// Whether this is the pod network's entry.
    pub default: bool,
}

#[derive(Deserialize)]
struct StatusElement {
    name: String,
    #[serde(default)]
    interface: Option<String>,
    #[serde(default)]
    ips: Vec<String>,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    default: bool,
}

/// The pod's network-status annotation (empty when it has none: Multus
/// writes it once the pod's interfaces exist).
pub fn pod_network_status(pod: &Pod) -> Result<Vec<AttachmentStatus>, FieldError> {
    let Some(text) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NETWORK_STATUS_ANNOTATION))
    else {
        return Ok(Vec::new());
    };
    let field = annotation_field(NETWORK_STATUS_ANNOTATION);
    let elements: Vec<StatusElement> = serde_json::from_str(text).map_err(|e| {
        (
            field.clone(),
            format!("not a JSON list of network status entries: {e}"),
        )
    })?;
    let mut out = Vec::with_capacity(elements.len());
    for (i, e) in elements.into_iter().enumerate() {
        let ips = e
            .ips
            .iter()
            .enumerate()
            .map(|(j, s)| {
                // Some plugins report a CIDR; the address is what matters.
                let addr = s.split_once('/').map_or(s.as_str(), |(a, _)| a);
                names::ip(addr).map_err(|m| (field.clone(), format!("[{i}].ips[{j}]: {m}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mac = e
            .mac
            .filter(|m| !m.is_empty())
            .map(|m| m.parse::<MacAddr>())
            .transpose()
            .map_err(|m| (field.clone(), format!("[{i}].mac: {m}")))?;
        out.push(AttachmentStatus {
            name: e.name,
            interface: e.interface.filter(|i| !i.is_empty()),
            ips,
            mac,
            default: e.default,
        });
    }
    Ok(out)
}

/// A selected attachment with what network-status reports for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAttachment {
    pub selection: NetworkSelection,
    /// The attachment's addresses; none until Multus reported them.
    pub ips: Vec<IpAddr>,
    /// The pod interface's MAC, when reported.
    pub mac: Option<MacAddr>,
}

/// The pod's attachments: each selection joined with its network-status
/// entry (same `namespace/name` and, when the entry names one, the same
/// interface). Checks both annotations.
pub fn pod_attachments(pod: &Pod) -> Result<Vec<PodAttachment>, FieldError> {
    let selections = pod_network_selections(pod)?;
    let status = pod_network_status(pod)?;
    Ok(selections
        .into_iter()
        .map(|selection| {
            let qualified = selection.qualified_name();
            let entry = status.iter().find(|s| {
                !s.default
                    && (s.name == qualified || (s.name == selection.name && !s.name.contains('/')))
                    && s.interface
                        .as_deref()
                        .is_none_or(|i| i == selection.interface)
            });
            PodAttachment {
                ips: entry.map(|e| e.ips.clone()).unwrap_or_default(),
                mac: entry.and_then(|e| e.mac),
                selection,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pod(annotations: &[(&str, &str)]) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("a".into());
        p.metadata.namespace = Some("apps".into());
        p.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        );
        p
    }

    fn sel(ns: &str, name: &str, iface: &str) -> NetworkSelection {
        NetworkSelection {
            namespace: ns.into(),
            name: name.into(),
            interface: iface.into(),
        }
    }

    #[test]
    fn short_form() {
        let p = pod(&[(NETWORKS_ANNOTATION, " blue-net , infra/red-net@red0,green")]);
        assert_eq!(
            pod_network_selections(&p).unwrap(),
            [
                sel("apps", "blue-net", "net1"),
                sel("infra", "red-net", "red0"),
                sel("apps", "green", "net3"),
            ]
        );
        assert!(pod_network_selections(&pod(&[])).unwrap().is_empty());
        assert!(pod_network_selections(&pod(&[(NETWORKS_ANNOTATION, "")]))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn json_form() {
        let p = pod(&[(
            NETWORKS_ANNOTATION,
            r#"[{"name":"blue-net","interface":"blue0","ips":["10.1.0.5/24"]},
                {"name":"red-net","namespace":"infra","cni-args":{"x":1}}]"#,
        )]);
        assert_eq!(
            pod_network_selections(&p).unwrap(),
            [
                sel("apps", "blue-net", "blue0"),
                sel("infra", "red-net", "net2")
            ]
        );
    }

    #[test]
    fn bad_selections_name_the_annotation() {
        let field = annotation_field(NETWORKS_ANNOTATION);
        for (text, needle) in [
            ("a/b/c", "more than one '/'"),
            ("a@x@y", "more than one '@'"),
            ("blue,,red", "item 2: name"),
            ("Blue", "item 1: name"),
            ("blue@eth0", "pod network's interface"),
            ("blue@x,red@x", "already used by item 1"),
            ("blue@waytoolonginterface", "1-15 characters"),
            ("bad_ns/blue", "item 1: namespace"),
            (r#"[{"namespace":"x"}]"#, "missing field `name`"),
            ("[{", "not a JSON list"),
        ] {
            let e = pod_network_selections(&pod(&[(NETWORKS_ANNOTATION, text)])).unwrap_err();
            assert_eq!(e.0, field, "{text}");
            assert!(e.1.contains(needle), "{text}: {}", e.1);
        }
    }

    const STATUS: &str = r#"[
      {"name":"kindnet","interface":"eth0","ips":["10.244.0.10"],"mac":"0a:58:0a:f4:00:0a","default":true},
      {"name":"apps/blue-net","interface":"net1","ips":["10.10.0.5","fd10::5"],"mac":"02:00:00:00:b1:05"},
      {"name":"infra/red-net","interface":"red0","ips":["10.20.0.5/24"]}
    ]"#;

    #[test]
    fn status_joins_selections() {
        let p = pod(&[
            (NETWORKS_ANNOTATION, "blue-net, infra/red-net@red0, late"),
            (NETWORK_STATUS_ANNOTATION, STATUS),
        ]);
        let a = pod_attachments(&p).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(
            a[0].ips,
            [
                "10.10.0.5".parse::<IpAddr>().unwrap(),
                "fd10::5".parse().unwrap()
            ]
        );
        assert_eq!(a[0].mac, Some("02:00:00:00:b1:05".parse().unwrap()));
        assert_eq!(a[1].ips, ["10.20.0.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(a[1].mac, None);
        // Not reported yet: no addresses.
        assert!(a[2].ips.is_empty());
    }

    #[test]
    fn bad_status_is_refused() {
        let field = annotation_field(NETWORK_STATUS_ANNOTATION);
        for (text, needle) in [
            ("{}", "not a JSON list"),
            (r#"[{"name":"x","ips":["10.0.0.300"]}]"#, "[0].ips[0]"),
            (r#"[{"name":"x","mac":"zz"}]"#, "[0].mac"),
        ] {
            let e = pod_network_status(&pod(&[(NETWORK_STATUS_ANNOTATION, text)])).unwrap_err();
            assert_eq!(e.0, field);
            assert!(e.1.contains(needle), "{text}: {}", e.1);
        }
    }

    fn nad(config: &str) -> NetworkAttachmentDefinition {
        NetworkAttachmentDefinition {
            spec: NetworkAttachmentDefinitionSpec {
                config: config.into(),
            },
            ..Default::default()
        }
    }

    #[test]
    fn cni_configs() {
        assert_eq!(
            attachment_config(&nad(
                r#"{"cniVersion":"1.0.0","type":"sluice","network":"blue","ipam":{}}"#
            )),
            Ok(AttachmentConfig::Sluice {
                network: "blue".into(),
                field: "spec.config.network".into()
            })
        );
        assert_eq!(
            attachment_config(&nad(
                r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"tuning"},{"type":"sluice","network":"red"}]}"#
            )),
            Ok(AttachmentConfig::Sluice {
                network: "red".into(),
                field: "spec.config.plugins[1].network".into()
            })
        );
        assert_eq!(
            attachment_config(&nad(
                r#"{"cniVersion":"0.3.1","type":"macvlan","master":"eth1"}"#
            )),
            Ok(AttachmentConfig::Other {
                plugin_type: "macvlan".into()
            })
        );
        for (config, field, needle) in [
            ("", "spec.config", "required"),
            ("type: sluice", "spec.config", "not a JSON"),
            ("[1]", "spec.config", "JSON object"),
            (
                r#"{"type":"sluice","network":"b"}"#,
                "spec.config.cniVersion",
                "required",
            ),
            (
                r#"{"cniVersion":"1.0.0","network":"b"}"#,
                "spec.config.type",
                "required",
            ),
            (
                r#"{"cniVersion":"1.0.0","type":"sluice"}"#,
                "spec.config.network",
                "required",
            ),
            (
                r#"{"cniVersion":"1.0.0","type":"sluice","network":7}"#,
                "spec.config.network",
                "must be a string",
            ),
            (
                r#"{"cniVersion":"1.0.0","type":"sluice","network":"Blue"}"#,
                "spec.config.network",
                "",
            ),
            (
                r#"{"cniVersion":"1.0.0","type":"sluice","network":"default"}"#,
                "spec.config.network",
                "pod network",
            ),
            (
                r#"{"cniVersion":"1.0.0","plugins":[{"network":"b"}]}"#,
                "spec.config.plugins[0].type",
                "required",
            ),
            (
                r#"{"cniVersion":"1.0.0","plugins":{}}"#,
                "spec.config.plugins",
                "list",
            ),
        ] {
            let e = attachment_config(&nad(config)).unwrap_err();
            assert_eq!(e.0, field, "{config}");
            assert!(e.1.contains(needle), "{config}: {}", e.1);
        }
    }
}

#[cfg(test)]
mod state_tests {
    //! What a batch may do with definitions and the pods that use them.

    use crate::model::{parse_manifests, Change, DesiredState, Kind, ObjectKey};

    fn changes(yaml: &str) -> Vec<Change> {
        parse_manifests(yaml)
            .unwrap()
            .into_iter()
            .map(Change::Apply)
            .collect()
    }

    const BLUE: &str = r#"
apiVersion: sluice.dev/v1
kind: Network
metadata: {name: blue}
spec: {}
"#;

    const NAD: &str = r#"
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: blue-net, namespace: apps}
spec: {config: '{"cniVersion":"1.0.0","type":"sluice","network":"blue"}'}
"#;

    const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: a
  namespace: apps
  annotations: {k8s.v1.cni.cncf.io/networks: apps/blue-net@blue0}
spec: {containers: [{name: c, image: i}]}
"#;

    #[test]
    fn definitions_name_known_networks() {
        let mut s = DesiredState::new();
        let e = s.apply(&changes(NAD)).unwrap_err();
        assert_eq!(e.object, "NetworkAttachmentDefinition apps/blue-net");
        assert_eq!(e.field, "spec.config.network");
        assert!(
            e.message.contains("Network \"blue\", which does not exist"),
            "{e}"
        );
        s.apply(&changes(&format!("{BLUE}---{NAD}"))).unwrap();
        // The Network cannot go while the definition uses it.
        let e = s
            .apply(&[Change::Delete(ObjectKey::cluster(Kind::Network, "blue"))])
            .unwrap_err();
        assert!(
            e.message
                .contains("NetworkAttachmentDefinition apps/blue-net still uses it"),
            "{e}"
        );
        // A config that is not JSON is refused with its field.
        let bad = NAD.replace(r#"'{"cniVersion""#, r#"'{cniVersion""#);
        let e = s.apply(&changes(&bad)).unwrap_err();
        assert_eq!(
            (e.object.as_str(), e.field.as_str()),
            ("NetworkAttachmentDefinition apps/blue-net", "spec.config")
        );
    }

    #[test]
    fn pods_need_their_definitions() {
        let mut s = DesiredState::new();
        s.apply(&changes(BLUE)).unwrap();
        let e = s.apply(&changes(POD)).unwrap_err();
        assert_eq!(e.object, "Pod apps/a");
        assert_eq!(e.field, "metadata.annotations[k8s.v1.cni.cncf.io/networks]");
        assert!(
            e.message
                .contains("\"apps/blue-net\", which does not exist"),
            "{e}"
        );
        assert!(s
            .get(&ObjectKey::namespaced(Kind::Pod, "apps", "a"))
            .is_none());
        // With the definition in the same batch, both are accepted.
        s.apply(&changes(&format!("{NAD}---{POD}"))).unwrap();
        // The definition cannot go while the pod uses it; both together can.
        let nad = ObjectKey::namespaced(Kind::NetworkAttachmentDefinition, "apps", "blue-net");
        let e = s.apply(&[Change::Delete(nad.clone())]).unwrap_err();
        assert!(e.message.contains("Pod apps/a still uses it"), "{e}");
        s.apply(&[
            Change::Delete(nad),
            Change::Delete(ObjectKey::namespaced(Kind::Pod, "apps", "a")),
        ])
        .unwrap();
    }

    #[test]
    fn definitions_round_trip_as_manifests() {
        let o = parse_manifests(NAD).unwrap().remove(0);
        assert_eq!(o.kind(), Kind::NetworkAttachmentDefinition);
        let again = parse_manifests(&o.to_yaml()).unwrap().remove(0);
        assert_eq!(o, again);
        // Unknown fields are refused with their path.
        let e =
            parse_manifests(&NAD.replace("spec: {config", "spec: {cfg: x, config")).unwrap_err();
        assert!(e.to_string().contains("cfg"), "{e}");
    }
}
