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
use crate::model::{StoredEvent, SubscriptionInfo, TopicKey};
use crate::route::{RoutePattern, Router};
use crate::topic::broker::HistoryError;
use crate::wamp::uri::{self, MatchPolicy};
use crate::wamp::{errors, Id};

/// The procedures, by URI.
const PROCEDURES: [(&str, Meta); 7] = [
    ("wamp.subscription.list", Meta::List),
    ("wamp.subscription.lookup", Meta::Lookup),
    ("wamp.subscription.match", Meta::Match),
    ("wamp.subscription.get", Meta::Get),
    ("wamp.subscription.list_subscribers", Meta::ListSubscribers),
    ("wamp.subscription.count_subscribers", Meta::CountSubscribers),
    ("wamp.subscription.get_events", Meta::GetEvents),
];

#[derive(Debug, Clone, Copy)]
enum Meta {
    List,
    Lookup,
    Match,
    Get,
    ListSubscribers,
    CountSubscribers,
    GetEvents,
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

/// Most events one `get_events` answer carries (its `limit` is capped to it).
const MAX_EVENTS: usize = 1000;

/// The options of `wamp.subscription.get_events` (WAMP "Event History"): `limit`, `reverse`, and bounds by
/// publication (`from_publication`, `after_publication`, `before_publication`, `until_publication`) or by time
/// (`from_time`, `after_time`, `before_time`, `until_time`, RFC 3339). A publication bound that is not in the
/// history selects nothing on its side (`after_publication` of an event no longer kept answers every event).
#[derive(Debug, Default)]
struct EventQuery {
    limit: Option<usize>,
    reverse: bool,
    from_publication: Option<Id>,
    after_publication: Option<Id>,
    before_publication: Option<Id>,
    until_publication: Option<Id>,
    from_time: Option<u64>,
    after_time: Option<u64>,
    before_time: Option<u64>,
    until_time: Option<u64>,
}

impl EventQuery {
    fn parse(options: Option<&Value>) -> Result<EventQuery, CallError> {
        let options = match options {
            None | Some(Value::Null) => return Ok(EventQuery::default()),
            Some(Value::Object(options)) => options,
            Some(_) => return Err(CallError::invalid_argument("the options argument is a dictionary")),
        };
        let id = |name: &str| match options.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                v.as_u64().map(Some).ok_or_else(|| CallError::invalid_argument(format!("{name} is a publication id")))
            }
        };
        let time = |name: &str| match options.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => humantime::parse_rfc3339_weak(s)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| Some(d.as_millis() as u64))
                .ok_or_else(|| CallError::invalid_argument(format!("{name} is an RFC 3339 time"))),
            Some(_) => Err(CallError::invalid_argument(format!("{name} is an RFC 3339 time"))),
        };
        let limit = match options.get("limit") {
            None | Some(Value::Null) => None,
            Some(v) => {
                Some(v.as_u64().ok_or_else(|| CallError::invalid_argument("limit is a non-negative integer"))? as usize)
            }
        };
        let reverse = match options.get("reverse") {
            None | Some(Value::Null) => false,
            Some(v) => v.as_bool().ok_or_else(|| CallError::invalid_argument("reverse is a boolean"))?,
        };
        Ok(EventQuery {
            limit,
            reverse,
            from_publication: id("from_publication")?,
            after_publication: id("after_publication")?,
            before_publication: id("before_publication")?,
            until_publication: id("until_publication")?,
            from_time: time("from_time")?,
            after_time: time("after_time")?,
            before_time: time("before_time")?,
            until_time: time("until_time")?,
        })
    }

    /// The selected events (oldest first, or newest first with `reverse`; `limit` counts from that end) as the
    /// spec's event objects.
    fn answer(&self, subscription: Id, events: Vec<StoredEvent>) -> Value {
        let position = |id: Option<Id>| id.and_then(|id| events.iter().position(|e| e.publication.id == id));
        let mut start = 0;
        let mut end = events.len();
        if let Some(i) = position(self.from_publication) {
            start = start.max(i);
        }
        if let Some(i) = position(self.after_publication) {
            start = start.max(i + 1);
        }
        if let Some(i) = position(self.before_publication) {
            end = end.min(i);
        }
        if let Some(i) = position(self.until_publication) {
            end = end.min(i + 1);
        }
        let in_time = |e: &&StoredEvent| {
            let t = e.timestamp_ms;
            self.from_time.is_none_or(|b| t >= b)
                && self.after_time.is_none_or(|b| t > b)
                && self.before_time.is_none_or(|b| t < b)
                && self.until_time.is_none_or(|b| t <= b)
        };
        let selected: Vec<&StoredEvent> =
            events.get(start..end.max(start)).unwrap_or_default().iter().filter(in_time).collect();
        // One answer is one RESULT frame: bounded, newest first kept; older ones are asked for with
        // `before_publication` = the oldest one returned.
        let limit = self.limit.unwrap_or(MAX_EVENTS).min(MAX_EVENTS);
        let chosen: Vec<&StoredEvent> = match self.reverse {
            true => selected.into_iter().rev().take(limit).collect(),
            false => {
                let skip = selected.len().saturating_sub(limit);
                selected.into_iter().skip(skip).collect()
            }
        };
        Value::Array(chosen.into_iter().map(|e| event_object(subscription, e)).collect())
    }
}

/// One event as `get_events` answers it: `{timestamp, subscription, publication, details, args, kwargs}`.
fn event_object(subscription: Id, e: &StoredEvent) -> Value {
    let p = &e.publication;
    let mut details = serde_json::Map::new();
    p.disclose_into(&mut details);
    let timestamp = std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.timestamp_ms);
    let payload = p.parsed_payload();
    json!({
        "timestamp": humantime::format_rfc3339_millis(timestamp).to_string(),
        "subscription": subscription,
        "publication": p.id,
        "details": details,
        "args": payload.args.unwrap_or_default(),
        "kwargs": payload.kwargs.unwrap_or_default(),
    })
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
        Meta::GetEvents => {
            let id = id_arg(&call)?;
            let subscription = existing(&call, id).await?;
            if subscription.key.policy != MatchPolicy::Exact {
                return Err(CallError::invalid_argument("events are kept per topic: ask with an exact subscription"));
            }
            let query = EventQuery::parse(call.args.get(1))?;
            let events =
                call.clients.read_history(&subscription.key.uri, call.caller.clone()).await.map_err(|e| match e {
                    HistoryError::NotAuthorized(_) => CallError::new(errors::NOT_AUTHORIZED, e.to_string()),
                    HistoryError::Unavailable(_) => CallError::new(errors::REGISTRY_UNAVAILABLE, e.to_string()),
                })?;
            Ok(CallResult::value(query.answer(id, events)))
        }
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
