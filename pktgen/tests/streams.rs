//! Every generated packet of many kinds of stream, read back with the
//! dataplane's wire parsers: every checksum verifies, every length field
//! matches the frame, and the varying fields take the values asked for.

use sluice_dataplane::buf::{Batch, PacketPool};
use sluice_dataplane::wire::{
    ethernet, icmpv4, icmpv6, ip_proto, ipv4, ipv6, sctp, tcp, udp, vxlan,
};
use sluice_pktgen::gen::Generator;
use sluice_pktgen::mark;
use sluice_pktgen::spec::StreamSpec;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// What the parsers found in one frame.
#[derive(Debug, Default)]
struct Seen {
    vlans: Vec<u16>,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    sport: Option<u16>,
    dport: Option<u16>,
    vni: Option<u32>,
    outer_src: Option<IpAddr>,
}

fn check_frame(frame: &[u8], seen: &mut Seen) -> Result<(), String> {
    let eth = ethernet::Frame::new_checked(frame).map_err(|e| format!("ethernet: {e}"))?;
    let mut et = eth.ethertype();
    let mut rest = &frame[14..];
    while et == 0x8100 || et == 0x88a8 {
        seen.vlans
            .push(u16::from_be_bytes([rest[0], rest[1]]) & 0x0fff);
        et = u16::from_be_bytes([rest[2], rest[3]]);
        rest = &rest[4..];
    }
    let (src, dst, proto, l4): (IpAddr, IpAddr, u8, &[u8]) = match et {
        0x0800 => {
            let ip = ipv4::Packet::new_checked(rest).map_err(|e| format!("ipv4: {e}"))?;
            if !ip.verify_checksum() {
                return Err("ipv4 header checksum".into());
            }
            if ip.total_len() as usize != rest.len() {
                return Err(format!(
                    "ipv4 total length {} for {} bytes",
                    ip.total_len(),
                    rest.len()
                ));
            }
            (
                ip.src_addr().into(),
                ip.dst_addr().into(),
                ip.protocol(),
                ip.payload(),
            )
        }
        0x86dd => {
            let ip = ipv6::Packet::new_checked(rest).map_err(|e| format!("ipv6: {e}"))?;
            if ip.payload_len() as usize + 40 != rest.len() {
                return Err(format!(
                    "ipv6 payload length {} for {} bytes",
                    ip.payload_len(),
                    rest.len()
                ));
            }
            (
                ip.src_addr().into(),
                ip.dst_addr().into(),
                ip.next_header(),
                ip.payload(),
            )
        }
        other => return Err(format!("ethertype {other:#x}")),
    };
    let (s4, d4, s6, d6) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (s.octets(), d.octets(), [0; 16], [0; 16]),
        (IpAddr::V6(s), IpAddr::V6(d)) => ([0; 4], [0; 4], s.octets(), d.octets()),
        _ => unreachable!(),
    };
    let v6 = src.is_ipv6();
    match proto {
        ip_proto::UDP => {
            let u = udp::Packet::new_checked(l4).map_err(|e| format!("udp: {e}"))?;
            if u.len() as usize != l4.len() {
                return Err(format!("udp length {} for {}", u.len(), l4.len()));
            }
            if u.dst_port() == vxlan::PORT && seen.vni.is_none() && u.checksum() == 0 {
                let x =
                    vxlan::Packet::new_checked(u.payload()).map_err(|e| format!("vxlan: {e}"))?;
                seen.vni = Some(x.vni());
                seen.outer_src = Some(src);
                return check_frame(&u.payload()[8..], seen);
            }
            let ok = if v6 {
                u.verify_checksum_v6(s6, d6)
            } else {
                u.verify_checksum_v4(s4, d4)
            };
            if !ok {
                return Err("udp checksum".into());
            }
            seen.sport = Some(u.src_port());
            seen.dport = Some(u.dst_port());
        }
        ip_proto::TCP => {
            let t = tcp::Packet::new_checked(l4).map_err(|e| format!("tcp: {e}"))?;
            let ok = if v6 {
                t.verify_checksum_v6(s6, d6)
            } else {
                t.verify_checksum_v4(s4, d4)
            };
            if !ok {
                return Err("tcp checksum".into());
            }
            seen.sport = Some(t.src_port());
            seen.dport = Some(t.dst_port());
        }
        ip_proto::SCTP => {
            let s = sctp::Packet::new_checked(l4).map_err(|e| format!("sctp: {e}"))?;
            if !s.verify_checksum() {
                return Err("sctp crc32c".into());
            }
            seen.sport = Some(s.src_port());
            seen.dport = Some(s.dst_port());
        }
        ip_proto::ICMP => {
            let m = icmpv4::Packet::new_checked(l4).map_err(|e| format!("icmp: {e}"))?;
            if !m.verify_checksum() {
                return Err("icmp checksum".into());
            }
        }
        ip_proto::ICMPV6 => {
            let m = icmpv6::Packet::new_checked(l4).map_err(|e| format!("icmpv6: {e}"))?;
            if !m.verify_checksum(s6, d6) {
                return Err("icmpv6 checksum".into());
            }
        }
        p => return Err(format!("protocol {p}")),
    }
    seen.src = Some(src);
    seen.dst = Some(dst);
    Ok(())
}

