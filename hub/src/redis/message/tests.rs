//! The codec against bytes recorded from Node's adapter and emitter
//! (`fixtures/`, written by `tests/clients/node/record-redis-fixtures.mjs`):
//! every message decodes to what it means, and what hub writes for the same
//! message is byte for byte what Node wrote.

use bytes::Bytes;
use serde_json::Value;

use super::*;
use crate::redis::recorded::{fixtures, Fixture};
use crate::redis::wire::{RequestBody, WireFlags, WireTarget};

fn fixture(case: &str) -> Fixture {
    fixtures()
        .into_iter()
        .find(|f| f.case == case)
        .unwrap_or_else(|| panic!("no fixture {case}"))
}

fn channels() -> Channels {
    Channels {
        prefix: "socket.io".into(),
    }
}

fn dialect_of(case: &str) -> Dialect {
    if case.starts_with("sharded") {
        Dialect::Sharded { dynamic: true }
    } else {
        Dialect::Classic
    }
}

#[test]
fn every_recorded_message_decodes_to_what_it_is() {
    let all = fixtures();
    assert!(all.len() >= 50, "{} fixtures", all.len());
    for f in &all {
        let inbound = dialect_of(&f.case)
            .decode(&channels(), "hub123", &f.channel, &f.bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", f.case));
        let kind = match &inbound {
            Inbound::Broadcast(_) => "broadcast",
            Inbound::Request { .. } => "request",
            Inbound::Response(_) => "response",
            Inbound::Ignore => "ignored",
        };
        let expected = if f.case.contains("response")
            || f.case.contains("client-count")
            || f.case.ends_with("-ack-response")
        {
            "response"
        } else if f.case.contains("broadcast") && !f.case.contains("ack-request")
            || [
                "emitter-emit",
                "emitter-to-room",
                "emitter-except",
                "emitter-flags",
                "emitter-namespace",
                "emitter-binary",
            ]
            .contains(&f.case.as_str())
        {
            "broadcast"
        } else {
            "request"
        };
        assert_eq!(kind, expected, "{}: {inbound:?}", f.case);
    }
}

#[test]
fn a_nodes_own_messages_are_ignored() {
    for (case, uid) in [
        ("classic-broadcast-all", "x3assp"),
        ("classic-sockets-join", "x3assp"),
        ("sharded-broadcast-all", "23d3b66707bb4c92"),
        ("sharded-fetch-sockets-request", "23d3b66707bb4c92"),
    ] {
        let f = fixture(case);
        let inbound = dialect_of(case)
            .decode(&channels(), uid, &f.channel, &f.bytes)
            .unwrap();
        assert!(matches!(inbound, Inbound::Ignore), "{case}: {inbound:?}");
    }
}

#[test]
fn decoded_broadcasts_carry_their_rooms_flags_and_binary() {
    let f = fixture("classic-broadcast-binary");
    let Inbound::Broadcast(b) = Dialect::Classic
        .decode(&channels(), "me", &f.channel, &f.bytes)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(b.event.attachments.len(), 2, "{:?}", b.event);
    let text = serde_json::to_string(&b.event.data).unwrap();
    assert!(text.contains(r#"{"_placeholder":true,"num":0}"#), "{text}");

    let f = fixture("sharded-broadcast-binary");
    let Inbound::Broadcast(b) = Dialect::Sharded { dynamic: true }
        .decode(&channels(), "me", &f.channel, &f.bytes)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        b.event.attachments,
        [Bytes::from_static(b"\x00\x01\x02\xff")]
    );
    assert_eq!(b.event.nsp, "/");

    let f = fixture("emitter-flags");
    let Inbound::Broadcast(b) = Dialect::Classic
        .decode(&channels(), "me", &f.channel, &f.bytes)
        .unwrap()
    else {
        panic!()
    };
    assert!(b.flags.volatile);
    assert_eq!(b.flags.compress, Some(false));

    let f = fixture("classic-broadcast-from-socket");
    let Inbound::Broadcast(b) = Dialect::Classic
        .decode(&channels(), "me", &f.channel, &f.bytes)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(b.target.rooms, ["room1"]);
    assert_eq!(b.target.except.len(), 1);

    let f = fixture("classic-broadcast-ack-request");
    let Inbound::Request { request, .. } = Dialect::Classic
        .decode(&channels(), "me", &f.channel, &f.bytes)
        .unwrap()
    else {
        panic!()
    };
    let RequestBody::BroadcastWithAck { flags, target, .. } = request.body else {
        panic!()
    };
    assert_eq!(flags.timeout, Some(3000));
    assert_eq!(target.rooms, ["acks"]);
}

/// The strings of a JSON array.
fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// What hub publishes for the same message as Node's: the same bytes.
#[test]
fn hub_writes_what_node_writes() {
    let c = channels();
    let mut checked = 0;
    for f in fixtures() {
        let d = &f.decoded;
        let publish =
            match f.case.as_str() {
                "classic-broadcast-all"
                | "classic-broadcast-room"
                | "classic-broadcast-rooms-except"
                | "classic-broadcast-from-socket"
                | "classic-broadcast-binary"
                | "classic-broadcast-types"
                | "classic-broadcast-volatile"
                | "classic-broadcast-compress"
                | "classic-broadcast-namespace" => {
                    // Decode hub's way (binary as placeholders), write back.
                    let Inbound::Broadcast(b) = Dialect::Classic
                        .decode(&c, "me", &f.channel, &f.bytes)
                        .unwrap()
                    else {
                        panic!()
                    };
                    let flags = &d[2]["flags"];
                    let flags = WireFlags {
                        volatile: flags["volatile"].as_bool().unwrap_or(false),
                        compress: flags["compress"].as_bool(),
                        local: false,
                        timeout: None,
                    };
                    Dialect::Classic.encode(
                        &c,
                        d[0].as_str().unwrap(),
                        &b.event.nsp,
                        Outbound::Broadcast {
                            event: b.event.data[0].as_str().unwrap(),
                            args: &b.event.data[1..],
                            attachments: &b.event.attachments,
                            target: &b.target,
                            flags: &flags,
                        },
                    )
                }
                "classic-sockets-join" | "classic-sockets-leave" => {
                    let target = WireTarget {
                        rooms: strings(&d["opts"]["rooms"]),
                        except: strings(&d["opts"]["except"]),
                    };
                    let rooms = strings(&d["rooms"]);
                    let msg = if f.case.ends_with("join") {
                        Outbound::Join {
                            target: &target,
                            rooms: &rooms,
                        }
                    } else {
                        Outbound::Leave {
                            target: &target,
                            rooms: &rooms,
                        }
                    };
                    Dialect::Classic.encode(&c, d["uid"].as_str().unwrap(), "/", msg)
                }
                "classic-disconnect-sockets" | "classic-fetch-sockets-request" => {
                    let target = WireTarget {
                        rooms: strings(&d["opts"]["rooms"]),
                        except: strings(&d["opts"]["except"]),
                    };
                    let msg = if f.case.starts_with("classic-disconnect") {
                        Outbound::Disconnect {
                            target: &target,
                            close: d["close"].as_bool().unwrap(),
                        }
                    } else {
                        Outbound::Fetch {
                            request_id: d["requestId"].as_str().unwrap(),
                            target: &target,
                        }
                    };
                    Dialect::Classic.encode(&c, d["uid"].as_str().unwrap(), "/", msg)
                }
                "classic-all-rooms-request" => Dialect::Classic.encode(
                    &c,
                    d["uid"].as_str().unwrap(),
                    "/",
                    Outbound::AllRooms {
                        request_id: d["requestId"].as_str().unwrap(),
                    },
                ),
                "classic-server-side-emit" | "classic-server-side-emit-ack-request" => {
                    let data = d["data"].as_array().unwrap().clone();
                    Dialect::Classic.encode(
                        &c,
                        d["uid"].as_str().unwrap(),
                        "/",
                        Outbound::ServerSideEmit {
                            request_id: d["requestId"].as_str(),
                            data: &data,
                            attachments: &[],
                        },
                    )
                }
                "classic-server-side-emit-ack-response" => Dialect::Classic.encode(
                    &c,
                    "me",
                    "/",
                    Outbound::Response {
                        request_id: d["requestId"].as_str().unwrap(),
                        to_uid: None,
                        answer: Answer::ServerSideAck(d["data"].clone(), &[]),
                    },
                ),
                "classic-broadcast-ack-client-count" => Dialect::Classic.encode(
                    &c,
                    "me",
                    "/",
                    Outbound::Response {
                        request_id: d["requestId"].as_str().unwrap(),
                        to_uid: None,
                        answer: Answer::ClientCount(d["clientCount"].as_u64().unwrap() as usize),
                    },
                ),
                "classic-broadcast-ack-response" => Dialect::Classic.encode(
                    &c,
                    "me",
                    "/",
                    Outbound::Response {
                        request_id: d["requestId"].as_str().unwrap(),
                        to_uid: None,
                        answer: Answer::BroadcastAck(d["packet"].clone(), &[]),
                    },
                ),
                "sharded-broadcast-all"
                | "sharded-broadcast-room"
                | "sharded-broadcast-rooms-except" => {
                    let data = d["data"]["packet"]["data"].as_array().unwrap().clone();
                    let target = WireTarget {
                        rooms: strings(&d["data"]["opts"]["rooms"]),
                        except: strings(&d["data"]["opts"]["except"]),
                    };
                    Dialect::Sharded { dynamic: true }.encode(
                        &c,
                        d["uid"].as_str().unwrap(),
                        "/",
                        Outbound::Broadcast {
                            event: data[0].as_str().unwrap(),
                            args: &data[1..],
                            attachments: &[],
                            target: &target,
                            flags: &WireFlags::default(),
                        },
                    )
                }
                "sharded-disconnect-sockets" => {
                    let target = WireTarget {
                        rooms: strings(&d["data"]["opts"]["rooms"]),
                        except: strings(&d["data"]["opts"]["except"]),
                    };
                    Dialect::Sharded { dynamic: true }.encode(
                        &c,
                        d["uid"].as_str().unwrap(),
                        "/",
                        Outbound::Disconnect {
                            target: &target,
                            close: d["data"]["close"].as_bool().unwrap(),
                        },
                    )
                }
                "sharded-server-side-emit-ack-request" => {
                    let data = d["data"]["packet"].as_array().unwrap().clone();
                    Dialect::Sharded { dynamic: true }.encode(
                        &c,
                        d["uid"].as_str().unwrap(),
                        "/",
                        Outbound::ServerSideEmit {
                            request_id: d["data"]["requestId"].as_str(),
                            data: &data,
                            attachments: &[],
                        },
                    )
                }
                "sharded-broadcast-ack-client-count" => Dialect::Sharded { dynamic: true }.encode(
                    &c,
                    d["uid"].as_str().unwrap(),
                    "/",
                    Outbound::Response {
                        request_id: d["data"]["requestId"].as_str().unwrap(),
                        to_uid: Some(f.channel.trim_end_matches('#').rsplit('#').next().unwrap()),
                        answer: Answer::ClientCount(
                            d["data"]["clientCount"].as_u64().unwrap() as usize
                        ),
                    },
                ),
                _ => continue,
            };
        assert_eq!(publish.channel, f.channel, "{}: channel", f.case);
        let expected_command: &[u8] = if f.sharded() { b"SPUBLISH" } else { b"PUBLISH" };
        assert_eq!(publish.command, expected_command, "{}", f.case);
        assert_eq!(
            publish.payload,
            f.bytes,
            "{}: hub wrote {:?}, Node {:?}",
            f.case,
            String::from_utf8_lossy(&publish.payload),
            String::from_utf8_lossy(&f.bytes)
        );
        checked += 1;
    }
    assert_eq!(checked, 25, "every case above was found");
}

#[test]
fn garbage_on_any_channel_is_an_error_never_a_panic() {
    let c = channels();
    for dialect in [Dialect::Classic, Dialect::Sharded { dynamic: false }] {
        for channel in [
            "socket.io#/#",
            "socket.io-request#/#",
            "socket.io-response#/#x#",
        ] {
            // Nothing here is a message of either dialect on any channel:
            // an error, or ignored (a channel the dialect does not use).
            for bytes in [&b""[..], b"{", b"\x93", b"\x92\xa1u\xc0"] {
                let decoded = dialect.decode(&c, "me", channel, bytes);
                assert!(
                    matches!(decoded, Err(_) | Ok(Inbound::Ignore)),
                    "{dialect:?} {channel} {bytes:?}: {decoded:?}"
                );
            }
            // Shapes a request could have: whatever they are, no panic.
            for bytes in [
                &b"{\"type\":3,\"data\":5}"[..],
                b"{\"type\":9,\"data\":{\"packet\":{}}}",
            ] {
                let _ = dialect.decode(&c, "me", channel, bytes);
            }
        }
    }
    // Unknown types are requests of an unknown kind, not errors.
    let inbound = Dialect::Sharded { dynamic: false }
        .decode(
            &c,
            "me",
            "socket.io#/#",
            br#"{"type":42,"data":{},"uid":"x","nsp":"/"}"#,
        )
        .unwrap();
    assert!(matches!(
        inbound,
        Inbound::Request {
            request: WireRequest {
                body: RequestBody::Unknown(42),
                ..
            },
            ..
        }
    ));
}
