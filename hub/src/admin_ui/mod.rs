//! Socket.IO Admin UI compatibility (`@socket.io/admin-ui` 0.5.1): the
//! namespace the official UI (https://admin.socket.io, or its `ui/dist`)
//! connects to, as an add-on over the library's public Socket.IO API, as
//! the Node package is an add-on to socket.io.
//!
//! ```no_run
//! use hub::admin_ui::{AdminUi, AdminUiConfig, BasicAuth};
//! use hub::engine::{EngineConfig, ServerConfig};
//! use hub::server::Io;
//! use hub::shard::Server;
//!
//! let admin = AdminUi::new(AdminUiConfig {
//!     auth: Some(BasicAuth {
//!         username: "admin".into(),
//!         // bcrypt of "changeit"
//!         password_hash: "$2b$10$heqvAkYMez.Va6Et2uXInOnkCT6/uQj1brkrbyG3LpopDklcq7ZOS".into(),
//!     }),
//!     ..AdminUiConfig::default()
//! })
//! .expect("a valid hash");
//! let io = admin.instrument(Io::builder().of("/", |nsp| nsp)).build();
//! Server::new(ServerConfig::default())
//!     .endpoint(EngineConfig::new("/socket.io/"), io.handler_factory())
//!     .task(admin.task(&io))
//!     .start()
//!     .expect("start")
//!     .join()
//!     .expect("run");
//! ```
//!
//! What it does:
//! - the namespace (`/admin` by default) checks `auth.username` and
//!   `auth.password` against a bcrypt hash, on glommio's blocking thread
//!   (a check takes tens of ms), hands back a `session` id that a
//!   reconnecting UI may give instead, on any shard; `invalid credentials`
//!   otherwise. Without [`AdminUiConfig::auth`] anyone may connect;
//! - each admin socket gets `config` (the supported features), then the
//!   current `server_stats` and, in development mode, `all_sockets`;
//! - `server_stats` every 2 s, one per process, gathered from every shard
//!   (`serverId` = the host name, or [`AdminUiConfig::server_id`]);
//! - unless readonly: the `emit`, `join`, `leave` and `_disconnect`
//!   commands, on every shard (and every node of a cluster);
//! - in development mode: the socket, room and event events (`dev`).

pub mod aggregate;
pub mod commands;
mod dev;
pub mod serialize;
pub mod sessions;
#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ahash::AHashMap;
use glommio::timer::Timer;
use serde_json::{json, Value};

use crate::engine::{CloseReason, Socket as EngineSocket};
use crate::engineio::Text;
use crate::server::{
    Args, ConnectError, Io, IoBuilder, LocalIo, MiddlewareFuture, Observer, Socket,
};
use crate::shard::{LocalTask, ShardTask};
use aggregate::{Buckets, Sampler, Totals, CLOSE_REASONS};
use commands::{Command, COMMANDS};
use dev::Notice;
use serialize::ServerIdentity;
use sessions::SessionSet;

/// What the UI sees of the server: only `config` and `server_stats`
/// (production), or every socket, room and event too (development).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Production,
    Development,
}

/// The username and bcrypt hash an Admin UI logs in with.
#[derive(Clone, Debug)]
pub struct BasicAuth {
    pub username: String,
    /// A bcrypt hash (`$2a$`, `$2b$`, `$2x$` or `$2y$`) of the password.
    pub password_hash: String,
}

/// How the Admin UI namespace is set up.
#[derive(Clone, Debug)]
pub struct AdminUiConfig {
    /// The namespace the UI connects to (`/admin`).
    pub namespace: String,
    /// None: anyone who reaches the server may connect (`auth: false`).
    pub auth: Option<BasicAuth>,
    /// Obey no command (the UI only looks).
    pub readonly: bool,
    pub mode: Mode,
    /// Most login sessions held (the oldest is forgotten past it).
    pub max_sessions: usize,
    /// The `serverId` of `server_stats` (default: the host name).
    pub server_id: Option<String>,
    /// Most socket, room and event notices waiting per shard for the
    /// admin sockets (development mode); more are dropped and counted.
    pub max_pending_events: usize,
}

impl Default for AdminUiConfig {
    fn default() -> Self {
        AdminUiConfig {
            namespace: "/admin".into(),
            auth: None,
            readonly: false,
            mode: Mode::Development,
            max_sessions: 1024,
            server_id: None,
            max_pending_events: 10_000,
        }
    }
}

