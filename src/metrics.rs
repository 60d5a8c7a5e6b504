//! Process-wide counters and gauges, rendered in the Prometheus text format at `GET /metrics`.
//!
//! Plain atomics: every hot path increments with `Relaxed` ordering, so counting costs no lock.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

macro_rules! metrics {
    ($( $(#[doc = $doc:literal])* $kind:ident $name:ident ),* $(,)?) => {
        /// All metrics of one node.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $( $(#[doc = $doc])* pub $name: metrics!(@type $kind), )*
        }

        impl Metrics {
            /// Renders every metric in the Prometheus text exposition format.
            pub fn render(&self) -> String {
                let mut out = String::new();
                $(
                    let help = concat!($($doc),*).trim();
                    let kind = stringify!($kind);
                    let _ = writeln!(out, "# HELP switchboard_{} {}", stringify!($name), help);
                    let _ = writeln!(out, "# TYPE switchboard_{} {}", stringify!($name), kind);
                    let _ = writeln!(out, "switchboard_{} {}", stringify!($name), self.$name.load(Ordering::Relaxed));
                )*
                out
            }
        }
    };
    (@type counter) => { AtomicU64 };
    (@type gauge) => { AtomicI64 };
}

metrics! {
    /// Open WebSocket connections.
    gauge connections,
    /// WebSocket connections accepted since start.
    counter connections_total,
    /// Established WAMP sessions.
    gauge sessions,
    /// Topics with at least one local subscriber.
    gauge topics,
    /// Local subscriptions (session × topic).
    gauge subscriptions,
    /// Inbound WAMP messages.
    counter messages_in_total,
    /// Publications accepted from clients and the library.
    counter publishes_total,
    /// EVENT frames queued for subscribers.
    counter deliveries_total,
    /// EVENT frames dropped because a subscriber's outbound queue was full.
    counter drops_slow_consumer_total,
    /// Connections closed for not reading fast enough.
    counter slow_consumer_closes_total,
    /// Inbound messages refused as malformed or out of protocol.
    counter protocol_errors_total,
    /// Connections closed for exceeding the inbound message rate.
    counter rate_limited_closes_total,
    /// Procedure calls handled.
    counter calls_total,
    /// Procedure calls answered with an error.
    counter call_errors_total,
    /// Sessions found invalid: tampered or wrong-key cookies, unknown or revoked sessions, bad fields.
    counter invalid_sessions_total,
    /// Session loads from the store that succeeded.
    counter session_loads_total,
    /// Total time spent in successful session loads, in microseconds (divide by session_loads_total).
    counter session_resolve_micros_total,
    /// Session loads that failed after every retry.
    counter session_store_errors_total,
    /// Upgrades refused: 401 unauthenticated, 403 foreign origin, 503 store unavailable.
    counter upgrades_refused_total,
    /// Publications handed to Redis for other nodes.
    counter backplane_published_total,
    /// Publications that could not be handed to Redis (backplane down or PUBLISH failed).
    counter backplane_publish_errors_total,
    /// Publications received from other nodes (after de-duplication).
    counter backplane_received_total,
    /// Malformed or foreign-version messages received on the backplane.
    counter backplane_malformed_total,
    /// Pub/sub reconnections.
    counter backplane_reconnects_total,
    /// Pub/sub subscriptions found wedged by the inbox probe and rebuilt.
    counter backplane_wedged_total,
    /// Registry writes that failed (the registry is rebuilt when Redis answers again).
    counter registry_errors_total,
    /// Full re-registrations of this node's sessions (after Redis lost them or was unreachable).
    counter registry_rebuilds_total,
}

/// Shorthand: add one to a counter.
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Shorthand: move a gauge by `delta`.
pub fn add(g: &AtomicI64, delta: i64) {
    g.fetch_add(delta, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        inc(&m.publishes_total);
        add(&m.connections, 2);
        let text = m.render();
        assert!(text.contains("# TYPE switchboard_publishes_total counter\nswitchboard_publishes_total 1\n"));
        assert!(text.contains("switchboard_connections 2\n"));
        assert!(text.contains("# HELP switchboard_connections Open WebSocket connections."));
    }
}
