//! The adapter boundary: room membership and broadcasts. The shard adapter
//! keeps each namespace's room index on its shard and reaches the other
//! shards over the mesh; an adapter for several processes (Redis) would sit
//! behind the same calls.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ahash::AHashMap;
use futures_lite::future;
use glommio::channels::local_channel::{self, LocalSender};
use glommio::timer::Timer;
use smallvec::SmallVec;

use super::broadcast::RemoteSocket;
use super::namespace::Nsp;
use super::outgoing::Outgoing;
use super::recovery::{LoggedTarget, Offset, RecoveryShard, RestoreAnswer};
use super::socket::{JoinError, SocketInner};
use super::stats::ShardStats;
use crate::engine::{BroadcastSends, Tally};
use crate::engineio::Sid;
use crate::shard::context;

/// Which sockets an operation is for.
#[derive(Clone, Debug, Default)]
pub(crate) struct Target {
    /// Empty: every socket of the namespace.
    pub rooms: Vec<String>,
    pub except: Vec<String>,
    pub volatile: bool,
}

/// A room operation applied to the sockets a [`Target`] selects.
#[derive(Clone, Debug)]
pub(crate) enum RoomOp {
    Join(Vec<String>),
    Leave(Vec<String>),
    Disconnect { close: bool },
}

/// What one shard tells another. `instance` names the Socket.IO server, in
/// case a process runs more than one.
pub(crate) struct ClusterMsg {
    pub instance: u64,
    pub nsp: String,
    pub body: ClusterBody,
}

pub(crate) enum ClusterBody {
    Broadcast {
        target: Target,
        packet: Outgoing,
        /// Its recovery offset, when it is kept for recovery.
        offset: Option<Offset>,
        /// The shard that emitted it (the sender, if excluded, is on it).
        origin: usize,
        /// With an offset: its target as the logs keep it (the sender's
        /// id among the except rooms when it is excluded), built once and
        /// shared by every shard's log.
        logged: Option<Arc<LoggedTarget>>,
    },
    /// Restore session `pid` of this namespace for a client of shard
    /// `origin` that read up to `offset` (connection-state recovery).
    Restore {
        origin: usize,
        request: u64,
        pid: String,
        offset: Offset,
    },
    /// The answer to a `Restore`.
    Restored {
        request: u64,
        answer: RestoreAnswer,
    },
    /// To the shard a socket's id names: the socket (its session) is on
    /// shard `to` now, or (None) is gone for good.
    Moved {
        sid: String,
        pid: String,
        to: Option<usize>,
    },
    RoomOp {
        target: Target,
        op: RoomOp,
    },
    Fetch {
        target: Target,
        origin: usize,
        request: u64,
    },
    Fetched {
        request: u64,
        sockets: Vec<RemoteSocket>,
    },
    /// Server-level, not per namespace: handled by the shard state.
    Stats {
        origin: usize,
        request: u64,
    },
    StatsReply {
        request: u64,
        stats: ShardStats,
    },
    /// To or from the cluster's link on shard 0.
    Cluster(super::cluster::ClusterOp),
    /// Deliver `packet` (its ack id `id`) and wait for each recipient's
    /// ack on behalf of `request` on shard `origin`.
    BroadcastWithAck {
        target: Target,
        packet: Outgoing,
        id: u64,
        origin: usize,
        request: u64,
        timeout: Duration,
    },
    /// To the collector of a broadcast with acks.
    BroadcastAckEvent {
        request: u64,
        event: super::broadcast_ack::AckEvent,
    },
}

