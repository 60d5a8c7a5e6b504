//! WAMP v2 (`wamp.2.json`): HELLO, the session's messages after it, and WELCOME. One method per request;
//! each returns a [`ConnectionError`] that [`Connection::fail`] answers as [`v2_reply`] says.

use super::*;

use v2::Message as M;

/// How a v2 message is answered when it is refused: ERROR for a request, nothing for a PUBLISH without
/// `acknowledge` (an unsolicited ERROR would make autobahn tear the session down) or for what is no request.
fn v2_reply(message: &M) -> Reply {
    let (code, request) = match message {
        M::Subscribe { request, .. } => (code::SUBSCRIBE, *request),
        M::Unsubscribe { request, .. } => (code::UNSUBSCRIBE, *request),
        M::Publish { request, options, .. } if acknowledged(options) => (code::PUBLISH, *request),
        M::Call { request, .. } => (code::CALL, *request),
        M::Register { request, .. } => (code::REGISTER, *request),
        M::Unregister { request, .. } => (code::UNREGISTER, *request),
        _ => return Reply::Unanswered,
    };
    Reply::V2 { code, request }
}

/// Whether a PUBLISH asks for PUBLISHED (or ERROR).
fn acknowledged(options: &Map<String, Value>) -> bool {
    options.get("acknowledge").and_then(Value::as_bool).unwrap_or(false)
}

impl Connection {
    /// Handles one v2 message: HELLO first, then the session's requests.
    pub(super) fn on_v2(&mut self, ctx: &mut ws::WebsocketContext<Self>, message: M) {
        let reply = v2_reply(&message);
        let handled = match self.state {
            Phase::AwaitingHello => self.v2_hello(ctx, message),
            Phase::AwaitingAuthenticate => self.v2_authenticate(ctx, message),
            _ => self.v2_established(ctx, message),
        };
        if let Err(error) = handled {
            self.fail(ctx, &reply, error);
        }
    }

