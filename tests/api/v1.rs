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
