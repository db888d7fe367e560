//! Network service chains: NetworkServices (with Network Service Mesh's
//! matching), NetworkServiceEndpoints and Chains become the dataplane's
//! [`ChainTable`]. docs/chains.md is the user's account.
//!
//! # From a NetworkService to chains
//!
//! A service's `steering` says which traffic enters it, and who the client
//! is: a selected pod (matched with its own labels) or the rule's
//! `labels`. For each client, the chain is found as NSM builds one out of
//! passthrough endpoints: the service's matches, applied to the client's
//! labels ([`match_endpoints`], transcribed from the NSM SDK's
//! `matchutils.MatchEndpoint`), give the first hop's candidates; the same
//! matches applied to the first candidate's labels for the service give the
//! second hop, and so on, until the matches select nothing or an endpoint
//! already in the chain (so `fromAnywhere → firewall`, `fromFirewall →
//! middle`, `fromMiddle → vpn-gateway` makes a three-hop chain). Clients
//! that end up with the same hops share one dataplane chain.
//!
//! Endpoints that are not `ready` take part in the matching (NSM's registry
//! would have dropped them, and a fallthrough could then reshape the
//! chain); they are left out of their hop instead, so a hop with no ready
//! endpoint is down and the chain's `failureMode` decides. A client that no
//! match gives any endpoint gets a chain of one down hop: with FailClosed
//! its traffic is dropped rather than let through unserved.
//!
//! # Classifiers
//!
//! Every steering rule becomes forward classifiers (its sources — the pods'
//! addresses — × destinations × ports); the replies get reverse
//! classifiers: sources are the rule's destinations and the backends of the
//! chain's load balancers, destinations its sources and the outside
//! prefixes of its NATs. A rule that names no address (only an interface or
//! a network) gets none: its replies could not be told from other traffic.
//! Order: Chains by name, then NetworkServices by name; within one, its
//! forward classifiers, then its reverse ones. The first match steers.

use crate::compile::CompileError;
use crate::model::sluice::{
    chain_protocol, BuiltinFunction, FailureMode, FirewallAction, Labels, Match, MirrorDirection,
    MirrorSpec, NetworkServiceEndpoint, NetworkServiceSpec, Payload, PortSpec, Steering,
};
use crate::model::{DesiredState, Kind, Object, Selector};
use ipnet::IpNet;
use sluice_dataplane::tables::bandwidth::{Limiter, Mode};
use sluice_dataplane::tables::chain::{
    Chain, ChainParts, ChainTable, Classifier, Direction, External, FailMode, Firewall,
    FirewallRule, Function, Hop, L2Chain, L2Classifier, LbBackend, LoadBalancer, Mirror, Netmap,
    PortRange, Prefix, TupleMatch,
};
use sluice_dataplane::tables::{PortId, Tables};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

/// The kinds the chain table depends on.
pub const CHAIN_INPUTS: &[Kind] = &[
    Kind::NetworkService,
    Kind::NetworkServiceEndpoint,
    Kind::Chain,
    Kind::Pod,
    Kind::Namespace,
    Kind::Interface,
    Kind::Network,
];

/// The most hops a chain found by matching may have.
pub const MAX_HOPS: usize = 64;

// ---- NSM's matching (sdk pkg/tools/matchutils) ----

/// Fills a selector value's template from the client's labels. NSM runs
/// Go's text/template; the forms its documentation uses are
/// `{{.key}}` and `{{index . "key"}}` (a missing key gives Go's
/// `<no value>`). Anything else is taken literally, as NSM does with a
/// template that does not parse.
pub fn process_labels(value: &str, vars: &Labels) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else {
            return value.to_string();
        };
        let inner = rest[open + 2..open + close].trim();
        let key = if let Some(k) = inner.strip_prefix('.') {
            if k.is_empty() || k.contains(char::is_whitespace) {
                return value.to_string();
            }
            k.to_string()
        } else if let Some(args) = inner.strip_prefix("index") {
            let args = args.trim();
            let Some(k) = args
                .strip_prefix('.')
                .map(str::trim)
                .and_then(|k| k.strip_prefix('"'))
                .and_then(|k| k.strip_suffix('"'))
            else {
                return value.to_string();
            };
            k.to_string()
        } else {
            return value.to_string();
        };
        out.push_str(&rest[..open]);
        match vars.get(&key) {
            Some(v) => out.push_str(v),
            None => out.push_str("<no value>"),
        }
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    out
}

/// NSM's `IsSubset(a, b, values)`: every label of `b` (its value filled
/// from `values` when it is a template) is in `a`. As in NSM, a selector
/// with more labels than `a` never matches, and a missing key reads as
/// the empty value.
pub fn is_subset(a: &Labels, b: &Labels, values: &Labels) -> bool {
    if a.len() < b.len() {
        return false;
    }
    b.iter().all(|(k, v)| {
        let have = a.get(k).map(String::as_str).unwrap_or("");
        have == v || have == process_labels(v, values)
    })
}

/// An endpoint's labels for a service (empty when it has none).
fn service_labels<'a>(e: &'a NetworkServiceEndpoint, service: &str) -> Option<&'a Labels> {
    e.spec
        .network_service_labels
        .get(service)
        .map(|l| &l.labels)
}

/// NSM's `MatchEndpoint`: the candidates among `endpoints` (those that
/// offer the service) for a client with `client` labels.
///
/// * No matches: every endpoint.
/// * Otherwise the first match whose source selector the client's labels
///   hold: the endpoints its routes' destination selectors select, route
///   by route (an endpoint selected by two routes appears twice, as in
///   NSM). If it selects none and `fallthrough` is set, the next match is
///   tried; if it selects none, has metadata and no routes, every endpoint.
/// * No match applies: none.
pub fn match_endpoints<'a>(
    client: &Labels,
    service: &str,
    spec: &NetworkServiceSpec,
    endpoints: &[&'a NetworkServiceEndpoint],
) -> Vec<&'a NetworkServiceEndpoint> {
    match_endpoints_weighted(client, service, spec, endpoints)
        .into_iter()
        .map(|(e, _)| e)
        .collect()
}

/// [`match_endpoints`] with the weight of the route that selected each
/// candidate ([`route_weight`]; 1 where no route did: no matches, or
/// metadata only).
pub fn match_endpoints_weighted<'a>(
    client: &Labels,
    service: &str,
    spec: &NetworkServiceSpec,
    endpoints: &[&'a NetworkServiceEndpoint],
) -> Vec<(&'a NetworkServiceEndpoint, u32)> {
    let every = || endpoints.iter().map(|e| (*e, 1)).collect();
    if spec.matches.is_empty() {
        return every();
    }
    let empty = Labels::new();
    for m in &spec.matches {
        if !is_subset(client, &m.source_selector, client) {
            continue;
        }
        let mut candidates = Vec::new();
        for route in &m.routes {
            for e in endpoints {
                let labels = service_labels(e, service).unwrap_or(&empty);
                if is_subset(labels, &route.destination_selector, client) {
                    candidates.push((*e, route_weight(route.weight)));
                }
            }
        }
        if m.fallthrough && candidates.is_empty() {
            continue;
        }
        if has_metadata_only(m) && candidates.is_empty() {
            return every();
        }
        return candidates;
    }
    Vec::new()
}

/// A route's weight as Sluice uses it. NSM's API carries `weight`
/// (`uint32`, so 0 when unset) and its SDK never reads it; here an absent
/// weight is 1 (equal shares, what NSM does) and an explicit 0 gives the
/// route's endpoints no clients (as Gateway API and Kuma route weights do).
pub fn route_weight(w: Option<u32>) -> u32 {
    w.unwrap_or(1)
}

/// The most slots a hop's candidate table has (see [`slot_counts`]).
pub const MAX_SLOTS: u64 = 64;

