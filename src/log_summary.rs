//! Rate-limited warnings for failures that repeat per event: a publish while Redis is down, a session load per
//! socket, a registry round trip. The first failure after a quiet spell is logged at once, with its error;
//! further ones are counted and summarised at most once per [`WINDOW`] ("N publications could not reach Redis
//! in the last 10 s (last error: …)"), and once more when the operation succeeds again. An outage thus costs a
//! handful of lines instead of one per event. This module only formats and rate-limits; callers decide what
//! counts as a failure.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest time between two summaries of the same failure (and so the most often it is logged).
pub const WINDOW: Duration = Duration::from_secs(10);

/// One kind of repeated failure, e.g. "publications could not reach Redis".
pub struct Summary {
    /// The log target: the module that owns the failing operation.
    target: &'static str,
    /// What failed, plural: "publications", "session loads".
    what: &'static str,
    /// Whether a failure was seen since the last success: lets [`Summary::succeeded`] skip the lock on the
    /// (hot) success path.
    failing: AtomicBool,
    state: Mutex<Window>,
}

/// The failures counted since the last line logged.
#[derive(Default)]
struct Window {
    /// When the last line was logged; `None` while quiet.
    since: Option<Instant>,
    /// Failures since then.
    pending: u64,
    /// The last of them.
    last_error: String,
}

impl Summary {
    /// A summary of failures of `what` (plural), logged under `target` (pass `module_path!()`).
    pub const fn new(target: &'static str, what: &'static str) -> Summary {
        Summary {
            target,
            what,
            failing: AtomicBool::new(false),
            state: Mutex::new(Window { since: None, pending: 0, last_error: String::new() }),
        }
    }

    /// Records one failure; logs a WARN when one is due.
    pub fn failed(&self, error: impl Display) {
        if let Some(line) = self.record(Instant::now(), &error.to_string()) {
            log::warn!(target: self.target, "{line}");
        }
    }

    /// Records a success: logs what was still pending, and the next failure is logged at once again.
    pub fn succeeded(&self) {
        if !self.failing.load(Ordering::Relaxed) {
            return;
        }
        if let Some(line) = self.flush(Instant::now()) {
            log::warn!(target: self.target, "{line}");
        }
    }

    // The lock is never held across a panic point that leaves the counts torn; recover the guard.
    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The line to log for a failure at `now`, if one is due.
    fn record(&self, now: Instant, error: &str) -> Option<String> {
        self.failing.store(true, Ordering::Relaxed);
        let mut window = self.lock();
        let Some(since) = window.since else {
            window.since = Some(now);
            let seconds = WINDOW.as_secs();
            return Some(format!(
                "{} could not reach Redis: {error} (further failures are summarised every {seconds} s)",
                self.what
            ));
        };
        window.pending += 1;
        window.last_error = error.to_owned();
        (now.duration_since(since) >= WINDOW).then(|| self.summarise(&mut window, now))
    }

    /// The line for what is pending at a success, if anything is; the summary goes quiet.
    fn flush(&self, now: Instant) -> Option<String> {
        self.failing.store(false, Ordering::Relaxed);
        let mut window = self.lock();
        let line = (window.pending > 0).then(|| self.summarise(&mut window, now));
        window.since = None;
        line
    }

    fn summarise(&self, window: &mut Window, now: Instant) -> String {
        let elapsed = window.since.map(|s| now.duration_since(s).as_secs().max(1)).unwrap_or(WINDOW.as_secs());
        let line = format!(
            "{} {} could not reach Redis in the last {elapsed} s (last error: {})",
            window.pending, self.what, window.last_error
        );
        window.since = Some(now);
        window.pending = 0;
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_failure_is_logged_then_at_most_one_summary_per_window_then_the_rest_on_success() {
        let s = Summary::new(module_path!(), "publications");
        let t0 = Instant::now();
        let first = s.record(t0, "connection refused").expect("the first failure is logged at once");
        assert!(first.starts_with("publications could not reach Redis: connection refused"), "{first}");
        for i in 1..1000u64 {
            let at = t0 + WINDOW * (i as u32) / 1000;
            assert_eq!(s.record(at, "refused"), None, "failure {i} inside the window is only counted");
        }
        let line = s.record(t0 + WINDOW, "broken pipe").expect("a summary once the window is over");
        assert_eq!(line, "1000 publications could not reach Redis in the last 10 s (last error: broken pipe)");
        assert_eq!(s.record(t0 + WINDOW + Duration::from_secs(1), "refused"), None, "a new window began");
        let tail = s.flush(t0 + WINDOW + Duration::from_secs(3)).expect("the pending failure is told on success");
        assert_eq!(tail, "1 publications could not reach Redis in the last 3 s (last error: refused)");
        assert_eq!(s.flush(t0 + WINDOW * 2), None, "nothing pending");
        let again = s.record(t0 + WINDOW * 3, "refused").expect("after a success the next failure is logged at once");
        assert!(again.starts_with("publications could not reach Redis"), "{again}");
    }
}
