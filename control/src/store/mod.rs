//! Durable, revisioned desired state.
//!
//! The store keeps opaque values under string keys, and knows nothing of what
//! they mean: the object model above it chooses the keys and encodes the
//! values. Every [`Store::commit`] applies a batch of puts and deletes as one
//! atomic transaction, gives it the next revision (the previous one plus
//! one), and returns only once the transaction is on stable storage. Each
//! change is also recorded in a history under its revision, so that a
//! `Watch` can stream the changes made after any revision it is given;
//! [`Store::compact_history`] bounds how much of it is kept.
//!
//! # Files
//!
//! One directory holds one file, [`STORE_FILE`] (`state.redb`). A missing file
//! is created — first under a temporary name, renamed into place only once it
//! is fully initialised and synced, so that a crash during the very first
//! start leaves either no store or a complete empty one, never a half-written
//! file that would be mistaken for a damaged one. A file that is present but
//! cannot be read as a Sluice store is reported as [`StoreError::Corrupt`]
//! (or [`StoreError::Version`] for a format this build does not read) and is
//! left exactly as it was: the store never recreates a file that exists.
//! (The one file the store may write to before refusing it is a valid redb
//! database of some other program that was itself not closed cleanly: the
//! engine's crash recovery has to run before its tables can be read.)
//!
//! # Engine: redb
//!
//! The store is built on [redb](https://docs.rs/redb) 4.x, an embedded
//! key-value database written in Rust. Why:
//!
//! * **Crash safety is its design, not an add-on.** Copy-on-write B-trees
//!   with two commit slots: a commit writes new pages, then switches the
//!   slot. A crash leaves the last committed state intact, and recovery
//!   after `kill -9` or power loss is automatic on the next open. The store
//!   commits with [`Durability::Immediate`] (fsync before `commit` returns)
//!   and with two-phase commit (data and slot fsynced, then the switch
//!   fsynced), so recovery never has to decide by checksum which slot is the
//!   last good one: with two-phase commit a primary slot that fails its
//!   checksums is reported as corruption rather than silently rolled back.
//! * **Multi-key ACID transactions.** A batch of changes and its history
//!   records commit together or not at all; readers see snapshots (MVCC), so
//!   a `load()` never sees half a batch.
//! * **Damage is detected, not papered over.** Pages are checksummed. The
//!   store opens with `set_check_integrity_on_open`, which verifies every
//!   page of the committed trees at start-up (the desired state is small —
//!   megabytes — so this costs milliseconds), so a damaged file fails at
//!   start-up with a clear error instead of at some later read. Recent redb
//!   releases fixed several recovery bugs that matter exactly here (a
//!   damaged file opened as an empty one, a crash during recovery rolling
//!   back a commit), which is why 4.6 is the minimum.
//! * **Pure Rust, no dependencies** (only `libc` on Linux): no C/C++
//!   toolchain, quick to build, one file per store, a stable file format,
//!   and an actively maintained project with a changelog that documents its
//!   fixes.
//!
//! Alternatives considered: *sled* has been effectively unmaintained for
//! years, its 0.34 line is a beta with an unstable on-disk format and known
//! recovery issues. *RocksDB* and *SQLite* (via `rusqlite`) are excellent but
//! bring a C/C++ build, and an LSM tree or SQL engine is more machinery than
//! a few megabytes of keyed blobs need. *fjall* (pure-Rust LSM) suits
//! write-heavy workloads, which the control plane is not. A *hand-written
//! WAL* plus snapshot would be small, but it would be ours to get right:
//! torn and reordered writes, checksums, fsync of files and directories,
//! snapshotting and log truncation, and recovery bugs that only a crash
//! finds. redb already solves those and is tested against them, so the store
//! is a thin layer: tables, a revision counter, history, and error mapping.
//!
//! Note: redb 4.6 declares Rust 1.90 as its minimum version.
//!
//! # Layout inside the file
//!
//! * `meta` (`&str → u64`): `format_version` ([`FORMAT_VERSION`], checked at
//!   open), `revision` (of the last commit; 0 for an empty store) and
//!   `history_from` (the oldest revision whose changes are still kept).
//! * `state` (`&str → &[u8]`): the current value of every key.
//! * `history` (`(revision, index in batch) → record`): each change of each
//!   commit, in order; see `codec` for the record layout.
//!
//! # Concurrency
//!
//! A [`Store`] is `Send + Sync`. Commits are serialised by the engine (one
//! write transaction at a time); reads run in parallel with them and see the
//! last commit that had completed when they started. Only one process may
//! have a store open ([`StoreError::Locked`] otherwise).
//!
//! After a failed commit (an I/O error, say) the engine may refuse further
//! writes until the store is reopened; the daemon treats a failed commit as
//! fatal for its store and restarts, which recovers the file.

