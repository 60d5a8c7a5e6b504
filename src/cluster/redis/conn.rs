//! Opening Redis: the one place that turns a configured URL into a client the backplane, the registry and the
//! session store share.
//!
//! A [`RedisEndpoint`] holds the parsed URL (with TLS settings for `rediss://`: the system's roots, or the
//! private CA of `redis.tls_ca`), the setting it came from and its URL with the password masked, so every message
//! about it names the key an operator must fix without printing the secret. [`RedisEndpoint::check`] is the
//! start-up gate: connect and PING within `redis.connect_timeout`, so an unreachable server, a refused AUTH or a
//! NOAUTH/WRONGPASS answer stops the node at once with Redis's own words. This module opens connections; it
//! does not decide what runs over them.
//!
//! A `redis+sentinel://` URL names no server but a master Sentinel knows ([`super::sentinel`]): the check
//! resolves it and starts following it, [`RedisEndpoint::client`] is always the current master's, and
//! [`RedisEndpoint::generation`] goes up when it moves, so connection holders know theirs are stale. The pools
//! of [`super::pool`] ([`Dial`](super::pool::Dial)) drop such connections on their own.

use std::path::Path;
use std::sync::{Arc, Once};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo};
use tokio::sync::watch;

use super::connection::{describe, dial, AnyConnection};
use super::sentinel::{self, Sentinel, SentinelUrl};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The cluster URL's setting, as messages name it.
pub const CLUSTER_URL_SETTING: &str = "redis.url (SWITCHBOARD_REDIS_URL)";
/// The Redis Cluster seeds' setting, as messages name it.
pub const CLUSTER_SEEDS_SETTING: &str = "redis.cluster (SWITCHBOARD_REDIS_CLUSTER)";
/// The session store URL's setting, as messages name it.
pub const SESSION_URL_SETTING: &str = "session.redis_url (SWITCHBOARD_SESSION_REDIS_URL)";
/// The private CA's setting, as messages name it.
pub const TLS_CA_SETTING: &str = "redis.tls_ca (SWITCHBOARD_REDIS_TLS_CA)";
/// What replaces a password in every printed URL.
pub const MASK: &str = "***";

/// Why a Redis endpoint could not be opened or did not pass the start-up check. Every message names the
/// setting and shows the URL with its password masked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RedisConnError {
    /// The URL does not parse, or TLS cannot be set up for it.
    #[error("invalid {setting} '{url}': {message}")]
    Url {
        /// The setting, e.g. `redis.url (SWITCHBOARD_REDIS_URL)`.
        setting: &'static str,
        /// The URL, password masked.
        url: String,
        /// Redis's parser's message.
        message: String,
    },
    /// The private CA file is missing, unreadable or holds no PEM certificate.
    #[error("invalid {TLS_CA_SETTING} '{path}': {message}")]
    TlsCa {
        /// The configured path.
        path: String,
        /// Why it cannot be used.
        message: String,
    },
    /// Redis refused the connection, the TLS handshake failed, or Redis answered the check with an error
    /// (NOAUTH, WRONGPASS, …).
    #[error("cannot use Redis at {url} ({setting}): {message}")]
    Refused {
        /// The setting.
        setting: &'static str,
        /// The URL, password masked.
        url: String,
        /// Redis's (or the operating system's, or TLS's) own error text.
        message: String,
    },
    /// Nothing answered within `redis.connect_timeout`.
    #[error("cannot use Redis at {url} ({setting}): no answer within {timeout:?} (redis.connect_timeout)")]
    Timeout {
        /// The setting.
        setting: &'static str,
        /// The URL, password masked.
        url: String,
        /// The configured timeout.
        timeout: Duration,
    },
}

/// A private CA bundle (`redis.tls_ca`), read and parsed at start.
#[derive(Debug, Clone)]
pub struct TlsCa {
    pem: Vec<u8>,
}

