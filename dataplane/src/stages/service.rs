//! Service: connection tracking, Kubernetes Service load balancing and NAT.
//!
//! Reads: `PacketMeta` (family, proto, addresses, ports, flags, network,
//! `flow_hash`), the TCP flags or SCTP chunk types from the packet, the
//! table generation's [`ServiceTable`] and FIBs, the burst's handoff marks.
//! Writes: the packet's addresses, ports and checksums when its connection
//! is translated (and the quoted header of ICMP errors about such a
//! connection), and the same fields of `PacketMeta`, so `route` routes the
//! translated packet. Decides: `Drop` (connection state invalid, table
//! full, Service drop verdicts, source ranges), `Punt(Reject)` (a Service
//! reject verdict: TCP reset or ICMP port unreachable, from the slow path),
//! `Handoff` (the connection may live on another worker).
//! Next: `route`.
//!
//! # Per packet
//!
//! Every TCP, UDP, SCTP and ICMP echo packet is tracked, as Linux conntrack
//! does: a packet of a known connection (either direction) is forwarded
//! with the connection's translation and drives its state machine. The
//! first packet of a connection goes to the [`ServiceTable`]:
//! * a front end: the source class picks the [`Outcome`]; DNAT picks an
//!   endpoint from the Maglev ring by the flow hash (by the client address
//!   under session affinity), masquerades where the outcome says so or
//!   when the endpoint is the client itself (hairpin), and creates the
//!   connection;
//! * reject / drop verdicts as the table says;
//! * no match: the connection is tracked untranslated.
//!
//! Before a connection is created, the [`PolicyTable`](crate::tables::policy)
//! decides whether it may be (`policy_denied` otherwise, and nothing is
//! created, so its next packet is judged again).
//!
//! Services belong to the pod network: only packets in the service
//! table's network are looked up in it. A packet in another network (a
//! Multus attachment's) is tracked in that network (connection keys carry
//! it) and routed there untranslated, even when its destination equals a
//! ClusterIP. Policy judges a new connection with the table of its own
//! network ([`PolicyTable::for_network`](crate::tables::policy::PolicyTable::for_network)):
//! NetworkPolicy and the admin tiers in
//! [`POD_NETWORK`](crate::tables::POD_NETWORK), MultiNetworkPolicy in a
//! secondary network that has one; a network without policy is not judged.
//!
//! Fragments are not tracked (no ports in later fragments); one addressed
//! to a Service address is dropped (`service_fragment`).
//!
//! # Several workers
//!
//! Both directions of a connection must meet its state on the worker that
//! created it. Untranslated flows do with a symmetric RSS key. A
//! masqueraded flow's NAT port is chosen so that the reply's RSS hash
//! steers it to this worker's queue ([`Steering`], as VPP's NAT does). A
//! flow translated only in its destination (a pod reaching a ClusterIP)
//! cannot be steered: its reply may land on any worker. A worker that finds
//! no connection for a packet that may be such a reply (its source is a
//! Service endpoint, or its destination is a node address in the NAT port
//! range, or it is an ICMP error) hands it to the next worker that has not
//! looked yet ([`Action::Handoff`]); the last one handles it as new. With
//! `W` workers a stray reply costs at most `W - 1` hops, in practice one
//! (two workers) or a few.
//!
//! # Housekeeping
//!
//! [`Stage::housekeeping`] runs on every poll with a small budget: the
//! connection table's expiry sweep, and after a table generation changed,
//! a sweep that removes translated connections whose endpoint no longer
//! exists in any Service (a terminating endpoint still exists: its
//! connections go on).

use super::{flags, parse, Action, Burst, Context, PacketMeta, Punt, Stage};
use crate::buf::{Packet, BURST_SIZE};
use crate::io::rss::{Reta, Toeplitz, SYMMETRIC_KEY};
use crate::state::conntrack::{
    sctp_chunks, tcp_flags, ConnKey, Conntrack, ConntrackConfig, Direction, FlowTuple, Forward,
    Hit, L4Event, NewConnection, Refused, SweepCursor, Verdict,
};
use crate::stats::{DropReason, Event};
use crate::tables::services::{Endpoint, Frontend, Lookup, Outcome, ServiceRing, ServiceTable};
use crate::tables::{AdjacencyKind, Tables};
use crate::wire::{checksum, ip_proto};

/// How replies of masqueraded connections reach this worker: the RSS the
/// ports apply and this worker's queue. With one queue per port (or no
/// RSS) every port choice steers to queue 0.
#[derive(Debug, Clone)]
pub struct Steering {
    pub rss: Toeplitz,
    pub reta: Reta,
    pub queue: u16,
}

