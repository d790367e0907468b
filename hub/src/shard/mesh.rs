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
}

impl Mesh {
    pub fn new(senders: Senders<MeshMsg>, peer_of_shard: Vec<usize>) -> Mesh {
        Mesh {
            senders,
            peer_of_shard,
            next_id: Cell::new(0),
            waiting: RefCell::new(AHashMap::new()),
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
        &self,
        me: usize,
        owner: usize,
        endpoint: usize,
        request: PollRequest,
    ) -> EngineResponse {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (tx, rx) = local_channel::new_bounded(1);
        self.waiting.borrow_mut().insert(id, tx);
        let sent = self
            .send(
                owner,
                MeshMsg::Poll {
                    origin: me,
                    id,
                    endpoint,
                    request: Box::new(request),
                },
            )
            .await;
        if !sent {
            self.waiting.borrow_mut().remove(&id);
            return EngineResponse::status(503);
        }
        rx.recv()
            .await
            .unwrap_or_else(|| EngineResponse::status(503))
    }

    pub async fn hand_off(&self, owner: usize, handoff: Handoff) -> bool {
        self.send(owner, MeshMsg::AdoptWebSocket(Box::new(handoff)))
            .await
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
            let shard = shard.clone();
            glommio::spawn_local(async move {
                let response = polling::handle(shard.clone(), endpoint, *request).await;
                let reply = MeshMsg::PollReply {
                    id,
                    response: Box::new(response),
                };
                if let Some(mesh) = shard.mesh.get() {
                    mesh.send(origin, reply).await;
                }
            })
            .detach();
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
