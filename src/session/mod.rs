//! Who a connection is: the web app's actix-session session, resolved before the upgrade.
//!
//! This module owns the [`Identity`] of a connection, the bridge from actix-session's cookie and store to it
//! ([`bridge`]), the stores ([`store`]), and the writable [`SessionHandle`] handlers receive. It holds no
//! session state itself: every read and write goes through the store, so any node sees the same session.

pub mod bridge;
pub mod store;
pub mod token;

pub use bridge::{InvalidReason, InvalidSession, SessionError, SessionHandle};

use serde::Serialize;

pub use crate::model::AuthMethod;
use crate::wamp::Id;

/// The role every anonymous connection holds.
pub const ANONYMOUS_ROLE: &str = "anonymous";

/// The user behind one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// Username (WAMP `authid`), `anon-<session id>` for anonymous connections.
    pub authid: String,
    /// Roles; the first is announced as WAMP `authrole`.
    pub authroles: Vec<String>,
    /// How the identity was established.
    pub authmethod: AuthMethod,
}

impl Identity {
    /// The anonymous identity of WAMP session `session`.
    pub fn anonymous(session: Id) -> Identity {
        Identity {
            authid: format!("anon-{session}"),
            authroles: vec![ANONYMOUS_ROLE.to_owned()],
            authmethod: AuthMethod::Anonymous,
        }
    }

    /// The primary role (WAMP `authrole`).
    pub fn authrole(&self) -> &str {
        self.authroles.first().map(String::as_str).unwrap_or(ANONYMOUS_ROLE)
    }

    /// Whether this identity is anonymous.
    pub fn is_anonymous(&self) -> bool {
        self.authmethod == AuthMethod::Anonymous
    }
}

/// A session as handlers see it: who is calling, subscribing or publishing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// The web session behind the connection, writable; `None` for connections without one.
    #[serde(skip)]
    pub web_session: Option<SessionHandle>,
    /// WAMP session id.
    pub session: Id,
    /// Username.
    pub authid: String,
    /// Roles.
    pub authroles: Vec<String>,
}
