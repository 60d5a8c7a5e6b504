//! WAMP v2, JSON serialisation (`wamp.2.json`).
//!
//! [`Message`] holds every message of the Basic Profile in both directions, so the router and the test
//! client share one codec. [`Message::decode`] is the syntax stage (element count and JSON types);
//! [`PublishOptions::parse`] and [`SubscribeOptions::parse`] are the meaning stage for option dictionaries.
//! EVENT frames, the hot path of fan-out, are built by [`encode_event`] from a payload serialised once.

use serde_json::{json, Map, Value};

use super::filter::Filters;
use super::id::{self, Id};
use super::uri::MatchPolicy;
use super::DecodeError;

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
    /// A message the spec defines but switchboard does not implement (CHALLENGE, AUTHENTICATE, CANCEL,
    /// INVOCATION, INTERRUPT, YIELD). Kept whole so the router can answer it precisely.
    Unimplemented { code: u64, name: &'static str, request: Option<Id> },
}

/// Reads typed elements out of a message array, naming the field on error.
struct Fields<'a> {
    message: &'static str,
    items: &'a [Value],
}

impl<'a> Fields<'a> {
    fn bad(&self, index: usize, field: &'static str, expected: &'static str) -> DecodeError {
        DecodeError::BadField { message: self.message, index, field, expected }
    }

    fn length(&self, min: usize, max: usize, expected: &'static str) -> Result<(), DecodeError> {
        let got = self.items.len();
        if got < min || got > max {
            return Err(DecodeError::WrongLength { message: self.message, got, expected });
        }
        Ok(())
    }

    fn id(&self, index: usize, field: &'static str) -> Result<Id, DecodeError> {
        self.items[index]
            .as_u64()
            .filter(|v| id::is_valid(*v))
            .ok_or_else(|| self.bad(index, field, "an integer id in [1, 2^53]"))
    }

    fn int(&self, index: usize, field: &'static str) -> Result<u64, DecodeError> {
        self.items[index].as_u64().ok_or_else(|| self.bad(index, field, "a non-negative integer"))
    }

    fn string(&self, index: usize, field: &'static str) -> Result<String, DecodeError> {
        self.items[index].as_str().map(str::to_owned).ok_or_else(|| self.bad(index, field, "a string"))
    }

    fn dict(&self, index: usize, field: &'static str) -> Result<Dict, DecodeError> {
        self.items[index].as_object().cloned().ok_or_else(|| self.bad(index, field, "a dictionary"))
    }

    fn opt_list(&self, index: usize) -> Result<Option<Vec<Value>>, DecodeError> {
        match self.items.get(index) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a.clone())),
            Some(_) => Err(self.bad(index, "Arguments", "a list")),
        }
    }

    fn opt_dict(&self, index: usize) -> Result<Option<Dict>, DecodeError> {
        match self.items.get(index) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o.clone())),
            Some(_) => Err(self.bad(index, "ArgumentsKw", "a dictionary")),
        }
    }
}

fn name_of(code: u64) -> Option<&'static str> {
    Some(match code {
        code::HELLO => "HELLO",
        code::WELCOME => "WELCOME",
        code::ABORT => "ABORT",
        code::CHALLENGE => "CHALLENGE",
        code::AUTHENTICATE => "AUTHENTICATE",
        code::GOODBYE => "GOODBYE",
        code::ERROR => "ERROR",
        code::PUBLISH => "PUBLISH",
        code::PUBLISHED => "PUBLISHED",
        code::SUBSCRIBE => "SUBSCRIBE",
        code::SUBSCRIBED => "SUBSCRIBED",
        code::UNSUBSCRIBE => "UNSUBSCRIBE",
        code::UNSUBSCRIBED => "UNSUBSCRIBED",
        code::EVENT => "EVENT",
        code::CALL => "CALL",
        code::CANCEL => "CANCEL",
        code::RESULT => "RESULT",
        code::REGISTER => "REGISTER",
        code::REGISTERED => "REGISTERED",
        code::UNREGISTER => "UNREGISTER",
        code::UNREGISTERED => "UNREGISTERED",
        code::INVOCATION => "INVOCATION",
        code::INTERRUPT => "INTERRUPT",
        code::YIELD => "YIELD",
        _ => return None,
    })
}

