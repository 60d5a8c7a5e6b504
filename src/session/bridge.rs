//! The actix-session bridge: cookie → session key → state → [`Identity`], and writes back through the store.
//!
//! Decoding follows actix-session's own middleware: the cookie named `session.cookie_name` is verified
//! (`signed`) or decrypted (`private`) with the web app's key, its value becomes a `SessionKey`, and the state
//! is loaded with the store. Every store call has a timeout; loads are retried with doubling backoff. A store
//! failure is reported as such and never turned into an anonymous identity.

use std::sync::Arc;
use std::time::Duration;

use actix_session::storage::{SessionKey, SessionStore};
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, CookieJar, Key};
use actix_web::HttpRequest;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::store::{SessionState, Store};
use super::{AuthMethod, Identity};
use crate::config::{CookieSecurity, SessionSettings};
use crate::log_summary::Summary;
use crate::metrics::{self, Metrics};
use crate::wamp::Id;

/// Session key looked up by readiness probes (it never exists; any answer proves the store is reachable).
const PROBE_KEY: &str = "switchboard-readiness-probe";

/// First retry delay of a failed session load; doubles per attempt.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);

/// Why a session was found invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidReason {
    /// The cookie failed verification or decryption: tampered, signed with another key, or the wrong
    /// protection mode (the cryptography cannot tell these apart).
    Undecodable,
    /// The cookie is genuine but the store has no such session: expired or logged out.
    Unknown,
    /// The session exists but its username or roles field is not of the documented type.
    BadFields(String),
    /// An open socket's session was logged out or expired.
    Revoked,
}

impl std::fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvalidReason::Undecodable => f.write_str("session cookie failed verification (tampered or wrong key)"),
            InvalidReason::Unknown => f.write_str("session expired or logged out"),
            InvalidReason::BadFields(why) => write!(f, "session fields invalid: {why}"),
            InvalidReason::Revoked => f.write_str("session revoked (logged out or expired)"),
        }
    }
}

/// The invalid-session event (Socket.IO-sessions' `sinvalid`): given to the callback registered with
/// `Builder::on_invalid_session`, logged at info and counted in `switchboard_invalid_sessions_total`.
#[derive(Debug, Clone)]
pub struct InvalidSession {
    /// What was wrong.
    pub reason: InvalidReason,
    /// The WAMP session, when a socket was already open (revocation).
    pub session: Option<Id>,
    /// The peer's address, when known.
    pub peer: Option<String>,
}

/// Callback for [`InvalidSession`] events.
pub type InvalidSessionCallback = Arc<dyn Fn(&InvalidSession) + Send + Sync>;

/// The session store could not answer in time, after retries.
#[derive(Debug, Clone, thiserror::Error)]
#[error("session store unavailable: {0}")]
pub struct StoreUnavailable(pub String);

/// The outcome of resolving a request's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The session key, when a genuine, existing session was found (logged in or not).
    pub key: Option<String>,
    /// The logged-in user, or `None` for anonymous.
    pub identity: Option<Identity>,
    /// Why the session was invalid, if it was (the connection is anonymous or rejected then).
    pub invalid: Option<InvalidReason>,
    /// When the identity came from a bearer token: when it ends (Unix seconds, `exp` + leeway).
    pub expires_at: Option<u64>,
}

/// Resolves and writes the web app's sessions. One per node, shared by every connection.
pub struct SessionBridge {
    key: Key,
    settings: SessionSettings,
    store: Store,
    on_invalid: Option<InvalidSessionCallback>,
    metrics: Arc<Metrics>,
    /// Store calls that failed (a load after all its attempts, a TTL refresh), summarised in the log.
    failures: Summary,
}

impl SessionBridge {
    /// A bridge reading cookies with `key` from `store`.
    pub fn new(
        key: Key,
        settings: SessionSettings,
        store: Store,
        on_invalid: Option<InvalidSessionCallback>,
        metrics: Arc<Metrics>,
    ) -> SessionBridge {
        SessionBridge {
            key,
            settings,
            store,
            on_invalid,
            metrics,
            failures: Summary::new(module_path!(), "session store calls"),
        }
    }

