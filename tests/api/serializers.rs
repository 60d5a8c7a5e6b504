//! WAMP v2 serializers: `wamp.2.json`, `wamp.2.msgpack` and `wamp.2.cbor` on one router, one topic.

use serde_json::{json, Value};
use switchboard::client::{ClientError, Frame, Socket, V1Session, V2Session};
use switchboard::wamp::v2::Message;
use switchboard::wamp::Serializer;

use crate::helpers::*;

const MSGPACK: Serializer = Serializer::MsgPack;
const CBOR: Serializer = Serializer::Cbor;

async fn session(app: &TestApp, serializer: Serializer) -> V2Session {
    V2Session::connect_serialized(&app.ws_url(), "realm1", serializer, &[]).await.unwrap()
}

/// The next frame's bytes, as the socket got them.
async fn raw_frame(s: &mut V2Session) -> (bool, Vec<u8>) {
    match s.socket.recv(WAIT).await.unwrap() {
        Frame::Text(text) => (false, text.into_bytes()),
        Frame::Binary(bytes) => (true, bytes),
        Frame::Close { code, reason } => panic!("closed {code}: {reason}"),
    }
}

#[actix_web::test]
async fn the_client_order_picks_among_serializers_and_v2_wins_over_v1() {
    let app = spawn_app().await;
    for (offer, picked) in [
        (&["wamp.2.cbor", "wamp.2.json"][..], "wamp.2.cbor"),
        (&["wamp", "wamp.2.msgpack"][..], "wamp.2.msgpack"),
        (&["wamp.2.json", "wamp.2.cbor"][..], "wamp.2.json"),
        (&["wamp.2.ubjson", "wamp"][..], "wamp"),
    ] {
        let socket = Socket::connect(&app.ws_url(), offer, &[]).await.unwrap();
        assert_eq!(socket.protocol.as_deref(), Some(picked), "{offer:?}");
    }
    match Socket::connect(&app.ws_url(), &["wamp.2.ubjson"], &[]).await {
        Err(ClientError::Rejected { status, body }) => {
            assert_eq!(status, 400);
            assert!(body.contains("wamp.2.msgpack") && body.contains("wamp.2.cbor"), "{body}");
        }
        other => panic!("expected a 400, got {:?}", other.map(|s| s.protocol)),
    }
}

#[actix_web::test]
async fn one_topic_reaches_json_msgpack_cbor_and_v1_subscribers_from_every_serializer() {
    let app = spawn_app().await;
    let mut v1 = V1Session::connect(&app.ws_url()).await.unwrap();
    v1.send(&switchboard::wamp::v1::Message::Subscribe { topic: "mixed.topic".into() }).await.unwrap();
    // v1 has no SUBSCRIBED: a publication that arrives proves the subscription is in place.
    eventually_subscribed_v1(&app, &mut v1, "mixed.topic").await;
    let mut subscribers = Vec::new();
    for serializer in Serializer::ALL {
        let mut s = session(&app, serializer).await;
        let subscription = s.subscribe("mixed.topic").await.unwrap();
        subscribers.push((s, subscription));
    }

    for publisher in Serializer::ALL {
        let mut p = session(&app, publisher).await;
        let args = vec![json!(publisher.token()), json!({"n": 1.5, "list": [1, -2, null, true]})];
        let id = p.publish_acked("mixed.topic", dict(json!({})), args.clone()).await.unwrap();
        for (s, subscription) in &mut subscribers {
            let (sub, publication, _, got) = s.next_event(WAIT).await.unwrap();
            assert_eq!((sub, publication, &got), (*subscription, id, &args), "from {}", publisher.token());
        }
        let (topic, event) = v1.next_event(WAIT).await.unwrap();
        assert_eq!((topic.as_str(), event), ("mixed.topic", Value::Array(args)));
    }
}

/// Publishes on `topic` through a JSON session until the v1 subscriber sees it (v1 SUBSCRIBE is unanswered).
async fn eventually_subscribed_v1(app: &TestApp, v1: &mut V1Session, topic: &str) {
    let mut p = V2Session::connect(&app.ws_url(), "realm1").await.unwrap();
    for _ in 0..50 {
        p.publish_acked(topic, dict(json!({})), vec![json!("ping")]).await.unwrap();
        if v1.next_event(std::time::Duration::from_millis(100)).await.is_ok() {
            return;
        }
    }
    panic!("the v1 subscription never took effect");
}