impl Message {
    /// Syntax stage: one text frame to one message. Every element is checked for its JSON type; URIs and
    /// options are checked later by the router, so it can answer with a request-specific ERROR.
    pub fn decode(text: &str) -> Result<Message, DecodeError> {
        let items = super::parse_array(text)?;
        let code = items[0].as_u64().ok_or(DecodeError::BadCode)?;
        let name = name_of(code).ok_or(DecodeError::UnknownCode(code))?;
        let f = Fields { message: name, items: &items };
        Ok(match code {
            code::HELLO => {
                f.length(3, 3, "3")?;
                Message::Hello { realm: f.string(1, "Realm")?, details: f.dict(2, "Details")? }
            }
            code::WELCOME => {
                f.length(3, 3, "3")?;
                Message::Welcome { session: f.id(1, "Session")?, details: f.dict(2, "Details")? }
            }
            code::ABORT | code::GOODBYE => {
                f.length(3, 3, "3")?;
                let details = f.dict(1, "Details")?;
                let reason = f.string(2, "Reason")?;
                if code == code::ABORT {
                    Message::Abort { details, reason }
                } else {
                    Message::Goodbye { details, reason }
                }
            }
            code::ERROR => {
                f.length(5, 7, "5 to 7")?;
                Message::Error {
                    request_type: f.int(1, "REQUEST.Type")?,
                    request: f.id(2, "REQUEST.Request")?,
                    details: f.dict(3, "Details")?,
                    error: f.string(4, "Error")?,
                    args: f.opt_list(5)?,
                    kwargs: f.opt_dict(6)?,
                }
            }
            code::PUBLISH => {
                f.length(4, 6, "4 to 6")?;
                Message::Publish {
                    request: f.id(1, "Request")?,
                    options: f.dict(2, "Options")?,
                    topic: f.string(3, "Topic")?,
                    args: f.opt_list(4)?,
                    kwargs: f.opt_dict(5)?,
                }
            }
            code::PUBLISHED => {
                f.length(3, 3, "3")?;
                Message::Published { request: f.id(1, "Request")?, publication: f.id(2, "Publication")? }
            }
            code::SUBSCRIBE => {
                f.length(4, 4, "4")?;
                Message::Subscribe {
                    request: f.id(1, "Request")?,
                    options: f.dict(2, "Options")?,
                    topic: f.string(3, "Topic")?,
                }
            }
            code::SUBSCRIBED => {
                f.length(3, 3, "3")?;
                Message::Subscribed { request: f.id(1, "Request")?, subscription: f.id(2, "Subscription")? }
            }
            code::UNSUBSCRIBE => {
                f.length(3, 3, "3")?;
                Message::Unsubscribe { request: f.id(1, "Request")?, subscription: f.id(2, "Subscription")? }
            }
            code::UNSUBSCRIBED => {
                f.length(2, 3, "2 or 3")?;
                Message::Unsubscribed { request: f.id(1, "Request")? }
            }
            code::EVENT => {
                f.length(4, 6, "4 to 6")?;
                Message::Event {
                    subscription: f.id(1, "Subscription")?,
                    publication: f.id(2, "Publication")?,
                    details: f.dict(3, "Details")?,
                    args: f.opt_list(4)?,
                    kwargs: f.opt_dict(5)?,
                }
            }
            code::CALL => {
                f.length(4, 6, "4 to 6")?;
                Message::Call {
                    request: f.id(1, "Request")?,
                    options: f.dict(2, "Options")?,
                    procedure: f.string(3, "Procedure")?,
                    args: f.opt_list(4)?,
                    kwargs: f.opt_dict(5)?,
                }
            }
            code::RESULT => {
                f.length(3, 5, "3 to 5")?;
                Message::Result {
                    request: f.id(1, "Request")?,
                    details: f.dict(2, "Details")?,
                    args: f.opt_list(3)?,
                    kwargs: f.opt_dict(4)?,
                }
            }
            code::REGISTER => {
                f.length(4, 4, "4")?;
                Message::Register {
                    request: f.id(1, "Request")?,
                    options: f.dict(2, "Options")?,
                    procedure: f.string(3, "Procedure")?,
                }
            }
            code::REGISTERED => {
                f.length(3, 3, "3")?;
                Message::Registered { request: f.id(1, "Request")?, registration: f.id(2, "Registration")? }
            }
            code::UNREGISTER => {
                f.length(3, 3, "3")?;
                Message::Unregister { request: f.id(1, "Request")?, registration: f.id(2, "Registration")? }
            }
            code::UNREGISTERED => {
                f.length(2, 3, "2 or 3")?;
                Message::Unregistered { request: f.id(1, "Request")? }
            }
            _ => {
                // CHALLENGE, AUTHENTICATE, CANCEL, INVOCATION, INTERRUPT, YIELD: request id where there is one.
                let request = items.get(1).and_then(Value::as_u64).filter(|v| id::is_valid(*v));
                Message::Unimplemented { code, name, request }
            }
        })
    }

