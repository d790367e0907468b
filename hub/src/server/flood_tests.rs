//! The Socket.IO layer's limits without IO: namespaces per connection,
//! dynamic namespaces removed with their last socket (and handles that
//! outlive them), rooms per socket.

use std::rc::Rc;

use super::adapter::{ClusterBody, ClusterMsg, Target};
use super::args::Args;
use super::io::{ConnectError, Io, IoSettings};
use super::namespace::Namespace;
use super::outgoing;
use super::shard::SioShard;
use super::socket::JoinError;
use super::testing::TestClient;
use crate::engine::Handler;
use crate::socketio::Protocol;

/// A shard serving `/` (declared) and every `/dyn-*` (dynamic; `/dyn-refused*`
/// is refused by a middleware), with `settings`.
fn shard(settings: IoSettings) -> Rc<SioShard> {
    let io = Io::builder()
        .settings(settings)
        .of("/", |nsp| nsp)
        .of_dynamic(
            |name| name.starts_with("/dyn-"),
            |nsp| {
                nsp.use_middleware(|socket| {
                    if socket.nsp().starts_with("/dyn-refused") {
                        Err(ConnectError::new("not you"))
                    } else {
                        Ok(())
                    }
                })
            },
        )
        .build();
    SioShard::new(io.config.clone(), 0)
}

fn namespaces(shard: &SioShard) -> Vec<String> {
    let mut names: Vec<String> = shard
        .namespaces_snapshot()
        .iter()
        .map(|n| n.name.clone())
        .collect();
    names.sort();
    names
}

fn limits(namespaces: usize, rooms: usize) -> IoSettings {
    IoSettings {
        max_namespaces_per_connection: namespaces,
        max_rooms_per_socket: rooms,
        ..IoSettings::default()
    }
}

#[test]
fn a_connect_past_the_namespace_limit_gets_a_connect_error_and_the_connection_stays() {
    let shard = shard(limits(3, 0));
    let c = TestClient::new(&shard);
    for i in 0..3 {
        let answer = c.connect(&format!("/dyn-{i}"));
        assert!(
            answer.starts_with(&format!("0/dyn-{i},{{\"sid\"")),
            "{answer}"
        );
    }
    assert_eq!(
        c.connect("/dyn-3"),
        r#"4/dyn-3,{"message":"too many namespaces"}"#
    );
    assert!(!c.conn.is_closed(), "the connection stays open");
    assert_eq!(
        namespaces(&shard),
        ["/dyn-0", "/dyn-1", "/dyn-2"],
        "the refused namespace was not created"
    );
    // Leaving one makes room for another.
    c.send("1/dyn-0,");
    assert!(c.connect("/dyn-3").starts_with("0/dyn-3,"));
    // The limit is per connection.
    let other = TestClient::new(&shard);
    assert!(other.connect("/dyn-0").starts_with("0/dyn-0,"));
}

