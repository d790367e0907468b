//! Every message a node publishes or hears, in either dialect of Node's
//! Redis adapter:
//!
//! - **classic** (`createAdapter`, [`super::wire`]): `PUBLISH`; broadcasts
//!   `[uid, packet, opts]` on `<prefix>#<nsp>#[<room>#]`, requests and
//!   responses on their own channels;
//! - **sharded** (`createShardedAdapter`, Redis 7): `SPUBLISH`; every
//!   message `{type, data, uid, nsp}` (socket.io-adapter's
//!   `ClusterAdapter` messages) on `<prefix>#<nsp>#`, a single-room
//!   broadcast on its room's channel (`dynamic` subscription mode), and
//!   answers on the requester's `<prefix>#<nsp>#<uid>#`.
//!
//! Both are mapped to one set of types, so the node's logic is the same.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::msgpack;
use super::wire::{
    self, kind, Channels, RequestBody, WireBroadcast, WireError, WireFlags, WireRequest,
    WireResponse, WireTarget,
};

/// Which of Node's adapters the cluster speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `createAdapter`: `PUBLISH`, `PSUBSCRIBE`/`SUBSCRIBE`.
    Classic,
    /// `createShardedAdapter`: `SPUBLISH`/`SSUBSCRIBE`; `dynamic`: a
    /// channel per room (the adapter's `subscriptionMode: "dynamic"`),
    /// else only the namespace's (`"static"`).
    Sharded { dynamic: bool },
}

/// The ClusterAdapter's message types (sharded dialect).
mod sharded {
    pub const BROADCAST: u64 = 3;
    pub const SOCKETS_JOIN: u64 = 4;
    pub const SOCKETS_LEAVE: u64 = 5;
    pub const DISCONNECT_SOCKETS: u64 = 6;
    pub const FETCH_SOCKETS: u64 = 7;
    pub const FETCH_SOCKETS_RESPONSE: u64 = 8;
    pub const SERVER_SIDE_EMIT: u64 = 9;
    pub const SERVER_SIDE_EMIT_RESPONSE: u64 = 10;
    pub const BROADCAST_CLIENT_COUNT: u64 = 11;
    pub const BROADCAST_ACK: u64 = 12;
}

/// What a node publishes.
pub(crate) enum Outbound<'a> {
    Broadcast {
        event: &'a str,
        args: &'a [Value],
        attachments: &'a [Bytes],
        target: &'a WireTarget,
        flags: &'a WireFlags,
    },
    BroadcastWithAck {
        request_id: &'a str,
        data: &'a [Value],
        attachments: &'a [Bytes],
        target: &'a WireTarget,
        timeout_ms: u64,
    },
    Join {
        target: &'a WireTarget,
        rooms: &'a [String],
    },
    Leave {
        target: &'a WireTarget,
        rooms: &'a [String],
    },
    Disconnect {
        target: &'a WireTarget,
        close: bool,
    },
    Fetch {
        request_id: &'a str,
        target: &'a WireTarget,
    },
    AllRooms {
        request_id: &'a str,
    },
    ServerSideEmit {
        request_id: Option<&'a str>,
        data: &'a [Value],
        attachments: &'a [Bytes],
    },
    /// An answer to `to_uid`'s request `request_id`.
    Response {
        request_id: &'a str,
        to_uid: Option<&'a str>,
        answer: Answer<'a>,
    },
}

