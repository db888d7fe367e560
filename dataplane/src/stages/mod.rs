//! The pipeline: one module per stage, each run over a whole burst.
//!
//! The stage contract (after VPP's graph nodes, "buffer metadata, next index
//! usage"):
//! * A stage gets the burst ([`Burst`]: packets, their [`PacketMeta`], and
//!   their [`Action`]s) and a read-only [`Context`] (the table generation,
//!   the neighbour cache, the worker's counters, the time).
//! * It looks only at packets whose action is [`Action::Continue`]; for each
//!   it either leaves `Continue` (and fills the metadata the next stage
//!   reads), or decides: [`Action::Tx`] to a port, [`Action::Punt`] to the
//!   slow path, or [`Action::Drop`] with a counted reason. A decided packet
//!   is never looked at again by later stages.
//! * It never allocates, locks, logs or calls the OS.
//! * It may emit extra packets, copies of a packet as it is at that point
//!   of the pipeline, through the burst's side output ([`Copies`]): a copy
//!   takes one of the free buffers the worker keeps ready there (taken from
//!   its pool cache between bursts, never during a stage) and is one
//!   `memcpy`; the worker transmits the copies right after the burst's own
//!   packets and tells the stage that made a copy it could not send
//!   ([`Stage::copies_not_sent`]). A copy that cannot be made returns an
//!   error the stage counts; it never changes what happens to the original.
//!   Port mirroring (the chain's `mirror` hop) is the first user, multicast
//!   replication the next.
//!
//! Each stage's module doc says what it reads, what it writes, and what
//! comes next. Stages compose as tuples (`(A, (B, C))`), so a pipeline is
//! one monomorphised type chosen when the worker starts.
//!
//! The L3 router's pipeline: [`parse`] → [`route`] → [`rewrite`]; the
//! [`slowpath`] handles punted packets after the burst.

pub mod chain;
pub mod l2chain;
pub mod parse;
pub mod rewrite;
pub mod route;
pub mod service;
pub mod shape;
pub mod slowpath;

use crate::buf::{Batch, Packet, BURST_SIZE};
use crate::state::neighbour::NeighbourCache;
use crate::stats::{DropReason, WorkerStats};
use crate::tables::{NetworkId, PortId, Tables};
use arrayvec::ArrayVec;

/// What happens to a packet once the pipeline has decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Not decided yet: the next stage looks at it.
    Continue,
    /// Transmit on this port.
    Tx(PortId),
    /// Hand to the slow path after the burst.
    Punt(Punt),
    /// Drop and count.
    Drop(DropReason),
    /// Hand to this worker, which may own the packet's connection.
    Handoff(u16),
    /// Transmit on this port, not before `PacketMeta::depart_ns` (the
    /// worker's clock): a shaped packet the worker holds until then.
    Defer(PortId),
}

/// Why a packet goes to the slow path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Punt {
    /// An ARP packet.
    Arp,
    /// Addressed to the appliance (ICMP echo, neighbour discovery, ...).
    Local,
    /// TTL or hop limit would reach zero: time exceeded.
    TtlExpired,
    /// No route: destination unreachable.
    NoRoute,
    /// An unreachable or prohibit route.
    Unreachable { prohibited: bool },
    /// Larger than the next hop's MTU: fragment or tell the sender.
    TooBig,
    /// The next hop's link-layer address is unknown: solicit it.
    Resolve,
    /// A Service rejects the connection: TCP reset or ICMP port unreachable.
    Reject,
}

/// Per-packet metadata filled by `parse` and extended by later stages.
///
/// Addresses are kept as `u128` for both families (an IPv4 address in the
/// low 32 bits), so later stages handle both with one code path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketMeta {
    pub l3_offset: u16,
    pub l4_offset: u16,
    /// IP packet length: IPv4 total length, or 40 + IPv6 payload length.
    pub l3_len: u16,
    /// 4, 6, or 0 for non-IP.
    pub family: u8,
    /// The upper-layer protocol (after IPv6 extension headers).
    pub proto: u8,
    pub flags: u16,
    /// The innermost VLAN id, 0 if untagged.
    pub vlan: u16,
    /// IPv4 TTL or IPv6 hop limit as received.
    pub ttl: u8,
    pub network: NetworkId,
    pub src: u128,
    pub dst: u128,
    /// Ports for TCP/UDP/SCTP; ICMP echo identifier in `sport`.
    pub sport: u16,
    pub dport: u16,
    /// A hash of the 5-tuple for ECMP and later load balancing.
    pub flow_hash: u32,
    /// Set by `route`: the chosen next hop's index in the network's table.
    pub next_hop: u32,
    /// Set by the shaping stages: the earliest time the packet may leave
    /// (0: at once).
    pub depart_ns: u64,
}

