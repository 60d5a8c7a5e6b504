//! The connection actor: one per WebSocket, speaking WAMP v2 or v1 to one client.
//!
//! **Owns** everything about its socket and nothing global: the handshake phase, its subscriptions (so it
//! leaves exactly the topics it joined when it stops), its v1 CURIE prefixes, its inbound rate budgets and
//! calls in flight, the fragmented message being reassembled, its web session and the messages waiting for its
//! reload, and the counters of its outbound queue. Every way a client can misbehave ends in a defined answer
//! (WAMP ERROR/ABORT, v1 CALLERROR, or a close code), catalogued in the README (Protocol → "Bad input: the
//! defined answer to each case"): handlers return a typed `ConnectionError` that `fail` (in `error.rs`)
//! answers in one place, and every close names a `Close` of the one catalogue (code, reason, metrics label).
//! Whatever ends a connection, it is counted once in `switchboard_connections_closed_total`, under the first
//! reason it closed for (`close` records it, `stopped` counts it). Client input in its log lines goes through
//! `logfmt::Escaped`.
//!
//! **Files**, by responsibility:
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | the actor's life: state, start (timers, the HELLO deadline), heartbeat, `close`, the handshake's end (registration), stopping; the outbox `Wake` and `Disconnect` handlers |
//! | `frames.rs` | frames → messages: the stream handler, reassembly (`Fragments`), rate limits, messages held for a reload |
//! | `wamp_v2.rs`, `wamp_v1.rs` | the two protocols, one method per request, and WELCOME |
//! | `requests.rs` | what PUBLISH and CALL share across protocols: access, topic handler, backlog; procedure dispatch |
//! | `subscriptions.rs` | joining and leaving topics (`Subscriptions`); the `Joined` handler (SUBSCRIBED after the topic and the registry confirm) |
//! | `web_session.rs` | reload, revalidation, revocation, keep-alive (`WebSession`) |
//! | `limits.rs` | token buckets and the pending-call count (`Limits`) |
//! | `error.rs` | `ConnectionError`, `Reply` and `fail`: errors to ERROR/ABORT/CALLERROR/close |
//! | `close.rs` | the `Close` catalogue |
//!
//! Text arrives as UTF-8: the frame guard (`crate::frame`) refuses any text message that is not before it is
//! complete, so nothing here inspects error texts to find out.
//!
//! **Must not touch**: `api` (which starts it, not the reverse), `transport` beyond the socket's `Verdict`,
//! `cluster` (the node's client index and broker stand between), and the outbox's internals beyond
//! `OutboxState`'s methods. Protocol rules come from the pure codecs in `wamp/`; delivery goes through the
//! broker; the client index learns of the session once it is established and forgets it in `stopping`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_http::ws::Item;
use actix_web_actors::ws::{self, ProtocolError};
use serde_json::{json, Map, Value};

use crate::caps::Slot;
use crate::config::{OnRevoked, ReloadPolicy};
use crate::logfmt::Escaped;
use crate::metrics::{self, CloseReason};
use crate::model::{ClientInfo, Disconnect};
use crate::outbox::{Outbox, OutboxState, Wake};
use crate::rpc::{Call, CallResult};
use crate::services::Services;
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

mod catch_up;
mod close;
mod error;
mod frames;
mod limits;
mod requests;
mod subscriptions;
mod testaments;
mod timers;
mod wamp_v1;
mod wamp_v2;
mod web_session;

use close::Close;
use error::{ConnectionError, Reply};
use frames::Fragments;
use limits::Limits;
use subscriptions::{Subscription, Subscriptions};
use testaments::Testaments;
use timers::Schedule;
use web_session::{StoreErrorPolicy, WebSession};

/// Server identification sent in v1 WELCOME and v2 WELCOME `agent`.
pub const SERVER_AGENT: &str = concat!("switchboard/", env!("CARGO_PKG_VERSION"));

