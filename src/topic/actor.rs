//! The topic actor: one per subscription URI and match policy, holding that topic's local subscribers.
//!
//! It is started by the broker for the first subscriber and stopped by the broker when the last one leaves
//! (see `broker.rs`); it never decides its own lifetime. A publication is turned into at most one frame per
//! wire form its subscribers use — v1, and v2 in each serializer (`wamp.2.json`, `wamp.2.msgpack`,
//! `wamp.2.cbor`) — and the same bytes are queued for every eligible subscriber of that form.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use actix_web::web::Bytes;
use serde_json::{Map, Value};

use super::access::{AccessRules, Action};
use super::handler::{TopicHandler, TopicInstance};
use super::{Publication, Subscriber, TopicKey};
use crate::metrics::{self, Metrics};
use crate::model::Payload;
use crate::outbox::Flushes;
use crate::session::Caller;
use crate::wamp::uri::MatchPolicy;
use crate::wamp::{v1, v2, Id, Protocol, Serializer};

/// Tells a connection that its subscription is in place; sent through the connection's mailbox before any
/// EVENT of that subscription, so SUBSCRIBED always precedes the first EVENT.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Joined {
    /// The topic joined.
    pub key: TopicKey,
    /// Its subscription id.
    pub subscription: Id,
}

/// Adds a subscriber (sent by the broker).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    /// The subscriber.
    pub subscriber: Subscriber,
    /// Where to confirm.
    pub reply: Recipient<Joined>,
}

/// Removes a subscriber (sent by the broker); `request` is a v2 UNSUBSCRIBE to acknowledge.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    /// WAMP session id.
    pub session: Id,
    /// The UNSUBSCRIBE request id to answer with UNSUBSCRIBED, if any.
    pub request: Option<Id>,
    /// It was the last subscriber: the topic stops once it has left (one message, not two, per topic a mass
    /// disconnect empties).
    pub last: bool,
}

/// Delivers a publication to the eligible local subscribers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fanout(pub Arc<Publication>);

/// Lists the subscribers as `(session, authid)` pairs.
#[derive(Message)]
#[rtype(result = "Vec<(Id, String)>")]
pub struct ListSubscribers;

/// A subscriber's identity changed (session reload or revocation): filters use the new one from now on.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Reidentify {
    /// WAMP session id.
    pub session: Id,
    /// New username.
    pub authid: Arc<str>,
    /// New roles.
    pub authroles: Arc<[String]>,
    /// The web session, if it still has one.
    pub web_session: Option<crate::session::SessionHandle>,
}

/// One topic's subscriber set.
pub struct TopicActor {
    key: TopicKey,
    subscription: Id,
    subscribers: HashMap<Id, Subscriber>,
    /// Sessions by authid, so targeted publications (`eligible_authid`) touch only their targets.
    by_authid: HashMap<Arc<str>, Vec<Id>>,
    handler: Option<(Arc<dyn TopicHandler>, TopicInstance)>,
    access: Arc<AccessRules>,
    metrics: Arc<Metrics>,
    /// `{"topic": uri}` for pattern subscriptions, so clients learn the concrete topic.
    pattern_details: bool,
    /// Fires when the backplane subscription for this topic is in place.
    ready: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Subscribers whose identity changed since they subscribed (login, logout, role change): their access is
    /// checked again at every delivery, so a downgraded socket loses what it may no longer receive.
    reidentified: HashSet<Id>,
}

