//! Network service chains: which traffic enters a chain, the chain's hops,
//! and which port a packet coming back from an external network function
//! (a CNF) belongs to.
//!
//! Built by the control plane (`control/src/chains.rs`, docs/chains.md)
//! and read by the chain stage ([`crate::stages::chain`]).
//!
//! # The model, as the stage sees it
//!
//! A chain is an ordered list of hops. A hop is a built-in network
//! function that runs inside the worker ([`Function`]: firewall, counter,
//! Maglev load balancer, 1:1 prefix NAT, policer, port mirror) or an
//! external network function reached through a pair of ports
//! ([`External`]). A hop may have several candidates (several endpoints
//! matched the same route); a flow picks one by a hash of its client
//! address, which is the same in both directions and on every worker.
//! Candidates are a slot table: the compiler repeats a candidate in
//! proportion to its weight, so the pick stays one hash and one index.
//!
//! Traffic enters a chain through a [`Classifier`] (first match wins) in
//! one of two directions. Forward traffic runs the hops first to last;
//! reverse traffic (the replies, matched by classifiers the compiler
//! derives from the forward ones) runs them last to first and sees each
//! function's inverse (the load balancer turns a backend's address back
//! into the virtual one, the NAT maps back, the firewall matches the
//! reflected tuple).
//!
//! # Hop identity across an external function: port pairs
//!
//! An external hop is joined by two ports: the stage sends forward traffic
//! out of `ingress` and gets it back on `egress`; reverse traffic goes out
//! of `egress` and comes back on `ingress`. Each of these ports belongs to
//! exactly one hop of one chain ([`ChainTable::port_hop`]), so the port a
//! packet comes back on says which chain, which hop and which direction it
//! is in, without trusting the function to keep any metadata (no NSH: most
//! CNFs, and DPDK's testpmd, neither add nor keep it).
//!
//! # Ports that are down
//!
//! [`PortLinks`] holds a link flag per port, written by whoever watches the
//! ports (the daemon) and read by the stage with one relaxed load per
//! external hop. A chain whose external hop has no candidate with link
//! either drops the packet ([`FailMode::Closed`], counted as
//! `chain_hop_down`) or skips the hop ([`FailMode::Skip`]).

use crate::tables::bandwidth::{Admit, Limiter};
use crate::tables::classify::{Rule, TupleSpace};
use crate::tables::maglev::MaglevRing;
use crate::tables::{NetworkId, PortId};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A chain's index in the table.
pub type ChainId = u16;

/// What a chain does when a hop has no working candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Drop the packet (`chain_hop_down`).
    #[default]
    Closed,
    /// Go on with the next hop.
    Skip,
}

/// Which way a packet runs through a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Forward = 0,
    Reverse = 1,
}

/// A prefix of either family (`len` 0: everything). IPv4 addresses are the
/// low 32 bits, as in `PacketMeta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prefix {
    /// 4, 6, or 0 for "any address of any family".
    pub family: u8,
    pub addr: u128,
    pub len: u8,
}

impl Prefix {
    pub const ANY: Prefix = Prefix {
        family: 0,
        addr: 0,
        len: 0,
    };

    pub fn host(family: u8, addr: u128) -> Prefix {
        Prefix {
            family,
            addr,
            len: if family == 4 { 32 } else { 128 },
        }
    }

    #[inline(always)]
    pub fn contains(&self, family: u8, addr: u128) -> bool {
        if self.family == 0 {
            return true;
        }
        if self.family != family {
            return false;
        }
        let bits = if family == 4 { 32 } else { 128 };
        self.len == 0 || (self.addr ^ addr) >> (bits - self.len.min(bits)) == 0
    }

    /// The host bits of `addr` below this prefix, put under `to`.
    #[inline(always)]
    fn map_into(&self, to: &Prefix, addr: u128) -> u128 {
        let bits: u32 = if self.family == 4 { 32 } else { 128 };
        let len = self.len as u32;
        if len == 0 {
            return addr;
        }
        let host_mask = if len >= bits {
            0
        } else {
            (u128::MAX >> (128 - bits)) >> len
        };
        (to.addr & !host_mask) | (addr & host_mask)
    }
}

/// An inclusive port range (`0..=65535`: any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub const ANY: PortRange = PortRange { lo: 0, hi: 65535 };

    pub fn one(p: u16) -> PortRange {
        PortRange { lo: p, hi: p }
    }

    #[inline(always)]
    pub fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange::ANY
    }
}

/// The 5-tuple part of a match (firewall rules and classifiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TupleMatch {
    pub src: Prefix,
    pub dst: Prefix,
    /// IP protocol number; 0: any.
    pub proto: u8,
    pub sport: PortRange,
    pub dport: PortRange,
}

impl TupleMatch {
    #[inline(always)]
    pub fn matches(&self, t: &Tuple) -> bool {
        (self.proto == 0 || self.proto == t.proto)
            && self.src.contains(t.family, t.src)
            && self.dst.contains(t.family, t.dst)
            && self.sport.contains(t.sport)
            && self.dport.contains(t.dport)
    }

    /// The match for the replies of what this one matches.
    pub fn reflected(&self) -> TupleMatch {
        TupleMatch {
            src: self.dst,
            dst: self.src,
            proto: self.proto,
            sport: self.dport,
            dport: self.sport,
        }
    }
}

/// A packet's 5-tuple as the chain functions see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tuple {
    pub family: u8,
    pub proto: u8,
    pub src: u128,
    pub dst: u128,
    pub sport: u16,
    pub dport: u16,
}

impl Tuple {
    #[inline(always)]
    pub fn reflected(&self) -> Tuple {
        Tuple {
            family: self.family,
            proto: self.proto,
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }
}

/// Steers traffic into a chain. Every set field must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classifier {
    pub chain: ChainId,
    pub direction: Direction,
    pub network: Option<NetworkId>,
    /// The receiving port.
    pub port: Option<PortId>,
    pub tuple: TupleMatch,
}

