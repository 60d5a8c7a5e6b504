//! The values every layer passes around and none owns: what a connected session looks like to lookups and
//! to other nodes, how it was authenticated, and how it is asked to close. Plain data: no I/O, and no import
//! of any other layer but `wamp` (ids).

use std::time::{SystemTime, UNIX_EPOCH};

use actix::Message;
use serde::Serialize;

use crate::wamp::Id;

mod history;
mod publication;
mod subscription;

pub use history::{Keep, StoredEvent};
pub use publication::{Payload, Publication, Publisher, ReceiptSink, TopicKey};
pub use subscription::{now_millis, SubscriptionIds, SubscriptionInfo};

/// One stored publication, as the registry keeps it (JSON) for a surviving node.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Testament {
    /// Topic URI.
    pub topic: String,
    /// Positional arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<serde_json::Value>>,
    /// Keyword arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kwargs: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Testament {
    /// The publication it becomes (from the router: no publisher disclosed).
    pub fn publication(self) -> Publication {
        Publication::new(
            self.topic,
            Payload { args: self.args, kwargs: self.kwargs },
            crate::wamp::filter::Filters::default(),
        )
    }
}

/// How an identity was established (v2 WELCOME `authmethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// No session: `anon-<session id>`.
    Anonymous,
    /// The web app's session cookie.
    Cookie,
    /// A JWT: WAMP `ticket` or `Authorization: Bearer` (`[auth]`).
    Ticket,
}

impl AuthMethod {
    /// The WAMP `authmethod` string.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Anonymous => "anonymous",
            AuthMethod::Cookie => "cookie",
            AuthMethod::Ticket => "ticket",
        }
    }
}

/// One connected WAMP session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientInfo {
    /// WAMP session id.
    pub session: Id,
    /// Username (`anon-<session>` when anonymous).
    pub authid: String,
    /// Roles (the first is the WAMP `authrole`).
    pub authroles: Vec<String>,
    /// How the identity was established.
    pub authmethod: AuthMethod,
    /// Negotiated subprotocol: `wamp.2.json`, `wamp.2.msgpack`, `wamp.2.cbor` or `wamp`.
    pub protocol: &'static str,
    /// The node holding the socket.
    pub node: String,
    /// When the session was established, seconds since the Unix epoch.
    pub connected_at: u64,
}

impl ClientInfo {
    /// The primary role (WAMP `authrole`): the first of `authroles`.
    pub fn authrole(&self) -> &str {
        self.authroles.first().map(String::as_str).unwrap_or_default()
    }

    /// The session's meta dictionary (`wamp.session.get`, `wamp.session.on_join`): identity, transport and node,
    /// no secret (no cookie, no session key).
    pub fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "session": self.session,
            "authid": self.authid,
            "authrole": self.authrole(),
            "authroles": self.authroles,
            "authmethod": self.authmethod,
            "authprovider": "switchboard",
            "transport": { "type": "websocket", "protocol": self.protocol },
            "node": self.node,
            "connected_at": self.connected_at,
        })
    }

    /// Whether this session is anonymous.
    pub fn is_anonymous(&self) -> bool {
        self.authmethod == AuthMethod::Anonymous
    }

    /// Seconds since the Unix epoch, for `connected_at`.
    pub fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }
}

/// Asks a connection to close: v2 gets GOODBYE with `reason`, then the socket closes with `code`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Disconnect {
    /// WebSocket close code (1000 normal, 1001 going away, 1008 policy).
    pub code: u16,
    /// WAMP reason URI, e.g. `wamp.close.system_shutdown`.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}
