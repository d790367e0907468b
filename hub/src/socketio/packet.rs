//! Socket.IO packet model: types, the decoded packet, reserved event names
//! and the binary placeholder objects.

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::raw::RawArray;

/// Socket.IO protocol revision. The Engine.IO revision decides it: a client
/// on `EIO=3` speaks V4, one on `EIO=4` speaks V5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Socket.IO v1/v2 clients over Engine.IO v3: CONNECT auth travels as a
    /// query string in the namespace (`40/admin?token=1,`).
    V4,
    /// Socket.IO v3/v4 clients over Engine.IO v4: CONNECT auth is a JSON object.
    V5,
}

/// Packet types, numbered as on the wire (the same in V4 and V5; V5 only
/// renamed ERROR to CONNECT_ERROR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketType {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

impl PacketType {
    /// The type for an ASCII digit byte, `None` for anything else.
    pub(crate) fn from_digit(b: u8) -> Option<PacketType> {
        Some(match b {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    /// The digit written on the wire, as text.
    pub(crate) fn as_str(self) -> &'static str {
        const DIGITS: [&str; 7] = ["0", "1", "2", "3", "4", "5", "6"];
        DIGITS[self as usize]
    }

    /// BinaryEvent and BinaryAck: the types that carry an attachment count.
    pub(crate) fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }
}

/// One Socket.IO packet.
///
/// Decoded binary packets keep their BinaryEvent/BinaryAck kind (the
/// reference parser turns them into Event/Ack): the kind tells the
/// application that `data` holds placeholders to resolve against
/// `attachments`. Placeholder-shaped objects in a non-binary packet are
/// plain data, as in the reference.
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    pub kind: PacketType,
    /// `"/"` when the packet names none.
    pub nsp: String,
    /// Protocol::V4 CONNECT only: `"token=1"` from `40/admin?token=1,`
    /// (still percent-encoded); `None` otherwise.
    pub query: Option<String>,
    /// The ack id.
    pub id: Option<u64>,
    /// The JSON payload, binary placeholders left in place.
    pub data: Option<Value>,
    /// Binary attachments, index = placeholder num. Filled for complete
    /// decoded packets; on encoding only its length is used (the count).
    pub attachments: Vec<Bytes>,
}

/// One Socket.IO packet as the server decodes it: the arguments of an
/// event or an ack stay the JSON text they came in ([`Payload::Array`]).
/// [`RawPacket::into_packet`] gives the [`Packet`] with values.
#[derive(Clone, Debug)]
pub struct RawPacket {
    /// As on the wire (binary types kept, as in [`Packet`]).
    pub kind: PacketType,
    /// `"/"` (not allocated) when the packet names none.
    pub nsp: Cow<'static, str>,
    /// As [`Packet::query`].
    pub query: Option<String>,
    /// The ack id.
    pub id: Option<u64>,
    /// The JSON after the header.
    pub payload: Payload,
    /// Binary attachments, index = placeholder num.
    pub attachments: Vec<Bytes>,
}

/// A decoded packet's JSON.
#[derive(Clone, Debug)]
pub enum Payload {
    /// No JSON (CONNECT without auth, DISCONNECT).
    None,
    /// CONNECT's and CONNECT_ERROR's payload.
    Value(Value),
    /// EVENT's and ACK's array (for an event, its name first).
    Array(RawArray),
}

impl RawPacket {
    /// The packet with its JSON parsed.
    pub fn into_packet(self) -> Packet {
        Packet {
            kind: self.kind,
            nsp: self.nsp.into_owned(),
            query: self.query,
            id: self.id,
            data: match self.payload {
                Payload::None => None,
                Payload::Value(value) => Some(value),
                Payload::Array(array) => Some(Value::Array(array.values())),
            },
            attachments: self.attachments,
        }
    }
}

/// Event names an application may not use: the reference implementations
/// give them a local meaning, so a client sending one is misbehaving.
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Whether `name` is one of [`RESERVED_EVENTS`].
pub fn is_reserved_event(name: &str) -> bool {
    RESERVED_EVENTS.contains(&name)
}

impl Packet {
    /// The event name: the first element of the data array if it is a string.
    pub fn event_name(&self) -> Option<&str> {
        match &self.data {
            Some(Value::Array(items)) => items.first().and_then(Value::as_str),
            _ => None,
        }
    }
}