impl ClusterBody {
    /// About how many bytes the message holds (its packet, counted in full
    /// although its bytes are shared): its weight in the bounded backlog
    /// for the other shards.
    fn payload_bytes(&self) -> usize {
        let target = |t: &Target| {
            t.rooms
                .iter()
                .chain(&t.except)
                .map(String::len)
                .sum::<usize>()
        };
        match self {
            ClusterBody::Broadcast {
                target: t, packet, ..
            }
            | ClusterBody::BroadcastWithAck {
                target: t, packet, ..
            } => target(t) + packet.bytes(),
            ClusterBody::RoomOp { target: t, op } => {
                target(t)
                    + match op {
                        RoomOp::Join(rooms) | RoomOp::Leave(rooms) => {
                            rooms.iter().map(String::len).sum()
                        }
                        RoomOp::Disconnect { .. } => 0,
                    }
            }
            ClusterBody::Fetch { target: t, .. } => target(t),
            ClusterBody::Fetched { sockets, .. } => sockets.len() * 128,
            ClusterBody::Stats { .. } | ClusterBody::StatsReply { .. } => 0,
            ClusterBody::Cluster(op) => op.payload_bytes(),
            ClusterBody::BroadcastAckEvent { .. } => 64,
            ClusterBody::Restore { pid, .. } => pid.len() + 64,
            ClusterBody::Restored { answer, .. } => match answer {
                Ok(session) => {
                    session.missed.iter().map(|(_, p)| p.bytes()).sum::<usize>()
                        + session.rooms.iter().map(String::len).sum::<usize>()
                }
                Err(_) => 0,
            },
            ClusterBody::Moved { sid, pid, .. } => sid.len() + pid.len(),
        }
    }
}

/// How long a server-wide query waits for the other shards.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The room and broadcast operations of the Socket.IO layer.
pub(crate) trait Adapter {
    fn join(&self, nsp: &Nsp, socket: &Rc<SocketInner>, room: &str);
    fn leave(&self, nsp: &Nsp, socket: &SocketInner, room: &str);
    fn leave_all(&self, nsp: &Nsp, socket: &SocketInner);
    /// Deliver an encoded packet to the target, on every shard; with an
    /// offset, every shard keeps it for recovery.
    fn broadcast(
        &self,
        nsp: &Nsp,
        target: Target,
        exclude: Option<&SocketInner>,
        packet: Outgoing,
        offset: Option<Offset>,
    );
    /// Apply a room operation to the target, on every shard. Returns the local sockets to
    /// disconnect (run by the caller, since that calls user code).
    fn room_op(
        &self,
        nsp: &Nsp,
        target: Target,
        exclude: Option<&SocketInner>,
        op: RoomOp,
    ) -> Vec<(Rc<SocketInner>, bool)>;
    /// The target's sockets, on every shard.
    fn fetch(
        &self,
        nsp: &Nsp,
        target: Target,
        exclude: Option<&SocketInner>,
    ) -> future::BoxedLocal<Vec<RemoteSocket>>;
}

pub(crate) struct ShardAdapter {
    pub shard: usize,
    pub instance: u64,
    /// `IoSettings::max_rooms_per_socket` (0: no limit).
    max_rooms_per_socket: usize,
    /// Broadcast generation: a socket whose mark equals it was reached (or excluded).
    generation: Cell<u64>,
    next_request: Cell<u64>,
    fetches: Fetches,
    /// Tell the cluster's link when a room appears or goes on this shard
    /// (the sharded dialect's dynamic mode subscribes a channel per room).
    report_rooms: bool,
    /// Connection-state recovery, when on.
    pub(crate) recovery: Option<Rc<RecoveryShard>>,
    /// What watches the shard's server (rooms and broadcast recipients).
    pub(crate) observer: Option<Rc<dyn super::Observer>>,
}

type Fetches = Rc<RefCell<AHashMap<u64, LocalSender<Vec<RemoteSocket>>>>>;

impl ShardAdapter {
    pub fn new(
        shard: usize,
        instance: u64,
        max_rooms_per_socket: usize,
        report_rooms: bool,
        recovery: Option<Rc<RecoveryShard>>,
    ) -> ShardAdapter {
        ShardAdapter {
            report_rooms,
            recovery,
            shard,
            instance,
            max_rooms_per_socket,
            generation: Cell::new(0),
            next_request: Cell::new(0),
            fetches: Rc::default(),
            observer: None,
        }
    }

    /// Tell `observer` of room changes and broadcast recipients.
    pub fn with_observer(mut self, observer: Option<Rc<dyn super::Observer>>) -> ShardAdapter {
        self.observer = observer;
        self
    }

