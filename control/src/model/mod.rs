//! The desired state Sluice is asked to reach: Kubernetes-shaped objects
//! (so real manifests apply) and the appliance's own kinds, how they are read
//! from manifests, how each is validated, and how a batch of changes is checked
//! against the whole state before any of it takes effect.
//!
//! Reads: manifest text (YAML or JSON, several documents) or typed objects
//! built by the API layer. Produces: validated [`Object`]s, a [`DesiredState`]
//! that the compiler turns into tables, and [`ModelError`]s for people that
//! name the object, the field path and what was expected.
//!
//! Kinds and where their types come from:
//!
//! | kind | apiVersion | scope | type |
//! | --- | --- | --- | --- |
//! | Namespace, Pod, Node, Service | `v1` | Namespace and Node cluster, others namespaced | k8s-openapi |
//! | EndpointSlice | `discovery.k8s.io/v1` | namespaced | k8s-openapi |
//! | NetworkPolicy | `networking.k8s.io/v1` | namespaced | k8s-openapi |
//! | AdminNetworkPolicy, BaselineAdminNetworkPolicy | `policy.networking.k8s.io/v1alpha1` | cluster | [`policy_api`] |
//! | ClusterNetworkPolicy | `policy.networking.k8s.io/v1alpha2` | cluster | [`policy_api`] |
//! | Interface, Network, Route, Neighbour, NetworkService, NetworkServiceEndpoint, Chain, MulticastGroup | `sluice.dev/v1` | cluster | [`sluice`] |
//! | Bandwidth | `sluice.dev/v1` | namespaced | [`sluice`] |
//! | NetworkAttachmentDefinition | `k8s.cni.cncf.io/v1` | namespaced | [`multus`] |
//! | MultiNetworkPolicy | `k8s.cni.cncf.io/v1beta1` | namespaced | [`multus`] |
//!
//! Unknown fields are refused everywhere: the appliance's own types use
//! `deny_unknown_fields`, and because k8s-openapi's deserializers skip unknown
//! keys, every parsed document is also re-serialised and its key set compared
//! with the input's (see [`parse`]).

#[macro_use]
mod resource;

pub mod multus;
pub mod names;
pub mod parse;
pub mod policy_api;
pub mod selector;
pub mod sluice;
pub mod state;
pub mod validate;

#[cfg(test)]
mod tests;

use core::fmt;
use std::collections::BTreeMap;
use std::str::FromStr;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use multus::{MultiNetworkPolicy, NetworkAttachmentDefinition};
pub use parse::{parse_documents, parse_manifests};
pub use policy_api::{AdminNetworkPolicy, BaselineAdminNetworkPolicy, ClusterNetworkPolicy};
pub use selector::{LabelSelectorError, Selector};
pub use sluice::{
    Bandwidth, Chain, Interface, MacAddr, MulticastGroup, Neighbour, Network, NetworkService,
    NetworkServiceEndpoint, Route,
};
pub use state::{Change, DesiredState, Plan, StoredObject, Undo};
pub use validate::{validate, NODE_PORT_RANGE};

/// The API group of the appliance's own kinds.
pub const SLUICE_API_VERSION: &str = "sluice.dev/v1";

/// The network every Interface, Route, Neighbour and MulticastGroup is in when
/// it names none. It always exists (the tables builder creates it), so it
/// need not be declared with a Network object.
pub const DEFAULT_NETWORK: &str = "default";

/// The namespace a namespaced object is put in when its manifest names none,
/// as kubectl does.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The label the Kubernetes API server puts on every Namespace; policies
/// select namespaces by it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A refused manifest, object or batch, for people: which object, which field
/// (a path such as `spec.ports[0].port`) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    /// The object, e.g. `Service default/web`, or `document 3` when a
    /// manifest document could not be identified.
    pub object: String,
    /// The path of the offending field; empty when the object as a whole is
    /// refused.
    pub field: String,
    /// What was expected, and what was found.
    pub message: String,
}

impl ModelError {
    pub fn new(
        object: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ModelError {
        ModelError {
            object: object.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.object, self.message)
        } else {
            write!(f, "{}: {}: {}", self.object, self.field, self.message)
        }
    }
}

impl std::error::Error for ModelError {}

