//! Scenarios as data: `perf/scenarios/NAME.toml` names the traffic, the
//! tables, the run's shape, the peers that apply and, for a sweep, the
//! parameter and its points. This module loads and checks a file (a bad one
//! is refused whole, with the file and the key named) and maps it onto the
//! runners' parameter structs; flags given on the command line win over the
//! file.
//!
//! ```toml
//! description = "IPv4 L3 forwarding, 100k routes, 10k flows, 64 B"
//! runner = "l3fwd"
//! peers = ["ovs-dpdk"]
//!
//! [traffic]
//! flows = 10000
//! frame_size = 64
//!
//! [tables]
//! routes = 100000
//!
//! [run]
//! workers = 1
//! seconds = 5
//! warmup_seconds = 1
//!
//! [sweep]            # optional: run once per point, one JSON with all
//! parameter = "routes"
//! points = [1000, 10000, 100000, 1000000]
//! ```

use crate::l3fwd;
use crate::latency::LatencyParams;
use crate::policy::PolicyParams;
use crate::service_lb;
use clap::parser::ValueSource;
use clap::ArgMatches;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the scenario files live: `SLUICE_PERF_SCENARIOS`, else
/// `perf/scenarios` under the current directory, else the crate's own
/// directory (as built).
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SLUICE_PERF_SCENARIOS") {
        return PathBuf::from(d);
    }
    let here = PathBuf::from("perf/scenarios");
    if here.is_dir() {
        return here;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios"))
}

/// The runners a file may name: the in-process scenarios of this crate.
pub const RUNNERS: &[&str] = &[
    "l3fwd",
    "l3fwd-v6",
    "io",
    "parse",
    "parse-route",
    "service-lb",
    "policy",
    "full",
    "latency",
    "pktgen",
    "pktgen-marked",
    "pktgen-tcp",
    "pktgen-tcp-service",
    "chain",
    "dpdk-l3fwd",
    "dpdk-io",
    "dpdk-service-lb",
];

/// The systems a scenario may be compared with.
pub const PEERS: &[&str] = &["testpmd", "ovs-dpdk", "linux", "sluice-afpacket"];

/// One scenario file, as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// One line for `sluice-perf list` and the report.
    pub description: String,
    /// Which runner measures it (see [`RUNNERS`]).
    pub runner: String,
    /// Peers that run the equivalent work (see [`PEERS`]).
    #[serde(default)]
    pub peers: Vec<String>,
    #[serde(default)]
    pub traffic: Traffic,
    #[serde(default)]
    pub tables: TablesSpec,
    #[serde(default)]
    pub run: RunSpec,
    pub sweep: Option<Sweep>,
}

/// What is sent.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Distinct flows of the replayed capture (l3fwd family).
    pub flows: Option<usize>,
    /// Frame size in bytes, without FCS.
    pub frame_size: Option<usize>,
    /// Share of packets that open a new connection (service-lb family).
    pub new_share: Option<f64>,
    /// A sluice-pktgen stream (short form), for the latency runner.
    pub stream: Option<String>,
    /// The generator's rate for the latency runner, packets per second.
    pub rate_pps: Option<f64>,
    /// Keep the capture the DPDK runners replay at this path.
    pub pcap: Option<PathBuf>,
}

/// What the tables hold.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TablesSpec {
    /// Synthetic routes (l3fwd family; extra routes for `full`).
    pub routes: Option<usize>,
    /// ClusterIP Services.
    pub services: Option<u32>,
    /// Endpoints per Service.
    pub endpoints: Option<u32>,
    /// Established connections (flows) the measured traffic runs over.
    pub connections: Option<u32>,
    /// Connection-table capacity: a number, or "auto" (1.5× the
    /// connections, rounded up to a power of two, at least 65,536).
    pub conntrack_capacity: Option<Capacity>,
    /// Namespaces the endpoint pods are spread over (policy, full).
    pub namespaces: Option<u32>,
    /// ClusterNetworkPolicies (policy, full).
    pub cluster_policies: Option<u32>,
    /// Pods with bandwidth limits (l3fwd family).
    pub shaped_pods: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Capacity {
    Auto,
    Entries(usize),
}

