//! The in-process cluster: one node alone (embedded mode), or several nodes of one process sharing a
//! [`MemoryCluster`]. Publications travel between them in the same envelope encoding the Redis backplane uses,
//! so in-process cluster tests exercise the wire format too. The registry keeps no copy of anything: each
//! node's client index owns its sessions, and a lookup reads every member's ([`LocalSessions`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use super::envelope::{Body, Envelope};
use super::{
    Backplane, BackplaneError, BackplaneState, ClusterEvents, LocalSessions, Membership, Receiver, Records, Registry,
    RegistryError, Write,
};
use crate::model::ClientInfo;
use crate::model::{Keep, Publication, StoredEvent, SubscriptionInfo, TopicKey};
use crate::wamp::Id;

mod stores;

use stores::{subscribe, unsubscribe, InboxMessage, Kept, Retained, Shared, Table};

/// The nodes of one process that form a cluster; cheap to clone. A node built without one has its own.
#[derive(Clone, Default)]
pub struct MemoryCluster {
    nodes: Arc<Mutex<Vec<Member>>>,
    /// Users marked online (presence), shared by the nodes.
    online: Arc<Mutex<std::collections::HashSet<String>>>,
    /// The cluster's subscriptions by id, each with its subscribers and their nodes.
    subscriptions: Arc<Mutex<HashMap<Id, Shared>>>,
    /// Retained events by topic: when each expires, its wire envelope, and its place in the order of retention.
    retained: Arc<Mutex<Retained>>,
    /// Kept events by topic (event history).
    history: Arc<Mutex<Kept>>,
    /// Users' offline inboxes: per user, `(kept at ms, publication id, topic, wire envelope)`, oldest first.
    inboxes: Arc<Mutex<HashMap<String, std::collections::VecDeque<InboxMessage>>>>,
}

/// A node of a [`MemoryCluster`]: its sessions from the moment it joins, its events once it receives.
struct Member {
    id: String,
    sessions: Arc<dyn LocalSessions>,
    events: Option<Arc<dyn ClusterEvents>>,
}

impl std::fmt::Debug for MemoryCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.members().iter().map(|(id, _)| id.clone()).collect();
        f.debug_struct("MemoryCluster").field("nodes", &ids).finish()
    }
}

impl MemoryCluster {
    /// An empty cluster.
    pub fn new() -> MemoryCluster {
        MemoryCluster::default()
    }

    /// Node `node` joins with its sessions: its backplane, its registry, and the backplane's receiving side
    /// (messages reach the node once that starts). A node id already present is replaced.
    pub fn join(&self, node: &str, sessions: Arc<dyn LocalSessions>) -> Membership {
        {
            let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
            nodes.retain(|m| m.id != node);
            nodes.push(Member { id: node.to_owned(), sessions, events: None });
        }
        let (cluster, id) = (self.clone(), node.to_owned());
        let receiver = Receiver::new(move |events| {
            let mut nodes = cluster.nodes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(member) = nodes.iter_mut().find(|m| m.id == id) {
                member.events = Some(events);
            }
        });
        Membership {
            backplane: Arc::new(MemoryBackplane { cluster: self.clone(), node: node.to_owned() }),
            registry: Arc::new(MemoryRegistry { cluster: self.clone(), node: node.to_owned() }),
            retention: Arc::new(MemoryRegistry { cluster: self.clone(), node: node.to_owned() }),
            inbox: Arc::new(MemoryRegistry { cluster: self.clone(), node: node.to_owned() }),
            receiver,
        }
    }

