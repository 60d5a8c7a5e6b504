//! Access rules per topic pattern: which roles may subscribe to or publish on matching topics. They fail
//! closed.
//!
//! Each rule has a pattern (`private/{username}`, `admin.{channel}`) whose *literal prefix* is its text
//! before the first placeholder (`private/`, `admin.`; the whole pattern when it has none). A rule *covers*
//! a topic that begins with its literal prefix (for a pattern without placeholders: the topic itself and
//! the topics below it, `chat/admin` → `chat/admin.x`, `chat/admin/x`, not `chat/administrators`). Rules are
//! checked in order and the first that covers the topic decides:
//!
//! - the topic has the rule's *shape* (the pattern matches it): the rule's role lists decide;
//! - it does not (`admin.news.eu` under `admin.{channel}`, or `private/bob.smith` for anyone but
//!   bob.smith): denied.
//!
//! So put narrower rules before broader ones (`admin.news.{region}` before `admin.{channel}`). A topic no
//! rule covers follows `[access_policy] default` (`allow` unless configured).
//!
//! Placeholders: `{username}` stands for the caller's whole authid, whatever characters it holds (`.`, `/`,
//! `*`, Unicode), which makes private per-user topics; every other placeholder matches exactly one
//! non-empty segment (text between `/` and `.` separators). A pattern may not begin with a placeholder: its
//! literal prefix would be empty and it would cover every topic.
//!
//! Prefix and wildcard subscriptions are checked per delivered topic by the topic actor (unless the rules
//! are [open](AccessRules::is_open)), so a pattern never delivers a topic its subscriber could not subscribe
//! to exactly.

use crate::config::{DefaultAccess, Settings};
use crate::route::{PatternError, RoutePattern};

/// The placeholder bound to the caller's authid.
pub const USERNAME: &str = "username";

/// The `meta.roles` rule, for the meta topics here and the meta procedures (`rpc`): a caller with `roles` may see
/// identities if one of them is allowed — by default (`None`) any role but `anonymous`.
pub fn sees_identities(allowed: Option<&[String]>, roles: &[String]) -> bool {
    match allowed {
        None => roles.iter().any(|r| r != crate::session::ANONYMOUS_ROLE),
        Some(allowed) => roles.iter().any(|r| allowed.contains(r)),
    }
}

/// What a caller wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Subscribe (or receive via a pattern subscription).
    Subscribe,
    /// Publish.
    Publish,
}

/// How one rule relates to one topic and caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coverage {
    /// The topic has the rule's shape: its role lists decide.
    Shape,
    /// The topic falls under the rule's literal prefix without its shape: denied.
    Under,
    /// The rule says nothing about the topic.
    Outside,
}

/// One rule.
#[derive(Debug, Clone)]
pub struct AccessRule {
    pattern: RoutePattern,
    subscribe: Option<Vec<String>>,
    publish: Option<Vec<String>>,
}

impl AccessRule {
    /// A rule for `pattern`; `None` allows every role, `Some(empty)` nobody. A pattern that begins with a
    /// placeholder is refused (it would cover every topic).
    pub fn new(
        pattern: &str,
        subscribe: Option<Vec<String>>,
        publish: Option<Vec<String>>,
    ) -> Result<AccessRule, PatternError> {
        Ok(AccessRule { pattern: RoutePattern::parse_access(pattern)?, subscribe, publish })
    }

    fn coverage(&self, topic: &str, authid: &str) -> Coverage {
        let prefix = self.pattern.literal_prefix();
        let Some(rest) = topic.strip_prefix(prefix) else { return Coverage::Outside };
        let at_boundary = prefix.ends_with(['/', '.']) || rest.is_empty() || rest.starts_with(['/', '.']);
        if !at_boundary {
            return Coverage::Outside;
        }
        if self.pattern.matches_bound(topic, USERNAME, authid).is_some() {
            Coverage::Shape
        } else {
            Coverage::Under
        }
    }

    fn allows_roles(&self, action: Action, roles: &[String]) -> bool {
        let allowed = match action {
            Action::Subscribe => &self.subscribe,
            Action::Publish => &self.publish,
        };
        match allowed {
            None => true,
            Some(list) => roles.iter().any(|r| list.contains(r)),
        }
    }
}

