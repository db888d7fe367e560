//! A compiled stream: a template frame built once with the dataplane's
//! [`PacketBuilder`], and the list of fields to rewrite in each copy.
//!
//! Per packet the generator copies the template into a pool buffer (whole
//! cache lines, as the mem replay port does), writes each varying field,
//! and fixes every checksum with one RFC 1624 update: the constant part
//! (the complement of the template's checksum and of every varying field's
//! template value) is summed when the stream is compiled, so a packet only
//! adds the new values' 16-bit words and folds once per checksum. SCTP's
//! CRC32c cannot be updated that way and is recomputed.
//!
//! Frames of several sizes come from one template built at the largest
//! size: its payload is zeros, which add nothing to a checksum, so cutting
//! the copy short only changes the length fields, which are rewritten like
//! any other varying field.
//!
//! Reads: the stream spec. Writes: frames into buffers from the caller's
//! pool cache. Allocates nothing per packet.

use crate::field::{Gen, Rng, Variation};
use crate::mark;
use crate::spec::{L4Proto, SpecError, StreamSpec, MAX_FRAME};
use sluice_dataplane::buf::{Packet, BURST_SIZE};
use sluice_dataplane::wire::builder::PacketBuilder;
use sluice_dataplane::wire::sctp;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How an op stores its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// A 16-bit field; `keep` bits of the template's value stay (the PCP and
    /// DEI bits of a VLAN tag).
    U16 {
        keep: u16,
    },
    U32,
    /// A 24-bit field (the VNI).
    U24,
    /// Nothing written: a value only the checksum sees (the pseudo-header's
    /// length for TCP and ICMPv6).
    None,
}

/// Which checksums a field is covered by (a site may be listed twice: the
/// UDP length is in the header and in the pseudo-header).
#[derive(Debug, Clone, Copy)]
struct Sites {
    list: [u8; 2],
    len: u8,
}

impl Sites {
    const NONE: Sites = Sites {
        list: [0; 2],
        len: 0,
    };

    fn of(list: &[usize]) -> Sites {
        let mut s = Sites::NONE;
        for (i, x) in list.iter().enumerate() {
            s.list[i] = *x as u8;
        }
        s.len = list.len() as u8;
        s
    }

    /// Adds each packet's words to the checksums this field is under.
    #[inline(always)]
    fn add(&self, acc: &mut [[u32; BURST_SIZE]; MAX_SITES], words: &[u32]) {
        for &site in &self.list[..self.len as usize] {
            for (a, w) in acc[site as usize].iter_mut().zip(words) {
                *a += w;
            }
        }
    }

    /// The same for one packet's words (when compiling).
    fn add_one(&self, acc: &mut [u32; MAX_SITES], words: u32) {
        for &site in &self.list[..self.len as usize] {
            acc[site as usize] += words;
        }
    }
}

/// A field that varies from packet to packet.
#[derive(Debug, Clone)]
struct VaryOp {
    offset: u16,
    write: Write,
    gen: Gen,
    sites: Sites,
}

