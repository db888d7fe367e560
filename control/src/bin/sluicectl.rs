//! `sluicectl`: the command-line client of the Sluice API.
//!
//! Every failure is one line on stderr and a non-zero exit status: 1 when
//! the daemon refused or could not do the request, 2 for a usage error
//! (clap's own), 3 when the daemon could not be reached.

use clap::{Parser, Subcommand, ValueEnum};
use sluice_control::api::client::{connect, ClientTls};
use sluice_control::api::listen::DEFAULT_API;
use sluice_control::api::pb;
use sluice_control::api::pb::control_client::ControlClient;
use sluice_control::ctl::{self, Document, Origin};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::PathBuf;
use tonic::transport::Channel;
use tonic::{Code, Status};

#[derive(Parser)]
#[command(name = "sluicectl", version, about = "Control a Sluice daemon")]
struct Cli {
    /// The daemon's API: unix:PATH, https://HOST:PORT. Default: $SLUICE_API,
    /// else unix:/run/sluice/api.sock.
    #[arg(long, global = true, value_name = "ADDR")]
    api: Option<String>,
    /// The CA that signed the daemon's certificate (TCP).
    #[arg(long, global = true, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// A client certificate, for daemons that require one.
    #[arg(long, global = true, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    #[arg(long, global = true, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// The name the daemon's certificate must carry (default: the host).
    #[arg(long, global = true, value_name = "NAME")]
    tls_domain: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Subcommand)]
enum Command {
    /// Apply manifests (multi-document YAML or JSON; Kubernetes and Sluice
    /// kinds) as one batch: all of them or none.
    Apply {
        /// A file, or - for standard input. Repeatable; all files are one batch.
        #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
        files: Vec<String>,
        /// Check and compile the batch without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Return once every worker runs the new tables.
        #[arg(long)]
        wait: bool,
        /// Leave out documents of kinds the daemon does not handle
        /// (Deployments, ConfigMaps, ...) instead of refusing the batch.
        #[arg(long)]
        skip_unsupported: bool,
    },
    /// Delete the objects a manifest names, or one object by kind and name.
    Delete {
        #[arg(short = 'f', long = "filename", value_name = "FILE", conflicts_with_all = ["kind", "name"])]
        files: Vec<String>,
        kind: Option<String>,
        name: Option<String>,
        /// The namespace (namespaced kinds; default "default").
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        wait: bool,
    },
    /// Show objects: every kind, one kind, or one object.
    Get {
        /// A kind (Service, services, svc, Route, ...); every kind when absent.
        kind: Option<String>,
        name: Option<String>,
        /// Only this namespace (default for one object: "default"; for a
        /// list: all namespaces).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// A label selector, e.g. app=web,tier!=db.
        #[arg(short = 'l', long)]
        selector: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// What the running tables do with one packet, stage by stage (as
    /// the first packet of a new connection; changes nothing).
    Trace {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// tcp, udp, sctp or icmp.
        #[arg(long, default_value = "tcp")]
        proto: String,
        /// Destination port.
        #[arg(long, default_value_t = 80)]
        port: u16,
        #[arg(long, default_value_t = 40000)]
        source_port: u16,
        /// The port the packet arrives on (default: the one the route to
        /// --from leaves by).
        #[arg(long)]
        in_port: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Show the dataplane's counters and the table generation workers run.
    Stats {
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Stream changes to the desired state.
    Watch {
        /// Start after this revision (0: the whole kept history); default:
        /// the current revision, so only new changes.
        #[arg(long, value_name = "REVISION")]
        from: Option<u64>,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Is the daemon serving, at which revision and table generation.
    Health,
    /// The daemon's and the API's versions.
    Version,
    /// Why policy allows or denies a new connection: the verdict and the
    /// rule (policy, tier, index) that decided it, from the tables the
    /// workers run.
    Explain {
        /// NAMESPACE/POD or an IP address.
        #[arg(long)]
        from: String,
        /// NAMESPACE/POD or an IP address.
        #[arg(long)]
        to: String,
        /// tcp, udp or sctp.
        #[arg(long, default_value = "tcp")]
        proto: String,
        /// The destination (pod) port.
        #[arg(long)]
        port: u16,
        /// The Sluice Network the connection is in (default: the pod
        /// network); in another Network pods are their attachments there,
        /// judged by its MultiNetworkPolicies.
        #[arg(long, default_value = "")]
        network: String,
    },
    /// Every policy rule with its counters (connections allowed, packets
    /// and bytes denied).
    PolicyRules,
}

/// A failure: its message and exit status.
struct Failure(String, i32);

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure(s, 1)
    }
}

fn status_line(s: &Status) -> String {
    let msg = s.message().replace('\n', " ");
    match s.code() {
        Code::InvalidArgument | Code::NotFound => msg,
        Code::Unavailable if msg.is_empty() || msg.contains("transport") => {
            format!("the daemon is unavailable: {msg}")
        }
        c => format!("{}: {msg}", code_name(c)),
    }
}

fn code_name(c: Code) -> String {
    // "OutOfRange" -> "out of range"
    let mut out = String::new();
    for (i, ch) in format!("{c:?}").chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

fn refused(s: Status) -> Failure {
    Failure(status_line(&s), 1)
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let code = match rt.block_on(run(cli)) {
        Ok(()) => 0,
        Err(Failure(msg, code)) => {
            eprintln!("sluicectl: {msg}");
            code
        }
    };
    std::process::exit(code);
}

fn read_input(file: &str) -> Result<String, String> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))
    }
}

