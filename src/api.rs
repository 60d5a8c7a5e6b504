//! HTTP endpoints: the WebSocket upgrade (`/ws`), health and metrics.
//!
//! Owns everything decided before the upgrade, in this order: the WebSocket version (426 unless 13) and key
//! (400 unless 16 bytes of base64), the connection cap (503), the Origin check (403), subprotocol
//! negotiation (400), and the web session — resolved here, before the connection actor exists, so no WAMP
//! message is ever handled without a known identity, a rejected session can get HTTP 401 and a store
//! failure HTTP 503. A client offering neither `wamp.2.json` nor `wamp` gets 400 and a JSON body saying what
//! to offer: WAMP requires a negotiated subprotocol, and guessing one would hide client bugs. A refusal quotes
//! the client's Origin or subprotocol offer as an excerpt (at most 64 characters); logs show it escaped.

use actix_web::http::header::{HOST, ORIGIN, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use serde_json::json;

use crate::config::{OnTooMany, Unauthenticated};
use crate::connection::Connection;
use crate::logfmt::Escaped;
use crate::metrics;
use crate::node::Switchboard;
use crate::session::AuthMethod;
use crate::transport;
use crate::wamp::errors::excerpt;
use crate::wamp::Protocol;

pub(crate) fn configure(cfg: &mut web::ServiceConfig, node: Switchboard) {
    let demo = node.settings().demo_enabled();
    cfg.app_data(web::Data::new(node.clone()))
        .route("/ws", web::get().to(websocket))
        .route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics));
    if !node.settings().api.token.is_empty() {
        crate::push::configure(cfg);
    }
    if demo {
        crate::demo::configure(cfg, &node);
    }
}

fn refuse(node: &Switchboard, status: StatusCode, message: impl Into<String>) -> HttpResponse {
    metrics::inc(&node.metrics().upgrades_refused_total);
    HttpResponse::build(status).json(json!({ "error": message.into() }))
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

/// The refusal of a handshake that is not RFC 6455's, if it is not: 426 naming version 13, or 400 for a
/// malformed key.
fn check_handshake(node: &Switchboard, req: &HttpRequest) -> Option<HttpResponse> {
    use base64::Engine;
    let version = req.headers().get(SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok());
    if version != Some(WEBSOCKET_VERSION) {
        let mut response = refuse(node, StatusCode::UPGRADE_REQUIRED, "unsupported WebSocket version: use 13");
        response.headers_mut().insert(SEC_WEBSOCKET_VERSION, actix_web::http::header::HeaderValue::from_static("13"));
        return Some(response);
    }
    let key = req.headers().get(SEC_WEBSOCKET_KEY).map(|k| k.as_bytes()).unwrap_or_default();
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(bytes) if bytes.len() == WEBSOCKET_KEY_BYTES => None,
        _ => Some(refuse(node, StatusCode::BAD_REQUEST, "malformed Sec-WebSocket-Key: 16 bytes in base64 expected")),
    }
}

