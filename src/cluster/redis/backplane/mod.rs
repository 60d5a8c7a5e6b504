//! The backplane: publications and control messages between nodes.
//!
//! The Redis implementation of [`Backplane`] (the memory one is in [`crate::cluster::memory`]) keeps **one pub/sub connection per node**, subscribed only to the channels of topics that
//! have local subscribers (SUBSCRIBE/UNSUBSCRIBE batched as topics appear and empty) and to the node's inbox,
//! so a node never receives traffic it has no use for. Publications go out on a separate auto-reconnecting
//! connection, one PUBLISH each, serialised once.
//!
//! Publications targeted at a few users (`eligible_authid` with at most [`MAX_USER_ROUTES`] names) go to those
//! users' channels instead of the topic's: each node subscribes to the channel of every user it holds a
//! session of, so "send this to alice" reaches only the nodes where alice is, however many nodes subscribe to
//! the topic. The receiving node delivers it exactly like a topic-channel publication (same topic actors, same
//! filters), so the route changes who receives the bytes, never who gets the EVENT.
//!
//! Failure handling: the pub/sub task reconnects with doubling backoff and resubscribes everything; every
//! `probe_interval` it sends a probe through its own inbox, and a probe that does not come back means a wedged
//! subscription, which is torn down and rebuilt. While the subscription is down, publishes fail fast (counted,
//! logged; the caller answers ERROR or 503) instead of vanishing. Pub/sub is at-most-once: what other nodes
//! publish during the gap is not replayed. After an outage nodes resubscribe at slightly different moments; for
//! a settling window after its own subscription is back, a node compares each PUBLISH's receiver count with the
//! last one seen on that channel, and reports a publication that reached fewer nodes (some have not resubscribed
//! yet) as failed instead of letting it vanish unnoticed on them (`reach.rs`); the first PUBLISH that succeeds
//! after a failed one opens the same window. Limits: only channels this node published to before (at most
//! 10,000 remembered), only after an outage this node saw, and a node
//! that really left the topic meanwhile makes publications fail until the window ends; kept publications
//! (history) are not checked, their subscribers recover them with `resume_after`. A node may receive one publication several times (a channel and a
//! pattern both matching); recent publication ids are remembered so each is delivered once.
//!
//! Files: `mod.rs` the backplane handle and publishing, `subscriber.rs` the pub/sub task (subscriptions,
//! reconnects, probes, delivery once per publication id), `reach.rs` the receiver counts checked after an outage.

mod reach;
mod subscriber;

use reach::{settle, Reach};
use subscriber::{PubSubTask, RecentIds};

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use futures_util::future::BoxFuture;

use super::conn::RedisEndpoint;
use super::connection::{self as redis_connection, AnyConnection};
use super::keys::{Keys, Route};
use crate::cluster::envelope::{Body, Envelope};
use crate::cluster::{Backplane, BackplaneError, BackplaneState, ClusterEvents, Receiver};
use crate::log_summary::Summary;
use crate::logfmt::Escaped;
use crate::metrics::{self, Metrics};
use crate::model::{Keep, Publication, StoredEvent, TopicKey};
use crate::wamp::Id;

/// First reconnect delay; doubles up to `cluster.max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Publication ids remembered for de-duplication.
const RECENT_IDS: usize = 16_384;
/// Longest a PUBLISH may take before it counts as failed.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);
/// PINGs the publisher gets to prove itself after the subscription (re)connects: one may hit the connection
/// that died with the outage, the next runs on the re-dialled one.
const PUBLISHER_WAKE_ATTEMPTS: usize = 2;
/// Pause before a Redis Cluster publisher is dialled again after a failure (bounds the re-dials to a few a
/// second while a master is down).
const CLUSTER_REDIAL_DELAY: Duration = Duration::from_millis(200);
/// Largest `eligible_authid` list routed through user channels (one PUBLISH per user, pipelined); longer lists
/// go to the topic channel, where one PUBLISH reaches every interested node.
pub const MAX_USER_ROUTES: usize = 8;

enum Command {
    Want { name: String, pattern: bool, ready: Option<oneshot::Sender<()>> },
    Unwant { name: String, pattern: bool },
}

