//! HTTP long-polling bodies: several packets in one request or response.
//!
//! - v4: text packets joined by `\x1e`, binary as `b<base64>`.
//! - v3 text: `<length>:<packet>` repeated, the length in UTF-16 code units
//!   (JavaScript string length), binary as `b4<base64>`.
//! - v3 XHR2 binary (`application/octet-stream`): per packet
//!   `<0 string | 1 binary><decimal digits, one byte each><0xFF><packet>`,
//!   the length in bytes; binary packets start with the type byte 4.

use bytes::Bytes;

use super::packet::{Data, DecodeError, Packet, ProtocolVersion, BINARY_MESSAGE_TYPE};

/// Content type of text payloads (both versions).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=UTF-8";
/// Content type of v3 XHR2 binary payloads.
pub const BINARY_CONTENT_TYPE: &str = "application/octet-stream";

/// Separator of v4 payloads (ASCII record separator, never valid in a packet).
pub const V4_SEPARATOR: char = '\u{1e}';

/// Longest decimal length prefix accepted: more digits than any body we
/// would ever accept, and short enough that the value cannot overflow.
const MAX_LENGTH_DIGITS: usize = 15;

/// A GET response body with its content type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedPayload {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// Decode a POST body. `binary_body` is true when the request content type
/// is `application/octet-stream` (a v3 XHR2 binary payload).
///
/// Unlike the reference server, which handles the packets before the first
/// bad one and then closes the session, a bad packet fails the whole body:
/// the session is closed either way.
pub fn decode_payload(
    version: ProtocolVersion,
    body: &[u8],
    binary_body: bool,
) -> Result<Vec<Packet>, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    match (version, binary_body) {
        (ProtocolVersion::V4, true) => Err(DecodeError::BinaryPayloadUnsupported),
        (ProtocolVersion::V3, true) => decode_v3_binary(body),
        (_, false) => {
            let text = std::str::from_utf8(body).map_err(|_| DecodeError::InvalidUtf8)?;
            match version {
                ProtocolVersion::V4 => decode_v4(text),
                ProtocolVersion::V3 => decode_v3_text(text),
            }
        }
    }
}

fn decode_v4(text: &str) -> Result<Vec<Packet>, DecodeError> {
    text.split(V4_SEPARATOR)
        .map(|p| Packet::decode_text(ProtocolVersion::V4, p))
        .collect()
}

/// Parses a decimal length, as the v3 parser's `Number(length)` would for
/// what real clients send; signs, spaces and exponents are refused.
fn parse_decimal(digits: impl ExactSizeIterator<Item = u8>) -> Result<usize, DecodeError> {
    if digits.len() == 0 || digits.len() > MAX_LENGTH_DIGITS {
        return Err(DecodeError::BadLength);
    }
    let mut n: usize = 0;
    for d in digits {
        if d > 9 {
            return Err(DecodeError::BadLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(d as usize))
            .ok_or(DecodeError::BadLength)?;
    }
    Ok(n)
}

/// Splits `s` after `units` UTF-16 code units: JavaScript's `substr`, which
/// the client used to compute the length.
fn split_utf16(s: &str, units: usize) -> Result<(&str, &str), DecodeError> {
    let mut counted = 0;
    for (i, c) in s.char_indices() {
        if counted == units {
            return Ok(s.split_at(i));
        }
        counted += c.len_utf16();
        if counted > units {
            // the length ends between the two halves of a surrogate pair
            return Err(DecodeError::BadLength);
        }
    }
    if counted == units {
        Ok((s, ""))
    } else {
        Err(DecodeError::Truncated)
    }
}

fn decode_v3_text(text: &str) -> Result<Vec<Packet>, DecodeError> {
    let mut packets = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let Some(colon) = rest.find(':') else {
            return Err(DecodeError::TrailingData);
        };
        let len = parse_decimal(
            rest.as_bytes()[..colon]
                .iter()
                .map(|b| b.wrapping_sub(b'0')),
        )?;
        let (packet, tail) = split_utf16(&rest[colon + 1..], len)?;
        // the reference skips zero-length packets (`0:` is an empty payload)
        if !packet.is_empty() {
            packets.push(Packet::decode_text(ProtocolVersion::V3, packet)?);
        }
        rest = tail;
    }
    Ok(packets)
}

