//! Redis faults against the real binary: start-up refuses a Redis it cannot use (nothing listening, wrong
//! password, NOAUTH) quickly and clearly; the session store recovers from an outage as fast as the backplane;
//! a password change at run time turns readiness 503 with Redis's reason.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard::client::V2Session;

use crate::cluster::{session_key, Node};
use crate::helpers::dict;
use crate::redis_server::RedisServer;

/// `redis.connect_timeout` of the start-up tests.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Slack above the connect timeout for a refused start-up to exit (process start, printing).
const EXIT_SLACK: Duration = Duration::from_secs(3);
/// After Redis returns, cookie sockets and the backplane must work again within this time.
const RECOVERY: Duration = Duration::from_secs(2);
/// How long the outage lasts: far beyond redis-rs's first re-dial waits (1 s, then growing to a minute).
const OUTAGE: Duration = Duration::from_secs(10);
/// Publishes tried per round of the outage loop (each fails while the backplane is down).
const PUBLISHES_PER_ROUND: usize = 10;

/// How a refused start-up ended.
pub struct Exit {
    pub code: Option<i32>,
    pub stderr: String,
    pub took: Duration,
}

/// Runs the binary with `url` as `redis.url` and `extra` environment; it must exit within the connect timeout
/// plus [`EXIT_SLACK`] (it is killed and the test fails otherwise).
pub fn start_up(url: &str, extra: &[(&str, String)]) -> Exit {
    let dir = std::env::temp_dir().join(format!("switchboard-faults-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(&config, format!("[redis]\nconnect_timeout = \"{}ms\"\n", CONNECT_TIMEOUT.as_millis())).unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--config")
        .arg(&config)
        .env("SWITCHBOARD_BIND", "127.0.0.1:0")
        .env("SWITCHBOARD_REDIS_URL", url)
        .env("SWITCHBOARD_SESSION_KEY", session_key())
        .envs(extra.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the switchboard binary starts");
    let bound = CONNECT_TIMEOUT + EXIT_SLACK;
    while child.try_wait().unwrap().is_none() && started.elapsed() < bound {
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    let exited = child.try_wait().unwrap().is_some();
    if !exited {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(exited, "still running after {took:?} (bound {bound:?}); stderr:\n{stderr}");
    Exit { code: output.status.code(), stderr, took }
}

fn closed_port() -> u16 {
    // Bound then released: nothing listens there for the test's duration (ports are not reused at once).
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn start_up_against_nothing_listening_exits_2_naming_redis_url() {
    let url = format!("redis://:hunter22@127.0.0.1:{}", closed_port());
    let exit = start_up(&url, &[]);
    assert_eq!(exit.code, Some(2), "{}", exit.stderr);
    assert!(exit.stderr.contains("redis.url"), "{}", exit.stderr);
    assert!(exit.stderr.contains("redis://:***@127.0.0.1"), "password masked: {}", exit.stderr);
    assert!(!exit.stderr.contains("hunter22"), "password printed: {}", exit.stderr);
    assert!(exit.stderr.to_lowercase().contains("refused"), "Redis's own error: {}", exit.stderr);
    assert!(exit.took < CONNECT_TIMEOUT + EXIT_SLACK);
}

#[actix_web::test]
async fn start_up_with_a_wrong_password_exits_2_with_redis_words_and_the_password_masked() {
    let redis = RedisServer::start_with_password("right-password").await;
    let url = redis.url().replacen("://", "://:wrong-password@", 1);
    let exit = start_up(&url, &[]);
    assert_eq!(exit.code, Some(2), "{}", exit.stderr);
    assert!(exit.stderr.contains("redis.url"), "{}", exit.stderr);
    assert!(exit.stderr.contains(":***@"), "{}", exit.stderr);
    assert!(!exit.stderr.contains("wrong-password"), "password printed: {}", exit.stderr);
    assert!(exit.stderr.contains("WRONGPASS"), "Redis's own error: {}", exit.stderr);
}

#[actix_web::test]
async fn start_up_without_a_password_against_requirepass_exits_2_with_noauth() {
    let redis = RedisServer::start_with_password("right-password").await;
    let exit = start_up(&redis.url(), &[]);
    assert_eq!(exit.code, Some(2), "a node that cannot authenticate must not start: {}", exit.stderr);
    assert!(exit.stderr.contains("redis.url"), "{}", exit.stderr);
    assert!(exit.stderr.contains("NOAUTH"), "Redis's own error: {}", exit.stderr);
}

#[actix_web::test]
async fn a_separate_session_redis_is_checked_and_named_too() {
    let cluster = RedisServer::start().await;
    let sessions = format!("redis://:s3cret@127.0.0.1:{}", closed_port());
    let exit = start_up(&cluster.url(), &[("SWITCHBOARD_SESSION_REDIS_URL", sessions)]);
    assert_eq!(exit.code, Some(2), "{}", exit.stderr);
    assert!(exit.stderr.contains("session.redis_url") && exit.stderr.contains(":***@"), "{}", exit.stderr);
}

#[actix_web::test]
async fn a_missing_tls_ca_file_stops_the_start_naming_redis_tls_ca() {
    let missing = PathBuf::from("/nonexistent/switchboard-ca.pem").display().to_string();
    let exit = start_up("rediss://127.0.0.1:1", &[("SWITCHBOARD_REDIS_TLS_CA", missing)]);
    assert_eq!(exit.code, Some(2), "{}", exit.stderr);
    assert!(exit.stderr.contains("redis.tls_ca"), "{}", exit.stderr);
}

/// The session keys (not switchboard's own keys) and their values.
pub async fn session_entries(redis: &RedisServer) -> Vec<(String, String)> {
    let mut conn = redis.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    let mut entries = Vec::new();
    for key in keys.into_iter().filter(|k| !k.starts_with("sbtest:")) {
        let value: String = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
        entries.push((key, value));
    }
    entries
}

pub async fn ready_body(node: &Node) -> (u16, Value) {
    let mut response = awc::Client::default().get(node.http("/health/ready")).send().await.unwrap();
    (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
}

#[actix_web::test]
async fn cookie_sockets_resolve_within_2s_after_a_10s_redis_outage() {
    let mut redis = RedisServer::start().await;
    let node = Node::start(&redis, "outage").await;
    let cookie = node.login("alice").await;
    let headers = [("Cookie", cookie.as_str())];
    let before = V2Session::connect_with_headers(&node.ws(), "r", &headers).await.unwrap();
    assert_eq!(before.authid(), "alice");
    let sessions = session_entries(&redis).await;
    assert_eq!(sessions.len(), 1, "one web session: {sessions:?}");

    let mut publisher = V2Session::connect(&node.ws(), "r").await.unwrap();

    redis.stop();
    // Sockets opened during the outage are refused (503), which is what drives the store's reconnects;
    // publishes fail (the backplane is down), each one a failure the log summarises.
    let down = Instant::now();
    let mut failed_publishes = 0;
    while down.elapsed() < OUTAGE {
        assert!(V2Session::connect_with_headers(&node.ws(), "r", &headers).await.is_err());
        for _ in 0..PUBLISHES_PER_ROUND {
            if publisher.publish_acked("outage", dict(json!({})), vec![]).await.is_err() {
                failed_publishes += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(failed_publishes >= 50, "only {failed_publishes} publishes failed during the outage");

    redis.restart().await;
    let back = Instant::now();
    // Redis ran without persistence: put the web app's session back as it stored it.
    let mut conn = redis.connection().await;
    for (key, value) in &sessions {
        redis::cmd("SET").arg(key).arg(value).arg("EX").arg(3600).query_async::<()>(&mut conn).await.unwrap();
    }
    let resolved = loop {
        let attempt = V2Session::connect_with_headers(&node.ws(), "r", &headers).await;
        if let Ok(session) = attempt {
            break session;
        }
        assert!(back.elapsed() < RECOVERY, "cookie sockets still refused {:?} after Redis returned", back.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(resolved.authid(), "alice");
    assert!(back.elapsed() < RECOVERY, "resolved only after {:?}", back.elapsed());
    // Readiness (session store and backplane) is back within the same bound.
    loop {
        let (status, body) = ready_body(&node).await;
        if status == 200 {
            break;
        }
        assert!(back.elapsed() < RECOVERY, "not ready {:?} after Redis returned: {body}", back.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A publish succeeds again, which flushes the last summary of failed ones.
    publisher.publish_acked("outage", dict(json!({})), vec![]).await.unwrap();
    let log = node.log();
    let warned = |what: &str| log.lines().filter(|l| l.contains("WARN") && l.contains(what)).count();
    let publishes = warned("publications could not reach Redis");
    // The first failure, at most one summary per 10 s window of the ~10 s outage (+1 for timing), the tail.
    assert!((2..=4).contains(&publishes), "{publishes} WARNs for {failed_publishes} failed publishes:\n{log}");
    assert!(log.contains("publications could not reach Redis in the last"), "{log}");
    assert!(warned("session store calls could not reach Redis") <= 4, "{log}");
}

#[actix_web::test]
async fn a_password_change_at_run_time_makes_readiness_503_with_redis_reason() {
    let redis = RedisServer::start().await;
    let node = Node::start(&redis, "auth").await;
    assert_eq!(ready_body(&node).await.0, 200);
    let mut conn = redis.connection().await;
    redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("rotated").query_async::<()>(&mut conn).await.unwrap();
    // Connections authenticated before the change stay so; a restart or a dropped connection re-dials.
    for kind in ["normal", "pubsub"] {
        let _ = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg(kind).query_async::<i64>(&mut conn).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = ready_body(&node).await;
        let reason = format!("{} {}", body["redis_error"], body["backplane_error"]);
        if status == 503 && body["redis"] == "down" && reason.contains("NOAUTH") {
            break;
        }
        assert!(Instant::now() < deadline, "readiness did not report the auth failure: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
