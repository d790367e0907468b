//! The Socket.IO layer over raw WebSockets against the conformance server's
//! `/socket.io/` (shards 1 and 2): the packets on the wire, and bad input —
//! every invalid packet closes its connection and nothing else.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use tungstenite::Message;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn start(shards: u32, extra: &[&str]) -> Server {
    let shards = shards.to_string();
    let mut args = vec!["--shards", shards.as_str()];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// A Socket.IO WebSocket session: Engine.IO open read, nothing connected yet.
fn sio_ws(srv: &Server, eio: u8) -> Ws {
    let mut ws = ws_try_connect_at(
        srv.addr(),
        "/socket.io/",
        &format!("EIO={eio}&transport=websocket"),
    )
    .expect("websocket handshake");
    let open = ws_text(&mut ws);
    assert!(open.starts_with("0{"), "open packet: {open}");
    ws
}

/// Connected to `/`: the CONNECT reply and the `auth` event read.
fn connected(srv: &Server) -> (Ws, String) {
    let mut ws = sio_ws(srv, 4);
    ws_send_text(&mut ws, "40");
    let reply = ws_text(&mut ws);
    let json: Value =
        serde_json::from_str(reply.strip_prefix("40").expect("CONNECT reply")).unwrap();
    let id = json["sid"].as_str().expect("a socket id").to_string();
    assert_eq!(ws_text(&mut ws), r#"42["auth",{}]"#);
    (ws, id)
}

fn assert_echoes(ws: &mut Ws) {
    ws_send_text(ws, r#"42["message",1,{"a":[true,null]}]"#);
    assert_eq!(ws_text(ws), r#"42["message-back",1,{"a":[true,null]}]"#);
}

/// Sends `frames` on a fresh connected session and expects the server to
/// close the connection; another session keeps working.
fn expect_closed(srv: &Server, other: &mut Ws, frames: &[Message], what: &str) {
    let (mut ws, _) = connected(srv);
    for frame in frames {
        ws.send(frame.clone()).expect("send");
    }
    let (_end, data) = ws_expect_close(&mut ws, MS(3000));
    assert!(
        data.is_empty(),
        "{what}: nothing is answered before the close: {data:?}"
    );
    assert_echoes(other);
}

macro_rules! sharded_tests {
    ($($name:ident),* $(,)?) => {
        mod shards_1 { $( #[test] fn $name() { super::$name(1); } )* }
        mod shards_2 { $( #[test] fn $name() { super::$name(2); } )* }
    };
}

sharded_tests!(
    connect_event_and_ack,
    binary_event_round_trip,
    custom_namespace_and_unknown_namespace,
    client_namespace_disconnect_keeps_the_connection,
    v2_client_is_connected_to_root_at_once,
    invalid_packets_close_the_connection,
    connect_timeout_closes_idle_clients,
);

fn connect_event_and_ack(shards: u32) {
    let srv = start(shards, &[]);
    let (mut ws, id) = connected(&srv);
    assert_eq!(id.len(), 24, "socket ids are sids: {id}");
    assert_echoes(&mut ws);
    ws_send_text(&mut ws, r#"427["message-with-ack","x",[1]]"#);
    assert_eq!(ws_text(&mut ws), r#"437["x",[1]]"#);
    // Key order is kept, JSON stays compact.
    ws_send_text(&mut ws, r#"42["message",{"z":1,"a":2,"m":{"y":3,"b":4}}]"#);
    assert_eq!(
        ws_text(&mut ws),
        r#"42["message-back",{"z":1,"a":2,"m":{"y":3,"b":4}}]"#
    );
}

fn binary_event_round_trip(shards: u32) {
    let srv = start(shards, &[]);
    let (mut ws, _) = connected(&srv);
    ws_send_text(
        &mut ws,
        r#"452-["message",{"f":{"_placeholder":true,"num":0}},[{"_placeholder":true,"num":1}]]"#,
    );
    ws_send_binary(&mut ws, &[1, 2, 3]);
    ws_send_binary(&mut ws, &[]);
    assert_eq!(
        ws_text(&mut ws),
        r#"452-["message-back",{"f":{"_placeholder":true,"num":0}},[{"_placeholder":true,"num":1}]]"#
    );
    assert_eq!(ws_binary(&mut ws), vec![1, 2, 3]);
    assert_eq!(ws_binary(&mut ws), Vec::<u8>::new());
    // A binary ack.
    ws_send_text(
        &mut ws,
        r#"451-3["message-with-ack",{"_placeholder":true,"num":0}]"#,
    );
    ws_send_binary(&mut ws, &[9]);
    assert_eq!(ws_text(&mut ws), r#"461-3[{"_placeholder":true,"num":0}]"#);
    assert_eq!(ws_binary(&mut ws), vec![9]);
}

fn custom_namespace_and_unknown_namespace(shards: u32) {
    let srv = start(shards, &[]);
    let mut ws = sio_ws(&srv, 4);
    ws_send_text(&mut ws, r#"40/nope,{"a":1}"#);
    assert_eq!(
        ws_text(&mut ws),
        r#"44/nope,{"message":"Invalid namespace"}"#
    );
    // The connection stays open for the namespaces that exist.
    ws_send_text(&mut ws, r#"40/custom,{"token":"t"}"#);
    let reply = ws_text(&mut ws);
    assert!(reply.starts_with(r#"40/custom,{"sid":""#), "{reply}");
    assert_eq!(ws_text(&mut ws), r#"42/custom,["auth",{"token":"t"}]"#);
    // Without the trailing comma too.
    ws_send_text(&mut ws, "40");
    assert!(ws_text(&mut ws).starts_with(r#"40{"sid":""#));
    assert_eq!(ws_text(&mut ws), r#"42["auth",{}]"#);
    assert_echoes(&mut ws);
}

fn client_namespace_disconnect_keeps_the_connection(shards: u32) {
    let srv = start(shards, &[]);
    let (mut ws, _) = connected(&srv);
    ws_send_text(&mut ws, "41");
    assert_eq!(ws_read_within(&mut ws, MS(200)), None, "no answer to 41");
    // The connection stays: the namespace can be joined again.
    ws_send_text(&mut ws, "40");
    assert!(ws_text(&mut ws).starts_with(r#"40{"sid":""#));
    assert_eq!(ws_text(&mut ws), r#"42["auth",{}]"#);
    assert_echoes(&mut ws);
    // As the reference server: a packet for a namespace not joined (here,
    // the one just left) or a second CONNECT closes the connection.
    let (mut other, _) = connected(&srv);
    let frames = [Message::text("41"), Message::text(r#"42["message",1]"#)];
    expect_closed(&srv, &mut other, &frames, "event after leaving");
    expect_closed(&srv, &mut other, &[Message::text("40")], "second CONNECT");
}

fn v2_client_is_connected_to_root_at_once(shards: u32) {
    let srv = start(shards, &[]);
    let mut ws = ws_try_connect_at(srv.addr(), "/socket.io/", "EIO=3&transport=websocket").unwrap();
    let open = ws_text(&mut ws);
    let (sid, _) = parse_open(&open);
    assert_eq!(
        ws_text(&mut ws),
        "40",
        "protocol v4: connected to / without asking"
    );
    assert_eq!(ws_text(&mut ws), r#"42["auth",{}]"#);
    ws_send_text(&mut ws, r#"42["message","v2"]"#);
    assert_eq!(ws_text(&mut ws), r#"42["message-back","v2"]"#);
    // v2 CONNECT to another namespace: the query is the auth, the reply has no sid.
    ws_send_text(&mut ws, "40/custom?token=abc&x=1,");
    assert_eq!(ws_text(&mut ws), "40/custom,");
    assert_eq!(
        ws_text(&mut ws),
        r#"42/custom,["auth",{"token":"abc","x":"1"}]"#
    );
    assert_eq!(sid.len(), 24);
}

fn invalid_packets_close_the_connection(shards: u32) {
    let srv = start(shards, &[]);
    let (mut other, _) = connected(&srv);
    let text = |s: &str| Message::text(s.to_string());
    let cases: Vec<(&str, Vec<Message>)> = vec![
        ("unknown type", vec![text("49")]),
        ("invalid JSON", vec![text(r#"42["message",{bad"#)]),
        ("trailing garbage", vec![text(r#"42["message"]x"#)]),
        ("event payload not an array", vec![text(r#"42{"a":1}"#)]),
        ("empty event array", vec![text("42[]")]),
        ("reserved event name", vec![text(r#"42["disconnect"]"#)]),
        ("event name not a string", vec![text(r#"42[{"a":1}]"#)]),
        ("ack without id", vec![text(r#"43["x"]"#)]),
        (
            "non-digit attachment count",
            vec![text(r#"45x-["message"]"#)],
        ),
        ("too many attachments", vec![text(r#"4599-["message"]"#)]),
        (
            "placeholder out of range",
            vec![text(r#"451-["message",{"_placeholder":true,"num":3}]"#)],
        ),
        (
            "binary nobody announced",
            vec![Message::binary(vec![1u8, 2])],
        ),
        (
            "text while attachments are awaited",
            vec![
                text(r#"451-["message",{"_placeholder":true,"num":0}]"#),
                text(r#"42["message"]"#),
            ],
        ),
        (
            "CONNECT payload not an object",
            vec![text(r#"40/custom,[1]"#)],
        ),
        ("empty message", vec![text("4")]),
    ];
    for (what, frames) in cases {
        expect_closed(&srv, &mut other, &frames, what);
    }
}

fn connect_timeout_closes_idle_clients(shards: u32) {
    let srv = start(shards, &["--connect-timeout", "300"]);
    let (mut busy, _) = connected(&srv);
    let mut idle = sio_ws(&srv, 4);
    let t = Instant::now();
    let (_end, data) = ws_expect_close(&mut idle, MS(3000));
    assert!(data.is_empty(), "{data:?}");
    assert!(t.elapsed() >= MS(200), "closed after {:?}", t.elapsed());
    // A connected client is not affected.
    std::thread::sleep(MS(400));
    assert_echoes(&mut busy);
}
