//! memif ports: Sluice master ↔ Sluice slave in one process, and both roles
//! against DPDK's `net_memif` in `dpdk-testpmd` (skipped, with a message,
//! when testpmd is not installed).

use sluice_dataplane::buf::{Batch, PacketPool, PoolCache, DATA_ROOM};
use sluice_dataplane::io::memif::{MemifConfig, MemifPort, MemifRole};
use sluice_dataplane::io::{Port, RxQueue, TxQueue};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// A socket path unique to this process and test.
/// (The port or testpmd that listens on it removes it.)
fn socket(tag: &str) -> String {
    std::env::temp_dir()
        .join(format!("sluice-memif-{}-{tag}.sock", std::process::id()))
        .display()
        .to_string()
}

fn config(role: MemifRole, socket: &str, queues: u16) -> MemifConfig {
    MemifConfig {
        role,
        socket: socket.to_string(),
        queues,
        reconnect: Duration::from_millis(20),
        ..MemifConfig::default()
    }
}

/// A frame of `len` bytes carrying `seq` and `queue`, the rest a pattern.
fn frame(seq: u32, queue: u16, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&DST);
    f.extend_from_slice(&SRC);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&queue.to_be_bytes());
    while f.len() < len {
        f.push((f.len() as u32).wrapping_mul(seq | 1) as u8);
    }
    f.truncate(len);
    f
}

fn seq_of(f: &[u8]) -> u32 {
    u32::from_be_bytes(f[14..18].try_into().unwrap())
}

struct Queues {
    rx: Vec<Box<dyn RxQueue>>,
    tx: Vec<Box<dyn TxQueue>>,
}

fn queues(p: &dyn Port, n: u16) -> Queues {
    Queues {
        rx: (0..n).map(|q| p.rx_queue(q).unwrap()).collect(),
        tx: (0..n).map(|q| p.tx_queue(q).unwrap()).collect(),
    }
}

/// Sends `count` frames of the given lengths (cycled) on `tx` and collects
/// them from `rx` (through whatever is in between), keeping at most
/// `window` in flight. Returns the frames received, in order.
fn exchange(
    cache: &mut PoolCache,
    tx: &mut dyn TxQueue,
    rx: &mut dyn RxQueue,
    queue: u16,
    count: u32,
    lens: &[usize],
    window: u32,
) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let (mut sent, mut batch, mut inbox) = (0u32, Batch::new(), Batch::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    while (got.len() as u32) < count && Instant::now() < deadline {
        while sent < count && sent - (got.len() as u32) < window && !batch.is_full() {
            let mut p = cache.alloc().expect("pool buffer");
            assert!(p.fill(&frame(sent, queue, lens[sent as usize % lens.len()])));
            batch.push(p);
            sent += 1;
        }
        tx.tx_burst(&mut batch, cache);
        // Whatever the ring did not take is sent again on the next turn.
        sent -= batch.len() as u32;
        cache.free_batch(&mut batch);
        rx.rx_burst(cache, &mut inbox);
        for p in inbox.drain(..) {
            got.push(p.data().to_vec());
            cache.free(p);
        }
    }
    got
}

fn check_in_order(got: &[Vec<u8>], count: u32, queue: u16, lens: &[usize]) {
    assert_eq!(got.len() as u32, count, "frames received on queue {queue}");
    for (i, f) in got.iter().enumerate() {
        let want = frame(i as u32, queue, lens[i % lens.len()]);
        assert_eq!(f.len(), want.len(), "frame {i} length");
        assert!(f == &want, "frame {i} on queue {queue} differs");
    }
}

fn connected_pair(tag: &str, queues: u16, slave: MemifConfig) -> (Arc<MemifPort>, Arc<MemifPort>) {
    let path = socket(tag);
    let master = MemifPort::open("m", config(MemifRole::Master, &path, queues)).unwrap();
    let slave = MemifPort::open(
        "s",
        MemifConfig {
            socket: path,
            ..slave
        },
    )
    .unwrap();
    assert!(
        master.wait_connected(Duration::from_secs(5)),
        "{}",
        master.status()
    );
    assert!(
        slave.wait_connected(Duration::from_secs(5)),
        "{}",
        slave.status()
    );
    (master, slave)
}

