//! Broadcasts with acknowledgements (socket.io's
//! `io.timeout(ms).emit(event, ..., (err, responses) => ..)`): the packet is
//! encoded once with one ack id, each recipient on every shard waits for
//! its client's ack, and the shard that emitted gathers the answers:
//! every shard's recipient count, then their acks, and in a cluster each
//! other node's count and acks, until all have come or the timeout.

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::timer::Timer;

use super::adapter::{ClusterBody, ClusterMsg, Target};
use super::args::Args;
use super::cluster::{ClusterOp, ClusterShared, LINK_SHARD};
use super::namespace::Nsp;
use super::outgoing::{self, Outgoing};
use super::shard::SioShard;
use super::socket::SocketInner;
use crate::redis::wire::WireTarget;
use crate::shard::context;

/// Ack ids of broadcasts come from one counter per process, far above the
/// ids a socket gives its own emits (from 0), so the two never meet.
static NEXT_ACK_ID: AtomicU64 = AtomicU64::new(1 << 32);

fn next_ack_id() -> u64 {
    NEXT_ACK_ID.fetch_add(1, Ordering::Relaxed)
}

/// Where a recipient's ack goes: the collector of `request` on shard `origin`.
pub(crate) struct AckRelay {
    pub origin: usize,
    pub request: u64,
    /// After it the ack is of no use: the entry may be dropped.
    pub deadline: Instant,
}

impl AckRelay {
    pub fn deliver(&self, shard: &SioShard, args: Args) {
        shard.broadcast_ack_event(self.origin, self.request, AckEvent::Ack(args));
    }
}

/// What the collector hears.
pub(crate) enum AckEvent {
    /// One shard of this node queued the packet to this many sockets.
    ShardCount(usize),
    /// This many other nodes will report (0 without a cluster).
    RemoteServers(usize),
    /// One other node's recipient count.
    RemoteCount(usize),
    /// A client's answer.
    Ack(Args),
}

/// Some recipients did not answer in time.
#[derive(Debug, thiserror::Error)]
#[error("operation has timed out: {} of {expected} acknowledgements", responses.len())]
pub struct BroadcastAckTimeout {
    /// The answers that came, in arrival order.
    pub responses: Vec<Args>,
    /// How many were expected when the time ran out (recipients counted so far).
    pub expected: usize,
}

/// A broadcast with acks, started: its collector's events.
pub(crate) struct AckStart {
    pub request: u64,
    pub events: LocalReceiver<AckEvent>,
    /// How many shards of this node report a count.
    pub shards: usize,
}

/// Encode, deliver on every shard (and node, with `cluster`), and register
/// the collector.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start(
    shard: &Rc<SioShard>,
    nsp: &Rc<Nsp>,
    target: Target,
    exclude: Option<&SocketInner>,
    event: &str,
    args: &Args,
    compress: Option<bool>,
    timeout: Duration,
    cluster: Option<(Arc<ClusterShared>, WireTarget)>,
) -> AckStart {
    let request = shard.next_request();
    let (tx, events) = local_channel::new_unbounded();
    shard.broadcast_acks.borrow_mut().insert(request, tx);
    let id = next_ack_id();
    let packet = outgoing::event(&nsp.name, event, args, Some(id)).compress(compress);
    let origin = shard.shard_id();
    let relay = Rc::new(AckRelay {
        origin,
        request,
        deadline: Instant::now() + timeout,
    });
    let count = walk(shard, nsp, &target, exclude, &packet, id, &relay);
    shard.broadcast_ack_event(origin, request, AckEvent::ShardCount(count));
    let peers = shard.adapter.peers(&target);
    for peer in &peers {
        let body = ClusterBody::BroadcastWithAck {
            target: target.clone(),
            packet: packet.clone(),
            id,
            origin,
            request,
            timeout,
        };
        let bytes = packet.text.len();
        let msg = ClusterMsg {
            instance: shard.instance(),
            nsp: nsp.name.clone(),
            body,
        };
        context::post_sized(*peer, Box::new(msg), bytes);
    }
    match cluster {
        Some((_, wire_target)) => {
            let (values, attachments) = args.clone().into_parts();
            let mut data = Vec::with_capacity(values.len() + 1);
            data.push(serde_json::Value::from(event));
            data.extend(values);
            shard.cluster_op(
                LINK_SHARD,
                &nsp.name,
                ClusterOp::BroadcastAck {
                    origin,
                    request,
                    data,
                    attachments,
                    target: wire_target,
                    timeout,
                },
            );
        }
        None => shard.broadcast_ack_event(origin, request, AckEvent::RemoteServers(0)),
    }
    AckStart {
        request,
        events,
        shards: peers.len() + 1,
    }
}

