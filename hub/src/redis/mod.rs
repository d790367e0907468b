//! Redis, as hub's nodes use it to form a cluster with each other and with
//! Node socket.io servers: the connection URL, RESP commands and replies
//! over a glommio stream, and the wire format of Node's
//! `@socket.io/redis-adapter` (msgpack as `notepack.io` writes it, and
//! JSON). Nothing here knows the Socket.IO server: `server::cluster`
//! drives it.

pub(crate) mod conn;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod message;
pub(crate) mod msgpack;
#[cfg(test)]
pub(crate) mod recorded;
pub(crate) mod resp;
pub(crate) mod url;
pub(crate) mod wire;

pub use message::Dialect;
pub use url::{RedisUrl, RedisUrlError};
