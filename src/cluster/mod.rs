//! The cluster: what joins nodes.
//!
//! Two seams, each with a memory and a Redis implementation, chosen once by the composition root (`node.rs`):
//! the [`Backplane`] carries publications and control messages between nodes, and the [`Registry`] records who
//! is connected where. What arrives from other nodes is handed to the node's [`ClusterEvents`],
//! wired once when the node starts ([`Receiver::start`]): this module never calls the broker or the client
//! index itself.
//!
//! [`memory`] is the in-process implementation: a node alone (embedded mode), or several nodes of one process
//! sharing a [`memory::MemoryCluster`] (tests, embedding). [`redis`] holds the Redis one: backplane,
//! registry and its Lua scripts, key schema, and the one place that opens Redis connections (also the session
//! store's). [`envelope`] is the wire format between nodes, used by both.
//!
//! Imports only the layers below it (`model`, `wamp`, `config`, `metrics`, logging helpers): never `topic`,
//! `clients`, `session`, `connection`, `node` or `api`. `redis` is imported only here and in `session/`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use crate::model::ClientInfo;
use crate::model::{Keep, Publication, StoredEvent, SubscriptionInfo, TopicKey};
use crate::wamp::Id;

pub mod envelope;
pub mod memory;
pub mod redis;

pub use self::redis::registry::{Changes, RegistryError, Subscription, Write};
use envelope::Body;

/// Longest a new topic waits for the backplane to confirm its subscription before accepting subscribers anyway.
pub const SUBSCRIBE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Publications and control messages between nodes.
pub trait Backplane: Send + Sync {
    /// Subscribes the node to a topic's traffic from other nodes. The receiver fires once the subscription is
    /// in place; `None` when there is nothing to wait for.
    fn want(&self, key: &TopicKey) -> Option<oneshot::Receiver<()>>;

    /// Stops receiving a topic's traffic.
    fn unwant(&self, key: &TopicKey);

    /// Counts a local session of `authid`; the node receives her user channel from the first. The receiver fires
    /// once that is in place; `None` when there is nothing to wait for.
    fn want_user(&self, authid: &str) -> Option<oneshot::Receiver<()>>;

    /// Releases a local session of `authid`; the node stops receiving her user channel with the last.
    fn unwant_user(&self, authid: &str);

    /// Whether a publication can reach another node at all (a node alone answers publishes without waiting).
    fn reaches_other_nodes(&self) -> bool;

    /// Hands a local publication to the other nodes.
    fn publish<'a>(&'a self, publication: &'a Publication) -> BoxFuture<'a, Result<(), BackplaneError>>;

    /// Keeps a local publication in its topic's history (`keep`) and hands it to the other nodes, in one atomic
    /// step: whoever reads the history after its subscription is in place misses nothing between the two. Done
    /// even when no other node exists (a node alone keeps its own history).
    fn publish_kept<'a>(
        &'a self,
        publication: &'a Publication,
        keep: &'a Keep,
    ) -> BoxFuture<'a, Result<(), BackplaneError>>;

    /// The kept events of `topic` no older than `ttl`, oldest first.
    fn history<'a>(&'a self, topic: &'a str, ttl: Duration) -> BoxFuture<'a, Result<Vec<StoredEvent>, BackplaneError>>;

    /// Sends a control message to one node.
    fn send_control<'a>(&'a self, node: &'a str, body: Body) -> BoxFuture<'a, Result<(), BackplaneError>>;

    /// Why the backplane is down, while it is.
    fn last_error(&self) -> Option<String>;

    /// Current state, for health output.
    fn state(&self) -> BackplaneState;
}

/// Who is connected where, cluster-wide: the store behind the ClientManipulator's lookups. Lookups may fail
/// (the caller then answers for its own node); writes never fail visibly.
pub trait Registry: Send + Sync {
    /// Records a change of this node's sessions, in order. A write's acknowledgement (if it carries one) fires
    /// once other nodes can see it.
    fn write(&self, write: Write);

    /// Whether writes take effect later (then callers wait for acknowledgements before telling a client it is
    /// findable); `false` when they are visible at once.
    fn confirms_writes(&self) -> bool;

    /// Whether the registry spans other processes (cluster mode) rather than this process's nodes.
    fn is_shared(&self) -> bool;

    /// The session with this id, anywhere.
    fn get_client(&self, session: Id) -> BoxFuture<'_, Result<Option<ClientInfo>, RegistryError>>;

    /// Every session of `username`.
    fn find_all_by_username<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<Vec<ClientInfo>, RegistryError>>;

    /// Sessions of `username` among the exact subscribers of `topic`.
    fn find_by_username<'a>(
        &'a self,
        topic: &'a str,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ClientInfo>, RegistryError>>;

    /// Sessions holding at least one of `roles`.
    fn find_by_roles<'a>(&'a self, roles: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<ClientInfo>, RegistryError>>;

    /// How many sessions, or how many hold at least one of `roles`.
    fn count<'a>(&'a self, roles: Option<&'a [String]>) -> BoxFuture<'a, Result<usize, RegistryError>>;

