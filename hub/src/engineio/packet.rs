//! Engine.IO packets: the single-packet text and binary encodings shared by
//! the WebSocket transport and the polling payload codecs.

use super::text::Text;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

/// Engine.IO protocol revision, from the `EIO` query parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// `EIO=3`: Socket.IO v1/v2 clients (engine.io-client 3.x).
    V3,
    /// `EIO=4`: Socket.IO v3/v4 clients (engine.io-client 4+).
    V4,
}

impl ProtocolVersion {
    /// The value of the `EIO` query parameter for this revision.
    pub fn as_u8(self) -> u8 {
        match self {
            ProtocolVersion::V3 => 3,
            ProtocolVersion::V4 => 4,
        }
    }
}

/// The payload of a message packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    Text(Text),
    Binary(Bytes),
}

/// One Engine.IO packet.
///
/// Only `Message` can carry binary data: the reference clients never put
/// binary in any other packet type, so other binary packets are rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// The handshake JSON text.
    Open(String),
    Close,
    /// Data after the type digit: `""` for heartbeats, `"probe"` for upgrade probes.
    Ping(String),
    Pong(String),
    Message(Data),
    Upgrade,
    Noop,
}

/// A packet or payload that cannot be decoded. The reference servers turn
/// these into an "error" packet, which closes the session.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// An empty packet or an empty payload body.
    #[error("empty packet or payload")]
    Empty,
    /// The packet type character/byte is not one of `0`..`6` (or `b`).
    #[error("unknown packet type {0:#04x}")]
    UnknownType(u8),
    /// A binary packet whose type is not `message` (type given).
    #[error("binary data in a non-message packet (type {0})")]
    BinaryNonMessage(u8),
    #[error("invalid base64 data")]
    InvalidBase64,
    #[error("invalid UTF-8 in a text packet")]
    InvalidUtf8,
    /// A v3 length prefix that is missing, not decimal, too large, or ends
    /// inside a UTF-16 surrogate pair.
    #[error("malformed length prefix")]
    BadLength,
    /// A v3 length prefix pointing past the end of the body.
    #[error("payload truncated")]
    Truncated,
    /// Bytes after the last complete packet of a v3 payload.
    #[error("trailing data after the last packet")]
    TrailingData,
    /// A v3 XHR2 packet header whose kind byte is neither 0 (string) nor 1 (binary).
    #[error("unknown XHR2 packet kind {0}")]
    UnknownPayloadKind(u8),
    /// An `application/octet-stream` POST body on a v4 session: v4 clients
    /// never send one, and the reference server rejects it ("invalid content").
    #[error("binary payload not supported by this protocol version")]
    BinaryPayloadUnsupported,
    /// A JSONP POST body without exactly one `d` field.
    #[error("JSONP body without a `d` field")]
    MissingJsonpData,
}

/// One WebSocket frame's worth of packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsFrame {
    Text(String),
    Binary(Bytes),
}

/// Packet type bytes on the wire.
pub(crate) const TYPE_OPEN: u8 = b'0';
pub(crate) const TYPE_CLOSE: u8 = b'1';
pub(crate) const TYPE_PING: u8 = b'2';
pub(crate) const TYPE_PONG: u8 = b'3';
pub(crate) const TYPE_MESSAGE: u8 = b'4';
pub(crate) const TYPE_UPGRADE: u8 = b'5';
pub(crate) const TYPE_NOOP: u8 = b'6';

/// The message type as a raw byte, prefixed to v3 binary frames.
pub(crate) const BINARY_MESSAGE_TYPE: u8 = 4;

/// Decoding is lenient about padding and trailing bits because Node's
/// `Buffer.from(s, "base64")`, which the reference server uses, is too;
/// encoding always emits canonical padded standard base64, as Node does.
const B64_DECODE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

pub(crate) fn decode_base64(s: &str) -> Result<Bytes, DecodeError> {
    B64_DECODE
        .decode(s)
        .map(Bytes::from)
        .map_err(|_| DecodeError::InvalidBase64)
}

