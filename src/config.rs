//! Settings: the embedded default (`config/default.toml`), an optional TOML file, then environment overrides.
//!
//! Every key has a default, so a file only lists what it changes. Unknown keys, wrong types and values out
//! of range stop the server at start with a [`ConfigError`] naming the key (file keys as `section.key`,
//! environment variables by name). This module reads files and the environment and nothing else.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// The embedded default configuration as shipped in `config/default.toml`. [`Settings::default`] builds the
/// same values in code; a unit test keeps the two identical.
pub const EMBEDDED_DEFAULT: &str = include_str!("../config/default.toml");

/// A setting is wrong; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for our schema (unknown key, wrong type…); toml's message names the key.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// File path (or `embedded default`).
        path: String,
        /// The parser's message, with line, column and key.
        message: String,
    },
    /// A value parsed but is not acceptable.
    #[error("invalid setting `{key}`: {message}")]
    Invalid {
        /// `section.key` or the environment variable name.
        key: String,
        /// Why it is wrong.
        message: String,
    },
}

/// Longest `server.drain_period` accepted: a longer one is almost surely a unit typo (`10m` for `10s`).
const MAX_DRAIN_PERIOD: Duration = Duration::from_secs(3600);

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), message: message.into() }
}

/// The smallest accepted `websocket.outbound_bytes`: one ordinary frame must always fit.
pub const MIN_OUTBOUND_BYTES: usize = 4096;

/// All settings of one node.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `[server]`
    pub server: ServerSettings,
    /// `[websocket]`
    pub websocket: WebSocketSettings,
    /// `[session]`
    pub session: SessionSettings,
    /// `[redis]`
    pub redis: RedisSettings,
    /// `[cluster]`
    pub cluster: ClusterSettings,
    /// `[api]`
    pub api: ApiSettings,
    /// `[wamp]`: protocol-level bounds on what one client may ask for.
    pub wamp: WampSettings,
    /// `[meta]`: who may see identities through the meta API.
    pub meta: MetaSettings,
    /// `[access_policy]`: what happens to topics no `[[access]]` rule matches.
    pub access_policy: AccessPolicySettings,
    /// `[[access]]` rules, first match wins.
    pub access: Vec<AccessSettings>,
}

/// `[server]`: where and how the node listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// `host:port` to listen on; port 0 picks a free port. Env: `SWITCHBOARD_BIND`.
    pub bind: String,
    /// This node's id; generated at start when empty. Env: `SWITCHBOARD_NODE_ID`.
    pub node_id: String,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// The WAMP v2 realm clients must name in HELLO; empty accepts any realm.
    pub realm: String,
    /// Serve the demo chat page; unset means on in embedded mode and off with Redis (see
    /// [`Settings::demo_enabled`]). Env: `SWITCHBOARD_DEMO`.
    pub demo: Option<bool>,
    /// How long SIGTERM/SIGINT waits, after the drain, for connections to finish closing before exiting.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Over how long SIGTERM/SIGINT spreads the closing of this node's sessions (evenly, jittered), so their
    /// clients reconnect to other nodes as a trickle rather than a storm; 0 closes them all at once.
    #[serde(with = "humantime_serde")]
    pub drain_period: Duration,
    /// Origins allowed to open WebSockets (`https://app.example.com`); empty allows only the server's own
    /// origin, `*` allows any. Requests without `Origin` (non-browser clients) are always allowed.
    /// Env: `SWITCHBOARD_ALLOWED_ORIGINS` (comma separated).
    pub allowed_origins: Vec<String>,
    /// WebSockets this node holds at most; further upgrades get HTTP 503 before the handshake, so the node
    /// keeps descriptors for its health endpoints and Redis.
    pub max_connections: usize,
    /// Bytes of publications (estimated heap) the node may hold between accepting them and queueing their
    /// EVENTs for subscribers; beyond it, and beyond 1/8 of it for one session, a client's PUBLISH is refused
    /// with `switchboard.error.overloaded`.
    pub publish_backlog_bytes: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: "127.0.0.1:8080".into(),
            node_id: String::new(),
            workers: 0,
            realm: String::new(),
            demo: None,
            shutdown_timeout: Duration::from_secs(10),
            drain_period: Duration::from_secs(10),
            allowed_origins: Vec::new(),
            max_connections: 16_000,
            publish_backlog_bytes: 64 * 1024 * 1024,
        }
    }
}

