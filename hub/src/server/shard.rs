//! The Socket.IO layer on one shard: the Engine.IO handler that turns
//! messages into packets, connects sockets to namespaces, and runs the
//! namespaces' handlers for the sockets this shard owns.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Instant;

use ahash::AHashMap;
use bytes::Bytes;
use glommio::timer::Timer;
use serde_json::{json, Value};

use super::adapter::{Adapter, ClusterBody, ClusterMsg, ShardAdapter};
use super::args::Args;
use super::broadcast_ack::{self, AckEvent, AckRelay};
use super::client::Client;
use super::cluster::link::Link;
use super::cluster::{ClusterOp, NodeAnswers, LINK_SHARD};
use super::handshake::Handshake;
use super::io::IoConfig;
use super::namespace::Nsp;
use super::outgoing;
use super::reason::DisconnectReason;
use super::recovery::{RecoveryShard, RestoredSession};
use super::socket::{Socket, SocketInner};
use super::stats::PendingStats;
use crate::engine::{
    CloseReason, Data, Handler, ProtocolVersion, Socket as EngineSocket, TransportKind,
};
use crate::engineio::Sid;
use crate::shard::context;
use crate::socketio::{PacketType, Payload, Protocol, RawPacket};
use glommio::channels::local_channel::LocalSender;

/// The CONNECT_ERROR message past `max_namespaces_per_connection`.
pub(crate) const TOO_MANY_NAMESPACES: &str = "too many namespaces";

pub(crate) struct SioShard {
    config: Arc<IoConfig>,
    shard: usize,
    me: Weak<SioShard>,
    namespaces: RefCell<AHashMap<String, Rc<Nsp>>>,
    clients: RefCell<AHashMap<Sid, Rc<Client>>>,
    next_key: Cell<u64>,
    next_request: Cell<u64>,
    /// Clients with no namespace joined yet, with their connect deadline
    /// (all given the same time, so in deadline order).
    awaiting_connect: RefCell<VecDeque<(Instant, Weak<Client>)>>,
    /// A task is sleeping until the first of them is due.
    connect_sweeper: Cell<bool>,
    pub(crate) pending_stats: PendingStats,
    pub adapter: ShardAdapter,
    /// On shard 0 of a clustered server: the link to Redis.
    pub(crate) link: RefCell<Option<Rc<Link>>>,
    /// Broadcasts with acks emitted here, waiting for their answers.
    pub(crate) broadcast_acks: RefCell<AHashMap<u64, LocalSender<AckEvent>>>,
    /// This shard's requests to the other nodes, waiting for shard 0.
    pub(crate) cluster_waiters: RefCell<AHashMap<u64, LocalSender<NodeAnswers>>>,
    /// What watches this shard's server (the Admin UI), if anything.
    pub(crate) observer: Option<Rc<dyn super::Observer>>,
}

thread_local! {
    /// This thread's Socket.IO shard states, by server instance, for code
    /// that runs on a shard outside a handler (an admin listener, say).
    static LOCAL: RefCell<AHashMap<u64, Weak<SioShard>>> = RefCell::new(AHashMap::new());
}

/// The shard state of server `instance` on the calling thread.
pub(crate) fn local(instance: u64) -> Option<Rc<SioShard>> {
    LOCAL.with(|m| m.borrow().get(&instance).and_then(Weak::upgrade))
}