async fn websocket(
    req: HttpRequest,
    stream: web::Payload,
    node: web::Data<Switchboard>,
) -> Result<HttpResponse, actix_web::Error> {
    if let Some(response) = check_handshake(&node, &req) {
        return Ok(response);
    }
    // Before any session work: a full node answers at once, and keeps its descriptors for health and Redis.
    let Some(slot) = node.caps().try_slot() else {
        let max = node.settings().server.max_connections;
        log::warn!("refused WebSocket: {max} connections open (server.max_connections)");
        return Ok(refuse(&node, StatusCode::SERVICE_UNAVAILABLE, format!("node full: {max} connections open")));
    };
    if !origin_allowed(&req, &node.settings().server.allowed_origins) {
        let origin = req.headers().get(ORIGIN).and_then(|o| o.to_str().ok()).unwrap_or("?");
        log::info!("refused WebSocket from origin {}", Escaped(origin));
        return Ok(refuse(&node, StatusCode::FORBIDDEN, format!("origin '{}' is not allowed", excerpt(origin))));
    }
    let offer = req.headers().get(SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(protocol) = Protocol::negotiate(offer) else {
        let offer = excerpt(offer);
        let message =
            format!("unsupported WebSocket subprotocol '{offer}': offer wamp.2.json (WAMP v2) or wamp (WAMP v1)");
        return Ok(refuse(&node, StatusCode::BAD_REQUEST, message));
    };
    let resolved = match node.sessions().resolve(&req).await {
        Ok(resolved) => resolved,
        Err(e) => {
            // debug: the session bridge summarises store failures in WARNs of its own.
            log::debug!("refused WebSocket: {e}");
            let message = "session store unavailable, try again shortly";
            return Ok(refuse(&node, StatusCode::SERVICE_UNAVAILABLE, message));
        }
    };
    if resolved.identity.is_none() && node.settings().session.unauthenticated == Unauthenticated::Reject {
        let why = resolved.invalid.map(|r| r.to_string()).unwrap_or_else(|| "no session".to_owned());
        return Ok(refuse(&node, StatusCode::UNAUTHORIZED, format!("login required: {why}")));
    }
    let session_settings = &node.settings().session;
    if let Some(identity) = resolved.identity.as_ref().filter(|i| i.authmethod == AuthMethod::Cookie) {
        if session_settings.on_too_many == OnTooMany::Reject && node.caps().user_full(&identity.authid) {
            let max = session_settings.max_sockets_per_user;
            let message = format!("too many sockets: a user may hold {max} (session.max_sockets_per_user)");
            return Ok(refuse(&node, StatusCode::TOO_MANY_REQUESTS, message));
        }
    }
    let max = node.settings().websocket.max_message_size;
    let session = crate::wamp::id::random();
    let verdict = transport::Verdict::default();
    let connection = Connection::new(node.get_ref().clone(), protocol, session, resolved, slot, verdict.clone());
    let tokens: &[&str] = match protocol {
        Protocol::V2 => &["wamp.2.json"],
        Protocol::V1 => &["wamp"],
    };
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

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready when the node can do its job and is not draining: the session store answers and, in cluster mode, the
/// backplane is up. 503 `{"status":"draining",…}` once a drain (SIGTERM) began.
/// 200 `{"status":"ready",…}` or 503 `{"status":"not ready",…}`; `redis` (the session store's Redis) is `up`,
/// `down` or `not configured`, `backplane` is `up`, `down` or `disabled` (embedded mode). While down, `redis_error`
/// and `backplane_error` carry Redis's own words (e.g. `NOAUTH` or `WRONGPASS` after a password change).
async fn ready(node: web::Data<Switchboard>) -> HttpResponse {
    let (redis, redis_error) = if node.settings().session_redis_url().is_empty() {
        ("not configured", None)
    } else {
        match node.sessions().probe().await {
            Ok(()) => ("up", None),
            Err(e) => ("down", Some(e.0)),
        }
    };
    let backplane = node.backplane().state();
    let draining = node.is_draining();
    let ready = !draining && redis != "down" && backplane != crate::cluster::BackplaneState::Down;
    let status = match (draining, ready) {
        (true, _) => "draining",
        (false, true) => "ready",
        (false, false) => "not ready",
    };
    let mut body = json!({
        "status": status,
        "node": node.node_id(),
        "mode": if node.is_cluster() { "cluster" } else { "embedded" },
        "session_store": node.sessions().store().kind(),
        "redis": redis,
        "backplane": backplane.as_str(),
        "sessions": node.clients().local_count(),
    });
    if let Some(error) = redis_error {
        body["redis_error"] = json!(error);
    }
    if let Some(error) = node.backplane().last_error() {
        body["backplane_error"] = json!(error);
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(node: web::Data<Switchboard>) -> HttpResponse {
    HttpResponse::Ok().content_type(metrics::CONTENT_TYPE).body(node.metrics().render())
}

impl Switchboard {
    /// Mounts `/ws`, `/health/live`, `/health/ready` and `/metrics` into an actix-web app:
    /// `App::new().configure(node.configure())`.
    pub fn configure(&self) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
        let node = self.clone();
        move |cfg| configure(cfg, node.clone())
    }
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
}
