//! Replaying a capture: frames from a pcap read port go out of any port,
//! at the pace they were recorded (scaled), or as fast as possible. The
//! pacing is the dataplane's pcap port's (`Timing::Recorded`): a frame is
//! handed over once its offset from the first record, divided by the
//! speed, has passed.

use crate::clock::Clock;
use crate::run::{Progress, Totals};
use serde::Serialize;
use sluice_dataplane::buf::{Batch, PacketPool, BURST_SIZE};
use sluice_dataplane::io::pcap::{PcapPort, PcapReadConfig, PcapReader, Timing};
use sluice_dataplane::io::Port;
use std::path::Path;

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// `None`: as fast as possible; `Some(s)`: recorded timing, `s` times
    /// faster.
    pub speed: Option<f64>,
    /// Start over at the end of the file (until `seconds`).
    pub repeat: bool,
    /// Stop after this long.
    pub seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub seconds: f64,
    pub speed: Option<f64>,
    pub tx: Totals,
    /// Frames the capture had that could not be read (too long, cut short).
    pub skipped: u64,
    pub per_second: Vec<Progress>,
}

/// Replays `pcap` into port `out`.
pub fn replay(
    pcap: &Path,
    out: &dyn Port,
    cfg: &ReplayConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<ReplayReport, String> {
    let timing = match cfg.speed {
        Some(speed) => Timing::Recorded { speed },
        None => Timing::AsFastAsPossible,
    };
    let input = PcapPort::open_read(
        pcap,
        PcapReadConfig {
            port_id: 0,
            timing,
            repeat: cfg.repeat,
        },
    )
    .map_err(|e| e.to_string())?;
    // The port does not say when a file is done; count its records first
    // (a read of the whole file, before anything is timed).
    let records = count_records(pcap)?;
    let mut rx = input.rx_queue(0).map_err(|e| e.to_string())?;
    let mut tx = out.tx_queue(0).map_err(|e| e.to_string())?;
    let pool = PacketPool::new("replay", 4096);
    let mut cache = pool.cache(4 * BURST_SIZE);
    let mut batch = Batch::new();
    let clock = Clock::new();
    let start = clock.now_ns();
    let end = cfg.seconds.map_or(u64::MAX, |s| start + (s * 1e9) as u64);
    let (mut packets, mut bytes) = (0u64, 0u64);
    let mut last = (start, 0u64, 0u64);
    let mut next_report = start + 1_000_000_000;
    let mut per_second = Vec::new();
    loop {
        let now = clock.now_ns();
        if now >= end {
            break;
        }
        if batch.is_empty() {
            let n = rx.rx_burst(&mut cache, &mut batch);
            if n > 0 {
                packets += n as u64;
                bytes += batch.iter().map(|p| p.len() as u64).sum::<u64>();
            } else if !cfg.repeat {
                let s = input.stats();
                if s.rx_packets + s.rx_dropped >= records {
                    break;
                }
            }
        }
        if !batch.is_empty() {
            tx.tx_burst(&mut batch, &mut cache);
        }
        if now >= next_report {
            let dt = (now - last.0) as f64 / 1e9;
            let p = Progress {
                t: (now - start) as f64 / 1e9,
                tx_pps: (packets - last.1) as f64 / dt,
                tx_bps: (bytes - last.2) as f64 * 8.0 / dt,
                rx_pps: 0.0,
                tx_packets: packets,
                rx_packets: 0,
            };
            progress(&p);
            per_second.push(p);
            last = (now, packets, bytes);
            next_report += 1_000_000_000;
        }
        if let Some(e) = input.error() {
            return Err(e);
        }
    }
    while !batch.is_empty() {
        if tx.tx_burst(&mut batch, &mut cache) == 0 {
            break;
        }
    }
    cache.free_batch(&mut batch);
    tx.flush();
    let secs = ((clock.now_ns() - start) as f64 / 1e9).max(1e-9);
    Ok(ReplayReport {
        seconds: secs,
        speed: cfg.speed,
        tx: Totals {
            packets,
            bytes,
            pps: packets as f64 / secs,
            bps: bytes as f64 * 8.0 / secs,
        },
        skipped: input.stats().rx_dropped,
        per_second,
    })
}

/// Records in a capture (damaged ones included: the port counts those as
/// dropped).
fn count_records(path: &Path) -> Result<u64, String> {
    let mut reader = PcapReader::open(path).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        match reader.read_record(&mut buf) {
            Ok(Some(_)) => n += 1,
            Ok(None) => return Ok(n),
            Err(_) => return Ok(n + 1),
        }
    }
}