    /// The store (for the demo's `SessionMiddleware` and for health output).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The cookie key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The session settings.
    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// Reports an invalid session: callback, log, metric.
    pub fn report_invalid(&self, event: InvalidSession) {
        metrics::inc(&self.metrics.invalid_sessions_total);
        log::info!(
            "invalid session{}{}: {}",
            event.session.map(|s| format!(" (session {s})")).unwrap_or_default(),
            event.peer.as_ref().map(|p| format!(" from {p}")).unwrap_or_default(),
            event.reason
        );
        if let Some(callback) = &self.on_invalid {
            callback(&event);
        }
    }

    /// The session key carried by the request's cookie: `Ok(None)` without a cookie, `Err` when the cookie
    /// fails verification.
    pub fn cookie_session_key(&self, req: &HttpRequest) -> Result<Option<String>, InvalidReason> {
        session_key_from_cookie(req.cookie(&self.settings.cookie_name), self.settings.cookie_security, &self.key)
    }

    fn session_key(key: &str) -> Result<SessionKey, StoreUnavailable> {
        SessionKey::try_from(key.to_owned()).map_err(|e| StoreUnavailable(format!("invalid session key: {e}")))
    }

    fn ttl(&self) -> CookieDuration {
        CookieDuration::seconds(self.settings.ttl.as_secs() as i64)
    }

