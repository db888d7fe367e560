//! Per-pod bandwidth limits (the CNI bandwidth plugin's contract): rate in
//! bits per second and burst in bits, per direction.
//!
//! # One limiter per pod and direction, shared by every worker
//!
//! A pod's packets may arrive on any worker, and the plugin's rate is the
//! pod's aggregate. A [`Limiter`] is therefore shared: it is a GCRA (the
//! generic cell rate algorithm, ITU-T I.371; equivalent to a token bucket
//! of depth `burst`) whose one word of state, the theoretical arrival time
//! `tat`, is advanced with a compare-and-swap. No lock, one atomic per
//! limited packet, exact aggregate rate whatever the spread over workers;
//! the cache line moves between cores only while a pod is sent to from
//! several at once.
//!
//! For a packet of `len` bytes at time `now` (cost `T = len × 8 / rate`,
//! tolerance `τ = burst / rate`):
//! * `tat' = max(tat, now)`; the packet conforms after `wait = tat' − now − τ`
//!   (zero or less: at once);
//! * police: `wait > 0` → drop, `tat` unchanged;
//! * shape: `wait > queue` → drop; otherwise it leaves at `now + wait`
//!   (the worker holds it until then) and `tat = tat' + T`.
//!
//! The plugin's token-bucket filter holds `rate × 25 ms + burst` bytes; a
//! shaped limiter's `queue` is 25 ms: a packet that would wait longer than
//! that behind the burst is dropped, as one the filter's queue has no room
//! for would be.
//!
//! Limiters live in the tables (an `Arc` per limiter) but carry state: the
//! compiler hands the same `Arc` to the next generation while a pod's
//! limits do not change, so a table swap neither resets a bucket nor
//! forgets its counters.

use crate::tables::services::{FamilyNum, ShardedMap};
use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What happens beyond the burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Hold packets up to 25 ms, then drop (the bandwidth plugin's
    /// token-bucket filter).
    #[default]
    Shape,
    /// Drop at once.
    Police,
}

/// How long a shaped packet may wait: the plugin's `latency` of 25 ms.
pub const SHAPE_QUEUE_NS: u64 = 25_000_000;

/// The decision for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Send now.
    Conform,
    /// Send at this time (ns of the worker's clock).
    Delay(u64),
    /// Over the limit.
    Drop,
}

/// Counters of one limiter (any worker adds to them).
#[derive(Debug, Default)]
pub struct LimiterCounters {
    pub conform_packets: AtomicU64,
    pub conform_bytes: AtomicU64,
    pub queued_packets: AtomicU64,
    pub queued_bytes: AtomicU64,
    pub dropped_packets: AtomicU64,
    pub dropped_bytes: AtomicU64,
}

/// A copy of a limiter's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LimiterSnapshot {
    pub conform_packets: u64,
    pub conform_bytes: u64,
    pub queued_packets: u64,
    pub queued_bytes: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
}

/// One pod's limit in one direction. See the module documentation.
#[derive(Debug)]
pub struct Limiter {
    pub rate_bps: u64,
    pub burst_bits: u64,
    pub mode: Mode,
    /// Nanoseconds per byte, as a 32.32 fixed-point number.
    ns_per_byte: u64,
    /// τ: the burst's duration at the rate, ns.
    tolerance_ns: u64,
    queue_ns: u64,
    /// The theoretical arrival time, ns.
    tat: AtomicU64,
    pub counters: LimiterCounters,
}

impl Limiter {
    /// A limiter of `rate_bps` (at least 1) with a burst of `burst_bits`.
    pub fn new(rate_bps: u64, burst_bits: u64, mode: Mode) -> Limiter {
        let rate = rate_bps.max(1) as u128;
        let ns_per_byte = ((8u128 * 1_000_000_000u128) << 32) / rate;
        let tolerance_ns = (burst_bits as u128 * 1_000_000_000 / rate).min(u64::MAX as u128) as u64;
        Limiter {
            rate_bps,
            burst_bits,
            mode,
            ns_per_byte: ns_per_byte.min(u64::MAX as u128) as u64,
            tolerance_ns,
            queue_ns: match mode {
                Mode::Shape => SHAPE_QUEUE_NS,
                Mode::Police => 0,
            },
            tat: AtomicU64::new(0),
            counters: LimiterCounters::default(),
        }
    }

    /// Whether two limiters have the same configuration.
    pub fn same_limits(&self, other: &Limiter) -> bool {
        (self.rate_bps, self.burst_bits, self.mode)
            == (other.rate_bps, other.burst_bits, other.mode)
    }

