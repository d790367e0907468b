//! Engine.IO v4 and v3 over raw HTTP/1.1 and WebSocket, against a real server
//! process (`hub/examples/conformance.rs`: raw Engine.IO at `/engine.io/`,
//! echoing every message). Each behaviour of `shared/protocol-notes.md` is
//! checked with exact values; every test runs against `--shards 1` and
//! `--shards 2` (modules `shards_1` and `shards_2`).
//!
//! Run against the reference Node server:
//!   npm ci --prefix tests/clients/node
//!   HUB_CONFORMANCE_CMD="node $PWD/tests/clients/node/reference-server.mjs" HUB_CONFORMANCE_REFERENCE=1 \
//!     cargo test -p hub --test engineio_raw
//! (`HUB_CONFORMANCE_REFERENCE=1` relaxes only the checks where the reference
//! is known to differ from protocol-notes.md; see `reference_differs`.)
//!
//! Where engine.io 6.6 differs from protocol-notes.md (these tests follow the
//! notes):
//! - it answers a polling POST `ok` as `text/html`, not
//!   `text/plain; charset=UTF-8` (relaxed in reference mode);
//! - a v4 client `2` over polling is answered `200 ok` (the session is still
//!   closed); the notes make it an error like an undecodable packet: 400
//!   (relaxed in reference mode).
//!
//! Details the notes leave open, accepted either way here:
//! - a second WebSocket for an upgraded sid, and an `EIO=3` WebSocket under
//!   `--no-eio3`: engine.io completes the WebSocket handshake, then closes
//!   (the latter by writing a raw `HTTP/1.1 400` on the upgraded socket); a
//!   plain HTTP 400 at the handshake is accepted too;
//! - polling with an upgraded (or WebSocket-only) sid: engine.io answers code
//!   3 "Bad request" (transport mismatch); code 1 is accepted too;
//! - the second of two concurrent GETs: engine.io answers a bare 400 without
//!   a JSON body, so only the status is checked.
//!
//! JSONP answers are checked as engine.io writes them: `___eio[N]("...");`
//! (with the trailing `;`).

mod support;