/// `[websocket]`: per-connection limits and timers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketSettings {
    /// Largest inbound message (one frame or a reassembled fragmented message), in bytes; larger closes 1009.
    pub max_message_size: usize,
    /// How often the server pings an idle client.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// A connection silent (no frame, no pong) for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A v2 connection that has not sent HELLO within this time is aborted.
    #[serde(with = "humantime_serde")]
    pub hello_timeout: Duration,
    /// Messages that may wait for one slow client before it is closed (1008, "slow consumer").
    pub outbound_queue: usize,
    /// Bytes that may wait for one slow client before it is closed (1008, "slow consumer").
    pub outbound_bytes: usize,
    /// A socket whose writes make no progress for this long is closed (1008 "slow consumer", or the TCP
    /// connection shut when not even the close frame can be written).
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Sustained inbound messages per second per connection (token bucket refill rate).
    pub inbound_rate: u32,
    /// Inbound burst allowed above the rate (token bucket size). A client beyond it is closed (1008).
    pub inbound_burst: u32,
    /// Sustained inbound bytes per second per connection; the burst above it is
    /// [`inbound_bytes_burst`](Self::inbound_bytes_burst). A client beyond it is closed (1008).
    pub inbound_bytes_rate: usize,
    /// Subscriptions one session may hold.
    pub max_subscriptions: usize,
    /// Of those, prefix and wildcard subscriptions one session may hold (`max_subscriptions` caps both).
    pub max_pattern_subscriptions: usize,
    /// Calls one session may have in flight.
    pub max_pending_calls: usize,
}

impl WebSocketSettings {
    /// Inbound bytes a connection may send at once above `inbound_bytes_rate`: four seconds' worth, and always
    /// at least one message of `max_message_size`.
    pub fn inbound_bytes_burst(&self) -> usize {
        self.inbound_bytes_rate.saturating_mul(4).max(self.max_message_size)
    }
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        WebSocketSettings {
            max_message_size: 64 * 1024,
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            hello_timeout: Duration::from_secs(10),
            outbound_queue: 1024,
            outbound_bytes: 1024 * 1024,
            write_timeout: Duration::from_secs(10),
            inbound_rate: 2000,
            inbound_burst: 4000,
            inbound_bytes_rate: 8 * 1024 * 1024,
            max_subscriptions: 1024,
            max_pattern_subscriptions: 64,
            max_pending_calls: 64,
        }
    }
}

/// How the session cookie is protected (actix-session's `CookieContentSecurity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CookieSecurity {
    /// Encrypted and authenticated (AES-GCM); actix-session's default.
    Private,
    /// Signed (HMAC), readable by the client.
    Signed,
}

/// What happens to a connection without a valid session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unauthenticated {
    /// Connect as `anon-<session id>` with role `anonymous`.
    Anonymous,
    /// Refuse the upgrade with HTTP 401.
    Reject,
}

/// When the session state is re-read from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloadPolicy {
    /// Once, when the socket opens (plus periodic revalidation).
    Connect,
    /// Before handling each inbound message, so role changes apply at once.
    Message,
}

/// What happens to open sockets whose session was logged out or expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRevoked {
    /// v2 GOODBYE `switchboard.close.session_revoked`, then close 1008.
    Close,
    /// Keep the socket as `anon-<session id>`.
    Anonymous,
}

