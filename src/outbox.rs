//! The bounded outbound queue of one connection.
//!
//! Senders (topic actors) push frames into the connection's queue and wake the connection only when the queue
//! goes from empty to non-empty; the connection then takes every queued frame at once. One wake-up therefore
//! carries as many frames as accumulated meanwhile, they are encoded into one buffer and leave in one write —
//! batching comes by itself exactly when a connection falls behind — and no message is allocated per frame.
//!
//! The queue is bounded: actix mailboxes grow without limit, and a connection whose client does not read is
//! not polled at all (its socket task, or actix-http under a mounted app, stops pulling frames while the
//! socket's buffer is full). Past `outbound_queue` frames or `outbound_bytes` bytes the outbox *overflows*: it
//! refuses further frames (the sender counts a drop) and the connection closes itself with 1008 "slow consumer"
//! as soon as it runs again. Memory per connection is thus bounded by `outbound_bytes` plus the socket buffers;
//! in time, the ready server bounds it by `websocket.write_timeout` (a socket that takes no bytes for that long
//! is shut even though its connection never runs again, see `transport`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;
use bytestring::ByteString;

/// Tells the connection that its queue has frames (sent on the empty → non-empty transition only).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// The queue shared by the senders and the connection.
#[derive(Debug)]
pub struct OutboxState {
    queue: Mutex<Queue>,
    limit: usize,
    byte_limit: usize,
    overflowed: AtomicBool,
}

/// The frames waiting and their total size.
#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<ByteString>,
    bytes: usize,
}

impl OutboxState {
    /// A queue holding at most `limit` frames and `byte_limit` bytes.
    pub fn new(limit: usize, byte_limit: usize) -> Arc<OutboxState> {
        Arc::new(OutboxState {
            queue: Mutex::new(Queue::default()),
            limit,
            byte_limit,
            overflowed: AtomicBool::new(false),
        })
    }

    // Only push/take run under the lock and neither can panic; recover the guard rather than panic anyway.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes every queued frame (called by the connection on [`Wake`]).
    pub fn take(&self) -> VecDeque<ByteString> {
        std::mem::take(&mut *self.lock()).frames
    }

    /// Whether the queue overflowed; the connection must then close.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// Frames and bytes waiting.
    pub fn pending(&self) -> (usize, usize) {
        let queue = self.lock();
        (queue.frames.len(), queue.bytes)
    }
}

/// A cloneable sending side of one connection's outbound queue.
#[derive(Clone)]
pub struct Outbox {
    recipient: Recipient<Wake>,
    state: Arc<OutboxState>,
}

impl Outbox {
    /// Wraps a connection's recipient and its shared state.
    pub fn new(recipient: Recipient<Wake>, state: Arc<OutboxState>) -> Outbox {
        Outbox { recipient, state }
    }

    /// Queues a frame. Returns `false` (and delivers nothing) when the queue is full or already overflowed.
    pub fn send(&self, frame: ByteString) -> bool {
        if self.state.overflowed() {
            return false;
        }
        let was_empty = {
            let mut queue = self.state.lock();
            if queue.frames.len() >= self.state.limit || queue.bytes + frame.len() > self.state.byte_limit {
                drop(queue);
                self.state.overflowed.store(true, Ordering::Release);
                // Wake the connection so it closes as soon as it is polled again.
                self.recipient.do_send(Wake);
                return false;
            }
            let was_empty = queue.frames.is_empty();
            queue.bytes += frame.len();
            queue.frames.push_back(frame);
            was_empty
        };
        // Invariant: a non-empty queue always has a Wake pending or being handled before its `take`.
        if was_empty {
            self.recipient.do_send(Wake);
        }
        true
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("state", &self.state).finish()
    }
}
