use super::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A directory under the system temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "sluice-store-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn put(key: &str, value: &[u8]) -> (String, Option<Vec<u8>>) {
    (key.to_owned(), Some(value.to_vec()))
}

fn del(key: &str) -> (String, Option<Vec<u8>>) {
    (key.to_owned(), None)
}

fn kv(pairs: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
        .collect()
}

fn entry(revision: u64, key: &str, value: Option<&[u8]>) -> HistoryEntry {
    HistoryEntry {
        revision,
        key: key.to_owned(),
        value: value.map(<[u8]>::to_vec),
    }
}

#[test]
fn new_store_is_empty_at_revision_zero() {
    let tmp = TempDir::new("empty");
    let dir = tmp.path().join("nested/state");
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.path(), dir.join(STORE_FILE));
    assert_eq!(store.revision(), 0);
    assert_eq!(store.load().unwrap(), (0, vec![]));
    assert_eq!(store.history_since(0).unwrap(), vec![]);
    assert_eq!(store.history_oldest().unwrap(), 0);
    assert!(!dir.join(INIT_FILE).exists());
}

#[test]
fn round_trip() {
    let tmp = TempDir::new("roundtrip");
    let store = Store::open(tmp.path()).unwrap();
    let rev = store
        .commit(&[
            put("routes/b", b"second"),
            put("routes/a", b"first"),
            put("empty", b""),
            put("binary", &[0, 255, 7]),
        ])
        .unwrap();
    assert_eq!(rev, 1);
    assert_eq!(
        store.load().unwrap(),
        (
            1,
            kv(&[
                ("binary", &[0, 255, 7]),
                ("empty", b""),
                ("routes/a", b"first"),
                ("routes/b", b"second"),
            ])
        )
    );
    assert_eq!(
        store.get("routes/a").unwrap().as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(store.get("missing").unwrap(), None);

    // Overwrite, delete, delete of an absent key, and a key changed twice
    // in one batch (the later change wins).
    let rev = store
        .commit(&[
            put("routes/a", b"changed"),
            del("routes/b"),
            del("never-there"),
            put("twice", b"1"),
            put("twice", b"2"),
        ])
        .unwrap();
    assert_eq!(rev, 2);
    assert_eq!(
        store.load().unwrap(),
        (
            2,
            kv(&[
                ("binary", &[0, 255, 7]),
                ("empty", b""),
                ("routes/a", b"changed"),
                ("twice", b"2"),
            ])
        )
    );

    let big = vec![0xabu8; 3 * 1024 * 1024];
    store.commit(&[put("big", &big)]).unwrap();
    assert_eq!(store.get("big").unwrap().unwrap(), big);
}

#[test]
fn revisions_are_consecutive() {
    let tmp = TempDir::new("revisions");
    let store = Store::open(tmp.path()).unwrap();
    for expected in 1..=20u64 {
        let rev = store
            .commit(&[put("counter", &expected.to_le_bytes())])
            .unwrap();
        assert_eq!(rev, expected);
        assert_eq!(store.revision(), expected);
    }
    // An empty batch commits nothing.
    assert_eq!(store.commit(&[]).unwrap(), 20);
    assert_eq!(store.revision(), 20);
    assert_eq!(store.load().unwrap().0, 20);
}

#[test]
fn failure_mid_batch_applies_nothing() {
    let tmp = TempDir::new("atomic");
    let store = Store::open(tmp.path()).unwrap();
    store.commit(&[put("a", b"1"), put("b", b"1")]).unwrap();
    let before = store.load().unwrap();
    let history_before = store.history_since(0).unwrap();

    // The engine has applied changes 0 and 1 inside the transaction when
    // change 2 fails.
    store.fail_at(2);
    let err = store
        .commit(&[put("a", b"2"), del("b"), put("c", b"2"), put("d", b"2")])
        .unwrap_err();
    assert!(matches!(err, StoreError::Failed { .. }), "{err}");
    store.fail_at(usize::MAX);
    assert_eq!(store.load().unwrap(), before);
    assert_eq!(store.revision(), 1);
    assert_eq!(store.history_since(0).unwrap(), history_before);

    // An invalid key half-way through a batch: the same.
    let err = store
        .commit(&[put("a", b"3"), put("", b"3"), put("c", b"3")])
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidKey { .. }), "{err}");
    let long = "k".repeat(MAX_KEY_LEN + 1);
    let err = store
        .commit(&[put("a", b"3"), put(&long, b"3")])
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidKey { .. }), "{err}");
    assert_eq!(store.load().unwrap(), before);

    // The failures left no gap in the revisions, and nothing on disk.
    assert_eq!(store.commit(&[put("a", b"4")]).unwrap(), 2);
    drop(store);
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.load().unwrap(), (2, kv(&[("a", b"4"), ("b", b"1")])));
}

