//! Reading manifests: YAML streams of several documents (`---`), JSON
//! (JSON is YAML too), a top-level list of objects, or a `kind: List` with
//! `items`. Each object is dispatched on `apiVersion` and `kind` to its typed
//! struct.
//!
//! Unknown fields are refused. k8s-openapi's deserializers skip keys they do
//! not know, so after the typed value is read it is serialised again and the
//! input's keys are compared with the output's, recursively: a key present in
//! the input (with a non-null value) and absent from the output is a field the
//! type does not have. The first one is reported with its path, e.g.
//! `spec.ports[0].prot`.

use super::{Kind, ModelError, Object, DEFAULT_NAMESPACE};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Parses every object in `text`, or refuses the whole text with the first
/// error. Empty documents are skipped. Objects are [normalized](Object::normalize)
/// but not [validated](super::validate).
pub fn parse_manifests(text: &str) -> Result<Vec<Object>, ModelError> {
    parse_documents(text).into_iter().collect()
}

/// Parses every object in `text`, giving one result per object so that a
/// caller importing real manifests can skip kinds Sluice does not handle
/// (Deployments, ConfigMaps, ...) and still see every other error. A YAML
/// syntax error ends the list, since nothing after it can be read reliably.
pub fn parse_documents(text: &str) -> Vec<Result<Object, ModelError>> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let label = format!("document {}", i + 1);
        let value = match Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                out.push(Err(ModelError::new(
                    label,
                    "",
                    format!("not valid YAML or JSON: {e}"),
                )));
                break;
            }
        };
        match value {
            Value::Null => {}
            Value::Array(items) => {
                for (j, item) in items.into_iter().enumerate() {
                    out.push(object_from_value(item, &format!("{label} item {}", j + 1)));
                }
            }
            Value::Object(ref m)
                if m.get("kind").and_then(Value::as_str) == Some("List")
                    && m.get("apiVersion").and_then(Value::as_str) == Some("v1") =>
            {
                let items = m.get("items").cloned().unwrap_or(Value::Null);
                match items {
                    Value::Array(items) => {
                        for (j, item) in items.into_iter().enumerate() {
                            out.push(object_from_value(item, &format!("{label} items[{j}]")));
                        }
                    }
                    Value::Null => {}
                    _ => out.push(Err(ModelError::new(
                        label,
                        "items",
                        "a List's items must be a list of objects",
                    ))),
                }
            }
            v => out.push(object_from_value(v, &label)),
        }
    }
    out
}

fn str_field<'a>(m: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

/// Reads one object from a JSON value; `label` names it in errors until its
/// kind and name are known (e.g. `document 3`).
pub(crate) fn object_from_value(value: Value, label: &str) -> Result<Object, ModelError> {
    let Value::Object(m) = &value else {
        return Err(ModelError::new(
            label,
            "",
            "expected an object with apiVersion, kind and metadata",
        ));
    };
    let api_version = str_field(m, "apiVersion")
        .ok_or_else(|| ModelError::new(label, "apiVersion", "required: a string such as v1"))?;
    let kind_name = str_field(m, "kind")
        .ok_or_else(|| ModelError::new(label, "kind", "required: a string such as Service"))?;
    let kind = match kind_name.parse::<Kind>() {
        Ok(k) if k.api_version() == api_version => k,
        Ok(k) => {
            return Err(ModelError::new(
                label,
                "apiVersion",
                format!(
                    "{kind_name} is served as apiVersion {}, got {api_version:?}",
                    k.api_version()
                ),
            ))
        }
        Err(_) => {
            return Err(ModelError::new(
                label,
                "kind",
                format!(
                    "unsupported kind {kind_name:?} (apiVersion {api_version}); Sluice accepts {}",
                    Kind::ALL
                        .iter()
                        .map(|k| format!("{}/{}", k.api_version(), k.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        }
    };

    let meta = m.get("metadata").and_then(Value::as_object);
    let name = meta.and_then(|md| str_field(md, "name")).unwrap_or("");
    let namespace = meta.and_then(|md| str_field(md, "namespace"));
    let mut object = match (kind.namespaced(), namespace) {
        (true, ns) => format!("{kind} {}/{name}", ns.unwrap_or(DEFAULT_NAMESPACE)),
        (false, _) => format!("{kind} {name}"),
    };
    if label != "object" {
        object = format!("{object} ({label})");
    }
    let mut obj = Object::from_typed_value(kind, &value, &object)?;
    obj.normalize();
    Ok(obj)
}

/// Deserialises `value` as `T`, reporting the field path of a failure, then
/// refuses keys that `T` does not have.
pub(crate) fn typed<T: DeserializeOwned + Serialize>(
    value: &Value,
    object: &str,
) -> Result<T, ModelError> {
    let typed: T = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
        }
        let message = e.inner().to_string();
        // serde's own "unknown field" error (deny_unknown_fields) points at
        // the map holding the key; name the key itself.
        if let Some(rest) = message.strip_prefix("unknown field `") {
            if let Some((field, expected)) = rest.split_once('`') {
                let field_path = join(&path, field);
                if !path.ends_with(field) {
                    path = field_path;
                }
                return ModelError::new(
                    object,
                    path,
                    format!("unknown field;{}", expected.trim_start_matches(',')),
                );
            }
        }
        ModelError::new(object, path, message)
    })?;
    let round = serde_json::to_value(&typed)
        .map_err(|e| ModelError::new(object, "", format!("cannot be represented: {e}")))?;
    if let Some(path) = first_unknown(value, &round, "") {
        return Err(ModelError::new(
            object,
            path,
            "unknown field: not part of this kind's schema",
        ));
    }
    Ok(typed)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The path of the first key in `input` that `output` lacks, ignoring keys
/// whose input value is null.
fn first_unknown(input: &Value, output: &Value, path: &str) -> Option<String> {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                if v.is_null() {
                    continue;
                }
                let p = join(path, k);
                match o.get(k) {
                    None => return Some(p),
                    Some(ov) => {
                        if let Some(found) = first_unknown(v, ov, &p) {
                            return Some(found);
                        }
                    }
                }
            }
            None
        }
        (Value::Array(i), Value::Array(o)) => i
            .iter()
            .zip(o)
            .enumerate()
            .find_map(|(idx, (v, ov))| first_unknown(v, ov, &format!("{path}[{idx}]"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_keys_found_recursively() {
        let input =
            json!({"spec": {"ports": [{"port": 80}, {"port": 81, "prot": "TCP"}], "x": null}});
        let output = json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}});
        assert_eq!(
            first_unknown(&input, &output, "").as_deref(),
            Some("spec.ports[1].prot")
        );
        let same = json!({"a": {"b": [1, 2]}});
        assert_eq!(first_unknown(&same, &same, ""), None);
    }
}