    /// Removes node `node` (it stopped): nothing reaches it any more, and its sessions subscribe to nothing.
    pub fn leave(&self, node: &str) {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner()).retain(|m| m.id != node);
        let mut table = self.table();
        table.retain(|_, shared| {
            shared.sessions.retain(|_, n| n != node);
            !shared.sessions.is_empty()
        });
    }

    fn table(&self) -> Table<'_> {
        self.subscriptions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The members that receive, copied out so no lock is held while they handle a message.
    fn members(&self) -> Vec<(String, Arc<dyn ClusterEvents>)> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.iter().filter_map(|m| Some((m.id.clone(), m.events.clone()?))).collect()
    }

    /// Every member's sessions, copied out likewise.
    fn sessions(&self) -> Vec<Arc<dyn LocalSessions>> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.iter().map(|m| m.sessions.clone()).collect()
    }

    /// The sessions of every member that `keep` accepts.
    fn matching(&self, keep: &dyn Fn(&ClientInfo, &Records) -> bool) -> Vec<ClientInfo> {
        self.sessions().iter().flat_map(|s| s.matching(keep)).collect()
    }
}

/// One node's view of a [`MemoryCluster`].
#[derive(Debug)]
pub struct MemoryBackplane {
    cluster: MemoryCluster,
    node: String,
}

impl Backplane for MemoryBackplane {
    // Every node receives every publication; a node without local subscribers of the topic delivers nothing.
    fn want(&self, _: &TopicKey) -> Option<oneshot::Receiver<()>> {
        None
    }

    fn unwant(&self, _: &TopicKey) {}

    fn want_user(&self, _: &str) -> Option<oneshot::Receiver<()>> {
        None
    }

    fn unwant_user(&self, _: &str) {}

    fn reaches_other_nodes(&self) -> bool {
        self.cluster.members().iter().any(|(id, _)| *id != self.node)
    }

