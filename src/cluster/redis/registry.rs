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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bb8_redis::bb8::Pool;
use bb8_redis::RedisConnectionManager;
use tokio::sync::{mpsc, oneshot};

use super::conn::RedisEndpoint;
use super::keys::Keys;
use crate::cluster::{LocalSessions, Registry};
use crate::log_summary::Summary;
use crate::metrics::{self, Metrics};
use crate::model::AuthMethod;
use crate::model::ClientInfo;
use crate::wamp::Id;
use futures_util::future::BoxFuture;

/// Most registry writes sent in one pipeline.
const MAX_BATCH: usize = 512;
/// Longest one registry round trip may take.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(2);

/// Lookup script: validates every candidate session against its node's lease and epoch.
const LOOKUP: &str = include_str!("lua/lookup.lua");

/// Count script: `all`, or `roles r1 r2…` (sessions holding any of them), summed over live nodes without
/// reading a session (see the module docs).
const COUNT: &str = include_str!("lua/count.lua");

/// Page script: up to `limit` live session ids above `after`, in id order, optionally only those holding one
/// of the given roles. Reads candidates in chunks of `limit` from the `ids` sorted set.
const PAGE: &str = include_str!("lua/page.lua");

/// Purge script: `node <id>` removes a node's entries; `dead` purges every node whose lease is gone.
const PURGE: &str = include_str!("lua/purge.lua");

/// A registry failure (lookups only; writes never fail visibly, they mark the registry dirty).
#[derive(Debug, Clone, thiserror::Error)]
#[error("registry unavailable: {0}")]
pub struct RegistryError(pub String);

/// One change of a node's sessions, applied in order. A sender fires once the write was applied or failed.
pub enum Write {
    /// A session was established.
    Register(ClientInfo, Option<oneshot::Sender<()>>),
    /// A session ended, with its exact topics.
    Unregister(ClientInfo, Vec<String>),
    /// A session's identity changed (its web session logged in or out).
    Reidentify {
        /// Before.
        old: ClientInfo,
        /// After.
        new: ClientInfo,
    },
    /// A session subscribed to an exact topic.
    Subscribed(Id, String, Option<oneshot::Sender<()>>),
    /// A session left an exact topic.
    Unsubscribed(Id, String),
    /// Rewrite every session of this node from the local truth (after an outage).
    Rebuild,
}

impl Write {
    fn take_ack(&mut self) -> Option<oneshot::Sender<()>> {
        match self {
            Write::Register(_, ack) | Write::Subscribed(_, _, ack) => ack.take(),
            _ => None,
        }
    }
}

/// The Redis registry of one node.
pub struct RedisRegistry {
    /// Lookups only: however many queue here, they never delay the control pool's work.
    lookups: Pool<RedisConnectionManager>,
    /// The writer and the heartbeat (lease renewal, rebuild, janitor, deregistration).
    control: Pool<RedisConnectionManager>,
    keys: Keys,
    node: String,
    epoch: String,
    lease: Duration,
    writes: mpsc::UnboundedSender<Write>,
    dirty: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    /// Failed round trips (writes, rebuilds, heartbeats, lookups), summarised in the log.
    failures: Summary,
    /// The scripts, hashed once (invocations use EVALSHA and load the script again after a Redis restart).
    lookup_script: redis::Script,
    count_script: redis::Script,
    page_script: redis::Script,
    purge_script: redis::Script,
}

/// Connections lookups may use at once; more lookups wait for one (and never for the control pool).
const LOOKUP_CONNECTIONS: u32 = 8;
/// Connections of the control pool: one for the writer, one for the heartbeat.
const CONTROL_CONNECTIONS: u32 = 2;

