//! `sluice-pktgen`: the packet generator's command line. See docs/pktgen.md.

use clap::{Args, Parser, Subcommand};
use sluice_pktgen::out;
use sluice_pktgen::ports::{parse_duration_ns, PortSpec};
use sluice_pktgen::rate::Rate;
use sluice_pktgen::replay::{replay, ReplayConfig};
use sluice_pktgen::run::{run_ports, Progress, RunConfig};
use sluice_pktgen::spec::{Profile, StreamSpec};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "sluice-pktgen", version, about = "Sluice's packet generator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send streams and measure what comes back.
    Run(RunArgs),
    /// Send a capture's frames, at their recorded pace or as fast as possible.
    Replay(ReplayArgs),
    /// RFC 2544 throughput search (NDR and PDR) and latency, per frame size.
    Rfc2544(sluice_pktgen::rfc2544::Rfc2544Args),
    /// Check streams and print their template frames.
    Show(StreamArgs),
    /// Stateful TCP: connections with request/response traffic (smoltcp on both ends).
    Tcp(TcpArgs),
}

#[derive(Args)]
struct TcpArgs {
    /// The client side's port: mem:loop[,loss=1%][,delay=100us][,...] (both
    /// sides on it), or an interface (afpacket:IFACE, afxdp:IFACE).
    #[arg(long, conflicts_with = "dut")]
    port: Option<String>,
    /// The server side's port, when --port is an interface (without it the
    /// servers are real hosts past --port).
    #[arg(long, conflicts_with = "dut")]
    server_port: Option<String>,
    /// Or through Sluice in this process: 'service' (a ClusterIP Service with
    /// --endpoints endpoints; clients, servers and listeners are the lab's).
    #[arg(long)]
    dut: Option<String>,
    /// Endpoints of the Service (--dut service).
    #[arg(long, default_value_t = 2)]
    endpoints: usize,
    /// IPv6 through the Service (--dut service; with --port, give IPv6
    /// --clients and --servers instead).
    #[arg(long, short = '6')]
    ipv6: bool,
    /// Client addresses: 10.0.0.100-10.0.0.199, 10.0.0.0/24, fd00::100-fd00::1ff,
    /// fd00::/120 or one address.
    #[arg(long)]
    clients: Option<String>,
    /// Client ports, FIRST-LAST.
    #[arg(long, default_value = "1024-65535")]
    client_ports: String,
    /// Where clients connect: ADDR:PORT,... or [IPv6ADDR]:PORT,... (in turn).
    #[arg(long)]
    servers: Option<String>,
    /// Where the server side listens (default: --servers).
    #[arg(long)]
    listen: Option<String>,
    /// New connections per second (default: as fast as slots free up).
    #[arg(long)]
    cps: Option<f64>,
    /// Connections open at most at once.
    #[arg(long, default_value_t = 100)]
    concurrent: usize,
    /// Request bytes.
    #[arg(long, default_value_t = 100)]
    request: usize,
    /// Response bytes.
    #[arg(long, default_value_t = 1000)]
    response: usize,
    /// Request/response exchanges per connection (keep-alive when above 1).
    #[arg(long, default_value_t = 1)]
    requests: u32,
    /// Seconds to open connections for (default 5 unless --connections).
    #[arg(long)]
    seconds: Option<f64>,
    /// Stop after opening this many connections.
    #[arg(long)]
    connections: Option<u64>,
    /// A connection not done this long after opening is aborted (failed).
    #[arg(long, default_value = "10s")]
    timeout: String,
    /// After the last connection is opened, wait at most this long for the rest.
    #[arg(long, default_value = "12s")]
    drain: String,
    /// The client side's MAC and its next hop's (--port only).
    #[arg(long)]
    client_mac: Option<String>,
    #[arg(long)]
    server_mac: Option<String>,
    /// Where each side sends its frames when that is not the other side
    /// (a router between them, e.g. Sluice's port MAC).
    #[arg(long)]
    client_next_hop: Option<String>,
    #[arg(long)]
    server_next_hop: Option<String>,
    /// Connections per smoltcp interface.
    #[arg(long, default_value_t = 8)]
    shard_size: usize,
    /// Packet buffers in the generator's pool.
    #[arg(long, default_value_t = 32768)]
    pool: u32,
    /// Pin the generator to this core.
    #[arg(long)]
    core: Option<usize>,
    /// Pin the DUT's worker to this core (default: the last core).
    #[arg(long)]
    dut_core: Option<usize>,
    /// Print the result as one JSON object (the live lines go to stderr).
    #[arg(long)]
    json: bool,
    /// No live lines.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct StreamArgs {
    /// A profile file (YAML, or TOML if it ends in .toml).
    #[arg(long, conflicts_with = "stream")]
    profile: Option<PathBuf>,
    /// A stream in the short form, e.g. 'udp src=10.0.0.1-10.0.0.255 dport=53 size=64'
    /// (repeat for several).
    #[arg(long)]
    stream: Vec<String>,
}