    fn publish<'a>(&'a self, publication: &'a Publication) -> BoxFuture<'a, Result<(), BackplaneError>> {
        let bytes = Envelope::encode_publication(&self.node, publication);
        for (id, events) in self.cluster.members() {
            if id == self.node {
                continue;
            }
            let received = Envelope::decode(&bytes).ok().and_then(Envelope::into_publication);
            match received {
                Some(p) => events.publication(p),
                None => return Box::pin(async { Err(BackplaneError::Publish("unencodable publication".into())) }),
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn publish_kept<'a>(
        &'a self,
        publication: &'a Publication,
        keep: &'a Keep,
    ) -> BoxFuture<'a, Result<(), BackplaneError>> {
        let envelope = Envelope::encode_publication(&self.node, publication);
        self.cluster.history.lock().unwrap_or_else(|e| e.into_inner()).append(&publication.topic, envelope, keep);
        self.publish(publication)
    }

    fn history<'a>(
        &'a self,
        topic: &'a str,
        ttl: std::time::Duration,
    ) -> BoxFuture<'a, Result<Vec<StoredEvent>, BackplaneError>> {
        let kept = self.cluster.history.lock().unwrap_or_else(|e| e.into_inner()).read(topic, ttl);
        let events = kept
            .into_iter()
            .filter_map(|(timestamp_ms, bytes)| {
                let publication = Envelope::decode(&bytes).ok()?.into_publication()?;
                Some(StoredEvent { publication, timestamp_ms })
            })
            .collect();
        Box::pin(async { Ok(events) })
    }

    fn send_control<'a>(&'a self, node: &'a str, body: Body) -> BoxFuture<'a, Result<(), BackplaneError>> {
        if let Some((_, events)) = self.cluster.members().into_iter().find(|(id, _)| id == node) {
            match body {
                Body::DisconnectUser { authid, code, reason, message } => {
                    events.disconnect_user(&authid, code, reason, message)
                }
                Body::DisconnectSessions { sessions, code, reason, message } => {
                    events.disconnect_sessions(&sessions, code, reason, message)
                }
                Body::Receipt { publication, sockets } => events.receipt(publication, &self.node, sockets),
                _ => {}
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn last_error(&self) -> Option<String> {
        None
    }

    fn state(&self) -> BackplaneState {
        if self.reaches_other_nodes() {
            BackplaneState::Up
        } else {
            BackplaneState::Disabled
        }
    }
}

/// The registry of a [`MemoryCluster`]: lookups read every member's sessions; writes need no copy.
#[derive(Debug)]
pub struct MemoryRegistry {
    cluster: MemoryCluster,
    node: String,
}

/// An answer that is ready now, as the registry trait returns it.
fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, Result<T, RegistryError>> {
    Box::pin(std::future::ready(Ok(value)))
}

impl Registry for MemoryRegistry {
    // Sessions are read from the nodes themselves; only the subscription table is kept here.
    fn write(&self, write: Write) {
        let mut table = self.cluster.table();
        let (changes, answers) = match write {
            Write::Subscribed(session, s, changes) => (changes, vec![subscribe(&mut table, &self.node, session, &s)]),
            Write::Unsubscribed(session, s, changes) => (changes, vec![unsubscribe(&mut table, session, s.id)]),
            Write::Unregister(info, subscriptions, changes) => {
                (changes, subscriptions.iter().map(|s| unsubscribe(&mut table, info.session, s.id)).collect())
            }
            _ => return,
        };
        if let Some(changes) = changes {
            let _ = changes.send(answers);
        }
    }

    fn confirms_writes(&self) -> bool {
        false
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn get_client(&self, session: Id) -> BoxFuture<'_, Result<Option<ClientInfo>, RegistryError>> {
        ready(self.cluster.matching(&|c, _| c.session == session).into_iter().next())
    }

    fn find_all_by_username<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<Vec<ClientInfo>, RegistryError>> {
        ready(self.cluster.matching(&|c, _| c.authid == username))
    }

    fn find_by_username<'a>(
        &'a self,
        topic: &'a str,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ClientInfo>, RegistryError>> {
        ready(self.cluster.matching(&|c, topics| c.authid == username && topics.contains_key(topic)))
    }

    fn find_by_roles<'a>(&'a self, roles: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<ClientInfo>, RegistryError>> {
        ready(self.cluster.matching(&|c, _| c.authroles.iter().any(|r| roles.contains(&r.as_str()))))
    }

    fn count<'a>(&'a self, roles: Option<&'a [String]>) -> BoxFuture<'a, Result<usize, RegistryError>> {
        ready(self.cluster.sessions().iter().map(|s| s.count(roles)).sum())
    }

    fn page<'a>(
        &'a self,
        roles: Option<&'a [String]>,
        after: Id,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Id>, RegistryError>> {
        let mut ids: Vec<Id> = self.cluster.sessions().iter().flat_map(|s| s.page(roles, after, limit)).collect();
        ids.sort_unstable();
        ids.truncate(limit);
        ready(ids)
    }

    fn get_all(&self) -> BoxFuture<'_, Result<Vec<ClientInfo>, RegistryError>> {
        ready(self.cluster.matching(&|_, _| true))
    }

    fn mark_online<'a>(&'a self, authid: &'a str) -> BoxFuture<'a, Result<bool, RegistryError>> {
        let mut online = self.cluster.online.lock().unwrap_or_else(|e| e.into_inner());
        ready(online.insert(authid.to_owned()))
    }

    fn mark_offline<'a>(&'a self, authid: &'a str) -> BoxFuture<'a, Result<bool, RegistryError>> {
        if !self.cluster.matching(&|c, _| c.authid == authid).is_empty() {
            return ready(false);
        }
        let mut online = self.cluster.online.lock().unwrap_or_else(|e| e.into_inner());
        ready(online.remove(authid))
    }

    fn deregister(&self) -> BoxFuture<'_, Result<(), RegistryError>> {
        self.cluster.leave(&self.node);
        ready(())
    }

    fn subscriptions(&self) -> BoxFuture<'_, Result<Vec<SubscriptionInfo>, RegistryError>> {
        ready(self.cluster.table().values().map(|s| s.info.clone()).collect())
    }

    fn subscription(&self, id: Id) -> BoxFuture<'_, Result<Option<SubscriptionInfo>, RegistryError>> {
        ready(self.cluster.table().get(&id).map(|s| s.info.clone()))
    }

    fn subscribers(&self, id: Id) -> BoxFuture<'_, Result<Vec<Id>, RegistryError>> {
        let mut ids: Vec<Id> =
            self.cluster.table().get(&id).map(|s| s.sessions.keys().copied().collect()).unwrap_or_default();
        ids.sort_unstable();
        ready(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Payload;
    use crate::wamp::filter::Filters;

    /// A node without sessions.
    struct NoSessions;

    impl LocalSessions for NoSessions {
        fn snapshot(&self) -> Vec<(ClientInfo, Vec<crate::cluster::Subscription>)> {
            Vec::new()
        }

        fn matching(&self, _: &dyn Fn(&ClientInfo, &Records) -> bool) -> Vec<ClientInfo> {
            Vec::new()
        }

        fn count(&self, _: Option<&[String]>) -> usize {
            0
        }

        fn page(&self, _: Option<&[String]>, _: Id, _: usize) -> Vec<Id> {
            Vec::new()
        }
    }

    /// Records what a node received.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl ClusterEvents for Recorder {
        fn publication(&self, p: Publication) {
            self.0.lock().unwrap().push(format!("{} {} {}", p.topic, p.id, p.v1_event()));
        }

        fn disconnect_user(&self, authid: &str, code: u16, reason: String, _: String) {
            self.0.lock().unwrap().push(format!("disconnect {authid} {code} {reason}"));
        }

        fn disconnect_sessions(&self, sessions: &[Id], code: u16, _: String, _: String) {
            self.0.lock().unwrap().push(format!("kill {sessions:?} {code}"));
        }

        fn receipt(&self, publication: Id, node: &str, sockets: u64) {
            self.0.lock().unwrap().push(format!("receipt {publication} {node} {sockets}"));
        }

        fn sessions_departed(&self, departed: Vec<crate::cluster::Departed>) {
            self.0.lock().unwrap().push(format!("departed {}", departed.len()));
        }
    }

    #[actix_web::test]
    async fn publications_reach_every_other_member_and_control_messages_their_target() {
        let cluster = MemoryCluster::new();
        let (a, b, c) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()), Arc::new(Recorder::default()));
        let Membership { backplane: on_a, receiver: start_a, .. } = cluster.join("a", Arc::new(NoSessions));
        assert!(!on_a.reaches_other_nodes(), "alone until others start receiving");
        assert_eq!(on_a.state(), BackplaneState::Disabled);
        start_a.start(a.clone());
        let Membership { backplane: on_b, receiver: start_b, .. } = cluster.join("b", Arc::new(NoSessions));
        start_b.start(b.clone());
        let Membership { receiver: start_c, .. } = cluster.join("c", Arc::new(NoSessions));
        start_c.start(c.clone());
        assert!(on_a.reaches_other_nodes());
        assert_eq!(on_a.state(), BackplaneState::Up);

        let p = Publication::new("news".into(), Payload::single(serde_json::json!("hi")), Filters::default());
        on_a.publish(&p).await.unwrap();
        let seen = format!("news {} \"hi\"", p.id);
        assert!(a.0.lock().unwrap().is_empty(), "not to itself");
        assert_eq!(*b.0.lock().unwrap(), std::slice::from_ref(&seen));
        assert_eq!(*c.0.lock().unwrap(), [seen]);

        let body = Body::DisconnectUser { authid: "alice".into(), code: 1008, reason: "r".into(), message: "m".into() };
        on_b.send_control("c", body).await.unwrap();
        assert_eq!(c.0.lock().unwrap().last().unwrap(), "disconnect alice 1008 r");
        assert_eq!(a.0.lock().unwrap().len(), 0);

        cluster.leave("c");
        on_a.publish(&p).await.unwrap();
        assert_eq!(c.0.lock().unwrap().len(), 2, "a node that left receives nothing");
        assert_eq!(b.0.lock().unwrap().len(), 2);
    }
}