/// `PacketMeta::flags` bits.
pub mod flags {
    /// Destination MAC is broadcast or multicast.
    pub const L2_MULTICAST: u16 = 1 << 0;
    /// IPv4 MF set or non-zero offset, or an IPv6 fragment header.
    pub const FRAGMENT: u16 = 1 << 1;
    /// Not the first fragment: no L4 header.
    pub const LATER_FRAGMENT: u16 = 1 << 2;
    /// IPv4 DF set.
    pub const DONT_FRAGMENT: u16 = 1 << 3;
    /// IPv4 with options, or IPv6 with extension headers.
    pub const IP_OPTIONS: u16 = 1 << 4;
    /// Destination IP is multicast.
    pub const IP_MULTICAST: u16 = 1 << 5;
    /// The packet was generated by the appliance (ICMP error, reply).
    pub const LOCAL_ORIGIN: u16 = 1 << 6;
}

/// A burst with its per-packet metadata and decisions.
pub struct Burst {
    pub pkts: Batch,
    pub meta: [PacketMeta; BURST_SIZE],
    pub action: [Action; BURST_SIZE],
    /// Per packet, the workers that already looked for its connection (a
    /// bit per worker id): zero for packets from a port, set for packets
    /// handed over by another worker ([`Action::Handoff`]).
    pub tried: [u32; BURST_SIZE],
    /// Extra packets the stages emit (copies), sent after the burst.
    pub copies: Copies,
}

impl Default for Burst {
    fn default() -> Self {
        Burst {
            pkts: Batch::new(),
            meta: [PacketMeta::default(); BURST_SIZE],
            action: [Action::Continue; BURST_SIZE],
            tried: [0; BURST_SIZE],
            copies: Copies::default(),
        }
    }
}

/// The most copies one burst may emit, and the most free buffers the
/// worker keeps ready for them: two per packet of a full burst (a packet
/// may pass two mirror hops, or be replicated twice).
pub const COPY_CAPACITY: usize = 2 * BURST_SIZE;

/// Which kind of stage made a copy: a stage only looks at the failures of
/// its own copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyOwner {
    /// A service chain's mirror hop; the tag's `id` is the hop's index in
    /// the generation's hop table.
    ChainMirror,
}

/// Who made a copy, so that a copy the worker could not send is counted
/// against it ([`Stage::copies_not_sent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyTag {
    pub owner: CopyOwner,
    pub id: u32,
}

/// One copy waiting to be sent.
#[derive(Debug)]
pub struct CopyOut {
    pub port: PortId,
    pub tag: CopyTag,
    pub pkt: Packet,
}

/// Why a copy was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyError {
    /// No free buffer: the pool is empty (or the worker keeps none ready).
    NoBuffer,
    /// This burst already made [`COPY_CAPACITY`] copies.
    Full,
}

/// A burst's side output: free buffers the worker put there before the
/// burst, and the copies stages made of its packets.
///
/// Allocation-free: both lists are fixed-capacity arrays inside the burst.
/// The worker tops the spares up from its pool cache before each burst
/// (only while the tables hold something that copies, so a pipeline
/// without one keeps no buffers out of the pool) and drains the copies
/// after it.
#[derive(Debug, Default)]
pub struct Copies {
    spares: ArrayVec<Packet, COPY_CAPACITY>,
    out: ArrayVec<CopyOut, COPY_CAPACITY>,
}

impl Copies {
    /// Copies `pkt` (its frame as it is now) for transmission on `port`.
    /// One buffer taken from the spares and the frame's cache lines copied
    /// ([`Packet::copy_from`]); the original is not touched.
    #[inline]
    pub fn copy(&mut self, port: PortId, tag: CopyTag, pkt: &Packet) -> Result<(), CopyError> {
        if self.out.is_full() {
            return Err(CopyError::Full);
        }
        let Some(mut c) = self.spares.pop() else {
            return Err(CopyError::NoBuffer);
        };
        c.copy_from(pkt);
        self.out.push(CopyOut { port, tag, pkt: c });
        Ok(())
    }

    /// Free buffers ready for copies.
    #[inline]
    pub fn spares(&self) -> usize {
        self.spares.len()
    }

    /// Adds a free buffer; gives it back when the spares are full.
    #[inline]
    pub fn add_spare(&mut self, pkt: Packet) -> Result<(), Packet> {
        self.spares.try_push(pkt).map_err(|e| e.element())
    }

