//! The machine's state around a run, for the report: the load average
//! before and after, how busy each CPU was while the run went (from
//! `/proc/stat`), the hypervisor's steal time, the CPU clock. A number
//! taken while something else ran is worth less; the report says so.

use serde::{Deserialize, Serialize};

/// `/proc/stat` and `/proc/loadavg` at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub load_average: [f64; 3],
    /// Per CPU: (busy ticks, idle ticks incl. iowait, steal ticks).
    pub cpus: Vec<(u64, u64, u64)>,
    /// CPU time of this process (user + system, its ended threads
    /// included), in the same ticks.
    pub own_ticks: u64,
}

/// What the report carries.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Conditions {
    /// 1-, 5- and 15-minute load averages when the run started and ended.
    pub load_before: [f64; 3],
    pub load_after: [f64; 3],
    /// Per CPU, the share of the run's wall time it was busy (any process,
    /// the run's own threads included), percent.
    pub cpu_busy_pct: Vec<f64>,
    /// Time the hypervisor ran something else on our vCPUs, percent of all
    /// CPU time during the run.
    pub steal_pct: f64,
    /// The run's own CPU time as a share of the measured cores' time,
    /// percent: about 100 when the worker had its core to itself, less when
    /// another process ran there too (a helper thread on another core,
    /// such as the latency scenario's generator, can take it above 100).
    pub own_share_of_measured_pct: Option<f64>,
    /// The CPU clock as `/proc/cpuinfo` reports it (a KVM guest shows the
    /// host's nominal rate), MHz.
    pub cpu_mhz: f64,
    /// One sentence for people.
    pub note: String,
}

fn parse_stat(text: &str) -> Vec<(u64, u64, u64)> {
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            // user nice system idle iowait irq softirq steal
            let idle = at(3) + at(4);
            let steal = at(7);
            let busy = at(0) + at(1) + at(2) + at(5) + at(6);
            (busy, idle, steal)
        })
        .collect()
}

fn parse_loadavg(text: &str) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (o, v) in out.iter_mut().zip(text.split_whitespace()) {
        *o = v.parse().unwrap_or(0.0);
    }
    out
}

/// utime + stime of `/proc/self/stat` (fields 14 and 15, counted after the
/// command name, which may hold spaces).
fn parse_self_stat(text: &str) -> u64 {
    let Some(rest) = text.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    let at = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    at(14) + at(15)
}

pub fn snapshot() -> Snapshot {
    Snapshot {
        load_average: parse_loadavg(&std::fs::read_to_string("/proc/loadavg").unwrap_or_default()),
        cpus: parse_stat(&std::fs::read_to_string("/proc/stat").unwrap_or_default()),
        own_ticks: parse_self_stat(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default()),
    }
}

fn cpu_mhz() -> f64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// The conditions between two snapshots; `measured_cpus` are the cores the
/// run's measured threads were pinned to (the note names the others' load).
pub fn between(before: &Snapshot, after: &Snapshot, measured_cpus: &[usize]) -> Conditions {
    let mut busy_pct = Vec::new();
    let (mut steal, mut total) = (0u64, 0u64);
    for (a, b) in after.cpus.iter().zip(&before.cpus) {
        let busy = a.0.saturating_sub(b.0);
        let idle = a.1.saturating_sub(b.1);
        let st = a.2.saturating_sub(b.2);
        let all = busy + idle + st;
        busy_pct.push(if all == 0 {
            0.0
        } else {
            (busy as f64 * 1000.0 / all as f64).round() / 10.0
        });
        steal += st;
        total += all;
    }
    let measured_ticks: u64 = measured_cpus
        .iter()
        .filter_map(|&c| {
            let (a, b) = (after.cpus.get(c)?, before.cpus.get(c)?);
            Some((a.0 + a.1 + a.2).saturating_sub(b.0 + b.1 + b.2))
        })
        .sum();
    let own = after.own_ticks.saturating_sub(before.own_ticks);
    // Below a second of ticks the ratio is mostly rounding.
    let own_share_of_measured_pct = (measured_ticks >= 100)
        .then(|| (own as f64 * 1000.0 / measured_ticks as f64).round() / 10.0);
    let steal_pct = if total == 0 {
        0.0
    } else {
        (steal as f64 * 1000.0 / total as f64).round() / 10.0
    };
    let mut c = Conditions {
        load_before: before.load_average,
        load_after: after.load_average,
        cpu_busy_pct: busy_pct,
        steal_pct,
        own_share_of_measured_pct,
        cpu_mhz: cpu_mhz(),
        note: String::new(),
    };
    c.note = note(&c, measured_cpus);
    c
}

