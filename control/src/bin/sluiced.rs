//! `sluiced`: the Sluice daemon.

use clap::{Parser, Subcommand};
use sluice_control::demo;

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

fn main() {
    let cli = Cli::parse();
    match cli.command {
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
                Err(e) => {
                    eprintln!("sluiced demo: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
}
