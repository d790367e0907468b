//! What each shard's Socket.IO state does for the cluster: hand commands
//! and requests to the link on shard 0, deliver what the link heard, run
//! server-side emits, and wait for the answers to its requests.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use glommio::channels::local_channel;
use serde_json::Value;

use super::link::{Link, NodeRequest};
use super::{AckSender, ClusterOp, ClusterShared, NodeAnswers, ServerSideAck, LINK_SHARD};
use crate::redis::message::Outbound;
use crate::redis::wire::WireBroadcast;
use crate::server::adapter::{Adapter, ClusterBody, ClusterMsg, RoomOp, Target};
use crate::server::args::Args;
use crate::server::broadcast_ack::AckEvent;
use crate::server::namespace::{Namespace, Nsp};
use crate::server::reason::DisconnectReason;
use crate::server::shard::SioShard;
use crate::shard::context;

impl SioShard {
    /// The cluster this server is a node of.
    pub(crate) fn cluster(&self) -> Option<&Arc<ClusterShared>> {
        self.config().cluster.as_ref()
    }

    pub(crate) fn set_link(&self, link: Rc<Link>) {
        *self.link.borrow_mut() = Some(link);
    }

    fn link(&self) -> Option<Rc<Link>> {
        self.link.borrow().clone()
    }

    /// Send `op` to shard `target`'s cluster side (at once when it is this one).
    pub(crate) fn cluster_op(&self, target: usize, nsp: &str, op: ClusterOp) {
        if self.cluster().is_none() {
            return;
        }
        if target == self.shard_id() {
            self.on_cluster_op(nsp, op);
            return;
        }
        let bytes = op.payload_bytes();
        let msg = ClusterMsg {
            instance: self.instance(),
            nsp: nsp.to_string(),
            body: ClusterBody::Cluster(op),
        };
        context::post_sized(target, Box::new(msg), bytes);
    }

