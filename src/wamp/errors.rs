//! The catalogue of error and close reason URIs switchboard sends.
//!
//! WAMP-defined URIs come first; `switchboard.*` URIs are ours and documented in `docs/protocol.md`.

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
/// The router does not accept this kind of request (e.g. client REGISTER).
pub const OPTION_NOT_ALLOWED: &str = "wamp.error.option_not_allowed";
/// The HELLO asked for a realm this node does not serve.
pub const NO_SUCH_REALM: &str = "wamp.error.no_such_realm";
/// The client sent GOODBYE / we acknowledge one.
pub const GOODBYE_AND_OUT: &str = "wamp.close.goodbye_and_out";
/// Normal close initiated by the router.
pub const CLOSE_NORMAL: &str = "wamp.close.normal";
/// The node is shutting down; reconnect elsewhere.
pub const SYSTEM_SHUTDOWN: &str = "wamp.close.system_shutdown";
/// A procedure handler failed without a more specific error.
pub const RUNTIME_ERROR: &str = "switchboard.error.runtime_error";
/// The session has too many calls in flight.
pub const TOO_MANY_CALLS: &str = "switchboard.error.too_many_calls";
/// The session holds as many subscriptions as it may.
pub const TOO_MANY_SUBSCRIPTIONS: &str = "switchboard.error.too_many_subscriptions";
/// A topic handler refused a publish.
pub const PUBLISH_REJECTED: &str = "switchboard.error.publish_rejected";
/// GOODBYE reason when the web session behind a socket was logged out or expired.
pub const SESSION_REVOKED: &str = "switchboard.close.session_revoked";
/// An acknowledged publish was delivered on this node but could not be handed to the other nodes.
pub const BACKPLANE_UNAVAILABLE: &str = "switchboard.error.backplane_unavailable";
/// GOODBYE reason when the application disconnected the user (push API, `disconnect_user`).
/// A socket closed because its user opened more than `session.max_sockets_per_user`.
pub const TOO_MANY_SOCKETS: &str = "switchboard.close.too_many_sockets";
/// A socket closed by an operator or the application (push API, `disconnect`).
pub const KICKED: &str = "switchboard.close.disconnected";
