//! OVS-DPDK: Open vSwitch's userspace datapath on the same DPDK devices.
//!
//! Each round starts a private OVS (`../shared/PEERS.md`): a fresh ovsdb in
//! a run directory of its own, `ovsdb-server` on a Unix socket there, and
//! `ovs-vswitchd-dpdk` inside a network namespace of its own (its netdev
//! bridge makes tap devices), with DPDK on hugepages (`--in-memory`, so no
//! hugetlbfs mount is needed), the PMD thread on core 1 (`pmd-cpu-mask=0x2`)
//! and its main lcore on core 0. A netdev bridge gets two DPDK ports: `in`
//! (`net_pcap0` replaying the capture forever, OpenFlow port 1) and `out`
//! (`net_null0`, port 2). The rules do the scenario's work:
//!
//! * routing ([`route_flows`]): one flow per route of Sluice's table,
//!   priority by prefix length (longest match wins), `dec_ttl`, both MACs
//!   set, out port 2;
//! * Service DNAT with conntrack ([`service_flows`], [`service_groups`]):
//!   table 0 sends each Service's VIP:port to `ct(table=1,zone=1,nat)`;
//!   table 1 passes `+est+trk` and `+new+trk+dnat` (one-way UDP stays
//!   `+new` in OVS conntrack) to table 2 and sends `+new+trk` VIP traffic
//!   to the Service's select group, whose buckets are
//!   `ct(commit,zone=1,nat(dst=EP:PORT),table=2)`; table 2 routes to the
//!   endpoints' gateway.
//!
//! The rate is the `out` port's TX counter (`ovs-appctl dpctl/show -s`),
//! read once a second after one second of warm-up. Every process, the run
//! directory and the namespace go when the round ends, however it ends.

use super::{
    command, is_root, missing, result_from_rate, run_cmd, Cleanup, HugePages, PeerRun, Process,
    RouteRule, RunInput, ServiceRule, TempDir, Work, OUT_MAC,
};
use crate::l3fwd::SystemResult;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const VSWITCHD: &str = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk";
const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
const TOOLS: [&str; 5] = [
    "ovsdb-tool",
    "ovsdb-server",
    "ovs-vsctl",
    "ovs-ofctl",
    "ovs-appctl",
];

/// The gateway the Service traffic is routed to after DNAT (Sluice's
/// service-lb table routes the endpoints via this MAC).
pub const SERVICE_GW_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
/// The endpoints' prefix behind that gateway.
pub const ENDPOINT_NET: (&str, u8) = ("10.128.0.0", 9);

pub struct Ovs {
    work: Work,
    _huge: Option<HugePages>,
}

impl Ovs {
    pub fn new(work: Work) -> Result<Ovs, String> {
        if work == Work::Io {
            return Err("OVS-DPDK has no io-only counterpart here (testpmd is the io peer)".into());
        }
        if let Some(why) = missing(VSWITCHD) {
            return Err(format!(
                "{why} (Debian: apt-get install openvswitch-switch-dpdk)"
            ));
        }
        for t in TOOLS {
            if let Some(why) = missing(t) {
                return Err(format!(
                    "{why} (Debian: apt-get install openvswitch-switch)"
                ));
            }
        }
        if !Path::new(SCHEMA).exists() {
            return Err(format!("{SCHEMA} is missing"));
        }
        if !is_root() {
            return Err("OVS-DPDK needs root (hugepages, a network namespace)".into());
        }
        Ok(Ovs { work, _huge: None })
    }
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The OpenFlow rules that route like Sluice's table: port 1 in, port 2
/// out. Longest prefix first through priorities.
pub fn route_flows(routes: &[RouteRule]) -> String {
    let mut s = String::new();
    for r in routes {
        let (kind, field) = if r.prefix.is_ipv4() {
            ("ip", "nw_dst")
        } else {
            ("ipv6", "ipv6_dst")
        };
        let _ = writeln!(
            s,
            "table=0,priority={},in_port=1,{kind},{field}={}/{},actions=dec_ttl,mod_dl_src:{},mod_dl_dst:{},output:2",
            1000 + r.len as u32,
            r.prefix,
            r.len,
            mac(OUT_MAC),
            mac(r.gateway_mac)
        );
    }
    s.push_str("table=0,priority=0,actions=drop\n");
    s
}

fn proto_name(proto: u8) -> &'static str {
    if proto == 6 {
        "tcp"
    } else {
        "udp"
    }
}

