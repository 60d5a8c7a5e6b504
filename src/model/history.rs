//! Event history (WAMP advanced profile, "Event History"): what a `[[history]]` rule keeps of one topic, and one
//! kept event.

use std::time::Duration;

use super::Publication;

/// How much of one topic's history to keep: the newest `size` events, none older than `ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    /// Events kept per topic.
    pub size: usize,
    /// Age after which an event is dropped.
    pub ttl: Duration,
}

/// One kept event: the publication as it was published, and when it was kept.
#[derive(Debug)]
pub struct StoredEvent {
    /// The publication (filters included).
    pub publication: Publication,
    /// When it was kept, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}
