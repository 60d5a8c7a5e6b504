//! The HTTP push API (enabled when `api.token` / `SWITCHBOARD_API_TOKEN` is set): how a backend in any
//! language publishes to topics and users, looks sessions up and disconnects users, cluster-wide.
//!
//! Every request needs `Authorization: Bearer <token>` (401 without, 403 with a wrong one). One middleware on
//! the `/api` scope checks it before any handler or extractor runs, so no body is read, parsed or described
//! for a caller without the token. Bodies are JSON of at most [`MAX_BODY_BYTES`]; a larger one is refused
//! with 413 from its `Content-Length` (or as soon as the bytes read exceed it) before it is parsed. Errors
//! are JSON `{"error": "..."}` ([`ApiError`]): 400 bad body (filter lists above `wamp.max_filter_entries`
//! included, naming the list), 404 unknown session, 413 body too large, 503 when the backplane is down (the
//! publication was delivered on this node only and the caller should retry or alert).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpResponse, ResponseError};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::model::{ClientInfo, Disconnect};
use crate::services::Services;
use crate::topic::Payload;
use crate::wamp::errors::{excerpt, Excerpt};
use crate::wamp::filter::Filters;
use crate::wamp::{errors, uri, Id};

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Characters of a JSON parser message quoted back (it names the offending field and what was expected).
const MAX_PARSE_ERROR_CHARS: usize = 256;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .wrap(from_fn(require_token))
            .app_data(web::JsonConfig::default().limit(MAX_BODY_BYTES).error_handler(|e, _| {
                let error = if e.status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge
                } else {
                    let message = e.to_string();
                    ApiError::BadRequest(format!(
                        "invalid JSON body: {}",
                        Excerpt::with_max_chars(&message, MAX_PARSE_ERROR_CHARS)
                    ))
                };
                actix_web::error::InternalError::from_response(e, error.error_response()).into()
            }))
            .route("/publish", web::post().to(publish))
            .route("/users/{authid}/sessions", web::get().to(user_sessions))
            .route("/users/{authid}/sessions", web::delete().to(disconnect_user))
            .route("/users/{authid}/messages", web::post().to(message_user))
            .route("/sessions", web::get().to(sessions))
            .route("/sessions/{id}", web::get().to(session)),
    );
}

/// Why a push API request failed; each maps itself to its status and a `{"error": …}` body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No `Authorization` header.
    #[error("missing Authorization: Bearer <token>")]
    MissingToken,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("Authorization must be Bearer <token>")]
    NotBearer,
    /// A token that is not the configured one.
    #[error("wrong API token")]
    WrongToken,
    /// A body above [`MAX_BODY_BYTES`].
    #[error("request body larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// A body, path or value that is not acceptable.
    #[error("{0}")]
    BadRequest(String),
    /// An unknown session.
    #[error("{0}")]
    NotFound(String),
    /// The backplane could not take the publication (or control message) to the other nodes.
    #[error("{0}")]
    Unavailable(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MissingToken | ApiError::NotBearer => StatusCode::UNAUTHORIZED,
            ApiError::WrongToken => StatusCode::FORBIDDEN,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(json!({ "error": self.to_string() }))
    }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks the bearer token of a request's headers against `token`.
fn authorize(headers: &HeaderMap, token: &str) -> Result<(), ApiError> {
    let header = headers.get(AUTHORIZATION).and_then(|h| h.to_str().ok()).ok_or(ApiError::MissingToken)?;
    let given = header.strip_prefix("Bearer ").ok_or(ApiError::NotBearer)?;
    if !same(given.trim().as_bytes(), token.as_bytes()) {
        return Err(ApiError::WrongToken);
    }
    Ok(())
}

/// The `/api` middleware: runs before routing to a handler, so before any extractor reads the body.
async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // `http::configure` registers the node before it mounts `/api`; without it nothing is authorised.
    let token = req.app_data::<web::Data<Services>>().map(|node| node.settings().api.token.clone());
    let checked = match token.as_deref() {
        Some(token) if !token.is_empty() => authorize(req.headers(), token),
        _ => Err(ApiError::WrongToken),
    };
    match checked {
        Ok(()) => next.call(req).await.map(ServiceResponse::map_into_left_body),
        Err(e) => Ok(req.into_response(e.error_response()).map_into_right_body()),
    }
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

