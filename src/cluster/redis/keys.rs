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
//!
//! **On a Redis Cluster** (`redis.cluster`, [`Keys::sharded`]) every key above is written under the hash tag
//! `{<prefix>}` (e.g. `{switchboard:}s:42`), so the registry's Lua scripts and pipelines stay within one slot;
//! channels and history streams are spread instead: each carries the hash tag of its own name
//! (`switchboard:t:{<hash of the topic>}<topic>`, `…user:{…}<authid>`, `…inbox:{…}<node>`, and
//! `…h:{<hash of the topic>}<topic>` in the same slot as the topic's channel, so keeping and publishing stay one
//! MULTI), and are used with sharded pub/sub (SSUBSCRIBE/SPUBLISH). Sharded pub/sub has no patterns: a
//! publication also goes to one of [`PATTERN_BUCKETS`] pattern channels `…pat:{<n>}`, chosen by its topic's
//! first URI component, and a prefix or wildcard subscription listens on the bucket of its first component, or
//! on all of them when that component is not fixed (a prefix without a dot, a wildcard starting with one).

use crate::model::TopicKey;
use crate::wamp::uri::MatchPolicy;

/// Pattern channels on a Redis Cluster (see the module's documentation).
pub const PATTERN_BUCKETS: u32 = 64;

/// Builds names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The prefix of keys (hash-tagged on a Redis Cluster).
    prefix: String,
    /// The prefix of channels and history streams (the configured prefix).
    channels: String,
    sharded: bool,
}

/// What a node listens on for one topic actor.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// One channel (SUBSCRIBE, or SSUBSCRIBE on a Redis Cluster).
    Channel(String),
    /// A glob (PSUBSCRIBE): a standalone Redis's prefix and wildcard subscriptions.
    Glob(String),
    /// Pattern channels shared with other subscriptions (a Redis Cluster's prefix and wildcard subscriptions).
    Buckets(Vec<String>),
}

/// FNV-1a (64-bit): the same on every node and every version, unlike std's hasher.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// A Redis Cluster hash tag naming `name`'s slot: `{<16 hex digits>}`, whatever characters `name` holds.
fn tag(name: &str) -> String {
    format!("{{{:016x}}}", fnv1a(name))
}

