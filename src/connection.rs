//! The connection actor: one per WebSocket, speaking WAMP v2 or v1 to one client.
//!
//! It owns everything about its socket and nothing global: the handshake state, its subscriptions (so it
//! leaves exactly the topics it joined when it stops), its v1 CURIE prefixes, its rate limiter and the
//! counters of its outbound queue. Protocol rules come from the pure codecs in `wamp/`; delivery goes
//! through the broker; the client index learns of the session once it is established and forgets it in
//! `stopping`. Every way a client can misbehave ends in a defined answer (WAMP ERROR/ABORT, or a close
//! code), catalogued in the README (Protocol → "Bad input: the defined answer to each case"). Whatever ends a
//! connection, it is counted once in `switchboard_connections_closed_total`, under the first reason it closed
//! for (`close` records it, `stopped` counts it). Client input in its log lines goes through `logfmt::Escaped`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_http::ws::Item;
use actix_web_actors::ws::{self, CloseCode, ProtocolError};
use serde_json::{json, Map, Value};

use crate::caps::Slot;
use crate::clients::{ClientInfo, Disconnect};
use crate::config::{OnRevoked, ReloadPolicy};
use crate::logfmt::Escaped;
use crate::metrics::{self, CloseReason};
use crate::node::Switchboard;
use crate::outbox::{Outbox, OutboxState, Wake};
use crate::rpc::{Call, CallError, CallResult};
use crate::session::bridge::{InvalidReason, InvalidSession, Resolved};
use crate::session::store::SessionState;
use crate::session::{AuthMethod, Caller, Identity, SessionHandle};
use crate::topic::access::Action;
use crate::topic::actor::{Joined, Reidentify};
use crate::topic::broker::{Publish, Subscribe, Unsubscribe, UpdateSubscriber};
use crate::topic::handler::{PublishDecision, PublishRequest};
use crate::topic::{Payload, Publication, Publisher, Subscriber, TopicInstance, TopicKey};
use crate::transport::Verdict;
use crate::wamp::errors::{excerpt, WampError};
use crate::wamp::uri::{self, MatchPolicy};
use crate::wamp::v2::{code, PublishOptions, SubscribeOptions};
use crate::wamp::{errors, v1, v2, DecodeError, Id, Protocol};

/// Server identification sent in v1 WELCOME and v2 WELCOME `agent`.
pub const SERVER_AGENT: &str = concat!("switchboard/", env!("CARGO_PKG_VERSION"));

/// actix-web-actors reports a text frame that is not UTF-8 as an I/O error carrying the `Utf8Error` text;
/// every other I/O error means the peer went away.
pub(crate) fn is_bad_utf8(error: &std::io::Error) -> bool {
    error.to_string().contains("utf-8")
}

/// What `/metrics` counts a [`Disconnect`] under, by its WAMP reason URI (any reason an application makes up
/// counts as `kicked`: label values never come from outside the code).
fn disconnect_reason(uri: &str) -> CloseReason {
    match uri {
        errors::SYSTEM_SHUTDOWN => CloseReason::Shutdown,
        errors::TOO_MANY_SOCKETS => CloseReason::TooManySockets,
        _ => CloseReason::Kicked,
    }
}

/// Longest a WELCOME or SUBSCRIBED waits for the cluster registry to confirm the write.
const REGISTRY_ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Inbound messages that may wait for a `message`-policy session reload before the client is closed (1008).
const MAX_WAITING_FOR_RELOAD: usize = 1024;

/// A WebSocket close reason may carry at most 123 bytes of text (RFC 6455 §5.5: 125 minus the code).
const MAX_CLOSE_REASON: usize = 123;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// v2 only: waiting for HELLO.
    AwaitingHello,
    /// Session established: WAMP traffic flows.
    Established,
    /// A close was sent; everything inbound is ignored.
    Closing,
}

/// What a session store failure during a reload means.
#[derive(Debug, Clone, Copy)]
enum StoreErrorPolicy {
    /// Close with 1011 (messages must not be handled with an identity that could not be re-read).
    Close,
    /// Keep the socket and retry at the next revalidation.
    KeepSocket,
}

