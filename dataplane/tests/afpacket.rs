//! The AF_PACKET backend against the kernel: each test makes its own
//! network namespace with a veth pair `a`–`b` in it, opens ports on both
//! ends, and sends real frames across. The namespace (and with it the
//! veths) is deleted when the test ends, passed or failed.
//!
//! Needs root; skipped with a message otherwise.

use sluice_dataplane::buf::{Batch, PacketPool, PoolCache};
use sluice_dataplane::io::afpacket::{AfPacketConfig, AfPacketPort, RxRingVersion};
use sluice_dataplane::io::{Port, RxQueue, TxQueue};
use sluice_dataplane::testing::netns::{can_run, veth, Netns};
use sluice_dataplane::wire::builder::PacketBuilder;
use sluice_dataplane::wire::checksum::{self, pseudo_header_v4};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MARK: &[u8] = b"sluice-afpacket-test";

/// A namespace with veth `a`–`b` and IPv6 off (no kernel chatter).
fn lab(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.disable_ipv6();
    veth(&ns, "a", &ns, "b");
    ns
}

fn open(ns: &Netns, dev: &str, cfg: AfPacketConfig) -> Arc<AfPacketPort> {
    ns.enter(|| AfPacketPort::open(dev, dev, cfg)).unwrap()
}

/// UDP frames from b to a, each with the marker and its number.
fn frames(ns: &Netns, n: usize, vlans: &[u16]) -> Vec<Vec<u8>> {
    let (a, b) = (ns.mac("a"), ns.mac("b"));
    (0..n)
        .map(|i| {
            let mut payload = MARK.to_vec();
            payload.extend_from_slice(&(i as u32).to_be_bytes());
            let mut builder = PacketBuilder::new(b, a);
            for &v in vlans {
                builder = builder.vlan(v);
            }
            builder
                .ipv4([198, 18, 0, (i % 250) as u8 + 1], [198, 19, 0, 1])
                .udp(10_000 + i as u16, 4789)
                .payload(&payload)
                .build()
        })
        .collect()
}

fn is_marked(frame: &[u8]) -> bool {
    frame.windows(MARK.len()).any(|w| w == MARK)
}

