//! HTTP/1.1 response builder and serializer (sans-IO).

use bytes::Bytes;

/// A response to serialize with [`Response::write_to`]. Header names are static because the
/// server only ever sends a fixed vocabulary of headers; values are owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Headers in send order. `Content-Length` and `Connection` are written by
    /// [`Response::write_to`]; entries with those names here are ignored.
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Response {
    /// An empty response with the given status.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Append a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Set the body and its `Content-Type` (replacing an earlier `Content-Type`).
    pub fn body(mut self, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        self.headers.push(("Content-Type", content_type.to_owned()));
        self.body = body.into();
        self
    }

    /// Append the serialized response to `out`: status line with reason phrase, headers,
    /// `Content-Length` (always, computed from the body), `Connection: keep-alive` or
    /// `Connection: close`, blank line, body. A 1xx status gets its headers verbatim and
    /// neither `Content-Length` (forbidden there) nor `Connection` (it sets its own).
    ///
    /// `Connection: keep-alive` is sent explicitly because HTTP/1.0 clients only keep the
    /// connection when the response says so (Node does the same); it is harmless for 1.1.
    pub fn write_to(&self, keep_alive: bool, out: &mut Vec<u8>) {
        out.reserve(64 + self.headers.len() * 32 + self.body.len());
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, self.status as u64);
        out.push(b' ');
        out.extend_from_slice(reason_phrase(self.status).as_bytes());
        out.extend_from_slice(b"\r\n");
        // 1xx answers (101 Switching Protocols) carry no body framing and set their own
        // `Connection: Upgrade`, so their headers go out verbatim.
        let framed = !(100..200).contains(&self.status);
        for (name, value) in &self.headers {
            if framed
                && (name.eq_ignore_ascii_case("content-length")
                    || name.eq_ignore_ascii_case("connection"))
            {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            push_header_value(out, value);
            out.extend_from_slice(b"\r\n");
        }
        if framed {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, self.body.len() as u64);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(if keep_alive {
                b"Connection: keep-alive\r\n"
            } else {
                b"Connection: close\r\n"
            });
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }

    /// [`Response::write_to`] into a fresh buffer.
    pub fn to_bytes(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(keep_alive, &mut out);
        out
    }
}

/// Values often echo request data (Origin, requested headers); a CR or LF would let a peer
/// inject headers, so they are replaced by spaces. The parser already rejects them, this is
/// defence in depth.
fn push_header_value(out: &mut Vec<u8>, value: &str) {
    if value.bytes().any(|b| b == b'\r' || b == b'\n') {
        out.extend(
            value
                .bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    } else {
        out.extend_from_slice(value.as_bytes());
    }
}

fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Standard reason phrases (RFC 9110) for the statuses a server plausibly sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &Response, keep_alive: bool) -> String {
        String::from_utf8(r.to_bytes(keep_alive)).unwrap()
    }

    #[test]
    fn ok_with_body_keep_alive() {
        let r = Response::new(200).body("text/plain; charset=UTF-8", "ok");
        assert_eq!(
            text(&r, true),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\n\
             Content-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
        );
    }

    #[test]
    fn close_and_headers_in_order() {
        let r = Response::new(400)
            .header("X-A", "1")
            .body(
                "application/json",
                Bytes::from_static(br#"{"code":3,"message":"Bad request"}"#),
            )
            .header("Vary", "Origin");
        assert_eq!(
            text(&r, false),
            "HTTP/1.1 400 Bad Request\r\nX-A: 1\r\nContent-Type: application/json\r\nVary: Origin\r\n\
             Content-Length: 34\r\nConnection: close\r\n\r\n{\"code\":3,\"message\":\"Bad request\"}"
        );
    }

    #[test]
    fn empty_bodies_and_statuses() {
        assert_eq!(
            text(&Response::new(204), true),
            "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            text(&Response::new(413), false),
            "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            text(&Response::new(431), false),
            "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            text(&Response::new(599), true),
            "HTTP/1.1 599 Unknown\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        );
        // 1xx: headers verbatim, no Content-Length, no managed Connection.
        assert_eq!(
            text(
                &Response::new(101)
                    .header("Upgrade", "websocket")
                    .header("Connection", "Upgrade"),
                true
            ),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        );
    }

    #[test]
    fn managed_headers_are_not_duplicated() {
        let r = Response::new(200)
            .header("content-length", "999")
            .header("Connection", "upgrade")
            .body("text/html", "x")
            .body("text/plain", "yz");
        assert_eq!(
            text(&r, true),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nyz"
        );
    }

    #[test]
    fn binary_body_and_appending() {
        let r = Response::new(200).body("application/octet-stream", vec![0u8, 255, 1]);
        let mut out = b"prefix".to_vec();
        r.write_to(true, &mut out);
        let mut want = b"prefixHTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                         Content-Length: 3\r\nConnection: keep-alive\r\n\r\n"
            .to_vec();
        want.extend_from_slice(&[0, 255, 1]);
        assert_eq!(out, want);
    }

    #[test]
    fn header_injection_is_neutralised() {
        let r = Response::new(200).header("X", "a\r\nSet-Cookie: b");
        assert_eq!(
            text(&r, true),
            "HTTP/1.1 200 OK\r\nX: a  Set-Cookie: b\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn large_content_length() {
        let r = Response::new(200).body("a/b", vec![b'x'; 1_234_567]);
        let out = r.to_bytes(true);
        let head = std::str::from_utf8(&out[..80]).unwrap();
        assert!(head.contains("Content-Length: 1234567\r\n"), "{head}");
        assert_eq!(out.len(), 1_234_567 + "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nContent-Length: 1234567\r\nConnection: keep-alive\r\n\r\n".len());
    }
}
