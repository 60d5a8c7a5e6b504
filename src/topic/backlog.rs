//! The publication backlog: how many bytes of publications this node holds between accepting them and
//! handing their EVENT frames to subscribers' outbound queues, bounded so that no publisher can make the node
//! buffer without limit.
//!
//! actix mailboxes are unbounded: a publisher faster than the broker and topic actors would otherwise queue
//! publications in their mailboxes until memory runs out. Every publication is *charged* here while it is alive
//! in that pipeline — from the connection that accepted it, through the broker's mailbox and each topic
//! actor's, to the last [`Fanout`](super::actor::Fanout) handled — and the charge is released when the last
//! reference to it drops. A client's PUBLISH is admitted only while the node's backlog is under
//! `server.publish_backlog_bytes` and that session's own share is under a fraction of it
//! ([`PUBLISHER_SHARE`]); otherwise it is refused with `switchboard.error.overloaded`.
//!
//! Why refuse rather than stop reading the publisher's socket: a paused socket also stops the publisher's
//! SUBSCRIBEs, CALLs and pongs (one reader per socket), needs the transport's cooperation on both socket paths,
//! and tells the client nothing; a refusal is immediate, visible (an acknowledged PUBLISH gets the ERROR), costs
//! nothing to hold, and a well-behaved client can back off and retry. Publications that cannot be refused
//! (server-side publishes from the library, publications from other nodes) are charged but never refused, so
//! local clients feel the node's real load.
//!
//! This module must not know connections or sockets: it counts bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::gauge::Gauge;

use super::Publication;
use crate::wamp::Id;

/// One session may hold at most 1/`PUBLISHER_SHARE` of the node's backlog: a single flooding client is refused
/// long before the node is, so other publishers keep publishing.
pub const PUBLISHER_SHARE: usize = 8;

/// What one queued [`Fanout`](super::actor::Fanout) message costs (the actix envelope, the `Arc` and the
/// mailbox slot), charged per topic actor a publication reaches: a publication matching thousands of pattern
/// subscriptions queues thousands of messages.
pub const FANOUT_MESSAGE_BYTES: usize = 96;

/// A publication was refused because too much is queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Overloaded {
    /// The node's backlog is full.
    #[error("the node is overloaded: {queued} bytes of publications queued (limit {limit}); retry later")]
    Node {
        /// Bytes queued.
        queued: usize,
        /// `server.publish_backlog_bytes`.
        limit: usize,
    },
    /// This publisher's share of the backlog is full.
    #[error("publishing too fast: {queued} bytes of this session's publications queued (limit {limit})")]
    Publisher {
        /// Bytes of this publisher's publications queued.
        queued: usize,
        /// Its share of `server.publish_backlog_bytes`.
        limit: usize,
    },
}

/// The node-wide backlog counter (one per node, shared by connections and the broker).
#[derive(Debug)]
pub struct Backlog {
    limit: usize,
    queued: AtomicUsize,
    /// Bytes queued per publishing session (entries removed at zero).
    by_publisher: Mutex<HashMap<Id, usize>>,
    /// Mirrors `queued` for `/metrics`.
    gauge: Gauge,
}

/// The bytes one publication holds in the backlog, returned when the publication is dropped.
#[derive(Debug)]
pub(super) struct Charge {
    backlog: Arc<Backlog>,
    publisher: Option<Id>,
    bytes: AtomicUsize,
}

impl Backlog {
    /// A backlog of at most `limit` bytes, reporting its level to `gauge`.
    pub fn new(limit: usize, gauge: Gauge) -> Arc<Backlog> {
        Arc::new(Backlog { limit, queued: AtomicUsize::new(0), by_publisher: Mutex::new(HashMap::new()), gauge })
    }

    /// Bytes queued now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    // Only map updates run under the lock and none can panic; recover the guard rather than panic anyway.
    fn publishers(&self) -> MutexGuard<'_, HashMap<Id, usize>> {
        self.by_publisher.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a client's publication and charges it, or refuses it when the node's backlog or the publisher's
    /// share is already full. A publication is admitted while the level is *under* the limit, so one message
    /// of any accepted size always passes an empty backlog; the overshoot is at most one publication per
    /// concurrent publisher.
    pub fn admit(self: &Arc<Self>, publication: &Publication) -> Result<(), Overloaded> {
        let queued = self.queued();
        if queued >= self.limit {
            return Err(Overloaded::Node { queued, limit: self.limit });
        }
        let publisher = publication.publisher.as_ref().map(|p| p.session);
        if let Some(session) = publisher {
            let share = self.limit / PUBLISHER_SHARE;
            let mine = self.publishers().get(&session).copied().unwrap_or(0);
            if mine >= share {
                return Err(Overloaded::Publisher { queued: mine, limit: share });
            }
        }
        self.charge_as(publication, publisher, 0);
        Ok(())
    }

