//! The Socket.IO decoder of one connection (`hub::socketio::Decoder`),
//! protocols v5 and v4: a sequence of Engine.IO messages, text and binary,
//! so binary packets wait for their attachments and are reassembled.
//!
//! Input: `<mode byte><message>[0xFF<message>]...`; mode bit 0 picks v4 or
//! v5, bits 1-2 the attachment limit (0, 1, 10 or 64, the server's
//! default). A message that starts with 0x00 is a binary message (the rest
//! of it), anything else a text message (skipped unless UTF-8, as the
//! Engine.IO layer only hands over UTF-8 text). Decoding stops at the
//! first error, where the server closes the connection.
//!
//! Checks: no panic; a complete packet has exactly its announced
//! attachments, within the limit, and every placeholder in it names one;
//! and the packet, encoded again (`encode_packet`, then its attachments),
//! decodes to the same packet; and the JSON it refuses is the JSON a parse
//! into a `Value` refuses (it checks arguments without building values).
#![no_main]

use bytes::Bytes;
use hub::socketio::packet::placeholder_num;
use hub::socketio::{encode_packet, DecodeError, Decoder, Packet, PacketType, Protocol};
use hub_fuzz::{take_byte, through_json_text_opt};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const MAX_ATTACHMENTS: [usize; 4] = [0, 1, 10, 64];

/// Every `{"_placeholder":true,"num":N}` in `v` names an attachment.
fn check_placeholders(v: &Value, attachments: usize) {
    if let Some(num) = placeholder_num(v) {
        assert!(num < attachments, "placeholder {num} of {attachments}");
    }
    match v {
        Value::Array(items) => items
            .iter()
            .for_each(|x| check_placeholders(x, attachments)),
        Value::Object(map) => map
            .values()
            .for_each(|x| check_placeholders(x, attachments)),
        _ => {}
    }
}

fn check_packet(packet: &Packet, protocol: Protocol, max: usize) {
    let binary = matches!(packet.kind, PacketType::BinaryEvent | PacketType::BinaryAck);
    assert!(binary || packet.attachments.is_empty());
    assert!(packet.attachments.len() <= max);
    assert!(packet.nsp.starts_with('/'));
    assert!(packet.query.is_none() || protocol == Protocol::V4);
    if binary {
        if let Some(data) = &packet.data {
            check_placeholders(data, packet.attachments.len());
        }
    }
    let _ = packet.event_name();

    let mut text = String::new();
    encode_packet(packet, &mut text);
    let mut decoder = Decoder::new(protocol, max);
    let mut again = decoder
        .decode_text(&text)
        .expect("an encoded packet decodes");
    for attachment in &packet.attachments {
        assert!(again.is_none(), "{text:?} complete before its attachments");
        again = decoder
            .decode_binary(attachment.clone())
            .expect("its attachments follow");
    }
    let again = again.expect("complete after its attachments");
    // The data as serde_json reads it back, floats included (see through_json_text).
    let expected = Packet {
        data: through_json_text_opt(packet.data.as_ref()),
        ..packet.clone()
    };
    assert_eq!(again, expected, "{text:?}");
}

/// The decoder keeps arguments as text (checked without building values):
/// it must refuse exactly the JSON a parse into a `Value` refuses. Checked
/// where the payload surely starts at the first `[`: before it only the
/// type, the attachment count and its `-` (binary types: exactly one `-`)
/// and the ack id, no namespace.
fn check_json_verdict(text: &str, decoded: &Result<Option<Packet>, DecodeError>) {
    let Some(start) = text.find('[') else {
        return;
    };
    let head = &text[..start];
    let dashes = match head.as_bytes().first() {
        Some(b'2' | b'3') => 0,
        Some(b'5' | b'6') => 1,
        _ => return,
    };
    if !head.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        || head.bytes().filter(|&b| b == b'-').count() != dashes
    {
        return;
    }
    let parses = serde_json::from_str::<Value>(&text[start..]).is_ok();
    match decoded {
        Err(DecodeError::InvalidJson(_)) => assert!(!parses, "{text:?} refused, but parses"),
        // Refused for something found after the JSON was read, or accepted.
        Err(_) | Ok(_) => {
            if !matches!(
                decoded,
                Err(DecodeError::InvalidAttachmentCount
                    | DecodeError::TooManyAttachments { .. }
                    | DecodeError::UnexpectedAttachmentCount(_)
                    | DecodeError::AckIdOverflow
                    | DecodeError::UnexpectedText)
            ) {
                assert!(parses, "{text:?} accepted as JSON, but does not parse");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (mode, data) = take_byte(data);
    let protocol = if mode & 1 == 0 {
        Protocol::V5
    } else {
        Protocol::V4
    };
    let max = MAX_ATTACHMENTS[usize::from((mode >> 1) & 3)];

    let mut decoder = Decoder::new(protocol, max);
    for message in data.split(|&b| b == 0xff) {
        let decoded = match message.split_first() {
            Some((0, binary)) => decoder.decode_binary(Bytes::copy_from_slice(binary)),
            _ => match std::str::from_utf8(message) {
                Ok(text) => {
                    let decoded = decoder.decode_text(text);
                    check_json_verdict(text, &decoded);
                    decoded
                }
                Err(_) => continue,
            },
        };
        match decoded {
            Ok(Some(packet)) => {
                assert!(!decoder.is_waiting());
                check_packet(&packet, protocol, max);
            }
            Ok(None) => assert!(decoder.is_waiting()),
            Err(_) => return,
        }
    }
});
