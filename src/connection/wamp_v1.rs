//! WAMP v1 (`wamp`, as Ratchet serves it): PREFIX, CALL, SUBSCRIBE, UNSUBSCRIBE and PUBLISH. A refused v1
//! request has no reply in the protocol: it is dropped, logged and counted.

use super::*;

impl Connection {
    pub(super) fn on_v1(&mut self, ctx: &mut ws::WebsocketContext<Self>, message: v1::Message) {
        use v1::Message as M;
        match message {
            // An over-long PREFIX is dropped like any refused v1 request; a connection past its prefix count closes.
            M::Prefix { prefix, uri } => {
                match self.prefixes.define(prefix, uri, self.node.settings().wamp.max_prefixes) {
                    Ok(()) => {}
                    Err(e @ v1::PrefixError::TooLong) => self.v1_refused(&e.to_string()),
                    Err(e @ v1::PrefixError::TooMany { .. }) => {
                        metrics::inc(&self.node.metrics().protocol_errors_total);
                        self.close(ctx, Close::LimitExceeded(&e.to_string()));
                    }
                }
            }
            M::Call { call_id, procedure, args } => {
                let procedure = self.prefixes.resolve(&procedure);
                let reply_id = call_id.clone();
                let reply = move |outcome: Result<CallResult, CallError>| {
                    match outcome {
                        Ok(r) => M::CallResult {
                            call_id: reply_id,
                            result: Payload { args: Some(r.args), kwargs: Some(r.kwargs) }.to_v1_value(),
                        },
                        Err(e) => {
                            M::CallError { call_id: reply_id, error: e.error, description: e.message, details: None }
                        }
                    }
                    .encode()
                };
                if !uri::is_valid_v1(&procedure) {
                    let error =
                        CallError::new(errors::INVALID_URI, format!("'{}' is not a valid URI", excerpt(&procedure)));
                    return ctx.text(reply(Err(error)));
                }
                self.call(ctx, procedure, args, Map::new(), reply);
            }
            M::Subscribe { topic } => {
                let topic = self.prefixes.resolve(&topic);
                if !uri::is_valid_v1(&topic) {
                    return self.v1_refused(&format!("SUBSCRIBE to invalid URI '{}'", excerpt(&topic)));
                }
                if let Err(e) = self.subscribe(ctx, TopicKey::exact(&topic), None) {
                    self.v1_refused(&e.message);
                }
            }
            M::Unsubscribe { topic } => {
                let key = TopicKey::exact(&self.prefixes.resolve(&topic));
                if let Some(sub) = self.subscriptions.remove(&key) {
                    match sub {
                        Subscription::Active(id) => {
                            self.by_id.remove(&id);
                            self.node.clients().unsubscribed(self.session, &key.uri);
                        }
                        Subscription::Pending(_) => self.outbox.release(),
                    }
                    self.node.broker().do_send(Unsubscribe { key, session: self.session, request: None });
                }
            }
            M::Publish { topic, event, targets } => {
                let topic = self.prefixes.resolve(&topic);
                if !uri::is_valid_v1(&topic) || uri::is_reserved(&topic) {
                    return self.v1_refused(&format!("PUBLISH to invalid URI '{}'", excerpt(&topic)));
                }
                let mut exclude = targets.exclude;
                if targets.exclude_me {
                    exclude.push(self.session);
                }
                let eligible = (!targets.eligible.is_empty()).then_some(targets.eligible);
                let filters = crate::wamp::filter::Filters { exclude, eligible, ..Default::default() };
                let request = PublishRequest { payload: Payload::single(event), filters };
                match self.prepare_publication(topic, request, false, false) {
                    Ok(Some(publication)) => self.node.broker().do_send(Publish(Arc::new(publication))),
                    Ok(None) => {}
                    Err(e) => self.v1_refused(&e.message),
                }
            }
            M::Welcome { .. } | M::CallResult { .. } | M::CallError { .. } | M::Event { .. } => {
                self.violation(ctx, "WELCOME, CALLRESULT, CALLERROR and EVENT are only sent by servers")
            }
        }
    }

    /// WAMP v1 has no reply for a refused SUBSCRIBE or PUBLISH: it is dropped, logged and counted.
    pub(super) fn v1_refused(&self, message: &str) {
        metrics::inc(&self.node.metrics().protocol_errors_total);
        log::debug!("session {}: v1 request refused: {}", self.session, Escaped(message));
    }
}