impl Steering {
    /// A single-queue port: every reply lands on queue 0.
    pub fn single() -> Steering {
        Steering {
            rss: Toeplitz::new(&SYMMETRIC_KEY),
            reta: Reta::round_robin(1),
            queue: 0,
        }
    }

    /// Ports with `queues` queues hashed with `key`, this worker on `queue`.
    pub fn rss(key: &[u8; crate::io::rss::RSS_KEY_LEN], queues: u16, queue: u16) -> Steering {
        Steering {
            rss: Toeplitz::new(key),
            reta: Reta::round_robin(queues),
            queue,
        }
    }
}

/// Configuration of the stage, per worker.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub conntrack: ConntrackConfig,
    /// Client-affinity entries (sessionAffinity ClientIP), rounded up to a
    /// power of two.
    pub affinity_capacity: usize,
    pub steering: Steering,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            conntrack: ConntrackConfig::default(),
            affinity_capacity: 1 << 16,
            steering: Steering::single(),
        }
    }
}

/// The stage: this worker's connection table and affinity table.
pub struct ServiceStage {
    ct: Conntrack,
    affinity: Affinity,
    steering: Steering,
    /// The generation the endpoint sweep works for, and where it is.
    sweep_generation: u64,
    sweep: SweepCursor,
    /// Entries left to examine before the sweep is complete.
    sweep_left: usize,
}

impl ServiceStage {
    pub fn new(cfg: &ServiceConfig) -> ServiceStage {
        ServiceStage {
            ct: Conntrack::new(&cfg.conntrack),
            affinity: Affinity::new(cfg.affinity_capacity),
            steering: cfg.steering.clone(),
            sweep_generation: 0,
            sweep: SweepCursor::default(),
            sweep_left: 0,
        }
    }

    /// The connection table (for tests, counters and the API).
    pub fn conntrack(&self) -> &Conntrack {
        &self.ct
    }
}

impl Stage for ServiceStage {
    #[inline]
    fn process(&mut self, cx: &Context<'_>, burst: &mut Burst) {
        let n = burst.pkts.len();
        // Keys of the trackable packets, looked up as a burst so that the
        // cache misses of the table's buckets and entries overlap.
        let mut keys = [ConnKey::v4(0, 0, 0, 0, 0, 0); BURST_SIZE];
        let mut hashes = [0u64; BURST_SIZE];
        let mut at = [0u8; BURST_SIZE];
        let mut hits = [None::<Hit>; BURST_SIZE];
        let mut k = 0;
        for i in 0..n {
            if burst.action[i] != Action::Continue {
                continue;
            }
            let m = &burst.meta[i];
            if m.family == 0 || m.flags & flags::FRAGMENT != 0 {
                continue;
            }
            if let Some(key) = trackable_key(m) {
                hashes[k] = self.ct.hash(&key);
                keys[k] = key;
                at[k] = i as u8;
                k += 1;
            }
        }
        self.ct
            .lookup_burst(&keys[..k], &hashes[..k], cx.now_ns, &mut hits[..k]);
        // A creation may evict an entry a later hit of this burst points
        // at: after one, hits are looked up again (from warm cache lines).
        let mut changed = false;
        let mut j = 0;
        for i in 0..n {
            if burst.action[i] != Action::Continue {
                continue;
            }
            let action = if j < k && at[j] as usize == i {
                let hit = if changed {
                    self.ct.lookup_hashed(&keys[j], hashes[j], cx.now_ns)
                } else {
                    hits[j]
                };
                let a = self.packet(cx, burst, i, &keys[j], hashes[j], hit, &mut changed);
                j += 1;
                a
            } else {
                self.untracked(cx, burst, i)
            };
            burst.action[i] = action;
        }
    }

    fn housekeeping(&mut self, cx: &Context<'_>, idle: bool) {
        // Expiry is also lazy (an insert reclaims what it meets), so a busy
        // worker sweeps little.
        let budget = if idle { 256 } else { 4 };
        self.ct.expire(cx.now_ns, budget);
        let c = self.ct.counters();
        cx.stats.set_event(Event::CtCreated, c.created);
        cx.stats.set_event(Event::CtEvicted, c.evicted());
        cx.stats.set_event(Event::CtExpired, c.expired);
        cx.stats.set_event(Event::CtRefusedFull, c.refused_full);
        cx.stats
            .set_event(Event::CtConnections, self.ct.len() as u64);
        let t = cx.tables;
        if t.generation != self.sweep_generation {
            self.sweep_generation = t.generation;
            let (v4, v6) = self.ct.used();
            self.sweep_left = v4.max(v6);
        }
        if self.sweep_left > 0 {
            let st = &t.services;
            // Every translated connection was translated to an endpoint,
            // which its reply comes from.
            let (examined, removed) = self.ct.sweep_translated(&mut self.sweep, budget, |r| {
                st.is_endpoint(r.family as u8, r.proto, r.src, r.sport)
            });
            self.sweep_left = self.sweep_left.saturating_sub(examined.max(1));
            if removed > 0 {
                cx.stats
                    .events_n(Event::ConnectionsEndpointGone, removed as u64);
            }
        }
    }
}