/// A length field: the frame size less `minus`.
#[derive(Debug, Clone, Copy)]
struct LenOp {
    offset: u16,
    minus: u16,
    write: Write,
    sites: Sites,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SiteKind {
    /// The Internet checksum.
    Inet,
    /// The Internet checksum of UDP, where a computed 0 is sent as 0xffff.
    Udp,
    /// SCTP's CRC32c over the frame from `start` to its end.
    Crc32c { start: u16 },
}

#[derive(Debug, Clone, Copy)]
struct Site {
    offset: u16,
    kind: SiteKind,
}

const MAX_SITES: usize = 3;

/// How a stream's frame sizes are chosen.
#[derive(Debug, Clone)]
enum Sizes {
    Fixed(u16),
    Vary(Gen),
}

/// Where the measurement mark goes and what part of its checksum is fixed.
#[derive(Debug, Clone, Copy)]
struct MarkPlan {
    /// The site the mark's words are added to (`None` for SCTP, whose CRC
    /// is recomputed anyway).
    site: Option<u8>,
    /// The signature's and stream id's 16-bit words, summed.
    constant: u32,
}

/// One compiled stream. See the module docs.
#[derive(Debug, Clone)]
pub struct Stream {
    pub id: u16,
    pub name: String,
    pub weight: u32,
    /// The template at the largest size, padded to whole cache lines.
    store: Box<[u8]>,
    sizes: Sizes,
    min_size: usize,
    max_size: usize,
    ops: Box<[VaryOp]>,
    len_ops: Box<[LenOp]>,
    sites: [Site; MAX_SITES],
    nsites: usize,
    /// Per site: the complement of the template's checksum plus the
    /// complements of the template's words of every field that varies.
    base: [u32; MAX_SITES],
    mark: Option<MarkPlan>,
    /// The next sequence number: packets generated so far.
    pub seq: u64,
    /// Bytes generated so far (frames without FCS).
    pub bytes: u64,
}

#[inline(always)]
fn words32(v: u32) -> u32 {
    (v >> 16) + (v & 0xffff)
}

#[inline(always)]
fn fold(mut acc: u32) -> u16 {
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

fn read16(d: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([d[o], d[o + 1]])
}

fn read32(d: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([d[o], d[o + 1], d[o + 2], d[o + 3]])
}

/// Offsets of the headers in a template.
struct Layout {
    l3: usize,
    l4: usize,
    /// VXLAN: the outer IPv4 and UDP headers and the VXLAN header.
    outer: Option<(usize, usize, usize)>,
}

impl Stream {
    /// Compiles a checked spec. `id` goes into the mark of every packet.
    pub fn compile(id: u16, spec: &StreamSpec) -> Result<Stream, SpecError> {
        let err = |field: &str, msg: String| {
            SpecError(format!(
                "stream {} ({}): field {field}: {msg}",
                id + 1,
                spec.name
            ))
        };
        let headers = spec.header_len();
        let (min_size, max_size) = (spec.size.min() as usize, spec.size.max() as usize);
        if min_size < headers {
            return Err(err(
                "size",
                format!("{min_size} bytes is smaller than the {headers} bytes of headers"),
            ));
        }
        if max_size > MAX_FRAME {
            return Err(err(
                "size",
                format!("{max_size} bytes is larger than a packet buffer ({MAX_FRAME})"),
            ));
        }
        let marked = match spec.mark {
            Some(true) if min_size < headers + mark::LEN => {
                return Err(err(
                    "mark",
                    format!(
                        "frames of {min_size} bytes have no room for the {}-byte mark after {headers} bytes of headers (make size at least {})",
                        mark::LEN,
                        headers + mark::LEN
                    ),
                ))
            }
            Some(m) => m,
            None => min_size >= headers + mark::LEN,
        };
        let frame = build_template(spec, max_size);
        debug_assert_eq!(frame.len(), max_size);
        let layout = layout(spec);
        let v6 = spec.is_v6();

        // Checksum sites: 0 the innermost L4 header, then its IPv4 header
        // (if IPv4), then the outer IPv4 header (VXLAN).
        let mut sites = [Site {
            offset: 0,
            kind: SiteKind::Inet,
        }; MAX_SITES];
        let l4_site = 0usize;
        sites[0] = Site {
            offset: match spec.proto {
                L4Proto::Udp => layout.l4 + 6,
                L4Proto::Tcp { .. } => layout.l4 + 16,
                L4Proto::Sctp => layout.l4 + 8,
                L4Proto::Icmp => layout.l4 + 2,
            } as u16,
            kind: match spec.proto {
                L4Proto::Udp => SiteKind::Udp,
                L4Proto::Sctp => SiteKind::Crc32c {
                    start: layout.l4 as u16,
                },
                _ => SiteKind::Inet,
            },
        };
        // Only the checksums the frame has, so a packet finalises no more.
        let mut nsites = 1;
        let ip_site = if v6 {
            usize::MAX
        } else {
            sites[nsites] = Site {
                offset: (layout.l3 + 10) as u16,
                kind: SiteKind::Inet,
            };
            nsites += 1;
            nsites - 1
        };
        let outer_site = match layout.outer {
            Some((ol3, _, _)) => {
                sites[nsites] = Site {
                    offset: (ol3 + 10) as u16,
                    kind: SiteKind::Inet,
                };
                nsites += 1;
                nsites - 1
            }
            None => usize::MAX,
        };
        let incremental_l4 = !matches!(spec.proto, L4Proto::Sctp);
        // Which checksums cover the addresses: the IPv4 header's, and the
        // L4 one when it has a pseudo-header.
        let pseudo = match spec.proto {
            L4Proto::Udp | L4Proto::Tcp { .. } => true,
            L4Proto::Icmp => v6,
            L4Proto::Sctp => false,
        };
        let mut addr_sites = Vec::new();
        if !v6 {
            addr_sites.push(ip_site);
        }
        if pseudo {
            addr_sites.push(l4_site);
        }
        let port_sites: &[usize] = if incremental_l4 { &[l4_site] } else { &[] };

        let mut ops = Vec::new();
        let mut add = |offset: usize, write: Write, var: &Variation, sites: &[usize]| {
            if !var.is_fixed() {
                ops.push(VaryOp {
                    offset: offset as u16,
                    write,
                    gen: var.gen(),
                    sites: Sites::of(sites),
                });
            }
        };
        for (i, v) in spec.vlans.iter().enumerate() {
            add(14 + 4 * i, Write::U16 { keep: 0xf000 }, v, &[]);
        }
        let (src_off, dst_off) = if v6 {
            (layout.l3 + 20, layout.l3 + 36)
        } else {
            (layout.l3 + 12, layout.l3 + 16)
        };
        add(src_off, Write::U32, &spec.src.var, &addr_sites);
        add(dst_off, Write::U32, &spec.dst.var, &addr_sites);
        if !matches!(spec.proto, L4Proto::Icmp) {
            add(layout.l4, Write::U16 { keep: 0 }, &spec.sport, port_sites);
            add(
                layout.l4 + 2,
                Write::U16 { keep: 0 },
                &spec.dport,
                port_sites,
            );
        }
        if let (Some((ol3, ol4, vx)), Some(x)) = (layout.outer, &spec.vxlan) {
            add(ol3 + 12, Write::U32, &x.outer_src.var, &[outer_site]);
            add(ol3 + 16, Write::U32, &x.outer_dst.var, &[outer_site]);
            add(ol4, Write::U16 { keep: 0 }, &x.outer_sport, &[]);
            add(vx + 4, Write::U24, &x.vni, &[]);
        }

        let mut len_ops = Vec::new();
        if min_size != max_size {
            let mut len = |offset: usize, minus: usize, write: Write, sites: &[usize]| {
                len_ops.push(LenOp {
                    offset: offset as u16,
                    minus: minus as u16,
                    write,
                    sites: Sites::of(sites),
                });
            };
            if let Some((ol3, ol4, _)) = layout.outer {
                len(ol3 + 2, ol3, Write::U16 { keep: 0 }, &[outer_site]);
                len(ol4 + 4, ol4, Write::U16 { keep: 0 }, &[]);
            }
            if v6 {
                len(layout.l3 + 4, layout.l3 + 40, Write::U16 { keep: 0 }, &[]);
            } else {
                len(layout.l3 + 2, layout.l3, Write::U16 { keep: 0 }, &[ip_site]);
            }
            match spec.proto {
                L4Proto::Udp => len(
                    layout.l4 + 4,
                    layout.l4,
                    Write::U16 { keep: 0 },
                    &[l4_site, l4_site],
                ),
                L4Proto::Tcp { .. } => len(0, layout.l4, Write::None, &[l4_site]),
                L4Proto::Icmp if v6 => len(0, layout.l4, Write::None, &[l4_site]),
                L4Proto::Icmp | L4Proto::Sctp => {}
            }
        }

        // The constant part of every checksum update.
        let mut base = [0u32; MAX_SITES];
        for (i, s) in sites.iter().enumerate().take(nsites) {
            if !matches!(s.kind, SiteKind::Crc32c { .. }) {
                base[i] = !read16(&frame, s.offset as usize) as u32;
            }
        }
        let old_words = |offset: usize, write: Write, value_if_virtual: u32| -> u32 {
            let v = match write {
                Write::U16 { .. } => read16(&frame, offset) as u32,
                Write::U32 => read32(&frame, offset),
                Write::U24 | Write::None => value_if_virtual,
            };
            (!(v >> 16) as u16 as u32) + (!(v as u16) as u32)
        };
        for op in &ops {
            let w = old_words(op.offset as usize, op.write, 0);
            op.sites.add_one(&mut base, w);
        }
        for op in &len_ops {
            let w = old_words(
                op.offset as usize,
                op.write,
                (max_size - op.minus as usize) as u32,
            );
            op.sites.add_one(&mut base, w);
        }

        let mark = marked.then(|| MarkPlan {
            site: incremental_l4.then_some(l4_site as u8),
            constant: words32(mark::SIGNATURE) + id as u32,
        });
        let sizes = match &spec.size {
            Variation::Fixed(s) => Sizes::Fixed(*s as u16),
            v => Sizes::Vary(v.gen()),
        };
        let mut store = frame;
        store.resize(max_size.next_multiple_of(64), 0);
        Ok(Stream {
            id,
            name: spec.name.clone(),
            weight: spec.weight,
            store: store.into_boxed_slice(),
            sizes,
            min_size,
            max_size,
            ops: ops.into_boxed_slice(),
            len_ops: len_ops.into_boxed_slice(),
            sites,
            nsites,
            base,
            mark,
            seq: 0,
            bytes: 0,
        })
    }

    pub fn is_marked(&self) -> bool {
        self.mark.is_some()
    }

    pub fn min_size(&self) -> usize {
        self.min_size
    }

    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// The template frame (at the largest size).
    pub fn template(&self) -> &[u8] {
        &self.store[..self.max_size]
    }

    /// Writes the next packet of the stream into `pkt`, stamped with
    /// `tx_ns` if the stream is marked; returns its length.
    pub fn emit(&mut self, pkt: &mut Packet, rng: &mut Rng, tx_ns: u64) -> usize {
        self.emit_burst(core::slice::from_mut(pkt), rng, tx_ns)
    }

    /// Writes the next `pkts.len()` (at most [`BURST_SIZE`]) packets of the
    /// stream into `pkts`; returns their bytes.
    ///
    /// Field by field over the burst rather than packet by packet: each
    /// field's kind is matched once per burst, and the inner loops are
    /// straight-line code over small arrays.
    #[inline]
    pub fn emit_burst(&mut self, pkts: &mut [Packet], rng: &mut Rng, tx_ns: u64) -> usize {
        let n = pkts.len().min(BURST_SIZE);
        let pkts = &mut pkts[..n];
        let mut sizes = [0u16; BURST_SIZE];
        match &mut self.sizes {
            Sizes::Fixed(s) => sizes[..n].fill(*s),
            Sizes::Vary(g) => {
                for s in &mut sizes[..n] {
                    *s = g.next(rng) as u16;
                }
            }
        }
        let mut bytes = 0;
        for (pkt, &size) in pkts.iter_mut().zip(&sizes[..n]) {
            let size = size as usize;
            bytes += size;
            // Cannot fail: sizes were checked against the buffer when
            // compiling.
            pkt.fill_lines(&self.store[..size.next_multiple_of(64)], size);
        }
        let mut acc = [[0u32; BURST_SIZE]; MAX_SITES];
        for (a, base) in acc.iter_mut().zip(&self.base).take(self.nsites) {
            a[..n].fill(*base);
        }
        let mut values = [0u32; BURST_SIZE];
        let mut words = [0u32; BURST_SIZE];
        for op in self.ops.iter_mut() {
            op.gen.fill(rng, &mut values[..n]);
            let o = op.offset as usize;
            match op.write {
                Write::U16 { keep } => {
                    for (pkt, (&v, w)) in pkts.iter_mut().zip(values.iter().zip(words.iter_mut())) {
                        let d = pkt.data_mut();
                        let old = u16::from_be_bytes([d[o], d[o + 1]]);
                        d[o..o + 2].copy_from_slice(&((old & keep) | v as u16).to_be_bytes());
                        *w = v & 0xffff;
                    }
                }
                Write::U32 => {
                    for (pkt, (&v, w)) in pkts.iter_mut().zip(values.iter().zip(words.iter_mut())) {
                        pkt.data_mut()[o..o + 4].copy_from_slice(&v.to_be_bytes());
                        *w = words32(v);
                    }
                }
                Write::U24 => {
                    for (pkt, &v) in pkts.iter_mut().zip(values.iter()) {
                        pkt.data_mut()[o..o + 3].copy_from_slice(&v.to_be_bytes()[1..]);
                    }
                }
                Write::None => {
                    for (w, &v) in words[..n].iter_mut().zip(values.iter()) {
                        *w = words32(v);
                    }
                }
            }
            op.sites.add(&mut acc, &words[..n]);
        }
        for op in self.len_ops.iter() {
            let o = op.offset as usize;
            for ((pkt, &size), w) in pkts.iter_mut().zip(sizes.iter()).zip(words.iter_mut()) {
                let v = size - op.minus;
                if let Write::U16 { .. } = op.write {
                    pkt.data_mut()[o..o + 2].copy_from_slice(&v.to_be_bytes());
                }
                *w = v as u32;
            }
            op.sites.add(&mut acc, &words[..n]);
        }
        if let Some(m) = self.mark {
            for (i, (pkt, &size)) in pkts.iter_mut().zip(sizes.iter()).enumerate() {
                let seq = self.seq + i as u64;
                let size = size as usize;
                let at = size - mark::LEN;
                let sum =
                    mark::write(&mut pkt.data_mut()[at..size], self.id, seq, tx_ns) + m.constant;
                if let Some(site) = m.site {
                    // Words at an odd offset are the byte-swapped words of
                    // the checksum's alignment; the one's complement sum
                    // commutes with the swap.
                    let s = if at & 1 == 1 {
                        fold(sum).swap_bytes() as u32
                    } else {
                        sum
                    };
                    acc[site as usize][i] += s;
                }
            }
        }
        for (site, acc) in self.sites.iter().zip(&acc).take(self.nsites) {
            let o = site.offset as usize;
            match site.kind {
                SiteKind::Inet => {
                    for (pkt, &a) in pkts.iter_mut().zip(acc.iter()) {
                        pkt.data_mut()[o..o + 2].copy_from_slice(&(!fold(a)).to_be_bytes());
                    }
                }
                SiteKind::Udp => {
                    for (pkt, &a) in pkts.iter_mut().zip(acc.iter()) {
                        let c = !fold(a);
                        let c = if c == 0 { 0xffff } else { c };
                        pkt.data_mut()[o..o + 2].copy_from_slice(&c.to_be_bytes());
                    }
                }
                SiteKind::Crc32c { start } => {
                    for pkt in pkts.iter_mut() {
                        let d = pkt.data_mut();
                        sctp::Packet::new_unchecked(&mut d[start as usize..]).fill_checksum();
                    }
                }
            }
        }
        self.seq += n as u64;
        self.bytes += bytes as u64;
        bytes
    }
}

fn layout(spec: &StreamSpec) -> Layout {
    let l2 = 14 + 4 * spec.vlans.len();
    let l3_len = if spec.is_v6() { 40 } else { 20 };
    match spec.vxlan {
        None => Layout {
            l3: l2,
            l4: l2 + l3_len,
            outer: None,
        },
        Some(_) => {
            let (ol3, ol4, vx) = (l2, l2 + 20, l2 + 28);
            let l3 = vx + 8 + 14;
            Layout {
                l3,
                l4: l3 + l3_len,
                outer: Some((ol3, ol4, vx)),
            }
        }
    }
}

/// The frame at `size` bytes with every field at its first value.
fn build_template(spec: &StreamSpec, size: usize) -> Vec<u8> {
    let inner_len = size - spec.vxlan.as_ref().map_or(0, |_| 50 + 4 * spec.vlans.len());
    let mut b = PacketBuilder::new(spec.smac, spec.dmac);
    if spec.vxlan.is_none() {
        for v in &spec.vlans {
            b = b.vlan(v.first() as u16);
        }
    }
    b = match (spec.src.base, spec.dst.base) {
        (IpAddr::V4(s), IpAddr::V4(d)) => b.ipv4(s, d),
        (s, d) => b.ipv6(v6(s), v6(d)),
    }
    .ttl(spec.ttl);
    let (sport, dport) = (spec.sport.first() as u16, spec.dport.first() as u16);
    b = match spec.proto {
        L4Proto::Udp => b.udp(sport, dport),
        L4Proto::Tcp { flags } => b.tcp_full(sport, dport, 1, 0, flags, 65535, &[]),
        L4Proto::Sctp => b.sctp(sport, dport, 1),
        L4Proto::Icmp => b.echo_request(0x5170, 0),
    };
    let inner = b.frame_len(inner_len).build();
    let Some(x) = &spec.vxlan else {
        return inner;
    };
    let mut payload = vec![0u8; 8];
    payload[0] = sluice_dataplane::wire::vxlan::FLAG_VNI_VALID;
    payload[4..7].copy_from_slice(&x.vni.first().to_be_bytes()[1..]);
    payload.extend_from_slice(&inner);
    let mut ob = PacketBuilder::new(x.outer_smac, x.outer_dmac);
    for v in &spec.vlans {
        ob = ob.vlan(v.first() as u16);
    }
    let (IpAddr::V4(os), IpAddr::V4(od)) = (x.outer_src.base, x.outer_dst.base) else {
        unreachable!("checked: VXLAN outer addresses are IPv4");
    };
    let mut frame = ob
        .ipv4(os, od)
        .udp(
            x.outer_sport.first() as u16,
            sluice_dataplane::wire::vxlan::PORT,
        )
        .payload(&payload)
        .build();
    // RFC 7348 §5: the outer UDP checksum should be zero over IPv4.
    let ol4 = 14 + 4 * spec.vlans.len() + 20;
    frame[ol4 + 6] = 0;
    frame[ol4 + 7] = 0;
    frame
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => Ipv4Addr::to_ipv6_mapped(&a),
    }
}
