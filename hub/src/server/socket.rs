//! A socket: one client in one namespace, on the shard that owns it.

use std::any::{Any, TypeId};
use std::cell::{Cell, OnceCell, RefCell, RefMut};
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasherDefault;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use ahash::{AHashMap, AHashSet, AHasher};
use futures_lite::future;
use glommio::channels::local_channel::{self, LocalSender};
use glommio::timer::Timer;
use smallvec::SmallVec;

use super::adapter::Adapter;
use super::args::Args;
use super::broadcast::BroadcastOperator;
use super::broadcast_ack::AckRelay;
use super::client::Client;
use super::handshake::{Handshake, RequestInfo};
use super::namespace::{Namespace, Nsp};
use super::outgoing;
use super::reason::DisconnectReason;
use super::shard::SioShard;
use crate::engine::Socket as EngineSocket;
use crate::socketio::{is_reserved_event, Protocol};

/// Why an emit was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EmitError {
    #[error("\"{0}\" is a reserved event name")]
    Reserved(String),
    #[error("the socket is disconnected")]
    Disconnected,
}

/// Why a socket did not join a room.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum JoinError {
    /// The socket would be in more rooms than `IoSettings::max_rooms_per_socket`
    /// (its own room not counted); it joined none of those asked.
    #[error("too many rooms: a socket may be in at most {limit} (its own room not counted)")]
    TooManyRooms { limit: usize },
    /// The socket has left its namespace (or was refused at connect).
    #[error("the socket has left its namespace")]
    Disconnected,
}

/// Why an acknowledgement did not come.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    #[error("no acknowledgement within the timeout")]
    Timeout,
    #[error("the socket disconnected before acknowledging")]
    Disconnected,
}

/// Names a listener, to remove it.
///
/// A socket's listeners are numbered by a 32-bit counter, so that a
/// listener with its `once` flag takes 40 bytes rather than 48 (every
/// socket of the relay holds six). It wraps after 2^32 listeners added to
/// one socket; only then could an id name two listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(u32);

type EventHandler = Rc<dyn Fn(&Socket, Args, Option<Ack>)>;
type ReasonHandler = Rc<dyn Fn(&Socket, DisconnectReason)>;
type ErrorHandler = Rc<dyn Fn(&Socket, &str)>;
type SocketMiddleware = Rc<dyn Fn(&Socket, &str, &Args) -> Result<(), String>>;

struct Listener {
    id: ListenerId,
    event: Rc<str>,
    once: bool,
    handler: EventHandler,
}

/// Who waits for an ack from the client: one emit, or a broadcast's collector.
enum AckSink {
    One(LocalSender<Args>),
    Broadcast(Rc<AckRelay>),
}

pub(crate) struct SocketInner {
    /// Shard-local key in the namespace and room maps.
    pub key: u64,
    pub id: Rc<str>,
    pub nsp: Rc<Nsp>,
    pub shard: Weak<SioShard>,
    pub client: Rc<Client>,
    pub handshake: Handshake,
    /// Its own room first. Room for one in place: most sockets are in no
    /// other room, and a `Vec` would allocate room for four (80 bytes of
    /// heap per socket); the same 24 bytes in the socket either way.
    pub rooms: RefCell<SmallVec<[Rc<str>; 1]>>,
    pub connected: Cell<bool>,
    /// The socket left its namespace, or was refused at connect: it joins
    /// no room again (a handler holding it cannot put it back in the index).
    pub left: Cell<bool>,
    /// The last broadcast that reached (or excluded) this socket, so a socket
    /// in several target rooms gets a packet once without a set per broadcast.
    pub mark: Cell<u64>,
    listeners: RefCell<Vec<Listener>>,
    next_listener: Cell<u32>,
    /// Allocated when the first is added: most sockets have none.
    hooks: RefCell<Option<Box<Hooks>>>,
    /// The acks awaited, by id. Boxed when the first is awaited: most sockets never wait for one,
    /// and an empty table in place would cost every socket 24 bytes more.
    acks: RefCell<Option<Box<AckTable>>>,
    next_ack: Cell<u64>,
    data: RefCell<Option<SocketData>>,
    /// The private id a recovering client names its session by (set when
    /// recovery is on and the client speaks protocol v5).
    pub pid: std::cell::OnceCell<Rc<str>>,
    /// The socket came back with a recovered session.
    pub recovered: Cell<bool>,
    /// Its shard has an observer (the Admin UI): only then does an emit
    /// look for it, so that without one the hook is this one branch.
    observed: bool,
}

