//! A namespace on one shard: its sockets and its room index.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasherDefault;
use std::rc::Rc;

use ahash::{AHashMap, AHasher};

use super::args::Args;
use super::broadcast::{BroadcastOperator, RemoteSocket};
use super::cluster::link::NodeRequest;
use super::cluster::ServerSideEmitTimeout;
use super::io::NamespaceDef;
use super::shard::SioShard;
use super::socket::{EmitError, Socket, SocketInner};
use crate::socketio::is_reserved_event;
use serde_json::Value;

/// `[event, ...args]` and the attachments, as a server-side emit carries them.
fn server_side_data(event: &str, args: Args) -> (Vec<Value>, Vec<bytes::Bytes>) {
    let (values, attachments) = args.into_parts();
    let mut data = Vec::with_capacity(values.len() + 1);
    data.push(Value::from(event));
    data.extend(values);
    (data, attachments)
}

/// Sockets by their shard-local key (a counter, so a fixed hasher will do:
/// a table per room then carries no hasher state).
type SocketTable = HashMap<u64, Rc<SocketInner>, BuildHasherDefault<AHasher>>;

/// The sockets of a room, or of a namespace. Most rooms are a socket's own
/// room, with that one member: it is kept in place, without a table.
pub(crate) enum Members {
    One(u64, Rc<SocketInner>),
    Many(SocketTable),
}

impl Default for Members {
    fn default() -> Members {
        Members::Many(SocketTable::default())
    }
}

impl Members {
    pub fn insert(&mut self, key: u64, socket: Rc<SocketInner>) {
        match self {
            Members::Many(table) if table.is_empty() => *self = Members::One(key, socket),
            Members::Many(table) => {
                table.insert(key, socket);
            }
            Members::One(one, _) if *one == key => *self = Members::One(key, socket),
            Members::One(..) => {
                let Members::One(one, first) = std::mem::take(self) else {
                    unreachable!("matched above");
                };
                let mut table = SocketTable::default();
                table.insert(one, first);
                table.insert(key, socket);
                *self = Members::Many(table);
            }
        }
    }

