//! `dpdk-testpmd` io forward: the framework's limit on these devices.
//!
//! `dpdk-testpmd -l 0,1 --main-lcore 0 --in-memory --no-pci --file-prefix P
//! --vdev net_pcap0,rx_pcap=F,infinite_rx=1 --vdev net_null0,no-rx=1 --
//! --auto-start --nb-cores=1 --forward-mode=io --total-num-mbufs=65536
//! --stats-period 1` (`../shared/PEERS.md`): the forwarding lcore is core 1,
//! as Sluice's worker. The rate is the null port's `Tx-pps` of the periodic
//! statistics, over the measured periods after one period of warm-up.

use super::{command, missing, result_from_rate, HugePages, PeerRun, Process, RunInput};
use crate::l3fwd::SystemResult;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

pub const PROGRAM: &str = "dpdk-testpmd";

pub struct Testpmd {
    _huge: Option<HugePages>,
}

impl Testpmd {
    pub fn new() -> Result<Testpmd, String> {
        if let Some(why) = missing(PROGRAM) {
            return Err(format!("{why} (Debian: apt-get install dpdk)"));
        }
        Ok(Testpmd { _huge: None })
    }
}

/// The command line for one run replaying `pcap`.
pub fn args(pcap: &std::path::Path, prefix: &str, hugepages: bool) -> Vec<String> {
    let mut a: Vec<String> = ["-l", "0,1", "--main-lcore", "0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if hugepages {
        a.push("--in-memory".into());
    } else {
        a.extend(["--no-huge", "-m", "1024"].map(String::from));
    }
    a.extend(
        [
            "--no-pci",
            "--no-telemetry",
            "--file-prefix",
            prefix,
            "--vdev",
            &format!("net_pcap0,rx_pcap={},infinite_rx=1", pcap.display()),
            "--vdev",
            "net_null0,no-rx=1",
            "--",
            "--auto-start",
            "--nb-cores=1",
            "--forward-mode=io",
            "--total-num-mbufs=65536",
            "--stats-period",
            "1",
        ]
        .map(String::from),
    );
    a
}

/// What testpmd's periodic statistics said for one port in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PortPeriod {
    pub port: u16,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub tx_pps: u64,
}

/// Parses testpmd's statistics text line by line.
#[derive(Debug, Default)]
pub struct StatsParser {
    port: Option<u16>,
    current: PortPeriod,
    in_throughput: bool,
}

impl StatsParser {
    /// Feeds one line; returns a port's period when its block ends.
    pub fn line(&mut self, line: &str) -> Option<PortPeriod> {
        let l = line.trim();
        if let Some(rest) = l.split("NIC statistics for port").nth(1) {
            let port = rest.split_whitespace().next()?.parse().ok()?;
            self.port = Some(port);
            self.current = PortPeriod {
                port,
                ..PortPeriod::default()
            };
            self.in_throughput = false;
            return None;
        }
        self.port?;
        let value = |key: &str| -> Option<u64> {
            let pos = l.find(key)?;
            l[pos + key.len()..].split_whitespace().next()?.parse().ok()
        };
        if l.starts_with("RX-packets:") {
            self.current.rx_packets = value("RX-packets:").unwrap_or(0);
        } else if l.starts_with("TX-packets:") {
            self.current.tx_packets = value("TX-packets:").unwrap_or(0);
        } else if l.starts_with("Throughput") {
            self.in_throughput = true;
        } else if self.in_throughput && l.starts_with("Tx-pps:") {
            self.current.tx_pps = value("Tx-pps:").unwrap_or(0);
            self.port = None;
            return Some(self.current);
        }
        None
    }
}

impl PeerRun for Testpmd {
    fn prepare(&mut self, _input: &RunInput<'_>) -> Result<(), String> {
        if super::is_root() {
            self._huge = Some(HugePages::reserve(1024)?);
        }
        Ok(())
    }

