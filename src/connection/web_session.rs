//! The web session behind a socket: reloading it (per message or on an interval, as `session.reload` says),
//! following a changed identity into the topics and the client index, closing the socket when the session is
//! revoked, and keeping the web session alive while the socket is. [`WebSession`] is the bookkeeping: the
//! session, the messages held for a reload and whether one is in flight.

use super::*;

/// Inbound messages that may wait for a `message`-policy session reload before the client is closed (1008).
const MAX_WAITING_FOR_RELOAD: usize = 1024;

/// What a session store failure during a reload means.
#[derive(Debug, Clone, Copy)]
pub(super) enum StoreErrorPolicy {
    /// Close with 1011 (messages must not be handled with an identity that could not be re-read).
    Close,
    /// Keep the socket and retry at the next revalidation.
    KeepSocket,
}

/// More inbound messages than [`MAX_WAITING_FOR_RELOAD`] wait for a session reload.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many messages waiting for the session store")]
pub(super) struct TooManyWaiting;

/// The web session behind a socket, and the messages waiting for it to be re-read.
#[derive(Debug, Default)]
pub(super) struct WebSession {
    /// The web session, if the socket has one (logged in or not) and it was not logged out or expired since.
    handle: Option<SessionHandle>,
    /// Inbound messages waiting for a `message`-policy reload, in arrival order.
    waiting: VecDeque<String>,
    /// A session reload is in flight.
    reloading: bool,
}

impl WebSession {
    /// The socket's web session, if the upgrade request had one.
    pub(super) fn new(handle: Option<SessionHandle>) -> WebSession {
        WebSession { handle, ..WebSession::default() }
    }

    /// The web session, for handlers (topic and RPC) that read or write it.
    pub(super) fn handle(&self) -> Option<SessionHandle> {
        self.handle.clone()
    }

    /// Whether there is a web session to reload and keep alive.
    pub(super) fn exists(&self) -> bool {
        self.handle.is_some()
    }

    /// Holds `text` until the reload it waits for; refused when too many already wait.
    pub(super) fn hold(&mut self, text: &str) -> Result<(), TooManyWaiting> {
        if self.waiting.len() >= MAX_WAITING_FOR_RELOAD {
            return Err(TooManyWaiting);
        }
        self.waiting.push_back(text.to_owned());
        Ok(())
    }

    /// The next held message, in arrival order.
    pub(super) fn next_waiting(&mut self) -> Option<String> {
        self.waiting.pop_front()
    }

    /// Starts a reload: the session to re-read, unless there is none or a reload is already in flight.
    pub(super) fn begin_reload(&mut self) -> Option<SessionHandle> {
        let handle = self.handle.clone()?;
        if self.reloading {
            return None;
        }
        self.reloading = true;
        Some(handle)
    }

    /// The reload in flight is over.
    pub(super) fn end_reload(&mut self) {
        self.reloading = false;
    }

    /// The web session is gone (logged out or expired): nothing is reloaded or kept alive any more.
    pub(super) fn forget(&mut self) {
        self.handle = None;
    }
}

impl Connection {
    /// Re-reads the session and applies it, then handles the messages waiting for it, in order. Messages
    /// arriving while the load is in flight wait too, and are handled with its result. `on_store_error` says
    /// what a store failure means here: closing (1011) before `message`-policy messages are handled with a
    /// stale identity, or nothing (a revalidation tries again next interval; a hiccup is not a logout).
    pub(super) fn reload(&mut self, ctx: &mut ws::WebsocketContext<Self>, on_store_error: StoreErrorPolicy) {
        let Some(session) = self.web.begin_reload() else { return };
        let bridge = self.node.sessions().clone();
        ctx.spawn(async move { bridge.load(session.key()).await }.into_actor(self).map(move |result, this, ctx| {
            this.web.end_reload();
            match (result, on_store_error) {
                (Ok(state), _) => this.apply_state(ctx, state),
                (Err(e), StoreErrorPolicy::Close) => {
                    // debug: the session bridge summarises store failures in WARNs of its own.
                    log::debug!("session {}: {e}", this.session);
                    let reason = "session store unavailable";
                    return this.close(ctx, Close::SessionStoreUnavailable(reason));
                }
                (Err(e), StoreErrorPolicy::KeepSocket) => {
                    log::debug!("session {}: revalidation skipped: {e}", this.session)
                }
            }
            while let Some(text) = this.web.next_waiting() {
                if this.state == Phase::Closing {
                    break;
                }
                this.on_text(ctx, &text);
            }
        }));
    }

