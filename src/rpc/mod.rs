//! Server-side procedures: the registry, the [`Procedure`] trait, and the built-in session meta procedures.
//!
//! The meta procedures that reveal identities (`wamp.session.list`, `wamp.session.get`) answer only callers
//! holding a role of `meta.roles` (default: any role but `anonymous`), others get `wamp.error.not_authorized`
//! ([`MetaPolicy`]). `wamp.session.count` is open to all and answered from maintained counts, never by reading
//! sessions. `wamp.session.list` answers one page of at most `meta.max_list` ids (see [`MetaPolicy`]).
//!
//! Procedures are async functions registered under route patterns (`com.app.add`, `chat/{room}`). A call
//! from either protocol becomes a [`Call`]; the handler answers [`CallResult`] or [`CallError`] (an error
//! URI and a message). A panicking handler is caught and answered with `switchboard.error.runtime_error`:
//! a bad handler never takes a connection or a worker down.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::future::{FutureExt, LocalBoxFuture};
use serde_json::{Map, Value};

use crate::clients::{ClientInfo, ClientManipulator, Disconnect};
use crate::config::MetaSettings;
use crate::route::{Params, PatternError, RoutePattern, Router};
use crate::session::Caller;
use crate::wamp::errors::WampError;
use crate::wamp::{errors, Id};

mod subscription;

/// One procedure call.
#[derive(Clone)]
pub struct Call {
    /// The procedure URI called.
    pub procedure: String,
    /// Placeholders captured by the route pattern.
    pub params: Params,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments (always empty for WAMP v1 calls).
    pub kwargs: Map<String, Value>,
    /// Who is calling.
    pub caller: Caller,
    /// The client index, for handlers that look up or message other sessions.
    pub clients: ClientManipulator,
}

impl Call {
    /// Positional argument `index`, or `wamp.error.invalid_argument` naming it.
    pub fn arg(&self, index: usize) -> Result<&Value, CallError> {
        self.args.get(index).ok_or_else(|| CallError::invalid_argument(format!("missing argument {index}")))
    }
}

/// A successful result: WAMP v2 RESULT arguments (v1 CALLRESULT receives their single-value form).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallResult {
    /// Positional results.
    pub args: Vec<Value>,
    /// Keyword results.
    pub kwargs: Map<String, Value>,
}

impl CallResult {
    /// A result of one value.
    pub fn value(value: impl Into<Value>) -> CallResult {
        CallResult { args: vec![value.into()], kwargs: Map::new() }
    }
}

/// A failed call: an error URI and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {message}")]
pub struct CallError {
    /// Error URI, e.g. `com.app.error.not_found`.
    pub error: String,
    /// Human-readable message.
    pub message: String,
}

/// A failed call is answered like any refused request (v2 ERROR, v1 CALLERROR) with its URI and message.
impl From<CallError> for WampError {
    fn from(e: CallError) -> WampError {
        WampError::custom(e.error, e.message)
    }
}

impl CallError {
    /// An error with any URI.
    pub fn new(error: impl Into<String>, message: impl Into<String>) -> CallError {
        CallError { error: error.into(), message: message.into() }
    }

    /// `wamp.error.invalid_argument`.
    pub fn invalid_argument(message: impl Into<String>) -> CallError {
        CallError::new(errors::INVALID_ARGUMENT, message)
    }
}

/// The future a procedure returns. Not `Send`: it runs on the caller's connection thread.
pub type CallFuture = LocalBoxFuture<'static, Result<CallResult, CallError>>;

/// A server-side procedure. Implemented for every `Fn(Call) -> impl Future<Output = Result<..>>`.
pub trait Procedure: Send + Sync + 'static {
    /// Handles one call.
    fn call(&self, call: Call) -> CallFuture;
}

impl<F, Fut> Procedure for F
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<CallResult, CallError>> + 'static,
{
    fn call(&self, call: Call) -> CallFuture {
        Box::pin(self(call))
    }
}

/// The procedure table of a node: built-ins first, then the application's routes.
#[derive(Clone, Default)]
pub struct Procedures {
    router: Router<Arc<dyn Procedure>>,
}

