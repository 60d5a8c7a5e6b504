//! Clients that subscribe and never read: bounded in bytes (`websocket.outbound_bytes`) and in time
//! (`websocket.write_timeout`), while a well-behaved subscriber of the same topic loses nothing.

use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::client::V2Session;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use super::frames::client_frame;
use super::Proc;
use crate::helpers::*;

/// Subscribes to `topic` over a raw socket with a small receive buffer, then never reads.
async fn non_reader(proc: &Proc, topic: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(proc.addr().parse().unwrap()).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: wamp.2.json\r\n\r\n",
        proc.addr()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(&client_frame(0x81, br#"[1,"realm1",{"roles":{"subscriber":{}}}]"#)).await.unwrap();
    stream.write_all(&client_frame(0x81, format!(r#"[32,1,{{}},"{topic}"]"#).as_bytes())).await.unwrap();
    stream
}

#[actix_web::test]
async fn clients_that_never_read_are_closed_within_the_write_timeout_and_their_memory_returns() {
    let write_timeout = Duration::from_secs(2);
    // The publisher is trusted here (66 MB in a few seconds): its byte rate limit is lifted.
    let config = "[server]\nworkers = 1\n[websocket]\nwrite_timeout = \"2s\"\ninbound_bytes_rate = 1073741824\n";
    let proc = Proc::start(config).await;
    let mut good = V2Session::connect(&proc.ws(), "realm1").await.unwrap();
    good.subscribe("feed").await.unwrap();
    let mut stuck = Vec::new();
    for _ in 0..10 {
        stuck.push(non_reader(&proc, "feed").await);
    }
    let mut publisher = V2Session::connect(&proc.ws(), "realm1").await.unwrap();
    // Let the ten subscriptions land before the traffic starts.
    tokio::time::sleep(QUIET).await;
    let baseline = proc.rss_kib();

    let payload = "x".repeat(60_000);
    let mut peak = baseline;
    for i in 0..1100 {
        publisher.publish("feed", dict(json!({})), vec![json!(i), json!(payload)]).await.unwrap();
        // The well-behaved subscriber reads each one before the next is sent: it never falls behind.
        let (_, _, _, args) = good.next_event(WAIT).await.unwrap();
        assert_eq!(args[0], json!(i), "the well-behaved subscriber gets every event, in order");
        if i % 100 == 0 {
            peak = peak.max(proc.rss_kib());
        }
    }
    let grown = peak.saturating_sub(baseline);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB for 10 non-reading clients (660 MB were published)");

    // Within write_timeout + 5 s the non-readers are gone and their memory with them.
    let deadline = Instant::now() + write_timeout + Duration::from_secs(5);
    loop {
        let connections = proc.metric("connections").await;
        let rss = proc.rss_kib();
        if connections == 2 && rss.saturating_sub(baseline) < 16 * 1024 {
            eprintln!("slow consumers: baseline {baseline} KiB, peak +{grown} KiB, after close {rss} KiB");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{connections} connections, RSS {rss} KiB vs baseline {baseline} KiB after the write timeout"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(proc.metric("drops_slow_consumer_total").await > 0);
    // Their actors could not run while their writes waited: the writer shut them, and they are counted so.
    let stalled = proc.metric(r#"connections_closed_total{reason="write_timeout"}"#).await;
    let overflowed = proc.metric(r#"connections_closed_total{reason="slow_consumer"}"#).await;
    assert!(stalled > 0 && stalled + overflowed == 10, "{stalled} write timeouts, {overflowed} slow consumers");
    // The node and the good subscriber carry on.
    publisher.publish("feed", dict(json!({})), vec![json!("after")]).await.unwrap();
    assert_eq!(good.next_event(WAIT).await.unwrap().3, vec![json!("after")]);
    drop(stuck);
}
