//! The whole desired state, and how a batch of changes is admitted to it.
//!
//! A batch is checked as a whole: every applied object is validated on its
//! own, keys may not repeat within the batch, and the state that would result
//! is checked for conflicts (two objects claiming the same VIP:port:protocol,
//! MAC, route, ...) and dangling references (a Route through an unknown
//! Interface, a Network deleted while Interfaces use it). The first problem
//! refuses the whole batch; nothing is applied. An accepted batch becomes a
//! [`Plan`], and [`DesiredState::commit`] applies it as one new revision.
//!
//! Conflicts and references are kept in indexes (who claims what, who refers
//! to whom), so checking a batch costs in proportion to the batch, not to the
//! whole state.

use super::multus;
use super::names::{self, Protocol};
use super::selector::Selector;
use super::sluice::RouteType;
use super::validate::validate;
use super::{Kind, ModelError, Object, ObjectKey, DEFAULT_NETWORK};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

/// One change in a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Create the object, or replace the one with the same key.
    Apply(Object),
    /// Remove the object with this key; it must exist.
    Delete(ObjectKey),
}

impl Change {
    pub fn key(&self) -> ObjectKey {
        match self {
            Change::Apply(o) => o.key(),
            Change::Delete(k) => k.clone(),
        }
    }
}

/// An object as stored, with the revision it last changed at.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    pub object: Object,
    pub revision: u64,
}

/// A batch that [`DesiredState::check_batch`] accepted, ready to
/// [`commit`](DesiredState::commit) against the same revision it was checked
/// against.
#[derive(Debug, Clone)]
pub struct Plan {
    base_revision: u64,
    changes: Vec<PlannedChange>,
}

#[derive(Debug, Clone)]
enum PlannedChange {
    Apply {
        object: Object,
        claims: Vec<Claim>,
        references: Vec<Reference>,
    },
    Delete(ObjectKey),
}

impl Plan {
    /// The revision of the state the plan was checked against.
    pub fn base_revision(&self) -> u64 {
        self.base_revision
    }

    /// How many objects the plan applies or deletes.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// What [`DesiredState::undo`] needs to reverse one commit.
#[derive(Debug, Clone)]
pub struct Undo {
    revision: u64,
    prior: Vec<(ObjectKey, Option<StoredObject>)>,
}

/// Something only one object may have at a time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ClaimKey {
    /// A Service's cluster IP (Kubernetes allocates each to one Service).
    ClusterIp(IpAddr),
    /// A virtual IP, port and protocol a Service answers on: cluster IPs,
    /// external IPs and load-balancer IPs alike.
    Vip(IpAddr, u16, Protocol),
    /// A node port and protocol.
    NodePort(u16, Protocol),
    /// An Interface's MAC address.
    Mac([u8; 6]),
    /// An Interface address within a network.
    InterfaceAddress(String, IpAddr),
    /// A route's destination within a network.
    Route(String, IpNet),
    /// A static neighbour's address within a network.
    Neighbour(String, IpAddr),
    /// A multicast group within a network.
    Group(String, IpAddr),
}

#[derive(Debug, Clone)]
struct Claim {
    key: ClaimKey,
    field: String,
    what: String,
}

/// A reference from one object (at `field`) to another that must exist.
#[derive(Debug, Clone)]
struct Reference {
    target: ObjectKey,
    field: String,
    /// For references to Interfaces: the network the referrer is in, which
    /// the Interface must be in too.
    same_network: Option<String>,
}

/// Every object of the desired state, with the indexes that keep batch
/// checks proportional to the batch.
#[derive(Debug, Clone, Default)]
pub struct DesiredState {
    revision: u64,
    objects: BTreeMap<ObjectKey, StoredObject>,
    claims: HashMap<ClaimKey, (ObjectKey, String)>,
    /// target -> the objects that refer to it.
    referrers: HashMap<ObjectKey, BTreeSet<ObjectKey>>,
}

impl DesiredState {
    /// An empty state at revision 0.
    pub fn new() -> DesiredState {
        DesiredState::default()
    }

