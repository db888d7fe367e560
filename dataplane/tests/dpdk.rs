//! The DPDK port over virtual devices (`--features dpdk`).
//!
//! EAL can be initialised once per process, so this binary holds one test
//! that runs the cases in order, sharing one EAL: no hugepages
//! (`--no-huge -m 512`), no shared runtime files (`--no-shconf`), no PCI,
//! the virtual devices the cases use.
//!
//! * `router_between_rings`: frames injected into `net_ring0` are routed by
//!   a worker (the router pipeline, polled here) out of `net_ring1`, read
//!   back and checked byte by byte (MACs rewritten, TTL decremented,
//!   checksum updated, payload and order kept); once with mbufs carried
//!   zero-copy through the worker, once copied into its pool, and every
//!   buffer of both pools is back at the end.
//! * `threaded_worker_between_nulls`: an engine worker thread forwards what
//!   `net_null0` generates into `net_null1` (which discards it); counts
//!   agree and every mbuf is back in the pool after the worker stops (its
//!   per-lcore cache included).

use sluice_dataplane::buf::{Batch, PacketPool};
use sluice_dataplane::engine::{Engine, EngineConfig};
use sluice_dataplane::io::dpdk::{Dpdk, DpdkConfig, DpdkPort, DpdkPortConfig};
use sluice_dataplane::io::Port;
use sluice_dataplane::stages::{router, Action, Burst, Context, Stage};
use sluice_dataplane::state::neighbour::NeighbourCache;
use sluice_dataplane::tables::cell::TableCell;
use sluice_dataplane::testing::*;
use sluice_dataplane::wire::builder::PacketBuilder;
use sluice_dataplane::worker::{Worker, WorkerSpec};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn dpdk() -> &'static Dpdk {
    let cfg = DpdkConfig {
        eal_args: [
            "--no-huge",
            "-m",
            "512",
            "--no-pci",
            "--no-telemetry",
            // No runtime files under /var/run/dpdk: nothing to clean up.
            "--no-shconf",
            "--log-level",
            "lib.eal:warning",
            "--vdev",
            "net_ring0",
            "--vdev",
            "net_ring1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        mbufs: 8191,
        mbuf_cache: 128,
    };
    Dpdk::init(&cfg).expect("EAL starts")
}

fn affinity() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the set is as large as the size passed.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(rc, 0);
    // SAFETY: CPU_ISSET only reads the set.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

#[test]
fn dpdk_ports() {
    // rte_eal_init pins the calling thread to its main lcore; init puts
    // the thread's affinity back.
    let before = affinity();
    let dpdk = dpdk();
    assert_eq!(affinity(), before);
    // A second init with the same arguments is the same instance; with
    // others it is refused.
    assert!(std::ptr::eq(dpdk, Dpdk::init(dpdk.config()).unwrap()));
    let mut other = dpdk.config().clone();
    other.mbufs += 1;
    let e = Dpdk::init(&other).unwrap_err().to_string();
    assert!(e.contains("already initialised"), "{e}");

    router_between_rings(dpdk, true);
    router_between_rings(dpdk, false);
    threaded_worker_between_nulls(dpdk);
}

fn udp_frame(seq: u32) -> Vec<u8> {
    let dst = Ipv4Addr::new(20, (seq >> 16) as u8, (seq >> 8) as u8, seq as u8);
    PacketBuilder::new(MAC_CLIENT, MAC_P0)
        .ipv4(Ipv4Addr::new(10, 0, 0, 10), dst)
        .ttl(64)
        .udp(1000 + (seq % 1000) as u16, 53)
        .payload(&seq.to_be_bytes())
        .frame_len(64 + (seq % 200) as usize)
        .build()
}

