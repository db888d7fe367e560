//! `sluicectl`'s parts that are not command-line plumbing: reading manifest
//! files into the API's objects, naming kinds the way people type them,
//! and printing what the API returns.
//!
//! The CLI does not validate objects: it sends each manifest document as
//! JSON and the daemon checks the batch as a whole. It only splits files
//! into documents, so that errors can point at a file and document.

use crate::api::pb;
use crate::model::Kind;
use serde_json::Value;
use std::fmt::Write;

/// Where an object of a batch came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    /// 1-based document number in the file.
    pub document: usize,
    /// For an item of a List or a top-level array: its index.
    pub item: Option<usize>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} document {}", self.file, self.document)?;
        if let Some(i) = self.item {
            write!(f, " item {i}")?;
        }
        Ok(())
    }
}

/// One manifest document, as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub origin: Origin,
    pub value: Value,
}

impl Document {
    fn str_at(&self, path: &[&str]) -> Option<&str> {
        let mut v = &self.value;
        for p in path {
            v = v.get(p)?;
        }
        v.as_str()
    }

    pub fn api_version(&self) -> &str {
        self.str_at(&["apiVersion"]).unwrap_or("")
    }

    pub fn kind(&self) -> &str {
        self.str_at(&["kind"]).unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.str_at(&["metadata", "name"]).unwrap_or("")
    }

    pub fn namespace(&self) -> &str {
        self.str_at(&["metadata", "namespace"]).unwrap_or("")
    }

    /// The key the document names (the daemon fills in a missing namespace).
    pub fn key(&self) -> pb::ObjectKey {
        pb::ObjectKey {
            kind: self.kind().to_string(),
            namespace: self.namespace().to_string(),
            name: self.name().to_string(),
        }
    }

    /// The document as the API carries it.
    pub fn to_object(&self) -> pb::Object {
        pb::Object {
            key: None,
            json: self.value.to_string(),
            revision: 0,
        }
    }

    /// `apps/v1 Deployment default/web`, for messages.
    pub fn describe(&self) -> String {
        let ns = self.namespace();
        let name = self.name();
        let who = if ns.is_empty() {
            name.to_string()
        } else {
            format!("{ns}/{name}")
        };
        format!("{} {} {who}", self.api_version(), self.kind())
    }
}

/// Splits manifest text (YAML or JSON, documents separated by `---`) into
/// documents. Empty documents are skipped; a top-level array or a `v1`
/// `List` gives one document per item. `file` names the text in errors.
pub fn read_documents(text: &str, file: &str) -> Result<Vec<Document>, String> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let value = Value::deserialize(doc)
            .map_err(|e| format!("{file} document {document}: not valid YAML or JSON: {e}"))?;
        let origin = |item| Origin {
            file: file.to_string(),
            document,
            item,
        };
        let items = match value {
            Value::Null => continue,
            Value::Array(items) => items,
            Value::Object(ref m)
                if m.get("kind").and_then(Value::as_str) == Some("List")
                    && m.get("apiVersion").and_then(Value::as_str) == Some("v1") =>
            {
                match m.get("items") {
                    Some(Value::Array(items)) => items.clone(),
                    None | Some(Value::Null) => Vec::new(),
                    Some(_) => {
                        return Err(format!(
                            "{file} document {document}: items: a List's items must be a list of objects"
                        ))
                    }
                }
            }
            v => {
                out.push(Document {
                    origin: origin(None),
                    value: v,
                });
                continue;
            }
        };
        for (j, v) in items.into_iter().enumerate() {
            out.push(Document {
                origin: origin(Some(j)),
                value: v,
            });
        }
    }
    Ok(out)
}