    /// Rebuilds a state from stored objects and the revisions they were last
    /// changed at (as a store reads them back after a restart), checking them
    /// as one batch.
    pub fn restore(
        revision: u64,
        objects: impl IntoIterator<Item = (Object, u64)>,
    ) -> Result<DesiredState, ModelError> {
        let (objects, revisions): (Vec<Change>, Vec<u64>) = objects
            .into_iter()
            .map(|(o, r)| (Change::Apply(o), r))
            .unzip();
        let mut state = DesiredState::new();
        let plan = state.check_batch(&objects)?;
        state.commit(plan);
        for (change, rev) in objects.iter().zip(revisions) {
            if let Some(stored) = state.objects.get_mut(&change.key()) {
                stored.revision = rev;
            }
        }
        state.revision = revision;
        Ok(state)
    }

    /// The revision of the last accepted batch (0 before any).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&StoredObject> {
        self.objects.get(key)
    }

    /// Every object, in key order (kind, namespace, name).
    pub fn iter(&self) -> impl Iterator<Item = &StoredObject> {
        self.objects.values()
    }

    /// Objects of `kind`, in `namespace` if given (ignored for cluster-scoped
    /// kinds), whose labels match `label_selector` in Kubernetes' string
    /// syntax (`a=b,c!=d,e in (x,y),!f`). In key order.
    pub fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<&StoredObject>, ModelError> {
        let selector = match label_selector {
            Some(s) => Selector::parse(s).map_err(|e| {
                ModelError::new(format!("label selector {s:?}"), e.field, e.message)
            })?,
            None => Selector::everything(),
        };
        let namespace = namespace.filter(|_| kind.namespaced());
        let start = ObjectKey {
            kind,
            namespace: namespace.map(str::to_string),
            name: String::new(),
        };
        Ok(self
            .objects
            .range(start..)
            .take_while(|(k, _)| {
                k.kind == kind && (namespace.is_none() || k.namespace.as_deref() == namespace)
            })
            .map(|(_, s)| s)
            .filter(|s| selector.matches(s.object.labels()))
            .collect())
    }

    /// Checks a batch against this state without changing it.
    pub fn check_batch(&self, batch: &[Change]) -> Result<Plan, ModelError> {
        // Each object on its own, and no key twice.
        let mut seen: HashMap<ObjectKey, usize> = HashMap::new();
        let mut changes = Vec::with_capacity(batch.len());
        for (i, change) in batch.iter().enumerate() {
            let key = change.key();
            if let Some(first) = seen.insert(key.clone(), i) {
                return Err(ModelError::new(
                    key.to_string(),
                    "",
                    format!(
                        "appears twice in the batch (changes {} and {}); a batch may change an object once",
                        first + 1,
                        i + 1
                    ),
                ));
            }
            match change {
                Change::Apply(obj) => {
                    let mut obj = obj.clone();
                    obj.normalize();
                    validate(&obj)?;
                    let claims = claims_of(&obj);
                    let references = references_of(&obj);
                    changes.push(PlannedChange::Apply {
                        object: obj,
                        claims,
                        references,
                    });
                }
                Change::Delete(key) => {
                    if !self.objects.contains_key(key) {
                        return Err(ModelError::new(
                            key.to_string(),
                            "",
                            "cannot be deleted: no such object",
                        ));
                    }
                    changes.push(PlannedChange::Delete(key.clone()));
                }
            }
        }
        let touched = |k: &ObjectKey| seen.contains_key(k);
        let deleted = |k: &ObjectKey| {
            seen.get(k)
                .is_some_and(|&i| matches!(batch[i], Change::Delete(_)))
        };

        // Exclusive claims: against the batch, and against objects the batch
        // leaves as they are (those it replaces or deletes give theirs up).
        let mut batch_claims: HashMap<&ClaimKey, (&ObjectKey, &Claim)> = HashMap::new();
        let keys: Vec<ObjectKey> = changes.iter().map(planned_key).collect();
        for (change, key) in changes.iter().zip(&keys) {
            let PlannedChange::Apply { claims, .. } = change else {
                continue;
            };
            for claim in claims {
                if let Some((other, other_claim)) = batch_claims.get(&claim.key) {
                    if *other != key {
                        return Err(conflict(key, claim, other, &other_claim.field));
                    }
                    continue;
                }
                if let Some((other, other_field)) = self.claims.get(&claim.key) {
                    if other != key && !touched(other) {
                        return Err(conflict(key, claim, other, other_field));
                    }
                }
                batch_claims.insert(&claim.key, (key, claim));
            }
        }

        // References from applied objects must resolve in the resulting state.
        let applied: HashMap<&ObjectKey, &Object> = changes
            .iter()
            .zip(&keys)
            .filter_map(|(c, k)| match c {
                PlannedChange::Apply { object, .. } => Some((k, object)),
                PlannedChange::Delete(_) => None,
            })
            .collect();
        let resolve = |target: &ObjectKey| -> Option<&Object> {
            if let Some(o) = applied.get(target) {
                return Some(*o);
            }
            if deleted(target) {
                return None;
            }
            self.objects.get(target).map(|s| &s.object)
        };
        for (change, key) in changes.iter().zip(&keys) {
            let PlannedChange::Apply { references, .. } = change else {
                continue;
            };
            for r in references {
                let Some(target) = resolve(&r.target) else {
                    let why = if deleted(&r.target) {
                        "which this batch deletes"
                    } else {
                        "which does not exist"
                    };
                    return Err(ModelError::new(
                        key.to_string(),
                        r.field.clone(),
                        format!(
                            "refers to {} {:?}, {why}",
                            r.target.kind,
                            match &r.target.namespace {
                                Some(ns) => format!("{ns}/{}", r.target.name),
                                None => r.target.name.clone(),
                            }
                        ),
                    ));
                };
                if let (Some(net), Object::Interface(i)) = (&r.same_network, target) {
                    if &i.spec.network != net {
                        return Err(ModelError::new(
                            key.to_string(),
                            r.field.clone(),
                            format!(
                                "Interface {:?} is in network {:?}, not {net:?}",
                                r.target.name, i.spec.network
                            ),
                        ));
                    }
                }
            }
        }

        // A replaced Interface must stay in the network of the objects the
        // batch leaves alone that reach it.
        for (key, object) in &applied {
            let Object::Interface(new) = object else {
                continue;
            };
            for user in self.referrers.get(key).into_iter().flatten() {
                if touched(user) {
                    continue;
                }
                let Some(stored) = self.objects.get(user) else {
                    continue;
                };
                let needs = references_of(&stored.object)
                    .into_iter()
                    .filter(|r| &r.target == *key)
                    .find_map(|r| r.same_network);
                if let Some(net) = needs.filter(|net| *net != new.spec.network) {
                    return Err(ModelError::new(
                        key.to_string(),
                        "spec.network",
                        format!(
                            "cannot move to network {:?}: {user} uses it in network {net:?}",
                            new.spec.network
                        ),
                    ));
                }
            }
        }

        // Deleted objects must not be used by objects the batch leaves alone.
        // (Referrers the batch applies were checked above.)
        for key in keys.iter().filter(|k| deleted(k)) {
            if let Some(users) = self.referrers.get(key) {
                if let Some(user) = users.iter().find(|u| !touched(u)) {
                    return Err(ModelError::new(
                        key.to_string(),
                        "",
                        format!(
                            "cannot be deleted: {user} still uses it{}",
                            if users.len() > 1 {
                                format!(" (and {} more)", users.len() - 1)
                            } else {
                                String::new()
                            }
                        ),
                    ));
                }
            }
        }

        Ok(Plan {
            base_revision: self.revision,
            changes,
        })
    }

    /// Applies a plan from [`check_batch`](Self::check_batch) and returns the
    /// new revision: one per accepted batch. An object applied unchanged
    /// keeps the revision it had.
    ///
    /// # Panics
    /// If the state changed since the plan was checked: plans must be
    /// committed in the order they were made, one per revision.
    pub fn commit(&mut self, plan: Plan) -> u64 {
        assert_eq!(
            plan.base_revision, self.revision,
            "a plan must be committed against the revision it was checked against"
        );
        let revision = self.revision + 1;
        for change in plan.changes {
            match change {
                PlannedChange::Delete(key) => self.remove(&key),
                PlannedChange::Apply {
                    object,
                    claims,
                    references,
                } => {
                    let key = object.key();
                    if self.objects.get(&key).is_some_and(|s| s.object == object) {
                        continue;
                    }
                    self.remove(&key);
                    for c in claims {
                        self.claims.insert(c.key, (key.clone(), c.field));
                    }
                    for r in references {
                        self.referrers
                            .entry(r.target)
                            .or_default()
                            .insert(key.clone());
                    }
                    self.objects.insert(key, StoredObject { object, revision });
                }
            }
        }
        self.revision = revision;
        revision
    }

    /// Like [`commit`](Self::commit), and returns what [`undo`](Self::undo)
    /// needs to put the state back as it was: the previous version of every
    /// object the plan names. Cheaper than cloning the state for a change
    /// that may still be refused (by the compiler, or a dry run).
    ///
    /// # Panics
    /// As [`commit`](Self::commit).
    pub fn commit_undoable(&mut self, plan: Plan) -> (u64, Undo) {
        let prior = plan
            .changes
            .iter()
            .map(|c| {
                let key = planned_key(c);
                let old = self.objects.get(&key).cloned();
                (key, old)
            })
            .collect();
        let undo = Undo {
            revision: self.revision,
            prior,
        };
        (self.commit(plan), undo)
    }

    /// Puts back the state an [`Undo`] was taken from. It must be the
    /// last commit.
    pub fn undo(&mut self, undo: Undo) {
        for (key, old) in undo.prior.into_iter().rev() {
            self.remove(&key);
            if let Some(old) = old {
                for c in claims_of(&old.object) {
                    self.claims.insert(c.key, (key.clone(), c.field));
                }
                for r in references_of(&old.object) {
                    self.referrers
                        .entry(r.target)
                        .or_default()
                        .insert(key.clone());
                }
                self.objects.insert(key, old);
            }
        }
        self.revision = undo.revision;
    }

    /// Checks and commits a batch in one step.
    pub fn apply(&mut self, batch: &[Change]) -> Result<u64, ModelError> {
        let plan = self.check_batch(batch)?;
        Ok(self.commit(plan))
    }

    fn remove(&mut self, key: &ObjectKey) {
        let Some(old) = self.objects.remove(key) else {
            return;
        };
        for c in claims_of(&old.object) {
            if self
                .claims
                .get(&c.key)
                .is_some_and(|(owner, _)| owner == key)
            {
                self.claims.remove(&c.key);
            }
        }
        for r in references_of(&old.object) {
            if let Some(set) = self.referrers.get_mut(&r.target) {
                set.remove(key);
                if set.is_empty() {
                    self.referrers.remove(&r.target);
                }
            }
        }
    }
}