#[test]
fn readers_never_see_part_of_a_batch() {
    const KEYS: usize = 50;
    const COMMITS: u64 = 60;
    let tmp = TempDir::new("snapshot");
    let store = Arc::new(Store::open(tmp.path()).unwrap());
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            for rev in 1..=COMMITS {
                let batch: Vec<_> = (0..KEYS)
                    .map(|i| put(&format!("k{i:03}"), &rev.to_le_bytes()))
                    .collect();
                assert_eq!(store.commit(&batch).unwrap(), rev);
            }
        })
    };
    let mut loads = 0;
    loop {
        let (rev, state) = store.load().unwrap();
        if rev == 0 {
            assert!(state.is_empty());
        } else {
            assert_eq!(state.len(), KEYS, "at revision {rev}");
            for (key, value) in &state {
                assert_eq!(value[..], rev.to_le_bytes(), "{key} at revision {rev}");
            }
        }
        loads += 1;
        if rev == COMMITS {
            break;
        }
    }
    writer.join().unwrap();
    assert!(loads > 0);
}

#[test]
fn reopen_keeps_state_and_revision() {
    let tmp = TempDir::new("reopen");
    {
        let store = Store::open(tmp.path()).unwrap();
        store.commit(&[put("x", b"1"), put("y", b"2")]).unwrap();
        store.commit(&[del("x"), put("z", b"3")]).unwrap();
        // Dropped without close().
    }
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.revision(), 2);
    assert_eq!(store.load().unwrap(), (2, kv(&[("y", b"2"), ("z", b"3")])));
    assert_eq!(store.history_since(0).unwrap().len(), 4);
    assert_eq!(store.commit(&[put("w", b"4")]).unwrap(), 3);
    store.close().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.revision(), 3);
    assert_eq!(store.get("w").unwrap().as_deref(), Some(&b"4"[..]));
}

#[test]
fn history_since_lists_later_changes_in_order() {
    let tmp = TempDir::new("history");
    let store = Store::open(tmp.path()).unwrap();
    store.commit(&[put("b", b"1"), put("a", b"1")]).unwrap();
    store.commit(&[del("b")]).unwrap();
    store
        .commit(&[put("c", b"3"), del("a"), put("c", b"33")])
        .unwrap();
    let all = vec![
        entry(1, "b", Some(b"1")),
        entry(1, "a", Some(b"1")),
        entry(2, "b", None),
        entry(3, "c", Some(b"3")),
        entry(3, "a", None),
        entry(3, "c", Some(b"33")),
    ];
    assert_eq!(store.history_since(0).unwrap(), all);
    assert_eq!(store.history_since(1).unwrap(), all[2..]);
    assert_eq!(store.history_since(2).unwrap(), all[3..]);
    assert_eq!(store.history_since(3).unwrap(), vec![]);
    assert_eq!(store.history_since(99).unwrap(), vec![]);
    assert_eq!(store.history_since(u64::MAX).unwrap(), vec![]);

    // Replaying history from 0 rebuilds the current state.
    let mut replayed = std::collections::BTreeMap::new();
    for e in store.history_since(0).unwrap() {
        match e.value {
            Some(v) => replayed.insert(e.key, v),
            None => replayed.remove(&e.key),
        };
    }
    let (_, state) = store.load().unwrap();
    assert_eq!(replayed.into_iter().collect::<Vec<_>>(), state);
}

#[test]
fn compaction_bounds_history() {
    let tmp = TempDir::new("compact");
    let store = Store::open(tmp.path()).unwrap();
    for rev in 1..=5u64 {
        store
            .commit(&[put("k", &rev.to_le_bytes()), put(&format!("r{rev}"), b"")])
            .unwrap();
    }
    // Keep revisions 3.. : history can be followed from revision 2 on.
    assert_eq!(store.compact_history(3).unwrap(), 4);
    assert_eq!(store.history_oldest().unwrap(), 2);
    let err = store.history_since(1).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Compacted {
                requested: 1,
                oldest: 2
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("revision 1"), "{err}");
    assert!(matches!(
        store.history_since(0),
        Err(StoreError::Compacted { .. })
    ));
    let kept = store.history_since(2).unwrap();
    assert_eq!(kept.len(), 6);
    assert_eq!(kept.first().unwrap().revision, 3);
    assert_eq!(kept.last().unwrap().revision, 5);

    // Compaction never goes backwards, and never touches the state.
    assert_eq!(store.compact_history(2).unwrap(), 0);
    assert_eq!(store.history_oldest().unwrap(), 2);
    assert_eq!(store.load().unwrap().1.len(), 6);
    assert_eq!(store.revision(), 5);

    // It survives a reopen.
    drop(store);
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.history_oldest().unwrap(), 2);
    assert!(store.history_since(1).is_err());

    // Asking beyond the current revision drops all history, and history
    // resumes with the next commit.
    assert_eq!(store.compact_history(1_000).unwrap(), 6);
    assert_eq!(store.history_oldest().unwrap(), 5);
    assert_eq!(store.history_since(5).unwrap(), vec![]);
    assert!(store.history_since(4).is_err());
    store.commit(&[del("k")]).unwrap();
    assert_eq!(store.history_since(5).unwrap(), vec![entry(6, "k", None)]);
    assert_eq!(store.load().unwrap().1.len(), 5);
}

