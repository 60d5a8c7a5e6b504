//! The work of PUBLISH and CALL that both protocols share: a publication's access rule, topic handler and
//! backlog admission, and a call's dispatch to its procedure under the pending-call limit. Each protocol
//! module decodes its own message and says how the answer goes back ([`Reply`]).

use super::*;

impl Connection {
    /// Refuses `topic` if the access rules do not let this session publish there.
    pub(super) fn check_publish_access(&self, topic: &str) -> Result<(), WampError> {
        if self.node.access().allows(Action::Publish, topic, &self.identity.authid, &self.identity.authroles) {
            return Ok(());
        }
        Err(WampError::new(errors::NOT_AUTHORIZED, format!("role may not publish to '{}'", excerpt(topic))))
    }

    /// Runs access rules and the topic handler. `Ok(None)`: the handler took care of it.
    pub(super) fn prepare_publication(
        &mut self,
        topic: String,
        request: PublishRequest,
        exclude_me: bool,
        disclose_me: bool,
    ) -> Result<Option<Publication>, WampError> {
        self.check_publish_access(&topic)?;
        let max = self.node.settings().wamp.max_filter_entries;
        request.filters.check_limits(max).map_err(|msg| WampError::new(errors::INVALID_ARGUMENT, msg))?;
        let request = match self.node.topic_handler(&topic) {
            None => request,
            Some((handler, params)) => {
                let instance =
                    TopicInstance::new(Arc::from(topic.as_str()), Arc::new(params), self.node.broker().clone());
                match handler.on_publish(&instance, &self.caller(), request) {
                    PublishDecision::Deliver(request) => request,
                    PublishDecision::Reject { error, message } => return Err(WampError::custom(error, message)),
                    PublishDecision::Handled => return Ok(None),
                }
            }
        };
        let publisher = Publisher {
            session: self.session,
            authid: self.identity.authid.clone(),
            authrole: self.identity.authrole().to_owned(),
        };
        let publication = Publication::new(topic, request.payload, request.filters).with_publisher(
            publisher,
            exclude_me,
            disclose_me,
        );
        if let Err(e) = self.node.backlog().admit(&publication) {
            metrics::inc(&self.node.metrics().publishes_overloaded_total);
            return Err(WampError::new(errors::OVERLOADED, e.to_string()));
        }
        Ok(Some(publication))
    }

    /// Starts a procedure call, answered as `reply` says (v2 RESULT or ERROR, v1 CALLRESULT or CALLERROR).
    pub(super) fn call(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        reply: Reply,
        procedure: String,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) {
        metrics::inc(&self.node.metrics().calls_total);
        if let Err(refused) = self.limits.check_call(self.node.settings().websocket.max_pending_calls) {
            metrics::inc(&self.node.metrics().call_errors_total);
            return self.fail(ctx, &reply, refused.into());
        }
        if let Some(answer) = self.testament_call(&procedure, &args) {
            match answer {
                Ok(result) => {
                    if let Some(frame) = reply.result(result) {
                        self.send_text(ctx, frame);
                    }
                }
                Err(e) => {
                    metrics::inc(&self.node.metrics().call_errors_total);
                    self.fail(ctx, &reply, e.into());
                }
            }
            return;
        }
        let caller = self.caller();
        let clients = self.node.clients().clone();
        let uri = procedure.clone();
        let future = self.node.procedures().dispatch(&procedure, move |params| Call {
            procedure: uri,
            params,
            args,
            kwargs,
            caller,
            clients,
        });
        let Some(future) = future else {
            metrics::inc(&self.node.metrics().call_errors_total);
            let refused = WampError::new(errors::NO_SUCH_PROCEDURE, format!("no procedure '{}'", excerpt(&procedure)));
            return self.fail(ctx, &reply, refused.into());
        };
        self.limits.call_started();
        ctx.spawn(future.into_actor(self).map(move |result, this, ctx| {
            this.limits.call_ended();
            if result.is_err() {
                metrics::inc(&this.node.metrics().call_errors_total);
            }
            if this.state != Phase::Established {
                return;
            }
            match result.map(|result| reply.result(result)) {
                Ok(Some(frame)) => this.send_text(ctx, frame),
                Ok(None) => {}
                Err(e) => this.fail(ctx, &reply, WampError::from(e).into()),
            }
        }));
    }
}
