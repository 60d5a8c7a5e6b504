//! The registry's writer: one task applying session changes in order, batched into pipelines; rebuild and purge.

use super::*;

impl RedisRegistry {
    pub(super) fn push_register(&self, pipe: &mut redis::Pipeline, c: &ClientInfo) {
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

    pub(super) fn push_unregister_sets(&self, pipe: &mut redis::Pipeline, c: &ClientInfo) {
        let id = c.session.to_string();
        pipe.cmd("SREM").arg(self.p(&format!("u:{}", c.authid))).arg(&id).ignore();
        for role in &c.authroles {
            pipe.cmd("SREM").arg(self.p(&format!("r:{role}"))).arg(&id).ignore();
        }
        let roles = roles_key(&c.authroles);
        pipe.cmd("SREM").arg(self.p(&format!("nr:{}:{roles}", self.node))).arg(&id).ignore();
    }

    /// `sub` or `unsub` of one subscription (the subscription script); its answer is read back if `answer`.
    fn push_subscription(&self, pipe: &mut redis::Pipeline, mode: &str, session: Id, s: &Subscription, answer: bool) {
        pipe.cmd("EVALSHA")
            .arg(self.subscription_script.get_hash())
            .arg(1)
            .arg(self.keys.prefix())
            .arg(self.keys.prefix())
            .arg(mode)
            .arg(session)
            .arg(s.id)
            .arg(&s.record)
            .arg(crate::model::now_millis());
        if !answer {
            pipe.ignore();
        }
    }

    pub(super) fn push(&self, pipe: &mut redis::Pipeline, write: &Write) {
        match write {
            Write::Register(c, _) => self.push_register(pipe, c),
            Write::Reidentify { old, new } => {
                self.push_unregister_sets(pipe, old);
                self.push_register(pipe, new);
            }
            Write::Unregister(c, subscriptions, changes) => {
                let id = c.session.to_string();
                self.push_unregister_sets(pipe, c);
                for s in subscriptions {
                    self.push_subscription(pipe, "unsub", c.session, s, changes.is_some());
                }
                pipe.cmd("DEL")
                    .arg(self.p(&format!("s:{id}")))
                    .arg(self.p(&format!("st:{id}")))
                    .arg(self.p(&format!("tm:{id}")))
                    .ignore();
                pipe.cmd("SREM").arg(self.p(&format!("n:{}", self.node))).arg(&id).ignore();
                pipe.cmd("ZREM").arg(self.p("ids")).arg(&id).ignore();
            }
            Write::Testaments(id, testaments) => {
                let key = self.p(&format!("tm:{id}"));
                pipe.cmd("DEL").arg(&key).ignore();
                if !testaments.is_empty() {
                    pipe.cmd("RPUSH").arg(&key).arg(testaments).ignore();
                }
            }
            Write::Subscribed(session, s, changes) => {
                self.push_subscription(pipe, "sub", *session, s, changes.is_some())
            }
            Write::Unsubscribed(session, s, changes) => {
                self.push_subscription(pipe, "unsub", *session, s, changes.is_some())
            }
            Write::Rebuild => {}
        }
    }

    /// Runs `pipe`; the answers of the commands not ignored (subscription script calls), in order.
    pub(super) async fn run_pipe(&self, pipe: &redis::Pipeline) -> Result<Vec<i64>, RegistryError> {
        let mut conn = self.control.get().await.map_err(|e| RegistryError(e.to_string()))?;
        match tokio::time::timeout(ROUND_TRIP_TIMEOUT, pipe.query_async::<Vec<i64>>(&mut *conn)).await {
            Ok(Ok(answers)) => Ok(answers),
            Ok(Err(e)) => Err(RegistryError(e.to_string())),
            Err(_) => Err(RegistryError("timed out".into())),
        }
    }

    pub(super) async fn purge(&self, mode: &str, node: &str) -> Result<Vec<Departed>, RegistryError> {
        let mut conn = self.control.get().await.map_err(|e| RegistryError(e.to_string()))?;
        let mut invocation = self.purge_script.prepare_invoke();
        invocation.key(self.keys.prefix()).arg(self.keys.prefix()).arg(mode).arg(node);
        match tokio::time::timeout(ROUND_TRIP_TIMEOUT, invocation.invoke_async::<Vec<String>>(&mut *conn)).await {
            Ok(Ok(flat)) => Ok(departed(flat)),
            Ok(Err(e)) => Err(RegistryError(e.to_string())),
            Err(_) => Err(RegistryError("timed out".into())),
        }
    }

    /// Hands sessions removed for good to the node (a dropped receiver means the node is stopping).
    pub(super) fn report_departed(&self, departed: Vec<Departed>) {
        if !departed.is_empty() {
            let _ = self.departed.send(departed);
        }
    }

    /// Purges this node's entries, then registers every live local session and its topics.
    pub(super) async fn rebuild(&self, local: &dyn LocalSessions) -> Result<(), RegistryError> {
        let purged = self.purge("node", &self.node).await?;
        if self.first_rebuild.swap(false, Ordering::AcqRel) {
            self.report_departed(purged);
        }
        let mut pipe = redis::pipe();
        // First: the subscription script the writes below (and every write after) call by hash.
        pipe.cmd("SCRIPT").arg("LOAD").arg(SUBSCRIPTION).ignore();
        pipe.cmd("SADD").arg(self.p("nodes")).arg(&self.node).ignore();
        for (client, subscriptions) in local.snapshot() {
            self.push_register(&mut pipe, &client);
            for s in &subscriptions {
                self.push_subscription(&mut pipe, "sub", client.session, s, false);
            }
        }
        // Last: from here on the node's sets count for this epoch.
        pipe.cmd("SET").arg(self.p(&format!("ne:{}", self.node))).arg(&self.epoch).ignore();
        self.run_pipe(&pipe).await.map(drop)
    }

    pub(super) async fn writer(
        self: Arc<Self>,
        mut receiver: mpsc::UnboundedReceiver<Write>,
        local: Arc<dyn LocalSessions>,
    ) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
            // Everything before a rebuild is written first; the rebuild then reflects the local truth.
            let mut pipe = redis::pipe();
            let mut pending = 0;
            let mut acks = Vec::new();
            let mut changes = Vec::new();
            for mut write in batch.drain(..) {
                acks.extend(write.take_ack());
                if let Write::Rebuild = write {
                    if pending > 0 {
                        answer(std::mem::take(&mut changes), self.apply(&pipe).await);
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
                // `push` reads back the answers only of writes that still hold their sender: take it after.
                self.push(&mut pipe, &write);
                changes.extend(write.take_changes());
                pending += 1;
            }
            if pending > 0 {
                answer(changes, self.apply(&pipe).await);
            }
            acks.into_iter().for_each(|ack| {
                let _ = ack.send(());
            });
        }
    }

    /// Runs a batch; its subscription answers, or `None` when it failed (the registry is then rebuilt).
    pub(super) async fn apply(&self, pipe: &redis::Pipeline) -> Option<Vec<i64>> {
        match self.run_pipe(pipe).await {
            Ok(answers) => Some(answers),
            Err(e) => {
                self.dirty.store(true, Ordering::Release);
                self.failures
                    .failed(format_args!("write failed, the registry will be rebuilt when Redis answers: {e}"));
                metrics::inc(&self.metrics.registry_errors_total);
                None
            }
        }
    }
}

/// Hands each write's senders their share of a batch's subscription answers, in order; a failed batch drops
/// them unanswered.
fn answer(changes: Vec<(Changes, usize)>, answers: Option<Vec<i64>>) {
    let Some(answers) = answers else { return };
    let mut answers = answers.into_iter();
    for (sender, n) in changes {
        let _ = sender.send(answers.by_ref().take(n).map(|a| a == 1).collect());
    }
}

/// The purge script's flat answer — per session: id, authid, authrole, n, n testaments, m, then m pairs of
/// subscription id and 1/0 (it was the last subscriber) — as departed sessions. A session whose id does not
/// parse is skipped; a truncated answer ends the list.
fn departed(flat: Vec<String>) -> Vec<Departed> {
    let mut out = Vec::new();
    let mut rest = flat.into_iter();
    while let (Some(id), Some(authid), Some(authrole), Some(n)) = (rest.next(), rest.next(), rest.next(), rest.next()) {
        let n: usize = n.parse().unwrap_or(0);
        let testaments: Vec<String> = rest.by_ref().take(n).collect();
        let m: usize = rest.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        let mut subscriptions = Vec::with_capacity(m);
        for _ in 0..m {
            let (Some(sub), Some(last)) = (rest.next(), rest.next()) else { break };
            if let Ok(sub) = sub.parse() {
                subscriptions.push((sub, last == "1"));
            }
        }
        if let Ok(session) = id.parse() {
            out.push(Departed { session, authid, authrole, testaments, subscriptions });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batchs_answers_go_to_their_writes_in_order() {
        let (first, mut got_first) = oneshot::channel();
        let (second, mut got_second) = oneshot::channel();
        answer(vec![(first, 1), (second, 2)], Some(vec![1, 0, 1]));
        assert_eq!(got_first.try_recv().unwrap(), vec![true]);
        assert_eq!(got_second.try_recv().unwrap(), vec![false, true]);
        let (failed, mut got_failed) = oneshot::channel();
        answer(vec![(failed, 1)], None);
        assert!(got_failed.try_recv().is_err(), "a failed batch answers nothing");
    }

    #[test]
    fn the_purge_answer_becomes_departed_sessions() {
        let flat = [
            "7",
            "alice",
            "user",
            "1",
            "{\"topic\":\"t\"}",
            "2",
            "55",
            "1",
            "66",
            "0", //
            "8",
            "anon-8",
            "anonymous",
            "0",
            "0", //
            "x",
            "b",
            "",
            "0",
            "0", //
            "9",
        ];
        let got = departed(flat.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            got,
            vec![
                Departed {
                    session: 7,
                    authid: "alice".into(),
                    authrole: "user".into(),
                    testaments: vec![r#"{"topic":"t"}"#.into()],
                    subscriptions: vec![(55, true), (66, false)],
                },
                Departed {
                    session: 8,
                    authid: "anon-8".into(),
                    authrole: "anonymous".into(),
                    testaments: vec![],
                    subscriptions: vec![],
                },
            ],
            "an unparsable id is skipped, a trailing partial entry ignored"
        );
    }
}
