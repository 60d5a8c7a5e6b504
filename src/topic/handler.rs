//! The [`TopicHandler`] trait: application code attached to a topic route (`chat/{room}`).
//!
//! Subscribe and unsubscribe callbacks and the periodic timer run inside the topic actor of one *topic
//! instance* (`chat/lobby` and `chat/kitchen` are two instances of `chat/{room}`), so a timer starts with the
//! instance's first subscriber and stops when it empties — per room, never per handler. `on_publish` runs on
//! the publisher's connection before fan-out. Callbacks are synchronous and must not block; for I/O, spawn
//! a task and publish through [`TopicInstance::broadcast`] when it completes.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;

use super::broker::{Broker, Publish};
use super::{Payload, Publication};
use crate::route::Params;
use crate::session::Caller;
use crate::wamp::filter::Filters;

/// One concrete topic served by a handler, with its captured route parameters.
#[derive(Clone)]
pub struct TopicInstance {
    uri: Arc<str>,
    params: Arc<Params>,
    broker: Addr<Broker>,
}

impl TopicInstance {
    pub(crate) fn new(uri: Arc<str>, params: Arc<Params>, broker: Addr<Broker>) -> TopicInstance {
        TopicInstance { uri, params, broker }
    }

    /// The topic URI, e.g. `chat/lobby`.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// A captured route parameter, e.g. `param("room") == Some("lobby")`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// Publishes on this topic from the server (every subscriber on this node, or the cluster, that passes
    /// `filters`). Returns the publication id.
    pub fn broadcast(&self, payload: Payload, filters: Filters) -> crate::wamp::Id {
        let publication = Publication::new(self.uri.to_string(), payload, filters);
        let id = publication.id;
        self.broker.do_send(Publish(Arc::new(publication)));
        id
    }
}

impl std::fmt::Debug for TopicInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicInstance").field("uri", &self.uri).field("params", &self.params).finish()
    }
}

/// A publish as a handler may reshape it.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishRequest {
    /// The payload.
    pub payload: Payload,
    /// Receiver filters (exclude/eligible by session, authid, role).
    pub filters: Filters,
}

/// What happens to a publish after [`TopicHandler::on_publish`].
#[derive(Debug, Clone, PartialEq)]
pub enum PublishDecision {
    /// Deliver it (possibly changed).
    Deliver(PublishRequest),
    /// Refuse it: the publisher gets ERROR with `error` (a URI) and `message`; nothing is delivered.
    Reject {
        /// Error URI, e.g. `com.app.error.muted`.
        error: String,
        /// Human-readable reason.
        message: String,
    },
    /// The handler took care of it (e.g. broadcast something else); nothing is delivered, no error.
    Handled,
}

/// Application code for a topic route. Every method has a default, so implement only what you need.
pub trait TopicHandler: Send + Sync + 'static {
    /// A session subscribed to `topic` (exact subscriptions only).
    fn on_subscribe(&self, _topic: &TopicInstance, _caller: &Caller) {}

    /// A session left `topic`: UNSUBSCRIBE, or its connection closed.
    fn on_unsubscribe(&self, _topic: &TopicInstance, _caller: &Caller) {}

    /// A session publishes on `topic`. The default delivers it unchanged with its filters.
    fn on_publish(&self, _topic: &TopicInstance, _caller: &Caller, request: PublishRequest) -> PublishDecision {
        PublishDecision::Deliver(request)
    }

    /// If set, [`on_tick`](Self::on_tick) runs at this interval for each topic instance that has subscribers.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// The periodic timer of one topic instance.
    fn on_tick(&self, _topic: &TopicInstance) {}
}

/// Shared handlers: pass an `Arc<YourHandler>` and keep a clone to inspect its state elsewhere.
impl<T: TopicHandler> TopicHandler for Arc<T> {
    fn on_subscribe(&self, topic: &TopicInstance, caller: &Caller) {
        (**self).on_subscribe(topic, caller)
    }

    fn on_unsubscribe(&self, topic: &TopicInstance, caller: &Caller) {
        (**self).on_unsubscribe(topic, caller)
    }

    fn on_publish(&self, topic: &TopicInstance, caller: &Caller, request: PublishRequest) -> PublishDecision {
        (**self).on_publish(topic, caller, request)
    }

    fn tick_interval(&self) -> Option<Duration> {
        (**self).tick_interval()
    }

    fn on_tick(&self, topic: &TopicInstance) {
        (**self).on_tick(topic)
    }
}
