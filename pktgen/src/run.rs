//! The generator's loop: grant, fill, transmit, receive, report.
//!
//! One thread does everything, so the transmit and receive times in a
//! mark come from one clock: each pass asks the pacer how many packets are
//! due, fills a burst from the streams (all stamped with the pass's time),
//! hands it to the transmit queue (what the queue refuses is retried on the
//! next pass), and polls the receive queue. At high rates the loop spins;
//! when the next grant is more than 200 µs away and nothing is to be
//! received, it sleeps. After the last packet it keeps receiving for the
//! drain time, so packets in flight are not counted lost.
//!
//! Allocation and system calls happen before the loop, once a second (the
//! live line), and when capturing (buffered file writes).

use crate::clock::Clock;
use crate::gen::Generator;
use crate::measure::{Receiver, StreamReport};
use crate::rate::{Pacer, Rate};
use serde::Serialize;
use sluice_dataplane::buf::{Batch, PacketPool, BURST_SIZE};
use sluice_dataplane::io::pcap::PcapWriter;
use sluice_dataplane::io::{RxQueue, TxQueue};
use std::fs::File;
use std::io::BufWriter;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long and how fast.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub rate: Rate,
    /// Packets sent back to back per grant.
    pub burst: usize,
    /// Stop sending after this long...
    pub seconds: Option<f64>,
    /// ...or after this many packets, whichever comes first.
    pub count: Option<u64>,
    /// Keep receiving this long after the last packet.
    pub drain_ns: u64,
    /// Packet buffers in the generator's pool.
    pub pool_size: u32,
    /// Seconds between progress calls.
    pub report_every_ns: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            rate: Rate::Unlimited,
            burst: 1,
            seconds: Some(1.0),
            count: None,
            drain_ns: 50_000_000,
            pool_size: 32 * 1024,
            report_every_ns: 1_000_000_000,
        }
    }
}

/// The live numbers, once a second.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Progress {
    /// Seconds since the start.
    pub t: f64,
    pub tx_pps: f64,
    pub tx_bps: f64,
    pub rx_pps: f64,
    pub tx_packets: u64,
    pub rx_packets: u64,
}

impl Progress {
    /// The one-line form without the receive side (replay).
    pub fn tx_line(&self) -> String {
        format!(
            "{:>6.1}s  tx {:>9.3} Mpps {:>9.1} Mbit/s  sent {}",
            self.t,
            self.tx_pps / 1e6,
            self.tx_bps / 1e6,
            self.tx_packets
        )
    }

    /// The one-line form.
    pub fn line(&self) -> String {
        let loss = self.tx_packets.saturating_sub(self.rx_packets);
        format!(
            "{:>6.1}s  tx {:>9.3} Mpps {:>9.1} Mbit/s  rx {:>9.3} Mpps  sent {}  received {}  not back {}",
            self.t,
            self.tx_pps / 1e6,
            self.tx_bps / 1e6,
            self.rx_pps / 1e6,
            self.tx_packets,
            self.rx_packets,
            loss
        )
    }
}

/// Totals of one direction.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
    pub pps: f64,
    /// Bits per second of frames (without FCS).
    pub bps: f64,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunReport {
    /// Seconds from the first grant to the last packet sent.
    pub tx_seconds: f64,
    pub target: Rate,
    /// The target in packets per second, if limited.
    pub target_pps: Option<f64>,
    /// (achieved - target) / target, percent.
    pub rate_error_pct: Option<f64>,
    pub tx: Totals,
    pub rx: Totals,
    /// Received frames without a mark of ours.
    pub rx_unmarked: u64,
    /// Generated packets the port never took.
    pub tx_unsent: u64,
    pub streams: Vec<StreamReport>,
    pub per_second: Vec<Progress>,
}

/// Where received frames are copied, if anywhere.
pub type Capture = PcapWriter<BufWriter<File>>;