/// The acks a socket waits for, by ack id (a counter: a fixed hasher will
/// do, and keeps the table smaller).
type AckTable = HashMap<u64, AckSink, BuildHasherDefault<AHasher>>;

/// A socket's application data (`socket.data`): `Send + Sync`, so that a
/// session recovered on another shard takes it along.
pub(crate) type SocketData = Arc<dyn Any + Send + Sync>;

/// Event names shared by the listeners of every socket on the shard, at most
/// this many (past it, a listener has its own copy).
const SHARED_EVENT_NAMES: usize = 1024;

thread_local! {
    static EVENT_NAMES: RefCell<AHashSet<Rc<str>>> = RefCell::new(AHashSet::new());
    static STATELESS_HANDLERS: RefCell<AHashMap<TypeId, EventHandler>> =
        RefCell::new(AHashMap::new());
}

thread_local! {
    /// The socket whose application code runs now (see `run_app`): a task
    /// the code spawns with `server::spawn_local` belongs to that socket,
    /// and a panic in it costs the socket's connection. A pointer rather
    /// than a `Weak`: it is set and reset around every handler call, and a
    /// `Weak` made only when a task is spawned (rare) spares every message
    /// two reference counts and a `RefCell` (about 30 instructions).
    static RUNNING_FOR: Cell<*const SocketInner> = const { Cell::new(std::ptr::null()) };
}

/// The socket whose application code runs now, if any.
pub(crate) fn running_for() -> Option<Weak<SocketInner>> {
    let running = RUNNING_FOR.with(Cell::get);
    if running.is_null() {
        return None;
    }
    // SAFETY: a non-null pointer is only set by `as_code_of`, from
    // `Rc::as_ptr` of an `Rc` its caller holds for the whole call, and the
    // previous value is put back when that call returns or unwinds; we are
    // inside it, so the allocation is alive with a strong count of at least
    // one, and the pointer is one `Rc::from_raw` accepts. The count taken
    // here is given back when `rc` is dropped.
    let rc = unsafe {
        Rc::increment_strong_count(running);
        Rc::from_raw(running)
    };
    Some(Rc::downgrade(&rc))
}

/// Run `f` as code of `owner`; the previous owner is back afterwards,
/// also when `f` panics.
pub(crate) fn as_code_of<R>(owner: Option<&Rc<SocketInner>>, f: impl FnOnce() -> R) -> R {
    struct Restore(*const SocketInner);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = RUNNING_FOR.try_with(|running| running.set(self.0));
        }
    }
    let owner = owner.map_or(std::ptr::null(), Rc::as_ptr);
    let _restore = Restore(RUNNING_FOR.with(|running| running.replace(owner)));
    f()
}

/// An event name for a listener: an application listens for the same few
/// names on every socket, so they are shared rather than copied.
fn event_name(event: &str) -> Rc<str> {
    EVENT_NAMES.with(|names| {
        let mut names = names.borrow_mut();
        if let Some(name) = names.get(event) {
            return name.clone();
        }
        let name: Rc<str> = Rc::from(event);
        if names.len() < SHARED_EVENT_NAMES {
            names.insert(name.clone());
        }
        name
    })
}

/// A listener's handler. A closure that captures nothing is the same
/// function for every socket that registers it: one allocation is shared.
fn event_handler<F>(handler: F) -> EventHandler
where
    F: Fn(&Socket, Args, Option<Ack>) + 'static,
{
    if std::mem::size_of::<F>() != 0 {
        return Rc::new(handler);
    }
    STATELESS_HANDLERS.with(|shared| {
        shared
            .borrow_mut()
            .entry(TypeId::of::<F>())
            .or_insert_with(|| Rc::new(handler))
            .clone()
    })
}

/// A socket's middleware and its handlers other than event listeners.
#[derive(Default)]
struct Hooks {
    middlewares: Vec<SocketMiddleware>,
    on_disconnect: Vec<ReasonHandler>,
    on_disconnecting: Vec<ReasonHandler>,
    on_error: Vec<ErrorHandler>,
}

