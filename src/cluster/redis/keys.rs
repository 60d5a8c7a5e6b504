//! Names of every Redis key and channel switchboard uses, all under the configured prefix. Pure.
//!
//! | name | type | holds |
//! |---|---|---|
//! | `{p}node:{node}` | string, TTL = lease | the node's current epoch; its entries are valid only while it lives |
//! | `{p}nodes` | set | node ids that registered sessions (the janitor's work list) |
//! | `{p}s:{session}` | hash | `node`, `epoch`, `authid`, `authroles` (JSON), `authmethod`, `protocol`, `connected_at` |
//! | `{p}n:{node}` | set | session ids registered by the node |
//! | `{p}u:{authid}` | set | session ids of a user |
//! | `{p}pu:{authid}` | string | present while the user is announced online (presence; `lua/presence.lua`) |
//! | `{p}tm:{session}` | list | the session's testaments (JSON), published by a survivor if its node dies |
//! | `{p}r:{role}` | set | session ids holding a role |
//! | `{p}ids` | sorted set | every session id, scored by itself (list pages in id order) |
//! | `{p}nrs:{node}` | set | the distinct role lists (JSON) of the node's sessions |
//! | `{p}nr:{node}:{roles}` | set | the node's session ids with exactly that role list (counted by role) |
//! | `{p}ne:{node}` | string | the epoch whose sessions `n:`/`nr:` hold; they count only while it equals the lease |
//! | `{p}ts:{record}` | set | session ids of a subscription ([`TopicKey::record`]: the URI of an exact one) |
//! | `{p}st:{session}` | set | a session's subscriptions as `{id} {record}` (to clean `ts:` sets) |
//! | `{p}h:{topic}` | stream, TTL = the rule's `ttl` | a topic's kept events (`[[history]]`): field `e` = wire envelope |
//! | `{p}ib:{authid}` | sorted set, TTL = `inbox.ttl` | a user's offline inbox: publication ids by when they were kept |
//! | `{p}ibm:{authid}` | hash, TTL = `inbox.ttl` | the same messages: publication id → wire envelope (`lua/inbox.lua`) |
//! | `{p}rt:{topic}` | string, TTL = `retention.ttl` | the topic's retained event (wire envelope) |
//! | `{p}subs` | hash | subscription id → `{created ms} {record}` while it has a subscriber (`lua/subscription.lua`) |
//! | channel `{p}t:{topic}` | pub/sub | publications on a topic (prefix/wildcard subscriptions use PSUBSCRIBE globs) |
//! | channel `{p}inbox:{node}` | pub/sub | control messages for one node, and its liveness probes |
//! | channel `{p}user:{authid}` | pub/sub | publications targeted at a user (`eligible_authid`), only to nodes holding her |

use crate::model::TopicKey;
use crate::wamp::uri::MatchPolicy;

/// Builds names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// Escapes Redis glob metacharacters so a literal string matches only itself in PSUBSCRIBE.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Keys {
    /// Names under `prefix` (e.g. `switchboard:`).
    pub fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.to_owned() }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Channel of publications on `topic`.
    pub fn topic_channel(&self, topic: &str) -> String {
        format!("{}t:{topic}", self.prefix)
    }

    /// The stream of a topic's kept events (event history).
    pub fn history(&self, topic: &str) -> String {
        format!("{}h:{topic}", self.prefix)
    }

    /// Channel of publications targeted at `authid`: a node subscribes to it while it holds a session of hers.
    pub fn user_channel(&self, authid: &str) -> String {
        format!("{}user:{authid}", self.prefix)
    }

    /// A node's inbox channel.
    pub fn inbox(&self, node: &str) -> String {
        format!("{}inbox:{node}", self.prefix)
    }

    /// What a node subscribes to for a topic actor: `(name, is_pattern)`. Exact topics are channels; prefix
    /// and wildcard subscriptions are globs, which may match more than WAMP does (a wildcard `*` spans dots);
    /// the receiving broker matches precisely again.
    pub fn subscription(&self, key: &TopicKey) -> (String, bool) {
        match key.policy {
            MatchPolicy::Exact => (self.topic_channel(&key.uri), false),
            MatchPolicy::Prefix => {
                (format!("{}{}*", glob_escape(&self.topic_channel("")), glob_escape(&key.uri)), true)
            }
            MatchPolicy::Wildcard => {
                let parts: Vec<String> =
                    key.uri.split('.').map(|p| if p.is_empty() { "*".to_owned() } else { glob_escape(p) }).collect();
                (format!("{}{}", glob_escape(&self.topic_channel("")), parts.join(".")), true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key(uri: &str, policy: MatchPolicy) -> TopicKey {
        TopicKey { uri: Arc::from(uri), policy }
    }

    #[test]
    fn channels_and_globs() {
        let k = Keys::new("sb:");
        assert_eq!(k.subscription(&key("chat/lobby", MatchPolicy::Exact)), ("sb:t:chat/lobby".into(), false));
        assert_eq!(k.subscription(&key("com.app", MatchPolicy::Prefix)), ("sb:t:com.app*".into(), true));
        assert_eq!(k.subscription(&key("com..update", MatchPolicy::Wildcard)), ("sb:t:com.*.update".into(), true));
        assert_eq!(k.subscription(&key("a[1]", MatchPolicy::Prefix)), ("sb:t:a\\[1\\]*".into(), true));
        assert_eq!(k.inbox("node-a"), "sb:inbox:node-a");
    }
}
