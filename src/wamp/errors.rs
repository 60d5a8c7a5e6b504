//! The catalogue of error and close reason URIs switchboard sends.
//!
//! WAMP-defined URIs come first; `switchboard.*` URIs are ours and documented in the README (Protocol → "Bad input").
//! Error texts that quote what a client sent quote it through [`excerpt`], so an answer never grows with
//! the client's input (a 20-byte request must not earn a 65 KB error).

use std::borrow::Cow;
use std::fmt;

/// A peer broke the protocol (bad message before HELLO, malformed frame, unknown code, …).
pub const PROTOCOL_VIOLATION: &str = "wamp.error.protocol_violation";
/// A URI is not valid (syntax, length, or a reserved `wamp.` topic used for publishing).
pub const INVALID_URI: &str = "wamp.error.invalid_uri";
/// An argument or option has the wrong type or value.
pub const INVALID_ARGUMENT: &str = "wamp.error.invalid_argument";
/// No procedure is registered under the called URI.
pub const NO_SUCH_PROCEDURE: &str = "wamp.error.no_such_procedure";
/// UNSUBSCRIBE named a subscription this session does not hold.
pub const NO_SUCH_SUBSCRIPTION: &str = "wamp.error.no_such_subscription";
/// UNREGISTER named a registration this session does not hold.
pub const NO_SUCH_REGISTRATION: &str = "wamp.error.no_such_registration";
/// `wamp.session.get` asked for a session that does not exist.
pub const NO_SUCH_SESSION: &str = "wamp.error.no_such_session";
/// The caller's role may not subscribe, publish or call here.
pub const NOT_AUTHORIZED: &str = "wamp.error.not_authorized";
/// The HELLO asked for a realm this node does not serve.
pub const NO_SUCH_REALM: &str = "wamp.error.no_such_realm";
/// HELLO offered only authentication methods this router does not have (ABORT).
pub const NO_AUTH_METHOD: &str = "wamp.error.no_auth_method";
/// The ticket (a JWT) was refused: bad signature, expired, wrong audience… (ABORT).
pub const AUTHENTICATION_FAILED: &str = "wamp.error.authentication_failed";
/// The session's token (`exp`) ran out: the router ends the session (GOODBYE).
pub const TOKEN_EXPIRED: &str = "switchboard.close.token_expired";
/// The client sent GOODBYE / we acknowledge one.
pub const GOODBYE_AND_OUT: &str = "wamp.close.goodbye_and_out";
/// The node is shutting down; reconnect elsewhere.
pub const SYSTEM_SHUTDOWN: &str = "wamp.close.system_shutdown";
/// A procedure handler failed without a more specific error.
pub const RUNTIME_ERROR: &str = "switchboard.error.runtime_error";
/// The session has too many calls in flight.
pub const TOO_MANY_CALLS: &str = "switchboard.error.too_many_calls";
/// The session holds as many subscriptions as it may.
pub const TOO_MANY_SUBSCRIPTIONS: &str = "switchboard.error.too_many_subscriptions";
/// The node has too many publications queued (node-wide, or this session's share): the publish is refused;
/// retry later.
pub const OVERLOADED: &str = "switchboard.error.overloaded";
/// GOODBYE reason when the web session behind a socket was logged out or expired.
pub const SESSION_REVOKED: &str = "switchboard.close.session_revoked";
/// An acknowledged publish was delivered on this node but could not be handed to the other nodes.
pub const BACKPLANE_UNAVAILABLE: &str = "switchboard.error.backplane_unavailable";
/// The cluster's registry (Redis) could not answer a meta procedure that must not answer for one node only.
pub const REGISTRY_UNAVAILABLE: &str = "switchboard.error.registry_unavailable";
/// GOODBYE reason when the application disconnected the user (push API, `disconnect_user`).
/// A socket closed because its user opened more than `session.max_sockets_per_user`.
pub const TOO_MANY_SOCKETS: &str = "switchboard.close.too_many_sockets";
/// A socket closed by an operator or the application (push API, `disconnect`).
pub const KICKED: &str = "switchboard.close.disconnected";

/// A refused request: the error URI it is answered with (v2 `ERROR`, v1 `CALLERROR`) and a message for humans.
/// The URI is one of the constants above, or an application's own (a topic handler's `Reject`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{uri}: {message}")]
pub struct WampError {
    /// The error URI.
    pub uri: Cow<'static, str>,
    /// What went wrong, quoting client input only through [`excerpt`].
    pub message: String,
}

impl WampError {
    /// An error with one of the catalogue's URIs.
    pub fn new(uri: &'static str, message: impl Into<String>) -> WampError {
        WampError { uri: Cow::Borrowed(uri), message: message.into() }
    }

    /// An error with an application's own URI.
    pub fn custom(uri: String, message: impl Into<String>) -> WampError {
        WampError { uri: Cow::Owned(uri), message: message.into() }
    }
}

/// Characters of client input an error text quotes at most; longer input is cut there and marked with `…`.
pub const MAX_EXCERPT_CHARS: usize = 64;

/// Client input (a URI, a realm, a CURIE expansion) as an error text may quote it: at most
/// [`MAX_EXCERPT_CHARS`] characters, then `…` when something was cut. Use it in every `format!` that puts
/// client input into an answer or a log line: `format!("'{}' is not a valid URI", excerpt(&uri))`.
pub fn excerpt(input: &str) -> Excerpt<'_> {
    Excerpt { input, max_chars: MAX_EXCERPT_CHARS }
}

/// The [`Display`](fmt::Display) of [`excerpt`].
#[derive(Debug, Clone, Copy)]
pub struct Excerpt<'a> {
    input: &'a str,
    max_chars: usize,
}

impl<'a> Excerpt<'a> {
    /// A longer excerpt, for a message that quotes client input among useful text of its own (a parser's
    /// "unknown field `x`, expected one of …").
    pub fn with_max_chars(input: &'a str, max_chars: usize) -> Excerpt<'a> {
        Excerpt { input, max_chars }
    }
}

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.input.char_indices().nth(self.max_chars) {
            None => f.write_str(self.input),
            Some((end, _)) => {
                f.write_str(&self.input[..end])?;
                f.write_str("…")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wamp_error_shows_its_uri_and_message() {
        let e = WampError::new(NOT_AUTHORIZED, "role may not publish to 'x'");
        assert_eq!(e.to_string(), "wamp.error.not_authorized: role may not publish to 'x'");
        assert_eq!(WampError::custom("app.error.full".into(), "room full").uri, "app.error.full");
    }

    #[test]
    fn excerpts_keep_short_input_and_cut_long_input_on_a_character_boundary() {
        assert_eq!(excerpt("chat/lobby").to_string(), "chat/lobby");
        let exact = "x".repeat(MAX_EXCERPT_CHARS);
        assert_eq!(excerpt(&exact).to_string(), exact);
        let long = "é".repeat(65_000);
        let cut = excerpt(&long).to_string();
        assert_eq!(cut.chars().count(), MAX_EXCERPT_CHARS + 1);
        assert!(cut.ends_with("é…"), "{cut}");
    }
}