impl<'de> Deserialize<'de> for Capacity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Capacity::Entries(n as usize)),
            Raw::S(s) if s == "auto" => Ok(Capacity::Auto),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "expected a number or \"auto\", found {s:?}"
            ))),
        }
    }
}

/// How the run goes.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    pub workers: Option<usize>,
    /// Measured seconds.
    pub seconds: Option<u64>,
    /// Seconds between the end of set-up and the measurement.
    pub warmup_seconds: Option<u64>,
    pub seed: Option<u64>,
}

/// One parameter, several values: each point is a run.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// A numeric key of `[tables]` or `traffic.flows`, by its bare name.
    pub parameter: String,
    /// Increasing values.
    pub points: Vec<u64>,
}

/// A loaded, checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub path: PathBuf,
    pub file: ScenarioFile,
}

/// The parameter sets a scenario fills.
pub struct Targets<'a> {
    pub l3: &'a mut l3fwd::Params,
    pub service: &'a mut service_lb::Params,
    pub policy: &'a mut PolicyParams,
    pub latency: &'a mut LatencyParams,
    pub chain: &'a mut crate::chain::ChainParams,
    #[cfg(feature = "dpdk")]
    pub dpdk: &'a mut crate::dpdk::DpdkParams,
}

/// The keys each runner reads: anything else in a file is refused, so a
/// typo or a key of another runner never passes silently.
fn applies(runner: &str, key: &str) -> bool {
    let l3 = [
        "traffic.flows",
        "traffic.frame_size",
        "tables.routes",
        "tables.shaped_pods",
        "run.workers",
        "run.seconds",
        "run.warmup_seconds",
        "run.seed",
    ];
    let service = [
        "traffic.new_share",
        "tables.services",
        "tables.endpoints",
        "tables.connections",
        "tables.conntrack_capacity",
        "run.seconds",
        "run.warmup_seconds",
    ];
    let policy = ["tables.namespaces", "tables.cluster_policies"];
    match runner {
        "l3fwd" | "l3fwd-v6" | "io" | "parse" | "parse-route" => l3.contains(&key),
        "dpdk-l3fwd" | "dpdk-io" => {
            (l3.contains(&key) && key != "run.workers") || key == "traffic.pcap"
        }
        "service-lb" => service.contains(&key),
        "dpdk-service-lb" => service.contains(&key) || key == "traffic.pcap",
        "policy" => service.contains(&key) || policy.contains(&key),
        "full" => service.contains(&key) || policy.contains(&key) || key == "tables.routes",
        "latency" => [
            "traffic.stream",
            "traffic.rate_pps",
            "traffic.frame_size",
            "tables.routes",
            "run.seconds",
            "run.warmup_seconds",
            "run.seed",
        ]
        .contains(&key),
        "pktgen-tcp" | "pktgen-tcp-service" => key == "run.seconds",
        "chain" => l3.contains(&key) && key != "run.workers" && key != "tables.shaped_pods",
        "pktgen" | "pktgen-marked" => {
            ["traffic.frame_size", "run.seconds", "run.seed"].contains(&key)
        }
        _ => false,
    }
}

/// The keys a file sets, dotted.
fn keys_set(f: &ScenarioFile) -> Vec<&'static str> {
    let mut k = Vec::new();
    let t = &f.traffic;
    let mut add = |set: bool, key: &'static str| {
        if set {
            k.push(key);
        }
    };
    add(t.flows.is_some(), "traffic.flows");
    add(t.frame_size.is_some(), "traffic.frame_size");
    add(t.new_share.is_some(), "traffic.new_share");
    add(t.stream.is_some(), "traffic.stream");
    add(t.rate_pps.is_some(), "traffic.rate_pps");
    add(t.pcap.is_some(), "traffic.pcap");
    let tb = &f.tables;
    add(tb.routes.is_some(), "tables.routes");
    add(tb.services.is_some(), "tables.services");
    add(tb.endpoints.is_some(), "tables.endpoints");
    add(tb.connections.is_some(), "tables.connections");
    add(tb.conntrack_capacity.is_some(), "tables.conntrack_capacity");
    add(tb.namespaces.is_some(), "tables.namespaces");
    add(tb.cluster_policies.is_some(), "tables.cluster_policies");
    add(tb.shaped_pods.is_some(), "tables.shaped_pods");
    let r = &f.run;
    add(r.workers.is_some(), "run.workers");
    add(r.seconds.is_some(), "run.seconds");
    add(r.warmup_seconds.is_some(), "run.warmup_seconds");
    add(r.seed.is_some(), "run.seed");
    k
}