impl Procedures {
    /// A table holding the built-in `wamp.session.count|list|get`, guarded and capped by `meta`.
    pub fn with_builtins(meta: &MetaSettings) -> Procedures {
        let policy = Arc::new(MetaPolicy::new(meta));
        let mut p = Procedures::default();
        subscription::add_builtins(&mut p.router, &policy);
        p.router.add(RoutePattern::parse("wamp.session.count").expect("literal pattern"), Arc::new(session_count));
        let list = policy.clone();
        p.router.add(
            RoutePattern::parse("wamp.session.list").expect("literal pattern"),
            Arc::new(move |call: Call| session_list(list.clone(), call)),
        );
        p.router.add(
            RoutePattern::parse("wamp.session.get").expect("literal pattern"),
            Arc::new(move |call: Call| session_get(policy.clone(), call)),
        );
        let killers = Arc::new(meta.kill_roles.clone());
        for (uri, by) in [
            ("wamp.session.kill", KillBy::Session),
            ("wamp.session.kill_by_authid", KillBy::Authid),
            ("wamp.session.kill_by_authrole", KillBy::Authrole),
        ] {
            let killers = killers.clone();
            p.router.add(
                RoutePattern::parse(uri).expect("literal pattern"),
                Arc::new(move |call: Call| session_kill(killers.clone(), by, call)),
            );
        }
        p
    }

    /// Adds a procedure route.
    pub fn add(&mut self, pattern: &str, procedure: Arc<dyn Procedure>) -> Result<(), PatternError> {
        self.router.add(RoutePattern::parse(pattern)?, procedure);
        Ok(())
    }

    /// Finds the procedure for `uri` and starts the call; `None` when no route matches.
    pub fn dispatch(&self, uri: &str, make_call: impl FnOnce(Params) -> Call) -> Option<CallFuture> {
        let (procedure, params) = self.router.find(uri)?;
        let future = procedure.call(make_call(params));
        Some(Box::pin(AssertUnwindSafe(future).catch_unwind().map(|outcome| match outcome {
            Ok(result) => result,
            Err(_) => Err(CallError::new(errors::RUNTIME_ERROR, "the procedure failed unexpectedly")),
        })))
    }
}

/// Who may call the identity-revealing meta procedures, and how long one list answer gets (`[meta]`).
///
/// Paging of `wamp.session.list([authroles])`: keyword arguments `limit` (ids per page, at most and by
/// default `meta.max_list`) and `after` (a session id; the page starts above it, default 0). Ids come in
/// ascending order; a page shorter than `limit` is the last, otherwise call again with `after` = its last id.
#[derive(Debug, Clone)]
pub struct MetaPolicy {
    roles: Option<Vec<String>>,
    max_list: usize,
}

impl MetaPolicy {
    /// The policy of `[meta]`.
    pub fn new(meta: &MetaSettings) -> MetaPolicy {
        MetaPolicy { roles: meta.roles.clone(), max_list: meta.max_list }
    }

    /// Whether a caller with `roles` may see identities.
    pub fn admits(&self, roles: &[String]) -> bool {
        crate::topic::access::sees_identities(self.roles.as_deref(), roles)
    }

    pub(crate) fn check(&self, caller: &Caller) -> Result<(), CallError> {
        if self.admits(&caller.authroles) {
            Ok(())
        } else {
            Err(CallError::new(errors::NOT_AUTHORIZED, "the session meta API is not available to this role"))
        }
    }
}

/// The optional `authroles` filter argument of `wamp.session.count|list`.
fn role_filter(call: &Call) -> Result<Option<Vec<String>>, CallError> {
    match call.args.first() {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(roles)) => roles
            .iter()
            .map(|r| {
                r.as_str().map(str::to_owned).ok_or_else(|| CallError::invalid_argument("authroles must be strings"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(CallError::invalid_argument("the optional argument is a list of authroles")),
    }
}

/// A non-negative integer keyword argument, `None` when absent.
fn kwarg_u64(call: &Call, name: &str) -> Result<Option<u64>, CallError> {
    match call.kwargs.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| CallError::invalid_argument(format!("{name} must be a non-negative integer"))),
    }
}

async fn session_count(call: Call) -> Result<CallResult, CallError> {
    let roles = role_filter(&call)?;
    Ok(CallResult::value(call.clients.count(roles.as_deref()).await))
}

async fn session_list(policy: Arc<MetaPolicy>, call: Call) -> Result<CallResult, CallError> {
    policy.check(&call.caller)?;
    let roles = role_filter(&call)?;
    let limit = kwarg_u64(&call, "limit")?.map_or(policy.max_list, |l| (l as usize).clamp(1, policy.max_list));
    let after: Id = kwarg_u64(&call, "after")?.unwrap_or(0);
    let ids = call.clients.session_ids(roles.as_deref(), after, limit).await;
    Ok(CallResult::value(ids))
}

async fn session_get(policy: Arc<MetaPolicy>, call: Call) -> Result<CallResult, CallError> {
    policy.check(&call.caller)?;
    let id = call.arg(0)?.as_u64().ok_or_else(|| CallError::invalid_argument("the argument is a session id"))?;
    let client = call
        .clients
        .get_client(id)
        .await
        .ok_or_else(|| CallError::new(errors::NO_SUCH_SESSION, format!("no session {id}")))?;
    Ok(CallResult::value(session_details(&client)))
}

/// What a `wamp.session.kill*` procedure selects by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillBy {
    /// `wamp.session.kill(session)`: no result.
    Session,
    /// `wamp.session.kill_by_authid(authid)`: the ids of the sessions closed.
    Authid,
    /// `wamp.session.kill_by_authrole(authrole)`: how many sessions were closed.
    Authrole,
}

