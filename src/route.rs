//! Route patterns for topics and procedures: `chat/{room}`, `com.app.{name}`, `private/{username}`.
//!
//! A pattern is split into segments at `/` and `.`; a segment written `{name}` matches any one non-empty
//! segment of the URI and captures it, every other segment must be equal. Access rules also match with one
//! placeholder *bound* to a known value ([`RoutePattern::matches_bound`]): `{username}` then stands for the
//! caller's whole authid, dots and slashes included. Pure: no actor or I/O here.

use std::collections::HashMap;

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    source: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    Separator(char),
    Param(String),
}

/// A pattern that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid route pattern '{pattern}': {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// Captured placeholder values of a match, e.g. `room → lobby`.
pub type Params = HashMap<String, String>;

fn tokenize(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c == '/' || c == '.' {
            out.push(&s[start..i]);
            out.push(&s[i..i + 1]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

impl RoutePattern {
    /// Parses a pattern for an access rule: it must begin with literal text, like `private/{username}`, since
    /// one beginning with a placeholder would cover every topic.
    pub fn parse_access(pattern: &str) -> Result<RoutePattern, PatternError> {
        let parsed = RoutePattern::parse(pattern)?;
        if parsed.literal_prefix().is_empty() {
            return Err(PatternError {
                pattern: parsed.as_str().to_owned(),
                reason: "an access pattern must begin with literal text, like 'private/{username}': \
                         one beginning with a placeholder would cover every topic",
            });
        }
        Ok(parsed)
    }

    /// Compiles `pattern`.
    pub fn parse(pattern: &str) -> Result<RoutePattern, PatternError> {
        let err = |reason| PatternError { pattern: pattern.to_owned(), reason };
        if pattern.is_empty() {
            return Err(err("empty pattern"));
        }
        let mut tokens = Vec::new();
        for part in tokenize(pattern) {
            let token = match part {
                "/" => Token::Separator('/'),
                "." => Token::Separator('.'),
                p if p.starts_with('{') && p.ends_with('}') && p.len() > 2 => {
                    let name = &p[1..p.len() - 1];
                    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        return Err(err("placeholder names are letters, digits and '_'"));
                    }
                    if tokens.iter().any(|t| matches!(t, Token::Param(p) if p == name)) {
                        // A second `{name}` would silently keep only the last segment it matched.
                        return Err(err("each placeholder name may appear once"));
                    }
                    Token::Param(name.to_owned())
                }
                p if p.contains('{') || p.contains('}') => {
                    return Err(err("a placeholder must fill a whole segment, like 'chat/{room}'"))
                }
                p => Token::Literal(p.to_owned()),
            };
            tokens.push(token);
        }
        Ok(RoutePattern { source: pattern.to_owned(), tokens })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern has a placeholder called `name`.
    pub fn has_param(&self, name: &str) -> bool {
        self.tokens.iter().any(|t| matches!(t, Token::Param(p) if p == name))
    }

    /// The pattern's text before its first placeholder; the whole pattern when it has none. Placeholders
    /// fill whole segments, so a non-empty prefix of a pattern with placeholders ends with `/` or `.`.
    pub fn literal_prefix(&self) -> &str {
        self.source.find('{').map_or(self.source.as_str(), |end| &self.source[..end])
    }

    /// Matches `uri`, returning the captured placeholders.
    pub fn matches(&self, uri: &str) -> Option<Params> {
        self.match_with(uri, None)
    }

    /// Matches `uri` with placeholder `name` standing for exactly `value`, whatever characters it holds
    /// (`.`, `/`, `*`, any Unicode): `private/{username}` bound to `bob.smith` matches `private/bob.smith`
    /// only. Other placeholders match one segment each, as in [`RoutePattern::matches`].
    pub fn matches_bound(&self, uri: &str, name: &str, value: &str) -> Option<Params> {
        self.match_with(uri, Some((name, value)))
    }

    fn match_with(&self, uri: &str, bound: Option<(&str, &str)>) -> Option<Params> {
        let mut rest = uri;
        let mut params = Params::new();
        // Tokens alternate segment, separator, segment…, so a free placeholder ends at the next separator.
        for token in &self.tokens {
            match token {
                Token::Separator(c) => rest = rest.strip_prefix(*c)?,
                Token::Literal(l) => rest = rest.strip_prefix(l.as_str())?,
                Token::Param(name) => {
                    let value = match bound {
                        Some((bound_name, value)) if bound_name == name => rest.starts_with(value).then_some(value)?,
                        _ => &rest[..rest.find(['/', '.']).unwrap_or(rest.len())],
                    };
                    if value.is_empty() {
                        return None;
                    }
                    params.insert(name.clone(), value.to_owned());
                    rest = &rest[value.len()..];
                }
            }
        }
        rest.is_empty().then_some(params)
    }
}

/// A list of patterns with attached values; the first matching entry wins.
#[derive(Debug, Clone)]
pub struct Router<T> {
    routes: Vec<(RoutePattern, T)>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Router { routes: Vec::new() }
    }
}

impl<T> Router<T> {
    /// Adds a route after the existing ones.
    pub fn add(&mut self, pattern: RoutePattern, value: T) {
        self.routes.push((pattern, value));
    }

    /// The first route matching `uri`, with its captures.
    pub fn find(&self, uri: &str) -> Option<(&T, Params)> {
        self.routes.iter().find_map(|(p, v)| p.matches(uri).map(|params| (v, params)))
    }

    /// Whether no route is defined.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_capture_whole_segments() {
        let p = RoutePattern::parse("chat/{room}").unwrap();
        assert_eq!(p.matches("chat/lobby").unwrap()["room"], "lobby");
        assert!(p.matches("chat/lobby/x").is_none());
        assert!(p.matches("chat/").is_none());
        assert!(p.matches("chat.lobby").is_none());
        let p = RoutePattern::parse("com.app.{name}").unwrap();
        assert_eq!(p.matches("com.app.add").unwrap()["name"], "add");
        assert!(RoutePattern::parse("com.app").unwrap().matches("com.app").is_some());
    }

    #[test]
    fn a_bound_placeholder_matches_the_whole_value_whatever_it_contains() {
        let p = RoutePattern::parse("private/{username}").unwrap();
        assert_eq!(p.matches_bound("private/bob.smith", "username", "bob.smith").unwrap()["username"], "bob.smith");
        assert!(p.matches_bound("private/bob.smith", "username", "bob").is_none());
        assert!(p.matches_bound("private/bob", "username", "bob.smith").is_none());
        assert!(p.matches_bound("private/a/b*ü", "username", "a/b*ü").is_some());
        assert!(p.matches_bound("private/", "username", "").is_none());
        let p = RoutePattern::parse("user.{username}.{channel}").unwrap();
        let params = p.matches_bound("user.a.b.news", "username", "a.b").unwrap();
        assert_eq!((params["username"].as_str(), params["channel"].as_str()), ("a.b", "news"));
        assert!(
            p.matches_bound("user.a.b.c.news", "username", "a.b").is_none(),
            "the channel placeholder is one segment"
        );
        assert!(p.matches("user.a.b").is_some(), "unbound, every placeholder is one segment");
    }

    #[test]
    fn the_literal_prefix_ends_before_the_first_placeholder() {
        assert_eq!(RoutePattern::parse("private/{username}").unwrap().literal_prefix(), "private/");
        assert_eq!(RoutePattern::parse("admin.{a}.x.{b}").unwrap().literal_prefix(), "admin.");
        assert_eq!(RoutePattern::parse("chat/admin").unwrap().literal_prefix(), "chat/admin");
        assert_eq!(RoutePattern::parse("{x}.inbox").unwrap().literal_prefix(), "");
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(RoutePattern::parse("").is_err());
        assert!(RoutePattern::parse("chat/x{room}").is_err());
        assert!(RoutePattern::parse("chat/{ro-om}").is_err());
    }

    #[test]
    fn a_placeholder_name_appears_once_per_pattern() {
        // Found by the `route` fuzz target: `{a}/{a}` matched `x/y` and captured only the last segment.
        let err = RoutePattern::parse("chat/{a}/{a}").unwrap_err();
        assert_eq!(err.reason, "each placeholder name may appear once");
        assert!(RoutePattern::parse("chat/{a}/{b}").is_ok());
    }

    #[test]
    fn first_route_wins() {
        let mut r = Router::default();
        r.add(RoutePattern::parse("chat/admin").unwrap(), 1);
        r.add(RoutePattern::parse("chat/{room}").unwrap(), 2);
        assert_eq!(*r.find("chat/admin").unwrap().0, 1);
        assert_eq!(*r.find("chat/x").unwrap().0, 2);
        assert!(r.find("other").is_none());
    }
}