    pub fn remove(&mut self, key: &u64) {
        match self {
            Members::One(one, _) if one == key => *self = Members::default(),
            Members::One(..) => {}
            Members::Many(table) => {
                table.remove(key);
            }
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Members::One(..) => 1,
            Members::Many(table) => table.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Call `visit` with each member: as [`Members::values`], with the
    /// variant matched once rather than per member (the chained iterator
    /// of `values` tests its two halves at every step, some 10 Ir per
    /// recipient of a broadcast's walk).
    #[inline]
    pub fn for_each(&self, mut visit: impl FnMut(&Rc<SocketInner>)) {
        match self {
            Members::One(_, socket) => visit(socket),
            Members::Many(table) => table.values().for_each(visit),
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &Rc<SocketInner>> {
        let (one, many) = match self {
            Members::One(_, socket) => (Some(socket), None),
            Members::Many(table) => (None, Some(table.values())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

pub(crate) struct Nsp {
    pub name: String,
    pub def: NamespaceDef,
    pub sockets: RefCell<Members>,
    pub rooms: RefCell<AHashMap<Rc<str>, Members>>,
    /// This is the shard's namespace of that name, in its map. False for a
    /// dynamic namespace removed when its last socket left, or handed to
    /// the application before any socket came (see `SioShard::live`).
    pub attached: Cell<bool>,
}

impl Nsp {
    pub fn new(name: &str, def: NamespaceDef) -> Nsp {
        Nsp {
            name: name.to_string(),
            def,
            sockets: RefCell::new(Members::default()),
            rooms: RefCell::new(AHashMap::new()),
            attached: Cell::new(false),
        }
    }
}

/// A namespace as seen from one shard (the reference `io.of(name)`):
/// emits and room operations reach its sockets on every shard. A handle
/// may be kept: a dynamic namespace removed when its last socket left (and
/// created again by the next) is found again by name.
#[derive(Clone)]
pub struct Namespace {
    pub(crate) shard: Rc<SioShard>,
    pub(crate) nsp: Rc<Nsp>,
}

impl Namespace {
    pub(crate) fn new(shard: Rc<SioShard>, nsp: Rc<Nsp>) -> Namespace {
        Namespace { shard, nsp }
    }

    pub fn name(&self) -> &str {
        &self.nsp.name
    }

    /// Every socket of the namespace, to narrow with `to`, `except` and flags.
    pub fn all(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.shard.clone(), self.nsp.clone(), None)
    }

    /// Target a room (chain `.to` for more).
    pub fn to(&self, room: &str) -> BroadcastOperator {
        self.all().to(room)
    }

    pub fn in_(&self, room: &str) -> BroadcastOperator {
        self.to(room)
    }

    pub fn except(&self, room: &str) -> BroadcastOperator {
        self.all().except(room)
    }

    pub fn volatile(&self) -> BroadcastOperator {
        self.all().volatile()
    }

    /// Every socket, for an emit with acks that waits at most `timeout`.
    pub fn timeout(&self, timeout: std::time::Duration) -> BroadcastOperator {
        self.all().timeout(timeout)
    }

    /// Emit to every socket of the namespace, on every shard.
    pub fn emit(&self, event: &str, args: Args) -> Result<(), EmitError> {
        self.all().emit(event, args)
    }

    /// The sockets of the namespace, on every shard.
    pub fn fetch_sockets(&self) -> impl Future<Output = Vec<RemoteSocket>> {
        self.all().fetch_sockets()
    }

    /// Make every socket of the namespace join `room`.
    pub fn sockets_join(&self, room: &str) {
        self.all().sockets_join(room)
    }

    pub fn sockets_leave(&self, room: &str) {
        self.all().sockets_leave(room)
    }

    pub fn disconnect_sockets(&self, close: bool) {
        self.all().disconnect_sockets(close)
    }

    /// Emit `event` to the other nodes of the cluster (Node's
    /// `io.serverSideEmit`): their handlers for it run (`on_server_side`
    /// here, `io.on(event)` on Node servers). Nothing without a cluster.
    pub fn server_side_emit(&self, event: &str, args: Args) -> Result<(), EmitError> {
        if is_reserved_event(event) {
            return Err(EmitError::Reserved(event.to_string()));
        }
        let (data, attachments) = server_side_data(event, args);
        self.shard.cluster_publish(
            &self.nsp.name,
            crate::redis::message::Outbound::ServerSideEmit {
                request_id: None,
                data: &data,
                attachments: &attachments,
            },
        );
        Ok(())
    }

    /// As [`Namespace::server_side_emit`], and gather each other node's
    /// answer (`serverSideEmitWithAck`): every node's, or those that came
    /// within the cluster's request timeout, with an error.
    pub fn server_side_emit_with_ack(
        &self,
        event: &str,
        args: Args,
    ) -> impl Future<Output = Result<Vec<Value>, ServerSideEmitTimeout>> + 'static {
        let request = match (is_reserved_event(event), self.shard.cluster()) {
            (false, Some(_)) => {
                let (data, attachments) = server_side_data(event, args);
                Some(self.shard.cluster_request(
                    &self.nsp.name,
                    NodeRequest::ServerSideEmit { data, attachments },
                ))
            }
            _ => None,
        };
        async move {
            let Some(request) = request else {
                return Ok(Vec::new());
            };
            let (responses, expected) = request.await;
            let responses: Vec<Value> = responses
                .into_iter()
                .map(|mut r| r.body.remove("data").unwrap_or(Value::Null))
                .collect();
            if responses.len() < expected {
                return Err(ServerSideEmitTimeout {
                    responses,
                    expected,
                });
            }
            Ok(responses)
        }
    }

    /// Every room of the namespace, on every shard and, in a cluster,
    /// every node that answers within the request timeout (`allRooms`).
    pub fn all_rooms(&self) -> impl Future<Output = Vec<String>> + 'static {
        let remote = self
            .shard
            .cluster()
            .filter(|c| c.dialect().has_all_rooms())
            .map(|_| {
                self.shard
                    .cluster_request(&self.nsp.name, NodeRequest::AllRooms)
            });
        let local = self.fetch_local_sockets();
        async move {
            let mut rooms: Vec<String> = local.await.into_iter().flat_map(|s| s.rooms).collect();
            if let Some(remote) = remote {
                for response in remote.await.0 {
                    rooms.extend(crate::redis::wire::room_names(response.body.get("rooms")));
                }
            }
            rooms.sort_unstable();
            rooms.dedup();
            rooms
        }
    }

    /// This node's sockets of the namespace, on every shard.
    fn fetch_local_sockets(&self) -> impl Future<Output = Vec<RemoteSocket>> {
        self.all().local().fetch_sockets()
    }

    /// The sockets of the namespace on this shard.
    pub fn local_sockets(&self) -> Vec<Socket> {
        self.shard
            .live(&self.nsp)
            .sockets
            .borrow()
            .values()
            .map(|s| Socket(s.clone()))
            .collect()
    }
}
