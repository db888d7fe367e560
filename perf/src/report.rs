//! `sluice-perf report`: reads the run JSON files that `sluice-perf run
//! --out` wrote (default `docs/benchmarks/data/`) and renders
//! `docs/benchmarks/README.md` (a section per scenario: the systems side by
//! side, the ratios, the skipped peers, the machine and its noise, the
//! command) and SVG plots: throughput against the swept table size for each
//! sweep, and the latency CDF where a generator timestamped packets.
//!
//! The reader is lenient on purpose: every field has a default, so files
//! from older or newer harnesses (other scenario kinds, extra fields) load.

use crate::conditions::Conditions;
use crate::svg::{Plot, Series};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Throughput at the largest table of a sweep must stay within this share
/// of the smallest table's (the issue's cost-growth target: within 30%).
pub const COST_GROWTH_TARGET: f64 = 0.30;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MachineView {
    pub cpu: String,
    pub cores: usize,
    pub tsc_ghz: f64,
    pub kernel: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ResultView {
    pub system: String,
    pub workers: usize,
    pub mpps: f64,
    pub mpps_per_core: f64,
    pub ns_per_packet: f64,
    pub cycles_per_packet: f64,
    pub received: u64,
    pub forwarded: u64,
    pub dropped: u64,
    pub per_second_mpps: Vec<f64>,
    pub resident_mib: f64,
    pub round_mpps: Vec<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SkippedView {
    pub system: String,
    pub reason: String,
}

/// The latency scenario's percentiles, as its runs write them.
pub type LatencyView = crate::latency::Percentiles;

/// One run of one scenario (or one point of a sweep).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunView {
    pub scenario: String,
    pub description: String,
    pub command: String,
    pub io: String,
    pub frame_size: usize,
    pub machine: MachineView,
    pub conditions: Option<Conditions>,
    pub results: Vec<ResultView>,
    pub ratios: BTreeMap<String, f64>,
    pub rounds: usize,
    pub skipped: Vec<SkippedView>,
    pub latency_ns: Option<LatencyView>,
    pub latency_cdf: Vec<(f64, f64)>,
    pub sent: u64,
    pub lost: u64,
    /// service-lb family.
    pub new_connections_per_second: Option<f64>,
    pub connections: Option<u64>,
    pub warmup_seconds: Option<f64>,
    /// policy family.
    pub compile_seconds: Option<f64>,
    pub table_mib: Option<f64>,
    /// When the run finished, UTC (RFC 3339).
    pub date: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SweepSpecView {
    pub parameter: String,
    pub points: Vec<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PointView {
    pub point: u64,
    pub report: RunView,
}

/// A sweep: one run per point.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SweepView {
    pub scenario: String,
    pub description: String,
    pub command: String,
    pub machine: MachineView,
    pub conditions: Option<Conditions>,
    pub sweep: SweepSpecView,
    pub runs: Vec<PointView>,
    pub date: String,
}

#[derive(Debug, Clone)]
pub enum Loaded {
    Run(Box<RunView>),
    Sweep(Box<SweepView>),
}

/// Reads one run JSON document.
pub fn parse(text: &str) -> Result<Loaded, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    if obj.contains_key("sweep") {
        let s: SweepView = serde_json::from_value(v).map_err(|e| e.to_string())?;
        if s.scenario.is_empty() {
            return Err("a sweep without \"scenario\"".into());
        }
        Ok(Loaded::Sweep(Box::new(s)))
    } else if obj.contains_key("results") {
        let r: RunView = serde_json::from_value(v).map_err(|e| e.to_string())?;
        if r.scenario.is_empty() {
            return Err("a run without \"scenario\"".into());
        }
        Ok(Loaded::Run(Box::new(r)))
    } else {
        Err("neither a run (\"results\") nor a sweep (\"sweep\")".into())
    }
}

/// Every `*.json` of `dir`, by file name. A file that is not a run is an
/// error naming it.
pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, Loaded)>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let l = parse(&text).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok((p, l))
        })
        .collect()
}

fn f2(v: f64) -> String {
    format!("{v:.2}")
}

