//! Side-by-side runs: Sluice and its peers on the same traffic, on the same
//! machine, in one run, alternating.
//!
//! A side-by-side run (`sluice-perf run dpdk-l3fwd`, `dpdk-io`,
//! `dpdk-service-lb`) writes the scenario's traffic to one capture, then
//! measures each system in rounds `A B C A B C …` (`--rounds`, default 3):
//!
//! * `sluice`: this program again, as a child process
//!   (`run SCENARIO --peers none --rounds 1 --json --pcap FILE`), because
//!   DPDK's EAL can be started only once per process;
//! * `testpmd`: `dpdk-testpmd` io forward over the same devices
//!   ([`testpmd`]);
//! * `ovs-dpdk`: OVS-DPDK's userspace datapath with OpenFlow rules that do
//!   the scenario's work ([`ovs`]);
//! * `linux`: the kernel between network namespaces ([`linux`]).
//!
//! Each system's reported figures are its median round's, with every
//! round's Mpps in `round_mpps`; `ratios["sluice/PEER"]` is Sluice's median
//! Mpps per core over the peer's. A peer whose programs are missing (or
//! which cannot run here) is listed in `skipped` with the reason, never
//! given a number.
//!
//! Everything a peer sets up (processes, hugepages, namespaces, OVS run
//! directories, DPDK runtime directories) is undone by a guard when the run
//! ends, fails or is interrupted: a thread waits for SIGINT / SIGTERM /
//! SIGHUP (blocked everywhere else) and runs the registered cleanups before
//! the process exits.

// Side-by-side runs compare against Sluice's dpdk backend, so they exist
// only in builds with the `dpdk` feature; without it, `run` uses just
// `select` (to refuse `--peers` clearly) and the rest is compiled for its
// tests.
#![cfg_attr(not(feature = "dpdk"), allow(dead_code))]

pub mod linux;
pub mod ovs;
pub mod testpmd;

use crate::l3fwd::{Skipped, SystemResult};
use crate::machine;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The `run` flags of side-by-side runs.
#[derive(Debug, Clone, clap::Args)]
pub struct PeerArgs {
    /// Peers measured beside Sluice: all, none, or a list of testpmd,
    /// ovs-dpdk, linux, sluice-afpacket. Default: all for dpdk-l3fwd, dpdk-io and
    /// dpdk-service-lb (the scenarios that have peers), none otherwise.
    #[arg(long)]
    pub peers: Option<String>,
    /// Alternating rounds of a side-by-side run (A B C A B C …); every
    /// system's median round is reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

/// A peer system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Peer {
    Testpmd,
    OvsDpdk,
    Linux,
    /// Sluice itself on the kernel peer's veth topology (AF_PACKET): the
    /// kernel's counterpart on equal terms.
    SluiceAfPacket,
}

impl Peer {
    pub const ALL: [Peer; 4] = [
        Peer::Testpmd,
        Peer::OvsDpdk,
        Peer::Linux,
        Peer::SluiceAfPacket,
    ];

    /// The name in `--peers`, in results and in ratios.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Testpmd => "testpmd",
            Peer::OvsDpdk => "ovs-dpdk",
            Peer::Linux => "linux",
            Peer::SluiceAfPacket => "sluice-afpacket",
        }
    }
}

/// What a scenario asks of the peers: the work each does on the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Receive and transmit untouched (testpmd io).
    Io,
    /// Route (longest prefix match, TTL, MAC rewrite).
    Route,
    /// Service load balancing: conntrack and destination NAT to one of the
    /// Service's endpoints, then route.
    ServiceNat,
}

/// The peers a scenario has, in the order they run within a round.
pub fn peers_of(scenario: &str) -> &'static [Peer] {
    match scenario {
        "dpdk-io" => &[Peer::Testpmd],
        "dpdk-l3fwd" => &[
            Peer::Testpmd,
            Peer::OvsDpdk,
            Peer::Linux,
            Peer::SluiceAfPacket,
        ],
        "dpdk-l3fwd-v6" => &[Peer::Testpmd, Peer::OvsDpdk],
        "dpdk-service-lb" => &[Peer::OvsDpdk, Peer::Linux, Peer::SluiceAfPacket],
        _ => &[],
    }
}

/// The work `peer` does in `scenario` (testpmd always does io: it is the
/// framework's limit, not an equivalent of the scenario's work).
pub fn work_of(scenario: &str, peer: Peer) -> Work {
    match (peer, scenario) {
        (Peer::Testpmd, _) | (_, "dpdk-io") => Work::Io,
        (_, "dpdk-service-lb") => Work::ServiceNat,
        _ => Work::Route,
    }
}