impl SioShard {
    pub fn new(config: Arc<IoConfig>, shard: usize) -> Rc<SioShard> {
        let instance = config.instance;
        let max_rooms_per_socket = config.settings.max_rooms_per_socket;
        let report_rooms = config
            .cluster
            .as_ref()
            .is_some_and(|c| c.dialect() == crate::redis::Dialect::Sharded { dynamic: true });
        let recovery = config
            .recovery
            .clone()
            .map(|c| Rc::new(RecoveryShard::new(c, shard)));
        let observer = config.observer.as_ref().map(|make| make(shard));
        let shard_state = Rc::new_cyclic(|me| SioShard {
            observer: observer.clone(),
            config,
            shard,
            me: me.clone(),
            namespaces: RefCell::new(AHashMap::new()),
            clients: RefCell::new(AHashMap::new()),
            next_key: Cell::new(0),
            next_request: Cell::new(0),
            awaiting_connect: RefCell::new(VecDeque::new()),
            connect_sweeper: Cell::new(false),
            pending_stats: Rc::default(),
            adapter: ShardAdapter::new(
                shard,
                instance,
                max_rooms_per_socket,
                report_rooms,
                recovery,
            )
            .with_observer(observer.clone()),
            link: RefCell::new(None),
            broadcast_acks: RefCell::new(AHashMap::new()),
            cluster_waiters: RefCell::new(AHashMap::new()),
        });
        LOCAL.with(|m| m.borrow_mut().insert(instance, Rc::downgrade(&shard_state)));
        shard_state
    }

    pub(crate) fn shard_id(&self) -> usize {
        self.shard
    }

    pub(crate) fn config(&self) -> &IoConfig {
        &self.config
    }

    pub(crate) fn me(&self) -> Option<Rc<SioShard>> {
        self.me.upgrade()
    }

    pub(crate) fn instance(&self) -> u64 {
        self.config.instance
    }

    pub(crate) fn next_request(&self) -> u64 {
        let id = self.next_request.get();
        self.next_request.set(id + 1);
        id
    }

    pub(crate) fn clients_snapshot(&self) -> Vec<Rc<Client>> {
        self.clients.borrow().values().cloned().collect()
    }

    pub(crate) fn namespaces_snapshot(&self) -> Vec<Rc<Nsp>> {
        self.namespaces.borrow().values().cloned().collect()
    }

    /// The namespace `name` on this shard, created on first use when served
    /// (for a socket about to connect to it).
    pub(crate) fn namespace(&self, name: &str) -> Option<Rc<Nsp>> {
        if let Some(nsp) = self.namespaces.borrow().get(name) {
            return Some(nsp.clone());
        }
        let def = self.config.namespace(name)?.clone();
        let nsp = Rc::new(Nsp::new(name, def));
        self.attach(&nsp);
        Some(nsp)
    }

    /// The namespace `name` for the application to hold (`LocalIo::of`,
    /// `Socket::of`): the shard's if it exists, a declared one created now.
    /// A dynamic one with no socket here is not created, as it would stay
    /// empty for good: the handle is then a namespace of its own, outside
    /// the shard's map, which [`SioShard::live`] resolves to the shard's
    /// once a socket has created it. None when the name is not served.
    pub(crate) fn namespace_handle(&self, name: &str) -> Option<Rc<Nsp>> {
        if let Some(nsp) = self.namespaces.borrow().get(name) {
            return Some(nsp.clone());
        }
        let def = self.config.namespace(name)?;
        if !def.dynamic {
            return self.namespace(name);
        }
        Some(Rc::new(Nsp::new(name, def.clone())))
    }

    /// The namespace a handle stands for now: the handle's own while it is
    /// the shard's, else the shard's namespace of that name if a socket has
    /// created one since, else the handle's (which has no sockets: an emit
    /// from it reaches the other shards only). One flag read when nothing
    /// was removed, which is the broadcast path's case.
    pub(crate) fn live(&self, nsp: &Rc<Nsp>) -> Rc<Nsp> {
        if nsp.attached.get() {
            return nsp.clone();
        }
        self.namespaces
            .borrow()
            .get(&nsp.name)
            .cloned()
            .unwrap_or_else(|| nsp.clone())
    }

    /// Make `nsp` the shard's namespace of its name (its slot is free).
    fn attach(&self, nsp: &Rc<Nsp>) {
        let mut namespaces = self.namespaces.borrow_mut();
        if namespaces.contains_key(&nsp.name) {
            debug_assert!(false, "namespace {} attached twice", nsp.name);
            return;
        }
        namespaces.insert(nsp.name.clone(), nsp.clone());
        nsp.attached.set(true);
        if nsp.def.dynamic {
            self.cluster_op(LINK_SHARD, &nsp.name, ClusterOp::NamespaceHeld(true));
        }
        crate::metrics::with(|m| {
            m.namespaces.inc();
        });
    }

