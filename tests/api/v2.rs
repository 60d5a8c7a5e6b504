//! WAMP v2 behaviour over real sockets.

use serde_json::json;
use switchboard::client::{ClientError, Socket, V2Session};

use crate::helpers::*;

#[actix_web::test]
async fn hello_gets_welcome_with_anonymous_identity_and_features() {
    let app = spawn_app().await;
    let s = V2Session::connect(&app.ws_url(), "realm1").await.unwrap();
    assert_eq!(s.authid(), format!("anon-{}", s.id));
    assert_eq!(s.authrole(), "anonymous");
    assert_eq!(s.details["authmethod"], "anonymous");
    assert_eq!(s.details["roles"]["broker"]["features"]["subscriber_blackwhite_listing"], true);
    assert_eq!(s.details["roles"]["broker"]["features"]["pattern_based_subscription"], true);
    assert!(s.id >= 1 && s.id <= 1 << 53);
}

#[actix_web::test]
async fn server_selects_wamp_2_json_when_offered_both() {
    let app = spawn_app().await;
    let socket = Socket::connect(&app.ws_url(), &["wamp", "wamp.2.json"], &[]).await.unwrap();
    assert_eq!(socket.protocol.as_deref(), Some("wamp.2.json"));
}

#[actix_web::test]
async fn client_offering_no_known_subprotocol_gets_400() {
    let app = spawn_app().await;
    for offer in [&["mqtt"][..], &[][..]] {
        match Socket::connect(&app.ws_url(), offer, &[]).await {
            Err(ClientError::Rejected { status, body }) => {
                assert_eq!(status, 400);
                assert!(body.contains("wamp.2.json"), "{body}");
            }
            other => panic!("expected a 400, got {:?}", other.map(|s| s.protocol)),
        }
    }
}

#[actix_web::test]
async fn subscriber_receives_publish_and_publisher_is_excluded_by_default() {
    let app = spawn_app().await;
    let mut sub = V2Session::connect(&app.ws_url(), "realm1").await.unwrap();
    let mut publisher = V2Session::connect(&app.ws_url(), "realm1").await.unwrap();
    let sid = sub.subscribe("com.example.news").await.unwrap();
    publisher.subscribe("com.example.news").await.unwrap();
    let pid = publisher.publish_acked("com.example.news", dict(json!({})), vec![json!("hello")]).await.unwrap();
    let (subscription, publication, details, args) = sub.next_event(WAIT).await.unwrap();
    assert_eq!((subscription, publication), (sid, pid));
    assert!(details.is_empty());
    assert_eq!(args, vec![json!("hello")]);
    publisher.expect_no_event(QUIET).await.unwrap();
}

#[actix_web::test]
async fn exclude_me_false_delivers_to_the_publisher() {
    let app = spawn_app().await;
    let mut s = V2Session::connect(&app.ws_url(), "realm1").await.unwrap();
    s.subscribe("t.echo").await.unwrap();
    s.publish_acked("t.echo", dict(json!({"exclude_me": false})), vec![json!(1)]).await.unwrap();
    assert_eq!(s.next_event(WAIT).await.unwrap().3, vec![json!(1)]);
}