/// Longest a WELCOME or SUBSCRIBED waits for the cluster registry to confirm the write.
const REGISTRY_ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A WebSocket close reason may carry at most 123 bytes of text (RFC 6455 §5.5: 125 minus the code).
const MAX_CLOSE_REASON: usize = 123;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// v2 only: waiting for HELLO.
    AwaitingHello,
    /// v2 only: CHALLENGE sent for a `ticket`, waiting for AUTHENTICATE.
    AwaitingAuthenticate,
    /// Session established: WAMP traffic flows.
    Established,
    /// A close was sent; everything inbound is ignored.
    Closing,
}

/// One WebSocket connection.
pub struct Connection {
    node: Arc<Services>,
    session: Id,
    identity: Identity,
    protocol: Protocol,
    state: Phase,
    registered: bool,
    outbox: Arc<OutboxState>,
    subscriptions: Subscriptions,
    prefixes: v1::Prefixes,
    /// Inbound rate budgets and calls in flight.
    limits: Limits,
    last_seen: Instant,
    fragments: Fragments,
    /// The web session behind this socket, if any (logged in or not), and messages waiting for its reload.
    web: WebSession,
    /// Why the socket's guarded input ended, if a frame broke a rule (see `transport::Guarded`).
    verdict: Verdict,
    /// This socket's place under `server.max_connections`, released with the actor.
    _slot: Slot,
    /// The logged-in user this socket counts for under `session.max_sockets_per_user`.
    counted_user: Option<String>,
    /// Why the connection is closing, once it is (counted in `/metrics` when the actor stops).
    closed_for: Option<CloseReason>,
    /// The timer that aborts a v2 session without HELLO, until the HELLO comes.
    hello_deadline: Option<SpawnHandle>,
    /// The HELLO's `authid` while a `ticket` CHALLENGE waits for AUTHENTICATE.
    ticket_authid: Option<String>,
    /// A bearer token's end (Unix seconds), scheduled when the actor starts.
    token_expires_at: Option<u64>,
    /// Ping, web session keep-alive and revalidation, on one timer (set in `started`).
    schedule: Option<Schedule>,
    /// Publications to make when the session ends (`wamp.session.add_testament`), if any.
    testaments: Option<Box<Testaments>>,
}

