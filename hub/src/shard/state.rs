//! What one shard owns: its endpoints, their sessions, its end of the mesh.

use std::any::Any;
use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use ahash::AHashMap;

use super::deferred::Deferred;
use super::mesh::Mesh;
use super::per_ip::PerIpLimit;
use super::timer::Clock;
use crate::engine::{EngineConfig, Handler, ServerConfig, SessionEntry, SessionHost};
use crate::engineio::session::SessionConfig;
use crate::engineio::Sid;
use crate::http::request::Limits;
use crate::signal::Signal;

pub(crate) struct Endpoint {
    pub config: Arc<EngineConfig>,
    /// `config.session`, shared by this shard's sessions of the endpoint.
    pub session_config: Rc<SessionConfig>,
    pub handler: Rc<dyn Handler>,
    pub sessions: RefCell<AHashMap<Sid, Rc<SessionEntry>>>,
}

pub(crate) struct Shard {
    pub id: usize,
    pub count: usize,
    pub config: Arc<ServerConfig>,
    pub endpoints: Vec<Endpoint>,
    pub limits: Limits,
    pub mesh: OnceCell<Mesh>,
    /// The sessions' timers.
    pub clock: Clock,
    /// Sessions whose events are dispatched once the current dispatch is over.
    pub deferred: Deferred,
    /// A session was forgotten or a request answered (shutdown waits on these).
    pub settled: Signal,
    /// HTTP requests being answered on this shard.
    pub in_flight: Cell<usize>,
    /// Other shards that began stopping (see [`ShutdownStarted`]).
    pub peers_started: Cell<usize>,
    /// Other shards that finished the first step of stopping.
    pub peers_stopped: Cell<usize>,
    /// The shard is stopping: no new sessions.
    pub stopping: Cell<bool>,
    /// Sessions open on every shard, for `max_sessions`; touched once per
    /// session open and close, never per message.
    pub open_sessions: Arc<AtomicUsize>,
    /// When shutdown was asked for (set by the `ShutdownHandle`): the
    /// shutdown deadlines of every shard count from it.
    pub shutdown_requested: Arc<OnceLock<Instant>>,
    /// Connections per client address, shared by the shards.
    pub per_ip: Arc<PerIpLimit>,
}

/// Posted, when it begins stopping, by each shard to every other, behind
/// everything it posted before (a publish acknowledged before the signal).
pub(crate) struct ShutdownStarted;

/// Posted, after its first shutdown step, by each shard to every other,
/// behind the messages that step posted.
pub(crate) struct ShutdownStepDone;

impl Shard {
    /// The endpoint serving a request path.
    pub fn route(&self, path: &str) -> Option<usize> {
        self.endpoints.iter().position(|e| e.config.matches(path))
    }

    pub fn session(&self, endpoint: usize, sid: &Sid) -> Option<Rc<SessionEntry>> {
        self.endpoints[endpoint].sessions.borrow().get(sid).cloned()
    }

    /// Deliver the session's events and drop it once it is finished.
    pub fn settle(&self, endpoint: usize, entry: &Rc<SessionEntry>) {
        entry.dispatch();
        if entry.session.borrow().is_finished() {
            self.forget(endpoint, entry);
        }
    }

    /// [`Shard::settle`] for the shard's own tasks, which serve many
    /// sessions (its clock, its deferred dispatches): a panic while
    /// dispatching costs this session only (`SessionEntry::dispatch_contained`).
    pub fn settle_contained(&self, endpoint: usize, entry: &Rc<SessionEntry>) {
        entry.dispatch_contained();
        if entry.session.borrow().is_finished() {
            self.forget(endpoint, entry);
        }
    }