impl Packet {
    /// Decode a text packet as found in a WebSocket text frame or an element
    /// of a polling payload.
    ///
    /// Data after the type digit of `close`, `upgrade` and `noop` is ignored,
    /// as the reference server ignores it.
    pub fn decode_text(version: ProtocolVersion, s: &str) -> Result<Packet, DecodeError> {
        let Some(&first) = s.as_bytes().first() else {
            return Err(DecodeError::Empty);
        };
        if first == b'b' {
            return match version {
                ProtocolVersion::V4 => Ok(Packet::Message(Data::Binary(decode_base64(&s[1..])?))),
                ProtocolVersion::V3 => {
                    // v3 repeats the packet type after the `b`.
                    let Some(&ty) = s.as_bytes().get(1) else {
                        return Err(DecodeError::UnknownType(b'b'));
                    };
                    match ty {
                        TYPE_MESSAGE => Ok(Packet::Message(Data::Binary(decode_base64(&s[2..])?))),
                        TYPE_OPEN..=TYPE_NOOP => Err(DecodeError::BinaryNonMessage(ty - b'0')),
                        _ => Err(DecodeError::UnknownType(ty)),
                    }
                }
            };
        }
        // `first` is ASCII here whenever it is a valid type, so slicing at 1
        // is on a char boundary.
        let rest = || s[1..].to_owned();
        match first {
            TYPE_OPEN => Ok(Packet::Open(rest())),
            TYPE_CLOSE => Ok(Packet::Close),
            TYPE_PING => Ok(Packet::Ping(rest())),
            TYPE_PONG => Ok(Packet::Pong(rest())),
            TYPE_MESSAGE => Ok(Packet::Message(Data::Text(rest().into()))),
            TYPE_UPGRADE => Ok(Packet::Upgrade),
            TYPE_NOOP => Ok(Packet::Noop),
            other => Err(DecodeError::UnknownType(other)),
        }
    }

    /// Decode a WebSocket text frame's packet, owning it: a message keeps
    /// the frame's allocation (no copy of its text); other packets as
    /// [`Packet::decode_text`].
    pub fn decode_ws_text(version: ProtocolVersion, s: String) -> Result<Packet, DecodeError> {
        if s.as_bytes().first() == Some(&TYPE_MESSAGE) {
            return Ok(Packet::Message(Data::Text(Text::from_string_tail(s, 1))));
        }
        Packet::decode_text(version, &s)
    }

    /// Decode a WebSocket binary frame: in v4 the frame is the raw message; in
    /// v3 its first byte is the packet type (always 4 from real clients).
    pub fn decode_ws_binary(version: ProtocolVersion, frame: Bytes) -> Result<Packet, DecodeError> {
        match version {
            ProtocolVersion::V4 => Ok(Packet::Message(Data::Binary(frame))),
            ProtocolVersion::V3 => {
                let Some(&ty) = frame.first() else {
                    return Err(DecodeError::Empty);
                };
                match ty {
                    BINARY_MESSAGE_TYPE => Ok(Packet::Message(Data::Binary(frame.slice(1..)))),
                    0..=6 => Err(DecodeError::BinaryNonMessage(ty)),
                    _ => Err(DecodeError::UnknownType(ty)),
                }
            }
        }
    }

    /// Encode for one WebSocket frame. Binary messages stay binary (WebSocket
    /// has native binary frames); everything else is a text frame.
    pub fn encode_ws(&self, version: ProtocolVersion) -> WsFrame {
        match self {
            Packet::Message(Data::Binary(b)) => match version {
                ProtocolVersion::V4 => WsFrame::Binary(b.clone()),
                ProtocolVersion::V3 => {
                    let mut out = BytesMut::with_capacity(b.len() + 1);
                    out.put_u8(BINARY_MESSAGE_TYPE);
                    out.extend_from_slice(b);
                    WsFrame::Binary(out.freeze())
                }
            },
            _ => {
                let mut s = String::with_capacity(self.text_len_hint());
                self.encode_text(version, &mut s);
                WsFrame::Text(s)
            }
        }
    }

