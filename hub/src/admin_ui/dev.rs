//! Development mode: the socket, room and event notices sent to every
//! admin socket. The server's hooks only queue a notice here (they run
//! while the server's state may be borrowed); a task of this shard then
//! serializes the queue and emits it to the admin namespace, which reaches
//! the admin sockets of every shard (and node). The queue is bounded
//! ([`super::AdminUiConfig::max_pending_events`]): past it notices are
//! dropped and counted. Admin sockets are ordinary sockets: a slow UI is
//! closed by hub's slow-consumer limits like any client.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};

use super::{serialize, Shared};
use crate::engineio::Text;
use crate::server::{Args, RemoteSocket, Socket, WeakLocalIo};

/// One thing to tell the admin sockets.
#[derive(Debug)]
pub(crate) enum Notice {
    SocketConnected(Value),
    SocketDisconnected {
        nsp: String,
        id: String,
        reason: &'static str,
        rooms: Vec<String>,
    },
    /// `socket_updated` with the socket's new transport.
    SocketUpdated {
        nsp: String,
        id: String,
        transport: &'static str,
    },
    RoomJoined {
        nsp: String,
        room: String,
        id: String,
    },
    RoomLeft {
        nsp: String,
        room: String,
        id: String,
    },
    EventReceived {
        nsp: String,
        id: String,
        args: Vec<Value>,
    },
    EventSent {
        nsp: String,
        id: String,
        args: Vec<Value>,
    },
    /// A broadcast's packet text, read when the queue is drained. The
    /// text every recipient shares (a reference, not a copy: a broadcast
    /// of 1 MB to 10,000 sockets would otherwise queue 10 GB).
    PacketSent {
        nsp: String,
        id: String,
        packet: Text,
    },
}

/// The notices of one shard waiting for the admin sockets.
pub(crate) struct DevEvents {
    shared: Arc<Shared>,
    queue: Rc<RefCell<VecDeque<(u64, Notice)>>>,
    /// A drain task is scheduled.
    scheduled: Rc<Cell<bool>>,
    /// The server on this shard, known once a socket joined a room here:
    /// weak, as the shard holds its observer, which holds this.
    io: RefCell<WeakLocalIo>,
}

impl DevEvents {
    pub fn new(shared: Arc<Shared>) -> DevEvents {
        DevEvents {
            shared,
            queue: Rc::default(),
            scheduled: Rc::default(),
            io: RefCell::new(WeakLocalIo::default()),
        }
    }

    /// Whether notices are wanted: some admin socket is connected here,
    /// or may be on another node of the cluster.
    pub fn watching(&self) -> bool {
        self.shared.admin_sockets.load(Ordering::Relaxed) > 0
            || self.shared.clustered.load(Ordering::Relaxed)
    }

    pub fn is_admin(&self, nsp: &str) -> bool {
        nsp == self.shared.config.namespace
    }

    pub fn socket_connected(&self, socket: &Socket) {
        // The shard's server, from its first socket. A notice before it (the
        // socket's own room is joined first) waits in the queue until then.
        if self.io.borrow().upgrade().is_none() {
            if let Some(io) = socket.server() {
                *self.io.borrow_mut() = io.downgrade();
            }
        }
        if !self.watching() {
            return;
        }
        let remote = RemoteSocket::of(&socket.0, 0);
        self.push(Notice::SocketConnected(serialize::socket(&remote)));
    }

    /// Queue a notice and make sure a drain is coming.
    pub fn push(&self, notice: Notice) {
        if !self.watching() {
            return;
        }
        let max = self.shared.config.max_pending_events;
        if !enqueue(&mut self.queue.borrow_mut(), max, super::unix_ms(), notice) {
            crate::metrics::with(|m| {
                m.admin_ui_dropped_events.inc();
            });
            return;
        }
        if self.scheduled.replace(true) {
            return;
        }
        // Unknown yet (no socket here so far): the notice waits in the
        // bounded queue for the next push.
        let Some(io) = self.io.borrow().upgrade() else {
            self.scheduled.set(false);
            return;
        };
        let (queue, scheduled, name) = (
            self.queue.clone(),
            self.scheduled.clone(),
            self.shared.config.namespace.clone(),
        );
        glommio::spawn_local(async move {
            scheduled.set(false);
            let notices = std::mem::take(&mut *queue.borrow_mut());
            let Some(admin) = io.of(&name) else {
                return;
            };
            let mut last = LastPacket::default();
            for (at, notice) in notices {
                for (event, args) in render(at, notice, &mut last) {
                    let _ = admin.emit(event, args);
                }
            }
        })
        .detach();
    }
}

