//! Per-worker counters, summed by whoever reads them.
//!
//! One declaration generates [`DropReason`] and its names (VPP's
//! `foreach_*_error` X-macro): every drop in the dataplane is one of these,
//! counted per worker, never logged per packet. [`Event`] does the same for
//! things that are not drops (ARP replies sent, ICMP errors suppressed, ...).
//!
//! Counters are written by exactly one thread (the worker) with a relaxed
//! load + store, and read by any thread; see [`crate::io::bump`].

use crate::io::bump;
use core::sync::atomic::{AtomicU64, Ordering};
use serde::Serialize;
use std::collections::BTreeMap;

macro_rules! counters {
    ($(#[$m:meta])* $vis:vis enum $ty:ident { $($variant:ident = ($name:literal, $text:literal),)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        $vis enum $ty { $($variant,)* }

        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant,)*];
            /// How many values there are.
            pub const COUNT: usize = Self::ALL.len();

            /// The counter's stable snake_case name (API, JSON, CLI).
            pub const fn name(self) -> &'static str {
                match self { $($ty::$variant => $name,)* }
            }

            /// What the counter means, for people.
            pub const fn description(self) -> &'static str {
                match self { $($ty::$variant => $text,)* }
            }

            /// Looks a counter up by its name.
            pub fn from_name(name: &str) -> Option<$ty> {
                match name { $($name => Some($ty::$variant),)* _ => None }
            }
        }
    };
}

counters! {
    /// Why a packet was dropped.
    pub enum DropReason {
        Truncated = ("truncated", "frame shorter than the headers it announces"),
        L2Unsupported = ("l2_unsupported", "EtherType not handled, or more than two VLAN tags"),
        L2OtherHost = ("l2_other_host", "unicast frame addressed to another MAC"),
        UnknownPort = ("unknown_port", "received on a port with no configuration"),
        Ipv4Header = ("ipv4_bad_header", "IPv4 version, header length or total length invalid"),
        Ipv4Checksum = ("ipv4_bad_checksum", "IPv4 header checksum does not verify"),
        Ipv6Header = ("ipv6_bad_header", "IPv6 version or payload length invalid"),
        Ipv6ExtHeader = ("ipv6_bad_ext_header", "IPv6 extension header chain malformed or too long"),
        L4Header = ("l4_bad_header", "TCP/UDP/SCTP/ICMP header truncated or invalid"),
        MartianSource = ("martian_source", "source address that must never be routed (loopback, multicast, unspecified, broadcast)"),
        MartianDestination = ("martian_destination", "destination address that must never be routed (loopback, unspecified, limited broadcast)"),
        LinkLocal = ("link_local_not_forwarded", "link-local source or destination on a packet to be forwarded"),
        MulticastNotRouted = ("multicast_not_routed", "multicast destination with no multicast route"),
        TtlExpired = ("ttl_expired", "TTL or hop limit reached zero (ICMP time exceeded sent, rate permitting)"),
        NoRoute = ("no_route", "no route to the destination (ICMP unreachable sent, rate permitting)"),
        Blackhole = ("blackhole", "route is a blackhole"),
        Unreachable = ("unreachable_route", "route is unreachable or prohibited (ICMP sent, rate permitting)"),
        NeighbourUnresolved = ("neighbour_unresolved", "next hop's link-layer address not yet resolved (solicitation sent)"),
        MtuExceeded = ("mtu_exceeded", "larger than the egress MTU and not fragmentable (ICMP too big sent, rate permitting)"),
        FragmentFailed = ("fragment_failed", "larger than the egress MTU and could not be fragmented"),
        LocalUnhandled = ("local_unhandled", "addressed to the appliance, no local handler for it"),
        ArpInvalid = ("arp_invalid", "ARP packet not Ethernet/IPv4, or malformed"),
        NdInvalid = ("nd_invalid", "neighbour discovery message malformed or failing RFC 4861 checks"),
        NoTxQueue = ("no_tx_queue", "egress port has no transmit queue on this worker"),
        TxFull = ("tx_full", "egress queue full"),
        NoBuffer = ("no_buffer", "packet pool empty when a buffer was needed"),
        ConntrackInvalid = ("ct_invalid", "packet does not fit its connection's state (or cannot open a translated one)"),
        ConntrackFull = ("ct_full", "connection table full of live connections: a new Service connection was refused"),
        ServiceDrop = ("service_drop", "Service verdict drop: no local endpoint under a Local traffic policy, or an unallocated Service address"),
        ServiceReject = ("service_reject", "Service verdict reject: no endpoints, or a port the Service does not serve (TCP reset / ICMP unreachable sent, rate permitting)"),
        ServiceSourceRange = ("service_source_range", "source outside the load balancer's loadBalancerSourceRanges"),
        ServiceFragment = ("service_fragment", "IP fragment addressed to a Service: not reassembled"),
        NatPortExhausted = ("nat_port_exhausted", "no free source-NAT port for a masqueraded connection"),
        PolicyDenied = ("policy_denied", "a new connection denied by a NetworkPolicy or a cluster-wide policy tier"),
        HandoffFull = ("handoff_full", "another worker's handoff ring was full"),
        BandwidthExceeded = ("bandwidth_exceeded", "over a pod's bandwidth limit (beyond the burst when policing, beyond 25 ms of queue when shaping)"),
        DeferFull = ("defer_full", "the worker's queue of shaped packets was full"),
        ChainDenied = ("chain_denied", "denied by a service chain's firewall hop"),
        ChainPoliced = ("chain_policed", "over the rate of a service chain's policer hop"),
        ChainHopDown = ("chain_hop_down", "a service chain's hop had no working endpoint (link down or not ready) and the chain fails closed"),
        CopyNoBuffer = ("copy_no_buffer", "a copy (port mirror) not made: no free buffer in the pool, or more copies than a burst may make; the original is unaffected"),
        CopyPortDown = ("copy_port_down", "a copy (port mirror) not made: its port has no link; the original is unaffected"),
        CopyTxFull = ("copy_tx_full", "a copy (port mirror) not sent: its port's transmit queue was full or missing; the original is unaffected"),
    }
}

