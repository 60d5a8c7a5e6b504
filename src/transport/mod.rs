//! The standalone server's socket layer: HTTP through actix-web, accepted WebSockets without the HTTP/1
//! dispatcher.
//!
//! Inside an actix-web `HttpServer`, an upgraded WebSocket stays in actix-http's HTTP/1 dispatcher for its whole
//! life: two 8 KiB buffers per socket (read and write, not configurable) and one more copy of every outgoing frame.
//! At tens of thousands of mostly idle sockets those buffers are most of the memory. [`server`] therefore builds
//! the HTTP service itself and registers an actix-http *upgrade service*. Upgrade requests are still answered by
//! the same actix-web `App` — routing, the `/ws` handler with its Origin, subprotocol and session checks, every
//! refusal as an ordinary HTTP response — but that `App` carries the [`Direct`] marker, so when `/ws` accepts it
//! returns the 101 with an [`Accept`] attached instead of starting the actor. The 101 goes out, the HTTP buffers
//! are dropped, and the socket is handed to [`run`]: the same `WebsocketContext` and connection actor, reading
//! through a per-thread scratch buffer and writing frames straight to the socket. An idle connection then owns no
//! I/O buffer at all.
//!
//! Applications that mount [`Switchboard::configure`](crate::node::Switchboard::configure) into their own
//! `HttpServer` keep the plain actix-web-actors path: same behaviour, more memory per socket.
//!
//! Both paths read through a [`Guarded`] input: the [`FrameGuard`] checks every frame header before any of its
//! payload is buffered, and the ready server's writes are bounded in time (`websocket.write_timeout`): a socket
//! that takes no bytes for that long is shut, even though its actor cannot run while the write waits.
//!
//! This module owns sockets and bytes only; it knows nothing of WAMP, sessions or the cluster: an accepted
//! socket comes with any WebSocket actor to run ([`Accept::new`]).

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use actix::{Actor, StreamHandler};
use actix_codec::Framed;
use actix_http::body::{self, BodySize};
use actix_http::error::PayloadError;
use actix_http::ws::Codec;
use actix_http::{h1, ConnectionType, HttpService, KeepAlive, Request, Response};
use actix_server::Server;
use actix_service::{fn_factory, fn_service, map_config, IntoServiceFactory, Service, ServiceFactory};
use actix_web::body::BoxBody;
use actix_web::dev::AppConfig;
use actix_web::dev::ServiceResponse;
use actix_web::web::{self, Bytes};
use actix_web::App;
use actix_web_actors::ws::{self, WebsocketContext};
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::frame::{FrameGuard, Violation};
use crate::outbox::OutboxState;

mod socket;
mod writer;

pub(crate) use socket::Incoming;
use socket::{linger_close, run};
use writer::{Frames, Output};

/// Bytes read from a socket per system call. One buffer per worker thread, shared by all its sockets.
const READ_CHUNK: usize = 16 * 1024;

/// How long a closing socket waits for the peer to close its side after ours is shut down. Closing at once
/// while the peer's own Close frame is still unread would make the kernel answer with a reset, which can
/// destroy our Close frame before the peer reads it.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// HTTP connections (requests, keep-alive, handshakes in progress) one worker serves at once; more wait in the
/// listen backlog. Accepted WebSockets leave this count at the hand-over (they are capped by
/// `server.max_connections` instead), so together the two keep the node under its descriptor limit.
const HTTP_CONNECTIONS_PER_WORKER: usize = 1024;

/// The HTTP keep-alive, request-head and disconnect timeouts: actix-web's `HttpServer` defaults.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// App data marking the `App` that answers upgrade requests: its `/ws` handler hands the socket over with
/// [`Accept`] instead of starting the actor inside the HTTP dispatcher.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Direct;

/// Attached to an accepted `/ws` response (101) by the handler: the actor to run on the socket.
pub(crate) struct Accept {
    start: Box<dyn FnOnce(Incoming) -> Frames>,
    verdict: Verdict,
    /// The actor's outbound queue, written by the socket's task without waking the actor.
    outbox: Option<Arc<OutboxState>>,
}