/// A client connected to one namespace (the reference server's `Socket`).
/// Cheap to clone; valid on the shard that owns it.
#[derive(Clone)]
pub struct Socket(pub(crate) Rc<SocketInner>);

/// Flags for a direct emit: `socket.volatile().emit(..)`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Flags {
    pub volatile: bool,
    pub compress: Option<bool>,
    pub binary: Option<bool>,
}

impl SocketInner {
    /// The rooms the socket is in, its own id first, as owned strings.
    pub(crate) fn room_names(&self) -> Vec<String> {
        self.rooms.borrow().iter().map(|r| r.to_string()).collect()
    }

    pub(crate) fn new(
        key: u64,
        id: Rc<str>,
        nsp: Rc<Nsp>,
        shard: Weak<SioShard>,
        client: Rc<Client>,
        handshake: Handshake,
    ) -> SocketInner {
        let observed = shard.upgrade().is_some_and(|s| s.observer.is_some());
        SocketInner {
            observed,
            key,
            id,
            nsp,
            shard,
            client,
            handshake,
            rooms: RefCell::new(SmallVec::new()),
            connected: Cell::new(false),
            left: Cell::new(false),
            mark: Cell::new(0),
            listeners: RefCell::new(Vec::new()),
            next_listener: Cell::new(0),
            hooks: RefCell::new(None),
            acks: RefCell::new(None),
            next_ack: Cell::new(0),
            data: RefCell::new(None),
            pid: std::cell::OnceCell::new(),
            recovered: Cell::new(false),
        }
    }

    /// Run application code (`what` names it) for this socket. A panic in
    /// it is contained: logged with the socket's id, counted
    /// (`hub_panics_total`), and the socket's connection is closed (after the
    /// current dispatch, see `engine::Socket::close_with`); None then.
    /// Called with no borrow of the socket or its shard live.
    pub(crate) fn run_app<R>(
        self: &Rc<Self>,
        what: &'static str,
        f: impl FnOnce() -> R,
    ) -> Option<R> {
        match crate::panics::catch(|| as_code_of(Some(self), f)) {
            Ok(value) => Some(value),
            Err(panic) => {
                self.panicked(what, &panic);
                None
            }
        }
    }

    /// Application code run for this socket panicked (`what`: a handler, or
    /// a task it spawned): log it and close the connection.
    pub(crate) fn panicked(&self, what: &'static str, panic: &crate::panics::Caught) {
        tracing::error!(
            socket = &*self.id,
            nsp = %self.nsp.name,
            sid = self.client.conn.sid(),
            handler = what,
            %panic,
            "closing a connection whose application handler panicked"
        );
        self.client.conn.close();
    }

    /// Give back the listener list's spare room (after the connection
    /// handler, which adds most of them): an idle socket keeps only what it
    /// uses.
    pub(crate) fn shrink_listeners(&self) {
        self.listeners.borrow_mut().shrink_to_fit();
    }

    /// An event from the client: socket middleware, then the listeners.
    pub(crate) fn on_event(self: &Rc<Self>, event: &str, args: Args, ack_id: Option<u64>) {
        // The common case (no socket middleware, one listener that stays)
        // without the list of matching listeners the general case builds.
        if self
            .hooks
            .borrow()
            .as_deref()
            .is_none_or(|h| h.middlewares.is_empty())
        {
            if let Some(handler) = self.sole_listener(event) {
                let socket = Socket(self.clone());
                let ack = ack_id.map(|id| Ack::new(self, id));
                let _ = self.run_app("event handler", || handler(&socket, args, ack));
                return;
            }
        }
        let socket = Socket(self.clone());
        let mut index = 0;
        loop {
            let middleware = self.hook(|h| h.middlewares.get(index).cloned()).flatten();
            let Some(middleware) = middleware else { break };
            index += 1;
            match self.run_app("socket middleware", || middleware(&socket, event, &args)) {
                Some(Ok(())) => {}
                Some(Err(message)) => {
                    self.middleware_error(&message);
                    return;
                }
                None => return,
            }
        }
        let mut ack = ack_id.map(|id| Ack::new(self, id));
        let matching: SmallVec<[(ListenerId, bool, EventHandler); 2]> = self
            .listeners
            .borrow()
            .iter()
            .filter(|l| &*l.event == event)
            .map(|l| (l.id, l.once, l.handler.clone()))
            .collect();
        if matching.iter().any(|m| m.1) {
            let once: SmallVec<[ListenerId; 2]> =
                matching.iter().filter(|m| m.1).map(|m| m.0).collect();
            self.listeners
                .borrow_mut()
                .retain(|l| !once.contains(&l.id));
        }
        let last = matching.len().saturating_sub(1);
        let mut args = Some(args);
        for (i, (_, _, handler)) in matching.into_iter().enumerate() {
            // The last handler takes the arguments and the ack: no copy, and
            // an ack never cloned needs no shared flag.
            let (a, k) = if i == last {
                (args.take().unwrap_or_default(), ack.take())
            } else {
                (args.clone().unwrap_or_default(), ack.clone())
            };
            if self
                .run_app("event handler", || handler(&socket, a, k))
                .is_none()
            {
                return;
            }
        }
    }