    /// Remove a dynamic namespace once no socket is left in it on this
    /// shard (the reference's `cleanupEmptyChildNamespaces`): its memory
    /// comes back, and the next socket to connect creates it anew. Declared
    /// namespaces stay. Nothing keeps pointing at a removed namespace but
    /// handles, which resolve by name ([`SioShard::live`]); messages from
    /// other shards name namespaces, and find none here.
    pub(crate) fn release_if_empty(&self, nsp: &Nsp) {
        if !nsp.def.dynamic || !nsp.attached.get() || !nsp.sockets.borrow().is_empty() {
            return;
        }
        let mut namespaces = self.namespaces.borrow_mut();
        if namespaces
            .get(&nsp.name)
            .is_some_and(|held| std::ptr::eq(&**held, nsp))
        {
            namespaces.remove(&nsp.name);
            // A flood of names leaves no oversized table behind.
            if namespaces.capacity() > 64 && namespaces.len() * 4 < namespaces.capacity() {
                namespaces.shrink_to_fit();
            }
        }
        drop(namespaces);
        // Its room index is empty, but for the rooms a socket still in its
        // namespace middleware may have joined: that socket attaches this
        // namespace again if it connects, and leaves them if refused.
        nsp.attached.set(false);
        self.cluster_op(LINK_SHARD, &nsp.name, ClusterOp::NamespaceHeld(false));
        crate::metrics::with(|m| {
            m.namespaces.dec();
        });
        crate::shard::memory::freed(1);
    }

    /// Register a client as `on_open` does (for fixtures without a runtime).
    pub(crate) fn add_client(&self, client: Rc<Client>) {
        client
            .conn
            .set_upper(Some(Rc::downgrade(&client) as Weak<dyn Any>));
        self.clients
            .borrow_mut()
            .insert(client.conn.sid_key(), client);
    }

    /// The client of a session, kept by its engine socket from `on_open`
    /// to `on_close` (a weak reference, type-erased: the engine knows
    /// nothing of clients; the map owns them): no lookup by id per message.
    #[inline]
    fn client(&self, conn: &EngineSocket) -> Option<Rc<Client>> {
        conn.upper::<Client>()
    }

    /// Connect a client to a namespace: middleware, then the CONNECT reply
    /// and the connection handler.
    fn connect(&self, client: &Rc<Client>, name: &str, auth: Value, query: Option<&str>) {
        // Open already, or waiting for another shard's recovery answer.
        if client.socket(name).is_some() || client.restoring.borrow().iter().any(|n| n == name) {
            return;
        }
        let max = self.config.settings.max_namespaces_per_connection;
        if max != 0 && client.socket_count() >= max {
            // Refused before the namespace is looked up: nothing is created.
            crate::metrics::with(|m| {
                m.refused_namespaces.inc();
            });
            tracing::debug!(
                sid = client.conn.sid(),
                nsp = name,
                max,
                "refusing a namespace past the connection's limit"
            );
            let refusal =
                outgoing::connect_error(name, client.protocol, TOO_MANY_NAMESPACES, None, false);
            client.send(&refusal, false);
            return;
        }
        let Some(nsp) = self.namespace(name) else {
            let refusal =
                outgoing::connect_error(name, client.protocol, "Invalid namespace", None, true);
            client.send(&refusal, false);
            return;
        };
        if client.protocol == Protocol::V5 && self.adapter.recovery.is_some() {
            // As socket.io: a recovery needs both a private id and an offset, as strings.
            if let (Some(Value::String(pid)), Some(Value::String(offset))) =
                (auth.get("pid"), auth.get("offset"))
            {
                let (pid, offset) = (pid.clone(), offset.clone());
                self.restore(client, nsp, auth, query, &pid, &offset);
                return;
            }
        }
        self.open_socket(client, &nsp, auth, query, None);
    }