impl Classifier {
    fn rule(&self) -> Rule {
        Rule {
            network: self.network,
            port: self.port,
            tuple: self.tuple,
        }
    }
}

/// One firewall rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirewallRule {
    pub tuple: TupleMatch,
    pub allow: bool,
}

/// A stateless ACL, first match wins. Reverse traffic is matched with its
/// tuple reflected, so a rule that allows a client's requests allows the
/// replies to them (VPP's ACL plugin calls this "reflect"; here it needs
/// no per-flow state).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Firewall {
    pub rules: Box<[FirewallRule]>,
    pub default_allow: bool,
    /// What happens to a frame that is not IP (ARP, LLDP, ...) in an
    /// Ethernet chain: the rules judge IP 5-tuples only. IP chains never
    /// see such frames.
    pub allow_non_ip: bool,
}

impl Firewall {
    #[inline]
    pub fn allows(&self, t: &Tuple, dir: Direction) -> bool {
        let t = match dir {
            Direction::Forward => *t,
            Direction::Reverse => t.reflected(),
        };
        for r in self.rules.iter() {
            if r.tuple.matches(&t) {
                return r.allow;
            }
        }
        self.default_allow
    }
}

/// A load-balanced backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LbBackend {
    pub addr: u128,
    /// 0: the virtual port is kept.
    pub port: u16,
}

/// A Maglev load balancer: forward traffic to the virtual address (and
/// port, when set) goes to one backend by flow hash; reverse traffic from
/// a backend gets the virtual address back. Stateless: Maglev gives a flow
/// the same backend on every worker and node while the backends stay.
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    pub family: u8,
    pub vip: u128,
    /// 0: any port.
    pub vport: u16,
    /// 0: any protocol.
    pub proto: u8,
    /// Indexed by the ring's ids.
    pub backends: Box<[LbBackend]>,
    /// Sorted, for the reverse lookup.
    pub by_backend: Box<[LbBackend]>,
    pub ring: Arc<MaglevRing>,
}

/// A 1:1 prefix NAT (Linux's NETMAP): forward traffic from `inside` leaves
/// from the same host in `outside`; reverse traffic to `outside` is mapped
/// back. Stateless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Netmap {
    pub inside: Prefix,
    pub outside: Prefix,
}

/// An external network function's ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct External {
    /// Forward traffic leaves here (reverse traffic comes back here).
    pub ingress: PortId,
    /// Forward traffic comes back here (reverse traffic leaves here).
    pub egress: PortId,
    /// Destination MACs of frames sent out of `ingress` and `egress`: the
    /// function's own, or for a function that forwards frames unchanged
    /// (a "wire", such as testpmd's io mode) the MAC of the port they come
    /// back on, so that they are accepted there.
    pub ingress_dst_mac: [u8; 6],
    pub egress_dst_mac: [u8; 6],
    pub ingress_src_mac: [u8; 6],
    pub egress_src_mac: [u8; 6],
}

/// A port mirror (SPAN): every packet passing the hop in a mirrored
/// direction is copied, as it is at that point of the chain, and the copy
/// is sent unchanged on `port`; the original goes on with the next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mirror {
    pub port: PortId,
    pub forward: bool,
    pub reverse: bool,
}

impl Mirror {
    #[inline(always)]
    pub fn mirrors(&self, dir: Direction) -> bool {
        match dir {
            Direction::Forward => self.forward,
            Direction::Reverse => self.reverse,
        }
    }
}

/// What a hop's candidate does.
#[derive(Debug, Clone)]
pub enum Function {
    Firewall(Firewall),
    /// Counts and passes (the hop's counters).
    Counter,
    LoadBalancer(LoadBalancer),
    Nat(Netmap),
    /// Drops what exceeds the rate (both directions share the limiter).
    Police(Arc<Limiter>),
    /// Copies to a port and passes.
    Mirror(Mirror),
    External(External),
}

impl Function {
    pub fn kind(&self) -> &'static str {
        match self {
            Function::Firewall(_) => "firewall",
            Function::Counter => "counter",
            Function::LoadBalancer(_) => "loadBalancer",
            Function::Nat(_) => "nat",
            Function::Police(_) => "police",
            Function::Mirror(_) => "mirror",
            Function::External(_) => "external",
        }
    }
}

/// One hop: its candidates (at least one unless `down`).
#[derive(Debug, Clone)]
pub struct Hop {
    /// The endpoint names, for counters and errors.
    pub name: String,
    /// A slot table: a flow takes `candidates[hash % len]`. A candidate
    /// may fill several slots (weights); the compiler keeps it short (see
    /// `MAX_SLOTS` in the control plane).
    pub candidates: Box<[Function]>,
}

/// One chain.
#[derive(Debug, Clone)]
pub struct Chain {
    pub name: String,
    pub fail: FailMode,
    /// Its hops: `hops[first .. first + len]` of the table.
    pub first: u32,
    pub len: u16,
}

/// Where a packet received on a chain port is in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortHop {
    pub chain: ChainId,
    /// The hop's position in its chain.
    pub position: u16,
    pub direction: Direction,
}

/// Counters of one hop, shared by the workers (each flushes once per
/// burst, not per packet).
#[derive(Debug, Default)]
pub struct HopCounters {
    pub packets: [AtomicU64; 2],
    pub bytes: [AtomicU64; 2],
    /// Dropped by the hop (firewall deny, police, fail-closed).
    pub dropped: AtomicU64,
    /// Passed over: no working candidate and the chain skips.
    pub skipped: AtomicU64,
    /// Copies a mirror hop made (and handed to the worker to send).
    pub mirrored: AtomicU64,
    pub mirrored_bytes: AtomicU64,
    /// Copies a mirror hop could not make (no buffer, mirror port without
    /// link) plus those made that the worker could not send (transmit
    /// queue full); the originals went on either way.
    pub mirror_dropped: AtomicU64,
}

