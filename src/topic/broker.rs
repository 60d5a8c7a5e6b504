//! The broker: routes publications to topic actors and owns their lifetimes.
//!
//! Every membership change passes through here in order, so the broker's member count per topic is exact:
//! it starts a topic actor for the first subscriber and closes it when the count returns to zero. The topic
//! actors a publication reaches are found through the [`SubscriptionIndex`] (exact topics by hash, prefixes in
//! a radix tree, wildcards in a component trie), so neither a publish nor a subscription change ever scans the
//! node's subscriptions. Every publication passing through is charged to the node's [`Backlog`] for the
//! [`Fanout`] messages it queues.

use std::collections::hash_map::{Entry as MapEntry, HashMap};
use std::sync::Arc;

use actix::prelude::*;

use super::access::AccessRules;
use super::access::Action;
use super::actor::{Fanout, Join, Joined, Leave, ListSubscribers, Reidentify, TopicActor};
use super::backlog::Backlog;
use super::handler::{TopicHandler, TopicInstance};
use super::index::SubscriptionIndex;
use super::{Publication, Subscriber, TopicKey};
use crate::cluster::{Backplane, BackplaneError};
use crate::metrics::{self, Metrics};
use crate::model::{Keep, StoredEvent, SubscriptionIds};
use crate::route::RoutePattern;
use crate::route::Router;
use crate::wamp::uri::MatchPolicy;
use crate::wamp::Id;

/// Subscribes a session to a topic. The session must not already be a member (the connection ensures it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    /// Topic to join.
    pub key: TopicKey,
    /// The subscriber.
    pub subscriber: Subscriber,
    /// Where the topic actor confirms with [`Joined`].
    pub reply: Recipient<Joined>,
}

/// Removes a session from a topic; `request` is a v2 UNSUBSCRIBE to acknowledge.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    /// Topic to leave.
    pub key: TopicKey,
    /// WAMP session id.
    pub session: Id,
    /// UNSUBSCRIBE request id, if any.
    pub request: Option<Id>,
}

/// Publishes to every matching local topic actor, then hands the publication to the other nodes. The result
/// says whether that hand-over succeeded (always `Ok` on a single node).
#[derive(Message)]
#[rtype(result = "Result<(), BackplaneError>")]
pub struct Publish(pub Arc<Publication>);

/// Tells the topics in `keys` that a subscriber's identity changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateSubscriber {
    /// Topics the session is subscribed to.
    pub keys: Vec<TopicKey>,
    /// The new identity.
    pub update: Reidentify,
}

/// The `(session, authid)` pairs subscribed (exactly) to a topic on this node.
#[derive(Message)]
#[rtype(result = "Vec<(Id, String)>")]
pub struct Subscribers(pub String);

struct TopicEntry {
    addr: Addr<TopicActor>,
    members: usize,
}

/// The broker actor of one node.
pub struct Broker {
    topics: HashMap<TopicKey, TopicEntry>,
    /// The same topic actors, found by the topics they match.
    index: SubscriptionIndex<Addr<TopicActor>>,
    handlers: Arc<Router<Arc<dyn TopicHandler>>>,
    access: Arc<AccessRules>,
    metrics: Arc<Metrics>,
    backplane: Arc<dyn Backplane>,
    backlog: Arc<Backlog>,
    /// Names each topic actor's subscription as every node does.
    ids: SubscriptionIds,
    /// Which topics keep their events.
    history: Arc<HistoryRules>,
}

impl Broker {
    /// A broker with the application's topic handlers and access rules, joined to other nodes by `backplane`,
    /// charging what it queues to `backlog`.
    pub fn new(
        handlers: Arc<Router<Arc<dyn TopicHandler>>>,
        access: Arc<AccessRules>,
        metrics: Arc<Metrics>,
        backplane: Arc<dyn Backplane>,
        backlog: Arc<Backlog>,
        ids: SubscriptionIds,
        history: Arc<HistoryRules>,
    ) -> Self {
        let index = SubscriptionIndex::new();
        Broker { topics: HashMap::new(), index, handlers, access, metrics, backplane, backlog, ids, history }
    }

