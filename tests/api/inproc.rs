//! The cluster scenarios on nodes of one process sharing a `MemoryCluster` (`Builder::cluster`): the same
//! behaviour as over Redis (`cluster.rs`), fast and without a server. The Redis tests stay for what only a real
//! Redis and real processes show: failover, restarts, killed nodes.

use std::collections::HashSet;

use serde_json::json;
use switchboard::client::{V1Session, V2Session};
use switchboard::cluster::memory::MemoryCluster;
use switchboard::wamp::v2::Message;
use switchboard::Switchboard;

use crate::helpers::*;

const TOKEN: &str = "in-process-token";

/// Three nodes of this process in one cluster, each with the push API on.
async fn three_nodes() -> (TestApp, TestApp, TestApp) {
    let cluster = MemoryCluster::new();
    let node = |id: &str| {
        let mut settings = test_settings();
        settings.server.node_id = id.to_owned();
        settings.api.token = TOKEN.to_owned();
        spawn_with(Switchboard::builder(settings).cluster(cluster.clone()))
    };
    (node("a").await, node("b").await, node("c").await)
}

async fn api(app: &TestApp, method: &str, path: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
    push_api(&app.http_url(path), TOKEN, method, body).await
}

#[actix_web::test]
async fn a_publish_on_a_reaches_subscribers_on_b_and_c_exactly_once() {
    let (a, b, c) = three_nodes().await;
    let mut on_b = V2Session::connect(&b.ws_url(), "r").await.unwrap();
    let mut pattern_on_b = V2Session::connect(&b.ws_url(), "r").await.unwrap();
    let mut on_c = V2Session::connect(&c.ws_url(), "r").await.unwrap();
    let mut v1_on_c = V1Session::connect(&c.ws_url()).await.unwrap();
    on_b.subscribe("news.world").await.unwrap();
    pattern_on_b.subscribe_with("news.", dict(json!({"match": "prefix"}))).await.unwrap();
    on_c.subscribe("news.world").await.unwrap();
    v1_on_c.send(&switchboard::wamp::v1::Message::Subscribe { topic: "news.world".into() }).await.unwrap();
    // A v1 SUBSCRIBE has no answer: a call after it is answered once the subscription was handled.
    v1_on_c.call("wamp.session.count", vec![]).await.unwrap();

    let mut publisher = V2Session::connect(&a.ws_url(), "r").await.unwrap();
    let id = publisher.publish_acked("news.world", dict(json!({})), vec![json!("hello")]).await.unwrap();
    for s in [&mut on_b, &mut pattern_on_b, &mut on_c] {
        let (_, publication, _, args) = s.next_event(WAIT).await.unwrap();
        assert_eq!((publication, args), (id, vec![json!("hello")]));
        s.expect_no_event(QUIET).await.unwrap();
    }
    assert_eq!(v1_on_c.next_event(WAIT).await.unwrap(), ("news.world".into(), json!("hello")));
    v1_on_c.expect_no_event(QUIET).await.unwrap();

    let (status, body) =
        api(&b, "POST", "/api/publish", Some(json!({"topic": "news.world", "args": ["via api"]}))).await;
    assert_eq!(status, 200, "{body}");
    for s in [&mut on_b, &mut on_c] {
        assert_eq!(s.next_event(WAIT).await.unwrap().3, vec![json!("via api")]);
        s.expect_no_event(QUIET).await.unwrap();
    }
}

