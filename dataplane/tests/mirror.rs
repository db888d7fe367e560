//! Port mirroring in a service chain, through a worker over in-memory
//! ports: a chain firewall → mirror → NAT; the mirror port gets exact
//! copies of the packets as they are at the mirror hop (before the NAT
//! going out, after it coming back), the egress gets the translated ones;
//! a forward-only mirror; and the copies that cannot be made (an empty
//! pool, a mirror port without link, a full transmit queue) are counted
//! and never hold up the originals.

use sluice_dataplane::buf::{Packet, PacketPool};
use sluice_dataplane::io::mem::{MemPeer, MemPort, MemPortConfig, RssMode};
use sluice_dataplane::io::Port;
use sluice_dataplane::stages::service::ServiceConfig;
use sluice_dataplane::stages::{service_pipeline, ServicePipeline};
use sluice_dataplane::state::neighbour::NeighbourCache;
use sluice_dataplane::stats::{DropReason, Event, WorkerStats};
use sluice_dataplane::tables::cell::TableCell;
use sluice_dataplane::tables::chain::*;
use sluice_dataplane::tables::Tables;
use sluice_dataplane::testing::*;
use sluice_dataplane::wire::builder::PacketBuilder;
use sluice_dataplane::worker::{Worker, WorkerSpec};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

const MAC_MIRROR: [u8; 6] = [2, 0, 0, 0, 0, 0x44];
const MIRROR: u16 = 3;
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const SERVER: Ipv4Addr = Ipv4Addr::new(20, 0, 0, 5);
/// Where the NAT puts the client.
const OUTSIDE_CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

fn net(a: [u8; 4], len: u8) -> Prefix {
    Prefix {
        family: 4,
        addr: u32::from_be_bytes(a) as u128,
        len,
    }
}

fn hop(name: &str, f: Function) -> Hop {
    Hop {
        name: name.into(),
        candidates: vec![f].into(),
    }
}

/// The router lab plus a mirror port; one chain for TCP from 10.0.0.0/24:
/// firewall (port 80 only) → mirror → NAT to 192.0.2.0/24, and its replies.
fn tables(forward: bool, reverse: bool) -> Tables {
    let mut b = router_lab();
    b.port("mirror", 0, MAC_MIRROR, 1500);
    b.neighbour(0, CLIENT.into(), MAC_CLIENT);
    let mut t = b.build().unwrap();
    let clients = net([10, 0, 0, 0], 24);
    let outside = net([192, 0, 2, 0], 24);
    let fw = Firewall {
        rules: vec![FirewallRule {
            tuple: TupleMatch {
                proto: 6,
                dport: PortRange::one(80),
                ..Default::default()
            },
            allow: true,
        }]
        .into(),
        default_allow: false,
        allow_non_ip: true,
    };
    let parts = ChainParts {
        chains: vec![Chain {
            name: "tap".into(),
            fail: FailMode::Closed,
            first: 0,
            len: 3,
        }],
        hops: vec![
            hop("fw", Function::Firewall(fw)),
            hop(
                "span",
                Function::Mirror(Mirror {
                    port: MIRROR,
                    forward,
                    reverse,
                }),
            ),
            hop(
                "nat",
                Function::Nat(Netmap {
                    inside: clients,
                    outside,
                }),
            ),
        ],
        classifiers: vec![
            Classifier {
                chain: 0,
                direction: Direction::Forward,
                network: Some(0),
                port: None,
                tuple: TupleMatch {
                    src: clients,
                    proto: 6,
                    ..Default::default()
                },
            },
            Classifier {
                chain: 0,
                direction: Direction::Reverse,
                network: None,
                port: None,
                tuple: TupleMatch {
                    dst: outside,
                    proto: 6,
                    ..Default::default()
                },
            },
        ],
        ..Default::default()
    };
    t.chains = ChainTable::build(parts, Arc::default()).unwrap();
    t
}

