//! Sentinel (`redis+sentinel://`): a master, two replicas and three Sentinels on free loopback ports, each a
//! redis-server child stopped by PID; nodes follow a failover without restarting.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::client::{ClientError, V2Session};

use crate::cluster::Node;
use crate::helpers::{dict, WAIT};
use crate::redis_faults::start_up;
use crate::redis_server::{free_port, RedisServer};

const MASTER_NAME: &str = "sbmaster";
/// Sentinel's `down-after-milliseconds`: how long the master must be silent before it is called down.
const DOWN_AFTER: Duration = Duration::from_millis(1000);

/// One redis-server in Sentinel mode.
struct SentinelProcess {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A master, two replicas and three Sentinels with quorum 2.
pub struct SentinelGroup {
    pub master: RedisServer,
    pub replicas: Vec<RedisServer>,
    sentinels: Vec<SentinelProcess>,
}

impl SentinelGroup {
    pub async fn start() -> SentinelGroup {
        let master = RedisServer::start().await;
        let replicas =
            vec![RedisServer::start_replica_of(master.port).await, RedisServer::start_replica_of(master.port).await];
        let sentinels = (0..3).map(|_| start_sentinel(master.port)).collect();
        let group = SentinelGroup { master, replicas, sentinels };
        group.wait_until_formed().await;
        group
    }

    /// `redis+sentinel://` naming all three Sentinels.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    async fn sentinel(&self, i: usize) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.sentinels[i].port)).unwrap();
        client.get_multiplexed_async_connection().await.unwrap()
    }

    /// The master's port as the first Sentinel names it.
    pub async fn master_port(&self) -> u16 {
        let mut conn = self.sentinel(0).await;
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER_NAME)
            .query_async(&mut conn)
            .await
            .unwrap();
        port
    }

    /// Both replicas are in sync and every Sentinel sees them and the two other Sentinels (needed to agree on
    /// a failover).
    async fn wait_until_formed(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        'again: loop {
            assert!(Instant::now() < deadline, "the Sentinel group did not form");
            tokio::time::sleep(Duration::from_millis(200)).await;
            for replica in &self.replicas {
                let mut conn = replica.connection().await;
                let info: String = redis::cmd("INFO").arg("replication").query_async(&mut conn).await.unwrap();
                if !info.contains("master_link_status:up") {
                    continue 'again;
                }
            }
            for i in 0..self.sentinels.len() {
                let mut conn = self.sentinel(i).await;
                let fields: Vec<String> =
                    redis::cmd("SENTINEL").arg("master").arg(MASTER_NAME).query_async(&mut conn).await.unwrap();
                let field = |name: &str| {
                    fields.iter().position(|f| f == name).and_then(|p| fields.get(p + 1)).cloned().unwrap_or_default()
                };
                if field("num-slaves") != "2" || field("num-other-sentinels") != "2" {
                    continue 'again;
                }
            }
            return;
        }
    }
}

fn start_sentinel(master_port: u16) -> SentinelProcess {
    spawn_sentinel(|port, dir| {
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} {}\nsentinel failover-timeout {MASTER_NAME} 5000\n\
             sentinel parallel-syncs {MASTER_NAME} 2\n",
            dir.display(),
            DOWN_AFTER.as_millis()
        )
    })
}

/// A redis-server in Sentinel mode on a free port, its config (which Sentinel rewrites) written by `config`
/// from the port and a temporary directory of its own.
fn spawn_sentinel(config: impl FnOnce(u16, &std::path::Path) -> String) -> SentinelProcess {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("switchboard-sentinel-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sentinel.conf");
    std::fs::write(&file, config(port, &dir)).unwrap();
    let child = Command::new("redis-server")
        .arg(&file)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server runs in Sentinel mode");
    SentinelProcess { port, child, dir }
}

async fn start_node(group: &SentinelGroup, id: &str) -> Node {
    Node::start_env(&group.master, id, "", &[("SWITCHBOARD_REDIS_URL", group.url())]).await
}

