//! Emitting to many sockets: rooms, exceptions and flags, on every shard.
//! A broadcast may ask every recipient for an acknowledgement
//! (`timeout(..).emit_with_ack`, see `broadcast_ack`).

use std::future::Future;
use std::rc::Rc;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::adapter::{Adapter, RoomOp, Target};
use super::args::Args;
use super::broadcast_ack::{self, BroadcastAckTimeout};
use super::cluster::link::NodeRequest;
use super::cluster::ClusterShared;
use super::namespace::Nsp;
use super::reason::DisconnectReason;
use super::shard::SioShard;
use super::socket::{EmitError, SocketInner};
use crate::redis::message::Outbound;
use crate::redis::wire::{WireFlags, WireTarget};
use crate::socketio::is_reserved_event;

/// A socket as a server-wide query reports it, from whichever shard owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteSocket {
    pub id: String,
    pub nsp: String,
    pub rooms: Vec<String>,
    /// The shard that owns it (0 for a socket of another node).
    pub shard: usize,
    /// False for a socket of another node of the cluster.
    pub on_this_node: bool,
    /// Its handshake as Node serializes it (headers, time, address, url,
    /// query, auth...).
    pub handshake: Value,
    /// The Engine.IO session id of its connection; for a socket of
    /// another node, the first 12 characters of it when the node said
    /// (see [`RemoteSocket::wire_data`]), else None.
    pub client_id: Option<String>,
    /// Its connection's transport now (for another node's socket: when
    /// the node said, else None).
    pub transport: Option<crate::engine::TransportKind>,
}

impl RemoteSocket {
    pub(crate) fn of(socket: &SocketInner, shard: usize) -> RemoteSocket {
        RemoteSocket {
            on_this_node: true,
            handshake: socket.handshake.to_json(),
            id: socket.id.to_string(),
            nsp: socket.nsp.name.clone(),
            rooms: socket.room_names(),
            shard,
            client_id: Some(socket.client.conn.sid().to_string()),
            transport: Some(socket.client.conn.transport()),
        }
    }
}

impl RemoteSocket {
    /// Its `data` in this node's `fetchSockets` answer to the cluster:
    /// hub's sockets carry no JS data object, so only what Node's
    /// `@socket.io/admin-ui` keeps in `socket.data._admin` (the first 12
    /// characters of the Engine.IO id and the transport), which an Admin
    /// UI on any node, hub or Node, shows for a socket of another node.
    pub(crate) fn wire_data(&self) -> Value {
        match (&self.client_id, self.transport) {
            (Some(client_id), Some(transport)) => serde_json::json!({
                "_admin": {
                    "clientId": client_id.chars().take(12).collect::<String>(),
                    "transport": transport.as_str(),
                }
            }),
            _ => Value::Null,
        }
    }
}

