//! The pktgen scenarios: the generator alone, as fast as it goes, into an
//! in-memory sink: 64-byte UDP frames with four varying fields (source and
//! destination address, source and destination port), without marks
//! (`pktgen`) or with a sequence number and timestamp in every frame
//! (`pktgen-marked`). The generator thread is pinned like a worker (the
//! last core). `mpps` is the wall-clock rate; `mpps_per_core`,
//! `ns_per_packet` and `cycles_per_packet` count only the CPU time the
//! generator thread was given (on a dedicated core the two agree; on a
//! shared machine the first drops with the load, the second does not).
//! The sink frees every packet back to the generator's pool cache.

use crate::l3fwd::{Params, Report, SystemResult};
use crate::machine;
use sluice_dataplane::engine::default_cores;
use sluice_dataplane::io::mem::{MemPort, MemPortConfig};
use sluice_dataplane::io::Port;
use sluice_pktgen::clock::Clock;
use sluice_pktgen::gen::Generator;
use sluice_pktgen::rate::Rate;
use sluice_pktgen::run::{run as run_generator, RunConfig};
use sluice_pktgen::spec::StreamSpec;
use std::collections::BTreeMap;

/// The stream: four fields vary in every packet.
pub fn stream(frame_size: usize, marked: bool) -> String {
    format!(
        "udp src=10.0.0.1-10.0.0.255 dst=10.1.0.1-10.1.0.100 sport=1024-2047 dport=53-60 size={frame_size} mark={}",
        if marked { "on" } else { "off" }
    )
}

pub fn run(scenario: &str, marked: bool, p: &Params, progress: bool) -> Result<Report, String> {
    let frame_size = p.frame_size.unwrap_or(64);
    let machine = machine::describe();
    let spec =
        StreamSpec::parse_short(1, &stream(frame_size, marked)).map_err(|e| e.to_string())?;
    let mut gen = Generator::new(&[spec], p.seed).map_err(|e| e.to_string())?;
    let sink = MemPort::sink("sink", MemPortConfig::default());
    let mut tx = sink.tx_queue(0).map_err(|e| e.to_string())?;
    let core = default_cores(1).first().copied();
    let seconds = p.seconds.max(1);
    let name = scenario.to_string();
    // Seconds 0..1 warm up; the measured span is from the first report to
    // the last, with the TSC read at each.
    let handle = std::thread::spawn(move || {
        if let Some(c) = core {
            core_affinity::set_for_current(core_affinity::CoreId { id: c });
        }
        let cfg = RunConfig {
            rate: Rate::Unlimited,
            seconds: Some(seconds as f64 + 1.05),
            drain_ns: 0,
            ..RunConfig::default()
        };
        let mut marks: Vec<(u64, u64, u64)> = Vec::new();
        let report = run_generator(
            &mut gen,
            tx.as_mut(),
            None,
            &cfg,
            Clock::new(),
            None,
            &mut |pr| {
                marks.push((pr.tx_packets, machine::tsc(), thread_cpu_ns()));
                if progress && marks.len() > 1 {
                    eprintln!(
                        "{name}: {}/{}s {:.2} Mpps",
                        marks.len() - 1,
                        seconds,
                        pr.tx_pps / 1e6
                    );
                }
            },
        );
        (report, marks)
    });
    let (report, marks) = handle
        .join()
        .map_err(|_| "the generator thread panicked".to_string())?;
    if marks.len() < 2 {
        return Err("the run ended before a second was measured".into());
    }
    let per_second: Vec<f64> = report
        .per_second
        .iter()
        .skip(1)
        .map(|s| (s.tx_pps / 1e3).round() / 1e3)
        .collect();
    let (first, last) = (marks[0], marks[marks.len() - 1]);
    let packets = last.0 - first.0;
    let secs = report.per_second[report.per_second.len() - 1].t - report.per_second[0].t;
    let pps = packets as f64 / secs;
    // Per core: packets per second of CPU time the generator thread got.
    // On a dedicated core that is the wall-clock rate; on a shared one it
    // leaves out the time other processes had the core.
    let cpu_secs = (last.2 - first.2) as f64 / 1e9;
    let pps_per_core = packets as f64 / cpu_secs.max(1e-9);
    let tsc_hz = (last.1 - first.1) as f64 / secs;
    let cycles = cpu_secs * tsc_hz;
    Ok(Report {
        scenario: scenario.to_string(),
        params: p.clone(),
        io: "mem".into(),
        frame_size,
        results: vec![SystemResult {
            system: "sluice".into(),
            workers: 1,
            mpps: pps / 1e6,
            mpps_per_core: pps_per_core / 1e6,
            ns_per_packet: 1e9 / pps_per_core,
            cycles_per_packet: cycles / packets.max(1) as f64,
            received: 0,
            forwarded: packets,
            dropped: 0,
            drops_by_reason: BTreeMap::new(),
            per_second_mpps: per_second,
            resident_mib: machine::resident_mib(),
            round_mpps: Vec::new(),
        }],
        machine,
        ratios: BTreeMap::new(),
        rounds: 1,
        skipped: Vec::new(),
    })
}

/// CPU time this thread has used, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
