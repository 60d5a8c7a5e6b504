//! The node's metrics, exposed at `GET /metrics` in the OpenMetrics text format via `prometheus-client`.
//!
//! Every family has its own name, prefixed `switchboard_`; counters render with OpenMetrics' `_total` suffix
//! (family `connections_accepted`, sample `switchboard_connections_accepted_total`). A family's HELP text is
//! its doc comment below without the final full stop, which the registry adds. The README's metrics table
//! lists every family; `tests/api/metrics.rs` parses the rendering strictly and `tests/metrics/check` runs
//! `promtool check metrics` on a live node.
//!
//! Cost: counters and gauges are lock-free atomics; hot paths call [`inc`] / [`add`] and never block. Closes
//! are one family with a bounded `reason` label ([`CloseReason`]: a label value is never client text); its
//! counters are created at start-up and kept by index, so counting a close takes no lock. Histograms are
//! observed off the per-delivery path only (session loads, registry lookups, backplane publishes).

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Latency buckets of every histogram: 100 µs to ~3.3 s in ×2 steps. A local Redis answers in well under a
/// millisecond; the slowest bucket lies past the longest timeout of what is measured (2 s).
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 16)
}

/// Why a connection closed: the `reason` label of `switchboard_connections_closed_total`. Each connection is
/// counted once, for the first reason that ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The client closed the WebSocket (close frame).
    ClientClose,
    /// The socket ended without a close handshake: reset, EOF or a failed write.
    ConnectionLost,
    /// The client ended its WAMP v2 session with GOODBYE.
    Goodbye,
    /// The client sent ABORT.
    ClientAbort,
    /// No HELLO within `websocket.hello_timeout`.
    HelloTimeout,
    /// Nothing received within `websocket.idle_timeout`.
    IdleTimeout,
    /// HELLO named another realm than `server.realm`.
    NoSuchRealm,
    /// The ticket was refused, or HELLO offered no method this router has.
    AuthenticationFailed,
    /// The session's token (`exp`) ran out.
    TokenExpired,
    /// A WAMP or WebSocket protocol violation (binary frames, bad UTF-8 and bad fragments included).
    ProtocolError,
    /// A message over `websocket.max_message_size`.
    MessageTooBig,
    /// Over the inbound message or byte rate.
    RateLimited,
    /// Past a per-connection limit: too many v1 prefixes, or too many messages waiting for the session store.
    LimitExceeded,
    /// The outbound queue overflowed (`websocket.outbound_queue` / `outbound_bytes`).
    SlowConsumer,
    /// The socket took no bytes for `websocket.write_timeout`.
    WriteTimeout,
    /// The web session was logged out or expired (`session.on_revoked = "close"`).
    SessionRevoked,
    /// The session store failed while a message waited for a session reload.
    SessionStoreUnavailable,
    /// Closed as the user's oldest socket past `session.max_sockets_per_user`.
    TooManySockets,
    /// Disconnected by the application or an operator (push API, `disconnect_user`).
    Kicked,
    /// The node is shutting down.
    Shutdown,
}

impl CloseReason {
    /// Every reason, in declaration order (the index of a reason is its discriminant).
    pub const ALL: [CloseReason; 20] = [
        CloseReason::ClientClose,
        CloseReason::ConnectionLost,
        CloseReason::Goodbye,
        CloseReason::ClientAbort,
        CloseReason::HelloTimeout,
        CloseReason::IdleTimeout,
        CloseReason::NoSuchRealm,
        CloseReason::AuthenticationFailed,
        CloseReason::TokenExpired,
        CloseReason::ProtocolError,
        CloseReason::MessageTooBig,
        CloseReason::RateLimited,
        CloseReason::LimitExceeded,
        CloseReason::SlowConsumer,
        CloseReason::WriteTimeout,
        CloseReason::SessionRevoked,
        CloseReason::SessionStoreUnavailable,
        CloseReason::TooManySockets,
        CloseReason::Kicked,
        CloseReason::Shutdown,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClose => "client_close",
            CloseReason::ConnectionLost => "connection_lost",
            CloseReason::Goodbye => "goodbye",
            CloseReason::ClientAbort => "client_abort",
            CloseReason::HelloTimeout => "hello_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::NoSuchRealm => "no_such_realm",
            CloseReason::AuthenticationFailed => "authentication_failed",
            CloseReason::TokenExpired => "token_expired",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::MessageTooBig => "message_too_big",
            CloseReason::RateLimited => "rate_limited",
            CloseReason::LimitExceeded => "limit_exceeded",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::WriteTimeout => "write_timeout",
            CloseReason::SessionRevoked => "session_revoked",
            CloseReason::SessionStoreUnavailable => "session_store_unavailable",
            CloseReason::TooManySockets => "too_many_sockets",
            CloseReason::Kicked => "kicked",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

impl EncodeLabelValue for CloseReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(self.as_str())
    }
}

/// The labels of `switchboard_connections_closed_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CloseLabels {
    /// Why the connection closed.
    pub reason: CloseReason,
}