#[actix_web::test]
async fn binary_values_stay_binary_between_binary_serializers_and_json_sees_the_spec_form() {
    let app = spawn_app().await;
    let mut json_sub = session(&app, Serializer::Json).await;
    let mut cbor_sub = session(&app, CBOR).await;
    let mut msgpack_sub = session(&app, MSGPACK).await;
    for s in [&mut json_sub, &mut cbor_sub, &mut msgpack_sub] {
        s.subscribe("bytes").await.unwrap();
    }
    // The client writes a string in the spec's JSON form of binary as a real MessagePack `bin`.
    let mut publisher = session(&app, MSGPACK).await;
    let bytes = [0u8, 1, 2, 0xff];
    let json_form = json!("\u{0}AAEC/w==");
    publisher.publish_acked("bytes", dict(json!({})), vec![json_form.clone()]).await.unwrap();

    let (_, _, _, args) = json_sub.next_event(WAIT).await.unwrap();
    assert_eq!(args, vec![json_form.clone()], "JSON subscribers see \\u0000 + base64");

    let (binary, frame) = raw_frame(&mut cbor_sub).await;
    assert!(binary, "CBOR travels in binary frames");
    let event: ciborium::Value = ciborium::de::from_reader(&frame[..]).unwrap();
    let args = event.as_array().unwrap()[4].as_array().unwrap();
    assert_eq!(args[0].as_bytes().map(Vec::as_slice), Some(&bytes[..]), "a CBOR byte string: {event:?}");

    let (binary, frame) = raw_frame(&mut msgpack_sub).await;
    assert!(binary);
    let event = rmpv::decode::read_value(&mut &frame[..]).unwrap();
    assert_eq!(event[4][0].as_slice(), Some(&bytes[..]), "a MessagePack bin: {event:?}");
}

#[actix_web::test]
async fn calls_errors_and_meta_answer_in_the_session_serializer() {
    let app = spawn_app().await;
    for serializer in [MSGPACK, CBOR] {
        let mut s = session(&app, serializer).await;
        assert_eq!(s.details["authmethod"], "anonymous", "WELCOME decoded from {}", serializer.token());
        let (args, _) = s.call("wamp.session.count", vec![], dict(json!({}))).await.unwrap();
        assert!(args[0].as_u64().unwrap() >= 1);
        let error = wamp_error(s.call("no.such.procedure", vec![], dict(json!({}))).await);
        assert!(error.contains("wamp.error.no_such_procedure"), "{error}");
        let client = app.node.clients().get_client(s.id).await.unwrap();
        assert_eq!(client.protocol, serializer.token(), "the client index records the serializer");
    }
}

#[actix_web::test]
async fn retained_events_and_unsubscribed_come_in_the_session_serializer() {
    let app = spawn_app().await;
    let mut alice = connect_as(&app, "alice").await;
    alice.publish_acked("kept", dict(json!({"retain": true})), vec![json!({"kept": true})]).await.unwrap();
    let mut s = session(&app, CBOR).await;
    let subscription = s.subscribe_with("kept", dict(json!({"get_retained": true}))).await.unwrap();
    let (id, _, details, args) = s.next_event(WAIT).await.unwrap();
    assert_eq!((id, details.get("retained"), args), (subscription, Some(&json!(true)), vec![json!({"kept": true})]));
    s.unsubscribe(subscription).await.unwrap();
}

#[actix_web::test]
async fn fragmented_binary_messages_are_reassembled() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame as RawFrame;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let app = spawn_app().await;
    let mut s = session(&app, MSGPACK).await;
    let call = Message::Call {
        request: 7,
        options: dict(json!({})),
        procedure: "wamp.session.count".into(),
        args: Some(vec![]),
        kwargs: None,
    };
    let bytes = call.encode_as(MSGPACK);
    let (head, rest) = bytes.split_at(5);
    let first = RawFrame::message(head.to_vec(), OpCode::Data(Data::Binary), false);
    s.socket.send_raw(WsMessage::Frame(first)).await.unwrap();
    let last = RawFrame::message(rest.to_vec(), OpCode::Data(Data::Continue), true);
    s.socket.send_raw(WsMessage::Frame(last)).await.unwrap();
    assert!(matches!(s.next_message(WAIT).await.unwrap(), Message::Result { request: 7, .. }));
}