#[test]
fn a_v2_client_past_the_limit_hears_the_reason_as_a_string() {
    let packet = outgoing::connect_error(
        "/dyn-9",
        Protocol::V4,
        super::shard::TOO_MANY_NAMESPACES,
        None,
        false,
    );
    assert_eq!(&*packet.text, r#"4/dyn-9,"too many namespaces""#);
}

#[test]
fn a_dynamic_namespace_goes_with_its_last_socket_and_comes_back() {
    let shard = shard(limits(0, 0));
    let (a, b) = (TestClient::new(&shard), TestClient::new(&shard));
    a.connect("/");
    a.connect("/dyn-x");
    b.connect("/dyn-x");
    assert_eq!(namespaces(&shard), ["/", "/dyn-x"]);
    a.send("1/dyn-x,");
    assert_eq!(namespaces(&shard), ["/", "/dyn-x"], "b is still there");
    b.socket("/dyn-x").join("room");
    // The last socket leaves by its connection closing.
    shard.on_close(&b.conn, crate::engine::CloseReason::TransportClose);
    assert_eq!(namespaces(&shard), ["/"], "removed with its last socket");
    a.send("1");
    assert_eq!(namespaces(&shard), ["/"], "a declared namespace stays");
    // Created anew, it works as before.
    assert!(a.connect("/dyn-x").starts_with("0/dyn-x,"));
    let nsp = a.socket("/dyn-x").namespace();
    nsp.emit("hello", Args::new()).unwrap();
    assert_eq!(a.sent(), [r#"2/dyn-x,["hello"]"#]);
}

#[test]
fn a_refused_connect_leaves_no_namespace_behind() {
    let shard = shard(limits(0, 0));
    let c = TestClient::new(&shard);
    for i in 0..100 {
        let answer = c.connect(&format!("/dyn-refused-{i}"));
        assert_eq!(
            answer,
            format!(r#"4/dyn-refused-{i},{{"message":"not you"}}"#)
        );
    }
    assert!(namespaces(&shard).is_empty());
    assert_eq!(
        c.connect("/unknown"),
        r#"4/unknown,{"message":"Invalid namespace"}"#
    );
    assert!(namespaces(&shard).is_empty());
}

#[test]
fn a_kept_handle_reaches_the_namespace_created_again() {
    let shard = shard(limits(0, 0));
    // Asked for before any socket came: nothing is created for it.
    let handle = Namespace {
        shard: shard.clone(),
        nsp: shard.namespace_handle("/dyn-k").expect("served"),
    };
    assert!(namespaces(&shard).is_empty());
    handle.emit("nobody", Args::new()).unwrap();
    let first = TestClient::new(&shard);
    first.connect("/dyn-k");
    handle.emit("one", Args::new()).unwrap();
    assert_eq!(first.sent(), [r#"2/dyn-k,["one"]"#]);
    // A broadcast operator and a namespace the application kept from the first one.
    let kept = first.socket("/dyn-k").namespace();
    let operator = kept.to("r");
    first.send("1/dyn-k,");
    assert!(namespaces(&shard).is_empty());
    let second = TestClient::new(&shard);
    second.connect("/dyn-k");
    second.socket("/dyn-k").join("r");
    handle.emit("two", Args::new()).unwrap();
    assert_eq!(second.sent(), [r#"2/dyn-k,["two"]"#], "the early handle");
    kept.emit("two", Args::new()).unwrap();
    assert_eq!(second.sent(), [r#"2/dyn-k,["two"]"#], "the kept namespace");
    operator.emit("two", Args::new()).unwrap();
    assert_eq!(second.sent(), [r#"2/dyn-k,["two"]"#], "the kept operator");
    assert_eq!(kept.local_sockets().len(), 1);
    kept.sockets_join("s");
    assert_eq!(second.socket("/dyn-k").rooms().len(), 3);
    assert!(
        first.sent().is_empty(),
        "the socket that left hears nothing"
    );
}

#[test]
fn a_message_from_another_shard_for_a_removed_namespace_is_dropped() {
    let shard = shard(limits(0, 0));
    let c = TestClient::new(&shard);
    c.connect("/dyn-m");
    c.send("1/dyn-m,");
    let msg = ClusterMsg {
        instance: shard.instance(),
        nsp: "/dyn-m".to_string(),
        body: ClusterBody::Broadcast {
            target: Target::default(),
            packet: outgoing::event("/dyn-m", "late", &Args::new(), None),
            offset: None,
            origin: 1,
            logged: None,
        },
    };
    assert!(shard.on_shard_message(Box::new(msg)).is_none(), "taken");
    assert!(namespaces(&shard).is_empty(), "not created by the message");
    assert!(c.sent().is_empty());
    assert!(shard.local_stats().namespaces.is_empty(), "stats list none");
}

#[test]
fn a_namespace_emptied_by_a_middleware_is_brought_back_by_the_socket_connecting() {
    // The middleware of /dyn-mw disconnects the namespace's other sockets.
    let io = Io::builder()
        .of_dynamic(
            |name| name.starts_with("/dyn-"),
            |nsp| {
                nsp.use_middleware(|socket| {
                    for other in socket.namespace().local_sockets() {
                        other.disconnect(false);
                    }
                    Ok(())
                })
            },
        )
        .build();
    let shard = SioShard::new(io.config.clone(), 0);
    let (a, b) = (TestClient::new(&shard), TestClient::new(&shard));
    a.connect("/dyn-mw");
    assert!(b.connect("/dyn-mw").starts_with("0/dyn-mw,"));
    assert_eq!(namespaces(&shard), ["/dyn-mw"]);
    let nsp = b.socket("/dyn-mw").namespace();
    nsp.emit("still", Args::new()).unwrap();
    assert_eq!(b.sent(), [r#"2/dyn-mw,["still"]"#]);
}

#[test]
fn joins_past_the_room_limit_are_refused_all_or_nothing() {
    let shard = shard(limits(0, 3));
    let c = TestClient::new(&shard);
    c.connect("/");
    let socket = c.socket("/");
    assert_eq!(socket.rooms(), [socket.id()], "its own room, not counted");
    socket.try_join_many(["a", "b"]).unwrap();
    assert_eq!(
        socket.try_join_many(["c", "d"]),
        Err(JoinError::TooManyRooms { limit: 3 }),
        "two more would make four"
    );
    assert_eq!(socket.rooms().len(), 3, "neither was joined");
    socket.try_join("c").unwrap();
    assert_eq!(
        socket.try_join("d"),
        Err(JoinError::TooManyRooms { limit: 3 })
    );
    socket.join("d");
    assert!(
        !socket.rooms().contains(&"d".to_string()),
        "join refuses too"
    );
    // Rooms it is in already, its own room and repeats cost nothing.
    let id = socket.id().to_string();
    socket.try_join_many(["a", "c", &id, "a"]).unwrap();
    socket.leave("a");
    socket.try_join_many(["d", "d"]).unwrap();
    assert_eq!(socket.rooms().len(), 4);
    // A server-side join skips the socket at its limit.
    socket.namespace().sockets_join("e");
    assert!(!socket.rooms().contains(&"e".to_string()));
}

#[test]
fn a_socket_that_left_joins_no_room_again() {
    let shard = shard(limits(0, 0));
    let c = TestClient::new(&shard);
    c.connect("/");
    let socket = c.socket("/");
    c.send("1");
    assert_eq!(socket.try_join("late"), Err(JoinError::Disconnected));
    socket.join("late");
    let nsp = shard.namespace("/").unwrap();
    assert!(nsp.rooms.borrow().is_empty(), "nothing points at it");
}