/// The connection key of a packet the table tracks: TCP, UDP, SCTP, ICMP
/// and ICMPv6 echo.
#[inline]
fn trackable_key(m: &PacketMeta) -> Option<ConnKey> {
    match m.proto {
        ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP => ConnKey::from_meta(m),
        ip_proto::ICMP if matches!(m.dport, 0 | 8) => ConnKey::from_meta(m),
        ip_proto::ICMPV6 if matches!(m.dport, 128 | 129) => ConnKey::from_meta(m),
        _ => None,
    }
}

/// What a packet tells the state machine.
#[inline]
fn l4_event(pkt: &Packet, m: &PacketMeta) -> L4Event {
    let d = pkt.data();
    let l4 = m.l4_offset as usize;
    match m.proto {
        ip_proto::TCP => L4Event::Tcp(d.get(l4 + 13).copied().unwrap_or(0)),
        ip_proto::UDP => L4Event::Udp,
        ip_proto::SCTP => L4Event::Sctp(sctp_chunk_set(d, l4, m)),
        ip_proto::ICMP => L4Event::IcmpEcho {
            reply: m.dport == 0,
        },
        ip_proto::ICMPV6 => L4Event::IcmpEcho {
            reply: m.dport == 129,
        },
        _ => L4Event::Other,
    }
}

/// The chunk types of an SCTP packet (at most 16 chunks are read).
fn sctp_chunk_set(d: &[u8], l4: usize, m: &PacketMeta) -> u16 {
    let end = (m.l3_offset as usize + m.l3_len as usize).min(d.len());
    let mut at = l4 + 12;
    let mut set = 0;
    for _ in 0..16 {
        if at + 4 > end {
            break;
        }
        set |= sctp_chunks::of_type(d[at]);
        let len = u16::from_be_bytes([d[at + 2], d[at + 3]]) as usize;
        if len < 4 {
            break;
        }
        at += (len + 3) & !3;
    }
    set
}