/// Why the Admin UI cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum AdminUiError {
    #[error("not a valid bcrypt hash: {0}")]
    InvalidHash(String),
}

/// Password checks running at once on one shard; a login past it is
/// refused (a flood of logins must not queue CPU work without end). One
/// of them at most per remote address (see [`CheckSlot`]).
const MAX_PENDING_CHECKS: usize = 4;
/// How often `server_stats` goes out.
const STATS_INTERVAL: Duration = Duration::from_secs(2);
/// How often each shard samples its counters into the aggregated events.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) struct Shared {
    config: AdminUiConfig,
    features: Vec<&'static str>,
    sessions: Mutex<SessionSet>,
    buckets: Mutex<Buckets>,
    identity: ServerIdentity,
    started: Instant,
    /// Admin sockets connected, on every shard (development notices are
    /// queued only while there is one).
    admin_sockets: AtomicUsize,
    /// The server is a node of a cluster: the development notices go out
    /// even with no admin socket here, for those of the other nodes (as
    /// in Node, whose notices go through the adapter: each is then a
    /// publish to the cluster). Set by [`AdminUi::task`].
    clustered: AtomicBool,
    /// Tells this Admin UI's per-shard state from another's on a thread.
    instance: u64,
}

/// The Admin UI add-on: [`AdminUi::instrument`] an `IoBuilder`, then run
/// [`AdminUi::task`] on the server.
#[derive(Clone)]
pub struct AdminUi {
    shared: Arc<Shared>,
}

thread_local! {
    /// This shard's observers, by Admin UI instance.
    static OBSERVERS: RefCell<AHashMap<u64, Weak<ShardObserver>>> = RefCell::new(AHashMap::new());
    /// The addresses whose password check runs on this shard (at most
    /// [`MAX_PENDING_CHECKS`]).
    static CHECKING: RefCell<Vec<IpAddr>> = const { RefCell::new(Vec::new()) };
}

impl AdminUi {
    /// Check the configuration (the hash must parse as bcrypt).
    pub fn new(mut config: AdminUiConfig) -> Result<AdminUi, AdminUiError> {
        if let Some(auth) = &config.auth {
            auth.password_hash
                .parse::<bcrypt::HashParts>()
                .map_err(|e| AdminUiError::InvalidHash(e.to_string()))?;
        }
        if !config.namespace.starts_with('/') {
            config.namespace = format!("/{}", config.namespace);
        }
        let hostname = hostname();
        let identity = ServerIdentity {
            server_id: config.server_id.clone().unwrap_or_else(|| hostname.clone()),
            hostname,
            pid: std::process::id(),
        };
        Ok(AdminUi {
            shared: Arc::new(Shared {
                features: serialize::features(config.readonly, config.mode),
                sessions: Mutex::new(SessionSet::new(config.max_sessions)),
                buckets: Mutex::new(Buckets::default()),
                identity,
                started: Instant::now(),
                admin_sockets: AtomicUsize::new(0),
                clustered: AtomicBool::new(false),
                instance: rand::random(),
                config,
            }),
        })
    }

    /// The features `config` announces.
    pub fn features(&self) -> &[&'static str] {
        &self.shared.features
    }

    /// Add the admin namespace and the observer to a server being built.
    pub fn instrument(&self, builder: IoBuilder) -> IoBuilder {
        let shared = self.shared.clone();
        let observe = self.shared.clone();
        let name = self.shared.config.namespace.clone();
        builder
            .observe(Arc::new(move |_shard| {
                let observer = Rc::new(ShardObserver::new(observe.clone()));
                OBSERVERS.with(|o| {
                    o.borrow_mut()
                        .insert(observe.instance, Rc::downgrade(&observer))
                });
                observer as Rc<dyn Observer>
            }))
            .of(&name, move |nsp| {
                let auth = shared.clone();
                let connect = shared.clone();
                nsp.use_async_middleware(move |socket| authenticate(&auth, socket))
                    .close_last()
                    .on_connection(move |socket| on_admin_connection(&connect, socket))
            })
    }