impl Backplane for RedisBackplane {
    fn want(&self, key: &TopicKey) -> Option<oneshot::Receiver<()>> {
        let (tx, rx) = oneshot::channel();
        match self.keys.subscription(key) {
            Route::Channel(name) => {
                let _ = self.commands.send(Command::Want { name, pattern: false, ready: Some(tx) });
            }
            Route::Glob(name) => {
                let _ = self.commands.send(Command::Want { name, pattern: true, ready: Some(tx) });
            }
            Route::Buckets(names) => self.want_shared(names, tx),
        }
        Some(rx)
    }

    fn unwant(&self, key: &TopicKey) {
        match self.keys.subscription(key) {
            Route::Channel(name) => {
                let _ = self.commands.send(Command::Unwant { name, pattern: false });
            }
            Route::Glob(name) => {
                let _ = self.commands.send(Command::Unwant { name, pattern: true });
            }
            Route::Buckets(names) => self.unwant_shared(names),
        }
    }

    fn want_user(&self, authid: &str) -> Option<oneshot::Receiver<()>> {
        let (tx, rx) = oneshot::channel();
        self.want_shared(vec![self.keys.user_channel(authid)], tx);
        Some(rx)
    }

    fn unwant_user(&self, authid: &str) {
        self.unwant_shared(vec![self.keys.user_channel(authid)]);
    }

    fn reaches_other_nodes(&self) -> bool {
        true
    }

    fn publish<'a>(&'a self, publication: &'a Publication) -> BoxFuture<'a, Result<(), BackplaneError>> {
        Box::pin(self.publish_now(publication))
    }