#[actix_web::test]
async fn nodes_follow_a_sentinel_failover_without_restarting() {
    let mut group = SentinelGroup::start().await;
    let a = start_node(&group, "sentinel-a").await;
    let b = start_node(&group, "sentinel-b").await;
    let cookie = a.login("alice").await;
    // The web session must have reached the replicas before the master dies (replication is asynchronous).
    let mut master = group.master.connection().await;
    let _: () = redis::cmd("SET").arg("sbtest:replication-mark").arg(1).query_async(&mut master).await.unwrap();
    let acked: i64 = redis::cmd("WAIT").arg(2).arg(5000).query_async(&mut master).await.unwrap();
    assert_eq!(acked, 2, "both replicas acknowledge the writes so far");
    let mut alice = V2Session::connect_with_headers(&b.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    assert_eq!(alice.authid(), "alice");
    alice.subscribe("failover/ticks").await.unwrap();
    let mut publisher = V2Session::connect(&a.ws(), "r").await.unwrap();
    let first = publisher.publish_acked("failover/ticks", dict(json!({})), vec![json!(0)]).await.unwrap();
    assert_eq!(alice.next_event(WAIT).await.unwrap().1, first);

    let old_port = group.master.port;
    group.master.stop();
    let killed = Instant::now();
    let mut failed = 0;
    let mut acked_ids = Vec::new();
    let mut failover_at = None;
    let mut seen = HashSet::from([first]);
    let recovered_at = loop {
        let elapsed = killed.elapsed();
        assert!(elapsed < Duration::from_secs(30), "no failover followed within 30 s; log of a:\n{}", a.log());
        if failover_at.is_none() && group.master_port().await != old_port {
            failover_at = Some(elapsed);
        }
        match publisher.publish_acked("failover/ticks", dict(json!({})), vec![json!("tick")]).await {
            Ok(id) => acked_ids.push(id),
            Err(ClientError::Wamp { error, .. }) => {
                assert_eq!(error, "switchboard.error.backplane_unavailable");
                failed += 1;
            }
            Err(e) => panic!("{e}"),
        }
        while let Ok((_, id, _, _)) = alice.next_event(Duration::from_millis(50)).await {
            assert!(seen.insert(id), "publication {id} delivered twice");
        }
        // Recovered: the latest acknowledged publication crossed to the other node after the failover.
        if failover_at.is_some() && acked_ids.last().is_some_and(|id| seen.contains(id)) {
            break killed.elapsed();
        }
    };
    let failover_at = failover_at.unwrap();
    assert!(failed > 0, "publishes while no master could be reached must be reported");
    assert!(
        recovered_at <= failover_at + Duration::from_secs(2),
        "cross-node delivery came back {:?} after Sentinel's failover (at {failover_at:?}); log of a:\n{}",
        recovered_at - failover_at,
        a.log()
    );
    // Sessions resolve through the new master, on both nodes.
    let deadline = failover_at + Duration::from_secs(2);
    for node in [&a, &b] {
        loop {
            match V2Session::connect_with_headers(&node.ws(), "r", &[("Cookie", &cookie)]).await {
                Ok(again) if again.authid() == "alice" => break,
                outcome => assert!(
                    killed.elapsed() < deadline,
                    "the session did not resolve on {} within 2 s of the failover: {:?}",
                    node.id,
                    outcome.map(|s| s.authid().to_owned())
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(a.log().contains("Redis master 'sbmaster' moved"), "{}", a.log());
    while let Ok((_, id, _, _)) = alice.next_event(Duration::from_millis(300)).await {
        assert!(seen.insert(id), "publication {id} delivered twice");
    }
    let lost = acked_ids.iter().filter(|id| !seen.contains(id)).count();
    eprintln!(
        "sentinel failover: master killed, Sentinel switched at {failover_at:?}, delivery back at {recovered_at:?}; \
         {failed} publishes refused (reported), {lost} acknowledged but not delivered"
    );
    assert_eq!(lost, 0, "an acknowledged publication never reached the other node: a silent loss");
}

#[actix_web::test]
async fn a_sentinel_url_nobody_answers_or_with_an_unknown_master_stops_the_node_naming_the_key() {
    let nobody = format!("redis+sentinel://127.0.0.1:{}/{MASTER_NAME}", free_port());
    let exit = start_up(&nobody, &[]);
    assert_eq!(exit.code, Some(2), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("redis.url") && exit.stderr.contains("no Sentinel named the master"),
        "{}",
        exit.stderr
    );

    let group = SentinelGroup::start().await;
    let unknown = group.url().replace(MASTER_NAME, "nosuchmaster");
    let exit = start_up(&unknown, &[]);
    assert_eq!(exit.code, Some(2), "{}", exit.stderr);
    assert!(exit.stderr.contains("monitors no master named 'nosuchmaster'"), "{}", exit.stderr);

    let exit = start_up("redis+sentinel://127.0.0.1:1,127.0.0.1:x/m", &[]);
    assert_eq!(exit.code, Some(2), "{}", exit.stderr);
    assert!(exit.stderr.contains("redis.url") && exit.stderr.contains("invalid port"), "{}", exit.stderr);
}

#[actix_web::test]
async fn rediss_sentinel_reaches_the_sentinels_and_the_master_over_tls() {
    let master = RedisServer::start_tls().await;
    let ca = master.tls_ca().unwrap();
    let certs = ca.parent().unwrap().to_owned();
    let sentinel = spawn_sentinel(|port, dir| {
        format!(
            "port 0\ntls-port {port}\nbind 127.0.0.1\ndir {}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
             tls-auth-clients no\ntls-replication yes\nsentinel monitor {MASTER_NAME} 127.0.0.1 {} 1\n",
            dir.display(),
            certs.join("server.crt").display(),
            certs.join("server.key").display(),
            ca.display(),
            master.port
        )
    });
    let port = sentinel.port;
    let url = format!("rediss+sentinel://127.0.0.1:{port}/{MASTER_NAME}");
    // The Sentinel answers once it has read its config and reached the master.
    let tls_ca = switchboard::cluster::redis::conn::TlsCa::load(&ca).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let endpoint = switchboard::cluster::redis::conn::RedisEndpoint::open(
            switchboard::cluster::redis::conn::CLUSTER_URL_SETTING,
            &url,
            Some(&tls_ca),
            Duration::from_secs(1),
        )
        .unwrap();
        if endpoint.check().await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the TLS Sentinel did not name the master");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Node::start_env hands the TLS master's private CA to the nodes (SWITCHBOARD_REDIS_TLS_CA).
    let a = Node::start_env(&master, "sentinel-tls-a", "", &[("SWITCHBOARD_REDIS_URL", url.clone())]).await;
    let b = Node::start_env(&master, "sentinel-tls-b", "", &[("SWITCHBOARD_REDIS_URL", url)]).await;
    let cookie = a.login("alice").await;
    let mut alice = V2Session::connect_with_headers(&b.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    assert_eq!(alice.authid(), "alice", "a session written through a resolves on b");
    alice.subscribe("tls.sentinel").await.unwrap();
    let mut publisher = V2Session::connect(&a.ws(), "r").await.unwrap();
    let id = publisher.publish_acked("tls.sentinel", dict(json!({})), vec![json!(1)]).await.unwrap();
    assert_eq!(alice.next_event(WAIT).await.unwrap().1, id);
}
