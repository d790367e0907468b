//! The link to Redis, on shard 0: one connection for commands (publishes
//! pipelined: whatever is queued goes in one write, then its replies are
//! read), one subscribed connection, a reconnect loop with capped
//! exponential backoff, and the requests to the other nodes waiting for
//! their answers.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use ahash::{AHashMap, AHashSet};
use bytes::{Bytes, BytesMut};
use futures_lite::future;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::timer::Timer;

use super::node_requests;
use super::status::ClusterStatus;
use super::ClusterShared;
use crate::redis::message::{Dialect, Inbound, Outbound};
use crate::redis::resp::{self, count_of, Push, RespConn, RespError};
use crate::redis::wire::{self, RequestBody, WireRequest, WireResponse};
use crate::server::broadcast_ack::AckEvent;
use crate::server::shard::SioShard;
use crate::server::Args;
use crate::signal::Signal;

/// How often the nodes on the `/` request channel are counted (and Redis
/// is known to be alive: see `LIVENESS_TIMEOUT`).
const COUNT_NODES_EVERY: Duration = Duration::from_secs(2);
/// A count not answered within this time means Redis is gone.
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(5);
/// Most requests from other nodes being answered at once (fetches, and
/// broadcasts with acks waiting for theirs); past it one is ignored (and
/// counted as failed).
pub(super) const MAX_REQUESTS_IN_FLIGHT: usize = 256;

/// What a request to the other nodes asks.
pub(crate) enum NodeRequest {
    Fetch(wire::WireTarget),
    AllRooms,
    ServerSideEmit {
        data: Vec<serde_json::Value>,
        attachments: Vec<Bytes>,
    },
}

pub(crate) struct Link {
    me: Weak<Link>,
    pub shared: Arc<ClusterShared>,
    sio: Weak<SioShard>,
    /// RESP commands not yet written, and for each, who waits for its reply.
    queue: RefCell<BytesMut>,
    waiters: RefCell<Vec<Option<LocalSender<Option<i64>>>>>,
    ready: Signal,
    up: Cell<bool>,
    /// Namespaces to be subscribed to, with how many holders each has
    /// (shards that have it, and the server for a declared one).
    namespaces: RefCell<AHashMap<String, usize>>,
    /// Rooms with a channel of their own (sharded, dynamic mode), with how
    /// many shards have each.
    rooms: RefCell<AHashMap<(String, String), usize>>,
    subscriptions_changed: Signal,
    /// Raised when the subscriptions of a new connection are confirmed.
    subscribed: Signal,
    /// Our requests waiting for answers, by request id.
    pending: RefCell<AHashMap<String, LocalSender<WireResponse>>>,
    pub(crate) requests_in_flight: Cell<usize>,
    /// Publishes dropped since the last log line about it.
    unlogged_failures: Cell<u64>,
}

impl Link {
    pub fn new(shared: Arc<ClusterShared>, sio: &Rc<SioShard>, declared: &[String]) -> Rc<Link> {
        let namespaces = declared.iter().map(|n| (n.clone(), 1)).collect();
        Rc::new_cyclic(|me| Link {
            me: me.clone(),
            shared,
            sio: Rc::downgrade(sio),
            queue: RefCell::new(BytesMut::new()),
            waiters: RefCell::new(Vec::new()),
            ready: Signal::new(),
            up: Cell::new(false),
            namespaces: RefCell::new(namespaces),
            rooms: RefCell::new(AHashMap::new()),
            subscriptions_changed: Signal::new(),
            subscribed: Signal::new(),
            pending: RefCell::new(AHashMap::new()),
            requests_in_flight: Cell::new(0),
            unlogged_failures: Cell::new(0),
        })
    }

    fn status(&self) -> &ClusterStatus {
        &self.shared.status
    }

    /// Queue a command (its RESP bytes); `waiter` hears its integer reply,
    /// or None if it never came. False, and counted, when it was dropped:
    /// Redis is unreachable or the queue is full.
    pub fn enqueue(&self, command: &[u8], waiter: Option<LocalSender<Option<i64>>>) -> bool {
        let mut queue = self.queue.borrow_mut();
        if !self.up.get() || queue.len() + command.len() > self.shared.config.max_pending_bytes {
            drop(queue);
            if waiter.is_some() {
                // A count, not a publish: its asker hears None.
                return false;
            }
            ClusterStatus::add(&self.status().publish_failed, 1);
            let failures = self.unlogged_failures.get() + 1;
            self.unlogged_failures.set(failures);
            if failures == 1 {
                tracing::warn!(
                    connected = self.up.get(),
                    "a cluster publish was dropped: Redis is unreachable or too slow (counted in publish_failed)"
                );
            }
            return false;
        }
        queue.extend_from_slice(command);
        self.status()
            .pending_bytes
            .store(queue.len() as u64, std::sync::atomic::Ordering::Relaxed);
        drop(queue);
        self.waiters.borrow_mut().push(waiter);
        self.ready.notify();
        true
    }