/// A subscription of this connection, by topic.
enum Subscription {
    /// Sent to the broker; these v2 SUBSCRIBE requests wait for [`Joined`].
    Pending(Vec<Id>),
    /// Joined with this subscription id.
    Active(Id),
}

/// Token bucket limiting inbound messages (one token each) or bytes (one token per byte).
struct RateLimiter {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl RateLimiter {
    fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter { tokens: burst, rate, burst, last: Instant::now() }
    }

    /// Takes `cost` tokens; `false` when the client is over its rate.
    fn take(&mut self, cost: f64) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// One WebSocket connection.
pub struct Connection {
    node: Switchboard,
    session: Id,
    identity: Identity,
    protocol: Protocol,
    state: Phase,
    registered: bool,
    outbox: Arc<OutboxState>,
    subscriptions: HashMap<TopicKey, Subscription>,
    by_id: HashMap<Id, TopicKey>,
    prefixes: v1::Prefixes,
    limiter: RateLimiter,
    /// Inbound bytes: parsing is the work a client makes the node do, so it is bounded per socket too.
    byte_limiter: RateLimiter,
    last_seen: Instant,
    pending_calls: usize,
    /// A fragmented text message being reassembled.
    fragments: Option<Vec<u8>>,
    /// The web session behind this socket, if any (logged in or not).
    web_session: Option<SessionHandle>,
    /// Its session key.
    web_key: Option<String>,
    /// Inbound messages waiting for a `message`-policy reload, in arrival order.
    waiting: VecDeque<String>,
    /// A session reload is in flight.
    reloading: bool,
    /// Why the socket's guarded input ended, if a frame broke a rule (see `transport::Guarded`).
    verdict: Verdict,
    /// This socket's place under `server.max_connections`, released with the actor.
    _slot: Slot,
    /// The logged-in user this socket counts for under `session.max_sockets_per_user`.
    counted_user: Option<String>,
    /// Why the connection is closing, once it is (counted in `/metrics` when the actor stops).
    closed_for: Option<CloseReason>,
}

impl Connection {
    /// A connection for a client that negotiated `protocol`, with WAMP session id `session` and the web
    /// session resolved before the upgrade.
    pub(crate) fn new(
        node: Switchboard,
        protocol: Protocol,
        session: Id,
        resolved: Resolved,
        slot: Slot,
        verdict: Verdict,
    ) -> Connection {
        let ws = &node.settings().websocket;
        let web_session = resolved.key.as_deref().map(|key| SessionHandle::new(node.sessions().clone(), key));
        Connection {
            session,
            identity: resolved.identity.unwrap_or_else(|| Identity::anonymous(session)),
            web_session,
            web_key: resolved.key,
            waiting: VecDeque::new(),
            reloading: false,
            protocol,
            state: Phase::AwaitingHello,
            registered: false,
            outbox: OutboxState::new(ws.outbound_queue, ws.outbound_bytes, node.metrics().outbound_queue_bytes.clone()),
            subscriptions: HashMap::new(),
            by_id: HashMap::new(),
            prefixes: v1::Prefixes::default(),
            limiter: RateLimiter::new(f64::from(ws.inbound_rate), f64::from(ws.inbound_burst)),
            byte_limiter: RateLimiter::new(ws.inbound_bytes_rate as f64, ws.inbound_bytes_burst() as f64),
            last_seen: Instant::now(),
            pending_calls: 0,
            fragments: None,
            verdict,
            _slot: slot,
            counted_user: None,
            closed_for: None,
            node,
        }
    }

    fn caller(&self) -> Caller {
        Caller {
            session: self.session,
            authid: self.identity.authid.clone(),
            authroles: self.identity.authroles.clone(),
            web_session: self.web_session.clone(),
        }
    }

    /// This connection's outbound queue, for a socket task that writes it directly.
    pub(crate) fn outbox(&self) -> Arc<OutboxState> {
        self.outbox.clone()
    }

    fn client_info(&self) -> ClientInfo {
        ClientInfo {
            session: self.session,
            authid: self.identity.authid.clone(),
            authroles: self.identity.authroles.clone(),
            authmethod: self.identity.authmethod,
            protocol: self.protocol.token(),
            node: self.node.node_id().to_owned(),
            connected_at: ClientInfo::now(),
        }
    }