/// How long a broadcast with acks waits when no timeout is set.
const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Targets for an emit or a room operation: `to` rooms (all sockets when
/// none), `except` rooms, with flags. Built from a socket (which it then
/// excludes) or from a namespace. It may be kept: when used, it acts on the
/// shard's namespace of its name as it is then (a dynamic namespace may
/// have been removed and created again meanwhile).
#[must_use = "a broadcast does nothing until emitted"]
pub struct BroadcastOperator {
    shard: Rc<SioShard>,
    nsp: Rc<Nsp>,
    sender: Option<Rc<SocketInner>>,
    target: Target,
    compress: Option<bool>,
    binary: Option<bool>,
    /// This node only, not the rest of the cluster.
    local: bool,
    /// How long a broadcast with acks waits for its answers.
    timeout: Option<Duration>,
}

impl BroadcastOperator {
    pub(crate) fn new(
        shard: Rc<SioShard>,
        nsp: Rc<Nsp>,
        sender: Option<Rc<SocketInner>>,
    ) -> BroadcastOperator {
        BroadcastOperator {
            shard,
            nsp,
            sender,
            target: Target::default(),
            compress: None,
            binary: None,
            local: false,
            timeout: None,
        }
    }

    /// How long [`BroadcastOperator::emit_with_ack`] waits for the
    /// recipients' answers (5 s unless set), as socket.io's `io.timeout(ms)`.
    pub fn timeout(mut self, timeout: Duration) -> BroadcastOperator {
        self.timeout = Some(timeout);
        self
    }

    /// Emit to every target socket on every shard (and node), each asked
    /// for an acknowledgement (socket.io's `io.timeout(ms).emitWithAck`):
    /// the answers of all recipients, in arrival order, or those that came
    /// before the timeout with an error. Recipients are those the packet
    /// was queued to (a volatile packet dropped for a slow client asks it
    /// nothing); one that disconnects before answering makes it time out.
    pub fn emit_with_ack(
        self,
        event: &str,
        args: Args,
    ) -> Result<impl Future<Output = Result<Vec<Args>, BroadcastAckTimeout>>, EmitError> {
        if is_reserved_event(event) {
            return Err(EmitError::Reserved(event.to_string()));
        }
        let timeout = self.timeout.unwrap_or(DEFAULT_ACK_TIMEOUT);
        let cluster = self.cluster_target();
        let nsp = self.shard.live(&self.nsp);
        let start = broadcast_ack::start(
            &self.shard,
            &nsp,
            self.target,
            self.sender.as_deref(),
            event,
            &args,
            self.compress,
            timeout,
            cluster,
        );
        Ok(broadcast_ack::collect(self.shard, start, timeout))
    }

    /// Only this node's sockets (every shard), not the cluster's others.
    pub fn local(mut self) -> BroadcastOperator {
        self.local = true;
        self
    }

    /// The cluster to tell, unless this is local; and the target as the
    /// other nodes see it (the sender's own room excepted).
    fn cluster_target(&self) -> Option<(Arc<ClusterShared>, WireTarget)> {
        if self.local {
            return None;
        }
        let cluster = self.shard.cluster()?.clone();
        let mut except = self.target.except.clone();
        if let Some(sender) = &self.sender {
            except.push(sender.id.to_string());
        }
        Some((
            cluster,
            WireTarget {
                rooms: self.target.rooms.clone(),
                except,
            },
        ))
    }

    /// Add a target room; each recipient gets the packet once however many of its rooms are named.
    pub fn to(mut self, room: &str) -> BroadcastOperator {
        if !self.target.rooms.iter().any(|r| r == room) {
            self.target.rooms.push(room.to_string());
        }
        self
    }

    pub fn in_(self, room: &str) -> BroadcastOperator {
        self.to(room)
    }

    /// [`BroadcastOperator::to_many`] of names the caller owns: they are
    /// moved into the target, not copied.
    pub fn to_rooms(mut self, rooms: Vec<String>) -> BroadcastOperator {
        if self.target.rooms.is_empty() && rooms.len() == 1 {
            self.target.rooms = rooms;
            return self;
        }
        for room in rooms {
            if !self.target.rooms.contains(&room) {
                self.target.rooms.push(room);
            }
        }
        self
    }

    /// Add several target rooms.
    pub fn to_many<'a>(mut self, rooms: impl IntoIterator<Item = &'a str>) -> BroadcastOperator {
        for room in rooms {
            self = self.to(room);
        }
        self
    }

    /// Leave out the sockets in `room`.
    pub fn except(mut self, room: &str) -> BroadcastOperator {
        if !self.target.except.iter().any(|r| r == room) {
            self.target.except.push(room.to_string());
        }
        self
    }

    /// Drop the packet for recipients that cannot take it now.
    pub fn volatile(mut self) -> BroadcastOperator {
        self.target.volatile = true;
        self
    }

    /// Per-message compression flag: `false` sends the packet (its text and binary attachments)
    /// uncompressed even on WebSockets that negotiated permessage-deflate.
    pub fn compress(mut self, compress: bool) -> BroadcastOperator {
        self.compress = Some(compress);
        self
    }

    /// Binary hint; arguments carry their attachments explicitly, so nothing is scanned.
    pub fn binary(mut self, binary: bool) -> BroadcastOperator {
        self.binary = Some(binary);
        self
    }

    /// The flags as set: (volatile, compress, binary).
    pub fn flags(&self) -> (bool, Option<bool>, Option<bool>) {
        (self.target.volatile, self.compress, self.binary)
    }

    /// Encode once and deliver to every target socket on every shard.
    pub fn emit(self, event: &str, args: Args) -> Result<(), EmitError> {
        if is_reserved_event(event) {
            return Err(EmitError::Reserved(event.to_string()));
        }
        let (packet, offset) =
            self.shard
                .encode_broadcast(&self.nsp.name, event, &args, self.target.volatile);
        let packet = packet.compress(self.compress);
        if let Some((cluster, target)) = self.cluster_target() {
            let flags = WireFlags {
                volatile: self.target.volatile,
                compress: self.compress,
                local: false,
                timeout: None,
            };
            let _ = cluster;
            self.shard.cluster_publish(
                &self.nsp.name,
                Outbound::Broadcast {
                    event,
                    args: args.values(),
                    attachments: args.attachments(),
                    target: &target,
                    flags: &flags,
                },
            );
        }
        let nsp = self.shard.live(&self.nsp);
        self.shard
            .adapter
            .broadcast(&nsp, self.target, self.sender.as_deref(), packet, offset);
        Ok(())
    }

    /// Make the target sockets join `room`, on every shard.
    pub fn sockets_join(self, room: &str) {
        self.room_op(RoomOp::Join(vec![room.to_string()]));
    }

    /// Make the target sockets leave `room`, on every shard.
    pub fn sockets_leave(self, room: &str) {
        self.room_op(RoomOp::Leave(vec![room.to_string()]));
    }

    /// Disconnect the target sockets, on every shard (`close`: their whole connections).
    pub fn disconnect_sockets(self, close: bool) {
        self.room_op(RoomOp::Disconnect { close });
    }

    fn room_op(self, op: RoomOp) {
        if let Some((_, target)) = self.cluster_target() {
            let target = &target;
            let msg = match &op {
                RoomOp::Join(rooms) => Outbound::Join { target, rooms },
                RoomOp::Leave(rooms) => Outbound::Leave { target, rooms },
                RoomOp::Disconnect { close } => Outbound::Disconnect {
                    target,
                    close: *close,
                },
            };
            self.shard.cluster_publish(&self.nsp.name, msg);
        }
        let nsp = self.shard.live(&self.nsp);
        let local = self
            .shard
            .adapter
            .room_op(&nsp, self.target, self.sender.as_deref(), op);
        for (socket, close) in local {
            self.shard
                .disconnect(&socket, close, DisconnectReason::ServerNamespaceDisconnect);
        }
    }

    /// The target sockets, gathered from every shard and, in a cluster,
    /// every node (those that answer within the request timeout).
    pub fn fetch_sockets(self) -> impl Future<Output = Vec<RemoteSocket>> {
        let remote = self.cluster_target().map(|(_, target)| {
            self.shard
                .cluster_request(&self.nsp.name, NodeRequest::Fetch(target))
        });
        let nsp = self.shard.live(&self.nsp);
        let name = self.nsp.name.clone();
        let local = self
            .shard
            .adapter
            .fetch(&nsp, self.target, self.sender.as_deref());
        async move {
            let mut sockets = local.await;
            if let Some(remote) = remote {
                let (responses, _) = remote.await;
                for response in responses {
                    let Some(Value::Array(found)) = response.body.get("sockets") else {
                        continue;
                    };
                    sockets.extend(found.iter().filter_map(|s| remote_socket(&name, s)));
                }
            }
            sockets
        }
    }
}