    /// The task that samples each shard's counters every second and, on
    /// shard 0, sends `server_stats` every 2 s (give it to `Server::task`).
    pub fn task(&self, io: &Io) -> ShardTask {
        self.shared
            .clustered
            .store(io.cluster_status().is_some(), Ordering::Relaxed);
        let (shared, io) = (self.shared.clone(), io.clone());
        Arc::new(move |shard| {
            let (shared, io) = (shared.clone(), io.clone());
            let task: LocalTask = Box::pin(async move {
                let Some(local) = io.local() else {
                    return;
                };
                run_shard(shared, local, shard).await;
            });
            Some(task)
        })
    }
}

/// This shard's part: its counters into the process's buckets each
/// second; on shard 0 also `server_stats` every 2 s.
async fn run_shard(shared: Arc<Shared>, io: LocalIo, shard: usize) {
    let mut sampler = Sampler::default();
    // The baseline: what the shard counted before it started serving.
    if let Ok(mut buckets) = shared.buckets.lock() {
        sampler.sample(shard_totals(&shared), unix_ms(), &mut buckets);
    }
    let mut ticks = 0u64;
    loop {
        Timer::new(SAMPLE_INTERVAL).await;
        let totals = shard_totals(&shared);
        if let Ok(mut buckets) = shared.buckets.lock() {
            sampler.sample(totals, unix_ms(), &mut buckets);
        }
        if shard != 0 {
            continue;
        }
        let sessions = shared.sessions.lock().map_or(0, |s| s.len());
        crate::metrics::with(|m| {
            m.admin_ui_sessions.set(sessions as i64);
        });
        ticks += 1;
        if !ticks.is_multiple_of(STATS_INTERVAL.as_secs() / SAMPLE_INTERVAL.as_secs()) {
            continue;
        }
        let shards = io.stats().await;
        let aggregated = shared
            .buckets
            .lock()
            .map(|mut b| b.drain())
            .unwrap_or_default();
        let stats = serialize::server_stats(
            &shared.identity,
            shared.started.elapsed().as_secs_f64(),
            &shards,
            aggregated,
        );
        if let Some(nsp) = io.of(&shared.config.namespace) {
            let _ = nsp.emit("server_stats", Args::new().arg(stats));
        }
    }
}

/// This shard's running totals: connections and disconnections as its
/// observer counted them, packets and bytes as its metrics did (zero
/// without metrics).
fn shard_totals(shared: &Shared) -> Totals {
    let mut totals = Totals::default();
    if let Some(observer) = OBSERVERS.with(|o| o.borrow().get(&shared.instance).cloned()) {
        if let Some(observer) = observer.upgrade() {
            totals.connections = observer.connections.get();
            for (i, count) in observer.disconnections.iter().enumerate() {
                totals.disconnections[i] = count.get();
            }
        }
    }
    crate::metrics::with(|m| {
        totals.packets_in = m.packets_in.get();
        totals.packets_out = m.packets_out.get();
        totals.bytes_in = m.bytes_in.get();
        totals.bytes_out = m.bytes_out.get();
    });
    totals
}

/// The index of an Engine.IO close reason in [`CLOSE_REASONS`].
fn close_reason_index(reason: CloseReason) -> usize {
    let name = match reason {
        CloseReason::PacketRateExceeded => "transport error",
        other => other.as_str(),
    };
    CLOSE_REASONS.iter().position(|r| *r == name).unwrap_or(4)
}

/// A place among this shard's password checks, held by the address that
/// asked while its check runs (and given back if the login's task is
/// dropped). One per address: a host that floods wrong logins holds one
/// place, not all of them, so an admin elsewhere still gets a check (a
/// flood from many addresses, or through one proxy, still fills them).
struct CheckSlot(IpAddr);

impl CheckSlot {
    fn take(address: IpAddr) -> Option<CheckSlot> {
        CHECKING.with(|checking| {
            let mut checking = checking.borrow_mut();
            if checking.len() >= MAX_PENDING_CHECKS || checking.contains(&address) {
                return None;
            }
            checking.push(address);
            Some(CheckSlot(address))
        })
    }
}

impl Drop for CheckSlot {
    fn drop(&mut self) {
        CHECKING.with(|checking| checking.borrow_mut().retain(|a| *a != self.0));
    }
}

/// Marks a socket that logged in with a password: it is told its new session.
struct NewSession(String);

