//! The guard fed whole and split streams: what passes, what is refused, with which close code.

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
    // High bits set in some key bytes: masking changes which bytes look ASCII.
    let mask = [0x81, 0x02, 0xC3, 0x04];
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

/// A text message of `text` in frames of `split` payload bytes (a single frame if `split` covers it).
fn text_frames(text: &[u8], split: usize) -> Vec<u8> {
    let chunks: Vec<&[u8]> = text.chunks(split.max(1)).collect();
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = if i == 0 { OP_TEXT } else { OP_CONTINUATION };
        out.extend(frame(i + 1 == chunks.len(), opcode, chunk));
    }
    out
}

/// The payload bytes, unmasked, of the (possibly cut short) frames in `stream`.
fn unmasked_payloads(mut stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(header)) = parse_header(stream) {
        let end = (header.len + header.payload as usize).min(stream.len());
        let payload = &stream[header.len..end];
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ header.mask[i % 4]));
        stream = &stream[end..];
    }
    out
}

#[test]
fn utf8_text_passes_however_its_characters_are_split_across_frames_and_reads() {
    let text = "κόσμε €𝄞 ok, then a run of ASCII long enough for whole words: é".as_bytes();
    for frame_split in 1..=text.len() {
        let stream = text_frames(text, frame_split);
        for read_split in [1, 2, 3, 5, 7, stream.len()] {
            let chunks: Vec<&[u8]> = stream.chunks(read_split).collect();
            let mut guard = FrameGuard::new(1024);
            assert_eq!(feed_all(&mut guard, &chunks), (stream.clone(), None), "{frame_split}/{read_split}");
        }
    }
}

#[test]
fn a_text_message_that_is_not_utf8_is_1007_and_its_frame_never_completes() {
    let ok = frame(true, OP_TEXT, b"fine");
    // Each text, and how many of its bytes pass: those before the first that cannot continue UTF-8.
    let cases: [(&[u8], usize); 6] = [
        (b"[\xff\xfe]", 1),
        (b"ab\xed\xa0\x80cd", 3), // a UTF-16 surrogate: A0 cannot follow ED
        (b"\xf4\x90\x80\x80", 1), // above U+10FFFF
        (b"\xc0\xaf", 0),         // overlong: C0 starts no character
        (b"a run of ASCII long enough for whole words, then \xff", 49),
        ("ends inside €".as_bytes().split_at(14).0, 13), // cut inside the euro sign: all but the last byte
    ];
    for (text, valid) in cases {
        for frame_split in [1, 2, text.len()] {
            let bad = text_frames(text, frame_split);
            let stream = [ok.clone(), bad.clone()].concat();
            let (whole, _) = feed_all(&mut FrameGuard::new(1024), &[&stream]);
            let payload: Vec<u8> = unmasked_payloads(&whole[ok.len()..]);
            assert_eq!(payload, text[..valid], "{text:?} in frames of {frame_split}");
            for read_split in [1, 3, 7] {
                let chunks: Vec<&[u8]> = stream.chunks(read_split).collect();
                let (passed, violation) = feed_all(&mut FrameGuard::new(1024), &chunks);
                assert_eq!(violation, Some(Violation::TextNotUtf8), "{text:?} {frame_split}/{read_split}");
                assert_eq!(passed, whole, "the same bytes pass whatever the split");
            }
        }
    }
    assert_eq!(Violation::TextNotUtf8.close_code(), 1007);
}

#[test]
fn a_character_left_open_by_an_empty_final_frame_is_refused_at_its_header() {
    let mut stream = frame(false, OP_TEXT, &"€".as_bytes()[..2]);
    let open = stream.len();
    stream.extend(frame(true, OP_CONTINUATION, b""));
    let (passed, violation) = feed_all(&mut FrameGuard::new(1024), &[&stream]);
    assert_eq!((passed.len(), violation), (open, Some(Violation::TextNotUtf8)));
}

#[test]
fn binary_messages_and_control_frames_inside_a_text_message_are_not_checked_as_text() {
    let mut stream = frame(true, OP_BINARY, &[0xff, 0xfe]);
    stream.extend(frame(false, OP_TEXT, &"€".as_bytes()[..1]));
    stream.extend(frame(true, OP_PING, &[0xff]));
    stream.extend(frame(true, OP_CONTINUATION, &"€".as_bytes()[1..]));
    stream.extend(frame(true, OP_TEXT, b""));
    for split in [1, 4, stream.len()] {
        let chunks: Vec<&[u8]> = stream.chunks(split).collect();
        assert_eq!(feed_all(&mut FrameGuard::new(1024), &chunks), (stream.clone(), None), "split {split}");
    }
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