fn read_all(files: &[String]) -> Result<Vec<Document>, String> {
    let mut docs = Vec::new();
    for f in files {
        let name = if f == "-" { "<stdin>" } else { f.as_str() };
        docs.extend(ctl::read_documents(&read_input(f)?, name)?);
    }
    if docs.is_empty() {
        return Err(format!("{}: no objects", files.join(", ")));
    }
    Ok(docs)
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let addr = cli
        .api
        .clone()
        .or_else(|| std::env::var("SLUICE_API").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_API.to_string());
    let tls = ClientTls {
        ca: cli.tls_ca.clone(),
        cert: cli.tls_cert.clone(),
        key: cli.tls_key.clone(),
        domain: cli.tls_domain.clone(),
    };
    // Read input before connecting, so that a bad file is reported as such.
    let docs = match &cli.command {
        Command::Apply { files, .. } => Some(read_all(files)?),
        Command::Delete { files, .. } if !files.is_empty() => Some(read_all(files)?),
        _ => None,
    };
    let mut client = connect(&addr, &tls).await.map_err(|e| Failure(e, 3))?;
    let out = &mut std::io::stdout().lock();
    match cli.command {
        Command::Apply {
            dry_run,
            wait,
            skip_unsupported,
            ..
        } => {
            let mut docs = docs.expect("read above");
            if skip_unsupported {
                docs = skip_kinds(&mut client, docs).await?;
                if docs.is_empty() {
                    return Err("nothing left to apply".to_string().into());
                }
            }
            let origins: Vec<Origin> = docs.iter().map(|d| d.origin.clone()).collect();
            let req = pb::ApplyRequest {
                objects: docs.iter().map(Document::to_object).collect(),
                dry_run,
                wait,
            };
            let r = client
                .apply(req)
                .await
                .map_err(|s| Failure(ctl::locate(&status_line(&s), &origins), 1))?
                .into_inner();
            report(
                out,
                "applied",
                &r.keys,
                r.revision,
                r.generation,
                r.running_generation,
                r.dry_run,
                wait,
            );
        }
        Command::Delete {
            kind,
            name,
            namespace,
            dry_run,
            wait,
            ..
        } => {
            let keys = match docs {
                Some(docs) => docs.iter().map(Document::key).collect(),
                None => {
                    let (Some(kind), Some(name)) = (kind, name) else {
                        return Err(Failure("delete needs -f FILE, or KIND and NAME".into(), 2));
                    };
                    let kind = ctl::resolve_kind(&kind)?;
                    vec![pb::ObjectKey {
                        kind: kind.as_str().to_string(),
                        namespace: namespace.unwrap_or_default(),
                        name,
                    }]
                }
            };
            let r = client
                .delete(pb::DeleteRequest {
                    keys,
                    dry_run,
                    wait,
                })
                .await
                .map_err(refused)?
                .into_inner();
            report(
                out,
                "deleted",
                &r.keys,
                r.revision,
                r.generation,
                r.running_generation,
                r.dry_run,
                wait,
            );
        }
        Command::Trace {
            from,
            to,
            proto,
            port,
            source_port,
            in_port,
            output,
        } => {
            let r = client
                .trace(pb::TraceRequest {
                    from,
                    to,
                    protocol: proto,
                    port: port.into(),
                    source_port: source_port.into(),
                    in_port: in_port.unwrap_or_default(),
                })
                .await
                .map_err(refused)?
                .into_inner();
            match output {
                Output::Table => print(out, &ctl::trace_text(&r)),
                _ => {
                    let v = serde_json::json!({
                        "generation": r.generation,
                        "steps": r.steps.iter().map(|s| serde_json::json!({
                            "stage": s.stage, "decision": s.decision, "detail": s.detail,
                        })).collect::<Vec<_>>(),
                        "verdict": r.verdict,
                    });
                    let text = if output == Output::Json {
                        serde_json::to_string_pretty(&v).expect("JSON") + "\n"
                    } else {
                        serde_yaml::to_string(&v).expect("YAML")
                    };
                    print(out, &text);
                }
            }
        }
        Command::Get {
            kind,
            name,
            namespace,
            selector,
            output,
        } => {
            let kind = match &kind {
                Some(k) if k != "all" => Some(ctl::resolve_kind(k)?),
                _ => None,
            };
            let (objects, single) = match (kind, name) {
                (Some(kind), Some(name)) => {
                    let r = client
                        .get(pb::GetRequest {
                            key: Some(pb::ObjectKey {
                                kind: kind.as_str().to_string(),
                                namespace: namespace.unwrap_or_default(),
                                name,
                            }),
                        })
                        .await
                        .map_err(refused)?
                        .into_inner();
                    (r.object.into_iter().collect::<Vec<_>>(), true)
                }
                (None, Some(_)) => unreachable!("clap fills the kind first"),
                (kind, None) => {
                    let r = client
                        .list(pb::ListRequest {
                            kind: kind.map(|k| k.as_str().to_string()).unwrap_or_default(),
                            namespace: namespace.unwrap_or_default(),
                            label_selector: selector.unwrap_or_default(),
                        })
                        .await
                        .map_err(refused)?
                        .into_inner();
                    (r.objects, false)
                }
            };
            match output {
                Output::Table if kind == Some(sluice_control::model::Kind::Bandwidth) => {
                    // The limits in force (from Bandwidth objects and pod
                    // annotations) with their counters, then the objects.
                    let s = client
                        .get_stats(pb::GetStatsRequest {})
                        .await
                        .map_err(refused)?
                        .into_inner();
                    if s.bandwidth.is_empty() {
                        eprintln!("no pod has bandwidth limits");
                    } else {
                        print(out, &ctl::bandwidth_text(&s.bandwidth));
                    }
                    if !objects.is_empty() {
                        print(out, "\n");
                        print(out, &ctl::objects_table(&objects));
                    }
                }
                Output::Table
                    if matches!(
                        kind,
                        Some(
                            sluice_control::model::Kind::Chain
                                | sluice_control::model::Kind::NetworkService
                        )
                    ) =>
                {
                    // The compiled chains' hops with their counters, then
                    // the objects.
                    let s = client
                        .get_stats(pb::GetStatsRequest {})
                        .await
                        .map_err(refused)?
                        .into_inner();
                    if s.chains.is_empty() {
                        eprintln!("no service chain is compiled");
                    } else {
                        print(out, &ctl::chains_text(&s.chains));
                    }
                    if !objects.is_empty() {
                        print(out, "\n");
                        print(out, &ctl::objects_table(&objects));
                    }
                }
                Output::Table => {
                    if objects.is_empty() {
                        eprintln!("no objects");
                    } else {
                        print(out, &ctl::objects_table(&objects));
                    }
                }
                Output::Json => {
                    let v = ctl::objects_value(&objects, single)?;
                    print(
                        out,
                        &(serde_json::to_string_pretty(&v).expect("JSON") + "\n"),
                    );
                }
                Output::Yaml => {
                    let v = ctl::objects_value(&objects, single)?;
                    print(out, &serde_yaml::to_string(&v).expect("YAML"));
                }
            }
        }
        Command::Stats { output } => {
            let s = client
                .get_stats(pb::GetStatsRequest {})
                .await
                .map_err(refused)?
                .into_inner();
            match output {
                Output::Table => print(out, &ctl::stats_text(&s)),
                Output::Json => print(
                    out,
                    &(serde_json::to_string_pretty(&s).expect("JSON") + "\n"),
                ),
                Output::Yaml => print(out, &serde_yaml::to_string(&s).expect("YAML")),
            }
        }
        Command::Watch { from, output } => {
            let from = match from {
                Some(r) => r,
                None => {
                    client
                        .health(pb::HealthRequest {})
                        .await
                        .map_err(refused)?
                        .into_inner()
                        .revision
                }
            };
            let mut stream = client
                .watch(pb::WatchRequest {
                    from_revision: from,
                })
                .await
                .map_err(refused)?
                .into_inner();
            if output == Output::Table {
                eprintln!("watching changes after revision {from}");
            }
            while let Some(e) = stream.message().await.map_err(refused)? {
                let key = e.key.clone().unwrap_or_default();
                let line = match output {
                    Output::Table => format!(
                        "{:<8}  {:<8}  {}\n",
                        e.revision,
                        ctl::event_type_name(e.r#type),
                        ctl::key_text(&key)
                    ),
                    Output::Json | Output::Yaml => {
                        let object: serde_json::Value = if e.json.is_empty() {
                            serde_json::Value::Null
                        } else {
                            serde_json::from_str(&e.json).unwrap_or(serde_json::Value::Null)
                        };
                        serde_json::json!({
                            "revision": e.revision,
                            "type": ctl::event_type_name(e.r#type),
                            "key": key,
                            "object": object,
                        })
                        .to_string()
                            + "\n"
                    }
                };
                print(out, &line);
            }
            return Err("the daemon ended the watch".to_string().into());
        }
        Command::Health => {
            let h = client
                .health(pb::HealthRequest {})
                .await
                .map_err(refused)?
                .into_inner();
            print(
                out,
                &format!(
                    "{}  node {}  revision {}  table generation {} (workers run {})  workers {}\n",
                    if h.serving { "serving" } else { "NOT SERVING" },
                    h.node,
                    h.revision,
                    h.generation,
                    h.running_generation,
                    h.workers
                ),
            );
            if !h.serving {
                return Err(Failure("the daemon is not serving".into(), 1));
            }
        }
        Command::Explain {
            from,
            to,
            proto,
            port,
            network,
        } => {
            let r = client
                .explain(pb::ExplainRequest {
                    from: from.clone(),
                    to: to.clone(),
                    protocol: proto.clone(),
                    port: port.into(),
                    network,
                })
                .await
                .map_err(refused)?
                .into_inner();
            print(out, &explain_text(&r, &from, &to, &proto, port));
        }
        Command::PolicyRules => {
            let r = client
                .list_policy_rules(pb::ListPolicyRulesRequest {})
                .await
                .map_err(refused)?
                .into_inner();
            let mut text = format!(
                "{:>10} {:>10} {:>12}  RULE (generation {})\n",
                "ALLOWED", "DENIED", "DENIED-BYTES", r.generation
            );
            for rule in &r.rules {
                text += &format!(
                    "{:>10} {:>10} {:>12}  {}\n",
                    rule.allowed_connections,
                    rule.denied_packets,
                    rule.denied_bytes,
                    rule_text(rule)
                );
            }
            print(out, &text);
        }
        Command::Version => {
            let v = client
                .version(pb::VersionRequest {})
                .await
                .map_err(refused)?
                .into_inner();
            print(
                out,
                &format!(
                    "sluicectl {}\nsluiced {} (API {})\n",
                    env!("CARGO_PKG_VERSION"),
                    v.version,
                    v.api
                ),
            );
        }
    }
    Ok(())
}

fn print(out: &mut impl Write, s: &str) {
    // A closed pipe (| head) ends the output quietly.
    if out
        .write_all(s.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    out: &mut impl Write,
    verb: &str,
    keys: &[pb::ObjectKey],
    revision: u64,
    generation: u64,
    running: u64,
    dry_run: bool,
    wait: bool,
) {
    let mut s = String::new();
    for k in keys {
        s.push_str(&format!(
            "{} {verb}{}\n",
            ctl::key_text(k),
            if dry_run { " (dry run)" } else { "" }
        ));
    }
    if dry_run {
        s.push_str(&format!(
            "dry run: nothing changed; the batch would be revision {revision}\n"
        ));
    } else {
        s.push_str(&format!(
            "revision {revision}, table generation {generation}"
        ));
        if wait {
            if running >= generation {
                s.push_str(" (running on every worker)");
            } else {
                s.push_str(&format!(" (workers still run {running})"));
            }
        }
        s.push('\n');
    }
    print(out, &s);
}

/// Leaves out documents of kinds the daemon does not accept, saying so.
async fn skip_kinds(
    client: &mut ControlClient<Channel>,
    docs: Vec<Document>,
) -> Result<Vec<Document>, Failure> {
    let v = client
        .version(pb::VersionRequest {})
        .await
        .map_err(refused)?
        .into_inner();
    let known: BTreeSet<(String, String)> = v
        .kinds
        .into_iter()
        .map(|k| (k.api_version, k.kind))
        .collect();
    Ok(docs
        .into_iter()
        .filter(|d| {
            let keep = known.contains(&(d.api_version().to_string(), d.kind().to_string()));
            if !keep {
                eprintln!(
                    "skipped {} ({}): not a kind Sluice handles",
                    d.describe(),
                    d.origin
                );
            }
            keep
        })
        .collect())
}

/// One line naming a rule: policy, tier, direction, index, name, action.
fn rule_text(r: &pb::PolicyRule) -> String {
    let dir = r.direction.to_lowercase();
    let which = if r.index >= 0 {
        format!("{dir} rule {}", r.index)
    } else {
        format!("{dir} isolation (no rule of the policies selecting the pod allows it)")
    };
    let name = if r.name.is_empty() {
        String::new()
    } else {
        format!(" {:?}", r.name)
    };
    format!(
        "{} (tier {}), {which}{name}: {}",
        r.policy, r.tier, r.action
    )
}

fn explain_text(r: &pb::ExplainResponse, from: &str, to: &str, proto: &str, port: u16) -> String {
    let mut s = format!(
        "{} {from} ({}) -> {to} ({}) {}/{port}\n",
        if r.allowed { "ALLOW" } else { "DENY" },
        r.from_address,
        r.to_address,
        proto.to_lowercase()
    );
    match &r.rule {
        Some(rule) => s += &format!("  decided by: {}\n", rule_text(rule)),
        None if r.from_node => s += "  decided by: traffic from the node is always allowed\n",
        None => s += "  decided by: default allow (no rule matched)\n",
    }
    for (side, d) in [
        ("egress at source", &r.egress),
        ("ingress at destination", &r.ingress),
    ] {
        let Some(d) = d else { continue };
        let line = if !d.applies {
            "not a pod of the cluster, or not reached".to_string()
        } else {
            let verdict = if d.allowed { "allow" } else { "deny" };
            match &d.rule {
                Some(rule) => format!("{verdict} by {}", rule_text(rule)),
                None => format!("{verdict} (no rule matched)"),
            }
        };
        s += &format!("  {side}: {line}\n");
        if let Some(p) = &d.passed_by {
            s += &format!("    passed by {}\n", rule_text(p));
        }
    }
    s += &format!("  (table generation {})\n", r.generation);
    s
}
