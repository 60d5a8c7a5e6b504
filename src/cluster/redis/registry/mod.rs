//! The registry: who is connected where, cluster-wide, in Redis (schema in [`super::keys`]).
//!
//! Entries are valid only while their node's lease key lives *and* holds the epoch they were written with:
//! a SIGKILLed node's sessions drop out of every lookup when its lease expires (then the janitor of any
//! surviving node purges them), and a node restarting with the same id starts a new epoch, so its old
//! sessions never come back. A node only ever purges its own entries or those of nodes whose lease is gone.
//!
//! Writes go through one writer task, batched into pipelines and applied in order. Any failed write marks the
//! registry dirty; the heartbeat (every lease/3, `SET node:<id> <epoch> PX <lease> GET`) then asks the writer
//! for a rebuild: purge this node's entries and register every live local session again. The same happens when
//! the heartbeat finds its key missing (Redis restarted without persistence). Lookups run as one Lua script:
//! one round trip, no scatter-gather.
//!
//! Two connection pools: the writer and the heartbeat use their own (*control*), lookups another, so a flood of
//! lookups queues behind lookups only and can never delay a lease renewal or a write into a rebuild.
//!
//! Counting (`wamp.session.count`) reads no session: each node keeps its sessions in `n:<node>` and, per
//! distinct role list, in `nr:<node>:<roles>`; the count is the sum of those sets' sizes (`SCARD`) over live
//! nodes. Sets, not counters, because a rebuild may re-add a session whose own write is still queued: `SADD`
//! is idempotent, `INCR` is not. A node's sets count only while `ne:<node>` holds its current epoch (written
//! last by each rebuild), so a restarted node's previous incarnation is never counted. Lists page through
//! the `ids` sorted set (score = session id) in id order.

//!
//! Files: `mod.rs` the registry and its pools, `writes.rs` the writer task (pipelines, rebuild, purge),
//! `lease.rs` the heartbeat (lease, janitor, deregistration), `lookup.rs` the lookup scripts' callers.

mod lease;
mod lookup;
mod writes;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bb8_redis::bb8::Pool;
use tokio::sync::{mpsc, oneshot};

use super::conn::RedisEndpoint;
use super::keys::Keys;
use super::pool::Dial;
use crate::cluster::envelope::Envelope;
use crate::cluster::{Departed, LocalSessions, Registry, Retention};
use crate::log_summary::Summary;
use crate::metrics::{self, Metrics};
use crate::model::AuthMethod;
use crate::model::ClientInfo;
use crate::model::Publication;
use crate::model::SubscriptionInfo;
use crate::wamp::Id;
use futures_util::future::BoxFuture;

/// Most registry writes sent in one pipeline.
const MAX_BATCH: usize = 512;
/// Longest one registry round trip may take.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(2);

/// Lookup script: validates every candidate session against its node's lease and epoch.
const LOOKUP: &str = include_str!("../lua/lookup.lua");

/// Count script: `all`, or `roles r1 r2…` (sessions holding any of them), summed over live nodes without
/// reading a session (see the module docs).
const COUNT: &str = include_str!("../lua/count.lua");

/// Page script: up to `limit` live session ids above `after`, in id order, optionally only those holding one
/// of the given roles. Reads candidates in chunks of `limit` from the `ids` sorted set.
const PAGE: &str = include_str!("../lua/page.lua");

/// Purge script: `node <id>` removes a node's entries; `dead` purges every node whose lease is gone.
const PURGE: &str = include_str!("../lua/purge.lua");

/// Presence script: `online <authid>` sets `pu:<authid>` unless set; `offline <authid>` deletes it once no
/// session of the user lives on a node with a current lease. Each answers 1 when it changed the state.
const PRESENCE: &str = include_str!("../lua/presence.lua");

/// Subscription script: `sub` or `unsub` one session's subscription, keeping the cluster's subscription table
/// (`subs`) with it; answers 1 when the call made the subscription's first subscriber or removed its last. Sent
/// by hash (`EVALSHA`) inside the writer's pipelines; every rebuild loads it first, and a Redis that lost it
/// (`NOSCRIPT` after a restart) fails the write, which marks the registry for that rebuild.
const SUBSCRIPTION: &str = include_str!("../lua/subscription.lua");

