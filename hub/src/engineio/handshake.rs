//! The handshake (open packet) JSON.

use super::jsonp::push_json_string;

/// Defaults of the reference server, which clients and tests expect.
pub const DEFAULT_PING_INTERVAL_MS: u64 = 25_000;
pub const DEFAULT_PING_TIMEOUT_MS: u64 = 20_000;
pub const DEFAULT_MAX_PAYLOAD: u64 = 1_000_000;

/// The open packet JSON, compact and in the reference key order:
/// `{"sid":..,"upgrades":[..],"pingInterval":..,"pingTimeout":..,"maxPayload":..}`.
///
/// `maxPayload` is sent to v3 clients too: the reference server (engine.io
/// 6, `Socket#onOpen`) does not distinguish, and v3 clients ignore unknown keys.
pub fn open_json(
    sid: &str,
    upgrades: &[&str],
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: u64,
) -> String {
    let mut out = String::with_capacity(128);
    out.push_str("{\"sid\":");
    push_json_string(&mut out, sid, false);
    out.push_str(",\"upgrades\":[");
    for (i, u) in upgrades.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(&mut out, u, false);
    }
    out.push_str("],\"pingInterval\":");
    out.push_str(&ping_interval_ms.to_string());
    out.push_str(",\"pingTimeout\":");
    out.push_str(&ping_timeout_ms.to_string());
    out.push_str(",\"maxPayload\":");
    out.push_str(&max_payload.to_string());
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_handshake_exact() {
        assert_eq!(
            open_json(
                "AAbcd-_",
                &["websocket"],
                DEFAULT_PING_INTERVAL_MS,
                DEFAULT_PING_TIMEOUT_MS,
                DEFAULT_MAX_PAYLOAD
            ),
            r#"{"sid":"AAbcd-_","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
    }

    #[test]
    fn websocket_handshake_exact() {
        assert_eq!(
            open_json("x", &[], 300, 200, 100),
            r#"{"sid":"x","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":100}"#
        );
    }

    #[test]
    fn several_upgrades_and_escaping() {
        assert_eq!(
            open_json("a\"b", &["websocket", "webtransport"], 1, 2, 3),
            r#"{"sid":"a\"b","upgrades":["websocket","webtransport"],"pingInterval":1,"pingTimeout":2,"maxPayload":3}"#
        );
    }

    #[test]
    fn parses_as_json_in_key_order() {
        let s = open_json("sid", &["websocket"], 25000, 20000, u64::MAX);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "sid",
                "upgrades",
                "pingInterval",
                "pingTimeout",
                "maxPayload"
            ]
        );
        assert_eq!(v["maxPayload"], serde_json::json!(u64::MAX));
        // and matches serde_json's compact output
        assert_eq!(serde_json::to_string(&v).unwrap(), s);
    }
}
