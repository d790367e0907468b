//! Emitting to many sockets: rooms, exceptions and flags, on every shard.
//! There is no acknowledgement on a broadcast: this type has no such method.

use std::future::Future;
use std::rc::Rc;

use super::adapter::{Adapter, RoomOp, Target};
use super::args::Args;
use super::namespace::Nsp;
use super::outgoing;
use super::reason::DisconnectReason;
use super::shard::SioShard;
use super::socket::{EmitError, SocketInner};
use crate::socketio::is_reserved_event;

/// A socket as a server-wide query reports it, from whichever shard owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteSocket {
    pub id: String,
    pub nsp: String,
    pub rooms: Vec<String>,
    pub shard: usize,
}

impl RemoteSocket {
    pub(crate) fn of(socket: &SocketInner, shard: usize) -> RemoteSocket {
        RemoteSocket {
            id: socket.id.to_string(),
            nsp: socket.nsp.name.clone(),
            rooms: socket
                .rooms
                .borrow()
                .iter()
                .map(|r| r.to_string())
                .collect(),
            shard,
        }
    }
}

/// Targets for an emit or a room operation: `to` rooms (all sockets when
/// none), `except` rooms, with flags. Built from a socket (which it then
/// excludes) or from a namespace. It may be kept: when used, it acts on the
/// shard's namespace of its name as it is then (a dynamic namespace may
/// have been removed and created again meanwhile).
#[must_use = "a broadcast does nothing until emitted"]
pub struct BroadcastOperator {
    shard: Rc<SioShard>,
    nsp: Rc<Nsp>,
    sender: Option<Rc<SocketInner>>,
    target: Target,
    compress: Option<bool>,
    binary: Option<bool>,
}

impl BroadcastOperator {
    pub(crate) fn new(
        shard: Rc<SioShard>,
        nsp: Rc<Nsp>,
        sender: Option<Rc<SocketInner>>,
    ) -> BroadcastOperator {
        BroadcastOperator {
            shard,
            nsp,
            sender,
            target: Target::default(),
            compress: None,
            binary: None,
        }
    }

    /// Add a target room; each recipient gets the packet once however many of its rooms are named.
    pub fn to(mut self, room: &str) -> BroadcastOperator {
        if !self.target.rooms.iter().any(|r| r == room) {
            self.target.rooms.push(room.to_string());
        }
        self
    }

    pub fn in_(self, room: &str) -> BroadcastOperator {
        self.to(room)
    }

    /// Add several target rooms.
    pub fn to_many<'a>(mut self, rooms: impl IntoIterator<Item = &'a str>) -> BroadcastOperator {
        for room in rooms {
            self = self.to(room);
        }
        self
    }

    /// Leave out the sockets in `room`.
    pub fn except(mut self, room: &str) -> BroadcastOperator {
        if !self.target.except.iter().any(|r| r == room) {
            self.target.except.push(room.to_string());
        }
        self
    }

    /// Drop the packet for recipients that cannot take it now.
    pub fn volatile(mut self) -> BroadcastOperator {
        self.target.volatile = true;
        self
    }

    /// Per-message compression flag (carried; the transport does not compress yet).
    pub fn compress(mut self, compress: bool) -> BroadcastOperator {
        self.compress = Some(compress);
        self
    }

    /// Binary hint; arguments carry their attachments explicitly, so nothing is scanned.
    pub fn binary(mut self, binary: bool) -> BroadcastOperator {
        self.binary = Some(binary);
        self
    }

    /// The flags as set: (volatile, compress, binary).
    pub fn flags(&self) -> (bool, Option<bool>, Option<bool>) {
        (self.target.volatile, self.compress, self.binary)
    }

    /// Encode once and deliver to every target socket on every shard.
    pub fn emit(self, event: &str, args: Args) -> Result<(), EmitError> {
        if is_reserved_event(event) {
            return Err(EmitError::Reserved(event.to_string()));
        }
        let packet = outgoing::event(&self.nsp.name, event, &args, None);
        let nsp = self.shard.live(&self.nsp);
        self.shard
            .adapter
            .broadcast(&nsp, self.target, self.sender.as_deref(), packet);
        Ok(())
    }

    /// Make the target sockets join `room`, on every shard.
    pub fn sockets_join(self, room: &str) {
        self.room_op(RoomOp::Join(vec![room.to_string()]));
    }

    /// Make the target sockets leave `room`, on every shard.
    pub fn sockets_leave(self, room: &str) {
        self.room_op(RoomOp::Leave(vec![room.to_string()]));
    }

    /// Disconnect the target sockets, on every shard (`close`: their whole connections).
    pub fn disconnect_sockets(self, close: bool) {
        self.room_op(RoomOp::Disconnect { close });
    }

    fn room_op(self, op: RoomOp) {
        let nsp = self.shard.live(&self.nsp);
        let local = self
            .shard
            .adapter
            .room_op(&nsp, self.target, self.sender.as_deref(), op);
        for (socket, close) in local {
            self.shard
                .disconnect(&socket, close, DisconnectReason::ServerNamespaceDisconnect);
        }
    }

    /// The target sockets, gathered from every shard.
    pub fn fetch_sockets(self) -> impl Future<Output = Vec<RemoteSocket>> {
        let nsp = self.shard.live(&self.nsp);
        self.shard
            .adapter
            .fetch(&nsp, self.target, self.sender.as_deref())
    }
}
