//! The Engine.IO query string of every polling and WebSocket request
//! (`hub::engineio::query::parse_query`), and the session id in it
//! (`hub::engineio::Sid::parse`).
//!
//! Input: `<mode byte><query string>`; mode bit 0 allows EIO=3.
//!
//! Checks: no panic; the fields kept are bounded (1000, as Node's
//! `querystring`); what was parsed agrees with the fields (`transport`,
//! `EIO`, `sid`); a session id that parses prints back as the same text
//! and names a shard in range.
#![no_main]

use hub::engineio::query::parse_query;
use hub::engineio::{ProtocolVersion, Sid, TransportKind};
use hub_fuzz::take_byte;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mode, data) = take_byte(data);
    // A request target is ASCII after httparse; lossy keeps any text.
    let raw = String::from_utf8_lossy(data);
    let allow_eio3 = mode & 1 != 0;

    if let Ok(query) = parse_query(&raw, allow_eio3) {
        assert!(query.params.len() <= 1000);
        let transport = match query.transport {
            TransportKind::Polling => "polling",
            TransportKind::WebSocket => "websocket",
        };
        assert_eq!(query.get("transport"), Some(transport));
        match query.version {
            ProtocolVersion::V3 => assert!(allow_eio3 && query.get("EIO") == Some("3")),
            ProtocolVersion::V4 => assert_eq!(query.get("EIO"), Some("4")),
        }
        if let Some(sid) = &query.sid {
            assert!(!sid.is_empty());
            assert_eq!(query.get("sid"), Some(sid.as_str()));
        }
    }

    // The sid as it comes, whatever the rest of the query is.
    for candidate in [&raw[..], raw.trim_start_matches('?')] {
        if let Some(sid) = Sid::parse(candidate) {
            assert_eq!(sid.as_str(), candidate);
            assert!(sid.shard() < 4096);
            assert_eq!(Sid::parse(sid.as_str()), Some(sid));
        }
    }
});