async fn pool(endpoint: &RedisEndpoint, size: u32) -> Result<Pool<RedisConnectionManager>, RegistryError> {
    let manager = RedisConnectionManager::new(endpoint.connection_info()).map_err(|e| RegistryError(e.to_string()))?;
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

fn parse_record(r: Vec<String>) -> Option<ClientInfo> {
    let [id, node, authid, roles, method, protocol, connected_at]: [String; 7] = r.try_into().ok()?;
    Some(ClientInfo {
        session: id.parse().ok()?,
        node,
        authid,
        authroles: serde_json::from_str(&roles).unwrap_or_default(),
        authmethod: if method == "cookie" { AuthMethod::Cookie } else { AuthMethod::Anonymous },
        protocol: if protocol == "wamp" { "wamp" } else { "wamp.2.json" },
        connected_at: connected_at.parse().unwrap_or(0),
    })
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
    ) -> Result<Arc<RedisRegistry>, RegistryError> {
        let (writes, receiver) = mpsc::unbounded_channel();
        let registry = Arc::new(RedisRegistry {
            lookups: pool(endpoint, LOOKUP_CONNECTIONS).await?,
            control: pool(endpoint, CONTROL_CONNECTIONS).await?,
            keys,
            node,
            epoch: format!("{:016x}", rand::random::<u64>()),
            lease,
            writes,
            dirty: Arc::new(AtomicBool::new(true)),
            stopped: Arc::new(AtomicBool::new(false)),
            metrics,
            failures: Summary::new(module_path!(), "registry round trips"),
            lookup_script: redis::Script::new(LOOKUP),
            count_script: redis::Script::new(COUNT),
            page_script: redis::Script::new(PAGE),
            purge_script: redis::Script::new(PURGE),
        });
        actix_web::rt::spawn(registry.clone().writer(receiver, local));
        // The first heartbeat runs now: it claims the lease and purges this node id's previous incarnation.
        registry.heartbeat().await;
        actix_web::rt::spawn(registry.clone().heartbeats());
        Ok(registry)
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

    fn push_register(&self, pipe: &mut redis::Pipeline, c: &ClientInfo) {
        let id = c.session.to_string();
        let roles = roles_key(&c.authroles);
        pipe.cmd("HSET")
            .arg(self.p(&format!("s:{id}")))
            .arg("node")
            .arg(&self.node)
            .arg("epoch")
            .arg(&self.epoch)
            .arg("authid")
            .arg(&c.authid)
            .arg("authroles")
            .arg(&roles)
            .arg("authmethod")
            .arg(c.authmethod.as_str())
            .arg("protocol")
            .arg(c.protocol)
            .arg("connected_at")
            .arg(c.connected_at)
            .ignore();
        pipe.cmd("SADD").arg(self.p(&format!("n:{}", self.node))).arg(&id).ignore();
        pipe.cmd("SADD").arg(self.p(&format!("u:{}", c.authid))).arg(&id).ignore();
        for role in &c.authroles {
            pipe.cmd("SADD").arg(self.p(&format!("r:{role}"))).arg(&id).ignore();
        }
        pipe.cmd("SADD").arg(self.p(&format!("nrs:{}", self.node))).arg(&roles).ignore();
        pipe.cmd("SADD").arg(self.p(&format!("nr:{}:{roles}", self.node))).arg(&id).ignore();
        // Session ids are at most 2^53, so the score (a double) is exact and orders pages by id.
        pipe.cmd("ZADD").arg(self.p("ids")).arg(c.session).arg(&id).ignore();
    }

    fn push_unregister_sets(&self, pipe: &mut redis::Pipeline, c: &ClientInfo) {
        let id = c.session.to_string();
        pipe.cmd("SREM").arg(self.p(&format!("u:{}", c.authid))).arg(&id).ignore();
        for role in &c.authroles {
            pipe.cmd("SREM").arg(self.p(&format!("r:{role}"))).arg(&id).ignore();
        }
        let roles = roles_key(&c.authroles);
        pipe.cmd("SREM").arg(self.p(&format!("nr:{}:{roles}", self.node))).arg(&id).ignore();
    }

    fn push(&self, pipe: &mut redis::Pipeline, write: &Write) {
        match write {
            Write::Register(c, _) => self.push_register(pipe, c),
            Write::Reidentify { old, new } => {
                self.push_unregister_sets(pipe, old);
                self.push_register(pipe, new);
            }
            Write::Unregister(c, topics) => {
                let id = c.session.to_string();
                self.push_unregister_sets(pipe, c);
                for t in topics {
                    pipe.cmd("SREM").arg(self.p(&format!("ts:{t}"))).arg(&id).ignore();
                }
                pipe.cmd("DEL").arg(self.p(&format!("s:{id}"))).arg(self.p(&format!("st:{id}"))).ignore();
                pipe.cmd("SREM").arg(self.p(&format!("n:{}", self.node))).arg(&id).ignore();
                pipe.cmd("ZREM").arg(self.p("ids")).arg(&id).ignore();
            }
            Write::Subscribed(id, topic, _) => {
                pipe.cmd("SADD").arg(self.p(&format!("ts:{topic}"))).arg(id.to_string()).ignore();
                pipe.cmd("SADD").arg(self.p(&format!("st:{id}"))).arg(topic).ignore();
            }
            Write::Unsubscribed(id, topic) => {
                pipe.cmd("SREM").arg(self.p(&format!("ts:{topic}"))).arg(id.to_string()).ignore();
                pipe.cmd("SREM").arg(self.p(&format!("st:{id}"))).arg(topic).ignore();
            }
            Write::Rebuild => {}
        }
    }

    async fn run_pipe(&self, pipe: &redis::Pipeline) -> Result<(), RegistryError> {
        let mut conn = self.control.get().await.map_err(|e| RegistryError(e.to_string()))?;
        match tokio::time::timeout(ROUND_TRIP_TIMEOUT, pipe.query_async::<()>(&mut *conn)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(RegistryError(e.to_string())),
            Err(_) => Err(RegistryError("timed out".into())),
        }
    }

    async fn purge(&self, mode: &str, node: &str) -> Result<i64, RegistryError> {
        let mut conn = self.control.get().await.map_err(|e| RegistryError(e.to_string()))?;
        let mut invocation = self.purge_script.prepare_invoke();
        invocation.arg(self.keys.prefix()).arg(mode).arg(node);
        match tokio::time::timeout(ROUND_TRIP_TIMEOUT, invocation.invoke_async::<i64>(&mut *conn)).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(RegistryError(e.to_string())),
            Err(_) => Err(RegistryError("timed out".into())),
        }
    }

    /// Purges this node's entries, then registers every live local session and its topics.
    async fn rebuild(&self, local: &dyn LocalSessions) -> Result<(), RegistryError> {
        self.purge("node", &self.node).await?;
        let mut pipe = redis::pipe();
        pipe.cmd("SADD").arg(self.p("nodes")).arg(&self.node).ignore();
        for (client, topics) in local.snapshot() {
            self.push_register(&mut pipe, &client);
            for topic in topics {
                self.push(&mut pipe, &Write::Subscribed(client.session, topic, None));
            }
        }
        // Last: from here on the node's sets count for this epoch.
        pipe.cmd("SET").arg(self.p(&format!("ne:{}", self.node))).arg(&self.epoch).ignore();
        self.run_pipe(&pipe).await
    }

    async fn writer(self: Arc<Self>, mut receiver: mpsc::UnboundedReceiver<Write>, local: Arc<dyn LocalSessions>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
            // Everything before a rebuild is written first; the rebuild then reflects the local truth.
            let mut pipe = redis::pipe();
            let mut pending = 0;
            let mut acks = Vec::new();
            for mut write in batch.drain(..) {
                acks.extend(write.take_ack());
                if let Write::Rebuild = write {
                    if pending > 0 {
                        self.apply(&pipe).await;
                        pipe = redis::pipe();
                        pending = 0;
                    }
                    match self.rebuild(&*local).await {
                        Ok(()) => {
                            metrics::inc(&self.metrics.registry_rebuilds_total);
                            log::info!("registry: node {} registered {} live sessions", self.node, local.count(None));
                        }
                        Err(e) => {
                            self.dirty.store(true, Ordering::Release);
                            metrics::inc(&self.metrics.registry_errors_total);
                            self.failures.failed(format_args!("rebuild failed, will retry: {e}"));
                        }
                    }
                    continue;
                }
                self.push(&mut pipe, &write);
                pending += 1;
            }
            if pending > 0 {
                self.apply(&pipe).await;
            }
            acks.into_iter().for_each(|ack| {
                let _ = ack.send(());
            });
        }
    }

    async fn apply(&self, pipe: &redis::Pipeline) {
        if let Err(e) = self.run_pipe(pipe).await {
            self.dirty.store(true, Ordering::Release);
            self.failures.failed(format_args!("write failed, the registry will be rebuilt when Redis answers: {e}"));
            metrics::inc(&self.metrics.registry_errors_total);
        }
    }

    /// Renews the lease; asks for a rebuild when Redis lost it or writes failed; purges dead nodes.
    async fn heartbeat(&self) {
        let mut conn = match self.control.get().await {
            Ok(c) => c,
            Err(e) => {
                self.dirty.store(true, Ordering::Release);
                self.failures.failed(format_args!("heartbeat: {e}"));
                return;
            }
        };
        let set = redis::cmd("SET")
            .arg(self.p(&format!("node:{}", self.node)))
            .arg(&self.epoch)
            .arg("PX")
            .arg(self.lease.as_millis() as u64)
            .arg("GET")
            .to_owned();
        match tokio::time::timeout(ROUND_TRIP_TIMEOUT, set.query_async::<Option<String>>(&mut *conn)).await {
            Ok(Ok(previous)) => {
                self.failures.succeeded();
                if previous.as_deref() != Some(self.epoch.as_str()) {
                    if let Some(other) = previous {
                        log::warn!("node id {} was held by epoch {other}; taking it over", self.node);
                    }
                    self.dirty.store(true, Ordering::Release);
                }
            }
            Ok(Err(e)) => {
                self.dirty.store(true, Ordering::Release);
                self.failures.failed(format_args!("heartbeat failed: {e}"));
                return;
            }
            Err(_) => {
                self.dirty.store(true, Ordering::Release);
                self.failures.failed("heartbeat timed out");
                return;
            }
        }
        drop(conn);
        if self.dirty.swap(false, Ordering::AcqRel) {
            self.send_write(Write::Rebuild);
        }
        match self.purge("dead", "").await {
            Ok(n) if n > 0 => log::info!("registry: purged {n} sessions of nodes whose lease expired"),
            Ok(_) => {}
            Err(e) => log::debug!("registry janitor: {e}"),
        }
    }

    async fn heartbeats(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.lease / 3);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if self.stopped.load(Ordering::Acquire) {
                return;
            }
            self.heartbeat().await;
        }
    }

    /// Graceful shutdown: stop writing, remove this node's entries and its lease.
    pub async fn deregister(&self) -> Result<(), RegistryError> {
        self.stopped.store(true, Ordering::Release);
        self.purge("node", &self.node).await?;
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(self.p(&format!("node:{}", self.node))).ignore();
        pipe.cmd("SREM").arg(self.p("nodes")).arg(&self.node).ignore();
        self.run_pipe(&pipe).await
    }

    /// Runs `script` with the prefix and `args` on the lookup pool; failures are summarised in the log.
    async fn query<T: redis::FromRedisValue>(&self, script: &redis::Script, args: &[&str]) -> Result<T, RegistryError> {
        let result = self.query_once(script, args).await;
        match &result {
            Ok(_) => self.failures.succeeded(),
            Err(e) => self.failures.failed(format_args!("lookup: {e}")),
        }
        result
    }

    async fn query_once<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        args: &[&str],
    ) -> Result<T, RegistryError> {
        let mut conn = self.lookups.get().await.map_err(|e| RegistryError(e.to_string()))?;
        let mut invocation = script.prepare_invoke();
        invocation.arg(self.keys.prefix());
        for a in args {
            invocation.arg(*a);
        }
        match tokio::time::timeout(ROUND_TRIP_TIMEOUT, invocation.invoke_async::<T>(&mut *conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(RegistryError(e.to_string())),
            Err(_) => Err(RegistryError("timed out".into())),
        }
    }

    async fn lookup(&self, args: &[&str]) -> Result<Vec<ClientInfo>, RegistryError> {
        let records: Vec<Vec<String>> = self.query(&self.lookup_script, args).await?;
        Ok(records.into_iter().filter_map(parse_record).collect())
    }

    /// How many live sessions there are, or how many hold one of `roles`, without reading any session.
    pub async fn count(&self, roles: Option<&[String]>) -> Result<usize, RegistryError> {
        let mut args = vec![if roles.is_some() { "roles" } else { "all" }];
        args.extend(roles.unwrap_or_default().iter().map(String::as_str));
        let n: i64 = self.query(&self.count_script, &args).await?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Up to `limit` live session ids above `after`, in id order, optionally only those holding one of `roles`.
    pub async fn page(&self, roles: Option<&[String]>, after: Id, limit: usize) -> Result<Vec<Id>, RegistryError> {
        let (after, limit) = (after.to_string(), limit.to_string());
        let mut args = vec![after.as_str(), limit.as_str(), if roles.is_some() { "roles" } else { "all" }];
        args.extend(roles.unwrap_or_default().iter().map(String::as_str));
        let ids: Vec<String> = self.query(&self.page_script, &args).await?;
        Ok(ids.iter().filter_map(|id| id.parse().ok()).collect())
    }

    /// One session.
    pub async fn get_client(&self, session: Id) -> Result<Option<ClientInfo>, RegistryError> {
        Ok(self.lookup(&["one", &session.to_string()]).await?.into_iter().next())
    }

    /// Every session of `username` on every node.
    pub async fn find_all_by_username(&self, username: &str) -> Result<Vec<ClientInfo>, RegistryError> {
        self.lookup(&["set", &format!("u:{username}")]).await
    }

    /// Sessions of `username` subscribed to `topic`, on every node.
    pub async fn find_by_username(&self, topic: &str, username: &str) -> Result<Vec<ClientInfo>, RegistryError> {
        self.lookup(&["inter", &format!("ts:{topic}"), &format!("u:{username}")]).await
    }

    /// Sessions holding any of `roles`.
    pub async fn find_by_roles(&self, roles: &[&str]) -> Result<Vec<ClientInfo>, RegistryError> {
        if roles.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = roles.iter().map(|r| format!("r:{r}")).collect();
        let mut args = vec!["union"];
        args.extend(keys.iter().map(String::as_str));
        self.lookup(&args).await
    }

    /// Every session.
    pub async fn get_all(&self) -> Result<Vec<ClientInfo>, RegistryError> {
        self.lookup(&["zset", "ids"]).await
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

    fn deregister(&self) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(RedisRegistry::deregister(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_into_client_info() {
        let r = vec!["42", "node-a", "alice", r#"["admin","user"]"#, "cookie", "wamp", "1700000000"];
        let c = parse_record(r.into_iter().map(String::from).collect()).unwrap();
        assert_eq!((c.session, c.node.as_str(), c.authid.as_str()), (42, "node-a", "alice"));
        assert_eq!(c.authroles, vec!["admin", "user"]);
        assert_eq!((c.authmethod, c.protocol), (AuthMethod::Cookie, "wamp"));
        assert!(parse_record(vec!["x".into()]).is_none());
    }
}
