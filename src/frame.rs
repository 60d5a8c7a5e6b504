//! The WebSocket frame guard: inspects every inbound frame header before any payload is buffered.
//!
//! actix-http's codec checks a frame's size only once the whole frame has arrived, so a header announcing
//! 2^40 bytes made it buffer everything the client streamed. [`FrameGuard`] sits between the socket and the
//! codec and passes bytes on only once the header they belong to is known to be acceptable:
//!
//! - a data frame announcing more than the message limit, or a fragment taking its message past it, is
//!   refused at its header ([`Violation::TooLarge`], close 1009) — none of its payload is passed on;
//! - reserved bits without a negotiated extension, reserved opcodes, unmasked client frames, fragmented or
//!   over-long control frames, continuations without a message and data frames inside one are refused
//!   (close 1002) — the codec never sees them, so every framing fault gets one defined answer;
//! - a close frame is held back until complete (≤ 125 bytes) and its code and reason checked (RFC 6455
//!   §7.4, §5.5.1): an invalid code is 1002, a reason that is not UTF-8 is 1007.
//!
//! The guard holds at most one incomplete header (≤ 14 bytes) and one close frame (≤ 139 bytes). Pure: bytes
//! in, bytes and verdicts out; no I/O, actix or tokio here.

use bytes::{Bytes, BytesMut};

/// Longest frame header: 2 bytes, 8 bytes of extended length, 4 bytes of mask.
const MAX_HEADER: usize = 14;

/// Longest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Why the guard refused the client's input. Each maps to one WebSocket close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A data frame (or the fragmented message it continues) is larger than the limit.
    #[error("message larger than {max} bytes")]
    TooLarge {
        /// The limit, `websocket.max_message_size`.
        max: usize,
    },
    /// RSV1–3 set, but no extension was negotiated.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// Opcode 3–7 or 11–15.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A client frame without a mask (RFC 6455 §5.1).
    #[error("client frame is not masked")]
    Unmasked,
    /// A control frame with FIN clear.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame over 125 bytes.
    #[error("control frame longer than 125 bytes")]
    ControlTooLong,
    /// A continuation frame with no fragmented message in progress.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is still in progress.
    #[error("new data frame inside a fragmented message")]
    InterleavedData,
    /// A close frame whose payload is one byte (a code needs two).
    #[error("close frame with a 1-byte payload")]
    CloseTooShort,
    /// A close code that may not be sent (RFC 6455 §7.4.1, §7.4.2).
    #[error("invalid close code {0}")]
    BadCloseCode(u16),
    /// A close reason that is not UTF-8.
    #[error("close reason is not valid UTF-8")]
    CloseReasonNotUtf8,
}

impl Violation {
    /// The WebSocket close code answering this violation: 1009, 1007 or 1002.
    pub fn close_code(&self) -> u16 {
        match self {
            Violation::TooLarge { .. } => 1009,
            Violation::CloseReasonNotUtf8 => 1007,
            _ => 1002,
        }
    }
}

/// What one call to [`FrameGuard::feed`] lets through.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// Bytes for the codec: whole accepted headers and the payload bytes behind them, in order.
    pub pass: Bytes,
    /// Set when the input broke a rule; nothing after the offending header is passed, now or later.
    pub violation: Option<Violation>,
}

#[derive(Debug)]
enum ParseState {
    /// Collecting a header; `held` has its first bytes.
    Header,
    /// Passing a data or ping/pong payload through.
    Payload { remaining: u64 },
    /// Holding a close frame (header in `held`) until its payload is complete.
    Close { remaining: u64 },
    /// A violation was found: nothing more passes.
    Refused,
}

/// Inspects one client's inbound byte stream frame by frame. See the module documentation.
#[derive(Debug)]
pub struct FrameGuard {
    max_message: usize,
    state: ParseState,
    /// Bytes held back: an incomplete header, or a whole close frame being collected.
    held: Vec<u8>,
    /// Payload bytes of the fragmented data message in progress, if one is.
    message: Option<u64>,
}

/// A parsed frame header.
struct Header {
    len: usize,
    fin: bool,
    opcode: u8,
    payload: u64,
}

impl FrameGuard {
    /// A guard refusing data messages over `max_message` bytes.
    pub fn new(max_message: usize) -> FrameGuard {
        FrameGuard { max_message, state: ParseState::Header, held: Vec::new(), message: None }
    }

    /// Whether a violation was found (nothing more passes).
    pub fn refused(&self) -> bool {
        matches!(self.state, ParseState::Refused)
    }