    /// The message type code.
    pub fn code(&self) -> u64 {
        match self {
            Message::Hello { .. } => code::HELLO,
            Message::Welcome { .. } => code::WELCOME,
            Message::Abort { .. } => code::ABORT,
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
        let value = match self {
            Message::Hello { realm, details } => json!([code::HELLO, realm, details]),
            Message::Welcome { session, details } => json!([code::WELCOME, session, details]),
            Message::Abort { details, reason } => json!([code::ABORT, details, reason]),
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
        };
        value.to_string()
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

/// Why an option dictionary is not acceptable (answered with `wamp.error.invalid_argument`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("option '{option}' must be {expected}")]
pub struct OptionError {
    /// The offending option key.
    pub option: &'static str,
    /// What it must be.
    pub expected: &'static str,
}

fn opt_bool(options: &Dict, key: &'static str, default: bool) -> Result<bool, OptionError> {
    match options.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(OptionError { option: key, expected: "a boolean" }),
    }
}

fn opt_ids(options: &Dict, key: &'static str) -> Result<Option<Vec<Id>>, OptionError> {
    const EXPECTED: &str = "a list of session ids";
    match options.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_u64().filter(|i| id::is_valid(*i)).ok_or(OptionError { option: key, expected: EXPECTED }))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(OptionError { option: key, expected: EXPECTED }),
    }
}

fn opt_strings(options: &Dict, key: &'static str) -> Result<Option<Vec<String>>, OptionError> {
    const EXPECTED: &str = "a string or a list of strings";
    match options.get(key) {
        None | Some(Value::Null) => Ok(None),
        // Crossbar accepts a single string for the authid/authrole filters; so do we.
        Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or(OptionError { option: key, expected: EXPECTED }))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(OptionError { option: key, expected: EXPECTED }),
    }
}

/// PUBLISH options, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOptions {
    /// Answer with PUBLISHED (or ERROR) once the publication is handed to the broker.
    pub acknowledge: bool,
    /// Leave the publisher out of the receivers (default `true`, per the spec).
    pub exclude_me: bool,
    /// Ask the broker to reveal the publisher in EVENT details.
    pub disclose_me: bool,
    /// Receiver filters.
    pub filters: Filters,
}

impl PublishOptions {
    /// Meaning stage for `PUBLISH.Options`. Unknown keys are ignored, as the spec asks.
    pub fn parse(options: &Dict) -> Result<PublishOptions, OptionError> {
        Ok(PublishOptions {
            acknowledge: opt_bool(options, "acknowledge", false)?,
            exclude_me: opt_bool(options, "exclude_me", true)?,
            disclose_me: opt_bool(options, "disclose_me", false)?,
            filters: Filters {
                exclude: opt_ids(options, "exclude")?.unwrap_or_default(),
                eligible: opt_ids(options, "eligible")?,
                exclude_authid: opt_strings(options, "exclude_authid")?.unwrap_or_default(),
                eligible_authid: opt_strings(options, "eligible_authid")?,
                exclude_authrole: opt_strings(options, "exclude_authrole")?.unwrap_or_default(),
                eligible_authrole: opt_strings(options, "eligible_authrole")?,
            },
        })
    }
}

