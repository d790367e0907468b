//! Socket.IO packet decoding, sans-IO: one Engine.IO message in, at most one
//! packet out. Binary packets span several messages (the text header, then
//! one binary message per attachment), so the decoder keeps the packet that
//! waits for its attachments.
//!
//! Every error means the peer is broken or hostile: the caller closes the
//! connection, as the reference server does.

use std::borrow::Cow;

use super::packet::{
    claims_placeholder, is_reserved_event, placeholder_num, Packet, PacketType, Payload, Protocol,
    RawPacket,
};
use super::raw::{split_array, RawArray, Utf8Bytes};
use crate::engineio::Text;
use bytes::Bytes;
use serde_json::Value;

/// Why a message is not a valid Socket.IO packet.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    /// The first character is not a type digit `0`..`6`.
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    /// A binary type not followed by `<digits>-`.
    #[error("binary packet without a valid `<count>-` attachment count")]
    InvalidAttachmentCount,
    /// An attachment count above the decoder's limit (saturated on overflow).
    #[error("{count} attachments, more than the limit of {max}")]
    TooManyAttachments { count: usize, max: usize },
    /// `<digits>-` after a type that has no attachments.
    #[error("attachment count on non-binary packet type {0:?}")]
    UnexpectedAttachmentCount(PacketType),
    /// Ack id digits that do not fit in a u64.
    #[error("ack id too large")]
    AckIdOverflow,
    /// An ACK or BINARY_ACK without an id: there is nothing to acknowledge.
    #[error("{0:?} packet without an ack id")]
    MissingAckId(PacketType),
    /// The payload is not one JSON value (bad syntax, trailing garbage,
    /// nesting too deep).
    #[error("invalid JSON payload: {0}")]
    InvalidJson(String),
    /// A type whose payload is mandatory has none.
    #[error("{0:?} packet without a payload")]
    MissingPayload(PacketType),
    /// A payload on a type that takes none (DISCONNECT).
    #[error("{0:?} packet with a payload")]
    UnexpectedPayload(PacketType),
    /// The payload is the wrong JSON kind for the type (e.g. CONNECT with an
    /// array, ACK with an object).
    #[error("invalid payload for a {0:?} packet")]
    InvalidPayload(PacketType),
    /// An event payload that is an empty array.
    #[error("event without a name")]
    EmptyEvent,
    /// An event whose first element is neither a string nor a number.
    #[error("event name is not a string or a number")]
    InvalidEventName,
    /// An event named after a reserved event.
    #[error("reserved event name {0:?}")]
    ReservedEvent(String),
    /// An object with `"_placeholder": true` that is not exactly
    /// `{"_placeholder":true,"num":<non-negative integer>}`.
    #[error("malformed attachment placeholder")]
    MalformedPlaceholder,
    /// A placeholder pointing past the announced attachments.
    #[error("placeholder {num} out of range for {attachments} attachments")]
    PlaceholderOutOfRange { num: usize, attachments: usize },
    /// A text message while a binary packet waits for attachments.
    #[error("text message while waiting for binary attachments")]
    UnexpectedText,
    /// A binary message when no binary packet waits for attachments.
    #[error("binary message without a pending binary packet")]
    UnexpectedBinary,
}

/// A Socket.IO decoder for one Engine.IO connection.
#[derive(Debug)]
pub struct Decoder {
    protocol: Protocol,
    max_attachments: usize,
    /// The binary packet waiting for attachments, and how many it needs.
    /// Boxed: a decoder is kept per connection, a waiting packet is rare.
    pending: Option<Box<(RawPacket, usize)>>,
}

impl Decoder {
    /// A decoder for `protocol` that rejects binary packets announcing more
    /// than `max_attachments` attachments.
    pub fn new(protocol: Protocol, max_attachments: usize) -> Decoder {
        Decoder {
            protocol,
            max_attachments,
            pending: None,
        }
    }

    /// Decode one Engine.IO text message. `Ok(None)` when it opened a binary
    /// packet that now waits for attachments. On error the waiting packet,
    /// if any, is dropped.
    ///
    /// The text is kept: an event's or an ack's arguments stay the JSON
    /// they came in (checked in full here, parsed when asked).
    pub fn decode_message(&mut self, text: Text) -> Result<Option<RawPacket>, DecodeError> {
        self.decode_utf8(Utf8Bytes::from_text(text))
    }

    /// Decode one Engine.IO binary message: the next attachment of the
    /// waiting packet. Returns the packet once its last attachment arrived.
    pub fn decode_attachment(&mut self, bytes: Bytes) -> Result<Option<RawPacket>, DecodeError> {
        let Some((packet, count)) = self.pending.as_deref_mut() else {
            return Err(DecodeError::UnexpectedBinary);
        };
        packet.attachments.push(bytes);
        if packet.attachments.len() < *count {
            return Ok(None);
        }
        Ok(self.pending.take().map(|pending| pending.0))
    }

    /// [`Decoder::decode_message`] of a copy of `text`, the JSON parsed.
    pub fn decode_text(&mut self, text: &str) -> Result<Option<Packet>, DecodeError> {
        self.decode_utf8(Utf8Bytes::copy_from_str(text))
            .map(|p| p.map(RawPacket::into_packet))
    }

    /// [`Decoder::decode_attachment`], the JSON parsed.
    pub fn decode_binary(&mut self, bytes: Bytes) -> Result<Option<Packet>, DecodeError> {
        self.decode_attachment(bytes)
            .map(|p| p.map(RawPacket::into_packet))
    }

    fn decode_utf8(&mut self, text: Utf8Bytes) -> Result<Option<RawPacket>, DecodeError> {
        if self.pending.take().is_some() {
            return Err(DecodeError::UnexpectedText);
        }
        parse(self.protocol, self.max_attachments, text, &mut self.pending)
    }