impl StreamArgs {
    fn load(&self) -> Result<Profile, String> {
        if let Some(p) = &self.profile {
            return Profile::load(p).map_err(|e| e.to_string());
        }
        if self.stream.is_empty() {
            return Err("give --profile FILE or at least one --stream".into());
        }
        let streams = self
            .stream
            .iter()
            .enumerate()
            .map(|(i, s)| StreamSpec::parse_short(i + 1, s).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        Ok(Profile {
            streams,
            ..Profile::default()
        })
    }
}

#[derive(Args)]
struct RunArgs {
    /// Where packets go: mem:loop[,loss=1%][,delay=100us][,cap=1mpps], mem:sink, pcap:out=FILE,
    /// afpacket:IFACE, afxdp:IFACE[,native|skb][,zerocopy].
    #[arg(long)]
    port: String,
    /// Where packets come back (default: the port itself if it loops back).
    #[arg(long)]
    rx_port: Option<String>,
    #[command(flatten)]
    streams: StreamArgs,
    /// max, 10kpps, 1mpps, 5gbps, 50% (of --line-rate); default the profile's, or max.
    #[arg(long)]
    rate: Option<String>,
    /// Line rate that percentages refer to.
    #[arg(long, default_value = "10gbps")]
    line_rate: String,
    /// Packets sent back to back per grant (1-32).
    #[arg(long, default_value_t = 1)]
    burst: usize,
    /// Seconds to send (default the profile's, or 5).
    #[arg(long)]
    seconds: Option<f64>,
    /// Stop after this many packets.
    #[arg(long)]
    count: Option<u64>,
    /// How long to keep receiving after the last packet.
    #[arg(long, default_value = "50ms")]
    drain: String,
    /// Write received frames to this pcap file.
    #[arg(long)]
    capture: Option<PathBuf>,
    /// Packet buffers in the generator's pool.
    #[arg(long, default_value_t = 32768)]
    pool: u32,
    /// Pin the generator to this core.
    #[arg(long)]
    core: Option<usize>,
    /// Print the result as one JSON object (the live lines go to stderr).
    #[arg(long)]
    json: bool,
    /// No live lines.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct ReplayArgs {
    /// The capture to send.
    #[arg(long)]
    pcap: PathBuf,
    /// Where frames go.
    #[arg(long)]
    port: String,
    /// Replay this many times faster than recorded (default 1: as recorded).
    #[arg(long, default_value_t = 1.0, conflicts_with = "fast")]
    speed: f64,
    /// Ignore the timestamps: as fast as possible.
    #[arg(long)]
    fast: bool,
    /// Start over at the end of the file.
    #[arg(long)]
    repeat: bool,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<f64>,
    #[arg(long)]
    json: bool,
    #[arg(long, short)]
    quiet: bool,
}

fn pin(core: Option<usize>) -> Result<(), String> {
    if let Some(c) = core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: c }) {
            return Err(format!("--core {c}: cannot pin to that core"));
        }
    }
    Ok(())
}

fn live(quiet: bool) -> impl FnMut(&Progress) {
    move |p: &Progress| {
        if !quiet {
            eprintln!("{}", p.line());
        }
    }
}

