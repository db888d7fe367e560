//! Shaping: per-pod bandwidth limits ([`crate::tables::bandwidth`]).
//!
//! Two stages, so that each direction sees the pod's own address whatever
//! NAT does in between:
//! * [`ShapeEgress`], right after parse: the limit of the pod that sent the
//!   packet (its source before any translation). Reads `family`, `src`,
//!   the frame length. Writes `depart_ns`. Decides `Drop(bandwidth_exceeded)`.
//! * [`ShapeIngress`], last: the limit of the pod the packet is for (its
//!   destination after translation), for packets the pipeline sends.
//!   Reads `family`, `dst`, `depart_ns`, the action. Decides
//!   `Drop(bandwidth_exceeded)`, or turns `Tx(port)` into
//!   `Defer(port, time)` when either limit delays the packet.
//!
//! Lengths are frame lengths (the bandwidth plugin's filter counts what
//! the pod's interface sends, Ethernet header included). A packet delayed
//! by its sender's limit is checked against its receiver's at the time it
//! will leave. Next: the worker sends, holds (`Defer`) or drops.
//!
//! Limits belong to pods' pod-network addresses: packets in other
//! networks (Multus attachments) are not looked up, so an address another
//! network reuses is never charged to a pod.
//!
//! With no limited pod in the table both stages cost one test per burst.
//! A packet another worker handed over (`Action::Handoff`) was charged to
//! its sender's limit by that worker and is not charged again (a delay that
//! limit gave it is not kept across the handoff).

use super::{Action, Burst, Context, Stage};
use crate::stats::DropReason;
use crate::tables::bandwidth::Admit;
use crate::tables::POD_NETWORK;

/// The sender's limit (see the module documentation).
#[derive(Debug, Default, Clone, Copy)]
pub struct ShapeEgress;

/// The receiver's limit, and deferral (see the module documentation).
#[derive(Debug, Default, Clone, Copy)]
pub struct ShapeIngress;

impl Stage for ShapeEgress {
    #[inline]
    fn process(&mut self, cx: &Context<'_>, burst: &mut Burst) {
        let bw = &cx.tables.bandwidth;
        if bw.is_empty() {
            return;
        }
        for i in 0..burst.pkts.len() {
            // A packet handed over by another worker was charged there.
            if burst.action[i] != Action::Continue || burst.tried[i] != 0 {
                continue;
            }
            let m = &mut burst.meta[i];
            if m.family == 0 || m.network != POD_NETWORK {
                continue;
            }
            let Some(l) = bw.get(m.family, m.src).and_then(|p| p.egress.as_ref()) else {
                continue;
            };
            match l.admit(burst.pkts[i].len() as u32, cx.now_ns) {
                Admit::Conform => {}
                Admit::Delay(t) => m.depart_ns = t,
                Admit::Drop => burst.action[i] = Action::Drop(DropReason::BandwidthExceeded),
            }
        }
    }
}

impl Stage for ShapeIngress {
    #[inline]
    fn process(&mut self, cx: &Context<'_>, burst: &mut Burst) {
        let bw = &cx.tables.bandwidth;
        if bw.is_empty() {
            return;
        }
        for i in 0..burst.pkts.len() {
            let Action::Tx(port) = burst.action[i] else {
                continue;
            };
            let m = &burst.meta[i];
            let mut at = m.depart_ns.max(cx.now_ns);
            if m.family != 0 && m.network == POD_NETWORK {
                if let Some(l) = bw.get(m.family, m.dst).and_then(|p| p.ingress.as_ref()) {
                    match l.admit(burst.pkts[i].len() as u32, at) {
                        Admit::Conform => {}
                        Admit::Delay(t) => at = t,
                        Admit::Drop => {
                            burst.action[i] = Action::Drop(DropReason::BandwidthExceeded);
                            continue;
                        }
                    }
                }
            }
            if at > cx.now_ns {
                burst.meta[i].depart_ns = at;
                burst.action[i] = Action::Defer(port);
            }
        }
    }
}
