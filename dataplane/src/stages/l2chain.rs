//! Ethernet chains: carry frames unchanged through a network service chain
//! between two ports (a bump in the wire), before anything routes them.
//!
//! Reads: the frame's Ethernet header, VLAN tags and IP/L4 headers (with
//! [`parse::parse_headers`], the parse stage's own code), the receiving
//! port, the generation's
//! [`ChainTable`](crate::tables::chain::ChainTable) (its Ethernet chains and
//! per-port roles) and its port link flags, the time (policer hops).
//! Writes: nothing in the frame (no MAC rewrite, no TTL change); `PacketMeta`
//! is scratch here and filled again by `parse` for frames this stage
//! leaves.
//! Decides: `Tx(port)` to an external function's port or, at the end of the
//! chain, to the chain's other end; `Drop` for a frame too short or with
//! malformed IP headers (parse's reasons), a firewall deny or a non-first
//! fragment of steered IP traffic (`chain_denied`), a policer
//! (`chain_policed`) and a hop with no working endpoint in a chain that
//! fails closed (`chain_hop_down`).
//! Next: `parse` for every frame it leaves undecided: frames on ports that
//! are not an Ethernet chain's, and frames on a chain's entry or exit that
//! no classifier takes.
//!
//! # Per frame
//!
//! It runs first in the node pipeline: `parse` admits only frames
//! addressed to the port, and the Service stage would translate addresses,
//! while an Ethernet chain carries frames for other hosts, untouched. With
//! no Ethernet chain in the generation it costs one branch per burst; with
//! one, a byte per port ([`L2Port`]) says whether a frame is its business:
//!
//! * on a chain's entry or exit: the headers are read and the classifiers
//!   of that port tried (first match wins); a match starts the chain at its
//!   first hop (forward, on the entry) or its last (reverse, on the exit);
//! * on an external hop's port: the frame comes back from the function; the
//!   port says which chain, hop and direction ([`PortHop`]), and it goes on
//!   with the next hop.
//!
//! Built-in hops (firewall, counter, police) run inline; an external hop
//! takes the frame as it is (`Tx` on its ingress going forward, egress
//! coming back). At the end the frame leaves on the chain's exit (forward)
//! or entry (reverse).
//!
//! Nothing is kept per flow: the choice among a hop's candidates hashes
//! the client's MAC (the source going forward, the destination coming
//! back), so both directions of a conversation take the same candidate on
//! any worker.

use super::chain::{pick_external, HopTally, HopVisit};
use super::{flags, parse, Action, Burst, Context, Copies, PacketMeta, Stage};
use crate::buf::Packet;
use crate::stats::DropReason;
use crate::tables::chain::{
    police, ChainId, Direction, Function, L2Frame, L2Port, L2View, PortHop, Tuple,
};
use crate::tables::PortId;

/// The stage; it owns only this burst's counts.
#[derive(Debug, Default)]
pub struct L2ChainStage {
    tally: HopTally,
}

impl L2ChainStage {
    pub fn new() -> L2ChainStage {
        L2ChainStage::default()
    }

    /// The packet tracer's stage (see [`ChainStage::tracing`](super::chain::ChainStage::tracing)).
    pub fn tracing() -> L2ChainStage {
        L2ChainStage {
            tally: HopTally::tracing(),
        }
    }

    /// The hops the last burst visited, in order (a tracing stage only).
    pub fn visits(&self) -> Vec<HopVisit> {
        self.tally.visits()
    }
}

/// A hash of the client's MAC: the same for both directions.
#[inline(always)]
fn client_hash(f: &L2Frame, dir: Direction) -> u32 {
    let m = match dir {
        Direction::Forward => f.src_mac,
        Direction::Reverse => f.dst_mac,
    };
    let x = u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]]);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32
}

/// Reads the fields the classifiers and hops look at.
#[inline(always)]
fn read_frame(d: &[u8], meta: &mut PacketMeta) -> Result<L2Frame, Action> {
    let et = parse::parse_headers(d, 0, meta)?;
    let Some(eth) = d.first_chunk::<14>() else {
        return Err(Action::Drop(DropReason::Truncated));
    };
    let mut f = L2Frame {
        vlan: meta.vlan,
        ethertype: et,
        ..L2Frame::default()
    };
    f.dst_mac.copy_from_slice(&eth[0..6]);
    f.src_mac.copy_from_slice(&eth[6..12]);
    if meta.family != 0 {
        f.tuple = Tuple {
            family: meta.family,
            proto: meta.proto,
            src: meta.src,
            dst: meta.dst,
            sport: meta.sport,
            dport: meta.dport,
        };
    }
    Ok(f)
}

