//! MessagePack as Node's `notepack.io` writes and reads it, between
//! Socket.IO data (JSON values whose binary parts are placeholders
//! `{"_placeholder":true,"num":N}` naming attachments) and Node's objects,
//! where a `Buffer` sits in place as a msgpack `bin`.
//!
//! notepack writes a JavaScript number as the smallest integer format that
//! holds it when it is a whole number, else as a float64; hub does the
//! same for a JSON number (so `1.0` from a client is `1`, as it is in
//! JavaScript). `undefined` (an `ext` of type 0) reads as null. `rmp`
//! writes; reading goes straight to JSON values, with a depth limit.

use bytes::Bytes;
use rmp::encode;
use serde_json::{Map, Number, Value};

/// Deepest nesting read from the network: past serde_json's own limit
/// (128) with room for the few levels a message wraps around its data, so
/// that what hub took as JSON it can always write and read as msgpack.
const MAX_DEPTH: usize = 160;

/// Why bytes are not a message.
#[derive(Debug, thiserror::Error)]
#[error("bad msgpack: {0}")]
pub(crate) struct MsgpackError(String);

/// Write `value` with each placeholder replaced by its attachment as `bin`.
pub(crate) fn write_value(out: &mut Vec<u8>, value: &Value, attachments: &[Bytes]) {
    match value {
        Value::Null => encode::write_nil(out).expect("a Vec never fails"),
        Value::Bool(b) => encode::write_bool(out, *b).expect("a Vec never fails"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            encode::write_array_len(out, items.len() as u32).expect("a Vec never fails");
            for item in items {
                write_value(out, item, attachments);
            }
        }
        Value::Object(map) => {
            if let Some(bytes) = placeholder(map).and_then(|n| attachments.get(n)) {
                encode::write_bin(out, bytes).expect("a Vec never fails");
                return;
            }
            encode::write_map_len(out, map.len() as u32).expect("a Vec never fails");
            for (key, item) in map {
                write_str(out, key);
                write_value(out, item, attachments);
            }
        }
    }
}

/// `{"_placeholder":true,"num":N}`: N.
fn placeholder(map: &Map<String, Value>) -> Option<usize> {
    if map.len() != 2 || map.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    map.get("num")?.as_u64().map(|n| n as usize)
}

pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    encode::write_str(out, s).expect("a Vec never fails");
}

/// As notepack: whole numbers as the smallest integer, the rest float64.
fn write_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(u) = n.as_u64() {
        encode::write_uint(out, u).expect("a Vec never fails");
    } else if let Some(i) = n.as_i64() {
        encode::write_sint(out, i).expect("a Vec never fails");
    } else {
        let f = n.as_f64().unwrap_or(f64::NAN);
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            if f >= 0.0 {
                encode::write_uint(out, f as u64).expect("a Vec never fails");
            } else {
                encode::write_sint(out, f as i64).expect("a Vec never fails");
            }
        } else {
            encode::write_f64(out, f).expect("a Vec never fails");
        }
    }
}

pub(crate) fn write_u64(out: &mut Vec<u8>, n: u64) {
    encode::write_uint(out, n).expect("a Vec never fails");
}

/// Read one value; each `bin` becomes a placeholder and an attachment, in
/// the order met. Bytes after the value are an error.
pub(crate) fn read(bytes: &[u8]) -> Result<(Value, Vec<Bytes>), MsgpackError> {
    let mut reader = Reader {
        rest: bytes,
        attachments: Vec::new(),
    };
    let value = reader.value(0)?;
    if !reader.rest.is_empty() {
        return Err(MsgpackError(format!(
            "{} bytes after the value",
            reader.rest.len()
        )));
    }
    Ok((value, reader.attachments))
}

/// Reads msgpack straight into JSON values (no `rmpv::Value` in between:
/// this is the decode of every message a node hears). `rmp` names the
/// markers; the lengths and numbers are read here, each checked against
/// what is left, so a declared length never allocates more than the input.
struct Reader<'a> {
    rest: &'a [u8],
    attachments: Vec<Bytes>,
}