mod codec;
mod error;
#[cfg(test)]
mod tests;

pub use error::StoreError;

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableError, TableHandle, WriteTransaction,
};
use std::fs;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The name of the store file inside the store directory.
pub const STORE_FILE: &str = "state.redb";
/// Where a new store is built before it is renamed to [`STORE_FILE`].
const INIT_FILE: &str = "state.redb.init";
/// The version of the layout described in the module documentation. A store
/// whose `format_version` differs is refused with [`StoreError::Version`].
pub const FORMAT_VERSION: u64 = 1;
/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 64 * 1024;
/// The engine's page cache limit (it is filled lazily).
const CACHE_BYTES: usize = 64 * 1024 * 1024;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
const HISTORY: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("history");

const META_FORMAT: &str = "format_version";
const META_REVISION: &str = "revision";
const META_HISTORY_FROM: &str = "history_from";

/// One change of a batch: set `key` to the value, or delete it (`None`).
pub type Change = (String, Option<Vec<u8>>);

/// The whole state at one revision: `(revision, [(key, value)])`, in key order.
pub type Snapshot = (u64, Vec<(String, Vec<u8>)>);

/// One recorded change: at `revision`, `key` was set to `value`, or deleted
/// when `value` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub revision: u64,
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// A durable, revisioned key-value store in one directory.
pub struct Store {
    db: Database,
    path: PathBuf,
    /// The revision of the last commit, kept here so that `revision()`
    /// needs no transaction.
    revision: AtomicU64,
    /// Test hook: fail a commit just before applying the change at this
    /// index of its batch.
    #[cfg(test)]
    fail_at: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("revision", &self.revision())
            .finish()
    }
}

