//! The demo web app (on in the embedded default): `GET /` login form or chat page, `POST /login`,
//! `POST /logout`, `GET /demo/wamp.js` (a small WAMP v2 client written for the page, no CDN) and
//! `GET /favicon.ico` (a tiny SVG, so browsers log no 404).
//!
//! The chat page reconnects by itself (jittered backoff, 0.5 s doubling to 10 s) and shows its connection
//! state. Its online list comes from `wamp.session.list`/`get` on connect, then from the router's session meta
//! events (`wamp.session.on_join`/`on_leave`); user presence (`switchboard.user.on_online`/`on_offline`) shows
//! in its log when someone comes online or goes offline. No polling. The room subscribes with `resume_after`
//! (recent history on load, what was missed after a reconnect); private messages go through
//! `demo.direct.send`, so one to a user who is away waits in her offline inbox.
//!
//! It is an ordinary actix-session web app sharing the node's session store and cookie key — exactly the
//! setup a real web app uses with switchboard — so logging in here makes the socket `authid` the username.
//! Cookies are not `Secure`, so it works on plain http://127.0.0.1 and http://localhost.

use actix_session::config::{BrowserSession, CookieContentSecurity};
use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::http::header::{ContentType, LOCATION};
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::config::CookieSecurity;
use crate::services::Services;

const LOGIN_PAGE: &str = include_str!("login.html");
const CHAT_PAGE: &str = include_str!("chat.html");
const WAMP_JS: &str = include_str!("wamp.js");
/// The demo's icon: a dot on a switchboard jack, 16×16.
const FAVICON_SVG: &str = concat!(
    r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">"##,
    r##"<circle cx="8" cy="8" r="7" fill="#246"/><circle cx="8" cy="8" r="3" fill="#9cf"/></svg>"##
);

/// Longest accepted demo username.
const MAX_USERNAME_LEN: usize = 32;

/// The demo's private messages: `demo.direct.send(to, text)` sends `text` to user `to` (kwargs `from`: the
/// caller) with `send_to_user`, so one to a user who is away waits in her offline inbox for her next login.
/// Answers `{"stored": bool}`. Logged-in callers only; the text is bounded like any message.
pub(crate) const SEND_PROCEDURE: &str = "demo.direct.send";

/// The demo's private-message topic.
const DIRECT_TOPIC: &str = "demo.direct";

/// Longest private message text, in bytes.
const MAX_TEXT: usize = 2000;

/// `demo.direct.send` (see [`SEND_PROCEDURE`]).
pub(crate) async fn send_private(call: crate::rpc::Call) -> Result<crate::rpc::CallResult, crate::rpc::CallError> {
    use crate::rpc::{CallError, CallResult};
    if call.caller.authroles.iter().all(|r| r == crate::session::ANONYMOUS_ROLE) {
        return Err(CallError::new(crate::wamp::errors::NOT_AUTHORIZED, "log in to send private messages"));
    }
    let text = |i: usize, what: &str| {
        call.arg(i)?.as_str().filter(|s| !s.is_empty() && s.len() <= MAX_TEXT).map(str::to_owned).ok_or_else(|| {
            CallError::invalid_argument(format!("{what} is a non-empty string of at most {MAX_TEXT} bytes"))
        })
    };
    let (to, message) = (text(0, "the recipient")?, text(1, "the text")?);
    let mut kwargs = serde_json::Map::new();
    kwargs.insert("from".into(), serde_json::Value::from(call.caller.authid.as_str()));
    let payload = crate::model::Payload { args: Some(vec![message.into()]), kwargs: Some(kwargs) };
    let sent = call.clients.send_to_user_confirmed(&to, DIRECT_TOPIC, payload, std::time::Duration::ZERO).await;
    let (_, tally) = sent.map_err(|e| CallError::new(crate::wamp::errors::BACKPLANE_UNAVAILABLE, e.to_string()))?;
    Ok(CallResult::value(serde_json::json!({ "stored": tally.stored })))
}

pub(crate) fn configure(cfg: &mut web::ServiceConfig, node: &Services) {
    let bridge = node.sessions();
    let settings = bridge.settings();
    let security = match settings.cookie_security {
        CookieSecurity::Private => CookieContentSecurity::Private,
        CookieSecurity::Signed => CookieContentSecurity::Signed,
    };
    let ttl = CookieDuration::seconds(settings.ttl.as_secs() as i64);
    let sessions = SessionMiddleware::builder(bridge.store().clone(), bridge.key().clone())
        .cookie_name(settings.cookie_name.clone())
        .cookie_secure(false)
        .cookie_content_security(security)
        .session_lifecycle(BrowserSession::default().state_ttl(ttl))
        .build();
    cfg.service(web::resource("/").wrap(sessions.clone()).route(web::get().to(page)))
        .service(web::resource("/login").wrap(sessions.clone()).route(web::post().to(login)))
        .service(web::resource("/logout").wrap(sessions).route(web::post().to(logout)))
        .route("/demo/wamp.js", web::get().to(wamp_js))
        .route("/favicon.ico", web::get().to(favicon));
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((LOCATION, to)).finish()
}

async fn wamp_js() -> HttpResponse {
    HttpResponse::Ok().content_type("text/javascript; charset=utf-8").body(WAMP_JS)
}

async fn favicon() -> HttpResponse {
    HttpResponse::Ok().content_type("image/svg+xml").body(FAVICON_SVG)
}

async fn page(session: Session) -> HttpResponse {
    let logged_in = matches!(session.get::<String>("username"), Ok(Some(_)));
    HttpResponse::Ok().content_type(ContentType::html()).body(if logged_in { CHAT_PAGE } else { LOGIN_PAGE })
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
}

fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_USERNAME_LEN
        && !name.starts_with("anon-")
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

async fn login(session: Session, form: web::Form<LoginForm>) -> HttpResponse {
    let username = form.username.trim();
    if !valid_username(username) {
        return HttpResponse::BadRequest().content_type(ContentType::plaintext()).body(format!(
            "usernames are 1 to {MAX_USERNAME_LEN} letters, digits, '-', '_' or '.', and may not start with anon-"
        ));
    }
    session.renew();
    if let Err(e) = session.insert("username", username) {
        log::warn!("demo login failed: {e}");
        return HttpResponse::InternalServerError().body("could not store the session");
    }
    redirect("/")
}

async fn logout(session: Session) -> HttpResponse {
    session.purge();
    redirect("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_usernames_are_simple_and_never_anonymous() {
        assert!(valid_username("alice"));
        assert!(valid_username("bob.smith-2"));
        assert!(!valid_username(""));
        assert!(!valid_username("anon-123"));
        assert!(!valid_username("<script>"));
        assert!(!valid_username(&"x".repeat(MAX_USERNAME_LEN + 1)));
    }
}
