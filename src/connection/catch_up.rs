//! What a subscriber receives before the live events of a new subscription, while the outbox holds them back:
//! the topic's retained event (`get_retained`), the kept events after its last one (`resume_after`, from the
//! `[[history]]`), or the messages waiting in the user's offline inbox (`[inbox]`). Each ends one hold of the
//! outbox once it has written what it found, so no live EVENT overtakes it.

use super::*;

/// What a new subscriber asked to receive before the live events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum CatchUp {
    /// Live events only.
    #[default]
    Nothing,
    /// The topic's retained event (`get_retained`).
    Retained,
    /// The kept events after this publication (`resume_after`).
    ResumeAfter(Id),
    /// The messages kept in the user's offline inbox for this topic (`[inbox]`, logged-in users).
    Inbox,
}

/// How long after a replay EVENTs of replayed publications still on their way from other nodes are dropped.
const REPLAY_SKIP_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

impl Connection {
    /// Sends what `catch_up` asks for ahead of the live events of `subscription`, then ends one hold of the
    /// outbox.
    pub(super) fn catch_up(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        topic: Arc<str>,
        subscription: Id,
        catch_up: CatchUp,
    ) {
        match catch_up {
            CatchUp::Retained => self.deliver_retained(ctx, topic, subscription),
            CatchUp::Inbox => self.deliver_inbox(ctx, topic, subscription),
            // A resume answers its requests itself (see `replay`); nothing else asks first.
            CatchUp::Nothing | CatchUp::ResumeAfter(_) => self.outbox.release(),
        }
    }

    /// Replays the kept events of `topic` published after `after` (those this session may receive) as EVENTs of
    /// `subscription` with `details.replayed = true`, then ends one hold of the outbox. The live EVENTs the hold
    /// kept back follow, without those the replay already sent (and without those still on their way from
    /// other nodes, for [`REPLAY_SKIP_WINDOW`]): no gap, no duplicate at the seam. If `after` is no longer kept
    /// — too old, or the history was lost — every kept event is replayed and the first carries
    /// `details.history_gap = true`; so does the first when the replay had to be cut to
    /// `websocket.outbound_bytes` (the newest are kept).
    ///
    /// The SUBSCRIBE `requests` are answered here: SUBSCRIBED before the replay, or — when the history cannot be
    /// read (Redis unreachable) — `ERROR switchboard.error.registry_unavailable`, and a `fresh` subscription is
    /// left again: a client is never left subscribed without knowing what it missed.
    pub(super) fn replay(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        key: TopicKey,
        subscription: Id,
        after: Id,
        requests: Vec<Id>,
        fresh: bool,
    ) {
        let clients = self.node.clients().clone();
        let (caller, topic) = (self.caller(), key.uri.clone());
        let read = async move { tokio::time::timeout(REGISTRY_ACK_WAIT, clients.read_history(&topic, caller)).await };
        ctx.wait(read.into_actor(self).map(move |read, this, ctx| {
            if this.state != Phase::Established {
                return this.outbox.release();
            }
            let events = match read {
                Ok(Ok(events)) => events,
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("the history was not read within {REGISTRY_ACK_WAIT:?}"),
                    };
                    for request in requests {
                        let error = WampError::new(errors::REGISTRY_UNAVAILABLE, why.clone());
                        this.fail(ctx, &Reply::V2 { code: v2::code::SUBSCRIBE, request }, error.into());
                    }
                    if fresh && this.subscriptions.remove(&key).is_some() {
                        this.node.clients().unsubscribed(this.session, key.clone(), subscription);
                        this.node.broker().do_send(Unsubscribe { key, session: this.session, request: None });
                    }
                    return this.outbox.release();
                }
            };
            for request in requests {
                this.send_v2(ctx, v2::Message::Subscribed { request, subscription });
            }
            let budget = this.node.settings().websocket.outbound_bytes;
            let (frames, replayed) = replay_frames(subscription, after, &events, budget);
            this.outbox.skip_publications(replayed, REPLAY_SKIP_WINDOW);
            for frame in frames {
                this.send_text(ctx, frame);
            }
            this.outbox.release();
        }));
    }

    /// Sends the messages kept for this user on `topic` (oldest first, each to this socket only) as EVENTs of
    /// `subscription` (v2, with `details.inbox = true`) or of the topic (v1), then ends one hold of the outbox;
    /// their live copies still on their way are dropped (see [`REPLAY_SKIP_WINDOW`]). A failed read sends
    /// nothing: the messages stay for her next subscribe.
    pub(super) fn deliver_inbox(&mut self, ctx: &mut ws::WebsocketContext<Self>, topic: Arc<str>, subscription: Id) {
        let (clients, authid) = (self.node.clients().clone(), self.identity.authid.clone());
        let take = async move { tokio::time::timeout(REGISTRY_ACK_WAIT, clients.take_inbox(&authid, &topic)).await };
        ctx.wait(take.into_actor(self).map(move |taken, this, ctx| {
            match taken {
                Ok(Ok(messages)) if this.state == Phase::Established => {
                    let mut ids = std::collections::HashSet::new();
                    for p in messages {
                        if !p.admits(this.session, &this.identity.authid, &this.identity.authroles) {
                            continue;
                        }
                        ids.insert(p.id);
                        match this.protocol {
                            Protocol::V2(_) => this.send_text(ctx, event_frame(subscription, &p, &["inbox"])),
                            Protocol::V1 => this.send_text(ctx, v1::encode_event(&p.topic, p.v1_event())),
                        }
                    }
                    this.outbox.skip_publications(ids, REPLAY_SKIP_WINDOW);
                }
                Ok(Err(e)) => log::debug!("session {}: inbox not read: {e}", this.session),
                Err(_) => log::debug!("session {}: inbox not read within {REGISTRY_ACK_WAIT:?}", this.session),
                _ => {}
            }
            this.outbox.release();
        }));
    }

    /// Sends the retained event of `topic` (if there is one this session may receive) as an EVENT of
    /// `subscription` with `details.retained = true`, then ends one hold of the outbox: no live EVENT of the
    /// topic overtakes it. The lookup is bounded by [`REGISTRY_ACK_WAIT`]; a failed one sends nothing.
    pub(super) fn deliver_retained(&mut self, ctx: &mut ws::WebsocketContext<Self>, topic: Arc<str>, subscription: Id) {
        let retention = self.node.retention().clone();
        let lookup = async move { tokio::time::timeout(REGISTRY_ACK_WAIT, retention.retained(&topic)).await };
        ctx.wait(lookup.into_actor(self).map(move |found, this, ctx| {
            match found {
                Ok(Ok(Some(p)))
                    if this.state == Phase::Established
                        && p.admits(this.session, &this.identity.authid, &this.identity.authroles) =>
                {
                    this.send_text(ctx, event_frame(subscription, &p, &["retained"]));
                }
                Ok(Err(e)) => log::debug!("session {}: retained event not read: {e}", this.session),
                Err(_) => log::debug!("session {}: retained event not read within {REGISTRY_ACK_WAIT:?}", this.session),
                _ => {}
            }
            this.outbox.release();
        }));
    }
}