/// Escapes Redis glob metacharacters so a literal string matches only itself in PSUBSCRIBE.
pub fn glob_escape(s: &str) -> String {
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
    /// Names under `prefix` (e.g. `switchboard:`) on a standalone (or Sentinel-managed) Redis.
    pub fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.to_owned(), channels: prefix.to_owned(), sharded: false }
    }

    /// Names under `prefix` on a Redis Cluster: keys in the slot of `{prefix}`, channels spread by name.
    pub fn sharded(prefix: &str) -> Keys {
        Keys { prefix: format!("{{{prefix}}}"), channels: prefix.to_owned(), sharded: true }
    }

    /// The prefix of keys: what the Lua scripts get (and, on a Redis Cluster, a key of their slot).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether channels are sharded (SSUBSCRIBE/SPUBLISH on a Redis Cluster).
    pub fn sharded_pubsub(&self) -> bool {
        self.sharded
    }

    /// `SPUBLISH` on a Redis Cluster, else `PUBLISH`.
    pub fn publish_command(&self) -> &'static str {
        if self.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// `kind` + `name`, hash-tagged by `name` on a Redis Cluster.
    fn spread(&self, kind: &str, name: &str) -> String {
        match self.sharded {
            false => format!("{}{kind}:{name}", self.channels),
            true => format!("{}{kind}:{}{name}", self.channels, tag(name)),
        }
    }

    /// Channel of publications on `topic`.
    pub fn topic_channel(&self, topic: &str) -> String {
        self.spread("t", topic)
    }

    /// The stream of a topic's kept events (event history); on a Redis Cluster in its channel's slot.
    pub fn history(&self, topic: &str) -> String {
        self.spread("h", topic)
    }

    /// Channel of publications targeted at `authid`: a node subscribes to it while it holds a session of hers.
    pub fn user_channel(&self, authid: &str) -> String {
        self.spread("user", authid)
    }

    /// A node's inbox channel.
    pub fn inbox(&self, node: &str) -> String {
        self.spread("inbox", node)
    }

    /// The pattern channel a publication on `topic` also goes to on a Redis Cluster (`None` elsewhere:
    /// PSUBSCRIBE globs see the topic channel).
    pub fn pattern_channel(&self, topic: &str) -> Option<String> {
        self.sharded.then(|| self.bucket(topic.split('.').next().unwrap_or(topic)))
    }

    fn bucket(&self, first_component: &str) -> String {
        self.bucket_channel(fnv1a(first_component) % u64::from(PATTERN_BUCKETS))
    }

    fn bucket_channel(&self, n: u64) -> String {
        format!("{}pat:{{{n}}}", self.channels)
    }

    /// What a node listens on for a topic actor. Exact topics are channels; prefix and wildcard subscriptions
    /// are globs (standalone) or pattern channels (Redis Cluster), which may match more than WAMP does (a
    /// wildcard `*` spans dots); the receiving broker matches precisely again.
    pub fn subscription(&self, key: &TopicKey) -> Route {
        let first = key.uri.split('.').next().unwrap_or("");
        match (key.policy, self.sharded) {
            (MatchPolicy::Exact, _) => Route::Channel(self.topic_channel(&key.uri)),
            (MatchPolicy::Prefix, false) => {
                Route::Glob(format!("{}{}*", glob_escape(&self.topic_channel("")), glob_escape(&key.uri)))
            }
            (MatchPolicy::Wildcard, false) => {
                let parts: Vec<String> =
                    key.uri.split('.').map(|p| if p.is_empty() { "*".to_owned() } else { glob_escape(p) }).collect();
                Route::Glob(format!("{}{}", glob_escape(&self.topic_channel("")), parts.join(".")))
            }
            // The first component is fixed: a prefix that goes past it, a wildcard that starts with it.
            (MatchPolicy::Prefix, true) if key.uri.contains('.') => Route::Buckets(vec![self.bucket(first)]),
            (MatchPolicy::Wildcard, true) if !first.is_empty() => Route::Buckets(vec![self.bucket(first)]),
            (_, true) => Route::Buckets((0..u64::from(PATTERN_BUCKETS)).map(|n| self.bucket_channel(n)).collect()),
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
        assert_eq!(k.subscription(&key("chat/lobby", MatchPolicy::Exact)), Route::Channel("sb:t:chat/lobby".into()));
        assert_eq!(k.subscription(&key("com.app", MatchPolicy::Prefix)), Route::Glob("sb:t:com.app*".into()));
        assert_eq!(k.subscription(&key("com..update", MatchPolicy::Wildcard)), Route::Glob("sb:t:com.*.update".into()));
        assert_eq!(k.subscription(&key("a[1]", MatchPolicy::Prefix)), Route::Glob("sb:t:a\\[1\\]*".into()));
        assert_eq!(k.inbox("node-a"), "sb:inbox:node-a");
        assert_eq!(k.pattern_channel("com.app.x"), None);
    }

    /// Redis's hash tag: the text between the first `{` and the next `}`, if not empty.
    fn hash_tag(name: &str) -> &str {
        let start = name.find('{').unwrap() + 1;
        let end = start + name[start..].find('}').unwrap();
        &name[start..end]
    }

    #[test]
    fn on_a_redis_cluster_keys_share_one_slot_and_channels_spread() {
        let k = Keys::sharded("sb:");
        assert_eq!(k.prefix(), "{sb:}");
        for topic in ["chat/lobby", "}odd{topic", ""] {
            let (channel, stream) = (k.topic_channel(topic), k.history(topic));
            assert!(channel.starts_with("sb:t:{") && channel.ends_with(topic), "{channel}");
            assert_eq!(hash_tag(&channel), hash_tag(&stream), "a topic's channel and stream share a slot");
            assert_eq!(hash_tag(&channel).len(), 16);
        }
        assert_ne!(hash_tag(&k.topic_channel("a")), hash_tag(&k.topic_channel("b")));
        assert_eq!(k.topic_channel("a"), Keys::sharded("sb:").topic_channel("a"), "every node names alike");
        assert!(hash_tag(&k.inbox("node-a")).len() == 16 && hash_tag(&k.user_channel("alice")).len() == 16);

        let bucket = k.pattern_channel("com.app.update").unwrap();
        assert_eq!(k.pattern_channel("com.other"), Some(bucket.clone()), "buckets go by the first component");
        assert_eq!(k.subscription(&key("com.app", MatchPolicy::Prefix)), Route::Buckets(vec![bucket.clone()]));
        assert_eq!(k.subscription(&key("com..update", MatchPolicy::Wildcard)), Route::Buckets(vec![bucket]));
        for unfixed in [key("co", MatchPolicy::Prefix), key(".app.update", MatchPolicy::Wildcard)] {
            let Route::Buckets(all) = k.subscription(&unfixed) else { panic!() };
            assert_eq!(all.len(), PATTERN_BUCKETS as usize);
        }
    }
}
