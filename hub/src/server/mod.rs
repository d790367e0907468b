//! The Socket.IO server API, on top of the Engine.IO layer: namespaces,
//! middleware, sockets, acknowledgements, rooms and broadcasts across shards.
//!
//! ```no_run
//! use hub::engine::{EngineConfig, ServerConfig};
//! use hub::server::{Args, Io};
//! use hub::shard::Server;
//!
//! let io = Io::builder()
//!     .of("/", |nsp| {
//!         nsp.on_connection(|socket| {
//!             socket.on("chat", |socket, args, ack| {
//!                 let _ = socket.to("lobby").emit("chat", args.clone());
//!                 if let Some(ack) = ack {
//!                     ack.send(Args::new().arg("delivered"));
//!                 }
//!             });
//!             socket.join("lobby");
//!         })
//!     })
//!     .build();
//! Server::new(ServerConfig::default())
//!     .endpoint(EngineConfig::new("/socket.io/"), io.handler_factory())
//!     .start()
//!     .expect("start")
//!     .join()
//!     .expect("run");
//! ```

use std::rc::Weak;

mod adapter;
#[cfg(test)]
mod allocation_tests;
mod args;
mod broadcast;
mod broadcast_ack;
mod client;
pub(crate) mod cluster;
#[cfg(test)]
mod flood_tests;
mod handshake;
mod io;
mod namespace;
mod observer;
mod outgoing;
mod reason;
mod recovery;
mod shard;
mod socket;
mod stats;
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;

pub use args::Args;
pub use broadcast::{BroadcastOperator, RemoteSocket};
pub use broadcast_ack::BroadcastAckTimeout;
pub use cluster::{
    ClusterConfig, ClusterSnapshot, ClusterStatus, ServerSideAck, ServerSideEmitTimeout,
};
pub use handshake::{Handshake, RequestInfo};
pub(crate) use io::WeakLocalIo;
pub use io::{
    AsyncNamespaceMiddleware, ConnectError, Io, IoBuilder, IoSettings, LocalIo, MiddlewareFuture,
    NamespaceBuilder,
};
pub use namespace::Namespace;
pub use observer::{Observer, ObserverFactory};
pub use reason::DisconnectReason;
pub use recovery::RecoveryConfig;
pub use socket::{
    Ack, AckError, ClientInfo, EmitError, JoinError, ListenerId, Socket, SocketEmitter,
};
pub use stats::{NamespaceStats, ShardStats};

/// Run a future on the current shard (for awaiting acknowledgements or
/// server-wide queries from a handler). A panic in it ends it, is logged
/// and counted (`hub_panics_total`), and the shard goes on. A task spawned
/// from a socket's handler (or from a task that one spawned) belongs to
/// that socket: its panic closes the socket's connection, as a panic in
/// the handler itself would, and the log line names the socket.
pub fn spawn_local(future: impl std::future::Future<Output = ()> + 'static) {
    let owner = socket::running_for();
    glommio::spawn_local(async move {
        let mut future = Box::pin(future);
        let task = {
            let owner = owner.clone();
            futures_lite::future::poll_fn(move |cx| {
                let socket = owner.as_ref().and_then(Weak::upgrade);
                socket::as_code_of(socket.as_ref(), || future.as_mut().poll(cx))
            })
        };
        if let Err(panic) = crate::panics::CatchUnwind::new(task).await {
            match owner.and_then(|owner| owner.upgrade()) {
                Some(socket) => socket.panicked("spawned task", &panic),
                None => tracing::error!(%panic, "a task spawned by the application panicked"),
            }
        }
    })
    .detach();
}