/// Inbox script: `put`, `taken` and `take` of one user's offline inbox.
const INBOX: &str = include_str!("../lua/inbox.lua");

/// Subscribers script: the session ids of a subscription (by id) whose nodes are alive.
const SUBSCRIBERS: &str = include_str!("../lua/subscribers.lua");

/// A registry failure (lookups only; writes never fail visibly, they mark the registry dirty).
#[derive(Debug, Clone, thiserror::Error)]
#[error("registry unavailable: {0}")]
pub struct RegistryError(pub String);

/// A session's subscription as the registry records it: its cluster-wide id and [`TopicKey::record`].
///
/// [`TopicKey::record`]: crate::model::TopicKey::record
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subscription {
    /// The subscription id (the same on every node).
    pub id: Id,
    /// URI and policy, as the registry names them.
    pub record: String,
}

/// Answers, per subscription of a write, whether it made that subscription's first subscriber cluster-wide
/// ([`Write::Subscribed`]) or removed its last ([`Write::Unsubscribed`], [`Write::Unregister`]). Dropped
/// unanswered when the write failed (the caller then announces no creation or deletion).
pub type Changes = oneshot::Sender<Vec<bool>>;

/// One change of a node's sessions, applied in order. A sender fires once the write was applied or failed.
pub enum Write {
    /// A session was established.
    Register(ClientInfo, Option<oneshot::Sender<()>>),
    /// A session ended, with its subscriptions.
    Unregister(ClientInfo, Vec<Subscription>, Option<Changes>),
    /// A session's identity changed (its web session logged in or out).
    Reidentify {
        /// Before.
        old: ClientInfo,
        /// After.
        new: ClientInfo,
    },
    /// A session subscribed.
    Subscribed(Id, Subscription, Option<Changes>),
    /// A session left a subscription.
    Unsubscribed(Id, Subscription, Option<Changes>),
    /// A session's testaments (JSON), replacing those it had; empty when flushed.
    Testaments(Id, Vec<String>),
    /// Rewrite every session of this node from the local truth (after an outage).
    Rebuild,
}

impl Write {
    fn take_ack(&mut self) -> Option<oneshot::Sender<()>> {
        match self {
            Write::Register(_, ack) => ack.take(),
            _ => None,
        }
    }

    /// The sender answering this write's subscription changes, and how many answers it expects.
    fn take_changes(&mut self) -> Option<(Changes, usize)> {
        match self {
            Write::Subscribed(_, _, changes) | Write::Unsubscribed(_, _, changes) => Some((changes.take()?, 1)),
            Write::Unregister(_, subscriptions, changes) => Some((changes.take()?, subscriptions.len())),
            _ => None,
        }
    }
}

/// The Redis registry of one node.
pub struct RedisRegistry {
    /// Lookups only: however many queue here, they never delay the control pool's work.
    lookups: Pool<Dial>,
    /// The writer and the heartbeat (lease renewal, rebuild, janitor, deregistration).
    control: Pool<Dial>,
    keys: Keys,
    node: String,
    epoch: String,
    lease: Duration,
    writes: mpsc::UnboundedSender<Write>,
    dirty: Arc<AtomicBool>,
    /// The endpoint, and the master generation the registry was last written under.
    endpoint: RedisEndpoint,
    generation: AtomicU64,
    stopped: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    /// Failed round trips (writes, rebuilds, heartbeats, lookups), summarised in the log.
    failures: Summary,
    /// The scripts, hashed once (invocations use EVALSHA and load the script again after a Redis restart).
    lookup_script: redis::Script,
    count_script: redis::Script,
    page_script: redis::Script,
    purge_script: redis::Script,
    presence_script: redis::Script,
    subscribers_script: redis::Script,
    inbox_script: redis::Script,
    subscription_script: redis::Script,
    /// Sessions the janitor (or the first rebuild) removed for good, for the node to announce.
    departed: mpsc::UnboundedSender<Vec<Departed>>,
    /// The first rebuild of this incarnation removes the previous incarnation's sessions: those departed.
    /// Later rebuilds remove this incarnation's own, which are registered again at once.
    first_rebuild: AtomicBool,
}