impl Stage for L2ChainStage {
    #[inline]
    fn process(&mut self, cx: &Context<'_>, burst: &mut Burst) {
        let Some(v) = cx.tables.chains.l2_raw() else {
            return;
        };
        self.tally.ready(v.raw.hops.len());
        self.tally.start();
        let n = burst.pkts.len();
        for i in 0..n {
            if burst.action[i] != Action::Continue {
                continue;
            }
            let rx = burst.pkts[i].rx_port;
            let role = v.port(rx);
            if role == L2Port::None {
                continue;
            }
            if let Some(a) = self.frame(
                cx,
                &v,
                rx,
                role,
                &burst.pkts[i],
                &mut burst.meta[i],
                &mut burst.copies,
            ) {
                burst.action[i] = a;
            }
        }
        self.tally.flush(&v.raw);
    }
}

impl L2ChainStage {
    /// Decides one frame received on an Ethernet chain's port; `None`
    /// leaves it to the normal path.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn frame(
        &mut self,
        cx: &Context<'_>,
        v: &L2View<'_>,
        rx: PortId,
        role: L2Port,
        pkt: &Packet,
        meta: &mut PacketMeta,
        copies: &mut Copies,
    ) -> Option<Action> {
        let f = match read_frame(pkt.data(), meta) {
            Ok(f) => f,
            // On a hop's port every frame is the chain's; on an end, a
            // frame whose headers cannot be read would be dropped by
            // `parse` too.
            Err(a) => return Some(a),
        };
        let later_fragment = meta.family != 0 && meta.flags & flags::LATER_FRAGMENT != 0;
        let (chain, start, dir) = match role {
            L2Port::Hop => {
                let PortHop {
                    chain,
                    position,
                    direction,
                } = v.port_hop(rx)?;
                let next = match direction {
                    Direction::Forward => position as i32 + 1,
                    Direction::Reverse => position as i32 - 1,
                };
                (chain, next, direction)
            }
            L2Port::End => {
                let (chain, dir, fragment_of_ip_match) = v.classify(rx, &f, later_fragment)?;
                if fragment_of_ip_match {
                    // Steered by its addresses, but without ports: chains
                    // do not reassemble (as IP chains).
                    return Some(Action::Drop(DropReason::ChainDenied));
                }
                let c = &v.raw.chains[chain as usize];
                let start = match dir {
                    Direction::Forward => 0,
                    Direction::Reverse => c.len as i32 - 1,
                };
                (chain, start, dir)
            }
            L2Port::None => return None,
        };
        Some(self.run(cx, v, (chain, start, dir), &f, later_fragment, pkt, copies))
    }

    /// Runs a frame through its chain from position `pos` on.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        cx: &Context<'_>,
        v: &L2View<'_>,
        (chain, mut pos, dir): (ChainId, i32, Direction),
        f: &L2Frame,
        later_fragment: bool,
        pkt: &Packet,
        copies: &mut Copies,
    ) -> Action {
        let len = pkt.len() as u64;
        let c = &v.raw.chains[chain as usize];
        let Some((entry, exit)) = v.ends.get(chain as usize).copied().flatten() else {
            // A port of an IP chain's hop is never marked as an Ethernet
            // one; unreachable with a table that built.
            return Action::Drop(DropReason::ChainHopDown);
        };
        let step = match dir {
            Direction::Forward => 1,
            Direction::Reverse => -1,
        };
        let hash = client_hash(f, dir);
        while pos >= 0 && pos < c.len as i32 {
            let h = c.first as usize + pos as usize;
            pos += step;
            let hop = &v.raw.hops[h];
            let n = hop.candidates.len();
            let func = match n {
                0 => None,
                1 => hop.candidates.first(),
                _ => hop.candidates.get(hash as usize % n),
            };
            let Some(func) = func else {
                match self.tally.down(c.fail, h) {
                    Some(a) => return a,
                    None => continue,
                }
            };
            match func {
                Function::Counter => {}
                Function::Firewall(fw) => {
                    let allowed = if f.tuple.family == 0 {
                        fw.allow_non_ip
                    } else {
                        // A non-first fragment has no ports to judge.
                        !later_fragment && fw.allows(&f.tuple, dir)
                    };
                    if !allowed {
                        self.tally.dropped(h);
                        return Action::Drop(DropReason::ChainDenied);
                    }
                }
                Function::Police(l) => {
                    if !police(l, len as u32, cx.now_ns) {
                        self.tally.dropped(h);
                        return Action::Drop(DropReason::ChainPoliced);
                    }
                }
                Function::External(_) => {
                    return match pick_external(&v.raw, &hop.candidates, hash, dir) {
                        Some((port, _, _)) => {
                            self.tally.passed(h, dir, len);
                            // The frame goes as it is: the function sees
                            // what the client sent.
                            Action::Tx(port)
                        }
                        None => match self.tally.down(c.fail, h) {
                            Some(a) => a,
                            None => continue,
                        },
                    };
                }
                Function::Mirror(mr) => {
                    if mr.mirrors(dir) {
                        self.tally.mirror(cx, &v.raw, h, mr.port, pkt, copies);
                    }
                }
                // Refused in an Ethernet chain when the table is built:
                // they rewrite addresses.
                Function::LoadBalancer(_) | Function::Nat(_) => {}
            }
            self.tally.passed(h, dir, len);
        }
        Action::Tx(match dir {
            Direction::Forward => exit,
            Direction::Reverse => entry,
        })
    }
}
