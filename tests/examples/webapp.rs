//! The web-app side of session sharing, exactly as in the README: an actix-web app whose logins switchboard
//! recognises. It reads the same environment as the node, so one `export` serves both:
//!
//! | variable | default |
//! |---|---|
//! | `SWITCHBOARD_SESSION_KEY` | required: base64 of ≥ 64 bytes, e.g. `$(openssl rand -base64 64)` (line breaks are ignored) |
//! | `SWITCHBOARD_REDIS_URL`, else `REDIS_URL` | `redis://127.0.0.1:6379` |
//! | `SWITCHBOARD_SESSION_KEY_PREFIX` | empty (actix-session's default: no prefix) |
//! | `WEBAPP_BIND` | `127.0.0.1:3000` |
//!
//! `cargo run --release --example webapp` prints what it uses, then serves `POST /login` (as alice) and
//! `POST /logout`.

use actix_session::{config::BrowserSession, storage::RedisSessionStore, Session, SessionMiddleware};
use actix_web::{cookie::Key, web, App, HttpResponse, HttpServer};
use anyhow::Context;
use base64::Engine;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    // The same bytes switchboard gets as SWITCHBOARD_SESSION_KEY: `openssl rand -base64 64`.
    let key = session_key(env("SWITCHBOARD_SESSION_KEY").as_deref())?;
    let redis_url = env("SWITCHBOARD_REDIS_URL").or(env("REDIS_URL")).unwrap_or("redis://127.0.0.1:6379".into());
    let prefix = env("SWITCHBOARD_SESSION_KEY_PREFIX").unwrap_or_default();
    let bind = env("WEBAPP_BIND").unwrap_or("127.0.0.1:3000".into());
    println!("webapp: redis {redis_url}, session key prefix '{prefix}', listening on http://{bind}");
    let store = RedisSessionStore::builder(redis_url.as_str())
        .cache_keygen(move |k| format!("{prefix}{k}")) // = switchboard's SWITCHBOARD_SESSION_KEY_PREFIX
        .build()
        .await
        .with_context(|| format!("session store at {redis_url}"))?;
    HttpServer::new(move || {
        App::new()
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
            .route(
                "/logout",
                web::post().to(|session: Session| async move {
                    session.purge(); // open sockets close within revalidate_interval
                    HttpResponse::Ok().finish()
                }),
            )
    })
    .bind(&bind)
    .with_context(|| format!("WEBAPP_BIND {bind}"))?
    .run()
    .await?;
    Ok(())
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
    fn a_bad_key_is_refused_naming_the_variable() {
        for bad in [None, Some("not base64!"), Some("c2hvcnQ=\n")] {
            let Err(err) = session_key(bad) else { panic!("{bad:?} was accepted") };
            let err = format!("{err:#}");
            assert!(err.contains("SWITCHBOARD_SESSION_KEY"), "{bad:?}: {err}");
        }
    }
}
