//! Counters, the latency histogram, and the human and JSON summaries.

use std::fmt::Write;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Latency histogram in microseconds, 1 µs to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Counters shared by the tasks of a run.
#[derive(Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    pub errors: AtomicU64,
}

impl Counters {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// The outcome of a run.
pub struct Report {
    pub scenario: &'static str,
    pub params: Value,
    /// Time traffic flowed (or connections were opened, for `connect`).
    pub elapsed: Duration,
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub errors: u64,
    /// What the latency measures: "delivery" or "handshake".
    pub latency_of: &'static str,
    pub latency: Histogram<u64>,
    pub extra: Vec<(&'static str, Value)>,
    /// Sentences a reader must not miss (a result capped by a flag, the first connection error).
    pub notes: Vec<String>,
}

/// How close (as a fraction of the cap) an achieved rate must come to a rate flag to count as capped by it.
const RATE_CAP_TOLERANCE: f64 = 0.03;

/// "rate-limited by --rate 1000/s; …" when `achieved_per_s` is within [`RATE_CAP_TOLERANCE`] of the cap set by
/// `flag` (0 = no cap): the figure then measures the flag, not the server.
pub fn rate_cap_note(flag: &str, cap: u64, achieved_per_s: f64) -> Option<String> {
    (cap > 0 && achieved_per_s >= cap as f64 * (1.0 - RATE_CAP_TOLERANCE)).then(|| {
        format!("rate-limited by {flag} {cap}/s; the server may accept more (raise {flag}, or {flag} 0 for no cap)")
    })
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Report {
    fn percentiles(&self) -> Value {
        let h = &self.latency;
        json!({
            "count": h.len(),
            "p50_ms": ms(h.value_at_quantile(0.50)),
            "p90_ms": ms(h.value_at_quantile(0.90)),
            "p99_ms": ms(h.value_at_quantile(0.99)),
            "p999_ms": ms(h.value_at_quantile(0.999)),
            "max_ms": ms(h.max()),
        })
    }

    /// Machine-readable summary.
    pub fn to_json(&self) -> Value {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut out = json!({
            "scenario": self.scenario,
            "params": self.params,
            "elapsed_s": secs,
            "sent": self.sent,
            "expected": self.expected,
            "delivered": self.delivered,
            "lost": self.expected.saturating_sub(self.delivered),
            "errors": self.errors,
            "sent_per_s": self.sent as f64 / secs,
            "delivered_per_s": self.delivered as f64 / secs,
            "latency": self.latency_of,
            "latency_ms": self.percentiles(),
        });
        for (k, v) in &self.extra {
            out[*k] = v.clone();
        }
        if !self.notes.is_empty() {
            out["notes"] = json!(self.notes);
        }
        out
    }

    /// Human summary.
    pub fn human(&self) -> String {
        let j = self.to_json();
        let l = &j["latency_ms"];
        let mut s = String::new();
        let _ = writeln!(s, "scenario   {}  {}", self.scenario, self.params);
        let _ = writeln!(s, "elapsed    {:.1} s", j["elapsed_s"].as_f64().unwrap_or(0.0));
        let _ = writeln!(
            s,
            "messages   sent {}  expected {}  delivered {}  lost {}  errors {}",
            self.sent, self.expected, self.delivered, j["lost"], self.errors
        );
        let _ = writeln!(
            s,
            "rates      sent {:.0}/s  delivered {:.0}/s",
            j["sent_per_s"].as_f64().unwrap_or(0.0),
            j["delivered_per_s"].as_f64().unwrap_or(0.0)
        );
        let _ = writeln!(
            s,
            "{:<10} p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  (n={})",
            self.latency_of,
            l["p50_ms"].as_f64().unwrap_or(0.0),
            l["p90_ms"].as_f64().unwrap_or(0.0),
            l["p99_ms"].as_f64().unwrap_or(0.0),
            l["p999_ms"].as_f64().unwrap_or(0.0),
            l["max_ms"].as_f64().unwrap_or(0.0),
            l["count"]
        );
        for (k, v) in &self.extra {
            let _ = writeln!(s, "{k:<10} {v}");
        }
        for note in &self.notes {
            let _ = writeln!(s, "note       {note}");
        }
        s
    }
}

/// Draws a progress bar on stderr (only when it is a terminal) until the returned guard is dropped.
pub fn progress(label: &'static str, total: Duration, counters: Arc<Counters>) -> Option<tokio::task::JoinHandle<()>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let started = Instant::now();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let done = (started.elapsed().as_secs_f64() / total.as_secs_f64()).min(1.0);
            let width = 30;
            let filled = (done * width as f64) as usize;
            eprint!(
                "\r{label} [{}{}] {:>5.1}s  sent {}  delivered {}  errors {}   ",
                "#".repeat(filled),
                " ".repeat(width - filled),
                started.elapsed().as_secs_f64(),
                Counters::get(&counters.sent),
                Counters::get(&counters.delivered),
                Counters::get(&counters.errors)
            );
        }
    }))
}