    /// Publish `msg` of namespace `nsp` to the cluster, through the link.
    pub(crate) fn cluster_publish(&self, nsp: &str, msg: Outbound<'_>) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        if let Some(command) = cluster.encode(nsp, msg).to_resp() {
            self.cluster_op(LINK_SHARD, "", ClusterOp::Command(command));
        }
    }

    pub(crate) fn on_cluster_op(&self, nsp: &str, op: ClusterOp) {
        match op {
            ClusterOp::Command(command) => {
                if let Some(link) = self.link() {
                    link.enqueue(&command, None);
                }
            }
            ClusterOp::NamespaceHeld(up) => {
                if let Some(link) = self.link() {
                    link.namespace_held(nsp, up);
                }
            }
            ClusterOp::RoomHeld(room, up) => {
                if let Some(link) = self.link() {
                    link.room_held(nsp, &room, up);
                }
            }
            ClusterOp::Request {
                origin,
                request,
                kind,
            } => {
                let (Some(link), Some(me)) = (self.link(), self.me()) else {
                    // No link (its task was not run): no other node to ask.
                    let reply = ClusterOp::Reply {
                        request,
                        responses: Vec::new(),
                        expected: 0,
                    };
                    self.cluster_op(origin, nsp, reply);
                    return;
                };
                let nsp = nsp.to_string();
                glommio::spawn_local(async move {
                    let (responses, expected) = link.request(&nsp, kind).await;
                    let reply = ClusterOp::Reply {
                        request,
                        responses,
                        expected,
                    };
                    me.cluster_op(origin, &nsp, reply);
                })
                .detach();
            }
            ClusterOp::BroadcastAck {
                origin,
                request,
                data,
                attachments,
                target,
                timeout,
            } => {
                let (Some(link), Some(me)) = (self.link(), self.me()) else {
                    self.broadcast_ack_event(origin, request, AckEvent::RemoteServers(0));
                    return;
                };
                let nsp = nsp.to_string();
                glommio::spawn_local(async move {
                    link.broadcast_with_ack(
                        &me,
                        &nsp,
                        origin,
                        request,
                        data,
                        attachments,
                        target,
                        timeout,
                    )
                    .await;
                })
                .detach();
            }
            ClusterOp::Reply {
                request,
                responses,
                expected,
            } => {
                if let Some(tx) = self.cluster_waiters.borrow().get(&request) {
                    let _ = tx.try_send((responses, expected));
                }
            }
        }
    }

    /// Ask the other nodes (through shard 0); their answers and how many
    /// were expected.
    pub(crate) fn cluster_request(
        self: &Rc<Self>,
        nsp: &str,
        kind: NodeRequest,
    ) -> impl Future<Output = NodeAnswers> + 'static {
        let request = self.next_request();
        let (tx, rx) = local_channel::new_bounded(1);
        self.cluster_waiters.borrow_mut().insert(request, tx);
        let origin = self.shard_id();
        self.cluster_op(
            LINK_SHARD,
            nsp,
            ClusterOp::Request {
                origin,
                request,
                kind,
            },
        );
        // Forgets the waiter however the future ends (dropped unpolled too).
        let waiting = Waiting {
            shard: self.clone(),
            request,
        };
        // Shard 0 answers within the request timeout; past twice that (a
        // shard 0 that stopped), this gives up with nothing.
        let give_up = self
            .cluster()
            .map_or(Duration::ZERO, |c| c.config.request_timeout * 2);
        async move {
            let _waiting = waiting;
            futures_lite::future::or(async { rx.recv().await.unwrap_or_default() }, async {
                glommio::timer::Timer::new(give_up).await;
                NodeAnswers::default()
            })
            .await
        }
    }

    /// A broadcast from another node: encoded once, delivered here and
    /// posted once to each other shard.
    pub(crate) fn deliver_cluster_broadcast(&self, broadcast: WireBroadcast) {
        let WireBroadcast {
            event,
            target,
            flags,
            ..
        } = broadcast;
        let Some(nsp) = self.namespace_handle(&event.nsp) else {
            return;
        };
        let nsp = self.live(&nsp);
        let mut data = event.data;
        let Value::String(name) = data.remove(0) else {
            return;
        };
        let args = Args::from_parts(data, event.attachments);
        let (packet, offset) = self.encode_broadcast(&nsp.name, &name, &args, flags.volatile);
        let packet = packet.compress(flags.compress);
        let target = Target {
            rooms: target.rooms,
            except: target.except,
            volatile: flags.volatile,
        };
        self.adapter.broadcast(&nsp, target, None, packet, offset);
    }

    /// A room operation from another node, on every shard of this one.
    pub(crate) fn cluster_room_op(&self, nsp: &Rc<Nsp>, target: Target, op: RoomOp) {
        for (socket, close) in self.adapter.room_op(nsp, target, None, op) {
            self.disconnect(&socket, close, DisconnectReason::ServerNamespaceDisconnect);
        }
    }

    /// A server-side emit from another node: the namespace's handler for
    /// its event, if any (a panic in it is contained, logged and counted).
    pub(crate) fn cluster_server_side_emit(
        &self,
        nsp: &Rc<Nsp>,
        mut data: Vec<Value>,
        attachments: Vec<Bytes>,
        ack: Option<AckSender>,
    ) {
        let Value::String(event) = data.remove(0) else {
            return;
        };
        let handler = nsp
            .def
            .server_side
            .iter()
            .find(|(name, _)| *name == event)
            .map(|(_, h)| h.clone());
        let any = nsp.def.server_side_any.clone();
        if handler.is_none() && any.is_none() {
            tracing::debug!(nsp = %nsp.name, event, "cluster: no handler for a server-side emit");
            return;
        }
        let Some(me) = self.me() else {
            return;
        };
        let namespace = Namespace::new(me, nsp.clone());
        let args = Args::from_parts(data, attachments);
        let ack = ack.map(|send| ServerSideAck { send });
        let run = || match (handler, any) {
            (Some(handler), _) => handler(&namespace, &args, ack),
            (None, Some(any)) => any(&namespace, &event, &args, ack),
            (None, None) => {}
        };
        if let Err(panic) = crate::panics::catch(run) {
            tracing::error!(nsp = %nsp.name, event, %panic, "a server-side emit handler panicked");
        }
    }
}

/// A request to the other nodes that a shard waits for.
struct Waiting {
    shard: Rc<SioShard>,
    request: u64,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.shard
            .cluster_waiters
            .borrow_mut()
            .remove(&self.request);
    }
}
