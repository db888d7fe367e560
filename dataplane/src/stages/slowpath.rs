//! The slow path (interim: counts punted packets as drops).
use super::{Context, PacketMeta, Punt};
use crate::buf::{Packet, PoolCache};
use crate::stats::DropReason;
use crate::tables::{PortId, Tables};

pub struct SlowPath;

impl SlowPath {
    pub fn new(_t: &Tables) -> SlowPath {
        SlowPath
    }
    pub fn on_tables(&mut self, _t: &Tables) {}
    pub fn handle(
        &mut self,
        cx: &Context<'_>,
        cache: &mut PoolCache,
        pkt: Packet,
        _meta: &PacketMeta,
        punt: Punt,
        _emit: &mut dyn FnMut(PortId, Packet, &mut PoolCache),
    ) {
        let r = match punt {
            Punt::TtlExpired => DropReason::TtlExpired,
            Punt::NoRoute => DropReason::NoRoute,
            Punt::Resolve => DropReason::NeighbourUnresolved,
            Punt::TooBig => DropReason::MtuExceeded,
            Punt::Unreachable { .. } => DropReason::Unreachable,
            Punt::Arp => DropReason::ArpInvalid,
            Punt::Local => DropReason::LocalUnhandled,
        };
        cx.stats.drop_packet(r);
        cache.free(pkt);
    }
}