async fn publish(node: web::Data<Services>, body: web::Json<PublishBody>) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if !uri::is_valid_v2(&body.topic) || uri::is_reserved(&body.topic) {
        return Err(ApiError::BadRequest(format!("'{}' is not a valid topic URI", excerpt(&body.topic))));
    }
    let filters = Filters {
        exclude: body.exclude.unwrap_or_default(),
        eligible: body.eligible,
        exclude_authid: body.exclude_authid.unwrap_or_default(),
        eligible_authid: body.eligible_authid,
        exclude_authrole: body.exclude_authrole.unwrap_or_default(),
        eligible_authrole: body.eligible_authrole,
    };
    filters.check_limits(node.settings().wamp.max_filter_entries).map_err(ApiError::BadRequest)?;
    let payload = Payload { args: body.args, kwargs: body.kwargs };
    match node.clients().publish_confirmed(&body.topic, payload, filters).await {
        Ok(id) => Ok(HttpResponse::Ok().json(json!({ "publication": id }))),
        Err(e) => Err(ApiError::Unavailable(e.to_string())),
    }
}

/// Longest `wait_ms` of `POST /api/users/{authid}/messages`.
const MAX_WAIT_MS: u64 = 10_000;

/// `POST /api/users/{authid}/messages` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserMessage {
    topic: String,
    args: Option<Vec<Value>>,
    kwargs: Option<Map<String, Value>>,
    /// How long to collect receipts (0, the default: answer at once).
    #[serde(default)]
    wait_ms: u64,
}

/// Sends to one user's sessions wherever they are; answers how many of her sockets took it within `wait_ms`.
async fn message_user(
    node: web::Data<Services>,
    authid: web::Path<String>,
    body: web::Json<UserMessage>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if !uri::is_valid_v2(&body.topic) || uri::is_reserved(&body.topic) {
        return Err(ApiError::BadRequest(format!("'{}' is not a valid topic URI", excerpt(&body.topic))));
    }
    if body.wait_ms > MAX_WAIT_MS {
        return Err(ApiError::BadRequest(format!("wait_ms must be at most {MAX_WAIT_MS}")));
    }
    let payload = Payload { args: body.args, kwargs: body.kwargs };
    let wait = std::time::Duration::from_millis(body.wait_ms);
    match node.clients().send_to_user_confirmed(&authid, &body.topic, payload, wait).await {
        Ok((id, tally)) => Ok(HttpResponse::Ok().json(json!({
            "publication": id,
            "delivered": { "sockets": tally.sockets, "nodes": tally.nodes.len() },
            "stored": tally.stored,
        }))),
        Err(e) => Err(ApiError::Unavailable(e.to_string())),
    }
}

fn summary(c: &ClientInfo) -> Value {
    json!({ "session": c.session, "node": c.node, "authid": c.authid, "authroles": c.authroles })
}

async fn user_sessions(node: web::Data<Services>, authid: web::Path<String>) -> HttpResponse {
    let sessions = node.clients().find_all_by_username(&authid).await;
    HttpResponse::Ok().json(sessions.iter().map(summary).collect::<Vec<_>>())
}

#[derive(Deserialize)]
struct SessionsQuery {
    authrole: Option<String>,
}

async fn sessions(node: web::Data<Services>, query: web::Query<SessionsQuery>) -> HttpResponse {
    let sessions = match &query.authrole {
        Some(role) => node.clients().find_by_roles(&[role.as_str()]).await,
        None => node.clients().get_all(true).await,
    };
    HttpResponse::Ok().json(sessions.iter().map(summary).collect::<Vec<_>>())
}

async fn session(node: web::Data<Services>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let Ok(id) = id.parse::<Id>() else {
        return Err(ApiError::BadRequest(format!("'{}' is not a session id", excerpt(&id))));
    };
    match node.clients().get_client(id).await {
        Some(c) => Ok(HttpResponse::Ok().json(crate::rpc::session_details(&c))),
        None => Err(ApiError::NotFound(format!("no session {id}"))),
    }
}

async fn disconnect_user(node: web::Data<Services>, authid: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let disconnect = Disconnect {
        code: 1008,
        reason: errors::KICKED.to_owned(),
        message: "disconnected by the application".to_owned(),
    };
    match node.clients().disconnect_user(&authid, disconnect).await {
        Ok(n) => Ok(HttpResponse::Ok().json(json!({ "disconnected": n }))),
        Err(e) => Err(ApiError::Unavailable(e.to_string())),
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
