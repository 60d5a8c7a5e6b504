//! The web app's actix-session session shared with sockets. A separate actix-web app (its own routes,
//! `SessionMiddleware` with `RedisSessionStore`, same key and prefix) logs users in; switchboard reads it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_session::config::{BrowserSession, CookieContentSecurity};
use actix_session::storage::RedisSessionStore;
use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::Key;
use actix_web::http::header::SET_COOKIE;
use actix_web::{web, App, HttpResponse, HttpServer};
use base64::Engine;
use serde_json::json;
use switchboard::client::{ClientError, Socket, V2Session};
use switchboard::config::{CookieSecurity, OnRevoked, ReloadPolicy, Unauthenticated};
use switchboard::session::{InvalidReason, InvalidSession};
use switchboard::{Call, CallError, CallResult, Settings, Switchboard};

use crate::helpers::*;
use crate::redis_server::RedisServer;

const PREFIX: &str = "webapp:session:";

/// The web application under test: logs users in, out, changes roles, shows its session.
struct WebApp {
    port: u16,
}

#[derive(serde::Deserialize)]
struct LoginQuery {
    username: String,
    roles: Option<String>,
}

impl WebApp {
    async fn spawn(redis_url: &str, key: &Key, security: CookieContentSecurity, ttl: CookieDuration) -> WebApp {
        let store = RedisSessionStore::builder(redis_url)
            .cache_keygen(|key| format!("{PREFIX}{key}"))
            .build()
            .await
            .expect("web app reaches redis");
        let key = key.clone();
        let server = HttpServer::new(move || {
            let sessions = SessionMiddleware::builder(store.clone(), key.clone())
                .cookie_secure(false)
                .cookie_content_security(security)
                .session_lifecycle(BrowserSession::default().state_ttl(ttl))
                .build();
            App::new()
                .wrap(sessions)
                .route(
                    "/login",
                    web::post().to(|session: Session, q: web::Query<LoginQuery>| async move {
                        session.renew();
                        session.insert("username", &q.username).unwrap();
                        if let Some(roles) = &q.roles {
                            let roles: Vec<&str> = roles.split(',').collect();
                            session.insert("roles", roles).unwrap();
                        }
                        HttpResponse::Ok().finish()
                    }),
                )
                .route(
                    "/logout",
                    web::post().to(|session: Session| async move {
                        session.purge();
                        HttpResponse::Ok().finish()
                    }),
                )
                .route(
                    "/roles",
                    web::post().to(
                        |session: Session, q: web::Query<std::collections::HashMap<String, String>>| async move {
                            let roles: Vec<&str> = q["roles"].split(',').collect();
                            session.insert("roles", roles).unwrap();
                            HttpResponse::Ok().finish()
                        },
                    ),
                )
                .route(
                    "/whoami",
                    web::get().to(|session: Session| async move {
                        HttpResponse::Ok().json(json!({
                            "username": session.get::<String>("username").unwrap(),
                            "note": session.get::<String>("note").unwrap(),
                        }))
                    }),
                )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        actix_web::rt::spawn(server.run());
        WebApp { port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Logs in and returns the `Cookie` header value a browser would send (`id=<encoded value>`).
    async fn login(&self, username: &str, roles: Option<&str>) -> String {
        let mut url = self.url(&format!("/login?username={username}"));
        if let Some(roles) = roles {
            url.push_str(&format!("&roles={roles}"));
        }
        let response = awc::Client::default().post(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let set_cookie = response.headers().get(SET_COOKIE).expect("a session cookie").to_str().unwrap();
        set_cookie.split(';').next().unwrap().to_owned()
    }

    async fn post(&self, path: &str, cookie: &str) {
        let response =
            awc::Client::default().post(self.url(path)).insert_header(("Cookie", cookie)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }

    async fn whoami(&self, cookie: &str) -> serde_json::Value {
        let mut response =
            awc::Client::default().get(self.url("/whoami")).insert_header(("Cookie", cookie)).send().await.unwrap();
        response.json().await.unwrap()
    }
}

/// A shared key, its base64 form for switchboard, redis, the web app and a switchboard node.
struct Setup {
    redis: RedisServer,
    web: WebApp,
    app: TestApp,
    invalid: Arc<Mutex<Vec<InvalidReason>>>,
}

fn key_pair() -> (Key, String) {
    let bytes: Vec<u8> = (0..64).map(|_| rand::random::<u8>()).collect();
    (Key::from(&bytes), base64::engine::general_purpose::STANDARD.encode(&bytes))
}

async fn setup(configure: impl FnOnce(&mut Settings)) -> Setup {
    setup_with(configure, |b| b, CookieContentSecurity::Private, CookieDuration::hours(1)).await
}

async fn setup_with(
    configure: impl FnOnce(&mut Settings),
    extend: impl FnOnce(switchboard::Builder) -> switchboard::Builder,
    security: CookieContentSecurity,
    ttl: CookieDuration,
) -> Setup {
    let redis = RedisServer::start().await;
    let (key, encoded) = key_pair();
    let web = WebApp::spawn(&redis.url(), &key, security, ttl).await;
    let mut settings = test_settings();
    settings.redis.url = redis.url();
    settings.session.key = encoded;
    settings.session.key_prefix = PREFIX.into();
    configure(&mut settings);
    let invalid = Arc::new(Mutex::new(Vec::new()));
    let seen = invalid.clone();
    let builder = Switchboard::builder(settings)
        .on_invalid_session(move |e: &InvalidSession| seen.lock().unwrap().push(e.reason.clone()));
    let app = spawn_with(extend(builder)).await;
    Setup { redis, web, app, invalid }
}

async fn connect(app: &TestApp, cookie: &str) -> Result<V2Session, ClientError> {
    V2Session::connect_with_headers(&app.ws_url(), "realm1", &[("Cookie", cookie)]).await
}

#[actix_web::test]
async fn user_logged_in_to_the_web_app_is_recognised_with_roles() {
    let s = setup(|_| {}).await;
    let cookie = s.web.login("alice", Some("admin,editor")).await;
    let alice = connect(&s.app, &cookie).await.unwrap();
    assert_eq!(alice.authid(), "alice");
    assert_eq!(alice.authrole(), "admin");
    assert_eq!(alice.details["authmethod"], "cookie");
    assert_eq!(alice.details["authextra"]["authroles"], json!(["admin", "editor"]));
    let info = s.app.node.clients().get_client(alice.id).await.unwrap();
    assert_eq!(info.authroles, vec!["admin", "editor"]);

    // No roles field: the default role.
    let bob_cookie = s.web.login("bob", None).await;
    let bob = connect(&s.app, &bob_cookie).await.unwrap();
    assert_eq!((bob.authid(), bob.authrole()), ("bob", "user"));

    // WAMP v1 sees the same identity.
    let socket = Socket::connect(&s.app.ws_url(), &["wamp"], &[("Cookie", &cookie)]).await.unwrap();
    drop(socket);
    let mut raw = Socket::connect(&s.app.ws_url(), &["wamp"], &[("Cookie", &cookie)]).await.unwrap();
    let welcome = match raw.recv(WAIT).await.unwrap() {
        switchboard::client::Frame::Text(t) => t,
        other => panic!("{other:?}"),
    };
    let v1_id: u64 = serde_json::from_str::<serde_json::Value>(&welcome).unwrap()[1].as_str().unwrap().parse().unwrap();
    assert_eq!(s.app.node.clients().get_client(v1_id).await.unwrap().authid, "alice");
    assert_eq!(s.app.node.clients().find_all_by_username("alice").await.len(), 2);
    assert!(s.invalid.lock().unwrap().is_empty());
    // Every resolution through Redis is timed in the histogram.
    let metrics = s.app.node.metrics().render();
    let resolved: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchboard_session_resolve_seconds_count "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(resolved >= 4, "{resolved} session loads timed");
}

#[actix_web::test]
async fn signed_cookies_work_when_both_sides_use_them() {
    let s = setup_with(
        |settings| settings.session.cookie_security = CookieSecurity::Signed,
        |b| b,
        CookieContentSecurity::Signed,
        CookieDuration::hours(1),
    )
    .await;
    let cookie = s.web.login("carol", None).await;
    assert_eq!(connect(&s.app, &cookie).await.unwrap().authid(), "carol");
}

#[actix_web::test]
async fn tampered_cookie_is_anonymous_and_reported() {
    let s = setup(|_| {}).await;
    let cookie = s.web.login("alice", None).await;
    let (name, value) = cookie.split_once('=').unwrap();
    let mut bytes = value.as_bytes().to_vec();
    // Flip one base64 letter (not part of a %XX escape), as an attacker editing the cookie would.
    let at = (10..bytes.len())
        .find(|&i| bytes[i].is_ascii_alphanumeric() && bytes[i - 1] != b'%' && bytes[i - 2] != b'%')
        .unwrap();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{name}={}", String::from_utf8(bytes).unwrap());
    let session = connect(&s.app, &tampered).await.unwrap();
    assert!(session.authid().starts_with("anon-"));
    assert_eq!(session.authrole(), "anonymous");
    assert_eq!(*s.invalid.lock().unwrap(), vec![InvalidReason::Undecodable]);
    assert!(s.app.node.metrics().render().contains("switchboard_invalid_sessions_total 1\n"));
}

#[actix_web::test]
async fn cookie_from_a_web_app_with_another_key_is_anonymous() {
    let s = setup(|_| {}).await;
    let (other_key, _) = key_pair();
    let other =
        WebApp::spawn(&s.redis.url(), &other_key, CookieContentSecurity::Private, CookieDuration::hours(1)).await;
    let cookie = other.login("mallory", Some("admin")).await;
    let session = connect(&s.app, &cookie).await.unwrap();
    assert!(session.authid().starts_with("anon-"));
    assert_eq!(*s.invalid.lock().unwrap(), vec![InvalidReason::Undecodable]);
}

#[actix_web::test]
async fn reject_policy_answers_401_before_the_upgrade() {
    let s = setup(|settings| settings.session.unauthenticated = Unauthenticated::Reject).await;
    match connect(&s.app, "id=garbage").await {
        Err(ClientError::Rejected { status, body }) => {
            assert_eq!(status, 401);
            assert!(body.contains("login required"), "{body}");
        }
        other => panic!("{:?}", other.map(|s| s.id)),
    }
    match V2Session::connect(&s.app.ws_url(), "realm1").await {
        Err(ClientError::Rejected { status, .. }) => assert_eq!(status, 401),
        other => panic!("{:?}", other.map(|s| s.id)),
    }
    let cookie = s.web.login("alice", None).await;
    assert_eq!(connect(&s.app, &cookie).await.unwrap().authid(), "alice");
}

#[actix_web::test]
async fn expired_session_is_anonymous_and_reported_as_unknown() {
    let s = setup_with(|_| {}, |b| b, CookieContentSecurity::Private, CookieDuration::seconds(1)).await;
    let cookie = s.web.login("alice", None).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let session = connect(&s.app, &cookie).await.unwrap();
    assert!(session.authid().starts_with("anon-"));
    assert_eq!(*s.invalid.lock().unwrap(), vec![InvalidReason::Unknown]);
}

#[actix_web::test]
async fn logout_closes_the_socket_with_session_revoked_within_the_interval() {
    let s = setup(|settings| settings.session.revalidate_interval = Duration::from_millis(200)).await;
    let cookie = s.web.login("alice", None).await;
    let mut v2 = connect(&s.app, &cookie).await.unwrap();
    let mut v1 = Socket::connect(&s.app.ws_url(), &["wamp"], &[("Cookie", &cookie)]).await.unwrap();
    s.web.post("/logout", &cookie).await;
    match v2.next_message(Duration::from_secs(3)).await.unwrap() {
        switchboard::wamp::v2::Message::Goodbye { reason, .. } => {
            assert_eq!(reason, "switchboard.close.session_revoked")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(v2.socket.expect_close(WAIT).await.unwrap().0, 1008);
    assert_eq!(v1.expect_close(Duration::from_secs(3)).await.unwrap().0, 1008);
    assert!(s.invalid.lock().unwrap().contains(&InvalidReason::Revoked));
}

#[actix_web::test]
async fn logout_downgrades_to_anonymous_when_configured() {
    let s = setup(|settings| {
        settings.session.revalidate_interval = Duration::from_millis(200);
        settings.session.on_revoked = OnRevoked::Anonymous;
    })
    .await;
    let cookie = s.web.login("alice", None).await;
    let mut session = connect(&s.app, &cookie).await.unwrap();
    session.subscribe("news").await.unwrap();
    s.web.post("/logout", &cookie).await;
    let node = s.app.node.clone();
    let id = session.id;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let info = node.clients().get_client(id).await.unwrap();
        if info.authid == format!("anon-{id}") {
            assert_eq!(info.authroles, vec!["anonymous"]);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {}", info.authid);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Filters use the new identity: a message for alice no longer reaches this socket.
    node.clients().send_to_user("alice", "news", switchboard::Payload::single(json!("for alice")));
    session.expect_no_event(QUIET).await.unwrap();
    node.clients().send_to_user(&format!("anon-{id}"), "news", switchboard::Payload::single(json!("for anon")));
    assert_eq!(session.next_event(WAIT).await.unwrap().3, vec![json!("for anon")]);
}

#[actix_web::test]
async fn a_socket_downgraded_by_logout_stops_seeing_identities_and_loses_topics_its_role_may_not_read() {
    let s = setup(|settings| {
        settings.session.revalidate_interval = Duration::from_millis(200);
        settings.session.on_revoked = OnRevoked::Anonymous;
        settings.access.push(switchboard::config::AccessSettings {
            pattern: "staff.{topic}".into(),
            subscribe: Some(vec!["user".into()]),
            publish: None,
        });
    })
    .await;
    let cookie = s.web.login("alice", Some("user")).await;
    let mut session = connect(&s.app, &cookie).await.unwrap();
    session.subscribe("wamp.session.on_join").await.unwrap();
    session.subscribe("staff.news").await.unwrap();
    // Seen while logged in.
    let _first = switchboard::client::V2Session::connect(&s.app.ws_url(), "r").await.unwrap();
    assert_eq!(session.next_event(WAIT).await.unwrap().3[0]["authrole"], "anonymous");
    s.web.post("/logout", &cookie).await;
    let (node, id) = (s.app.node.clone(), session.id);
    let deadline = std::time::Instant::now() + WAIT;
    while node.clients().get_client(id).await.unwrap().authid != format!("anon-{id}") {
        assert!(std::time::Instant::now() < deadline, "never downgraded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Anonymous now: the meta topic and the staff topic are closed to it, though its subscriptions stand.
    let _second = switchboard::client::V2Session::connect(&s.app.ws_url(), "r").await.unwrap();
    node.clients().publish("staff.news", switchboard::Payload::single(json!("staff only")), Default::default());
    session.expect_no_event(QUIET * 2).await.unwrap();
}

fn with_note_procedure(builder: switchboard::Builder) -> switchboard::Builder {
    builder.procedure("notes.save", |call: Call| async move {
        let note = call.arg(0)?.as_str().unwrap_or_default().to_owned();
        let session =
            call.caller.web_session.clone().ok_or_else(|| CallError::new("notes.error.no_session", "log in"))?;
        session.insert("note", note).await.map_err(|e| CallError::new("notes.error.session", e.to_string()))?;
        Ok(CallResult::value(true))
    })
}

#[actix_web::test]
async fn a_write_from_a_socket_handler_is_visible_to_the_web_app_and_never_resurrects_a_logout() {
    let s = setup_with(|_| {}, with_note_procedure, CookieContentSecurity::Private, CookieDuration::hours(1)).await;
    let cookie = s.web.login("alice", Some("user")).await;
    let mut session = connect(&s.app, &cookie).await.unwrap();
    session.call("notes.save", vec![json!("written by the socket")], dict(json!({}))).await.unwrap();
    let seen = s.web.whoami(&cookie).await;
    assert_eq!(seen["username"], "alice");
    assert_eq!(seen["note"], "written by the socket");

    s.web.post("/logout", &cookie).await;
    let mut conn = s.redis.connection().await;
    match session.call("notes.save", vec![json!("after logout")], dict(json!({}))).await {
        Err(ClientError::Wamp { error, message }) => {
            assert_eq!(error, "notes.error.session");
            assert!(message.contains("no longer exists"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{PREFIX}*")).query_async(&mut conn).await.unwrap();
    assert!(keys.is_empty(), "a logged-out session was recreated: {keys:?}");
}

#[actix_web::test]
async fn message_reload_applies_a_role_change_at_once() {
    let s = setup_with(
        |settings| settings.session.reload = ReloadPolicy::Message,
        |b| b.access("admin.{x}", Some(&["admin"]), Some(&["admin"])),
        CookieContentSecurity::Private,
        CookieDuration::hours(1),
    )
    .await;
    let cookie = s.web.login("alice", Some("user")).await;
    let mut session = connect(&s.app, &cookie).await.unwrap();
    match session.subscribe("admin.news").await {
        Err(ClientError::Wamp { error, .. }) => assert_eq!(error, "wamp.error.not_authorized"),
        other => panic!("{other:?}"),
    }
    s.web.post("/roles?roles=admin", &cookie).await;
    session.subscribe("admin.news").await.unwrap();
    let (args, _) = session.call("wamp.session.get", vec![json!(session.id)], dict(json!({}))).await.unwrap();
    assert_eq!(args[0]["authrole"], "admin");
}

#[actix_web::test]
async fn keep_alive_refreshes_the_session_ttl_while_the_socket_is_open() {
    let s = setup_with(
        |settings| {
            settings.session.ttl = Duration::from_secs(2);
            settings.session.keepalive_interval = Duration::from_millis(300);
        },
        |b| b,
        CookieContentSecurity::Private,
        CookieDuration::seconds(2),
    )
    .await;
    let cookie = s.web.login("alice", None).await;
    let _socket = connect(&s.app, &cookie).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(s.web.whoami(&cookie).await["username"], "alice", "the session outlived its 2 s TTL");
}

#[actix_web::test]
async fn redis_restart_gives_503_while_down_and_resolves_again_after() {
    let mut s = setup(|settings| {
        settings.session.store_timeout = Duration::from_millis(300);
        settings.session.store_attempts = 2;
    })
    .await;
    let cookie = s.web.login("alice", None).await;
    let mut ready = awc::Client::default().get(s.app.http_url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.json::<serde_json::Value>().await.unwrap()["redis"], "up");
    s.redis.stop();
    let mut ready = awc::Client::default().get(s.app.http_url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<serde_json::Value>().await.unwrap()["redis"], "down");
    match connect(&s.app, &cookie).await {
        Err(ClientError::Rejected { status, body }) => {
            assert_eq!(status, 503);
            assert!(body.contains("session store unavailable"), "{body}");
        }
        other => panic!("a logged-in user must not be downgraded silently: {:?}", other.map(|s| s.authid().to_owned())),
    }
    s.redis.restart().await;
    // The restarted server kept nothing (persistence is off): log in again, through the same web app.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let cookie = loop {
        let response = awc::Client::default().post(s.web.url("/login?username=alice")).send().await;
        if let Ok(r) = response {
            if r.status() == 200 {
                let set_cookie = r.headers().get(SET_COOKIE).unwrap().to_str().unwrap();
                break set_cookie.split(';').next().unwrap().to_owned();
            }
        }
        assert!(std::time::Instant::now() < deadline, "web app did not reconnect to redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match connect(&s.app, &cookie).await {
            Ok(session) => {
                assert_eq!(session.authid(), "alice");
                break;
            }
            Err(ClientError::Rejected { status: 503, .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[actix_web::test]
async fn foreign_origin_gets_403_and_own_or_configured_origins_connect() {
    let s = setup(|settings| settings.server.allowed_origins = vec!["http://app.example".into()]).await;
    let cookie = s.web.login("alice", None).await;
    let evil = V2Session::connect_with_headers(
        &s.app.ws_url(),
        "r",
        &[("Cookie", &cookie), ("Origin", "http://evil.example")],
    )
    .await;
    match evil {
        Err(ClientError::Rejected { status, .. }) => assert_eq!(status, 403),
        other => panic!("{:?}", other.map(|s| s.id)),
    }
    let ok =
        V2Session::connect_with_headers(&s.app.ws_url(), "r", &[("Cookie", &cookie), ("Origin", "http://app.example")])
            .await;
    assert_eq!(ok.unwrap().authid(), "alice");
    // Default (no list): only the server's own origin.
    let app = spawn_app().await;
    let own = format!("http://127.0.0.1:{}", app.port);
    V2Session::connect_with_headers(&app.ws_url(), "r", &[("Origin", &own)]).await.unwrap();
    match V2Session::connect_with_headers(&app.ws_url(), "r", &[("Origin", "http://evil.example")]).await {
        Err(ClientError::Rejected { status, .. }) => assert_eq!(status, 403),
        other => panic!("{:?}", other.map(|s| s.id)),
    }
}

#[actix_web::test]
async fn demo_login_makes_the_socket_that_user() {
    let app = spawn_app().await;
    let client = awc::Client::builder().disable_redirects().finish();
    let response = client.post(app.http_url("/login")).send_form(&[("username", "dora")]).await.unwrap();
    assert_eq!(response.status(), 303);
    let cookie = response.headers().get(SET_COOKIE).unwrap().to_str().unwrap().split(';').next().unwrap().to_owned();
    let mut page = client.get(app.http_url("/")).insert_header(("Cookie", cookie.as_str())).send().await.unwrap();
    let body = String::from_utf8(page.body().await.unwrap().to_vec()).unwrap();
    assert!(body.contains("demo — chat"));
    let session = connect(&app, &cookie).await.unwrap();
    assert_eq!(session.authid(), "dora");
    let bad = client.post(app.http_url("/login")).send_form(&[("username", "<b>")]).await.unwrap();
    assert_eq!(bad.status(), 400);
}

#[actix_web::test]
async fn demo_serves_an_icon_its_pages_link_so_browsers_log_no_404() {
    let app = spawn_app().await;
    let client = awc::Client::default();
    let mut icon = client.get(app.http_url("/favicon.ico")).send().await.unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers().get("content-type").unwrap(), "image/svg+xml");
    assert!(String::from_utf8(icon.body().await.unwrap().to_vec()).unwrap().starts_with("<svg"));
    let mut login = client.get(app.http_url("/")).send().await.unwrap();
    let body = String::from_utf8(login.body().await.unwrap().to_vec()).unwrap();
    assert!(body.contains(r#"<link rel="icon" href="/favicon.ico""#), "{body}");
}
