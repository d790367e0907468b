//! Messages heard from Redis in a cluster (`hub::redis`): Node's adapter
//! in classic and sharded dialects, the emitter, and msgpack as notepack
//! writes it (public only for this target: `hub::redis::fuzzing`).
//!
//! Input: `<mode><channel><payload>`: mode 0 classic, 1 sharded static, 2
//! sharded dynamic (mod 3); channel picks one of the channels below (mod 6).
//!
//! Checks: no panic, no hang; a decoded broadcast written back by hub
//! decodes to the same broadcast; msgpack read, written and read again is
//! the same value.
#![no_main]

use hub::redis::fuzzing::{message_roundtrip, msgpack_roundtrip};
use libfuzzer_sys::fuzz_target;

const CHANNELS: [&str; 6] = [
    "socket.io#/#",
    "socket.io#/#room#",
    "socket.io#/chat#",
    "socket.io-request#/#",
    "socket.io-response#/#",
    "socket.io#/#me#",
];

fuzz_target!(|data: &[u8]| {
    let [mode, channel, payload @ ..] = data else {
        return;
    };
    message_roundtrip(*mode, CHANNELS[*channel as usize % CHANNELS.len()], payload);
    msgpack_roundtrip(payload);
});