/// The conntrack + NAT rules of the Service pipeline (OpenFlow 1.5): group
/// `i + 1` is Service `i`'s.
pub fn service_flows(services: &[ServiceRule]) -> String {
    let mut s = String::new();
    for sv in services {
        let p = proto_name(sv.proto);
        let _ = writeln!(
            s,
            "table=0,priority=100,in_port=1,{p},nw_dst={},tp_dst={},actions=ct(table=1,zone=1,nat)",
            sv.vip, sv.port
        );
    }
    s.push_str("table=0,priority=0,actions=drop\n");
    s.push_str("table=1,priority=200,ct_state=+est+trk,ip,actions=goto_table:2\n");
    s.push_str("table=1,priority=200,ct_state=+new+trk+dnat,ip,actions=goto_table:2\n");
    for (i, sv) in services.iter().enumerate() {
        let p = proto_name(sv.proto);
        let _ = writeln!(
            s,
            "table=1,priority=100,ct_state=+new+trk,{p},nw_dst={},tp_dst={},actions=group:{}",
            sv.vip,
            sv.port,
            i + 1
        );
    }
    s.push_str("table=1,priority=0,actions=drop\n");
    let _ = writeln!(
        s,
        "table=2,priority=100,ip,nw_dst={}/{},actions=dec_ttl,mod_dl_src:{},mod_dl_dst:{},output:2",
        ENDPOINT_NET.0,
        ENDPOINT_NET.1,
        mac(OUT_MAC),
        mac(SERVICE_GW_MAC)
    );
    s.push_str("table=2,priority=0,actions=drop\n");
    s
}

/// One select group per Service, a bucket per endpoint.
pub fn service_groups(services: &[ServiceRule]) -> String {
    let mut s = String::new();
    for (i, sv) in services.iter().enumerate() {
        let _ = write!(s, "group_id={},type=select", i + 1);
        for (ep, port) in &sv.endpoints {
            let _ = write!(
                s,
                ",bucket=actions=ct(commit,zone=1,nat(dst={ep}:{port}),table=2)"
            );
        }
        s.push('\n');
    }
    s
}

/// Parses `ovs-appctl dpctl/show -s`: port name → (RX packets, TX packets).
pub fn port_counters(text: &str, port: &str) -> Option<(u64, u64)> {
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        let l = l.trim();
        // "port 2: out (dpdk: configured_rx_queues=1, ...)"
        let Some(rest) = l.strip_prefix("port ") else {
            continue;
        };
        let name = rest.split(':').nth(1).map(str::trim).unwrap_or("");
        if name.split_whitespace().next() != Some(port) {
            continue;
        }
        let mut rx = None;
        let mut tx = None;
        let count = |l: &str, key: &str| -> Option<u64> {
            l.strip_prefix(key)?.split_whitespace().next()?.parse().ok()
        };
        for l in lines.by_ref().take(6) {
            let l = l.trim();
            rx = rx.or_else(|| count(l, "RX packets:"));
            tx = tx.or_else(|| count(l, "TX packets:"));
            if rx.is_some() && tx.is_some() {
                break;
            }
        }
        return Some((rx?, tx?));
    }
    None
}

/// A running private OVS.
struct Instance {
    dir: TempDir,
    _vswitchd: Process,
    _ovsdb: Process,
    _netns: Cleanup,
}

impl Instance {
    fn sock(dir: &Path) -> PathBuf {
        dir.join("db.sock")
    }

    fn tool(&self, program: &str) -> Command {
        tool(&self.dir.path, program)
    }

    /// `ovs-appctl` talking to this instance's ovs-vswitchd.
    fn appctl(&self) -> Command {
        let mut c = self.tool("ovs-appctl");
        c.arg("-t").arg(self.dir.path.join("ovs-vswitchd.ctl"));
        c
    }
}

fn tool(dir: &Path, program: &str) -> Command {
    let mut c = command(program);
    c.env("OVS_RUNDIR", dir)
        .env("OVS_DBDIR", dir)
        .env("OVS_LOGDIR", dir)
        .stdin(Stdio::null());
    if program == "ovs-vsctl" {
        c.arg(format!("--db=unix:{}", Instance::sock(dir).display()))
            .arg("--timeout=120");
    }
    c
}

