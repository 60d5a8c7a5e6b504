//! The inter-node wire format: what one node publishes on Redis for the others. Pure: no I/O here.
//!
//! Every message is one JSON object with a version `v`, a `kind`, and the `origin` node. A publication is
//! serialised once (payload included) and travels on its topic's channel; control messages travel on a node's
//! inbox channel. Unknown versions and kinds are refused, so a mixed-version cluster fails loudly, not subtly.

use serde::{Deserialize, Serialize};

use crate::topic::{Payload, Publication, Publisher};
use crate::wamp::filter::Filters;
use crate::wamp::Id;

/// The envelope version this build speaks.
pub const VERSION: u32 = 1;

/// One message between nodes.
// A publication is the common case and lives only while it is encoded or decoded: boxing it would cost an
// allocation per message to save stack space for the rare control messages.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// A publication for the subscribers of `topic` on every node.
    Publication {
        /// Cluster-unique publication id.
        id: Id,
        /// The concrete topic.
        topic: String,
        /// The publishing session, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        publisher: Option<Publisher>,
        /// Leave the publisher out.
        #[serde(default)]
        exclude_me: bool,
        /// Reveal the publisher.
        #[serde(default)]
        disclose_me: bool,
        /// Receiver filters, applied by each receiving node.
        #[serde(default)]
        filters: Filters,
        /// Arguments.
        #[serde(default)]
        payload: Payload,
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
    /// A liveness probe a node sends to its own inbox to prove its subscription still delivers.
    Probe {
        /// Matches the probe to its echo.
        nonce: u64,
    },
}

/// A versioned message with its origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Format version ([`VERSION`]).
    pub v: u32,
    /// The node that sent it.
    pub origin: String,
    /// What it carries.
    #[serde(flatten)]
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

impl Envelope {
    /// Wraps a publication of this node.
    pub fn publication(origin: &str, p: &Publication) -> Envelope {
        Envelope {
            v: VERSION,
            origin: origin.to_owned(),
            body: Body::Publication {
                id: p.id,
                topic: p.topic.clone(),
                publisher: p.publisher.clone(),
                exclude_me: p.exclude_me,
                disclose_me: p.disclose_me,
                filters: p.filters.clone(),
                payload: p.payload.clone(),
            },
        }
    }

    /// Serialises to the bytes published on Redis.
    pub fn encode(&self) -> Vec<u8> {
        // Plain data with string keys: serialisation cannot fail.
        serde_json::to_vec(self).expect("envelope serialises")
    }

    /// Parses bytes received from Redis.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let version: Version = serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if version.v != VERSION {
            return Err(EnvelopeError::Version(version.v));
        }
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))
    }

    /// Turns a publication envelope back into a [`Publication`].
    pub fn into_publication(self) -> Option<Publication> {
        match self.body {
            Body::Publication { id, topic, publisher, exclude_me, disclose_me, filters, payload } => {
                let mut p = Publication::with_id(id, topic, payload, filters);
                p.publisher = publisher;
                p.exclude_me = exclude_me;
                p.disclose_me = disclose_me;
                Some(p)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn publication_round_trips_with_filters_and_publisher() {
        let filters = Filters { exclude: vec![1], eligible_authid: Some(vec!["alice".into()]), ..Default::default() };
        let p = Publication::new("chat/lobby".into(), Payload::single(json!({"t": "hi"})), filters).with_publisher(
            Publisher { session: 9, authid: "bob".into(), authrole: "user".into() },
            true,
            false,
        );
        let bytes = Envelope::publication("node-a", &p).encode();
        let back = Envelope::decode(&bytes).unwrap();
        assert_eq!(back.origin, "node-a");
        let q = back.into_publication().unwrap();
        assert_eq!((q.id, q.topic.as_str(), q.exclude_me), (p.id, "chat/lobby", true));
        assert_eq!(q.filters, p.filters);
        assert_eq!(q.publisher, p.publisher);
        assert_eq!(q.v2_tail(), p.v2_tail());
    }

    #[test]
    fn control_messages_round_trip() {
        let e = Envelope {
            v: VERSION,
            origin: "n".into(),
            body: Body::DisconnectUser { authid: "alice".into(), code: 1008, reason: "r".into(), message: "m".into() },
        };
        assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
        let probe = br#"{"v":1,"origin":"n","kind":"probe","nonce":5}"#;
        assert_eq!(Envelope::decode(probe).unwrap().body, Body::Probe { nonce: 5 });
    }

    #[test]
    fn other_versions_and_garbage_are_refused() {
        assert_eq!(
            Envelope::decode(br#"{"v":2,"origin":"n","kind":"probe","nonce":1}"#),
            Err(EnvelopeError::Version(2))
        );
        assert!(matches!(Envelope::decode(b"nope"), Err(EnvelopeError::Malformed(_))));
        assert!(matches!(
            Envelope::decode(br#"{"v":1,"origin":"n","kind":"shout"}"#),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}
