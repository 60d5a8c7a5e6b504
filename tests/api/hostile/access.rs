//! Hostile clients of the access area (issue #9, items 5, 6, 7 and 10): v1 PREFIX floods, private topics,
//! meta-procedure enumeration and the push API without a token — each against a real node process.

use serde_json::{json, Map};
use switchboard::client::{V1Session, V2Session};
use switchboard::wamp::v1::Message as V1;

use super::Proc;
use crate::helpers::{QUIET, WAIT};

/// RSS the node may gain while a hostile client does its worst, in KiB.
const RSS_GROWTH_BOUND_KIB: u64 = 48 * 1024;

#[actix_web::test]
async fn v1_clients_defining_256_huge_prefixes_each_leave_rss_bounded_and_get_short_errors() {
    let node = Proc::start("").await;
    let mut calm = V1Session::connect(&node.ws()).await.unwrap();
    calm.call("wamp.session.count", vec![]).await.unwrap();
    let before = node.rss_kib();
    let huge = format!("http://example.com/{}#", "x".repeat(64_000));
    // Before the fix each of these connections held 16.5 MB of prefixes: 8 of them held 130 MB.
    let mut hostile = Vec::new();
    for _ in 0..8 {
        let mut s = V1Session::connect(&node.ws()).await.unwrap();
        for i in 0..256 {
            s.send(&V1::Prefix { prefix: format!("p{i}"), uri: huge.clone() }).await.unwrap();
        }
        hostile.push(s);
    }
    for s in &mut hostile {
        // The reply comes after every PREFIX before it was handled; it quotes 20 bytes, not 64 KB.
        match s.call("p0:missing/procedure", vec![]).await {
            Err(switchboard::client::ClientError::Wamp { message, .. }) => assert!(message.len() < 200, "{message}"),
            other => panic!("expected CALLERROR, got {other:?}"),
        }
    }
    let grown = node.rss_kib().saturating_sub(before);
    assert!(grown < RSS_GROWTH_BOUND_KIB, "RSS grew {grown} KiB while 8 clients defined 2,048 huge prefixes");
    assert_eq!(calm.call("wamp.session.count", vec![]).await.unwrap(), json!(9), "the calm client is served");
    assert!(node.metric("protocol_errors_total").await >= 8 * 256);
}

/// The access rules of `config/example.toml` that the attacks below probe.
const PRIVATE_AND_ADMIN_RULES: &str = r#"
[[access]]
pattern = "private/{username}"
subscribe = ["anonymous", "user"]
publish = []

[[access]]
pattern = "admin.{channel}"
subscribe = ["admin"]
publish = ["admin"]
"#;

fn not_authorized<T: std::fmt::Debug>(result: Result<T, switchboard::client::ClientError>) -> bool {
    matches!(result, Err(switchboard::client::ClientError::Wamp { ref error, .. }) if error == "wamp.error.not_authorized")
}

