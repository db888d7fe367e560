//! An external oracle for the wire parsers: `scripts/wire-oracle.py` builds a
//! capture with scapy covering every header Sluice parses and dissects it
//! with tshark; this test parses the same frames with Sluice's views and
//! Reprs and checks every compared field against tshark's.
//!
//! Needs `/usr/bin/python3` with scapy and `/usr/bin/tshark` (scripts/test
//! installs both). Without them the test fails, unless SLUICE_SKIP_ORACLE=1.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Command;

use serde_json::{Map, Value};
use sluice_dataplane::wire::{
    arp, ethernet, ethertype, geneve, icmpv4, icmpv6, ip_proto, ipv4, ipv6, ipv6ext, sctp, tcp,
    udp, vlan, vxlan,
};

const PYTHON: &str = "/usr/bin/python3";
const TSHARK: &str = "/usr/bin/tshark";

/// One Sluice-side value, compared with tshark's normalised JSON value.
enum V {
    Int(u64),
    Str(String),
}

impl From<u64> for V {
    fn from(v: u64) -> V {
        V::Int(v)
    }
}
impl From<u32> for V {
    fn from(v: u32) -> V {
        V::Int(v.into())
    }
}
impl From<u16> for V {
    fn from(v: u16) -> V {
        V::Int(v.into())
    }
}
impl From<u8> for V {
    fn from(v: u8) -> V {
        V::Int(v.into())
    }
}
impl From<usize> for V {
    fn from(v: usize) -> V {
        V::Int(v as u64)
    }
}
impl From<bool> for V {
    fn from(v: bool) -> V {
        V::Int(v.into())
    }
}
impl From<Ipv4Addr> for V {
    fn from(v: Ipv4Addr) -> V {
        V::Str(v.to_string())
    }
}
impl From<Ipv6Addr> for V {
    fn from(v: Ipv6Addr) -> V {
        V::Str(v.to_string())
    }
}
impl From<ethernet::EthernetAddress> for V {
    fn from(v: ethernet::EthernetAddress) -> V {
        V::Str(v.to_string())
    }
}

fn mac(bytes: &[u8]) -> V {
    ethernet::EthernetAddress::from_slice(bytes)
        .map(V::from)
        .unwrap_or_else(|| V::Str(format!("{bytes:02x?}")))
}

fn v6(bytes: [u8; 16]) -> V {
    Ipv6Addr::from(bytes).into()
}

impl V {
    fn matches(&self, t: &Value) -> bool {
        match self {
            V::Int(v) => t.as_u64() == Some(*v),
            V::Str(s) => t.as_str() == Some(s.as_str()),
        }
    }
    fn show(&self) -> String {
        match self {
            V::Int(v) => v.to_string(),
            V::Str(s) => format!("{s:?}"),
        }
    }
}

/// tshark's values of one field, in frame order (a scalar is a list of one).
fn values<'a>(fields: &'a Map<String, Value>, name: &str) -> Vec<&'a Value> {
    match fields.get(name) {
        None => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
    }
}

struct Oracle<'a> {
    index: usize,
    name: &'a str,
    fields: &'a Map<String, Value>,
    /// "inner." inside a tunnel, else "".
    prefix: &'static str,
    /// Occurrences of a field already consumed in this frame (for fields
    /// that repeat: VLAN tags, extension headers, options, chunks).
    cursor: BTreeMap<String, usize>,
}

#[derive(Default)]
struct Report {
    mismatches: Vec<String>,
    /// Compared fields per protocol (the part of the name before the first dot).
    compared: BTreeMap<String, usize>,
    packets: usize,
}

impl Report {
    fn field(&mut self, o: &mut Oracle<'_>, name: &str, sluice: impl Into<V>) {
        let n = o.cursor.get(name).copied().unwrap_or(0);
        self.nth(o, name, n, sluice);
        o.cursor.insert(name.to_string(), n + 1);
    }

    /// Compares the `n`th occurrence of `name` (within the current prefix).
    fn nth(&mut self, o: &mut Oracle<'_>, name: &str, n: usize, sluice: impl Into<V>) {
        let sluice = sluice.into();
        let full = format!("{}{name}", o.prefix);
        let proto = name.split('.').next().unwrap_or(name).to_string();
        *self.compared.entry(proto).or_default() += 1;
        match values(o.fields, &full).get(n) {
            Some(t) if sluice.matches(t) => {}
            Some(t) => self.mismatches.push(format!(
                "packet {} ({}) {full}: sluice {}, tshark {t}",
                o.index,
                o.name,
                sluice.show()
            )),
            None => self.mismatches.push(format!(
                "packet {} ({}) {full}[{n}]: sluice {}, tshark has no such field",
                o.index,
                o.name,
                sluice.show()
            )),
        }
    }

