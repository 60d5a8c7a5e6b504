//! A small async WAMP client over tokio-tungstenite, shared by the integration tests and the load generator.
//!
//! [`Socket`] is the raw layer (any subprotocol, any headers, raw frames in and out, close codes visible);
//! [`V2Session`] and [`V1Session`] add the protocol: handshake, request ids, and waiting for a reply while
//! queueing everything else (EVENTs) for later. Every wait has a deadline, so a test never hangs.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::wamp::{v1, v2, Id};

/// How long a session helper waits for an expected reply by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// What went wrong on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the upgrade with an HTTP status.
    #[error("upgrade refused with HTTP {status}: {body}")]
    Rejected {
        /// HTTP status code.
        status: u16,
        /// Response body.
        body: String,
    },
    /// A WebSocket or I/O error.
    #[error("websocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    /// Nothing arrived in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The server closed the socket.
    #[error("closed by server: {code} {reason}")]
    Closed {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// The server sent something the client did not expect.
    #[error("unexpected message: {0}")]
    Unexpected(String),
    /// The server answered a request with a WAMP error.
    #[error("WAMP error {error}: {message}")]
    Wamp {
        /// Error URI.
        error: String,
        /// First argument, if a string.
        message: String,
    },
}

/// One frame received from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A close frame (code 1005 when none was given).
    Close {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
}

/// A raw WebSocket connection to a switchboard node.
pub struct Socket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
}

impl Socket {
    /// Connects to `url` offering `protocols` (comma-joined in one header; omitted when empty), with extra
    /// request headers such as `Cookie` or `Origin`.
    pub async fn connect(url: &str, protocols: &[&str], headers: &[(&str, &str)]) -> Result<Socket, ClientError> {
        Self::connect_with(url, protocols, headers, WebSocketConfig::default()).await
    }

    /// As [`connect`](Self::connect), with a tungstenite configuration (buffer sizes for the load tool).
    pub async fn connect_with(
        url: &str,
        protocols: &[&str],
        headers: &[(&str, &str)],
        config: WebSocketConfig,
    ) -> Result<Socket, ClientError> {
        let mut request = url.into_client_request()?;
        if !protocols.is_empty() {
            let value = HeaderValue::from_str(&protocols.join(", "))
                .map_err(|e| ClientError::Unexpected(format!("bad protocol header: {e}")))?;
            request.headers_mut().insert("Sec-WebSocket-Protocol", value);
        }
        for (name, value) in headers {
            let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ClientError::Unexpected(format!("bad header name: {e}")))?;
            let value =
                HeaderValue::from_str(value).map_err(|e| ClientError::Unexpected(format!("bad header value: {e}")))?;
            request.headers_mut().insert(name, value);
        }
        match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
            Ok((ws, response)) => {
                let protocol =
                    response.headers().get("Sec-WebSocket-Protocol").and_then(|v| v.to_str().ok()).map(str::to_owned);
                Ok(Socket { ws, protocol })
            }
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body =
                    response.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
                Err(ClientError::Rejected { status, body })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The plain TCP stream under the WebSocket, for a reader that parses frames itself (the load tool's fast
    /// path); the socket back over TLS. Only call it when no frame is pending: what the WebSocket layer had
    /// buffered is dropped.
    pub fn into_tcp(self) -> Result<TcpStream, Box<Socket>> {
        if !matches!(self.ws.get_ref(), MaybeTlsStream::Plain(_)) {
            return Err(Box::new(self));
        }
        match self.ws.into_inner() {
            MaybeTlsStream::Plain(tcp) => Ok(tcp),
            _ => unreachable!("checked above"),
        }
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), ClientError> {
        self.ws.send(WsMessage::text(text.into())).await?;
        Ok(())
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, data: Vec<u8>) -> Result<(), ClientError> {
        self.ws.send(WsMessage::binary(data)).await?;
        Ok(())
    }

    /// Sends a raw tungstenite message (fragments, pings, invalid frames for tests).
    pub async fn send_raw(&mut self, message: WsMessage) -> Result<(), ClientError> {
        self.ws.send(message).await?;
        Ok(())
    }

    /// Starts a clean close.
    pub async fn close(&mut self) -> Result<(), ClientError> {
        self.ws.close(None).await?;
        Ok(())
    }

    /// The next text, binary or close frame (pings are answered and skipped), within `wait`.
    pub async fn recv(&mut self, wait: Duration) -> Result<Frame, ClientError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next =
                tokio::time::timeout_at(deadline, self.ws.next()).await.map_err(|_| ClientError::Timeout("a frame"))?;
            match next {
                None => return Ok(Frame::Close { code: 1006, reason: "connection dropped".into() }),
                Some(Err(tungstenite::Error::ConnectionClosed)) | Some(Err(tungstenite::Error::AlreadyClosed)) => {
                    return Ok(Frame::Close { code: 1006, reason: "connection dropped".into() })
                }
                Some(Err(tungstenite::Error::Protocol(_))) | Some(Err(tungstenite::Error::Io(_))) => {
                    return Ok(Frame::Close { code: 1006, reason: "connection reset".into() })
                }
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(WsMessage::Text(t))) => return Ok(Frame::Text(t.to_string())),
                Some(Ok(WsMessage::Binary(b))) => return Ok(Frame::Binary(b.to_vec())),
                Some(Ok(WsMessage::Close(c))) => {
                    let (code, reason) =
                        c.map(|c| (u16::from(c.code), c.reason.to_string())).unwrap_or((1005, String::new()));
                    return Ok(Frame::Close { code, reason });
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Reads until the server closes, returning the close code and reason (skipping other frames).
    pub async fn expect_close(&mut self, wait: Duration) -> Result<(u16, String), ClientError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Frame::Close { code, reason } = self.recv(left).await? {
                return Ok((code, reason));
            }
        }
    }
}

