//! URI syntax rules and subscription matching.
//!
//! switchboard checks URIs with WAMP v2's *loose* rules — components separated by `.`, none empty, no
//! whitespace and no `#` — because apps migrating from Ratchet use topics like `chat/lobby` or
//! `acme/channel` that strict rules would refuse. WAMP v1 topics are IRIs (`http://example.com/simple#x`),
//! so v1 only requires a non-empty URI without whitespace. Both are capped at [`MAX_URI_LEN`] bytes.

/// Longest URI accepted, in bytes; longer ones are `wamp.error.invalid_uri`.
pub const MAX_URI_LEN: usize = 512;

/// How a v2 subscription matches topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchPolicy {
    /// The topic equals the subscription URI.
    Exact,
    /// The topic starts with the subscription URI (plain string prefix, as the WAMP spec defines it).
    Prefix,
    /// Dot-separated components; an empty component in the subscription matches any one component.
    Wildcard,
}

impl MatchPolicy {
    /// The name used in `SUBSCRIBE.Options.match`.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchPolicy::Exact => "exact",
            MatchPolicy::Prefix => "prefix",
            MatchPolicy::Wildcard => "wildcard",
        }
    }

    /// Whether a subscription with this policy and `pattern` receives publications to `topic`.
    pub fn matches(self, pattern: &str, topic: &str) -> bool {
        match self {
            MatchPolicy::Exact => pattern == topic,
            MatchPolicy::Prefix => topic.starts_with(pattern),
            MatchPolicy::Wildcard => {
                let mut pattern_parts = pattern.split('.');
                let mut topic_parts = topic.split('.');
                loop {
                    match (pattern_parts.next(), topic_parts.next()) {
                        (None, None) => return true,
                        (Some(p), Some(t)) if p.is_empty() || p == t => continue,
                        _ => return false,
                    }
                }
            }
        }
    }
}

fn common_checks(uri: &str) -> bool {
    !uri.is_empty() && uri.len() <= MAX_URI_LEN && !uri.chars().any(char::is_whitespace)
}

/// A concrete v2 URI (topic to publish to, procedure, exact subscription), loose rules.
pub fn is_valid_v2(uri: &str) -> bool {
    common_checks(uri) && uri.split('.').all(|part| !part.is_empty() && !part.contains('#'))
}

/// A v2 subscription URI under `policy`: prefixes may be any non-empty prefix of a valid URI (a trailing `.`
/// is allowed), wildcard patterns may have empty components.
pub fn is_valid_v2_pattern(uri: &str, policy: MatchPolicy) -> bool {
    match policy {
        MatchPolicy::Exact => is_valid_v2(uri),
        MatchPolicy::Prefix => {
            common_checks(uri) && {
                let trimmed = uri.strip_suffix('.').unwrap_or(uri);
                !trimmed.is_empty() && is_valid_v2(trimmed)
            }
        }
        MatchPolicy::Wildcard => {
            common_checks(uri) && !uri.contains('#') && uri.split('.').any(|part| !part.is_empty())
        }
    }
}

/// A v1 URI (after CURIE expansion): any non-empty IRI without whitespace.
pub fn is_valid_v1(uri: &str) -> bool {
    common_checks(uri)
}

/// Whether clients may publish to `topic`: the `wamp.` namespace and the router's user presence topics
/// (`switchboard.user.`) are reserved for the router.
pub fn is_reserved(uri: &str) -> bool {
    uri.starts_with("wamp.") || uri.starts_with("switchboard.user.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_v2_rules_accept_slashes_and_refuse_empty_components() {
        assert!(is_valid_v2("com.myapp.topic1"));
        assert!(is_valid_v2("chat/lobby"));
        assert!(is_valid_v2("acme/channel"));
        assert!(!is_valid_v2(""));
        assert!(!is_valid_v2("com..topic"));
        assert!(!is_valid_v2("com.topic."));
        assert!(!is_valid_v2("com.my topic"));
        assert!(!is_valid_v2("com.a#b"));
        assert!(!is_valid_v2(&"a".repeat(MAX_URI_LEN + 1)));
    }

    #[test]
    fn patterns_follow_their_policy() {
        assert!(is_valid_v2_pattern("com.myapp.", MatchPolicy::Prefix));
        assert!(is_valid_v2_pattern("com.myapp", MatchPolicy::Prefix));
        assert!(!is_valid_v2_pattern(".", MatchPolicy::Prefix));
        assert!(is_valid_v2_pattern("com..update", MatchPolicy::Wildcard));
        assert!(!is_valid_v2_pattern("..", MatchPolicy::Wildcard));
        assert!(!is_valid_v2_pattern("com..update", MatchPolicy::Exact));
    }

    #[test]
    fn matching() {
        assert!(MatchPolicy::Prefix.matches("com.myapp", "com.myapp.a.b"));
        assert!(!MatchPolicy::Prefix.matches("com.myapp.", "com.other"));
        assert!(MatchPolicy::Wildcard.matches("com..update", "com.user.update"));
        assert!(!MatchPolicy::Wildcard.matches("com..update", "com.user.x.update"));
        assert!(!MatchPolicy::Wildcard.matches("com..update", "com.user"));
        assert!(MatchPolicy::Exact.matches("a.b", "a.b"));
    }

    #[test]
    fn v1_accepts_iris_and_refuses_whitespace() {
        assert!(is_valid_v1("http://example.com/simple#event1"));
        assert!(!is_valid_v1("http://example.com/ x"));
        assert!(!is_valid_v1(""));
    }
}