    /// Loads a session's state with a timeout per attempt and bounded retries. `Ok(None)`: no such session.
    pub async fn load(&self, key: &str) -> Result<Option<SessionState>, StoreUnavailable> {
        let started = std::time::Instant::now();
        let mut delay = FIRST_RETRY_DELAY;
        let mut last_error = String::new();
        for attempt in 1..=self.settings.store_attempts {
            let session_key = Self::session_key(key)?;
            match tokio::time::timeout(self.settings.store_timeout, self.store.load(&session_key)).await {
                Ok(Ok(state)) => {
                    self.metrics.session_resolve_seconds.observe(started.elapsed().as_secs_f64());
                    metrics::inc(&self.metrics.session_loads_total);
                    self.failures.succeeded();
                    return Ok(state);
                }
                Ok(Err(e)) => last_error = format!("{:#}", anyhow::Error::from(e)),
                Err(_) => last_error = format!("no answer within {:?}", self.settings.store_timeout),
            }
            log::debug!("session store load failed (attempt {attempt}/{}): {last_error}", self.settings.store_attempts);
            if attempt < self.settings.store_attempts {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        metrics::inc(&self.metrics.session_store_errors_total);
        let attempts = self.settings.store_attempts;
        self.failures.failed(format_args!("session load failed after {attempts} attempts: {last_error}"));
        Err(StoreUnavailable(last_error))
    }

    /// One store round trip with the store timeout and no retry: is the store answering right now? The error
    /// carries Redis's own words (e.g. NOAUTH after a password change) for readiness output.
    pub async fn probe(&self) -> Result<(), StoreUnavailable> {
        let key = Self::session_key(PROBE_KEY)?;
        match tokio::time::timeout(self.settings.store_timeout, self.store.load(&key)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(StoreUnavailable(format!("{:#}", anyhow::Error::from(e)))),
            Err(_) => Err(StoreUnavailable(format!("no answer within {:?}", self.settings.store_timeout))),
        }
    }

    /// Refreshes a session's TTL (keep-alive). A vanished session is not recreated.
    pub async fn refresh_ttl(&self, key: &str) -> Result<(), StoreUnavailable> {
        let session_key = Self::session_key(key)?;
        let result =
            match tokio::time::timeout(self.settings.store_timeout, self.store.update_ttl(&session_key, &self.ttl()))
                .await
            {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(StoreUnavailable(format!("{e:#}"))),
                Err(_) => Err(StoreUnavailable("TTL refresh timed out".into())),
            };
        match &result {
            Ok(()) => self.failures.succeeded(),
            Err(e) => self.failures.failed(format_args!("TTL refresh: {e}")),
        }
        result
    }

    /// The identity a session state describes: `Ok(None)` when no user is logged in.
    pub fn identity_from(&self, state: &SessionState) -> Result<Option<Identity>, InvalidReason> {
        identity_from_state(&self.settings, state)
    }

    /// Resolves the request's session before the upgrade. Invalid sessions are reported here.
    pub async fn resolve(&self, req: &HttpRequest) -> Result<Resolved, StoreUnavailable> {
        let peer = req.peer_addr().map(|a| a.to_string());
        let invalid = |reason: InvalidReason| {
            self.report_invalid(InvalidSession { reason: reason.clone(), session: None, peer: peer.clone() });
            Ok(Resolved { key: None, identity: None, invalid: Some(reason), expires_at: None })
        };
        let key = match self.cookie_session_key(req) {
            Ok(Some(key)) => key,
            Ok(None) => return Ok(Resolved { key: None, identity: None, invalid: None, expires_at: None }),
            Err(reason) => return invalid(reason),
        };
        let Some(state) = self.load(&key).await? else { return invalid(InvalidReason::Unknown) };
        match self.identity_from(&state) {
            Ok(identity) => Ok(Resolved { key: Some(key), identity, invalid: None, expires_at: None }),
            Err(reason) => invalid(reason),
        }
    }
}

/// The identity a session state describes under `settings` (username and roles fields, default role):
/// `Ok(None)` when no user is logged in. The one reading of the fields, shared by sockets and `switchboard doctor`.
pub fn identity_from_state(
    settings: &SessionSettings,
    state: &SessionState,
) -> Result<Option<Identity>, InvalidReason> {
    let Some(raw) = state.get(&settings.username_field) else { return Ok(None) };
    let username: String = serde_json::from_str(raw)
        .map_err(|_| InvalidReason::BadFields(format!("'{}' is not a JSON string", settings.username_field)))?;
    if username.is_empty() {
        return Err(InvalidReason::BadFields(format!("'{}' is empty", settings.username_field)));
    }
    let authroles = match state.get(&settings.roles_field) {
        None => vec![settings.default_role.clone()],
        Some(raw) => {
            let roles: Vec<String> = serde_json::from_str(raw).map_err(|_| {
                InvalidReason::BadFields(format!("'{}' is not a JSON array of strings", settings.roles_field))
            })?;
            if roles.is_empty() {
                vec![settings.default_role.clone()]
            } else {
                roles
            }
        }
    };
    Ok(Some(Identity { authid: username, authroles, authmethod: AuthMethod::Cookie }))
}

/// The session key a session cookie carries (the cookie as `HttpRequest::cookie` parsed it from the `Cookie`
/// header): `Ok(None)` without a cookie, `Err` when it fails verification (`signed`) or decryption (`private`)
/// with `key`, or is not a valid actix-session key. Pure, so the fuzz target `cookie` drives it directly.
#[doc(hidden)]
pub fn session_key_from_cookie(
    cookie: Option<Cookie<'static>>,
    security: CookieSecurity,
    key: &Key,
) -> Result<Option<String>, InvalidReason> {
    let Some(cookie) = cookie else { return Ok(None) };
    let name = cookie.name().to_owned();
    let mut jar = CookieJar::new();
    jar.add_original(cookie);
    let verified = match security {
        CookieSecurity::Private => jar.private(key).get(&name),
        CookieSecurity::Signed => jar.signed(key).get(&name),
    };
    let value = verified.ok_or(InvalidReason::Undecodable)?.value().to_owned();
    SessionKey::try_from(value.clone()).map_err(|_| InvalidReason::Undecodable)?;
    Ok(Some(value))
}

/// Why a session write failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    /// The session no longer exists (logged out or expired); nothing was written, and it was not recreated.
    #[error("the session no longer exists (logged out or expired)")]
    Lost,
    /// The store did not answer.
    #[error(transparent)]
    Store(#[from] StoreUnavailable),
    /// A value could not be (de)serialised as JSON.
    #[error("session value is not valid JSON for this type: {0}")]
    Json(String),
}

/// A connection's web session, writable from topic and RPC handlers. Changes are saved through the store,
/// so the web app sees them on its next request.
///
/// Every write is a whole-state load-modify-write (actix-session stores the state as one value): it reloads
/// the state first, so concurrent writes to *different* fields from the web app and sockets survive unless
/// they fall between one write's load and its save (milliseconds); within that window the last write wins.
#[derive(Clone)]
pub struct SessionHandle {
    bridge: Arc<SessionBridge>,
    key: Arc<str>,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionHandle { .. }")
    }
}

impl PartialEq for SessionHandle {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for SessionHandle {}

impl SessionHandle {
    pub(crate) fn new(bridge: Arc<SessionBridge>, key: &str) -> SessionHandle {
        SessionHandle { bridge, key: Arc::from(key) }
    }