/// `[session]`: the web application's actix-session session, shared with sockets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    /// The session cookie's name (actix-session default `id`).
    pub cookie_name: String,
    /// `private` (actix-session default) or `signed`.
    pub cookie_security: CookieSecurity,
    /// Base64 of at least 64 bytes: the web app's `cookie::Key` (`Key::from(bytes)`); whitespace and line breaks
    /// (as `openssl rand -base64 64` prints them) are ignored. Empty in embedded mode
    /// generates a random key at start (fine for the demo, useless for sharing). Env: `SWITCHBOARD_SESSION_KEY`.
    pub key: String,
    /// Redis URL of the web app's session store when it is not the cluster's (`redis.url`); empty uses
    /// `redis.url`. Env: `SWITCHBOARD_SESSION_REDIS_URL`.
    pub redis_url: String,
    /// Prefix the web app's `RedisSessionStore` puts before session keys (`cache_keygen`).
    /// Env: `SWITCHBOARD_SESSION_KEY_PREFIX`.
    pub key_prefix: String,
    /// Session field holding the username, a JSON string.
    pub username_field: String,
    /// Session field holding the roles, a JSON array of strings.
    pub roles_field: String,
    /// Role of a logged-in user whose session has no roles field.
    pub default_role: String,
    /// `anonymous` (default) or `reject` (HTTP 401) for missing, tampered, wrong-key or expired sessions.
    pub unauthenticated: Unauthenticated,
    /// `connect` (default) or `message`.
    pub reload: ReloadPolicy,
    /// Session TTL the socket refreshes while open; use the web app's TTL (actix-session default 1 day).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How often an open socket refreshes its session's TTL; `0s` disables it.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// How often an open socket checks that its session still exists (logout detection).
    #[serde(with = "humantime_serde")]
    pub revalidate_interval: Duration,
    /// `close` (default) or `anonymous`, for sockets whose session was logged out or expired.
    pub on_revoked: OnRevoked,
    /// Time allowed for one session store operation.
    #[serde(with = "humantime_serde")]
    pub store_timeout: Duration,
    /// Attempts to load a session before answering 503 (with doubling backoff from 50 ms).
    pub store_attempts: u32,
    /// Sockets one user (authid of a logged-in session) may hold on this node; anonymous sockets are each
    /// their own user.
    pub max_sockets_per_user: usize,
    /// What a socket beyond `max_sockets_per_user` does.
    pub on_too_many: OnTooMany,
}

/// What happens when a user opens more than `session.max_sockets_per_user` sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTooMany {
    /// The user's oldest socket is closed with 1008; the new one is accepted.
    CloseOldest,
    /// The new socket is refused with HTTP 429.
    Reject,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            cookie_name: "id".into(),
            cookie_security: CookieSecurity::Private,
            key: String::new(),
            redis_url: String::new(),
            key_prefix: String::new(),
            username_field: "username".into(),
            roles_field: "roles".into(),
            default_role: "user".into(),
            unauthenticated: Unauthenticated::Anonymous,
            reload: ReloadPolicy::Connect,
            ttl: Duration::from_secs(24 * 60 * 60),
            keepalive_interval: Duration::from_secs(5 * 60),
            revalidate_interval: Duration::from_secs(30),
            on_revoked: OnRevoked::Close,
            store_timeout: Duration::from_secs(2),
            store_attempts: 3,
            max_sockets_per_user: 64,
            on_too_many: OnTooMany::CloseOldest,
        }
    }
}

/// The smallest key actix-session's `Key::from` accepts.
pub const MIN_SESSION_KEY_BYTES: usize = 64;

impl SessionSettings {
    /// The decoded session key, if one is configured.
    pub fn key_bytes(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        use base64::Engine;
        let key = "session.key (SWITCHBOARD_SESSION_KEY)";
        if self.key.is_empty() {
            return Ok(None);
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(without_whitespace(&self.key))
            .map_err(|e| invalid(key, format!("not valid base64: {e}")))?;
        if bytes.len() < MIN_SESSION_KEY_BYTES {
            return Err(invalid(
                key,
                format!("decodes to {} bytes; at least {MIN_SESSION_KEY_BYTES} are needed", bytes.len()),
            ));
        }
        Ok(Some(bytes))
    }
}

/// Base64 text with every whitespace character removed: `openssl rand -base64 64` wraps its output at 64
/// characters and ends it with a newline, and keys pasted into files or YAML pick up spaces and CRLFs.
/// Whitespace is never part of base64, so dropping it cannot turn a wrong key into a different valid one.
fn without_whitespace(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// `[redis]`: the session store, the cluster backplane and the registry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// Redis URL of the cluster (backplane and registry) and, unless `session.redis_url` is set, of the web
    /// app's session store; `rediss://` for TLS. Empty means embedded mode (in-memory sessions).
    /// Env: `SWITCHBOARD_REDIS_URL`.
    pub url: String,
    /// Longest start-up may wait for each Redis server to connect and answer a PING (AUTH included); the node
    /// exits with code 2 beyond it.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// PEM bundle of a private CA trusted (instead of the system's roots) by `rediss://` connections; empty
    /// uses the system's roots. Env: `SWITCHBOARD_REDIS_TLS_CA`.
    pub tls_ca: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings { url: String::new(), connect_timeout: Duration::from_secs(5), tls_ca: String::new() }
    }
}

