//! The sections of the settings other than `[session]`: their fields, documented, and their defaults.

use std::time::Duration;

use serde::Deserialize;

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
    /// [`Settings::demo_enabled`](super::Settings::demo_enabled)). Env: `SWITCHBOARD_DEMO`.
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

/// `[redis]`: the session store, the cluster backplane and the registry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// Redis URL of the cluster (backplane and registry) and, unless `session.redis_url` is set, of the web
    /// app's session store; `rediss://` for TLS. Empty means embedded mode (in-memory sessions).
    /// Env: `SWITCHBOARD_REDIS_URL`.
    pub url: String,
    /// Seed nodes of a Redis Cluster (≥ 7) for the backplane and registry, comma-separated
    /// (`redis://h1:7000,redis://h2:7001`); topic, user and node channels use sharded pub/sub. The session
    /// store then stays on `session.redis_url`, else `url` (which carries nothing else). Env:
    /// `SWITCHBOARD_REDIS_CLUSTER`.
    pub cluster: String,
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
        RedisSettings {
            url: String::new(),
            cluster: String::new(),
            connect_timeout: Duration::from_secs(5),
            tls_ca: String::new(),
        }
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
    /// Roles allowed to call identity-revealing meta procedures and to subscribe to the session meta events;
    /// unset = every role except `anonymous`.
    pub roles: Option<Vec<String>>,
    /// Most entries one meta list answer carries (a page).
    pub max_list: usize,
    /// Roles allowed to close other sessions (`wamp.session.kill`, `kill_by_authid`, `kill_by_authrole`);
    /// empty (the default) = nobody.
    pub kill_roles: Vec<String>,
}

impl Default for MetaSettings {
    fn default() -> Self {
        MetaSettings { roles: None, max_list: 1000, kill_roles: Vec::new() }
    }
}

/// `[presence]`: when a user counts as online and offline (`switchboard.user.on_online` / `on_offline`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceSettings {
    /// Whether the node publishes session meta events (`wamp.session.on_join` / `on_leave`) and user presence
    /// (`switchboard.user.on_online` / `on_offline`). Off saves a Redis `PUBLISH` per session start and end and
    /// a presence script call per logged-in user's first and last socket.
    pub enabled: bool,
    /// How long a user must have had no socket anywhere before she is announced offline, so a reconnect or a
    /// rolling restart does not flap.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        PresenceSettings { enabled: true, grace: Duration::from_secs(5) }
    }
}

/// One `[[history]]` rule: publications on topics matching `pattern` are kept (WAMP "Event History"), the newest
/// `size` of each topic and none older than `ttl`, for `wamp.subscription.get_events`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySettings {
    /// Route pattern such as `chat/{room}` (as `[[access]]` rules write them); the first rule matching wins.
    pub pattern: String,
    /// Events kept per topic (1–10,000).
    #[serde(default = "default_history_size")]
    pub size: usize,
    /// Age after which an event is dropped.
    #[serde(default = "default_history_ttl", with = "humantime_serde")]
    pub ttl: Duration,
}

fn default_history_size() -> usize {
    1000
}

fn default_history_ttl() -> Duration {
    Duration::from_secs(3600)
}

/// Most events `[[history]] size` may keep per topic.
pub const MAX_HISTORY_SIZE: usize = 10_000;

/// `[inbox]`: messages sent to a user (`send_to_user`, the push API's user messages) kept until she takes them:
/// the next time she subscribes to their topic, on any node, she receives those no socket of hers took.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboxSettings {
    /// How long a message waits; `0s` (the default) turns the inbox off.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Most messages kept per user (the oldest go first), 1–10,000.
    pub size: usize,
}

impl Default for InboxSettings {
    fn default() -> Self {
        InboxSettings { ttl: Duration::ZERO, size: 100 }
    }
}

impl InboxSettings {
    /// Whether messages are kept at all.
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }
}