fn f1(v: f64) -> String {
    format!("{v:.1}")
}

fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn machine_line(m: &MachineView, c: Option<&Conditions>, date: &str) -> String {
    let total = c.map_or(0, |c| c.cpu_busy_pct.len());
    let cpus = if total > m.cores {
        format!("{total} CPUs, {} usable by the run", m.cores)
    } else {
        format!("{} CPUs", m.cores)
    };
    let mut s = format!(
        "Machine: {} ({cpus}, TSC {:.3} GHz, Linux {})",
        if m.cpu.is_empty() {
            "unknown CPU"
        } else {
            &m.cpu
        },
        m.tsc_ghz,
        m.kernel
    );
    if let Some(c) = c {
        if c.cpu_mhz > 0.0 {
            let _ = write!(s, ", {:.0} MHz", c.cpu_mhz);
        }
        let busy: Vec<String> = c
            .cpu_busy_pct
            .iter()
            .enumerate()
            .map(|(i, b)| format!("cpu{i} {b:.0}%"))
            .collect();
        let _ = write!(
            s,
            ". During the run: {}; busy {}; steal {:.1}%",
            c.note,
            busy.join(", "),
            c.steal_pct
        );
        if let Some(share) = c.own_share_of_measured_pct {
            let _ = write!(s, "; the run had {share:.0}% of its measured core");
        }
    }
    if !date.is_empty() {
        let _ = write!(s, ". Finished {date}");
    }
    s.push('.');
    s
}

/// A markdown link target for a file next to the report.
fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The systems table of one run.
pub fn results_table(r: &RunView) -> String {
    let mut s = String::new();
    s.push_str("| system | workers | Mpps | Mpps per core | ns / packet | cycles / packet | resident MiB | runs (Mpps) |\n");
    s.push_str("|---|---|---|---|---|---|---|---|\n");
    for x in &r.results {
        let runs = if x.round_mpps.len() > 1 {
            x.round_mpps
                .iter()
                .map(|v| f2(*v))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            "1".into()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | **{}** | {} | {:.0} | {} | {} |",
            x.system,
            x.workers,
            f2(x.mpps),
            f2(x.mpps_per_core),
            f1(x.ns_per_packet),
            x.cycles_per_packet,
            if x.resident_mib > 0.0 {
                format!("{:.0}", x.resident_mib)
            } else {
                "—".into()
            },
            runs
        );
    }
    s
}

fn ratios_block(r: &RunView) -> String {
    let mut s = String::new();
    if !r.ratios.is_empty() {
        s.push_str("\n| pair (Mpps per core) | ratio |\n|---|---|\n");
        for (k, v) in &r.ratios {
            let _ = writeln!(s, "| {k} | **{v:.2}×** |");
        }
    }
    if !r.skipped.is_empty() {
        s.push('\n');
        for k in &r.skipped {
            let _ = writeln!(s, "- {} not measured: {}", k.system, k.reason);
        }
    }
    s
}