    /// The session's key in the store (what the socket reloads and keeps alive).
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// The current state (fresh from the store).
    pub async fn state(&self) -> Result<SessionState, SessionError> {
        self.bridge.load(&self.key).await?.ok_or(SessionError::Lost)
    }

    /// A field, deserialised from its JSON text.
    pub async fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, SessionError> {
        match self.state().await?.get(name) {
            None => Ok(None),
            Some(raw) => serde_json::from_str(raw).map(Some).map_err(|e| SessionError::Json(e.to_string())),
        }
    }

    /// Sets a field (stored as JSON text, like actix-session's `Session::insert`).
    pub async fn insert<T: Serialize>(&self, name: &str, value: T) -> Result<(), SessionError> {
        let raw = serde_json::to_string(&value).map_err(|e| SessionError::Json(e.to_string()))?;
        self.modify(|state| {
            state.insert(name.to_owned(), raw);
        })
        .await
    }

    /// Removes a field, returning its JSON text.
    pub async fn remove(&self, name: &str) -> Result<Option<String>, SessionError> {
        let mut removed = None;
        self.modify(|state| removed = state.remove(name)).await?;
        Ok(removed)
    }

    async fn modify(&self, change: impl FnOnce(&mut SessionState)) -> Result<(), SessionError> {
        let mut state = self.state().await?;
        change(&mut state);
        let bridge = &self.bridge;
        let session_key = SessionBridge::session_key(&self.key)?;
        let ttl = bridge.ttl();
        let update = bridge.store.update(session_key, state, &ttl);
        let written = match tokio::time::timeout(bridge.settings.store_timeout, update).await {
            Ok(Ok(key)) => key,
            Ok(Err(e)) => return Err(StoreUnavailable(format!("{e:#}")).into()),
            Err(_) => return Err(StoreUnavailable("session write timed out".into()).into()),
        };
        if written.as_ref() != &*self.key {
            // actix-session's `update` saves a vanished session under a NEW key instead of failing. Nobody holds
            // a cookie for that key: remove it and report the session as lost rather than resurrect it.
            let _ = bridge.store.delete(&written).await;
            return Err(SessionError::Lost);
        }
        Ok(())
    }
}

/// A fingerprint of a cookie key (the first 8 hex digits of the SHA-256 of its 64-byte master, which is what
/// `Key::from` keeps) to compare with the web app's: the node logs it at start, the example web app prints it,
/// `switchboard doctor` shows it.
pub fn key_fingerprint(key: &actix_web::cookie::Key) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key.master()).iter().take(4).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Key {
        Key::from(&[byte; 64])
    }

    /// The cookie the web app's actix-session middleware would set for `value`.
    fn sealed(value: &str, security: CookieSecurity, key: &Key) -> Cookie<'static> {
        let mut jar = CookieJar::new();
        let cookie = Cookie::new("id", value.to_owned());
        match security {
            CookieSecurity::Private => jar.private_mut(key).add(cookie),
            CookieSecurity::Signed => jar.signed_mut(key).add(cookie),
        }
        jar.get("id").expect("just added").clone()
    }

    #[test]
    fn a_genuine_cookie_yields_its_session_key_in_both_modes() {
        for security in [CookieSecurity::Private, CookieSecurity::Signed] {
            let cookie = sealed("k3y", security, &key(1));
            assert_eq!(session_key_from_cookie(Some(cookie), security, &key(1)), Ok(Some("k3y".into())));
        }
    }

    #[test]
    fn no_cookie_is_no_session_and_a_foreign_or_oversized_one_is_undecodable() {
        assert_eq!(session_key_from_cookie(None, CookieSecurity::Private, &key(1)), Ok(None));
        let other_key = sealed("k3y", CookieSecurity::Private, &key(2));
        assert_eq!(
            session_key_from_cookie(Some(other_key), CookieSecurity::Private, &key(1)),
            Err(InvalidReason::Undecodable)
        );
        let other_mode = sealed("k3y", CookieSecurity::Signed, &key(1));
        assert_eq!(
            session_key_from_cookie(Some(other_mode), CookieSecurity::Private, &key(1)),
            Err(InvalidReason::Undecodable)
        );
        let oversized = sealed(&"k".repeat(4065), CookieSecurity::Signed, &key(1));
        assert_eq!(
            session_key_from_cookie(Some(oversized), CookieSecurity::Signed, &key(1)),
            Err(InvalidReason::Undecodable)
        );
    }
}
