//! `switchboard doctor --cookie …`: the binary, with the settings a node uses, against a real session in Redis.

use std::process::Command;

use crate::cluster::{session_key, Node};
use crate::redis_server::RedisServer;

/// Runs `switchboard doctor` with the node's Redis and key (and `extra` variables); exit code and output.
fn doctor(redis: &RedisServer, cookie: &str, extra: &[(&str, String)]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["doctor", "--cookie", cookie])
        .env("SWITCHBOARD_REDIS_URL", redis.url())
        .env("SWITCHBOARD_SESSION_KEY", session_key())
        .envs(extra.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("the switchboard binary runs");
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[actix_web::test]
async fn doctor_explains_a_good_cookie_a_wrong_prefix_a_wrong_key_and_a_logged_out_session() {
    let redis = RedisServer::start().await;
    let node = Node::start(&redis, "doc").await;
    assert!(node.log().contains("session bridge: cookie 'id', private (encrypted), key fingerprint"), "{}", node.log());
    let cookie = node.login("alice").await;
    let header = format!("theme=dark; {cookie}");

    let (code, out) = doctor(&redis, &header, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("=> resolves to alice (roles: user)"), "{out}");
    assert!(out.contains("field 'username' = \"alice\""), "{out}");
    let session_key = cookie.split_once('=').unwrap().1;
    assert!(!out.contains(session_key), "the cookie's value is never printed: {out}");

    let (code, out) = doctor(&redis, &header, &[("SWITCHBOARD_SESSION_KEY_PREFIX", "myapp:".into())]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL  store key 'myapp:") && out.contains("set session.key_prefix = \"\""), "{out}");

    use base64::Engine;
    let other = base64::engine::general_purpose::STANDARD.encode([3u8; 64]);
    let (code, out) = doctor(&redis, &header, &[("SWITCHBOARD_SESSION_KEY", other)]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("does not decrypt with this key") && out.contains("another key"), "{out}");

    let mut conn = redis.connection().await;
    let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await.unwrap();
    let (code, out) = doctor(&redis, &header, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("does not exist") && out.contains("logged out"), "{out}");
    assert!(out.contains("=> anonymous (session expired or not found)"), "{out}");
}