impl Accept {
    /// Runs `actor` on the socket once the 101 is sent, reading through a [`Guarded`] input that refuses
    /// messages over `max_message_size` at their header and reports violations to `verdict`.
    pub(crate) fn new<A>(actor: A, max_message_size: usize, verdict: Verdict) -> Accept
    where
        A: Actor<Context = WebsocketContext<A>> + StreamHandler<Result<ws::Message, ws::ProtocolError>>,
    {
        let guarded = verdict.clone();
        let start = move |incoming: Incoming| -> Frames {
            let input = Guarded::new(incoming, max_message_size, guarded);
            let codec = Codec::new().max_size(max_message_size);
            Box::pin(WebsocketContext::with_codec(actor, input, codec))
        };
        Accept { start: Box::new(start), verdict, outbox: None }
    }

    /// Has the socket's task take and write `outbox`'s frames itself (see [`OutboxState::attach_writer`]).
    pub(crate) fn with_outbox(mut self, outbox: Arc<OutboxState>) -> Accept {
        outbox.attach_writer();
        self.outbox = Some(outbox);
        self
    }
}

/// Shared by a socket's [`Guarded`] input, its writer and its actor: the violation that ended the input, if one
/// did, and whether the writer gave up. The guarded stream ends at a violation (after the frames before it); the
/// actor then finds the reason here in `StreamHandler::finished` and closes with its code. A writer that gives
/// up drops the actor, which finds the reason here when it stops.
#[derive(Clone, Debug, Default)]
pub(crate) struct Verdict(Rc<VerdictState>);

#[derive(Debug, Default)]
struct VerdictState {
    input: Cell<Option<Violation>>,
    write_stalled: Cell<bool>,
}

impl Verdict {
    /// The violation that ended the input, if any.
    pub(crate) fn get(&self) -> Option<Violation> {
        self.0.input.get()
    }

    /// Whether the socket was shut for taking no bytes for `websocket.write_timeout`.
    pub(crate) fn write_stalled(&self) -> bool {
        self.0.write_stalled.get()
    }
}

/// A socket's inbound bytes after the [`FrameGuard`]: only bytes of acceptable frames reach the codec. At a
/// violation the stream ends and the reason goes to the [`Verdict`]; the socket is not read any further.
pub(crate) struct Guarded<S> {
    inner: S,
    guard: FrameGuard,
    verdict: Verdict,
    done: bool,
}

impl<S> Guarded<S> {
    /// Guards `inner` with the message limit `max_message_size`.
    pub(crate) fn new(inner: S, max_message_size: usize, verdict: Verdict) -> Guarded<S> {
        Guarded { inner, guard: FrameGuard::new(max_message_size), verdict, done: false }
    }
}

impl<S> Stream for Guarded<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        while !this.done {
            let bytes = match ready!(this.inner.poll_next_unpin(cx)) {
                Some(Ok(bytes)) => bytes,
                other => return Poll::Ready(other),
            };
            let fed = this.guard.feed(&bytes);
            if let Some(violation) = fed.violation {
                this.verdict.0.input.set(Some(violation));
                this.done = true;
            }
            if !fed.pass.is_empty() {
                return Poll::Ready(Some(Ok(fed.pass)));
            }
        }
        Poll::Ready(None)
    }
}

/// The number of WebSockets a [`server`] is running, closing ones included: a graceful stop waits for it to
/// reach zero, since these sockets live in tasks of their own rather than in the server's connection tasks.
#[derive(Clone, Debug, Default)]
pub(crate) struct OpenSockets(Arc<AtomicUsize>);

