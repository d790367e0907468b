use std::any::Any;
use std::rc::Rc;
use std::sync::Arc;

use super::{CloseReason, Data, Socket};

/// An application on top of Engine.IO. One instance lives on each shard and
/// hears only the sessions that shard owns, so it needs no locks.
pub trait Handler: 'static {
    /// A session opened (its handshake was answered).
    fn on_open(&self, socket: &Socket);
    /// A message arrived.
    fn on_message(&self, socket: &Socket, data: Data);
    /// The session moved from polling to WebSocket (on the shard that
    /// owns it, before any message that came over the WebSocket).
    fn on_upgrade(&self, _socket: &Socket) {}
    /// The session closed; `socket.send` no longer delivers.
    fn on_close(&self, socket: &Socket, reason: CloseReason);
    /// The server is stopping. Called on every shard; then, once every
    /// shard has done so and the messages they posted meanwhile have
    /// arrived, [`Handler::on_shutdown_late`]; then the sessions close
    /// ("server shutting down") once what is queued is written.
    fn on_shutdown(&self) {}
    /// The second step of stopping (see [`Handler::on_shutdown`]).
    fn on_shutdown_late(&self) {}
    /// A message another shard's handler posted to this shard (the shard
    /// runtime's `context::post`).
    /// Return it when it is not for this handler (several endpoints may share a server).
    fn on_shard_message(&self, msg: Box<dyn Any + Send>) -> Option<Box<dyn Any + Send>> {
        Some(msg)
    }
}

/// Builds the [`Handler`] of each shard, given the shard index.
pub type HandlerFactory = Arc<dyn Fn(usize) -> Rc<dyn Handler> + Send + Sync>;
