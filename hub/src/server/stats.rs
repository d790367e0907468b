//! What a Socket.IO server holds, per shard: connections by transport and
//! protocol, sockets and rooms per namespace.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use ahash::AHashMap;
use futures_lite::future;
use glommio::channels::local_channel::{self, LocalSender};
use glommio::timer::Timer;
use serde::Serialize;

use super::adapter::{ClusterBody, ClusterMsg};
use super::shard::SioShard;
use crate::engine::TransportKind;
use crate::shard::context;
use crate::socketio::Protocol;

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct NamespaceStats {
    pub sockets: usize,
    pub rooms: usize,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ShardStats {
    pub shard: usize,
    /// Engine.IO connections (clients).
    pub connections: usize,
    pub polling: usize,
    pub websocket: usize,
    /// Clients on Engine.IO v3 (Socket.IO v1/v2).
    pub eio3: usize,
    /// Clients on Engine.IO v4 (Socket.IO v3/v4).
    pub eio4: usize,
    pub namespaces: BTreeMap<String, NamespaceStats>,
    /// Sessions kept for connection-state recovery.
    pub recovery_sessions: usize,
    /// Bytes of packets kept for connection-state recovery.
    pub recovery_bytes: usize,
}

const STATS_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) type PendingStats = Rc<RefCell<AHashMap<u64, LocalSender<ShardStats>>>>;

impl SioShard {
    pub(crate) fn local_stats(&self) -> ShardStats {
        let mut stats = ShardStats {
            shard: self.shard_id(),
            ..ShardStats::default()
        };
        for client in self.clients_snapshot() {
            stats.connections += 1;
            match client.conn.transport() {
                TransportKind::Polling => stats.polling += 1,
                TransportKind::WebSocket => stats.websocket += 1,
            }
            match client.protocol {
                Protocol::V4 => stats.eio3 += 1,
                Protocol::V5 => stats.eio4 += 1,
            }
        }
        if let Some(recovery) = &self.adapter.recovery {
            stats.recovery_sessions = recovery.session_count();
            stats.recovery_bytes = recovery.bytes_held();
        }
        for nsp in self.namespaces_snapshot() {
            stats.namespaces.insert(
                nsp.name.clone(),
                NamespaceStats {
                    sockets: nsp.sockets.borrow().len(),
                    rooms: nsp.rooms.borrow().len(),
                },
            );
        }
        stats
    }

    /// Every shard's stats, gathered over the mesh (a shard that does not
    /// answer within 5 s is left out).
    pub(crate) fn all_stats(self: &Rc<Self>) -> impl Future<Output = Vec<ShardStats>> {
        let mut all = vec![self.local_stats()];
        let count = context::shard_count().unwrap_or(1);
        let request = self.next_request();
        let (tx, rx) = local_channel::new_unbounded();
        self.pending_stats.borrow_mut().insert(request, tx);
        for shard in (0..count).filter(|s| *s != self.shard_id()) {
            let msg = ClusterMsg {
                instance: self.instance(),
                nsp: String::new(),
                body: ClusterBody::Stats {
                    origin: self.shard_id(),
                    request,
                },
            };
            context::post(shard, Box::new(msg));
        }
        let pending = self.pending_stats.clone();
        async move {
            for _ in 1..count {
                let next = future::or(async { rx.recv().await }, async {
                    Timer::new(STATS_TIMEOUT).await;
                    None
                })
                .await;
                match next {
                    Some(stats) => all.push(stats),
                    None => break,
                }
            }
            pending.borrow_mut().remove(&request);
            all.sort_by_key(|s| s.shard);
            all
        }
    }
}