    /// The first message: HELLO for this router's realm establishes the session.
    fn v2_hello(&mut self, ctx: &mut ws::WebsocketContext<Self>, message: M) -> Result<(), ConnectionError> {
        let M::Hello { realm, details } = message else {
            return Err(ConnectionError::violation("the first message must be HELLO"));
        };
        let expected = &self.node.settings().server.realm;
        if !expected.is_empty() && &realm != expected {
            return Err(ConnectionError::NoSuchRealm(realm));
        }
        if !uri::is_valid_v2(&realm) {
            return Err(ConnectionError::violation("HELLO realm is not a valid URI"));
        }
        let methods: Vec<&str> = match details.get("authmethods") {
            None => Vec::new(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(_) => return Err(ConnectionError::violation("HELLO Details.authmethods must be a list of strings")),
        };
        let tokens = self.node.tokens().is_some();
        let authid = details.get("authid").and_then(Value::as_str);
        if self.identity.authmethod == AuthMethod::Ticket && authid.is_some_and(|a| a != self.identity.authid) {
            let msg = format!("HELLO authid '{}' is not the bearer token's subject", excerpt(authid.unwrap_or("")));
            return Err(ConnectionError::AuthenticationFailed(msg));
        }
        // A socket that came with a bearer token is authenticated already; a `ticket` is asked for otherwise.
        if methods.contains(&"ticket") && tokens && self.identity.authmethod != AuthMethod::Ticket {
            self.ticket_authid = authid.map(str::to_owned);
            self.state = Phase::AwaitingAuthenticate;
            self.send_v2(ctx, M::Challenge { method: "ticket".into(), extra: Map::new() });
            return Ok(());
        }
        let offered = |m: &&str| matches!(*m, "anonymous" | "cookie") || (*m == "ticket" && tokens);
        if !methods.is_empty() && !methods.iter().any(offered) {
            let ours = if tokens { "ticket, cookie, anonymous" } else { "cookie, anonymous" };
            let msg = format!(
                "none of the offered authmethods ({}) is available; this router has: {ours}",
                methods.join(", ")
            );
            return Err(ConnectionError::NoAuthMethod(msg));
        }
        self.establish(ctx);
        Ok(())
    }

    /// AUTHENTICATE after a `ticket` CHALLENGE: the JWT's identity replaces the cookie's (the web session is
    /// detached), unless the cookie belongs to another logged-in user or the HELLO's `authid` is not the
    /// token's subject.
    fn v2_authenticate(&mut self, ctx: &mut ws::WebsocketContext<Self>, message: M) -> Result<(), ConnectionError> {
        let authid = self.ticket_authid.take();
        let M::Authenticate { signature, .. } = message else {
            return Err(ConnectionError::violation("AUTHENTICATE was expected after CHALLENGE"));
        };
        let tokens = self.node.tokens().cloned().expect("a ticket is challenged only with [auth] keys");
        let (identity, expires_at) =
            tokens.verify_until(&signature).map_err(|e| ConnectionError::AuthenticationFailed(e.0))?;
        if authid.as_ref().is_some_and(|a| *a != identity.authid) {
            let msg = format!("HELLO authid '{}' is not the token's subject", excerpt(authid.as_deref().unwrap_or("")));
            return Err(ConnectionError::AuthenticationFailed(msg));
        }
        if self.identity.authmethod == AuthMethod::Cookie && self.identity.authid != identity.authid {
            let msg = format!(
                "the cookie's user ({}) and the token's ({}) differ",
                excerpt(&self.identity.authid),
                excerpt(&identity.authid)
            );
            return Err(ConnectionError::AuthenticationFailed(msg));
        }
        let sessions = &self.node.settings().session;
        if sessions.on_too_many == crate::config::OnTooMany::Reject && self.node.caps().user_full(&identity.authid) {
            let msg = format!(
                "too many sockets: a user may hold {} (session.max_sockets_per_user)",
                sessions.max_sockets_per_user
            );
            return Err(ConnectionError::AuthenticationFailed(msg));
        }
        self.web.forget();
        self.identity = identity;
        self.uncount_user();
        self.count_user(ctx);
        self.end_at(ctx, expires_at);
        self.establish(ctx);
        Ok(())
    }

    /// A message of an established session.
    fn v2_established(&mut self, ctx: &mut ws::WebsocketContext<Self>, message: M) -> Result<(), ConnectionError> {
        match message {
            M::Hello { .. } => return Err(ConnectionError::violation("HELLO received on an established session")),
            M::Goodbye { .. } => {
                self.send_v2(ctx, M::goodbye(errors::GOODBYE_AND_OUT, "goodbye"));
                self.close(ctx, Close::Goodbye);
            }
            M::Abort { .. } => self.close(ctx, Close::ClientAbort),
            M::Subscribe { request, options, topic } => self.v2_subscribe(ctx, request, &options, topic)?,
            M::Unsubscribe { request, subscription } => self.v2_unsubscribe(request, subscription)?,
            M::Publish { request, options, topic, args, kwargs } => {
                self.v2_publish(ctx, request, &options, topic, Payload { args, kwargs })?
            }
            M::Call { request, procedure, args, kwargs, .. } => {
                if !uri::is_valid_v2(&procedure) {
                    let msg = format!("'{}' is not a valid procedure URI", excerpt(&procedure));
                    return Err(WampError::new(errors::INVALID_URI, msg).into());
                }
                let reply = Reply::V2 { code: code::CALL, request };
                self.call(ctx, reply, procedure, args.unwrap_or_default(), kwargs.unwrap_or_default());
            }
            M::Register { .. } => {
                let msg = "client callees are not supported: procedures are registered on the server";
                return Err(WampError::new(errors::NOT_AUTHORIZED, msg).into());
            }
            M::Unregister { .. } => {
                return Err(WampError::new(errors::NO_SUCH_REGISTRATION, "no such registration").into())
            }
            // CANCEL: calls run to completion; the caller still gets its RESULT or ERROR (call_canceling is
            // not announced, so well-behaved clients do not send it).
            M::Unimplemented { code: code::CANCEL, .. } => {}
            M::Unimplemented { name, .. } => {
                let msg = format!("{name} is not valid here: this router has no client callees");
                return Err(ConnectionError::violation(msg));
            }
            other => {
                let msg = format!("{} is not valid from a client of this router", other.name());
                return Err(ConnectionError::violation(msg));
            }
        }
        Ok(())
    }

    /// SUBSCRIBE: options and URI checked here, the rest in [`subscribe`](Self::subscribe).
    fn v2_subscribe(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        request: Id,
        options: &Map<String, Value>,
        topic: String,
    ) -> Result<(), WampError> {
        let options =
            SubscribeOptions::parse(options).map_err(|e| WampError::new(errors::INVALID_ARGUMENT, e.to_string()))?;
        if !uri::is_valid_v2_pattern(&topic, options.policy) {
            let msg = format!("'{}' is not a valid {} subscription URI", excerpt(&topic), options.policy.as_str());
            return Err(WampError::new(errors::INVALID_URI, msg));
        }
        let key = TopicKey { uri: Arc::from(topic.as_str()), policy: options.policy };
        let catch_up = match (options.get_retained, options.resume_after) {
            (_, Some(after)) => subscriptions::CatchUp::ResumeAfter(after),
            (true, None) => subscriptions::CatchUp::Retained,
            (false, None) => subscriptions::CatchUp::Nothing,
        };
        self.subscribe(ctx, key, Some(request), catch_up)
    }

    /// UNSUBSCRIBE: the broker answers UNSUBSCRIBED once the topic has let go.
    fn v2_unsubscribe(&mut self, request: Id, subscription: Id) -> Result<(), WampError> {
        let Some(key) = self.subscriptions.remove_id(subscription) else {
            return Err(WampError::new(errors::NO_SUCH_SUBSCRIPTION, "no such subscription"));
        };
        self.node.clients().unsubscribed(self.session, key.clone(), subscription);
        self.node.broker().do_send(Unsubscribe { key, session: self.session, request: Some(request) });
        Ok(())
    }

    /// PUBLISH: checked, handed to the broker, and acknowledged if asked.
    fn v2_publish(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        request: Id,
        options: &Map<String, Value>,
        topic: String,
        payload: Payload,
    ) -> Result<(), WampError> {
        let acknowledge = acknowledged(options);
        let options =
            PublishOptions::parse(options).map_err(|e| WampError::new(errors::INVALID_ARGUMENT, e.to_string()))?;
        if !uri::is_valid_v2(&topic) {
            let msg = format!("'{}' is not a valid topic URI", excerpt(&topic));
            return Err(WampError::new(errors::INVALID_URI, msg));
        }
        if uri::is_reserved(&topic) {
            let msg =
                format!("'{}' is in a namespace reserved for the router (wamp., switchboard.user.)", excerpt(&topic));
            return Err(WampError::new(errors::INVALID_URI, msg));
        }
        let retention = &self.node.settings().retention;
        if options.retain
            && !crate::topic::access::sees_identities(retention.roles.as_deref(), &self.identity.authroles)
        {
            let msg = "this role may not retain events (retention.roles)";
            return Err(WampError::new(errors::NOT_AUTHORIZED, msg));
        }
        let publish = PublishRequest { payload, filters: options.filters };
        let Some(publication) = self.prepare_publication(topic, publish, options.exclude_me, options.disclose_me)?
        else {
            if acknowledge {
                self.send_v2(ctx, M::Published { request, publication: crate::wamp::id::random() });
            }
            return Ok(());
        };
        let publication = Arc::new(publication);
        let retained = options.retain.then(|| self.retain(publication.clone()));
        match acknowledge {
            false => {
                if let Some(retained) = retained {
                    ctx.spawn(retained.into_actor(self).map(|_, _, _| ()));
                }
                self.node.broker().do_send(Publish(publication));
            }
            true => self.publish_acknowledged(ctx, request, publication, retained),
        }
        Ok(())
    }

    /// Keeps `publication` as its topic's retained event; the future says whether it was kept (failures are
    /// logged).
    fn retain(&self, publication: Arc<Publication>) -> impl std::future::Future<Output = Result<(), String>> {
        let (retention, settings) = (self.node.retention().clone(), self.node.settings().clone());
        async move {
            let kept = retention.retain(&publication, &settings.retention).await.map_err(|e| e.to_string());
            if let Err(e) = &kept {
                log::warn!("retained event of '{}' not kept: {e}", crate::logfmt::Escaped(&publication.topic));
            }
            kept
        }
    }

    /// Publishes and answers PUBLISHED only once the publication is delivered locally and handed to the other
    /// nodes, and kept as the retained event if asked (ERROR if either failed).
    fn publish_acknowledged(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        request: Id,
        publication: Arc<Publication>,
        retained: Option<impl std::future::Future<Output = Result<(), String>> + 'static>,
    ) {
        let id = publication.id;
        let sent = self.node.broker().send(Publish(publication));
        let both = async move {
            let kept = match retained {
                Some(retained) => retained.await,
                None => Ok(()),
            };
            (sent.await, kept)
        };
        ctx.spawn(both.into_actor(self).map(move |(result, kept), this, ctx| {
            if this.state != Phase::Established {
                return;
            }
            let refused = match (result, kept) {
                (Ok(Ok(())), Ok(())) => return this.send_v2(ctx, M::Published { request, publication: id }),
                (Ok(Err(e)), _) => WampError::new(errors::BACKPLANE_UNAVAILABLE, e.to_string()),
                (Err(e), _) => WampError::new(errors::RUNTIME_ERROR, e.to_string()),
                (Ok(Ok(())), Err(e)) => {
                    let msg = format!("published, but not kept as the retained event: {e}");
                    WampError::new(errors::REGISTRY_UNAVAILABLE, msg)
                }
            };
            this.fail(ctx, &Reply::V2 { code: code::PUBLISH, request }, refused.into());
        }));
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
            Protocol::V2(_) => {
                let details = welcome_details(&self.identity);
                self.send_v2(ctx, M::Welcome { session: self.session, details });
            }
        }
    }
}

/// WELCOME's details: who the client is, and what this router announces it does.
fn welcome_details(identity: &Identity) -> Map<String, Value> {
    let details = json!({
        "authid": identity.authid,
        "authrole": identity.authrole(),
        "authmethod": identity.authmethod.as_str(),
        "authprovider": "switchboard",
        "authextra": { "authroles": identity.authroles },
        "agent": SERVER_AGENT,
        "roles": {
            "broker": { "features": {
                "publisher_identification": true,
                "publisher_exclusion": true,
                "subscriber_blackwhite_listing": true,
                "pattern_based_subscription": true,
                "session_meta_api": true,
                "subscription_meta_api": true,
                "event_retention": true,
                "event_history": true,
            }},
            "dealer": { "features": { "session_meta_api": true, "testament_meta_api": true }},
        },
    });
    let Value::Object(details) = details else { unreachable!("json! object literal") };
    details
}
