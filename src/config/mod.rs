//! Settings: the embedded default (`config/default.toml`), an optional TOML file, then environment overrides.
//!
//! Every key has a default, so a file only lists what it changes. Unknown keys, wrong types and values out
//! of range stop the server at start with a [`ConfigError`] naming the key (file keys as `section.key`,
//! environment variables by name). This module reads files and the environment and nothing else.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

mod load;
mod sections;
mod session;
#[cfg(test)]
mod tests;

pub use sections::*;
pub use session::*;

/// The embedded default configuration as shipped in `config/default.toml`. [`Settings::default`] builds the
/// same values in code; a unit test keeps the two identical.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.toml");

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
    /// `[presence]`: user online/offline announcements.
    pub presence: PresenceSettings,
    /// `[webhooks]`: presence and session events POSTed to the web app.
    pub webhooks: WebhookSettings,
    /// `[auth]`: token authentication (JWTs as WAMP `ticket`, or `Authorization: Bearer` on the upgrade).
    pub auth: AuthSettings,
    /// `[retention]`: retained events (PUBLISH `retain`, SUBSCRIBE `get_retained`).
    pub retention: RetentionSettings,
    /// `[[history]]` rules: which topics keep their events, how many and how long.
    pub history: Vec<HistorySettings>,
    /// `[inbox]`: messages to users kept until they take them.
    pub inbox: InboxSettings,
    /// `[access_policy]`: what happens to topics no `[[access]]` rule matches.
    pub access_policy: AccessPolicySettings,
    /// `[[access]]` rules, first match wins.
    pub access: Vec<AccessSettings>,
}
