//! The web-app side of session sharing, exactly as in the README: an actix-web app whose logins switchboard
//! recognises. Run it with `SESSION_KEY=$(openssl rand -base64 64) cargo run --example webapp` and start
//! switchboard with the same SWITCHBOARD_SESSION_KEY, SWITCHBOARD_REDIS_URL and prefix.

use actix_session::{config::BrowserSession, storage::RedisSessionStore, Session, SessionMiddleware};
use actix_web::{cookie::Key, web, App, HttpResponse, HttpServer};
use base64::Engine;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    // The same bytes switchboard gets as SWITCHBOARD_SESSION_KEY (base64): `openssl rand -base64 64`.
    let bytes = base64::engine::general_purpose::STANDARD.decode(std::env::var("SESSION_KEY")?)?;
    let key = Key::from(&bytes);
    let store = RedisSessionStore::builder("redis://127.0.0.1:6379")
        .cache_keygen(|k| format!("session:{k}")) // SWITCHBOARD_SESSION_KEY_PREFIX=session:
        .build()
        .await?;
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
    .bind("127.0.0.1:3000")?
    .run()
    .await?;
    Ok(())
}
