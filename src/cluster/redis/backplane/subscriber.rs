//! The pub/sub task of the Redis backplane: one connection subscribed to what the node needs, rebuilt after
//! any failure, delivering each publication once.

use super::*;

use redis::cluster_async::ClusterConnection;

/// Remembers recently delivered publication ids.
#[derive(Default)]
pub(super) struct RecentIds {
    set: HashSet<Id>,
    order: VecDeque<Id>,
}

impl RecentIds {
    /// `true` the first time an id is seen.
    pub(super) fn first_time(&mut self, id: Id) -> bool {
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
pub(super) struct PubSubTask {
    /// Where Redis is (the master Sentinel names, when it does).
    pub(super) endpoint: RedisEndpoint,
    pub(super) last_error: Arc<Mutex<Option<String>>>,
    /// Failed (re)connects, summarised in the log.
    pub(super) connect_failures: Summary,
    pub(super) node: String,
    pub(super) keys: Keys,
    pub(super) settings: crate::config::ClusterSettings,
    /// Where received publications and control messages go.
    pub(super) events: Arc<dyn ClusterEvents>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) up: Arc<AtomicBool>,
    /// Receiver counts of this node's publications, settled after an outage.
    pub(super) reach: Arc<Mutex<Reach>>,
    /// Whether the subscription was ever up (the first start is no recovery).
    pub(super) was_up: bool,
    pub(super) publisher: Publisher,
    pub(super) channels: HashSet<String>,
    pub(super) patterns: HashSet<String>,
    pub(super) recent: RecentIds,
}

/// Why a pub/sub session ended, and whether it had come up (which resets the reconnect backoff).
pub(super) enum Ended {
    Lost(String, bool),
    Wedged,
    Shutdown,
}

impl PubSubTask {
    pub(super) fn set_up(&mut self, up: bool) {
        if self.up.swap(up, Ordering::AcqRel) != up {
            if up {
                if self.was_up {
                    let until = Instant::now() + settle(&self.settings);
                    self.reach.lock().unwrap_or_else(|e| e.into_inner()).settle_until(until);
                }
                self.was_up = true;
                self.connect_failures.succeeded();
                log::info!("backplane up (node {})", self.node);
            } else {
                log::warn!("backplane down (node {}): cross-node delivery paused, reconnecting", self.node);
            }
        }
    }

