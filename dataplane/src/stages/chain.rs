//! Chain: steer traffic through a network service chain.
//!
//! Reads: `PacketMeta` (family, proto, addresses, ports, flags, network,
//! `flow_hash`), the receiving port, the generation's
//! [`ChainTable`](crate::tables::chain::ChainTable) and its port link
//! flags, the time (policer hops).
//! Writes: addresses, ports and checksums when a load-balancer or NAT hop
//! translates (and the same `PacketMeta` fields, so `route` routes the
//! translated packet); the Ethernet addresses of a packet sent to an
//! external function; copies into the burst's side output
//! ([`Copies`](super::Copies)) at a mirror hop: the frame as it is at that
//! hop (after the earlier hops' translations, before the later ones), for
//! the worker to send unchanged on the mirror port.
//! Decides: `Tx(port)` to an external function's port; `Drop` for a
//! firewall deny or a non-first fragment of chain traffic
//! (`chain_denied`), a policer (`chain_policed`) and a hop with no working
//! endpoint in a chain that fails closed (`chain_hop_down`).
//! Next: `route` (a packet that finished its chain, or that no chain
//! steers).
//!
//! # Per packet
//!
//! A packet received on a port that joins an external hop comes back from
//! that function: the port says which chain, hop and direction
//! ([`PortHop`]); it continues with the next hop. Any other packet is
//! classified (first matching classifier); one that matches starts its
//! chain at the first hop (forward) or the last (reverse). Built-in hops
//! run inline, one after the other, until the chain ends (the packet goes
//! on to `route`), a hop drops it, or an external hop takes it (`Tx`).
//!
//! Nothing is kept per flow: both directions of a flow are recognised by
//! the classifiers, every choice among candidates hashes the flow's
//! client address, and the load balancer is Maglev, so any worker makes the
//! same decisions for a flow.
//!
//! Counters: per hop and direction, packets and bytes, plus drops and
//! skips, summed in the stage during the burst and added to the table's
//! shared counters once per burst. A mirror hop also counts its copies
//! (packets, bytes) and the copies it could not make or the worker could
//! not send (`mirror_dropped`, and the worker's `copy_no_buffer`,
//! `copy_port_down`, `copy_tx_full`); a copy never changes what happens
//! to the original.

use super::{
    flags, parse, service, Action, Burst, Context, Copies, CopyError, CopyOwner, CopyTag,
    PacketMeta, Stage,
};
use crate::buf::Packet;
use crate::state::conntrack::FlowTuple;
use crate::stats::DropReason;
use crate::tables::chain::{police, Direction, FailMode, Function, PortHop, RawView, Tuple};

/// Per-worker hop counts for the current burst.
#[derive(Debug, Clone, Copy, Default)]
struct LocalCount {
    packets: [u64; 2],
    bytes: [u64; 2],
    dropped: u64,
    skipped: u64,
    mirrored: u64,
    mirrored_bytes: u64,
    mirror_dropped: u64,
    touched: bool,
}

/// A worker's hop counts for one burst, added to the table's shared
/// counters once per burst (both chain stages use it).
///
/// A tracing tally (the packet tracer's) adds nothing to the shared
/// counters: it keeps the last burst's counts, in the order the hops were
/// first visited, for [`HopTally::visits`].
#[derive(Debug, Default)]
pub(crate) struct HopTally {
    local: Vec<LocalCount>,
    dirty: Vec<u32>,
    tracing: bool,
}

/// What the last burst did at one hop (the packet tracer's view of a
/// chain stage run over one packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopVisit {
    /// The hop's index in the generation's [`ChainTable::hops`](crate::tables::chain::ChainTable::hops).
    pub hop: usize,
    /// Passed forward or in reverse (packets).
    pub forward: u64,
    pub reverse: u64,
    /// Dropped there (denied, policed, or down in a chain that fails
    /// closed), or passed over (down in a chain that skips).
    pub dropped: u64,
    pub skipped: u64,
    /// Copies made, and copies that could not be (the tracer makes none).
    pub mirrored: u64,
    pub mirror_dropped: u64,
}

impl HopTally {
    pub(crate) fn tracing() -> HopTally {
        HopTally {
            tracing: true,
            ..HopTally::default()
        }
    }

