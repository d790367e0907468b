//! HTTP/1.1 requests (`hub::http::request::parse_request`), as a connection
//! reads them: the bytes arrive in arbitrary pieces, pipelined requests
//! follow each other, and the parser is called on the accumulated buffer
//! after every read (as `shard/conn.rs` does).
//!
//! Input: `<limits byte><split byte><bytes from the peer>`.
//!
//! Checks: no panic; a parsed request respects the limits; the requests
//! and the verdict are the same whatever the split (the parser is
//! stateless, so a prefix may only say "need more" or what the whole says);
//! what the server does next with a request (its path and query, the
//! Engine.IO query, the session id, the WebSocket handshake, the
//! `Accept-Encoding` negotiation) does not panic;
//! and the CORS answers, which echo the request's `Origin` and
//! `Access-Control-Request-Headers`, are well-formed HTTP (no header can
//! be injected through them).
#![no_main]

use hub::engineio::query::parse_query;
use hub::engineio::Sid;
use hub::http::cors::{AllowedOrigins, Cors};
use hub::http::request::{parse_request, HttpError, Limits, Request};
use hub::http::response::Response;
use hub_fuzz::{pieces, take_byte};
use libfuzzer_sys::fuzz_target;

/// The defaults, two tight sets (so the limits are reached by small
/// inputs), and more header slots than the parser keeps on its stack.
fn limits(selector: u8) -> Limits {
    match selector % 4 {
        0 => Limits::default(),
        1 => Limits {
            max_header_bytes: 256,
            max_headers: 8,
            max_body_bytes: 64,
        },
        2 => Limits {
            max_header_bytes: 64,
            max_headers: 3,
            max_body_bytes: 10,
        },
        _ => Limits {
            max_header_bytes: 4096,
            max_headers: 100,
            max_body_bytes: 1024,
        },
    }
}

/// What a connection made of its bytes.
#[derive(Debug)]
struct Outcome {
    requests: Vec<Request>,
    /// The refusal that ended the connection, if one did.
    refused: Option<HttpError>,
    /// Bytes of an unfinished request left at the end.
    left: usize,
}

fn check_request(request: &Request, used: usize, available: usize, limits: &Limits) {
    assert!(used > 0 && used <= available, "{used} of {available}");
    assert!(request.body.len() <= limits.max_body_bytes);
    assert!(request.headers.len() <= limits.max_headers);
    assert!(request.minor_version <= 1);
    for (name, _) in &request.headers {
        assert_eq!(*name, name.to_ascii_lowercase());
    }
    // What the server does with a request before routing it.
    let path = request.path();
    let query = request.query();
    assert!(path.len() + query.len() <= request.target.len() + 1);
    let _ = request.keep_alive();
    let _ = request.header("origin");
    // The coding of a polling answer, from every Accept-Encoding field.
    let _ = hub::http::compression::negotiate(request.header_values("accept-encoding"));
    if request.is_websocket_upgrade() {
        for allow_deflate in [false, true] {
            if let Ok(answer) = hub::ws::handshake::accept(request, allow_deflate) {
                assert!(answer.response.starts_with(b"HTTP/1.1 101 "));
                assert!(answer.deflate.is_none() || allow_deflate);
            }
        }
    }
    check_cors(request);
    for allow_eio3 in [false, true] {
        if let Ok(q) = parse_query(query, allow_eio3) {
            if let Some(sid) = q.sid.as_deref().and_then(Sid::parse) {
                assert_eq!(Some(sid.as_str()), q.sid.as_deref());
            }
        }
    }
}

/// `answer` is one whole HTTP response with `headers` header fields.
fn check_well_formed(answer: &[u8], headers: usize, body: usize) {
    let mut slots = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Response::new(&mut slots);
    match parsed.parse(answer) {
        Ok(httparse::Status::Complete(head)) => assert_eq!(head + body, answer.len()),
        other => panic!("{other:?}: {:?}", String::from_utf8_lossy(answer)),
    }
    assert_eq!(parsed.headers.len(), headers);
}

/// The CORS answers to `request`, as the server writes them.
fn check_cors(request: &Request) {
    let cors = Cors {
        origins: AllowedOrigins::Any,
        credentials: true,
        max_age_secs: Some(600),
    };
    let origin = request.header("origin");
    let preflight = cors.preflight(origin, request.header("access-control-request-headers"));
    let answer = preflight.to_bytes(request.keep_alive());
    // The headers, then Content-Length and Connection.
    check_well_formed(&answer, preflight.headers.len() + 2, 0);

    let mut response = Response::new(200).body("text/plain; charset=UTF-8", "ok");
    response.headers.extend(cors.response_headers(origin));
    let answer = response.to_bytes(request.keep_alive());
    check_well_formed(&answer, response.headers.len() + 2, 2);
}

/// Parse every complete request at the front of `buf`, draining it.
/// Returns `Err` once a request is refused.
fn drain(buf: &mut Vec<u8>, limits: &Limits, out: &mut Vec<Request>) -> Result<(), HttpError> {
    while !buf.is_empty() {
        match parse_request(buf, limits)? {
            Some((request, used)) => {
                check_request(&request, used, buf.len(), limits);
                out.push(request);
                buf.drain(..used);
            }
            None => break,
        }
    }
    Ok(())
}

fn run(reads: &[&[u8]], limits: &Limits) -> Outcome {
    let mut buf = Vec::new();
    let mut requests = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        if let Err(error) = drain(&mut buf, limits, &mut requests) {
            assert!(matches!(error.status(), 400 | 413 | 431 | 501));
            return Outcome {
                requests,
                refused: Some(error),
                left: buf.len(),
            };
        }
    }
    Outcome {
        requests,
        refused: None,
        left: buf.len(),
    }
}

fuzz_target!(|data: &[u8]| {
    let (limits_selector, data) = take_byte(data);
    let (split_seed, data) = take_byte(data);
    let limits = limits(limits_selector);

    let whole = run(&[data], &limits);
    let split = run(&pieces(data, split_seed), &limits);

    assert_eq!(whole.requests, split.requests);
    // A refusal may be found earlier on a prefix (a head already over the
    // limit, say) and name another reason, but never only one way.
    assert_eq!(
        whole.refused.is_some(),
        split.refused.is_some(),
        "whole: {:?}, split: {:?}",
        whole.refused,
        split.refused
    );
    if whole.refused.is_none() {
        assert_eq!(whole.left, split.left);
    }
});
