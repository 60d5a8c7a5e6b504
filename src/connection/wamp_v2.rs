//! WAMP v2 (`wamp.2.json`): the session's messages after the handshake, WELCOME, and the shared work of
//! PUBLISH (access, topic handler, backlog) and CALL (procedures, limits) that v1 reuses.

use super::*;

impl Connection {
    pub(super) fn on_v2(&mut self, ctx: &mut ws::WebsocketContext<Self>, message: v2::Message) {
        use v2::Message as M;
        if self.state == Phase::AwaitingHello {
            let M::Hello { realm, .. } = message else {
                return self.violation(ctx, "the first message must be HELLO");
            };
            let expected = &self.node.settings().server.realm;
            if !expected.is_empty() && &realm != expected {
                self.send_v2(ctx, M::abort(errors::NO_SUCH_REALM, format!("no realm '{}'", excerpt(&realm))));
                return self.close(ctx, Close::NoSuchRealm);
            }
            if !uri::is_valid_v2(&realm) {
                return self.violation(ctx, "HELLO realm is not a valid URI");
            }
            return self.establish(ctx);
        }
        match message {
            M::Hello { .. } => self.violation(ctx, "HELLO received on an established session"),
            M::Goodbye { .. } => {
                self.send_v2(ctx, M::goodbye(errors::GOODBYE_AND_OUT, "goodbye"));
                self.close(ctx, Close::Goodbye);
            }
            M::Abort { .. } => self.close(ctx, Close::ClientAbort),
            M::Subscribe { request, options, topic } => {
                let reply_error = |this: &Self, ctx: &mut ws::WebsocketContext<Self>, error: &str, msg: String| {
                    this.send_v2(ctx, M::error(code::SUBSCRIBE, request, error, msg))
                };
                let options = match SubscribeOptions::parse(&options) {
                    Ok(o) => o,
                    Err(e) => return reply_error(self, ctx, errors::INVALID_ARGUMENT, e.to_string()),
                };
                if !uri::is_valid_v2_pattern(&topic, options.policy) {
                    let msg =
                        format!("'{}' is not a valid {} subscription URI", excerpt(&topic), options.policy.as_str());
                    return reply_error(self, ctx, errors::INVALID_URI, msg);
                }
                let key = TopicKey { uri: Arc::from(topic.as_str()), policy: options.policy };
                if let Err(e) = self.subscribe(ctx, key, Some(request)) {
                    reply_error(self, ctx, &e.uri, e.message);
                }
            }
            M::Unsubscribe { request, subscription } => match self.by_id.remove(&subscription) {
                None => self.send_v2(
                    ctx,
                    M::error(code::UNSUBSCRIBE, request, errors::NO_SUCH_SUBSCRIPTION, "no such subscription"),
                ),
                Some(key) => {
                    self.subscriptions.remove(&key);
                    if key.policy == MatchPolicy::Exact {
                        self.node.clients().unsubscribed(self.session, &key.uri);
                    }
                    self.node.broker().do_send(Unsubscribe { key, session: self.session, request: Some(request) });
                }
            },
            M::Publish { request, options, topic, args, kwargs } => {
                // The spec answers a publish only when acknowledge is set; an unsolicited ERROR would make
                // autobahn tear the session down. Refused unacknowledged publishes are logged and counted.
                let acknowledge = options.get("acknowledge").and_then(Value::as_bool).unwrap_or(false);
                let outcome = PublishOptions::parse(&options)
                    .map_err(|e| WampError::new(errors::INVALID_ARGUMENT, e.to_string()))
                    .and_then(|o| {
                        if !uri::is_valid_v2(&topic) {
                            let msg = format!("'{}' is not a valid topic URI", excerpt(&topic));
                            return Err(WampError::new(errors::INVALID_URI, msg));
                        }
                        if uri::is_reserved(&topic) {
                            let msg = format!("'{}' is in the reserved wamp. namespace", excerpt(&topic));
                            return Err(WampError::new(errors::INVALID_URI, msg));
                        }
                        let request = PublishRequest { payload: Payload { args, kwargs }, filters: o.filters };
                        self.prepare_publication(topic, request, o.exclude_me, o.disclose_me)
                    });
                match (outcome, acknowledge) {
                    (Ok(Some(publication)), false) => self.node.broker().do_send(Publish(Arc::new(publication))),
                    (Ok(Some(publication)), true) => {
                        // PUBLISHED only once the publication is delivered locally and handed to Redis.
                        let id = publication.id;
                        let sent = self.node.broker().send(Publish(Arc::new(publication)));
                        ctx.spawn(sent.into_actor(self).map(move |result, this, ctx| {
                            let reply = match result {
                                Ok(Ok(())) => M::Published { request, publication: id },
                                Ok(Err(e)) => {
                                    M::error(code::PUBLISH, request, errors::BACKPLANE_UNAVAILABLE, e.to_string())
                                }
                                Err(e) => M::error(code::PUBLISH, request, errors::RUNTIME_ERROR, e.to_string()),
                            };
                            if this.state == Phase::Established {
                                this.send_v2(ctx, reply);
                            }
                        }));
                    }
                    (Ok(None), true) => {
                        self.send_v2(ctx, M::Published { request, publication: crate::wamp::id::random() })
                    }
                    (Ok(None), false) => {}
                    (Err(e), true) => self.send_v2(ctx, M::error(code::PUBLISH, request, &e.uri, e.message)),
                    (Err(e), false) => {
                        metrics::inc(&self.node.metrics().protocol_errors_total);
                        log::debug!(
                            "session {}: unacknowledged publish refused: {}: {}",
                            self.session,
                            e.uri,
                            Escaped(&e.message)
                        );
                    }
                }
            }
            M::Call { request, procedure, args, kwargs, .. } => {
                if !uri::is_valid_v2(&procedure) {
                    let msg = format!("'{}' is not a valid procedure URI", excerpt(&procedure));
                    return self.send_v2(ctx, M::error(code::CALL, request, errors::INVALID_URI, msg));
                }
                self.call(ctx, procedure, args.unwrap_or_default(), kwargs.unwrap_or_default(), move |outcome| {
                    match outcome {
                        Ok(r) => M::Result {
                            request,
                            details: Map::new(),
                            args: Some(r.args),
                            kwargs: (!r.kwargs.is_empty()).then_some(r.kwargs),
                        },
                        Err(e) => M::error(code::CALL, request, &e.error, e.message),
                    }
                    .encode()
                });
            }
            M::Register { request, .. } => self.send_v2(
                ctx,
                M::error(
                    code::REGISTER,
                    request,
                    errors::NOT_AUTHORIZED,
                    "client callees are not supported: procedures are registered on the server",
                ),
            ),
            M::Unregister { request, .. } => self.send_v2(
                ctx,
                M::error(code::UNREGISTER, request, errors::NO_SUCH_REGISTRATION, "no such registration"),
            ),
            // CANCEL: calls run to completion; the caller still gets its RESULT or ERROR (call_canceling is
            // not announced, so well-behaved clients do not send it).
            M::Unimplemented { code: code::CANCEL, .. } => {}
            M::Unimplemented { name, .. } => {
                self.violation(ctx, &format!("{name} is not valid here: this router has no client callees"))
            }
            other => self.violation(ctx, &format!("{} is not valid from a client of this router", other.name())),
        }
    }

