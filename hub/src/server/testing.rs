//! Fixtures for benchmarks of the Socket.IO layer without sockets: a shard
//! state with many connected sockets whose sessions only queue.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use serde_json::json;

use super::adapter::Adapter;
use super::args::Args;
use super::broadcast::BroadcastOperator;
use super::client::Client;
use super::handshake::Handshake;
use super::io::Io;
use super::namespace::Nsp;
use super::shard::SioShard;
use super::socket::SocketInner;
use crate::engine::{
    Handler, ProtocolVersion, SessionEntry, SessionHost, Socket as EngineSocket, TransportKind,
};
use crate::engineio::{Packet, Sid};
use crate::socketio::Protocol;

/// `sockets` WebSocket clients on one shard, all in one room.
#[doc(hidden)]
pub struct LocalFanout {
    shard: Rc<SioShard>,
    nsp: Rc<Nsp>,
    sessions: Vec<Rc<SessionEntry>>,
    scratch: RefCell<Vec<Packet>>,
}

impl LocalFanout {
    pub fn new(sockets: usize, room: &str) -> LocalFanout {
        let io = Io::builder().of("/", |nsp| nsp).build();
        let shard = SioShard::new(io.config.clone(), 0);
        let nsp = shard.namespace("/").expect("/ is declared");
        let mut sessions = Vec::with_capacity(sockets);
        for key in 0..sockets as u64 {
            let (socket, entry) = attach_socket(&shard, &nsp, key);
            shard.adapter.join(&nsp, &socket, room);
            sessions.push(entry);
        }
        let fanout = LocalFanout {
            shard,
            nsp,
            sessions,
            scratch: RefCell::new(Vec::new()),
        };
        fanout.drain();
        fanout
    }

    /// `io.to(room).emit(event, args)`: encoded once, queued to every member.
    pub fn emit_to_room(&self, room: &str, event: &str, args: Args) {
        BroadcastOperator::new(self.shard.clone(), self.nsp.clone(), None)
            .to(room)
            .emit(event, args)
            .expect("not a reserved name");
    }

    /// Take what every session queued, as its WebSocket writer would; the
    /// number of packets taken.
    pub fn drain(&self) -> usize {
        let mut scratch = self.scratch.borrow_mut();
        let mut taken = 0;
        for entry in &self.sessions {
            entry.session.borrow_mut().take_ws_packets(&mut scratch);
            taken += scratch.len();
            scratch.clear();
        }
        taken
    }
}

/// A host for detached sessions whose deferred dispatches wait until the
/// test runs them, as a shard's task would after the current dispatch.
#[derive(Default)]
pub(crate) struct ManualHost {
    deferred: RefCell<Vec<Rc<SessionEntry>>>,
}

impl ManualHost {
    /// Dispatch the deferred sessions; how many there were.
    #[cfg(test)]
    pub fn run_deferred(&self) -> usize {
        let batch = std::mem::take(&mut *self.deferred.borrow_mut());
        for entry in &batch {
            entry.dispatch();
        }
        batch.len()
    }
}

impl SessionHost for ManualHost {
    fn rearm(&self, _entry: &Rc<SessionEntry>) {}

    fn defer_dispatch(&self, entry: &Rc<SessionEntry>) {
        self.deferred.borrow_mut().push(entry.clone());
    }
}

/// A connected socket on `nsp`, in its own room, over a WebSocket session
/// that only queues.
pub(crate) fn attach_socket(
    shard: &Rc<SioShard>,
    nsp: &Rc<Nsp>,
    key: u64,
) -> (Rc<SocketInner>, Rc<SessionEntry>) {
    attach_socket_on(shard, nsp, key, Weak::<ManualHost>::new())
}

/// As [`attach_socket`], its session hosted by `host`.
pub(crate) fn attach_socket_on(
    shard: &Rc<SioShard>,
    nsp: &Rc<Nsp>,
    key: u64,
    host: Weak<dyn SessionHost>,
) -> (Rc<SocketInner>, Rc<SessionEntry>) {
    let entry = SessionEntry::detached_on(
        Sid::generate(0),
        ProtocolVersion::V4,
        TransportKind::WebSocket,
        shard.clone() as Rc<dyn Handler>,
        host,
    );
    let conn = EngineSocket(entry.clone());
    let client = Rc::new(Client::new(conn.clone(), Protocol::V5, 64));
    shard.add_client(client.clone());
    let id: Rc<str> = Rc::from(Sid::generate(0).as_str());
    let socket = Rc::new(SocketInner::new(
        key,
        id.clone(),
        nsp.clone(),
        Rc::downgrade(shard),
        client.clone(),
        Handshake::new(&conn, json!({}), None),
    ));
    socket.connected.set(true);
    nsp.sockets.borrow_mut().insert(key, socket.clone());
    client.add(socket.clone());
    shard.adapter.join(nsp, &socket, &id);
    (socket, entry)
}