/// One hop's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HopCount {
    pub forward_packets: u64,
    pub forward_bytes: u64,
    pub reverse_packets: u64,
    pub reverse_bytes: u64,
    pub dropped: u64,
    pub skipped: u64,
    pub mirrored: u64,
    pub mirrored_bytes: u64,
    pub mirror_dropped: u64,
}

/// Per-port link flags, shared by every generation: written by whoever
/// watches the ports, read by the chain stage. All up until told.
#[derive(Debug)]
pub struct PortLinks {
    up: Box<[AtomicBool]>,
}

impl Default for PortLinks {
    fn default() -> Self {
        PortLinks {
            up: (0..crate::stats::MAX_PORTS)
                .map(|_| AtomicBool::new(true))
                .collect(),
        }
    }
}

impl PortLinks {
    pub fn set(&self, port: PortId, up: bool) {
        if let Some(f) = self.up.get(port as usize) {
            f.store(up, Ordering::Relaxed);
        }
    }

    #[inline(always)]
    pub fn is_up(&self, port: PortId) -> bool {
        self.up
            .get(port as usize)
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }
}

// ---- Ethernet (L2) chains ----

/// The two ends of an Ethernet chain (payload ETHERNET): a bump in the
/// wire between two ports. Forward frames are received on `entry` and
/// leave on `exit`, unchanged; reverse frames the other way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Chain {
    pub chain: ChainId,
    pub entry: PortId,
    pub exit: PortId,
}

/// A frame's fields as Ethernet classifiers see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct L2Frame {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// The innermost VLAN id, 0 when untagged.
    pub vlan: u16,
    /// The EtherType after the VLAN tags.
    pub ethertype: u16,
    /// The 5-tuple of an IP frame (`family` 0: not IP).
    pub tuple: Tuple,
}

/// Steers frames received on `port` into an Ethernet chain. Every set
/// field must match; an `ip` match takes only IP frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Classifier {
    pub chain: ChainId,
    /// Forward classifiers sit on the chain's entry, reverse ones on its
    /// exit.
    pub direction: Direction,
    pub port: PortId,
    pub vlan: Option<u16>,
    pub ethertype: Option<u16>,
    pub src_mac: Option<[u8; 6]>,
    pub dst_mac: Option<[u8; 6]>,
    pub ip: Option<TupleMatch>,
}

impl L2Classifier {
    #[inline(always)]
    pub fn matches(&self, rx_port: PortId, f: &L2Frame) -> bool {
        self.port == rx_port
            && self.vlan.is_none_or(|v| v == f.vlan)
            && self.ethertype.is_none_or(|e| e == f.ethertype)
            && self.src_mac.is_none_or(|m| m == f.src_mac)
            && self.dst_mac.is_none_or(|m| m == f.dst_mac)
            && self
                .ip
                .is_none_or(|t| f.tuple.family != 0 && t.matches(&f.tuple))
    }

    /// Whether the frame's addresses match, whatever its ports (a
    /// non-first fragment has none).
    #[inline(always)]
    pub fn matches_addresses(&self, rx_port: PortId, f: &L2Frame) -> bool {
        let ports_any = |t: TupleMatch| TupleMatch {
            sport: PortRange::ANY,
            dport: PortRange::ANY,
            ..t
        };
        L2Classifier {
            ip: self.ip.map(ports_any),
            ..*self
        }
        .matches(rx_port, f)
    }

    /// The classifier for the other direction: received on the other end,
    /// addresses and ports swapped.
    pub fn reflected(&self, other_end: PortId) -> L2Classifier {
        L2Classifier {
            chain: self.chain,
            direction: match self.direction {
                Direction::Forward => Direction::Reverse,
                Direction::Reverse => Direction::Forward,
            },
            port: other_end,
            vlan: self.vlan,
            ethertype: self.ethertype,
            src_mac: self.dst_mac,
            dst_mac: self.src_mac,
            ip: self.ip.map(|t| t.reflected()),
        }
    }
}

/// What a port is to the Ethernet chains (one byte per port, so the
/// stage decides with one load whether a frame is its business).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum L2Port {
    /// Not an Ethernet chain's port: frames take the normal path.
    #[default]
    None,
    /// An Ethernet chain's entry or exit: frames are classified.
    End,
    /// An external hop's port in an Ethernet chain: frames coming back
    /// from the function.
    Hop,
}

/// The Ethernet chains of a generation, as compiled.
struct L2Compiled {
    /// Per chain id: its ends, `None` for an IP chain.
    ends: Box<[Option<(PortId, PortId)>]>,
    classifiers: Box<[L2Classifier]>,
    /// Indexed by port id (all `MAX_PORTS`).
    ports: Box<[L2Port]>,
}

