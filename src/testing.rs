//! Test support compiled into the library: an echo endpoint on the ready server's socket layer, for the
//! Autobahn WebSocket conformance suite (`tests/autobahn/`). Not part of the supported API.

use std::io;
use std::net::TcpListener;
use std::time::Duration;

use actix::prelude::*;
use actix_http::ws::{CloseCode, CloseReason, Item};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, ProtocolError, WebsocketContext};
use bytes::BytesMut;

use crate::transport::{self, Accept, ServerOptions, Verdict};

/// How long a stalled echo write may wait (the suite's clients always read).
const ECHO_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts an echo WebSocket server on `listener` (any path, no subprotocol), through the same transport and
/// frame guard as the ready server. Messages over `max_message_size` close with 1009.
pub fn echo_server(listener: TcpListener, max_message_size: usize) -> io::Result<actix_server::Server> {
    let options =
        ServerOptions { workers: 1, shutdown_timeout: Duration::from_secs(1), write_timeout: ECHO_WRITE_TIMEOUT };
    let configure = move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(max_message_size)).default_service(web::get().to(upgrade));
    };
    let (server, _) = transport::server(listener, options, configure)?;
    Ok(server)
}

async fn upgrade(req: HttpRequest, max: web::Data<usize>) -> Result<HttpResponse, actix_web::Error> {
    let mut response = ws::handshake(&req)?.finish();
    if req.app_data::<transport::Direct>().is_some() {
        let verdict = Verdict::default();
        let echo = Echo { max: **max, fragments: None, verdict: verdict.clone() };
        response.extensions_mut().insert(Accept::new(echo, **max, verdict));
    }
    Ok(response)
}

/// Echoes every message back, reassembling fragmented ones.
struct Echo {
    max: usize,
    /// A fragmented message being reassembled: text or binary, and its bytes.
    fragments: Option<(bool, BytesMut)>,
    verdict: Verdict,
}

impl Echo {
    fn close(&mut self, ctx: &mut WebsocketContext<Self>, code: CloseCode, reason: &str) {
        ctx.close(Some(CloseReason { code, description: Some(reason.to_owned()) }));
        ctx.stop();
    }
}

impl Actor for Echo {
    type Context = WebsocketContext<Self>;
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for Echo {
    fn handle(&mut self, item: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        match item {
            Ok(ws::Message::Text(text)) => ctx.text(text),
            Ok(ws::Message::Binary(bytes)) => ctx.binary(bytes),
            Ok(ws::Message::Continuation(item)) => {
                let (text, bytes, last) = match item {
                    Item::FirstText(b) => (Some(true), b, false),
                    Item::FirstBinary(b) => (Some(false), b, false),
                    Item::Continue(b) => (None, b, false),
                    Item::Last(b) => (None, b, true),
                };
                if let Some(text) = text {
                    self.fragments = Some((text, BytesMut::new()));
                }
                let Some((_, buffer)) = self.fragments.as_mut() else {
                    return self.close(ctx, CloseCode::Protocol, "continuation without a message");
                };
                if buffer.len() + bytes.len() > self.max {
                    return self.close(ctx, CloseCode::Size, "message too large");
                }
                buffer.extend_from_slice(&bytes);
                if last {
                    let Some((text, buffer)) = self.fragments.take() else { return };
                    if !text {
                        return ctx.binary(buffer.freeze());
                    }
                    match bytestring::ByteString::try_from(buffer.freeze()) {
                        Ok(text) => ctx.text(text),
                        Err(_) => self.close(ctx, CloseCode::Invalid, "text message is not valid UTF-8"),
                    }
                }
            }
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Err(e) => self.close(ctx, CloseCode::Protocol, &e.to_string()),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        if let Some(violation) = self.verdict.get() {
            return self.close(ctx, CloseCode::from(violation.close_code()), &violation.to_string());
        }
        ctx.stop();
    }
}
