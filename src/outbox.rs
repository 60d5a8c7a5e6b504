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
//!
//! Who takes the frames depends on the server. Under the ready server the socket's own task is the *writer*
//! ([`OutboxState::attach_writer`]): a sender wakes that task directly, which takes the frames and writes them
//! without running the connection actor at all — no mailbox message, no actor poll, no second encoder. Under a
//! mounted app (no such task) the connection actor takes them on [`Wake`] and writes them through its context.
//! Either way the order of one queue is the order on the wire. The connection keeps its own replies in order
//! with the queue through two switches the writer obeys: [`OutboxState::hold`] while a subscription waits for
//! its SUBSCRIBED (no EVENT may overtake it) and [`OutboxState::shut`] once the connection is closing (nothing
//! follows the close frame).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Waker;

use actix::prelude::*;
use actix_web::web::Bytes;
use prometheus_client::metrics::gauge::Gauge;

use crate::wamp::Serializer;

/// Tells the connection that its queue has frames (sent on the empty → non-empty transition only, when no
/// writer is attached) or that it overflowed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// The queue shared by the senders and the connection.
///
/// Laid out for the fan-out, which touches a thousand of these per publication, each usually cold in the cache:
/// what an enqueue reads comes first (`repr(C)` keeps the order), so it costs as few cache lines as it can.
#[derive(Debug)]
#[repr(C)]
pub struct OutboxState {
    queue: Mutex<Queue>,
    limit: usize,
    byte_limit: usize,
    overflowed: AtomicBool,
    /// The node's total of queued bytes, moved with this queue's `bytes`.
    queued_bytes: Gauge,
    /// A socket task takes the frames (see [`OutboxState::attach_writer`]); otherwise the connection does.
    direct: AtomicBool,
    /// Subscriptions waiting for their SUBSCRIBED: while non-zero the writer takes nothing.
    held: AtomicUsize,
    /// The connection is closing: the writer takes nothing more.
    shut: AtomicBool,
    /// The writer is writing (its own bytes or a remainder): nothing else may be written meanwhile.
    busy: AtomicBool,
    /// The worker whose thread can write this queue's socket, once its writer has started there.
    home: OnceLock<Home>,
    /// The serializer of a session whose frames are binary (`wamp.2.msgpack`, `wamp.2.cbor`); `None` for text.
    binary: Option<Serializer>,
}

/// Where a queue's writer runs: the worker thread (an actix arbiter) holding its socket. Senders that reach
/// many queues at once (a topic's fan-out) hand each worker the list of its queues that just got their first
/// frame ([`Flushes`]), and the worker writes them all in one go, without a wake-up per socket.
#[derive(Clone)]
pub struct Home {
    /// Tells workers apart (one id per worker thread).
    pub(crate) worker: usize,
    /// The worker's arbiter.
    pub(crate) arbiter: ArbiterHandle,
    /// The socket's descriptor, which the worker's flush writes to; open for as long as the queue is not shut.
    pub(crate) fd: std::os::fd::RawFd,
    /// Writes the given queues to their sockets; runs on the worker.
    pub(crate) flush: fn(Vec<Arc<OutboxState>>),
}

impl std::fmt::Debug for Home {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Home").field("worker", &self.worker).field("fd", &self.fd).finish()
    }
}

/// The frames of one queue, oldest first: the first inline (between a fan-out and its flush a queue mostly holds
/// one), so queueing it touches no second allocation.
pub type QueuedFrames = smallvec::SmallVec<[Bytes; 1]>;

/// The frames waiting and their total size (what an enqueue touches first; `repr(C)` keeps the order).
#[derive(Debug, Default)]
#[repr(C)]
struct Queue {
    frames: QueuedFrames,
    bytes: usize,
    /// EVENTs not to queue (publications a resumed subscription already replayed), until a deadline.
    skip: Option<Box<Skip>>,
    /// The writer's task (when one is attached), woken on the empty → non-empty transition. Kept under the
    /// queue's lock, which a sender holds anyway, and woken by reference: it is stored once, not per wake-up.
    writer: Option<Waker>,
    /// The part of the last written frames the socket did not take, written before anything else.
    rest: Option<Bytes>,
}

/// Publication ids whose EVENTs a queue drops until `until` (see [`OutboxState::skip_publications`]).
#[derive(Debug)]
struct Skip {
    ids: std::collections::HashSet<crate::wamp::Id>,
    until: std::time::Instant,
}

/// A queue that held more frames than this gives its buffer back once emptied (an idle connection keeps none
/// larger than a burst of a few frames).
const KEEP_FRAMES: usize = 16;

