//! Topics: the [`Broker`](broker::Broker) that routes publications, one [`TopicActor`](actor::TopicActor)
//! per subscribed topic URI (and match policy) holding its local subscriber set, the [`TopicHandler`] trait
//! for application code, and per-pattern [access rules](access). The broker finds topic actors through the
//! [`SubscriptionIndex`](index::SubscriptionIndex); what is queued between publishers and subscribers is bounded
//! by the [`Backlog`](backlog::Backlog).
//!
//! A topic actor is created on the first subscription and stopped when its last subscriber leaves; the
//! broker alone decides both, so membership changes never race. A publication is serialised once per topic
//! actor and wire form (v2 JSON, MessagePack, CBOR, v1) and the same bytes go to every eligible subscriber of
//! that form. This module must not talk to Redis.

pub mod access;
pub mod actor;
pub mod backlog;
pub mod broker;
pub mod handler;
pub mod index;

use std::sync::Arc;

use crate::outbox::Outbox;
use crate::wamp::{Id, Protocol};

pub use crate::model::{Payload, Publication, Publisher, TopicKey};
pub use handler::{PublishDecision, TopicHandler, TopicInstance};

/// What a topic needs to know of a subscriber to filter and deliver.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// WAMP session id.
    pub session: Id,
    /// Username.
    pub authid: Arc<str>,
    /// Roles.
    pub authroles: Arc<[String]>,
    /// Which EVENT format it reads.
    pub protocol: Protocol,
    /// Where its frames go.
    pub outbox: Outbox,
    /// Its web session, handed to topic handler callbacks.
    pub web_session: Option<crate::session::SessionHandle>,
}
