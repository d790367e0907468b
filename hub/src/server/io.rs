//! Building a Socket.IO server: its namespaces, their middleware and
//! connection handlers. What is built here is shared by every shard, so it
//! is `Send + Sync`; what a handler does with a socket stays on its shard.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::args::Args;
use super::cluster::link::Link;
use super::cluster::{ClusterConfig, ClusterShared, ClusterStatus, LINK_SHARD};
use super::recovery::RecoveryConfig;
use super::shard::SioShard;
use super::socket::Socket;
use crate::engine::{Handler, HandlerFactory};
use crate::shard::{LocalTask, ShardTask};

/// A namespace middleware's refusal: the client gets `connect_error`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectError {
    pub message: String,
    /// Sent to v3/v4 clients as `err.data`; v2 clients get the message only.
    pub data: Option<Value>,
}

impl ConnectError {
    pub fn new(message: impl Into<String>) -> ConnectError {
        ConnectError {
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> ConnectError {
        self.data = Some(data);
        self
    }
}

pub type ConnectionHandler = Arc<dyn Fn(&Socket) + Send + Sync>;
/// Runs before a socket connects: it sees the socket (its handshake, auth,
/// id) and may refuse it.
pub type NamespaceMiddleware = Arc<dyn Fn(&Socket) -> Result<(), ConnectError> + Send + Sync>;
pub type NamespaceMatcher = Arc<dyn Fn(&str) -> bool + Send + Sync>;
/// What an asynchronous middleware returns: a future run on the socket's
/// shard, which may await (a blocking-thread computation, a lookup).
pub type MiddlewareFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ConnectError>>>>;
/// A namespace middleware that answers later ([`NamespaceBuilder::use_async_middleware`]).
pub type AsyncNamespaceMiddleware = Arc<dyn Fn(&Socket) -> MiddlewareFuture + Send + Sync>;
/// Runs for a server-side emit from another node of the cluster (Node's
/// `io.on(event, (...args, ack) => ..)`), on shard 0: the arguments after
/// the event name, and the ack when the sender waits for one.
pub type ServerSideHandler =
    Arc<dyn Fn(&super::Namespace, &Args, Option<super::ServerSideAck>) + Send + Sync>;
/// As [`ServerSideHandler`], for any event: its name comes second.
pub type ServerSideAnyHandler =
    Arc<dyn Fn(&super::Namespace, &str, &Args, Option<super::ServerSideAck>) + Send + Sync>;

#[derive(Clone, Default)]
pub(crate) struct NamespaceDef {
    pub middlewares: Vec<NamespaceMiddleware>,
    /// Run after `middlewares`, in order, each awaited before the next.
    pub async_middlewares: Vec<AsyncNamespaceMiddleware>,
    pub on_connection: Vec<ConnectionHandler>,
    pub close_last: bool,
    /// Serves every name a matcher accepts (`of_dynamic`): such a namespace
    /// is removed from its shard when its last socket leaves.
    pub dynamic: bool,
    /// Handlers of server-side emits from other nodes, by event.
    pub server_side: Vec<(String, ServerSideHandler)>,
    /// The handler of server-side emits no handler above takes.
    pub server_side_any: Option<ServerSideAnyHandler>,
}

/// The middleware and connection handler of one namespace (or of every
/// dynamic namespace one matcher accepts).
pub struct NamespaceBuilder {
    def: NamespaceDef,
}

impl NamespaceBuilder {
    /// Add a middleware (`io.use`); they run in order at every connect.
    pub fn use_middleware(
        mut self,
        middleware: impl Fn(&Socket) -> Result<(), ConnectError> + Send + Sync + 'static,
    ) -> NamespaceBuilder {
        self.def.middlewares.push(Arc::new(middleware));
        self
    }

    /// Add a middleware that may await before it answers (a password hash
    /// checked on a blocking thread, say). They run after the synchronous
    /// ones, in order. While one is pending the client's CONNECT for this
    /// namespace is in progress: a second CONNECT to it is ignored, and a
    /// connection that closes meanwhile never gets the socket.
    pub fn use_async_middleware(
        mut self,
        middleware: impl Fn(&Socket) -> MiddlewareFuture + Send + Sync + 'static,
    ) -> NamespaceBuilder {
        self.def.async_middlewares.push(Arc::new(middleware));
        self
    }

    /// On shutdown, disconnect this namespace's sockets only after every
    /// other namespace's, on every shard: a monitoring namespace then sees
    /// the others leave.
    pub fn close_last(mut self) -> NamespaceBuilder {
        self.def.close_last = true;
        self
    }

    /// Handle `event` emitted by another node with `serverSideEmit` (runs
    /// on shard 0, where the cluster's link is).
    pub fn on_server_side(
        mut self,
        event: &str,
        handler: impl Fn(&super::Namespace, &Args, Option<super::ServerSideAck>) + Send + Sync + 'static,
    ) -> NamespaceBuilder {
        self.def
            .server_side
            .push((event.to_string(), Arc::new(handler)));
        self
    }

    /// Handle every server-side emit from another node that no
    /// [`NamespaceBuilder::on_server_side`] handler takes, with its event name.
    pub fn on_server_side_any(
        mut self,
        handler: impl Fn(&super::Namespace, &str, &Args, Option<super::ServerSideAck>)
            + Send
            + Sync
            + 'static,
    ) -> NamespaceBuilder {
        self.def.server_side_any = Some(Arc::new(handler));
        self
    }

    /// What to do with each connected socket (`io.on("connection")`), on
    /// its shard. Each call adds a handler; they run in the order added.
    pub fn on_connection(
        mut self,
        handler: impl Fn(&Socket) + Send + Sync + 'static,
    ) -> NamespaceBuilder {
        self.def.on_connection.push(Arc::new(handler));
        self
    }
}

/// Settings of the Socket.IO layer.
#[derive(Clone, Debug)]
pub struct IoSettings {
    /// A client that connects to no namespace within this time is closed.
    pub connect_timeout: Duration,
    /// Most binary attachments one packet may announce.
    pub max_attachments: usize,
    /// Most namespaces one Engine.IO connection may have open at once; a
    /// CONNECT past it is answered with a CONNECT_ERROR ("too many
    /// namespaces") and the connection stays open. 0: no limit.
    ///
    /// The reference server has no such limit. The default, 100, is far
    /// above what applications multiplex over one connection (one
    /// namespace per feature: a handful), and bounds what one connection
    /// can make the server hold at about 100 sockets.
    pub max_namespaces_per_connection: usize,
    /// Most rooms a socket may be in, its own room (its id) not counted;
    /// [`Socket::try_join`](super::Socket::try_join) past it fails with
    /// [`JoinError::TooManyRooms`](super::JoinError). 0: no limit.
    ///
    /// The default, 1,000, leaves room for an application that subscribes
    /// a socket to many topics, and bounds a socket's share of the room
    /// index (a few hundred KB at most).
    pub max_rooms_per_socket: usize,
}

impl Default for IoSettings {
    fn default() -> Self {
        IoSettings {
            connect_timeout: Duration::from_secs(45),
            max_attachments: 64,
            max_namespaces_per_connection: 100,
            max_rooms_per_socket: 1_000,
        }
    }
}

pub(crate) struct IoConfig {
    pub settings: IoSettings,
    pub namespaces: Vec<(String, NamespaceDef)>,
    pub dynamic: Vec<(NamespaceMatcher, NamespaceDef)>,
    /// Tells this server's cross-shard messages from another's in the same process.
    pub instance: u64,
    /// The cluster this server is a node of, if any.
    pub cluster: Option<Arc<ClusterShared>>,
    /// Connection-state recovery, when on.
    pub recovery: Option<RecoveryConfig>,
    /// Makes each shard's observer, when one watches the server.
    pub observer: Option<super::ObserverFactory>,
}

impl IoConfig {
    /// The definition serving namespace `name`, static ones first.
    pub fn namespace(&self, name: &str) -> Option<&NamespaceDef> {
        self.namespaces
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d)
            .or_else(|| {
                self.dynamic
                    .iter()
                    .find(|(matches, _)| matches(name))
                    .map(|(_, d)| d)
            })
    }
}

/// A Socket.IO server, ready to be mounted on an Engine.IO endpoint:
/// `Server::new(..).endpoint(EngineConfig::new("/socket.io/"), io.handler_factory())`.
#[derive(Clone)]
pub struct Io {
    pub(crate) config: Arc<IoConfig>,
}

impl Io {
    pub fn builder() -> IoBuilder {
        IoBuilder {
            settings: IoSettings::default(),
            namespaces: Vec::new(),
            dynamic: Vec::new(),
            cluster: None,
            recovery: None,
            observer: None,
        }
    }

