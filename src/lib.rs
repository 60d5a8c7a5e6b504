//! # switchboard
//!
//! A realtime WebSocket server speaking WAMP v2 (`wamp.2.json`, `wamp.2.msgpack`, `wamp.2.cbor`) and WAMP v1
//! (`wamp`, as Ratchet serves it), built on actix actors: one actor per socket, one per subscribed topic, a
//! broker that owns topic lifetimes, and a client index (the ClientManipulator) for "send this to user alice".
//!
//! Use it as a binary (`switchboard [--config FILE]`, see the README) or mount it in your own actix-web app:
//!
//! ```no_run
//! use switchboard::{CallResult, Settings, Switchboard};
//!
//! #[actix_web::main]
//! async fn main() -> anyhow::Result<()> {
//!     let node = Switchboard::builder(Settings::default())
//!         .procedure("com.example.add", |call: switchboard::Call| async move {
//!             let a = call.arg(0)?.as_i64().unwrap_or(0);
//!             let b = call.arg(1)?.as_i64().unwrap_or(0);
//!             Ok(CallResult::value(a + b))
//!         })
//!         .build().await?;
//!     let configure = node.configure();
//!     actix_web::HttpServer::new(move || actix_web::App::new().configure(configure.clone()))
//!         .bind("127.0.0.1:8080")?
//!         .run()
//!         .await?;
//!     Ok(())
//! }
//! ```
//!
//! ## Layout
//!
//! | module | owns |
//! |---|---|
//! | [`wamp`] | pure v1/v2 codecs, ids, URI rules, filters, error URIs (no actix, tokio or redis) |
//! | [`connection`] | the WebSocket actor: its life (`mod.rs`), its periodic work on one timer (`timers.rs`), frames → messages, WAMP v2 and v1, shared PUBLISH/CALL work, subscriptions, web session, limits; what a new subscription receives first (`catch_up.rs`: retained event, history replay, inbox), its typed errors mapped in one place (`error.rs`) and its close catalogue (`close.rs`) |
//! | [`topic`] | broker, topic actors, subscription index, publication backlog, topic handler trait, access rules |
//! | [`rpc`] | procedure registry and trait, built-in `wamp.session.*` (`mod.rs`) and `wamp.subscription.*` (`subscription.rs`) |
//! | [`session`] | the web app's actix-session session: cookie → key → state → identity, stores, writable handle |
//! | [`model`] | plain values shared by every layer: `Publication`, `TopicKey`, `Payload`, `Publisher`, `ClientInfo`, `AuthMethod`, `Disconnect`; subscription ids every node computes alike and `SubscriptionInfo` (`subscription.rs`) |
//! | [`clients`] | the ClientManipulator: an actor owning the local index and the registry writes (`actor.rs`, `index.rs`); its handle answers lookups (`mod.rs`) and sends (`send.rs`, delivery results in `receipts.rs`); the session, subscription and presence meta events it announces (`meta.rs`) |
//! | [`cluster`] | the `Backplane`, `Registry`, `Retention` and `Inbox` traits, `ClusterEvents`, the envelope codec; `memory/` in-process (nodes, backplane, registry; `stores.rs`: subscription table, retained events, history, inboxes), `redis/` Redis (`backplane/`: handle, pub/sub task, receiver counts after an outage; `registry/`: writer, lease, lookups; Lua, keys; `conn.rs` the endpoint a URL names, `connection.rs` a connection to it, `pool.rs` their pools, `sentinel.rs`) |
//! | `caps` | node-wide connection cap and per-user socket cap |
//! | [`frame`] | the frame guard: inbound WebSocket frame headers checked before any payload is buffered, text messages checked as UTF-8 as they pass (`text.rs`) |
//! | [`outbox`] | the bounded outbound queue of a connection, written by its socket's task or its worker's flush |
//! | [`route`] | route patterns (`chat/{room}`) |
//! | [`http`] | everything HTTP: the `/ws` upgrade (version, key, caps, origin, subprotocol, session; one `Refusal` type picks every status), health, metrics, the push API `/api/*` (bearer token middleware), the demo web app |
//! | [`config`] | settings: embedded default, TOML file, environment |
//! | `log_summary` | rate-limited WARNs for failures that repeat per event (Redis outages) |
//! | [`drain`] | graceful drain: sessions closed evenly over `server.drain_period`, the listener refusing |
//! | [`doctor`] | `switchboard doctor`: walks a browser's cookie through the session bridge with this node's settings and says what to change |
//! | [`health_check`] | `switchboard health`: one bounded GET of `/health/ready`, for container healthchecks |
//! | [`node`] | the composition root: the builder (memory or Redis chosen once) and the library handle |
//! | [`services`] | what a running node's parts share (settings, broker, client index, sessions, metrics, seams, caps, drain switch): built by `node`, held by connections and HTTP handlers, so neither imports `node` |
//! | [`server`] | the ready server (`Application`) and its graceful shutdown |
//! | `transport` | the ready server's sockets: HTTP via actix-web, accepted WebSockets without the HTTP/1 dispatcher; `socket`: an accepted socket's task; `writer`: what it writes, and the workers' flushes |
//! | [`metrics`] | OpenMetrics counters, gauges, histograms and closes by reason (prometheus-client) |
//! | [`logfmt`] | client input as log lines show it: escaped and bounded |
//! | [`webhooks`] | presence and session events POSTed to the web app, signed, retried, bounded (`[webhooks]`) |
//! | `client` | a small async WAMP client for tests and the load tool (feature `client`): the raw socket (`mod.rs`), v2 and v1 sessions |
//!
//! No file under `src/` passes ~400 lines of code, counting neither comments, blank lines nor the unit tests
//! kept beside the code (several files are longer with them: `outbox.rs`, `connection/mod.rs`,
//! `cluster/redis/conn.rs`, `config/sections.rs` are one-third documentation); the longest is the backplane's
//! pub/sub task (`cluster/redis/backplane/subscriber.rs`, ~410: one task's reconnect, probe and delivery loop).
//! No top-level module imports one that imports it back (`tests/api/layout.rs` checks).

#![warn(missing_docs)]

mod caps;
#[cfg(feature = "client")]
pub mod client;
pub mod clients;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod doctor;
pub mod drain;
pub mod frame;
pub mod health_check;
pub mod http;
mod log_summary;
pub mod logfmt;
pub mod metrics;
pub mod model;
pub mod node;
pub mod outbox;
pub mod route;
pub mod rpc;
pub mod server;
pub mod services;
pub mod session;
#[doc(hidden)]
pub mod testing;
pub mod topic;
mod transport;
pub mod wamp;
pub mod webhooks;

pub use clients::meta::Presence;
pub use clients::{ClientInfo, ClientManipulator, Disconnect};
pub use config::Settings;
pub use node::{Builder, StartError, Switchboard};
pub use rpc::{Call, CallError, CallResult};
pub use server::Application;
pub use services::Services;
pub use session::{Caller, Identity};
pub use topic::handler::PublishRequest;
pub use topic::{Payload, PublishDecision, TopicHandler, TopicInstance};
pub use wamp::filter::Filters;