fn cmd_run(a: RunArgs) -> Result<(), String> {
    let profile = a.streams.load()?;
    let line_bps = match Rate::parse(&a.line_rate, 0.0).map_err(|e| format!("--line-rate: {e}"))? {
        Rate::Bps(b) => b,
        _ => {
            return Err(format!(
                "--line-rate: expected bits per second (10gbps), got {:?}",
                a.line_rate
            ))
        }
    };
    let rate_text = a
        .rate
        .clone()
        .or(profile.rate.clone())
        .unwrap_or_else(|| "max".into());
    let rate = Rate::parse(&rate_text, line_bps).map_err(|e| format!("--rate: {e}"))?;
    if !(1..=32).contains(&a.burst) {
        return Err(format!("--burst: must be 1-32, got {}", a.burst));
    }
    let seconds = match (a.seconds.or(profile.seconds), a.count) {
        (Some(s), _) if !(s.is_finite() && s > 0.0) => {
            return Err(format!("--seconds: must be positive, got {s}"))
        }
        (Some(s), _) => Some(s),
        (None, Some(_)) => None,
        (None, None) => Some(5.0),
    };
    let tx = PortSpec::parse(&a.port).map_err(|e| format!("--port: {e}"))?;
    let rx = a
        .rx_port
        .as_deref()
        .map(PortSpec::parse)
        .transpose()
        .map_err(|e| format!("--rx-port: {e}"))?;
    let cfg = RunConfig {
        rate,
        burst: a.burst,
        seconds,
        count: a.count,
        drain_ns: parse_duration_ns(&a.drain).map_err(|e| format!("--drain: {e}"))?,
        pool_size: a.pool,
        ..RunConfig::default()
    };
    pin(a.core)?;
    let report = run_ports(
        &profile.streams,
        &tx,
        rx.as_ref(),
        &cfg,
        a.capture.as_deref(),
        &mut live(a.quiet),
    )?;
    if a.json {
        out!(
            "{}",
            serde_json::to_string(&report).expect("report serialises")
        );
    } else {
        out!("{}", sluice_pktgen::run::summary(&report));
    }
    Ok(())
}

