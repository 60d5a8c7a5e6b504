//! The in-process backplane: one node alone (embedded mode), or several nodes of one process sharing a
//! [`MemoryCluster`]. Publications travel between them in the same envelope encoding the Redis backplane uses,
//! so in-process cluster tests exercise the wire format too.

use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use super::envelope::{Body, Envelope};
use super::{Backplane, BackplaneError, BackplaneState, ClusterEvents, Receiver};
use crate::topic::{Publication, TopicKey};

/// The nodes of one process that form a cluster; cheap to clone. A node built without one has its own.
#[derive(Clone, Default)]
pub struct MemoryCluster {
    nodes: Arc<Mutex<Vec<Member>>>,
}

/// A node of a [`MemoryCluster`] that has started receiving.
struct Member {
    id: String,
    events: Arc<dyn ClusterEvents>,
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

    /// Node `node`'s backplane in this cluster, and its receiving side (the node joins when that starts).
    pub fn join(&self, node: &str) -> (MemoryBackplane, Receiver) {
        let (cluster, id) = (self.clone(), node.to_owned());
        let receiver = Receiver::new(move |events| {
            let mut nodes = cluster.nodes.lock().unwrap_or_else(|e| e.into_inner());
            nodes.retain(|m| m.id != id);
            nodes.push(Member { id, events });
        });
        (MemoryBackplane { cluster: self.clone(), node: node.to_owned() }, receiver)
    }

    /// Removes node `node` (it stopped): nothing reaches it any more.
    pub fn leave(&self, node: &str) {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner()).retain(|m| m.id != node);
    }

    /// The members, copied out so no lock is held while they handle a message.
    fn members(&self) -> Vec<(String, Arc<dyn ClusterEvents>)> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.iter().map(|m| (m.id.clone(), m.events.clone())).collect()
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

    fn send_control<'a>(&'a self, node: &'a str, body: Body) -> BoxFuture<'a, Result<(), BackplaneError>> {
        if let Some((_, events)) = self.cluster.members().into_iter().find(|(id, _)| id == node) {
            if let Body::DisconnectUser { authid, code, reason, message } = body {
                events.disconnect_user(&authid, code, reason, message);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::Payload;
    use crate::wamp::filter::Filters;

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
    }

    #[actix_web::test]
    async fn publications_reach_every_other_member_and_control_messages_their_target() {
        let cluster = MemoryCluster::new();
        let (a, b, c) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()), Arc::new(Recorder::default()));
        let (on_a, start_a) = cluster.join("a");
        assert!(!on_a.reaches_other_nodes(), "alone until others start receiving");
        assert_eq!(on_a.state(), BackplaneState::Disabled);
        start_a.start(a.clone());
        let (on_b, start_b) = cluster.join("b");
        start_b.start(b.clone());
        let (_, start_c) = cluster.join("c");
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