    /// The state of this node's link to its cluster (None without one).
    pub fn cluster_status(&self) -> Option<Arc<ClusterStatus>> {
        self.config.cluster.as_ref().map(|c| c.status.clone())
    }

    /// The task that runs the link to the cluster on shard 0: give it to
    /// `Server::task` with the endpoint (it does nothing without a cluster).
    pub fn cluster_task(&self) -> ShardTask {
        let config = self.config.clone();
        Arc::new(move |shard| {
            let cluster = config.cluster.clone()?;
            if shard != LINK_SHARD {
                return None;
            }
            let sio = super::shard::local(config.instance)?;
            // `/` always, as a Node server always has it: the other nodes
            // count servers on its request channel.
            let mut declared: Vec<String> =
                config.namespaces.iter().map(|(n, _)| n.clone()).collect();
            if !declared.iter().any(|n| n == "/") {
                declared.push("/".to_string());
            }
            let link = Link::new(cluster, &sio, &declared);
            sio.set_link(link.clone());
            Some(Box::pin(link.run()) as LocalTask)
        })
    }

    /// This server as seen from the shard running the caller (None off
    /// the shards): for code beside the handlers, such as an admin API.
    pub fn local(&self) -> Option<LocalIo> {
        super::shard::local(self.config.instance).map(|shard| LocalIo { shard })
    }