/// Connections lookups may use at once; more lookups wait for one (and never for the control pool).
const LOOKUP_CONNECTIONS: u32 = 8;
/// Connections of the control pool: one for the writer, one for the heartbeat.
const CONTROL_CONNECTIONS: u32 = 2;

async fn pool(endpoint: &RedisEndpoint, keys: &Keys, size: u32) -> Result<Pool<Dial>, RegistryError> {
    let manager = Dial::new(endpoint.clone(), keys.prefix());
    // bb8 keeps a broken multiplexed connection unless the checkout test (a PING) finds it dead; registry
    // traffic is batched and low-rate, so the extra round trip buys recovery after Redis restarts.
    Pool::builder()
        .max_size(size)
        .test_on_check_out(true)
        .connection_timeout(ROUND_TRIP_TIMEOUT)
        .build(manager)
        .await
        .map_err(|e| RegistryError(e.to_string()))
}

/// The role list of a session as the registry stores and groups it (JSON).
fn roles_key(roles: &[String]) -> String {
    serde_json::to_string(roles).unwrap_or_else(|_| "[]".into())
}

impl RedisRegistry {
    /// Connects the two pools and starts the writer and heartbeat tasks.
    pub async fn start(
        endpoint: &RedisEndpoint,
        keys: Keys,
        node: String,
        lease: Duration,
        local: Arc<dyn LocalSessions>,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<RedisRegistry>, mpsc::UnboundedReceiver<Vec<Departed>>), RegistryError> {
        let (writes, receiver) = mpsc::unbounded_channel();
        let (departed, departures) = mpsc::unbounded_channel();
        let registry = Arc::new(RedisRegistry {
            lookups: pool(endpoint, &keys, LOOKUP_CONNECTIONS).await?,
            control: pool(endpoint, &keys, CONTROL_CONNECTIONS).await?,
            keys,
            node,
            epoch: format!("{:016x}", rand::random::<u64>()),
            lease,
            writes,
            dirty: Arc::new(AtomicBool::new(true)),
            endpoint: endpoint.clone(),
            generation: AtomicU64::new(endpoint.generation()),
            stopped: Arc::new(AtomicBool::new(false)),
            metrics,
            failures: Summary::new(module_path!(), "registry round trips"),
            lookup_script: redis::Script::new(LOOKUP),
            count_script: redis::Script::new(COUNT),
            page_script: redis::Script::new(PAGE),
            purge_script: redis::Script::new(PURGE),
            presence_script: redis::Script::new(PRESENCE),
            subscribers_script: redis::Script::new(SUBSCRIBERS),
            inbox_script: redis::Script::new(INBOX),
            subscription_script: redis::Script::new(SUBSCRIPTION),
            departed,
            first_rebuild: AtomicBool::new(true),
        });
        actix_web::rt::spawn(registry.clone().writer(receiver, local));
        // The first heartbeat runs now: it claims the lease and purges this node id's previous incarnation.
        registry.heartbeat().await;
        actix_web::rt::spawn(registry.clone().heartbeats());
        Ok((registry, departures))
    }

    /// This incarnation's epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    fn send_write(&self, write: Write) {
        if !self.stopped.load(Ordering::Acquire) {
            let _ = self.writes.send(write);
        }
    }

    fn p(&self, name: &str) -> String {
        format!("{}{name}", self.keys.prefix())
    }
}
impl Retention for RedisRegistry {
    // `rt:{topic}`: the wire envelope, with the retention TTL; a newer retain replaces it.
    fn retain<'a>(
        &'a self,
        publication: &'a Publication,
        settings: &'a crate::config::RetentionSettings,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        let envelope = Envelope::encode_publication(&self.node, publication);
        let ttl = u64::try_from(settings.ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let key = self.p(&format!("rt:{}", publication.topic));
        Box::pin(async move { self.command(redis::cmd("SET").arg(key).arg(envelope).arg("PX").arg(ttl).clone()).await })
    }

    fn retained<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Option<Publication>, RegistryError>> {
        Box::pin(async move {
            let envelope: Option<Vec<u8>> =
                self.command(redis::cmd("GET").arg(self.p(&format!("rt:{topic}"))).clone()).await?;
            Ok(envelope.and_then(|bytes| Envelope::decode(&bytes).ok()?.into_publication()))
        })
    }
}

