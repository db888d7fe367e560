//! An engine: ports, the published tables, and the workers that serve them.
//!
//! Queue assignment follows DPDK practice: receive queues are dealt to
//! workers round-robin (port by port), and every worker gets its own
//! transmit queue on every port (worker `w` takes queue `w`), so no two
//! threads ever share a queue. A port needs at least as many transmit queues
//! as there are workers.

use crate::buf::PacketPool;
use crate::io::{Port, PortError, PortInfo, PortStats};
use crate::stages::Stage;
use crate::state::neighbour::NeighbourCache;
use crate::stats::StatsSnapshot;
use crate::tables::cell::TableCell;
use crate::tables::Tables;
use crate::worker::{spawn, Handoff, WorkerHandle, WorkerSpec};

/// Packets each worker's handoff ring holds.
const HANDOFF_RING: usize = 4096;
use std::sync::Arc;
use std::time::Duration;

/// How to run the workers.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub workers: usize,
    /// Cores to pin workers to, in order; empty leaves them unpinned.
    pub cores: Vec<usize>,
    /// Packet buffers in the pool.
    pub pool_size: u32,
    pub drain: Duration,
    pub neighbour_capacity: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 1,
            cores: Vec::new(),
            pool_size: 16 * 1024,
            drain: Duration::from_micros(100),
            neighbour_capacity: 16 * 1024,
        }
    }
}

/// Cores for `n` workers on this machine: the highest-numbered ones, leaving
/// core 0 to the control plane and the OS. On a one- or two-core machine
/// the workers share with the rest.
pub fn default_cores(n: usize) -> Vec<usize> {
    let ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    if ids.is_empty() {
        return Vec::new();
    }
    (0..n)
        .map(|i| ids[ids.len() - 1 - (i % ids.len())])
        .collect()
}

pub struct Engine {
    ports: Vec<Arc<dyn Port>>,
    workers: Vec<WorkerHandle>,
    tables: Arc<TableCell>,
    neighbours: Arc<NeighbourCache>,
    pool: PacketPool,
}

impl Engine {
    /// Starts workers serving `ports` (index = port id) with `tables`.
    pub fn start<P, F>(
        ports: Vec<Arc<dyn Port>>,
        tables: Tables,
        cfg: &EngineConfig,
        pipeline: F,
    ) -> Result<Engine, PortError>
    where
        P: Stage + 'static,
        F: Fn() -> P + Send + Clone + 'static,
    {
        Engine::start_with_cell(ports, TableCell::new(tables), cfg, pipeline)
    }

    /// Starts workers serving `ports` (index = port id) with the tables
    /// published in `cell`, which the caller (the control plane) keeps
    /// publishing to. Every worker has registered its reader when this
    /// returns, so [`TableCell::wait_for`] from then on waits for all of them.
    pub fn start_with_cell<P, F>(
        ports: Vec<Arc<dyn Port>>,
        cell: Arc<TableCell>,
        cfg: &EngineConfig,
        pipeline: F,
    ) -> Result<Engine, PortError>
    where
        P: Stage + 'static,
        F: Fn() -> P + Send + Clone + 'static,
    {
        Engine::start_each(ports, cell, cfg, move |_| pipeline())
    }

    /// [`start_with_cell`](Engine::start_with_cell) with a pipeline made for
    /// each worker from its id (worker `w` serves queue `w` of every port
    /// with as many queues as workers).
    pub fn start_each<P, F>(
        ports: Vec<Arc<dyn Port>>,
        cell: Arc<TableCell>,
        cfg: &EngineConfig,
        pipeline: F,
    ) -> Result<Engine, PortError>
    where
        P: Stage + 'static,
        F: Fn(u16) -> P + Send + Clone + 'static,
    {
        let workers = cfg.workers.max(1);
        let neighbours = Arc::new(NeighbourCache::new(cfg.neighbour_capacity));
        let pool = PacketPool::new("engine", cfg.pool_size);
        let mut rx: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
        let mut next = 0;
        for port in &ports {
            for q in 0..port.info().rx_queues {
                rx[next % workers].push(port.rx_queue(q)?);
                next += 1;
            }
        }
        let mut specs = Vec::with_capacity(workers);
        let mut handoff = if workers > 1 {
            Handoff::mesh(workers, HANDOFF_RING)
        } else {
            vec![Handoff::default()]
        }
        .into_iter();
        for (w, rx) in rx.into_iter().enumerate() {
            let mut tx = Vec::with_capacity(ports.len());
            for port in &ports {
                let info = port.info();
                tx.push(if info.tx_queues == 0 {
                    None
                } else if (w as u16) < info.tx_queues {
                    Some(port.tx_queue(w as u16)?)
                } else {
                    return Err(PortError::Backend(format!(
                        "port {}: {} workers need {} transmit queues, it has {}",
                        info.name, workers, workers, info.tx_queues
                    )));
                });
            }
            specs.push(WorkerSpec {
                id: w as u16,
                core: cfg.cores.get(w).copied(),
                rx,
                tx,
                pool: pool.clone(),
                tables: cell.clone(),
                neighbours: neighbours.clone(),
                drain: cfg.drain,
                handoff: handoff.next().unwrap_or_default(),
            });
        }
        let mut handles = Vec::with_capacity(workers);
        for spec in specs {
            let make = pipeline.clone();
            let id = spec.id;
            handles.push(
                spawn(spec, move || make(id)).map_err(|e| PortError::Backend(e.to_string()))?,
            );
        }
        Ok(Engine {
            ports,
            workers: handles,
            tables: cell,
            neighbours,
            pool,
        })
    }

    /// Counters summed over workers.
    pub fn stats(&self) -> StatsSnapshot {
        let snaps: Vec<_> = self.workers.iter().map(|w| w.stats().snapshot()).collect();
        StatsSnapshot::sum(&snaps)
    }

    /// Each worker's counters.
    pub fn worker_stats(&self) -> Vec<StatsSnapshot> {
        self.workers.iter().map(|w| w.stats().snapshot()).collect()
    }

    pub fn port_stats(&self) -> Vec<(PortInfo, PortStats)> {
        self.ports.iter().map(|p| (p.info(), p.stats())).collect()
    }

    /// Publishes a new table generation; workers pick it up at their next
    /// poll. [`TableCell::wait_for`] on [`tables`](Engine::tables) waits
    /// until all of them run it.
    pub fn publish(&self, tables: Tables) -> u64 {
        self.tables.publish(tables)
    }

    pub fn tables(&self) -> &Arc<TableCell> {
        &self.tables
    }

    pub fn neighbours(&self) -> &Arc<NeighbourCache> {
        &self.neighbours
    }

    pub fn pool(&self) -> &PacketPool {
        &self.pool
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Stops every worker (each sends what it has pending first).
    pub fn stop(self) {
        for w in self.workers {
            w.stop();
        }
    }
}
