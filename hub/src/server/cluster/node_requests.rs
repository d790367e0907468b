//! Requests from the other nodes (Node servers, emitters, other hubs),
//! heard on shard 0 and applied to this process's sockets on every shard.

use std::rc::Rc;

use serde_json::{json, Value};

use std::time::Duration;

use super::link::Link;
use super::status::ClusterStatus;
use crate::redis::wire::{self, kind, RequestBody, WireBroadcast, WireRequest, WireTarget};
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
        // The adapter's older form names one socket: its own room.
        (None, Some(sid)) => Some(Target {
            rooms: vec![sid],
            except: Vec::new(),
            volatile: false,
        }),
        (None, None) => None,
    }
}

pub(super) fn handle(link: &Rc<Link>, sio: &Rc<SioShard>, nsp_name: &str, request: WireRequest) {
    let Some(nsp) = sio.namespace_handle(nsp_name) else {
        return;
    };
    let nsp = sio.live(&nsp);
    let response_channel = link.shared.channels.response(nsp_name);
    let answer_done = |request_id: &Option<String>, legacy: bool| {
        if let (true, Some(id)) = (legacy, request_id) {
            link.publish(
                &response_channel,
                &wire::encode_object(&json!({"requestId": id}), &[]),
            );
        }
    };
    let WireRequest {
        request_id, body, ..
    } = request;
    match body {
        RequestBody::Join { target, rooms, sid } => {
            let legacy = target.is_none();
            if let Some(target) = target_of(target, sid) {
                sio.cluster_room_op(&nsp, target, RoomOp::Join(rooms));
            }
            answer_done(&request_id, legacy);
        }
        RequestBody::Leave { target, rooms, sid } => {
            let legacy = target.is_none();
            if let Some(target) = target_of(target, sid) {
                sio.cluster_room_op(&nsp, target, RoomOp::Leave(rooms));
            }
            answer_done(&request_id, legacy);
        }
        RequestBody::Disconnect { target, close, sid } => {
            let legacy = target.is_none();
            if let Some(target) = target_of(target, sid) {
                sio.cluster_room_op(&nsp, target, RoomOp::Disconnect { close });
            }
            answer_done(&request_id, legacy);
        }
        RequestBody::Sockets { .. } | RequestBody::AllRooms | RequestBody::Fetch { .. } => {
            let Some(request_id) = request_id else {
                return;
            };
            if link.requests_in_flight.get() >= super::link::MAX_REQUESTS_IN_FLIGHT {
                ClusterStatus::add(&link.shared.status.publish_failed, 1);
                tracing::debug!("cluster: too many requests in flight; one ignored");
                return;
            }
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
            link.requests_in_flight
                .set(link.requests_in_flight.get() + 1);
            let fetch = sio.adapter.fetch(&nsp, target, None);
            let link = link.clone();
            glommio::spawn_local(async move {
                let sockets = fetch.await;
                let response = match body {
                    RequestBody::Sockets { .. } => json!({
                        "requestId": request_id,
                        "sockets": sockets.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
                    }),
                    RequestBody::AllRooms => {
                        let mut rooms: Vec<&str> = sockets
                            .iter()
                            .flat_map(|s| s.rooms.iter().map(String::as_str))
                            .collect();
                        rooms.sort_unstable();
                        rooms.dedup();
                        json!({"requestId": request_id, "rooms": rooms})
                    }
                    _ => json!({
                        "requestId": request_id,
                        "sockets": sockets.iter().map(|s| json!({
                            "id": s.id,
                            "handshake": s.handshake,
                            "rooms": s.rooms,
                            "data": Value::Null,
                        })).collect::<Vec<_>>(),
                    }),
                };
                link.publish(&response_channel, &wire::encode_object(&response, &[]));
                link.requests_in_flight
                    .set(link.requests_in_flight.get().saturating_sub(1));
            })
            .detach();
        }
        RequestBody::ServerSideEmit { data, attachments } => {
            let ack = request_id.map(|id| {
                let link = link.clone();
                let channel = response_channel.clone();
                Box::new(move |value: Value, attachments: Vec<bytes::Bytes>| {
                    let response = json!({
                        "type": kind::SERVER_SIDE_EMIT,
                        "requestId": id,
                        "data": value,
                    });
                    link.publish(&channel, &wire::encode_object(&response, &attachments));
                }) as super::AckSender
            });
            sio.cluster_server_side_emit(&nsp, data, attachments, ack);
        }
        RequestBody::BroadcastWithAck {
            event,
            target,
            flags,
        } => {
            let Some(request_id) = request_id else {
                // No one to answer: a plain broadcast.
                sio.deliver_cluster_broadcast(WireBroadcast {
                    uid: String::new(),
                    event,
                    target,
                    flags,
                });
                return;
            };
            let mut data = event.data;
            let serde_json::Value::String(name) = data.remove(0) else {
                return;
            };
            let args = Args::from_parts(data, event.attachments);
            let timeout = Duration::from_millis(flags.timeout.unwrap_or(5_000).min(3_600_000));
            let target = Target {
                rooms: target.rooms,
                except: target.except,
                volatile: flags.volatile,
            };
            let start = broadcast_ack::start(sio, &nsp, target, None, &name, &args, timeout, None);
            let link = link.clone();
            let forget = broadcast_ack::Forget {
                shard: sio.clone(),
                request: start.request,
            };
            glommio::spawn_local(async move {
                let _forget = forget;
                forward_acks(link, start, timeout, request_id, response_channel).await;
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
/// once every shard has counted (`BROADCAST_CLIENT_COUNT`), then each ack
/// (`BROADCAST_ACK`), until all came or the timeout.
async fn forward_acks(
    link: Rc<Link>,
    start: broadcast_ack::AckStart,
    timeout: Duration,
    request_id: String,
    channel: String,
) {
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
                let response = json!({
                    "type": kind::BROADCAST_ACK,
                    "requestId": request_id,
                    "packet": first,
                });
                // Always msgpack, as Node's adapter sends acks.
                let mut bytes = Vec::new();
                crate::redis::msgpack::write_value(&mut bytes, &response, &attachments);
                link.publish(&channel, &bytes);
            }
            Some(event) => {
                tally.count(&event);
                if !counted && tally.local_counted(start.shards) {
                    counted = true;
                    let response = json!({
                        "type": kind::BROADCAST_CLIENT_COUNT,
                        "requestId": request_id,
                        "clientCount": tally.clients,
                    });
                    link.publish(&channel, &wire::encode_object(&response, &[]));
                }
            }
        }
    }
}