    /// Publish `msg` of namespace `nsp` in the cluster's dialect.
    pub fn send(&self, nsp: &str, msg: Outbound<'_>) -> bool {
        match self.shared.encode(nsp, msg).to_resp() {
            Some(command) => self.enqueue(&command, None),
            None => false,
        }
    }

    /// How many nodes serve namespace `nsp`, this one included, as Node's
    /// adapter counts them (`PUBSUB NUMSUB` of the request channel, or
    /// `SHARDNUMSUB` of the namespace's channel); None: Redis is unreachable.
    pub async fn server_count(&self, nsp: &str) -> Option<i64> {
        let (which, channel) = self
            .shared
            .dialect()
            .server_count(&self.shared.channels, nsp);
        let mut command = BytesMut::new();
        resp::command(&mut command, &[b"PUBSUB", which, channel.as_bytes()]);
        let (tx, rx) = local_channel::new_bounded(1);
        if !self.enqueue(&command, Some(tx)) {
            return None;
        }
        rx.recv().await.flatten()
    }

    /// A shard has (`up`) or no longer has a namespace.
    pub fn namespace_held(&self, nsp: &str, up: bool) {
        let mut namespaces = self.namespaces.borrow_mut();
        if up {
            let count = namespaces.entry(nsp.to_string()).or_insert(0);
            *count += 1;
            if *count == 1 {
                self.subscriptions_changed.notify();
            }
        } else if let Some(count) = namespaces.get_mut(nsp) {
            *count -= 1;
            if *count == 0 {
                namespaces.remove(nsp);
                self.subscriptions_changed.notify();
            }
        }
    }

    /// Ask the other nodes; their answers, as many as `PUBSUB NUMSUB`
    /// counts other subscribers of the request channel, or what came
    /// before the request timeout.
    pub async fn request(&self, nsp: &str, kind: NodeRequest) -> (Vec<WireResponse>, usize) {
        let Some(subscribers) = self.server_count(nsp).await else {
            return (Vec::new(), 0);
        };
        let expected = (subscribers - 1).max(0) as usize;
        if expected == 0 {
            return (Vec::new(), 0);
        }
        let mut asking = Asking::open(self, self.shared.config.request_timeout);
        let id = asking.id.clone();
        let msg = match &kind {
            NodeRequest::Fetch(target) => Outbound::Fetch {
                request_id: &id,
                target,
            },
            NodeRequest::AllRooms => Outbound::AllRooms { request_id: &id },
            NodeRequest::ServerSideEmit { data, attachments } => Outbound::ServerSideEmit {
                request_id: Some(&id),
                data,
                attachments,
            },
        };
        let mut responses = Vec::with_capacity(expected);
        if self.send(nsp, msg) {
            while responses.len() < expected {
                match asking.next().await {
                    Some(response) => responses.push(response),
                    None => {
                        ClusterStatus::add(&self.status().requests_timed_out, 1);
                        tracing::debug!(
                            nsp,
                            got = responses.len(),
                            expected,
                            "a cluster request ended at its timeout"
                        );
                        break;
                    }
                }
            }
        }
        (responses, expected)
    }

    /// Ask the other nodes to deliver a broadcast with acks; relay how many
    /// will answer, each one's count, and each ack to the collector.
    #[allow(clippy::too_many_arguments)]
    pub async fn broadcast_with_ack(
        &self,
        sio: &SioShard,
        nsp: &str,
        origin: usize,
        request: u64,
        data: Vec<serde_json::Value>,
        attachments: Vec<Bytes>,
        target: wire::WireTarget,
        timeout: Duration,
    ) {
        let servers = match self.server_count(nsp).await {
            Some(n) => (n - 1).max(0) as usize,
            None => 0,
        };
        sio.broadcast_ack_event(origin, request, AckEvent::RemoteServers(servers));
        if servers == 0 {
            return;
        }
        let mut asking = Asking::open(self, timeout);
        let msg = Outbound::BroadcastWithAck {
            request_id: &asking.id,
            data: &data,
            attachments: &attachments,
            target: &target,
            timeout_ms: timeout.as_millis() as u64,
        };
        if self.send(nsp, msg) {
            while let Some(response) = asking.next().await {
                let kind = response
                    .body
                    .get("type")
                    .and_then(serde_json::Value::as_u64);
                let event = match kind {
                    Some(wire::kind::BROADCAST_CLIENT_COUNT) => {
                        let count = response
                            .body
                            .get("clientCount")
                            .and_then(serde_json::Value::as_u64)
                            .unwrap_or(0);
                        AckEvent::RemoteCount(count as usize)
                    }
                    Some(wire::kind::BROADCAST_ACK) => {
                        let mut body = response.body;
                        let mut values =
                            vec![body.remove("packet").unwrap_or(serde_json::Value::Null)];
                        let attachments = crate::redis::msgpack::keep_referenced(
                            &mut values,
                            response.attachments,
                        );
                        AckEvent::Ack(Args::from_parts(values, attachments))
                    }
                    _ => continue,
                };
                sio.broadcast_ack_event(origin, request, event);
            }
        }
    }

