//! Frames and handshakes from a hostile client: oversize headers, framing faults, bad close codes, wrong
//! WebSocket versions and keys. Every one gets its defined answer at once, and nothing is buffered for it.

use std::time::{Duration, Instant};

use actix_web::{App, HttpServer};
use serde_json::json;
use switchboard::client::V2Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Proc;
use crate::helpers::*;

/// A masked client frame with an explicit first byte (FIN, RSV, opcode).
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0x37u8, 0xFA, 0x21, 0x3D];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A bare text frame header announcing `len` payload bytes (masked, 64-bit length).
fn header_announcing(len: u64) -> Vec<u8> {
    let mut out = vec![0x81, 0x80 | 127];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

/// Opens a WebSocket with `protocol` by hand and returns the socket after the 101.
pub async fn raw_upgrade(addr: &str, protocol: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// Reads an HTTP response head (up to the blank line).
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(WAIT, stream.read(&mut byte)).await.expect("response head in time").unwrap();
        assert!(n > 0, "closed during the head: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Reads server frames until a close frame; returns its code and reason. Other frames are skipped.
pub async fn read_close(stream: &mut TcpStream, within: Duration) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = Vec::new();
    loop {
        // Parse complete server frames (unmasked, short lengths are enough for our answers).
        while buf.len() >= 2 {
            let (len, at) = match buf[1] & 0x7F {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if buf.len() < at + len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..at + len).collect();
            if frame[0] & 0x0F == 0x8 {
                let payload = &frame[at..];
                let code = if payload.len() >= 2 { u16::from_be_bytes([payload[0], payload[1]]) } else { 1005 };
                return (code, String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned());
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .expect("a close frame in time")
            .expect("socket readable");
        assert!(n > 0, "connection ended without a close frame");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends `header`, then streams filler for at most `limit` bytes or until the server stops reading (write fails
/// or stalls). Returns how many payload bytes the server took.
async fn stream_after(stream: TcpStream, header: Vec<u8>, limit: usize) -> (TcpStream, usize) {
    let (mut read, mut write) = stream.into_split();
    write.write_all(&header).await.unwrap();
    let chunk = vec![0x41u8; 64 * 1024];
    let mut sent = 0;
    while sent < limit {
        match tokio::time::timeout(Duration::from_millis(500), write.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            _ => break,
        }
    }
    let mut rest = [0u8; 0];
    let _ = read.read(&mut rest).await;
    (read.reunite(write).unwrap(), sent)
}

#[actix_web::test]
async fn a_frame_header_announcing_a_terabyte_closes_1009_at_once_and_buffers_nothing() {
    let node = Proc::start("[server]\nworkers = 1\n").await;
    let baseline = node.rss_kib();
    for (protocol, hello) in [("wamp.2.json", false), ("wamp.2.json", true), ("wamp", false)] {
        let mut stream = raw_upgrade(&node.addr(), protocol).await;
        if hello {
            stream.write_all(&client_frame(0x81, br#"[1,"realm1",{"roles":{"subscriber":{}}}]"#)).await.unwrap();
        }
        let started = Instant::now();
        stream.write_all(&header_announcing(1 << 40)).await.unwrap();
        // The answer comes from the header alone, while the client is still free to send.
        let (code, reason) = read_close(&mut stream, WAIT).await;
        assert_eq!(code, 1009, "{protocol} hello={hello}: {reason}");
        assert!(reason.contains("65536"), "{reason}");
        assert!(started.elapsed() < WAIT);
    }
    // A client that ignores the close and streams 200 MiB of payload is not read into memory, while a
    // well-behaved pair keeps its traffic.
    let mut reader = V2Session::connect(&node.ws(), "realm1").await.unwrap();
    reader.subscribe("news").await.unwrap();
    let mut writer = V2Session::connect(&node.ws(), "realm1").await.unwrap();
    let stream = raw_upgrade(&node.addr(), "wamp.2.json").await;
    let attack = tokio::spawn(stream_after(stream, header_announcing(1 << 40), 200 << 20));
    for i in 0..50 {
        writer.publish("news", dict(json!({})), vec![json!(i)]).await.unwrap();
        assert_eq!(reader.next_event(WAIT).await.unwrap().3, vec![json!(i)]);
    }
    let (_stream, taken) = attack.await.unwrap();
    let grown = node.rss_kib().saturating_sub(baseline);
    assert!(grown < 30 * 1024, "RSS grew by {grown} KiB while a client streamed an oversize frame");
    assert!(taken < 200 << 20, "the node stopped reading: it took {taken} bytes of the 200 MiB");
    assert!(node.metric("protocol_errors_total").await >= 4);
    let live = awc::Client::default().get(node.http("/health/live")).send().await.unwrap();
    assert_eq!(live.status(), 200);
}

#[actix_web::test]
async fn a_fragmented_message_growing_past_the_limit_closes_1009_at_that_fragments_header() {
    let node = Proc::start("[server]\nworkers = 1\n[websocket]\nmax_message_size = 4096\n").await;
    let mut stream = raw_upgrade(&node.addr(), "wamp.2.json").await;
    stream.write_all(&client_frame(0x01, &[b' '; 3000])).await.unwrap();
    // The continuation announces 2,000 bytes: 5,000 in all. Only its header is sent.
    let mut header = vec![0x80, 0x80 | 126];
    header.extend_from_slice(&2000u16.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 0]);
    stream.write_all(&header).await.unwrap();
    assert_eq!(read_close(&mut stream, WAIT).await.0, 1009);
}

#[actix_web::test]
async fn an_oversize_header_closes_1009_at_once_when_mounted_in_an_own_http_server() {
    let mut settings = test_settings();
    settings.websocket.max_message_size = 4096;
    let node = switchboard::Switchboard::builder(settings).build().await.unwrap();
    let configure = node.configure();
    let server =
        HttpServer::new(move || App::new().configure(configure.clone())).workers(1).bind("127.0.0.1:0").unwrap();
    let addr = server.addrs()[0].to_string();
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);

    let mut stream = raw_upgrade(&addr, "wamp.2.json").await;
    stream.write_all(&header_announcing(1 << 40)).await.unwrap();
    stream.write_all(&[0x41; 8192]).await.unwrap();
    assert_eq!(read_close(&mut stream, WAIT).await.0, 1009, "refused at the header, not after 1 TiB");
    handle.stop(false).await;
}

#[actix_web::test]
async fn reserved_bits_close_1002_and_are_counted() {
    let node = Proc::start("[server]\nworkers = 1\n").await;
    let before = node.metric("protocol_errors_total").await;
    let mut stream = raw_upgrade(&node.addr(), "wamp.2.json").await;
    stream.write_all(&client_frame(0x81 | 0x40, b"[1,\"r\",{}]")).await.unwrap();
    let (code, reason) = read_close(&mut stream, WAIT).await;
    assert_eq!(code, 1002);
    assert!(reason.contains("reserved bits"), "{reason}");
    assert_eq!(node.metric("protocol_errors_total").await, before + 1);
}

#[actix_web::test]
async fn invalid_close_codes_close_1002_with_an_honest_reason() {
    let node = Proc::start("[server]\nworkers = 1\n").await;
    for (payload, expected, words) in [
        (vec![0x03, 0xED], 1002, "invalid close code 1005"),
        (vec![0x00, 0x01], 1002, "invalid close code 1"),
        (vec![0x03], 1002, "1-byte"),
        (vec![0x03, 0xE8, 0xC3, 0x28], 1007, "UTF-8"),
    ] {
        let mut stream = raw_upgrade(&node.addr(), "wamp").await;
        stream.write_all(&client_frame(0x88, &payload)).await.unwrap();
        let (code, reason) = read_close(&mut stream, WAIT).await;
        assert_eq!(code, expected, "{payload:?}: {reason}");
        assert!(reason.contains(words), "{reason}");
    }
    // A valid close is echoed with its code.
    let mut stream = raw_upgrade(&node.addr(), "wamp").await;
    stream.write_all(&client_frame(0x88, &[0x0F, 0xA0])).await.unwrap();
    assert_eq!(read_close(&mut stream, WAIT).await.0, 4000);
}

/// Sends an upgrade request with the given version and key headers; returns the response head.
async fn handshake(addr: &str, version: &str, key: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\nSec-WebSocket-Protocol: wamp.2.json\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    read_head(&mut stream).await
}

#[actix_web::test]
async fn only_websocket_version_13_with_a_well_formed_key_is_upgraded() {
    let node = Proc::start("[server]\nworkers = 1\n").await;
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    for version in ["8", "7", "12", "14", ""] {
        let head = handshake(&node.addr(), version, key).await;
        assert!(head.starts_with("HTTP/1.1 426"), "version {version:?}: {head}");
        assert!(head.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{head}");
    }
    for key in ["", "not base64!", "c2hvcnQ=", "dGhlIHNhbXBsZSBub25jZQ==dGhl"] {
        let head = handshake(&node.addr(), "13", key).await;
        assert!(head.starts_with("HTTP/1.1 400"), "key {key:?}: {head}");
    }
    assert!(handshake(&node.addr(), "13", key).await.starts_with("HTTP/1.1 101"));
}
