//! The generator's clock: nanoseconds since the clock was made, from the
//! monotonic clock (`Instant`, read through the vDSO: no system call).
//! Transmit times in marks and receive times come from one clock, so
//! latency needs no synchronisation.

use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
        }
    }

    #[inline(always)]
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}