    /// Records a command in the wanted sets; returns the (un)subscriptions it implies. A want and an unwant of
    /// the same name in one batch cancel out (a user's last socket closing as her next one opens): sending both
    /// would leave Redis in whichever state the later command of the batch sets, not the wanted one.
    pub(super) fn apply(&mut self, command: Command, ready: &mut Vec<oneshot::Sender<()>>, batch: &mut Batch) {
        match command {
            Command::Want { name, pattern, ready: tx } => {
                let set = if pattern { &mut self.patterns } else { &mut self.channels };
                if set.insert(name.clone()) {
                    batch.subscribe(name, pattern);
                }
                ready.extend(tx);
            }
            Command::Unwant { name, pattern } => {
                let set = if pattern { &mut self.patterns } else { &mut self.channels };
                if set.remove(&name) {
                    batch.unsubscribe(name, pattern);
                }
            }
        }
    }

    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
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
            // A master that moved is dialled at once, whatever the backoff.
            let mut moved = self.endpoint.changes();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = moved.changed() => backoff = FIRST_BACKOFF,
            }
            backoff = (backoff * 2).min(self.settings.max_backoff);
            metrics::inc(&self.metrics.backplane_reconnects_total);
        }
    }

    /// One pub/sub connection's life: connect, subscribe everything wanted, then serve until it fails.
    pub(super) async fn session(&mut self, commands: &mut mpsc::UnboundedReceiver<Command>) -> Ended {
        if self.keys.sharded_pubsub() {
            return self.sharded_session(commands).await;
        }
        let mut moved = self.endpoint.changes();
        let client = match self.endpoint.client() {
            Ok(client) => client,
            Err(e) => return Ended::Lost(redis_connection::describe(&e), false),
        };
        let pubsub = match tokio::time::timeout(PUBLISH_TIMEOUT * 2, client.get_async_pubsub()).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Ended::Lost(redis_connection::describe(&e), false),
            Err(_) => return Ended::Lost("connect timed out".into(), false),
        };
        let (mut sink, mut stream) = pubsub.split();
        let inbox = self.keys.inbox(&self.node);
        let all: Vec<String> = self.channels.iter().cloned().chain([inbox.clone()]).collect();
        if let Err(e) = sink.subscribe(&all).await {
            return Ended::Lost(redis_connection::describe(&e), false);
        }
        if !self.patterns.is_empty() {
            let patterns: Vec<String> = self.patterns.iter().cloned().collect();
            if let Err(e) = sink.psubscribe(&patterns).await {
                return Ended::Lost(redis_connection::describe(&e), false);
            }
        }
        let mut probe = match self.come_up().await {
            Ok(probe) => probe,
            Err(ended) => return ended,
        };
        let mut outstanding: Option<(u64, Instant)> = None;
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else { return Ended::Lost("subscription stream ended".into(), true) };
                    self.deliver(&message, &mut outstanding);
                }
                command = commands.recv() => {
                    let Some(command) = command else { return Ended::Shutdown };
                    let (ready, batch) = self.drain(command, commands);
                    let result = batch.send(&mut sink).await;
                    ready.into_iter().for_each(|tx| { let _ = tx.send(()); });
                    if let Err(e) = result {
                        return Ended::Lost(e.to_string(), true);
                    }
                }
                _ = moved.changed() => return Ended::Lost("the Redis master moved".into(), true),
                _ = probe.tick() => {
                    match self.probe(&inbox, &mut outstanding).await {
                        Ok(()) => {}
                        Err(ended) => return ended,
                    }
                }
            }
        }
    }

    /// Once subscribed: the publisher follows a moved master and proves itself, the backplane reports up, and
    /// the probe timer starts (its immediate first tick taken).
    async fn come_up(&mut self) -> Result<tokio::time::Interval, Ended> {
        if let Err(e) = self.publisher.follow().await {
            return Err(Ended::Lost(format!("publisher: {}", redis_connection::describe(&e)), false));
        }
        if let Err(e) = self.wake_publisher().await {
            return Err(Ended::Lost(format!("publisher: {e}"), false));
        }
        self.set_up(true);
        let mut probe = tokio::time::interval(self.settings.probe_interval);
        probe.tick().await;
        Ok(probe)
    }

    /// Sends a liveness probe through the node's own inbox, unless the last one has not come back within
    /// `probe_interval` (the subscription is wedged).
    async fn probe(&self, inbox: &str, outstanding: &mut Option<(u64, Instant)>) -> Result<(), Ended> {
        if let Some((_, sent)) = outstanding {
            if sent.elapsed() >= self.settings.probe_interval {
                return Err(Ended::Wedged);
            }
        }
        let nonce: u64 = rand::random();
        let body = Body::Probe { nonce };
        let envelope = Envelope { v: crate::cluster::envelope::VERSION, origin: self.node.clone(), body };
        let publish = redis::cmd(self.keys.publish_command()).arg(inbox).arg(envelope.encode()).clone();
        let mut conn = self.publisher.conn();
        match tokio::time::timeout(PUBLISH_TIMEOUT, publish.query_async::<i64>(&mut conn)).await {
            Ok(Ok(_)) => {
                *outstanding = Some((nonce, Instant::now()));
                Ok(())
            }
            _ => {
                self.publisher.failed();
                Err(Ended::Lost("probe could not be published".into(), true))
            }
        }
    }

    /// One life of the sharded subscription on a Redis Cluster: a cluster connection (RESP3) that SSUBSCRIBEs
    /// each wanted channel in its slot's shard and resubscribes by itself after reconnects and slot-map
    /// refreshes; messages arrive as pushes. A shard that moves a slot away unsubscribes its channels
    /// (`sunsubscribe` push): those still wanted are subscribed again, which reaches the slot's new owner.
    async fn sharded_session(&mut self, commands: &mut mpsc::UnboundedReceiver<Command>) -> Ended {
        let (push_tx, mut pushes) = mpsc::unbounded_channel();
        let ended = self.sharded_session_on(commands, push_tx, &mut pushes).await;
        // Messages that reached this node before the session ended are delivered: their publishers counted this
        // node among the receivers, so dropping them here would lose them silently.
        while let Ok(push) = pushes.try_recv() {
            if let Some(message) = redis::Msg::from_push_info(push) {
                self.deliver(&message, &mut None);
            }
        }
        ended
    }

    async fn sharded_session_on(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        push_tx: mpsc::UnboundedSender<redis::PushInfo>,
        pushes: &mut mpsc::UnboundedReceiver<redis::PushInfo>,
    ) -> Ended {
        let client = match self.endpoint.cluster_client(Some(push_tx)) {
            Ok(client) => client,
            Err(e) => return Ended::Lost(redis_connection::describe(&e), false),
        };
        let mut conn = match tokio::time::timeout(PUBLISH_TIMEOUT * 2, client.get_async_connection()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Ended::Lost(redis_connection::describe(&e), false),
            Err(_) => return Ended::Lost("connect timed out".into(), false),
        };
        let inbox = self.keys.inbox(&self.node);
        let all: Vec<String> = self.channels.iter().cloned().chain([inbox.clone()]).collect();
        if let Err(e) = ssubscribe(&conn, &all).await {
            return Ended::Lost(redis_connection::describe(&e), false);
        }
        let mut probe = match self.come_up().await {
            Ok(probe) => probe,
            Err(ended) => return ended,
        };
        let mut outstanding: Option<(u64, Instant)> = None;
        loop {
            tokio::select! {
                push = pushes.recv() => {
                    let Some(push) = push else { return Ended::Lost("subscription stream ended".into(), true) };
                    match push.kind {
                        redis::PushKind::SUnsubscribe => {
                            let Some(channel) = push.data.first().and_then(|v| redis::from_redis_value::<String>(v).ok()) else { continue };
                            if channel == inbox || self.channels.contains(&channel) {
                                log::info!("backplane: {} moved to another shard; subscribing there", Escaped(&channel));
                                if let Err(e) = ssubscribe(&conn, &[channel]).await {
                                    return Ended::Lost(redis_connection::describe(&e), true);
                                }
                            }
                        }
                        // A shard's connection dropped (its master died, say): its subscriptions are gone until
                        // the cluster has a master for those slots again. Start over, as after any outage.
                        redis::PushKind::Disconnection => {
                            return Ended::Lost("a Redis Cluster node's connection dropped".into(), true);
                        }
                        _ => {
                            let Some(message) = redis::Msg::from_push_info(push) else { continue };
                            self.deliver(&message, &mut outstanding);
                        }
                    }
                }
                command = commands.recv() => {
                    let Some(command) = command else { return Ended::Shutdown };
                    let (ready, batch) = self.drain(command, commands);
                    let result = batch.send_sharded(&mut conn).await;
                    ready.into_iter().for_each(|tx| { let _ = tx.send(()); });
                    if let Err(e) = result {
                        return Ended::Lost(e.to_string(), true);
                    }
                }
                _ = probe.tick() => {
                    if let Err(ended) = self.probe(&inbox, &mut outstanding).await {
                        return ended;
                    }
                }
            }
        }
    }

    /// PINGs through the publisher before the backplane reports up. While the subscription was down publishes
    /// were refused without touching the publisher, so after an outage it still holds the dead connection: the
    /// first command fails (broken pipe) and makes it re-dial, the second proves the new connection. Without
    /// this, the first publication after every outage failed.
    pub(super) async fn wake_publisher(&self) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..PUBLISHER_WAKE_ATTEMPTS {
            let mut conn = self.publisher.conn();
            match tokio::time::timeout(PUBLISH_TIMEOUT, redis::cmd("PING").query_async::<String>(&mut conn)).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => last = redis_connection::describe(&e),
                Err(_) => last = format!("no answer within {PUBLISH_TIMEOUT:?}"),
            }
        }
        Err(last)
    }

    /// `first` and every command queued behind it, applied: the subscription changes to send, and who waits
    /// for them.
    fn drain(
        &mut self,
        first: Command,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> (Vec<oneshot::Sender<()>>, Batch) {
        let mut ready = Vec::new();
        let mut batch = Batch::default();
        self.apply(first, &mut ready, &mut batch);
        while let Ok(c) = commands.try_recv() {
            self.apply(c, &mut ready, &mut batch);
        }
        (ready, batch)
    }

    /// Delivers one pub/sub message; our own probe coming back clears `outstanding`.
    fn deliver(&mut self, message: &redis::Msg, outstanding: &mut Option<(u64, Instant)>) {
        if let Some(nonce) = self.receive(message) {
            if outstanding.is_some_and(|(n, _)| n == nonce) {
                *outstanding = None;
            }
        }
    }

    /// Handles one pub/sub message; returns the nonce of an own probe.
    pub(super) fn receive(&mut self, message: &redis::Msg) -> Option<u64> {
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
            Body::DisconnectSessions { sessions, code, reason, message } => {
                self.events.disconnect_sessions(&sessions, code, reason, message);
            }
            Body::Receipt { publication, sockets } => {
                self.events.receipt(publication, &envelope.origin, sockets);
            }
        }
        None
    }
}

