//! Rate control: how many packets may go now.
//!
//! The schedule is absolute: by time `t` after the start, `t × rate` units
//! (packets, bits of frames, or bits on the wire) are due. Each call grants
//! what is due and not yet sent, so a late wake-up is made up by the next
//! burst and the average rate does not drift. The caller spins between
//! grants at high rates and may sleep when the next grant is far off
//! ([`Pacer::wait_hint_ns`]).

use serde::Serialize;
use sluice_dataplane::buf::BURST_SIZE;

/// A target rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rate {
    /// As fast as the generator goes.
    Unlimited,
    /// Packets per second.
    Pps(f64),
    /// Bits per second of frames (without FCS, preamble and gap), what the
    /// port counters count.
    Bps(f64),
    /// Percent of a line rate counted on the wire: each frame costs its
    /// size + 4 (FCS) + 8 (preamble) + 12 (inter-frame gap) bytes.
    LinePercent { percent: f64, line_bps: f64 },
}

/// Wire overhead per frame beyond its bytes: FCS, preamble and SFD,
/// inter-frame gap.
pub const WIRE_OVERHEAD: usize = 4 + 8 + 12;

fn number_unit(s: &str) -> Result<(f64, &str), String> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '_'))
        .unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.replace('_', "").parse().map_err(|_| {
        format!("expected a number with a unit (10kpps, 1mpps, 5gbps, 50%), got {s:?}")
    })?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(format!("rate must be a positive number, got {s:?}"));
    }
    Ok((n, unit))
}

impl Rate {
    /// Parses `max`, `N[k|m|g]pps`, `N[k|m|g]bps` (also `bit`), `N%` (of
    /// `line_bps`), or a bare number of packets per second.
    pub fn parse(text: &str, line_bps: f64) -> Result<Rate, String> {
        let t = text.trim().to_ascii_lowercase();
        if matches!(t.as_str(), "max" | "unlimited" | "line" | "inf") {
            return Ok(Rate::Unlimited);
        }
        if let Some(p) = t.strip_suffix('%') {
            let (n, unit) = number_unit(p)?;
            if !unit.is_empty() || n <= 0.0 || n > 100.0 {
                return Err(format!(
                    "a percentage of the line rate is in (0, 100], got {text:?}"
                ));
            }
            return Ok(Rate::LinePercent {
                percent: n,
                line_bps,
            });
        }
        let (n, unit) = number_unit(&t)?;
        let (scale, rest) = match unit.chars().next() {
            Some('k') => (1e3, &unit[1..]),
            Some('m') => (1e6, &unit[1..]),
            Some('g') => (1e9, &unit[1..]),
            _ => (1.0, unit),
        };
        let v = n * scale;
        if v <= 0.0 {
            return Err(format!(
                "rate must be above zero, got {text:?} (use max for no limit)"
            ));
        }
        match rest {
            "" | "pps" | "p" => Ok(Rate::Pps(v)),
            "bps" | "bit" | "bit/s" | "b" => Ok(Rate::Bps(v)),
            _ => Err(format!(
                "unknown rate unit {unit:?} in {text:?} (expected pps, kpps, mpps, bps, kbps, mbps, gbps or %)"
            )),
        }
    }

    /// Packets per second at a mean frame size of `mean_size` bytes.
    pub fn pps_at(&self, mean_size: f64) -> Option<f64> {
        match *self {
            Rate::Unlimited => None,
            Rate::Pps(p) => Some(p),
            Rate::Bps(b) => Some(b / (mean_size * 8.0)),
            Rate::LinePercent { percent, line_bps } => {
                Some(line_bps * percent / 100.0 / ((mean_size + WIRE_OVERHEAD as f64) * 8.0))
            }
        }
    }
}

/// Grants packets against the schedule. See the module docs.
#[derive(Debug, Clone)]
pub struct Pacer {
    unlimited: bool,
    /// Units due per nanosecond.
    per_ns: f64,
    /// Units a packet costs, and a byte of it.
    per_packet: f64,
    per_byte: f64,
    /// Mean cost of a packet, to turn units into a packet count.
    mean_cost: f64,
    /// Packets go in groups of this many.
    burst: usize,
    start_ns: u64,
    spent: f64,
}

