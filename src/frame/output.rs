//! What one feed of the guard passes on, collected without copying where it can be.

use bytes::{Bytes, BytesMut};

use super::{Fed, Violation};

/// Collects the bytes to pass: one slice of the input when possible (the usual case: whole frames), a copy
/// only when held bytes (a split header, a close frame) are part of it.
#[derive(Default)]
pub(super) struct Output {
    segments: Vec<Segment>,
}

/// One piece of what passes.
enum Segment {
    /// A range of the input.
    Input(usize, usize),
    /// Bytes that were held back.
    Held(Vec<u8>),
}

impl Output {
    /// Passes the input's bytes `from..to` (joined to the previous range when they follow it).
    pub(super) fn pass(&mut self, from: usize, to: usize) {
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

    /// Passes the bytes held back in `held`, emptying it.
    pub(super) fn release(&mut self, held: &mut Vec<u8>) {
        if !held.is_empty() {
            self.segments.push(Segment::Held(std::mem::take(held)));
        }
    }

    /// What passes, as one slice of `input` if it can be, with the verdict.
    pub(super) fn finish(self, input: &Bytes, violation: Option<Violation>) -> Fed {
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
