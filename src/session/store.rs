//! Session stores: actix-session's own `SessionStore` trait, with an in-memory implementation for embedded
//! mode and actix-session's `RedisSessionStore` (honouring the web app's key prefix) behind one [`Store`].
//!
//! Because [`Store`] implements `SessionStore`, the same value serves actix-session's `SessionMiddleware`
//! (the demo login) and the sockets: there is exactly one session format, actix-session's. Only this file
//! names `RedisSessionStore`.
//!
//! The Redis store runs over a pool (actix-session's `redis-pool`) rather than its own `ConnectionManager`:
//! a pooled connection is PINGed at checkout and a dead one replaced by a fresh dial at once, so sockets
//! resolve again as soon as Redis is back; the `ConnectionManager` re-dials on a backoff growing to a minute,
//! which locked logged-in users out for up to two minutes after every Redis restart. When the store's Redis is
//! a Sentinel-managed master, the store is made again over a new pool as soon as the master moves
//! ([`RedisSource`] says where Redis is now).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_session::storage::{LoadError, RedisSessionStore, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration as CookieDuration;
use deadpool_redis::{Manager, Pool, Runtime};
use rand::distr::{Alphanumeric, SampleString};

/// A session's state: field name → JSON text, exactly as actix-session stores it.
pub type SessionState = HashMap<String, String>;

/// Length of generated session keys (actix-session uses 64 alphanumerics too).
const SESSION_KEY_LEN: usize = 64;

/// Connections the Redis session store may hold open at once; more concurrent loads wait for one.
const REDIS_POOL_SIZE: usize = 16;

/// Entries the memory store holds before it sweeps expired ones on the next save.
const SWEEP_THRESHOLD: usize = 10_000;

/// In-memory sessions with expiry, for embedded mode and tests. Clones share the same sessions.
#[derive(Clone, Default)]
pub struct MemorySessionStore {
    sessions: Arc<Mutex<HashMap<String, (SessionState, Instant)>>>,
}

fn deadline(ttl: &CookieDuration) -> Instant {
    Instant::now() + std::time::Duration::from_secs(ttl.whole_seconds().max(0) as u64)
}