    /// Decides for a packet of `len` bytes at `now_ns` and counts it.
    #[inline]
    pub fn admit(&self, len: u32, now_ns: u64) -> Admit {
        let cost = ((len as u128 * self.ns_per_byte as u128) >> 32) as u64;
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now_ns);
            let wait = (start - now_ns).saturating_sub(self.tolerance_ns);
            if wait > self.queue_ns {
                add(&self.counters.dropped_packets, 1);
                add(&self.counters.dropped_bytes, len as u64);
                return Admit::Drop;
            }
            match self.tat.compare_exchange_weak(
                tat,
                start + cost,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return if wait == 0 {
                        add(&self.counters.conform_packets, 1);
                        add(&self.counters.conform_bytes, len as u64);
                        Admit::Conform
                    } else {
                        add(&self.counters.queued_packets, 1);
                        add(&self.counters.queued_bytes, len as u64);
                        Admit::Delay(now_ns + wait)
                    };
                }
                Err(current) => tat = current,
            }
        }
    }

    pub fn snapshot(&self) -> LimiterSnapshot {
        let c = &self.counters;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LimiterSnapshot {
            conform_packets: r(&c.conform_packets),
            conform_bytes: r(&c.conform_bytes),
            queued_packets: r(&c.queued_packets),
            queued_bytes: r(&c.queued_bytes),
            dropped_packets: r(&c.dropped_packets),
            dropped_bytes: r(&c.dropped_bytes),
        }
    }
}

#[inline(always)]
fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// A pod's limiters.
#[derive(Debug, Clone, Default)]
pub struct PodLimits {
    /// Traffic to the pod.
    pub ingress: Option<Arc<Limiter>>,
    /// Traffic from the pod.
    pub egress: Option<Arc<Limiter>>,
    /// "namespace/name", for counters and the API.
    pub pod: Arc<str>,
}

/// Bits of the prefilter: a set bit for every limited address's hash.
const FILTER_BITS: usize = 1 << 20;

/// Limits by pod address, with a prefilter so that packets of unlimited
/// addresses cost a bit test, not a map lookup.
#[derive(Clone)]
pub struct BandwidthTable {
    pub pods: ShardedMap<(FamilyNum, u128), PodLimits>,
    filter: Arc<[u64]>,
}

impl Default for BandwidthTable {
    fn default() -> Self {
        BandwidthTable {
            pods: ShardedMap::new(),
            filter: Arc::from(vec![0u64; 0]),
        }
    }
}

#[inline(always)]
fn filter_bit(family: FamilyNum, addr: u128) -> usize {
    let x = (addr as u64) ^ ((addr >> 64) as u64).rotate_left(17) ^ family as u64;
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 44) as usize & (FILTER_BITS - 1)
}

impl BandwidthTable {
    /// A table of these pods' limits.
    pub fn new(pods: ShardedMap<(FamilyNum, u128), PodLimits>) -> BandwidthTable {
        let mut filter = vec![0u64; FILTER_BITS / 64];
        for ((family, addr), _) in pods.iter() {
            let b = filter_bit(*family, *addr);
            filter[b / 64] |= 1 << (b % 64);
        }
        BandwidthTable {
            pods,
            filter: Arc::from(filter),
        }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.filter.is_empty()
    }

    /// The limits of the pod with this address, if any.
    #[inline]
    pub fn get(&self, family: FamilyNum, addr: u128) -> Option<&PodLimits> {
        let b = filter_bit(family, addr);
        let word = *self.filter.get(b / 64)?;
        if word & (1 << (b % 64)) == 0 {
            return None;
        }
        self.pods.get(&(family, addr))
    }

    /// Every pod's counters: (pod, ingress, egress).
    pub fn counters(&self) -> Vec<(String, Option<LimiterSnapshot>, Option<LimiterSnapshot>)> {
        let mut seen = std::collections::BTreeMap::new();
        for (_, l) in self.pods.iter() {
            seen.entry(l.pod.to_string()).or_insert_with(|| {
                (
                    l.ingress.as_ref().map(|x| x.snapshot()),
                    l.egress.as_ref().map(|x| x.snapshot()),
                )
            });
        }
        seen.into_iter().map(|(k, (i, e))| (k, i, e)).collect()
    }
}