impl L2Compiled {
    fn build(
        parts: &ChainParts,
        port_hops: &[Option<PortHop>],
    ) -> Result<Option<L2Compiled>, ChainBuildError> {
        if parts.l2.is_empty() {
            if !parts.l2_classifiers.is_empty() {
                return Err(ChainBuildError(
                    "Ethernet classifiers without an Ethernet chain".into(),
                ));
            }
            return Ok(None);
        }
        let max = crate::stats::MAX_PORTS;
        let mut ends: Vec<Option<(PortId, PortId)>> = vec![None; parts.chains.len()];
        let mut ports = vec![L2Port::None; max];
        let hop_port = |p: PortId| port_hops.get(p as usize).copied().flatten();
        for l in &parts.l2 {
            let Some(c) = parts.chains.get(l.chain as usize) else {
                return Err(ChainBuildError(format!(
                    "an Ethernet chain names chain {} of {}",
                    l.chain,
                    parts.chains.len()
                )));
            };
            if ends[l.chain as usize].is_some() {
                return Err(ChainBuildError(format!(
                    "chain {}: two sets of Ethernet ends",
                    c.name
                )));
            }
            if l.entry == l.exit {
                return Err(ChainBuildError(format!(
                    "chain {}: an Ethernet chain's exit must differ from its entry (port {})",
                    c.name, l.entry
                )));
            }
            for p in [l.entry, l.exit] {
                if p as usize >= max {
                    return Err(ChainBuildError(format!(
                        "chain {}: port {p} past the {max} ports a chain may use",
                        c.name
                    )));
                }
                if hop_port(p).is_some() {
                    return Err(ChainBuildError(format!(
                        "chain {}: port {p} joins an external hop and cannot be an Ethernet chain's end",
                        c.name
                    )));
                }
                ports[p as usize] = L2Port::End;
            }
            ends[l.chain as usize] = Some((l.entry, l.exit));
            for h in &parts.hops[c.first as usize..c.first as usize + c.len as usize] {
                for f in h.candidates.iter() {
                    match f {
                        Function::LoadBalancer(_) | Function::Nat(_) => {
                            return Err(ChainBuildError(format!(
                                "chain {} hop {}: a {} rewrites addresses; an Ethernet chain forwards frames unchanged",
                                c.name,
                                h.name,
                                f.kind()
                            )))
                        }
                        Function::External(x) => {
                            ports[x.ingress as usize] = L2Port::Hop;
                            ports[x.egress as usize] = L2Port::Hop;
                        }
                        _ => {}
                    }
                }
            }
        }
        for k in &parts.classifiers {
            if ends[k.chain as usize].is_some() {
                return Err(ChainBuildError(format!(
                    "chain {}: an IP classifier for an Ethernet chain",
                    parts.chains[k.chain as usize].name
                )));
            }
        }
        for k in &parts.l2_classifiers {
            let Some((entry, exit)) = ends.get(k.chain as usize).copied().flatten() else {
                return Err(ChainBuildError(format!(
                    "an Ethernet classifier names chain {}, which is not an Ethernet chain",
                    k.chain
                )));
            };
            let want = match k.direction {
                Direction::Forward => entry,
                Direction::Reverse => exit,
            };
            if k.port != want {
                return Err(ChainBuildError(format!(
                    "chain {}: a {:?} classifier on port {}; it belongs on port {want}",
                    parts.chains[k.chain as usize].name, k.direction, k.port
                )));
            }
        }
        Ok(Some(L2Compiled {
            ends: ends.into(),
            classifiers: parts.l2_classifiers.clone().into(),
            ports: ports.into(),
        }))
    }
}

/// Everything the control plane hands over for one generation.
#[derive(Debug, Clone, Default)]
pub struct ChainParts {
    pub chains: Vec<Chain>,
    pub hops: Vec<Hop>,
    /// In priority order: the first that matches steers.
    pub classifiers: Vec<Classifier>,
    /// The chains of these that carry Ethernet frames (payload ETHERNET).
    pub l2: Vec<L2Chain>,
    /// Their classifiers, in priority order (each on its receiving port).
    pub l2_classifiers: Vec<L2Classifier>,
}

struct Compiled {
    chains: Box<[Chain]>,
    hops: Box<[Hop]>,
    classifiers: Box<[Classifier]>,
    /// The classifiers' first-match index.
    classify: TupleSpace,
    /// The same with every port range widened to all ports: what a later
    /// fragment (which has no ports) may belong to.
    classify_addresses: TupleSpace,
    /// Indexed by port id.
    port_hops: Box<[Option<PortHop>]>,
    counters: Box<[HopCounters]>,
    l2: Option<L2Compiled>,
}

/// Why a chain table was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBuildError(pub String);

impl core::fmt::Display for ChainBuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ChainBuildError {}

/// The chains of one generation. Cloning shares them.
#[derive(Clone, Default)]
pub struct ChainTable {
    inner: Option<Arc<Compiled>>,
    links: Arc<PortLinks>,
}

impl core::fmt::Debug for ChainTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChainTable")
            .field("chains", &self.chains().len())
            .field("hops", &self.hops().len())
            .finish()
    }
}

