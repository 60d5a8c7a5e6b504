//! WAMP v1 (`wamp` subprotocol), as Ratchet and GosWebSocketBundle serve it to autobahn.js 0.8 clients.
//!
//! Where Ratchet and the 2012 spec disagree we follow Ratchet, because that is what migrating apps rely on:
//!
//! - **PUBLISH without a 4th element** delivers to the publisher too (Ratchet sets `exclude = []`).
//! - **A 4th element that is not a list** is read as `excludeMe` by truthiness, as PHP's `(boolean)` cast does
//!   (`true`, `1`, `"x"` exclude the publisher; `false`, `0`, `""`, `null` do not).
//! - **An empty eligible list** means "no restriction" (Ratchet's `$useEligible = (bool)count($eligible)`);
//!   the spec would deliver to nobody.
//! - **Session ids** are sent as strings (WELCOME, and compared in exclude/eligible lists); switchboard's ids
//!   are numbers, so list entries may be numbers or numeric strings. Entries that are neither match no one.
//! - **Call ids** may be any JSON value (autobahn.js sends strings); the reply echoes it unchanged.
//!
//! CURIE prefixes are connection state a client creates, so they are bounded (see [`Prefixes::define`]):
//! each prefix and its URI at most [`MAX_URI_LEN`] bytes, and a per-connection count the caller passes in
//! (`wamp.max_prefixes`).

use std::collections::HashMap;

use serde_json::{json, Value};

use super::id::Id;
use super::uri::MAX_URI_LEN;
use super::DecodeError;

/// Message type codes of WAMP v1.
pub mod code {
    #![allow(missing_docs)]
    pub const WELCOME: u64 = 0;
    pub const PREFIX: u64 = 1;
    pub const CALL: u64 = 2;
    pub const CALLRESULT: u64 = 3;
    pub const CALLERROR: u64 = 4;
    pub const SUBSCRIBE: u64 = 5;
    pub const UNSUBSCRIBE: u64 = 6;
    pub const PUBLISH: u64 = 7;
    pub const EVENT: u64 = 8;
}

/// The protocol version WELCOME announces.
pub const PROTOCOL_VERSION: u64 = 1;

/// Receiver selection of a v1 PUBLISH, after Ratchet's rules (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishTargets {
    /// Exclude the publishing session.
    pub exclude_me: bool,
    /// Session ids to leave out.
    pub exclude: Vec<Id>,
    /// If non-empty, only these session ids receive the event.
    pub eligible: Vec<Id>,
}

/// One WAMP v1 message. Field names follow the spec layout given in each variant's doc.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `[WELCOME, sessionId, protocolVersion, serverIdent]`
    Welcome { session: String, version: u64, server: String },
    /// `[PREFIX, prefix, URI]`
    Prefix { prefix: String, uri: String },
    /// `[CALL, callID, procURI, arg, …]`
    Call { call_id: Value, procedure: String, args: Vec<Value> },
    /// `[CALLRESULT, callID, result]`
    CallResult { call_id: Value, result: Value },
    /// `[CALLERROR, callID, errorURI, errorDesc (, errorDetails)]`
    CallError { call_id: Value, error: String, description: String, details: Option<Value> },
    /// `[SUBSCRIBE, topicURI]`
    Subscribe { topic: String },
    /// `[UNSUBSCRIBE, topicURI]`
    Unsubscribe { topic: String },
    /// `[PUBLISH, topicURI, event (, excludeMe | exclude (, eligible))]`
    Publish { topic: String, event: Value, targets: PublishTargets },
    /// `[EVENT, topicURI, event]`
    Event { topic: String, event: Value },
}

fn bad(message: &'static str, index: usize, field: &'static str, expected: &'static str) -> DecodeError {
    DecodeError::BadField { message, index, field, expected }
}

fn string_at(items: &[Value], message: &'static str, index: usize, field: &'static str) -> Result<String, DecodeError> {
    items[index].as_str().map(str::to_owned).ok_or_else(|| bad(message, index, field, "a string"))
}

fn length(
    items: &[Value],
    message: &'static str,
    min: usize,
    max: usize,
    expected: &'static str,
) -> Result<(), DecodeError> {
    if items.len() < min || items.len() > max {
        return Err(DecodeError::WrongLength { message, got: items.len(), expected });
    }
    Ok(())
}