impl TlsCa {
    /// Reads `path` and checks that it holds at least one PEM certificate.
    pub fn load(path: &Path) -> Result<TlsCa, RedisConnError> {
        let error = |message: String| RedisConnError::TlsCa { path: path.display().to_string(), message };
        let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error(format!("not a PEM certificate bundle: {e}")))?;
        if certificates.is_empty() {
            return Err(error("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
        }
        Ok(TlsCa { pem })
    }
}

/// One configured Redis server (or Sentinel-managed master): how to reach it, the setting it came from and
/// its masked URL. Clones share the Sentinel state.
#[derive(Clone)]
pub struct RedisEndpoint {
    target: Target,
    setting: &'static str,
    shown: String,
    connect_timeout: Duration,
}

/// How an endpoint finds its server.
#[derive(Clone)]
enum Target {
    /// `redis://`, `rediss://`: one fixed address (and a generation that never moves, for [`RedisEndpoint::changes`]).
    Direct(Client, Arc<watch::Sender<u64>>),
    /// `redis+sentinel://`, `rediss+sentinel://`: whichever master the Sentinels name.
    Sentinel(Arc<Sentinel>),
    /// `redis.cluster`: a Redis Cluster, each command routed by its key's (or channel's) slot.
    Cluster(Arc<ClusterSeeds>),
}

/// A Redis Cluster's seed nodes and TLS settings.
struct ClusterSeeds {
    nodes: Vec<redis::ConnectionInfo>,
    root_cert: Option<Vec<u8>>,
    /// Never sends: a cluster's failovers are followed by the cluster client, not announced here. Kept alive so
    /// [`RedisEndpoint::changes`] waits forever instead of reporting a closed channel at once.
    never_moves: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisEndpoint({} = {})", self.setting, self.shown)
    }
}

