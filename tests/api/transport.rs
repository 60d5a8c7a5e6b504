//! The socket layer: the ready server runs accepted WebSockets outside actix-http's HTTP/1 dispatcher, while an app
//! that mounts `Switchboard::configure()` in its own `HttpServer` keeps the actix-web-actors path. Both must
//! behave the same, and the ready server must not lose bytes or answers at the hand-over.

use serde_json::json;
use switchboard::client::{Socket, V2Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::hostile::frames::client_frame;

/// Reads from `stream` until `needle` has been seen or `WAIT` passes; returns everything read.
async fn read_until(stream: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("timed out; read so far: {}", String::from_utf8_lossy(&seen)))
            .unwrap();
        assert!(n > 0, "connection closed; read: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    seen
}

#[actix_web::test]
async fn a_frame_sent_together_with_the_handshake_is_not_lost() {
    let app = spawn_app().await;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let mut bytes = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Protocol: wamp.2.json\r\n\r\n"
        .to_vec();
    bytes.extend(client_frame(0x81, br#"[1,"realm1",{"roles":{"subscriber":{}}}]"#));
    // One write: the HELLO arrives in the same segment as the request head.
    stream.write_all(&bytes).await.unwrap();
    let seen = read_until(&mut stream, b"authid").await;
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(text.contains("[2,"), "WELCOME expected: {text}");
}

/// Sends a WebSocket upgrade request for `path` and reads until the server closes.
async fn upgrade_elsewhere(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response)).await.expect("the server closes").unwrap();
    String::from_utf8_lossy(&response).to_lowercase()
}

#[actix_web::test]
async fn a_websocket_upgrade_to_another_path_gets_that_paths_answer_and_a_close() {
    let app = spawn_app().await;
    let text = upgrade_elsewhere(app.port, "/health/live").await;
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(text.ends_with(r#"{"status":"ok"}"#), "{text}");
    let text = upgrade_elsewhere(app.port, "/nowhere").await;
    assert!(text.starts_with("http/1.1 404"), "{text}");
}

#[actix_web::test]
async fn a_refused_upgrade_gets_its_json_error_and_a_close() {
    let app = spawn_app().await;
    match Socket::connect(&app.ws_url(), &["mqtt"], &[]).await {
        Err(switchboard::client::ClientError::Rejected { status, body }) => {
            assert_eq!(status, 400);
            assert!(body.contains("wamp.2.json"), "{body}");
        }
        other => panic!("expected 400, got {:?}", other.map(|_| ())),
    }
}

#[actix_web::test]
async fn sockets_behave_the_same_when_mounted_in_an_own_http_server() {
    let mut settings = test_settings();
    settings.websocket.max_message_size = 4096;
    let (addr, handle) = spawn_mounted(settings).await;
    let url = format!("ws://{addr}/ws");

    let mut alice = V2Session::connect(&url, "realm1").await.unwrap();
    let subscription = alice.subscribe("com.example.news").await.unwrap();
    let mut bob = V2Session::connect(&url, "realm1").await.unwrap();
    bob.publish("com.example.news", dict(json!({})), vec![json!("hello")]).await.unwrap();
    let (sub, _, _, args) = alice.next_event(WAIT).await.unwrap();
    assert_eq!((sub, args), (subscription, vec![json!("hello")]));

    // The message size limit applies on this path too.
    bob.socket.send_text("x".repeat(5000)).await.unwrap();
    assert_eq!(bob.socket.expect_close(WAIT).await.unwrap().0, 1009);
    handle.stop(false).await;
}

/// A subscriber that does not read while megabytes of events queue up: the sockets' buffers fill, so the
/// worker's flush writes part of a frame and leaves the rest to the socket's task, which must finish it before
/// anything else — further events and the connection's own replies (a CALL's RESULT here). Every frame then
/// arrives whole and in order.
#[actix_web::test]
async fn a_reader_that_falls_behind_gets_every_frame_whole_and_in_order() {
    let mut settings = test_settings();
    settings.websocket.outbound_bytes = 64 * 1024 * 1024;
    let app = spawn_with(switchboard::Switchboard::builder(settings)).await;
    let mut slow = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let subscription = slow.subscribe("t.bulk").await.unwrap();
    let mut publisher = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    // 7 MB: far more than the sockets' buffers hold, less than one publisher's share of the node's backlog.
    const EVENTS: usize = 120;
    let body = "y".repeat(60 * 1024);
    for n in 0..EVENTS {
        publisher.publish_acked("t.bulk", dict(json!({})), vec![json!(n), json!(body)]).await.unwrap();
        if n == EVENTS / 2 {
            // The reply to this call is written by the connection itself, behind the half-written events.
            let call = switchboard::wamp::v2::Message::Call {
                request: 7,
                options: dict(json!({})),
                procedure: "wamp.session.count".into(),
                args: None,
                kwargs: None,
            };
            slow.send(&call).await.unwrap();
        }
    }
    // Megabytes queued behind a socket nobody read: now read it all.
    let (mut next, mut result) = (0, false);
    while next < EVENTS || !result {
        match slow.next_message(WAIT).await.unwrap() {
            switchboard::wamp::v2::Message::Event { subscription: s, args: Some(args), .. } => {
                assert_eq!(s, subscription);
                assert_eq!(args[0], json!(next), "events arrive in order");
                assert_eq!(args[1].as_str().map(str::len), Some(body.len()), "and whole");
                next += 1;
            }
            switchboard::wamp::v2::Message::Result { request: 7, .. } => result = true,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Checks that `message` is event number `*next` of `subscription`, whole; counts it.
fn take_event(message: switchboard::wamp::v2::Message, subscription: u64, next: &mut usize, body: &str) {
    match message {
        switchboard::wamp::v2::Message::Event { subscription: s, args: Some(args), .. } => {
            assert_eq!(s, subscription);
            assert_eq!(args[0], json!(*next), "events arrive in order");
            assert_eq!(args[1].as_str().map(str::len), Some(body.len()), "and whole");
            *next += 1;
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// With several workers each gets its own list of a fan-out's queues and writes its sockets on its own thread.
/// Subscribers spread over four workers (connections are dealt to workers in turn) — one of them not reading
/// until the end, so flushes write parts of frames and leave the rest to its task — each get every event, whole
/// and in order.
#[actix_web::test]
async fn events_reach_sockets_on_every_worker_whole_and_in_order() {
    let mut settings = test_settings();
    settings.server.workers = 4;
    settings.websocket.outbound_bytes = 64 * 1024 * 1024;
    let app = spawn_with(switchboard::Switchboard::builder(settings)).await;
    // (session, subscription, events taken so far)
    let mut subscribers = Vec::new();
    for _ in 0..8 {
        let mut session = V2Session::connect(&app.ws_url(), "r").await.unwrap();
        let subscription = session.subscribe("t.spread").await.unwrap();
        subscribers.push((session, subscription, 0));
    }
    let mut publisher = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    const EVENTS: usize = 60;
    let body = "z".repeat(40 * 1024);
    for n in 0..EVENTS {
        publisher.publish_acked("t.spread", dict(json!({})), vec![json!(n), json!(body)]).await.unwrap();
        // All but the last subscriber read as they go; the last one only once everything was published.
        for (session, subscription, next) in subscribers.iter_mut().take(7) {
            while let Ok(message) = session.next_message(std::time::Duration::from_millis(2)).await {
                take_event(message, *subscription, next, &body);
            }
        }
    }
    for (session, subscription, next) in &mut subscribers {
        while *next < EVENTS {
            let message = session.next_message(WAIT).await.unwrap();
            take_event(message, *subscription, next, &body);
        }
    }
}
