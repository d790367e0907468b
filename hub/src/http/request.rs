//! Incremental HTTP/1.1 request parser (sans-IO).
//!
//! The connection task keeps one read buffer and calls [`parse_request`] on it after every
//! read. The parser is stateless: it re-parses the accumulated bytes each time, which keeps it
//! trivially correct for any split of the input and costs little because heads are capped at
//! [`Limits::max_header_bytes`]. Every limit is checked as early as the bytes allow, so a
//! hostile peer can never make the caller buffer more than the limits permit.

use bytes::Bytes;

/// Size limits applied while parsing; exceeding one yields the matching [`HttpError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus header section, including the blank line (431 when exceeded).
    pub max_header_bytes: usize,
    /// Number of header fields (431 when exceeded).
    pub max_headers: usize,
    /// Decoded body size (413 when exceeded). Engine.IO's `maxHttpBufferSize` default.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 1_000_000,
        }
    }
}

/// Request method. Only the ones the server routes on get a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Options,
    Head,
    Put,
    Delete,
    Other,
}

impl Method {
    fn from_token(token: &str) -> Method {
        // Methods are case-sensitive (RFC 9110 9.1).
        match token {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "OPTIONS" => Method::Options,
            "HEAD" => Method::Head,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            _ => Method::Other,
        }
    }

    /// The method token, `"OTHER"` for unrecognised methods (for logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Options => "OPTIONS",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Other => "OTHER",
        }
    }
}

/// A complete, parsed request: head plus decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The raw request target (`/path?query`), not percent-decoded.
    pub target: String,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub minor_version: u8,
    /// Header fields in arrival order; names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body, already de-chunked when it came with `Transfer-Encoding: chunked`.
    pub body: Bytes,
}

impl Request {
    /// The path part of the target (before `?`). An absolute-form target
    /// (`http://host/p?q`, as sent to proxies) yields its path (`/p`).
    pub fn path(&self) -> &str {
        let t = self.origin_form();
        match t.find('?') {
            Some(i) => &t[..i],
            None => t,
        }
    }

    /// The query string after `?`, `""` when there is none.
    pub fn query(&self) -> &str {
        let t = self.origin_form();
        match t.find('?') {
            Some(i) => &t[i + 1..],
            None => "",
        }
    }

    /// Strip `scheme://authority` from an absolute-form target, which servers must accept
    /// (RFC 9112 3.2.2).
    fn origin_form(&self) -> &str {
        let t = self.target.as_str();
        // Compared as bytes: the target may hold non-ASCII text (httparse lets UTF-8 through),
        // and slicing the `str` at the prefix length could cut a character.
        let lower_starts = |p: &str| {
            t.as_bytes()
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p.as_bytes()))
        };
        let rest = if lower_starts("http://") {
            &t[7..]
        } else if lower_starts("https://") {
            &t[8..]
        } else {
            return t;
        };
        match rest.find(['/', '?']) {
            // `http://host?q` leaves an empty path before the query.
            Some(i) => &rest[i..],
            None => "/",
        }
    }

    /// The first value of a header, by lower-case name.
    pub fn header(&self, lower_name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == lower_name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, by lower-case name (for fields that may repeat).
    pub fn header_values<'a>(&'a self, lower_name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == lower_name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header (over all its occurrences) lists `token`,
    /// case-insensitively (`Connection: keep-alive, Upgrade`).
    pub fn header_has_token(&self, lower_name: &str, token: &str) -> bool {
        self.header_values(lower_name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the connection may carry another request after this one:
    /// HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        if self.header_has_token("connection", "close") {
            return false;
        }
        self.minor_version >= 1 || self.header_has_token("connection", "keep-alive")
    }

    /// Whether this is a WebSocket upgrade attempt (GET with `Upgrade: websocket` and
    /// `Connection: upgrade`), the same test Node uses to fire its `upgrade` event.
    /// [`crate::ws::handshake::accept`] does the full validation.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.method == Method::Get
            && self.header_has_token("upgrade", "websocket")
            && self.header_has_token("connection", "upgrade")
    }
}

/// Why a request was rejected; [`HttpError::status`] is the status to answer with before
/// closing the connection.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Syntax or framing error (400).
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// Head over `max_header_bytes` or more than `max_headers` fields (431).
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// Body (declared or decoded) over `max_body_bytes` (413).
    #[error("request body too large")]
    BodyTooLarge,
    /// A transfer coding other than a lone `chunked` (501).
    #[error("unsupported transfer encoding")]
    UnsupportedTransferEncoding,
}

