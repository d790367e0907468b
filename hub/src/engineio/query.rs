//! The Engine.IO query string of polling and WebSocket requests.

use std::borrow::Cow;

use super::error::ErrorCode;
use super::packet::ProtocolVersion;

/// Node's `querystring.parse`, which the reference uses, stops after this
/// many fields; matching it keeps a huge query from costing more here.
const MAX_QUERY_FIELDS: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Polling,
    WebSocket,
}

impl TransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Polling => "polling",
            TransportKind::WebSocket => "websocket",
        }
    }
}

/// The parsed query. Keys are case-sensitive, as in the reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineQuery {
    pub version: ProtocolVersion,
    pub transport: TransportKind,
    /// `None` for a handshake (an empty `sid=` counts as absent, as in the reference).
    pub sid: Option<String>,
    /// The client asked for base64 instead of XHR2 binary payloads (v3).
    pub b64: bool,
    /// The raw `j` value: the polling request is JSONP. Only the digits are
    /// used when wrapping (see [`super::jsonp::wrap_jsonp`]).
    pub jsonp: Option<String>,
    /// Every field, percent-decoded and in order (including `EIO`,
    /// `transport`, `t`, `sid`), as the application's handshake query.
    pub params: Vec<(String, String)>,
}

impl EngineQuery {
    /// The first value of `key`, for the application.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What Node's `querystring` makes of a key: absent, a string, or (when
/// repeated) an array, which none of the reference's checks accept.
enum Field<'a> {
    Absent,
    One(&'a str),
    Many,
}

fn field<'a>(params: &'a [(String, String)], key: &str) -> Field<'a> {
    let mut values = params.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
    match (values.next(), values.next()) {
        (None, _) => Field::Absent,
        (Some(v), None) => Field::One(v),
        (Some(_), Some(_)) => Field::Many,
    }
}

