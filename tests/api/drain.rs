//! Graceful drain of a real node process: on SIGTERM `/health/ready` turns 503 first, then the sockets are
//! closed in batches spread over `server.drain_period` (no reconnect storm), and the process exits 0.

use std::time::{Duration, Instant};

use switchboard::client::{Frame, Socket, V2Session};
use switchboard::wamp::v2::Message;

use crate::hostile::Proc;

/// The drain period the node is configured with.
const DRAIN: Duration = Duration::from_secs(2);
/// How long readiness answers 503 before the listener closes (`switchboard::drain::READY_NOTICE`).
const READY_NOTICE: Duration = switchboard::drain::READY_NOTICE;
/// Sockets held while the node drains: WAMP v2 sessions, then v1 ones.
const V2_SOCKETS: usize = 30;
const V1_SOCKETS: usize = 10;
/// Bound on waiting for one socket's close: the ready notice, the drain period and room for a loaded machine.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// How far apart the first and the last close must be, at least (half the period: robust under load).
const MIN_SPREAD: Duration = Duration::from_secs(1);
/// No window this long may hold more than a quarter of the closes.
const WINDOW: Duration = Duration::from_millis(200);
/// Time after SIGTERM the process may take to exit: ready notice (1 s) + drain period + flushing + margin.
const EXIT_BOUND: Duration = Duration::from_secs(7);

/// What one client saw when the node closed its socket.
struct Closed {
    at: Instant,
    code: u16,
    goodbye: Option<String>,
}

async fn v2_close(mut session: V2Session) -> Closed {
    let goodbye = match session.next_message(CLOSE_WAIT).await {
        Ok(Message::Goodbye { reason, .. }) => Some(reason),
        other => panic!("a v2 session expected GOODBYE, got {other:?}"),
    };
    let (code, _) = session.socket.expect_close(CLOSE_WAIT).await.expect("a close frame after GOODBYE");
    Closed { at: Instant::now(), code, goodbye }
}

async fn v1_close(mut socket: Socket) -> Closed {
    let (code, _) = socket.expect_close(CLOSE_WAIT).await.expect("a close frame");
    Closed { at: Instant::now(), code, goodbye: None }
}

#[actix_web::test]
async fn sigterm_turns_ready_503_first_then_closes_sockets_in_batches_over_the_drain_period() {
    let config =
        format!("[server]\nworkers = 1\ndrain_period = \"{}ms\"\nshutdown_timeout = \"6s\"\n", DRAIN.as_millis());
    let mut node = Proc::start(&config).await;
    let mut waiting = Vec::new();
    for _ in 0..V2_SOCKETS {
        let session = V2Session::connect(&node.ws(), "r").await.unwrap();
        waiting.push(actix_web::rt::spawn(v2_close(session)));
    }
    for _ in 0..V1_SOCKETS {
        let mut socket = Socket::connect(&node.ws(), &["wamp"], &[]).await.unwrap();
        assert!(matches!(socket.recv(CLOSE_WAIT).await.unwrap(), Frame::Text(t) if t.starts_with("[0,")));
        waiting.push(actix_web::rt::spawn(v1_close(socket)));
    }

    let signalled = Instant::now();
    node.terminate();
    let ready_503 = loop {
        let response = awc::Client::default().get(node.http("/health/ready")).send().await;
        let mut response = response.unwrap_or_else(|e| panic!("/health/ready unreachable before 503: {e}"));
        if response.status() == 503 {
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["status"], "draining", "{body}");
            break Instant::now();
        }
        assert!(signalled.elapsed() < CLOSE_WAIT, "/health/ready never turned 503");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    // Once the readiness notice is over the listener is closed: a new connection is refused at once (a load
    // balancer fails over) while the node still drains its open sessions.
    tokio::time::sleep_until((signalled + READY_NOTICE + Duration::from_millis(300)).into()).await;
    let refused = tokio::net::TcpStream::connect(node.addr()).await.expect_err("the listener is closed");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "{refused}");
    assert!(waiting.iter().any(|task| !task.is_finished()), "the node was still draining when it refused");

    let mut closes = Vec::new();
    for task in waiting {
        closes.push(task.await.expect("the client task completes"));
    }
    let status = node.wait_exit(EXIT_BOUND.saturating_sub(signalled.elapsed())).await;
    let status = status.unwrap_or_else(|| panic!("no exit within {EXIT_BOUND:?} of SIGTERM; log:\n{}", node.log()));
    assert!(status.success(), "exit status {status}; log:\n{}", node.log());

    for (i, closed) in closes.iter().enumerate() {
        assert_eq!(closed.code, 1001, "socket {i}");
        if i < V2_SOCKETS {
            assert_eq!(closed.goodbye.as_deref(), Some("wamp.close.system_shutdown"), "socket {i}");
        }
    }
    let mut at: Vec<Instant> = closes.iter().map(|c| c.at).collect();
    at.sort();
    let (first, last) = (at[0], at[at.len() - 1]);
    assert!(ready_503 < first, "a socket closed {:?} before /health/ready answered 503", ready_503 - first);
    assert!(last - first >= MIN_SPREAD, "closes spread over {:?} only", last - first);
    assert!(last - signalled < EXIT_BOUND, "last close {:?} after SIGTERM", last - signalled);
    let most_in_window = at.iter().map(|&start| at.iter().filter(|&&t| t >= start && t - start < WINDOW).count()).max();
    let limit = at.len() / 4;
    assert!(most_in_window.unwrap_or(0) <= limit, "{most_in_window:?} closes within {WINDOW:?} (limit {limit})");
}
