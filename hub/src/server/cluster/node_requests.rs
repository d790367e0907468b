//! Requests from the other nodes (Node servers, emitters, other hubs),
//! heard on shard 0 and applied to this process's sockets on every shard.
//! Every request that waits for an answer gets one, empty when this node
//! does not serve the namespace, so the requester never waits for its
//! timeout because of this node.

use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};

use super::link::Link;
use super::status::ClusterStatus;
use crate::redis::message::{Answer, Outbound};
use crate::redis::wire::{RequestBody, WireBroadcast, WireRequest, WireTarget};
use crate::server::adapter::{Adapter, RoomOp, Target};
use crate::server::broadcast_ack::{self, AckEvent, Tally};
use crate::server::shard::SioShard;
use crate::server::Args;

fn target_of(target: Option<WireTarget>, sid: Option<String>) -> Option<Target> {
    match (target, sid) {
        (Some(t), _) => Some(Target {
            rooms: t.rooms,
            except: t.except,
            volatile: false,
        }),
        // The classic adapter's older form names one socket: its own room.
        (None, Some(sid)) => Some(Target {
            rooms: vec![sid],
            except: Vec::new(),
            volatile: false,
        }),
        (None, None) => None,
    }
}

/// Where and how to answer a request.
#[derive(Clone)]
struct Reply {
    link: Rc<Link>,
    nsp: String,
    request_id: String,
    to_uid: Option<String>,
}

impl Reply {
    fn send(&self, answer: Answer<'_>) {
        self.link.send(
            &self.nsp,
            Outbound::Response {
                request_id: &self.request_id,
                to_uid: self.to_uid.as_deref(),
                answer,
            },
        );
    }
}

pub(super) fn handle(link: &Rc<Link>, sio: &Rc<SioShard>, nsp_name: &str, request: WireRequest) {
    let WireRequest {
        uid,
        request_id,
        body,
    } = request;
    let reply = request_id.map(|request_id| Reply {
        link: link.clone(),
        nsp: nsp_name.to_string(),
        request_id,
        to_uid: uid,
    });
    let Some(nsp) = sio.namespace_handle(nsp_name) else {
        // Not served here: nothing to apply, and empty answers.
        if let Some(reply) = reply {
            match body {
                RequestBody::Sockets { .. } => reply.send(Answer::SocketIds(Vec::new())),
                RequestBody::AllRooms => reply.send(Answer::Rooms(Vec::new())),
                RequestBody::Fetch { .. } => reply.send(Answer::Sockets(Vec::new())),
                RequestBody::BroadcastWithAck { .. } => reply.send(Answer::ClientCount(0)),
                _ => {}
            }
        }
        return;
    };
    let nsp = sio.live(&nsp);
    match body {
        RequestBody::Join { target, rooms, sid } => {
            let legacy = target.is_none();
            if let Some(target) = target_of(target, sid) {
                sio.cluster_room_op(&nsp, target, RoomOp::Join(rooms));
            }
            if let (true, Some(reply)) = (legacy, reply) {
                reply.send(Answer::Done);
            }
        }
        RequestBody::Leave { target, rooms, sid } => {
            let legacy = target.is_none();
            if let Some(target) = target_of(target, sid) {
                sio.cluster_room_op(&nsp, target, RoomOp::Leave(rooms));
            }
            if let (true, Some(reply)) = (legacy, reply) {
                reply.send(Answer::Done);
            }
        }
        RequestBody::Disconnect { target, close, sid } => {
            let legacy = target.is_none();
            if let Some(target) = target_of(target, sid) {
                sio.cluster_room_op(&nsp, target, RoomOp::Disconnect { close });
            }
            if let (true, Some(reply)) = (legacy, reply) {
                reply.send(Answer::Done);
            }
        }
        RequestBody::Sockets { .. } | RequestBody::AllRooms | RequestBody::Fetch { .. } => {
            let Some(reply) = reply else {
                return;
            };
            let Some(slot) = InFlight::take(link) else {
                return;
            };
            let target = match &body {
                RequestBody::Sockets { rooms } => Target {
                    rooms: rooms.clone(),
                    ..Target::default()
                },
                RequestBody::Fetch { target } => Target {
                    rooms: target.rooms.clone(),
                    except: target.except.clone(),
                    volatile: false,
                },
                _ => Target::default(),
            };
            let fetch = sio.adapter.fetch(&nsp, target, None);
            // The Admin UI's `_admin` data only where it runs: otherwise
            // fetchSockets on other nodes sees `data: null`, as before.
            let admin_data = sio.observer.is_some();
            glommio::spawn_local(async move {
                let _slot = slot;
                let sockets = fetch.await;
                match body {
                    RequestBody::Sockets { .. } => reply.send(Answer::SocketIds(
                        sockets.iter().map(|s| s.id.as_str()).collect(),
                    )),
                    RequestBody::AllRooms => {
                        let mut rooms: Vec<&str> = sockets
                            .iter()
                            .flat_map(|s| s.rooms.iter().map(String::as_str))
                            .collect();
                        rooms.sort_unstable();
                        rooms.dedup();
                        reply.send(Answer::Rooms(rooms));
                    }
                    _ => reply.send(Answer::Sockets(
                        sockets
                            .iter()
                            .map(|s| {
                                json!({
                                    "id": s.id,
                                    "handshake": s.handshake,
                                    "rooms": s.rooms,
                                    "data": if admin_data { s.wire_data() } else { serde_json::Value::Null },
                                })
                            })
                            .collect(),
                    )),
                }
            })
            .detach();
        }
        RequestBody::ServerSideEmit { data, attachments } => {
            let ack = reply.map(|reply| {
                Box::new(move |value: Value, attachments: Vec<bytes::Bytes>| {
                    reply.send(Answer::ServerSideAck(value, &attachments));
                }) as super::AckSender
            });
            sio.cluster_server_side_emit(&nsp, data, attachments, ack);
        }
        RequestBody::BroadcastWithAck {
            event,
            target,
            flags,
        } => {
            let Some(reply) = reply else {
                // No one to answer: a plain broadcast.
                sio.deliver_cluster_broadcast(WireBroadcast {
                    uid: String::new(),
                    event,
                    target,
                    flags,
                });
                return;
            };
            // Its collector lives until every ack came or the timeout (up
            // to an hour, as the requester says): one of the bounded slots.
            let Some(slot) = InFlight::take(link) else {
                return;
            };
            let mut data = event.data;
            let Value::String(name) = data.remove(0) else {
                return;
            };
            let args = Args::from_parts(data, event.attachments);
            let timeout = Duration::from_millis(flags.timeout.unwrap_or(5_000).min(3_600_000));
            let target = Target {
                rooms: target.rooms,
                except: target.except,
                volatile: flags.volatile,
            };
            let start = broadcast_ack::start(
                sio,
                &nsp,
                target,
                None,
                &name,
                &args,
                flags.compress,
                timeout,
                None,
            );
            let forget = broadcast_ack::Forget {
                shard: sio.clone(),
                request: start.request,
            };
            glommio::spawn_local(async move {
                let _slot = slot;
                let _forget = forget;
                forward_acks(reply, start, timeout).await;
            })
            .detach();
        }
        RequestBody::Unknown(other) => {
            tracing::debug!(
                kind = other,
                "cluster: ignoring a request of an unknown type"
            );
        }
    }
}

