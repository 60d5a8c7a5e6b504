//! Access rules fail closed: `{username}` is the caller's whole authid, a topic under a rule's literal prefix
//! without its shape is denied, `[access_policy] default` covers the rest, and pattern subscriptions never
//! deliver a topic their subscriber could not subscribe to exactly.

use serde_json::json;
use switchboard::client::V2Session;
use switchboard::config::DefaultAccess;
use switchboard::{Payload, Switchboard};

use crate::helpers::*;

/// Publishes from the server and waits until it is delivered on this node.
async fn server_publish(app: &TestApp, topic: &str, value: serde_json::Value) {
    app.node.clients().publish_confirmed(topic, Payload::single(value), Default::default()).await.unwrap();
}

fn private_topics() -> switchboard::Builder {
    Switchboard::builder(test_settings()).access("private/{username}", Some(&["anonymous", "user"]), Some(&[]))
}

#[actix_web::test]
async fn an_anonymous_client_cannot_subscribe_to_or_publish_on_bob_smiths_private_topic() {
    let app = spawn_with(private_topics()).await;
    let cookie = login(&app, "bob.smith").await;
    let mut bob = V2Session::connect_with_headers(&app.ws_url(), "r", &[("Cookie", &cookie)]).await.unwrap();
    assert_eq!(bob.authid(), "bob.smith");
    bob.subscribe("private/bob.smith").await.unwrap();

    let mut anon = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    assert_eq!(wamp_error(anon.subscribe("private/bob.smith").await), "wamp.error.not_authorized");
    let forged = anon.publish_acked("private/bob.smith", dict(json!({})), vec![json!("forged")]).await;
    assert_eq!(wamp_error(forged), "wamp.error.not_authorized");
    // Nor through patterns that match the topic: subscribing succeeds, delivery does not.
    anon.subscribe_with("private/", dict(json!({"match": "prefix"}))).await.unwrap();
    anon.subscribe_with(".smith", dict(json!({"match": "wildcard"}))).await.unwrap();

    server_publish(&app, "private/bob.smith", json!("for bob")).await;
    assert_eq!(bob.next_event(WAIT).await.unwrap().3, vec![json!("for bob")]);
    bob.expect_no_event(QUIET).await.unwrap();
    anon.expect_no_event(QUIET).await.unwrap();
    // Bob's own topic has his shape; a deeper one does not and is denied to him too.
    assert_eq!(wamp_error(bob.subscribe("private/bob.smith/x").await), "wamp.error.not_authorized");
}

#[actix_web::test]
async fn a_topic_under_a_rules_literal_prefix_but_not_its_shape_is_denied() {
    let builder = Switchboard::builder(test_settings()).access("admin.{channel}", Some(&["admin"]), Some(&["admin"]));
    let app = spawn_with(builder).await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    for topic in ["admin.news", "admin.news.eu"] {
        assert_eq!(wamp_error(s.subscribe(topic).await), "wamp.error.not_authorized", "{topic}");
        let published = s.publish_acked(topic, dict(json!({})), vec![]).await;
        assert_eq!(wamp_error(published), "wamp.error.not_authorized", "{topic}");
    }
    s.subscribe("administrators").await.unwrap();
    s.subscribe_with("admin.", dict(json!({"match": "prefix"}))).await.unwrap();
    server_publish(&app, "admin.news.eu", json!("secret")).await;
    s.expect_no_event(QUIET).await.unwrap();
}

fn deny_by_default() -> switchboard::Builder {
    let mut settings = test_settings();
    settings.access_policy.default = DefaultAccess::Deny;
    Switchboard::builder(settings)
}

#[actix_web::test]
async fn default_deny_refuses_every_topic_no_rule_allows() {
    let app = spawn_with(deny_by_default().access("open.{topic}", None, None)).await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    assert_eq!(wamp_error(s.subscribe("chat/lobby").await), "wamp.error.not_authorized");
    assert_eq!(wamp_error(s.publish_acked("chat/lobby", dict(json!({})), vec![]).await), "wamp.error.not_authorized");
    s.subscribe("open.news").await.unwrap();
    s.publish_acked("open.news", dict(json!({"exclude_me": false})), vec![json!(1)]).await.unwrap();
    assert_eq!(s.next_event(WAIT).await.unwrap().3, vec![json!(1)]);
}

#[actix_web::test]
async fn with_no_rules_and_default_deny_a_pattern_subscription_delivers_nothing() {
    let app = spawn_with(deny_by_default()).await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    s.subscribe_with("chat", dict(json!({"match": "prefix"}))).await.unwrap();
    s.subscribe_with("chat.", dict(json!({"match": "wildcard"}))).await.unwrap();
    server_publish(&app, "chat.lobby", json!("nobody may read this")).await;
    s.expect_no_event(QUIET).await.unwrap();
}

#[actix_web::test]
async fn a_pattern_subscription_delivers_only_the_topics_its_subscriber_may_subscribe_to() {
    let app = spawn_with(deny_by_default().access("open.{topic}", None, None)).await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    s.subscribe_with("o", dict(json!({"match": "prefix"}))).await.unwrap();
    for topic in ["other.x", "open.a.b", "open.news"] {
        server_publish(&app, topic, json!(topic)).await;
    }
    let (_, _, details, args) = s.next_event(WAIT).await.unwrap();
    assert_eq!((details["topic"].as_str(), args), (Some("open.news"), vec![json!("open.news")]));
    s.expect_no_event(QUIET).await.unwrap();
}