    /// Connect a client to `nsp`: middleware (unless a recovered session
    /// skips them), then the CONNECT reply (and, recovered, the missed
    /// packets) and the connection handler.
    pub(crate) fn open_socket(
        &self,
        client: &Rc<Client>,
        nsp: &Rc<Nsp>,
        auth: Value,
        query: Option<&str>,
        restored: Option<(RestoredSession, Vec<outgoing::Outgoing>)>,
    ) {
        let name = nsp.name.as_str();
        let nsp = nsp.clone();
        let key = self.next_key.get();
        self.next_key.set(key + 1);
        let id: Rc<str> = match (&restored, client.protocol) {
            // A recovered socket keeps its id (which names the shard it was first on).
            (Some((session, _)), _) => Rc::from(session.sid.as_str()),
            (None, Protocol::V5) => Rc::from(Sid::generate(self.shard).as_str()),
            // v2 clients compute their socket id themselves from the Engine.IO sid.
            (None, Protocol::V4) if name == "/" => Rc::from(client.conn.sid()),
            (None, Protocol::V4) => Rc::from(format!("{name}#{}", client.conn.sid())),
        };
        let handshake = Handshake::new(&client.conn, auth, query);
        let inner = Rc::new(SocketInner::new(
            key,
            id.clone(),
            nsp.clone(),
            self.me.clone(),
            client.clone(),
            handshake,
        ));
        let socket = Socket(inner.clone());
        let recovery = self.adapter.recovery.as_ref();
        if recovery.is_some() && client.protocol == Protocol::V5 {
            let pid: Rc<str> = match &restored {
                Some((session, _)) => Rc::from(session.pid.as_str()),
                None => Rc::from(Sid::generate(self.shard).as_str()),
            };
            let _ = inner.pid.set(pid);
            if let Some((session, _)) = &restored {
                inner.recovered.set(true);
                if let Some(data) = &session.data {
                    inner.set_data_shared(data.clone());
                }
            }
        }
        let skip_middlewares =
            restored.is_some() && recovery.is_some_and(|r| r.config.skip_middlewares);
        let middlewares: &[_] = if skip_middlewares {
            &[]
        } else {
            &nsp.def.middlewares
        };
        for middleware in middlewares {
            let Some(verdict) = inner.run_app("namespace middleware", || middleware(&socket))
            else {
                // The connection is closing: the socket never joined.
                self.refused(&nsp, &inner);
                return;
            };
            if let Err(refusal) = verdict {
                let packet = outgoing::connect_error(
                    name,
                    client.protocol,
                    &refusal.message,
                    refusal.data.as_ref(),
                    false,
                );
                client.send(&packet, false);
                // A middleware may have joined rooms before refusing.
                self.refused(&nsp, &inner);
                return;
            }
        }
        if !skip_middlewares && !nsp.def.async_middlewares.is_empty() {
            self.await_middlewares(client, nsp, inner, restored);
            return;
        }
        self.admit(client, &nsp, inner, restored);
    }

