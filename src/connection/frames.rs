//! From WebSocket frames to WAMP messages: the actor's input stream, fragment reassembly (bounded by
//! `websocket.max_message_size`), UTF-8, inbound rate limits, and what happens to a message while a session
//! reload holds it.

use super::*;

impl Connection {
    pub(super) fn on_text(&mut self, ctx: &mut ws::WebsocketContext<Self>, text: &str) {
        metrics::inc(&self.node.metrics().messages_in_total);
        match self.protocol {
            Protocol::V2 => match v2::Message::decode(text) {
                Ok(message) => self.on_v2(ctx, message),
                Err(e) => self.on_decode_error(ctx, e),
            },
            Protocol::V1 => match v1::Message::decode(text) {
                Ok(message) => self.on_v1(ctx, message),
                Err(e) => self.on_decode_error(ctx, e),
            },
        }
    }

    pub(super) fn on_decode_error(&mut self, ctx: &mut ws::WebsocketContext<Self>, error: DecodeError) {
        self.violation(ctx, &error.to_string());
    }

    /// Handles a complete inbound text message.
    pub(super) fn on_message(&mut self, ctx: &mut ws::WebsocketContext<Self>, text: &str) {
        if self.state == Phase::Closing {
            return;
        }
        let over = if !self.limiter.take(1.0) {
            Some("message")
        } else if !self.byte_limiter.take(text.len() as f64) {
            Some("byte")
        } else {
            None
        };
        if let Some(what) = over {
            log::warn!("session {}: closed for exceeding the inbound {what} rate", self.session);
            let reason = format!("{what} rate limit exceeded");
            return self.close(ctx, Close::RateLimited(&reason));
        }
        if self.node.settings().session.reload == ReloadPolicy::Message && self.web_key.is_some() {
            if self.waiting.len() >= MAX_WAITING_FOR_RELOAD {
                let reason = "too many messages waiting for the session store";
                return self.close(ctx, Close::LimitExceeded(reason));
            }
            self.waiting.push_back(text.to_owned());
            self.reload(ctx, StoreErrorPolicy::Close);
            return;
        }
        self.on_text(ctx, text);
    }

    pub(super) fn on_fragment(&mut self, ctx: &mut ws::WebsocketContext<Self>, item: Item) {
        let max = self.node.settings().websocket.max_message_size;
        let (bytes, last) = match item {
            Item::FirstBinary(_) => {
                let reason = "binary frames are not supported";
                return self.close(ctx, Close::Unsupported(reason));
            }
            Item::FirstText(b) => {
                if self.fragments.is_some() {
                    let reason = "new message started inside a fragmented one";
                    return self.close(ctx, Close::Protocol(reason));
                }
                self.fragments = Some(Vec::new());
                (b, false)
            }
            Item::Continue(b) => (b, false),
            Item::Last(b) => (b, true),
        };
        let Some(buffer) = self.fragments.as_mut() else {
            let reason = "continuation frame without a first frame";
            return self.close(ctx, Close::Protocol(reason));
        };
        if buffer.len() + bytes.len() > max {
            let reason = format!("message larger than {max} bytes");
            return self.close(ctx, Close::TooBig(&reason));
        }
        buffer.extend_from_slice(&bytes);
        if last {
            let buffer = self.fragments.take().unwrap_or_default();
            match String::from_utf8(buffer) {
                Ok(text) => self.on_message(ctx, &text),
                Err(_) => self.close(ctx, Close::NotUtf8("text message is not valid UTF-8")),
            }
        }
    }
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for Connection {
    fn handle(&mut self, item: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        match item {
            Ok(ws::Message::Text(text)) => {
                if self.fragments.is_some() {
                    let reason = "text frame inside a fragmented message";
                    return self.close(ctx, Close::Protocol(reason));
                }
                self.on_message(ctx, &text)
            }
            Ok(ws::Message::Binary(_)) => {
                metrics::inc(&self.node.metrics().protocol_errors_total);
                let reason = format!("binary frames are not supported on {}", self.protocol.token());
                self.close(ctx, Close::Unsupported(&reason))
            }
            Ok(ws::Message::Continuation(item)) => self.on_fragment(ctx, item),
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Close(reason)) => {
                if self.state != Phase::Closing {
                    self.state = Phase::Closing;
                    self.outbox.shut();
                    self.closed_for = Some(CloseReason::ClientClose);
                    ctx.close(reason);
                }
                ctx.stop();
            }
            Err(ProtocolError::Io(e)) => {
                // The peer vanished (reset, EOF mid-frame): not a protocol violation, just the end. (A text
                // frame that is not UTF-8 never gets here: the frame guard refuses it, see `finished`.)
                log::debug!("session {}: connection lost: {e}", self.session);
                ctx.stop();
            }
            Err(error) => {
                metrics::inc(&self.node.metrics().protocol_errors_total);
                let max = self.node.settings().websocket.max_message_size;
                match error {
                    ProtocolError::Overflow => {
                        let reason = format!("message larger than {max} bytes");
                        self.close(ctx, Close::TooBig(&reason))
                    }
                    other => {
                        let reason = format!("WebSocket protocol error: {other}");
                        self.close(ctx, Close::Protocol(&reason))
                    }
                }
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        if let Some(violation) = self.verdict.get() {
            metrics::inc(&self.node.metrics().protocol_errors_total);
            log::debug!("session {}: WebSocket input refused: {violation}", self.session);
            let reason = violation.to_string();
            let close = match CloseCode::from(violation.close_code()) {
                CloseCode::Size => Close::TooBig(&reason),
                CloseCode::Invalid => Close::NotUtf8(&reason),
                _ => Close::Protocol(&reason),
            };
            return self.close(ctx, close);
        }
        ctx.stop();
    }
}
