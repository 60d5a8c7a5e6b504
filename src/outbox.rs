//! The bounded outbound queue of one connection.
//!
//! actix mailboxes grow without limit under `do_send`, and a connection actor whose client does not read is
//! not polled at all (actix-http stops pulling the response stream when the socket's buffer is full). So
//! every sender goes through an [`Outbox`], which counts frames handed to the connection and not yet
//! written. Past the limit the outbox *overflows*: it refuses further frames (the sender counts a drop) and
//! the connection closes itself with 1008 "slow consumer" as soon as it runs again. Memory per connection is
//! therefore bounded by `outbound_queue` frames plus the socket buffers.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use bytestring::ByteString;

/// A text frame for the connection to write. Handled by the connection actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub ByteString);

/// Shared counters between the senders and the connection.
#[derive(Debug)]
pub struct OutboxState {
    pending: AtomicUsize,
    limit: usize,
    overflowed: AtomicBool,
}

impl OutboxState {
    /// A queue holding at most `limit` frames.
    pub fn new(limit: usize) -> Arc<OutboxState> {
        Arc::new(OutboxState { pending: AtomicUsize::new(0), limit, overflowed: AtomicBool::new(false) })
    }

    /// Called by the connection for each [`Deliver`] it takes off its mailbox.
    pub fn taken(&self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether the queue overflowed; the connection must then close.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// Frames waiting.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }
}

/// A cloneable sending side of one connection's outbound queue.
#[derive(Clone)]
pub struct Outbox {
    recipient: Recipient<Deliver>,
    state: Arc<OutboxState>,
}

impl Outbox {
    /// Wraps a connection's recipient and its shared state.
    pub fn new(recipient: Recipient<Deliver>, state: Arc<OutboxState>) -> Outbox {
        Outbox { recipient, state }
    }

    /// Queues a frame. Returns `false` (and delivers nothing) when the queue is full or already overflowed.
    pub fn send(&self, frame: ByteString) -> bool {
        if self.state.overflowed() {
            return false;
        }
        if self.state.pending.fetch_add(1, Ordering::AcqRel) >= self.state.limit {
            self.state.pending.fetch_sub(1, Ordering::AcqRel);
            self.state.overflowed.store(true, Ordering::Release);
            return false;
        }
        self.recipient.do_send(Deliver(frame));
        true
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("state", &self.state).finish()
    }
}
