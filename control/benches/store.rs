//! Commit latency of the desired-state store: a one-key batch and a
//! 1000-key batch, each committed durably (fsynced) as one revision.
//!
//! The store lives under the system temporary directory, so the numbers are
//! those of that file system's fsync.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice_control::store::Store;
use std::path::PathBuf;

struct BenchDir(PathBuf);

impl BenchDir {
    fn new(tag: &str) -> BenchDir {
        let path =
            std::env::temp_dir().join(format!("sluice-store-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        BenchDir(path)
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A value about the size of one encoded route or rule.
fn value(seed: u64) -> Vec<u8> {
    (0..256).map(|i| (seed as usize + i) as u8).collect()
}

fn commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_commit");
    for keys in [1usize, 1000] {
        let dir = BenchDir::new(&format!("{keys}"));
        let store = Store::open(&dir.0).unwrap();
        let mut round = 0u64;
        group.throughput(Throughput::Elements(keys as u64));
        group.bench_function(format!("{keys}_keys"), |b| {
            b.iter_batched(
                || {
                    // The same keys every round, new values: updates of
                    // existing objects, as a reconfiguration would make.
                    round += 1;
                    (0..keys)
                        .map(|k| (format!("objects/{k:06}"), Some(value(round + k as u64))))
                        .collect::<Vec<_>>()
                },
                |batch| store.commit(&batch).unwrap(),
                BatchSize::LargeInput,
            )
        });
        // Keep the file from growing with history across the run's rounds.
        store.compact_history(store.revision() + 1).unwrap();
    }
    group.finish();
}

criterion_group!(benches, commit);
criterion_main!(benches);