    fn measure(&mut self, input: &RunInput<'_>, progress: bool) -> Result<SystemResult, String> {
        let prefix = format!("sluice-perf-tp-{}", std::process::id());
        let hugepages = self._huge.is_some();
        let mut c = command("stdbuf");
        c.arg("-oL")
            .arg(PROGRAM)
            .args(args(input.pcap, &prefix, hugepages))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // The runtime directory of a --file-prefix run without --in-memory.
        let runtime = std::path::PathBuf::from(format!("/var/run/dpdk/{prefix}"));
        let _runtime = super::Cleanup::new(move || {
            let _ = std::fs::remove_dir_all(&runtime);
        });
        let mut p = Process::spawn(&mut c)?;
        let stdout = p.child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut parser = StatsParser::default();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(period) = parser.line(&line) {
                    if tx.send(period).is_err() {
                        break;
                    }
                }
            }
        });
        // Periods of the null port (1) with traffic: the first is warm-up.
        let mut periods = Vec::new();
        let want = input.seconds as usize + 1;
        let deadline = std::time::Instant::now() + Duration::from_secs(input.seconds + 30);
        while periods.len() < want {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(period) if period.port == 1 && period.tx_pps > 0 => {
                    if progress && !periods.is_empty() {
                        eprintln!(
                            "testpmd: {}/{}s {:.2} Mpps",
                            periods.len(),
                            input.seconds,
                            period.tx_pps as f64 / 1e6
                        );
                    }
                    periods.push(period);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let pid = p.pid();
        let resident = super::resident_mib_of(pid);
        p.stop(libc::SIGINT, Duration::from_secs(5));
        let _ = reader.join();
        if periods.len() < want {
            return Err(format!(
                "testpmd reported {} periods with traffic, expected {want}",
                periods.len()
            ));
        }
        let measured = &periods[1..];
        let per_second: Vec<f64> = measured
            .iter()
            .map(|p| (p.tx_pps as f64 / 1e3).round() / 1e3)
            .collect();
        let seconds = measured.len() as f64;
        let pps_sum: u64 = measured.iter().map(|p| p.tx_pps).sum();
        // One second a period: the packets forwarded while measured.
        let forwarded = pps_sum;
        Ok(result_from_rate(
            "testpmd", forwarded, forwarded, seconds, 1.0, per_second, resident,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATS: &str = "\x1b[2J\x1b[1;1H
Port statistics ====================================
  ######################## NIC statistics for port 0  ########################
  RX-packets: 158272     RX-missed: 0          RX-bytes:  15827200
  RX-errors: 0
  RX-nombuf:  0
  TX-packets: 0          TX-errors: 0          TX-bytes:  0

  Throughput (since last show)
  Rx-pps:     60123456          Rx-bps:            0
  Tx-pps:            0          Tx-bps:            0
  ############################################################################

  ######################## NIC statistics for port 1  ########################
  RX-packets: 0          RX-missed: 0          RX-bytes:  0
  RX-errors: 0
  RX-nombuf:  0
  TX-packets: 224        TX-errors: 0          TX-bytes:  0

  Throughput (since last show)
  Rx-pps:            0          Rx-bps:            0
  Tx-pps:     59876543          Tx-bps:   28740740640
  ############################################################################
";

    #[test]
    fn parses_periodic_port_statistics() {
        let mut p = StatsParser::default();
        let got: Vec<PortPeriod> = STATS.lines().filter_map(|l| p.line(l)).collect();
        assert_eq!(
            got,
            vec![
                PortPeriod {
                    port: 0,
                    rx_packets: 158272,
                    tx_packets: 0,
                    tx_pps: 0
                },
                PortPeriod {
                    port: 1,
                    rx_packets: 0,
                    tx_packets: 224,
                    tx_pps: 59876543
                },
            ]
        );
        // Lines outside a port block are ignored.
        assert_eq!(p.line("  Tx-pps:  5"), None);
    }

    #[test]
    fn command_line_follows_peers_md() {
        let a = args(std::path::Path::new("/tmp/x.pcap"), "tp1", true).join(" ");
        assert!(
            a.starts_with("-l 0,1 --main-lcore 0 --in-memory --no-pci"),
            "{a}"
        );
        assert!(
            a.contains(
                "--vdev net_pcap0,rx_pcap=/tmp/x.pcap,infinite_rx=1 --vdev net_null0,no-rx=1 --"
            ),
            "{a}"
        );
        assert!(
            a.contains("--forward-mode=io") && a.contains("--nb-cores=1"),
            "{a}"
        );
        let a = args(std::path::Path::new("/tmp/x.pcap"), "tp1", false).join(" ");
        assert!(
            a.contains("--no-huge -m 1024") && !a.contains("--in-memory"),
            "{a}"
        );
    }
}