/// Runs `gen` into `tx`, counting what comes back on `rx`. `progress` is
/// called once a second.
pub fn run(
    gen: &mut Generator,
    tx: &mut dyn TxQueue,
    mut rx: Option<&mut dyn RxQueue>,
    cfg: &RunConfig,
    clock: Clock,
    mut capture: Option<&mut Capture>,
    progress: &mut dyn FnMut(&Progress),
) -> RunReport {
    let pool = PacketPool::new("pktgen", cfg.pool_size.max(2 * BURST_SIZE as u32));
    let mut cache = pool.cache(4 * BURST_SIZE);
    let mut receiver = Receiver::new(gen.streams().len());
    let mut batch = Batch::new();
    let mut rx_batch = Batch::new();
    let mean = gen.mean_size();
    let wall0 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // The schedule starts now, once everything is allocated.
    let start = clock.now_ns();
    let mut pacer = Pacer::new(cfg.rate, mean, cfg.burst, start);
    let end = cfg
        .seconds
        .map_or(u64::MAX, |s| start.saturating_add((s * 1e9) as u64));
    let limit = cfg.count.unwrap_or(u64::MAX);
    let (mut sent, mut sent_bytes) = (0u64, 0u64);
    let mut last_send = start;
    let mut next_report = start + cfg.report_every_ns;
    let mut last = (start, 0u64, 0u64, 0u64);
    let mut per_second = Vec::new();
    let mut receive = |rx: &mut Option<&mut dyn RxQueue>,
                       cache: &mut sluice_dataplane::buf::PoolCache,
                       receiver: &mut Receiver,
                       capture: &mut Option<&mut Capture>|
     -> usize {
        let Some(rx) = rx.as_mut() else { return 0 };
        let n = rx.rx_burst(cache, &mut rx_batch);
        if n > 0 {
            let t = clock.now_ns();
            receiver.record_all(rx_batch.iter(), t);
            if let Some(w) = capture.as_mut() {
                for p in rx_batch.iter() {
                    let _ = w.write_record(wall0 + (t - start), p.data());
                }
            }
            cache.free_batch(&mut rx_batch);
        }
        n
    };
    loop {
        let now = clock.now_ns();
        if now >= end || (sent >= limit && batch.is_empty()) {
            break;
        }
        let mut granted = 0;
        if batch.is_empty() && sent < limit {
            let n = pacer.grant(now, BURST_SIZE).min((limit - sent) as usize);
            if n > 0 {
                let (p, b) = gen.fill(&mut cache, &mut batch, n, now);
                pacer.spend(p, b);
                sent += p as u64;
                sent_bytes += b as u64;
                granted = p;
                last_send = now;
            }
        }
        if !batch.is_empty() {
            tx.tx_burst(&mut batch, &mut cache);
        }
        let got = receive(&mut rx, &mut cache, &mut receiver, &mut capture);
        if now >= next_report {
            let (rp, _) = receiver.totals();
            let dt = (now - last.0) as f64 / 1e9;
            let p = Progress {
                t: (now - start) as f64 / 1e9,
                tx_pps: (sent - last.1) as f64 / dt,
                tx_bps: (sent_bytes - last.2) as f64 * 8.0 / dt,
                rx_pps: (rp - last.3) as f64 / dt,
                tx_packets: sent,
                rx_packets: rp,
            };
            progress(&p);
            per_second.push(p);
            last = (now, sent, sent_bytes, rp);
            next_report += cfg.report_every_ns;
        }
        if granted == 0 && got == 0 && batch.is_empty() {
            let wait = pacer.wait_hint_ns(now).min(end.saturating_sub(now));
            if rx.is_none() && wait > 200_000 {
                std::thread::sleep(Duration::from_nanos((wait - 100_000).min(10_000_000)));
            } else {
                std::hint::spin_loop();
            }
        }
    }
    // What the port refused at the very end gets the drain time to go.
    let tx_end = clock.now_ns();
    let drain_end = tx_end + cfg.drain_ns;
    let mut quiet_since = tx_end;
    loop {
        let now = clock.now_ns();
        if !batch.is_empty() {
            tx.tx_burst(&mut batch, &mut cache);
        }
        tx.flush();
        let got = receive(&mut rx, &mut cache, &mut receiver, &mut capture);
        if got > 0 {
            quiet_since = now;
        }
        if now >= drain_end || (rx.is_none() && batch.is_empty()) {
            break;
        }
        // Everything is back: no need to wait out the whole drain.
        if batch.is_empty() && receiver.totals().0 >= sent && now - quiet_since > 1_000_000 {
            break;
        }
        if got == 0 {
            std::hint::spin_loop();
        }
    }
    let tx_unsent = batch.len() as u64;
    cache.free_batch(&mut batch);
    if let Some(w) = capture.as_mut() {
        let _ = w.flush();
    }
    let sent = sent - tx_unsent;
    // The schedule starts at the first grant; the last packet went at
    // `last_send`, one interval before the next would have been due.
    let tx_seconds = match cfg.rate.pps_at(mean) {
        Some(pps) if cfg.count.is_some() || cfg.seconds.is_none() => {
            ((last_send - start) as f64 / 1e9 + 1.0 / pps).max(1e-9)
        }
        _ => ((tx_end.min(end)) - start) as f64 / 1e9,
    };
    let target_pps = cfg.rate.pps_at(mean);
    let tx_pps = sent as f64 / tx_seconds;
    let (rp, rb) = receiver.totals();
    let streams = gen
        .streams()
        .iter()
        .map(|s| receiver.report(s.id, &s.name, s.seq, s.bytes, s.is_marked()))
        .collect();
    RunReport {
        tx_seconds,
        target: cfg.rate,
        target_pps,
        rate_error_pct: target_pps.map(|t| (tx_pps - t) / t * 100.0),
        tx: Totals {
            packets: sent,
            bytes: sent_bytes,
            pps: tx_pps,
            bps: sent_bytes as f64 * 8.0 / tx_seconds,
        },
        rx: Totals {
            packets: rp,
            bytes: rb,
            pps: rp as f64 / tx_seconds,
            bps: rb as f64 * 8.0 / tx_seconds,
        },
        rx_unmarked: receiver.unmarked,
        tx_unsent,
        streams,
        per_second,
    }
}

