//! Server-side procedures: the registry, the [`Procedure`] trait, and the built-in session meta procedures.
//!
//! Procedures are async functions registered under route patterns (`com.app.add`, `chat/{room}`). A call
//! from either protocol becomes a [`Call`]; the handler answers [`CallResult`] or [`CallError`] (an error
//! URI and a message). A panicking handler is caught and answered with `switchboard.error.runtime_error`:
//! a bad handler never takes a connection or a worker down.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::future::{FutureExt, LocalBoxFuture};
use serde_json::{json, Map, Value};

use crate::clients::{ClientInfo, ClientManipulator};
use crate::route::{Params, PatternError, RoutePattern, Router};
use crate::session::Caller;
use crate::wamp::errors;

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
    /// A table holding the built-in `wamp.session.count|list|get`.
    pub fn with_builtins() -> Procedures {
        let mut p = Procedures::default();
        p.router.add(RoutePattern::parse("wamp.session.count").expect("literal pattern"), Arc::new(session_count));
        p.router.add(RoutePattern::parse("wamp.session.list").expect("literal pattern"), Arc::new(session_list));
        p.router.add(RoutePattern::parse("wamp.session.get").expect("literal pattern"), Arc::new(session_get));
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

async fn sessions_matching(call: &Call) -> Result<Vec<ClientInfo>, CallError> {
    let roles = role_filter(call)?;
    let all = call.clients.get_all(true).await;
    Ok(match roles {
        None => all,
        Some(roles) => all.into_iter().filter(|c| c.authroles.iter().any(|r| roles.contains(r))).collect(),
    })
}

async fn session_count(call: Call) -> Result<CallResult, CallError> {
    Ok(CallResult::value(sessions_matching(&call).await?.len()))
}

async fn session_list(call: Call) -> Result<CallResult, CallError> {
    let ids: Vec<Value> = sessions_matching(&call).await?.iter().map(|c| Value::from(c.session)).collect();
    Ok(CallResult::value(ids))
}

async fn session_get(call: Call) -> Result<CallResult, CallError> {
    let id = call.arg(0)?.as_u64().ok_or_else(|| CallError::invalid_argument("the argument is a session id"))?;
    let client = call
        .clients
        .get_client(id)
        .await
        .ok_or_else(|| CallError::new(errors::NO_SUCH_SESSION, format!("no session {id}")))?;
    Ok(CallResult::value(session_details(&client)))
}

/// The `wamp.session.get` dictionary of a session.
pub fn session_details(c: &ClientInfo) -> Value {
    json!({
        "session": c.session,
        "authid": c.authid,
        "authrole": c.authroles.first().cloned().unwrap_or_default(),
        "authroles": c.authroles,
        "authmethod": c.authmethod,
        "authprovider": "switchboard",
        "transport": { "type": "websocket", "protocol": c.protocol },
        "node": c.node,
        "connected_at": c.connected_at,
    })
}
