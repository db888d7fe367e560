//! The Linux kernel between network namespaces: what a node without Sluice
//! does (forwarding, and kube-proxy's nftables mode for Services).
//!
//! Three namespaces joined by two veth pairs, made for the run and removed
//! after it however it ends:
//!
//! ```text
//!  client            router                       server
//!  c0 ──────────── r0 [forwarding, nft DNAT] r1 ──────────── s0
//!  02:..:c0:01      02:..:00:01        02:..:00:02
//! ```
//!
//! `r0` and `r1` carry the MACs Sluice's ports have in the scenario, and
//! the gateways of the scenario's routes are static neighbours behind `r1`,
//! so the scenario's very frames (the capture the DPDK systems replay) are
//! routed by the kernel as they are by Sluice: the same routes (`ip route`,
//! one per route of the table) or, for Services, the same VIPs in a
//! kube-proxy-style nftables map (`dnat ip to ip daddr . meta l4proto . th
//! dport map @svc`, conntrack on) followed by the route to the endpoints.
//!
//! The generator is Sluice's own I/O path in this process: a replay of the
//! capture's frames sent on `c0` through AF_PACKET (qdisc bypass) by one
//! worker pinned to core 0. The router's receive work is steered to core 1
//! with RPS (`rps_cpus=2` on `r0`), the core Sluice's worker uses; the rate
//! is `r1`'s transmitted packets, and the per-core figure divides it by the
//! share of core 1 the kernel spent in system, irq and softirq time (from
//! `/proc/stat`), so a generator that cannot saturate the kernel does not
//! flatter it, and another process on core 1 is not counted as the
//! kernel's. Offloads are off on every veth.
//!
//! `sluice-afpacket` is Sluice in the kernel's place on the same topology:
//! AF_PACKET on `r0` and `r1`, its worker on core 1, the router's kernel
//! kept out by a `netdev` ingress chain that drops everything after the
//! packet taps, and RPS off (the veth receive, up to the copy into the
//! AF_PACKET ring, runs on the sender's core 0; Sluice's worker has core 1
//! to itself and its per-core figure counts all of core 1's busy time).

use super::{
    command, is_root, missing, result_from_rate, run_cmd, Cleanup, PeerRun, RouteRule, RunInput,
    ServiceRule, Work, OUT_MAC,
};
use crate::l3fwd::SystemResult;
use sluice_dataplane::engine::{Engine, EngineConfig};
use sluice_dataplane::io::afpacket::{AfPacketConfig, AfPacketPort};
use sluice_dataplane::io::mem::{MemPort, MemPortConfig, ReplayLimit, RssMode};
use sluice_dataplane::io::Port;
use std::fmt::Write as _;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0xc0, 1];
const IN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// The core the router's receive work is steered to (Sluice's worker core).
const ROUTER_CORE: usize = 1;
/// The generator's core.
const GENERATOR_CORE: usize = 0;

/// Who forwards in the router namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarder {
    /// The kernel (the `linux` peer).
    Kernel,
    /// Sluice on AF_PACKET ports `r0` and `r1`, its worker on core 1, the
    /// kernel kept out by an nftables `netdev` ingress chain that drops
    /// everything after AF_PACKET has its copy (`sluice-afpacket`).
    SluiceAfPacket,
}

pub struct Linux {
    work: Work,
    forwarder: Forwarder,
    topology: Option<Topology>,
}