#[actix_web::test]
async fn bad_binary_frames_abort_in_the_session_serializer_and_close_1002() {
    let app = spawn_app().await;
    // Not MessagePack at all; valid MessagePack with a map key JSON cannot hold; a value that is not an array.
    for (frame, says) in [
        (vec![0x92, 0x01], "invalid wamp.2.msgpack"),
        (vec![0x92, 0x20, 0x81, 0x01, 0x02], "a map key is not a string"),
        (vec![0x2a], "non-empty JSON array"),
    ] {
        let mut s = session(&app, MSGPACK).await;
        s.socket.send_binary(frame.clone()).await.unwrap();
        let (binary, abort) = raw_frame(&mut s).await;
        assert!(binary, "the ABORT is MessagePack too");
        match Message::decode_binary(MSGPACK, &abort).unwrap() {
            Message::Abort { details, reason } => {
                assert_eq!(reason, "wamp.error.protocol_violation");
                let message = details["message"].as_str().unwrap();
                assert!(message.contains(says), "{frame:x?}: {message}");
            }
            other => panic!("expected ABORT, got {other:?}"),
        }
        assert_eq!(s.socket.expect_close(WAIT).await.unwrap().0, 1002);
    }
    let mut s = session(&app, CBOR).await;
    s.socket.send_binary(vec![0x9f, 0x01]).await.unwrap();
    let (_, abort) = raw_frame(&mut s).await;
    assert!(matches!(Message::decode_binary(CBOR, &abort), Ok(Message::Abort { .. })));
    assert_eq!(s.socket.expect_close(WAIT).await.unwrap().0, 1002);
    node_is_up(&app).await;
}