    /// Join `rooms`, all or none: none when the socket would be in more
    /// than `max_rooms_per_socket` rooms (its own room, its id, not
    /// counted), or when it has left its namespace.
    pub fn try_join(
        &self,
        nsp: &Nsp,
        socket: &Rc<SocketInner>,
        rooms: &[&str],
    ) -> Result<(), JoinError> {
        if socket.left.get() {
            return Err(JoinError::Disconnected);
        }
        let max = self.max_rooms_per_socket;
        if max != 0 {
            let current = socket.rooms.borrow();
            let id = &*socket.id;
            let counted = |room: &str| room != id;
            let joined = current.iter().filter(|r| counted(r)).count();
            let new = rooms
                .iter()
                .enumerate()
                .filter(|(i, room)| {
                    counted(room)
                        && !current.iter().any(|r| &**r == **room)
                        && !rooms[..*i].contains(room)
                })
                .count();
            if joined + new > max {
                drop(current);
                crate::metrics::with(|m| {
                    m.refused_rooms.inc();
                });
                tracing::debug!(
                    socket = id,
                    nsp = %nsp.name,
                    max,
                    "refusing a join past the socket's room limit"
                );
                return Err(JoinError::TooManyRooms { limit: max });
            }
        }
        for room in rooms {
            self.join(nsp, socket, room);
        }
        Ok(())
    }

    /// A room appeared (`up`) or went on this shard: tell the link, when
    /// it subscribes per room. Called with no borrow of the index held.
    fn room_changed(&self, nsp: &Nsp, room: &str, up: bool) {
        if !self.report_rooms {
            return;
        }
        let body = ClusterBody::Cluster(super::cluster::ClusterOp::RoomHeld(room.to_string(), up));
        self.post(super::cluster::LINK_SHARD, &nsp.name, body);
    }

    fn next_generation(&self) -> u64 {
        let g = self.generation.get() + 1;
        self.generation.set(g);
        g
    }

    /// Visit each selected local socket once; no allocation.
    ///
    /// The room index stays borrowed during the walk, so `visit` must not
    /// join, leave or close a socket, nor run application code: it only
    /// queues packets (`Client::send_broadcast`), which never calls back up.
    /// A recipient found too slow is marked closed and its close runs after
    /// the current dispatch (see `engine::SessionHost`).
    fn for_each_local(
        &self,
        nsp: &Nsp,
        target: &Target,
        exclude: Option<&SocketInner>,
        mut visit: impl FnMut(&Rc<SocketInner>),
    ) {
        let generation = self.next_generation();
        if let Some(socket) = exclude {
            socket.mark.set(generation);
        }
        let index = nsp.rooms.borrow();
        for room in &target.except {
            if let Some(members) = index.get(room.as_str()) {
                members.for_each(|socket| socket.mark.set(generation));
            }
        }
        if target.rooms.is_empty() {
            nsp.sockets.borrow().for_each(|socket| {
                if socket.mark.get() != generation {
                    visit(socket);
                }
            });
        } else {
            for room in &target.rooms {
                if let Some(members) = index.get(room.as_str()) {
                    members.for_each(|socket| {
                        if socket.mark.get() != generation {
                            socket.mark.set(generation);
                            visit(socket);
                        }
                    });
                }
            }
        }
    }

    fn select_local(
        &self,
        nsp: &Nsp,
        target: &Target,
        exclude: Option<&SocketInner>,
    ) -> Vec<Rc<SocketInner>> {
        let mut selected = Vec::new();
        self.for_each_local(nsp, target, exclude, |s| selected.push(s.clone()));
        selected
    }