/// Parse the query string (with or without its leading `?`).
///
/// The checks run in the reference server's order: the transport first
/// (`verify`), then the sid, then the protocol version (`handshake`). Unlike
/// the reference, which treats any `EIO` other than `4` as 3, a missing or
/// unknown `EIO` is refused; and `EIO` is checked on every request, not only
/// on handshakes (clients always send it). On requests with a sid, the
/// session's own version is authoritative.
pub fn parse_query(raw: &str, allow_eio3: bool) -> Result<EngineQuery, ErrorCode> {
    let raw = raw.strip_prefix('?').unwrap_or(raw);
    let params: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
        .take(MAX_QUERY_FIELDS)
        .map(|(k, v)| (Cow::into_owned(k), Cow::into_owned(v)))
        .collect();

    let transport = match field(&params, "transport") {
        Field::One("polling") => TransportKind::Polling,
        Field::One("websocket") => TransportKind::WebSocket,
        _ => return Err(ErrorCode::UnknownTransport),
    };

    let sid = match field(&params, "sid") {
        Field::Absent | Field::One("") => None,
        Field::One(s) => Some(s.to_owned()),
        // an array never names a session
        Field::Many => return Err(ErrorCode::UnknownSid),
    };

    let version = match field(&params, "EIO") {
        Field::One("4") => ProtocolVersion::V4,
        Field::One("3") if allow_eio3 => ProtocolVersion::V3,
        _ => return Err(ErrorCode::UnsupportedProtocolVersion),
    };

    // the reference tests truthiness: any non-empty value, even "0" or
    // "false", and an array, mean base64
    let b64 = match field(&params, "b64") {
        Field::Absent | Field::One("") => false,
        Field::One(_) | Field::Many => true,
    };

    // the reference picks JSONP when `j` is a string, even an empty one
    let jsonp = match field(&params, "j") {
        Field::One(j) => Some(j.to_owned()),
        Field::Absent | Field::Many => None,
    };

    Ok(EngineQuery {
        version,
        transport,
        sid,
        b64,
        jsonp,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> EngineQuery {
        parse_query(raw, true).unwrap()
    }

    #[test]
    fn v4_polling_handshake() {
        let q = parse_query("EIO=4&transport=polling&t=N8hyd6w", false).unwrap();
        assert_eq!(q.version, ProtocolVersion::V4);
        assert_eq!(q.transport, TransportKind::Polling);
        assert_eq!(q.sid, None);
        assert!(!q.b64);
        assert_eq!(q.jsonp, None);
        assert_eq!(
            q.params,
            [
                ("EIO".to_owned(), "4".to_owned()),
                ("transport".to_owned(), "polling".to_owned()),
                ("t".to_owned(), "N8hyd6w".to_owned()),
            ]
        );
        assert_eq!(q.get("t"), Some("N8hyd6w"));
        assert_eq!(q.get("nope"), None);
    }

    #[test]
    fn v4_websocket_with_sid_and_app_params() {
        let q = ok("?EIO=4&transport=websocket&sid=AB-c_d&token=a%20b+c&x=%E2%82%AC&flag");
        assert_eq!(q.transport, TransportKind::WebSocket);
        assert_eq!(q.sid.as_deref(), Some("AB-c_d"));
        assert_eq!(q.get("token"), Some("a b c"));
        assert_eq!(q.get("x"), Some("€"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.params.len(), 6);
        assert_eq!(TransportKind::WebSocket.as_str(), "websocket");
        assert_eq!(TransportKind::Polling.as_str(), "polling");
    }

    #[test]
    fn v3_flags() {
        let q = ok("EIO=3&transport=polling&b64=1&j=4");
        assert_eq!(q.version, ProtocolVersion::V3);
        assert!(q.b64);
        assert_eq!(q.jsonp.as_deref(), Some("4"));
        assert!(ok("EIO=3&transport=polling&b64=0").b64, "truthy string");
        assert!(ok("EIO=3&transport=polling&b64=1&b64=").b64, "array");
        assert!(!ok("EIO=3&transport=polling&b64=").b64);
        assert_eq!(ok("EIO=3&transport=polling&j=").jsonp.as_deref(), Some(""));
        assert_eq!(ok("EIO=3&transport=polling&j=1&j=2").jsonp, None);
        assert_eq!(
            ok("EIO=3&transport=polling&j=%3Cx").jsonp.as_deref(),
            Some("<x")
        );
    }

    #[test]
    fn empty_sid_is_a_handshake() {
        assert_eq!(ok("EIO=4&transport=polling&sid=").sid, None);
    }

    #[test]
    fn unknown_transport() {
        for raw in [
            "",
            "EIO=4",
            "EIO=4&transport=",
            "EIO=4&transport=flashsocket",
            "EIO=4&transport=Polling",
            "EIO=4&transport=polling&transport=polling",
            "EIO=4&Transport=polling",
            // transport is checked before the version
            "EIO=9&transport=xhr",
            "transport=webtransport",
        ] {
            assert_eq!(
                parse_query(raw, true),
                Err(ErrorCode::UnknownTransport),
                "{raw}"
            );
        }
    }

    #[test]
    fn unsupported_protocol_version() {
        for raw in [
            "transport=polling",
            "EIO=&transport=polling",
            "EIO=5&transport=polling",
            "EIO=2&transport=polling",
            "EIO=04&transport=polling",
            "EIO=4&EIO=4&transport=polling",
            "eio=4&transport=polling",
        ] {
            assert_eq!(
                parse_query(raw, true),
                Err(ErrorCode::UnsupportedProtocolVersion),
                "{raw}"
            );
        }
        assert_eq!(
            parse_query("EIO=3&transport=polling", false),
            Err(ErrorCode::UnsupportedProtocolVersion)
        );
        assert_eq!(
            parse_query("EIO=3&transport=websocket&sid=x", false),
            Err(ErrorCode::UnsupportedProtocolVersion)
        );
        assert!(parse_query("EIO=3&transport=polling", true).is_ok());
    }

    #[test]
    fn repeated_sid_is_unknown() {
        assert_eq!(
            parse_query("EIO=4&transport=polling&sid=a&sid=b", true),
            Err(ErrorCode::UnknownSid)
        );
        // sid is checked before the version, transport before the sid
        assert_eq!(
            parse_query("EIO=5&transport=polling&sid=a&sid=b", true),
            Err(ErrorCode::UnknownSid)
        );
        assert_eq!(
            parse_query("transport=x&sid=a&sid=b", true),
            Err(ErrorCode::UnknownTransport)
        );
    }

    #[test]
    fn field_limit() {
        let raw = "a=1&".repeat(998) + "EIO=4&transport=polling";
        assert!(parse_query(&raw, true).is_ok());
        let raw = "a=1&".repeat(999) + "EIO=4&transport=polling";
        assert_eq!(parse_query(&raw, true), Err(ErrorCode::UnknownTransport));
    }

    #[test]
    fn garbage_never_panics() {
        for input in crate::engineio::packet::tests::garbage_inputs() {
            let s = String::from_utf8_lossy(&input);
            let _ = parse_query(&s, true);
            let _ = parse_query(&format!("EIO=4&transport=polling&{s}"), false);
        }
    }
}
