//! The WAMP v1 client session (subprotocol `wamp`): WELCOME, CALL ids, replies awaited while EVENTs queue.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::Value;

use super::{ClientError, Frame, Socket, DEFAULT_WAIT};
use crate::wamp::v1;

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
