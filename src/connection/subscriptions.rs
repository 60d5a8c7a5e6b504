//! The connection's subscriptions: joining a topic through the broker (limits, access), the SUBSCRIBED
//! answered once the topic actor confirms (and, in cluster mode, the registry has it), and the outbox hold
//! that keeps every EVENT of a topic behind its SUBSCRIBED. [`Subscriptions`] is the bookkeeping (by topic and
//! by subscription id); the `Joined` handler here is where a join completes.

use super::*;
use crate::wamp::meta;

pub(super) use super::catch_up::CatchUp;

/// A subscription of this connection, by topic.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Subscription {
    /// Sent to the broker; these v2 SUBSCRIBE requests wait for [`Joined`], and what they asked for first.
    Pending(Vec<Id>, CatchUp),
    /// Joined with this subscription id.
    Active(Id),
}

/// This connection's subscriptions, by topic (pending and active) and by subscription id (active only).
/// The maps are allocated at the first subscription: most sockets of a node may never subscribe, and two empty
/// hash maps would still cost every one of them 96 bytes.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    maps: Option<Box<Maps>>,
}

#[derive(Debug, Default)]
struct Maps {
    by_key: HashMap<TopicKey, Subscription>,
    by_id: HashMap<Id, TopicKey>,
}

impl Subscriptions {
    fn maps_mut(&mut self) -> &mut Maps {
        self.maps.get_or_insert_with(Box::default)
    }

    /// How many topics are held, pending ones included.
    pub(super) fn len(&self) -> usize {
        self.maps.as_ref().map_or(0, |m| m.by_key.len())
    }

    /// The subscription to `key`, if there is one.
    pub(super) fn get_mut(&mut self, key: &TopicKey) -> Option<&mut Subscription> {
        self.maps.as_mut()?.by_key.get_mut(key)
    }

    /// Refuses a new subscription to `key` beyond `max` in all or `max_patterns` prefix and wildcard ones.
    pub(super) fn check_limits(&self, key: &TopicKey, max: usize, max_patterns: usize) -> Result<(), WampError> {
        if self.len() >= max {
            let msg = format!("a session may hold at most {max} subscriptions");
            return Err(WampError::new(errors::TOO_MANY_SUBSCRIPTIONS, msg));
        }
        let patterns = || self.maps.iter().flat_map(|m| m.by_key.keys()).filter(|k| k.policy != MatchPolicy::Exact);
        if key.policy != MatchPolicy::Exact && patterns().count() >= max_patterns {
            let msg = format!("a session may hold at most {max_patterns} prefix or wildcard subscriptions");
            return Err(WampError::new(errors::TOO_MANY_SUBSCRIPTIONS, msg));
        }
        Ok(())
    }

    /// A join of `key` was sent to the broker; `request` (v2) waits for it, having asked for `catch_up`.
    pub(super) fn pending(&mut self, key: TopicKey, request: Option<Id>, catch_up: CatchUp) {
        self.maps_mut().by_key.insert(key, Subscription::Pending(request.into_iter().collect(), catch_up));
    }

    /// The topic confirmed the join of `key` as `subscription`: the requests that waited for it and what they
    /// asked for first, if it was pending (`None` if it was left meanwhile or was already active).
    pub(super) fn joined(&mut self, key: &TopicKey, subscription: Id) -> Option<(Vec<Id>, CatchUp)> {
        let maps = self.maps.as_mut()?;
        let entry = maps.by_key.get_mut(key)?;
        let Subscription::Pending(waiting, catch_up) = std::mem::replace(entry, Subscription::Active(subscription))
        else {
            return None;
        };
        maps.by_id.insert(subscription, key.clone());
        Some((waiting, catch_up))
    }

    /// Leaves the active subscription `id` (v2 UNSUBSCRIBE): its topic, if this connection holds it.
    pub(super) fn remove_id(&mut self, id: Id) -> Option<TopicKey> {
        let maps = self.maps.as_mut()?;
        let key = maps.by_id.remove(&id)?;
        maps.by_key.remove(&key);
        Some(key)
    }

    /// Leaves `key` (v1 UNSUBSCRIBE), pending or active.
    pub(super) fn remove(&mut self, key: &TopicKey) -> Option<Subscription> {
        let maps = self.maps.as_mut()?;
        let subscription = maps.by_key.remove(key)?;
        if let Subscription::Active(id) = subscription {
            maps.by_id.remove(&id);
        }
        Some(subscription)
    }