    /// Applies a freshly loaded session state: identity changes take effect, a logout or expiry is revocation.
    pub(super) fn apply_state(&mut self, ctx: &mut ws::WebsocketContext<Self>, state: Option<SessionState>) {
        let logged_in = self.identity.authmethod == AuthMethod::Cookie;
        let Some(state) = state else {
            if self.web.exists() {
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
    pub(super) fn reidentify(&mut self, ctx: &mut ws::WebsocketContext<Self>, identity: Identity) {
        log::info!("session {}: identity now {} {:?}", self.session, Escaped(&identity.authid), identity.authroles);
        self.identity = identity;
        self.uncount_user();
        self.count_user(ctx);
        if self.registered {
            self.node.clients().reidentify(self.client_info());
        }
        let keys = self.subscriptions.keys();
        if !keys.is_empty() {
            let update = Reidentify {
                session: self.session,
                authid: Arc::from(self.identity.authid.as_str()),
                authroles: Arc::from(self.identity.authroles.clone()),
                web_session: self.web.handle(),
            };
            self.node.broker().do_send(UpdateSubscriber { keys, update });
        }
    }

    /// The web session was logged out, expired or became invalid (`gone`: no longer in the store): close or
    /// downgrade, by policy.
    pub(super) fn revoked(&mut self, ctx: &mut ws::WebsocketContext<Self>, reason: InvalidReason, gone: bool) {
        if self.state == Phase::Closing {
            return;
        }
        let event = InvalidSession { reason, session: Some(self.session), peer: None };
        self.node.sessions().report_invalid(event);
        match self.node.settings().session.on_revoked {
            OnRevoked::Close => {
                if self.protocol.is_v2() && self.state == Phase::Established {
                    self.send_v2(ctx, v2::Message::goodbye(errors::SESSION_REVOKED, "session expired or logged out"));
                }
                self.close(ctx, Close::SessionRevoked);
            }
            OnRevoked::Anonymous => {
                if gone {
                    self.web.forget();
                }
                if self.identity.authmethod == AuthMethod::Cookie {
                    self.reidentify(ctx, Identity::anonymous(self.session));
                }
            }
        }
    }

    /// Refreshes the web session's TTL in the store, as the web app would on a request.
    pub(super) fn keepalive(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(web_session) = self.web.handle() else { return };
        let bridge = self.node.sessions().clone();
        let session = self.session;
        ctx.spawn(
            async move {
                if let Err(e) = bridge.refresh_ttl(web_session.key()).await {
                    log::debug!("session {session}: keep-alive failed: {e}");
                }
            }
            .into_actor(self),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_messages_come_back_in_order_up_to_the_limit() {
        let mut web = WebSession::new(None);
        for i in 0..MAX_WAITING_FOR_RELOAD {
            web.hold(&i.to_string()).unwrap();
        }
        assert_eq!(web.hold("one more"), Err(TooManyWaiting));
        assert_eq!(web.next_waiting().as_deref(), Some("0"));
        web.hold("last").unwrap();
        assert_eq!(web.next_waiting().as_deref(), Some("1"));
        assert_eq!(std::iter::from_fn(|| web.next_waiting()).last().as_deref(), Some("last"));
    }

    #[test]
    fn without_a_web_session_nothing_is_reloaded() {
        let mut web = WebSession::new(None);
        assert!(!web.exists());
        assert!(web.begin_reload().is_none());
    }
}