/// Replaces the daemon's `objects[i]` in a message with where object `i`
/// came from.
pub fn locate(message: &str, origins: &[Origin]) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("objects[") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "objects[".len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let index = after[..digits].parse::<usize>().ok();
        match (index, after[digits..].starts_with(']')) {
            (Some(i), true) if i < origins.len() => {
                out.push_str(&origins[i].to_string());
                rest = &after[digits + 1..];
            }
            _ => {
                out.push_str("objects[");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Short names people type for kinds, as kubectl knows them where
/// Kubernetes has the kind.
const SHORT_NAMES: &[(&str, Kind)] = &[
    ("ns", Kind::Namespace),
    ("po", Kind::Pod),
    ("no", Kind::Node),
    ("svc", Kind::Service),
    ("eps", Kind::EndpointSlice),
    ("netpol", Kind::NetworkPolicy),
    ("anp", Kind::AdminNetworkPolicy),
    ("banp", Kind::BaselineAdminNetworkPolicy),
    ("cnp", Kind::ClusterNetworkPolicy),
    ("if", Kind::Interface),
    ("iface", Kind::Interface),
    ("net", Kind::Network),
    ("rt", Kind::Route),
    ("neigh", Kind::Neighbour),
    ("neighbor", Kind::Neighbour),
    ("neighbors", Kind::Neighbour),
    ("bw", Kind::Bandwidth),
    ("nse", Kind::NetworkServiceEndpoint),
    ("mcg", Kind::MulticastGroup),
    ("net-attach-def", Kind::NetworkAttachmentDefinition),
    ("multi-networkpolicy", Kind::MultiNetworkPolicy),
    ("multi-networkpolicies", Kind::MultiNetworkPolicy),
    ("mnp", Kind::MultiNetworkPolicy),
];

fn plural(name: &str) -> String {
    if let Some(stem) = name.strip_suffix('y') {
        format!("{stem}ies")
    } else if name.ends_with('s') {
        format!("{name}es")
    } else {
        format!("{name}s")
    }
}

/// The kind a person meant: `Service`, `service`, `services`, `svc`.
pub fn resolve_kind(s: &str) -> Result<Kind, String> {
    let lower = s.to_ascii_lowercase();
    for k in Kind::ALL {
        let name = k.as_str().to_ascii_lowercase();
        if lower == name || lower == plural(&name) {
            return Ok(*k);
        }
    }
    if let Some((_, k)) = SHORT_NAMES.iter().find(|(n, _)| *n == lower) {
        return Ok(*k);
    }
    Err(format!(
        "unknown kind {s:?}; expected one of {}",
        Kind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// `Service default/web`, `Interface p0`.
pub fn key_text(k: &pb::ObjectKey) -> String {
    if k.namespace.is_empty() {
        format!("{} {}", k.kind, k.name)
    } else {
        format!("{} {}/{}", k.kind, k.namespace, k.name)
    }
}

/// Rows as aligned columns (two spaces apart), header first.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.collect();
        let n = cells.len();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == n {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<w$}  ");
            }
        }
        out.push('\n');
    };
    line(&mut out, &mut header.iter().copied());
    for r in rows {
        line(&mut out, &mut r.iter().map(String::as_str));
    }
    out
}

/// `get`'s table: KIND NAMESPACE NAME REVISION.
pub fn objects_table(objects: &[pb::Object]) -> String {
    let rows: Vec<Vec<String>> = objects
        .iter()
        .map(|o| {
            let k = o.key.clone().unwrap_or_default();
            vec![
                k.kind,
                if k.namespace.is_empty() {
                    "-".into()
                } else {
                    k.namespace
                },
                k.name,
                o.revision.to_string(),
            ]
        })
        .collect();
    table(&["KIND", "NAMESPACE", "NAME", "REVISION"], &rows)
}

/// The manifests of objects: one object as itself, several as a `v1` List.
pub fn objects_value(objects: &[pb::Object], single: bool) -> Result<Value, String> {
    let mut items = Vec::with_capacity(objects.len());
    for o in objects {
        items.push(
            serde_json::from_str::<Value>(&o.json)
                .map_err(|e| format!("the daemon sent an object that is not JSON: {e}"))?,
        );
    }
    if single && items.len() == 1 {
        return Ok(items.pop().expect("one item"));
    }
    Ok(serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}))
}

