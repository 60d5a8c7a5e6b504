//! The WebSocket upgrade (`/ws`): everything decided before a connection actor exists.
//!
//! In this order: the WebSocket version (426 unless 13) and key (400 unless 16 bytes of base64), the connection
//! cap (503), the Origin check (403), subprotocol negotiation (400), and the web session — resolved here, so no
//! WAMP message is ever handled without a known identity, a rejected session can get HTTP 401 and a store
//! failure HTTP 503 — then the per-user socket cap (429). A client offering none of `wamp.2.json`,
//! `wamp.2.msgpack`, `wamp.2.cbor` and `wamp` gets 400 and a JSON body saying what to offer: WAMP requires a negotiated subprotocol, and guessing one would
//! hide client bugs. Every refusal is a [`Refusal`], which alone picks its status and `{"error": …}` body; it
//! quotes the client's Origin or subprotocol offer as an excerpt (at most 64 characters); logs show it escaped.

use actix_web::http::header::{
    HeaderValue, HOST, ORIGIN, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION,
};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use serde_json::json;

use crate::caps::Slot;
use crate::config::{OnTooMany, Unauthenticated};
use crate::connection::Connection;
use crate::logfmt::Escaped;
use crate::metrics;
use crate::services::Services;
use crate::session::bridge::Resolved;
use crate::session::AuthMethod;
use crate::transport;
use crate::wamp::errors::excerpt;
use crate::wamp::Protocol;

/// Why a WebSocket upgrade was refused: each maps itself to one HTTP status and a `{"error": …}` body.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `Sec-WebSocket-Version` is not 13 (RFC 6455); the answer names 13.
    #[error("unsupported WebSocket version: use 13")]
    Version,
    /// `Sec-WebSocket-Key` is not 16 bytes of base64.
    #[error("malformed Sec-WebSocket-Key: 16 bytes in base64 expected")]
    Key,
    /// `server.max_connections` sockets are open.
    #[error("node full: {0} connections open")]
    NodeFull(usize),
    /// The `Origin` (an excerpt) is not allowed by `server.allowed_origins`.
    #[error("origin '{0}' is not allowed")]
    Origin(String),
    /// The subprotocol offer (an excerpt) names none of the WAMP v2 serializers nor WAMP v1.
    #[error(
        "unsupported WebSocket subprotocol '{0}': offer wamp.2.json, wamp.2.msgpack or wamp.2.cbor (WAMP v2) or wamp (WAMP v1)"
    )]
    Subprotocol(String),
    /// The session store did not answer.
    #[error("session store unavailable, try again shortly")]
    StoreUnavailable,
    /// No valid web session and `session.unauthenticated = "reject"`; says why the session was not valid.
    #[error("login required: {0}")]
    LoginRequired(String),
    /// An `Authorization: Bearer` token was refused; says why.
    #[error("token refused: {0}")]
    TokenRefused(String),
    /// The user holds `session.max_sockets_per_user` sockets and `session.on_too_many = "reject"`.
    #[error("too many sockets: a user may hold {0} (session.max_sockets_per_user)")]
    TooManySockets(usize),
}

impl Refusal {
    /// The HTTP status of this refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Version => StatusCode::UPGRADE_REQUIRED,
            Refusal::Key | Refusal::Subprotocol(_) => StatusCode::BAD_REQUEST,
            Refusal::NodeFull(_) | Refusal::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Origin(_) => StatusCode::FORBIDDEN,
            Refusal::LoginRequired(_) | Refusal::TokenRefused(_) => StatusCode::UNAUTHORIZED,
            Refusal::TooManySockets(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status()).json(json!({ "error": self.to_string() }));
        if *self == Refusal::Version {
            response.headers_mut().insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static(WEBSOCKET_VERSION));
        }
        response
    }
}

