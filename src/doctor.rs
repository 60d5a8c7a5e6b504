//! `switchboard doctor --cookie '<Cookie header>'`: why a browser's cookie resolves to a user or to anonymous.
//!
//! It reads the settings exactly as the server does (`--config`, `SWITCHBOARD_*`) and walks the same path a
//! connecting socket takes, one checked step at a time: is the cookie there, does it decrypt or verify with
//! this key (and would it with the other protection mode), which store, which store key, is it there and for
//! how long, are the username and roles fields of the right JSON type, would the browser's `Origin` be
//! allowed. A failed step says what to change; nothing is written anywhere. The cookie's session key is a
//! bearer secret: it is printed only shortened.

use std::fmt::Write as _;
use std::time::Duration;

use actix_session::storage::{SessionKey, SessionStore};
use actix_web::cookie::Key;
use actix_web::test::TestRequest;

use crate::cluster::redis::conn::{self as redis_conn, RedisEndpoint, TlsCa};
use crate::config::{CookieSecurity, Settings, Unauthenticated};
use crate::session::bridge::session_key_from_cookie;
use crate::session::store::Store;

/// How one step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// As it should be.
    Ok,
    /// Works, but worth knowing.
    Note,
    /// Why the cookie does not resolve to a user.
    Fail,
}

/// One checked step: what was found, and what to change when it failed.
#[derive(Debug, Clone)]
pub struct Step {
    /// The outcome.
    pub status: Status,
    /// What was checked and found.
    pub text: String,
    /// What to change, when it failed.
    pub hint: Option<String>,
}

/// Where the cookie leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A logged-in user with these roles.
    User(String, Vec<String>),
    /// An anonymous connection (or a refused one with `session.unauthenticated = "reject"`), and why.
    Anonymous(String),
}

/// The whole diagnosis.
#[derive(Debug, Clone)]
pub struct Report {
    /// The steps in order; the first failure ends the walk.
    pub steps: Vec<Step>,
    /// Where it leads.
    pub verdict: Verdict,
}

impl Report {
    /// The report as the command prints it.
    pub fn render(&self, settings: &Settings) -> String {
        let mut out = String::new();
        for step in &self.steps {
            let mark = match step.status {
                Status::Ok => "ok  ",
                Status::Note => "note",
                Status::Fail => "FAIL",
            };
            let _ = writeln!(out, "{mark}  {}", step.text);
            if let Some(hint) = &step.hint {
                let _ = writeln!(out, "      → {hint}");
            }
        }
        let _ = match &self.verdict {
            Verdict::User(authid, roles) => writeln!(out, "=> resolves to {authid} (roles: {})", roles.join(", ")),
            Verdict::Anonymous(why) => match settings.session.unauthenticated {
                Unauthenticated::Anonymous => writeln!(out, "=> anonymous ({why})"),
                Unauthenticated::Reject => {
                    writeln!(out, "=> refused with 401, session.unauthenticated = reject ({why})")
                }
            },
        };
        out
    }
}

/// The first characters of a session key: enough to recognise it, not to use it.
fn shortened(key: &str) -> String {
    format!("{}…", key.chars().take(6).collect::<String>())
}

pub use crate::session::bridge::key_fingerprint;

struct Walk {
    steps: Vec<Step>,
}

impl Walk {
    fn ok(&mut self, text: impl Into<String>) {
        self.steps.push(Step { status: Status::Ok, text: text.into(), hint: None });
    }

    fn note(&mut self, text: impl Into<String>) {
        self.steps.push(Step { status: Status::Note, text: text.into(), hint: None });
    }

    /// Records a failure and returns the verdict that ends the walk.
    fn fail(mut self, text: impl Into<String>, hint: impl Into<String>, why: &str) -> Report {
        self.steps.push(Step { status: Status::Fail, text: text.into(), hint: Some(hint.into()) });
        Report { steps: self.steps, verdict: Verdict::Anonymous(why.to_owned()) }
    }
}

