//! The router's meta topics that reveal identities — session meta events (`wamp.session.on_join`/`on_leave`)
//! and user presence (`switchboard.user.on_online`/`on_offline`) — and which subscriptions could receive them.
//! Pure: the access rules (who may see identities) and the client index (who publishes them) both use it.

use super::uri::MatchPolicy;

/// Published when a session is established: `[details]` (as `wamp.session.get` answers).
pub const ON_JOIN: &str = "wamp.session.on_join";
/// Published when a session ends: `[session, authid, authrole]`.
pub const ON_LEAVE: &str = "wamp.session.on_leave";

/// Published when a user's first socket anywhere opens: `[authid]`.
pub const ON_ONLINE: &str = "switchboard.user.on_online";
/// Published when a user has had no socket anywhere for `presence.grace`: `[authid]`.
pub const ON_OFFLINE: &str = "switchboard.user.on_offline";

/// The meta topics that reveal identities.
pub const TOPICS: [&str; 4] = [ON_JOIN, ON_LEAVE, ON_ONLINE, ON_OFFLINE];

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
        assert!(!covers(MatchPolicy::Prefix, "chat."));
        assert!(!covers(MatchPolicy::Wildcard, "chat..x"));
        assert!(!covers(MatchPolicy::Wildcard, "wamp.session"));
        assert!(covers(MatchPolicy::Exact, ON_ONLINE));
        assert!(covers(MatchPolicy::Prefix, "switchboard.user."));
        assert!(covers(MatchPolicy::Wildcard, "switchboard.user."));
        assert!(!covers(MatchPolicy::Prefix, "switchboard.chat"));
    }
}
