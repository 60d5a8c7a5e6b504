//! The cross-node scenarios (`scenarios.rs`) on nodes of one process sharing a `MemoryCluster`
//! (`Builder::cluster`): the same behaviour as over Redis (`cluster.rs`), fast and without a server. The Redis
//! tests stay for what only a real Redis and real processes show: failover, restarts, killed nodes.

use serde_json::json;
use switchboard::cluster::memory::MemoryCluster;
use switchboard::Switchboard;

use crate::helpers::*;
use crate::scenarios::{self, Peer};

const TOKEN: &str = "in-process-token";

/// Three nodes of this process, `a`, `b` and `c`, in one cluster, each with the push API on.
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

fn peer(app: &TestApp) -> Peer {
    Peer { port: app.port, token: TOKEN }
}

#[actix_web::test]
async fn a_publish_on_a_reaches_subscribers_on_b_and_c_exactly_once() {
    let (a, b, c) = three_nodes().await;
    scenarios::a_publish_reaches_the_other_nodes_once(&peer(&a), &peer(&b), &peer(&c)).await;
}

#[actix_web::test]
async fn filters_by_session_authid_and_role_apply_across_nodes() {
    let (a, b, c) = three_nodes().await;
    // Each in-process node has its own memory session store: alice logs in where she connects.
    let alice = connect_as(&c, "alice").await;
    scenarios::filters_apply_across_nodes(&peer(&a), &peer(&b), &peer(&c), alice).await;
}

#[actix_web::test]
async fn lookups_see_alice_on_a_and_c_and_disconnect_everywhere_closes_both() {
    let (a, b, c) = three_nodes().await;
    let on_a = connect_as(&a, "alice").await;
    let mut on_c = connect_as(&c, "alice").await;
    on_c.subscribe("inbox").await.unwrap();
    // The library's lookups read every node of the process too.
    let found = b.node.clients().find_by_username("inbox", "alice").await;
    assert_eq!(found.iter().map(|c| c.session).collect::<Vec<_>>(), [on_c.id], "only her subscribed session");
    scenarios::lookups_and_disconnect_everywhere(&peer(&b), on_a, on_c).await;
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

#[actix_web::test]
async fn session_meta_events_reach_watchers_on_every_node_once() {
    let (a, b, c) = three_nodes().await;
    let watchers =
        vec![connect_as(&a, "watcher-a").await, connect_as(&b, "watcher-b").await, connect_as(&c, "w-c").await];
    scenarios::session_meta_events_reach_every_node_once(&peer(&a), watchers).await;
}

#[actix_web::test]
async fn session_meta_topics_are_refused_to_roles_outside_meta_roles() {
    let app = spawn_app().await;
    let mut anonymous = switchboard::client::V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let refused = |r: Result<u64, switchboard::client::ClientError>| match r {
        Err(switchboard::client::ClientError::Wamp { error, .. }) => error,
        other => panic!("not refused: {other:?}"),
    };
    assert_eq!(refused(anonymous.subscribe("wamp.session.on_join").await), "wamp.error.not_authorized");
    assert_eq!(refused(anonymous.subscribe("wamp.session.on_leave").await), "wamp.error.not_authorized");
    let prefix = dict(json!({"match": "prefix"}));
    assert_eq!(refused(anonymous.subscribe_with("wamp.", prefix).await), "wamp.error.not_authorized");
    let wildcard = dict(json!({"match": "wildcard"}));
    assert_eq!(refused(anonymous.subscribe_with("wamp.session.", wildcard).await), "wamp.error.not_authorized");
    // Other wamp.* topics and the rest stay as they were.
    anonymous.subscribe("chat.lobby").await.unwrap();
    let mut alice = connect_as(&app, "alice").await;
    alice.subscribe("wamp.session.on_join").await.unwrap();
    alice.subscribe_with("wamp.", dict(json!({"match": "prefix"}))).await.unwrap();
}