    /// Sluice found nothing for `name`: tshark must not have it either.
    fn absent(&mut self, o: &mut Oracle<'_>, name: &str) {
        let full = format!("{}{name}", o.prefix);
        let proto = name.split('.').next().unwrap_or(name).to_string();
        *self.compared.entry(proto).or_default() += 1;
        if let Some(t) = o.fields.get(&full) {
            self.mismatches.push(format!(
                "packet {} ({}) {full}: sluice has none, tshark {t}",
                o.index, o.name
            ));
        }
    }

    fn opt(&mut self, o: &mut Oracle<'_>, name: &str, sluice: Option<impl Into<V>>) {
        match sluice {
            Some(v) => self.field(o, name, v),
            None => self.absent(o, name),
        }
    }

    fn fail(&mut self, o: &Oracle<'_>, what: String) {
        self.mismatches
            .push(format!("packet {} ({}): {what}", o.index, o.name));
    }

    /// Ethernet, VLAN tags, then the network layer. `at` is where the
    /// Ethernet header starts in `frame` (non-zero inside a tunnel).
    fn check_frame(&mut self, o: &mut Oracle<'_>, frame: &[u8], at: usize) {
        let bytes = &frame[at..];
        let l2 = match vlan::parse_l2(bytes) {
            Ok(l2) => l2,
            Err(e) => return self.fail(o, format!("parse_l2: {e}")),
        };
        let eth = ethernet::Frame::new_checked(bytes).expect("parse_l2 checked the header");
        let repr = ethernet::Repr::parse(&eth);
        if let Err(e) = repr {
            self.fail(o, format!("ethernet::Repr::parse: {e}"));
        }
        self.field(o, "eth._offset", at);
        self.field(o, "eth.dst", l2.dst);
        self.field(o, "eth.src", l2.src);
        self.field(o, "eth.type", eth.ethertype());

        // Tags: tshark calls an 802.1ad S-tag "ieee8021ad", others "vlan".
        let mut tpid = eth.ethertype();
        let mut off = ethernet::HEADER_LEN;
        let mut vids = Vec::new();
        while vlan::is_tpid(tpid) && vids.len() < vlan::MAX_TAGS {
            let tag = match vlan::Tag::new_checked(&bytes[off..]) {
                Ok(t) => t,
                Err(e) => return self.fail(o, format!("vlan tag: {e}")),
            };
            let tag = vlan::Repr::parse(&tag).expect("checked tag");
            let (name, etype) = if tpid == ethertype::QINQ {
                ("ieee8021ad", "ieee8021ah.etype")
            } else {
                ("vlan", "vlan.etype")
            };
            self.field(o, &format!("{name}._offset"), at + off);
            self.field(o, &format!("{name}.id"), tag.vid);
            self.field(o, &format!("{name}.priority"), tag.pcp);
            self.field(o, &format!("{name}.dei"), tag.dei);
            self.field(o, etype, tag.ethertype);
            vids.push(tag.vid);
            tpid = tag.ethertype;
            off += vlan::TAG_LEN;
        }
        if l2.outer_vid != vids.first().copied()
            || l2.inner_vid != vids.get(1).copied()
            || l2.ethertype != tpid
            || l2.l3_offset != off
        {
            self.fail(
                o,
                format!(
                    "parse_l2 {l2:?} disagrees with the tags {vids:?}, type {tpid:#x} at {off}"
                ),
            );
        }

        match l2.ethertype {
            ethertype::ARP => self.check_arp(o, frame, at + l2.l3_offset),
            ethertype::IPV4 => self.check_ipv4(o, frame, at + l2.l3_offset),
            ethertype::IPV6 => self.check_ipv6(o, frame, at + l2.l3_offset),
            other => self.fail(o, format!("unexpected EtherType {other:#06x}")),
        }
    }

    fn check_arp(&mut self, o: &mut Oracle<'_>, frame: &[u8], l3: usize) {
        let packet = match arp::Packet::new_checked(&frame[l3..]) {
            Ok(p) => p,
            Err(e) => return self.fail(o, format!("arp::Packet: {e}")),
        };
        self.field(o, "arp._offset", l3);
        self.field(o, "arp.hw.type", packet.hardware_type());
        self.field(o, "arp.proto.type", packet.protocol_type());
        self.field(o, "arp.hw.size", packet.hardware_len());
        self.field(o, "arp.proto.size", packet.protocol_len());
        match arp::Repr::parse(&packet) {
            Ok(r) => {
                self.field(o, "arp.opcode", u16::from(r.operation));
                self.field(o, "arp.src.hw_mac", r.source_hw);
                self.field(o, "arp.src.proto_ipv4", r.source_ip);
                self.field(o, "arp.dst.hw_mac", r.target_hw);
                self.field(o, "arp.dst.proto_ipv4", r.target_ip);
            }
            Err(e) => self.fail(o, format!("arp::Repr::parse: {e}")),
        }
    }

