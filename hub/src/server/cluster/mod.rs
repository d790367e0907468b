//! A cluster of hub nodes (and Node socket.io servers) on Redis, speaking
//! the wire format of Node's `@socket.io/redis-adapter` (classic mode).
//!
//! Each process has one link to Redis, on shard 0 ([`link`]): one
//! subscriber connection and one connection for commands, whose publishes
//! are pipelined. Every shard encodes what it publishes (a broadcast, a
//! room operation, a request) and posts the command to shard 0; a message
//! heard from Redis is decoded once on shard 0, its packet encoded once and
//! delivered there and posted once to each other shard, as a broadcast of
//! this process is. The shard adapter is untouched: the cluster wraps it
//! in [`super::broadcast::BroadcastOperator`] and the namespace API.

pub(crate) mod link;
mod node_requests;
mod shard_side;
mod status;

use std::sync::Arc;
use std::time::Duration;

pub use status::{ClusterSnapshot, ClusterStatus};

use crate::redis::message::{Outbound, Publish};
use crate::redis::wire::Channels;
use crate::redis::{Dialect, RedisUrl};

/// How a server joins a cluster: `Io::builder().cluster(ClusterConfig::new(url))`,
/// and the link's task on the server (see `docs/cluster.md`).
///
/// ```no_run
/// use hub::engine::{EngineConfig, ServerConfig};
/// use hub::redis::RedisUrl;
/// use hub::server::{Args, ClusterConfig, Io};
/// use hub::shard::Server;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let url = RedisUrl::parse("redis://127.0.0.1:6379")?;
/// let io = Io::builder()
///     .cluster(ClusterConfig::new(url))
///     .of("/", |nsp| {
///         nsp.on_server_side("ping", |_nsp, _args, ack| {
///             if let Some(ack) = ack {
///                 ack.send(Args::new().arg("pong"));
///             }
///         })
///     })
///     .build();
/// Server::new(ServerConfig::default())
///     .endpoint(EngineConfig::new("/socket.io/"), io.handler_factory())
///     .task(io.cluster_task())
///     .start()?
///     .join()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The Redis server.
    pub url: RedisUrl,
    /// Channel prefix (`key` in Node's adapter): `socket.io` by default.
    pub prefix: String,
    /// How long a request to the other nodes (fetch sockets, server-side
    /// emit with ack) waits for their answers: 5 s, as Node's adapter.
    pub request_timeout: Duration,
    /// How long connecting to Redis may take.
    pub connect_timeout: Duration,
    /// Most bytes of commands waiting to be written to Redis; past it a
    /// publish is dropped and counted (`failed`), never queued.
    pub max_pending_bytes: usize,
    /// Longest wait between two attempts to reconnect (the wait doubles
    /// from 100 ms up to it).
    pub max_backoff: Duration,
    /// Classic (`createAdapter`) or sharded (`createShardedAdapter`).
    pub dialect: Dialect,
}

impl ClusterConfig {
    /// Defaults as Node's adapter has them, on `url`.
    pub fn new(url: RedisUrl) -> ClusterConfig {
        ClusterConfig {
            url,
            prefix: "socket.io".to_string(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            max_pending_bytes: 16 * 1024 * 1024,
            max_backoff: Duration::from_secs(5),
            dialect: Dialect::Classic,
        }
    }
}

/// What every shard of a clustered server shares.
pub(crate) struct ClusterShared {
    pub config: ClusterConfig,
    pub channels: Channels,
    pub status: Arc<ClusterStatus>,
}

impl ClusterShared {
    pub fn new(config: ClusterConfig) -> ClusterShared {
        ClusterShared {
            channels: Channels {
                prefix: config.prefix.clone(),
            },
            status: Arc::new(ClusterStatus::new(match config.dialect {
                Dialect::Classic => crate::redis::wire::new_id(),
                Dialect::Sharded { .. } => crate::redis::wire::new_hex_id(),
            })),
            config,
        }
    }

    pub fn uid(&self) -> &str {
        self.status.uid()
    }

    pub fn dialect(&self) -> Dialect {
        self.config.dialect
    }

    /// A message in the cluster's dialect, from this node.
    pub fn encode(&self, nsp: &str, msg: Outbound<'_>) -> Publish {
        self.config
            .dialect
            .encode(&self.channels, self.uid(), nsp, msg)
    }

    /// A new request id, as the dialect's Node adapter makes them.
    pub fn new_request_id(&self) -> String {
        match self.config.dialect {
            Dialect::Classic => crate::redis::wire::new_id(),
            Dialect::Sharded { .. } => crate::redis::wire::new_hex_id(),
        }
    }
}

/// The shard that holds the link to Redis.
pub(crate) const LINK_SHARD: usize = 0;

/// What a shard asks of the link on shard 0, and its answers.
pub(crate) enum ClusterOp {
    /// RESP bytes of a command (a `PUBLISH`) to write.
    Command(Vec<u8>),
    /// The sending shard now has (true) or no longer has the namespace.
    NamespaceHeld(bool),
    /// The sending shard now has (true) or no longer has a room of the
    /// namespace (reported in the sharded dialect's dynamic mode only).
    RoomHeld(String, bool),
    /// Ask the other nodes; the answers go back to `origin`.
    Request {
        origin: usize,
        request: u64,
        kind: link::NodeRequest,
    },
    Reply {
        request: u64,
        responses: Vec<crate::redis::wire::WireResponse>,
        expected: usize,
    },
    /// Ask the other nodes to deliver a broadcast with acks, and relay
    /// their counts and acks to the collector of `request` on `origin`.
    BroadcastAck {
        origin: usize,
        request: u64,
        /// `[event, ...args]`.
        data: Vec<serde_json::Value>,
        attachments: Vec<bytes::Bytes>,
        target: crate::redis::wire::WireTarget,
        timeout: Duration,
    },
}

impl ClusterOp {
    pub fn payload_bytes(&self) -> usize {
        match self {
            ClusterOp::Command(bytes) => bytes.len(),
            ClusterOp::RoomHeld(room, _) => room.len(),
            ClusterOp::BroadcastAck { attachments, .. } => {
                256 + attachments.iter().map(|a| a.len()).sum::<usize>()
            }
            ClusterOp::Reply { responses, .. } => responses.len() * 256,
            _ => 0,
        }
    }
}

/// The answer to a server-side emit with an ack: one value (and its
/// binary attachments), sent back to the node that asked.
pub struct ServerSideAck {
    pub(crate) send: AckSender,
}

/// Sends a server-side emit's answer back to the node that asked.
pub(crate) type AckSender = Box<dyn FnOnce(serde_json::Value, Vec<bytes::Bytes>)>;

/// Answers to a request from the other nodes, and how many were expected.
pub(crate) type NodeAnswers = (Vec<crate::redis::wire::WireResponse>, usize);

impl ServerSideAck {
    /// Answer with `args`' first value (Node's adapter carries one).
    pub fn send(self, args: super::Args) {
        let (mut values, attachments) = args.into_parts();
        let value = if values.is_empty() {
            serde_json::Value::Null
        } else {
            values.swap_remove(0)
        };
        (self.send)(value, attachments);
    }
}

/// A server-side emit with acks that did not hear from every node in time.
#[derive(Debug, thiserror::Error)]
#[error("timeout reached: only {} responses received out of {expected}", responses.len())]
pub struct ServerSideEmitTimeout {
    /// The answers that came.
    pub responses: Vec<serde_json::Value>,
    /// How many nodes were asked.
    pub expected: usize,
}
