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
    three_nodes_with(|_| {}).await
}

/// [`three_nodes`] with `adjust` applied to each node's settings.
async fn three_nodes_with(adjust: impl Fn(&mut switchboard::Settings)) -> (TestApp, TestApp, TestApp) {
    let cluster = MemoryCluster::new();
    let node = |id: &str| {
        let mut settings = test_settings();
        adjust(&mut settings);
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
async fn meta_topics_and_procedures_are_refused_to_roles_outside_meta_roles() {
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
    for topic in ["wamp.subscription.on_create", "wamp.subscription.on_subscribe", "wamp.subscription.on_delete"] {
        assert_eq!(refused(anonymous.subscribe(topic).await), "wamp.error.not_authorized", "{topic}");
    }
    let subscription = dict(json!({"match": "prefix"}));
    assert_eq!(
        refused(anonymous.subscribe_with("wamp.subscription.", subscription).await),
        "wamp.error.not_authorized"
    );
    for (procedure, args) in [
        ("wamp.subscription.list", vec![]),
        ("wamp.subscription.lookup", vec![json!("chat.lobby")]),
        ("wamp.subscription.match", vec![json!("chat.lobby")]),
        ("wamp.subscription.get", vec![json!(1)]),
        ("wamp.subscription.list_subscribers", vec![json!(1)]),
        ("wamp.subscription.count_subscribers", vec![json!(1)]),
    ] {
        match anonymous.call(procedure, args, Default::default()).await {
            Err(switchboard::client::ClientError::Wamp { error, .. }) => {
                assert_eq!(error, "wamp.error.not_authorized", "{procedure}")
            }
            other => panic!("{procedure}: {other:?}"),
        }
    }
    // Other wamp.* topics and the rest stay as they were.
    anonymous.subscribe("chat.lobby").await.unwrap();
    let mut alice = connect_as(&app, "alice").await;
    alice.subscribe("wamp.session.on_join").await.unwrap();
    alice.subscribe_with("wamp.", dict(json!({"match": "prefix"}))).await.unwrap();
}

/// The GOODBYE reason a killed session receives (then its socket closes).
async fn goodbye_reason(s: &mut switchboard::client::V2Session) -> String {
    loop {
        match s.next_message(WAIT).await.unwrap() {
            switchboard::wamp::v2::Message::Goodbye { reason, .. } => return reason,
            _ => continue,
        }
    }
}

#[actix_web::test]
async fn kill_procedures_close_the_chosen_sessions_on_any_node_but_never_the_caller() {
    let (a, b, c) = three_nodes_with(|s| s.meta.kill_roles = vec!["user".into()]).await;
    let mut admin = connect_as(&a, "admin").await;
    let mut alice_b = connect_as(&b, "alice").await;
    let mut alice_c = connect_as(&c, "alice").await;
    let mut bob_c = connect_as(&c, "bob").await;
    let mut anon_b = switchboard::client::V2Session::connect(&b.ws_url(), "r").await.unwrap();
    let mut anon_a = switchboard::client::V2Session::connect(&a.ws_url(), "r").await.unwrap();

    let refused = anon_a.call("wamp.session.kill", vec![json!(bob_c.id)], Default::default()).await;
    assert!(
        matches!(refused, Err(switchboard::client::ClientError::Wamp { ref error, .. }) if error == "wamp.error.not_authorized"),
        "{refused:?}"
    );

    let kwargs = dict(json!({"reason": "com.example.bye", "message": "maintenance"}));
    let (args, _) = admin.call("wamp.session.kill_by_authid", vec![json!("alice")], kwargs).await.unwrap();
    let mut killed: Vec<u64> = args[0].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    killed.sort_unstable();
    let mut expected = vec![alice_b.id, alice_c.id];
    expected.sort_unstable();
    assert_eq!(killed, expected);
    assert_eq!(goodbye_reason(&mut alice_b).await, "com.example.bye");
    assert_eq!(goodbye_reason(&mut alice_c).await, "com.example.bye");

    let (args, _) = admin.call("wamp.session.kill", vec![json!(anon_b.id)], Default::default()).await.unwrap();
    assert!(args.is_empty(), "kill answers nothing: {args:?}");
    assert_eq!(goodbye_reason(&mut anon_b).await, "wamp.close.killed");

    let own = admin.call("wamp.session.kill", vec![json!(admin.id)], Default::default()).await;
    assert!(
        matches!(own, Err(switchboard::client::ClientError::Wamp { ref error, .. }) if error == "wamp.error.no_such_session"),
        "{own:?}"
    );

    // By role: bob (role user) on c; the caller holds the role too and is spared.
    let (args, _) = admin.call("wamp.session.kill_by_authrole", vec![json!("user")], Default::default()).await.unwrap();
    assert_eq!(args, vec![json!(1)]);
    assert_eq!(goodbye_reason(&mut bob_c).await, "wamp.close.killed");
    admin.call("wamp.session.count", vec![], Default::default()).await.expect("the caller is still connected");
    anon_a.call("wamp.session.count", vec![], Default::default()).await.expect("anonymous sessions were not killed");
}

#[actix_web::test]
async fn kill_procedures_are_nobodys_by_default() {
    let app = spawn_app().await;
    let mut alice = connect_as(&app, "alice").await;
    let bob = connect_as(&app, "bob").await;
    for (procedure, arg) in [
        ("wamp.session.kill", json!(bob.id)),
        ("wamp.session.kill_by_authid", json!("bob")),
        ("wamp.session.kill_by_authrole", json!("user")),
    ] {
        match alice.call(procedure, vec![arg], Default::default()).await {
            Err(switchboard::client::ClientError::Wamp { error, .. }) => assert_eq!(error, "wamp.error.not_authorized"),
            other => panic!("{procedure}: {other:?}"),
        }
    }
}

#[actix_web::test]
async fn a_user_is_online_at_her_first_socket_anywhere_and_offline_after_the_grace_once() {
    let grace = std::time::Duration::from_millis(600);
    let (a, b, c) = three_nodes_with(|s| s.presence.grace = grace).await;
    let mut watcher = connect_as(&b, "watcher").await;
    watcher.subscribe("switchboard.user.on_online").await.unwrap();
    watcher.subscribe("switchboard.user.on_offline").await.unwrap();

    let mut alice_a = connect_as(&a, "alice").await;
    // The watcher's own login may be announced after it subscribed: skip it.
    let (mut on_online, _, _, mut args) = watcher.next_event(WAIT).await.unwrap();
    if args == vec![json!("watcher")] {
        (on_online, _, _, args) = watcher.next_event(WAIT).await.unwrap();
    }
    assert_eq!(args, vec![json!("alice")]);
    let mut alice_c = connect_as(&c, "alice").await;
    let _anonymous = switchboard::client::V2Session::connect(&c.ws_url(), "r").await.unwrap();
    watcher.expect_no_event(QUIET).await.unwrap();

    alice_a.socket.close().await.unwrap();
    drop(alice_a);
    watcher.expect_no_event(grace + QUIET).await.unwrap();
    alice_c.socket.close().await.unwrap();
    drop(alice_c);
    let (on_offline, _, _, args) = watcher.next_event(grace + WAIT).await.unwrap();
    assert_ne!(on_offline, on_online, "on_offline, not a second on_online");
    assert_eq!(args, vec![json!("alice")]);
    watcher.expect_no_event(grace).await.unwrap();

    // A reconnect inside the grace: one online, no offline/online pair.
    let mut first = connect_as(&a, "alice").await;
    assert_eq!(watcher.next_event(WAIT).await.unwrap().0, on_online);
    first.socket.close().await.unwrap();
    drop(first);
    tokio::time::sleep(grace / 3).await;
    let _again = connect_as(&c, "alice").await;
    watcher.expect_no_event(grace * 2).await.unwrap();
}

#[actix_web::test]
async fn clients_cannot_forge_presence_events() {
    let app = spawn_app().await;
    let mut alice = connect_as(&app, "alice").await;
    let forged = alice.publish_acked("switchboard.user.on_offline", dict(json!({})), vec![json!("bob")]).await;
    assert!(
        matches!(forged, Err(switchboard::client::ClientError::Wamp { ref error, .. }) if error == "wamp.error.invalid_uri"),
        "{forged:?}"
    );
}

#[actix_web::test]
async fn with_presence_off_no_meta_event_is_published() {
    let (a, b, _c) = three_nodes_with(|s| s.presence.enabled = false).await;
    let mut watcher = connect_as(&b, "watcher").await;
    watcher.subscribe("wamp.session.on_join").await.unwrap();
    watcher.subscribe("wamp.session.on_leave").await.unwrap();
    watcher.subscribe("switchboard.user.on_online").await.unwrap();
    let newcomer = connect_as(&a, "alice").await;
    drop(newcomer);
    watcher.expect_no_event(QUIET * 2).await.unwrap();
}

#[actix_web::test]
async fn the_presence_callback_runs_once_cluster_wide_per_change() {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<switchboard::Presence>>> = Arc::default();
    let cluster = MemoryCluster::new();
    let node = |id: &str| {
        let mut settings = test_settings();
        settings.server.node_id = id.to_owned();
        settings.presence.grace = std::time::Duration::from_millis(300);
        let seen = seen.clone();
        spawn_with(
            Switchboard::builder(settings)
                .cluster(cluster.clone())
                .on_presence(move |change| seen.lock().unwrap().push(change.clone())),
        )
    };
    let (a, b) = (node("a").await, node("b").await);
    let on_a = connect_as(&a, "alice").await;
    let on_b = connect_as(&b, "alice").await;
    drop(on_a);
    drop(on_b);
    let expected = vec![switchboard::Presence::Online("alice".into()), switchboard::Presence::Offline("alice".into())];
    let deadline = std::time::Instant::now() + WAIT;
    while *seen.lock().unwrap() != expected {
        assert!(std::time::Instant::now() < deadline, "callbacks: {:?}", seen.lock().unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(*seen.lock().unwrap(), expected, "once each, cluster-wide");
}

#[actix_web::test]
async fn a_testament_is_published_when_its_session_ends_and_not_after_a_flush() {
    let (a, b, _c) = three_nodes().await;
    let mut listener = switchboard::client::V2Session::connect(&b.ws_url(), "r").await.unwrap();
    listener.subscribe("will.news").await.unwrap();
    let mut dying = switchboard::client::V2Session::connect(&a.ws_url(), "r").await.unwrap();
    let add =
        |topic: &str, options: serde_json::Value| vec![json!(topic), json!(["gone"]), json!({"why": "test"}), options];
    let error = |r: Result<
        (Vec<serde_json::Value>, serde_json::Map<String, serde_json::Value>),
        switchboard::client::ClientError,
    >| match r {
        Err(switchboard::client::ClientError::Wamp { error, .. }) => error,
        other => panic!("not refused: {other:?}"),
    };
    assert_eq!(
        error(
            dying.call("wamp.session.add_testament", add("wamp.session.on_leave", json!({})), Default::default()).await
        ),
        "wamp.error.invalid_uri"
    );
    assert_eq!(
        error(
            dying
                .call("wamp.session.add_testament", add("will.news", json!({"scope": "detached"})), Default::default())
                .await
        ),
        "wamp.error.invalid_argument"
    );
    dying.call("wamp.session.add_testament", add("will.news", json!({})), Default::default()).await.unwrap();
    listener.expect_no_event(QUIET).await.unwrap();
    dying.socket.close().await.unwrap();
    drop(dying);
    let (_, _, _, args) = listener.next_event(WAIT).await.unwrap();
    assert_eq!(args, vec![json!("gone")]);
    listener.expect_no_event(QUIET).await.unwrap();

    let mut flushed = switchboard::client::V2Session::connect(&a.ws_url(), "r").await.unwrap();
    flushed.call("wamp.session.add_testament", add("will.news", json!({})), Default::default()).await.unwrap();
    let (count, _) = flushed.call("wamp.session.flush_testaments", vec![], Default::default()).await.unwrap();
    assert_eq!(count, vec![json!(1)]);
    flushed.socket.close().await.unwrap();
    drop(flushed);
    listener.expect_no_event(QUIET * 2).await.unwrap();
}

#[actix_web::test]
async fn subscription_meta_api_agrees_across_nodes() {
    let (a, b, c) = three_nodes().await;
    let watchers =
        vec![connect_as(&a, "watcher-a").await, connect_as(&b, "watcher-b").await, connect_as(&c, "w-c").await];
    scenarios::subscription_meta_agrees_across_nodes(&peer(&a), &peer(&b), &peer(&c), watchers).await;
}

#[actix_web::test]
async fn a_delivery_result_counts_her_sockets_on_every_node() {
    let (a, b, c) = three_nodes().await;
    let (alice_b, alice_c, bob_c) =
        (connect_as(&b, "alice").await, connect_as(&c, "alice").await, connect_as(&c, "bob").await);
    scenarios::a_delivery_result_counts_her_sockets_on_every_node(&peer(&a), alice_b, alice_c, bob_c).await;
}

#[actix_web::test]
async fn the_inbox_keeps_messages_for_an_absent_user_until_she_subscribes() {
    let (a, b, c) = three_nodes_with(|s| s.inbox.ttl = std::time::Duration::from_secs(60)).await;
    scenarios::the_inbox_keeps_messages_for_an_absent_user_until_she_subscribes(
        &peer(&a),
        connect_as(&c, "alice"),
        connect_as(&b, "alice"),
    )
    .await;
}
