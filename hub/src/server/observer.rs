//! Watching a Socket.IO server from beside it (the Admin UI's
//! instrumentation): connections opened and closed, sockets, rooms and
//! events, as they happen on each shard.
//!
//! An observer is per shard (made by the factory given to
//! [`IoBuilder::observe`](super::IoBuilder::observe)) and is called from
//! inside the server, sometimes while its state is borrowed: it must only
//! record what it hears (count, queue) and act later from a task of its
//! own, never call back into the server from a hook. Without an observer
//! each hook costs one branch.

use std::rc::Rc;
use std::sync::Arc;

use super::args::Args;
use super::reason::DisconnectReason;
use super::socket::Socket;
use crate::engine::{CloseReason, Socket as EngineSocket};
use crate::engineio::Text;

/// What happens on one shard's Socket.IO server. Every method does nothing
/// by default.
pub trait Observer {
    /// An Engine.IO connection opened.
    fn client_opened(&self, _conn: &EngineSocket) {}
    /// An Engine.IO connection closed.
    fn client_closed(&self, _conn: &EngineSocket, _reason: CloseReason) {}
    /// A connection moved from polling to WebSocket; `sockets` are its
    /// sockets (`nsp`, `id`).
    fn client_upgraded(&self, _sockets: &[(&str, &str)]) {}
    /// A socket joined its namespace (after its own room).
    fn socket_connected(&self, _socket: &Socket) {}
    /// A socket left its namespace; `rooms` are the rooms it was in (its
    /// own included), which it has left.
    fn socket_disconnected(
        &self,
        _nsp: &str,
        _id: &str,
        _reason: DisconnectReason,
        _rooms: &[String],
    ) {
    }
    /// A socket was added to a room it was not in.
    fn room_joined(&self, _nsp: &str, _room: &str, _id: &str) {}
    /// A socket was removed from a room it was in (not called for the
    /// rooms of a socket that disconnects: see `socket_disconnected`).
    fn room_left(&self, _nsp: &str, _room: &str, _id: &str) {}
    /// A socket received an event.
    fn event_received(&self, _nsp: &str, _id: &str, _event: &str, _args: &Args) {}
    /// An event was emitted to one socket (`socket.emit`).
    fn event_sent(&self, _nsp: &str, _id: &str, _event: &str, _args: &Args) {}
    /// A broadcast packet was queued for one of its recipients: `packet`
    /// is its encoded Socket.IO text (`2/nsp,["ev",..]`), the one every
    /// recipient shares (an observer that keeps it clones a reference,
    /// not the text: a broadcast has as many calls as recipients).
    fn packet_sent(&self, _nsp: &str, _id: &str, _packet: &Text) {}
}

/// Makes the observer of each shard (given the shard's index).
pub type ObserverFactory = Arc<dyn Fn(usize) -> Rc<dyn Observer> + Send + Sync>;
