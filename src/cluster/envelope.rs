//! The inter-node wire format: what one node publishes on Redis for the others. Pure: no I/O here.
//!
//! Every message is one JSON object with a version `v`, a `kind`, and the `origin` node. A publication travels
//! on its topic's channel, serialised once and by reference (its payload is never cloned); a receiving node
//! keeps `args`/`kwargs` as raw JSON and splices them into JSON EVENT frames without parsing them (MessagePack
//! and CBOR EVENTs are transcoded from the same text in one pass, no value tree). Control
//! messages travel on a node's inbox channel. Unknown versions and kinds are refused, so a mixed-version
//! cluster fails loudly, not subtly.
//!
//! ```json
//! {"v":1,"origin":"a","kind":"publication","id":1,"topic":"chat","publisher":{…},"exclude_me":true,
//!  "disclose_me":false,"filters":{…},"args":[…],"kwargs":{…}}
//! {"v":1,"origin":"a","kind":"disconnect_user","authid":"alice","code":1008,"reason":"…","message":"…"}
//! {"v":1,"origin":"a","kind":"probe","nonce":42}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::model::{Publication, Publisher};
use crate::wamp::filter::Filters;
use crate::wamp::{id, Id};

/// The envelope version this build speaks.
pub const VERSION: u32 = 1;

/// What a message carries.
#[derive(Debug, Clone)]
pub enum Body {
    /// A publication for the subscribers of `topic` on every node (as received: payload still raw JSON).
    Publication {
        /// Cluster-unique publication id.
        id: Id,
        /// The concrete topic.
        topic: String,
        /// The publishing session, if any.
        publisher: Option<Publisher>,
        /// Leave the publisher out.
        exclude_me: bool,
        /// Reveal the publisher.
        disclose_me: bool,
        /// Receiver filters, applied by each receiving node.
        filters: Filters,
        /// Positional arguments, raw JSON.
        args: Option<Box<RawValue>>,
        /// Keyword arguments, raw JSON.
        kwargs: Option<Box<RawValue>>,
        /// The origin wants a receipt (how many sockets took it).
        receipt: bool,
        /// Kept in its user's offline inbox.
        inboxed: bool,
    },
    /// How many sockets of the sending node took a publication that wanted a receipt.
    Receipt {
        /// The publication.
        publication: Id,
        /// Sockets that took it.
        sockets: u64,
    },
    /// Close the local sessions of `authid` (DELETE /api/users/{authid}/sessions).
    DisconnectUser {
        /// Username.
        authid: String,
        /// Close code.
        code: u16,
        /// WAMP reason URI.
        reason: String,
        /// Human-readable message.
        message: String,
    },
    /// Close these local sessions (`wamp.session.kill`, `kill_by_authrole`).
    DisconnectSessions {
        /// WAMP session ids.
        sessions: Vec<Id>,
        /// Close code.
        code: u16,
        /// WAMP reason URI.
        reason: String,
        /// Human-readable message.
        message: String,
    },
    /// A liveness probe a node sends to its own inbox to prove its subscription still delivers.
    Probe {
        /// Matches the probe to its echo.
        nonce: u64,
    },
}

/// A versioned message with its origin.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Format version ([`VERSION`]).
    pub v: u32,
    /// The node that sent it.
    pub origin: String,
    /// What it carries.
    pub body: Body,
}

/// Why bytes from Redis are not an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON of the expected shape.
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// Another format version.
    #[error("envelope version {0} is not supported (this node speaks {VERSION})")]
    Version(u32),
}

