//! Following a Redis master through Sentinel: `redis+sentinel://` and `rediss+sentinel://` URLs.
//!
//! ```text
//! redis+sentinel://[[user]:password@]host1[:26379],host2[:26379],…/<master-name>[/<db>][?sentinel_username=…&sentinel_password=…]
//! ```
//! The credentials before `@` and the database are the master's (as in a `redis://` URL); the Sentinels
//! themselves are asked without credentials unless `sentinel_username`/`sentinel_password` are given. With
//! `rediss+sentinel://` both the Sentinels and the master are reached over TLS (trusting `redis.tls_ca` when
//! set).
//!
//! A [`Sentinel`] knows the current master's client. The endpoint's start-up check resolves it (the first
//! Sentinel that answers `SENTINEL get-master-addr-by-name` wins; the address must answer `ROLE` as a master)
//! and starts a task that asks again every [`POLL`]. When the answer changes (a failover), the new address is
//! checked the same way, becomes current, and the master's *generation* goes up: every holder of a connection
//! to the old master (backplane, registry pools, session store) drops it and dials the new one. This module
//! finds the master; it does not decide what runs over the connections.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};
use tokio::sync::watch;

use super::connection::describe;

/// How often each node asks the Sentinels where the master is. A failover is followed within this (plus one
/// `ROLE` round trip) of the Sentinels agreeing on it.
pub const POLL: Duration = Duration::from_millis(250);
/// The Sentinel port when a host names none.
pub const DEFAULT_PORT: u16 = 26379;

/// A parsed `redis+sentinel://` URL.
#[derive(Debug, Clone)]
pub struct SentinelUrl {
    /// `rediss+sentinel://`: TLS to the Sentinels and to the master.
    pub tls: bool,
    /// Sentinel addresses, in the URL's order.
    pub sentinels: Vec<(String, u16)>,
    /// The name the Sentinels monitor the master under.
    pub master_name: String,
    /// The master's database, username and password.
    pub master: RedisConnectionInfo,
    /// Credentials for the Sentinels themselves.
    pub sentinel_auth: RedisConnectionInfo,
}

/// Whether `url` is a Sentinel URL (`redis+sentinel://` or `rediss+sentinel://`).
pub fn is_sentinel_url(url: &str) -> bool {
    url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://")
}

impl SentinelUrl {
    /// Parses a Sentinel URL; the error says what is wrong in words for the operator.
    pub fn parse(url: &str) -> Result<SentinelUrl, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
            (true, rest)
        } else {
            return Err("must start with redis+sentinel:// or rediss+sentinel://".into());
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let sentinels = hosts.split(',').map(parse_host).collect::<Result<Vec<_>, _>>()?;
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let master_name = segments
            .next()
            .ok_or("names no master: put the name Sentinel monitors after the hosts (…:26379/mymaster)")?;
        let db = match segments.next() {
            None => 0,
            Some(db) => db.parse::<i64>().map_err(|_| format!("database '{db}' is not a number"))?,
        };
        if let Some(extra) = segments.next() {
            return Err(format!("unexpected path segment '{extra}' after the database"));
        }
        // The userinfo and the query values are URL-encoded as in a redis:// URL: let redis-rs decode them.
        let decode = |userinfo: &str| -> Result<RedisConnectionInfo, String> {
            let info = format!("redis://{userinfo}@localhost/").into_connection_info().map_err(|e| e.to_string())?;
            Ok(info.redis)
        };
        let mut master = match userinfo {
            Some(userinfo) => decode(userinfo)?,
            None => RedisConnectionInfo::default(),
        };
        master.db = db;
        let (mut sentinel_user, mut sentinel_password) = (String::new(), String::new());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sentinel_username", v)) => sentinel_user = v.to_owned(),
                Some(("sentinel_password", v)) => sentinel_password = v.to_owned(),
                _ => {
                    let name = pair.split('=').next().unwrap_or(pair);
                    return Err(format!("unknown parameter '{name}' (known: sentinel_username, sentinel_password)"));
                }
            }
        }
        let sentinel_auth = match (sentinel_user.is_empty(), sentinel_password.is_empty()) {
            (true, true) => RedisConnectionInfo::default(),
            _ => decode(&format!("{sentinel_user}:{sentinel_password}"))?,
        };
        Ok(SentinelUrl { tls, sentinels, master_name: master_name.to_owned(), master, sentinel_auth })
    }
}

