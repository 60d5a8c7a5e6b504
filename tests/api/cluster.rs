//! Cluster mode across real node processes (the `switchboard` binary) and a private redis-server.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use switchboard::client::{ClientError, Socket, V1Session, V2Session};
use switchboard::wamp::v2::Message;

use crate::helpers::*;
use crate::redis_server::RedisServer;
use crate::scenarios::{self, Peer};

pub const TOKEN: &str = "cluster-test-token-0123456789";
const LEASE: Duration = Duration::from_millis(1500);

pub fn session_key() -> String {
    base64::engine::general_purpose::STANDARD.encode([42u8; 64])
}

/// One switchboard process.
pub struct Node {
    pub id: String,
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl Node {
    pub async fn start(redis: &RedisServer, id: &str) -> Node {
        Node::start_with(redis, id, "").await
    }

    /// Starts a node whose config file also holds `extra` (whole TOML sections the test adds).
    pub async fn start_with(redis: &RedisServer, id: &str, extra: &str) -> Node {
        Node::start_env(redis, id, extra, &[]).await
    }

    /// Like [`start_with`](Self::start_with), with extra environment variables (they win over the defaults
    /// set here). A TLS `redis` passes its private CA.
    pub async fn start_env(redis: &RedisServer, id: &str, extra: &str, env: &[(&str, String)]) -> Node {
        let dir = std::env::temp_dir().join(format!("switchboard-test-{id}-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("node.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nworkers = 1\nshutdown_timeout = \"3s\"\ndrain_period = \"1s\"\n[cluster]\nprefix = \"sbtest:\"\nlease = \"{}ms\"\n\
                 probe_interval = \"500ms\"\nmax_backoff = \"300ms\"\n[session]\nstore_timeout = \"500ms\"\n{extra}",
                LEASE.as_millis()
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.join("node.log")).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .arg("--config")
            .arg(&config)
            .env("SWITCHBOARD_BIND", format!("127.0.0.1:{port}"))
            .env("SWITCHBOARD_REDIS_URL", redis.authed_url())
            .env("SWITCHBOARD_SESSION_KEY", session_key())
            .env("SWITCHBOARD_NODE_ID", id)
            .env("SWITCHBOARD_API_TOKEN", TOKEN)
            .env("SWITCHBOARD_DEMO", "true")
            .env("RUST_LOG", "info");
        if let Some(ca) = redis.tls_ca() {
            command.env("SWITCHBOARD_REDIS_TLS_CA", ca);
        }
        let child = command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the switchboard binary starts");
        let node = Node { id: id.to_owned(), port, child: Some(child), dir };
        node.wait_ready().await;
        node
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = awc::Client::default().get(self.http("/health/ready")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "node {} not ready; log:\n{}", self.id, self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    pub fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// This node as the shared scenarios reach it.
    pub fn peer(&self) -> Peer {
        Peer { port: self.port, token: TOKEN }
    }

    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        push_api(&self.http(path), TOKEN, method, body).await
    }

    /// Logs `username` in through this node's demo app; returns the cookie.
    pub async fn login(&self, username: &str) -> String {
        demo_login(&self.http("/login"), username).await
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM; returns how long the process took to exit.
    pub fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status().unwrap();
        let mut child = self.child.take().unwrap();
        loop {
            if child.try_wait().unwrap().is_some() {
                return started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(15), "node did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn sessions_on(node: &Node) -> Vec<Value> {
    let (status, body) = node.api("GET", "/api/sessions", None).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

#[actix_web::test]
async fn a_publish_on_a_reaches_subscribers_on_b_and_c_exactly_once() {
    let redis = RedisServer::start().await;
    let (a, b, c) = (Node::start(&redis, "a").await, Node::start(&redis, "b").await, Node::start(&redis, "c").await);
    scenarios::a_publish_reaches_the_other_nodes_once(&a.peer(), &b.peer(), &c.peer()).await;
}

#[actix_web::test]
async fn subscribed_precedes_events_while_it_waits_for_the_registry() {
    let redis = RedisServer::start().await;
    let node = Node::start(&redis, "order").await;
    crate::v2::subscribe_replies_keep_their_place_among_events(&node.ws()).await;
}

#[actix_web::test]
async fn filters_by_session_authid_and_role_apply_across_nodes() {
    let redis = RedisServer::start().await;
    let (a, b, c) = (Node::start(&redis, "a").await, Node::start(&redis, "b").await, Node::start(&redis, "c").await);
    // Logged in on A, connected to C: one session store behind every node.
    let alice_cookie = a.login("alice").await;
    let alice = V2Session::connect_with_headers(&c.ws(), "r", &[("Cookie", &alice_cookie)]).await.unwrap();
    scenarios::filters_apply_across_nodes(&a.peer(), &b.peer(), &c.peer(), alice).await;
}

#[actix_web::test]
async fn lookups_see_alice_on_a_and_c_and_disconnect_everywhere_closes_both() {
    let redis = RedisServer::start().await;
    let (a, b, c) = (Node::start(&redis, "a").await, Node::start(&redis, "b").await, Node::start(&redis, "c").await);
    let cookie = b.login("alice").await;
    let on_a = V2Session::connect_with_headers(&a.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    let mut on_c = V2Session::connect_with_headers(&c.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    on_c.subscribe("inbox").await.unwrap();
    scenarios::lookups_and_disconnect_everywhere(&b.peer(), on_a, on_c).await;
}

#[actix_web::test]
async fn push_api_checks_the_token_and_the_body() {
    let redis = RedisServer::start().await;
    let a = Node::start(&redis, "a").await;
    let client = awc::Client::default();
    let r = client.get(a.http("/api/sessions")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client.get(a.http("/api/sessions")).insert_header(("Authorization", "Bearer nope")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let (status, body) = a.api("POST", "/api/publish", Some(json!({"topic": "bad topic"}))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = a.api("POST", "/api/publish", Some(json!({"topic": "t", "eligible": "x"}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("invalid JSON body"), "{body}");
}

/// Subscribers of a Redis pub/sub channel (PUBSUB NUMSUB).
async fn channel_subscribers(redis: &RedisServer, channel: &str) -> i64 {
    let mut conn = redis.connection().await;
    let reply: Vec<redis::Value> =
        redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(&mut conn).await.unwrap();
    match &reply[1] {
        redis::Value::Int(n) => *n,
        other => panic!("{other:?}"),
    }
}

async fn numsub(redis: &RedisServer, topic: &str) -> i64 {
    channel_subscribers(redis, &format!("sbtest:t:{topic}")).await
}

async fn metric(node: &Node, name: &str) -> u64 {
    let body = awc::Client::default().get(node.http("/metrics")).send().await.unwrap().body().await.unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).unwrap().parse().unwrap()
}

#[actix_web::test]
async fn a_node_without_subscribers_receives_nothing_for_a_topic() {
    let redis = RedisServer::start().await;
    let (a, b, c) = (Node::start(&redis, "a").await, Node::start(&redis, "b").await, Node::start(&redis, "c").await);
    let mut sub = V2Session::connect(&b.ws(), "r").await.unwrap();
    let id = sub.subscribe("only.b").await.unwrap();
    assert_eq!(numsub(&redis, "only.b").await, 1, "only node b subscribes in Redis");
    let mut p = V2Session::connect(&a.ws(), "r").await.unwrap();
    for i in 0..20 {
        p.publish_acked("only.b", dict(json!({})), vec![json!(i)]).await.unwrap();
    }
    for i in 0..20 {
        assert_eq!(sub.next_event(WAIT).await.unwrap().3, vec![json!(i)]);
    }
    assert_eq!(metric(&c, "switchboard_backplane_received_total").await, 0, "node c received traffic");
    assert_eq!(metric(&b, "switchboard_backplane_received_total").await, 20);
    // Each PUBLISH is timed: the 20 publications and the session meta event of `p` joining on a.
    assert_eq!(metric(&a, "switchboard_backplane_publish_seconds_count").await, 21, "each PUBLISH is timed");
    sub.unsubscribe(id).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while numsub(&redis, "only.b").await != 0 {
        assert!(Instant::now() < deadline, "node b kept its Redis subscription after its topic emptied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn user_channel_subscribers(redis: &RedisServer, authid: &str) -> i64 {
    channel_subscribers(redis, &format!("sbtest:user:{authid}")).await
}

#[actix_web::test]
async fn a_message_for_alice_travels_only_to_the_node_holding_her() {
    let redis = RedisServer::start().await;
    let (a, b, c) = (Node::start(&redis, "a").await, Node::start(&redis, "b").await, Node::start(&redis, "c").await);
    let cookie = a.login("alice").await;
    let mut alice = V2Session::connect_with_headers(&c.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    // WELCOME means her node already listens for messages to her.
    assert_eq!(user_channel_subscribers(&redis, "alice").await, 1);
    let mut others = Vec::new();
    for node in [&b, &c] {
        let mut s = V2Session::connect(&node.ws(), "r").await.unwrap();
        s.subscribe("room").await.unwrap();
        others.push(s);
    }
    alice.subscribe("room").await.unwrap();
    let mut p = V2Session::connect(&a.ws(), "r").await.unwrap();
    for i in 0..10 {
        p.publish_acked("room", dict(json!({"eligible_authid": ["alice"]})), vec![json!(i)]).await.unwrap();
    }
    for i in 0..10 {
        assert_eq!(alice.next_event(WAIT).await.unwrap().3, vec![json!(i)]);
    }
    for s in &mut others {
        s.expect_no_event(QUIET).await.unwrap();
    }
    assert_eq!(metric(&b, "switchboard_backplane_received_total").await, 0, "node b holds no alice");
    assert_eq!(metric(&c, "switchboard_backplane_received_total").await, 10);
    // An untargeted publication still reaches every subscribing node.
    p.publish_acked("room", dict(json!({})), vec![json!("all")]).await.unwrap();
    for s in others.iter_mut().chain([&mut alice]) {
        assert_eq!(s.next_event(WAIT).await.unwrap().3, vec![json!("all")]);
    }
    alice.socket.close().await.unwrap();
    let deadline = Instant::now() + WAIT;
    while user_channel_subscribers(&redis, "alice").await != 0 {
        assert!(Instant::now() < deadline, "node c kept listening for alice after her last session left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn a_killed_node_leaves_lookups_within_the_lease_and_restarts_without_ghosts() {
    let redis = RedisServer::start().await;
    let a = Node::start(&redis, "a").await;
    let mut c = Node::start(&redis, "c").await;
    let _s1 = V2Session::connect(&c.ws(), "r").await.unwrap();
    let _s2 = V1Session::connect(&c.ws()).await.unwrap();
    let _on_a = V2Session::connect(&a.ws(), "r").await.unwrap();
    let on_c = |sessions: &[Value]| sessions.iter().filter(|s| s["node"] == "c").count();
    assert_eq!(on_c(&sessions_on(&a).await), 2);

    c.kill9();
    let killed = Instant::now();
    while on_c(&sessions_on(&a).await) > 0 {
        assert!(killed.elapsed() < LEASE + Duration::from_millis(1500), "c's sessions outlived its lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(killed.elapsed() >= Duration::from_millis(200), "sessions vanished before the lease could expire");
    // The janitor purges them from Redis too.
    let mut conn = redis.connection().await;
    let deadline = Instant::now() + LEASE * 3;
    loop {
        let left: i64 = redis::cmd("SCARD").arg("sbtest:n:c").query_async(&mut conn).await.unwrap();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "dead node's entries were not purged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let c2 = Node::start(&redis, "c").await;
    assert_eq!(on_c(&sessions_on(&a).await), 0, "ghosts after restart");
    let fresh = V2Session::connect(&c2.ws(), "r").await.unwrap();
    let sessions = sessions_on(&a).await;
    assert_eq!(on_c(&sessions), 1);
    assert!(sessions.iter().any(|s| s["session"] == json!(fresh.id)));
    assert_eq!(sessions.iter().filter(|s| s["node"] == "a").count(), 1, "a's entries are untouched");
}

#[actix_web::test]
async fn session_meta_events_reach_watchers_on_every_node_once() {
    let redis = RedisServer::start().await;
    let (a, b, c) = (Node::start(&redis, "a").await, Node::start(&redis, "b").await, Node::start(&redis, "c").await);
    let mut watchers = Vec::new();
    for node in [&a, &b, &c] {
        let cookie = node.login("watcher").await;
        watchers.push(V2Session::connect_with_headers(&node.ws(), "r", &[("Cookie", &cookie)]).await.unwrap());
    }
    scenarios::session_meta_events_reach_every_node_once(&a.peer(), watchers).await;
}

#[actix_web::test]
async fn subscription_meta_api_agrees_across_nodes_through_redis() {
    let redis = RedisServer::start().await;
    let (a, b, c) = (Node::start(&redis, "a").await, Node::start(&redis, "b").await, Node::start(&redis, "c").await);
    let mut watchers = Vec::new();
    for node in [&a, &b, &c] {
        let cookie = node.login("watcher").await;
        watchers.push(V2Session::connect_with_headers(&node.ws(), "r", &[("Cookie", &cookie)]).await.unwrap());
    }
    scenarios::subscription_meta_agrees_across_nodes(&a.peer(), &b.peer(), &c.peer(), watchers).await;
}

#[actix_web::test]
async fn a_killed_nodes_subscriptions_end_once_announced_by_one_survivor() {
    let redis = RedisServer::start().await;
    let a = Node::start(&redis, "a").await;
    let b = Node::start(&redis, "b").await;
    let mut c = Node::start(&redis, "c").await;
    let mut victim = V2Session::connect(&c.ws(), "r").await.unwrap();
    let shared = victim.subscribe("chat.shared").await.unwrap();
    let alone = victim.subscribe("chat.alone").await.unwrap();
    let mut watchers = Vec::new();
    for node in [&a, &b] {
        let cookie = node.login("watcher").await;
        let mut w = V2Session::connect_with_headers(&node.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
        w.subscribe_with("wamp.subscription.on_", dict(json!({"match": "prefix"}))).await.unwrap();
        watchers.push(w);
    }
    let mut survivor = V2Session::connect(&a.ws(), "r").await.unwrap();
    assert_eq!(survivor.subscribe("chat.shared").await.unwrap(), shared);
    for w in watchers.iter_mut() {
        let (_, _, _, args) = w.next_event(WAIT).await.unwrap();
        assert_eq!(args, vec![json!(survivor.id), json!(shared)], "on_subscribe");
    }
    c.kill9();
    let killed = Instant::now();
    for w in watchers.iter_mut() {
        let mut got = Vec::new();
        for _ in 0..3 {
            let (_, _, details, args) = w.next_event(LEASE + Duration::from_secs(5)).await.unwrap();
            got.push((details["topic"].as_str().unwrap().to_owned(), args));
        }
        got.sort_by_key(|(topic, args)| (topic.clone(), args[1].as_u64()));
        let mut expected = vec![
            ("wamp.subscription.on_unsubscribe".to_owned(), vec![json!(victim.id), json!(shared)]),
            ("wamp.subscription.on_unsubscribe".to_owned(), vec![json!(victim.id), json!(alone)]),
            ("wamp.subscription.on_delete".to_owned(), vec![json!(victim.id), json!(alone)]),
        ];
        expected.sort_by_key(|(topic, args)| (topic.clone(), args[1].as_u64()));
        assert_eq!(got, expected, "the shared subscription lives on with the survivor");
        assert!(killed.elapsed() < LEASE + Duration::from_secs(5), "{:?} after the kill", killed.elapsed());
    }
    for w in watchers.iter_mut() {
        w.expect_no_event(LEASE).await.unwrap();
    }
    let count = "wamp.subscription.count_subscribers";
    let (args, _) = watchers[0].call(count, vec![json!(shared)], Default::default()).await.unwrap();
    assert_eq!(args, vec![json!(1)]);
    match watchers[1].call(count, vec![json!(alone)], Default::default()).await {
        Err(switchboard::client::ClientError::Wamp { error, .. }) => {
            assert_eq!(error, "wamp.error.no_such_subscription")
        }
        other => panic!("{other:?}"),
    }
}

#[actix_web::test]
async fn a_killed_nodes_sessions_leave_once_announced_by_one_survivor() {
    let redis = RedisServer::start().await;
    let a = Node::start(&redis, "a").await;
    let b = Node::start(&redis, "b").await;
    let mut c = Node::start(&redis, "c").await;
    let victim = V2Session::connect(&c.ws(), "r").await.unwrap();
    let mut watchers = Vec::new();
    for node in [&a, &b] {
        let cookie = node.login("watcher").await;
        let mut w = V2Session::connect_with_headers(&node.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
        w.subscribe("wamp.session.on_leave").await.unwrap();
        watchers.push(w);
    }
    c.kill9();
    let killed = Instant::now();
    for w in watchers.iter_mut() {
        let (_, _, _, args) = w.next_event(LEASE + Duration::from_secs(5)).await.unwrap();
        assert_eq!(args, vec![json!(victim.id), json!(format!("anon-{}", victim.id)), json!("anonymous")]);
        assert!(
            killed.elapsed() < LEASE + Duration::from_secs(5),
            "on_leave came {:?} after the kill",
            killed.elapsed()
        );
    }
    // Both survivors run the janitor: the purge is atomic, so only one announces.
    for w in watchers.iter_mut() {
        w.expect_no_event(LEASE).await.unwrap();
    }
}

#[actix_web::test]
async fn a_kill_on_one_node_closes_sessions_on_the_others_through_redis() {
    let redis = RedisServer::start().await;
    let extra = "[meta]\nkill_roles = [\"user\"]\n";
    let a = Node::start_env(&redis, "a", extra, &[]).await;
    let b = Node::start_env(&redis, "b", extra, &[]).await;
    let cookie = a.login("admin").await;
    let mut admin = V2Session::connect_with_headers(&a.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    let mut victim = V2Session::connect(&b.ws(), "r").await.unwrap();
    let (args, _) =
        admin.call("wamp.session.kill", vec![json!(victim.id)], dict(json!({"message": "bye"}))).await.unwrap();
    assert!(args.is_empty());
    loop {
        if let Message::Goodbye { reason, .. } = victim.next_message(WAIT).await.unwrap() {
            assert_eq!(reason, "wamp.close.killed");
            break;
        }
    }
}

#[actix_web::test]
async fn a_user_whose_only_node_dies_goes_offline_once_and_comes_back_online_anywhere() {
    let redis = RedisServer::start().await;
    let extra = "[presence]\ngrace = \"500ms\"\n";
    let a = Node::start_env(&redis, "a", extra, &[]).await;
    let b = Node::start_env(&redis, "b", extra, &[]).await;
    let mut c = Node::start_env(&redis, "c", extra, &[]).await;
    let mut watchers = Vec::new();
    for node in [&a, &b] {
        let cookie = node.login("watcher").await;
        let mut w = V2Session::connect_with_headers(&node.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
        w.subscribe("switchboard.user.on_online").await.unwrap();
        w.subscribe("switchboard.user.on_offline").await.unwrap();
        watchers.push(w);
    }
    let cookie = c.login("alice").await;
    let _alice = V2Session::connect_with_headers(&c.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    // Remember each watcher's on_online id. The watchers' own login may be
    // announced after they subscribed: skip it.
    let mut online = Vec::new();
    for w in watchers.iter_mut() {
        let (mut subscription, _, _, mut args) = w.next_event(WAIT).await.unwrap();
        if args == vec![json!("watcher")] {
            (subscription, _, _, args) = w.next_event(WAIT).await.unwrap();
        }
        assert_eq!(args, vec![json!("alice")]);
        online.push(subscription);
        w.expect_no_event(QUIET).await.unwrap();
    }
    c.kill9();
    let killed = Instant::now();
    for (w, online) in watchers.iter_mut().zip(&online) {
        let (subscription, _, _, args) = w.next_event(LEASE + Duration::from_secs(6)).await.unwrap();
        assert_ne!(subscription, *online, "on_offline");
        assert_eq!(args, vec![json!("alice")]);
        assert!(killed.elapsed() < LEASE + Duration::from_millis(500) + Duration::from_secs(5));
    }
    for w in watchers.iter_mut() {
        w.expect_no_event(LEASE).await.unwrap();
    }
    let cookie = a.login("alice").await;
    let _back = V2Session::connect_with_headers(&a.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    for (w, online) in watchers.iter_mut().zip(&online) {
        assert_eq!(w.next_event(WAIT).await.unwrap().0, *online, "online again");
    }
}

#[actix_web::test]
async fn a_killed_nodes_testaments_are_published_once_by_a_survivor() {
    let redis = RedisServer::start().await;
    let a = Node::start(&redis, "a").await;
    let b = Node::start(&redis, "b").await;
    let mut c = Node::start(&redis, "c").await;
    let mut listeners = Vec::new();
    for node in [&a, &b] {
        let mut l = V2Session::connect(&node.ws(), "r").await.unwrap();
        l.subscribe("will.c").await.unwrap();
        listeners.push(l);
    }
    let mut dying = V2Session::connect(&c.ws(), "r").await.unwrap();
    let args = vec![json!("will.c"), json!(["c is gone"]), json!({}), json!({})];
    dying.call("wamp.session.add_testament", args, dict(json!({}))).await.unwrap();
    // The registry has it once c's writer applied the write (fire and forget, within milliseconds).
    let mut conn = redis.connection().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let stored: i64 =
            redis::cmd("LLEN").arg(format!("sbtest:tm:{}", dying.id)).query_async(&mut conn).await.unwrap();
        if stored == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the testament never reached the registry");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.kill9();
    let killed = Instant::now();
    for l in listeners.iter_mut() {
        let (_, _, _, args) = l.next_event(LEASE + Duration::from_secs(5)).await.unwrap();
        assert_eq!(args, vec![json!("c is gone")]);
        assert!(killed.elapsed() < LEASE + Duration::from_secs(5));
    }
    for l in listeners.iter_mut() {
        l.expect_no_event(LEASE).await.unwrap();
    }
}

#[actix_web::test]
async fn restarting_node_with_the_same_id_never_resurrects_its_old_sessions() {
    let redis = RedisServer::start().await;
    let a = Node::start(&redis, "a").await;
    let mut b = Node::start(&redis, "b").await;
    let _old = V2Session::connect(&b.ws(), "r").await.unwrap();
    b.kill9();
    // Restart at once, well within the old lease.
    let b2 = Node::start(&redis, "b").await;
    let sessions = sessions_on(&a).await;
    assert_eq!(sessions.iter().filter(|s| s["node"] == "b").count(), 0, "old incarnation's session is listed");
    drop(b2);
}

#[actix_web::test]
async fn redis_restart_mid_traffic_recovers_reports_failures_and_never_duplicates() {
    let mut redis = RedisServer::start().await;
    let a = Node::start(&redis, "a").await;
    let b = Node::start(&redis, "b").await;
    let mut sub = V2Session::connect(&b.ws(), "r").await.unwrap();
    sub.subscribe("ticks").await.unwrap();
    let mut publisher = V2Session::connect(&a.ws(), "r").await.unwrap();

    let mut seen = HashSet::new();
    let mut failed = 0;
    for i in 0..10 {
        let id = publisher.publish_acked("ticks", dict(json!({})), vec![json!(i)]).await.unwrap();
        let (_, publication, _, args) = sub.next_event(WAIT).await.unwrap();
        assert_eq!((publication, args), (id, vec![json!(i)]));
        seen.insert(publication);
    }
    redis.stop();
    let stopped = Instant::now();
    let mut i = 10;
    // Longer than redis-rs's first re-dial wait (1-2 s): a publisher that kept re-dialling on its own schedule
    // would now sleep up to a minute (a bug we had).
    while stopped.elapsed() < Duration::from_millis(3000) {
        match publisher.publish_acked("ticks", dict(json!({})), vec![json!(i)]).await {
            Ok(_) => {}
            Err(ClientError::Wamp { error, .. }) => {
                assert_eq!(error, "switchboard.error.backplane_unavailable");
                failed += 1;
            }
            Err(e) => panic!("{e}"),
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failed > 0, "publishes during the outage must be reported");
    let (status, _) = a.api("POST", "/api/publish", Some(json!({"topic": "ticks", "args": ["api"]}))).await;
    assert_eq!(status, 503, "the push API reports the outage");
    let mut ready = awc::Client::default().get(a.http("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<Value>().await.unwrap()["backplane"], "down");

    redis.restart().await;
    let restarted = Instant::now();
    // Cross-node delivery is back within 2 s.
    let recovered_id = loop {
        if let Ok(id) = publisher.publish_acked("ticks", dict(json!({})), vec![json!("after")]).await {
            break id;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(2),
            "publishing did not recover within 2 s; log of a:\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match sub.next_event(Duration::from_millis(200)).await {
            Ok((_, publication, _, _)) => {
                assert!(seen.insert(publication), "publication {publication} delivered twice");
                if publication == recovered_id {
                    break;
                }
            }
            Err(ClientError::Timeout(_)) => {
                // The subscriber's node may resubscribe slightly later than the publisher recovered: publish again.
                assert!(Instant::now() < deadline, "cross-node delivery did not come back");
                let _ = publisher.publish_acked("ticks", dict(json!({})), vec![json!("again")]).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    // The registry is rebuilt: b's subscriber is listed again without any reconnect.
    let deadline = Instant::now() + LEASE * 2;
    loop {
        let sessions = sessions_on(&a).await;
        if sessions.iter().any(|s| s["session"] == json!(sub.id)) {
            break;
        }
        assert!(Instant::now() < deadline, "registry not rebuilt after the Redis restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn sigterm_drains_the_node_and_deregisters_its_sessions() {
    let redis = RedisServer::start().await;
    let a = Node::start(&redis, "a").await;
    let mut b = Node::start(&redis, "b").await;
    let mut v2 = V2Session::connect(&b.ws(), "r").await.unwrap();
    let mut v1 = Socket::connect(&b.ws(), &["wamp"], &[]).await.unwrap();
    // WELCOME is sent once the registry has the session.
    assert!(matches!(v1.recv(WAIT).await.unwrap(), switchboard::client::Frame::Text(t) if t.starts_with("[0,")));
    assert_eq!(sessions_on(&a).await.iter().filter(|s| s["node"] == "b").count(), 2);
    let took = b.terminate();
    assert!(took < Duration::from_secs(10), "exit took {took:?}");
    match v2.next_message(WAIT).await.unwrap() {
        Message::Goodbye { reason, .. } => assert_eq!(reason, "wamp.close.system_shutdown"),
        other => panic!("{other:?}"),
    }
    assert_eq!(v2.socket.expect_close(WAIT).await.unwrap().0, 1001);
    assert_eq!(v1.expect_close(WAIT).await.unwrap().0, 1001);
    assert_eq!(sessions_on(&a).await.iter().filter(|s| s["node"] == "b").count(), 0, "b's sessions still listed");
}

async fn count(session: &mut V2Session, roles: Value) -> u64 {
    let args = if roles.is_null() { vec![] } else { vec![roles] };
    session.call("wamp.session.count", args, dict(json!({}))).await.unwrap().0[0].as_u64().unwrap()
}

async fn list_page(session: &mut V2Session, after: u64, limit: u64) -> Vec<u64> {
    let kwargs = dict(json!({"after": after, "limit": limit}));
    let (args, _) = session.call("wamp.session.list", vec![], kwargs).await.unwrap();
    args[0].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
}

#[actix_web::test]
async fn session_count_and_list_are_cluster_wide_and_drop_a_killed_node() {
    let redis = RedisServer::start().await;
    let a = Node::start(&redis, "a").await;
    let mut b = Node::start(&redis, "b").await;
    let mut anon_a = V2Session::connect(&a.ws(), "r").await.unwrap();
    let other_a = V2Session::connect(&a.ws(), "r").await.unwrap();
    let cookie = b.login("alice").await;
    let alice_b = V2Session::connect_with_headers(&b.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    let anon_b = V2Session::connect(&b.ws(), "r").await.unwrap();
    let mut alice_a = V2Session::connect_with_headers(&a.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();

    assert_eq!(count(&mut anon_a, Value::Null).await, 5);
    assert_eq!(count(&mut anon_a, json!(["user"])).await, 2);
    assert_eq!(count(&mut anon_a, json!(["anonymous", "user"])).await, 5);
    let mut expected = vec![anon_a.id, other_a.id, alice_b.id, anon_b.id, alice_a.id];
    expected.sort();
    let first = list_page(&mut alice_a, 0, 3).await;
    let rest = list_page(&mut alice_a, *first.last().unwrap(), 3).await;
    assert_eq!([first, rest].concat(), expected, "two pages, in id order, from both nodes");

    b.kill9();
    let killed = Instant::now();
    while count(&mut anon_a, Value::Null).await != 3 {
        assert!(killed.elapsed() < LEASE * 3, "b's sessions still counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count(&mut anon_a, json!(["user"])).await, 1);
    // A restarted b counts only its new sessions, never its previous incarnation's.
    let b2 = Node::start(&redis, "b").await;
    let _fresh = V2Session::connect(&b2.ws(), "r").await.unwrap();
    assert_eq!(count(&mut anon_a, Value::Null).await, 4);
    assert_eq!(list_page(&mut alice_a, 0, 100).await.len(), 4);
}

/// Logged-in clients calling `wamp.session.list` with `FLOOD_IN_FLIGHT` calls outstanding each.
const FLOODERS: usize = 8;
const FLOOD_IN_FLIGHT: usize = 64;
/// Sessions on the flooded node, so each list answer costs Redis real work.
const FLOOD_SESSIONS: usize = 1000;

#[actix_web::test]
async fn a_lookup_flood_never_expires_a_lease_or_forces_a_rebuild() {
    let redis = RedisServer::start().await;
    let a = Node::start(&redis, "a").await;
    let b = Node::start(&redis, "b").await;
    let mut on_b = Vec::new();
    for _ in 0..5 {
        on_b.push(V2Session::connect(&b.ws(), "r").await.unwrap());
    }
    let mut crowd = Vec::new();
    for _ in 0..FLOOD_SESSIONS {
        crowd.push(Socket::connect(&a.ws(), &["wamp"], &[]).await.unwrap());
    }
    let mut watcher = V2Session::connect(&b.ws(), "r").await.unwrap();
    let total = (FLOOD_SESSIONS + on_b.len() + 1) as u64;
    while count(&mut watcher, Value::Null).await != total {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rebuilds = (
        metric(&a, "switchboard_registry_rebuilds_total").await,
        metric(&b, "switchboard_registry_rebuilds_total").await,
    );

    let cookie = a.login("flooder").await;
    let mut flooders = Vec::new();
    for _ in 0..FLOODERS {
        flooders.push(V2Session::connect_with_headers(&a.ws(), "r", &[("Cookie", &cookie)]).await.unwrap());
    }
    let total = total + FLOODERS as u64;
    let flood = async move {
        let started = Instant::now();
        let mut answered = 0usize;
        while started.elapsed() < LEASE * 3 {
            for s in &mut flooders {
                for i in 0..FLOOD_IN_FLIGHT {
                    let call = Message::Call {
                        request: 1_000_000 + i as u64,
                        options: dict(json!({})),
                        procedure: "wamp.session.list".into(),
                        args: Some(vec![]),
                        kwargs: None,
                    };
                    s.send(&call).await.unwrap();
                }
            }
            for s in &mut flooders {
                for _ in 0..FLOOD_IN_FLIGHT {
                    match s.next_message(Duration::from_secs(30)).await.unwrap() {
                        Message::Result { .. } => answered += 1,
                        other => panic!("{other:?}"),
                    }
                }
            }
        }
        answered
    };
    let watch = async {
        // While the flood runs, node b keeps seeing every session of both nodes.
        let started = Instant::now();
        while started.elapsed() < LEASE * 3 {
            assert_eq!(count(&mut watcher, Value::Null).await, total, "a lease expired or a rebuild ran");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (answered, ()) = tokio::join!(flood, watch);
    assert!(answered > FLOODERS * FLOOD_IN_FLIGHT, "the flood ran ({answered} answers)");
    let after = (
        metric(&a, "switchboard_registry_rebuilds_total").await,
        metric(&b, "switchboard_registry_rebuilds_total").await,
    );
    assert_eq!(after, rebuilds, "no registry rebuild during the flood");
    assert_eq!(metric(&a, "switchboard_registry_errors_total").await, 0);
    let sessions = sessions_on(&a).await;
    assert_eq!(sessions.iter().filter(|s| s["node"] == "b").count(), on_b.len() + 1, "b's sessions visible on a");
    drop(crowd);
}

#[actix_web::test]
async fn a_reconnect_to_another_node_inside_the_grace_does_not_flap_presence() {
    let redis = RedisServer::start().await;
    let extra = "[presence]\ngrace = \"1s\"\n";
    let a = Node::start_env(&redis, "a", extra, &[]).await;
    let b = Node::start_env(&redis, "b", extra, &[]).await;
    let c = Node::start_env(&redis, "c", extra, &[]).await;
    let cookie = b.login("watcher").await;
    let mut watcher = V2Session::connect_with_headers(&b.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    watcher.subscribe("switchboard.user.on_online").await.unwrap();
    watcher.subscribe("switchboard.user.on_offline").await.unwrap();
    let cookie = a.login("alice").await;
    let first = V2Session::connect_with_headers(&a.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    let (mut online, _, _, mut args) = watcher.next_event(WAIT).await.unwrap();
    if args == vec![json!("watcher")] {
        (online, _, _, args) = watcher.next_event(WAIT).await.unwrap();
    }
    assert_eq!(args, vec![json!("alice")]);
    // Her network changes: the socket on a drops, the page reconnects through the load balancer to c.
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = V2Session::connect_with_headers(&c.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    watcher.expect_no_event(Duration::from_secs(3)).await.unwrap();
    // She really leaves: offline once, after the grace.
    drop(again);
    let (offline, _, _, args) = watcher.next_event(Duration::from_secs(1) + WAIT).await.unwrap();
    assert_ne!(offline, online);
    assert_eq!(args, vec![json!("alice")]);
}

#[actix_web::test]
async fn a_retained_event_published_on_one_node_reaches_get_retained_subscribers_on_others_after_it_died() {
    let redis = RedisServer::start().await;
    let mut a = Node::start(&redis, "a").await;
    let b = Node::start(&redis, "b").await;
    let cookie = a.login("alice").await;
    let mut alice = V2Session::connect_with_headers(&a.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    let retain = dict(json!({"retain": true, "disclose_me": true}));
    alice.publish_acked("news.cluster", retain, vec![json!("kept in redis")]).await.unwrap();
    a.kill9();
    let mut bob = V2Session::connect(&b.ws(), "r").await.unwrap();
    let subscription = bob.subscribe_with("news.cluster", dict(json!({"get_retained": true}))).await.unwrap();
    let (id, _, details, args) = bob.next_event(WAIT).await.unwrap();
    assert_eq!((id, args), (subscription, vec![json!("kept in redis")]));
    assert_eq!(details.get("retained"), Some(&json!(true)));
    assert_eq!(details.get("publisher_authid"), Some(&json!("alice")), "disclosed as published");
}

#[actix_web::test]
async fn kept_events_outlive_the_node_that_published_them_and_are_read_from_any_other() {
    let redis = RedisServer::start().await;
    let extra = "[[history]]\npattern = \"chat.{room}\"\nsize = 10\n";
    let mut a = Node::start_env(&redis, "a", extra, &[]).await;
    let c = Node::start_env(&redis, "c", extra, &[]).await;
    let cookie = c.login("reader").await;
    let mut reader = V2Session::connect_with_headers(&c.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    let subscription = reader.subscribe("chat.room").await.unwrap();
    let mut publisher = V2Session::connect(&a.ws(), "r").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(publisher.publish_acked("chat.room", dict(json!({})), vec![json!(i)]).await.unwrap());
    }
    for _ in 0..3 {
        reader.next_event(WAIT).await.unwrap();
    }
    a.kill9();
    let (args, _) =
        reader.call("wamp.subscription.get_events", vec![json!(subscription)], Default::default()).await.unwrap();
    let events = args[0].as_array().unwrap();
    let got: Vec<Value> = events.iter().map(|e| e["publication"].clone()).collect();
    assert_eq!(got, ids.iter().map(|id| json!(id)).collect::<Vec<_>>(), "every event, in order, from Redis");
    assert_eq!(events[2]["args"], json!([2]));
}

#[actix_web::test]
async fn a_subscriber_resuming_through_another_node_gets_every_missed_event_once_in_order_while_publishing_goes_on() {
    let redis = RedisServer::start().await;
    let extra = "[[history]]\npattern = \"chat.{room}\"\nsize = 1000\n";
    let a = Node::start_env(&redis, "a", extra, &[]).await;
    let b = Node::start_env(&redis, "b", extra, &[]).await;
    let c = Node::start_env(&redis, "c", extra, &[]).await;
    let mut on_b = V2Session::connect(&b.ws(), "r").await.unwrap();
    let mut on_c = V2Session::connect(&c.ws(), "r").await.unwrap();
    let mut first = V2Session::connect(&a.ws(), "r").await.unwrap();
    first.subscribe("chat.resume").await.unwrap();
    let mut last_seen = 0;
    for i in 0..5 {
        on_b.publish_acked("chat.resume", dict(json!({})), vec![json!(i)]).await.unwrap();
        last_seen = first.next_event(WAIT).await.unwrap().1;
    }
    drop(first);
    // 50 events while the subscriber is away: 25 through b, 25 through c.
    let mut expected = Vec::new();
    for i in 0..50 {
        let publisher = if i < 25 { &mut on_b } else { &mut on_c };
        expected.push(publisher.publish_acked("chat.resume", dict(json!({})), vec![json!(i)]).await.unwrap());
    }
    // Publishing goes on through b while the subscriber comes back through c.
    let url = b.ws();
    let live = actix_web::rt::spawn(async move {
        let mut publisher = V2Session::connect(&url, "r").await.unwrap();
        let mut ids = Vec::new();
        for i in 0..40 {
            ids.push(publisher.publish_acked("chat.resume", dict(json!({})), vec![json!(1000 + i)]).await.unwrap());
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        ids
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut again = V2Session::connect(&c.ws(), "r").await.unwrap();
    again.subscribe_with("chat.resume", dict(json!({"resume_after": last_seen}))).await.unwrap();
    expected.extend(live.await.unwrap());
    let mut got = Vec::new();
    let mut replayed = 0;
    while got.len() < expected.len() {
        let (_, publication, details, _) = again.next_event(WAIT).await.unwrap();
        assert_eq!(details.get("history_gap"), None, "the history reaches back to {last_seen}");
        replayed += usize::from(details.get("replayed").is_some());
        got.push(publication);
    }
    again.expect_no_event(QUIET).await.unwrap();
    assert_eq!(got, expected, "every event once, in order ({replayed} replayed, the rest live)");
    assert!(replayed >= 50, "the 50 missed events came from the history");
}

/// Publishes `n` events on `topic` through `publisher`, retrying while the backplane recovers; their ids.
async fn publish_kept(publisher: &mut V2Session, topic: &str, n: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ids.len() < n {
        match publisher.publish_acked(topic, dict(json!({})), vec![json!(ids.len())]).await {
            Ok(id) => ids.push(id),
            Err(ClientError::Wamp { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    ids
}

#[actix_web::test]
async fn after_a_redis_restart_without_persistence_a_resuming_client_is_told_of_the_gap() {
    let mut redis = RedisServer::start().await;
    let a = Node::start_env(&redis, "a", "[[history]]\npattern = \"chat.{room}\"\n", &[]).await;
    let mut publisher = V2Session::connect(&a.ws(), "r").await.unwrap();
    let before = publish_kept(&mut publisher, "chat.lost", 3).await;
    redis.stop();
    // While the history cannot be read, a resume is refused rather than left silently incomplete.
    let mut early = V2Session::connect(&a.ws(), "r").await.unwrap();
    match early.subscribe_with("chat.lost", dict(json!({"resume_after": before[0]}))).await {
        Err(ClientError::Wamp { error, .. }) => assert_eq!(error, "switchboard.error.registry_unavailable"),
        other => panic!("{other:?}"),
    }
    redis.restart().await;
    let after = publish_kept(&mut publisher, "chat.lost", 2).await;
    let mut client = V2Session::connect(&a.ws(), "r").await.unwrap();
    client.subscribe_with("chat.lost", dict(json!({"resume_after": before[0]}))).await.unwrap();
    let (_, first, details, _) = client.next_event(WAIT).await.unwrap();
    assert_eq!((first, details.get("history_gap")), (after[0], Some(&json!(true))), "told, not given old events");
    assert_eq!(client.next_event(WAIT).await.unwrap().1, after[1]);
    client.expect_no_event(QUIET).await.unwrap();
}

#[actix_web::test]
async fn with_appendonly_the_history_survives_a_redis_restart() {
    let mut redis = RedisServer::start_persistent().await;
    let a = Node::start_env(&redis, "a", "[[history]]\npattern = \"chat.{room}\"\n", &[]).await;
    let mut publisher = V2Session::connect(&a.ws(), "r").await.unwrap();
    let ids = publish_kept(&mut publisher, "chat.kept", 3).await;
    redis.stop();
    redis.restart().await;
    let mut client = V2Session::connect(&a.ws(), "r").await.unwrap();
    let subscribed = async {
        loop {
            match client.subscribe_with("chat.kept", dict(json!({"resume_after": ids[0]}))).await {
                Ok(_) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), subscribed).await.expect("subscribed after the restart");
    for expected in &ids[1..] {
        let (_, publication, details, _) = client.next_event(WAIT).await.unwrap();
        assert_eq!((publication, details.get("history_gap")), (*expected, None));
    }
}

#[actix_web::test]
async fn a_delivery_result_counts_her_sockets_on_every_node_through_redis() {
    let redis = RedisServer::start().await;
    let (a, b, c) = (Node::start(&redis, "a").await, Node::start(&redis, "b").await, Node::start(&redis, "c").await);
    let connect = |node: &Node, cookie: String| {
        let url = node.ws();
        async move { V2Session::connect_with_headers(&url, "r", &[("Cookie", &cookie)]).await.unwrap() }
    };
    let alice_b = connect(&b, b.login("alice").await).await;
    let alice_c = connect(&c, c.login("alice").await).await;
    let bob_c = connect(&c, c.login("bob").await).await;
    scenarios::a_delivery_result_counts_her_sockets_on_every_node(&a.peer(), alice_b, alice_c, bob_c).await;
}

#[actix_web::test]
async fn the_inbox_keeps_messages_for_an_absent_user_until_she_subscribes_through_redis() {
    let redis = RedisServer::start().await;
    let extra = "[inbox]\nttl = \"1m\"\n";
    let a = Node::start_env(&redis, "a", extra, &[]).await;
    let b = Node::start_env(&redis, "b", extra, &[]).await;
    let c = Node::start_env(&redis, "c", extra, &[]).await;
    let connect = |node: &Node| {
        let (url, login) = (node.ws(), node.http("/login"));
        async move {
            let cookie = demo_login(&login, "alice").await;
            V2Session::connect_with_headers(&url, "r", &[("Cookie", &cookie)]).await.unwrap()
        }
    };
    scenarios::the_inbox_keeps_messages_for_an_absent_user_until_she_subscribes(&a.peer(), connect(&c), connect(&b))
        .await;
}

#[actix_web::test]
async fn get_events_on_a_third_node_shows_each_caller_only_its_events_and_never_session_filtered_ones() {
    let redis = RedisServer::start().await;
    let extra = "[[history]]\npattern = \"chat.{room}\"\n";
    let a = Node::start_env(&redis, "a", extra, &[]).await;
    let b = Node::start_env(&redis, "b", extra, &[]).await;
    let c = Node::start_env(&redis, "c", extra, &[]).await;
    get_events_shows_each_caller_only_its_events(&a, &b, &c).await;
}

/// Nodes with `[[history]] pattern = "chat.{room}"`: what `wamp.subscription.get_events` on a third node shows.
pub async fn get_events_shows_each_caller_only_its_events(a: &Node, b: &Node, c: &Node) {
    let connect = |node: &Node, cookie: String| {
        let url = node.ws();
        async move { V2Session::connect_with_headers(&url, "r", &[("Cookie", &cookie)]).await.unwrap() }
    };
    let mut alice = connect(b, b.login("alice").await).await;
    let mut carol = connect(c, c.login("carol").await).await;
    let subscription = alice.subscribe("chat.filtered").await.unwrap();
    assert_eq!(carol.subscribe("chat.filtered").await.unwrap(), subscription);
    let mut publisher = V2Session::connect(&a.ws(), "r").await.unwrap();
    let publish = |options: Value, text: &'static str| (options, text);
    for (options, text) in [
        publish(json!({}), "for all"),
        publish(json!({"eligible_authid": ["alice"]}), "for alice"),
        publish(json!({"eligible": [carol.id]}), "by session"),
    ] {
        publisher.publish_acked("chat.filtered", dict(options), vec![json!(text)]).await.unwrap();
    }
    let texts =
        |args: Vec<Value>| -> Vec<Value> { args[0].as_array().unwrap().iter().map(|e| e["args"][0].clone()).collect() };
    let (args, _) =
        alice.call("wamp.subscription.get_events", vec![json!(subscription)], Default::default()).await.unwrap();
    assert_eq!(texts(args), [json!("for all"), json!("for alice")]);
    let (args, _) =
        carol.call("wamp.subscription.get_events", vec![json!(subscription)], Default::default()).await.unwrap();
    assert_eq!(texts(args), [json!("for all")], "not alice's, and the session-filtered one was never kept");
}