impl MemorySessionStore {
    // Map operations cannot panic while the lock is held; recover the guard anyway rather than panic.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (SessionState, Instant)>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock().values().filter(|(_, expires)| *expires > now).count()
    }

    /// Whether no live session exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SessionStore for MemorySessionStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<SessionState>, LoadError> {
        let mut sessions = self.lock();
        match sessions.get(session_key.as_ref()) {
            Some((state, expires)) if *expires > Instant::now() => Ok(Some(state.clone())),
            Some(_) => {
                sessions.remove(session_key.as_ref());
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn save(&self, session_state: SessionState, ttl: &CookieDuration) -> Result<SessionKey, SaveError> {
        let key = Alphanumeric.sample_string(&mut rand::rng(), SESSION_KEY_LEN);
        let mut sessions = self.lock();
        if sessions.len() >= SWEEP_THRESHOLD {
            let now = Instant::now();
            sessions.retain(|_, (_, expires)| *expires > now);
        }
        sessions.insert(key.clone(), (session_state, deadline(ttl)));
        SessionKey::try_from(key).map_err(|e| SaveError::Other(e.into()))
    }

    async fn update(
        &self,
        session_key: SessionKey,
        session_state: SessionState,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        {
            let mut sessions = self.lock();
            if let Some(entry) = sessions.get_mut(session_key.as_ref()).filter(|(_, e)| *e > Instant::now()) {
                *entry = (session_state, deadline(ttl));
                return Ok(session_key);
            }
        }
        // Same contract as RedisSessionStore: a vanished session is saved under a new key.
        self.save(session_state, ttl).await.map_err(|e| match e {
            SaveError::Serialization(e) => UpdateError::Serialization(e),
            SaveError::Other(e) => UpdateError::Other(e),
        })
    }

    async fn update_ttl(&self, session_key: &SessionKey, ttl: &CookieDuration) -> Result<(), anyhow::Error> {
        if let Some((_, expires)) = self.lock().get_mut(session_key.as_ref()) {
            *expires = deadline(ttl);
        }
        Ok(())
    }

    async fn delete(&self, session_key: &SessionKey) -> Result<(), anyhow::Error> {
        self.lock().remove(session_key.as_ref());
        Ok(())
    }
}

/// The session store of a node: in memory (embedded mode) or the web app's Redis.
#[derive(Clone)]
pub enum Store {
    /// Embedded mode.
    Memory(MemorySessionStore),
    /// actix-session's Redis store, with the web app's key prefix.
    Redis(RedisStore),
}

/// Where the session store's Redis is now. With a fixed URL the generation never changes; with Sentinel it
/// goes up at each failover, and only then are the connection settings asked for.
#[derive(Clone)]
pub struct RedisSource {
    /// The master's generation (cheap: asked before every store call).
    pub generation: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// The current master's connection settings.
    pub info: Arc<dyn Fn() -> redis::RedisResult<redis::ConnectionInfo> + Send + Sync>,
}

/// actix-session's `RedisSessionStore` over a pool, made again (a new pool to the new master) when the
/// source's generation moves. Clones share it.
#[derive(Clone)]
pub struct RedisStore {
    source: RedisSource,
    connect_timeout: Duration,
    prefix: Arc<str>,
    wait: Duration,
    current: Arc<Mutex<(u64, RedisSessionStore)>>,
}

impl RedisStore {
    async fn make(
        info: redis::ConnectionInfo,
        connect_timeout: Duration,
        prefix: &Arc<str>,
        wait: Duration,
    ) -> anyhow::Result<RedisSessionStore> {
        let timeout = Some(connect_timeout);
        let pool = Pool::builder(Manager::new(info)?)
            .max_size(REDIS_POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .wait_timeout(Some(wait))
            .build()?;
        let prefix = prefix.clone();
        RedisSessionStore::builder_pooled(pool).cache_keygen(move |key| format!("{prefix}{key}")).build().await
    }

    /// The store for the current master.
    async fn store(&self) -> anyhow::Result<RedisSessionStore> {
        let generation = (self.source.generation)();
        {
            let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            if current.0 == generation {
                return Ok(current.1.clone());
            }
        }
        let store = RedisStore::make((self.source.info)()?, self.connect_timeout, &self.prefix, self.wait).await?;
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        // Two loads may rebuild at once: never replace a newer master's store with an older one.
        if current.0 < generation {
            *current = (generation, store.clone());
        }
        Ok(store)
    }
}

impl Store {
    /// The web app's Redis session store at `source` (opened and checked by the caller); keys are the session
    /// key after `key_prefix`. Connections are dialled on first use, each within `connect_timeout`; a checkout waits at
    /// most `wait` for a free one.
    pub async fn redis(
        source: RedisSource,
        connect_timeout: Duration,
        key_prefix: &str,
        wait: Duration,
    ) -> anyhow::Result<Store> {
        let generation = (source.generation)();
        let prefix: Arc<str> = key_prefix.into();
        let first = RedisStore::make((source.info)()?, connect_timeout, &prefix, wait).await?;
        let current = Arc::new(Mutex::new((generation, first)));
        Ok(Store::Redis(RedisStore { source, connect_timeout, prefix, wait, current }))
    }

    /// `"memory"` or `"redis"`, for health output.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }
}

impl SessionStore for Store {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<SessionState>, LoadError> {
        match self {
            Store::Memory(s) => s.load(session_key).await,
            Store::Redis(s) => s.store().await.map_err(LoadError::Other)?.load(session_key).await,
        }
    }

    async fn save(&self, session_state: SessionState, ttl: &CookieDuration) -> Result<SessionKey, SaveError> {
        match self {
            Store::Memory(s) => s.save(session_state, ttl).await,
            Store::Redis(s) => s.store().await.map_err(SaveError::Other)?.save(session_state, ttl).await,
        }
    }

    async fn update(
        &self,
        session_key: SessionKey,
        session_state: SessionState,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        match self {
            Store::Memory(s) => s.update(session_key, session_state, ttl).await,
            Store::Redis(s) => {
                s.store().await.map_err(UpdateError::Other)?.update(session_key, session_state, ttl).await
            }
        }
    }

    async fn update_ttl(&self, session_key: &SessionKey, ttl: &CookieDuration) -> Result<(), anyhow::Error> {
        match self {
            Store::Memory(s) => s.update_ttl(session_key, ttl).await,
            Store::Redis(s) => s.store().await?.update_ttl(session_key, ttl).await,
        }
    }

    async fn delete(&self, session_key: &SessionKey) -> Result<(), anyhow::Error> {
        match self {
            Store::Memory(s) => s.delete(session_key).await,
            Store::Redis(s) => s.store().await?.delete(session_key).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SessionKey {
        SessionKey::try_from(s.to_owned()).unwrap()
    }

    #[actix_web::test]
    async fn memory_store_saves_loads_expires_and_deletes() {
        let store = MemorySessionStore::default();
        let state: SessionState = [("username".to_owned(), "\"alice\"".to_owned())].into();
        let k = store.save(state.clone(), &CookieDuration::seconds(60)).await.unwrap();
        assert_eq!(store.load(&k).await.unwrap(), Some(state.clone()));
        store.update_ttl(&k, &CookieDuration::seconds(0)).await.unwrap();
        assert_eq!(store.load(&k).await.unwrap(), None, "expired");
        let k = store.save(state.clone(), &CookieDuration::seconds(60)).await.unwrap();
        store.delete(&k).await.unwrap();
        assert_eq!(store.load(&k).await.unwrap(), None);
    }

    #[actix_web::test]
    async fn memory_update_of_a_vanished_session_returns_a_new_key_like_redis() {
        let store = MemorySessionStore::default();
        let gone = key("gone");
        let new = store.update(gone, SessionState::new(), &CookieDuration::seconds(60)).await.unwrap();
        assert_ne!(new.as_ref(), "gone");
    }
}
