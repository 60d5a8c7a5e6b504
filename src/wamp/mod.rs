//! The WAMP protocol, as pure codecs: text in, message enum out; message enum in, text out.
//!
//! This module owns the wire formats of both subprotocols switchboard speaks — [`v2`] (`wamp.2.json`) and
//! [`v1`] (`wamp`, as Ratchet serves it) — plus the rules every layer above relies on: id ranges ([`id`]),
//! URI syntax and pattern matching ([`uri`]) and the error URIs we answer with ([`errors`]). [`serial`] holds the
//! value-level codecs of WAMP v2's serializers (JSON, MessagePack, CBOR, with the spec's JSON form of binary
//! values); the router negotiates only `wamp.2.json` so far (issue 15 wires the binary ones in).
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

/// The two subprotocols a client may negotiate on `GET /ws`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// WAMP v2 with JSON serialisation, subprotocol `wamp.2.json`.
    V2,
    /// WAMP v1 (2012 spec as Ratchet serves it), subprotocol `wamp`.
    V1,
}

impl Protocol {
    /// The `Sec-WebSocket-Protocol` token of this protocol.
    pub const fn token(self) -> &'static str {
        match self {
            Protocol::V2 => "wamp.2.json",
            Protocol::V1 => "wamp",
        }
    }

    /// Every subprotocol token we accept, in order of preference.
    pub const TOKENS: [&'static str; 2] = ["wamp.2.json", "wamp"];

    /// Picks the first protocol we speak from a `Sec-WebSocket-Protocol` offer (comma separated).
    pub fn negotiate(offer: &str) -> Option<Protocol> {
        let offered: Vec<&str> = offer.split(',').map(str::trim).collect();
        // Our preference wins over the client's order: v2 is the richer protocol.
        [Protocol::V2, Protocol::V1].into_iter().find(|p| offered.contains(&p.token()))
    }
}

/// Why a text frame could not be turned into a message (the *syntax* stage).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is not JSON at all.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
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
        assert_eq!(Protocol::negotiate("wamp, wamp.2.json"), Some(Protocol::V2));
        assert_eq!(Protocol::negotiate("wamp"), Some(Protocol::V1));
        assert_eq!(Protocol::negotiate("wamp.2.msgpack, mqtt"), None);
        assert_eq!(Protocol::negotiate(""), None);
    }

    #[test]
    fn non_arrays_are_rejected() {
        assert_eq!(parse_array("{}"), Err(DecodeError::NotAnArray));
        assert_eq!(parse_array("[]"), Err(DecodeError::NotAnArray));
        assert!(matches!(parse_array("[1,"), Err(DecodeError::InvalidJson(_))));
    }
}
