//! MessagePack as Node's `notepack.io` writes and reads it, between
//! Socket.IO data (JSON values whose binary parts are placeholders
//! `{"_placeholder":true,"num":N}` naming attachments) and Node's objects,
//! where a `Buffer` sits in place as a msgpack `bin`.
//!
//! notepack writes a JavaScript number as the smallest integer format that
//! holds it when it is a whole number, else as a float64; hub does the
//! same for a JSON number (so `1.0` from a client is `1`, as it is in
//! JavaScript). `undefined` (an `ext` of type 0) reads as null. `rmp`
//! writes the markers; `rmpv` reads, with a depth limit.

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
    let mut rest = bytes;
    let value = rmpv::decode::read_value_with_max_depth(&mut rest, MAX_DEPTH)
        .map_err(|e| MsgpackError(e.to_string()))?;
    if !rest.is_empty() {
        return Err(MsgpackError(format!(
            "{} bytes after the value",
            rest.len()
        )));
    }
    let mut attachments = Vec::new();
    let value = to_json(value, &mut attachments);
    Ok((value, attachments))
}

fn to_json(value: rmpv::Value, attachments: &mut Vec<Bytes>) -> Value {
    use rmpv::Value as M;
    match value {
        M::Nil | M::Ext(..) => Value::Null,
        M::Boolean(b) => Value::Bool(b),
        M::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(i)) => Value::from(i),
            (None, None) => Value::Null,
        },
        M::F32(f) => Number::from_f64(f64::from(f)).map_or(Value::Null, Value::Number),
        M::F64(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        M::String(s) => Value::String(lossy(s)),
        M::Binary(b) => {
            let num = attachments.len();
            attachments.push(Bytes::from(b));
            serde_json::json!({"_placeholder": true, "num": num})
        }
        M::Array(items) => {
            Value::Array(items.into_iter().map(|v| to_json(v, attachments)).collect())
        }
        M::Map(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (key, item) in entries {
                let key = match key {
                    M::String(s) => lossy(s),
                    M::Integer(i) => i.to_string(),
                    other => other.to_string(),
                };
                map.insert(key, to_json(item, attachments));
            }
            Value::Object(map)
        }
    }
}

/// A string as JavaScript reads invalid UTF-8: with replacement characters.
fn lossy(s: rmpv::Utf8String) -> String {
    match String::from_utf8(s.into_bytes()) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
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
    }
}