impl ServiceStage {
    /// A trackable packet: its connection, or a new one.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn packet(
        &mut self,
        cx: &Context<'_>,
        burst: &mut Burst,
        i: usize,
        key: &ConnKey,
        hash: u64,
        hit: Option<Hit>,
        changed: &mut bool,
    ) -> Action {
        let event = l4_event(&burst.pkts[i], &burst.meta[i]);
        let bytes = burst.meta[i].l3_len as u32;
        if let Some(hit) = hit {
            match self.ct.observe(hit, event, bytes, cx.now_ns) {
                Verdict::Forward(f) => {
                    apply(&mut burst.pkts[i], &mut burst.meta[i], &f);
                    return Action::Continue;
                }
                Verdict::Invalid => return Action::Drop(DropReason::ConntrackInvalid),
                Verdict::Reopen => {}
            }
        } else if let Some(w) = self.handoff_target(cx, burst, i, event) {
            return Action::Handoff(w);
        }
        // Only a creation that took an entry from another connection
        // (eviction, reclaim, reopen) can leave this burst's hits stale.
        let before = self.ct.len();
        let a = self.first_packet(cx, &mut burst.pkts[i], &mut burst.meta[i], key, hash, event);
        if self.ct.len() != before + 1 {
            *changed = true;
        }
        a
    }

    /// The worker to hand a missed packet to, when it may be a reply of a
    /// connection another worker owns.
    #[inline]
    fn handoff_target(
        &self,
        cx: &Context<'_>,
        burst: &Burst,
        i: usize,
        event: L4Event,
    ) -> Option<u16> {
        if cx.workers <= 1 {
            return None;
        }
        let m = &burst.meta[i];
        if let L4Event::Tcp(f) = event {
            if f & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN {
                return None; // a connection's first segment, not a reply
            }
        }
        let st = &cx.tables.services;
        // Only the Services' network has translated connections.
        let maybe_reply = m.network == st.network
            && (st.is_endpoint(m.family, m.proto, m.src, m.sport)
                || (st.local_ips.contains(&(m.family, m.dst)) && self.ct.is_nat_port(m.dport)));
        if !maybe_reply {
            return None;
        }
        next_untried(cx.worker, cx.workers, burst.tried[i] | 1 << cx.worker)
    }

    /// The first packet of a connection (or one this worker does not know).
    fn first_packet(
        &mut self,
        cx: &Context<'_>,
        pkt: &mut Packet,
        m: &mut PacketMeta,
        key: &ConnKey,
        hash: u64,
        event: L4Event,
    ) -> Action {
        let st = &cx.tables.services;
        let mut new = NewConnection::new(*key);
        if m.network == st.network && !st.is_empty() {
            match st.lookup(m.family, m.proto, m.dst, m.dport) {
                Lookup::NoMatch => {}
                Lookup::Reject => return Action::Punt(Punt::Reject),
                Lookup::Drop => return Action::Drop(DropReason::ServiceDrop),
                Lookup::Frontend(fe) => match self.translate(cx, st, fe, m, &mut new) {
                    Ok(()) => {}
                    Err(a) => return a,
                },
            }
        }
        let bytes = m.l3_len as u32;
        // Policy sees the real endpoint (after DNAT) and the real client,
        // judged by the table of the packet's own network.
        if let Some(policy) = cx.tables.policy.for_network(m.network) {
            let v = policy.evaluate(m.family, m.proto, m.src, new.reply.src, new.reply.sport);
            policy.count(v, bytes);
            if !v.allow {
                return Action::Drop(DropReason::PolicyDenied);
            }
        }
        match self.ct.create(&new, hash, event, bytes, cx.now_ns) {
            Ok((_, f)) => {
                apply(pkt, m, &f);
                Action::Continue
            }
            Err(Refused::Exists(hit)) => self.observe_existing(cx, pkt, m, hit, event),
            Err(Refused::Invalid) if new.endpoint == u32::MAX => {
                // Not a connection's first packet (a stray ACK or RST, an
                // echo reply): forwarded untracked, as Linux forwards
                // conntrack-invalid packets unless a rule drops them.
                Action::Continue
            }
            Err(Refused::Invalid) => Action::Drop(DropReason::ConntrackInvalid),
            Err(Refused::Full) if new.endpoint == u32::MAX => Action::Continue,
            Err(Refused::Full) => Action::Drop(DropReason::ConntrackFull),
            Err(Refused::ReplyInUse) => Action::Drop(DropReason::NatPortExhausted),
        }
    }

    #[cold]
    fn observe_existing(
        &mut self,
        cx: &Context<'_>,
        pkt: &mut Packet,
        m: &mut PacketMeta,
        hit: Hit,
        event: L4Event,
    ) -> Action {
        match self.ct.observe(hit, event, m.l3_len as u32, cx.now_ns) {
            Verdict::Forward(f) => {
                apply(pkt, m, &f);
                Action::Continue
            }
            _ => Action::Drop(DropReason::ConntrackInvalid),
        }
    }

    /// Fills `new` with the front end's translation, or says what to do
    /// instead.
    fn translate(
        &mut self,
        cx: &Context<'_>,
        st: &ServiceTable,
        fe: &Frontend,
        m: &mut PacketMeta,
        new: &mut NewConnection,
    ) -> Result<(), Action> {
        if !fe.admits(m.family, m.src) {
            return Err(Action::Drop(DropReason::ServiceSourceRange));
        }
        let class = st.source_class(m.family, m.src);
        let (ring, masquerade) = match &fe.outcome[class as usize] {
            Outcome::Dnat { ring, masquerade } => (ring, *masquerade),
            Outcome::Reject => return Err(Action::Punt(Punt::Reject)),
            Outcome::Drop => return Err(Action::Drop(DropReason::ServiceDrop)),
        };
        let Some(ep) = self.pick(cx, fe, ring, m) else {
            return Err(Action::Punt(Punt::Reject));
        };
        *new = new.dnat(ep.addr, ep.port, fe.service_port);
        // Hairpin: an endpoint reaching itself through its Service must
        // see the reply come from the node, or it would answer itself.
        if masquerade || ep.addr == m.src {
            let Some(addr) = masquerade_source(cx.tables, m.family, m.network, ep.addr) else {
                return Err(Action::Drop(DropReason::NoRoute));
            };
            let probe = new.snat(addr, 0).reply;
            let s = &self.steering;
            let Some(port) = self
                .ct
                .choose_port(&probe, s.queue, &s.rss, &s.reta, cx.now_ns)
            else {
                return Err(Action::Drop(DropReason::NatPortExhausted));
            };
            *new = new.snat(addr, port);
        }
        Ok(())
    }

    /// The endpoint for a new connection: by client address under session
    /// affinity (kept while the endpoint stays in the ring), by flow hash
    /// otherwise.
    #[inline]
    fn pick(
        &mut self,
        cx: &Context<'_>,
        fe: &Frontend,
        ring: &ServiceRing,
        m: &mut PacketMeta,
    ) -> Option<Endpoint> {
        if fe.affinity_timeout_s == 0 {
            if m.flow_hash == 0 {
                m.flow_hash = parse::flow_hash(m);
            }
            return ring.pick(m.flow_hash);
        }
        let timeout_ns = fe.affinity_timeout_s as u64 * 1_000_000_000;
        let akey = AffinityKey {
            service_port: fe.service_port,
            family: m.family,
            client: m.src,
        };
        if let Some(ep) = self.affinity.get(&akey, cx.now_ns) {
            if ring.endpoints.binary_search(&ep).is_ok() {
                self.affinity.insert(akey, ep, cx.now_ns + timeout_ns);
                return Some(ep);
            }
        }
        // Every worker picks the same endpoint for a client: the choice
        // depends on the client's address only.
        let ep = ring.pick(client_hash(m.family, m.src))?;
        self.affinity.insert(akey, ep, cx.now_ns + timeout_ns);
        Some(ep)
    }

    /// A packet the table does not track: ICMP errors about tracked
    /// connections are translated back; fragments to Service addresses
    /// dropped; everything else passes.
    fn untracked(&mut self, cx: &Context<'_>, burst: &mut Burst, i: usize) -> Action {
        let m = burst.meta[i];
        let st = &cx.tables.services;
        if m.flags & flags::FRAGMENT != 0 {
            if m.network == st.network
                && !st.is_empty()
                && st.lookup(m.family, m.proto, m.dst, m.dport) != Lookup::NoMatch
            {
                return Action::Drop(DropReason::ServiceFragment);
            }
            return Action::Continue;
        }
        if is_icmp_error(&m) {
            return self.icmp_error(cx, burst, i);
        }
        Action::Continue
    }

    /// An ICMP error: if it quotes a packet of a tracked connection, its
    /// quote and destination are rewritten to what that packet's sender
    /// sent.
    #[cold]
    fn icmp_error(&mut self, cx: &Context<'_>, burst: &mut Burst, i: usize) -> Action {
        let m = burst.meta[i];
        let Some(inner) = quoted_key(burst.pkts[i].data(), &m) else {
            return Action::Continue;
        };
        // The quoted packet left this appliance translated; the key that
        // finds its connection is the quote reversed.
        let Some(hit) = self.ct.lookup(&inner.key.reversed(), cx.now_ns) else {
            if cx.workers > 1 {
                if let Some(w) =
                    next_untried(cx.worker, cx.workers, burst.tried[i] | 1 << cx.worker)
                {
                    return Action::Handoff(w);
                }
            }
            return Action::Continue;
        };
        let Some(conn) = self.ct.get(hit.id) else {
            return Action::Continue;
        };
        // Restore the quote to the tuple its sender used: the original
        // tuple for a quote of an original-direction packet (found by its
        // reply key), the reply tuple otherwise.
        let restore = match hit.dir {
            Direction::Reply => conn.original,
            Direction::Original => conn.reply,
        };
        if restore == inner.key {
            return Action::Continue;
        }
        let pkt = &mut burst.pkts[i];
        let meta = &mut burst.meta[i];
        if rewrite_icmp_error(pkt, meta, &inner, &restore).is_none() {
            return Action::Drop(DropReason::L4Header);
        }
        cx.stats.event(Event::IcmpErrorTranslated);
        Action::Continue
    }
}