    fn publish_kept<'a>(
        &'a self,
        publication: &'a Publication,
        keep: &'a Keep,
    ) -> BoxFuture<'a, Result<(), BackplaneError>> {
        Box::pin(async move {
            if !self.up.load(Ordering::Acquire) {
                self.reach.lock().unwrap_or_else(|e| e.into_inner()).failed();
                return Err(BackplaneError::Down);
            }
            let bytes = Envelope::encode_publication(&self.node, publication);
            let key = self.keys.history(&publication.topic);
            let ttl = u64::try_from(keep.ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            // One MULTI: kept and published at the same instant, so a reader cannot fall between the two.
            let mut pipe = redis::pipe();
            pipe.atomic();
            pipe.cmd("XADD").arg(&key).arg("MAXLEN").arg(keep.size).arg("*").arg("e").arg(&bytes).ignore();
            pipe.cmd("XTRIM").arg(&key).arg("MINID").arg(crate::model::now_millis().saturating_sub(ttl)).ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(ttl).ignore();
            // On a Redis Cluster one MULTI holds one slot: the stream and the topic's channel share it, user
            // channels do not (the topic channel reaches the same sockets, through more nodes).
            let channels: Vec<String> = match user_route(publication).filter(|_| !self.keys.sharded_pubsub()) {
                Some(users) => users.iter().map(|u| self.keys.user_channel(u)).collect(),
                None => vec![self.keys.topic_channel(&publication.topic)],
            };
            for channel in &channels {
                pipe.cmd(self.publish_command()).arg(channel).arg(&bytes);
            }
            let mut conn = self.publisher.conn();
            // No reach check here: a kept publication is in the history, where a subscriber that missed it
            // finds it (`resume_after`), and failing it now would make a retry keep it twice.
            let answer = answered(tokio::time::timeout(PUBLISH_TIMEOUT, pipe.query_async::<Vec<i64>>(&mut conn)).await);
            if answer.is_err() {
                self.outage();
            }
            let mut result = answer.map(drop);
            if let (Ok(()), Some(patterns)) = (&result, self.keys.pattern_channel(&publication.topic)) {
                result = self.send(&patterns, &bytes).await;
            }
            match &result {
                Ok(()) => metrics::inc(&self.metrics.backplane_published_total),
                Err(e) => {
                    metrics::inc(&self.metrics.backplane_publish_errors_total);
                    self.publish_failures.failed(e);
                }
            }
            result
        })
    }

    fn history<'a>(&'a self, topic: &'a str, ttl: Duration) -> BoxFuture<'a, Result<Vec<StoredEvent>, BackplaneError>> {
        Box::pin(async move {
            let since = crate::model::now_millis().saturating_sub(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
            let mut conn = self.publisher.conn();
            let read = redis::cmd("XRANGE").arg(self.keys.history(topic)).arg(since).arg("+").clone();
            let entries: Vec<(String, Vec<Vec<u8>>)> =
                match tokio::time::timeout(PUBLISH_TIMEOUT, read.query_async(&mut conn)).await {
                    Ok(Ok(entries)) => entries,
                    Ok(Err(e)) => return Err(BackplaneError::Publish(e.to_string())),
                    Err(_) => return Err(BackplaneError::Publish(format!("no answer within {PUBLISH_TIMEOUT:?}"))),
                };
            Ok(entries.into_iter().filter_map(|(id, fields)| stored_event(&id, &fields)).collect())
        })
    }

    fn send_control<'a>(&'a self, node: &'a str, body: Body) -> BoxFuture<'a, Result<(), BackplaneError>> {
        Box::pin(async move { self.send(&self.keys.inbox(node), &self.envelope(body).encode()).await })
    }

    fn last_error(&self) -> Option<String> {
        if self.up.load(Ordering::Acquire) {
            return None;
        }
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn state(&self) -> BackplaneState {
        if self.up.load(Ordering::Acquire) {
            BackplaneState::Up
        } else {
            BackplaneState::Down
        }
    }
}

/// The Redis backplane's sending side; its receiving side is a task started by [`RedisBackplane::start`].
pub struct RedisBackplane {
    node: String,
    keys: Keys,
    commands: mpsc::UnboundedSender<Command>,
    /// Wants per shared channel: local sessions per user channel, subscriptions per pattern bucket (Redis
    /// Cluster). Commands are sent under this lock, so the task sees wants and unwants in the order the counts
    /// changed.
    shared: Mutex<HashMap<String, usize>>,
    publisher: Publisher,
    up: Arc<AtomicBool>,
    /// Receiver counts per channel, checked while settling after an outage.
    reach: Arc<Mutex<Reach>>,
    /// The error that last ended (or prevented) the subscription, for readiness output.
    last_error: Arc<Mutex<Option<String>>>,
    /// Publications not handed to Redis, summarised in the log.
    publish_failures: Summary,
    metrics: Arc<Metrics>,
}

impl RedisBackplane {
    /// Connects the publisher (within `redis.connect_timeout`); the pub/sub task starts on the current runtime
    /// when the returned [`Receiver`] is given the node's [`ClusterEvents`].
    pub async fn start(
        endpoint: &RedisEndpoint,
        node: String,
        keys: Keys,
        settings: crate::config::ClusterSettings,
        metrics: Arc<Metrics>,
    ) -> redis::RedisResult<(RedisBackplane, Receiver)> {
        let publisher = Publisher::connect(endpoint).await?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let up = Arc::new(AtomicBool::new(false));
        let reach = Arc::new(Mutex::new(Reach::new(settle(&settings))));
        let last_error = Arc::new(Mutex::new(None));
        let (node_id, task_keys, task_metrics) = (node.clone(), keys.clone(), metrics.clone());
        let task_last_error = last_error.clone();
        let (task_up, task_publisher, task_endpoint) = (up.clone(), publisher.clone(), endpoint.clone());
        let task_reach = reach.clone();
        let receiving = Receiver::new(move |events| {
            let task = PubSubTask {
                endpoint: task_endpoint,
                last_error: task_last_error,
                connect_failures: Summary::new(module_path!(), "backplane connection attempts"),
                node: node_id,
                keys: task_keys,
                settings,
                events,
                metrics: task_metrics,
                up: task_up,
                reach: task_reach,
                was_up: false,
                publisher: task_publisher,
                channels: HashSet::new(),
                patterns: HashSet::new(),
                recent: RecentIds::default(),
            };
            actix_web::rt::spawn(task.run(receiver));
        });
        let publish_failures = Summary::new(module_path!(), "publications");
        let backplane = RedisBackplane {
            node,
            keys,
            commands,
            shared: Mutex::default(),
            publisher,
            up,
            reach,
            last_error,
            publish_failures,
            metrics,
        };
        Ok((backplane, receiving))
    }

    fn envelope(&self, body: Body) -> Envelope {
        Envelope { v: crate::cluster::envelope::VERSION, origin: self.node.clone(), body }
    }

    async fn publish_now(&self, publication: &Publication) -> Result<(), BackplaneError> {
        let handed_over = Instant::now();
        let result = if self.up.load(Ordering::Acquire) {
            let channels: Vec<String> = match user_route(publication) {
                Some(users) => users.iter().map(|u| self.keys.user_channel(u)).collect(),
                None => {
                    let topic = &publication.topic;
                    std::iter::once(self.keys.topic_channel(topic)).chain(self.keys.pattern_channel(topic)).collect()
                }
            };
            self.send_all(&channels, Envelope::encode_publication(&self.node, publication)).await
        } else {
            self.reach.lock().unwrap_or_else(|e| e.into_inner()).failed();
            Err(BackplaneError::Down)
        };
        match &result {
            Ok(()) => {
                metrics::inc(&self.metrics.backplane_published_total);
                self.metrics.backplane_publish_seconds.observe(handed_over.elapsed().as_secs_f64());
                self.publish_failures.succeeded();
            }
            Err(e) => {
                metrics::inc(&self.metrics.backplane_publish_errors_total);
                let topic = Escaped(&publication.topic);
                log::debug!("publication {} on {topic} not sent to other nodes: {e}", publication.id);
                self.publish_failures.failed(e);
            }
        }
        result
    }

    /// PUBLISHes the same bytes on one or several channels: in one round trip, or on a Redis Cluster (where
    /// channels live in different slots) as concurrent SPUBLISHes.
    async fn send_all(&self, channels: &[String], bytes: Vec<u8>) -> Result<(), BackplaneError> {
        if let [channel] = channels {
            return self.send(channel, &bytes).await;
        }
        if self.keys.sharded_pubsub() {
            let sends = channels.iter().map(|channel| self.send(channel, &bytes));
            return futures_util::future::join_all(sends).await.into_iter().collect();
        }
        let mut pipe = redis::pipe();
        for channel in channels {
            pipe.cmd("PUBLISH").arg(channel).arg(&bytes);
        }
        let mut conn = self.publisher.conn();
        let answer = answered(tokio::time::timeout(PUBLISH_TIMEOUT, pipe.query_async::<Vec<i64>>(&mut conn)).await);
        if answer.is_err() {
            self.outage();
        }
        answer.and_then(|reached| self.check_reach(channels.iter().map(String::as_str), &reached))
    }

    async fn send(&self, channel: &str, bytes: &[u8]) -> Result<(), BackplaneError> {
        let mut conn = self.publisher.conn();
        let publish = redis::cmd(self.publish_command()).arg(channel).arg(bytes).clone();
        let answer = answered(tokio::time::timeout(PUBLISH_TIMEOUT, publish.query_async::<i64>(&mut conn)).await);
        if answer.is_err() {
            self.outage();
        }
        answer.and_then(|reached| self.check_reach([channel], &[reached]))
    }

    /// A PUBLISH failed: re-dial a cluster publisher, and check the reach of the next ones (see [`Reach`]).
    fn outage(&self) {
        self.publisher.failed();
        self.reach.lock().unwrap_or_else(|e| e.into_inner()).failed();
    }

    /// Each channel's receiver count against the last one (see [`Reach`]).
    fn check_reach<'c>(
        &self,
        channels: impl IntoIterator<Item = &'c str>,
        reached: &[i64],
    ) -> Result<(), BackplaneError> {
        let mut reach = self.reach.lock().unwrap_or_else(|e| e.into_inner());
        channels.into_iter().zip(reached).try_for_each(|(channel, n)| reach.check(channel, *n))
    }

    fn publish_command(&self) -> &'static str {
        self.keys.publish_command()
    }

    /// Wants channels shared by several sessions or subscriptions (user channels, pattern buckets): the first
    /// want of each subscribes. Every want is sent, not only the first: `ready` fires only after any
    /// subscription to these channels still in flight, because the task handles commands in order.
    fn want_shared(&self, names: Vec<String>, ready: oneshot::Sender<()>) {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let last = names.len().saturating_sub(1);
        let mut ready = Some(ready);
        for (i, name) in names.into_iter().enumerate() {
            *shared.entry(name.clone()).or_default() += 1;
            let ready = if i == last { ready.take() } else { None };
            let _ = self.commands.send(Command::Want { name, pattern: false, ready });
        }
    }

    /// The last unwant of a shared channel unsubscribes.
    fn unwant_shared(&self, names: Vec<String>) {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        for name in names {
            let Some(count) = shared.get_mut(&name) else { continue };
            *count -= 1;
            if *count == 0 {
                shared.remove(&name);
                let _ = self.commands.send(Command::Unwant { name, pattern: false });
            }
        }
    }
}

