//! The cross-node scenarios, run on three nodes over Redis (separate processes, `cluster.rs`) and on three
//! nodes of one process sharing a `MemoryCluster` (`inproc.rs`): the same behaviour whatever joins the nodes.
//! The nodes are named `a`, `b` and `c`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard::client::{V1Session, V2Session};
use switchboard::wamp::v2::Message;

use crate::helpers::*;

/// A node as the scenarios reach it: its port and its push API token.
pub struct Peer {
    pub port: u16,
    pub token: &'static str,
}

impl Peer {
    pub fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        push_api(&format!("http://127.0.0.1:{}{path}", self.port), self.token, method, body).await
    }
}

/// A publish on `a` (and one through `b`'s push API) reaches exact, prefix and v1 subscribers on `b` and `c`,
/// once each.
pub async fn a_publish_reaches_the_other_nodes_once(a: &Peer, b: &Peer, c: &Peer) {
    let mut on_b = V2Session::connect(&b.ws(), "r").await.unwrap();
    let mut pattern_on_b = V2Session::connect(&b.ws(), "r").await.unwrap();
    let mut on_c = V2Session::connect(&c.ws(), "r").await.unwrap();
    let mut v1_on_c = V1Session::connect(&c.ws()).await.unwrap();
    on_b.subscribe("news.world").await.unwrap();
    pattern_on_b.subscribe_with("news.", dict(json!({"match": "prefix"}))).await.unwrap();
    on_c.subscribe("news.world").await.unwrap();
    v1_on_c.send(&switchboard::wamp::v1::Message::Subscribe { topic: "news.world".into() }).await.unwrap();
    v1_on_c.call("wamp.session.count", vec![]).await.unwrap();
    // v1 subscriptions have no SUBSCRIBED: give C's topic the v1 subscriber (C's topic is already subscribed
    // across nodes through `on_c`).
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut publisher = V2Session::connect(&a.ws(), "r").await.unwrap();
    let id = publisher.publish_acked("news.world", dict(json!({})), vec![json!("hello")]).await.unwrap();
    for s in [&mut on_b, &mut pattern_on_b, &mut on_c] {
        let (_, publication, _, args) = s.next_event(WAIT).await.unwrap();
        assert_eq!((publication, args), (id, vec![json!("hello")]));
        s.expect_no_event(QUIET).await.unwrap();
    }
    assert_eq!(v1_on_c.next_event(WAIT).await.unwrap(), ("news.world".into(), json!("hello")));
    v1_on_c.expect_no_event(QUIET).await.unwrap();

    // The push API on B reaches the same subscribers, once each.
    let (status, body) = b.api("POST", "/api/publish", Some(json!({"topic": "news.world", "args": ["via api"]}))).await;
    assert_eq!(status, 200, "{body}");
    for s in [&mut on_b, &mut on_c] {
        assert_eq!(s.next_event(WAIT).await.unwrap().3, vec![json!("via api")]);
        s.expect_no_event(QUIET).await.unwrap();
    }
}

