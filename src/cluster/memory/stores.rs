//! What a [`MemoryCluster`](super::MemoryCluster) keeps besides its members' sessions: the subscription table,
//! retained events, kept events (history) and users' offline inboxes — each bounded — and the memory
//! implementations of [`Inbox`] and [`Retention`].

use std::collections::HashMap;

use futures_util::future::BoxFuture;

use super::{ready, MemoryRegistry};
use crate::cluster::envelope::Envelope;
use crate::cluster::{Inbox, RegistryError, Retention, Subscription};
use crate::model::{now_millis, Publication, SubscriptionInfo, TopicKey};
use crate::wamp::Id;

/// One message of a user's offline inbox.
pub(super) struct InboxMessage {
    at: u64,
    id: Id,
    topic: String,
    envelope: Vec<u8>,
}

/// Most topics whose history a [`MemoryCluster`] keeps; beyond, the topic appended to least recently goes.
pub(super) const MAX_HISTORY_TOPICS: usize = 10_000;

/// The kept events of a [`MemoryCluster`]: per topic, `(timestamp ms, wire envelope)` oldest first, and when the
/// topic was last appended to.
#[derive(Default)]
pub(super) struct Kept {
    topics: HashMap<String, (u64, KeptEvents)>,
}

/// One topic's kept events: `(timestamp ms, wire envelope)`, oldest first.
pub(super) type KeptEvents = std::collections::VecDeque<(u64, Vec<u8>)>;

impl Kept {
    pub(super) fn append(&mut self, topic: &str, envelope: Vec<u8>, keep: &crate::model::Keep) {
        let now = now_millis();
        if !self.topics.contains_key(topic) && self.topics.len() >= MAX_HISTORY_TOPICS {
            let stalest = self.topics.iter().min_by_key(|(_, (last, _))| *last).map(|(t, _)| t.clone());
            if let Some(stalest) = stalest {
                self.topics.remove(&stalest);
            }
        }
        let (last, events) = self.topics.entry(topic.to_owned()).or_default();
        *last = now;
        events.push_back((now, envelope));
        let oldest = now.saturating_sub(u64::try_from(keep.ttl.as_millis()).unwrap_or(u64::MAX));
        while events.len() > keep.size || events.front().is_some_and(|(at, _)| *at < oldest) {
            events.pop_front();
        }
    }

    pub(super) fn read(&self, topic: &str, ttl: std::time::Duration) -> Vec<(u64, Vec<u8>)> {
        let oldest = now_millis().saturating_sub(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let Some((_, events)) = self.topics.get(topic) else { return Vec::new() };
        events.iter().filter(|(at, _)| *at >= oldest).cloned().collect()
    }
}

/// The retained events of a [`MemoryCluster`], bounded by `retention.max_topics` (the oldest goes first).
#[derive(Default)]
pub(super) struct Retained {
    by_topic: HashMap<String, (std::time::Instant, Vec<u8>, u64)>,
    /// Topics in the order they were last retained (sequence → topic), to find the oldest.
    order: std::collections::BTreeMap<u64, String>,
    next: u64,
}

impl Retained {
    pub(super) fn put(&mut self, topic: &str, expires: std::time::Instant, envelope: Vec<u8>, max: usize) {
        let sequence = self.next;
        self.next += 1;
        if let Some((_, _, previous)) = self.by_topic.insert(topic.to_owned(), (expires, envelope, sequence)) {
            self.order.remove(&previous);
        }
        self.order.insert(sequence, topic.to_owned());
        while self.by_topic.len() > max {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            self.by_topic.remove(&oldest);
        }
    }