impl core::fmt::Debug for BandwidthTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BandwidthTable")
            .field("pods", &self.pods.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `len`-byte packets as fast as offered (every `gap_ns`) for
    /// `seconds` and returns the bits that conformed or were queued.
    fn offered(l: &Limiter, len: u32, gap_ns: u64, seconds: u64) -> u64 {
        let mut sent = 0;
        let mut now = 1_000_000_000;
        let end = now + seconds * 1_000_000_000;
        while now < end {
            if l.admit(len, now) != Admit::Drop {
                sent += len as u64 * 8;
            }
            now += gap_ns;
        }
        sent
    }

    #[test]
    fn police_holds_the_rate_from_1_mbit_to_10_gbit() {
        for rate in [1_000_000u64, 100_000_000, 10_000_000_000] {
            let burst = rate / 100; // 10 ms
            let l = Limiter::new(rate, burst, Mode::Police);
            // Offer twice the rate in 1500-byte packets.
            let gap = 1500 * 8 * 1_000_000_000 / (2 * rate);
            let secs = 2;
            let sent = offered(&l, 1500, gap.max(1), secs);
            let want = rate * secs + burst;
            let err = (sent as f64 - want as f64).abs() / want as f64;
            assert!(err < 0.02, "rate {rate}: sent {sent} bits, want {want}");
        }
    }

    #[test]
    fn burst_passes_at_once_then_the_rate() {
        let l = Limiter::new(8_000_000, 80_000, Mode::Police); // 1 MB/s, 10 kB burst
        let now = 5_000_000_000;
        let mut passed = 0;
        for _ in 0..100 {
            if l.admit(1000, now) == Admit::Conform {
                passed += 1;
            }
        }
        // Ten packets of burst, plus the one that starts the schedule.
        assert!((10..=11).contains(&passed), "{passed}");
        // A millisecond later, one more kilobyte's worth.
        assert_eq!(l.admit(1000, now + 1_000_000), Admit::Conform);
        assert_eq!(l.admit(1000, now + 1_000_000), Admit::Drop);
    }

    #[test]
    fn shaping_delays_up_to_the_queue_then_drops() {
        let l = Limiter::new(8_000_000, 8_000, Mode::Shape); // 1 ms per kB
        let now = 1_000_000_000;
        let mut delays = Vec::new();
        let mut drops = 0;
        for _ in 0..60 {
            match l.admit(1000, now) {
                Admit::Delay(t) => delays.push(t - now),
                Admit::Drop => drops += 1,
                Admit::Conform => {}
            }
        }
        assert!(!delays.is_empty());
        assert!(delays.windows(2).all(|w| w[1] > w[0]), "paced in order");
        assert!(*delays.last().unwrap() <= SHAPE_QUEUE_NS);
        assert!(drops > 0, "beyond 25 ms of queue, drops");
        let s = l.snapshot();
        assert_eq!(s.queued_packets as usize, delays.len());
        assert_eq!(s.dropped_packets, drops);
    }

    #[test]
    fn the_aggregate_rate_holds_across_threads() {
        let l = Arc::new(Limiter::new(80_000_000, 80_000, Mode::Police));
        let start = 1_000_000_000u64;
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let l = l.clone();
                std::thread::spawn(move || {
                    let mut sent = 0u64;
                    // Each thread offers the full rate: 4x in all.
                    let mut now = start + t;
                    while now < start + 1_000_000_000 {
                        if l.admit(1000, now) != Admit::Drop {
                            sent += 8000;
                        }
                        now += 100_000;
                    }
                    sent
                })
            })
            .collect();
        let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let want = 80_000_000 + 80_000;
        let err = (total as f64 - want as f64).abs() / want as f64;
        assert!(err < 0.02, "total {total}, want {want}");
    }

    #[test]
    fn table_prefilter_and_lookup() {
        let mut pods = ShardedMap::new();
        let lim = Arc::new(Limiter::new(1_000_000, 10_000, Mode::Shape));
        pods.insert(
            (4, 0x0a00_0001),
            PodLimits {
                ingress: Some(lim),
                egress: None,
                pod: Arc::from("ns/a"),
            },
        );
        let t = BandwidthTable::new(pods);
        assert!(t.get(4, 0x0a00_0001).is_some());
        assert!(t.get(4, 0x0a00_0002).is_none());
        assert!(t.get(6, 0x0a00_0001).is_none());
        assert!(BandwidthTable::default().get(4, 0x0a00_0001).is_none());
        assert_eq!(t.counters().len(), 1);
    }
}