#[actix_web::test]
async fn a_text_frame_on_a_binary_serializer_closes_1003() {
    let app = spawn_app().await;
    let mut s = session(&app, CBOR).await;
    s.socket.send_text(r#"[32,1,{},"t"]"#).await.unwrap();
    let (code, reason) = s.socket.expect_close(WAIT).await.unwrap();
    assert_eq!(code, 1003);
    assert!(reason.contains("text frames are not supported on wamp.2.cbor"), "{reason}");
}

async fn node_is_up(app: &TestApp) {
    let mut s = V2Session::connect(&app.ws_url(), "realm1").await.unwrap();
    s.call("wamp.session.count", vec![], dict(json!({}))).await.unwrap();
}

#[actix_web::test]
async fn across_nodes_each_node_encodes_for_its_own_subscribers() {
    let cluster = switchboard::cluster::memory::MemoryCluster::new();
    let node = |id: &str| {
        let mut settings = test_settings();
        settings.server.node_id = id.to_owned();
        spawn_with(switchboard::Switchboard::builder(settings).cluster(cluster.clone()))
    };
    let (a, b) = (node("a").await, node("b").await);
    let mut on_b = Vec::new();
    for serializer in Serializer::ALL {
        let mut s = session(&b, serializer).await;
        s.subscribe("far.topic").await.unwrap();
        on_b.push(s);
    }
    let mut publisher = session(&a, CBOR).await;
    // The receiving node writes MessagePack and CBOR from the envelope's JSON text in one pass, no value tree.
    let args = vec![
        json!("\u{0}3q2+7w=="),
        json!({"deep": [[{"x": -1}]], "\u{0}AA==": "a key in binary form stays a key"}),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(-0.25),
        json!("x".repeat(40_000)),
    ];
    publisher.publish_acked("far.topic", dict(json!({})), args.clone()).await.unwrap();
    for s in &mut on_b {
        let (_, _, _, got) = s.next_event(WAIT).await.unwrap();
        assert_eq!(got, args);
    }
    let mut cbor = session(&b, CBOR).await;
    cbor.subscribe("far.bytes").await.unwrap();
    publisher.publish_acked("far.bytes", dict(json!({})), vec![json!("\u{0}3q2+7w==")]).await.unwrap();
    let (_, frame) = raw_frame(&mut cbor).await;
    let event: ciborium::Value = ciborium::de::from_reader(&frame[..]).unwrap();
    let bytes = event.as_array().unwrap()[4].as_array().unwrap()[0].as_bytes().cloned();
    assert_eq!(bytes, Some(vec![0xde, 0xad, 0xbe, 0xef]), "bytes from another node: {event:?}");
}

#[actix_web::test]
async fn binary_serializers_work_when_mounted_in_an_own_http_server() {
    // There the connection actor, not the socket's task, takes the queued EVENTs and writes them.
    let (addr, handle) = spawn_mounted(test_settings()).await;
    let url = format!("ws://{addr}/ws");
    let mut subscribers = Vec::new();
    for serializer in Serializer::ALL {
        let mut s = V2Session::connect_serialized(&url, "realm1", serializer, &[]).await.unwrap();
        s.subscribe("mounted").await.unwrap();
        subscribers.push(s);
    }
    let mut publisher = V2Session::connect_serialized(&url, "realm1", MSGPACK, &[]).await.unwrap();
    let args = vec![json!("\u{0}AQID"), json!({"n": 1})];
    publisher.publish_acked("mounted", dict(json!({})), args.clone()).await.unwrap();
    for s in &mut subscribers {
        assert_eq!(s.next_event(WAIT).await.unwrap().3, args);
    }
    handle.stop(false).await;
}

#[actix_web::test]
async fn binary_messages_held_for_a_session_reload_are_handled_in_order() {
    let mut settings = test_settings();
    settings.session.reload = switchboard::config::ReloadPolicy::Message;
    let app = spawn_with(switchboard::Switchboard::builder(settings)).await;
    let cookie = login(&app, "carol").await;
    let headers = [("Cookie", cookie.as_str())];
    let mut carol = V2Session::connect_serialized(&app.ws_url(), "realm1", MSGPACK, &headers).await.unwrap();
    assert_eq!(carol.authid(), "carol");
    let subscription = carol.subscribe("held").await.unwrap();
    // Each message waits for the session to be read again; binary ones too, bytes included.
    let args = vec![json!("\u{0}AQID"), json!({"n": [1, [2, [3]]]})];
    carol.publish_acked("held", dict(json!({"exclude_me": false})), args.clone()).await.unwrap();
    let (sub, _, _, got) = carol.next_event(WAIT).await.unwrap();
    assert_eq!((sub, got), (subscription, args));
}

#[actix_web::test]
async fn nesting_is_bounded_alike_on_the_wire_for_every_serializer() {
    use switchboard::wamp::serial::MAX_DEPTH;
    let app = spawn_app().await;
    let mut json_sub = session(&app, Serializer::Json).await;
    let mut cbor_sub = session(&app, CBOR).await;
    json_sub.subscribe("deep").await.unwrap();
    cbor_sub.subscribe("deep").await.unwrap();
    // PUBLISH [16, id, {}, "deep", [payload]]: the message and its argument list are two of the levels.
    let nested = |levels: usize| (0..levels).fold(json!([]), |inner, _| json!([inner]));
    let deepest = nested(MAX_DEPTH - 3);
    let mut publisher = session(&app, MSGPACK).await;
    publisher.publish_acked("deep", dict(json!({})), vec![deepest.clone()]).await.unwrap();
    assert_eq!(json_sub.next_event(WAIT).await.unwrap().3, vec![deepest.clone()]);
    assert_eq!(cbor_sub.next_event(WAIT).await.unwrap().3, vec![deepest]);
    // One level more is refused, as JSON refuses it.
    let message = Message::Publish {
        request: 99,
        options: dict(json!({})),
        topic: "deep".into(),
        args: Some(vec![nested(MAX_DEPTH - 2)]),
        kwargs: None,
    };
    publisher.socket.send_binary(message.encode_as(MSGPACK)).await.unwrap();
    match publisher.next_message(WAIT).await.unwrap() {
        Message::Abort { details, .. } => {
            assert!(details["message"].as_str().unwrap().contains("nested deeper than 127"), "{details:?}")
        }
        other => panic!("expected ABORT, got {other:?}"),
    }
}