impl Store {
    /// Opens the store in `dir`, creating the directory and an empty store
    /// (revision 0) if there is none.
    ///
    /// An existing store file is opened and, if the last process using it was
    /// killed, recovered to its last completed commit; all its pages are then
    /// verified. A file that cannot be read as a Sluice store is reported as
    /// [`StoreError::Corrupt`] or [`StoreError::Version`] and left untouched.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(STORE_FILE);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                return Err(StoreError::Corrupt {
                    path,
                    detail: "it is not a regular file".to_owned(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => initialise(dir, &path)?,
            Err(source) => {
                return Err(StoreError::Io {
                    path,
                    op: "inspect",
                    source,
                })
            }
        }
        // The engine is meant to report damage as errors; should some damage
        // still make it panic, that is reported as corruption too rather than
        // taking the daemon down with an unexplained panic.
        match panic::catch_unwind(AssertUnwindSafe(|| Store::open_existing(&path))) {
            Ok(result) => result,
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                Err(StoreError::Corrupt {
                    path,
                    detail: format!("the storage engine failed while reading it: {msg}"),
                })
            }
        }
    }

    fn open_existing(path: &Path) -> Result<Store, StoreError> {
        // First a read-only look, which cannot modify the file, so that a
        // valid database that is not a Sluice store, or is one of another
        // format version, is refused as it was found. A file left by a
        // process that was killed needs recovery, which only the writable
        // open below does; its records are checked after it. So is a file
        // the read-only look could not make sense of: the writable open
        // verifies every page of the committed trees before it commits
        // anything, and reports the damage more precisely. (Should the
        // look panic, the panic hook has already printed its message; the
        // result is still a clean error.)
        let look = panic::catch_unwind(AssertUnwindSafe(|| builder().open_read_only(path)));
        match look {
            Ok(Ok(db)) => {
                let checked = panic::catch_unwind(AssertUnwindSafe(|| check_records(path, &db)));
                match checked {
                    Ok(Ok(_)) => db
                        .close()
                        .map_err(|e| StoreError::engine(path, "open", e))?,
                    Ok(Err(e)) => return Err(e),
                    Err(_) => drop(db),
                }
            }
            Ok(Err(redb::DatabaseError::RepairAborted)) | Err(_) => {}
            Ok(Err(e)) => return Err(StoreError::engine(path, "open", e)),
        }
        let db = builder()
            .open(path)
            .map_err(|e| StoreError::engine(path, "open", e))?;
        let revision = check_records(path, &db)?;
        Ok(Store {
            db,
            path: path.to_path_buf(),
            revision: AtomicU64::new(revision),
            #[cfg(test)]
            fail_at: std::sync::atomic::AtomicUsize::new(usize::MAX),
        })
    }

    /// The path of the store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The revision of the last commit (0 for a store never committed to).
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::SeqCst)
    }

    /// Applies `changes` in order — `Some(value)` sets the key, `None`
    /// deletes it (deleting an absent key is not an error) — as one atomic
    /// transaction under the next revision, which it returns once the
    /// transaction is durable. A later change to a key in the same batch
    /// wins. Every change is recorded in history as given.
    ///
    /// On error nothing of the batch is applied and the revision does not
    /// advance. An empty batch commits nothing and returns the current
    /// revision.
    pub fn commit(&self, changes: &[Change]) -> Result<u64, StoreError> {
        if changes.is_empty() {
            return Ok(self.revision());
        }
        if u32::try_from(changes.len()).is_err() {
            return Err(self.failed("commit", "a batch holds at most 2^32 - 1 changes"));
        }
        let txn = self.begin_write("commit")?;
        let revision = match self.apply(&txn, changes) {
            Ok(revision) => revision,
            Err(e) => {
                // Nothing was written to the file; dropping would abort too.
                let _ = txn.abort();
                return Err(e);
            }
        };
        txn.commit()
            .map_err(|e| StoreError::engine(&self.path, "commit", e))?;
        self.revision.fetch_max(revision, Ordering::SeqCst);
        Ok(revision)
    }

    fn apply(&self, txn: &WriteTransaction, changes: &[Change]) -> Result<u64, StoreError> {
        let op = "commit";
        let e = |err: redb::Error| StoreError::engine(&self.path, op, err);
        let mut meta = txn.open_table(META).map_err(|x| e(x.into()))?;
        let previous = match meta.get(META_REVISION).map_err(|x| e(x.into()))? {
            Some(v) => v.value(),
            None => return Err(self.corrupt("the revision record is missing".to_owned())),
        };
        let revision = previous
            .checked_add(1)
            .ok_or_else(|| self.failed(op, "the revision counter is exhausted"))?;
        let mut state = txn.open_table(STATE).map_err(|x| e(x.into()))?;
        let mut history = txn.open_table(HISTORY).map_err(|x| e(x.into()))?;
        let mut record = Vec::new();
        for (index, (key, value)) in changes.iter().enumerate() {
            // Checked here, inside the transaction, rather than up front:
            // a bad key half-way through must (and does) discard the
            // changes already applied before it.
            check_key(key)?;
            #[cfg(test)]
            if index == self.fail_at.load(Ordering::SeqCst) {
                return Err(self.failed(op, "injected failure"));
            }
            match value {
                Some(value) => {
                    state
                        .insert(key.as_str(), value.as_slice())
                        .map_err(|x| e(x.into()))?;
                }
                None => {
                    state.remove(key.as_str()).map_err(|x| e(x.into()))?;
                }
            }
            codec::encode(&mut record, key, value.as_deref());
            // `index` fits: the batch length was checked against u32.
            history
                .insert((revision, index as u32), record.as_slice())
                .map_err(|x| e(x.into()))?;
        }
        meta.insert(META_REVISION, revision)
            .map_err(|x| e(x.into()))?;
        Ok(revision)
    }

    /// The current state: its revision and every key with its value, in key
    /// order (bytewise), read from one consistent snapshot.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let op = "load";
        let txn = self.begin_read(op)?;
        let meta = self.open_read_table(&txn, META, op)?;
        let revision = self.meta_value(&meta, META_REVISION)?;
        let state = self.open_read_table(&txn, STATE, op)?;
        let e = |err: redb::StorageError| StoreError::engine(&self.path, op, err);
        let mut out = Vec::with_capacity(usize::try_from(state.len().map_err(e)?).unwrap_or(0));
        for item in state.iter().map_err(e)? {
            let (key, value) = item.map_err(e)?;
            out.push((key.value().to_owned(), value.value().to_vec()));
        }
        Ok((revision, out))
    }

    /// The current value of one key.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let op = "read";
        let txn = self.begin_read(op)?;
        let state = self.open_read_table(&txn, STATE, op)?;
        let value = state
            .get(key)
            .map_err(|e| StoreError::engine(&self.path, op, e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Every change made after revision `rev` (revisions `rev + 1` up to the
    /// current one), ordered by revision and, within a revision, as the
    /// batch listed them. A `rev` at or past the current revision gives an
    /// empty list. [`StoreError::Compacted`] if some of those changes have
    /// been compacted away (`rev` < [`Store::history_oldest`]).
    pub fn history_since(&self, rev: u64) -> Result<Vec<HistoryEntry>, StoreError> {
        let op = "read history";
        let txn = self.begin_read(op)?;
        let meta = self.open_read_table(&txn, META, op)?;
        let history_from = self.meta_value(&meta, META_HISTORY_FROM)?;
        let oldest = history_from.saturating_sub(1);
        if rev < oldest {
            return Err(StoreError::Compacted {
                requested: rev,
                oldest,
            });
        }
        let Some(start) = rev.checked_add(1) else {
            return Ok(Vec::new());
        };
        let history = self.open_read_table(&txn, HISTORY, op)?;
        let e = |err: redb::StorageError| StoreError::engine(&self.path, op, err);
        let mut out = Vec::new();
        for item in history.range((start, 0u32)..).map_err(e)? {
            let (id, record) = item.map_err(e)?;
            let (revision, _) = id.value();
            let (key, value) = codec::decode(record.value())
                .map_err(|detail| self.corrupt(format!("revision {revision}: {detail}")))?;
            out.push(HistoryEntry {
                revision,
                key,
                value,
            });
        }
        Ok(out)
    }

    /// The oldest revision history can be read from: `history_since(rev)`
    /// succeeds for every `rev` at or after it. 0 until history is compacted.
    pub fn history_oldest(&self) -> Result<u64, StoreError> {
        let txn = self.begin_read("read history")?;
        let meta = self.open_read_table(&txn, META, "read history")?;
        Ok(self.meta_value(&meta, META_HISTORY_FROM)?.saturating_sub(1))
    }

    /// Drops the history of revisions before `keep_from`, so that the
    /// changes of `keep_from` and later are kept and
    /// [`Store::history_oldest`] becomes `keep_from - 1`. `keep_from` is
    /// capped at the current revision + 1 (dropping all history), and
    /// compaction never goes backwards: asking to keep more than is kept
    /// does nothing. Returns how many history records were dropped. The
    /// current state and revision are not affected.
    pub fn compact_history(&self, keep_from: u64) -> Result<u64, StoreError> {
        let op = "compact history";
        let e = |err: redb::Error| StoreError::engine(&self.path, op, err);
        let txn = self.begin_write(op)?;
        let removed = {
            let mut meta = txn.open_table(META).map_err(|x| e(x.into()))?;
            let read = |name| -> Result<u64, StoreError> {
                match meta.get(name).map_err(|x| e(x.into()))? {
                    Some(v) => Ok(v.value()),
                    None => Err(self.corrupt(format!("the {name} record is missing"))),
                }
            };
            let revision = read(META_REVISION)?;
            let history_from = read(META_HISTORY_FROM)?;
            let new_from = keep_from.min(revision.saturating_add(1));
            if new_from <= history_from {
                0
            } else {
                let mut history = txn.open_table(HISTORY).map_err(|x| e(x.into()))?;
                let before = history.len().map_err(|x| e(x.into()))?;
                history
                    .retain_in(..(new_from, 0u32), |_, _| false)
                    .map_err(|x| e(x.into()))?;
                let after = history.len().map_err(|x| e(x.into()))?;
                meta.insert(META_HISTORY_FROM, new_from)
                    .map_err(|x| e(x.into()))?;
                before - after
            }
        };
        txn.commit().map_err(|x| e(x.into()))?;
        Ok(removed)
    }

    /// Closes the store, reporting any error the engine meets while doing so
    /// (dropping a `Store` closes it too, ignoring errors).
    pub fn close(self) -> Result<(), StoreError> {
        self.db
            .close()
            .map_err(|e| StoreError::engine(&self.path, "close", e))
    }

    #[cfg(test)]
    fn fail_at(&self, index: usize) {
        self.fail_at.store(index, Ordering::SeqCst);
    }

    fn begin_read(&self, op: &'static str) -> Result<ReadTransaction, StoreError> {
        self.db
            .begin_read()
            .map_err(|e| StoreError::engine(&self.path, op, e))
    }

    fn begin_write(&self, op: &'static str) -> Result<WriteTransaction, StoreError> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| StoreError::engine(&self.path, op, e))?;
        durable(&mut txn).map_err(|e| StoreError::engine(&self.path, op, e))?;
        Ok(txn)
    }

    fn open_read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        txn: &ReadTransaction,
        table: TableDefinition<K, V>,
        op: &'static str,
    ) -> Result<redb::ReadOnlyTable<K, V>, StoreError> {
        open_read_table(&self.path, txn, table, op)
    }

    fn meta_value(
        &self,
        meta: &redb::ReadOnlyTable<&str, u64>,
        name: &str,
    ) -> Result<u64, StoreError> {
        meta_value(&self.path, meta, name)
    }

    fn corrupt(&self, detail: String) -> StoreError {
        corrupt(&self.path, detail)
    }

    fn failed(&self, op: &'static str, detail: &str) -> StoreError {
        StoreError::Failed {
            path: self.path.clone(),
            op,
            detail: detail.to_owned(),
        }
    }
}

/// Checks the store's own records in the database at `path`: that it is a
/// Sluice store, of this format version, consistent. Returns its revision.
fn check_records(path: &Path, db: &impl ReadableDatabase) -> Result<u64, StoreError> {
    let op = "open";
    let txn = db
        .begin_read()
        .map_err(|e| StoreError::engine(path, op, e))?;
    let meta = open_read_table(path, &txn, META, op)?;
    let version = meta_value(path, &meta, META_FORMAT)?;
    if version != FORMAT_VERSION {
        return Err(StoreError::Version {
            path: path.to_path_buf(),
            detail: format!(
                "it is store format version {version}, and this build reads version {FORMAT_VERSION}"
            ),
        });
    }
    let revision = meta_value(path, &meta, META_REVISION)?;
    let history_from = meta_value(path, &meta, META_HISTORY_FROM)?;
    if history_from == 0 || history_from > revision.saturating_add(1) {
        return Err(corrupt(
            path,
            format!("history starts at revision {history_from}, but the store is at revision {revision}"),
        ));
    }
    open_read_table(path, &txn, STATE, op)?;
    open_read_table(path, &txn, HISTORY, op)?;
    Ok(revision)
}

fn open_read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    path: &Path,
    txn: &ReadTransaction,
    table: TableDefinition<K, V>,
    op: &'static str,
) -> Result<redb::ReadOnlyTable<K, V>, StoreError> {
    txn.open_table(table).map_err(|e| match e {
        TableError::TableDoesNotExist(name) => {
            corrupt(path, format!("it has no {name} table: not a Sluice store"))
        }
        TableError::TableTypeMismatch { .. } | TableError::TypeDefinitionChanged { .. } => corrupt(
            path,
            format!(
                "its {} table does not have the expected layout ({e})",
                table.name()
            ),
        ),
        other => StoreError::engine(path, op, other),
    })
}

