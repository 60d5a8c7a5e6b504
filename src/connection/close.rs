//! The close catalogue: every way a connection closes its socket, with the close code it sends, the reason
//! text, and the label `/metrics` counts it under (`switchboard_connections_closed_total{reason}`). A close is
//! named here once; call sites say which, never a raw code. That includes the [`Disconnect`]s a connection
//! asks of others (a user's oldest sockets beyond `session.max_sockets_per_user`) and how a received one is
//! counted.

use actix_web_actors::ws::CloseCode;

use super::frames::FragmentError;
use crate::frame::Violation;
use crate::metrics::CloseReason;
use crate::model::Disconnect;
use crate::wamp::errors;

/// What closes a user's oldest socket beyond `session.max_sockets_per_user` (`max`): GOODBYE
/// `switchboard.close.too_many_sockets` (v2), then close 1008, counted as `too_many_sockets`.
pub(super) fn too_many_sockets(max: usize) -> Disconnect {
    Disconnect {
        code: u16::from(CloseCode::Policy),
        reason: errors::TOO_MANY_SOCKETS.to_owned(),
        message: format!("too many sockets for this user (at most {max})"),
    }
}

/// Why this server closes a WebSocket. The text a variant carries is the close reason sent to the client.
#[derive(Debug, Clone, Copy)]
pub(super) enum Close<'a> {
    /// Over `websocket.inbound_rate` or `inbound_bytes_rate` (1008).
    RateLimited(&'a str),
    /// A per-session limit: pending calls, v1 prefixes, messages waiting for a reload (1008).
    LimitExceeded(&'a str),
    /// Frames of the kind the negotiated protocol does not carry: binary on a text protocol, text on a binary
    /// serializer (1003).
    Unsupported(&'a str),
    /// A WebSocket or WAMP protocol violation (1002).
    Protocol(&'a str),
    /// The v2 client sent no HELLO within `websocket.hello_timeout` (1002).
    HelloTimeout(&'a str),
    /// A message over `websocket.max_message_size` (1009).
    TooBig(&'a str),
    /// A text message that is not UTF-8 (1007).
    NotUtf8(&'a str),
    /// No message, not even a pong, for `websocket.idle_timeout` (1001).
    IdleTimeout,
    /// The outbound queue overflowed: the client does not read (1008).
    SlowConsumer,
    /// The session store could not be read when the socket's identity had to be (1011).
    SessionStoreUnavailable(&'a str),
    /// The web session expired or was logged out, and `session.on_revoked` closes (1008).
    SessionRevoked,
    /// HELLO for a realm this router does not serve (1000, after ABORT).
    NoSuchRealm,
    /// Authentication failed or no offered method exists (1000, after ABORT).
    AuthenticationFailed,
    /// The session's token expired (1008, after GOODBYE `switchboard.close.token_expired`).
    TokenExpired,
    /// The client said GOODBYE (1000, after ours).
    Goodbye,
    /// The client sent ABORT (1000).
    ClientAbort,
    /// The node or the application asked (a `Disconnect`): its close code and message, counted as `why`.
    Asked { code: u16, why: CloseReason, message: &'a str },
}

impl<'a> Close<'a> {
    /// The close a [`Disconnect`] asks for: its code and message, counted by its WAMP reason URI (any reason
    /// an application makes up counts as `kicked`: label values never come from outside the code).
    pub(super) fn asked(disconnect: &'a Disconnect) -> Close<'a> {
        let why = match disconnect.reason.as_str() {
            errors::SYSTEM_SHUTDOWN => CloseReason::Shutdown,
            errors::TOO_MANY_SOCKETS => CloseReason::TooManySockets,
            _ => CloseReason::Kicked,
        };
        Close::Asked { code: disconnect.code, why, message: &disconnect.message }
    }

    /// The close for input the frame guard refused (`reason`: the violation's text), with the violation's
    /// close code.
    pub(super) fn refused_input(violation: &Violation, reason: &'a str) -> Close<'a> {
        match violation {
            Violation::TooLarge { .. } => Close::TooBig(reason),
            Violation::CloseReasonNotUtf8 | Violation::TextNotUtf8 => Close::NotUtf8(reason),
            _ => Close::Protocol(reason),
        }
    }

    /// The close for a fragmented message that cannot be reassembled (`reason`: the error's text).
    pub(super) fn fragments(error: &FragmentError, reason: &'a str) -> Close<'a> {
        match error {
            FragmentError::WrongKind(..) => Close::Unsupported(reason),
            FragmentError::Interleaved | FragmentError::Orphan => Close::Protocol(reason),
            FragmentError::TooBig(_) => Close::TooBig(reason),
            FragmentError::NotUtf8 => Close::NotUtf8(reason),
        }
    }

    /// The close code sent.
    pub(super) fn code(&self) -> CloseCode {
        match self {
            Close::RateLimited(_)
            | Close::LimitExceeded(_)
            | Close::SlowConsumer
            | Close::SessionRevoked
            | Close::TokenExpired => CloseCode::Policy,
            Close::Unsupported(_) => CloseCode::Unsupported,
            Close::Protocol(_) | Close::HelloTimeout(_) => CloseCode::Protocol,
            Close::TooBig(_) => CloseCode::Size,
            Close::NotUtf8(_) => CloseCode::Invalid,
            Close::IdleTimeout => CloseCode::Away,
            Close::SessionStoreUnavailable(_) => CloseCode::Error,
            Close::NoSuchRealm | Close::AuthenticationFailed | Close::Goodbye | Close::ClientAbort => CloseCode::Normal,
            Close::Asked { code, .. } => CloseCode::from(*code),
        }
    }

    /// The close reason sent (truncated to what a close frame holds by the caller).
    pub(super) fn reason(&self) -> &str {
        match self {
            Close::RateLimited(text)
            | Close::LimitExceeded(text)
            | Close::Unsupported(text)
            | Close::Protocol(text)
            | Close::HelloTimeout(text)
            | Close::TooBig(text)
            | Close::NotUtf8(text)
            | Close::SessionStoreUnavailable(text)
            | Close::Asked { message: text, .. } => text,
            Close::IdleTimeout => "idle timeout",
            Close::SlowConsumer => "slow consumer: outbound queue full",
            Close::SessionRevoked => "session expired or logged out",
            Close::NoSuchRealm => "no such realm",
            Close::AuthenticationFailed => "authentication failed",
            Close::TokenExpired => "token expired",
            Close::Goodbye => "goodbye",
            Close::ClientAbort => "aborted by client",
        }
    }

    /// What `/metrics` counts it under.
    pub(super) fn counted_as(&self) -> CloseReason {
        match self {
            Close::RateLimited(_) => CloseReason::RateLimited,
            Close::LimitExceeded(_) => CloseReason::LimitExceeded,
            Close::Unsupported(_) | Close::Protocol(_) | Close::NotUtf8(_) => CloseReason::ProtocolError,
            Close::HelloTimeout(_) => CloseReason::HelloTimeout,
            Close::TooBig(_) => CloseReason::MessageTooBig,
            Close::IdleTimeout => CloseReason::IdleTimeout,
            Close::SlowConsumer => CloseReason::SlowConsumer,
            Close::SessionStoreUnavailable(_) => CloseReason::SessionStoreUnavailable,
            Close::SessionRevoked => CloseReason::SessionRevoked,
            Close::NoSuchRealm => CloseReason::NoSuchRealm,
            Close::AuthenticationFailed => CloseReason::AuthenticationFailed,
            Close::TokenExpired => CloseReason::TokenExpired,
            Close::Goodbye => CloseReason::Goodbye,
            Close::ClientAbort => CloseReason::ClientAbort,
            Close::Asked { why, .. } => *why,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_close_has_its_code_reason_and_label() {
        let cases = [
            (Close::SlowConsumer, 1008, "slow consumer: outbound queue full", CloseReason::SlowConsumer),
            (Close::IdleTimeout, 1001, "idle timeout", CloseReason::IdleTimeout),
            (
                Close::TooBig("message larger than 10 bytes"),
                1009,
                "message larger than 10 bytes",
                CloseReason::MessageTooBig,
            ),
            (
                Close::NotUtf8("text message is not valid UTF-8"),
                1007,
                "text message is not valid UTF-8",
                CloseReason::ProtocolError,
            ),
            (Close::HelloTimeout("no HELLO"), 1002, "no HELLO", CloseReason::HelloTimeout),
            (Close::SessionStoreUnavailable("store down"), 1011, "store down", CloseReason::SessionStoreUnavailable),
            (
                Close::Asked { code: 1001, why: CloseReason::Shutdown, message: "bye" },
                1001,
                "bye",
                CloseReason::Shutdown,
            ),
        ];
        for (close, code, reason, label) in cases {
            assert_eq!(
                (u16::from(close.code()), close.reason(), close.counted_as()),
                (code, reason, label),
                "{close:?}"
            );
        }
    }

    #[test]
    fn refused_input_closes_with_the_violations_code() {
        let violations = [
            Violation::TooLarge { max: 10 },
            Violation::TextNotUtf8,
            Violation::CloseReasonNotUtf8,
            Violation::Unmasked,
            Violation::BadCloseCode(1005),
        ];
        for violation in violations {
            let reason = violation.to_string();
            let close = Close::refused_input(&violation, &reason);
            assert_eq!((u16::from(close.code()), close.reason()), (violation.close_code(), reason.as_str()));
        }
    }

    #[test]
    fn a_disconnect_closes_with_its_code_and_is_counted_by_its_reason_uri() {
        let sockets = too_many_sockets(3);
        let close = Close::asked(&sockets);
        assert_eq!(
            (u16::from(close.code()), close.reason(), close.counted_as()),
            (1008, "too many sockets for this user (at most 3)", CloseReason::TooManySockets)
        );
        let shutdown = Disconnect { code: 1001, reason: errors::SYSTEM_SHUTDOWN.into(), message: "bye".into() };
        assert_eq!(Close::asked(&shutdown).counted_as(), CloseReason::Shutdown);
        let invented = Disconnect { code: 4000, reason: "app.close.whatever".into(), message: "x".into() };
        assert_eq!(
            (u16::from(Close::asked(&invented).code()), Close::asked(&invented).counted_as()),
            (4000, CloseReason::Kicked)
        );
    }
}