/// Sweepable parameters: bare name → dotted key.
fn sweep_key(parameter: &str) -> Option<&'static str> {
    Some(match parameter {
        "routes" => "tables.routes",
        "services" => "tables.services",
        "endpoints" => "tables.endpoints",
        "connections" => "tables.connections",
        "cluster_policies" => "tables.cluster_policies",
        "namespaces" => "tables.namespaces",
        "shaped_pods" => "tables.shaped_pods",
        "flows" => "traffic.flows",
        _ => return None,
    })
}

impl Scenario {
    /// Parses and checks `text` as the file `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, String> {
        let shown = path.display();
        let file: ScenarioFile =
            toml::from_str(text).map_err(|e| format!("{shown}: {}", e.to_string().trim_end()))?;
        let bad = |key: &str, why: String| Err(format!("{shown}: key `{key}`: {why}"));
        if file.description.trim().is_empty() {
            return bad("description", "must not be empty".into());
        }
        if !RUNNERS.contains(&file.runner.as_str()) {
            return bad(
                "runner",
                format!(
                    "unknown runner {:?}; expected one of {}",
                    file.runner,
                    RUNNERS.join(", ")
                ),
            );
        }
        for (i, p) in file.peers.iter().enumerate() {
            if !PEERS.contains(&p.as_str()) {
                return bad(
                    &format!("peers[{i}]"),
                    format!("unknown peer {p:?}; expected one of {}", PEERS.join(", ")),
                );
            }
        }
        for key in keys_set(&file) {
            if !applies(&file.runner, key) {
                return bad(key, format!("does not apply to runner {:?}", file.runner));
            }
        }
        let t = &file.traffic;
        if let Some(n) = t.frame_size {
            if !(60..=9000).contains(&n) {
                return bad("traffic.frame_size", format!("{n} is outside 60..=9000"));
            }
        }
        if let Some(s) = t.new_share {
            if !(0.0..=1.0).contains(&s) {
                return bad("traffic.new_share", format!("{s} is outside 0..=1"));
            }
        }
        if let Some(r) = t.rate_pps {
            if !(r > 0.0 && r.is_finite()) {
                return bad("traffic.rate_pps", format!("{r} is not a positive rate"));
            }
        }
        if let Some(s) = &t.stream {
            if let Err(e) = sluice_pktgen::spec::StreamSpec::parse_short(1, s) {
                return bad("traffic.stream", e.to_string());
            }
        }
        let positive: [(&str, Option<u64>); 9] = [
            ("traffic.flows", t.flows.map(|n| n as u64)),
            ("tables.services", file.tables.services.map(u64::from)),
            ("tables.endpoints", file.tables.endpoints.map(u64::from)),
            ("tables.connections", file.tables.connections.map(u64::from)),
            ("tables.namespaces", file.tables.namespaces.map(u64::from)),
            ("run.workers", file.run.workers.map(|n| n as u64)),
            ("run.seconds", file.run.seconds),
            (
                "tables.conntrack_capacity",
                match file.tables.conntrack_capacity {
                    Some(Capacity::Entries(n)) => Some(n as u64),
                    _ => None,
                },
            ),
            ("tables.routes", file.tables.routes.map(|n| n as u64)),
        ];
        for (key, v) in positive {
            if v == Some(0) && !(key == "tables.routes" && file.runner == "full") {
                return bad(key, "must be at least 1".into());
            }
        }
        if let Some(n) = file.tables.routes {
            if n > 4_000_000 {
                return bad("tables.routes", format!("{n} is above 4,000,000"));
            }
        }
        if let Some(sw) = &file.sweep {
            let Some(key) = sweep_key(&sw.parameter) else {
                return bad(
                    "sweep.parameter",
                    format!("{:?} cannot be swept", sw.parameter),
                );
            };
            if !applies(&file.runner, key) {
                return bad(
                    "sweep.parameter",
                    format!(
                        "{:?} does not apply to runner {:?}",
                        sw.parameter, file.runner
                    ),
                );
            }
            if keys_set(&file).contains(&key) {
                return bad(
                    key,
                    format!(
                        "is swept (sweep.parameter = {:?}); set it in one place",
                        sw.parameter
                    ),
                );
            }
            if sw.points.is_empty() {
                return bad("sweep.points", "needs at least one point".into());
            }
            if sw.points.contains(&0) {
                return bad("sweep.points", "every point must be at least 1".into());
            }
            if sw.points.windows(2).any(|w| w[0] >= w[1]) {
                return bad("sweep.points", "must be strictly increasing".into());
            }
            let max = match sw.parameter.as_str() {
                "routes" => 4_000_000,
                "connections" | "services" | "endpoints" | "namespaces" | "cluster_policies" => {
                    u32::MAX as u64
                }
                _ => u64::MAX,
            };
            if let Some(p) = sw.points.iter().find(|&&p| p > max) {
                return bad("sweep.points", format!("{p} is above {max}"));
            }
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| format!("{shown}: not a scenario file name"))?
            .to_string();
        Ok(Scenario {
            name,
            path: path.to_path_buf(),
            file,
        })
    }

    /// Loads `dir/NAME.toml`.
    pub fn load(dir: &Path, name: &str) -> Result<Scenario, String> {
        let path = dir.join(format!("{name}.toml"));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Scenario::parse(&path, &text)
    }

    /// Every scenario file of `dir`, by name; the first bad file is an error.
    pub fn load_all(dir: &Path) -> Result<Vec<Scenario>, String> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut all = paths
            .iter()
            .map(|p| {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                Scenario::parse(p, &text)
            })
            .collect::<Result<Vec<_>, String>>()?;
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// Fills the runners' parameters from the file, except where the
    /// command line set a value (`matches` are the `run` subcommand's).
    pub fn apply(&self, matches: Option<&ArgMatches>, t: &mut Targets<'_>) {
        let from_cli = |id: &str| {
            matches.is_some_and(|m| m.value_source(id) == Some(ValueSource::CommandLine))
        };
        let f = &self.file;
        macro_rules! set {
            ($value:expr, $id:literal, $target:expr) => {
                if let Some(v) = $value {
                    if !from_cli($id) {
                        $target = v;
                    }
                }
            };
        }
        set!(f.traffic.flows, "flows", t.l3.flows);
        if let Some(v) = f.traffic.frame_size {
            if !from_cli("frame_size") {
                t.l3.frame_size = Some(v);
            }
        }
        set!(f.traffic.new_share, "new_share", t.service.new_share);
        set!(f.traffic.rate_pps, "rate_pps", t.latency.rate_pps);
        if let Some(s) = &f.traffic.stream {
            if !from_cli("stream") {
                t.latency.stream = Some(s.clone());
            }
        }
        #[cfg(feature = "dpdk")]
        if let Some(p) = &f.traffic.pcap {
            if !from_cli("pcap") {
                t.dpdk.pcap = Some(p.clone());
            }
        }
        // `full` reads its routing table's size from here too (main copies
        // it into the service parameters).
        set!(f.tables.routes, "routes", t.l3.routes);
        set!(f.tables.services, "services", t.service.services);
        set!(f.tables.endpoints, "endpoints", t.service.endpoints);
        set!(f.tables.connections, "connections", t.service.connections);
        set!(f.tables.namespaces, "namespaces", t.policy.namespaces);
        set!(
            f.tables.cluster_policies,
            "cluster_policies",
            t.policy.cluster_policies
        );
        set!(f.tables.shaped_pods, "shaped_pods", t.l3.shaped_pods);
        set!(f.run.workers, "workers", t.l3.workers);
        set!(f.run.seconds, "seconds", t.l3.seconds);
        set!(f.run.warmup_seconds, "warmup", t.l3.warmup);
        set!(f.run.seed, "seed", t.l3.seed);
        match f.tables.conntrack_capacity {
            Some(Capacity::Entries(n)) if !from_cli("conntrack_capacity") => {
                t.service.conntrack_capacity = n;
            }
            Some(Capacity::Auto) if !from_cli("conntrack_capacity") => {
                t.service.conntrack_capacity = auto_capacity(t.service.connections);
            }
            _ => {}
        }
    }

    /// Sets the swept parameter to `value` (after [`Scenario::apply`]), and
    /// what follows from it (an "auto" connection-table capacity).
    pub fn apply_point(&self, value: u64, t: &mut Targets<'_>) {
        let Some(sw) = &self.file.sweep else { return };
        match sw.parameter.as_str() {
            "routes" => t.l3.routes = value as usize,
            "flows" => t.l3.flows = value as usize,
            "shaped_pods" => t.l3.shaped_pods = value as usize,
            "services" => t.service.services = value as u32,
            "endpoints" => t.service.endpoints = value as u32,
            "connections" => t.service.connections = value as u32,
            "namespaces" => t.policy.namespaces = value as u32,
            "cluster_policies" => t.policy.cluster_policies = value as u32,
            _ => {}
        }
        if self.file.tables.conntrack_capacity == Some(Capacity::Auto) {
            t.service.conntrack_capacity = auto_capacity(t.service.connections);
        }
    }

    /// The command-line flag a swept parameter would be set with.
    pub fn sweep_flag(&self) -> Option<String> {
        self.file
            .sweep
            .as_ref()
            .map(|s| format!("--{}", s.parameter.replace('_', "-")))
    }
}