/// `trace`'s human form: a line per stage, its detail indented.
pub fn trace_text(r: &pb::TraceResponse) -> String {
    let mut out = format!("table generation {}\n", r.generation);
    for s in &r.steps {
        let _ = writeln!(out, "{:<14} {}", s.stage, s.decision);
        if !s.detail.is_empty() {
            let _ = writeln!(out, "{:<14}   {}", "", s.detail);
        }
    }
    let _ = writeln!(out, "=> {}", r.verdict);
    out
}

/// Service chains' hops and their counters, as a table.
pub fn chains_text(rows: &[pb::ChainHop]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|h| {
            vec![
                h.chain.clone(),
                h.payload.clone(),
                h.hop.clone(),
                h.function.clone(),
                format!("{}/{}", h.forward_packets, h.forward_bytes),
                format!("{}/{}", h.reverse_packets, h.reverse_bytes),
                h.dropped.to_string(),
                h.skipped.to_string(),
                if h.function.split(',').any(|f| f == "mirror") {
                    format!(
                        "{}/{} ({} dropped)",
                        h.mirrored, h.mirrored_bytes, h.mirror_dropped
                    )
                } else {
                    "-".to_string()
                },
            ]
        })
        .collect();
    table(
        &[
            "CHAIN",
            "PAYLOAD",
            "HOP",
            "FUNCTION",
            "FORWARD-PKTS/BYTES",
            "REVERSE-PKTS/BYTES",
            "DROPPED",
            "SKIPPED",
            "MIRRORED-PKTS/BYTES",
        ],
        &rows,
    )
}

/// Per-pod bandwidth limits and their counters, as a table.
pub fn bandwidth_text(rows: &[pb::PodBandwidth]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|b| {
            vec![
                b.pod.clone(),
                b.direction.clone(),
                b.rate_bps.to_string(),
                b.burst_bits.to_string(),
                b.mode.clone(),
                format!("{}/{}", b.conform_packets, b.conform_bytes),
                format!("{}/{}", b.queued_packets, b.queued_bytes),
                format!("{}/{}", b.dropped_packets, b.dropped_bytes),
            ]
        })
        .collect();
    table(
        &[
            "POD",
            "DIRECTION",
            "RATE-BPS",
            "BURST-BITS",
            "MODE",
            "CONFORM-PKTS/BYTES",
            "QUEUED-PKTS/BYTES",
            "DROPPED-PKTS/BYTES",
        ],
        &rows,
    )
}

/// `stats`' human form.
pub fn stats_text(s: &pb::Stats) -> String {
    use sluice_dataplane::stats::{DropReason, Event};
    let mut out = String::new();
    let g = s.generations.unwrap_or_default();
    let t = s.totals.unwrap_or_default();
    let _ = writeln!(
        out,
        "revision {}  table generation {} (oldest running {})  workers {}{}",
        s.revision,
        g.newest,
        g.oldest_running,
        s.workers.len(),
        if s.dataplane { "" } else { "  (no dataplane)" }
    );
    let _ = writeln!(
        out,
        "received {}  transmitted {}  dropped {}",
        t.rx_packets, t.tx_packets, t.dropped
    );
    if !s.ports.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = s
            .ports
            .iter()
            .map(|p| {
                vec![
                    p.id.to_string(),
                    p.name.clone(),
                    p.backend.clone(),
                    if p.link_up { "up" } else { "down" }.into(),
                    p.rx_packets.to_string(),
                    p.rx_bytes.to_string(),
                    p.tx_packets.to_string(),
                    p.tx_bytes.to_string(),
                    p.rx_dropped.to_string(),
                    p.tx_dropped.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "ID", "PORT", "BACKEND", "LINK", "RX-PKTS", "RX-BYTES", "TX-PKTS", "TX-BYTES",
                "RX-DROP", "TX-DROP",
            ],
            &rows,
        ));
    }
    if !s.workers.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = s
            .workers
            .iter()
            .map(|w| {
                let c = w.counters.unwrap_or_default();
                vec![
                    w.id.to_string(),
                    w.generation.to_string(),
                    c.rx_packets.to_string(),
                    c.tx_packets.to_string(),
                    c.dropped.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["WORKER", "GENERATION", "RX-PKTS", "TX-PKTS", "DROPPED"],
            &rows,
        ));
    }
    if !s.drops.is_empty() {
        out.push_str("\ndrops:\n");
        for (name, n) in &s.drops {
            let about = DropReason::from_name(name).map_or("", |r| r.description());
            let _ = writeln!(out, "  {name:<26} {n:>12}  {about}");
        }
    }
    if !s.events.is_empty() {
        out.push_str("\nevents:\n");
        for (name, n) in &s.events {
            let about = Event::from_name(name).map_or("", |e| e.description());
            let _ = writeln!(out, "  {name:<26} {n:>12}  {about}");
        }
    }
    out
}