use std::io::{ErrorKind, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use support::*;
use tungstenite::protocol::frame::coding::CloseCode;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn start(shards: u32, extra: &[&str]) -> Server {
    let n = shards.to_string();
    let mut args = vec!["--shards", n.as_str()];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// 400 with an Engine.IO error JSON whose code is one of `codes` (for the
/// cases protocol-notes.md pins to "400" without naming the code).
fn assert_eio_error_any(resp: &Response, codes: &[u8], context: &str) {
    assert_eq!(resp.status, 400, "{context}: {resp:?}");
    let code = resp.json()["code"].as_u64().unwrap_or(99) as u8;
    assert!(
        codes.contains(&code),
        "{context}: error code {code} not in {codes:?}: {resp:?}"
    );
    resp.assert_eio_error(code, context);
}

macro_rules! sharded_tests {
    ($($name:ident),* $(,)?) => {
        mod shards_1 { $( #[test] fn $name() { super::$name(1); } )* }
        mod shards_2 { $( #[test] fn $name() { super::$name(2); } )* }
    };
}

sharded_tests!(
    handshake_polling_v4,
    handshake_websocket_v4,
    handshake_reflects_cli_settings,
    polling_text_echo_v4,
    polling_base64_binary_v4,
    websocket_echo_v4,
    websocket_frames_split_and_batched_v4,
    error_codes_v4,
    eio3_rejected_with_no_eio3,
    oversized_post_413_session_survives,
    duplicate_get_closes_session,
    hung_up_long_poll_closes_session,
    close_packet_while_get_pending,
    close_racing_a_poll_v3,
    close_racing_a_poll_v4,
    close_racing_a_forwarded_poll_v3,
    close_racing_a_forwarded_poll_v4,
    heartbeat_polling_v4,
    heartbeat_websocket_v4,
    ping_timeout_closes_polling_session,
    ping_timeout_closes_websocket_session,
    websocket_closed_by_the_server_is_closed_for_good,
    websocket_data_and_fin_in_one_segment_close_at_once,
    v4_client_ping_is_an_error,
    upgrade_answers_pending_get_with_noop,
    upgrade_answers_get_during_upgrade_with_noop,
    upgrade_flushes_queued_messages,
    upgrade_with_frames_behind_it,
    upgrade_second_websocket_is_closed,
    websocket_frame_over_max_payload_1009,
    cross_shard_polling_on_fresh_connections,
    cross_shard_upgrade_on_fresh_connections,
    cors_origin_and_preflight,
    not_found_on_other_paths,
    v3_handshake,
    v3_utf16_length_prefixes,
    v3_client_ping_answered,
    v3_server_closes_after_silence_polling,
    v3_server_closes_after_silence_websocket,
    v3_b64_binary,
    v3_b64_belongs_to_the_session,
    v3_xhr2_binary_payload,
    v3_websocket_binary_type_byte,
    v3_upgrade,
    v3_jsonp,
);

// Twice the cores of a 2-core machine: routing must not depend on N.
mod shards_4 {
    #[test]
    fn cross_shard_polling_on_fresh_connections() {
        super::cross_shard_polling_on_fresh_connections(4);
    }
    #[test]
    fn cross_shard_upgrade_on_fresh_connections() {
        super::cross_shard_upgrade_on_fresh_connections(4);
    }
    #[test]
    fn v3_upgrade() {
        super::v3_upgrade(4);
    }
}

/// The shard that owns a session, read from its sid.
fn owner_shard(sid: &str) -> usize {
    hub::engineio::Sid::parse(sid)
        .expect("a well-formed sid")
        .shard()
}

// ---------------------------------------------------------------------------
// Engine.IO v4: handshake
// ---------------------------------------------------------------------------

fn handshake_polling_v4(shards: u32) {
    let srv = start(shards, &[]);
    let mut c = srv.client();
    let resp = c.get("/engine.io/?EIO=4&transport=polling");
    let body = resp.assert_payload("handshake");
    let (sid, _) = parse_open(&body);
    assert_eq!(
        body,
        open_packet(&sid, &["websocket"], 25000, 20000, 1_000_000)
    );

    // `t` (cache buster) and any other query parameter are accepted.
    let resp = c.get("/engine.io/?EIO=4&transport=polling&t=N8hyd6w&foo=bar");
    let body2 = resp.assert_payload("handshake with t and foo");
    let (sid2, _) = parse_open(&body2);
    assert_ne!(sid, sid2, "each handshake makes a new session");
    assert_eq!(
        body2,
        open_packet(&sid2, &["websocket"], 25000, 20000, 1_000_000)
    );
}

fn handshake_websocket_v4(shards: u32) {
    let srv = start(shards, &[]);
    // A WebSocket-only session: the exact open packet, no upgrades.
    let mut ws = ws_connect(srv.addr(), "EIO=4&transport=websocket");
    let open = ws_text(&mut ws);
    let (sid, _) = parse_open(&open);
    assert_eq!(open, open_packet(&sid, &[], 25000, 20000, 1_000_000));
    // `t` and other parameters are accepted; each connection is a new session
    let mut ws2 = ws_connect(srv.addr(), "EIO=4&transport=websocket&t=abc&foo=bar");
    let open2 = ws_text(&mut ws2);
    let (sid2, _) = parse_open(&open2);
    assert_ne!(sid, sid2);
    assert_eq!(open2, open_packet(&sid2, &[], 25000, 20000, 1_000_000));
    ws_send_text(&mut ws, "4ok");
    assert_eq!(ws_text(&mut ws), "4ok");
}

fn handshake_reflects_cli_settings(shards: u32) {
    let srv = start(
        shards,
        &[
            "--ping-interval",
            "300",
            "--ping-timeout",
            "200",
            "--max-payload",
            "5000",
        ],
    );
    let resp = srv.client().get("/engine.io/?EIO=4&transport=polling");
    let body = resp.assert_payload("handshake");
    let (sid, _) = parse_open(&body);
    assert_eq!(body, open_packet(&sid, &["websocket"], 300, 200, 5000));

    let mut ws = ws_connect(srv.addr(), "EIO=4&transport=websocket");
    let open = ws_text(&mut ws);
    let (sid, _) = parse_open(&open);
    assert_eq!(open, open_packet(&sid, &[], 300, 200, 5000));
}

// ---------------------------------------------------------------------------
// Engine.IO v4: polling and WebSocket payloads
// ---------------------------------------------------------------------------

fn polling_text_echo_v4(shards: u32) {
    let srv = start(shards, &[]);
    let mut s = Session::open(srv.addr(), 4);
    s.send("4hello\x1e4world\x1e4€ 😀\x1e4");
    assert_eq!(s.poll_text(), "4hello\x1e4world\x1e4€ 😀\x1e4");
    // one packet, one message
    s.send("4again");
    assert_eq!(s.poll_text(), "4again");
    // a message with JSON-ish content and the separator-free text survives as is
    s.send("4{\"a\":[1,2]}");
    assert_eq!(s.poll_text(), "4{\"a\":[1,2]}");
}

fn polling_base64_binary_v4(shards: u32) {
    let srv = start(shards, &[]);
    let mut s = Session::open(srv.addr(), 4);
    s.send("bAQID");
    assert_eq!(s.poll_text(), "bAQID");
    let all: Vec<u8> = (0..=255).collect();
    let payload = format!("4text\x1eb{}\x1e4more\x1ebAA==", b64(&all));
    s.send(&payload);
    assert_eq!(s.poll_text(), payload);
}

fn websocket_echo_v4(shards: u32) {
    let srv = start(shards, &[]);
    let (mut ws, sid, _) = ws_open(srv.addr(), 4);
    ws_send_text(&mut ws, "4hello");
    assert_eq!(ws_text(&mut ws), "4hello");
    ws_send_text(&mut ws, "4€ 😀");
    assert_eq!(ws_text(&mut ws), "4€ 😀");
    // v4 binary frames carry the raw bytes, no type byte
    ws_send_binary(&mut ws, &[1, 2, 3]);
    assert_eq!(ws_binary(&mut ws), vec![1, 2, 3]);
    let all: Vec<u8> = (0..=255).collect();
    ws_send_binary(&mut ws, &all);
    assert_eq!(ws_binary(&mut ws), all);
    // one packet per frame, in order
    ws_send_text(&mut ws, "4a");
    ws_send_text(&mut ws, "4b");
    assert_eq!(ws_text(&mut ws), "4a");
    assert_eq!(ws_text(&mut ws), "4b");
    // polling with a WebSocket-only sid is refused (reference: code 3,
    // transport mismatch; protocol-notes only says 400)
    let resp = get_fresh(
        srv.addr(),
        &format!("/engine.io/?EIO=4&transport=polling&sid={sid}"),
    );
    assert_eio_error_any(&resp, &[1, 3], "polling on a websocket session");
    ws_send_text(&mut ws, "4still");
    assert_eq!(ws_text(&mut ws), "4still");
}

/// A masked client text frame built by hand, to control how its bytes are
/// split across writes.
fn masked_text_frame(text: &str) -> Vec<u8> {
    ws_frame(0x1, text.as_bytes(), Some([0x37, 0xfa, 0x21, 0x3d]))
}

/// However the client's bytes are cut into reads, every frame is decoded
/// once, in order: several frames in one write, a frame a byte at a time, a
/// frame cut with the next behind it, a message larger than one read.
fn websocket_frames_split_and_batched_v4(shards: u32) {
    let srv = start(shards, &[]);
    let (mut ws, _, _) = ws_open(srv.addr(), 4);
    let batch: Vec<u8> = ["4a", "4b", "4c"]
        .iter()
        .flat_map(|t| masked_text_frame(t))
        .collect();
    ws.get_mut().write_all(&batch).unwrap();
    for t in ["4a", "4b", "4c"] {
        assert_eq!(ws_text(&mut ws), t);
    }
    for byte in masked_text_frame("4slow") {
        ws.get_mut().write_all(&[byte]).unwrap();
        thread::sleep(MS(2));
    }
    assert_eq!(ws_text(&mut ws), "4slow");
    let (one, two) = (masked_text_frame("4one"), masked_text_frame("4two"));
    let mut bytes = one;
    bytes.extend(&two[..3]);
    ws.get_mut().write_all(&bytes).unwrap();
    thread::sleep(MS(20));
    ws.get_mut().write_all(&two[3..]).unwrap();
    assert_eq!(ws_text(&mut ws), "4one");
    assert_eq!(ws_text(&mut ws), "4two");
    let big = format!("4{}", "x".repeat(300_000));
    let frame = masked_text_frame(&big);
    let (head, tail) = frame.split_at(100_000);
    ws.get_mut().write_all(head).unwrap();
    thread::sleep(MS(20));
    ws.get_mut().write_all(tail).unwrap();
    assert_eq!(ws_text(&mut ws), big);
    ws_send_text(&mut ws, "4end");
    assert_eq!(ws_text(&mut ws), "4end");
}

// ---------------------------------------------------------------------------
// Engine.IO v4: errors
// ---------------------------------------------------------------------------

fn error_codes_v4(shards: u32) {
    let srv = start(shards, &[]);
    let mut c = srv.client();
    c.get("/engine.io/?EIO=4&transport=foo")
        .assert_eio_error(0, "unknown transport");
    c.get("/engine.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA")
        .assert_eio_error(1, "unknown sid (GET)");
    c.post(
        "/engine.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA",
        b"4x",
    )
    .assert_eio_error(1, "unknown sid (POST)");
    c.post("/engine.io/?EIO=4&transport=polling", b"4x")
        .assert_eio_error(2, "POST without sid");
    // a plain GET (no Upgrade) asking for the websocket transport
    c.get("/engine.io/?EIO=4&transport=websocket")
        .assert_eio_error(3, "websocket without upgrade");
    // a polling sid used with another transport without an upgrade
    let s = Session::open(srv.addr(), 4);
    c.get(&format!(
        "/engine.io/?EIO=4&transport=websocket&sid={}",
        s.sid
    ))
    .assert_eio_error(3, "transport mismatch");
    // the session is untouched by the bad requests
    let mut s = s;
    s.assert_echo("fine");
}

fn eio3_rejected_with_no_eio3(shards: u32) {
    let srv = start(shards, &["--no-eio3"]);
    let mut c = srv.client();
    c.get("/engine.io/?EIO=3&transport=polling")
        .assert_eio_error(5, "EIO=3 with --no-eio3");
    // Refused at the handshake (400), or (the reference: it completes the
    // WebSocket handshake first, then writes a 400 and closes) closed without
    // a single frame.
    match ws_try_connect(srv.addr(), "EIO=3&transport=websocket") {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 400),
        Err(e) => panic!("EIO=3 websocket with --no-eio3: expected HTTP 400, got {e}"),
        Ok(mut ws) => {
            let (_end, data) = ws_expect_close(&mut ws, MS(2000));
            assert!(
                data.is_empty(),
                "EIO=3 websocket with --no-eio3 got data: {data:?}"
            );
        }
    }
    let mut s = Session::open(srv.addr(), 4);
    s.assert_echo("v4 still served");
}

fn oversized_post_413_session_survives(shards: u32) {
    let srv = start(shards, &["--max-payload", "100"]);
    let mut s = Session::open(srv.addr(), 4);
    assert_eq!(s.handshake["maxPayload"], 100);
    let big = format!("4{}", "x".repeat(200));
    let resp = post_fresh(srv.addr(), &s.path(), big.as_bytes());
    assert_eq!(resp.status, 413, "oversized POST: {resp:?}");
    // exactly maxPayload bytes is fine
    let exact = format!("4{}", "y".repeat(99));
    s.send(&exact);
    assert_eq!(s.poll_text(), exact);
    s.assert_echo("survived");
}

fn duplicate_get_closes_session(shards: u32) {
    let srv = start(shards, &[]);
    let mut s = Session::open(srv.addr(), 4);
    let first = s.spawn_poll();
    thread::sleep(MS(300));
    let second = get_fresh(srv.addr(), &s.path());
    // reference: bare 400 without a JSON body
    assert_eq!(second.status, 400, "second concurrent GET: {second:?}");
    let first = first.join().unwrap();
    assert_eq!(first.assert_payload("first GET"), "1");
    s.assert_gone("after a duplicate GET");
}

fn hung_up_long_poll_closes_session(shards: u32) {
    let srv = start(shards, &[]);
    // Sessions on fresh connections land on every shard, and so do their
    // GETs: both the owner's own parked GETs and forwarded ones are covered.
    let mut sessions: Vec<Session> = (0..8).map(|_| Session::open_fresh(srv.addr(), 4)).collect();
    for s in &sessions {
        let mut conn = srv.conn();
        conn.stream
            .write_all(format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", s.path()).as_bytes())
            .unwrap();
        thread::sleep(MS(50));
        // The client gives up on its long poll: the reference server then
        // closes the session rather than write later packets into nothing.
        drop(conn);
    }
    thread::sleep(MS(200));
    for s in sessions.iter_mut() {
        s.assert_gone("after its parked GET hung up");
    }
}

fn close_packet_while_get_pending(shards: u32) {
    let srv = start(shards, &[]);
    let mut s = Session::open(srv.addr(), 4);
    let pending = s.spawn_poll();
    thread::sleep(MS(200));
    s.send("1");
    let pending = pending.join().unwrap();
    assert_eq!(pending.assert_payload("pending GET"), "6");
    s.assert_gone("after client close");
    post_fresh(srv.addr(), &s.path(), b"4late").assert_eio_error(1, "POST after client close");
}

/// The close packet and the client's GET as they come from a polling client
/// that closes: `(close payload, the GET's answer)`.
fn close_and_noop(eio: u8) -> (&'static str, &'static str) {
    match eio {
        3 => ("1:1", "1:6"),
        _ => ("1", "6"),
    }
}

/// Writes a GET, then at once on another connection a POST with the close
/// packet (the engine.io-protocol test suite's "forcefully closes the
/// session"), and checks the answers: the GET was sent before the close,
/// so it is answered with a noop however the two travel to the session's
/// shard; a GET after both answers finds the session gone. `relax` names
/// why the reference server may refuse the GET in this setting.
fn race_close_with_a_poll(
    srv: &Server,
    eio: u8,
    path: &str,
    (get, post): (&mut Conn, &mut Conn),
    run: usize,
    relax: Option<&str>,
) {
    let (close, noop) = close_and_noop(eio);
    get.send(&build_request("GET", path, &[], b""));
    post.send(&build_request(
        "POST",
        path,
        &[("Content-Type", "text/plain;charset=UTF-8")],
        close.as_bytes(),
    ));
    post.read_response()
        .expect("an answer to the close POST")
        .assert_post_ok("close POST");
    let answer = get.read_response().expect("an answer to the GET");
    if !relax.is_some_and(reference_differs) {
        assert_eq!(
            (answer.status, answer.text()),
            (200, noop.to_owned()),
            "run {run}: the GET sent before the close ({path}): {answer:?}"
        );
    }
    get_fresh(srv.addr(), path).assert_eio_error(1, "a GET after the close");
}

/// The race on fresh connections, so over every pair of shards for the two
/// requests, many times over.
fn close_racing_a_poll(shards: u32, eio: u8) {
    let srv = start(shards, &[]);
    for run in 0..200 {
        let s = Session::open_fresh(srv.addr(), eio);
        let mut get = Conn::open(srv.addr());
        let mut post = Conn::open(srv.addr());
        race_close_with_a_poll(&srv, eio, &s.path(), (&mut get, &mut post), run, None);
    }
}

fn close_racing_a_poll_v3(shards: u32) {
    close_racing_a_poll(shards, 3);
}

fn close_racing_a_poll_v4(shards: u32) {
    close_racing_a_poll(shards, 4);
}

/// A kept-alive connection accepted by shard `shard` of a server with
/// `shards` shards: connections are opened until a handshake on one names
/// that shard (a session belongs to the shard that accepted its handshake).
/// Each probe's session is closed again.
fn conn_on_shard(srv: &Server, eio: u8, shards: u32, shard: usize) -> Conn {
    for _ in 0..200 {
        let mut conn = Conn::open(srv.addr());
        let sid = handshake_on(&mut conn, eio);
        // The reference server is one process: any connection will do.
        let on = if shards == 1 || reference_mode() {
            shard
        } else {
            owner_shard(&sid)
        };
        let path = format!("/engine.io/?EIO={eio}&transport=polling&sid={sid}");
        conn.post(&path, close_and_noop(eio).0.as_bytes())
            .assert_post_ok("closing a probe session");
        if on == shard {
            return conn;
        }
    }
    panic!("no connection landed on shard {shard} of {shards} in 200 tries");
}

/// A polling handshake on `conn`; the new session's sid.
fn handshake_on(conn: &mut Conn, eio: u8) -> String {
    let body = conn.get(&polling_path(eio, "")).assert_payload("handshake");
    let open = if eio == 3 {
        v3_decode(&body).remove(0)
    } else {
        body
    };
    parse_open(&open).0
}

/// The race as it failed: the session and the close POST on shard 0, the
/// GET accepted by shard 1 and forwarded, so that it reaches the session
/// after a trip the POST does not make. 200 runs over the same kept-alive
/// connections.
fn close_racing_a_forwarded_poll(shards: u32, eio: u8) {
    let srv = start(shards, &[]);
    let mut owner = conn_on_shard(&srv, eio, shards, 0);
    let mut other = conn_on_shard(&srv, eio, shards, if shards == 1 { 0 } else { 1 });
    for run in 0..200 {
        let sid = handshake_on(&mut owner, eio);
        let path = format!("/engine.io/?EIO={eio}&transport=polling&sid={sid}");
        race_close_with_a_poll(
            &srv,
            eio,
            &path,
            (&mut other, &mut owner),
            run,
            Some("it often reads the POST of the connection it just answered first"),
        );
    }
    // The race at its worst, made certain: the GET only sent once the
    // close is answered. The session cannot tell it from a GET sent before
    // (see `Session::note_client_left`), so it is answered too, once; the
    // reference server, one process, has no such race and finds no session.
    let (close, noop) = close_and_noop(eio);
    let sid = handshake_on(&mut owner, eio);
    let path = format!("/engine.io/?EIO={eio}&transport=polling&sid={sid}");
    owner
        .post(&path, close.as_bytes())
        .assert_post_ok("close POST");
    let late = other.get(&path);
    if !reference_differs("one process: a GET after the close finds no session") {
        assert_eq!(
            (late.status, late.text()),
            (200, noop.to_owned()),
            "the first GET after the close: {late:?}"
        );
    }
    owner
        .post(&path, close.as_bytes())
        .assert_eio_error(1, "a POST after the close");
    other
        .get(&path)
        .assert_eio_error(1, "a second GET after the close");
}

fn close_racing_a_forwarded_poll_v3(shards: u32) {
    close_racing_a_forwarded_poll(shards, 3);
}

fn close_racing_a_forwarded_poll_v4(shards: u32) {
    close_racing_a_forwarded_poll(shards, 4);
}

// ---------------------------------------------------------------------------
// Engine.IO v4: heartbeat
// ---------------------------------------------------------------------------

fn heartbeat_polling_v4(shards: u32) {
    let srv = start(
        shards,
        &["--ping-interval", "300", "--ping-timeout", "1000"],
    );
    let t0 = Instant::now();
    let mut s = Session::open(srv.addr(), 4);
    let handshake_done = t0.elapsed();
    assert_eq!(s.poll_text(), "2", "the server pings");
    let first = t0.elapsed();
    assert!(
        first >= MS(280) && first < MS(1500),
        "first ping at {first:?} (handshake took {handshake_done:?}), expected ~300ms"
    );
    s.send("3");
    let t1 = Instant::now();
    assert_eq!(s.poll_text(), "2", "the server pings again");
    let second = t1.elapsed();
    assert!(
        second >= MS(150) && second < MS(1500),
        "second ping {second:?} after the pong"
    );
    s.send("3");
    s.assert_echo("alive after two heartbeats");
}

fn heartbeat_websocket_v4(shards: u32) {
    let srv = start(
        shards,
        &["--ping-interval", "300", "--ping-timeout", "1000"],
    );
    let t0 = Instant::now();
    let (mut ws, _, _) = ws_open(srv.addr(), 4);
    // not immediately: nothing within the first 200 ms
    assert!(
        ws_read_within(&mut ws, MS(200)).is_none(),
        "a frame arrived right after the open packet"
    );
    assert_eq!(ws_text(&mut ws), "2");
    let first = t0.elapsed();
    assert!(
        first >= MS(280) && first < MS(1500),
        "first ping at {first:?}, expected ~300ms"
    );
    ws_send_text(&mut ws, "3");
    let t1 = Instant::now();
    assert_eq!(ws_text(&mut ws), "2");
    let second = t1.elapsed();
    assert!(
        second >= MS(150) && second < MS(1500),
        "second ping {second:?} after the pong"
    );
    ws_send_text(&mut ws, "3");
    ws_send_text(&mut ws, "4alive");
    assert_eq!(ws_text(&mut ws), "4alive");
}

fn ping_timeout_closes_polling_session(shards: u32) {
    let srv = start(shards, &["--ping-interval", "300", "--ping-timeout", "200"]);
    let mut s = Session::open(srv.addr(), 4);
    assert_eq!(s.poll_text(), "2");
    // no pong: closed 200 ms after the ping
    thread::sleep(MS(600));
    s.assert_gone("after a ping timeout");
}

fn ping_timeout_closes_websocket_session(shards: u32) {
    let srv = start(shards, &["--ping-interval", "300", "--ping-timeout", "200"]);
    let (mut ws, sid, _) = ws_open(srv.addr(), 4);
    assert_eq!(ws_text(&mut ws), "2");
    let t = Instant::now();
    let (_end, data) = ws_expect_close(&mut ws, MS(1500));
    assert!(data.is_empty(), "no data before the close: {data:?}");
    let waited = t.elapsed();
    assert!(
        waited >= MS(120),
        "closed {waited:?} after the ping, expected ~200ms"
    );
    get_fresh(
        srv.addr(),
        &format!("/engine.io/?EIO=4&transport=polling&sid={sid}"),
    )
    .assert_eio_error(1, "websocket session after a ping timeout");
}

/// A client that sends its last message and its FIN in one TCP segment is
/// answered, then closed at once, not at the heartbeat: TCP takes the FIN in
/// the same read as the bytes before it, after which the socket reports no
/// new wakeup (the readiness ring must not wait for one). Also run with the
/// readiness ring off.
fn websocket_data_and_fin_in_one_segment_close_at_once(shards: u32) {
    for env in [None, Some(("HUB_READINESS_RING", "off"))] {
        let args = ["--shards", &shards.to_string()];
        let srv = match env {
            Some(var) => Server::start_with_env(&args, &[var]),
            None => Server::start(&args),
        };
        let (mut ws, _, _) = ws_open(srv.addr(), 4);
        let tcp = ws.get_mut();
        tcp.set_nodelay(true).unwrap();
        set_cork(tcp, true);
        // A masked text frame "4bye", then the FIN, held back by the cork
        // and sent as one segment when it is pulled.
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![0x81, 0x80 | 4];
        frame.extend_from_slice(&mask);
        frame.extend(b"4bye".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        tcp.write_all(&frame).unwrap();
        tcp.shutdown(std::net::Shutdown::Write).unwrap();
        set_cork(tcp, false);
        // Panics if the server has not closed within 3 s (its heartbeat
        // would take 45 s).
        let (_end, data) = ws_expect_close(&mut ws, MS(3000));
        assert_eq!(
            data,
            [tungstenite::Message::text("4bye")],
            "{env:?}: the last message is answered"
        );
    }
}

/// Hold back (`true`) or send (`false`) a connection's partial segments.
fn set_cork(tcp: &std::net::TcpStream, on: bool) {
    use std::os::fd::AsRawFd;
    let value: libc::c_int = on.into();
    // SAFETY: setsockopt(2) on a live socket with a pointer to a c_int and
    // its size.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "TCP_CORK: {}", std::io::Error::last_os_error());
}

/// A WebSocket the server closes is really closed, not only shut down for
/// writing: bytes the client sends after the close are answered with a
/// reset. (A descriptor still referenced by anything, such as a poll left
/// armed on it, would take them in silently.) Also run with the readiness
/// ring off, on glommio's reads.
fn websocket_closed_by_the_server_is_closed_for_good(shards: u32) {
    for env in [None, Some(("HUB_READINESS_RING", "off"))] {
        let args = [
            "--shards",
            &shards.to_string(),
            "--ping-interval",
            "300",
            "--ping-timeout",
            "200",
        ];
        let srv = match env {
            Some(var) => Server::start_with_env(&args, &[var]),
            None => Server::start(&args),
        };
        let (mut ws, _, _) = ws_open(srv.addr(), 4);
        assert_eq!(ws_text(&mut ws), "2");
        let (end, _) = ws_expect_close(&mut ws, MS(1500));
        assert_eq!(end, WsEnd::Close(Some(1000)), "{env:?}");
        let tcp = ws.get_mut();
        let deadline = Instant::now() + MS(3000);
        let reset = loop {
            assert!(
                Instant::now() < deadline,
                "{env:?}: no reset after the close"
            );
            if let Err(e) = tcp.write_all(b"late") {
                break e.kind();
            }
            tcp.set_read_timeout(Some(MS(50))).unwrap();
            match tcp.read(&mut [0; 64]) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => break e.kind(),
                Ok(_) => {}
            }
        };
        assert!(
            matches!(reset, ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
            "{env:?}: {reset:?}"
        );
    }
}

fn v4_client_ping_is_an_error(shards: u32) {
    let srv = start(shards, &[]);
    // polling
    let mut s = Session::open(srv.addr(), 4);
    let resp = s.post(b"2");
    if reference_differs(
        "a v4 client ping over polling is answered 200 ok (the session is still closed)",
    ) {
        resp.assert_post_ok("v4 ping");
    } else {
        assert_eq!(resp.status, 400, "v4 client ping over polling: {resp:?}");
    }
    s.assert_gone("after a v4 client ping");
    // websocket
    let (mut ws, sid, _) = ws_open(srv.addr(), 4);
    ws_send_text(&mut ws, "2");
    let (_end, data) = ws_expect_close(&mut ws, MS(2000));
    assert!(data.is_empty(), "no answer to a v4 client ping: {data:?}");
    get_fresh(
        srv.addr(),
        &format!("/engine.io/?EIO=4&transport=polling&sid={sid}"),
    )
    .assert_eio_error(1, "websocket session after a v4 client ping");
}

// ---------------------------------------------------------------------------
// Engine.IO v4: upgrade
// ---------------------------------------------------------------------------

fn upgrade_answers_pending_get_with_noop(shards: u32) {
    let srv = start(shards, &[]);
    let mut s = Session::open(srv.addr(), 4);
    let pending = s.spawn_poll();
    thread::sleep(MS(150));
    let mut ws = ws_connect(
        srv.addr(),
        &format!("EIO=4&transport=websocket&sid={}", s.sid),
    );
    ws_send_text(&mut ws, "2probe");
    assert_eq!(ws_text(&mut ws), "3probe");
    let t = Instant::now();
    let pending = pending.join().unwrap();
    assert_eq!(pending.assert_payload("GET pending at the probe"), "6");
    assert!(
        t.elapsed() < MS(1500),
        "the pending GET took {:?} to get its noop",
        t.elapsed()
    );
    ws_send_text(&mut ws, "5");
    ws_send_text(&mut ws, "4after");
    assert_eq!(ws_text(&mut ws), "4after");
    // polling with that sid is over (reference: code 3, transport mismatch)
    assert_eio_error_any(&s.poll(), &[1, 3], "GET after the upgrade");
    assert_eio_error_any(&s.post(b"4x"), &[1, 3], "POST after the upgrade");
    ws_send_text(&mut ws, "4still");
    assert_eq!(ws_text(&mut ws), "4still");
}

fn upgrade_answers_get_during_upgrade_with_noop(shards: u32) {
    let srv = start(shards, &[]);
    let mut s = Session::open(srv.addr(), 4);
    let mut ws = ws_connect(
        srv.addr(),
        &format!("EIO=4&transport=websocket&sid={}", s.sid),
    );
    ws_send_text(&mut ws, "2probe");
    assert_eq!(ws_text(&mut ws), "3probe");
    for i in 0..2 {
        let t = Instant::now();
        assert_eq!(s.poll_text(), "6", "GET #{i} during the upgrade");
        assert!(
            t.elapsed() < MS(1500),
            "GET #{i} during the upgrade took {:?}",
            t.elapsed()
        );
    }
    ws_send_text(&mut ws, "5");
    ws_send_text(&mut ws, "4done");
    assert_eq!(ws_text(&mut ws), "4done");
    // after `5`, even on another connection: 400, never `6`
    let resp = get_fresh(srv.addr(), &s.path());
    assert_eio_error_any(&resp, &[1, 3], "GET after `5`");
}

fn upgrade_flushes_queued_messages(shards: u32) {
    let srv = start(shards, &[]);
    let mut s = Session::open(srv.addr(), 4);
    s.send("4one\x1e4two"); // echoes queued: no GET is pending
    let mut ws = ws_connect(
        srv.addr(),
        &format!("EIO=4&transport=websocket&sid={}", s.sid),
    );
    ws_send_text(&mut ws, "2probe");
    assert_eq!(ws_text(&mut ws), "3probe");
    s.send("4three\x1ebAQID"); // still polling during the upgrade
    ws_send_text(&mut ws, "5");
    assert_eq!(ws_text(&mut ws), "4one");
    assert_eq!(ws_text(&mut ws), "4two");
    assert_eq!(ws_text(&mut ws), "4three");
    assert_eq!(ws_binary(&mut ws), vec![1, 2, 3]);
    ws_send_text(&mut ws, "4four");
    assert_eq!(ws_text(&mut ws), "4four");
    assert!(
        ws_read_within(&mut ws, MS(200)).is_none(),
        "nothing else is queued"
    );
}

/// Messages the client sends in the same write as its upgrade packet belong
/// to the upgraded session.
fn upgrade_with_frames_behind_it(shards: u32) {
    let srv = start(shards, &[]);
    let s = Session::open(srv.addr(), 4);
    let mut ws = ws_connect(
        srv.addr(),
        &format!("EIO=4&transport=websocket&sid={}", s.sid),
    );
    ws_send_text(&mut ws, "2probe");
    assert_eq!(ws_text(&mut ws), "3probe");
    let bytes: Vec<u8> = ["5", "4right behind", "4and another"]
        .iter()
        .flat_map(|t| masked_text_frame(t))
        .collect();
    ws.get_mut().write_all(&bytes).unwrap();
    assert_eq!(ws_text(&mut ws), "4right behind");
    assert_eq!(ws_text(&mut ws), "4and another");
}

fn upgrade_second_websocket_is_closed(shards: u32) {
    let srv = start(shards, &[]);
    let s = Session::open(srv.addr(), 4);
    let mut ws = ws_upgrade(&s);
    ws_send_text(&mut ws, "4first");
    assert_eq!(ws_text(&mut ws), "4first");
    // A second WebSocket for the same sid: refused at the handshake (400) or
    // accepted and closed without a single data frame.
    match ws_try_connect(
        srv.addr(),
        &format!("EIO=4&transport=websocket&sid={}", s.sid),
    ) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 400),
        Err(e) => panic!("second websocket: expected HTTP 400 or a close, got {e}"),
        Ok(mut ws2) => {
            ws_send_text(&mut ws2, "2probe");
            let (_end, data) = ws_expect_close(&mut ws2, MS(2000));
            assert!(data.is_empty(), "the second websocket got data: {data:?}");
        }
    }
    ws_send_text(&mut ws, "4still first");
    assert_eq!(ws_text(&mut ws), "4still first");
}

fn websocket_frame_over_max_payload_1009(shards: u32) {
    let srv = start(shards, &["--max-payload", "100"]);
    let (mut ws, sid, json) = ws_open(srv.addr(), 4);
    assert_eq!(json["maxPayload"], 100);
    let exact = format!("4{}", "y".repeat(99));
    ws_send_text(&mut ws, &exact);
    assert_eq!(ws_text(&mut ws), exact);
    ws_send_text(&mut ws, &format!("4{}", "x".repeat(200)));
    ws_expect_close_code(&mut ws, CloseCode::Size, MS(2000));
    get_fresh(
        srv.addr(),
        &format!("/engine.io/?EIO=4&transport=polling&sid={sid}"),
    )
    .assert_eio_error(1, "session after a 1009 close");
}

// ---------------------------------------------------------------------------
// Cross-shard forwarding
// ---------------------------------------------------------------------------

fn cross_shard_polling_on_fresh_connections(shards: u32) {
    let srv = start(shards, &[]);
    // 40 handshakes, each on a fresh TCP connection (the kernel spreads them
    // over the shards' listeners), then every POST and GET on another fresh
    // connection, interleaved across sessions.
    let mut sessions: Vec<Session> = (0..40)
        .map(|_| Session::open_fresh(srv.addr(), 4))
        .collect();
    let mut sids: Vec<&str> = sessions.iter().map(|s| s.sid.as_str()).collect();
    sids.sort();
    sids.dedup();
    assert_eq!(sids.len(), 40, "sids are unique");
    // Fresh connections spread over the listeners: every shard owns some
    // sessions (all 40 on one of N shards has odds of N^-39).
    if !reference_differs("the reference is one process; its sids name no shard") {
        let mut owners: Vec<usize> = sids.iter().map(|sid| owner_shard(sid)).collect();
        owners.sort();
        owners.dedup();
        assert_eq!(owners.len(), shards as usize, "owners {owners:?}");
    }
    for (i, s) in sessions.iter_mut().enumerate() {
        s.send(&format!("4msg-{i}"));
    }
    for (i, s) in sessions.iter_mut().enumerate() {
        s.send(&format!("4more-{i}\x1eb{}", b64(&[i as u8, 0xff])));
    }
    for (i, s) in sessions.iter_mut().enumerate() {
        assert_eq!(
            s.poll_text(),
            format!("4msg-{i}\x1e4more-{i}\x1eb{}", b64(&[i as u8, 0xff])),
            "session {i} ({})",
            s.sid
        );
    }
    // a long poll parked on one connection is answered by a POST on another
    let mut pending = Vec::new();
    for s in sessions.iter().take(10) {
        pending.push(s.spawn_poll());
    }
    thread::sleep(MS(200));
    for (i, s) in sessions.iter_mut().take(10).enumerate() {
        s.send(&format!("4late-{i}"));
    }
    for (i, p) in pending.into_iter().enumerate() {
        assert_eq!(
            p.join().unwrap().assert_payload("parked GET"),
            format!("4late-{i}")
        );
    }
}

fn cross_shard_upgrade_on_fresh_connections(shards: u32) {
    let srv = start(shards, &[]);
    for i in 0..12 {
        let mut s = Session::open_fresh(srv.addr(), 4);
        s.send(&format!("4queued-{i}"));
        let mut ws = ws_upgrade(&s);
        assert_eq!(
            ws_text(&mut ws),
            format!("4queued-{i}"),
            "session {i} ({})",
            s.sid
        );
        ws_send_text(&mut ws, &format!("4ws-{i}"));
        assert_eq!(ws_text(&mut ws), format!("4ws-{i}"));
        ws_send_binary(&mut ws, &[i as u8]);
        assert_eq!(ws_binary(&mut ws), vec![i as u8]);
        assert_eio_error_any(
            &get_fresh(srv.addr(), &s.path()),
            &[1, 3],
            "GET after the upgrade",
        );
    }
}

// ---------------------------------------------------------------------------
// CORS and paths
// ---------------------------------------------------------------------------

fn cors_origin_and_preflight(shards: u32) {
    let srv = start(shards, &[]);
    let origin = "http://example.com:8080";
    let mut c = srv.client();
    let check = |resp: &Response, what: &str| {
        assert_eq!(
            resp.header("access-control-allow-origin"),
            Some(origin),
            "{what}: {resp:?}"
        );
        assert_eq!(
            resp.header("access-control-allow-credentials"),
            Some("true"),
            "{what}: {resp:?}"
        );
    };
    let resp = c.request(
        "GET",
        "/engine.io/?EIO=4&transport=polling",
        &[("Origin", origin)],
        b"",
    );
    let body = resp.assert_payload("handshake with Origin");
    check(&resp, "handshake");
    let (sid, _) = parse_open(&body);
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");

    let resp = c.request(
        "OPTIONS",
        &path,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    );
    assert_eq!(resp.status, 204, "preflight: {resp:?}");
    check(&resp, "preflight");
    let methods = resp
        .header("access-control-allow-methods")
        .unwrap_or("")
        .to_ascii_uppercase();
    assert!(
        methods.contains("GET") && methods.contains("POST"),
        "allowed methods: {methods:?}"
    );
    let allowed = resp
        .header("access-control-allow-headers")
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(
        allowed.contains("content-type"),
        "allowed headers: {allowed:?}"
    );

    let resp = c.request(
        "POST",
        &path,
        &[
            ("Origin", origin),
            ("Content-Type", "text/plain;charset=UTF-8"),
        ],
        b"4cors",
    );
    resp.assert_post_ok("POST with Origin");
    check(&resp, "POST");
    let resp = c.request("GET", &path, &[("Origin", origin)], b"");
    assert_eq!(resp.assert_payload("GET with Origin"), "4cors");
    check(&resp, "GET");
    // errors carry CORS headers too, so a browser can read them
    let resp = c.request(
        "GET",
        "/engine.io/?EIO=4&transport=polling&sid=nope",
        &[("Origin", origin)],
        b"",
    );
    resp.assert_eio_error(1, "unknown sid with Origin");
    check(&resp, "error");
}

fn not_found_on_other_paths(shards: u32) {
    let srv = start(shards, &[]);
    let mut c = srv.client();
    for path in [
        "/",
        "/foo",
        "/chat/?EIO=4&transport=polling",
        "/engine.iox/?EIO=4&transport=polling",
    ] {
        let resp = c.get(path);
        assert_eq!(resp.status, 404, "GET {path}: {resp:?}");
    }
    let mut s = Session::open(srv.addr(), 4);
    s.assert_echo("after 404s");
}

// ---------------------------------------------------------------------------
// Engine.IO v3
// ---------------------------------------------------------------------------

fn v3_handshake(shards: u32) {
    let srv = start(shards, &[]);
    let resp = srv.client().get("/engine.io/?EIO=3&transport=polling");
    let body = resp.assert_payload("v3 handshake");
    let packets = v3_decode(&body);
    let (sid, _) = parse_open(&packets[0]);
    let open = open_packet(&sid, &["websocket"], 25000, 20000, 1_000_000);
    assert_eq!(body, format!("{}:{open}", open.len()));

    let mut ws = ws_connect(srv.addr(), "EIO=3&transport=websocket");
    let open = ws_text(&mut ws);
    let (sid, _) = parse_open(&open);
    assert_eq!(open, open_packet(&sid, &[], 25000, 20000, 1_000_000));
    // v3: the server does not ping
    assert!(ws_read_within(&mut ws, MS(300)).is_none());
}

fn v3_utf16_length_prefixes(shards: u32) {
    assert_eq!(v3_payload(&["4€"]), "2:4€");
    assert_eq!(v3_payload(&["4😀"]), "3:4😀");
    let srv = start(shards, &[]);
    let mut s = Session::open(srv.addr(), 3);
    s.send("2:4€3:4😀6:4hello");
    assert_eq!(s.poll_text(), "2:4€3:4😀6:4hello");
    s.send("1:4");
    assert_eq!(s.poll_text(), "1:4");
    let long = format!("4{}", "é😀".repeat(50));
    s.send(&v3_payload(&[&long]));
    assert_eq!(s.poll_text(), format!("151:{long}"));
}

fn v3_client_ping_answered(shards: u32) {
    let srv = start(shards, &[]);
    let mut s = Session::open(srv.addr(), 3);
    s.send("1:2");
    assert_eq!(s.poll_text(), "1:3");
    s.send("1:2");
    s.send("6:4after");
    assert_eq!(s.poll_text(), "1:36:4after");
    let (mut ws, _, _) = ws_open(srv.addr(), 3);
    ws_send_text(&mut ws, "2");
    assert_eq!(ws_text(&mut ws), "3");
    ws_send_text(&mut ws, "4x");
    assert_eq!(ws_text(&mut ws), "4x");
}

fn v3_server_closes_after_silence_polling(shards: u32) {
    let srv = start(shards, &["--ping-interval", "300", "--ping-timeout", "200"]);
    let mut s = Session::open(srv.addr(), 3);
    // pings every 250 ms keep it alive past pingInterval + pingTimeout (500 ms)
    for _ in 0..3 {
        thread::sleep(MS(250));
        s.send("1:2");
        assert_eq!(
            s.poll_text(),
            "1:3",
            "only the pong: a v3 server never pings"
        );
    }
    thread::sleep(MS(800));
    s.assert_gone("v3 session after 800 ms of silence");
}

fn v3_server_closes_after_silence_websocket(shards: u32) {
    let srv = start(shards, &["--ping-interval", "300", "--ping-timeout", "200"]);
    let (mut ws, sid, _) = ws_open(srv.addr(), 3);
    for _ in 0..2 {
        thread::sleep(MS(250));
        ws_send_text(&mut ws, "2");
        assert_eq!(ws_text(&mut ws), "3");
    }
    let t = Instant::now();
    let (_end, data) = ws_expect_close(&mut ws, MS(2000));
    assert!(data.is_empty(), "no frame before the close: {data:?}");
    let waited = t.elapsed();
    assert!(
        waited >= MS(400),
        "closed {waited:?} after the last ping, expected ~500ms"
    );
    get_fresh(
        srv.addr(),
        &format!("/engine.io/?EIO=3&transport=polling&sid={sid}"),
    )
    .assert_eio_error(1, "v3 websocket session after silence");
}

fn v3_b64_binary(shards: u32) {
    let srv = start(shards, &[]);
    let mut s = Session::open_with(srv.client(), 3, "&b64=1");
    s.send("6:b4AQID");
    assert_eq!(s.poll_text(), "6:b4AQID");
    s.send("3:4hi6:b4AQID");
    assert_eq!(s.poll_text(), "3:4hi6:b4AQID");
}

/// Whether binary goes out as XHR2 or base64 is decided once, by the
/// handshake's `b64`, as the reference server does (its polling transport
/// reads `b64` when the session opens): later requests neither need to
/// repeat it nor can change it.
fn v3_b64_belongs_to_the_session(shards: u32) {
    let srv = start(shards, &[]);
    let mut s = Session::open_with(srv.client(), 3, "&b64=1");
    s.extra.clear();
    s.send("6:4hello10:b4AQIDBA==");
    let resp = s.poll();
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=UTF-8"),
        "a GET without b64 on a b64 session: {resp:?}"
    );
    assert_eq!(resp.assert_payload("b64 session"), "6:4hello10:b4AQIDBA==");

    let mut s = Session::open(srv.addr(), 3);
    s.extra = "&b64=1".to_owned();
    s.send("6:4hello10:b4AQIDBA==");
    let resp = s.poll();
    assert_eq!(
        resp.header("content-type"),
        Some("application/octet-stream"),
        "a GET with b64=1 on a session opened without it: {resp:?}"
    );
    let mut want: Vec<u8> = vec![0, 6, 0xff];
    want.extend_from_slice(b"4hello");
    want.extend_from_slice(&[1, 5, 0xff, 4, 1, 2, 3, 4]);
    assert_eq!(resp.body, want);
}

fn v3_xhr2_binary_payload(shards: u32) {
    let srv = start(shards, &[]);
    let mut s = Session::open(srv.addr(), 3);
    // text only: stays a text payload
    s.send("2:4x");
    assert_eq!(s.poll_text(), "2:4x");
    // binary queued and no b64: XHR2 binary payload
    s.send(&v3_payload(&["4hello", "b4AQID", "4€"]));
    let resp = s.poll();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("application/octet-stream")
    );
    let mut want: Vec<u8> = vec![0, 6, 0xff];
    want.extend_from_slice(b"4hello");
    want.extend_from_slice(&[1, 4, 0xff, 4, 1, 2, 3]);
    // string packets are UTF-8 in a binary payload, length counted in bytes
    want.extend_from_slice(&[0, 4, 0xff, b'4', 0xe2, 0x82, 0xac]);
    assert_eq!(resp.body, want);
    // a binary packet longer than 9 bytes: one byte per decimal digit
    let data: Vec<u8> = (0..20).collect();
    s.send(&v3_payload(&[&format!("b4{}", b64(&data))]));
    let resp = s.poll();
    assert_eq!(
        resp.header("content-type"),
        Some("application/octet-stream")
    );
    let mut want: Vec<u8> = vec![1, 2, 1, 0xff, 4];
    want.extend_from_slice(&data);
    assert_eq!(resp.body, want);
}

fn v3_websocket_binary_type_byte(shards: u32) {
    let srv = start(shards, &[]);
    let (mut ws, _, _) = ws_open(srv.addr(), 3);
    ws_send_binary(&mut ws, &[4, 1, 2, 3]);
    assert_eq!(ws_binary(&mut ws), vec![4, 1, 2, 3]);
    ws_send_text(&mut ws, "4hi");
    assert_eq!(ws_text(&mut ws), "4hi");
    ws_send_text(&mut ws, "2");
    assert_eq!(ws_text(&mut ws), "3");
}

fn v3_upgrade(shards: u32) {
    let srv = start(shards, &[]);
    let mut s = Session::open(srv.addr(), 3);
    let mut ws = ws_connect(
        srv.addr(),
        &format!("EIO=3&transport=websocket&sid={}", s.sid),
    );
    ws_send_text(&mut ws, "2probe");
    assert_eq!(ws_text(&mut ws), "3probe");
    assert_eq!(s.poll_text(), "1:6", "GET during a v3 upgrade");
    // queued while upgrading (no GET pending): flushed on the WebSocket
    s.send("6:4queue");
    ws_send_text(&mut ws, "5");
    assert_eq!(ws_text(&mut ws), "4queue");
    ws_send_text(&mut ws, "2");
    assert_eq!(ws_text(&mut ws), "3");
    ws_send_binary(&mut ws, &[4, 9, 9]);
    assert_eq!(ws_binary(&mut ws), vec![4, 9, 9]);
    assert_eio_error_any(
        &get_fresh(srv.addr(), &s.path()),
        &[1, 3],
        "v3 GET after the upgrade",
    );
}

fn v3_jsonp(shards: u32) {
    let srv = start(shards, &[]);
    let mut c = srv.client();
    let unwrap_jsonp = |resp: &Response| -> String {
        let body = resp.assert_payload("JSONP");
        let inner = body
            .strip_prefix("___eio[0](")
            .and_then(|b| b.strip_suffix(");"))
            .unwrap_or_else(|| panic!("JSONP body should be ___eio[0](\"...\");, got {body:?}"));
        serde_json::from_str::<String>(inner)
            .unwrap_or_else(|e| panic!("JSONP argument is not a JSON string ({e}): {inner:?}"))
    };
    let resp = c.get("/engine.io/?EIO=3&transport=polling&j=0");
    let payload = unwrap_jsonp(&resp);
    let packets = v3_decode(&payload);
    let (sid, _) = parse_open(&packets[0]);
    let open = open_packet(&sid, &["websocket"], 25000, 20000, 1_000_000);
    assert_eq!(payload, format!("{}:{open}", open.len()));
    assert_eq!(
        resp.body,
        format!("___eio[0]({});", serde_json::to_string(&payload).unwrap()).into_bytes()
    );

    let path = format!("/engine.io/?EIO=3&transport=polling&j=0&sid={sid}");
    let form = format!("d={}", form_encode("6:4hello9:4\"quoted\""));
    let resp = c.request(
        "POST",
        &path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    );
    resp.assert_post_ok("JSONP POST");
    let resp = c.get(&path);
    assert_eq!(
        resp.body,
        br#"___eio[0]("6:4hello9:4\"quoted\"");"#.to_vec()
    );
    assert_eq!(unwrap_jsonp(&resp), "6:4hello9:4\"quoted\"");
}