fn meta_value(
    path: &Path,
    meta: &redb::ReadOnlyTable<&str, u64>,
    name: &str,
) -> Result<u64, StoreError> {
    match meta
        .get(name)
        .map_err(|e| StoreError::engine(path, "read", e))?
    {
        Some(v) => Ok(v.value()),
        None => Err(corrupt(path, format!("the {name} record is missing"))),
    }
}

fn corrupt(path: &Path, detail: String) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        detail,
    }
}

fn builder() -> redb::Builder {
    let mut builder = redb::Builder::new();
    builder
        .set_cache_size(CACHE_BYTES)
        .set_check_integrity_on_open(true);
    builder
}

/// Every write of the store is fsynced before its commit returns, in two
/// phases (see the module documentation).
fn durable(txn: &mut WriteTransaction) -> Result<(), redb::SetDurabilityError> {
    txn.set_durability(Durability::Immediate)?;
    txn.set_two_phase_commit(true);
    Ok(())
}

fn check_key(key: &str) -> Result<(), StoreError> {
    let reason = if key.is_empty() {
        "keys must not be empty"
    } else if key.len() > MAX_KEY_LEN {
        "keys are at most 64 KiB"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidKey {
        key: key.to_owned(),
        reason,
    })
}

/// Creates an empty store at `path` (in `dir`): built under a temporary
/// name, synced, then renamed into place and the directory synced, so that
/// `path` only ever names a complete store.
fn initialise(dir: &Path, path: &Path) -> Result<(), StoreError> {
    let io_err = |path: &Path, op, source| StoreError::Io {
        path: path.to_path_buf(),
        op,
        source,
    };
    let created_dir = !dir.exists();
    fs::create_dir_all(dir).map_err(|e| io_err(dir, "create the directory of", e))?;
    let init = dir.join(INIT_FILE);
    // A leftover from a start that died while initialising: it never held
    // an acknowledged commit.
    match fs::remove_file(&init) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&init, "remove", e)),
    }
    {
        let e = |err: redb::Error| StoreError::engine(&init, "initialise", err);
        let db = builder().create(&init).map_err(|x| e(x.into()))?;
        let mut txn = db.begin_write().map_err(|x| e(x.into()))?;
        durable(&mut txn).map_err(|x| e(x.into()))?;
        {
            let mut meta = txn.open_table(META).map_err(|x| e(x.into()))?;
            meta.insert(META_FORMAT, FORMAT_VERSION)
                .map_err(|x| e(x.into()))?;
            meta.insert(META_REVISION, 0).map_err(|x| e(x.into()))?;
            meta.insert(META_HISTORY_FROM, 1).map_err(|x| e(x.into()))?;
            txn.open_table(STATE).map_err(|x| e(x.into()))?;
            txn.open_table(HISTORY).map_err(|x| e(x.into()))?;
        }
        txn.commit().map_err(|x| e(x.into()))?;
        db.close().map_err(|x| e(x.into()))?;
    }
    fs::rename(&init, path).map_err(|e| io_err(path, "create", e))?;
    sync_dir(dir).map_err(|e| io_err(path, "sync the directory of", e))?;
    if created_dir {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent).map_err(|e| io_err(path, "sync the directory of", e))?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}
