//! From WebSocket frames to WAMP messages: the actor's input stream, fragment reassembly (bounded by
//! `websocket.max_message_size`; [`Fragments`]), inbound rate limits, and what happens to a message while a
//! session reload holds it. Text arrives as UTF-8: the frame guard (`crate::frame`) refuses any text message
//! that is not before it completes, and the stream then ends with that verdict (`finished`, close 1007).

use super::*;

/// Why a frame could not join the fragmented message being reassembled.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum FragmentError {
    /// A fragmented binary message: the negotiated protocols are text.
    #[error("binary frames are not supported")]
    Binary,
    /// A first frame while a message is still being reassembled.
    #[error("new message started inside a fragmented one")]
    Interleaved,
    /// A continuation with no first frame before it.
    #[error("continuation frame without a first frame")]
    Orphan,
    /// The message grew past `websocket.max_message_size`.
    #[error("message larger than {0} bytes")]
    TooBig(usize),
    /// The reassembled text is not UTF-8.
    #[error("text message is not valid UTF-8")]
    NotUtf8,
}

/// A fragmented text message being reassembled, if one is.
#[derive(Debug, Default)]
pub(super) struct Fragments(Option<Vec<u8>>);

impl Fragments {
    /// Whether a message is being reassembled.
    pub(super) fn in_progress(&self) -> bool {
        self.0.is_some()
    }

    /// Adds one frame of at most `max` bytes in all: the whole message once its last frame is in.
    pub(super) fn push(&mut self, item: Item, max: usize) -> Result<Option<String>, FragmentError> {
        let (bytes, last) = match item {
            Item::FirstBinary(_) => return Err(FragmentError::Binary),
            Item::FirstText(bytes) => {
                if self.0.is_some() {
                    return Err(FragmentError::Interleaved);
                }
                self.0 = Some(Vec::new());
                (bytes, false)
            }
            Item::Continue(bytes) => (bytes, false),
            Item::Last(bytes) => (bytes, true),
        };
        let Some(buffer) = self.0.as_mut() else { return Err(FragmentError::Orphan) };
        if buffer.len() + bytes.len() > max {
            return Err(FragmentError::TooBig(max));
        }
        buffer.extend_from_slice(&bytes);
        if !last {
            return Ok(None);
        }
        let buffer = self.0.take().unwrap_or_default();
        String::from_utf8(buffer).map(Some).map_err(|_| FragmentError::NotUtf8)
    }
}

impl Connection {
    /// Decodes a complete text message in the negotiated protocol and handles it.
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

    /// A message that does not decode breaks the protocol (ABORT for v2, close 1002).
    fn on_decode_error(&mut self, ctx: &mut ws::WebsocketContext<Self>, error: DecodeError) {
        self.fail(ctx, &Reply::Unanswered, error.into());
    }

    /// Handles a complete inbound text message.
    pub(super) fn on_message(&mut self, ctx: &mut ws::WebsocketContext<Self>, text: &str) {
        if self.state == Phase::Closing {
            return;
        }
        if let Err(over) = self.limits.admit(text.len()) {
            log::warn!("session {}: closed: inbound {over}", self.session);
            return self.close(ctx, Close::RateLimited(&over.to_string()));
        }
        if self.node.settings().session.reload == ReloadPolicy::Message && self.web.exists() {
            if let Err(e) = self.web.hold(text) {
                return self.close(ctx, Close::LimitExceeded(&e.to_string()));
            }
            self.reload(ctx, StoreErrorPolicy::Close);
            return;
        }
        self.on_text(ctx, text);
    }

    /// Handles one frame of a fragmented message: the message once its last frame is in.
    pub(super) fn on_fragment(&mut self, ctx: &mut ws::WebsocketContext<Self>, item: Item) {
        let max = self.node.settings().websocket.max_message_size;
        match self.fragments.push(item, max) {
            Ok(None) => {}
            Ok(Some(text)) => self.on_message(ctx, &text),
            Err(e) => {
                let reason = e.to_string();
                self.close(ctx, Close::fragments(&e, &reason));
            }
        }
    }

    /// The WebSocket codec refused the input (the frame guard lets little through for it to refuse).
    fn on_protocol_error(&mut self, ctx: &mut ws::WebsocketContext<Self>, error: ProtocolError) {
        metrics::inc(&self.node.metrics().protocol_errors_total);
        match error {
            ProtocolError::Overflow => {
                let max = self.node.settings().websocket.max_message_size;
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

impl StreamHandler<Result<ws::Message, ProtocolError>> for Connection {
    fn handle(&mut self, item: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        match item {
            Ok(ws::Message::Text(text)) => {
                if self.fragments.in_progress() {
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
            Err(error) => self.on_protocol_error(ctx, error),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        if let Some(violation) = self.verdict.get() {
            metrics::inc(&self.node.metrics().protocol_errors_total);
            log::debug!("session {}: WebSocket input refused: {violation}", self.session);
            let reason = violation.to_string();
            return self.close(ctx, Close::refused_input(&violation, &reason));
        }
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    /// A frame payload.
    fn text(bytes: &'static [u8]) -> Bytes {
        Bytes::from_static(bytes)
    }

    #[test]
    fn fragments_reassemble_into_one_message_and_start_afresh() {
        let mut fragments = Fragments::default();
        assert_eq!(fragments.push(Item::FirstText(text(b"[1,")), 100), Ok(None));
        assert!(fragments.in_progress());
        assert_eq!(fragments.push(Item::Continue(text(b"\"r\"")), 100), Ok(None));
        assert_eq!(fragments.push(Item::Last(text(b",{}]")), 100), Ok(Some("[1,\"r\",{}]".to_owned())));
        assert!(!fragments.in_progress());
        assert_eq!(fragments.push(Item::FirstText(text(b"x")), 100), Ok(None), "the next message");
    }

    #[test]
    fn each_broken_sequence_of_fragments_has_its_error_and_close() {
        let cases: Vec<(Vec<Item>, FragmentError, u16)> = vec![
            (vec![Item::FirstBinary(text(b"b"))], FragmentError::Binary, 1003),
            (vec![Item::FirstText(text(b"a")), Item::FirstText(text(b"b"))], FragmentError::Interleaved, 1002),
            (vec![Item::Continue(text(b"a"))], FragmentError::Orphan, 1002),
            (vec![Item::Last(text(b"a"))], FragmentError::Orphan, 1002),
            (vec![Item::FirstText(text(b"12345")), Item::Last(text(b"6"))], FragmentError::TooBig(5), 1009),
            (vec![Item::FirstText(text(b"\xe2\x82")), Item::Last(text(b""))], FragmentError::NotUtf8, 1007),
        ];
        for (items, expected, code) in cases {
            let mut fragments = Fragments::default();
            let error = items.into_iter().find_map(|item| fragments.push(item, 5).err());
            assert_eq!(error.as_ref(), Some(&expected));
            let reason = expected.to_string();
            assert_eq!(u16::from(Close::fragments(&expected, &reason).code()), code, "{expected}");
        }
    }
}