    fn check_ipv4(&mut self, o: &mut Oracle<'_>, frame: &[u8], l3: usize) {
        let packet = match ipv4::Packet::new_checked(&frame[l3..]) {
            Ok(p) => p,
            Err(e) => return self.fail(o, format!("ipv4::Packet: {e}")),
        };
        let repr = match ipv4::Repr::parse(&packet) {
            Ok(r) => r,
            Err(e) => return self.fail(o, format!("ipv4::Repr::parse: {e}")),
        };
        self.field(o, "ip._offset", l3);
        self.field(o, "ip._len", packet.header_len());
        self.field(o, "ip.version", packet.version());
        self.field(o, "ip.hdr_len", packet.header_len());
        self.field(o, "ip.dsfield.dscp", repr.dscp);
        self.field(o, "ip.dsfield.ecn", repr.ecn);
        self.field(o, "ip.len", packet.total_len());
        self.field(o, "ip.id", repr.ident);
        self.field(o, "ip.flags.rb", packet.reserved_flag());
        self.field(o, "ip.flags.df", repr.dont_frag);
        self.field(o, "ip.flags.mf", repr.more_frags);
        self.field(o, "ip.frag_offset", repr.frag_offset);
        self.field(o, "ip.ttl", repr.ttl);
        self.field(o, "ip.proto", repr.protocol);
        self.field(o, "ip.checksum", packet.checksum());
        // Repr::parse verified the checksum; tshark must agree it is right.
        self.field(o, "ip.checksum_calculated", packet.checksum());
        self.field(o, "ip.src", repr.src_addr);
        self.field(o, "ip.dst", repr.dst_addr);
        for option in repr.options.iter() {
            let kind = match option {
                Ok(ipv4::Ipv4Option::EndOfList) => ipv4::option_kind::END_OF_LIST,
                Ok(ipv4::Ipv4Option::NoOperation) => ipv4::option_kind::NO_OPERATION,
                Ok(ipv4::Ipv4Option::Tlv { kind, data }) => {
                    self.field(o, "ip.opt.len", data.len() + 2);
                    kind
                }
                Err(e) => return self.fail(o, format!("ipv4 options: {e}")),
            };
            self.field(o, "ip.opt.type", kind);
        }
        if o.cursor.get("ip.opt.type").copied().unwrap_or(0) == 0 {
            self.absent(o, "ip.opt.type");
        }
        let l4 = l3 + packet.header_len();
        let end = l3 + packet.total_len() as usize;
        if repr.frag_offset != 0 {
            // tshark shows a later fragment's bytes as data.
            self.field(o, "data._offset", l4);
            return;
        }
        let (src, dst) = (repr.src_addr.octets(), repr.dst_addr.octets());
        self.check_l4(
            o,
            frame,
            repr.protocol,
            l4,
            end,
            Pseudo::V4(src, dst),
            repr.more_frags,
        );
    }

