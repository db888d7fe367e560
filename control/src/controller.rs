//! The controller: where a batch of changes becomes tables in the workers.
//!
//! `apply` does, under one lock (batches are serialised):
//! 1. check the batch against the whole desired state (validation, conflicts,
//!    references) — any problem refuses it whole;
//! 2. commit it to the in-memory state, keeping what it takes to undo it,
//!    and prepare the compile of what it changed (see [`Compiler`]) — a
//!    state that cannot be compiled on this node is refused the same way,
//!    and the state is put back;
//! 3. with `dry_run`, put the state back and report the revision it would
//!    get;
//! 4. write the batch to the store as one durable transaction (the revision
//!    is acknowledged only after this);
//! 5. install the prepared compile, publish the new table generation to the
//!    workers and tell watchers.
//!
//! The state is never cloned and the compiler only recompiles what the
//! batch touched, so a one-object change costs in proportion to that
//! object, not to the state (100k Services and their slices).
//!
//! On start, `open` reads the store, rebuilds the desired state, compiles it,
//! and only then hands the tables to the caller, so a restarted daemon
//! forwards with the same tables it had before.

use crate::compile::{CompileError, Compiler, NodeContext};
use crate::model::{Change, DesiredState, Kind, ModelError, Object, ObjectKey, StoredObject};
use crate::store::{Store, StoreError};
use core::fmt;
use sluice_dataplane::stats::StatsSnapshot;
use sluice_dataplane::tables::cell::TableCell;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why a request was refused.
#[derive(Debug)]
pub enum ControlError {
    /// The batch is invalid or conflicts with the state (gRPC InvalidArgument).
    Invalid(ModelError),
    /// The state the batch would produce cannot run on this node.
    Compile(CompileError),
    /// The store failed; nothing was applied.
    Store(StoreError),
    /// A stored object could not be read back (at start-up).
    CorruptObject { key: String, detail: String },
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Invalid(e) => e.fmt(f),
            ControlError::Compile(e) => e.fmt(f),
            ControlError::Store(e) => e.fmt(f),
            ControlError::CorruptObject { key, detail } => {
                write!(f, "stored object {key} cannot be read: {detail}")
            }
        }
    }
}

impl std::error::Error for ControlError {}

impl From<ModelError> for ControlError {
    fn from(e: ModelError) -> Self {
        ControlError::Invalid(e)
    }
}

impl From<CompileError> for ControlError {
    fn from(e: CompileError) -> Self {
        ControlError::Compile(e)
    }
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        ControlError::Store(e)
    }
}

/// What an accepted batch got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The revision of the desired state after the batch (for a dry run,
    /// the revision it would get).
    pub revision: u64,
    /// The table generation published for it (0 for a dry run).
    pub generation: u64,
}

/// One change as a watcher sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    pub revision: u64,
    pub key: ObjectKey,
    /// The object after the change; `None` when it was deleted.
    pub object: Option<Object>,
    /// The change created the object (it did not exist before the batch).
    pub created: bool,
}

/// Reads the workers' counters for the API.
pub type StatsSource = Box<dyn Fn() -> StatsSnapshot + Send + Sync>;

struct Inner {
    desired: DesiredState,
    store: Store,
    compiler: Compiler,
}

pub struct Controller {
    inner: Mutex<Inner>,
    tables: Arc<TableCell>,
    ctx: NodeContext,
    revision_tx: tokio::sync::watch::Sender<u64>,
    stats: Mutex<Option<StatsSource>>,
}

/// The store's value for an object: the object and its revision.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    revision: u64,
    object: serde_json::Value,
    /// The change that wrote this record created the object; watchers
    /// report it as added rather than modified. (Absent in records written
    /// before it existed, which read as modifications.)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    created: bool,
}

/// The store key of an object: its display form, `Kind ns/name` or
/// `Kind name`, which [`parse_store_key`] reverses.
fn store_key(key: &ObjectKey) -> String {
    key.to_string()
}

fn parse_store_key(key: &str) -> Option<ObjectKey> {
    let (kind, rest) = key.split_once(' ')?;
    let kind: Kind = kind.parse().ok()?;
    if kind.namespaced() {
        let (ns, name) = rest.split_once('/')?;
        Some(ObjectKey::namespaced(kind, ns, name))
    } else {
        Some(ObjectKey::cluster(kind, rest))
    }
}