/// rustls needs a process-wide crypto provider before its first TLS configuration; ring is the one we build.
fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err only when a provider is installed already (by the embedding application): that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl RedisEndpoint {
    /// Parses `url` (named `setting` in messages). A `rediss://` (or `rediss+sentinel://`) URL uses `tls_ca` as
    /// its only trusted root when given, else the system's roots. Nothing is connected yet.
    pub fn open(
        setting: &'static str,
        url: &str,
        tls_ca: Option<&TlsCa>,
        connect_timeout: Duration,
    ) -> Result<RedisEndpoint, RedisConnError> {
        let shown = mask_password(url);
        let invalid = |message: String| RedisConnError::Url { setting, url: shown.clone(), message };
        let error = |e: redis::RedisError| invalid(e.to_string());
        if sentinel::is_sentinel_url(url) {
            let parsed = SentinelUrl::parse(url).map_err(invalid)?;
            if parsed.tls {
                install_crypto_provider();
            }
            let root_cert = tls_ca.map(|ca| ca.pem.clone());
            let sentinel = Sentinel::new(parsed, root_cert, connect_timeout, setting).map_err(error)?;
            return Ok(RedisEndpoint { target: Target::Sentinel(Arc::new(sentinel)), setting, shown, connect_timeout });
        }
        let info = url.into_connection_info().map_err(error)?;
        let tls = matches!(info.addr, redis::ConnectionAddr::TcpTls { .. });
        if tls {
            install_crypto_provider();
        }
        let client = match tls_ca.filter(|_| tls) {
            Some(ca) => {
                let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(ca.pem.clone()) };
                Client::build_with_tls(info, certificates).map_err(error)?
            }
            None => Client::open(info).map_err(error)?,
        };
        let never_moves = Arc::new(watch::channel(0).0);
        Ok(RedisEndpoint { target: Target::Direct(client, never_moves), setting, shown, connect_timeout })
    }

    /// A Redis Cluster given by its comma-separated seed URLs (`redis.cluster`). Nothing is connected yet.
    pub fn open_cluster(
        seeds: &str,
        tls_ca: Option<&TlsCa>,
        connect_timeout: Duration,
    ) -> Result<RedisEndpoint, RedisConnError> {
        let setting = CLUSTER_SEEDS_SETTING;
        let shown = seeds.split(',').map(|seed| mask_password(seed.trim())).collect::<Vec<_>>().join(",");
        let mut nodes = Vec::new();
        for seed in seeds.split(',').map(str::trim) {
            let info = seed.into_connection_info().map_err(|e| RedisConnError::Url {
                setting,
                url: mask_password(seed),
                message: e.to_string(),
            })?;
            if matches!(info.addr, redis::ConnectionAddr::TcpTls { .. }) {
                install_crypto_provider();
            }
            nodes.push(info);
        }
        let never_moves = Arc::new(watch::channel(0).0);
        let cluster = ClusterSeeds { nodes, root_cert: tls_ca.map(|ca| ca.pem.clone()), never_moves };
        let endpoint = RedisEndpoint { target: Target::Cluster(Arc::new(cluster)), setting, shown, connect_timeout };
        endpoint.cluster_client(None).map_err(|e| RedisConnError::Url {
            setting,
            url: endpoint.shown.clone(),
            message: e.to_string(),
        })?;
        Ok(endpoint)
    }

    /// Whether this endpoint is a Redis Cluster (sharded pub/sub, hash-tagged keys).
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// A cluster client (RESP3 with `push` receiving pub/sub messages when given); an error for a single server.
    pub fn cluster_client(
        &self,
        push: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
    ) -> redis::RedisResult<redis::cluster::ClusterClient> {
        let Target::Cluster(cluster) = &self.target else {
            return Err((redis::ErrorKind::InvalidClientConfig, "not a Redis Cluster").into());
        };
        let mut builder = redis::cluster::ClusterClientBuilder::new(cluster.nodes.clone())
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.connect_timeout)
            // Fail fast (a caller reports the failure) rather than retry for seconds; MOVED/ASK still redirect.
            .retries(2);
        if let Some(ca) = &cluster.root_cert {
            builder = builder.certs(redis::TlsCertificates { client_tls: None, root_cert: Some(ca.clone()) });
        }
        if let Some(push) = push {
            builder = builder.use_protocol(redis::ProtocolVersion::RESP3).push_sender(push);
        }
        builder.build()
    }

    /// The client of the server to use now: the fixed one, or the master Sentinel names (an error before the
    /// start-up check has resolved it, and for a Redis Cluster, which [`dial_any`](Self::dial_any) reaches).
    pub fn client(&self) -> redis::RedisResult<Client> {
        match &self.target {
            Target::Direct(client, _) => Ok(client.clone()),
            Target::Sentinel(sentinel) => sentinel.client(),
            Target::Cluster(_) => {
                Err((redis::ErrorKind::InvalidClientConfig, "a Redis Cluster has no one server").into())
            }
        }
    }

    /// A connection for commands: multiplexed to the one server, or a cluster connection.
    pub async fn dial_any(&self) -> redis::RedisResult<AnyConnection> {
        match &self.target {
            Target::Cluster(_) => Ok(AnyConnection::Cluster(self.cluster_client(None)?.get_async_connection().await?)),
            _ => Ok(AnyConnection::Single(dial(&self.client()?, self.connect_timeout).await?)),
        }
    }

    /// How many times the master moved (always 0 without Sentinel). A connection dialled under an older
    /// generation goes to a server that is no longer the master.
    pub fn generation(&self) -> u64 {
        match &self.target {
            Target::Direct(..) | Target::Cluster(_) => 0,
            Target::Sentinel(sentinel) => sentinel.generation(),
        }
    }

    /// Wakes when the master moves (never without Sentinel: the receiver then waits forever).
    pub fn changes(&self) -> watch::Receiver<u64> {
        match &self.target {
            Target::Direct(_, never_moves) => never_moves.subscribe(),
            // A cluster's own failovers are followed by the cluster client (MOVED, slot refresh).
            Target::Cluster(cluster) => cluster.never_moves.subscribe(),
            Target::Sentinel(sentinel) => sentinel.changes(),
        }
    }

    /// Whether this endpoint follows a Sentinel-managed master.
    pub fn is_sentinel(&self) -> bool {
        matches!(self.target, Target::Sentinel(_))
    }

    /// The setting this endpoint came from, as messages name it.
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// The URL with its password masked, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// `redis.connect_timeout`.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// A multiplexed connection whose connect and every answer are bounded by `redis.connect_timeout`.
    pub async fn connect(&self) -> Result<MultiplexedConnection, RedisConnError> {
        let client = self.client().map_err(|e| self.refused(&e))?;
        match tokio::time::timeout(self.connect_timeout, dial(&client, self.connect_timeout)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.connect_refused(&client, &e).await),
            Err(_) => Err(self.timeout()),
        }
    }

    /// The start-up check: connect (TCP, TLS, AUTH from the URL) and PING, all within `redis.connect_timeout`.
    /// A server that wants a password the URL lacks answers the PING with NOAUTH, which fails the check too.
    /// With Sentinel, the master is resolved first (and then followed for as long as the endpoint lives).
    pub async fn check(&self) -> Result<(), RedisConnError> {
        if let Target::Sentinel(sentinel) = &self.target {
            let first = sentinel.client().is_err();
            let resolved = tokio::time::timeout(self.connect_timeout * 2, sentinel.resolve(&mut Vec::new())).await;
            let message = match resolved {
                Ok(Ok(())) => None,
                Ok(Err(message)) => Some(message),
                Err(_) => Some(format!("no answer within {:?} (redis.connect_timeout)", self.connect_timeout * 2)),
            };
            if let Some(message) = message {
                return Err(RedisConnError::Refused { setting: self.setting, url: self.shown.clone(), message });
            }
            if first {
                sentinel.follow();
            }
        }
        if self.is_cluster() {
            return self.check_cluster().await;
        }
        let attempt = async {
            let mut conn = self.connect().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(|e| self.refused(&e))
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(self.timeout()),
        }
    }

    /// A Redis Cluster must answer PING on every master and know SPUBLISH (Redis ≥ 7: sharded pub/sub).
    async fn check_cluster(&self) -> Result<(), RedisConnError> {
        let attempt = async {
            let mut conn = self.dial_any().await.map_err(|e| self.refused(&e))?;
            redis::cmd("PING").query_async::<redis::Value>(&mut conn).await.map_err(|e| self.refused(&e))?;
            let probe = redis::cmd("SPUBLISH").arg("switchboard-start-up-check").arg("").clone();
            probe.query_async::<i64>(&mut conn).await.map_err(|e| {
                let mut refused = self.refused(&e);
                if let RedisConnError::Refused { message, .. } = &mut refused {
                    message.push_str(" (sharded pub/sub needs Redis 7 or later)");
                }
                refused
            })
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(self.timeout()),
        }
    }

    /// `e` as this endpoint's error, naming the setting and the masked URL.
    pub fn refused(&self, e: &redis::RedisError) -> RedisConnError {
        RedisConnError::Refused { setting: self.setting, url: self.shown.clone(), message: describe(e) }
    }

    /// A failed connect as this endpoint's error. redis-rs reports a refused AUTH in its own words
    /// ("Password authentication failed"); the operator needs Redis's (`WRONGPASS …`, `ERR AUTH … no password
    /// is set`), so the AUTH is sent again by hand on a connection without credentials to hear it.
    async fn connect_refused(&self, client: &Client, e: &redis::RedisError) -> RedisConnError {
        let mut refused = self.refused(e);
        if e.kind() != redis::ErrorKind::AuthenticationFailed {
            return refused;
        }
        let mut info = client.get_connection_info().clone();
        let (username, password) = (info.redis.username.take(), info.redis.password.take());
        let Ok(client) = Client::open(info) else { return refused };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(self.connect_timeout);
        let Ok(mut conn) = client.get_multiplexed_async_connection_with_config(&config).await else { return refused };
        let mut auth = redis::cmd("AUTH");
        auth.arg(username).arg(password.unwrap_or_default());
        if let (Err(answer), RedisConnError::Refused { message, .. }) =
            (auth.query_async::<()>(&mut conn).await, &mut refused)
        {
            *message = format!("{message}: {}", describe(&answer));
        }
        refused
    }

    fn timeout(&self) -> RedisConnError {
        RedisConnError::Timeout { setting: self.setting, url: self.shown.clone(), timeout: self.connect_timeout }
    }
}