impl ChainTable {
    /// Builds a table; `links` is the flag set the previous generation
    /// used (so the watcher's writes reach every generation).
    pub fn build(parts: ChainParts, links: Arc<PortLinks>) -> Result<ChainTable, ChainBuildError> {
        if parts.chains.is_empty() {
            if !parts.l2.is_empty() || !parts.l2_classifiers.is_empty() {
                return Err(ChainBuildError(
                    "Ethernet chain parts without chains".into(),
                ));
            }
            return Ok(ChainTable { inner: None, links });
        }
        if parts.chains.len() >= ChainId::MAX as usize {
            return Err(ChainBuildError(format!(
                "{} chains; at most {}",
                parts.chains.len(),
                ChainId::MAX - 1
            )));
        }
        let mut port_hops: Vec<Option<PortHop>> = Vec::new();
        for (cid, c) in parts.chains.iter().enumerate() {
            let end = c.first as usize + c.len as usize;
            if end > parts.hops.len() {
                return Err(ChainBuildError(format!(
                    "chain {}: hops {}..{end} past the {} hops",
                    c.name,
                    c.first,
                    parts.hops.len()
                )));
            }
            for (pos, h) in parts.hops[c.first as usize..end].iter().enumerate() {
                for f in h.candidates.iter() {
                    let Function::External(x) = f else { continue };
                    if x.ingress == x.egress {
                        return Err(ChainBuildError(format!(
                            "chain {} hop {}: an external function needs two ports (port {} for both)",
                            c.name, h.name, x.ingress
                        )));
                    }
                    for (port, direction) in [
                        (x.egress, Direction::Forward),
                        (x.ingress, Direction::Reverse),
                    ] {
                        let i = port as usize;
                        if i >= crate::stats::MAX_PORTS {
                            return Err(ChainBuildError(format!(
                                "chain {} hop {}: port {port} past the {} ports a chain may use",
                                c.name,
                                h.name,
                                crate::stats::MAX_PORTS
                            )));
                        }
                        if port_hops.len() <= i {
                            port_hops.resize(i + 1, None);
                        }
                        let here = PortHop {
                            chain: cid as ChainId,
                            position: pos as u16,
                            direction,
                        };
                        // The same function in several slots of its hop
                        // (a weight) names the same hop.
                        if port_hops[i].is_some_and(|p| p != here) {
                            return Err(ChainBuildError(format!(
                                "chain {} hop {}: port {port} already joins another hop; a port pair identifies one hop",
                                c.name, h.name
                            )));
                        }
                        port_hops[i] = Some(here);
                    }
                }
            }
        }
        // A copy sent into an external function would come back as if the
        // function had forwarded it.
        for h in &parts.hops {
            for f in h.candidates.iter() {
                if let Function::Mirror(m) = f {
                    if port_hops.get(m.port as usize).copied().flatten().is_some() {
                        return Err(ChainBuildError(format!(
                            "hop {}: mirror port {} joins an external function's hop",
                            h.name, m.port
                        )));
                    }
                }
            }
        }
        for k in &parts.classifiers {
            if k.chain as usize >= parts.chains.len() {
                return Err(ChainBuildError(format!(
                    "a classifier names chain {} of {}",
                    k.chain,
                    parts.chains.len()
                )));
            }
        }
        let l2 = L2Compiled::build(&parts, &port_hops)?;
        let counters = (0..parts.hops.len())
            .map(|_| HopCounters::default())
            .collect();
        Ok(ChainTable {
            inner: Some(Arc::new(Compiled {
                chains: parts.chains.into(),
                hops: parts.hops.into(),
                classify: TupleSpace::build(parts.classifiers.iter().map(|k| k.rule()).collect()),
                classify_addresses: TupleSpace::build(
                    parts
                        .classifiers
                        .iter()
                        .map(|k| {
                            let mut r = k.rule();
                            r.tuple.sport = PortRange::ANY;
                            r.tuple.dport = PortRange::ANY;
                            r
                        })
                        .collect(),
                ),
                classifiers: parts.classifiers.into(),
                port_hops: port_hops.into(),
                counters,
                l2,
            })),
            links,
        })
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    /// Whether a hop copies packets (a mirror): the worker then keeps free
    /// buffers ready in the burst's side output.
    pub fn makes_copies(&self) -> bool {
        self.hops().iter().any(|h| {
            h.candidates
                .iter()
                .any(|f| matches!(f, Function::Mirror(_)))
        })
    }

    pub fn links(&self) -> &Arc<PortLinks> {
        &self.links
    }

    pub fn chains(&self) -> &[Chain] {
        self.inner.as_ref().map_or(&[], |c| &c.chains)
    }

    pub fn hops(&self) -> &[Hop] {
        self.inner.as_ref().map_or(&[], |c| &c.hops)
    }

    pub fn classifiers(&self) -> &[Classifier] {
        self.inner.as_ref().map_or(&[], |c| &c.classifiers)
    }

    /// The chain hop a port joins, if it does.
    #[inline(always)]
    pub fn port_hop(&self, port: PortId) -> Option<PortHop> {
        self.inner
            .as_ref()
            .and_then(|c| c.port_hops.get(port as usize).copied().flatten())
    }

    /// The first classifier that matches, if any.
    #[inline]
    pub fn classify(
        &self,
        network: NetworkId,
        rx_port: PortId,
        t: &Tuple,
    ) -> Option<(ChainId, Direction)> {
        let c = self.inner.as_ref()?;
        let k = &c.classifiers[c.classify.lookup(network, rx_port, t)? as usize];
        Some((k.chain, k.direction))
    }

    /// Whether a classifier matches the packet's addresses and protocol
    /// whatever its ports (a non-first fragment has none).
    #[inline]
    pub fn classify_addresses(&self, network: NetworkId, rx_port: PortId, t: &Tuple) -> bool {
        let Some(c) = self.inner.as_ref() else {
            return false;
        };
        c.classify_addresses.lookup(network, rx_port, t).is_some()
    }

    /// A hop's counters (by its index in [`hops`](Self::hops)).
    pub fn hop_count(&self, hop: usize) -> HopCount {
        let Some(c) = self.inner.as_ref().and_then(|c| c.counters.get(hop)) else {
            return HopCount::default();
        };
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HopCount {
            forward_packets: r(&c.packets[0]),
            forward_bytes: r(&c.bytes[0]),
            reverse_packets: r(&c.packets[1]),
            reverse_bytes: r(&c.bytes[1]),
            dropped: r(&c.dropped),
            skipped: r(&c.skipped),
            mirrored: r(&c.mirrored),
            mirrored_bytes: r(&c.mirrored_bytes),
            mirror_dropped: r(&c.mirror_dropped),
        }
    }

    /// Every chain's hops with their counts: (chain, hop name, function
    /// kinds, count, payload).
    pub fn counts(&self) -> Vec<(String, String, String, HopCount, &'static str)> {
        let mut out = Vec::new();
        for (cid, c) in self.chains().iter().enumerate() {
            for h in c.first as usize..c.first as usize + c.len as usize {
                let hop = &self.hops()[h];
                let mut kinds: Vec<&str> = Vec::new();
                for k in hop.candidates.iter().map(Function::kind) {
                    // A candidate in several slots (a weight) is one kind.
                    if !kinds.contains(&k) {
                        kinds.push(k);
                    }
                }
                out.push((
                    c.name.clone(),
                    hop.name.clone(),
                    kinds.join(","),
                    self.hop_count(h),
                    self.payload(cid as ChainId),
                ));
            }
        }
        out
    }

    #[inline(always)]
    pub(crate) fn raw(&self) -> Option<RawView<'_>> {
        self.inner.as_ref().map(|c| RawView {
            chains: &c.chains,
            hops: &c.hops,
            counters: &c.counters,
            links: &self.links,
        })
    }
}

