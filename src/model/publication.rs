//! What a publication is, whichever layer holds it: the topic key it is routed by, its publisher, its payload
//! and the publication itself with its wire forms computed at most once. The topic layer delivers it, the
//! cluster layer carries it between nodes; neither owns it.

use std::any::Any;
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::wamp::filter::{AdmitSet, Filters};
use crate::wamp::uri::MatchPolicy;
use crate::wamp::Id;

/// Identifies one topic actor: a subscription URI and how it matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicKey {
    /// The subscription URI (a concrete topic for `Exact`).
    pub uri: Arc<str>,
    /// The match policy.
    pub policy: MatchPolicy,
}

impl TopicKey {
    /// An exact-match key.
    pub fn exact(uri: &str) -> TopicKey {
        TopicKey { uri: Arc::from(uri), policy: MatchPolicy::Exact }
    }
}

/// The publisher of a publication, when it is a session (absent for library and API publishes).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Publisher {
    /// WAMP session id.
    pub session: Id,
    /// Username.
    pub authid: String,
    /// Primary role.
    pub authrole: String,
}

/// The payload of a publication: WAMP v2 positional and keyword arguments.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Payload {
    /// Positional arguments.
    pub args: Option<Vec<Value>>,
    /// Keyword arguments.
    pub kwargs: Option<Map<String, Value>>,
}

impl Payload {
    /// A payload with one positional argument (what a WAMP v1 event becomes).
    pub fn single(value: Value) -> Payload {
        Payload { args: Some(vec![value]), kwargs: None }
    }

    /// The single value a WAMP v1 client receives: the only positional argument if that is all there is,
    /// else the argument list, else the keyword dictionary, else `{"args": [...], "kwargs": {...}}`.
    pub fn to_v1_value(&self) -> Value {
        let kwargs = self.kwargs.as_ref().filter(|k| !k.is_empty());
        match (&self.args, kwargs) {
            (None, None) => Value::Null,
            (Some(a), None) if a.len() == 1 => a[0].clone(),
            (Some(a), None) => Value::Array(a.clone()),
            (None, Some(k)) => Value::Object(k.clone()),
            (Some(a), Some(k)) if a.is_empty() => Value::Object(k.clone()),
            (Some(a), Some(k)) => serde_json::json!({ "args": a, "kwargs": k }),
        }
    }
}

/// A payload kept as the raw JSON another node sent: arguments and keyword arguments.
#[derive(Debug)]
struct RawPayload {
    args: Option<Box<serde_json::value::RawValue>>,
    kwargs: Option<Box<serde_json::value::RawValue>>,
}

/// A payload's JSON text as a v2 EVENT appends it (`,[args],{kwargs}`), and where in it each part lies.
#[derive(Debug)]
struct JsonTail {
    text: String,
    args: Option<std::ops::Range<usize>>,
    kwargs: Option<std::ops::Range<usize>>,
}

/// One publication on its way to subscribers. Shared (`Arc`) by every topic actor it reaches; the wire
/// forms of the payload are computed at most once each.
#[derive(Debug)]
pub struct Publication {
    /// Publication id (random, global scope).
    pub id: Id,
    /// The concrete topic published to.
    pub topic: String,
    /// Who published, if a session did.
    pub publisher: Option<Publisher>,
    /// Leave the publisher out.
    pub exclude_me: bool,
    /// Reveal the publisher in v2 EVENT details.
    pub disclose_me: bool,
    /// Receiver filters.
    pub filters: Filters,
    /// The payload. Publications received from another node keep theirs as raw JSON instead (see
    /// [`Publication::from_raw`]), and this is empty: they are only ever delivered, never inspected.
    pub payload: Payload,
    /// The payload as received from another node.
    raw: Option<RawPayload>,
    /// The payload's JSON text as a v2 EVENT appends it, written on first use.
    json: OnceLock<JsonTail>,
    v1_event: OnceLock<String>,
    /// The filters as hash sets, built by the first topic actor that needs them.
    admit: OnceLock<AdmitSet>,
    /// What the node's backlog attached to account for it (returned when the last reference drops); opaque
    /// here, so the model does not depend on the topic layer.
    charge: OnceLock<Box<dyn Any + Send + Sync>>,
    /// The publishing node wants to know how many sockets took it (a delivery result); carried on the wire.
    pub receipt: bool,
    /// The node that published it, for a receipt (set for remote publications that want one).
    pub origin: Option<String>,
    /// Kept in its user's offline inbox (`[inbox]`): a node whose socket of hers takes it removes it there.
    pub inboxed: bool,
    /// Where this node's topics report the sockets that took it, when a receipt is wanted.
    receipt_sink: OnceLock<ReceiptSink>,
}