/// Answer another node's broadcast with acks: this node's recipient count
/// once every shard has counted, then each ack, until all came or the timeout.
async fn forward_acks(reply: Reply, start: broadcast_ack::AckStart, timeout: Duration) {
    let deadline = glommio::timer::Timer::new(timeout);
    futures_lite::pin!(deadline);
    let mut tally = Tally::default();
    let mut counted = false;
    let mut acks = 0;
    loop {
        if counted && acks >= tally.clients {
            return;
        }
        let next = futures_lite::future::or(async { start.events.recv().await }, async {
            (&mut deadline).await;
            None
        })
        .await;
        match next {
            None => return,
            Some(AckEvent::Ack(args)) => {
                acks += 1;
                let (mut values, attachments) = args.into_parts();
                let first = if values.is_empty() {
                    Value::Null
                } else {
                    values.swap_remove(0)
                };
                reply.send(Answer::BroadcastAck(first, &attachments));
            }
            Some(event) => {
                tally.count(&event);
                if !counted && tally.local_counted(start.shards) {
                    counted = true;
                    reply.send(Answer::ClientCount(tally.clients));
                }
            }
        }
    }
}

/// A place among the requests from other nodes being answered at once
/// (`MAX_REQUESTS_IN_FLIGHT`): given back when dropped.
struct InFlight(Rc<Link>);

impl InFlight {
    /// None, counted and logged, when every place is taken.
    fn take(link: &Rc<Link>) -> Option<InFlight> {
        let count = link.requests_in_flight.get();
        if count >= super::link::MAX_REQUESTS_IN_FLIGHT {
            ClusterStatus::add(&link.shared.status.publish_failed, 1);
            tracing::debug!("cluster: too many requests in flight; one ignored");
            return None;
        }
        link.requests_in_flight.set(count + 1);
        Some(InFlight(link.clone()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let link = &self.0;
        link.requests_in_flight
            .set(link.requests_in_flight.get().saturating_sub(1));
    }
}