    /// Whether a binary packet waits for attachments.
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }
}

/// Parse one text message into a packet; one that announces attachments
/// goes to `pending` to wait for them (`Ok(None)`). The packet is built in
/// the place it is returned in, not moved there (it is 176 bytes).
fn parse(
    protocol: Protocol,
    max_attachments: usize,
    shared: Utf8Bytes,
    pending: &mut Option<Box<(RawPacket, usize)>>,
) -> Result<Option<RawPacket>, DecodeError> {
    let text = shared.as_str();
    let b = text.as_bytes();
    let Some(&first) = b.first() else {
        return Err(DecodeError::Empty);
    };
    let kind = PacketType::from_digit(first)
        .ok_or_else(|| DecodeError::UnknownType(text.chars().next().unwrap_or('\0')))?;
    let mut i = 1;

    let mut count = 0;
    if kind.is_binary() {
        let digits = digits_at(b, i);
        if digits == 0 || b.get(i + digits) != Some(&b'-') {
            return Err(DecodeError::InvalidAttachmentCount);
        }
        count = b[i..i + digits].iter().fold(0usize, |n, d| {
            n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
        });
        if count > max_attachments {
            return Err(DecodeError::TooManyAttachments {
                count,
                max: max_attachments,
            });
        }
        i += digits + 1;
    } else {
        // Invalid anyway (the digits would be an ack id, and no valid
        // payload starts with `-`), but name the actual mistake.
        let digits = digits_at(b, i);
        if digits > 0 && b.get(i + digits) == Some(&b'-') {
            return Err(DecodeError::UnexpectedAttachmentCount(kind));
        }
    }

    // Namespace: from `/` to the first `,` or the end.
    let mut nsp = "/";
    let mut query = None;
    if b.get(i) == Some(&b'/') {
        let end = text[i..].find(',').map_or(b.len(), |p| i + p);
        nsp = &text[i..end];
        i = (end + 1).min(b.len());
        if protocol == Protocol::V4 {
            // The reference server routes v2 clients by the URL path of the
            // namespace; only CONNECT uses the query (as auth).
            if let Some(q) = nsp.find('?') {
                if kind == PacketType::Connect {
                    query = Some(nsp[q + 1..].to_string());
                }
                nsp = &nsp[..q];
            }
        }
    }

    let digits = digits_at(b, i);
    let id = if digits > 0 {
        let id = b[i..i + digits].iter().try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        i += digits;
        Some(id.ok_or(DecodeError::AckIdOverflow)?)
    } else {
        None
    };

    let nsp: Cow<'static, str> = match nsp {
        "/" => Cow::Borrowed("/"),
        other => Cow::Owned(other.to_string()),
    };
    let arguments = matches!(
        kind,
        PacketType::Event | PacketType::BinaryEvent | PacketType::Ack | PacketType::BinaryAck
    );
    // JSON's whitespace, byte by byte (a `char` pattern decodes each).
    let json_at = i + b[i..]
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        .count();
    let payload = if arguments && b.get(json_at) == Some(&b'[') {
        let array = split_array(shared, i).map_err(DecodeError::InvalidJson)?;
        check_event_name(kind, &array)?;
        Payload::Array(array)
    } else {
        let data = match &text[i..] {
            "" => None,
            rest => Some(
                serde_json::from_str::<Value>(rest)
                    .map_err(|e| DecodeError::InvalidJson(e.to_string()))?,
            ),
        };
        check_payload(kind, data.as_ref())?;
        match data {
            Some(value) => Payload::Value(value),
            None => Payload::None,
        }
    };
    if matches!(kind, PacketType::Ack | PacketType::BinaryAck) && id.is_none() {
        return Err(DecodeError::MissingAckId(kind));
    }
    if let (true, Payload::Array(array)) = (kind.is_binary(), &payload) {
        check_raw_placeholders(array, count)?;
    }

    if count == 0 {
        // The usual case: no attachments announced, none to wait for.
        return Ok(Some(RawPacket {
            kind,
            nsp,
            query,
            id,
            payload,
            attachments: Vec::new(),
        }));
    }
    let packet = RawPacket {
        kind,
        nsp,
        query,
        id,
        payload,
        // Bounded: a hostile count must not reserve memory up front.
        attachments: Vec::with_capacity(count.min(16)),
    };
    *pending = Some(Box::new((packet, count)));
    Ok(None)
}

/// [`check_payload`] for an event's array kept as text: the name is read
/// from the first element.
fn check_event_name(kind: PacketType, array: &RawArray) -> Result<(), DecodeError> {
    if !matches!(kind, PacketType::Event | PacketType::BinaryEvent) {
        return Ok(());
    }
    if let Some(name) = array.plain_first() {
        // The usual name: a string without escapes, known from the scan.
        if is_reserved_event(name) {
            return Err(DecodeError::ReservedEvent(name.to_owned()));
        }
        return Ok(());
    }
    let Some(first) = array.get(0) else {
        return Err(DecodeError::EmptyEvent);
    };
    match first.as_bytes()[0] {
        b'"' => {
            let name = array.str(0).ok_or(DecodeError::InvalidEventName)?;
            if is_reserved_event(&name) {
                return Err(DecodeError::ReservedEvent(name.into_owned()));
            }
            Ok(())
        }
        b'-' | b'0'..=b'9' => Ok(()),
        _ => Err(DecodeError::InvalidEventName),
    }
}

/// [`check_placeholders`] over the elements that may hold one: those that
/// name `_placeholder`, or have `\u` escapes that may spell it; only they
/// are parsed.
fn check_raw_placeholders(array: &RawArray, count: usize) -> Result<(), DecodeError> {
    for item in array.iter() {
        if item.contains("_placeholder") || item.contains("\\u") {
            let value: Value =
                serde_json::from_str(item).map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
            check_placeholders(&value, count)?;
        }
    }
    Ok(())
}