fn planned_key(c: &PlannedChange) -> ObjectKey {
    match c {
        PlannedChange::Apply { object, .. } => object.key(),
        PlannedChange::Delete(k) => k.clone(),
    }
}

fn conflict(key: &ObjectKey, claim: &Claim, other: &ObjectKey, other_field: &str) -> ModelError {
    ModelError::new(
        key.to_string(),
        claim.field.clone(),
        format!("{} is already used by {other} ({other_field})", claim.what),
    )
}

/// What an object holds exclusively. Only meaningful for validated objects;
/// anything that does not parse is skipped.
fn claims_of(obj: &Object) -> Vec<Claim> {
    let mut out = Vec::new();
    let mut claim =
        |key: ClaimKey, field: String, what: String| out.push(Claim { key, field, what });
    match obj {
        Object::Service(svc) => {
            let Some(spec) = &svc.spec else { return out };
            let ports: Vec<(usize, u16, Protocol, i32)> = spec
                .ports
                .iter()
                .flatten()
                .enumerate()
                .filter_map(|(i, p)| {
                    let proto = Protocol::from_k8s(p.protocol.as_deref())?;
                    Some((
                        i,
                        u16::try_from(p.port).ok()?,
                        proto,
                        p.node_port.unwrap_or(0),
                    ))
                })
                .collect();
            let mut vips: Vec<(IpAddr, String)> = Vec::new();
            let cluster_ips = spec
                .cluster_ips
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, s)| (s.as_str(), format!("spec.clusterIPs[{i}]")))
                .chain(
                    spec.cluster_ip
                        .iter()
                        .map(|s| (s.as_str(), "spec.clusterIP".to_string())),
                );
            for (s, field) in cluster_ips {
                if let Ok(ip) = names::ip(s) {
                    if vips.iter().any(|(v, _)| *v == ip) {
                        continue;
                    }
                    claim(
                        ClaimKey::ClusterIp(ip),
                        field.clone(),
                        format!("cluster IP {ip}"),
                    );
                    vips.push((ip, field));
                }
            }
            let lb_ips = spec
                .external_ips
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, s)| (s.as_str(), format!("spec.externalIPs[{i}]")))
                .chain(
                    spec.load_balancer_ip
                        .iter()
                        .map(|s| (s.as_str(), "spec.loadBalancerIP".to_string())),
                )
                .chain(
                    svc.status
                        .iter()
                        .flat_map(|s| s.load_balancer.iter())
                        .flat_map(|lb| lb.ingress.iter().flatten())
                        .enumerate()
                        .filter_map(|(i, ing)| {
                            Some((
                                ing.ip.as_deref()?,
                                format!("status.loadBalancer.ingress[{i}].ip"),
                            ))
                        }),
                );
            for (s, field) in lb_ips {
                if let Ok(ip) = names::ip(s) {
                    if !vips.iter().any(|(v, _)| *v == ip) {
                        vips.push((ip, field));
                    }
                }
            }
            for (ip, field) in &vips {
                for (_, port, proto, _) in &ports {
                    let shown = match ip {
                        IpAddr::V4(a) => format!("{a}:{port}/{}", proto.as_str()),
                        IpAddr::V6(a) => format!("[{a}]:{port}/{}", proto.as_str()),
                    };
                    claim(ClaimKey::Vip(*ip, *port, *proto), field.clone(), shown);
                }
            }
            for (i, _, proto, np) in &ports {
                if let Ok(np) = u16::try_from(*np) {
                    if np != 0 {
                        claim(
                            ClaimKey::NodePort(np, *proto),
                            format!("spec.ports[{i}].nodePort"),
                            format!("node port {np}/{}", proto.as_str()),
                        );
                    }
                }
            }
            if let Some(hc) = spec
                .health_check_node_port
                .and_then(|n| u16::try_from(n).ok())
            {
                if hc != 0 {
                    claim(
                        ClaimKey::NodePort(hc, Protocol::Tcp),
                        "spec.healthCheckNodePort".into(),
                        format!("node port {hc}/TCP"),
                    );
                }
            }
        }
        Object::Interface(i) => {
            let s = &i.spec;
            claim(
                ClaimKey::Mac(s.mac.0),
                "spec.mac".into(),
                format!("MAC {}", s.mac),
            );
            for (n, a) in s.addresses.iter().enumerate() {
                claim(
                    ClaimKey::InterfaceAddress(s.network.clone(), a.addr()),
                    format!("spec.addresses[{n}]"),
                    format!("address {} in network {:?}", a.addr(), s.network),
                );
            }
        }
        Object::Route(r) => {
            let s = &r.spec;
            claim(
                ClaimKey::Route(s.network.clone(), s.destination),
                "spec.destination".into(),
                format!("destination {} in network {:?}", s.destination, s.network),
            );
        }
        Object::Neighbour(n) => {
            let s = &n.spec;
            claim(
                ClaimKey::Neighbour(s.network.clone(), s.ip),
                "spec.ip".into(),
                format!("neighbour {} in network {:?}", s.ip, s.network),
            );
        }
        Object::MulticastGroup(g) => {
            let s = &g.spec;
            claim(
                ClaimKey::Group(s.network.clone(), s.group),
                "spec.group".into(),
                format!("group {} in network {:?}", s.group, s.network),
            );
        }
        _ => {}
    }
    out
}