counters! {
    /// Things that happen on the slow path and are not drops.
    pub enum Event {
        ArpRequestSent = ("arp_request_sent", "ARP requests sent to resolve a next hop"),
        ArpReplySent = ("arp_reply_sent", "ARP replies sent for the appliance's addresses"),
        NdSolicitSent = ("nd_solicit_sent", "neighbour solicitations sent to resolve a next hop"),
        NdAdvertSent = ("nd_advert_sent", "neighbour advertisements sent for the appliance's addresses"),
        NeighbourLearned = ("neighbour_learned", "neighbour entries created or refreshed"),
        IcmpErrorSent = ("icmp_error_sent", "ICMP/ICMPv6 errors sent"),
        IcmpRateLimited = ("icmp_rate_limited", "ICMP errors not sent because of the rate limit"),
        EchoReplySent = ("echo_reply_sent", "ICMP echo replies sent for the appliance's addresses"),
        Fragmented = ("fragmented", "IPv4 packets fragmented to fit the egress MTU"),
        TablesSwapped = ("tables_swapped", "new table generations picked up"),
        HandoffSent = ("handoff_sent", "packets handed to another worker that may own their connection"),
        IcmpErrorTranslated = ("icmp_error_translated", "ICMP errors about a translated connection rewritten back"),
        ConnectionsEndpointGone = ("ct_endpoint_gone", "connections removed because their Service endpoint was removed"),
        ResetSent = ("tcp_reset_sent", "TCP resets sent for rejected Service connections"),
        CtCreated = ("ct_created", "connections created in the connection tables"),
        CtEvicted = ("ct_evicted", "connections evicted from a full table (never assured live ones unless configured)"),
        CtExpired = ("ct_expired", "connections reclaimed after their timeout"),
        CtRefusedFull = ("ct_refused_full", "new connections refused: the table was full of live connections"),
        CtConnections = ("ct_connections", "connections in the tables now (a gauge, not a count of events)"),
        CopySent = ("copies_sent", "copies (port mirror) handed to their port's transmit queue"),
    }
}