    /// Inspects the next bytes from the socket.
    pub fn feed(&mut self, input: &Bytes) -> Fed {
        let mut out = Output::default();
        let mut at = 0;
        while at < input.len() {
            match self.state {
                ParseState::Refused => break,
                ParseState::Payload { remaining } => {
                    let take = remaining.min((input.len() - at) as u64) as usize;
                    out.pass(at, at + take);
                    at += take;
                    self.state = Self::after_payload(remaining - take as u64);
                }
                ParseState::Close { remaining } => {
                    let take = remaining.min((input.len() - at) as u64) as usize;
                    self.held.extend_from_slice(&input[at..at + take]);
                    at += take;
                    self.state = ParseState::Close { remaining: remaining - take as u64 };
                    if remaining == take as u64 {
                        if let Err(violation) = check_close(&self.held) {
                            return self.refuse(out, input, violation);
                        }
                        out.release(&mut self.held);
                        self.state = ParseState::Header;
                    }
                }
                ParseState::Header if self.held.is_empty() => {
                    // The usual case: the whole header is in this input, and passes as a slice of it.
                    let header = match parse_header(&input[at..]) {
                        Ok(Some(header)) => header,
                        Ok(None) => {
                            self.held.extend_from_slice(&input[at..]);
                            break;
                        }
                        Err(violation) => return self.refuse(out, input, violation),
                    };
                    if let Err(violation) = self.admit(&header) {
                        return self.refuse(out, input, violation);
                    }
                    if header.opcode == OP_CLOSE {
                        self.held.extend_from_slice(&input[at..at + header.len]);
                    } else {
                        out.pass(at, at + header.len);
                    }
                    at += header.len;
                    self.begin_payload(&header, &mut out);
                }
                ParseState::Header => {
                    // A header split across inputs: complete it in `held`.
                    let before = self.held.len();
                    let want = (MAX_HEADER - before).min(input.len() - at);
                    self.held.extend_from_slice(&input[at..at + want]);
                    let header = match parse_header(&self.held) {
                        Ok(Some(header)) => header,
                        Ok(None) => {
                            at += want;
                            continue;
                        }
                        Err(violation) => return self.refuse(out, input, violation),
                    };
                    // Give back what was copied past the header: it is payload or the next frame.
                    self.held.truncate(header.len);
                    at += header.len - before;
                    if let Err(violation) = self.admit(&header) {
                        return self.refuse(out, input, violation);
                    }
                    if header.opcode != OP_CLOSE {
                        out.release(&mut self.held);
                    }
                    self.begin_payload(&header, &mut out);
                }
            }
        }
        out.finish(input, None)
    }

    /// After an admitted header (already passed, or held for a close frame): what follows it.
    fn begin_payload(&mut self, header: &Header, out: &mut Output) {
        self.state = if header.opcode == OP_CLOSE {
            if header.payload == 0 {
                out.release(&mut self.held);
                ParseState::Header
            } else {
                ParseState::Close { remaining: header.payload }
            }
        } else {
            Self::after_payload(header.payload)
        };
    }

    fn after_payload(remaining: u64) -> ParseState {
        if remaining == 0 {
            ParseState::Header
        } else {
            ParseState::Payload { remaining }
        }
    }

    fn refuse(&mut self, out: Output, input: &Bytes, violation: Violation) -> Fed {
        self.state = ParseState::Refused;
        self.held = Vec::new();
        out.finish(input, Some(violation))
    }

    /// Applies the rules that need the message context to an accepted-syntax header.
    fn admit(&mut self, header: &Header) -> Result<(), Violation> {
        let too_large = Violation::TooLarge { max: self.max_message };
        match header.opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !header.fin {
                    return Err(Violation::FragmentedControl);
                }
                if header.payload > MAX_CONTROL_PAYLOAD {
                    return Err(Violation::ControlTooLong);
                }
            }
            OP_TEXT | OP_BINARY => {
                if self.message.is_some() {
                    return Err(Violation::InterleavedData);
                }
                if header.payload > self.max_message as u64 {
                    return Err(too_large);
                }
                if !header.fin {
                    self.message = Some(header.payload);
                }
            }
            OP_CONTINUATION => {
                let Some(so_far) = self.message else { return Err(Violation::UnexpectedContinuation) };
                let total = so_far.saturating_add(header.payload);
                if total > self.max_message as u64 {
                    return Err(too_large);
                }
                self.message = if header.fin { None } else { Some(total) };
            }
            other => return Err(Violation::ReservedOpcode(other)),
        }
        Ok(())
    }
}

