//! The receive side: per-stream counts, loss, duplicates, reordering and
//! latency from the marks of the packets that come back.
//!
//! Per stream a window of the last [`WINDOW`] sequence numbers remembers
//! which arrived: a number above the highest seen advances the window; one
//! below it is a duplicate if its bit is set and a late (reordered) arrival
//! otherwise. Loss is what was sent less the distinct packets received.
//! Latency (receive time less the mark's transmit time, one clock) goes
//! into an HDR histogram per stream with 3 significant digits from 1 ns to
//! 100 s; recording allocates nothing.

use crate::mark;
use hdrhistogram::Histogram;
use serde::Serialize;
use sluice_dataplane::buf::Packet;

/// Sequence numbers the duplicate detector remembers per stream.
pub const WINDOW: u64 = 1 << 16;

struct StreamRx {
    received: u64,
    bytes: u64,
    unique: u64,
    duplicates: u64,
    reordered: u64,
    /// One above the highest sequence number seen.
    next: u64,
    window: Box<[u64]>,
    latency: Histogram<u64>,
}

impl StreamRx {
    fn new() -> StreamRx {
        StreamRx {
            received: 0,
            bytes: 0,
            unique: 0,
            duplicates: 0,
            reordered: 0,
            next: 0,
            window: vec![0u64; (WINDOW / 64) as usize].into_boxed_slice(),
            latency: Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds"),
        }
    }

    #[inline(always)]
    fn bit(&mut self, seq: u64) -> (&mut u64, u64) {
        let i = seq % WINDOW;
        (&mut self.window[(i / 64) as usize], 1u64 << (i % 64))
    }

    #[inline]
    fn record(&mut self, seq: u64, len: usize, latency_ns: u64) {
        self.received += 1;
        self.bytes += len as u64;
        if seq >= self.next {
            if seq - self.next >= WINDOW {
                self.window.fill(0);
            } else {
                for s in self.next..seq {
                    let (w, b) = self.bit(s);
                    *w &= !b;
                }
            }
            let (w, b) = self.bit(seq);
            *w |= b;
            self.next = seq + 1;
        } else if self.next - seq > WINDOW {
            // Too old to tell: counted as a late arrival.
            self.reordered += 1;
        } else {
            let (w, b) = self.bit(seq);
            if *w & b != 0 {
                self.duplicates += 1;
                return;
            }
            *w |= b;
            self.reordered += 1;
        }
        self.unique += 1;
        self.latency.saturating_record(latency_ns.max(1));
    }
}

/// Latency percentiles of one stream, nanoseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LatencyReport {
    pub samples: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// The percentiles of a histogram of nanoseconds.