/// How many slots of a hop's table each candidate fills, from the
/// candidates' weights: the weights divided by their greatest common
/// divisor, scaled down when they add up to more than [`MAX_SLOTS`] (a
/// candidate with a positive weight keeps at least one slot). Weight 0:
/// no slot.
pub fn slot_counts(weights: &[u32]) -> Vec<u64> {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let g = weights
        .iter()
        .filter(|w| **w > 0)
        .fold(0u64, |g, w| gcd(g, *w as u64));
    if g == 0 {
        return vec![0; weights.len()];
    }
    let reduced: Vec<u64> = weights.iter().map(|w| *w as u64 / g).collect();
    let total: u64 = reduced.iter().sum();
    if total <= MAX_SLOTS {
        return reduced;
    }
    reduced
        .iter()
        .map(|w| {
            if *w == 0 {
                0
            } else {
                (w * MAX_SLOTS / total).max(1)
            }
        })
        .collect()
}

fn has_metadata_only(m: &Match) -> bool {
    m.metadata.is_some() && m.routes.is_empty()
}

/// The hops a client's traffic takes through a service: candidates per
/// hop, deduplicated, in the order matching gave them. See the module
/// docs for where the walk stops.
pub fn walk<'a>(
    client: &Labels,
    service: &str,
    spec: &NetworkServiceSpec,
    endpoints: &[&'a NetworkServiceEndpoint],
) -> Vec<Vec<&'a NetworkServiceEndpoint>> {
    walk_weighted(client, service, spec, endpoints)
        .into_iter()
        .map(|h| h.into_iter().map(|(e, _)| e).collect())
        .collect()
}

/// [`walk`] with each candidate's weight: the weights of the routes that
/// selected it, added up (NSM lists an endpoint that two routes select
/// twice).
pub fn walk_weighted<'a>(
    client: &Labels,
    service: &str,
    spec: &NetworkServiceSpec,
    endpoints: &[&'a NetworkServiceEndpoint],
) -> Vec<Vec<(&'a NetworkServiceEndpoint, u32)>> {
    let mut hops: Vec<Vec<(&NetworkServiceEndpoint, u32)>> = Vec::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut labels = client.clone();
    let empty = Labels::new();
    let name = |e: &NetworkServiceEndpoint| e.metadata.name.clone().unwrap_or_default();
    while hops.len() < MAX_HOPS {
        let mut cands: Vec<(&NetworkServiceEndpoint, u32)> = Vec::new();
        for (e, w) in match_endpoints_weighted(&labels, service, spec, endpoints) {
            match cands.iter_mut().find(|(c, _)| name(c) == name(e)) {
                Some((_, cw)) => *cw = cw.saturating_add(w),
                None => cands.push((e, w)),
            }
        }
        if cands.is_empty()
            || cands
                .iter()
                .any(|(e, _)| seen.contains(e.metadata.name.as_deref().unwrap_or_default()))
        {
            break;
        }
        seen.extend(
            cands
                .iter()
                .map(|(e, _)| e.metadata.name.as_deref().unwrap_or_default()),
        );
        labels = service_labels(cands[0].0, service)
            .unwrap_or(&empty)
            .clone();
        hops.push(cands);
    }
    hops
}

// ---- Compiling ----

fn err(
    object: impl std::fmt::Display,
    field: impl Into<String>,
    m: impl Into<String>,
) -> CompileError {
    CompileError {
        object: object.to_string(),
        field: field.into(),
        message: m.into(),
    }
}

fn family_of(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        4
    } else {
        6
    }
}

fn addr_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn prefix(n: &IpNet) -> Prefix {
    Prefix {
        family: family_of(n.addr()),
        addr: addr_bits(n.addr()),
        len: n.prefix_len(),
    }
}

fn ranges(ports: &[PortSpec]) -> Vec<PortRange> {
    if ports.is_empty() {
        return vec![PortRange::ANY];
    }
    ports
        .iter()
        .map(|p| PortRange {
            lo: p.port,
            hi: p.end_port.unwrap_or(p.port),
        })
        .collect()
}

fn prefixes(nets: &[IpNet]) -> Vec<Prefix> {
    if nets.is_empty() {
        vec![Prefix::ANY]
    } else {
        nets.iter().map(prefix).collect()
    }
}

/// The cross product of sources, destinations and ports, skipping pairs
/// of different families.
fn tuples(
    src: &[Prefix],
    dst: &[Prefix],
    proto: u8,
    sport: &[PortRange],
    dport: &[PortRange],
) -> Vec<TupleMatch> {
    let mut out = Vec::new();
    for s in src {
        for d in dst {
            if s.family != 0 && d.family != 0 && s.family != d.family {
                continue;
            }
            for sp in sport {
                for dp in dport {
                    out.push(TupleMatch {
                        src: *s,
                        dst: *d,
                        proto,
                        sport: *sp,
                        dport: *dp,
                    });
                }
            }
        }
    }
    out
}

/// The chain compiler's memory between generations: the link flags and
/// the policers (whose buckets survive a recompile when their limits stay).
#[derive(Clone, Default)]
pub struct ChainCompiler {
    table: ChainTable,
    policers: HashMap<String, Arc<Limiter>>,
}

/// One client group's chain while compiling.
struct Draft {
    name: String,
    fail: FailMode,
    /// Endpoint names and weights per hop (empty: the hop is down).
    hops: Vec<Vec<(String, u32)>>,
    forward: Vec<(Option<u16>, Option<PortId>, TupleMatch)>,
    /// Per steering rule, what its replies look like: sources (the rule's
    /// destinations and ports), destinations (its sources), protocol.
    reverse: Vec<ReverseRule>,
    /// An ETHERNET chain: the object it comes from, its exit port, its
    /// entry port (the steering's interface) and its forward classifiers.
    l2: Option<L2Draft>,
}

struct L2Draft {
    /// "Chain NAME" or "NetworkService NAME", for errors.
    object: String,
    /// The field that lists the hops ("spec.endpoints" for a Chain).
    hops_field: Option<&'static str>,
    entry: Option<PortId>,
    exit: PortId,
    forward: Vec<L2Classifier>,
}

type ReverseRule = (Vec<(Prefix, PortRange)>, Vec<Prefix>, u8);

impl ChainCompiler {
    pub fn table(&self) -> &ChainTable {
        &self.table
    }

