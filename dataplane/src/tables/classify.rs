//! First-match classification of 5-tuples by tuple-space search.
//!
//! A list of rules (network, receiving port, protocol, source and
//! destination prefixes, port ranges), first match wins: the chain
//! classifiers. Scanning it costs every packet that matches no rule — most
//! of a node's traffic — one comparison per rule. [`TupleSpace`] costs one
//! hash probe per *shape* of rule instead (the tuple-space search of
//! Srinivasan, Suri and Varghese, as in Open vSwitch's classifier):
//!
//! - A rule's shape is which fields it names and its prefix lengths: family,
//!   source and destination prefix lengths, whether it names a protocol,
//!   source ports, destination ports, a network, a receiving port. Rules of
//!   one shape go into one hash table keyed by the named fields (addresses
//!   cut to their prefix, one key per port of a port range); a key keeps
//!   the lowest rule index of the rules that share it.
//! - A packet is cut to each shape and looked up; the lowest index found
//!   wins. Shapes are visited in the order of their lowest rule, so the
//!   search stops as soon as no remaining shape can hold an earlier rule.
//! - A rule whose port ranges name more than [`EXPAND_PORTS`] port pairs
//!   (30000–32767, say) is kept in a list scanned in order, and only while
//!   its rules precede the best match so far.
//!
//! The answer is exactly the linear scan's (`first_match`), which the tests
//! check over random rule sets. A list of a few rules is scanned: below
//! [`SCAN_BELOW`] rules a scan is as fast as any probe.
//!
//! Building allocates; a lookup does not.

use super::chain::{PortRange, Prefix, Tuple, TupleMatch};
use super::{NetworkId, PortId};

/// Lists shorter than this are scanned rather than indexed.
pub const SCAN_BELOW: usize = 16;

/// One rule: where it applies and what it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rule {
    pub network: Option<NetworkId>,
    pub port: Option<PortId>,
    pub tuple: TupleMatch,
}

impl Rule {
    #[inline(always)]
    pub fn matches(&self, network: NetworkId, rx_port: PortId, t: &Tuple) -> bool {
        self.network.is_none_or(|n| n == network)
            && self.port.is_none_or(|p| p == rx_port)
            && self.tuple.matches(t)
    }
}

/// The first rule of `rules` that matches, by a scan: the definition the
/// index is held to.
pub fn first_match(rules: &[Rule], network: NetworkId, rx_port: PortId, t: &Tuple) -> Option<u32> {
    rules
        .iter()
        .position(|r| r.matches(network, rx_port, t))
        .map(|i| i as u32)
}

/// Which fields a group's rules name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Shape {
    /// 4 or 6 when the rules name addresses of one family, 0 when any.
    family: u8,
    src_len: u8,
    dst_len: u8,
    proto: bool,
    sport: bool,
    dport: bool,
    network: bool,
    port: bool,
}

/// A packet or rule cut to a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Key {
    src: u128,
    dst: u128,
    network: NetworkId,
    port: PortId,
    sport: u16,
    dport: u16,
    proto: u8,
}

impl Key {
    /// The key folded into two words (an IPv4 key's addresses exactly),
    /// mixed by a folded 64×64→128 multiply (wyhash's), twice.
    #[inline(always)]
    fn hash(&self) -> u64 {
        #[inline(always)]
        fn mix(a: u64, b: u64) -> u64 {
            let m = u128::from(a) * u128::from(b);
            (m as u64) ^ ((m >> 64) as u64)
        }
        const K0: u64 = 0xa076_1d64_78bd_642f;
        const K1: u64 = 0xe703_7ed1_a0b4_28db;
        const K2: u64 = 0x8ebc_6af0_9c88_c6e3;
        let a = (self.src as u64)
            ^ ((self.src >> 64) as u64).rotate_left(13)
            ^ (self.dst as u64).rotate_left(32)
            ^ ((self.dst >> 64) as u64).rotate_left(45);
        let b = (u64::from(self.network)
            | u64::from(self.port) << 16
            | u64::from(self.sport) << 32
            | u64::from(self.dport) << 48)
            ^ u64::from(self.proto).rotate_left(24);
        mix(mix(a ^ K0, b ^ K1), K2)
    }
}