    fn check_ipv6(&mut self, o: &mut Oracle<'_>, frame: &[u8], l3: usize) {
        let packet = match ipv6::Packet::new_checked(&frame[l3..]) {
            Ok(p) => p,
            Err(e) => return self.fail(o, format!("ipv6::Packet: {e}")),
        };
        let repr = match ipv6::Repr::parse(&packet) {
            Ok(r) => r,
            Err(e) => return self.fail(o, format!("ipv6::Repr::parse: {e}")),
        };
        self.field(o, "ipv6._offset", l3);
        self.field(o, "ipv6.version", packet.version());
        self.field(o, "ipv6.tclass", repr.traffic_class);
        self.field(o, "ipv6.tclass.dscp", packet.dscp());
        self.field(o, "ipv6.tclass.ecn", packet.ecn());
        self.field(o, "ipv6.flow", repr.flow_label);
        self.field(o, "ipv6.plen", repr.payload_len);
        self.field(o, "ipv6.nxt", repr.next_header);
        self.field(o, "ipv6.hlim", repr.hop_limit);
        self.field(o, "ipv6.src", repr.src_addr);
        self.field(o, "ipv6.dst", repr.dst_addr);

        let payload = packet.payload();
        let chain = match ipv6ext::walk(repr.next_header, payload) {
            Ok(c) => c,
            Err(e) => return self.fail(o, format!("ipv6ext::walk: {e}")),
        };
        self.field(o, "ipv6.upper", chain.upper_protocol);
        self.field(o, "ipv6.ext_count", chain.count);

        // Each header in turn, through the per-header views.
        let base = l3 + ipv6::HEADER_LEN;
        let mut next = repr.next_header;
        let mut off = 0;
        // The upper-layer checksum covers the final destination (RFC 8200
        // §8.1): the last routing-header address while segments are left.
        let mut final_dst = repr.dst_addr.octets();
        while ipv6ext::is_extension_header(next) {
            let rest = &payload[off..];
            match next {
                ip_proto::IPV6_FRAG => {
                    let h = ipv6ext::FragmentHeader::new_checked(rest).expect("walked");
                    let f = ipv6ext::FragmentRepr::parse(&h).expect("walked");
                    self.field(o, "ipv6.fraghdr._offset", base + off);
                    self.field(o, "ipv6.fraghdr.nxt", f.next_header);
                    self.field(o, "ipv6.fraghdr.offset", f.frag_offset);
                    self.field(o, "ipv6.fraghdr.more", f.more_frags);
                    self.field(o, "ipv6.fraghdr.ident", f.ident);
                    next = f.next_header;
                    off += f.buffer_len();
                    if f.frag_offset != 0 {
                        break;
                    }
                }
                ip_proto::IPV6_ROUTE => {
                    let h = ipv6ext::RoutingHeader::new_checked(rest).expect("walked");
                    self.field(o, "ipv6.routing._offset", base + off);
                    self.field(o, "ipv6.routing.nxt", h.next_header());
                    self.field(o, "ipv6.routing.len", h.hdr_ext_len());
                    self.field(o, "ipv6.routing.len_oct", h.header_len());
                    self.field(o, "ipv6.routing.type", h.routing_type());
                    self.field(o, "ipv6.routing.segleft", h.segments_left());
                    let data = h.data();
                    let last = match h.routing_type() {
                        ipv6ext::routing_type::SOURCE_ROUTE => data.len().checked_sub(16),
                        ipv6ext::routing_type::SEGMENT_ROUTING => Some(4),
                        _ => None,
                    };
                    if let Some(at) = last.filter(|_| h.segments_left() > 0) {
                        if let Some(addr) = data.get(at..at + 16) {
                            final_dst.copy_from_slice(addr);
                        }
                    }
                    next = h.next_header();
                    off += h.header_len();
                }
                ip_proto::HOPOPTS | ip_proto::IPV6_OPTS => {
                    let name = if next == ip_proto::HOPOPTS {
                        "ipv6.hopopts"
                    } else {
                        "ipv6.dstopts"
                    };
                    let h = ipv6ext::Header::new_checked(rest).expect("walked");
                    self.field(o, &format!("{name}._offset"), base + off);
                    self.field(o, &format!("{name}.nxt"), h.next_header());
                    self.field(o, &format!("{name}.len"), h.hdr_ext_len());
                    self.field(o, &format!("{name}.len_oct"), h.header_len());
                    for option in h.options_iter() {
                        let (kind, len) = match option {
                            Ok(ipv6ext::Ipv6Option::Pad1) => (ipv6ext::option_type::PAD1, None),
                            Ok(ipv6ext::Ipv6Option::PadN(n)) => {
                                (ipv6ext::option_type::PADN, Some(n as usize))
                            }
                            Ok(ipv6ext::Ipv6Option::Tlv { kind, data }) => (kind, Some(data.len())),
                            Err(e) => return self.fail(o, format!("{name} options: {e}")),
                        };
                        self.field(o, "ipv6.opt.type", kind);
                        if let Some(len) = len {
                            self.field(o, "ipv6.opt.length", len);
                        }
                    }
                    next = h.next_header();
                    off += h.header_len();
                }
                other => return self.fail(o, format!("extension header {other} in the fixtures")),
            }
        }
        if (next, off) != (chain.upper_protocol, chain.upper_offset) {
            self.fail(
                o,
                format!("walk {chain} but the headers end at {off} with {next}"),
            );
        }
        let l4 = base + chain.upper_offset;
        let end = base + repr.payload_len;
        if !chain.has_upper_header() {
            self.field(o, "data._offset", l4);
            return;
        }
        let pseudo = Pseudo::V6(repr.src_addr.octets(), final_dst);
        let fragmented = chain.fragment.is_some_and(|f| f.more);
        self.check_l4(o, frame, chain.upper_protocol, l4, end, pseudo, fragmented);
    }

    #[allow(clippy::too_many_arguments)]
    fn check_l4(
        &mut self,
        o: &mut Oracle<'_>,
        frame: &[u8],
        protocol: u8,
        l4: usize,
        end: usize,
        pseudo: Pseudo,
        fragmented: bool,
    ) {
        let seg = &frame[l4..end.min(frame.len())];
        match protocol {
            ip_proto::TCP => self.check_tcp(o, seg, l4, pseudo),
            ip_proto::UDP => self.check_udp(o, frame, seg, l4, pseudo, fragmented),
            ip_proto::ICMP => self.check_icmpv4(o, seg, l4),
            ip_proto::ICMPV6 => self.check_icmpv6(o, seg, l4, pseudo),
            ip_proto::SCTP => self.check_sctp(o, seg, l4),
            ip_proto::IPV6_NONXT => self.absent(o, "data._offset"),
            ip_proto::IGMP => self.field(o, "igmp._offset", l4),
            other => self.fail(o, format!("upper protocol {other} not in the fixtures")),
        }
    }