fn decode_v3_binary(body: &[u8]) -> Result<Vec<Packet>, DecodeError> {
    let mut packets = Vec::new();
    let mut rest = body;
    while let Some((&kind, after_kind)) = rest.split_first() {
        if kind > 1 {
            return Err(DecodeError::UnknownPayloadKind(kind));
        }
        let Some(ff) = after_kind.iter().position(|&b| b == 0xff) else {
            // header never terminated: the reference would read past the end
            return Err(DecodeError::Truncated);
        };
        let len = parse_decimal(after_kind[..ff].iter().copied())?;
        let data = &after_kind[ff + 1..];
        if data.len() < len {
            return Err(DecodeError::Truncated);
        }
        let (packet, tail) = data.split_at(len);
        rest = tail;
        packets.push(if kind == 0 {
            // string packets are UTF-8 bytes, counted in bytes
            let s = std::str::from_utf8(packet).map_err(|_| DecodeError::InvalidUtf8)?;
            Packet::decode_text(ProtocolVersion::V3, s)?
        } else {
            Packet::decode_ws_binary(ProtocolVersion::V3, Bytes::copy_from_slice(packet))?
        });
    }
    Ok(packets)
}

/// Encode packets for a GET response.
///
/// `supports_binary` is false when the client sent `b64=1` (and for JSONP,
/// which can only carry text); it only matters for v3, as v4 polling is
/// always text.
pub fn encode_payload(
    version: ProtocolVersion,
    packets: &[Packet],
    supports_binary: bool,
) -> EncodedPayload {
    match version {
        ProtocolVersion::V4 => {
            let mut s = String::new();
            for (i, p) in packets.iter().enumerate() {
                if i > 0 {
                    s.push(V4_SEPARATOR);
                }
                p.encode_text(version, &mut s);
            }
            text_payload(s)
        }
        ProtocolVersion::V3 if supports_binary && packets.iter().any(Packet::is_binary) => {
            EncodedPayload {
                content_type: BINARY_CONTENT_TYPE,
                body: encode_v3_binary(packets),
            }
        }
        ProtocolVersion::V3 => text_payload(encode_v3_text(packets)),
    }
}

fn text_payload(s: String) -> EncodedPayload {
    EncodedPayload {
        content_type: TEXT_CONTENT_TYPE,
        body: s.into_bytes(),
    }
}

/// The v3 text payload; also what JSONP responses wrap.
pub fn encode_v3_text(packets: &[Packet]) -> String {
    if packets.is_empty() {
        // what the reference sends for an empty flush
        return "0:".to_owned();
    }
    let mut out = String::new();
    let mut one = String::new();
    for p in packets {
        one.clear();
        p.encode_text(ProtocolVersion::V3, &mut one);
        let units = one.encode_utf16().count();
        out.push_str(&units.to_string());
        out.push(':');
        out.push_str(&one);
    }
    out
}

fn push_binary_header(out: &mut Vec<u8>, kind: u8, len: usize) {
    out.push(kind);
    out.extend(len.to_string().bytes().map(|d| d - b'0'));
    out.push(0xff);
}