/// The crash test's child: commits revision after revision, printing each
/// one once `commit` has returned it, until it is killed. Does nothing in an
/// ordinary test run.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_CHILD_ENV) else {
        return;
    };
    let store = Store::open(Path::new(&dir)).expect("child: open");
    let mut rev = store.revision();
    let deadline = Instant::now() + Duration::from_secs(120);
    let stdout = std::io::stdout();
    while Instant::now() < deadline {
        let next = rev + 1;
        let got = store.commit(&crash_batch(next)).expect("child: commit");
        assert_eq!(got, next);
        let mut out = stdout.lock();
        writeln!(out, "ACK {got}").unwrap();
        out.flush().unwrap();
        rev = got;
    }
    panic!("child: was not killed in time");
}

const CRASH_CHILD_ENV: &str = "SLUICE_STORE_CRASH_CHILD";

/// What commit `rev` of the crash test changes: a new key with a value of
/// varying size (up to ~40 KiB, so that commits span pages and grow the
/// file), the counter, and the deletion of an older key.
fn crash_batch(rev: u64) -> Vec<(String, Option<Vec<u8>>)> {
    let mut batch = vec![
        put(&format!("k/{rev:06}"), &crash_value(rev)),
        put("last", &rev.to_le_bytes()),
    ];
    if rev > 5 {
        batch.push(del(&format!("k/{:06}", rev - 5)));
    }
    batch
}

fn crash_value(rev: u64) -> Vec<u8> {
    let len = (rev.wrapping_mul(7919) % 40_000) as usize;
    (0..len).map(|i| (rev as usize + i) as u8).collect()
}

/// The state after commits 1..=rev of the crash test.
fn crash_state(rev: u64) -> Vec<(String, Vec<u8>)> {
    let mut state: Vec<_> = (rev.saturating_sub(4).max(1)..=rev)
        .map(|r| (format!("k/{r:06}"), crash_value(r)))
        .collect();
    if rev > 0 {
        state.push(("last".to_owned(), rev.to_le_bytes().to_vec()));
    }
    state.sort();
    state
}

fn crash_history(rev: u64) -> Vec<HistoryEntry> {
    (1..=rev)
        .flat_map(|r| {
            crash_batch(r)
                .into_iter()
                .map(move |(key, value)| HistoryEntry {
                    revision: r,
                    key,
                    value,
                })
        })
        .collect()
}

#[test]
fn acknowledged_commits_survive_sigkill() {
    let tmp = TempDir::new("crash");
    let exe = std::env::current_exe().unwrap();
    // Deterministic variety in where the kills land.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut durable = 0u64;
    for cycle in 0..5 {
        let mut child = Command::new(&exe)
            .args([
                "store::tests::crash_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_ENV, tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = durable;
        let note_ack = |line: &str, acked: &mut u64| {
            // The test harness may print its own text on the same line.
            if let Some(pos) = line.find("ACK ") {
                let rev: u64 = line[pos + 4..].trim().parse().unwrap();
                assert_eq!(
                    rev,
                    *acked + 1,
                    "cycle {cycle}: acknowledgements out of order"
                );
                *acked = rev;
            }
        };
        let wanted = durable + 5 + rand() % 40;
        while acked < wanted {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("cycle {cycle}: child exited at revision {acked}"))
                .unwrap();
            note_ack(&line, &mut acked);
        }
        // Let the child get some way into its next commit, then SIGKILL it.
        std::thread::sleep(Duration::from_micros(rand() % 4_000));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "cycle {cycle}: {status:?}");
        // Acknowledgements printed before the kill.
        for line in lines {
            note_ack(&line.unwrap(), &mut acked);
        }

        // The kill left the file needing recovery (it was not closed).
        assert!(
            matches!(
                redb::Builder::new().open_read_only(tmp.path().join(STORE_FILE)),
                Err(redb::DatabaseError::RepairAborted)
            ),
            "cycle {cycle}: the killed child left a cleanly closed file"
        );
        let store = Store::open(tmp.path())
            .unwrap_or_else(|e| panic!("cycle {cycle}: reopen after SIGKILL: {e}"));
        let rev = store.revision();
        // Every acknowledged commit is there; at most the one in flight when
        // the child died may have made it too.
        assert!(
            rev == acked || rev == acked + 1,
            "cycle {cycle}: store at revision {rev}, {acked} acknowledged"
        );
        assert_eq!(
            store.load().unwrap(),
            (rev, crash_state(rev)),
            "cycle {cycle}"
        );
        assert_eq!(
            store.history_since(0).unwrap(),
            crash_history(rev),
            "cycle {cycle}"
        );
        eprintln!("cycle {cycle}: {acked} acknowledged, recovered revision {rev}");
        durable = rev;
    }
    assert!(durable >= 25);
}

