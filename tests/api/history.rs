//! Event history (WAMP advanced profile): `[[history]]` rules and `wamp.subscription.get_events`.

use serde_json::{json, Value};
use switchboard::client::{ClientError, V2Session};
use switchboard::config::HistorySettings;
use switchboard::Switchboard;

use crate::helpers::*;

/// A node keeping the last 3 events of `chat.{room}` topics.
async fn node() -> TestApp {
    let mut settings = test_settings();
    settings.history =
        vec![HistorySettings { pattern: "chat.{room}".into(), size: 3, ttl: std::time::Duration::from_secs(3600) }];
    spawn_with(Switchboard::builder(settings)).await
}

async fn get_events(s: &mut V2Session, subscription: u64, options: Value) -> Result<Vec<Value>, ClientError> {
    let (args, _) =
        s.call("wamp.subscription.get_events", vec![json!(subscription), options], Default::default()).await?;
    Ok(args[0].as_array().unwrap().clone())
}

fn texts(events: &[Value]) -> Vec<Value> {
    events.iter().map(|e| e["args"][0].clone()).collect()
}

#[actix_web::test]
async fn get_events_answers_the_kept_events_as_the_spec_shapes_them() {
    let app = node().await;
    let mut alice = connect_as(&app, "alice").await;
    let subscription = alice.subscribe("chat.lobby").await.unwrap();
    let mut bob = connect_as(&app, "bob").await;
    let mut ids = Vec::new();
    for i in 1..=5 {
        let options = dict(json!({"disclose_me": i == 5}));
        ids.push(bob.publish_acked("chat.lobby", options, vec![json!(format!("m{i}"))]).await.unwrap());
    }
    let events = get_events(&mut alice, subscription, json!({})).await.unwrap();
    assert_eq!(texts(&events), [json!("m3"), json!("m4"), json!("m5")], "the newest `size`, oldest first");
    let last = &events[2];
    assert_eq!((&last["subscription"], &last["publication"]), (&json!(subscription), &json!(ids[4])));
    assert_eq!(last["details"]["publisher_authid"], "bob", "disclosed as published");
    assert!(last["timestamp"].as_str().unwrap().ends_with('Z'), "{last}");
    assert_eq!(last["kwargs"], json!({}));
    assert_eq!(events[0]["details"], json!({}), "not disclosed");

    let reversed = get_events(&mut alice, subscription, json!({"reverse": true, "limit": 2})).await.unwrap();
    assert_eq!(texts(&reversed), [json!("m5"), json!("m4")]);
    let after = get_events(&mut alice, subscription, json!({"after_publication": ids[2]})).await.unwrap();
    assert_eq!(texts(&after), [json!("m4"), json!("m5")]);
    let limited = get_events(&mut alice, subscription, json!({"limit": 1})).await.unwrap();
    assert_eq!(texts(&limited), [json!("m5")], "limit keeps the newest");
    let bad = get_events(&mut alice, subscription, json!({"limit": "x"})).await.unwrap_err();
    assert!(matches!(bad, ClientError::Wamp { ref error, .. } if error == "wamp.error.invalid_argument"), "{bad:?}");

    // A topic no rule covers keeps nothing.
    let other = alice.subscribe("news.lobby").await.unwrap();
    bob.publish_acked("news.lobby", dict(json!({})), vec![json!("x")]).await.unwrap();
    assert!(get_events(&mut alice, other, json!({})).await.unwrap().is_empty());
}

#[actix_web::test]
async fn filtered_events_are_shown_only_to_their_audience_and_session_filtered_ones_are_not_kept() {
    let app = node().await;
    let mut alice = connect_as(&app, "alice").await;
    let mut carol = connect_as(&app, "carol").await;
    let subscription = alice.subscribe("chat.private").await.unwrap();
    assert_eq!(carol.subscribe("chat.private").await.unwrap(), subscription);
    let mut bob = connect_as(&app, "bob").await;
    bob.publish_acked("chat.private", dict(json!({"eligible_authid": ["alice"]})), vec![json!("for alice")])
        .await
        .unwrap();
    bob.publish_acked("chat.private", dict(json!({"eligible": [carol.id]})), vec![json!("by session")]).await.unwrap();
    bob.publish_acked("chat.private", dict(json!({"exclude": [carol.id]})), vec![json!("not carol")]).await.unwrap();
    assert_eq!(texts(&get_events(&mut alice, subscription, json!({})).await.unwrap()), [json!("for alice")]);
    assert!(get_events(&mut carol, subscription, json!({})).await.unwrap().is_empty(), "none is hers to see");
    // Anonymous callers are outside meta.roles.
    let mut anonymous = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    match get_events(&mut anonymous, subscription, json!({})).await {
        Err(ClientError::Wamp { error, .. }) => assert_eq!(error, "wamp.error.not_authorized"),
        other => panic!("{other:?}"),
    }
}

