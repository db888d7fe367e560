//! The `sluice.v1.Control` service: a thin layer over the
//! [`Controller`]. Requests are converted at the edge, the controller's
//! blocking calls (an apply fsyncs the store) run on tokio's blocking pool,
//! and results become responses.
//!
//! Streams (Watch, StreamStats) end when the client goes away or the daemon
//! shuts down, so that a graceful shutdown never waits on them.

use super::pb::control_server::Control;
use super::pb::{self, EventType};
use super::{
    invalid, is_store_failure, key_from_pb, key_to_pb, kind_from_pb, kinds_pb, object_from_pb,
    object_to_pb, status_of, stored_to_pb, API_VERSION,
};
use crate::controller::{Applied, ControlError, Controller};
use crate::model::{Change, Kind, ModelError};
use sluice_dataplane::io::{PortInfo, PortStats};
use sluice_dataplane::stats::StatsSnapshot;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The dataplane's counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct DataplaneSnapshot {
    /// Each worker's counters, by worker id.
    pub workers: Vec<StatsSnapshot>,
    /// Each port's own counters, by port id.
    pub ports: Vec<(PortInfo, PortStats)>,
}

/// Reads the dataplane's counters; `None` once it has stopped.
pub type StatsFeed = Arc<dyn Fn() -> Option<DataplaneSnapshot> + Send + Sync>;

/// Called when the store failed to write: the daemon stops, and a restart
/// recovers the store file.
pub type StoreFailureHook = Arc<dyn Fn(&ControlError) + Send + Sync>;

/// The largest request the server reads (and response a client reads).
pub const MAX_MESSAGE: usize = 256 << 20;

/// How long an apply with `wait` waits for the workers.
const WAIT_FOR_WORKERS: Duration = Duration::from_secs(5);

/// The service. Cheap to clone: everything is shared.
#[derive(Clone)]
pub struct ControlService {
    controller: Arc<Controller>,
    stats: Option<StatsFeed>,
    shutdown: watch::Receiver<bool>,
    on_store_failure: Option<StoreFailureHook>,
}

impl ControlService {
    /// A service over `controller`; streams end when `shutdown` becomes true.
    pub fn new(controller: Arc<Controller>, shutdown: watch::Receiver<bool>) -> ControlService {
        ControlService {
            controller,
            stats: None,
            shutdown,
            on_store_failure: None,
        }
    }

    /// Where per-worker and per-port counters come from.
    pub fn with_stats(mut self, feed: StatsFeed) -> ControlService {
        self.stats = Some(feed);
        self
    }

    pub fn on_store_failure(mut self, hook: StoreFailureHook) -> ControlService {
        self.on_store_failure = Some(hook);
        self
    }

    /// The tonic server for this service. Requests may carry large
    /// batches (the default limit of 4 MiB is a few thousand objects).
    pub fn into_server(self) -> pb::control_server::ControlServer<ControlService> {
        pb::control_server::ControlServer::new(self).max_decoding_message_size(MAX_MESSAGE)
    }