/// A JSON value to write, whichever form it is held in.
#[derive(Serialize)]
#[serde(untagged)]
enum JsonRef<'a> {
    List(&'a Vec<Value>),
    Dict(&'a Map<String, Value>),
    Raw(&'a RawValue),
}

/// The wire form, written by reference.
#[derive(Serialize, Default)]
struct WireOut<'a> {
    v: u32,
    origin: &'a str,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    publisher: Option<&'a Publisher>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    exclude_me: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disclose_me: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    filters: Option<&'a Filters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<JsonRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kwargs: Option<JsonRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sessions: Option<&'a [Id]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    receipt: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    inboxed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    sockets: Option<u64>,
}

/// The wire form, read with the payload left raw.
#[derive(Deserialize)]
struct WireIn<'a> {
    v: u32,
    origin: String,
    kind: String,
    id: Option<Id>,
    topic: Option<String>,
    publisher: Option<Publisher>,
    #[serde(default)]
    exclude_me: bool,
    #[serde(default)]
    disclose_me: bool,
    #[serde(default)]
    filters: Filters,
    #[serde(borrow)]
    args: Option<&'a RawValue>,
    #[serde(borrow)]
    kwargs: Option<&'a RawValue>,
    authid: Option<String>,
    code: Option<u16>,
    reason: Option<String>,
    message: Option<String>,
    nonce: Option<u64>,
    sessions: Option<Vec<Id>>,
    #[serde(default)]
    receipt: bool,
    #[serde(default)]
    inboxed: bool,
    sockets: Option<u64>,
}

fn to_bytes(wire: &WireOut<'_>) -> Vec<u8> {
    // Plain data with string keys: serialisation cannot fail.
    serde_json::to_vec(wire).expect("envelope serialises")
}

/// A raw payload part, checked to be the JSON type EVENT frames splice it in as (`[` list, `{` dictionary):
/// it is copied into frames unparsed, so a wrong type would reach clients as a frame they cannot decode.
fn raw_payload(raw: Option<&RawValue>, open: char, wrong: &str) -> Result<Option<Box<RawValue>>, EnvelopeError> {
    match raw {
        // A raw value is held without the whitespace around it, so its first character is its type.
        Some(raw) if !raw.get().starts_with(open) => Err(EnvelopeError::Malformed(wrong.to_owned())),
        raw => Ok(raw.map(RawValue::to_owned)),
    }
}

impl Envelope {
    /// Serialises a local publication for the other nodes, by reference.
    pub fn encode_publication(origin: &str, p: &Publication) -> Vec<u8> {
        to_bytes(&WireOut {
            v: VERSION,
            origin,
            kind: "publication",
            id: Some(p.id),
            topic: Some(&p.topic),
            publisher: p.publisher.as_ref(),
            exclude_me: p.exclude_me,
            disclose_me: p.disclose_me,
            filters: (!p.filters.is_empty()).then_some(&p.filters),
            args: p.payload.args.as_ref().map(JsonRef::List),
            kwargs: p.payload.kwargs.as_ref().map(JsonRef::Dict),
            receipt: p.receipt,
            inboxed: p.inboxed,
            ..WireOut::default()
        })
    }

    /// Serialises this envelope.
    pub fn encode(&self) -> Vec<u8> {
        let mut wire = WireOut { v: self.v, origin: &self.origin, ..WireOut::default() };
        match &self.body {
            Body::Publication {
                id,
                topic,
                publisher,
                exclude_me,
                disclose_me,
                filters,
                args,
                kwargs,
                receipt,
                inboxed,
            } => {
                wire.kind = "publication";
                wire.receipt = *receipt;
                wire.inboxed = *inboxed;
                wire.id = Some(*id);
                wire.topic = Some(topic);
                wire.publisher = publisher.as_ref();
                wire.exclude_me = *exclude_me;
                wire.disclose_me = *disclose_me;
                wire.filters = Some(filters);
                wire.args = args.as_deref().map(JsonRef::Raw);
                wire.kwargs = kwargs.as_deref().map(JsonRef::Raw);
            }
            Body::DisconnectUser { authid, code, reason, message } => {
                wire.kind = "disconnect_user";
                wire.authid = Some(authid);
                wire.code = Some(*code);
                wire.reason = Some(reason);
                wire.message = Some(message);
            }
            Body::DisconnectSessions { sessions, code, reason, message } => {
                wire.kind = "disconnect_sessions";
                wire.sessions = Some(sessions);
                wire.code = Some(*code);
                wire.reason = Some(reason);
                wire.message = Some(message);
            }
            Body::Probe { nonce } => {
                wire.kind = "probe";
                wire.nonce = Some(*nonce);
            }
            Body::Receipt { publication, sockets } => {
                wire.kind = "receipt";
                wire.id = Some(*publication);
                wire.sockets = Some(*sockets);
            }
        }
        to_bytes(&wire)
    }

