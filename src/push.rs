//! The HTTP push API (enabled when `api.token` / `SWITCHBOARD_API_TOKEN` is set): how a backend in any
//! language publishes to topics and users, looks sessions up and disconnects users, cluster-wide.
//!
//! Every request needs `Authorization: Bearer <token>` (401 without, 403 with a wrong one). Errors are JSON
//! `{"error": "..."}`: 400 bad body, 404 unknown session, 503 when the backplane is down (the publication was
//! delivered on this node only and the caller should retry or alert).

use actix_web::http::header::AUTHORIZATION;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::clients::{ClientInfo, Disconnect};
use crate::node::Switchboard;
use crate::topic::Payload;
use crate::wamp::filter::Filters;
use crate::wamp::{errors, uri, Id};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .app_data(web::JsonConfig::default().limit(1024 * 1024).error_handler(|e, _| {
                let message = format!("invalid JSON body: {e}");
                actix_web::error::InternalError::from_response(e, error(StatusCode::BAD_REQUEST, &message)).into()
            }))
            .route("/publish", web::post().to(publish))
            .route("/users/{authid}/sessions", web::get().to(user_sessions))
            .route("/users/{authid}/sessions", web::delete().to(disconnect_user))
            .route("/sessions", web::get().to(sessions))
            .route("/sessions/{id}", web::get().to(session)),
    );
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks the bearer token; the error is the status and message to answer with.
fn authorize(req: &HttpRequest, node: &Switchboard) -> Result<(), (StatusCode, &'static str)> {
    let Some(header) = req.headers().get(AUTHORIZATION).and_then(|h| h.to_str().ok()) else {
        return Err((StatusCode::UNAUTHORIZED, "missing Authorization: Bearer <token>"));
    };
    let Some(token) = header.strip_prefix("Bearer ") else {
        return Err((StatusCode::UNAUTHORIZED, "Authorization must be Bearer <token>"));
    };
    if !same(token.trim().as_bytes(), node.settings().api.token.as_bytes()) {
        return Err((StatusCode::FORBIDDEN, "wrong API token"));
    }
    Ok(())
}

/// `POST /api/publish` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    topic: String,
    args: Option<Vec<Value>>,
    kwargs: Option<Map<String, Value>>,
    exclude: Option<Vec<Id>>,
    eligible: Option<Vec<Id>>,
    exclude_authid: Option<Vec<String>>,
    eligible_authid: Option<Vec<String>>,
    exclude_authrole: Option<Vec<String>>,
    eligible_authrole: Option<Vec<String>>,
}

async fn publish(req: HttpRequest, node: web::Data<Switchboard>, body: web::Json<PublishBody>) -> HttpResponse {
    if let Err((status, message)) = authorize(&req, &node) {
        return error(status, message);
    }
    let body = body.into_inner();
    if !uri::is_valid_v2(&body.topic) || uri::is_reserved(&body.topic) {
        return error(StatusCode::BAD_REQUEST, &format!("'{}' is not a valid topic URI", body.topic));
    }
    let filters = Filters {
        exclude: body.exclude.unwrap_or_default(),
        eligible: body.eligible,
        exclude_authid: body.exclude_authid.unwrap_or_default(),
        eligible_authid: body.eligible_authid,
        exclude_authrole: body.exclude_authrole.unwrap_or_default(),
        eligible_authrole: body.eligible_authrole,
    };
    let payload = Payload { args: body.args, kwargs: body.kwargs };
    match node.clients().publish_confirmed(&body.topic, payload, filters).await {
        Ok(id) => HttpResponse::Ok().json(json!({ "publication": id })),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

fn summary(c: &ClientInfo) -> Value {
    json!({ "session": c.session, "node": c.node, "authid": c.authid, "authroles": c.authroles })
}

async fn user_sessions(req: HttpRequest, node: web::Data<Switchboard>, authid: web::Path<String>) -> HttpResponse {
    if let Err((status, message)) = authorize(&req, &node) {
        return error(status, message);
    }
    let sessions = node.clients().find_all_by_username(&authid).await;
    HttpResponse::Ok().json(sessions.iter().map(summary).collect::<Vec<_>>())
}

#[derive(Deserialize)]
struct SessionsQuery {
    authrole: Option<String>,
}

async fn sessions(req: HttpRequest, node: web::Data<Switchboard>, query: web::Query<SessionsQuery>) -> HttpResponse {
    if let Err((status, message)) = authorize(&req, &node) {
        return error(status, message);
    }
    let sessions = match &query.authrole {
        Some(role) => node.clients().find_by_roles(&[role.as_str()]).await,
        None => node.clients().get_all(true).await,
    };
    HttpResponse::Ok().json(sessions.iter().map(summary).collect::<Vec<_>>())
}

async fn session(req: HttpRequest, node: web::Data<Switchboard>, id: web::Path<String>) -> HttpResponse {
    if let Err((status, message)) = authorize(&req, &node) {
        return error(status, message);
    }
    let Ok(id) = id.parse::<Id>() else {
        return error(StatusCode::BAD_REQUEST, &format!("'{id}' is not a session id"));
    };
    match node.clients().get_client(id).await {
        Some(c) => HttpResponse::Ok().json(crate::rpc::session_details(&c)),
        None => error(StatusCode::NOT_FOUND, &format!("no session {id}")),
    }
}

async fn disconnect_user(req: HttpRequest, node: web::Data<Switchboard>, authid: web::Path<String>) -> HttpResponse {
    if let Err((status, message)) = authorize(&req, &node) {
        return error(status, message);
    }
    let disconnect = Disconnect {
        code: 1008,
        reason: errors::KICKED.to_owned(),
        message: "disconnected by the application".to_owned(),
    };
    match node.clients().disconnect_user(&authid, disconnect).await {
        Ok(n) => HttpResponse::Ok().json(json!({ "disconnected": n })),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