/// The publishing connection, dialled again when the master moves (Sentinel).
#[derive(Clone)]
pub(super) struct Publisher {
    endpoint: RedisEndpoint,
    current: Arc<Mutex<(u64, AnyConnection)>>,
    /// A Redis Cluster connection is being dialled again after a failure.
    redialling: Arc<AtomicBool>,
}

impl Publisher {
    async fn connect(endpoint: &RedisEndpoint) -> redis::RedisResult<Publisher> {
        let generation = endpoint.generation();
        let manager = Publisher::dial(endpoint).await?;
        let current = Arc::new(Mutex::new((generation, manager)));
        Ok(Publisher { endpoint: endpoint.clone(), current, redialling: Arc::default() })
    }

    /// redis-rs re-dials a lost connection with waits from 1 s growing to 60 s, so after an outage the
    /// publisher could stay dead for a minute while the subscription is back. Dial on demand instead: a
    /// publish after a failure reconnects at once (and while the subscription reports Redis down, publishes
    /// are refused without touching it, so nothing hammers a dead server).
    /// On a Redis Cluster, the cluster connection follows failovers and slot moves itself.
    async fn dial(endpoint: &RedisEndpoint) -> redis::RedisResult<AnyConnection> {
        if endpoint.is_cluster() {
            return endpoint.dial_any().await;
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(endpoint.connect_timeout());
        Ok(AnyConnection::Managed(endpoint.client()?.get_connection_manager_with_config(config).await?))
    }

    /// The connection to use now (a cheap handle).
    pub(super) fn conn(&self) -> AnyConnection {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).1.clone()
    }

