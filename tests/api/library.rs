//! The library API: topic handlers, per-instance timers, RPC routes, access rules, the ClientManipulator.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use switchboard::client::{ClientError, V1Session, V2Session};
use switchboard::{
    Call, CallError, CallResult, Caller, Payload, PublishDecision, PublishRequest, Switchboard, TopicHandler,
    TopicInstance,
};

use crate::helpers::*;

/// A chat room handler: greets subscribers, refuses shouting, ticks per room.
#[derive(Default)]
struct Rooms {
    joined: Mutex<Vec<(String, String)>>,
    left: AtomicUsize,
}

impl TopicHandler for Rooms {
    fn on_subscribe(&self, topic: &TopicInstance, caller: &Caller) {
        self.joined.lock().unwrap().push((topic.param("room").unwrap().to_owned(), caller.authid.clone()));
    }

    fn on_unsubscribe(&self, _topic: &TopicInstance, _caller: &Caller) {
        self.left.fetch_add(1, Ordering::SeqCst);
    }

    fn on_publish(&self, topic: &TopicInstance, _caller: &Caller, mut request: PublishRequest) -> PublishDecision {
        let text = request.payload.args.as_ref().and_then(|a| a.first()).and_then(|v| v.as_str()).unwrap_or("");
        if text.chars().any(|c| c.is_uppercase()) {
            return PublishDecision::Reject { error: "com.chat.error.shouting".into(), message: "no shouting".into() };
        }
        request.payload.args = Some(vec![json!(format!("[{}] {text}", topic.param("room").unwrap()))]);
        PublishDecision::Deliver(request)
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(50))
    }

    fn on_tick(&self, topic: &TopicInstance) {
        topic.broadcast(Payload::single(json!(format!("tick {}", topic.uri()))), Default::default());
    }
}

#[actix_web::test]
async fn topic_handler_sees_subscriptions_and_reshapes_or_rejects_publishes() {
    let rooms = Arc::new(Rooms::default());
    let app = spawn_with(Switchboard::builder(test_settings()).topic("chat/{room}", rooms.clone())).await;
    let mut a = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let mut b = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    a.subscribe("chat/lobby").await.unwrap();
    assert_eq!(rooms.joined.lock().unwrap()[0], ("lobby".to_string(), a.authid().to_string()));
    b.publish_acked("chat/lobby", dict(json!({})), vec![json!("hi")]).await.unwrap();
    let event = loop {
        let e = a.next_event(WAIT).await.unwrap();
        if !e.3[0].as_str().unwrap().starts_with("tick") {
            break e;
        }
    };
    assert_eq!(event.3, vec![json!("[lobby] hi")]);
    match b.publish_acked("chat/lobby", dict(json!({})), vec![json!("HI")]).await {
        Err(ClientError::Wamp { error, message }) => {
            assert_eq!(error, "com.chat.error.shouting");
            assert_eq!(message, "no shouting");
        }
        other => panic!("{other:?}"),
    }
    drop(a);
    let rooms2 = rooms.clone();
    eventually("on_unsubscribe ran when the socket closed", move || rooms2.left.load(Ordering::SeqCst) == 1).await;
}

#[actix_web::test]
async fn timers_run_per_topic_instance_and_stop_when_it_empties() {
    let rooms = Arc::new(Rooms::default());
    let app = spawn_with(Switchboard::builder(test_settings()).topic("chat/{room}", rooms.clone())).await;
    let mut lobby = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let mut kitchen = V1Session::connect(&app.ws_url()).await.unwrap();
    lobby.subscribe("chat/lobby").await.unwrap();
    kitchen.send(&switchboard::wamp::v1::Message::Subscribe { topic: "chat/kitchen".into() }).await.unwrap();
    // Each room hears only its own timer.
    for _ in 0..3 {
        assert_eq!(lobby.next_event(WAIT).await.unwrap().3, vec![json!("tick chat/lobby")]);
        assert_eq!(kitchen.next_event(WAIT).await.unwrap().1, json!("tick chat/kitchen"));
    }
    // When the lobby empties its timer stops: a new lobby subscriber sees only its fresh timer's ticks and the
    // topic count drops to one while the lobby is empty.
    let id = lobby.subscribe("chat/lobby").await.unwrap();
    lobby.unsubscribe(id).await.unwrap();
    let node = app.node.clone();
    eventually("only the kitchen topic remains", || node.metrics().render().contains("switchboard_topics 1\n")).await;
    let mut observer = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    observer.subscribe_with("chat/lobby", dict(json!({"match": "prefix"}))).await.unwrap();
    observer.expect_no_event(Duration::from_millis(250)).await.unwrap();
}

