//! The HTTP/1.1 a client needs: the WebSocket upgrade request, polling
//! requests, and reading one response.

use std::fmt::Write;

/// `GET <path>?EIO=4&transport=websocket` with the upgrade headers; with
/// `deflate`, an offer of permessage-deflate whose server side keeps no
/// context, so that each message inflates alone.
pub fn upgrade_request(host: &str, path: &str, key: &str, deflate: bool) -> Vec<u8> {
    let offer = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits\r\n"
    } else {
        ""
    };
    format!(
        "GET {path}?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: 13\r\n{offer}\r\n"
    )
    .into_bytes()
}

/// A long-polling GET, or a POST of `body`.
pub fn polling_request(host: &str, path: &str, sid: Option<&str>, body: Option<&[u8]>) -> Vec<u8> {
    let mut head = String::with_capacity(160);
    let method = if body.is_some() { "POST" } else { "GET" };
    let _ = write!(head, "{method} {path}?EIO=4&transport=polling");
    if let Some(sid) = sid {
        let _ = write!(head, "&sid={sid}");
    }
    let _ = write!(head, " HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(body) = body {
        let _ = write!(
            head,
            "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if let Some(body) = body {
        out.extend_from_slice(body);
    }
    out
}

/// The head of a response read from the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// Bytes the head takes.
    pub len: usize,
    pub content_length: Option<usize>,
    pub accept: Option<String>,
    /// The server agreed permessage-deflate.
    pub deflate: bool,
    /// The server will close the connection after this response.
    pub close: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpError {
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    #[error("chunked responses are not supported")]
    Chunked,
}

/// Parses a response head; `Ok(None)` until the blank line has arrived.
pub fn parse_response(buf: &[u8]) -> Result<Option<ResponseHead>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HttpError::Malformed(e.to_string())),
    };
    let mut head = ResponseHead {
        status: response.code.unwrap_or(0),
        len,
        content_length: None,
        accept: None,
        deflate: false,
        close: response.version == Some(0),
    };
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value)
            .map_err(|_| HttpError::Malformed(format!("{} is not UTF-8", header.name)))?
            .trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            head.content_length = Some(
                value
                    .parse()
                    .map_err(|_| HttpError::Malformed(format!("Content-Length {value}")))?,
            );
        } else if header.name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            return Err(HttpError::Chunked);
        } else if header.name.eq_ignore_ascii_case("sec-websocket-accept") {
            head.accept = Some(value.to_string());
        } else if header.name.eq_ignore_ascii_case("sec-websocket-extensions") {
            head.deflate |= value.starts_with("permessage-deflate");
        } else if header.name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(Some(head))
}

/// The accept value a server must answer `key` with (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    tungstenite::handshake::derive_accept_key(key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn builds_requests() {
        let req = String::from_utf8(upgrade_request("h:1", "/socket.io/", "k", false)).unwrap();
        assert!(req.starts_with("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"));
        assert!(req.contains("Sec-WebSocket-Key: k\r\n"));
        assert!(!req.contains("Extensions"));
        let req = String::from_utf8(upgrade_request("h:1", "/socket.io/", "k", true)).unwrap();
        assert!(req
            .contains("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover"));
        assert!(req.ends_with("\r\n\r\n"));
        let post = polling_request("h", "/s/", Some("abc"), Some(b"40"));
        let post = String::from_utf8(post).unwrap();
        assert!(post.starts_with("POST /s/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\n"));
        assert!(post.ends_with("Content-Length: 2\r\n\r\n40"));
    }

    #[test]
    fn parses_responses() {
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n").unwrap(), None);
        let head = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap()
            .unwrap();
        assert_eq!(
            (head.status, head.len, head.content_length),
            (200, 38, Some(2))
        );
        assert!(!head.close);
        let head = parse_response(b"HTTP/1.1 400 Bad\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.close);
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HttpError::Chunked)
        );
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }
}