#[test]
fn damaged_files_are_reported_and_left_untouched() {
    // A store with some content, to damage in various ways.
    let tmp = TempDir::new("corrupt");
    let good_dir = tmp.path().join("good");
    {
        let store = Store::open(&good_dir).unwrap();
        for rev in 1..=30u64 {
            store
                .commit(&[put(&format!("key{rev}"), &vec![rev as u8; 3000])])
                .unwrap();
        }
        store.close().unwrap();
    }
    let good = fs::read(good_dir.join(STORE_FILE)).unwrap();
    assert!(good.len() > 16 * 4096, "{}", good.len());

    let mut garbage = good.clone();
    let mut x = 0x1234_5678u32;
    for b in garbage.iter_mut() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        *b = (x >> 16) as u8;
    }
    let mut pages_damaged = good.clone();
    for b in pages_damaged[4096..].iter_mut() {
        *b ^= 0x5a;
    }
    let mut header_damaged = good.clone();
    for b in header_damaged[32..512].iter_mut() {
        *b = 0xee;
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", garbage),
        ("text", b"this is not a database\n".repeat(1000)),
        ("empty", vec![]),
        ("truncated", good[..good.len() / 3].to_vec()),
        ("pages damaged", pages_damaged),
        ("header damaged", header_damaged),
    ];
    for (name, bytes) in cases {
        let dir = tmp.path().join(name.replace(' ', "-"));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join(STORE_FILE);
        fs::write(&file, &bytes).unwrap();
        let err = Store::open(&dir).expect_err(name);
        eprintln!("{name}: {err}");
        assert!(
            matches!(err, StoreError::Corrupt { .. }),
            "{name}: expected Corrupt, got {err:?}"
        );
        assert_eq!(err.path(), Some(file.as_path()), "{name}");
        let text = err.to_string();
        assert!(text.contains(&file.display().to_string()), "{name}: {text}");
        assert!(
            fs::read(&file).unwrap() == bytes,
            "{name}: the damaged file was modified"
        );
        // Still refused, still untouched, on a second try.
        assert!(matches!(Store::open(&dir), Err(StoreError::Corrupt { .. })));
        assert!(
            fs::read(&file).unwrap() == bytes,
            "{name}: modified on retry"
        );
    }

    // The undamaged copy still opens.
    let store = Store::open(&good_dir).unwrap();
    assert_eq!(store.revision(), 30);
}

#[test]
fn a_database_that_is_not_a_store_is_refused() {
    let tmp = TempDir::new("foreign");
    let file = tmp.path().join(STORE_FILE);
    {
        let db = redb::Database::create(&file).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn
                .open_table(TableDefinition::<u64, u64>::new("other"))
                .unwrap();
            t.insert(1, 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let before = fs::read(&file).unwrap();
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("not a Sluice store"), "{err}");
    assert!(fs::read(&file).unwrap() == before);
}

#[test]
fn another_format_version_is_refused() {
    let tmp = TempDir::new("version");
    Store::open(tmp.path()).unwrap().close().unwrap();
    let file = tmp.path().join(STORE_FILE);
    {
        let db = redb::Database::open(&file).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(META_FORMAT, FORMAT_VERSION + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Version { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("version 2"), "{text}");
    assert!(text.contains(&file.display().to_string()), "{text}");
}

#[test]
fn a_store_open_elsewhere_is_refused() {
    let tmp = TempDir::new("locked");
    let store = Store::open(tmp.path()).unwrap();
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    drop(store);
    Store::open(tmp.path()).unwrap();
}

#[test]
fn an_interrupted_initialisation_is_redone() {
    let tmp = TempDir::new("init");
    // What a start killed while creating the store leaves behind.
    fs::write(tmp.path().join(INIT_FILE), b"half-written").unwrap();
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.revision(), 0);
    assert!(!tmp.path().join(INIT_FILE).exists());
}

#[test]
fn unusable_paths_are_reported() {
    let tmp = TempDir::new("paths");
    // The store directory is a file.
    let not_dir = tmp.path().join("file");
    fs::write(&not_dir, b"x").unwrap();
    let err = Store::open(&not_dir).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("file"), "{err}");
    // The store file is a directory.
    let dir = tmp.path().join("dir");
    fs::create_dir_all(dir.join(STORE_FILE)).unwrap();
    let err = Store::open(&dir).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn store_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    assert_send_sync::<StoreError>();
}