/// The next worker after `me` whose bit is not in `tried`.
#[inline]
fn next_untried(me: u16, workers: u16, tried: u32) -> Option<u16> {
    let w = workers.min(32);
    (1..w)
        .map(|k| (me + k) % w)
        .find(|&c| tried & (1 << c) == 0)
}

/// A hash of the client address alone (session affinity).
#[inline]
fn client_hash(family: u8, src: u128) -> u32 {
    let m = PacketMeta {
        family,
        src,
        ..PacketMeta::default()
    };
    parse::flow_hash(&m)
}

/// The node's address to masquerade behind for a connection to `endpoint`:
/// the address of the port the route to the endpoint leaves by, else the
/// first node address of the family.
fn masquerade_source(t: &Tables, family: u8, network: u16, endpoint: u128) -> Option<u128> {
    let from_route = t.networks.get(network as usize).and_then(|net| {
        let adj_index = if family == 4 {
            net.fib4.lookup(endpoint as u32)?
        } else {
            net.fib6.lookup(endpoint)?
        };
        let adj = net.adjacencies.get(adj_index as usize)?;
        let port = match adj.kind {
            AdjacencyKind::Forward => net.next_hops.get(adj.first as usize)?.port,
            AdjacencyKind::Local => adj.port,
            _ => return None,
        };
        let pc = t.port(port)?;
        if family == 4 {
            pc.v4_source_for((endpoint as u32).into())
                .map(|a| u32::from(a) as u128)
        } else {
            Some(u128::from(pc.primary_v6()))
        }
    });
    from_route.or_else(|| {
        t.services
            .local_ips
            .iter()
            .find(|(f, _)| *f == family)
            .map(|(_, a)| *a)
    })
}

