//! Receiver counts checked after an outage: a publication that reaches fewer nodes than the last one on its
//! channel, while other nodes may still be resubscribing, counts as failed (see the backplane's docs).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::cluster::BackplaneError;

/// How long after the subscription comes back a publication that reaches fewer nodes than before the outage
/// counts as failed: other nodes reconnect within their backoff (`cluster.max_backoff`) and a Sentinel poll.
pub(super) fn settle(settings: &crate::config::ClusterSettings) -> Duration {
    settings.max_backoff + Duration::from_millis(1500)
}

/// Channels this node publishes to, with how many subscribers (nodes) each PUBLISH reached last, and the end
/// of the settling window after an outage. Bounded: forgets everything beyond [`REACH_CHANNELS`].
///
/// A window opens when this node's subscription comes back, and again at the first PUBLISH that succeeds after
/// one failed: on a Redis Cluster the subscription may be back long before the dead shard's replica takes over,
/// and the other nodes resubscribe there only then.
#[derive(Default)]
pub(super) struct Reach {
    last: HashMap<String, i64>,
    settling_until: Option<Instant>,
    /// The window's length ([`settle`]).
    settle: Duration,
    /// A PUBLISH failed since the last one that succeeded.
    after_failure: bool,
}

/// Channels whose receiver counts are remembered.
const REACH_CHANNELS: usize = 10_000;

impl Reach {
    /// Receiver counts checked for `settle` after an outage.
    pub(super) fn new(settle: Duration) -> Reach {
        Reach { settle, ..Reach::default() }
    }

    /// A PUBLISH failed (or was refused while the subscription was down): the next success opens a window.
    pub(super) fn failed(&mut self) {
        self.after_failure = true;
    }

    /// Starts the settling window (the subscription is back after an outage).
    pub(super) fn settle_until(&mut self, until: Instant) {
        self.settling_until = Some(until);
    }

    /// Records that a PUBLISH on `channel` reached `receivers`; an error while settling if that is fewer than
    /// the last count seen (which is then kept as the expectation).
    pub(super) fn check(&mut self, channel: &str, receivers: i64) -> Result<(), BackplaneError> {
        if std::mem::take(&mut self.after_failure) {
            self.settling_until = Some(Instant::now() + self.settle);
        }
        let settling = self.settling_until.is_some_and(|until| Instant::now() < until);
        if !settling {
            self.settling_until = None;
        }
        // The common case (a channel published to before) allocates nothing.
        if let Some(last) = self.last.get_mut(channel) {
            let expected = *last;
            if settling && receivers < expected {
                return Err(BackplaneError::Publish(format!(
                    "reached {receivers} of the {expected} nodes that listened before Redis came back (the others \
                     are still resubscribing)"
                )));
            }
            *last = receivers;
            return Ok(());
        }
        if self.last.len() >= REACH_CHANNELS {
            self.last.clear();
        }
        self.last.insert(channel.to_owned(), receivers);
        Ok(())
    }
}