#[test]
fn master_and_slave_carry_frames_both_ways_on_every_queue() {
    let (master, slave) = connected_pair("pair", 3, config(MemifRole::Slave, "", 3));
    assert_eq!(master.connected_queues(), (3, 3));
    assert_eq!(slave.connected_queues(), (3, 3));
    assert_eq!(master.peer().unwrap().1, "sluice");
    assert!(master.info().link_up && slave.info().link_up);
    let pool = PacketPool::new("t", 4096);
    let mut cache = pool.cache(256);
    let mut m = queues(&*master, 3);
    let mut s = queues(&*slave, 3);
    let lens = [60, 64, 1514, 128, DATA_ROOM, 14, 999];
    for q in 0..3u16 {
        let i = q as usize;
        // More than a ring's worth, so every index wraps.
        let up = exchange(
            &mut cache,
            &mut *s.tx[i],
            &mut *m.rx[i],
            q,
            3000,
            &lens,
            700,
        );
        check_in_order(&up, 3000, q, &lens);
        let down = exchange(
            &mut cache,
            &mut *m.tx[i],
            &mut *s.rx[i],
            q,
            3000,
            &lens,
            700,
        );
        check_in_order(&down, 3000, q, &lens);
    }
    let (ms, ss) = (master.stats(), slave.stats());
    assert_eq!((ms.rx_packets, ms.tx_packets), (9000, 9000));
    assert_eq!((ss.rx_packets, ss.tx_packets), (9000, 9000));
    assert_eq!(ms.rx_bytes, ss.tx_bytes);
    assert_eq!(ss.rx_bytes, ms.tx_bytes);
    assert_eq!(ms.rx_dropped + ss.rx_dropped, 0);
    // Taken queues stay taken until their handles drop.
    assert!(master.rx_queue(0).is_err());
    assert!(master.rx_queue(3).is_err());
    drop(m);
    assert!(master.rx_queue(0).is_ok());
}

#[test]
fn frames_longer_than_a_buffer_are_chained() {
    let slave = MemifConfig {
        buffer_size: 256,
        log2_ring_size: 6,
        ..config(MemifRole::Slave, "", 1)
    };
    let (master, slave) = connected_pair("chain", 1, slave);
    let pool = PacketPool::new("t", 1024);
    let mut cache = pool.cache(256);
    let mut m = queues(&*master, 1);
    let mut s = queues(&*slave, 1);
    let lens = [1514, 60, 256, 257, DATA_ROOM, 512];
    let up = exchange(&mut cache, &mut *s.tx[0], &mut *m.rx[0], 0, 500, &lens, 20);
    check_in_order(&up, 500, 0, &lens);
    let down = exchange(&mut cache, &mut *m.tx[0], &mut *s.rx[0], 0, 500, &lens, 20);
    check_in_order(&down, 500, 0, &lens);
}

#[test]
fn a_full_ring_leaves_frames_with_the_caller() {
    let slave = MemifConfig {
        log2_ring_size: 4,
        ..config(MemifRole::Slave, "", 1)
    };
    let (master, slave) = connected_pair("full", 1, slave);
    let pool = PacketPool::new("t", 256);
    let mut cache = pool.cache(64);
    let mut tx = slave.tx_queue(0).unwrap();
    let mut sent = 0;
    for round in 0..3 {
        let mut batch = Batch::new();
        for i in 0..10 {
            let mut p = cache.alloc().unwrap();
            p.fill(&frame(round * 10 + i, 0, 60));
            batch.push(p);
        }
        sent += tx.tx_burst(&mut batch, &mut cache);
        cache.free_batch(&mut batch);
    }
    assert_eq!(sent, 16, "a 16-slot ring takes 16 frames");
    assert_eq!(slave.stats().tx_dropped, 14);
    let mut rx = master.rx_queue(0).unwrap();
    let mut got = Batch::new();
    assert_eq!(rx.rx_burst(&mut cache, &mut got), 16);
    let seqs: Vec<u32> = got.iter().map(|p| seq_of(p.data())).collect();
    assert_eq!(seqs, (0..16).collect::<Vec<_>>());
    cache.free_batch(&mut got);
}

