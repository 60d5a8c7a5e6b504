//! Writing MessagePack and CBOR straight into a byte buffer: from a value tree ([`write_value`]), and from JSON
//! text in one pass without building a tree ([`transcode`]) — how a node turns the raw JSON payload another
//! node sent into its binary subscribers' EVENTs.
//!
//! Strings in the spec's JSON form of binary (`\u0000` + base64) are written as binary values; map keys are
//! always strings. Lengths are written in their shortest form: from a tree they are known up front; the
//! one-pass transcoder cannot know an array's or a map's length before its end, so it writes a four-byte length,
//! fills it in at the end of the array or map, and [`Out::finish`] shortens every such header in one last pass
//! over the buffer.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::json_to_binary;

/// The binary encoding written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    MsgPack,
    Cbor,
}

/// A buffer being written in one [`Format`].
pub(super) struct Out<'a> {
    format: Format,
    buf: &'a mut Vec<u8>,
    /// Arrays and maps written with a four-byte length (see [`Out::open`]), by position, with their length:
    /// [`Out::finish`] shortens them.
    pending: Vec<(usize, u32)>,
}

/// CBOR's major types used here.
const UNSIGNED: u8 = 0;
const NEGATIVE: u8 = 1;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;

impl<'a> Out<'a> {
    /// Writes into `buf`, after what it holds.
    pub(super) fn new(format: Format, buf: &'a mut Vec<u8>) -> Out<'a> {
        Out { format, buf, pending: Vec::new() }
    }

    fn cbor_head(&mut self, major: u8, n: u64) {
        let major = major << 5;
        match n {
            0..=23 => self.buf.push(major | n as u8),
            24..=0xff => self.buf.extend_from_slice(&[major | 24, n as u8]),
            0x100..=0xffff => {
                self.buf.push(major | 25);
                self.buf.extend_from_slice(&(n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                self.buf.push(major | 26);
                self.buf.extend_from_slice(&(n as u32).to_be_bytes());
            }
            _ => {
                self.buf.push(major | 27);
                self.buf.extend_from_slice(&n.to_be_bytes());
            }
        }
    }

    /// A MessagePack length header: the fix form (`fix`: base marker and largest length) when it fits, else
    /// the 8-bit form (if the type has one), the 16-bit or the 32-bit one.
    fn msgpack_len(&mut self, len: usize, fix: Option<(u8, usize)>, m8: Option<u8>, m16: u8, m32: u8) {
        match (fix, m8) {
            (Some((base, max)), _) if len <= max => self.buf.push(base | len as u8),
            (_, Some(m8)) if len <= 0xff => self.buf.extend_from_slice(&[m8, len as u8]),
            _ if len <= 0xffff => {
                self.buf.push(m16);
                self.buf.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.buf.push(m32);
                self.buf.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
    }

    pub(super) fn null(&mut self) {
        self.buf.push(match self.format {
            Format::MsgPack => 0xc0,
            Format::Cbor => 0xf6,
        });
    }

    pub(super) fn bool(&mut self, b: bool) {
        self.buf.push(match (self.format, b) {
            (Format::MsgPack, false) => 0xc2,
            (Format::MsgPack, true) => 0xc3,
            (Format::Cbor, false) => 0xf4,
            (Format::Cbor, true) => 0xf5,
        });
    }

    pub(super) fn u64(&mut self, n: u64) {
        match self.format {
            Format::Cbor => self.cbor_head(UNSIGNED, n),
            Format::MsgPack => match n {
                0..=0x7f => self.buf.push(n as u8),
                0x80..=0xff => self.buf.extend_from_slice(&[0xcc, n as u8]),
                0x100..=0xffff => {
                    self.buf.push(0xcd);
                    self.buf.extend_from_slice(&(n as u16).to_be_bytes());
                }
                0x1_0000..=0xffff_ffff => {
                    self.buf.push(0xce);
                    self.buf.extend_from_slice(&(n as u32).to_be_bytes());
                }
                _ => {
                    self.buf.push(0xcf);
                    self.buf.extend_from_slice(&n.to_be_bytes());
                }
            },
        }
    }

    pub(super) fn i64(&mut self, n: i64) {
        if n >= 0 {
            return self.u64(n as u64);
        }
        match self.format {
            // CBOR's negative integers count down from -1.
            Format::Cbor => self.cbor_head(NEGATIVE, !(n as u64)),
            Format::MsgPack => match n {
                -32..=-1 => self.buf.push(n as i8 as u8),
                -128..=-33 => self.buf.extend_from_slice(&[0xd0, n as i8 as u8]),
                -32768..=-129 => {
                    self.buf.push(0xd1);
                    self.buf.extend_from_slice(&(n as i16).to_be_bytes());
                }
                -2_147_483_648..=-32769 => {
                    self.buf.push(0xd2);
                    self.buf.extend_from_slice(&(n as i32).to_be_bytes());
                }
                _ => {
                    self.buf.push(0xd3);
                    self.buf.extend_from_slice(&n.to_be_bytes());
                }
            },
        }
    }

    pub(super) fn f64(&mut self, f: f64) {
        self.buf.push(match self.format {
            Format::MsgPack => 0xcb,
            Format::Cbor => 0xfb,
        });
        self.buf.extend_from_slice(&f.to_be_bytes());
    }

    /// A text string (a map key, or a value that is not in the spec's binary form).
    pub(super) fn text(&mut self, s: &str) {
        match self.format {
            Format::Cbor => self.cbor_head(TEXT, s.len() as u64),
            Format::MsgPack => self.msgpack_len(s.len(), Some((0xa0, 31)), Some(0xd9), 0xda, 0xdb),
        }
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// A string value: binary when it is in the spec's binary form, text otherwise.
    pub(super) fn string(&mut self, s: &str) {
        let Some(bytes) = json_to_binary(s) else { return self.text(s) };
        match self.format {
            Format::Cbor => self.cbor_head(BYTES, bytes.len() as u64),
            Format::MsgPack => self.msgpack_len(bytes.len(), None, Some(0xc4), 0xc5, 0xc6),
        }
        self.buf.extend_from_slice(&bytes);
    }

    pub(super) fn array_len(&mut self, n: usize) {
        match self.format {
            Format::Cbor => self.cbor_head(ARRAY, n as u64),
            Format::MsgPack => self.msgpack_len(n, Some((0x90, 15)), None, 0xdc, 0xdd),
        }
    }

    pub(super) fn map_len(&mut self, n: usize) {
        match self.format {
            Format::Cbor => self.cbor_head(MAP, n as u64),
            Format::MsgPack => self.msgpack_len(n, Some((0x80, 15)), None, 0xde, 0xdf),
        }
    }

    /// Opens an array (`map`: a map) whose length is not known yet: a four-byte length, filled in by
    /// [`close`](Out::close) with the index returned here.
    fn open(&mut self, map: bool) -> usize {
        let at = self.buf.len();
        self.buf.push(match (self.format, map) {
            (Format::MsgPack, false) => 0xdd,
            (Format::MsgPack, true) => 0xdf,
            (Format::Cbor, false) => ARRAY << 5 | 26,
            (Format::Cbor, true) => MAP << 5 | 26,
        });
        self.buf.extend_from_slice(&[0; 4]);
        self.pending.push((at, 0));
        self.pending.len() - 1
    }

    fn close(&mut self, index: usize, n: u32) {
        let (at, len) = &mut self.pending[index];
        *len = n;
        self.buf[*at + 1..*at + 5].copy_from_slice(&n.to_be_bytes());
    }

    /// Rewrites every four-byte length [`open`](Out::open) wrote in its shortest form, moving what follows
    /// down: one pass over the buffer, so the frame is as short as one written from a tree (an empty list is
    /// one byte, not five).
    pub(super) fn finish(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let Some(&(first, _)) = pending.first() else { return };
        let (mut read, mut write) = (first, first);
        let mut head = Vec::with_capacity(5);
        for (at, n) in pending {
            self.buf.copy_within(read..at, write);
            write += at - read;
            head.clear();
            let mut short = Out::new(self.format, &mut head);
            match self.buf[at] {
                0xdf | 0xba => short.map_len(n as usize),
                _ => short.array_len(n as usize),
            }
            self.buf[write..write + head.len()].copy_from_slice(&head);
            write += head.len();
            read = at + 5;
        }
        let end = self.buf.len();
        self.buf.copy_within(read..end, write);
        self.buf.truncate(write + (end - read));
    }
}

/// Writes a value tree.
pub(super) fn write_value(out: &mut Out<'_>, value: &Value) {
    match value {
        Value::Null => out.null(),
        Value::Bool(b) => out.bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => out.u64(u),
            (_, Some(i)) => out.i64(i),
            _ => out.f64(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => out.string(s),
        Value::Array(items) => {
            out.array_len(items.len());
            items.iter().for_each(|item| write_value(out, item));
        }
        Value::Object(map) => write_map(out, map),
    }
}

/// Writes a dictionary.
pub(super) fn write_map(out: &mut Out<'_>, map: &Map<String, Value>) {
    out.map_len(map.len());
    for (key, value) in map {
        out.text(key);
        write_value(out, value);
    }
}

/// Writes the JSON text `json` in one pass (see the module docs). Fails on text that is not one JSON value.
/// The text is the router's own (a payload that passed the message checks, a reply or EVENT written around
/// one), so its depth is bounded by theirs plus a few levels; serde_json's limit is lifted for it, as a reply
/// may nest a payload a few levels deeper than any inbound message may go.
pub(super) fn transcode(out: &mut Out<'_>, json: &str) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(json);
    de.disable_recursion_limit();
    Writer { out, key: false }.deserialize(&mut de)?;
    de.end()
}

/// A serde visitor that writes what it visits (`key`: as a map key, always text).
struct Writer<'a, 'b> {
    out: &'a mut Out<'b>,
    key: bool,
}

impl<'de> DeserializeSeed<'de> for Writer<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Writer<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.null();
        Ok(())
    }

    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        self.out.bool(b);
        Ok(())
    }

    fn visit_u64<E>(self, n: u64) -> Result<(), E> {
        self.out.u64(n);
        Ok(())
    }

    fn visit_i64<E>(self, n: i64) -> Result<(), E> {
        self.out.i64(n);
        Ok(())
    }

    fn visit_f64<E>(self, f: f64) -> Result<(), E> {
        self.out.f64(f);
        Ok(())
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        match self.key {
            true => self.out.text(s),
            false => self.out.string(s),
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let at = self.out.open(false);
        let mut n = 0u32;
        while seq.next_element_seed(Writer { out: &mut *self.out, key: false })?.is_some() {
            n += 1;
        }
        self.out.close(at, n);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let at = self.out.open(true);
        let mut n = 0u32;
        while map.next_key_seed(Writer { out: &mut *self.out, key: true })?.is_some() {
            map.next_value_seed(Writer { out: &mut *self.out, key: false })?;
            n += 1;
        }
        self.out.close(at, n);
        Ok(())
    }
}