    fn check_tcp(&mut self, o: &mut Oracle<'_>, seg: &[u8], l4: usize, pseudo: Pseudo) {
        let packet = match tcp::Packet::new_checked(seg) {
            Ok(p) => p,
            Err(e) => return self.fail(o, format!("tcp::Packet: {e}")),
        };
        let ok = match pseudo {
            Pseudo::V4(s, d) => packet.verify_checksum_v4(s, d),
            Pseudo::V6(s, d) => packet.verify_checksum_v6(s, d),
        };
        if !ok {
            self.fail(o, "TCP checksum does not verify".into());
        }
        let repr = match tcp::Repr::parse(&packet) {
            Ok(r) => r,
            Err(e) => return self.fail(o, format!("tcp::Repr::parse: {e}")),
        };
        self.field(o, "tcp._offset", l4);
        self.field(o, "tcp.srcport", repr.src_port);
        self.field(o, "tcp.dstport", repr.dst_port);
        self.field(o, "tcp.seq_raw", repr.seq_number);
        self.field(o, "tcp.ack_raw", repr.ack_number);
        self.field(o, "tcp.hdr_len", packet.header_len());
        self.field(o, "tcp.flags", repr.flags.bits());
        self.field(o, "tcp.window_size_value", repr.window_len);
        self.field(o, "tcp.checksum", packet.checksum());
        self.field(o, "tcp.urgent_pointer", repr.urgent_at);
        self.field(o, "tcp.len", repr.payload_len);
        self.opt(o, "tcp.options.mss_val", repr.max_seg_size);
        self.opt(o, "tcp.options.wscale.shift", repr.window_scale);
        self.opt(
            o,
            "tcp.options.timestamp.tsval",
            repr.timestamps.map(|t| t.tsval),
        );
        self.opt(
            o,
            "tcp.options.timestamp.tsecr",
            repr.timestamps.map(|t| t.tsecr),
        );
        self.opt(
            o,
            "tcp.options.sack_perm",
            repr.sack_permitted
                .then_some(0u8)
                .map(|_| V::Str("04:02".into())),
        );
        for (le, re) in repr.sack_blocks.iter().flatten() {
            self.field(o, "tcp.options.sack_le", *le);
            self.field(o, "tcp.options.sack_re", *re);
        }
        for option in packet.options_iter() {
            let kind = match option {
                Ok(tcp::TcpOption::EndOfList) => tcp::option_kind::END_OF_LIST,
                Ok(tcp::TcpOption::NoOperation) => tcp::option_kind::NO_OPERATION,
                Ok(tcp::TcpOption::MaxSegmentSize(_)) => tcp::option_kind::MAX_SEG_SIZE,
                Ok(tcp::TcpOption::WindowScale(_)) => tcp::option_kind::WINDOW_SCALE,
                Ok(tcp::TcpOption::SackPermitted) => tcp::option_kind::SACK_PERMITTED,
                Ok(tcp::TcpOption::Sack(_)) => tcp::option_kind::SACK,
                Ok(tcp::TcpOption::Timestamps { .. }) => tcp::option_kind::TIMESTAMPS,
                Ok(tcp::TcpOption::Unknown { kind, .. }) => kind,
                Err(e) => return self.fail(o, format!("tcp options: {e}")),
            };
            self.field(o, "tcp.option_kind", kind);
        }
    }