    /// Connect, serve, reconnect: forever (the shard's end drops it).
    pub async fn run(self: Rc<Link>) {
        let config = &self.shared.config;
        let mut backoff = Duration::from_millis(100);
        let mut failures: u64 = 0;
        loop {
            match self.connect().await {
                Ok((commands, subscriber)) => {
                    if failures > 0 {
                        ClusterStatus::add(&self.status().reconnects, 1);
                    }
                    backoff = Duration::from_millis(100);
                    tracing::info!(url = %config.url, uid = self.shared.uid(), "cluster: connected to Redis");
                    self.up.set(true);
                    let error = future::or(
                        self.command_loop(commands),
                        future::or(self.subscriber_loop(subscriber), self.count_nodes()),
                    )
                    .await;
                    self.up.set(false);
                    self.status().set_connected(false);
                    self.fail_queued();
                    tracing::warn!(%error, url = %config.url, "cluster: lost the connection to Redis; local delivery goes on, cluster publishes are dropped until it is back");
                    failures = 1;
                }
                Err(error) => {
                    failures += 1;
                    // The first failure, then one line every ten tries.
                    if failures == 1 || failures.is_multiple_of(10) {
                        tracing::warn!(%error, url = %config.url, attempts = failures, "cluster: cannot connect to Redis; serving local clients only, retrying");
                    }
                }
            }
            Timer::new(backoff).await;
            backoff = (backoff * 2).min(config.max_backoff);
        }
    }

    async fn connect(&self) -> Result<(RespConn, RespConn), RespError> {
        let config = &self.shared.config;
        let commands = crate::redis::conn::connect(&config.url, config.connect_timeout).await?;
        let subscriber = crate::redis::conn::connect(&config.url, config.connect_timeout).await?;
        Ok((commands, subscriber))
    }

    /// Drop what was queued for a connection that is gone.
    fn fail_queued(&self) {
        let dropped = publishes(self.waiters.borrow_mut().drain(..));
        self.queue.borrow_mut().clear();
        self.status()
            .pending_bytes
            .store(0, std::sync::atomic::Ordering::Relaxed);
        ClusterStatus::add(&self.status().publish_failed, dropped);
    }

    async fn command_loop(&self, mut conn: RespConn) -> RespError {
        loop {
            let listen = self.ready.listen();
            if self.queue.borrow().is_empty() {
                listen.await;
                continue;
            }
            let bytes = std::mem::take(&mut *self.queue.borrow_mut());
            let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
            self.status()
                .pending_bytes
                .store(0, std::sync::atomic::Ordering::Relaxed);
            if self.unlogged_failures.get() > 1 {
                tracing::warn!(
                    dropped = self.unlogged_failures.get(),
                    "cluster publishes were dropped while Redis was unreachable or slow"
                );
            }
            self.unlogged_failures.set(0);
            // Taken from the queue and not yet answered: whatever ends
            // this loop (an error, or the subscriber connection's error
            // cancelling it mid-await), the guard counts them as failed.
            let mut in_flight = InFlight {
                status: self.status(),
                waiters: waiters.into(),
            };
            if let Err(e) = conn.write(&bytes).await {
                return e;
            }
            ClusterStatus::add(&self.status().bytes_out, bytes.len() as u64);
            while !in_flight.waiters.is_empty() {
                let frame = match conn.read_frame().await {
                    Ok(frame) => frame,
                    // Written, but Redis never said it ran them.
                    Err(e) => return e,
                };
                let Some(waiter) = in_flight.waiters.pop_front() else {
                    break;
                };
                if waiter.is_none() {
                    ClusterStatus::add(&self.status().published, 1);
                }
                if let redis_protocol::resp2::types::BytesFrame::Error(e) = &frame {
                    tracing::warn!(error = %e, "cluster: Redis refused a command");
                }
                if let Some(waiter) = waiter {
                    let _ = waiter.try_send(count_of(&frame));
                }
            }
        }
    }

