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
//!
//! The bytes waiting in every outbox of the node are mirrored in one gauge (`switchboard_outbound_queue_bytes`):
//! one atomic add per queued frame and one subtraction per take, so measuring costs a delivery no lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;
use bytestring::ByteString;
use prometheus_client::metrics::gauge::Gauge;

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
    /// The node's total of queued bytes, moved with this queue's `bytes`.
    queued_bytes: Gauge,
}

/// The frames waiting and their total size.
#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<ByteString>,
    bytes: usize,
}

impl OutboxState {
    /// A queue holding at most `limit` frames and `byte_limit` bytes, counting what it holds in `queued_bytes`.
    pub fn new(limit: usize, byte_limit: usize, queued_bytes: Gauge) -> Arc<OutboxState> {
        Arc::new(OutboxState {
            queue: Mutex::new(Queue::default()),
            limit,
            byte_limit,
            overflowed: AtomicBool::new(false),
            queued_bytes,
        })
    }

    // Only push/take run under the lock and neither can panic; recover the guard rather than panic anyway.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes every queued frame (called by the connection on [`Wake`]).
    pub fn take(&self) -> VecDeque<ByteString> {
        let taken = std::mem::take(&mut *self.lock());
        self.queued_bytes.dec_by(as_gauge(taken.bytes));
        taken.frames
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

impl Drop for OutboxState {
    /// Frames still queued when the connection is gone leave the node's total with it.
    fn drop(&mut self) {
        let queue = self.queue.get_mut().unwrap_or_else(|e| e.into_inner());
        self.queued_bytes.dec_by(as_gauge(queue.bytes));
    }
}

/// A byte count as a gauge delta (a queue never holds anywhere near `i64::MAX` bytes).
fn as_gauge(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
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
            self.state.queued_bytes.inc_by(as_gauge(frame.len()));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection stand-in that ignores wake-ups.
    struct Sink;

    impl Actor for Sink {
        type Context = Context<Self>;
    }

    impl Handler<Wake> for Sink {
        type Result = ();

        fn handle(&mut self, _: Wake, _: &mut Self::Context) {}
    }

    #[actix_web::test]
    async fn the_node_gauge_follows_queued_bytes_through_send_take_and_drop() {
        let gauge = Gauge::default();
        let recipient = Sink.start().recipient();
        let a = OutboxState::new(8, 1024, gauge.clone());
        let b = OutboxState::new(8, 1024, gauge.clone());
        let (to_a, to_b) = (Outbox::new(recipient.clone(), a.clone()), Outbox::new(recipient, b.clone()));
        assert!(to_a.send("12345".into()));
        assert!(to_a.send("678".into()));
        assert!(to_b.send("abcdefghij".into()));
        assert_eq!(gauge.get(), 18);
        assert!(!to_b.send(ByteString::from("x".repeat(1024))), "over the byte limit: refused, not counted");
        assert_eq!(gauge.get(), 18);
        assert_eq!(a.take().len(), 2);
        assert_eq!(gauge.get(), 10);
        drop((to_b, b));
        assert_eq!(gauge.get(), 0, "a connection gone with frames queued takes them off the total");
    }
}
