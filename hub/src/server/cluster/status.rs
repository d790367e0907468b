//! The link's state and counters, read by `/api/stats`, `/metrics` and
//! `/readyz` from any thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// The state of a node's link to Redis: shared by its shards and its admin API.
#[derive(Debug)]
pub struct ClusterStatus {
    uid: String,
    connected: AtomicBool,
    nodes: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) publish_failed: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) pending_bytes: AtomicU64,
    pub(crate) requests_timed_out: AtomicU64,
}

/// The link's state at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSnapshot {
    /// This node's id on the channels (the adapter's `uid`).
    pub uid: String,
    /// Both connections to Redis are up and subscribed.
    pub connected: bool,
    /// Nodes subscribed to the `/` request channel, this one included, at
    /// the last count (every 2 s while connected).
    pub nodes: u64,
    /// Publishes (broadcasts, requests, answers) Redis took: written and answered.
    pub published: u64,
    /// Publishes dropped: Redis was unreachable, or the queue to it full.
    pub publish_failed: u64,
    /// Messages heard from the other nodes.
    pub received: u64,
    /// Messages ignored as malformed.
    pub malformed: u64,
    /// Connections to Redis lost and made again.
    pub reconnects: u64,
    /// Bytes written to and read from Redis.
    pub bytes_out: u64,
    /// Bytes read from Redis.
    pub bytes_in: u64,
    /// Bytes waiting to be written to Redis.
    pub pending_bytes: u64,
    /// Requests to the other nodes that ended at their timeout.
    pub requests_timed_out: u64,
}

impl ClusterStatus {
    pub(crate) fn new(uid: String) -> ClusterStatus {
        ClusterStatus {
            uid,
            connected: AtomicBool::new(false),
            nodes: AtomicU64::new(0),
            published: AtomicU64::new(0),
            publish_failed: AtomicU64::new(0),
            received: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            pending_bytes: AtomicU64::new(0),
            requests_timed_out: AtomicU64::new(0),
        }
    }

    /// This node's id on the channels.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Whether the link to Redis is up.
    pub fn connected(&self) -> bool {
        self.connected.load(Relaxed)
    }

    pub(crate) fn set_connected(&self, up: bool) {
        self.connected.store(up, Relaxed);
    }

    pub(crate) fn set_nodes(&self, nodes: u64) {
        self.nodes.store(nodes, Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Every figure at once.
    pub fn snapshot(&self) -> ClusterSnapshot {
        ClusterSnapshot {
            uid: self.uid.clone(),
            connected: self.connected(),
            nodes: self.nodes.load(Relaxed),
            published: self.published.load(Relaxed),
            publish_failed: self.publish_failed.load(Relaxed),
            received: self.received.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            pending_bytes: self.pending_bytes.load(Relaxed),
            requests_timed_out: self.requests_timed_out.load(Relaxed),
        }
    }
}