fn network_ref(out: &mut Vec<Reference>, name: &str, field: &str) {
    if name != DEFAULT_NETWORK {
        out.push(Reference {
            target: ObjectKey::cluster(Kind::Network, name),
            field: field.into(),
            same_network: None,
        });
    }
}

fn interface_ref(out: &mut Vec<Reference>, name: &str, field: String, net: Option<&str>) {
    out.push(Reference {
        target: ObjectKey::cluster(Kind::Interface, name),
        field,
        same_network: net.map(str::to_string),
    });
}

/// The objects `obj` needs to exist.
fn references_of(obj: &Object) -> Vec<Reference> {
    let mut out = Vec::new();
    match obj {
        Object::Interface(i) => network_ref(&mut out, &i.spec.network, "spec.network"),
        Object::Route(r) => {
            network_ref(&mut out, &r.spec.network, "spec.network");
            if r.spec.route_type == RouteType::Unicast {
                for (i, h) in r.spec.next_hops.iter().enumerate() {
                    if let Some(name) = &h.interface {
                        interface_ref(
                            &mut out,
                            name,
                            format!("spec.nextHops[{i}].interface"),
                            Some(&r.spec.network),
                        );
                    }
                }
            }
        }
        Object::Neighbour(n) => network_ref(&mut out, &n.spec.network, "spec.network"),
        Object::MulticastGroup(g) => {
            network_ref(&mut out, &g.spec.network, "spec.network");
            for (i, m) in g.spec.members.iter().enumerate() {
                interface_ref(
                    &mut out,
                    m,
                    format!("spec.members[{i}]"),
                    Some(&g.spec.network),
                );
            }
        }
        Object::NetworkServiceEndpoint(e) => {
            if let Some(x) = &e.spec.interfaces {
                interface_ref(&mut out, &x.ingress, "spec.interfaces.ingress".into(), None);
                interface_ref(&mut out, &x.egress, "spec.interfaces.egress".into(), None);
            }
            if let Some(m) = e.spec.function.as_ref().and_then(|f| f.mirror.as_ref()) {
                let field = "spec.function.mirror.interface".into();
                interface_ref(&mut out, &m.interface, field, None);
            }
        }
        Object::Chain(c) => {
            for (i, e) in c.spec.endpoints.iter().enumerate() {
                out.push(Reference {
                    target: ObjectKey::cluster(Kind::NetworkServiceEndpoint, e),
                    field: format!("spec.endpoints[{i}]"),
                    same_network: None,
                });
            }
            steering_refs(&mut out, &c.spec.steering);
            exit_ref(&mut out, c.spec.exit.as_deref());
        }
        Object::NetworkService(s) => {
            steering_refs(&mut out, &s.spec.steering);
            exit_ref(&mut out, s.spec.exit.as_deref());
        }
        // Multus: a pod's attachments name definitions that must exist (a
        // pod naming a missing one is refused whole, as Multus fails the
        // pod's sandbox), and a Sluice definition names a Network.
        Object::Pod(p) => {
            if let Ok(selections) = multus::pod_network_selections(p) {
                let field = multus::annotation_field(multus::NETWORKS_ANNOTATION);
                for s in selections {
                    out.push(Reference {
                        target: ObjectKey::namespaced(
                            Kind::NetworkAttachmentDefinition,
                            s.namespace,
                            s.name,
                        ),
                        field: field.clone(),
                        same_network: None,
                    });
                }
            }
        }
        Object::NetworkAttachmentDefinition(n) => {
            if let Ok(multus::AttachmentConfig::Sluice { network, field }) =
                multus::attachment_config(n)
            {
                network_ref(&mut out, &network, &field);
            }
        }
        _ => {}
    }
    out
}

/// The Interface an ETHERNET chain's frames leave on.
fn exit_ref(out: &mut Vec<Reference>, exit: Option<&str>) {
    if let Some(n) = exit {
        interface_ref(out, n, "spec.exit".into(), None);
    }
}

/// The Networks and Interfaces a service's or chain's steering names.
fn steering_refs(out: &mut Vec<Reference>, steering: &[super::sluice::Steering]) {
    for (i, s) in steering.iter().enumerate() {
        if let Some(n) = &s.network {
            network_ref(out, n, &format!("spec.steering[{i}].network"));
        }
        if let Some(n) = &s.interface {
            interface_ref(out, n, format!("spec.steering[{i}].interface"), None);
        }
    }
}