/// Parses a complete header from the start of `bytes`; `Ok(None)` when more bytes are needed.
fn parse_header(bytes: &[u8]) -> Result<Option<Header>, Violation> {
    let [first, second, ..] = *bytes else { return Ok(None) };
    if first & 0x70 != 0 {
        return Err(Violation::ReservedBits);
    }
    let opcode = first & 0x0F;
    if !matches!(opcode, OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG) {
        return Err(Violation::ReservedOpcode(opcode));
    }
    if second & 0x80 == 0 {
        return Err(Violation::Unmasked);
    }
    let (payload, len) = match second & 0x7F {
        126 => match bytes.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match bytes.get(2..10) {
            Some(b) => (u64::from_be_bytes(b.try_into().expect("slice of 8 bytes")), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let len = len + 4; // the mask
    if bytes.len() < len {
        return Ok(None);
    }
    Ok(Some(Header { len, fin: first & 0x80 != 0, opcode, payload }))
}

/// Checks a complete close frame (header with mask, then the masked payload).
fn check_close(frame: &[u8]) -> Result<(), Violation> {
    let header_len = match parse_header(frame) {
        Ok(Some(header)) => header.len,
        _ => unreachable!("a held close frame starts with the header that was admitted"),
    };
    let mask = &frame[header_len - 4..header_len];
    let payload: Vec<u8> = frame[header_len..].iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
    match payload.len() {
        0 => Ok(()),
        1 => Err(Violation::CloseTooShort),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !close_code_allowed(code) {
                return Err(Violation::BadCloseCode(code));
            }
            std::str::from_utf8(&payload[2..]).map(|_| ()).map_err(|_| Violation::CloseReasonNotUtf8)
        }
    }
}

/// Whether a peer may send `code` in a close frame (RFC 6455 §7.4; 1004–1006 and 1015 are never sent, and
/// 1012–1014 are IANA-registered since).
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Collects the bytes to pass: one slice of the input when possible (the usual case: whole frames), a copy
/// only when held bytes (a split header, a close frame) are part of it.
#[derive(Default)]
struct Output {
    segments: Vec<Segment>,
}

enum Segment {
    /// A range of the input.
    Input(usize, usize),
    /// Bytes that were held back.
    Held(Vec<u8>),
}

impl Output {
    fn pass(&mut self, from: usize, to: usize) {
        if from == to {
            return;
        }
        if let Some(Segment::Input(_, end)) = self.segments.last_mut() {
            if *end == from {
                *end = to;
                return;
            }
        }
        self.segments.push(Segment::Input(from, to));
    }

    fn release(&mut self, held: &mut Vec<u8>) {
        if !held.is_empty() {
            self.segments.push(Segment::Held(std::mem::take(held)));
        }
    }

    fn finish(self, input: &Bytes, violation: Option<Violation>) -> Fed {
        let pass = match self.segments.as_slice() {
            [] => Bytes::new(),
            [Segment::Input(from, to)] => input.slice(*from..*to),
            segments => {
                let mut buffer = BytesMut::new();
                for segment in segments {
                    match segment {
                        Segment::Input(from, to) => buffer.extend_from_slice(&input[*from..*to]),
                        Segment::Held(bytes) => buffer.extend_from_slice(bytes),
                    }
                }
                buffer.freeze()
            }
        };
        Fed { pass, violation }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | opcode];
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
        let mask = [1, 2, 3, 4];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// A bare header announcing `len` payload bytes.
    fn header(first: u8, len: u64) -> Vec<u8> {
        let mut out = vec![first, 0x80 | 127];
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[1, 2, 3, 4]);
        out
    }

    fn feed_all(guard: &mut FrameGuard, chunks: &[&[u8]]) -> (Vec<u8>, Option<Violation>) {
        let mut passed = Vec::new();
        for chunk in chunks {
            let fed = guard.feed(&Bytes::copy_from_slice(chunk));
            passed.extend_from_slice(&fed.pass);
            if fed.violation.is_some() {
                return (passed, fed.violation);
            }
        }
        (passed, None)
    }

    #[test]
    fn valid_frames_pass_unchanged_in_any_split() {
        let mut stream = frame(true, OP_TEXT, b"hello");
        stream.extend(frame(false, OP_TEXT, &[b'a'; 300]));
        stream.extend(frame(true, OP_PING, b"p"));
        stream.extend(frame(true, OP_CONTINUATION, &[b'b'; 70_000]));
        stream.extend(frame(true, OP_CLOSE, &[0x03, 0xE8, b'o', b'k']));
        for split in [1, 2, 3, 7, 13, 14, 15, 100, 4096, stream.len()] {
            let mut guard = FrameGuard::new(100_000);
            let chunks: Vec<&[u8]> = stream.chunks(split).collect();
            assert_eq!(feed_all(&mut guard, &chunks), (stream.clone(), None), "split {split}");
        }
    }

    #[test]
    fn whole_frames_pass_as_a_slice_of_the_input() {
        let mut guard = FrameGuard::new(1024);
        let input = Bytes::from([frame(true, OP_TEXT, b"a"), frame(true, OP_TEXT, b"b")].concat());
        let fed = guard.feed(&input);
        assert_eq!(fed.pass.as_ptr(), input.as_ptr(), "no copy");
    }

    #[test]
    fn an_oversize_header_is_refused_before_any_payload() {
        let mut guard = FrameGuard::new(65_536);
        let ok = frame(true, OP_TEXT, b"fine");
        let mut input = ok.clone();
        input.extend(header(0x81, 1 << 40));
        input.extend_from_slice(&[0u8; 1000]);
        let (passed, violation) = feed_all(&mut guard, &[&input]);
        assert_eq!(passed, ok, "the frame before passes, nothing of the oversize one");
        assert_eq!(violation, Some(Violation::TooLarge { max: 65_536 }));
        assert_eq!(violation.unwrap().close_code(), 1009);
        assert!(guard.refused());
        assert_eq!(guard.feed(&Bytes::from_static(b"more")), Fed::default(), "nothing passes afterwards");
    }

    #[test]
    fn fragments_are_refused_when_the_message_total_exceeds_the_limit() {
        let mut guard = FrameGuard::new(1000);
        let first = frame(false, OP_TEXT, &[b'a'; 600]);
        let second = header(0x00, 401);
        let (passed, violation) = feed_all(&mut guard, &[&first, &second]);
        assert_eq!(passed, first);
        assert_eq!(violation, Some(Violation::TooLarge { max: 1000 }));
        let mut guard = FrameGuard::new(1000);
        let exact = [first, frame(true, OP_CONTINUATION, &[b'b'; 400])].concat();
        assert_eq!(feed_all(&mut guard, &[&exact]).1, None, "exactly the limit is fine");
    }

    #[test]
    fn framing_faults_are_refused_with_1002() {
        let cases: Vec<(Vec<u8>, Violation)> = vec![
            (frame(true, 0x41, b"x"), Violation::ReservedBits),
            (frame(true, 0x3, b"x"), Violation::ReservedOpcode(3)),
            (frame(true, 0xB, b""), Violation::ReservedOpcode(0xB)),
            (vec![0x81, 0x01, b'x'], Violation::Unmasked),
            (frame(false, OP_PING, b""), Violation::FragmentedControl),
            (frame(true, OP_PING, &[0; 126]), Violation::ControlTooLong),
            (frame(true, OP_CONTINUATION, b"x"), Violation::UnexpectedContinuation),
            ([frame(false, OP_TEXT, b"x"), frame(true, OP_TEXT, b"y")].concat(), Violation::InterleavedData),
            (frame(true, OP_CLOSE, &[3]), Violation::CloseTooShort),
            (frame(true, OP_CLOSE, &[0x03, 0xED]), Violation::BadCloseCode(1005)),
            (frame(true, OP_CLOSE, &[0x03, 0xE7]), Violation::BadCloseCode(999)),
            (frame(true, OP_CLOSE, &[0x13, 0x88]), Violation::BadCloseCode(5000)),
        ];
        for (input, expected) in cases {
            let (_, violation) = feed_all(&mut FrameGuard::new(1024), &[&input]);
            assert_eq!(violation.as_ref(), Some(&expected), "{input:?}");
            assert_eq!(expected.close_code(), 1002);
        }
    }

    #[test]
    fn a_close_reason_that_is_not_utf8_is_1007_and_nothing_of_the_frame_passes() {
        let input = frame(true, OP_CLOSE, &[0x03, 0xE8, 0xFF, 0xFE]);
        for split in [1, 3, input.len()] {
            let chunks: Vec<&[u8]> = input.chunks(split).collect();
            let (passed, violation) = feed_all(&mut FrameGuard::new(1024), &chunks);
            assert!(passed.is_empty());
            assert_eq!(violation, Some(Violation::CloseReasonNotUtf8));
        }
        assert_eq!(Violation::CloseReasonNotUtf8.close_code(), 1007);
    }

    #[test]
    fn close_codes_follow_rfc_6455() {
        for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999] {
            assert!(close_code_allowed(code), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!close_code_allowed(code), "{code}");
        }
    }
}
