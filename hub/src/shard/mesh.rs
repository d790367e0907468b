//! Messages between shards over glommio's bounded channel mesh: polling
//! requests forwarded to the shard that owns their session, the answers
//! back, and WebSocket connections handed to their session's owner.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use ahash::AHashMap;
use bytes::BytesMut;
use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::task::JoinHandle;

use super::polling::{self, EngineResponse, PollRequest};
use super::state::Shard;
use super::websocket;
use crate::engineio::EngineQuery;
use crate::http::request::Request;

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
}

/// A WebSocket upgrade whose session lives on another shard.
pub(crate) struct Handoff {
    pub fd: OwnedFd,
    pub peer: SocketAddr,
    pub endpoint: usize,
    pub request: Request,
    pub query: EngineQuery,
    /// Bytes read past the request head.
    pub leftover: BytesMut,
}

pub(crate) struct Mesh {
    senders: Senders<MeshMsg>,
    /// Mesh peer index of each shard (the mesh orders peers by executor id).
    peer_of_shard: Vec<usize>,
    next_id: Cell<u64>,
    waiting: RefCell<AHashMap<u64, LocalSender<EngineResponse>>>,
    /// Polls other shards forwarded here, still running: (origin, id).
    serving: RefCell<AHashMap<(usize, u64), JoinHandle<()>>>,
}

impl Mesh {
    pub fn new(senders: Senders<MeshMsg>, peer_of_shard: Vec<usize>) -> Mesh {
        Mesh {
            senders,
            peer_of_shard,
            next_id: Cell::new(0),
            waiting: RefCell::new(AHashMap::new()),
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
        mesh.waiting.borrow_mut().insert(id, tx);
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
            // Runs after this returns, so its entry is in `serving` before it can finish.
            let handle = glommio::spawn_local(async move {
                let shard = task_shard;
                let response = polling::handle(shard.clone(), endpoint, *request).await;
                let reply = MeshMsg::PollReply {
                    id,
                    response: Box::new(response),
                };
                if let Some(mesh) = shard.mesh.get() {
                    mesh.serving.borrow_mut().remove(&(origin, id));
                    mesh.send(origin, reply).await;
                }
            })
            .detach();
            mesh.serving.borrow_mut().insert((origin, id), handle);
        }
        MeshMsg::CancelPoll { origin, id } => {
            let running = shard
                .mesh
                .get()
                .and_then(|mesh| mesh.serving.borrow_mut().remove(&(origin, id)));
            if let Some(handle) = running {
                // Dropping the poll's future tells its session the GET is gone.
                handle.cancel();
            }
        }
        MeshMsg::PollReply { id, response } => {
            let waiting = shard
                .mesh
                .get()
                .and_then(|mesh| mesh.waiting.borrow_mut().remove(&id));
            if let Some(tx) = waiting {
                let _ = tx.try_send(*response);
            }
        }
        MeshMsg::AdoptWebSocket(handoff) => {
            glommio::spawn_local(websocket::adopt(shard.clone(), *handoff)).detach();
        }
    }
}