/// A socket in another node's `fetchSockets` answer: `{id, handshake, rooms,
/// data}` (`data._admin`: see [`RemoteSocket::wire_data`]).
fn remote_socket(nsp: &str, socket: &Value) -> Option<RemoteSocket> {
    let id = socket.get("id")?.as_str()?.to_string();
    let rooms = crate::redis::wire::room_names(socket.get("rooms"));
    let admin = socket.get("data").and_then(|d| d.get("_admin"));
    let client_id = admin
        .and_then(|a| a.get("clientId"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let transport = match admin
        .and_then(|a| a.get("transport"))
        .and_then(Value::as_str)
    {
        Some("polling") => Some(crate::engine::TransportKind::Polling),
        Some("websocket") => Some(crate::engine::TransportKind::WebSocket),
        _ => None,
    };
    Some(RemoteSocket {
        id,
        nsp: nsp.to_string(),
        rooms,
        shard: 0,
        on_this_node: false,
        handshake: socket.get("handshake").cloned().unwrap_or(Value::Null),
        client_id,
        transport,
    })
}

#[cfg(test)]
mod wire_data_tests {
    use serde_json::json;

    use super::{remote_socket, RemoteSocket};
    use crate::engine::TransportKind;

    fn local(client_id: Option<&str>, transport: Option<TransportKind>) -> RemoteSocket {
        RemoteSocket {
            id: "s1".into(),
            nsp: "/".into(),
            rooms: vec!["s1".into(), "club".into()],
            shard: 1,
            on_this_node: true,
            handshake: json!({"url": "/socket.io/"}),
            client_id: client_id.map(str::to_string),
            transport,
        }
    }

    #[test]
    fn a_fetch_answer_carries_the_admin_ui_client_id_and_transport() {
        let socket = local(Some("AB0123456789xyzXYZ"), Some(TransportKind::Polling));
        let data = socket.wire_data();
        assert_eq!(
            data,
            json!({"_admin": {"clientId": "AB0123456789", "transport": "polling"}})
        );
        let answer =
            json!({"id": "s1", "handshake": socket.handshake, "rooms": socket.rooms, "data": data});
        let remote = remote_socket("/", &answer).expect("a socket");
        assert!(!remote.on_this_node);
        assert_eq!(remote.client_id.as_deref(), Some("AB0123456789"));
        assert_eq!(remote.transport, Some(TransportKind::Polling));
        assert_eq!(remote.rooms, socket.rooms);
    }

    #[test]
    fn without_the_admin_ui_data_the_client_id_and_transport_are_unknown() {
        assert_eq!(local(None, None).wire_data(), serde_json::Value::Null);
        for data in [
            json!(null),
            json!({"user": 1}),
            json!({"_admin": {"transport": "carrier pigeon"}}),
        ] {
            let remote = remote_socket("/", &json!({"id": "s1", "rooms": [], "data": data}))
                .expect("a socket");
            assert_eq!((remote.client_id, remote.transport), (None, None), "{data}");
        }
        // A Node node's socket with admin-ui and data of its own.
        let node = json!({"id": "n1", "rooms": ["n1"], "data": {"user": 1, "_admin": {"clientId": "abcdefghijkl", "transport": "websocket"}}});
        let remote = remote_socket("/", &node).expect("a socket");
        assert_eq!(remote.client_id.as_deref(), Some("abcdefghijkl"));
        assert_eq!(remote.transport, Some(TransportKind::WebSocket));
    }
}
