//! WAMP v2 serializers: `wamp.2.json`, `wamp.2.msgpack` and `wamp.2.cbor`, as codecs between a frame's bytes and
//! the one value tree the router validates (`serde_json::Value`), so every serializer goes through the same
//! message checks.
//!
//! Binary values (MessagePack `bin`, CBOR byte strings) have no JSON type; the WAMP spec's JSON form is a string
//! whose first character is `\u0000` followed by the bytes in base64. Decoding turns binary values into that
//! form; encoding for a binary serializer turns such strings back into binary values, so bytes survive between
//! binary clients and JSON clients see the spec's form. What a binary serializer can say but JSON cannot is
//! refused with a reason: map keys that are not strings, NaN or infinite floats, MessagePack extension types,
//! CBOR simple values, text that is not UTF-8 (a CBOR tag is read as the value it annotates). Nesting is bounded
//! exactly like the JSON decoder's ([`MAX_DEPTH`]).
//!
//! Encoding writes MessagePack and CBOR straight into the frame's buffer (`serial/write.rs`), from a tree or — for
//! EVENTs and replies — from JSON text in one pass ([`Serializer::encode_event`], [`Serializer::transcode_json`]).
//!
//! Pure: no I/O, no router state; the fuzz target `serial` drives [`Serializer::decode`] and the transcoder.

use base64::Engine;

mod write;
use serde_json::{Map, Number, Value};

/// How many lists and dictionaries deep a binary frame may nest: what serde_json's own limit lets a JSON frame
/// nest, so a message any serializer accepts is one every other serializer can carry (and a binary message held
/// as JSON text decodes again).
pub const MAX_DEPTH: usize = 127;

/// The decoders' own recursion bounds (they count levels their own way, and CBOR tags too): generous, for the
/// stack only; [`MAX_DEPTH`] is checked on the tree.
const DECODER_DEPTH: usize = 3 * MAX_DEPTH + 8;

/// One of the WAMP v2 serializers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Serializer {
    /// `wamp.2.json`: text frames.
    Json,
    /// `wamp.2.msgpack`: binary frames.
    MsgPack,
    /// `wamp.2.cbor`: binary frames.
    Cbor,
}

/// Why a binary frame is not a WAMP value tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{serializer}: {message}")]
pub struct SerialError {
    /// The subprotocol token.
    pub serializer: &'static str,
    /// What is wrong.
    pub message: String,
}

impl Serializer {
    /// Every serializer (a client that offers several gets the first it lists).
    pub const ALL: [Serializer; 3] = [Serializer::Json, Serializer::MsgPack, Serializer::Cbor];

