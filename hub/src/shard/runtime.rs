//! Starting the shards: one glommio executor each, each with its own
//! `SO_REUSEPORT` listener, joined by a channel mesh.

use std::cell::{Cell, OnceCell};
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use glommio::timer::Timer;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use super::conn;
use super::mesh::{self, Mesh, MeshMsg};
use super::shutdown;
use super::signal::Signal;
use super::state::{Endpoint, Shard};
use super::timer;
use crate::engine::{EngineConfig, HandlerFactory, ServerConfig};
use crate::engineio::sid::MAX_SHARDS;
use crate::http::request::Limits;

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
    shutdown: ShutdownHandle,
}

/// Asks every shard to stop: stop accepting, tell the applications
/// (`Handler::on_shutdown`), close every session ("server shutting down")
/// once what is queued is written, and exit within the shutdown timeout.
/// `Send + Sync`: call it from a signal-handling thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    wakers: Arc<Vec<std::os::unix::net::UnixStream>>,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
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

    /// Block until every shard stops.
    pub fn join(self) -> Result<(), ServerError> {
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
            let handle = LocalExecutorBuilder::new(placement)
                .name(&format!("hub-shard-{id}"))
                .io_memory(io_memory)
                .spawn(move || async move {
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
        Ok(RunningServer {
            local_addr: addr,
            shards: count,
            handles,
            shutdown: ShutdownHandle {
                wakers: Arc::new(wakers),
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
                handler: factory(id),
                sessions: Default::default(),
            })
            .collect(),
        mesh: OnceCell::new(),
        clock: Default::default(),
        settled: Signal::new(),
        in_flight: Cell::new(0),
        peers_stopped: Cell::new(0),
        stopping: Cell::new(false),
        open_sessions,
    });
    super::context::enter(&shard);
    if let Some(metrics) = &shard.config.metrics {
        crate::metrics::enter(metrics.for_shard(id));
    }
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
        let _ = shard.mesh.set(Mesh::new(senders, peer_of_shard));
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
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let peer = stream
                    .peer_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                glommio::spawn_local(conn::serve(shard.clone(), stream, peer)).detach();
            }
            Err(error) => {
                // Out of descriptors or a transient error: back off instead of spinning.
                tracing::warn!(shard = shard.id, %error, "accept failed");
                Timer::new(Duration::from_millis(20)).await;
            }
        }
    }
}
