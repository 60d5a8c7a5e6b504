//! Access rules per topic pattern: which roles may subscribe to or publish on matching topics.
//!
//! Rules are checked in order and the first whose pattern matches decides. A `{username}` placeholder must
//! equal the caller's authid, which makes private per-user topics (`private/{username}`). Topics matching
//! no rule are open. Prefix and wildcard subscriptions are checked per delivered topic by the topic actor,
//! so a pattern can never reach a topic its subscriber could not subscribe to directly.

use crate::config::AccessSettings;
use crate::route::{PatternError, RoutePattern};

/// What a caller wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Subscribe (or receive via a pattern subscription).
    Subscribe,
    /// Publish.
    Publish,
}

/// One rule.
#[derive(Debug, Clone)]
pub struct AccessRule {
    pattern: RoutePattern,
    subscribe: Option<Vec<String>>,
    publish: Option<Vec<String>>,
}

impl AccessRule {
    /// A rule for `pattern`; `None` allows every role, `Some(empty)` nobody.
    pub fn new(
        pattern: &str,
        subscribe: Option<Vec<String>>,
        publish: Option<Vec<String>>,
    ) -> Result<AccessRule, PatternError> {
        Ok(AccessRule { pattern: RoutePattern::parse(pattern)?, subscribe, publish })
    }
}

/// The ordered rule list of a node.
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    rules: Vec<AccessRule>,
}

impl AccessRules {
    /// Compiles the `[[access]]` rules of the configuration (validated already by `Settings::validate`).
    pub fn from_settings(settings: &[AccessSettings]) -> Result<AccessRules, PatternError> {
        let rules = settings
            .iter()
            .map(|s| AccessRule::new(&s.pattern, s.subscribe.clone(), s.publish.clone()))
            .collect::<Result<_, _>>()?;
        Ok(AccessRules { rules })
    }

    /// Appends a rule.
    pub fn push(&mut self, rule: AccessRule) {
        self.rules.push(rule);
    }

    /// Whether there are no rules (everything open).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a caller with `authid` and `roles` may perform `action` on `topic`.
    pub fn allows(&self, action: Action, topic: &str, authid: &str, roles: &[String]) -> bool {
        for rule in &self.rules {
            let Some(params) = rule.pattern.matches(topic) else { continue };
            if let Some(owner) = params.get("username") {
                if owner != authid {
                    return false;
                }
            }
            let allowed = match action {
                Action::Subscribe => &rule.subscribe,
                Action::Publish => &rule.publish,
            };
            return match allowed {
                None => true,
                Some(list) => roles.iter().any(|r| list.contains(r)),
            };
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    fn rules() -> AccessRules {
        let mut rules = AccessRules::default();
        rules.push(AccessRule::new("private/{username}", None, Some(vec![])).unwrap());
        rules.push(AccessRule::new("admin.{x}", Some(roles(&["admin"])), Some(roles(&["admin"]))).unwrap());
        rules
    }

    #[test]
    fn username_placeholder_must_equal_the_caller() {
        let r = rules();
        assert!(r.allows(Action::Subscribe, "private/alice", "alice", &roles(&["user"])));
        assert!(!r.allows(Action::Subscribe, "private/alice", "bob", &roles(&["user"])));
        assert!(!r.allows(Action::Publish, "private/alice", "alice", &roles(&["user"])), "empty list = nobody");
    }

    #[test]
    fn roles_are_checked_and_unmatched_topics_are_open() {
        let r = rules();
        assert!(r.allows(Action::Publish, "admin.news", "root", &roles(&["user", "admin"])));
        assert!(!r.allows(Action::Subscribe, "admin.news", "bob", &roles(&["user"])));
        assert!(r.allows(Action::Publish, "chat/lobby", "bob", &roles(&["anonymous"])));
    }
}