    /// Sizes the tally for a generation's hops: the only allocation,
    /// once per generation with another number of hops.
    #[inline(always)]
    pub(crate) fn ready(&mut self, hops: usize) {
        if self.local.len() != hops {
            self.local.clear();
            self.local.resize(hops, LocalCount::default());
        }
    }

    #[inline(always)]
    fn count(&mut self, hop: usize) -> &mut LocalCount {
        let c = &mut self.local[hop];
        if !c.touched {
            c.touched = true;
            self.dirty.push(hop as u32);
        }
        c
    }

    /// A packet (or frame) of `len` bytes went through a hop.
    #[inline(always)]
    pub(crate) fn passed(&mut self, hop: usize, dir: Direction, len: u64) {
        let c = self.count(hop);
        c.packets[dir as usize] += 1;
        c.bytes[dir as usize] += len;
    }

    #[inline(always)]
    pub(crate) fn dropped(&mut self, hop: usize) {
        self.count(hop).dropped += 1;
    }

    /// A hop with no working endpoint: the chain's failure mode decides
    /// (`Some`: drop; `None`: go on with the next hop).
    #[inline]
    pub(crate) fn down(&mut self, fail: FailMode, hop: usize) -> Option<Action> {
        match fail {
            FailMode::Closed => {
                self.count(hop).dropped += 1;
                Some(Action::Drop(DropReason::ChainHopDown))
            }
            FailMode::Skip => {
                self.count(hop).skipped += 1;
                None
            }
        }
    }

    /// Copies the packet, as it is now, for the mirror port `port` of
    /// hop `hop` (into the burst's side output); counts what happened.
    #[inline]
    pub(crate) fn mirror(
        &mut self,
        cx: &Context<'_>,
        v: &RawView<'_>,
        hop: usize,
        port: u16,
        pkt: &Packet,
        copies: &mut Copies,
    ) {
        let reason = if !v.links.is_up(port) {
            DropReason::CopyPortDown
        } else {
            let tag = CopyTag {
                owner: CopyOwner::ChainMirror,
                id: hop as u32,
            };
            match copies.copy(port, tag, pkt) {
                Ok(()) => {
                    let c = self.count(hop);
                    c.mirrored += 1;
                    c.mirrored_bytes += pkt.len() as u64;
                    return;
                }
                Err(CopyError::NoBuffer | CopyError::Full) => DropReason::CopyNoBuffer,
            }
        };
        self.count(hop).mirror_dropped += 1;
        cx.stats.drop_packet(reason);
    }

    /// The hops the last burst visited, in order (a tracing tally only).
    pub(crate) fn visits(&self) -> Vec<HopVisit> {
        self.dirty
            .iter()
            .map(|&h| {
                let c = &self.local[h as usize];
                HopVisit {
                    hop: h as usize,
                    forward: c.packets[0],
                    reverse: c.packets[1],
                    dropped: c.dropped,
                    skipped: c.skipped,
                    mirrored: c.mirrored,
                    mirror_dropped: c.mirror_dropped,
                }
            })
            .collect()
    }

    /// Before a burst: a tracing tally forgets the last one.
    #[inline(always)]
    pub(crate) fn start(&mut self) {
        if self.tracing {
            for &h in &self.dirty {
                self.local[h as usize] = LocalCount::default();
            }
            self.dirty.clear();
        }
    }

    pub(crate) fn flush(&mut self, v: &RawView<'_>) {
        use core::sync::atomic::Ordering::Relaxed;
        if self.tracing {
            return;
        }
        for &h in &self.dirty {
            let c = &mut self.local[h as usize];
            let t = &v.counters[h as usize];
            for d in 0..2 {
                if c.packets[d] != 0 {
                    t.packets[d].fetch_add(c.packets[d], Relaxed);
                    t.bytes[d].fetch_add(c.bytes[d], Relaxed);
                }
            }
            if c.dropped != 0 {
                t.dropped.fetch_add(c.dropped, Relaxed);
            }
            if c.skipped != 0 {
                t.skipped.fetch_add(c.skipped, Relaxed);
            }
            if c.mirrored != 0 {
                t.mirrored.fetch_add(c.mirrored, Relaxed);
                t.mirrored_bytes.fetch_add(c.mirrored_bytes, Relaxed);
            }
            if c.mirror_dropped != 0 {
                t.mirror_dropped.fetch_add(c.mirror_dropped, Relaxed);
            }
            *c = LocalCount::default();
        }
        self.dirty.clear();
    }
}

