//! Socket.IO packet encoding: `<type>[<attachments>-][<nsp>,][<id>][<JSON>]`.

use super::packet::{Packet, PacketType};
use std::fmt::Write as _;

/// Append `<type>[<attachments>-][<nsp>,][<id>]` to `out`.
///
/// The namespace and its comma are omitted for `"/"` (and `""`, as the
/// reference does); the attachment count is written only for
/// BinaryEvent/BinaryAck. Lets callers write the header then stream the
/// JSON themselves (e.g. raw JSON shared between many recipients).
pub fn encode_header(
    kind: PacketType,
    nsp: &str,
    attachments: usize,
    id: Option<u64>,
    out: &mut String,
) {
    write_header(kind, nsp, None, attachments, id, out);
}

/// Where a header is written: a `String`, or a text written in place of
/// its known length (see [`header_len`]).
pub trait HeaderOut {
    fn push_str(&mut self, s: &str);
}

impl HeaderOut for String {
    #[inline]
    fn push_str(&mut self, s: &str) {
        String::push_str(self, s)
    }
}

/// As [`encode_header`], into any [`HeaderOut`].
#[inline]
pub fn encode_header_into(
    kind: PacketType,
    nsp: &str,
    attachments: usize,
    id: Option<u64>,
    out: &mut impl HeaderOut,
) {
    write_header(kind, nsp, None, attachments, id, out);
}

/// The length of what [`encode_header`] writes.
#[inline]
pub fn header_len(kind: PacketType, nsp: &str, attachments: usize, id: Option<u64>) -> usize {
    let mut len = 1;
    if kind.is_binary() {
        len += decimal_len(attachments as u64) + 1;
    }
    if !nsp.is_empty() && nsp != "/" {
        len += nsp.len() + 1;
    }
    if let Some(id) = id {
        len += decimal_len(id);
    }
    len
}

/// Digits of `n` in decimal.
#[inline]
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |digits| digits as usize + 1)
}

/// Append the whole text message for `packet`: the header, then the compact
/// JSON of `data` with key order kept.
///
/// The attachment count is `packet.attachments.len()`; the attachments
/// themselves are not written: callers send them as binary messages after
/// this one. A `query` (V4 CONNECT, client side) is written as
/// `<nsp>?<query>,`, even for `"/"`, so that it survives a round trip.
pub fn encode_packet(packet: &Packet, out: &mut String) {
    write_header(
        packet.kind,
        &packet.nsp,
        packet.query.as_deref(),
        packet.attachments.len(),
        packet.id,
        out,
    );
    if let Some(data) = &packet.data {
        // Value's Display is serde_json's compact writer, straight into `out`.
        let _ = write!(out, "{data}");
    }
}

