//! The registry's heartbeat: lease renewal, rebuild requests, the janitor of dead nodes, deregistration.

use super::*;

impl RedisRegistry {
    /// Renews the lease; asks for a rebuild when Redis lost it or writes failed; purges dead nodes.
    pub(super) async fn heartbeat(&self) {
        // After a Sentinel failover the new master holds what had been replicated to it, which may lack the
        // last writes: write everything again.
        let generation = self.endpoint.generation();
        if self.generation.swap(generation, Ordering::AcqRel) != generation {
            log::info!("registry: the Redis master moved; registering this node's sessions again");
            self.dirty.store(true, Ordering::Release);
        }
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
            Ok(purged) if !purged.is_empty() => {
                log::info!("registry: purged {} sessions of nodes whose lease expired", purged.len());
                self.report_departed(purged);
            }
            Ok(_) => {}
            Err(e) => log::debug!("registry janitor: {e}"),
        }
    }

    pub(super) async fn heartbeats(self: Arc<Self>) {
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
        self.run_pipe(&pipe).await.map(drop)
    }
}
