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
    pub(crate) fn expect(self: &Arc<Self>, publication: &mut Publication) {
        self.pending().insert(publication.id, Tally::default());
        publication.receipt = true;
        let receipts = self.clone();
        publication.set_receipt_sink(ReceiptSink(Arc::new(move |id, sockets| {
            let node = receipts.node.clone();
            receipts.record(id, &node, sockets)
        })));
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

    /// Gives a publication from another node that wants a receipt the sink that reports this node's deliveries
    /// back to its origin.
    pub(crate) fn report_to_origin(&self, publication: &Publication) {
        let Some(origin) = publication.origin.clone().filter(|_| publication.receipt) else { return };
        let backplane = self.backplane.clone();
        publication.set_receipt_sink(ReceiptSink(Arc::new(move |id, sockets| {
            let (backplane, origin) = (backplane.clone(), origin.clone());
            actix::spawn(async move {
                // A lost receipt only lowers the count the sender reports.
                let _ = backplane.send_control(&origin, Body::Receipt { publication: id, sockets }).await;
            });
        })));
    }
}