/// 1.5× the connections rounded up to a power of two, at least 65,536: room
/// for every established connection and the new ones between sweeps.
pub fn auto_capacity(connections: u32) -> usize {
    (connections as usize + connections as usize / 2)
        .next_power_of_two()
        .max(1 << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, String> {
        Scenario::parse(Path::new("perf/scenarios/t.toml"), text)
    }

    /// The `run` subcommand's parameter sets, parsed from `argv`.
    #[derive(clap::Parser)]
    struct Args {
        #[command(flatten)]
        l3: l3fwd::Params,
        #[command(flatten)]
        service: service_lb::Params,
        #[command(flatten)]
        policy: PolicyParams,
        #[command(flatten)]
        latency: LatencyParams,
        #[command(flatten)]
        chain: crate::chain::ChainParams,
        #[cfg(feature = "dpdk")]
        #[command(flatten)]
        dpdk: crate::dpdk::DpdkParams,
    }

    fn args(argv: &[&str]) -> (clap::ArgMatches, Args) {
        use clap::{CommandFactory, FromArgMatches};
        let m = Args::command().get_matches_from(argv);
        let a = Args::from_arg_matches(&m).unwrap();
        (m, a)
    }

    #[test]
    fn every_shipped_scenario_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let all = Scenario::load_all(&dir).unwrap();
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        for want in [
            "l3fwd",
            "l3fwd-v6",
            "service-lb",
            "policy",
            "full",
            "dpdk-l3fwd",
            "dpdk-service-lb",
            "sweep-routes",
            "sweep-services",
            "sweep-flows",
            "latency",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let routes = all.iter().find(|s| s.name == "sweep-routes").unwrap();
        let sw = routes.file.sweep.as_ref().unwrap();
        assert_eq!(sw.parameter, "routes");
        assert_eq!(sw.points.first(), Some(&1_000));
        assert_eq!(sw.points.last(), Some(&1_000_000));
        let flows = all.iter().find(|s| s.name == "sweep-flows").unwrap();
        assert_eq!(
            flows.file.sweep.as_ref().unwrap().points.last(),
            Some(&10_000_000)
        );
        let services = all.iter().find(|s| s.name == "sweep-services").unwrap();
        assert_eq!(
            services.file.sweep.as_ref().unwrap().points.last(),
            Some(&100_000)
        );
    }

    #[test]
    fn a_bad_file_is_refused_naming_the_file_and_the_key() {
        let cases = [
            ("description = \"x\"\nrunner = \"l3fwd\"\n[tables]\nroute = 5\n", "route"),
            ("description = \"x\"\nrunner = \"l3fwdd\"\n", "`runner`"),
            ("description = \"x\"\nrunner = \"l3fwd\"\npeers = [\"vpp\"]\n", "`peers[0]`"),
            ("description = \"x\"\nrunner = \"l3fwd\"\n[tables]\nservices = 5\n", "`tables.services`"),
            ("description = \"x\"\nrunner = \"service-lb\"\n[traffic]\nnew_share = 1.5\n", "`traffic.new_share`"),
            ("description = \"x\"\nrunner = \"l3fwd\"\n[run]\nseconds = 0\n", "`run.seconds`"),
            ("description = \"x\"\nrunner = \"l3fwd\"\n[sweep]\nparameter = \"routes\"\npoints = [10, 5]\n", "`sweep.points`"),
            ("description = \"x\"\nrunner = \"l3fwd\"\n[sweep]\nparameter = \"services\"\npoints = [1]\n", "`sweep.parameter`"),
            ("description = \"x\"\nrunner = \"l3fwd\"\n[tables]\nroutes = 5\n[sweep]\nparameter = \"routes\"\npoints = [1, 2]\n", "`tables.routes`"),
            ("description = \"x\"\nrunner = \"service-lb\"\n[tables]\nconntrack_capacity = \"big\"\n", "conntrack_capacity"),
            ("description = \"x\"\nrunner = \"latency\"\n[traffic]\nstream = \"udp dst=nope\"\n", "`traffic.stream`"),
            ("runner = \"l3fwd\"\n", "description"),
        ];
        for (text, key) in cases {
            let e = parse(text).expect_err(text);
            assert!(e.starts_with("perf/scenarios/t.toml"), "{e}");
            assert!(e.contains(key), "{text:?}: {e:?} does not name {key}");
        }
    }

    #[test]
    fn the_file_fills_the_parameters_and_the_command_line_wins() {
        let s = parse(
            "description = \"x\"\nrunner = \"full\"\n[traffic]\nnew_share = 0.25\n\
             [tables]\nroutes = 7\nservices = 11\nconnections = 3000000\nconntrack_capacity = \"auto\"\n\
             [run]\nseconds = 2\nwarmup_seconds = 3\n",
        )
        .unwrap();
        let (m, mut a) = args(&["x", "--services", "5", "--seconds", "9"]);
        s.apply(
            Some(&m),
            &mut Targets {
                l3: &mut a.l3,
                service: &mut a.service,
                policy: &mut a.policy,
                latency: &mut a.latency,
                chain: &mut a.chain,
                #[cfg(feature = "dpdk")]
                dpdk: &mut a.dpdk,
            },
        );
        assert_eq!(a.service.services, 5, "the command line wins");
        assert_eq!(a.l3.seconds, 9, "the command line wins");
        assert_eq!(a.l3.warmup, 3);
        assert_eq!(a.service.new_share, 0.25);
        assert_eq!(a.service.connections, 3_000_000);
        assert_eq!(a.l3.routes, 7);
        assert_eq!(a.service.conntrack_capacity, 1 << 23);
    }

    #[test]
    fn a_sweep_point_sets_its_parameter_and_what_follows() {
        let s = parse(
            "description = \"x\"\nrunner = \"service-lb\"\n[tables]\nconntrack_capacity = \"auto\"\n\
             [sweep]\nparameter = \"connections\"\npoints = [10000, 10000000]\n",
        )
        .unwrap();
        let (m, mut a) = args(&["x"]);
        let mut t = Targets {
            l3: &mut a.l3,
            service: &mut a.service,
            policy: &mut a.policy,
            latency: &mut a.latency,
            chain: &mut a.chain,
            #[cfg(feature = "dpdk")]
            dpdk: &mut a.dpdk,
        };
        s.apply(Some(&m), &mut t);
        s.apply_point(10_000, &mut t);
        assert_eq!(t.service.connections, 10_000);
        assert_eq!(t.service.conntrack_capacity, 1 << 16);
        s.apply_point(10_000_000, &mut t);
        assert_eq!(t.service.connections, 10_000_000);
        assert_eq!(t.service.conntrack_capacity, 1 << 24);
        assert_eq!(s.sweep_flag().as_deref(), Some("--connections"));
    }
}