// ---------------------------------------------------------------------------
// Rewriting

/// Rewrites a packet to the tuple its connection says it leaves with, and
/// moves it to the connection's network for that direction.
#[inline]
fn apply(pkt: &mut Packet, m: &mut PacketMeta, f: &Forward) {
    m.network = f.network;
    if let Some(t) = f.rewrite {
        rewrite(pkt, m, &t);
    }
}

/// Byte offsets of an L4 protocol's checksum field, and whether it covers
/// the IP addresses (pseudo-header).
#[inline]
fn l4_checksum_at(proto: u8) -> Option<(usize, bool)> {
    match proto {
        ip_proto::TCP => Some((16, true)),
        ip_proto::UDP => Some((6, true)),
        ip_proto::ICMP => Some((2, false)),
        ip_proto::ICMPV6 => Some((2, true)),
        _ => None,
    }
}

/// Writes new addresses and ports into the packet and fixes the checksums
/// incrementally (SCTP's CRC32c is recomputed when a port changed).
#[inline]
pub(crate) fn rewrite(pkt: &mut Packet, m: &mut PacketMeta, t: &FlowTuple) {
    let l3 = m.l3_offset as usize;
    let l4 = m.l4_offset as usize;
    let end = l3 + m.l3_len as usize;
    let (family, proto) = (m.family, m.proto);
    let d = pkt.data_mut();
    if end > d.len() || l4 + 8 > end {
        return;
    }
    let icmp = matches!(proto, ip_proto::ICMP | ip_proto::ICMPV6);
    // One sum of changes per field, applied to each checksum once.
    let addr_delta = if family == 4 {
        checksum::delta32(m.src as u32, t.src as u32) as u64
            + checksum::delta32(m.dst as u32, t.dst as u32) as u64
    } else {
        checksum::delta128(m.src, t.src) as u64 + checksum::delta128(m.dst, t.dst) as u64
    };
    let port_delta = if icmp {
        checksum::delta16(m.sport, t.sport) as u64
    } else {
        checksum::delta16(m.sport, t.sport) as u64 + checksum::delta16(m.dport, t.dport) as u64
    };
    if let Some((at, pseudo)) = l4_checksum_at(proto) {
        let c = l4 + at;
        let sum = u16::from_be_bytes([d[c], d[c + 1]]);
        // An IPv4 UDP checksum of 0 means none: it stays 0.
        if !(proto == ip_proto::UDP && sum == 0 && family == 4) {
            let delta = port_delta + if pseudo { addr_delta } else { 0 };
            let mut sum = checksum::apply_delta(sum, delta);
            if proto == ip_proto::UDP && sum == 0 {
                sum = 0xffff;
            }
            d[c..c + 2].copy_from_slice(&sum.to_be_bytes());
        }
    }
    if icmp {
        d[l4 + 4..l4 + 6].copy_from_slice(&t.sport.to_be_bytes());
    } else {
        d[l4..l4 + 2].copy_from_slice(&t.sport.to_be_bytes());
        d[l4 + 2..l4 + 4].copy_from_slice(&t.dport.to_be_bytes());
    }
    if family == 4 {
        let sum = u16::from_be_bytes([d[l3 + 10], d[l3 + 11]]);
        let sum = checksum::apply_delta(sum, addr_delta);
        d[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
        d[l3 + 12..l3 + 16].copy_from_slice(&(t.src as u32).to_be_bytes());
        d[l3 + 16..l3 + 20].copy_from_slice(&(t.dst as u32).to_be_bytes());
    } else {
        d[l3 + 8..l3 + 24].copy_from_slice(&t.src.to_be_bytes());
        d[l3 + 24..l3 + 40].copy_from_slice(&t.dst.to_be_bytes());
    }
    if proto == ip_proto::SCTP && (m.sport != t.sport || m.dport != t.dport) {
        sctp_fill_crc(&mut d[l4..end]);
    }
    m.src = t.src;
    m.dst = t.dst;
    m.sport = t.sport;
    if !icmp {
        m.dport = t.dport;
    }
    m.flow_hash = 0;
}

/// Recomputes an SCTP packet's CRC32c (RFC 9260 appendix A).
fn sctp_fill_crc(sctp: &mut [u8]) {
    if sctp.len() >= 12 {
        crate::wire::sctp::Packet::new_unchecked(sctp).fill_checksum();
    }
}

/// Whether a packet is an ICMP or ICMPv6 error that quotes another packet.
#[inline]
fn is_icmp_error(m: &PacketMeta) -> bool {
    match m.proto {
        // Destination unreachable, source quench, redirect, time exceeded,
        // parameter problem.
        ip_proto::ICMP => matches!(m.dport, 3 | 4 | 5 | 11 | 12),
        // Destination unreachable, packet too big, time exceeded, parameter
        // problem.
        ip_proto::ICMPV6 => matches!(m.dport, 1..=4),
        _ => false,
    }
}

/// The packet an ICMP error quotes: where its headers are and its key.
struct Quote {
    /// Offsets in the frame of the quoted IP header and L4 header.
    l3: usize,
    l4: usize,
    key: ConnKey,
}

/// Reads the quoted packet's tuple (it needs its IP header and the first
/// eight bytes of its L4 header: enough for ports or the echo identifier).
fn quoted_key(d: &[u8], m: &PacketMeta) -> Option<Quote> {
    let l3 = m.l4_offset as usize + 8;
    let end = (m.l3_offset as usize + m.l3_len as usize).min(d.len());
    let (proto, src, dst, l4) = if m.family == 4 {
        let h = d.get(l3..l3 + 20)?;
        if h[0] >> 4 != 4 {
            return None;
        }
        let ihl = (h[0] & 0xf) as usize * 4;
        let src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]) as u128;
        let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]) as u128;
        (h[9], src, dst, l3 + ihl)
    } else {
        let h = d.get(l3..l3 + 40)?;
        if h[0] >> 4 != 6 {
            return None;
        }
        let src = u128::from_be_bytes(h[8..24].try_into().ok()?);
        let dst = u128::from_be_bytes(h[24..40].try_into().ok()?);
        (h[6], src, dst, l3 + 40)
    };
    if l4 + 8 > end {
        return None;
    }
    let p = &d[l4..l4 + 8];
    let (sport, dport) = match proto {
        ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP => (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        ),
        ip_proto::ICMP | ip_proto::ICMPV6 => (u16::from_be_bytes([p[4], p[5]]), 0),
        _ => return None,
    };
    let key = if m.family == 4 {
        ConnKey::v4(m.network, proto, src as u32, dst as u32, sport, dport)
    } else {
        ConnKey::v6(m.network, proto, src, dst, sport, dport)
    };
    Some(Quote { l3, l4, key })
}

