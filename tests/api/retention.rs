//! Event retention (WAMP advanced profile): PUBLISH `retain: true`, SUBSCRIBE `get_retained: true`.

use serde_json::json;
use switchboard::client::{ClientError, V2Session};
use switchboard::Switchboard;

use crate::helpers::*;

fn refused<T: std::fmt::Debug>(r: Result<T, ClientError>) -> String {
    match r {
        Err(ClientError::Wamp { error, .. }) => error,
        other => panic!("not refused: {other:?}"),
    }
}

fn retained() -> serde_json::Map<String, serde_json::Value> {
    dict(json!({"get_retained": true}))
}

#[actix_web::test]
async fn a_later_subscriber_gets_the_last_retained_event_first_and_only_if_admitted() {
    let app = spawn_app().await;
    let mut alice = connect_as(&app, "alice").await;
    let retain = || dict(json!({"retain": true}));
    alice.publish_acked("news.flash", retain(), vec![json!("first")]).await.unwrap();
    alice.publish_acked("news.flash", retain(), vec![json!("second")]).await.unwrap();
    alice.publish_acked("news.flash", dict(json!({})), vec![json!("not retained")]).await.unwrap();

    let mut bob = connect_as(&app, "bob").await;
    let subscription = bob.subscribe_with("news.flash", retained()).await.unwrap();
    alice.publish_acked("news.flash", dict(json!({})), vec![json!("live")]).await.unwrap();
    let (id, _, details, args) = bob.next_event(WAIT).await.unwrap();
    assert_eq!((id, args, details.get("retained")), (subscription, vec![json!("second")], Some(&json!(true))));
    let (_, _, details, args) = bob.next_event(WAIT).await.unwrap();
    assert_eq!((args, details.get("retained")), (vec![json!("live")], None), "then live events");

    // Without get_retained, nothing from before the subscription.
    let mut carol = connect_as(&app, "carol").await;
    carol.subscribe("news.flash").await.unwrap();
    carol.expect_no_event(QUIET).await.unwrap();

    // The retained event keeps its filters: only bob may see this one.
    let private = dict(json!({"retain": true, "eligible_authid": ["bob"]}));
    alice.publish_acked("news.private", private, vec![json!("for bob")]).await.unwrap();
    carol.subscribe_with("news.private", retained()).await.unwrap();
    carol.expect_no_event(QUIET).await.unwrap();
    bob.subscribe_with("news.private", retained()).await.unwrap();
    assert_eq!(bob.next_event(WAIT).await.unwrap().3, vec![json!("for bob")]);

    // Subscribing again to a subscription held already delivers it again.
    bob.subscribe_with("news.flash", retained()).await.unwrap();
    assert_eq!(bob.next_event(WAIT).await.unwrap().3, vec![json!("second")]);
}

#[actix_web::test]
async fn retain_is_refused_to_anonymous_and_get_retained_to_patterns() {
    let app = spawn_app().await;
    let mut anonymous = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let retain = dict(json!({"retain": true}));
    assert_eq!(
        refused(anonymous.publish_acked("news.flash", retain, vec![json!(1)]).await),
        "wamp.error.not_authorized"
    );
    let bad = dict(json!({"retain": "yes"}));
    assert_eq!(refused(anonymous.publish_acked("news.flash", bad, vec![]).await), "wamp.error.invalid_argument");
    let pattern = dict(json!({"match": "prefix", "get_retained": true}));
    assert_eq!(refused(anonymous.subscribe_with("news.", pattern).await), "wamp.error.invalid_argument");
    // Anonymous subscribers may still receive what a permitted role retained.
    let mut alice = connect_as(&app, "alice").await;
    alice.publish_acked("news.open", dict(json!({"retain": true})), vec![json!("hello")]).await.unwrap();
    anonymous.subscribe_with("news.open", retained()).await.unwrap();
    assert_eq!(anonymous.next_event(WAIT).await.unwrap().3, vec![json!("hello")]);
}

#[actix_web::test]
async fn a_retained_event_expires_after_the_ttl() {
    let mut settings = test_settings();
    settings.retention.ttl = std::time::Duration::from_millis(300);
    let app = spawn_with(Switchboard::builder(settings)).await;
    let mut alice = connect_as(&app, "alice").await;
    alice.publish_acked("news.flash", dict(json!({"retain": true})), vec![json!("soon gone")]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut bob = connect_as(&app, "bob").await;
    bob.subscribe_with("news.flash", retained()).await.unwrap();
    bob.expect_no_event(QUIET).await.unwrap();
}
