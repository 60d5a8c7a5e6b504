//! Per-connection limits on what a client makes the node do: token buckets for inbound messages and bytes
//! (`websocket.inbound_rate` / `inbound_burst`, `inbound_bytes_rate`), and the calls it has in flight
//! (`websocket.max_pending_calls`). Pure bookkeeping: the connection decides what a breach means (close 1008,
//! or a refused CALL).

use std::time::Instant;

use crate::config::WebSocketSettings;
use crate::wamp::errors::{self, WampError};

/// Token bucket limiting inbound messages (one token each) or bytes (one token per byte).
pub(super) struct RateLimiter {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl RateLimiter {
    /// A full bucket of `burst` tokens, refilled at `rate` tokens per second.
    pub(super) fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter { tokens: burst, rate, burst, last: Instant::now() }
    }

    /// Takes `cost` tokens; `false` when the client is over its rate.
    pub(super) fn take(&mut self, cost: f64) -> bool {
        self.take_at(cost, Instant::now())
    }

    /// [`take`](Self::take) at `now`, refilling for the time since the last take.
    fn take_at(&mut self, cost: f64, now: Instant) -> bool {
        self.tokens =
            (self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// Which inbound rate a message went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum RateExceeded {
    /// `websocket.inbound_rate` (with its burst).
    #[error("message rate limit exceeded")]
    Messages,
    /// `websocket.inbound_bytes_rate` (with its burst).
    #[error("byte rate limit exceeded")]
    Bytes,
}

/// One connection's inbound budgets and the calls it has in flight.
pub(super) struct Limits {
    messages: RateLimiter,
    /// Inbound bytes: parsing is the work a client makes the node do, so it is bounded per socket too.
    bytes: RateLimiter,
    pending_calls: usize,
}

impl Limits {
    /// Full budgets as `ws` sets them, no call in flight.
    pub(super) fn new(ws: &WebSocketSettings) -> Limits {
        Limits {
            messages: RateLimiter::new(f64::from(ws.inbound_rate), f64::from(ws.inbound_burst)),
            bytes: RateLimiter::new(ws.inbound_bytes_rate as f64, ws.inbound_bytes_burst() as f64),
            pending_calls: 0,
        }
    }

    /// Takes one inbound message of `len` bytes from the budgets (the byte budget only if the message budget
    /// allowed it); which rate it is over, if any.
    pub(super) fn admit(&mut self, len: usize) -> Result<(), RateExceeded> {
        if !self.messages.take(1.0) {
            Err(RateExceeded::Messages)
        } else if !self.bytes.take(len as f64) {
            Err(RateExceeded::Bytes)
        } else {
            Ok(())
        }
    }

    /// Refuses another call while `max` are in flight (`switchboard.error.too_many_calls`).
    pub(super) fn check_call(&self, max: usize) -> Result<(), WampError> {
        if self.pending_calls >= max {
            return Err(WampError::new(errors::TOO_MANY_CALLS, format!("at most {max} calls may be in flight")));
        }
        Ok(())
    }

    /// A call was dispatched.
    pub(super) fn call_started(&mut self) {
        self.pending_calls += 1;
    }

    /// A dispatched call answered.
    pub(super) fn call_ended(&mut self) {
        self.pending_calls -= 1;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_at_once_then_refills_at_its_rate() {
        let mut bucket = RateLimiter::new(10.0, 3.0);
        let start = bucket.last;
        assert!((0..3).all(|_| bucket.take_at(1.0, start)), "the burst");
        assert!(!bucket.take_at(1.0, start), "over the burst");
        assert!(bucket.take_at(1.0, start + Duration::from_millis(100)), "one token back after 1/rate");
        assert!(!bucket.take_at(1.0, start + Duration::from_millis(100)));
        assert!(bucket.take_at(3.0, start + Duration::from_secs(60)), "refills up to the burst");
        assert!(!bucket.take_at(1.0, start + Duration::from_secs(60)), "and no further");
    }

    #[test]
    fn a_message_over_either_budget_says_which() {
        let ws = WebSocketSettings { inbound_rate: 1, inbound_burst: 2, inbound_bytes_rate: 10, ..Default::default() };
        let burst = ws.inbound_bytes_burst();
        let mut limits = Limits::new(&ws);
        assert_eq!(limits.admit(burst), Ok(()));
        assert_eq!(limits.admit(1), Err(RateExceeded::Bytes));
        assert_eq!(limits.admit(0), Err(RateExceeded::Messages));
        assert_eq!(RateExceeded::Bytes.to_string(), "byte rate limit exceeded");
    }

    #[test]
    fn calls_are_refused_while_the_most_are_in_flight() {
        let mut limits = Limits::new(&WebSocketSettings::default());
        limits.call_started();
        limits.call_started();
        let refused = limits.check_call(2).unwrap_err();
        assert_eq!(
            (refused.uri.as_ref(), refused.message.as_str()),
            (errors::TOO_MANY_CALLS, "at most 2 calls may be in flight")
        );
        limits.call_ended();
        assert_eq!(limits.check_call(2), Ok(()));
    }
}
