//! WAMP v2 messages, written and read as `wamp.2.json` and, through [`super::serial`], `wamp.2.msgpack` and
//! `wamp.2.cbor`.
//!
//! [`Message`] holds every message of the Basic Profile in both directions, so the router and the test
//! client share one codec. [`Message::decode`] is the syntax stage (element count and JSON types);
//! [`PublishOptions::parse`] and [`SubscribeOptions::parse`] are the meaning stage for option dictionaries.
//! EVENT frames, the hot path of fan-out, are built by [`encode_event`] from a payload serialised once.

use serde_json::{json, Map, Value};

use super::id::Id;
use super::Serializer;

mod decode;
use decode::name_of;
mod options;
#[cfg(test)]
mod tests;

pub use options::{OptionError, PublishOptions, SubscribeOptions};

/// A WAMP dictionary.
pub type Dict = Map<String, Value>;

/// Message type codes of WAMP v2.
pub mod code {
    #![allow(missing_docs)]
    pub const HELLO: u64 = 1;
    pub const WELCOME: u64 = 2;
    pub const ABORT: u64 = 3;
    pub const CHALLENGE: u64 = 4;
    pub const AUTHENTICATE: u64 = 5;
    pub const GOODBYE: u64 = 6;
    pub const ERROR: u64 = 8;
    pub const PUBLISH: u64 = 16;
    pub const PUBLISHED: u64 = 17;
    pub const SUBSCRIBE: u64 = 32;
    pub const SUBSCRIBED: u64 = 33;
    pub const UNSUBSCRIBE: u64 = 34;
    pub const UNSUBSCRIBED: u64 = 35;
    pub const EVENT: u64 = 36;
    pub const CALL: u64 = 48;
    pub const CANCEL: u64 = 49;
    pub const RESULT: u64 = 50;
    pub const REGISTER: u64 = 64;
    pub const REGISTERED: u64 = 65;
    pub const UNREGISTER: u64 = 66;
    pub const UNREGISTERED: u64 = 67;
    pub const INVOCATION: u64 = 68;
    pub const INTERRUPT: u64 = 69;
    pub const YIELD: u64 = 70;
}

/// One WAMP v2 message. Field names follow the spec layout given in each variant's doc.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `[HELLO, Realm|uri, Details|dict]`
    Hello { realm: String, details: Dict },
    /// `[WELCOME, Session|id, Details|dict]`
    Welcome { session: Id, details: Dict },
    /// `[ABORT, Details|dict, Reason|uri]`
    Abort { details: Dict, reason: String },
    /// `[CHALLENGE, AuthMethod|string, Extra|dict]`
    Challenge { method: String, extra: Dict },
    /// `[AUTHENTICATE, Signature|string, Extra|dict]`
    Authenticate { signature: String, extra: Dict },
    /// `[GOODBYE, Details|dict, Reason|uri]`
    Goodbye { details: Dict, reason: String },
    /// `[ERROR, REQUEST.Type|int, REQUEST.Request|id, Details|dict, Error|uri, Arguments|list, ArgumentsKw|dict]`
    Error {
        request_type: u64,
        request: Id,
        details: Dict,
        error: String,
        args: Option<Vec<Value>>,
        kwargs: Option<Dict>,
    },
    /// `[PUBLISH, Request|id, Options|dict, Topic|uri, Arguments|list, ArgumentsKw|dict]`
    Publish { request: Id, options: Dict, topic: String, args: Option<Vec<Value>>, kwargs: Option<Dict> },
    /// `[PUBLISHED, PUBLISH.Request|id, Publication|id]`
    Published { request: Id, publication: Id },
    /// `[SUBSCRIBE, Request|id, Options|dict, Topic|uri]`
    Subscribe { request: Id, options: Dict, topic: String },
    /// `[SUBSCRIBED, SUBSCRIBE.Request|id, Subscription|id]`
    Subscribed { request: Id, subscription: Id },
    /// `[UNSUBSCRIBE, Request|id, SUBSCRIBED.Subscription|id]`
    Unsubscribe { request: Id, subscription: Id },
    /// `[UNSUBSCRIBED, UNSUBSCRIBE.Request|id]`
    Unsubscribed { request: Id },
    /// `[EVENT, Subscription|id, Publication|id, Details|dict, Arguments|list, ArgumentsKw|dict]`
    Event { subscription: Id, publication: Id, details: Dict, args: Option<Vec<Value>>, kwargs: Option<Dict> },
    /// `[CALL, Request|id, Options|dict, Procedure|uri, Arguments|list, ArgumentsKw|dict]`
    Call { request: Id, options: Dict, procedure: String, args: Option<Vec<Value>>, kwargs: Option<Dict> },
    /// `[RESULT, CALL.Request|id, Details|dict, Arguments|list, ArgumentsKw|dict]`
    Result { request: Id, details: Dict, args: Option<Vec<Value>>, kwargs: Option<Dict> },
    /// `[REGISTER, Request|id, Options|dict, Procedure|uri]`
    Register { request: Id, options: Dict, procedure: String },
    /// `[REGISTERED, REGISTER.Request|id, Registration|id]`
    Registered { request: Id, registration: Id },
    /// `[UNREGISTER, Request|id, REGISTERED.Registration|id]`
    Unregister { request: Id, registration: Id },
    /// `[UNREGISTERED, UNREGISTER.Request|id]`
    Unregistered { request: Id },
    /// A message the spec defines but switchboard does not implement (CANCEL, INVOCATION, INTERRUPT, YIELD). Kept whole so the router can answer it precisely.
    Unimplemented { code: u64, name: &'static str, request: Option<Id> },
}

