//! One Engine.IO packet as a WebSocket message carries it:
//! `Packet::decode_text` (text frames, UTF-8 by then) and
//! `Packet::decode_ws_binary` (binary frames), protocols v3 and v4.
//!
//! Input: `<mode byte><frame payload>`; mode bit 0 picks v3 or v4, bit 1
//! a binary frame instead of a text one.
//!
//! Checks: no panic; a decoded packet, encoded again for a WebSocket frame
//! (`encode_ws`) and as polling text (`to_text`, binary as base64),
//! decodes to the same packet.
#![no_main]

use bytes::Bytes;
use hub::engineio::{Packet, ProtocolVersion, WsFrame};
use hub_fuzz::take_byte;
use libfuzzer_sys::fuzz_target;

fn decode_frame(version: ProtocolVersion, frame: WsFrame) -> Packet {
    let decoded = match frame {
        WsFrame::Text(text) => Packet::decode_text(version, &text),
        WsFrame::Binary(bytes) => Packet::decode_ws_binary(version, bytes),
    };
    decoded.expect("an encoded packet decodes")
}

fuzz_target!(|data: &[u8]| {
    let (mode, data) = take_byte(data);
    let version = if mode & 1 == 0 {
        ProtocolVersion::V4
    } else {
        ProtocolVersion::V3
    };
    let decoded = if mode & 2 == 0 {
        // The WebSocket codec only hands over valid UTF-8 text.
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        Packet::decode_text(version, text)
    } else {
        Packet::decode_ws_binary(version, Bytes::copy_from_slice(data))
    };
    let Ok(packet) = decoded else {
        return;
    };

    assert_eq!(decode_frame(version, packet.encode_ws(version)), packet);
    let text = packet.to_text(version);
    assert_eq!(
        Packet::decode_text(version, &text).as_ref(),
        Ok(&packet),
        "{text:?}"
    );
});