    fn check_udp(
        &mut self,
        o: &mut Oracle<'_>,
        frame: &[u8],
        seg: &[u8],
        l4: usize,
        pseudo: Pseudo,
        fragmented: bool,
    ) {
        // A first fragment's datagram runs past this packet: read the header only.
        let view = if fragmented {
            &seg[..udp::HEADER_LEN]
        } else {
            seg
        };
        let packet = if fragmented {
            udp::Packet::new_unchecked(view)
        } else {
            match udp::Packet::new_checked(view) {
                Ok(p) => p,
                Err(e) => return self.fail(o, format!("udp::Packet: {e}")),
            }
        };
        self.field(o, "udp._offset", l4);
        self.field(o, "udp.srcport", packet.src_port());
        self.field(o, "udp.dstport", packet.dst_port());
        self.field(o, "udp.length", packet.len());
        self.field(o, "udp.checksum", packet.checksum());
        if fragmented {
            return;
        }
        let ok = match pseudo {
            Pseudo::V4(s, d) => packet.verify_checksum_v4(s, d),
            Pseudo::V6(s, d) => packet.verify_checksum_v6(s, d),
        };
        if !ok {
            self.fail(o, "UDP checksum does not verify".into());
        }
        let repr = match udp::Repr::parse(&packet) {
            Ok(r) => r,
            Err(e) => return self.fail(o, format!("udp::Repr::parse: {e}")),
        };
        let tunnel = l4 + udp::HEADER_LEN;
        if o.prefix.is_empty() && repr.dst_port == vxlan::PORT {
            let packet = match vxlan::Packet::new_checked(packet.payload()) {
                Ok(p) => p,
                Err(e) => return self.fail(o, format!("vxlan::Packet: {e}")),
            };
            if let Err(e) = vxlan::Repr::parse(&packet) {
                self.fail(o, format!("vxlan::Repr::parse: {e}"));
            }
            self.field(o, "vxlan._offset", tunnel);
            self.field(o, "vxlan.flags", (packet.flags() as u16) << 8);
            self.field(o, "vxlan.flag_i", packet.vni_valid());
            self.field(o, "vxlan.vni", packet.vni());
            self.inner(o, frame, tunnel + vxlan::HEADER_LEN);
        } else if o.prefix.is_empty() && repr.dst_port == geneve::PORT {
            let packet = match geneve::Packet::new_checked(packet.payload()) {
                Ok(p) => p,
                Err(e) => return self.fail(o, format!("geneve::Packet: {e}")),
            };
            if let Err(e) = geneve::Repr::parse(&packet) {
                self.fail(o, format!("geneve::Repr::parse: {e}"));
            }
            self.field(o, "geneve._offset", tunnel);
            self.field(o, "geneve._len", packet.header_len());
            self.field(o, "geneve.version", packet.version());
            self.field(o, "geneve.option.length", packet.options_len());
            self.field(o, "geneve.flags.oam", packet.oam());
            self.field(o, "geneve.flags.critical", packet.critical_options());
            self.field(o, "geneve.proto_type", packet.protocol_type());
            self.field(o, "geneve.vni", packet.vni());
            for option in packet.options_iter() {
                match option {
                    Ok(opt) => {
                        self.field(o, "geneve.option.class", opt.class);
                        self.field(o, "geneve.option.type", opt.option_type);
                        self.field(o, "geneve.option.type.critical", opt.is_critical());
                        self.field(o, "geneve.option.length", opt.total_len());
                    }
                    Err(e) => return self.fail(o, format!("geneve options: {e}")),
                }
            }
            self.inner(o, frame, tunnel + packet.header_len());
        }
    }

    /// The Ethernet frame a tunnel carries, against tshark's "inner." fields.
    fn inner(&mut self, o: &mut Oracle<'_>, frame: &[u8], at: usize) {
        let mut inner = Oracle {
            index: o.index,
            name: o.name,
            fields: o.fields,
            prefix: "inner.",
            cursor: BTreeMap::new(),
        };
        self.check_frame(&mut inner, frame, at);
    }

    fn check_icmpv4(&mut self, o: &mut Oracle<'_>, seg: &[u8], l4: usize) {
        let packet = match icmpv4::Packet::new_checked(seg) {
            Ok(p) => p,
            Err(e) => return self.fail(o, format!("icmpv4::Packet: {e}")),
        };
        if !packet.verify_checksum() {
            self.fail(o, "ICMP checksum does not verify".into());
        }
        self.field(o, "icmp._offset", l4);
        self.field(o, "icmp.type", packet.msg_type());
        self.field(o, "icmp.code", packet.msg_code());
        self.field(o, "icmp.checksum", packet.checksum());
        match icmpv4::Repr::parse(&packet) {
            Ok(icmpv4::Repr::EchoRequest { ident, seq_no, .. })
            | Ok(icmpv4::Repr::EchoReply { ident, seq_no, .. }) => {
                self.field(o, "icmp.ident", ident);
                self.field(o, "icmp.seq", seq_no);
            }
            Ok(icmpv4::Repr::DstUnreachable { .. }) if packet.msg_code() == 4 => {
                self.field(o, "icmp.mtu", packet.next_hop_mtu());
            }
            Ok(_) => self.absent(o, "icmp.ident"),
            Err(e) => self.fail(o, format!("icmpv4::Repr::parse: {e}")),
        }
    }