    /// The topics held, pending ones included.
    pub(super) fn keys(&self) -> Vec<TopicKey> {
        self.maps.iter().flat_map(|m| m.by_key.keys().cloned()).collect()
    }

    /// Forgets every subscription, returning the topics (pending ones included) to leave.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = TopicKey> {
        self.maps.take().into_iter().flat_map(|m| m.by_key.into_keys())
    }
}

impl Connection {
    /// This connection as a topic actor's subscriber: identity, protocol and outbound queue.
    pub(super) fn subscriber(&self, ctx: &mut ws::WebsocketContext<Self>) -> Subscriber {
        Subscriber {
            session: self.session,
            authid: Arc::from(self.identity.authid.as_str()),
            authroles: Arc::from(self.identity.authroles.clone()),
            protocol: self.protocol,
            outbox: Outbox::new(ctx.address().recipient(), self.outbox.clone()),
            web_session: self.web.handle(),
        }
    }

    /// Joins `key`, answering `request` (v2) once joined, then with what `catch_up` asks for; the error to
    /// answer with when it is refused.
    pub(super) fn subscribe(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        key: TopicKey,
        request: Option<Id>,
        catch_up: CatchUp,
    ) -> Result<(), WampError> {
        // A logged-in user's plain subscribe collects what waits for her on the topic.
        let catch_up = match catch_up {
            CatchUp::Nothing
                if key.policy == MatchPolicy::Exact
                    && !self.identity.is_anonymous()
                    && self.node.clients().inbox_enabled() =>
            {
                CatchUp::Inbox
            }
            other => other,
        };
        if let CatchUp::ResumeAfter(_) = catch_up {
            if self.node.history_rules().keep_for_topic(&key.uri).is_none() {
                let msg = format!("no [[history]] rule keeps the events of '{}' to resume from", excerpt(&key.uri));
                return Err(WampError::new(errors::INVALID_ARGUMENT, msg));
            }
        }
        match self.subscriptions.get_mut(&key) {
            Some(Subscription::Active(id)) => {
                let subscription = *id;
                if let CatchUp::ResumeAfter(after) = catch_up {
                    // SUBSCRIBED (or ERROR) once the history is read.
                    self.outbox.hold();
                    self.replay(ctx, key, subscription, after, request.into_iter().collect(), false);
                    return Ok(());
                }
                if let Some(request) = request {
                    self.send_v2(ctx, v2::Message::Subscribed { request, subscription });
                }
                if catch_up != CatchUp::Nothing {
                    self.outbox.hold();
                    self.catch_up(ctx, key.uri, subscription, catch_up);
                }
                return Ok(());
            }
            Some(Subscription::Pending(waiting, asked)) => {
                waiting.extend(request);
                if *asked == CatchUp::Nothing {
                    *asked = catch_up;
                }
                return Ok(());
            }
            None => {}
        }
        let ws = &self.node.settings().websocket;
        self.subscriptions.check_limits(&key, ws.max_subscriptions, ws.max_pattern_subscriptions)?;
        if key.policy == MatchPolicy::Exact
            && !self.node.access().allows(Action::Subscribe, &key.uri, &self.identity.authid, &self.identity.authroles)
        {
            let msg = format!("role may not subscribe to '{}'", excerpt(&key.uri));
            return Err(WampError::new(errors::NOT_AUTHORIZED, msg));
        }
        if meta::covers(key.policy, &key.uri) && !self.node.access().sees_identities(&self.identity.authroles) {
            let msg = format!("'{}' would receive session meta events, which this role may not see", excerpt(&key.uri));
            return Err(WampError::new(errors::NOT_AUTHORIZED, msg));
        }
        self.subscriptions.pending(key.clone(), request, catch_up);
        // No EVENT of this topic may reach the wire before its SUBSCRIBED: released in `Joined`.
        self.outbox.hold();
        let subscriber = self.subscriber(ctx);
        self.node.broker().do_send(Subscribe { key, subscriber, reply: ctx.address().recipient() });
        Ok(())
    }
}

impl Handler<Joined> for Connection {
    type Result = ();

