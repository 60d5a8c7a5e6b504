//! WAMP v1 (`wamp`, Ratchet semantics) over real sockets, and v1/v2 interplay.

use serde_json::json;
use switchboard::client::{V1Session, V2Session};
use switchboard::wamp::v1::{Message, PublishTargets};

use crate::helpers::*;

fn publish(topic: &str, event: serde_json::Value, targets: PublishTargets) -> Message {
    Message::Publish { topic: topic.into(), event, targets }
}

#[actix_web::test]
async fn welcome_carries_a_string_session_id_and_version_1() {
    let app = spawn_app().await;
    let s = V1Session::connect(&app.ws_url()).await.unwrap();
    let id: u64 = s.id.parse().unwrap();
    assert!(app.node.clients().get_client(id).await.is_some());
}

#[actix_web::test]
async fn prefixed_subscribe_and_publish_deliver_events_with_full_uris() {
    let app = spawn_app().await;
    let mut a = V1Session::connect(&app.ws_url()).await.unwrap();
    let mut b = V1Session::connect(&app.ws_url()).await.unwrap();
    for s in [&mut a, &mut b] {
        s.send(&Message::Prefix { prefix: "event".into(), uri: "http://example.com/event#".into() }).await.unwrap();
    }
    a.send(&Message::Subscribe { topic: "event:news".into() }).await.unwrap();
    // The subscription is in place once a round trip on the same socket completes.
    a.call("wamp.session.count", vec![]).await.unwrap();
    b.send(&publish("event:news", json!({"x": 1}), PublishTargets::default())).await.unwrap();
    let (topic, event) = a.next_event(WAIT).await.unwrap();
    assert_eq!(topic, "http://example.com/event#news");
    assert_eq!(event, json!({"x": 1}));
}