/// A WAMP v2 session.
pub struct V2Session {
    /// The underlying socket.
    pub socket: Socket,
    /// Session id from WELCOME.
    pub id: Id,
    /// WELCOME details (authid, authrole, roles…).
    pub details: Map<String, Value>,
    next_request: Id,
    queue: VecDeque<v2::Message>,
}

fn wamp_error(error: &str, args: &Option<Vec<Value>>) -> ClientError {
    let message = args.as_ref().and_then(|a| a.first()).and_then(Value::as_str).unwrap_or("").to_owned();
    ClientError::Wamp { error: error.to_owned(), message }
}

impl V2Session {
    /// Connects, sends HELLO for `realm` and waits for WELCOME.
    pub async fn connect(url: &str, realm: &str) -> Result<V2Session, ClientError> {
        Self::connect_with_headers(url, realm, &[]).await
    }

    /// As [`connect`](Self::connect), with extra request headers (`Cookie`, `Origin`).
    pub async fn connect_with_headers(
        url: &str,
        realm: &str,
        headers: &[(&str, &str)],
    ) -> Result<V2Session, ClientError> {
        let socket = Socket::connect(url, &["wamp.2.json"], headers).await?;
        Self::handshake(socket, realm).await
    }

    /// Runs the HELLO/WELCOME handshake on an open `wamp.2.json` socket.
    pub async fn handshake(mut socket: Socket, realm: &str) -> Result<V2Session, ClientError> {
        let roles: Map<String, Value> = serde_json::from_str(
            r#"{"roles":{"publisher":{},"subscriber":{},"caller":{}},"agent":"switchboard-client"}"#,
        )
        .expect("literal JSON");
        socket.send_text(v2::Message::Hello { realm: realm.into(), details: roles }.encode()).await?;
        let mut session = V2Session { socket, id: 0, details: Map::new(), next_request: 1, queue: VecDeque::new() };
        match session.next_message(DEFAULT_WAIT).await? {
            v2::Message::Welcome { session: id, details } => {
                session.id = id;
                session.details = details;
                Ok(session)
            }
            v2::Message::Abort { reason, details } => Err(ClientError::Wamp {
                error: reason,
                message: details.get("message").and_then(Value::as_str).unwrap_or("").to_owned(),
            }),
            other => Err(ClientError::Unexpected(other.encode())),
        }
    }

    /// The `authid` from WELCOME.
    pub fn authid(&self) -> &str {
        self.details.get("authid").and_then(Value::as_str).unwrap_or("")
    }

    /// The `authrole` from WELCOME.
    pub fn authrole(&self) -> &str {
        self.details.get("authrole").and_then(Value::as_str).unwrap_or("")
    }

    fn request_id(&mut self) -> Id {
        let id = self.next_request;
        self.next_request += 1;
        id
    }

    /// Sends any message.
    pub async fn send(&mut self, message: &v2::Message) -> Result<(), ClientError> {
        self.socket.send_text(message.encode()).await
    }

    /// The next message from the socket (not the queue); a close becomes [`ClientError::Closed`].
    pub async fn next_message(&mut self, wait: Duration) -> Result<v2::Message, ClientError> {
        match self.socket.recv(wait).await? {
            Frame::Text(t) => v2::Message::decode(&t).map_err(|e| ClientError::Unexpected(format!("{e}: {t}"))),
            Frame::Binary(_) => Err(ClientError::Unexpected("binary frame".into())),
            Frame::Close { code, reason } => Err(ClientError::Closed { code, reason }),
        }
    }