fn extras_line(r: &RunView) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(n) = r.new_connections_per_second {
        parts.push(format!("{} new connections/s", thousands(n.round() as u64)));
    }
    if let Some(c) = r.connections {
        parts.push(format!(
            "{} connections in the table at the end",
            thousands(c)
        ));
    }
    if let Some(w) = r.warmup_seconds {
        parts.push(format!("connection warm-up {w:.1} s"));
    }
    if let Some(c) = r.compile_seconds {
        parts.push(format!("policy compile {c:.2} s"));
    }
    if let Some(t) = r.table_mib {
        parts.push(format!("policy table {t:.1} MiB"));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The latency percentiles table.
pub fn latency_table(l: &LatencyView, sent: u64, lost: u64) -> String {
    let mut s = String::from(
        "| samples | min | p50 | p90 | p99 | p99.9 | max | lost |\n|---|---|---|---|---|---|---|---|\n",
    );
    let us = |ns: u64| format!("{:.1} µs", ns as f64 / 1000.0);
    let _ = writeln!(
        s,
        "| {} | {} | {} | {} | {} | {} | {} | {} of {} |",
        thousands(l.samples),
        us(l.min),
        us(l.p50),
        us(l.p90),
        us(l.p99),
        us(l.p999),
        us(l.max),
        thousands(lost),
        thousands(sent)
    );
    s
}

/// The latency CDF plot of a run.
pub fn latency_plot(r: &RunView) -> Plot {
    Plot {
        title: format!("{}: latency CDF", r.scenario),
        x_label: "latency (ns, log scale)".into(),
        y_label: "fraction of packets at or below".into(),
        x_log: true,
        y_from_zero: true,
        markers: false,
        series: vec![Series {
            name: "sluice".into(),
            points: r.latency_cdf.clone(),
        }],
    }
}

/// Throughput against the swept parameter, one line per system.
pub fn sweep_plot(s: &SweepView) -> Plot {
    let mut by_system: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for p in &s.runs {
        for r in &p.report.results {
            by_system
                .entry(r.system.clone())
                .or_default()
                .push((p.point as f64, r.mpps_per_core));
        }
    }
    // Sluice first, then the peers by name.
    let mut series: Vec<Series> = Vec::new();
    if let Some(points) = by_system.remove("sluice") {
        series.push(Series {
            name: "sluice".into(),
            points,
        });
    }
    series.extend(
        by_system
            .into_iter()
            .map(|(name, points)| Series { name, points }),
    );
    Plot {
        title: format!("{}: throughput vs {}", s.scenario, s.sweep.parameter),
        x_label: format!("{} (log scale)", s.sweep.parameter),
        y_label: "Mpps per worker core".into(),
        x_log: true,
        y_from_zero: true,
        markers: true,
        series,
    }
}

/// Sluice's throughput at the last point over the first, if both exist.
pub fn cost_growth(s: &SweepView) -> Option<(u64, f64, u64, f64)> {
    let sluice = |p: &PointView| {
        p.report
            .results
            .iter()
            .find(|r| r.system == "sluice")
            .map(|r| r.mpps_per_core)
    };
    let first = s.runs.first()?;
    let last = s.runs.last()?;
    if s.runs.len() < 2 {
        return None;
    }
    Some((first.point, sluice(first)?, last.point, sluice(last)?))
}

fn command_block(command: &str) -> String {
    if command.is_empty() {
        String::new()
    } else {
        format!("\n```sh\n{command}\n```\n")
    }
}

/// The section of one run; `plots` are the files written for it.
pub fn run_section(r: &RunView, plots: &[PathBuf]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## `{}`\n", r.scenario);
    if !r.description.is_empty() {
        let _ = writeln!(s, "{}\n", r.description);
    }
    s.push_str(&results_table(r));
    s.push_str(&ratios_block(r));
    if let Some(x) = extras_line(r) {
        let _ = writeln!(s, "\n{x}.");
    }
    if let Some(l) = &r.latency_ns {
        s.push('\n');
        s.push_str(&latency_table(l, r.sent, r.lost));
    }
    for p in plots {
        let _ = writeln!(s, "\n![{}]({})", file_name(p), file_name(p));
    }
    s.push_str(&command_block(&r.command));
    let _ = writeln!(
        s,
        "\n{}\n",
        machine_line(&r.machine, r.conditions.as_ref(), &r.date)
    );
    s
}

/// The section of one sweep.
pub fn sweep_section(sw: &SweepView, plots: &[PathBuf]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## `{}`\n", sw.scenario);
    if !sw.description.is_empty() {
        let _ = writeln!(s, "{}\n", sw.description);
    }
    let first = sw.runs.first().and_then(|p| {
        p.report
            .results
            .iter()
            .find(|r| r.system == "sluice")
            .map(|r| r.mpps_per_core)
    });
    let _ = writeln!(
        s,
        "| {} | system | Mpps per core | vs. first point | ns / packet | cycles / packet | resident MiB | note |",
        sw.sweep.parameter
    );
    s.push_str("|---|---|---|---|---|---|---|---|\n");
    for p in &sw.runs {
        for r in &p.report.results {
            let rel = match (r.system.as_str(), first) {
                ("sluice", Some(f)) if f > 0.0 => format!("{:.0}%", r.mpps_per_core * 100.0 / f),
                _ => "—".into(),
            };
            let note = p
                .report
                .conditions
                .as_ref()
                .map(|c| c.note.split(':').next().unwrap_or("").to_string())
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "| {} | {} | **{}** | {} | {} | {:.0} | {:.0} | {} |",
                thousands(p.point),
                r.system,
                f2(r.mpps_per_core),
                rel,
                f1(r.ns_per_packet),
                r.cycles_per_packet,
                r.resident_mib,
                note
            );
        }
        for k in &p.report.skipped {
            let _ = writeln!(
                s,
                "| {} | {} | — | — | — | — | — | not measured: {} |",
                thousands(p.point),
                k.system,
                k.reason
            );
        }
    }
    if let Some((p0, v0, p1, v1)) = cost_growth(sw) {
        let share = v1 / v0;
        let met = share >= 1.0 - COST_GROWTH_TARGET;
        let _ = writeln!(
            s,
            "\nCost growth: at {} {} Sluice forwards **{:.2}** Mpps per core, **{:.0}%** of the {:.2} at {} (target: within {:.0}%, i.e. at least {:.0}%): **{}**.",
            thousands(p1),
            sw.sweep.parameter,
            v1,
            share * 100.0,
            v0,
            thousands(p0),
            COST_GROWTH_TARGET * 100.0,
            (1.0 - COST_GROWTH_TARGET) * 100.0,
            if met { "met" } else { "missed" }
        );
    }
    for p in plots {
        let _ = writeln!(s, "\n![{}]({})", file_name(p), file_name(p));
    }
    s.push_str(&command_block(&sw.command));
    let _ = writeln!(
        s,
        "\n{}\n",
        machine_line(&sw.machine, sw.conditions.as_ref(), &sw.date)
    );
    s
}

