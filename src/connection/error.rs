//! Errors at the connection's boundary, and the one place they become what the client sees.
//!
//! A handler of a client message returns a [`ConnectionError`]; [`Connection::fail`] answers it, as the
//! request's [`Reply`] says:
//!
//! | error | WAMP v2 | WAMP v1 |
//! |---|---|---|
//! | [`Refused`](ConnectionError::Refused) (a [`WampError`]) | ERROR; nothing for PUBLISH without `acknowledge` | CALLERROR for CALL; nothing for the others |
//! | [`Undecodable`](ConnectionError::Undecodable), [`Violation`](ConnectionError::Violation) | ABORT `wamp.error.protocol_violation`, close 1002 | close 1002 |
//! | [`NoSuchRealm`](ConnectionError::NoSuchRealm) | ABORT `wamp.error.no_such_realm`, close 1000 | — |
//! | [`AuthenticationFailed`](ConnectionError::AuthenticationFailed) | ABORT `wamp.error.authentication_failed`, close 1000 | — |
//! | [`NoAuthMethod`](ConnectionError::NoAuthMethod) | ABORT `wamp.error.no_auth_method`, close 1000 | — |
//! | [`LimitExceeded`](ConnectionError::LimitExceeded) | — | close 1008 (PREFIX beyond `wamp.max_prefixes`) |
//!
//! A refusal the protocol has no answer for is logged and counted in `switchboard_protocol_errors_total`.
//! Close codes and reasons come from the [`Close`] catalogue.

use super::*;

/// Why a client's message was not handled as asked.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectionError {
    /// The request is refused with an error URI; the session goes on.
    #[error(transparent)]
    Refused(#[from] WampError),
    /// The message does not decode.
    #[error(transparent)]
    Undecodable(#[from] DecodeError),
    /// The message breaks the protocol's rules here.
    #[error("{0}")]
    Violation(String),
    /// HELLO for a realm this router does not serve.
    #[error("no realm '{}'", excerpt(.0))]
    NoSuchRealm(String),
    /// The ticket was refused (why, for the ABORT).
    #[error("{0}")]
    AuthenticationFailed(String),
    /// HELLO offered only methods this router lacks (which it has, for the ABORT).
    #[error("{0}")]
    NoAuthMethod(String),
    /// A per-session limit whose breach ends the session (v1 prefixes).
    #[error("{0}")]
    LimitExceeded(String),
}

impl ConnectionError {
    /// A protocol violation, described for the client (ABORT message and close reason).
    pub(super) fn violation(message: impl Into<String>) -> ConnectionError {
        ConnectionError::Violation(message.into())
    }
}

/// How the protocol answers a request: where its ERROR or result goes, if anywhere.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Reply {
    /// A v2 request: ERROR (or, for a CALL, RESULT) with its message code and request id.
    V2 {
        /// The request's message code (`code::SUBSCRIBE`, …).
        code: u64,
        /// Its request id.
        request: Id,
    },
    /// A v1 CALL: CALLERROR or CALLRESULT with its call id.
    V1Call(Value),
    /// No answer in the protocol: v1 PREFIX, SUBSCRIBE, UNSUBSCRIBE and PUBLISH, v2 PUBLISH without
    /// `acknowledge`, and messages that are not requests.
    Unanswered,
}

impl Reply {
    /// The frame refusing the request with `error`; `None` where the protocol has none.
    pub(super) fn error(&self, error: &WampError) -> Option<String> {
        let message = error.message.clone();
        match self {
            Reply::V2 { code, request } => Some(v2::Message::error(*code, *request, &error.uri, message).encode()),
            Reply::V1Call(call_id) => {
                let call_id = call_id.clone();
                let error = error.uri.to_string();
                Some(v1::Message::CallError { call_id, error, description: message, details: None }.encode())
            }
            Reply::Unanswered => None,
        }
    }

    /// The frame answering a call with its result; `None` for a reply that is not a call's.
    pub(super) fn result(&self, result: CallResult) -> Option<String> {
        match self {
            Reply::V2 { request, .. } => Some(
                v2::Message::Result {
                    request: *request,
                    details: Map::new(),
                    args: Some(result.args),
                    kwargs: (!result.kwargs.is_empty()).then_some(result.kwargs),
                }
                .encode(),
            ),
            Reply::V1Call(call_id) => {
                let result = Payload { args: Some(result.args), kwargs: Some(result.kwargs) }.to_v1_value();
                Some(v1::Message::CallResult { call_id: call_id.clone(), result }.encode())
            }
            Reply::Unanswered => None,
        }
    }
}

