//! Redis Cluster (`redis.cluster`): 3 masters + 3 replicas on free loopback ports (each redis-server a child
//! stopped by PID), the shared cluster scenarios on it, a master SIGKILLed mid-traffic and a slot migrated
//! mid-traffic.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::client::{ClientError, V2Session};
use switchboard::cluster::redis::keys::Keys;

use crate::cluster::Node;
use crate::helpers::{dict, WAIT};
use crate::redis_server::{free_port, RedisServer};
use crate::scenarios;

/// `cluster-node-timeout`: how long a master may be silent before its replica takes over.
const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

struct ClusterProcess {
    port: u16,
    child: Option<Child>,
}

/// A Redis Cluster of 3 masters, each with one replica.
pub struct RedisCluster {
    nodes: Vec<ClusterProcess>,
    dir: PathBuf,
}

impl RedisCluster {
    pub async fn start() -> RedisCluster {
        let dir = std::env::temp_dir().join(format!("switchboard-redis-cluster-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut nodes = Vec::new();
        for _ in 0..6 {
            nodes.push(spawn_cluster_node(&dir).await);
        }
        let cluster = RedisCluster { nodes, dir };
        let addresses: Vec<String> = cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli is installed (Debian package redis-tools)");
        assert!(created.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&created.stdout));
        cluster.wait_until_ok().await;
        cluster
    }

    /// `SWITCHBOARD_REDIS_CLUSTER`: every node as a seed.
    pub fn seeds(&self) -> String {
        self.nodes.iter().map(|n| format!("redis://127.0.0.1:{}", n.port)).collect::<Vec<_>>().join(",")
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes.iter().filter(|n| n.child.is_some()).map(|n| n.port).collect()
    }

    /// Every live node says `cluster_state:ok`, and every replica is in sync with its master (a replica that
    /// never synced would not take over).
    async fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut ok = true;
            for port in self.live_ports() {
                let info: String = query(port, redis::cmd("CLUSTER").arg("INFO")).await.unwrap_or_default();
                ok &= info.contains("cluster_state:ok");
                let replication: String = query(port, redis::cmd("INFO").arg("replication")).await.unwrap_or_default();
                ok &= !replication.contains("role:slave") || replication.contains("master_link_status:up");
            }
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the Redis Cluster did not reach cluster_state:ok");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The port of the master serving `slot`, as a live node sees it, and that master's node id.
    pub async fn master_of(&self, slot: u16) -> (u16, String) {
        let port = self.live_ports()[0];
        let nodes: String = query(port, redis::cmd("CLUSTER").arg("NODES")).await.unwrap();
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            for range in &fields[8..] {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                let (Ok(from), Ok(to)) = (from.parse::<u16>(), to.parse::<u16>()) else { continue };
                if (from..=to).contains(&slot) {
                    let port = fields[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
                    return (port, fields[0].to_owned());
                }
            }
        }
        panic!("no master serves slot {slot}:\n{nodes}");
    }

    /// Another master than the one on `port`, with its node id.
    pub async fn other_master(&self, port: u16) -> (u16, String) {
        for slot in [0, 8000, 16383] {
            let (other, id) = self.master_of(slot).await;
            if other != port {
                return (other, id);
            }
        }
        panic!("only one master");
    }

    /// SIGKILLs the node on `port`.
    pub fn kill(&mut self, port: u16) {
        let node = self.nodes.iter_mut().find(|n| n.port == port).unwrap();
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Moves `slot` (holding no keys) from the master on `from` to the master on `to`, as `redis-cli --cluster
    /// reshard` does: IMPORTING/MIGRATING, then the new owner announced to both.
    pub async fn migrate_slot(&self, slot: u16, from: (u16, &str), to: (u16, &str)) {
        let set = |port: u16, args: Vec<String>| async move {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SETSLOT").arg(slot).arg(args);
            query::<String>(port, &mut cmd).await.unwrap();
        };
        set(to.0, vec!["IMPORTING".into(), from.1.into()]).await;
        set(from.0, vec!["MIGRATING".into(), to.1.into()]).await;
        set(to.0, vec!["NODE".into(), to.1.into()]).await;
        set(from.0, vec!["NODE".into(), to.1.into()]).await;
        self.wait_until_ok().await;
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn query<T: redis::FromRedisValue>(port: u16, cmd: &mut redis::Cmd) -> redis::RedisResult<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    cmd.query_async(&mut conn).await
}

/// A cluster-enabled redis-server on free ports (client and bus), answering PING. Another test may take a port
/// between our probe and redis-server's bind: a server that exits is started again on other ports.
async fn spawn_cluster_node(dir: &std::path::Path) -> ClusterProcess {
    for _ in 0..5 {
        let (port, bus) = (free_port(), free_port());
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--cluster-port", &bus.to_string()])
            .args(["--cluster-enabled", "yes", "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT.as_millis().to_string()])
            .args(["--cluster-config-file", &dir.join(format!("nodes-{port}.conf")).display().to_string()])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (Debian package redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if query::<String>(port, &mut redis::cmd("PING")).await.is_ok() {
                return ClusterProcess { port, child: Some(child) };
            }
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("no cluster-enabled redis-server started after 5 attempts");
}

/// The slot of a channel or key (`CLUSTER KEYSLOT`).
async fn slot_of(port: u16, name: &str) -> u16 {
    query(port, redis::cmd("CLUSTER").arg("KEYSLOT").arg(name)).await.unwrap()
}

/// A node on the Redis Cluster, its web sessions in `sessions` (actix-session's store is not cluster-aware).
async fn start_node(cluster: &RedisCluster, sessions: &RedisServer, id: &str, extra: &str) -> Node {
    let env = [
        ("SWITCHBOARD_REDIS_URL", String::new()),
        ("SWITCHBOARD_REDIS_CLUSTER", cluster.seeds()),
        ("SWITCHBOARD_SESSION_REDIS_URL", sessions.url()),
    ];
    Node::start_env(sessions, id, extra, &env).await
}

/// Nodes `a`, `b` and `c` (the ids the shared scenarios expect).
async fn three_nodes(cluster: &RedisCluster, sessions: &RedisServer) -> (Node, Node, Node) {
    let a = start_node(cluster, sessions, "a", "").await;
    let b = start_node(cluster, sessions, "b", "").await;
    let c = start_node(cluster, sessions, "c", "").await;
    (a, b, c)
}

#[actix_web::test]
async fn a_publish_reaches_the_other_nodes_once_through_sharded_pubsub() {
    let redis_cluster = RedisCluster::start().await;
    let sessions = RedisServer::start().await;
    let (a, b, c) = three_nodes(&redis_cluster, &sessions).await;
    assert!(a.log().contains("a Redis Cluster (sharded pub/sub"), "{}", a.log());
    scenarios::a_publish_reaches_the_other_nodes_once(&a.peer(), &b.peer(), &c.peer()).await;

    // Registry keys share one slot; topic channels spread over the shards.
    let keys = Keys::sharded("sbtest:");
    let port = redis_cluster.live_ports()[0];
    let mut masters = HashSet::new();
    for topic in ["news.world", "chat/lobby", "a", "b", "c", "d", "e", "f"] {
        masters.insert(redis_cluster.master_of(slot_of(port, &keys.topic_channel(topic)).await).await.0);
    }
    assert!(masters.len() >= 2, "topic channels should land on several masters");
    assert_eq!(slot_of(port, "{sbtest:}s:1").await, slot_of(port, "{sbtest:}u:alice").await);
}

#[actix_web::test]
async fn filters_apply_across_nodes_on_a_redis_cluster() {
    let redis_cluster = RedisCluster::start().await;
    let sessions = RedisServer::start().await;
    let (a, b, c) = three_nodes(&redis_cluster, &sessions).await;
    let alice_cookie = a.login("alice").await;
    let alice = V2Session::connect_with_headers(&c.ws(), "r", &[("Cookie", &alice_cookie)]).await.unwrap();
    scenarios::filters_apply_across_nodes(&a.peer(), &b.peer(), &c.peer(), alice).await;
}

#[actix_web::test]
async fn lookups_and_disconnect_everywhere_on_a_redis_cluster() {
    let redis_cluster = RedisCluster::start().await;
    let sessions = RedisServer::start().await;
    let (a, b, c) = three_nodes(&redis_cluster, &sessions).await;
    let cookie = b.login("alice").await;
    let on_a = V2Session::connect_with_headers(&a.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    let mut on_c = V2Session::connect_with_headers(&c.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    on_c.subscribe("inbox").await.unwrap();
    scenarios::lookups_and_disconnect_everywhere(&b.peer(), on_a, on_c).await;
}

#[actix_web::test]
async fn send_to_user_counts_her_sockets_on_every_node_on_a_redis_cluster() {
    let redis_cluster = RedisCluster::start().await;
    let sessions = RedisServer::start().await;
    let (a, b, c) = three_nodes(&redis_cluster, &sessions).await;
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
async fn history_streams_share_their_topic_channels_slot_on_a_redis_cluster() {
    let redis_cluster = RedisCluster::start().await;
    let sessions = RedisServer::start().await;
    let extra = "[[history]]\npattern = \"chat.{room}\"\n";
    let a = start_node(&redis_cluster, &sessions, "a", extra).await;
    let b = start_node(&redis_cluster, &sessions, "b", extra).await;
    let c = start_node(&redis_cluster, &sessions, "c", extra).await;
    crate::cluster::get_events_shows_each_caller_only_its_events(&a, &b, &c).await;
}

#[actix_web::test]
async fn the_offline_inbox_works_on_a_redis_cluster() {
    let redis_cluster = RedisCluster::start().await;
    let sessions = RedisServer::start().await;
    let extra = "[inbox]\nttl = \"1m\"\n";
    let a = start_node(&redis_cluster, &sessions, "a", extra).await;
    let b = start_node(&redis_cluster, &sessions, "b", extra).await;
    let c = start_node(&redis_cluster, &sessions, "c", extra).await;
    let connect = |node: &Node| {
        let (url, login) = (node.ws(), node.http("/login"));
        async move {
            let cookie = crate::helpers::demo_login(&login, "alice").await;
            V2Session::connect_with_headers(&url, "r", &[("Cookie", &cookie)]).await.unwrap()
        }
    };
    scenarios::the_inbox_keeps_messages_for_an_absent_user_until_she_subscribes(&a.peer(), connect(&c), connect(&b))
        .await;
}

#[actix_web::test]
async fn wildcard_and_unfixed_prefix_subscriptions_work_through_pattern_channels() {
    let redis_cluster = RedisCluster::start().await;
    let sessions = RedisServer::start().await;
    let a = start_node(&redis_cluster, &sessions, "rc-a", "").await;
    let b = start_node(&redis_cluster, &sessions, "rc-b", "").await;
    let mut wildcard = V2Session::connect(&b.ws(), "r").await.unwrap();
    wildcard.subscribe_with("com..update", dict(json!({"match": "wildcard"}))).await.unwrap();
    let mut anything = V2Session::connect(&b.ws(), "r").await.unwrap();
    anything.subscribe_with("co", dict(json!({"match": "prefix"}))).await.unwrap();
    let mut publisher = V2Session::connect(&a.ws(), "r").await.unwrap();
    let id = publisher.publish_acked("com.app.update", dict(json!({})), vec![json!(1)]).await.unwrap();
    assert_eq!(wildcard.next_event(WAIT).await.unwrap().1, id);
    assert_eq!(anything.next_event(WAIT).await.unwrap().1, id);
    let other = publisher.publish_acked("cobalt.x", dict(json!({})), vec![json!(2)]).await.unwrap();
    assert_eq!(anything.next_event(WAIT).await.unwrap().1, other);
    wildcard.expect_no_event(Duration::from_millis(300)).await.unwrap();
}

#[actix_web::test]
async fn a_killed_switchboard_node_leaves_lookups_within_the_lease() {
    let redis_cluster = RedisCluster::start().await;
    let sessions = RedisServer::start().await;
    let a = start_node(&redis_cluster, &sessions, "rc-a", "").await;
    let mut b = start_node(&redis_cluster, &sessions, "rc-b", "").await;
    let cookie = a.login("alice").await;
    let _alice = V2Session::connect_with_headers(&b.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    let count = |node: &Node| {
        let node_api = node.peer();
        async move {
            let (status, body) = node_api.api("GET", "/api/users/alice/sessions", None).await;
            assert_eq!(status, 200, "{body}");
            body.as_array().unwrap().len()
        }
    };
    assert_eq!(count(&a).await, 1);
    b.kill9();
    let deadline = Instant::now() + Duration::from_secs(5);
    while count(&a).await != 0 {
        assert!(Instant::now() < deadline, "a killed node's session is still listed after its lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes every 50 ms from `publisher` until a publication acknowledged after `since` reaches `subscriber`;
/// returns when that happened (after `since`), and how many publishes were refused meanwhile. Every
/// acknowledged publication must arrive: one that does not is a silent loss.
async fn publish_until_delivered(
    publisher: &mut V2Session,
    subscriber: &mut V2Session,
    topic: &str,
    seen: &mut HashSet<u64>,
    since: Instant,
) -> Option<(Duration, usize)> {
    let mut acked = Vec::new();
    let outcome = publish_until_delivered_acked(publisher, subscriber, topic, seen, since, &mut acked).await;
    while let Ok((_, id, _, _)) = subscriber.next_event(Duration::from_millis(300)).await {
        assert!(seen.insert(id), "publication {id} delivered twice");
    }
    let lost: Vec<_> = acked.iter().filter(|id| !seen.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged but never delivered (silent losses): {lost:?}");
    outcome
}

async fn publish_until_delivered_acked(
    publisher: &mut V2Session,
    subscriber: &mut V2Session,
    topic: &str,
    seen: &mut HashSet<u64>,
    since: Instant,
    acked: &mut Vec<u64>,
) -> Option<(Duration, usize)> {
    let mut refused = 0;
    let mut last = None;
    loop {
        if since.elapsed() > Duration::from_secs(30) {
            return None;
        }
        match publisher.publish_acked(topic, dict(json!({})), vec![json!("tick")]).await {
            Ok(id) => {
                last = Some(id);
                acked.push(id);
            }
            Err(ClientError::Wamp { error, .. }) => {
                assert_eq!(error, "switchboard.error.backplane_unavailable");
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
        while let Ok((_, id, _, _)) = subscriber.next_event(Duration::from_millis(50)).await {
            assert!(seen.insert(id), "publication {id} delivered twice");
        }
        if last.is_some_and(|id| seen.contains(&id)) {
            return Some((since.elapsed(), refused));
        }
    }
}

#[actix_web::test]
async fn a_master_killed_mid_traffic_fails_over_without_node_restarts() {
    let mut redis_cluster = RedisCluster::start().await;
    let sessions = RedisServer::start().await;
    let a = start_node(&redis_cluster, &sessions, "rc-a", "").await;
    let b = start_node(&redis_cluster, &sessions, "rc-b", "").await;
    // A topic whose channel lives on the registry's master: killing it fails both over.
    let any = redis_cluster.live_ports()[0];
    let (master, _) = redis_cluster.master_of(slot_of(any, "{sbtest:}").await).await;
    let mut topic = String::new();
    for n in 0.. {
        topic = format!("failover.ticks{n}");
        let channel = Keys::sharded("sbtest:").topic_channel(&topic);
        if redis_cluster.master_of(slot_of(any, &channel).await).await.0 == master {
            break;
        }
    }
    let topic = topic.as_str();
    let mut subscriber = V2Session::connect(&b.ws(), "r").await.unwrap();
    subscriber.subscribe(topic).await.unwrap();
    let mut publisher = V2Session::connect(&a.ws(), "r").await.unwrap();
    let mut seen = HashSet::new();
    publish_until_delivered(&mut publisher, &mut subscriber, topic, &mut seen, Instant::now()).await.unwrap();

    redis_cluster.kill(master);
    let killed = Instant::now();
    let Some((recovered, refused)) =
        publish_until_delivered(&mut publisher, &mut subscriber, topic, &mut seen, killed).await
    else {
        let nodes: String = query(redis_cluster.live_ports()[0], redis::cmd("CLUSTER").arg("NODES")).await.unwrap();
        panic!(
            "delivery did not come back within 30 s (killed {master}); cluster:\n{nodes}\nlog of a:\n{}\nlog of b:\n{}",
            a.log(),
            b.log()
        );
    };
    redis_cluster.wait_until_ok().await;
    let promoted = redis_cluster.master_of(slot_of(redis_cluster.live_ports()[0], "{sbtest:}").await).await.0;
    assert_ne!(promoted, master, "a replica took the slot over");
    eprintln!(
        "redis cluster failover: the master of the topic's and the registry's slots killed; delivery back after {recovered:?} \
         (cluster-node-timeout {NODE_TIMEOUT:?}); {refused} publishes refused (reported)"
    );
    assert!(recovered < Duration::from_secs(10), "{recovered:?}; log of a:\n{}", a.log());
    // The registry failed over too: a session opened now is listed on the other node.
    let late = V2Session::connect(&b.ws(), "r").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = a.api("GET", &format!("/api/sessions/{}", late.id), None).await;
        if status == 200 && body["node"] == "rc-b" {
            break;
        }
        assert!(Instant::now() < deadline, "{status} {body}; log of b:\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn a_slot_migrated_mid_traffic_keeps_delivering() {
    let redis_cluster = RedisCluster::start().await;
    let sessions = RedisServer::start().await;
    let a = start_node(&redis_cluster, &sessions, "rc-a", "").await;
    let b = start_node(&redis_cluster, &sessions, "rc-b", "").await;
    let topic = "migrating.ticks";
    let mut subscriber = V2Session::connect(&b.ws(), "r").await.unwrap();
    subscriber.subscribe(topic).await.unwrap();
    let mut publisher = V2Session::connect(&a.ws(), "r").await.unwrap();
    let mut seen = HashSet::new();
    publish_until_delivered(&mut publisher, &mut subscriber, topic, &mut seen, Instant::now()).await.unwrap();

    let any = redis_cluster.live_ports()[0];
    let slot = slot_of(any, &Keys::sharded("sbtest:").topic_channel(topic)).await;
    let (from, from_id) = redis_cluster.master_of(slot).await;
    let (to, to_id) = redis_cluster.other_master(from).await;
    redis_cluster.migrate_slot(slot, (from, &from_id), (to, &to_id)).await;
    let moved = Instant::now();
    assert_eq!(redis_cluster.master_of(slot).await.0, to);
    let Some((recovered, refused)) =
        publish_until_delivered(&mut publisher, &mut subscriber, topic, &mut seen, moved).await
    else {
        panic!("delivery did not come back within 30 s; log of a:\n{}\nlog of b:\n{}", a.log(), b.log());
    };
    eprintln!("redis cluster slot migration: delivery back after {recovered:?}; {refused} publishes refused");
    assert!(recovered < Duration::from_secs(5), "{recovered:?}; log of b:\n{}", b.log());
    assert!(b.log().contains("moved to another shard; subscribing there"), "{}", b.log());
    // Every later publication arrives, once.
    for i in 0..10 {
        let id = publisher.publish_acked(topic, dict(json!({})), vec![json!(i)]).await.unwrap();
        let (_, got, _, _) = subscriber.next_event(WAIT).await.unwrap();
        assert_eq!(got, id);
    }
}