/// Queue `packet` to the target's sockets here, each waiting for its ack.
pub(crate) fn walk(
    shard: &SioShard,
    nsp: &Nsp,
    target: &Target,
    exclude: Option<&SocketInner>,
    packet: &Outgoing,
    id: u64,
    relay: &Rc<AckRelay>,
) -> usize {
    shard
        .adapter
        .broadcast_each(nsp, target, exclude, packet, |socket| {
            socket.expect_broadcast_ack(id, relay)
        })
}

/// Forgets a collector when its waiter ends.
pub(crate) struct Forget {
    pub shard: Rc<SioShard>,
    pub request: u64,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.shard.broadcast_acks.borrow_mut().remove(&self.request);
    }
}

/// Gather the answers: all of them, or what came within `timeout`.
pub(crate) async fn collect(
    shard: Rc<SioShard>,
    start: AckStart,
    timeout: Duration,
) -> Result<Vec<Args>, BroadcastAckTimeout> {
    let _forget = Forget {
        shard,
        request: start.request,
    };
    let deadline = Timer::new(timeout);
    futures_lite::pin!(deadline);
    let mut tally = Tally::default();
    let mut responses = Vec::new();
    loop {
        if tally.complete(start.shards, responses.len()) {
            return Ok(responses);
        }
        let next = future::or(async { start.events.recv().await }, async {
            (&mut deadline).await;
            None
        })
        .await;
        match next {
            Some(AckEvent::Ack(args)) => responses.push(args),
            Some(event) => tally.count(&event),
            None => {
                return Err(BroadcastAckTimeout {
                    expected: tally.clients,
                    responses,
                })
            }
        }
    }
}

/// Counts heard so far.
#[derive(Default)]
pub(crate) struct Tally {
    pub shards: usize,
    pub clients: usize,
    pub remote_servers: Option<usize>,
    pub remote_heard: usize,
}

impl Tally {
    pub fn count(&mut self, event: &AckEvent) {
        match event {
            AckEvent::ShardCount(n) => {
                self.shards += 1;
                self.clients += n;
            }
            AckEvent::RemoteServers(n) => self.remote_servers = Some(*n),
            AckEvent::RemoteCount(n) => {
                self.remote_heard += 1;
                self.clients += n;
            }
            AckEvent::Ack(_) => {}
        }
    }

    /// Every shard and node has counted, and every recipient answered.
    pub fn complete(&self, shards: usize, acks: usize) -> bool {
        self.shards == shards
            && self.remote_servers == Some(self.remote_heard)
            && acks >= self.clients
    }

    /// Every shard of this node has counted.
    pub fn local_counted(&self, shards: usize) -> bool {
        self.shards == shards
    }
}

impl SioShard {
    /// Send a collector's event to shard `origin` (here when it is this one).
    pub(crate) fn broadcast_ack_event(&self, origin: usize, request: u64, event: AckEvent) {
        if origin == self.shard_id() {
            if let Some(tx) = self.broadcast_acks.borrow().get(&request) {
                let _ = tx.try_send(event);
            }
            return;
        }
        let msg = ClusterMsg {
            instance: self.instance(),
            nsp: String::new(),
            body: ClusterBody::BroadcastAckEvent { request, event },
        };
        context::post_sized(origin, Box::new(msg), 64);
    }
}