#[test]
fn the_wrong_id_or_secret_is_refused_with_a_reason() {
    let path = socket("refuse");
    let master = MemifPort::open(
        "m",
        MemifConfig {
            id: 7,
            secret: "sesame".into(),
            ..config(MemifRole::Master, &path, 1)
        },
    )
    .unwrap();
    let wait_status = |p: &MemifPort, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !p.status().contains(want) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(p.status().contains(want), "{}", p.status());
    };
    let wrong_id = MemifPort::open(
        "s",
        MemifConfig {
            id: 8,
            secret: "sesame".into(),
            ..config(MemifRole::Slave, &path, 1)
        },
    )
    .unwrap();
    wait_status(&wrong_id, "ID not found");
    assert!(!wrong_id.is_connected());
    drop(wrong_id);
    let wrong_secret = MemifPort::open(
        "s",
        MemifConfig {
            id: 7,
            secret: "open".into(),
            ..config(MemifRole::Slave, &path, 1)
        },
    )
    .unwrap();
    wait_status(&wrong_secret, "Incorrect secret");
    drop(wrong_secret);
    let right = MemifPort::open(
        "s",
        MemifConfig {
            id: 7,
            secret: "sesame".into(),
            ..config(MemifRole::Slave, &path, 1)
        },
    )
    .unwrap();
    assert!(
        right.wait_connected(Duration::from_secs(5)),
        "{}",
        right.status()
    );
    // A second slave on the same socket is turned away.
    let second = MemifPort::open(
        "s2",
        MemifConfig {
            id: 7,
            secret: "sesame".into(),
            ..config(MemifRole::Slave, &path, 1)
        },
    )
    .unwrap();
    wait_status(&second, "Already connected");
    assert!(right.is_connected());
    // A socket a master listens on is not taken over.
    let e = MemifPort::open("m2", config(MemifRole::Master, &path, 1)).unwrap_err();
    assert!(e.to_string().contains("listening"), "{e}");
    drop(master);
    assert!(!std::path::Path::new(&path).exists(), "socket removed");
}

#[test]
fn a_slave_reconnects_after_its_master_restarts() {
    let path = socket("restart");
    let master = MemifPort::open("m", config(MemifRole::Master, &path, 1)).unwrap();
    let slave = MemifPort::open("s", config(MemifRole::Slave, &path, 1)).unwrap();
    assert!(
        slave.wait_connected(Duration::from_secs(5)),
        "{}",
        slave.status()
    );
    let pool = PacketPool::new("t", 512);
    let mut cache = pool.cache(64);
    let mut stx = slave.tx_queue(0).unwrap();
    let mut srx = slave.rx_queue(0).unwrap();
    drop(master);
    let deadline = Instant::now() + Duration::from_secs(5);
    while slave.is_connected() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!slave.is_connected());
    assert!(
        slave.status().contains("Interface closed"),
        "{}",
        slave.status()
    );
    // Sending while down leaves the frames with the caller.
    let mut batch = Batch::new();
    let mut p = cache.alloc().unwrap();
    p.fill(&frame(0, 0, 60));
    batch.push(p);
    assert_eq!(stx.tx_burst(&mut batch, &mut cache), 0);
    cache.free_batch(&mut batch);

    let master = MemifPort::open("m", config(MemifRole::Master, &path, 1)).unwrap();
    assert!(
        slave.wait_connected(Duration::from_secs(5)),
        "{}",
        slave.status()
    );
    let mut mrx = master.rx_queue(0).unwrap();
    let mut mtx = master.tx_queue(0).unwrap();
    let up = exchange(&mut cache, &mut *stx, &mut *mrx, 0, 100, &[60], 32);
    check_in_order(&up, 100, 0, &[60]);
    let down = exchange(&mut cache, &mut *mtx, &mut *srx, 0, 100, &[60], 32);
    check_in_order(&down, 100, 0, &[60]);
}