#[actix_web::test]
async fn resume_after_replays_what_was_missed_then_live_and_flags_a_gap() {
    let app = node().await;
    let mut bob = connect_as(&app, "bob").await;
    let mut ids = Vec::new();
    for i in 1..=3 {
        ids.push(bob.publish_acked("chat.resume", dict(json!({})), vec![json!(i)]).await.unwrap());
    }
    let mut alice = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let subscription = alice.subscribe_with("chat.resume", dict(json!({"resume_after": ids[0]}))).await.unwrap();
    bob.publish_acked("chat.resume", dict(json!({})), vec![json!(4)]).await.unwrap();
    for expected in [2, 3] {
        let (id, _, details, args) = alice.next_event(WAIT).await.unwrap();
        assert_eq!((id, args), (subscription, vec![json!(expected)]));
        assert_eq!((details.get("replayed"), details.get("history_gap")), (Some(&json!(true)), None));
    }
    let (_, _, details, args) = alice.next_event(WAIT).await.unwrap();
    assert_eq!((args, details.get("replayed")), (vec![json!(4)], None), "then live");
    alice.expect_no_event(QUIET).await.unwrap();

    // A publication no longer kept (size 3: 1 is gone): everything kept comes, the first flagged.
    let mut carol = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    carol.subscribe_with("chat.resume", dict(json!({"resume_after": ids[0]}))).await.unwrap();
    let (_, _, details, args) = carol.next_event(WAIT).await.unwrap();
    assert_eq!((args, details.get("history_gap")), (vec![json!(2)], Some(&json!(true))));
    assert_eq!(carol.next_event(WAIT).await.unwrap().3, vec![json!(3)]);
    assert_eq!(carol.next_event(WAIT).await.unwrap().3, vec![json!(4)]);
    carol.expect_no_event(QUIET).await.unwrap();
}

#[actix_web::test]
async fn resume_after_is_refused_where_nothing_is_kept_or_with_patterns_or_get_retained() {
    let app = node().await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    for (topic, options) in [
        ("news.lobby", json!({"resume_after": 1})),
        ("chat.", json!({"resume_after": 1, "match": "prefix"})),
        ("chat.lobby", json!({"resume_after": 1, "get_retained": true})),
        ("chat.lobby", json!({"resume_after": "x"})),
    ] {
        match s.subscribe_with(topic, dict(options.clone())).await {
            Err(ClientError::Wamp { error, .. }) => assert_eq!(error, "wamp.error.invalid_argument", "{options}"),
            other => panic!("{options}: {other:?}"),
        }
    }
}

#[actix_web::test]
async fn the_demo_rooms_keep_their_recent_history_for_the_page_to_show() {
    let mut settings = test_settings();
    settings.server.demo = Some(true);
    let app = spawn_with(Switchboard::builder(settings)).await;
    let mut alice = connect_as(&app, "alice").await;
    for text in ["one", "two"] {
        alice.publish_acked("demo.room.lobby", dict(json!({})), vec![json!(text)]).await.unwrap();
    }
    // What the page does on its first load: resume after an id never published.
    let mut bob = connect_as(&app, "bob").await;
    bob.subscribe_with("demo.room.lobby", dict(json!({"resume_after": 1}))).await.unwrap();
    let (_, _, details, args) = bob.next_event(WAIT).await.unwrap();
    assert_eq!((args, details.get("history_gap")), (vec![json!("one")], Some(&json!(true))));
    assert_eq!(bob.next_event(WAIT).await.unwrap().3, vec![json!("two")]);
}
