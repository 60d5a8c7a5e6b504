//! The ClientManipulator actor: it owns every write to the node's [`LocalIndex`] and to the cluster's
//! registry, and applies them one at a time in the order connections send them (register, reidentify,
//! subscribed, unsubscribed, unregister). A write that a client must be able to rely on — a WELCOME means
//! "findable", a SUBSCRIBED means "findable by topic" — is answered with a future that completes once the
//! registry has it (at once in embedded mode).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::{BoxFuture, FutureExt};
use tokio::sync::oneshot;

use super::index::{LocalEntry, LocalIndex};
use super::meta;
use crate::cluster::{Backplane, Departed, Registry, Subscription, Write};
use crate::model::{ClientInfo, Disconnect, Publication, SubscriptionInfo, TopicKey};
use crate::topic::broker::{Announce, Broker, Publish};
use crate::wamp::Id;

/// The actor behind [`ClientManipulator`](super::ClientManipulator).
pub(super) struct ClientIndex {
    pub(super) local: LocalIndex,
    pub(super) registry: Arc<dyn Registry>,
    pub(super) backplane: Arc<dyn Backplane>,
    /// Where the session meta events go (local subscribers and the other nodes).
    pub(super) broker: Addr<Broker>,
    /// `[presence]` and the application's callback.
    pub(super) presence: meta::PresenceConfig,
    /// Logged-in users' sockets on this node: presence asks the registry only at a user's first local socket
    /// and after her last, not at every socket.
    pub(super) users: HashMap<String, usize>,
}

impl Actor for ClientIndex {
    type Context = Context<Self>;
}

impl ClientIndex {
    /// Hands `write` to the registry; the future completes once the registry applied it (at once when writes
    /// are visible immediately).
    fn acked(&self, write: impl FnOnce(Option<oneshot::Sender<()>>) -> Write) -> Option<oneshot::Receiver<()>> {
        if !self.registry.confirms_writes() {
            self.registry.write(write(None));
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.registry.write(write(Some(tx)));
        Some(rx)
    }
}

impl ClientIndex {
    /// A socket of logged-in `authid` opened here: at her first local one, ask whether she is new anywhere.
    fn user_socket_opened(&mut self, authid: &str) {
        let count = self.users.entry(authid.to_owned()).or_default();
        *count += 1;
        if *count == 1 {
            self.check_online(authid.to_owned());
        }
    }

    /// A socket of logged-in `authid` closed here: after her last local one, check her presence after the grace.
    fn user_socket_closed(&mut self, authid: &str, ctx: &mut Context<Self>) {
        let Some(count) = self.users.get_mut(authid) else { return };
        *count -= 1;
        if *count == 0 {
            self.users.remove(authid);
            self.check_offline_later(authid.to_owned(), ctx);
        }
    }

    /// Announces `authid` online if this is her first socket anywhere (decided by the registry, atomically).
    fn check_online(&self, authid: String) {
        if self.presence.enabled {
            self.settle_presence(meta::Presence::Online(authid));
        }
    }

    /// After `presence.grace`, announces `authid` offline if she has had no socket anywhere meanwhile.
    fn check_offline_later(&self, authid: String, ctx: &mut Context<Self>) {
        if self.presence.enabled {
            ctx.run_later(self.presence.grace, move |this, _| this.settle_presence(meta::Presence::Offline(authid)));
        }
    }

    /// Asks the registry to make `change`; announces it if this call made it (one node does, cluster-wide).
    fn settle_presence(&self, change: meta::Presence) {
        let (registry, broker, presence) = (self.registry.clone(), self.broker.clone(), self.presence.clone());
        actix::spawn(async move {
            let made = match &change {
                meta::Presence::Online(authid) => registry.mark_online(authid).await,
                meta::Presence::Offline(authid) => registry.mark_offline(authid).await,
            };
            match made {
                Ok(true) => presence.announce(change, |p| broker.do_send(Announce(Arc::new(p)))),
                Ok(false) => {}
                Err(e) => {
                    let (meta::Presence::Online(authid) | meta::Presence::Offline(authid)) = &change;
                    log::debug!("presence of {}: {e}", crate::logfmt::Escaped(authid))
                }
            }
        });
    }
}

/// Both waits of a write a client relies on, as one future.
fn both(first: Option<oneshot::Receiver<()>>, second: Option<oneshot::Receiver<()>>) -> BoxFuture<'static, ()> {
    async move {
        if let Some(r) = first {
            let _ = r.await;
        }
        if let Some(r) = second {
            let _ = r.await;
        }
    }
    .boxed()
}

/// A new session: indexed, routed, registered.
#[derive(Message)]
#[rtype(result = "BoxFuture<'static, ()>")]
pub(super) struct Register {
    pub(super) info: ClientInfo,
    pub(super) control: Recipient<Disconnect>,
}

impl Handler<Register> for ClientIndex {
    type Result = MessageResult<Register>;