impl OutboxState {
    /// A queue holding at most `limit` frames and `byte_limit` bytes, counting what it holds in `queued_bytes`,
    /// of text frames, or of `binary` frames written by that serializer.
    pub fn new(limit: usize, byte_limit: usize, queued_bytes: Gauge, binary: Option<Serializer>) -> Arc<OutboxState> {
        Arc::new(OutboxState {
            queue: Mutex::new(Queue::default()),
            limit,
            byte_limit,
            overflowed: AtomicBool::new(false),
            queued_bytes,
            direct: AtomicBool::new(false),
            held: AtomicUsize::new(0),
            shut: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            home: OnceLock::new(),
            binary,
        })
    }

    /// Makes the caller — a socket's task — the one that takes and writes this queue's frames, through
    /// [`OutboxState::drain_with`]. Call before the connection's first subscription (the ready server attaches
    /// before the actor first runs).
    pub fn attach_writer(&self) {
        self.direct.store(true, Ordering::Release);
    }

    /// Whether the frames are binary (else UTF-8 text).
    pub fn is_binary(&self) -> bool {
        self.binary.is_some()
    }

    /// The publication id of a queued EVENT frame, in this queue's serialization.
    fn event_publication(&self, frame: &[u8]) -> Option<crate::wamp::Id> {
        match self.binary {
            None => crate::wamp::v2::event_publication(frame),
            Some(serializer) => serializer.event_publication(frame),
        }
    }

    /// Records where the writer runs (see [`Home`]); call from the writer, once, before the actor first runs.
    pub(crate) fn set_home(&self, home: Home) {
        let first = self.home.set(home).is_ok();
        debug_assert!(first, "a queue's home is set once");
    }

    /// Where the writer runs, if it said.
    pub fn home(&self) -> Option<&Home> {
        self.home.get()
    }