    /// Hand an application message to the endpoint handler that takes it.
    pub fn deliver_app(&self, msg: Box<dyn Any + Send>) {
        if msg.is::<ShutdownStarted>() {
            self.peers_started.set(self.peers_started.get() + 1);
            self.settled.notify();
            return;
        }
        if msg.is::<ShutdownStepDone>() {
            self.peers_stopped.set(self.peers_stopped.get() + 1);
            self.settled.notify();
            return;
        }
        let mut msg = Some(msg);
        for endpoint in &self.endpoints {
            match msg.take() {
                Some(m) => msg = endpoint.handler.on_shard_message(m),
                None => return,
            }
        }
        if msg.is_some() {
            tracing::warn!(shard = self.id, "no handler took a cross-shard message");
        }
    }

    /// The index of one of this shard's endpoints.
    pub fn endpoint_index(&self, endpoint: &Endpoint) -> usize {
        self.endpoints
            .iter()
            .position(|e| std::ptr::eq(e, endpoint))
            .expect("an endpoint of this shard")
    }

    /// Work a stopping shard must finish: open sessions, requests being
    /// answered, polls forwarded here from other shards.
    pub fn pending_work(&self) -> usize {
        let sessions: usize = self
            .endpoints
            .iter()
            .map(|e| e.sessions.borrow().len())
            .sum();
        let (forwarded, unsent) = self
            .mesh
            .get()
            .map_or((0, 0), |m| (m.serving_count(), m.unsent_count()));
        sessions + self.in_flight.get() + forwarded + unsent + self.deferred.len()
    }

    /// How long an HTTP write may wait for a peer that takes nothing of it
    /// (glommio's write timeout counts from the last progress): the request
    /// timeout, or the longest heartbeat (ping interval and timeout) of the
    /// endpoints if shorter. A long-poll answer not read in that time is
    /// given up (its session is gone by then anyway), so its buffer, up to a
    /// session's byte budget, its descriptor, and the request in flight that
    /// shutdown waits for do not stay for as long as the peer does. A
    /// WebSocket's writer races its session instead (see `websocket`).
    pub fn write_timeout(&self) -> std::time::Duration {
        self.endpoints
            .iter()
            .map(|e| e.config.session.ping_interval + e.config.session.ping_timeout)
            .max()
            .unwrap_or_default()
            .min(self.config.request_timeout)
            .max(std::time::Duration::from_millis(1))
    }

    /// Wait until the shard takes input from its clients again: it stops
    /// while its backlog for the other shards is over its limit (see
    /// `Mesh::post_sized`). At once when it is not.
    pub async fn input_allowed(&self) {
        let Some(mesh) = self.mesh.get() else {
            return;
        };
        loop {
            let listen = mesh.input_resumed.listen();
            if !mesh.input_paused() {
                return;
            }
            listen.await;
        }
    }

    /// Whether the shard takes no new input from its clients now.
    pub fn input_paused(&self) -> bool {
        self.mesh.get().is_some_and(|mesh| mesh.input_paused())
    }

    /// Take a place for a new session; false when the server is full.
    pub fn admit_session(&self) -> bool {
        if self.stopping.get() {
            return false;
        }
        let max = self.config.max_sessions;
        let open = self.open_sessions.fetch_add(1, Ordering::Relaxed);
        if max != 0 && open >= max {
            self.open_sessions.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub fn forget(&self, endpoint: usize, entry: &Rc<SessionEntry>) {
        self.clock.cancel(entry);
        let mut sessions = self.endpoints[endpoint].sessions.borrow_mut();
        if sessions
            .get(&entry.sid)
            .is_some_and(|held| Rc::ptr_eq(held, entry))
        {
            sessions.remove(&entry.sid);
            drop(sessions);
            // What it still holds will never be written.
            entry.release();
            self.open_sessions.fetch_sub(1, Ordering::Relaxed);
            crate::metrics::with(|m| {
                m.connections.dec();
            });
            super::memory::freed(1);
            self.settled.notify();
        }
    }
}

impl SessionHost for Shard {
    fn rearm(&self, entry: &Rc<SessionEntry>) {
        self.clock.rearm(entry);
    }

    fn defer_dispatch(&self, entry: &Rc<SessionEntry>) {
        self.deferred.push(entry);
    }
}