    fn check_icmpv6(&mut self, o: &mut Oracle<'_>, seg: &[u8], l4: usize, pseudo: Pseudo) {
        let packet = match icmpv6::Packet::new_checked(seg) {
            Ok(p) => p,
            Err(e) => return self.fail(o, format!("icmpv6::Packet: {e}")),
        };
        if let Pseudo::V6(s, d) = pseudo {
            if !packet.verify_checksum(s, d) {
                self.fail(o, "ICMPv6 checksum does not verify".into());
            }
        }
        self.field(o, "icmpv6._offset", l4);
        self.field(o, "icmpv6.type", packet.msg_type());
        self.field(o, "icmpv6.code", packet.msg_code());
        self.field(o, "icmpv6.checksum", packet.checksum());
        let repr = match icmpv6::Repr::parse(&packet) {
            Ok(r) => r,
            Err(e) => return self.fail(o, format!("icmpv6::Repr::parse: {e}")),
        };
        use icmpv6::Repr as R;
        match repr {
            R::EchoRequest { ident, seq_no, .. } | R::EchoReply { ident, seq_no, .. } => {
                self.field(o, "icmpv6.echo.identifier", ident);
                self.field(o, "icmpv6.echo.sequence_number", seq_no);
            }
            R::PacketTooBig { mtu, .. } => self.field(o, "icmpv6.mtu", mtu),
            R::DstUnreachable { .. } | R::TimeExceeded { .. } | R::ParamProblem { .. } => {}
            R::RouterSolicit { source_lladdr } => {
                self.opt(o, "icmpv6.opt.src_linkaddr", source_lladdr.map(|m| mac(&m)));
            }
            R::RouterAdvert {
                hop_limit,
                flags,
                router_lifetime,
                reachable_time,
                retrans_time,
                source_lladdr,
                mtu,
                prefix,
            } => {
                self.field(o, "icmpv6.nd.ra.cur_hop_limit", hop_limit);
                self.field(o, "icmpv6.nd.ra.flag", flags.bits());
                self.field(o, "icmpv6.nd.ra.router_lifetime", router_lifetime);
                self.field(o, "icmpv6.nd.ra.reachable_time", reachable_time);
                self.field(o, "icmpv6.nd.ra.retrans_timer", retrans_time);
                self.opt(o, "icmpv6.opt.src_linkaddr", source_lladdr.map(|m| mac(&m)));
                self.opt(o, "icmpv6.opt.mtu", mtu);
                if let Some(p) = prefix {
                    self.field(o, "icmpv6.opt.prefix.length", p.prefix_len);
                    self.field(o, "icmpv6.opt.prefix.flag", p.flags);
                    self.field(o, "icmpv6.opt.prefix.valid_lifetime", p.valid_lifetime);
                    self.field(
                        o,
                        "icmpv6.opt.prefix.preferred_lifetime",
                        p.preferred_lifetime,
                    );
                    self.field(o, "icmpv6.opt.prefix", v6(p.prefix));
                } else {
                    self.absent(o, "icmpv6.opt.prefix");
                }
            }
            R::NeighborSolicit {
                target,
                source_lladdr,
            } => {
                self.field(o, "icmpv6.nd.ns.target_address", v6(target));
                self.opt(o, "icmpv6.opt.src_linkaddr", source_lladdr.map(|m| mac(&m)));
            }
            R::NeighborAdvert {
                flags,
                target,
                target_lladdr,
            } => {
                self.field(o, "icmpv6.nd.na.flag", u32::from(flags.bits()) << 24);
                self.field(o, "icmpv6.nd.na.target_address", v6(target));
                self.opt(
                    o,
                    "icmpv6.opt.target_linkaddr",
                    target_lladdr.map(|m| mac(&m)),
                );
            }
            R::Redirect { target, dest, .. } => {
                self.field(o, "icmpv6.nd.rd.target_address", v6(target));
                self.field(o, "icmpv6.nd.rd.destination_address", v6(dest));
            }
            R::Other { .. } => {}
        }
        if matches!(packet.msg_type(), 133..=137) {
            for option in packet.nd_options_iter() {
                let kind = match option {
                    Ok(icmpv6::NdOption::SourceLinkLayerAddr(_)) => {
                        icmpv6::nd_option::SOURCE_LL_ADDR
                    }
                    Ok(icmpv6::NdOption::TargetLinkLayerAddr(_)) => {
                        icmpv6::nd_option::TARGET_LL_ADDR
                    }
                    Ok(icmpv6::NdOption::PrefixInformation(_)) => icmpv6::nd_option::PREFIX_INFO,
                    Ok(icmpv6::NdOption::RedirectedHeader(_)) => {
                        icmpv6::nd_option::REDIRECTED_HEADER
                    }
                    Ok(icmpv6::NdOption::Mtu(_)) => icmpv6::nd_option::MTU,
                    Ok(icmpv6::NdOption::Unknown { kind, .. }) => kind,
                    Err(e) => return self.fail(o, format!("nd options: {e}")),
                };
                self.field(o, "icmpv6.opt.type", kind);
            }
        }
    }

