//! Caps: a node full of sockets still answers its health endpoints and refuses further upgrades with 503;
//! one user's sockets are capped (oldest closed, or the new one refused with 429).

use serde_json::Value;
use switchboard::client::{ClientError, V2Session};
use switchboard::wamp::v2::Message;

use super::Proc;
use crate::helpers::*;

/// The HTTP status and JSON body of a refused upgrade.
fn refused(result: Result<V2Session, ClientError>) -> (u16, Value) {
    match result {
        Err(ClientError::Rejected { status, body }) => (status, serde_json::from_str(&body).unwrap_or(Value::Null)),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, got a session"),
    }
}

#[actix_web::test]
async fn a_full_node_refuses_upgrades_with_503_and_its_health_endpoints_still_answer() {
    let proc = Proc::start("[server]\nworkers = 1\nmax_connections = 20\n").await;
    let mut open = Vec::new();
    for _ in 0..20 {
        open.push(V2Session::connect(&proc.ws(), "realm1").await.unwrap());
    }
    let before = proc.metric("upgrades_refused_total").await;
    let (status, body) = refused(V2Session::connect(&proc.ws(), "realm1").await);
    assert_eq!(status, 503);
    assert!(body["error"].as_str().unwrap().contains("20 connections"), "{body}");
    assert_eq!(proc.metric("upgrades_refused_total").await, before + 1);
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let r = awc::Client::default().get(proc.http(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // A closed socket frees its place.
    open.pop().unwrap().socket.close().await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while V2Session::connect(&proc.ws(), "realm1").await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the freed place was never reused");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_users_sockets_beyond_the_cap_close_the_oldest_with_1008() {
    let proc = Proc::start("[server]\nworkers = 1\n[session]\nmax_sockets_per_user = 3\n").await;
    let cookie = proc.login("bob.smith").await;
    let headers = [("Cookie", cookie.as_str())];
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(V2Session::connect_with_headers(&proc.ws(), "realm1", &headers).await.unwrap());
    }
    // Anonymous sockets are each their own user: they never count against bob.
    let mut anonymous = Vec::new();
    for _ in 0..5 {
        anonymous.push(V2Session::connect(&proc.ws(), "realm1").await.unwrap());
    }
    let _fourth = V2Session::connect_with_headers(&proc.ws(), "realm1", &headers).await.unwrap();
    let oldest = &mut sockets[0];
    match oldest.next_message(WAIT).await.unwrap() {
        Message::Goodbye { reason, .. } => assert_eq!(reason, "switchboard.close.too_many_sockets"),
        other => panic!("expected GOODBYE, got {other:?}"),
    }
    assert_eq!(oldest.socket.expect_close(WAIT).await.unwrap().0, 1008);
    for kept in &mut sockets[1..] {
        kept.expect_no_event(QUIET).await.unwrap();
    }
}

#[actix_web::test]
async fn with_on_too_many_reject_the_extra_socket_gets_429() {
    let config = "[server]\nworkers = 1\n[session]\nmax_sockets_per_user = 2\non_too_many = \"reject\"\n";
    let proc = Proc::start(config).await;
    let cookie = proc.login("bob.smith").await;
    let headers = [("Cookie", cookie.as_str())];
    let _a = V2Session::connect_with_headers(&proc.ws(), "realm1", &headers).await.unwrap();
    let mut b = V2Session::connect_with_headers(&proc.ws(), "realm1", &headers).await.unwrap();
    let (status, body) = refused(V2Session::connect_with_headers(&proc.ws(), "realm1", &headers).await);
    assert_eq!(status, 429, "{body}");
    assert!(body["error"].as_str().unwrap().contains("max_sockets_per_user"), "{body}");
    b.socket.close().await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while V2Session::connect_with_headers(&proc.ws(), "realm1", &headers).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "bob could not reconnect after closing a socket");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