    /// The other shards a target can reach: only the owners when every room
    /// is a socket id (an id names its shard), else all of them.
    pub(crate) fn peers(&self, target: &Target) -> SmallVec<[usize; 8]> {
        let count = context::shard_count().unwrap_or(1);
        let mut peers: SmallVec<[usize; 8]> = SmallVec::new();
        if count <= 1 {
            // One shard: no other to reach (its rooms need not be read).
            return peers;
        }
        let owners: Option<SmallVec<[usize; 8]>> = if target.rooms.is_empty() {
            None
        } else {
            target
                .rooms
                .iter()
                .map(|r| socket_shard(r).filter(|s| *s < count))
                .collect()
        };
        match owners {
            Some(owners) => {
                for shard in owners {
                    if shard != self.shard && !peers.contains(&shard) {
                        peers.push(shard);
                    }
                }
                // A socket this shard names may live elsewhere now.
                if let Some(recovery) = self.recovery.as_ref().filter(|r| r.any_moved()) {
                    for room in &target.rooms {
                        if let Some(to) = recovery.moved_to(room) {
                            if to != self.shard && !peers.contains(&to) {
                                peers.push(to);
                            }
                        }
                    }
                }
            }
            None => return self.all_peers(),
        }
        peers
    }

    /// Every other shard.
    fn all_peers(&self) -> SmallVec<[usize; 8]> {
        let count = context::shard_count().unwrap_or(1);
        (0..count).filter(|s| *s != self.shard).collect()
    }

    /// An id-targeted message reached this shard for a socket it names
    /// that now lives on another shard: pass it on, unless that shard had
    /// it already (it sent it, or owns another target room). Only when
    /// every target room is a socket id: otherwise every shard got it.
    fn forward_moved(
        &self,
        target: &Target,
        origin: usize,
        nsp: &str,
        body: impl Fn() -> ClusterBody,
    ) {
        let Some(recovery) = self.recovery.as_ref().filter(|r| r.any_moved()) else {
            return;
        };
        if target.rooms.is_empty() {
            return;
        }
        let mut owners: SmallVec<[usize; 8]> = SmallVec::new();
        for room in &target.rooms {
            match socket_shard(room) {
                Some(shard) => owners.push(shard),
                None => return,
            }
        }
        let mut sent: SmallVec<[usize; 4]> = SmallVec::new();
        for room in &target.rooms {
            if let Some(to) = recovery.moved_to(room) {
                if to != origin && to != self.shard && !owners.contains(&to) && !sent.contains(&to)
                {
                    sent.push(to);
                    self.post(to, nsp, body());
                }
            }
        }
    }

    /// Keep a broadcast for recovery in this shard's log of `nsp`.
    fn log(
        &self,
        nsp: &str,
        logged: Option<&Arc<LoggedTarget>>,
        offset: Option<Offset>,
        packet: &Outgoing,
    ) {
        let (Some(recovery), Some(offset), Some(logged)) = (&self.recovery, offset, logged) else {
            return;
        };
        recovery.log(nsp, offset, logged.clone(), packet.clone());
    }

    fn post(&self, shard: usize, nsp: &str, body: ClusterBody) {
        let bytes = nsp.len() + body.payload_bytes();
        let msg = ClusterMsg {
            instance: self.instance,
            nsp: nsp.to_string(),
            body,
        };
        context::post_sized(shard, Box::new(msg), bytes);
    }

