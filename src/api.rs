//! HTTP endpoints: the WebSocket upgrade (`/ws`), health and metrics.
//!
//! Owns request handling before the upgrade: subprotocol negotiation and the size limit handed to the
//! codec. A client offering neither `wamp.2.json` nor `wamp` is refused with HTTP 400 and a JSON body
//! saying what to offer: WAMP requires a negotiated subprotocol, and guessing one would hide client bugs.

use actix_web::http::header::SEC_WEBSOCKET_PROTOCOL;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use serde_json::json;

use crate::connection::Connection;
use crate::node::Switchboard;
use crate::wamp::Protocol;

pub(crate) fn configure(cfg: &mut web::ServiceConfig, node: Switchboard) {
    cfg.app_data(web::Data::new(node))
        .route("/ws", web::get().to(websocket))
        .route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics));
}

async fn websocket(
    req: HttpRequest,
    stream: web::Payload,
    node: web::Data<Switchboard>,
) -> Result<HttpResponse, actix_web::Error> {
    let offer = req.headers().get(SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(protocol) = Protocol::negotiate(offer) else {
        return Ok(HttpResponse::BadRequest().json(json!({
            "error": format!(
                "unsupported WebSocket subprotocol '{offer}': offer wamp.2.json (WAMP v2) or wamp (WAMP v1)"
            )
        })));
    };
    let max = node.settings().websocket.max_message_size;
    let connection = Connection::new(node.get_ref().clone(), protocol);
    let tokens: &[&str] = match protocol {
        Protocol::V2 => &["wamp.2.json"],
        Protocol::V1 => &["wamp"],
    };
    ws::WsResponseBuilder::new(connection, &req, stream).protocols(tokens).frame_size(max).start()
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn ready(node: web::Data<Switchboard>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ready",
        "node": node.node_id(),
        "mode": "embedded",
        "redis": "not configured",
        "sessions": node.clients().local_count(),
    }))
}

async fn metrics(node: web::Data<Switchboard>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(node.metrics().render())
}