struct Rig {
    worker: Worker<ServicePipeline>,
    stats: Arc<WorkerStats>,
    peers: Vec<MemPeer>,
    /// Where the test's frames come from (the worker's pool is its own).
    frames: PacketPool,
    tables: Tables,
    now: u64,
}

fn cfg(port_id: u16, mac: [u8; 6], ring_size: usize) -> MemPortConfig {
    MemPortConfig {
        port_id,
        rx_queues: 1,
        tx_queues: 1,
        ring_size,
        mac,
        mtu: 1500,
        rss: RssMode::None,
    }
}

impl Rig {
    /// A worker over p0, p1, p2 and the mirror port, with a pool of
    /// `pool` buffers and a mirror port ring of `mirror_ring` packets.
    fn new(tables: Tables, pool: u32, mirror_ring: usize) -> Rig {
        let mut ports = Vec::new();
        let mut peers = Vec::new();
        for (i, mac) in [MAC_P0, MAC_P1, MAC_P2, MAC_MIRROR].into_iter().enumerate() {
            let ring = if i == MIRROR as usize {
                mirror_ring
            } else {
                1024
            };
            let (p, peer) = MemPort::new(&format!("m{i}"), cfg(i as u16, mac, ring));
            ports.push(p);
            peers.push(peer);
        }
        let spec = WorkerSpec {
            id: 0,
            core: None,
            rx: ports.iter().map(|p| p.rx_queue(0).unwrap()).collect(),
            tx: ports.iter().map(|p| Some(p.tx_queue(0).unwrap())).collect(),
            pool: PacketPool::new("mirror-worker", pool),
            tables: TableCell::new(tables.clone()),
            neighbours: Arc::new(NeighbourCache::new(256)),
            drain: Duration::from_micros(100),
            handoff: Default::default(),
        };
        let worker = Worker::new(spec, service_pipeline(&ServiceConfig::default()));
        Rig {
            stats: worker.stats(),
            worker,
            peers,
            frames: PacketPool::new("mirror-frames", 1024),
            tables,
            now: 1_000_000_000,
        }
    }

    /// Injects the frames on `port` and runs one poll (one burst).
    fn send(&mut self, port: usize, frames: &[Vec<u8>]) {
        for f in frames {
            let mut p = self.frames.alloc().unwrap();
            assert!(p.fill(f));
            self.peers[port].inject(p).unwrap();
        }
        self.now += 1_000_000;
        self.worker.poll(self.now);
        self.worker.flush_all();
    }

    fn take(&self, port: usize) -> Vec<Vec<u8>> {
        let mut v: Vec<Packet> = Vec::new();
        self.peers[port].collect_all(&mut v);
        v.iter().map(|p| p.data().to_vec()).collect()
    }

    fn span(&self) -> HopCount {
        self.tables.chains.hop_count(1)
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.stats.drops(r)
    }
}

fn syn(sport: u16, dport: u16) -> Vec<u8> {
    PacketBuilder::new(MAC_CLIENT, MAC_P0)
        .ipv4(CLIENT, SERVER)
        .tcp(sport, dport, 0x02)
        .payload(&[0x5a; 40])
        .build()
}

fn reply(dport: u16) -> Vec<u8> {
    PacketBuilder::new(MAC_GW1, MAC_P1)
        .ipv4(SERVER, OUTSIDE_CLIENT)
        .tcp(80, dport, 0x12)
        .build()
}

fn addrs(f: &[u8]) -> (Ipv4Addr, Ipv4Addr) {
    let ip = &f[14..34];
    (
        Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
    )
}