/// Generates `n` packets of `stream` and checks each; returns what was seen.
fn generate(stream: &str, n: usize) -> Vec<(Seen, usize, Option<mark::Mark>)> {
    let spec = StreamSpec::parse_short(1, stream).unwrap_or_else(|e| panic!("{e}"));
    let mut g = Generator::new(&[spec], 7).unwrap_or_else(|e| panic!("{e}"));
    let pool = PacketPool::new("t", 256);
    let mut cache = pool.cache(128);
    let mut out = Vec::new();
    let mut batch = Batch::new();
    let mut ts = 1_000_000_007u64;
    while out.len() < n {
        g.fill(&mut cache, &mut batch, 32, ts);
        ts = ts
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        for p in batch.drain(..) {
            let mut seen = Seen::default();
            if let Err(e) = check_frame(p.data(), &mut seen) {
                panic!("{stream}: packet {}: {e}\n{:02x?}", out.len(), p.data());
            }
            out.push((seen, p.len(), mark::read(p.data())));
            cache.free(p);
        }
    }
    out.truncate(n);
    out
}

#[test]
fn udp_v4_four_fields_in_sequence() {
    let pkts = generate(
        "udp src=10.0.0.1-10.0.0.255 dst=10.1.0.1-10.1.0.3 sport=1000-2000 dport=53,5353 size=64",
        3000,
    );
    for (i, (s, len, m)) in pkts.iter().enumerate() {
        assert_eq!(*len, 64);
        assert_eq!(s.src, Some(IpAddr::from([10, 0, 0, 1 + (i % 255) as u8])));
        assert_eq!(s.dst, Some(IpAddr::from([10, 1, 0, 1 + (i % 3) as u8])));
        assert_eq!(s.sport, Some(1000 + (i % 1001) as u16));
        assert_eq!(s.dport, Some(if i % 2 == 0 { 53 } else { 5353 }));
        let m = m.expect("64-byte UDP frames have room for the mark");
        assert_eq!(m.seq, i as u64);
        assert_eq!(m.stream, 0);
    }
}