/// The answers a node gives.
pub(crate) enum Answer<'a> {
    /// Classic `SOCKETS`: socket ids.
    SocketIds(Vec<&'a str>),
    /// Classic `ALL_ROOMS`.
    Rooms(Vec<&'a str>),
    /// `fetchSockets`: `{id, handshake, rooms, data}` each.
    Sockets(Vec<Value>),
    ServerSideAck(Value, &'a [Bytes]),
    ClientCount(usize),
    BroadcastAck(Value, &'a [Bytes]),
    /// Classic single-socket join/leave/disconnect: done.
    Done,
}

/// A command to send: `PUBLISH` or `SPUBLISH`, its channel and payload.
pub(crate) struct Publish {
    pub command: &'static [u8],
    pub channel: String,
    pub payload: Vec<u8>,
}

impl Publish {
    /// The command's RESP bytes; None when there is nothing to send (a
    /// message the dialect has no form for).
    pub fn to_resp(&self) -> Option<Vec<u8>> {
        if self.payload.is_empty() {
            return None;
        }
        let mut out = bytes::BytesMut::with_capacity(self.payload.len() + self.channel.len() + 32);
        super::resp::command(
            &mut out,
            &[self.command, self.channel.as_bytes(), &self.payload],
        );
        Some(out.to_vec())
    }
}

/// What a node heard.
#[derive(Debug)]
pub(crate) enum Inbound {
    Broadcast(WireBroadcast),
    Request {
        nsp: String,
        request: WireRequest,
    },
    Response(WireResponse),
    /// Not for this node (its own message, another prefix).
    Ignore,
}

/// Whether Node's sharded adapter would take `room` for a socket id
/// (socket.io's ids are 20 characters): such a room has no channel.
fn looks_like_a_node_socket_id(room: &str) -> bool {
    room.chars().count() == 20
}

impl Dialect {
    /// `PUBSUB NUMSUB` or `PUBSUB SHARDNUMSUB`, and the channel whose
    /// subscribers are the nodes of namespace `nsp`.
    pub(crate) fn server_count(&self, channels: &Channels, nsp: &str) -> (&'static [u8], String) {
        match self {
            Dialect::Classic => (b"NUMSUB", channels.request(nsp)),
            Dialect::Sharded { .. } => (b"SHARDNUMSUB", channels.broadcast(nsp, &[])),
        }
    }

    /// Whether the other nodes answer `allRooms` (the sharded adapter has no such request).
    pub(crate) fn has_all_rooms(&self) -> bool {
        *self == Dialect::Classic
    }

    /// The channel a room's broadcasts come on, when it has one of its own
    /// that the node must subscribe to (sharded, dynamic mode).
    pub(crate) fn room_channel(
        &self,
        channels: &Channels,
        nsp: &str,
        room: &str,
    ) -> Option<String> {
        match self {
            Dialect::Sharded { dynamic: true } => {
                Some(channels.broadcast(nsp, &[room.to_string()]))
            }
            _ => None,
        }
    }

    pub(crate) fn encode(
        &self,
        channels: &Channels,
        uid: &str,
        nsp: &str,
        msg: Outbound<'_>,
    ) -> Publish {
        match self {
            Dialect::Classic => encode_classic(channels, uid, nsp, msg),
            Dialect::Sharded { dynamic } => encode_sharded(channels, uid, nsp, *dynamic, msg),
        }
    }

    pub(crate) fn decode(
        &self,
        channels: &Channels,
        uid: &str,
        channel: &str,
        payload: &[u8],
    ) -> Result<Inbound, WireError> {
        match self {
            Dialect::Classic => decode_classic(channels, uid, channel, payload),
            Dialect::Sharded { .. } => decode_sharded(channels, uid, channel, payload),
        }
    }
}

fn opts(target: &WireTarget) -> Value {
    json!({"rooms": target.rooms, "except": target.except})
}

fn encode_classic(channels: &Channels, uid: &str, nsp: &str, msg: Outbound<'_>) -> Publish {
    let publish = |channel: String, payload: Vec<u8>| Publish {
        command: b"PUBLISH",
        channel,
        payload,
    };
    let json = |value: Value| wire::encode_object(&value, &[]);
    match msg {
        Outbound::Broadcast {
            event,
            args,
            attachments,
            target,
            flags,
        } => publish(
            channels.broadcast(nsp, &target.rooms),
            wire::encode_broadcast(uid, nsp, event, args, attachments, target, flags),
        ),
        Outbound::BroadcastWithAck {
            request_id,
            data,
            attachments,
            target,
            timeout_ms,
        } => publish(
            channels.request(nsp),
            wire::broadcast_ack_request(
                uid,
                request_id,
                nsp,
                data,
                attachments,
                target,
                timeout_ms,
            ),
        ),
        Outbound::Join { target, rooms } | Outbound::Leave { target, rooms } => {
            let kind = if matches!(msg, Outbound::Join { .. }) {
                kind::REMOTE_JOIN
            } else {
                kind::REMOTE_LEAVE
            };
            publish(
                channels.request(nsp),
                json(json!({"uid": uid, "type": kind, "opts": opts(target), "rooms": rooms})),
            )
        }
        Outbound::Disconnect { target, close } => publish(
            channels.request(nsp),
            json(
                json!({"uid": uid, "type": kind::REMOTE_DISCONNECT, "opts": opts(target), "close": close}),
            ),
        ),
        Outbound::Fetch { request_id, target } => publish(
            channels.request(nsp),
            json(
                json!({"uid": uid, "requestId": request_id, "type": kind::REMOTE_FETCH, "opts": opts(target)}),
            ),
        ),
        Outbound::AllRooms { request_id } => publish(
            channels.request(nsp),
            json(json!({"uid": uid, "requestId": request_id, "type": kind::ALL_ROOMS})),
        ),
        Outbound::ServerSideEmit {
            request_id,
            data,
            attachments,
        } => {
            // The key order of Node's adapter.
            let request = match request_id {
                Some(id) => {
                    json!({"uid": uid, "requestId": id, "type": kind::SERVER_SIDE_EMIT, "data": data})
                }
                None => json!({"uid": uid, "type": kind::SERVER_SIDE_EMIT, "data": data}),
            };
            publish(
                channels.request(nsp),
                wire::encode_object(&request, attachments),
            )
        }
        Outbound::Response {
            request_id, answer, ..
        } => {
            let channel = channels.response(nsp);
            let payload = match answer {
                Answer::SocketIds(ids) => json(json!({"requestId": request_id, "sockets": ids})),
                Answer::Rooms(rooms) => json(json!({"requestId": request_id, "rooms": rooms})),
                Answer::Sockets(sockets) => {
                    json(json!({"requestId": request_id, "sockets": sockets}))
                }
                Answer::ServerSideAck(value, attachments) => wire::encode_object(
                    &json!({"type": kind::SERVER_SIDE_EMIT, "requestId": request_id, "data": value}),
                    attachments,
                ),
                Answer::ClientCount(count) => json(json!({
                    "type": kind::BROADCAST_CLIENT_COUNT, "requestId": request_id, "clientCount": count,
                })),
                Answer::BroadcastAck(value, attachments) => {
                    // Always msgpack, as Node's adapter sends acks.
                    let mut out = Vec::new();
                    msgpack::write_value(
                        &mut out,
                        &json!({"type": kind::BROADCAST_ACK, "requestId": request_id, "packet": value}),
                        attachments,
                    );
                    out
                }
                Answer::Done => json(json!({"requestId": request_id})),
            };
            publish(channel, payload)
        }
    }
}

/// `{type, data, uid, nsp}`; msgpack when `attachments` are referenced.
fn cluster_message(kind: u64, data: Value, uid: &str, nsp: &str, attachments: &[Bytes]) -> Vec<u8> {
    wire::encode_object(
        &json!({"type": kind, "data": data, "uid": uid, "nsp": nsp}),
        attachments,
    )
}

fn encode_sharded(
    channels: &Channels,
    uid: &str,
    nsp: &str,
    dynamic: bool,
    msg: Outbound<'_>,
) -> Publish {
    let main = channels.broadcast(nsp, &[]);
    let publish = |channel: String, payload: Vec<u8>| Publish {
        command: b"SPUBLISH",
        channel,
        payload,
    };
    let flags_json = |flags: &WireFlags| {
        let mut map = Map::new();
        if flags.volatile {
            map.insert("volatile".into(), Value::Bool(true));
        }
        if let Some(compress) = flags.compress {
            map.insert("compress".into(), Value::Bool(compress));
        }
        Value::Object(map)
    };
    let opts_flags = |target: &WireTarget, flags: Value| json!({"rooms": target.rooms, "except": target.except, "flags": flags});
    match msg {
        Outbound::Broadcast {
            event,
            args,
            attachments,
            target,
            flags,
        } => {
            let mut data = Vec::with_capacity(args.len() + 1);
            data.push(Value::from(event));
            data.extend_from_slice(args);
            // A room's own channel only for one room that Node's adapter
            // would not take for a socket id.
            let channel = match &target.rooms[..] {
                [room] if dynamic && !looks_like_a_node_socket_id(room) => {
                    channels.broadcast(nsp, &target.rooms)
                }
                _ => main,
            };
            let body = json!({
                "packet": {"type": 2, "data": data},
                "opts": opts_flags(target, flags_json(flags)),
            });
            publish(
                channel,
                cluster_message(sharded::BROADCAST, body, uid, nsp, attachments),
            )
        }
        Outbound::BroadcastWithAck {
            request_id,
            data,
            attachments,
            target,
            timeout_ms,
        } => {
            let body = json!({
                "packet": {"type": 2, "data": data},
                "requestId": request_id,
                "opts": opts_flags(target, json!({"timeout": timeout_ms})),
            });
            publish(
                main,
                cluster_message(sharded::BROADCAST, body, uid, nsp, attachments),
            )
        }
        Outbound::Join { target, rooms } | Outbound::Leave { target, rooms } => {
            let kind = if matches!(msg, Outbound::Join { .. }) {
                sharded::SOCKETS_JOIN
            } else {
                sharded::SOCKETS_LEAVE
            };
            let body = json!({"opts": opts_flags(target, json!({})), "rooms": rooms});
            publish(main, cluster_message(kind, body, uid, nsp, &[]))
        }
        Outbound::Disconnect { target, close } => {
            let body = json!({"opts": opts_flags(target, json!({})), "close": close});
            publish(
                main,
                cluster_message(sharded::DISCONNECT_SOCKETS, body, uid, nsp, &[]),
            )
        }
        Outbound::Fetch { request_id, target } => {
            let body = json!({"opts": opts_flags(target, json!({})), "requestId": request_id});
            publish(
                main,
                cluster_message(sharded::FETCH_SOCKETS, body, uid, nsp, &[]),
            )
        }
        // The sharded adapter has no such request: nobody would answer.
        Outbound::AllRooms { .. } => publish(main, Vec::new()),
        Outbound::ServerSideEmit {
            request_id,
            data,
            attachments,
        } => {
            let body = match request_id {
                Some(id) => json!({"requestId": id, "packet": data}),
                None => json!({"packet": data}),
            };
            publish(
                main,
                cluster_message(sharded::SERVER_SIDE_EMIT, body, uid, nsp, attachments),
            )
        }
        Outbound::Response {
            request_id,
            to_uid,
            answer,
        } => {
            let channel = channels.broadcast(nsp, &[to_uid.unwrap_or("").to_string()]);
            let (kind, body, attachments) = match answer {
                Answer::Sockets(sockets) => (
                    sharded::FETCH_SOCKETS_RESPONSE,
                    json!({"requestId": request_id, "sockets": sockets}),
                    &[][..],
                ),
                Answer::ServerSideAck(value, attachments) => (
                    sharded::SERVER_SIDE_EMIT_RESPONSE,
                    json!({"requestId": request_id, "packet": value}),
                    attachments,
                ),
                Answer::ClientCount(count) => (
                    sharded::BROADCAST_CLIENT_COUNT,
                    json!({"requestId": request_id, "clientCount": count}),
                    &[][..],
                ),
                Answer::BroadcastAck(value, attachments) => (
                    sharded::BROADCAST_ACK,
                    json!({"requestId": request_id, "packet": value}),
                    attachments,
                ),
                // Classic-only answers.
                Answer::SocketIds(_) | Answer::Rooms(_) | Answer::Done => {
                    return publish(channel, Vec::new())
                }
            };
            publish(channel, cluster_message(kind, body, uid, nsp, attachments))
        }
    }
}

fn decode_classic(
    channels: &Channels,
    uid: &str,
    channel: &str,
    payload: &[u8],
) -> Result<Inbound, WireError> {
    if channels.namespace_of_broadcast(channel).is_some() {
        let broadcast = wire::decode_broadcast(payload)?;
        if broadcast.uid == uid {
            return Ok(Inbound::Ignore);
        }
        return Ok(Inbound::Broadcast(broadcast));
    }
    let Some((nsp, response)) = channels.namespace_of_request(channel) else {
        return Ok(Inbound::Ignore);
    };
    if response {
        return Ok(Inbound::Response(wire::decode_response(payload)?));
    }
    let request = wire::decode_request(payload)?;
    if request.uid.as_deref() == Some(uid) {
        return Ok(Inbound::Ignore);
    }
    Ok(Inbound::Request {
        nsp: nsp.to_string(),
        request,
    })
}

fn decode_sharded(
    channels: &Channels,
    uid: &str,
    channel: &str,
    payload: &[u8],
) -> Result<Inbound, WireError> {
    if channels.namespace_of_broadcast(channel).is_none() {
        return Ok(Inbound::Ignore);
    }
    let (value, attachments) = if payload.first() == Some(&b'{') {
        (serde_json::from_slice(payload)?, Vec::new())
    } else {
        msgpack::read(payload)?
    };
    let Value::Object(mut message) = value else {
        return Err(WireError::Shape("a message is an object"));
    };
    let kind = message
        .get("type")
        .and_then(Value::as_u64)
        .ok_or(WireError::Shape("a message has a numeric type"))?;
    let sender = match message.get("uid") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    if sender.as_deref() == Some(uid) {
        return Ok(Inbound::Ignore);
    }
    let nsp = match message.get("nsp") {
        Some(Value::String(s)) => s.clone(),
        _ => "/".to_string(),
    };
    let data = match message.remove("data") {
        Some(Value::Object(data)) => data,
        _ => return Err(WireError::Shape("data is an object")),
    };
    let request_id = match data.get("requestId") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    // Answers: mapped to the classic adapter's shapes.
    let answer = |body: Value| -> Result<Inbound, WireError> {
        let Value::Object(body) = body else {
            unreachable!("built as an object")
        };
        Ok(Inbound::Response(WireResponse {
            request_id: request_id
                .clone()
                .ok_or(WireError::Shape("a response has a requestId"))?,
            body,
            attachments: attachments.clone(),
        }))
    };
    let field = |name: &str| data.get(name).cloned().unwrap_or(Value::Null);
    match kind {
        sharded::FETCH_SOCKETS_RESPONSE => return answer(json!({"sockets": field("sockets")})),
        sharded::SERVER_SIDE_EMIT_RESPONSE => {
            return answer(json!({"type": kind::SERVER_SIDE_EMIT, "data": field("packet")}))
        }
        sharded::BROADCAST_CLIENT_COUNT => {
            return answer(
                json!({"type": kind::BROADCAST_CLIENT_COUNT, "clientCount": field("clientCount")}),
            )
        }
        sharded::BROADCAST_ACK => {
            return answer(json!({"type": kind::BROADCAST_ACK, "packet": field("packet")}))
        }
        _ => {}
    }
    let target = |data: &Map<String, Value>| -> Result<WireTarget, WireError> {
        Ok(wire::opts_of(data.get("opts").unwrap_or(&Value::Null))?.0)
    };
    let rooms = |data: &Map<String, Value>| wire::rooms_of(data.get("rooms"));
    let body = match kind {
        sharded::BROADCAST => {
            let mut packet = match data.get("packet") {
                Some(Value::Object(packet)) => packet.clone(),
                _ => return Err(WireError::Shape("a broadcast has a packet")),
            };
            packet.insert("nsp".into(), Value::String(nsp.clone()));
            let event = wire::event_of(Value::Object(packet), attachments)?;
            let (target, flags) = wire::opts_of(data.get("opts").unwrap_or(&Value::Null))?;
            if request_id.is_none() {
                return Ok(Inbound::Broadcast(WireBroadcast {
                    uid: sender.unwrap_or_default(),
                    event,
                    target,
                    flags,
                }));
            }
            RequestBody::BroadcastWithAck {
                event,
                target,
                flags,
            }
        }
        sharded::SOCKETS_JOIN => RequestBody::Join {
            target: Some(target(&data)?),
            rooms: rooms(&data)?,
            sid: None,
        },
        sharded::SOCKETS_LEAVE => RequestBody::Leave {
            target: Some(target(&data)?),
            rooms: rooms(&data)?,
            sid: None,
        },
        sharded::DISCONNECT_SOCKETS => RequestBody::Disconnect {
            target: Some(target(&data)?),
            close: data.get("close").and_then(Value::as_bool).unwrap_or(false),
            sid: None,
        },
        sharded::FETCH_SOCKETS => RequestBody::Fetch {
            target: target(&data)?,
        },
        sharded::SERVER_SIDE_EMIT => match data.get("packet") {
            Some(Value::Array(packet)) if matches!(packet.first(), Some(Value::String(_))) => {
                let mut data = packet.clone();
                wire::check_depth(&data)?;
                let attachments = msgpack::keep_referenced(&mut data, attachments);
                RequestBody::ServerSideEmit { data, attachments }
            }
            _ => {
                return Err(WireError::Shape(
                    "serverSideEmit packet is [event, ...args]",
                ))
            }
        },
        other => RequestBody::Unknown(other),
    };
    Ok(Inbound::Request {
        nsp,
        request: WireRequest {
            uid: sender,
            request_id,
            body,
        },
    })
}

#[cfg(test)]
mod tests;