/// Resolves `--peers` for `scenario`.
pub fn select(scenario: &str, text: Option<&str>) -> Result<Vec<Peer>, String> {
    let available = peers_of(scenario);
    let text = match text {
        Some(t) => t.trim(),
        None if available.is_empty() => "none",
        None => "all",
    };
    match text {
        "none" | "" => return Ok(Vec::new()),
        "all" => return Ok(available.to_vec()),
        _ => {}
    }
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim) {
        let peer = Peer::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                format!("--peers: unknown peer {name:?} (expected all, none, or a list of testpmd, ovs-dpdk, linux, sluice-afpacket)")
            })?;
        if !available.contains(&peer) {
            let has = if available.is_empty() {
                "none".to_string()
            } else {
                available
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(format!(
                "--peers: scenario {scenario:?} has no {name} peer (its peers: {has})"
            ));
        }
        if !out.contains(&peer) {
            out.push(peer);
        }
    }
    Ok(out)
}

/// Whether `run` should orchestrate a side-by-side run rather than measure
/// Sluice alone in this process.
pub fn is_side_by_side(scenario: &str, args: &PeerArgs) -> bool {
    if peers_of(scenario).is_empty() {
        return false;
    }
    let none = matches!(args.peers.as_deref().map(str::trim), Some("none"));
    !(none && args.rounds <= 1)
}

/// One system's rounds folded into one result: the round whose Mpps is the
/// median (the lower middle one for an even count, so every figure comes
/// from one real round) with all rounds' Mpps in `round_mpps`.
pub fn fold_rounds(mut rounds: Vec<SystemResult>) -> Option<SystemResult> {
    if rounds.is_empty() {
        return None;
    }
    let round_mpps: Vec<f64> = rounds.iter().map(|r| r.mpps).collect();
    let mut order: Vec<usize> = (0..rounds.len()).collect();
    order.sort_by(|&a, &b| rounds[a].mpps.total_cmp(&rounds[b].mpps));
    let mid = order[(order.len() - 1) / 2];
    let mut chosen = rounds.swap_remove(mid);
    chosen.round_mpps = round_mpps;
    Some(chosen)
}

/// `sluice/PEER` for every peer in `results`: Sluice's Mpps per core over
/// the peer's.
pub fn ratios(results: &[SystemResult]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Some(sluice) = results.iter().find(|r| r.system == "sluice") else {
        return out;
    };
    let ratio = |a: &SystemResult, b: &SystemResult| {
        (a.mpps_per_core / b.mpps_per_core * 1000.0).round() / 1000.0
    };
    for r in results.iter().filter(|r| r.system != "sluice") {
        if r.mpps_per_core > 0.0 {
            out.insert(format!("sluice/{}", r.system), ratio(sluice, r));
        }
    }
    // Sluice on veth against the kernel on the same veths.
    let find = |name: &str| results.iter().find(|r| r.system == name);
    if let (Some(a), Some(k)) = (find("sluice-afpacket"), find("linux")) {
        if k.mpps_per_core > 0.0 {
            out.insert("sluice-afpacket/linux".into(), ratio(a, k));
        }
    }
    out
}

