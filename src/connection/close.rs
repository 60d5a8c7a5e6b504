//! The close catalogue: every way a connection closes its socket, with the close code it sends, the reason
//! text, and the label `/metrics` counts it under (`switchboard_connections_closed_total{reason}`). A close is
//! named here once; call sites say which, never a raw code.

use actix_web_actors::ws::CloseCode;

use crate::metrics::CloseReason;

/// Why this server closes a WebSocket. The text a variant carries is the close reason sent to the client.
#[derive(Debug, Clone, Copy)]
pub(super) enum Close<'a> {
    /// Over `websocket.inbound_rate` or `inbound_bytes_rate` (1008).
    RateLimited(&'a str),
    /// A per-session limit: pending calls, v1 prefixes, messages waiting for a reload (1008).
    LimitExceeded(&'a str),
    /// Binary frames, which the negotiated text protocol does not carry (1003).
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
    /// The client said GOODBYE (1000, after ours).
    Goodbye,
    /// The client sent ABORT (1000).
    ClientAbort,
    /// The node or the application asked (a `Disconnect`): its close code and message, counted as `why`.
    Asked { code: u16, why: CloseReason, message: &'a str },
}

impl Close<'_> {
    /// The close code sent.
    pub(super) fn code(&self) -> CloseCode {
        match self {
            Close::RateLimited(_) | Close::LimitExceeded(_) | Close::SlowConsumer | Close::SessionRevoked => {
                CloseCode::Policy
            }
            Close::Unsupported(_) => CloseCode::Unsupported,
            Close::Protocol(_) | Close::HelloTimeout(_) => CloseCode::Protocol,
            Close::TooBig(_) => CloseCode::Size,
            Close::NotUtf8(_) => CloseCode::Invalid,
            Close::IdleTimeout => CloseCode::Away,
            Close::SessionStoreUnavailable(_) => CloseCode::Error,
            Close::NoSuchRealm | Close::Goodbye | Close::ClientAbort => CloseCode::Normal,
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
}