#[test]
fn every_protocol_and_family_keeps_checksums_right() {
    let streams = [
        "udp src=rand:10.0.0.0/8 dst=rand:10.1.0.0/16 sport=rand:1-65535 dport=rand:1-65535 size=rand:64-1518",
        "udp src=2001:db8::1-2001:db8::ffff dst=rand:2001:db8:1::/112 sport=1-9 size=64-300",
        "tcp src=10.0.0.1-10.0.0.9 sport=rand:1024-65535 dport=80,443 flags=syn size=rand:74-1500",
        "tcp src=2001:db8::1 dst=2001:db8::2-2001:db8::40 dport=rand:1-100 flags=syn|ack size=imix:100*7,594*4,1518*1",
        "sctp src=10.0.0.1-10.0.0.200 sport=1-100 size=rand:80-200",
        "sctp src=2001:db8::1 dst=2001:db8::5-2001:db8::9 sport=5 size=100",
        "icmp src=10.0.0.1-10.0.0.250 dst=rand:192.0.2.0/24 size=rand:62-1000",
        "icmp src=2001:db8::1 dst=2001:db8::2-2001:db8::99 size=rand:82-700",
        "udp vlan=1-4094 vlan2=rand:1-100 src=rand:10.0.0.0/24 sport=7 size=rand:70-90",
        "vxlan vni=100-199 outer_src=192.0.2.1-192.0.2.50 outer_sport=rand:49152-65535 src=10.0.0.1-10.0.0.99 dst=10.0.1.1 sport=1-1000 size=rand:120-1518",
        "vxlan proto=vxlan vlan=5 src=2001:db8::1-2001:db8::9 dst=2001:db8::a size=imix:150*7,594*4,1518*1",
        "udp src=10.0.0.1 size=65-99 mark=on",
        "tcp size=60 mark=off",
    ];
    for s in streams {
        let s = s.replace("vxlan proto=vxlan", "vxlan");
        let pkts = generate(&s, 5000);
        let sizes: BTreeSet<usize> = pkts.iter().map(|p| p.1).collect();
        assert!(!sizes.is_empty());
    }
}

#[test]
fn vxlan_fields_vary_outside_and_inside() {
    let pkts = generate(
        "vxlan vni=100-102 outer_src=192.0.2.1-192.0.2.2 src=10.0.0.1-10.0.0.4 size=128",
        12,
    );
    for (i, (s, len, m)) in pkts.iter().enumerate() {
        assert_eq!(*len, 128);
        assert_eq!(s.vni, Some(100 + (i % 3) as u32));
        assert_eq!(
            s.outer_src,
            Some(IpAddr::from([192, 0, 2, 1 + (i % 2) as u8]))
        );
        assert_eq!(s.src, Some(IpAddr::from([10, 0, 0, 1 + (i % 4) as u8])));
        assert!(m.is_some());
    }
}

#[test]
fn vlan_and_size_variation() {
    let pkts = generate("udp vlan=10-12 size=100-103", 8);
    let got: Vec<(u16, usize)> = pkts.iter().map(|(s, l, _)| (s.vlans[0], *l)).collect();
    assert_eq!(
        got,
        [
            (10, 100),
            (11, 101),
            (12, 102),
            (10, 103),
            (11, 100),
            (12, 101),
            (10, 102),
            (11, 103)
        ]
    );
    let imix = generate("udp size=imix", 12);
    let mut sizes: Vec<usize> = imix.iter().map(|p| p.1).collect();
    sizes.sort();
    assert_eq!(
        sizes,
        [64, 64, 64, 64, 64, 64, 64, 594, 594, 594, 594, 1514]
    );
}

#[test]
fn weights_interleave_streams() {
    let specs = [
        StreamSpec::parse_short(1, "udp dport=1 weight=3").unwrap(),
        StreamSpec::parse_short(2, "udp dport=2").unwrap(),
    ];
    let mut g = Generator::new(&specs, 1).unwrap();
    let pool = PacketPool::new("t", 64);
    let mut cache = pool.cache(64);
    let mut batch = Batch::new();
    g.fill(&mut cache, &mut batch, 32, 0);
    let ones = batch
        .iter()
        .filter(|p| mark::read(p.data()).unwrap().stream == 0)
        .count();
    assert_eq!(ones, 24);
    cache.free_batch(&mut batch);
    let sent: Vec<u64> = g.sent().collect();
    assert_eq!(sent, [24, 8]);
}

#[test]
fn bad_sizes_are_refused_with_the_field() {
    let spec = StreamSpec::parse_short(1, "tcp size=60 mark=on").unwrap();
    let e = Generator::new(&[spec], 1).err().unwrap();
    assert!(
        e.0.contains("field mark") && e.0.contains("at least 74"),
        "{e}"
    );
    let spec = StreamSpec::parse_short(1, "udp src=::1 dst=::2 size=50").unwrap();
    let e = Generator::new(&[spec], 1).err().unwrap();
    assert!(
        e.0.contains("field size") && e.0.contains("62 bytes of headers"),
        "{e}"
    );
    let e = StreamSpec::parse_short(1, "udp size=9000").unwrap_err();
    assert_eq!(e.0, "stream 1: field size: 9000 is out of range 1-2048");
}
