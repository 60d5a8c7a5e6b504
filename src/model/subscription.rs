//! Subscriptions as the cluster names them: one id per (URI, match policy) on every node, the record the
//! registry stores for it, and the dictionary `wamp.subscription.get` answers.
//!
//! An id is a keyed hash (HMAC-SHA256) of the policy and URI, so every node computes the same one without
//! asking anyone, and `lookup` on node A names what `count_subscribers` counts on node B. The key is the
//! cluster's session key (every node of a cluster shares it), so ids are not predictable from outside and two
//! URIs cannot be crafted to share one. Delivery never goes by id — topic actors are keyed by (URI, policy) —
//! so even a collision could only merge two subscriptions' meta views.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::TopicKey;
use crate::wamp::id::MAX_ID;
use crate::wamp::uri::MatchPolicy;
use crate::wamp::Id;

impl TopicKey {
    /// The registry's name for this subscription: the URI for an exact one, `prefix <uri>` or
    /// `wildcard <uri>` for patterns (no URI holds whitespace, so the two kinds cannot collide, and an exact
    /// topic's record is its URI, as lookups by topic read it).
    pub fn record(&self) -> Cow<'_, str> {
        match self.policy {
            MatchPolicy::Exact => Cow::Borrowed(&self.uri),
            policy => Cow::Owned(format!("{} {}", policy.as_str(), self.uri)),
        }
    }

    /// The key a [`record`](Self::record) names.
    pub fn from_record(record: &str) -> TopicKey {
        let policy = match record.split_once(' ') {
            Some(("prefix", uri)) => return TopicKey { uri: Arc::from(uri), policy: MatchPolicy::Prefix },
            Some(("wildcard", uri)) => return TopicKey { uri: Arc::from(uri), policy: MatchPolicy::Wildcard },
            _ => MatchPolicy::Exact,
        };
        TopicKey { uri: Arc::from(record), policy }
    }
}

/// Milliseconds since the Unix epoch, for [`SubscriptionInfo::created_ms`].
pub fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Computes subscription ids: the same on every node holding the same key.
#[derive(Clone)]
pub struct SubscriptionIds {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for SubscriptionIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubscriptionIds(..)")
    }
}

impl SubscriptionIds {
    /// Ids keyed by `secret` (the cluster's session key).
    pub fn new(secret: &[u8]) -> SubscriptionIds {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"switchboard subscription ids").expect("HMAC takes any key");
        mac.update(secret);
        let derived = mac.finalize().into_bytes();
        SubscriptionIds { mac: Hmac::new_from_slice(&derived).expect("HMAC takes any key") }
    }

    /// The id of the subscription `key`: in `1..=2^53`, as WAMP ids are.
    pub fn id(&self, key: &TopicKey) -> Id {
        let mut mac = self.mac.clone();
        mac.update(key.policy.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(key.uri.as_bytes());
        let digest = mac.finalize().into_bytes();
        let bits = u64::from_be_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"));
        bits % MAX_ID + 1
    }
}

/// A subscription somewhere in the cluster: what `wamp.subscription.get` describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// Its id.
    pub id: Id,
    /// URI and match policy.
    pub key: TopicKey,
    /// When its first subscriber (cluster-wide) subscribed, in milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl SubscriptionInfo {
    /// The spec's dictionary: `id`, `created` (ISO 8601, UTC), `uri`, `match`.
    pub fn details(&self) -> Value {
        let created = UNIX_EPOCH + Duration::from_millis(self.created_ms);
        json!({
            "id": self.id,
            "created": humantime::format_rfc3339_millis(created).to_string(),
            "uri": &*self.key.uri,
            "match": self.key.policy.as_str(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(uri: &str, policy: MatchPolicy) -> TopicKey {
        TopicKey { uri: Arc::from(uri), policy }
    }

    #[test]
    fn records_name_uri_and_policy_and_read_back() {
        for k in [
            key("chat.lobby", MatchPolicy::Exact),
            key("chat.", MatchPolicy::Prefix),
            key("a..c", MatchPolicy::Wildcard),
        ] {
            assert_eq!(TopicKey::from_record(&k.record()), k);
        }
        assert_eq!(key("http://x/y#z", MatchPolicy::Exact).record(), "http://x/y#z", "exact: the URI itself");
        assert_eq!(key("chat.", MatchPolicy::Prefix).record(), "prefix chat.");
    }

    #[test]
    fn ids_agree_for_one_key_and_differ_by_uri_policy_and_secret() {
        let (a, b) = (SubscriptionIds::new(b"cluster key"), SubscriptionIds::new(b"cluster key"));
        let lobby = key("chat.lobby", MatchPolicy::Exact);
        assert_eq!(a.id(&lobby), b.id(&lobby), "two nodes with one key");
        assert_ne!(a.id(&lobby), a.id(&key("chat.lobby", MatchPolicy::Prefix)));
        assert_ne!(a.id(&lobby), a.id(&key("chat.lobby2", MatchPolicy::Exact)));
        assert_ne!(a.id(&lobby), SubscriptionIds::new(b"another key").id(&lobby));
        let ids: std::collections::HashSet<Id> =
            (0..10_000).map(|i| a.id(&key(&format!("t.{i}"), MatchPolicy::Exact))).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| (1..=MAX_ID).contains(id)));
    }

    #[test]
    fn details_follow_the_spec() {
        let info = SubscriptionInfo { id: 5, key: key("chat.", MatchPolicy::Prefix), created_ms: 1_000 };
        assert_eq!(
            info.details(),
            json!({"id": 5, "created": "1970-01-01T00:00:01.000Z", "uri": "chat.", "match": "prefix"})
        );
    }
}
