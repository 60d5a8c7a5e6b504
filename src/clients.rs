//! The ClientManipulator: who is connected, and sending to them by session, username or role.
//!
//! This module owns the node's index of established WAMP sessions. Lookups follow GosWebSocketBundle's
//! ClientManipulator (`get_client`, `find_by_username`, `find_all_by_username`, `find_by_roles`, `get_all`)
//! and are `async` so callers do not change when the index is cluster-wide. It delivers only through the
//! broker (publications) or a connection's control mailbox ([`Disconnect`]); it holds no sockets itself.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use serde::Serialize;

use crate::session::AuthMethod;
use crate::topic::broker::{Broker, Publish, Subscribers};
use crate::topic::{Payload, Publication};
use crate::wamp::filter::Filters;
use crate::wamp::Id;

/// One connected WAMP session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientInfo {
    /// WAMP session id.
    pub session: Id,
    /// Username (`anon-<session>` when anonymous).
    pub authid: String,
    /// Roles (the first is the WAMP `authrole`).
    pub authroles: Vec<String>,
    /// How the identity was established.
    pub authmethod: AuthMethod,
    /// Negotiated subprotocol, `wamp.2.json` or `wamp`.
    pub protocol: &'static str,
    /// The node holding the socket.
    pub node: String,
    /// When the session was established, seconds since the Unix epoch.
    pub connected_at: u64,
}

impl ClientInfo {
    /// Whether this session is anonymous.
    pub fn is_anonymous(&self) -> bool {
        self.authmethod == AuthMethod::Anonymous
    }

    /// Seconds since the Unix epoch, for `connected_at`.
    pub fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }
}

/// Asks a connection to close: v2 gets GOODBYE with `reason`, then the socket closes with `code`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Disconnect {
    /// WebSocket close code (1000 normal, 1001 going away, 1008 policy).
    pub code: u16,
    /// WAMP reason URI, e.g. `wamp.close.system_shutdown`.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

struct Entry {
    info: ClientInfo,
    control: Recipient<Disconnect>,
}

/// Handle to the node's client index; cheap to clone, usable from any actix-web, topic or RPC handler.
#[derive(Clone)]
pub struct ClientManipulator {
    clients: Arc<RwLock<HashMap<Id, Entry>>>,
    broker: Addr<Broker>,
}

impl ClientManipulator {
    pub(crate) fn new(broker: Addr<Broker>) -> ClientManipulator {
        ClientManipulator { clients: Arc::default(), broker }
    }

    // The lock is only held for map operations that cannot panic, so it is never poisoned in practice;
    // recovering the guard keeps the index usable even if that changes.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Id, Entry>> {
        self.clients.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Id, Entry>> {
        self.clients.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn register(&self, info: ClientInfo, control: Recipient<Disconnect>) {
        self.write().insert(info.session, Entry { info, control });
    }

    pub(crate) fn control_of(&self, session: Id) -> Option<Recipient<Disconnect>> {
        self.read().get(&session).map(|e| e.control.clone())
    }

    pub(crate) fn unregister(&self, session: Id) {
        self.write().remove(&session);
    }

    fn collect(&self, keep: impl Fn(&ClientInfo) -> bool) -> Vec<ClientInfo> {
        self.read().values().filter(|e| keep(&e.info)).map(|e| e.info.clone()).collect()
    }

    /// The session with this id, if connected.
    pub async fn get_client(&self, session: Id) -> Option<ClientInfo> {
        self.read().get(&session).map(|e| e.info.clone())
    }

    /// Every session of `username`.
    pub async fn find_all_by_username(&self, username: &str) -> Vec<ClientInfo> {
        self.collect(|c| c.authid == username)
    }

    /// Sessions of `username` among the subscribers of `topic` (Gos `findByUsername`).
    pub async fn find_by_username(&self, topic: &str, username: &str) -> Vec<ClientInfo> {
        let subscribers = self.broker.send(Subscribers(topic.to_owned())).await.unwrap_or_default();
        let sessions: Vec<Id> = subscribers.into_iter().filter(|(_, a)| a == username).map(|(s, _)| s).collect();
        self.collect(|c| sessions.contains(&c.session))
    }

    /// Sessions holding at least one of `roles`.
    pub async fn find_by_roles(&self, roles: &[&str]) -> Vec<ClientInfo> {
        self.collect(|c| c.authroles.iter().any(|r| roles.contains(&r.as_str())))
    }

    /// Every session, optionally without anonymous ones.
    pub async fn get_all(&self, include_anonymous: bool) -> Vec<ClientInfo> {
        self.collect(|c| include_anonymous || !c.is_anonymous())
    }

    /// Publishes `payload` on `topic` from the server, with Gos-style session-id filters. Returns the
    /// publication id.
    pub fn broadcast(&self, topic: &str, payload: Payload, exclude: Vec<Id>, eligible: Option<Vec<Id>>) -> Id {
        self.publish(topic, payload, Filters { exclude, eligible, ..Filters::default() })
    }

    /// Publishes `payload` on `topic` to the sessions of `username` only.
    pub fn send_to_user(&self, username: &str, topic: &str, payload: Payload) -> Id {
        self.publish(topic, payload, Filters { eligible_authid: Some(vec![username.to_owned()]), ..Filters::default() })
    }

    /// Publishes with arbitrary filters. Returns the publication id.
    pub fn publish(&self, topic: &str, payload: Payload, filters: Filters) -> Id {
        let publication = Publication::new(topic.to_owned(), payload, filters);
        let id = publication.id;
        self.broker.do_send(Publish(Arc::new(publication)));
        id
    }

    /// Closes every session of `username`; returns how many were asked to close.
    pub async fn disconnect_user(&self, username: &str, disconnect: Disconnect) -> usize {
        let targets: Vec<Recipient<Disconnect>> =
            self.read().values().filter(|e| e.info.authid == username).map(|e| e.control.clone()).collect();
        targets.iter().for_each(|t| t.do_send(disconnect.clone()));
        targets.len()
    }

    /// Closes every session of this node (graceful shutdown); returns how many were asked to close.
    pub fn disconnect_all(&self, disconnect: Disconnect) -> usize {
        let targets: Vec<Recipient<Disconnect>> = self.read().values().map(|e| e.control.clone()).collect();
        targets.iter().for_each(|t| t.do_send(disconnect.clone()));
        targets.len()
    }

    /// Number of sessions on this node.
    pub fn local_count(&self) -> usize {
        self.read().len()
    }
}