    fn send_v2(&self, ctx: &mut ws::WebsocketContext<Self>, message: v2::Message) {
        ctx.text(message.encode());
    }

    fn send_v1(&self, ctx: &mut ws::WebsocketContext<Self>, message: v1::Message) {
        ctx.text(message.encode());
    }

    /// Closes the socket with `code` and a reason (truncated to what a close frame holds) and stops; `why` is
    /// what `/metrics` counts it under.
    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, why: CloseReason, code: CloseCode, reason: &str) {
        if self.state == Phase::Closing {
            return;
        }
        self.state = Phase::Closing;
        self.outbox.shut();
        self.closed_for = Some(why);
        let mut end = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        ctx.close(Some(ws::CloseReason { code, description: Some(reason[..end].to_owned()) }));
        ctx.stop();
    }

    /// A protocol violation: v2 gets ABORT first; both get close 1002.
    fn violation(&mut self, ctx: &mut ws::WebsocketContext<Self>, message: &str) {
        metrics::inc(&self.node.metrics().protocol_errors_total);
        self.abort(ctx, CloseReason::ProtocolError, message);
    }

    /// Ends the session for breaking the protocol's rules (`why`): v2 gets ABORT first; both get close 1002.
    fn abort(&mut self, ctx: &mut ws::WebsocketContext<Self>, why: CloseReason, message: &str) {
        log::debug!("session {}: protocol violation: {}", self.session, Escaped(message));
        if self.protocol == Protocol::V2 && self.state != Phase::Closing {
            self.send_v2(ctx, v2::Message::abort(errors::PROTOCOL_VIOLATION, message));
        }
        self.close(ctx, why, CloseCode::Protocol, message);
    }

    /// Counts this socket for its user under `session.max_sockets_per_user` (logged-in users only: an anonymous
    /// socket is its own user) and closes the user's oldest sockets beyond the cap.
    fn count_user(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.identity.authmethod != AuthMethod::Cookie {
            return;
        }
        let authid = self.identity.authid.clone();
        let oldest = self.node.caps().join_user(&authid, self.session, ctx.address().recipient());
        for control in oldest {
            let max = self.node.settings().session.max_sockets_per_user;
            log::info!("user {}: more than {max} sockets, closing the oldest", Escaped(&authid));
            control.do_send(Disconnect {
                code: u16::from(CloseCode::Policy),
                reason: errors::TOO_MANY_SOCKETS.to_owned(),
                message: format!("too many sockets for this user (at most {max})"),
            });
        }
        self.counted_user = Some(authid);
    }

    fn uncount_user(&mut self) {
        if let Some(authid) = self.counted_user.take() {
            self.node.caps().leave_user(&authid, self.session);
        }
    }

    /// The session is established: index it and greet the client.
    fn establish(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        self.state = Phase::Established;
        let registered = self.node.clients().register(self.client_info(), ctx.address().recipient());
        self.registered = true;
        metrics::add(&self.node.metrics().sessions, 1);
        let authid = Escaped(&self.identity.authid);
        log::debug!("session {} established ({}, {authid})", self.session, self.protocol.token());
        // In cluster mode, greet once the registry has the session (bounded): WELCOME means findable everywhere.
        // `wait` holds every other message of this actor meanwhile, so nothing overtakes the WELCOME.
        match registered {
            None => self.greet(ctx),
            Some(ack) => {
                let ack = tokio::time::timeout(REGISTRY_ACK_WAIT, ack);
                ctx.wait(ack.into_actor(self).map(|_, this, ctx| this.greet(ctx)));
            }
        }
    }

