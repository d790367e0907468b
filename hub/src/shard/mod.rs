//! The IO layer: one glommio executor per shard, its listener, the HTTP
//! connections, the long-polling and WebSocket transports around the sans-IO
//! sessions, and the channel mesh between shards.

pub mod accept;
mod buffers;
mod conn;
pub mod context;
mod deferred;
mod deflated;
mod flusher;
mod http_compression;
pub(crate) mod memory;
mod mesh;
mod per_ip;
mod polling;
mod readiness;
mod ring;
mod runtime;
mod shutdown;
mod signals;
mod state;
pub(crate) mod stream;
pub(crate) mod timer;
pub(crate) mod tls;
mod websocket;

pub(crate) use runtime::spawn_contained;
pub use runtime::{LocalTask, RunningServer, Server, ServerError, ShardTask, ShutdownHandle};
pub use signals::{reload_on_hangup, stop_on_signals};