/// Bits of an address of `family`: 32 or 128.
#[inline(always)]
fn bits(family: u8) -> u32 {
    if family == 4 {
        32
    } else {
        128
    }
}

/// `addr` cut to its first `len` bits, as [`Prefix::contains`] compares.
#[inline(always)]
fn cut(addr: u128, family: u8, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        addr >> (bits(family) - u32::from(len))
    }
}

const EMPTY: u32 = u32::MAX;

/// A hash table slot: 8 bytes, so that a miss — the common case — reads
/// one small, dense array. The full key is in `keys`, read only when the
/// fingerprint agrees.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The key hash's high half.
    fingerprint: u32,
    rule: u32,
}

const EMPTY_SLOT: Slot = Slot {
    fingerprint: 0,
    rule: EMPTY,
};

#[derive(Debug)]
struct Group {
    shape: Shape,
    /// Its lowest rule index.
    first: u32,
    /// Open addressing, a power of two at most half full.
    slots: Box<[Slot]>,
    /// The key of each occupied slot.
    keys: Box<[Key]>,
}

impl Group {
    fn new(shape: Shape, first: u32, keys: &[(Key, u32)]) -> Group {
        let size = (keys.len() * 2).next_power_of_two().max(2);
        let mut g = Group {
            shape,
            first,
            slots: vec![EMPTY_SLOT; size].into(),
            keys: vec![Key::default(); size].into(),
        };
        for (k, r) in keys {
            g.insert(*k, *r);
        }
        g
    }

    #[inline(always)]
    fn key(&self, network: NetworkId, rx_port: PortId, t: &Tuple) -> Key {
        let s = &self.shape;
        Key {
            src: cut(t.src, t.family, s.src_len),
            dst: cut(t.dst, t.family, s.dst_len),
            network: if s.network { network } else { 0 },
            port: if s.port { rx_port } else { 0 },
            sport: if s.sport { t.sport } else { 0 },
            dport: if s.dport { t.dport } else { 0 },
            proto: if s.proto { t.proto } else { 0 },
        }
    }

    #[inline(always)]
    fn get(&self, key: &Key) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let h = key.hash();
        let fingerprint = (h >> 32) as u32;
        let mut i = h as usize & mask;
        loop {
            let s = self.slots[i];
            if s.rule == EMPTY {
                return None;
            }
            if s.fingerprint == fingerprint && self.keys[i] == *key {
                return Some(s.rule);
            }
            i = (i + 1) & mask;
        }
    }

    fn insert(&mut self, key: Key, rule: u32) {
        let mask = self.slots.len() - 1;
        let h = key.hash();
        let mut i = h as usize & mask;
        loop {
            if self.slots[i].rule == EMPTY {
                self.slots[i] = Slot {
                    fingerprint: (h >> 32) as u32,
                    rule,
                };
                self.keys[i] = key;
                return;
            }
            if self.keys[i] == key {
                // Rules go in in index order: the first one keeps the key.
                return;
            }
            i = (i + 1) & mask;
        }
    }
}

/// How a rule is indexed.
enum Placed {
    /// Under one shape, with one key per port of its (short) port ranges.
    Group(Shape, Vec<Key>),
    /// A long port range: scanned.
    Scanned,
    /// Its prefixes name two families: it matches nothing.
    Never,
}

/// The most keys a rule's port ranges expand to; a rule with more ports
/// (a range such as 30000–32767) is scanned instead.
pub const EXPAND_PORTS: usize = 64;

/// The ports a range names: `None` when it names all (not keyed).
fn keyed_ports(r: &PortRange) -> Option<core::ops::RangeInclusive<u16>> {
    (!(r.lo == 0 && r.hi == u16::MAX)).then_some(r.lo..=r.hi)
}

