//! The gRPC API, `sluice.v1`: the control plane as clients see it.
//!
//! The protos live in `control/proto/sluice/v1/` and are compiled at build
//! time with pure-Rust tools (protox + tonic-prost-build; no `protoc`).
//! Objects travel as their manifest JSON with a key beside it, so every
//! Kubernetes and Sluice kind goes through the same messages.
//!
//! This module is the edge: the one place where API messages become model
//! types ([`Object`], [`ObjectKey`], [`Change`]) and controller results and
//! errors become API messages and gRPC statuses. Nothing past it sees a
//! protobuf type, and nothing before it sees a model type.
//!
//! * [`service`]: the `Control` service over a [`Controller`](crate::controller::Controller).
//! * [`listen`]: Unix-socket and TLS-over-TCP listeners.
//! * [`client`]: connecting to a daemon (used by `sluicectl` and tests).

pub mod client;
pub mod listen;
pub mod service;

pub use service::{ControlService, DataplaneSnapshot, StatsFeed};

/// The generated messages, client and server.
pub mod pb {
    tonic::include_proto!("sluice.v1");
}

use crate::controller::ControlError;
use crate::model::{parse, Kind, ModelError, Object, ObjectKey, StoredObject, DEFAULT_NAMESPACE};
use crate::store::StoreError;
use tonic::{Code, Status};

/// The API's version, as `Version` reports it and the proto package names it.
pub const API_VERSION: &str = "sluice.v1";

/// gRPC metadata keys that carry a refused request's object and field path
/// beside the message, for clients that want them separately.
pub const ERROR_OBJECT_METADATA: &str = "sluice-error-object";
pub const ERROR_FIELD_METADATA: &str = "sluice-error-field";

/// A refusal for people, as `InvalidArgument`: the message is the error's
/// display form ("Kind ns/name: field.path: what was expected") and the
/// object and field are also attached as metadata.
pub fn invalid(e: &ModelError) -> Status {
    with_location(Status::invalid_argument(e.to_string()), &e.object, &e.field)
}

fn with_location(mut status: Status, object: &str, field: &str) -> Status {
    let md = status.metadata_mut();
    // Metadata values must be visible ASCII; leave them off otherwise (the
    // message has them anyway).
    if let Ok(v) = object.parse() {
        md.insert(ERROR_OBJECT_METADATA, v);
    }
    if !field.is_empty() {
        if let Ok(v) = field.parse() {
            md.insert(ERROR_FIELD_METADATA, v);
        }
    }
    status
}

/// The status a controller error is reported with.
pub fn status_of(e: &ControlError) -> Status {
    match e {
        ControlError::Invalid(m) => invalid(m),
        ControlError::Compile(c) => with_location(
            Status::invalid_argument(c.to_string()),
            &c.object,
            &c.field,
        ),
        ControlError::Store(s) => match s {
            StoreError::Compacted { requested, oldest } => Status::out_of_range(format!(
                "revision {requested}: its history was compacted; watch from revision {oldest} or later (list, then watch from the list's revision)"
            )),
            StoreError::InvalidKey { .. } => Status::invalid_argument(s.to_string()),
            StoreError::Locked { .. } | StoreError::Io { .. } | StoreError::Failed { .. } => {
                Status::unavailable(format!("the store failed, nothing was applied: {s}"))
            }
            _ => Status::internal(s.to_string()),
        },
        ControlError::CorruptObject { .. } => Status::internal(e.to_string()),
    }
}

/// Whether an error means the store can no longer be trusted to write (the
/// daemon then stops, so that a restart recovers the file).
pub fn is_store_failure(e: &ControlError) -> bool {
    matches!(
        e,
        ControlError::Store(StoreError::Io { .. } | StoreError::Failed { .. })
    )
}

/// Reads a kind name as manifests spell it.
pub fn kind_from_pb(kind: &str, field: &str) -> Result<Kind, Status> {
    kind.parse::<Kind>()
        .map_err(|e| invalid(&ModelError::new(format!("kind {kind:?}"), field, e.message)))
}

/// Reads an object key. A namespaced kind without a namespace is in
/// [`DEFAULT_NAMESPACE`]; a cluster-scoped kind with one is refused.
pub fn key_from_pb(key: Option<&pb::ObjectKey>, field: &str) -> Result<ObjectKey, Status> {
    let Some(key) = key else {
        return Err(invalid(&ModelError::new(
            "request",
            field,
            "required: an object key (kind, namespace, name)",
        )));
    };
    let kind = kind_from_pb(&key.kind, &format!("{field}.kind"))?;
    let label = || {
        if key.namespace.is_empty() {
            format!("{kind} {}", key.name)
        } else {
            format!("{kind} {}/{}", key.namespace, key.name)
        }
    };
    if key.name.is_empty() {
        return Err(invalid(&ModelError::new(
            label(),
            format!("{field}.name"),
            "required: the object's name",
        )));
    }
    if kind.namespaced() {
        let ns = if key.namespace.is_empty() {
            DEFAULT_NAMESPACE
        } else {
            &key.namespace
        };
        Ok(ObjectKey::namespaced(kind, ns, &key.name))
    } else if !key.namespace.is_empty() {
        Err(invalid(&ModelError::new(
            label(),
            format!("{field}.namespace"),
            format!("{kind} is cluster-scoped: leave the namespace empty"),
        )))
    } else {
        Ok(ObjectKey::cluster(kind, &key.name))
    }
}

