//! The echo endpoint the Autobahn WebSocket conformance suite tests (`tests/autobahn/run`): the ready server's
//! own transport and frame guard ([`switchboard::testing::echo_server`]), echoing every message.
//!
//! Run: `cargo run --example autobahn-echo [ADDR]` (default `127.0.0.1:0`); it prints `listening on ADDR`
//! once the socket is bound, then serves until killed.

use std::net::TcpListener;

/// Largest message echoed: section 9 sends messages of up to 16 MiB.
const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&addr)?;
    println!("listening on {}", listener.local_addr()?);
    switchboard::testing::echo_server(listener, MAX_MESSAGE_SIZE)?.await
}
