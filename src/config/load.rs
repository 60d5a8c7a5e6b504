//! Loading the settings: the embedded default, an optional TOML file, environment overrides, and the checks
//! that refuse a bad value at start, naming its key.

use super::*;
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
        if let Some(seeds) = get("SWITCHBOARD_REDIS_CLUSTER") {
            self.redis.cluster = seeds;
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
        if let Some(secret) = get("SWITCHBOARD_WEBHOOK_SECRET") {
            self.webhooks.secret = secret;
        }
        if let Some(secret) = get("SWITCHBOARD_JWT_SECRET") {
            self.auth.jwt_secret = secret;
        }
        if let Some(key) = get("SWITCHBOARD_JWT_PUBLIC_KEY") {
            self.auth.jwt_public_key = key;
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
        self.server.demo.unwrap_or(self.redis.url.is_empty() && self.redis.cluster.is_empty())
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
            let schemes = ["redis://", "rediss://", "redis+sentinel://", "rediss+sentinel://"];
            if !(url.is_empty() || schemes.iter().any(|scheme| url.starts_with(scheme))) {
                return Err(invalid(
                    key,
                    "must start with redis://, rediss://, redis+sentinel:// or rediss+sentinel://",
                ));
            }
        }
        if !self.redis.cluster.is_empty() {
            const KEY: &str = "redis.cluster (SWITCHBOARD_REDIS_CLUSTER)";
            if self.session_redis_url().is_empty() {
                let msg =
                    "needs session.redis_url (SWITCHBOARD_SESSION_REDIS_URL) or redis.url (SWITCHBOARD_REDIS_URL) \
                           for the web app's sessions: actix-session's store is not cluster-aware, so they live in a \
                           standalone (or Sentinel) Redis";
                return Err(invalid(KEY, msg));
            }
            for seed in self.redis.cluster.split(',').map(str::trim) {
                if !(seed.starts_with("redis://") || seed.starts_with("rediss://")) {
                    return Err(invalid(KEY, format!("seed '{seed}' must start with redis:// or rediss://")));
                }
            }
            if self.cluster.prefix.contains(['{', '}']) {
                let msg = "must not contain '{' or '}' with redis.cluster (switchboard adds its own hash tag)";
                return Err(invalid("cluster.prefix", msg));
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
            && ![&self.redis.url, &self.session.redis_url, &self.redis.cluster]
                .iter()
                .any(|u| u.contains("rediss://") || u.starts_with("rediss+sentinel://"))
        {
            let msg = "is set, but no Redis URL uses TLS (rediss:// or rediss+sentinel://)";
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
        for (i, rule) in self.history.iter().enumerate() {
            crate::route::RoutePattern::parse_access(&rule.pattern)
                .map_err(|e| invalid(&format!("history[{i}].pattern"), e.to_string()))?;
            if !(1..=MAX_HISTORY_SIZE).contains(&rule.size) {
                return Err(invalid(&format!("history[{i}].size"), format!("must be 1 to {MAX_HISTORY_SIZE}")));
            }
            if rule.ttl.is_zero() {
                return Err(invalid(&format!("history[{i}].ttl"), "must be greater than zero"));
            }
        }
        if !(1..=MAX_HISTORY_SIZE).contains(&self.inbox.size) {
            return Err(invalid("inbox.size", format!("must be 1 to {MAX_HISTORY_SIZE}")));
        }
        if self.retention.ttl.is_zero() {
            return Err(invalid("retention.ttl", "must be greater than zero"));
        }
        if self.retention.max_topics == 0 {
            return Err(invalid("retention.max_topics", "must be greater than zero"));
        }
        let hooks = &self.webhooks;
        if !hooks.url.is_empty() {
            if !(hooks.url.starts_with("http://") || hooks.url.starts_with("https://"))
                || hooks.url.parse::<actix_web::http::Uri>().is_err()
            {
                return Err(invalid("webhooks.url", format!("'{}' is not an http:// or https:// URL", hooks.url)));
            }
            if hooks.secret.len() < 16 {
                let msg = "must be at least 16 characters when webhooks.url is set (receivers verify the signature)";
                return Err(invalid("webhooks.secret (SWITCHBOARD_WEBHOOK_SECRET)", msg));
            }
        }
        if hooks.timeout.is_zero() {
            return Err(invalid("webhooks.timeout", "must be greater than zero"));
        }
        if hooks.max_attempts == 0 {
            return Err(invalid("webhooks.max_attempts", "must be at least 1"));
        }
        if hooks.max_queue == 0 {
            return Err(invalid("webhooks.max_queue", "must be greater than zero"));
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
