//! A token bucket, owned by one worker (ICMP error rate limiting, later
//! per-pod shaping).

/// Tokens refill continuously at `rate` per second up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_sec: u64,
    burst: u64,
    /// Tokens scaled by 1e9 so that refills at nanosecond steps are exact.
    tokens_nano: u64,
    last_ns: u64,
}

const NANO: u64 = 1_000_000_000;

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_sec: u64, burst: u64) -> TokenBucket {
        TokenBucket {
            rate_per_sec,
            burst,
            tokens_nano: burst.saturating_mul(NANO),
            last_ns: 0,
        }
    }

    /// Changes the rate and burst, keeping the tokens already earned (capped).
    pub fn set(&mut self, rate_per_sec: u64, burst: u64) {
        self.rate_per_sec = rate_per_sec;
        self.burst = burst;
        self.tokens_nano = self.tokens_nano.min(burst.saturating_mul(NANO));
    }

    fn refill(&mut self, now_ns: u64) {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        let cap = self.burst.saturating_mul(NANO);
        let add = elapsed.saturating_mul(self.rate_per_sec);
        self.tokens_nano = self.tokens_nano.saturating_add(add).min(cap);
    }

    /// Takes `n` tokens if there are that many.
    pub fn take(&mut self, now_ns: u64, n: u64) -> bool {
        self.refill(now_ns);
        let need = n.saturating_mul(NANO);
        if self.tokens_nano >= need {
            self.tokens_nano -= need;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(1000, 5);
        let t0 = 1_000_000;
        assert_eq!((0..10).filter(|_| b.take(t0, 1)).count(), 5, "the burst");
        assert!(!b.take(t0 + 500_000, 1), "half a token is not enough");
        assert!(b.take(t0 + 1_000_000, 1), "one token a millisecond");
        // One second later the bucket is full again, not over-full.
        assert_eq!((0..10).filter(|_| b.take(t0 + 2 * NANO, 1)).count(), 5);
    }

    #[test]
    fn clock_going_back_does_not_mint_tokens() {
        let mut b = TokenBucket::new(10, 1);
        assert!(b.take(5 * NANO, 1));
        assert!(!b.take(4 * NANO, 1));
        assert!(!b.take(5 * NANO, 1));
        assert!(b.take(5 * NANO + NANO / 10, 1));
    }
}
