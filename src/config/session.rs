//! `[session]`: how the web app's session is found, trusted and followed, and its defaults.

use std::time::Duration;

use serde::Deserialize;

use super::*;
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
