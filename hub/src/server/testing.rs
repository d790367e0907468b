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
#[cfg(test)]
use super::socket::Socket;
use super::socket::SocketInner;
#[cfg(test)]
use crate::engine::Data;
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
    let (client, entry) = attach_client(shard, host);
    let conn = client.conn.clone();
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

/// A Socket.IO client of `shard`, in no namespace yet, over a v4 WebSocket
/// session that only queues, hosted by `host`.
fn attach_client(
    shard: &Rc<SioShard>,
    host: Weak<dyn SessionHost>,
) -> (Rc<Client>, Rc<SessionEntry>) {
    let entry = SessionEntry::detached_on(
        Sid::generate(0),
        ProtocolVersion::V4,
        TransportKind::WebSocket,
        shard.clone() as Rc<dyn Handler>,
        host,
    );
    let client = Rc::new(Client::new(EngineSocket(entry.clone()), Protocol::V5, 64));
    shard.add_client(client.clone());
    (client, entry)
}

/// The Socket.IO texts a session queued since the last call.
#[cfg(test)]
pub(crate) fn sent(entry: &SessionEntry) -> Vec<String> {
    let mut packets = Vec::new();
    entry.session.borrow_mut().take_ws_packets(&mut packets);
    packets
        .into_iter()
        .filter_map(|p| match p {
            Packet::Message(Data::Text(text)) => Some(text.to_string()),
            _ => None,
        })
        .collect()
}

/// Shard 0's state of `io`, without a runtime.
#[cfg(test)]
pub(crate) fn shard_of(io: &Io) -> Rc<SioShard> {
    SioShard::new(io.config.clone(), 0)
}

/// An Engine.IO v4 client of `shard` over a WebSocket session that only queues.
#[cfg(test)]
pub(crate) struct TestClient {
    shard: Rc<SioShard>,
    pub conn: EngineSocket,
    entry: Rc<SessionEntry>,
    _host: Rc<ManualHost>,
}

#[cfg(test)]
impl TestClient {
    pub fn new(shard: &Rc<SioShard>) -> TestClient {
        let host = Rc::new(ManualHost::default());
        let (client, entry) = attach_client(shard, Rc::downgrade(&host) as _);
        let client = TestClient {
            shard: shard.clone(),
            conn: client.conn.clone(),
            entry,
            _host: host,
        };
        client.sent(); // the open packet
        client
    }

    /// Send one Socket.IO packet, as text.
    pub fn send(&self, text: &str) {
        self.shard
            .on_message(&self.conn, Data::Text(text.to_string().into()));
    }

    /// Send one Socket.IO packet, as text, the way a transport hands it
    /// over: into the session's events, then dispatched.
    pub fn send_through_session(&self, text: &str) {
        let packet = Packet::Message(Data::Text(text.to_string().into()));
        self.entry
            .session
            .borrow_mut()
            .on_packets([packet], std::time::Instant::now());
        self.entry.dispatch();
    }

    /// The Socket.IO texts queued to the client since the last call.
    pub fn sent(&self) -> Vec<String> {
        sent(&self.entry)
    }

    /// CONNECT to `nsp`; the server's answer.
    pub fn connect(&self, nsp: &str) -> String {
        self.send(&format!("0{}", prefix(nsp)));
        let mut answer = self.sent();
        assert_eq!(answer.len(), 1, "one answer to a CONNECT: {answer:?}");
        answer.remove(0)
    }

    pub fn socket(&self, nsp: &str) -> Socket {
        let client = self.shard.clients_snapshot();
        let client = client
            .iter()
            .find(|c| c.conn.sid() == self.conn.sid())
            .expect("the client");
        Socket(client.socket(nsp).expect("connected to the namespace"))
    }
}

/// How a packet names `nsp`: nothing for `/`.
#[cfg(test)]
fn prefix(nsp: &str) -> String {
    if nsp == "/" {
        String::new()
    } else {
        format!("{nsp},")
    }
}
