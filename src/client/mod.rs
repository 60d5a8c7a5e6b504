//! A small async WAMP client over tokio-tungstenite, shared by the integration tests and the load generator.
//!
//! [`Socket`] is the raw layer (any subprotocol, any headers, raw frames in and out, close codes visible);
//! [`V2Session`] and [`V1Session`] add the protocol: handshake, request ids, and waiting for a reply while
//! queueing everything else (EVENTs) for later. Every wait has a deadline, so a test never hangs.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod v1;
mod v2;

pub use v1::V1Session;
pub use v2::V2Session;

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
