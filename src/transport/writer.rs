//! What an accepted socket's task writes, and in which order: the connection actor's own frames (handshake
//! replies, errors, pings, the close) and the frames senders queued in its outbox, written here without waking
//! the actor.
//!
//! The task runs the actor (an actix-web-actors context is a stream: polling it runs the actor), but only when
//! the actor was woken — by a message, a timer or input. A queued EVENT wakes the task through the outbox
//! instead, and is then encoded and written without polling the actor at all: per delivery that is one lock to
//! take the queue, one frame header and one `write`. When both have something, the actor goes first, so a reply
//! it produced before releasing the outbox (a SUBSCRIBED, see [`OutboxState::hold`]) is written before the
//! queued frames it was holding back.
//!
//! A topic's fan-out does not even wake the task: it hands each worker the list of queues that just got their
//! first frame, and the worker writes them one after the other ([`flush`]) — the same one `send` per socket a
//! bare server would do, reaching the socket by its descriptor ([`send`]) so a delivery touches the queue and
//! the kernel, nothing else. A worker that falls behind finds more frames in a queue by the time it reaches it,
//! and writes them in the same one `send`. Only a socket that does not take everything at once leaves its
//! remainder to its task, which waits (bounded by `websocket.write_timeout`) until the socket takes it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use actix_http::ws::{OpCode, Parser};
use actix_web::web::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use futures_util::Stream;
use tokio::net::TcpStream;

use crate::outbox::{Home, OutboxState};

/// Times one poll of a socket's output goes round (actor, then queue) before yielding to the worker's other
/// sockets.
const ROUNDS_PER_POLL: usize = 16;

/// Sockets a flush writes before it lets the worker do something else (about a millisecond of writes).
const FLUSH_SLICE: usize = 256;

/// The source of worker ids.
static NEXT_WORKER: AtomicUsize = AtomicUsize::new(0);

/// The outgoing bytes of a running WebSocket actor.
pub(super) type Frames = Pin<Box<dyn Stream<Item = Result<Bytes, actix_web::Error>>>>;

/// The per-thread encoding buffer is given back to the allocator when a batch grew it past this.
const KEEP_ENCODED: usize = 64 * 1024;