#[test]
fn interrupts_are_signalled_only_when_the_receiver_asks() {
    let slave = MemifConfig {
        interrupt: true,
        ..config(MemifRole::Slave, "", 1)
    };
    let (master, slave) = connected_pair("intr", 1, slave);
    let pool = PacketPool::new("t", 256);
    let mut cache = pool.cache(64);
    let mut mtx = master.tx_queue(0).unwrap();
    let mut stx = slave.tx_queue(0).unwrap();
    assert!(
        !slave.wait_rx(0, Duration::from_millis(1)),
        "nothing sent yet"
    );
    let send = |tx: &mut dyn TxQueue, cache: &mut PoolCache| {
        let mut batch = Batch::new();
        let mut p = cache.alloc().unwrap();
        p.fill(&frame(0, 0, 60));
        batch.push(p);
        assert_eq!(tx.tx_burst(&mut batch, cache), 1);
    };
    send(&mut *mtx, &mut cache);
    assert!(slave.wait_rx(0, Duration::from_secs(2)), "the slave asked");
    assert!(
        !slave.wait_rx(0, Duration::from_millis(1)),
        "cleared by the wait"
    );
    // The master polls (the default): the slave does not signal it.
    send(&mut *stx, &mut cache);
    assert!(!master.wait_rx(0, Duration::from_millis(20)));
    let mut got = Batch::new();
    let mut srx = slave.rx_queue(0).unwrap();
    let mut mrx = master.rx_queue(0).unwrap();
    assert_eq!(srx.rx_burst(&mut cache, &mut got), 1);
    assert_eq!(mrx.rx_burst(&mut cache, &mut got), 1);
    cache.free_batch(&mut got);
}

// ---- Interop with DPDK's net_memif (dpdk-testpmd) ----

const TESTPMD: &str = "dpdk-testpmd";

fn testpmd_installed() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(TESTPMD).is_file()));
    if !found {
        eprintln!("skipped: {TESTPMD} is not installed (apt-get install dpdk)");
    }
    found
}

/// A running testpmd, stopped (and its socket removed) when dropped.
struct Testpmd {
    child: Child,
    socket: PathBuf,
    /// EAL's `--file-prefix`, whose runtime directory goes too.
    prefix: Option<String>,
}

impl Testpmd {
    /// Starts testpmd with one memif port in `role` on `socket`, `queues`
    /// queue pairs, forwarding each queue back out of itself in `mode`.
    fn start(role: &str, socket: &str, queues: u16, mode: &str) -> Testpmd {
        Testpmd::start_with(role, socket, queues, mode, false)
    }

    /// As `start`; `hugepages` runs EAL on hugepages (`--in-memory`), which
    /// needs `vm.nr_hugepages` set, instead of `--no-huge`.
    fn start_with(role: &str, socket: &str, queues: u16, mode: &str, hugepages: bool) -> Testpmd {
        let vdev = format!("net_memif0,role={role},id=0,socket={socket},socket-abstract=no");
        let prefix = format!("sluice-memif-{}-{role}", std::process::id());
        let memory: &[&str] = if hugepages {
            &["--in-memory", "-m", "512"]
        } else {
            &["--no-huge", "-m", "256", "--file-prefix", &prefix]
        };
        let child = Command::new(TESTPMD)
            .args(["-l", "0,1", "--main-lcore", "0"])
            .args(memory)
            .args(["--no-pci", "--log-level", "*:error"])
            .args(["--vdev", &vdev, "--"])
            .arg(format!("--forward-mode={mode}"))
            .args([
                "--port-topology=loop",
                "--nb-cores=1",
                "--total-num-mbufs=8192",
            ])
            .arg(format!("--rxq={queues}"))
            .arg(format!("--txq={queues}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dpdk-testpmd");
        Testpmd {
            child,
            socket: socket.into(),
            prefix: (!hugepages).then_some(prefix),
        }
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("dpdk-testpmd exited early: {status}");
        }
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        // SIGINT lets testpmd close its ports (and say DISCONNECT).
        // SAFETY: kill(2) of the child we started, by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
        if let Some(prefix) = &self.prefix {
            // EAL's runtime directory: /var/run/dpdk as root, else under
            // XDG_RUNTIME_DIR (or /tmp).
            // SAFETY: geteuid(2) has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            let base = if root {
                PathBuf::from("/var/run")
            } else {
                std::env::var_os("XDG_RUNTIME_DIR").map_or_else(|| "/tmp".into(), PathBuf::from)
            };
            let _ = std::fs::remove_dir_all(base.join("dpdk").join(prefix));
        }
    }
}

