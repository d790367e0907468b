//! WebSocket frames from a client (`hub::ws::codec::Decoder`), decoded from
//! one buffer and again fed in arbitrary pieces as a connection reads them
//! (`shard/websocket.rs` keeps a `BytesMut` and calls `decode` in a loop).
//!
//! Input: `<max payload byte><split byte><bytes from the client>`; the max
//! payload byte's high bit decodes as after permessage-deflate was agreed
//! (RSV1 messages inflated within the same maximum).
//!
//! Checks: no panic; no message over the maximum payload; the messages and
//! the error (if any) are the same whatever the split; every text is UTF-8
//! (an ASCII one skipped the check); and every message decoded, encoded
//! again by the codec's encoders (masked as a client would), decodes to
//! itself.
#![no_main]

use bytes::BytesMut;
use hub::ws::codec::{self, Decoder, Message, WsError};
use hub_fuzz::{mask_server_frame, pieces, take_byte};
use libfuzzer_sys::fuzz_target;

/// Engine.IO's `maxPayload` as configured: tiny (so the limit is reached
/// by small inputs), around the 7-bit and 16-bit length boundaries, and
/// the default.
fn max_payload(selector: u8) -> usize {
    [0, 1, 16, 125, 126, 1000, 65_536, 1_000_000][usize::from(selector % 8)]
}

#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<Message>,
    error: Option<WsError>,
    /// Bytes of an unfinished frame left at the end (when no error).
    left: usize,
}

fn run(reads: &[&[u8]], max: usize, inflate: bool) -> Outcome {
    let mut decoder = if inflate {
        Decoder::with_inflate(max)
    } else {
        Decoder::new(max)
    };
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(error) => {
                    return Outcome {
                        messages,
                        error: Some(error),
                        left: 0,
                    }
                }
            }
        }
    }
    Outcome {
        messages,
        error: None,
        left: buf.len(),
    }
}

/// The message as one masked client frame, built with the codec's own
/// encoders; `None` for an empty close, which they cannot write.
fn encode(message: &Message, key: [u8; 4]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match message {
        Message::Text(text) => codec::encode_text(text.as_bytes(), &mut out),
        Message::Binary(bytes) => codec::encode_binary(bytes, &mut out),
        Message::Ping(bytes) => codec::encode_ping(bytes, &mut out),
        Message::Pong(bytes) => codec::encode_pong(bytes, &mut out),
        Message::Close(Some((code, reason))) => codec::encode_close(*code, reason, &mut out),
        Message::Close(None) => return None,
    }
    Some(mask_server_frame(&out, key))
}

fuzz_target!(|data: &[u8]| {
    let (max_selector, data) = take_byte(data);
    let (split_seed, data) = take_byte(data);
    let max = max_payload(max_selector);
    let inflate = max_selector & 0x80 != 0;

    let whole = run(&[data], max, inflate);
    let split = run(&pieces(data, split_seed), max, inflate);
    assert_eq!(whole, split);

    let key = [split_seed, max_selector, 0x5a, 0xa5];
    for message in &whole.messages {
        match message {
            Message::Text(text) => {
                assert!(text.len() <= max);
                // A text the codec found all ASCII skipped the UTF-8
                // check: it must really be UTF-8.
                assert!(std::str::from_utf8(text.as_bytes()).is_ok());
            }
            Message::Binary(bytes) => assert!(bytes.len() <= max),
            Message::Ping(bytes) | Message::Pong(bytes) => assert!(bytes.len() <= 125),
            Message::Close(Some((_, reason))) => assert!(reason.len() <= 123),
            Message::Close(None) => {}
        }
        let Some(frame) = encode(message, key) else {
            continue;
        };
        let mut buf = BytesMut::from(&frame[..]);
        let again = Decoder::new(max).decode(&mut buf);
        assert_eq!(again.as_ref(), Ok(&Some(message.clone())), "{frame:?}");
        assert!(buf.is_empty());
    }
});
