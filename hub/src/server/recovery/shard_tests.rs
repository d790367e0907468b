//! Recovery on one shard through the Socket.IO layer, without a runtime:
//! the CONNECT answer, offsets, the session kept on a recoverable close,
//! and a restore with the missed packets (or a fresh session).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::RecoveryConfig;
use crate::engine::{CloseReason, Handler};
use crate::server::testing::{shard_of, TestClient};
use crate::server::{Args, Io};

/// `/` with recovery on; `ping` is answered with a `pong` emitted to the
/// socket (no ack); the middleware counts its runs.
fn io(middleware_runs: Arc<AtomicUsize>) -> Io {
    Io::builder()
        .recovery(RecoveryConfig {
            window: Duration::from_secs(60),
            ..RecoveryConfig::default()
        })
        .of("/", move |nsp| {
            nsp.use_middleware(move |_| {
                middleware_runs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .on_connection(|socket| {
                socket.on("ping", |socket, _, _| {
                    let _ = socket.emit("pong", Args::new().arg(socket.recovered()));
                });
            })
        })
        .build()
}

/// The CONNECT answer's `{sid, pid}`.
fn ids(answer: &str) -> (String, String) {
    let body: Value = serde_json::from_str(answer.strip_prefix('0').expect("a CONNECT")).unwrap();
    (
        body["sid"].as_str().expect("sid").to_string(),
        body["pid"].as_str().expect("pid").to_string(),
    )
}

/// An EVENT's arguments.
fn args(packet: &str) -> Vec<Value> {
    serde_json::from_str(packet.strip_prefix('2').expect("an EVENT")).unwrap()
}

#[test]
fn a_socket_back_with_its_pid_and_offset_gets_its_id_rooms_and_what_it_missed() {
    let runs = Arc::new(AtomicUsize::new(0));
    let shard = shard_of(&io(runs.clone()));
    let a = TestClient::new(&shard);
    let (sid, pid) = ids(&a.connect("/"));
    a.socket("/").join("room");
    let nsp = a.socket("/").namespace();
    nsp.to("room").emit("news", Args::new().arg(1)).unwrap();
    let first = a.sent();
    assert_eq!(first.len(), 1);
    let news1 = args(&first[0]);
    assert_eq!(news1[..2], [json!("news"), json!(1)]);
    let offset = news1[2]
        .as_str()
        .expect("an offset as the last argument")
        .to_string();
    // A direct emit without ack gets one too (it is kept, for its own room).
    a.send(r#"2["ping"]"#);
    let pong = args(&a.sent()[0]);
    assert_eq!(pong[..2], [json!("pong"), json!(false)]);
    assert!(pong[2].is_string(), "{pong:?}");

    // The transport goes: the session is kept. Two more, missed.
    shard.on_close(&a.conn, CloseReason::TransportClose);
    nsp.to("room").emit("news", Args::new().arg(2)).unwrap();
    nsp.to("elsewhere")
        .emit("news", Args::new().arg(99))
        .unwrap();
    nsp.emit("all", Args::new()).unwrap();
    nsp.volatile()
        .to("room")
        .emit("news", Args::new().arg(100))
        .unwrap();

    let back = TestClient::new(&shard);
    back.send(&format!("0{}", json!({ "pid": pid, "offset": offset })));
    let got = back.sent();
    // As socket.io: the missed events first, then the CONNECT answer.
    let (connect, missed) = got.split_last().expect("packets");
    assert_eq!(ids(connect), (sid.clone(), pid.clone()), "the same ids");
    let missed: Vec<Vec<Value>> = missed.iter().map(|p| args(p)).collect();
    let events: Vec<&str> = missed.iter().map(|a| a[0].as_str().unwrap()).collect();
    // After the offset: the pong (its own room), news 2 (its room), `all`
    // (everyone); not room `elsewhere`, nor the volatile one. Each with its
    // offset last.
    assert_eq!(events, ["pong", "news", "all"], "{got:?}");
    assert_eq!(missed[0][1], json!(false));
    assert_eq!(missed[1][1], json!(2));
    assert_eq!(missed[2].len(), 2, "`all` has no data, only its offset");
    assert!(missed.iter().all(|a| a.last().unwrap().is_string()));
    let socket = back.socket("/");
    assert!(socket.recovered());
    assert_eq!(socket.id(), sid);
    assert_eq!(socket.rooms(), [sid.clone(), "room".to_string()]);
    assert_eq!(
        runs.load(Ordering::Relaxed),
        1,
        "middlewares skipped on recovery"
    );
    // Still in the room.
    nsp.to("room").emit("news", Args::new().arg(3)).unwrap();
    assert_eq!(args(&back.sent()[0])[..2], [json!("news"), json!(3)]);
    back.send(r#"2["ping"]"#);
    assert_eq!(
        args(&back.sent()[0])[1],
        json!(true),
        "recovered, as the server sees it"
    );

    // Taken once: the same pid again gets a fresh session.
    let again = TestClient::new(&shard);
    again.send(&format!("0{}", json!({ "pid": pid, "offset": offset })));
    let (fresh, _) = ids(&again.sent()[0]);
    assert_ne!(fresh, sid);
    assert!(!again.socket("/").recovered());
    assert_eq!(runs.load(Ordering::Relaxed), 2);
}

#[test]
fn no_session_is_kept_when_the_client_leaves_and_bad_ids_get_a_fresh_one() {
    let shard = shard_of(&io(Arc::default()));
    let a = TestClient::new(&shard);
    let (sid, pid) = ids(&a.connect("/"));
    let nsp = a.socket("/").namespace();
    nsp.emit("x", Args::new()).unwrap();
    let offset = args(&a.sent()[0])[1].as_str().unwrap().to_string();
    // A DISCONNECT from the client is not a recoverable reason.
    a.send("1");
    for auth in [
        json!({ "pid": pid, "offset": offset }),
        json!({ "pid": "not-a-pid", "offset": offset }),
        json!({ "pid": pid, "offset": "zz" }),
        json!({ "pid": pid, "offset": 7 }),
    ] {
        let c = TestClient::new(&shard);
        c.send(&format!("0{auth}"));
        let answer = c.sent();
        let (id, new_pid) = ids(&answer[0]);
        assert_ne!(id, sid, "{auth}: a fresh session");
        assert_ne!(new_pid, pid);
        assert_eq!(answer.len(), 1, "{auth}: nothing replayed");
    }
}

#[test]
fn an_offset_no_longer_held_gets_a_fresh_session() {
    let io = Io::builder()
        .recovery(RecoveryConfig {
            buffer_bytes: 2048,
            ..RecoveryConfig::default()
        })
        .of("/", |nsp| nsp)
        .build();
    let shard = shard_of(&io);
    let a = TestClient::new(&shard);
    let (sid, pid) = ids(&a.connect("/"));
    let nsp = a.socket("/").namespace();
    nsp.emit("x", Args::new()).unwrap();
    let offset = args(&a.sent()[0])[1].as_str().unwrap().to_string();
    shard.on_close(&a.conn, CloseReason::PingTimeout);
    for _ in 0..8 {
        nsp.emit("x", Args::new().arg("y".repeat(500))).unwrap();
    }
    let back = TestClient::new(&shard);
    back.send(&format!("0{}", json!({ "pid": pid, "offset": offset })));
    let answer = back.sent();
    assert_ne!(
        ids(&answer[0]).0,
        sid,
        "a fresh session, not a partial replay"
    );
    assert_eq!(answer.len(), 1);
}
