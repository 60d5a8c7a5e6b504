//! UTF-8 of text messages as their masked payload passes the guard: a character may be split across reads
//! and frames, so the check carries the open character (at most 3 bytes) from one piece to the next. Where a
//! message stops being UTF-8 is a byte position that does not depend on how the stream was split, so the
//! guard passes the same bytes however the client's input arrives.

use super::{Header, Violation, OP_CONTINUATION, OP_TEXT};

/// Payload bytes of a text message unmasked and checked at a time (on the stack).
const TEXT_BLOCK: usize = 256;

/// The UTF-8 check of the data message in progress, if it is text.
#[derive(Debug, Default)]
pub(super) struct TextCheck(Option<TextMessage>);

impl TextCheck {
    /// Whether a text message is in progress (its frames' payloads are checked).
    pub(super) fn in_progress(&self) -> bool {
        self.0.is_some()
    }

    /// Follows which data message is text, at an admitted data frame's header: a text frame starts the
    /// check, a continuation carries it on, a binary frame has none, and a final frame without payload ends
    /// the message here (refused if that leaves a character open).
    pub(super) fn header(&mut self, header: &Header) -> Result<(), Violation> {
        match header.opcode {
            OP_TEXT => self.0 = Some(TextMessage::start(header.mask, header.fin)),
            OP_CONTINUATION => {
                if let Some(message) = self.0.as_mut() {
                    message.next_frame(header.mask, header.fin);
                }
            }
            _ => self.0 = None,
        }
        if header.fin && header.payload == 0 {
            if let Some(message) = self.0.take() {
                if !message.may_end() {
                    return Err(Violation::TextNotUtf8);
                }
            }
        }
        Ok(())
    }

    /// Checks the next payload bytes of a text message's frame; `frame_ends` when they are its last. On error,
    /// how many of them may pass: those before the first byte that cannot continue UTF-8, or all but the
    /// last when the message's final frame ends inside a character (so the frame never completes).
    pub(super) fn payload(&mut self, masked: &[u8], frame_ends: bool) -> Result<(), usize> {
        let Some(message) = self.0.as_mut() else { return Ok(()) };
        message.check(masked)?;
        if frame_ends && message.last {
            if !message.may_end() {
                return Err(masked.len() - 1);
            }
            self.0 = None;
        }
        Ok(())
    }
}

/// A text message being checked as UTF-8 while it passes: the character it has open, and how to unmask the
/// frame being read.
#[derive(Debug)]
struct TextMessage {
    utf8: Utf8Stream,
    /// The current frame's masking key.
    mask: [u8; 4],
    /// Payload bytes of the current frame read so far, modulo 4: where in the key the next byte starts.
    offset: usize,
    /// The current frame is the message's last (FIN set).
    last: bool,
}

impl TextMessage {
    /// A new text message whose first frame has masking key `mask` (`last`: FIN set).
    fn start(mask: [u8; 4], last: bool) -> TextMessage {
        TextMessage { utf8: Utf8Stream::default(), mask, offset: 0, last }
    }

    /// The message continues with a frame of masking key `mask`.
    fn next_frame(&mut self, mask: [u8; 4], last: bool) {
        (self.mask, self.offset, self.last) = (mask, 0, last);
    }

    /// Unmasks and checks the next payload bytes of the current frame, a block at a time. On error, how many
    /// of `masked` come before the first byte that cannot continue UTF-8.
    fn check(&mut self, masked: &[u8]) -> Result<(), usize> {
        let mut block = [0u8; TEXT_BLOCK];
        for (n, chunk) in masked.chunks(TEXT_BLOCK).enumerate() {
            if self.utf8.len > 0 || !self.is_ascii(chunk) {
                for (i, byte) in chunk.iter().enumerate() {
                    block[i] = byte ^ self.mask[(self.offset + i) % 4];
                }
                self.utf8.push(&block[..chunk.len()]).map_err(|at| n * TEXT_BLOCK + at)?;
            }
            self.offset = (self.offset + chunk.len()) % 4;
        }
        Ok(())
    }

    /// Whether the text may end here: no character is left open.
    fn may_end(&self) -> bool {
        self.utf8.len == 0
    }

    /// Whether masked payload bytes starting at `offset` are all ASCII, which is always UTF-8 where no
    /// character is open. Checked without unmasking, 16 bytes at a time: a byte is ASCII when its high bit
    /// equals its key byte's, so in each key lane the masked bytes' high bits must be all clear (key bit
    /// clear: their OR) or all set (key bit set: their AND). Most WAMP text is ASCII JSON.
    fn is_ascii(&self, masked: &[u8]) -> bool {
        let key: [u8; 4] = std::array::from_fn(|i| self.mask[(self.offset + i) % 4]);
        let key = u128::from(u32::from_le_bytes(key)) * 0x0000_0001_0000_0001_0000_0001_0000_0001;
        let (words, rest) = masked.as_chunks::<16>();
        let (mut any, mut all) = (0, u128::MAX);
        for word in words {
            let word = u128::from_le_bytes(*word);
            (any, all) = (any | word, all & word);
        }
        let high = u128::from_le_bytes([0x80; 16]);
        let key_bytes = key.to_le_bytes();
        any & !key & high == 0
            && !all & key & high == 0
            && rest.iter().zip(key_bytes).all(|(byte, key)| byte ^ key < 0x80)
    }
}

