//! The socket API without IO: sockets over sessions that only queue.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use serde_json::json;

use super::args::Args;
use super::io::Io;
use super::namespace::Nsp;
use super::reason::DisconnectReason;
use super::shard::SioShard;
use super::socket::{EmitError, Socket};
use super::testing::{attach_socket, sent};
use crate::engine::SessionEntry;
use crate::engineio::{Data, Packet};

struct Fixture {
    shard: Rc<SioShard>,
    nsp: Rc<Nsp>,
    next: Cell<u64>,
}

impl Fixture {
    fn new() -> Fixture {
        let io = Io::builder().of("/", |nsp| nsp).build();
        let shard = SioShard::new(io.config.clone(), 0);
        let nsp = shard.namespace("/").unwrap();
        Fixture {
            shard,
            nsp,
            next: Cell::new(0),
        }
    }

    fn socket(&self) -> (Socket, Rc<SessionEntry>) {
        let key = self.next.get();
        self.next.set(key + 1);
        let (inner, entry) = attach_socket(&self.shard, &self.nsp, key);
        sent(&entry); // the open packet
        (Socket(inner), entry)
    }
}

fn fire(socket: &Socket, event: &str, args: Args, ack: Option<u64>) {
    socket.0.on_event(event, args, ack);
}

#[test]
fn on_once_remove_and_event_names() {
    let f = Fixture::new();
    let (socket, _) = f.socket();
    let calls = Rc::new(RefCell::new(Vec::new()));
    let log = |name: &'static str| {
        let calls = calls.clone();
        move |_: &Socket, args: Args, _| calls.borrow_mut().push((name, args.len()))
    };
    let first = socket.on("a", log("on-1"));
    socket.on("a", log("on-2"));
    socket.once("a", log("once"));
    socket.on("b", log("b"));
    assert_eq!(socket.event_names(), vec!["a", "b"]);
    fire(&socket, "a", Args::new().arg(1).arg(2), None);
    fire(&socket, "a", Args::new().arg(1), None);
    assert_eq!(
        *calls.borrow(),
        vec![
            ("on-1", 2),
            ("on-2", 2),
            ("once", 2),
            ("on-1", 1),
            ("on-2", 1)
        ]
    );
    calls.borrow_mut().clear();
    assert!(socket.remove_listener("a", first));
    assert!(!socket.remove_listener("a", first), "already removed");
    fire(&socket, "a", Args::new(), None);
    assert_eq!(*calls.borrow(), vec![("on-2", 0)]);
    socket.remove_all_listeners(Some("a"));
    assert_eq!(socket.event_names(), vec!["b"]);
    socket.remove_all_listeners(None);
    assert!(socket.event_names().is_empty());
}

#[test]
fn an_ack_is_answered_once_with_binary_kept() {
    let f = Fixture::new();
    let (socket, entry) = f.socket();
    let answered = Rc::new(Cell::new((false, false)));
    let seen = answered.clone();
    socket.on("q", move |_, args, ack| {
        let ack = ack.expect("the client asked for an ack");
        seen.set((ack.send(args), ack.send(Args::new())));
    });
    let mut args = Args::new().arg("x");
    let file = args.attach(vec![1u8, 2]);
    args.push(json!({ "file": file }));
    fire(&socket, "q", args, Some(5));
    assert_eq!(answered.get(), (true, false), "a second answer is refused");
    let mut packets = Vec::new();
    entry.session.borrow_mut().take_ws_packets(&mut packets);
    assert_eq!(
        packets,
        vec![
            Packet::Message(Data::Text(
                r#"61-5["x",{"file":{"_placeholder":true,"num":0}}]"#.into()
            )),
            Packet::Message(Data::Binary(vec![1u8, 2].into())),
        ]
    );
}

