//! Token authentication (`[auth]`): a JWT as WAMP `ticket` (HELLO → CHALLENGE → AUTHENTICATE → WELCOME) and as
//! `Authorization: Bearer` on the upgrade; refusals; first-class token sessions across nodes.

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use switchboard::client::{ClientError, V2Session};
use switchboard::Switchboard;

use crate::cluster::Node;
use crate::helpers::*;
use crate::redis_server::RedisServer;

pub const SECRET: &str = "a-test-hs256-secret-of-32-bytes-or-more";

/// An HS256 token for `sub` with `roles`, valid for `lifetime` seconds (negative: expired).
pub fn jwt(sub: &str, roles: &[&str], lifetime: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = json!({"sub": sub, "roles": roles, "exp": now + lifetime, "iat": now});
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

async fn token_app() -> TestApp {
    let mut settings = test_settings();
    settings.auth.jwt_secret = SECRET.into();
    settings.auth.leeway = std::time::Duration::ZERO;
    spawn_with(Switchboard::builder(settings)).await
}

fn abort_reason(result: Result<V2Session, ClientError>) -> (String, String) {
    match result {
        Err(ClientError::Wamp { error, message }) => (error, message),
        other => panic!("expected an ABORT, got {:?}", other.map(|s| s.authid().to_owned())),
    }
}

#[actix_web::test]
async fn a_ticket_jwt_authenticates_with_sub_roles_and_method() {
    let app = token_app().await;
    let token = jwt("svc-billing", &["service", "billing"], 60);
    let mut s =
        V2Session::connect_with_ticket(&app.ws_url(), "r", &["ticket"], Some("svc-billing"), &token).await.unwrap();
    assert_eq!((s.authid(), s.authrole(), s.authmethod()), ("svc-billing", "service", "ticket"));
    assert_eq!(s.details["authextra"]["authroles"], json!(["service", "billing"]), "{:?}", s.details);
    // Findable like a cookie user: lookups see the token session.
    let (args, _) = s.call("wamp.session.get", vec![json!(s.id)], dict(json!({}))).await.unwrap();
    assert_eq!((args[0]["authid"].as_str(), args[0]["authmethod"].as_str()), (Some("svc-billing"), Some("ticket")));
}

#[actix_web::test]
async fn ticket_authentication_runs_over_cbor_and_msgpack_too() {
    let app = token_app().await;
    for serializer in [switchboard::wamp::Serializer::Cbor, switchboard::wamp::Serializer::MsgPack] {
        let socket = switchboard::client::Socket::connect(&app.ws_url(), &[serializer.token()], &[]).await.unwrap();
        let auth = dict(json!({"authmethods": ["ticket"], "authid": "svc"}));
        let token = jwt("svc", &["service"], 60);
        let s = V2Session::handshake_in(socket, "r", auth, Some(&token), serializer).await.unwrap();
        assert_eq!((s.authid(), s.authmethod()), ("svc", "ticket"), "{}", serializer.token());
    }
}

#[actix_web::test]
async fn bad_tickets_abort_with_authentication_failed_and_a_reason() {
    let app = token_app().await;
    let url = app.ws_url();
    let cases = [
        (jwt("bob", &[], -10), "expired"),
        (jwt("bob", &[], 60).replace('.', ".x"), "signature"),
        ("garbage".to_owned(), "not a JWT"),
    ];
    for (token, expected) in cases {
        let (error, message) = abort_reason(V2Session::connect_with_ticket(&url, "r", &["ticket"], None, &token).await);
        assert_eq!(error, "wamp.error.authentication_failed");
        assert!(message.contains(expected), "{expected}: {message}");
    }
    let forged = encode(
        &Header::default(),
        &json!({"sub": "bob", "exp": 4_000_000_000u64}),
        &EncodingKey::from_secret(b"not-the-router-secret-but-32-bytes-long"),
    )
    .unwrap();
    let (error, message) = abort_reason(V2Session::connect_with_ticket(&url, "r", &["ticket"], None, &forged).await);
    assert_eq!((error.as_str(), message.contains("signature")), ("wamp.error.authentication_failed", true));
    let token = jwt("bob", &[], 60);
    let (error, message) =
        abort_reason(V2Session::connect_with_ticket(&url, "r", &["ticket"], Some("eve"), &token).await);
    assert_eq!(error, "wamp.error.authentication_failed");
    assert!(message.contains("not the token's subject"), "{message}");
    assert!(closed_for(&app, "authentication_failed") >= 5);
}

#[actix_web::test]
async fn only_ticket_without_token_keys_aborts_with_no_auth_method() {
    let app = spawn_app().await;
    let token = jwt("bob", &[], 60);
    let (error, message) =
        abort_reason(V2Session::connect_with_ticket(&app.ws_url(), "r", &["ticket"], None, &token).await);
    assert_eq!(error, "wamp.error.no_auth_method");
    assert!(message.contains("cookie, anonymous"), "{message}");
    // Offering anonymous too is fine: the session is anonymous, as before.
    let s = V2Session::connect_with_ticket(&app.ws_url(), "r", &["ticket", "anonymous"], None, &token).await.unwrap();
    assert_eq!(s.authmethod(), "anonymous");
}

#[actix_web::test]
async fn a_bearer_token_on_the_upgrade_authenticates_and_a_bad_one_gets_401() {
    let app = token_app().await;
    let bearer = format!("Bearer {}", jwt("mobile-app-user", &["user"], 60));
    let s = V2Session::connect_with_headers(&app.ws_url(), "r", &[("Authorization", &bearer)]).await.unwrap();
    assert_eq!((s.authid(), s.authmethod()), ("mobile-app-user", "ticket"));
    // A HELLO asking for ticket on a bearer socket is not challenged again.
    let socket = switchboard::client::Socket::connect(&app.ws_url(), &["wamp.2.json"], &[("Authorization", &bearer)])
        .await
        .unwrap();
    let mut extra = serde_json::Map::new();
    extra.insert("authmethods".into(), json!(["ticket"]));
    let s = V2Session::handshake_with(socket, "r", extra, None).await.unwrap();
    assert_eq!(s.authid(), "mobile-app-user");

    let mut extra = serde_json::Map::new();
    extra.insert("authid".into(), json!("someone-else"));
    let socket = switchboard::client::Socket::connect(&app.ws_url(), &["wamp.2.json"], &[("Authorization", &bearer)])
        .await
        .unwrap();
    let (error, _) = abort_reason(V2Session::handshake_with(socket, "r", extra, None).await);
    assert_eq!(error, "wamp.error.authentication_failed", "a HELLO authid must be the bearer token's subject");

    let expired = format!("Bearer {}", jwt("x", &[], -5));
    let response = awc::Client::default()
        .get(app.http_url("/ws"))
        .insert_header(("Authorization", expired.as_str()))
        .insert_header(("Connection", "Upgrade"))
        .insert_header(("Upgrade", "websocket"))
        .insert_header(("Sec-WebSocket-Version", "13"))
        .insert_header(("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="))
        .insert_header(("Sec-WebSocket-Protocol", "wamp.2.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[actix_web::test]
async fn without_token_keys_an_authorization_header_is_ignored() {
    let app = spawn_app().await;
    let cookie = login(&app, "alice").await;
    let headers = [("Cookie", cookie.as_str()), ("Authorization", "Bearer some-proxy-token")];
    let s = V2Session::connect_with_headers(&app.ws_url(), "r", &headers).await.unwrap();
    assert_eq!((s.authid(), s.authmethod()), ("alice", "cookie"));
}

#[actix_web::test]
async fn a_cookie_and_a_token_of_different_users_never_mix() {
    let app = token_app().await;
    let cookie = login(&app, "alice").await;
    let socket =
        switchboard::client::Socket::connect(&app.ws_url(), &["wamp.2.json"], &[("Cookie", &cookie)]).await.unwrap();
    let mut extra = serde_json::Map::new();
    extra.insert("authmethods".into(), json!(["ticket"]));
    let (error, message) =
        abort_reason(V2Session::handshake_with(socket, "r", extra, Some(&jwt("bob", &[], 60))).await);
    assert_eq!(error, "wamp.error.authentication_failed");
    assert!(message.contains("the cookie's user (alice) and the token's (bob) differ"), "{message}");
    // The same user: the token wins (roles from the token), the cookie's web session is detached.
    let socket =
        switchboard::client::Socket::connect(&app.ws_url(), &["wamp.2.json"], &[("Cookie", &cookie)]).await.unwrap();
    let mut extra = serde_json::Map::new();
    extra.insert("authmethods".into(), json!(["ticket", "cookie"]));
    let s = V2Session::handshake_with(socket, "r", extra, Some(&jwt("alice", &["admin"], 60))).await.unwrap();
    assert_eq!((s.authid(), s.authrole(), s.authmethod()), ("alice", "admin", "ticket"));
    let bearer = format!("Bearer {}", jwt("bob", &[], 60));
    let refused =
        V2Session::connect_with_headers(&app.ws_url(), "r", &[("Cookie", &cookie), ("Authorization", &bearer)]).await;
    assert!(refused.is_err(), "a bearer token of another user than the cookie's is refused");
}

#[actix_web::test]
async fn a_service_with_a_token_sends_to_a_cookie_user_on_another_node() {
    let redis = RedisServer::start().await;
    let env = [("SWITCHBOARD_JWT_SECRET", SECRET.to_owned())];
    let a = Node::start_env(&redis, "tok-a", "", &env).await;
    let b = Node::start_env(&redis, "tok-b", "", &env).await;
    let cookie = b.login("alice").await;
    let mut alice = V2Session::connect_with_headers(&b.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    alice.subscribe("notifications").await.unwrap();
    let token = jwt("svc-notifier", &["service"], 60);
    let mut service = V2Session::connect_with_ticket(&a.ws(), "r", &["ticket"], None, &token).await.unwrap();
    assert_eq!(service.authmethod(), "ticket");
    let options = dict(json!({"eligible_authid": ["alice"]}));
    service.publish_acked("notifications", options, vec![json!("invoice paid")]).await.unwrap();
    assert_eq!(alice.next_event(WAIT).await.unwrap().3, vec![Value::from("invoice paid")]);
    // The service is a first-class session on every node.
    let (status, sessions) = b.api("GET", "/api/users/svc-notifier/sessions", None).await;
    assert_eq!(status, 200);
    assert_eq!((&sessions[0]["node"], &sessions[0]["authroles"]), (&json!("tok-a"), &json!(["service"])), "{sessions}");
}

/// Runs the openssl CLI in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl CLI runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[actix_web::test]
async fn an_es256_public_key_accepts_its_tokens_and_refuses_other_algorithms() {
    let dir = std::env::temp_dir().join(format!("switchboard-jwt-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    openssl(&dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec.pem"]);
    openssl(&dir, &["pkcs8", "-topk8", "-nocrypt", "-in", "ec.pem", "-out", "private.pem"]);
    openssl(&dir, &["ec", "-in", "ec.pem", "-pubout", "-out", "public.pem"]);
    let private = std::fs::read(dir.join("private.pem")).unwrap();
    let mut settings = test_settings();
    settings.auth.jwt_public_key = dir.join("public.pem").display().to_string();
    let app = spawn_with(Switchboard::builder(settings)).await;
    let _ = std::fs::remove_dir_all(&dir);

    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 60;
    let claims = json!({"sub": "device-42", "roles": "device", "exp": exp});
    let es256 =
        encode(&Header::new(jsonwebtoken::Algorithm::ES256), &claims, &EncodingKey::from_ec_pem(&private).unwrap())
            .unwrap();
    let s = V2Session::connect_with_ticket(&app.ws_url(), "r", &["ticket"], None, &es256).await.unwrap();
    assert_eq!((s.authid(), s.authrole(), s.authmethod()), ("device-42", "device", "ticket"));
    // An HS256 token (even with a key an attacker may know, like the public key's text) is refused.
    let (error, message) =
        abort_reason(V2Session::connect_with_ticket(&app.ws_url(), "r", &["ticket"], None, &jwt("x", &[], 60)).await);
    assert_eq!(error, "wamp.error.authentication_failed");
    assert!(message.contains("signed with HS256; this router accepts ES256"), "{message}");
}

#[actix_web::test]
async fn a_token_session_ends_when_its_token_does() {
    let app = token_app().await;
    let mut ticket =
        V2Session::connect_with_ticket(&app.ws_url(), "r", &["ticket"], None, &jwt("short", &[], 2)).await.unwrap();
    let bearer = format!("Bearer {}", jwt("short-bearer", &[], 2));
    let mut bearer = V2Session::connect_with_headers(&app.ws_url(), "r", &[("Authorization", &bearer)]).await.unwrap();
    for s in [&mut ticket, &mut bearer] {
        match s.next_message(std::time::Duration::from_secs(5)).await.unwrap() {
            switchboard::wamp::v2::Message::Goodbye { reason, .. } => {
                assert_eq!(reason, "switchboard.close.token_expired")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.socket.expect_close(WAIT).await.unwrap().0, 1008);
    }
    assert_eq!(closed_for(&app, "token_expired"), 2);
}
