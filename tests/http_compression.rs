//! Long-polling answers compressed as engine.io's `httpCompression` does,
//! over raw HTTP/1.1 against the conformance server (`hub/examples/conformance.rs`,
//! an echo at `/engine.io/`): gzip or deflate when the GET's
//! `Accept-Encoding` allows it and the answer has at least the threshold's
//! bytes; plain otherwise. Every test runs against `--shards 1` and
//! `--shards 2`; `forwarded_get_is_compressed` makes the owning shard and
//! the accepting one differ.
//!
//! Run against the reference Node server (engine.io 6):
//!   HUB_CONFORMANCE_CMD="node $PWD/tests/clients/node/reference-server.mjs" HUB_CONFORMANCE_REFERENCE=1 \
//!     cargo test -p hub --test http_compression
//! Where hub differs on purpose, the check is relaxed in reference mode:
//! hub names `Accept-Encoding` in `Vary` on an answer whose coding depended
//! on it, and sends the body as it is to a client that prefers `identity`;
//! engine.io sends compressed answers chunked, hub with a `Content-Length`.

mod support;

use std::io::Read;

use base64::Engine as _;
use support::*;

/// Every test but one passes the threshold explicitly: the reference server
/// compresses nothing unless told to.
const THRESHOLD: usize = 1024;