/// `[retention]`: who may keep a topic's last event for later subscribers (PUBLISH `retain: true`, SUBSCRIBE
/// `get_retained: true`), and for how long.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Roles that may publish with `retain: true`; unset = every role but `anonymous` (a retained event stays
    /// in Redis for `ttl`, so strangers must not be able to fill it).
    pub roles: Option<Vec<String>>,
    /// How long a retained event is kept after its publication.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Most topics with a retained event a node keeps in embedded mode (the oldest goes first); cluster mode
    /// keeps them in Redis, bounded by `ttl`.
    pub max_topics: usize,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings { roles: None, ttl: Duration::from_secs(24 * 3600), max_topics: 10_000 }
    }
}

/// `[webhooks]`: user presence and session join/leave POSTed to the web app as signed JSON, each by the one node
/// that announces it (see `src/webhooks.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Where to POST (`http://` or `https://`); empty (the default) turns webhooks off.
    pub url: String,
    /// Key of the `X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of the body>` header; at least 16
    /// characters, required with `url`. Env: `SWITCHBOARD_WEBHOOK_SECRET`.
    pub secret: String,
    /// Which events to send (default: all four).
    pub events: Vec<WebhookEvent>,
    /// Longest one attempt may take, connection included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per event (the first included) before it is given up and counted; retries wait 0.5 s, then twice
    /// as long each time, at most 30 s.
    pub max_attempts: u32,
    /// Events a node keeps waiting or retrying at once; beyond, new events are dropped and counted.
    pub max_queue: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            url: String::new(),
            secret: String::new(),
            events: WebhookEvent::ALL.to_vec(),
            timeout: Duration::from_secs(5),
            max_attempts: 8,
            max_queue: 10_000,
        }
    }
}

/// An event a webhook can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum WebhookEvent {
    /// A user's first socket anywhere opened (`switchboard.user.on_online`).
    #[serde(rename = "user.online")]
    UserOnline,
    /// A user has had no socket anywhere for `presence.grace` (`switchboard.user.on_offline`).
    #[serde(rename = "user.offline")]
    UserOffline,
    /// A session was established (`wamp.session.on_join`).
    #[serde(rename = "session.join")]
    SessionJoin,
    /// A session ended, or its node died (`wamp.session.on_leave`).
    #[serde(rename = "session.leave")]
    SessionLeave,
}

impl WebhookEvent {
    /// Every event.
    pub const ALL: [WebhookEvent; 4] =
        [WebhookEvent::UserOnline, WebhookEvent::UserOffline, WebhookEvent::SessionJoin, WebhookEvent::SessionLeave];

    /// Its name in `events` and in the body's `event`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::UserOnline => "user.online",
            WebhookEvent::UserOffline => "user.offline",
            WebhookEvent::SessionJoin => "session.join",
            WebhookEvent::SessionLeave => "session.leave",
        }
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

/// `[auth]`: token authentication for services and apps without the web app's cookie. A JWT is accepted as
/// the WAMP `ticket` (HELLO `authmethods: ["ticket"]` → CHALLENGE → AUTHENTICATE) or as `Authorization: Bearer`
/// on the upgrade. Off unless a key is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// HS256 shared secret (at least 32 bytes). Env: `SWITCHBOARD_JWT_SECRET`.
    pub jwt_secret: String,
    /// RS256 or ES256 public key: PEM text, or the path of a PEM file. Env: `SWITCHBOARD_JWT_PUBLIC_KEY`.
    pub jwt_public_key: String,
    /// Required `aud` claim; empty = not checked.
    pub audience: String,
    /// Required `iss` claim; empty = not checked.
    pub issuer: String,
    /// Claim holding the roles (a JSON array of strings, or one string); absent ⇒ `session.default_role`.
    pub roles_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            jwt_secret: String::new(),
            jwt_public_key: String::new(),
            audience: String::new(),
            issuer: String::new(),
            roles_claim: "roles".into(),
            leeway: Duration::from_secs(30),
        }
    }
}