impl TopicActor {
    /// A new, empty topic, named `subscription` cluster-wide. `handler` is the application handler of an exact
    /// topic, if its route has one.
    pub fn new(
        key: TopicKey,
        subscription: Id,
        handler: Option<(Arc<dyn TopicHandler>, TopicInstance)>,
        access: Arc<AccessRules>,
        metrics: Arc<Metrics>,
        ready: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> TopicActor {
        let pattern_details = key.policy != MatchPolicy::Exact;
        TopicActor {
            key,
            subscription,
            subscribers: HashMap::new(),
            by_authid: HashMap::new(),
            handler,
            access,
            metrics,
            pattern_details,
            ready,
            reidentified: HashSet::new(),
        }
    }

    fn event_details(&self, publication: &Publication) -> Map<String, Value> {
        let mut details = Map::new();
        if self.pattern_details {
            details.insert("topic".into(), Value::String(publication.topic.clone()));
        }
        publication.disclose_into(&mut details);
        details
    }

    /// The EVENT frame of `publication` for subscribers of `protocol` (built once per publication and form).
    fn event_frame(&self, publication: &Publication, protocol: Protocol) -> Bytes {
        match protocol {
            Protocol::V1 => v1::encode_event(&publication.topic, publication.v1_event()).into(),
            Protocol::V2(Serializer::Json) => {
                let details = match self.pattern_details || publication.disclose_me {
                    true => Value::Object(self.event_details(publication)).to_string(),
                    false => "{}".to_owned(),
                };
                v2::encode_event(self.subscription, publication.id, &details, publication.v2_tail()).into()
            }
            Protocol::V2(binary) => {
                let details = self.event_details(publication);
                let (args, kwargs) = publication.payload_json();
                match binary.encode_event(self.subscription, publication.id, &details, args, kwargs) {
                    Ok(frame) => frame.into(),
                    Err(e) => {
                        // The payload was JSON when it was checked or built; a failure here is a bug.
                        log::error!("publication {}: no {} EVENT: {e}", publication.id, binary.token());
                        let Payload { args, kwargs } = publication.parsed_payload();
                        let (subscription, publication) = (self.subscription, publication.id);
                        v2::Message::Event { subscription, publication, details, args, kwargs }.encode_as(binary).into()
                    }
                }
            }
        }
    }

    fn index(&mut self, authid: &Arc<str>, session: Id) {
        self.by_authid.entry(authid.clone()).or_default().push(session);
    }

    fn unindex(&mut self, authid: &Arc<str>, session: Id) {
        if let Some(sessions) = self.by_authid.get_mut(authid) {
            sessions.retain(|s| *s != session);
            if sessions.is_empty() {
                self.by_authid.remove(authid);
            }
        }
    }

    /// The subscribers a publication can reach: its eligible sessions or authids when it names fewer of them
    /// than the topic has subscribers (a targeted message costs O(targets), not O(subscribers)), else everyone.
    /// Each subscriber comes at most once: the eligible sets hold each name once, and a session has one authid.
    fn candidates<'a>(&'a self, publication: &'a Publication) -> Box<dyn Iterator<Item = &'a Subscriber> + 'a> {
        let admit = publication.admit_set();
        if let Some(sessions) = admit.eligible().filter(|s| s.len() < self.subscribers.len()) {
            Box::new(sessions.iter().filter_map(|id| self.subscribers.get(id)))
        } else if let Some(authids) = admit.eligible_authid().filter(|a| a.len() < self.subscribers.len()) {
            Box::new(
                authids
                    .iter()
                    .filter_map(|a| self.by_authid.get(&**a))
                    .flatten()
                    .filter_map(|id| self.subscribers.get(id)),
            )
        } else {
            Box::new(self.subscribers.values())
        }
    }

    fn caller(s: &Subscriber) -> Caller {
        Caller {
            session: s.session,
            authid: s.authid.to_string(),
            authroles: s.authroles.to_vec(),
            web_session: s.web_session.clone(),
        }
    }
}

impl Actor for TopicActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        metrics::add(&self.metrics.topics, 1);
        if let Some(ready) = self.ready.take() {
            // Hold the mailbox (the first Join included) until Redis confirms the subscription, bounded.
            let wait = tokio::time::timeout(crate::cluster::SUBSCRIBE_WAIT, ready);
            ctx.wait(wait.into_actor(self).map(|_, _, _| ()));
        }
        // The per-instance timer: it lives and dies with this actor, i.e. with the topic's subscribers.
        if let Some((handler, instance)) = &self.handler {
            if let Some(interval) = handler.tick_interval() {
                let (handler, instance) = (handler.clone(), instance.clone());
                ctx.run_interval(interval, move |_, _| handler.on_tick(&instance));
            }
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        metrics::add(&self.metrics.topics, -1);
    }
}

