//! The store's errors. Every variant that concerns the file names it, so a
//! start-up failure can be printed as it is and tells the operator which file
//! to look at.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a store operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The store file exists but does not hold a readable Sluice store: not
    /// a database at all, damaged pages or commit records, missing records.
    /// The file is left as it was found; it is never recreated over.
    Corrupt { path: PathBuf, detail: String },
    /// The store file was written in a format this build does not read
    /// (a newer Sluice, or an older storage-engine file format).
    Version { path: PathBuf, detail: String },
    /// Another process (or another `Store` in this one) has the file open.
    Locked { path: PathBuf },
    /// The operating system refused an operation on the store's files.
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// `history_since(requested)` asked for changes that compaction has
    /// dropped. `oldest` is the oldest revision history can still be read
    /// from: `history_since(rev)` works for every `rev >= oldest`. The caller
    /// reads the full state with `load()` and follows history from its
    /// revision.
    Compacted { requested: u64, oldest: u64 },
    /// A key of a commit was rejected (empty or too long). Nothing of the
    /// batch was applied.
    InvalidKey { key: String, reason: &'static str },
    /// Any other failure of the storage engine during `op`. Nothing of the
    /// operation was applied.
    Failed {
        path: PathBuf,
        op: &'static str,
        detail: String,
    },
}

impl StoreError {
    /// The store file the error concerns, when it concerns one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            StoreError::Corrupt { path, .. }
            | StoreError::Version { path, .. }
            | StoreError::Locked { path }
            | StoreError::Io { path, .. }
            | StoreError::Failed { path, .. } => Some(path),
            StoreError::Compacted { .. } | StoreError::InvalidKey { .. } => None,
        }
    }

    /// Converts an error of the storage engine met while doing `op` on the
    /// file at `path`.
    pub(crate) fn engine(path: &Path, op: &'static str, err: impl Into<redb::Error>) -> StoreError {
        let path = path.to_path_buf();
        match err.into() {
            redb::Error::Corrupted(detail) => StoreError::Corrupt { path, detail },
            redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
                StoreError::Locked { path }
            }
            redb::Error::UpgradeRequired(format) => StoreError::Version {
                path,
                detail: format!(
                    "the file uses storage-engine file format {format}, which this build does not read"
                ),
            },
            // The engine reports "not a database" (bad magic number, empty
            // file) and short reads of a truncated file as I/O errors of
            // these kinds: the file is there, its contents are wrong.
            redb::Error::Io(source)
                if matches!(
                    source.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ) =>
            {
                StoreError::Corrupt {
                    path,
                    detail: source.to_string(),
                }
            }
            redb::Error::Io(source) => StoreError::Io { path, op, source },
            other => StoreError::Failed {
                path,
                op,
                detail: other.to_string(),
            },
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Corrupt { path, detail } => write!(
                f,
                "store file {} is corrupt or not a Sluice store ({detail}); \
                 it has been left untouched: restore it from a backup, or move it \
                 aside to start with an empty store",
                path.display()
            ),
            StoreError::Version { path, detail } => write!(
                f,
                "store file {} cannot be read by this build: {detail}",
                path.display()
            ),
            StoreError::Locked { path } => write!(
                f,
                "store file {} is already open in another process (is another sluiced running?)",
                path.display()
            ),
            StoreError::Io { path, op, source } => {
                write!(f, "cannot {op} store file {}: {source}", path.display())
            }
            StoreError::Compacted { requested, oldest } => write!(
                f,
                "changes after revision {requested} are no longer kept: history is kept \
                 only after revision {oldest}; read the full state and follow history from its revision"
            ),
            StoreError::InvalidKey { key, reason } => {
                let shown: String = key.chars().take(64).collect();
                write!(f, "invalid store key {shown:?}: {reason}")
            }
            StoreError::Failed { path, op, detail } => {
                write!(f, "store file {}: {op} failed: {detail}", path.display())
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