/// A v1 session id as it appears in exclude/eligible lists: a number or a numeric string.
fn session_id(value: &Value) -> Option<Id> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn session_ids(value: &Value, index: usize) -> Result<Vec<Id>, DecodeError> {
    match value {
        Value::Array(items) => Ok(items.iter().filter_map(session_id).collect()),
        Value::Null => Ok(Vec::new()),
        _ => Err(bad("PUBLISH", index, "eligible", "a list of session ids")),
    }
}

/// PHP's `(boolean)` cast, which Ratchet applies to a non-list 4th PUBLISH element.
fn php_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !(s.is_empty() || s == "0"),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}

impl Message {
    /// Syntax stage: one text frame to one message.
    pub fn decode(text: &str) -> Result<Message, DecodeError> {
        let items = super::parse_array(text)?;
        let code = items[0].as_u64().ok_or(DecodeError::BadCode)?;
        Ok(match code {
            code::WELCOME => {
                length(&items, "WELCOME", 4, 4, "4")?;
                Message::Welcome {
                    session: match &items[1] {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        _ => return Err(bad("WELCOME", 1, "sessionId", "a string")),
                    },
                    version: items[2].as_u64().ok_or_else(|| bad("WELCOME", 2, "protocolVersion", "an integer"))?,
                    server: string_at(&items, "WELCOME", 3, "serverIdent")?,
                }
            }
            code::PREFIX => {
                length(&items, "PREFIX", 3, 3, "3")?;
                Message::Prefix {
                    prefix: string_at(&items, "PREFIX", 1, "prefix")?,
                    uri: string_at(&items, "PREFIX", 2, "URI")?,
                }
            }
            code::CALL => {
                length(&items, "CALL", 3, usize::MAX, "at least 3")?;
                let call_id = match &items[1] {
                    v @ (Value::String(_) | Value::Number(_)) => v.clone(),
                    _ => return Err(bad("CALL", 1, "callID", "a string or number")),
                };
                Message::Call {
                    call_id,
                    procedure: string_at(&items, "CALL", 2, "procURI")?,
                    args: items[3..].to_vec(),
                }
            }
            code::CALLRESULT => {
                length(&items, "CALLRESULT", 3, 3, "3")?;
                Message::CallResult { call_id: items[1].clone(), result: items[2].clone() }
            }
            code::CALLERROR => {
                length(&items, "CALLERROR", 4, 5, "4 or 5")?;
                Message::CallError {
                    call_id: items[1].clone(),
                    error: string_at(&items, "CALLERROR", 2, "errorURI")?,
                    description: string_at(&items, "CALLERROR", 3, "errorDesc")?,
                    details: items.get(4).cloned(),
                }
            }
            code::SUBSCRIBE => {
                length(&items, "SUBSCRIBE", 2, 2, "2")?;
                Message::Subscribe { topic: string_at(&items, "SUBSCRIBE", 1, "topicURI")? }
            }
            code::UNSUBSCRIBE => {
                length(&items, "UNSUBSCRIBE", 2, 2, "2")?;
                Message::Unsubscribe { topic: string_at(&items, "UNSUBSCRIBE", 1, "topicURI")? }
            }
            code::PUBLISH => {
                length(&items, "PUBLISH", 3, 5, "3 to 5")?;
                let mut targets = PublishTargets::default();
                match items.get(3) {
                    None => {}
                    Some(Value::Array(list)) => targets.exclude = list.iter().filter_map(session_id).collect(),
                    Some(other) => targets.exclude_me = php_truthy(other),
                }
                if let Some(eligible) = items.get(4) {
                    targets.eligible = session_ids(eligible, 4)?;
                }
                Message::Publish {
                    topic: string_at(&items, "PUBLISH", 1, "topicURI")?,
                    event: items[2].clone(),
                    targets,
                }
            }
            code::EVENT => {
                length(&items, "EVENT", 3, 3, "3")?;
                Message::Event { topic: string_at(&items, "EVENT", 1, "topicURI")?, event: items[2].clone() }
            }
            other => return Err(DecodeError::UnknownCode(other)),
        })
    }

