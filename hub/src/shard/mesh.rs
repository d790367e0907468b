//! Messages between shards over glommio's bounded channel mesh: polling
//! requests forwarded to the shard that owns their session, the answers
//! back, and WebSocket connections handed to their session's owner.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use ahash::AHashMap;
use bytes::BytesMut;
use futures_lite::future;
use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::channels::local_channel::{self, LocalSender};

use super::per_ip::IpSlot;
use super::polling::{self, EngineResponse, PollRequest};
use super::runtime::spawn_contained;
use super::state::Shard;
use super::websocket;
use crate::engineio::EngineQuery;
use crate::http::request::Request;
use crate::panics::CatchUnwind;
use crate::signal::Signal;

pub(crate) enum MeshMsg {
    Poll {
        origin: usize,
        id: u64,
        endpoint: usize,
        request: Box<PollRequest>,
    },
    PollReply {
        id: u64,
        response: Box<EngineResponse>,
    },
    /// The connection of a forwarded poll closed before its answer.
    CancelPoll {
        origin: usize,
        id: u64,
    },
    AdoptWebSocket(Box<Handoff>),
    /// The sending shard has stopped: it will answer nothing more.
    Stopped {
        shard: usize,
    },
    /// A message of an application (the Socket.IO layer) to its peer on this shard.
    App(Box<dyn Any + Send>),
}

/// Asks the task of a forwarded poll to drop it. (Not glommio's
/// `JoinHandle::cancel`: in glommio 0.9 a task cancelled that way while it
/// waits is never freed.)
#[derive(Default)]
struct Cancel {
    asked: Cell<bool>,
    signal: Signal,
}

impl Cancel {
    fn cancel(&self) {
        self.asked.set(true);
        self.signal.notify();
    }

    async fn wait(&self) {
        loop {
            let listen = self.signal.listen();
            if self.asked.get() {
                return;
            }
            listen.await;
        }
    }
}

/// A WebSocket upgrade whose session lives on another shard.
pub(crate) struct Handoff {
    pub fd: OwnedFd,
    /// The TLS session of the connection, when it is one (`shard::tls`).
    pub tls: Option<Box<rustls::ServerConnection>>,
    pub peer: SocketAddr,
    pub endpoint: usize,
    pub request: Request,
    pub query: EngineQuery,
    /// Bytes read past the request head.
    pub leftover: BytesMut,
    /// The connection's place in its address's count: it moves with it.
    pub slot: IpSlot,
}

pub(crate) struct Mesh {
    senders: Senders<MeshMsg>,
    /// Mesh peer index of each shard (the mesh orders peers by executor id).
    peer_of_shard: Vec<usize>,
    next_id: Cell<u64>,
    /// Forwarded polls waiting for their answer: id -> (owner shard, where it goes).
    waiting: RefCell<AHashMap<u64, (usize, LocalSender<EngineResponse>)>>,
    /// Shards that have stopped: nothing forwarded to them is answered.
    stopped: RefCell<Vec<bool>>,
    /// Polls other shards forwarded here, still running: (origin, id).
    serving: RefCell<AHashMap<(usize, u64), Rc<Cancel>>>,
    /// Application messages per peer shard, with their weight in bytes,
    /// sent in order by one pump task each.
    app_queues: Vec<RefCell<VecDeque<Posted>>>,
    app_ready: Vec<Signal>,
    /// Posted application messages not yet handed to the mesh channel.
    app_unsent: Cell<usize>,
    /// Their weight in bytes, and the most it may be before input pauses.
    app_unsent_bytes: Cell<usize>,
    backlog_limit: usize,
    /// The shard takes no new input from its clients (see `post_sized`).
    input_paused: Cell<bool>,
    /// Raised when input may go on.
    pub input_resumed: Signal,
}

/// A posted application message and its weight in bytes.
type Posted = (Box<dyn Any + Send>, usize);

/// What a posted message counts for beyond its payload: the box, the
/// queue's slot, the envelope.
const MESSAGE_OVERHEAD: usize = 128;

impl Mesh {
    pub fn new(senders: Senders<MeshMsg>, peer_of_shard: Vec<usize>, backlog_limit: usize) -> Mesh {
        let shards = peer_of_shard.len();
        Mesh {
            app_queues: (0..shards).map(|_| RefCell::default()).collect(),
            app_ready: (0..shards).map(|_| Signal::new()).collect(),
            app_unsent: Cell::new(0),
            app_unsent_bytes: Cell::new(0),
            backlog_limit,
            input_paused: Cell::new(false),
            input_resumed: Signal::new(),
            senders,
            peer_of_shard,
            next_id: Cell::new(0),
            waiting: RefCell::new(AHashMap::new()),
            stopped: RefCell::new(vec![false; shards]),
            serving: RefCell::new(AHashMap::new()),
        }
    }

