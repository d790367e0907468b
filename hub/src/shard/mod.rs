//! The IO layer: one glommio executor per shard, its listener, the HTTP
//! connections, the long-polling and WebSocket transports around the sans-IO
//! sessions, and the channel mesh between shards.

mod buffers;
mod conn;
pub mod context;
mod mesh;
mod polling;
mod runtime;
mod shutdown;
pub(crate) mod signal;
mod signals;
mod state;
pub(crate) mod timer;
mod websocket;

pub use runtime::{LocalTask, RunningServer, Server, ServerError, ShardTask, ShutdownHandle};
pub use signals::stop_on_signals;
