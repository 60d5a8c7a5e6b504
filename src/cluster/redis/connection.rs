//! A connection to Redis, whichever the deployment: one server, a Sentinel's current master or a Redis Cluster
//! ([`AnyConnection`]), and the bounded dial of one server ([`dial`]). It knows no settings: [`super::conn`]
//! decides where to dial, [`super::pool`] keeps such connections in pools.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};

/// A multiplexed connection to `client` whose connect and every answer are bounded by `timeout`.
pub async fn dial(client: &Client, timeout: Duration) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new().set_connection_timeout(timeout).set_response_timeout(timeout);
    client.get_multiplexed_async_connection_with_config(&config).await
}

/// A connection to one server or to a Redis Cluster; commands run the same over either.
#[derive(Clone)]
pub enum AnyConnection {
    /// One server (or the current Sentinel master).
    Single(MultiplexedConnection),
    /// One server, re-dialled by redis-rs after a failure.
    Managed(redis::aio::ConnectionManager),
    /// A Redis Cluster: commands routed by slot, redirections followed.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for AnyConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            AnyConnection::Single(conn) => conn.req_packed_command(cmd),
            AnyConnection::Managed(conn) => conn.req_packed_command(cmd),
            AnyConnection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            AnyConnection::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            AnyConnection::Managed(conn) => conn.req_packed_commands(cmd, offset, count),
            AnyConnection::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            AnyConnection::Single(conn) => conn.get_db(),
            AnyConnection::Managed(conn) => conn.get_db(),
            AnyConnection::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Redis's error text, with the cause chain (a TLS certificate error sits in the source of an I/O error).
pub fn describe(e: &redis::RedisError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}