impl Pacer {
    /// A pacer for `rate` whose packets average `mean_size` bytes, sending
    /// `burst` packets back to back each time (1 spreads them evenly; at
    /// most one batch, [`BURST_SIZE`]).
    pub fn new(rate: Rate, mean_size: f64, burst: usize, start_ns: u64) -> Pacer {
        let (per_s, per_packet, per_byte) = match rate {
            Rate::Unlimited => (0.0, 1.0, 0.0),
            Rate::Pps(p) => (p, 1.0, 0.0),
            Rate::Bps(b) => (b, 0.0, 8.0),
            Rate::LinePercent { percent, line_bps } => {
                (line_bps * percent / 100.0, (WIRE_OVERHEAD * 8) as f64, 8.0)
            }
        };
        Pacer {
            unlimited: matches!(rate, Rate::Unlimited),
            per_ns: per_s / 1e9,
            per_packet,
            per_byte,
            mean_cost: per_packet + per_byte * mean_size,
            burst: burst.clamp(1, BURST_SIZE),
            start_ns,
            spent: 0.0,
        }
    }

    /// Packets that may go at `now_ns` (at most `max`; 0 if none is due).
    #[inline]
    pub fn grant(&self, now_ns: u64, max: usize) -> usize {
        if self.unlimited {
            return max;
        }
        let due = now_ns.saturating_sub(self.start_ns) as f64 * self.per_ns - self.spent;
        if due < self.mean_cost * self.burst as f64 * 0.999_999 {
            return 0;
        }
        let n = ((due / self.mean_cost) as usize).max(self.burst).min(max);
        n - n % self.burst
    }

    /// Records what was sent.
    #[inline]
    pub fn spend(&mut self, packets: usize, bytes: usize) {
        self.spent += packets as f64 * self.per_packet + bytes as f64 * self.per_byte;
    }

    /// Nanoseconds until the next grant (0 if one is due).
    pub fn wait_hint_ns(&self, now_ns: u64) -> u64 {
        if self.unlimited {
            return 0;
        }
        let need = self.spent + self.mean_cost * self.burst as f64;
        let at = self.start_ns as f64 + need / self.per_ns;
        (at - now_ns as f64).max(0.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rates() {
        assert_eq!(Rate::parse("10kpps", 1e10).unwrap(), Rate::Pps(10_000.0));
        assert_eq!(Rate::parse("1mpps", 1e10).unwrap(), Rate::Pps(1e6));
        assert_eq!(Rate::parse("2500", 1e10).unwrap(), Rate::Pps(2500.0));
        assert_eq!(Rate::parse("5gbps", 1e10).unwrap(), Rate::Bps(5e9));
        assert_eq!(Rate::parse("max", 1e10).unwrap(), Rate::Unlimited);
        assert_eq!(
            Rate::parse("50%", 1e10).unwrap(),
            Rate::LinePercent {
                percent: 50.0,
                line_bps: 1e10
            }
        );
        assert!(Rate::parse("5 furlongs", 1e10).is_err());
        assert!(Rate::parse("150%", 1e10).is_err());
        assert!(Rate::parse("0", 1e10).is_err());
        // 100% of 10G at 64 bytes is the classic 14.88 Mpps.
        let p = Rate::parse("100%", 1e10).unwrap().pps_at(60.0).unwrap();
        assert!((p - 14_880_952.0).abs() < 1.0, "{p}");
    }

    #[test]
    fn grants_follow_the_schedule() {
        let mut p = Pacer::new(Rate::Pps(1e6), 64.0, 1, 0);
        assert_eq!(p.grant(0, 32), 0);
        assert_eq!(p.grant(1_000, 32), 1);
        assert_eq!(p.grant(10_000, 32), 10);
        p.spend(10, 640);
        assert_eq!(p.grant(10_000, 32), 0);
        assert_eq!(p.wait_hint_ns(10_000), 1_000);
        assert_eq!(p.grant(1_000_000, 32), 32);
        let mut b = Pacer::new(Rate::Pps(1e6), 64.0, 8, 0);
        assert_eq!(b.grant(7_000, 32), 0);
        assert_eq!(b.grant(8_000, 32), 8);
        b.spend(8, 0);
        assert_eq!(b.grant(20_000, 32), 8);
    }
}