impl Linux {
    pub fn new(work: Work, forwarder: Forwarder) -> Result<Linux, String> {
        if work == Work::Io {
            return Err("the kernel has no io-only counterpart".into());
        }
        for t in ["ip", "nft", "ethtool"] {
            if let Some(why) = missing(t) {
                return Err(format!("{why} (Debian: iproute2, nftables, ethtool)"));
            }
        }
        if !is_root() {
            return Err("the kernel peer needs root (network namespaces)".into());
        }
        if std::thread::available_parallelism().map_or(1, |n| n.get()) <= ROUTER_CORE {
            return Err("the kernel peer needs two cores (generator and router)".into());
        }
        Ok(Linux {
            work,
            forwarder,
            topology: None,
        })
    }
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The namespaces' names for one run.
#[derive(Debug, Clone)]
pub struct Names {
    pub client: String,
    pub router: String,
    pub server: String,
}

impl Names {
    pub fn new(tag: &str) -> Names {
        Names {
            client: format!("slp-{tag}-c"),
            router: format!("slp-{tag}-r"),
            server: format!("slp-{tag}-s"),
        }
    }
}

/// The `ip -batch` scripts that build the topology: the namespaces and
/// veths (no namespace), then each namespace's addresses and links.
pub fn topology_script(n: &Names) -> Vec<(Option<String>, String)> {
    let mut global = String::new();
    for ns in [&n.client, &n.router, &n.server] {
        let _ = writeln!(global, "netns add {ns}");
    }
    let _ = writeln!(
        global,
        "link add c0 netns {} address {} type veth peer name r0 netns {} address {}",
        n.client,
        mac(CLIENT_MAC),
        n.router,
        mac(IN_MAC)
    );
    let _ = writeln!(
        global,
        "link add r1 netns {} address {} type veth peer name s0 netns {}",
        n.router,
        mac(OUT_MAC),
        n.server
    );
    let client = "addr add 10.0.0.10/24 dev c0\nlink set c0 up\nlink set lo up\n";
    let router = "addr add 10.0.0.1/24 dev r0\naddr add 10.0.1.1/24 dev r1\n\
                  link set r0 up\nlink set r1 up\nlink set lo up\n";
    let server =
        "addr add 10.0.1.254/24 dev s0\nlink set s0 up\nlink set s0 promisc on\nlink set lo up\n";
    vec![
        (None, global),
        (Some(n.client.clone()), client.to_string()),
        (Some(n.router.clone()), router.to_string()),
        (Some(n.server.clone()), server.to_string()),
    ]
}

/// The router's routes and static neighbours (`ip -batch` for its
/// namespace): every route of the table via its gateway behind r1.
pub fn routes_script(routes: &[RouteRule]) -> String {
    let mut s = String::new();
    let mut gateways: Vec<[u8; 6]> = Vec::new();
    for r in routes {
        if !gateways.contains(&r.gateway_mac) {
            gateways.push(r.gateway_mac);
        }
    }
    for (i, g) in gateways.iter().enumerate() {
        let _ = writeln!(
            s,
            "neigh replace 10.0.1.{} lladdr {} dev r1 nud permanent",
            100 + i,
            mac(*g)
        );
    }
    for r in routes.iter().filter(|r| r.prefix.is_ipv4()) {
        let gw = gateways
            .iter()
            .position(|g| *g == r.gateway_mac)
            .unwrap_or(0);
        let _ = writeln!(
            s,
            "route replace {}/{} via 10.0.1.{}",
            r.prefix,
            r.len,
            100 + gw
        );
    }
    s
}

/// The kube-proxy-style nftables ruleset: one map of every Service port to
/// an endpoint (`numgen random mod N` over each Service's endpoints, as
/// kube-proxy's per-Service chains do, collapsed into one map when the
/// Service has one endpoint).
pub fn nft_ruleset(services: &[ServiceRule]) -> String {
    let mut s = String::new();
    s.push_str("table ip sluiceperf {\n");
    s.push_str(
        "  map svc {\n    type ipv4_addr . inet_proto . inet_service : verdict\n    elements = {\n",
    );
    for (i, sv) in services.iter().enumerate() {
        let proto = if sv.proto == 6 { "tcp" } else { "udp" };
        let _ = writeln!(s, "      {} . {proto} . {} : goto svc{i},", sv.vip, sv.port);
    }
    s.push_str("    }\n  }\n");
    for (i, sv) in services.iter().enumerate() {
        let proto = if sv.proto == 6 { "tcp" } else { "udp" };
        let _ = write!(
            s,
            "  chain svc{i} {{\n    meta l4proto {proto} dnat ip to numgen random mod {} map {{ ",
            sv.endpoints.len()
        );
        let eps: Vec<String> = sv
            .endpoints
            .iter()
            .enumerate()
            .map(|(j, (ep, port))| format!("{j} : {ep} . {port}"))
            .collect();
        let _ = writeln!(s, "{} }}\n  }}", eps.join(", "));
    }
    s.push_str(
        "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n",
    );
    s.push_str("    ip daddr . meta l4proto . th dport vmap @svc\n  }\n}\n");
    s
}

/// Keeps the router's kernel from forwarding (or NATing) its own copy of
/// what Sluice receives on AF_PACKET: a `netdev` ingress hook runs after
/// the packet taps.
pub const INGRESS_DROP: &str = "table netdev sluiceperf_ingress {
  chain r0 {
    type filter hook ingress device r0 priority 0; policy drop;
  }
}
";

