//! The WAMP protocol, as pure codecs: text in, message enum out; message enum in, text out.
//!
//! This module owns the wire formats of both subprotocols switchboard speaks — [`v2`] (`wamp.2.json`) and
//! [`v1`] (`wamp`, as Ratchet serves it) — plus the rules every layer above relies on: id ranges ([`id`]),
//! URI syntax and pattern matching ([`uri`]) and the error URIs we answer with ([`errors`]). [`serial`] holds the
//! value-level codecs of WAMP v2's serializers (JSON, MessagePack, CBOR, with the spec's JSON form of binary
//! values): a binary frame becomes the same value tree a JSON frame parses into, so one decoder checks every
//! serializer's messages.
//!
//! It must not know actix, tokio or redis: everything here is a function of its inputs, so it is unit-tested
//! with literal frames (including truncated, wrong-typed, unknown and oversized ones) and reused unchanged by
//! the test client and the load generator.
//!
//! Parsing happens in two stages (see `STYLE.md`): *syntax* turns a JSON array into a message enum whose
//! fields have the right JSON types; *meaning* (URIs, option dictionaries) is checked by the typed helpers in
//! each codec, so a syntactically fine but meaningless message can still get a precise WAMP `ERROR`.

pub mod errors;
pub mod filter;
pub mod id;
pub mod meta;
pub mod serial;
pub mod uri;
pub mod v1;
pub mod v2;

pub use id::Id;
pub use serial::Serializer;

/// The subprotocols a client may negotiate on `GET /ws`: WAMP v2 in one of its serializers, or WAMP v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// WAMP v2: `wamp.2.json` (text frames), `wamp.2.msgpack` or `wamp.2.cbor` (binary frames).
    V2(Serializer),
    /// WAMP v1 (2012 spec as Ratchet serves it), subprotocol `wamp`.
    V1,
}

impl Protocol {
    /// WAMP v2 over JSON, the default and the form every other serializer is checked against.
    pub const V2_JSON: Protocol = Protocol::V2(Serializer::Json);

    /// The `Sec-WebSocket-Protocol` token of this protocol.
    pub const fn token(self) -> &'static str {
        match self {
            Protocol::V2(serializer) => serializer.token(),
            Protocol::V1 => "wamp",
        }
    }

    /// Every subprotocol token we accept.
    pub const TOKENS: [&'static str; 4] = ["wamp.2.json", "wamp.2.msgpack", "wamp.2.cbor", "wamp"];

    /// The protocol a token names.
    pub fn from_token(token: &str) -> Option<Protocol> {
        match token {
            "wamp" => Some(Protocol::V1),
            other => Serializer::from_token(other).map(Protocol::V2),
        }
    }

    /// Whether this is WAMP v2 (any serializer).
    pub const fn is_v2(self) -> bool {
        matches!(self, Protocol::V2(_))
    }

    /// The serializer of a v2 session whose frames are binary, `None` for text protocols.
    pub const fn binary(self) -> Option<Serializer> {
        match self {
            Protocol::V2(serializer) if serializer.is_binary() => Some(serializer),
            _ => None,
        }
    }

    /// Picks a protocol from a `Sec-WebSocket-Protocol` offer (comma separated): WAMP v2 over v1 whatever the
    /// order (v2 is the richer protocol), and among v2 serializers the client's own order (it lists the one it
    /// prefers first: a CBOR-first client gets CBOR even if it also offers JSON).
    pub fn negotiate(offer: &str) -> Option<Protocol> {
        let offered = || offer.split(',').map(str::trim).filter_map(Protocol::from_token);
        offered().find(|p| p.is_v2()).or_else(|| offered().next())
    }
}

/// Why a text frame could not be turned into a message (the *syntax* stage).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is not JSON at all.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// A binary frame that its serializer cannot read (bad MessagePack or CBOR, or a value JSON cannot hold).
    #[error("invalid {0}")]
    Serial(String),
    /// The frame is JSON but not a non-empty array.
    #[error("a WAMP message must be a non-empty JSON array")]
    NotAnArray,
    /// The first element is not a message type code.
    #[error("the first element of a WAMP message must be an integer message type")]
    BadCode,
    /// The message type code is not one this protocol defines.
    #[error("unknown message type {0}")]
    UnknownCode(u64),
    /// A message has too few or too many elements.
    #[error("{message} message has {got} elements, expected {expected}")]
    WrongLength {
        /// Message name.
        message: &'static str,
        /// How many elements arrived.
        got: usize,
        /// What the protocol allows, in words.
        expected: &'static str,
    },
    /// An element has the wrong JSON type or an out-of-range value.
    #[error("{message} element {index} ({field}) must be {expected}")]
    BadField {
        /// Message name.
        message: &'static str,
        /// Position in the array.
        index: usize,
        /// Field name as the spec calls it.
        field: &'static str,
        /// What the spec requires.
        expected: &'static str,
    },
}

/// Parses a frame into a JSON array, the part of the syntax stage both codecs share.
pub(crate) fn parse_array(text: &str) -> Result<Vec<serde_json::Value>, DecodeError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
    match value {
        serde_json::Value::Array(items) if !items.is_empty() => Ok(items),
        _ => Err(DecodeError::NotAnArray),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_v2_whatever_the_client_order() {
        assert_eq!(Protocol::negotiate("wamp, wamp.2.json"), Some(Protocol::V2_JSON));
        assert_eq!(Protocol::negotiate("wamp"), Some(Protocol::V1));
        assert_eq!(Protocol::negotiate("mqtt, wamp.2.msgpack"), Some(Protocol::V2(Serializer::MsgPack)));
        assert_eq!(Protocol::negotiate("wamp, wamp.2.cbor, wamp.2.json"), Some(Protocol::V2(Serializer::Cbor)));
        assert_eq!(Protocol::negotiate("wamp.2.json,wamp.2.cbor"), Some(Protocol::V2_JSON));
        assert_eq!(Protocol::negotiate("wamp.2.ubjson, mqtt"), None);
        assert_eq!(Protocol::negotiate(""), None);
        for token in Protocol::TOKENS {
            assert_eq!(Protocol::from_token(token).map(Protocol::token), Some(token));
        }
    }

    #[test]
    fn non_arrays_are_rejected() {
        assert_eq!(parse_array("{}"), Err(DecodeError::NotAnArray));
        assert_eq!(parse_array("[]"), Err(DecodeError::NotAnArray));
        assert!(matches!(parse_array("[1,"), Err(DecodeError::InvalidJson(_))));
    }
}
