//! Engine.IO encoders against decoders, from structured packets
//! (`arbitrary`): for any packets the server may send, decode(encode(x))
//! is x, for every way the server encodes them: a WebSocket frame
//! (`encode_ws`), polling text (`to_text`), and a GET payload
//! (`encode_payload`) in v4 text, v3 text, v3 base64 and v3 XHR2 binary.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use hub::engineio::payload::{decode_payload, encode_payload, BINARY_CONTENT_TYPE};
use hub::engineio::{Data, Packet, ProtocolVersion, WsFrame};
use libfuzzer_sys::fuzz_target;

/// A packet the server may send. Strings never hold the v4 record
/// separator `\x1e`, which no packet can carry in a v4 payload.
#[derive(Arbitrary, Debug)]
enum AnyPacket {
    Open(String),
    Close,
    Ping(String),
    Pong(String),
    Text(String),
    Binary(Vec<u8>),
    Upgrade,
    Noop,
}

impl AnyPacket {
    fn into_packet(self) -> Packet {
        let clean = |s: String| s.replace('\u{1e}', "");
        match self {
            AnyPacket::Open(s) => Packet::Open(clean(s)),
            AnyPacket::Close => Packet::Close,
            AnyPacket::Ping(s) => Packet::Ping(clean(s)),
            AnyPacket::Pong(s) => Packet::Pong(clean(s)),
            AnyPacket::Text(s) => Packet::Message(Data::Text(clean(s).into())),
            AnyPacket::Binary(b) => Packet::Message(Data::Binary(Bytes::from(b))),
            AnyPacket::Upgrade => Packet::Upgrade,
            AnyPacket::Noop => Packet::Noop,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    v3: bool,
    supports_binary: bool,
    packets: Vec<AnyPacket>,
}

fuzz_target!(|input: Input| {
    let version = if input.v3 {
        ProtocolVersion::V3
    } else {
        ProtocolVersion::V4
    };
    let packets: Vec<Packet> = input
        .packets
        .into_iter()
        .map(AnyPacket::into_packet)
        .collect();

    for packet in &packets {
        let again = match packet.encode_ws(version) {
            WsFrame::Text(text) => Packet::decode_text(version, &text),
            WsFrame::Binary(bytes) => Packet::decode_ws_binary(version, bytes),
        };
        assert_eq!(again.as_ref(), Ok(packet));
        let text = packet.to_text(version);
        assert_eq!(
            Packet::decode_text(version, &text).as_ref(),
            Ok(packet),
            "{text:?}"
        );
    }

    // An empty v4 payload is an empty body, which no client POSTs.
    if version == ProtocolVersion::V4 && packets.is_empty() {
        return;
    }
    let encoded = encode_payload(version, &packets, input.supports_binary);
    let binary = encoded.content_type == BINARY_CONTENT_TYPE;
    assert_eq!(
        decode_payload(version, &encoded.body, binary).as_ref(),
        Ok(&packets),
        "{:?}",
        String::from_utf8_lossy(&encoded.body)
    );
});