    /// Waits for the first message `pick` accepts, queueing the others.
    pub async fn wait_for<T>(
        &mut self,
        wait: Duration,
        what: &'static str,
        mut pick: impl FnMut(&v2::Message) -> Option<T>,
    ) -> Result<T, ClientError> {
        if let Some(pos) = self.queue.iter().position(|m| pick(m).is_some()) {
            let message = self.queue.remove(pos).expect("position is in range");
            return Ok(pick(&message).expect("picked before"));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = self.next_message(left).await.map_err(|e| match e {
                ClientError::Timeout(_) => ClientError::Timeout(what),
                e => e,
            })?;
            if let Some(found) = pick(&message) {
                return Ok(found);
            }
            self.queue.push_back(message);
        }
    }

    fn reply_to(request: Id, request_type: u64, message: &v2::Message) -> Option<Result<v2::Message, ClientError>> {
        match message {
            v2::Message::Error { request_type: t, request: r, error, args, .. }
                if *t == request_type && *r == request =>
            {
                Some(Err(wamp_error(error, args)))
            }
            v2::Message::Subscribed { request: r, .. }
            | v2::Message::Unsubscribed { request: r }
            | v2::Message::Published { request: r, .. }
            | v2::Message::Result { request: r, .. }
            | v2::Message::Registered { request: r, .. }
                if *r == request =>
            {
                Some(Ok(message.clone()))
            }
            _ => None,
        }
    }

    async fn request(
        &mut self,
        request: Id,
        request_type: u64,
        message: v2::Message,
    ) -> Result<v2::Message, ClientError> {
        self.send(&message).await?;
        self.wait_for(DEFAULT_WAIT, "a reply", |m| Self::reply_to(request, request_type, m)).await?
    }

    /// Subscribes with `options` (e.g. `{"match": "prefix"}`), returning the subscription id.
    pub async fn subscribe_with(&mut self, topic: &str, options: Map<String, Value>) -> Result<Id, ClientError> {
        let request = self.request_id();
        let message = v2::Message::Subscribe { request, options, topic: topic.into() };
        match self.request(request, v2::code::SUBSCRIBE, message).await? {
            v2::Message::Subscribed { subscription, .. } => Ok(subscription),
            other => Err(ClientError::Unexpected(other.encode())),
        }
    }

    /// Subscribes to `topic` (exact match).
    pub async fn subscribe(&mut self, topic: &str) -> Result<Id, ClientError> {
        self.subscribe_with(topic, Map::new()).await
    }

    /// Unsubscribes.
    pub async fn unsubscribe(&mut self, subscription: Id) -> Result<(), ClientError> {
        let request = self.request_id();
        self.request(request, v2::code::UNSUBSCRIBE, v2::Message::Unsubscribe { request, subscription }).await?;
        Ok(())
    }

    /// Publishes with `acknowledge: true` merged into `options`; returns the publication id.
    pub async fn publish_acked(
        &mut self,
        topic: &str,
        mut options: Map<String, Value>,
        args: Vec<Value>,
    ) -> Result<Id, ClientError> {
        options.insert("acknowledge".into(), Value::Bool(true));
        let request = self.request_id();
        let message = v2::Message::Publish { request, options, topic: topic.into(), args: Some(args), kwargs: None };
        match self.request(request, v2::code::PUBLISH, message).await? {
            v2::Message::Published { publication, .. } => Ok(publication),
            other => Err(ClientError::Unexpected(other.encode())),
        }
    }

    /// Publishes without acknowledgement (fire and forget).
    pub async fn publish(
        &mut self,
        topic: &str,
        options: Map<String, Value>,
        args: Vec<Value>,
    ) -> Result<(), ClientError> {
        let request = self.request_id();
        self.send(&v2::Message::Publish { request, options, topic: topic.into(), args: Some(args), kwargs: None }).await
    }