/// `wamp.session.kill`, `kill_by_authid`, `kill_by_authrole` (WAMP "Session Meta API"), cluster-wide: closes the
/// selected sessions — never the caller's own — with GOODBYE `reason` (keyword argument, default
/// `wamp.close.killed`) and `message`, then close 1008. Only roles of `meta.kill_roles` may call them.
async fn session_kill(killers: Arc<Vec<String>>, by: KillBy, call: Call) -> Result<CallResult, CallError> {
    if !call.caller.authroles.iter().any(|r| killers.contains(r)) {
        return Err(CallError::new(errors::NOT_AUTHORIZED, "this role may not kill sessions (meta.kill_roles)"));
    }
    let text = |name: &str, default: &str| match call.kwargs.get(name) {
        None | Some(Value::Null) => Ok(default.to_owned()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(CallError::invalid_argument(format!("{name} must be a string"))),
    };
    let reason = text("reason", KILLED)?;
    if !crate::wamp::uri::is_valid_v2(&reason) {
        return Err(CallError::new(errors::INVALID_URI, "reason must be a valid URI"));
    }
    let disconnect = Disconnect { code: 1008, reason, message: text("message", "killed by another session")? };
    let string_arg = |what: &str| {
        call.arg(0)?
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CallError::invalid_argument(format!("the argument is {what}")))
    };
    let targets = match by {
        KillBy::Session => {
            let id =
                call.arg(0)?.as_u64().ok_or_else(|| CallError::invalid_argument("the argument is a session id"))?;
            let found = match id == call.caller.session {
                true => None,
                false => call.clients.get_client(id).await,
            };
            vec![found.ok_or_else(|| CallError::new(errors::NO_SUCH_SESSION, format!("no other session {id}")))?]
        }
        KillBy::Authid => call.clients.find_all_by_username(&string_arg("an authid")?).await,
        KillBy::Authrole => call.clients.find_by_roles(&[string_arg("an authrole")?.as_str()]).await,
    };
    let targets: Vec<ClientInfo> = targets.into_iter().filter(|c| c.session != call.caller.session).collect();
    call.clients
        .disconnect_sessions(&targets, disconnect)
        .await
        .map_err(|e| CallError::new(errors::BACKPLANE_UNAVAILABLE, e.to_string()))?;
    Ok(match by {
        KillBy::Session => CallResult::default(),
        KillBy::Authid => CallResult::value(targets.iter().map(|c| c.session).collect::<Vec<_>>()),
        KillBy::Authrole => CallResult::value(targets.len()),
    })
}

/// The default GOODBYE reason of a killed session.
const KILLED: &str = "wamp.close.killed";

/// The `wamp.session.get` dictionary of a session.
pub fn session_details(c: &ClientInfo) -> Value {
    c.details()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn meta_roles_default_to_everyone_but_anonymous() {
        let policy = MetaPolicy::new(&MetaSettings { roles: None, max_list: 10, ..MetaSettings::default() });
        assert!(!policy.admits(&roles(&["anonymous"])));
        assert!(policy.admits(&roles(&["user"])));
        assert!(!policy.admits(&[]));
        let policy =
            MetaPolicy::new(&MetaSettings { roles: Some(roles(&["admin"])), max_list: 10, ..MetaSettings::default() });
        assert!(!policy.admits(&roles(&["user"])));
        assert!(policy.admits(&roles(&["user", "admin"])));
    }
}