#[actix_web::test]
async fn filters_by_session_authid_and_role_apply_across_nodes() {
    let (a, b, c) = three_nodes().await;
    let mut alice = connect_as(&c, "alice").await;
    let mut anon_b = V2Session::connect(&b.ws_url(), "r").await.unwrap();
    let mut anon_c = V2Session::connect(&c.ws_url(), "r").await.unwrap();
    for s in [&mut alice, &mut anon_b, &mut anon_c] {
        s.subscribe("room").await.unwrap();
    }
    let mut p = V2Session::connect(&a.ws_url(), "r").await.unwrap();
    let cases = [
        (json!({"eligible": [anon_b.id]}), [false, true, false]),
        (json!({"exclude": [anon_b.id]}), [true, false, true]),
        (json!({"eligible_authid": ["alice"]}), [true, false, false]),
        (json!({"exclude_authid": ["alice"]}), [false, true, true]),
        (json!({"eligible_authrole": ["user"]}), [true, false, false]),
        (json!({"exclude_authrole": ["anonymous"]}), [true, false, false]),
    ];
    for (i, (options, expected)) in cases.into_iter().enumerate() {
        p.publish_acked("room", dict(options.clone()), vec![json!(i)]).await.unwrap();
        for (s, expect) in [&mut alice, &mut anon_b, &mut anon_c].into_iter().zip(expected) {
            if expect {
                assert_eq!(s.next_event(WAIT).await.unwrap().3, vec![json!(i)], "{options}");
            } else {
                s.expect_no_event(QUIET).await.unwrap_or_else(|e| panic!("{options}: {e}"));
            }
        }
    }
}

#[actix_web::test]
async fn lookups_see_alice_on_a_and_c_and_disconnect_everywhere_closes_both() {
    let (a, b, c) = three_nodes().await;
    let mut on_a = connect_as(&a, "alice").await;
    let mut on_c = connect_as(&c, "alice").await;
    on_c.subscribe("inbox").await.unwrap();

    let (status, sessions) = api(&b, "GET", "/api/users/alice/sessions", None).await;
    assert_eq!(status, 200);
    let nodes: HashSet<&str> = sessions.as_array().unwrap().iter().map(|s| s["node"].as_str().unwrap()).collect();
    assert_eq!(nodes, HashSet::from(["a", "c"]));
    let (status, one) = api(&b, "GET", &format!("/api/sessions/{}", on_c.id), None).await;
    assert_eq!((status, one["node"].as_str(), one["authid"].as_str()), (200, Some("c"), Some("alice")));
    assert_eq!(api(&b, "GET", "/api/sessions/12345", None).await.0, 404);
    let (_, users) = api(&b, "GET", "/api/sessions?authrole=user", None).await;
    assert_eq!(users.as_array().unwrap().len(), 2);
    let found = b.node.clients().find_by_username("inbox", "alice").await;
    assert_eq!(found.iter().map(|c| c.session).collect::<Vec<_>>(), [on_c.id], "only her subscribed session");

    let mut anon_b = V2Session::connect(&b.ws_url(), "r").await.unwrap();
    let (args, _) = anon_b.call("wamp.session.count", vec![], dict(json!({}))).await.unwrap();
    assert_eq!(args, vec![json!(3)]);
    let (args, _) = on_c.call("wamp.session.get", vec![json!(on_a.id)], dict(json!({}))).await.unwrap();
    assert_eq!((args[0]["authid"].as_str(), args[0]["node"].as_str()), (Some("alice"), Some("a")));

    let (status, body) = api(&b, "DELETE", "/api/users/alice/sessions", None).await;
    assert_eq!((status, body["disconnected"].as_u64()), (200, Some(2)));
    for s in [&mut on_a, &mut on_c] {
        match s.next_message(WAIT).await.unwrap() {
            Message::Goodbye { reason, .. } => assert_eq!(reason, "switchboard.close.disconnected"),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.socket.expect_close(WAIT).await.unwrap().0, 1008);
    }
    let clients = b.node.clients().clone();
    let mut left = clients.find_all_by_username("alice").await;
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
        left = clients.find_all_by_username("alice").await;
    }
    assert!(left.is_empty(), "alice's sessions are gone everywhere: {left:?}");
}

#[actix_web::test]
async fn send_to_user_reaches_her_sessions_on_other_nodes_only() {
    let (a, b, c) = three_nodes().await;
    let mut alice = connect_as(&c, "alice").await;
    let mut bob = connect_as(&b, "bob").await;
    alice.subscribe("notifications").await.unwrap();
    bob.subscribe("notifications").await.unwrap();
    a.node.clients().send_to_user("alice", "notifications", switchboard::Payload::single(json!("for alice")));
    assert_eq!(alice.next_event(WAIT).await.unwrap().3, vec![json!("for alice")]);
    bob.expect_no_event(QUIET).await.unwrap();
}
