//! Engine.IO polling POST bodies (`hub::engineio::payload::decode_payload`):
//! v4 text (`\x1e`-separated, binary as `b<base64>`), v3 text
//! (`<length>:<packet>` with UTF-16 lengths, binary as `b4<base64>`) and v3
//! XHR2 binary bodies (`application/octet-stream`).
//!
//! Input: `<mode byte><body>`; mode bit 0 picks v3 or v4, bit 1 a binary
//! (octet-stream) body, bit 2 whether the session answers in base64
//! (`b64=1`) for the re-encoding.
//!
//! Checks: no panic; the packets decoded, encoded again as a GET response
//! (`encode_payload`) and decoded as the body of its content type, are the
//! same packets.
#![no_main]

use hub::engineio::payload::{decode_payload, encode_payload, BINARY_CONTENT_TYPE};
use hub::engineio::ProtocolVersion;
use hub_fuzz::take_byte;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mode, body) = take_byte(data);
    let version = if mode & 1 == 0 {
        ProtocolVersion::V4
    } else {
        ProtocolVersion::V3
    };
    let binary_body = mode & 2 != 0;
    let supports_binary = mode & 4 == 0;

    let Ok(packets) = decode_payload(version, body, binary_body) else {
        return;
    };
    // A v4 body never decodes to nothing (an empty body is an error).
    assert!(version == ProtocolVersion::V3 || !packets.is_empty());

    let encoded = encode_payload(version, &packets, supports_binary);
    let binary = encoded.content_type == BINARY_CONTENT_TYPE;
    assert!(!binary || (version == ProtocolVersion::V3 && supports_binary));
    if encoded.body.is_empty() {
        // Only v4 with no packet, which cannot happen (asserted above).
        unreachable!("empty payload for {packets:?}");
    }
    assert_eq!(
        decode_payload(version, &encoded.body, binary).as_ref(),
        Ok(&packets),
        "{:?}",
        String::from_utf8_lossy(&encoded.body)
    );
});
