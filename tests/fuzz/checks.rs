//! What each fuzz target checks, shared by the targets (`fuzz_targets/*.rs`, nightly, libFuzzer) and by the
//! stable corpus replay (`tests/api/fuzz_corpus.rs`), so CI runs every committed corpus file through exactly
//! the code the fuzzer ran.
//!
//! Every check must not panic on any input, and asserts the invariants that are cheap to state: codecs
//! round-trip what they accept, frames built from accepted input are themselves accepted.

use std::sync::OnceLock;

use actix_codec::Decoder;
use actix_http::ws::Codec;
use actix_web::cookie::{Cookie, CookieJar, Key};
use actix_web::test::TestRequest;
use bytes::{Bytes, BytesMut};
use serde_json::Value;
use switchboard::cluster::envelope::Envelope;
use switchboard::config::CookieSecurity;
use switchboard::frame::{FrameGuard, Violation};
use switchboard::route::{RoutePattern, Router};
use switchboard::session::bridge::session_key_from_cookie;
use switchboard::wamp::{v1, v2};

/// What a fuzz target runs on one input: panics on a failed check.
pub type Check = fn(&[u8]);

/// Every fuzz target, by the name of its `fuzz_targets/<name>.rs` and `corpus/<name>/`.
pub const TARGETS: &[(&str, Check)] = &[
    ("v1", v1),
    ("v2", v2),
    ("envelope", envelope),
    ("cookie", cookie),
    ("route", route),
    ("frame", frame),
    ("serial", serial),
];

/// The binary serializers (`wamp.2.msgpack`, `wamp.2.cbor`): an accepted frame re-encodes to one that decodes to
/// the same value tree, its JSON text transcodes (in one pass, as remote payloads are) to the same tree too, and
/// the frame is a v2 message exactly when that JSON text is, the same message.
pub fn serial(data: &[u8]) {
    use switchboard::wamp::serial::Serializer;
    for serializer in [Serializer::MsgPack, Serializer::Cbor] {
        let Ok(value) = serializer.decode(data) else { continue };
        let again = serializer.decode(&serializer.encode(&value)).expect("an encoded value decodes");
        assert_eq!(again, value, "{} round trip", serializer.token());
        let json = value.to_string();
        let transcoded = serializer.transcode_json(&json).expect("the JSON text of a decoded value transcodes");
        assert_eq!(serializer.decode(&transcoded).expect("a transcoded value decodes"), value, "transcode");
        assert_eq!(v2::Message::decode_binary(serializer, data).ok(), v2::Message::decode(&json).ok());
    }
}

/// WAMP v1 decoder: an accepted frame re-encodes to one that decodes to the same message.
pub fn v1(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(message) = v1::Message::decode(text) else { return };
    let again = v1::Message::decode(&message.encode()).expect("an encoded v1 message decodes");
    assert_eq!(again, message, "v1 round trip of {text:?}");
}

/// WAMP v2 decoder: an accepted frame re-encodes to one that decodes to the same message; option dictionaries
/// never panic the meaning stage; the EVENT fast path writes what the generic encoder writes.
pub fn v2(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(message) = v2::Message::decode(text) else { return };
    let again = v2::Message::decode(&message.encode()).expect("an encoded v2 message decodes");
    assert_eq!(again, message, "v2 round trip of {text:?}");
    match &message {
        v2::Message::Publish { options, .. } => {
            let _ = v2::PublishOptions::parse(options);
        }
        v2::Message::Subscribe { options, .. } => {
            let _ = v2::SubscribeOptions::parse(options);
        }
        v2::Message::Event { subscription, publication, details, args, kwargs } => {
            let details_json = Value::Object(details.clone()).to_string();
            let fast =
                v2::encode_event(*subscription, *publication, &details_json, &v2::encode_payload_tail(args, kwargs));
            assert_eq!(fast, message.encode(), "EVENT fast path");
        }
        _ => {}
    }
}

/// Cluster envelope decoder: an accepted envelope re-encodes to bytes that decode and re-encode identically,
/// and a publication from another node becomes EVENT frames (v2 and v1) that clients can decode.
pub fn envelope(data: &[u8]) {
    let Ok(envelope) = Envelope::decode(data) else { return };
    let bytes = envelope.encode();
    let again = Envelope::decode(&bytes).expect("an encoded envelope decodes");
    assert_eq!(again.encode(), bytes, "envelope round trip");
    if let Some(publication) = envelope.into_publication() {
        // The payload is spliced in unparsed, by design. Some valid JSON is no serde_json value (numbers beyond
        // f64's range such as `1e999`, an object keyed `$serde_json::private::RawValue`): for those, the EVENT
        // frames need only be valid JSON; for the rest, they must decode as the messages they are.
        let representable = serde_json::from_slice::<Value>(data).is_ok();
        let v2_event = v2::encode_event(1, publication.id, "{}", publication.v2_tail());
        let v1_event = v1::encode_event(&publication.topic, publication.v1_event());
        for (protocol, event, decoded) in [
            ("v2", &v2_event, v2::Message::decode(&v2_event).err()),
            ("v1", &v1_event, v1::Message::decode(&v1_event).err()),
        ] {
            if representable {
                if let Some(e) = decoded {
                    panic!("{protocol} EVENT from an accepted envelope does not decode: {e}: {event}");
                }
            } else if let Err(e) = serde_json::from_str::<&serde_json::value::RawValue>(event) {
                panic!("{protocol} EVENT from an accepted envelope is not JSON: {e}: {event}");
            }
        }
    }
}

