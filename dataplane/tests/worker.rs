//! Workers end to end over in-memory ports: the slow path (ARP, ND, echo,
//! ICMP errors, resolution), several workers, and table swaps under load.

use sluice_dataplane::buf::{Packet, PacketPool};
use sluice_dataplane::engine::{Engine, EngineConfig};
use sluice_dataplane::io::mem::{MemPeer, MemPort, MemPortConfig, RssMode};
use sluice_dataplane::io::Port;
use sluice_dataplane::stages::{router, RouterPipeline};
use sluice_dataplane::state::neighbour::NeighbourCache;
use sluice_dataplane::stats::Event;
use sluice_dataplane::tables::cell::TableCell;
use sluice_dataplane::tables::{NextHopSpec, RouteTarget};
use sluice_dataplane::testing::*;
use sluice_dataplane::wire::builder::PacketBuilder;
use sluice_dataplane::wire::checksum;
use sluice_dataplane::worker::{Worker, WorkerSpec};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

struct Rig {
    worker: Worker<RouterPipeline>,
    peers: Vec<MemPeer>,
    pool: PacketPool,
    now: u64,
}

fn cfg(port_id: u16, mac: [u8; 6], queues: u16) -> MemPortConfig {
    MemPortConfig {
        port_id,
        rx_queues: queues,
        tx_queues: queues,
        ring_size: 2048,
        mac,
        mtu: 1500,
        rss: RssMode::Symmetric,
    }
}

impl Rig {
    fn new() -> Rig {
        let pool = PacketPool::new("rig", 2048);
        let mut ports = Vec::new();
        let mut peers = Vec::new();
        for (i, mac) in [MAC_P0, MAC_P1, MAC_P2].into_iter().enumerate() {
            let (p, peer) = MemPort::new(&format!("p{i}"), cfg(i as u16, mac, 1));
            ports.push(p);
            peers.push(peer);
        }
        let spec = WorkerSpec {
            id: 0,
            core: None,
            rx: ports.iter().map(|p| p.rx_queue(0).unwrap()).collect(),
            tx: ports.iter().map(|p| Some(p.tx_queue(0).unwrap())).collect(),
            pool: pool.clone(),
            tables: TableCell::new(router_lab().build().unwrap()),
            neighbours: Arc::new(NeighbourCache::new(256)),
            drain: Duration::from_micros(100),
            handoff: Default::default(),
        };
        Rig {
            worker: Worker::new(spec, router()),
            peers,
            pool,
            now: 1_000_000_000,
        }
    }

    fn send(&mut self, port: usize, frame: &[u8]) {
        let mut p = self.pool.alloc().unwrap();
        assert!(p.fill(frame));
        self.peers[port].inject(p).unwrap();
        self.now += 1_000_000;
        self.worker.poll(self.now);
        self.worker.flush_all();
    }

    /// Tells the router the client's MAC (10.0.0.10) with a gratuitous ARP reply.
    fn learn_client_v4(&mut self) {
        let reply = PacketBuilder::new(MAC_CLIENT, [0xff; 6])
            .arp(2, MAC_CLIENT, [10, 0, 0, 10], MAC_P0, [10, 0, 0, 1])
            .build();
        self.send(0, &reply);
    }

    /// Tells the router the client's MAC (2001:db8::10) with an unsolicited
    /// neighbour advertisement.
    fn learn_client_v6(&mut self) {
        let client_ip: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let mut na = client_ip.octets().to_vec();
        na.extend_from_slice(&[2, 1]);
        na.extend_from_slice(&MAC_CLIENT);
        let router: Ipv6Addr = "2001:db8::1".parse().unwrap();
        self.send(
            0,
            &client()
                .ipv6(client_ip, router)
                .ttl(255)
                .icmp(136, 0, 0x2000_0000)
                .payload(&na)
                .build(),
        );
    }