impl Message {
    /// The message type code.
    pub fn code(&self) -> u64 {
        match self {
            Message::Hello { .. } => code::HELLO,
            Message::Welcome { .. } => code::WELCOME,
            Message::Abort { .. } => code::ABORT,
            Message::Challenge { .. } => code::CHALLENGE,
            Message::Authenticate { .. } => code::AUTHENTICATE,
            Message::Goodbye { .. } => code::GOODBYE,
            Message::Error { .. } => code::ERROR,
            Message::Publish { .. } => code::PUBLISH,
            Message::Published { .. } => code::PUBLISHED,
            Message::Subscribe { .. } => code::SUBSCRIBE,
            Message::Subscribed { .. } => code::SUBSCRIBED,
            Message::Unsubscribe { .. } => code::UNSUBSCRIBE,
            Message::Unsubscribed { .. } => code::UNSUBSCRIBED,
            Message::Event { .. } => code::EVENT,
            Message::Call { .. } => code::CALL,
            Message::Result { .. } => code::RESULT,
            Message::Register { .. } => code::REGISTER,
            Message::Registered { .. } => code::REGISTERED,
            Message::Unregister { .. } => code::UNREGISTER,
            Message::Unregistered { .. } => code::UNREGISTERED,
            Message::Unimplemented { code, .. } => *code,
        }
    }