/// The placeholder object that stands for attachment `num` in `data`.
pub fn placeholder(num: usize) -> Value {
    let mut m = Map::with_capacity(2);
    m.insert("_placeholder".into(), Value::Bool(true));
    m.insert("num".into(), Value::from(num));
    Value::Object(m)
}

/// The attachment index if `v` is exactly `{"_placeholder":true,"num":N}`
/// with N a non-negative integer; `None` for anything else.
pub fn placeholder_num(v: &Value) -> Option<usize> {
    let m = v.as_object()?;
    if m.len() != 2 || m.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    m.get("num")?.as_u64().and_then(|n| usize::try_from(n).ok())
}

/// Whether `v` claims to be a placeholder (`"_placeholder": true`), the test
/// the reference uses before it checks `num`. A claim that
/// [`placeholder_num`] rejects is a malformed placeholder.
pub(crate) fn claims_placeholder(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.get("_placeholder") == Some(&Value::Bool(true)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn type_digits_round_trip() {
        for d in b'0'..=b'6' {
            let t = PacketType::from_digit(d).unwrap();
            assert_eq!(t.as_str().as_bytes(), [d]);
            assert_eq!(t as u8, d - b'0');
        }
        for d in [b'7', b'8', b'9', b'a', b'-', b'/', b' ', 0, 0xff] {
            assert_eq!(PacketType::from_digit(d), None);
        }
    }

    #[test]
    fn binary_types() {
        assert!(PacketType::BinaryEvent.is_binary());
        assert!(PacketType::BinaryAck.is_binary());
        for t in [
            PacketType::Connect,
            PacketType::Disconnect,
            PacketType::Event,
            PacketType::Ack,
            PacketType::ConnectError,
        ] {
            assert!(!t.is_binary());
        }
    }

    #[test]
    fn reserved_events() {
        for name in RESERVED_EVENTS {
            assert!(is_reserved_event(name));
        }
        for name in ["", "message", "Connect", "connect ", "error", "ping"] {
            assert!(!is_reserved_event(name));
        }
    }

    #[test]
    fn event_name() {
        let mut p = Packet {
            kind: PacketType::Event,
            nsp: "/".into(),
            query: None,
            id: None,
            data: None,
            attachments: Vec::new(),
        };
        assert_eq!(p.event_name(), None);
        p.data = Some(json!(["hello", 1]));
        assert_eq!(p.event_name(), Some("hello"));
        p.data = Some(json!([1, "hello"]));
        assert_eq!(p.event_name(), None);
        p.data = Some(json!([]));
        assert_eq!(p.event_name(), None);
        p.data = Some(json!({"0": "hello"}));
        assert_eq!(p.event_name(), None);
        p.data = Some(json!("hello"));
        assert_eq!(p.event_name(), None);
    }

    #[test]
    fn placeholders() {
        assert_eq!(
            placeholder(3).to_string(),
            r#"{"_placeholder":true,"num":3}"#
        );
        assert_eq!(placeholder_num(&placeholder(0)), Some(0));
        assert_eq!(placeholder_num(&placeholder(7)), Some(7));
        assert_eq!(
            placeholder_num(&json!({"num": 1, "_placeholder": true})),
            Some(1)
        );
        for v in [
            json!({"_placeholder": true}),
            json!({"_placeholder": true, "num": -1}),
            json!({"_placeholder": true, "num": 1.5}),
            json!({"_placeholder": true, "num": "1"}),
            json!({"_placeholder": true, "num": null}),
            json!({"_placeholder": "true", "num": 1}),
            json!({"_placeholder": false, "num": 1}),
            json!({"_placeholder": true, "num": 1, "x": 2}),
            json!({"_placeholder": true, "x": 1}),
            json!([true, 1]),
            json!(null),
            json!(1),
        ] {
            assert_eq!(placeholder_num(&v), None, "{v}");
        }
    }

    #[test]
    fn placeholder_claims() {
        assert!(claims_placeholder(&placeholder(0)));
        assert!(claims_placeholder(&json!({"_placeholder": true})));
        assert!(claims_placeholder(
            &json!({"_placeholder": true, "num": 1, "x": 2})
        ));
        assert!(!claims_placeholder(&json!({"_placeholder": 1, "num": 1})));
        assert!(!claims_placeholder(&json!({"num": 1})));
        assert!(!claims_placeholder(&json!([{"_placeholder": true}])));
    }
}
