//! `sluice-perf`: Sluice's benchmark harness.
//!
//! Scenarios are files (`perf/scenarios/NAME.toml`, see [`scenario`]):
//! `sluice-perf list` lists them, `sluice-perf run NAME` runs one (flags on
//! the command line override the file), a sweep runs each of its points and
//! writes one JSON with all of them, and `sluice-perf report` renders the
//! JSON files of `docs/benchmarks/data/` into `docs/benchmarks/README.md`
//! with SVG plots.
//!
//! `sluice-perf run l3fwd --json` forwards 64-byte frames of 10,000 flows
//! through one worker with a 100,000-route table, from an in-memory replay
//! port to an in-memory sink, and reports Mpps per worker core, ns and TSC
//! cycles per packet.

mod chain;
mod conditions;
#[cfg(feature = "dpdk")]
mod dpdk;
mod l3fwd;
mod latency;
mod machine;
mod measure;
mod peers;
mod pktgen;
mod pktgen_tcp;
mod policy;
mod progress;
mod report;
mod scenario;
mod service_lb;
mod svg;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use scenario::{Scenario, Targets};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "sluice-perf", version, about = "Sluice benchmark harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// `Run` carries every runner's parameters; the value is parsed once.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// List the scenario files with their descriptions.
    List {
        /// Where the scenario files are (default: perf/scenarios).
        #[arg(long)]
        scenarios: Option<PathBuf>,
    },
    /// Run a scenario (a file of perf/scenarios, or a runner by name).
    Run {
        /// The scenario's name (`sluice-perf list`).
        scenario: String,
        /// Where the scenario files are (default: perf/scenarios).
        #[arg(long)]
        scenarios: Option<PathBuf>,
        #[command(flatten)]
        params: l3fwd::Params,
        #[command(flatten)]
        service: service_lb::Params,
        #[cfg(feature = "dpdk")]
        #[command(flatten)]
        dpdk: dpdk::DpdkParams,
        #[command(flatten)]
        policy: policy::PolicyParams,
        #[command(flatten)]
        latency: latency::LatencyParams,
        #[command(flatten)]
        chain: chain::ChainParams,
        #[command(flatten)]
        peers: peers::PeerArgs,
        /// A sweep's points to run, comma-separated (default: the file's).
        #[arg(long, value_delimiter = ',')]
        points: Option<Vec<u64>>,
        /// Print the result as one JSON object on standard output.
        #[arg(long)]
        json: bool,
        /// Also write the result (pretty JSON) to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Render the run files into a markdown report with SVG plots.
    Report {
        /// The directory of run JSON files.
        #[arg(long, default_value = "docs/benchmarks/data")]
        data: PathBuf,
        /// Where README.md and the plots go.
        #[arg(long, default_value = "docs/benchmarks")]
        out: PathBuf,
    },
}

fn main() {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let code = match cli.command {
        Command::List { scenarios } => list(&scenarios.unwrap_or_else(scenario::default_dir)),
        Command::Report { data, out } => match report::render(&data, &out) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                Ok(())
            }
            Err(e) => Err(e),
        },
        Command::Run {
            scenario,
            scenarios,
            mut params,
            mut service,
            #[cfg(feature = "dpdk")]
            mut dpdk,
            mut policy,
            mut latency,
            points,
            peers,
            mut chain,
            json,
            out,
        } => {
            let run_matches = matches.subcommand_matches("run");
            let mut t = Targets {
                l3: &mut params,
                service: &mut service,
                policy: &mut policy,
                latency: &mut latency,
                chain: &mut chain,
                #[cfg(feature = "dpdk")]
                dpdk: &mut dpdk,
            };
            let dir = scenarios.unwrap_or_else(scenario::default_dir);
            run(
                &scenario,
                &dir,
                run_matches,
                &mut t,
                &peers,
                points,
                json,
                out.as_deref(),
            )
        }
    };
    if let Err(e) = code {
        eprintln!("sluice-perf: {e}");
        std::process::exit(1);
    }
}

fn list(dir: &Path) -> Result<(), String> {
    let all = Scenario::load_all(dir)?;
    let width = all.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in &all {
        let mut extra = String::new();
        if let Some(sw) = &s.file.sweep {
            let pts: Vec<String> = sw.points.iter().map(|p| svg::short(*p as f64)).collect();
            extra.push_str(&format!(" [sweep {}: {}]", sw.parameter, pts.join(", ")));
        }
        if !s.file.peers.is_empty() {
            extra.push_str(&format!(" [peers: {}]", s.file.peers.join(", ")));
        }
        println!("{:width$}  {}{extra}", s.name, s.file.description);
    }
    Ok(())
}