/// Rewrites an ICMP error so that it quotes `restore` and goes to its
/// source; recomputes the quoted IP header's checksum and the ICMP
/// checksum in full (errors are rare).
fn rewrite_icmp_error(
    pkt: &mut Packet,
    m: &mut PacketMeta,
    q: &Quote,
    restore: &ConnKey,
) -> Option<()> {
    let outer_l3 = m.l3_offset as usize;
    let outer_l4 = m.l4_offset as usize;
    let end = (outer_l3 + m.l3_len as usize).min(pkt.data().len());
    let family = m.family;
    let d = pkt.data_mut();
    // The quote.
    if family == 4 {
        d[q.l3 + 12..q.l3 + 16].copy_from_slice(&(restore.src as u32).to_be_bytes());
        d[q.l3 + 16..q.l3 + 20].copy_from_slice(&(restore.dst as u32).to_be_bytes());
        let ihl = (d[q.l3] & 0xf) as usize * 4;
        if q.l3 + ihl <= end {
            d[q.l3 + 10..q.l3 + 12].fill(0);
            let c = checksum::checksum(&d[q.l3..q.l3 + ihl]);
            d[q.l3 + 10..q.l3 + 12].copy_from_slice(&c.to_be_bytes());
        }
    } else {
        d[q.l3 + 8..q.l3 + 24].copy_from_slice(&restore.src.to_be_bytes());
        d[q.l3 + 24..q.l3 + 40].copy_from_slice(&restore.dst.to_be_bytes());
    }
    match restore.proto {
        ip_proto::ICMP | ip_proto::ICMPV6 => {
            d[q.l4 + 4..q.l4 + 6].copy_from_slice(&restore.sport.to_be_bytes());
        }
        _ => {
            d[q.l4..q.l4 + 2].copy_from_slice(&restore.sport.to_be_bytes());
            d[q.l4 + 2..q.l4 + 4].copy_from_slice(&restore.dport.to_be_bytes());
        }
    }
    // The quoted L4 checksum is left as it was: the quote may be cut
    // short, and receivers match errors by addresses and ports.
    // The outer destination: the quoted packet's sender.
    let new_dst = restore.src;
    if family == 4 {
        let old = u32::from_be_bytes(d[outer_l3 + 16..outer_l3 + 20].try_into().ok()?);
        let mut sum = u16::from_be_bytes([d[outer_l3 + 10], d[outer_l3 + 11]]);
        sum = checksum::update32(sum, old, new_dst as u32);
        d[outer_l3 + 10..outer_l3 + 12].copy_from_slice(&sum.to_be_bytes());
        d[outer_l3 + 16..outer_l3 + 20].copy_from_slice(&(new_dst as u32).to_be_bytes());
        d[outer_l4 + 2..outer_l4 + 4].fill(0);
        let c = checksum::checksum(&d[outer_l4..end]);
        d[outer_l4 + 2..outer_l4 + 4].copy_from_slice(&c.to_be_bytes());
    } else {
        d[outer_l3 + 24..outer_l3 + 40].copy_from_slice(&new_dst.to_be_bytes());
        let src: [u8; 16] = d[outer_l3 + 8..outer_l3 + 24].try_into().ok()?;
        d[outer_l4 + 2..outer_l4 + 4].fill(0);
        let len = (end - outer_l4) as u32;
        let ph = checksum::pseudo_header_v6(src, new_dst.to_be_bytes(), ip_proto::ICMPV6, len);
        let c = checksum::fold(checksum::sum(&d[outer_l4..end], ph));
        d[outer_l4 + 2..outer_l4 + 4].copy_from_slice(&(!c).to_be_bytes());
    }
    m.dst = new_dst;
    m.flow_hash = 0;
    Some(())
}

