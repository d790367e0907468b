//! The Engine.IO server API: what an application implements ([`Handler`])
//! and holds ([`Socket`]), the way the `engine.io` npm package can be used
//! without Socket.IO.

mod config;
mod echo;
mod handler;
mod host;
mod pairs;
mod socket;
mod write_queue;

pub use config::{DeflateConfig, EngineConfig, ServerConfig, TlsConfig};
pub use echo::Echo;
pub use handler::{Handler, HandlerFactory};
pub(crate) use host::SessionHost;
pub use pairs::Pairs;
pub(crate) use socket::SessionEntry;
pub use socket::{HandshakeInfo, Socket, Tally};
pub(crate) use write_queue::{BroadcastSends, Frames, WriteQueue};

pub use crate::engineio::session::CloseReason;
pub use crate::engineio::{Data, ProtocolVersion, TransportKind};