    fn take(&self, port: usize) -> Vec<Vec<u8>> {
        let mut v: Vec<Packet> = Vec::new();
        self.peers[port].collect_all(&mut v);
        v.iter().map(|p| p.data().to_vec()).collect()
    }
}

fn client() -> PacketBuilder {
    PacketBuilder::new(MAC_CLIENT, MAC_P0)
}

#[test]
fn arp_request_is_answered_and_the_sender_learned() {
    let mut r = Rig::new();
    r.send(
        0,
        &PacketBuilder::new(MAC_CLIENT, [0xff; 6])
            .arp(1, MAC_CLIENT, [10, 0, 0, 10], [0; 6], [10, 0, 0, 1])
            .build(),
    );
    let out = r.take(0);
    assert_eq!(out.len(), 1, "one ARP reply");
    let expect = PacketBuilder::new(MAC_P0, MAC_CLIENT)
        .arp(2, MAC_P0, [10, 0, 0, 1], MAC_CLIENT, [10, 0, 0, 10])
        .build();
    assert_eq!(out[0], expect);
    // The router now knows the client: a TTL-expired packet gets its ICMP error.
    r.send(
        0,
        &client()
            .ipv4([10, 0, 0, 10], [20, 0, 0, 1])
            .ttl(1)
            .udp(5, 6)
            .build(),
    );
    let icmp = r.take(0);
    assert_eq!(icmp.len(), 1);
    let f = &icmp[0];
    assert_eq!(&f[0..6], &MAC_CLIENT);
    assert_eq!(&f[12..14], &[8, 0]);
    assert!(checksum::verify(&f[14..34]), "IPv4 header checksum");
    assert_eq!(
        &f[26..30],
        &[10, 0, 0, 1],
        "from the receiving port's address"
    );
    assert_eq!(&f[30..34], &[10, 0, 0, 10]);
    assert_eq!((f[34], f[35]), (11, 0), "time exceeded in transit");
    assert!(checksum::verify(&f[34..]), "ICMP checksum");
    assert_eq!(f[34 + 8 + 9], 17, "quotes the original header");
}

#[test]
fn arp_for_another_host_is_not_answered() {
    let mut r = Rig::new();
    r.send(
        0,
        &PacketBuilder::new(MAC_CLIENT, [0xff; 6])
            .arp(1, MAC_CLIENT, [10, 0, 0, 10], [0; 6], [10, 0, 0, 99])
            .build(),
    );
    assert!(r.take(0).is_empty());
}

#[test]
fn echo_request_to_the_router_is_answered() {
    let mut r = Rig::new();
    r.learn_client_v4();
    r.send(
        0,
        &client()
            .ipv4([10, 0, 0, 10], [10, 0, 0, 1])
            .echo_request(7, 1)
            .payload(b"ping")
            .build(),
    );
    let out = r.take(0);
    assert_eq!(out.len(), 1);
    let expect = PacketBuilder::new(MAC_P0, MAC_CLIENT)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 10])
        .icmp(0, 0, 7 << 16 | 1)
        .payload(b"ping")
        .build();
    assert_eq!(out[0], expect);
}

#[test]
fn neighbour_solicitation_is_answered_with_an_advertisement() {
    let mut r = Rig::new();
    let router_ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let client_ip: Ipv6Addr = "2001:db8::10".parse().unwrap();
    let mut body = router_ip.octets().to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&MAC_CLIENT);
    let ns = PacketBuilder::new(MAC_CLIENT, [0x33, 0x33, 0xff, 0, 0, 1])
        .ipv6(client_ip, "ff02::1:ff00:1".parse::<Ipv6Addr>().unwrap())
        .ttl(255)
        .icmp(135, 0, 0)
        .payload(&body)
        .build();
    r.send(0, &ns);
    let out = r.take(0);
    assert_eq!(out.len(), 1, "one advertisement");
    let mut na_body = router_ip.octets().to_vec();
    na_body.extend_from_slice(&[2, 1]);
    na_body.extend_from_slice(&MAC_P0);
    let expect = PacketBuilder::new(MAC_P0, MAC_CLIENT)
        .ipv6(router_ip, client_ip)
        .ttl(255)
        .icmp(136, 0, 0x6000_0000)
        .payload(&na_body)
        .build();
    assert_eq!(out[0], expect);
    // Hop limit below 255 is not neighbour discovery (RFC 4861 §7.1.1).
    let mut bad = ns.clone();
    bad[14 + 7] = 64;
    r.send(0, &bad);
    assert!(r.take(0).is_empty());
}

