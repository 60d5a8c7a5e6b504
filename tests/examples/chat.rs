//! A chat server built on the switchboard library: rooms with a per-room clock, a moderation rule, a
//! procedure, a private per-user topic and an HTTP endpoint that messages one user.
//!
//! Run: `cargo run --example chat` and connect any WAMP client to ws://127.0.0.1:8090/ws, e.g.
//! subscribe to `chat/lobby`, publish there, call `chat.rooms.{room}.size`, or
//! `curl -X POST 'http://127.0.0.1:8090/notify/anon-123?text=hi'` to message the user `anon-123` on
//! `private/anon-123`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;
use switchboard::{
    Call, CallResult, Caller, Payload, PublishDecision, PublishRequest, Settings, Switchboard, TopicHandler,
    TopicInstance,
};

/// Chat rooms: counts members per room, refuses empty messages, and announces the time in each room once a
/// minute (the timer runs per room, only while the room has subscribers).
#[derive(Default)]
struct Rooms {
    members: Mutex<HashMap<String, usize>>,
}

impl TopicHandler for Rooms {
    fn on_subscribe(&self, topic: &TopicInstance, caller: &Caller) {
        *self.members.lock().expect("not poisoned").entry(topic.uri().to_owned()).or_default() += 1;
        topic.broadcast(Payload::single(json!({"joined": caller.authid})), Default::default());
    }

    fn on_unsubscribe(&self, topic: &TopicInstance, _caller: &Caller) {
        if let Some(n) = self.members.lock().expect("not poisoned").get_mut(topic.uri()) {
            *n = n.saturating_sub(1);
        }
    }

    fn on_publish(&self, _topic: &TopicInstance, caller: &Caller, mut request: PublishRequest) -> PublishDecision {
        let text = request.payload.args.as_ref().and_then(|a| a.first()).and_then(|v| v.as_str()).unwrap_or("");
        if text.trim().is_empty() {
            return PublishDecision::Reject { error: "chat.error.empty".into(), message: "say something".into() };
        }
        request.payload.args = Some(vec![json!({"from": caller.authid, "text": text})]);
        PublishDecision::Deliver(request)
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(Duration::from_secs(60))
    }

    fn on_tick(&self, topic: &TopicInstance) {
        let room = topic.param("room").unwrap_or("?");
        topic.broadcast(Payload::single(json!({"clock": format!("still here in {room}")})), Default::default());
    }
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut settings = Settings::default();
    settings.server.bind = "127.0.0.1:8090".into();
    let rooms = std::sync::Arc::new(Rooms::default());
    let sizes = rooms.clone();
    let node = Switchboard::builder(settings.clone())
        .topic("chat/{room}", rooms)
        .procedure("chat.rooms.{room}.size", move |call: Call| {
            let topic = format!("chat/{}", call.params["room"]);
            let size = sizes.members.lock().expect("not poisoned").get(&topic).copied().unwrap_or(0);
            async move { Ok(CallResult::value(size)) }
        })
        // Only the owner may read private/<username>; only the server writes there.
        .access("private/{username}", None, Some(&[]))
        .build()
        .await?;

    let configure = node.configure();
    let clients = node.clients().clone();
    HttpServer::new(move || {
        let clients = clients.clone();
        App::new().configure(configure.clone()).route(
            "/notify/{user}",
            web::post().to(move |user: web::Path<String>, query: web::Query<HashMap<String, String>>| {
                let clients = clients.clone();
                async move {
                    let text = query.get("text").cloned().unwrap_or_default();
                    let sessions = clients.find_all_by_username(&user).await.len();
                    let topic = format!("private/{user}");
                    let publication = clients.send_to_user(&user, &topic, Payload::single(json!(text)));
                    HttpResponse::Ok().json(json!({"publication": publication, "sessions": sessions}))
                }
            }),
        )
    })
    .bind(&settings.server.bind)?
    .run()
    .await?;
    Ok(())
}