    async fn send(&self, shard: usize, msg: MeshMsg) -> bool {
        self.senders
            .send_to(self.peer_of_shard[shard], msg)
            .await
            .is_ok()
    }

    /// Run a polling request on the shard that owns its session and wait for the answer.
    pub async fn forward_poll(
        shard: &Rc<Shard>,
        owner: usize,
        endpoint: usize,
        request: PollRequest,
    ) -> EngineResponse {
        let Some(mesh) = shard.mesh.get() else {
            return EngineResponse::status(503);
        };
        let id = mesh.next_id.get();
        mesh.next_id.set(id + 1);
        let (tx, rx) = local_channel::new_bounded(1);
        if mesh.stopped.borrow()[owner] {
            return EngineResponse::status(503);
        }
        mesh.waiting.borrow_mut().insert(id, (owner, tx));
        let poll = MeshMsg::Poll {
            origin: shard.id,
            id,
            endpoint,
            request: Box::new(request),
        };
        if !mesh.send(owner, poll).await {
            mesh.waiting.borrow_mut().remove(&id);
            return EngineResponse::status(503);
        }
        let mut pending = PendingPoll {
            shard,
            owner,
            id,
            answered: false,
        };
        let response = rx
            .recv()
            .await
            .unwrap_or_else(|| EngineResponse::status(503));
        pending.answered = true;
        response
    }

    /// Polls forwarded here still being answered.
    pub fn serving_count(&self) -> usize {
        self.serving.borrow().len()
    }

    /// Application messages posted but not yet in a mesh channel (a
    /// stopping shard waits for them, or its last messages would be lost).
    pub fn unsent_count(&self) -> usize {
        self.app_unsent.get()
    }

    /// Queue an application message for shard `target`; messages to one
    /// shard arrive in the order they were posted.
    pub fn post(&self, target: usize, msg: Box<dyn Any + Send>) {
        self.post_sized(target, msg, 0);
    }

    /// As [`Mesh::post`], for a message carrying `bytes` of payload.
    ///
    /// The queue to a shard that does not keep up is bounded by
    /// `max_cross_shard_backlog`: past it, this shard stops taking new
    /// input from its clients (their WebSocket frames and POST bodies wait
    /// in the kernel, which slows their senders) until the backlog is down
    /// to half. Nothing posted is dropped: a broadcast acknowledged to its
    /// publisher still reaches every shard.
    pub fn post_sized(&self, target: usize, msg: Box<dyn Any + Send>, bytes: usize) {
        let weight = bytes + MESSAGE_OVERHEAD;
        self.app_queues[target]
            .borrow_mut()
            .push_back((msg, weight));
        self.app_unsent.set(self.app_unsent.get() + 1);
        let backlog = self.app_unsent_bytes.get() + weight;
        self.app_unsent_bytes.set(backlog);
        crate::metrics::with(|m| {
            m.cross_shard_queue.inc();
            m.cross_shard_backlog_bytes.inc_by(weight as i64);
        });
        if backlog > self.backlog_limit && !self.input_paused.replace(true) {
            crate::metrics::with(|m| {
                m.input_pauses.inc();
            });
            tracing::debug!(
                backlog,
                limit = self.backlog_limit,
                "pausing client input: the backlog for other shards is over its limit"
            );
        }
        self.app_ready[target].notify();
    }

    /// A posted message went into its shard's channel.
    fn sent(&self, weight: usize) {
        self.app_unsent.set(self.app_unsent.get() - 1);
        let backlog = self.app_unsent_bytes.get() - weight;
        self.app_unsent_bytes.set(backlog);
        crate::metrics::with(|m| {
            m.cross_shard_queue.dec();
            m.cross_shard_backlog_bytes.dec_by(weight as i64);
        });
        if self.input_paused.get() && backlog <= self.backlog_limit / 2 {
            self.input_paused.set(false);
            self.input_resumed.notify();
        }
    }

    /// Whether the shard takes no new input from its clients now.
    pub fn input_paused(&self) -> bool {
        self.input_paused.get()
    }

    /// Whether every other shard has said it stopped.
    pub fn all_peers_stopped(&self, me: usize) -> bool {
        self.stopped
            .borrow()
            .iter()
            .enumerate()
            .all(|(shard, stopped)| shard == me || *stopped)
    }

    /// Tell every other shard this one has stopped.
    pub async fn announce_stopped(&self, me: usize) {
        for peer in 0..self.peer_of_shard.len() {
            if peer != me {
                self.send(peer, MeshMsg::Stopped { shard: me }).await;
            }
        }
    }

    pub async fn hand_off(&self, owner: usize, handoff: Handoff) -> bool {
        self.send(owner, MeshMsg::AdoptWebSocket(Box::new(handoff)))
            .await
    }
}