/// A result for a system that forwarded `forwarded` packets (of `received`)
/// in `seconds` on `cores` busy cores, `per_second` giving the spread.
pub fn result_from_rate(
    system: &str,
    received: u64,
    forwarded: u64,
    seconds: f64,
    cores: f64,
    per_second: Vec<f64>,
    resident_mib: f64,
) -> SystemResult {
    let pps = forwarded as f64 / seconds.max(1e-9);
    let per_core = pps / cores.max(1e-9);
    let tsc_hz = tsc_hz();
    SystemResult {
        system: system.to_string(),
        workers: cores.ceil().max(1.0) as usize,
        mpps: round3(pps / 1e6),
        mpps_per_core: round3(per_core / 1e6),
        ns_per_packet: round3(1e9 / per_core.max(1e-9)),
        cycles_per_packet: round3(tsc_hz / per_core.max(1e-9)),
        received,
        forwarded,
        dropped: received.saturating_sub(forwarded),
        drops_by_reason: BTreeMap::new(),
        per_second_mpps: per_second,
        resident_mib: round3(resident_mib),
        round_mpps: Vec::new(),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The TSC rate, measured once.
pub fn tsc_hz() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(machine::tsc_hz)
}

/// Why `program` cannot run here, if it is not on PATH (or, with a slash,
/// not at that path).
pub fn missing(program: &str) -> Option<String> {
    if program.contains('/') {
        return (!Path::new(program).exists()).then(|| format!("{program} is not installed"));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|d| {
        let p = d.join(program);
        p.metadata()
            .map(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
            .unwrap_or(false)
    });
    (!found).then(|| format!("{program} is not on PATH"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------
// Cleanup on every exit path.

type CleanupFn = Box<dyn FnOnce() + Send>;

static CLEANUPS: Mutex<Vec<(u64, CleanupFn)>> = Mutex::new(Vec::new());
static NEXT_CLEANUP: AtomicU64 = AtomicU64::new(1);

/// Runs its cleanup when dropped, or when the process is interrupted
/// (after [`handle_signals`]).
#[must_use = "the cleanup runs when the guard is dropped"]
pub struct Cleanup(u64);

impl Cleanup {
    pub fn new(f: impl FnOnce() + Send + 'static) -> Cleanup {
        let id = NEXT_CLEANUP.fetch_add(1, Ordering::Relaxed);
        CLEANUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, Box::new(f)));
        Cleanup(id)
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let f = {
            let mut list = CLEANUPS.lock().unwrap_or_else(|e| e.into_inner());
            list.iter()
                .position(|(id, _)| *id == self.0)
                .map(|i| list.remove(i).1)
        };
        if let Some(f) = f {
            f();
        }
    }
}

/// Runs every registered cleanup, newest first.
fn run_all_cleanups() {
    loop {
        let next = CLEANUPS.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match next {
            Some((_, f)) => f(),
            None => break,
        }
    }
}

const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn stop_signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in STOP_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks the stop signals in this thread (and the threads it starts) and
/// starts a thread that waits for one, runs every cleanup and exits. Call
/// before starting other threads. Children get the signals unblocked again
/// ([`command`]).
pub fn handle_signals() {
    let set = stop_signal_set();
    // SAFETY: `set` is a valid signal set; a null old-set pointer is allowed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    std::thread::spawn(move || {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is valid and `sig` is a valid out pointer.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc == 0 {
            eprintln!("sluice-perf: signal {sig}: stopping the peers and cleaning up");
            run_all_cleanups();
            std::process::exit(128 + sig);
        }
    });
}

/// A command whose child has the stop signals unblocked (the mask is
/// inherited across exec).
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(program);
    // SAFETY: the closure calls only async-signal-safe functions
    // (sigemptyset, sigaddset, pthread_sigmask) between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let set = stop_signal_set();
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    c
}

