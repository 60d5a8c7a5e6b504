//! The web-app side of session sharing, exactly as in the README: an actix-web app whose logins switchboard
//! recognises. It reads the same environment as the node, so one `export` serves both:
//!
//! | variable | default |
//! |---|---|
//! | `SWITCHBOARD_SESSION_KEY` | required: base64 of ≥ 64 bytes, e.g. `$(openssl rand -base64 64)` (line breaks are ignored) |
//! | `SWITCHBOARD_REDIS_URL`, else `REDIS_URL` | `redis://127.0.0.1:6379`; a `redis+sentinel://h1:26379,h2:26379/<master>` URL follows the Sentinel-managed master |
//! | `SWITCHBOARD_SESSION_KEY_PREFIX` | empty (actix-session's default: no prefix) |
//! | `WEBAPP_BIND` | `127.0.0.1:3000` |
//! | `SWITCHBOARD_WEBHOOK_SECRET` | empty: `POST /webhooks/switchboard` then refuses everything |
//! | `SWITCHBOARD_JWT_SECRET` | empty: `POST /token` then answers 404 (switchboard's `[auth] jwt_secret`) |
//!
//! `cargo run --release --example webapp` prints what it uses, then serves `POST /login` (as alice),
//! `POST /logout`, `POST /token` (a JWT for the logged-in user, for a mobile app or a service to connect with as
//! WAMP `ticket` or `Authorization: Bearer`), and `POST /webhooks/switchboard`, the receiver of switchboard's
//! `[webhooks]`.

use std::time::Duration;

use actix_session::storage::{RedisSessionStore, SessionStore};
use actix_session::{config::BrowserSession, Session, SessionMiddleware};
use actix_web::{cookie::Key, web, App, HttpResponse, HttpServer};
use anyhow::Context;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    // The same bytes switchboard gets as SWITCHBOARD_SESSION_KEY: `openssl rand -base64 64`.
    let key = session_key(env("SWITCHBOARD_SESSION_KEY").as_deref())?;
    let redis_url = env("SWITCHBOARD_REDIS_URL").or(env("REDIS_URL")).unwrap_or("redis://127.0.0.1:6379".into());
    let prefix = env("SWITCHBOARD_SESSION_KEY_PREFIX").unwrap_or_default();
    let bind = env("WEBAPP_BIND").unwrap_or("127.0.0.1:3000".into());
    let webhook_secret = web::Data::new(WebhookSecret(env("SWITCHBOARD_WEBHOOK_SECRET").unwrap_or_default()));
    let jwt_secret = web::Data::new(JwtSecret(env("SWITCHBOARD_JWT_SECRET").unwrap_or_default()));
    // The same fingerprint switchboard logs at start and `switchboard doctor` prints: equal means same key.
    let fingerprint = switchboard::doctor::key_fingerprint(&key);
    println!("webapp: redis {redis_url}, session key prefix '{prefix}', key fingerprint {fingerprint}, listening on http://{bind}");
    if redis_url.contains("+sentinel://") {
        // actix-session's store takes one address; switchboard's `Store` wraps the same RedisSessionStore and
        // makes it again over the new master after every Sentinel failover (what the nodes do themselves).
        use switchboard::cluster::redis::conn::{RedisEndpoint, SESSION_URL_SETTING};
        let timeout = Duration::from_secs(5);
        let endpoint = RedisEndpoint::open(SESSION_URL_SETTING, &redis_url, None, timeout)?;
        endpoint.check().await?;
        let store = switchboard::session::store::Store::redis(
            switchboard::node::session_source(&endpoint),
            timeout,
            &prefix,
            timeout,
        )
        .await
        .with_context(|| format!("session store at {}", endpoint.shown()))?;
        return serve(store, key, &bind, webhook_secret, jwt_secret).await;
    }
    let store = RedisSessionStore::builder(redis_url.as_str())
        .cache_keygen(move |k| format!("{prefix}{k}")) // = switchboard's SWITCHBOARD_SESSION_KEY_PREFIX
        .build()
        .await
        .with_context(|| format!("session store at {redis_url}"))?;
    serve(store, key, &bind, webhook_secret, jwt_secret).await
}

/// The app: logins in `store`, under the cookie key `key`.
async fn serve<S: SessionStore + Clone + Send + 'static>(
    store: S,
    key: Key,
    bind: &str,
    webhook_secret: web::Data<WebhookSecret>,
    jwt_secret: web::Data<JwtSecret>,
) -> anyhow::Result<()> {
    HttpServer::new(move || {
        App::new()
            .app_data(webhook_secret.clone())
            .app_data(jwt_secret.clone())
            .route("/webhooks/switchboard", web::post().to(switchboard_webhook))
            // Cookie `id`, Private (encrypted): switchboard's defaults. Use cookie_secure(false) on plain http.
            .wrap(
                SessionMiddleware::builder(store.clone(), key.clone())
                    .session_lifecycle(BrowserSession::default()) // 1 day: switchboard's session.ttl default
                    .build(),
            )
            .route(
                "/login",
                web::post().to(|session: Session| async move {
                    session.renew();
                    session.insert("username", "alice")?; // → WAMP authid "alice"
                    session.insert("roles", ["user", "editor"])?; // → authrole "user" (+ authextra.authroles)
                    Ok::<_, actix_web::Error>(HttpResponse::Ok().finish())
                }),
            )
            .route("/token", web::post().to(issue_token))
            .route(
                "/logout",
                web::post().to(|session: Session| async move {
                    session.purge(); // open sockets close within revalidate_interval
                    HttpResponse::Ok().finish()
                }),
            )
    })
    .bind(bind)
    .with_context(|| format!("WEBAPP_BIND {bind}"))?
    .run()
    .await?;
    Ok(())
}

