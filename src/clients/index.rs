//! The node's own sessions: what lookups read, and what only the [`ClientIndex`](super::actor::ClientIndex)
//! actor writes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use actix::prelude::*;

use crate::cluster::{LocalSessions, Records, Subscription};
use crate::model::{ClientInfo, Disconnect};
use crate::wamp::Id;

/// One session of this node: who, how to close it, and its subscriptions (record → id).
pub(super) struct LocalEntry {
    pub(super) info: ClientInfo,
    pub(super) control: Recipient<Disconnect>,
    pub(super) topics: Records,
}

/// The sessions of this node.
#[derive(Clone, Default)]
pub struct LocalIndex {
    /// Boxed: the table then holds 16 bytes per slot instead of a whole entry, and a hash table keeps up to
    /// twice as many slots as sessions.
    entries: Arc<RwLock<HashMap<Id, Box<LocalEntry>>>>,
    /// Sessions per distinct role list, kept beside `entries` so counting by role reads no session.
    by_roles: Arc<std::sync::Mutex<HashMap<Vec<String>, usize>>>,
}

impl LocalIndex {
    // The lock is only held for map operations that cannot panic, so it is never poisoned in practice;
    // recovering the guard keeps the index usable even if that changes.
    pub(super) fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Id, Box<LocalEntry>>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Id, Box<LocalEntry>>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn collect(&self, keep: impl Fn(&ClientInfo) -> bool) -> Vec<ClientInfo> {
        self.read().values().filter(|e| keep(&e.info)).map(|e| e.info.clone()).collect()
    }

    pub(super) fn controls(&self, keep: impl Fn(&ClientInfo) -> bool) -> Vec<Recipient<Disconnect>> {
        self.read().values().filter(|e| keep(&e.info)).map(|e| e.control.clone()).collect()
    }

    /// Moves one session between role lists in the counts (`from` left, `to` joined).
    pub(super) fn recount(&self, from: Option<&[String]>, to: Option<&[String]>) {
        let mut counts = self.by_roles.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(roles) = from {
            if let Some(n) = counts.get_mut(roles) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(roles);
                }
            }
        }
        if let Some(roles) = to {
            *counts.entry(roles.to_vec()).or_default() += 1;
        }
    }

    /// Sessions holding at least one of `roles`, from the counts.
    pub(super) fn count_with_roles(&self, roles: &[String]) -> usize {
        let counts = self.by_roles.lock().unwrap_or_else(|e| e.into_inner());
        counts.iter().filter(|(held, _)| held.iter().any(|r| roles.contains(r))).map(|(_, n)| n).sum()
    }
}

impl LocalSessions for LocalIndex {
    fn snapshot(&self) -> Vec<(ClientInfo, Vec<Subscription>)> {
        let subscriptions = |e: &LocalEntry| {
            e.topics.iter().map(|(record, id)| Subscription { id: *id, record: record.clone() }).collect()
        };
        self.read().values().map(|e| (e.info.clone(), subscriptions(e))).collect()
    }

    fn matching(&self, keep: &dyn Fn(&ClientInfo, &Records) -> bool) -> Vec<ClientInfo> {
        self.read().values().filter(|e| keep(&e.info, &e.topics)).map(|e| e.info.clone()).collect()
    }

    fn count(&self, roles: Option<&[String]>) -> usize {
        match roles {
            None => self.len(),
            Some(roles) => self.count_with_roles(roles),
        }
    }

    fn page(&self, roles: Option<&[String]>, after: Id, limit: usize) -> Vec<Id> {
        let holds = |c: &ClientInfo| roles.is_none_or(|roles| c.authroles.iter().any(|r| roles.contains(r)));
        let mut ids: Vec<Id> =
            self.read().values().filter(|e| e.info.session > after && holds(&e.info)).map(|e| e.info.session).collect();
        ids.sort_unstable();
        ids.truncate(limit);
        ids
    }
}