/// Subscription changes to send in one command each.
#[derive(Default)]
pub(super) struct Batch {
    sub: Vec<String>,
    unsub: Vec<String>,
    psub: Vec<String>,
    punsub: Vec<String>,
}

impl Batch {
    /// Adds a subscription, or cancels an unsubscription of the same name still in this batch.
    fn subscribe(&mut self, name: String, pattern: bool) {
        match pattern {
            true => Self::change(&mut self.punsub, &mut self.psub, name),
            false => Self::change(&mut self.unsub, &mut self.sub, name),
        }
    }

    /// Adds an unsubscription, or cancels a subscription of the same name still in this batch.
    fn unsubscribe(&mut self, name: String, pattern: bool) {
        match pattern {
            true => Self::change(&mut self.psub, &mut self.punsub, name),
            false => Self::change(&mut self.sub, &mut self.unsub, name),
        }
    }

    /// Cancels `name` in `opposite` if it waits there, else adds it to `list`.
    fn change(opposite: &mut Vec<String>, list: &mut Vec<String>, name: String) {
        match opposite.iter().position(|n| *n == name) {
            Some(i) => {
                opposite.swap_remove(i);
            }
            None => list.push(name),
        }
    }

    pub(super) async fn send(self, sink: &mut redis::aio::PubSubSink) -> redis::RedisResult<()> {
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

    /// The same on a Redis Cluster: one SSUBSCRIBE/SUNSUBSCRIBE per channel (a command holds one slot).
    /// Patterns never reach it (they are pattern channels there).
    pub(super) async fn send_sharded(self, conn: &mut ClusterConnection) -> redis::RedisResult<()> {
        ssubscribe(conn, &self.sub).await?;
        let unsubscribes = self.unsub.iter().map(|channel| {
            let mut conn = conn.clone();
            async move { conn.sunsubscribe(channel).await }
        });
        futures_util::future::join_all(unsubscribes).await.into_iter().collect()
    }
}

/// SSUBSCRIBEs each channel (concurrently; each goes to its slot's shard).
async fn ssubscribe(conn: &ClusterConnection, channels: &[String]) -> redis::RedisResult<()> {
    let subscribes = channels.iter().map(|channel| {
        let mut conn = conn.clone();
        async move { conn.ssubscribe(channel).await }
    });
    futures_util::future::join_all(subscribes).await.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn while_settling_a_publication_that_reaches_fewer_nodes_fails_and_keeps_the_expectation() {
        let mut reach = Reach::new(Duration::from_secs(60));
        reach.check("t:a", 3).unwrap();
        reach.check("t:a", 2).unwrap();
        reach.check("t:a", 3).unwrap();
        reach.settle_until(Instant::now() + Duration::from_secs(60));
        let e = reach.check("t:a", 1).unwrap_err().to_string();
        assert!(e.contains("reached 1 of the 3 nodes"), "{e}");
        assert!(reach.check("t:a", 2).is_err(), "the expectation stays 3 until it is met");
        reach.check("t:a", 3).unwrap();
        reach.check("t:b", 0).unwrap();
        reach.settle_until(Instant::now());
        reach.check("t:a", 1).unwrap();
        // The first success after a failure opens a window of its own.
        let mut reach = Reach::new(Duration::from_secs(60));
        reach.check("t:a", 2).unwrap();
        reach.failed();
        assert!(reach.check("t:a", 0).is_err(), "right after the outage, fewer nodes is a failure");
    }

    #[test]
    fn an_unwant_and_a_want_of_one_channel_in_one_batch_cancel_out() {
        let mut batch = Batch::default();
        batch.unsubscribe("user:alice".into(), false);
        batch.subscribe("user:alice".into(), false);
        assert!(batch.sub.is_empty() && batch.unsub.is_empty(), "still subscribed: nothing to send");
        batch.subscribe("t:news".into(), false);
        batch.unsubscribe("t:news".into(), false);
        assert!(batch.sub.is_empty() && batch.unsub.is_empty(), "never subscribed: nothing to send");
        batch.subscribe("t:a*".into(), true);
        batch.unsubscribe("t:b".into(), false);
        assert_eq!((batch.psub.len(), batch.unsub.len()), (1, 1));
    }

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