/// Renders everything of `data` into `out`: README.md and the plots.
/// Returns the files written.
pub fn render(data: &Path, out: &Path) -> Result<Vec<PathBuf>, String> {
    let loaded = load_dir(data)?;
    if loaded.is_empty() {
        return Err(format!(
            "{}: no run JSON files (write them with `sluice-perf run NAME --out {}/NAME.json`)",
            data.display(),
            data.display()
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut written = Vec::new();
    let mut write = |path: PathBuf, text: &str| -> Result<PathBuf, String> {
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path.clone());
        Ok(path)
    };
    let data_rel = pathdiff(data, out);
    let mut md = String::new();
    md.push_str("# Benchmark report\n\n");
    let _ = writeln!(
        md,
        "Generated by `sluice-perf report` from the run files in [`{}`]({}) \
         (each written by `sluice-perf run NAME --out FILE`, with the command below each \
         section). Every number of a table was measured in the same run as the numbers \
         beside it; compare within a table. \"Mpps per core\" is packets per second of \
         one worker core; cycles are TSC cycles. The machine line says what else ran: \
         on this project's 2-CPU machines other work on the other CPU is common, and a \
         noisy run is marked so. Written-up results and their targets are in \
         [../benchmarks.md](../benchmarks.md).\n",
        data_rel, data_rel
    );
    md.push_str("| scenario | what | Sluice Mpps per core |\n|---|---|---|\n");
    for (_, l) in &loaded {
        let (name, what, v) = match l {
            Loaded::Run(r) => (
                &r.scenario,
                &r.description,
                match (
                    &r.latency_ns,
                    r.results.iter().find(|x| x.system == "sluice"),
                ) {
                    (Some(l), _) => format!(
                        "latency p50 {:.1} µs, p99 {:.1} µs",
                        l.p50 as f64 / 1e3,
                        l.p99 as f64 / 1e3
                    ),
                    (None, Some(x)) => f2(x.mpps_per_core),
                    (None, None) => "—".into(),
                },
            ),
            Loaded::Sweep(s) => (
                &s.scenario,
                &s.description,
                match cost_growth(s) {
                    Some((p0, v0, p1, v1)) => format!(
                        "{} → {} ({} → {} {})",
                        f2(v0),
                        f2(v1),
                        thousands(p0),
                        thousands(p1),
                        s.sweep.parameter
                    ),
                    None => "—".into(),
                },
            ),
        };
        let _ = writeln!(md, "| [`{name}`](#{}) | {what} | {v} |", anchor(name));
    }
    md.push('\n');
    for (_, l) in &loaded {
        match l {
            Loaded::Run(r) => {
                let mut plots = Vec::new();
                if r.latency_cdf.len() > 1 {
                    let p = out.join(format!("{}-latency-cdf.svg", r.scenario));
                    plots.push(write(p, &latency_plot(r).render())?);
                }
                md.push_str(&run_section(r, &plots));
            }
            Loaded::Sweep(s) => {
                let p = out.join(format!("{}.svg", s.scenario));
                let plots = vec![write(p, &sweep_plot(s).render())?];
                md.push_str(&sweep_section(s, &plots));
            }
        }
    }
    write(out.join("README.md"), &md)?;
    Ok(written)
}

/// GitHub's heading anchor for "`name`".
fn anchor(name: &str) -> String {
    name.chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => Some(c),
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            ' ' => Some('-'),
            _ => None,
        })
        .collect()
}