    /// The writer is writing bytes of its own (`true`) or has finished (`false`): meanwhile a worker's flush
    /// leaves the queue to it.
    pub fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Release);
    }

    /// Keeps what a flush could not write, for the writer to finish (woken now), before anything else.
    pub fn keep_rest(&self, rest: Bytes) {
        let mut queue = self.lock();
        queue.rest = Some(rest);
        if let Some(writer) = &queue.writer {
            writer.wake_by_ref();
        }
    }

    /// Wakes the writer's task (a flush met an error the writer should find for itself).
    pub fn wake_writer(&self) {
        if let Some(writer) = &self.lock().writer {
            writer.wake_by_ref();
        }
    }

    /// The writer's side: what a flush could not write, if anything (see [`keep_rest`](OutboxState::keep_rest)).
    pub fn take_rest(&self) -> Option<Bytes> {
        self.lock().rest.take()
    }

    /// A resumed subscription replayed these publications from the history: their EVENTs queued meanwhile are
    /// dropped now, and those still on their way from other nodes for the next `window`, so none arrives twice.
    /// Publication ids are unique, so nothing else is touched. Costs an enqueue a clock read only while a window
    /// is open.
    pub fn skip_publications(&self, ids: std::collections::HashSet<crate::wamp::Id>, window: std::time::Duration) {
        if ids.is_empty() {
            return;
        }
        let mut queue = self.lock();
        let before = queue.bytes;
        queue.frames.retain(|f| self.event_publication(f).is_none_or(|id| !ids.contains(&id)));
        queue.bytes = queue.frames.iter().map(|f| f.len()).sum();
        self.queued_bytes.dec_by(as_gauge(before - queue.bytes));
        let until = std::time::Instant::now() + window;
        match &mut queue.skip {
            Some(skip) => {
                skip.ids.extend(ids);
                skip.until = skip.until.max(until);
            }
            None => queue.skip = Some(Box::new(Skip { ids, until })),
        }
    }

    /// Whether a socket task writes this queue (then the connection must not [`take`](OutboxState::take)).
    pub fn has_writer(&self) -> bool {
        self.direct.load(Ordering::Acquire)
    }

    /// Holds the writer back until the matching [`release`](OutboxState::release): a subscription's SUBSCRIBED
    /// is on its way through the connection, and no EVENT of that topic may overtake it.
    pub fn hold(&self) {
        self.held.fetch_add(1, Ordering::AcqRel);
    }

    /// Ends one [`hold`](OutboxState::hold); the writer looks at the queue again the next time it runs (it
    /// runs the connection, which is where releases happen).
    pub fn release(&self) {
        let _ = self.held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| held.checked_sub(1));
    }

    /// The connection is closing: the writer takes nothing more (nothing may follow the close frame).
    pub fn shut(&self) {
        self.shut.store(true, Ordering::Release);
    }

    /// The writer's (or its worker's flush) side: passes every queued frame, oldest first, to `write` and
    /// returns how many there were; `0` while the queue is empty (the writer's task, `waker`, is woken when a
    /// frame arrives) and while it is held, shut or busy (the connection's own progress, which the writer drives,
    /// ends a hold; the writer drains after its own write). The frames are passed under the queue's lock so the
    /// queue keeps its buffer: `write` should only copy them out.
    pub fn drain_with(&self, waker: Option<&Waker>, mut write: impl FnMut(&[u8])) -> usize {
        if self.shut.load(Ordering::Acquire)
            || self.held.load(Ordering::Acquire) > 0
            || self.busy.load(Ordering::Acquire)
        {
            return 0;
        }
        let mut queue = self.lock();
        if let Some(waker) = waker {
            if !queue.writer.as_ref().is_some_and(|w| w.will_wake(waker)) {
                queue.writer = Some(waker.clone());
            }
        }
        let count = queue.frames.len();
        if count == 0 || queue.rest.is_some() {
            return 0;
        }
        for frame in &queue.frames {
            write(frame);
        }
        if queue.frames.capacity() > KEEP_FRAMES {
            queue.frames = QueuedFrames::new();
        } else {
            queue.frames.clear();
        }
        self.queued_bytes.dec_by(as_gauge(std::mem::take(&mut queue.bytes)));
        count
    }

    // Only push/drain/take run under the lock and none can panic; recover the guard rather than panic anyway.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes every queued frame (the connection on [`Wake`] when no writer is attached).
    pub fn take(&self) -> QueuedFrames {
        let taken = {
            let mut queue = self.lock();
            if queue.frames.is_empty() {
                return QueuedFrames::new();
            }
            let skip = queue.skip.take();
            let taken = std::mem::take(&mut *queue);
            queue.skip = skip;
            taken
        };
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

    /// Queues a frame and wakes whoever writes it. Returns `false` (and delivers nothing) when the queue is full
    /// or already overflowed.
    pub fn send(&self, frame: Bytes) -> bool {
        match self.enqueue(frame) {
            Enqueued::Dropped => false,
            Enqueued::More => true,
            Enqueued::First => {
                self.wake();
                true
            }
        }
    }

    /// Like [`send`](Outbox::send), for a sender reaching many queues at once: a queue whose writer has a
    /// [`Home`] is not woken but listed in `flushes`, for its worker to write with the others.
    pub fn push(&self, frame: Bytes, flushes: &mut Flushes) -> bool {
        match self.enqueue(frame) {
            Enqueued::Dropped => false,
            Enqueued::More => true,
            Enqueued::First => {
                match self.state.home() {
                    Some(home) => flushes.add(home, &self.state),
                    None => self.wake(),
                }
                true
            }
        }
    }

    fn enqueue(&self, frame: Bytes) -> Enqueued {
        if self.state.overflowed() {
            return Enqueued::Dropped;
        }
        let mut queue = self.state.lock();
        if queue.frames.len() >= self.state.limit || queue.bytes + frame.len() > self.state.byte_limit {
            drop(queue);
            self.state.overflowed.store(true, Ordering::Release);
            // Wake the connection so it closes as soon as it is polled again.
            self.recipient.do_send(Wake);
            return Enqueued::Dropped;
        }
        if let Some(skip) = &queue.skip {
            if std::time::Instant::now() > skip.until {
                queue.skip = None;
            } else if self.state.event_publication(&frame).is_some_and(|id| skip.ids.contains(&id)) {
                // Replayed already: delivered, as far as the sender is concerned.
                return Enqueued::More;
            }
        }
        let was_empty = queue.frames.is_empty();
        queue.bytes += frame.len();
        self.state.queued_bytes.inc_by(as_gauge(frame.len()));
        queue.frames.push(frame);
        if was_empty {
            Enqueued::First
        } else {
            Enqueued::More
        }
    }

    /// Invariant: a non-empty queue always has a wake-up pending or being handled before its frames are taken.
    fn wake(&self) {
        if self.state.has_writer() {
            // A writer that has not run yet looks at the queue when it first does.
            if let Some(writer) = &self.state.lock().writer {
                writer.wake_by_ref();
            }
        } else {
            self.recipient.do_send(Wake);
        }
    }
}

/// What queueing one frame did.
enum Enqueued {
    /// Refused: the queue is full or overflowed.
    Dropped,
    /// Queued behind others: a wake-up is already pending.
    More,
    /// The queue's first frame: its writer must be woken.
    First,
}

/// The queues a fan-out gave their first frame, by the worker that writes them (see [`Home`]).
#[derive(Default)]
pub struct Flushes {
    homes: Vec<(Home, Vec<Arc<OutboxState>>)>,
}

impl Flushes {
    fn add(&mut self, home: &Home, state: &Arc<OutboxState>) {
        // A node has a handful of workers: a short scan beats hashing.
        match self.homes.iter_mut().find(|(h, _)| h.worker == home.worker) {
            Some((_, queues)) => queues.push(state.clone()),
            None => self.homes.push((home.clone(), vec![state.clone()])),
        }
    }

