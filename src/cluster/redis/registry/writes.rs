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

    pub(super) fn push(&self, pipe: &mut redis::Pipeline, write: &Write) {
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

    pub(super) async fn run_pipe(&self, pipe: &redis::Pipeline) -> Result<(), RegistryError> {
        let mut conn = self.control.get().await.map_err(|e| RegistryError(e.to_string()))?;
        match tokio::time::timeout(ROUND_TRIP_TIMEOUT, pipe.query_async::<()>(&mut *conn)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(RegistryError(e.to_string())),
            Err(_) => Err(RegistryError("timed out".into())),
        }
    }

    pub(super) async fn purge(&self, mode: &str, node: &str) -> Result<Vec<Departed>, RegistryError> {
        let mut conn = self.control.get().await.map_err(|e| RegistryError(e.to_string()))?;
        let mut invocation = self.purge_script.prepare_invoke();
        invocation.arg(self.keys.prefix()).arg(mode).arg(node);
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

    pub(super) async fn apply(&self, pipe: &redis::Pipeline) {
        if let Err(e) = self.run_pipe(pipe).await {
            self.dirty.store(true, Ordering::Release);
            self.failures.failed(format_args!("write failed, the registry will be rebuilt when Redis answers: {e}"));
            metrics::inc(&self.metrics.registry_errors_total);
        }
    }
}

/// The purge script's flat answer — per session: id, authid, authrole, n, then n testaments — as departed
/// sessions. A session whose id does not parse is skipped; a truncated answer ends the list.
fn departed(flat: Vec<String>) -> Vec<Departed> {
    let mut out = Vec::new();
    let mut rest = flat.into_iter();
    while let (Some(id), Some(authid), Some(authrole), Some(n)) = (rest.next(), rest.next(), rest.next(), rest.next()) {
        let n: usize = n.parse().unwrap_or(0);
        let testaments: Vec<String> = rest.by_ref().take(n).collect();
        if let Ok(session) = id.parse() {
            out.push(Departed { session, authid, authrole, testaments });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_answer_becomes_departed_sessions() {
        let flat =
            ["7", "alice", "user", "1", "{\"topic\":\"t\"}", "8", "anon-8", "anonymous", "0", "x", "b", "", "0", "9"];
        let got = departed(flat.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            got,
            vec![
                Departed {
                    session: 7,
                    authid: "alice".into(),
                    authrole: "user".into(),
                    testaments: vec![r#"{"topic":"t"}"#.into()]
                },
                Departed { session: 8, authid: "anon-8".into(), authrole: "anonymous".into(), testaments: vec![] },
            ],
            "an unparsable id is skipped, a trailing partial entry ignored"
        );
    }
}
