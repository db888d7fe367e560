//! The generator: several compiled streams interleaved by weight, filling
//! bursts of packets from a pool cache.
//!
//! Reads: the streams. Writes: packets appended to the caller's batch.
//! Allocates nothing per packet (buffers come from the caller's
//! `PoolCache`, the batch is an `ArrayVec`).

use crate::field::Rng;
use crate::spec::{interleave, SpecError, StreamSpec};
use crate::stream::Stream;
use sluice_dataplane::buf::{Batch, PoolCache};

pub struct Generator {
    streams: Vec<Stream>,
    /// Stream indices in sending order, one cycle of the weights.
    pattern: Box<[u16]>,
    cursor: usize,
    rng: Rng,
}

impl Generator {
    /// Compiles the streams (ids are their positions).
    pub fn new(specs: &[StreamSpec], seed: u64) -> Result<Generator, SpecError> {
        if specs.is_empty() {
            return Err(SpecError("no stream to send".into()));
        }
        if specs.len() > u16::MAX as usize {
            return Err(SpecError(format!("{} streams; at most 65535", specs.len())));
        }
        let streams = specs
            .iter()
            .enumerate()
            .map(|(i, s)| Stream::compile(i as u16, s))
            .collect::<Result<Vec<_>, _>>()?;
        let mix: Vec<(u32, u32)> = streams.iter().map(|s| (s.id as u32, s.weight)).collect();
        let g = mix.iter().fold(0, |g, (_, w)| gcd(g, *w));
        let mix: Vec<(u32, u32)> = mix.iter().map(|(i, w)| (*i, w / g)).collect();
        let total: u64 = mix.iter().map(|(_, w)| *w as u64).sum();
        if total > 1 << 20 {
            return Err(SpecError(format!(
                "stream weights make a cycle of {total} packets; keep their sum (after dividing by their common factor) under 1048576"
            )));
        }
        let pattern: Vec<u16> = interleave(&mix).into_iter().map(|i| i as u16).collect();
        Ok(Generator {
            streams,
            pattern: pattern.into_boxed_slice(),
            cursor: 0,
            rng: Rng::new(seed),
        })
    }

    pub fn streams(&self) -> &[Stream] {
        &self.streams
    }

    /// Mean frame size over one cycle of the streams' first sizes (for
    /// converting a bit rate into a packet rate).
    pub fn mean_size(&self) -> f64 {
        let mut s = self.clone_for_probe();
        let n = 4096.max(s.pattern.len());
        let pool = sluice_dataplane::buf::PacketPool::new("probe", 64);
        let mut cache = pool.cache(64);
        let mut total = 0u64;
        let mut pkt = cache.alloc().expect("probe pool");
        for _ in 0..n {
            let i = s.pattern[s.cursor] as usize;
            s.cursor = (s.cursor + 1) % s.pattern.len();
            total += s.streams[i].emit(&mut pkt, &mut s.rng, 0) as u64;
        }
        cache.free(pkt);
        total as f64 / n as f64
    }

    fn clone_for_probe(&self) -> Generator {
        Generator {
            streams: self.streams.clone(),
            pattern: self.pattern.clone(),
            cursor: 0,
            rng: self.rng.clone(),
        }
    }

    /// Appends up to `n` packets to `batch` (fewer if it fills or the pool
    /// runs dry), marked with `tx_ns`; returns (packets, bytes).
    #[inline]
    pub fn fill(
        &mut self,
        cache: &mut PoolCache,
        batch: &mut Batch,
        n: usize,
        tx_ns: u64,
    ) -> (usize, usize) {
        let first = batch.len();
        let n = n.min(batch.remaining_capacity());
        for _ in 0..n {
            let Some(pkt) = cache.alloc() else { break };
            batch.push(pkt);
        }
        let got = batch.len() - first;
        let fresh = &mut batch[first..];
        let mut bytes = 0;
        if self.streams.len() == 1 {
            bytes = self.streams[0].emit_burst(fresh, &mut self.rng, tx_ns);
        } else {
            // Runs of one stream go through it together.
            let mut at = 0;
            while at < got {
                let i = self.pattern[self.cursor] as usize;
                let mut run = 0;
                while at + run < got && self.pattern[self.cursor] as usize == i {
                    run += 1;
                    self.cursor += 1;
                    if self.cursor == self.pattern.len() {
                        self.cursor = 0;
                    }
                }
                bytes += self.streams[i].emit_burst(&mut fresh[at..at + run], &mut self.rng, tx_ns);
                at += run;
            }
        }
        (got, bytes)
    }

    /// Packets generated per stream so far.
    pub fn sent(&self) -> impl Iterator<Item = u64> + '_ {
        self.streams.iter().map(|s| s.seq)
    }

    pub fn total_sent(&self) -> (u64, u64) {
        self.streams
            .iter()
            .fold((0, 0), |(p, b), s| (p + s.seq, b + s.bytes))
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
