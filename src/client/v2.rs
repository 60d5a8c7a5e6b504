//! The WAMP v2 client session: HELLO/WELCOME, request ids, replies awaited while EVENTs queue.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{ClientError, Frame, Socket, DEFAULT_WAIT};
use crate::wamp::{v2, Id, Serializer};

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
    /// The serializer negotiated: frames go out and come in its way.
    serializer: Serializer,
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

    /// As [`connect_with_headers`](Self::connect_with_headers), speaking `serializer` (`wamp.2.msgpack` and
    /// `wamp.2.cbor` over binary frames).
    pub async fn connect_serialized(
        url: &str,
        realm: &str,
        serializer: Serializer,
        headers: &[(&str, &str)],
    ) -> Result<V2Session, ClientError> {
        let socket = Socket::connect(url, &[serializer.token()], headers).await?;
        Self::handshake_in(socket, realm, Map::new(), None, serializer).await
    }

    /// Runs the HELLO/WELCOME handshake on an open `wamp.2.json` socket.
    pub async fn handshake(socket: Socket, realm: &str) -> Result<V2Session, ClientError> {
        Self::handshake_with(socket, realm, Map::new(), None).await
    }

    /// Connects with WAMP `ticket` authentication: HELLO with `authmethods` (and `authid` when given),
    /// AUTHENTICATE with `ticket` when challenged, then WELCOME (or the ABORT as an error).
    pub async fn connect_with_ticket(
        url: &str,
        realm: &str,
        authmethods: &[&str],
        authid: Option<&str>,
        ticket: &str,
    ) -> Result<V2Session, ClientError> {
        let socket = Socket::connect(url, &["wamp.2.json"], &[]).await?;
        let mut auth = Map::new();
        auth.insert("authmethods".into(), Value::from(authmethods.to_vec()));
        if let Some(authid) = authid {
            auth.insert("authid".into(), Value::from(authid));
        }
        Self::handshake_with(socket, realm, auth, Some(ticket)).await
    }

    /// The handshake with extra HELLO details, answering a `ticket` CHALLENGE with `ticket`.
    pub async fn handshake_with(
        socket: Socket,
        realm: &str,
        extra: Map<String, Value>,
        ticket: Option<&str>,
    ) -> Result<V2Session, ClientError> {
        Self::handshake_in(socket, realm, extra, ticket, Serializer::Json).await
    }

    /// The handshake on a socket that negotiated `serializer`.
    pub async fn handshake_in(
        socket: Socket,
        realm: &str,
        extra: Map<String, Value>,
        ticket: Option<&str>,
        serializer: Serializer,
    ) -> Result<V2Session, ClientError> {
        let mut details: Map<String, Value> = serde_json::from_str(
            r#"{"roles":{"publisher":{},"subscriber":{},"caller":{}},"agent":"switchboard-client"}"#,
        )
        .expect("literal JSON");
        details.extend(extra);
        let mut session =
            V2Session { socket, id: 0, details: Map::new(), next_request: 1, queue: VecDeque::new(), serializer };
        session.send(&v2::Message::Hello { realm: realm.into(), details }).await?;
        let mut reply = session.next_message(DEFAULT_WAIT).await?;
        if let (v2::Message::Challenge { method, .. }, Some(ticket)) = (&reply, ticket) {
            if method == "ticket" {
                let authenticate = v2::Message::Authenticate { signature: ticket.into(), extra: Map::new() };
                session.send(&authenticate).await?;
                reply = session.next_message(DEFAULT_WAIT).await?;
            }
        }
        match reply {
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

    /// The `authmethod` from WELCOME.
    pub fn authmethod(&self) -> &str {
        self.details.get("authmethod").and_then(Value::as_str).unwrap_or("")
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
        match self.serializer {
            Serializer::Json => self.socket.send_text(message.encode()).await,
            binary => self.socket.send_binary(message.encode_as(binary)).await,
        }
    }

    /// The next message from the socket (not the queue); a close becomes [`ClientError::Closed`].
    pub async fn next_message(&mut self, wait: Duration) -> Result<v2::Message, ClientError> {
        match self.socket.recv(wait).await? {
            Frame::Text(t) if self.serializer.is_binary() => {
                Err(ClientError::Unexpected(format!("a text frame on {}: {t}", self.serializer.token())))
            }
            Frame::Text(t) => v2::Message::decode(&t).map_err(|e| ClientError::Unexpected(format!("{e}: {t}"))),
            Frame::Binary(b) if self.serializer.is_binary() => v2::Message::decode_binary(self.serializer, &b)
                .map_err(|e| ClientError::Unexpected(format!("{e}: {} bytes", b.len()))),
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