fn start(shards: u32, extra: &[&str]) -> Server {
    let n = shards.to_string();
    let mut args = vec!["--shards", n.as_str()];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn start_default_threshold(shards: u32) -> Server {
    start(shards, &["--http-compression-threshold", "1024"])
}

macro_rules! sharded_tests {
    ($($name:ident),* $(,)?) => {
        mod shards_1 { $( #[test] fn $name() { super::$name(1); } )* }
        mod shards_2 { $( #[test] fn $name() { super::$name(2); } )* }
    };
}

sharded_tests!(
    gzip_above_the_threshold_plain_below_v4,
    deflate_when_it_is_preferred_v4,
    no_accept_encoding_is_plain_v4,
    identity_and_refusals_v4,
    base64_binary_v4,
    text_v3,
    xhr2_binary_v3,
    jsonp_v3,
    threshold_flag_and_off,
    forwarded_get_is_compressed,
    parked_get_is_compressed,
);

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

fn inflate_zlib(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a zlib (HTTP deflate) body");
    out
}

/// A message of about `len` bytes of JSON-like text, as Socket.IO would send.
fn message(len: usize, tag: &str) -> String {
    let mut out = format!("4[\"{tag}\"");
    let mut i = 0;
    while out.len() + 2 < len {
        out.push_str(&format!(",{{\"n\":{i},\"v\":\"x\"}}"));
        i += 1;
    }
    out.truncate(len - 1);
    out.push(']');
    out
}

/// GET the session's queue with these request headers.
fn poll_with(s: &mut Session, headers: &[(&str, &str)]) -> Response {
    let path = s.path();
    s.client.request("GET", &path, headers, b"")
}

/// The body as sent, decoded by its `Content-Encoding`; asserts the header
/// is `want` (`None`: absent) and that the length header is the coded one.
fn decoded(resp: &Response, want: Option<&str>, context: &str) -> Vec<u8> {
    assert_eq!(resp.status, 200, "{context}: {resp:?}");
    assert_eq!(
        resp.header("content-encoding"),
        want,
        "{context}: Content-Encoding"
    );
    if want.is_none() || !reference_differs("engine.io sends a compressed answer chunked") {
        assert_eq!(
            resp.header("content-length"),
            Some(resp.body.len().to_string().as_str()),
            "{context}: Content-Length counts the bytes sent"
        );
    }
    match want {
        None => resp.body.clone(),
        Some("gzip") => gunzip(&resp.body),
        Some("deflate") => inflate_zlib(&resp.body),
        Some(other) => panic!("{context}: unexpected coding {other}"),
    }
}

/// `Vary` names Accept-Encoding (hub only: engine.io sends no such Vary).
fn assert_varies(resp: &Response, varies: bool, context: &str) {
    if reference_differs("engine.io names no Accept-Encoding in Vary") {
        return;
    }
    let vary = resp.header("vary").unwrap_or("");
    assert_eq!(
        vary.split(',').any(|f| f.trim() == "Accept-Encoding"),
        varies,
        "{context}: Vary {vary:?}"
    );
}

fn gzip_above_the_threshold_plain_below_v4(shards: u32) {
    let srv = start_default_threshold(shards);
    let mut s = Session::open(srv.addr(), 4);
    let big = message(3000, "big");
    s.send(&big);
    let resp = poll_with(&mut s, &[("Accept-Encoding", "gzip, deflate, br")]);
    assert_eq!(decoded(&resp, Some("gzip"), "3000 bytes"), big.as_bytes());
    assert!(
        resp.body.len() < big.len() / 3,
        "compressed to {} bytes",
        resp.body.len()
    );
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    assert_varies(&resp, true, "compressed");

    // Exactly the threshold is compressed; one byte less is not.
    let at = message(THRESHOLD, "at");
    s.send(&at);
    let resp = poll_with(&mut s, &[("Accept-Encoding", "gzip")]);
    assert_eq!(
        decoded(&resp, Some("gzip"), "at the threshold"),
        at.as_bytes()
    );
    let under = message(THRESHOLD - 1, "under");
    s.send(&under);
    let resp = poll_with(&mut s, &[("Accept-Encoding", "gzip")]);
    assert_eq!(
        decoded(&resp, None, "under the threshold"),
        under.as_bytes()
    );
    assert_varies(&resp, false, "under the threshold");

    // The threshold counts the whole payload: two messages of 600 bytes.
    let (a, b) = (message(600, "a"), message(600, "b"));
    s.send(&format!("{a}\x1e{b}"));
    let resp = poll_with(&mut s, &[("Accept-Encoding", "gzip")]);
    assert_eq!(
        decoded(&resp, Some("gzip"), "two packets"),
        format!("{a}\x1e{b}").as_bytes()
    );
}

fn deflate_when_it_is_preferred_v4(shards: u32) {
    let srv = start_default_threshold(shards);
    let mut s = Session::open(srv.addr(), 4);
    for (accept, coding) in [
        ("deflate", "deflate"),
        ("deflate, gzip", "deflate"),
        ("gzip;q=0.5, deflate", "deflate"),
        ("gzip;q=0, *", "deflate"),
        ("*", "gzip"),
        ("deflate;q=0.1, gzip;q=0.2", "gzip"),
    ] {
        let big = message(2000, accept);
        s.send(&big);
        let resp = poll_with(&mut s, &[("Accept-Encoding", accept)]);
        assert_eq!(decoded(&resp, Some(coding), accept), big.as_bytes());
    }
}

fn no_accept_encoding_is_plain_v4(shards: u32) {
    let srv = start_default_threshold(shards);
    let mut s = Session::open(srv.addr(), 4);
    let big = message(5000, "plain");
    s.send(&big);
    let resp = poll_with(&mut s, &[]);
    assert_eq!(decoded(&resp, None, "no Accept-Encoding"), big.as_bytes());
    assert_varies(&resp, true, "a candidate the client did not accept");
    // Codings hub does not have.
    s.send(&big);
    let resp = poll_with(&mut s, &[("Accept-Encoding", "br, zstd")]);
    assert_eq!(decoded(&resp, None, "br, zstd"), big.as_bytes());
}

fn identity_and_refusals_v4(shards: u32) {
    let srv = start_default_threshold(shards);
    let mut s = Session::open(srv.addr(), 4);
    let big = message(2000, "refused");
    for accept in ["gzip;q=0, deflate;q=0", "identity", "*;q=0", ""] {
        s.send(&big);
        let resp = poll_with(&mut s, &[("Accept-Encoding", accept)]);
        assert_eq!(decoded(&resp, None, accept), big.as_bytes());
    }
    // A client preferring identity: hub sends the body as it is.
    s.send(&big);
    let resp = poll_with(&mut s, &[("Accept-Encoding", "gzip;q=0.5, identity")]);
    if !reference_differs("engine.io compresses even when identity is preferred") {
        assert_eq!(decoded(&resp, None, "identity preferred"), big.as_bytes());
    }
}

fn base64_binary_v4(shards: u32) {
    let srv = start_default_threshold(shards);
    let mut s = Session::open(srv.addr(), 4);
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 7) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let payload = format!("b{b64}\x1e4text");
    s.send(&payload);
    let resp = poll_with(&mut s, &[("Accept-Encoding", "gzip")]);
    assert_eq!(decoded(&resp, Some("gzip"), "base64"), payload.as_bytes());
}

fn text_v3(shards: u32) {
    let srv = start_default_threshold(shards);
    let mut s = Session::open(srv.addr(), 3);
    let big = message(2500, "v3");
    s.send(&v3_payload(&[&big, "4small"]));
    let resp = poll_with(&mut s, &[("Accept-Encoding", "gzip")]);
    let body = decoded(&resp, Some("gzip"), "v3 text");
    assert_eq!(
        v3_decode(&String::from_utf8(body).unwrap()),
        vec![big, "4small".to_string()]
    );
    let small = message(100, "v3small");
    s.send(&v3_payload(&[&small]));
    let resp = poll_with(&mut s, &[("Accept-Encoding", "gzip")]);
    assert_eq!(
        decoded(&resp, None, "v3 small"),
        v3_payload(&[&small]).as_bytes()
    );
}

fn xhr2_binary_v3(shards: u32) {
    let srv = start_default_threshold(shards);
    let mut s = Session::open(srv.addr(), 3);
    // A binary message, no b64: the answer is an XHR2 binary payload.
    let data: Vec<u8> = (0..4000u32).map(|i| (i % 13) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    s.send(&v3_payload(&[&format!("b4{b64}")]));
    let resp = poll_with(&mut s, &[("Accept-Encoding", "deflate")]);
    assert_eq!(
        resp.header("content-type"),
        Some("application/octet-stream")
    );
    let body = decoded(&resp, Some("deflate"), "XHR2 binary");
    // <1> <decimal digits of 4001> <0xff> <4> <data>
    let mut want = vec![1, 4, 0, 0, 1, 0xff, 4];
    want.extend_from_slice(&data);
    assert_eq!(body, want);
}

fn jsonp_v3(shards: u32) {
    let srv = start_default_threshold(shards);
    let mut c = srv.client();
    let resp = c.get("/engine.io/?EIO=3&transport=polling&j=0");
    let body = resp.assert_payload("JSONP handshake");
    let inner = body
        .strip_prefix("___eio[0](")
        .and_then(|b| b.strip_suffix(");"))
        .expect("a JSONP answer");
    let payload: String = serde_json::from_str(inner).unwrap();
    let (sid, _) = parse_open(&v3_decode(&payload)[0]);
    let path = format!("/engine.io/?EIO=3&transport=polling&j=0&sid={sid}");
    let big = message(3000, "jsonp");
    let form = format!("d={}", form_encode(&v3_payload(&[&big])));
    c.request(
        "POST",
        &path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .assert_post_ok("JSONP POST");
    let resp = c.request("GET", &path, &[("Accept-Encoding", "gzip")], b"");
    let body = String::from_utf8(decoded(&resp, Some("gzip"), "JSONP")).unwrap();
    let inner = body
        .strip_prefix("___eio[0](")
        .and_then(|b| b.strip_suffix(");"))
        .expect("a JSONP answer");
    let payload: String = serde_json::from_str(inner).unwrap();
    assert_eq!(v3_decode(&payload), vec![big]);
}

fn threshold_flag_and_off(shards: u32) {
    // A higher threshold.
    let srv = start(shards, &["--http-compression-threshold", "5000"]);
    let mut s = Session::open(srv.addr(), 4);
    let (mid, big) = (message(4000, "mid"), message(6000, "big"));
    s.send(&mid);
    let resp = poll_with(&mut s, &[("Accept-Encoding", "gzip")]);
    assert_eq!(decoded(&resp, None, "under 5000"), mid.as_bytes());
    s.send(&big);
    let resp = poll_with(&mut s, &[("Accept-Encoding", "gzip")]);
    assert_eq!(decoded(&resp, Some("gzip"), "over 5000"), big.as_bytes());
    drop(srv);

    if reference_differs("the reference server has no --no-http-compression") {
        return;
    }
    // Off.
    let srv = start(shards, &["--no-http-compression"]);
    let mut s = Session::open(srv.addr(), 4);
    s.send(&big);
    let resp = poll_with(&mut s, &[("Accept-Encoding", "gzip")]);
    assert_eq!(decoded(&resp, None, "off"), big.as_bytes());
    assert_varies(&resp, false, "off");
    drop(srv);

    // On by default, at 1024 bytes.
    let srv = start(shards, &[]);
    let mut s = Session::open(srv.addr(), 4);
    s.send(&big);
    let resp = poll_with(&mut s, &[("Accept-Encoding", "gzip")]);
    assert_eq!(decoded(&resp, Some("gzip"), "default"), big.as_bytes());
    let under = message(1023, "under");
    s.send(&under);
    let resp = poll_with(&mut s, &[("Accept-Encoding", "gzip")]);
    assert_eq!(decoded(&resp, None, "default, 1023"), under.as_bytes());
}

/// A kept-alive connection whose requests shard `shard` accepts, found by
/// handshaking on new connections until one's session names that shard
/// (the probe sessions are closed again).
fn conn_on_shard(srv: &Server, shards: u32, shard: usize) -> Conn {
    for _ in 0..200 {
        let mut conn = Conn::open(srv.addr());
        let body = conn.get(&polling_path(4, "")).assert_payload("handshake");
        let (sid, _) = parse_open(&body);
        let on = if shards == 1 || reference_mode() {
            shard
        } else {
            hub::engineio::Sid::parse(&sid).unwrap().shard()
        };
        conn.post(
            &format!("/engine.io/?EIO=4&transport=polling&sid={sid}"),
            b"1",
        )
        .assert_post_ok("closing a probe session");
        if on == shard {
            return conn;
        }
    }
    panic!("no connection landed on shard {shard} of {shards} in 200 tries");
}

fn forwarded_get_is_compressed(shards: u32) {
    let srv = start_default_threshold(shards);
    let other = (shards as usize - 1).min(1);
    let mut owner = conn_on_shard(&srv, shards, 0);
    let mut accepting = conn_on_shard(&srv, shards, other);
    let body = owner.get(&polling_path(4, "")).assert_payload("handshake");
    let (sid, _) = parse_open(&body);
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    let big = message(8000, "forwarded");
    owner.post(&path, big.as_bytes()).assert_post_ok("POST");
    // With two shards this GET is accepted by shard 1 and answered by 0.
    let resp = accepting.request("GET", &path, &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(decoded(&resp, Some("gzip"), "forwarded"), big.as_bytes());
    owner.post(&path, big.as_bytes()).assert_post_ok("POST");
    let resp = accepting.request("GET", &path, &[("Accept-Encoding", "deflate")], b"");
    assert_eq!(decoded(&resp, Some("deflate"), "forwarded"), big.as_bytes());
    owner.post(&path, big.as_bytes()).assert_post_ok("POST");
    let resp = accepting.request("GET", &path, &[], b"");
    assert_eq!(decoded(&resp, None, "forwarded, plain"), big.as_bytes());
}

fn parked_get_is_compressed(shards: u32) {
    let srv = start_default_threshold(shards);
    let mut s = Session::open_fresh(srv.addr(), 4);
    let path = s.path();
    let addr = srv.addr();
    // A GET that waits for data, on its own connection.
    let parked = std::thread::spawn(move || {
        Conn::open(addr).request("GET", &path, &[("Accept-Encoding", "gzip")], b"")
    });
    // Most likely parked by the time the POST arrives; if not, the GET finds
    // the message queued: either way its answer must be the same. (Over
    // 64 KiB, it is compressed in pieces, with yields between them.)
    std::thread::sleep(std::time::Duration::from_millis(100));
    let big = message(100_000, "parked");
    s.send(&big);
    let resp = parked.join().unwrap();
    assert_eq!(decoded(&resp, Some("gzip"), "parked GET"), big.as_bytes());
}