#[test]
fn unresolved_next_hop_is_solicited_then_forwarded() {
    let mut r = Rig::new();
    let frame = client()
        .ipv4([10, 0, 0, 10], [70, 0, 0, 1])
        .udp(1, 2)
        .build();
    r.send(0, &frame);
    r.send(0, &frame);
    let arp = r.take(1);
    assert_eq!(arp.len(), 1, "one request, not one per packet");
    let expect = PacketBuilder::new(MAC_P1, [0xff; 6])
        .arp(1, MAC_P1, [10, 0, 1, 1], [0; 6], [10, 0, 1, 77])
        .frame_len(60)
        .build();
    assert_eq!(arp[0], expect);
    let gw = [2, 0, 0, 0, 0x77, 0x77];
    r.send(
        1,
        &PacketBuilder::new(gw, MAC_P1)
            .arp(2, gw, [10, 0, 1, 77], MAC_P1, [10, 0, 1, 1])
            .build(),
    );
    r.send(0, &frame);
    let fwd = r.take(1);
    assert_eq!(fwd.len(), 1);
    assert_eq!(&fwd[0][0..6], &gw);
    let stats = r.worker.stats().snapshot();
    assert_eq!(stats.drops["neighbour_unresolved"], 2);
    assert_eq!(stats.events["arp_request_sent"], 1);
}

#[test]
fn ipv6_packet_too_big_reports_the_mtu() {
    let mut r = Rig::new();
    // Teach the router the client's MAC through a neighbour advertisement.
    let client_ip: Ipv6Addr = "2001:db8::10".parse().unwrap();
    r.learn_client_v6();
    r.send(
        0,
        &client()
            .ipv6(client_ip, "2001:db8:2::9".parse::<Ipv6Addr>().unwrap())
            .udp(1, 2)
            .frame_len(14 + 1400)
            .build(),
    );
    let out = r.take(0);
    assert_eq!(out.len(), 1);
    let f = &out[0];
    assert_eq!(&f[0..6], &MAC_CLIENT);
    assert_eq!(f[14 + 6], 58);
    assert_eq!(f[54], 2, "packet too big");
    assert_eq!(u32::from_be_bytes([f[58], f[59], f[60], f[61]]), 1300);
    assert!(f.len() <= 14 + 1280, "fits the minimum MTU");
}

#[test]
fn icmp_errors_are_rate_limited() {
    let mut r = Rig::new();
    r.learn_client_v4();
    let frame = client()
        .ipv4([10, 0, 0, 10], [99, 0, 0, 1])
        .udp(1, 2)
        .build();
    // 200 packets within 200 µs: the bucket (burst 50, 1000/s) lets ~50 through.
    for _ in 0..200 {
        let mut p = r.pool.alloc().unwrap();
        p.fill(&frame);
        r.peers[0].inject(p).unwrap();
        r.now += 1000;
        r.worker.poll(r.now);
    }
    r.worker.flush_all();
    let sent = r.take(0).len();
    assert!((50..=51).contains(&sent), "sent {sent} ICMP errors");
    assert_eq!(
        r.worker.stats().events(Event::IcmpRateLimited) as usize,
        200 - sent
    );
}