/// Sends frames on every queue through testpmd and checks each comes back
/// on its queue, with the MAC addresses swapped.
fn through_testpmd(port: &MemifPort, queues: u16) {
    let pool = PacketPool::new("t", 4096);
    let mut cache = pool.cache(256);
    let mut qs = self::queues(port, queues);
    let lens = [60, 1514, 128, 64];
    for q in 0..queues {
        let i = q as usize;
        // testpmd discards what its receive queues hold when forwarding
        // starts: probe until a frame makes the round trip, then drain.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut back = Batch::new();
        while back.is_empty() && Instant::now() < deadline {
            let mut probe = Batch::new();
            let mut p = cache.alloc().unwrap();
            p.fill(&frame(u32::MAX, q, 60));
            probe.push(p);
            qs.tx[i].tx_burst(&mut probe, &mut cache);
            cache.free_batch(&mut probe);
            std::thread::sleep(Duration::from_millis(5));
            qs.rx[i].rx_burst(&mut cache, &mut back);
        }
        assert!(
            !back.is_empty(),
            "no probe came back on queue {q}: {}",
            port.status()
        );
        std::thread::sleep(Duration::from_millis(20));
        while qs.rx[i].rx_burst(&mut cache, &mut back) > 0 {
            cache.free_batch(&mut back);
        }
        cache.free_batch(&mut back);
        let got = exchange(
            &mut cache,
            &mut *qs.tx[i],
            &mut *qs.rx[i],
            q,
            2000,
            &lens,
            256,
        );
        assert_eq!(
            got.len(),
            2000,
            "frames back on queue {q}: {}, {:?}",
            port.status(),
            port.stats()
        );
        for (n, f) in got.iter().enumerate() {
            let mut want = frame(n as u32, q, lens[n % lens.len()]);
            want[..6].copy_from_slice(&SRC);
            want[6..12].copy_from_slice(&DST);
            assert!(f == &want, "frame {n} on queue {q} differs");
        }
    }
}

#[test]
fn testpmd_as_slave_of_a_sluice_master() {
    if !testpmd_installed() {
        return;
    }
    let path = socket("dpdk-client");
    let master = MemifPort::open("m", config(MemifRole::Master, &path, 2)).unwrap();
    let mut pmd = Testpmd::start("client", &path, 2, "macswap");
    let up = master.wait_connected(Duration::from_secs(20));
    pmd.assert_running();
    assert!(up, "{}", master.status());
    assert_eq!(master.connected_queues(), (2, 2));
    through_testpmd(&master, 2);
    drop(pmd);
    let deadline = Instant::now() + Duration::from_secs(5);
    while master.is_connected() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!master.is_connected(), "link down after testpmd left");
}