    /// Parses bytes received from Redis.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let malformed = |what: &str| EnvelopeError::Malformed(what.to_owned());
        let w: WireIn<'_> = serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if w.v != VERSION {
            return Err(EnvelopeError::Version(w.v));
        }
        let body = match w.kind.as_str() {
            "publication" => Body::Publication {
                // Both ids reach clients in EVENT frames, where only WAMP ids are valid.
                id: w.id.filter(|v| id::is_valid(*v)).ok_or_else(|| malformed("publication without a valid id"))?,
                topic: w.topic.ok_or_else(|| malformed("publication without topic"))?,
                publisher: match w.publisher {
                    Some(p) if !id::is_valid(p.session) => return Err(malformed("publisher without a valid session")),
                    publisher => publisher,
                },
                exclude_me: w.exclude_me,
                disclose_me: w.disclose_me,
                filters: w.filters,
                args: raw_payload(w.args, '[', "publication args must be a list")?,
                kwargs: raw_payload(w.kwargs, '{', "publication kwargs must be a dictionary")?,
                receipt: w.receipt,
                inboxed: w.inboxed,
            },
            "receipt" => Body::Receipt {
                publication: w.id.ok_or_else(|| malformed("receipt without id"))?,
                sockets: w.sockets.ok_or_else(|| malformed("receipt without sockets"))?,
            },
            "disconnect_user" => Body::DisconnectUser {
                authid: w.authid.ok_or_else(|| malformed("disconnect_user without authid"))?,
                code: w.code.unwrap_or(1008),
                reason: w.reason.unwrap_or_default(),
                message: w.message.unwrap_or_default(),
            },
            "disconnect_sessions" => Body::DisconnectSessions {
                sessions: w.sessions.ok_or_else(|| malformed("disconnect_sessions without sessions"))?,
                code: w.code.unwrap_or(1008),
                reason: w.reason.unwrap_or_default(),
                message: w.message.unwrap_or_default(),
            },
            "probe" => Body::Probe { nonce: w.nonce.ok_or_else(|| malformed("probe without nonce"))? },
            other => return Err(EnvelopeError::Malformed(format!("unknown kind '{other}'"))),
        };
        Ok(Envelope { v: w.v, origin: w.origin, body })
    }

    /// Turns a publication envelope into a [`Publication`] whose payload stays raw JSON.
    pub fn into_publication(self) -> Option<Publication> {
        match self.body {
            Body::Publication {
                id,
                topic,
                publisher,
                exclude_me,
                disclose_me,
                filters,
                args,
                kwargs,
                receipt,
                inboxed,
            } => {
                let mut p = Publication::from_raw(id, topic, args, kwargs, filters);
                p.inboxed = inboxed;
                p.publisher = publisher;
                p.exclude_me = exclude_me;
                p.disclose_me = disclose_me;
                if receipt {
                    p.receipt = true;
                    p.origin = Some(self.origin);
                }
                Some(p)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Payload;
    use serde_json::json;

    #[test]
    fn publication_round_trips_and_splices_the_same_event_bytes() {
        let filters = Filters { exclude: vec![1], eligible_authid: Some(vec!["alice".into()]), ..Default::default() };
        let mut kwargs = Map::new();
        kwargs.insert("k".into(), json!([1, {"x": null}]));
        let payload = Payload { args: Some(vec![json!({"t": "hi"}), json!(3.5)]), kwargs: Some(kwargs) };
        let p = Publication::new("chat/lobby".into(), payload, filters).with_publisher(
            Publisher { session: 9, authid: "bob".into(), authrole: "user".into() },
            true,
            false,
        );
        let bytes = Envelope::encode_publication("node-a", &p);
        let back = Envelope::decode(&bytes).unwrap();
        assert_eq!(back.origin, "node-a");
        let q = back.into_publication().unwrap();
        assert_eq!((q.id, q.topic.as_str(), q.exclude_me), (p.id, "chat/lobby", true));
        assert_eq!(q.filters, p.filters);
        assert_eq!(q.publisher, p.publisher);
        assert_eq!(q.v2_tail(), p.v2_tail(), "remote EVENT frames are byte-identical to local ones");
        assert_eq!(q.v1_event(), p.v1_event());
    }

    #[test]
    fn payload_shapes_survive_the_trip() {
        for payload in
            [Payload::default(), Payload::single(json!("x")), Payload { args: None, kwargs: Some(Map::new()) }]
        {
            let p = Publication::new("t".into(), payload, Filters::default());
            let q = Envelope::decode(&Envelope::encode_publication("n", &p)).unwrap().into_publication().unwrap();
            assert_eq!(q.v2_tail(), p.v2_tail());
            assert_eq!(q.v1_event(), p.v1_event());
        }
    }

    #[test]
    fn control_messages_round_trip() {
        let e = Envelope {
            v: VERSION,
            origin: "n".into(),
            body: Body::DisconnectUser { authid: "alice".into(), code: 1008, reason: "r".into(), message: "m".into() },
        };
        match Envelope::decode(&e.encode()).unwrap().body {
            Body::DisconnectUser { authid, code, .. } => assert_eq!((authid.as_str(), code), ("alice", 1008)),
            other => panic!("{other:?}"),
        }
        let kill =
            Body::DisconnectSessions { sessions: vec![3, 4], code: 1008, reason: "r".into(), message: "m".into() };
        let kill = Envelope { v: VERSION, origin: "n".into(), body: kill };
        match Envelope::decode(&kill.encode()).unwrap().body {
            Body::DisconnectSessions { sessions, code, reason, .. } => {
                assert_eq!((sessions, code, reason.as_str()), (vec![3, 4], 1008, "r"))
            }
            other => panic!("{other:?}"),
        }
        let probe = br#"{"v":1,"origin":"n","kind":"probe","nonce":5}"#;
        assert!(matches!(Envelope::decode(probe).unwrap().body, Body::Probe { nonce: 5 }));
    }

    #[test]
    fn a_payload_that_is_not_a_list_and_a_dictionary_is_refused() {
        // Found by the `envelope` fuzz target: raw payloads were spliced into EVENT frames unchecked, so
        // `"args":5` reached v2 clients as `[36,…,{},5]`, which they cannot decode.
        for payload in [r#""args":5"#, r#""args":{}"#, r#""kwargs":[1]"#, r#""args":[],"kwargs":"x""#] {
            let bytes = format!(r#"{{"v":1,"origin":"n","kind":"publication","id":2,"topic":"t",{payload}}}"#);
            assert!(
                matches!(Envelope::decode(bytes.as_bytes()), Err(EnvelopeError::Malformed(_))),
                "{payload} accepted"
            );
        }
        let fine = br#"{"v":1,"origin":"n","kind":"publication","id":2,"topic":"t","args":[ 1 ],"kwargs":{}}"#;
        assert!(Envelope::decode(fine).is_ok());
    }

    #[test]
    fn a_publication_id_or_publisher_session_outside_the_wamp_id_range_is_refused() {
        // Found by the `envelope` fuzz target: `"id":0` became EVENT frames with publication 0, which clients
        // refuse (WAMP ids are in [1, 2^53]).
        for fields in
            [r#""id":0"#, r#""id":9007199254740993"#, r#""id":1,"publisher":{"session":0,"authid":"a","authrole":"r"}"#]
        {
            let bytes = format!(r#"{{"v":1,"origin":"n","kind":"publication","topic":"t",{fields}}}"#);
            assert!(
                matches!(Envelope::decode(bytes.as_bytes()), Err(EnvelopeError::Malformed(_))),
                "{fields} accepted"
            );
        }
    }

    #[test]
    fn other_versions_and_garbage_are_refused() {
        let other = Envelope::decode(br#"{"v":2,"origin":"n","kind":"probe","nonce":1}"#).unwrap_err();
        assert_eq!(other, EnvelopeError::Version(2));
        assert!(matches!(Envelope::decode(b"nope"), Err(EnvelopeError::Malformed(_))));
        assert!(matches!(
            Envelope::decode(br#"{"v":1,"origin":"n","kind":"shout"}"#),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::decode(br#"{"v":1,"origin":"n","kind":"probe"}"#),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}