/// The namespaces, removed on drop.
struct Topology {
    names: Names,
    dir: super::TempDir,
    _remove: Cleanup,
    /// The frames, for the generator.
    frames: Vec<Vec<u8>>,
}

fn ip_batch(netns: Option<&str>, script: &str, dir: &std::path::Path) -> Result<(), String> {
    let file = dir.join("batch.ip");
    std::fs::write(&file, script).map_err(|e| e.to_string())?;
    let mut c = command("ip");
    if let Some(ns) = netns {
        c.args(["-n", ns]);
    }
    c.arg("-batch").arg(&file);
    run_cmd(&mut c).map(|_| ())
}

fn in_netns(ns: &str, args: &[&str]) -> Result<String, String> {
    run_cmd(command("ip").args(["netns", "exec", ns]).args(args))
}

fn build(input: &RunInput<'_>, work: Work) -> Result<Topology, String> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let names = Names::new(&format!("{}-{n}", std::process::id()));
    let n2 = names.clone();
    let remove = Cleanup::new(move || {
        for ns in [&n2.client, &n2.router, &n2.server] {
            let _ = command("ip")
                .args(["netns", "del", ns])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    });
    let dir = super::TempDir::new("linux")?;
    for (ns, script) in topology_script(&names) {
        ip_batch(ns.as_deref(), &script, &dir.path)?;
    }
    for (ns, dev) in [
        (&names.client, "c0"),
        (&names.router, "r0"),
        (&names.router, "r1"),
        (&names.server, "s0"),
    ] {
        // Some offloads cannot be changed on veth; the rest are switched off.
        let _ = in_netns(
            ns,
            &[
                "ethtool", "-K", dev, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro",
                "off",
            ],
        );
    }
    let r = &names.router;
    in_netns(r, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    for k in ["all", "default", "r0", "r1"] {
        in_netns(
            r,
            &["sysctl", "-qw", &format!("net.ipv4.conf.{k}.rp_filter=0")],
        )?;
    }
    in_netns(
        r,
        &[
            "sh",
            "-c",
            &format!(
                "echo {:x} > /sys/class/net/r0/queues/rx-0/rps_cpus",
                1u32 << ROUTER_CORE
            ),
        ],
    )?;
    // The client sends without ARP: the router's MAC is in the frames.
    match work {
        Work::Route => ip_batch(Some(r), &routes_script(input.routes), &dir.path)?,
        Work::ServiceNat => {
            let gw = [RouteRule {
                prefix: super::ovs::ENDPOINT_NET.0.parse().unwrap(),
                len: super::ovs::ENDPOINT_NET.1,
                gateway_mac: super::ovs::SERVICE_GW_MAC,
            }];
            ip_batch(Some(r), &routes_script(&gw), &dir.path)?;
            let file = dir.path.join("svc.nft");
            std::fs::write(&file, nft_ruleset(input.services)).map_err(|e| e.to_string())?;
            in_netns(r, &["nft", "-f", file.to_str().unwrap_or_default()])?;
            in_netns(
                r,
                &["sysctl", "-qw", "net.netfilter.nf_conntrack_max=4194304"],
            )
            .ok();
        }
        Work::Io => unreachable!("refused in Linux::new"),
    }
    Ok(Topology {
        names,
        dir,
        _remove: remove,
        frames: input.frames.to_vec(),
    })
}

/// Runs `f` in a thread that has entered network namespace `ns`.
fn with_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a valid namespace file descriptor; it changes only
        // this thread's network namespace, and the thread ends afterwards.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
        }
        f()
    })
    .join()
    .map_err(|_| "namespace thread panicked".to_string())?
}