/// Sends every frame, retrying while the ring is full.
fn send_all(tx: &mut dyn TxQueue, cache: &mut PoolCache, frames: &[Vec<u8>]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut batch = Batch::new();
    for chunk in frames.chunks(32) {
        for f in chunk {
            let mut p = cache.alloc().expect("pool buffer");
            assert!(p.fill(f));
            batch.push(p);
        }
        while !batch.is_empty() {
            tx.tx_burst(&mut batch, cache);
            assert!(Instant::now() < deadline, "transmit ring stayed full");
            if !batch.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    tx.flush();
}

/// Receives from `queues` until `want` marked frames arrived or 5 s passed;
/// returns (queue, frame, rss_hash) of each marked frame.
fn receive(
    queues: &mut [Box<dyn RxQueue>],
    cache: &mut PoolCache,
    want: usize,
) -> Vec<(u16, Vec<u8>, u32)> {
    receive_within(queues, cache, want, Duration::from_secs(5))
}

fn receive_within(
    queues: &mut [Box<dyn RxQueue>],
    cache: &mut PoolCache,
    want: usize,
    within: Duration,
) -> Vec<(u16, Vec<u8>, u32)> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut batch = Batch::new();
    while got.len() < want && Instant::now() < deadline {
        let mut any = false;
        for q in queues.iter_mut() {
            if q.rx_burst(cache, &mut batch) > 0 {
                any = true;
            }
            for p in batch.drain(..) {
                if is_marked(p.data()) {
                    got.push((p.rx_queue, p.data().to_vec(), p.rss_hash));
                }
                cache.free(p);
            }
        }
        if !any {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    got
}

#[test]
fn frames_cross_a_veth_both_ways_spread_over_fanout_queues() {
    if !can_run("frames_cross_a_veth_both_ways_spread_over_fanout_queues") {
        return;
    }
    let ns = lab("afp-fan");
    let a = open(
        &ns,
        "a",
        AfPacketConfig {
            port_id: 1,
            rx_queues: 2,
            ..AfPacketConfig::default()
        },
    );
    let b = open(
        &ns,
        "b",
        AfPacketConfig {
            port_id: 2,
            ..AfPacketConfig::default()
        },
    );
    let info = a.info();
    assert_eq!(
        (info.driver, info.rx_queues, info.tx_queues),
        ("afpacket", 2, 1)
    );
    assert_eq!(info.mac, ns.mac("a"));
    assert!(info.link_up);
    assert_eq!(info.mtu, 1500);

    let pool = PacketPool::new("t", 2048);
    let mut cache = pool.cache(256);
    let mut rx_a: Vec<Box<dyn RxQueue>> = vec![a.rx_queue(0).unwrap(), a.rx_queue(1).unwrap()];
    assert!(a.rx_queue(0).is_err(), "a queue is taken once");
    let mut tx_b = b.tx_queue(0).unwrap();

    let sent = frames(&ns, 400, &[]);
    send_all(tx_b.as_mut(), &mut cache, &sent);
    let got = receive(&mut rx_a, &mut cache, sent.len());
    assert_eq!(got.len(), sent.len(), "every frame arrives once");
    let mut per_queue = [0usize; 2];
    for (q, frame, hash) in &got {
        per_queue[*q as usize] += 1;
        let i = u32::from_be_bytes(frame[frame.len() - 4..].try_into().unwrap()) as usize;
        assert_eq!(frame, &sent[i], "frame {i} arrives as sent");
        assert_ne!(*hash, 0, "TPACKET_V3 reports the kernel's flow hash");
    }
    assert!(
        per_queue.iter().all(|&n| n > 0),
        "fanout spreads 400 flows over both queues: {per_queue:?}"
    );

    // The other way; a's receive queues never see what a sends.
    let mut rx_b: Vec<Box<dyn RxQueue>> = vec![b.rx_queue(0).unwrap()];
    let mut tx_a = a.tx_queue(0).unwrap();
    let back: Vec<Vec<u8>> = frames(&ns, 64, &[])
        .into_iter()
        .map(|mut f| {
            let (dst, src) = (f[6..12].to_vec(), f[..6].to_vec());
            f[..6].copy_from_slice(&dst);
            f[6..12].copy_from_slice(&src);
            f
        })
        .collect();
    send_all(tx_a.as_mut(), &mut cache, &back);
    let got_b = receive(&mut rx_b, &mut cache, back.len());
    assert_eq!(got_b.len(), back.len());
    let echo = receive_within(&mut rx_a, &mut cache, 1, Duration::from_millis(200));
    assert!(
        echo.is_empty(),
        "PACKET_IGNORE_OUTGOING: a saw its own frames"
    );

    let sa = a.stats();
    let sb = b.stats();
    assert_eq!(sb.tx_packets, 400);
    assert_eq!(sa.tx_packets, 64);
    assert!(sa.rx_packets >= 400, "{sa:?}");
    assert_eq!(sa.rx_dropped, 0, "{sa:?}");
    assert_eq!(sb.tx_dropped, 0, "{sb:?}");
}

fn vlan_tags_come_back(version: RxRingVersion) {
    let ns = lab("afp-vlan");
    let a = open(
        &ns,
        "a",
        AfPacketConfig {
            rx_version: version,
            ..AfPacketConfig::default()
        },
    );
    let b = open(&ns, "b", AfPacketConfig::default());
    let pool = PacketPool::new("t", 1024);
    let mut cache = pool.cache(256);
    let mut rx: Vec<Box<dyn RxQueue>> = vec![a.rx_queue(0).unwrap()];
    let mut tx = b.tx_queue(0).unwrap();
    // Untagged, 802.1Q, QinQ (outer 0x88a8): the kernel takes the outer tag
    // into metadata; the port must put it back.
    for tags in [&[][..], &[100], &[200, 300]] {
        let sent = frames(&ns, 20, tags);
        send_all(tx.as_mut(), &mut cache, &sent);
        let got = receive(&mut rx, &mut cache, sent.len());
        assert_eq!(got.len(), sent.len(), "tags {tags:?}");
        for (_, frame, _) in &got {
            let i = u32::from_be_bytes(frame[frame.len() - 4..].try_into().unwrap()) as usize;
            assert_eq!(frame, &sent[i], "tags {tags:?}: frame {i} arrives as sent");
        }
    }
}

#[test]
fn vlan_tags_come_back_on_v3() {
    if can_run("vlan_tags_come_back_on_v3") {
        vlan_tags_come_back(RxRingVersion::V3);
    }
}

#[test]
fn vlan_tags_come_back_on_v2() {
    if can_run("vlan_tags_come_back_on_v2") {
        vlan_tags_come_back(RxRingVersion::V2);
    }
}

/// Whether the L4 checksum of an IPv4 TCP/UDP frame verifies.
fn l4_verifies(frame: &[u8]) -> bool {
    let ihl = (frame[14] & 0x0f) as usize * 4;
    let total = u16::from_be_bytes([frame[16], frame[17]]) as usize;
    let l4 = &frame[14 + ihl..14 + total];
    let pseudo = pseudo_header_v4(
        frame[26..30].try_into().unwrap(),
        frame[30..34].try_into().unwrap(),
        frame[23],
        l4.len() as u16,
    );
    checksum::fold(checksum::sum(l4, pseudo)) == 0xffff
}

#[test]
fn checksums_the_kernel_left_to_the_nic_are_completed() {
    if !can_run("checksums_the_kernel_left_to_the_nic_are_completed") {
        return;
    }
    let ns = lab("afp-csum");
    // The kernel on b sends to 192.0.2.2, "behind" a. With the veth's
    // transmit checksum offload on (the default), its TCP and UDP frames
    // carry only the pseudo-header sum (TP_STATUS_CSUMNOTREADY).
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "b"]);
    let mac_a = sluice_dataplane::testing::netns::format_mac(ns.mac("a"));
    ns.ip(&[
        "neigh",
        "replace",
        "192.0.2.2",
        "lladdr",
        &mac_a,
        "dev",
        "b",
        "nud",
        "permanent",
    ]);
    let offload = ns.sh("ethtool -k b 2>/dev/null | grep '^tx-checksumming' || true");
    for version in [RxRingVersion::V3, RxRingVersion::V2] {
        let a = open(
            &ns,
            "a",
            AfPacketConfig {
                rx_version: version,
                ..AfPacketConfig::default()
            },
        );
        let pool = PacketPool::new("t", 1024);
        let mut cache = pool.cache(256);
        let mut rx = a.rx_queue(0).unwrap();
        ns.enter(|| {
            let udp = std::net::UdpSocket::bind("192.0.2.1:0").unwrap();
            udp.send_to(&[0x5a; 301], "192.0.2.2:9").unwrap();
            // A SYN nobody answers; connect times out.
            let _ = std::net::TcpStream::connect_timeout(
                &"192.0.2.2:80".parse().unwrap(),
                Duration::from_millis(50),
            );
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mut udp_ok, mut tcp_ok) = (false, false);
        let mut batch = Batch::new();
        while !(udp_ok && tcp_ok) && Instant::now() < deadline {
            rx.rx_burst(&mut cache, &mut batch);
            for p in batch.drain(..) {
                let f = p.data();
                if f.len() >= 34 && f[12..14] == [8, 0] && f[30..34] == [192, 0, 2, 2] {
                    let proto = f[23];
                    assert!(l4_verifies(f), "{version:?}: protocol {proto}: {f:02x?}");
                    udp_ok |= proto == 17;
                    tcp_ok |= proto == 6;
                }
                cache.free(p);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        assert!(
            udp_ok && tcp_ok,
            "{version:?}: udp {udp_ok} tcp {tcp_ok}; {offload}"
        );
    }
}

#[test]
fn queues_can_be_taken_again_after_their_handles_go() {
    if !can_run("queues_can_be_taken_again_after_their_handles_go") {
        return;
    }
    let ns = lab("afp-retake");
    let a = open(&ns, "a", AfPacketConfig::default());
    let b = open(&ns, "b", AfPacketConfig::default());
    let pool = PacketPool::new("t", 1024);
    let mut cache = pool.cache(256);
    let mut tx = b.tx_queue(0).unwrap();
    for round in 0..3 {
        let mut rx: Vec<Box<dyn RxQueue>> = vec![a.rx_queue(0).unwrap()];
        let sent = frames(&ns, 50, &[]);
        send_all(tx.as_mut(), &mut cache, &sent);
        let got = receive(&mut rx, &mut cache, sent.len());
        assert_eq!(got.len(), sent.len(), "round {round}");
    }
    assert!(a.tx_queue(1).is_err());
}

#[test]
fn a_frame_queued_at_a_local_socket_survives_the_ring_wrapping() {
    if !can_run("a_frame_queued_at_a_local_socket_survives_the_ring_wrapping") {
        return;
    }
    let ns = lab("afp-wrap");
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "b"]);
    let (mac_a, mac_b) = (ns.mac("a"), ns.mac("b"));
    let a = open(
        &ns,
        "a",
        AfPacketConfig {
            tx_frames: 16,
            ..AfPacketConfig::default()
        },
    );
    let sock = ns.enter(|| std::net::UdpSocket::bind("192.0.2.1:7777").unwrap());
    let pool = PacketPool::new("t", 1024);
    let mut cache = pool.cache(256);
    let mut tx = a.tx_queue(0).unwrap();
    let udp = |port: u16, fill: u8| {
        let mut f = PacketBuilder::new(mac_a, mac_b)
            .ipv4([192, 0, 2, 2], [192, 0, 2, 1])
            .udp(5000, port)
            .payload(&[fill; 1000])
            .build();
        f[40..42].copy_from_slice(&[0, 0]); // no UDP checksum: nothing verifies the payload
        f
    };
    let first: Vec<Vec<u8>> = (0..8).map(|i| udp(7777, i as u8 + 1)).collect();
    send_all(tx.as_mut(), &mut cache, &first);
    std::thread::sleep(Duration::from_millis(50));
    let later: Vec<Vec<u8>> = (0..64).map(|_| udp(9, 0xee)).collect();
    send_all(tx.as_mut(), &mut cache, &later);
    std::thread::sleep(Duration::from_millis(50));
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 2000];
    for i in 0..8u8 {
        let n = sock.recv(&mut buf).expect("datagram");
        assert_eq!(n, 1000);
        assert!(
            buf[..n].iter().all(|&b| b == i + 1),
            "datagram {i}: {:02x?}",
            &buf[..16]
        );
    }
}

#[test]
fn frames_the_kernel_drops_for_a_full_ring_are_counted() {
    if !can_run("frames_the_kernel_drops_for_a_full_ring_are_counted") {
        return;
    }
    let ns = lab("afp-full");
    // A V2 ring of 32 slots that nobody reads.
    let a = open(
        &ns,
        "a",
        AfPacketConfig {
            rx_version: RxRingVersion::V2,
            rx_ring_bytes: 64 << 10,
            ..AfPacketConfig::default()
        },
    );
    let b = open(&ns, "b", AfPacketConfig::default());
    let pool = PacketPool::new("t", 1024);
    let mut cache = pool.cache(256);
    let mut rx: Vec<Box<dyn RxQueue>> = vec![a.rx_queue(0).unwrap()];
    let mut tx = b.tx_queue(0).unwrap();
    let sent = frames(&ns, 100, &[]);
    send_all(tx.as_mut(), &mut cache, &sent);
    std::thread::sleep(Duration::from_millis(50));
    let got = receive_within(&mut rx, &mut cache, sent.len(), Duration::from_millis(300));
    assert_eq!(got.len(), 32, "the ring holds 32 frames");
    let s = a.stats();
    assert_eq!(s.rx_dropped, 68, "{s:?}");
    // Read once, the kernel's count is kept, not lost.
    assert_eq!(a.stats().rx_dropped, 68);
}
