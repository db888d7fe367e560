//! `sluiced run`: the daemon.
//!
//! Start-up, in this order, so that the workers never forward with tables
//! the store does not back:
//! 1. open the store, rebuild the desired state and compile it for this
//!    node ([`Controller::open`]); a damaged store or a state that no longer
//!    fits the node's ports stops start-up with one line saying why;
//! 2. open the ports and start the workers on the controller's table cell;
//! 3. attach the workers' counters to the controller and the API;
//! 4. bind the API listeners (Unix socket 0600; TCP only with TLS) and the
//!    optional metrics listener, then serve.
//!
//! SIGINT or SIGTERM: the listeners stop taking requests, open streams end,
//! requests in flight finish, the workers stop, and the process exits 0.
//! A store that fails to write stops the daemon with an error (exit 1): the
//! store recovers its file when it is opened again.

pub mod config;
pub mod metrics;
pub mod ports;

use crate::api::listen::{ListenAddr, Listener};
use crate::api::{ControlService, DataplaneSnapshot, StatsFeed};
use crate::compile::{NodeContext, PortDecl};
use crate::controller::{ControlError, Controller};
use config::{host_name, Checked};
use sluice_dataplane::engine::{default_cores, Engine, EngineConfig};
use sluice_dataplane::io::rss::SYMMETRIC_KEY;
use sluice_dataplane::io::Port;
use sluice_dataplane::stages::service::{ServiceConfig, Steering};
use sluice_dataplane::stages::service_pipeline;
use sluice_dataplane::tables::NodeIdentity;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// How long requests in flight may take to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs the daemon until a signal stops it. `Err` is one line for people.
pub fn run(checked: Checked) -> Result<(), String> {
    let cfg = &checked.config;
    let node = NodeIdentity {
        name: if cfg.node.name.is_empty() {
            host_name()
        } else {
            cfg.node.name.clone()
        },
        zone: cfg.node.zone.clone(),
        addresses: cfg.node.addresses.clone(),
    };
    let ctx = NodeContext {
        node,
        ports: cfg
            .ports
            .iter()
            .map(|p| PortDecl {
                name: p.name.clone(),
                backend: p.backend.clone(),
            })
            .collect(),
        services: cfg.services.settings(),
    };
    let controller = Controller::open(&cfg.state_dir, ctx).map_err(|e| match e {
        ControlError::Invalid(_) | ControlError::Compile(_) => {
            format!("the stored desired state does not fit this node's configuration: {e}")
        }
        _ => format!(
            "cannot start from the store in {}: {e}",
            cfg.state_dir.display()
        ),
    })?;
    let controller = Arc::new(controller);
    let (generation, _) = controller.generations();
    tracing::info!(
        state_dir = %cfg.state_dir.display(),
        revision = controller.revision(),
        generation,
        "desired state restored"
    );

    #[cfg(feature = "dpdk")]
    if checked.backends.iter().any(|b| b.is_dpdk()) {
        ports::start_dpdk(&cfg.dpdk)?;
        tracing::info!(eal = ?cfg.dpdk.eal, "DPDK started");
    }
    let mut ports: Vec<Arc<dyn Port>> = Vec::with_capacity(cfg.ports.len());
    for (id, (p, backend)) in cfg.ports.iter().zip(&checked.backends).enumerate() {
        let port = backend.open(id as u16, &p.name, cfg.workers)?;
        let driver = port.info().driver;
        tracing::info!(port = %p.name, id, backend = %p.backend, driver, "port opened");
        ports.push(port);
    }
    let engine_cfg = EngineConfig {
        workers: cfg.workers,
        cores: if cfg.cores.is_empty() {
            default_cores(cfg.workers)
        } else {
            cfg.cores.clone()
        },
        pool_size: cfg.pool_size.unwrap_or(EngineConfig::default().pool_size),
        ..EngineConfig::default()
    };
    // The Kubernetes node pipeline: Services (connection tracking, load
    // balancing, NAT) and bandwidth limits on top of the router. Worker `w`
    // serves queue `w` of every port; mem ports hash with the symmetric
    // key, so masqueraded connections pick NAT ports that hash back.
    let workers = cfg.workers.max(1) as u16;
    let make = move |w: u16| {
        let steering = if workers > 1 {
            Steering::rss(&SYMMETRIC_KEY, workers, w)
        } else {
            Steering::single()
        };
        service_pipeline(&ServiceConfig {
            steering,
            ..ServiceConfig::default()
        })
    };
    let engine = Engine::start_each(ports, controller.tables().clone(), &engine_cfg, make)
        .map_err(|e| format!("cannot start the workers: {e}"))?;
    tracing::info!(workers = engine.workers(), cores = ?engine_cfg.cores, "workers started");
    let engine = Arc::new(engine);
    watch_links(Arc::downgrade(&engine));
    // The API and the controller read counters through weak references, so
    // that the engine can be taken back and stopped at shutdown.
    let weak = Arc::downgrade(&engine);
    controller.set_stats_source(Box::new(move || {
        weak.upgrade().map(|e| e.stats()).unwrap_or_default()
    }));
    let weak = Arc::downgrade(&engine);
    let feed: StatsFeed = Arc::new(move || {
        weak.upgrade().map(|e| DataplaneSnapshot {
            workers: e.worker_stats(),
            ports: e.port_stats(),
        })
    });

    let outcome = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sluice-control")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the control threads: {e}"))
        .and_then(|rt| {
            let r = rt.block_on(serve(&checked, controller.clone(), feed));
            rt.shutdown_timeout(Duration::from_secs(1));
            r
        });
    stop_engine(engine);
    outcome
}

