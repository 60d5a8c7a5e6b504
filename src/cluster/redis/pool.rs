//! Pools of Redis connections that follow the endpoint they were dialled to: bb8's connection maker over a
//! [`RedisEndpoint`] ([`Dial`]) and its connections ([`Pooled`]).

use super::conn::RedisEndpoint;
use super::connection::AnyConnection;

/// A pool's connection maker (bb8's manager) over an endpoint: each connection is dialled to the server the
/// endpoint names *now*, and a checkout test fails a connection dialled before the master moved, so a pool
/// follows a Sentinel failover by itself. Connections answer within `redis.connect_timeout`.
///
/// The checkout test is a PING, except on a Redis Cluster, where a PING goes to every master: there it is
/// `EXISTS <key>` of a key in the slot the pool works on (the registry's), one round trip to that slot's master.
pub struct Dial {
    endpoint: RedisEndpoint,
    slot_key: String,
}

impl Dial {
    /// Connections to `endpoint`; on a Redis Cluster, checked on the master of `slot_key`'s slot.
    pub fn new(endpoint: RedisEndpoint, slot_key: &str) -> Dial {
        Dial { endpoint, slot_key: slot_key.to_owned() }
    }
}

/// A pooled connection and the master generation it was dialled under.
pub struct Pooled {
    conn: AnyConnection,
    generation: u64,
}

impl bb8_redis::bb8::ManageConnection for Dial {
    type Connection = Pooled;
    type Error = redis::RedisError;

    async fn connect(&self) -> Result<Pooled, redis::RedisError> {
        let generation = self.endpoint.generation();
        let conn = self.endpoint.dial_any().await?;
        Ok(Pooled { conn, generation })
    }

    async fn is_valid(&self, conn: &mut Pooled) -> Result<(), redis::RedisError> {
        if conn.generation != self.endpoint.generation() {
            return Err((redis::ErrorKind::IoError, "the Redis master moved").into());
        }
        let check = match conn.conn {
            AnyConnection::Cluster(_) => redis::cmd("EXISTS").arg(&self.slot_key).clone(),
            _ => redis::cmd("PING"),
        };
        check.query_async::<redis::Value>(&mut conn.conn).await.map(|_| ())
    }

    fn has_broken(&self, conn: &mut Pooled) -> bool {
        conn.generation != self.endpoint.generation()
    }
}

impl redis::aio::ConnectionLike for Pooled {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        self.conn.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        self.conn.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}
