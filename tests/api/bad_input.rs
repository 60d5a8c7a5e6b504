//! Every row of the README's bad-input table ("Bad input: the defined answer to each case"): the defined answer,
//! and the node still serving.

use std::time::Duration;

use serde_json::json;
use switchboard::client::{ClientError, Frame, Socket, V1Session, V2Session};
use switchboard::wamp::v2::Message;
use tokio_tungstenite::tungstenite::protocol::frame::{coding::Data, coding::OpCode, Frame as RawFrame};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::helpers::*;

/// Opens a v2 socket, sends `text` before HELLO or after it, and returns ABORT's reason and the close code.
async fn abort_and_close(app: &TestApp, text: &str, after_hello: bool) -> (String, u16) {
    let mut socket = Socket::connect(&app.ws_url(), &["wamp.2.json"], &[]).await.unwrap();
    if after_hello {
        socket.send_text(r#"[1,"realm1",{"roles":{}}]"#).await.unwrap();
        assert!(matches!(socket.recv(WAIT).await.unwrap(), Frame::Text(t) if t.starts_with("[2,")));
    }
    socket.send_text(text).await.unwrap();
    let reason = match socket.recv(WAIT).await.unwrap() {
        Frame::Text(t) => match Message::decode(&t).unwrap() {
            Message::Abort { reason, .. } => reason,
            other => panic!("expected ABORT, got {other:?}"),
        },
        other => panic!("expected ABORT, got {other:?}"),
    };
    let (code, _) = socket.expect_close(WAIT).await.unwrap();
    (reason, code)
}

/// The node still answers a fresh client, and holds no session or subscription from `before`.
async fn node_is_healthy(app: &TestApp) {
    let node = app.node.clone();
    eventually("no leftover sessions or subscriptions", || {
        let m = node.metrics().render();
        node.clients().local_count() == 0 && m.contains("switchboard_subscriptions 0\n")
    })
    .await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    s.call("wamp.session.count", vec![], dict(json!({}))).await.unwrap();
}

#[actix_web::test]
async fn malformed_v2_frames_get_abort_protocol_violation_and_close_1002() {
    let app = spawn_app().await;
    for (text, after_hello) in [
        ("not json", false),
        ("not json", true),
        ("{\"a\":1}", true),
        ("[]", true),
        ("[\"x\"]", true),
        ("[999,1]", true),
        ("[32,\"1\",{},\"t\"]", true),
        ("[16,1,{},\"t\",{\"a\":1}]", true),
        ("[32,1,{},\"t\"]", false),
        ("[1,\"realm1\",{}]", true),
        ("[36,1,2,{}]", true),
        ("[70,1,{}]", true),
    ] {
        let (reason, code) = abort_and_close(&app, text, after_hello).await;
        assert_eq!(reason, "wamp.error.protocol_violation", "{text}");
        assert_eq!(code, 1002, "{text}");
    }
    node_is_healthy(&app).await;
}

#[actix_web::test]
async fn invalid_uris_and_options_get_errors_and_the_session_lives_on() {
    let app = spawn_app().await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    for (topic, options, expected) in [
        ("bad topic", json!({}), "wamp.error.invalid_uri"),
        ("a..b", json!({}), "wamp.error.invalid_uri"),
        ("a.b", json!({"match": "regex"}), "wamp.error.invalid_argument"),
    ] {
        match s.subscribe_with(topic, dict(options)).await {
            Err(ClientError::Wamp { error, .. }) => assert_eq!(error, expected, "{topic}"),
            other => panic!("{topic}: {other:?}"),
        }
    }
    for (topic, options, expected) in [
        ("bad topic", json!({}), "wamp.error.invalid_uri"),
        ("wamp.session.on_join", json!({}), "wamp.error.invalid_uri"),
        ("a.b", json!({"eligible": "everyone"}), "wamp.error.invalid_argument"),
        ("a.b", json!({"exclude_me": 3}), "wamp.error.invalid_argument"),
    ] {
        match s.publish_acked(topic, dict(options), vec![]).await {
            Err(ClientError::Wamp { error, .. }) => assert_eq!(error, expected, "{topic}"),
            other => panic!("{topic}: {other:?}"),
        }
    }
    match s.call("no such.proc", vec![], dict(json!({}))).await {
        Err(ClientError::Wamp { error, .. }) => assert_eq!(error, "wamp.error.invalid_uri"),
        other => panic!("{other:?}"),
    }
    // An unacknowledged bad publish gets no reply (autobahn would tear the session down on one).
    s.publish("bad topic", dict(json!({})), vec![]).await.unwrap();
    s.call("wamp.session.count", vec![], dict(json!({}))).await.unwrap();
}

#[actix_web::test]
async fn forbidden_topics_get_not_authorized() {
    let builder = switchboard::Switchboard::builder(test_settings())
        .access("admin.{channel}", Some(&["admin"]), Some(&["admin"]))
        .access("private/{username}", None, Some(&[]));
    let app = spawn_with(builder).await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    assert_eq!(wamp_error(s.subscribe("admin.news").await), "wamp.error.not_authorized");
    match s.publish_acked("admin.news", dict(json!({})), vec![]).await {
        Err(ClientError::Wamp { error, .. }) => assert_eq!(error, "wamp.error.not_authorized"),
        other => panic!("{other:?}"),
    }
    let own = format!("private/{}", s.authid());
    s.subscribe(&own).await.unwrap();
    assert_eq!(wamp_error(s.subscribe("private/someone-else").await), "wamp.error.not_authorized");
    // A prefix subscription cannot reach topics its subscriber could not subscribe to directly.
    let mut snoop = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    snoop.subscribe_with("admin", dict(json!({"match": "prefix"}))).await.unwrap();
    app.node.clients().publish("admin.news", switchboard::Payload::single(json!("secret")), Default::default());
    snoop.expect_no_event(QUIET).await.unwrap();
}

#[actix_web::test]
async fn oversize_frame_closes_1009() {
    let mut settings = test_settings();
    settings.websocket.max_message_size = 4096;
    let app = spawn_with(switchboard::Switchboard::builder(settings)).await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let big = format!(r#"[16,1,{{}},"t",["{}"]]"#, "x".repeat(5000));
    s.socket.send_text(big).await.unwrap();
    assert_eq!(s.socket.expect_close(WAIT).await.unwrap().0, 1009);
    node_is_healthy(&app).await;
}

#[actix_web::test]
async fn oversize_fragmented_message_closes_1009_and_small_fragments_are_reassembled() {
    let mut settings = test_settings();
    settings.websocket.max_message_size = 4096;
    let app = spawn_with(switchboard::Switchboard::builder(settings)).await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let call = r#"[48,5,{},"wamp.session.count",[]]"#.as_bytes();
    let (first, rest) = call.split_at(10);
    s.socket
        .send_raw(WsMessage::Frame(RawFrame::message(first.to_vec(), OpCode::Data(Data::Text), false)))
        .await
        .unwrap();
    s.socket
        .send_raw(WsMessage::Frame(RawFrame::message(rest.to_vec(), OpCode::Data(Data::Continue), true)))
        .await
        .unwrap();
    assert!(matches!(s.next_message(WAIT).await.unwrap(), Message::Result { request: 5, .. }));
    for _ in 0..3 {
        let chunk = vec![b' '; 2000];
        let frame = RawFrame::message(chunk, OpCode::Data(Data::Continue), false);
        s.socket.send_raw(WsMessage::Frame(frame)).await.ok();
    }
    let first = RawFrame::message(b"[48,".to_vec(), OpCode::Data(Data::Text), false);
    s.socket.send_raw(WsMessage::Frame(first)).await.ok();
    for _ in 0..3 {
        let frame = RawFrame::message(vec![b' '; 2000], OpCode::Data(Data::Continue), false);
        s.socket.send_raw(WsMessage::Frame(frame)).await.ok();
    }
    let (code, _) = s.socket.expect_close(WAIT).await.unwrap();
    assert!(code == 1009 || code == 1002, "got {code}");
    node_is_healthy(&app).await;
}

#[actix_web::test]
async fn binary_frame_on_a_json_subprotocol_closes_1003() {
    let app = spawn_app().await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    s.socket.send_binary(vec![0x91, 0x01]).await.unwrap();
    let (code, reason) = s.socket.expect_close(WAIT).await.unwrap();
    assert_eq!(code, 1003);
    assert!(reason.contains("binary"), "{reason}");
    let mut v1 = V1Session::connect(&app.ws_url()).await.unwrap();
    v1.socket.send_binary(vec![1]).await.unwrap();
    assert_eq!(v1.socket.expect_close(WAIT).await.unwrap().0, 1003);
    node_is_healthy(&app).await;
}

#[actix_web::test]
async fn invalid_utf8_text_closes_1007() {
    let app = spawn_app().await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let frame = RawFrame::message(vec![b'[', 0xff, 0xfe, b']'], OpCode::Data(Data::Text), true);
    s.socket.send_raw(WsMessage::Frame(frame)).await.unwrap();
    assert_eq!(s.socket.expect_close(WAIT).await.unwrap().0, 1007);
    node_is_healthy(&app).await;
}

#[actix_web::test]
async fn flooding_client_is_closed_1008_and_others_are_unaffected() {
    let mut settings = test_settings();
    settings.websocket.inbound_rate = 50;
    settings.websocket.inbound_burst = 100;
    let app = spawn_with(switchboard::Switchboard::builder(settings)).await;
    let mut calm = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let mut flood = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    for _ in 0..500 {
        if flood.publish("t.flood", dict(json!({})), vec![]).await.is_err() {
            break;
        }
    }
    let (code, reason) = flood.socket.expect_close(WAIT).await.unwrap();
    assert_eq!(code, 1008);
    assert!(reason.contains("rate"), "{reason}");
    calm.call("wamp.session.count", vec![], dict(json!({}))).await.unwrap();
    eventually("the flood is counted closed as rate limited", || closed_for(&app, "rate_limited") == 1).await;
}

#[actix_web::test]
async fn v2_client_that_never_sends_hello_is_aborted() {
    let mut settings = test_settings();
    settings.websocket.hello_timeout = Duration::from_millis(200);
    let app = spawn_with(switchboard::Switchboard::builder(settings)).await;
    let mut socket = Socket::connect(&app.ws_url(), &["wamp.2.json"], &[]).await.unwrap();
    match socket.recv(WAIT).await.unwrap() {
        Frame::Text(t) => assert!(t.contains("wamp.error.protocol_violation"), "{t}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(socket.expect_close(WAIT).await.unwrap().0, 1002);
    eventually("the close is counted as a hello timeout", || closed_for(&app, "hello_timeout") == 1).await;
    assert_eq!(closed_for(&app, "protocol_error"), 0);
}

#[actix_web::test]
async fn idle_client_is_closed_after_the_idle_timeout() {
    let mut settings = test_settings();
    settings.websocket.ping_interval = Duration::from_millis(100);
    settings.websocket.idle_timeout = Duration::from_millis(300);
    let app = spawn_with(switchboard::Switchboard::builder(settings)).await;
    let mut socket = Socket::connect(&app.ws_url(), &["wamp"], &[]).await.unwrap();
    // Our recv answers pings automatically (tungstenite queues the pong), but pongs only go out when we
    // write; stay silent by reading nothing until the deadline, then collect the close.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (code, reason) = socket.expect_close(WAIT).await.unwrap();
    assert_eq!(code, 1001, "{reason}");
    assert!(reason.contains("idle"), "{reason}");
}

#[actix_web::test]
async fn too_many_subscriptions_get_an_error() {
    let mut settings = test_settings();
    settings.websocket.max_subscriptions = 3;
    settings.websocket.max_pattern_subscriptions = 3;
    let app = spawn_with(switchboard::Switchboard::builder(settings)).await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    for i in 0..3 {
        s.subscribe(&format!("t.{i}")).await.unwrap();
    }
    assert_eq!(wamp_error(s.subscribe("t.3").await), "switchboard.error.too_many_subscriptions");
}

#[actix_web::test]
async fn pattern_subscriptions_beyond_their_cap_get_too_many_subscriptions_while_exact_ones_still_work() {
    let mut settings = test_settings();
    settings.websocket.max_pattern_subscriptions = 2;
    let app = spawn_with(switchboard::Switchboard::builder(settings)).await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    s.subscribe_with("p.a", dict(json!({"match": "prefix"}))).await.unwrap();
    s.subscribe_with("w..a", dict(json!({"match": "wildcard"}))).await.unwrap();
    let refused = s.subscribe_with("w..b", dict(json!({"match": "wildcard"}))).await;
    assert_eq!(wamp_error(refused), "switchboard.error.too_many_subscriptions");
    assert_eq!(
        wamp_error(s.subscribe_with("p.b", dict(json!({"match": "prefix"}))).await),
        "switchboard.error.too_many_subscriptions"
    );
    s.subscribe_with("p.a", dict(json!({"match": "prefix"})))
        .await
        .expect("subscribing again to one held is no new subscription");
    s.subscribe("exact.topic").await.unwrap();
}

/// `n` distinct names.
fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("u{i}")).collect()
}

#[actix_web::test]
async fn filter_lists_over_max_filter_entries_get_invalid_argument_naming_the_option() {
    let mut settings = test_settings();
    settings.wamp.max_filter_entries = 100;
    let app = spawn_with(switchboard::Switchboard::builder(settings)).await;
    let mut subscriber = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    subscriber.subscribe("t.filtered").await.unwrap();
    let mut publisher = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    for (option, list) in [
        ("exclude_authid", json!(names(101))),
        ("eligible_authid", json!(names(101))),
        ("exclude_authrole", json!(names(101))),
        ("eligible_authrole", json!(names(101))),
        ("exclude", json!((1..=101).collect::<Vec<u64>>())),
        ("eligible", json!((1..=101).collect::<Vec<u64>>())),
    ] {
        match publisher.publish_acked("t.filtered", dict(json!({ option: list })), vec![json!("x")]).await {
            Err(ClientError::Wamp { error, message, .. }) => {
                assert_eq!(error, "wamp.error.invalid_argument", "{option}");
                assert!(message.contains(&format!("{option} holds 101 entries; at most 100")), "{message}");
            }
            other => panic!("{option}: {other:?}"),
        }
    }
    subscriber.expect_no_event(QUIET).await.unwrap();
    let at_the_cap = dict(
        json!({"exclude_authid": names(100), "eligible_authrole": names(99).into_iter().chain(["anonymous".to_owned()]).collect::<Vec<_>>()}),
    );
    publisher.publish_acked("t.filtered", at_the_cap, vec![json!("delivered")]).await.unwrap();
    let (_, _, _, args) = subscriber.next_event(WAIT).await.unwrap();
    assert_eq!(args, vec![json!("delivered")]);
}

#[actix_web::test]
async fn v1_publish_with_an_exclude_list_over_the_cap_is_dropped() {
    let mut settings = test_settings();
    settings.wamp.max_filter_entries = 100;
    let app = spawn_with(switchboard::Switchboard::builder(settings)).await;
    let mut subscriber = V1Session::connect(&app.ws_url()).await.unwrap();
    subscriber.socket.send_text(r#"[5,"http://example.com/t"]"#).await.unwrap();
    let mut publisher = V1Session::connect(&app.ws_url()).await.unwrap();
    let exclude: Vec<String> = (1..=101).map(|i| i.to_string()).collect();
    let too_many = json!([7, "http://example.com/t", "dropped", exclude, []]).to_string();
    let within = json!([7, "http://example.com/t", "delivered", exclude[..100], []]).to_string();
    // SUBSCRIBE has no reply in v1: wait until it took effect (a publish arrives) before the real test.
    eventually_v1_subscribed(&mut publisher, &mut subscriber).await;
    publisher.socket.send_text(too_many).await.unwrap();
    publisher.socket.send_text(within).await.unwrap();
    let (_, event) = subscriber.next_event(WAIT).await.unwrap();
    assert_eq!(event, json!("delivered"), "the refused publish never arrives, the next one does");
    let m = app.node.metrics().render();
    assert!(!m.contains("switchboard_protocol_errors_total 0\n"), "the refusal is counted");
}

/// Publishes probes until `subscriber` receives one (v1 SUBSCRIBE is unanswered).
async fn eventually_v1_subscribed(publisher: &mut V1Session, subscriber: &mut V1Session) {
    for _ in 0..50 {
        publisher.socket.send_text(r#"[7,"http://example.com/t","probe"]"#).await.unwrap();
        if let Ok((_, event)) = subscriber.next_event(Duration::from_millis(100)).await {
            assert_eq!(event, json!("probe"));
            // Drain probes still in flight.
            while subscriber.next_event(Duration::from_millis(100)).await.is_ok() {}
            return;
        }
    }
    panic!("v1 subscription never took effect");
}

#[actix_web::test]
async fn slow_consumer_is_closed_1008_while_others_get_everything() {
    let mut settings = test_settings();
    settings.websocket.outbound_queue = 256;
    settings.websocket.inbound_rate = 100_000;
    settings.websocket.inbound_burst = 100_000;
    settings.websocket.inbound_bytes_rate = 1 << 30;
    let app = spawn_with(switchboard::Switchboard::builder(settings)).await;
    let mut fast = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let mut slow = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    fast.subscribe("t.firehose").await.unwrap();
    slow.subscribe("t.firehose").await.unwrap();
    // ~40 MB in chunks of 100 events. The fast client reads each chunk before the next is sent, so its backlog
    // never exceeds 100 frames however busy the machine is; the slow client reads nothing, so its socket
    // buffers fill and its 256-frame queue overflows.
    let payload = "y".repeat(8 * 1024);
    let mut publisher = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let (chunks, chunk) = (50, 100);
    for c in 0..chunks {
        for i in 0..chunk {
            publisher.publish("t.firehose", dict(json!({})), vec![json!(c * chunk + i), json!(payload)]).await.unwrap();
        }
        for i in 0..chunk {
            let (_, _, _, args) = fast.next_event(WAIT).await.unwrap();
            assert_eq!(args[0], json!(c * chunk + i), "the fast subscriber gets every event, in order");
        }
    }
    let m = app.node.metrics().render();
    assert!(!m.contains("switchboard_drops_slow_consumer_total 0\n"), "{m}");
    let (code, reason) = slow.socket.expect_close(Duration::from_secs(30)).await.unwrap();
    assert_eq!(code, 1008);
    assert!(reason.contains("slow consumer"), "{reason}");
    eventually("the slow consumer is counted closed", || closed_for(&app, "slow_consumer") == 1).await;
}

#[actix_web::test]
async fn malformed_v1_frames_close_1002() {
    let app = spawn_app().await;
    for text in ["nope", "{}", "[99]", "[5]", "[5,3]", "[2,{},\"p\"]", "[8,\"t\",1]"] {
        let mut s = V1Session::connect(&app.ws_url()).await.unwrap();
        s.socket.send_text(text).await.unwrap();
        assert_eq!(s.socket.expect_close(WAIT).await.unwrap().0, 1002, "{text}");
    }
    node_is_healthy(&app).await;
}

#[actix_web::test]
async fn v1_prefix_flood_closes_1008() {
    let app = spawn_app().await;
    let mut s = V1Session::connect(&app.ws_url()).await.unwrap();
    for i in 0..=switchboard::Settings::default().wamp.max_prefixes {
        if s.socket.send_text(format!(r#"[1,"p{i}","http://x/{i}#"]"#)).await.is_err() {
            break;
        }
    }
    assert_eq!(s.socket.expect_close(WAIT).await.unwrap().0, 1008);
}

#[actix_web::test]
async fn refusals_quote_a_long_origin_or_subprotocol_offer_as_an_excerpt() {
    let app = spawn_app().await;
    let origin = format!("http://{}.example", "e".repeat(4000));
    let offer = format!("wamp.3.{}", "x".repeat(4000));
    let refusals = [
        (403, Socket::connect(&app.ws_url(), &["wamp.2.json"], &[("Origin", &origin)]).await),
        (400, Socket::connect(&app.ws_url(), &[&offer], &[]).await),
    ];
    for (expected, refusal) in refusals {
        let Err(ClientError::Rejected { status, body }) = refusal else { panic!("not refused: {expected}") };
        assert_eq!(status, expected, "{body}");
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        let error = error["error"].as_str().unwrap();
        let quoted = error.split('\'').nth(1).unwrap();
        assert_eq!(quoted.chars().count(), switchboard::wamp::errors::MAX_EXCERPT_CHARS + 1, "{error}");
        assert!(quoted.ends_with('…'), "{error}");
    }
    node_is_healthy(&app).await;
}