    /// The handler of the one listener for `event`, when exactly one
    /// listens and it is not a `once` listener; None otherwise.
    fn sole_listener(&self, event: &str) -> Option<EventHandler> {
        let listeners = self.listeners.borrow();
        let mut matching = listeners.iter().filter(|l| &*l.event == event);
        let first = matching.next()?;
        if first.once || matching.next().is_some() {
            return None;
        }
        Some(first.handler.clone())
    }

    /// A socket middleware refused a packet: the server socket hears an
    /// `error`; a v2 client also gets an error packet, as the v2 server
    /// documentation describes (the reference v4 server sends nothing).
    fn middleware_error(self: &Rc<Self>, message: &str) {
        if self.client.protocol == Protocol::V4 {
            self.client
                .send(&outgoing::v4_error(&self.nsp.name, message), false);
        }
        self.report_error(message);
    }

    /// Fire the socket's `error` listeners.
    pub(crate) fn report_error(self: &Rc<Self>, message: &str) {
        let socket = Socket(self.clone());
        let handlers: SmallVec<[ErrorHandler; 2]> = self
            .hook(|h| h.on_error.iter().cloned().collect())
            .unwrap_or_default();
        for handler in handlers {
            self.run_app("error handler", || handler(&socket, message));
        }
    }

    pub(crate) fn on_ack(&self, id: u64, args: Args) {
        let sink = self
            .acks
            .borrow_mut()
            .as_mut()
            .and_then(|acks| acks.remove(&id));
        match sink {
            Some(AckSink::One(sender)) => {
                let _ = sender.try_send(args);
            }
            Some(AckSink::Broadcast(relay)) => {
                if let Some(shard) = self.shard.upgrade() {
                    relay.deliver(&shard, args);
                }
            }
            None => {}
        }
    }

    /// Wait for this socket's ack of broadcast `id` (the packet was queued
    /// to it). Expired broadcasts' entries are dropped here, so a client
    /// that never acknowledges holds one entry per broadcast in flight.
    pub(crate) fn expect_broadcast_ack(&self, id: u64, relay: &Rc<AckRelay>) {
        let mut acks = self.acks.borrow_mut();
        let acks = acks.get_or_insert_with(Box::default);
        let now = std::time::Instant::now();
        if acks.len() >= 8 {
            acks.retain(|_, sink| match sink {
                AckSink::Broadcast(r) => r.deadline > now,
                AckSink::One(_) => true,
            });
        }
        acks.insert(id, AckSink::Broadcast(relay.clone()));
    }

    /// Leave the namespace: `disconnecting` (rooms still visible), rooms
    /// left, `disconnect`. `notify` sends the client a DISCONNECT packet.
    pub(crate) fn close(self: &Rc<Self>, reason: DisconnectReason, notify: bool) {
        if !self.connected.get() {
            return;
        }
        let socket = Socket(self.clone());
        let handlers: SmallVec<[ReasonHandler; 2]> = self
            .hook(|h| h.on_disconnecting.iter().cloned().collect())
            .unwrap_or_default();
        for handler in handlers {
            self.run_app("disconnecting handler", || handler(&socket, reason));
        }
        if let Some(shard) = self.shard.upgrade() {
            // Rooms and data as the `disconnecting` handlers left them.
            shard.socket_leaving(self, reason, self.data.borrow().clone());
        }
        if notify {
            self.client
                .send(&outgoing::disconnect(&self.nsp.name), false);
        }
        self.connected.set(false);
        if let Some(shard) = self.shard.upgrade() {
            shard.remove_socket(self, reason);
        }
        // Waiting acknowledgements fail now: dropping their senders wakes them.
        let acks = self.acks.borrow_mut().take();
        drop(acks);
        let handlers: SmallVec<[ReasonHandler; 2]> = self
            .hook(|h| h.on_disconnect.iter().cloned().collect())
            .unwrap_or_default();
        for handler in handlers {
            self.run_app("disconnect handler", || handler(&socket, reason));
        }
        // Handlers often hold the socket: drop them to break the cycle.
        self.listeners.borrow_mut().clear();
        let hooks = self.hooks.borrow_mut().take();
        drop(hooks);
        self.data.borrow_mut().take();
    }