impl Connection {
    /// Answers `error` as `reply` says: the one place a refusal, a violation or a broken limit becomes what the
    /// client sees (see the module documentation).
    pub(super) fn fail(&mut self, ctx: &mut ws::WebsocketContext<Self>, reply: &Reply, error: ConnectionError) {
        let text = error.to_string();
        match error {
            ConnectionError::Refused(refused) => match reply.error(&refused) {
                Some(frame) => self.send_text(ctx, frame),
                None => {
                    metrics::inc(&self.node.metrics().protocol_errors_total);
                    log::debug!("session {}: request refused: {}", self.session, Escaped(&text));
                }
            },
            ConnectionError::Undecodable(_) | ConnectionError::Violation(_) => {
                metrics::inc(&self.node.metrics().protocol_errors_total);
                self.abort(ctx, Close::Protocol(&text));
            }
            ConnectionError::NoSuchRealm(_) => {
                self.send_v2(ctx, v2::Message::abort(errors::NO_SUCH_REALM, text));
                self.close(ctx, Close::NoSuchRealm);
            }
            ConnectionError::AuthenticationFailed(_) | ConnectionError::NoAuthMethod(_) => {
                let uri = match error {
                    ConnectionError::NoAuthMethod(_) => errors::NO_AUTH_METHOD,
                    _ => errors::AUTHENTICATION_FAILED,
                };
                log::info!("session {}: {uri}: {}", self.session, Escaped(&text));
                self.send_v2(ctx, v2::Message::abort(uri, text));
                self.close(ctx, Close::AuthenticationFailed);
            }
            ConnectionError::LimitExceeded(_) => {
                metrics::inc(&self.node.metrics().protocol_errors_total);
                self.close(ctx, Close::LimitExceeded(&text));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_refusal_is_an_error_in_v2_a_callerror_for_a_v1_call_and_nothing_otherwise() {
        let refused = WampError::new(errors::INVALID_URI, "'x y' is not a valid URI");
        let v2 = Reply::V2 { code: code::SUBSCRIBE, request: 7 };
        let frame: Value = serde_json::from_str(&v2.error(&refused).unwrap()).unwrap();
        assert_eq!(frame, json!([8, 32, 7, {}, "wamp.error.invalid_uri", ["'x y' is not a valid URI"]]));
        let v1 = Reply::V1Call(json!("c1"));
        let frame: Value = serde_json::from_str(&v1.error(&refused).unwrap()).unwrap();
        assert_eq!(frame, json!([4, "c1", "wamp.error.invalid_uri", "'x y' is not a valid URI"]));
        assert_eq!(Reply::Unanswered.error(&refused), None);
    }

    #[test]
    fn a_call_result_goes_to_the_call_that_asked() {
        let result = CallResult::value(42);
        let v2 = Reply::V2 { code: code::CALL, request: 3 };
        let frame: Value = serde_json::from_str(&v2.result(result.clone()).unwrap()).unwrap();
        assert_eq!(frame, json!([50, 3, {}, [42]]));
        let frame: Value = serde_json::from_str(&Reply::V1Call(json!("c2")).result(result.clone()).unwrap()).unwrap();
        assert_eq!(frame, json!([3, "c2", 42]));
        assert_eq!(Reply::Unanswered.result(result), None);
    }

    #[test]
    fn errors_describe_themselves_for_the_client() {
        let realm = ConnectionError::NoSuchRealm("r".repeat(100));
        assert_eq!(realm.to_string(), format!("no realm '{}…'", "r".repeat(errors::MAX_EXCERPT_CHARS)));
        let refused = ConnectionError::from(WampError::new(errors::NOT_AUTHORIZED, "role may not publish to 'a'"));
        assert_eq!(refused.to_string(), "wamp.error.not_authorized: role may not publish to 'a'");
        let undecodable = ConnectionError::from(DecodeError::NotAnArray);
        assert_eq!(undecodable.to_string(), DecodeError::NotAnArray.to_string());
    }
}