/// Transmitted / received packets of `dev` in `ns`.
fn link_packets(ns: &str, dev: &str) -> Result<(u64, u64), String> {
    let text = run_cmd(command("ip").args(["-n", ns, "-s", "-j", "link", "show", "dev", dev]))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let s = &v[0]["stats64"];
    let rx = s["rx"]["packets"].as_u64().ok_or("no rx packets")?;
    let tx = s["tx"]["packets"].as_u64().ok_or("no tx packets")?;
    Ok((rx, tx))
}

/// Jiffies of core `cpu` from `/proc/stat`: (kernel, busy, total), where
/// kernel is system + irq + softirq time (the kernel's forwarding runs in
/// softirq, or in ksoftirqd, whose time is system time) and busy is
/// everything but idle and iowait.
pub fn cpu_times(stat: &str, cpu: usize) -> Option<(u64, u64, u64)> {
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&name))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 7 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is already
    // in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v[4];
    Some((v[2] + v[5] + v[6], total - idle, total))
}

fn read_cpu(cpu: usize) -> Result<(u64, u64, u64), String> {
    let stat = std::fs::read_to_string("/proc/stat").map_err(|e| e.to_string())?;
    cpu_times(&stat, cpu).ok_or_else(|| format!("no cpu{cpu} in /proc/stat"))
}

impl Linux {
    fn system(&self) -> &'static str {
        match self.forwarder {
            Forwarder::Kernel => "linux",
            Forwarder::SluiceAfPacket => "sluice-afpacket",
        }
    }
}

/// Sluice as the router namespace's forwarder: AF_PACKET on r0 (in) and
/// r1 (out), one worker on core 1, the scenario's tables and pipeline.
fn start_sluice(topo: &Topology, input: &RunInput<'_>, work: Work) -> Result<Engine, String> {
    let open = |ifname: &'static str, port_id: u16| {
        with_netns(&topo.names.router, move || {
            AfPacketPort::open(
                ifname,
                ifname,
                AfPacketConfig {
                    port_id,
                    ..AfPacketConfig::default()
                },
            )
            .map_err(|e| e.to_string())
        })
    };
    let ports: Vec<Arc<dyn Port>> = vec![open("r0", 0)?, open("r1", 1)?];
    let cfg = EngineConfig {
        workers: 1,
        cores: vec![ROUTER_CORE],
        ..EngineConfig::default()
    };
    let tables = (input.sluice_tables)()?;
    let engine = match work {
        Work::Route => Engine::start(ports, tables, &cfg, sluice_dataplane::stages::router),
        Work::ServiceNat => {
            let svc = sluice_dataplane::stages::service::ServiceConfig::default();
            Engine::start_each(
                ports,
                sluice_dataplane::tables::cell::TableCell::new(tables),
                &cfg,
                move |_| sluice_dataplane::stages::service_pipeline(&svc),
            )
        }
        Work::Io => unreachable!("refused in Linux::new"),
    };
    engine.map_err(|e| e.to_string())
}

impl PeerRun for Linux {
    fn prepare(&mut self, input: &RunInput<'_>) -> Result<(), String> {
        if input
            .frames
            .first()
            .is_none_or(|f| f.len() < 34 || f[12..14] != [8, 0])
        {
            return Err("the kernel peer is set up for IPv4 traffic only".into());
        }
        let topo = build(input, self.work)?;
        if self.forwarder == Forwarder::SluiceAfPacket {
            // Sluice's worker polls core 1 without pause; the kernel's veth
            // receive (the copy into the AF_PACKET ring) stays on the
            // sender's core instead of fighting it for core 1.
            in_netns(
                &topo.names.router,
                &[
                    "sh",
                    "-c",
                    "echo 0 > /sys/class/net/r0/queues/rx-0/rps_cpus",
                ],
            )?;
            let file = topo.dir.path.join("ingress.nft");
            std::fs::write(&file, INGRESS_DROP).map_err(|e| e.to_string())?;
            in_netns(
                &topo.names.router,
                &["nft", "-f", file.to_str().unwrap_or_default()],
            )?;
        }
        self.topology = Some(topo);
        Ok(())
    }