/// UTF-8 validation of text arriving in pieces.
#[derive(Debug, Default, Clone, Copy)]
struct Utf8Stream {
    /// The first bytes of the character the pieces so far ended inside.
    partial: [u8; 4],
    /// How many of `partial` are set (0–3).
    len: usize,
}

impl Utf8Stream {
    /// Checks the next bytes. On error, the index in `bytes` of the first byte that cannot continue valid
    /// UTF-8: a byte that can start no character, or one that cannot continue the character before it.
    fn push(&mut self, mut bytes: &[u8]) -> Result<(), usize> {
        // First finish the character the previous piece ended inside, one byte at a time (at most three).
        let mut used = 0;
        while self.len > 0 {
            let Some((&byte, rest)) = bytes.split_first() else { return Ok(()) };
            self.partial[self.len] = byte;
            self.len += 1;
            (bytes, used) = (rest, used + 1);
            match std::str::from_utf8(&self.partial[..self.len]) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_some() => return Err(used - 1),
                Err(_) => {}
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) => {
                let start = e.valid_up_to();
                match e.error_len() {
                    // The invalid sequence is a lead byte and its valid continuations: the next byte broke it.
                    Some(len) if is_lead(bytes[start]) => Err(used + start + len),
                    Some(_) => Err(used + start),
                    None => {
                        // Valid so far, ending inside a character: keep its first bytes for the next piece.
                        let open = &bytes[start..];
                        self.partial[..open.len()].copy_from_slice(open);
                        self.len = open.len();
                        Ok(())
                    }
                }
            }
        }
    }
}

/// Whether `byte` can start a character of two to four bytes.
fn is_lead(byte: u8) -> bool {
    matches!(byte, 0xC2..=0xF4)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where `text` stops being UTF-8 when pushed in pieces of `split` bytes, and whether it may end there.
    fn pushed(text: &[u8], split: usize) -> (Result<(), usize>, bool) {
        let mut utf8 = Utf8Stream::default();
        let mut at = 0;
        for piece in text.chunks(split) {
            if let Err(i) = utf8.push(piece) {
                return (Err(at + i), false);
            }
            at += piece.len();
        }
        (Ok(()), utf8.len == 0)
    }

    #[test]
    fn the_first_byte_that_breaks_utf8_is_found_wherever_the_pieces_split() {
        let cases: [(&[u8], Result<(), usize>, bool); 9] = [
            ("κόσμε €𝄞".as_bytes(), Ok(()), true),
            (b"ok\xe2\x82", Ok(()), false),
            (b"ok\xff", Err(2), false),
            (b"ok\xe2\x82A", Err(4), false),
            (b"\xe0\x80\x80", Err(1), false),
            (b"\xed\xa0\x80", Err(1), false),
            (b"\xf4\x90\x80\x80", Err(1), false),
            (b"\xc0\xaf", Err(0), false),
            (b"ab\x80", Err(2), false),
        ];
        for (text, error, may_end) in cases {
            for split in 1..=text.len() {
                assert_eq!(pushed(text, split), (error, may_end), "{text:?} in pieces of {split}");
            }
        }
    }

    #[test]
    fn a_non_ascii_byte_in_any_key_lane_is_seen_through_the_mask() {
        let mask = [0x81, 0x02, 0xC3, 0x84];
        for bad_at in 0..48 {
            let mut text = [b'x'; 48];
            text[bad_at] = 0xFF;
            let masked: Vec<u8> = text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
            for first in 0..4.min(bad_at + 1) {
                let mut message = TextMessage::start(mask, true);
                assert_eq!(message.check(&masked[..first]), Ok(()));
                assert_eq!(message.check(&masked[first..]), Err(bad_at - first), "0xFF at {bad_at}, {first} first");
            }
        }
    }

    #[test]
    fn masked_ascii_and_non_ascii_blocks_unmask_alike() {
        let mask = [0x81, 0x02, 0xC3, 0x04];
        let text = format!("{}é{}", "a".repeat(300), "b".repeat(40));
        let masked: Vec<u8> = text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
        for split in [1, 5, 16, 17, 255, 256, masked.len()] {
            let mut message = TextMessage::start(mask, true);
            assert!(masked.chunks(split).all(|piece| message.check(piece).is_ok()), "split {split}");
            assert!(message.may_end());
        }
        let mut bad = masked.clone();
        bad[320] = 0xFF ^ mask[320 % 4];
        let mut message = TextMessage::start(mask, true);
        assert_eq!(message.check(&bad), Err(320), "found past the first block");
    }
}