/// The stage; it owns only this burst's counts.
#[derive(Debug, Default)]
pub struct ChainStage {
    tally: HopTally,
}

impl ChainStage {
    pub fn new() -> ChainStage {
        ChainStage::default()
    }

    /// The packet tracer's stage: it decides as the workers' does but
    /// adds nothing to the generation's hop counters, and keeps what the
    /// last burst did at each hop ([`ChainStage::visits`]). (A policer hop
    /// still charges the traced packet to its bucket.)
    pub fn tracing() -> ChainStage {
        ChainStage {
            tally: HopTally::tracing(),
        }
    }

    /// The hops the last burst visited, in order (a tracing stage only).
    pub fn visits(&self) -> Vec<HopVisit> {
        self.tally.visits()
    }
}

#[inline(always)]
fn tuple_of(m: &PacketMeta) -> Tuple {
    Tuple {
        family: m.family,
        proto: m.proto,
        src: m.src,
        dst: m.dst,
        sport: m.sport,
        dport: m.dport,
    }
}

/// A hash of the flow's client address (the source going forward, the
/// destination coming back): the same for both directions of a flow.
#[inline(always)]
fn client_hash(t: &Tuple, dir: Direction) -> u32 {
    let a = match dir {
        Direction::Forward => t.src,
        Direction::Reverse => t.dst,
    };
    let x = (a as u64) ^ ((a >> 64) as u64).rotate_left(29);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32
}

impl Stage for ChainStage {
    #[inline]
    fn process(&mut self, cx: &Context<'_>, burst: &mut Burst) {
        let table = &cx.tables.chains;
        let Some(v) = table.raw() else { return };
        self.tally.ready(v.hops.len());
        self.tally.start();
        let n = burst.pkts.len();
        for i in 0..n {
            if burst.action[i] != Action::Continue || burst.meta[i].family == 0 {
                continue;
            }
            let rx = burst.pkts[i].rx_port;
            let m = &burst.meta[i];
            let (chain, start, dir) = if let Some(PortHop {
                chain,
                position,
                direction,
            }) = table.port_hop(rx)
            {
                let next = match direction {
                    Direction::Forward => position as i32 + 1,
                    Direction::Reverse => position as i32 - 1,
                };
                (chain, next, direction)
            } else {
                let mut t = tuple_of(m);
                let later_fragment = m.flags & flags::LATER_FRAGMENT != 0;
                if later_fragment {
                    // No ports: match on addresses; a chain does not
                    // reassemble, so such a fragment of chain traffic is
                    // dropped rather than let past the chain's hops.
                    t.sport = 0;
                    t.dport = 0;
                    if table.classify_addresses(m.network, rx, &t) {
                        burst.action[i] = Action::Drop(DropReason::ChainDenied);
                    }
                    continue;
                }
                match table.classify(m.network, rx, &t) {
                    None => continue,
                    Some((chain, dir)) => {
                        let c = &v.chains[chain as usize];
                        let start = match dir {
                            Direction::Forward => 0,
                            Direction::Reverse => c.len as i32 - 1,
                        };
                        (chain, start, dir)
                    }
                }
            };
            let a = self.run(
                cx,
                &v,
                chain as usize,
                start,
                dir,
                &mut burst.pkts[i],
                &mut burst.meta[i],
                &mut burst.copies,
            );
            burst.action[i] = a;
        }
        self.tally.flush(&v);
    }

    fn copies_not_sent(&mut self, cx: &Context<'_>, failed: &[CopyTag]) {
        use core::sync::atomic::Ordering::Relaxed;
        let Some(v) = cx.tables.chains.raw() else {
            return;
        };
        for t in failed {
            if t.owner != CopyOwner::ChainMirror {
                continue;
            }
            // Sent back right after the burst that made them, with the
            // same generation: the index is that generation's hop.
            if let Some(c) = v.counters.get(t.id as usize) {
                c.mirror_dropped.fetch_add(1, Relaxed);
            }
        }
    }
}