impl Connection {
    /// A connection for a client that negotiated `protocol`, with WAMP session id `session` and the web
    /// session resolved before the upgrade.
    pub(crate) fn new(
        node: Arc<Services>,
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
            web: WebSession::new(web_session),
            protocol,
            state: Phase::AwaitingHello,
            registered: false,
            outbox: OutboxState::new(
                ws.outbound_queue,
                ws.outbound_bytes,
                node.metrics().outbound_queue_bytes.clone(),
                protocol.binary(),
            ),
            subscriptions: Subscriptions::default(),
            prefixes: v1::Prefixes::default(),
            limits: Limits::new(ws),
            last_seen: Instant::now(),
            fragments: Fragments::default(),
            verdict,
            _slot: slot,
            counted_user: None,
            closed_for: None,
            hello_deadline: None,
            ticket_authid: None,
            token_expires_at: resolved.expires_at,
            schedule: None,
            testaments: None,
            node,
        }
    }

    /// Who this connection is, for topic and RPC handlers.
    fn caller(&self) -> Caller {
        Caller {
            session: self.session,
            authid: self.identity.authid.clone(),
            authroles: self.identity.authroles.clone(),
            web_session: self.web.handle(),
        }
    }

    /// This connection's outbound queue, for a socket task that writes it directly.
    pub(crate) fn outbox(&self) -> Arc<OutboxState> {
        self.outbox.clone()
    }

    /// What the client index records of this session.
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

    /// Sends a v2 message in the session's serializer.
    fn send_v2(&self, ctx: &mut ws::WebsocketContext<Self>, message: v2::Message) {
        match self.protocol.binary() {
            None => ctx.text(message.encode()),
            Some(serializer) => ctx.binary(message.encode_as(serializer)),
        }
    }

    /// Sends a frame the codecs built as JSON text (a v1 frame, or a v2 reply or replayed EVENT built once as
    /// `wamp.2.json`); a session on a binary serializer gets it re-encoded in its own.
    fn send_text(&self, ctx: &mut ws::WebsocketContext<Self>, frame: String) {
        let Some(serializer) = self.protocol.binary() else { return ctx.text(frame) };
        match serializer.transcode_json(&frame) {
            Ok(bytes) => ctx.binary(bytes),
            // Every such frame is written by serde_json: this would be a bug, not bad input.
            Err(e) => log::error!("session {}: an outgoing frame is not JSON ({e}); not sent", self.session),
        }
    }

    /// Sends a v1 message.
    fn send_v1(&self, ctx: &mut ws::WebsocketContext<Self>, message: v1::Message) {
        ctx.text(message.encode());
    }

    /// Closes the socket with `code` and a reason (truncated to what a close frame holds) and stops; `why` is
    /// what `/metrics` counts it under.
    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, close: Close<'_>) {
        if self.state == Phase::Closing {
            return;
        }
        self.state = Phase::Closing;
        self.outbox.shut();
        self.closed_for = Some(close.counted_as());
        let (code, reason) = (close.code(), close.reason());
        let mut end = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        ctx.close(Some(ws::CloseReason { code, description: Some(reason[..end].to_owned()) }));
        ctx.stop();
    }

    /// Ends the session for breaking the protocol's rules (`why`): v2 gets ABORT first; both get close 1002.
    fn abort(&mut self, ctx: &mut ws::WebsocketContext<Self>, close: Close<'_>) {
        let message = close.reason();
        log::debug!("session {}: protocol violation: {}", self.session, Escaped(message));
        if self.protocol.is_v2() && self.state != Phase::Closing {
            self.send_v2(ctx, v2::Message::abort(errors::PROTOCOL_VIOLATION, message));
        }
        self.close(ctx, close);
    }

    /// Counts this socket for its user under `session.max_sockets_per_user` (logged-in users only: an anonymous
    /// socket is its own user) and closes the user's oldest sockets beyond the cap.
    fn count_user(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.identity.authmethod == AuthMethod::Anonymous {
            return;
        }
        let authid = self.identity.authid.clone();
        let oldest = self.node.caps().join_user(&authid, self.session, ctx.address().recipient());
        for control in oldest {
            let max = self.node.settings().session.max_sockets_per_user;
            log::info!("user {}: more than {max} sockets, closing the oldest", Escaped(&authid));
            control.do_send(close::too_many_sockets(max));
        }
        self.counted_user = Some(authid);
    }

    /// Stops counting this socket for its user under `session.max_sockets_per_user`.
    fn uncount_user(&mut self) {
        if let Some(authid) = self.counted_user.take() {
            self.node.caps().leave_user(&authid, self.session);
        }
    }

    /// The session is established: index it and greet the client.
    fn establish(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        self.state = Phase::Established;
        // The HELLO deadline is met: free its timer now rather than when it would have fired.
        if let Some(deadline) = self.hello_deadline.take() {
            ctx.cancel_future(deadline);
        }
        let registered = self.node.clients().register(self.client_info(), ctx.address().recipient());
        self.registered = true;
        metrics::add(&self.node.metrics().sessions, 1);
        let authid = Escaped(&self.identity.authid);
        log::debug!("session {} established ({}, {authid})", self.session, self.protocol.token());
        // Greet once the client index (and in cluster mode the registry) has the session, bounded: WELCOME means
        // findable everywhere. `wait` holds every other message of this actor meanwhile, so nothing overtakes it.
        let ack = tokio::time::timeout(REGISTRY_ACK_WAIT, registered);
        ctx.wait(ack.into_actor(self).map(|_, this, ctx| this.greet(ctx)));
    }

    /// Ends a token session when its token does (`at`: Unix seconds): GOODBYE `switchboard.close.token_expired`
    /// (v2), close 1008. The client reconnects with a fresh token.
    fn end_at(&mut self, ctx: &mut ws::WebsocketContext<Self>, at: u64) {
        // A token valid for centuries still gets a timer the runtime can hold.
        const LONGEST: u64 = 10 * 365 * 24 * 3600;
        let now = crate::model::now_millis() / 1000;
        ctx.run_later(std::time::Duration::from_secs(at.saturating_sub(now).min(LONGEST)), |this, ctx| {
            if this.state == Phase::Closing {
                return;
            }
            log::info!("session {}: token expired", this.session);
            if this.protocol.is_v2() && this.state == Phase::Established {
                this.send_v2(
                    ctx,
                    v2::Message::goodbye(errors::TOKEN_EXPIRED, "token expired: reconnect with a new one"),
                );
            }
            this.close(ctx, Close::TokenExpired);
        });
    }

    /// Every `websocket.ping_interval`: closes a slow consumer or an idle client, else pings.
    fn heartbeat(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.outbox.overflowed() {
            return self.close_slow_consumer(ctx);
        }
        if self.last_seen.elapsed() > self.node.settings().websocket.idle_timeout {
            log::debug!("session {}: idle timeout", self.session);
            return self.close(ctx, Close::IdleTimeout);
        }
        ctx.ping(b"");
    }

    /// Sets the connection's one timer for its next periodic job.
    fn arm_timer(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(schedule) = &self.schedule else { return };
        let wait = schedule.next().saturating_duration_since(Instant::now());
        ctx.run_later(wait, |this, ctx| this.tick(ctx));
    }

    /// Runs whatever periodic work is due (ping first: it may close the connection), then re-arms the timer.
    fn tick(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(schedule) = &mut self.schedule else { return };
        let due = schedule.take_due(Instant::now());
        if due.ping {
            self.heartbeat(ctx);
        }
        if self.state == Phase::Closing {
            return;
        }
        if due.keepalive {
            self.keepalive(ctx);
        }
        if due.revalidate {
            self.reload(ctx, StoreErrorPolicy::KeepSocket);
        }
        self.arm_timer(ctx);
    }

    /// Closes a client whose outbound queue overflowed (1008), logging what was queued.
    fn close_slow_consumer(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.state != Phase::Closing {
            let (frames, bytes) = self.outbox.pending();
            log::warn!("session {}: closed as a slow consumer ({frames} frames, {bytes} bytes queued)", self.session);
        }
        self.close(ctx, Close::SlowConsumer);
    }
}