    /// Run the namespace's asynchronous middlewares in a task, then admit
    /// the socket or refuse it. Until they answer the namespace counts as
    /// connecting for this client (a second CONNECT is ignored).
    fn await_middlewares(
        &self,
        client: &Rc<Client>,
        nsp: Rc<Nsp>,
        inner: Rc<SocketInner>,
        restored: Option<(RestoredSession, Vec<outgoing::Outgoing>)>,
    ) {
        client.restoring.borrow_mut().push(nsp.name.clone());
        let me = self.me.clone();
        let client = client.clone();
        glommio::spawn_local(async move {
            let socket = Socket(inner.clone());
            let mut verdict = Ok(());
            for middleware in nsp.def.async_middlewares.clone() {
                let Some(future) = inner.run_app("namespace middleware", || middleware(&socket))
                else {
                    verdict = Err(None);
                    break;
                };
                let result = crate::panics::CatchUnwind::new(future).await;
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(refusal)) => {
                        verdict = Err(Some(refusal));
                        break;
                    }
                    Err(panic) => {
                        inner.panicked("namespace middleware", &panic);
                        verdict = Err(None);
                        break;
                    }
                }
            }
            client.restoring.borrow_mut().retain(|n| *n != nsp.name);
            let Some(shard) = me.upgrade() else {
                return;
            };
            match verdict {
                Ok(()) => shard.admit(&client, &nsp, inner, restored),
                Err(refusal) => {
                    if let Some(refusal) = refusal.filter(|_| !client.conn.is_closed()) {
                        let packet = outgoing::connect_error(
                            &nsp.name,
                            client.protocol,
                            &refusal.message,
                            refusal.data.as_ref(),
                            false,
                        );
                        client.send(&packet, false);
                    }
                    shard.refused(&nsp, &inner);
                }
            }
        })
        .detach();
    }

    /// The middlewares accepted the socket: it joins its namespace and its
    /// own room, gets its CONNECT, and the connection handlers run.
    fn admit(
        &self,
        client: &Rc<Client>,
        nsp: &Rc<Nsp>,
        inner: Rc<SocketInner>,
        restored: Option<(RestoredSession, Vec<outgoing::Outgoing>)>,
    ) {
        let name = nsp.name.as_str();
        let (key, id) = (inner.key, inner.id.clone());
        let socket = Socket(inner.clone());
        if client.conn.is_closed() {
            self.refused(nsp, &inner);
            return;
        }
        if !nsp.attached.get() {
            // A middleware made the namespace's last socket leave: it was
            // removed, and this socket brings it back.
            self.attach(nsp);
        }
        inner.connected.set(true);
        nsp.sockets.borrow_mut().insert(key, inner.clone());
        client.add(inner.clone());
        self.adapter.join(nsp, &inner, &id);
        if let Some((session, _)) = &restored {
            for room in &session.rooms {
                self.adapter.join(nsp, &inner, room);
            }
        }
        if let Some((session, replay)) = restored {
            // As socket.io, the missed packets go before the CONNECT (the
            // client buffers them and emits them before `connect`): what
            // the answering shard held after the client's offset, then what
            // only this shard holds (above that shard's cut).
            for packet in session.missed.iter().map(|(_, p)| p).chain(&replay) {
                client.send(packet, false);
            }
            if let (Some(recovery), Some(resume)) = (&self.adapter.recovery, session.resume) {
                // Restored from another shard's answer (now or before):
                // broadcasts at or below its cut that have yet to reach
                // this shard were in that answer, or the client had them.
                recovery.skip_through(inner.key, resume);
            }
        }
        let pid = inner.pid.get().cloned();
        client.send(
            &outgoing::connected(name, client.protocol, &id, pid.as_deref()),
            false,
        );
        if let Some(observer) = &self.observer {
            observer.socket_connected(&socket);
        }
        for on_connection in &nsp.def.on_connection {
            if !inner.connected.get() {
                break;
            }
            inner.run_app("connection handler", || on_connection(&socket));
        }
        if !nsp.def.on_connection.is_empty() {
            // Listeners are mostly added there, once: give back the room the
            // vector grew past them (5 listeners held 8 places).
            inner.shrink_listeners();
        }
    }

    /// Handle a decoded packet, given as its parts: the packet is taken
    /// apart where the decoder built it (moving its 176 bytes whole into
    /// this function was a `memcpy` call per message).
    fn on_packet(
        &self,
        client: &Rc<Client>,
        packet: PacketHead<'_>,
        payload: Payload,
        attachments: Vec<Bytes>,
    ) {
        let socket = client.socket(packet.nsp);
        // As the reference server: CONNECT opens a namespace once; anything
        // else needs an open one; a client never sends CONNECT_ERROR.
        let socket = match (packet.kind, socket) {
            (PacketType::Connect, None) => {
                let auth = match (client.protocol, payload) {
                    (Protocol::V5, Payload::Value(auth)) => auth,
                    (Protocol::V5, _) => json!({}),
                    // v2 clients authenticate with the namespace's query string.
                    (Protocol::V4, _) => query_object(packet.query),
                };
                self.connect(client, packet.nsp, auth, packet.query);
                return;
            }
            (PacketType::Connect | PacketType::ConnectError, _) | (_, None) => {
                return self.force_close(client);
            }
            (_, Some(socket)) => socket,
        };
        match packet.kind {
            PacketType::Disconnect => {
                socket.close(DisconnectReason::ClientNamespaceDisconnect, false);
            }
            PacketType::Event | PacketType::BinaryEvent => {
                let Payload::Array(mut array) = payload else {
                    return;
                };
                // The decoder checked the name: a string, or a number the
                // reference accepts too (named by its JSON text, as a
                // parsed number prints).
                let mut inline = [0u8; 64];
                let spelled;
                let name = match array.str(0) {
                    // Copied out of the text the arguments keep; short
                    // names (most) without an allocation.
                    Some(name) if name.len() <= inline.len() => {
                        let copy = &mut inline[..name.len()];
                        copy.copy_from_slice(name.as_bytes());
                        // SAFETY: the bytes were copied whole from a `str`.
                        unsafe { std::str::from_utf8_unchecked(copy) }
                    }
                    Some(name) => {
                        spelled = name.into_owned();
                        spelled.as_str()
                    }
                    None => {
                        spelled = match array.value(0) {
                            Some(other) => other.to_string(),
                            None => return,
                        };
                        spelled.as_str()
                    }
                };
                array.remove_first();
                let args = Args::from_raw(array, attachments);
                if let Some(observer) = &self.observer {
                    observer.event_received(packet.nsp, &socket.id, name, &args);
                }
                socket.on_event(name, args, packet.id);
            }
            PacketType::Ack | PacketType::BinaryAck => {
                let Some(id) = packet.id else {
                    return;
                };
                let args = match payload {
                    Payload::Array(array) => Args::from_raw(array, attachments),
                    _ => Args::from_parts(Vec::new(), attachments),
                };
                socket.on_ack(id, args);
            }
            PacketType::Connect | PacketType::ConnectError => {}
        }
    }

    /// Close a client that broke the Socket.IO state rules, as the
    /// reference's `client.close()`: over polling with no GET waiting the
    /// Engine.IO close is deferred there, so its sockets first hear
    /// "forced server close"; otherwise "forced close".
    fn force_close(&self, client: &Rc<Client>) {
        if client.conn.transport() == TransportKind::Polling && !client.conn.writable() {
            for socket in client.sockets_snapshot() {
                socket.close(DisconnectReason::ForcedServerClose, false);
            }
        }
        client.conn.close();
    }

    /// A socket refused at connect (or whose connection closed meanwhile):
    /// it leaves the rooms a middleware joined, joins none again, and a
    /// dynamic namespace created for it goes if it is empty.
    fn refused(&self, nsp: &Nsp, socket: &SocketInner) {
        if socket.recovered.get() {
            // A restored session refused (middlewares not skipped): it
            // ends here, and where its ids are recorded forgets them.
            if let Some(pid) = socket.pid.get() {
                self.session_ended(&socket.id, pid);
            }
        }
        socket.left.set(true);
        self.adapter.leave_all(nsp, socket);
        self.release_if_empty(nsp);
    }

    /// Forget a socket that left its namespace (and the namespace, if it
    /// was a dynamic one and is now empty).
    pub(crate) fn remove_socket(&self, socket: &SocketInner, reason: DisconnectReason) {
        socket.left.set(true);
        let rooms = self.observer.as_ref().map(|_| socket.room_names());
        self.adapter.leave_all(&socket.nsp, socket);
        if let (Some(observer), Some(rooms)) = (&self.observer, rooms) {
            observer.socket_disconnected(&socket.nsp.name, &socket.id, reason, &rooms);
        }
        socket.nsp.sockets.borrow_mut().remove(&socket.key);
        socket.client.remove(socket);
        self.release_if_empty(&socket.nsp);
    }

    /// Disconnect a socket as a server-side room operation asks.
    pub(crate) fn disconnect(
        &self,
        socket: &Rc<SocketInner>,
        close: bool,
        reason: DisconnectReason,
    ) {
        if close {
            Socket(socket.clone()).disconnect(true);
        } else {
            socket.close(reason, true);
        }
    }

    /// Disconnect every socket of the namespaces closed early (or late).
    fn close_all(&self, late: bool) {
        let clients: Vec<Rc<Client>> = self.clients.borrow().values().cloned().collect();
        for client in clients {
            for socket in client.sockets_snapshot() {
                if socket.nsp.def.close_last == late {
                    // The DISCONNECT packet makes clients see "io server disconnect".
                    socket.close(DisconnectReason::ServerShuttingDown, true);
                }
            }
        }
    }

    /// Close the client if it has joined no namespace by the connect timeout.
    fn start_connect_timer(&self, client: &Rc<Client>) {
        client.awaiting_connect.set(true);
        let deadline = Instant::now() + self.config.settings.connect_timeout;
        self.awaiting_connect
            .borrow_mut()
            .push_back((deadline, Rc::downgrade(client)));
        if !self.connect_sweeper.replace(true) {
            glommio::spawn_local(sweep_connect_timeouts(self.me.clone())).detach();
        }
    }
}