fn place(r: &Rule) -> Placed {
    let m = &r.tuple;
    let family = match (m.src.family, m.dst.family) {
        (0, f) | (f, 0) => f,
        (a, b) if a == b => a,
        _ => return Placed::Never,
    };
    let (sports, dports) = (keyed_ports(&m.sport), keyed_ports(&m.dport));
    let count = |p: &Option<core::ops::RangeInclusive<u16>>| p.as_ref().map_or(1, |p| p.len());
    if count(&sports) * count(&dports) > EXPAND_PORTS {
        return Placed::Scanned;
    }
    let len = |p: &Prefix| {
        if p.family == 0 {
            0
        } else {
            p.len.min(bits(family) as u8)
        }
    };
    let shape = Shape {
        family,
        src_len: len(&m.src),
        dst_len: len(&m.dst),
        proto: m.proto != 0,
        sport: sports.is_some(),
        dport: dports.is_some(),
        network: r.network.is_some(),
        port: r.port.is_some(),
    };
    let key = Key {
        src: cut(m.src.addr, family, shape.src_len),
        dst: cut(m.dst.addr, family, shape.dst_len),
        network: r.network.unwrap_or(0),
        port: r.port.unwrap_or(0),
        sport: 0,
        dport: 0,
        proto: m.proto,
    };
    let mut keys = Vec::with_capacity(count(&sports) * count(&dports));
    for sport in sports.unwrap_or(0..=0) {
        for dport in dports.clone().unwrap_or(0..=0) {
            keys.push(Key {
                sport,
                dport,
                ..key
            });
        }
    }
    Placed::Group(shape, keys)
}

/// A first-match index over a rule list (see the module documentation).
#[derive(Debug, Default)]
pub struct TupleSpace {
    /// The rules, in priority order.
    rules: Box<[Rule]>,
    /// Empty when the list is short enough to scan.
    groups: Box<[Group]>,
    /// Rules whose port ranges are too long to key, ascending.
    scanned: Box<[u32]>,
    indexed: bool,
}

