//! From WebSocket frames to WAMP messages: the actor's input stream, fragment reassembly (bounded by
//! `websocket.max_message_size`; [`Fragments`]), inbound rate limits, and what happens to a message while a
//! session reload holds it. Text arrives as UTF-8: the frame guard (`crate::frame`) refuses any text message
//! that is not before it completes, and the stream then ends with that verdict (`finished`, close 1007).

use super::*;

/// Why a frame could not join the fragmented message being reassembled.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum FragmentError {
    /// A fragmented message of the kind the session does not speak (binary on `wamp.2.json` or `wamp`, text
    /// on `wamp.2.msgpack` or `wamp.2.cbor`).
    #[error("{0} frames are not supported on {1}")]
    WrongKind(&'static str, &'static str),
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

/// A complete message reassembled from fragments.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Reassembled {
    /// A text message (UTF-8).
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// A fragmented message being reassembled, if one is: its bytes so far and whether it is binary.
#[derive(Debug, Default)]
pub(super) struct Fragments(Option<(Vec<u8>, bool)>);

impl Fragments {
    /// Whether a message is being reassembled.
    pub(super) fn in_progress(&self) -> bool {
        self.0.is_some()
    }

    /// Adds one frame of at most `max` bytes in all: the whole message once its last frame is in. `protocol`
    /// says which kind of message may start (binary for binary serializers, text otherwise).
    pub(super) fn push(
        &mut self,
        item: Item,
        max: usize,
        protocol: Protocol,
    ) -> Result<Option<Reassembled>, FragmentError> {
        let first = match &item {
            Item::FirstText(_) => Some(false),
            Item::FirstBinary(_) => Some(true),
            Item::Continue(_) | Item::Last(_) => None,
        };
        if let Some(binary) = first {
            if self.0.is_some() {
                return Err(FragmentError::Interleaved);
            }
            if binary != protocol.binary().is_some() {
                let kind = if binary { "binary" } else { "text" };
                return Err(FragmentError::WrongKind(kind, protocol.token()));
            }
            self.0 = Some((Vec::new(), binary));
        }
        let (bytes, last) = match item {
            Item::FirstText(bytes) | Item::FirstBinary(bytes) | Item::Continue(bytes) => (bytes, false),
            Item::Last(bytes) => (bytes, true),
        };
        let Some((buffer, _)) = self.0.as_mut() else { return Err(FragmentError::Orphan) };
        if buffer.len() + bytes.len() > max {
            return Err(FragmentError::TooBig(max));
        }
        buffer.extend_from_slice(&bytes);
        if !last {
            return Ok(None);
        }
        match self.0.take() {
            Some((buffer, true)) => Ok(Some(Reassembled::Binary(buffer))),
            Some((buffer, false)) => {
                String::from_utf8(buffer).map(|t| Some(Reassembled::Text(t))).map_err(|_| FragmentError::NotUtf8)
            }
            None => Ok(None),
        }
    }
}