fn latency_report(h: &Histogram<u64>) -> LatencyReport {
    if h.is_empty() {
        return LatencyReport::default();
    }
    LatencyReport {
        samples: h.len(),
        min: h.min(),
        mean: (h.mean() * 10.0).round() / 10.0,
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

/// A latency histogram in nanoseconds with the streams' bounds (1 ns to
/// 100 s, 3 significant digits), for latencies that are not marks (the
/// stateful TCP mode's connect and request times). Recording allocates
/// nothing.
pub struct LatencyHistogram(Histogram<u64>);

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> LatencyHistogram {
        LatencyHistogram(Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds"))
    }

    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.0.saturating_record(ns.max(1));
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn report(&self) -> LatencyReport {
        latency_report(&self.0)
    }
}

/// What one stream sent and what came back.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StreamReport {
    pub id: u16,
    pub name: String,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Sent and never received (sent less distinct received).
    pub lost: u64,
    pub loss_pct: f64,
    pub duplicates: u64,
    /// Packets that arrived after one with a higher sequence number.
    pub reordered: u64,
    /// Whether packets carried marks (without them only counts are known).
    pub marked: bool,
    pub latency_ns: LatencyReport,
}

/// Counts what comes back. One per receiving thread.
pub struct Receiver {
    streams: Vec<StreamRx>,
    /// Frames without a mark (or with a stream id we did not send).
    pub unmarked: u64,
    pub unmarked_bytes: u64,
}

impl Receiver {
    pub fn new(streams: usize) -> Receiver {
        Receiver {
            streams: (0..streams).map(|_| StreamRx::new()).collect(),
            unmarked: 0,
            unmarked_bytes: 0,
        }
    }

    /// Counts one received frame at `rx_ns`.
    #[inline]
    pub fn record(&mut self, frame: &[u8], rx_ns: u64) {
        match mark::read(frame) {
            Some(m) if (m.stream as usize) < self.streams.len() => self.streams[m.stream as usize]
                .record(m.seq, frame.len(), rx_ns.saturating_sub(m.tx_ns)),
            _ => {
                self.unmarked += 1;
                self.unmarked_bytes += frame.len() as u64;
            }
        }
    }

    /// Counts a burst.
    #[inline]
    pub fn record_all<'a>(&mut self, pkts: impl Iterator<Item = &'a Packet>, rx_ns: u64) {
        for p in pkts {
            self.record(p.data(), rx_ns);
        }
    }

    /// Packets and bytes received so far, marked or not.
    pub fn totals(&self) -> (u64, u64) {
        self.streams
            .iter()
            .fold((self.unmarked, self.unmarked_bytes), |(p, b), s| {
                (p + s.received, b + s.bytes)
            })
    }

    /// Distinct marked packets received per stream.
    pub fn unique(&self, stream: usize) -> u64 {
        self.streams.get(stream).map_or(0, |s| s.unique)
    }

    /// The report of stream `id`, given what it sent.
    pub fn report(
        &self,
        id: u16,
        name: &str,
        tx_packets: u64,
        tx_bytes: u64,
        marked: bool,
    ) -> StreamReport {
        let s = &self.streams[id as usize];
        let lost = if marked {
            tx_packets.saturating_sub(s.unique)
        } else {
            0
        };
        let latency_ns = latency_report(&s.latency);
        StreamReport {
            id,
            name: name.to_string(),
            tx_packets,
            tx_bytes,
            rx_packets: s.received,
            rx_bytes: s.bytes,
            lost,
            loss_pct: if tx_packets == 0 {
                0.0
            } else {
                lost as f64 * 100.0 / tx_packets as f64
            },
            duplicates: s.duplicates,
            reordered: s.reordered,
            marked,
            latency_ns,
        }
    }

    /// Empties every counter and histogram (between trials).
    pub fn reset(&mut self) {
        for s in &mut self.streams {
            *s = StreamRx::new();
        }
        self.unmarked = 0;
        self.unmarked_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64, tx: u64) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        mark::write(&mut f[44..], 0, seq, tx);
        f
    }

    #[test]
    fn loss_duplicates_and_reordering() {
        let mut r = Receiver::new(1);
        for seq in [0, 1, 3, 2, 2, 5, 6, 6, 9] {
            r.record(&frame(seq, 100), 1100);
        }
        r.record(&[0u8; 64], 0);
        let rep = r.report(0, "s", 10, 640, true);
        assert_eq!(rep.rx_packets, 9);
        assert_eq!(rep.duplicates, 2);
        assert_eq!(rep.reordered, 1);
        // 0..=9 sent; 4, 7, 8 never came.
        assert_eq!(rep.lost, 3);
        assert_eq!(rep.latency_ns.p50, 1000);
        assert_eq!(r.unmarked, 1);
    }

    #[test]
    fn window_wraps_without_false_duplicates() {
        let mut r = Receiver::new(1);
        for seq in 0..(3 * WINDOW) {
            r.record(&frame(seq, 0), 10);
        }
        // A jump past a whole window, then everything is still new.
        r.record(&frame(10 * WINDOW, 0), 10);
        r.record(&frame(10 * WINDOW + 1, 0), 10);
        let rep = r.report(0, "s", 10 * WINDOW + 2, 0, true);
        assert_eq!(rep.duplicates, 0);
        assert_eq!(rep.reordered, 0);
        assert_eq!(rep.lost, 10 * WINDOW + 2 - 3 * WINDOW - 2);
    }
}