impl ChainTable {
    /// Whether this generation has an Ethernet chain.
    #[inline(always)]
    pub fn has_l2(&self) -> bool {
        self.inner.as_ref().is_some_and(|c| c.l2.is_some())
    }

    /// An Ethernet chain's (entry, exit) ports; `None` for an IP chain.
    pub fn l2_ends(&self, chain: ChainId) -> Option<(PortId, PortId)> {
        let l2 = self.inner.as_ref()?.l2.as_ref()?;
        l2.ends.get(chain as usize).copied().flatten()
    }

    /// What a chain carries: "ETHERNET" or "IP" (the API's names).
    pub fn payload(&self, chain: ChainId) -> &'static str {
        if self.l2_ends(chain).is_some() {
            "ETHERNET"
        } else {
            "IP"
        }
    }

    pub fn l2_classifiers(&self) -> &[L2Classifier] {
        self.inner
            .as_ref()
            .and_then(|c| c.l2.as_ref())
            .map_or(&[], |l| &l.classifiers)
    }

    /// The Ethernet chains' view for the stage, borrowed once per burst;
    /// `None` (one branch) when there is no Ethernet chain.
    #[inline(always)]
    pub(crate) fn l2_raw(&self) -> Option<L2View<'_>> {
        let c = self.inner.as_ref()?;
        let l2 = c.l2.as_ref()?;
        Some(L2View {
            raw: RawView {
                chains: &c.chains,
                hops: &c.hops,
                counters: &c.counters,
                links: &self.links,
            },
            ends: &l2.ends,
            classifiers: &l2.classifiers,
            ports: &l2.ports,
            port_hops: &c.port_hops,
        })
    }
}

/// What the Ethernet chain stage reads, borrowed once per burst.
pub(crate) struct L2View<'a> {
    pub raw: RawView<'a>,
    pub ends: &'a [Option<(PortId, PortId)>],
    pub classifiers: &'a [L2Classifier],
    pub ports: &'a [L2Port],
    pub port_hops: &'a [Option<PortHop>],
}

impl L2View<'_> {
    #[inline(always)]
    pub fn port(&self, p: PortId) -> L2Port {
        self.ports.get(p as usize).copied().unwrap_or_default()
    }

    #[inline(always)]
    pub fn port_hop(&self, p: PortId) -> Option<PortHop> {
        self.port_hops.get(p as usize).copied().flatten()
    }

    /// The first classifier that takes the frame; a non-first fragment is
    /// matched on its addresses only (`true` in the answer).
    #[inline]
    pub fn classify(
        &self,
        rx_port: PortId,
        f: &L2Frame,
        later_fragment: bool,
    ) -> Option<(ChainId, Direction, bool)> {
        if later_fragment {
            return self
                .classifiers
                .iter()
                .find(|k| k.matches_addresses(rx_port, f))
                .map(|k| (k.chain, k.direction, k.ip.is_some()));
        }
        self.classifiers
            .iter()
            .find(|k| k.matches(rx_port, f))
            .map(|k| (k.chain, k.direction, false))
    }
}

/// The parts the stage reads, borrowed once per burst.
pub(crate) struct RawView<'a> {
    pub chains: &'a [Chain],
    pub hops: &'a [Hop],
    pub counters: &'a [HopCounters],
    pub links: &'a PortLinks,
}

impl LoadBalancer {
    /// Builds the balancer and its ring (backends keyed by address and
    /// port, equal weights).
    pub fn new(
        family: u8,
        vip: u128,
        vport: u16,
        proto: u8,
        backends: Vec<LbBackend>,
    ) -> Result<LoadBalancer, ChainBuildError> {
        use crate::tables::maglev::Backend;
        let keys: Vec<Vec<u8>> = backends
            .iter()
            .map(|b| {
                let mut k = if family == 4 {
                    (b.addr as u32).to_be_bytes().to_vec()
                } else {
                    b.addr.to_be_bytes().to_vec()
                };
                k.extend_from_slice(&b.port.to_be_bytes());
                k
            })
            .collect();
        let offered: Vec<Backend<'_>> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| Backend {
                key: k,
                weight: 1,
                id: i as u32,
            })
            .collect();
        let ring = MaglevRing::build(&offered, None).map_err(|e| ChainBuildError(e.to_string()))?;
        let mut by_backend = backends.clone();
        by_backend.sort();
        Ok(LoadBalancer {
            family,
            vip,
            vport,
            proto,
            backends: backends.into(),
            by_backend: by_backend.into(),
            ring: Arc::new(ring),
        })
    }

    /// The backend for a forward packet to the virtual address.
    #[inline]
    pub fn forward(&self, t: &Tuple, hash: u32) -> Option<LbBackend> {
        if t.family != self.family
            || t.dst != self.vip
            || (self.vport != 0 && t.dport != self.vport)
            || (self.proto != 0 && t.proto != self.proto)
        {
            return None;
        }
        let id = self.ring.lookup(hash)?;
        self.backends.get(id as usize).copied()
    }

    /// Whether a reverse packet comes from a backend (it then gets the
    /// virtual address and port back).
    #[inline]
    pub fn is_backend(&self, t: &Tuple) -> bool {
        if t.family != self.family || (self.proto != 0 && t.proto != self.proto) {
            return false;
        }
        let key = LbBackend {
            addr: t.src,
            port: t.sport,
        };
        if self.by_backend.binary_search(&key).is_ok() {
            return true;
        }
        // A backend that keeps the virtual port.
        self.by_backend
            .binary_search(&LbBackend {
                addr: t.src,
                port: 0,
            })
            .is_ok()
            && (self.vport == 0 || t.sport == self.vport)
    }
}

