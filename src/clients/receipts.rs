//! Delivery results: how many sockets, on how many nodes, took a message sent to a user.
//!
//! The sending node marks the publication as wanting a receipt (a flag on the wire) and waits for up to
//! `wait`; every node's topic actors report, after their fan-out, how many sockets took it — the sending node's
//! to its own tally, the others' in a `receipt` control message to the sending node. Receipts arriving after the
//! wait are ignored. A socket "took" a message when it was queued for it (not refused as a slow consumer): what
//! the server can know.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::cluster::envelope::Body;
use crate::cluster::Backplane;
use crate::model::{Publication, ReceiptSink};
use crate::wamp::Id;

/// What a delivery result counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Sockets that took the message.
    pub sockets: u64,
    /// Nodes with at least one of them.
    pub nodes: HashSet<String>,
    /// Kept in her offline inbox (`[inbox]`) until a socket of hers takes it.
    pub stored: bool,
}

/// The tallies of this node's publications waiting for receipts.
pub(crate) struct Receipts {
    node: Arc<str>,
    backplane: Arc<dyn Backplane>,
    pending: Mutex<HashMap<Id, Tally>>,
}

impl Receipts {
    pub(crate) fn new(node: Arc<str>, backplane: Arc<dyn Backplane>) -> Arc<Receipts> {
        Arc::new(Receipts { node, backplane, pending: Mutex::new(HashMap::new()) })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<Id, Tally>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts counting for a publication of this node, and marks it as wanting receipts.
    pub(crate) fn expect(&self, publication: &mut Publication) {
        self.pending().insert(publication.id, Tally::default());
        publication.receipt = true;
    }

    /// Counts this node's own deliveries.
    pub(crate) fn record_here(&self, publication: Id, sockets: u64) {
        self.record(publication, &self.node, sockets)
    }

    /// Counts `sockets` of `node` for a pending publication (one that is no longer waited for is ignored).
    pub(crate) fn record(&self, publication: Id, node: &str, sockets: u64) {
        if sockets == 0 {
            return;
        }
        if let Some(tally) = self.pending().get_mut(&publication) {
            tally.sockets += sockets;
            tally.nodes.insert(node.to_owned());
        }
    }

    /// Ends the wait for a publication: its tally.
    pub(crate) fn finish(&self, publication: Id) -> Tally {
        self.pending().remove(&publication).unwrap_or_default()
    }

    /// Reports this node's deliveries of another node's publication back to its origin.
    pub(crate) fn report(&self, origin: &str, publication: Id, sockets: u64) {
        let (backplane, origin) = (self.backplane.clone(), origin.to_owned());
        actix::spawn(async move {
            // A lost receipt only lowers the count the sender reports.
            let _ = backplane.send_control(&origin, Body::Receipt { publication, sockets }).await;
        });
    }
}

/// Where a node's topics report the sockets that took `publication`: receipts (to this node's tally when `local`,
/// else to its origin) and its removal from the user's offline inbox. `None` when nobody needs to know.
pub(crate) fn sink(
    receipts: &Arc<Receipts>,
    inbox: Option<&Arc<dyn crate::cluster::Inbox>>,
    publication: &Publication,
    local: bool,
) -> Option<ReceiptSink> {
    let receipt = match (publication.receipt, local) {
        (false, _) => None,
        (true, true) => Some(None),
        (true, false) => Some(Some(publication.origin.clone()?)),
    };
    let inbox = match (inbox, publication.inboxed, publication.filters.eligible_authid.as_deref()) {
        (Some(store), true, Some([authid])) => Some((store.clone(), authid.clone())),
        _ => None,
    };
    if receipt.is_none() && inbox.is_none() {
        return None;
    }
    let receipts = receipts.clone();
    Some(ReceiptSink(Arc::new(move |id, sockets| {
        match &receipt {
            Some(None) => receipts.record_here(id, sockets),
            Some(Some(origin)) => receipts.report(origin, id, sockets),
            None => {}
        }
        if let Some((store, authid)) = &inbox {
            let (store, authid) = (store.clone(), authid.clone());
            actix::spawn(async move {
                // Taken by a socket of hers: not hers to take again (a failure leaves it for her next subscribe).
                let _ = store.taken(&authid, id).await;
            });
        }
    })))
}
