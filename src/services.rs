//! What a running node's parts share: settings, the broker, the client index, the session bridge, metrics,
//! the cluster seams, caps and the drain switch. The composition root (`node`) builds it once; connections and
//! HTTP handlers hold it (an `Arc`), and the library handle [`Switchboard`](crate::Switchboard) derefs to it.
//! It imports none of the layers that use it (`connection`, `http`, `node`, `server`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::caps::Caps;
use crate::clients::{ClientManipulator, Disconnect};
use crate::cluster::{self, Backplane, Registry};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::route::{Params, Router};
use crate::rpc::Procedures;
use crate::session::bridge::SessionBridge;
use crate::session::token::TokenVerifier;
use crate::topic::access::AccessRules;
use crate::topic::backlog::Backlog;
use crate::topic::broker::Broker;
use crate::topic::TopicHandler;
use crate::wamp::errors;

/// The node's shared parts (see the module docs). A library user reaches them through [`Switchboard`]
/// (`node.clients()`, `node.drain(…)`), which derefs to this.
///
/// [`Switchboard`]: crate::Switchboard
pub struct Services {
    pub(crate) settings: Arc<Settings>,
    pub(crate) node_id: String,
    pub(crate) procedures: Procedures,
    pub(crate) topics: Arc<Router<Arc<dyn TopicHandler>>>,
    pub(crate) access: Arc<AccessRules>,
    pub(crate) broker: Addr<Broker>,
    pub(crate) backlog: Arc<Backlog>,
    pub(crate) clients: ClientManipulator,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) sessions: Arc<SessionBridge>,
    /// Token authentication (`[auth]`), when a key is configured.
    pub(crate) tokens: Option<Arc<TokenVerifier>>,
    pub(crate) backplane: Arc<dyn Backplane>,
    pub(crate) registry: Arc<dyn Registry>,
    pub(crate) retention: Arc<dyn cluster::Retention>,
    pub(crate) history_rules: Arc<crate::topic::broker::HistoryRules>,
    pub(crate) caps: Arc<Caps>,
    /// Set once a drain begins: readiness answers 503 from then on.
    pub(crate) draining: AtomicBool,
}

impl Services {
    /// Token authentication (`[auth]`), when a key is configured.
    pub fn tokens(&self) -> Option<&Arc<TokenVerifier>> {
        self.tokens.as_ref()
    }

    /// The session bridge: the web app's cookie key, store and field names.
    pub fn sessions(&self) -> &Arc<SessionBridge> {
        &self.sessions
    }

    /// The settings this node runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The client index (ClientManipulator): lookups and targeted sends.
    pub fn clients(&self) -> &ClientManipulator {
        &self.clients
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The backplane (state for health output).
    pub fn backplane(&self) -> &dyn Backplane {
        &*self.backplane
    }

    /// Whether the node runs in cluster mode (Redis configured).
    pub fn is_cluster(&self) -> bool {
        self.registry.is_shared()
    }

    /// Graceful shutdown of the registry: removes this node's sessions and lease from Redis, or the node from its
    /// in-process cluster.
    pub async fn deregister(&self) {
        let shared = self.registry.is_shared();
        match self.registry.deregister().await {
            Ok(()) if shared => log::info!("shutdown: node {} deregistered", self.node_id()),
            Ok(()) => {}
            Err(e) => log::warn!("shutdown: deregistration failed ({e}); the lease will expire instead"),
        }
    }

    pub(crate) fn caps(&self) -> &Arc<Caps> {
        &self.caps
    }

    pub(crate) fn broker(&self) -> &Addr<Broker> {
        &self.broker
    }

    /// The `[[history]]` rules.
    pub(crate) fn history_rules(&self) -> &crate::topic::broker::HistoryRules {
        &self.history_rules
    }

    /// Retained events, cluster-wide.
    pub(crate) fn retention(&self) -> &Arc<dyn cluster::Retention> {
        &self.retention
    }

    /// The bytes of publications queued on this node, and the gate for clients' publishes.
    pub(crate) fn backlog(&self) -> &Arc<Backlog> {
        &self.backlog
    }

    pub(crate) fn access(&self) -> &AccessRules {
        &self.access
    }

    pub(crate) fn procedures(&self) -> &Procedures {
        &self.procedures
    }

    pub(crate) fn topic_handler(&self, topic: &str) -> Option<(Arc<dyn TopicHandler>, Params)> {
        self.topics.find(topic).map(|(h, p)| (h.clone(), p))
    }

    /// Graceful shutdown of the sockets at once: every session gets GOODBYE `wamp.close.system_shutdown` and
    /// close 1001, so clients reconnect elsewhere. Waits until they are gone or `timeout` passes.
    pub async fn close_all_connections(&self, timeout: Duration) {
        self.drain(Duration::ZERO, timeout).await;
    }

    /// Whether a drain has begun ([`drain`](Self::drain) or [`start_draining`](Self::start_draining)).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Turns `/health/ready` to 503 `{"status":"draining"}` for good, so load balancers stop sending new
    /// connections; sessions stay open. [`drain`](Self::drain) does this first.
    pub fn start_draining(&self) {
        if !self.draining.swap(true, Ordering::AcqRel) {
            log::info!("draining: /health/ready now answers 503");
        }
    }

    /// Drains the node's sessions: readiness turns 503 ([`start_draining`](Self::start_draining)), then every
    /// session gets GOODBYE `wamp.close.system_shutdown` and close 1001, spread evenly and with jitter over
    /// `period` (see [`crate::drain`]), so its clients reconnect to other nodes as a trickle rather than a
    /// storm. Returns once they are all gone, or `grace` after the last was asked to close. An application
    /// that mounts [`configure`](crate::Switchboard::configure) in its own server calls this before stopping it
    /// (and stops its listener first, if it can).
    pub async fn drain(&self, period: Duration, grace: Duration) {
        self.start_draining();
        let disconnect = Disconnect {
            code: 1001,
            reason: errors::SYSTEM_SHUTDOWN.to_owned(),
            message: "node shutting down".to_owned(),
        };
        log::info!("draining: closing {} sessions over {period:?}", self.clients().local_count());
        let asked = self.clients().disconnect_all_over(disconnect.clone(), period).await;
        // Sessions that completed their HELLO during the drain were not in the list.
        let late = self.clients().disconnect_all(disconnect);
        log::info!("draining: {} sessions asked to close", asked + late);
        wait_until(Instant::now() + grace, || self.clients().local_count() == 0).await;
    }
}

/// How often shutdown re-checks what it waits for.
const SHUTDOWN_POLL: Duration = Duration::from_millis(20);

/// Waits until `done` holds or `deadline` passes.
pub(crate) async fn wait_until(deadline: Instant, done: impl Fn() -> bool) {
    while !done() && Instant::now() < deadline {
        actix_web::rt::time::sleep(SHUTDOWN_POLL).await;
    }
}