    /// Compiles the chains of `state` against the routing tables `base`
    /// (its ports and networks); `self` is left unchanged.
    pub fn compile(
        &self,
        state: &DesiredState,
        base: &Tables,
    ) -> Result<ChainCompiler, CompileError> {
        let mut endpoints: BTreeMap<&str, &NetworkServiceEndpoint> = BTreeMap::new();
        for so in state
            .list(Kind::NetworkServiceEndpoint, None, None)
            .unwrap_or_default()
        {
            if let Object::NetworkServiceEndpoint(e) = &so.object {
                endpoints.insert(so.object.name(), e);
            }
        }
        check_mirror_ports(&endpoints)?;
        let mut drafts: Vec<Draft> = Vec::new();
        // Chains, by name.
        for so in state.list(Kind::Chain, None, None).unwrap_or_default() {
            let Object::Chain(c) = &so.object else {
                continue;
            };
            let name = so.object.name();
            let object = format!("Chain {name}");
            let hops = c
                .spec
                .endpoints
                .iter()
                .map(|e| vec![(e.clone(), 1)])
                .collect();
            let mut d = self.draft(format!("chain/{name}"), c.spec.failure_mode, hops);
            if c.spec.payload == Payload::Ethernet {
                d.l2 = Some(l2_draft(
                    &object,
                    Some("spec.endpoints"),
                    c.spec.exit.as_deref(),
                    base,
                )?);
            }
            for (i, st) in c.spec.steering.iter().enumerate() {
                steer(&mut d, st, &[], base, &object, i)?;
            }
            drafts.push(d);
        }
        // NetworkServices, by name: one chain per distinct hop list.
        let pods = pods(state);
        for so in state
            .list(Kind::NetworkService, None, None)
            .unwrap_or_default()
        {
            let Object::NetworkService(ns) = &so.object else {
                continue;
            };
            let name = so.object.name();
            let object = format!("NetworkService {name}");
            let offering: Vec<&NetworkServiceEndpoint> = endpoints
                .values()
                .copied()
                .filter(|e| e.spec.network_service_names.iter().any(|n| n == name))
                .collect();
            let mut by_hops: BTreeMap<Vec<Vec<(String, u32)>>, usize> = BTreeMap::new();
            let mut mine: Vec<Draft> = Vec::new();
            for (i, st) in ns.spec.steering.iter().enumerate() {
                // (client labels, its source addresses)
                let clients: Vec<(Labels, Vec<Prefix>)> = match &st.pod_selector {
                    None => vec![(st.labels.clone(), prefixes(&st.source))],
                    Some(sel) => {
                        let field = format!("spec.steering[{i}]");
                        let psel = Selector::from_label_selector(sel).map_err(|e| {
                            err(
                                &object,
                                format!("{field}.podSelector{}", e.field),
                                e.message,
                            )
                        })?;
                        let nsel = st
                            .namespace_selector
                            .as_ref()
                            .map(Selector::from_label_selector)
                            .transpose()
                            .map_err(|e| {
                                err(&object, format!("{field}.namespaceSelector"), e.message)
                            })?;
                        pods.iter()
                            .filter(|p| psel.matches(&p.labels))
                            .filter(|p| {
                                nsel.as_ref().is_none_or(|s| s.matches(&p.namespace_labels))
                            })
                            .map(|p| {
                                (
                                    p.labels.clone(),
                                    p.ips
                                        .iter()
                                        .map(|ip| Prefix::host(family_of(*ip), addr_bits(*ip)))
                                        .collect(),
                                )
                            })
                            .collect()
                    }
                };
                for (labels, sources) in clients {
                    let hops: Vec<Vec<(String, u32)>> =
                        walk_weighted(&labels, name, &ns.spec, &offering)
                            .into_iter()
                            .map(|h| {
                                h.iter()
                                    .map(|(e, w)| (e.metadata.name.clone().unwrap_or_default(), *w))
                                    .collect()
                            })
                            .collect();
                    let hops = if hops.is_empty() {
                        vec![Vec::new()]
                    } else {
                        hops
                    };
                    let k = *by_hops.entry(hops.clone()).or_insert_with(|| {
                        let n = mine.len();
                        let cname = if n == 0 {
                            format!("service/{name}")
                        } else {
                            format!("service/{name}/{}", n + 1)
                        };
                        mine.push(self.draft(cname, ns.spec.failure_mode, hops));
                        n
                    });
                    if ns.spec.payload == Payload::Ethernet && mine[k].l2.is_none() {
                        mine[k].l2 = Some(l2_draft(&object, None, ns.spec.exit.as_deref(), base)?);
                    }
                    steer(&mut mine[k], st, &sources, base, &object, i)?;
                }
            }
            drafts.extend(mine);
        }
        self.build(drafts, &endpoints, base)
    }

    fn draft(&self, name: String, mode: FailureMode, hops: Vec<Vec<(String, u32)>>) -> Draft {
        Draft {
            name,
            fail: match mode {
                FailureMode::FailClosed => FailMode::Closed,
                FailureMode::Skip => FailMode::Skip,
            },
            hops,
            forward: Vec::new(),
            reverse: Vec::new(),
            l2: None,
        }
    }

    fn build(
        &self,
        drafts: Vec<Draft>,
        endpoints: &BTreeMap<&str, &NetworkServiceEndpoint>,
        base: &Tables,
    ) -> Result<ChainCompiler, CompileError> {
        let mut parts = ChainParts::default();
        let mut reverse = Vec::new();
        let mut l2_reverse = Vec::new();
        let mut policers = HashMap::new();
        // Which chain hop each external endpoint is in.
        let mut placed: HashMap<&str, String> = HashMap::new();
        for (cid, d) in drafts.iter().enumerate() {
            let cid = cid as u16;
            let first = parts.hops.len() as u32;
            let mut backends: Vec<(Prefix, PortRange)> = Vec::new();
            let mut outsides: Vec<Prefix> = Vec::new();
            for (position, names) in d.hops.iter().enumerate() {
                let mut candidates = Vec::new();
                let slots = slot_counts(&names.iter().map(|(_, w)| *w).collect::<Vec<_>>());
                for ((n, _), slots) in names.iter().zip(slots) {
                    let object = format!("NetworkServiceEndpoint {n}");
                    let e = endpoints.get(n.as_str()).ok_or_else(|| {
                        err(
                            format!("chain {}", d.name),
                            "hops",
                            format!("no NetworkServiceEndpoint named {n:?}"),
                        )
                    })?;
                    let f = self.function(e, &object, base, &mut policers)?;
                    if let Some(l2) = &d.l2 {
                        refuse_in_ethernet_chain(l2, &f, n, position)?;
                    }
                    if let Function::External(_) = f {
                        if let Some(other) = placed.insert(n.as_str(), d.name.clone()) {
                            return Err(err(
                                &object,
                                "spec.interfaces",
                                format!(
                                    "an external endpoint's interfaces identify one hop of one chain; this one would be in {other} and in {}",
                                    d.name
                                ),
                            ));
                        }
                    }
                    if let Function::LoadBalancer(lb) = &f {
                        for b in lb.backends.iter() {
                            let port = if b.port != 0 { b.port } else { lb.vport };
                            let r = if port == 0 {
                                PortRange::ANY
                            } else {
                                PortRange::one(port)
                            };
                            backends.push((Prefix::host(lb.family, b.addr), r));
                        }
                    }
                    if let Function::Nat(nat) = &f {
                        outsides.push(nat.outside);
                    }
                    // Not ready: matched, but not used. Weight 0: no slot.
                    if e.spec.ready {
                        for _ in 0..slots {
                            candidates.push(f.clone());
                        }
                    }
                }
                parts.hops.push(Hop {
                    name: if names.is_empty() {
                        "(no endpoint)".to_string()
                    } else {
                        names
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    },
                    candidates: candidates.into(),
                });
            }
            parts.chains.push(Chain {
                name: d.name.clone(),
                fail: d.fail,
                first,
                len: d.hops.len() as u16,
            });
            for (network, port, t) in &d.forward {
                parts.classifiers.push(Classifier {
                    chain: cid,
                    direction: Direction::Forward,
                    network: *network,
                    port: *port,
                    tuple: *t,
                });
            }
            // Replies: from the destinations (or the backends), to the
            // sources (or the NAT's outside).
            let mut seen = BTreeSet::new();
            for (src, dst, proto) in &d.reverse {
                let mut rsrc = src.clone();
                rsrc.extend(backends.iter().copied());
                let mut rdst = dst.clone();
                rdst.extend(outsides.iter().copied());
                if rsrc.iter().all(|(p, _)| p.family == 0) && rdst.iter().all(|p| p.family == 0) {
                    continue;
                }
                for (s, sp) in &rsrc {
                    for dd in &rdst {
                        if s.family != 0 && dd.family != 0 && s.family != dd.family {
                            continue;
                        }
                        let t = TupleMatch {
                            src: *s,
                            dst: *dd,
                            proto: *proto,
                            sport: *sp,
                            dport: PortRange::ANY,
                        };
                        if seen.insert(format!("{t:?}")) {
                            reverse.push(Classifier {
                                chain: cid,
                                direction: Direction::Reverse,
                                network: None,
                                port: None,
                                tuple: t,
                            });
                        }
                    }
                }
            }
            if let Some(l2) = &d.l2 {
                add_l2_chain(&mut parts, &mut l2_reverse, l2, cid)?;
            }
            // Forward classifiers of all chains before any reverse one: a
            // request always matches as a request.
        }
        parts.classifiers.extend(reverse);
        parts.l2_classifiers.extend(l2_reverse);
        let table = ChainTable::build(parts, self.table.links().clone())
            .map_err(|e| err("chains", "spec", e.0))?;
        Ok(ChainCompiler { table, policers })
    }