/// `host[:port]` or `[v6]:port`.
fn parse_host(host: &str) -> Result<(String, u16), String> {
    if host.is_empty() {
        return Err("lists an empty Sentinel host".into());
    }
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (name, after) = v6.split_once(']').ok_or_else(|| format!("Sentinel host '{host}' lacks its ']'"))?;
        (name, after.strip_prefix(':'))
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port.parse().map_err(|_| format!("Sentinel host '{host}' has an invalid port"))?,
    };
    Ok((name.to_owned(), port))
}

/// Where the master is now, and how to reach it.
pub struct Sentinel {
    url: SentinelUrl,
    sentinels: Vec<Client>,
    /// The private CA for TLS, if any.
    root_cert: Option<Vec<u8>>,
    /// The master's address and client; `None` until the start-up check resolved it.
    current: RwLock<Option<((String, u16), Client)>>,
    /// Goes up each time the master moves.
    generation: watch::Sender<u64>,
    timeout: Duration,
    setting: &'static str,
}

impl Sentinel {
    /// Clients for every Sentinel of `url` (nothing is dialled).
    pub fn new(
        url: SentinelUrl,
        root_cert: Option<Vec<u8>>,
        timeout: Duration,
        setting: &'static str,
    ) -> redis::RedisResult<Sentinel> {
        let sentinels = url
            .sentinels
            .iter()
            .map(|(host, port)| client_for(url.tls, host, *port, &url.sentinel_auth, root_cert.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sentinel {
            url,
            sentinels,
            root_cert,
            current: RwLock::new(None),
            generation: watch::channel(0).0,
            timeout,
            setting,
        })
    }

    /// The current master's client, or an error before the first resolution.
    pub fn client(&self) -> redis::RedisResult<Client> {
        match &*self.current.read().unwrap_or_else(|e| e.into_inner()) {
            Some((_, client)) => Ok(client.clone()),
            None => Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "no Redis master known yet",
                format!("Sentinel has not named master '{}'", self.url.master_name),
            ))),
        }
    }

    /// How many times the master moved.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Wakes whenever the master moves.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Asks the Sentinels for the master and checks it is one; makes it current. Used by the start-up check.
    pub async fn resolve(&self, connections: &mut Vec<Option<MultiplexedConnection>>) -> Result<(), String> {
        let address = self.ask(connections).await?;
        let known = self.current.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(a, _)| a.clone());
        if known.as_ref() == Some(&address) {
            return Ok(());
        }
        let client = self.master_client(&address).map_err(|e| describe(&e))?;
        self.check_master(&client, &address).await?;
        let previous = self.current.write().unwrap_or_else(|e| e.into_inner()).replace((address.clone(), client));
        if let Some((old, _)) = previous {
            log::warn!(
                "Redis master '{}' moved from {}:{} to {}:{} ({}): reconnecting to it",
                self.url.master_name,
                old.0,
                old.1,
                address.0,
                address.1,
                self.setting
            );
            self.generation.send_modify(|g| *g += 1);
        }
        Ok(())
    }

    /// Follows the master until the last handle to this Sentinel is dropped.
    pub fn follow(self: &Arc<Sentinel>) {
        let weak: Weak<Sentinel> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut connections = Vec::new();
            let mut last_error = String::new();
            loop {
                tokio::time::sleep(POLL).await;
                let Some(sentinel) = weak.upgrade() else { return };
                match sentinel.resolve(&mut connections).await {
                    Ok(()) => last_error.clear(),
                    Err(e) if e != last_error => {
                        log::warn!("cannot follow Redis master '{}': {e}", sentinel.url.master_name);
                        last_error = e;
                    }
                    Err(_) => {}
                }
            }
        });
    }

    /// The first answer of `SENTINEL get-master-addr-by-name`, trying the Sentinels in order.
    async fn ask(&self, connections: &mut Vec<Option<MultiplexedConnection>>) -> Result<(String, u16), String> {
        connections.resize_with(self.sentinels.len(), || None);
        let mut failures = Vec::new();
        for (i, client) in self.sentinels.iter().enumerate() {
            let (host, port) = &self.url.sentinels[i];
            let mut conn = match connections[i].take() {
                Some(conn) => conn,
                None => match self.dial(client).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        failures.push(format!("{host}:{port}: {e}"));
                        continue;
                    }
                },
            };
            let mut ask = redis::cmd("SENTINEL");
            ask.arg("get-master-addr-by-name").arg(&self.url.master_name);
            match tokio::time::timeout(self.timeout, ask.query_async::<Option<(String, u16)>>(&mut conn)).await {
                Ok(Ok(Some(address))) => {
                    connections[i] = Some(conn);
                    return Ok(address);
                }
                Ok(Ok(None)) => {
                    connections[i] = Some(conn);
                    failures.push(format!("{host}:{port}: monitors no master named '{}'", self.url.master_name));
                }
                Ok(Err(e)) => failures.push(format!("{host}:{port}: {}", describe(&e))),
                Err(_) => failures.push(format!("{host}:{port}: no answer within {:?}", self.timeout)),
            }
        }
        Err(format!("no Sentinel named the master ({})", failures.join("; ")))
    }

    async fn dial(&self, client: &Client) -> Result<MultiplexedConnection, String> {
        match tokio::time::timeout(self.timeout, super::connection::dial(client, self.timeout)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    /// `ROLE` must say `master`: a Sentinel may name an address that is still being promoted.
    async fn check_master(&self, client: &Client, (host, port): &(String, u16)) -> Result<(), String> {
        let mut conn = self.dial(client).await.map_err(|e| format!("master {host}:{port}: {e}"))?;
        let role = tokio::time::timeout(self.timeout, redis::cmd("ROLE").query_async::<redis::Value>(&mut conn)).await;
        match role {
            Ok(Ok(redis::Value::Array(items))) => match items.first() {
                Some(redis::Value::BulkString(role)) if role == b"master" => Ok(()),
                _ => Err(format!("{host}:{port}, named master by Sentinel, is not a master (yet)")),
            },
            Ok(Ok(other)) => Err(format!("master {host}:{port}: unexpected ROLE answer {other:?}")),
            Ok(Err(e)) => Err(format!("master {host}:{port}: {}", describe(&e))),
            Err(_) => Err(format!("master {host}:{port}: no answer within {:?}", self.timeout)),
        }
    }

    fn master_client(&self, (host, port): &(String, u16)) -> redis::RedisResult<Client> {
        client_for(self.url.tls, host, *port, &self.url.master, self.root_cert.as_ref())
    }
}

/// A client for `host:port` with `redis` settings, over TLS (trusting `root_cert` when given) if `tls`.
fn client_for(
    tls: bool,
    host: &str,
    port: u16,
    redis: &RedisConnectionInfo,
    root_cert: Option<&Vec<u8>>,
) -> redis::RedisResult<Client> {
    let addr = match tls {
        false => ConnectionAddr::Tcp(host.to_owned(), port),
        true => ConnectionAddr::TcpTls { host: host.to_owned(), port, insecure: false, tls_params: None },
    };
    let info = ConnectionInfo { addr, redis: redis.clone() };
    match root_cert.filter(|_| tls) {
        Some(ca) => {
            Client::build_with_tls(info, redis::TlsCertificates { client_tls: None, root_cert: Some(ca.clone()) })
        }
        None => Client::open(info),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentinel_url_names_hosts_master_database_and_credentials() {
        let url =
            SentinelUrl::parse("redis+sentinel://app:s%40cret@10.0.0.1,10.0.0.2:26380,[::1]:5/mymaster/2").unwrap();
        assert!(!url.tls);
        assert_eq!(url.sentinels, vec![("10.0.0.1".into(), 26379), ("10.0.0.2".into(), 26380), ("::1".into(), 5)]);
        assert_eq!(url.master_name, "mymaster");
        assert_eq!(url.master.db, 2);
        assert_eq!(url.master.username.as_deref(), Some("app"));
        assert_eq!(url.master.password.as_deref(), Some("s@cret"));
        assert_eq!(url.sentinel_auth.password, None);

        let url = SentinelUrl::parse("rediss+sentinel://h/m?sentinel_password=pw").unwrap();
        assert!(url.tls);
        assert_eq!((url.master.db, url.master.password.clone()), (0, None));
        assert_eq!(url.sentinel_auth.password.as_deref(), Some("pw"));
    }

    #[test]
    fn a_bad_sentinel_url_says_what_is_wrong() {
        let cases = [
            ("redis+sentinel://h1,h2", "names no master"),
            ("redis+sentinel://h1,,h2/m", "empty Sentinel host"),
            ("redis+sentinel://h1:x/m", "invalid port"),
            ("redis+sentinel://h1/m/zero", "is not a number"),
            ("redis+sentinel://h1/m/0/x", "unexpected path segment"),
            ("redis+sentinel://h1/m?password=x", "unknown parameter 'password'"),
            ("redis://h1/m", "must start with"),
        ];
        for (url, expected) in cases {
            let e = SentinelUrl::parse(url).unwrap_err();
            assert!(e.contains(expected), "{url}: {e}");
        }
    }
}