/// `[auth] jwt_secret` of the switchboard nodes.
struct JwtSecret(String);

/// A token for the logged-in user, valid 10 minutes: `{"token": "<JWT>"}`. Connect with it as WAMP `ticket`
/// (HELLO `authmethods: ["ticket"]`) or as `Authorization: Bearer <JWT>` on the upgrade; switchboard checks the
/// signature and `exp`, and the session's authid and roles are `sub` and `roles`.
async fn issue_token(session: Session, secret: web::Data<JwtSecret>) -> actix_web::Result<HttpResponse> {
    if secret.0.is_empty() {
        return Ok(HttpResponse::NotFound().body("set SWITCHBOARD_JWT_SECRET to issue tokens"));
    }
    let Some(username) = session.get::<String>("username")? else {
        return Ok(HttpResponse::Unauthorized().body("log in first"));
    };
    let roles = session.get::<Vec<String>>("roles")?.unwrap_or_default();
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs() + 600;
    let claims = serde_json::json!({ "sub": username, "roles": roles, "exp": exp });
    let key = jsonwebtoken::EncodingKey::from_secret(secret.0.as_bytes());
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)
        .map_err(actix_web::error::ErrorInternalServerError)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "token": token })))
}

/// `[webhooks] secret` of the switchboard nodes.
struct WebhookSecret(String);

/// switchboard's webhooks: user.online / user.offline / session.join / session.leave, each POSTed once.
async fn switchboard_webhook(
    req: actix_web::HttpRequest,
    body: web::Bytes,
    secret: web::Data<WebhookSecret>,
) -> HttpResponse {
    let signature = req.headers().get("X-Switchboard-Signature").and_then(|v| v.to_str().ok());
    if !signature_valid(secret.0.as_bytes(), &body, signature) {
        return HttpResponse::Unauthorized().finish(); // a 4xx is final: switchboard does not retry it
    }
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    // A retried event keeps its `id`: remember the ids you handled to skip repeats.
    println!("webhook {} {}: {}", event["id"], event["event"], event["data"]);
    HttpResponse::NoContent().finish() // any 2xx; a 5xx (or no answer) is retried with backoff
}

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`, compared in constant time.
fn signature_valid(secret: &[u8], body: &[u8], signature: Option<&str>) -> bool {
    let Some(hex) = signature.and_then(|s| s.strip_prefix("sha256=")) else { return false };
    let Some(expected) = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    !secret.is_empty() && mac.verify_slice(&expected).is_ok()
}

/// The cookie key from base64 text; whitespace (`openssl rand -base64 64` wraps its output) is ignored.
fn session_key(text: Option<&str>) -> anyhow::Result<Key> {
    let text = text
        .context("SWITCHBOARD_SESSION_KEY is not set: export SWITCHBOARD_SESSION_KEY=\"$(openssl rand -base64 64)\"")?;
    let base64: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .context("SWITCHBOARD_SESSION_KEY is not valid base64")?;
    // Key::from panics below 64 bytes; say so instead.
    anyhow::ensure!(
        bytes.len() >= 64,
        "SWITCHBOARD_SESSION_KEY decodes to {} bytes; at least 64 are needed",
        bytes.len()
    );
    Ok(Key::from(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_as_openssl_rand_base64_64_prints_it_is_accepted() {
        let printed = "Cp11D3sZR7ndhi5wkWQHIRPfaKN3bB79hUENtfvqDHVoijB8PFb6RgwpUCp8+Feq\n4oH5l92Y6YvR0qHh+p/0WQ==\n";
        assert!(session_key(Some(printed)).is_ok());
        assert!(session_key(Some(&printed.replace('\n', "\r\n"))).is_ok());
    }

    #[test]
    fn webhook_signatures_verify_and_forgeries_do_not() {
        let (secret, body) = (b"webhook-secret-0123".as_slice(), br#"{"event":"user.online"}"#.as_slice());
        let signature = switchboard::webhooks::signature(secret, body);
        assert!(signature_valid(secret, body, Some(&signature)));
        assert!(!signature_valid(secret, br#"{"event":"user.offline"}"#, Some(&signature)), "another body");
        assert!(!signature_valid(b"another-secret-xyz", body, Some(&signature)), "another secret");
        assert!(!signature_valid(secret, body, Some("sha256=zz")), "not hex");
        assert!(!signature_valid(secret, body, None), "unsigned");
        assert!(!signature_valid(b"", body, Some(&switchboard::webhooks::signature(b"", body))), "no secret set");
    }

    #[test]
    fn a_bad_key_is_refused_naming_the_variable() {
        for bad in [None, Some("not base64!"), Some("c2hvcnQ=\n")] {
            let Err(err) = session_key(bad) else { panic!("{bad:?} was accepted") };
            let err = format!("{err:#}");
            assert!(err.contains("SWITCHBOARD_SESSION_KEY"), "{bad:?}: {err}");
        }
    }
}