fn corrupt(key: &str, detail: String) -> ControlError {
    ControlError::CorruptObject {
        key: key.to_string(),
        detail,
    }
}

fn decode_record(key: &str, bytes: &[u8]) -> Result<(Object, Record), ControlError> {
    let mut rec: Record = serde_json::from_slice(bytes).map_err(|e| corrupt(key, e.to_string()))?;
    let value = std::mem::take(&mut rec.object);
    let object = Object::from_value(value).map_err(|e| corrupt(key, e.to_string()))?;
    Ok((object, rec))
}

fn decode(key: &str, bytes: &[u8]) -> Result<(Object, u64), ControlError> {
    decode_record(key, bytes).map(|(object, rec)| (object, rec.revision))
}

impl Controller {
    /// Opens the store in `state_dir`, rebuilds the desired state and
    /// compiles it for this node. The returned controller's
    /// [`tables`](Controller::tables) cell holds the first generation;
    /// start the workers on it.
    pub fn open(state_dir: &Path, ctx: NodeContext) -> Result<Controller, ControlError> {
        let store = Store::open(state_dir)?;
        let (revision, records) = store.load()?;
        let mut objects = Vec::with_capacity(records.len());
        for (key, bytes) in &records {
            objects.push(decode(key, bytes)?);
        }
        let desired = DesiredState::restore(revision, objects)?;
        let (compiler, tables) = Compiler::new(&desired, ctx.clone())?;
        let (revision_tx, _) = tokio::sync::watch::channel(revision);
        Ok(Controller {
            inner: Mutex::new(Inner {
                desired,
                store,
                compiler,
            }),
            tables: TableCell::new(tables),
            ctx,
            revision_tx,
            stats: Mutex::new(None),
        })
    }

    /// The cell the workers read their tables from.
    pub fn tables(&self) -> &Arc<TableCell> {
        &self.tables
    }

    /// Where the API reads worker counters from.
    pub fn set_stats_source(&self, source: StatsSource) {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    pub fn node(&self) -> &NodeContext {
        &self.ctx
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a batch: all of it or none of it. See the module docs.
    pub fn apply(&self, batch: Vec<Change>, dry_run: bool) -> Result<Applied, ControlError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let plan = inner.desired.check_batch(&batch)?;
        let keys: Vec<ObjectKey> = batch.iter().map(Change::key).collect();
        let created: Vec<bool> = keys
            .iter()
            .map(|k| inner.desired.get(k).is_none())
            .collect();
        let (revision, undo) = inner.desired.commit_undoable(plan);
        let prepared = match inner.compiler.prepare(&inner.desired, &keys) {
            Ok(p) => p,
            Err(e) => {
                inner.desired.undo(undo);
                return Err(e.into());
            }
        };
        if dry_run {
            inner.desired.undo(undo);
            return Ok(Applied {
                revision,
                generation: 0,
            });
        }
        let mut changes = Vec::with_capacity(batch.len());
        for (key, created) in keys.iter().zip(created) {
            let value = inner.desired.get(key).map(|so| {
                serde_json::to_vec(&Record {
                    revision: so.revision,
                    object: so.object.to_value(),
                    created,
                })
                .expect("objects serialise")
            });
            changes.push((store_key(key), value));
        }
        let stored = match inner.store.commit(&changes) {
            Ok(r) => r,
            Err(e) => {
                inner.desired.undo(undo);
                return Err(e.into());
            }
        };
        debug_assert_eq!(
            stored, revision,
            "the store and the desired state agree on revisions"
        );
        let tables = inner.compiler.apply(prepared);
        let generation = self.tables.publish(tables);
        drop(guard);
        self.revision_tx.send_replace(revision);
        Ok(Applied {
            revision,
            generation,
        })
    }

    /// Waits until every worker runs `generation` (or newer); `false` on
    /// timeout. Once it returns `true` the generation is acknowledged: every
    /// packet a worker receives from then on is forwarded by it or a newer
    /// one (see `sluice_dataplane::tables::cell`).
    pub fn wait_for_workers(&self, generation: u64, timeout: Duration) -> bool {
        self.tables.wait_for(generation, timeout)
    }

    pub fn revision(&self) -> u64 {
        self.lock().desired.revision()
    }

    pub fn get(&self, key: &ObjectKey) -> Option<StoredObject> {
        self.lock().desired.get(key).cloned()
    }

    /// Objects of `kind`, optionally in one namespace and matching a label
    /// selector (Kubernetes syntax).
    pub fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Vec<StoredObject>, ControlError> {
        let inner = self.lock();
        Ok(inner
            .desired
            .list(kind, namespace, selector)?
            .into_iter()
            .cloned()
            .collect())
    }

    /// Changes after `revision`, in order. Fails if history before it was
    /// compacted.
    pub fn changes_since(&self, revision: u64) -> Result<Vec<WatchEvent>, ControlError> {
        let inner = self.lock();
        let mut out = Vec::new();
        for h in inner.store.history_since(revision)? {
            let key = parse_store_key(&h.key)
                .ok_or_else(|| corrupt(&h.key, "the key names no object".to_string()))?;
            let (object, created) = match &h.value {
                Some(bytes) => {
                    let (object, rec) = decode_record(&h.key, bytes)?;
                    (Some(object), rec.created)
                }
                None => (None, false),
            };
            out.push(WatchEvent {
                revision: h.revision,
                key,
                object,
                created,
            });
        }
        Ok(out)
    }

    /// A receiver that changes whenever a batch is accepted (its value is
    /// the new revision); watchers then read [`changes_since`](Self::changes_since).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revision_tx.subscribe()
    }