    /// After a failed command on a Redis Cluster, dials a new cluster connection in the background (one at a
    /// time): redis-rs keeps routing a dead master's slots to it until a redirection tells it otherwise, which
    /// never comes from a master that is gone; a new connection reads the slot map afresh. Publishes meanwhile
    /// fail fast on the old one, and are reported.
    pub(super) fn failed(&self) {
        if !self.endpoint.is_cluster() || self.redialling.swap(true, Ordering::AcqRel) {
            return;
        }
        let publisher = self.clone();
        actix_web::rt::spawn(async move {
            tokio::time::sleep(CLUSTER_REDIAL_DELAY).await;
            if let Ok(conn) = publisher.endpoint.dial_any().await {
                publisher.current.lock().unwrap_or_else(|e| e.into_inner()).1 = conn;
            }
            publisher.redialling.store(false, Ordering::Release);
        });
    }

    /// Dials the current master if the master moved since the publisher was dialled. The pub/sub task calls
    /// this before it reports the backplane up.
    pub(super) async fn follow(&self) -> redis::RedisResult<()> {
        let generation = self.endpoint.generation();
        if self.current.lock().unwrap_or_else(|e| e.into_inner()).0 == generation {
            return Ok(());
        }
        let manager = Publisher::dial(&self.endpoint).await?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = (generation, manager);
        Ok(())
    }
}

/// A PUBLISH (or pipeline of them) bounded by [`PUBLISH_TIMEOUT`], as a backplane result.
fn answered<T>(outcome: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>) -> Result<T, BackplaneError> {
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(BackplaneError::Publish(e.to_string())),
        Err(_) => Err(BackplaneError::Publish(format!("no answer within {PUBLISH_TIMEOUT:?}"))),
    }
}

/// A history stream entry (`<ms>-<seq>`, fields `e <envelope>`) as a kept event.
fn stored_event(id: &str, fields: &[Vec<u8>]) -> Option<StoredEvent> {
    let timestamp_ms = id.split('-').next()?.parse().ok()?;
    let envelope = fields.chunks(2).find(|pair| pair.first().is_some_and(|f| f == b"e"))?.get(1)?;
    let publication = Envelope::decode(envelope).ok()?.into_publication()?;
    Some(StoredEvent { publication, timestamp_ms })
}

/// The users whose channels carry `publication` instead of its topic's channel, if it is targeted at a few.
fn user_route(publication: &Publication) -> Option<&[String]> {
    let users = publication.filters.eligible_authid.as_deref()?;
    (!users.is_empty() && users.len() <= MAX_USER_ROUTES).then_some(users)
}
