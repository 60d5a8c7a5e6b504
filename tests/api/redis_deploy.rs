//! Redis deployments beyond one plain server: the session store in its own Redis, and TLS (`rediss://`) with
//! a private CA, against real node processes.

use serde_json::{json, Value};
use switchboard::client::V2Session;

use crate::cluster::Node;
use crate::helpers::{dict, WAIT};
use crate::redis_faults::{ready_body, session_entries, start_up};
use crate::redis_server::RedisServer;

#[actix_web::test]
async fn sessions_live_in_their_own_redis_apart_from_the_backplane() {
    let cluster = RedisServer::start().await;
    let sessions = RedisServer::start().await;
    let node = Node::start_env(&cluster, "apart", "", &[("SWITCHBOARD_SESSION_REDIS_URL", sessions.url())]).await;
    let cookie = node.login("alice").await;
    let socket = V2Session::connect_with_headers(&node.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    assert_eq!(socket.authid(), "alice");

    assert_eq!(session_entries(&sessions).await.len(), 1, "the web session is in the session Redis");
    assert!(session_entries(&cluster).await.is_empty(), "no web session in the cluster Redis");
    let mut conn = cluster.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg("sbtest:*").query_async(&mut conn).await.unwrap();
    assert!(!keys.is_empty(), "the registry is in the cluster Redis");
    let mut conn = sessions.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg("sbtest:*").query_async(&mut conn).await.unwrap();
    assert!(keys.is_empty(), "nothing of the cluster's in the session Redis: {keys:?}");

    // Losing the session Redis is reported as such; the backplane stays up on its own server.
    drop(sessions);
    let (status, body) = ready_body(&node).await;
    assert_eq!((status, &body["redis"], &body["backplane"]), (503, &json!("down"), &json!("up")), "{body}");
}

#[actix_web::test]
async fn rediss_with_a_private_ca_carries_sessions_and_cross_node_publishes() {
    let redis = RedisServer::start_tls().await;
    let a = Node::start(&redis, "tls-a").await;
    let b = Node::start(&redis, "tls-b").await;
    let cookie = a.login("alice").await;
    let mut subscriber = V2Session::connect_with_headers(&b.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    assert_eq!(subscriber.authid(), "alice", "a session written through node a resolves on node b");
    subscriber.subscribe("tls/news").await.unwrap();
    let mut publisher = V2Session::connect(&a.ws(), "r").await.unwrap();
    let id = publisher.publish_acked("tls/news", dict(json!({})), vec![json!("over TLS")]).await.unwrap();
    let (_, publication, _, args) = subscriber.next_event(WAIT).await.unwrap();
    assert_eq!((publication, args), (id, vec![Value::from("over TLS")]));
    assert!(a.log().contains("backplane up"), "{}", a.log());
}

#[actix_web::test]
async fn rediss_without_the_private_ca_exits_2_with_a_certificate_error() {
    let redis = RedisServer::start_tls().await;
    let exit = start_up(&redis.url(), &[]);
    assert_eq!(exit.code, Some(2), "{}", exit.stderr);
    assert!(exit.stderr.contains("redis.url") && exit.stderr.contains("rediss://"), "{}", exit.stderr);
    assert!(exit.stderr.to_lowercase().contains("certificate"), "a certificate error: {}", exit.stderr);
}