/// A watch event's name for people: ADDED, MODIFIED, DELETED.
pub fn event_type_name(t: i32) -> &'static str {
    match pb::EventType::try_from(t) {
        Ok(pb::EventType::Added) => "ADDED",
        Ok(pb::EventType::Modified) => "MODIFIED",
        Ok(pb::EventType::Deleted) => "DELETED",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_and_lists_expand() {
        let text = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
---
---
apiVersion: v1
kind: List
items:
- {apiVersion: sluice.dev/v1, kind: Route, metadata: {name: a}}
- {apiVersion: sluice.dev/v1, kind: Route, metadata: {name: b}}
---
[{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}]
"#;
        let docs = read_documents(text, "f.yaml").unwrap();
        assert_eq!(docs.len(), 4);
        assert_eq!(docs[0].kind(), "Service");
        assert_eq!(docs[0].origin.to_string(), "f.yaml document 1");
        assert_eq!(docs[2].name(), "b");
        assert_eq!(docs[2].origin.to_string(), "f.yaml document 3 item 1");
        assert_eq!(docs[3].origin.document, 4);
        let e = read_documents("a: [\n", "bad.yaml").unwrap_err();
        assert!(e.starts_with("bad.yaml document 1: not valid YAML"), "{e}");
    }

    #[test]
    fn daemon_positions_become_file_positions() {
        let o = |d| Origin {
            file: "m.yaml".into(),
            document: d,
            item: None,
        };
        let origins: Vec<Origin> = (1..=12).map(o).collect();
        assert_eq!(
            locate("Service default/web (objects[11]): spec: bad", &origins),
            "Service default/web (m.yaml document 12): spec: bad"
        );
        assert_eq!(
            locate("objects[1]: kind: unsupported", &origins),
            "m.yaml document 2: kind: unsupported"
        );
        assert_eq!(locate("objects[99]: x", &origins), "objects[99]: x");
        assert_eq!(locate("objects[", &origins), "objects[");
    }

    #[test]
    fn kinds_by_the_names_people_type() {
        assert_eq!(resolve_kind("Service").unwrap(), Kind::Service);
        assert_eq!(resolve_kind("services").unwrap(), Kind::Service);
        assert_eq!(resolve_kind("svc").unwrap(), Kind::Service);
        assert_eq!(
            resolve_kind("networkpolicies").unwrap(),
            Kind::NetworkPolicy
        );
        assert_eq!(resolve_kind("endpointslices").unwrap(), Kind::EndpointSlice);
        assert_eq!(resolve_kind("route").unwrap(), Kind::Route);
        assert_eq!(resolve_kind("Neighbours").unwrap(), Kind::Neighbour);
        assert!(resolve_kind("deployment").is_err());
        for name in ["mnp", "multi-networkpolicy", "MultiNetworkPolicies"] {
            assert_eq!(resolve_kind(name).unwrap(), Kind::MultiNetworkPolicy);
        }
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "B"], &[vec!["long".into(), "x".into()]]);
        assert_eq!(t, "A     B\nlong  x\n");
    }
}