    fn handle(&mut self, msg: Joined, ctx: &mut Self::Context) {
        let Some((waiting, catch_up)) = self.subscriptions.joined(&msg.key, msg.subscription) else { return };
        let (key, topic) = (msg.key.clone(), msg.key.uri.clone());
        let recorded = match self.registered {
            true => Some(self.node.clients().subscribed(self.session, msg.key.clone(), msg.subscription)),
            false => None,
        };
        let subscription = msg.subscription;
        let answer = move |this: &mut Self, ctx: &mut ws::WebsocketContext<Self>| {
            if let (CatchUp::ResumeAfter(after), Phase::Established) = (catch_up, this.state) {
                // SUBSCRIBED (or ERROR) once the history is read.
                return this.replay(ctx, key, subscription, after, waiting, true);
            }
            if this.state == Phase::Established && this.protocol.is_v2() {
                for request in waiting {
                    this.send_v2(ctx, v2::Message::Subscribed { request, subscription });
                }
            }
            // The SUBSCRIBEDs are in the context's buffer, which the writer empties before the queue; the retained
            // event, if asked for, follows them there before the hold ends.
            match catch_up != CatchUp::Nothing && this.state == Phase::Established {
                true => this.catch_up(ctx, topic, subscription, catch_up),
                false => this.outbox.release(),
            }
        };
        match recorded {
            None => answer(self, ctx),
            Some(ack) => {
                let ack = tokio::time::timeout(REGISTRY_ACK_WAIT, ack);
                ctx.wait(ack.into_actor(self).map(move |_, this, ctx| answer(this, ctx)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prefix subscription's key.
    fn pattern(uri: &str) -> TopicKey {
        TopicKey { uri: Arc::from(uri), policy: MatchPolicy::Prefix }
    }

    #[test]
    fn a_join_answers_every_request_that_waited_for_it_once() {
        let mut subs = Subscriptions::default();
        let key = TopicKey::exact("chat.lobby");
        subs.pending(key.clone(), Some(1), CatchUp::Nothing);
        let Some(Subscription::Pending(waiting, catch_up)) = subs.get_mut(&key) else { panic!("not pending") };
        waiting.push(2);
        *catch_up = CatchUp::Retained;
        assert_eq!(subs.joined(&key, 77), Some((vec![1, 2], CatchUp::Retained)));
        assert_eq!(subs.get_mut(&key), Some(&mut Subscription::Active(77)));
        assert_eq!(subs.joined(&key, 77), None, "already active");
        assert_eq!(subs.joined(&TopicKey::exact("other"), 78), None, "never joined");
    }

    #[test]
    fn leaving_by_id_or_by_topic_forgets_both_indexes() {
        let mut subs = Subscriptions::default();
        let (a, b, c) = (TopicKey::exact("a"), TopicKey::exact("b"), TopicKey::exact("c"));
        for (key, id) in [(&a, 1), (&b, 2)] {
            subs.pending(key.clone(), None, CatchUp::Nothing);
            subs.joined(key, id);
        }
        subs.pending(c.clone(), None, CatchUp::Nothing);
        assert_eq!(subs.remove_id(1), Some(a.clone()));
        assert_eq!((subs.remove_id(1), subs.remove(&a)), (None, None));
        assert_eq!(subs.remove(&b), Some(Subscription::Active(2)));
        assert_eq!(subs.remove_id(2), None, "its id went with it");
        assert_eq!(subs.remove(&c), Some(Subscription::Pending(vec![], CatchUp::Nothing)));
        assert!(subs.keys().is_empty());
    }

    #[test]
    fn limits_count_every_subscription_and_patterns_apart() {
        let mut subs = Subscriptions::default();
        subs.pending(pattern("p1"), None, CatchUp::Nothing);
        subs.pending(TopicKey::exact("e1"), None, CatchUp::Nothing);
        assert_eq!(subs.check_limits(&TopicKey::exact("e2"), 3, 1), Ok(()), "an exact one is under both");
        let refused = subs.check_limits(&pattern("p2"), 3, 1).unwrap_err();
        assert_eq!(refused.message, "a session may hold at most 1 prefix or wildcard subscriptions");
        subs.pending(TopicKey::exact("e2"), None, CatchUp::Nothing);
        let refused = subs.check_limits(&TopicKey::exact("e3"), 3, 1).unwrap_err();
        assert_eq!(
            (refused.uri.as_ref(), refused.message.as_str()),
            (errors::TOO_MANY_SUBSCRIPTIONS, "a session may hold at most 3 subscriptions")
        );
        assert_eq!(subs.drain().count(), 3);
        assert!(subs.keys().is_empty());
    }
}
