//! Prometheus metrics on an opt-in HTTP listener (`GET /metrics`, text
//! exposition format 0.0.4).
//!
//! The same sample the API's `GetStats` returns is rendered as text: no
//! second set of counters. The HTTP side is a few lines over a TCP
//! listener: one request per connection, `Connection: close`.

use crate::api::pb;
use sluice_dataplane::stats::{DropReason, Event};
use std::fmt::Write;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One metric family: its help and type lines, then its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, String)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

fn one(v: impl ToString) -> Vec<(String, String)> {
    vec![(String::new(), v.to_string())]
}

/// Renders a stats sample in Prometheus' text format.
pub fn render(s: &pb::Stats) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let o = &mut out;
    let t = s.totals.unwrap_or_default();
    let g = s.generations.unwrap_or_default();
    family(
        o,
        "sluice_dataplane_up",
        "gauge",
        "1 while the dataplane's workers run.",
        &one(u8::from(s.dataplane)),
    );
    family(
        o,
        "sluice_desired_revision",
        "gauge",
        "Revision of the desired state.",
        &one(s.revision),
    );
    family(
        o,
        "sluice_table_generation",
        "gauge",
        "Newest table generation published.",
        &one(g.newest),
    );
    family(
        o,
        "sluice_table_generation_oldest_running",
        "gauge",
        "Oldest table generation any worker runs.",
        &one(g.oldest_running),
    );
    family(
        o,
        "sluice_packets_received_total",
        "counter",
        "Packets the workers received.",
        &one(t.rx_packets),
    );
    family(
        o,
        "sluice_packets_transmitted_total",
        "counter",
        "Packets the workers transmitted (forwarded and generated).",
        &one(t.tx_packets),
    );
    family(
        o,
        "sluice_packets_dropped_total",
        "counter",
        "Packets the workers dropped, all reasons.",
        &one(t.dropped),
    );
    // Every reason, zeros included, so that rates exist before the first drop.
    let drops: Vec<_> = DropReason::ALL
        .iter()
        .map(|r| {
            let v = s.drops.get(r.name()).copied().unwrap_or(0);
            (labels(&[("reason", r.name())]), v.to_string())
        })
        .collect();
    family(
        o,
        "sluice_drops_total",
        "counter",
        "Packets dropped, by reason.",
        &drops,
    );
    let events: Vec<_> = Event::ALL
        .iter()
        .map(|e| {
            let v = s.events.get(e.name()).copied().unwrap_or(0);
            (labels(&[("event", e.name())]), v.to_string())
        })
        .collect();
    family(
        o,
        "sluice_events_total",
        "counter",
        "Slow-path events, by name.",
        &events,
    );

    let per_worker =
        |f: &dyn Fn(&pb::WorkerStats, &pb::Counters) -> String| -> Vec<(String, String)> {
            s.workers
                .iter()
                .map(|w| {
                    let c = w.counters.unwrap_or_default();
                    (labels(&[("worker", &w.id.to_string())]), f(w, &c))
                })
                .collect()
        };
    family(
        o,
        "sluice_worker_packets_received_total",
        "counter",
        "Packets received, by worker.",
        &per_worker(&|_, c| c.rx_packets.to_string()),
    );
    family(
        o,
        "sluice_worker_packets_transmitted_total",
        "counter",
        "Packets transmitted, by worker.",
        &per_worker(&|_, c| c.tx_packets.to_string()),
    );
    family(
        o,
        "sluice_worker_packets_dropped_total",
        "counter",
        "Packets dropped, by worker.",
        &per_worker(&|_, c| c.dropped.to_string()),
    );
    family(
        o,
        "sluice_worker_busy_seconds_total",
        "counter",
        "Time spent on bursts that had packets, by worker.",
        &per_worker(&|_, c| (c.busy_ns as f64 / 1e9).to_string()),
    );
    family(
        o,
        "sluice_worker_table_generation",
        "gauge",
        "Table generation each worker runs.",
        &per_worker(&|w, _| w.generation.to_string()),
    );

    let per_port = |f: fn(&pb::PortStats) -> u64| -> Vec<(String, String)> {
        s.ports
            .iter()
            .map(|p| {
                (
                    labels(&[("port", &p.name), ("driver", &p.driver)]),
                    f(p).to_string(),
                )
            })
            .collect()
    };
    type PortCounter = (&'static str, &'static str, fn(&pb::PortStats) -> u64);
    let ports: [PortCounter; 6] = [
        (
            "sluice_port_rx_packets_total",
            "Frames received by the port.",
            |p| p.rx_packets,
        ),
        (
            "sluice_port_rx_bytes_total",
            "Bytes received by the port.",
            |p| p.rx_bytes,
        ),
        (
            "sluice_port_tx_packets_total",
            "Frames sent by the port.",
            |p| p.tx_packets,
        ),
        (
            "sluice_port_tx_bytes_total",
            "Bytes sent by the port.",
            |p| p.tx_bytes,
        ),
        (
            "sluice_port_rx_dropped_total",
            "Received frames lost before the dataplane saw them.",
            |p| p.rx_dropped,
        ),
        (
            "sluice_port_tx_dropped_total",
            "Frames the port did not take for transmission.",
            |p| p.tx_dropped,
        ),
    ];
    for (name, help, f) in ports {
        family(o, name, "counter", help, &per_port(f));
    }
    family(
        o,
        "sluice_port_up",
        "gauge",
        "1 while the port's link is up.",
        &per_port(|p| p.link_up.into()),
    );
    out
}

/// `{a="x",b="y"}` with values escaped as the format asks.
fn labels(pairs: &[(&str, &str)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        for ch in v.chars() {
            match ch {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}

/// Serves `GET /metrics` until `shutdown` becomes true.
pub async fn serve(
    listener: TcpListener,
    sample: impl Fn() -> pb::Stats + Send + Sync + Clone + 'static,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match conn {
            Ok((stream, _)) => {
                let sample = sample.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(10),
                        answer(stream, move || render(&sample())),
                    )
                    .await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(
    mut stream: TcpStream,
    body: impl FnOnce() -> String + Send + 'static,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        // The sample reads the controller, which may wait on a store write.
        ("GET", "/metrics") => match tokio::task::spawn_blocking(body).await {
            Ok(text) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text),
            Err(_) => (
                "500 Internal Server Error",
                "text/plain; charset=utf-8",
                "the sample failed\n".to_string(),
            ),
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: metrics are at /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format() {
        let mut s = pb::Stats {
            dataplane: true,
            revision: 7,
            generations: Some(pb::Generations {
                newest: 3,
                oldest_running: 2,
            }),
            totals: Some(pb::Counters {
                rx_packets: 10,
                ..Default::default()
            }),
            ..Default::default()
        };
        s.drops.insert("no_route".into(), 4);
        s.ports.push(pb::PortStats {
            name: "p\"0".into(),
            driver: "mem".into(),
            rx_bytes: 640,
            ..Default::default()
        });
        let text = render(&s);
        assert!(text.contains("sluice_desired_revision 7\n"), "{text}");
        assert!(text.contains("sluice_table_generation 3\n"));
        assert!(text.contains("sluice_packets_received_total 10\n"));
        assert!(text.contains("sluice_drops_total{reason=\"no_route\"} 4\n"));
        assert!(text.contains("sluice_drops_total{reason=\"ttl_expired\"} 0\n"));
        assert!(text.contains("sluice_port_rx_bytes_total{port=\"p\\\"0\",driver=\"mem\"} 640\n"));
        // Every sample line is NAME{labels} VALUE or NAME VALUE.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
    }
}