    /// Encode as text, for a polling payload element (binary as base64) or a
    /// WebSocket text frame.
    pub fn encode_text(&self, version: ProtocolVersion, out: &mut String) {
        let (ty, data): (u8, &str) = match self {
            Packet::Open(s) => (TYPE_OPEN, s),
            Packet::Close => (TYPE_CLOSE, ""),
            Packet::Ping(s) => (TYPE_PING, s),
            Packet::Pong(s) => (TYPE_PONG, s),
            Packet::Message(Data::Text(s)) => (TYPE_MESSAGE, s),
            Packet::Upgrade => (TYPE_UPGRADE, ""),
            Packet::Noop => (TYPE_NOOP, ""),
            Packet::Message(Data::Binary(b)) => {
                out.push('b');
                if version == ProtocolVersion::V3 {
                    out.push('4');
                }
                STANDARD.encode_string(b, out);
                return;
            }
        };
        out.push(ty as char);
        out.push_str(data);
    }

    /// Convenience wrapper around [`Packet::encode_text`].
    pub fn to_text(&self, version: ProtocolVersion) -> String {
        let mut s = String::with_capacity(self.text_len_hint());
        self.encode_text(version, &mut s);
        s
    }

    /// True for a message carrying binary data.
    pub fn is_binary(&self) -> bool {
        matches!(self, Packet::Message(Data::Binary(_)))
    }