/// The ordered rule list of a node and its default for topics no rule covers.
#[derive(Debug, Clone)]
pub struct AccessRules {
    rules: Vec<AccessRule>,
    default: DefaultAccess,
    /// `meta.roles`: who may receive the meta topics that reveal identities (`None`: every role but anonymous).
    meta_roles: Option<Vec<String>>,
}

impl Default for AccessRules {
    /// No rule, every topic open.
    fn default() -> Self {
        AccessRules::new(DefaultAccess::Allow)
    }
}

impl AccessRules {
    /// No rule yet; topics follow `default`.
    pub fn new(default: DefaultAccess) -> AccessRules {
        AccessRules { rules: Vec::new(), default, meta_roles: None }
    }

    /// Whether a caller with `roles` may see identities: receive the meta topics (`wamp::meta`).
    pub fn sees_identities(&self, roles: &[String]) -> bool {
        sees_identities(self.meta_roles.as_deref(), roles)
    }

    /// Compiles the `[[access]]` rules and `[access_policy] default` of the configuration.
    pub fn from_settings(settings: &Settings) -> Result<AccessRules, PatternError> {
        let mut rules = AccessRules::new(settings.access_policy.default);
        rules.meta_roles = settings.meta.roles.clone();
        for s in &settings.access {
            rules.push(AccessRule::new(&s.pattern, s.subscribe.clone(), s.publish.clone())?);
        }
        Ok(rules)
    }

    /// Appends a rule.
    pub fn push(&mut self, rule: AccessRule) {
        self.rules.push(rule);
    }

    /// Whether every topic is open to everyone: no rule, and the default allows. Only then may a caller
    /// skip checking (e.g. per delivered topic of a pattern subscription) — except for the meta topics, which
    /// `meta.roles` always governs ([`crate::wamp::meta::is_meta_topic`]).
    pub fn is_open(&self) -> bool {
        self.rules.is_empty() && self.default == DefaultAccess::Allow
    }