#[test]
fn reserved_names_cannot_be_emitted() {
    let f = Fixture::new();
    let (socket, entry) = f.socket();
    for name in [
        "connect",
        "connect_error",
        "disconnect",
        "disconnecting",
        "newListener",
        "removeListener",
    ] {
        assert_eq!(
            socket.emit(name, Args::new()),
            Err(EmitError::Reserved(name.to_string()))
        );
        assert_eq!(
            socket.broadcast().emit(name, Args::new()),
            Err(EmitError::Reserved(name.to_string()))
        );
    }
    assert!(sent(&entry).is_empty());
    socket.send(Args::new().arg(1)).unwrap();
    assert_eq!(sent(&entry), vec![r#"2["message",1]"#]);
}

#[test]
fn volatile_is_dropped_while_the_client_cannot_take_it() {
    let f = Fixture::new();
    let (socket, entry) = f.socket();
    socket.emit("first", Args::new()).unwrap();
    socket.volatile().emit("dropped", Args::new()).unwrap();
    socket
        .namespace()
        .volatile()
        .emit("dropped too", Args::new())
        .unwrap();
    assert_eq!(sent(&entry), vec![r#"2["first"]"#]);
    socket
        .volatile()
        .compress(false)
        .binary(false)
        .emit("kept", Args::new())
        .unwrap();
    assert_eq!(sent(&entry), vec![r#"2["kept"]"#]);
}

#[test]
fn broadcasts_reach_each_target_once_and_never_the_sender() {
    let f = Fixture::new();
    let (a, ea) = f.socket();
    let (b, eb) = f.socket();
    let (c, ec) = f.socket();
    a.join_many(["r1", "r2"]);
    b.join_many(["r1", "r2"]);
    c.join("r3");
    a.to("r1").to("r2").emit("x", Args::new()).unwrap();
    assert_eq!(
        (sent(&ea).len(), sent(&eb), sent(&ec).len()),
        (0, vec![r#"2["x"]"#.to_string()], 0)
    );
    // From the namespace: the sender is not special.
    a.namespace()
        .to("r1")
        .in_("r3")
        .emit("y", Args::new())
        .unwrap();
    assert_eq!(
        (sent(&ea).len(), sent(&eb).len(), sent(&ec).len()),
        (1, 1, 1)
    );
    a.namespace().except("r3").emit("z", Args::new()).unwrap();
    assert_eq!(
        (sent(&ea).len(), sent(&eb).len(), sent(&ec).len()),
        (1, 1, 0)
    );
    a.broadcast().emit("all", Args::new()).unwrap();
    assert_eq!(
        (sent(&ea).len(), sent(&eb).len(), sent(&ec).len()),
        (0, 1, 1)
    );
    // To a socket id: that socket only.
    a.to(c.id()).emit("direct", Args::new()).unwrap();
    assert_eq!(
        (sent(&ea).len(), sent(&eb).len(), sent(&ec).len()),
        (0, 0, 1)
    );
}

#[test]
fn disconnect_sees_rooms_first_then_leaves_them() {
    let f = Fixture::new();
    let (a, ea) = f.socket();
    let (b, _) = f.socket();
    a.join("lobby");
    b.join("lobby");
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    a.on_disconnecting(move |s, reason| {
        log.borrow_mut()
            .push(("disconnecting", reason, s.rooms().len()))
    });
    let log = seen.clone();
    a.on_disconnect(move |s, reason| {
        log.borrow_mut()
            .push(("disconnect", reason, s.rooms().len()))
    });
    a.disconnect(false);
    assert_eq!(
        *seen.borrow(),
        vec![
            (
                "disconnecting",
                DisconnectReason::ServerNamespaceDisconnect,
                2
            ),
            ("disconnect", DisconnectReason::ServerNamespaceDisconnect, 0)
        ]
    );
    assert_eq!(sent(&ea), vec!["1"], "the client is told");
    assert!(!a.connected());
    assert_eq!(a.emit("late", Args::new()), Err(EmitError::Disconnected));
    let rooms = f.nsp.rooms.borrow();
    assert_eq!(
        rooms.get("lobby").map(|m| m.len()),
        Some(1),
        "only b is left"
    );
    assert!(rooms.get(a.id()).is_none(), "a's own room is gone");
    a.disconnect(false);
    assert_eq!(seen.borrow().len(), 2, "disconnect fires once");
}

#[test]
fn socket_middleware_stops_a_packet_and_reports_it() {
    let f = Fixture::new();
    let (socket, _) = f.socket();
    let errors = Rc::new(RefCell::new(Vec::new()));
    let called = Rc::new(Cell::new(0));
    socket.use_middleware(|_, event, args| {
        if event == "blocked" || args.get(0) == Some(&json!("bad")) {
            Err(format!("{event} refused"))
        } else {
            Ok(())
        }
    });
    let log = errors.clone();
    socket.on_error(move |_, message| log.borrow_mut().push(message.to_string()));
    let count = called.clone();
    socket.on("blocked", move |_, _, _| count.set(count.get() + 1));
    let count = called.clone();
    socket.on("ok", move |_, _, _| count.set(count.get() + 1));
    fire(&socket, "blocked", Args::new(), None);
    fire(&socket, "ok", Args::new().arg("bad"), None);
    fire(&socket, "ok", Args::new().arg("fine"), None);
    assert_eq!(called.get(), 1);
    assert_eq!(*errors.borrow(), vec!["blocked refused", "ok refused"]);
}

#[test]
fn rooms_grow_from_one_member_and_shrink_back() {
    let f = Fixture::new();
    let (a, ea) = f.socket();
    let (b, eb) = f.socket();
    let (c, ec) = f.socket();
    let counts = || (sent(&ea).len(), sent(&eb).len(), sent(&ec).len());
    // One member, kept without a table; joining twice changes nothing.
    a.join("r");
    a.join("r");
    a.namespace().to("r").emit("x", Args::new()).unwrap();
    assert_eq!(counts(), (1, 0, 0));
    b.join("r");
    c.join("r");
    assert_eq!(f.nsp.rooms.borrow().get("r").map(|m| m.len()), Some(3));
    a.namespace().to("r").emit("x", Args::new()).unwrap();
    assert_eq!(counts(), (1, 1, 1));
    a.leave("r");
    b.leave("r");
    a.namespace().to("r").emit("x", Args::new()).unwrap();
    assert_eq!(counts(), (0, 0, 1));
    c.leave("r");
    assert!(
        f.nsp.rooms.borrow().get("r").is_none(),
        "an empty room goes"
    );
    b.join("r");
    a.namespace().to("r").emit("x", Args::new()).unwrap();
    assert_eq!(counts(), (0, 1, 0));
    // A socket's own room has it alone.
    a.namespace().to(a.id()).emit("x", Args::new()).unwrap();
    assert_eq!(counts(), (1, 0, 0));
}

#[test]
fn a_stateless_handler_serves_each_socket_that_registers_it() {
    let f = Fixture::new();
    let (a, ea) = f.socket();
    let (b, eb) = f.socket();
    // The same closure type for both: one allocation shared.
    for socket in [&a, &b] {
        socket.on("ping", |socket, _, _| {
            socket.emit("pong", Args::new()).unwrap();
        });
    }
    let pong = vec![r#"2["pong"]"#.to_string()];
    fire(&a, "ping", Args::new(), None);
    assert_eq!((sent(&ea), sent(&eb).len()), (pong.clone(), 0));
    fire(&b, "ping", Args::new(), None);
    assert_eq!((sent(&ea).len(), sent(&eb)), (0, pong));
    assert_eq!(a.event_names(), vec!["ping"]);
}

/// The crash of issue 11: a recipient's queue overflows in the middle of a
/// room broadcast. Its close must not run inside the walk (it leaves rooms,
/// runs disconnect handlers); it runs after the dispatch, and every other
/// recipient still gets the packet.
#[test]
fn a_slow_recipient_found_mid_broadcast_is_closed_after_the_walk() {
    use super::testing::{attach_socket_on, ManualHost};
    let f = Fixture::new();
    let host = Rc::new(ManualHost::default());
    let mut members = Vec::new();
    for key in 0..8 {
        let (inner, entry) = attach_socket_on(&f.shard, &f.nsp, key, Rc::downgrade(&host) as _);
        sent(&entry);
        let socket = Socket(inner);
        socket.join("r");
        members.push((socket, entry));
    }
    let (slow, slow_entry) = &members[3];
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    slow.on_disconnect(move |s, reason| log.borrow_mut().push((reason, s.rooms().len())));
    let limit = slow_entry.session.borrow().config().max_buffered;
    while slow_entry.session.borrow().outbox_len() < limit {
        slow.emit("filler", Args::new()).unwrap();
    }
    f.shard
        .namespace("/")
        .map(|nsp| super::namespace::Namespace {
            shard: f.shard.clone(),
            nsp,
        })
        .unwrap()
        .to("r")
        .emit("news", Args::new())
        .unwrap();
    assert!(slow_entry.session.borrow().is_closed(), "closed at once");
    assert!(
        slow.connected(),
        "its Socket.IO close waits for the dispatch"
    );
    assert!(seen.borrow().is_empty());
    for (i, (_, entry)) in members.iter().enumerate() {
        if i != 3 {
            assert_eq!(sent(entry), vec![r#"2["news"]"#], "member {i}");
        }
    }
    assert_eq!(host.run_deferred(), 1);
    assert!(!slow.connected());
    assert_eq!(*seen.borrow(), vec![(DisconnectReason::TransportError, 0)]);
    let left = f.nsp.rooms.borrow().get("r").map_or(0, |m| m.len());
    assert_eq!(left, 7, "the slow socket left the room");
}

/// A panic in one socket's event handler closes that connection only, is
/// counted, and the shard's other sockets go on.
#[test]
fn a_panicking_handler_costs_its_connection_only() {
    use super::testing::{attach_socket_on, ManualHost};
    crate::panics::install_hook();
    let metrics = crate::metrics::Metrics::new();
    crate::metrics::enter(metrics.for_shard(0));
    let f = Fixture::new();
    let host = Rc::new(ManualHost::default());
    let (a, ea) = attach_socket_on(&f.shard, &f.nsp, 0, Rc::downgrade(&host) as _);
    let (b, eb) = attach_socket_on(&f.shard, &f.nsp, 1, Rc::downgrade(&host) as _);
    let (a, b) = (Socket(a), Socket(b));
    sent(&ea);
    sent(&eb);
    for socket in [&a, &b] {
        socket.on("boom", |_, _, _| panic!("a bug in the application"));
        socket.on("ping", |s, _, _| {
            s.emit("pong", Args::new()).unwrap();
        });
    }
    fire(&a, "boom", Args::new(), None);
    assert!(ea.session.borrow().is_closed());
    host.run_deferred();
    assert!(!a.connected());
    fire(&b, "ping", Args::new(), None);
    assert_eq!(sent(&eb), vec![r#"2["pong"]"#]);
    assert!(!eb.session.borrow().is_closed());
    let text = metrics.encode();
    assert!(text.contains(r#"hub_panics_total{shard="0"} 1"#), "{text}");
}

/// A task spawned from a socket's handler belongs to that socket: its panic
/// closes that connection (and a task it spawns in turn belongs to it too);
/// a task spawned outside any handler costs nothing but itself.
#[test]
fn a_panicking_task_spawned_by_a_handler_costs_its_connection_only() {
    use super::testing::{attach_socket_on, ManualHost};
    crate::panics::install_hook();
    let ran = glommio::LocalExecutorBuilder::default()
        .spawn(|| async {
            let f = Fixture::new();
            let host = Rc::new(ManualHost::default());
            let (a, ea) = attach_socket_on(&f.shard, &f.nsp, 0, Rc::downgrade(&host) as _);
            let (b, eb) = attach_socket_on(&f.shard, &f.nsp, 1, Rc::downgrade(&host) as _);
            let (a, b) = (Socket(a), Socket(b));
            for socket in [&a, &b] {
                socket.on("spawn", |_, _, _| {
                    super::spawn_local(async {
                        glommio::yield_if_needed().await;
                        // Nested: the inner task belongs to the socket too.
                        super::spawn_local(async {
                            futures_lite::future::yield_now().await;
                            panic!("a bug in a task");
                        });
                    });
                });
            }
            // Outside any handler: no socket pays for it.
            super::spawn_local(async { panic!("a bug in a free task") });
            fire(&a, "spawn", Args::new(), None);
            assert!(!ea.session.borrow().is_closed(), "not before the task runs");
            for _ in 0..10 {
                futures_lite::future::yield_now().await;
            }
            assert!(
                ea.session.borrow().is_closed(),
                "the spawning socket's connection"
            );
            assert!(
                !eb.session.borrow().is_closed(),
                "the other socket's is untouched"
            );
            host.run_deferred();
            assert!(!a.connected());
            assert!(b.connected());
            true
        })
        .expect("an executor")
        .join()
        .expect("the executor ran");
    assert!(ran);
}

/// A broadcast with acks: one packet with one ack id for every recipient,
/// each answer gathered once; a recipient that never answers makes it end
/// at its timeout with the answers that came.
#[test]
fn a_broadcast_with_acks_gathers_every_recipients_answer() {
    use super::namespace::Namespace;
    let ran = glommio::LocalExecutorBuilder::default()
        .spawn(|| async {
            let f = Fixture::new();
            let (a, ea) = f.socket();
            let (b, eb) = f.socket();
            let (c, ec) = f.socket();
            let (_, eo) = f.socket();
            for s in [&a, &b, &c] {
                s.join("r");
            }
            let io = Namespace::new(f.shard.clone(), f.nsp.clone());
            let pending = io
                .to("r")
                .timeout(Duration::from_secs(30))
                .emit_with_ack("q", Args::new().arg(1))
                .expect("not reserved");
            let texts: Vec<Vec<String>> = [&ea, &eb, &ec, &eo].iter().map(|e| sent(e)).collect();
            // The same text, ack id and all, for every member; none for the outsider.
            let text = &texts[0][0];
            let id: u64 = text[1..text.find('[').unwrap()].parse().unwrap();
            assert!(id >= 1 << 32, "{text}");
            assert_eq!(text, &format!("2{id}[\"q\",1]"));
            assert_eq!(texts[1], texts[0]);
            assert_eq!(texts[2], texts[0]);
            assert!(texts[3].is_empty());
            a.0.on_ack(id, Args::new().arg("from a"));
            a.0.on_ack(id, Args::new().arg("twice"));
            c.0.on_ack(id, Args::new().arg("from c"));
            b.0.on_ack(id, Args::new().arg("from b"));
            let answers = pending.await.expect("all answered");
            let answers: Vec<&str> = answers.iter().map(|r| r.str(0).unwrap()).collect();
            assert_eq!(answers, ["from a", "from c", "from b"]);

            let pending = io
                .to("r")
                .timeout(Duration::from_millis(20))
                .emit_with_ack("q", Args::new())
                .expect("not reserved");
            let text = sent(&ea).remove(0);
            let id: u64 = text[1..text.find('[').unwrap()].parse().unwrap();
            b.0.on_ack(id, Args::new().arg("only b"));
            let timeout = pending.await.expect_err("a and c never answer");
            assert_eq!(timeout.expected, 3);
            assert_eq!(timeout.responses.len(), 1);
            assert!(
                f.shard.broadcast_acks.borrow().is_empty(),
                "the collector is gone"
            );
            true
        })
        .expect("an executor")
        .join()
        .expect("the executor ran");
    assert!(ran);
}

/// A clustered server whose link never ran (its task was not given to the
/// server): requests to the other nodes end at once with nothing, local
/// operations work, a broadcast with acks gathers the local answers.
#[test]
fn a_cluster_without_its_link_answers_requests_with_nothing() {
    use super::namespace::Namespace;
    use super::ClusterConfig;
    let ran = glommio::LocalExecutorBuilder::default()
        .spawn(|| async {
            let url = crate::redis::RedisUrl::parse("redis://127.0.0.1:1").unwrap();
            let io = Io::builder()
                .cluster(ClusterConfig::new(url))
                .of("/", |nsp| nsp)
                .build();
            let shard = SioShard::new(io.config.clone(), 0);
            let nsp = shard.namespace("/").unwrap();
            let (a, ea) = super::testing::attach_socket(&shard, &nsp, 0);
            sent(&ea);
            Socket(a.clone()).join("r");
            let io = Namespace::new(shard.clone(), nsp.clone());
            let answers = io
                .server_side_emit_with_ack("ping", Args::new())
                .await
                .expect("no other node to wait for");
            assert!(answers.is_empty());
            let sockets = io.fetch_sockets().await;
            assert_eq!(sockets.len(), 1);
            assert!(sockets[0].on_this_node);
            let rooms = io.all_rooms().await;
            assert!(rooms.contains(&"r".to_string()), "{rooms:?}");
            let pending = io
                .to("r")
                .timeout(Duration::from_secs(30))
                .emit_with_ack("q", Args::new())
                .unwrap();
            let text = sent(&ea).remove(0);
            let id: u64 = text[1..text.find('[').unwrap()].parse().unwrap();
            a.on_ack(id, Args::new().arg("yes"));
            assert_eq!(pending.await.expect("answered").len(), 1);
            true
        })
        .expect("an executor")
        .join()
        .expect("the executor ran");
    assert!(ran);
}
