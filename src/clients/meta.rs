//! Session meta events (WAMP advanced profile, "Session Meta API"): `wamp.session.on_join` when a session is
//! established and `wamp.session.on_leave` when it ends, published from the server like any library
//! publication — through the broker, to local subscribers and to every other node — so each subscriber
//! anywhere gets each event once. A node that dies cannot say goodbye: its sessions' `on_leave` is published by
//! the surviving node whose registry janitor purges them once its lease expires (see `cluster::Departed`).
//!
//! Subscription meta events (`wamp.subscription.on_create`, `on_subscribe`, `on_unsubscribe`, `on_delete`) are
//! published by the node of the session that subscribed or left, once the registry — one atomic script in
//! Redis — said whether it was the subscription's first or last subscriber anywhere, so each is published once
//! cluster-wide; a dead node's are published by the survivor that purges its sessions. Subscriptions to the
//! router's own namespaces (`wamp.`, `switchboard.user.`) are not announced, as in Crossbar.
//!
//! User presence (`switchboard.user.on_online` / `on_offline`, `[authid]`, logged-in users only): online at a
//! user's first socket anywhere, offline once she has had none anywhere for `presence.grace`, so a reconnect or a
//! rolling restart does not flap. Each transition is decided by one atomic registry call, so exactly one node
//! announces it; a dead node's users are checked by the survivor that announced their sessions' `on_leave`.
//!
//! Identities are visible only to roles of `meta.roles` (default: any role but `anonymous`): a subscription
//! that could receive these topics — exact, or a prefix or wildcard covering them — is refused to other roles
//! ([`covers`]). Clients cannot publish to them: the `wamp.` namespace is the router's.

use std::sync::Arc;
use std::time::Duration;

use crate::config::WebhookEvent;
use crate::model::{ClientInfo, Payload, Publication, SubscriptionInfo};
use crate::wamp::filter::Filters;
use crate::wamp::Id;

pub use crate::wamp::meta::{
    covers, is_meta_topic, ON_CREATE, ON_DELETE, ON_JOIN, ON_LEAVE, ON_OFFLINE, ON_ONLINE, ON_SUBSCRIBE,
    ON_UNSUBSCRIBE, TOPICS,
};

/// The `on_join` publication of `info`.
pub fn on_join(info: &ClientInfo) -> Publication {
    let payload = Payload { args: Some(vec![info.details()]), kwargs: None };
    Publication::new(ON_JOIN.to_owned(), payload, Filters::default())
}

/// The `on_leave` publication of a session.
pub fn on_leave(session: Id, authid: &str, authrole: &str) -> Publication {
    let args = vec![session.into(), authid.into(), authrole.into()];
    Publication::new(ON_LEAVE.to_owned(), Payload { args: Some(args), kwargs: None }, Filters::default())
}

/// The `on_create` publication: `session` made the subscription `info`.
pub fn on_create(session: Id, info: &SubscriptionInfo) -> Publication {
    let args = vec![session.into(), info.details()];
    Publication::new(ON_CREATE.to_owned(), Payload { args: Some(args), kwargs: None }, Filters::default())
}

/// An `on_subscribe`, `on_unsubscribe` or `on_delete` publication: `[session, subscription]`.
pub fn on_subscription(topic: &'static str, session: Id, subscription: Id) -> Publication {
    let args = vec![session.into(), subscription.into()];
    Publication::new(topic.to_owned(), Payload { args: Some(args), kwargs: None }, Filters::default())
}

/// A change of a user's presence, as the application's callback ([`Builder::on_presence`]) sees it.
///
/// [`Builder::on_presence`]: crate::node::Builder::on_presence
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// Her first socket anywhere opened.
    Online(String),
    /// She has had no socket anywhere for `presence.grace`.
    Offline(String),
}

/// The application's presence callback.
pub type PresenceCallback = Arc<dyn Fn(&Presence) + Send + Sync>;

/// How a node announces presence: `[presence]` and the application's callback, which runs on the one node that
/// announces each change (so once cluster-wide).
#[derive(Clone)]
pub struct PresenceConfig {
    /// `presence.enabled`.
    pub enabled: bool,
    /// `presence.grace`.
    pub grace: Duration,
    /// The callback, if the application gave one.
    pub callback: Option<PresenceCallback>,
    /// Where presence and session events are POSTed (`[webhooks]`), if anywhere.
    pub webhooks: Option<crate::webhooks::Webhooks>,
}

impl PresenceConfig {
    /// Tells the webhooks that a session started (`joined`) or ended (`left`: session, authid, authrole).
    pub(super) fn session_webhook(&self, joined: Option<&ClientInfo>, left: Option<(Id, &str, &str)>) {
        let Some(webhooks) = &self.webhooks else { return };
        if let Some(info) = joined {
            webhooks.send(WebhookEvent::SessionJoin, info.details());
        }
        if let Some((session, authid, authrole)) = left {
            let data = serde_json::json!({"session": session, "authid": authid, "authrole": authrole});
            webhooks.send(WebhookEvent::SessionLeave, data);
        }
    }

    /// Publishes `change` (through `announce`) and tells the callback.
    pub(super) fn announce(&self, change: Presence, announce: impl FnOnce(Publication)) {
        let publication = match &change {
            Presence::Online(authid) => presence(ON_ONLINE, authid),
            Presence::Offline(authid) => presence(ON_OFFLINE, authid),
        };
        announce(publication);
        if let Some(webhooks) = &self.webhooks {
            let (event, authid) = match &change {
                Presence::Online(authid) => (WebhookEvent::UserOnline, authid),
                Presence::Offline(authid) => (WebhookEvent::UserOffline, authid),
            };
            webhooks.send(event, serde_json::json!({ "authid": authid }));
        }
        if let Some(callback) = &self.callback {
            callback(&change);
        }
    }
}

/// The `on_online` or `on_offline` publication of `authid`.
pub fn presence(topic: &'static str, authid: &str) -> Publication {
    Publication::new(topic.to_owned(), Payload { args: Some(vec![authid.into()]), kwargs: None }, Filters::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_the_spec_shapes() {
        let info = ClientInfo {
            session: 7,
            authid: "alice".into(),
            authroles: vec!["user".into(), "admin".into()],
            authmethod: crate::model::AuthMethod::Cookie,
            protocol: "wamp.2.json",
            node: "n1".into(),
            connected_at: 1,
        };
        let join = on_join(&info);
        assert_eq!(join.topic, ON_JOIN);
        let details = &join.payload.args.as_ref().unwrap()[0];
        assert_eq!(details["session"], 7);
        assert_eq!(details["authid"], "alice");
        assert_eq!(details["authrole"], "user");
        assert_eq!(details["authmethod"], "cookie");
        assert_eq!(details["transport"]["protocol"], "wamp.2.json");
        let leave = on_leave(7, "alice", "user");
        assert_eq!(leave.payload.args, Some(vec![7.into(), "alice".into(), "user".into()]));
    }
}