    /// Sends WELCOME.
    fn greet(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
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

    fn subscriber(&self, ctx: &mut ws::WebsocketContext<Self>) -> Subscriber {
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
    fn subscribe(
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

    /// Runs access rules and the topic handler. `Ok(None)`: the handler took care of it.
    fn prepare_publication(
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
    fn call(
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

    fn on_text(&mut self, ctx: &mut ws::WebsocketContext<Self>, text: &str) {
        metrics::inc(&self.node.metrics().messages_in_total);
        match self.protocol {
            Protocol::V2 => match v2::Message::decode(text) {
                Ok(message) => self.on_v2(ctx, message),
                Err(e) => self.on_decode_error(ctx, e),
            },
            Protocol::V1 => match v1::Message::decode(text) {
                Ok(message) => self.on_v1(ctx, message),
                Err(e) => self.on_decode_error(ctx, e),
            },
        }
    }

    fn on_decode_error(&mut self, ctx: &mut ws::WebsocketContext<Self>, error: DecodeError) {
        self.violation(ctx, &error.to_string());
    }

    fn on_v2(&mut self, ctx: &mut ws::WebsocketContext<Self>, message: v2::Message) {
        use v2::Message as M;
        if self.state == Phase::AwaitingHello {
            let M::Hello { realm, .. } = message else {
                return self.violation(ctx, "the first message must be HELLO");
            };
            let expected = &self.node.settings().server.realm;
            if !expected.is_empty() && &realm != expected {
                self.send_v2(ctx, M::abort(errors::NO_SUCH_REALM, format!("no realm '{}'", excerpt(&realm))));
                return self.close(ctx, CloseReason::NoSuchRealm, CloseCode::Normal, "no such realm");
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
                self.close(ctx, CloseReason::Goodbye, CloseCode::Normal, "goodbye");
            }
            M::Abort { .. } => self.close(ctx, CloseReason::ClientAbort, CloseCode::Normal, "aborted by client"),
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

    fn on_v1(&mut self, ctx: &mut ws::WebsocketContext<Self>, message: v1::Message) {
        use v1::Message as M;
        match message {
            // An over-long PREFIX is dropped like any refused v1 request; a connection past its prefix count closes.
            M::Prefix { prefix, uri } => {
                match self.prefixes.define(prefix, uri, self.node.settings().wamp.max_prefixes) {
                    Ok(()) => {}
                    Err(e @ v1::PrefixError::TooLong) => self.v1_refused(&e.to_string()),
                    Err(e @ v1::PrefixError::TooMany { .. }) => {
                        metrics::inc(&self.node.metrics().protocol_errors_total);
                        self.close(ctx, CloseReason::LimitExceeded, CloseCode::Policy, &e.to_string());
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
    fn v1_refused(&self, message: &str) {
        metrics::inc(&self.node.metrics().protocol_errors_total);
        log::debug!("session {}: v1 request refused: {}", self.session, Escaped(message));
    }

    fn heartbeat(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.outbox.overflowed() {
            return self.close_slow_consumer(ctx);
        }
        if self.last_seen.elapsed() > self.node.settings().websocket.idle_timeout {
            log::debug!("session {}: idle timeout", self.session);
            return self.close(ctx, CloseReason::IdleTimeout, CloseCode::Away, "idle timeout");
        }
        ctx.ping(b"");
    }

    fn close_slow_consumer(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.state != Phase::Closing {
            let (frames, bytes) = self.outbox.pending();
            log::warn!("session {}: closed as a slow consumer ({frames} frames, {bytes} bytes queued)", self.session);
        }
        self.close(ctx, CloseReason::SlowConsumer, CloseCode::Policy, "slow consumer: outbound queue full");
    }

    /// Handles a complete inbound text message.
    fn on_message(&mut self, ctx: &mut ws::WebsocketContext<Self>, text: &str) {
        if self.state == Phase::Closing {
            return;
        }
        let over = if !self.limiter.take(1.0) {
            Some("message")
        } else if !self.byte_limiter.take(text.len() as f64) {
            Some("byte")
        } else {
            None
        };
        if let Some(what) = over {
            log::warn!("session {}: closed for exceeding the inbound {what} rate", self.session);
            let reason = format!("{what} rate limit exceeded");
            return self.close(ctx, CloseReason::RateLimited, CloseCode::Policy, &reason);
        }
        if self.node.settings().session.reload == ReloadPolicy::Message && self.web_key.is_some() {
            if self.waiting.len() >= MAX_WAITING_FOR_RELOAD {
                let reason = "too many messages waiting for the session store";
                return self.close(ctx, CloseReason::LimitExceeded, CloseCode::Policy, reason);
            }
            self.waiting.push_back(text.to_owned());
            self.reload(ctx, StoreErrorPolicy::Close);
            return;
        }
        self.on_text(ctx, text);
    }

    /// Re-reads the session and applies it, then handles the messages waiting for it, in order. Messages
    /// arriving while the load is in flight wait too, and are handled with its result. `on_store_error` says
    /// what a store failure means here: closing (1011) before `message`-policy messages are handled with a
    /// stale identity, or nothing (a revalidation tries again next interval; a hiccup is not a logout).
    fn reload(&mut self, ctx: &mut ws::WebsocketContext<Self>, on_store_error: StoreErrorPolicy) {
        let Some(key) = self.web_key.clone() else { return };
        if self.reloading {
            return;
        }
        self.reloading = true;
        let bridge = self.node.sessions().clone();
        ctx.spawn(async move { bridge.load(&key).await }.into_actor(self).map(move |result, this, ctx| {
            this.reloading = false;
            match (result, on_store_error) {
                (Ok(state), _) => this.apply_state(ctx, state),
                (Err(e), StoreErrorPolicy::Close) => {
                    // debug: the session bridge summarises store failures in WARNs of its own.
                    log::debug!("session {}: {e}", this.session);
                    let reason = "session store unavailable";
                    return this.close(ctx, CloseReason::SessionStoreUnavailable, CloseCode::Error, reason);
                }
                (Err(e), StoreErrorPolicy::KeepSocket) => {
                    log::debug!("session {}: revalidation skipped: {e}", this.session)
                }
            }
            while let Some(text) = this.waiting.pop_front() {
                if this.state == Phase::Closing {
                    break;
                }
                this.on_text(ctx, &text);
            }
        }));
    }

    /// Applies a freshly loaded session state: identity changes take effect, a logout or expiry is revocation.
    fn apply_state(&mut self, ctx: &mut ws::WebsocketContext<Self>, state: Option<SessionState>) {
        let logged_in = self.identity.authmethod == AuthMethod::Cookie;
        let Some(state) = state else {
            if self.web_key.is_some() {
                self.revoked(ctx, InvalidReason::Revoked, true);
            }
            return;
        };
        match self.node.sessions().identity_from(&state) {
            Ok(Some(identity)) if identity != self.identity => self.reidentify(ctx, identity),
            Ok(Some(_)) => {}
            Ok(None) if logged_in => self.revoked(ctx, InvalidReason::Revoked, false),
            Ok(None) => {}
            Err(reason) => self.revoked(ctx, reason, false),
        }
    }

    /// The socket's user changed (role change, login after connect, downgrade): index and topics follow.
    fn reidentify(&mut self, ctx: &mut ws::WebsocketContext<Self>, identity: Identity) {
        log::info!("session {}: identity now {} {:?}", self.session, Escaped(&identity.authid), identity.authroles);
        self.identity = identity;
        self.uncount_user();
        self.count_user(ctx);
        if self.registered {
            self.node.clients().reidentify(self.client_info());
        }
        let keys: Vec<TopicKey> = self.subscriptions.keys().cloned().collect();
        if !keys.is_empty() {
            let update = Reidentify {
                session: self.session,
                authid: Arc::from(self.identity.authid.as_str()),
                authroles: Arc::from(self.identity.authroles.clone()),
                web_session: self.web_session.clone(),
            };
            self.node.broker().do_send(UpdateSubscriber { keys, update });
        }
    }

    /// The web session was logged out, expired or became invalid: close or downgrade, by policy.
    fn revoked(&mut self, ctx: &mut ws::WebsocketContext<Self>, reason: InvalidReason, gone: bool) {
        if self.state == Phase::Closing {
            return;
        }
        let event = InvalidSession { reason, session: Some(self.session), peer: None };
        self.node.sessions().report_invalid(event);
        match self.node.settings().session.on_revoked {
            OnRevoked::Close => {
                if self.protocol == Protocol::V2 && self.state == Phase::Established {
                    self.send_v2(ctx, v2::Message::goodbye(errors::SESSION_REVOKED, "session expired or logged out"));
                }
                self.close(ctx, CloseReason::SessionRevoked, CloseCode::Policy, "session expired or logged out");
            }
            OnRevoked::Anonymous => {
                if gone {
                    self.web_session = None;
                    self.web_key = None;
                }
                if self.identity.authmethod == AuthMethod::Cookie {
                    self.reidentify(ctx, Identity::anonymous(self.session));
                }
            }
        }
    }

    fn keepalive(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(key) = self.web_key.clone() else { return };
        let bridge = self.node.sessions().clone();
        let session = self.session;
        ctx.spawn(
            async move {
                if let Err(e) = bridge.refresh_ttl(&key).await {
                    log::debug!("session {session}: keep-alive failed: {e}");
                }
            }
            .into_actor(self),
        );
    }

    fn on_fragment(&mut self, ctx: &mut ws::WebsocketContext<Self>, item: Item) {
        let max = self.node.settings().websocket.max_message_size;
        let (bytes, last) = match item {
            Item::FirstBinary(_) => {
                let reason = "binary frames are not supported";
                return self.close(ctx, CloseReason::ProtocolError, CloseCode::Unsupported, reason);
            }
            Item::FirstText(b) => {
                if self.fragments.is_some() {
                    let reason = "new message started inside a fragmented one";
                    return self.close(ctx, CloseReason::ProtocolError, CloseCode::Protocol, reason);
                }
                self.fragments = Some(Vec::new());
                (b, false)
            }
            Item::Continue(b) => (b, false),
            Item::Last(b) => (b, true),
        };
        let Some(buffer) = self.fragments.as_mut() else {
            let reason = "continuation frame without a first frame";
            return self.close(ctx, CloseReason::ProtocolError, CloseCode::Protocol, reason);
        };
        if buffer.len() + bytes.len() > max {
            let reason = format!("message larger than {max} bytes");
            return self.close(ctx, CloseReason::MessageTooBig, CloseCode::Size, &reason);
        }
        buffer.extend_from_slice(&bytes);
        if last {
            let buffer = self.fragments.take().unwrap_or_default();
            match String::from_utf8(buffer) {
                Ok(text) => self.on_message(ctx, &text),
                Err(_) => {
                    self.close(ctx, CloseReason::ProtocolError, CloseCode::Invalid, "text message is not valid UTF-8")
                }
            }
        }
    }
}

impl Actor for Connection {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        metrics::add(&self.node.metrics().connections, 1);
        metrics::inc(&self.node.metrics().connections_accepted);
        self.count_user(ctx);
        let ws = &self.node.settings().websocket;
        ctx.run_interval(ws.ping_interval, |this, ctx| this.heartbeat(ctx));
        if self.web_key.is_some() {
            let session = &self.node.settings().session;
            if !session.keepalive_interval.is_zero() {
                ctx.run_interval(session.keepalive_interval, |this, ctx| this.keepalive(ctx));
            }
            ctx.run_interval(session.revalidate_interval, |this, ctx| this.reload(ctx, StoreErrorPolicy::KeepSocket));
        }
        match self.protocol {
            Protocol::V1 => self.establish(ctx),
            Protocol::V2 => {
                ctx.run_later(ws.hello_timeout, |this, ctx| {
                    if this.state == Phase::AwaitingHello {
                        this.abort(ctx, CloseReason::HelloTimeout, "no HELLO received in time");
                    }
                });
            }
        }
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.uncount_user();
        // Leave exactly the topics this session joined (pending ones too: their Subscribe went first).
        for (key, _) in self.subscriptions.drain() {
            self.node.broker().do_send(Unsubscribe { key, session: self.session, request: None });
        }
        self.by_id.clear();
        if self.registered {
            self.registered = false;
            self.node.clients().unregister(self.session);
            metrics::add(&self.node.metrics().sessions, -1);
            log::debug!("session {} closed", self.session);
        }
        Running::Stop
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        metrics::add(&self.node.metrics().connections, -1);
        // Ended without a reason of its own: the transport gave up on writing, or the peer just went away.
        let stalled = self.verdict.write_stalled().then_some(CloseReason::WriteTimeout);
        self.node.metrics().closed(self.closed_for.or(stalled).unwrap_or(CloseReason::ConnectionLost));
    }
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for Connection {
    fn handle(&mut self, item: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        match item {
            Ok(ws::Message::Text(text)) => {
                if self.fragments.is_some() {
                    let reason = "text frame inside a fragmented message";
                    return self.close(ctx, CloseReason::ProtocolError, CloseCode::Protocol, reason);
                }
                self.on_message(ctx, &text)
            }
            Ok(ws::Message::Binary(_)) => {
                metrics::inc(&self.node.metrics().protocol_errors_total);
                let reason = format!("binary frames are not supported on {}", self.protocol.token());
                self.close(ctx, CloseReason::ProtocolError, CloseCode::Unsupported, &reason)
            }
            Ok(ws::Message::Continuation(item)) => self.on_fragment(ctx, item),
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Close(reason)) => {
                if self.state != Phase::Closing {
                    self.state = Phase::Closing;
                    self.outbox.shut();
                    self.closed_for = Some(CloseReason::ClientClose);
                    ctx.close(reason);
                }
                ctx.stop();
            }
            Err(ProtocolError::Io(e)) if !is_bad_utf8(&e) => {
                // The peer vanished (reset, EOF mid-frame): not a protocol violation, just the end.
                log::debug!("session {}: connection lost: {e}", self.session);
                ctx.stop();
            }
            Err(error) => {
                metrics::inc(&self.node.metrics().protocol_errors_total);
                let max = self.node.settings().websocket.max_message_size;
                match error {
                    ProtocolError::Overflow => {
                        let reason = format!("message larger than {max} bytes");
                        self.close(ctx, CloseReason::MessageTooBig, CloseCode::Size, &reason)
                    }
                    ProtocolError::Io(e) if is_bad_utf8(&e) => {
                        let reason = "text message is not valid UTF-8";
                        self.close(ctx, CloseReason::ProtocolError, CloseCode::Invalid, reason)
                    }
                    other => {
                        let reason = format!("WebSocket protocol error: {other}");
                        self.close(ctx, CloseReason::ProtocolError, CloseCode::Protocol, &reason)
                    }
                }
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        if let Some(violation) = self.verdict.get() {
            metrics::inc(&self.node.metrics().protocol_errors_total);
            log::debug!("session {}: WebSocket input refused: {violation}", self.session);
            let code = CloseCode::from(violation.close_code());
            let why = if code == CloseCode::Size { CloseReason::MessageTooBig } else { CloseReason::ProtocolError };
            return self.close(ctx, why, code, &violation.to_string());
        }
        ctx.stop();
    }
}

impl Handler<Wake> for Connection {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        if self.outbox.overflowed() {
            return self.close_slow_consumer(ctx);
        }
        if self.outbox.has_writer() {
            // The socket's task writes the queue; a wake-up here only ever meant an overflow.
            return;
        }
        let frames = self.outbox.take();
        if self.state == Phase::Established {
            // All frames queued since the last wake-up leave together (one encode buffer, one write).
            for frame in frames {
                ctx.text(frame);
            }
        }
    }
}

impl Handler<Joined> for Connection {
    type Result = ();

    fn handle(&mut self, msg: Joined, ctx: &mut Self::Context) {
        let Some(entry) = self.subscriptions.get_mut(&msg.key) else { return };
        if let Subscription::Pending(waiting) = std::mem::replace(entry, Subscription::Active(msg.subscription)) {
            let recorded = if msg.key.policy == MatchPolicy::Exact && self.registered {
                self.node.clients().subscribed(self.session, &msg.key.uri)
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

impl Handler<Disconnect> for Connection {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Self::Context) {
        if self.protocol == Protocol::V2 && self.state == Phase::Established {
            self.send_v2(ctx, v2::Message::goodbye(&msg.reason, msg.message.clone()));
        }
        self.close(ctx, disconnect_reason(&msg.reason), CloseCode::from(msg.code), &msg.message);
    }
}