    fn handle(&mut self, Register { info, control }: Register, _: &mut Self::Context) -> Self::Result {
        if !info.is_anonymous() {
            self.user_socket_opened(&info.authid);
        }
        let routed = self.backplane.want_user(&info.authid);
        let replaced = self
            .local
            .write()
            .insert(info.session, Box::new(LocalEntry { info: info.clone(), control, topics: HashMap::new() }));
        self.local.recount(replaced.as_ref().map(|e| e.info.authroles.as_slice()), Some(&info.authroles));
        // After the registry write is queued, so a subscriber reacting to the event finds the session.
        self.presence.session_webhook(Some(&info), None);
        let joined = self.presence.enabled.then(|| meta::on_join(&info));
        let registered = self.acked(|ack| Write::Register(info, ack));
        if let Some(joined) = joined {
            self.broker.do_send(Announce(Arc::new(joined)));
        }
        // WELCOME waits for both: the registry has the session, and messages targeted at the user reach this node.
        MessageResult(both(registered, routed))
    }
}

/// A session's identity changed.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Reidentify(pub(super) ClientInfo);

impl Handler<Reidentify> for ClientIndex {
    type Result = ();

    fn handle(&mut self, Reidentify(info): Reidentify, ctx: &mut Self::Context) {
        let old = {
            let mut entries = self.local.write();
            let Some(entry) = entries.get_mut(&info.session) else { return };
            std::mem::replace(&mut entry.info, info.clone())
        };
        self.local.recount(Some(&old.authroles), Some(&info.authroles));
        if old.authid != info.authid {
            // Targeted messages follow the new identity from the next publication on.
            let _ = self.backplane.want_user(&info.authid);
            self.backplane.unwant_user(&old.authid);
        }
        // A login or logout moves the socket between users: presence follows.
        if old.authid != info.authid {
            if !info.is_anonymous() {
                self.user_socket_opened(&info.authid);
            }
            if !old.is_anonymous() {
                self.user_socket_closed(&old.authid, ctx);
            }
        }
        self.registry.write(Write::Reidentify { old, new: info });
    }
}

/// A session subscribed (to a topic or a pattern).
#[derive(Message)]
#[rtype(result = "BoxFuture<'static, ()>")]
pub(super) struct Subscribed {
    pub(super) session: Id,
    pub(super) key: TopicKey,
    pub(super) id: Id,
}

impl Handler<Subscribed> for ClientIndex {
    type Result = MessageResult<Subscribed>;

    fn handle(&mut self, Subscribed { session, key, id }: Subscribed, ctx: &mut Self::Context) -> Self::Result {
        let subscription = Subscription { id, record: key.record().into_owned() };
        if let Some(entry) = self.local.write().get_mut(&session) {
            entry.topics.insert(subscription.record.clone(), id);
        }
        let (changes, created) = oneshot::channel();
        self.registry.write(Write::Subscribed(session, subscription, Some(changes)));
        // The SUBSCRIBED waits for the registry's answer (lookups by topic find the session from then on); the
        // meta events follow it, whether or not the connection still waits.
        let (recorded, ack) = oneshot::channel::<()>();
        let announce = self.subscription_events(&key);
        let broker = self.broker.clone();
        ctx.spawn(actix::fut::wrap_future(async move {
            let created = created.await.ok().and_then(|c| c.first().copied());
            let _ = recorded.send(());
            if announce {
                if created == Some(true) {
                    let info = SubscriptionInfo { id, key, created_ms: crate::model::now_millis() };
                    broker.do_send(Announce(Arc::new(meta::on_create(session, &info))));
                }
                broker.do_send(Announce(Arc::new(meta::on_subscription(meta::ON_SUBSCRIBE, session, id))));
            }
        }));
        let waited = if self.registry.confirms_writes() { Some(ack) } else { None };
        MessageResult(both(waited, None))
    }
}

impl ClientIndex {
    /// Whether changes of `key` are announced on the subscription meta topics: not when meta events are off, and
    /// never for subscriptions to the router's own namespaces (as Crossbar does for `wamp.`).
    fn subscription_events(&self, key: &TopicKey) -> bool {
        self.presence.enabled && !crate::wamp::uri::is_reserved(&key.uri)
    }

    /// Announces `session` gone from the subscriptions `left` (each with its key), once the registry said which
    /// of them lost their last subscriber; then `after`, if any (the session's `on_leave`).
    fn announce_unsubscribed(
        &self,
        ctx: &mut Context<Self>,
        session: Id,
        left: Vec<(Id, bool)>,
        deleted: oneshot::Receiver<Vec<bool>>,
        after: Option<Publication>,
    ) {
        let broker = self.broker.clone();
        ctx.spawn(actix::fut::wrap_future(async move {
            let deleted = deleted.await.unwrap_or_default();
            for (i, (id, announce)) in left.into_iter().enumerate() {
                if announce {
                    broker.do_send(Announce(Arc::new(meta::on_subscription(meta::ON_UNSUBSCRIBE, session, id))));
                    if deleted.get(i) == Some(&true) {
                        broker.do_send(Announce(Arc::new(meta::on_subscription(meta::ON_DELETE, session, id))));
                    }
                }
            }
            if let Some(after) = after {
                broker.do_send(Announce(Arc::new(after)));
            }
        }));
    }
}

