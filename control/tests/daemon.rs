//! End to end with the binaries: `sluiced run` from a configuration file,
//! `sluicectl` applying real Kubernetes and Sluice manifests, `kill -9`,
//! a restart with every acknowledged change back and the tables rebuilt
//! (checked by the packets the restarted daemon forwards), TLS, metrics,
//! and start-up errors.

mod common;

use common::{make_certs, sluicectl, sluicectl_ok, tempdir, Daemon, MIXED};
use sluice_dataplane::io::pcap::{PcapReader, PcapWriter};
use sluice_dataplane::wire::builder::PacketBuilder;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

const MAC_P0: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const MAC_CLIENT: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
const MAC_GATEWAY: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const ROUTED: usize = 20;

const NEIGHBOUR: &str = "---
apiVersion: sluice.dev/v1
kind: Neighbour
metadata: {name: gw1}
spec: {ip: 10.0.1.254, mac: \"02:00:00:00:00:fe\"}
";

/// `ROUTED` frames to 20.0.0.0/8 (routed via 10.0.1.254 on p1) and two to
/// an address with no route.
fn write_input(path: &Path) {
    let mut w = PcapWriter::create(path, 65535).unwrap();
    for i in 0..ROUTED {
        let f = PacketBuilder::new(MAC_CLIENT, MAC_P0)
            .ipv4([10, 0, 0, 10], [20, 0, 0, 1 + i as u8])
            .ttl(64)
            .udp(1000 + i as u16, 53)
            .frame_len(64)
            .build();
        w.write_record(1_700_000_000_000_000_000 + i as u64 * 1000, &f)
            .unwrap();
    }
    for i in 0..2u8 {
        let f = PacketBuilder::new(MAC_CLIENT, MAC_P0)
            .ipv4([10, 0, 0, 10], [99, 0, 0, i])
            .udp(2000, 80)
            .frame_len(64)
            .build();
        w.write_record(1_700_000_000_100_000_000, &f).unwrap();
    }
    w.flush().unwrap();
}

fn read_frames(path: &Path) -> Vec<Vec<u8>> {
    let mut r = PcapReader::open(path).unwrap();
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while r.read_record(&mut buf).unwrap().is_some() {
        out.push(buf.clone());
    }
    out
}

fn stats(api: &str) -> serde_json::Value {
    serde_json::from_str(&sluicectl_ok(api, &["stats", "-o", "json"])).unwrap()
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

fn one_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr).into_owned();
    assert_eq!(text.lines().count(), 1, "one line: {text:?}");
    text.trim_end().to_string()
}

