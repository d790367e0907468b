//! The Socket.IO encoder against the decoder, from structured packets
//! (`arbitrary`): every valid packet, of every type, in protocols v4 and
//! v5, with namespaces, ack ids, any JSON and binary attachments, encoded
//! (`encode_packet` then the attachments) decodes to itself.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use hub::socketio::packet::placeholder;
use hub::socketio::{encode_packet, is_reserved_event, Decoder, Packet, PacketType, Protocol};
use hub_fuzz::through_json_text_opt;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value};

/// Attachments the decoder accepts here (the server's default limit).
const MAX_ATTACHMENTS: usize = 64;
/// Deeper JSON becomes `null`: serde_json refuses more than 128 levels.
const MAX_DEPTH: usize = 32;

#[derive(Arbitrary, Debug)]
enum AnyJson {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Array(Vec<AnyJson>),
    Object(Vec<(String, AnyJson)>),
}

impl AnyJson {
    /// The value; never a placeholder-shaped object, which in a binary
    /// packet would be a (malformed) placeholder.
    fn to_value(&self, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        match self {
            AnyJson::Null => Value::Null,
            AnyJson::Bool(b) => Value::Bool(*b),
            AnyJson::Int(i) => Value::from(*i),
            AnyJson::UInt(u) => Value::from(*u),
            AnyJson::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            AnyJson::Str(s) => Value::String(s.clone()),
            AnyJson::Array(items) => {
                Value::Array(items.iter().map(|x| x.to_value(depth + 1)).collect())
            }
            AnyJson::Object(entries) => object(entries, depth),
        }
    }
}

/// An object of `entries`, never placeholder-shaped (see [`AnyJson::to_value`]).
fn object(entries: &[(String, AnyJson)], depth: usize) -> Value {
    let mut map = Map::new();
    for (key, value) in entries {
        let key = if key == "_placeholder" {
            "placeholder".to_string()
        } else {
            key.clone()
        };
        map.insert(key, value.to_value(depth + 1));
    }
    Value::Object(map)
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Kind {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

#[derive(Arbitrary, Debug)]
struct Input {
    v4: bool,
    kind: Kind,
    /// The namespace after its `/`.
    nsp: String,
    /// A v4 CONNECT's query.
    query: Option<String>,
    id: Option<u64>,
    /// An event name: a string, else this number.
    name: Result<String, i64>,
    /// The payload: an object for CONNECT/CONNECT_ERROR, the arguments for
    /// events and acks.
    object: Vec<(String, AnyJson)>,
    args: Vec<AnyJson>,
    with_data: bool,
    attachments: Vec<Vec<u8>>,
    /// Where each attachment's placeholder goes among the arguments.
    positions: Vec<u8>,
}

fn build(input: &Input) -> (Packet, Protocol) {
    let protocol = if input.v4 { Protocol::V4 } else { Protocol::V5 };
    // `,` ends the namespace; in v4 `?` starts its query.
    let nsp: String = input
        .nsp
        .chars()
        .filter(|&c| c != ',' && !(c == '?' && input.v4))
        .collect();
    let nsp = format!("/{nsp}");
    let make_object = || object(&input.object, 1);
    let mut args: Vec<Value> = input.args.iter().map(|a| a.to_value(1)).collect();
    let mut attachments = Vec::new();
    let (kind, data, id, query) = match input.kind {
        Kind::Connect => {
            let query = input
                .query
                .as_ref()
                .filter(|_| input.v4)
                .map(|q| q.replace(',', ""));
            let data = input.with_data.then(make_object);
            (PacketType::Connect, data, input.id, query)
        }
        Kind::Disconnect => (PacketType::Disconnect, None, input.id, None),
        Kind::ConnectError => {
            let data = if input.with_data {
                make_object()
            } else {
                Value::String(input.nsp.clone())
            };
            (PacketType::ConnectError, Some(data), input.id, None)
        }
        Kind::Event | Kind::BinaryEvent => {
            let name = match &input.name {
                Ok(name) if is_reserved_event(name) => Value::String(format!("{name}!")),
                Ok(name) => Value::String(name.clone()),
                Err(n) => Value::from(*n),
            };
            args.insert(0, name);
            let kind = match input.kind {
                Kind::Event => PacketType::Event,
                _ => PacketType::BinaryEvent,
            };
            (kind, None, input.id, None)
        }
        Kind::Ack => (PacketType::Ack, None, Some(input.id.unwrap_or(0)), None),
        Kind::BinaryAck => (
            PacketType::BinaryAck,
            None,
            Some(input.id.unwrap_or(0)),
            None,
        ),
    };
    let data = if matches!(
        kind,
        PacketType::Event | PacketType::BinaryEvent | PacketType::Ack | PacketType::BinaryAck
    ) {
        if matches!(kind, PacketType::BinaryEvent | PacketType::BinaryAck) {
            for (num, bytes) in input.attachments.iter().take(MAX_ATTACHMENTS).enumerate() {
                attachments.push(Bytes::from(bytes.clone()));
                // After the event name, if any.
                let first = usize::from(kind == PacketType::BinaryEvent);
                let at = input.positions.get(num).map_or(args.len(), |&p| {
                    first + usize::from(p) % (args.len() + 1 - first)
                });
                args.insert(at, placeholder(num));
            }
        }
        Some(Value::Array(args))
    } else {
        data
    };
    let packet = Packet {
        kind,
        nsp,
        query,
        id,
        data,
        attachments,
    };
    (packet, protocol)
}

fuzz_target!(|input: Input| {
    let (packet, protocol) = build(&input);
    let mut text = String::new();
    encode_packet(&packet, &mut text);

    let mut decoder = Decoder::new(protocol, MAX_ATTACHMENTS);
    let mut decoded = decoder
        .decode_text(&text)
        .unwrap_or_else(|e| panic!("{text:?} does not decode: {e}"));
    for attachment in &packet.attachments {
        assert!(
            decoded.is_none(),
            "{text:?} complete before its attachments"
        );
        decoded = decoder
            .decode_binary(attachment.clone())
            .expect("its attachments follow");
    }
    let decoded = decoded.expect("complete after its attachments");
    // The data as serde_json reads it back, floats included (see through_json_text).
    let expected = Packet {
        data: through_json_text_opt(packet.data.as_ref()),
        ..packet
    };
    assert_eq!(decoded, expected, "{text:?}");
});