/// The most ports a worker keeps per-port counters for.
pub const MAX_PORTS: usize = 64;

/// Packets a worker received from and sent to one port. Bytes are counted
/// by the ports themselves ([`crate::io::PortStats`]), once, not again here.
#[derive(Default)]
struct PortCounters {
    rx_packets: AtomicU64,
    tx_packets: AtomicU64,
}

/// One worker's counters. The worker writes; anyone reads.
pub struct WorkerStats {
    drops: [AtomicU64; DropReason::COUNT],
    events: [AtomicU64; Event::COUNT],
    ports: [PortCounters; MAX_PORTS],
    bursts: AtomicU64,
    polls: AtomicU64,
    busy_ns: AtomicU64,
    generation: AtomicU64,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            drops: core::array::from_fn(|_| AtomicU64::new(0)),
            events: core::array::from_fn(|_| AtomicU64::new(0)),
            ports: core::array::from_fn(|_| PortCounters::default()),
            bursts: AtomicU64::new(0),
            polls: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }
}

impl WorkerStats {
    #[inline(always)]
    pub fn drop_packet(&self, reason: DropReason) {
        bump(&self.drops[reason as usize], 1);
    }

    #[inline(always)]
    pub fn drops_n(&self, reason: DropReason, n: u64) {
        bump(&self.drops[reason as usize], n);
    }

    #[inline(always)]
    pub fn event(&self, e: Event) {
        bump(&self.events[e as usize], 1);
    }

    /// Sets a counter that mirrors a count kept elsewhere (the connection
    /// table's) or a gauge.
    #[inline(always)]
    pub fn set_event(&self, e: Event, value: u64) {
        self.events[e as usize].store(value, Ordering::Relaxed);
    }

    #[inline(always)]
    pub fn events_n(&self, e: Event, n: u64) {
        bump(&self.events[e as usize], n);
    }

    #[inline(always)]
    pub fn rx(&self, port: u16, packets: u64) {
        if let Some(c) = self.ports.get(port as usize) {
            bump(&c.rx_packets, packets);
        }
    }

    #[inline(always)]
    pub fn tx(&self, port: u16, packets: u64) {
        if let Some(c) = self.ports.get(port as usize) {
            bump(&c.tx_packets, packets);
        }
    }

    /// One poll of the receive queues: the bursts it found, and the time
    /// the previous poll spent working (0 if it found nothing).
    #[inline(always)]
    pub fn poll(&self, bursts: u64, busy_ns: u64) {
        bump(&self.polls, 1);
        if bursts > 0 {
            bump(&self.bursts, bursts);
        }
        if busy_ns > 0 {
            bump(&self.busy_ns, busy_ns);
        }
    }

    pub fn set_generation(&self, g: u64) {
        self.generation.store(g, Ordering::Relaxed);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Ordering::Relaxed)
    }

    pub fn events(&self, e: Event) -> u64 {
        self.events[e as usize].load(Ordering::Relaxed)
    }

    /// A point-in-time copy.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut s = StatsSnapshot::default();
        for r in DropReason::ALL {
            let v = self.drops(*r);
            if v != 0 {
                s.drops.insert(r.name(), v);
            }
            s.dropped += v;
        }
        for e in Event::ALL {
            let v = self.events(*e);
            if v != 0 {
                s.events.insert(e.name(), v);
            }
        }
        for (i, p) in self.ports.iter().enumerate() {
            let c = PortSnapshot {
                rx_packets: p.rx_packets.load(Ordering::Relaxed),
                tx_packets: p.tx_packets.load(Ordering::Relaxed),
            };
            if c != PortSnapshot::default() {
                s.rx_packets += c.rx_packets;
                s.tx_packets += c.tx_packets;
                s.ports.insert(i as u16, c);
            }
        }
        s.bursts = self.bursts.load(Ordering::Relaxed);
        s.polls = self.polls.load(Ordering::Relaxed);
        s.busy_ns = self.busy_ns.load(Ordering::Relaxed);
        s.generation = self.generation();
        s
    }
}

