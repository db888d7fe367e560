//! A probe as packets through the dataplane: parse and the service stage
//! over a table generation holding a compiled [`ServiceTable`], for the
//! oracle replay.

use super::classify::{Probe, Verdict};
use super::table::addr_bits;
use crate::model::names::Protocol;
use sluice_dataplane::stages::service::{ServiceConfig, ServiceStage};
use sluice_dataplane::stages::{parse::Parse, Action, Burst, Context, Punt, Stage};
use sluice_dataplane::state::conntrack::ConntrackConfig;
use sluice_dataplane::stats::DropReason;
use sluice_dataplane::tables::services::ServiceTable;
use sluice_dataplane::tables::TablesBuilder;
use sluice_dataplane::testing::Harness;
use sluice_dataplane::wire::builder::{tcp_flags, PacketBuilder};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

const MAC_PORT: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_PEER: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// Ends the pipeline after the service stage: what is still undecided
/// leaves on port 0 as the service stage left it.
struct Out;

impl Stage for Out {
    fn process(&mut self, _cx: &Context<'_>, burst: &mut Burst) {
        for a in burst.action[..burst.pkts.len()].iter_mut() {
            if *a == Action::Continue {
                *a = Action::Tx(0);
            }
        }
    }
}

fn frame(probe: &Probe, sport: u16) -> Vec<u8> {
    let b = PacketBuilder::new(MAC_PEER, MAC_PORT);
    let b = match (probe.src, probe.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => b.ipv4(s, d),
        (IpAddr::V6(s), IpAddr::V6(d)) => b.ipv6(s, d),
        _ => unreachable!("mixed families are answered before"),
    };
    let b = match probe.protocol {
        Protocol::Tcp => b.tcp(sport, probe.dst_port, tcp_flags::SYN),
        Protocol::Udp => b.udp(sport, probe.dst_port),
        Protocol::Sctp => {
            // An INIT chunk: type 1, length 20.
            let init = [
                1u8, 0, 0, 20, 0xaa, 0xbb, 0xcc, 0xdd, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1,
            ];
            return b.sctp(sport, probe.dst_port, 0).payload(&init).build();
        }
    };
    b.build()
}

/// (destination address, destination port, source address, source port)
/// of a frame.
fn tuple(f: &[u8]) -> (IpAddr, u16, IpAddr, u16) {
    let (dst, src, l4) = if u16::from_be_bytes([f[12], f[13]]) == 0x0800 {
        (
            IpAddr::from(<[u8; 4]>::try_from(&f[30..34]).unwrap()),
            IpAddr::from(<[u8; 4]>::try_from(&f[26..30]).unwrap()),
            14 + (f[14] & 0xf) as usize * 4,
        )
    } else {
        (
            IpAddr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap()),
            IpAddr::from(<[u8; 16]>::try_from(&f[22..38]).unwrap()),
            54,
        )
    };
    let port = |at: usize| u16::from_be_bytes([f[at], f[at + 1]]);
    (dst, port(l4 + 2), src, port(l4))
}

/// Sends `count` first packets of `probe` (source ports 1024 on) and
/// returns the verdict they add up to, and whether any was masqueraded.
/// Endpoints are the set the packets were translated to.
pub fn verdict(table: &ServiceTable, probe: &Probe, count: usize) -> (Verdict, bool) {
    if probe.src.is_ipv4() != probe.dst.is_ipv4() {
        return (Verdict::NoMatch, false);
    }
    let mut b = TablesBuilder::new();
    b.port("p0", 0, MAC_PORT, 1500);
    b.services = table.clone();
    let tables = b.build().expect("one port");
    let small = ConntrackConfig {
        capacity_v4: 4096,
        capacity_v6: 4096,
        ..ConntrackConfig::default()
    };
    let stage = ServiceStage::new(&ServiceConfig {
        conntrack: small,
        ..ServiceConfig::default()
    });
    let mut h = Harness::new(tables, (Parse, (stage, Out)));
    let frames: Vec<(u16, Vec<u8>)> = (0..count)
        .map(|i| (0, frame(probe, 1024 + i as u16)))
        .collect();
    let mut endpoints = BTreeSet::new();
    let mut masquerade = false;
    let mut other = None;
    for (i, (action, out)) in h.run(&frames).into_iter().enumerate() {
        match action {
            Action::Tx(_) => {
                let (dst, dport, src, sport) = tuple(&out);
                if dst == probe.dst && dport == probe.dst_port {
                    other.get_or_insert(Verdict::NoMatch);
                } else {
                    endpoints.insert(SocketAddr::new(dst, dport));
                    // Masquerading the node's own traffic keeps its address
                    // and changes its port.
                    masquerade |= src != probe.src || sport != 1024 + i as u16;
                }
            }
            Action::Punt(Punt::Reject) => {
                other.get_or_insert(Verdict::Reject);
            }
            Action::Drop(DropReason::ServiceDrop | DropReason::ServiceSourceRange) => {
                other.get_or_insert(Verdict::Drop);
            }
            a => panic!("{probe:?}: unexpected decision {a:?}"),
        }
    }
    let _ = addr_bits;
    match (other, endpoints.is_empty()) {
        (Some(v), true) => (v, false),
        (None, false) => (
            Verdict::Dnat {
                endpoints,
                masquerade,
            },
            masquerade,
        ),
        (o, _) => panic!("{probe:?}: mixed decisions {o:?} and {endpoints:?}"),
    }
}
