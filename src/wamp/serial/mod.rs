//! WAMP v2 serializers: `wamp.2.json`, `wamp.2.msgpack` and `wamp.2.cbor`, as codecs between a frame's bytes and
//! the one value tree the router validates (`serde_json::Value`), so every serializer goes through the same
//! message checks.
//!
//! Binary values (MessagePack `bin`, CBOR byte strings) have no JSON type; the WAMP spec's JSON form is a string
//! whose first character is `\u0000` followed by the bytes in base64. Decoding turns binary values into that
//! form; encoding for a binary serializer turns such strings back into binary values, so bytes survive between
//! binary clients and JSON clients see the spec's form. What a binary serializer can say but JSON cannot is
//! refused with a reason: map keys that are not strings, NaN or infinite floats, MessagePack extension types,
//! CBOR tags other than the ones that merely annotate a value, text that is not UTF-8. Nesting is bounded like
//! the JSON decoder's.
//!
//! Pure: no I/O, no router state; the fuzz target `serial` drives [`Serializer::decode`] directly.

use base64::Engine;

mod write;
use serde_json::{Map, Number, Value};

/// Deepest nesting a binary frame may have (serde_json's own default for JSON frames).
pub const MAX_DEPTH: usize = 128;

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
    /// Every serializer, in the router's order of preference when a client offers several.
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
                let value = rmpv::decode::read_value_with_max_depth(&mut reader, MAX_DEPTH)
                    .map_err(|e| error(e.to_string()))?;
                if !reader.is_empty() {
                    return Err(error(format!("{} bytes after the message", reader.len())));
                }
                from_msgpack(value).map_err(error)
            }
            Serializer::Cbor => {
                let value: ciborium::Value = ciborium::de::from_reader_with_recursion_limit(bytes, MAX_DEPTH)
                    .map_err(|e| error(e.to_string()))?;
                from_cbor(value, 0).map_err(error)
            }
        }
    }

    /// A frame's bytes for `value` (UTF-8 text for JSON).
    pub fn encode(self, value: &Value) -> Vec<u8> {
        let Some(format) = self.format() else { return value.to_string().into_bytes() };
        let mut buf = Vec::new();
        write::write_value(&mut write::Out { format, buf: &mut buf }, value);
        buf
    }

    /// The bytes of the JSON text `json` in this serializer, written in one pass without building a value tree
    /// (see [`write`]); the text itself for JSON. Fails on text that is not one JSON value.
    pub fn transcode_json(self, json: &str) -> Result<Vec<u8>, SerialError> {
        let Some(format) = self.format() else { return Ok(json.as_bytes().to_vec()) };
        let mut buf = Vec::with_capacity(json.len());
        write::transcode(&mut write::Out { format, buf: &mut buf }, json)
            .map_err(|e| SerialError { serializer: self.token(), message: format!("JSON to transcode: {e}") })?;
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
        let mut out = write::Out { format, buf: &mut buf };
        out.array_len(4 + usize::from(args.is_some()) + usize::from(kwargs.is_some()));
        out.u64(36);
        out.u64(subscription);
        out.u64(publication);
        write::write_map(&mut out, details);
        for part in [args, kwargs].into_iter().flatten() {
            write::transcode(&mut out, part).map_err(fail)?;
        }
        Ok(buf)
    }

    fn format(self) -> Option<write::Format> {
        match self {
            Serializer::Json => None,
            Serializer::MsgPack => Some(write::Format::MsgPack),
            Serializer::Cbor => Some(write::Format::Cbor),
        }
    }
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

fn from_msgpack(value: rmpv::Value) -> Result<Value, String> {
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
        M::Array(items) => Value::Array(items.into_iter().map(from_msgpack).collect::<Result<_, _>>()?),
        M::Map(pairs) => {
            let mut map = Map::new();
            for (key, value) in pairs {
                let M::String(key) = key else { return Err("a map key is not a string".into()) };
                map.insert(key.into_str().ok_or("a map key is not UTF-8")?, from_msgpack(value)?);
            }
            Value::Object(map)
        }
        M::Ext(kind, _) => return Err(format!("extension type {kind} has no JSON form")),
    })
}

fn from_cbor(value: ciborium::Value, depth: usize) -> Result<Value, String> {
    use ciborium::Value as C;
    if depth > MAX_DEPTH {
        return Err("nested too deeply".into());
    }
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
        C::Array(items) => Value::Array(items.into_iter().map(|v| from_cbor(v, depth + 1)).collect::<Result<_, _>>()?),
        C::Map(pairs) => {
            let mut map = Map::new();
            for (key, value) in pairs {
                let C::Text(key) = key else { return Err("a map key is not a string".into()) };
                map.insert(key, from_cbor(value, depth + 1)?);
            }
            Value::Object(map)
        }
        // Tags annotate a value (a date, a bignum's sign…): the value itself is what WAMP carries.
        C::Tag(_, inner) => from_cbor(*inner, depth + 1)?,
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
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep_msgpack = vec![0x91u8; 100_000];
        assert!(Serializer::MsgPack.decode(&deep_msgpack).is_err());
        let deep_cbor = vec![0x81u8; 100_000];
        assert!(Serializer::Cbor.decode(&deep_cbor).is_err());
    }
}