/// Diagnoses `cookie_header` (a browser's `Cookie` header value) against `settings`; `origin` is the page's
/// origin the browser would send, checked against `server.allowed_origins` (with `host` as the `Host` header).
pub async fn diagnose(settings: &Settings, cookie_header: &str, origin: Option<&str>, host: &str) -> Report {
    let session = &settings.session;
    let mut walk = Walk { steps: Vec::new() };
    if let Some(origin) = origin {
        let req =
            TestRequest::default().insert_header(("Origin", origin)).insert_header(("Host", host)).to_http_request();
        if crate::http::upgrade::origin_allowed(&req, &settings.server.allowed_origins) {
            walk.ok(format!("Origin {origin} may open a socket (server.allowed_origins)"));
        } else {
            let allowed = match settings.server.allowed_origins.is_empty() {
                true => format!("empty: only this server's own origin, Host {host}"),
                false => settings.server.allowed_origins.join(", "),
            };
            walk.steps.push(Step {
                status: Status::Fail,
                text: format!(
                    "Origin {origin} is not allowed (server.allowed_origins: {allowed}): the upgrade gets 403"
                ),
                hint: Some(format!("add {origin} to server.allowed_origins (SWITCHBOARD_ALLOWED_ORIGINS)")),
            });
        }
    }
    let key = match session.key_bytes() {
        Ok(Some(bytes)) => {
            let key = Key::from(&bytes);
            walk.ok(format!(
                "session.key is set (key fingerprint {}; the web app's Key must have the same)",
                key_fingerprint(&key)
            ));
            key
        }
        Ok(None) => {
            return walk.fail(
                "no session.key: the server would make a random key at start, which no web app's cookie matches",
                "set SWITCHBOARD_SESSION_KEY to the base64 of the web app's cookie Key (openssl rand -base64 64)",
                "no session.key",
            )
        }
        Err(e) => return walk.fail(e.to_string(), "fix session.key (SWITCHBOARD_SESSION_KEY)", "bad session.key"),
    };

    // The cookie, parsed exactly as the upgrade parses it.
    let req = TestRequest::default().insert_header(("Cookie", cookie_header)).to_http_request();
    let names: Vec<String> = req.cookies().map(|c| c.iter().map(|c| c.name().to_owned()).collect()).unwrap_or_default();
    let Some(cookie) = req.cookie(&session.cookie_name) else {
        let present = match names.is_empty() {
            true => "the header holds no cookie".to_owned(),
            false => format!("present: {}", names.join(", ")),
        };
        return walk.fail(
            format!("no cookie named '{}' ({present})", session.cookie_name),
            "is the web app's cookie named otherwise (session.cookie_name)? Does the browser send it to this host \
             (cookie Domain/Path, Secure on plain http, SameSite for a cross-site page)?",
            "no session cookie",
        );
    };
    walk.ok(format!("cookie '{}' is present ({} cookie(s) in the header)", session.cookie_name, names.len()));

    let mode = |security| match security {
        CookieSecurity::Private => "private (encrypted)",
        CookieSecurity::Signed => "signed",
    };
    let session_key = match session_key_from_cookie(Some(cookie.clone()), session.cookie_security, &key) {
        Ok(Some(session_key)) => {
            walk.ok(format!(
                "it {} with this key",
                match session.cookie_security {
                    CookieSecurity::Private => "decrypts",
                    CookieSecurity::Signed => "verifies",
                }
            ));
            session_key
        }
        _ => {
            let other = match session.cookie_security {
                CookieSecurity::Private => CookieSecurity::Signed,
                CookieSecurity::Signed => CookieSecurity::Private,
            };
            let hint = match session_key_from_cookie(Some(cookie), other, &key) {
                Ok(Some(_)) => format!(
                    "the cookie is {}: set session.cookie_security = \"{}\"",
                    mode(other),
                    if other == CookieSecurity::Signed { "signed" } else { "private" }
                ),
                _ => "the web app uses another key (compare fingerprints), or the cookie was altered or cut when \
                      copied (copy the whole Cookie header)"
                    .to_owned(),
            };
            let text = format!(
                "it does not {} with this key ({})",
                match session.cookie_security {
                    CookieSecurity::Private => "decrypt",
                    CookieSecurity::Signed => "verify",
                },
                mode(session.cookie_security)
            );
            return walk.fail(text, hint, "cookie fails verification");
        }
    };

    let url = settings.session_redis_url();
    if url.is_empty() {
        return walk.fail(
            "embedded mode: sessions live in this process's memory, so no web app's session can be found",
            "point SWITCHBOARD_REDIS_URL (or SWITCHBOARD_SESSION_REDIS_URL) at the web app's session Redis",
            "embedded mode",
        );
    }
    let setting = match session.redis_url.is_empty() {
        true => redis_conn::CLUSTER_URL_SETTING,
        false => redis_conn::SESSION_URL_SETTING,
    };
    let tls_ca = match settings.redis.tls_ca.as_str() {
        "" => None,
        path => match TlsCa::load(std::path::Path::new(path)) {
            Ok(ca) => Some(ca),
            Err(e) => return walk.fail(e.to_string(), "fix redis.tls_ca", "bad redis.tls_ca"),
        },
    };
    let endpoint = match RedisEndpoint::open(setting, url, tls_ca.as_ref(), settings.redis.connect_timeout) {
        Ok(endpoint) => endpoint,
        Err(e) => return walk.fail(e.to_string(), format!("fix {setting}"), "bad session store URL"),
    };
    if let Err(e) = endpoint.check().await {
        return walk.fail(
            e.to_string(),
            format!("is {setting} the web app's session Redis, and reachable?"),
            "store unreachable",
        );
    }
    walk.ok(format!("session store: Redis at {} ({setting})", endpoint.shown()));
    let store_key = format!("{}{session_key}", session.key_prefix);
    let shown_key = format!("{}{}", session.key_prefix, shortened(&session_key));
    let mut conn = match endpoint.connect().await {
        Ok(conn) => conn,
        Err(e) => return walk.fail(e.to_string(), format!("is {setting} reachable?"), "store unreachable"),
    };
    let ttl: i64 = redis::cmd("PTTL").arg(&store_key).query_async(&mut conn).await.unwrap_or(-2);
    if ttl == -2 {
        let hint = match find_elsewhere(&mut conn, &session_key).await {
            Some(found) if found != store_key => {
                let prefix = &found[..found.len() - session_key.len()];
                format!(
                    "it exists as '{prefix}{}': set session.key_prefix = \"{prefix}\" (SWITCHBOARD_SESSION_KEY_PREFIX)",
                    shortened(&session_key)
                )
            }
            _ => "the session expired or the user logged out (log in again), or the web app keeps sessions in another \
                  Redis or database number, or under another prefix (session.key_prefix)"
                .to_owned(),
        };
        return walk.fail(format!("store key '{shown_key}' does not exist"), hint, "session expired or not found");
    }
    match ttl {
        -1 => walk.note(format!("store key '{shown_key}' exists, without expiry")),
        ms => walk.ok(format!(
            "store key '{shown_key}' exists, expires in {}",
            humantime::format_duration(Duration::from_secs(ms.max(0) as u64 / 1000))
        )),
    }

    let state = match Store::redis(
        crate::node::session_source(&endpoint),
        settings.redis.connect_timeout,
        &session.key_prefix,
        session.store_timeout,
    )
    .await
    {
        Ok(store) => match SessionKey::try_from(session_key.clone()) {
            Ok(key) => store.load(&key).await,
            Err(e) => {
                return walk.fail(format!("the cookie's value is not a session key: {e}"), "log in again", "bad key")
            }
        },
        Err(e) => {
            return walk.fail(format!("cannot read the store: {e:#}"), format!("check {setting}"), "store unreadable")
        }
    };
    let state = match state {
        Ok(Some(state)) => state,
        Ok(None) => return walk.fail("the session vanished while being read", "log in again", "session expired"),
        Err(e) => {
            return walk.fail(
                format!("the stored value is not an actix-session state: {e}"),
                "is the key written by actix-session's RedisSessionStore (a JSON object of JSON-encoded fields)?",
                "unreadable session",
            )
        }
    };
    let fields: Vec<&String> = state.keys().collect();
    let Some(raw) = state.get(&session.username_field) else {
        return walk.fail(
            format!(
                "no '{}' field (fields: {}): nobody is logged in in this session",
                session.username_field,
                join(&fields)
            ),
            format!(
                "the web app must `session.insert(\"{}\", username)` at login, or set session.username_field",
                session.username_field
            ),
            "not logged in",
        );
    };
    let username = match serde_json::from_str::<String>(raw) {
        Ok(name) if !name.is_empty() => name,
        _ => {
            return walk.fail(
                format!("field '{}' is {raw}, not a non-empty JSON string", session.username_field),
                "store the username as a string (`session.insert(\"username\", \"alice\")`)",
                "bad username field",
            )
        }
    };
    walk.ok(format!("field '{}' = \"{username}\" (a JSON string)", session.username_field));
    let roles = match state.get(&session.roles_field) {
        None => {
            walk.note(format!(
                "no '{}' field: the user gets session.default_role \"{}\"",
                session.roles_field, session.default_role
            ));
            vec![session.default_role.clone()]
        }
        Some(raw) => match serde_json::from_str::<Vec<String>>(raw) {
            Ok(roles) if roles.is_empty() => {
                walk.note(format!(
                    "field '{}' is empty: the user gets \"{}\"",
                    session.roles_field, session.default_role
                ));
                vec![session.default_role.clone()]
            }
            Ok(roles) => {
                walk.ok(format!("field '{}' = {raw} (a JSON array of strings)", session.roles_field));
                roles
            }
            Err(_) => {
                return walk.fail(
                    format!("field '{}' is {raw}, not a JSON array of strings", session.roles_field),
                    "store the roles as a list (`session.insert(\"roles\", [\"user\"])`)",
                    "bad roles field",
                )
            }
        },
    };
    // The verdict comes from the sockets' own reading of the fields, so the two can never disagree.
    match crate::session::bridge::identity_from_state(session, &state) {
        Ok(Some(identity)) => {
            debug_assert_eq!((&identity.authid, &identity.authroles), (&username, &roles));
            Report { steps: walk.steps, verdict: Verdict::User(identity.authid, identity.authroles) }
        }
        Ok(None) => Report { steps: walk.steps, verdict: Verdict::Anonymous("not logged in".into()) },
        Err(reason) => Report { steps: walk.steps, verdict: Verdict::Anonymous(reason.to_string()) },
    }
}