#[actix_web::test]
async fn eligible_exclude_authid_and_authrole_filters_are_applied() {
    let app = spawn_app().await;
    let url = app.ws_url();
    let mut a = V2Session::connect(&url, "r").await.unwrap();
    let mut b = V2Session::connect(&url, "r").await.unwrap();
    let mut c = V2Session::connect(&url, "r").await.unwrap();
    let mut p = V2Session::connect(&url, "r").await.unwrap();
    for s in [&mut a, &mut b, &mut c] {
        s.subscribe("t.filters").await.unwrap();
    }
    p.publish_acked("t.filters", dict(json!({"eligible": [a.id, b.id], "exclude": [b.id]})), vec![json!("x")])
        .await
        .unwrap();
    assert_eq!(a.next_event(WAIT).await.unwrap().3, vec![json!("x")]);
    b.expect_no_event(QUIET).await.unwrap();
    c.expect_no_event(QUIET).await.unwrap();

    let c_authid = c.authid().to_owned();
    p.publish_acked("t.filters", dict(json!({"eligible_authid": [c_authid]})), vec![json!("to c")]).await.unwrap();
    assert_eq!(c.next_event(WAIT).await.unwrap().3, vec![json!("to c")]);
    a.expect_no_event(QUIET).await.unwrap();

    let a_authid = a.authid().to_owned();
    p.publish_acked("t.filters", dict(json!({"exclude_authid": a_authid})), vec![json!("not a")]).await.unwrap();
    b.next_event(WAIT).await.unwrap();
    c.next_event(WAIT).await.unwrap();
    a.expect_no_event(QUIET).await.unwrap();

    p.publish_acked("t.filters", dict(json!({"eligible_authrole": ["admin"]})), vec![json!("admins")]).await.unwrap();
    p.publish_acked("t.filters", dict(json!({"exclude_authrole": ["anonymous"]})), vec![json!("no anons")])
        .await
        .unwrap();
    for s in [&mut a, &mut b, &mut c] {
        s.expect_no_event(QUIET).await.unwrap();
    }
}

#[actix_web::test]
async fn disclose_me_reveals_the_publisher() {
    let app = spawn_app().await;
    let mut sub = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let mut p = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    sub.subscribe("t.disclose").await.unwrap();
    p.publish_acked("t.disclose", dict(json!({"disclose_me": true})), vec![]).await.unwrap();
    let details = sub.next_event(WAIT).await.unwrap().2;
    assert_eq!(details["publisher"], json!(p.id));
    assert_eq!(details["publisher_authid"], json!(p.authid()));
}

#[actix_web::test]
async fn prefix_and_wildcard_subscriptions_carry_the_topic() {
    let app = spawn_app().await;
    let mut prefix = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let mut wild = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let mut p = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    prefix.subscribe_with("com.app", dict(json!({"match": "prefix"}))).await.unwrap();
    wild.subscribe_with("com..update", dict(json!({"match": "wildcard"}))).await.unwrap();
    p.publish_acked("com.user.update", dict(json!({})), vec![json!(7)]).await.unwrap();
    wild.next_event(WAIT).await.map(|e| assert_eq!(e.2["topic"], "com.user.update")).unwrap();
    prefix.expect_no_event(QUIET).await.unwrap();
    p.publish_acked("com.app.x", dict(json!({})), vec![]).await.unwrap();
    assert_eq!(prefix.next_event(WAIT).await.unwrap().2["topic"], "com.app.x");
    wild.expect_no_event(QUIET).await.unwrap();
}

#[actix_web::test]
async fn subscribers_of_one_topic_share_a_subscription_id_and_resubscribe_is_idempotent() {
    let app = spawn_app().await;
    let mut a = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let mut b = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let first = a.subscribe("t.shared").await.unwrap();
    assert_eq!(a.subscribe("t.shared").await.unwrap(), first);
    assert_eq!(b.subscribe("t.shared").await.unwrap(), first);
}

#[actix_web::test]
async fn unsubscribe_stops_events_and_unknown_subscription_is_an_error() {
    let app = spawn_app().await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let mut p = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let id = s.subscribe("t.unsub").await.unwrap();
    s.unsubscribe(id).await.unwrap();
    p.publish_acked("t.unsub", dict(json!({})), vec![]).await.unwrap();
    s.expect_no_event(QUIET).await.unwrap();
    assert_eq!(wamp_error(s.unsubscribe(id).await), "wamp.error.no_such_subscription");
    let node = app.node.clone();
    eventually("the topic is gone", || node.metrics().render().contains("switchboard_topics 0\n")).await;
}