/// The command line as typed, for the report (program name without its
/// directory).
fn command_line() -> String {
    let mut args = std::env::args();
    let prog = args
        .next()
        .map(|p| {
            Path::new(&p)
                .file_name()
                .map_or(p.clone(), |f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "sluice-perf".into());
    std::iter::once(prog)
        .chain(args.map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Runs one measurement of `runner` with the parameters as they stand and
/// returns its report as JSON, with the machine's conditions around it.
fn run_one(runner: &str, name: &str, t: &mut Targets<'_>, progress: bool) -> Result<Value, String> {
    // Parameters that follow from others.
    t.service.settle_seconds = t.l3.warmup;
    t.service.extra_routes = if runner == "full" { t.l3.routes } else { 0 };
    let cores = sluice_dataplane::engine::default_cores(t.l3.workers.max(1));
    let before = conditions::snapshot();
    let mut value = measure_runner(runner, name, t, progress)?;
    let after = conditions::snapshot();
    stamp(&mut value, conditions::between(&before, &after, &cores))?;
    Ok(value)
}

/// Adds the machine's conditions during the run and the time it ended.
fn stamp(value: &mut Value, c: conditions::Conditions) -> Result<(), String> {
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "conditions".into(),
            serde_json::to_value(c).map_err(|e| e.to_string())?,
        );
        obj.insert("date".into(), Value::String(now_utc()));
    }
    Ok(())
}

fn to_value<T: serde::Serialize>(r: Result<T, String>) -> Result<Value, String> {
    serde_json::to_value(r?).map_err(|e| e.to_string())
}

/// Dispatches to the runner's code.
fn measure_runner(
    runner: &str,
    name: &str,
    t: &mut Targets<'_>,
    progress: bool,
) -> Result<Value, String> {
    match runner {
        "policy" | "full" => {
            return to_value(policy::run(
                name,
                t.service,
                t.policy,
                t.l3.seconds,
                progress,
            ))
        }
        "service-lb" => {
            return to_value(service_lb::run_scenario(
                name,
                t.service,
                t.l3.seconds,
                progress,
                None,
            ))
        }
        "latency" => return to_value(latency::run(name, t.l3, t.latency, progress)),
        "pktgen" => return to_value(pktgen::run(name, false, t.l3, progress)),
        "pktgen-marked" => return to_value(pktgen::run(name, true, t.l3, progress)),
        "chain" => return to_value(chain::run(name, t.l3, t.chain, progress)),
        "pktgen-tcp" | "pktgen-tcp-service" => {
            return to_value(pktgen_tcp::run(runner, name, t.l3.seconds, progress))
        }
        #[cfg(feature = "dpdk")]
        "dpdk-service-lb" => {
            return to_value(dpdk::run_service_lb(t.l3, t.service, t.dpdk, progress))
        }
        #[cfg(not(feature = "dpdk"))]
        "dpdk-service-lb" => return Err(format!("{runner} needs a build with --features dpdk")),
        _ => {}
    }
    let (io, base) = match runner.strip_prefix("dpdk-") {
        #[cfg(feature = "dpdk")]
        Some(rest) => (l3fwd::Io::Dpdk(t.dpdk.clone()), rest),
        #[cfg(not(feature = "dpdk"))]
        Some(_) => return Err(format!("{runner} needs a build with --features dpdk")),
        None => (l3fwd::Io::Mem, runner),
    };
    let (family, mode) = match base {
        "l3fwd" => (l3fwd::Family::V4, l3fwd::Mode::Route),
        "l3fwd-v6" => (l3fwd::Family::V6, l3fwd::Mode::Route),
        "io" => (l3fwd::Family::V4, l3fwd::Mode::Io),
        "parse" => (l3fwd::Family::V4, l3fwd::Mode::ParseOnly),
        "parse-route" => (l3fwd::Family::V4, l3fwd::Mode::ParseRoute),
        other => {
            return Err(format!(
                "runner {other:?} is not in this build (try `sluice-perf list`)"
            ))
        }
    };
    to_value(l3fwd::run(name, family, mode, t.l3, &io, progress))
}

/// Runs `runner` beside its peers in alternating rounds (perf/src/peers),
/// with the machine's conditions around the whole run.
fn side_by_side(
    runner: &str,
    name: &str,
    t: &mut Targets<'_>,
    peer_args: &peers::PeerArgs,
    progress: bool,
) -> Result<Value, String> {
    #[cfg(feature = "dpdk")]
    {
        let cores = sluice_dataplane::engine::default_cores(t.l3.workers.max(1));
        let before = conditions::snapshot();
        let mut report = peers::side_by_side(runner, peer_args, t.l3, t.service, t.dpdk, progress)?;
        report.scenario = name.to_string();
        let after = conditions::snapshot();
        // Every system runs in a process of its own (Sluice's rounds too):
        // this process's share of the forwarding core says nothing.
        let mut c = conditions::between(&before, &after, &cores);
        c.own_share_of_measured_pct = None;
        c.note = format!(
            "{} (in a side-by-side run the other core holds the systems' main lcores and the veth generator)",
            conditions::note(&c, &cores)
        );
        let mut value = serde_json::to_value(report).map_err(|e| e.to_string())?;
        stamp(&mut value, c)?;
        Ok(value)
    }
    #[cfg(not(feature = "dpdk"))]
    {
        let _ = (name, t, peer_args, progress);
        Err(format!(
            "{runner}: its peers run beside Sluice's dpdk backend: build with --features dpdk"
        ))
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    name: &str,
    dir: &Path,
    matches: Option<&ArgMatches>,
    t: &mut Targets<'_>,
    peer_args: &peers::PeerArgs,
    points: Option<Vec<u64>>,
    json: bool,
    out: Option<&Path>,
) -> Result<(), String> {
    let path = dir.join(format!("{name}.toml"));
    let file = if path.exists() {
        let s = Scenario::load(dir, name)?;
        s.apply(matches, t);
        Some(s)
    } else if scenario::RUNNERS.contains(&name) {
        // A runner without a file: the command line's parameters alone.
        None
    } else {
        return Err(format!(
            "no scenario {name:?} ({} does not exist; try `sluice-perf list`)",
            path.display()
        ));
    };
    let runner = file
        .as_ref()
        .map_or(name.to_string(), |s| s.file.runner.clone());
    let description = file
        .as_ref()
        .map(|s| s.file.description.clone())
        .unwrap_or_default();
    peers::select(&runner, peer_args.peers.as_deref())?;
    let progress = true;
    let mut value = match file
        .as_ref()
        .and_then(|s| s.file.sweep.clone().map(|sw| (s, sw)))
    {
        Some((s, sweep)) => {
            if let Some(flag) = s.sweep_flag() {
                let id = sweep.parameter.as_str();
                if matches.is_some_and(|m| {
                    m.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
                }) {
                    return Err(format!(
                        "{name} sweeps {}: {flag} cannot be set too (use --points)",
                        sweep.parameter
                    ));
                }
            }
            let pts = points.unwrap_or_else(|| sweep.points.clone());
            if pts.is_empty() {
                return Err("--points: no point to run".into());
            }
            let before = conditions::snapshot();
            let mut runs = Vec::with_capacity(pts.len());
            for (i, &p) in pts.iter().enumerate() {
                s.apply_point(p, t);
                progress::set_prefix(&format!(
                    "[{}/{}] {}={} ",
                    i + 1,
                    pts.len(),
                    sweep.parameter,
                    svg::short(p as f64)
                ));
                let r = run_one(&runner, name, t, progress)
                    .map_err(|e| format!("{name}, {} = {p}: {e}", sweep.parameter))?;
                runs.push(json!({"point": p, "report": r}));
            }
            progress::set_prefix("");
            let after = conditions::snapshot();
            let cores = sluice_dataplane::engine::default_cores(t.l3.workers.max(1));
            let machine = runs
                .first()
                .and_then(|r| r["report"].get("machine").cloned())
                .unwrap_or(Value::Null);
            json!({
                "scenario": name,
                "description": description,
                "sweep": {"parameter": sweep.parameter, "points": pts},
                "runs": runs,
                "machine": machine,
                "conditions": conditions::between(&before, &after, &cores),
                "date": now_utc(),
            })
        }
        None => {
            if points.is_some() {
                return Err(format!("--points: {name} is not a sweep"));
            }
            let mut v = if peers::is_side_by_side(&runner, peer_args) {
                side_by_side(&runner, name, t, peer_args, progress)?
            } else {
                run_one(&runner, name, t, progress)?
            };
            if let Some(obj) = v.as_object_mut() {
                obj.insert("description".into(), Value::String(description));
            }
            v
        }
    };
    if let Some(obj) = value.as_object_mut() {
        obj.insert("command".into(), Value::String(command_line()));
        if let Some(s) = &file {
            obj.insert("runner".into(), Value::String(s.file.runner.clone()));
            obj.insert(
                "scenario_file".into(),
                Value::String(s.path.display().to_string()),
            );
            obj.insert("peers_applicable".into(), json!(s.file.peers));
        }
    }
    if let Some(path) = out {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let text = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if json {
        println!(
            "{}",
            serde_json::to_string(&value).map_err(|e| e.to_string())?
        );
    } else {
        // The report's own rendering of this one run.
        let text = serde_json::to_string(&value).map_err(|e| e.to_string())?;
        match report::parse(&text).map_err(|e| e.to_string())? {
            report::Loaded::Run(r) => print!("{}", report::run_section(&r, &[])),
            report::Loaded::Sweep(s) => print!("{}", report::sweep_section(&s, &[])),
        }
    }
    Ok(())
}