    /// Serialises this message as one `wamp` text frame.
    pub fn encode(&self) -> String {
        let value = match self {
            Message::Welcome { session, version, server } => json!([code::WELCOME, session, version, server]),
            Message::Prefix { prefix, uri } => json!([code::PREFIX, prefix, uri]),
            Message::Call { call_id, procedure, args } => {
                let mut items = vec![json!(code::CALL), call_id.clone(), json!(procedure)];
                items.extend(args.iter().cloned());
                Value::Array(items)
            }
            Message::CallResult { call_id, result } => json!([code::CALLRESULT, call_id, result]),
            Message::CallError { call_id, error, description, details } => match details {
                Some(d) => json!([code::CALLERROR, call_id, error, description, d]),
                None => json!([code::CALLERROR, call_id, error, description]),
            },
            Message::Subscribe { topic } => json!([code::SUBSCRIBE, topic]),
            Message::Unsubscribe { topic } => json!([code::UNSUBSCRIBE, topic]),
            Message::Publish { topic, event, targets } => {
                // The 4th element is excludeMe or an exclude list, not both: with an exclude list the list is
                // written (leaving someone out matters more than sparing the publisher its own event).
                let fourth =
                    if targets.exclude.is_empty() { json!(targets.exclude_me) } else { json!(targets.exclude) };
                if targets.eligible.is_empty() {
                    json!([code::PUBLISH, topic, event, fourth])
                } else {
                    json!([code::PUBLISH, topic, event, fourth, targets.eligible])
                }
            }
            Message::Event { topic, event } => json!([code::EVENT, topic, event]),
        };
        value.to_string()
    }
}

/// Builds an EVENT frame from a topic and an event already serialised as JSON (serialise once, send many).
pub fn encode_event(topic: &str, event_json: &str) -> String {
    let topic_json = Value::String(topic.to_owned()).to_string();
    let mut out = String::with_capacity(8 + topic_json.len() + event_json.len());
    out.push_str("[8,");
    out.push_str(&topic_json);
    out.push(',');
    out.push_str(event_json);
    out.push(']');
    out
}

/// A connection's CURIE prefixes (`PREFIX` messages), used to expand `prefix:suffix` URIs. The map is
/// allocated at the first `PREFIX`: most connections never send one.
#[derive(Debug, Default, Clone)]
pub struct Prefixes {
    // Boxed on purpose: 8 bytes in every connection that never defines a prefix, instead of an empty map's 48.
    #[allow(clippy::box_collection)]
    map: Option<Box<HashMap<String, String>>>,
}

/// Why a `PREFIX` was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// The prefix or its URI is longer than [`MAX_URI_LEN`] bytes.
    #[error("PREFIX and its URI may be at most {MAX_URI_LEN} bytes each")]
    TooLong,
    /// The connection already defines as many prefixes as it may.
    #[error("a connection may define at most {max} prefixes")]
    TooMany {
        /// The limit (`wamp.max_prefixes`).
        max: usize,
    },
}

impl Prefixes {
    /// Defines or redefines `prefix` as `uri`. A connection holds at most `max` prefixes (redefining one it
    /// has does not count again), each prefix and URI at most [`MAX_URI_LEN`] bytes, so what one client can
    /// make a connection hold — and what a CURIE can expand to — stays bounded.
    pub fn define(&mut self, prefix: String, uri: String, max: usize) -> Result<(), PrefixError> {
        if prefix.len() > MAX_URI_LEN || uri.len() > MAX_URI_LEN {
            return Err(PrefixError::TooLong);
        }
        let map = self.map.get_or_insert_with(Box::default);
        if map.len() >= max && !map.contains_key(&prefix) {
            return Err(PrefixError::TooMany { max });
        }
        map.insert(prefix, uri);
        Ok(())
    }