impl ChainStage {
    /// Runs a packet through its chain from position `pos` on.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        cx: &Context<'_>,
        v: &RawView<'_>,
        chain: usize,
        mut pos: i32,
        dir: Direction,
        pkt: &mut Packet,
        m: &mut PacketMeta,
        copies: &mut Copies,
    ) -> Action {
        let c = &v.chains[chain];
        let step = match dir {
            Direction::Forward => 1,
            Direction::Reverse => -1,
        };
        let len = m.l3_len as u64;
        while pos >= 0 && pos < c.len as i32 {
            let h = c.first as usize + pos as usize;
            pos += step;
            let hop = &v.hops[h];
            let t = tuple_of(m);
            let n = hop.candidates.len();
            let f = match n {
                0 => None,
                1 => hop.candidates.first(),
                _ => hop.candidates.get(client_hash(&t, dir) as usize % n),
            };
            let Some(f) = f else {
                // No ready endpoint for this hop.
                match self.tally.down(c.fail, h) {
                    Some(a) => return a,
                    None => continue,
                }
            };
            match f {
                Function::Counter => {}
                Function::Firewall(fw) => {
                    if !fw.allows(&t, dir) {
                        self.tally.dropped(h);
                        return Action::Drop(DropReason::ChainDenied);
                    }
                }
                Function::LoadBalancer(lb) => match dir {
                    Direction::Forward => {
                        let hash = if m.flow_hash != 0 {
                            m.flow_hash
                        } else {
                            parse::flow_hash(m)
                        };
                        if let Some(b) = lb.forward(&t, hash) {
                            let dport = if b.port != 0 { b.port } else { t.dport };
                            translate(pkt, m, t.src, b.addr, t.sport, dport);
                        }
                    }
                    Direction::Reverse => {
                        if lb.is_backend(&t) {
                            let sport = if lb.vport != 0 { lb.vport } else { t.sport };
                            translate(pkt, m, lb.vip, t.dst, sport, t.dport);
                        }
                    }
                },
                Function::Nat(nat) => match dir {
                    Direction::Forward => {
                        if let Some(src) = nat.forward(&t) {
                            translate(pkt, m, src, t.dst, t.sport, t.dport);
                        }
                    }
                    Direction::Reverse => {
                        if let Some(dst) = nat.reverse(&t) {
                            translate(pkt, m, t.src, dst, t.sport, t.dport);
                        }
                    }
                },
                Function::Police(l) => {
                    if !police(l, len as u32, cx.now_ns) {
                        self.tally.dropped(h);
                        return Action::Drop(DropReason::ChainPoliced);
                    }
                }
                Function::Mirror(mr) => {
                    if mr.mirrors(dir) {
                        self.tally.mirror(cx, v, h, mr.port, pkt, copies);
                    }
                }
                Function::External(_) => {
                    match pick_external(v, &hop.candidates, client_hash(&t, dir), dir) {
                        Some((port, dst_mac, src_mac)) => {
                            self.tally.passed(h, dir, len);
                            if let Some(eth) = pkt.data_mut().first_chunk_mut::<12>() {
                                eth[..6].copy_from_slice(&dst_mac);
                                eth[6..].copy_from_slice(&src_mac);
                            }
                            return Action::Tx(port);
                        }
                        None => match self.tally.down(c.fail, h) {
                            Some(a) => return a,
                            None => continue,
                        },
                    }
                }
            }
            self.tally.passed(h, dir, len);
        }
        Action::Continue
    }
}

/// The port (and MACs) of the first external candidate with link, from the
/// one the hash picks on.
#[inline]
pub(crate) fn pick_external(
    v: &RawView<'_>,
    candidates: &[Function],
    hash: u32,
    dir: Direction,
) -> Option<(u16, [u8; 6], [u8; 6])> {
    let n = candidates.len();
    let first = hash as usize % n;
    for k in 0..n {
        let Function::External(x) = &candidates[(first + k) % n] else {
            continue;
        };
        let (out, back, dst, src) = match dir {
            Direction::Forward => (x.ingress, x.egress, x.ingress_dst_mac, x.ingress_src_mac),
            Direction::Reverse => (x.egress, x.ingress, x.egress_dst_mac, x.egress_src_mac),
        };
        if v.links.is_up(out) && v.links.is_up(back) {
            return Some((out, dst, src));
        }
    }
    None
}

/// Writes a new 4-tuple into the packet (checksums fixed incrementally).
#[inline]
fn translate(pkt: &mut Packet, m: &mut PacketMeta, src: u128, dst: u128, sport: u16, dport: u16) {
    service::rewrite(
        pkt,
        m,
        &FlowTuple {
            src,
            dst,
            sport,
            dport,
        },
    );
}