/// `to` relative to `from` when `to` is under it, else `to` as given.
fn pathdiff(to: &Path, from: &Path) -> String {
    match to.strip_prefix(from) {
        Ok(rel) => rel.display().to_string(),
        Err(_) => to.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_json() -> String {
        serde_json::json!({
            "scenario": "dpdk-l3fwd",
            "description": "L3 forwarding over DPDK",
            "command": "sluice-perf run dpdk-l3fwd --peers all --out x.json",
            "machine": {"cpu": "AMD EPYC", "cores": 2, "tsc_ghz": 2.596, "kernel": "6.18"},
            "conditions": {"load_before": [1.0, 1.0, 1.0], "load_after": [1.2, 1.0, 1.0],
                           "cpu_busy_pct": [12.0, 100.0], "steal_pct": 0.0, "cpu_mhz": 2596.1,
                           "note": "quiet: load average 1.00 → 1.20, steal 0.0%"},
            "results": [
                {"system": "sluice", "workers": 1, "mpps": 16.21, "mpps_per_core": 16.21,
                 "ns_per_packet": 61.7, "cycles_per_packet": 160.2, "resident_mib": 250.0,
                 "round_mpps": [16.18, 16.21, 16.3], "drops_by_reason": {}},
                {"system": "ovs-dpdk", "workers": 1, "mpps": 10.5, "mpps_per_core": 10.5,
                 "ns_per_packet": 95.2, "cycles_per_packet": 248.0, "resident_mib": 0.0}
            ],
            "ratios": {"sluice/ovs-dpdk": 1.5438},
            "rounds": 3,
            "skipped": [{"system": "linux", "reason": "not the same I/O"}],
            "unknown_future_field": 7
        })
        .to_string()
    }

    fn sweep_json() -> String {
        let point = |p: u64, mpps: f64| {
            serde_json::json!({"point": p, "report": {
                "scenario": "sweep-routes",
                "results": [{"system": "sluice", "workers": 1, "mpps": mpps, "mpps_per_core": mpps,
                             "ns_per_packet": 1e3 / mpps, "cycles_per_packet": 2596.0 / mpps,
                             "resident_mib": 100.0}]}})
        };
        serde_json::json!({
            "scenario": "sweep-routes",
            "description": "l3fwd, routes 1k to 1M",
            "command": "sluice-perf run sweep-routes --out y.json",
            "sweep": {"parameter": "routes", "points": [1000, 10000, 100000, 1000000]},
            "runs": [point(1000, 24.0), point(10000, 23.0), point(100000, 21.0), point(1000000, 16.0)]
        })
        .to_string()
    }

    #[test]
    fn the_markdown_table_has_the_numbers_and_the_ratios_of_the_json() {
        let Loaded::Run(r) = parse(&run_json()).unwrap() else {
            panic!("a run")
        };
        let md = run_section(&r, &[]);
        assert!(
            md.contains(
                "| sluice | 1 | 16.21 | **16.21** | 61.7 | 160 | 250 | 16.18, 16.21, 16.30 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| ovs-dpdk | 1 | 10.50 | **10.50** | 95.2 | 248 | — | 1 |"),
            "{md}"
        );
        assert!(md.contains("| sluice/ovs-dpdk | **1.54×** |"), "{md}");
        assert!(
            md.contains("- linux not measured: not the same I/O"),
            "{md}"
        );
        assert!(md.contains("sluice-perf run dpdk-l3fwd --peers all --out x.json"));
        assert!(
            md.contains("AMD EPYC (2 CPUs, TSC 2.596 GHz, Linux 6.18)"),
            "{md}"
        );
        assert!(md.contains("quiet: load average"), "{md}");
    }

    #[test]
    fn a_sweep_renders_a_table_a_cost_growth_verdict_and_a_plot() {
        let Loaded::Sweep(s) = parse(&sweep_json()).unwrap() else {
            panic!("a sweep")
        };
        let md = sweep_section(&s, &[PathBuf::from("out/sweep-routes.svg")]);
        assert!(
            md.contains("| 1,000,000 | sluice | **16.00** | 67% |"),
            "{md}"
        );
        assert!(md.contains("**67%** of the 24.00 at 1,000"), "{md}");
        assert!(md.contains("**missed**"), "{md}");
        assert!(md.contains("![sweep-routes.svg](sweep-routes.svg)"));
        let svg = sweep_plot(&s).render();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        assert_eq!(
            doc.descendants()
                .filter(|n| n.has_tag_name("circle"))
                .count(),
            4
        );
    }

    #[test]
    fn render_writes_the_report_and_the_plots_from_a_directory() {
        let dir = std::env::temp_dir().join(format!("sluice-perf-report-{}", std::process::id()));
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("dpdk-l3fwd.json"), run_json()).unwrap();
        std::fs::write(data.join("sweep-routes.json"), sweep_json()).unwrap();
        let latency = serde_json::json!({
            "scenario": "latency", "results": [], "sent": 1000, "lost": 0,
            "latency_ns": {"samples": 1000, "min": 900, "mean": 1500.0, "p50": 1400, "p90": 2000,
                           "p99": 5000, "p999": 9000, "max": 20000},
            "latency_cdf": [[900, 0.0], [1400, 0.5], [2000, 0.9], [5000, 0.99], [20000, 1.0]]
        });
        std::fs::write(data.join("latency.json"), latency.to_string()).unwrap();
        let written = render(&data, &dir).unwrap();
        let names: Vec<String> = written.iter().map(|p| file_name(p)).collect();
        assert_eq!(
            names,
            ["latency-latency-cdf.svg", "sweep-routes.svg", "README.md"]
        );
        let md = std::fs::read_to_string(dir.join("README.md")).unwrap();
        assert!(md.contains("[`data`](data)"), "{md}");
        assert!(md.contains("| [`sweep-routes`](#sweep-routes) | l3fwd, routes 1k to 1M | 24.00 → 16.00 (1,000 → 1,000,000 routes) |"), "{md}");
        assert!(
            md.contains(
                "| 1,000 | 0.9 µs | 1.4 µs | 2.0 µs | 5.0 µs | 9.0 µs | 20.0 µs | 0 of 1,000 |"
            ),
            "{md}"
        );
        let cdf = std::fs::read_to_string(dir.join("latency-latency-cdf.svg")).unwrap();
        let doc = roxmltree::Document::parse(&cdf).unwrap();
        let poly = doc
            .descendants()
            .find(|n| n.has_tag_name("polyline"))
            .unwrap();
        assert_eq!(poly.attribute("points").unwrap().split(' ').count(), 5);
        // A file that is not a run is refused by name.
        std::fs::write(data.join("junk.json"), "{\"x\": 1}").unwrap();
        let e = render(&data, &dir).unwrap_err();
        assert!(e.contains("junk.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