/// Opens the ports and runs: the whole `sluice-pktgen run` as a library
/// call. Without `rx_port`, a port that loops back is also received from.
pub fn run_ports(
    specs: &[crate::spec::StreamSpec],
    tx_port: &crate::ports::PortSpec,
    rx_port: Option<&crate::ports::PortSpec>,
    cfg: &RunConfig,
    capture: Option<&std::path::Path>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<RunReport, String> {
    let clock = Clock::new();
    let mut gen = Generator::new(specs, 1).map_err(|e| e.to_string())?;
    let port = tx_port.open("tx", clock)?;
    let mut tx = port.tx_queue(0).map_err(|e| e.to_string())?;
    let rx_owner = match rx_port {
        // One interface both ways: the port that sends also receives.
        Some(spec) if spec == tx_port && spec.is_interface() => Some(port.clone()),
        Some(spec) => Some(spec.open("rx", clock)?),
        None if tx_port.loops_back() => Some(port.clone()),
        None => None,
    };
    let mut rxq = match &rx_owner {
        Some(p) => Some(p.rx_queue(0).map_err(|e| e.to_string())?),
        None => None,
    };
    let mut writer = match capture {
        Some(path) => Some(
            PcapWriter::create(path, sluice_dataplane::io::pcap::DEFAULT_SNAPLEN)
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let rx_ref: Option<&mut dyn RxQueue> = match rxq.as_mut() {
        Some(q) => Some(q.as_mut()),
        None => None,
    };
    Ok(run(
        &mut gen,
        tx.as_mut(),
        rx_ref,
        cfg,
        clock,
        writer.as_mut(),
        progress,
    ))
}

/// The human form of a report: totals, then one line per stream.
pub fn summary(r: &RunReport) -> String {
    let mut s = format!(
        "sent {} packets in {:.3} s: {:.3} Mpps, {:.1} Mbit/s{}\nreceived {} packets ({} unmarked)\n",
        r.tx.packets,
        r.tx_seconds,
        r.tx.pps / 1e6,
        r.tx.bps / 1e6,
        match (r.target_pps, r.rate_error_pct) {
            (Some(t), Some(e)) => format!(" (target {:.3} Mpps, {e:+.3}%)", t / 1e6),
            _ => String::new(),
        },
        r.rx.packets,
        r.rx_unmarked
    );
    for st in &r.streams {
        let l = &st.latency_ns;
        s += &format!(
            "stream {} ({}): tx {} rx {} lost {} ({:.4}%) dup {} reordered {}",
            st.id,
            st.name,
            st.tx_packets,
            st.rx_packets,
            st.lost,
            st.loss_pct,
            st.duplicates,
            st.reordered
        );
        if l.samples > 0 {
            s += &format!(
                "  latency ns: p50 {} p90 {} p99 {} p99.9 {} max {}",
                l.p50, l.p90, l.p99, l.p999, l.max
            );
        }
        s.push('\n');
    }
    s.trim_end().to_string()
}
