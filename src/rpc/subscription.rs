//! The subscription meta procedures (WAMP advanced profile, "Subscription Meta API"), cluster-wide: a
//! subscription id names the same (URI, match policy) on every node, and the answers come from the cluster's
//! registry, so `lookup` on one node and `count_subscribers` on another agree and count every node's
//! subscribers. Only roles of `meta.roles` may call them (they reveal session ids and what is subscribed).
//! When the registry cannot answer they fail with `switchboard.error.registry_unavailable` rather than answer
//! for one node as if it were the cluster.
//!
//! - `wamp.subscription.list()` → `{"exact": [id…], "prefix": [id…], "wildcard": [id…]}`
//! - `wamp.subscription.lookup(topic, {match})` → the id of that (URI, policy), or null
//! - `wamp.subscription.match(topic)` → the ids of every subscription a publication to `topic` reaches, or null
//! - `wamp.subscription.get(id)` → `{id, created, uri, match}`
//! - `wamp.subscription.list_subscribers(id)` → session ids; `count_subscribers(id)` → their number
//!
//! `list` and `match` read the whole subscription table (one Redis round trip, O(subscriptions)); the others
//! read one subscription.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{Call, CallError, CallResult, MetaPolicy, Procedure};
use crate::cluster::RegistryError;
use crate::model::{SubscriptionInfo, TopicKey};
use crate::route::{RoutePattern, Router};
use crate::wamp::uri::{self, MatchPolicy};
use crate::wamp::{errors, Id};

/// The procedures, by URI.
const PROCEDURES: [(&str, Meta); 6] = [
    ("wamp.subscription.list", Meta::List),
    ("wamp.subscription.lookup", Meta::Lookup),
    ("wamp.subscription.match", Meta::Match),
    ("wamp.subscription.get", Meta::Get),
    ("wamp.subscription.list_subscribers", Meta::ListSubscribers),
    ("wamp.subscription.count_subscribers", Meta::CountSubscribers),
];

#[derive(Debug, Clone, Copy)]
enum Meta {
    List,
    Lookup,
    Match,
    Get,
    ListSubscribers,
    CountSubscribers,
}

/// Adds the subscription meta procedures, guarded by `policy`.
pub(super) fn add_builtins(router: &mut Router<Arc<dyn Procedure>>, policy: &Arc<MetaPolicy>) {
    for (uri, which) in PROCEDURES {
        let policy = policy.clone();
        router.add(
            RoutePattern::parse(uri).expect("literal pattern"),
            Arc::new(move |call: Call| answer(policy.clone(), which, call)),
        );
    }
}

fn unavailable(e: RegistryError) -> CallError {
    CallError::new(errors::REGISTRY_UNAVAILABLE, e.to_string())
}

/// The topic URI argument.
fn topic_arg(call: &Call) -> Result<String, CallError> {
    let topic = call.arg(0)?.as_str().ok_or_else(|| CallError::invalid_argument("the argument is a topic URI"))?;
    Ok(topic.to_owned())
}

/// The subscription id argument.
fn id_arg(call: &Call) -> Result<Id, CallError> {
    call.arg(0)?.as_u64().ok_or_else(|| CallError::invalid_argument("the argument is a subscription id"))
}

/// `lookup`'s optional second argument: `{"match": "exact" | "prefix" | "wildcard"}`.
fn policy_arg(call: &Call) -> Result<MatchPolicy, CallError> {
    let options = match call.args.get(1) {
        None | Some(Value::Null) => return Ok(MatchPolicy::Exact),
        Some(Value::Object(options)) => options,
        Some(_) => return Err(CallError::invalid_argument("the options argument is a dictionary")),
    };
    match options.get("match").and_then(Value::as_str) {
        None if !options.contains_key("match") => Ok(MatchPolicy::Exact),
        Some("exact") => Ok(MatchPolicy::Exact),
        Some("prefix") => Ok(MatchPolicy::Prefix),
        Some("wildcard") => Ok(MatchPolicy::Wildcard),
        _ => Err(CallError::invalid_argument("match must be \"exact\", \"prefix\" or \"wildcard\"")),
    }
}

/// The subscription `id`, or `wamp.error.no_such_subscription`.
async fn existing(call: &Call, id: Id) -> Result<SubscriptionInfo, CallError> {
    call.clients
        .subscription(id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| CallError::new(errors::NO_SUCH_SUBSCRIPTION, format!("no subscription {id}")))
}

async fn answer(policy: Arc<MetaPolicy>, which: Meta, call: Call) -> Result<CallResult, CallError> {
    policy.check(&call.caller)?;
    match which {
        Meta::List => {
            let mut all = call.clients.subscriptions().await.map_err(unavailable)?;
            all.sort_unstable_by_key(|s| s.id);
            let ids = |policy: MatchPolicy| -> Vec<Id> {
                all.iter().filter(|s| s.key.policy == policy).map(|s| s.id).collect()
            };
            Ok(CallResult::value(json!({
                "exact": ids(MatchPolicy::Exact),
                "prefix": ids(MatchPolicy::Prefix),
                "wildcard": ids(MatchPolicy::Wildcard),
            })))
        }
        Meta::Lookup => {
            let key = TopicKey { uri: Arc::from(topic_arg(&call)?), policy: policy_arg(&call)? };
            let id = call.clients.subscription_id(&key);
            let found = call.clients.subscription(id).await.map_err(unavailable)?;
            Ok(CallResult::value(found.map_or(Value::Null, |s| s.id.into())))
        }
        Meta::Match => {
            let topic = topic_arg(&call)?;
            if !uri::is_valid_v2(&topic) {
                return Err(CallError::new(errors::INVALID_URI, "the argument is a topic URI"));
            }
            let all = call.clients.subscriptions().await.map_err(unavailable)?;
            let mut ids: Vec<Id> =
                all.iter().filter(|s| s.key.policy.matches(&s.key.uri, &topic)).map(|s| s.id).collect();
            ids.sort_unstable();
            Ok(CallResult::value(if ids.is_empty() { Value::Null } else { ids.into() }))
        }
        Meta::Get => Ok(CallResult::value(existing(&call, id_arg(&call)?).await?.details())),
        Meta::ListSubscribers | Meta::CountSubscribers => {
            let id = id_arg(&call)?;
            existing(&call, id).await?;
            let mut sessions = call.clients.subscribers(id).await.map_err(unavailable)?;
            sessions.sort_unstable();
            Ok(CallResult::value(match which {
                Meta::CountSubscribers => Value::from(sessions.len()),
                _ => sessions.into(),
            }))
        }
    }
}