    /// Set the socket's data as a recovered session carried it.
    pub(crate) fn set_data_shared(&self, data: SocketData) {
        *self.data.borrow_mut() = Some(data);
    }

    /// Look into the socket's hooks, if it has any.
    fn hook<T>(&self, f: impl FnOnce(&Hooks) -> T) -> Option<T> {
        self.hooks.borrow().as_deref().map(f)
    }

    /// The socket's hooks, to add one.
    fn hooks_mut(&self) -> RefMut<'_, Hooks> {
        RefMut::map(self.hooks.borrow_mut(), |hooks| {
            &mut **hooks.get_or_insert_with(Box::default)
        })
    }

    fn emit(
        self: &Rc<Self>,
        event: &str,
        args: &Args,
        flags: Flags,
        ack_id: Option<u64>,
    ) -> Result<(), EmitError> {
        if is_reserved_event(event) {
            return Err(EmitError::Reserved(event.to_string()));
        }
        if !self.connected.get() {
            return Err(EmitError::Disconnected);
        }
        if self.observed {
            if let Some(observer) = self.shard.upgrade().and_then(|s| s.observer.clone()) {
                observer.event_sent(&self.nsp.name, &self.id, event, args);
            }
        }
        if ack_id.is_none() && !flags.volatile && self.pid.get().is_some() {
            // As socket.io with recovery on: the packet gets an offset and
            // is kept, for the socket's own room, in case it is missed.
            if let Some(shard) = self.shard.upgrade() {
                shard.emit_logged(self, event, args, flags.compress);
                return Ok(());
            }
        }
        let packet = outgoing::event(&self.nsp.name, event, args, ack_id).compress(flags.compress);
        self.client.send(&packet, flags.volatile);
        Ok(())
    }

    fn emit_with_ack(
        self: &Rc<Self>,
        event: &str,
        args: &Args,
        flags: Flags,
        timeout: Duration,
    ) -> Result<impl Future<Output = Result<Args, AckError>>, EmitError> {
        let id = self.next_ack.get();
        self.next_ack.set(id + 1);
        self.emit(event, args, flags, Some(id))?;
        let (tx, rx) = local_channel::new_bounded(1);
        self.acks
            .borrow_mut()
            .get_or_insert_with(Box::default)
            .insert(id, AckSink::One(tx));
        let weak = Rc::downgrade(self);
        Ok(async move {
            let result = future::or(
                async { rx.recv().await.ok_or(AckError::Disconnected) },
                async {
                    Timer::new(timeout).await;
                    Err(AckError::Timeout)
                },
            )
            .await;
            if let Some(inner) = weak.upgrade() {
                if let Some(acks) = inner.acks.borrow_mut().as_mut() {
                    acks.remove(&id);
                }
            }
            result
        })
    }
}

impl Socket {
    /// The socket id: its own room, distinct from the Engine.IO session id.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The namespace name.
    pub fn nsp(&self) -> &str {
        &self.0.nsp.name
    }

    /// The namespace on this shard (server-level emits and room operations).
    pub fn namespace(&self) -> Namespace {
        Namespace {
            shard: self.0.shard.upgrade().expect("a socket outlives no shard"),
            nsp: self.0.nsp.clone(),
        }
    }

    /// Another namespace of the server, on this shard (the reference `socket.nsp.server.of(name)`);
    /// None when the server does not serve that name.
    pub fn of(&self, name: &str) -> Option<Namespace> {
        let shard = self.0.shard.upgrade()?;
        let nsp = shard.namespace_handle(name)?;
        Some(Namespace { shard, nsp })
    }