/// Close the clients that joined no namespace in time, in the order they
/// came; ends when none is waiting. (One task per shard rather than a timer
/// task per client: idle connections should cost little, and glommio 0.9
/// does not free a task cancelled through its `JoinHandle`.)
async fn sweep_connect_timeouts(me: Weak<SioShard>) {
    loop {
        let first = {
            let Some(shard) = me.upgrade() else {
                return;
            };
            let first = shard.awaiting_connect.borrow().front().map(|(at, _)| *at);
            if first.is_none() {
                // Give back the queue's room until the next client comes.
                *shard.awaiting_connect.borrow_mut() = VecDeque::new();
                shard.connect_sweeper.set(false);
            }
            first
        };
        let Some(first) = first else {
            return;
        };
        Timer::new(first.saturating_duration_since(Instant::now())).await;
        let Some(shard) = me.upgrade() else {
            return;
        };
        let now = Instant::now();
        loop {
            let due = {
                let mut waiting = shard.awaiting_connect.borrow_mut();
                match waiting.front() {
                    Some((at, _)) if *at <= now => waiting.pop_front(),
                    _ => None,
                }
            };
            let Some((_, client)) = due else {
                break;
            };
            if let Some(client) = client.upgrade() {
                if client.awaiting_connect.get() {
                    client.conn.close();
                }
            }
        }
    }
}

