//! The web session behind a socket: reloading it (per message or on an interval, as
//! `session.reload` says), following a changed identity into the topics and the client index, closing the
//! socket when the session is revoked, and keeping the web session alive while the socket is.

use super::*;

/// What a session store failure during a reload means.
#[derive(Debug, Clone, Copy)]
pub(super) enum StoreErrorPolicy {
    /// Close with 1011 (messages must not be handled with an identity that could not be re-read).
    Close,
    /// Keep the socket and retry at the next revalidation.
    KeepSocket,
}

impl Connection {
    /// Re-reads the session and applies it, then handles the messages waiting for it, in order. Messages
    /// arriving while the load is in flight wait too, and are handled with its result. `on_store_error` says
    /// what a store failure means here: closing (1011) before `message`-policy messages are handled with a
    /// stale identity, or nothing (a revalidation tries again next interval; a hiccup is not a logout).
    pub(super) fn reload(&mut self, ctx: &mut ws::WebsocketContext<Self>, on_store_error: StoreErrorPolicy) {
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
                    return this.close(ctx, Close::SessionStoreUnavailable(reason));
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
    pub(super) fn apply_state(&mut self, ctx: &mut ws::WebsocketContext<Self>, state: Option<SessionState>) {
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
    pub(super) fn reidentify(&mut self, ctx: &mut ws::WebsocketContext<Self>, identity: Identity) {
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
    pub(super) fn revoked(&mut self, ctx: &mut ws::WebsocketContext<Self>, reason: InvalidReason, gone: bool) {
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
                self.close(ctx, Close::SessionRevoked);
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

    pub(super) fn keepalive(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
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
}