/// `[cluster]`: how nodes share work through Redis (used whenever `redis.url` is set).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// Prefix of every Redis key and channel switchboard uses, so several deployments can share a Redis.
    pub prefix: String,
    /// A node's registry entries are valid only while its lease lives; a killed node's sessions vanish from
    /// lookups within this time. The lease is renewed every third of it.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often the node sends a probe through its own inbox to detect a wedged pub/sub connection.
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// Most reconnect delay after Redis failures (backoff doubles from 100 ms up to this).
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            prefix: "switchboard:".into(),
            lease: Duration::from_secs(15),
            probe_interval: Duration::from_secs(5),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// `[api]`: the HTTP push API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Bearer token of `/api/*`; empty disables the push API. Env: `SWITCHBOARD_API_TOKEN`.
    pub token: String,
}

/// `[wamp]`: protocol-level bounds on what one client may ask for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WampSettings {
    /// Entries one filter list (`exclude`, `eligible`, `exclude_authid`, …) of a publication may hold;
    /// beyond: ERROR `wamp.error.invalid_argument` (push API: HTTP 400).
    pub max_filter_entries: usize,
    /// WAMP v1 CURIE prefixes one connection may define; beyond: the PREFIX is refused.
    pub max_prefixes: usize,
}

impl Default for WampSettings {
    fn default() -> Self {
        WampSettings { max_filter_entries: 1024, max_prefixes: 64 }
    }
}

/// `[meta]`: the meta API (`wamp.session.list`, `wamp.session.get`, later meta topics).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaSettings {
    /// Roles allowed to call identity-revealing meta procedures; unset = every role except `anonymous`.
    pub roles: Option<Vec<String>>,
    /// Most entries one meta list answer carries (a page).
    pub max_list: usize,
}

impl Default for MetaSettings {
    fn default() -> Self {
        MetaSettings { roles: None, max_list: 1000 }
    }
}

/// What a topic no `[[access]]` rule matches allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAccess {
    /// Every role may subscribe and publish.
    Allow,
    /// Nobody may.
    Deny,
}

/// `[access_policy]`: the policy for topics outside every `[[access]]` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessPolicySettings {
    /// `"allow"` (default) or `"deny"`.
    pub default: DefaultAccess,
}

impl Default for AccessPolicySettings {
    fn default() -> Self {
        AccessPolicySettings { default: DefaultAccess::Allow }
    }
}

/// One `[[access]]` rule: which roles may subscribe to / publish on topics matching `pattern`.
///
/// A `{username}` placeholder stands for the caller's whole authid (private per-user topics); a topic under
/// the pattern's literal prefix without its shape is denied (see `topic::access`). An absent list allows
/// every role; an empty list allows nobody.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSettings {
    /// Route pattern such as `private/{username}` or `admin.{any}`; it must begin with literal text.
    pub pattern: String,
    /// Roles allowed to subscribe.
    pub subscribe: Option<Vec<String>>,
    /// Roles allowed to publish.
    pub publish: Option<Vec<String>>,
}

