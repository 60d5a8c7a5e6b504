//! The node and its composition root: [`Builder`] collects topic handlers, procedures and access rules;
//! [`Builder::build`] chooses the cluster once (Redis when configured, else an in-process
//! `MemoryCluster`), wires the broker, the client index and what arrives
//! from other nodes into one [`Services`], and returns a cheap-to-clone [`Switchboard`] (which derefs to it)
//! whose [`configure`](Switchboard::configure) mounts `/ws`, `/health/*` and `/metrics` (see `http`) into any
//! actix-web `App`. The ready server is [`Application`](crate::server::Application). Nothing below imports this
//! module (connections and handlers hold [`Services`]); it must not import `server` or `transport`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::caps::Caps;
use crate::clients::{ClientManipulator, Disconnect, LocalIndex, Seams, SubscriptionIds};
use crate::cluster::memory::MemoryCluster;
use crate::cluster::redis::conn::{self as redis_conn, RedisConnError, RedisEndpoint, TlsCa};
use crate::cluster::{self, ClusterEvents, Membership};
use crate::config::{ConfigError, Settings};
use crate::metrics::Metrics;
use crate::route::{PatternError, RoutePattern, Router};
use crate::rpc::{Procedure, Procedures};
use crate::services::Services;
use crate::session::bridge::{InvalidSession, InvalidSessionCallback, SessionBridge};
use crate::session::store::{MemorySessionStore, RedisSource, Store};
use crate::session::token::TokenVerifier;
use crate::topic::access::{AccessRule, AccessRules};
use crate::topic::backlog::Backlog;
use crate::topic::broker::{Broker, RemotePublish};
use crate::topic::TopicHandler;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A route pattern given to the builder is wrong.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// A Redis server (`redis.url`, `session.redis_url`) is unreachable, refuses our credentials, or its URL or
    /// private CA (`redis.tls_ca`) is unusable; the message names the key and masks the password.
    #[error(transparent)]
    Redis(#[from] RedisConnError),
    /// The web app's session store could not be set up.
    #[error("cannot set up the session store: {0}")]
    SessionStore(String),
    /// Cluster mode could not start.
    #[error("cannot start cluster mode with {setting}: {message}")]
    Cluster {
        /// `redis.url (SWITCHBOARD_REDIS_URL)` or `redis.cluster (SWITCHBOARD_REDIS_CLUSTER)`.
        setting: &'static str,
        /// What failed, with Redis's own words.
        message: String,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Collects the application's handlers before the node starts.
pub struct Builder {
    settings: Settings,
    topics: Router<Arc<dyn TopicHandler>>,
    procedures: Procedures,
    access: Vec<AccessRule>,
    errors: Vec<PatternError>,
    on_invalid_session: Option<InvalidSessionCallback>,
    on_presence: Option<crate::clients::meta::PresenceCallback>,
    /// The in-process cluster this node joins when Redis is not configured (its own by default).
    memory_cluster: Option<MemoryCluster>,
}

impl Builder {
    /// Called for every invalid session: tampered or wrong-key cookie, expired or unknown session, bad
    /// fields, or an open socket's session revoked (the Socket.IO-sessions `sinvalid` event).
    pub fn on_invalid_session(mut self, callback: impl Fn(&InvalidSession) + Send + Sync + 'static) -> Self {
        self.on_invalid_session = Some(Arc::new(callback));
        self
    }

    /// Called when a user comes online (her first socket anywhere) or goes offline (none anywhere for
    /// `presence.grace`), on the one node that announces the change: once cluster-wide, like the
    /// `switchboard.user.on_online` / `on_offline` events. Keep it quick: it runs on the node's client index.
    pub fn on_presence(mut self, callback: impl Fn(&crate::clients::meta::Presence) + Send + Sync + 'static) -> Self {
        self.on_presence = Some(Arc::new(callback));
        self
    }

    /// Joins the nodes of this process built with the same `cluster` (when no Redis is configured): publications,
    /// targeted sends, lookups and disconnects then span them, as they span the nodes of a Redis cluster. For
    /// tests and for applications that run several nodes in one process; a node alone needs nothing.
    pub fn cluster(mut self, cluster: MemoryCluster) -> Self {
        self.memory_cluster = Some(cluster);
        self
    }

    /// Attaches `handler` to topics matching `pattern` (e.g. `chat/{room}`); the first matching route wins.
    pub fn topic(mut self, pattern: &str, handler: impl TopicHandler) -> Self {
        match RoutePattern::parse(pattern) {
            Ok(p) => self.topics.add(p, Arc::new(handler)),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Registers an async procedure under `pattern` (e.g. `com.app.{name}`).
    pub fn procedure(mut self, pattern: &str, procedure: impl Procedure) -> Self {
        if let Err(e) = self.procedures.add(pattern, Arc::new(procedure)) {
            self.errors.push(e);
        }
        self
    }

    /// Adds an access rule after those of the configuration file. `None` allows every role; `Some(&[])`
    /// nobody. A `{username}` placeholder must equal the caller's authid.
    pub fn access(mut self, pattern: &str, subscribe: Option<&[&str]>, publish: Option<&[&str]>) -> Self {
        let owned = |roles: Option<&[&str]>| roles.map(|r| r.iter().map(|s| s.to_string()).collect());
        match AccessRule::new(pattern, owned(subscribe), owned(publish)) {
            Ok(rule) => self.access.push(rule),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Validates everything, connects the session store and starts the broker. Must run inside an actix
    /// system (e.g. `#[actix_web::main]`).
    pub async fn build(mut self) -> Result<Switchboard, StartError> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e.into());
        }
        self.settings.validate()?;
        let mut access = AccessRules::from_settings(&self.settings)?;
        self.access.into_iter().for_each(|rule| access.push(rule));
        let access = Arc::new(access);
        let metrics = Arc::new(Metrics::default());
        let topics = Arc::new(self.topics);
        let key = match self.settings.session.key_bytes()? {
            Some(bytes) => actix_web::cookie::Key::from(&bytes),
            None => {
                log::info!("no session.key set: using a random key (sessions last until restart, not shared)");
                actix_web::cookie::Key::generate()
            }
        };
        let (cluster_redis, session_redis) = open_redis(&self.settings).await?;
        let store = match &session_redis {
            None => Store::Memory(MemorySessionStore::default()),
            Some(endpoint) => {
                let session = &self.settings.session;
                let source = session_source(endpoint);
                Store::redis(source, endpoint.connect_timeout(), &session.key_prefix, session.store_timeout)
                    .await
                    .map_err(|e| StartError::SessionStore(format!("{}: {e:#}", endpoint.shown())))?
            }
        };
        log_session_bridge(&self.settings, session_redis.as_ref());
        let tokens =
            TokenVerifier::from_settings(&self.settings.auth, &self.settings.session.default_role)?.map(Arc::new);
        if let Some(tokens) = &tokens {
            log::info!(
                "token authentication on: JWTs ({}) as WAMP ticket or Authorization: Bearer",
                tokens.algorithms().join(", ")
            );
        }
        let sessions = Arc::new(SessionBridge::new(
            key,
            self.settings.session.clone(),
            store,
            self.on_invalid_session,
            metrics.clone(),
        ));
        let node_id = match self.settings.server.node_id.as_str() {
            "" => format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            id => id.to_owned(),
        };
        let local = LocalIndex::default();
        let local_sessions = Arc::new(local.clone());
        // The one place that chooses: Redis when configured, else this process's cluster (a node alone unless
        // the application joined several with `Builder::cluster`).
        let Membership { backplane, registry, retention, inbox, receiver } = match &cluster_redis {
            None => self.memory_cluster.take().unwrap_or_default().join(&node_id, local_sessions),
            Some(endpoint) => {
                cluster::join_redis(endpoint, &node_id, &self.settings.cluster, local_sessions, metrics.clone())
                    .await
                    .map_err(|message| StartError::Cluster { setting: endpoint.setting(), message })?
            }
        };
        let backlog = Backlog::new(self.settings.server.publish_backlog_bytes, metrics.publish_backlog_bytes.clone());
        // Every node of a cluster shares the session key, so every node names a subscription alike; without
        // one, the cluster prefix (documented: ids are then predictable).
        let ids = SubscriptionIds::new(
            &self.settings.session.key_bytes()?.unwrap_or_else(|| self.settings.cluster.prefix.clone().into_bytes()),
        );
        if self.settings.demo_enabled() {
            // The demo's private messages wait for an absent user (`demo.direct.send`, the offline inbox).
            if !self.settings.inbox.enabled() {
                self.settings.inbox.ttl = Duration::from_secs(24 * 3600);
                log::info!("demo on: messages to users wait 1 day in their offline inbox (set [inbox] ttl to change)");
            }
            self.procedures.add(crate::http::demo::SEND_PROCEDURE, Arc::new(crate::http::demo::send_private))?;
        }
        if self.settings.demo_enabled()
            && crate::topic::broker::HistoryRules::from_settings(&self.settings.history)
                .keep_for_topic("demo.room.lobby")
                .is_none()
        {
            // The demo's rooms show their recent history on load and after a reconnect.
            log::info!("demo on: keeping the last 50 events of demo.room.* for 1 h (a [[history]] rule overrides)");
            self.settings.history.push(crate::config::HistorySettings {
                pattern: "demo.room.{room}".into(),
                size: 50,
                ttl: Duration::from_secs(3600),
            });
        }
        let history_rules = Arc::new(crate::topic::broker::HistoryRules::from_settings(&self.settings.history));
        let broker = Broker::new(
            topics.clone(),
            access.clone(),
            metrics.clone(),
            backplane.clone(),
            backlog.clone(),
            ids.clone(),
            history_rules.clone(),
        )
        .start();
        let clients = ClientManipulator::new(
            local,
            Seams {
                registry: registry.clone(),
                backplane: backplane.clone(),
                inbox: self.settings.inbox.enabled().then(|| (inbox, self.settings.inbox.clone())),
            },
            broker.clone(),
            &node_id,
            metrics.clone(),
            crate::clients::meta::PresenceConfig {
                enabled: self.settings.presence.enabled,
                grace: self.settings.presence.grace,
                callback: self.on_presence.take(),
                webhooks: crate::webhooks::Webhooks::start(&self.settings.webhooks, &node_id, metrics.clone()),
            },
            ids,
        );
        // Started before any topic is subscribed, hence before anything but probes can arrive.
        receiver.start(Arc::new(NodeEvents { broker: broker.clone().recipient(), clients: clients.clone() }));
        let caps = Caps::new(self.settings.server.max_connections, self.settings.session.max_sockets_per_user);
        Ok(Switchboard {
            inner: Arc::new(Services {
                caps,
                clients,
                backplane,
                registry,
                retention,
                history_rules,
                settings: Arc::new(self.settings),
                node_id,
                procedures: self.procedures,
                topics,
                access,
                broker,
                backlog,
                metrics,
                sessions,
                tokens,
                draining: AtomicBool::new(false),
            }),
        })
    }
}

/// Where the session store's Redis is now, asked of `endpoint` (the master Sentinel names, when it does): the
/// composition root joins the two, since `cluster` and `session` never import each other.
pub fn session_source(endpoint: &RedisEndpoint) -> RedisSource {
    let (at, now) = (endpoint.clone(), endpoint.clone());
    RedisSource {
        generation: Arc::new(move || at.generation()),
        info: Arc::new(move || now.client().map(|client| client.get_connection_info().clone())),
    }
}

/// One line at start-up saying how sockets will read the web app's sessions (`switchboard doctor` explains a
/// given cookie).
fn log_session_bridge(settings: &Settings, store: Option<&RedisEndpoint>) {
    let session = &settings.session;
    let security = match session.cookie_security {
        crate::config::CookieSecurity::Private => "private (encrypted)",
        crate::config::CookieSecurity::Signed => "signed",
    };
    let key = match session.key_bytes() {
        Ok(Some(bytes)) => {
            let key = actix_web::cookie::Key::from(&bytes);
            format!("key fingerprint {}", crate::session::bridge::key_fingerprint(&key))
        }
        _ => "a random key (no session.key)".to_owned(),
    };
    match store {
        Some(endpoint) => log::info!(
            "session bridge: cookie '{}', {security}, {key}; store Redis {} ({}), key prefix '{}'",
            session.cookie_name,
            endpoint.shown(),
            endpoint.setting(),
            session.key_prefix
        ),
        None => log::info!(
            "session bridge: cookie '{}', {security}, {key}; store in this process's memory (embedded mode: only \
             logins made through this node resolve)",
            session.cookie_name
        ),
    }
}

/// Opens the cluster's and the session store's Redis endpoints (`None` when not configured) and checks each
/// answers, AUTH included, within `redis.connect_timeout`.
async fn open_redis(settings: &Settings) -> Result<(Option<RedisEndpoint>, Option<RedisEndpoint>), StartError> {
    let redis = &settings.redis;
    let tls_ca = match redis.tls_ca.as_str() {
        "" => None,
        path => Some(TlsCa::load(std::path::Path::new(path))?),
    };
    let open = |setting, url: &str| match url {
        "" => Ok(None),
        url => RedisEndpoint::open(setting, url, tls_ca.as_ref(), redis.connect_timeout).map(Some),
    };
    if !redis.cluster.is_empty() {
        // The backplane and registry on the Redis Cluster; the web app's sessions where they are.
        let cluster = RedisEndpoint::open_cluster(&redis.cluster, tls_ca.as_ref(), redis.connect_timeout)?;
        let session = match settings.session.redis_url.as_str() {
            "" => open(redis_conn::CLUSTER_URL_SETTING, &redis.url)?,
            url => open(redis_conn::SESSION_URL_SETTING, url)?,
        };
        for endpoint in std::iter::once(&cluster).chain(session.iter()) {
            endpoint.check().await?;
        }
        return Ok((Some(cluster), session));
    }
    let cluster = open(redis_conn::CLUSTER_URL_SETTING, &redis.url)?;
    let separate = open(redis_conn::SESSION_URL_SETTING, &settings.session.redis_url)?;
    for endpoint in cluster.iter().chain(separate.iter()) {
        endpoint.check().await?;
    }
    let session = separate.or_else(|| cluster.clone());
    Ok((cluster, session))
}

/// What other nodes send this one goes to its broker (publications) and its client index (control messages):
/// the [`ClusterEvents`] the composition root hands the backplane.
struct NodeEvents {
    broker: Recipient<RemotePublish>,
    clients: ClientManipulator,
}

impl ClusterEvents for NodeEvents {
    fn receipt(&self, publication: crate::wamp::Id, node: &str, sockets: u64) {
        self.clients.receipt(publication, node, sockets);
    }

    fn publication(&self, publication: crate::topic::Publication) {
        self.clients.received(&publication);
        self.broker.do_send(RemotePublish(Arc::new(publication)));
    }

    fn disconnect_user(&self, authid: &str, code: u16, reason: String, message: String) {
        self.clients.disconnect_local_user(authid, Disconnect { code, reason, message });
    }

    fn disconnect_sessions(&self, sessions: &[crate::wamp::Id], code: u16, reason: String, message: String) {
        self.clients.disconnect_local_sessions(sessions, Disconnect { code, reason, message });
    }

    fn sessions_departed(&self, departed: Vec<cluster::Departed>) {
        log::info!("announcing {} sessions of departed nodes (wamp.session.on_leave)", departed.len());
        self.clients.announce_departed(departed);
    }
}

/// A running switchboard node, as a library handle. Clone it freely. Its lookups, sends, metrics and drain are
/// those of [`Services`], which it derefs to: `node.clients()`, `node.drain(period, grace)`.
#[derive(Clone)]
pub struct Switchboard {
    inner: Arc<Services>,
}

impl Switchboard {
    /// Starts building a node from `settings`.
    pub fn builder(settings: Settings) -> Builder {
        Builder {
            procedures: Procedures::with_builtins(&settings.meta),
            settings,
            topics: Router::default(),
            access: Vec::new(),
            errors: Vec::new(),
            on_invalid_session: None,
            on_presence: None,
            memory_cluster: None,
        }
    }

    /// Mounts `/ws`, `/health/live`, `/health/ready` and `/metrics` (and the push API and demo when enabled)
    /// into an actix-web app: `App::new().configure(node.configure())`. The app's own handlers can take the node
    /// as `web::Data<Switchboard>`.
    pub fn configure(&self) -> impl Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static {
        let node = self.clone();
        move |cfg| {
            cfg.app_data(actix_web::web::Data::new(node.clone()));
            crate::http::configure(cfg, node.inner.clone())
        }
    }
}

impl std::ops::Deref for Switchboard {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.inner
    }
}