/// A forwarded poll not yet answered; dropping it (the client's connection
/// closed) cancels the poll on the owner, which then closes the session.
struct PendingPoll<'a> {
    shard: &'a Rc<Shard>,
    owner: usize,
    id: u64,
    answered: bool,
}

impl Drop for PendingPoll<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let Some(mesh) = self.shard.mesh.get() else {
            return;
        };
        mesh.waiting.borrow_mut().remove(&self.id);
        let cancel = MeshMsg::CancelPoll {
            origin: self.shard.id,
            id: self.id,
        };
        let (shard, owner) = (self.shard.clone(), self.owner);
        glommio::spawn_local(async move {
            if let Some(mesh) = shard.mesh.get() {
                mesh.send(owner, cancel).await;
            }
        })
        .detach();
    }
}

/// One task per peer shard moves posted application messages into the
/// bounded mesh channel, waiting while it is full, so order is kept.
pub(crate) fn spawn_app_pumps(shard: &Rc<Shard>) {
    for target in 0..shard.count {
        if target == shard.id {
            continue;
        }
        let shard = shard.clone();
        glommio::spawn_local(async move {
            loop {
                let Some(mesh) = shard.mesh.get() else {
                    return;
                };
                let listen = mesh.app_ready[target].listen();
                let next = mesh.app_queues[target].borrow_mut().pop_front();
                match next {
                    Some((msg, weight)) => {
                        mesh.send(target, MeshMsg::App(msg)).await;
                        mesh.sent(weight);
                        shard.settled.notify();
                    }
                    None => listen.await,
                }
            }
        })
        .detach();
    }
}

/// Serve what other shards send to this one.
pub(crate) fn spawn_receivers(shard: &Rc<Shard>, mut receivers: Receivers<MeshMsg>) {
    for (_, rx) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                receive(&shard, msg);
            }
        })
        .detach();
    }
}

fn receive(shard: &Rc<Shard>, msg: MeshMsg) {
    match msg {
        MeshMsg::Poll {
            origin,
            id,
            endpoint,
            request,
        } => {
            let Some(mesh) = shard.mesh.get() else {
                return;
            };
            let task_shard = shard.clone();
            // glommio may run a new task before spawn returns: the task marks
            // itself done so a finished poll is never recorded as running.
            let done = Rc::new(Cell::new(false));
            let task_done = done.clone();
            let cancel = Rc::new(Cancel::default());
            let task_cancel = cancel.clone();
            glommio::spawn_local(async move {
                let shard = task_shard;
                // A panic while answering answers 500 rather than never.
                let poll = async {
                    CatchUnwind::new(polling::handle(shard.clone(), endpoint, *request))
                        .await
                        .unwrap_or_else(|panic| {
                            tracing::error!(%panic, "a forwarded poll panicked");
                            EngineResponse::status(500)
                        })
                };
                let response = future::or(async { Some(poll.await) }, async {
                    task_cancel.wait().await;
                    None
                })
                .await;
                // Cancelled: dropping the poll's future told its session the
                // GET is gone.
                let Some(response) = response else {
                    return;
                };
                let reply = MeshMsg::PollReply {
                    id,
                    response: Box::new(response),
                };
                if let Some(mesh) = shard.mesh.get() {
                    mesh.send(origin, reply).await;
                    task_done.set(true);
                    mesh.serving.borrow_mut().remove(&(origin, id));
                    shard.settled.notify();
                }
            })
            .detach();
            if !done.get() {
                mesh.serving.borrow_mut().insert((origin, id), cancel);
            }
        }
        MeshMsg::CancelPoll { origin, id } => {
            let running = shard
                .mesh
                .get()
                .and_then(|mesh| mesh.serving.borrow_mut().remove(&(origin, id)));
            if let Some(cancel) = running {
                cancel.cancel();
            }
        }
        MeshMsg::PollReply { id, response } => {
            let waiting = shard
                .mesh
                .get()
                .and_then(|mesh| mesh.waiting.borrow_mut().remove(&id));
            if let Some((_, tx)) = waiting {
                let _ = tx.try_send(*response);
            }
        }
        MeshMsg::App(msg) => shard.deliver_app(msg),
        MeshMsg::Stopped { shard: peer } => {
            if let Some(mesh) = shard.mesh.get() {
                mesh.stopped.borrow_mut()[peer] = true;
                shard.settled.notify();
                // Dropping their senders answers the polls forwarded there (503).
                mesh.waiting
                    .borrow_mut()
                    .retain(|_, (owner, _)| *owner != peer);
            }
        }
        MeshMsg::AdoptWebSocket(handoff) => {
            let peer = handoff.peer;
            spawn_contained(peer, websocket::adopt(shard.clone(), *handoff));
        }
    }
}