    /// Runs `f` on the blocking pool: the controller's lock is held while
    /// a batch is written to the store (an fsync), so even reads may wait
    /// for it, and must not do so on the runtime's threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ControlService) -> T + Send + 'static,
    ) -> Result<T, Status> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| Status::internal(format!("the request did not finish: {e}")))
    }

    fn fail(&self, e: ControlError) -> Status {
        if is_store_failure(&e) {
            tracing::error!(error = %e, "the store failed to write");
            if let Some(hook) = &self.on_store_failure {
                hook(&e);
            }
        }
        status_of(&e)
    }

    /// Runs a batch through the controller on the blocking pool.
    async fn commit(
        &self,
        batch: Vec<Change>,
        dry_run: bool,
        wait: bool,
    ) -> Result<(Applied, u64), Status> {
        let c = self.controller.clone();
        let n = batch.len();
        let applied = tokio::task::spawn_blocking(move || {
            let applied = c.apply(batch, dry_run)?;
            if wait && !dry_run {
                c.wait_for_workers(applied.generation, WAIT_FOR_WORKERS);
            }
            Ok::<_, ControlError>(applied)
        })
        .await
        .map_err(|e| Status::internal(format!("apply did not finish: {e}")))?
        .map_err(|e| {
            tracing::info!(error = %e, "batch refused");
            self.fail(e)
        })?;
        if !dry_run {
            tracing::info!(
                revision = applied.revision,
                generation = applied.generation,
                changes = n,
                "batch applied"
            );
        }
        Ok((applied, self.controller.generations().1))
    }

    /// A sample of the dataplane's counters, as `GetStats` returns it.
    pub fn stats(&self) -> pb::Stats {
        let (newest, oldest_running) = self.controller.generations();
        let snapshot = self.stats.as_ref().and_then(|f| f());
        let mut out = pb::Stats {
            unix_time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            dataplane: snapshot.is_some(),
            generations: Some(pb::Generations {
                newest,
                oldest_running,
            }),
            revision: self.controller.revision(),
            bandwidth: bandwidth(&self.controller.tables().load().bandwidth),
            chains: chain_hops(&self.controller.tables().load().chains),
            ..Default::default()
        };
        let Some(snap) = snapshot else {
            out.totals = Some(pb::Counters::default());
            return out;
        };
        let total = StatsSnapshot::sum(&snap.workers);
        out.totals = Some(counters(&total));
        out.drops = names(&total.drops);
        out.events = names(&total.events);
        out.workers = snap
            .workers
            .iter()
            .enumerate()
            .map(|(id, w)| pb::WorkerStats {
                id: id as u32,
                counters: Some(counters(w)),
                drops: names(&w.drops),
                events: names(&w.events),
                generation: w.generation,
            })
            .collect();
        let decls = &self.controller.node().ports;
        out.ports = snap
            .ports
            .iter()
            .enumerate()
            .map(|(id, (info, s))| {
                let decl = decls.get(id);
                pb::PortStats {
                    id: id as u32,
                    name: decl.map_or_else(|| info.name.clone(), |d| d.name.clone()),
                    backend: decl.map(|d| d.backend.clone()).unwrap_or_default(),
                    driver: info.driver.to_string(),
                    link_up: info.link_up,
                    mtu: info.mtu.into(),
                    rx_queues: info.rx_queues.into(),
                    tx_queues: info.tx_queues.into(),
                    rx_packets: s.rx_packets,
                    rx_bytes: s.rx_bytes,
                    tx_packets: s.tx_packets,
                    tx_bytes: s.tx_bytes,
                    rx_dropped: s.rx_dropped,
                    tx_dropped: s.tx_dropped,
                }
            })
            .collect();
        out
    }
}

/// Every pod's limits and counters, a row per pod and direction.
fn chain_hops(t: &sluice_dataplane::tables::chain::ChainTable) -> Vec<pb::ChainHop> {
    t.counts()
        .into_iter()
        .map(|(chain, hop, function, c, payload)| pb::ChainHop {
            chain,
            payload: payload.to_string(),
            hop,
            function,
            forward_packets: c.forward_packets,
            forward_bytes: c.forward_bytes,
            reverse_packets: c.reverse_packets,
            reverse_bytes: c.reverse_bytes,
            dropped: c.dropped,
            skipped: c.skipped,
            mirrored: c.mirrored,
            mirrored_bytes: c.mirrored_bytes,
            mirror_dropped: c.mirror_dropped,
        })
        .collect()
}

fn bandwidth(t: &sluice_dataplane::tables::bandwidth::BandwidthTable) -> Vec<pb::PodBandwidth> {
    use sluice_dataplane::tables::bandwidth::{Limiter, Mode};
    let mut pods: std::collections::BTreeMap<String, [Option<std::sync::Arc<Limiter>>; 2]> =
        std::collections::BTreeMap::new();
    for (_, l) in t.pods.iter() {
        pods.entry(l.pod.to_string())
            .or_insert_with(|| [l.ingress.clone(), l.egress.clone()]);
    }
    let mut out = Vec::new();
    for (pod, dirs) in pods {
        for (direction, l) in ["ingress", "egress"].into_iter().zip(dirs) {
            let Some(l) = l else { continue };
            let c = l.snapshot();
            out.push(pb::PodBandwidth {
                pod: pod.clone(),
                direction: direction.into(),
                rate_bps: l.rate_bps,
                burst_bits: l.burst_bits,
                mode: match l.mode {
                    Mode::Shape => "Shape",
                    Mode::Police => "Police",
                }
                .into(),
                conform_packets: c.conform_packets,
                conform_bytes: c.conform_bytes,
                queued_packets: c.queued_packets,
                queued_bytes: c.queued_bytes,
                dropped_packets: c.dropped_packets,
                dropped_bytes: c.dropped_bytes,
            });
        }
    }
    out
}