#[actix_web::test]
async fn an_anonymous_socket_can_neither_read_nor_forge_bob_smiths_private_messages() {
    let node = Proc::start(PRIVATE_AND_ADMIN_RULES).await;
    let cookie = node.login("bob.smith").await;
    let mut bob = V2Session::connect_with_headers(&node.ws(), "r", &[("Cookie", &cookie)]).await.unwrap();
    bob.subscribe("private/bob.smith").await.unwrap();
    let before = node.rss_kib();

    let mut attacker = V2Session::connect(&node.ws(), "r").await.unwrap();
    assert!(not_authorized(attacker.subscribe("private/bob.smith").await));
    assert!(not_authorized(attacker.publish_acked("private/bob.smith", Map::new(), vec![json!("forged")]).await));
    assert!(not_authorized(attacker.subscribe("admin.news.eu").await));
    let mut prefix = Map::new();
    prefix.insert("match".into(), json!("prefix"));
    attacker.subscribe_with("private/", prefix.clone()).await.unwrap();
    attacker.subscribe_with("admin.", prefix).await.unwrap();

    for (topic, message) in [("private/bob.smith", "for bob"), ("admin.news.eu", "for admins")] {
        let (status, body) = node.api("POST", "/api/publish", Some(json!({"topic": topic, "args": [message]}))).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(bob.next_event(WAIT).await.unwrap().3, vec![json!("for bob")]);
    bob.expect_no_event(QUIET).await.unwrap();
    attacker.expect_no_event(QUIET).await.unwrap();
    let grown = node.rss_kib().saturating_sub(before);
    assert!(grown < RSS_GROWTH_BOUND_KIB, "RSS grew {grown} KiB");
}

#[actix_web::test]
async fn anonymous_sockets_flooding_the_meta_api_learn_no_username_and_the_count_stays_right() {
    let node = Proc::start("").await;
    let mut users = Vec::new();
    for name in ["alice", "bob.smith", "carol"] {
        let cookie = node.login(name).await;
        users.push(V2Session::connect_with_headers(&node.ws(), "r", &[("Cookie", &cookie)]).await.unwrap());
    }
    let before = node.rss_kib();
    let mut attackers = Vec::new();
    for _ in 0..4 {
        attackers.push(V2Session::connect(&node.ws(), "r").await.unwrap());
    }
    for _ in 0..50 {
        for a in &mut attackers {
            for (procedure, args) in [("wamp.session.list", vec![]), ("wamp.session.get", vec![json!(users[0].id)])] {
                match a.call(procedure, args, Map::new()).await {
                    Err(switchboard::client::ClientError::Wamp { error, message }) => {
                        assert_eq!(error, "wamp.error.not_authorized");
                        assert!(!message.contains("alice"), "{message}");
                    }
                    other => panic!("{procedure} answered an anonymous caller: {other:?}"),
                }
            }
        }
    }
    let (args, _) = attackers[0].call("wamp.session.count", vec![], Map::new()).await.unwrap();
    assert_eq!(args, vec![json!(7)], "counting stays open and exact");
    let (args, _) = users[1].call("wamp.session.list", vec![json!(["user"])], Map::new()).await.unwrap();
    assert_eq!(args[0].as_array().unwrap().len(), 3, "a logged-in user still gets the list");
    let grown = node.rss_kib().saturating_sub(before);
    assert!(grown < RSS_GROWTH_BOUND_KIB, "RSS grew {grown} KiB");
}

#[actix_web::test]
async fn the_push_api_answers_a_tokenless_body_with_401_and_reads_no_oversized_body() {
    let node = Proc::start("").await;
    let mut calm = V2Session::connect(&node.ws(), "r").await.unwrap();
    calm.subscribe("news").await.unwrap();
    let before = node.rss_kib();
    let client = awc::Client::default();
    let post = |token: Option<&str>, body: String| {
        let mut request = client.post(node.http("/api/publish")).content_type("application/json");
        if let Some(token) = token {
            request = request.insert_header(("Authorization", format!("Bearer {token}")));
        }
        async move {
            let mut response = request.send_body(body).await.unwrap();
            let answer = response.json::<serde_json::Value>().await.unwrap_or_default();
            (response.status().as_u16(), answer)
        }
    };
    let (status, answer) = post(None, r#"{"zzz":1}"#.into()).await;
    assert_eq!(status, 401);
    assert!(!answer.to_string().contains("topic"), "no accepted field is listed: {answer}");
    let huge = format!(r#"{{"topic":"news","args":["{}"]}}"#, "x".repeat(8 << 20));
    for _ in 0..8 {
        assert_eq!(post(None, huge.clone()).await.0, 401);
        assert_eq!(post(Some(super::TOKEN), huge.clone()).await.0, 413);
    }
    let (status, _) = post(Some(super::TOKEN), r#"{"topic":"news","args":["calm"]}"#.into()).await;
    assert_eq!(status, 200);
    assert_eq!(calm.next_event(WAIT).await.unwrap().3, vec![json!("calm")]);
    let grown = node.rss_kib().saturating_sub(before);
    assert!(grown < RSS_GROWTH_BOUND_KIB, "RSS grew {grown} KiB after 16 bodies of 8 MiB");
}
