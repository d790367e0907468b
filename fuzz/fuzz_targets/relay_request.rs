//! The relay's requests (`hub::relay::request::rooms` and `publish`), over
//! the arguments of a client's event: any JSON, with binary attachments.
//!
//! Input: `<attachments byte><JSON>`; the JSON is the event's argument
//! list (an array; any other value is one argument), and the low two bits
//! of the first byte say how many attachments came with it.
//!
//! Checks: no panic; what is accepted is within the protocol's bounds: at
//! least one room, at most `MAX_ROOMS`, each non-empty and at most
//! `MAX_ROOM_BYTES`; a publish names a non-empty, non-reserved event and
//! keeps the request's attachments.
#![no_main]

use bytes::Bytes;
use hub::relay::request::{publish, rooms, MAX_ROOMS, MAX_ROOM_BYTES};
use hub::server::Args;
use hub::socketio::is_reserved_event;
use hub_fuzz::take_byte;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn check_rooms(rooms: &[String]) {
    assert!(!rooms.is_empty() && rooms.len() <= MAX_ROOMS);
    for room in rooms {
        assert!(!room.is_empty() && room.len() <= MAX_ROOM_BYTES);
    }
}

fuzz_target!(|data: &[u8]| {
    let (mode, data) = take_byte(data);
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let values = match value {
        Value::Array(values) => values,
        other => vec![other],
    };
    let attachments: Vec<Bytes> = (0..mode & 3).map(|i| Bytes::from(vec![i; 3])).collect();
    let args = Args::from_parts(values, attachments);

    if let Ok(rooms) = rooms(args.get(0)) {
        check_rooms(&rooms);
    }
    if let Ok(request) = publish(&args) {
        check_rooms(&request.to);
        assert!(!request.event.is_empty());
        assert!(!is_reserved_event(&request.event));
        assert_eq!(request.data.len(), 1);
        assert_eq!(request.data.attachments(), args.attachments());
    }
});