/// SUBSCRIBE options, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// How the subscription URI matches topics.
    pub policy: MatchPolicy,
}

impl SubscribeOptions {
    /// Meaning stage for `SUBSCRIBE.Options`.
    pub fn parse(options: &Dict) -> Result<SubscribeOptions, OptionError> {
        let policy = match options.get("match") {
            None | Some(Value::Null) => MatchPolicy::Exact,
            Some(Value::String(s)) if s == "exact" => MatchPolicy::Exact,
            Some(Value::String(s)) if s == "prefix" => MatchPolicy::Prefix,
            Some(Value::String(s)) if s == "wildcard" => MatchPolicy::Wildcard,
            Some(_) => {
                return Err(OptionError { option: "match", expected: "one of \"exact\", \"prefix\", \"wildcard\"" })
            }
        };
        Ok(SubscribeOptions { policy })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_hello() {
        let m = Message::decode(r#"[1,"realm1",{"roles":{"subscriber":{}}}]"#).unwrap();
        assert!(matches!(m, Message::Hello { ref realm, .. } if realm == "realm1"));
    }

    #[test]
    fn decodes_publish_with_and_without_payload() {
        let m = Message::decode(r#"[16,239714735,{},"com.myapp.mytopic1"]"#).unwrap();
        assert_eq!(
            m,
            Message::Publish {
                request: 239714735,
                options: Dict::new(),
                topic: "com.myapp.mytopic1".into(),
                args: None,
                kwargs: None
            }
        );
        let m = Message::decode(r#"[16,1,{"acknowledge":true},"t",["Hello"],{"a":1}]"#).unwrap();
        let Message::Publish { args, kwargs, .. } = m else { panic!("not a publish") };
        assert_eq!(args, Some(vec![json!("Hello")]));
        assert_eq!(kwargs.unwrap()["a"], json!(1));
    }

    #[test]
    fn round_trips_every_router_message() {
        let messages = vec![
            Message::Welcome { session: 9, details: Dict::new() },
            Message::abort("wamp.error.no_such_realm", "nope"),
            Message::goodbye(crate::wamp::errors::GOODBYE_AND_OUT, "bye"),
            Message::error(code::SUBSCRIBE, 5, "wamp.error.invalid_uri", "bad"),
            Message::Published { request: 1, publication: 2 },
            Message::Subscribed { request: 1, subscription: 2 },
            Message::Unsubscribed { request: 1 },
            Message::Result { request: 1, details: Dict::new(), args: Some(vec![json!(3)]), kwargs: None },
            Message::Event {
                subscription: 1,
                publication: 2,
                details: Dict::new(),
                args: Some(vec![]),
                kwargs: Some(Dict::new()),
            },
        ];
        for m in messages {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn numbers_in_a_payload_survive_decode_and_encode_unchanged() {
        // Found by the `v1` fuzz target: without serde_json's `float_roundtrip`, a relayed float could come out
        // one unit in the last place off (6.666666666666666e43 in, 6.666666666666667e43 out after a trip).
        let frame = r#"[16,1,{},"t",[66666666666666666666666666666666666666666661,0.1,1e-7,-2.5e300]]"#;
        let once = Message::decode(frame).unwrap();
        assert_eq!(Message::decode(&once.encode()).unwrap(), once);
    }

    #[test]
    fn event_fast_path_matches_the_generic_encoder() {
        let args = Some(vec![json!("hi"), json!(2)]);
        let kwargs = None;
        let fast = encode_event(7, 8, "{}", &encode_payload_tail(&args, &kwargs));
        let slow = Message::Event { subscription: 7, publication: 8, details: Dict::new(), args, kwargs }.encode();
        assert_eq!(fast, slow);
        assert_eq!(encode_event(1, 2, "{}", &encode_payload_tail(&None, &Some(Dict::new()))), "[36,1,2,{},[],{}]");
    }

    #[test]
    fn malformed_frames_name_what_is_wrong() {
        assert!(matches!(Message::decode("[16,1"), Err(DecodeError::InvalidJson(_))));
        assert_eq!(Message::decode("{\"a\":1}"), Err(DecodeError::NotAnArray));
        assert_eq!(Message::decode(r#"["x"]"#), Err(DecodeError::BadCode));
        assert_eq!(Message::decode("[999]"), Err(DecodeError::UnknownCode(999)));
        assert!(matches!(Message::decode(r#"[32,1,{}]"#), Err(DecodeError::WrongLength { message: "SUBSCRIBE", .. })));
        assert!(matches!(
            Message::decode(r#"[32,"1",{},"t"]"#),
            Err(DecodeError::BadField { message: "SUBSCRIBE", index: 1, .. })
        ));
        assert!(matches!(Message::decode(r#"[32,0,{},"t"]"#), Err(DecodeError::BadField { index: 1, .. })));
        assert!(matches!(
            Message::decode(r#"[32,9007199254740993,{},"t"]"#),
            Err(DecodeError::BadField { index: 1, .. })
        ));
        assert!(matches!(Message::decode(r#"[32,1,[],"t"]"#), Err(DecodeError::BadField { index: 2, .. })));
        assert!(matches!(Message::decode(r#"[32,1,{},7]"#), Err(DecodeError::BadField { index: 3, .. })));
        assert!(matches!(Message::decode(r#"[16,1,{},"t",{"a":1}]"#), Err(DecodeError::BadField { index: 4, .. })));
        assert!(matches!(Message::decode(r#"[48,1,{},"p",[],[]]"#), Err(DecodeError::BadField { index: 5, .. })));
        assert!(matches!(Message::decode(r#"[1,"realm1"]"#), Err(DecodeError::WrongLength { .. })));
    }

    #[test]
    fn names_follow_codes() {
        assert_eq!(Message::Unsubscribed { request: 1 }.name(), "UNSUBSCRIBED");
        assert_eq!(Message::decode("[70,1,{}]").unwrap().name(), "YIELD");
    }

    #[test]
    fn unimplemented_messages_keep_their_request_id() {
        assert_eq!(
            Message::decode(r#"[49,77,{}]"#).unwrap(),
            Message::Unimplemented { code: code::CANCEL, name: "CANCEL", request: Some(77) }
        );
    }

    #[test]
    fn publish_options_meaning() {
        let o: Dict =
            serde_json::from_str(r#"{"exclude_me":false,"eligible":[1,2],"exclude_authid":"bob","acknowledge":true}"#)
                .unwrap();
        let p = PublishOptions::parse(&o).unwrap();
        assert!(!p.exclude_me && p.acknowledge);
        assert_eq!(p.filters.eligible, Some(vec![1, 2]));
        assert_eq!(p.filters.exclude_authid, vec!["bob".to_string()]);
        assert!(PublishOptions::parse(&Dict::new()).unwrap().exclude_me);
        let bad: Dict = serde_json::from_str(r#"{"eligible":["x"]}"#).unwrap();
        assert_eq!(PublishOptions::parse(&bad).unwrap_err().option, "eligible");
        let bad: Dict = serde_json::from_str(r#"{"acknowledge":"yes"}"#).unwrap();
        assert_eq!(PublishOptions::parse(&bad).unwrap_err().option, "acknowledge");
    }

    #[test]
    fn subscribe_options_meaning() {
        let o: Dict = serde_json::from_str(r#"{"match":"wildcard"}"#).unwrap();
        assert_eq!(SubscribeOptions::parse(&o).unwrap().policy, MatchPolicy::Wildcard);
        let bad: Dict = serde_json::from_str(r#"{"match":"regex"}"#).unwrap();
        assert!(SubscribeOptions::parse(&bad).is_err());
    }
}
