//! WebSocket opening handshake (RFC 6455 4.2), server side, sans-IO.
//!
//! Checks and answers mirror the Node `ws` server that engine.io uses, so clients see the same
//! 101 bytes and the same rejection reasons.

use super::deflate::{self, Negotiated};
use crate::http::request::{Method, Request};
use crate::http::response::Response;

/// Why an upgrade request was refused. [`WsHandshakeError::response`] is the answer to send
/// before closing the connection.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsHandshakeError {
    #[error("Invalid HTTP method")]
    Method,
    #[error("Invalid HTTP version")]
    HttpVersion,
    #[error("Invalid Upgrade header")]
    Upgrade,
    #[error("Invalid Connection header")]
    Connection,
    #[error("Missing or invalid Sec-WebSocket-Version header")]
    Version,
    #[error("Missing or invalid Sec-WebSocket-Key header")]
    Key,
}

impl WsHandshakeError {
    /// 405 for a non-GET (as `ws` answers), 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            WsHandshakeError::Method => 405,
            _ => 400,
        }
    }

    /// The rejection as `ws` sends it: the reason as a `text/html` body. Write it with
    /// `keep_alive = false`.
    pub fn response(&self) -> Response {
        Response::new(self.status()).body("text/html", self.to_string())
    }
}

/// An accepted upgrade: the 101 answer to write, and the compression agreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The `101 Switching Protocols` answer.
    pub response: Vec<u8>,
    /// permessage-deflate as agreed, if it was offered, acceptable and allowed.
    pub deflate: Option<Negotiated>,
}

/// Validate a WebSocket upgrade request and build the `101 Switching Protocols` answer.
///
/// Requires GET, HTTP/1.1, `Upgrade: websocket`, `Connection` listing `upgrade`,
/// `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key` of 16 base64-encoded bytes.
/// With `allow_deflate`, the first acceptable `permessage-deflate` offer is agreed
/// ([`deflate::negotiate`]: always without context takeover either way, so a compressed
/// frame is shared by every recipient as a plain one is). Subprotocols are ignored.
pub fn accept(req: &Request, allow_deflate: bool) -> Result<Accepted, WsHandshakeError> {
    if req.method != Method::Get {
        return Err(WsHandshakeError::Method);
    }
    if req.minor_version < 1 {
        return Err(WsHandshakeError::HttpVersion);
    }
    if !req.header_has_token("upgrade", "websocket") {
        return Err(WsHandshakeError::Upgrade);
    }
    if !req.header_has_token("connection", "upgrade") {
        return Err(WsHandshakeError::Connection);
    }
    let mut versions = req.header_values("sec-websocket-version");
    if versions.next() != Some("13") || versions.next().is_some() {
        return Err(WsHandshakeError::Version);
    }
    let mut keys = req.header_values("sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) if is_valid_key(k) => k,
        _ => return Err(WsHandshakeError::Key),
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let deflate = if allow_deflate {
        deflate::negotiate(req.header_values("sec-websocket-extensions"))
    } else {
        None
    };
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(agreed) = &deflate {
        agreed.write_header(&mut out);
    }
    out.extend_from_slice(b"\r\n");
    Ok(Accepted {
        response: out,
        deflate,
    })
}

/// A key must be the base64 of 16 bytes: 22 alphabet characters then `==` (the same test as
/// `ws`'s `/^[+/0-9A-Za-z]{22}==$/`).
fn is_valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse_request, Limits};

    const GOOD: &str = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

    fn req(raw: &str) -> Request {
        parse_request(raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
            .0
    }

    fn with(from: &str, to: &str) -> Request {
        assert!(GOOD.contains(from), "{from}");
        req(&GOOD.replacen(from, to, 1))
    }

    const ACCEPTED: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

    #[test]
    fn rfc6455_sample_key() {
        let out = accept(&req(GOOD), false).unwrap();
        // Deflate not allowed: no Sec-WebSocket-Extensions, whatever is offered.
        assert_eq!(String::from_utf8(out.response).unwrap(), ACCEPTED);
        assert_eq!(out.deflate, None);
    }

    #[test]
    fn deflate_offer_answered() {
        let out = accept(&req(GOOD), true).unwrap();
        assert_eq!(
            String::from_utf8(out.response).unwrap(),
            ACCEPTED.replace(
                "\r\n\r\n",
                "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
                 client_no_context_takeover\r\n\r\n"
            )
        );
        assert_eq!(out.deflate, Some(Negotiated::DEFAULT));
        // No offer: nothing agreed, the plain answer.
        let r = with(
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
            "",
        );
        let out = accept(&r, true).unwrap();
        assert_eq!(out.response, ACCEPTED.as_bytes());
        assert_eq!(out.deflate, None);
    }

    #[test]
    fn lenient_token_matching() {
        let r = with("Upgrade: websocket", "Upgrade: WebSocket");
        assert_eq!(accept(&r, false).unwrap().response, ACCEPTED.as_bytes());
        let r = with("Connection: Upgrade", "Connection: keep-alive, upgrade");
        assert_eq!(accept(&r, false).unwrap().response, ACCEPTED.as_bytes());
    }

    #[test]
    fn each_failure() {
        use WsHandshakeError::*;
        let cases = [
            (with("GET ", "POST "), Method),
            (with("HTTP/1.1", "HTTP/1.0"), HttpVersion),
            (with("Upgrade: websocket", "Upgrade: h2c"), Upgrade),
            (with("Upgrade: websocket\r\n", ""), Upgrade),
            (
                with("Connection: Upgrade", "Connection: keep-alive"),
                Connection,
            ),
            (with("Connection: Upgrade\r\n", ""), Connection),
            (
                with("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
                Version,
            ),
            (with("Sec-WebSocket-Version: 13\r\n", ""), Version),
            (
                with(
                    "Sec-WebSocket-Version: 13",
                    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13",
                ),
                Version,
            ),
            (
                with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                Key,
            ),
            // 15 bytes / 17 bytes / bad alphabet / missing padding / duplicated.
            (
                with("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25j"),
                Key,
            ),
            (
                with("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQAA"),
                Key,
            ),
            (
                with("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZ-=="),
                Key,
            ),
            (
                with("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ"),
                Key,
            ),
            (
                with(
                    "dGhlIHNhbXBsZSBub25jZQ==",
                    "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==",
                ),
                Key,
            ),
        ];
        for (r, want) in cases {
            assert_eq!(accept(&r, true), Err(want), "{want:?}");
        }
    }

    #[test]
    fn error_responses() {
        assert_eq!(
            String::from_utf8(WsHandshakeError::Key.response().to_bytes(false)).unwrap(),
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nContent-Length: 43\r\n\
             Connection: close\r\n\r\nMissing or invalid Sec-WebSocket-Key header"
        );
        assert_eq!(WsHandshakeError::Method.status(), 405);
        assert_eq!(WsHandshakeError::Version.status(), 400);
        assert_eq!(
            WsHandshakeError::Upgrade.to_string(),
            "Invalid Upgrade header"
        );
    }

    #[test]
    fn key_validation() {
        assert!(is_valid_key("AAAAAAAAAAAAAAAAAAAAAA=="));
        assert!(is_valid_key("+/+/+/+/+/+/+/+/+/+/+/=="));
        assert!(!is_valid_key("AAAAAAAAAAAAAAAAAAAAAAA="));
        assert!(!is_valid_key("AAAAAAAAAAAAAAAAAAAAAA==="));
        assert!(!is_valid_key(""));
    }
}
