//! Issue #9, row "60 connections × 1,024 wildcard subscriptions": every publish slowed 100×, and a fresh
//! SUBSCRIBE blocked ~5 s after they disconnected (patterns scanned per publication and removed with
//! `Vec::retain`, O(n²) for a mass disconnect). Patterns now live in an index with O(URI length) insertion and
//! removal; a session may hold at most `websocket.max_pattern_subscriptions` of them (raised here to mount the
//! attack).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;
use switchboard::client::V2Session;
use switchboard::wamp::v2::Message;

use super::Proc;
use crate::helpers::{dict, WAIT};

const CONNECTIONS: usize = 60;
const PATTERNS_EACH: usize = 1024;

/// Generous for a loaded 2-core machine running a debug build (measured 0.9–1.3 s there); the quadratic
/// removal took ~5 s in release and more than 5 s in debug.
const PROMPT: Duration = Duration::from_secs(4);

/// Subscribes `session` to `PATTERNS_EACH` distinct wildcard patterns, pipelined, and waits for every SUBSCRIBED.
async fn subscribe_patterns(session: &mut V2Session, connection: usize) {
    for i in 0..PATTERNS_EACH {
        let topic = format!("game.c{connection}.p{i}..update");
        let options = dict(json!({"match": "wildcard"}));
        let request = (i + 1) as u64;
        session.send(&Message::Subscribe { request, options, topic }).await.unwrap();
    }
    let mut answered = 0;
    while answered < PATTERNS_EACH {
        match session.next_message(WAIT * 4).await.unwrap() {
            Message::Subscribed { .. } => answered += 1,
            other => panic!("expected SUBSCRIBED, got {other:?}"),
        }
    }
}

#[actix_web::test]
async fn a_fresh_subscribe_after_60_connections_with_1024_patterns_each_disconnect_answers_promptly() {
    let node = Proc::start("[websocket]\nmax_pattern_subscriptions = 1024\n").await;
    let url = node.ws();
    let connected = join_all((0..CONNECTIONS).map(|_| V2Session::connect(&url, "r"))).await;
    let mut attackers: Vec<V2Session> = connected.into_iter().map(Result::unwrap).collect();
    join_all(attackers.iter_mut().enumerate().map(|(c, s)| subscribe_patterns(s, c))).await;
    assert_eq!(node.metric("topics").await, (CONNECTIONS * PATTERNS_EACH) as u64);

    // With every pattern present, an unrelated publish still reaches its subscriber.
    let mut subscriber = V2Session::connect(&node.ws(), "r").await.unwrap();
    subscriber.subscribe("chat.lobby").await.unwrap();
    let mut publisher = V2Session::connect(&node.ws(), "r").await.unwrap();
    publisher.publish_acked("chat.lobby", dict(json!({})), vec![json!("hi")]).await.unwrap();
    subscriber.next_event(WAIT).await.unwrap();

    // All attackers vanish at once; once their sessions are gone, their 61,440 removals are queued at the
    // broker ahead of anything a new client sends.
    drop(attackers);
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.metric("sessions").await > 2 {
        assert!(Instant::now() < deadline, "the attackers' sessions never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut fresh = V2Session::connect(&node.ws(), "r").await.unwrap();
    let started = Instant::now();
    let subscribed = tokio::time::timeout(PROMPT, fresh.subscribe_with("game..x", dict(json!({"match": "wildcard"}))));
    subscribed.await.expect("SUBSCRIBE answered within the bound").unwrap();
    eprintln!("fresh SUBSCRIBE after the mass disconnect answered in {:?}", started.elapsed());
    publisher.publish_acked("chat.lobby", dict(json!({})), vec![json!("still")]).await.unwrap();
    subscriber.next_event(WAIT).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.metric("topics").await > 2 {
        assert!(Instant::now() < deadline, "the attackers' topics were never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
