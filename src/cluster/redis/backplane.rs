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
//! publish during the gap is not replayed. A node may receive one publication several times (a channel and a
//! pattern both matching); recent publication ids are remembered so each is delivered once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use tokio::sync::{mpsc, oneshot};

use futures_util::future::BoxFuture;

use super::conn::{self as redis_conn, RedisEndpoint};
use super::keys::Keys;
use crate::cluster::envelope::{Body, Envelope};
use crate::cluster::{Backplane, BackplaneError, BackplaneState, ClusterEvents, Receiver};
use crate::log_summary::Summary;
use crate::logfmt::Escaped;
use crate::metrics::{self, Metrics};
use crate::model::{Publication, TopicKey};
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
/// Largest `eligible_authid` list routed through user channels (one PUBLISH per user, pipelined); longer lists
/// go to the topic channel, where one PUBLISH reaches every interested node.
pub const MAX_USER_ROUTES: usize = 8;

enum Command {
    Want { name: String, pattern: bool, ready: Option<oneshot::Sender<()>> },
    Unwant { name: String, pattern: bool },
}

impl Backplane for RedisBackplane {
    fn want(&self, key: &TopicKey) -> Option<oneshot::Receiver<()>> {
        let (name, pattern) = self.keys.subscription(key);
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(Command::Want { name, pattern, ready: Some(tx) });
        Some(rx)
    }

    fn unwant(&self, key: &TopicKey) {
        let (name, pattern) = self.keys.subscription(key);
        let _ = self.commands.send(Command::Unwant { name, pattern });
    }

    fn want_user(&self, authid: &str) -> Option<oneshot::Receiver<()>> {
        let (tx, rx) = oneshot::channel();
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        *users.entry(authid.to_owned()).or_default() += 1;
        // Sent for every session, not only the first: it is acknowledged only after any SUBSCRIBE for this user
        // still in flight, because the task handles commands in order.
        let name = self.keys.user_channel(authid);
        let _ = self.commands.send(Command::Want { name, pattern: false, ready: Some(tx) });
        Some(rx)
    }