/// Queue `notice` (of `at_ms`) unless `queue` holds `max` already: false
/// when it was dropped.
pub(crate) fn enqueue(
    queue: &mut VecDeque<(u64, Notice)>,
    max: usize,
    at_ms: u64,
    notice: Notice,
) -> bool {
    if queue.len() >= max {
        return false;
    }
    queue.push_back((at_ms, notice));
    true
}

/// The last broadcast packet read back, with its arguments: the
/// recipients of one broadcast queue one notice each, all with the same
/// text, which is then parsed once.
#[derive(Default)]
pub(crate) struct LastPacket(Option<(Text, Option<Vec<Value>>)>);

impl LastPacket {
    /// The `[event, ...args]` of `packet` ([`packet_args`]).
    pub fn args(&mut self, packet: Text) -> Option<Vec<Value>> {
        if let Some((last, args)) = &self.0 {
            // The same bytes: `last` is held here, so its memory cannot
            // have been reused for another text.
            if last.as_str().as_ptr() == packet.as_str().as_ptr() && last.len() == packet.len() {
                return args.clone();
            }
        }
        let args = packet_args(packet.as_str());
        self.0 = Some((packet, args.clone()));
        args
    }
}

/// The events a notice becomes, with their arguments (`last`: the
/// broadcast packet read before, see [`LastPacket`]).
pub(crate) fn render(
    at_ms: u64,
    notice: Notice,
    last: &mut LastPacket,
) -> Vec<(&'static str, Args)> {
    let date = Value::from(crate::redis::msgpack::iso_date(at_ms));
    let args = |values: Vec<Value>| Args::from_parts(values, Vec::new());
    match notice {
        Notice::SocketConnected(socket) => vec![("socket_connected", args(vec![socket, date]))],
        Notice::SocketDisconnected {
            nsp,
            id,
            reason,
            rooms,
        } => {
            let mut out = vec![(
                "socket_disconnected",
                args(vec![json!(nsp), json!(id), json!(reason), date.clone()]),
            )];
            for room in rooms {
                out.push((
                    "room_left",
                    args(vec![json!(nsp), json!(room), json!(id), date.clone()]),
                ));
            }
            out
        }
        // A partial serialized socket, and no date (as the UI expects).
        Notice::SocketUpdated { nsp, id, transport } => vec![(
            "socket_updated",
            args(vec![json!({"id": id, "nsp": nsp, "transport": transport})]),
        )],
        Notice::RoomJoined { nsp, room, id } => vec![(
            "room_joined",
            args(vec![json!(nsp), json!(room), json!(id), date]),
        )],
        Notice::RoomLeft { nsp, room, id } => vec![(
            "room_left",
            args(vec![json!(nsp), json!(room), json!(id), date]),
        )],
        Notice::EventReceived { nsp, id, args: a } => vec![(
            "event_received",
            args(vec![json!(nsp), json!(id), Value::Array(a), date]),
        )],
        Notice::EventSent { nsp, id, args: a } => vec![(
            "event_sent",
            args(vec![json!(nsp), json!(id), Value::Array(a), date]),
        )],
        Notice::PacketSent { nsp, id, packet } => match last.args(packet) {
            Some(a) => vec![(
                "event_sent",
                args(vec![json!(nsp), json!(id), Value::Array(a), date]),
            )],
            None => Vec::new(),
        },
    }
}

/// The `[event, ...args]` of an encoded EVENT packet text
/// (`2/nsp,12["ev",1]`); None for other packets. Binary placeholders stay
/// as they are encoded (`{"_placeholder":true,"num":0}`).
pub(crate) fn packet_args(packet: &str) -> Option<Vec<Value>> {
    let rest = packet.strip_prefix('2').or_else(|| {
        // BINARY_EVENT: `5<count>-`.
        let rest = packet.strip_prefix('5')?;
        let dash = rest.find('-')?;
        Some(&rest[dash + 1..])
    })?;
    let rest = match rest.strip_prefix('/') {
        Some(_) => &rest[rest.find(',')? + 1..],
        None => rest,
    };
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    match serde_json::from_str(rest).ok()? {
        Value::Array(values) => Some(values),
        _ => None,
    }
}
