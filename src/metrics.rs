//! The node's metrics, exposed at `GET /metrics` in the OpenMetrics text format via `prometheus-client`.
//!
//! Counters and gauges are lock-free atomics; the hot paths call [`inc`] / [`add`] and never block. Counter
//! names appear with Prometheus' `_total` suffix (e.g. `switchboard_deliveries_total`).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

macro_rules! metrics {
    ($( $(#[doc = $doc:literal])* $kind:ident $field:ident = $name:literal ),* $(,)?) => {
        /// All metrics of one node.
        pub struct Metrics {
            $( $(#[doc = $doc])* pub $field: metrics!(@type $kind), )*
            /// Time to load a session from the store (successful loads), in seconds.
            pub session_resolve_seconds: Histogram,
            registry: Registry,
        }

        impl Default for Metrics {
            fn default() -> Self {
                let mut registry = Registry::with_prefix("switchboard");
                $(
                    let $field = <metrics!(@type $kind)>::default();
                    registry.register($name, concat!($($doc),*).trim(), $field.clone());
                )*
                // 100 µs to ~3 s in ×2 steps: local Redis answers in well under a millisecond.
                let session_resolve_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
                registry.register(
                    "session_resolve_seconds",
                    "Time to load a session from the store (successful loads).",
                    session_resolve_seconds.clone(),
                );
                Metrics { $( $field, )* session_resolve_seconds, registry }
            }
        }
    };
    (@type counter) => { Counter };
    (@type gauge) => { Gauge };
}

metrics! {
    /// Open WebSocket connections.
    gauge connections = "connections",
    /// WebSocket connections accepted since start.
    counter connections_total = "connections",
    /// Established WAMP sessions.
    gauge sessions = "sessions",
    /// Topics with at least one local subscriber.
    gauge topics = "topics",
    /// Local subscriptions (session × topic).
    gauge subscriptions = "subscriptions",
    /// Inbound WAMP messages.
    counter messages_in_total = "messages_in",
    /// Publications accepted from clients and the library.
    counter publishes_total = "publishes",
    /// Bytes of publications queued between publishers and subscribers' outbound queues (estimated).
    gauge publish_backlog_bytes = "publish_backlog_bytes",
    /// Client publishes refused with `switchboard.error.overloaded` because the backlog was full.
    counter publishes_overloaded_total = "publishes_overloaded",
    /// EVENT frames queued for subscribers.
    counter deliveries_total = "deliveries",
    /// EVENT frames dropped because a subscriber's outbound queue was full.
    counter drops_slow_consumer_total = "drops_slow_consumer",
    /// Connections closed for not reading fast enough.
    counter slow_consumer_closes_total = "slow_consumer_closes",
    /// Inbound messages refused as malformed or out of protocol.
    counter protocol_errors_total = "protocol_errors",
    /// Connections closed for exceeding the inbound message rate.
    counter rate_limited_closes_total = "rate_limited_closes",
    /// Procedure calls handled.
    counter calls_total = "calls",
    /// Procedure calls answered with an error.
    counter call_errors_total = "call_errors",
    /// Sessions found invalid: tampered or wrong-key cookies, unknown or revoked sessions, bad fields.
    counter invalid_sessions_total = "invalid_sessions",
    /// Session loads from the store that succeeded.
    counter session_loads_total = "session_loads",
    /// Session loads that failed after every retry.
    counter session_store_errors_total = "session_store_errors",
    /// Upgrades refused: 401 unauthenticated, 403 foreign origin, 503 store unavailable.
    counter upgrades_refused_total = "upgrades_refused",
    /// Publications handed to Redis for other nodes.
    counter backplane_published_total = "backplane_published",
    /// Publications that could not be handed to Redis (backplane down or PUBLISH failed).
    counter backplane_publish_errors_total = "backplane_publish_errors",
    /// Publications received from other nodes (after de-duplication).
    counter backplane_received_total = "backplane_received",
    /// Malformed or foreign-version messages received on the backplane.
    counter backplane_malformed_total = "backplane_malformed",
    /// Pub/sub reconnections.
    counter backplane_reconnects_total = "backplane_reconnects",
    /// Pub/sub subscriptions found wedged by the inbox probe and rebuilt.
    counter backplane_wedged_total = "backplane_wedged",
    /// Registry writes that failed (the registry is rebuilt when Redis answers again).
    counter registry_errors_total = "registry_errors",
    /// Full re-registrations of this node's sessions (after Redis lost them or was unreachable).
    counter registry_rebuilds_total = "registry_rebuilds",
}

impl Metrics {
    /// Renders every metric in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        encode(&mut out, &self.registry).expect("encoding metrics into a String");
        out
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics { .. }")
    }
}

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Shorthand: add one to a counter.
pub fn inc(c: &Counter) {
    c.inc();
}

/// Shorthand: add `n` to a counter.
pub fn inc_by(c: &Counter, n: u64) {
    c.inc_by(n);
}

/// Shorthand: move a gauge by `delta`.
pub fn add(g: &Gauge, delta: i64) {
    g.inc_by(delta);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openmetrics_text() {
        let m = Metrics::default();
        inc(&m.publishes_total);
        add(&m.connections, 2);
        add(&m.connections, -1);
        m.session_resolve_seconds.observe(0.0004);
        let text = m.render();
        assert!(text.contains("# TYPE switchboard_publishes counter\nswitchboard_publishes_total 1\n"), "{text}");
        assert!(text.contains("switchboard_connections 1\n"), "{text}");
        assert!(text.contains("# HELP switchboard_connections Open WebSocket connections."), "{text}");
        assert!(text.contains("switchboard_session_resolve_seconds_count 1\n"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
