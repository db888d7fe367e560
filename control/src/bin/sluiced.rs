//! `sluiced`: the Sluice daemon.

use clap::{Parser, Subcommand};
use sluice_control::daemon::{self, config};
use sluice_control::demo;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "sluiced",
    version,
    about = "Sluice: a userspace packet-processing appliance"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: open the store, start the workers on the node's
    /// ports, serve the API until SIGINT or SIGTERM.
    Run {
        /// The configuration file (TOML). Without one: no ports, the
        /// default state directory and API socket.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// Listen for the API here instead of the configuration's
        /// addresses: unix:PATH or tcp:IP:PORT (TCP needs TLS). Repeatable.
        #[arg(long = "api", value_name = "ADDR")]
        api: Vec<String>,
        /// The store's directory.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Worker threads.
        #[arg(long)]
        workers: Option<usize>,
        /// Serve Prometheus metrics at http://ADDR/metrics.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
    },
    /// Run the router on its embedded default: in-memory ports, a few routes
    /// in both families, built-in synthetic traffic. No set-up needed.
    Demo {
        /// How long to run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Worker threads (each pinned to a core).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Print only the final summary, as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("sluiced {what}: {e}");
    std::process::exit(1);
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config: file,
            api,
            state_dir,
            workers,
            metrics,
        } => {
            let mut cfg = match &file {
                Some(path) => config::Config::load(path).unwrap_or_else(|e| fail("run", e)),
                None => config::Config::default(),
            };
            cfg.apply(&config::Overrides {
                api,
                state_dir,
                workers,
                metrics,
            });
            let checked = cfg.check().unwrap_or_else(|e| match &file {
                Some(path) => fail("run", format!("{}: {e}", path.display())),
                None => fail("run", e),
            });
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            if let Err(e) = daemon::run(checked) {
                fail("run", e);
            }
        }
        Command::Demo {
            seconds,
            workers,
            json,
        } => {
            let opts = demo::DemoOptions {
                seconds,
                workers,
                json,
            };
            match demo::run(&opts) {
                Ok(summary) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string(&summary).expect("summary serialises")
                        );
                    } else {
                        demo::print_summary(&summary);
                    }
                }
                Err(e) => fail("demo", e),
            }
        }
    }
}