fn counters(s: &StatsSnapshot) -> pb::Counters {
    pb::Counters {
        rx_packets: s.rx_packets,
        tx_packets: s.tx_packets,
        dropped: s.dropped,
        bursts: s.bursts,
        polls: s.polls,
        busy_ns: s.busy_ns,
    }
}

fn names(
    m: &std::collections::BTreeMap<&'static str, u64>,
) -> std::collections::BTreeMap<String, u64> {
    m.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;
type StatsStream = Pin<Box<dyn Stream<Item = Result<pb::Stats, Status>> + Send>>;

#[tonic::async_trait]
impl Control for ControlService {
    async fn apply(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        let req = request.into_inner();
        if req.objects.is_empty() {
            return Err(invalid(&ModelError::new(
                "request",
                "objects",
                "an empty batch: expected at least one object",
            )));
        }
        let mut batch = Vec::with_capacity(req.objects.len());
        for (i, o) in req.objects.iter().enumerate() {
            let object = object_from_pb(i, o).map_err(|e| {
                tracing::info!(error = %e, "batch refused");
                invalid(&e)
            })?;
            batch.push(Change::Apply(object));
        }
        let keys = batch.iter().map(|c| key_to_pb(&c.key())).collect();
        let (applied, running) = self.commit(batch, req.dry_run, req.wait).await?;
        Ok(Response::new(pb::ApplyResponse {
            revision: applied.revision,
            generation: applied.generation,
            running_generation: running,
            keys,
            dry_run: req.dry_run,
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let req = request.into_inner();
        if req.keys.is_empty() {
            return Err(invalid(&ModelError::new(
                "request",
                "keys",
                "an empty batch: expected at least one key",
            )));
        }
        let mut keys = Vec::with_capacity(req.keys.len());
        for (i, k) in req.keys.iter().enumerate() {
            keys.push(key_from_pb(Some(k), &format!("keys[{i}]"))?);
        }
        // Missing objects are NOT_FOUND rather than a refused batch.
        let batch = self
            .blocking(move |this| {
                for key in &keys {
                    if this.controller.get(key).is_none() {
                        return Err(Status::not_found(format!("{key}: not found")));
                    }
                }
                Ok(keys.into_iter().map(Change::Delete).collect::<Vec<_>>())
            })
            .await??;
        let keys = batch.iter().map(|c| key_to_pb(&c.key())).collect();
        let (applied, running) = self.commit(batch, req.dry_run, req.wait).await?;
        Ok(Response::new(pb::DeleteResponse {
            revision: applied.revision,
            generation: applied.generation,
            running_generation: running,
            keys,
            dry_run: req.dry_run,
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let key = key_from_pb(request.get_ref().key.as_ref(), "key")?;
        self.blocking(move |this| {
            let revision = this.controller.revision();
            match this.controller.get(&key) {
                Some(so) => Ok(Response::new(pb::GetResponse {
                    object: Some(object_to_pb(&key, &so.object, so.revision)),
                    revision,
                })),
                None => Err(Status::not_found(format!("{key}: not found"))),
            }
        })
        .await?
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let req = request.into_inner();
        let kinds: Vec<Kind> = if req.kind.is_empty() {
            Kind::ALL.to_vec()
        } else {
            vec![kind_from_pb(&req.kind, "kind")?]
        };
        self.blocking(move |this| {
            let namespace = (!req.namespace.is_empty()).then_some(req.namespace.as_str());
            let selector = (!req.label_selector.is_empty()).then_some(req.label_selector.as_str());
            // The revision first: a batch landing during the listing makes
            // the list newer than the revision, so a watch from it repeats a
            // change rather than missing one.
            let revision = this.controller.revision();
            let mut objects = Vec::new();
            for kind in kinds {
                let found = this
                    .controller
                    .list(kind, namespace, selector)
                    .map_err(|e| this.fail(e))?;
                objects.extend(found.iter().map(stored_to_pb));
            }
            Ok(Response::new(pb::ListResponse { objects, revision }))
        })
        .await?
    }

    type WatchStream = EventStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let from = request.get_ref().from_revision;
        let controller = self.controller.clone();
        // Subscribe before the first read so that no batch falls between.
        let mut revisions = controller.subscribe();
        revisions.borrow_and_update();
        let first = read_changes(&controller, from)
            .await
            .map_err(|e| self.fail(e))?;
        let (tx, rx) = mpsc::channel(64);
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut last = from;
            let mut pending = first;
            loop {
                for e in pending {
                    last = e.revision;
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    changed = revisions.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                pending = match read_changes(&controller, last).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(status_of(&e))).await;
                        return;
                    }
                };
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_stats(
        &self,
        _request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::Stats>, Status> {
        Ok(Response::new(self.blocking(|this| this.stats()).await?))
    }

    type StreamStatsStream = StatsStream;

    async fn stream_stats(
        &self,
        request: Request<pb::StreamStatsRequest>,
    ) -> Result<Response<Self::StreamStatsStream>, Status> {
        let ms = match request.get_ref().interval_ms {
            0 => 1000,
            n => n.clamp(100, 3_600_000),
        };
        let (tx, rx) = mpsc::channel(4);
        let this = self.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(ms.into()));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = tx.closed() => return,
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                let sample = this.blocking(|this| this.stats()).await;
                if tx.send(sample).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn health(
        &self,
        _request: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        self.blocking(|this| {
            let (generation, running) = this.controller.generations();
            let workers = this
                .stats
                .as_ref()
                .and_then(|f| f())
                .map_or(0, |s| s.workers.len() as u32);
            Ok(Response::new(pb::HealthResponse {
                serving: !*this.shutdown.borrow() && (this.stats.is_none() || workers > 0),
                revision: this.controller.revision(),
                generation,
                running_generation: running,
                workers,
                node: this.controller.node().node.name.clone(),
            }))
        })
        .await?
    }

    async fn trace(
        &self,
        request: Request<pb::TraceRequest>,
    ) -> Result<Response<pb::TraceResponse>, Status> {
        let r = request.into_inner();
        let ip = |field: &str, v: &str| {
            v.parse::<std::net::IpAddr>().map_err(|_| {
                invalid(&ModelError::new(
                    "trace",
                    field,
                    format!("{v:?} is not an IP address"),
                ))
            })
        };
        let port = |field: &str, v: u32| {
            u16::try_from(v).map_err(|_| {
                invalid(&ModelError::new(
                    "trace",
                    field,
                    format!("must be 0-65535, got {v}"),
                ))
            })
        };
        let req = crate::trace::TraceRequest {
            from: ip("from", &r.from)?,
            to: ip("to", &r.to)?,
            protocol: r.protocol,
            port: port("port", r.port)?,
            source_port: match port("source_port", r.source_port)? {
                0 => 40000,
                p => p,
            },
            in_port: Some(r.in_port).filter(|p| !p.is_empty()),
        };
        let tables = self.controller.tables().load();
        let t = crate::trace::trace(&tables, &req)
            .map_err(|e| invalid(&ModelError::new("trace", "request", e)))?;
        Ok(Response::new(pb::TraceResponse {
            steps: t
                .steps
                .into_iter()
                .map(|s| pb::TraceStep {
                    stage: s.stage.to_string(),
                    decision: s.decision,
                    detail: s.detail,
                })
                .collect(),
            verdict: t.verdict,
            generation: tables.generation,
        }))
    }

    async fn explain(
        &self,
        request: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::ExplainResponse>, Status> {
        let req = request.into_inner();
        self.blocking(move |this| {
            use crate::policy::explain as ex;
            let c = &this.controller;
            let tables = c.tables().load();
            // The table of the connection's network (none: nothing judged).
            let network = match req.network.as_str() {
                "" => crate::model::DEFAULT_NETWORK,
                n => n,
            };
            let id = tables
                .networks
                .iter()
                .position(|n| n.name == network)
                .ok_or_else(|| {
                    Status::invalid_argument(format!("network: no Network {network:?}"))
                })?;
            let lookup = |k: &crate::model::ObjectKey| c.get(k).map(|s| s.object);
            let from = ex::resolve_endpoint_in(&req.from, &req.network, lookup)
                .map_err(|m| Status::invalid_argument(format!("from: {m}")))?;
            let to = ex::resolve_endpoint_in(&req.to, &req.network, lookup)
                .map_err(|m| Status::invalid_argument(format!("to: {m}")))?;
            let proto = ex::protocol_number(&req.protocol)
                .map_err(|m| Status::invalid_argument(format!("protocol: {m}")))?;
            let port = u16::try_from(req.port)
                .map_err(|_| Status::invalid_argument("port: must be 0-65535"))?;
            let (src, dst) =
                ex::pick_pair(&from.addresses, &to.addresses).map_err(Status::invalid_argument)?;
            let table = tables
                .policy
                .for_network(id as u16)
                .cloned()
                .unwrap_or_default();
            let r = ex::explain(&table, src, dst, proto, port);
            Ok(Response::new(pb::ExplainResponse {
                allowed: r.allowed,
                from_address: r.from.to_string(),
                to_address: r.to.to_string(),
                rule: r.rule.as_ref().map(rule_to_pb),
                from_node: r.from_node,
                egress: Some(decision_to_pb(&r.egress)),
                ingress: Some(decision_to_pb(&r.ingress)),
                generation: tables.generation,
            }))
        })
        .await?
    }

    async fn list_policy_rules(
        &self,
        _request: Request<pb::ListPolicyRulesRequest>,
    ) -> Result<Response<pb::ListPolicyRulesResponse>, Status> {
        self.blocking(|this| {
            let tables = this.controller.tables().load();
            // The pod network's rules, then each secondary network's
            // (MultiNetworkPolicy; their policy names carry the network).
            let rules = tables
                .policy
                .tables()
                .flat_map(|(_, p)| {
                    p.rules().iter().enumerate().map(move |(i, info)| {
                        rule_to_pb(&crate::policy::explain::NamedRule {
                            info: info.clone(),
                            count: p.counters().map(|c| c.get(i as u32)).unwrap_or_default(),
                        })
                    })
                })
                .collect();
            Ok(Response::new(pb::ListPolicyRulesResponse {
                rules,
                generation: tables.generation,
            }))
        })
        .await?
    }

    async fn version(
        &self,
        _request: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        Ok(Response::new(pb::VersionResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            api: API_VERSION.to_string(),
            kinds: kinds_pb(),
        }))
    }
}

/// The changes after `from`, as API events, read on the blocking pool.
async fn read_changes(
    controller: &Arc<Controller>,
    from: u64,
) -> Result<Vec<pb::WatchEvent>, ControlError> {
    let c = controller.clone();
    let events = tokio::task::spawn_blocking(move || c.changes_since(from))
        .await
        .unwrap_or_else(|e| {
            Err(ControlError::CorruptObject {
                key: String::new(),
                detail: format!("reading history did not finish: {e}"),
            })
        })?;
    Ok(events
        .into_iter()
        .map(|e| {
            let (kind, json) = match &e.object {
                None => (EventType::Deleted, String::new()),
                Some(o) => (
                    if e.created {
                        EventType::Added
                    } else {
                        EventType::Modified
                    },
                    object_to_pb(&e.key, o, e.revision).json,
                ),
            };
            pb::WatchEvent {
                revision: e.revision,
                r#type: kind.into(),
                key: Some(key_to_pb(&e.key)),
                json,
            }
        })
        .collect())
}

fn rule_to_pb(r: &crate::policy::explain::NamedRule) -> pb::PolicyRule {
    pb::PolicyRule {
        policy: r.info.policy.clone(),
        tier: r.info.tier.name().to_string(),
        direction: r.info.direction.name().to_string(),
        index: r.info.index.map_or(-1, |i| i as i32),
        name: r.info.name.clone().unwrap_or_default(),
        action: r.info.action.name().to_string(),
        allowed_connections: r.count.allowed_connections,
        denied_packets: r.count.denied_packets,
        denied_bytes: r.count.denied_bytes,
    }
}

fn decision_to_pb(d: &crate::policy::explain::DirectionReport) -> pb::PolicyDecision {
    pb::PolicyDecision {
        applies: d.applies,
        allowed: d.allowed,
        rule: d.rule.as_ref().map(rule_to_pb),
        passed_by: d.passed_by.as_ref().map(rule_to_pb),
    }
}