impl TupleSpace {
    pub fn build(rules: Vec<Rule>) -> TupleSpace {
        if rules.len() < SCAN_BELOW {
            return TupleSpace {
                rules: rules.into(),
                ..TupleSpace::default()
            };
        }
        // Each shape with its first rule and its keys (with their rules).
        type Keyed = Vec<(Key, u32)>;
        let mut shapes: Vec<(Shape, u32, Keyed)> = Vec::new();
        let mut by_shape = std::collections::HashMap::<Shape, usize>::new();
        let mut scanned = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            match place(r) {
                Placed::Never => {}
                Placed::Scanned => scanned.push(i as u32),
                Placed::Group(shape, keys) => {
                    let g = *by_shape.entry(shape).or_insert_with(|| {
                        shapes.push((shape, i as u32, Vec::new()));
                        shapes.len() - 1
                    });
                    shapes[g].2.extend(keys.into_iter().map(|k| (k, i as u32)));
                }
            }
        }
        // Shapes were made in the order of their first rule.
        let groups = shapes
            .into_iter()
            .map(|(shape, first, keys)| Group::new(shape, first, &keys))
            .collect();
        TupleSpace {
            rules: rules.into(),
            groups,
            scanned: scanned.into(),
            indexed: true,
        }
    }

    /// The rules, in priority order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// How many hash tables a lookup may probe (0 for a scanned list).
    pub fn shapes(&self) -> usize {
        self.groups.len()
    }

    /// The index of the first rule that matches.
    #[inline]
    pub fn lookup(&self, network: NetworkId, rx_port: PortId, t: &Tuple) -> Option<u32> {
        if !self.indexed {
            return first_match(&self.rules, network, rx_port, t);
        }
        let mut best = EMPTY;
        for g in self.groups.iter() {
            if g.first >= best {
                break;
            }
            if g.shape.family != 0 && g.shape.family != t.family {
                continue;
            }
            if let Some(r) = g.get(&g.key(network, rx_port, t)) {
                best = best.min(r);
            }
        }
        for &i in self.scanned.iter() {
            if i >= best {
                break;
            }
            if self.rules[i as usize].matches(network, rx_port, t) {
                best = i;
                break;
            }
        }
        (best != EMPTY).then_some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(a: [u8; 4], len: u8) -> Prefix {
        Prefix {
            family: 4,
            addr: u128::from(u32::from_be_bytes(a)),
            len,
        }
    }

    fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Tuple {
        Tuple {
            family: 4,
            proto: 17,
            src: u128::from(u32::from_be_bytes(src)),
            dst: u128::from(u32::from_be_bytes(dst)),
            sport,
            dport,
        }
    }

    fn rule(dst: Prefix, proto: u8, dport: PortRange) -> Rule {
        Rule {
            tuple: TupleMatch {
                dst,
                proto,
                dport,
                ..TupleMatch::default()
            },
            ..Rule::default()
        }
    }

    /// Many rules, the first match wins across shapes and the range list.
    #[test]
    fn first_match_wins_across_shapes() {
        let mut rules: Vec<Rule> = (0..100u8)
            .map(|i| rule(v4([10, 1, i, 0], 24), 6, PortRange::one(80)))
            .collect();
        rules.push(rule(
            v4([10, 2, 0, 0], 16),
            17,
            PortRange { lo: 1000, hi: 2000 },
        ));
        rules.push(rule(v4([10, 2, 3, 4], 32), 17, PortRange::ANY));
        rules.push(rule(Prefix::ANY, 17, PortRange::one(53)));
        let ts = TupleSpace::build(rules);
        assert!(ts.shapes() >= 3);
        let at = |t: Tuple| ts.lookup(0, 0, &t);
        assert_eq!(at(udp4([1, 1, 1, 1], [10, 2, 3, 4], 9, 1500)), Some(100));
        assert_eq!(at(udp4([1, 1, 1, 1], [10, 2, 3, 4], 9, 53)), Some(101));
        assert_eq!(at(udp4([1, 1, 1, 1], [10, 9, 3, 4], 9, 53)), Some(102));
        assert_eq!(at(udp4([1, 1, 1, 1], [10, 9, 3, 4], 9, 54)), None);
        let mut tcp = udp4([1, 1, 1, 1], [10, 1, 42, 7], 9, 80);
        tcp.proto = 6;
        assert_eq!(ts.lookup(0, 0, &tcp), Some(42));
        tcp.dport = 81;
        assert_eq!(ts.lookup(0, 0, &tcp), None);
    }

    /// Short port ranges are keyed port by port; long ones are scanned.
    #[test]
    fn port_ranges_short_and_long() {
        let mut rules = vec![rule(v4([192, 0, 2, 0], 24), 6, PortRange::one(1)); SCAN_BELOW];
        rules.push(rule(v4([10, 0, 0, 0], 8), 17, PortRange { lo: 10, hi: 20 }));
        rules.push(rule(
            v4([10, 0, 0, 0], 8),
            17,
            PortRange {
                lo: 30_000,
                hi: 32_767,
            },
        ));
        let ts = TupleSpace::build(rules);
        let at = |dport| ts.lookup(0, 0, &udp4([1; 4], [10, 0, 0, 1], 9, dport));
        let (short, long) = (Some(SCAN_BELOW as u32), Some(SCAN_BELOW as u32 + 1));
        assert_eq!(
            (at(9), at(10), at(15), at(20), at(21)),
            (None, short, short, short, None)
        );
        assert_eq!(
            (at(29_999), at(30_000), at(32_767), at(32_768)),
            (None, long, long, None)
        );
    }

    /// A rule whose prefixes name both families matches nothing; a prefix
    /// of one family keeps the other family out.
    #[test]
    fn families_are_kept_apart() {
        let mut rules = vec![Rule::default(); SCAN_BELOW];
        for r in &mut rules {
            r.port = Some(9); // never the port below
        }
        let v6 = Prefix {
            family: 6,
            addr: 0x2001_0db8 << 96,
            len: 32,
        };
        rules.push(Rule {
            tuple: TupleMatch {
                src: v4([10, 0, 0, 0], 8),
                dst: v6,
                ..TupleMatch::default()
            },
            ..Rule::default()
        });
        rules.push(rule(v6, 0, PortRange::ANY));
        rules.push(rule(v4([0, 0, 0, 0], 0), 0, PortRange::ANY));
        let ts = TupleSpace::build(rules.clone());
        let mut t6 = udp4([10, 0, 0, 1], [0; 4], 1, 2);
        t6.family = 6;
        t6.dst = (0x2001_0db8 << 96) | 5;
        assert_eq!(ts.lookup(0, 0, &t6), Some(SCAN_BELOW as u32 + 1));
        assert_eq!(first_match(&rules, 0, 0, &t6), Some(SCAN_BELOW as u32 + 1));
        let t4 = udp4([10, 0, 0, 1], [192, 0, 2, 1], 1, 2);
        assert_eq!(ts.lookup(0, 0, &t4), Some(SCAN_BELOW as u32 + 2));
    }

    /// Short lists are scanned, long ones indexed; both agree with the scan.
    #[test]
    fn short_lists_are_scanned() {
        let rules = vec![rule(v4([10, 0, 0, 0], 8), 17, PortRange::ANY); SCAN_BELOW - 1];
        let ts = TupleSpace::build(rules);
        assert_eq!(ts.shapes(), 0);
        assert_eq!(ts.lookup(0, 0, &udp4([1; 4], [10, 0, 0, 1], 1, 1)), Some(0));
        assert_eq!(
            TupleSpace::build(vec![]).lookup(0, 0, &udp4([1; 4], [1; 4], 1, 1)),
            None
        );
    }

    fn prefix() -> impl Strategy<Value = Prefix> {
        prop_oneof![
            1 => Just(Prefix::ANY),
            4 => (0u8..=33, 0u32..16).prop_map(|(len, a)| Prefix {
                family: 4,
                // Few distinct addresses, so that packets hit rules.
                addr: u128::from(0x0a00_0000 | (a << 20) | (a << 4)),
                len,
            }),
            2 => (0u8..=129, 0u128..8).prop_map(|(len, a)| Prefix {
                family: 6,
                addr: (0x2001_0db8 << 96) | (a << 90) | a,
                len,
            }),
        ]
    }

    fn ports() -> impl Strategy<Value = PortRange> {
        prop_oneof![
            3 => Just(PortRange::ANY),
            3 => (0u16..4).prop_map(PortRange::one),
            1 => (0u16..4, 0u16..4).prop_map(|(a, b)| PortRange { lo: a.min(b), hi: a.max(b) }),
            // Long enough, with another range, to be scanned.
            1 => (0u16..4, 8u16..200).prop_map(|(lo, hi)| PortRange { lo, hi }),
        ]
    }

    fn any_rule() -> impl Strategy<Value = Rule> {
        (
            prop::option::of(0u16..3),
            prop::option::of(0u16..3),
            prefix(),
            prefix(),
            prop_oneof![Just(0u8), Just(6u8), Just(17u8)],
            ports(),
            ports(),
        )
            .prop_map(|(network, port, src, dst, proto, sport, dport)| Rule {
                network,
                port,
                tuple: TupleMatch {
                    src,
                    dst,
                    proto,
                    sport,
                    dport,
                },
            })
    }

    fn any_tuple() -> impl Strategy<Value = (u16, u16, Tuple)> {
        (
            0u16..3,
            0u16..3,
            prefix(),
            prefix(),
            prop_oneof![Just(6u8), Just(17u8), Just(1u8)],
            prop_oneof![0u16..4, 0u16..210],
            prop_oneof![0u16..4, 0u16..210],
        )
            .prop_map(|(network, port, s, d, proto, sport, dport)| {
                let family = if s.family == 6 || (s.family == 0 && d.family == 6) {
                    6
                } else {
                    4
                };
                let addr = |p: Prefix| {
                    if p.family == family {
                        p.addr
                    } else if family == 4 {
                        0x0a00_0001
                    } else {
                        0x2001_0db8 << 96
                    }
                };
                (
                    network,
                    port,
                    Tuple {
                        family,
                        proto,
                        src: addr(s),
                        dst: addr(d),
                        sport,
                        dport,
                    },
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// The index finds exactly the rule the scan finds.
        #[test]
        fn agrees_with_the_scan(
            rules in prop::collection::vec(any_rule(), 0..120),
            packets in prop::collection::vec(any_tuple(), 64),
        ) {
            let ts = TupleSpace::build(rules.clone());
            for (network, port, t) in &packets {
                prop_assert_eq!(
                    ts.lookup(*network, *port, t),
                    first_match(&rules, *network, *port, t),
                    "{:?} on network {} port {}", t, network, port
                );
            }
        }
    }
}