impl Handler for SioShard {
    fn on_open(&self, conn: &EngineSocket) {
        let protocol = match conn.protocol() {
            ProtocolVersion::V4 => Protocol::V5,
            ProtocolVersion::V3 => Protocol::V4,
        };
        let client = Rc::new(Client::new(
            conn.clone(),
            protocol,
            self.config.settings.max_attachments,
        ));
        self.add_client(client.clone());
        if let Some(observer) = &self.observer {
            observer.client_opened(conn);
        }
        match protocol {
            // v2 clients are in `/` at once, without asking.
            Protocol::V4 => self.connect(&client, "/", json!({}), None),
            Protocol::V5 => self.start_connect_timer(&client),
        }
    }

    fn on_message(&self, conn: &EngineSocket, data: Data) {
        let Some(client) = self.client(conn) else {
            return;
        };
        let decoded = {
            let mut decoder = client.decoder.borrow_mut();
            match data {
                Data::Text(text) => decoder.decode_message(text),
                Data::Binary(bytes) => decoder.decode_attachment(bytes),
            }
        };
        match decoded {
            Ok(Some(RawPacket {
                kind,
                nsp,
                query,
                id,
                payload,
                attachments,
            })) => {
                let head = PacketHead {
                    kind,
                    nsp: &nsp,
                    query: query.as_deref(),
                    id,
                };
                self.on_packet(&client, head, payload, attachments);
            }
            Ok(None) => {}
            Err(error) => {
                // As the reference server: each socket hears the error, then the connection closes.
                tracing::debug!(sid = conn.sid(), %error, "closing on an invalid Socket.IO packet");
                let message = error.to_string();
                for socket in client.sockets_snapshot() {
                    socket.report_error(&message);
                }
                conn.close();
            }
        }
    }