#[test]
fn no_icmp_error_about_an_icmp_error() {
    let mut r = Rig::new();
    r.learn_client_v4();
    r.send(
        0,
        &client()
            .ipv4([10, 0, 0, 10], [20, 0, 0, 1])
            .ttl(1)
            .icmp(3, 1, 0)
            .payload(&[0; 28])
            .build(),
    );
    assert!(r.take(0).is_empty());
}

/// Two workers, four queues per port: every packet is forwarded exactly
/// once, and a table published mid-stream is picked up without loss.
#[test]
fn two_workers_forward_everything_across_a_table_swap() {
    let workers = 2;
    let (p0, peer0) = MemPort::new("p0", cfg(0, MAC_P0, 4));
    let (p1, peer1) = MemPort::new("p1", cfg(1, MAC_P1, 4));
    let (p2, peer2) = MemPort::new("p2", cfg(2, MAC_P2, 4));
    let ports: Vec<Arc<dyn Port>> = vec![p0, p1, p2];
    let engine = Engine::start(
        ports,
        router_lab().build().unwrap(),
        &EngineConfig {
            workers,
            ..Default::default()
        },
        router,
    )
    .unwrap();
    // At most 1024 packets in flight, fewer than one transmit ring holds, so a
    // worker descheduled on a busy 2-core machine cannot overflow its output.
    let pool = PacketPool::new("gen", 1024);
    let total = 20_000u32;
    let mut got_p1 = 0;
    let mut got_p2 = 0;
    let mut buf = Vec::new();
    for i in 0..total {
        if i == total / 2 {
            // Move 20.0.0.0/8 to the p2 gateway.
            let mut b = router_lab();
            b.route(
                0,
                "20.0.0.0".parse().unwrap(),
                8,
                RouteTarget::Via(vec![NextHopSpec::gateway("10.0.2.254".parse().unwrap())]),
            )
            .unwrap();
            engine.publish(b.build().unwrap());
        }
        if i % 32 == 0 {
            // Drain the output rings as a NIC's peer would; a full ring is a
            // real (counted) drop.
            got_p1 += peer1.collect_all(&mut buf);
            got_p2 += peer2.collect_all(&mut buf);
            buf.clear();
        }
        let f = client()
            .ipv4([10, 0, 0, 10], Ipv4Addr::from(0x1400_0000 + i))
            .udp((i % 50000) as u16 + 1, 80)
            .build();
        let mut p = loop {
            match pool.alloc() {
                Some(p) => break p,
                None => {
                    got_p1 += peer1.collect_all(&mut buf);
                    got_p2 += peer2.collect_all(&mut buf);
                    buf.clear();
                }
            }
        };
        p.fill(&f);
        let mut p = Some(p);
        while let Some(pkt) = p.take() {
            if let Err(back) = peer0.inject(pkt) {
                p = Some(back);
                got_p1 += peer1.collect_all(&mut buf);
                got_p2 += peer2.collect_all(&mut buf);
                buf.clear();
                std::thread::yield_now();
            }
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while got_p1 + got_p2 < total as usize && std::time::Instant::now() < deadline {
        got_p1 += peer1.collect_all(&mut buf);
        got_p2 += peer2.collect_all(&mut buf);
        buf.clear();
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats = engine.stats();
    engine.stop();
    assert_eq!(
        got_p1 + got_p2,
        total as usize,
        "every packet forwarded once; drops: {:?}",
        stats.drops
    );
    assert!(got_p2 > 0, "the new generation took effect");
    assert!(got_p1 > 0, "the old generation served the first half");
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.generation, 2, "both workers run generation 2");
    assert_eq!(peer0.rx_queues(), 4);
}

#[test]
fn ipv4_without_df_is_fragmented_to_the_egress_mtu() {
    let mut r = Rig::new();
    // Options: Router Alert (copied into every fragment) and Record Route
    // (first fragment only).
    let options = [0x94, 4, 0, 0, 7, 7, 4, 0, 0, 0, 0, 1];
    let payload: Vec<u8> = (0..2000u32).map(|i| (i * 7) as u8).collect();
    let frame = client()
        .ipv4([10, 0, 0, 10], [10, 0, 2, 254])
        .ipv4_frag(0x4242, 0)
        .ipv4_options(&options)
        .ip_proto(253)
        .payload(&payload)
        .build();
    r.send(0, &frame);
    let frags = r.take(2);
    assert_eq!(
        frags.len(),
        2,
        "2032 bytes of IP packet over a 1300-byte MTU"
    );
    let mut reassembled = vec![0u8; payload.len()];
    let mut covered = 0;
    for (i, f) in frags.iter().enumerate() {
        assert_eq!(&f[0..6], &MAC_GW2);
        assert_eq!(&f[6..12], &MAC_P2);
        let ip = &f[14..];
        let hl = (ip[0] & 0xf) as usize * 4;
        let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        assert!(total <= 1300, "fragment {i} is {total} bytes");
        assert_eq!(f.len(), 14 + total);
        assert!(checksum::verify(&ip[..hl]), "fragment {i} header checksum");
        assert_eq!(
            u16::from_be_bytes([ip[4], ip[5]]),
            0x4242,
            "same identification"
        );
        assert_eq!(ip[8], 63, "TTL decremented");
        let field = u16::from_be_bytes([ip[6], ip[7]]);
        let offset = (field & 0x1fff) as usize * 8;
        let mf = field & 0x2000 != 0;
        assert_eq!(mf, i == 0, "MF on all but the last");
        if i == 0 {
            assert_eq!(
                &ip[20..hl],
                &options,
                "the first fragment carries every option"
            );
            assert_eq!((total - hl) % 8, 0);
        } else {
            assert_eq!(hl, 24, "later fragments carry only copied options");
            assert_eq!(&ip[20..24], &[0x94, 4, 0, 0]);
        }
        let data = &ip[hl..total];
        reassembled[offset..offset + data.len()].copy_from_slice(data);
        covered += data.len();
    }
    assert_eq!(covered, payload.len());
    assert_eq!(reassembled, payload);
    assert_eq!(r.worker.stats().events(Event::Fragmented), 1);
}

#[test]
fn ipv6_echo_request_to_the_router_is_answered() {
    let mut r = Rig::new();
    let client_ip: Ipv6Addr = "2001:db8::10".parse().unwrap();
    let router_ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
    r.learn_client_v6();
    r.send(
        0,
        &client()
            .ipv6(client_ip, router_ip)
            .echo_request(9, 3)
            .payload(b"ping6")
            .build(),
    );
    let out = r.take(0);
    assert_eq!(out.len(), 1);
    let expect = PacketBuilder::new(MAC_P0, MAC_CLIENT)
        .ipv6(router_ip, client_ip)
        .icmp(129, 0, 9 << 16 | 3)
        .payload(b"ping6")
        .build();
    assert_eq!(out[0], expect);
    // A corrupted checksum is not answered.
    let mut bad = client()
        .ipv6(client_ip, router_ip)
        .echo_request(9, 4)
        .payload(b"ping6")
        .build();
    bad[54 + 2] ^= 0xff;
    r.send(0, &bad);
    assert!(r.take(0).is_empty());
}

#[test]
fn busy_time_counts_polls_that_found_packets() {
    let mut r = Rig::new();
    let frame = client()
        .ipv4([10, 0, 0, 10], [20, 0, 0, 1])
        .udp(1, 2)
        .build();
    r.send(0, &frame); // a busy poll
    r.now += 5_000_000;
    r.worker.poll(r.now); // an idle poll 5 ms later: the busy poll's 5 ms count
    r.now += 1_000_000;
    r.worker.poll(r.now); // idle after idle: nothing more
    let s = r.worker.stats().snapshot();
    assert_eq!(s.busy_ns, 5_000_000);
    assert_eq!(s.polls, 3);
}