/// Whether the request's `Origin` may open a socket: absent (non-browser client), listed, `*` listed, or —
/// with an empty list — the server's own origin (the Origin's host equals the `Host` header).
pub fn origin_allowed(req: &HttpRequest, allowed: &[String]) -> bool {
    let Some(origin) = req.headers().get(ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    if allowed.iter().any(|a| a == "*" || a.eq_ignore_ascii_case(origin.trim_end_matches('/'))) {
        return true;
    }
    if !allowed.is_empty() {
        return false;
    }
    let origin_host = origin.split_once("://").map(|(_, rest)| rest.trim_end_matches('/'));
    let host = req.headers().get(HOST).and_then(|h| h.to_str().ok());
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// The only WebSocket version (RFC 6455); actix-http would also accept the drafts' 7 and 8.
const WEBSOCKET_VERSION: &str = "13";

/// Length of a `Sec-WebSocket-Key` once base64-decoded (RFC 6455 §4.1).
const WEBSOCKET_KEY_BYTES: usize = 16;

/// Refuses a handshake that is not RFC 6455's: version 13 and a 16-byte key.
fn check_handshake(req: &HttpRequest) -> Result<(), Refusal> {
    use base64::Engine;
    let version = req.headers().get(SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok());
    if version != Some(WEBSOCKET_VERSION) {
        return Err(Refusal::Version);
    }
    let key = req.headers().get(SEC_WEBSOCKET_KEY).map(|k| k.as_bytes()).unwrap_or_default();
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(bytes) if bytes.len() == WEBSOCKET_KEY_BYTES => Ok(()),
        _ => Err(Refusal::Key),
    }
}

/// The token of an `Authorization: Bearer <token>` header, if any.
fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// The identity a bearer token proves. A cookie of another logged-in user on the same upgrade is refused: a
/// cookie and a token never mix silently (the token's identity replaces the cookie's web session otherwise).
fn token_identity(
    tokens: &crate::session::token::TokenVerifier,
    token: &str,
    cookie: &Resolved,
) -> Result<(crate::session::Identity, u64), Refusal> {
    let (identity, expires_at) = tokens.verify_until(token).map_err(|e| Refusal::TokenRefused(e.0))?;
    if let Some(user) = cookie.identity.as_ref().filter(|i| i.authid != identity.authid) {
        let why = format!(
            "the cookie's user ({}) and the token's ({}) differ",
            excerpt(&user.authid),
            excerpt(&identity.authid)
        );
        return Err(Refusal::TokenRefused(why));
    }
    Ok((identity, expires_at))
}

/// What an admitted upgrade brings to its connection.
struct Admitted {
    slot: Slot,
    protocol: Protocol,
    resolved: Resolved,
}

/// Every check before the upgrade, in the order the module doc gives.
async fn admit(req: &HttpRequest, node: &Services) -> Result<Admitted, Refusal> {
    check_handshake(req)?;
    // Before any session work: a full node answers at once, and keeps its descriptors for health and Redis.
    let Some(slot) = node.caps().try_slot() else {
        let max = node.settings().server.max_connections;
        log::warn!("refused WebSocket: {max} connections open (server.max_connections)");
        return Err(Refusal::NodeFull(max));
    };
    if !origin_allowed(req, &node.settings().server.allowed_origins) {
        let origin = req.headers().get(ORIGIN).and_then(|o| o.to_str().ok()).unwrap_or("?");
        log::info!("refused WebSocket from origin {}", Escaped(origin));
        return Err(Refusal::Origin(excerpt(origin).to_string()));
    }
    let offer = req.headers().get(SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok()).unwrap_or("");
    let protocol = Protocol::negotiate(offer).ok_or_else(|| Refusal::Subprotocol(excerpt(offer).to_string()))?;
    let resolved = node.sessions().resolve(req).await.map_err(|e| {
        // debug: the session bridge summarises store failures in WARNs of its own.
        log::debug!("refused WebSocket: {e}");
        Refusal::StoreUnavailable
    })?;
    // Without `[auth]` keys an Authorization header is not ours (a proxy may forward its own): ignored.
    let resolved = match bearer_token(req).zip(node.tokens()) {
        None => resolved,
        Some((token, tokens)) => {
            let (identity, expires_at) = token_identity(tokens, token, &resolved)?;
            Resolved { key: None, identity: Some(identity), invalid: None, expires_at: Some(expires_at) }
        }
    };
    if resolved.identity.is_none() && node.settings().session.unauthenticated == Unauthenticated::Reject {
        let why = resolved.invalid.as_ref().map(|r| r.to_string()).unwrap_or_else(|| "no session".to_owned());
        return Err(Refusal::LoginRequired(why));
    }
    let session_settings = &node.settings().session;
    if let Some(identity) = resolved.identity.as_ref().filter(|i| i.authmethod != AuthMethod::Anonymous) {
        if session_settings.on_too_many == OnTooMany::Reject && node.caps().user_full(&identity.authid) {
            return Err(Refusal::TooManySockets(session_settings.max_sockets_per_user));
        }
    }
    Ok(Admitted { slot, protocol, resolved })
}

pub(super) async fn websocket(
    req: HttpRequest,
    stream: web::Payload,
    node: web::Data<Services>,
) -> Result<HttpResponse, actix_web::Error> {
    let Admitted { slot, protocol, resolved } = match admit(&req, &node).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            metrics::inc(&node.metrics().upgrades_refused_total);
            return Ok(refusal.response());
        }
    };
    let max = node.settings().websocket.max_message_size;
    let session = crate::wamp::id::random();
    let verdict = transport::Verdict::default();
    let connection = Connection::new(node.clone().into_inner(), protocol, session, resolved, slot, verdict.clone());
    let tokens = &[protocol.token()];
    if req.app_data::<transport::Direct>().is_some() {
        // The ready server's upgrade path: send the 101, then run the actor on the bare socket.
        let mut response = ws::handshake_with_protocols(&req, tokens)?.finish();
        let outbox = connection.outbox();
        response.extensions_mut().insert(transport::Accept::new(connection, max, verdict).with_outbox(outbox));
        return Ok(response);
    }
    // Mounted in an application's own `HttpServer`: actix-web-actors runs the actor, behind the same guard.
    let input = transport::Guarded::new(stream, max, verdict);
    ws::WsResponseBuilder::new(connection, &req, input).protocols(tokens).frame_size(max).start()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn req(origin: Option<&str>, host: &str) -> HttpRequest {
        let mut r = TestRequest::default().insert_header((HOST, host));
        if let Some(o) = origin {
            r = r.insert_header((ORIGIN, o));
        }
        r.to_http_request()
    }

    #[test]
    fn default_allows_same_origin_and_non_browsers_only() {
        assert!(origin_allowed(&req(None, "127.0.0.1:8080"), &[]));
        assert!(origin_allowed(&req(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"), &[]));
        assert!(origin_allowed(&req(Some("http://localhost:8080"), "localhost:8080"), &[]));
        assert!(!origin_allowed(&req(Some("http://evil.example"), "127.0.0.1:8080"), &[]));
        assert!(!origin_allowed(&req(Some("null"), "127.0.0.1:8080"), &[]));
    }

    #[test]
    fn configured_list_and_wildcard() {
        let list = vec!["https://app.example.com".to_string()];
        assert!(origin_allowed(&req(Some("https://app.example.com"), "ws.example.com"), &list));
        assert!(!origin_allowed(&req(Some("https://ws.example.com"), "ws.example.com"), &list));
        assert!(origin_allowed(&req(Some("https://any.example"), "x"), &["*".to_string()]));
    }
    #[test]
    fn every_refusal_has_its_status() {
        let cases = [
            (Refusal::Version, 426),
            (Refusal::Key, 400),
            (Refusal::NodeFull(10), 503),
            (Refusal::Origin("http://evil".into()), 403),
            (Refusal::Subprotocol("mqtt".into()), 400),
            (Refusal::StoreUnavailable, 503),
            (Refusal::LoginRequired("no session".into()), 401),
            (Refusal::TooManySockets(5), 429),
        ];
        for (refusal, status) in cases {
            assert_eq!(refusal.status().as_u16(), status, "{refusal}");
            assert_eq!(refusal.response().status().as_u16(), status);
        }
        let version = Refusal::Version.response();
        assert_eq!(version.headers().get(SEC_WEBSOCKET_VERSION).unwrap(), "13");
        assert_eq!(
            Refusal::TooManySockets(5).to_string(),
            "too many sockets: a user may hold 5 (session.max_sockets_per_user)"
        );
    }
}