/// Counters of one port as one worker (or the sum of workers) saw them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortSnapshot {
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// A copy of counters; [`StatsSnapshot::sum`] adds workers up.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    pub rx_packets: u64,
    /// Packets transmitted (forwarded and generated by the slow path).
    pub tx_packets: u64,
    pub dropped: u64,
    pub drops: BTreeMap<&'static str, u64>,
    pub events: BTreeMap<&'static str, u64>,
    pub ports: BTreeMap<u16, PortSnapshot>,
    pub bursts: u64,
    pub polls: u64,
    pub busy_ns: u64,
    /// The table generation (for a sum: the oldest one any worker runs).
    pub generation: u64,
}

impl core::ops::AddAssign<&StatsSnapshot> for StatsSnapshot {
    fn add_assign(&mut self, o: &StatsSnapshot) {
        self.rx_packets += o.rx_packets;
        self.tx_packets += o.tx_packets;
        self.dropped += o.dropped;
        for (k, v) in &o.drops {
            *self.drops.entry(k).or_default() += v;
        }
        for (k, v) in &o.events {
            *self.events.entry(k).or_default() += v;
        }
        for (k, v) in &o.ports {
            let p = self.ports.entry(*k).or_default();
            p.rx_packets += v.rx_packets;
            p.tx_packets += v.tx_packets;
        }
        self.bursts += o.bursts;
        self.polls += o.polls;
        self.busy_ns += o.busy_ns;
    }
}

impl StatsSnapshot {
    /// Sums several workers' snapshots; the generation is the oldest any of
    /// them runs.
    pub fn sum<'a>(items: impl IntoIterator<Item = &'a StatsSnapshot>) -> StatsSnapshot {
        let mut total = StatsSnapshot::default();
        let mut oldest: Option<u64> = None;
        for s in items {
            total += s;
            oldest = Some(oldest.map_or(s.generation, |g| g.min(s.generation)));
        }
        total.generation = oldest.unwrap_or(0);
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for r in DropReason::ALL {
            assert!(seen.insert(r.name()), "duplicate name {}", r.name());
            assert_eq!(DropReason::from_name(r.name()), Some(*r));
            assert!(!r.description().is_empty());
        }
        for e in Event::ALL {
            assert_eq!(Event::from_name(e.name()), Some(*e));
        }
    }

    #[test]
    fn snapshots_sum_across_workers() {
        let a = WorkerStats::default();
        let b = WorkerStats::default();
        a.drop_packet(DropReason::NoRoute);
        a.drops_n(DropReason::NoRoute, 2);
        b.drop_packet(DropReason::TtlExpired);
        a.rx(0, 10);
        b.rx(0, 5);
        b.tx(1, 4);
        a.set_generation(7);
        b.set_generation(6);
        let sum = StatsSnapshot::sum(&[a.snapshot(), b.snapshot()]);
        assert_eq!(sum.dropped, 4);
        assert_eq!(sum.drops["no_route"], 3);
        assert_eq!(sum.drops["ttl_expired"], 1);
        assert_eq!(sum.rx_packets, 15);
        assert_eq!(sum.ports[&0].rx_packets, 15);
        assert_eq!(sum.ports[&1].tx_packets, 4);
        assert_eq!(sum.generation, 6, "the oldest generation any worker runs");
    }
}