impl Settings {
    /// Loads the embedded default, or `file` when given, then applies environment overrides and validates.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut settings = match file {
            None => Settings::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
                Settings::from_toml(&text, &path.display().to_string())?
            }
        };
        settings.apply_env(|name| std::env::var(name).ok())?;
        settings.validate()?;
        Ok(settings)
    }

    /// Parses TOML text (keys absent from it keep their defaults).
    pub fn from_toml(text: &str, origin: &str) -> Result<Settings, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: origin.to_owned(), message: e.to_string() })
    }

    /// Applies the `SWITCHBOARD_*` overrides of DESIGN.md §7, reading variables through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(bind) = get("SWITCHBOARD_BIND") {
            self.server.bind = bind;
        }
        if let Some(url) = get("SWITCHBOARD_REDIS_URL") {
            self.redis.url = url;
        }
        if let Some(url) = get("SWITCHBOARD_SESSION_REDIS_URL") {
            self.session.redis_url = url;
        }
        if let Some(path) = get("SWITCHBOARD_REDIS_TLS_CA") {
            self.redis.tls_ca = path;
        }
        if let Some(key) = get("SWITCHBOARD_SESSION_KEY") {
            self.session.key = key;
        }
        if let Some(prefix) = get("SWITCHBOARD_SESSION_KEY_PREFIX") {
            self.session.key_prefix = prefix;
        }
        if let Some(origins) = get("SWITCHBOARD_ALLOWED_ORIGINS") {
            self.server.allowed_origins =
                origins.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_owned).collect();
        }
        if let Some(token) = get("SWITCHBOARD_API_TOKEN") {
            self.api.token = token;
        }
        if let Some(id) = get("SWITCHBOARD_NODE_ID") {
            self.server.node_id = id;
        }
        if let Some(demo) = get("SWITCHBOARD_DEMO") {
            self.server.demo = match demo.trim() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                other => return Err(invalid("SWITCHBOARD_DEMO", format!("expected true or false, got '{other}'"))),
            };
        }
        Ok(())
    }

    /// The session store's Redis URL: `session.redis_url`, else `redis.url` (empty: in-memory sessions).
    pub fn session_redis_url(&self) -> &str {
        if self.session.redis_url.is_empty() {
            &self.redis.url
        } else {
            &self.session.redis_url
        }
    }

    /// Whether the demo is served: as configured, else only in embedded mode (DESIGN.md §7).
    pub fn demo_enabled(&self) -> bool {
        self.server.demo.unwrap_or(self.redis.url.is_empty())
    }

    /// Checks values that parse but make no sense, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.bind_addr()?;
        if !self.server.node_id.is_empty()
            && !self.server.node_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid("server.node_id", "use letters, digits, '-', '_' or '.'"));
        }
        let ws = &self.websocket;
        if ws.max_message_size < 1024 {
            return Err(invalid("websocket.max_message_size", "must be at least 1024 bytes"));
        }
        if ws.ping_interval.is_zero() {
            return Err(invalid("websocket.ping_interval", "must be greater than zero"));
        }
        if ws.idle_timeout <= ws.ping_interval {
            return Err(invalid("websocket.idle_timeout", "must be longer than websocket.ping_interval"));
        }
        if ws.hello_timeout.is_zero() {
            return Err(invalid("websocket.hello_timeout", "must be greater than zero"));
        }
        if ws.write_timeout.is_zero() {
            return Err(invalid("websocket.write_timeout", "must be greater than zero"));
        }
        if ws.outbound_bytes < MIN_OUTBOUND_BYTES {
            return Err(invalid("websocket.outbound_bytes", format!("must be at least {MIN_OUTBOUND_BYTES} bytes")));
        }
        if self.server.publish_backlog_bytes < ws.max_message_size {
            let msg = "must be at least websocket.max_message_size";
            return Err(invalid("server.publish_backlog_bytes", msg));
        }
        for (key, value) in [
            ("server.max_connections", self.server.max_connections),
            ("session.max_sockets_per_user", self.session.max_sockets_per_user),
            ("websocket.max_pattern_subscriptions", ws.max_pattern_subscriptions),
            ("wamp.max_filter_entries", self.wamp.max_filter_entries),
            ("wamp.max_prefixes", self.wamp.max_prefixes),
            ("meta.max_list", self.meta.max_list),
            ("websocket.outbound_queue", ws.outbound_queue),
            ("websocket.inbound_rate", ws.inbound_rate as usize),
            ("websocket.inbound_burst", ws.inbound_burst as usize),
            ("websocket.inbound_bytes_rate", ws.inbound_bytes_rate),
            ("websocket.max_subscriptions", ws.max_subscriptions),
            ("websocket.max_pending_calls", ws.max_pending_calls),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than zero"));
            }
        }
        for (key, url) in [
            ("redis.url (SWITCHBOARD_REDIS_URL)", &self.redis.url),
            ("session.redis_url (SWITCHBOARD_SESSION_REDIS_URL)", &self.session.redis_url),
        ] {
            if !(url.is_empty() || url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(invalid(key, "must start with redis:// or rediss://"));
            }
        }
        if !self.session_redis_url().is_empty() && self.session.key.is_empty() {
            let msg = "is required when redis.url or session.redis_url is set: sockets must read the web app's cookies";
            return Err(invalid("session.key (SWITCHBOARD_SESSION_KEY)", msg));
        }
        if self.server.drain_period > MAX_DRAIN_PERIOD {
            return Err(invalid("server.drain_period", "must be at most 1h (it delays every shutdown)"));
        }
        if self.redis.connect_timeout.is_zero() {
            return Err(invalid("redis.connect_timeout", "must be greater than zero"));
        }
        if !self.redis.tls_ca.is_empty()
            && ![&self.redis.url, &self.session.redis_url].iter().any(|u| u.starts_with("rediss://"))
        {
            let msg = "is set, but no Redis URL uses TLS (rediss://)";
            return Err(invalid("redis.tls_ca (SWITCHBOARD_REDIS_TLS_CA)", msg));
        }
        self.session.key_bytes()?;
        let session = &self.session;
        for (key, value) in [
            ("session.cookie_name", &session.cookie_name),
            ("session.username_field", &session.username_field),
            ("session.roles_field", &session.roles_field),
            ("session.default_role", &session.default_role),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        if session.revalidate_interval.is_zero() {
            return Err(invalid("session.revalidate_interval", "must be greater than zero"));
        }
        if session.ttl.as_secs() < 1 {
            return Err(invalid("session.ttl", "must be at least one second"));
        }
        if session.store_timeout.is_zero() {
            return Err(invalid("session.store_timeout", "must be greater than zero"));
        }
        if session.store_attempts == 0 {
            return Err(invalid("session.store_attempts", "must be at least 1"));
        }
        let cluster = &self.cluster;
        if cluster.prefix.is_empty() || cluster.prefix.chars().any(|c| c.is_whitespace()) {
            return Err(invalid("cluster.prefix", "must be non-empty and without whitespace"));
        }
        if cluster.lease < Duration::from_millis(300) {
            return Err(invalid("cluster.lease", "must be at least 300ms"));
        }
        if cluster.probe_interval.is_zero() {
            return Err(invalid("cluster.probe_interval", "must be greater than zero"));
        }
        if cluster.max_backoff < Duration::from_millis(100) {
            return Err(invalid("cluster.max_backoff", "must be at least 100ms"));
        }
        if !self.api.token.is_empty() && self.api.token.len() < 16 {
            return Err(invalid("api.token (SWITCHBOARD_API_TOKEN)", "use at least 16 characters"));
        }
        for origin in &self.server.allowed_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                let msg = format!("'{origin}' is not an origin like https://app.example.com (or *)");
                return Err(invalid("server.allowed_origins (SWITCHBOARD_ALLOWED_ORIGINS)", msg));
            }
        }
        for (i, rule) in self.access.iter().enumerate() {
            crate::route::RoutePattern::parse_access(&rule.pattern)
                .map_err(|e| invalid(&format!("access[{i}].pattern"), e.to_string()))?;
        }
        Ok(())
    }

    /// The listen address, parsed.
    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.bind.parse().map_err(|_| {
            invalid(
                "server.bind (SWITCHBOARD_BIND)",
                format!("'{}' is not host:port, e.g. 127.0.0.1:8080", self.server.bind),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn embedded_default_is_valid_and_listens_on_8080() {
        let s = Settings::default();
        let from_file = Settings::from_toml(EMBEDDED_DEFAULT, "config/default.toml").unwrap();
        assert_eq!(format!("{s:?}"), format!("{from_file:?}"), "config/default.toml and the code defaults differ");
        s.validate().unwrap();
        assert_eq!(s.server.bind, "127.0.0.1:8080");
        assert!(s.redis.url.is_empty());
    }

    #[test]
    fn shipped_example_file_parses() {
        let file = "config/example.toml";
        let text = std::fs::read_to_string(file).unwrap();
        Settings::from_toml(&text, file).unwrap().validate().unwrap();
    }

    #[test]
    fn safe_to_expose_limits_are_validated_by_name() {
        for (toml, key) in [
            ("[server]\nmax_connections = 0\n", "server.max_connections"),
            ("[websocket]\nwrite_timeout = \"0s\"\n", "websocket.write_timeout"),
            ("[websocket]\noutbound_bytes = 100\n", "websocket.outbound_bytes"),
            ("[websocket]\nmax_pattern_subscriptions = 0\n", "websocket.max_pattern_subscriptions"),
            ("[websocket]\ninbound_bytes_rate = 0\n", "websocket.inbound_bytes_rate"),
            ("[session]\nmax_sockets_per_user = 0\n", "session.max_sockets_per_user"),
            ("[wamp]\nmax_filter_entries = 0\n", "wamp.max_filter_entries"),
            ("[wamp]\nmax_prefixes = 0\n", "wamp.max_prefixes"),
            ("[meta]\nmax_list = 0\n", "meta.max_list"),
        ] {
            let err = Settings::from_toml(toml, "x.toml").unwrap().validate().unwrap_err();
            assert!(err.to_string().contains(key), "{toml}: {err}");
        }
        for (toml, key) in [
            ("[session]\non_too_many = \"kick\"\n", "on_too_many"),
            ("[access_policy]\ndefault = \"maybe\"\n", "default"),
            ("[meta]\nroles = \"admin\"\n", "roles"),
        ] {
            let err = Settings::from_toml(toml, "x.toml").unwrap_err();
            assert!(err.to_string().contains(key), "{toml}: {err}");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Settings::from_toml("[websocket]\npingg_interval = \"1s\"\n", "x.toml").unwrap_err();
        assert!(err.to_string().contains("pingg_interval"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = Settings::from_toml("[websocket]\nmax_message_size = \"big\"\n", "x.toml").unwrap_err();
        assert!(err.to_string().contains("max_message_size"), "{err}");
    }

    #[test]
    fn out_of_range_values_are_named() {
        let mut s = Settings::from_toml("[websocket]\nidle_timeout = \"1s\"\nping_interval = \"5s\"\n", "x").unwrap();
        assert!(s.validate().unwrap_err().to_string().contains("websocket.idle_timeout"));
        s = Settings::default();
        s.apply_env(env(&[("SWITCHBOARD_BIND", "localhost")])).unwrap();
        assert!(s.validate().unwrap_err().to_string().contains("SWITCHBOARD_BIND"));
        let mut s = Settings::default();
        assert!(s
            .apply_env(env(&[("SWITCHBOARD_DEMO", "maybe")]))
            .unwrap_err()
            .to_string()
            .contains("SWITCHBOARD_DEMO"));
        let s = Settings::from_toml("[[access]]\npattern = \"chat/x{y}\"\n", "x").unwrap();
        assert!(s.validate().unwrap_err().to_string().contains("access[0].pattern"));
        let s = Settings::from_toml("[[access]]\npattern = \"{username}\"\n", "x").unwrap();
        assert!(s.validate().unwrap_err().to_string().contains("access[0].pattern"));
        let err = Settings::from_toml("[access_policy]\ndefault = \"maybe\"\n", "x").unwrap_err();
        assert!(err.to_string().contains("default"), "{err}");
    }

    #[test]
    fn session_key_must_be_base64_of_64_bytes_and_is_required_with_redis() {
        use base64::Engine;
        let mut s = Settings::default();
        s.apply_env(env(&[("SWITCHBOARD_SESSION_KEY", "short")])).unwrap();
        assert!(s.validate().unwrap_err().to_string().contains("SWITCHBOARD_SESSION_KEY"));
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        s.session.key = short;
        assert!(s.validate().unwrap_err().to_string().contains("at least 64"));
        let mut s = Settings::default();
        s.apply_env(env(&[("SWITCHBOARD_REDIS_URL", "redis://127.0.0.1:1")])).unwrap();
        assert!(s.validate().unwrap_err().to_string().contains("session.key"));
        s.session.key = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
        s.validate().unwrap();
        s.redis.url = "localhost:6379".into();
        assert!(s.validate().unwrap_err().to_string().contains("redis.url"));
    }

    #[test]
    fn a_key_as_openssl_rand_base64_64_prints_it_is_accepted() {
        // `openssl rand -base64 64` wraps at 64 characters and ends with a newline; `export K=$(…)` keeps the
        // inner newline, and a key pasted into a file may carry spaces, tabs or CRLF line ends.
        let printed = "Cp11D3sZR7ndhi5wkWQHIRPfaKN3bB79hUENtfvqDHVoijB8PFb6RgwpUCp8+Feq\n4oH5l92Y6YvR0qHh+p/0WQ==\n";
        for text in
            [printed.to_owned(), printed.replace('\n', "\r\n"), format!("  {}\t", printed.replace('\n', " \n "))]
        {
            let mut s = Settings::default();
            s.apply_env(env(&[("SWITCHBOARD_REDIS_URL", "redis://127.0.0.1:1"), ("SWITCHBOARD_SESSION_KEY", &text)]))
                .unwrap();
            s.validate().unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(s.session.key_bytes().unwrap().unwrap().len(), 64, "{text:?}");
        }
    }

    #[test]
    fn a_key_that_is_not_base64_is_refused_naming_the_key() {
        let mut s = Settings::default();
        s.apply_env(env(&[("SWITCHBOARD_SESSION_KEY", "Cp11D3sZR7ndhi5w\nkWQH!RPf\n")])).unwrap();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("session.key (SWITCHBOARD_SESSION_KEY)") && err.contains("not valid base64"), "{err}");
    }

    #[test]
    fn redis_keys_are_validated_by_name_and_the_session_url_defaults_to_the_cluster_url() {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
        let mut s = Settings::default();
        s.apply_env(env(&[("SWITCHBOARD_REDIS_URL", "redis://c:1"), ("SWITCHBOARD_SESSION_KEY", &key)])).unwrap();
        assert_eq!(s.session_redis_url(), "redis://c:1");
        s.apply_env(env(&[("SWITCHBOARD_SESSION_REDIS_URL", "rediss://s:2")])).unwrap();
        assert_eq!(s.session_redis_url(), "rediss://s:2");
        s.validate().unwrap();
        s.session.redis_url = "s:2".into();
        assert!(s.validate().unwrap_err().to_string().contains("SWITCHBOARD_SESSION_REDIS_URL"));

        let s = Settings::from_toml("[redis]\nconnect_timeout = \"0s\"\n", "x").unwrap();
        assert!(s.validate().unwrap_err().to_string().contains("redis.connect_timeout"));
        let mut s = Settings::default();
        s.apply_env(env(&[("SWITCHBOARD_REDIS_TLS_CA", "/etc/ca.pem"), ("SWITCHBOARD_REDIS_URL", "redis://c:1")]))
            .unwrap();
        s.session.key = key.clone();
        assert!(s.validate().unwrap_err().to_string().contains("SWITCHBOARD_REDIS_TLS_CA"), "CA without rediss://");
        s.redis.url = "rediss://c:1".into();
        s.validate().unwrap();

        let mut s = Settings::default();
        s.session.redis_url = "redis://s:2".into();
        assert!(s.validate().unwrap_err().to_string().contains("session.key"), "sessions in Redis need the key");
    }

    #[test]
    fn allowed_origins_come_from_the_environment_and_are_checked() {
        let mut s = Settings::default();
        s.apply_env(env(&[("SWITCHBOARD_ALLOWED_ORIGINS", "https://a.example, http://localhost:3000")])).unwrap();
        assert_eq!(s.server.allowed_origins, vec!["https://a.example", "http://localhost:3000"]);
        s.validate().unwrap();
        s.server.allowed_origins = vec!["a.example".into()];
        assert!(s.validate().unwrap_err().to_string().contains("SWITCHBOARD_ALLOWED_ORIGINS"));
    }

    #[test]
    fn demo_is_on_in_embedded_mode_and_off_with_redis_unless_set() {
        let mut s = Settings::default();
        assert!(s.demo_enabled());
        s.redis.url = "redis://127.0.0.1:1".into();
        assert!(!s.demo_enabled());
        s.server.demo = Some(true);
        assert!(s.demo_enabled());
    }

    #[test]
    fn environment_beats_the_file() {
        let mut s = Settings::from_toml("[server]\nbind = \"127.0.0.1:9000\"\ndemo = true\n", "x").unwrap();
        assert!(s.demo_enabled());
        s.apply_env(env(&[("SWITCHBOARD_BIND", "127.0.0.1:9100"), ("SWITCHBOARD_DEMO", "false")])).unwrap();
        assert_eq!(s.server.bind, "127.0.0.1:9100");
        assert!(!s.demo_enabled());
    }

    #[test]
    fn a_publish_backlog_smaller_than_one_message_is_refused_naming_the_key() {
        let s = Settings::from_toml("[server]\npublish_backlog_bytes = 1000\n", "x").unwrap();
        assert!(s.validate().unwrap_err().to_string().contains("server.publish_backlog_bytes"));
        let s = Settings::from_toml("[server]\npublish_backlog_bytes = 65536\n", "x").unwrap();
        s.validate().unwrap();
    }
}