/// Counts, for a delivery result, the sockets of this node that took a publication (called by each topic
/// actor that delivered it, with its count).
#[derive(Clone)]
pub struct ReceiptSink(pub std::sync::Arc<dyn Fn(Id, u64) + Send + Sync>);

impl std::fmt::Debug for ReceiptSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReceiptSink(..)")
    }
}

impl Publication {
    /// A new publication with a fresh id.
    pub fn new(topic: String, payload: Payload, filters: Filters) -> Publication {
        Publication::with_id(crate::wamp::id::random(), topic, payload, filters)
    }

    /// A publication with a known id (one received from another node).
    pub fn with_id(id: Id, topic: String, payload: Payload, filters: Filters) -> Publication {
        Publication {
            id,
            topic,
            publisher: None,
            exclude_me: false,
            disclose_me: false,
            filters,
            payload,
            raw: None,
            json: OnceLock::new(),
            v1_event: OnceLock::new(),
            admit: OnceLock::new(),
            charge: OnceLock::new(),
            receipt: false,
            origin: None,
            inboxed: false,
            receipt_sink: OnceLock::new(),
        }
    }

    /// A publication received from another node, its payload still raw JSON: EVENT frames splice the bytes in
    /// as they are, so the receiving node never builds a JSON tree for it.
    pub fn from_raw(
        id: Id,
        topic: String,
        args: Option<Box<serde_json::value::RawValue>>,
        kwargs: Option<Box<serde_json::value::RawValue>>,
        filters: Filters,
    ) -> Publication {
        let mut p = Publication::with_id(id, topic, Payload::default(), filters);
        p.raw = Some(RawPayload { args, kwargs });
        p
    }

    /// The payload, parsing the raw form of a publication from another node when needed.
    pub fn parsed_payload(&self) -> Payload {
        match &self.raw {
            None => self.payload.clone(),
            Some(raw) => Payload {
                args: raw.args.as_ref().and_then(|a| serde_json::from_str(a.get()).ok()),
                kwargs: raw.kwargs.as_ref().and_then(|k| serde_json::from_str(k.get()).ok()),
            },
        }
    }

    /// Adds the publisher to EVENT `details` (`publisher`, `publisher_authid`, `publisher_authrole`) when it
    /// asked to be disclosed (`disclose_me`).
    pub fn disclose_into(&self, details: &mut serde_json::Map<String, serde_json::Value>) {
        if let (true, Some(p)) = (self.disclose_me, &self.publisher) {
            details.insert("publisher".into(), p.session.into());
            details.insert("publisher_authid".into(), p.authid.as_str().into());
            details.insert("publisher_authrole".into(), p.authrole.as_str().into());
        }
    }

    /// Where this node's topics report deliveries for a receipt (see [`ReceiptSink`]); set once.
    pub fn set_receipt_sink(&self, sink: ReceiptSink) {
        let _ = self.receipt_sink.set(sink);
    }

    /// The receipt sink, if one was set.
    pub fn receipt_sink(&self) -> Option<&ReceiptSink> {
        self.receipt_sink.get()
    }

    /// Sets the publishing session.
    pub fn with_publisher(mut self, publisher: Publisher, exclude_me: bool, disclose_me: bool) -> Publication {
        self.publisher = Some(publisher);
        self.exclude_me = exclude_me;
        self.disclose_me = disclose_me;
        self
    }

    /// The arguments and keyword arguments as JSON text: the raw bytes another node sent, or the local payload
    /// serialised once (inside [`v2_tail`](Self::v2_tail)). Every wire form of the payload is written from
    /// these, without a value tree.
    pub fn payload_json(&self) -> (Option<&str>, Option<&str>) {
        if let Some(raw) = &self.raw {
            return (raw.args.as_deref().map(RawValue::get), raw.kwargs.as_deref().map(RawValue::get));
        }
        let tail = self.json_tail();
        let part = |range: &Option<std::ops::Range<usize>>| range.clone().map(|r| &tail.text[r]);
        (part(&tail.args), part(&tail.kwargs))
    }

    /// The `,[args],{kwargs}` tail of a v2 JSON EVENT, written on first use (spliced from raw JSON for
    /// publications from other nodes).
    pub fn v2_tail(&self) -> &str {
        &self.json_tail().text
    }