    /// The server this socket belongs to, on this shard (for server-wide
    /// queries such as [`LocalIo::stats`](super::LocalIo::stats)).
    pub fn server(&self) -> Option<super::LocalIo> {
        self.0.shard.upgrade().map(super::LocalIo::new)
    }

    pub fn connected(&self) -> bool {
        self.0.connected.get()
    }

    /// The rooms the socket is in, its own id first.
    pub fn rooms(&self) -> Vec<String> {
        self.0.room_names()
    }

    pub fn handshake(&self) -> &Handshake {
        &self.0.handshake
    }

    /// The Engine.IO connection: transport, remote address, session id.
    pub fn conn(&self) -> &EngineSocket {
        &self.0.client.conn
    }

    /// The HTTP request that opened the connection.
    pub fn request(&self) -> RequestInfo {
        let info = self.0.client.conn.handshake();
        RequestInfo {
            method: "GET",
            url: info.url.clone(),
            headers: info
                .headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        }
    }

    /// The connection this socket shares with the client's other namespaces.
    pub fn client(&self) -> ClientInfo {
        ClientInfo {
            conn: self.0.client.conn.clone(),
            namespaces: self.0.client.namespaces(),
            protocol: self.0.client.protocol,
        }
    }

    /// Socket.IO protocol revision of the client (v4 for v1/v2 clients).
    pub fn protocol(&self) -> Protocol {
        self.0.client.protocol
    }