/// "quiet" or what disturbed the run, in one sentence.
pub fn note(c: &Conditions, measured_cpus: &[usize]) -> String {
    let others: Vec<String> = c
        .cpu_busy_pct
        .iter()
        .enumerate()
        .filter(|(i, b)| !measured_cpus.contains(i) && **b > 20.0)
        .map(|(i, b)| format!("cpu{i} {b:.0}% busy"))
        .collect();
    let cores = c.cpu_busy_pct.len().max(1) as f64;
    // The run itself keeps one core per measured thread busy.
    let excess = c.load_before[0].max(c.load_after[0]) - measured_cpus.len() as f64;
    let mut parts = Vec::new();
    if let Some(share) = c.own_share_of_measured_pct.filter(|s| *s < 90.0) {
        parts.push(format!(
            "the measured core was shared: this run had {share:.0}% of it"
        ));
    }
    if !others.is_empty() {
        parts.push(format!("other work ran ({})", others.join(", ")));
    }
    let load = format!(
        "load average {:.2} → {:.2} on {cores:.0} CPUs",
        c.load_before[0], c.load_after[0]
    );
    if c.steal_pct >= 1.0 {
        parts.push(format!("{:.1}% stolen by the hypervisor", c.steal_pct));
    }
    if parts.is_empty() && excess <= 0.5 {
        format!("quiet: {load}")
    } else {
        parts.push(load);
        format!("noisy: {}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_steal_come_from_the_difference_of_two_snapshots() {
        let before = Snapshot {
            own_ticks: 10,
            load_average: [0.5, 0.4, 0.3],
            cpus: parse_stat(
                "cpu  1 1 1 1 1 0 0 0 0 0\ncpu0 100 0 0 900 0 0 0 0 0 0\ncpu1 0 0 0 1000 0 0 0 0 0 0\n",
            ),
        };
        let after = Snapshot {
            own_ticks: 60,
            load_average: [2.5, 0.9, 0.4],
            cpus: parse_stat("cpu0 180 0 10 905 5 0 0 0 0 0\ncpu1 96 0 0 1000 0 0 0 4 0 0\n"),
        };
        let c = between(&before, &after, &[1]);
        assert_eq!(c.cpu_busy_pct, vec![90.0, 96.0]);
        assert_eq!(c.steal_pct, 2.0);
        assert!(c.note.starts_with("noisy"), "{}", c.note);
        assert!(c.note.contains("cpu0 90% busy"), "{}", c.note);
        assert!(!c.note.contains("cpu1"), "{}", c.note);
        assert!(c.note.contains("stolen"), "{}", c.note);
        // 50 ticks of ours in cpu1's 100: someone else had the other half.
        assert_eq!(c.own_share_of_measured_pct, Some(50.0));
        assert!(c.note.contains("shared: this run had 50%"), "{}", c.note);
        let quiet = Snapshot {
            load_average: [1.0, 1.0, 1.0],
            cpus: parse_stat("cpu0 181 0 10 1004 5 0 0 0 0 0\ncpu1 196 0 0 1000 0 0 0 4 0 0\n"),
            own_ticks: 100,
        };
        let calm = Snapshot {
            load_average: [1.0, 1.0, 1.0],
            cpus: after.cpus.clone(),
            own_ticks: 0,
        };
        let c = between(&calm, &quiet, &[1]);
        assert!(c.note.starts_with("quiet"), "{}", c.note);
        assert_eq!(c.own_share_of_measured_pct, Some(100.0));
    }

    #[test]
    fn own_cpu_time_comes_from_proc_self_stat() {
        let line = "1234 (sluice perf) R 1 2 3 4 5 6 7 8 9 10 250 31 0 0 20 0 3 0 99";
        assert_eq!(parse_self_stat(line), 281);
        assert!(snapshot().own_ticks < u64::MAX);
    }
}