impl HttpError {
    /// The HTTP status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_) => 400,
            HttpError::HeadersTooLarge => 431,
            HttpError::BodyTooLarge => 413,
            HttpError::UnsupportedTransferEncoding => 501,
        }
    }
}

/// Header slots kept on the stack; more than this (when `max_headers` is raised) goes to the heap.
const STACK_HEADERS: usize = 64;

/// How the body is delimited.
enum Framing {
    None,
    Length(usize),
    Chunked,
}

/// Parse the first request in `buf` (the connection's accumulated read buffer).
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some((request, consumed)))` once the head
/// and the whole body are in `buf`; bytes after `consumed` belong to the next (pipelined)
/// request. Errors are final: answer `err.status()` and close the connection.
///
/// Limits are enforced as early as possible: an incomplete head already longer than
/// `max_header_bytes` fails, and a `Content-Length` (or chunk size) over `max_body_bytes` fails
/// as soon as it is read, so the caller can answer 413 without reading the body.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, HttpError> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap;
    let slots: &mut [httparse::Header<'_>] = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
        &mut heap[..]
    };
    let mut req = httparse::Request::new(slots);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            if n > limits.max_header_bytes {
                return Err(HttpError::HeadersTooLarge);
            }
            n
        }
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_header_bytes {
                return Err(HttpError::HeadersTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge),
        Err(httparse::Error::Version) => return Err(HttpError::Malformed("invalid HTTP version")),
        Err(httparse::Error::HeaderName) => {
            return Err(HttpError::Malformed("invalid header name"))
        }
        Err(httparse::Error::HeaderValue) => {
            return Err(HttpError::Malformed("invalid header value"))
        }
        Err(httparse::Error::NewLine) => return Err(HttpError::Malformed("invalid line ending")),
        Err(_) => return Err(HttpError::Malformed("invalid request line")),
    };

    // Complete parse: httparse guarantees these are set.
    let method = Method::from_token(req.method.unwrap_or(""));
    let target = req.path.unwrap_or("").to_owned();
    let minor_version = req.version.unwrap_or(1);
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            // Values may legally hold obs-text (non-UTF-8 bytes); keep them lossily rather than
            // failing, the server never needs such values verbatim.
            let value = String::from_utf8_lossy(h.value);
            (
                h.name.to_ascii_lowercase(),
                value.trim_matches([' ', '\t']).to_owned(),
            )
        })
        .collect();

    let framing = body_framing(&headers, minor_version, limits)?;
    let (body, consumed) = match framing {
        Framing::None => (Bytes::new(), head_len),
        Framing::Length(len) => {
            let end = head_len + len;
            if buf.len() < end {
                return Ok(None);
            }
            (Bytes::copy_from_slice(&buf[head_len..end]), end)
        }
        Framing::Chunked => match parse_chunked(buf, head_len, limits)? {
            Some(done) => done,
            None => return Ok(None),
        },
    };
    Ok(Some((
        Request {
            method,
            target,
            minor_version,
            headers,
            body,
        },
        consumed,
    )))
}

/// Decide how the body is delimited (RFC 9112 6.3), rejecting the ambiguous combinations that
/// enable request smuggling.
fn body_framing(
    headers: &[(String, String)],
    minor_version: u8,
    limits: &Limits,
) -> Result<Framing, HttpError> {
    let mut te_codings: Vec<&str> = Vec::new();
    let mut has_te = false;
    let mut content_length: Option<u64> = None;
    for (name, value) in headers {
        if name == "transfer-encoding" {
            has_te = true;
            te_codings.extend(value.split(',').map(str::trim).filter(|t| !t.is_empty()));
        } else if name == "content-length" {
            // Repeated identical values (`5, 5` or two fields) are allowed (RFC 9110 8.6);
            // differing ones are not.
            for part in value.split(',') {
                let n = parse_content_length(part.trim())?;
                match content_length {
                    Some(prev) if prev != n => {
                        return Err(HttpError::Malformed("conflicting Content-Length"))
                    }
                    _ => content_length = Some(n),
                }
            }
        }
    }

    if has_te {
        if content_length.is_some() {
            return Err(HttpError::Malformed(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if minor_version == 0 {
            // RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
            return Err(HttpError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        return match te_codings.as_slice() {
            [only] if only.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
            // chunked must be last, or the body length is unknowable (RFC 9112 6.3 item 4).
            [.., last] if last.eq_ignore_ascii_case("chunked") => {
                Err(HttpError::UnsupportedTransferEncoding)
            }
            _ => Err(HttpError::Malformed(
                "Transfer-Encoding without final chunked",
            )),
        };
    }
    match content_length {
        None | Some(0) => Ok(Framing::None),
        Some(n) if n > limits.max_body_bytes as u64 => Err(HttpError::BodyTooLarge),
        Some(n) => Ok(Framing::Length(n as usize)),
    }
}

/// `Content-Length = 1*DIGIT`; no sign, no hex, no inner spaces.
fn parse_content_length(s: &str) -> Result<u64, HttpError> {
    const BAD: HttpError = HttpError::Malformed("invalid Content-Length");
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD);
    }
    // Overflowing u64 is certainly over any body limit.
    s.parse::<u64>().map_err(|_| HttpError::BodyTooLarge)
}

/// Decode a chunked body starting at `start`. Returns the body and the end offset of the whole
/// message, or `None` when incomplete.
///
/// Two passes: the first validates framing and records data ranges without copying (this runs
/// again on every read until the body is complete), the second copies once.
fn parse_chunked(
    buf: &[u8],
    start: usize,
    limits: &Limits,
) -> Result<Option<(Bytes, usize)>, HttpError> {
    let mut pos = start;
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut total: usize = 0;
    // Chunk extensions are ignored but counted against the header budget, as Node does since
    // CVE-2024-22019, so a peer cannot make us buffer unbounded extension bytes; and a size
    // line (leading zeros, say) is at most that budget long.
    let mut ext_bytes: usize = 0;
    loop {
        let rest = &buf[pos..];
        let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
            // An unfinished size line is refused as soon as the finished one surely would be
            // (longer than the limit, or extensions over the budget), so that the verdict never
            // depends on how the bytes were split; a trailing CR may be the line's own.
            let pending = rest.len() - usize::from(rest.last() == Some(&b'\r'));
            let digits = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            if pending > limits.max_header_bytes
                || ext_bytes + (pending - digits) > limits.max_header_bytes
            {
                return Err(HttpError::BodyTooLarge);
            }
            return Ok(None);
        };
        if lf == 0 || rest[lf - 1] != b'\r' {
            return Err(HttpError::Malformed("chunk size line not ended by CRLF"));
        }
        let line = &rest[..lf - 1];
        if line.len() > limits.max_header_bytes {
            return Err(HttpError::BodyTooLarge);
        }
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 {
            return Err(HttpError::Malformed("invalid chunk size"));
        }
        let mut size: usize = 0;
        for &b in &line[..digits] {
            let d = (b as char).to_digit(16).unwrap_or(0) as usize;
            size = size
                .checked_mul(16)
                .and_then(|s| s.checked_add(d))
                .ok_or(HttpError::BodyTooLarge)?;
        }
        let ext = &line[digits..];
        let ext_trimmed = trim_start_ws(ext);
        if !ext_trimmed.is_empty() {
            if ext_trimmed[0] != b';' {
                return Err(HttpError::Malformed("invalid chunk size"));
            }
            if ext_trimmed
                .iter()
                .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
            {
                return Err(HttpError::Malformed("invalid chunk extension"));
            }
        }
        ext_bytes += ext.len();
        if ext_bytes > limits.max_header_bytes {
            return Err(HttpError::BodyTooLarge);
        }
        if size > limits.max_body_bytes - total {
            return Err(HttpError::BodyTooLarge);
        }
        pos += lf + 1;

        if size == 0 {
            // Trailer section: header fields then an empty line. Validated, then discarded
            // (nothing here uses trailers).
            let mut slots = [httparse::EMPTY_HEADER; STACK_HEADERS];
            let n = limits.max_headers.min(STACK_HEADERS);
            let end = match httparse::parse_headers(&buf[pos..], &mut slots[..n]) {
                // The same budget whether the section came in one read or in pieces.
                Ok(httparse::Status::Complete((len, _))) if len > limits.max_header_bytes => {
                    return Err(HttpError::HeadersTooLarge)
                }
                Ok(httparse::Status::Complete((len, _))) => pos + len,
                Ok(httparse::Status::Partial) => {
                    if buf.len() - pos > limits.max_header_bytes {
                        return Err(HttpError::HeadersTooLarge);
                    }
                    return Ok(None);
                }
                Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge),
                Err(_) => return Err(HttpError::Malformed("invalid trailer section")),
            };
            let mut body = Vec::with_capacity(total);
            for (s, l) in ranges {
                body.extend_from_slice(&buf[s..s + l]);
            }
            return Ok(Some((Bytes::from(body), end)));
        }

        // Check the CRLF after the data as soon as its bytes are there.
        let data_end = pos + size;
        if buf.len() > data_end && buf[data_end] != b'\r'
            || buf.len() > data_end + 1 && buf[data_end + 1] != b'\n'
        {
            return Err(HttpError::Malformed("chunk data not followed by CRLF"));
        }
        if buf.len() < data_end + 2 {
            return Ok(None);
        }
        ranges.push((pos, size));
        total += size;
        pos = data_end + 2;
    }
}

fn trim_start_ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
        parse_request(buf, &limits())
    }

    fn parse_ok(buf: &[u8]) -> (Request, usize) {
        parse(buf).expect("no error").expect("complete")
    }

    /// Every strict prefix must be `Ok(None)`, the whole input must parse.
    fn assert_incremental(buf: &[u8]) -> (Request, usize) {
        for i in 0..buf.len() {
            assert_eq!(parse(&buf[..i]), Ok(None), "prefix of {i} bytes");
        }
        parse_ok(buf)
    }

    #[test]
    fn simple_get() {
        let raw =
            b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: a\r\nX-Thing:  v  \r\n\r\n";
        let (req, n) = parse_ok(raw);
        assert_eq!(n, raw.len());
        assert_eq!(req.method, Method::Get);
        assert_eq!(req.target, "/socket.io/?EIO=4&transport=polling");
        assert_eq!(req.path(), "/socket.io/");
        assert_eq!(req.query(), "EIO=4&transport=polling");
        assert_eq!(req.minor_version, 1);
        assert_eq!(
            req.headers,
            vec![("host".into(), "a".into()), ("x-thing".into(), "v".into())]
        );
        assert_eq!(req.header("x-thing"), Some("v"));
        assert_eq!(req.header("missing"), None);
        assert!(req.body.is_empty());
    }

    #[test]
    fn methods() {
        for (tok, m) in [
            ("GET", Method::Get),
            ("POST", Method::Post),
            ("OPTIONS", Method::Options),
            ("HEAD", Method::Head),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("PATCH", Method::Other),
            ("get", Method::Other),
        ] {
            let raw = format!("{tok} / HTTP/1.1\r\n\r\n");
            assert_eq!(parse_ok(raw.as_bytes()).0.method, m, "{tok}");
        }
        assert_eq!(Method::Options.as_str(), "OPTIONS");
    }

    #[test]
    fn path_and_query_forms() {
        let mk = |t: &str| Request {
            method: Method::Get,
            target: t.into(),
            minor_version: 1,
            headers: vec![],
            body: Bytes::new(),
        };
        assert_eq!((mk("/a").path(), mk("/a").query()), ("/a", ""));
        assert_eq!((mk("/a?").path(), mk("/a?").query()), ("/a", ""));
        assert_eq!(
            (mk("/a?b=1?c").path(), mk("/a?b=1?c").query()),
            ("/a", "b=1?c")
        );
        let abs = mk("http://example.com:8080/socket.io/?EIO=4");
        assert_eq!((abs.path(), abs.query()), ("/socket.io/", "EIO=4"));
        let abs = mk("HTTPS://example.com");
        assert_eq!((abs.path(), abs.query()), ("/", ""));
        assert_eq!(mk("*").path(), "*");
    }

    #[test]
    fn get_split_at_every_byte() {
        let raw = b"GET /x?y=1 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n";
        let (req, n) = assert_incremental(raw);
        assert_eq!(n, raw.len());
        assert_eq!(req.path(), "/x");
    }

    #[test]
    fn post_content_length_split_at_every_byte() {
        let raw = b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\n4hello\x1e4hi";
        let (req, n) = assert_incremental(raw);
        assert_eq!(n, raw.len());
        assert_eq!(&req.body[..], b"4hello\x1e4hi");
    }

    #[test]
    fn chunked_split_at_every_byte() {
        let raw = b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5;name=val\r\nhello\r\n\
                    A \r\n0123456789\r\n\
                    1;a;b=\"q\"\r\n!\r\n\
                    0\r\nX-Trailer: t\r\nY: u\r\n\r\n";
        let (req, n) = assert_incremental(raw);
        assert_eq!(n, raw.len());
        assert_eq!(&req.body[..], b"hello0123456789!");
    }

    #[test]
    fn chunked_no_trailers_and_empty_body() {
        let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n";
        let (req, n) = assert_incremental(raw);
        assert_eq!(n, raw.len());
        assert!(req.body.is_empty());
        let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(&parse_ok(raw).0.body[..], b"abc");
    }

    #[test]
    fn chunked_errors() {
        let head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let bad = |body: &str| parse(format!("{head}{body}").as_bytes());
        assert_eq!(
            bad("zz\r\n"),
            Err(HttpError::Malformed("invalid chunk size"))
        );
        assert_eq!(bad("\r\n"), Err(HttpError::Malformed("invalid chunk size")));
        assert_eq!(
            bad("-1\r\n"),
            Err(HttpError::Malformed("invalid chunk size"))
        );
        assert_eq!(
            bad("5x\r\n"),
            Err(HttpError::Malformed("invalid chunk size"))
        );
        assert_eq!(
            bad("5\n"),
            Err(HttpError::Malformed("chunk size line not ended by CRLF"))
        );
        assert_eq!(
            bad("5;a\x01\r\n"),
            Err(HttpError::Malformed("invalid chunk extension"))
        );
        assert_eq!(
            bad("3\r\nabcX"),
            Err(HttpError::Malformed("chunk data not followed by CRLF"))
        );
        assert_eq!(
            bad("3\r\nabc\rX"),
            Err(HttpError::Malformed("chunk data not followed by CRLF"))
        );
        assert_eq!(
            bad("3\r\nabc\r\n0\r\nbad trailer\r\n\r\n"),
            Err(HttpError::Malformed("invalid trailer section"))
        );
        // Partial but valid so far.
        assert_eq!(bad("3\r\nabc\r"), Ok(None));
        assert_eq!(bad("3\r\nab"), Ok(None));
        assert_eq!(bad("0\r\nX: y\r\n"), Ok(None));
    }

    #[test]
    fn chunked_oversized() {
        let l = Limits {
            max_body_bytes: 10,
            ..limits()
        };
        let head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        // Declared chunk size over the limit: rejected before any data arrives.
        let raw = format!("{head}b\r\n");
        assert_eq!(
            parse_request(raw.as_bytes(), &l),
            Err(HttpError::BodyTooLarge)
        );
        // Sum of chunks over the limit.
        let raw = format!("{head}6\r\nabcdef\r\n5\r\n");
        assert_eq!(
            parse_request(raw.as_bytes(), &l),
            Err(HttpError::BodyTooLarge)
        );
        // Exactly at the limit is fine.
        let raw = format!("{head}6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n");
        assert_eq!(
            &parse_request(raw.as_bytes(), &l).unwrap().unwrap().0.body[..],
            b"abcdefghij"
        );
        // A chunk size that overflows usize.
        let raw = format!("{head}fffffffffffffffffffff\r\n");
        assert_eq!(
            parse_request(raw.as_bytes(), &l),
            Err(HttpError::BodyTooLarge)
        );
        // Unbounded extensions (or a size line that never ends).
        let l = Limits {
            max_header_bytes: 64,
            ..limits()
        };
        let raw = format!("{head}1;{}", "x".repeat(100));
        assert_eq!(
            parse_request(raw.as_bytes(), &l),
            Err(HttpError::BodyTooLarge)
        );
        let mut raw = head.to_string();
        for _ in 0..20 {
            raw.push_str("1;xxxx\r\na\r\n");
        }
        assert_eq!(
            parse_request(raw.as_bytes(), &l),
            Err(HttpError::BodyTooLarge)
        );
    }

    #[test]
    fn trailer_section_over_the_limit_is_refused_however_it_arrives() {
        // Found by the fuzz target http_request: a trailer section over max_header_bytes was
        // refused (431) while it arrived in pieces, but accepted when it came in one read.
        let l = Limits {
            max_header_bytes: 64,
            ..limits()
        };
        let head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n";
        let over = format!("{head}T: {}\r\n\r\n", "x".repeat(80));
        assert_eq!(
            parse_request(over.as_bytes(), &l),
            Err(HttpError::HeadersTooLarge)
        );
        for end in 0..over.len() {
            let got = parse_request(&over.as_bytes()[..end], &l);
            assert!(
                matches!(got, Ok(None) | Err(HttpError::HeadersTooLarge)),
                "{end}: {got:?}"
            );
        }
        // Exactly at the limit (the blank line included) is fine.
        let at = format!("{head}T: {}\r\n\r\n", "x".repeat(64 - 7));
        let (req, used) = parse_request(at.as_bytes(), &l).unwrap().unwrap();
        assert_eq!((&req.body[..], used), (&b"hello"[..], at.len()));
    }

    #[test]
    fn size_line_limits_hold_however_the_line_arrives() {
        // Found by the fuzz target http_request: an unfinished size line was measured with its
        // digits and CR against the extension budget, the finished one without, so a line
        // whose extension just fit was refused (413) when its CR came in an earlier read
        // than its LF, and accepted when both came together.
        let l = Limits {
            max_header_bytes: 64,
            max_body_bytes: 10,
            ..limits()
        };
        let head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let fits = format!("{head}5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(62));
        for end in 0..fits.len() {
            let got = parse_request(&fits.as_bytes()[..end], &l);
            assert_eq!(got, Ok(None), "prefix of {end} bytes");
        }
        let (req, used) = parse_request(fits.as_bytes(), &l).unwrap().unwrap();
        assert_eq!((&req.body[..], used), (&b"hello"[..], fits.len()));
        // One extension byte more is over, however it arrives.
        let over = format!("{head}5;{}\r\n", "x".repeat(63));
        assert_eq!(
            parse_request(over.as_bytes(), &l),
            Err(HttpError::BodyTooLarge)
        );
        assert_eq!(
            parse_request(&over.as_bytes()[..over.len() - 1], &l),
            Err(HttpError::BodyTooLarge)
        );
        // A size line of leading zeros is bounded too (it has no extension to count).
        let zeros = format!("{head}{}", "0".repeat(65));
        assert_eq!(
            parse_request(zeros.as_bytes(), &l),
            Err(HttpError::BodyTooLarge)
        );
        let zeros = format!("{zeros}\r\n\r\n");
        assert_eq!(
            parse_request(zeros.as_bytes(), &l),
            Err(HttpError::BodyTooLarge)
        );
    }

    #[test]
    fn transfer_encoding_rules() {
        let te = |v: &str| {
            parse(format!("POST / HTTP/1.1\r\nTransfer-Encoding: {v}\r\n\r\n0\r\n\r\n").as_bytes())
        };
        assert!(te("chunked").unwrap().is_some());
        assert_eq!(
            te("gzip, chunked"),
            Err(HttpError::UnsupportedTransferEncoding)
        );
        assert_eq!(
            te("gzip"),
            Err(HttpError::Malformed(
                "Transfer-Encoding without final chunked"
            ))
        );
        assert_eq!(
            te("chunked, gzip"),
            Err(HttpError::Malformed(
                "Transfer-Encoding without final chunked"
            ))
        );
        assert_eq!(
            te(""),
            Err(HttpError::Malformed(
                "Transfer-Encoding without final chunked"
            ))
        );
        assert_eq!(HttpError::UnsupportedTransferEncoding.status(), 501);
        // Two TE fields combine into "gzip, chunked".
        let raw =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(raw), Err(HttpError::UnsupportedTransferEncoding));
        let raw = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(
            parse(raw),
            Err(HttpError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 request"
            ))
        );
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            parse(raw),
            Err(HttpError::Malformed(
                "both Content-Length and Transfer-Encoding"
            ))
        );
    }

    #[test]
    fn content_length_rules() {
        let cl = |v: &str| {
            parse(format!("POST / HTTP/1.1\r\nContent-Length: {v}\r\n\r\nabc").as_bytes())
        };
        assert_eq!(cl("3").unwrap().unwrap().1, 41);
        assert_eq!(
            cl("3, 3").unwrap().unwrap().0.body,
            Bytes::from_static(b"abc")
        );
        assert_eq!(
            cl("003").unwrap().unwrap().0.body,
            Bytes::from_static(b"abc")
        );
        assert_eq!(cl("0").unwrap().unwrap().1, 38);
        assert_eq!(cl("4"), Ok(None));
        for bad in ["+3", "-3", "0x3", "3 3", "", "abc", "3,", "1e2"] {
            assert_eq!(
                cl(bad),
                Err(HttpError::Malformed("invalid Content-Length")),
                "{bad:?}"
            );
        }
        assert_eq!(
            cl("3, 4"),
            Err(HttpError::Malformed("conflicting Content-Length"))
        );
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(parse_ok(raw).0.body, Bytes::from_static(b"abc"));
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 2\r\n\r\nabc";
        assert_eq!(
            parse(raw),
            Err(HttpError::Malformed("conflicting Content-Length"))
        );
        assert_eq!(cl("99999999999999999999999"), Err(HttpError::BodyTooLarge));
    }

    #[test]
    fn body_too_large_from_head_alone() {
        let l = Limits {
            max_body_bytes: 100,
            ..limits()
        };
        let head = b"POST /socket.io/?EIO=4&sid=x HTTP/1.1\r\nContent-Length: 101\r\n\r\n";
        // No body bytes at all yet: 413 right away.
        assert_eq!(parse_request(head, &l), Err(HttpError::BodyTooLarge));
        assert_eq!(HttpError::BodyTooLarge.status(), 413);
        // Still waiting on the head: no verdict yet.
        assert_eq!(parse_request(&head[..head.len() - 1], &l), Ok(None));
        let ok = b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n";
        assert_eq!(parse_request(ok, &l), Ok(None));
    }

    #[test]
    fn header_limits() {
        let l = Limits {
            max_header_bytes: 64,
            max_headers: 3,
            ..limits()
        };
        let ok = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert!(parse_request(ok, &l).unwrap().is_some());
        let many = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        assert_eq!(parse_request(many, &l), Err(HttpError::HeadersTooLarge));
        // Incomplete head already past the byte limit.
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(60));
        assert_eq!(
            parse_request(long.as_bytes(), &l),
            Err(HttpError::HeadersTooLarge)
        );
        // Complete head past the limit (arriving in one read).
        let long = format!("GET / HTTP/1.1\r\nA: {}\r\n\r\n", "a".repeat(60));
        assert_eq!(
            parse_request(long.as_bytes(), &l),
            Err(HttpError::HeadersTooLarge)
        );
        // Exactly at the limit is fine.
        let exact = format!("GET / HTTP/1.1\r\nA: {}\r\n\r\n", "a".repeat(64 - 23));
        assert_eq!(exact.len(), 64);
        assert!(parse_request(exact.as_bytes(), &l).unwrap().is_some());
        assert_eq!(HttpError::HeadersTooLarge.status(), 431);
        // max_headers beyond the stack array.
        let l = Limits {
            max_headers: 100,
            ..limits()
        };
        let mut raw = String::from("GET / HTTP/1.1\r\n");
        for i in 0..100 {
            raw.push_str(&format!("H{i}: {i}\r\n"));
        }
        raw.push_str("\r\n");
        assert_eq!(
            parse_request(raw.as_bytes(), &l)
                .unwrap()
                .unwrap()
                .0
                .headers
                .len(),
            100
        );
    }

    #[test]
    fn malformed() {
        let cases: &[(&[u8], &str)] = &[
            (b"GET / HTTP/2.0\r\n\r\n", "invalid HTTP version"),
            (b"GET / FTP/1.1\r\n\r\n", "invalid HTTP version"),
            (b"GET\r\n\r\n", "invalid request line"),
            (b"GET  / HTTP/1.1\r\n\r\n", "invalid request line"),
            (b"G(T / HTTP/1.1\r\n\r\n", "invalid request line"),
            (b"GET /\x01 HTTP/1.1\r\n\r\n", "invalid request line"),
            (
                b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
                "invalid header name",
            ),
            (b"GET / HTTP/1.1\r\n: x\r\n\r\n", "invalid header name"),
            (
                b"GET / HTTP/1.1\r\nA: x\x01y\r\n\r\n",
                "invalid header value",
            ),
            (b"GET / HTTP/1.1\r\nA: x\rz\r\n\r\n", "invalid header value"),
            (b"GET / HTTP/1.1\r\nA\r\n\r\n", "invalid header name"),
            (
                b"GET / HTTP/1.1\r\n folded: x\r\n\r\n",
                "invalid header name",
            ),
        ];
        for (raw, why) in cases {
            let got = parse(raw);
            assert!(
                matches!(got, Err(HttpError::Malformed(_))),
                "{:?}: {got:?}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(
                got,
                Err(HttpError::Malformed(why)),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(got.unwrap_err().status(), 400);
        }
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |v: u8, conn: Option<&str>| {
            let mut raw = format!("GET / HTTP/1.{v}\r\n");
            if let Some(c) = conn {
                raw.push_str(&format!("Connection: {c}\r\n"));
            }
            raw.push_str("\r\n");
            parse_ok(raw.as_bytes()).0.keep_alive()
        };
        assert!(ka(1, None));
        assert!(ka(1, Some("keep-alive")));
        assert!(!ka(1, Some("close")));
        assert!(!ka(1, Some("Close")));
        assert!(!ka(1, Some("upgrade, close")));
        assert!(!ka(0, None));
        assert!(ka(0, Some("Keep-Alive")));
        assert!(ka(0, Some("foo, keep-alive")));
        assert!(!ka(0, Some("close")));
        assert!(!ka(0, Some("keep-alive, close")));
        let raw = b"GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n";
        assert!(!parse_ok(raw).0.keep_alive());
    }

    #[test]
    fn websocket_upgrade_detection() {
        let up = |method: &str, extra: &str| {
            let raw = format!("{method} / HTTP/1.1\r\n{extra}\r\n");
            parse_ok(raw.as_bytes()).0.is_websocket_upgrade()
        };
        assert!(up("GET", "Upgrade: websocket\r\nConnection: Upgrade\r\n"));
        assert!(up(
            "GET",
            "Upgrade: WebSocket\r\nConnection: keep-alive, upgrade\r\n"
        ));
        assert!(up(
            "GET",
            "Connection: keep-alive\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        ));
        assert!(!up("POST", "Upgrade: websocket\r\nConnection: Upgrade\r\n"));
        assert!(!up("GET", "Upgrade: h2c\r\nConnection: Upgrade\r\n"));
        assert!(!up("GET", "Upgrade: websocket\r\n"));
        assert!(!up("GET", "Connection: Upgrade\r\n"));
        assert!(!up("GET", ""));
    }

    #[test]
    fn pipelined_consumes_only_first() {
        let raw = b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /c HTTP/1.1\r\n";
        let (a, n) = parse_ok(raw);
        assert_eq!((a.path(), n), ("/a", 19));
        let (b, m) = parse_ok(&raw[n..]);
        assert_eq!((b.path(), &b.body[..], m), ("/b", &b"hi"[..], 41));
        assert_eq!(parse(&raw[n + m..]), Ok(None));
    }

    #[test]
    fn leading_blank_line_is_tolerated() {
        // RFC 9112 2.2: servers SHOULD ignore at least one empty line before the request line.
        let raw = b"\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(parse_ok(raw).1, raw.len());
    }

    #[test]
    fn non_ascii_target_around_the_scheme_length() {
        // Found by the fuzz target http_request: a multi-byte character across byte 7 or 8
        // (the lengths of `http://` and `https://`) made path() panic on a str slice, which
        // took the whole shard down (`GET /abcdefғ HTTP/1.1` stopped `hub --shards 1`).
        for target in [
            "/abcdeғ",
            "/abcdefғ",
            "/engineғo/?EIO=4",
            "/ғ",
            "httpғ://h/p",
            "ғғғғғ",
        ] {
            let raw = format!("GET {target} HTTP/1.1\r\n\r\n");
            let (req, _) = parse_ok(raw.as_bytes());
            assert_eq!(req.target, target);
            assert_eq!(req.path(), target.split('?').next().unwrap());
            assert_eq!(req.query(), target.split_once('?').map_or("", |(_, q)| q));
        }
        let raw = "GET HTTP://hғ/p?q HTTP/1.1\r\n\r\n";
        let (req, _) = parse_ok(raw.as_bytes());
        assert_eq!((req.path(), req.query()), ("/p", "q"));
    }

    #[test]
    fn non_utf8_header_value_is_kept_lossily() {
        let raw = b"GET / HTTP/1.1\r\nX: caf\xe9\r\n\r\n";
        assert_eq!(parse_ok(raw).0.header("x"), Some("caf\u{fffd}"));
    }

    use crate::test_rng::Rng;

    #[test]
    fn garbage_never_panics() {
        let seeds: &[&[u8]] = &[
            b"POST /p?q HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            b"GET http://h/x HTTP/1.0\r\nUpgrade: websocket\r\n\r\n",
        ];
        let l = Limits {
            max_header_bytes: 256,
            max_headers: 8,
            max_body_bytes: 64,
        };
        let alphabet = b"\r\n :;0123456789abcdefABCDEF\t,GETPOSTHTTP/1.";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..20_000 {
            let mut buf: Vec<u8> = match round % 3 {
                // Pure noise.
                0 => (0..rng.next() % 300).map(|_| rng.next() as u8).collect(),
                // Noise from a protocol-ish alphabet.
                1 => (0..rng.next() % 300)
                    .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
                    .collect(),
                // Mutated valid requests.
                _ => {
                    let mut v = seeds[(rng.next() % seeds.len() as u64) as usize].to_vec();
                    for _ in 0..1 + rng.next() % 4 {
                        let i = (rng.next() % v.len() as u64) as usize;
                        v[i] = match rng.next() % 3 {
                            0 => rng.next() as u8,
                            _ => alphabet[(rng.next() % alphabet.len() as u64) as usize],
                        };
                    }
                    v
                }
            };
            if round % 7 == 0 {
                buf.truncate((rng.next() % (buf.len() as u64 + 1)) as usize);
            }
            for limits in [&l, &Limits::default()] {
                if let Ok(Some((_, n))) = parse_request(&buf, limits) {
                    assert!(n <= buf.len());
                }
            }
        }
    }
}