fn wait_for(path: &Path, what: &str, limit: Duration) -> Result<(), String> {
    let t = Instant::now();
    while !path.exists() {
        if t.elapsed() > limit {
            return Err(format!("{what} did not appear at {}", path.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn start(pcap: &Path, flows: &str, groups: &str, tag: usize) -> Result<Instance, String> {
    let dir = TempDir::new("ovs")?;
    let d = dir.path.clone();
    let db = d.join("conf.db");
    run_cmd(tool(&d, "ovsdb-tool").arg("create").arg(&db).arg(SCHEMA))?;
    let mut c = tool(&d, "ovsdb-server");
    c.arg(&db)
        .arg(format!("--remote=punix:{}", Instance::sock(&d).display()))
        .arg(format!(
            "--unixctl={}",
            d.join("ovsdb-server.ctl").display()
        ))
        .arg(format!(
            "--log-file={}",
            d.join("ovsdb-server.log").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let ovsdb = Process::spawn(&mut c)?;
    wait_for(
        &Instance::sock(&d),
        "ovsdb-server's socket",
        Duration::from_secs(10),
    )?;
    run_cmd(tool(&d, "ovs-vsctl").args(["--no-wait", "init"]))?;
    run_cmd(tool(&d, "ovs-vsctl").args([
        "--no-wait",
        "set",
        "Open_vSwitch",
        ".",
        "other_config:dpdk-init=true",
        "other_config:dpdk-socket-mem=1024",
        "other_config:dpdk-lcore-mask=0x1",
        "other_config:pmd-cpu-mask=0x2",
        "other_config:dpdk-extra=--no-pci --in-memory --no-telemetry",
    ]))?;
    let ns = format!("sluice-perf-ovs-{}-{tag}", std::process::id());
    run_cmd(command("ip").args(["netns", "add", &ns]))?;
    let ns2 = ns.clone();
    let netns = Cleanup::new(move || {
        let _ = command("ip")
            .args(["netns", "del", &ns2])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    });
    let mut c = tool(&d, "ip");
    c.args(["netns", "exec", &ns, VSWITCHD])
        .arg(format!("unix:{}", Instance::sock(&d).display()))
        .arg(format!(
            "--unixctl={}",
            d.join("ovs-vswitchd.ctl").display()
        ))
        .arg(format!(
            "--log-file={}",
            d.join("ovs-vswitchd.log").display()
        ))
        .arg(format!(
            "--pidfile={}",
            d.join("ovs-vswitchd.pid").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let vswitchd = Process::spawn(&mut c)?;
    let inst = Instance {
        dir,
        _vswitchd: vswitchd,
        _ovsdb: ovsdb,
        _netns: netns,
    };
    wait_for(
        &d.join("ovs-vswitchd.ctl"),
        "ovs-vswitchd's control socket",
        Duration::from_secs(60),
    )
    .map_err(|e| format!("{e}; log: {}", log_tail(&d)))?;
    let devargs_in = format!("net_pcap0,rx_pcap={},infinite_rx=1", pcap.display());
    run_cmd(inst.tool("ovs-vsctl").args([
        "add-br",
        "br0",
        "--",
        "set",
        "bridge",
        "br0",
        "datapath_type=netdev",
        "protocols=OpenFlow10,OpenFlow13,OpenFlow15",
        "--",
        "add-port",
        "br0",
        "in",
        "--",
        "set",
        "Interface",
        "in",
        "type=dpdk",
        &format!("options:dpdk-devargs=\"{devargs_in}\""),
        "ofport_request=1",
        "--",
        "add-port",
        "br0",
        "out",
        "--",
        "set",
        "Interface",
        "out",
        "type=dpdk",
        "options:dpdk-devargs=\"net_null0,no-rx=1\"",
        "ofport_request=2",
    ]))
    .map_err(|e| format!("{e}; log: {}", log_tail(&d)))?;
    // The ports' state: a port DPDK could not open has an error.
    let errors = run_cmd(
        inst.tool("ovs-vsctl")
            .args(["get", "Interface", "in", "error"]),
    )
    .unwrap_or_default();
    if !errors.trim().is_empty() && errors.trim() != "[]" {
        return Err(format!("OVS port in: {}", errors.trim()));
    }
    let flows_file = d.join("flows.txt");
    std::fs::write(&flows_file, flows).map_err(|e| e.to_string())?;
    if !groups.is_empty() {
        let groups_file = d.join("groups.txt");
        std::fs::write(&groups_file, groups).map_err(|e| e.to_string())?;
        run_cmd(
            inst.tool("ovs-ofctl")
                .args(["-O", "OpenFlow15", "add-groups", "br0"])
                .arg(&groups_file),
        )?;
    }
    run_cmd(
        inst.tool("ovs-ofctl")
            .args(["-O", "OpenFlow15", "del-flows", "br0"]),
    )?;
    run_cmd(
        inst.tool("ovs-ofctl")
            .args(["-O", "OpenFlow15", "add-flows", "br0"])
            .arg(&flows_file),
    )?;
    Ok(inst)
}

fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("ovs-vswitchd.log")).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ERR") || l.contains("EMER"))
        .collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

fn counters(inst: &Instance) -> Result<(u64, u64), String> {
    let text = run_cmd(inst.appctl().args(["dpctl/show", "-s"]))?;
    let (rx, _) = port_counters(&text, "in").ok_or("no counters for port in")?;
    let (_, tx) = port_counters(&text, "out").ok_or("no counters for port out")?;
    Ok((rx, tx))
}

impl PeerRun for Ovs {
    fn prepare(&mut self, input: &RunInput<'_>) -> Result<(), String> {
        match self.work {
            Work::Route if input.routes.is_empty() => return Err("no routes".into()),
            Work::ServiceNat if input.services.is_empty() => return Err("no Services".into()),
            _ => {}
        }
        self._huge = Some(HugePages::reserve(1024)?);
        Ok(())
    }

    fn measure(&mut self, input: &RunInput<'_>, progress: bool) -> Result<SystemResult, String> {
        static ROUND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let tag = ROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (flows, groups) = match self.work {
            Work::Route => (route_flows(input.routes), String::new()),
            Work::ServiceNat => (
                service_flows(input.services),
                service_groups(input.services),
            ),
            Work::Io => unreachable!("refused in Ovs::new"),
        };
        let t = Instant::now();
        let inst = start(input.pcap, &flows, &groups, tag)?;
        if progress {
            eprintln!("ovs-dpdk: started in {:.1}s", t.elapsed().as_secs_f64());
        }
        // Warm-up: the first packets build the megaflow cache and, for the
        // Services, the connections.
        std::thread::sleep(Duration::from_secs(1));
        let (rx0, tx0) = counters(&inst)?;
        let t0 = Instant::now();
        let mut per_second = Vec::new();
        let mut last = tx0;
        let mut end = (rx0, tx0);
        for sec in 1..=input.seconds {
            std::thread::sleep(
                (t0 + Duration::from_secs(sec)).saturating_duration_since(Instant::now()),
            );
            end = counters(&inst)?;
            let mpps = (end.1 - last) as f64 / 1e6;
            last = end.1;
            per_second.push((mpps * 1000.0).round() / 1000.0);
            if progress {
                eprintln!("ovs-dpdk: {sec}/{}s {mpps:.2} Mpps", input.seconds);
            }
        }
        let dt = t0.elapsed().as_secs_f64();
        let pid: Option<u32> = std::fs::read_to_string(inst.dir.path.join("ovs-vswitchd.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let resident = pid.map_or(0.0, super::resident_mib_of);
        if self.work == Work::ServiceNat {
            let ct = run_cmd(inst.appctl().args(["dpctl/dump-conntrack"])).unwrap_or_default();
            if ct.lines().count() == 0 {
                return Err(
                    "OVS conntrack holds no connections: the NAT rules did not apply".into(),
                );
            }
        }
        let forwarded = end.1 - tx0;
        if forwarded == 0 {
            return Err(format!(
                "OVS forwarded nothing (received {}); log: {}",
                end.0 - rx0,
                log_tail(&inst.dir.path)
            ));
        }
        drop(inst);
        Ok(result_from_rate(
            "ovs-dpdk",
            end.0 - rx0,
            forwarded,
            dt,
            1.0,
            per_second,
            resident,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_rules_match_the_table_longest_prefix_first() {
        let routes = vec![
            RouteRule {
                prefix: "10.1.0.0".parse().unwrap(),
                len: 16,
                gateway_mac: [2, 0, 0, 0, 1, 0],
            },
            RouteRule {
                prefix: "10.1.7.0".parse().unwrap(),
                len: 24,
                gateway_mac: [2, 0, 0, 0, 1, 3],
            },
            RouteRule {
                prefix: "fd00:9::".parse().unwrap(),
                len: 48,
                gateway_mac: [2, 0, 0, 0, 1, 1],
            },
        ];
        let text = route_flows(&routes);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![
                "table=0,priority=1016,in_port=1,ip,nw_dst=10.1.0.0/16,actions=dec_ttl,mod_dl_src:02:00:00:00:00:02,mod_dl_dst:02:00:00:00:01:00,output:2",
                "table=0,priority=1024,in_port=1,ip,nw_dst=10.1.7.0/24,actions=dec_ttl,mod_dl_src:02:00:00:00:00:02,mod_dl_dst:02:00:00:00:01:03,output:2",
                "table=0,priority=1048,in_port=1,ipv6,ipv6_dst=fd00:9::/48,actions=dec_ttl,mod_dl_src:02:00:00:00:00:02,mod_dl_dst:02:00:00:00:01:01,output:2",
                "table=0,priority=0,actions=drop",
            ]
        );
    }

    #[test]
    fn service_rules_are_the_conntrack_nat_pipeline() {
        let text = service_flows(&crate::peers::sample_services());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![
                "table=0,priority=100,in_port=1,udp,nw_dst=172.30.0.1,tp_dst=53,actions=ct(table=1,zone=1,nat)",
                "table=0,priority=100,in_port=1,tcp,nw_dst=172.30.0.2,tp_dst=80,actions=ct(table=1,zone=1,nat)",
                "table=0,priority=0,actions=drop",
                "table=1,priority=200,ct_state=+est+trk,ip,actions=goto_table:2",
                "table=1,priority=200,ct_state=+new+trk+dnat,ip,actions=goto_table:2",
                "table=1,priority=100,ct_state=+new+trk,udp,nw_dst=172.30.0.1,tp_dst=53,actions=group:1",
                "table=1,priority=100,ct_state=+new+trk,tcp,nw_dst=172.30.0.2,tp_dst=80,actions=group:2",
                "table=1,priority=0,actions=drop",
                "table=2,priority=100,ip,nw_dst=10.128.0.0/9,actions=dec_ttl,mod_dl_src:02:00:00:00:00:02,mod_dl_dst:02:00:00:00:01:01,output:2",
                "table=2,priority=0,actions=drop",
            ]
        );
        assert_eq!(
            service_groups(&crate::peers::sample_services()),
            "group_id=1,type=select,bucket=actions=ct(commit,zone=1,nat(dst=10.128.0.10:8080),table=2),bucket=actions=ct(commit,zone=1,nat(dst=10.128.0.11:8080),table=2)\n\
             group_id=2,type=select,bucket=actions=ct(commit,zone=1,nat(dst=10.128.0.20:8080),table=2)\n"
        );
    }

    #[test]
    fn reads_port_counters_from_dpctl_show() {
        let text = "netdev@ovs-netdev:
  lookups: hit:1130 missed:4 lost:0
  flows: 4
  port 0: ovs-netdev (tap)
    RX packets:0 errors:0 dropped:0 overruns:0 frame:0
    TX packets:0 errors:0 dropped:0 aborted:0 carrier:0
    collisions:0
    RX bytes:0  TX bytes:0
  port 1: in (dpdk: configured_rx_queues=1, configured_tx_queues=2, mtu=1500)
    RX packets:123456789 errors:0 dropped:0 overruns:? frame:?
    TX packets:0 errors:0 dropped:0 aborted:? carrier:?
    collisions:?
    RX bytes:0  TX bytes:0
  port 2: out (dpdk: configured_rx_queues=1)
    RX packets:0 errors:0 dropped:0 overruns:? frame:?
    TX packets:98765 errors:0 dropped:7 aborted:? carrier:?
    collisions:?
    RX bytes:0  TX bytes:0
";
        assert_eq!(port_counters(text, "in"), Some((123456789, 0)));
        assert_eq!(port_counters(text, "out"), Some((0, 98765)));
        assert_eq!(port_counters(text, "br0"), None);
    }
}