    fn on_upgrade(&self, conn: &EngineSocket) {
        // Only an observer wants to know (one branch without one).
        let Some(observer) = &self.observer else {
            return;
        };
        let Some(client) = self.client(conn) else {
            return;
        };
        let sockets = client.sockets_snapshot();
        let pairs: Vec<(&str, &str)> = sockets
            .iter()
            .map(|s| (s.nsp.name.as_str(), &*s.id))
            .collect();
        observer.client_upgraded(&pairs);
    }

    fn on_close(&self, conn: &EngineSocket, reason: CloseReason) {
        let sid = conn.sid_key();
        conn.set_upper(None);
        let client = self.clients.borrow_mut().remove(&sid);
        let Some(client) = client else {
            return;
        };
        client.awaiting_connect.set(false);
        if let Some(observer) = &self.observer {
            observer.client_closed(conn, reason);
        }
        let reason = DisconnectReason::from(reason);
        for socket in client.sockets_snapshot() {
            socket.close(reason, false);
        }
    }

    fn on_shutdown(&self) {
        self.close_all(false);
    }

    fn on_shutdown_late(&self) {
        self.close_all(true);
    }

    fn on_shard_message(&self, msg: Box<dyn Any + Send>) -> Option<Box<dyn Any + Send>> {
        let msg = match msg.downcast::<ClusterMsg>() {
            Ok(msg) if msg.instance == self.config.instance => msg,
            Ok(other) => return Some(other),
            Err(other) => return Some(other),
        };
        match msg.body {
            ClusterBody::Stats { origin, request } => {
                let reply = ClusterMsg {
                    instance: msg.instance,
                    nsp: String::new(),
                    body: ClusterBody::StatsReply {
                        request,
                        stats: self.local_stats(),
                    },
                };
                context::post(origin, Box::new(reply));
                return None;
            }
            ClusterBody::StatsReply { request, stats } => {
                if let Some(tx) = self.pending_stats.borrow().get(&request) {
                    let _ = tx.try_send(stats);
                }
                return None;
            }
            ClusterBody::Cluster(op) => {
                self.on_cluster_op(&msg.nsp, op);
                return None;
            }
            body @ (ClusterBody::Restore { .. }
            | ClusterBody::Restored { .. }
            | ClusterBody::Moved { .. }) => {
                let rest = self.on_recovery_message(&msg.nsp, body);
                debug_assert!(rest.is_none());
                return None;
            }
            ClusterBody::BroadcastAckEvent { request, event } => {
                if let Some(tx) = self.broadcast_acks.borrow().get(&request) {
                    let _ = tx.try_send(event);
                }
                return None;
            }
            ClusterBody::BroadcastWithAck {
                target,
                packet,
                id,
                origin,
                request,
                timeout,
            } => {
                let relay = Rc::new(AckRelay {
                    origin,
                    request,
                    deadline: Instant::now() + timeout,
                });
                let nsp = self.namespaces.borrow().get(&msg.nsp).cloned();
                let count = match nsp {
                    Some(nsp) => {
                        broadcast_ack::walk(self, &nsp, &target, None, &packet, id, &relay)
                    }
                    None => 0,
                };
                self.broadcast_ack_event(origin, request, AckEvent::ShardCount(count));
                return None;
            }
            ClusterBody::Broadcast {
                offset: Some(_), ..
            } => {
                // Kept in this shard's log: purged in time.
                self.ensure_purge();
            }
            _ => {}
        }
        let nsp = self.namespaces.borrow().get(&msg.nsp).cloned();
        for (socket, close) in self.adapter.receive(nsp.as_deref(), *msg) {
            self.disconnect(&socket, close, DisconnectReason::ServerNamespaceDisconnect);
        }
        None
    }
}

/// A decoded packet's header, borrowed from it while [`SioShard::on_packet`]
/// takes its payload and attachments.
struct PacketHead<'a> {
    kind: PacketType,
    nsp: &'a str,
    query: Option<&'a str>,
    id: Option<u64>,
}

/// A query string as a JSON object of strings, the way the reference server
/// gives v2 clients' CONNECT query as `handshake.auth`.
fn query_object(query: Option<&str>) -> Value {
    let mut object = serde_json::Map::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        object.insert(key.into_owned(), Value::String(value.into_owned()));
    }
    Value::Object(object)
}