    /// Charges a publication that is not refused (library publishes, publications from other nodes), plus
    /// `fanouts` queued [`Fanout`](super::actor::Fanout) messages. A publication already charged only gets the
    /// messages added.
    pub fn charge(self: &Arc<Self>, publication: &Publication, fanouts: usize) {
        self.charge_as(publication, None, fanouts);
    }

    fn charge_as(self: &Arc<Self>, publication: &Publication, publisher: Option<Id>, fanouts: usize) {
        let extra = fanouts * FANOUT_MESSAGE_BYTES;
        match publication.charge::<Charge>() {
            Some(charge) => {
                charge.bytes.fetch_add(extra, Ordering::AcqRel);
                self.add(charge.publisher, extra);
            }
            None => {
                let bytes = publication.approx_bytes() + extra;
                let charge = Charge { backlog: self.clone(), publisher, bytes: AtomicUsize::new(bytes) };
                if publication.attach_charge(Box::new(charge)) {
                    self.add(publisher, bytes);
                } else {
                    // Charged concurrently by someone else (cannot happen today: a publication is charged by
                    // whoever created it, before sharing it); the loser adds its messages to that charge.
                    self.charge_as(publication, publisher, fanouts);
                }
            }
        }
    }

    fn add(&self, publisher: Option<Id>, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let now = self.queued.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.gauge.set(now as i64);
        if let Some(session) = publisher {
            *self.publishers().entry(session).or_insert(0) += bytes;
        }
    }

    fn release(&self, publisher: Option<Id>, bytes: usize) {
        let now = self.queued.fetch_sub(bytes, Ordering::AcqRel) - bytes;
        self.gauge.set(now as i64);
        if let Some(session) = publisher {
            let mut publishers = self.publishers();
            if let Some(mine) = publishers.get_mut(&session) {
                *mine -= bytes.min(*mine);
                if *mine == 0 {
                    publishers.remove(&session);
                }
            }
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.backlog.release(self.publisher, *self.bytes.get_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::{Payload, Publisher};
    use crate::wamp::filter::Filters;

    fn publication(from: Option<Id>, names: usize) -> Publication {
        let filters =
            Filters { exclude_authid: (0..names).map(|i| format!("user-{i}")).collect(), ..Default::default() };
        let p = Publication::new("chat".into(), Payload::single("hello".into()), filters);
        match from {
            Some(session) => {
                let publisher = Publisher { session, authid: "a".into(), authrole: "anonymous".into() };
                p.with_publisher(publisher, false, false)
            }
            None => p,
        }
    }

    #[test]
    fn a_charge_is_returned_when_the_publication_is_dropped() {
        let backlog = Backlog::new(1 << 20, Gauge::default());
        let p = Arc::new(publication(Some(1), 10));
        backlog.admit(&p).unwrap();
        let charged = backlog.queued();
        assert!(charged >= p.approx_bytes() && charged > 10 * "user-0".len());
        backlog.charge(&p, 3);
        assert_eq!(backlog.queued(), charged + 3 * FANOUT_MESSAGE_BYTES);
        let shared = p.clone();
        drop(p);
        assert!(backlog.queued() > 0, "still referenced");
        drop(shared);
        assert_eq!(backlog.queued(), 0);
        assert!(backlog.publishers().is_empty());
    }

    #[test]
    fn a_full_backlog_refuses_clients_but_still_charges_what_cannot_be_refused() {
        let one = publication(None, 100).approx_bytes();
        let backlog = Backlog::new(one, Gauge::default());
        let held = publication(None, 100);
        backlog.charge(&held, 0);
        assert_eq!(backlog.queued(), one);
        let refused = backlog.admit(&publication(Some(1), 0)).unwrap_err();
        assert!(matches!(refused, Overloaded::Node { .. }), "{refused}");
        let server_side = publication(None, 0);
        backlog.charge(&server_side, 1);
        assert!(backlog.queued() > one);
        drop((held, server_side));
        assert_eq!(backlog.queued(), 0);
        assert!(backlog.admit(&publication(Some(1), 0)).is_ok());
    }

    #[test]
    fn one_publisher_is_refused_at_its_share_while_others_still_publish() {
        let unit = publication(Some(1), 50).approx_bytes();
        let backlog = Backlog::new(unit * PUBLISHER_SHARE * 4, Gauge::default());
        let mut held = Vec::new();
        let refusal = loop {
            let p = publication(Some(1), 50);
            match backlog.admit(&p) {
                Ok(()) => held.push(p),
                Err(e) => break e,
            }
            assert!(held.len() <= 8, "the share bounds one publisher");
        };
        assert!(matches!(refusal, Overloaded::Publisher { .. }), "{refusal}");
        let other = publication(Some(2), 50);
        assert_eq!(backlog.admit(&other), Ok(()));
        held.clear();
        assert!(backlog.admit(&publication(Some(1), 50)).is_ok());
    }
}