    fn function(
        &self,
        e: &NetworkServiceEndpoint,
        object: &str,
        base: &Tables,
        policers: &mut HashMap<String, Arc<Limiter>>,
    ) -> Result<Function, CompileError> {
        if let Some(x) = &e.spec.interfaces {
            let port = |name: &str, field: &str| port_named(base, name, object, field);
            let ingress = port(&x.ingress, "spec.interfaces.ingress")?;
            let egress = port(&x.egress, "spec.interfaces.egress")?;
            let mac = |p: PortId| base.ports[p as usize].mac;
            return Ok(Function::External(External {
                ingress,
                egress,
                ingress_dst_mac: x.mac.map(|m| m.0).unwrap_or(mac(egress)),
                egress_dst_mac: x.mac.map(|m| m.0).unwrap_or(mac(ingress)),
                ingress_src_mac: mac(ingress),
                egress_src_mac: mac(egress),
            }));
        }
        let f: &BuiltinFunction = e
            .spec
            .function
            .as_ref()
            .ok_or_else(|| err(object, "spec", "neither interfaces nor function"))?;
        if let Some(fw) = &f.firewall {
            let mut rules = Vec::new();
            for (i, r) in fw.rules.iter().enumerate() {
                let proto = match &r.protocol {
                    Some(p) => chain_protocol(p).map_err(|m| {
                        err(
                            object,
                            format!("spec.function.firewall.rules[{i}].protocol"),
                            m,
                        )
                    })?,
                    None => 0,
                };
                for t in tuples(
                    &prefixes(&r.source),
                    &prefixes(&r.destination),
                    proto,
                    &[PortRange::ANY],
                    &ranges(&r.ports),
                ) {
                    rules.push(FirewallRule {
                        tuple: t,
                        allow: r.action == FirewallAction::Allow,
                    });
                }
            }
            return Ok(Function::Firewall(Firewall {
                rules: rules.into(),
                default_allow: fw.default_action == FirewallAction::Allow,
                allow_non_ip: fw.non_ip != Some(FirewallAction::Deny),
            }));
        }
        if f.counter.is_some() {
            return Ok(Function::Counter);
        }
        if let Some(lb) = &f.load_balancer {
            let proto = match &lb.protocol {
                Some(p) => chain_protocol(p)
                    .map_err(|m| err(object, "spec.function.loadBalancer.protocol", m))?,
                None => 0,
            };
            let backends = lb
                .backends
                .iter()
                .map(|b| LbBackend {
                    addr: addr_bits(b.ip),
                    port: b.port.unwrap_or(0),
                })
                .collect();
            return LoadBalancer::new(
                family_of(lb.vip),
                addr_bits(lb.vip),
                lb.port.unwrap_or(0),
                proto,
                backends,
            )
            .map(Function::LoadBalancer)
            .map_err(|e| err(object, "spec.function.loadBalancer.backends", e.0));
        }
        if let Some(n) = &f.nat {
            return Ok(Function::Nat(Netmap {
                inside: prefix(&n.inside),
                outside: prefix(&n.outside),
            }));
        }
        if let Some(m) = &f.mirror {
            return mirror(m, object, base);
        }
        if let Some(p) = &f.police {
            let name = e.metadata.name.clone().unwrap_or_default();
            let fresh = Limiter::new(p.rate, p.burst, Mode::Police);
            let l = match self.policers.get(&name) {
                Some(old) if old.same_limits(&fresh) => old.clone(),
                _ => Arc::new(fresh),
            };
            policers.insert(name, l.clone());
            return Ok(Function::Police(l));
        }
        Err(err(object, "spec.function", "no function set"))
    }
}

/// A mirror hop: its port must exist and must not be one of an external
/// endpoint's interfaces (checked by [`check_mirror_ports`]).
fn mirror(m: &MirrorSpec, object: &str, base: &Tables) -> Result<Function, CompileError> {
    let field = "spec.function.mirror.interface";
    let port = base
        .ports
        .iter()
        .position(|p| p.name == m.interface)
        .ok_or_else(|| {
            err(
                object,
                field,
                format!("this node has no port named {:?}", m.interface),
            )
        })?;
    Ok(Function::Mirror(Mirror {
        port: port as PortId,
        forward: m.direction != MirrorDirection::Reverse,
        reverse: m.direction != MirrorDirection::Forward,
    }))
}