    /// How many prefixes are defined.
    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }

    /// Whether none is defined.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Expands a CURIE (`event:myevent1`) whose prefix is defined; any other string is returned unchanged,
    /// so full URIs such as `http://example.com/x` pass through even though they contain a colon.
    pub fn resolve(&self, uri: &str) -> String {
        if let Some((prefix, rest)) = uri.split_once(':') {
            if let Some(base) = self.map.as_ref().and_then(|m| m.get(prefix)) {
                return format!("{base}{rest}");
            }
        }
        uri.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_follows_ratchet() {
        let m = Message::decode(r#"[7,"t",{"a":1}]"#).unwrap();
        assert_eq!(
            m,
            Message::Publish { topic: "t".into(), event: json!({"a":1}), targets: PublishTargets::default() }
        );
        let Message::Publish { targets, .. } = Message::decode(r#"[7,"t","x",true]"#).unwrap() else { panic!() };
        assert!(targets.exclude_me);
        let Message::Publish { targets, .. } = Message::decode(r#"[7,"t","x",1]"#).unwrap() else { panic!() };
        assert!(targets.exclude_me, "PHP truthiness");
        let Message::Publish { targets, .. } = Message::decode(r#"[7,"t","x",["12",13,"junk"],[]]"#).unwrap() else {
            panic!()
        };
        assert_eq!(targets, PublishTargets { exclude_me: false, exclude: vec![12, 13], eligible: vec![] });
        assert!(Message::decode(r#"[7,"t","x",[],"nope"]"#).is_err());
    }

    #[test]
    fn call_keeps_its_id_and_arguments() {
        let m = Message::decode(r#"[2,"7DK6TdN4wLiUJgNM","http://example.com/api#howdy",1,"two"]"#).unwrap();
        assert_eq!(
            m,
            Message::Call {
                call_id: json!("7DK6TdN4wLiUJgNM"),
                procedure: "http://example.com/api#howdy".into(),
                args: vec![json!(1), json!("two")]
            }
        );
        assert!(Message::decode(r#"[2,{},"p"]"#).is_err());
    }

    #[test]
    fn malformed_frames_are_rejected() {
        assert_eq!(Message::decode("[99]"), Err(DecodeError::UnknownCode(99)));
        assert!(matches!(Message::decode(r#"[5]"#), Err(DecodeError::WrongLength { .. })));
        assert!(matches!(Message::decode(r#"[5,3]"#), Err(DecodeError::BadField { .. })));
        assert!(matches!(Message::decode("[5,"), Err(DecodeError::InvalidJson(_))));
        assert_eq!(Message::decode("\"x\""), Err(DecodeError::NotAnArray));
    }

    #[test]
    fn round_trips() {
        for m in [
            Message::Welcome { session: "42".into(), version: 1, server: "switchboard/0.1".into() },
            Message::CallResult { call_id: json!("a"), result: json!([1, 2]) },
            Message::CallError { call_id: json!("a"), error: "e".into(), description: "d".into(), details: None },
            Message::Event { topic: "http://x/y".into(), event: json!("hi") },
            Message::Prefix { prefix: "p".into(), uri: "http://x/".into() },
        ] {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
        assert_eq!(encode_event("t", "\"hi\""), r#"[8,"t","hi"]"#);
    }

    #[test]
    fn publish_with_exclude_me_and_an_eligible_list_round_trips() {
        // Found by the `v1` fuzz target: the encoder wrote `[]` for the 4th element whenever an eligible list
        // was present, so excludeMe was lost.
        let m = Message::decode(r#"[7,"t","x",true,["12"]]"#).unwrap();
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        let Message::Publish { targets, .. } = Message::decode(&m.encode()).unwrap() else { panic!() };
        assert!(targets.exclude_me && targets.eligible == vec![12]);
    }

    #[test]
    fn curies_expand_only_known_prefixes() {
        let mut p = Prefixes::default();
        p.define("event".into(), "http://example.com/event#".into(), 4).unwrap();
        assert_eq!(p.resolve("event:myevent1"), "http://example.com/event#myevent1");
        assert_eq!(p.resolve("http://example.com/x"), "http://example.com/x");
        assert_eq!(p.resolve("chat/room"), "chat/room");
    }

    #[test]
    fn prefixes_are_bounded_in_count_and_length() {
        let mut p = Prefixes::default();
        for i in 0..4 {
            p.define(format!("p{i}"), "u".into(), 4).unwrap();
        }
        assert_eq!(p.define("overflow".into(), "u".into(), 4), Err(PrefixError::TooMany { max: 4 }));
        assert!(p.define("p0".into(), "http://other/".into(), 4).is_ok(), "redefining is not growth");
        assert_eq!(p.len(), 4);
        let long = "x".repeat(MAX_URI_LEN + 1);
        assert_eq!(p.define("p1".into(), long.clone(), 4), Err(PrefixError::TooLong));
        assert_eq!(p.define(long, "u".into(), 4), Err(PrefixError::TooLong));
        assert_eq!(p.resolve("p1:x"), "ux", "a refused redefinition leaves the old one");
        let mut q = Prefixes::default();
        q.define("p".into(), "x".repeat(MAX_URI_LEN), 1).unwrap();
    }
}
