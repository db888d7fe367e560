//! A service chain end to end: curl in a client namespace reaches HTTP
//! servers in two server namespaces through `sluiced`, whose chain is a
//! built-in firewall → DPDK testpmd (an external CNF joined by two memif
//! interfaces) → a built-in Maglev load balancer.
//!
//! ```text
//!  client ns            router ns (sluiced, AF_PACKET + memif)           server1 ns
//!  c0 10.1.0.2/24 ─veth─ r0 = p0 10.1.0.1/24    r1 = p1 10.2.0.1/24 ─veth─ s1 10.2.0.2/24
//!                                               r2 = p2 10.3.0.1/24 ─veth─ s2 10.3.0.2/24 (server2 ns)
//!                        cnf-in  (memif master) ══ net_memif0 ┐
//!                        cnf-out (memif master) ══ net_memif1 ┘ dpdk-testpmd, io forwarding
//! ```
//!
//! The client talks to 10.96.0.10:80, which is no address anywhere: only
//! the chain's load balancer knows it. Requests go firewall → testpmd →
//! balancer → a server; replies come back balancer → testpmd → firewall,
//! told apart by the memif interface they come back on.
//!
//! Everything is removed when the test ends, passed or failed: testpmd and
//! the daemon are killed (and die with the test thread if it is killed),
//! the namespaces with their veths and servers are deleted, the memif
//! sockets and testpmd's runtime directory are removed. testpmd runs with
//! `--no-huge` and shares a core with the daemon's worker when the test may
//! use only one.
//!
//! Needs root, iproute2, curl, python3 and dpdk-testpmd (scripts/test
//! installs them); skipped with a message otherwise.

mod common;

use common::{sluicectl_ok, tempdir, Daemon};
use sluice_dataplane::testing::netns::{can_run, format_mac, have, veth, Netns};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TESTPMD: &str = "dpdk-testpmd";

/// Whether a lab test can run here (root, and the tools it starts);
/// says why not.
fn lab_can_run(test: &str) -> bool {
    if !can_run(test) {
        return false;
    }
    for tool in ["curl", "/usr/bin/python3", TESTPMD] {
        if !have(tool) {
            eprintln!("skipping {test}: needs {tool} (scripts/test installs it)");
            return false;
        }
    }
    true
}