#[test]
fn kill9_keeps_every_acknowledged_change_and_the_restart_forwards_with_them() {
    let dir = tempdir("daemon");
    let input = dir.join("in.pcap");
    let output = dir.join("out.pcap");
    write_input(&input);
    let p0 = format!("pcap:in={}", input.display());
    let p1 = format!("pcap:out={}", output.display());
    let sock = dir.join("run/api.sock");
    let api = format!("unix:{}", sock.display());
    let config = dir.join("sluiced.toml");
    std::fs::write(
        &config,
        format!(
            r#"
state_dir = "{state}"
workers = 1

[node]
name = "node-a"
zone = "zone-1"

[api]
listen = ["{api}"]

[metrics]
listen = "127.0.0.1:0"

[[port]]
name = "p0"
backend = "{p0}"

[[port]]
name = "p1"
backend = "{p1}"
"#,
            state = dir.join("state").display(),
        ),
    )
    .unwrap();
    let manifest = dir.join("manifest.yaml");
    std::fs::write(
        &manifest,
        MIXED.replace("mem:p0", &p0).replace("mem:p1", &p1) + NEIGHBOUR,
    )
    .unwrap();

    let d = Daemon::start(&config);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only the daemon's user may connect");

    // Real manifests through the CLI.
    let out = sluicectl_ok(&api, &["apply", "-f", manifest.to_str().unwrap()]);
    assert!(out.contains("Service shop/web applied"), "{out}");
    assert!(out.contains("revision 1, table generation 2"), "{out}");
    let table = sluicectl_ok(&api, &["get"]);
    assert!(table.starts_with("KIND "), "{table}");
    assert!(
        table.contains("EndpointSlice  shop       web-abc12"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 9, "{table}");

    // Bad batches change nothing and say why, in one line.
    let deployment = "apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n";
    let bad = sluicectl(&api, &["apply", "-f", "-"], Some(deployment));
    assert_eq!(bad.status.code(), Some(1));
    let line = one_line(&bad.stderr);
    assert!(
        line.starts_with("sluicectl: <stdin> document 2: kind: unsupported kind \"Deployment\""),
        "{line}"
    );
    let port = MIXED.replace("port: 80\n", "port: 0\n");
    let bad = sluicectl(&api, &["apply", "-f", "-"], Some(&port));
    assert_eq!(bad.status.code(), Some(1));
    let line = one_line(&bad.stderr);
    assert!(
        line.starts_with("sluicectl: Service shop/web: spec.ports[0].port: "),
        "{line}"
    );
    // ... unless asked to leave unsupported kinds out.
    let skipped = sluicectl(
        &api,
        &["apply", "--skip-unsupported", "--dry-run", "-f", "-"],
        Some(deployment),
    );
    assert!(skipped.status.success());
    assert!(String::from_utf8_lossy(&skipped.stderr).contains("skipped apps/v1 Deployment"));
    assert!(String::from_utf8_lossy(&skipped.stdout).contains("would be revision 2"));

    // Two more batches: add a route, delete it by file.
    let extra = dir.join("extra.yaml");
    std::fs::write(
        &extra,
        "apiVersion: sluice.dev/v1\nkind: Route\nmetadata: {name: to-30}\nspec: {destination: 30.0.0.0/8, type: Blackhole}\n",
    )
    .unwrap();
    let out = sluicectl_ok(&api, &["apply", "-f", extra.to_str().unwrap(), "--wait"]);
    assert!(out.contains("revision 2"), "{out}");
    assert!(out.contains("running on every worker"), "{out}");
    let out = sluicectl_ok(&api, &["delete", "-f", extra.to_str().unwrap()]);
    assert!(out.contains("Route to-30 deleted"), "{out}");
    assert!(out.contains("revision 3"), "{out}");
    let gone = sluicectl(&api, &["get", "route", "to-30"], None);
    assert_eq!(gone.status.code(), Some(1));
    assert_eq!(one_line(&gone.stderr), "sluicectl: Route to-30: not found");

    let before = sluicectl_ok(&api, &["get", "-o", "json"]);
    let before_table = sluicectl_ok(&api, &["get"]);
    d.kill9();
    assert!(sock.exists(), "kill -9 leaves the socket behind");

    // The restart takes the stale socket over and finds every change.
    let d = Daemon::start(&config);
    assert_eq!(sluicectl_ok(&api, &["get", "-o", "json"]), before);
    assert_eq!(sluicectl_ok(&api, &["get"]), before_table);
    let health = sluicectl_ok(&api, &["health"]);
    assert!(
        health.starts_with("serving  node node-a  revision 3"),
        "{health}"
    );
    let route: serde_json::Value =
        serde_json::from_str(&sluicectl_ok(&api, &["get", "rt", "to-20", "-o", "json"])).unwrap();
    assert_eq!(route["spec"]["nextHops"][0]["gateway"], "10.0.1.254");

    // The tables were rebuilt before the workers started: the capture the
    // restarted daemon reads is routed out of p1 to the gateway's MAC.
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        let s = stats(&api);
        if s["ports"][0]["rx_packets"] == (ROUTED + 2) as u64
            && s["ports"][1]["tx_packets"] == ROUTED as u64
        {
            break s;
        }
        assert!(Instant::now() < deadline, "traffic not forwarded: {s}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        s["generations"]["newest"], 1,
        "a fresh start publishes generation 1"
    );
    assert_eq!(s["generations"]["oldest_running"], 1);
    assert_eq!(s["revision"], 3);
    assert_eq!(s["drops"]["no_route"], 2);
    assert_eq!(s["ports"][0]["name"], "p0");
    assert_eq!(s["ports"][1]["backend"], p1.as_str());
    let text = sluicectl_ok(&api, &["stats"]);
    assert!(text.contains("no_route"), "{text}");

    // Prometheus metrics on the opt-in listener.
    let metrics_addr = d.log_value("metrics at", "addr");
    let page = http_get(&metrics_addr, "/metrics");
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(page.contains("sluice_desired_revision 3\n"), "{page}");
    assert!(page.contains(&format!(
        "sluice_port_tx_packets_total{{port=\"p1\",driver=\"pcap\"}} {ROUTED}\n"
    )));
    assert!(page.contains("sluice_drops_total{reason=\"no_route\"} 2\n"));
    assert!(http_get(&metrics_addr, "/").starts_with("HTTP/1.1 404"));

    // SIGTERM: a clean exit that flushes the capture and removes the socket.
    assert!(d.terminate().success());
    assert!(!sock.exists());
    let frames = read_frames(&output);
    assert_eq!(frames.len(), ROUTED);
    for f in &frames {
        assert_eq!(&f[0..6], &MAC_GATEWAY, "to the gateway's MAC");
        assert_eq!(f[14 + 8], 63, "TTL decremented");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn kill9_during_applies_loses_no_acknowledged_change() {
    use sluice_control::api::client::{connect, ClientTls};
    use sluice_control::api::pb;
    use std::sync::{Arc, Mutex};

    let dir = tempdir("daemon-crash");
    let api = format!("unix:{}", dir.join("api.sock").display());
    let config = dir.join("sluiced.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[api]\nlisten = [\"{api}\"]\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    let d = Daemon::start(&config);
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let client = {
        let (acked, api) = (acked.clone(), api.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut c = connect(&api, &ClientTls::default()).await.unwrap();
                for i in 0..10_000u32 {
                    let name = format!("r{i}");
                    let json = serde_json::json!({
                        "apiVersion": "sluice.dev/v1",
                        "kind": "Route",
                        "metadata": {"name": name},
                        "spec": {
                            "destination": format!("30.{}.{}.0/24", i / 256, i % 256),
                            "type": "Blackhole",
                        },
                    });
                    let req = pb::ApplyRequest {
                        objects: vec![pb::Object {
                            key: None,
                            json: json.to_string(),
                            revision: 0,
                        }],
                        ..Default::default()
                    };
                    match c.apply(req).await {
                        Ok(r) => acked.lock().unwrap().push((name, r.into_inner().revision)),
                        Err(_) => return,
                    }
                }
            })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 25 {
        assert!(Instant::now() < deadline, "applies are too slow");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Killed while applies are in flight.
    d.kill9();
    client.join().unwrap();
    let acked = acked.lock().unwrap().clone();

    let _d = Daemon::start(&config);
    let health = sluicectl_ok(&api, &["health"]);
    let revision: u64 = health
        .split("revision ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let (last_name, last_rev) = acked.last().unwrap();
    assert!(
        revision >= *last_rev,
        "revision {revision} after the restart, {last_rev} acknowledged"
    );
    let routes: serde_json::Value =
        serde_json::from_str(&sluicectl_ok(&api, &["get", "routes", "-o", "json"])).unwrap();
    let items = routes["items"].as_array().unwrap();
    assert!(items.len() >= acked.len());
    for (name, _) in &acked {
        assert!(
            items.iter().any(|o| o["metadata"]["name"] == name.as_str()),
            "acknowledged {name} is missing after kill -9"
        );
    }
    let table = sluicectl_ok(&api, &["get", "route", last_name]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row,
        [
            "Route",
            "-",
            last_name.as_str(),
            last_rev.to_string().as_str()
        ],
        "the object keeps the revision it was acknowledged with"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn start_up_errors_are_one_line_and_exit_non_zero() {
    let dir = tempdir("daemon-errors");
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let sock = dir.join("api.sock");
    let base = format!(
        "state_dir = \"{}\"\n[api]\nlisten = [\"unix:{}\"]\n",
        dir.join("state").display(),
        sock.display()
    );

    // A damaged store: refused, and left as it was.
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::write(dir.join("state/state.redb"), b"not a database").unwrap();
    let config = write("ok.toml", base.clone());
    let (status, log) = Daemon::spawn(&config, &[]).wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    let errors: Vec<_> = log
        .iter()
        .filter(|l| l.starts_with("sluiced run: "))
        .collect();
    assert_eq!(errors.len(), 1, "{log:?}");
    assert!(errors[0].contains("corrupt"), "{}", errors[0]);
    assert!(errors[0].contains("state.redb"), "{}", errors[0]);
    assert_eq!(
        std::fs::read(dir.join("state/state.redb")).unwrap(),
        b"not a database"
    );
    assert!(!sock.exists(), "no API without a store");
    std::fs::remove_dir_all(dir.join("state")).unwrap();

    // An unknown key in the configuration.
    let config = write("typo.toml", format!("{base}wrokers = 2\n"));
    let (status, log) = Daemon::spawn(&config, &[]).wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].contains("typo.toml line 4: "), "{}", log[0]);
    assert!(log[0].contains("wrokers"), "{}", log[0]);

    // TCP without TLS.
    let config = write(
        "tcp.toml",
        format!(
            "state_dir = \"{}\"\n[api]\nlisten = [\"tcp:127.0.0.1:0\"]\n",
            dir.join("state").display()
        ),
    );
    let (status, log) = Daemon::spawn(&config, &[]).wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].contains("needs TLS"), "{}", log[0]);

    // A backend that does not exist (refused before anything is opened:
    // a test must never open the machine's own interfaces).
    let config = write(
        "backend.toml",
        format!("{base}[[port]]\nname = \"p0\"\nbackend = \"warp:eth0\"\n"),
    );
    let (status, log) = Daemon::spawn(&config, &[]).wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    assert!(log[0].contains("port[0] (p0).backend"), "{}", log[0]);

    // A socket another daemon listens on is not taken over: the second
    // daemon fails on its store lock first, or on the socket.
    let config = write("ok.toml", base.clone());
    let first = Daemon::start(&config);
    let (status, log) = Daemon::spawn(&config, &[]).wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    let last = log.last().unwrap();
    assert!(last.contains("already open in another process"), "{last}");
    let other_state = dir.join("state2");
    let (status, log) = Daemon::spawn(&config, &["--state-dir", other_state.to_str().unwrap()])
        .wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    let last = log.last().unwrap();
    assert!(last.contains("another process is listening"), "{last}");
    // SIGINT stops it cleanly.
    assert!(first.signal(libc::SIGINT).success());

    // The CLI says when it cannot reach a daemon.
    let out = sluicectl(&format!("unix:{}", sock.display()), &["get"], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(one_line(&out.stderr).contains("cannot reach sluiced"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_cli_over_tls_with_client_certificates() {
    let dir = tempdir("daemon-tls");
    let certs = make_certs(&dir);
    let config = dir.join("tls.toml");
    std::fs::write(
        &config,
        format!(
            r#"
state_dir = "{state}"
[api]
listen = ["unix:{sock}", "tcp:127.0.0.1:0"]
tls_cert = "{cert}"
tls_key = "{key}"
tls_client_ca = "{ca}"
[[port]]
name = "p0"
backend = "mem:p0"
[[port]]
name = "p1"
backend = "mem:p1"
"#,
            state = dir.join("state").display(),
            sock = dir.join("api.sock").display(),
            cert = certs.server_cert.display(),
            key = certs.server_key.display(),
            ca = certs.ca.display(),
        ),
    )
    .unwrap();
    // --workers overrides the file.
    let d = Daemon::spawn(&config, &["--workers", "2"]);
    d.wait_for_log("sluiced ready", Duration::from_secs(30));
    let tcp = d
        .log()
        .iter()
        .filter(|l| l.contains("API listening") && l.contains("addr=tcp:"))
        .map(|l| {
            let at = l.find("addr=tcp:").unwrap() + "addr=tcp:".len();
            l[at..].split_whitespace().next().unwrap().to_string()
        })
        .next()
        .expect("a TCP listener");
    let https = format!("https://{tcp}");
    let ca = certs.ca.to_str().unwrap();
    let cert = certs.client_cert.to_str().unwrap();
    let key = certs.client_key.to_str().unwrap();
    let manifest = dir.join("m.yaml");
    std::fs::write(&manifest, MIXED).unwrap();
    let out = sluicectl_ok(
        &https,
        &[
            "--tls-ca",
            ca,
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "apply",
            "-f",
            manifest.to_str().unwrap(),
        ],
    );
    assert!(out.contains("revision 1"), "{out}");
    let got = sluicectl_ok(
        &https,
        &[
            "--tls-ca",
            ca,
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "get",
            "svc",
            "-n",
            "shop",
            "-o",
            "yaml",
        ],
    );
    assert!(got.contains("clusterIP: 10.96.0.10"), "{got}");
    let health = sluicectl_ok(
        &https,
        &[
            "--tls-ca",
            ca,
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "health",
        ],
    );
    assert!(health.contains("workers 2"), "{health}");
    // No client certificate: refused, in one line.
    let out = sluicectl(&https, &["--tls-ca", ca, "get"], None);
    assert_ne!(out.status.code(), Some(0));
    one_line(&out.stderr);
    // The Unix socket serves the same state.
    let unix = format!("unix:{}", dir.join("api.sock").display());
    let listed = sluicectl_ok(&unix, &["get", "services", "-l", "tier=front"]);
    assert!(listed.contains("Service  shop       web   1"), "{listed}");
    assert!(d.terminate().success());
    std::fs::remove_dir_all(&dir).ok();
}