    /// Attach the application's data to the socket (the reference `socket.data`),
    /// e.g. what a middleware learned from the handshake. It must be
    /// `Send + Sync`: with connection-state recovery, a session that comes
    /// back on another shard takes its data along.
    pub fn set_data<T: Send + Sync + 'static>(&self, data: T) {
        *self.0.data.borrow_mut() = Some(Arc::new(data));
    }

    /// The data set with [`Socket::set_data`], if it has type `T`.
    pub fn data<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let data = self.0.data.borrow().clone()?;
        data.downcast::<T>().ok()
    }

    /// Whether the socket came back with a recovered session
    /// (connection-state recovery): same id, rooms and data, and the
    /// missed packets sent after its CONNECT.
    pub fn recovered(&self) -> bool {
        self.0.recovered.get()
    }

    /// Add a middleware for incoming packets (`socket.use`); an `Err` stops
    /// the packet and is reported as an `error` (and, to v2 clients, sent).
    pub fn use_middleware(
        &self,
        middleware: impl Fn(&Socket, &str, &Args) -> Result<(), String> + 'static,
    ) {
        self.0.hooks_mut().middlewares.push(Rc::new(middleware));
    }

    fn add_listener(&self, event: &str, once: bool, handler: EventHandler) -> ListenerId {
        let id = ListenerId(self.0.next_listener.get());
        self.0.next_listener.set(id.0.wrapping_add(1));
        self.0.listeners.borrow_mut().push(Listener {
            id,
            event: event_name(event),
            once,
            handler,
        });
        id
    }

    /// Handle an event. The handler gets the arguments and, when the client
    /// asked for one, an [`Ack`] to answer with.
    pub fn on(
        &self,
        event: &str,
        handler: impl Fn(&Socket, Args, Option<Ack>) + 'static,
    ) -> ListenerId {
        self.add_listener(event, false, event_handler(handler))
    }

    /// Handle the next occurrence of an event only.
    pub fn once(
        &self,
        event: &str,
        handler: impl Fn(&Socket, Args, Option<Ack>) + 'static,
    ) -> ListenerId {
        self.add_listener(event, true, event_handler(handler))
    }

    /// Remove one listener; false when it was not there.
    pub fn remove_listener(&self, event: &str, id: ListenerId) -> bool {
        let mut listeners = self.0.listeners.borrow_mut();
        let before = listeners.len();
        listeners.retain(|l| !(l.id == id && &*l.event == event));
        listeners.len() != before
    }

    /// Remove every listener of `event`, or of every event when `None`.
    pub fn remove_all_listeners(&self, event: Option<&str>) {
        let mut listeners = self.0.listeners.borrow_mut();
        match event {
            Some(event) => listeners.retain(|l| &*l.event != event),
            None => listeners.clear(),
        }
    }

    /// The events that have listeners, in the order they were first added.
    pub fn event_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for l in self.0.listeners.borrow().iter() {
            if !names.iter().any(|n| **n == *l.event) {
                names.push(l.event.to_string());
            }
        }
        names
    }

    /// `disconnect` with its reason, after the socket left its rooms.
    pub fn on_disconnect(&self, handler: impl Fn(&Socket, DisconnectReason) + 'static) {
        self.0.hooks_mut().on_disconnect.push(Rc::new(handler));
    }

    /// `disconnecting`: the socket is leaving; its rooms are still visible.
    pub fn on_disconnecting(&self, handler: impl Fn(&Socket, DisconnectReason) + 'static) {
        self.0.hooks_mut().on_disconnecting.push(Rc::new(handler));
    }

    /// `error`: a socket middleware refused a packet.
    pub fn on_error(&self, handler: impl Fn(&Socket, &str) + 'static) {
        self.0.hooks_mut().on_error.push(Rc::new(handler));
    }

    /// Emit `message` (the reference `socket.send`).
    pub fn send(&self, args: Args) -> Result<(), EmitError> {
        self.emit("message", args)
    }

    /// Emit an event to this client. Reserved names are refused.
    pub fn emit(&self, event: &str, args: Args) -> Result<(), EmitError> {
        self.0.emit(event, &args, Flags::default(), None)
    }

    /// Emit and wait for the client's acknowledgement, at most `timeout`.
    pub fn emit_with_ack(
        &self,
        event: &str,
        args: Args,
        timeout: Duration,
    ) -> Result<impl Future<Output = Result<Args, AckError>>, EmitError> {
        self.0
            .emit_with_ack(event, &args, Flags::default(), timeout)
    }

    /// Emit flags for the next emit: drop the packet if the client cannot take it now.
    pub fn volatile(&self) -> SocketEmitter {
        SocketEmitter {
            socket: self.clone(),
            flags: Flags {
                volatile: true,
                ..Flags::default()
            },
        }
    }

    /// Per-message compression flag: `false` sends the packet (its text and binary attachments)
    /// uncompressed even on a WebSocket that negotiated permessage-deflate.
    pub fn compress(&self, compress: bool) -> SocketEmitter {
        SocketEmitter {
            socket: self.clone(),
            flags: Flags {
                compress: Some(compress),
                ..Flags::default()
            },
        }
    }

    /// Binary hint. Arguments carry their attachments explicitly, so nothing is scanned either way.
    pub fn binary(&self, binary: bool) -> SocketEmitter {
        SocketEmitter {
            socket: self.clone(),
            flags: Flags {
                binary: Some(binary),
                ..Flags::default()
            },
        }
    }

    /// Join a room, as [`Socket::try_join`] does, without saying whether it
    /// was refused: past `IoSettings::max_rooms_per_socket`, or once the
    /// socket has left its namespace, the room is not joined (counted in
    /// `hub_limit_refusals_total{limit="rooms_per_socket"}` and logged at
    /// debug level). Use `try_join` where a client asks for the room.
    pub fn join(&self, room: &str) {
        let _ = self.try_join(room);
    }

    /// Join several rooms, as [`Socket::try_join_many`] does, without
    /// saying whether they were refused (see [`Socket::join`]).
    pub fn join_many<'a>(&self, rooms: impl IntoIterator<Item = &'a str>) {
        let _ = self.try_join_many(rooms);
    }

    /// Join a room; an error when that would put the socket in more rooms
    /// than `IoSettings::max_rooms_per_socket` (its own room, its id, is
    /// not counted), or when it has left its namespace. Joining a room it
    /// is in already succeeds and changes nothing.
    pub fn try_join(&self, room: &str) -> Result<(), JoinError> {
        self.try_join_many([room])
    }

    /// Join several rooms, all or none: when they would put the socket over
    /// its room limit, it joins none of them.
    pub fn try_join_many<'a>(
        &self,
        rooms: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), JoinError> {
        let Some(shard) = self.0.shard.upgrade() else {
            return Err(JoinError::Disconnected);
        };
        let rooms: SmallVec<[&str; 4]> = rooms.into_iter().collect();
        shard.adapter.try_join(&self.0.nsp, &self.0, &rooms)
    }

    /// Leave a room.
    pub fn leave(&self, room: &str) {
        if let Some(shard) = self.0.shard.upgrade() {
            shard.adapter.leave(&self.0.nsp, &self.0, room);
        }
    }

    /// Broadcast to a room (chain `.to` for more), the sender excluded.
    pub fn to(&self, room: &str) -> BroadcastOperator {
        self.broadcast().to(room)
    }

    /// Alias of [`Socket::to`].
    pub fn in_(&self, room: &str) -> BroadcastOperator {
        self.to(room)
    }

    /// Broadcast to everyone but the sockets in `room` (and the sender).
    pub fn except(&self, room: &str) -> BroadcastOperator {
        self.broadcast().except(room)
    }

    /// Broadcast to every socket of the namespace but this one.
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(
            self.0.shard.upgrade().expect("a socket outlives no shard"),
            self.0.nsp.clone(),
            Some(self.0.clone()),
        )
    }

    /// Leave the namespace (`close == false`) or close the whole connection.
    pub fn disconnect(&self, close: bool) {
        if close {
            let client = self.0.client.clone();
            for socket in client.sockets_snapshot() {
                socket.close(DisconnectReason::ServerNamespaceDisconnect, true);
            }
            client.conn.close();
        } else {
            self.0
                .close(DisconnectReason::ServerNamespaceDisconnect, true);
        }
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id())
            .field("nsp", &self.nsp())
            .finish()
    }
}