    /// A message from another shard. `nsp` is this shard's namespace of that
    /// name, if it has one. Returns the sockets to disconnect.
    pub fn receive(&self, nsp: Option<&Nsp>, msg: ClusterMsg) -> Vec<(Rc<SocketInner>, bool)> {
        match msg.body {
            ClusterBody::Broadcast {
                target,
                packet,
                offset,
                origin,
                logged,
            } => {
                self.log(&msg.nsp, logged.as_ref(), offset, &packet);
                if let Some(nsp) = nsp {
                    // A socket restored here with a cut does not get again
                    // what the restore gave it (see `RecoveryShard::cuts`).
                    let cuts = self.recovery.as_ref().filter(|r| r.any_cut()).zip(offset);
                    match cuts {
                        None => {
                            self.broadcast_each(nsp, &target, None, &packet, |_| {});
                        }
                        Some((recovery, offset)) => {
                            self.broadcast_each_but(
                                nsp,
                                &target,
                                None,
                                &packet,
                                |s| recovery.covered(s.key, offset),
                                |_| {},
                            );
                        }
                    }
                }
                // A packet with an offset went to every shard (see `broadcast`).
                if offset.is_none() {
                    self.forward_moved(&target, origin, &msg.nsp, || ClusterBody::Broadcast {
                        target: target.clone(),
                        packet: packet.clone(),
                        offset,
                        origin,
                        logged: logged.clone(),
                    });
                }
                Vec::new()
            }
            ClusterBody::RoomOp { target, op } => {
                // The origin is unknown here: a shard that already had it
                // ignores an operation for sockets it does not hold.
                self.forward_moved(&target, usize::MAX, &msg.nsp, || ClusterBody::RoomOp {
                    target: target.clone(),
                    op: op.clone(),
                });
                match nsp {
                    Some(nsp) => self.apply_local(nsp, &target, None, &op),
                    None => Vec::new(),
                }
            }
            ClusterBody::Fetch {
                target,
                origin,
                request,
            } => {
                let sockets = match nsp {
                    Some(nsp) => self
                        .select_local(nsp, &target, None)
                        .iter()
                        .map(|s| RemoteSocket::of(s, self.shard))
                        .collect(),
                    None => Vec::new(),
                };
                self.post(origin, &msg.nsp, ClusterBody::Fetched { request, sockets });
                Vec::new()
            }
            ClusterBody::Fetched { request, sockets } => {
                if let Some(tx) = self.fetches.borrow().get(&request) {
                    let _ = tx.try_send(sockets);
                }
                Vec::new()
            }
            ClusterBody::Stats { .. }
            | ClusterBody::StatsReply { .. }
            | ClusterBody::Cluster(_)
            | ClusterBody::BroadcastWithAck { .. }
            | ClusterBody::BroadcastAckEvent { .. }
            | ClusterBody::Restore { .. }
            | ClusterBody::Restored { .. }
            | ClusterBody::Moved { .. } => Vec::new(),
        }
    }

    /// Queue `packet` to the target's local sockets (no allocation), calling
    /// `sent` for each that took it (a broadcast with acks registers its
    /// wait there), and count the deliveries. How many took it.
    pub(crate) fn broadcast_each(
        &self,
        nsp: &Nsp,
        target: &Target,
        exclude: Option<&SocketInner>,
        packet: &Outgoing,
        sent: impl FnMut(&Rc<SocketInner>),
    ) -> usize {
        self.broadcast_each_but(nsp, target, exclude, packet, |_| false, sent)
    }

    /// [`ShardAdapter::broadcast_each`], leaving out the sockets `skip` names.
    fn broadcast_each_but(
        &self,
        nsp: &Nsp,
        target: &Target,
        exclude: Option<&SocketInner>,
        packet: &Outgoing,
        skip: impl Fn(&SocketInner) -> bool,
        mut sent: impl FnMut(&Rc<SocketInner>),
    ) -> usize {
        let mut delivered = 0;
        let mut tally = Tally::default();
        // The text measured, and its frame held, once for the walk.
        let mut sends = BroadcastSends::new(&packet.text);
        // The common broadcast (not volatile, no attachments, no observer)
        // walks a loop of its own: those three tests, the same for every
        // recipient, are made once per walk rather than once per recipient.
        if !target.volatile && packet.attachments.is_empty() && self.observer.is_none() {
            self.for_each_local(nsp, target, exclude, |s| {
                if !skip(s) && s.client.conn.send_broadcast_text(&mut sends) {
                    delivered += 1;
                    sent(s);
                }
            });
        } else {
            self.broadcast_walk(
                nsp,
                target,
                exclude,
                packet,
                &mut sends,
                &skip,
                &mut sent,
                &mut tally,
                &mut delivered,
            );
        }
        let text_len = sends.len();
        // The walk's sessions go on the flusher's queue.
        drop(sends);
        tally.add_deliveries(delivered as u64, text_len);
        tally.flush();
        crate::metrics::with(|m| {
            m.deliveries.inc_by(delivered as u64);
        });
        delivered
    }