#[actix_web::test]
async fn closing_a_socket_leaves_no_subscription_or_session_behind() {
    let app = spawn_app().await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    s.subscribe("t.a").await.unwrap();
    s.subscribe_with("t", dict(json!({"match": "prefix"}))).await.unwrap();
    assert_eq!(app.node.clients().local_count(), 1);
    s.socket.close().await.unwrap();
    drop(s);
    let node = app.node.clone();
    eventually("subscriptions, topics and sessions are zero", || {
        let m = node.metrics().render();
        m.contains("switchboard_subscriptions 0\n")
            && m.contains("switchboard_topics 0\n")
            && node.clients().local_count() == 0
    })
    .await;
}

#[actix_web::test]
async fn goodbye_is_answered_with_goodbye_and_out() {
    let app = spawn_app().await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    s.send(&switchboard::wamp::v2::Message::goodbye("wamp.close.close_realm", "bye")).await.unwrap();
    match s.next_message(WAIT).await.unwrap() {
        switchboard::wamp::v2::Message::Goodbye { reason, .. } => assert_eq!(reason, "wamp.close.goodbye_and_out"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.socket.expect_close(WAIT).await.unwrap().0, 1000);
}

#[actix_web::test]
async fn session_meta_procedures_answer_for_this_node() {
    let app = spawn_app().await;
    let mut a = connect_as(&app, "alice").await;
    let b = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let (args, _) = a.call("wamp.session.count", vec![], dict(json!({}))).await.unwrap();
    assert_eq!(args, vec![json!(2)]);
    let (args, _) = a.call("wamp.session.list", vec![], dict(json!({}))).await.unwrap();
    let mut ids: Vec<u64> = args[0].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    ids.sort();
    let mut expected = vec![a.id, b.id];
    expected.sort();
    assert_eq!(ids, expected);
    let (args, _) = a.call("wamp.session.get", vec![json!(b.id)], dict(json!({}))).await.unwrap();
    assert_eq!(args[0]["authid"], json!(b.authid()));
    assert_eq!(args[0]["authrole"], "anonymous");
    let (args, _) = a.call("wamp.session.count", vec![json!(["admin"])], dict(json!({}))).await.unwrap();
    assert_eq!(args, vec![json!(0)]);
    match a.call("wamp.session.get", vec![json!(12345)], dict(json!({}))).await {
        Err(ClientError::Wamp { error, .. }) => assert_eq!(error, "wamp.error.no_such_session"),
        other => panic!("{other:?}"),
    }
}

#[actix_web::test]
async fn client_register_gets_a_clear_error() {
    let app = spawn_app().await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let m =
        switchboard::wamp::v2::Message::Register { request: 9, options: dict(json!({})), procedure: "com.x".into() };
    s.send(&m).await.unwrap();
    match s.next_message(WAIT).await.unwrap() {
        switchboard::wamp::v2::Message::Error { error, args, .. } => {
            assert_eq!(error, "wamp.error.not_authorized");
            assert!(args.unwrap()[0].as_str().unwrap().contains("client callees are not supported"));
        }
        other => panic!("{other:?}"),
    }
}

#[actix_web::test]
async fn configured_realm_refuses_others_with_abort() {
    let mut settings = test_settings();
    settings.server.realm = "realm1".into();
    let app = spawn_with(switchboard::Switchboard::builder(settings)).await;
    V2Session::connect(&app.ws_url(), "realm1").await.unwrap();
    match V2Session::connect(&app.ws_url(), "other").await {
        Err(ClientError::Wamp { error, .. }) => assert_eq!(error, "wamp.error.no_such_realm"),
        other => panic!("{:?}", other.map(|s| s.id)),
    }
}

#[actix_web::test]
async fn health_and_metrics_endpoints_answer() {
    let app = spawn_app().await;
    let client = awc::Client::default();
    let mut live = client.get(app.http_url("/health/live")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let body: serde_json::Value = live.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    let mut ready = client.get(app.http_url("/health/ready")).send().await.unwrap();
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["mode"], "embedded");
    assert_eq!(body["node"], app.node.node_id());
    let mut metrics = client.get(app.http_url("/metrics")).send().await.unwrap();
    let text = String::from_utf8(metrics.body().await.unwrap().to_vec()).unwrap();
    assert!(text.contains("# TYPE switchboard_connections gauge"));
}

#[actix_web::test]
async fn targeted_publish_with_repeated_names_delivers_once() {
    let app = spawn_app().await;
    let mut a = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let mut other = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let mut p = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    a.subscribe("t.targeted").await.unwrap();
    other.subscribe("t.targeted").await.unwrap();
    let authid = a.authid().to_owned();
    p.publish_acked("t.targeted", dict(json!({"eligible_authid": [authid, authid]})), vec![json!(1)]).await.unwrap();
    p.publish_acked("t.targeted", dict(json!({"eligible": [a.id, a.id, 424242]})), vec![json!(2)]).await.unwrap();
    assert_eq!(a.next_event(WAIT).await.unwrap().3, vec![json!(1)]);
    assert_eq!(a.next_event(WAIT).await.unwrap().3, vec![json!(2)]);
    a.expect_no_event(QUIET).await.unwrap();
    other.expect_no_event(QUIET).await.unwrap();
}

/// While a topic is published to without pause, a session subscribing and unsubscribing again and again must see
/// each SUBSCRIBED before the first EVENT it announces and no EVENT after its UNSUBSCRIBED: queued EVENTs are
/// written by the socket's task, which must not overtake the connection's own replies.
#[actix_web::test]
async fn subscribed_precedes_every_event_and_unsubscribed_follows_the_last_under_a_publication_flood() {
    let app = spawn_app().await;
    subscribe_replies_keep_their_place_among_events(&app.ws_url()).await;
}

/// The check of the test above, against the node at `url` (the cluster tests run it where SUBSCRIBED also
/// waits for the registry).
pub async fn subscribe_replies_keep_their_place_among_events(url: &str) {
    use switchboard::wamp::v2::Message as M;
    let mut keeper = V2Session::connect(url, "r").await.unwrap();
    keeper.subscribe("t.flood").await.unwrap();
    let mut publisher = V2Session::connect(url, "r").await.unwrap();
    let flood = actix_web::rt::spawn(async move {
        for _ in 0..3000 {
            publisher.publish("t.flood", dict(json!({})), vec![json!("x")]).await.unwrap();
            actix_web::rt::time::sleep(std::time::Duration::from_micros(500)).await;
        }
    });
    let mut s = V2Session::connect(url, "r").await.unwrap();
    for round in 0..40u64 {
        let request = 1000 + round * 2;
        s.send(&M::Subscribe { request, options: dict(json!({})), topic: "t.flood".into() }).await.unwrap();
        let subscription = match s.next_message(WAIT).await.unwrap() {
            M::Subscribed { request: r, subscription } if r == request => subscription,
            other => panic!("round {round}: expected SUBSCRIBED first, got {other:?}"),
        };
        // Let some events through, then leave.
        let mut events = 0;
        while events < 3 {
            match s.next_message(WAIT).await.unwrap() {
                M::Event { subscription: id, .. } if id == subscription => events += 1,
                other => panic!("round {round}: expected an EVENT, got {other:?}"),
            }
        }
        s.send(&M::Unsubscribe { request: request + 1, subscription }).await.unwrap();
        loop {
            match s.next_message(WAIT).await.unwrap() {
                M::Event { subscription: id, .. } if id == subscription => {}
                M::Unsubscribed { request: r } if r == request + 1 => break,
                other => panic!("round {round}: expected EVENTs, then UNSUBSCRIBED, got {other:?}"),
            }
        }
        match s.next_message(std::time::Duration::from_millis(20)).await {
            Err(ClientError::Timeout(_)) => {}
            other => panic!("round {round}: nothing may follow UNSUBSCRIBED, got {other:?}"),
        }
    }
    flood.abort();
}