    fn measure(&mut self, input: &RunInput<'_>, progress: bool) -> Result<SystemResult, String> {
        let topo = self.topology.as_ref().ok_or("not prepared")?;
        let port: Arc<AfPacketPort> = with_netns(&topo.names.client, || {
            AfPacketPort::open(
                "gen",
                "c0",
                AfPacketConfig {
                    port_id: 1,
                    promiscuous: false,
                    tx_frames: 4096,
                    ..AfPacketConfig::default()
                },
            )
            .map_err(|e| e.to_string())
        })?;
        let replay = MemPort::replay(
            "frames",
            topo.frames.clone(),
            MemPortConfig {
                port_id: 0,
                rx_queues: 1,
                tx_queues: 1,
                ring_size: 1024,
                mac: CLIENT_MAC,
                mtu: 1500,
                rss: RssMode::None,
            },
            ReplayLimit::Forever,
        )
        .map_err(|e| e.to_string())?;
        let ports: Vec<Arc<dyn Port>> = vec![replay, port];
        let cfg = EngineConfig {
            workers: 1,
            cores: vec![GENERATOR_CORE],
            ..EngineConfig::default()
        };
        let tables = sluice_dataplane::tables::TablesBuilder::new()
            .build()
            .map_err(|e| e.to_string())?;
        let engine = Engine::start(ports, tables, &cfg, || crate::l3fwd::IoForward)
            .map_err(|e| e.to_string())?;
        let router = match self.forwarder {
            Forwarder::Kernel => None,
            Forwarder::SluiceAfPacket => Some(start_sluice(topo, input, self.work)?),
        };
        // Warm-up (for Services: the connections are created).
        std::thread::sleep(Duration::from_secs(1));
        let r = &topo.names.router;
        let (rx0, _) = link_packets(r, "r0")?;
        let (_, tx0) = link_packets(r, "r1")?;
        let cpu0 = read_cpu(ROUTER_CORE)?;
        let t0 = Instant::now();
        let mut per_second = Vec::new();
        let mut last = tx0;
        let mut end = (rx0, tx0);
        let mut failure = None;
        for sec in 1..=input.seconds {
            std::thread::sleep(
                (t0 + Duration::from_secs(sec)).saturating_duration_since(Instant::now()),
            );
            match (link_packets(r, "r0"), link_packets(r, "r1")) {
                (Ok((rx, _)), Ok((_, tx))) => {
                    end = (rx, tx);
                    let mpps = (tx - last) as f64 / 1e6;
                    last = tx;
                    per_second.push((mpps * 1000.0).round() / 1000.0);
                    if progress {
                        eprintln!("{}: {sec}/{}s {mpps:.3} Mpps", self.system(), input.seconds);
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let dt = t0.elapsed().as_secs_f64();
        let cpu1 = read_cpu(ROUTER_CORE)?;
        let sent = engine.stats().tx_packets;
        engine.stop();
        let resident = if router.is_some() {
            crate::machine::resident_mib()
        } else {
            0.0
        };
        if let Some(r) = router {
            r.stop();
        }
        if let Some(e) = failure {
            return Err(e);
        }
        // The share of core 1 the forwarder had: for the kernel its system,
        // irq and softirq time (so that a process of someone else's on the
        // core does not count as the kernel's), for Sluice all of it (its
        // worker polls without pause; a neighbour's share makes Sluice look
        // slower, never faster).
        let total = (cpu1.2 - cpu0.2).max(1) as f64;
        let busy = match self.forwarder {
            Forwarder::Kernel => (cpu1.0 - cpu0.0) as f64 / total,
            Forwarder::SluiceAfPacket => (cpu1.1 - cpu0.1) as f64 / total,
        };
        let forwarded = end.1 - tx0;
        if forwarded == 0 {
            return Err(format!(
                "the kernel forwarded nothing (the generator sent {sent}, r0 received {})",
                end.0 - rx0
            ));
        }
        if progress {
            eprintln!(
                "{}: core {ROUTER_CORE} busy {:.0}% of the time",
                self.system(),
                busy * 100.0
            );
        }
        Ok(result_from_rate(
            self.system(),
            end.0 - rx0,
            forwarded,
            dt,
            busy.max(0.01),
            per_second,
            resident,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_map_sends_each_vip_to_its_endpoints() {
        let services = crate::peers::sample_services();
        let text = nft_ruleset(&services);
        assert_eq!(
            text,
            "table ip sluiceperf {
  map svc {
    type ipv4_addr . inet_proto . inet_service : verdict
    elements = {
      172.30.0.1 . udp . 53 : goto svc0,
      172.30.0.2 . tcp . 80 : goto svc1,
    }
  }
  chain svc0 {
    meta l4proto udp dnat ip to numgen random mod 2 map { 0 : 10.128.0.10 . 8080, 1 : 10.128.0.11 . 8080 }
  }
  chain svc1 {
    meta l4proto tcp dnat ip to numgen random mod 1 map { 0 : 10.128.0.20 . 8080 }
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr . meta l4proto . th dport vmap @svc
  }
}
"
        );
    }

    #[test]
    fn routes_go_via_static_gateways() {
        let routes = vec![
            RouteRule {
                prefix: "10.9.0.0".parse().unwrap(),
                len: 16,
                gateway_mac: [2, 0, 0, 0, 1, 0],
            },
            RouteRule {
                prefix: "10.9.8.0".parse().unwrap(),
                len: 24,
                gateway_mac: [2, 0, 0, 0, 1, 1],
            },
            RouteRule {
                prefix: "10.7.0.0".parse().unwrap(),
                len: 16,
                gateway_mac: [2, 0, 0, 0, 1, 0],
            },
        ];
        assert_eq!(
            routes_script(&routes),
            "neigh replace 10.0.1.100 lladdr 02:00:00:00:01:00 dev r1 nud permanent
neigh replace 10.0.1.101 lladdr 02:00:00:00:01:01 dev r1 nud permanent
route replace 10.9.0.0/16 via 10.0.1.100
route replace 10.9.8.0/24 via 10.0.1.101
route replace 10.7.0.0/16 via 10.0.1.100
"
        );
    }

    #[test]
    fn topology_uses_unique_namespaces_and_the_scenario_macs() {
        let n = Names::new("42");
        let scripts = topology_script(&n);
        let s = &scripts[0].1;
        assert_eq!(scripts[0].0, None);
        assert!(s.starts_with("netns add slp-42-c\nnetns add slp-42-r\nnetns add slp-42-s\n"));
        assert_eq!(scripts[2].0.as_deref(), Some("slp-42-r"));
        assert!(scripts[2].1.contains("addr add 10.0.1.1/24 dev r1"));
        assert!(s.contains("link add c0 netns slp-42-c address 02:00:00:00:c0:01 type veth peer name r0 netns slp-42-r address 02:00:00:00:00:01"));
        assert!(s.contains("link add r1 netns slp-42-r address 02:00:00:00:00:02 type veth peer name s0 netns slp-42-s"));
    }

    #[test]
    fn busy_share_of_a_core_from_proc_stat() {
        let stat = "cpu  10 0 10 100 0 0 0 0 0 0\n\
                    cpu0 5 0 5 50 0 0 0 0 0 0\n\
                    cpu1 1 2 3 40 4 5 6 7 0 0\n";
        assert_eq!(
            cpu_times(stat, 1),
            Some((3 + 5 + 6, 1 + 2 + 3 + 5 + 6 + 7, 68))
        );
        assert_eq!(cpu_times(stat, 0), Some((5, 10, 60)));
        assert_eq!(cpu_times(stat, 2), None);
    }
}