/// The tests of this file run one at a time: each runs a daemon and
/// testpmd, and CI has two cores.
static ONE_LAB_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_lab_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_LAB_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The CPUs this test may use (a `taskset` on the run bounds the daemon
/// and testpmd too).
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; the size is the set's own.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return vec![0];
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads the set within its size.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// The child gets SIGKILL when the test's thread ends.
fn die_with_test(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// testpmd forwarding between two memif clients; stopped, with its runtime
/// directory, when dropped.
struct Testpmd {
    child: Child,
    prefix: String,
}

impl Testpmd {
    /// `tag` makes the DPDK file prefix unique to the test.
    fn start(tag: &str, sock_in: &Path, sock_out: &Path, cpu: usize) -> Testpmd {
        let prefix = format!("sluice-{tag}-{}", std::process::id());
        let vdev = |i: u32, s: &Path| {
            format!(
                "net_memif{i},role=client,id=0,socket={},socket-abstract=no",
                s.display()
            )
        };
        let mut cmd = Command::new(TESTPMD);
        cmd.arg("--lcores")
            .arg(format!("0@{cpu},1@{cpu}"))
            .args(["--main-lcore", "0", "--no-huge", "-m", "256"])
            .args([
                "--file-prefix",
                &prefix,
                "--no-pci",
                "--log-level",
                "*:error",
            ])
            .arg("--vdev")
            .arg(vdev(0, sock_in))
            .arg("--vdev")
            .arg(vdev(1, sock_out))
            .args([
                "--",
                "--forward-mode=io",
                "--port-topology=paired",
                "--nb-cores=1",
                "--total-num-mbufs=8192",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_test(&mut cmd);
        Testpmd {
            child: cmd.spawn().expect("start dpdk-testpmd"),
            prefix,
        }
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        // SAFETY: kill(2) of the child we started, by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.prefix));
    }
}

/// A lab's processes and files: servers, testpmd and the daemon are
/// stopped (the daemon's log printed if the test failed) and the directory
/// removed. A lab holds it before its namespaces, so it goes first.
struct Processes {
    servers: Vec<Child>,
    testpmd: Option<Testpmd>,
    daemon: Option<Daemon>,
    dir: PathBuf,
}

struct Lab {
    procs: Processes,
    api: String,
    client: Netns,
    _router: Netns,
    _server1: Netns,
    _server2: Netns,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        self.testpmd.take();
        if std::thread::panicking() {
            if let Some(d) = &self.daemon {
                eprintln!("sluiced log:\n{}", d.log().join("\n"));
            }
        }
        self.daemon.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn host(ns: &Netns, dev: &str, addr: &str, gw: &str) {
    ns.ip(&["addr", "add", addr, "dev", dev]);
    ns.ip(&["route", "add", "default", "via", gw]);
    if have("ethtool") {
        // Sluice does not segment: no super-frames.
        ns.sh(&format!(
            "ethtool -K {dev} tso off gso off gro off 2>/dev/null || true"
        ));
    }
}

fn http_server(ns: &Netns, root: &Path, name: &str) -> Child {
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("who"), name).unwrap();
    let blob: Vec<u8> = (0..256u32 << 10)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(root.join("blob"), blob).unwrap();
    let mut cmd = ns.command("/usr/bin/python3");
    die_with_test(&mut cmd);
    cmd.args([
        "-m",
        "http.server",
        "8080",
        "--bind",
        "0.0.0.0",
        "--directory",
    ])
    .arg(root)
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("python3 -m http.server starts")
}

/// sluiced in `ns` with one worker on `cpu` and these ports, its API on
/// `api`; returns once it is ready.
fn start_sluiced(
    ns: &Netns,
    dir: &Path,
    node: &str,
    api: &str,
    cpu: usize,
    ports: &[(&str, String)],
) -> Daemon {
    let mut config = format!(
        "state_dir = \"{}\"\nworkers = 1\ncores = [{cpu}]\n\n[node]\nname = \"{node}\"\n\n[api]\nlisten = [\"{api}\"]\n",
        dir.join("state").display()
    );
    for (name, backend) in ports {
        config.push_str(&format!(
            "\n[[port]]\nname = \"{name}\"\nbackend = \"{backend}\"\n"
        ));
    }
    let config_path = dir.join("sluiced.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_sluiced"));
    cmd.arg("run").arg("--config").arg(&config_path);
    die_with_test(&mut cmd);
    let daemon = Daemon::spawn_command(cmd);
    daemon.wait_for_log("sluiced ready", Duration::from_secs(30));
    daemon
}

const CHAIN: &str = r#"
apiVersion: sluice.dev/v1
kind: NetworkServiceEndpoint
metadata: {name: fw}
spec:
  networkServiceNames: [web]
  networkServiceLabels: {web: {labels: {app: firewall}}}
  function:
    firewall:
      rules: [{action: Allow, protocol: TCP, destination: [10.96.0.10/32], ports: [{port: 80}]}]
---
apiVersion: sluice.dev/v1
kind: NetworkServiceEndpoint
metadata: {name: testpmd}
spec:
  networkServiceNames: [web]
  networkServiceLabels: {web: {labels: {app: cnf}}}
  interfaces: {ingress: cnf-in, egress: cnf-out}
---
apiVersion: sluice.dev/v1
kind: NetworkServiceEndpoint
metadata: {name: lb}
spec:
  networkServiceNames: [web]
  networkServiceLabels: {web: {labels: {app: lb}}}
  function:
    loadBalancer:
      vip: 10.96.0.10
      port: 80
      protocol: TCP
      backends: [{ip: 10.2.0.2, port: 8080}, {ip: 10.3.0.2, port: 8080}]
---
apiVersion: sluice.dev/v1
kind: NetworkService
metadata: {name: web}
spec:
  matches:
  - sourceSelector: {app: firewall}
    routes: [{destinationSelector: {app: cnf}}]
  - sourceSelector: {app: cnf}
    routes: [{destinationSelector: {app: lb}}]
  - sourceSelector: {app: lb}
  - routes: [{destinationSelector: {app: firewall}}]
  steering:
  - {source: [10.1.0.0/24], destination: [10.96.0.10/32], protocol: TCP}
"#;

/// The daemon's API, as the tests read it.
struct Api<'a>(&'a str);

impl Api<'_> {
    fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&sluicectl_ok(self.0, &["stats", "-o", "json"])).unwrap()
    }

    fn drops(&self, reason: &str) -> u64 {
        self.stats()["drops"][reason].as_u64().unwrap_or(0)
    }

    /// The counters of the chain hop named `hop`.
    fn hop(&self, hop: &str) -> serde_json::Value {
        let s = self.stats();
        s["chains"]
            .as_array()
            .and_then(|a| a.iter().find(|h| h["hop"] == hop).cloned())
            .unwrap_or_else(|| panic!("no hop {hop} in {s}"))
    }

    /// Waits until both memif links are up (testpmd connected).
    fn wait_links(&self, up: bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.stats();
            let ports = s["ports"].as_array().cloned().unwrap_or_default();
            let memif: Vec<bool> = ports
                .iter()
                .filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with("cnf-")))
                .map(|p| p["link_up"].as_bool().unwrap_or(false))
                .collect();
            if memif.len() == 2 && memif.iter().all(|l| *l == up) {
                // The link watcher copies the state every 100 ms.
                std::thread::sleep(Duration::from_millis(300));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "memif links never became {}: {s}",
                if up { "up" } else { "down" }
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Lab {
    fn start() -> Lab {
        let client = Netns::new("chain-c");
        let router = Netns::new("chain-r");
        let server1 = Netns::new("chain-s1");
        let server2 = Netns::new("chain-s2");
        router.disable_ipv6();
        router.sysctl("net.ipv4.ip_forward", "0");
        veth(&client, "c0", &router, "r0");
        veth(&router, "r1", &server1, "s1");
        veth(&router, "r2", &server2, "s2");
        host(&client, "c0", "10.1.0.2/24", "10.1.0.1");
        host(&server1, "s1", "10.2.0.2/24", "10.2.0.1");
        host(&server2, "s2", "10.3.0.2/24", "10.3.0.1");

        let dir = tempdir("chain-e2e");
        let api = format!("unix:{}", dir.join("api.sock").display());
        let sock_in = dir.join("cnf-in.sock");
        let sock_out = dir.join("cnf-out.sock");
        let cpus = allowed_cpus();
        let worker_cpu = *cpus.last().unwrap_or(&0);
        let testpmd_cpu = *cpus.first().unwrap_or(&0);
        let ports = [
            ("p0", "afpacket:r0".to_string()),
            ("p1", "afpacket:r1".to_string()),
            ("p2", "afpacket:r2".to_string()),
            ("cnf-in", format!("memif:{},master", sock_in.display())),
            ("cnf-out", format!("memif:{},master", sock_out.display())),
        ];
        let daemon = start_sluiced(&router, &dir, "router", &api, worker_cpu, &ports);

        let mut lab = Lab {
            procs: Processes {
                servers: Vec::new(),
                testpmd: None,
                daemon: Some(daemon),
                dir: dir.clone(),
            },
            api,
            client,
            _router: router,
            _server1: server1,
            _server2: server2,
        };
        let addresses = ["10.1.0.1/24", "10.2.0.1/24", "10.3.0.1/24"];
        let mut manifest = String::new();
        for (i, (name, backend)) in ports.iter().enumerate() {
            let addr = addresses
                .get(i)
                .map(|a| format!(", addresses: [\"{a}\"]"))
                .unwrap_or_default();
            manifest.push_str(&format!(
                "apiVersion: sluice.dev/v1\nkind: Interface\nmetadata: {{name: {name}}}\nspec: {{backend: \"{backend}\", mac: \"02:00:00:00:0{}:01\"{addr}}}\n---\n",
                i + 1
            ));
        }
        manifest.push_str(CHAIN);
        let path = dir.join("chain.yaml");
        std::fs::write(&path, manifest).unwrap();
        sluicectl_ok(&lab.api, &["apply", "-f", path.to_str().unwrap()]);

        lab.procs
            .servers
            .push(http_server(&lab._server1, &dir.join("www1"), "server1"));
        lab.procs
            .servers
            .push(http_server(&lab._server2, &dir.join("www2"), "server2"));
        lab.procs.testpmd = Some(Testpmd::start("chain", &sock_in, &sock_out, testpmd_cpu));
        lab
    }

    fn api(&self) -> Api<'_> {
        Api(&self.api)
    }

    fn stats(&self) -> serde_json::Value {
        self.api().stats()
    }

    fn drops(&self, reason: &str) -> u64 {
        self.api().drops(reason)
    }

    fn hop(&self, hop: &str) -> serde_json::Value {
        self.api().hop(hop)
    }

    fn wait_links(&self, up: bool) {
        self.api().wait_links(up)
    }

    /// curl from the client; (exit code, stdout).
    fn curl(&self, args: &str) -> (Option<i32>, String) {
        let out = self.client.try_sh(&format!("curl -sS {args}"));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

#[test]
fn tcp_crosses_firewall_testpmd_and_load_balancer_both_ways() {
    if !lab_can_run("tcp_crosses_firewall_testpmd_and_load_balancer_both_ways") {
        return;
    }
    let _serial = one_lab_at_a_time();
    let mut lab = Lab::start();
    lab.wait_links(true);
    // The router learns the servers' MACs (ICMP is not steered).
    for s in ["10.2.0.2", "10.3.0.2"] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !lab
            .client
            .try_sh(&format!("ping -c 1 -W 1 {s}"))
            .status
            .success()
        {
            assert!(
                Instant::now() < deadline,
                "{s} unreachable: {}",
                lab.stats()
            );
        }
    }

    // Several connections: every one completes, and the balancer uses
    // both servers.
    let mut who = std::collections::BTreeMap::new();
    for i in 0..16 {
        let (code, body) = lab.curl("--max-time 10 http://10.96.0.10/who");
        assert_eq!(
            code,
            Some(0),
            "connection {i} failed; stats: {}",
            lab.stats()
        );
        *who.entry(body).or_insert(0) += 1;
    }
    assert_eq!(
        who.keys().map(String::as_str).collect::<Vec<_>>(),
        ["server1", "server2"],
        "{who:?}"
    );
    // A bulk transfer, byte-exact.
    let (code, size) =
        lab.curl("--max-time 30 -o /dev/null -w '%{size_download}' http://10.96.0.10/blob");
    assert_eq!((code, size.as_str()), (Some(0), "262144"));

    // Every hop saw both directions; the CNF hop was crossed by port pair.
    for hop in ["fw", "testpmd", "lb"] {
        let h = lab.hop(hop);
        assert!(
            h["forward_packets"].as_u64().unwrap_or(0) >= 16 * 3
                && h["reverse_packets"].as_u64().unwrap_or(0) >= 16 * 3,
            "{hop}: {h}"
        );
    }

    // The firewall refuses another port of the VIP.
    let denied = lab.drops("chain_denied");
    let (code, _) = lab.curl("--max-time 2 http://10.96.0.10:81/");
    assert_ne!(code, Some(0));
    assert!(lab.drops("chain_denied") > denied);

    // Without the CNF the chain fails closed.
    lab.procs.testpmd.take();
    lab.wait_links(false);
    let down = lab.drops("chain_hop_down");
    let (code, _) = lab.curl("--max-time 2 http://10.96.0.10/who");
    assert_ne!(code, Some(0), "the chain must not be bypassed");
    assert!(lab.drops("chain_hop_down") > down, "{}", lab.stats());
}

// ---- An Ethernet chain: Sluice as a bump in the wire ----
//
//  client ns                 router ns (sluiced)                  server ns
//  c0 10.0.7.1/24 ─veth─ r0 = wire-a      wire-b = r1 ─veth─ s0 10.0.7.2/24
//                        cnf-in  (memif master) ══ net_memif0 ┐
//                        cnf-out (memif master) ══ net_memif1 ┘ dpdk-testpmd, io
//
// One subnet on both sides, no address on Sluice: ARP, ping and TCP cross
// firewall → testpmd → counter and come back the same way, frames unchanged.

const WIRE_CHAIN: &str = r#"
apiVersion: sluice.dev/v1
kind: NetworkServiceEndpoint
metadata: {name: fw}
spec:
  function:
    firewall: {rules: [{action: Deny, protocol: TCP, ports: [{port: 9}]}], defaultAction: Allow}
---
apiVersion: sluice.dev/v1
kind: NetworkServiceEndpoint
metadata: {name: testpmd}
spec:
  interfaces: {ingress: cnf-in, egress: cnf-out}
---
apiVersion: sluice.dev/v1
kind: NetworkServiceEndpoint
metadata: {name: count}
spec:
  function: {counter: {}}
---
apiVersion: sluice.dev/v1
kind: Chain
metadata: {name: wire}
spec:
  payload: ETHERNET
  endpoints: [fw, testpmd, count]
  steering: [{interface: wire-a}]
  exit: wire-b
"#;

/// The firewall, denying TCP to port 8080 (the server's).
const WIRE_DENY_8080: &str = r#"
apiVersion: sluice.dev/v1
kind: NetworkServiceEndpoint
metadata: {name: fw}
spec:
  function:
    firewall: {rules: [{action: Deny, protocol: TCP, ports: [{port: 8080}]}], defaultAction: Allow}
"#;

struct WireLab {
    procs: Processes,
    api: String,
    client: Netns,
    server_ns: Netns,
    _router: Netns,
}

/// An address on a host of the shared subnet (no gateway), IPv6 off so
/// that only the test's traffic crosses.
fn lan_host(ns: &Netns, dev: &str, addr: &str) {
    ns.disable_ipv6();
    ns.ip(&["addr", "add", addr, "dev", dev]);
    if have("ethtool") {
        ns.sh(&format!(
            "ethtool -K {dev} tso off gso off gro off 2>/dev/null || true"
        ));
    }
}

impl WireLab {
    fn start() -> WireLab {
        let client = Netns::new("l2w-c");
        let router = Netns::new("l2w-r");
        let server_ns = Netns::new("l2w-s");
        router.disable_ipv6();
        router.sysctl("net.ipv4.ip_forward", "0");
        veth(&client, "c0", &router, "r0");
        veth(&router, "r1", &server_ns, "s0");
        lan_host(&client, "c0", "10.0.7.1/24");
        lan_host(&server_ns, "s0", "10.0.7.2/24");

        let dir = tempdir("l2chain-e2e");
        let api = format!("unix:{}", dir.join("api.sock").display());
        let sock_in = dir.join("cnf-in.sock");
        let sock_out = dir.join("cnf-out.sock");
        let cpus = allowed_cpus();
        let worker_cpu = *cpus.last().unwrap_or(&0);
        let testpmd_cpu = *cpus.first().unwrap_or(&0);
        let ports = [
            ("wire-a", "afpacket:r0".to_string()),
            ("wire-b", "afpacket:r1".to_string()),
            ("cnf-in", format!("memif:{},master", sock_in.display())),
            ("cnf-out", format!("memif:{},master", sock_out.display())),
        ];
        let mut manifest = String::new();
        for (i, (name, backend)) in ports.iter().enumerate() {
            manifest.push_str(&format!(
                "apiVersion: sluice.dev/v1\nkind: Interface\nmetadata: {{name: {name}}}\nspec: {{backend: \"{backend}\", mac: \"02:00:00:00:0{}:01\"}}\n---\n",
                i + 1
            ));
        }
        manifest.push_str(WIRE_CHAIN);
        let daemon = start_sluiced(&router, &dir, "wire", &api, worker_cpu, &ports);
        let mut lab = WireLab {
            procs: Processes {
                servers: Vec::new(),
                testpmd: None,
                daemon: Some(daemon),
                dir: dir.clone(),
            },
            api,
            client,
            server_ns,
            _router: router,
        };
        lab.apply("wire.yaml", &manifest);
        let server = http_server(&lab.server_ns, &dir.join("www"), "server");
        lab.procs.servers.push(server);
        lab.procs.testpmd = Some(Testpmd::start("l2chain", &sock_in, &sock_out, testpmd_cpu));
        lab
    }

    fn apply(&self, file: &str, manifest: &str) {
        let path = self.procs.dir.join(file);
        std::fs::write(&path, manifest).unwrap();
        sluicectl_ok(&self.api, &["apply", "-f", path.to_str().unwrap()]);
    }

    fn api(&self) -> Api<'_> {
        Api(&self.api)
    }

    fn ping(&self) -> bool {
        self.client
            .try_sh("ping -c 1 -W 1 10.0.7.2")
            .status
            .success()
    }

    /// curl from the client; (exit code, stdout).
    fn curl(&self, args: &str) -> (Option<i32>, String) {
        let out = self.client.try_sh(&format!("curl -sS {args}"));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// The MAC `ns` has resolved for `ip` (`ip neigh`), if any.
    fn neighbour(ns: &Netns, ip: &str) -> Option<String> {
        let out = ns.sh(&format!("ip neigh show {ip}"));
        let mut words = out.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        words.next().map(str::to_string)
    }
}

#[test]
fn an_ethernet_chain_carries_arp_ping_and_tcp_unchanged_between_two_hosts() {
    if !lab_can_run("an_ethernet_chain_carries_arp_ping_and_tcp_unchanged_between_two_hosts") {
        return;
    }
    let _serial = one_lab_at_a_time();
    let mut lab = WireLab::start();
    lab.api().wait_links(true);
    let fail = |what: &str, lab: &WireLab| -> ! { panic!("{what}; stats: {}", lab.api().stats()) };

    // ARP and ping across the wire: the hosts resolve each other's own
    // MACs (Sluice's ports are 02:00:00:00:0N:01, never seen).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.ping() {
        if Instant::now() > deadline {
            fail("10.0.7.2 unreachable through the chain", &lab);
        }
    }
    let client_mac = format_mac(lab.client.mac("c0"));
    let server_mac = format_mac(lab.server_ns.mac("s0"));
    assert_eq!(
        WireLab::neighbour(&lab.client, "10.0.7.2").as_deref(),
        Some(server_mac.as_str())
    );
    assert_eq!(
        WireLab::neighbour(&lab.server_ns, "10.0.7.1").as_deref(),
        Some(client_mac.as_str()),
        "the server sees the client's own MAC"
    );

    // TCP: a small page and a bulk transfer, byte-exact.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = lab.curl("--max-time 3 http://10.0.7.2:8080/who");
        if code == Some(0) && body == "server" {
            break;
        }
        if Instant::now() > deadline {
            fail(
                &format!("no HTTP through the chain: {code:?} {body:?}"),
                &lab,
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, size) =
        lab.curl("--max-time 30 -o /dev/null -w '%{size_download}' http://10.0.7.2:8080/blob");
    assert_eq!(
        (code, size.as_str()),
        (Some(0), "262144"),
        "{}",
        lab.api().stats()
    );

    // Every hop saw both directions; the chain is shown as ETHERNET.
    for hop in ["fw", "testpmd", "count"] {
        let h = lab.api().hop(hop);
        assert_eq!(h["payload"], "ETHERNET", "{h}");
        assert!(
            // The bulk transfer alone is 180 full frames one way.
            h["forward_packets"].as_u64().unwrap_or(0) >= 20
                && h["reverse_packets"].as_u64().unwrap_or(0) >= 180,
            "{hop}: {h}"
        );
    }
    let chains = sluicectl_ok(&lab.api, &["get", "chain"]);
    assert!(chains.contains("ETHERNET"), "{chains}");

    // A firewall rule for the server's port: TCP times out, ping works.
    lab.apply("deny.yaml", WIRE_DENY_8080);
    let denied = lab.api().drops("chain_denied");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, _) = lab.curl("--max-time 2 http://10.0.7.2:8080/who");
        if code == Some(28) {
            break; // curl's "operation timed out"
        }
        if Instant::now() > deadline {
            fail(&format!("TCP to 8080 not denied: curl {code:?}"), &lab);
        }
    }
    assert!(lab.api().drops("chain_denied") > denied);
    assert!(lab.ping(), "ping is not TCP and still crosses");

    // Without the CNF the chain fails closed: nothing crosses.
    lab.procs.testpmd.take();
    lab.api().wait_links(false);
    assert!(!lab.ping(), "the chain must not be bypassed");
    assert!(lab.api().drops("chain_hop_down") > 0);
}
