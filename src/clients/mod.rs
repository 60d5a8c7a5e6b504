//! The ClientManipulator: who is connected, and sending to them by session, username or role.
//!
//! The ClientManipulator is an actor (`ClientIndex`, in `actor.rs`) that owns the node's [`LocalIndex`]
//! of established WAMP sessions (with their exact topics) and every write to it and to the registry, applied in
//! the order connections report them; the cheap, cloneable [`ClientManipulator`] handle sends it those writes
//! and answers lookups, reading the index under a read lock rather than through the mailbox. It
//! fronts the cluster's [`Registry`]: in embedded mode that reads the local index (through [`LocalSessions`],
//! see `cluster/memory/`); in cluster mode Redis answers, cluster-wide, in one round trip (see
//! `cluster/redis/registry/`). Lookups follow GosWebSocketBundle's
//! ClientManipulator (`get_client`, `find_by_username`, `find_all_by_username`, `find_by_roles`, `get_all`).
//! If Redis cannot answer a lookup, it answers for this node only and logs a warning: a lookup never fails.
//! Every lookup is timed in `switchboard_registry_lookup_seconds`.
//! Delivery goes through the broker (publications) or connections' control mailboxes ([`Disconnect`]).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::{BoxFuture, FutureExt};

use crate::model::TopicKey;
pub use crate::model::{ClientInfo, Disconnect, SubscriptionIds, SubscriptionInfo};
pub use index::LocalIndex;

use actor::{ClientIndex, Register, Reidentify, SessionsDeparted, Subscribed, Unregister, Unsubscribed};

mod actor;
mod index;
pub mod meta;
mod receipts;
mod send;

pub use receipts::Tally;

use crate::cluster::envelope::Body;
use crate::cluster::{Backplane, BackplaneError, LocalSessions, Registry, RegistryError};
use crate::metrics::Metrics;
use crate::topic::broker::{Broker, Publish, Subscribers};
use crate::topic::{Payload, Publication};
use crate::wamp::filter::Filters;
use crate::wamp::Id;

/// Handle to the client index; cheap to clone, usable from any actix-web, topic or RPC handler.
#[derive(Clone)]
pub struct ClientManipulator {
    /// Read directly by lookups (a read lock, no message round trip); written only by `index`.
    local: LocalIndex,
    /// The actor that owns every write to `local` and to the registry, in order.
    index: Addr<ClientIndex>,
    registry: Arc<dyn Registry>,
    broker: Addr<Broker>,
    backplane: Arc<dyn Backplane>,
    node: Arc<str>,
    metrics: Arc<Metrics>,
    /// Names subscriptions as every node does.
    ids: SubscriptionIds,
    /// Delivery results waited for.
    receipts: Arc<receipts::Receipts>,
    /// Users' offline inboxes, when `[inbox]` keeps messages.
    inbox: Option<(Arc<dyn crate::cluster::Inbox>, crate::config::InboxSettings)>,
}

/// The cluster's two seams, as the client index uses them.
pub(crate) struct Seams {
    /// Who is connected where.
    pub(crate) registry: Arc<dyn Registry>,
    /// Control messages to other nodes, and the user channels this node receives.
    pub(crate) backplane: Arc<dyn Backplane>,
    /// Users' offline inboxes, with `[inbox]` when it keeps messages.
    pub(crate) inbox: Option<(Arc<dyn crate::cluster::Inbox>, crate::config::InboxSettings)>,
}

impl ClientManipulator {
    pub(crate) fn new(
        local: LocalIndex,
        Seams { registry, backplane, inbox }: Seams,
        broker: Addr<Broker>,
        node: &str,
        metrics: Arc<Metrics>,
        presence: meta::PresenceConfig,
        ids: SubscriptionIds,
    ) -> ClientManipulator {
        let index = ClientIndex {
            local: local.clone(),
            registry: registry.clone(),
            backplane: backplane.clone(),
            broker: broker.clone(),
            presence,
            users: HashMap::new(),
        }
        .start();
        let node: Arc<str> = Arc::from(node);
        let receipts = receipts::Receipts::new(node.clone(), backplane.clone());
        ClientManipulator { local, index, registry, broker, backplane, node, metrics, ids, receipts, inbox }
    }

    /// Runs a lookup, observing how long it took in `switchboard_registry_lookup_seconds`.
    async fn timed<T>(&self, lookup: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let answer = lookup.await;
        self.metrics.registry_lookup_seconds.observe(started.elapsed().as_secs_f64());
        answer
    }