    fn json_tail(&self) -> &JsonTail {
        self.json.get_or_init(|| {
            let (args, kwargs): (Option<Cow<'_, str>>, Option<Cow<'_, str>>) = match &self.raw {
                Some(raw) => {
                    (raw.args.as_deref().map(|a| a.get().into()), raw.kwargs.as_deref().map(|k| k.get().into()))
                }
                // Writing a JSON tree to a string cannot fail.
                None => (
                    self.payload.args.as_ref().map(|a| serde_json::to_string(a).unwrap_or_default().into()),
                    self.payload.kwargs.as_ref().map(|k| serde_json::to_string(k).unwrap_or_default().into()),
                ),
            };
            let mut text = String::new();
            let mut append = |part: &str| {
                text.push(',');
                let start = text.len();
                text.push_str(part);
                start..text.len()
            };
            // Keyword arguments need their list before them, if an empty one.
            let args = match (&args, &kwargs) {
                (Some(a), _) => Some(append(a)),
                (None, Some(_)) => {
                    append("[]");
                    None
                }
                (None, None) => None,
            };
            let kwargs = kwargs.map(|k| append(&k));
            JsonTail { text, args, kwargs }
        })
    }

    /// The event value of a v1 EVENT as JSON, serialised on first use.
    pub fn v1_event(&self) -> &str {
        self.v1_event.get_or_init(|| self.parsed_payload().to_v1_value().to_string())
    }

    /// The filters as hash sets, built on first use and shared by every topic actor the publication reaches.
    pub fn admit_set(&self) -> &AdmitSet {
        self.admit.get_or_init(|| AdmitSet::new(&self.filters))
    }

    /// Whether the subscriber `session` (of `authid`, holding `authroles`) should receive this publication
    /// (exclude_me and every filter).
    pub fn admits(&self, session: Id, authid: &str, authroles: &[String]) -> bool {
        if self.exclude_me && self.publisher.as_ref().is_some_and(|p| p.session == session) {
            return false;
        }
        self.admit_set().admits(session, authid, authroles)
    }

    /// Attaches the backlog's account of this publication, once; `false` if one is attached already.
    pub(crate) fn attach_charge(&self, charge: Box<dyn Any + Send + Sync>) -> bool {
        self.charge.set(charge).is_ok()
    }

    /// The backlog's account of this publication, if it attached one of type `T`.
    pub(crate) fn charge<T: Any>(&self) -> Option<&T> {
        self.charge.get().and_then(|c| c.downcast_ref::<T>())
    }

    /// Roughly the heap bytes this publication holds while queued: the topic, the payload (twice: its JSON
    /// tree and the EVENT forms cached from it), the filters and their hash sets. An estimate for the backlog,
    /// not an allocator's count.
    pub fn approx_bytes(&self) -> usize {
        let payload = match &self.raw {
            None => {
                let args = self.payload.args.iter().flatten();
                let kwargs = self.payload.kwargs.iter().flatten().map(|(k, v)| k.len() + json_bytes(v));
                args.map(json_bytes).sum::<usize>() + kwargs.sum::<usize>()
            }
            Some(raw) => [&raw.args, &raw.kwargs].into_iter().flatten().map(|r| r.get().len()).sum(),
        };
        std::mem::size_of::<Publication>()
            + self.topic.len()
            + 2 * payload
            + self.filters.approx_bytes()
            + AdmitSet::approx_bytes(&self.filters)
    }
}

/// Roughly the heap bytes of a JSON tree: one `Value` per node, plus string and key bytes. Iterative, so a
/// deeply nested value built by application code cannot overflow the stack.
fn json_bytes(value: &Value) -> usize {
    const NODE: usize = std::mem::size_of::<Value>();
    const KEY: usize = std::mem::size_of::<String>();
    let (mut total, mut stack) = (0, vec![value]);
    while let Some(v) = stack.pop() {
        total += NODE;
        match v {
            Value::String(s) => total += s.len(),
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                total += map.keys().map(|k| KEY + k.len()).sum::<usize>();
                stack.extend(map.values());
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn v1_value_mapping() {
        assert_eq!(Payload::single(json!("hi")).to_v1_value(), json!("hi"));
        assert_eq!(Payload { args: Some(vec![json!(1), json!(2)]), kwargs: None }.to_v1_value(), json!([1, 2]));
        let kw: Map<String, Value> = serde_json::from_str(r#"{"a":1}"#).unwrap();
        assert_eq!(Payload { args: Some(vec![]), kwargs: Some(kw.clone()) }.to_v1_value(), json!({"a":1}));
        assert_eq!(
            Payload { args: Some(vec![json!(1)]), kwargs: Some(kw) }.to_v1_value(),
            json!({"args":[1],"kwargs":{"a":1}})
        );
        assert_eq!(Payload::default().to_v1_value(), Value::Null);
    }
}
