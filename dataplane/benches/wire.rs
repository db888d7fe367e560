//! Micro-benchmarks of the per-packet primitives: parsing, checksums, RSS.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sluice_dataplane::io::rss::Toeplitz;
use sluice_dataplane::stages::parse::parse_frame;
use sluice_dataplane::stages::PacketMeta;
use sluice_dataplane::testing::{router_lab, MAC_CLIENT, MAC_P0};
use sluice_dataplane::wire::builder::{tcp_flags, PacketBuilder};
use sluice_dataplane::wire::{checksum, ipv4};
use std::net::Ipv6Addr;

fn parse(c: &mut Criterion) {
    let tables = router_lab().build().unwrap();
    let v4 = PacketBuilder::new(MAC_CLIENT, MAC_P0)
        .ipv4([10, 0, 0, 10], [20, 1, 2, 3])
        .udp(1000, 53)
        .frame_len(64)
        .build();
    let v4_tcp = PacketBuilder::new(MAC_CLIENT, MAC_P0)
        .ipv4([10, 0, 0, 10], [20, 1, 2, 3])
        .tcp(1000, 80, tcp_flags::ACK)
        .frame_len(64)
        .build();
    let v6 = PacketBuilder::new(MAC_CLIENT, MAC_P0)
        .ipv6(
            "2001:db8::10".parse::<Ipv6Addr>().unwrap(),
            "2001:db8:20::5".parse::<Ipv6Addr>().unwrap(),
        )
        .udp(1000, 53)
        .frame_len(78)
        .build();
    let vlan = PacketBuilder::new(MAC_CLIENT, MAC_P0)
        .vlan(7)
        .ipv4([10, 0, 0, 10], [20, 1, 2, 3])
        .udp(1000, 53)
        .frame_len(68)
        .build();
    let mut g = c.benchmark_group("parse_frame");
    g.throughput(Throughput::Elements(1));
    for (name, frame) in [
        ("ipv4_udp_64B", &v4),
        ("ipv4_tcp_64B", &v4_tcp),
        ("ipv6_udp_78B", &v6),
        ("vlan_ipv4_udp_68B", &vlan),
    ] {
        g.bench_function(name, |b| {
            let mut meta = PacketMeta::default();
            b.iter(|| parse_frame(black_box(frame), 0, &tables, &mut meta).is_ok())
        });
    }
    g.finish();
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ipv4_view_and_repr_parse", |b| {
        b.iter(|| {
            let p = ipv4::Packet::new_checked(black_box(&v4[14..])).unwrap();
            ipv4::Repr::parse(&p).unwrap()
        })
    });
    g.finish();
}

fn checksums(c: &mut Criterion) {
    let mut h = [
        0x45u8, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7,
    ];
    let sum = checksum::checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_ipv4_header_general", |b| {
        b.iter(|| checksum::verify(black_box(&h)))
    });
    g.bench_function("verify_ipv4_header_20_fast", |b| {
        b.iter(|| checksum::verify_ipv4_header_20(black_box(&h)))
    });
    g.bench_function("update16_ttl_decrement", |b| {
        b.iter(|| checksum::update16(black_box(0xb861), black_box(0x4011), black_box(0x3f11)))
    });
    g.bench_function("update32_address_rewrite", |b| {
        b.iter(|| {
            checksum::update32(
                black_box(0xb861),
                black_box(0xc0a8_0001),
                black_box(0x0a00_0001),
            )
        })
    });
    let payload = vec![0xa5u8; 1500];
    g.throughput(Throughput::Bytes(1500));
    g.bench_function("full_1500B", |b| {
        b.iter(|| checksum::checksum(black_box(&payload)))
    });
    g.finish();
}

fn rss(c: &mut Criterion) {
    let t = Toeplitz::microsoft();
    let frame = PacketBuilder::new(MAC_CLIENT, MAC_P0)
        .ipv4([10, 0, 0, 10], [20, 1, 2, 3])
        .udp(1000, 53)
        .frame_len(64)
        .build();
    let mut g = c.benchmark_group("rss");
    g.throughput(Throughput::Elements(1));
    g.bench_function("toeplitz_ipv4_udp_frame", |b| {
        b.iter(|| t.hash_frame(black_box(&frame)))
    });
    g.finish();
}

criterion_group!(benches, parse, checksums, rss);
criterion_main!(benches);