// Inlined: an ack's header is a digit and its id, and the call cost as much.
#[inline]
fn write_header(
    kind: PacketType,
    nsp: &str,
    query: Option<&str>,
    attachments: usize,
    id: Option<u64>,
    out: &mut impl HeaderOut,
) {
    out.push_str(kind.as_str());
    // itoa: `fmt` costs as much as the rest of an ack's header.
    if kind.is_binary() {
        out.push_str(itoa::Buffer::new().format(attachments));
        out.push_str("-");
    }
    match query {
        Some(q) => {
            out.push_str(if nsp.is_empty() { "/" } else { nsp });
            out.push_str("?");
            out.push_str(q);
            out.push_str(",");
        }
        None if !nsp.is_empty() && nsp != "/" => {
            out.push_str(nsp);
            out.push_str(",");
        }
        None => {}
    }
    if let Some(id) = id {
        out.push_str(itoa::Buffer::new().format(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socketio::packet::placeholder;
    use bytes::Bytes;
    use serde_json::{json, Value};

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

    fn header(kind: PacketType, nsp: &str, n: usize, id: Option<u64>) -> String {
        let mut s = String::new();
        encode_header(kind, nsp, n, id, &mut s);
        assert_eq!(header_len(kind, nsp, n, id), s.len(), "{s}");
        s
    }

    #[test]
    fn headers() {
        use PacketType::*;
        assert_eq!(header(Connect, "/", 0, None), "0");
        assert_eq!(header(Connect, "", 0, None), "0");
        assert_eq!(header(Connect, "/admin", 0, None), "0/admin,");
        assert_eq!(header(Disconnect, "/chat", 0, None), "1/chat,");
        assert_eq!(header(Event, "/", 0, Some(12)), "212");
        assert_eq!(header(Event, "/chat", 0, Some(12)), "2/chat,12");
        assert_eq!(header(Ack, "/chat", 0, Some(7)), "3/chat,7");
        assert_eq!(header(ConnectError, "/x", 0, None), "4/x,");
        assert_eq!(header(BinaryEvent, "/", 1, None), "51-");
        assert_eq!(header(BinaryEvent, "/admin", 2, Some(3)), "52-/admin,3");
        assert_eq!(header(BinaryAck, "/", 0, Some(15)), "60-15");
        assert_eq!(header(Ack, "/", 0, Some(u64::MAX)), "318446744073709551615");
        for id in [0, 9, 10, 99, 100, 999_999, 1_000_000] {
            assert_eq!(header(Ack, "/", 0, Some(id)), format!("3{id}"));
            assert_eq!(header(BinaryAck, "/", id as usize, None), format!("6{id}-"));
        }
        // The count is only written for binary types.
        assert_eq!(header(Event, "/", 3, None), "2");
        assert_eq!(header(Ack, "/", 3, Some(1)), "31");
    }

    #[test]
    fn header_appends() {
        let mut s = String::from("4");
        encode_header(PacketType::Event, "/a", 0, None, &mut s);
        s.push_str(r#"["x"]"#);
        assert_eq!(s, r#"42/a,["x"]"#);
    }

    #[test]
    fn examples() {
        use PacketType::*;
        let cases = [
            (
                pkt(Event, "/", None, Some(json!(["hello", {"a": 1}]))),
                r#"2["hello",{"a":1}]"#,
            ),
            (
                pkt(Event, "/chat", Some(12), Some(json!(["x"]))),
                r#"2/chat,12["x"]"#,
            ),
            (
                pkt(Connect, "/", None, Some(json!({"sid": "abc"}))),
                r#"0{"sid":"abc"}"#,
            ),
            (pkt(Connect, "/admin", None, None), "0/admin,"),
            (pkt(Connect, "/", None, None), "0"),
            (
                pkt(
                    ConnectError,
                    "/random",
                    None,
                    Some(json!({"message": "Invalid namespace"})),
                ),
                r#"4/random,{"message":"Invalid namespace"}"#,
            ),
            (
                pkt(ConnectError, "/admin", None, Some(json!("Not authorized"))),
                r#"4/admin,"Not authorized""#,
            ),
            (pkt(Disconnect, "/chat", None, None), "1/chat,"),
            (pkt(Disconnect, "/", None, None), "1"),
            (
                pkt(Ack, "/chat", Some(7), Some(json!([1, 2]))),
                "3/chat,7[1,2]",
            ),
            (pkt(Ack, "/", Some(12), Some(json!([]))), "312[]"),
        ];
        for (p, want) in cases {
            assert_eq!(enc(&p), want);
        }
    }

    #[test]
    fn binary_packets_write_the_count() {
        let mut p = pkt(
            PacketType::BinaryEvent,
            "/",
            None,
            Some(json!(["bin", placeholder(0)])),
        );
        p.attachments.push(Bytes::from_static(&[1, 2, 3]));
        assert_eq!(enc(&p), r#"51-["bin",{"_placeholder":true,"num":0}]"#);

        p.nsp = "/admin".into();
        p.id = Some(1);
        p.kind = PacketType::BinaryAck;
        p.data = Some(json!([placeholder(0), placeholder(1)]));
        p.attachments.push(Bytes::new());
        assert_eq!(
            enc(&p),
            r#"62-/admin,1[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );

        // A binary packet with no attachments still says so.
        let p = pkt(PacketType::BinaryEvent, "/", None, Some(json!(["e"])));
        assert_eq!(enc(&p), r#"50-["e"]"#);
    }

    #[test]
    fn attachments_on_non_binary_types_are_not_counted() {
        let mut p = pkt(PacketType::Event, "/", None, Some(json!(["e"])));
        p.attachments.push(Bytes::from_static(b"x"));
        assert_eq!(enc(&p), r#"2["e"]"#);
    }

    #[test]
    fn json_is_compact_and_keeps_key_order() {
        let data: Value = serde_json::from_str(
            r#"[ "ev" , { "z" : 1 , "a" : [ 2 , { "m" : null , "b" : true } ] } ]"#,
        )
        .unwrap();
        let p = pkt(PacketType::Event, "/", None, Some(data));
        assert_eq!(enc(&p), r#"2["ev",{"z":1,"a":[2,{"m":null,"b":true}]}]"#);
    }

    #[test]
    fn json_escapes() {
        let p = pkt(
            PacketType::Event,
            "/",
            None,
            Some(json!(["q\"uote\\ \n\u{1} é 😀", -1.5, 1e300])),
        );
        assert_eq!(enc(&p), "2[\"q\\\"uote\\\\ \\n\\u0001 é 😀\",-1.5,1e+300]");
    }

    #[test]
    fn v4_connect_query() {
        let mut p = pkt(PacketType::Connect, "/admin", None, None);
        p.query = Some("token=1&x=%20".into());
        assert_eq!(enc(&p), "0/admin?token=1&x=%20,");
        p.nsp = "/".into();
        assert_eq!(enc(&p), "0/?token=1&x=%20,");
        p.nsp = String::new();
        assert_eq!(enc(&p), "0/?token=1&x=%20,");
    }

    #[test]
    fn encode_appends() {
        let mut s = String::from("4");
        encode_packet(
            &pkt(PacketType::Event, "/", Some(1), Some(json!(["a"]))),
            &mut s,
        );
        assert_eq!(s, r#"421["a"]"#);
    }
}