#[actix_web::test]
async fn procedures_with_pattern_routes_answer_both_protocols_and_panics_become_errors() {
    let builder = Switchboard::builder(test_settings())
        .procedure("com.math.{op}", |call: Call| async move {
            let a = call.arg(0)?.as_f64().ok_or_else(|| CallError::invalid_argument("numbers please"))?;
            let b = call.arg(1)?.as_f64().ok_or_else(|| CallError::invalid_argument("numbers please"))?;
            match call.params["op"].as_str() {
                "add" => Ok(CallResult::value(a + b)),
                "mul" => Ok(CallResult::value(a * b)),
                other => Err(CallError::new("com.math.error.unknown_op", format!("no operation {other}"))),
            }
        })
        .procedure("sample/whoami", |call: Call| async move { Ok(CallResult::value(call.caller.authid)) })
        .procedure("com.boom", |_call: Call| async move {
            if true {
                panic!("handler bug");
            }
            Ok(CallResult::default())
        });
    let app = spawn_with(builder).await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let (args, _) = s.call("com.math.add", vec![json!(2), json!(3)], dict(json!({}))).await.unwrap();
    assert_eq!(args, vec![json!(5.0)]);
    match s.call("com.math.pow", vec![json!(2), json!(3)], dict(json!({}))).await {
        Err(ClientError::Wamp { error, .. }) => assert_eq!(error, "com.math.error.unknown_op"),
        other => panic!("{other:?}"),
    }
    match s.call("com.math.add", vec![json!("x")], dict(json!({}))).await {
        Err(ClientError::Wamp { error, .. }) => assert_eq!(error, "wamp.error.invalid_argument"),
        other => panic!("{other:?}"),
    }
    match s.call("com.boom", vec![], dict(json!({}))).await {
        Err(ClientError::Wamp { error, .. }) => assert_eq!(error, "switchboard.error.runtime_error"),
        other => panic!("{other:?}"),
    }
    let mut v1 = V1Session::connect(&app.ws_url()).await.unwrap();
    assert_eq!(v1.call("com.math.mul", vec![json!(4), json!(5)]).await.unwrap(), json!(20.0));
    let whoami = v1.call("sample/whoami", vec![]).await.unwrap();
    assert_eq!(whoami, json!(format!("anon-{}", v1.id)));
    // The session that hit the panic is still usable.
    s.call("wamp.session.count", vec![], dict(json!({}))).await.unwrap();
}

#[actix_web::test]
async fn client_manipulator_finds_clients_and_sends_to_a_user() {
    let app = spawn_app().await;
    let mut a = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let mut b = V1Session::connect(&app.ws_url()).await.unwrap();
    a.subscribe("notifications").await.unwrap();
    b.send(&switchboard::wamp::v1::Message::Subscribe { topic: "notifications".into() }).await.unwrap();
    b.call("wamp.session.count", vec![]).await.unwrap();
    let clients = app.node.clients();
    let info = clients.get_client(a.id).await.unwrap();
    assert_eq!(info.authid, a.authid());
    assert_eq!(info.protocol, "wamp.2.json");
    assert_eq!(clients.find_all_by_username(a.authid()).await.len(), 1);
    assert_eq!(clients.find_by_username("notifications", a.authid()).await.len(), 1);
    assert!(clients.find_by_username("elsewhere", a.authid()).await.is_empty());
    assert_eq!(clients.find_by_roles(&["anonymous"]).await.len(), 2);
    assert_eq!(clients.get_all(true).await.len(), 2);
    assert!(clients.get_all(false).await.is_empty());

    clients.send_to_user(a.authid(), "notifications", Payload::single(json!("for a")));
    assert_eq!(a.next_event(WAIT).await.unwrap().3, vec![json!("for a")]);
    b.expect_no_event(QUIET).await.unwrap();

    let b_id: u64 = b.id.parse().unwrap();
    clients.broadcast("notifications", Payload::single(json!("not a")), vec![a.id], None);
    assert_eq!(b.next_event(WAIT).await.unwrap().1, json!("not a"));
    a.expect_no_event(QUIET).await.unwrap();
    clients.broadcast("notifications", Payload::single(json!("only b")), vec![], Some(vec![b_id]));
    assert_eq!(b.next_event(WAIT).await.unwrap().1, json!("only b"));
    a.expect_no_event(QUIET).await.unwrap();
}

#[actix_web::test]
async fn graceful_shutdown_sends_goodbye_system_shutdown_and_1001() {
    let app = spawn_app().await;
    let mut s = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let node = app.node.clone();
    actix_web::rt::spawn(async move { node.close_all_connections(Duration::from_secs(2)).await });
    match s.next_message(WAIT).await.unwrap() {
        switchboard::wamp::v2::Message::Goodbye { reason, .. } => assert_eq!(reason, "wamp.close.system_shutdown"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.socket.expect_close(WAIT).await.unwrap().0, 1001);
}

#[actix_web::test]
async fn send_to_user_works_from_any_thread_with_the_inbox_on() {
    let mut settings = test_settings();
    settings.inbox.ttl = std::time::Duration::from_secs(60);
    let app = spawn_with(switchboard::Switchboard::builder(settings)).await;
    let mut alice = connect_as(&app, "alice").await;
    alice.subscribe("notes").await.unwrap();
    let clients = app.node.clients().clone();
    std::thread::spawn(move || clients.send_to_user("alice", "notes", switchboard::Payload::single(json!("hi"))))
        .join()
        .expect("no actix runtime needed on the calling thread");
    assert_eq!(alice.next_event(WAIT).await.unwrap().3, vec![json!("hi")]);
}

/// An application that mounts `configure()` next to its own routes can take the node in its handlers as
/// `web::Data<Switchboard>` (an extractor that finds nothing answers 500).
#[actix_web::test]
async fn an_apps_own_handlers_get_the_node_as_app_data() {
    use actix_web::web;
    let node = switchboard::Switchboard::builder(test_settings()).build().await.unwrap();
    let configure = node.configure();
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new().configure(configure.clone()).route(
            "/mine",
            web::get().to(|node: web::Data<switchboard::Switchboard>| async move { node.node_id().to_owned() }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    let mut response = awc::Client::default().get(format!("http://{addr}/mine")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.body().await.unwrap(), node.node_id().as_bytes());
    handle.stop(true).await;
}