#[test]
fn the_mirror_port_gets_exact_copies_as_they_are_at_the_hop() {
    let mut r = Rig::new(tables(true, true), 1024, 1024);
    let requests: Vec<Vec<u8>> = (0..3).map(|i| syn(40000 + i, 80)).collect();
    r.send(0, &requests);
    // Out of the chain and routed: translated by the NAT.
    let out = r.take(1);
    assert_eq!(out.len(), 3);
    for f in &out {
        assert_eq!(addrs(f), (OUTSIDE_CLIENT, SERVER));
        assert_eq!(&f[0..6], &MAC_GW1);
    }
    // The copies: byte for byte the frames as received (the firewall
    // before the mirror changes nothing; the NAT after it has not run).
    assert_eq!(r.take(MIRROR as usize), requests);

    // A reply runs the chain backwards: the NAT first, then the mirror,
    // so its copy has the client's own address back, and nothing else
    // changed (MACs and TTL as received).
    let back = reply(40000);
    r.send(1, std::slice::from_ref(&back));
    let to_client = r.take(0);
    assert_eq!(to_client.len(), 1);
    assert_eq!(addrs(&to_client[0]), (SERVER, CLIENT));
    let copies = r.take(MIRROR as usize);
    assert_eq!(copies.len(), 1);
    // What the server would have sent to the client's own address: the
    // NAT's incremental checksum updates give the same bytes.
    let expected = PacketBuilder::new(MAC_GW1, MAC_P1)
        .ipv4(SERVER, CLIENT)
        .tcp(80, 40000, 0x12)
        .build();
    assert_eq!(copies[0], expected);

    // The firewall, before the mirror, drops port 22: no copy of it.
    r.send(0, &[syn(40100, 22)]);
    assert!(r.take(MIRROR as usize).is_empty());
    assert_eq!(r.drops(DropReason::ChainDenied), 1);

    let c = r.span();
    assert_eq!(c.mirrored, 4);
    assert_eq!(
        c.mirrored_bytes,
        (requests.iter().map(Vec::len).sum::<usize>() + back.len()) as u64
    );
    assert_eq!(c.mirror_dropped, 0);
    assert_eq!((c.forward_packets, c.reverse_packets), (3, 1));
    assert_eq!(r.stats.events(Event::CopySent), 4);
}

#[test]
fn a_forward_mirror_copies_requests_only() {
    let mut r = Rig::new(tables(true, false), 1024, 1024);
    r.send(0, &[syn(40000, 80)]);
    assert_eq!(r.take(1).len(), 1);
    assert_eq!(r.take(MIRROR as usize).len(), 1);
    r.send(1, &[reply(40000)]);
    assert_eq!(r.take(0).len(), 1, "the reply passes");
    assert!(r.take(MIRROR as usize).is_empty(), "and is not copied");
    let c = r.span();
    assert_eq!((c.mirrored, c.reverse_packets), (1, 1));
}

#[test]
fn an_empty_pool_drops_copies_not_originals() {
    // The worker's pool holds 8 buffers; the burst has 20 packets.
    let mut r = Rig::new(tables(true, true), 8, 1024);
    let burst: Vec<Vec<u8>> = (0..20).map(|i| syn(41000 + i, 80)).collect();
    r.send(0, &burst);
    assert_eq!(r.take(1).len(), 20, "every original goes on");
    let copies = r.take(MIRROR as usize);
    assert_eq!(copies.len(), 8);
    assert_eq!(copies, burst[..8], "the first eight, exact");
    let c = r.span();
    assert_eq!((c.mirrored, c.mirror_dropped), (8, 12));
    assert_eq!(r.drops(DropReason::CopyNoBuffer), 12);
    // The copies were freed when taken: the next burst is copied again.
    r.send(0, &burst[..5]);
    assert_eq!(r.take(1).len(), 5);
    assert_eq!(r.take(MIRROR as usize).len(), 5);
    assert_eq!(r.span().mirror_dropped, 12);
}

