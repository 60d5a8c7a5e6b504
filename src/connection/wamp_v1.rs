//! WAMP v1 (`wamp`, as Ratchet serves it): PREFIX, CALL, SUBSCRIBE, UNSUBSCRIBE and PUBLISH. Only CALL has an
//! answer for a refusal (CALLERROR); any other refused v1 request is dropped, logged and counted
//! ([`Connection::fail`] with [`Reply::Unanswered`]).

use super::*;

use v1::Message as M;

impl Connection {
    /// Handles one v1 message.
    pub(super) fn on_v1(&mut self, ctx: &mut ws::WebsocketContext<Self>, message: M) {
        let reply = match &message {
            M::Call { call_id, .. } => Reply::V1Call(call_id.clone()),
            _ => Reply::Unanswered,
        };
        if let Err(error) = self.v1_request(ctx, message) {
            self.fail(ctx, &reply, error);
        }
    }

    /// One v1 message, by type.
    fn v1_request(&mut self, ctx: &mut ws::WebsocketContext<Self>, message: M) -> Result<(), ConnectionError> {
        match message {
            M::Prefix { prefix, uri } => self.v1_prefix(prefix, uri)?,
            M::Call { call_id, procedure, args } => {
                let procedure = self.prefixes.resolve(&procedure);
                if !uri::is_valid_v1(&procedure) {
                    let msg = format!("'{}' is not a valid URI", excerpt(&procedure));
                    return Err(WampError::new(errors::INVALID_URI, msg).into());
                }
                self.call(ctx, Reply::V1Call(call_id), procedure, args, Map::new());
            }
            M::Subscribe { topic } => {
                let topic = self.prefixes.resolve(&topic);
                if !uri::is_valid_v1(&topic) {
                    let msg = format!("SUBSCRIBE to invalid URI '{}'", excerpt(&topic));
                    return Err(WampError::new(errors::INVALID_URI, msg).into());
                }
                self.subscribe(ctx, TopicKey::exact(&topic), None, subscriptions::CatchUp::Nothing)?;
            }
            M::Unsubscribe { topic } => self.v1_unsubscribe(&topic),
            M::Publish { topic, event, targets } => self.v1_publish(topic, event, targets)?,
            M::Welcome { .. } | M::CallResult { .. } | M::CallError { .. } | M::Event { .. } => {
                let msg = "WELCOME, CALLRESULT, CALLERROR and EVENT are only sent by servers";
                return Err(ConnectionError::violation(msg));
            }
        }
        Ok(())
    }

    /// PREFIX: an over-long one is refused like any v1 request; a connection past its prefix count closes.
    fn v1_prefix(&mut self, prefix: String, uri: String) -> Result<(), ConnectionError> {
        match self.prefixes.define(prefix, uri, self.node.settings().wamp.max_prefixes) {
            Ok(()) => Ok(()),
            Err(e @ v1::PrefixError::TooLong) => Err(WampError::new(errors::INVALID_URI, e.to_string()).into()),
            Err(e @ v1::PrefixError::TooMany { .. }) => Err(ConnectionError::LimitExceeded(e.to_string())),
        }
    }

    /// UNSUBSCRIBE: leaves the topic if this connection holds it (a pending join too), silently otherwise.
    fn v1_unsubscribe(&mut self, topic: &str) {
        let key = TopicKey::exact(&self.prefixes.resolve(topic));
        let Some(subscription) = self.subscriptions.remove(&key) else { return };
        match subscription {
            Subscription::Active(id) => self.node.clients().unsubscribed(self.session, key.clone(), id),
            Subscription::Pending(..) => self.outbox.release(),
        }
        self.node.broker().do_send(Unsubscribe { key, session: self.session, request: None });
    }

    /// PUBLISH: v1's exclude and eligible lists become the publication's filters.
    fn v1_publish(&mut self, topic: String, event: Value, targets: v1::PublishTargets) -> Result<(), WampError> {
        let topic = self.prefixes.resolve(&topic);
        if !uri::is_valid_v1(&topic) || uri::is_reserved(&topic) {
            let msg = format!("PUBLISH to invalid URI '{}'", excerpt(&topic));
            return Err(WampError::new(errors::INVALID_URI, msg));
        }
        let mut exclude = targets.exclude;
        if targets.exclude_me {
            exclude.push(self.session);
        }
        let eligible = (!targets.eligible.is_empty()).then_some(targets.eligible);
        let filters = crate::wamp::filter::Filters { exclude, eligible, ..Default::default() };
        let request = PublishRequest { payload: Payload::single(event), filters };
        if let Some(publication) = self.prepare_publication(topic, request, false, false)? {
            self.node.broker().do_send(Publish(Arc::new(publication)));
        }
        Ok(())
    }
}