/// The namespace middleware: a known session, or the username and the
/// password (checked on the blocking thread), or `invalid credentials`.
fn authenticate(shared: &Arc<Shared>, socket: &Socket) -> MiddlewareFuture {
    let shared = shared.clone();
    let socket = socket.clone();
    Box::pin(async move {
        let Some(basic) = shared.config.auth.clone() else {
            return Ok(());
        };
        let auth = &socket.handshake().auth;
        if let Some(id) = auth.get("sessionId").and_then(Value::as_str) {
            if !id.is_empty() && shared.sessions.lock().is_ok_and(|s| s.contains(id)) {
                return Ok(());
            }
        }
        let username = auth.get("username").and_then(Value::as_str);
        let password = auth.get("password").and_then(Value::as_str);
        if let (Some(username), Some(password)) = (username, password) {
            let slot = (username == basic.username)
                .then(|| CheckSlot::take(socket.handshake().address().ip()))
                .flatten();
            if let Some(slot) = slot {
                let password = password.to_string();
                let hash = basic.password_hash.clone();
                // bcrypt takes tens of ms by design: never on the shard's executor.
                let ok = glommio::executor()
                    .spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                    .await;
                drop(slot);
                if ok {
                    let id = sessions::new_session_id();
                    if let Ok(mut sessions) = shared.sessions.lock() {
                        sessions.insert(id.clone());
                    }
                    socket.set_data(NewSession(id));
                    return Ok(());
                }
            }
        }
        crate::metrics::with(|m| {
            m.admin_ui_failed_logins.inc();
        });
        tracing::info!(address = %socket.handshake().address(), "admin UI login refused");
        Err(ConnectError::new("invalid credentials"))
    })
}

/// An admin socket connected: its session, `config`, the stats now (and
/// every socket, in development mode), and its commands.
fn on_admin_connection(shared: &Arc<Shared>, socket: &Socket) {
    crate::metrics::with(|m| {
        m.admin_ui_sockets.inc();
    });
    shared.admin_sockets.fetch_add(1, Ordering::Relaxed);
    let counted = shared.clone();
    socket.on_disconnect(move |_, _| {
        counted.admin_sockets.fetch_sub(1, Ordering::Relaxed);
        crate::metrics::with(|m| {
            m.admin_ui_sockets.dec();
        });
    });
    if let Some(session) = socket.data::<NewSession>() {
        let _ = socket.emit("session", Args::new().arg(session.0.clone()));
    }
    let config = json!({ "supportedFeatures": shared.features });
    let _ = socket.emit("config", Args::new().arg(config));
    if let Some(io) = socket.server() {
        let (shared, socket) = (shared.clone(), socket.clone());
        crate::server::spawn_local(async move {
            let shards = io.stats().await;
            if shared.config.mode == Mode::Development {
                let mut all = Vec::new();
                let names: std::collections::BTreeSet<String> = shards
                    .iter()
                    .flat_map(|s| s.namespaces.keys().cloned())
                    .collect();
                for name in names {
                    if let Some(nsp) = io.of(&name) {
                        all.extend(nsp.fetch_sockets().await.iter().map(serialize::socket));
                    }
                }
                let _ = socket.emit("all_sockets", Args::new().arg(Value::Array(all)));
            }
            let stats = serialize::server_stats(
                &shared.identity,
                shared.started.elapsed().as_secs_f64(),
                &shards,
                Vec::new(),
            );
            let _ = socket.emit("server_stats", Args::new().arg(stats));
        });
    }
    if shared.config.readonly {
        return;
    }
    for event in COMMANDS {
        socket.on(event, move |socket, args, _ack| {
            if let Some(command) = commands::parse(event, args.values()) {
                apply(socket, command, args.attachments());
            }
        });
    }
}

/// Carry out a command on every shard (and node) through the namespace's
/// broadcast operator. `attachments` are the command's binary arguments:
/// the placeholders of an `emit`'s arguments name them by their index in
/// the whole command, so all of them go along.
fn apply(socket: &Socket, command: Command, attachments: &[bytes::Bytes]) {
    let (Command::Emit { nsp, .. }
    | Command::Join { nsp, .. }
    | Command::Leave { nsp, .. }
    | Command::Disconnect { nsp, .. }) = &command;
    let Some(namespace) = socket.of(nsp) else {
        return;
    };
    let target = |filter: &Option<String>| match filter {
        Some(room) => namespace.in_(room),
        None => namespace.all(),
    };
    tracing::debug!(?command, "admin UI command");
    match &command {
        Command::Emit {
            filter,
            event,
            args,
            ..
        } => {
            let args = Args::from_parts(args.clone(), attachments.to_vec());
            let _ = target(filter).emit(event, args);
        }
        Command::Join { room, filter, .. } => target(filter).sockets_join(room),
        Command::Leave { room, filter, .. } => target(filter).sockets_leave(room),
        Command::Disconnect { close, filter, .. } => target(filter).disconnect_sockets(*close),
    }
}