    /// Indexes a new session. The future completes once lookups find it on every node (the registry has it
    /// and messages targeted at the user reach this node), so a WELCOME sent after it means "findable".
    pub(crate) fn register(&self, info: ClientInfo, control: Recipient<Disconnect>) -> BoxFuture<'static, ()> {
        let registered = self.index.send(Register { info, control });
        async move {
            if let Ok(acked) = registered.await {
                acked.await;
            }
        }
        .boxed()
    }

    /// Follows a session's changed identity (its web session logged in or out).
    pub(crate) fn reidentify(&self, info: ClientInfo) {
        self.index.do_send(Reidentify(info));
    }

    /// Records a subscription (`id` names `key` cluster-wide); the future completes once lookups by topic and
    /// the subscription meta API find it.
    pub(crate) fn subscribed(&self, session: Id, key: TopicKey, id: Id) -> BoxFuture<'static, ()> {
        let recorded = self.index.send(Subscribed { session, key, id });
        async move {
            if let Ok(acked) = recorded.await {
                acked.await;
            }
        }
        .boxed()
    }

    /// Forgets a subscription.
    pub(crate) fn unsubscribed(&self, session: Id, key: TopicKey, id: Id) {
        self.index.do_send(Unsubscribed { session, key, id });
    }

    /// The id of the subscription `key`: the same on every node of the cluster.
    pub fn subscription_id(&self, key: &TopicKey) -> Id {
        self.ids.id(key)
    }

    /// Every subscription of the cluster (WAMP's `wamp.subscription.list`). Unlike the session lookups this
    /// fails rather than answer for this node only: a count or list of one node would look like the cluster's.
    pub async fn subscriptions(&self) -> Result<Vec<SubscriptionInfo>, RegistryError> {
        self.timed(self.registry.subscriptions()).await
    }

    /// The subscription `id`, if it has a subscriber anywhere.
    pub async fn subscription(&self, id: Id) -> Result<Option<SubscriptionInfo>, RegistryError> {
        self.timed(self.registry.subscription(id)).await
    }

    /// The kept events of `topic` that `caller` may receive, oldest first (`[[history]]`; none when no rule covers
    /// it), read from the cluster's store.
    pub async fn read_history(
        &self,
        topic: &str,
        caller: crate::session::Caller,
    ) -> Result<Vec<crate::model::StoredEvent>, crate::topic::broker::HistoryError> {
        let read = self.broker.send(crate::topic::broker::ReadHistory { topic: topic.to_owned(), caller });
        read.await.map_err(|e| crate::topic::broker::HistoryError::Unavailable(e.to_string()))?
    }

    /// The sessions subscribed to the subscription `id`, on every node.
    pub async fn subscribers(&self, id: Id) -> Result<Vec<Id>, RegistryError> {
        self.timed(self.registry.subscribers(id)).await
    }

    /// Forgets a session that ended.
    pub(crate) fn unregister(&self, session: Id) {
        self.index.do_send(Unregister(session));
    }

    fn fallback<T>(&self, what: &str, result: Result<T, RegistryError>, local: impl FnOnce() -> T) -> T {
        result.unwrap_or_else(|e| {
            // Logged at debug: the registry summarises its failures in WARNs of its own.
            log::debug!("{what}: {e}; answering for node {} only", self.node);
            local()
        })
    }

    /// The session with this id, if connected (anywhere in the cluster).
    pub async fn get_client(&self, session: Id) -> Option<ClientInfo> {
        self.timed(async {
            let local = || self.local.read().get(&session).map(|e| e.info.clone());
            self.fallback("get_client", self.registry.get_client(session).await, local)
        })
        .await
    }

    /// Every session of `username`.
    pub async fn find_all_by_username(&self, username: &str) -> Vec<ClientInfo> {
        self.timed(async {
            let local = || self.local.collect(|c| c.authid == username);
            self.fallback("find_all_by_username", self.registry.find_all_by_username(username).await, local)
        })
        .await
    }

    /// Sessions of `username` among the (exact) subscribers of `topic` (Gos `findByUsername`).
    pub async fn find_by_username(&self, topic: &str, username: &str) -> Vec<ClientInfo> {
        self.timed(async {
            match self.registry.find_by_username(topic, username).await {
                Ok(found) => return found,
                Err(e) => log::debug!("find_by_username: {e}; answering for node {} only", self.node),
            }
            let subscribers = self.broker.send(Subscribers(topic.to_owned())).await.unwrap_or_default();
            let sessions: Vec<Id> = subscribers.into_iter().filter(|(_, a)| a == username).map(|(s, _)| s).collect();
            self.local.collect(|c| sessions.contains(&c.session))
        })
        .await
    }

    /// Sessions holding at least one of `roles`.
    pub async fn find_by_roles(&self, roles: &[&str]) -> Vec<ClientInfo> {
        self.timed(async {
            let local = || self.local.collect(|c| c.authroles.iter().any(|r| roles.contains(&r.as_str())));
            self.fallback("find_by_roles", self.registry.find_by_roles(roles).await, local)
        })
        .await
    }

    /// How many sessions there are (cluster-wide), or how many hold at least one of `roles`. Answered from
    /// counts kept as sessions come and go, never by reading the sessions.
    pub async fn count(&self, roles: Option<&[String]>) -> usize {
        self.timed(async {
            let local = || LocalSessions::count(&self.local, roles);
            self.fallback("count", self.registry.count(roles).await, local)
        })
        .await
    }

    /// One page of session ids (cluster-wide), in id order: up to `limit` ids greater than `after` (0 for the
    /// first page), optionally only sessions holding at least one of `roles`. A page shorter than `limit` is
    /// the last one; otherwise ask again with `after` = the page's last id.
    pub async fn session_ids(&self, roles: Option<&[String]>, after: Id, limit: usize) -> Vec<Id> {
        self.timed(async {
            let local = || self.local.page(roles, after, limit);
            self.fallback("session_ids", self.registry.page(roles, after, limit).await, local)
        })
        .await
    }

    /// Every session, optionally without anonymous ones.
    pub async fn get_all(&self, include_anonymous: bool) -> Vec<ClientInfo> {
        self.timed(async {
            let all = self.fallback("get_all", self.registry.get_all().await, || self.local.collect(|_| true));
            all.into_iter().filter(|c| include_anonymous || !c.is_anonymous()).collect()
        })
        .await
    }

    /// Announces sessions that ended without their node saying so (it died): `wamp.session.on_leave` for each,
    /// to every node.
    pub(crate) fn announce_departed(&self, departed: Vec<crate::cluster::Departed>) {
        self.index.do_send(SessionsDeparted(departed));
    }

    /// Whether `authid` has a session anywhere now (presence events add the grace: see [`meta`]).
    pub async fn is_online(&self, authid: &str) -> bool {
        !self.find_all_by_username(authid).await.is_empty()
    }

    /// Closes every session of `username` on every node; returns how many sessions were asked to close.
    pub async fn disconnect_user(&self, username: &str, disconnect: Disconnect) -> Result<usize, BackplaneError> {
        let sessions = self.find_all_by_username(username).await;
        let nodes: HashSet<&str> = sessions.iter().map(|c| c.node.as_str()).collect();
        for node in nodes {
            if node == &*self.node {
                self.disconnect_local_user(username, disconnect.clone());
            } else {
                let body = Body::DisconnectUser {
                    authid: username.to_owned(),
                    code: disconnect.code,
                    reason: disconnect.reason.clone(),
                    message: disconnect.message.clone(),
                };
                self.backplane.send_control(node, body).await?;
            }
        }
        Ok(sessions.len())
    }

    /// Closes `sessions` wherever they are (each node is asked once for all of its own); returns how many were
    /// asked to close.
    pub async fn disconnect_sessions(
        &self,
        sessions: &[ClientInfo],
        disconnect: Disconnect,
    ) -> Result<usize, BackplaneError> {
        let mut by_node: std::collections::HashMap<&str, Vec<Id>> = std::collections::HashMap::new();
        for c in sessions {
            by_node.entry(c.node.as_str()).or_default().push(c.session);
        }
        for (node, ids) in by_node {
            if node == &*self.node {
                self.disconnect_local_sessions(&ids, disconnect.clone());
            } else {
                let body = Body::DisconnectSessions {
                    sessions: ids,
                    code: disconnect.code,
                    reason: disconnect.reason.clone(),
                    message: disconnect.message.clone(),
                };
                self.backplane.send_control(node, body).await?;
            }
        }
        Ok(sessions.len())
    }

    /// Closes those of `sessions` that are on this node; returns how many were asked to close.
    pub fn disconnect_local_sessions(&self, sessions: &[Id], disconnect: Disconnect) -> usize {
        let wanted: HashSet<Id> = sessions.iter().copied().collect();
        let targets = self.local.controls(|c| wanted.contains(&c.session));
        targets.iter().for_each(|t| t.do_send(disconnect.clone()));
        targets.len()
    }

    /// Closes the sessions of `username` on this node; returns how many were asked to close.
    pub fn disconnect_local_user(&self, username: &str, disconnect: Disconnect) -> usize {
        let targets = self.local.controls(|c| c.authid == username);
        targets.iter().for_each(|t| t.do_send(disconnect.clone()));
        targets.len()
    }

    /// Closes every session of this node at once; returns how many were asked to close.
    pub fn disconnect_all(&self, disconnect: Disconnect) -> usize {
        let targets = self.local.controls(|_| true);
        targets.iter().for_each(|t| t.do_send(disconnect.clone()));
        targets.len()
    }

    /// Closes every session of this node spread evenly (jittered) over `period` (a graceful drain: see
    /// [`crate::drain`]); returns how many were asked to close, once the last one was asked.
    pub async fn disconnect_all_over(&self, disconnect: Disconnect, period: Duration) -> usize {
        let targets = self.local.controls(|_| true);
        let asked = targets.len();
        crate::drain::close_spread(targets, disconnect, period).await;
        asked
    }

    /// Number of sessions on this node.
    pub fn local_count(&self) -> usize {
        self.local.len()
    }
}
