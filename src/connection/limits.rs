//! Per-connection rate limits: token buckets for inbound messages and bytes.

use std::time::Instant;

/// Token bucket limiting inbound messages (one token each) or bytes (one token per byte).
pub(super) struct RateLimiter {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl RateLimiter {
    pub(super) fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter { tokens: burst, rate, burst, last: Instant::now() }
    }

    /// Takes `cost` tokens; `false` when the client is over its rate.
    pub(super) fn take(&mut self, cost: f64) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}
