//! The stateful TCP scenarios: `pktgen-tcp` opens connections as fast as
//! slots free up, at most 1,000 open, each a handshake, a 100-byte request,
//! a 1,000-byte response and a close, with smoltcp on both ends in one
//! thread over a mem loopback; `pktgen-tcp-service` does the same through
//! Sluice's Service pipeline (one worker, a ClusterIP with 4 endpoints).
//! The generator is pinned to the last core (and so is the worker: on a
//! two-core machine run it under `taskset -c 1` and the two share it).
//! `cps` is wall-clock; `cps_per_generator_cpu_second` counts only the
//! CPU time the generator thread got (the whole cost of both TCP stacks in
//! `pktgen-tcp`).

use crate::machine;
use crate::pktgen::thread_cpu_ns;
use serde::Serialize;
use sluice_dataplane::engine::default_cores;
use sluice_pktgen::link::LinkConfig;
use sluice_pktgen::tcp::{self, dut, TcpConfig, TcpReport};

#[derive(Debug, Serialize)]
pub struct TcpScenarioReport {
    pub scenario: String,
    pub machine: machine::Machine,
    pub cps: f64,
    pub generator_cpu_seconds: f64,
    pub cps_per_generator_cpu_second: f64,
    pub report: TcpReport,
}

pub fn run(
    runner: &str,
    scenario: &str,
    seconds: u64,
    progress: bool,
) -> Result<TcpScenarioReport, String> {
    let base = TcpConfig {
        concurrent: 1000,
        request: 100,
        response: 1000,
        seconds: Some(seconds.max(1) as f64),
        ..TcpConfig::default()
    };
    let core = default_cores(1).first().copied();
    if let Some(c) = core {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let name = scenario.to_string();
    let mut live = move |p: &tcp::TcpProgress| {
        if progress {
            eprintln!("{name}: {}", p.line());
        }
    };
    let cpu0 = thread_cpu_ns();
    let report = match runner {
        "pktgen-tcp" => tcp::run_loopback(&base, &LinkConfig::default(), &mut live)?,
        "pktgen-tcp-service" => {
            let cfg = dut::service_config(&base, 4, false);
            let d = dut::ServiceDut::start(4, core)?;
            d.run(&cfg, &mut live)?
        }
        other => return Err(format!("unknown scenario {other:?}")),
    };
    let cpu = (thread_cpu_ns() - cpu0) as f64 / 1e9;
    if report.client.failed > 0 || report.unfinished > 0 {
        return Err(format!(
            "{scenario}: {} connections failed and {} did not finish",
            report.client.failed, report.unfinished
        ));
    }
    Ok(TcpScenarioReport {
        scenario: scenario.to_string(),
        machine: machine::describe(),
        cps: report.cps,
        generator_cpu_seconds: cpu,
        cps_per_generator_cpu_second: report.client.completed as f64 / cpu.max(1e-9),
        report,
    })
}