impl Netmap {
    /// The new source of a forward packet, if the NAT maps it.
    #[inline(always)]
    pub fn forward(&self, t: &Tuple) -> Option<u128> {
        self.inside
            .contains(t.family, t.src)
            .then(|| self.inside.map_into(&self.outside, t.src))
    }

    /// The new destination of a reverse packet, if the NAT maps it.
    #[inline(always)]
    pub fn reverse(&self, t: &Tuple) -> Option<u128> {
        self.outside
            .contains(t.family, t.dst)
            .then(|| self.outside.map_into(&self.inside, t.dst))
    }
}

/// Admits a packet through a policer.
#[inline(always)]
pub fn police(l: &Limiter, len: u32, now_ns: u64) -> bool {
    !matches!(l.admit(len, now_ns), Admit::Drop | Admit::Delay(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> u128 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()) as u128
    }

    fn p4(s: &str, len: u8) -> Prefix {
        Prefix {
            family: 4,
            addr: v4(s),
            len,
        }
    }

    fn tcp(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
        Tuple {
            family: 4,
            proto: 6,
            src: v4(src),
            dst: v4(dst),
            sport,
            dport,
        }
    }

    #[test]
    fn prefixes_match_by_family_and_length() {
        assert!(p4("10.0.0.0", 8).contains(4, v4("10.200.1.1")));
        assert!(!p4("10.0.0.0", 8).contains(4, v4("11.0.0.1")));
        assert!(!p4("10.0.0.0", 8).contains(6, v4("10.0.0.1")));
        assert!(p4("0.0.0.0", 0).contains(4, v4("1.2.3.4")));
        assert!(Prefix::ANY.contains(6, 1));
        assert!(Prefix::host(4, v4("1.2.3.4")).contains(4, v4("1.2.3.4")));
        assert!(!Prefix::host(4, v4("1.2.3.4")).contains(4, v4("1.2.3.5")));
        let v6 = Prefix {
            family: 6,
            addr: 0xfd00u128 << 112,
            len: 16,
        };
        assert!(v6.contains(6, (0xfd00u128 << 112) | 7));
        assert!(!v6.contains(6, 0xfe00u128 << 112));
    }

    #[test]
    fn firewall_first_match_wins_and_reflects_for_replies() {
        let fw = Firewall {
            rules: vec![
                FirewallRule {
                    tuple: TupleMatch {
                        src: p4("10.0.1.0", 24),
                        dst: p4("10.96.0.10", 32),
                        proto: 6,
                        dport: PortRange::one(80),
                        ..Default::default()
                    },
                    allow: true,
                },
                FirewallRule {
                    tuple: TupleMatch::default(),
                    allow: false,
                },
            ]
            .into(),
            default_allow: true,
            allow_non_ip: true,
        };
        let req = tcp("10.0.1.5", 40000, "10.96.0.10", 80);
        assert!(fw.allows(&req, Direction::Forward));
        assert!(fw.allows(&req.reflected(), Direction::Reverse));
        assert!(!fw.allows(
            &tcp("10.0.1.5", 40000, "10.96.0.10", 22),
            Direction::Forward
        ));
        assert!(!fw.allows(
            &tcp("10.0.2.5", 40000, "10.96.0.10", 80),
            Direction::Forward
        ));
        // A reply is not a request: the reflected rule does not allow a
        // forward packet from the server.
        assert!(!fw.allows(&req.reflected(), Direction::Forward));
    }

    #[test]
    fn load_balancer_spreads_and_maps_replies_back() {
        let lb = LoadBalancer::new(
            4,
            v4("10.96.0.10"),
            80,
            6,
            vec![
                LbBackend {
                    addr: v4("10.0.2.1"),
                    port: 8080,
                },
                LbBackend {
                    addr: v4("10.0.2.2"),
                    port: 8080,
                },
            ],
        )
        .unwrap();
        let mut seen = [0usize; 2];
        for h in 0..1000u32 {
            let b = lb
                .forward(
                    &tcp("10.0.1.5", 1000, "10.96.0.10", 80),
                    h.wrapping_mul(2654435761),
                )
                .unwrap();
            seen[(b.addr == v4("10.0.2.2")) as usize] += 1;
            assert_eq!(b.port, 8080);
        }
        assert!(seen[0] > 300 && seen[1] > 300, "{seen:?}");
        assert!(lb
            .forward(&tcp("10.0.1.5", 1000, "10.96.0.11", 80), 1)
            .is_none());
        assert!(lb
            .forward(&tcp("10.0.1.5", 1000, "10.96.0.10", 81), 1)
            .is_none());
        assert!(lb.is_backend(&tcp("10.0.2.2", 8080, "10.0.1.5", 1000)));
        assert!(!lb.is_backend(&tcp("10.0.2.2", 8081, "10.0.1.5", 1000)));
        assert!(!lb.is_backend(&tcp("10.0.2.3", 8080, "10.0.1.5", 1000)));
    }

    #[test]
    fn netmap_keeps_host_bits() {
        let n = Netmap {
            inside: p4("10.0.1.0", 24),
            outside: p4("192.0.2.0", 24),
        };
        let t = tcp("10.0.1.7", 1, "8.8.8.8", 53);
        assert_eq!(n.forward(&t), Some(v4("192.0.2.7")));
        assert_eq!(
            n.reverse(&tcp("8.8.8.8", 53, "192.0.2.7", 1)),
            Some(v4("10.0.1.7"))
        );
        assert_eq!(n.forward(&tcp("10.0.2.7", 1, "8.8.8.8", 53)), None);
    }

    fn external(ingress: PortId, egress: PortId) -> Function {
        Function::External(External {
            ingress,
            egress,
            ingress_dst_mac: [0; 6],
            egress_dst_mac: [0; 6],
            ingress_src_mac: [0; 6],
            egress_src_mac: [0; 6],
        })
    }

    /// With many classifiers (indexed, not scanned) the first in priority
    /// order still steers: a host rule of chain 1 placed after a subnet
    /// rule of chain 0 never wins; reverse classifiers keep their direction.
    #[test]
    fn many_classifiers_first_match_steers() {
        let chain = |name: &str, first: u32| Chain {
            name: name.into(),
            fail: FailMode::Closed,
            first,
            len: 1,
        };
        let counter = |name: &str| Hop {
            name: name.into(),
            candidates: vec![Function::Counter].into(),
        };
        let k = |chain: ChainId, direction, tuple| Classifier {
            chain,
            direction,
            network: None,
            port: None,
            tuple,
        };
        let mut classifiers: Vec<Classifier> = (0..200u32)
            .map(|i| {
                let dst = Prefix::host(4, v4("10.96.0.0") + u128::from(i));
                let tuple = TupleMatch {
                    dst,
                    proto: 6,
                    dport: PortRange::one(80),
                    ..TupleMatch::default()
                };
                k(1, Direction::Forward, tuple)
            })
            .collect();
        classifiers.insert(
            50,
            k(
                0,
                Direction::Forward,
                TupleMatch {
                    dst: p4("10.96.0.128", 25),
                    ..TupleMatch::default()
                },
            ),
        );
        classifiers.push(k(
            0,
            Direction::Reverse,
            TupleMatch {
                src: p4("10.96.0.0", 16),
                ..TupleMatch::default()
            },
        ));
        let parts = ChainParts {
            chains: vec![chain("a", 0), chain("b", 1)],
            hops: vec![counter("a"), counter("b")],
            classifiers,
            ..Default::default()
        };
        let t = ChainTable::build(parts, Arc::default()).unwrap();
        let at = |tuple| t.classify(0, 0, &tuple);
        // Host rules before the /25 win; after it, the /25 wins.
        assert_eq!(
            at(tcp("1.1.1.1", 9, "10.96.0.7", 80)),
            Some((1, Direction::Forward))
        );
        assert_eq!(
            at(tcp("1.1.1.1", 9, "10.96.0.130", 80)),
            Some((0, Direction::Forward))
        );
        assert_eq!(
            at(tcp("1.1.1.1", 9, "10.96.0.130", 81)),
            Some((0, Direction::Forward))
        );
        assert_eq!(at(tcp("1.1.1.1", 9, "10.96.0.7", 81)), None);
        assert_eq!(
            at(tcp("10.96.3.3", 80, "1.1.1.1", 9)),
            Some((0, Direction::Reverse))
        );
        assert_eq!(at(tcp("10.97.3.3", 80, "1.1.1.1", 9)), None);
        // A later fragment (no ports) is matched on addresses and protocol.
        let fragment = |src, dst| t.classify_addresses(0, 0, &tcp(src, 0, dst, 0));
        assert!(fragment("1.1.1.1", "10.96.0.7"));
        assert!(fragment("10.96.3.3", "1.1.1.1"));
        assert!(!fragment("1.1.1.1", "10.97.0.7"));
        let mut udp = tcp("1.1.1.1", 0, "10.96.0.7", 0);
        udp.proto = 17;
        assert!(!t.classify_addresses(0, 0, &udp), "the host rules name TCP");
    }

    #[test]
    fn a_port_pair_names_one_hop_and_direction() {
        let parts = ChainParts {
            chains: vec![Chain {
                name: "c".into(),
                fail: FailMode::Closed,
                first: 0,
                len: 2,
            }],
            hops: vec![
                Hop {
                    name: "count".into(),
                    candidates: vec![Function::Counter].into(),
                },
                Hop {
                    name: "cnf".into(),
                    candidates: vec![external(3, 4)].into(),
                },
            ],
            classifiers: vec![],
            ..Default::default()
        };
        let t = ChainTable::build(parts.clone(), Arc::default()).unwrap();
        let fwd = t.port_hop(4).unwrap();
        assert_eq!(
            (fwd.chain, fwd.position, fwd.direction),
            (0, 1, Direction::Forward)
        );
        assert_eq!(t.port_hop(3).unwrap().direction, Direction::Reverse);
        assert_eq!(t.port_hop(2), None);
        // The same port in two hops cannot say which one a packet is in.
        let mut twice = parts.clone();
        twice.hops[0].candidates = vec![external(4, 5)].into();
        let e = ChainTable::build(twice, Arc::default()).unwrap_err();
        assert!(e.0.contains("port 4 already joins another hop"), "{e}");
        let mut one_armed = parts.clone();
        one_armed.hops[1].candidates = vec![external(3, 3)].into();
        assert!(ChainTable::build(one_armed, Arc::default()).is_err());
        // One function in several slots of its hop (a weight) is one hop.
        let mut weighted = parts.clone();
        weighted.hops[1].candidates = vec![external(3, 4), external(3, 4), external(5, 6)].into();
        let t = ChainTable::build(weighted, Arc::default()).unwrap();
        assert_eq!(t.port_hop(6).unwrap().position, 1);
        assert!(!t.makes_copies());
        // A mirror may not send into a function's port.
        let mirror = |port| {
            Function::Mirror(Mirror {
                port,
                forward: true,
                reverse: true,
            })
        };
        let mut into_cnf = parts.clone();
        into_cnf.hops[0].candidates = vec![mirror(3)].into();
        let e = ChainTable::build(into_cnf, Arc::default()).unwrap_err();
        assert!(e.0.contains("mirror port 3"), "{e}");
        let mut span = parts;
        span.hops[0].candidates = vec![mirror(7)].into();
        let t = ChainTable::build(span, Arc::default()).unwrap();
        assert!(t.makes_copies());
        assert_eq!(t.counts()[0].2, "mirror");
    }
}