impl OpenSockets {
    /// How many are open now.
    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counts one socket as open until dropped.
struct Open(OpenSockets);

impl Open {
    fn new(sockets: &OpenSockets) -> Open {
        sockets.0.fetch_add(1, Ordering::Relaxed);
        Open(sockets.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Options for [`server`].
pub(crate) struct ServerOptions {
    /// Worker threads; 0 means one per core.
    pub(crate) workers: usize,
    /// How long a graceful stop waits for open connections.
    pub(crate) shutdown_timeout: Duration,
    /// How long a WebSocket write may make no progress before the socket is shut.
    pub(crate) write_timeout: Duration,
}

/// Builds the HTTP server on `listener`: every route of the `App` that `configure` sets up, plus the direct
/// WebSocket path for upgrades. Signals are not handled here (the caller does graceful shutdown).
pub(crate) fn server<F>(
    listener: TcpListener,
    options: ServerOptions,
    configure: F,
) -> io::Result<(Server, OpenSockets)>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let addr = listener.local_addr()?;
    let mut builder = Server::build()
        .disable_signals()
        .max_concurrent_connections(HTTP_CONNECTIONS_PER_WORKER)
        .shutdown_timeout(options.shutdown_timeout.as_secs().max(1));
    if options.workers > 0 {
        builder = builder.workers(options.workers);
    }
    let shutdown_signal = builder.graceful_shutdown_signal();
    let open = OpenSockets::default();
    let sockets = open.clone();
    let server = builder
        .listen("switchboard", listener, move || {
            let signal = shutdown_signal.clone();
            let plain = App::new().configure(configure.clone());
            let upgrades = App::new().app_data(Direct).configure(configure.clone());
            HttpService::build()
                .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
                .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .h1_allow_half_closed(true)
                // Realtime traffic: a small frame goes out now, not when the previous one is acknowledged
                // (Nagle's algorithm would hold it for up to a delayed-ACK interval, ~40 ms).
                .tcp_nodelay(true)
                .local_addr(addr)
                .graceful_shutdown_signal(move || {
                    let signal = signal.clone();
                    async move { signal.notified().await }
                })
                .upgrade(upgrade_service(upgrades, addr, open.clone(), options.write_timeout))
                .finish(map_config(plain, move |_| app_config(addr)))
                .tcp()
        })?
        .run();
    Ok((server, sockets))
}

/// The configuration actix-web's own `HttpServer` gives an `App` bound to `addr`.
fn app_config(addr: SocketAddr) -> AppConfig {
    // `__priv_test_new` is the public constructor actix-web keeps for servers built outside `HttpServer`
    // (actix-test uses it); `AppConfig::default()` would report a made-up host and address.
    AppConfig::__priv_test_new(false, addr.to_string(), addr)
}

/// The upgrade service: answers the request with the `App`, then either hands an accepted WebSocket to [`run`]
/// or sends the response and closes.
fn upgrade_service<I, S>(
    app: I,
    addr: SocketAddr,
    open: OpenSockets,
    write_timeout: Duration,
) -> impl ServiceFactory<
    (Request, Framed<TcpStream, h1::Codec>),
    Config = (),
    Response = (),
    Error = Infallible,
    InitError = (),
>
where
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<
            Request,
            Config = AppConfig,
            Response = ServiceResponse<BoxBody>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
{
    let factory = map_config(app, move |_| app_config(addr));
    fn_factory(move || {
        let app = factory.new_service(());
        let open = open.clone();
        async move {
            let app = Rc::new(app.await?);
            Ok(fn_service(move |(req, framed): (Request, Framed<TcpStream, h1::Codec>)| {
                let app = app.clone();
                let open = open.clone();
                async move {
                    let response = match app.call(req).await {
                        Ok(res) => res.into(),
                        Err(e) => e.error_response().into(),
                    };
                    answer(framed, response, &open, write_timeout).await;
                    Ok::<_, Infallible>(())
                }
            }))
        }
    })
}

/// Sends `response` on the upgraded request's connection: the 101 and then the WebSocket if the `/ws` handler
/// accepted it, otherwise the response as it is and a close.
async fn answer(
    mut framed: Framed<TcpStream, h1::Codec>,
    response: Response<BoxBody>,
    open: &OpenSockets,
    write_timeout: Duration,
) {
    let (mut head, body) = response.into_parts();
    let accept = head.extensions_mut().remove::<Accept>();
    match accept {
        Some(accept) => {
            if let Err(e) = framed.send((head, BodySize::None).into()).await {
                log::debug!("WebSocket handshake not sent: {e}");
                return;
            }
            // Keep only the socket and a copy of any early bytes: the HTTP buffers (8 KiB each) and this
            // request's task (the HTTP dispatcher's whole state, another ~8 KiB) are freed now, and the
            // WebSocket lives in a task of its own sized for it.
            let parts = framed.into_parts();
            let leftover = Bytes::copy_from_slice(&parts.read_buf);
            actix_web::rt::spawn(run(parts.io, leftover, accept, write_timeout, Open::new(open)));
        }
        None => {
            // Our responses are small and complete (JSON errors, health): read the body whole, then send it.
            let body = match body::to_bytes(body).await {
                Ok(bytes) => bytes,
                Err(e) => {
                    log::warn!("response to upgrade request failed: {e}");
                    return;
                }
            };
            head.head_mut().set_connection_type(ConnectionType::Close);
            match h1::SendResponse::new(framed, head.set_body(body)).await {
                Ok(framed) => linger_close(framed.into_parts().io).await,
                Err(e) => log::debug!("response to upgrade request not sent: {e}"),
            }
        }
    }
}