    fn unwant_user(&self, authid: &str) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let Some(count) = users.get_mut(authid) else { return };
        *count -= 1;
        if *count == 0 {
            users.remove(authid);
            let _ = self.commands.send(Command::Unwant { name: self.keys.user_channel(authid), pattern: false });
        }
    }

    fn reaches_other_nodes(&self) -> bool {
        true
    }

    fn publish<'a>(&'a self, publication: &'a Publication) -> BoxFuture<'a, Result<(), BackplaneError>> {
        Box::pin(self.publish_now(publication))
    }

    fn send_control<'a>(&'a self, node: &'a str, body: Body) -> BoxFuture<'a, Result<(), BackplaneError>> {
        Box::pin(async move { self.send(&self.keys.inbox(node), self.envelope(body).encode()).await })
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
    /// Local sessions per user (the user channels this node is subscribed to). Commands are sent under this
    /// lock, so the task sees wants and unwants in the order the counts changed.
    users: Mutex<HashMap<String, usize>>,
    publisher: ConnectionManager,
    up: Arc<AtomicBool>,
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
        // redis-rs re-dials a lost connection with waits from 1 s growing to 60 s, so after an outage the
        // publisher could stay dead for a minute while the subscription is back. Dial on demand instead: a
        // publish after a failure reconnects at once (and while the subscription reports Redis down, publishes
        // are refused without touching it, so nothing hammers a dead server).
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(endpoint.connect_timeout());
        let client = endpoint.client().clone();
        let publisher = client.get_connection_manager_with_config(config).await?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let up = Arc::new(AtomicBool::new(false));
        let last_error = Arc::new(Mutex::new(None));
        let (node_id, task_keys, task_metrics) = (node.clone(), keys.clone(), metrics.clone());
        let task_last_error = last_error.clone();
        let (task_up, task_publisher) = (up.clone(), publisher.clone());
        let receiving = Receiver::new(move |events| {
            let task = PubSubTask {
                client,
                last_error: task_last_error,
                connect_failures: Summary::new(module_path!(), "backplane connection attempts"),
                node: node_id,
                keys: task_keys,
                settings,
                events,
                metrics: task_metrics,
                up: task_up,
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
            users: Mutex::default(),
            publisher,
            up,
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
                None => vec![self.keys.topic_channel(&publication.topic)],
            };
            self.send_all(&channels, Envelope::encode_publication(&self.node, publication)).await
        } else {
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

    /// PUBLISHes the same bytes on one or several channels, in one round trip.
    async fn send_all(&self, channels: &[String], bytes: Vec<u8>) -> Result<(), BackplaneError> {
        if let [channel] = channels {
            return self.send(channel, bytes).await;
        }
        let mut pipe = redis::pipe();
        for channel in channels {
            pipe.cmd("PUBLISH").arg(channel).arg(&bytes).ignore();
        }
        let mut conn = self.publisher.clone();
        answered(tokio::time::timeout(PUBLISH_TIMEOUT, pipe.query_async::<()>(&mut conn)).await)
    }

    async fn send(&self, channel: &str, bytes: Vec<u8>) -> Result<(), BackplaneError> {
        let mut conn = self.publisher.clone();
        answered(tokio::time::timeout(PUBLISH_TIMEOUT, conn.publish::<_, _, i64>(channel, bytes)).await)
    }
}

/// A PUBLISH (or pipeline of them) bounded by [`PUBLISH_TIMEOUT`], as a backplane result.
fn answered<T>(outcome: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>) -> Result<(), BackplaneError> {
    match outcome {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(BackplaneError::Publish(e.to_string())),
        Err(_) => Err(BackplaneError::Publish(format!("no answer within {PUBLISH_TIMEOUT:?}"))),
    }
}

/// The users whose channels carry `publication` instead of its topic's channel, if it is targeted at a few.
fn user_route(publication: &Publication) -> Option<&[String]> {
    let users = publication.filters.eligible_authid.as_deref()?;
    (!users.is_empty() && users.len() <= MAX_USER_ROUTES).then_some(users)
}

/// Remembers recently delivered publication ids.
#[derive(Default)]
struct RecentIds {
    set: HashSet<Id>,
    order: VecDeque<Id>,
}

impl RecentIds {
    /// `true` the first time an id is seen.
    fn first_time(&mut self, id: Id) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > RECENT_IDS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// The pub/sub task.
struct PubSubTask {
    client: redis::Client,
    last_error: Arc<Mutex<Option<String>>>,
    /// Failed (re)connects, summarised in the log.
    connect_failures: Summary,
    node: String,
    keys: Keys,
    settings: crate::config::ClusterSettings,
    /// Where received publications and control messages go.
    events: Arc<dyn ClusterEvents>,
    metrics: Arc<Metrics>,
    up: Arc<AtomicBool>,
    publisher: ConnectionManager,
    channels: HashSet<String>,
    patterns: HashSet<String>,
    recent: RecentIds,
}

/// Why a pub/sub session ended, and whether it had come up (which resets the reconnect backoff).
enum Ended {
    Lost(String, bool),
    Wedged,
    Shutdown,
}

impl PubSubTask {
    fn set_up(&self, up: bool) {
        if self.up.swap(up, Ordering::AcqRel) != up {
            if up {
                self.connect_failures.succeeded();
                log::info!("backplane up (node {})", self.node);
            } else {
                log::warn!("backplane down (node {}): cross-node delivery paused, reconnecting", self.node);
            }
        }
    }

    /// Records a command in the wanted sets; returns the (un)subscriptions it implies.
    fn apply(&mut self, command: Command, ready: &mut Vec<oneshot::Sender<()>>, batch: &mut Batch) {
        match command {
            Command::Want { name, pattern, ready: tx } => {
                let set = if pattern { &mut self.patterns } else { &mut self.channels };
                if set.insert(name.clone()) {
                    if pattern {
                        batch.psub.push(name)
                    } else {
                        batch.sub.push(name)
                    }
                }
                ready.extend(tx);
            }
            Command::Unwant { name, pattern } => {
                let set = if pattern { &mut self.patterns } else { &mut self.channels };
                if set.remove(&name) {
                    if pattern {
                        batch.punsub.push(name)
                    } else {
                        batch.unsub.push(name)
                    }
                }
            }
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.session(&mut commands).await {
                Ended::Shutdown => return,
                Ended::Wedged => {
                    metrics::inc(&self.metrics.backplane_wedged_total);
                    log::warn!("backplane subscription wedged (probe lost); rebuilding it");
                    let why = "subscription wedged (probe lost)".to_owned();
                    *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                    backoff = FIRST_BACKOFF;
                }
                Ended::Lost(why, was_up) => {
                    self.connect_failures.failed(&why);
                    *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                    if was_up {
                        backoff = FIRST_BACKOFF;
                    }
                }
            }
            self.set_up(false);
            // Commands arriving while down only change the wanted sets; nobody waits on them.
            let mut ready = Vec::new();
            let mut ignored = Batch::default();
            while let Ok(c) = commands.try_recv() {
                self.apply(c, &mut ready, &mut ignored);
            }
            ready.into_iter().for_each(|tx| {
                let _ = tx.send(());
            });
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.settings.max_backoff);
            metrics::inc(&self.metrics.backplane_reconnects_total);
        }
    }

    /// One pub/sub connection's life: connect, subscribe everything wanted, then serve until it fails.
    async fn session(&mut self, commands: &mut mpsc::UnboundedReceiver<Command>) -> Ended {
        let pubsub = match tokio::time::timeout(PUBLISH_TIMEOUT * 2, self.client.get_async_pubsub()).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Ended::Lost(redis_conn::describe(&e), false),
            Err(_) => return Ended::Lost("connect timed out".into(), false),
        };
        let (mut sink, mut stream) = pubsub.split();
        let inbox = self.keys.inbox(&self.node);
        let mut all: Vec<String> = self.channels.iter().cloned().collect();
        all.push(inbox.clone());
        if let Err(e) = sink.subscribe(&all).await {
            return Ended::Lost(redis_conn::describe(&e), false);
        }
        if !self.patterns.is_empty() {
            let patterns: Vec<String> = self.patterns.iter().cloned().collect();
            if let Err(e) = sink.psubscribe(&patterns).await {
                return Ended::Lost(redis_conn::describe(&e), false);
            }
        }
        if let Err(e) = self.wake_publisher().await {
            return Ended::Lost(format!("publisher: {e}"), false);
        }
        self.set_up(true);
        let mut probe = tokio::time::interval(self.settings.probe_interval);
        probe.tick().await;
        let mut outstanding: Option<(u64, Instant)> = None;
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else { return Ended::Lost("subscription stream ended".into(), true) };
                    if let Some(nonce) = self.receive(&message) {
                        if outstanding.is_some_and(|(n, _)| n == nonce) {
                            outstanding = None;
                        }
                    }
                }
                command = commands.recv() => {
                    let Some(command) = command else { return Ended::Shutdown };
                    let mut ready = Vec::new();
                    let mut batch = Batch::default();
                    self.apply(command, &mut ready, &mut batch);
                    while let Ok(c) = commands.try_recv() {
                        self.apply(c, &mut ready, &mut batch);
                    }
                    let result = batch.send(&mut sink).await;
                    ready.into_iter().for_each(|tx| { let _ = tx.send(()); });
                    if let Err(e) = result {
                        return Ended::Lost(e.to_string(), true);
                    }
                }
                _ = probe.tick() => {
                    if let Some((_, sent)) = outstanding {
                        if sent.elapsed() >= self.settings.probe_interval {
                            return Ended::Wedged;
                        }
                    }
                    let nonce: u64 = rand::random();
                    let envelope = Envelope { v: crate::cluster::envelope::VERSION, origin: self.node.clone(), body: Body::Probe { nonce } };
                    let mut conn = self.publisher.clone();
                    let sent = tokio::time::timeout(PUBLISH_TIMEOUT, conn.publish::<_, _, i64>(&inbox, envelope.encode())).await;
                    match sent {
                        Ok(Ok(_)) => outstanding = Some((nonce, Instant::now())),
                        _ => return Ended::Lost("probe could not be published".into(), true),
                    }
                }
            }
        }
    }

    /// PINGs through the publisher before the backplane reports up. While the subscription was down publishes
    /// were refused without touching the publisher, so after an outage it still holds the dead connection: the
    /// first command fails (broken pipe) and makes it re-dial, the second proves the new connection. Without
    /// this, the first publication after every outage failed.
    async fn wake_publisher(&self) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..PUBLISHER_WAKE_ATTEMPTS {
            let mut conn = self.publisher.clone();
            match tokio::time::timeout(PUBLISH_TIMEOUT, redis::cmd("PING").query_async::<String>(&mut conn)).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => last = redis_conn::describe(&e),
                Err(_) => last = format!("no answer within {PUBLISH_TIMEOUT:?}"),
            }
        }
        Err(last)
    }

    /// Handles one pub/sub message; returns the nonce of an own probe.
    fn receive(&mut self, message: &redis::Msg) -> Option<u64> {
        let envelope = match Envelope::decode(message.get_payload_bytes()) {
            Ok(e) => e,
            Err(e) => {
                metrics::inc(&self.metrics.backplane_malformed_total);
                log::warn!("ignoring message on {}: {e}", Escaped(message.get_channel_name()));
                return None;
            }
        };
        let own = envelope.origin == self.node;
        match envelope.body {
            Body::Probe { nonce } if own => return Some(nonce),
            Body::Probe { .. } => {}
            Body::Publication { .. } if own => {}
            Body::Publication { id, .. } => {
                if !self.recent.first_time(id) {
                    return None;
                }
                metrics::inc(&self.metrics.backplane_received_total);
                if let Some(p) = envelope.into_publication() {
                    self.events.publication(p);
                }
            }
            Body::DisconnectUser { authid, code, reason, message } => {
                self.events.disconnect_user(&authid, code, reason, message);
            }
        }
        None
    }
}

/// Subscription changes to send in one command each.
#[derive(Default)]
struct Batch {
    sub: Vec<String>,
    unsub: Vec<String>,
    psub: Vec<String>,
    punsub: Vec<String>,
}

impl Batch {
    async fn send(self, sink: &mut redis::aio::PubSubSink) -> redis::RedisResult<()> {
        if !self.sub.is_empty() {
            sink.subscribe(&self.sub).await?;
        }
        if !self.unsub.is_empty() {
            sink.unsubscribe(&self.unsub).await?;
        }
        if !self.psub.is_empty() {
            sink.psubscribe(&self.psub).await?;
        }
        if !self.punsub.is_empty() {
            sink.punsubscribe(&self.punsub).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_deliver_once_and_forget_old_ones() {
        let mut r = RecentIds::default();
        assert!(r.first_time(1));
        assert!(!r.first_time(1));
        for i in 2..(RECENT_IDS as u64 + 3) {
            r.first_time(i);
        }
        assert!(r.first_time(1), "forgotten after RECENT_IDS newer ids");
    }
}