/// What one shard's server does, as the Admin UI counts and relays it.
pub(crate) struct ShardObserver {
    connections: Cell<u64>,
    disconnections: [Cell<u64>; CLOSE_REASONS.len()],
    /// Development mode: the notices waiting for the admin sockets.
    dev: Option<dev::DevEvents>,
}

impl ShardObserver {
    fn new(shared: Arc<Shared>) -> ShardObserver {
        let dev = (shared.config.mode == Mode::Development).then(|| dev::DevEvents::new(shared));
        ShardObserver {
            connections: Cell::new(0),
            disconnections: Default::default(),
            dev,
        }
    }
}

impl Observer for ShardObserver {
    fn client_opened(&self, _conn: &EngineSocket) {
        self.connections.set(self.connections.get() + 1);
    }

    fn client_closed(&self, _conn: &EngineSocket, reason: CloseReason) {
        let count = &self.disconnections[close_reason_index(reason)];
        count.set(count.get() + 1);
    }

    fn client_upgraded(&self, sockets: &[(&str, &str)]) {
        if let Some(dev) = self.watching() {
            for (nsp, id) in sockets {
                dev.push(Notice::SocketUpdated {
                    nsp: nsp.to_string(),
                    id: id.to_string(),
                    transport: "websocket",
                });
            }
        }
    }

    fn socket_connected(&self, socket: &Socket) {
        if let Some(dev) = &self.dev {
            dev.socket_connected(socket);
        }
    }

    fn socket_disconnected(
        &self,
        nsp: &str,
        id: &str,
        reason: crate::server::DisconnectReason,
        rooms: &[String],
    ) {
        if let Some(dev) = self.watching() {
            dev.push(Notice::SocketDisconnected {
                nsp: nsp.to_string(),
                id: id.to_string(),
                reason: reason.as_str(),
                rooms: rooms.to_vec(),
            });
        }
    }

    fn room_joined(&self, nsp: &str, room: &str, id: &str) {
        if let Some(dev) = self.watching() {
            dev.push(Notice::RoomJoined {
                nsp: nsp.to_string(),
                room: room.to_string(),
                id: id.to_string(),
            });
        }
    }

    fn room_left(&self, nsp: &str, room: &str, id: &str) {
        if let Some(dev) = self.watching() {
            dev.push(Notice::RoomLeft {
                nsp: nsp.to_string(),
                room: room.to_string(),
                id: id.to_string(),
            });
        }
    }

    fn event_received(&self, nsp: &str, id: &str, event: &str, args: &Args) {
        if let Some(dev) = self.watching().filter(|d| !d.is_admin(nsp)) {
            let mut values = vec![Value::from(event)];
            values.extend(args.values().iter().cloned());
            dev.push(Notice::EventReceived {
                nsp: nsp.to_string(),
                id: id.to_string(),
                args: values,
            });
        }
    }

    fn event_sent(&self, nsp: &str, id: &str, event: &str, args: &Args) {
        if let Some(dev) = self.watching().filter(|d| !d.is_admin(nsp)) {
            let mut values = vec![Value::from(event)];
            values.extend(args.values().iter().cloned());
            dev.push(Notice::EventSent {
                nsp: nsp.to_string(),
                id: id.to_string(),
                args: values,
            });
        }
    }

    fn packet_sent(&self, nsp: &str, id: &str, packet: &Text) {
        if let Some(dev) = self.watching().filter(|d| !d.is_admin(nsp)) {
            dev.push(Notice::PacketSent {
                nsp: nsp.to_string(),
                id: id.to_string(),
                packet: packet.clone(),
            });
        }
    }
}

impl ShardObserver {
    /// The development notices, when on and an admin socket listens.
    fn watching(&self) -> Option<&dev::DevEvents> {
        self.dev.as_ref().filter(|d| d.watching())
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The host's name (`gethostname`), or `localhost`.
pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_string(),
        _ => "localhost".to_string(),
    }
}