fn router_between_rings(dpdk: &'static Dpdk, zero_copy: bool) {
    let before = dpdk.mbufs_available();
    let ring = |id: u16, dev: &str| {
        DpdkPort::open(
            dpdk,
            &format!("p{id}"),
            dev,
            DpdkPortConfig {
                port_id: id,
                zero_copy,
                ..DpdkPortConfig::default()
            },
        )
        .expect("net_ring opens")
    };
    // net_ring is a loopback: what queue q sends, queue q receives. The
    // test sends into p0 and receives from p1; the worker does the rest.
    let p0 = ring(0, "net_ring0");
    let p1 = ring(1, "net_ring1");
    let e = DpdkPort::open(dpdk, "again", "net_ring0", DpdkPortConfig::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("already open"), "{e}");
    let e = DpdkPort::open(dpdk, "bad", "net_bogus0", DpdkPortConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("port bad") && e.contains("net_bogus0"), "{e}");
    let info = p0.info();
    assert_eq!(
        (info.driver, info.rx_queues, info.tx_queues),
        ("dpdk", 1, 1)
    );

    let pool = PacketPool::new("test", 4096);
    let mut cache = pool.cache(256);
    let spec = WorkerSpec {
        id: 0,
        core: None,
        rx: vec![p0.rx_queue(0).unwrap()],
        tx: vec![None, Some(p1.tx_queue(0).unwrap()), None],
        pool: pool.clone(),
        tables: TableCell::new(router_lab().build().unwrap()),
        neighbours: Arc::new(NeighbourCache::new(256)),
        drain: Duration::from_micros(100),
        handoff: Default::default(),
    };
    let mut worker = Worker::new(spec, router());
    let mut inject = p0.tx_queue(0).unwrap();
    let mut collect = p1.rx_queue(0).unwrap();
    assert!(p0.tx_queue(0).is_err(), "queues are exclusive");

    const TOTAL: u32 = 3000;
    let mut now = 1_000_000_000u64;
    let (mut sent, mut seen) = (0u32, 0u32);
    let mut batch = Batch::new();
    while seen < TOTAL {
        while sent < TOTAL && !batch.is_full() {
            let mut p = cache.alloc().unwrap();
            assert!(p.fill(&udp_frame(sent)));
            batch.push(p);
            sent += 1;
        }
        inject.tx_burst(&mut batch, &mut cache);
        now += 10_000;
        worker.poll(now);
        worker.flush_all();
        collect.rx_burst(&mut cache, &mut batch);
        for p in batch.drain(..) {
            let mut expected = udp_frame(seen);
            expected[0..6].copy_from_slice(&MAC_GW1);
            expected[6..12].copy_from_slice(&MAC_P1);
            expected[22] -= 1; // TTL
            let sum = u16::from_be_bytes([expected[24], expected[25]]);
            // RFC 1624: TTL is the high byte of its word.
            let sum = sluice_dataplane::wire::checksum::update16(sum, 0x4000 | 17, 0x3f00 | 17);
            expected[24..26].copy_from_slice(&sum.to_be_bytes());
            assert_eq!(p.data(), &expected[..], "packet {seen}");
            assert_eq!((p.rx_port, p.rx_queue), (1, 0));
            // An mbuf carried as it is, or a copy in the worker's pool.
            assert_eq!(p.buffer_index() == u32::MAX, zero_copy);
            seen += 1;
            cache.free(p);
        }
    }
    let s = worker.stats().snapshot();
    assert_eq!(
        (s.rx_packets, s.tx_packets, s.dropped),
        (TOTAL as u64, TOTAL as u64, 0)
    );
    let (s0, s1) = (p0.stats(), p1.stats());
    assert_eq!((s0.rx_packets, s0.tx_packets), (TOTAL as u64, TOTAL as u64));
    assert_eq!((s1.rx_packets, s1.tx_packets), (TOTAL as u64, TOTAL as u64));
    assert_eq!(
        s0.rx_dropped + s0.tx_dropped + s1.rx_dropped + s1.tx_dropped,
        0
    );
    drop((worker, inject, collect, p0, p1));
    drop(cache);
    assert_eq!(pool.available(), 4096, "every pool buffer is back");
    assert_eq!(dpdk.mbufs_available(), before, "every mbuf is back");
}

/// Sends everything to port 1, untouched.
#[derive(Clone, Copy)]
struct ToPort1;

impl Stage for ToPort1 {
    fn process(&mut self, _cx: &Context<'_>, burst: &mut Burst) {
        let n = burst.pkts.len();
        burst.action[..n].fill(Action::Tx(1));
    }
}

fn threaded_worker_between_nulls(dpdk: &'static Dpdk) {
    let before = dpdk.mbufs_available();
    let null = |id: u16, devargs: &str| -> Arc<dyn Port> {
        DpdkPort::open(
            dpdk,
            &format!("n{id}"),
            devargs,
            DpdkPortConfig {
                port_id: id,
                ..DpdkPortConfig::default()
            },
        )
        .expect("net_null opens")
    };
    // Probed now, not named in the EAL arguments.
    let ports = vec![null(0, "net_null0"), null(1, "net_null1,no-rx=1")];
    let engine = Engine::start(
        ports.clone(),
        router_lab().build().unwrap(),
        &EngineConfig {
            workers: 1,
            pool_size: 1024,
            ..EngineConfig::default()
        },
        || ToPort1,
    )
    .unwrap();
    let t0 = Instant::now();
    while engine.stats().tx_packets < 100_000 && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    engine.stop();
    let s = ports[1].stats();
    assert!(s.tx_packets >= 100_000, "{s:?}");
    let r = ports[0].stats();
    assert_eq!(r.rx_packets, s.tx_packets + s.tx_dropped);
    drop(ports);
    assert_eq!(dpdk.mbufs_available(), before, "every mbuf is back");
}