    /// Calls a procedure; returns `(args, kwargs)` of RESULT.
    pub async fn call(
        &mut self,
        procedure: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<(Vec<Value>, Map<String, Value>), ClientError> {
        let request = self.request_id();
        let kwargs = (!kwargs.is_empty()).then_some(kwargs);
        let message =
            v2::Message::Call { request, options: Map::new(), procedure: procedure.into(), args: Some(args), kwargs };
        match self.request(request, v2::code::CALL, message).await? {
            v2::Message::Result { args, kwargs, .. } => Ok((args.unwrap_or_default(), kwargs.unwrap_or_default())),
            other => Err(ClientError::Unexpected(other.encode())),
        }
    }

    /// The next EVENT (queued or new) as `(subscription, publication, details, args)`.
    pub async fn next_event(
        &mut self,
        wait: Duration,
    ) -> Result<(Id, Id, Map<String, Value>, Vec<Value>), ClientError> {
        self.wait_for(wait, "an EVENT", |m| match m {
            v2::Message::Event { subscription, publication, details, args, .. } => {
                Some((*subscription, *publication, details.clone(), args.clone().unwrap_or_default()))
            }
            _ => None,
        })
        .await
    }

    /// Asserts that no EVENT arrives within `wait` (anything else is queued).
    pub async fn expect_no_event(&mut self, wait: Duration) -> Result<(), ClientError> {
        match self.next_event(wait).await {
            Err(ClientError::Timeout(_)) => Ok(()),
            Ok(event) => Err(ClientError::Unexpected(format!("unexpected EVENT {event:?}"))),
            Err(e) => Err(e),
        }
    }
}

/// A WAMP v1 session.
pub struct V1Session {
    /// The underlying socket.
    pub socket: Socket,
    /// Session id from WELCOME (a string, as v1 servers send it).
    pub id: String,
    next_call: u64,
    queue: VecDeque<v1::Message>,
}

impl V1Session {
    /// Connects with subprotocol `wamp` and waits for WELCOME.
    pub async fn connect(url: &str) -> Result<V1Session, ClientError> {
        Self::welcome(Socket::connect(url, &["wamp"], &[]).await?).await
    }

    /// Waits for WELCOME on an open `wamp` socket.
    pub async fn welcome(mut socket: Socket) -> Result<V1Session, ClientError> {
        let id = match socket.recv(DEFAULT_WAIT).await? {
            Frame::Text(t) => match v1::Message::decode(&t) {
                Ok(v1::Message::Welcome { session, .. }) => session,
                _ => return Err(ClientError::Unexpected(t)),
            },
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        };
        Ok(V1Session { socket, id, next_call: 1, queue: VecDeque::new() })
    }

    /// Sends any v1 message.
    pub async fn send(&mut self, message: &v1::Message) -> Result<(), ClientError> {
        self.socket.send_text(message.encode()).await
    }

    async fn next_message(&mut self, wait: Duration) -> Result<v1::Message, ClientError> {
        match self.socket.recv(wait).await? {
            Frame::Text(t) => v1::Message::decode(&t).map_err(|e| ClientError::Unexpected(format!("{e}: {t}"))),
            Frame::Binary(_) => Err(ClientError::Unexpected("binary frame".into())),
            Frame::Close { code, reason } => Err(ClientError::Closed { code, reason }),
        }
    }

    /// Calls `procedure`; returns the CALLRESULT value or the CALLERROR as [`ClientError::Wamp`].
    pub async fn call(&mut self, procedure: &str, args: Vec<Value>) -> Result<Value, ClientError> {
        let call_id = Value::String(format!("c{}", self.next_call));
        self.next_call += 1;
        self.send(&v1::Message::Call { call_id: call_id.clone(), procedure: procedure.into(), args }).await?;
        let deadline = tokio::time::Instant::now() + DEFAULT_WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_message(left).await? {
                v1::Message::CallResult { call_id: c, result } if c == call_id => return Ok(result),
                v1::Message::CallError { call_id: c, error, description, .. } if c == call_id => {
                    return Err(ClientError::Wamp { error, message: description })
                }
                other => self.queue.push_back(other),
            }
        }
    }

    /// The next EVENT as `(topic, event)`.
    pub async fn next_event(&mut self, wait: Duration) -> Result<(String, Value), ClientError> {
        if let Some(pos) = self.queue.iter().position(|m| matches!(m, v1::Message::Event { .. })) {
            if let Some(v1::Message::Event { topic, event }) = self.queue.remove(pos) {
                return Ok((topic, event));
            }
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_message(left).await.map_err(|e| match e {
                ClientError::Timeout(_) => ClientError::Timeout("a v1 EVENT"),
                e => e,
            })? {
                v1::Message::Event { topic, event } => return Ok((topic, event)),
                other => self.queue.push_back(other),
            }
        }
    }

    /// Asserts that no EVENT arrives within `wait`.
    pub async fn expect_no_event(&mut self, wait: Duration) -> Result<(), ClientError> {
        match self.next_event(wait).await {
            Err(ClientError::Timeout(_)) => Ok(()),
            Ok(event) => Err(ClientError::Unexpected(format!("unexpected EVENT {event:?}"))),
            Err(e) => Err(e),
        }
    }
}