macro_rules! kinds {
    ($( $variant:ident => $api:expr, $namespaced:expr; )*) => {
        /// Every kind of object the control plane accepts.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Kind {
            $( $variant, )*
        }

        impl Kind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [Kind] = &[ $( Kind::$variant, )* ];

            /// The kind's name as manifests spell it, e.g. `"Service"`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Kind::$variant => stringify!($variant), )*
                }
            }

            /// The `apiVersion` this kind is read and written with.
            pub fn api_version(self) -> &'static str {
                match self {
                    $( Kind::$variant => $api, )*
                }
            }

            /// Whether objects of this kind live in a namespace.
            pub fn namespaced(self) -> bool {
                match self {
                    $( Kind::$variant => $namespaced, )*
                }
            }
        }

        impl FromStr for Kind {
            type Err = ModelError;

            /// Parses a kind name as manifests spell it (case-sensitive).
            fn from_str(s: &str) -> Result<Kind, ModelError> {
                match s {
                    $( stringify!($variant) => Ok(Kind::$variant), )*
                    _ => Err(ModelError::new(
                        format!("kind {s:?}"),
                        "kind",
                        format!("unsupported kind; expected one of {}", Kind::names()),
                    )),
                }
            }
        }

        /// One object of any supported kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Object {
            $( $variant(Box<$variant>), )*
        }

        impl Object {
            pub fn kind(&self) -> Kind {
                match self {
                    $( Object::$variant(_) => Kind::$variant, )*
                }
            }

            pub fn metadata(&self) -> &ObjectMeta {
                match self {
                    $( Object::$variant(o) => &o.metadata, )*
                }
            }

            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $( Object::$variant(o) => &mut o.metadata, )*
                }
            }

            /// The object as a JSON value, with `apiVersion` and `kind`.
            pub fn to_value(&self) -> serde_json::Value {
                let v = match self {
                    $( Object::$variant(o) => serde_json::to_value(o), )*
                };
                // Every field is a string-keyed map, a string, a number or a
                // list of those, which always serialise.
                v.expect("model objects serialise to JSON")
            }
        }

        impl Object {
            /// Reads a value already known to be of `kind` as that kind's
            /// type; `object` names it in errors.
            pub(crate) fn from_typed_value(
                kind: Kind,
                value: &serde_json::Value,
                object: &str,
            ) -> Result<Object, ModelError> {
                match kind {
                    $( Kind::$variant => Ok(Object::$variant(Box::new(
                        parse::typed::<$variant>(value, object)?,
                    ))), )*
                }
            }
        }

        $(
            impl From<$variant> for Object {
                fn from(o: $variant) -> Object {
                    Object::$variant(Box::new(o))
                }
            }
        )*
    };
}

kinds! {
    Namespace => "v1", false;
    Pod => "v1", true;
    Node => "v1", false;
    Service => "v1", true;
    EndpointSlice => "discovery.k8s.io/v1", true;
    NetworkPolicy => "networking.k8s.io/v1", true;
    AdminNetworkPolicy => "policy.networking.k8s.io/v1alpha1", false;
    BaselineAdminNetworkPolicy => "policy.networking.k8s.io/v1alpha1", false;
    ClusterNetworkPolicy => "policy.networking.k8s.io/v1alpha2", false;
    Interface => SLUICE_API_VERSION, false;
    Network => SLUICE_API_VERSION, false;
    Route => SLUICE_API_VERSION, false;
    Neighbour => SLUICE_API_VERSION, false;
    Bandwidth => SLUICE_API_VERSION, true;
    NetworkService => SLUICE_API_VERSION, false;
    NetworkServiceEndpoint => SLUICE_API_VERSION, false;
    Chain => SLUICE_API_VERSION, false;
    MulticastGroup => SLUICE_API_VERSION, false;
    NetworkAttachmentDefinition => multus::NAD_API_VERSION, true;
    MultiNetworkPolicy => multus::MNP_API_VERSION, true;
}

impl Kind {
    /// The kind for an `apiVersion` and `kind` pair, if supported.
    pub fn from_api(api_version: &str, kind: &str) -> Option<Kind> {
        let k = Kind::from_str(kind).ok()?;
        (k.api_version() == api_version).then_some(k)
    }

    fn names() -> String {
        Kind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one object: cluster-scoped kinds have no namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    /// A key for a cluster-scoped object.
    pub fn cluster(kind: Kind, name: impl Into<String>) -> ObjectKey {
        ObjectKey {
            kind,
            namespace: None,
            name: name.into(),
        }
    }

    /// A key for a namespaced object.
    pub fn namespaced(
        kind: Kind,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> ObjectKey {
        ObjectKey {
            kind,
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }
}

/// `Service default/web`, `Interface eth0`: how errors name objects.
impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl Object {
    /// The object's key. A namespaced object without a namespace gets
    /// [`DEFAULT_NAMESPACE`] here; [`Object::normalize`] writes it in.
    pub fn key(&self) -> ObjectKey {
        let kind = self.kind();
        let meta = self.metadata();
        let namespace = kind.namespaced().then(|| {
            meta.namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
        });
        ObjectKey {
            kind,
            namespace,
            name: meta.name.clone().unwrap_or_default(),
        }
    }

    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }

    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }

    /// The object's labels (empty when it has none).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.metadata().labels.as_ref().unwrap_or(&NO_LABELS)
    }

    /// Fills in what the Kubernetes API server would: the default namespace
    /// for namespaced objects that name none, and a Namespace's
    /// `kubernetes.io/metadata.name` label.
    pub fn normalize(&mut self) {
        let kind = self.kind();
        let meta = self.metadata_mut();
        if kind.namespaced() && meta.namespace.as_deref().is_none_or(str::is_empty) {
            meta.namespace = Some(DEFAULT_NAMESPACE.to_string());
        }
        if kind == Kind::Namespace {
            if let Some(name) = meta.name.clone() {
                meta.labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert(NAMESPACE_NAME_LABEL.to_string(), name);
            }
        }
    }

    /// The object as a YAML document (without a leading `---`).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(&self.to_value()).expect("JSON values serialise to YAML")
    }

    /// The object as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.to_value()).expect("JSON values serialise")
    }

    /// Reads one object from a JSON value (as the API layer receives it),
    /// refusing unknown kinds and unknown fields.
    pub fn from_value(value: serde_json::Value) -> Result<Object, ModelError> {
        parse::object_from_value(value, "object")
    }
}