    /// The `Sec-WebSocket-Protocol` token.
    pub const fn token(self) -> &'static str {
        match self {
            Serializer::Json => "wamp.2.json",
            Serializer::MsgPack => "wamp.2.msgpack",
            Serializer::Cbor => "wamp.2.cbor",
        }
    }

    /// The serializer a subprotocol token names.
    pub fn from_token(token: &str) -> Option<Serializer> {
        Serializer::ALL.into_iter().find(|s| s.token() == token)
    }

    /// Whether its frames are binary.
    pub const fn is_binary(self) -> bool {
        !matches!(self, Serializer::Json)
    }

    /// The value tree a frame's bytes hold.
    pub fn decode(self, bytes: &[u8]) -> Result<Value, SerialError> {
        let error = |message: String| SerialError { serializer: self.token(), message };
        match self {
            Serializer::Json => {
                let text = std::str::from_utf8(bytes).map_err(|e| error(e.to_string()))?;
                serde_json::from_str(text).map_err(|e| error(e.to_string()))
            }
            Serializer::MsgPack => {
                let mut reader = bytes;
                let value = rmpv::decode::read_value_with_max_depth(&mut reader, DECODER_DEPTH)
                    .map_err(|e| error(e.to_string()))?;
                if !reader.is_empty() {
                    return Err(error(format!("{} bytes after the message", reader.len())));
                }
                from_msgpack(value, 0).map_err(error)
            }
            Serializer::Cbor => {
                let mut reader = bytes;
                let value: ciborium::Value = ciborium::de::from_reader_with_recursion_limit(&mut reader, MAX_DEPTH + 8)
                    .map_err(|e| error(e.to_string()))?;
                if !reader.is_empty() {
                    return Err(error(format!("{} bytes after the message", reader.len())));
                }
                from_cbor(value, 0).map_err(error)
            }
        }
    }

    /// A frame's bytes for `value` (UTF-8 text for JSON).
    pub fn encode(self, value: &Value) -> Vec<u8> {
        let Some(format) = self.format() else { return value.to_string().into_bytes() };
        let mut buf = Vec::new();
        write::write_value(&mut write::Out::new(format, &mut buf), value);
        buf
    }

    /// The bytes of the JSON text `json` in this serializer, written in one pass without building a value tree
    /// (see `serial/write.rs`); the text itself for JSON. Fails on text that is not one JSON value.
    pub fn transcode_json(self, json: &str) -> Result<Vec<u8>, SerialError> {
        let Some(format) = self.format() else { return Ok(json.as_bytes().to_vec()) };
        let mut buf = Vec::with_capacity(json.len());
        let mut out = write::Out::new(format, &mut buf);
        write::transcode(&mut out, json)
            .map_err(|e| SerialError { serializer: self.token(), message: format!("JSON to transcode: {e}") })?;
        out.finish();
        Ok(buf)
    }

    /// An EVENT frame, `[36, subscription, publication, details, args, kwargs]`, whose arguments come as JSON
    /// text (`args`, `kwargs`: a list and a dictionary, each optional) and are transcoded, not parsed into a tree:
    /// how a publication is written once per serializer for every subscriber of a topic.
    pub fn encode_event(
        self,
        subscription: u64,
        publication: u64,
        details: &Map<String, Value>,
        args: Option<&str>,
        kwargs: Option<&str>,
    ) -> Result<Vec<u8>, SerialError> {
        let args = args.or(kwargs.map(|_| "[]"));
        let Some(format) = self.format() else {
            let tail: String = [args, kwargs].into_iter().flatten().map(|part| format!(",{part}")).collect();
            let details = Value::Object(details.clone());
            return Ok(format!("[36,{subscription},{publication},{details}{tail}]").into_bytes());
        };
        let fail =
            |e: serde_json::Error| SerialError { serializer: self.token(), message: format!("JSON to transcode: {e}") };
        let mut buf = Vec::with_capacity(32 + args.map_or(0, str::len) + kwargs.map_or(0, str::len));
        let mut out = write::Out::new(format, &mut buf);
        out.array_len(4 + usize::from(args.is_some()) + usize::from(kwargs.is_some()));
        out.u64(36);
        out.u64(subscription);
        out.u64(publication);
        write::write_map(&mut out, details);
        for part in [args, kwargs].into_iter().flatten() {
            write::transcode(&mut out, part).map_err(fail)?;
        }
        out.finish();
        Ok(buf)
    }

    /// The publication id of a binary EVENT frame this router wrote ([`encode_event`](Serializer::encode_event),
    /// or any message encoded here: array lengths in their shortest form), read from its first bytes without
    /// decoding the frame; `None` for anything else, and for JSON (see `v2::event_publication`).
    pub fn event_publication(self, frame: &[u8]) -> Option<u64> {
        let read_uint = match self {
            Serializer::Json => return None,
            Serializer::MsgPack => msgpack_uint,
            Serializer::Cbor => cbor_uint,
        };
        let rest = match (self, frame) {
            (Serializer::MsgPack, [0x94..=0x96, 0x24, rest @ ..]) => rest,
            (Serializer::Cbor, [0x84..=0x86, 0x18, 0x24, rest @ ..]) => rest,
            _ => return None,
        };
        let (_subscription, rest) = read_uint(rest)?;
        read_uint(rest).map(|(publication, _)| publication)
    }

    fn format(self) -> Option<write::Format> {
        match self {
            Serializer::Json => None,
            Serializer::MsgPack => Some(write::Format::MsgPack),
            Serializer::Cbor => Some(write::Format::Cbor),
        }
    }
}

/// A MessagePack unsigned integer at the start of `bytes`, and what follows it.
fn msgpack_uint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (width, rest) = match bytes.split_first()? {
        (&n @ 0..=0x7f, rest) => return Some((u64::from(n), rest)),
        (0xcc, rest) => (1, rest),
        (0xcd, rest) => (2, rest),
        (0xce, rest) => (4, rest),
        (0xcf, rest) => (8, rest),
        _ => return None,
    };
    big_endian(rest, width)
}

/// A CBOR unsigned integer (major type 0) at the start of `bytes`, and what follows it.
fn cbor_uint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (&head, rest) = bytes.split_first()?;
    let width = match head {
        0..=23 => return Some((u64::from(head), rest)),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return None,
    };
    big_endian(rest, width)
}

fn big_endian(bytes: &[u8], width: usize) -> Option<(u64, &[u8])> {
    let value = bytes.get(..width)?.iter().fold(0u64, |n, b| n << 8 | u64::from(*b));
    Some((value, &bytes[width..]))
}