fn short() -> MsgpackError {
    MsgpackError("the input ends inside a value".into())
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MsgpackError> {
        if self.rest.len() < n {
            return Err(short());
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], MsgpackError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn len(&mut self, bytes: usize) -> Result<usize, MsgpackError> {
        Ok(match bytes {
            1 => usize::from(self.be::<1>()?[0]),
            2 => usize::from(u16::from_be_bytes(self.be()?)),
            _ => u32::from_be_bytes(self.be()?) as usize,
        })
    }

    fn value(&mut self, depth: usize) -> Result<Value, MsgpackError> {
        use rmp::Marker as M;
        if depth > MAX_DEPTH {
            return Err(MsgpackError("depth limit exceeded".into()));
        }
        let marker = M::from_u8(self.be::<1>()?[0]);
        Ok(match marker {
            M::Null => Value::Null,
            M::True => Value::Bool(true),
            M::False => Value::Bool(false),
            M::FixPos(n) => Value::from(n),
            M::FixNeg(n) => Value::from(n),
            M::U8 => Value::from(self.be::<1>()?[0]),
            M::U16 => Value::from(u16::from_be_bytes(self.be()?)),
            M::U32 => Value::from(u32::from_be_bytes(self.be()?)),
            M::U64 => Value::from(u64::from_be_bytes(self.be()?)),
            M::I8 => Value::from(i8::from_be_bytes(self.be()?)),
            M::I16 => Value::from(i16::from_be_bytes(self.be()?)),
            M::I32 => Value::from(i32::from_be_bytes(self.be()?)),
            M::I64 => Value::from(i64::from_be_bytes(self.be()?)),
            M::F32 => float(f64::from(f32::from_be_bytes(self.be()?))),
            M::F64 => float(f64::from_be_bytes(self.be()?)),
            M::FixStr(n) => self.string(usize::from(n))?,
            M::Str8 => {
                let n = self.len(1)?;
                self.string(n)?
            }
            M::Str16 => {
                let n = self.len(2)?;
                self.string(n)?
            }
            M::Str32 => {
                let n = self.len(4)?;
                self.string(n)?
            }
            M::Bin8 | M::Bin16 | M::Bin32 => {
                let width = match marker {
                    M::Bin8 => 1,
                    M::Bin16 => 2,
                    _ => 4,
                };
                let n = self.len(width)?;
                let bytes = Bytes::copy_from_slice(self.take(n)?);
                let num = self.attachments.len();
                self.attachments.push(bytes);
                serde_json::json!({"_placeholder": true, "num": num})
            }
            M::FixArray(n) => self.array(usize::from(n), depth)?,
            M::Array16 => {
                let n = self.len(2)?;
                self.array(n, depth)?
            }
            M::Array32 => {
                let n = self.len(4)?;
                self.array(n, depth)?
            }
            M::FixMap(n) => self.map(usize::from(n), depth)?,
            M::Map16 => {
                let n = self.len(2)?;
                self.map(n, depth)?
            }
            M::Map32 => {
                let n = self.len(4)?;
                self.map(n, depth)?
            }
            // Extensions: a timestamp (type -1, a JavaScript `Date` as
            // notepack writes it) reads as the ISO string JSON would carry;
            // any other (notepack's `undefined`...) as null.
            M::FixExt1 | M::FixExt2 | M::FixExt4 | M::FixExt8 | M::FixExt16 => {
                let n = match marker {
                    M::FixExt1 => 1,
                    M::FixExt2 => 2,
                    M::FixExt4 => 4,
                    M::FixExt8 => 8,
                    _ => 16,
                };
                extension(self.take(1 + n)?)
            }
            M::Ext8 | M::Ext16 | M::Ext32 => {
                let width = match marker {
                    M::Ext8 => 1,
                    M::Ext16 => 2,
                    _ => 4,
                };
                let n = self.len(width)?;
                extension(self.take(1 + n)?)
            }
            M::Reserved => return Err(MsgpackError("marker 0xc1 is never used".into())),
        })
    }

    fn string(&mut self, n: usize) -> Result<Value, MsgpackError> {
        Ok(Value::String(lossy(self.take(n)?)))
    }

    fn array(&mut self, n: usize, depth: usize) -> Result<Value, MsgpackError> {
        // Each item takes a byte at least: a length past the input is short.
        if n > self.rest.len() {
            return Err(short());
        }
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Value, MsgpackError> {
        if n.saturating_mul(2) > self.rest.len() {
            return Err(short());
        }
        let mut map = Map::with_capacity(n);
        for _ in 0..n {
            // notepack writes keys as strings; a number or a constant is
            // taken as its text, anything nested is refused (its text would
            // hold every level below it, escaped again at each level).
            let key = match self.value(depth + 1)? {
                Value::String(s) => s,
                scalar @ (Value::Number(_) | Value::Bool(_) | Value::Null) => scalar.to_string(),
                Value::Array(_) | Value::Object(_) => {
                    return Err(MsgpackError("a map key is an array or a map".into()))
                }
            };
            let item = self.value(depth + 1)?;
            map.insert(key, item);
        }
        Ok(Value::Object(map))
    }
}

/// A float as JSON can hold it: NaN and infinities become null, as
/// `JSON.stringify` makes them.
fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// An extension (its type byte, then its data): a MessagePack timestamp
/// (type -1; 4, 8 or 12 bytes) as JavaScript's `Date#toISOString` writes
/// it, which is what a `Date` becomes in JSON; anything else null.
fn extension(ext: &[u8]) -> Value {
    let Some((&kind, data)) = ext.split_first() else {
        return Value::Null;
    };
    if kind as i8 != -1 {
        return Value::Null;
    }
    let (secs, nanos): (i64, u32) = match data.len() {
        4 => (
            i64::from(u32::from_be_bytes(data.try_into().unwrap_or_default())),
            0,
        ),
        8 => {
            let v = u64::from_be_bytes(data.try_into().unwrap_or_default());
            ((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
        }
        12 => {
            let nanos = u32::from_be_bytes(data[..4].try_into().unwrap_or_default());
            let secs = i64::from_be_bytes(data[4..].try_into().unwrap_or_default());
            (secs, nanos)
        }
        _ => return Value::Null,
    };
    // Dates before 1970 or from the year 10000 on have no ISO form here
    // (humantime writes years 1970 to 9999): null rather than a wrong year
    // or a failed format.
    let Ok(secs) = u64::try_from(secs) else {
        return Value::Null;
    };
    if secs >= YEAR_10000 {
        return Value::Null;
    }
    match secs.checked_mul(1000) {
        Some(ms) => Value::String(iso_date(ms + u64::from(nanos.min(999_999_999)) / 1_000_000)),
        None => Value::Null,
    }
}

/// A Unix time in milliseconds as JavaScript's `Date#toISOString` writes it
/// (`2026-12-01T20:11:47.123Z`), through `humantime`.
pub(crate) fn iso_date(unix_ms: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms);
    humantime::format_rfc3339_millis(time).to_string()
}

/// 10000-01-01T00:00:00Z, in seconds since the Unix epoch.
const YEAR_10000: u64 = 253_402_300_800;

/// A string as JavaScript reads invalid UTF-8: with replacement characters.
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Keep only the attachments `data` refers to, numbered in the order
/// kept: a `bin` elsewhere in a message (its options, say) is not the
/// event's. A placeholder naming no attachment stays an object.
pub(crate) fn keep_referenced(data: &mut [Value], attachments: Vec<Bytes>) -> Vec<Bytes> {
    fn walk(value: &mut Value, old: &[Bytes], kept: &mut Vec<Bytes>, map: &mut Vec<Option<usize>>) {
        match value {
            Value::Array(items) => {
                for item in items {
                    walk(item, old, kept, map);
                }
            }
            Value::Object(object) => {
                if let Some(num) = placeholder(object).filter(|n| *n < old.len()) {
                    let new = *map[num].get_or_insert_with(|| {
                        kept.push(old[num].clone());
                        kept.len() - 1
                    });
                    object.insert("num".into(), Value::from(new));
                    return;
                }
                for (_, item) in object.iter_mut() {
                    walk(item, old, kept, map);
                }
            }
            _ => {}
        }
    }
    if attachments.is_empty() {
        return attachments;
    }
    let mut kept = Vec::with_capacity(attachments.len());
    let mut map = vec![None; attachments.len()];
    for value in data.iter_mut() {
        walk(value, &attachments, &mut kept, &mut map);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bytes_of(value: &Value, attachments: &[Bytes]) -> Vec<u8> {
        let mut out = Vec::new();
        write_value(&mut out, value, attachments);
        out
    }

    #[test]
    fn dates_read_as_javascript_writes_them_in_json() {
        // 2026-12-01T21:17:58.045Z, as notepack writes a Date: timestamp 64
        // (nanoseconds above 34 bits of seconds); a whole second: timestamp
        // 32; timestamp 96 (nanoseconds, then signed seconds).
        let (s, ns) = (1_796_159_878u64, 45_000_000u64);
        let mut t64 = vec![0xd7, 0xff];
        t64.extend_from_slice(&((ns << 34) | s).to_be_bytes());
        let mut t32 = vec![0xd6, 0xff];
        t32.extend_from_slice(&(s as u32).to_be_bytes());
        let mut t96 = vec![0xc7, 0x0c, 0xff];
        t96.extend_from_slice(&(ns as u32).to_be_bytes());
        t96.extend_from_slice(&(s as i64).to_be_bytes());
        let read_one = |bytes: &[u8]| read(bytes).unwrap().0;
        assert_eq!(read_one(&t64), json!("2026-12-01T21:17:58.045Z"));
        assert_eq!(read_one(&t32), json!("2026-12-01T21:17:58.000Z"));
        assert_eq!(read_one(&t96), json!("2026-12-01T21:17:58.045Z"));
        // Before 1970, another extension type, or a length no timestamp has: null.
        let mut early = vec![0xc7, 0x0c, 0xff, 0, 0, 0, 0];
        early.extend_from_slice(&(-5i64).to_be_bytes());
        assert_eq!(read_one(&early), Value::Null);
        assert_eq!(read_one(&[0xd4, 0x00, 0x00]), Value::Null);
        assert_eq!(read_one(&[0xd5, 0xff, 0x00, 0x00]), Value::Null);
        // The year 10000 (which JavaScript can send) has no ISO form: null, no panic.
        let mut far = vec![0xc7, 0x0c, 0xff, 0, 0, 0, 0];
        far.extend_from_slice(&253_402_300_800i64.to_be_bytes());
        assert_eq!(read_one(&far), Value::Null);
        let mut last = vec![0xc7, 0x0c, 0xff, 0, 0, 0, 0];
        last.extend_from_slice(&253_402_300_799i64.to_be_bytes());
        assert_eq!(read_one(&last), json!("9999-12-31T23:59:59.000Z"));
        assert_eq!(iso_date(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_date(951_782_400_123), "2000-02-29T00:00:00.123Z");
    }

    #[test]
    fn numbers_take_notepacks_formats() {
        // fixint, negative fixint, uint16, uint64 for 2^40, float64 for 1.5, a whole float as int.
        assert_eq!(bytes_of(&json!(1), &[]), [0x01]);
        assert_eq!(bytes_of(&json!(-1), &[]), [0xff]);
        assert_eq!(bytes_of(&json!(300), &[]), [0xcd, 0x01, 0x2c]);
        assert_eq!(
            bytes_of(&json!(1u64 << 40), &[]),
            [0xcf, 0, 0, 1, 0, 0, 0, 0, 0]
        );
        assert_eq!(bytes_of(&json!(1.5), &[])[0], 0xcb);
        assert_eq!(bytes_of(&json!(2.0), &[]), [0x02]);
        assert_eq!(bytes_of(&json!(-200), &[]), [0xd1, 0xff, 0x38]);
    }

    #[test]
    fn placeholders_become_bin_and_come_back() {
        let value = json!(["ev", {"a": {"_placeholder": true, "num": 0}}, [1, "x", null, true]]);
        let attachments = [Bytes::from_static(b"\x00\x01\x02")];
        let encoded = bytes_of(&value, &attachments);
        // ["ev", {"a": <bin 000102>}, ...]
        assert_eq!(
            &encoded[..8],
            &[0x93, 0xa2, b'e', b'v', 0x81, 0xa1, b'a', 0xc4]
        );
        let (back, found) = read(&encoded).unwrap();
        assert_eq!(back, value);
        assert_eq!(found, attachments);
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        for bad in [
            &[0xdd, 0xff, 0xff, 0xff, 0xff][..], // an array of 4 billion, with nothing in it
            &[0xdf, 0xff, 0xff, 0xff, 0xff],     // a map of as many
            &[0xc6, 0xff, 0xff, 0xff, 0xff, 0],  // a bin longer than the input
            &[0xc1],                             // never used
            &[0x92, 0x01],                       // short
            &[0x01, 0x02],                       // trailing
        ] {
            assert!(read(bad).is_err(), "{bad:?}");
        }
        let deep = vec![0x91u8; 10_000];
        assert!(read(&deep).is_err());
        // undefined (fixext 1, type 0) reads as null; a map's integer key as its text.
        assert_eq!(read(&[0xd4, 0x00, 0x00]).unwrap().0, Value::Null);
        assert_eq!(read(&[0x81, 0x07, 0xc3]).unwrap().0, json!({"7": true}));
        // A map whose key is a map whose key is a map...: refused, not
        // stringified level by level.
        let mut nested = vec![0x81u8; 100];
        nested.extend([0x80, 0xc0]);
        assert!(read(&nested).is_err());
    }
}
