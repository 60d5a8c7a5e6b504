//! Webhooks against a real HTTP receiver run by the test: three node processes joined by a private Redis, each
//! configured with the same `[webhooks]`. Every event must arrive once (not once per node), signed, and be
//! retried after the receiver answers 500.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use switchboard::client::V2Session;

use crate::cluster::Node;
use crate::helpers::*;
use crate::redis_server::RedisServer;

const SECRET: &str = "webhook-test-secret-0123";

/// One POST the receiver got: the event id header, the body and whether its signature verified.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    body: Value,
    signed: bool,
    answered: u16,
}

/// A webhook receiver on a free loopback port that answers 500 to the first attempt of every event and 200 to
/// the next, recording everything.
struct Receiver {
    port: u16,
    log: Arc<Mutex<Vec<Received>>>,
    server: actix_web::dev::ServerHandle,
}

fn verified(body: &[u8], header: Option<&str>) -> bool {
    let Some(hex) = header.and_then(|h| h.strip_prefix("sha256=")) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    expected == hex
}

impl Receiver {
    async fn start() -> Receiver {
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let shared = log.clone();
        let server = HttpServer::new(move || {
            let log = shared.clone();
            App::new().route(
                "/hooks",
                web::post().to(move |req: HttpRequest, body: web::Bytes| {
                    let log = log.clone();
                    async move {
                        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
                        let id = header("X-Switchboard-Event-Id").unwrap_or_default().to_owned();
                        let signed = verified(&body, header("X-Switchboard-Signature"));
                        let mut log = log.lock().unwrap();
                        let answered = if log.iter().any(|r| r.id == id) { 200 } else { 500 };
                        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        log.push(Received { id, body, signed, answered });
                        HttpResponse::build(actix_web::http::StatusCode::from_u16(answered).unwrap()).finish()
                    }
                }),
            )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Receiver { port, log, server: handle }
    }

    /// The events accepted so far (answered 200), by id.
    fn accepted(&self) -> HashMap<String, Value> {
        let log = self.log.lock().unwrap();
        log.iter().filter(|r| r.answered == 200).map(|r| (r.id.clone(), r.body.clone())).collect()
    }

    /// Waits until an accepted event satisfies `wanted`; returns its body.
    async fn wait_for(&self, what: &str, within: Duration, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(body) = self.accepted().into_values().find(|b| wanted(b)) {
                return body;
            }
            assert!(Instant::now() < deadline, "no {what} webhook within {within:?}: {:?}", self.log.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn is(event: &'static str, authid: &'static str) -> impl Fn(&Value) -> bool {
    move |b: &Value| b["event"] == event && b["data"]["authid"] == authid
}

#[actix_web::test]
async fn each_event_is_posted_once_signed_and_retried_after_a_500_even_when_a_node_dies() {
    let redis = RedisServer::start().await;
    let receiver = Receiver::start().await;
    let extra = format!(
        "[webhooks]\nurl = \"http://127.0.0.1:{}/hooks\"\nsecret = \"{SECRET}\"\n[presence]\ngrace = \"300ms\"\n",
        receiver.port
    );
    let a = Node::start_env(&redis, "a", &extra, &[]).await;
    let b = Node::start_env(&redis, "b", &extra, &[]).await;
    let mut c = Node::start_env(&redis, "c", &extra, &[]).await;

    let cookie = b.login("alice").await;
    let alice = V2Session::connect_with_headers(&b.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    let joined = receiver.wait_for("session.join", WAIT, is("session.join", "alice")).await;
    assert_eq!(joined["data"]["session"], alice.id);
    assert_eq!(joined["node"], "b");
    receiver.wait_for("user.online", WAIT, is("user.online", "alice")).await;
    drop(alice);
    let left = receiver.wait_for("session.leave", WAIT, is("session.leave", "alice")).await;
    assert_eq!(left["data"]["authrole"], "user");
    receiver.wait_for("user.offline", WAIT, is("user.offline", "alice")).await;

    // bob's node dies: a survivor reports his session's end and, after the grace, his absence.
    let cookie = c.login("bob").await;
    let bob = V2Session::connect_with_headers(&c.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    receiver.wait_for("session.join", WAIT, is("session.join", "bob")).await;
    c.kill9();
    let left = receiver.wait_for("session.leave", Duration::from_secs(8), is("session.leave", "bob")).await;
    assert_eq!(left["data"]["session"], bob.id);
    assert_ne!(left["node"], "c", "reported by a survivor");
    receiver.wait_for("user.offline", Duration::from_secs(8), is("user.offline", "bob")).await;

    // Nothing more comes, and every event came as one id: a 500, then one accepted retry, each signed.
    tokio::time::sleep(QUIET * 2).await;
    let log = receiver.log.lock().unwrap().clone();
    assert!(log.iter().all(|r| r.signed), "{log:?}");
    let mut by_id: HashMap<&str, Vec<u16>> = HashMap::new();
    for r in &log {
        by_id.entry(&r.id).or_default().push(r.answered);
    }
    assert!(by_id.values().all(|answers| answers == &[500, 200]), "{by_id:?}");
    let mut events: Vec<(String, String)> = receiver
        .accepted()
        .values()
        .map(|b| (b["event"].as_str().unwrap().to_owned(), b["data"]["authid"].as_str().unwrap().to_owned()))
        .collect();
    events.sort();
    let expected = [
        ("session.join", "alice"),
        ("session.join", "bob"),
        ("session.leave", "alice"),
        ("session.leave", "bob"),
        ("user.offline", "alice"),
        ("user.offline", "bob"),
        ("user.online", "alice"),
        ("user.online", "bob"),
    ];
    assert_eq!(events, expected.map(|(e, u)| (e.to_owned(), u.to_owned())), "once each, not once per node");
    drop(a);
    receiver.server.stop(true).await;
}