/// Every publish filter applies on every node: `alice` (logged in, role `user`) is on `c`.
pub async fn filters_apply_across_nodes(a: &Peer, b: &Peer, c: &Peer, mut alice: V2Session) {
    assert_eq!(alice.authid(), "alice");
    let mut anon_b = V2Session::connect(&b.ws(), "r").await.unwrap();
    let mut anon_c = V2Session::connect(&c.ws(), "r").await.unwrap();
    for s in [&mut alice, &mut anon_b, &mut anon_c] {
        s.subscribe("room").await.unwrap();
    }
    let mut p = V2Session::connect(&a.ws(), "r").await.unwrap();
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

/// Lookups on `b` see alice's sessions on `a` and `c` (`on_c` subscribed to `inbox`); meta procedures answer
/// cluster-wide; disconnecting her everywhere closes both and leaves no trace.
pub async fn lookups_and_disconnect_everywhere(b: &Peer, mut on_a: V2Session, mut on_c: V2Session) {
    let (status, sessions) = b.api("GET", "/api/users/alice/sessions", None).await;
    assert_eq!(status, 200);
    let nodes: HashSet<&str> = sessions.as_array().unwrap().iter().map(|s| s["node"].as_str().unwrap()).collect();
    assert_eq!(nodes, HashSet::from(["a", "c"]));
    let (status, one) = b.api("GET", &format!("/api/sessions/{}", on_c.id), None).await;
    assert_eq!((status, one["node"].as_str(), one["authid"].as_str()), (200, Some("c"), Some("alice")));
    assert_eq!(b.api("GET", "/api/sessions/12345", None).await.0, 404);
    let (_, users) = b.api("GET", "/api/sessions?authrole=user", None).await;
    assert_eq!(users.as_array().unwrap().len(), 2);

    // Meta procedures answer cluster-wide; identities only to logged-in callers.
    let mut anon_b = V2Session::connect(&b.ws(), "r").await.unwrap();
    let (args, _) = anon_b.call("wamp.session.count", vec![], dict(json!({}))).await.unwrap();
    assert_eq!(args, vec![json!(3)]);
    let refused = anon_b.call("wamp.session.get", vec![json!(on_a.id)], dict(json!({}))).await;
    assert_eq!(wamp_error(refused), "wamp.error.not_authorized");
    let (args, _) = on_c.call("wamp.session.get", vec![json!(on_a.id)], dict(json!({}))).await.unwrap();
    assert_eq!((args[0]["authid"].as_str(), args[0]["node"].as_str()), (Some("alice"), Some("a")));

    let (status, body) = b.api("DELETE", "/api/users/alice/sessions", None).await;
    assert_eq!((status, body["disconnected"].as_u64()), (200, Some(2)));
    for s in [&mut on_a, &mut on_c] {
        match s.next_message(WAIT).await.unwrap() {
            Message::Goodbye { reason, .. } => assert_eq!(reason, "switchboard.close.disconnected"),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.socket.expect_close(WAIT).await.unwrap().0, 1008);
    }
    let deadline = Instant::now() + WAIT;
    while !b.api("GET", "/api/users/alice/sessions", None).await.1.as_array().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "alice's sessions were not deregistered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `wamp.session.on_join` and `on_leave` of a session on `a` reach each watcher (logged in, on any node) once.
pub async fn session_meta_events_reach_every_node_once(a: &Peer, mut watchers: Vec<V2Session>) {
    for w in watchers.iter_mut() {
        w.subscribe("wamp.session.on_join").await.unwrap();
        w.subscribe("wamp.session.on_leave").await.unwrap();
    }
    let mut newcomer = V2Session::connect(&a.ws(), "r").await.unwrap();
    let id = newcomer.id;
    for w in watchers.iter_mut() {
        let (_, _, _, args) = w.next_event(WAIT).await.unwrap();
        let details = &args[0];
        assert_eq!(details["session"], json!(id), "{details}");
        assert_eq!(details["authid"], json!(format!("anon-{id}")));
        assert_eq!(details["authrole"], "anonymous");
        assert_eq!(details["authmethod"], "anonymous");
        assert_eq!(details["transport"]["protocol"], "wamp.2.json");
        w.expect_no_event(QUIET).await.unwrap();
    }
    newcomer.socket.close().await.unwrap();
    drop(newcomer);
    for w in watchers.iter_mut() {
        let (_, _, _, args) = w.next_event(WAIT).await.unwrap();
        assert_eq!(args, vec![json!(id), json!(format!("anon-{id}")), json!("anonymous")]);
        w.expect_no_event(QUIET).await.unwrap();
    }
}

/// The next `n` subscription meta events of `w` as sorted `(topic, args)` pairs (the `on_create` details' time
/// left out), then nothing more.
async fn meta_events(w: &mut V2Session, n: usize) -> Vec<(String, Vec<Value>)> {
    let mut got = Vec::new();
    for _ in 0..n {
        let (_, _, details, mut args) = w.next_event(WAIT).await.unwrap();
        if let Some(Value::Object(info)) = args.get_mut(1) {
            assert!(info.remove("created").is_some_and(|c| c.as_str().is_some_and(|c| c.ends_with('Z'))), "{info:?}");
        }
        got.push((details["topic"].as_str().unwrap().trim_start_matches("wamp.subscription.").to_owned(), args));
    }
    w.expect_no_event(QUIET).await.unwrap();
    got.sort_by_key(|(topic, args)| (topic.clone(), args.to_vec().iter().map(Value::to_string).collect::<Vec<_>>()));
    got
}

/// Calls a meta procedure; its single result (null when it answers nothing).
async fn meta(s: &mut V2Session, procedure: &str, args: Vec<Value>) -> Value {
    let (result, _) = s.call(procedure, args, Default::default()).await.unwrap();
    result.into_iter().next().unwrap_or(Value::Null)
}

/// The subscription meta API on three nodes (`watchers[i]` logged in on node i, clients on `a`, `b`, `c`):
/// one id per (URI, policy) everywhere, counts that include every node's subscribers, and each
/// `wamp.subscription.on_*` event once per watcher.
pub async fn subscription_meta_agrees_across_nodes(a: &Peer, b: &Peer, c: &Peer, mut watchers: Vec<V2Session>) {
    for w in watchers.iter_mut() {
        w.subscribe_with("wamp.subscription.on_", dict(json!({"match": "prefix"}))).await.unwrap();
    }
    let mut on_a = V2Session::connect(&a.ws(), "r").await.unwrap();
    let mut on_b = V2Session::connect(&b.ws(), "r").await.unwrap();
    let mut on_c = V2Session::connect(&c.ws(), "r").await.unwrap();

    let id = on_a.subscribe("chat.meta").await.unwrap();
    let created = json!({"id": id, "uri": "chat.meta", "match": "exact"});
    for w in watchers.iter_mut() {
        let expected = vec![
            ("on_create".to_owned(), vec![json!(on_a.id), created.clone()]),
            ("on_subscribe".to_owned(), vec![json!(on_a.id), json!(id)]),
        ];
        assert_eq!(meta_events(w, 2).await, expected);
    }
    assert_eq!(on_b.subscribe("chat.meta").await.unwrap(), id, "one id for one topic on every node");
    let pattern = on_c.subscribe_with("chat.", dict(json!({"match": "prefix"}))).await.unwrap();
    assert_ne!(pattern, id);
    for w in watchers.iter_mut() {
        let info = json!({"id": pattern, "uri": "chat.", "match": "prefix"});
        let expected = vec![
            ("on_create".to_owned(), vec![json!(on_c.id), info]),
            ("on_subscribe".to_owned(), vec![json!(on_b.id), json!(id)]),
            ("on_subscribe".to_owned(), vec![json!(on_c.id), json!(pattern)]),
        ];
        let mut got = meta_events(w, 3).await;
        got.sort_by_key(|(topic, args)| (topic.clone(), args[0].to_string()));
        let mut expected = expected;
        expected.sort_by_key(|(topic, args)| (topic.clone(), args[0].to_string()));
        assert_eq!(got, expected);
    }

    // Asked on different nodes, the answers agree and count every node's subscribers.
    let [wa, wb, wc] = &mut watchers[..] else { panic!("three watchers") };
    assert_eq!(meta(wc, "wamp.subscription.lookup", vec![json!("chat.meta")]).await, json!(id));
    let prefix = json!({"match": "prefix"});
    assert_eq!(meta(wa, "wamp.subscription.lookup", vec![json!("chat."), prefix]).await, json!(pattern));
    assert_eq!(meta(wa, "wamp.subscription.lookup", vec![json!("chat.none")]).await, Value::Null);
    assert_eq!(meta(wa, "wamp.subscription.count_subscribers", vec![json!(id)]).await, json!(2));
    let mut both = vec![on_a.id, on_b.id];
    both.sort_unstable();
    assert_eq!(meta(wb, "wamp.subscription.list_subscribers", vec![json!(id)]).await, json!(both));
    let got = meta(wc, "wamp.subscription.get", vec![json!(pattern)]).await;
    assert_eq!((&got["uri"], &got["match"], &got["id"]), (&json!("chat."), &json!("prefix"), &json!(pattern)));
    let mut matching = vec![id, pattern];
    matching.sort_unstable();
    assert_eq!(meta(wa, "wamp.subscription.match", vec![json!("chat.meta")]).await, json!(matching));
    assert_eq!(meta(wa, "wamp.subscription.match", vec![json!("news.x")]).await, Value::Null);
    let list = meta(wb, "wamp.subscription.list", vec![]).await;
    assert!(list["exact"].as_array().unwrap().contains(&json!(id)), "{list}");
    assert!(list["prefix"].as_array().unwrap().contains(&json!(pattern)), "{list}");

    // Leaving: an unsubscribe, then the last subscriber's socket closing (its subscription is deleted).
    on_a.unsubscribe(id).await.unwrap();
    for w in watchers.iter_mut() {
        assert_eq!(meta_events(w, 1).await, vec![("on_unsubscribe".to_owned(), vec![json!(on_a.id), json!(id)])]);
    }
    assert_eq!(meta(&mut watchers[2], "wamp.subscription.count_subscribers", vec![json!(id)]).await, json!(1));
    let b_id = on_b.id;
    on_b.socket.close().await.unwrap();
    drop(on_b);
    for w in watchers.iter_mut() {
        let expected = vec![
            ("on_delete".to_owned(), vec![json!(b_id), json!(id)]),
            ("on_unsubscribe".to_owned(), vec![json!(b_id), json!(id)]),
        ];
        assert_eq!(meta_events(w, 2).await, expected);
    }
    assert_eq!(meta(&mut watchers[0], "wamp.subscription.lookup", vec![json!("chat.meta")]).await, Value::Null);
    match watchers[1].call("wamp.subscription.count_subscribers", vec![json!(id)], Default::default()).await {
        Err(switchboard::client::ClientError::Wamp { error, .. }) => {
            assert_eq!(error, "wamp.error.no_such_subscription")
        }
        other => panic!("{other:?}"),
    }
    drop(on_c);
}

/// A message to alice through `a`'s push API reports her sockets that took it on `b` and `c` (not one that did
/// not subscribe, not bob's), and 0 for a user with no socket anywhere.
pub async fn a_delivery_result_counts_her_sockets_on_every_node(
    a: &Peer,
    mut alice_b: V2Session,
    mut alice_c: V2Session,
    mut bob_c: V2Session,
) {
    alice_b.subscribe("inbox").await.unwrap();
    alice_c.subscribe("inbox").await.unwrap();
    bob_c.subscribe("inbox").await.unwrap();
    let body = json!({"topic": "inbox", "args": ["hello"], "wait_ms": 1000});
    let (status, answer) = a.api("POST", "/api/users/alice/messages", Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["delivered"], json!({"sockets": 2, "nodes": 2}), "{answer}");
    assert!(answer["stored"].is_boolean(), "{answer}");
    for s in [&mut alice_b, &mut alice_c] {
        let (_, publication, _, args) = s.next_event(WAIT).await.unwrap();
        assert_eq!((json!(publication), args), (answer["publication"].clone(), vec![json!("hello")]));
    }
    bob_c.expect_no_event(QUIET).await.unwrap();
    let body = json!({"topic": "inbox", "args": ["anyone?"], "wait_ms": 300});
    let (status, answer) = a.api("POST", "/api/users/nobody/messages", Some(body)).await;
    assert_eq!((status, &answer["delivered"]), (200, &json!({"sockets": 0, "nodes": 0})), "{answer}");
    let (status, _) =
        a.api("POST", "/api/users/alice/messages", Some(json!({"topic": "inbox", "wait_ms": 60000}))).await;
    assert_eq!(status, 400, "wait_ms is bounded");
}

/// `[inbox]`: a message to alice while she has no socket anywhere waits for her; her next subscribe to its topic,
/// on another node, delivers it once; a message one of her sockets took live is not delivered again.
pub async fn the_inbox_keeps_messages_for_an_absent_user_until_she_subscribes(
    a: &Peer,
    alice_on_c: impl std::future::Future<Output = V2Session>,
    alice_on_b: impl std::future::Future<Output = V2Session>,
) {
    for text in ["first", "second"] {
        let body = json!({"topic": "inbox", "args": [text]});
        let (status, answer) = a.api("POST", "/api/users/alice/messages", Some(body)).await;
        assert_eq!((status, &answer["stored"], &answer["delivered"]["sockets"]), (200, &json!(true), &json!(0)));
    }
    let mut on_c = alice_on_c.await;
    on_c.subscribe("inbox").await.unwrap();
    for expected in ["first", "second"] {
        let (_, _, details, args) = on_c.next_event(WAIT).await.unwrap();
        assert_eq!((args, details.get("inbox")), (vec![json!(expected)], Some(&json!(true))));
    }
    on_c.expect_no_event(QUIET).await.unwrap();
    // Live: taken by the socket on c, so not kept for her next subscribe.
    let body = json!({"topic": "inbox", "args": ["live"], "wait_ms": 500});
    let (_, answer) = a.api("POST", "/api/users/alice/messages", Some(body)).await;
    assert_eq!(answer["delivered"]["sockets"], json!(1), "{answer}");
    assert_eq!(on_c.next_event(WAIT).await.unwrap().3, vec![json!("live")]);
    let mut on_b = alice_on_b.await;
    on_b.subscribe("inbox").await.unwrap();
    on_b.expect_no_event(QUIET).await.unwrap();
    on_c.expect_no_event(QUIET).await.unwrap();
}