/// Stops a progress bar and clears its line.
pub fn end_progress(handle: Option<tokio::task::JoinHandle<()>>) {
    if let Some(h) = handle {
        h.abort();
        eprintln!();
    }
}

/// CPU seconds (user + system) a local process has used, from /proc.
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Linux reports clock ticks; USER_HZ is 100 on every Linux ABI.
    Some((utime + stime) / 100.0)
}

/// Resident memory of a local process in KiB, from /proc.
pub fn proc_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Server CPU over a window, for `--server-pid`.
pub struct CpuWindow {
    pid: Option<u32>,
    start: Option<f64>,
}

impl CpuWindow {
    pub fn start(pid: Option<u32>) -> CpuWindow {
        CpuWindow { pid, start: pid.and_then(proc_cpu_seconds) }
    }

    /// `server_cpu_s` and, given deliveries, `server_cpu_s_per_million_deliveries`.
    pub fn finish(&self, deliveries: u64) -> Vec<(&'static str, Value)> {
        let (Some(pid), Some(start)) = (self.pid, self.start) else { return Vec::new() };
        let Some(end) = proc_cpu_seconds(pid) else { return Vec::new() };
        let used = end - start;
        let mut out = vec![("server_cpu_s", json!(used))];
        if deliveries > 0 {
            out.push(("server_cpu_s_per_million_deliveries", json!(used * 1e6 / deliveries as f64)));
        }
        if let Some(rss) = proc_rss_kib(pid) {
            out.push(("server_rss_kib", json!(rss)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_at_its_cap_is_reported_as_capped_by_the_flag() {
        let note = rate_cap_note("--rate", 1000, 995.0).expect("capped");
        assert_eq!(
            note,
            "rate-limited by --rate 1000/s; the server may accept more (raise --rate, or --rate 0 for no cap)"
        );
        assert!(rate_cap_note("--rate", 1000, 1000.4).is_some());
        assert_eq!(rate_cap_note("--rate", 1000, 600.0), None, "well below the cap: the server's figure");
        assert_eq!(rate_cap_note("--rate", 0, 6000.0), None, "no cap");
    }

    #[test]
    fn notes_are_printed_and_in_the_json() {
        let report = Report {
            scenario: "connect",
            params: json!({}),
            elapsed: Duration::from_secs(1),
            sent: 1000,
            expected: 1000,
            delivered: 1000,
            errors: 0,
            latency_of: "handshake",
            latency: histogram(),
            extra: Vec::new(),
            notes: rate_cap_note("--rate", 1000, 999.0).into_iter().collect(),
        };
        assert!(report.human().contains("note       rate-limited by --rate 1000/s"), "{}", report.human());
        assert_eq!(report.to_json()["notes"][0], json!(report.notes[0]));
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(proc_cpu_seconds(me).is_some());
        assert!(proc_rss_kib(me).unwrap() > 0);
    }
}