    /// One Socket.IO shard state per Engine.IO shard.
    pub fn handler_factory(&self) -> HandlerFactory {
        let config = self.config.clone();
        Arc::new(move |shard| SioShard::new(config.clone(), shard) as Rc<dyn Handler>)
    }
}

pub struct IoBuilder {
    settings: IoSettings,
    namespaces: Vec<(String, NamespaceDef)>,
    dynamic: Vec<(NamespaceMatcher, NamespaceDef)>,
    cluster: Option<ClusterConfig>,
    recovery: Option<RecoveryConfig>,
    observer: Option<super::ObserverFactory>,
}

impl IoBuilder {
    /// Watch the server with an [`Observer`](super::Observer) per shard,
    /// made by `factory` on each shard as it starts (one observer: a later
    /// call replaces an earlier one).
    pub fn observe(mut self, factory: super::ObserverFactory) -> IoBuilder {
        self.observer = Some(factory);
        self
    }

    /// The namespaces declared so far (for an add-on that instruments the
    /// builder, such as the Admin UI).
    pub fn declared_namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.iter().map(|(n, _)| n.as_str())
    }

    /// Turn on connection-state recovery (socket.io's
    /// `connectionStateRecovery`): a client that reconnects within the
    /// window, on any shard, gets its socket id, rooms and data back and
    /// the packets it missed, and [`Socket::recovered`] is true. With it,
    /// every broadcast EVENT that is not volatile and asks no ack, and
    /// every `socket.emit` without ack, carries an offset as its last
    /// argument (as socket.io's), which clients' listeners see.
    /// Within one node: a client that reconnects to another node of a
    /// cluster gets a fresh session.
    pub fn recovery(mut self, config: RecoveryConfig) -> IoBuilder {
        self.recovery = Some(config);
        self
    }