fn encode_v3_binary(packets: &[Packet]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut one = String::new();
    for p in packets {
        match p {
            Packet::Message(Data::Binary(b)) => {
                push_binary_header(&mut out, 1, b.len() + 1);
                out.push(BINARY_MESSAGE_TYPE);
                out.extend_from_slice(b);
            }
            _ => {
                one.clear();
                p.encode_text(ProtocolVersion::V3, &mut one);
                push_binary_header(&mut out, 0, one.len());
                out.extend_from_slice(one.as_bytes());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProtocolVersion::{V3, V4};

    fn text(s: &str) -> Packet {
        Packet::Message(Data::Text(s.into()))
    }

    fn bin(b: &[u8]) -> Packet {
        Packet::Message(Data::Binary(Bytes::copy_from_slice(b)))
    }

    fn all_types() -> Vec<Packet> {
        vec![
            Packet::Open("{}".into()),
            Packet::Close,
            Packet::Ping("probe".into()),
            Packet::Pong(String::new()),
            text("hello €"),
            bin(&[1, 2, 3]),
            Packet::Upgrade,
            Packet::Noop,
        ]
    }

    // ---- v4 ----

    #[test]
    fn v4_encode_exact() {
        let p = encode_payload(V4, &all_types(), true);
        assert_eq!(p.content_type, "text/plain; charset=UTF-8");
        assert_eq!(
            p.body,
            "0{}\x1e1\x1e2probe\x1e3\x1e4hello €\x1ebAQID\x1e5\x1e6".as_bytes()
        );
        // supports_binary is irrelevant in v4
        assert_eq!(encode_payload(V4, &all_types(), false), p);
    }

    #[test]
    fn v4_encode_single_and_empty() {
        assert_eq!(encode_payload(V4, &[text("x")], true).body, b"4x");
        assert_eq!(encode_payload(V4, &[], true).body, b"");
    }

    #[test]
    fn v4_decode() {
        let body = "0{}\x1e1\x1e2probe\x1e3\x1e4hello €\x1ebAQID\x1e5\x1e6";
        assert_eq!(decode_payload(V4, body.as_bytes(), false), Ok(all_types()));
        assert_eq!(
            decode_payload(V4, b"4hello", false),
            Ok(vec![text("hello")])
        );
        // what engine.io-client v6 sends for ["a", Uint8Array [1,2]]
        assert_eq!(
            decode_payload(V4, b"4a\x1ebAQI=", false),
            Ok(vec![text("a"), bin(&[1, 2])])
        );
    }

    #[test]
    fn v4_round_trip() {
        let packets = all_types();
        let enc = encode_payload(V4, &packets, true);
        assert_eq!(decode_payload(V4, &enc.body, false), Ok(packets));
    }

    #[test]
    fn v4_decode_errors() {
        assert_eq!(decode_payload(V4, b"", false), Err(DecodeError::Empty));
        assert_eq!(
            decode_payload(V4, b"4a\x1e", false),
            Err(DecodeError::Empty)
        );
        assert_eq!(
            decode_payload(V4, b"\x1e4a", false),
            Err(DecodeError::Empty)
        );
        assert_eq!(
            decode_payload(V4, b"4a\x1e\x1e4b", false),
            Err(DecodeError::Empty)
        );
        assert_eq!(
            decode_payload(V4, b"4a\x1e9", false),
            Err(DecodeError::UnknownType(b'9'))
        );
        assert_eq!(
            decode_payload(V4, b"4a\x1eb!", false),
            Err(DecodeError::InvalidBase64)
        );
        assert_eq!(
            decode_payload(V4, b"4\xff", false),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(
            decode_payload(V4, b"4abc", true),
            Err(DecodeError::BinaryPayloadUnsupported)
        );
        // a v3-style body on a v4 session
        // a v3-style body on a v4 session is not detected: it is a ping
        assert_eq!(
            decode_payload(V4, b"2:4a", false),
            Ok(vec![Packet::Ping(":4a".into())])
        );
    }

    // ---- v3 text ----

    #[test]
    fn v3_text_encode_exact() {
        let p = encode_payload(V3, &all_types(), false);
        assert_eq!(p.content_type, "text/plain; charset=UTF-8");
        assert_eq!(
            std::str::from_utf8(&p.body).unwrap(),
            "3:0{}1:16:2probe1:38:4hello €6:b4AQID1:51:6"
        );
    }

    #[test]
    fn v3_text_lengths_are_utf16_units() {
        let enc = |s: &str| encode_payload(V3, &[text(s)], true).body;
        assert_eq!(enc("€"), "2:4€".as_bytes());
        assert_eq!(enc("😀"), "3:4😀".as_bytes(), "non-BMP counts 2");
        assert_eq!(enc("a😀€b"), "6:4a😀€b".as_bytes());
        assert_eq!(enc(""), b"1:4");
        let long = "x".repeat(120);
        assert_eq!(enc(&long), format!("121:4{long}").as_bytes());
        assert_eq!(
            decode_payload(V3, "2:4€".as_bytes(), false),
            Ok(vec![text("€")])
        );
        assert_eq!(
            decode_payload(V3, "3:4😀2:4€".as_bytes(), false),
            Ok(vec![text("😀"), text("€")])
        );
    }

    #[test]
    fn v3_text_empty_flush() {
        let p = encode_payload(V3, &[], true);
        assert_eq!(p.body, b"0:");
        assert_eq!(p.content_type, TEXT_CONTENT_TYPE);
        assert_eq!(decode_payload(V3, b"0:", false), Ok(vec![]));
        assert_eq!(
            decode_payload(V3, b"0:0:1:6", false),
            Ok(vec![Packet::Noop])
        );
    }

    #[test]
    fn v3_text_base64_when_binary_unsupported() {
        let p = encode_payload(V3, &[text("a"), bin(&[1, 2, 3, 4])], false);
        assert_eq!(p.content_type, TEXT_CONTENT_TYPE);
        assert_eq!(p.body, b"2:4a10:b4AQIDBA==");
        assert_eq!(
            decode_payload(V3, &p.body, false),
            Ok(vec![text("a"), bin(&[1, 2, 3, 4])])
        );
    }

    #[test]
    fn v3_text_round_trip() {
        let packets = all_types();
        let enc = encode_payload(V3, &packets, false);
        assert_eq!(decode_payload(V3, &enc.body, false), Ok(packets));
    }

    #[test]
    fn v3_text_leading_zeros_accepted() {
        // the reference compares with `!=`, so "02" == 2
        assert_eq!(decode_payload(V3, b"02:4a", false), Ok(vec![text("a")]));
    }

    #[test]
    fn v3_text_decode_errors() {
        let d = |b: &[u8]| decode_payload(V3, b, false);
        assert_eq!(d(b""), Err(DecodeError::Empty));
        assert_eq!(d(b"4a"), Err(DecodeError::TrailingData));
        assert_eq!(d(b"2:4a3"), Err(DecodeError::TrailingData));
        assert_eq!(d(b"2:4ax"), Err(DecodeError::TrailingData));
        assert_eq!(d(b":4a"), Err(DecodeError::BadLength));
        assert_eq!(d(b"a:4a"), Err(DecodeError::BadLength));
        assert_eq!(d(b"-2:4a"), Err(DecodeError::BadLength));
        assert_eq!(d(b" 2:4a"), Err(DecodeError::BadLength));
        assert_eq!(d(b"2.0:4a"), Err(DecodeError::BadLength));
        assert_eq!(d(b"99999999999999999999:4"), Err(DecodeError::BadLength));
        assert_eq!(
            d("2:4😀".as_bytes()),
            Err(DecodeError::BadLength),
            "splits a surrogate pair"
        );
        assert_eq!(d(b"5:4ab"), Err(DecodeError::Truncated));
        assert_eq!(d(b"2:4a5:4ab"), Err(DecodeError::Truncated));
        assert_eq!(d(b"1:7"), Err(DecodeError::UnknownType(b'7')));
        assert_eq!(d(b"3:b4!"), Err(DecodeError::InvalidBase64));
        assert_eq!(d(b"3:b2A"), Err(DecodeError::BinaryNonMessage(2)));
        assert_eq!(d(b"2:4\xff"), Err(DecodeError::InvalidUtf8));
    }

    // ---- v3 XHR2 binary ----

    #[test]
    fn v3_binary_encode_exact() {
        let p = encode_payload(V3, &[text("hello"), bin(&[1, 2, 3])], true);
        assert_eq!(p.content_type, "application/octet-stream");
        assert_eq!(
            p.body,
            [&[0u8, 6, 0xff][..], b"4hello", &[1, 4, 0xff, 4, 1, 2, 3],].concat()
        );
    }

    #[test]
    fn v3_binary_string_lengths_are_utf8_bytes() {
        let p = encode_payload(V3, &[text("€😀"), bin(&[])], true);
        assert_eq!(
            p.body,
            [&[0u8, 8, 0xff][..], "4€😀".as_bytes(), &[1, 1, 0xff, 4]].concat()
        );
    }

    #[test]
    fn v3_binary_multi_digit_lengths() {
        let data: Vec<u8> = (0..200).map(|i| i as u8).collect();
        let p = encode_payload(V3, &[bin(&data), Packet::Ping("probe".into())], true);
        let mut expected = vec![1u8, 2, 0, 1, 0xff, 4];
        expected.extend_from_slice(&data);
        expected.extend_from_slice(&[0, 6, 0xff]);
        expected.extend_from_slice(b"2probe");
        assert_eq!(p.body, expected);
        assert_eq!(
            decode_payload(V3, &p.body, true),
            Ok(vec![bin(&data), Packet::Ping("probe".into())])
        );
    }

    #[test]
    fn v3_binary_all_types_round_trip() {
        let packets = all_types();
        let enc = encode_payload(V3, &packets, true);
        assert_eq!(enc.content_type, BINARY_CONTENT_TYPE);
        assert_eq!(decode_payload(V3, &enc.body, true), Ok(packets));
    }

    #[test]
    fn v3_binary_only_when_needed() {
        // no binary packet: text format even when the client supports XHR2
        let p = encode_payload(V3, &[text("a")], true);
        assert_eq!(p.content_type, TEXT_CONTENT_TYPE);
        assert_eq!(p.body, b"2:4a");
    }

    #[test]
    fn v3_binary_decode_hand_built() {
        // what engine.io-client 3.x POSTs for send("hi") + send(ArrayBuffer [0xde, 0xad])
        let body = [0u8, 3, 0xff, b'4', b'h', b'i', 1, 3, 0xff, 4, 0xde, 0xad];
        assert_eq!(
            decode_payload(V3, &body, true),
            Ok(vec![text("hi"), bin(&[0xde, 0xad])])
        );
        // a base64 string packet inside a binary payload is decoded too
        let body = [&[0u8, 6, 0xff][..], b"b4AQI="].concat();
        assert_eq!(decode_payload(V3, &body, true), Ok(vec![bin(&[1, 2])]));
        // a close packet
        assert_eq!(
            decode_payload(V3, &[0, 1, 0xff, b'1'], true),
            Ok(vec![Packet::Close])
        );
    }

    #[test]
    fn v3_binary_decode_errors() {
        let d = |b: &[u8]| decode_payload(V3, b, true);
        assert_eq!(d(&[]), Err(DecodeError::Empty));
        assert_eq!(
            d(&[2, 1, 0xff, b'4']),
            Err(DecodeError::UnknownPayloadKind(2))
        );
        assert_eq!(
            d(&[b'0', 1, 0xff, b'4']),
            Err(DecodeError::UnknownPayloadKind(b'0'))
        );
        assert_eq!(d(&[0, 1]), Err(DecodeError::Truncated));
        assert_eq!(d(&[0]), Err(DecodeError::Truncated));
        assert_eq!(d(&[0, 0xff, b'4']), Err(DecodeError::BadLength));
        assert_eq!(d(&[0, 10, 0xff, b'4']), Err(DecodeError::BadLength));
        assert_eq!(d(&[0, b'1', 0xff, b'4']), Err(DecodeError::BadLength));
        assert_eq!(
            d(&[0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0xff]),
            Err(DecodeError::BadLength)
        );
        assert_eq!(d(&[0, 3, 0xff, b'4', b'a']), Err(DecodeError::Truncated));
        assert_eq!(d(&[0, 0, 0xff]), Err(DecodeError::Empty));
        assert_eq!(d(&[0, 2, 0xff, b'4', 0xc3]), Err(DecodeError::InvalidUtf8));
        assert_eq!(d(&[0, 1, 0xff, b'8']), Err(DecodeError::UnknownType(b'8')));
        assert_eq!(d(&[1, 0, 0xff]), Err(DecodeError::Empty));
        assert_eq!(
            d(&[1, 2, 0xff, 2, 0]),
            Err(DecodeError::BinaryNonMessage(2))
        );
        assert_eq!(d(&[1, 2, 0xff, 9, 0]), Err(DecodeError::UnknownType(9)));
        // a good packet followed by garbage
        assert_eq!(
            d(&[0, 1, 0xff, b'6', 7]),
            Err(DecodeError::UnknownPayloadKind(7))
        );
    }

    #[test]
    fn garbage_never_panics() {
        for input in crate::engineio::packet::tests::garbage_inputs() {
            for v in [V3, V4] {
                for binary in [false, true] {
                    let Ok(packets) = decode_payload(v, &input, binary) else {
                        continue;
                    };
                    if packets.is_empty() {
                        continue; // only "0:"-style v3 bodies
                    }
                    // what decodes re-encodes to something that decodes the same
                    for supports_binary in [false, true] {
                        let enc = encode_payload(v, &packets, supports_binary);
                        let is_bin = enc.content_type == BINARY_CONTENT_TYPE;
                        assert_eq!(decode_payload(v, &enc.body, is_bin), Ok(packets.clone()));
                    }
                }
            }
        }
    }
}