    /// The message name as the spec writes it (`SUBSCRIBE`).
    pub fn name(&self) -> &'static str {
        name_of(self.code()).unwrap_or("UNKNOWN")
    }

    /// Serialises this message as one `wamp.2.json` text frame.
    pub fn encode(&self) -> String {
        self.to_value().to_string()
    }

    /// Serialises this message as one frame of `serializer` (UTF-8 text for JSON, binary for the others).
    pub fn encode_as(&self, serializer: Serializer) -> Vec<u8> {
        match serializer {
            Serializer::Json => self.encode().into_bytes(),
            binary => binary.encode(&self.to_value()),
        }
    }

    /// This message as the array every serializer writes.
    pub fn to_value(&self) -> Value {
        fn with_payload(mut items: Vec<Value>, args: &Option<Vec<Value>>, kwargs: &Option<Dict>) -> Value {
            match (args, kwargs) {
                (None, None) => {}
                (Some(a), None) => items.push(Value::Array(a.clone())),
                (a, Some(k)) => {
                    items.push(Value::Array(a.clone().unwrap_or_default()));
                    items.push(Value::Object(k.clone()));
                }
            }
            Value::Array(items)
        }
        match self {
            Message::Hello { realm, details } => json!([code::HELLO, realm, details]),
            Message::Welcome { session, details } => json!([code::WELCOME, session, details]),
            Message::Abort { details, reason } => json!([code::ABORT, details, reason]),
            Message::Challenge { method, extra } => json!([code::CHALLENGE, method, extra]),
            Message::Authenticate { signature, extra } => json!([code::AUTHENTICATE, signature, extra]),
            Message::Goodbye { details, reason } => json!([code::GOODBYE, details, reason]),
            Message::Error { request_type, request, details, error, args, kwargs } => with_payload(
                vec![json!(code::ERROR), json!(request_type), json!(request), json!(details), json!(error)],
                args,
                kwargs,
            ),
            Message::Publish { request, options, topic, args, kwargs } => {
                with_payload(vec![json!(code::PUBLISH), json!(request), json!(options), json!(topic)], args, kwargs)
            }
            Message::Published { request, publication } => json!([code::PUBLISHED, request, publication]),
            Message::Subscribe { request, options, topic } => json!([code::SUBSCRIBE, request, options, topic]),
            Message::Subscribed { request, subscription } => json!([code::SUBSCRIBED, request, subscription]),
            Message::Unsubscribe { request, subscription } => json!([code::UNSUBSCRIBE, request, subscription]),
            Message::Unsubscribed { request } => json!([code::UNSUBSCRIBED, request]),
            Message::Event { subscription, publication, details, args, kwargs } => with_payload(
                vec![json!(code::EVENT), json!(subscription), json!(publication), json!(details)],
                args,
                kwargs,
            ),
            Message::Call { request, options, procedure, args, kwargs } => {
                with_payload(vec![json!(code::CALL), json!(request), json!(options), json!(procedure)], args, kwargs)
            }
            Message::Result { request, details, args, kwargs } => {
                with_payload(vec![json!(code::RESULT), json!(request), json!(details)], args, kwargs)
            }
            Message::Register { request, options, procedure } => json!([code::REGISTER, request, options, procedure]),
            Message::Registered { request, registration } => json!([code::REGISTERED, request, registration]),
            Message::Unregister { request, registration } => json!([code::UNREGISTER, request, registration]),
            Message::Unregistered { request } => json!([code::UNREGISTERED, request]),
            Message::Unimplemented { code, request, .. } => match request {
                Some(r) => json!([code, r]),
                None => json!([code]),
            },
        }
    }

    /// Shorthand for an ERROR reply to a request, with a human-readable message as the first argument.
    pub fn error(request_type: u64, request: Id, error: &str, message: impl Into<String>) -> Message {
        Message::Error {
            request_type,
            request,
            details: Dict::new(),
            error: error.to_owned(),
            args: Some(vec![Value::String(message.into())]),
            kwargs: None,
        }
    }

    /// Shorthand for an ABORT carrying a reason URI and a human-readable message.
    pub fn abort(reason: &str, message: impl Into<String>) -> Message {
        let mut details = Dict::new();
        details.insert("message".into(), Value::String(message.into()));
        Message::Abort { details, reason: reason.to_owned() }
    }

    /// Shorthand for a GOODBYE carrying a reason URI and a human-readable message.
    pub fn goodbye(reason: &str, message: impl Into<String>) -> Message {
        let mut details = Dict::new();
        details.insert("message".into(), Value::String(message.into()));
        Message::Goodbye { details, reason: reason.to_owned() }
    }
}

/// Serialises the argument part of a payload once: `""`, `,[args]` or `,[args],{kwargs}` — ready to be
/// appended after the fixed elements of EVENT (see [`encode_event`]).
pub fn encode_payload_tail(args: &Option<Vec<Value>>, kwargs: &Option<Dict>) -> String {
    match (args, kwargs) {
        (None, None) => String::new(),
        (Some(a), None) => format!(",{}", Value::Array(a.clone())),
        (a, Some(k)) => format!(",{},{}", Value::Array(a.clone().unwrap_or_default()), Value::Object(k.clone())),
    }
}

/// The publication id of an EVENT frame built by [`encode_event`], read without decoding the frame.
pub fn event_publication(frame: impl AsRef<[u8]>) -> Option<Id> {
    let rest = frame.as_ref().strip_prefix(b"[36,")?;
    let rest = &rest[rest.iter().position(|b| *b == b',')? + 1..];
    let digits = &rest[..rest.iter().position(|b| *b == b',')?];
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Builds an EVENT frame from its ids, its details (already serialised) and a payload tail from
/// [`encode_payload_tail`]. Used so a topic serialises each publication once for all of its subscribers.
pub fn encode_event(subscription: Id, publication: Id, details_json: &str, payload_tail: &str) -> String {
    let mut out = String::with_capacity(48 + details_json.len() + payload_tail.len());
    out.push_str("[36,");
    out.push_str(&subscription.to_string());
    out.push(',');
    out.push_str(&publication.to_string());
    out.push(',');
    out.push_str(details_json);
    out.push_str(payload_tail);
    out.push(']');
    out
}