/// How many ASCII digits start at `b[i..]`.
fn digits_at(b: &[u8], i: usize) -> usize {
    b.get(i..)
        .map_or(0, |s| s.iter().take_while(|c| c.is_ascii_digit()).count())
}

/// The payload rules of the reference parser (`isPayloadValid`), except
/// that EVENT, ACK and CONNECT_ERROR must carry a payload.
fn check_payload(kind: PacketType, data: Option<&Value>) -> Result<(), DecodeError> {
    use PacketType::*;
    match (kind, data) {
        (Connect, None | Some(Value::Object(_))) => Ok(()),
        (Disconnect, None) => Ok(()),
        (Disconnect, Some(_)) => Err(DecodeError::UnexpectedPayload(kind)),
        (ConnectError, Some(Value::String(_) | Value::Object(_))) => Ok(()),
        (Event | BinaryEvent, Some(Value::Array(items))) => match items.first() {
            None => Err(DecodeError::EmptyEvent),
            Some(Value::String(name)) if is_reserved_event(name) => {
                Err(DecodeError::ReservedEvent(name.clone()))
            }
            Some(Value::String(_) | Value::Number(_)) => Ok(()),
            Some(_) => Err(DecodeError::InvalidEventName),
        },
        (Ack | BinaryAck, Some(Value::Array(_))) => Ok(()),
        (_, None) => Err(DecodeError::MissingPayload(kind)),
        (_, Some(_)) => Err(DecodeError::InvalidPayload(kind)),
    }
}