    /// Up to `limit` session ids above `after`, in id order, optionally only those holding one of `roles`.
    fn page<'a>(
        &'a self,
        roles: Option<&'a [String]>,
        after: Id,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Id>, RegistryError>>;

    /// Every session.
    fn get_all(&self) -> BoxFuture<'_, Result<Vec<ClientInfo>, RegistryError>>;

    /// This node is going away: remove its sessions now rather than when its lease expires.
    fn deregister(&self) -> BoxFuture<'_, Result<(), RegistryError>>;

    /// Marks `authid` online; `true` only for the one call, cluster-wide, that found her offline (the caller
    /// announces `switchboard.user.on_online`).
    fn mark_online<'a>(&'a self, authid: &'a str) -> BoxFuture<'a, Result<bool, RegistryError>>;

    /// Every subscription of the cluster (those of a dead node's sessions until they are purged).
    fn subscriptions(&self) -> BoxFuture<'_, Result<Vec<SubscriptionInfo>, RegistryError>>;

    /// The subscription with this id, if it exists anywhere.
    fn subscription(&self, id: Id) -> BoxFuture<'_, Result<Option<SubscriptionInfo>, RegistryError>>;

    /// The live sessions subscribed to the subscription `id`, on every node.
    fn subscribers(&self, id: Id) -> BoxFuture<'_, Result<Vec<Id>, RegistryError>>;

    /// Marks `authid` offline if she has no live session anywhere; `true` only for the one call that found her
    /// online (the caller announces `switchboard.user.on_offline`).
    fn mark_offline<'a>(&'a self, authid: &'a str) -> BoxFuture<'a, Result<bool, RegistryError>>;
}

/// A session's subscriptions: [`Subscription::record`] → id.
pub type Records = HashMap<String, Id>;

/// The last retained event of each topic, cluster-wide (WAMP advanced profile, "Event Retention"): kept as the
/// wire envelope, so what a later subscriber receives is what the publisher sent, filters included.
pub trait Retention: Send + Sync {
    /// Keeps `publication` as its topic's retained event for `settings.ttl`, replacing the one before.
    fn retain<'a>(
        &'a self,
        publication: &'a Publication,
        settings: &'a crate::config::RetentionSettings,
    ) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// The retained event of `topic`, if one is kept.
    fn retained<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Option<Publication>, RegistryError>>;
}

/// Messages sent to users, kept until a socket of theirs takes them (`[inbox]`).
pub trait Inbox: Send + Sync {
    /// Keeps `publication`, sent to `authid`, for her: at most `settings.size` messages, for `settings.ttl`.
    fn put<'a>(
        &'a self,
        authid: &'a str,
        publication: &'a Publication,
        settings: &'a crate::config::InboxSettings,
    ) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// A socket of hers took the publication: it is kept no longer.
    fn taken<'a>(&'a self, authid: &'a str, publication: Id) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// Removes and returns, oldest first, the messages kept for her on `topic` (each goes to one caller only).
    fn take<'a>(
        &'a self,
        authid: &'a str,
        topic: &'a str,
        settings: &'a crate::config::InboxSettings,
    ) -> BoxFuture<'a, Result<Vec<Publication>, RegistryError>>;
}

/// A node's own sessions as registries read them: implemented by the client index, which owns them.
pub trait LocalSessions: Send + Sync {
    /// Every session with its subscriptions (for rebuilding a registry).
    fn snapshot(&self) -> Vec<(ClientInfo, Vec<Subscription>)>;

    /// The sessions `keep` accepts, given each with its subscriptions (an exact one's record is its URI).
    fn matching(&self, keep: &dyn Fn(&ClientInfo, &Records) -> bool) -> Vec<ClientInfo>;

    /// How many sessions, or how many hold at least one of `roles`.
    fn count(&self, roles: Option<&[String]>) -> usize;

    /// Up to `limit` session ids above `after`, in id order, optionally only those holding one of `roles`.
    fn page(&self, roles: Option<&[String]>, after: Id, limit: usize) -> Vec<Id>;
}

/// A node's place in its cluster: the two seams, and the backplane's receiving side to start once the node's
/// [`ClusterEvents`] exist.
pub struct Membership {
    /// Publications and control messages between nodes.
    pub backplane: Arc<dyn Backplane>,
    /// Who is connected where.
    pub registry: Arc<dyn Registry>,
    /// Retained events.
    pub retention: Arc<dyn Retention>,
    /// Users' offline inboxes.
    pub inbox: Arc<dyn Inbox>,
    /// Start with the node's events.
    pub receiver: Receiver,
}