thread_local! {
    /// The queues waiting for this worker's flush task, oldest first (see [`flush`]).
    static FLUSHING: RefCell<VecDeque<Arc<OutboxState>>> = const { RefCell::new(VecDeque::new()) };
    /// Tells workers apart in a queue's [`Home`].
    static WORKER: usize = NEXT_WORKER.fetch_add(1, Ordering::Relaxed);
    /// Queued frames are encoded here and written straight from here; only bytes the socket did not take at
    /// once are copied out (one buffer per worker thread, shared by all its sockets).
    static ENCODED: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Tells the socket's task that the actor was woken, and remembers it, so the task polls the actor only then.
#[derive(Default)]
struct ActorWake {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for ActorWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// The two sources of a socket's output, merged in the order described in the module docs. Queued frames are
/// written as part of polling; what is left to write (the actor's bytes, or what the socket did not take at
/// once) comes out of [`next`](Output::next).
pub(super) struct Output {
    io: Rc<TcpStream>,
    actor: Frames,
    wake: Arc<ActorWake>,
    /// The waker the actor is polled with (a view of `wake`, made once).
    actor_waker: Waker,
    outbox: Option<Arc<OutboxState>>,
}

/// What writing the queued frames did.
enum Queued {
    /// The queue had nothing to write (or is held or shut).
    Nothing,
    /// Everything went out.
    Written,
    /// The socket took only part; the rest waits here.
    Partly(Bytes),
}

impl Output {
    /// Merges `actor`'s frames with `outbox`'s (if the socket's task writes that queue), writing to `io`.
    pub(super) fn new(io: Rc<TcpStream>, actor: Frames, outbox: Option<Arc<OutboxState>>) -> Output {
        let wake = Arc::new(ActorWake { woken: AtomicBool::new(true), task: AtomicWaker::new() });
        let actor_waker = Waker::from(wake.clone());
        if let Some(outbox) = &outbox {
            // Flushes need an arbiter to reach this worker; outside one (a bare tokio runtime) wake-ups do.
            if let Some(arbiter) = actix::Arbiter::try_current() {
                let fd = io.as_raw_fd();
                outbox.set_home(Home { worker: WORKER.with(|w| *w), arbiter, fd, flush });
            }
        }
        Output { io, actor, wake, actor_waker, outbox }
    }

    /// Writes `bytes` (see [`write_all`]); meanwhile flushes leave this socket's queue to its task.
    pub(super) async fn write(&self, bytes: &[u8], timeout: Duration) -> io::Result<()> {
        if let Some(outbox) = &self.outbox {
            outbox.set_busy(true);
        }
        let written = write_all(&self.io, bytes, timeout).await;
        if let Some(outbox) = &self.outbox {
            outbox.set_busy(false);
        }
        written
    }

    /// The next bytes to write; `None` once the actor has stopped and its last frame was taken.
    pub(super) async fn next(&mut self) -> Option<io::Result<Bytes>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        self.wake.task.register(cx.waker());
        // A flush's remainder is the end of a frame: nothing may come between.
        if let Some(rest) = self.outbox.as_ref().and_then(|outbox| outbox.take_rest()) {
            return Poll::Ready(Some(Ok(rest)));
        }
        for _ in 0..ROUNDS_PER_POLL {
            if self.wake.woken.swap(false, Ordering::AcqRel) {
                let mut actor_cx = Context::from_waker(&self.actor_waker);
                match self.actor.as_mut().poll_next(&mut actor_cx) {
                    Poll::Ready(Some(item)) => {
                        // The context may hold more: poll it again before looking at the queue.
                        self.wake.woken.store(true, Ordering::Release);
                        return Poll::Ready(Some(item.map_err(|e| io::Error::other(e.to_string()))));
                    }
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => {}
                }
            }
            let Some(outbox) = &self.outbox else { return Poll::Pending };
            match write_queued(outbox, Some(cx.waker()), |bytes| self.io.try_write(bytes)) {
                Ok(Queued::Nothing) => return Poll::Pending,
                // The queue may have refilled, or the actor been woken, meanwhile: look again.
                Ok(Queued::Written) => {}
                Ok(Queued::Partly(rest)) => return Poll::Ready(Some(Ok(rest))),
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
        // Under a steady stream of frames, let the worker's other sockets run too.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for Output {
    /// The socket is about to close: no flush may write to its descriptor (or to whatever reuses the number)
    /// any more. This runs before `io`, the socket, is released.
    fn drop(&mut self) {
        if let Some(outbox) = &self.outbox {
            outbox.shut();
        }
    }
}

/// A worker's part of a fan-out: writes each listed queue to its socket, on this worker's thread (where
/// [`Home`] sent it). The lists of all fan-outs join one first-come, first-served line per worker
/// ([`FLUSHING`]), written by one task that lets the worker's other work (reading the next publication, other
/// sockets' tasks) run every [`FLUSH_SLICE`] sockets: a socket that got a frame earlier is written earlier,
/// whichever publication it came from. A queue that is held, shut or being written by its task is left to
/// that task.
fn flush(queues: Vec<Arc<OutboxState>>) {
    let start = FLUSHING.with_borrow_mut(|line| {
        let idle = line.is_empty();
        line.extend(queues);
        idle
    });
    if start {
        actix::spawn(async {
            loop {
                for _ in 0..FLUSH_SLICE {
                    let Some(outbox) = FLUSHING.with_borrow_mut(VecDeque::pop_front) else { return };
                    flush_one(&outbox);
                }
                tokio::task::yield_now().await;
            }
        });
    }
}

/// Writes one queue to its socket (see [`flush`]).
fn flush_one(outbox: &OutboxState) {
    let Some(fd) = outbox.home().map(|home| home.fd) else { return };
    match write_queued(outbox, None, |bytes| send(fd, bytes)) {
        Ok(Queued::Nothing | Queued::Written) => {}
        Ok(Queued::Partly(rest)) => outbox.keep_rest(rest),
        // The task finds the error for itself when it next writes (or reads the end).
        Err(_) => outbox.wake_writer(),
    }
}

/// One non-blocking `send` to the socket whose descriptor a queue's [`Home`] holds. A flush reaches the socket
/// by its number rather than through tokio's `TcpStream`, which would cost two more cache misses per delivery
/// (the stream and its readiness record) on a fan-out that finds every socket cold. tokio's readiness is not
/// told: if the socket is full, the rest goes to the socket's task, whose own write then learns it.
fn send(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `fd` stays open for as long as this call can be reached. A queue's home (and `fd`) is set, once,
    // when its socket's `Output` is made. The socket closes when its last `Rc` goes: `Output` holds one, and the
    // others (the socket task's own, the reader's inside the actor's stream) live no shorter. `Output::drop`
    // shuts the queue before any of its fields is released, a queue is never un-shut, and a shut queue yields
    // nothing to write, so `write_queued` calls no `send`. Flushes run on the arbiter of the thread that made
    // the `Output` (`Home::arbiter`, which `Flushes::send` uses), and the `Output` cannot leave that thread (it
    // holds an `Rc`): a flush and the drop never interleave. `ManuallyDrop` keeps this borrowed view from
    // closing the descriptor.
    let socket = ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
    (&*socket).write(bytes)
}

/// Encodes the queued frames (unmasked text or binary frames, as a server sends, by the queue's serializer) under the queue's lock and writes them
/// in one system call, from the worker's buffer; only what the socket does not take at once is copied out.
/// `waker` is the writer's task when the writer itself calls; `write` makes the system call.
fn write_queued(
    outbox: &OutboxState,
    waker: Option<&Waker>,
    write: impl FnOnce(&[u8]) -> io::Result<usize>,
) -> io::Result<Queued> {
    ENCODED.with_borrow_mut(|encoded| {
        encoded.clear();
        let opcode = if outbox.is_binary() { OpCode::Binary } else { OpCode::Text };
        let frames = outbox.drain_with(waker, |frame| Parser::write_message(encoded, frame, opcode, true, false));
        if frames == 0 {
            return Ok(Queued::Nothing);
        }
        let written = match write(encoded) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        let queued = match &encoded[written..] {
            [] => Queued::Written,
            rest => Queued::Partly(Bytes::copy_from_slice(rest)),
        };
        if encoded.capacity() > KEEP_ENCODED {
            *encoded = BytesMut::new();
        }
        Ok(queued)
    })
}

/// Writes all of `bytes`, waiting for the socket to take them; fails with `TimedOut` when the socket takes
/// nothing for `timeout`. While this waits, the actor is not polled: its outbound queue (bounded in frames and
/// bytes) is all that grows, and this timeout bounds how long.
pub(super) async fn write_all(io: &TcpStream, mut bytes: &[u8], timeout: Duration) -> io::Result<()> {
    while !bytes.is_empty() {
        match tokio::time::timeout(timeout, io.writable()).await {
            Ok(ready) => ready?,
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
        match io.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use actix::prelude::*;
    use prometheus_client::metrics::gauge::Gauge;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::outbox::{Outbox, Wake};

    /// A connection stand-in that ignores wake-ups.
    struct Sink;

    impl Actor for Sink {
        type Context = actix::Context<Self>;
    }

    impl actix::Handler<Wake> for Sink {
        type Result = ();

        fn handle(&mut self, _: Wake, _: &mut Self::Context) {}
    }

    /// A connected pair on loopback: (the server's end, the client's end).
    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    /// A flush writes by descriptor number. Once a socket's `Output` is gone and the socket closed, a flush
    /// still listing its queue (a fan-out racing the close) must write nothing — not even to the socket that now
    /// holds the same number.
    #[actix_web::test]
    async fn a_flush_after_the_socket_closed_writes_nothing_to_the_socket_that_reuses_its_number() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (server, _client) = pair(&listener).await;
        let state = OutboxState::new(8, 1 << 20, Gauge::default(), None);
        let actor: Frames = Box::pin(futures_util::stream::pending());
        let output = Output::new(Rc::new(server), actor, Some(state.clone()));
        let fd = state.home().expect("a home on an arbiter").fd;
        drop(output);
        let outbox = Outbox::new(Sink.start().recipient(), state.clone());
        outbox.send(Bytes::from_static(b"[36,1,2,{}]"));
        // Whatever holds the number now, a flush makes no system call at all.
        let queued = write_queued(&state, None, |_| panic!("a send after the socket closed"));
        assert!(matches!(queued, Ok(Queued::Nothing)));
        // And where the next socket does get the number (other tests open descriptors meanwhile), nothing
        // reaches it.
        let (server, client) = pair(&listener).await;
        // The end that does not hold the number reads; the other stays open meanwhile.
        let mut reader = if client.as_raw_fd() == fd {
            server
        } else if server.as_raw_fd() == fd {
            client
        } else {
            return;
        };
        flush_one(&state);
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(50), reader.read(&mut byte)).await;
        assert!(read.is_err(), "nothing arrives on the reused socket: {read:?}");
    }
}