    fn check_sctp(&mut self, o: &mut Oracle<'_>, seg: &[u8], l4: usize) {
        let packet = match sctp::Packet::new_checked(seg) {
            Ok(p) => p,
            Err(e) => return self.fail(o, format!("sctp::Packet: {e}")),
        };
        if !packet.verify_checksum() {
            self.fail(o, "SCTP CRC32c does not verify".into());
        }
        if let Err(e) = sctp::Repr::parse(&packet) {
            self.fail(o, format!("sctp::Repr::parse: {e}"));
        }
        self.field(o, "sctp._offset", l4);
        self.field(o, "sctp.srcport", packet.src_port());
        self.field(o, "sctp.dstport", packet.dst_port());
        self.field(o, "sctp.verification_tag", packet.verification_tag());
        // Sluice reads the CRC32c least significant byte first (its value as
        // a number); tshark shows the four wire bytes big-endian.
        self.nth(o, "sctp.checksum", 0, packet.checksum().swap_bytes());
        self.nth(
            o,
            "sctp.checksum",
            0,
            packet.compute_checksum().swap_bytes(),
        );
        for chunk in packet.chunks() {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => return self.fail(o, format!("sctp chunks: {e}")),
            };
            self.field(o, "sctp.chunk_type", chunk.chunk_type);
            self.field(o, "sctp.chunk_flags", chunk.flags);
            self.field(o, "sctp.chunk_length", chunk.length());
            match chunk.chunk_type {
                sctp::chunk_type::INIT => match sctp::InitChunk::parse(&chunk) {
                    Ok(init) => {
                        self.field(o, "sctp.initiate_tag", init.initiate_tag);
                        self.field(o, "sctp.init_credit", init.a_rwnd);
                        self.field(o, "sctp.init_nr_out_streams", init.outbound_streams);
                        self.field(o, "sctp.init_nr_in_streams", init.inbound_streams);
                        self.field(o, "sctp.init_initial_tsn", init.initial_tsn);
                    }
                    Err(e) => self.fail(o, format!("sctp INIT: {e}")),
                },
                sctp::chunk_type::DATA => match sctp::DataChunk::parse(&chunk) {
                    Ok(data) => {
                        self.field(o, "sctp.data_tsn_raw", data.tsn);
                        self.field(o, "sctp.data_sid", data.stream_id);
                        self.field(o, "sctp.data_ssn", data.stream_seq);
                        self.field(o, "sctp.data_payload_proto_id", data.ppid);
                    }
                    Err(e) => self.fail(o, format!("sctp DATA: {e}")),
                },
                _ => {}
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Pseudo {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex frame bytes"))
        .collect()
}

fn tools_missing() -> Option<String> {
    let mut missing = Vec::new();
    let scapy = Command::new(PYTHON)
        .args(["-c", "import scapy.all"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !scapy {
        missing.push(format!("{PYTHON} with scapy (Debian python3-scapy)"));
    }
    let tshark = Command::new(TSHARK)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !tshark {
        missing.push(format!("{TSHARK} (Debian tshark)"));
    }
    (!missing.is_empty()).then(|| missing.join(" and "))
}

fn run_oracle() -> Vec<Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/wire-oracle.py");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir =
        std::env::temp_dir().join(format!("sluice-wire-oracle-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the oracle's temp dir");
    let output = Command::new(PYTHON).arg(&script).arg(&dir).output();
    let _ = std::fs::remove_dir_all(&dir);
    let output = output.expect("run scripts/wire-oracle.py");
    assert!(
        output.status.success(),
        "scripts/wire-oracle.py failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    match serde_json::from_slice(&output.stdout).expect("the oracle prints JSON") {
        Value::Array(packets) => packets,
        other => panic!("the oracle printed {other}, not a list"),
    }
}

/// Fewest compared fields per protocol, so that a change in dissection or
/// in the capture cannot make the test pass by comparing nothing.
const MINIMUM: &[(&str, usize)] = &[
    ("eth", 200),
    ("vlan", 20),
    ("ieee8021ad", 8),
    ("arp", 30),
    ("ip", 400),
    ("ipv6", 400),
    ("icmp", 30),
    ("icmpv6", 50),
    ("tcp", 80),
    ("udp", 100),
    ("sctp", 30),
    ("vxlan", 6),
    ("geneve", 20),
    ("data", 4),
];

#[test]
fn parsers_agree_with_tshark() {
    if let Some(missing) = tools_missing() {
        if std::env::var("SLUICE_SKIP_ORACLE").as_deref() == Ok("1") {
            eprintln!("wire oracle skipped (SLUICE_SKIP_ORACLE=1): missing {missing}");
            return;
        }
        panic!(
            "the wire oracle needs {missing}; run scripts/test, which installs them \
             (or set SLUICE_SKIP_ORACLE=1 to skip this test)"
        );
    }
    let packets = run_oracle();
    assert!(
        packets.len() >= 30,
        "only {} packets in the capture",
        packets.len()
    );

    let mut report = Report::default();
    for packet in &packets {
        let index = packet["index"].as_u64().expect("index") as usize;
        let name = packet["name"].as_str().unwrap_or("");
        let frame = hex_decode(packet["hex"].as_str().expect("hex"));
        let fields = packet["fields"].as_object().expect("fields");
        let mut oracle = Oracle {
            index,
            name,
            fields,
            prefix: "",
            cursor: BTreeMap::new(),
        };
        report.check_frame(&mut oracle, &frame, 0);
        report.packets += 1;
    }

    let total: usize = report.compared.values().sum();
    eprintln!(
        "wire oracle: {} packets, {total} fields compared: {:?}",
        report.packets, report.compared
    );
    for (proto, min) in MINIMUM {
        let n = report.compared.get(*proto).copied().unwrap_or(0);
        if n < *min {
            report.mismatches.push(format!(
                "only {n} {proto} fields compared, expected at least {min}"
            ));
        }
    }
    assert!(
        report.mismatches.is_empty(),
        "{} disagreements between Sluice and tshark:\n  {}",
        report.mismatches.len(),
        report.mismatches.join("\n  ")
    );
}