    async fn subscriber_loop(&self, mut conn: RespConn) -> RespError {
        // (subscribe command, channel) pairs held on this connection.
        let mut subscribed: AHashSet<(&'static [u8], String)> = AHashSet::new();
        // Subscriptions written and not confirmed yet: the node is up (and
        // counts itself among the nodes) once the first ones are.
        let mut unconfirmed = 0usize;
        let mut up = false;
        loop {
            let changed = self.subscriptions_changed.listen();
            let wanted = self.wanted_subscriptions();
            let mut commands = BytesMut::new();
            for (verb, channel) in &wanted {
                if subscribed.insert((verb, channel.clone())) {
                    resp::command(&mut commands, &[verb, channel.as_bytes()]);
                    unconfirmed += 1;
                }
            }
            subscribed.retain(|(verb, channel)| {
                if wanted.iter().any(|(v, c)| v == verb && c == channel) {
                    return true;
                }
                let undo: &[u8] = match *verb {
                    b"PSUBSCRIBE" => b"PUNSUBSCRIBE",
                    b"SSUBSCRIBE" => b"SUNSUBSCRIBE",
                    _ => b"UNSUBSCRIBE",
                };
                resp::command(&mut commands, &[undo, channel.as_bytes()]);
                false
            });
            if !commands.is_empty() {
                if let Err(e) = conn.write(&commands).await {
                    return e;
                }
            }
            loop {
                match conn.try_frame() {
                    Ok(Some(frame)) => {
                        if self.on_frame(frame) {
                            unconfirmed = unconfirmed.saturating_sub(1);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return e,
                }
            }
            if !up && unconfirmed == 0 {
                up = true;
                self.status().set_connected(true);
                self.subscribed.notify();
            }
            // Other shards slow to take what Redis sends: wait, as clients' input does.
            crate::shard::context::input_allowed().await;
            let more = future::or(async { conn.fill().await.map(|()| true) }, async {
                changed.await;
                Ok(false)
            })
            .await;
            if let Err(e) = more {
                return e;
            }
        }
    }

    /// The subscriptions the node needs now, as (command, channel).
    fn wanted_subscriptions(&self) -> Vec<(&'static [u8], String)> {
        let channels = &self.shared.channels;
        let uid = self.shared.uid();
        let mut wanted: Vec<(&'static [u8], String)> = Vec::new();
        for nsp in self.namespaces.borrow().keys() {
            match self.shared.dialect() {
                Dialect::Classic => {
                    wanted.push((b"PSUBSCRIBE", channels.broadcast_pattern(nsp)));
                    wanted.push((b"SUBSCRIBE", channels.request(nsp)));
                    wanted.push((b"SUBSCRIBE", channels.response(nsp)));
                    wanted.push((b"SUBSCRIBE", channels.own_response(nsp, uid)));
                }
                Dialect::Sharded { .. } => {
                    wanted.push((b"SSUBSCRIBE", channels.broadcast(nsp, &[])));
                    wanted.push((b"SSUBSCRIBE", channels.broadcast(nsp, &[uid.to_string()])));
                }
            }
        }
        for (nsp, room) in self.rooms.borrow().keys() {
            if let Some(channel) = self.shared.dialect().room_channel(channels, nsp, room) {
                wanted.push((b"SSUBSCRIBE", channel));
            }
        }
        wanted
    }

    /// A shard has (`up`) or no longer has a room (sharded, dynamic mode).
    pub fn room_held(&self, nsp: &str, room: &str, up: bool) {
        let mut rooms = self.rooms.borrow_mut();
        let key = (nsp.to_string(), room.to_string());
        if up {
            let count = rooms.entry(key).or_insert(0);
            *count += 1;
            if *count == 1 {
                self.subscriptions_changed.notify();
            }
        } else if let Some(count) = rooms.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                rooms.remove(&key);
                self.subscriptions_changed.notify();
            }
        }
    }

    /// Count the nodes every few seconds, once subscribed (so this one is
    /// counted); a count Redis does not answer in time means it is gone
    /// (frozen, or the network to it), and the link is made again.
    async fn count_nodes(&self) -> RespError {
        loop {
            let listen = self.subscribed.listen();
            if self.status().connected() {
                break;
            }
            listen.await;
        }
        loop {
            let count = future::or(async { Some(self.server_count("/").await) }, async {
                Timer::new(LIVENESS_TIMEOUT).await;
                None
            })
            .await;
            match count {
                Some(Some(nodes)) => self.status().set_nodes(nodes.max(0) as u64),
                Some(None) => {}
                None => {
                    return RespError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("Redis did not answer for {LIVENESS_TIMEOUT:?}"),
                    ))
                }
            }
            Timer::new(COUNT_NODES_EVERY).await;
        }
    }

