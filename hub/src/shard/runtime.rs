//! Starting the shards: one glommio executor each, each with its own
//! `SO_REUSEPORT` listener, joined by a channel mesh.

use std::cell::{Cell, OnceCell};
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use glommio::timer::Timer;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use super::accept::AcceptBackoff;
use super::conn;
use super::deferred;
use super::flusher;
use super::mesh::{self, Mesh, MeshMsg};
use super::per_ip::PerIpLimit;
use super::ring;
use super::shutdown;
use super::state::{Endpoint, Shard};
use super::timer;
use crate::engine::{EngineConfig, HandlerFactory, ServerConfig};
use crate::engineio::sid::MAX_SHARDS;
use crate::http::request::Limits;
use crate::signal::Signal;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("no endpoint configured")]
    NoEndpoint,
    #[error("{requested} shards asked for; at most {max} are supported")]
    TooManyShards { requested: usize, max: usize },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start shard {shard}: {message}")]
    Executor { shard: usize, message: String },
    #[error("shard {shard} stopped abnormally")]
    ShardFailed { shard: usize },
    /// A shard's thread died of a panic that nothing contained. The other
    /// shards still run: a process should exit at once, so that its
    /// supervisor restarts it, rather than serve half of its clients.
    #[error("shard {shard} died: {message}")]
    ShardDied { shard: usize, message: String },
    /// Shutdown was asked for and the shards did not all stop within the
    /// shutdown timeout; they still run.
    #[error("shutdown timeout: shard(s) {running:?} still running after {timeout:?}")]
    ShutdownTimeout {
        running: Vec<usize>,
        timeout: Duration,
    },
}

/// How a shard's thread ended.
enum ShardExit {
    Stopped(usize),
    Died { shard: usize, message: String },
}

/// Tells the process that its shard's thread ended: `Stopped` when the
/// shard returns; `Died` from the panic hook when a panic nothing contains
/// unwinds the thread (glommio drops nothing then, so no guard could).
fn report_exits(shard: usize, tx: mpsc::Sender<ShardExit>) -> impl Drop {
    let died = tx.clone();
    crate::panics::on_uncaught(move |message| {
        let _ = died.send(ShardExit::Died {
            shard,
            message: message.to_string(),
        });
    });
    struct Stopped(usize, mpsc::Sender<ShardExit>);
    impl Drop for Stopped {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let _ = self.1.send(ShardExit::Stopped(self.0));
            }
        }
    }
    Stopped(shard, tx)
}

/// A server to start: process settings plus one or more Engine.IO endpoints.
pub struct Server {
    config: ServerConfig,
    endpoints: Vec<(EngineConfig, HandlerFactory)>,
    tasks: Vec<ShardTask>,
}

/// Builds an extra task for a shard (given its index), run beside the
/// listener once the shard is up: an admin listener on shard 0, say.
pub type ShardTask = Arc<dyn Fn(usize) -> Option<LocalTask> + Send + Sync>;
pub type LocalTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// The shards, running.
pub struct RunningServer {
    local_addr: SocketAddr,
    shards: usize,
    handles: Vec<ExecutorJoinHandle<()>>,
    exits: mpsc::Receiver<ShardExit>,
    shutdown_timeout: Duration,
    shutdown: ShutdownHandle,
}

/// Asks every shard to stop: stop accepting, tell the applications
/// (`Handler::on_shutdown`), close every session ("server shutting down")
/// once what is queued is written, and exit within the shutdown timeout.
/// `Send + Sync`: call it from a signal-handling thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    wakers: Arc<Vec<std::os::unix::net::UnixStream>>,
    /// When shutdown was first asked for: every shard's deadlines count from it.
    requested: Arc<OnceLock<Instant>>,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        let _ = self.requested.set(Instant::now());
        for waker in self.wakers.iter() {
            // One byte wakes the shard's control task; a full or closed pipe means it is already stopping.
            let _ = (&*waker).write(&[1]);
        }
    }
}