/// Runs a short command to completion; an error names it and carries its
/// stderr.
pub fn run_cmd(c: &mut Command) -> Result<String, String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{c:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed ({}): {}",
            c,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A child process that is stopped (SIGINT, then SIGKILL after a grace
/// period) when dropped or when the run is interrupted.
pub struct Process {
    pub child: Child,
    _kill_on_signal: Cleanup,
}

impl Process {
    pub fn spawn(c: &mut Command) -> Result<Process, String> {
        let child = c.spawn().map_err(|e| format!("starting {c:?}: {e}"))?;
        let pid = child.id() as libc::pid_t;
        let guard = Cleanup::new(move || {
            // SAFETY: kill has no memory-safety preconditions; the pid is our
            // child's (at worst it already exited and is a zombie we own).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        });
        Ok(Process {
            child,
            _kill_on_signal: guard,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` and waits up to `grace` for the process to exit, then
    /// kills it.
    pub fn stop(&mut self, sig: libc::c_int, grace: Duration) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: signalling our own child, which has not been reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        let t = Instant::now();
        while t.elapsed() < grace {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(libc::SIGINT, Duration::from_secs(5));
    }
}

/// Resident memory of process `pid`, MiB (0 if unknown).
pub fn resident_mib_of(pid: u32) -> f64 {
    machine::resident_mib_in(&format!("/proc/{pid}/status"))
}

/// 2 MB hugepages for a run: at least `pages` are free while the guard
/// lives; the previous `nr_hugepages` is put back afterwards.
pub struct HugePages {
    _restore: Option<Cleanup>,
}

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

fn read_meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

impl HugePages {
    pub fn reserve(pages: u64) -> Result<HugePages, String> {
        if read_meminfo("HugePages_Free:") >= pages {
            return Ok(HugePages { _restore: None });
        }
        let before: u64 = std::fs::read_to_string(NR_HUGEPAGES)
            .map_err(|e| format!("{NR_HUGEPAGES}: {e}"))?
            .trim()
            .parse()
            .unwrap_or(0);
        let want = before + pages - read_meminfo("HugePages_Free:");
        std::fs::write(NR_HUGEPAGES, want.to_string())
            .map_err(|e| format!("writing {want} to {NR_HUGEPAGES} (root needed): {e}"))?;
        let restore = Cleanup::new(move || {
            let _ = std::fs::write(NR_HUGEPAGES, before.to_string());
        });
        let free = read_meminfo("HugePages_Free:");
        if free < pages {
            return Err(format!(
                "asked the kernel for {pages} free 2 MB hugepages, got {free} (memory too fragmented?)"
            ));
        }
        Ok(HugePages {
            _restore: Some(restore),
        })
    }
}

/// A fresh private directory under the temporary directory, removed when
/// the guard drops.
pub struct TempDir {
    pub path: PathBuf,
    _remove: Cleanup,
}

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir, String> {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "sluice-perf-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let p = path.clone();
        Ok(TempDir {
            path,
            _remove: Cleanup::new(move || {
                let _ = std::fs::remove_dir_all(&p);
            }),
        })
    }
}

// ---------------------------------------------------------------------------
// The run.

/// The shared inputs of one side-by-side run.
pub struct RunInput<'a> {
    /// The scenario, e.g. "dpdk-l3fwd".
    pub scenario: &'a str,
    /// The capture every DPDK-side system replays.
    pub pcap: &'a Path,
    /// The frames of that capture (the kernel peer's generator sends them).
    pub frames: &'a [Vec<u8>],
    /// Measured seconds per round (after one second of warm-up).
    pub seconds: u64,
    /// The routes of the scenario's table, for peers that need rules.
    pub routes: &'a [RouteRule],
    /// The Services of the scenario, for the service peers.
    pub services: &'a [ServiceRule],
    /// Builds Sluice's tables for the scenario (for Sluice on veth).
    pub sluice_tables: &'a dyn Fn() -> Result<sluice_dataplane::tables::Tables, String>,
}

/// One route as the peers program it: prefix → gateway MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    pub prefix: std::net::IpAddr,
    pub len: u8,
    pub gateway_mac: [u8; 6],
}

/// One Service port as the peers program it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRule {
    pub vip: std::net::Ipv4Addr,
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
    pub port: u16,
    /// Endpoint addresses and their target port.
    pub endpoints: Vec<(std::net::Ipv4Addr, u16)>,
}

/// The MAC addresses the routed traffic leaves with.
pub const OUT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// The dpdk-service-lb traffic: `flows` one-way UDP flows from pod
/// addresses to the UDP Services' VIPs (the odd ones, port 53), spread
/// over all of them, 64-byte frames. Replayed forever, every flow's first
/// packet creates its connection (conntrack, Maglev pick, DNAT binding) and
/// every later one is an established connection's packet.
pub fn service_traffic(
    p: &crate::service_lb::Params,
    flows: usize,
) -> Result<Vec<Vec<u8>>, String> {
    use crate::service_lb::{CLIENT_MAC, EST_BASE, MAC_IN, VIP_BASE};
    use sluice_dataplane::wire::builder::PacketBuilder;
    use std::net::Ipv4Addr;
    let udp_services = p.services / 2;
    if udp_services == 0 {
        return Err("dpdk-service-lb needs --services 2 or more (the odd ones are UDP)".into());
    }
    Ok((0..flows)
        .map(|i| {
            let s = 2 * (i as u32 % udp_services) + 1;
            PacketBuilder::new(CLIENT_MAC, MAC_IN)
                .ipv4(
                    Ipv4Addr::from(EST_BASE + i as u32),
                    Ipv4Addr::from(VIP_BASE + s),
                )
                .udp(1024 + (i % 60_000) as u16, 53)
                .frame_len(64)
                .build()
        })
        .collect())
}

/// The Services of dpdk-service-lb as the peers program them: every
/// Service of the table, its VIP, protocol, port and endpoints.
pub fn service_rules(p: &crate::service_lb::Params) -> Vec<ServiceRule> {
    use crate::service_lb::{proto_of, EP_BASE, VIP_BASE};
    use std::net::Ipv4Addr;
    (0..p.services)
        .map(|s| {
            let (proto, port) = proto_of(s);
            ServiceRule {
                vip: Ipv4Addr::from(VIP_BASE + s),
                proto,
                port,
                endpoints: (0..p.endpoints)
                    .map(|j| (Ipv4Addr::from(EP_BASE + s * p.endpoints + j), 8080))
                    .collect(),
            }
        })
        .collect()
}

/// One measurement of a peer in one round.
pub trait PeerRun {
    /// Sets up (once per run) what the rounds share; may return a reason to
    /// skip the peer.
    fn prepare(&mut self, input: &RunInput<'_>) -> Result<(), String>;
    /// Measures one round.
    fn measure(&mut self, input: &RunInput<'_>, progress: bool) -> Result<SystemResult, String>;
}

/// Builds the peer's runner, or the reason it is skipped.
fn runner(peer: Peer, scenario: &str) -> Result<Box<dyn PeerRun>, String> {
    let work = work_of(scenario, peer);
    match peer {
        Peer::Testpmd => testpmd::Testpmd::new().map(|p| Box::new(p) as Box<dyn PeerRun>),
        Peer::OvsDpdk => ovs::Ovs::new(work).map(|p| Box::new(p) as Box<dyn PeerRun>),
        Peer::Linux => linux::Linux::new(work, linux::Forwarder::Kernel)
            .map(|p| Box::new(p) as Box<dyn PeerRun>),
        Peer::SluiceAfPacket => linux::Linux::new(work, linux::Forwarder::SluiceAfPacket)
            .map(|p| Box::new(p) as Box<dyn PeerRun>),
    }
}

/// Measures Sluice once: this program again, on the same capture, alone.
fn sluice_round(scenario: &str, pcap: &Path, progress: bool) -> Result<SystemResult, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding sluice-perf: {e}"))?;
    let mut c = command(exe);
    c.arg("run").arg(scenario);
    c.args(passthrough_args(
        scenario,
        std::env::args().skip(1).collect(),
    ));
    c.args(["--peers", "none", "--rounds", "1", "--json", "--pcap"]);
    c.arg(pcap);
    c.stdout(Stdio::piped()).stdin(Stdio::null());
    if !progress {
        c.stderr(Stdio::null());
    }
    let mut p = Process::spawn(&mut c)?;
    let mut text = String::new();
    use std::io::Read;
    if let Some(out) = p.child.stdout.as_mut() {
        let _ = out.read_to_string(&mut text);
    }
    let status = p.child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("the Sluice round failed ({status})"));
    }
    let v: serde_json::Value =
        serde_json::from_str(text.trim()).map_err(|e| format!("the Sluice round's JSON: {e}"))?;
    let r = v
        .get("results")
        .and_then(|r| r.get(0))
        .ok_or("the Sluice round's JSON has no results")?;
    system_result_from_json(r)
}

/// The arguments of this invocation that a Sluice round inherits: all but
/// `run`, the scenario and the flags the orchestrator sets itself.
pub fn passthrough_args(scenario: &str, args: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.into_iter();
    let (mut seen_run, mut seen_scenario) = (false, false);
    while let Some(a) = it.next() {
        let flag = a.split_once('=').map_or(a.as_str(), |(f, _)| f);
        let inline_value = a.starts_with("--") && a.contains('=');
        match flag {
            "--peers" | "--rounds" | "--out" | "--pcap" => {
                if !inline_value {
                    it.next();
                }
            }
            "--json" => {}
            "run" if !seen_run => seen_run = true,
            _ if a == scenario && !seen_scenario => seen_scenario = true,
            _ => out.push(a),
        }
    }
    out
}

fn system_result_from_json(v: &serde_json::Value) -> Result<SystemResult, String> {
    let f = |k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
    let u = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    let mut drops = BTreeMap::new();
    if let Some(m) = v.get("drops_by_reason").and_then(|m| m.as_object()) {
        for (k, n) in m {
            // The names are the dataplane's own static ones.
            if let Some(r) = sluice_dataplane::stats::DropReason::ALL
                .iter()
                .find(|r| r.name() == k)
            {
                drops.insert(r.name(), n.as_u64().unwrap_or(0));
            }
        }
    }
    if f("mpps") <= 0.0 {
        return Err("the Sluice round measured no packets".into());
    }
    Ok(SystemResult {
        system: "sluice".into(),
        workers: u("workers") as usize,
        mpps: f("mpps"),
        mpps_per_core: f("mpps_per_core"),
        ns_per_packet: f("ns_per_packet"),
        cycles_per_packet: f("cycles_per_packet"),
        received: u("received"),
        forwarded: u("forwarded"),
        dropped: u("dropped"),
        drops_by_reason: drops,
        per_second_mpps: v
            .get("per_second_mpps")
            .and_then(|x| x.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
            .unwrap_or_default(),
        resident_mib: f("resident_mib"),
        round_mpps: Vec::new(),
    })
}

/// The outcome of a side-by-side run: the results (Sluice first), skipped
/// peers, ratios.
pub struct SideBySide {
    pub results: Vec<SystemResult>,
    pub skipped: Vec<Skipped>,
    pub ratios: BTreeMap<String, f64>,
    pub rounds: usize,
}

/// Runs Sluice and `peers` in alternating rounds.
pub fn run(
    input: &RunInput<'_>,
    peers: &[Peer],
    rounds: usize,
    progress: bool,
) -> Result<SideBySide, String> {
    let rounds = rounds.max(1);
    let mut skipped = Vec::new();
    let mut active: Vec<(Peer, Box<dyn PeerRun>)> = Vec::new();
    for &peer in peers {
        let prepared = runner(peer, input.scenario).and_then(|mut r| {
            r.prepare(input)?;
            Ok(r)
        });
        match prepared {
            Ok(r) => active.push((peer, r)),
            Err(reason) => {
                eprintln!("sluice-perf: skipping {}: {reason}", peer.name());
                skipped.push(Skipped {
                    system: peer.name().into(),
                    reason,
                });
            }
        }
    }
    let mut per_system: Vec<(String, Vec<SystemResult>)> = vec![("sluice".into(), Vec::new())];
    per_system.extend(
        active
            .iter()
            .map(|(p, _)| (p.name().to_string(), Vec::new())),
    );
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let total = rounds * per_system.len();
    let mut step = 0;
    for round in 1..=rounds {
        step += 1;
        if progress {
            eprintln!("[{step}/{total}] round {round}/{rounds}: sluice");
        }
        let r = sluice_round(input.scenario, input.pcap, progress)?;
        if progress {
            eprintln!("[{step}/{total}] sluice: {:.2} Mpps", r.mpps);
        }
        per_system[0].1.push(r);
        for (i, (peer, runner)) in active.iter_mut().enumerate() {
            step += 1;
            if failed.contains_key(peer.name()) {
                continue;
            }
            if progress {
                eprintln!("[{step}/{total}] round {round}/{rounds}: {}", peer.name());
            }
            match runner.measure(input, progress) {
                Ok(mut r) => {
                    r.system = peer.name().into();
                    if progress {
                        eprintln!("[{step}/{total}] {}: {:.2} Mpps", peer.name(), r.mpps);
                    }
                    per_system[i + 1].1.push(r);
                }
                Err(e) => {
                    eprintln!("sluice-perf: {} failed: {e}", peer.name());
                    failed.insert(peer.name().into(), e);
                }
            }
        }
    }
    drop(active);
    let mut results = Vec::new();
    for (name, rs) in per_system {
        if let Some(reason) = failed.remove(&name) {
            skipped.push(Skipped {
                system: name,
                reason: format!("failed: {reason}"),
            });
            continue;
        }
        if let Some(r) = fold_rounds(rs) {
            results.push(r);
        }
    }
    let ratios = ratios(&results);
    Ok(SideBySide {
        results,
        skipped,
        ratios,
        rounds,
    })
}

/// The routes of the l3fwd scenarios' table as the peers program them
/// (the same synthetic table and gateway MACs Sluice's run builds).
pub fn l3fwd_routes(family: crate::l3fwd::Family, routes: usize, seed: u64) -> Vec<RouteRule> {
    use sluice_dataplane::tables::synth;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let gw = |i: usize| [2, 0, 0, 0, 1, (i % crate::l3fwd::GATEWAYS) as u8];
    match family {
        crate::l3fwd::Family::V4 => synth::ipv4_table(routes, seed)
            .iter()
            .enumerate()
            .map(|(i, (p, l))| RouteRule {
                prefix: IpAddr::V4(Ipv4Addr::from(*p)),
                len: *l,
                gateway_mac: gw(i),
            })
            .collect(),
        crate::l3fwd::Family::V6 => synth::ipv6_table(routes, seed)
            .iter()
            .enumerate()
            .map(|(i, (p, l))| RouteRule {
                prefix: IpAddr::V6(Ipv6Addr::from(*p)),
                len: *l,
                gateway_mac: gw(i),
            })
            .collect(),
    }
}

/// `sluice-perf run SCENARIO` side by side: writes the capture, runs the
/// rounds, returns the report.
#[cfg(feature = "dpdk")]
pub fn side_by_side(
    scenario: &str,
    args: &PeerArgs,
    p: &crate::l3fwd::Params,
    service: &crate::service_lb::Params,
    dpdk: &crate::dpdk::DpdkParams,
    progress: bool,
) -> Result<crate::l3fwd::Report, String> {
    use crate::l3fwd::Family;
    handle_signals();
    let peers = select(scenario, args.peers.as_deref())?;
    let machine = machine::describe();
    let family = if scenario.ends_with("-v6") {
        Family::V6
    } else {
        Family::V4
    };
    let frame_size = p.frame_size.unwrap_or(match family {
        Family::V4 => 64,
        Family::V6 => 78,
    });
    let (frames, routes, services, what) = match scenario {
        "dpdk-service-lb" => (
            service_traffic(service, p.flows)?,
            Vec::new(),
            service_rules(service),
            format!(
                "{} Services x {} endpoints, {} UDP flows, conntrack + DNAT",
                service.services, service.endpoints, p.flows
            ),
        ),
        "dpdk-io" => (
            crate::l3fwd::traffic(family, p.flows, frame_size, p.seed, p.routes),
            Vec::new(),
            Vec::new(),
            format!("{} flows, forwarded untouched", p.flows),
        ),
        _ => (
            crate::l3fwd::traffic(family, p.flows, frame_size, p.seed, p.routes),
            l3fwd_routes(family, p.routes, p.seed),
            Vec::new(),
            format!("{} routes, {} flows", p.routes, p.flows),
        ),
    };
    let dir = TempDir::new("capture")?;
    let pcap = match &dpdk.pcap {
        Some(path) => path.clone(),
        None => dir.path.join(format!("{scenario}.pcap")),
    };
    crate::dpdk::write_pcap(&pcap, &frames).map_err(|e| format!("{}: {e}", pcap.display()))?;
    // Sluice's rounds take hugepages too when the machine can give them.
    let _huge = if is_root() && dpdk.eal.is_none() {
        HugePages::reserve(1024).ok()
    } else {
        None
    };
    if progress {
        eprintln!(
            "{scenario}: sluice{} in {} alternating round(s) on {} frames ({what})",
            peers
                .iter()
                .map(|p| format!(", {}", p.name()))
                .collect::<String>(),
            args.rounds.max(1),
            frames.len()
        );
    }
    let sluice_tables = || -> Result<sluice_dataplane::tables::Tables, String> {
        if scenario == "dpdk-service-lb" {
            Ok(crate::service_lb::build_tables(service)?.0)
        } else {
            crate::l3fwd::tables(family, p.routes, p.seed)
        }
    };
    let input = RunInput {
        scenario,
        pcap: &pcap,
        frames: &frames,
        seconds: p.seconds.max(1),
        routes: &routes,
        services: &services,
        sluice_tables: &sluice_tables,
    };
    let out = run(&input, &peers, args.rounds, progress)?;
    Ok(crate::l3fwd::Report {
        scenario: scenario.to_string(),
        params: p.clone(),
        io: format!(
            "dpdk: net_pcap0 replaying the capture forever -> net_null0; {what}; \
             peers on the same capture (the kernel: the same frames on veth)"
        ),
        frame_size,
        machine,
        results: out.results,
        ratios: out.ratios,
        rounds: out.rounds,
        skipped: out.skipped,
    })
}

/// Two Services (UDP with two endpoints, TCP with one) for the peers'
/// rule tests.
#[cfg(test)]
pub(crate) fn sample_services() -> Vec<ServiceRule> {
    use std::net::Ipv4Addr;
    vec![
        ServiceRule {
            vip: Ipv4Addr::new(172, 30, 0, 1),
            proto: 17,
            port: 53,
            endpoints: vec![
                (Ipv4Addr::new(10, 128, 0, 10), 8080),
                (Ipv4Addr::new(10, 128, 0, 11), 8080),
            ],
        },
        ServiceRule {
            vip: Ipv4Addr::new(172, 30, 0, 2),
            proto: 6,
            port: 80,
            endpoints: vec![(Ipv4Addr::new(10, 128, 0, 20), 8080)],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(system: &str, mpps: f64) -> SystemResult {
        result_from_rate(
            system,
            (mpps * 1e6) as u64,
            (mpps * 1e6) as u64,
            1.0,
            1.0,
            vec![mpps],
            1.0,
        )
    }

    #[test]
    fn fold_takes_the_median_round_and_keeps_all_rounds() {
        let folded = fold_rounds(vec![
            result("ovs-dpdk", 10.0),
            result("ovs-dpdk", 3.0),
            result("ovs-dpdk", 7.0),
        ])
        .unwrap();
        assert_eq!(folded.mpps, 7.0);
        assert_eq!(folded.per_second_mpps, vec![7.0]);
        assert_eq!(folded.round_mpps, vec![10.0, 3.0, 7.0]);
        // An even count takes the lower middle round: a real measurement.
        let folded = fold_rounds(vec![result("x", 4.0), result("x", 2.0)]).unwrap();
        assert_eq!(folded.mpps, 2.0);
        assert!(fold_rounds(Vec::new()).is_none());
    }

    #[test]
    fn ratios_are_sluice_per_core_over_each_peer() {
        let mut sluice = result("sluice", 30.0);
        sluice.mpps_per_core = 30.0;
        let mut linux = result("linux", 0.5);
        linux.mpps_per_core = 0.75; // it used 2/3 of a core
        let r = ratios(&[sluice, result("ovs-dpdk", 10.0), linux]);
        assert_eq!(r.len(), 2);
        assert_eq!(r["sluice/ovs-dpdk"], 3.0);
        assert_eq!(r["sluice/linux"], 40.0);
        let mut veth = result("sluice-afpacket", 1.5);
        veth.mpps_per_core = 1.5;
        let mut linux = result("linux", 0.5);
        linux.mpps_per_core = 0.75;
        let r = ratios(&[result("sluice", 30.0), linux, veth]);
        assert_eq!(r["sluice-afpacket/linux"], 2.0);
        assert_eq!(r["sluice/sluice-afpacket"], 20.0);
        // No Sluice result, no ratios.
        assert!(ratios(&[result("testpmd", 90.0)]).is_empty());
    }

    #[test]
    fn rate_result_fields() {
        let r = result_from_rate("linux", 2_000_000, 1_500_000, 2.0, 0.5, vec![], 0.0);
        assert_eq!(r.mpps, 0.75);
        assert_eq!(r.mpps_per_core, 1.5);
        assert_eq!(r.dropped, 500_000);
        assert!((r.ns_per_packet - 666.667).abs() < 0.01);
        assert_eq!(r.workers, 1);
    }

    #[test]
    fn peer_selection() {
        assert_eq!(
            select("dpdk-l3fwd", None).unwrap(),
            vec![
                Peer::Testpmd,
                Peer::OvsDpdk,
                Peer::Linux,
                Peer::SluiceAfPacket
            ]
        );
        assert_eq!(select("l3fwd", None).unwrap(), vec![]);
        assert_eq!(select("dpdk-l3fwd", Some("none")).unwrap(), vec![]);
        assert_eq!(
            select("dpdk-service-lb", Some("linux,ovs-dpdk,linux")).unwrap(),
            vec![Peer::Linux, Peer::OvsDpdk]
        );
        let e = select("dpdk-service-lb", Some("testpmd")).unwrap_err();
        assert!(
            e.contains("no testpmd peer") && e.contains("ovs-dpdk, linux"),
            "{e}"
        );
        let e = select("dpdk-l3fwd", Some("vpp")).unwrap_err();
        assert!(e.contains("unknown peer \"vpp\""), "{e}");
        assert!(select("service-lb", Some("linux")).is_err());
    }

    #[test]
    fn side_by_side_unless_alone_once() {
        let args = |peers: Option<&str>, rounds| PeerArgs {
            peers: peers.map(String::from),
            rounds,
        };
        assert!(is_side_by_side("dpdk-l3fwd", &args(None, 3)));
        assert!(is_side_by_side("dpdk-l3fwd", &args(Some("none"), 3)));
        assert!(!is_side_by_side("dpdk-l3fwd", &args(Some("none"), 1)));
        assert!(!is_side_by_side("l3fwd", &args(None, 3)));
    }

    #[test]
    fn rounds_inherit_the_scenario_flags_only() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            passthrough_args(
                "dpdk-l3fwd",
                args("run dpdk-l3fwd --routes 256 --peers all --rounds=5 --json --out x.json --seconds 3 --pcap /tmp/a --eal=--in-memory")
            ),
            args("--routes 256 --seconds 3 --eal=--in-memory")
        );
    }

    #[test]
    fn sluice_round_json_round_trips() {
        let mut r = result("sluice", 12.5);
        r.drops_by_reason.insert("ttl_expired", 3);
        let v = serde_json::to_value(&r).unwrap();
        let back = system_result_from_json(&v).unwrap();
        assert_eq!(back.mpps, 12.5);
        assert_eq!(back.forwarded, 12_500_000);
        assert_eq!(back.drops_by_reason["ttl_expired"], 3);
        let v = serde_json::json!({"mpps": 0.0});
        assert!(system_result_from_json(&v).is_err());
    }

    #[test]
    fn cleanups_run_once_on_drop() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        let g = Cleanup::new(move || {
            m.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(n.load(Ordering::SeqCst), 0);
        drop(g);
        assert_eq!(n.load(Ordering::SeqCst), 1);
        run_all_cleanups();
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn missing_programs_are_named() {
        assert!(missing("sh").is_none());
        let why = missing("sluice-no-such-program").unwrap();
        assert!(why.contains("sluice-no-such-program"), "{why}");
        assert!(missing("/nonexistent/ovs-vswitchd-dpdk").is_some());
    }
}