impl Actor for Connection {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        metrics::add(&self.node.metrics().connections, 1);
        metrics::inc(&self.node.metrics().connections_accepted);
        self.count_user(ctx);
        if let Some(at) = self.token_expires_at.take() {
            self.end_at(ctx, at);
        }
        let ws = &self.node.settings().websocket;
        let session = &self.node.settings().session;
        let web = self.web.exists();
        let schedule = Schedule::new(
            Instant::now(),
            ws.ping_interval,
            web.then_some(session.keepalive_interval),
            web.then_some(session.revalidate_interval),
        );
        self.schedule = Some(schedule);
        match self.protocol {
            Protocol::V1 => self.establish(ctx),
            Protocol::V2(_) => {
                let deadline = ctx.run_later(ws.hello_timeout, |this, ctx| {
                    if matches!(this.state, Phase::AwaitingHello | Phase::AwaitingAuthenticate) {
                        this.abort(ctx, Close::HelloTimeout("no HELLO (or AUTHENTICATE) received in time"));
                    }
                });
                self.hello_deadline = Some(deadline);
            }
        }
        self.arm_timer(ctx);
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.uncount_user();
        // Leave exactly the topics this session joined (pending ones too: their Subscribe went first).
        for key in self.subscriptions.drain() {
            self.node.broker().do_send(Unsubscribe { key, session: self.session, request: None });
        }
        if self.registered {
            self.registered = false;
            self.publish_testaments();
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
                if self.outbox.is_binary() {
                    ctx.binary(frame);
                } else if let Ok(text) = bytestring::ByteString::try_from(frame) {
                    // Always UTF-8: text queues only hold frames built from `String`s.
                    ctx.text(text);
                }
            }
        }
    }
}

impl Handler<Disconnect> for Connection {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Self::Context) {
        if self.protocol.is_v2() && self.state == Phase::Established {
            self.send_v2(ctx, v2::Message::goodbye(&msg.reason, msg.message.clone()));
        }
        self.close(ctx, Close::asked(&msg));
    }
}