fn join(fields: &[&String]) -> String {
    match fields.is_empty() {
        true => "none".to_owned(),
        false => fields.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", "),
    }
}

/// The key ending in `session_key` under another prefix, scanning at most 100,000 keys.
async fn find_elsewhere(conn: &mut redis::aio::MultiplexedConnection, session_key: &str) -> Option<String> {
    let pattern = format!("*{}", crate::cluster::redis::keys::glob_escape(session_key));
    let mut cursor = 0u64;
    for _ in 0..100 {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .ok()?;
        if let Some(found) = keys.into_iter().next() {
            return Some(found);
        }
        if next == 0 {
            return None;
        }
        cursor = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_with_key() -> Settings {
        use base64::Engine;
        let mut settings = Settings::default();
        settings.session.key = base64::engine::general_purpose::STANDARD.encode([9u8; 64]);
        settings
    }

    fn cookie_for(settings: &Settings, security: CookieSecurity, value: &str) -> String {
        use actix_web::cookie::{Cookie, CookieJar};
        let key = Key::from(&settings.session.key_bytes().unwrap().unwrap());
        let mut jar = CookieJar::new();
        let cookie = Cookie::new(settings.session.cookie_name.clone(), value.to_owned());
        match security {
            CookieSecurity::Private => jar.private_mut(&key).add(cookie),
            CookieSecurity::Signed => jar.signed_mut(&key).add(cookie),
        }
        let cookie = jar.get(&settings.session.cookie_name).unwrap();
        format!("theme=dark; {}={}", cookie.name(), cookie.value())
    }

    fn failed(report: &Report) -> &Step {
        report.steps.iter().find(|s| s.status == Status::Fail).expect("a failed step")
    }

    #[actix_web::test]
    async fn each_early_failure_names_what_to_change() {
        let settings = settings_with_key();
        let report = diagnose(&settings, "theme=dark; lang=en", None, "localhost").await;
        let step = failed(&report);
        assert!(step.text.contains("no cookie named 'id'") && step.text.contains("theme, lang"), "{}", step.text);

        let session_key = "a".repeat(64);
        let signed = cookie_for(&settings, CookieSecurity::Signed, &session_key);
        let report = diagnose(&settings, &signed, None, "localhost").await;
        assert!(failed(&report).hint.as_deref().unwrap().contains("cookie_security = \"signed\""), "{report:?}");

        let mut other_key = settings_with_key();
        other_key.session.key = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode([1u8; 64])
        };
        let private = cookie_for(&settings, CookieSecurity::Private, &session_key);
        let report = diagnose(&other_key, &private, None, "localhost").await;
        assert!(failed(&report).hint.as_deref().unwrap().contains("another key"), "{report:?}");

        // The right key in embedded mode: decrypts, then no store to find it in.
        let report = diagnose(&settings, &private, None, "localhost").await;
        assert!(report.steps.iter().any(|s| s.status == Status::Ok && s.text.contains("decrypts")));
        assert!(failed(&report).text.contains("embedded mode"), "{report:?}");
        assert_eq!(report.verdict, Verdict::Anonymous("embedded mode".into()));
        assert!(!report.render(&settings).contains(&session_key), "the session key is never printed whole");

        let mut no_key = Settings::default();
        no_key.session.key.clear();
        assert!(failed(&diagnose(&no_key, &private, None, "localhost").await).text.contains("no session.key"));
    }

    #[actix_web::test]
    async fn the_origin_is_checked_like_the_upgrade_checks_it() {
        let mut settings = settings_with_key();
        settings.server.allowed_origins = vec!["https://app.example".into()];
        let report = diagnose(&settings, "", Some("https://evil.example"), "ws.example").await;
        assert!(report.steps[0].status == Status::Fail && report.steps[0].text.contains("not allowed"));
        let report = diagnose(&settings, "", Some("https://app.example"), "ws.example").await;
        assert_eq!(report.steps[0].status, Status::Ok);
    }

    #[test]
    fn fingerprints_are_short_and_stable() {
        let key = |byte: u8| Key::from(&[byte; 64]);
        assert_eq!(key_fingerprint(&key(9)).len(), 8);
        assert_eq!(key_fingerprint(&key(9)), key_fingerprint(&key(9)));
        assert_ne!(key_fingerprint(&key(9)), key_fingerprint(&key(1)));
        assert_eq!(key_fingerprint(&Key::from(&[9u8; 80])), key_fingerprint(&key(9)), "bytes past 64 are unused");
    }
}
