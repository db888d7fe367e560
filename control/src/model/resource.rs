//! The envelope shared by the kinds this crate defines itself (the
//! network-policy-api kinds and Sluice's own): `apiVersion`, `kind`,
//! `metadata` (Kubernetes' ObjectMeta), `spec` and, for some, `status`.
//! Serde goes through a private wire struct with `deny_unknown_fields`, so an
//! unknown top-level key is refused and deserialisation errors keep their
//! field path.

/// Defines `$name { metadata, spec [, status] }` with serde that writes and
/// checks `apiVersion` and `kind`.
macro_rules! resource {
    (
        $(#[$doc:meta])*
        $name:ident, api_version: $api:expr, spec: $spec:ty $(, status: $status:ty)?
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct $name {
            pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
            pub spec: $spec,
            $( pub status: Option<$status>, )?
        }

        impl $name {
            pub const KIND: &'static str = stringify!($name);
            pub const API_VERSION: &'static str = $api;
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("apiVersion", Self::API_VERSION)?;
                m.serialize_entry("kind", Self::KIND)?;
                m.serialize_entry("metadata", &self.metadata)?;
                m.serialize_entry("spec", &self.spec)?;
                $(
                    // Names $status so that this block repeats only for kinds
                    // that have a status.
                    let status: Option<&$status> = self.status.as_ref();
                    if let Some(status) = status {
                        m.serialize_entry("status", status)?;
                    }
                )?
                m.end()
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields, rename_all = "camelCase")]
                struct Wire {
                    api_version: String,
                    kind: String,
                    #[serde(default)]
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
                    #[serde(default)]
                    spec: $spec,
                    $(
                        #[serde(default)]
                        status: Option<$status>,
                    )?
                }
                let w = Wire::deserialize(d)?;
                if w.api_version != Self::API_VERSION || w.kind != Self::KIND {
                    return Err(serde::de::Error::custom(format!(
                        "expected apiVersion {} and kind {}, got {} {}",
                        Self::API_VERSION,
                        Self::KIND,
                        w.api_version,
                        w.kind
                    )));
                }
                Ok($name {
                    metadata: w.metadata,
                    spec: w.spec,
                    $( status: { let s: Option<$status> = w.status; s }, )?
                })
            }
        }
    };
}