    /// Removes `session` from `key`; the topic's last member closes it (O(URI length): no scan).
    fn leave(&mut self, key: TopicKey, session: Id, request: Option<Id>) {
        let MapEntry::Occupied(mut entry) = self.topics.entry(key) else { return };
        let members = &mut entry.get_mut().members;
        *members -= 1;
        let last = *members == 0;
        entry.get().addr.do_send(Leave { session, request, last });
        if last {
            let (key, _) = entry.remove_entry();
            self.backplane.unwant(&key);
            self.index.remove(&key.uri, key.policy);
        }
    }

    /// Delivers to the local topic actors matching the publication's topic, and charges the messages queued.
    fn fan_out(&self, publication: &Arc<Publication>) {
        let mut reached = 0;
        self.index.for_each_match(&publication.topic, |addr| {
            addr.do_send(Fanout(publication.clone()));
            reached += 1;
        });
        self.backlog.charge(publication, reached);
    }
}

impl Actor for Broker {
    type Context = Context<Self>;
}

impl Handler<Subscribe> for Broker {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, ctx: &mut Self::Context) {
        let entry = self.topics.entry(msg.key.clone()).or_insert_with(|| {
            let handler = match msg.key.policy {
                MatchPolicy::Exact => self.handlers.find(&msg.key.uri).map(|(h, params)| {
                    let instance = TopicInstance::new(msg.key.uri.clone(), Arc::new(params), ctx.address());
                    (h.clone(), instance)
                }),
                _ => None,
            };
            // The topic starts taking subscribers once other nodes' traffic for it is subscribed in Redis, so a
            // SUBSCRIBED means "cluster-wide from now on".
            let ready = self.backplane.want(&msg.key);
            let id = self.ids.id(&msg.key);
            let actor = TopicActor::new(msg.key.clone(), id, handler, self.access.clone(), self.metrics.clone(), ready);
            let addr = actor.start();
            self.index.insert(&msg.key.uri, msg.key.policy, addr.clone());
            TopicEntry { addr, members: 0 }
        });
        entry.members += 1;
        entry.addr.do_send(Join { subscriber: msg.subscriber, reply: msg.reply });
    }
}

impl Handler<Unsubscribe> for Broker {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _: &mut Self::Context) {
        self.leave(msg.key, msg.session, msg.request);
    }
}

impl Handler<Publish> for Broker {
    type Result = ActorResponse<Self, Result<(), BackplaneError>>;

    fn handle(&mut self, Publish(publication): Publish, _: &mut Self::Context) -> Self::Result {
        metrics::inc(&self.metrics.publishes_total);
        if let Some(keep) = self.history.keep_for(&publication) {
            // Kept first (atomically with the hand-over to other nodes), delivered here after: a subscriber that
            // reads the history once subscribed finds every event either there or live.
            let (backplane, kept) = (self.backplane.clone(), publication.clone());
            let stored = async move { backplane.publish_kept(&kept, &keep).await };
            return ActorResponse::r#async(stored.into_actor(self).map(move |result, this, _| {
                this.fan_out(&publication);
                result
            }));
        }
        // Local delivery never waits for, or depends on, Redis.
        self.fan_out(&publication);
        if !self.backplane.reaches_other_nodes() {
            // A single node answers at once: no task per publication.
            return ActorResponse::reply(Ok(()));
        }
        let backplane = self.backplane.clone();
        ActorResponse::r#async(actix::fut::wrap_future(async move { backplane.publish(&publication).await }))
    }
}

/// The `[[history]]` rules: which topics keep their events, and how much of them.
#[derive(Default)]
pub struct HistoryRules {
    rules: Vec<(RoutePattern, Keep)>,
}

impl HistoryRules {
    /// The rules of `[[history]]` (already validated).
    pub fn from_settings(settings: &[crate::config::HistorySettings]) -> HistoryRules {
        let rules = settings
            .iter()
            .filter_map(|r| Some((RoutePattern::parse_access(&r.pattern).ok()?, Keep { size: r.size, ttl: r.ttl })))
            .collect();
        HistoryRules { rules }
    }

