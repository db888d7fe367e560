//! The l3fwd scenarios over DPDK (`--features dpdk`): the same traffic,
//! written to a capture file that DPDK's `net_pcap` device replays forever
//! (`rx_pcap=FILE,infinite_rx=1`, which copies each frame into a fresh mbuf
//! as a NIC's DMA would), routed by one worker into a `net_null` device
//! that frees what it is given: the setup `../shared/PEERS.md` used for
//! `dpdk-testpmd`.

use sluice_dataplane::io::dpdk::{Dpdk, DpdkConfig, DpdkPort, DpdkPortConfig};
use sluice_dataplane::io::Port;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The DPDK side of a run.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct DpdkParams {
    /// EAL arguments (split on spaces). Default: `--in-memory` when the
    /// machine has free hugepages, else `--no-huge -m 1024 --no-shconf`;
    /// always `--no-pci --no-telemetry`.
    #[arg(long, allow_hyphen_values = true)]
    pub eal: Option<String>,
    /// Copy each received frame into Sluice's pool instead of carrying the
    /// mbuf (for comparison).
    #[arg(long)]
    pub dpdk_copy: bool,
    /// Write the traffic to this capture file and keep it (to replay the
    /// same frames with dpdk-testpmd); by default a temporary file.
    #[arg(long)]
    pub pcap: Option<PathBuf>,
}

fn free_hugepages() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("HugePages_Free:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The EAL arguments a run uses.
pub fn eal_args(p: &DpdkParams) -> Vec<String> {
    let base = match &p.eal {
        Some(s) => s.clone(),
        None if free_hugepages() >= 512 => "--in-memory".to_string(),
        None => "--no-huge -m 1024 --no-shconf".to_string(),
    };
    let mut args: Vec<String> = base.split_whitespace().map(String::from).collect();
    for a in ["--no-pci", "--no-telemetry"] {
        if !args.iter().any(|x| x == a) {
            args.push(a.to_string());
        }
    }
    args
}

/// Writes `frames` as a classic pcap file (microsecond timestamps, Ethernet).
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&[0; 8])?;
    out.write_all(&65535u32.to_le_bytes())?;
    out.write_all(&1u32.to_le_bytes())?;
    for (i, f) in frames.iter().enumerate() {
        out.write_all(&(i as u32 / 1_000_000).to_le_bytes())?;
        out.write_all(&(i as u32 % 1_000_000).to_le_bytes())?;
        out.write_all(&(f.len() as u32).to_le_bytes())?;
        out.write_all(&(f.len() as u32).to_le_bytes())?;
        out.write_all(f)?;
    }
    out.flush()
}

/// Removes a temporary capture file when the run ends.
pub struct Capture(Option<PathBuf>);

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The opened devices of a run.
pub struct DpdkPorts {
    /// `in` (port 0) and `out` (port 1).
    pub ports: Vec<Arc<dyn Port>>,
    /// The EAL arguments used.
    pub eal: Vec<String>,
    /// Keeps the capture file until the run ends.
    pub capture: Capture,
}

/// Starts DPDK and opens `in` (the replayed capture, port 0) and `out`
/// (the null sink, port 1).
pub fn ports(p: &DpdkParams, frames: &[Vec<u8>], workers: usize) -> Result<DpdkPorts, String> {
    if workers != 1 {
        return Err("the DPDK scenarios run one worker (net_pcap replays one queue)".into());
    }
    let (path, capture) = match &p.pcap {
        Some(path) => (path.clone(), Capture(None)),
        None => {
            let path =
                std::env::temp_dir().join(format!("sluice-perf-{}.pcap", std::process::id()));
            (path.clone(), Capture(Some(path)))
        }
    };
    write_pcap(&path, frames).map_err(|e| format!("writing {}: {e}", path.display()))?;
    let eal = eal_args(p);
    let dpdk = Dpdk::init(&DpdkConfig {
        eal_args: eal.clone(),
        // The replayed capture is preloaded into mbufs of this pool.
        mbufs: 64 * 1024 - 1,
        mbuf_cache: 256,
    })
    .map_err(|e| e.to_string())?;
    let cfg = |port_id| DpdkPortConfig {
        port_id,
        zero_copy: !p.dpdk_copy,
        ..DpdkPortConfig::default()
    };
    let input = DpdkPort::open(
        dpdk,
        "in",
        &format!("net_pcap0,rx_pcap={},infinite_rx=1", path.display()),
        cfg(0),
    )
    .map_err(|e| e.to_string())?;
    let output =
        DpdkPort::open(dpdk, "out", "net_null0,no-rx=1", cfg(1)).map_err(|e| e.to_string())?;
    Ok(DpdkPorts {
        ports: vec![input, output],
        eal,
        capture,
    })
}

/// dpdk-service-lb: Sluice's Kubernetes node pipeline (parse → service
/// with conntrack and DNAT → route → rewrite) on one worker, from
/// `net_pcap` replaying [`crate::peers::service_traffic`] into `net_null`: the same
/// Services, endpoints and frames OVS-DPDK's conntrack + NAT pipeline gets.
pub fn run_service_lb(
    p: &crate::l3fwd::Params,
    s: &crate::service_lb::Params,
    d: &DpdkParams,
    progress: bool,
) -> Result<crate::l3fwd::Report, String> {
    use sluice_dataplane::engine::{default_cores, Engine, EngineConfig};
    use sluice_dataplane::stages::service::ServiceConfig;
    use sluice_dataplane::stages::service_pipeline;
    use sluice_dataplane::state::conntrack::ConntrackConfig;
    use sluice_dataplane::tables::cell::TableCell;
    let machine = crate::machine::describe();
    let frames = crate::peers::service_traffic(s, p.flows)?;
    let (tables, _rings) = crate::service_lb::build_tables(s)?;
    let opened = ports(d, &frames, p.workers.max(1))?;
    let mode = if d.dpdk_copy { "copy" } else { "zero-copy" };
    let io = format!(
        "dpdk ({mode}): {}; {} Services x {} endpoints, {} UDP flows, conntrack + DNAT",
        opened.eal.join(" "),
        s.services,
        s.endpoints,
        p.flows
    );
    let cfg = EngineConfig {
        workers: 1,
        cores: default_cores(1),
        ..EngineConfig::default()
    };
    let svc = ServiceConfig {
        conntrack: ConntrackConfig {
            capacity_v4: s.conntrack_capacity,
            ..ConntrackConfig::default()
        },
        ..ServiceConfig::default()
    };
    let engine = Engine::start_each(opened.ports, TableCell::new(tables), &cfg, move |_| {
        service_pipeline(&svc)
    })
    .map_err(|e| e.to_string())?;
    std::thread::sleep(std::time::Duration::from_secs(1));
    let m = crate::measure::measure(engine, p.seconds, "dpdk-service-lb", progress);
    drop(opened.capture);
    if m.result.forwarded == 0 {
        return Err(format!(
            "dpdk-service-lb forwarded nothing (drops: {:?})",
            m.result.drops_by_reason
        ));
    }
    Ok(crate::l3fwd::Report {
        scenario: "dpdk-service-lb".into(),
        params: p.clone(),
        io,
        frame_size: 64,
        machine,
        results: vec![m.result],
        ratios: Default::default(),
        rounds: 1,
        skipped: Vec::new(),
    })
}