/// Refuses a mirror whose interface joins an external endpoint: a copy
/// sent there would come back as if the function had forwarded it.
fn check_mirror_ports(
    endpoints: &BTreeMap<&str, &NetworkServiceEndpoint>,
) -> Result<(), CompileError> {
    for (name, e) in endpoints {
        let Some(m) = e.spec.function.as_ref().and_then(|f| f.mirror.as_ref()) else {
            continue;
        };
        for (other, x) in endpoints {
            let Some(x) = &x.spec.interfaces else {
                continue;
            };
            if x.ingress == m.interface || x.egress == m.interface {
                return Err(err(
                    format!("NetworkServiceEndpoint {name}"),
                    "spec.function.mirror.interface",
                    format!(
                        "{:?} is an interface of the external endpoint {other:?}; a mirror needs a port of its own",
                        m.interface
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Adds a steering rule's classifiers to a draft. `sources` are the
/// client's addresses (pods); empty: the rule's own `source`.
fn steer(
    d: &mut Draft,
    st: &Steering,
    sources: &[Prefix],
    base: &Tables,
    object: &str,
    i: usize,
) -> Result<(), CompileError> {
    let field = format!("spec.steering[{i}]");
    let network = match &st.network {
        None => None,
        Some(n) => Some(
            base.networks
                .iter()
                .position(|x| &x.name == n)
                .map(|i| i as u16)
                .ok_or_else(|| {
                    err(
                        object,
                        format!("{field}.network"),
                        format!("no Network named {n:?}"),
                    )
                })?,
        ),
    };
    let port = match &st.interface {
        None => None,
        Some(n) => Some(port_named(base, n, object, &format!("{field}.interface"))?),
    };
    let proto = match &st.protocol {
        Some(p) => chain_protocol(p).map_err(|m| err(object, format!("{field}.protocol"), m))?,
        None => 0,
    };
    let src = if st.pod_selector.is_some() {
        // A pod selector that selects no pod steers nothing.
        if sources.is_empty() {
            return Ok(());
        }
        sources.to_vec()
    } else {
        prefixes(&st.source)
    };
    let dst = prefixes(&st.destination);
    let ports = ranges(&st.ports);
    if let Some(l2) = &mut d.l2 {
        return steer_l2(l2, st, port, &src, &dst, proto, &ports, object, &field);
    }
    for t in tuples(&src, &dst, proto, &[PortRange::ANY], &ports) {
        d.forward.push((network, port, t));
    }
    let rsrc = dst
        .iter()
        .flat_map(|p| ports.iter().map(move |r| (*p, *r)))
        .collect();
    d.reverse.push((rsrc, src, proto));
    Ok(())
}

// ---- Ethernet chains ----

/// A port by its Interface name.
fn port_named(
    base: &Tables,
    name: &str,
    object: &str,
    field: &str,
) -> Result<PortId, CompileError> {
    base.ports
        .iter()
        .position(|p| p.name == name)
        .map(|i| i as PortId)
        .ok_or_else(|| {
            err(
                object,
                field,
                format!("this node has no port named {name:?}"),
            )
        })
}

/// An ETHERNET chain's draft: its exit resolved; the entry comes with the
/// steering.
fn l2_draft(
    object: &str,
    hops_field: Option<&'static str>,
    exit: Option<&str>,
    base: &Tables,
) -> Result<L2Draft, CompileError> {
    let exit = exit.ok_or_else(|| err(object, "spec.exit", "required for payload ETHERNET"))?;
    Ok(L2Draft {
        object: object.to_string(),
        hops_field,
        entry: None,
        exit: port_named(base, exit, object, "spec.exit")?,
        forward: Vec::new(),
    })
}

/// The position of a hop in its chain's list of hops.
/// An ETHERNET chain carries frames unchanged: a function that rewrites
/// addresses has no place in it.
fn refuse_in_ethernet_chain(
    l2: &L2Draft,
    f: &Function,
    endpoint: &str,
    position: usize,
) -> Result<(), CompileError> {
    if !matches!(f, Function::LoadBalancer(_) | Function::Nat(_)) {
        return Ok(());
    }
    let field = match l2.hops_field {
        Some(h) => format!("{h}[{position}]"),
        None => "spec.payload".to_string(),
    };
    Err(err(
        &l2.object,
        field,
        format!(
            "NetworkServiceEndpoint {endpoint} is a {}, which rewrites addresses; an ETHERNET chain carries frames unchanged (firewall, counter, police, mirror or an external function)",
            f.kind()
        ),
    ))
}

/// A steering rule of an ETHERNET chain: classifiers on its entry port,
/// one per address and port combination when it names IP fields.
#[allow(clippy::too_many_arguments)]
fn steer_l2(
    l2: &mut L2Draft,
    st: &Steering,
    port: Option<PortId>,
    src: &[Prefix],
    dst: &[Prefix],
    proto: u8,
    ports: &[PortRange],
    object: &str,
    field: &str,
) -> Result<(), CompileError> {
    let entry = port.ok_or_else(|| {
        err(
            object,
            format!("{field}.interface"),
            "required for payload ETHERNET",
        )
    })?;
    if entry == l2.exit {
        return Err(err(
            object,
            format!("{field}.interface"),
            "must differ from spec.exit",
        ));
    }
    if l2.entry.is_some_and(|e| e != entry) {
        return Err(err(
            object,
            format!("{field}.interface"),
            "an ETHERNET chain has one entry interface",
        ));
    }
    l2.entry = Some(entry);
    let base = L2Classifier {
        chain: 0,
        direction: Direction::Forward,
        port: entry,
        vlan: st.vlan,
        ethertype: st.ether_type,
        src_mac: st.source_mac.map(|m| m.0),
        dst_mac: st.destination_mac.map(|m| m.0),
        ip: None,
    };
    let names_ip =
        proto != 0 || !st.ports.is_empty() || src.iter().chain(dst).any(|p| p.family != 0);
    if !names_ip {
        l2.forward.push(base);
        return Ok(());
    }
    for t in tuples(src, dst, proto, &[PortRange::ANY], ports) {
        l2.forward.push(L2Classifier {
            ip: Some(t),
            ..base
        });
    }
    Ok(())
}

/// Adds an ETHERNET chain's ends and classifiers (forward now, reverse
/// ones — on the exit, reflected — after every chain's forward ones).
fn add_l2_chain(
    parts: &mut ChainParts,
    reverse: &mut Vec<L2Classifier>,
    l2: &L2Draft,
    cid: u16,
) -> Result<(), CompileError> {
    // A service whose steering selects no client still has its ends
    // (and steers nothing).
    let Some(entry) = l2.entry else {
        return Ok(());
    };
    parts.l2.push(L2Chain {
        chain: cid,
        entry,
        exit: l2.exit,
    });
    for k in &l2.forward {
        let k = L2Classifier { chain: cid, ..*k };
        parts.l2_classifiers.push(k);
        reverse.push(k.reflected(l2.exit));
    }
    Ok(())
}

/// A pod as steering sees it.
struct PodInfo {
    labels: Labels,
    namespace_labels: Labels,
    ips: Vec<IpAddr>,
}

fn pods(state: &DesiredState) -> Vec<PodInfo> {
    let mut ns_labels: HashMap<&str, &Labels> = HashMap::new();
    for so in state.list(Kind::Namespace, None, None).unwrap_or_default() {
        ns_labels.insert(so.object.name(), so.object.labels());
    }
    let empty = Labels::new();
    let mut out = Vec::new();
    for so in state.list(Kind::Pod, None, None).unwrap_or_default() {
        let Object::Pod(p) = &so.object else { continue };
        let ns = so.object.namespace().unwrap_or("default");
        let mut ips: Vec<IpAddr> = Vec::new();
        if let Some(st) = &p.status {
            for a in st.pod_ips.iter().flatten() {
                if let Ok(ip) = a.ip.parse() {
                    ips.push(ip);
                }
            }
            if ips.is_empty() {
                if let Some(ip) = st.pod_ip.as_ref().and_then(|s| s.parse().ok()) {
                    ips.push(ip);
                }
            }
        }
        let mut nsl = (*ns_labels.get(ns).unwrap_or(&&empty)).clone();
        nsl.entry("kubernetes.io/metadata.name".into())
            .or_insert_with(|| ns.to_string());
        out.push(PodInfo {
            labels: so.object.labels().clone(),
            namespace_labels: nsl,
            ips,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    //! NSM's matching test cases, transcribed from the SDK
    //! (pkg/networkservice/common/discover/server_test.go and
    //! pkg/tools/matchutils), then the compiler.
    use super::*;
    use crate::compile::{compile, NodeContext, PortDecl};
    use crate::model::{parse_manifests, Change};
    use sluice_dataplane::tables::chain::Tuple;

    const NS: &str = "secure-intranet-connectivity";

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn nse(name: &str, app: &str) -> NetworkServiceEndpoint {
        let yaml = format!(
            "apiVersion: sluice.dev/v1\nkind: NetworkServiceEndpoint\nmetadata: {{name: {name}}}\nspec: {{networkServiceNames: [{NS}], networkServiceLabels: {{{NS}: {{labels: {{app: {app}}}}}}}, function: {{counter: {{}}}}}}\n"
        );
        match parse_manifests(&yaml).unwrap().remove(0) {
            Object::NetworkServiceEndpoint(e) => *e,
            _ => unreachable!(),
        }
    }

    /// NSM's three endpoints.
    fn endpoints() -> Vec<NetworkServiceEndpoint> {
        vec![
            nse("nse-firewall", "firewall"),
            nse("nse-middle", "some-middle-app"),
            nse("nse-vpn", "vpn-gateway"),
        ]
    }

    fn m(source: &[(&str, &str)], dest: &[(&str, &str)]) -> Match {
        Match {
            source_selector: labels(source),
            routes: vec![crate::model::sluice::Destination {
                destination_selector: labels(dest),
                weight: None,
            }],
            ..Default::default()
        }
    }

    fn from_anywhere() -> Match {
        m(&[], &[("app", "firewall")])
    }
    fn from_firewall() -> Match {
        m(&[("app", "firewall")], &[("app", "some-middle-app")])
    }
    fn from_some_middle_app() -> Match {
        m(&[("app", "some-middle-app")], &[("app", "vpn-gateway")])
    }

    fn spec(matches: Vec<Match>) -> NetworkServiceSpec {
        NetworkServiceSpec {
            matches,
            ..Default::default()
        }
    }

    fn names(v: &[&NetworkServiceEndpoint]) -> Vec<String> {
        v.iter()
            .map(|e| e.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    fn select(client: &[(&str, &str)], matches: Vec<Match>) -> Vec<String> {
        let all = endpoints();
        let refs: Vec<&NetworkServiceEndpoint> = all.iter().collect();
        names(&match_endpoints(&labels(client), NS, &spec(matches), &refs))
    }

    #[test]
    fn nsm_match_empty_source_selector() {
        let got = select(
            &[],
            vec![from_firewall(), from_some_middle_app(), from_anywhere()],
        );
        assert_eq!(got, ["nse-firewall"]);
    }

    #[test]
    fn nsm_match_non_empty_source_selector() {
        let got = select(
            &[("app", "firewall")],
            vec![from_firewall(), from_some_middle_app(), from_anywhere()],
        );
        assert_eq!(got, ["nse-middle"]);
    }

    #[test]
    fn nsm_match_empty_source_selector_going_first() {
        let got = select(
            &[("app", "firewall")],
            vec![from_anywhere(), from_firewall(), from_some_middle_app()],
        );
        assert_eq!(got, ["nse-firewall"]);
    }

    #[test]
    fn nsm_match_nothing_selects_none() {
        // The SDK's current MatchEndpoint returns no endpoint when no
        // match applies (its first discover test expected all three,
        // before matchutils).
        let got = select(
            &[("app", "unknown-app")],
            vec![from_firewall(), from_some_middle_app()],
        );
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn nsm_no_matches_select_every_endpoint() {
        let got = select(&[("app", "anything")], vec![]);
        assert_eq!(got, ["nse-firewall", "nse-middle", "nse-vpn"]);
    }

    #[test]
    fn nsm_fallthrough_tries_the_next_match_only_when_nothing_was_selected() {
        let to_nowhere = |fallthrough| Match {
            fallthrough,
            ..m(&[], &[("app", "no-such-app")])
        };
        assert_eq!(
            select(&[], vec![to_nowhere(true), from_anywhere()]),
            ["nse-firewall"]
        );
        assert!(select(&[], vec![to_nowhere(false), from_anywhere()]).is_empty());
        // A match that selects something stops the search, fallthrough or not.
        let first = Match {
            fallthrough: true,
            ..m(&[], &[("app", "vpn-gateway")])
        };
        assert_eq!(select(&[], vec![first, from_anywhere()]), ["nse-vpn"]);
    }

    #[test]
    fn nsm_metadata_without_routes_selects_every_endpoint() {
        let md = Match {
            metadata: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(select(&[], vec![md]).len(), 3);
        // Without metadata the same match selects none.
        assert!(select(&[], vec![Match::default()]).is_empty());
    }

    #[test]
    fn nsm_every_route_adds_its_endpoints_in_route_order() {
        let two = Match {
            routes: vec![
                crate::model::sluice::Destination {
                    destination_selector: labels(&[("app", "vpn-gateway")]),
                    weight: None,
                },
                crate::model::sluice::Destination {
                    destination_selector: labels(&[("app", "firewall")]),
                    weight: None,
                },
            ],
            ..Default::default()
        };
        assert_eq!(select(&[], vec![two]), ["nse-vpn", "nse-firewall"]);
    }

    #[test]
    fn nsm_is_subset_and_templates() {
        let a = labels(&[("app", "fw"), ("nodeName", "node-1")]);
        assert!(is_subset(&a, &labels(&[]), &a));
        assert!(is_subset(&a, &labels(&[("app", "fw")]), &a));
        assert!(!is_subset(&a, &labels(&[("app", "lb")]), &a));
        // More labels in the selector than in the set: never.
        assert!(!is_subset(
            &labels(&[("app", "fw")]),
            &labels(&[("app", "fw"), ("x", "")]),
            &a
        ));
        // A missing key reads as "".
        assert!(is_subset(&a, &labels(&[("zone", "")]), &a));
        // NSM's node-local selection: {{.nodeName}} from the client's labels.
        let client = labels(&[("nodeName", "node-1")]);
        let sel = labels(&[("nodeName", "{{.nodeName}}")]);
        assert!(is_subset(&a, &sel, &client));
        assert!(!is_subset(&a, &sel, &labels(&[("nodeName", "node-2")])));
        let idx = labels(&[("nodeName", "{{index . \"nodeName\"}}")]);
        assert!(is_subset(&a, &idx, &client));
        assert_eq!(process_labels("{{.missing}}", &client), "<no value>");
        assert_eq!(process_labels("x-{{.nodeName}}-y", &client), "x-node-1-y");
        assert_eq!(process_labels("{{ broken", &client), "{{ broken");
    }

    #[test]
    fn nsm_passthrough_endpoints_make_a_chain() {
        let all = endpoints();
        let refs: Vec<&NetworkServiceEndpoint> = all.iter().collect();
        let s = spec(vec![
            from_firewall(),
            from_some_middle_app(),
            from_anywhere(),
        ]);
        let hops: Vec<Vec<String>> = walk(&labels(&[]), NS, &s, &refs)
            .iter()
            .map(|h| names(h))
            .collect();
        assert_eq!(hops, [["nse-firewall"], ["nse-middle"], ["nse-vpn"]]);
        // A client labelled like the firewall starts after it; the
        // walk stops at the first endpoint already in the chain.
        let hops: Vec<Vec<String>> = walk(&labels(&[("app", "firewall")]), NS, &s, &refs)
            .iter()
            .map(|h| names(h))
            .collect();
        assert_eq!(hops, [["nse-middle"], ["nse-vpn"], ["nse-firewall"]]);
    }

    // ---- The compiler ----

    fn ctx() -> NodeContext {
        NodeContext {
            ports: ["client", "server", "cnf-in", "cnf-out"]
                .iter()
                .map(|n| PortDecl {
                    name: n.to_string(),
                    backend: format!("mem:{n}"),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn state(yaml: &str) -> Result<DesiredState, String> {
        let mut s = DesiredState::new();
        let batch: Vec<Change> = parse_manifests(yaml)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(Change::Apply)
            .collect();
        s.apply(&batch).map_err(|e| e.to_string())?;
        Ok(s)
    }

    const INTERFACES: &str = r#"
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: cnf-in}
spec: {backend: "mem:cnf-in", mac: "02:00:00:00:00:03"}
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: cnf-out}
spec: {backend: "mem:cnf-out", mac: "02:00:00:00:00:04"}
---
apiVersion: sluice.dev/v1
kind: NetworkServiceEndpoint
metadata: {name: fw}
spec:
  networkServiceNames: [web]
  networkServiceLabels: {web: {labels: {app: firewall}}}
  function: {firewall: {rules: [{action: Allow, protocol: TCP, ports: [{port: 80}]}]}}
---
apiVersion: sluice.dev/v1
kind: NetworkServiceEndpoint
metadata: {name: cnf}
spec:
  networkServiceNames: [web]
  networkServiceLabels: {web: {labels: {app: cnf}}}
  interfaces: {ingress: cnf-in, egress: cnf-out}
---
apiVersion: sluice.dev/v1
kind: NetworkServiceEndpoint
metadata: {name: lb}
spec:
  networkServiceNames: [web]
  networkServiceLabels: {web: {labels: {app: lb}}}
  function:
    loadBalancer: {vip: 10.96.0.10, port: 80, protocol: TCP, backends: [{ip: 10.0.2.2, port: 8080}, {ip: 10.0.2.3, port: 8080}]}
"#;

    const SERVICE: &str = r#"
apiVersion: sluice.dev/v1
kind: NetworkService
metadata: {name: web}
spec:
  matches:
  - sourceSelector: {app: firewall}
    routes: [{destinationSelector: {app: cnf}}]
  - sourceSelector: {app: cnf}
    routes: [{destinationSelector: {app: lb}}]
  - sourceSelector: {app: lb}
  - routes: [{destinationSelector: {app: firewall}}]
  steering:
  - {source: [10.0.1.0/24], destination: [10.96.0.10/32], protocol: TCP, ports: [{port: 80}]}
"#;

    fn v4(s: &str) -> u128 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()) as u128
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
    fn the_tracer_shows_a_chain_hop_by_hop_and_counts_nothing() {
        use crate::trace::{trace, TraceRequest};
        let s = state(&format!("{INTERFACES}---{SERVICE}")).unwrap();
        let t = compile(&s, &ctx()).unwrap();
        let req = |in_port: &str, port: u16| TraceRequest {
            from: "10.0.1.5".parse().unwrap(),
            to: "10.96.0.10".parse().unwrap(),
            protocol: "tcp".into(),
            port,
            source_port: 40000,
            in_port: Some(in_port.into()),
        };
        let chain_step = |tr: &crate::trace::Trace| {
            tr.steps
                .iter()
                .find(|s| s.stage == "chain")
                .map(|s| s.detail.clone())
                .unwrap_or_default()
        };
        // The CNF's port has no link: the chain fails closed there.
        t.chains.links().set(2, false);
        let tr = trace(&t, &req("client", 80)).unwrap();
        assert_eq!(
            chain_step(&tr),
            "service/web forward: fw (firewall) passed; cnf (external) dropped (chain_hop_down)"
        );
        assert!(
            tr.verdict.starts_with("drop: chain_hop_down"),
            "{}",
            tr.verdict
        );
        // With link: out to the function.
        t.chains.links().set(2, true);
        let tr = trace(&t, &req("client", 80)).unwrap();
        assert_eq!(
            chain_step(&tr),
            "service/web forward: fw (firewall) passed; cnf (external) sent to the function on cnf-in"
        );
        assert_eq!(tr.verdict, "transmit on cnf-in");
        let stages: Vec<&str> = tr.steps.iter().map(|s| s.stage).collect();
        assert_eq!(stages, ["parse", "shape-egress", "service", "chain"]);
        // Back from it on cnf-out: the load balancer, then routing.
        let tr = trace(&t, &req("cnf-out", 80)).unwrap();
        assert_eq!(
            chain_step(&tr),
            "service/web forward: lb (loadBalancer) passed"
        );
        assert!(tr.steps.iter().any(|s| s.stage == "route"));
        // Traffic the steering does not name.
        let tr = trace(&t, &req("client", 443)).unwrap();
        assert_eq!(chain_step(&tr), "no chain steers this packet");
        // The tracer added nothing to the hops' counters.
        for h in 0..3 {
            let c = t.chains.hop_count(h);
            assert_eq!(
                (c.forward_packets, c.reverse_packets, c.dropped, c.skipped),
                (0, 0, 0, 0),
                "hop {h}"
            );
        }
    }

    #[test]
    fn a_service_compiles_to_a_three_hop_chain_with_reverse_classifiers() {
        let s = state(&format!("{INTERFACES}---{SERVICE}")).unwrap();
        let t = compile(&s, &ctx()).unwrap().chains;
        assert_eq!(t.chains().len(), 1);
        assert_eq!(t.chains()[0].name, "service/web");
        let hops: Vec<&str> = t.hops().iter().map(|h| h.name.as_str()).collect();
        assert_eq!(hops, ["fw", "cnf", "lb"]);
        // The CNF's ports: cnf-out (3) brings forward traffic back after
        // hop 1, cnf-in (2) reverse traffic.
        let p = t.port_hop(3).unwrap();
        assert_eq!((p.position, p.direction), (1, Direction::Forward));
        assert_eq!(t.port_hop(2).unwrap().direction, Direction::Reverse);
        assert_eq!(
            t.classify(0, 0, &tcp("10.0.1.5", 40000, "10.96.0.10", 80)),
            Some((0, Direction::Forward))
        );
        assert_eq!(
            t.classify(0, 0, &tcp("10.0.1.5", 40000, "10.96.0.10", 81)),
            None
        );
        assert_eq!(
            t.classify(0, 0, &tcp("10.0.9.5", 40000, "10.96.0.10", 80)),
            None
        );
        // Replies from the backends, and only from their port.
        assert_eq!(
            t.classify(0, 1, &tcp("10.0.2.3", 8080, "10.0.1.5", 40000)),
            Some((0, Direction::Reverse))
        );
        assert_eq!(
            t.classify(0, 1, &tcp("10.0.2.3", 22, "10.0.1.5", 40000)),
            None
        );
    }

    #[test]
    fn pods_are_clients_with_their_own_labels() {
        let svc = r#"
apiVersion: sluice.dev/v1
kind: NetworkService
metadata: {name: web}
spec:
  matches:
  - sourceSelector: {tier: gold}
    routes: [{destinationSelector: {app: firewall}}]
  - sourceSelector: {app: firewall}
    routes: [{destinationSelector: {app: lb}}]
  - sourceSelector: {app: lb}
  - routes: [{destinationSelector: {app: lb}}]
  steering:
  - {podSelector: {matchLabels: {role: client}}, destination: [10.96.0.10/32]}
---
apiVersion: v1
kind: Pod
metadata: {name: gold, namespace: default, labels: {role: client, tier: gold}}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.0.1.7, podIPs: [{ip: 10.0.1.7}]}
---
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: default, labels: {role: client}}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.0.1.8, podIPs: [{ip: 10.0.1.8}]}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: default, labels: {role: server}}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.0.1.9, podIPs: [{ip: 10.0.1.9}]}
"#;
        let s = state(&format!("{INTERFACES}---{svc}")).unwrap();
        let t = compile(&s, &ctx()).unwrap().chains;
        let chains: Vec<(String, Vec<String>)> = t
            .chains()
            .iter()
            .map(|c| {
                let hops = &t.hops()[c.first as usize..(c.first as usize + c.len as usize)];
                (
                    c.name.clone(),
                    hops.iter().map(|h| h.name.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(
            chains,
            [
                (
                    "service/web".to_string(),
                    vec!["fw".to_string(), "lb".to_string()]
                ),
                ("service/web/2".to_string(), vec!["lb".to_string()]),
            ]
        );
        let to_vip = |src| t.classify(0, 0, &tcp(src, 1000, "10.96.0.10", 80));
        assert_eq!(to_vip("10.0.1.7"), Some((0, Direction::Forward)));
        assert_eq!(to_vip("10.0.1.8"), Some((1, Direction::Forward)));
        assert_eq!(to_vip("10.0.1.9"), None);
    }

    #[test]
    fn an_external_endpoint_in_two_chains_is_refused_by_name() {
        let chain = r#"
apiVersion: sluice.dev/v1
kind: Chain
metadata: {name: other}
spec:
  endpoints: [cnf]
  steering: [{destination: [10.97.0.0/16]}]
"#;
        let s = state(&format!("{INTERFACES}---{SERVICE}---{chain}")).unwrap();
        let e = compile(&s, &ctx()).unwrap_err();
        assert_eq!(e.object, "NetworkServiceEndpoint cnf");
        assert_eq!(e.field, "spec.interfaces");
        assert!(
            e.message.contains("chain/other") && e.message.contains("service/web"),
            "{e}"
        );
    }

    #[test]
    fn endpoints_that_are_not_ready_leave_their_hop_down() {
        let s = state(&format!("{INTERFACES}---{SERVICE}")).unwrap();
        let mut s2 = s.clone();
        let cnf = parse_manifests(
            "apiVersion: sluice.dev/v1\nkind: NetworkServiceEndpoint\nmetadata: {name: cnf}\nspec: {networkServiceNames: [web], networkServiceLabels: {web: {labels: {app: cnf}}}, interfaces: {ingress: cnf-in, egress: cnf-out}, ready: false}\n",
        )
        .unwrap()
        .remove(0);
        s2.apply(&[Change::Apply(cnf)]).unwrap();
        let t = compile(&s2, &ctx()).unwrap().chains;
        let hops: Vec<(&str, usize)> = t
            .hops()
            .iter()
            .map(|h| (h.name.as_str(), h.candidates.len()))
            .collect();
        // Still three hops (the matching did not change); the CNF's is empty.
        assert_eq!(hops, [("fw", 1), ("cnf", 0), ("lb", 1)]);
    }

    #[test]
    fn incremental_compiles_follow_chain_changes() {
        use crate::compile::Compiler;
        let s = state(INTERFACES).unwrap();
        let (mut c, t) = Compiler::new(&s, ctx()).unwrap();
        assert!(t.chains.is_empty());
        let links = t.chains.links().clone();
        let mut s2 = s.clone();
        let svc = parse_manifests(SERVICE).unwrap().remove(0);
        let key = svc.key();
        s2.apply(&[Change::Apply(svc)]).unwrap();
        let p = c.prepare(&s2, std::slice::from_ref(&key)).unwrap();
        let t2 = c.apply(p);
        assert_eq!(t2.chains.chains().len(), 1);
        // The link flags are the same object in every generation.
        assert!(Arc::ptr_eq(t2.chains.links(), &links));
        s2.apply(&[Change::Delete(key.clone())]).unwrap();
        let p = c.prepare(&s2, &[key]).unwrap();
        assert!(c.apply(p).chains.is_empty());
    }

    // ---- Ethernet chains ----

    const COUNTER: &str = r#"
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: client}
spec: {backend: "mem:client", mac: "02:00:00:00:00:01"}
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: server}
spec: {backend: "mem:server", mac: "02:00:00:00:00:02"}
---
apiVersion: sluice.dev/v1
kind: NetworkServiceEndpoint
metadata: {name: count}
spec:
  networkServiceNames: [web]
  networkServiceLabels: {web: {labels: {app: count}}}
  function: {counter: {}}
"#;

    fn l2_chain(endpoints: &str, steering: &str, exit: &str) -> String {
        format!(
            "apiVersion: sluice.dev/v1\nkind: Chain\nmetadata: {{name: wire}}\nspec:\n  payload: ETHERNET\n  endpoints: {endpoints}\n  steering: {steering}\n{exit}"
        )
    }

    #[test]
    fn an_ethernet_chain_compiles_to_a_bump_in_the_wire() {
        use sluice_dataplane::tables::chain::{L2Frame, PortRange};
        let chain = l2_chain(
            "[fw, cnf, count]",
            "[{interface: client, vlan: 100}, {interface: client, source: [10.0.7.0/24], protocol: TCP, ports: [{port: 80}]}, {interface: client, etherType: 0x0806}]",
            "  exit: server\n",
        );
        let s = state(&format!("{INTERFACES}\n---\n{COUNTER}\n---\n{chain}")).unwrap();
        let t = compile(&s, &ctx()).unwrap().chains;
        assert_eq!(t.chains()[0].name, "chain/wire");
        assert_eq!(t.payload(0), "ETHERNET");
        assert_eq!(t.l2_ends(0), Some((0, 1)));
        assert!(t.classifiers().is_empty(), "no IP classifier");
        let k = t.l2_classifiers();
        assert_eq!(k.len(), 6, "{k:?}");
        // Forward ones on the entry, in rule order, then the reverse ones on
        // the exit, reflected.
        assert!(k[..3]
            .iter()
            .all(|k| k.port == 0 && k.direction == Direction::Forward));
        assert!(k[3..]
            .iter()
            .all(|k| k.port == 1 && k.direction == Direction::Reverse));
        assert_eq!((k[0].vlan, k[0].ip), (Some(100), None));
        assert_eq!(k[2].ethertype, Some(0x0806));
        let ip = k[1].ip.unwrap();
        assert_eq!((ip.proto, ip.dport), (6, PortRange::one(80)));
        assert_eq!(k[4].ip.unwrap().sport, PortRange::one(80));
        let reply = L2Frame {
            ethertype: 0x0800,
            tuple: tcp("10.0.7.9", 80, "10.0.7.2", 40000),
            ..Default::default()
        };
        assert!(k[4].matches(1, &reply));
        assert!(!k[1].matches(0, &reply));
        // The CNF's ports are the chain's hop ports, as in an IP chain.
        assert_eq!(t.port_hop(3).unwrap().position, 1);
        // The firewall lets what is not IP through unless told otherwise.
        let Function::Firewall(fw) = &t.hops()[0].candidates[0] else {
            panic!("a firewall")
        };
        assert!(fw.allow_non_ip);
    }

    #[test]
    fn the_tracer_shows_an_ethernet_chain_before_parse() {
        use crate::trace::{trace, TraceRequest};
        let chain = l2_chain(
            "[count]",
            "[{interface: client, protocol: TCP, ports: [{port: 80}]}]",
            "  exit: server\n",
        );
        let s = state(&format!("{INTERFACES}\n---\n{COUNTER}\n---\n{chain}")).unwrap();
        let t = compile(&s, &ctx()).unwrap();
        let req = |port: u16| TraceRequest {
            from: "10.0.7.1".parse().unwrap(),
            to: "10.0.7.2".parse().unwrap(),
            protocol: "tcp".into(),
            port,
            source_port: 40000,
            in_port: Some("client".into()),
        };
        let tr = trace(&t, &req(80)).unwrap();
        assert_eq!(tr.steps.len(), 1, "{tr:?}");
        assert_eq!(tr.steps[0].stage, "l2chain");
        assert_eq!(
            tr.steps[0].detail,
            "chain/wire forward: count (counter) passed"
        );
        assert_eq!(tr.verdict, "transmit on server");
        // Not steered: on to the normal path.
        let tr = trace(&t, &req(22)).unwrap();
        assert_eq!(tr.steps[0].detail, "no Ethernet chain takes this frame");
        assert_eq!(tr.steps[1].stage, "parse");
        assert_eq!(t.chains.hop_count(0).forward_packets, 0);
    }

    #[test]
    fn a_firewall_may_deny_what_is_not_ip() {
        let fw = "apiVersion: sluice.dev/v1\nkind: NetworkServiceEndpoint\nmetadata: {name: strict}\nspec: {function: {firewall: {nonIp: Deny, defaultAction: Allow}}}\n";
        let chain = l2_chain("[strict]", "[{interface: client}]", "  exit: server\n");
        let s = state(&format!(
            "{INTERFACES}\n---\n{COUNTER}\n---\n{fw}\n---\n{chain}"
        ))
        .unwrap();
        let t = compile(&s, &ctx()).unwrap().chains;
        let Function::Firewall(fw) = &t.hops()[0].candidates[0] else {
            panic!("a firewall")
        };
        assert!(!fw.allow_non_ip && fw.default_allow);
    }

    #[test]
    fn an_ethernet_chain_refuses_functions_that_rewrite_addresses() {
        let chain = l2_chain("[fw, lb]", "[{interface: client}]", "  exit: server\n");
        let s = state(&format!("{INTERFACES}\n---\n{COUNTER}\n---\n{chain}")).unwrap();
        let e = compile(&s, &ctx()).unwrap_err();
        assert_eq!(e.object, "Chain wire");
        assert_eq!(e.field, "spec.endpoints[1]");
        assert!(
            e.message
                .contains("NetworkServiceEndpoint lb is a loadBalancer"),
            "{e}"
        );
        // The same through a NetworkService's matches.
        let svc = SERVICE.replace(
            "  steering:\n  - {source: [10.0.1.0/24], destination: [10.96.0.10/32], protocol: TCP, ports: [{port: 80}]}",
            "  payload: ETHERNET\n  exit: server\n  steering:\n  - {interface: client, labels: {app: x}}",
        );
        assert!(svc.contains("ETHERNET"));
        let s = state(&format!("{INTERFACES}\n---\n{COUNTER}\n---\n{svc}")).unwrap();
        let e = compile(&s, &ctx()).unwrap_err();
        assert_eq!(
            (e.object.as_str(), e.field.as_str()),
            ("NetworkService web", "spec.payload")
        );
        assert!(e.message.contains("NetworkServiceEndpoint lb"), "{e}");
    }

    #[test]
    fn an_ethernet_chain_needs_an_entry_and_an_exit_that_exist() {
        let no_iface = l2_chain("[fw]", "[{source: [10.0.7.0/24]}]", "  exit: server\n");
        let e = state(&format!("{INTERFACES}\n---\n{COUNTER}\n---\n{no_iface}")).unwrap_err();
        assert!(
            e.contains("spec.steering[0].interface") && e.contains("ETHERNET"),
            "{e}"
        );
        let no_exit = l2_chain("[fw]", "[{interface: client}]", "");
        let e = state(&format!("{INTERFACES}\n---\n{COUNTER}\n---\n{no_exit}")).unwrap_err();
        assert!(e.contains("spec.exit"), "{e}");
        let same = l2_chain("[fw]", "[{interface: client}]", "  exit: client\n");
        let e = state(&format!("{INTERFACES}\n---\n{COUNTER}\n---\n{same}")).unwrap_err();
        assert!(e.contains("must differ from spec.exit"), "{e}");
        let two = l2_chain(
            "[fw]",
            "[{interface: client}, {interface: cnf-in}]",
            "  exit: server\n",
        );
        let e = state(&format!("{INTERFACES}\n---\n{COUNTER}\n---\n{two}")).unwrap_err();
        assert!(e.contains("spec.steering[1].interface"), "{e}");
        let tpid = l2_chain(
            "[fw]",
            "[{interface: client, etherType: 0x8100}]",
            "  exit: server\n",
        );
        let e = state(&format!("{INTERFACES}\n---\n{COUNTER}\n---\n{tpid}")).unwrap_err();
        assert!(e.contains("spec.steering[0].etherType"), "{e}");
        // An exit that names no Interface: refused whole, naming the field.
        let nowhere = l2_chain("[fw]", "[{interface: client}]", "  exit: nowhere\n");
        let e = state(&format!("{INTERFACES}\n---\n{COUNTER}\n---\n{nowhere}")).unwrap_err();
        assert!(
            e.contains("spec.exit") && e.contains("\"nowhere\", which does not exist"),
            "{e}"
        );
    }

    #[test]
    fn ethernet_fields_are_refused_on_ip_chains() {
        let exit = "apiVersion: sluice.dev/v1\nkind: Chain\nmetadata: {name: c}\nspec: {endpoints: [fw], exit: server, steering: [{destination: [10.0.0.0/8]}]}\n";
        let e = state(&format!("{INTERFACES}\n---\n{COUNTER}\n---\n{exit}")).unwrap_err();
        assert!(
            e.contains("spec.exit") && e.contains("only for payload ETHERNET"),
            "{e}"
        );
        let vlan = "apiVersion: sluice.dev/v1\nkind: Chain\nmetadata: {name: c}\nspec: {endpoints: [fw], steering: [{destination: [10.0.0.0/8], vlan: 5}]}\n";
        let e = state(&format!("{INTERFACES}\n---\n{COUNTER}\n---\n{vlan}")).unwrap_err();
        assert!(e.contains("spec.steering[0].vlan"), "{e}");
    }
}
