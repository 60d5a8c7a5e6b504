//! Node-wide caps on sockets: how many WebSockets the node holds ([`Caps::try_slot`], `server.max_connections`)
//! and how many one user holds (`session.max_sockets_per_user`).
//!
//! A [`Slot`] is taken in the `/ws` handler before the upgrade and travels with the connection actor, so the
//! count is exact whichever socket path runs it and is released however the actor ends. The per-user lists
//! hold only logged-in users' sockets (an anonymous socket is its own user), oldest first, so "close the
//! oldest" is O(1). This module owns counts only; closing a socket is the connection's job.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use actix::Recipient;

use crate::model::Disconnect;
use crate::wamp::Id;

/// Each logged-in user's sockets on this node, oldest first.
type UserSockets = HashMap<String, VecDeque<(Id, Recipient<Disconnect>)>>;

/// The caps of one node.
#[derive(Debug)]
pub(crate) struct Caps {
    open: AtomicUsize,
    max_connections: usize,
    max_per_user: usize,
    users: Mutex<UserSockets>,
}

/// One WebSocket counted against `server.max_connections` until dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Caps>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Caps {
    /// Caps of `max_connections` sockets per node and `max_per_user` per logged-in user.
    pub(crate) fn new(max_connections: usize, max_per_user: usize) -> Arc<Caps> {
        Arc::new(Caps { open: AtomicUsize::new(0), max_connections, max_per_user, users: Mutex::default() })
    }

    // Only map operations run under the lock; recover the guard rather than panic.
    fn users(&self) -> MutexGuard<'_, UserSockets> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for one more socket, or `None` when the node is full.
    pub(crate) fn try_slot(self: &Arc<Self>) -> Option<Slot> {
        let taken = self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
            (open < self.max_connections).then_some(open + 1)
        });
        taken.ok().map(|_| Slot(self.clone()))
    }

    /// Whether `authid` already holds as many sockets as a user may.
    pub(crate) fn user_full(&self, authid: &str) -> bool {
        self.users().get(authid).is_some_and(|sockets| sockets.len() >= self.max_per_user)
    }

    /// Counts `session` as one of `authid`'s sockets; returns the user's oldest sockets to close if this makes
    /// too many.
    pub(crate) fn join_user(
        &self,
        authid: &str,
        session: Id,
        control: Recipient<Disconnect>,
    ) -> Vec<Recipient<Disconnect>> {
        let mut users = self.users();
        let sockets = users.entry(authid.to_owned()).or_default();
        sockets.push_back((session, control));
        let excess = sockets.len().saturating_sub(self.max_per_user);
        sockets.drain(..excess).map(|(_, control)| control).collect()
    }

    /// Forgets `session` as one of `authid`'s sockets.
    pub(crate) fn leave_user(&self, authid: &str, session: Id) {
        let mut users = self.users();
        if let Some(sockets) = users.get_mut(authid) {
            sockets.retain(|(s, _)| *s != session);
            if sockets.is_empty() {
                users.remove(authid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stop_at_the_cap_and_return_when_dropped() {
        let caps = Caps::new(2, 1);
        let a = caps.try_slot().unwrap();
        let _b = caps.try_slot().unwrap();
        assert!(caps.try_slot().is_none());
        drop(a);
        assert!(caps.try_slot().is_some());
    }
}