impl Handler<Join> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: Join, _: &mut Self::Context) {
        let subscriber = msg.subscriber;
        if let Some((handler, instance)) = &self.handler {
            handler.on_subscribe(instance, &Self::caller(&subscriber));
        }
        let (authid, session) = (subscriber.authid.clone(), subscriber.session);
        if let Some(previous) = self.subscribers.insert(session, subscriber) {
            self.unindex(&previous.authid, session);
        }
        self.index(&authid, session);
        metrics::add(&self.metrics.subscriptions, 1);
        msg.reply.do_send(Joined { key: self.key.clone(), subscription: self.subscription });
    }
}

impl Handler<Leave> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Self::Context) {
        if msg.last {
            ctx.stop();
        }
        let Some(subscriber) = self.subscribers.remove(&msg.session) else { return };
        self.reidentified.remove(&msg.session);
        self.unindex(&subscriber.authid, msg.session);
        metrics::add(&self.metrics.subscriptions, -1);
        if let Some((handler, instance)) = &self.handler {
            handler.on_unsubscribe(instance, &Self::caller(&subscriber));
        }
        if let Some(request) = msg.request {
            // Through the same queue as EVENTs: no EVENT of this subscription follows UNSUBSCRIBED.
            let serializer = match subscriber.protocol {
                Protocol::V2(serializer) => serializer,
                Protocol::V1 => Serializer::Json,
            };
            subscriber.outbox.send(v2::Message::Unsubscribed { request }.encode_as(serializer).into());
        }
    }
}

impl Handler<Fanout> for TopicActor {
    type Result = ();

    fn handle(&mut self, Fanout(publication): Fanout, _: &mut Self::Context) {
        // One frame per wire form in use: v2 JSON, MessagePack, CBOR, and v1.
        let mut frames: [Option<Bytes>; 4] = Default::default();
        // Pattern subscriptions are checked per delivered topic; the meta topics, per subscriber always (an
        // identity may have changed since it subscribed: a logout must not keep revealing identities).
        let check_access =
            (self.pattern_details && !self.access.is_open()) || crate::wamp::meta::is_meta_topic(&publication.topic);
        let (mut delivered, mut dropped) = (0u64, 0u64);
        let mut flushes = Flushes::default();
        for subscriber in self.candidates(&publication) {
            if !publication.admits(subscriber.session, &subscriber.authid, &subscriber.authroles) {
                continue;
            }
            let reidentified = !self.reidentified.is_empty() && self.reidentified.contains(&subscriber.session);
            if (check_access || reidentified)
                && !self.access.allows(Action::Subscribe, &publication.topic, &subscriber.authid, &subscriber.authroles)
            {
                continue;
            }
            let form = match subscriber.protocol {
                Protocol::V2(Serializer::Json) => 0,
                Protocol::V2(Serializer::MsgPack) => 1,
                Protocol::V2(Serializer::Cbor) => 2,
                Protocol::V1 => 3,
            };
            let frame = frames[form].get_or_insert_with(|| self.event_frame(&publication, subscriber.protocol));
            if subscriber.outbox.push(frame.clone(), &mut flushes) {
                delivered += 1;
            } else {
                dropped += 1;
            }
        }
        // Each worker writes its sockets' new frames in one go (see `outbox::Home`).
        flushes.send();
        metrics::inc_by(&self.metrics.deliveries_total, delivered);
        if let (Some(sink), true) = (publication.receipt_sink(), delivered > 0) {
            (sink.0)(publication.id, delivered);
        }
        if dropped > 0 {
            metrics::inc_by(&self.metrics.drops_slow_consumer_total, dropped);
        }
    }
}

impl Handler<ListSubscribers> for TopicActor {
    type Result = MessageResult<ListSubscribers>;

    fn handle(&mut self, _: ListSubscribers, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.subscribers.values().map(|s| (s.session, s.authid.to_string())).collect())
    }
}

impl Handler<Reidentify> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: Reidentify, _: &mut Self::Context) {
        let Some(subscriber) = self.subscribers.get_mut(&msg.session) else { return };
        let old = std::mem::replace(&mut subscriber.authid, msg.authid.clone());
        subscriber.authroles = msg.authroles;
        subscriber.web_session = msg.web_session;
        self.reidentified.insert(msg.session);
        self.unindex(&old, msg.session);
        self.index(&msg.authid, msg.session);
    }
}