fn cmd_replay(a: ReplayArgs) -> Result<(), String> {
    let out = PortSpec::parse(&a.port).map_err(|e| format!("--port: {e}"))?;
    let port = out.open("out", sluice_pktgen::clock::Clock::new())?;
    if !(a.speed.is_finite() && a.speed > 0.0) {
        return Err(format!("--speed: must be above zero, got {}", a.speed));
    }
    let cfg = ReplayConfig {
        speed: (!a.fast).then_some(a.speed),
        repeat: a.repeat,
        seconds: a.seconds,
    };
    if cfg.repeat && cfg.seconds.is_none() {
        return Err("--repeat needs --seconds".into());
    }
    let quiet = a.quiet;
    let report = replay(&a.pcap, port.as_ref(), &cfg, &mut |p: &Progress| {
        if !quiet {
            eprintln!("{}", p.tx_line());
        }
    })?;
    if a.json {
        out!(
            "{}",
            serde_json::to_string(&report).expect("report serialises")
        );
    } else {
        out!(
            "replayed {} frames ({} bytes) in {:.3} s: {:.3} Mpps, {:.1} Mbit/s{}",
            report.tx.packets,
            report.tx.bytes,
            report.seconds,
            report.tx.pps / 1e6,
            report.tx.bps / 1e6,
            if report.skipped > 0 {
                format!(", {} records skipped", report.skipped)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

fn cmd_tcp(a: TcpArgs) -> Result<(), String> {
    use sluice_pktgen::tcp::{self, dut, TcpConfig};
    let (lo, hi) = a
        .client_ports
        .split_once('-')
        .and_then(|(l, h)| Some((l.trim().parse::<u16>().ok()?, h.trim().parse::<u16>().ok()?)))
        .ok_or_else(|| {
            format!(
                "--client-ports: expected FIRST-LAST, got {:?}",
                a.client_ports
            )
        })?;
    let timeout = parse_duration_ns(&a.timeout).map_err(|e| format!("--timeout: {e}"))?;
    let drain = parse_duration_ns(&a.drain).map_err(|e| format!("--drain: {e}"))?;
    let mut cfg = TcpConfig {
        client_ports: (lo, hi),
        cps: a.cps,
        concurrent: a.concurrent,
        request: a.request,
        response: a.response,
        requests_per_connection: a.requests,
        seconds: match (a.seconds, a.connections) {
            (Some(s), _) => Some(s),
            (None, Some(_)) => None,
            (None, None) => Some(5.0),
        },
        count: a.connections,
        timeout_ns: timeout,
        drain_ns: drain,
        shard_size: a.shard_size,
        pool_size: a.pool,
        ..TcpConfig::default()
    };
    let quiet = a.quiet;
    let mut live = move |p: &tcp::TcpProgress| {
        if !quiet {
            eprintln!("{}", p.line());
        }
    };
    let report = match (&a.port, a.dut.as_deref()) {
        (_, Some("service")) => {
            for (given, name) in [
                (a.clients.is_some(), "--clients"),
                (a.servers.is_some(), "--servers"),
                (a.listen.is_some(), "--listen"),
                (a.client_mac.is_some(), "--client-mac"),
                (a.server_mac.is_some(), "--server-mac"),
                (a.client_next_hop.is_some(), "--client-next-hop"),
                (a.server_next_hop.is_some(), "--server-next-hop"),
            ] {
                if given {
                    return Err(format!(
                        "{name}: fixed by --dut service (clients 10.0.0.2-10.0.0.126, VIP 172.30.0.10:80, endpoints 20.0.1.N:8080; \
                         with --ipv6 clients 2001:db8::2-2001:db8::7e, VIP [2001:db8:30::a]:80, endpoints [2001:db8:20:1::N]:8080)"
                    ));
                }
            }
            cfg = dut::service_config(&cfg, a.endpoints, a.ipv6);
            cfg.validate()?;
            let d = dut::ServiceDut::start(a.endpoints, a.dut_core)?;
            pin(a.core)?;
            d.run(&cfg, &mut live)?
        }
        (_, Some(other)) => {
            return Err(format!("--dut: expected 'service', got {other:?}"));
        }
        (Some(p), None) => {
            let client = PortSpec::parse(p).map_err(|e| format!("--port: {e}"))?;
            if !(client.loops_back() || client.is_interface()) {
                return Err(format!(
                    "--port: {p:?} carries no TCP; give mem:loop[,...], afpacket:IFACE or afxdp:IFACE (or --dut service)"
                ));
            }
            let server = a
                .server_port
                .as_deref()
                .map(PortSpec::parse)
                .transpose()
                .map_err(|e| format!("--server-port: {e}"))?;
            if server.as_ref().is_some_and(|s| !s.is_interface()) {
                return Err("--server-port: give afpacket:IFACE or afxdp:IFACE".into());
            }
            if a.ipv6 && (a.clients.is_none() || a.servers.is_none()) {
                return Err("--ipv6: with --port, give IPv6 --clients and --servers".into());
            }
            if let Some(c) = &a.clients {
                cfg.clients = tcp::parse_addr_range(c).map_err(|e| format!("--clients: {e}"))?;
            }
            if let Some(s) = &a.servers {
                cfg.targets = tcp::parse_endpoints(s).map_err(|e| format!("--servers: {e}"))?;
            }
            cfg.listeners = match &a.listen {
                Some(l) => tcp::parse_endpoints(l).map_err(|e| format!("--listen: {e}"))?,
                None => cfg.targets.clone(),
            };
            if let Some(m) = &a.client_mac {
                cfg.client_mac = tcp::parse_mac(m).map_err(|e| format!("--client-mac: {e}"))?;
                cfg.server_next_hop = cfg.client_mac;
            }
            if let Some(m) = &a.server_mac {
                cfg.server_mac = tcp::parse_mac(m).map_err(|e| format!("--server-mac: {e}"))?;
                cfg.client_next_hop = cfg.server_mac;
            }
            if let Some(m) = &a.client_next_hop {
                cfg.client_next_hop =
                    tcp::parse_mac(m).map_err(|e| format!("--client-next-hop: {e}"))?;
            }
            if let Some(m) = &a.server_next_hop {
                cfg.server_next_hop =
                    tcp::parse_mac(m).map_err(|e| format!("--server-next-hop: {e}"))?;
            }
            pin(a.core)?;
            tcp::run_ports(&cfg, &client, server.as_ref(), &mut live)?
        }
        (None, None) => {
            return Err(
                "give --port mem:loop[,...], --port afpacket:IFACE [--server-port afpacket:IFACE] or --dut service"
                    .into(),
            )
        }
    };
    if a.json {
        out!(
            "{}",
            serde_json::to_string(&report).expect("report serialises")
        );
    } else {
        out!("{}", tcp::summary(&report));
    }
    Ok(())
}

fn cmd_show(a: StreamArgs) -> Result<(), String> {
    let profile = a.load()?;
    let gen = sluice_pktgen::gen::Generator::new(&profile.streams, 1).map_err(|e| e.to_string())?;
    for s in gen.streams() {
        out!(
            "stream {} ({}): {}-{} bytes, {}",
            s.id,
            s.name,
            s.min_size(),
            s.max_size(),
            if s.is_marked() {
                "marked"
            } else {
                "not marked"
            }
        );
        for (i, line) in s.template().chunks(16).enumerate() {
            let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
            out!("  {:04x}  {}", i * 16, hex.join(" "));
        }
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => cmd_run(a),
        Command::Replay(a) => cmd_replay(a),
        Command::Rfc2544(a) => sluice_pktgen::rfc2544::main(a),
        Command::Show(a) => cmd_show(a),
        Command::Tcp(a) => cmd_tcp(a),
    };
    if let Err(e) = result {
        eprintln!("sluice-pktgen: {e}");
        std::process::exit(2);
    }
}