/// A session left a subscription.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Unsubscribed {
    pub(super) session: Id,
    pub(super) key: TopicKey,
    pub(super) id: Id,
}

impl Handler<Unsubscribed> for ClientIndex {
    type Result = ();

    fn handle(&mut self, Unsubscribed { session, key, id }: Unsubscribed, ctx: &mut Self::Context) {
        let subscription = Subscription { id, record: key.record().into_owned() };
        if let Some(entry) = self.local.write().get_mut(&session) {
            entry.topics.remove(&subscription.record);
        }
        let (changes, deleted) = oneshot::channel();
        self.registry.write(Write::Unsubscribed(session, subscription, Some(changes)));
        let announce = self.subscription_events(&key);
        self.announce_unsubscribed(ctx, session, vec![(id, announce)], deleted, None);
    }
}

/// A session ended.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Unregister(pub(super) Id);

impl Handler<Unregister> for ClientIndex {
    type Result = ();

    fn handle(&mut self, Unregister(session): Unregister, ctx: &mut Self::Context) {
        let removed = self.local.write().remove(&session);
        if let Some(entry) = removed {
            if !entry.info.is_anonymous() {
                self.user_socket_closed(&entry.info.authid, ctx);
            }
            self.local.recount(Some(&entry.info.authroles), None);
            self.backplane.unwant_user(&entry.info.authid);
            let (authid, authrole) = (&entry.info.authid, entry.info.authrole());
            self.presence.session_webhook(None, Some((session, authid, authrole)));
            let left = self.presence.enabled.then(|| meta::on_leave(session, authid, authrole));
            let subscriptions: Vec<Subscription> =
                entry.topics.into_iter().map(|(record, id)| Subscription { id, record }).collect();
            let announced = subscriptions
                .iter()
                .map(|s| (s.id, self.subscription_events(&TopicKey::from_record(&s.record))))
                .collect();
            let (changes, deleted) = oneshot::channel();
            self.registry.write(Write::Unregister(entry.info, subscriptions, Some(changes)));
            // Its subscriptions end before it does, as the registry answers which of them it was the last of.
            self.announce_unsubscribed(ctx, session, announced, deleted, left);
        }
    }
}

/// A message to a user: kept in her offline inbox, then published (in that order, so a subscriber taking her
/// inbox after it was kept meets it there or live).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct KeepAndPublish {
    pub(super) authid: String,
    pub(super) publication: Publication,
    pub(super) store: Arc<dyn crate::cluster::Inbox>,
    pub(super) settings: crate::config::InboxSettings,
}

impl Handler<KeepAndPublish> for ClientIndex {
    type Result = ();

    fn handle(&mut self, msg: KeepAndPublish, ctx: &mut Self::Context) {
        let broker = self.broker.clone();
        ctx.spawn(actix::fut::wrap_future(async move {
            let KeepAndPublish { authid, publication, store, settings } = msg;
            if let Err(e) = store.put(&authid, &publication, &settings).await {
                let id = publication.id;
                log::warn!("message {id} for {} not kept in the inbox: {e}", crate::logfmt::Escaped(&authid));
            }
            broker.do_send(Publish(Arc::new(publication)));
        }));
    }
}

/// Sessions whose node died, removed from the registry by this node: announced gone, and their users checked
/// for presence after the grace.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct SessionsDeparted(pub(super) Vec<Departed>);

impl Handler<SessionsDeparted> for ClientIndex {
    type Result = ();

    fn handle(&mut self, SessionsDeparted(departed): SessionsDeparted, ctx: &mut Self::Context) {
        let mut users = HashSet::new();
        for d in departed {
            // Its testaments first, as its own node would have published them before its on_leave.
            for json in &d.testaments {
                match serde_json::from_str::<crate::model::Testament>(json) {
                    Ok(testament) => self.broker.do_send(Publish(Arc::new(testament.publication()))),
                    Err(e) => log::warn!("session {}: unreadable testament dropped: {e}", d.session),
                }
            }
            self.presence.session_webhook(None, Some((d.session, &d.authid, &d.authrole)));
            if self.presence.enabled {
                for (id, last) in d.subscriptions {
                    self.broker.do_send(Announce(Arc::new(meta::on_subscription(meta::ON_UNSUBSCRIBE, d.session, id))));
                    if last {
                        self.broker.do_send(Announce(Arc::new(meta::on_subscription(meta::ON_DELETE, d.session, id))));
                    }
                }
                self.broker.do_send(Announce(Arc::new(meta::on_leave(d.session, &d.authid, &d.authrole))));
            }
            if d.authrole != crate::session::ANONYMOUS_ROLE {
                users.insert(d.authid);
            }
        }
        for authid in users {
            self.check_offline_later(authid, ctx);
        }
    }
}
