//! `sluice-perf`: Sluice's benchmark harness.
//!
//! `sluice-perf run l3fwd --json` forwards 64-byte frames of 10,000 flows
//! through one worker with a 100,000-route table, from an in-memory replay
//! port to an in-memory sink, and reports Mpps per worker core, ns and TSC
//! cycles per packet. `sluice-perf run pktgen --json` measures the packet
//! generator into an in-memory sink (64-byte UDP, four varying fields).

mod chain;
#[cfg(feature = "dpdk")]
mod dpdk;
mod l3fwd;
mod machine;
mod measure;
mod pktgen;
mod policy;
mod service_lb;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "sluice-perf", version, about = "Sluice benchmark harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the scenarios.
    List,
    /// Run a scenario.
    Run {
        /// l3fwd (IPv4), l3fwd-v6, io, parse, parse-route, pktgen, pktgen-marked.
        scenario: String,
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
        chain: chain::ChainParams,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::List => {
            println!("l3fwd      IPv4 L3 forwarding: mem replay -> 1 worker -> mem sink, 100k routes, 10k flows, 64 B");
            println!("l3fwd-v6   the same for IPv6 (78-byte frames, the smallest UDP/IPv6 frame with a 16-byte payload)");
            println!("io         the same traffic forwarded untouched to the output port: the I/O path alone (testpmd io)");
            println!("parse      io plus the parse stage (for the cost breakdown of l3fwd)");
            println!("parse-route  io plus parse and route, without the rewrite (for the cost breakdown)");
            println!("service-lb 10k ClusterIP Services x 10 endpoints, 1M established connections, 10% new: the Kubernetes node pipeline");
            #[cfg(feature = "dpdk")]
            {
                println!("dpdk-l3fwd  l3fwd from DPDK net_pcap (replaying the traffic forever) into net_null");
                println!(
                    "dpdk-io     io over the same DPDK devices (testpmd io forward's counterpart)"
                );
            }
            println!("pktgen     the packet generator into a mem sink: 64 B UDP, 4 varying fields, no marks");
            println!("pktgen-marked  the same with a sequence number and timestamp in every frame");
            println!("chain      the node pipeline with 0 and --hops (1,3,5) built-in chain hops (--hop-kind firewall|counter|nat): ns per hop");
            println!("policy     service-lb with 10k NetworkPolicies and 1k ClusterNetworkPolicies over the 100k endpoint pods; compile time and table size");
        }
        Command::Run {
            scenario,
            params,
            service,
            #[cfg(feature = "dpdk")]
            dpdk,
            policy,
            chain,
            json,
        } => {
            if scenario == "chain" {
                match chain::run(&scenario, &params, &chain, !json) {
                    Ok(report) => print(&report, json),
                    Err(e) => {
                        eprintln!("sluice-perf: {e}");
                        std::process::exit(1);
                    }
                }
                return;
            }
            if scenario == "policy" {
                match policy::run(&service, &policy, params.seconds, !json) {
                    Ok(report) => print(&report, json),
                    Err(e) => {
                        eprintln!("sluice-perf: {e}");
                        std::process::exit(1);
                    }
                }
                return;
            }
            if scenario == "service-lb" {
                match service_lb::run(&service, params.seconds, !json) {
                    Ok(report) => print(&report, json),
                    Err(e) => {
                        eprintln!("sluice-perf: {e}");
                        std::process::exit(1);
                    }
                }
                return;
            }
            let (io, name) = match scenario.strip_prefix("dpdk-") {
                #[cfg(feature = "dpdk")]
                Some(rest) => (l3fwd::Io::Dpdk(dpdk), rest),
                #[cfg(not(feature = "dpdk"))]
                Some(_) => {
                    eprintln!("sluice-perf: {scenario} needs a build with --features dpdk");
                    std::process::exit(2);
                }
                None => (l3fwd::Io::Mem, scenario.as_str()),
            };
            let generated = match name {
                "pktgen" => Some(pktgen::run(&scenario, false, &params, !json)),
                "pktgen-marked" => Some(pktgen::run(&scenario, true, &params, !json)),
                _ => None,
            };
            let (family, mode) = match name {
                _ if generated.is_some() => (l3fwd::Family::V4, l3fwd::Mode::Io),
                "l3fwd" => (l3fwd::Family::V4, l3fwd::Mode::Route),
                "l3fwd-v6" => (l3fwd::Family::V6, l3fwd::Mode::Route),
                "io" => (l3fwd::Family::V4, l3fwd::Mode::Io),
                "parse" => (l3fwd::Family::V4, l3fwd::Mode::ParseOnly),
                "parse-route" => (l3fwd::Family::V4, l3fwd::Mode::ParseRoute),
                other => {
                    eprintln!("sluice-perf: unknown scenario {other:?} (try `sluice-perf list`)");
                    std::process::exit(2);
                }
            };
            let result = match generated {
                Some(r) => r,
                None => l3fwd::run(&scenario, family, mode, &params, &io, !json),
            };
            match result {
                Ok(report) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string(&report).expect("report serialises")
                        );
                    } else {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&report).expect("report serialises")
                        );
                    }
                }
                Err(e) => {
                    eprintln!("sluice-perf: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
}

fn print<T: serde::Serialize>(report: &T, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).expect("report serialises")
        );
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("report serialises")
        );
    }
}