    pub fn settings(mut self, settings: IoSettings) -> IoBuilder {
        self.settings = settings;
        self
    }

    /// Join a cluster on Redis, with Node's `@socket.io/redis-adapter`
    /// wire format (see `docs/cluster.md`); run [`Io::cluster_task`] on the server.
    pub fn cluster(mut self, config: ClusterConfig) -> IoBuilder {
        self.cluster = Some(config);
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> IoBuilder {
        self.settings.connect_timeout = timeout;
        self
    }

    /// A namespace (`io.of(name)`); `/` is served only when declared.
    pub fn of(
        mut self,
        name: &str,
        build: impl FnOnce(NamespaceBuilder) -> NamespaceBuilder,
    ) -> IoBuilder {
        let def = build(NamespaceBuilder {
            def: NamespaceDef::default(),
        })
        .def;
        let name = normalize(name);
        self.namespaces.retain(|(n, _)| *n != name);
        self.namespaces.push((name, def));
        self
    }

    /// Dynamic namespaces: every name `matches` accepts is served by one
    /// definition. Each such namespace exists on a shard while it has
    /// sockets there: it is created by the first socket that connects to
    /// it and removed when the last one leaves (the reference server's
    /// `cleanupEmptyChildNamespaces`, always on here: a namespace holds no
    /// state of the application's, so nothing is lost), so a client
    /// connecting to many names leaves nothing behind. A [`Namespace`]
    /// handle the application keeps still works after its namespace was
    /// removed, and reaches it again once it is created anew.
    ///
    /// [`Namespace`]: super::Namespace
    pub fn of_dynamic(
        mut self,
        matches: impl Fn(&str) -> bool + Send + Sync + 'static,
        build: impl FnOnce(NamespaceBuilder) -> NamespaceBuilder,
    ) -> IoBuilder {
        let mut def = build(NamespaceBuilder {
            def: NamespaceDef::default(),
        })
        .def;
        def.dynamic = true;
        self.dynamic.push((Arc::new(matches), def));
        self
    }

    pub fn build(self) -> Io {
        Io {
            config: Arc::new(IoConfig {
                settings: self.settings,
                namespaces: self.namespaces,
                dynamic: self.dynamic,
                instance: rand::random(),
                cluster: self.cluster.map(|c| Arc::new(ClusterShared::new(c))),
                recovery: self.recovery,
                observer: self.observer,
            }),
        }
    }
}

fn normalize(name: &str) -> String {
    if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/{name}")
    }
}

/// A Socket.IO server on the current shard.
#[derive(Clone)]
pub struct LocalIo {
    shard: Rc<SioShard>,
}

/// A [`LocalIo`] that does not keep the shard's server alive (for what
/// the server itself holds, such as its observer).
#[derive(Clone, Default)]
pub(crate) struct WeakLocalIo(std::rc::Weak<SioShard>);

impl WeakLocalIo {
    pub(crate) fn upgrade(&self) -> Option<LocalIo> {
        self.0.upgrade().map(LocalIo::new)
    }
}

impl LocalIo {
    pub(crate) fn new(shard: Rc<SioShard>) -> LocalIo {
        LocalIo { shard }
    }

    pub(crate) fn downgrade(&self) -> WeakLocalIo {
        WeakLocalIo(Rc::downgrade(&self.shard))
    }

    /// A namespace the server serves, or None. A declared namespace is
    /// created on first use; a dynamic one is not created by this call (it
    /// exists while sockets are in it), but the handle reaches it.
    pub fn of(&self, name: &str) -> Option<super::Namespace> {
        let nsp = self.shard.namespace_handle(name)?;
        Some(super::Namespace {
            shard: self.shard.clone(),
            nsp,
        })
    }

    /// Connections, sockets and rooms on every shard.
    pub fn stats(&self) -> impl std::future::Future<Output = Vec<super::stats::ShardStats>> {
        self.shard.all_stats()
    }
}
