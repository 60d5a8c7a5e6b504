//! The values every layer passes around and none owns: what a connected session looks like to lookups and
//! to other nodes. Plain data: no actors, no I/O.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::session::AuthMethod;
use crate::wamp::Id;

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
    /// Negotiated subprotocol, `wamp.2.json` or `wamp`.
    pub protocol: &'static str,
    /// The node holding the socket.
    pub node: String,
    /// When the session was established, seconds since the Unix epoch.
    pub connected_at: u64,
}

impl ClientInfo {
    /// Whether this session is anonymous.
    pub fn is_anonymous(&self) -> bool {
        self.authmethod == AuthMethod::Anonymous
    }

    /// Seconds since the Unix epoch, for `connected_at`.
    pub fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }
}
