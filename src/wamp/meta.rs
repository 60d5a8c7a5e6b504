//! The router's meta topics — session meta events (`wamp.session.on_join`/`on_leave`), subscription meta events
//! (`wamp.subscription.on_create`/`on_subscribe`/`on_unsubscribe`/`on_delete`) and user presence
//! (`switchboard.user.on_online`/`on_offline`) — and which subscriptions could receive them. They reveal who
//! is connected and what they subscribe to, so only `meta.roles` may receive them. Pure: the access rules (who
//! may see them) and the client index (who publishes them) both use it.

use super::uri::MatchPolicy;

/// Published when a session is established: `[details]` (as `wamp.session.get` answers).
pub const ON_JOIN: &str = "wamp.session.on_join";
/// Published when a session ends: `[session, authid, authrole]`.
pub const ON_LEAVE: &str = "wamp.session.on_leave";

/// Published when a user's first socket anywhere opens: `[authid]`.
pub const ON_ONLINE: &str = "switchboard.user.on_online";
/// Published when a user has had no socket anywhere for `presence.grace`: `[authid]`.
pub const ON_OFFLINE: &str = "switchboard.user.on_offline";

/// Published when a subscription gets its first subscriber anywhere: `[session, details]` (as
/// `wamp.subscription.get` answers).
pub const ON_CREATE: &str = "wamp.subscription.on_create";
/// Published when a session subscribes: `[session, subscription]`.
pub const ON_SUBSCRIBE: &str = "wamp.subscription.on_subscribe";
/// Published when a session unsubscribes or ends: `[session, subscription]`.
pub const ON_UNSUBSCRIBE: &str = "wamp.subscription.on_unsubscribe";
/// Published when a subscription loses its last subscriber anywhere: `[session, subscription]`.
pub const ON_DELETE: &str = "wamp.subscription.on_delete";

/// The meta topics: each reveals who is connected or what they subscribe to.
pub const TOPICS: [&str; 8] =
    [ON_JOIN, ON_LEAVE, ON_CREATE, ON_SUBSCRIBE, ON_UNSUBSCRIBE, ON_DELETE, ON_ONLINE, ON_OFFLINE];

/// Whether `topic` is one of the meta topics.
pub fn is_meta_topic(topic: &str) -> bool {
    TOPICS.contains(&topic)
}

/// Whether a subscription to `pattern` under `policy` would receive a session meta event.
pub fn covers(policy: MatchPolicy, pattern: &str) -> bool {
    TOPICS.iter().any(|topic| policy.matches(pattern, topic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_that_would_see_identities_are_recognised() {
        assert!(covers(MatchPolicy::Exact, ON_JOIN));
        assert!(covers(MatchPolicy::Exact, ON_LEAVE));
        assert!(covers(MatchPolicy::Prefix, "wamp."));
        assert!(covers(MatchPolicy::Prefix, "wamp.session.on_"));
        assert!(covers(MatchPolicy::Prefix, "w"));
        assert!(covers(MatchPolicy::Wildcard, "wamp.session."));
        assert!(covers(MatchPolicy::Wildcard, "..on_leave"));
        assert!(!covers(MatchPolicy::Exact, "wamp.session.count"));
        assert!(covers(MatchPolicy::Exact, ON_SUBSCRIBE));
        assert!(covers(MatchPolicy::Wildcard, "wamp.subscription."));
        assert!(!covers(MatchPolicy::Prefix, "chat."));
        assert!(!covers(MatchPolicy::Wildcard, "chat..x"));
        assert!(!covers(MatchPolicy::Wildcard, "wamp.session"));
        assert!(covers(MatchPolicy::Exact, ON_ONLINE));
        assert!(covers(MatchPolicy::Prefix, "switchboard.user."));
        assert!(covers(MatchPolicy::Wildcard, "switchboard.user."));
        assert!(!covers(MatchPolicy::Prefix, "switchboard.chat"));
    }
}