    /// What to keep of `topic`'s events, if a rule covers it.
    pub fn keep_for_topic(&self, topic: &str) -> Option<Keep> {
        self.rules.iter().find(|(pattern, _)| pattern.matches(topic).is_some()).map(|(_, keep)| *keep)
    }

    /// What to keep of `publication`: nothing if no rule covers its topic, nor if it is filtered by session id
    /// (the spec's security section: such publications are not stored).
    fn keep_for(&self, publication: &Publication) -> Option<Keep> {
        if self.rules.is_empty() || publication.filters.eligible.is_some() || !publication.filters.exclude.is_empty() {
            return None;
        }
        self.keep_for_topic(&publication.topic)
    }
}

/// Why a history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The caller may not subscribe to the topic.
    #[error("this role may not read the events of '{0}'")]
    NotAuthorized(String),
    /// The store could not answer.
    #[error("the event history could not be read: {0}")]
    Unavailable(String),
}

/// The kept events of an exact topic that `caller` may receive (it may subscribe to the topic, and each event's
/// filters admit it), oldest first; none when no `[[history]]` rule covers the topic.
#[derive(Message)]
#[rtype(result = "Result<Vec<StoredEvent>, HistoryError>")]
pub struct ReadHistory {
    /// The topic.
    pub topic: String,
    /// Who asks.
    pub caller: crate::session::Caller,
}

impl Handler<ReadHistory> for Broker {
    type Result = ResponseFuture<Result<Vec<StoredEvent>, HistoryError>>;

    fn handle(&mut self, ReadHistory { topic, caller }: ReadHistory, _: &mut Self::Context) -> Self::Result {
        let allowed = self.access.allows(Action::Subscribe, &topic, &caller.authid, &caller.authroles);
        let (keep, backplane) = (self.history.keep_for_topic(&topic), self.backplane.clone());
        Box::pin(async move {
            if !allowed {
                return Err(HistoryError::NotAuthorized(topic));
            }
            let Some(keep) = keep else { return Ok(Vec::new()) };
            let events =
                backplane.history(&topic, keep.ttl).await.map_err(|e| HistoryError::Unavailable(e.to_string()))?;
            let admitted = |e: &StoredEvent| e.publication.admits(caller.session, &caller.authid, &caller.authroles);
            Ok(events.into_iter().filter(admitted).collect())
        })
    }
}

/// A meta event of the router itself (`wamp.session.on_join`, …): delivered like a [`Publish`] — locally, then to
/// the other nodes, fire and forget — but not counted among the publications clients and the library made.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Announce(pub Arc<Publication>);

impl Handler<Announce> for Broker {
    type Result = ();

    fn handle(&mut self, Announce(publication): Announce, ctx: &mut Self::Context) {
        self.fan_out(&publication);
        if self.backplane.reaches_other_nodes() {
            let backplane = self.backplane.clone();
            ctx.spawn(actix::fut::wrap_future(async move {
                // Failures are counted and summarised in the log by the backplane.
                let _ = backplane.publish(&publication).await;
            }));
        }
    }
}

/// A publication received from another node, for the broker to deliver locally only.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemotePublish(pub Arc<Publication>);

impl Handler<RemotePublish> for Broker {
    type Result = ();

    fn handle(&mut self, RemotePublish(publication): RemotePublish, _: &mut Self::Context) {
        self.fan_out(&publication);
    }
}

impl Handler<UpdateSubscriber> for Broker {
    type Result = ();

    fn handle(&mut self, msg: UpdateSubscriber, _: &mut Self::Context) {
        for key in &msg.keys {
            if let Some(entry) = self.topics.get(key) {
                entry.addr.do_send(msg.update.clone());
            }
        }
    }
}

impl Handler<Subscribers> for Broker {
    type Result = ResponseFuture<Vec<(Id, String)>>;

    fn handle(&mut self, Subscribers(topic): Subscribers, _: &mut Self::Context) -> Self::Result {
        let addr = self.topics.get(&TopicKey::exact(&topic)).map(|e| e.addr.clone());
        Box::pin(async move {
            match addr {
                Some(addr) => addr.send(ListSubscribers).await.unwrap_or_default(),
                None => Vec::new(),
            }
        })
    }
}