impl Connection {
    /// Decodes a complete text message in the negotiated protocol and handles it.
    pub(super) fn on_text(&mut self, ctx: &mut ws::WebsocketContext<Self>, text: &str) {
        metrics::inc(&self.node.metrics().messages_in_total);
        match self.protocol {
            // JSON text: a `wamp.2.json` frame, or a binary session's message held for a reload.
            Protocol::V2(_) => match v2::Message::decode(text) {
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

    /// Whether a complete inbound message of `len` bytes may be handled (the connection is not closing and
    /// the inbound limits admit it; over them, it closes).
    fn admit_message(&mut self, ctx: &mut ws::WebsocketContext<Self>, len: usize) -> bool {
        if self.state == Phase::Closing {
            return false;
        }
        if let Err(over) = self.limits.admit(len) {
            log::warn!("session {}: closed: inbound {over}", self.session);
            self.close(ctx, Close::RateLimited(&over.to_string()));
            return false;
        }
        true
    }

    /// Whether inbound messages wait for the web session to be read again (`session.reload = "message"`).
    fn holds_for_reload(&self) -> bool {
        self.node.settings().session.reload == ReloadPolicy::Message && self.web.exists()
    }

    /// Holds `text` (JSON) until the web session is read again, and starts that read.
    fn hold_for_reload(&mut self, ctx: &mut ws::WebsocketContext<Self>, text: &str) {
        match self.web.hold(text) {
            Ok(()) => self.reload(ctx, StoreErrorPolicy::Close),
            Err(e) => self.close(ctx, Close::LimitExceeded(&e.to_string())),
        }
    }

    /// Handles a complete inbound text message.
    pub(super) fn on_message(&mut self, ctx: &mut ws::WebsocketContext<Self>, text: &str) {
        if self.protocol.binary().is_some() {
            return self.refuse_kind(ctx, "text");
        }
        if !self.admit_message(ctx, text.len()) {
            return;
        }
        match self.holds_for_reload() {
            true => self.hold_for_reload(ctx, text),
            false => self.on_text(ctx, text),
        }
    }

    /// Handles a complete inbound binary message: a `wamp.2.msgpack` or `wamp.2.cbor` frame, read into the
    /// value tree a JSON frame parses into and checked by the same decoder.
    pub(super) fn on_binary(&mut self, ctx: &mut ws::WebsocketContext<Self>, bytes: &[u8]) {
        let Some(serializer) = self.protocol.binary() else { return self.refuse_kind(ctx, "binary") };
        if !self.admit_message(ctx, bytes.len()) {
            return;
        }
        match v2::Message::decode_binary(serializer, bytes) {
            // Held as JSON text, written only then: counted when it is handled (`on_text`).
            Ok(message) if self.holds_for_reload() => self.hold_for_reload(ctx, &message.encode()),
            Ok(message) => {
                metrics::inc(&self.node.metrics().messages_in_total);
                self.on_v2(ctx, message);
            }
            Err(e) => {
                metrics::inc(&self.node.metrics().messages_in_total);
                self.on_decode_error(ctx, e);
            }
        }
    }

    /// A message of the kind the session does not speak: close 1003.
    fn refuse_kind(&mut self, ctx: &mut ws::WebsocketContext<Self>, kind: &'static str) {
        metrics::inc(&self.node.metrics().protocol_errors_total);
        let reason = FragmentError::WrongKind(kind, self.protocol.token()).to_string();
        self.close(ctx, Close::Unsupported(&reason));
    }

    /// Handles one frame of a fragmented message: the message once its last frame is in.
    pub(super) fn on_fragment(&mut self, ctx: &mut ws::WebsocketContext<Self>, item: Item) {
        let max = self.node.settings().websocket.max_message_size;
        match self.fragments.push(item, max, self.protocol) {
            Ok(None) => {}
            Ok(Some(Reassembled::Text(text))) => self.on_message(ctx, &text),
            Ok(Some(Reassembled::Binary(bytes))) => self.on_binary(ctx, &bytes),
            Err(e) => {
                if matches!(e, FragmentError::WrongKind(..)) {
                    metrics::inc(&self.node.metrics().protocol_errors_total);
                }
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
            Ok(ws::Message::Binary(bytes)) => {
                if self.fragments.in_progress() {
                    let reason = "binary frame inside a fragmented message";
                    return self.close(ctx, Close::Protocol(reason));
                }
                self.on_binary(ctx, &bytes)
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
        let (mut fragments, json) = (Fragments::default(), Protocol::V2_JSON);
        assert_eq!(fragments.push(Item::FirstText(text(b"[1,")), 100, json), Ok(None));
        assert!(fragments.in_progress());
        assert_eq!(fragments.push(Item::Continue(text(b"\"r\"")), 100, json), Ok(None));
        let whole = Reassembled::Text("[1,\"r\",{}]".to_owned());
        assert_eq!(fragments.push(Item::Last(text(b",{}]")), 100, json), Ok(Some(whole)));
        assert!(!fragments.in_progress());
        assert_eq!(fragments.push(Item::FirstText(text(b"x")), 100, json), Ok(None), "the next message");
    }

    #[test]
    fn binary_sessions_reassemble_binary_messages() {
        let (mut fragments, msgpack) = (Fragments::default(), Protocol::V2(crate::wamp::Serializer::MsgPack));
        assert_eq!(fragments.push(Item::FirstBinary(text(b"\x93\x01")), 100, msgpack), Ok(None));
        let whole = Reassembled::Binary(b"\x93\x01\xa1r\x80".to_vec());
        assert_eq!(fragments.push(Item::Last(text(b"\xa1r\x80")), 100, msgpack), Ok(Some(whole)));
    }

    #[test]
    fn each_broken_sequence_of_fragments_has_its_error_and_close() {
        let (json, cbor) = (Protocol::V2_JSON, Protocol::V2(crate::wamp::Serializer::Cbor));
        let cases: Vec<(Vec<Item>, Protocol, FragmentError, u16)> = vec![
            (vec![Item::FirstBinary(text(b"b"))], json, FragmentError::WrongKind("binary", "wamp.2.json"), 1003),
            (vec![Item::FirstBinary(text(b"b"))], Protocol::V1, FragmentError::WrongKind("binary", "wamp"), 1003),
            (vec![Item::FirstText(text(b"t"))], cbor, FragmentError::WrongKind("text", "wamp.2.cbor"), 1003),
            (vec![Item::FirstText(text(b"a")), Item::FirstText(text(b"b"))], json, FragmentError::Interleaved, 1002),
            (
                vec![Item::FirstBinary(text(b"a")), Item::FirstBinary(text(b"b"))],
                cbor,
                FragmentError::Interleaved,
                1002,
            ),
            (vec![Item::Continue(text(b"a"))], json, FragmentError::Orphan, 1002),
            (vec![Item::Last(text(b"a"))], json, FragmentError::Orphan, 1002),
            (vec![Item::FirstText(text(b"12345")), Item::Last(text(b"6"))], json, FragmentError::TooBig(5), 1009),
            (vec![Item::FirstBinary(text(b"12345")), Item::Last(text(b"6"))], cbor, FragmentError::TooBig(5), 1009),
            (vec![Item::FirstText(text(b"\xe2\x82")), Item::Last(text(b""))], json, FragmentError::NotUtf8, 1007),
        ];
        for (items, protocol, expected, code) in cases {
            let mut fragments = Fragments::default();
            let error = items.into_iter().find_map(|item| fragments.push(item, 5, protocol).err());
            assert_eq!(error.as_ref(), Some(&expected));
            let reason = expected.to_string();
            assert_eq!(u16::from(Close::fragments(&expected, &reason).code()), code, "{expected}");
        }
    }
}