    fn text_len_hint(&self) -> usize {
        match self {
            Packet::Open(s) | Packet::Ping(s) | Packet::Pong(s) => s.len() + 1,
            Packet::Message(Data::Text(s)) => s.len() + 1,
            Packet::Message(Data::Binary(b)) => b.len().div_ceil(3) * 4 + 2,
            _ => 1,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ProtocolVersion::{V3, V4};

    fn text(s: &str) -> Packet {
        Packet::Message(Data::Text(s.into()))
    }

    fn bin(b: &[u8]) -> Packet {
        Packet::Message(Data::Binary(Bytes::copy_from_slice(b)))
    }

    /// Every text packet type, with its encoding, identical in both versions.
    fn text_cases() -> Vec<(Packet, &'static str)> {
        vec![
            (Packet::Open(r#"{"sid":"abc"}"#.into()), r#"0{"sid":"abc"}"#),
            (Packet::Open(String::new()), "0"),
            (Packet::Close, "1"),
            (Packet::Ping(String::new()), "2"),
            (Packet::Ping("probe".into()), "2probe"),
            (Packet::Pong(String::new()), "3"),
            (Packet::Pong("probe".into()), "3probe"),
            (text("hello"), "4hello"),
            (text(""), "4"),
            (text("€ 😀 \u{1e}\n"), "4€ 😀 \u{1e}\n"),
            (Packet::Upgrade, "5"),
            (Packet::Noop, "6"),
        ]
    }

    #[test]
    fn text_packets_round_trip_both_versions() {
        for v in [V3, V4] {
            for (packet, wire) in text_cases() {
                assert_eq!(packet.to_text(v), wire, "{v:?} {packet:?}");
                assert_eq!(
                    Packet::decode_text(v, wire),
                    Ok(packet.clone()),
                    "{v:?} {wire}"
                );
                assert_eq!(
                    Packet::decode_ws_text(v, wire.to_owned()),
                    Ok(packet.clone()),
                    "{v:?} {wire}"
                );
                assert_eq!(packet.encode_ws(v), WsFrame::Text(wire.to_owned()));
                assert!(!packet.is_binary());
            }
        }
    }

    #[test]
    fn encode_text_appends() {
        let mut out = String::from("xx");
        text("a").encode_text(V4, &mut out);
        Packet::Noop.encode_text(V4, &mut out);
        bin(b"\x01").encode_text(V3, &mut out);
        assert_eq!(out, "xx4a6b4AQ==");
    }

    #[test]
    fn data_is_ignored_on_dataless_types() {
        for v in [V3, V4] {
            assert_eq!(Packet::decode_text(v, "1xyz"), Ok(Packet::Close));
            assert_eq!(Packet::decode_text(v, "5x"), Ok(Packet::Upgrade));
            assert_eq!(Packet::decode_text(v, "6€"), Ok(Packet::Noop));
        }
    }

    #[test]
    fn base64_v4() {
        let p = bin(&[1, 2, 3, 4]);
        assert_eq!(p.to_text(V4), "bAQIDBA==");
        assert_eq!(Packet::decode_text(V4, "bAQIDBA=="), Ok(p.clone()));
        // unpadded and non-canonical trailing bits are accepted, like Node
        assert_eq!(Packet::decode_text(V4, "bAQIDBA"), Ok(p.clone()));
        assert_eq!(Packet::decode_text(V4, "bAQIDBB=="), Ok(p));
        assert_eq!(Packet::decode_text(V4, "b"), Ok(bin(b"")));
        assert_eq!(bin(b"").to_text(V4), "b");
        assert!(bin(b"").is_binary());
        // `b4` in v4 is base64 of whatever "4..." decodes to, not a type digit
        assert_eq!(
            Packet::decode_text(V4, "b4AQI"),
            Ok(bin(&[0xe0, 0x04, 0x08]))
        );
    }

    #[test]
    fn base64_v3() {
        let p = bin(&[1, 2, 3, 4]);
        assert_eq!(p.to_text(V3), "b4AQIDBA==");
        assert_eq!(Packet::decode_text(V3, "b4AQIDBA=="), Ok(p));
        assert_eq!(Packet::decode_text(V3, "b4"), Ok(bin(b"")));
        assert_eq!(bin(b"").to_text(V3), "b4");
        assert_eq!(
            bin(&[0xff; 5]).to_text(V3),
            "b4//////8=",
            "standard alphabet, not url-safe"
        );
    }

    #[test]
    fn base64_errors() {
        assert_eq!(
            Packet::decode_text(V4, "b!!!!"),
            Err(DecodeError::InvalidBase64)
        );
        assert_eq!(
            Packet::decode_text(V4, "bA"),
            Err(DecodeError::InvalidBase64)
        );
        assert_eq!(
            Packet::decode_text(V4, "b-_-_"),
            Err(DecodeError::InvalidBase64)
        );
        assert_eq!(
            Packet::decode_text(V3, "b4AQ=I"),
            Err(DecodeError::InvalidBase64)
        );
        assert_eq!(
            Packet::decode_text(V3, "b"),
            Err(DecodeError::UnknownType(b'b'))
        );
        assert_eq!(
            Packet::decode_text(V3, "b9AQ=="),
            Err(DecodeError::UnknownType(b'9'))
        );
        assert_eq!(
            Packet::decode_text(V3, "b2AQ=="),
            Err(DecodeError::BinaryNonMessage(2))
        );
        assert_eq!(
            Packet::decode_text(V3, "b0"),
            Err(DecodeError::BinaryNonMessage(0))
        );
    }

    #[test]
    fn text_decode_errors() {
        for v in [V3, V4] {
            assert_eq!(Packet::decode_text(v, ""), Err(DecodeError::Empty));
            assert_eq!(
                Packet::decode_text(v, "7"),
                Err(DecodeError::UnknownType(b'7'))
            );
            assert_eq!(
                Packet::decode_text(v, "x4"),
                Err(DecodeError::UnknownType(b'x'))
            );
            assert_eq!(
                Packet::decode_text(v, "€"),
                Err(DecodeError::UnknownType(0xe2))
            );
            assert_eq!(
                Packet::decode_text(v, " 4"),
                Err(DecodeError::UnknownType(b' '))
            );
        }
    }

    #[test]
    fn ws_binary_v4_is_raw() {
        let p = bin(&[0, 1, 2, 3]);
        assert_eq!(
            p.encode_ws(V4),
            WsFrame::Binary(Bytes::from_static(&[0, 1, 2, 3]))
        );
        assert_eq!(
            Packet::decode_ws_binary(V4, Bytes::from_static(&[0, 1, 2, 3])),
            Ok(p)
        );
        assert_eq!(Packet::decode_ws_binary(V4, Bytes::new()), Ok(bin(b"")));
        assert_eq!(bin(b"").encode_ws(V4), WsFrame::Binary(Bytes::new()));
    }

    #[test]
    fn ws_binary_v3_has_type_byte() {
        let p = bin(&[1, 2, 3]);
        assert_eq!(
            p.encode_ws(V3),
            WsFrame::Binary(Bytes::from_static(&[4, 1, 2, 3]))
        );
        assert_eq!(
            Packet::decode_ws_binary(V3, Bytes::from_static(&[4, 1, 2, 3])),
            Ok(p)
        );
        assert_eq!(
            Packet::decode_ws_binary(V3, Bytes::from_static(&[4])),
            Ok(bin(b""))
        );
        assert_eq!(
            bin(b"").encode_ws(V3),
            WsFrame::Binary(Bytes::from_static(&[4]))
        );
    }

    #[test]
    fn ws_binary_v3_errors() {
        assert_eq!(
            Packet::decode_ws_binary(V3, Bytes::new()),
            Err(DecodeError::Empty)
        );
        assert_eq!(
            Packet::decode_ws_binary(V3, Bytes::from_static(&[2, 1])),
            Err(DecodeError::BinaryNonMessage(2))
        );
        assert_eq!(
            Packet::decode_ws_binary(V3, Bytes::from_static(b"4abc")),
            Err(DecodeError::UnknownType(b'4'))
        );
        assert_eq!(
            Packet::decode_ws_binary(V3, Bytes::from_static(&[7])),
            Err(DecodeError::UnknownType(7))
        );
    }

    #[test]
    fn version_numbers() {
        assert_eq!(V3.as_u8(), 3);
        assert_eq!(V4.as_u8(), 4);
    }

    #[test]
    fn error_messages_are_readable() {
        assert_eq!(
            DecodeError::UnknownType(b'x').to_string(),
            "unknown packet type 0x78"
        );
        assert_eq!(DecodeError::Empty.to_string(), "empty packet or payload");
    }

    /// Deterministic garbage for the no-panic tests of every decoder: random
    /// bytes, random runs of bytes the decoders care about, and valid inputs
    /// with random bytes changed, inserted or cut, to reach the deeper paths.
    pub(crate) fn garbage_inputs() -> Vec<Vec<u8>> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x05ee_de10);
        const INTERESTING: &[u8] =
            b"0123456789b:\x1e\xff\x00\x01\x04=+/%&d\\n\xe2\x82\xac\xf0\x9f\x98\x80";
        const VALID: &[&[u8]] = &[
            b"4hello\x1ebAQIDBA==\x1e2probe\x1e6",
            "3:0{}1:16:2probe2:4€10:b4AQIDBA==".as_bytes(),
            b"\x00\x06\xff4hello\x01\x04\xff\x04\x01\x02\x03\x00\x01\xff1",
            b"\x01\x01\x01\xff\x04aaaaaaaaaa\x00\x02\xff4a",
            b"d=3%3A4a%5Cnb&x=1",
            b"EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAAAAAA&j=1&b64=1",
            b"AFxyzxyzxyzxyzxyzxyzxyzw",
        ];
        let mut out = vec![Vec::new()];
        for i in 0..6000 {
            let v: Vec<u8> = match i % 3 {
                0 => (0..rng.random_range(0..40)).map(|_| rng.random()).collect(),
                1 => (0..rng.random_range(0..40))
                    .map(|_| INTERESTING[rng.random_range(0..INTERESTING.len())])
                    .collect(),
                _ => {
                    let mut v = VALID[rng.random_range(0..VALID.len())].to_vec();
                    for _ in 0..rng.random_range(0..4) {
                        let at = rng.random_range(0..=v.len());
                        let byte = if rng.random() {
                            INTERESTING[rng.random_range(0..INTERESTING.len())]
                        } else {
                            rng.random()
                        };
                        match rng.random_range(0..3) {
                            0 if at < v.len() => v[at] = byte,
                            1 => v.insert(at, byte),
                            _ => v.truncate(at),
                        }
                    }
                    v
                }
            };
            out.push(v);
        }
        out
    }

    #[test]
    fn garbage_never_panics() {
        for input in garbage_inputs() {
            for v in [V3, V4] {
                let _ = Packet::decode_ws_binary(v, Bytes::from(input.clone()));
                if let Ok(s) = std::str::from_utf8(&input) {
                    if let Ok(p) = Packet::decode_text(v, s) {
                        // whatever decodes must re-encode and decode to the same packet
                        let again = Packet::decode_text(v, &p.to_text(v));
                        assert_eq!(again, Ok(p));
                    }
                }
                let lossy = String::from_utf8_lossy(&input);
                let _ = Packet::decode_text(v, &lossy);
            }
        }
    }
}
