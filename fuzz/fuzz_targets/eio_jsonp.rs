//! JSONP polling POST bodies (`hub::engineio::jsonp::unwrap_jsonp_post`):
//! a form body `d=<payload>` whose newlines the client escaped, then the
//! payload decoded as the server does (`shard/polling.rs`).
//!
//! Input: `<mode byte><bytes>`. Mode bit 0 clear: the bytes are a POST body,
//! unwrapped then decoded as a v3 (bit 1 clear) or v4 text payload. Mode
//! bit 0 set: the bytes are a payload (UTF-8) that the client escapes and
//! form-encodes as engine.io-client 3.x does; unwrapping must give it back.
//!
//! Checks: no panic; the unwrapped text is at most three times the body
//! (only invalid UTF-8 grows, each byte into U+FFFD); and the client's
//! encoding round-trips, for every payload without a backslash right
//! before a newline (which the protocol itself cannot carry: the client
//! and the reference server turn `\<LF>` into `\n`).
#![no_main]

use hub::engineio::jsonp::unwrap_jsonp_post;
use hub::engineio::payload::decode_payload;
use hub::engineio::ProtocolVersion;
use hub_fuzz::take_byte;
use libfuzzer_sys::fuzz_target;

/// What engine.io-client 3.x does before it puts the payload in the form's
/// textarea: `data.replace(/\\n/g, '\\\n').replace(/\n/g, '\\n')`, then the
/// browser form-encodes the field.
fn client_body(payload: &str) -> String {
    let escaped = payload.replace("\\n", "\\\n").replace('\n', "\\n");
    form_urlencoded::Serializer::new(String::new())
        .append_pair("d", &escaped)
        .finish()
}

fuzz_target!(|data: &[u8]| {
    let (mode, data) = take_byte(data);
    if mode & 1 == 0 {
        let Ok(text) = unwrap_jsonp_post(data) else {
            return;
        };
        assert!(text.len() <= 3 * data.len());
        let version = if mode & 2 == 0 {
            ProtocolVersion::V3
        } else {
            ProtocolVersion::V4
        };
        let _ = decode_payload(version, text.as_bytes(), false);
    } else {
        let Ok(payload) = std::str::from_utf8(data) else {
            return;
        };
        if payload.contains("\\\n") {
            return;
        }
        let body = client_body(payload);
        assert_eq!(
            unwrap_jsonp_post(body.as_bytes()).as_deref(),
            Ok(payload),
            "{body:?}"
        );
    }
});