    /// Takes the spares back (the worker returns them to its cache).
    pub fn take_spares(&mut self) -> impl Iterator<Item = Packet> + '_ {
        self.spares.drain(..)
    }

    /// The copies made so far.
    #[inline]
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    /// Takes the copies for transmission, in the order they were made.
    #[inline]
    pub fn drain(&mut self) -> impl Iterator<Item = CopyOut> + '_ {
        self.out.drain(..)
    }
}

impl Burst {
    /// Readies the burst for newly received packets.
    #[inline]
    pub fn reset_actions(&mut self) {
        let n = self.pkts.len();
        self.action[..n].fill(Action::Continue);
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }
}

/// What a stage may read besides the burst.
pub struct Context<'a> {
    pub tables: &'a Tables,
    pub neighbours: &'a NeighbourCache,
    pub stats: &'a WorkerStats,
    /// Monotonic time in nanoseconds, read once per burst.
    pub now_ns: u64,
    pub worker: u16,
    /// How many workers run (packets may be handed between them).
    pub workers: u16,
}

/// One pipeline stage. See the module docs for the contract.
pub trait Stage {
    fn process(&mut self, cx: &Context<'_>, burst: &mut Burst);

    /// Upkeep of per-worker state (expiry sweeps), called once per poll;
    /// `idle` when the poll received nothing. Small and bounded.
    #[inline(always)]
    fn housekeeping(&mut self, _cx: &Context<'_>, _idle: bool) {}

    /// Copies made during the last burst that the worker could not send
    /// (transmit queue full, or no queue for the port); each stage counts
    /// those whose tag it owns. Called right after the burst's transmit,
    /// with the same tables; only when something failed.
    #[inline(always)]
    fn copies_not_sent(&mut self, _cx: &Context<'_>, _failed: &[CopyTag]) {}
}

impl<A: Stage, B: Stage> Stage for (A, B) {
    #[inline(always)]
    fn process(&mut self, cx: &Context<'_>, burst: &mut Burst) {
        self.0.process(cx, burst);
        self.1.process(cx, burst);
    }

    #[inline(always)]
    fn housekeeping(&mut self, cx: &Context<'_>, idle: bool) {
        self.0.housekeeping(cx, idle);
        self.1.housekeeping(cx, idle);
    }

    #[inline(always)]
    fn copies_not_sent(&mut self, cx: &Context<'_>, failed: &[CopyTag]) {
        self.0.copies_not_sent(cx, failed);
        self.1.copies_not_sent(cx, failed);
    }
}

/// The IPv4/IPv6 router: parse → route → rewrite.
pub type RouterPipeline = (parse::Parse, (route::Route, rewrite::Rewrite));

/// The router pipeline, ready to run.
pub fn router() -> RouterPipeline {
    (parse::Parse, (route::Route, rewrite::Rewrite))
}

/// The Kubernetes node pipeline: Ethernet chains → parse → egress shaping
/// → service (connection tracking, load balancing, NAT) → service chains →
/// route → rewrite → ingress shaping. Ethernet chains, shaping and chains
/// cost one branch per burst when no chain is configured and no pod is
/// limited.
pub type ServicePipeline = (
    l2chain::L2ChainStage,
    (
        parse::Parse,
        (
            shape::ShapeEgress,
            (
                service::ServiceStage,
                (
                    chain::ChainStage,
                    (route::Route, (rewrite::Rewrite, shape::ShapeIngress)),
                ),
            ),
        ),
    ),
);

/// The service pipeline for one worker.
pub fn service_pipeline(cfg: &service::ServiceConfig) -> ServicePipeline {
    (
        l2chain::L2ChainStage::new(),
        (
            parse::Parse,
            (
                shape::ShapeEgress,
                (
                    service::ServiceStage::new(cfg),
                    (
                        chain::ChainStage::new(),
                        (route::Route, (rewrite::Rewrite, shape::ShapeIngress)),
                    ),
                ),
            ),
        ),
    )
}

/// The service stage of a [`ServicePipeline`] (its connection table).
pub fn service_stage(p: &ServicePipeline) -> &service::ServiceStage {
    &p.1 .1 .1 .0
}

/// The router with per-pod bandwidth limits: parse → route → rewrite →
/// shaping (both directions, on the packet's own addresses).
pub type ShapedRouterPipeline = (
    parse::Parse,
    (
        shape::ShapeEgress,
        (route::Route, (rewrite::Rewrite, shape::ShapeIngress)),
    ),
);

pub fn shaped_router() -> ShapedRouterPipeline {
    (
        parse::Parse,
        (
            shape::ShapeEgress,
            (route::Route, (rewrite::Rewrite, shape::ShapeIngress)),
        ),
    )
}
