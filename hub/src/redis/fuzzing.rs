//! Entry points for the fuzz target `redis_message` (`fuzz/`): public only
//! for it. Each panics when a property of the codec does not hold.

use super::message::{Dialect, Inbound, Outbound};
use super::msgpack;
use super::wire::Channels;

/// Decode `payload` heard on `channel` in a dialect (`mode`: 0 classic,
/// 1 sharded static, 2 sharded dynamic). A broadcast decoded, written back
/// by hub and decoded again is the same broadcast.
pub fn message_roundtrip(mode: u8, channel: &str, payload: &[u8]) {
    let dialect = match mode % 3 {
        0 => Dialect::Classic,
        1 => Dialect::Sharded { dynamic: false },
        _ => Dialect::Sharded { dynamic: true },
    };
    let channels = Channels {
        prefix: "socket.io".into(),
    };
    let Ok(Inbound::Broadcast(first)) = dialect.decode(&channels, "me", channel, payload) else {
        return;
    };
    let (event, args) = match first.event.data.split_first() {
        Some((serde_json::Value::String(event), args)) => (event.as_str(), args),
        _ => panic!("a decoded broadcast has an event name"),
    };
    let publish = dialect.encode(
        &channels,
        "other",
        &first.event.nsp,
        Outbound::Broadcast {
            event,
            args,
            attachments: &first.event.attachments,
            target: &first.target,
            flags: &first.flags,
        },
    );
    let again = match dialect.decode(&channels, "me", &publish.channel, &publish.payload) {
        Ok(Inbound::Broadcast(again)) => again,
        other => panic!("hub's own broadcast decodes as {other:?}"),
    };
    assert_eq!(again.event.nsp, first.event.nsp);
    assert_eq!(
        normalize(serde_json::Value::Array(again.event.data.clone())),
        normalize(serde_json::Value::Array(first.event.data.clone()))
    );
    assert_eq!(again.event.attachments, first.event.attachments);
    assert_eq!(again.target, first.target);
    assert_eq!(again.flags.volatile, first.flags.volatile);
    assert_eq!(again.flags.compress, first.flags.compress);
}

/// msgpack read, written back, read again: the same value and attachments.
pub fn msgpack_roundtrip(payload: &[u8]) {
    let Ok((value, attachments)) = msgpack::read(payload) else {
        return;
    };
    // A `bin` may have been lost to a later duplicate key: keep what is referenced.
    let mut values = [value];
    let attachments = msgpack::keep_referenced(&mut values, attachments);
    let [value] = values;
    let mut out = Vec::new();
    msgpack::write_value(&mut out, &value, &attachments);
    let (again, again_attachments) = msgpack::read(&out).expect("hub's msgpack reads back");
    assert_eq!(normalize(again), normalize(value));
    assert_eq!(again_attachments.len(), attachments.len());
}

/// Whole floats as integers, as notepack writes them.
fn normalize(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                if f >= 0.0 {
                    Value::from(f as u64)
                } else {
                    Value::from(f as i64)
                }
            }
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, normalize(v))).collect())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fixtures_hold_the_fuzz_properties() {
        for f in crate::redis::recorded::fixtures() {
            let mode = if f.sharded() { 2 } else { 0 };
            super::message_roundtrip(mode, &f.channel, &f.bytes);
            super::msgpack_roundtrip(&f.bytes);
        }
    }
}
