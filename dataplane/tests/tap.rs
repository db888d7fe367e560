//! The TAP backend against the kernel: the port creates its device inside
//! a namespace of the test's own, the kernel gets an address on it, and
//! the test talks to the kernel through the port (ARP, then ping). The
//! namespace is deleted when the test ends.
//!
//! Needs root; skipped with a message otherwise.

use sluice_dataplane::buf::{Batch, PacketPool, PoolCache};
use sluice_dataplane::io::tap::{TapConfig, TapPort};
use sluice_dataplane::io::{Port, RxQueue, TxQueue};
use sluice_dataplane::testing::netns::{can_run, Netns};
use sluice_dataplane::wire::builder::PacketBuilder;
use std::time::{Duration, Instant};

const OURS: [u8; 6] = [0x02, 0, 0, 0, 0x7a, 0x01];
const BROADCAST: [u8; 6] = [0xff; 6];

fn send(tx: &mut dyn TxQueue, cache: &mut PoolCache, frame: &[u8]) {
    let mut batch = Batch::new();
    let mut p = cache.alloc().unwrap();
    assert!(p.fill(frame));
    batch.push(p);
    assert_eq!(tx.tx_burst(&mut batch, cache), 1);
}

/// The first received frame that `want` accepts, within 3 s.
fn wait_for(
    rx: &mut dyn RxQueue,
    cache: &mut PoolCache,
    want: impl Fn(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut batch = Batch::new();
    while Instant::now() < deadline {
        rx.rx_burst(cache, &mut batch);
        for p in batch.drain(..) {
            let hit = want(p.data()).then(|| p.data().to_vec());
            cache.free(p);
            if hit.is_some() {
                return hit;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

#[test]
fn the_kernel_answers_arp_and_ping_through_a_tap_port() {
    if !can_run("the_kernel_answers_arp_and_ping_through_a_tap_port") {
        return;
    }
    let ns = Netns::new("tap");
    ns.disable_ipv6();
    let port = ns
        .enter(|| {
            TapPort::open(
                "t0",
                "sltap%d",
                TapConfig {
                    port_id: 3,
                    queues: 2,
                },
            )
        })
        .unwrap();
    let dev = port.interface().to_string();
    assert!(dev.starts_with("sltap"), "{dev}");
    let info = port.info();
    assert_eq!((info.driver, info.rx_queues, info.tx_queues), ("tap", 2, 2));
    assert!(info.link_up, "the port brings its device up");
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", &dev]);
    let kernel_mac = ns.mac(&dev);

    let pool = PacketPool::new("t", 512);
    let mut cache = pool.cache(128);
    let mut rx0 = port.rx_queue(0).unwrap();
    let mut rx1 = port.rx_queue(1).unwrap();
    let mut tx = port.tx_queue(0).unwrap();
    assert!(port.tx_queue(0).is_err());

    // Who has 192.0.2.1? The kernel answers to our MAC.
    let who_has = PacketBuilder::new(OURS, BROADCAST)
        .arp(1, OURS, [192, 0, 2, 2], [0; 6], [192, 0, 2, 1])
        .build();
    send(tx.as_mut(), &mut cache, &who_has);
    let is_reply = |f: &[u8]| f.len() >= 42 && f[12..14] == [8, 6] && f[20..22] == [0, 2];
    let reply = wait_for(rx0.as_mut(), &mut cache, is_reply)
        .or_else(|| wait_for(rx1.as_mut(), &mut cache, is_reply))
        .expect("an ARP reply");
    assert_eq!(&reply[..6], &OURS);
    assert_eq!(&reply[22..28], &kernel_mac, "sender hardware address");

    // Echo request; the kernel learned our MAC from the ARP request.
    let ping = PacketBuilder::new(OURS, kernel_mac)
        .ipv4([192, 0, 2, 2], [192, 0, 2, 1])
        .echo_request(0x5a, 1)
        .payload(b"sluice tap")
        .build();
    send(tx.as_mut(), &mut cache, &ping);
    let is_echo_reply = |f: &[u8]| f.len() >= 42 && f[12..14] == [8, 0] && f[23] == 1 && f[34] == 0;
    let pong = wait_for(rx0.as_mut(), &mut cache, is_echo_reply)
        .or_else(|| wait_for(rx1.as_mut(), &mut cache, is_echo_reply))
        .expect("an echo reply");
    assert_eq!(&pong[26..30], &[192, 0, 2, 1]);
    assert!(pong.ends_with(b"sluice tap"));

    let s = port.stats();
    assert_eq!(s.tx_packets, 2);
    assert!(s.rx_packets >= 2, "{s:?}");

    // The device lives as long as the port.
    drop((rx0, rx1, tx));
    drop(port);
    let gone = ns.try_sh(&format!("ip link show dev {dev}"));
    assert!(!gone.status.success(), "{dev} outlived its port");
}