/// The session cookie's name in [`cookie`].
const COOKIE_NAME: &str = "id";

fn cookie_key() -> &'static Key {
    static KEY: OnceLock<Key> = OnceLock::new();
    KEY.get_or_init(|| Key::from(&[0x5a; 64]))
}

/// Cookie header → session key, as the `/ws` handler does it (actix-web parses the header, switchboard
/// verifies the cookie). The first byte picks the mode: bit 0 `signed`/`private`; bit 1 seals the rest as a
/// genuine cookie value with the key (it must come back exactly, or be refused if it is no valid session key);
/// otherwise the rest is the header itself, and whatever it holds yields no panic and no oversized key.
pub fn cookie(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let security = if mode & 1 == 0 { CookieSecurity::Private } else { CookieSecurity::Signed };
    let key = cookie_key();
    if mode & 2 != 0 {
        let value = String::from_utf8_lossy(rest).into_owned();
        let mut jar = CookieJar::new();
        let cookie = Cookie::new(COOKIE_NAME, value.clone());
        match security {
            CookieSecurity::Private => jar.private_mut(key).add(cookie),
            CookieSecurity::Signed => jar.signed_mut(key).add(cookie),
        }
        let header = jar.get(COOKIE_NAME).expect("just added").encoded().to_string();
        let got = from_header(header.as_bytes(), security, key).expect("a sealed cookie is a valid header");
        match got {
            Ok(Some(k)) => assert_eq!(k, value, "a genuine cookie yields its own session key"),
            Ok(None) => panic!("a genuine cookie was not found in {header:?}"),
            Err(_) => assert!(value.len() > 4064, "a genuine cookie of a valid key was refused: {header:?}"),
        }
    } else if let Some(Ok(Some(k))) = from_header(rest, security, key) {
        assert!(k.len() <= 4064, "oversized session key accepted");
    }
}

/// Runs one `Cookie` header through actix-web's parser and [`session_key_from_cookie`]; `None` when the bytes
/// cannot be a header value at all (HTTP would refuse them before any handler runs).
fn from_header(
    header: &[u8],
    security: CookieSecurity,
    key: &Key,
) -> Option<Result<Option<String>, switchboard::session::InvalidReason>> {
    let value = actix_web::http::header::HeaderValue::from_bytes(header).ok()?;
    let req = TestRequest::default().insert_header((actix_web::http::header::COOKIE, value)).to_http_request();
    Some(session_key_from_cookie(req.cookie(COOKIE_NAME), security, key))
}

/// Route patterns: the first line is the pattern, the rest the URI. A compiled pattern matches its own text
/// (each placeholder capturing itself), and a match's captures put back into the pattern give the URI.
pub fn route(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (pattern, uri) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(compiled) = RoutePattern::parse(pattern) else { return };
    let own = compiled.matches(pattern).expect("a pattern matches its own text");
    assert!(own.iter().all(|(name, value)| *value == format!("{{{name}}}")));
    let params = compiled.matches(uri);
    if let Some(params) = &params {
        assert!(params.keys().all(|name| compiled.has_param(name)));
        let rebuilt: String = segments(pattern)
            .map(|segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) if segment.len() > 2 => params[name].as_str(),
                _ => segment,
            })
            .collect();
        assert_eq!(rebuilt, uri, "captures put back into {pattern:?}");
    }
    let mut router = Router::default();
    router.add(compiled, ());
    assert_eq!(router.find(uri).map(|(_, p)| p), params, "a router of one pattern finds what the pattern matches");
}

/// `text` split into segments and the `/` and `.` separators between them, in order.
fn segments(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive(['/', '.']).flat_map(|part| match part.char_indices().last() {
        Some((i, '/' | '.')) => [&part[..i], &part[i..]],
        _ => [part, ""],
    })
}

/// WebSocket frame guard: the first byte picks a chunk size (1–64), the second the message limit (125–380 bytes:
/// never below the longest control frame, as `websocket.max_message_size` is at least 1,024),
/// the rest is a client's byte stream. Fed in chunks or whole, the guard passes the same bytes and reports the
/// same violation; what it passes is a prefix of the input and nothing passes after a violation; and actix's
/// codec, limited alike, decodes what it passed without a protocol error (every fault is the guard's to answer).
pub fn frame(data: &[u8]) {
    let [chunk, max, ref stream @ ..] = *data else { return };
    let chunk = 1 + usize::from(chunk) % 64;
    let max = 125 + usize::from(max);
    let input = Bytes::copy_from_slice(stream);

    let whole = FrameGuard::new(max).feed(&input);
    assert!(input.starts_with(&whole.pass), "passed bytes are a prefix of the input");

    let mut guard = FrameGuard::new(max);
    let mut passed = Vec::new();
    let mut violation: Option<Violation> = None;
    for piece in input.chunks(chunk) {
        let fed = guard.feed(&Bytes::copy_from_slice(piece));
        if violation.is_some() {
            assert!(fed.pass.is_empty(), "nothing passes after a violation");
            continue;
        }
        passed.extend_from_slice(&fed.pass);
        violation = fed.violation;
    }
    assert_eq!(passed, whole.pass, "the same bytes pass whatever the split (chunks of {chunk})");
    assert_eq!(violation, whole.violation, "the same violation whatever the split (chunks of {chunk})");
    assert_eq!(guard.refused(), violation.is_some());

    let mut codec = Codec::new().max_size(max);
    let mut buffer = BytesMut::from(&passed[..]);
    loop {
        match codec.decode(&mut buffer) {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => panic!("the codec refused what the guard passed: {e}"),
        }
    }
}