    /// Whether a caller with `authid` and `roles` may perform `action` on `topic` (see the module docs).
    pub fn allows(&self, action: Action, topic: &str, authid: &str, roles: &[String]) -> bool {
        if action == Action::Subscribe && crate::wamp::meta::is_meta_topic(topic) && !self.sees_identities(roles) {
            return false;
        }
        for rule in &self.rules {
            match rule.coverage(topic, authid) {
                Coverage::Shape => return rule.allows_roles(action, roles),
                Coverage::Under => return false,
                Coverage::Outside => {}
            }
        }
        self.default == DefaultAccess::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    fn rules(default: DefaultAccess) -> AccessRules {
        let mut rules = AccessRules::new(default);
        rules.push(AccessRule::new("private/{username}", None, Some(vec![])).unwrap());
        rules.push(AccessRule::new("admin.{x}", Some(roles(&["admin"])), Some(roles(&["admin"]))).unwrap());
        rules
    }

    #[test]
    fn username_placeholder_must_equal_the_callers_whole_authid() {
        let r = rules(DefaultAccess::Allow);
        let user = roles(&["user"]);
        assert!(r.allows(Action::Subscribe, "private/alice", "alice", &user));
        assert!(!r.allows(Action::Subscribe, "private/alice", "bob", &user));
        assert!(!r.allows(Action::Publish, "private/alice", "alice", &user), "empty list = nobody");
        for owner in ["bob.smith", "team/bob", "b*b", "bøb.ß", "a.b/c"] {
            let topic = format!("private/{owner}");
            assert!(r.allows(Action::Subscribe, &topic, owner, &user), "{owner} reads her own topic");
            assert!(!r.allows(Action::Subscribe, &topic, "anon-7", &roles(&["anonymous"])), "{topic}");
            assert!(!r.allows(Action::Subscribe, &topic, "bob", &user), "{topic}");
        }
        assert!(!r.allows(Action::Subscribe, "private/bob.smith/inbox", "bob.smith", &user), "not her shape");
    }

    #[test]
    fn a_topic_under_a_rules_literal_prefix_but_not_its_shape_is_denied() {
        let r = rules(DefaultAccess::Allow);
        let admin = roles(&["user", "admin"]);
        assert!(r.allows(Action::Publish, "admin.news", "root", &admin));
        assert!(!r.allows(Action::Subscribe, "admin.news", "bob", &roles(&["user"])));
        assert!(!r.allows(Action::Subscribe, "admin.news.eu", "bob", &roles(&["user"])));
        assert!(!r.allows(Action::Subscribe, "admin.news.eu", "root", &admin), "not the shape: denied to all");
        assert!(r.allows(Action::Publish, "chat/lobby", "bob", &roles(&["anonymous"])), "covered by no rule");
        assert!(r.allows(Action::Publish, "administrators", "bob", &roles(&["anonymous"])), "not under 'admin.'");
    }

    #[test]
    fn the_first_covering_rule_decides_so_narrow_rules_go_first() {
        let mut r = AccessRules::new(DefaultAccess::Allow);
        r.push(AccessRule::new("admin.news.{region}", None, None).unwrap());
        r.push(AccessRule::new("admin.{channel}", Some(roles(&["admin"])), None).unwrap());
        assert!(r.allows(Action::Subscribe, "admin.news.eu", "bob", &roles(&["user"])));
        assert!(!r.allows(Action::Subscribe, "admin.secret", "bob", &roles(&["user"])));
    }

    #[test]
    fn a_pattern_without_placeholders_covers_its_topic_and_those_below_it() {
        let mut r = AccessRules::new(DefaultAccess::Allow);
        r.push(AccessRule::new("chat/admin", Some(roles(&["admin"])), None).unwrap());
        let user = roles(&["user"]);
        for topic in ["chat/admin", "chat/admin.x", "chat/admin/x"] {
            assert!(!r.allows(Action::Subscribe, topic, "bob", &user), "{topic}");
        }
        assert!(r.allows(Action::Subscribe, "chat/administrators", "bob", &user));
        assert!(r.allows(Action::Subscribe, "chat/admin", "root", &roles(&["admin"])));
    }

    #[test]
    fn the_default_applies_to_topics_no_rule_covers() {
        let r = rules(DefaultAccess::Deny);
        assert!(!r.allows(Action::Subscribe, "chat/lobby", "bob", &roles(&["user"])));
        assert!(r.allows(Action::Subscribe, "private/bob", "bob", &roles(&["user"])), "a rule still allows");
        assert!(!AccessRules::new(DefaultAccess::Deny).is_open(), "no rule but a deny default is not open");
        assert!(!rules(DefaultAccess::Allow).is_open());
        assert!(AccessRules::default().is_open());
    }

    #[test]
    fn the_example_configuration_denies_by_default_and_keeps_the_demo_usable() {
        let text = std::fs::read_to_string("config/example.toml").unwrap();
        let settings = Settings::from_toml(&text, "config/example.toml").unwrap();
        assert_eq!(settings.access_policy.default, DefaultAccess::Deny);
        let r = AccessRules::from_settings(&settings).unwrap();
        let user = roles(&["user"]);
        // The topics src/demo/chat.html uses.
        for topic in ["demo.room.lobby", "demo.direct"] {
            assert!(r.allows(Action::Subscribe, topic, "alice", &user), "{topic}");
            assert!(r.allows(Action::Publish, topic, "alice", &user), "{topic}");
        }
        for topic in ["wamp.session.on_join", "wamp.session.on_leave", "switchboard.user.on_online"] {
            assert!(r.allows(Action::Subscribe, topic, "alice", &user), "{topic}");
        }
        assert!(r.allows(Action::Subscribe, "private/bob.smith", "bob.smith", &user));
        assert!(!r.allows(Action::Subscribe, "private/bob.smith", "anon-1", &roles(&["anonymous"])));
        assert!(!r.allows(Action::Subscribe, "admin.news.eu", "root", &roles(&["admin"])));
        assert!(!r.allows(Action::Subscribe, "chat/lobby", "alice", &user), "not listed: denied");
    }

    #[test]
    fn patterns_beginning_with_a_placeholder_are_refused() {
        assert!(AccessRule::new("{username}", None, None).is_err());
        assert!(AccessRule::new("{user}/inbox", None, None).is_err());
        assert!(AccessRule::new("inbox/{user}", None, None).is_ok());
    }
}