/// Every placeholder must be well formed and below `count`. Recursion depth
/// is bounded by serde_json's nesting limit (128).
fn check_placeholders(v: &Value, count: usize) -> Result<(), DecodeError> {
    match v {
        _ if claims_placeholder(v) => match placeholder_num(v) {
            Some(num) if num < count => Ok(()),
            Some(num) => Err(DecodeError::PlaceholderOutOfRange {
                num,
                attachments: count,
            }),
            None => Err(DecodeError::MalformedPlaceholder),
        },
        Value::Array(items) => items.iter().try_for_each(|x| check_placeholders(x, count)),
        Value::Object(m) => m.values().try_for_each(|x| check_placeholders(x, count)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socketio::encode::encode_packet;
    use crate::socketio::packet::placeholder;
    use serde_json::json;
    use DecodeError as E;
    use PacketType::*;

    const BOTH: [Protocol; 2] = [Protocol::V4, Protocol::V5];

    fn dec(protocol: Protocol, text: &str) -> Result<Option<Packet>, DecodeError> {
        Decoder::new(protocol, 10).decode_text(text)
    }

    fn ok(protocol: Protocol, text: &str) -> Packet {
        match dec(protocol, text) {
            Ok(Some(p)) => p,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    fn err(protocol: Protocol, text: &str) -> DecodeError {
        match dec(protocol, text) {
            Err(e) => e,
            other => panic!("{text:?} should fail: {other:?}"),
        }
    }

    fn pkt(kind: PacketType, nsp: &str, id: Option<u64>, data: Option<Value>) -> Packet {
        Packet {
            kind,
            nsp: nsp.into(),
            query: None,
            id,
            data,
            attachments: Vec::new(),
        }
    }

    fn enc(p: &Packet) -> String {
        let mut s = String::new();
        encode_packet(p, &mut s);
        s
    }

    /// Decode `text` then its attachments; the complete packet.
    fn ok_bin(protocol: Protocol, text: &str, atts: &[&'static [u8]]) -> Packet {
        let mut d = Decoder::new(protocol, 10);
        assert_eq!(d.decode_text(text), Ok(None), "{text:?}");
        let (last, init) = atts.split_last().unwrap();
        for a in init {
            assert!(d.is_waiting());
            assert_eq!(d.decode_binary(Bytes::from_static(a)), Ok(None));
        }
        let p = d.decode_binary(Bytes::from_static(last)).unwrap().unwrap();
        assert!(!d.is_waiting());
        p
    }

    #[test]
    fn every_type_both_protocols() {
        for pr in BOTH {
            assert_eq!(ok(pr, "0"), pkt(Connect, "/", None, None));
            assert_eq!(ok(pr, "0/admin,"), pkt(Connect, "/admin", None, None));
            assert_eq!(
                ok(pr, r#"0{"token":"1"}"#),
                pkt(Connect, "/", None, Some(json!({"token": "1"})))
            );
            assert_eq!(
                ok(pr, r#"0/admin,{"token":"1"}"#),
                pkt(Connect, "/admin", None, Some(json!({"token": "1"})))
            );
            assert_eq!(ok(pr, "1"), pkt(Disconnect, "/", None, None));
            assert_eq!(ok(pr, "1/chat,"), pkt(Disconnect, "/chat", None, None));
            assert_eq!(
                ok(pr, r#"2["hello",{"a":1}]"#),
                pkt(Event, "/", None, Some(json!(["hello", {"a": 1}])))
            );
            assert_eq!(
                ok(pr, r#"2/chat,12["x"]"#),
                pkt(Event, "/chat", Some(12), Some(json!(["x"])))
            );
            assert_eq!(
                ok(pr, "3/chat,7[1,2]"),
                pkt(Ack, "/chat", Some(7), Some(json!([1, 2])))
            );
            assert_eq!(ok(pr, "312[]"), pkt(Ack, "/", Some(12), Some(json!([]))));
            assert_eq!(
                ok(pr, r#"4/random,{"message":"Invalid namespace"}"#),
                pkt(
                    ConnectError,
                    "/random",
                    None,
                    Some(json!({"message": "Invalid namespace"}))
                )
            );
            assert_eq!(
                ok(pr, r#"4/admin,"Not authorized""#),
                pkt(ConnectError, "/admin", None, Some(json!("Not authorized")))
            );
            assert_eq!(
                ok(pr, r#"50-["e"]"#),
                pkt(BinaryEvent, "/", None, Some(json!(["e"])))
            );
            assert_eq!(
                ok(pr, r#"60-5["e"]"#),
                pkt(BinaryAck, "/", Some(5), Some(json!(["e"])))
            );
        }
    }

    #[test]
    fn namespace_with_and_without_comma() {
        for pr in BOTH {
            assert_eq!(ok(pr, "0/custom"), ok(pr, "0/custom,"));
            assert_eq!(ok(pr, "0/custom").nsp, "/custom");
            assert_eq!(ok(pr, "1/custom").nsp, "/custom");
            // An empty name after `/` is the main namespace.
            assert_eq!(ok(pr, r#"2/,["x"]"#).nsp, "/");
            // Non-ASCII names are kept verbatim.
            assert_eq!(ok(pr, r#"2/é😀,["x"]"#).nsp, "/é😀");
            assert_eq!(ok(pr, r#"2/a/b,["x"]"#).nsp, "/a/b");
        }
    }

    #[test]
    fn v4_connect_query() {
        let p = ok(Protocol::V4, "0/admin?token=1,");
        assert_eq!(
            (p.nsp.as_str(), p.query.as_deref()),
            ("/admin", Some("token=1"))
        );
        let p = ok(Protocol::V4, "0/admin?token=1&b=%20x");
        assert_eq!(
            (p.nsp.as_str(), p.query.as_deref()),
            ("/admin", Some("token=1&b=%20x"))
        );
        let p = ok(Protocol::V4, "0/?t=1,");
        assert_eq!((p.nsp.as_str(), p.query.as_deref()), ("/", Some("t=1")));
        let p = ok(Protocol::V4, "0/admin?,");
        assert_eq!((p.nsp.as_str(), p.query.as_deref()), ("/admin", Some("")));
        let p = ok(Protocol::V4, "0/admin,");
        assert_eq!((p.nsp.as_str(), p.query), ("/admin", None));
        // Only the first `?` splits.
        let p = ok(Protocol::V4, "0/a?b?c");
        assert_eq!((p.nsp.as_str(), p.query.as_deref()), ("/a", Some("b?c")));
        // The reference server still accepts (and ignores) a JSON payload here.
        let p = ok(Protocol::V4, r#"0/a?t=1,{"x":1}"#);
        assert_eq!(p.data, Some(json!({"x": 1})));
    }

    #[test]
    fn v4_query_on_other_types_is_dropped() {
        let p = ok(Protocol::V4, r#"2/admin?token=1,["x"]"#);
        assert_eq!((p.nsp.as_str(), p.query), ("/admin", None));
        let p = ok(Protocol::V4, "1/admin?token=1,");
        assert_eq!((p.nsp.as_str(), p.query), ("/admin", None));
    }

    #[test]
    fn v5_keeps_question_mark_in_namespace() {
        let p = ok(Protocol::V5, "0/admin?token=1,");
        assert_eq!((p.nsp.as_str(), p.query), ("/admin?token=1", None));
        let p = ok(Protocol::V5, r#"2/a?b,["x"]"#);
        assert_eq!((p.nsp.as_str(), p.query), ("/a?b", None));
    }

    #[test]
    fn ack_ids() {
        for pr in BOTH {
            assert_eq!(ok(pr, r#"20["x"]"#).id, Some(0));
            assert_eq!(ok(pr, r#"2007["x"]"#).id, Some(7));
            assert_eq!(ok(pr, r#"2/a,1["x"]"#).id, Some(1));
            assert_eq!(ok(pr, r#"218446744073709551615["x"]"#).id, Some(u64::MAX));
            assert_eq!(ok(pr, r#"2["x"]"#).id, None);
            assert_eq!(ok(pr, r#"50-/a,9["x"]"#).id, Some(9));
            // The reference accepts (and the server ignores) ids on other types.
            assert_eq!(ok(pr, "0/a,5").id, Some(5));
            assert_eq!(ok(pr, "15").id, Some(5));
        }
    }

    #[test]
    fn whitespace_around_json_is_allowed() {
        // JSON.parse allows it too.
        let p = ok(Protocol::V5, "2 [ \"x\" , 1 ] \n");
        assert_eq!(p.data, Some(json!(["x", 1])));
    }

    #[test]
    fn numeric_event_names_are_allowed() {
        // As in the reference parser.
        for pr in BOTH {
            assert_eq!(ok(pr, "2[1,2]").data, Some(json!([1, 2])));
            assert_eq!(ok(pr, "2[-1.5]").event_name(), None);
        }
    }

    #[test]
    fn key_order_is_kept() {
        let p = ok(Protocol::V5, r#"2["e",{"z":1,"a":2,"m":{"y":1,"b":2}}]"#);
        assert_eq!(enc(&p), r#"2["e",{"z":1,"a":2,"m":{"y":1,"b":2}}]"#);
    }

    #[test]
    fn binary_one_attachment() {
        for pr in BOTH {
            let p = ok_bin(
                pr,
                r#"51-["bin",{"_placeholder":true,"num":0}]"#,
                &[b"\x01\x02\x03"],
            );
            assert_eq!(p.kind, BinaryEvent);
            assert_eq!(p.nsp, "/");
            assert_eq!(p.event_name(), Some("bin"));
            assert_eq!(p.data, Some(json!(["bin", placeholder(0)])));
            assert_eq!(p.attachments, vec![Bytes::from_static(b"\x01\x02\x03")]);
        }
    }

    #[test]
    fn binary_several_attachments_nested() {
        let text = concat!(
            r#"63-/admin,42["#,
            r#"{"a":[1,{"deep":{"_placeholder":true,"num":2}}],"b":{"_placeholder":true,"num":0}},"#,
            r#"[[[{"_placeholder":true,"num":1}]]],"#,
            r#"{"_placeholder":false,"num":99},"#,
            r#"{"_placeholder":true,"num":0}"#,
            r#"]"#
        );
        for pr in BOTH {
            let p = ok_bin(pr, text, &[b"zero", b"", b"two"]);
            assert_eq!(p.kind, BinaryAck);
            assert_eq!((p.nsp.as_str(), p.id), ("/admin", Some(42)));
            let data = p.data.as_ref().unwrap();
            assert_eq!(data[0]["a"][1]["deep"], placeholder(2));
            assert_eq!(data[0]["b"], placeholder(0));
            assert_eq!(data[1][0][0][0], placeholder(1));
            // Not a placeholder claim: plain data.
            assert_eq!(data[2], json!({"_placeholder": false, "num": 99}));
            assert_eq!(
                p.attachments,
                vec![
                    Bytes::from_static(b"zero"),
                    Bytes::new(),
                    Bytes::from_static(b"two")
                ]
            );
        }
    }

    #[test]
    fn binary_packets_in_sequence() {
        let mut d = Decoder::new(Protocol::V5, 4);
        assert_eq!(
            d.decode_text(r#"52-["a",{"_placeholder":true,"num":1}]"#),
            Ok(None)
        );
        assert_eq!(d.decode_binary(Bytes::from_static(b"0")), Ok(None));
        let p = d.decode_binary(Bytes::from_static(b"1")).unwrap().unwrap();
        assert_eq!(p.attachments.len(), 2);
        // The decoder is ready for text again, and for another binary packet.
        assert!(d.decode_text(r#"2["b"]"#).unwrap().is_some());
        assert_eq!(
            d.decode_text(r#"61-3[{"_placeholder":true,"num":0}]"#),
            Ok(None)
        );
        let p = d.decode_binary(Bytes::from_static(b"x")).unwrap().unwrap();
        assert_eq!((p.kind, p.id), (BinaryAck, Some(3)));
        assert_eq!(d.decode_binary(Bytes::new()), Err(E::UnexpectedBinary));
    }

    #[test]
    fn binary_without_placeholders_or_with_zero_count() {
        // The reference checks placeholders only against the count.
        let p = ok_bin(Protocol::V5, r#"52-["a"]"#, &[b"1", b"2"]);
        assert_eq!(p.data, Some(json!(["a"])));
        assert_eq!(p.attachments.len(), 2);
        let p = ok(Protocol::V5, r#"50-["a"]"#);
        assert!(p.attachments.is_empty());
        assert_eq!(
            err(Protocol::V5, r#"50-["a",{"_placeholder":true,"num":0}]"#),
            E::PlaceholderOutOfRange {
                num: 0,
                attachments: 0
            }
        );
    }

    #[test]
    fn placeholders_in_non_binary_packets_are_plain_data() {
        // The reference never reconstructs EVENT/ACK packets.
        let p = ok(
            Protocol::V5,
            r#"2["a",{"_placeholder":true,"num":5},{"_placeholder":true}]"#,
        );
        assert_eq!(p.data.unwrap()[1], placeholder(5));
    }

    #[test]
    fn attachment_limit() {
        let mut d = Decoder::new(Protocol::V5, 2);
        assert_eq!(d.decode_text(r#"52-["a"]"#), Ok(None));
        let mut d = Decoder::new(Protocol::V5, 2);
        assert_eq!(
            d.decode_text(r#"53-["a"]"#),
            Err(E::TooManyAttachments { count: 3, max: 2 })
        );
        assert!(!d.is_waiting());
        assert_eq!(
            Decoder::new(Protocol::V4, 0).decode_text(r#"51-["a"]"#),
            Err(E::TooManyAttachments { count: 1, max: 0 })
        );
        // A count that overflows saturates rather than wrapping under the limit.
        assert_eq!(
            Decoder::new(Protocol::V5, 10).decode_text(&format!("5{}0-[\"a\"]", usize::MAX)),
            Err(E::TooManyAttachments {
                count: usize::MAX,
                max: 10
            })
        );
        let huge = format!("5{}-[\"a\"]", "9".repeat(100));
        assert!(matches!(
            dec(Protocol::V5, &huge),
            Err(E::TooManyAttachments { .. })
        ));
    }

    #[test]
    fn round_trips() {
        let samples = [
            pkt(Connect, "/", None, None),
            pkt(
                Connect,
                "/admin",
                None,
                Some(json!({"token": "abc", "n": [1, 2]})),
            ),
            pkt(Connect, "/", None, Some(json!({"sid": "abc"}))),
            pkt(Disconnect, "/", None, None),
            pkt(Disconnect, "/chat", None, None),
            pkt(
                Event,
                "/",
                None,
                Some(json!(["hello", {"a": 1}, null, true, 1.5, "é😀\n"])),
            ),
            pkt(Event, "/chat", Some(12), Some(json!(["x"]))),
            pkt(Event, "/", Some(u64::MAX), Some(json!([7]))),
            pkt(Ack, "/chat", Some(7), Some(json!([1, 2]))),
            pkt(Ack, "/", Some(0), Some(json!([]))),
            pkt(
                ConnectError,
                "/random",
                None,
                Some(json!({"message": "Invalid namespace"})),
            ),
            pkt(ConnectError, "/", None, Some(json!("Not authorized"))),
            pkt(BinaryEvent, "/", None, Some(json!(["e"]))),
        ];
        for pr in BOTH {
            for p in &samples {
                assert_eq!(&ok(pr, &enc(p)), p, "{}", enc(p));
            }
        }
        // V4 CONNECT with a query.
        let mut p = pkt(Connect, "/admin", None, None);
        p.query = Some("token=1".into());
        assert_eq!(enc(&p), "0/admin?token=1,");
        assert_eq!(ok(Protocol::V4, &enc(&p)), p);
    }

    #[test]
    fn binary_round_trip() {
        let mut p = pkt(
            BinaryEvent,
            "/up",
            Some(3),
            Some(json!(["file", {"parts": [placeholder(0), placeholder(1)]}, placeholder(2)])),
        );
        p.attachments = vec![
            Bytes::from_static(b"a"),
            Bytes::from_static(b"bb"),
            Bytes::from_static(&[0, 255]),
        ];
        for pr in BOTH {
            let mut d = Decoder::new(pr, 3);
            assert_eq!(d.decode_text(&enc(&p)), Ok(None));
            let mut out = None;
            for a in &p.attachments {
                out = d.decode_binary(a.clone()).unwrap();
            }
            assert_eq!(out.as_ref(), Some(&p));
        }
    }

    #[test]
    fn invalid_header() {
        for pr in BOTH {
            assert_eq!(err(pr, ""), E::Empty);
            assert_eq!(err(pr, "7"), E::UnknownType('7'));
            assert_eq!(err(pr, "9[\"x\"]"), E::UnknownType('9'));
            assert_eq!(err(pr, "a"), E::UnknownType('a'));
            assert_eq!(err(pr, " 0"), E::UnknownType(' '));
            assert_eq!(err(pr, "é"), E::UnknownType('é'));
            assert_eq!(err(pr, "-1"), E::UnknownType('-'));
            assert_eq!(err(pr, "\u{0}"), E::UnknownType('\0'));
            // Bad attachment counts.
            for t in [
                "5",
                "6",
                "5-",
                "5-[\"x\"]",
                "51",
                "51[\"x\"]",
                "5a-[\"x\"]",
                "5 1-[\"x\"]",
                "51 -[\"x\"]",
                "5+1-[\"x\"]",
                "5-1-[\"x\"]",
                "51.0-[\"x\"]",
                "5/a,1-[\"x\"]",
                "61[]",
                "6x-1[]",
            ] {
                assert_eq!(err(pr, t), E::InvalidAttachmentCount, "{t:?}");
            }
            // A count on a non-binary type.
            assert_eq!(err(pr, r#"21-["x"]"#), E::UnexpectedAttachmentCount(Event));
            assert_eq!(err(pr, "31-1[]"), E::UnexpectedAttachmentCount(Ack));
            assert_eq!(err(pr, "00-"), E::UnexpectedAttachmentCount(Connect));
        }
    }

    #[test]
    fn invalid_ids() {
        for pr in BOTH {
            assert_eq!(err(pr, r#"218446744073709551616["x"]"#), E::AckIdOverflow);
            assert_eq!(
                err(pr, &format!("2{}[\"x\"]", "9".repeat(40))),
                E::AckIdOverflow
            );
            assert_eq!(
                err(pr, r#"2/a,99999999999999999999["x"]"#),
                E::AckIdOverflow
            );
            // Non-digits where the id would be: not an id, so not JSON either.
            for t in [
                r#"2a1["x"]"#,
                r#"21a["x"]"#,
                r#"2/a,1a["x"]"#,
                r#"2 1["x"]"#,
                r#"2-1["x"]"#,
            ] {
                assert!(matches!(err(pr, t), E::InvalidJson(_)), "{t:?}");
            }
            // Ack without an id.
            assert_eq!(err(pr, "3[]"), E::MissingAckId(Ack));
            assert_eq!(err(pr, "3/a,[1]"), E::MissingAckId(Ack));
            assert_eq!(err(pr, "60-[]"), E::MissingAckId(BinaryAck));
        }
    }

    #[test]
    fn invalid_namespace() {
        for pr in BOTH {
            // Without a leading `/`, what follows is not a namespace.
            assert!(matches!(err(pr, r#"2admin,["x"]"#), E::InvalidJson(_)));
            assert!(matches!(err(pr, "0admin"), E::InvalidJson(_)));
            assert!(matches!(err(pr, "0,"), E::InvalidJson(_)));
            // The namespace runs to the first comma, so a missing comma
            // swallows the payload.
            assert_eq!(err(pr, r#"2/chat["x"]"#), E::MissingPayload(Event));
            // And a comma inside the payload cuts it.
            assert!(matches!(err(pr, r#"2/chat["a","b"]"#), E::InvalidJson(_)));
        }
        assert!(matches!(err(Protocol::V4, "0?token=1"), E::InvalidJson(_)));
    }

    #[test]
    fn invalid_json() {
        for pr in BOTH {
            for t in [
                "2[",
                r#"2["x""#,
                r#"2["x"]]"#,
                r#"2["x"] ["y"]"#,
                r#"2["x"]x"#,
                r#"2["x"],"#,
                r#"2['x']"#,
                r#"2["x",]"#,
                "2[\"x\u{1}\"]",
                r#"0{"a":1}}"#,
                r#"0{a:1}"#,
                "0 ",
                "1 ",
                r#"2["x", NaN]"#,
                r#"2["x", 1e999]"#,
                r#"4"unterminated"#,
            ] {
                assert!(matches!(err(pr, t), E::InvalidJson(_)), "{t:?}");
            }
            // Nesting deeper than serde_json's limit is an error, not a stack overflow.
            let deep = format!("2[\"x\",{}{}]", "[".repeat(5000), "]".repeat(5000));
            assert!(matches!(err(pr, &deep), E::InvalidJson(_)));
        }
    }

    #[test]
    fn wrong_payload_kinds() {
        for pr in BOTH {
            for t in ["0[]", "0\"x\"", "0-1", "0null", "0true", "0/a,[1]", "05 1"] {
                assert_eq!(err(pr, t), E::InvalidPayload(Connect), "{t:?}");
            }
            for t in ["1{}", "1[]", "1\"x\"", "1/a,null", "1/a,{}"] {
                assert_eq!(err(pr, t), E::UnexpectedPayload(Disconnect), "{t:?}");
            }
            for t in ["4[]", "4-1", "4null", "4true", "4/a,[\"x\"]", "41 1"] {
                assert_eq!(err(pr, t), E::InvalidPayload(ConnectError), "{t:?}");
            }
            for t in [
                r#"2{"a":1}"#,
                r#"2"x""#,
                "2-1",
                "21 1",
                "2null",
                r#"50-{"a":1}"#,
            ] {
                assert!(
                    matches!(err(pr, t), E::InvalidPayload(Event | BinaryEvent)),
                    "{t:?}"
                );
            }
            for t in ["31{}", "31\"x\"", "31 1", "31null", r#"60-1{"a":1}"#] {
                assert!(
                    matches!(err(pr, t), E::InvalidPayload(Ack | BinaryAck)),
                    "{t:?}"
                );
            }
            // Missing payloads.
            assert_eq!(err(pr, "2"), E::MissingPayload(Event));
            assert_eq!(err(pr, "2/chat,"), E::MissingPayload(Event));
            assert_eq!(err(pr, "21"), E::MissingPayload(Event));
            assert_eq!(err(pr, "31"), E::MissingPayload(Ack));
            assert_eq!(err(pr, "4"), E::MissingPayload(ConnectError));
            assert_eq!(err(pr, "4/a,"), E::MissingPayload(ConnectError));
            assert_eq!(err(pr, "50-"), E::MissingPayload(BinaryEvent));
            assert_eq!(err(pr, "61-1"), E::MissingPayload(BinaryAck));
        }
    }

    #[test]
    fn event_names() {
        for pr in BOTH {
            assert_eq!(err(pr, "2[]"), E::EmptyEvent);
            assert_eq!(err(pr, "2/a,1[]"), E::EmptyEvent);
            assert_eq!(err(pr, "50-[]"), E::EmptyEvent);
            for t in ["2[null]", "2[true]", "2[[\"x\"]]", "2[{\"a\":1}]"] {
                assert_eq!(err(pr, t), E::InvalidEventName, "{t:?}");
            }
            // A binary event cannot be named by an attachment.
            assert_eq!(
                err(pr, r#"51-[{"_placeholder":true,"num":0}]"#),
                E::InvalidEventName
            );
            for name in crate::socketio::RESERVED_EVENTS {
                let t = format!("2[\"{name}\",1]");
                assert_eq!(err(pr, &t), E::ReservedEvent(name.to_string()));
                let t = format!("51-[\"{name}\",{{\"_placeholder\":true,\"num\":0}}]");
                assert_eq!(err(pr, &t), E::ReservedEvent(name.to_string()));
            }
            // Only the first element is the name; case matters.
            assert!(ok(pr, r#"2["x","connect"]"#).data.is_some());
            assert!(ok(pr, r#"2["Connect"]"#).data.is_some());
            // Acks have no name: any array.
            assert!(ok(pr, r#"31["connect"]"#).data.is_some());
        }
    }

    #[test]
    fn bad_placeholders() {
        for pr in BOTH {
            for (t, e) in [
                (
                    r#"51-["a",{"_placeholder":true,"num":1}]"#,
                    E::PlaceholderOutOfRange {
                        num: 1,
                        attachments: 1,
                    },
                ),
                (
                    r#"52-["a",{"x":[{"_placeholder":true,"num":5}]}]"#,
                    E::PlaceholderOutOfRange {
                        num: 5,
                        attachments: 2,
                    },
                ),
                (
                    r#"61-1[{"_placeholder":true,"num":18446744073709551615}]"#,
                    E::PlaceholderOutOfRange {
                        num: usize::try_from(u64::MAX).unwrap_or(usize::MAX),
                        attachments: 1,
                    },
                ),
                (r#"51-["a",{"_placeholder":true}]"#, E::MalformedPlaceholder),
                (
                    r#"51-["a",{"_placeholder":true,"num":-1}]"#,
                    E::MalformedPlaceholder,
                ),
                (
                    r#"51-["a",{"_placeholder":true,"num":0.5}]"#,
                    E::MalformedPlaceholder,
                ),
                (
                    r#"51-["a",{"_placeholder":true,"num":"0"}]"#,
                    E::MalformedPlaceholder,
                ),
                (
                    r#"51-["a",{"_placeholder":true,"num":null}]"#,
                    E::MalformedPlaceholder,
                ),
                (
                    r#"51-["a",{"_placeholder":true,"num":0,"extra":1}]"#,
                    E::MalformedPlaceholder,
                ),
                (
                    r#"51-["a",[[{"b":{"_placeholder":true,"num":[0]}}]]]"#,
                    E::MalformedPlaceholder,
                ),
                (
                    r#"61-1[{"num":0,"_placeholder":true,"num2":0}]"#,
                    E::MalformedPlaceholder,
                ),
            ] {
                let mut d = Decoder::new(pr, 10);
                assert_eq!(d.decode_text(t), Err(e), "{t:?}");
                assert!(!d.is_waiting());
            }
        }
    }

    #[test]
    fn unexpected_binary_and_text() {
        for pr in BOTH {
            let mut d = Decoder::new(pr, 10);
            assert_eq!(
                d.decode_binary(Bytes::from_static(b"x")),
                Err(E::UnexpectedBinary)
            );
            assert_eq!(d.decode_text(r#"2["a"]"#).unwrap().unwrap().kind, Event);
            assert_eq!(d.decode_binary(Bytes::new()), Err(E::UnexpectedBinary));

            // Text while waiting: an error, and the waiting packet is dropped.
            assert_eq!(d.decode_text(r#"52-["a"]"#), Ok(None));
            assert_eq!(d.decode_binary(Bytes::from_static(b"1")), Ok(None));
            assert_eq!(d.decode_text(r#"2["a"]"#), Err(E::UnexpectedText));
            assert!(!d.is_waiting());
            assert_eq!(
                d.decode_binary(Bytes::from_static(b"2")),
                Err(E::UnexpectedBinary)
            );

            // Even a valid binary header while waiting.
            assert_eq!(d.decode_text(r#"51-["a"]"#), Ok(None));
            assert_eq!(d.decode_text(r#"51-["a"]"#), Err(E::UnexpectedText));
            // And an invalid one.
            assert_eq!(d.decode_text(r#"51-["a"]"#), Ok(None));
            assert_eq!(d.decode_text(""), Err(E::UnexpectedText));
        }
    }

    #[test]
    fn errors_leave_the_decoder_usable() {
        let mut d = Decoder::new(Protocol::V5, 10);
        assert!(d.decode_text("9").is_err());
        assert!(d
            .decode_text(r#"51-["a",{"_placeholder":true,"num":3}]"#)
            .is_err());
        assert!(!d.is_waiting());
        assert!(d.decode_text(r#"2["a"]"#).unwrap().is_some());
    }

    #[test]
    fn error_messages() {
        assert_eq!(E::UnknownType('9').to_string(), "unknown packet type '9'");
        assert_eq!(
            E::TooManyAttachments { count: 3, max: 2 }.to_string(),
            "3 attachments, more than the limit of 2"
        );
        assert_eq!(
            E::ReservedEvent("connect".into()).to_string(),
            "reserved event name \"connect\""
        );
        assert_eq!(
            E::MissingPayload(Event).to_string(),
            "Event packet without a payload"
        );
        assert_eq!(
            E::PlaceholderOutOfRange {
                num: 1,
                attachments: 1
            }
            .to_string(),
            "placeholder 1 out of range for 1 attachments"
        );
    }

    use crate::test_rng::Rng;

    /// A complete decoded packet must survive encode + decode unchanged.
    fn check_round_trip(pr: Protocol, p: &Packet) {
        let mut d = Decoder::new(pr, usize::MAX);
        let text = enc(p);
        let mut out = d
            .decode_text(&text)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
        for a in &p.attachments {
            assert!(out.is_none());
            out = d.decode_binary(a.clone()).unwrap();
        }
        assert_eq!(out.as_ref(), Some(p), "{text:?}");
    }

    #[test]
    fn fuzz_never_panics_and_round_trips() {
        let seeds = [
            "0",
            "0/admin,",
            "0/admin?token=1,",
            r#"0{"token":"1"}"#,
            "1/chat,",
            r#"2["hello",{"a":1}]"#,
            r#"2/chat,12["x",[1,2,{"b":null}]]"#,
            "3/chat,7[1,2]",
            r#"4{"message":"Invalid namespace"}"#,
            r#"4/a,"no""#,
            r#"51-["bin",{"_placeholder":true,"num":0}]"#,
            r#"52-/admin,3["x",{"a":{"_placeholder":true,"num":1}},[{"_placeholder":true,"num":0}]]"#,
            r#"61-15[{"_placeholder":true,"num":0}]"#,
            r#"2[1,"é😀\u0000"]"#,
        ];
        let alphabet: Vec<char> = "0123456789-/,?[]{}\":_placeholdernumtrue \\é😀\u{0}\n.eE+"
            .chars()
            .collect();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut decoders = [Decoder::new(Protocol::V4, 3), Decoder::new(Protocol::V5, 3)];
        let (mut complete, mut errors) = (0, 0);
        for round in 0..30_000 {
            let text: String = match round % 3 {
                // Noise from the protocol's alphabet.
                0 => (0..rng.below(40))
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect(),
                // Arbitrary chars, any Unicode scalar.
                1 => (0..rng.below(20))
                    .filter_map(|_| char::from_u32(rng.next() as u32 % 0x11_0000))
                    .collect(),
                // Mutated valid packets.
                _ => {
                    let mut v: Vec<char> = seeds[rng.below(seeds.len())].chars().collect();
                    for _ in 0..1 + rng.below(3) {
                        let i = rng.below(v.len() + 1);
                        let c = alphabet[rng.below(alphabet.len())];
                        match rng.below(3) {
                            0 if i < v.len() => v[i] = c,
                            1 if i < v.len() => {
                                v.remove(i);
                            }
                            _ => v.insert(i, c),
                        }
                    }
                    v.into_iter().collect()
                }
            };
            for (k, d) in decoders.iter_mut().enumerate() {
                let pr = if k == 0 { Protocol::V4 } else { Protocol::V5 };
                let mut result = d.decode_text(&text);
                // Feed attachments to waiting packets, sometimes too few.
                while d.is_waiting() && rng.below(8) != 0 {
                    let len = rng.below(4);
                    let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    result = d.decode_binary(Bytes::from(bytes));
                }
                match result {
                    Ok(Some(p)) => {
                        complete += 1;
                        check_round_trip(pr, &p);
                    }
                    Ok(None) => {}
                    Err(_) => errors += 1,
                }
                if rng.below(50) == 0 {
                    // Stray binary messages.
                    let _ = d.decode_binary(Bytes::from_static(b"\x00"));
                }
            }
        }
        // The inputs exercised both outcomes.
        assert!(complete > 1000, "{complete}");
        assert!(errors > 10_000, "{errors}");
    }
}