/// `url` with the password (or a lone user-info part, which Redis may take as one), and the value of any query
/// parameter whose name ends in `password` (`sentinel_password`), replaced by [`MASK`].
pub fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let tail = mask_query(tail);
    let Some((userinfo, host)) = authority.rsplit_once('@') else { return format!("{scheme}://{authority}{tail}") };
    let userinfo = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:{MASK}"),
        None => MASK.to_owned(),
    };
    format!("{scheme}://{userinfo}@{host}{tail}")
}

/// A URL's path and query with `…password=<value>` parameters masked.
fn mask_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else { return tail.to_owned() };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.to_ascii_lowercase().ends_with("password") => format!("{name}={MASK}"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", masked.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_everything_else_kept() {
        assert_eq!(mask_password("redis://:s3cret@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
        assert_eq!(mask_password("rediss://app:p@ss@h:1"), "rediss://app:***@h:1");
        assert_eq!(mask_password("redis://lonely@h"), "redis://***@h");
        assert_eq!(mask_password("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(mask_password("redis://h/0?x=a@b"), "redis://h/0?x=a@b");
        assert_eq!(mask_password("not a url"), "not a url");
        assert_eq!(
            mask_password("redis+sentinel://:pw@h1,h2/m?sentinel_password=s3cret&x=1"),
            "redis+sentinel://:***@h1,h2/m?sentinel_password=***&x=1"
        );
        assert_eq!(
            mask_password("redis+sentinel://h1/m?sentinel_password=s"),
            "redis+sentinel://h1/m?sentinel_password=***"
        );
    }

    #[test]
    fn open_reports_a_bad_url_by_setting_without_its_password() {
        let e = RedisEndpoint::open(CLUSTER_URL_SETTING, "redis://:pw@h:notaport", None, Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("redis.url") && e.contains(":***@") && !e.contains("pw"), "{e}");
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_refused_naming_the_key() {
        let e = TlsCa::load(Path::new("/nonexistent/ca.pem")).unwrap_err().to_string();
        assert!(e.contains("redis.tls_ca"), "{e}");
        let empty = std::env::temp_dir().join(format!("sb-empty-ca-{}.pem", rand::random::<u32>()));
        std::fs::write(&empty, "hello\n").unwrap();
        let e = TlsCa::load(&empty).unwrap_err().to_string();
        let _ = std::fs::remove_file(&empty);
        assert!(e.contains("redis.tls_ca") && e.contains("no PEM certificate"), "{e}");
    }
}
