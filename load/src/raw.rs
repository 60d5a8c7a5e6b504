//! The receive path of a load client that must not be the bottleneck: server frames parsed in place from one
//! read buffer per socket, with no allocation, no timer and no clock read per frame.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a socket's buffer starts with; it grows to hold a larger frame.
const START: usize = 4 * 1024;

/// Reads WebSocket frames from a server (unmasked) over plain TCP after the handshake.
pub struct RawReader {
    tcp: TcpStream,
    buf: Vec<u8>,
    filled: usize,
    /// A fragmented message being put back together.
    message: Vec<u8>,
}

/// Where a frame's payload starts and how long it is, if `b` holds the whole frame.
fn frame_at(b: &[u8]) -> Option<(usize, usize)> {
    let (head, len) = match *b.get(1)? & 0x7f {
        126 => (4, u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize),
        127 => (10, u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize),
        n => (2, n as usize),
    };
    let head = if b[1] & 0x80 != 0 { head + 4 } else { head };
    (b.len() >= head + len).then_some((head, len))
}

/// A masked (zero key) pong carrying `payload`, as a client must send it.
fn pong(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x8a, 0x80 | payload.len().min(125) as u8, 0, 0, 0, 0];
    f.extend_from_slice(&payload[..payload.len().min(125)]);
    f
}

impl RawReader {
    pub fn new(tcp: TcpStream) -> RawReader {
        RawReader { tcp, buf: vec![0; START], filled: 0, message: Vec::new() }
    }

    /// Waits for bytes, then hands every complete data message (text or binary) to `on_text` (pings are
    /// answered).
    /// `Ok(false)` once the server closed the connection.
    pub async fn read(&mut self, mut on_text: impl FnMut(&[u8])) -> io::Result<bool> {
        if self.buf.len() - self.filled < START / 2 {
            let grown = (self.buf.len() * 2).max(self.filled + START);
            self.buf.resize(grown, 0);
        }
        let n = self.tcp.read(&mut self.buf[self.filled..]).await?;
        if n == 0 {
            return Ok(false);
        }
        self.filled += n;
        let (mut at, mut open, mut pongs) = (0, true, Vec::new());
        while let Some((head, len)) = frame_at(&self.buf[at..self.filled]) {
            let (first, payload) = (self.buf[at], &self.buf[at + head..at + head + len]);
            let fin = first & 0x80 != 0;
            match first & 0x0f {
                1 | 2 if fin => on_text(payload),
                1 | 2 => {
                    self.message.clear();
                    self.message.extend_from_slice(payload);
                }
                0 => {
                    self.message.extend_from_slice(payload);
                    if fin {
                        on_text(&self.message);
                    }
                }
                8 => open = false,
                9 => pongs.push(pong(payload)),
                _ => {}
            }
            at += head + len;
        }
        self.buf.copy_within(at..self.filled, 0);
        self.filled -= at;
        for p in pongs {
            self.tcp.write_all(&p).await?;
        }
        Ok(open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_found_only_when_whole() {
        assert_eq!(frame_at(&[0x81, 3, b'a', b'b', b'c']), Some((2, 3)));
        assert_eq!(frame_at(&[0x81, 3, b'a', b'b']), None);
        assert_eq!(frame_at(&[0x81]), None);
        let mut long = vec![0x81, 126, 0x01, 0x00];
        assert_eq!(frame_at(&long), None);
        long.extend(std::iter::repeat_n(b'x', 256));
        assert_eq!(frame_at(&long), Some((4, 256)));
    }

    #[test]
    fn pongs_are_masked() {
        assert_eq!(pong(b"hi"), vec![0x8a, 0x82, 0, 0, 0, 0, b'h', b'i']);
    }
}