    /// Handle a push from the subscribed connection; true for a
    /// subscription's confirmation.
    fn on_frame(self: &Link, frame: redis_protocol::resp2::types::BytesFrame) -> bool {
        let push = match resp::push_of(frame) {
            Ok(Push::Message { channel, payload }) => (channel, payload),
            Ok(Push::Subscribed) => return true,
            Ok(Push::Other) => return false,
            Err(error) => {
                ClusterStatus::add(&self.status().malformed, 1);
                tracing::debug!(%error, "cluster: ignoring a malformed push from Redis");
                return false;
            }
        };
        let (channel, payload) = push;
        ClusterStatus::add(&self.status().bytes_in, payload.len() as u64);
        let Some(sio) = self.sio.upgrade() else {
            return false;
        };
        let Ok(channel) = std::str::from_utf8(&channel) else {
            ClusterStatus::add(&self.status().malformed, 1);
            return false;
        };
        let inbound = self.shared.dialect().decode(
            &self.shared.channels,
            self.shared.uid(),
            channel,
            &payload,
        );
        match inbound {
            Ok(Inbound::Ignore) => {}
            Ok(Inbound::Broadcast(broadcast)) => {
                ClusterStatus::add(&self.status().received, 1);
                sio.deliver_cluster_broadcast(broadcast);
            }
            Ok(Inbound::Response(response)) => {
                if let Some(tx) = self.pending.borrow().get(&response.request_id) {
                    ClusterStatus::add(&self.status().received, 1);
                    let _ = tx.try_send(response);
                }
            }
            Ok(Inbound::Request {
                request:
                    WireRequest {
                        body: RequestBody::Unknown(kind),
                        ..
                    },
                ..
            }) => {
                ClusterStatus::add(&self.status().malformed, 1);
                tracing::debug!(
                    kind,
                    channel,
                    "cluster: ignoring a message of an unknown type"
                );
            }
            Ok(Inbound::Request { nsp, request }) => {
                ClusterStatus::add(&self.status().received, 1);
                if let Some(me) = self.me.upgrade() {
                    node_requests::handle(&me, &sio, &nsp, request);
                }
            }
            Err(error) => {
                ClusterStatus::add(&self.status().malformed, 1);
                tracing::debug!(%error, channel, "cluster: ignoring a malformed message");
            }
        }
        false
    }
}

/// How many of the commands waiting for replies are publishes (the others,
/// counts of the nodes, have someone waiting for their reply).
fn publishes(waiters: impl IntoIterator<Item = Option<LocalSender<Option<i64>>>>) -> u64 {
    waiters.into_iter().filter(|w| w.is_none()).count() as u64
}

/// Commands written (or being written) to Redis whose replies have not
/// come: dropped before they all came, the publishes among them are
/// counted as failed (their askers, if any, hear None).
struct InFlight<'a> {
    status: &'a ClusterStatus,
    waiters: std::collections::VecDeque<Option<LocalSender<Option<i64>>>>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        ClusterStatus::add(
            &self.status.publish_failed,
            publishes(self.waiters.drain(..)),
        );
    }
}

/// A request of this node's waiting for the other nodes' answers: its id,
/// where the answers come, until when. Its entry in `Link::pending` goes
/// when this is dropped, however the wait ends.
struct Asking<'a> {
    link: &'a Link,
    id: String,
    answers: LocalReceiver<WireResponse>,
    deadline: Timer,
}

impl<'a> Asking<'a> {
    fn open(link: &'a Link, timeout: Duration) -> Asking<'a> {
        let id = link.shared.new_request_id();
        let (tx, answers) = local_channel::new_unbounded();
        link.pending.borrow_mut().insert(id.clone(), tx);
        Asking {
            link,
            id,
            answers,
            deadline: Timer::new(timeout),
        }
    }

    /// The next answer; None once the deadline has passed.
    async fn next(&mut self) -> Option<WireResponse> {
        let (answers, deadline) = (&self.answers, &mut self.deadline);
        future::or(async { answers.recv().await }, async {
            deadline.await;
            None
        })
        .await
    }
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        self.link.pending.borrow_mut().remove(&self.id);
    }
}