macro_rules! metrics {
    ($( $(#[doc = $doc:literal])* $kind:ident $field:ident = $name:literal ),* $(,)?) => {
        /// All metrics of one node.
        pub struct Metrics {
            $( $(#[doc = $doc])* pub $field: metrics!(@type $kind), )*
            /// The counters of `connections_closed`, one per reason, indexed by [`CloseReason`].
            closed_by_reason: [Counter; CloseReason::ALL.len()],
            registry: Registry,
        }

        impl Default for Metrics {
            fn default() -> Self {
                let mut registry = Registry::with_prefix("switchboard");
                $(
                    let $field = metrics!(@new $kind);
                    // The registry ends every HELP text with a full stop of its own.
                    let help = concat!($($doc),*).trim().trim_end_matches('.');
                    registry.register($name, help, $field.clone());
                )*
                let closed_by_reason = std::array::from_fn(|_| Counter::default());
                let mut metrics = Metrics { $( $field, )* closed_by_reason, registry };
                // Every reason is shown from the start (at 0), and counting one takes no lock afterwards.
                metrics.closed_by_reason = CloseReason::ALL
                    .map(|reason| metrics.connections_closed.get_or_create_owned(&CloseLabels { reason }));
                metrics
            }
        }
    };
    (@type counter) => { Counter };
    (@type gauge) => { Gauge };
    (@type histogram) => { Histogram };
    (@type closes) => { Family<CloseLabels, Counter> };
    (@new histogram) => { Histogram::new(latency_buckets()) };
    (@new $kind:ident) => { <metrics!(@type $kind)>::default() };
}

metrics! {
    /// Open WebSocket connections.
    gauge connections = "connections",
    /// WebSocket connections accepted since start.
    counter connections_accepted = "connections_accepted",
    /// WebSocket connections closed, by reason (each connection once, for what ended it first).
    closes connections_closed = "connections_closed",
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
    /// Bytes of frames waiting in connections' outbound queues, not yet handed to their sockets.
    gauge outbound_queue_bytes = "outbound_queue_bytes",
    /// EVENT frames dropped because a subscriber's outbound queue was full.
    counter drops_slow_consumer_total = "drops_slow_consumer",
    /// Inbound messages refused as malformed or out of protocol.
    counter protocol_errors_total = "protocol_errors",
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
    /// Time to load a session from the store (successful loads), in seconds.
    histogram session_resolve_seconds = "session_resolve_seconds",
    /// WebSocket upgrades refused before the socket opened (every `/ws` refusal: 400, 401, 403, 426, 429, 503).
    counter upgrades_refused_total = "upgrades_refused",
    /// Time to answer a client lookup (by session, user, role, count, list), in seconds: the registry round
    /// trip in cluster mode, the local index in embedded mode.
    histogram registry_lookup_seconds = "registry_lookup_seconds",
    /// Publications handed to Redis for other nodes.
    counter backplane_published_total = "backplane_published",
    /// Time from handing a publication to the backplane to Redis acknowledging its PUBLISH, in seconds.
    histogram backplane_publish_seconds = "backplane_publish_seconds",
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
    /// Webhook events the receiver accepted (2xx).
    counter webhooks_delivered_total = "webhooks_delivered",
    /// Webhook attempts that failed (no answer in time, connection refused, or a non-2xx status).
    counter webhook_attempt_errors_total = "webhook_attempt_errors",
    /// Webhook events given up: every attempt failed, or the receiver refused one for good (4xx but 408/429).
    counter webhooks_failed_total = "webhooks_failed",
    /// Webhook events dropped because `webhooks.max_queue` were already waiting.
    counter webhooks_dropped_total = "webhooks_dropped",
}

impl Metrics {
    /// Counts one closed connection.
    pub fn closed(&self, reason: CloseReason) {
        self.closed_by_reason[reason as usize].inc();
    }

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
        assert!(text.contains("# HELP switchboard_connections Open WebSocket connections.\n"), "{text}");
        assert!(text.contains("switchboard_session_resolve_seconds_count 1\n"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn every_family_is_declared_once_with_one_full_stop() {
        let text = Metrics::default().render();
        let mut names = std::collections::HashSet::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).expect("# TYPE name type");
            assert!(names.insert(name), "{name} declared twice:\n{text}");
        }
        let helps: Vec<&str> = text.lines().filter(|l| l.starts_with("# HELP ")).collect();
        assert_eq!(helps.len(), names.len(), "{text}");
        for help in helps {
            assert!(help.ends_with('.') && !help.ends_with(".."), "{help}");
        }
    }

    #[test]
    fn closes_count_by_reason_and_every_reason_shows_from_the_start() {
        for (i, reason) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "ALL is in declaration order");
        }
        let m = Metrics::default();
        m.closed(CloseReason::Goodbye);
        m.closed(CloseReason::Goodbye);
        m.closed(CloseReason::WriteTimeout);
        let text = m.render();
        assert!(text.contains("switchboard_connections_closed_total{reason=\"goodbye\"} 2\n"), "{text}");
        assert!(text.contains("switchboard_connections_closed_total{reason=\"write_timeout\"} 1\n"), "{text}");
        for reason in CloseReason::ALL {
            let label = format!("{{reason=\"{}\"}}", reason.as_str());
            assert_eq!(text.matches(&label).count(), 1, "{label}:\n{text}");
        }
    }
}