    /// The walk of [`ShardAdapter::broadcast_each_but`] for any broadcast:
    /// volatile, with attachments or watched by an observer.
    #[allow(clippy::too_many_arguments)]
    fn broadcast_walk(
        &self,
        nsp: &Nsp,
        target: &Target,
        exclude: Option<&SocketInner>,
        packet: &Outgoing,
        sends: &mut BroadcastSends,
        skip: &impl Fn(&SocketInner) -> bool,
        sent: &mut impl FnMut(&Rc<SocketInner>),
        tally: &mut Tally,
        delivered: &mut usize,
    ) {
        self.for_each_local(nsp, target, exclude, |s| {
            if skip(s) {
                return;
            }
            if s.client
                .send_broadcast(packet, sends, target.volatile, tally)
            {
                *delivered += 1;
                if let Some(observer) = &self.observer {
                    // It only records: the room index is borrowed here.
                    observer.packet_sent(&nsp.name, &s.id, &packet.text);
                }
                sent(s);
            }
        });
    }

    fn apply_local(
        &self,
        nsp: &Nsp,
        target: &Target,
        exclude: Option<&SocketInner>,
        op: &RoomOp,
    ) -> Vec<(Rc<SocketInner>, bool)> {
        let selected = self.select_local(nsp, target, exclude);
        match op {
            RoomOp::Join(rooms) => {
                let rooms: SmallVec<[&str; 4]> = rooms.iter().map(String::as_str).collect();
                for socket in &selected {
                    // A socket at its room limit is left out (and counted).
                    let _ = self.try_join(nsp, socket, &rooms);
                }
                Vec::new()
            }
            RoomOp::Leave(rooms) => {
                for socket in &selected {
                    for room in rooms {
                        self.leave(nsp, socket, room);
                    }
                }
                Vec::new()
            }
            RoomOp::Disconnect { close } => selected.into_iter().map(|s| (s, *close)).collect(),
        }
    }
}

impl Adapter for ShardAdapter {
    fn join(&self, nsp: &Nsp, socket: &Rc<SocketInner>, room: &str) {
        if socket.left.get() || socket.rooms.borrow().iter().any(|r| &**r == room) {
            return;
        }
        let mut index = nsp.rooms.borrow_mut();
        // One allocation per room name, shared by the index and its members
        // (a socket's own room is named by its id: that one is shared too).
        let (name, created): (Rc<str>, bool) = match index.get_key_value(room) {
            Some((name, _)) => (name.clone(), false),
            None if *socket.id == *room => (socket.id.clone(), true),
            None => (Rc::from(room), true),
        };
        index
            .entry(name.clone())
            .or_default()
            .insert(socket.key, socket.clone());
        drop(index);
        socket.rooms.borrow_mut().push(name);
        if let Some(observer) = &self.observer {
            observer.room_joined(&nsp.name, room, &socket.id);
        }
        if created {
            self.room_changed(nsp, room, true);
        }
    }

    fn leave(&self, nsp: &Nsp, socket: &SocketInner, room: &str) {
        let mut rooms = socket.rooms.borrow_mut();
        let Some(position) = rooms.iter().position(|r| &**r == room) else {
            return;
        };
        rooms.remove(position);
        drop(rooms);
        let mut index = nsp.rooms.borrow_mut();
        let mut removed = false;
        if let Some(members) = index.get_mut(room) {
            members.remove(&socket.key);
            if members.is_empty() {
                index.remove(room);
                removed = true;
            }
        }
        drop(index);
        if let Some(observer) = &self.observer {
            observer.room_left(&nsp.name, room, &socket.id);
        }
        if removed {
            self.room_changed(nsp, room, false);
        }
    }

    fn leave_all(&self, nsp: &Nsp, socket: &SocketInner) {
        let rooms = std::mem::take(&mut *socket.rooms.borrow_mut());
        let mut index = nsp.rooms.borrow_mut();
        let mut removed: SmallVec<[Rc<str>; 4]> = SmallVec::new();
        for room in rooms {
            if let Some(members) = index.get_mut(&room) {
                members.remove(&socket.key);
                if members.is_empty() {
                    index.remove(&room);
                    if self.report_rooms {
                        removed.push(room);
                    }
                }
            }
        }
        drop(index);
        for room in removed {
            self.room_changed(nsp, &room, false);
        }
    }