#[test]
fn testpmd_as_master_on_an_abstract_socket() {
    if !testpmd_installed() {
        return;
    }
    let name = format!("sluice-memif-{}-abstract", std::process::id());
    let vdev = format!("net_memif0,role=server,id=0,socket={name}");
    let prefix = format!("sluice-memif-{}-abstract", std::process::id());
    let child = Command::new(TESTPMD)
        .args(["-l", "0,1", "--main-lcore", "0", "--no-huge", "-m", "256"])
        .args([
            "--file-prefix",
            &prefix,
            "--no-pci",
            "--log-level",
            "*:error",
        ])
        .args(["--vdev", &vdev, "--", "--forward-mode=macswap"])
        .args([
            "--port-topology=loop",
            "--nb-cores=1",
            "--total-num-mbufs=8192",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dpdk-testpmd");
    let mut pmd = Testpmd {
        child,
        socket: PathBuf::new(),
        prefix: Some(prefix),
    };
    let slave = MemifPort::open("s", config(MemifRole::Slave, &format!("@{name}"), 1)).unwrap();
    let up = slave.wait_connected(Duration::from_secs(20));
    pmd.assert_running();
    assert!(up, "{}", slave.status());
    through_testpmd(&slave, 1);
}

#[test]
fn sluice_pair_on_an_abstract_socket() {
    let name = format!("@sluice-memif-{}-pair", std::process::id());
    let master = MemifPort::open("m", config(MemifRole::Master, &name, 1)).unwrap();
    let slave = MemifPort::open("s", config(MemifRole::Slave, &name, 1)).unwrap();
    assert!(
        slave.wait_connected(Duration::from_secs(5)),
        "{}",
        slave.status()
    );
    drop(master);
}

#[test]
fn testpmd_as_master_of_a_sluice_slave() {
    if !testpmd_installed() {
        return;
    }
    let path = socket("dpdk-server");
    let mut pmd = Testpmd::start("server", &path, 2, "macswap");
    let slave = MemifPort::open("s", config(MemifRole::Slave, &path, 2)).unwrap();
    let up = slave.wait_connected(Duration::from_secs(20));
    pmd.assert_running();
    assert!(up, "{}", slave.status());
    assert_eq!(slave.connected_queues(), (2, 2));
    assert!(
        slave.peer().unwrap().0.contains("DPDK"),
        "{:?}",
        slave.peer()
    );
    through_testpmd(&slave, 2);
}

/// Throughput through testpmd (benchmark; see docs/benchmarks.md):
/// `cargo test --release -p sluice-dataplane --test memif -- --ignored --nocapture`.
/// One Sluice thread (the calling core) sends bursts of 32 frames and
/// receives them back from testpmd's forwarding core; prints received
/// Mpps for each role and frame size. `SLUICE_BENCH_HUGEPAGES=1` runs
/// testpmd on hugepages (set `vm.nr_hugepages` first).
#[test]
#[ignore]
fn bench_memif_throughput_through_testpmd() {
    if !testpmd_installed() {
        return;
    }
    let hugepages = std::env::var("SLUICE_BENCH_HUGEPAGES").is_ok_and(|v| v == "1");
    let seconds: f64 = std::env::var("SLUICE_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    let mode = std::env::var("SLUICE_BENCH_MODE").unwrap_or_else(|_| "io".into());
    println!("testpmd {mode} forward, hugepages: {hugepages}, {seconds} s per run");
    println!(
        "| Sluice role | frame bytes | received Mpps | Gbit/s | sent Mpps | ring-full retries/s |"
    );
    println!("|---|---|---|---|---|---|");
    for role in [MemifRole::Master, MemifRole::Slave] {
        for len in [64usize, 1500] {
            let path = socket(&format!("bench-{role:?}-{len}"));
            let (port, pmd) = match role {
                MemifRole::Master => {
                    let port = MemifPort::open("m", config(role, &path, 1)).unwrap();
                    let pmd = Testpmd::start_with("client", &path, 1, &mode, hugepages);
                    (port, pmd)
                }
                MemifRole::Slave => {
                    let pmd = Testpmd::start_with("server", &path, 1, &mode, hugepages);
                    (MemifPort::open("s", config(role, &path, 1)).unwrap(), pmd)
                }
            };
            assert!(
                port.wait_connected(Duration::from_secs(20)),
                "{}",
                port.status()
            );
            let pool = PacketPool::new("bench", 8192);
            let mut cache = pool.cache(512);
            let mut tx = port.tx_queue(0).unwrap();
            let mut rx = port.rx_queue(0).unwrap();
            let lines = {
                let mut f = frame(0, 0, len);
                f.resize(len.next_multiple_of(64), 0);
                f
            };
            let (mut batch, mut inbox) = (Batch::new(), Batch::new());
            let run = |secs: f64,
                       batch: &mut Batch,
                       inbox: &mut Batch,
                       cache: &mut PoolCache,
                       tx: &mut dyn TxQueue,
                       rx: &mut dyn RxQueue| {
                let (mut got, mut sent, mut full) = (0u64, 0u64, 0u64);
                let start = Instant::now();
                let mut polls = 0u32;
                loop {
                    while !batch.is_full() {
                        let Some(mut p) = cache.alloc() else { break };
                        p.fill_lines(&lines, len);
                        batch.push(p);
                    }
                    let n = tx.tx_burst(batch, cache);
                    sent += n as u64;
                    if !batch.is_empty() {
                        full += 1;
                    }
                    let r = rx.rx_burst(cache, inbox);
                    got += r as u64;
                    cache.free_batch(inbox);
                    polls += 1;
                    if polls.is_multiple_of(1024) && start.elapsed().as_secs_f64() >= secs {
                        break;
                    }
                }
                let t = start.elapsed().as_secs_f64();
                (got as f64 / t, sent as f64 / t, full as f64 / t)
            };
            run(0.5, &mut batch, &mut inbox, &mut cache, &mut *tx, &mut *rx);
            let (rx_pps, tx_pps, full) = run(
                seconds, &mut batch, &mut inbox, &mut cache, &mut *tx, &mut *rx,
            );
            cache.free_batch(&mut batch);
            println!(
                "| {role:?} | {len} | {:.2} | {:.2} | {:.2} | {:.0} |",
                rx_pps / 1e6,
                rx_pps * (len as f64 + 20.0) * 8.0 / 1e9,
                tx_pps / 1e6,
                full
            );
            drop((tx, rx));
            drop(pmd);
            drop(port);
        }
    }
}

/// Sluice's own cost, without a peer's core (benchmark; see
/// docs/benchmarks.md): one thread drives a Sluice slave and a Sluice
/// master in this process. Each frame is sent by the slave, received and
/// sent back by the master, and received by the slave: two transmits and
/// two receives per frame, all on the calling core.
#[test]
#[ignore]
fn bench_memif_sluice_pair_on_one_core() {
    let seconds: f64 = std::env::var("SLUICE_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    println!("| frame bytes | round trips Mpps | ns per round trip (2 tx + 2 rx) |");
    println!("|---|---|---|");
    for len in [64usize, 1500] {
        let (master, slave) = connected_pair(
            &format!("bench-pair-{len}"),
            1,
            config(MemifRole::Slave, "", 1),
        );
        let pool = PacketPool::new("bench", 8192);
        let mut cache = pool.cache(512);
        let mut m = queues(&*master, 1);
        let mut s = queues(&*slave, 1);
        let lines = {
            let mut f = frame(0, 0, len);
            f.resize(len.next_multiple_of(64), 0);
            f
        };
        let mut batch = Batch::new();
        let mut count = 0u64;
        let mut start = Instant::now();
        let mut warm = true;
        loop {
            while !batch.is_full() {
                let Some(mut p) = cache.alloc() else { break };
                p.fill_lines(&lines, len);
                batch.push(p);
            }
            s.tx[0].tx_burst(&mut batch, &mut cache);
            let mut echo = Batch::new();
            m.rx[0].rx_burst(&mut cache, &mut echo);
            m.tx[0].tx_burst(&mut echo, &mut cache);
            cache.free_batch(&mut echo);
            let mut back = Batch::new();
            count += s.rx[0].rx_burst(&mut cache, &mut back) as u64;
            cache.free_batch(&mut back);
            if count.is_multiple_of(1 << 16) || count & 0xffff < 32 {
                let t = start.elapsed().as_secs_f64();
                if warm && t > 0.5 {
                    warm = false;
                    count = 0;
                    start = Instant::now();
                } else if !warm && t >= seconds {
                    println!(
                        "| {len} | {:.2} | {:.1} |",
                        count as f64 / t / 1e6,
                        t * 1e9 / count as f64
                    );
                    break;
                }
            }
        }
        cache.free_batch(&mut batch);
    }
}