    /// Sends WELCOME.
    pub(super) fn greet(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.state != Phase::Established {
            return;
        }
        match self.protocol {
            Protocol::V1 => self.send_v1(
                ctx,
                v1::Message::Welcome {
                    session: self.session.to_string(),
                    version: v1::PROTOCOL_VERSION,
                    server: SERVER_AGENT.to_owned(),
                },
            ),
            Protocol::V2 => {
                let details = json!({
                    "authid": self.identity.authid,
                    "authrole": self.identity.authrole(),
                    "authmethod": self.identity.authmethod.as_str(),
                    "authprovider": "switchboard",
                    "authextra": { "authroles": self.identity.authroles },
                    "agent": SERVER_AGENT,
                    "roles": {
                        "broker": { "features": {
                            "publisher_identification": true,
                            "publisher_exclusion": true,
                            "subscriber_blackwhite_listing": true,
                            "pattern_based_subscription": true,
                        }},
                        "dealer": { "features": { "session_meta_api": true }},
                    },
                });
                let Value::Object(details) = details else { unreachable!("json! object literal") };
                self.send_v2(ctx, v2::Message::Welcome { session: self.session, details });
            }
        }
    }

    /// Runs access rules and the topic handler. `Ok(None)`: the handler took care of it.
    pub(super) fn prepare_publication(
        &mut self,
        topic: String,
        request: PublishRequest,
        exclude_me: bool,
        disclose_me: bool,
    ) -> Result<Option<Publication>, WampError> {
        if !self.node.access().allows(Action::Publish, &topic, &self.identity.authid, &self.identity.authroles) {
            let msg = format!("role may not publish to '{}'", excerpt(&topic));
            return Err(WampError::new(errors::NOT_AUTHORIZED, msg));
        }
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

    /// Starts a procedure call; `reply` turns its outcome into the protocol's answer frame.
    pub(super) fn call(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        procedure: String,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        reply: impl FnOnce(Result<CallResult, CallError>) -> String + 'static,
    ) {
        metrics::inc(&self.node.metrics().calls_total);
        let limit = self.node.settings().websocket.max_pending_calls;
        if self.pending_calls >= limit {
            let error = CallError::new(errors::TOO_MANY_CALLS, format!("at most {limit} calls may be in flight"));
            metrics::inc(&self.node.metrics().call_errors_total);
            ctx.text(reply(Err(error)));
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
            let error = CallError::new(errors::NO_SUCH_PROCEDURE, format!("no procedure '{}'", excerpt(&procedure)));
            ctx.text(reply(Err(error)));
            return;
        };
        self.pending_calls += 1;
        ctx.spawn(future.into_actor(self).map(move |result, this, ctx| {
            this.pending_calls -= 1;
            if result.is_err() {
                metrics::inc(&this.node.metrics().call_errors_total);
            }
            if this.state == Phase::Established {
                ctx.text(reply(result));
            }
        }));
    }
}