    pub(super) fn get(&mut self, topic: &str) -> Option<Vec<u8>> {
        let (expires, envelope, sequence) = self.by_topic.get(topic)?;
        if *expires > std::time::Instant::now() {
            return Some(envelope.clone());
        }
        let sequence = *sequence;
        self.by_topic.remove(topic);
        self.order.remove(&sequence);
        None
    }
}

/// One subscription of a [`MemoryCluster`].
pub(super) struct Shared {
    pub(super) info: SubscriptionInfo,
    /// Subscribed sessions, each with its node.
    pub(super) sessions: HashMap<Id, String>,
}

/// The table of a [`MemoryCluster`]'s subscriptions, locked.
pub(super) type Table<'a> = std::sync::MutexGuard<'a, HashMap<Id, Shared>>;

/// Adds `session` (of `node`) to `s`; whether it is the first subscriber.
pub(super) fn subscribe(table: &mut Table<'_>, node: &str, session: Id, s: &Subscription) -> bool {
    let shared = table.entry(s.id).or_insert_with(|| Shared {
        info: SubscriptionInfo { id: s.id, key: TopicKey::from_record(&s.record), created_ms: now_millis() },
        sessions: HashMap::new(),
    });
    shared.sessions.insert(session, node.to_owned()).is_none() && shared.sessions.len() == 1
}

/// Removes `session` from the subscription `id`; whether it was the last subscriber (the subscription is gone).
pub(super) fn unsubscribe(table: &mut Table<'_>, session: Id, id: Id) -> bool {
    let Some(shared) = table.get_mut(&id) else { return false };
    let removed = shared.sessions.remove(&session).is_some();
    if shared.sessions.is_empty() {
        table.remove(&id);
        return removed;
    }
    false
}

impl Inbox for MemoryRegistry {
    fn put<'a>(
        &'a self,
        authid: &'a str,
        publication: &'a Publication,
        settings: &'a crate::config::InboxSettings,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        let now = now_millis();
        let oldest = now.saturating_sub(u64::try_from(settings.ttl.as_millis()).unwrap_or(u64::MAX));
        let envelope = Envelope::encode_publication(&self.node, publication);
        let mut inboxes = self.cluster.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        let inbox = inboxes.entry(authid.to_owned()).or_default();
        inbox.retain(|m| m.at >= oldest);
        inbox.push_back(InboxMessage { at: now, id: publication.id, topic: publication.topic.clone(), envelope });
        while inbox.len() > settings.size {
            inbox.pop_front();
        }
        ready(())
    }

    fn taken<'a>(&'a self, authid: &'a str, publication: Id) -> BoxFuture<'a, Result<(), RegistryError>> {
        let mut inboxes = self.cluster.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(inbox) = inboxes.get_mut(authid) {
            inbox.retain(|m| m.id != publication);
            if inbox.is_empty() {
                inboxes.remove(authid);
            }
        }
        ready(())
    }

    fn take<'a>(
        &'a self,
        authid: &'a str,
        topic: &'a str,
        settings: &'a crate::config::InboxSettings,
    ) -> BoxFuture<'a, Result<Vec<Publication>, RegistryError>> {
        let oldest = now_millis().saturating_sub(u64::try_from(settings.ttl.as_millis()).unwrap_or(u64::MAX));
        let mut inboxes = self.cluster.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        let Some(inbox) = inboxes.get_mut(authid) else { return ready(Vec::new()) };
        let mut taken = Vec::new();
        inbox.retain(|m| {
            if m.at < oldest {
                return false;
            }
            if m.topic != topic {
                return true;
            }
            taken.extend(Envelope::decode(&m.envelope).ok().and_then(Envelope::into_publication));
            false
        });
        if inbox.is_empty() {
            inboxes.remove(authid);
        }
        ready(taken)
    }
}

impl Retention for MemoryRegistry {
    fn retain<'a>(
        &'a self,
        publication: &'a Publication,
        settings: &'a crate::config::RetentionSettings,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        let envelope = Envelope::encode_publication(&self.node, publication);
        let expires = std::time::Instant::now() + settings.ttl;
        let mut retained = self.cluster.retained.lock().unwrap_or_else(|e| e.into_inner());
        retained.put(&publication.topic, expires, envelope, settings.max_topics);
        ready(())
    }

    fn retained<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Option<Publication>, RegistryError>> {
        let envelope = self.cluster.retained.lock().unwrap_or_else(|e| e.into_inner()).get(topic);
        ready(envelope.and_then(|bytes| Envelope::decode(&bytes).ok()?.into_publication()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retained_events_are_bounded_in_topics_oldest_first_and_expire() {
        let mut kept = Retained::default();
        let later = std::time::Instant::now() + std::time::Duration::from_secs(60);
        kept.put("a", later, b"1".to_vec(), 2);
        kept.put("b", later, b"2".to_vec(), 2);
        kept.put("a", later, b"3".to_vec(), 2);
        kept.put("c", later, b"4".to_vec(), 2);
        assert_eq!((kept.get("a"), kept.get("b"), kept.get("c")), (Some(b"3".to_vec()), None, Some(b"4".to_vec())));
        kept.put("d", std::time::Instant::now(), b"5".to_vec(), 2);
        assert_eq!(kept.get("d"), None, "expired");
        assert_eq!((kept.by_topic.len(), kept.order.len()), (1, 1), "an expired event is forgotten when read");
    }
}