impl crate::cluster::Inbox for RedisRegistry {
    fn put<'a>(
        &'a self,
        authid: &'a str,
        publication: &'a Publication,
        settings: &'a crate::config::InboxSettings,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let envelope = String::from_utf8(Envelope::encode_publication(&self.node, publication))
                .map_err(|e| RegistryError(e.to_string()))?;
            let (now, ttl) = (crate::model::now_millis().to_string(), settings.ttl.as_millis().to_string());
            let (id, size) = (publication.id.to_string(), settings.size.to_string());
            let args = ["put", authid, &now, &ttl, &id, &size, &envelope];
            self.query::<Vec<String>>(&self.inbox_script, &args).await.map(drop)
        })
    }

    fn taken<'a>(&'a self, authid: &'a str, publication: Id) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let (now, id) = (crate::model::now_millis().to_string(), publication.to_string());
            self.query::<Vec<String>>(&self.inbox_script, &["taken", authid, &now, "0", &id]).await.map(drop)
        })
    }

    fn take<'a>(
        &'a self,
        authid: &'a str,
        topic: &'a str,
        settings: &'a crate::config::InboxSettings,
    ) -> BoxFuture<'a, Result<Vec<Publication>, RegistryError>> {
        Box::pin(async move {
            let (now, ttl) = (crate::model::now_millis().to_string(), settings.ttl.as_millis().to_string());
            let envelopes: Vec<Vec<u8>> = self.query(&self.inbox_script, &["take", authid, &now, &ttl, topic]).await?;
            Ok(envelopes.iter().filter_map(|e| Envelope::decode(e).ok()?.into_publication()).collect())
        })
    }
}

impl Registry for RedisRegistry {
    fn write(&self, write: Write) {
        self.send_write(write);
    }

    fn confirms_writes(&self) -> bool {
        true
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn get_client(&self, session: Id) -> BoxFuture<'_, Result<Option<ClientInfo>, RegistryError>> {
        Box::pin(RedisRegistry::get_client(self, session))
    }

    fn find_all_by_username<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<Vec<ClientInfo>, RegistryError>> {
        Box::pin(RedisRegistry::find_all_by_username(self, username))
    }

    fn find_by_username<'a>(
        &'a self,
        topic: &'a str,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ClientInfo>, RegistryError>> {
        Box::pin(RedisRegistry::find_by_username(self, topic, username))
    }

    fn find_by_roles<'a>(&'a self, roles: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<ClientInfo>, RegistryError>> {
        Box::pin(RedisRegistry::find_by_roles(self, roles))
    }

    fn count<'a>(&'a self, roles: Option<&'a [String]>) -> BoxFuture<'a, Result<usize, RegistryError>> {
        Box::pin(RedisRegistry::count(self, roles))
    }

    fn page<'a>(
        &'a self,
        roles: Option<&'a [String]>,
        after: Id,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Id>, RegistryError>> {
        Box::pin(RedisRegistry::page(self, roles, after, limit))
    }

    fn get_all(&self) -> BoxFuture<'_, Result<Vec<ClientInfo>, RegistryError>> {
        Box::pin(RedisRegistry::get_all(self))
    }

    fn mark_online<'a>(&'a self, authid: &'a str) -> BoxFuture<'a, Result<bool, RegistryError>> {
        Box::pin(async move { Ok(self.query::<i64>(&self.presence_script, &["online", authid]).await? == 1) })
    }

    fn mark_offline<'a>(&'a self, authid: &'a str) -> BoxFuture<'a, Result<bool, RegistryError>> {
        Box::pin(async move { Ok(self.query::<i64>(&self.presence_script, &["offline", authid]).await? == 1) })
    }

    fn deregister(&self) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(RedisRegistry::deregister(self))
    }

    fn subscriptions(&self) -> BoxFuture<'_, Result<Vec<SubscriptionInfo>, RegistryError>> {
        Box::pin(RedisRegistry::subscriptions(self))
    }

    fn subscription(&self, id: Id) -> BoxFuture<'_, Result<Option<SubscriptionInfo>, RegistryError>> {
        Box::pin(RedisRegistry::subscription(self, id))
    }

    fn subscribers(&self, id: Id) -> BoxFuture<'_, Result<Vec<Id>, RegistryError>> {
        Box::pin(RedisRegistry::subscribers(self, id))
    }
}