    /// Hands each worker its list. A worker that has stopped has no sockets left to write.
    pub fn send(self) {
        for (home, queues) in self.homes {
            let flush = home.flush;
            home.arbiter.spawn_fn(move || flush(queues));
        }
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
        let a = OutboxState::new(8, 1024, gauge.clone(), None);
        let b = OutboxState::new(8, 1024, gauge.clone(), None);
        let (to_a, to_b) = (Outbox::new(recipient.clone(), a.clone()), Outbox::new(recipient, b.clone()));
        assert!(to_a.send("12345".into()));
        assert!(to_a.send("678".into()));
        assert!(to_b.send("abcdefghij".into()));
        assert_eq!(gauge.get(), 18);
        assert!(!to_b.send(Bytes::from("x".repeat(1024))), "over the byte limit: refused, not counted");
        assert_eq!(gauge.get(), 18);
        assert_eq!(a.take().len(), 2);
        assert_eq!(gauge.get(), 10);
        drop((to_b, b));
        assert_eq!(gauge.get(), 0, "a connection gone with frames queued takes them off the total");
    }

    #[actix_web::test]
    async fn replayed_publications_are_dropped_from_the_queue_and_skipped_for_a_while() {
        let gauge = Gauge::default();
        let state = OutboxState::new(8, 1024, gauge.clone(), None);
        let outbox = Outbox::new(Sink.start().recipient(), state.clone());
        let event = |publication: u64| Bytes::from(crate::wamp::v2::encode_event(1, publication, "{}", ",[0]"));
        assert!(outbox.send(event(10)));
        assert!(outbox.send(event(11)));
        assert!(outbox.send("[33,5,1]".into()), "not an EVENT");
        state.skip_publications([10, 12].into(), std::time::Duration::from_millis(100));
        assert!(outbox.send(event(12)), "skipped, as if delivered");
        assert!(outbox.send(event(13)));
        let left: Vec<Bytes> = state.take().into_iter().collect();
        assert_eq!(left, [event(11), "[33,5,1]".into(), event(13)]);
        assert_eq!(gauge.get(), 0, "the gauge follows what was dropped");
        std::thread::sleep(std::time::Duration::from_millis(150));
        assert!(outbox.send(event(12)));
        assert_eq!(state.take().len(), 1, "after the window, nothing is skipped");
    }

    #[actix_web::test]
    async fn replayed_publications_are_found_in_binary_frames_too() {
        for serializer in [Serializer::MsgPack, Serializer::Cbor] {
            let state = OutboxState::new(8, 1024, Gauge::default(), Some(serializer));
            assert!(state.is_binary());
            let outbox = Outbox::new(Sink.start().recipient(), state.clone());
            let event = |publication| {
                let frame = serializer.encode_event(1 << 40, publication, &Default::default(), Some("[1]"), None);
                Bytes::from(frame.unwrap())
            };
            assert!(outbox.send(event(10)));
            assert!(outbox.send(event(70_000)));
            state.skip_publications([10].into(), std::time::Duration::from_secs(5));
            assert!(outbox.send(event(10)), "skipped, as if delivered");
            assert_eq!(state.take().as_slice(), [event(70_000)], "{}", serializer.token());
        }
    }

    #[actix_web::test]
    async fn the_writer_takes_nothing_while_held_busy_shut_or_finishing_a_rest() {
        let state = OutboxState::new(8, 1024, Gauge::default(), None);
        state.attach_writer();
        let outbox = Outbox::new(Sink.start().recipient(), state.clone());
        let waker = futures_util::task::noop_waker();
        let drained = |state: &OutboxState| {
            let mut seen = Vec::new();
            state.drain_with(Some(&waker), |frame| seen.push(String::from_utf8_lossy(frame).into_owned()));
            seen
        };
        assert!(outbox.send("a".into()));
        state.hold();
        assert!(drained(&state).is_empty(), "held: a SUBSCRIBED is on its way");
        state.release();
        state.set_busy(true);
        assert!(drained(&state).is_empty(), "busy: the writer is finishing bytes of its own");
        state.set_busy(false);
        state.keep_rest(Bytes::from_static(b"tail"));
        assert!(drained(&state).is_empty(), "the end of a half-written frame goes first");
        assert_eq!(state.take_rest().as_deref(), Some(&b"tail"[..]));
        assert!(outbox.send("b".into()));
        assert_eq!(drained(&state), ["a", "b"], "oldest first, all at once");
        assert!(outbox.send("c".into()));
        state.shut();
        assert!(drained(&state).is_empty(), "nothing follows the close frame");
    }
}