/// Copies every port's link state into the chain table's link flags
/// every 100 ms (service chains skip or fail closed on a hop whose
/// interfaces have no link), until the engine is gone.
fn watch_links(engine: std::sync::Weak<Engine>) {
    let spawned = std::thread::Builder::new()
        .name("sluice-links".into())
        .spawn(move || {
            let mut last: Vec<bool> = Vec::new();
            while let Some(e) = engine.upgrade() {
                let tables = e.tables().load();
                let links = tables.chains.links();
                let now: Vec<bool> = e.port_stats().iter().map(|(i, _)| i.link_up).collect();
                for (id, up) in now.iter().enumerate() {
                    links.set(id as u16, *up);
                    if last.get(id) != Some(up) {
                        tracing::info!(port = %e.port_stats()[id].0.name, up, "port link");
                    }
                }
                last = now;
                drop(tables);
                drop(e);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    if let Err(err) = spawned {
        tracing::warn!(%err, "no link watcher: chain hops are taken as up");
    }
}

fn stop_engine(mut engine: Arc<Engine>) {
    // A stats read may hold a reference for a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match Arc::try_unwrap(engine) {
            Ok(e) => {
                e.stop();
                tracing::info!("workers stopped");
                return;
            }
            Err(e) if Instant::now() < deadline => {
                engine = e;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => {
                tracing::warn!("workers still referenced at exit; leaving them to the OS");
                return;
            }
        }
    }
}

async fn serve(
    checked: &Checked,
    controller: Arc<Controller>,
    feed: StatsFeed,
) -> Result<(), String> {
    let signal_err = |e: std::io::Error| format!("cannot handle signals: {e}");
    let mut sigint = signal(SignalKind::interrupt()).map_err(signal_err)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(signal_err)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (fatal_tx, mut fatal_rx) = mpsc::unbounded_channel::<String>();
    let service = ControlService::new(controller, shutdown_rx.clone())
        .with_stats(feed)
        .on_store_failure(Arc::new(move |e| {
            let _ = fatal_tx.send(format!("the store failed to write: {e}"));
        }));

    let mut listeners = Vec::with_capacity(checked.listen.len());
    for addr in &checked.listen {
        listeners.push(Listener::bind(addr, checked.tls.as_ref()).await?);
    }
    let metrics = match checked.config.metrics.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?,
        ),
        None => None,
    };

    let mut servers = JoinSet::new();
    let mut sockets = Vec::new();
    for l in listeners {
        let addr = l.local_addr();
        tracing::info!(
            %addr,
            tls = matches!(addr, ListenAddr::Tcp(_)),
            client_certs = checked.tls.as_ref().is_some_and(|t| t.client_ca.is_some())
                && matches!(addr, ListenAddr::Tcp(_)),
            "API listening"
        );
        if let ListenAddr::Unix(p) = &addr {
            sockets.push(p.clone());
        }
        let mut stop = shutdown_rx.clone();
        servers.spawn(l.serve(service.clone(), async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
    }
    if let Some(listener) = metrics {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
        let svc = service.clone();
        tokio::spawn(metrics::serve(
            listener,
            move || svc.stats(),
            shutdown_rx.clone(),
        ));
    }
    tracing::info!("sluiced ready");

    let failure = tokio::select! {
        _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); None }
        _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); None }
        Some(msg) = fatal_rx.recv() => { tracing::error!("{msg}; shutting down"); Some(msg) }
        Some(r) = servers.join_next() => {
            let msg = match r {
                Ok(Err(e)) => format!("API listener failed: {e}"),
                Ok(Ok(())) => "API listener stopped".to_string(),
                Err(e) => format!("API listener failed: {e}"),
            };
            tracing::error!("{msg}; shutting down");
            Some(msg)
        }
    };
    let _ = shutdown_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(r) = servers.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::warn!("{e}");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("requests still open after {SHUTDOWN_GRACE:?}; closing them");
        servers.abort_all();
        for p in sockets {
            let _ = std::fs::remove_file(p);
        }
    }
    match failure {
        None => Ok(()),
        Some(msg) => Err(msg),
    }
}