    /// The workers' counters summed, if a stats source is attached.
    pub fn stats(&self) -> Option<StatsSnapshot> {
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|f| f())
    }

    /// The newest published generation and the oldest any worker runs.
    pub fn generations(&self) -> (u64, u64) {
        (self.tables.generation(), self.tables.oldest_running())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::PortDecl;
    use crate::model::parse_manifests;

    fn ctx() -> NodeContext {
        NodeContext {
            ports: vec![
                PortDecl {
                    name: "p0".into(),
                    backend: "mem:p0".into(),
                },
                PortDecl {
                    name: "p1".into(),
                    backend: "mem:p1".into(),
                },
            ],
            ..Default::default()
        }
    }

    fn batch(yaml: &str) -> Vec<Change> {
        parse_manifests(yaml)
            .unwrap()
            .into_iter()
            .map(Change::Apply)
            .collect()
    }

    const IFACES: &str = r#"
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: p0}
spec: {backend: "mem:p0", mac: "02:00:00:00:00:01", addresses: ["10.0.0.1/24"]}
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: p1}
spec: {backend: "mem:p1", mac: "02:00:00:00:00:02", addresses: ["10.0.1.1/24"]}
"#;

    const ROUTE: &str = r#"
apiVersion: sluice.dev/v1
kind: Route
metadata: {name: to-20}
spec: {destination: 20.0.0.0/8, nextHops: [{gateway: 10.0.1.254}]}
"#;

    #[test]
    fn apply_persists_publishes_and_survives_reopen() {
        let dir = tempdir();
        {
            let c = Controller::open(&dir, ctx()).unwrap();
            assert_eq!(c.revision(), 0);
            let a = c.apply(batch(IFACES), false).unwrap();
            assert_eq!(a.revision, 1);
            assert_eq!(a.generation, 2);
            let b = c.apply(batch(ROUTE), false).unwrap();
            assert_eq!((b.revision, b.generation), (2, 3));
            let t = c.tables().load();
            assert!(t.networks[0].fib4.lookup(0x1400_0001).is_some());
        }
        let c = Controller::open(&dir, ctx()).unwrap();
        assert_eq!(c.revision(), 2);
        let t = c.tables().load();
        assert!(
            t.networks[0].fib4.lookup(0x1400_0001).is_some(),
            "the route is back after a restart"
        );
        assert_eq!(c.list(Kind::Interface, None, None).unwrap().len(), 2);
        let events = c.changes_since(0).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[2].revision, 2);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn refused_batches_change_nothing() {
        let dir = tempdir();
        let c = Controller::open(&dir, ctx()).unwrap();
        c.apply(batch(IFACES), false).unwrap();
        let gen = c.tables().generation();
        // A route through a gateway no interface reaches: refused by the
        // compiler, so neither the store nor the tables move.
        let bad = ROUTE.replace("10.0.1.254", "192.168.7.7");
        let e = c.apply(batch(&bad), false).unwrap_err();
        assert!(matches!(e, ControlError::Compile(_)), "{e}");
        assert!(e.to_string().contains("spec.nextHops[0].gateway"), "{e}");
        assert!(e.to_string().starts_with("Route to-20: "), "{e}");
        assert_eq!(c.revision(), 1);
        assert_eq!(c.tables().generation(), gen);
        assert_eq!(c.changes_since(1).unwrap().len(), 0);
        // Dry runs report the revision they would get and change nothing.
        let d = c.apply(batch(ROUTE), true).unwrap();
        assert_eq!((d.revision, d.generation), (2, 0));
        assert_eq!(c.revision(), 1);
        assert!(c.tables().load().networks[0]
            .fib4
            .lookup(0x1400_0001)
            .is_none());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn watch_events_say_whether_a_change_created_the_object() {
        let dir = tempdir();
        let c = Controller::open(&dir, ctx()).unwrap();
        c.apply(batch(IFACES), false).unwrap();
        c.apply(batch(ROUTE), false).unwrap();
        c.apply(batch(&ROUTE.replace("10.0.1.254", "10.0.1.253")), false)
            .unwrap();
        let key = ObjectKey::cluster(Kind::Route, "to-20");
        c.apply(vec![Change::Delete(key.clone())], false).unwrap();
        let events = c.changes_since(1).unwrap();
        let seen: Vec<_> = events
            .iter()
            .map(|e| (e.revision, e.key.clone(), e.object.is_some(), e.created))
            .collect();
        assert_eq!(
            seen,
            vec![
                (2, key.clone(), true, true),
                (3, key.clone(), true, false),
                (4, key, false, false),
            ]
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.1.0.1]}]
"#;

    #[test]
    fn service_changes_reuse_the_routing_tables() {
        let dir = tempdir();
        let c = Controller::open(&dir, ctx()).unwrap();
        c.apply(batch(IFACES), false).unwrap();
        let before = c.tables().load();
        c.apply(batch(WEB), false).unwrap();
        let after = c.tables().load();
        assert!(Arc::ptr_eq(
            &before.networks[0].fib4,
            &after.networks[0].fib4
        ));
        assert_eq!(after.services.by_addr.len(), 1);
        // One changed slice: the routing tables are the same, and the
        // service table shares every shard but the few it changed.
        let moved = WEB.replace("10.1.0.1]", "10.1.0.2]");
        let a = c.apply(batch(&moved), false).unwrap();
        let next = c.tables().load();
        assert!(Arc::ptr_eq(&after.networks[0].fib4, &next.networks[0].fib4));
        assert!(next.services.by_addr.shared_shards(&after.services.by_addr) >= 255);
        let e: Vec<_> = next
            .services
            .endpoints
            .iter()
            .map(|(k, _)| k.addr)
            .collect();
        assert_eq!(e, vec![0x0a01_0002]);
        // A refused or dry-run change leaves the state and the compiler
        // as they were.
        let d = c.apply(batch(WEB), true).unwrap();
        assert_eq!(d.revision, a.revision + 1);
        assert_eq!(c.revision(), a.revision);
        let e: Vec<_> = c
            .tables()
            .load()
            .services
            .endpoints
            .iter()
            .map(|(k, _)| k.addr)
            .collect();
        assert_eq!(e, vec![0x0a01_0002]);
        let key = ObjectKey::namespaced(Kind::EndpointSlice, "shop", "web-1");
        assert!(c.get(&key).unwrap().object.to_json().contains("10.1.0.2"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn store_keys_read_back() {
        for key in [
            ObjectKey::cluster(Kind::Route, "to-20"),
            ObjectKey::namespaced(Kind::Service, "shop", "web"),
        ] {
            assert_eq!(parse_store_key(&store_key(&key)), Some(key));
        }
        assert_eq!(parse_store_key("Bogus x"), None);
        assert_eq!(parse_store_key("Service web"), None);
    }

    fn tempdir() -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "sluice-controller-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
