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
//!   §7.4, §5.5.1): an invalid code is 1002, a reason that is not UTF-8 is 1007;
//! - a text message, fragmented or not, is checked as UTF-8 while its payload passes (RFC 6455 §8.1): at the
//!   first byte that cannot be UTF-8, or at a final frame that ends inside a character, the input is refused
//!   ([`Violation::TextNotUtf8`], close 1007) before that byte passes, so the frame holding it never
//!   completes. Every text message the codec decodes is therefore UTF-8, and the connection needs no other
//!   check.
//!
//! The guard holds at most one incomplete header (≤ 14 bytes), one close frame (≤ 139 bytes) and the last
//! incomplete character of a text message (≤ 3 bytes). Pure: bytes in, bytes and verdicts out; no I/O, actix
//! or tokio here.

use bytes::Bytes;

mod output;
mod text;

use output::Output;
use text::TextCheck;

/// Longest frame header: 2 bytes, 8 bytes of extended length, 4 bytes of mask.
const MAX_HEADER: usize = 14;

/// Longest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Continuation frame opcode (RFC 6455 §5.2).
const OP_CONTINUATION: u8 = 0x0;
/// Text frame opcode.
const OP_TEXT: u8 = 0x1;
/// Binary frame opcode.
const OP_BINARY: u8 = 0x2;
/// Close frame opcode.
const OP_CLOSE: u8 = 0x8;
/// Ping frame opcode.
const OP_PING: u8 = 0x9;
/// Pong frame opcode.
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
    /// A text message that is not UTF-8.
    #[error("text message is not valid UTF-8")]
    TextNotUtf8,
}

impl Violation {
    /// The WebSocket close code answering this violation: 1009, 1007 or 1002.
    pub fn close_code(&self) -> u16 {
        match self {
            Violation::TooLarge { .. } => 1009,
            Violation::CloseReasonNotUtf8 | Violation::TextNotUtf8 => 1007,
            _ => 1002,
        }
    }
}

/// What one call to [`FrameGuard::feed`] lets through.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// Bytes for the codec: whole accepted headers and the payload bytes behind them, in order.
    pub pass: Bytes,
    /// Set when the input broke a rule; nothing from the offending header (or, in a text message, the
    /// offending payload bytes) on is passed, now or later.
    pub violation: Option<Violation>,
}

#[derive(Debug)]
enum ParseState {
    /// Collecting a header; `held` has its first bytes.
    Header,
    /// Passing a data or ping/pong payload through; `text` when it belongs to a text message (UTF-8 checked).
    Payload { remaining: u64, text: bool },
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
    /// The UTF-8 check of the text message in progress, from its first frame's header to its final frame's end.
    text: TextCheck,
}

/// A parsed frame header.
struct Header {
    len: usize,
    fin: bool,
    opcode: u8,
    payload: u64,
    mask: [u8; 4],
}

impl FrameGuard {
    /// A guard refusing data messages over `max_message` bytes.
    pub fn new(max_message: usize) -> FrameGuard {
        FrameGuard {
            max_message,
            state: ParseState::Header,
            held: Vec::new(),
            message: None,
            text: TextCheck::default(),
        }
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
                ParseState::Payload { remaining, text } => {
                    let take = remaining.min((input.len() - at) as u64) as usize;
                    if text {
                        if let Err(valid) = self.text.payload(&input[at..at + take], remaining == take as u64) {
                            out.pass(at, at + valid);
                            return self.refuse(out, input, Violation::TextNotUtf8);
                        }
                    }
                    out.pass(at, at + take);
                    at += take;
                    self.state = Self::after_payload(remaining - take as u64, text);
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
                ParseState::Header if self.held.is_empty() => match self.whole_header(input, &mut at, &mut out) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(violation) => return self.refuse(out, input, violation),
                },
                ParseState::Header => {
                    if let Err(violation) = self.split_header(input, &mut at, &mut out) {
                        return self.refuse(out, input, violation);
                    }
                }
            }
        }
        out.finish(input, None)
    }

    /// The usual case: a header that starts at `at` with nothing held, passed as a slice of the input (or held,
    /// for a close frame) once admitted. `Ok(false)` when the input ends inside it: its bytes are held.
    fn whole_header(&mut self, input: &Bytes, at: &mut usize, out: &mut Output) -> Result<bool, Violation> {
        let Some(header) = parse_header(&input[*at..])? else {
            self.held.extend_from_slice(&input[*at..]);
            return Ok(false);
        };
        self.admit(&header)?;
        if header.opcode == OP_CLOSE {
            self.held.extend_from_slice(&input[*at..*at + header.len]);
        } else {
            out.pass(*at, *at + header.len);
        }
        *at += header.len;
        self.begin_payload(&header, out);
        Ok(true)
    }

    /// A header split across inputs: completes it in `held` with the bytes from `at`, and passes it (or keeps
    /// holding it, for a close frame) once admitted.
    fn split_header(&mut self, input: &Bytes, at: &mut usize, out: &mut Output) -> Result<(), Violation> {
        let before = self.held.len();
        let want = (MAX_HEADER - before).min(input.len() - *at);
        self.held.extend_from_slice(&input[*at..*at + want]);
        let Some(header) = parse_header(&self.held)? else {
            *at += want;
            return Ok(());
        };
        // Give back what was copied past the header: it is payload or the next frame.
        self.held.truncate(header.len);
        *at += header.len - before;
        self.admit(&header)?;
        if header.opcode != OP_CLOSE {
            out.release(&mut self.held);
        }
        self.begin_payload(&header, out);
        Ok(())
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
            let text = matches!(header.opcode, OP_TEXT | OP_CONTINUATION) && self.text.in_progress();
            Self::after_payload(header.payload, text)
        };
    }

    /// What follows `remaining` payload bytes still to pass (`text`: checked as UTF-8).
    fn after_payload(remaining: u64, text: bool) -> ParseState {
        if remaining == 0 {
            ParseState::Header
        } else {
            ParseState::Payload { remaining, text }
        }
    }

    /// Ends the input at `violation`: what passed so far goes out with it, nothing passes afterwards.
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
                self.text.header(header)?;
            }
            OP_CONTINUATION => {
                let Some(so_far) = self.message else { return Err(Violation::UnexpectedContinuation) };
                let total = so_far.saturating_add(header.payload);
                if total > self.max_message as u64 {
                    return Err(too_large);
                }
                self.message = if header.fin { None } else { Some(total) };
                self.text.header(header)?;
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
    let mask = bytes[len - 4..len].try_into().expect("slice of 4 bytes");
    Ok(Some(Header { len, fin: first & 0x80 != 0, opcode, payload, mask }))
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

#[cfg(test)]
mod tests;