impl RunningServer {
    /// The address the listeners are bound to (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Block until every shard stops. Returns early with an error when a
    /// shard dies (a panic nothing contained), or when shutdown was asked for
    /// and the shards are not all done within the shutdown timeout; the
    /// other shards then still run, and the caller should exit the process.
    pub fn join(self) -> Result<(), ServerError> {
        let mut running: Vec<bool> = vec![true; self.shards];
        while running.iter().any(|r| *r) {
            let exit = match self.shutdown.requested.get() {
                None => self.exits.recv_timeout(Duration::from_millis(100)),
                Some(at) => {
                    let deadline = *at + self.shutdown_timeout;
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(ServerError::ShutdownTimeout {
                            running: (0..self.shards).filter(|s| running[*s]).collect(),
                            timeout: self.shutdown_timeout,
                        });
                    }
                    self.exits
                        .recv_timeout((deadline - now).min(Duration::from_millis(100)))
                }
            };
            match exit {
                Ok(ShardExit::Stopped(shard)) => running[shard] = false,
                Ok(ShardExit::Died { shard, message }) => {
                    return Err(ServerError::ShardDied { shard, message })
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // Every report was sent (each thread sends one as it ends).
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        for (shard, handle) in self.handles.into_iter().enumerate() {
            handle
                .join()
                .map_err(|_| ServerError::ShardFailed { shard })?;
        }
        Ok(())
    }
}

impl Server {
    pub fn new(config: ServerConfig) -> Server {
        Server {
            config,
            endpoints: Vec::new(),
            tasks: Vec::new(),
        }
    }

    pub fn endpoint(mut self, config: EngineConfig, factory: HandlerFactory) -> Server {
        self.endpoints.push((config, factory));
        self
    }

    /// Run `task(shard)` on every shard that it gives a future for.
    pub fn task(mut self, task: ShardTask) -> Server {
        self.tasks.push(task);
        self
    }

    /// Start the shards; returns once every listener is bound.
    pub fn start(self) -> Result<RunningServer, ServerError> {
        crate::panics::install_hook();
        if self.endpoints.is_empty() {
            return Err(ServerError::NoEndpoint);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let count = if self.config.shards == 0 {
            cores
        } else {
            self.config.shards
        };
        if count > MAX_SHARDS {
            return Err(ServerError::TooManyShards {
                requested: count,
                max: MAX_SHARDS,
            });
        }
        let config = Arc::new(self.config);
        let endpoints: Arc<Vec<(Arc<EngineConfig>, HandlerFactory)>> = Arc::new(
            self.endpoints
                .into_iter()
                .map(|(c, f)| (Arc::new(c), f))
                .collect(),
        );
        let tasks = Arc::new(self.tasks);
        let mesh_builder =
            (count > 1).then(|| MeshBuilder::<MeshMsg, _>::full(count, config.mesh_capacity));
        // Mesh peers are ordered by executor id; each shard records its own.
        let executor_ids = Arc::new(Mutex::new(Vec::<(usize, usize)>::new()));
        // glommio locks io_memory per executor; stay within the locked-memory limit.
        let io_memory = ((6 << 20) / count).clamp(256 << 10, 1 << 20);

        let (bound_tx, bound_rx) = mpsc::channel::<Result<SocketAddr, ServerError>>();
        let mut addr = config.bind;
        let mut handles = Vec::with_capacity(count);
        let mut wakers = Vec::with_capacity(count);
        let open_sessions = Arc::new(AtomicUsize::new(0));
        let per_ip = PerIpLimit::new(config.max_connections_per_ip);
        let (exit_tx, exits) = mpsc::channel::<ShardExit>();
        let requested = Arc::new(OnceLock::new());
        for id in 0..count {
            let (waker, control) =
                std::os::unix::net::UnixStream::pair().map_err(|e| ServerError::Executor {
                    shard: id,
                    message: format!("control socket: {e}"),
                })?;
            wakers.push(waker);
            let control: OwnedFd = control.into();
            let placement = if config.pin_cores {
                Placement::Fixed(id % cores)
            } else {
                Placement::Unbound
            };
            let config = config.clone();
            let endpoints = endpoints.clone();
            let tasks = tasks.clone();
            let mesh_builder = mesh_builder.clone();
            let executor_ids = executor_ids.clone();
            let bound_tx = bound_tx.clone();
            let open_sessions = open_sessions.clone();
            let per_ip = per_ip.clone();
            let requested = requested.clone();
            let exit_tx = exit_tx.clone();
            let handle = LocalExecutorBuilder::new(placement)
                .name(&format!("hub-shard-{id}"))
                .io_memory(io_memory)
                .spawn(move || async move {
                    let _report = report_exits(id, exit_tx);
                    run_shard(
                        id,
                        count,
                        addr,
                        config,
                        endpoints,
                        mesh_builder,
                        executor_ids,
                        bound_tx,
                        control,
                        open_sessions,
                        per_ip,
                        requested,
                        tasks,
                    )
                    .await
                })
                .map_err(|e| ServerError::Executor {
                    shard: id,
                    message: e.to_string(),
                })?;
            handles.push(handle);
            let bound = bound_rx
                .recv()
                .map_err(|_| ServerError::ShardFailed { shard: id })??;
            // Later shards join the port the first one got.
            addr = bound;
        }
        drop(exit_tx);
        Ok(RunningServer {
            local_addr: addr,
            shards: count,
            handles,
            exits,
            shutdown_timeout: config.shutdown_timeout,
            shutdown: ShutdownHandle {
                wakers: Arc::new(wakers),
                requested,
            },
        })
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_shard(
    id: usize,
    count: usize,
    addr: SocketAddr,
    config: Arc<ServerConfig>,
    endpoints: Arc<Vec<(Arc<EngineConfig>, HandlerFactory)>>,
    mesh_builder: Option<MeshBuilder<MeshMsg, glommio::channels::channel_mesh::Full>>,
    executor_ids: Arc<Mutex<Vec<(usize, usize)>>>,
    bound_tx: mpsc::Sender<Result<SocketAddr, ServerError>>,
    control: OwnedFd,
    open_sessions: Arc<AtomicUsize>,
    per_ip: Arc<PerIpLimit>,
    shutdown_requested: Arc<OnceLock<Instant>>,
    tasks: Arc<Vec<ShardTask>>,
) {
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(error) => {
            let _ = bound_tx.send(Err(ServerError::Bind {
                addr,
                source: std::io::Error::other(error.to_string()),
            }));
            return;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    let max_body_bytes = endpoints
        .iter()
        .map(|(c, _)| c.session.max_payload as usize)
        .max()
        .unwrap_or(1_000_000);
    let shard = Rc::new(Shard {
        id,
        count,
        limits: Limits {
            max_header_bytes: config.max_header_bytes,
            max_headers: config.max_headers,
            max_body_bytes,
        },
        config,
        endpoints: endpoints
            .iter()
            .map(|(config, factory)| Endpoint {
                config: config.clone(),
                session_config: Rc::new(config.session),
                handler: factory(id),
                sessions: Default::default(),
            })
            .collect(),
        mesh: OnceCell::new(),
        clock: Default::default(),
        deferred: Default::default(),
        settled: Signal::new(),
        in_flight: Cell::new(0),
        peers_started: Cell::new(0),
        peers_stopped: Cell::new(0),
        stopping: Cell::new(false),
        open_sessions,
        shutdown_requested,
        per_ip,
    });
    super::context::enter(&shard);
    if let Some(metrics) = &shard.config.metrics {
        crate::metrics::enter(metrics.for_shard(id));
    }
    // Made now rather than at the first WebSocket: its two descriptors (the
    // ring and its eventfd) are the shard's before it reports itself bound.
    ring::start();
    if let Some(builder) = mesh_builder {
        executor_ids
            .lock()
            .expect("executor id list")
            .push((glommio::executor().id(), id));
        let _ = bound_tx.send(Ok(local));
        let Ok((senders, receivers)) = builder.join().await else {
            tracing::error!(shard = id, "cannot join the shard mesh");
            return;
        };
        let mut ids = executor_ids.lock().expect("executor id list").clone();
        ids.sort_unstable();
        let mut peer_of_shard = vec![0; count];
        for (peer, (_, shard_id)) in ids.iter().enumerate() {
            peer_of_shard[*shard_id] = peer;
        }
        mesh::spawn_receivers(&shard, receivers);
        let backlog = shard.config.max_cross_shard_backlog;
        let _ = shard.mesh.set(Mesh::new(senders, peer_of_shard, backlog));
        mesh::spawn_app_pumps(&shard);
    } else {
        let _ = bound_tx.send(Ok(local));
    }
    for task in tasks.iter() {
        if let Some(future) = task(id) {
            glommio::spawn_local(future).detach();
        }
    }
    let stop = Rc::new(Signal::new());
    glommio::spawn_local(shutdown::watch(control, stop.clone())).detach();
    glommio::spawn_local(timer::run(shard.clone())).detach();
    glommio::spawn_local(deferred::run(shard.clone())).detach();
    glommio::spawn_local(flusher::run()).detach();
    // The listener keeps accepting while the shard stops: long-polling
    // clients need a connection to fetch their last packets. New sessions
    // are refused then (`Shard::admit_session`).
    glommio::spawn_local(accept_loop(shard.clone(), listener)).detach();
    stop.listen().await;
    shard.stopping.set(true);
    shutdown::drain(&shard).await;
    shutdown::leave(&shard).await;
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    let mut backoff = AcceptBackoff::new();
    loop {
        match listener.accept().await {
            Ok(stream) => {
                backoff.on_accepted();
                let peer = stream
                    .peer_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                match shard.per_ip.admit(peer.ip()) {
                    Some(slot) => {
                        spawn_contained(peer, conn::serve(shard.clone(), stream, peer, slot))
                    }
                    None => {
                        crate::metrics::with(|m| {
                            m.refused_connections_per_ip.inc();
                        });
                        tracing::debug!(%peer, "refusing a connection past the per-address limit");
                        spawn_contained(peer, conn::refuse_too_many(shard.clone(), stream, peer));
                    }
                }
            }
            Err(error) => {
                // Out of descriptors, say: wait rather than spin (see `accept`).
                crate::metrics::with(|m| {
                    m.accept_errors.inc();
                });
                let retry = backoff.on_failed(Instant::now());
                if let Some(failures) = retry.report {
                    tracing::warn!(
                        shard = shard.id,
                        %error,
                        failures,
                        retry_ms = retry.wait.as_millis() as u64,
                        "accept failed; backing off (failures: since the last such line)"
                    );
                }
                Timer::new(retry.wait).await;
            }
        }
    }
}

/// Run the task serving one client connection; a panic in it ends that
/// task only (its connection closes as the task's state is dropped), is
/// logged with the client's address and counted (`hub_panics_total`).
pub(crate) fn spawn_contained(
    peer: SocketAddr,
    task: impl std::future::Future<Output = ()> + 'static,
) {
    glommio::spawn_local(async move {
        if let Err(panic) = crate::panics::CatchUnwind::new(task).await {
            tracing::error!(%peer, %panic, "closed a connection whose task panicked");
        }
    })
    .detach();
}