pub fn key_to_pb(key: &ObjectKey) -> pb::ObjectKey {
    pb::ObjectKey {
        kind: key.kind.as_str().to_string(),
        namespace: key.namespace.clone().unwrap_or_default(),
        name: key.name.clone(),
    }
}

/// Reads the `index`th object of a batch from its manifest JSON. Errors
/// name the object (and its place in the batch) and the field.
pub fn object_from_pb(index: usize, o: &pb::Object) -> Result<Object, ModelError> {
    let label = format!("objects[{index}]");
    let value: serde_json::Value = serde_json::from_str(&o.json)
        .map_err(|e| ModelError::new(&label, "json", format!("not valid JSON: {e}")))?;
    let object = parse::object_from_value(value, &label)?;
    if let Some(k) = &o.key {
        if !(k.kind.is_empty() && k.namespace.is_empty() && k.name.is_empty()) {
            let given = key_from_pb(Some(k), "key")
                .map_err(|s| ModelError::new(&label, "key", s.message().to_string()))?;
            let actual = object.key();
            if given != actual {
                return Err(ModelError::new(
                    actual.to_string(),
                    "key",
                    format!(
                        "the key names {given} but the manifest describes {actual}; leave the key empty or make them agree"
                    ),
                ));
            }
        }
    }
    Ok(object)
}

/// An object as the API returns it.
pub fn object_to_pb(key: &ObjectKey, object: &Object, revision: u64) -> pb::Object {
    pb::Object {
        key: Some(key_to_pb(key)),
        json: object_json(object),
        revision,
    }
}

pub fn stored_to_pb(so: &StoredObject) -> pb::Object {
    object_to_pb(&so.object.key(), &so.object, so.revision)
}

fn object_json(object: &Object) -> String {
    serde_json::to_string(&object.to_value()).expect("JSON values serialise")
}

/// Every kind the daemon accepts, for `Version`.
pub fn kinds_pb() -> Vec<pb::KindInfo> {
    Kind::ALL
        .iter()
        .map(|k| pb::KindInfo {
            api_version: k.api_version().to_string(),
            kind: k.as_str().to_string(),
            namespaced: k.namespaced(),
        })
        .collect()
}

/// Whether a status came from [`status_of`] refusing a batch (as opposed to
/// a transport problem).
pub fn is_refusal(s: &Status) -> bool {
    s.code() == Code::InvalidArgument
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: &str, ns: &str, name: &str) -> pb::ObjectKey {
        pb::ObjectKey {
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn keys_default_the_namespace_and_refuse_one_on_cluster_kinds() {
        assert_eq!(
            key_from_pb(Some(&key("Service", "", "web")), "key").unwrap(),
            ObjectKey::namespaced(Kind::Service, "default", "web")
        );
        assert_eq!(
            key_from_pb(Some(&key("Route", "", "r")), "key").unwrap(),
            ObjectKey::cluster(Kind::Route, "r")
        );
        let e = key_from_pb(Some(&key("Route", "x", "r")), "keys[0]").unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("keys[0].namespace"), "{}", e.message());
        let e = key_from_pb(Some(&key("Deployment", "", "d")), "key").unwrap_err();
        assert!(e.message().contains("Deployment"), "{}", e.message());
        let e = key_from_pb(Some(&key("Service", "", "")), "key").unwrap_err();
        assert!(e.message().contains("key.name"), "{}", e.message());
    }

    #[test]
    fn objects_name_their_place_in_the_batch() {
        let o = pb::Object {
            key: None,
            json: "{not json".into(),
            revision: 0,
        };
        let e = object_from_pb(3, &o).unwrap_err();
        assert_eq!(e.object, "objects[3]");
        assert_eq!(e.field, "json");
        let o = pb::Object {
            key: Some(key("Service", "default", "other")),
            json: r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"}}"#.into(),
            revision: 0,
        };
        let e = object_from_pb(0, &o).unwrap_err();
        assert_eq!(e.field, "key");
        assert!(e.message.contains("Service default/other"), "{e}");
        let ok = pb::Object { key: None, ..o };
        assert_eq!(
            object_from_pb(0, &ok).unwrap().key().to_string(),
            "Service default/web"
        );
    }

    #[test]
    fn refusals_carry_object_and_field_as_metadata() {
        let s = invalid(&ModelError::new(
            "Service default/web",
            "spec.ports[0].port",
            "bad",
        ));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "Service default/web: spec.ports[0].port: bad");
        assert_eq!(
            s.metadata().get(ERROR_FIELD_METADATA).unwrap(),
            "spec.ports[0].port"
        );
        let s = status_of(&ControlError::Store(StoreError::Compacted {
            requested: 1,
            oldest: 5,
        }));
        assert_eq!(s.code(), Code::OutOfRange);
    }
}