/// Joins the cluster on the Redis at `endpoint` as node `node`: connects the backplane's publisher and the
/// registry's pools (within `redis.connect_timeout`), claims the node's lease and purges its previous
/// incarnation. The error says what failed, with Redis's own words and the endpoint (password masked).
pub async fn join_redis(
    endpoint: &self::redis::conn::RedisEndpoint,
    node: &str,
    settings: &crate::config::ClusterSettings,
    sessions: Arc<dyn LocalSessions>,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<Membership, String> {
    let keys = match endpoint.is_cluster() {
        true => self::redis::keys::Keys::sharded(&settings.prefix),
        false => self::redis::keys::Keys::new(&settings.prefix),
    };
    let failed = |e: String| format!("{}: {e}", endpoint.shown());
    let started = async {
        let (backplane, receiver) = self::redis::backplane::RedisBackplane::start(
            endpoint,
            node.to_owned(),
            keys.clone(),
            settings.clone(),
            metrics.clone(),
        )
        .await
        .map_err(|e| failed(self::redis::connection::describe(&e)))?;
        let (registry, departed) = self::redis::registry::RedisRegistry::start(
            endpoint,
            keys,
            node.to_owned(),
            settings.lease,
            sessions,
            metrics,
        )
        .await
        .map_err(|e| failed(e.to_string()))?;
        Ok::<_, String>((backplane, registry, receiver, departed))
    };
    let timeout = endpoint.connect_timeout();
    let (backplane, registry, receiver, mut departed) = tokio::time::timeout(timeout, started)
        .await
        .map_err(|_| failed(format!("no answer within {timeout:?} (redis.connect_timeout)")))??;
    let on = match endpoint.is_cluster() {
        true => "a Redis Cluster (sharded pub/sub, registry keys in one slot)",
        false => "Redis",
    };
    log::info!("cluster mode on {on}: node {node}, epoch {}, prefix {}", registry.epoch(), settings.prefix);
    // The node's events receive what the backplane brings and what the registry's janitor removed.
    let receiver = Receiver::new(move |events: Arc<dyn ClusterEvents>| {
        receiver.start(events.clone());
        actix_web::rt::spawn(async move {
            while let Some(sessions) = departed.recv().await {
                events.sessions_departed(sessions);
            }
        });
    });
    Ok(Membership {
        backplane: Arc::new(backplane),
        retention: registry.clone(),
        inbox: registry.clone(),
        registry,
        receiver,
    })
}

/// What other nodes send this node: implemented by the node (its broker and client index) and handed to the
/// backplane's [`Receiver`] once, when the node starts.
pub trait ClusterEvents: Send + Sync + 'static {
    /// A publication from another node, for local subscribers only.
    fn publication(&self, publication: Publication);

    /// Close this node's sessions of `authid` (with close `code`, WAMP `reason` and `message`).
    fn disconnect_user(&self, authid: &str, code: u16, reason: String, message: String);

    /// Close these sessions where they are on this node (with close `code`, WAMP `reason` and `message`).
    fn disconnect_sessions(&self, sessions: &[Id], code: u16, reason: String, message: String);

    /// A node reports how many of its sockets took a publication of this node that wanted a receipt.
    fn receipt(&self, publication: Id, node: &str, sockets: u64);

    /// Sessions of a dead node (or of this node's previous incarnation) that this node removed from the
    /// registry: nobody else will report them, and nobody reported them before (the removal is atomic, so
    /// each departed session reaches exactly one node's events).
    fn sessions_departed(&self, departed: Vec<Departed>);
}

/// A session removed from the registry because its node is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departed {
    /// WAMP session id.
    pub session: Id,
    /// Username.
    pub authid: String,
    /// Primary role.
    pub authrole: String,
    /// Its testaments (JSON of [`crate::model::Testament`]), for the announcing node to publish.
    pub testaments: Vec<String>,
    /// Its subscriptions by id, each with whether it was the subscription's last subscriber (then deleted).
    pub subscriptions: Vec<(Id, bool)>,
}

/// The receiving side of a backplane, started once the node's [`ClusterEvents`] exist (the broker and the
/// client index need the backplane, so they come after it).
pub struct Receiver(Box<dyn FnOnce(Arc<dyn ClusterEvents>)>);

impl Receiver {
    /// A receiving side that starts by calling `start`.
    pub fn new(start: impl FnOnce(Arc<dyn ClusterEvents>) + 'static) -> Receiver {
        Receiver(Box::new(start))
    }

    /// Starts receiving, handing everything that arrives to `events`.
    pub fn start(self, events: Arc<dyn ClusterEvents>) {
        (self.0)(events)
    }
}

/// Why a publication could not be handed to the other nodes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackplaneError {
    /// The pub/sub connection is down (reconnecting).
    #[error("the cluster backplane is down (Redis unreachable); delivered on this node only")]
    Down,
    /// Redis refused or did not answer the PUBLISH.
    #[error("publishing to Redis failed: {0}")]
    Publish(String),
}

/// The backplane's state, for health output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackplaneState {
    /// Single node: there is no backplane.
    Disabled,
    /// Subscribed and delivering.
    Up,
    /// Reconnecting.
    Down,
}

impl BackplaneState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            BackplaneState::Disabled => "disabled",
            BackplaneState::Up => "up",
            BackplaneState::Down => "down",
        }
    }
}