// ---------------------------------------------------------------------------
// Session affinity

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct AffinityKey {
    service_port: u32,
    family: u8,
    client: u128,
}

#[derive(Debug, Clone, Copy, Default)]
struct AffinitySlot {
    key: AffinityKey,
    endpoint: Endpoint,
    /// 0: free.
    expires_ns: u64,
}

/// Which endpoint each client last used per service port, for
/// sessionAffinity ClientIP. Four-way set-associative, fixed size: a full
/// set replaces its entry closest to expiry, so memory is bounded and a
/// flood of clients only shortens other clients' affinity.
struct Affinity {
    slots: Box<[AffinitySlot]>,
    mask: usize,
}

const WAYS: usize = 4;

impl Affinity {
    fn new(capacity: usize) -> Affinity {
        let n = capacity.clamp(WAYS, 1 << 24).next_power_of_two();
        Affinity {
            slots: vec![AffinitySlot::default(); n].into_boxed_slice(),
            mask: n / WAYS - 1,
        }
    }

    #[inline]
    fn set(&self, k: &AffinityKey) -> usize {
        let h = client_hash(k.family, k.client) as usize
            ^ (k.service_port as usize).wrapping_mul(0x9e37_79b9);
        (h & self.mask) * WAYS
    }

    fn get(&self, k: &AffinityKey, now: u64) -> Option<Endpoint> {
        let s = self.set(k);
        self.slots[s..s + WAYS]
            .iter()
            .find(|e| e.expires_ns > now && e.key == *k)
            .map(|e| e.endpoint)
    }

    fn insert(&mut self, k: AffinityKey, endpoint: Endpoint, expires_ns: u64) {
        let s = self.set(&k);
        let set = &mut self.slots[s..s + WAYS];
        let at = set
            .iter()
            .position(|e| e.key == k && e.expires_ns != 0)
            .unwrap_or_else(|| (0..WAYS).min_by_key(|&j| set[j].expires_ns).unwrap_or(0));
        set[at] = AffinitySlot {
            key: k,
            endpoint,
            expires_ns,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_untried_walks_round_the_workers() {
        assert_eq!(next_untried(0, 2, 0b01), Some(1));
        assert_eq!(next_untried(1, 2, 0b11), None);
        assert_eq!(next_untried(1, 4, 0b0010), Some(2));
        assert_eq!(next_untried(1, 4, 0b0110), Some(3));
        assert_eq!(next_untried(1, 4, 0b1110), Some(0));
        assert_eq!(next_untried(1, 4, 0b1111), None);
    }

    #[test]
    fn affinity_keeps_and_expires() {
        let mut a = Affinity::new(16);
        let k = AffinityKey {
            service_port: 1,
            family: 4,
            client: 7,
        };
        let e = Endpoint { addr: 9, port: 80 };
        assert_eq!(a.get(&k, 0), None);
        a.insert(k, e, 100);
        assert_eq!(a.get(&k, 50), Some(e));
        assert_eq!(a.get(&k, 100), None);
        // A full set replaces the entry closest to expiry.
        for c in 0..64u128 {
            a.insert(AffinityKey { client: c, ..k }, e, 1000 + c as u64);
        }
        let live = a.slots.iter().filter(|s| s.expires_ns > 0).count();
        assert!(live <= 16);
    }
}