/// A direct emit with flags.
pub struct SocketEmitter {
    socket: Socket,
    flags: Flags,
}

impl SocketEmitter {
    pub fn volatile(mut self) -> SocketEmitter {
        self.flags.volatile = true;
        self
    }

    pub fn compress(mut self, compress: bool) -> SocketEmitter {
        self.flags.compress = Some(compress);
        self
    }

    pub fn binary(mut self, binary: bool) -> SocketEmitter {
        self.flags.binary = Some(binary);
        self
    }

    pub fn emit(self, event: &str, args: Args) -> Result<(), EmitError> {
        self.socket.0.emit(event, &args, self.flags, None)
    }

    pub fn emit_with_ack(
        self,
        event: &str,
        args: Args,
        timeout: Duration,
    ) -> Result<impl Future<Output = Result<Args, AckError>>, EmitError> {
        self.socket
            .0
            .emit_with_ack(event, &args, self.flags, timeout)
    }
}

/// The connection a socket shares with the client's other namespaces.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub conn: EngineSocket,
    pub namespaces: Vec<String>,
    pub protocol: Protocol,
}

/// The acknowledgement a client asked for; the first `send` answers it.
pub struct Ack {
    socket: Weak<SocketInner>,
    id: u64,
    /// Answered, while this `Ack` was never cloned.
    sent: Cell<bool>,
    /// Answered, shared by the clones once there are some. Made by the
    /// first `clone` (most acks are never cloned: no allocation for them).
    shared: OnceCell<Rc<Cell<bool>>>,
}

impl Ack {
    fn new(socket: &Rc<SocketInner>, id: u64) -> Ack {
        Ack {
            socket: Rc::downgrade(socket),
            id,
            sent: Cell::new(false),
            shared: OnceCell::new(),
        }
    }

    /// Mark answered; whether it was already.
    fn mark_sent(&self) -> bool {
        match self.shared.get() {
            Some(shared) => shared.replace(true),
            None => self.sent.replace(true),
        }
    }

    /// Answer with `args`; false when already answered or disconnected.
    pub fn send(&self, args: Args) -> bool {
        if self.mark_sent() {
            return false;
        }
        let Some(socket) = self.socket.upgrade() else {
            return false;
        };
        if !socket.connected.get() {
            return false;
        }
        socket
            .client
            .send_owned(outgoing::ack(&socket.nsp.name, self.id, &args), false);
        true
    }
}

impl Clone for Ack {
    /// A clone answers the same request: once one of them has sent, the
    /// others' `send` is refused.
    fn clone(&self) -> Ack {
        let shared = self
            .shared
            .get_or_init(|| Rc::new(Cell::new(self.sent.get())))
            .clone();
        Ack {
            socket: self.socket.clone(),
            id: self.id,
            sent: Cell::new(false),
            shared: OnceCell::from(shared),
        }
    }
}
