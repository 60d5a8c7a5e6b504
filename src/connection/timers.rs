//! A connection's periodic work on one timer: ping (and the idle check), the web session's keep-alive and its
//! revalidation each come due on their own interval, and one `run_later` is set for whichever is next.
//! One timer instead of three keeps two timer futures per idle socket off the heap and the actor context's
//! item list inline.

use std::time::{Duration, Instant};

/// What came due at a tick.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Due {
    /// Ping the client (and close it if it has been silent past `websocket.idle_timeout`).
    pub ping: bool,
    /// Refresh the web session's TTL in the store.
    pub keepalive: bool,
    /// Reload the web session (logout, revocation, role changes).
    pub revalidate: bool,
}

/// One periodic job: how often, and when next.
#[derive(Debug, Clone, Copy)]
struct Every {
    interval: Duration,
    next: Instant,
}

impl Every {
    fn new(interval: Duration, now: Instant) -> Every {
        Every { interval, next: now + interval }
    }

    /// Whether it is due at `now`; if so, its next time is one interval later (never in the past, so a late
    /// tick does not run it several times in a row).
    fn take(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = (self.next + self.interval).max(now + self.interval / 2);
        true
    }
}

/// The three schedules of one connection.
#[derive(Debug, Clone)]
pub(super) struct Schedule {
    ping: Every,
    keepalive: Option<Every>,
    revalidate: Option<Every>,
}

impl Schedule {
    /// Starts at `now`. Zero intervals (already refused by the configuration) would spin: they are not scheduled.
    pub(super) fn new(now: Instant, ping: Duration, keepalive: Option<Duration>, revalidate: Option<Duration>) -> Self {
        let every = |d: Duration| (!d.is_zero()).then(|| Every::new(d, now));
        Schedule {
            ping: Every::new(ping.max(Duration::from_millis(1)), now),
            keepalive: keepalive.and_then(every),
            revalidate: revalidate.and_then(every),
        }
    }

    /// What is due at `now`, each moved on to its next time.
    pub(super) fn take_due(&mut self, now: Instant) -> Due {
        Due {
            ping: self.ping.take(now),
            keepalive: self.keepalive.as_mut().is_some_and(|e| e.take(now)),
            revalidate: self.revalidate.as_mut().is_some_and(|e| e.take(now)),
        }
    }

    /// When the timer should fire next.
    pub(super) fn next(&self) -> Instant {
        [Some(self.ping), self.keepalive, self.revalidate]
            .into_iter()
            .flatten()
            .map(|e| e.next)
            .min()
            .unwrap_or(self.ping.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn each_job_comes_due_on_its_own_interval() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 15 * S, Some(300 * S), Some(30 * S));
        assert_eq!(s.next(), t0 + 15 * S);
        assert_eq!(s.take_due(t0 + 14 * S), Due::default());
        assert_eq!(s.take_due(t0 + 15 * S), Due { ping: true, ..Due::default() });
        assert_eq!(s.next(), t0 + 30 * S);
        assert_eq!(s.take_due(t0 + 30 * S), Due { ping: true, revalidate: true, keepalive: false });
        let mut keepalives = 0;
        let mut t = t0 + 30 * S;
        while t <= t0 + 300 * S {
            t = s.next();
            keepalives += usize::from(s.take_due(t).keepalive);
        }
        assert_eq!(keepalives, 1, "the keep-alive runs once in its first 300 s");
    }

    #[test]
    fn a_late_tick_runs_a_job_once_and_keeps_its_rhythm() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 10 * S, None, None);
        assert!(s.take_due(t0 + 35 * S).ping, "late by 25 s: due once");
        assert!(!s.take_due(t0 + 35 * S).ping, "not again at the same instant");
        assert!(s.next() > t0 + 35 * S);
    }

    #[test]
    fn without_a_web_session_only_the_ping_is_scheduled() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 15 * S, None, None);
        for k in 1..100 {
            let due = s.take_due(t0 + k * 15 * S);
            assert_eq!(due, Due { ping: true, ..Due::default() });
        }
        let zero = Schedule::new(t0, 15 * S, Some(Duration::ZERO), Some(Duration::ZERO));
        assert_eq!(zero.next(), t0 + 15 * S, "zero intervals are not scheduled");
    }
}