/// The spec's JSON form of binary data: `\u0000` + base64.
pub fn binary_to_json(bytes: &[u8]) -> Value {
    Value::String(format!("\0{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
}

/// The bytes a JSON string in the spec's binary form stands for.
pub fn json_to_binary(text: &str) -> Option<Vec<u8>> {
    let encoded = text.strip_prefix('\0')?;
    base64::engine::general_purpose::STANDARD.decode(encoded).ok()
}

fn float(f: f64) -> Result<Value, String> {
    Number::from_f64(f).map(Value::Number).ok_or_else(|| format!("float {f} has no JSON form"))
}

/// A list or dictionary inside `depth` others: refused past [`MAX_DEPTH`].
fn nest(depth: usize) -> Result<usize, String> {
    match depth < MAX_DEPTH {
        true => Ok(depth + 1),
        false => Err(format!("nested deeper than {MAX_DEPTH} levels")),
    }
}

fn from_msgpack(value: rmpv::Value, depth: usize) -> Result<Value, String> {
    use rmpv::Value as M;
    Ok(match value {
        M::Nil => Value::Null,
        M::Boolean(b) => Value::Bool(b),
        M::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Value::from(u),
            (_, Some(n)) => Value::from(n),
            _ => return Err("integer out of range".into()),
        },
        M::F32(f) => float(f64::from(f))?,
        M::F64(f) => float(f)?,
        M::String(s) => Value::String(s.into_str().ok_or("a string is not UTF-8")?),
        M::Binary(bytes) => binary_to_json(&bytes),
        M::Array(items) => {
            let inner = nest(depth)?;
            Value::Array(items.into_iter().map(|v| from_msgpack(v, inner)).collect::<Result<_, _>>()?)
        }
        M::Map(pairs) => {
            let inner = nest(depth)?;
            let mut map = Map::new();
            for (key, value) in pairs {
                let M::String(key) = key else { return Err("a map key is not a string".into()) };
                map.insert(key.into_str().ok_or("a map key is not UTF-8")?, from_msgpack(value, inner)?);
            }
            Value::Object(map)
        }
        M::Ext(kind, _) => return Err(format!("extension type {kind} has no JSON form")),
    })
}

fn from_cbor(value: ciborium::Value, depth: usize) -> Result<Value, String> {
    use ciborium::Value as C;
    Ok(match value {
        C::Null => Value::Null,
        C::Bool(b) => Value::Bool(b),
        C::Integer(i) => {
            let n = i128::from(i);
            match (u64::try_from(n), i64::try_from(n)) {
                (Ok(u), _) => Value::from(u),
                (_, Ok(i)) => Value::from(i),
                _ => return Err("integer out of range".into()),
            }
        }
        C::Float(f) => float(f)?,
        C::Text(s) => Value::String(s),
        C::Bytes(bytes) => binary_to_json(&bytes),
        C::Array(items) => {
            let inner = nest(depth)?;
            Value::Array(items.into_iter().map(|v| from_cbor(v, inner)).collect::<Result<_, _>>()?)
        }
        C::Map(pairs) => {
            let inner = nest(depth)?;
            let mut map = Map::new();
            for (key, value) in pairs {
                let C::Text(key) = key else { return Err("a map key is not a string".into()) };
                map.insert(key, from_cbor(value, inner)?);
            }
            Value::Object(map)
        }
        // Tags annotate a value (a date, a bignum's sign…): the value itself is what WAMP carries (ciborium's
        // recursion limit bounds how many may stack up).
        C::Tag(_, inner) => from_cbor(*inner, depth)?,
        _ => return Err("a value of unknown kind".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!([36, 5512315355u64, 4429313566u64, {"publisher": 1}, ["Hello", -3, 2.5, null, true], {"k": [1, {"n": "x"}]}])
    }

    #[test]
    fn every_serializer_round_trips_a_message() {
        for serializer in Serializer::ALL {
            let bytes = serializer.encode(&event());
            assert_eq!(serializer.decode(&bytes).unwrap(), event(), "{}", serializer.token());
            assert_eq!(Serializer::from_token(serializer.token()), Some(serializer));
        }
        assert!(!Serializer::Json.is_binary() && Serializer::MsgPack.is_binary() && Serializer::Cbor.is_binary());
        assert_eq!(Serializer::from_token("wamp.2.ubjson"), None);
    }

    #[test]
    fn binary_values_keep_their_bytes_and_show_json_the_spec_form() {
        let bytes = vec![0u8, 1, 2, 255];
        let json_form = binary_to_json(&bytes);
        assert_eq!(json_form, Value::String("\0AAEC/w==".into()));
        for serializer in [Serializer::MsgPack, Serializer::Cbor] {
            let frame = serializer.encode(&json!([16, 1, {}, "t", [json_form.clone()]]));
            let decoded = serializer.decode(&frame).unwrap();
            assert_eq!(decoded[4][0], json_form, "{}", serializer.token());
        }
        // On the wire it is a real binary value, not a string.
        let native = rmpv::Value::Array(vec![rmpv::Value::Binary(bytes.clone())]);
        let mut frame = Vec::new();
        rmpv::encode::write_value(&mut frame, &native).unwrap();
        assert_eq!(Serializer::MsgPack.encode(&json!([json_form])), frame);
        assert_eq!(json_to_binary("plain text"), None);
    }

    #[test]
    fn what_json_cannot_say_is_refused_with_a_reason() {
        let msgpack = |value: rmpv::Value| {
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, &value).unwrap();
            Serializer::MsgPack.decode(&out).unwrap_err().to_string()
        };
        assert!(msgpack(rmpv::Value::Map(vec![(rmpv::Value::from(1), rmpv::Value::Nil)])).contains("not a string"));
        assert!(msgpack(rmpv::Value::F64(f64::NAN)).contains("no JSON form"));
        assert!(msgpack(rmpv::Value::Ext(5, vec![1])).contains("extension type 5"));
        let cbor = |value: ciborium::Value| {
            let mut out = Vec::new();
            ciborium::ser::into_writer(&value, &mut out).unwrap();
            Serializer::Cbor.decode(&out).unwrap_err().to_string()
        };
        assert!(cbor(ciborium::Value::Map(vec![(ciborium::Value::Bool(true), ciborium::Value::Null)])).contains("key"));
        assert!(cbor(ciborium::Value::Float(f64::INFINITY)).contains("no JSON form"));
        assert!(Serializer::MsgPack.decode(&[0x91]).is_err(), "truncated");
        assert!(Serializer::MsgPack.decode(&[0x90, 0x90]).unwrap_err().to_string().contains("after the message"));
        assert!(Serializer::Cbor.decode(&[0xff, 0x00]).is_err(), "garbage");
        assert!(Serializer::Json.decode(&[0xff]).is_err(), "not UTF-8");
    }

    #[test]
    fn json_text_transcodes_in_one_pass_to_what_the_tree_encodes() {
        let texts = [
            r#"[1,-1,-33,-200,-40000,-3000000000,255,65536,4294967296,18446744073709551615,1.5,-0.0,null,true,false]"#,
            r#"{"":"","a\u0000b":"x","\u0000AAEC/w==":"\u0000AAEC/w==","nested":[[[{"deep":[]}]]],"e":{}}"#,
            r#""plain""#,
        ];
        let long = format!(r#"[{}]"#, vec![r#""x""#; 70_000].join(","));
        let keyed = format!("{{{}}}", (0..20).map(|i| format!(r#""k{i}":{i}"#)).collect::<Vec<_>>().join(","));
        for text in texts.iter().copied().chain([long.as_str(), keyed.as_str()]) {
            let tree: Value = serde_json::from_str(text).unwrap();
            for serializer in [Serializer::MsgPack, Serializer::Cbor] {
                let transcoded = serializer.transcode_json(text).unwrap();
                assert_eq!(serializer.decode(&transcoded).unwrap(), tree, "{}: {text:.80}", serializer.token());
                assert_eq!(serializer.decode(&serializer.encode(&tree)).unwrap(), tree);
            }
        }
        // A key in the binary form stays a key: only values become bytes.
        let frame = Serializer::MsgPack.transcode_json(r#"{"\u0000AA==":"\u0000AA=="}"#).unwrap();
        let native = rmpv::decode::read_value(&mut &frame[..]).unwrap();
        assert_eq!(native.as_map().unwrap()[0], (rmpv::Value::from("\0AA=="), rmpv::Value::Binary(vec![0])));
        assert!(Serializer::Cbor.transcode_json("[1,").is_err());
        assert!(Serializer::Cbor.transcode_json("[1] 2").is_err(), "one value only");
        assert_eq!(Serializer::Json.transcode_json("[1]").unwrap(), b"[1]");
    }

    #[test]
    fn an_event_splices_its_json_arguments_into_every_serializer() {
        let details: Map<String, Value> = serde_json::from_str(r#"{"topic":"a.b"}"#).unwrap();
        let cases = [
            (None, None, json!([36, 7, 9, {"topic": "a.b"}])),
            (Some(r#"[1,"\u0000AQ=="]"#), None, json!([36, 7, 9, {"topic": "a.b"}, [1, "\0AQ=="]])),
            (None, Some(r#"{"k":true}"#), json!([36, 7, 9, {"topic": "a.b"}, [], {"k": true}])),
            (Some("[]"), Some("{}"), json!([36, 7, 9, {"topic": "a.b"}, [], {}])),
        ];
        for (args, kwargs, expected) in cases {
            for serializer in Serializer::ALL {
                let frame = serializer.encode_event(7, 9, &details, args, kwargs).unwrap();
                assert_eq!(serializer.decode(&frame).unwrap(), expected, "{}", serializer.token());
            }
        }
        assert!(Serializer::MsgPack.encode_event(1, 2, &details, Some("[nope"), None).is_err());
    }

    #[test]
    fn every_serializer_nests_exactly_as_deep_as_json() {
        let nested = |levels: usize| {
            let json = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
            let msgpack = [vec![0x91u8; levels - 1], vec![0x90]].concat();
            let cbor = [vec![0x81u8; levels - 1], vec![0x80]].concat();
            [(Serializer::Json, json.into_bytes()), (Serializer::MsgPack, msgpack), (Serializer::Cbor, cbor)]
        };
        for (serializer, frame) in nested(MAX_DEPTH) {
            assert!(serializer.decode(&frame).is_ok(), "{} at {MAX_DEPTH} levels", serializer.token());
        }
        for (serializer, frame) in nested(MAX_DEPTH + 1) {
            assert!(serializer.decode(&frame).is_err(), "{} at {} levels", serializer.token(), MAX_DEPTH + 1);
        }
        // Dictionaries count like lists.
        let mut deep_map = vec![0x81u8; MAX_DEPTH - 1];
        deep_map.extend([0xa1, 0x61, b'k', 0x80]);
        assert!(Serializer::Cbor.decode(&deep_map).unwrap_err().to_string().contains("nested deeper than 127"));
    }

    #[test]
    fn bytes_after_the_message_are_refused_in_cbor_too() {
        let error = Serializer::Cbor.decode(&[0x81, 0x01, 0xff, 0xff]).unwrap_err().to_string();
        assert!(error.contains("2 bytes after the message"), "{error}");
    }

    #[test]
    fn transcoded_frames_are_as_short_as_tree_encoded_ones() {
        // Keys in order, so the tree (sorted keys) and the text agree byte for byte.
        let text = r#"[[],{},[[]],{"a":[],"b":{"c":[1,2,3]}},"\u0000AQ==",[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]]"#;
        let tree: Value = serde_json::from_str(text).unwrap();
        for serializer in [Serializer::MsgPack, Serializer::Cbor] {
            assert_eq!(serializer.transcode_json(text).unwrap(), serializer.encode(&tree), "{}", serializer.token());
        }
        assert_eq!(
            Serializer::MsgPack.transcode_json("[[],{}]").unwrap(),
            [0x92, 0x90, 0x80],
            "an empty list is one byte"
        );
        let wide = format!("[{}]", vec!["[]"; 70_000].join(","));
        let frame = Serializer::Cbor.transcode_json(&wide).unwrap();
        assert_eq!(frame.len(), 5 + 70_000, "a 32-bit length where it is needed, one byte per empty list");
    }

    #[test]
    fn an_events_publication_id_is_read_from_its_first_bytes() {
        let details: Map<String, Value> = serde_json::from_str(r#"{"topic":"t"}"#).unwrap();
        for serializer in [Serializer::MsgPack, Serializer::Cbor] {
            for (subscription, publication) in [(1, 2), (300, 70_000), (1 << 40, (1 << 53) - 1)] {
                let frame = serializer.encode_event(subscription, publication, &details, Some("[1]"), None).unwrap();
                assert_eq!(serializer.event_publication(&frame), Some(publication), "{}", serializer.token());
                let tree = serializer.encode(&json!([36, subscription, publication, {}, [], {"k": 1}]));
                assert_eq!(serializer.event_publication(&tree), Some(publication));
            }
            assert_eq!(serializer.event_publication(&serializer.encode(&json!([33, 1, 2]))), None, "not an EVENT");
            assert_eq!(serializer.event_publication(&serializer.encode(&json!([36, 1]))[..2]), None, "cut short");
        }
        assert_eq!(Serializer::Json.event_publication(b"[36,1,2,{}]"), None, "JSON is read by v2::event_publication");
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep_msgpack = vec![0x91u8; 100_000];
        assert!(Serializer::MsgPack.decode(&deep_msgpack).is_err());
        let deep_cbor = vec![0x81u8; 100_000];
        assert!(Serializer::Cbor.decode(&deep_cbor).is_err());
    }
}