    fn broadcast(
        &self,
        nsp: &Nsp,
        target: Target,
        exclude: Option<&SocketInner>,
        packet: Outgoing,
        offset: Option<Offset>,
    ) {
        // Only a kept packet needs its target as the logs keep it.
        let logged = offset.map(|_| {
            let mut except = target.except.clone();
            if let Some(sender) = exclude {
                except.push(sender.id.to_string());
            }
            Arc::new(LoggedTarget {
                rooms: target.rooms.clone(),
                except,
                local_only: false,
            })
        });
        self.log(&nsp.name, logged.as_ref(), offset, &packet);
        self.broadcast_each(nsp, &target, exclude, &packet, |_| {});
        crate::metrics::with(|m| {
            m.broadcasts.inc();
        });
        // A packet kept for recovery goes to every shard, even one for a
        // socket id: each shard's log then holds every such packet in each
        // origin's order, which a restore on another shard relies on
        // (docs/architecture.md, "Connection-state recovery").
        let peers = match offset {
            Some(_) => self.all_peers(),
            None => self.peers(&target),
        };
        for shard in peers {
            // The packet's bytes are shared: one refcount per shard, not per recipient.
            let body = ClusterBody::Broadcast {
                target: target.clone(),
                packet: packet.clone(),
                offset,
                origin: self.shard,
                logged: logged.clone(),
            };
            self.post(shard, &nsp.name, body);
        }
    }

    fn room_op(
        &self,
        nsp: &Nsp,
        target: Target,
        exclude: Option<&SocketInner>,
        op: RoomOp,
    ) -> Vec<(Rc<SocketInner>, bool)> {
        for shard in self.peers(&target) {
            let body = ClusterBody::RoomOp {
                target: target.clone(),
                op: op.clone(),
            };
            self.post(shard, &nsp.name, body);
        }
        self.apply_local(nsp, &target, exclude, &op)
    }

    fn fetch(
        &self,
        nsp: &Nsp,
        target: Target,
        exclude: Option<&SocketInner>,
    ) -> future::BoxedLocal<Vec<RemoteSocket>> {
        let mut sockets: Vec<RemoteSocket> = self
            .select_local(nsp, &target, exclude)
            .iter()
            .map(|s| RemoteSocket::of(s, self.shard))
            .collect();
        let peers = self.peers(&target);
        if peers.is_empty() {
            return Box::pin(async move { sockets });
        }
        let request = self.next_request.get();
        self.next_request.set(request + 1);
        let (tx, rx) = local_channel::new_unbounded();
        self.fetches.borrow_mut().insert(request, tx);
        for shard in &peers {
            let body = ClusterBody::Fetch {
                target: target.clone(),
                origin: self.shard,
                request,
            };
            self.post(*shard, &nsp.name, body);
        }
        let waiting = peers.len();
        let done = FetchDone {
            fetches: self.fetches.clone(),
            request,
        };
        Box::pin(async move {
            let _done = done;
            for _ in 0..waiting {
                let next = future::or(async { rx.recv().await }, async {
                    Timer::new(FETCH_TIMEOUT).await;
                    None
                })
                .await;
                match next {
                    Some(more) => sockets.extend(more),
                    None => break,
                }
            }
            sockets
        })
    }
}

/// Forgets a finished (or abandoned) fetch.
struct FetchDone {
    fetches: Fetches,
    request: u64,
}

impl Drop for FetchDone {
    fn drop(&mut self) {
        self.fetches.borrow_mut().remove(&self.request);
    }
}

/// The shard owning a socket id: v5 ids are sids; v2 clients' ids are the
/// Engine.IO sid, after `<nsp>#` outside `/`.
pub(crate) fn socket_shard(id: &str) -> Option<usize> {
    let sid = id.rsplit('#').next().unwrap_or(id);
    Sid::parse(sid).map(|sid| sid.shard())
}