#[test]
fn a_mirror_port_without_link_counts_its_copies_dropped() {
    let mut r = Rig::new(tables(true, true), 1024, 1024);
    r.tables.chains.links().set(MIRROR, false);
    r.send(0, &[syn(40000, 80), syn(40001, 80)]);
    assert_eq!(r.take(1).len(), 2);
    assert!(r.take(MIRROR as usize).is_empty());
    assert_eq!(r.span().mirror_dropped, 2);
    assert_eq!(r.drops(DropReason::CopyPortDown), 2);
    r.tables.chains.links().set(MIRROR, true);
    r.send(0, &[syn(40002, 80)]);
    assert_eq!(r.take(MIRROR as usize).len(), 1);
}

#[test]
fn a_full_mirror_queue_counts_the_copies_it_refused() {
    // The mirror port's ring holds 4 packets and nobody drains it.
    let mut r = Rig::new(tables(true, true), 1024, 4);
    let burst: Vec<Vec<u8>> = (0..10).map(|i| syn(42000 + i, 80)).collect();
    r.send(0, &burst);
    assert_eq!(r.take(1).len(), 10);
    assert_eq!(r.take(MIRROR as usize).len(), 4);
    let c = r.span();
    assert_eq!((c.mirrored, c.mirror_dropped), (10, 6));
    assert_eq!(r.drops(DropReason::CopyTxFull), 6);
}

/// An ETHERNET chain from p0 to p2 whose one hop is a mirror: frames for
/// other hosts (IP and ARP alike) leave the other end unchanged, and the
/// mirror port gets the same bytes, both ways.
#[test]
fn a_mirror_in_an_ethernet_chain_copies_frames_unchanged_both_ways() {
    let mut b = router_lab();
    b.port("mirror", 0, MAC_MIRROR, 1500);
    let mut t = b.build().unwrap();
    let any_on = |port: u16, direction: Direction| L2Classifier {
        chain: 0,
        direction,
        port,
        vlan: None,
        ethertype: None,
        src_mac: None,
        dst_mac: None,
        ip: None,
    };
    t.chains = ChainTable::build(
        ChainParts {
            chains: vec![Chain {
                name: "chain/wire".into(),
                fail: FailMode::Closed,
                first: 0,
                len: 1,
            }],
            hops: vec![hop(
                "span",
                Function::Mirror(Mirror {
                    port: MIRROR,
                    forward: true,
                    reverse: true,
                }),
            )],
            l2: vec![L2Chain {
                chain: 0,
                entry: 0,
                exit: 2,
            }],
            l2_classifiers: vec![any_on(0, Direction::Forward), any_on(2, Direction::Reverse)],
            ..Default::default()
        },
        Arc::default(),
    )
    .unwrap();
    let mut r = Rig::new(t, 1024, 1024);
    let (a, b) = ([2, 0xaa, 0, 0, 0, 1], [2, 0xbb, 0, 0, 0, 2]);
    let there = vec![
        PacketBuilder::new(a, b)
            .ipv4(Ipv4Addr::new(10, 0, 7, 1), Ipv4Addr::new(10, 0, 7, 2))
            .udp(5000, 53)
            .payload(&[7; 30])
            .build(),
        PacketBuilder::new(a, [0xff; 6])
            .arp(1, a, [10, 0, 7, 1], [0; 6], [10, 0, 7, 2])
            .build(),
    ];
    r.send(0, &there);
    assert_eq!(r.take(2), there, "out of the exit unchanged");
    assert_eq!(r.take(MIRROR as usize), there, "copied unchanged");
    let back = vec![PacketBuilder::new(b, a)
        .ipv4(Ipv4Addr::new(10, 0, 7, 2), Ipv4Addr::new(10, 0, 7, 1))
        .udp(53, 5000)
        .build()];
    r.send(2, &back);
    assert_eq!(r.take(0), back, "back out of the entry unchanged");
    assert_eq!(r.take(MIRROR as usize), back);
    let c = r.tables.chains.hop_count(0);
    assert_eq!((c.mirrored, c.mirror_dropped), (3, 0));
}
