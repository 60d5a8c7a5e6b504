//! The connection's subscriptions: joining a topic through the broker (limits, access), the SUBSCRIBED
//! answered once the topic actor confirms (and, in cluster mode, the registry has it), and the outbox hold
//! that keeps every EVENT of a topic behind its SUBSCRIBED.

use super::*;

/// A subscription of this connection, by topic.
pub(super) enum Subscription {
    /// Sent to the broker; these v2 SUBSCRIBE requests wait for [`Joined`].
    Pending(Vec<Id>),
    /// Joined with this subscription id.
    Active(Id),
}

impl Connection {
    pub(super) fn subscriber(&self, ctx: &mut ws::WebsocketContext<Self>) -> Subscriber {
        Subscriber {
            session: self.session,
            authid: Arc::from(self.identity.authid.as_str()),
            authroles: Arc::from(self.identity.authroles.clone()),
            protocol: self.protocol,
            outbox: Outbox::new(ctx.address().recipient(), self.outbox.clone()),
            web_session: self.web_session.clone(),
        }
    }

    /// Joins `key`, answering `request` (v2) once joined; the error to answer with when it is refused.
    pub(super) fn subscribe(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        key: TopicKey,
        request: Option<Id>,
    ) -> Result<(), WampError> {
        match self.subscriptions.get_mut(&key) {
            Some(Subscription::Active(id)) => {
                if let Some(request) = request {
                    let subscription = *id;
                    self.send_v2(ctx, v2::Message::Subscribed { request, subscription });
                }
                return Ok(());
            }
            Some(Subscription::Pending(waiting)) => {
                waiting.extend(request);
                return Ok(());
            }
            None => {}
        }
        let limit = self.node.settings().websocket.max_subscriptions;
        if self.subscriptions.len() >= limit {
            let msg = format!("a session may hold at most {limit} subscriptions");
            return Err(WampError::new(errors::TOO_MANY_SUBSCRIPTIONS, msg));
        }
        let limit = self.node.settings().websocket.max_pattern_subscriptions;
        if key.policy != MatchPolicy::Exact
            && self.subscriptions.keys().filter(|k| k.policy != MatchPolicy::Exact).count() >= limit
        {
            let msg = format!("a session may hold at most {limit} prefix or wildcard subscriptions");
            return Err(WampError::new(errors::TOO_MANY_SUBSCRIPTIONS, msg));
        }
        if key.policy == MatchPolicy::Exact
            && !self.node.access().allows(Action::Subscribe, &key.uri, &self.identity.authid, &self.identity.authroles)
        {
            let msg = format!("role may not subscribe to '{}'", excerpt(&key.uri));
            return Err(WampError::new(errors::NOT_AUTHORIZED, msg));
        }
        self.subscriptions.insert(key.clone(), Subscription::Pending(request.into_iter().collect()));
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
        let Some(entry) = self.subscriptions.get_mut(&msg.key) else { return };
        if let Subscription::Pending(waiting) = std::mem::replace(entry, Subscription::Active(msg.subscription)) {
            let recorded = if msg.key.policy == MatchPolicy::Exact && self.registered {
                Some(self.node.clients().subscribed(self.session, &msg.key.uri))
            } else {
                None
            };
            self.by_id.insert(msg.subscription, msg.key);
            let subscription = msg.subscription;
            let answer = move |this: &mut Self, ctx: &mut ws::WebsocketContext<Self>| {
                if this.state == Phase::Established && this.protocol == Protocol::V2 {
                    for request in waiting {
                        this.send_v2(ctx, v2::Message::Subscribed { request, subscription });
                    }
                }
                // The SUBSCRIBEDs are in the context's buffer, which the writer empties before the queue.
                this.outbox.release();
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
}