#[actix_web::test]
async fn publish_without_a_4th_element_reaches_the_publisher_too_as_in_ratchet() {
    let app = spawn_app().await;
    let mut a = V1Session::connect(&app.ws_url()).await.unwrap();
    a.send(&Message::Subscribe { topic: "room".into() }).await.unwrap();
    a.call("wamp.session.count", vec![]).await.unwrap();
    a.socket.send_text(r#"[7,"room","self"]"#).await.unwrap();
    assert_eq!(a.next_event(WAIT).await.unwrap().1, json!("self"));
    a.socket.send_text(r#"[7,"room","not me",true]"#).await.unwrap();
    a.expect_no_event(QUIET).await.unwrap();
}

#[actix_web::test]
async fn exclude_and_eligible_lists_follow_ratchet() {
    let app = spawn_app().await;
    let url = app.ws_url();
    let mut a = V1Session::connect(&url).await.unwrap();
    let mut b = V1Session::connect(&url).await.unwrap();
    let mut p = V1Session::connect(&url).await.unwrap();
    for s in [&mut a, &mut b] {
        s.send(&Message::Subscribe { topic: "room".into() }).await.unwrap();
        s.call("wamp.session.count", vec![]).await.unwrap();
    }
    // exclude a by string id
    p.socket.send_text(format!(r#"[7,"room","e1",["{}"]]"#, a.id)).await.unwrap();
    assert_eq!(b.next_event(WAIT).await.unwrap().1, json!("e1"));
    a.expect_no_event(QUIET).await.unwrap();
    // eligible b only
    p.socket.send_text(format!(r#"[7,"room","e2",[],["{}"]]"#, b.id)).await.unwrap();
    assert_eq!(b.next_event(WAIT).await.unwrap().1, json!("e2"));
    a.expect_no_event(QUIET).await.unwrap();
    // empty eligible = everyone (Ratchet), not nobody (2012 spec)
    p.socket.send_text(r#"[7,"room","e3",[],[]]"#).await.unwrap();
    assert_eq!(a.next_event(WAIT).await.unwrap().1, json!("e3"));
    assert_eq!(b.next_event(WAIT).await.unwrap().1, json!("e3"));
}

#[actix_web::test]
async fn v1_and_v2_subscribers_receive_publishes_from_either_protocol() {
    let app = spawn_app().await;
    let mut one = V1Session::connect(&app.ws_url()).await.unwrap();
    let mut two = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    one.send(&Message::Subscribe { topic: "chat/lobby".into() }).await.unwrap();
    one.call("wamp.session.count", vec![]).await.unwrap();
    two.subscribe("chat/lobby").await.unwrap();

    one.send(&publish("chat/lobby", json!("from v1"), PublishTargets::default())).await.unwrap();
    assert_eq!(two.next_event(WAIT).await.unwrap().3, vec![json!("from v1")]);
    assert_eq!(one.next_event(WAIT).await.unwrap().1, json!("from v1"));

    two.publish_acked("chat/lobby", dict(json!({})), vec![json!("from v2")]).await.unwrap();
    assert_eq!(one.next_event(WAIT).await.unwrap(), ("chat/lobby".to_string(), json!("from v2")));
    two.expect_no_event(QUIET).await.unwrap();
}

#[actix_web::test]
async fn call_results_and_errors() {
    let app = spawn_app().await;
    let mut s = V1Session::connect(&app.ws_url()).await.unwrap();
    assert_eq!(s.call("wamp.session.count", vec![]).await.unwrap(), json!(1));
    assert_eq!(wamp_error(s.call("http://example.com/api#missing", vec![]).await), "wamp.error.no_such_procedure");
    s.send(&Message::Prefix { prefix: "meta".into(), uri: "wamp.session.".into() }).await.unwrap();
    assert_eq!(s.call("meta:count", vec![]).await.unwrap(), json!(1));
}

#[actix_web::test]
async fn unsubscribe_stops_events() {
    let app = spawn_app().await;
    let mut s = V1Session::connect(&app.ws_url()).await.unwrap();
    let mut p = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    s.send(&Message::Subscribe { topic: "t.v1".into() }).await.unwrap();
    s.send(&Message::Unsubscribe { topic: "t.v1".into() }).await.unwrap();
    s.call("wamp.session.count", vec![]).await.unwrap();
    p.publish_acked("t.v1", dict(json!({})), vec![json!(1)]).await.unwrap();
    s.expect_no_event(QUIET).await.unwrap();
}

#[actix_web::test]
async fn forbidden_or_invalid_v1_subscribe_and_publish_are_dropped_and_counted() {
    let builder =
        switchboard::Switchboard::builder(test_settings()).access("admin.{x}", Some(&["admin"]), Some(&["admin"]));
    let app = spawn_with(builder).await;
    let mut s = V1Session::connect(&app.ws_url()).await.unwrap();
    let mut admin_feed = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    admin_feed.subscribe("open.topic").await.unwrap();
    s.send(&Message::Subscribe { topic: "admin.news".into() }).await.unwrap();
    s.send(&Message::Subscribe { topic: "bad uri".into() }).await.unwrap();
    s.send(&publish("admin.news", json!("x"), PublishTargets::default())).await.unwrap();
    s.call("wamp.session.count", vec![]).await.unwrap();
    app.node.clients().publish("admin.news", switchboard::Payload::single(json!("secret")), Default::default());
    s.expect_no_event(QUIET).await.unwrap();
    assert!(app.node.metrics().render().contains("switchboard_protocol_errors_total 3\n"));
    // The connection is still fully usable.
    s.send(&publish("open.topic", json!("still here"), PublishTargets::default())).await.unwrap();
    assert_eq!(admin_feed.next_event(WAIT).await.unwrap().3, vec![json!("still here")]);
}

/// Longest error text a test accepts for an answer that quotes client input (an excerpt plus the sentence).
const SHORT_ERROR: usize = 200;

fn wamp_error_message<T: std::fmt::Debug>(result: Result<T, switchboard::client::ClientError>) -> (String, String) {
    match result {
        Err(switchboard::client::ClientError::Wamp { error, message }) => (error, message),
        other => panic!("expected a WAMP error, got {other:?}"),
    }
}

#[actix_web::test]
async fn over_long_prefixes_are_refused_and_a_curie_call_gets_a_short_callerror() {
    let app = spawn_app().await;
    let mut s = V1Session::connect(&app.ws_url()).await.unwrap();
    let huge = format!("http://example.com/{}#", "x".repeat(64_000));
    for i in 0..256 {
        s.send(&Message::Prefix { prefix: format!("p{i}"), uri: huge.clone() }).await.unwrap();
    }
    // None of them was stored: the CURIE stays unexpanded and the error quotes 20 bytes, not 64 KB.
    let (error, message) = wamp_error_message(s.call("p0:missing/procedure", vec![]).await);
    assert_eq!(error, "wamp.error.no_such_procedure");
    assert!(message.len() < SHORT_ERROR, "{} bytes: {message}", message.len());
    let metrics = app.node.metrics().render();
    assert!(metrics.contains("switchboard_protocol_errors_total 256\n"), "each refusal is counted");
    // A prefix of the longest allowed URI still works, and an error quoting its expansion stays short.
    let longest = format!("http://example.com/{}#", "y".repeat(512 - 20));
    assert_eq!(longest.len(), 512);
    s.send(&Message::Prefix { prefix: "p".into(), uri: longest }).await.unwrap();
    let (error, message) = wamp_error_message(s.call("p:missing", vec![]).await);
    assert_eq!(error, "wamp.error.invalid_uri", "the expansion is longer than 512 bytes");
    assert!(message.len() < SHORT_ERROR && message.contains('…'), "{message}");
}

#[actix_web::test]
async fn errors_quote_only_an_excerpt_of_a_huge_uri() {
    let app = spawn_app().await;
    let huge = "h".repeat(60_000);
    let mut one = V1Session::connect(&app.ws_url()).await.unwrap();
    let (error, message) = wamp_error_message(one.call(&huge, vec![]).await);
    assert_eq!(error, "wamp.error.invalid_uri");
    assert!(message.len() < SHORT_ERROR, "{} bytes", message.len());
    let mut two = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    for result in [
        two.subscribe(&huge).await.map(|_| ()),
        two.publish_acked(&huge, dict(json!({})), vec![]).await.map(|_| ()),
        two.call(&huge, vec![], dict(json!({}))).await.map(|_| ()),
    ] {
        let (error, message) = wamp_error_message(result);
        assert_eq!(error, "wamp.error.invalid_uri");
        assert!(message.len() < SHORT_ERROR, "{} bytes", message.len());
    }
}