/// A v2 EVENT of `subscription` carrying `p`, its details the given `flags` (each `true`) and the publisher if
/// disclosed: what every catch-up sends.
fn event_frame(subscription: Id, p: &Publication, flags: &[&str]) -> String {
    let mut details = serde_json::Map::new();
    for flag in flags {
        details.insert((*flag).into(), Value::Bool(true));
    }
    p.disclose_into(&mut details);
    v2::encode_event(subscription, p.id, &Value::Object(details).to_string(), p.v2_tail())
}

/// The replay of `events` after publication `after`: EVENT frames of `subscription` (at most `budget` bytes, the
/// newest kept) and the ids they carry.
fn replay_frames(
    subscription: Id,
    after: Id,
    events: &[crate::model::StoredEvent],
    budget: usize,
) -> (Vec<String>, std::collections::HashSet<Id>) {
    let (mut gap, missed) = match events.iter().position(|e| e.publication.id == after) {
        Some(i) => (false, &events[i + 1..]),
        None => (true, events),
    };
    let frame = |e: &crate::model::StoredEvent, gap: bool| {
        let flags: &[&str] = if gap { &["replayed", "history_gap"] } else { &["replayed"] };
        event_frame(subscription, &e.publication, flags)
    };
    let mut kept = Vec::new();
    let mut bytes = 0;
    for e in missed.iter().rev() {
        let f = frame(e, false);
        if bytes + f.len() > budget {
            gap = true;
            break;
        }
        bytes += f.len();
        kept.push((e, f));
    }
    kept.reverse();
    if let (true, Some((first, f))) = (gap, kept.first_mut()) {
        *f = frame(first, true);
    }
    let ids = kept.iter().map(|(e, _)| e.publication.id).collect();
    (kept.into_iter().map(|(_, f)| f).collect(), ids)
}
