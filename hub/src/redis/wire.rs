//! The messages of Node's `@socket.io/redis-adapter` 8.x (classic mode)
//! and `@socket.io/redis-emitter`, and the channels they travel on.
//!
//! - A broadcast is msgpack `[uid, packet, opts]` on `<prefix>#<nsp>#`, or
//!   `<prefix>#<nsp>#<room>#` when it names exactly one room; `packet` is
//!   `{type, data, nsp}` with binary arguments in place as `bin`, `opts`
//!   is `{rooms, except, flags}`.
//! - A request is JSON (or msgpack when it carries binary data or a
//!   packet) on `<prefix>-request#<nsp>#`, with a numeric `type`; the
//!   answers are JSON (or msgpack) on `<prefix>-response#<nsp>#` or the
//!   requester's own `<prefix>-response#<nsp>#<uid>#`. A message starting
//!   with `{` is JSON, anything else msgpack.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::msgpack::{self, write_str, write_u64, MsgpackError};

/// The adapter's request types (`RequestType` in its source).
pub(crate) mod kind {
    pub const SOCKETS: u64 = 0;
    pub const ALL_ROOMS: u64 = 1;
    pub const REMOTE_JOIN: u64 = 2;
    pub const REMOTE_LEAVE: u64 = 3;
    pub const REMOTE_DISCONNECT: u64 = 4;
    pub const REMOTE_FETCH: u64 = 5;
    pub const SERVER_SIDE_EMIT: u64 = 6;
    pub const BROADCAST: u64 = 7;
    pub const BROADCAST_CLIENT_COUNT: u64 = 8;
    pub const BROADCAST_ACK: u64 = 9;
}

/// Socket.IO packet types that a broadcast may carry as an event.
const EVENT: u64 = 2;
const BINARY_EVENT: u64 = 5;

/// Why a message from Redis was ignored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error(transparent)]
    Msgpack(#[from] MsgpackError),
    #[error("bad JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unexpected shape: {0}")]
    Shape(&'static str),
}

/// The channel names of one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Channels {
    pub prefix: String,
}

impl Channels {
    pub fn broadcast(&self, nsp: &str, rooms: &[String]) -> String {
        match rooms {
            [room] => format!("{}#{nsp}#{room}#", self.prefix),
            _ => format!("{}#{nsp}#", self.prefix),
        }
    }
    /// What a node `PSUBSCRIBE`s to hear a namespace's broadcasts.
    pub fn broadcast_pattern(&self, nsp: &str) -> String {
        format!("{}#{nsp}#*", self.prefix)
    }
    pub fn request(&self, nsp: &str) -> String {
        format!("{}-request#{nsp}#", self.prefix)
    }
    pub fn response(&self, nsp: &str) -> String {
        format!("{}-response#{nsp}#", self.prefix)
    }
    pub fn own_response(&self, nsp: &str, uid: &str) -> String {
        format!("{}-response#{nsp}#{uid}#", self.prefix)
    }
    /// The namespace a broadcast channel (`<prefix>#<nsp>#...`) is for.
    pub fn namespace_of_broadcast<'a>(&self, channel: &'a str) -> Option<&'a str> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix('#')?;
        let end = rest.find('#')?;
        Some(&rest[..end])
    }
    /// (namespace, is a response channel) of a request or response channel.
    pub fn namespace_of_request<'a>(&self, channel: &'a str) -> Option<(&'a str, bool)> {
        let rest = channel.strip_prefix(&self.prefix)?;
        let (rest, response) = if let Some(r) = rest.strip_prefix("-request#") {
            (r, false)
        } else {
            (rest.strip_prefix("-response#")?, true)
        };
        let end = rest.find('#')?;
        Some((&rest[..end], response))
    }
}

/// Who a broadcast or a room operation is for.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct WireTarget {
    pub rooms: Vec<String>,
    pub except: Vec<String>,
}

/// The flags hub reads and writes.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct WireFlags {
    pub volatile: bool,
    pub compress: Option<bool>,
    /// Only for the node that has it (never published by hub).
    pub local: bool,
    /// A broadcast with acks: how long the sender waits, in ms.
    pub timeout: Option<u64>,
}

/// An event as Node's adapter carries it: `data` is `[event, ...args]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WireEvent {
    pub nsp: String,
    pub data: Vec<Value>,
    pub attachments: Vec<Bytes>,
    /// The ack id of a broadcast with acknowledgements.
    pub id: Option<u64>,
}

/// A broadcast heard on a namespace's channel.
#[derive(Debug, PartialEq)]
pub(crate) struct WireBroadcast {
    pub uid: String,
    pub event: WireEvent,
    pub target: WireTarget,
    pub flags: WireFlags,
}

/// `[uid, {type: 2, data: [event, ...args], nsp}, {rooms, except, flags}]`.
pub(crate) fn encode_broadcast(
    uid: &str,
    nsp: &str,
    event: &str,
    args: &[Value],
    attachments: &[Bytes],
    target: &WireTarget,
    flags: &WireFlags,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + nsp.len() + event.len());
    rmp::encode::write_array_len(&mut out, 3).expect("a Vec never fails");
    write_str(&mut out, uid);
    write_event(&mut out, nsp, event, args, attachments, None);
    write_opts(&mut out, target, flags);
    out
}

fn write_event(
    out: &mut Vec<u8>,
    nsp: &str,
    event: &str,
    args: &[Value],
    attachments: &[Bytes],
    id: Option<u64>,
) {
    rmp::encode::write_map_len(out, 3 + u32::from(id.is_some())).expect("a Vec never fails");
    write_str(out, "type");
    write_u64(out, EVENT);
    write_str(out, "data");
    rmp::encode::write_array_len(out, 1 + args.len() as u32).expect("a Vec never fails");
    write_str(out, event);
    for arg in args {
        msgpack::write_value(out, arg, attachments);
    }
    write_str(out, "nsp");
    write_str(out, nsp);
    if let Some(id) = id {
        write_str(out, "id");
        write_u64(out, id);
    }
}

fn write_opts(out: &mut Vec<u8>, target: &WireTarget, flags: &WireFlags) {
    let strings = |out: &mut Vec<u8>, list: &[String]| {
        rmp::encode::write_array_len(out, list.len() as u32).expect("a Vec never fails");
        for s in list {
            write_str(out, s);
        }
    };
    rmp::encode::write_map_len(out, 3).expect("a Vec never fails");
    write_str(out, "rooms");
    strings(out, &target.rooms);
    write_str(out, "except");
    strings(out, &target.except);
    write_str(out, "flags");
    let count = u32::from(flags.volatile) + u32::from(flags.compress.is_some());
    rmp::encode::write_map_len(out, count).expect("a Vec never fails");
    if flags.volatile {
        write_str(out, "volatile");
        rmp::encode::write_bool(out, true).expect("a Vec never fails");
    }
    if let Some(compress) = flags.compress {
        write_str(out, "compress");
        rmp::encode::write_bool(out, compress).expect("a Vec never fails");
    }
}

pub(crate) fn decode_broadcast(bytes: &[u8]) -> Result<WireBroadcast, WireError> {
    let (value, attachments) = msgpack::read(bytes)?;
    let Value::Array(mut parts) = value else {
        return Err(WireError::Shape("a broadcast is an array"));
    };
    if parts.len() < 2 {
        return Err(WireError::Shape("a broadcast has a uid and a packet"));
    }
    let opts = if parts.len() > 2 {
        parts.swap_remove(2)
    } else {
        Value::Null
    };
    let packet = parts.swap_remove(1);
    let uid = match &parts[0] {
        Value::String(s) => s.clone(),
        _ => return Err(WireError::Shape("the uid is a string")),
    };
    let event = event_of(packet, attachments)?;
    let (target, flags) = opts_of(&opts)?;
    Ok(WireBroadcast {
        uid,
        event,
        target,
        flags,
    })
}

/// A packet object `{type, data, nsp, id?}` holding an event.
pub(crate) fn event_of(packet: Value, attachments: Vec<Bytes>) -> Result<WireEvent, WireError> {
    let Value::Object(mut packet) = packet else {
        return Err(WireError::Shape("the packet is an object"));
    };
    match packet.get("type").and_then(Value::as_u64) {
        Some(EVENT | BINARY_EVENT) => {}
        _ => return Err(WireError::Shape("only EVENT packets are broadcast")),
    }
    let nsp = match packet.get("nsp") {
        None | Some(Value::Null) => "/".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(WireError::Shape("nsp is a string")),
    };
    let mut data = match packet.remove("data") {
        Some(Value::Array(data)) if matches!(data.first(), Some(Value::String(_))) => data,
        _ => return Err(WireError::Shape("data is [event name, ...args]")),
    };
    check_depth(&data)?;
    let attachments = msgpack::keep_referenced(&mut data, attachments);
    let id = packet.get("id").and_then(Value::as_u64);
    Ok(WireEvent {
        nsp,
        data,
        attachments,
        id,
    })
}

/// Most levels of nesting in an event's arguments: what either encoding
/// (JSON, read with serde_json's limit of 128, or msgpack) can carry with
/// the few levels a message wraps around them, so that what a node takes
/// it can always pass on.
const MAX_DATA_DEPTH: usize = 100;

pub(crate) fn check_depth(data: &[Value]) -> Result<(), WireError> {
    fn depth(value: &Value) -> usize {
        match value {
            Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    if data.iter().map(depth).max().unwrap_or(0) > MAX_DATA_DEPTH {
        return Err(WireError::Shape("arguments nested too deep"));
    }
    Ok(())
}

/// The room names in another node's answer (`allRooms`, a fetched
/// socket's rooms): strings, and numbers as text; anything else skipped.
pub(crate) fn room_names(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(room_name).collect(),
        _ => Vec::new(),
    }
}

fn room_name(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A room list: strings, or numbers (Node allows numeric rooms) as text.
pub(crate) fn rooms_of(value: Option<&Value>) -> Result<Vec<String>, WireError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| room_name(item).ok_or(WireError::Shape("a room is a string")))
            .collect(),
        Some(_) => Err(WireError::Shape("rooms are an array")),
    }
}

pub(crate) fn opts_of(opts: &Value) -> Result<(WireTarget, WireFlags), WireError> {
    let empty = Map::new();
    let opts = match opts {
        Value::Object(map) => map,
        Value::Null => &empty,
        _ => return Err(WireError::Shape("opts is an object")),
    };
    let target = WireTarget {
        rooms: rooms_of(opts.get("rooms"))?,
        except: rooms_of(opts.get("except"))?,
    };
    let flags = opts.get("flags");
    let flag = |name: &str| flags.and_then(|f| f.get(name)).and_then(Value::as_bool);
    let flags = WireFlags {
        volatile: flag("volatile").unwrap_or(false),
        compress: flag("compress"),
        local: flag("local").unwrap_or(false),
        timeout: flags.and_then(|f| f.get("timeout")).and_then(Value::as_u64),
    };
    Ok((target, flags))
}

/// A request from another node (or an emitter).
#[derive(Debug, PartialEq)]
pub(crate) struct WireRequest {
    pub uid: Option<String>,
    pub request_id: Option<String>,
    pub body: RequestBody,
}

#[derive(Debug, PartialEq)]
pub(crate) enum RequestBody {
    /// The ids of the sockets in `rooms` (all when empty).
    Sockets {
        rooms: Vec<String>,
    },
    AllRooms,
    /// Sockets matching `target` join (`Join`) or leave (`Leave`) `rooms`;
    /// with no target, the one socket `sid` (the adapter's older form).
    Join {
        target: Option<WireTarget>,
        rooms: Vec<String>,
        sid: Option<String>,
    },
    Leave {
        target: Option<WireTarget>,
        rooms: Vec<String>,
        sid: Option<String>,
    },
    Disconnect {
        target: Option<WireTarget>,
        close: bool,
        sid: Option<String>,
    },
    Fetch {
        target: WireTarget,
    },
    /// `data` is `[event, ...args]`; an ack is asked when there is a request id.
    ServerSideEmit {
        data: Vec<Value>,
        attachments: Vec<Bytes>,
    },
    /// A broadcast whose recipients' acknowledgements are collected.
    BroadcastWithAck {
        event: WireEvent,
        target: WireTarget,
        flags: WireFlags,
    },
    Unknown(u64),
}

/// JSON when it starts with `{`, else msgpack; placeholders for `bin`s.
fn read_object(bytes: &[u8]) -> Result<(Map<String, Value>, Vec<Bytes>), WireError> {
    let (value, attachments) = if bytes.first() == Some(&b'{') {
        (serde_json::from_slice(bytes)?, Vec::new())
    } else {
        msgpack::read(bytes)?
    };
    match value {
        Value::Object(map) => Ok((map, attachments)),
        _ => Err(WireError::Shape("a request is an object")),
    }
}

fn string_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(crate) fn decode_request(bytes: &[u8]) -> Result<WireRequest, WireError> {
    let (mut map, attachments) = read_object(bytes)?;
    let kind = map
        .get("type")
        .and_then(Value::as_u64)
        .ok_or(WireError::Shape("a request has a numeric type"))?;
    let uid = string_of(map.get("uid"));
    let request_id = string_of(map.get("requestId"));
    let target = |map: &Map<String, Value>| -> Result<Option<WireTarget>, WireError> {
        match map.get("opts") {
            None | Some(Value::Null) => Ok(None),
            Some(opts) => Ok(Some(opts_of(opts)?.0)),
        }
    };
    let rooms_or_room = |map: &Map<String, Value>| -> Result<Vec<String>, WireError> {
        match map.get("room") {
            Some(room) => Ok(string_of(Some(room)).into_iter().collect()),
            None => rooms_of(map.get("rooms")),
        }
    };
    let body = match kind {
        kind::SOCKETS => RequestBody::Sockets {
            rooms: rooms_of(map.get("rooms"))?,
        },
        kind::ALL_ROOMS => RequestBody::AllRooms,
        kind::REMOTE_JOIN => RequestBody::Join {
            target: target(&map)?,
            rooms: rooms_or_room(&map)?,
            sid: string_of(map.get("sid")),
        },
        kind::REMOTE_LEAVE => RequestBody::Leave {
            target: target(&map)?,
            rooms: rooms_or_room(&map)?,
            sid: string_of(map.get("sid")),
        },
        kind::REMOTE_DISCONNECT => RequestBody::Disconnect {
            target: target(&map)?,
            close: map.get("close").and_then(Value::as_bool).unwrap_or(false),
            sid: string_of(map.get("sid")),
        },
        kind::REMOTE_FETCH => RequestBody::Fetch {
            target: target(&map)?.unwrap_or_default(),
        },
        kind::SERVER_SIDE_EMIT => match map.remove("data") {
            Some(Value::Array(mut data)) if matches!(data.first(), Some(Value::String(_))) => {
                check_depth(&data)?;
                let attachments = msgpack::keep_referenced(&mut data, attachments);
                RequestBody::ServerSideEmit { data, attachments }
            }
            _ => return Err(WireError::Shape("serverSideEmit data is [event, ...args]")),
        },
        kind::BROADCAST => {
            let packet = map.remove("packet").unwrap_or(Value::Null);
            let (target, flags) = opts_of(map.get("opts").unwrap_or(&Value::Null))?;
            RequestBody::BroadcastWithAck {
                event: event_of(packet, attachments)?,
                target,
                flags,
            }
        }
        other => RequestBody::Unknown(other),
    };
    Ok(WireRequest {
        uid,
        request_id,
        body,
    })
}

/// An answer to a request: its id and the whole object, for the request
/// that waits for it to read.
#[derive(Debug)]
pub(crate) struct WireResponse {
    pub request_id: String,
    /// Binary parts are placeholders naming `attachments`.
    pub body: Map<String, Value>,
    pub attachments: Vec<Bytes>,
}

pub(crate) fn decode_response(bytes: &[u8]) -> Result<WireResponse, WireError> {
    let (body, attachments) = read_object(bytes)?;
    let request_id =
        string_of(body.get("requestId")).ok_or(WireError::Shape("a response has a requestId"))?;
    Ok(WireResponse {
        request_id,
        body,
        attachments,
    })
}

/// A request or response as bytes: JSON, or msgpack when `attachments`
/// are referenced (JSON cannot carry them as Node expects).
pub(crate) fn encode_object(value: &Value, attachments: &[Bytes]) -> Vec<u8> {
    if attachments.is_empty() {
        serde_json::to_vec(value).expect("a Value always serializes")
    } else {
        let mut out = Vec::new();
        msgpack::write_value(&mut out, value, attachments);
        out
    }
}

/// `{uid, requestId, type: 7, packet: {type: 2, data, nsp}, opts: {rooms,
/// except, flags: {timeout}}}` in msgpack, as Node's `broadcastWithAck`.
pub(crate) fn broadcast_ack_request(
    uid: &str,
    request_id: &str,
    nsp: &str,
    data: &[Value],
    attachments: &[Bytes],
    target: &WireTarget,
    timeout_ms: u64,
) -> Vec<u8> {
    let request = json!({
        "uid": uid,
        "requestId": request_id,
        "type": kind::BROADCAST,
        "packet": {"type": EVENT, "data": data, "nsp": nsp},
        "opts": {
            "rooms": target.rooms,
            "except": target.except,
            "flags": {"timeout": timeout_ms},
        },
    });
    let mut out = Vec::new();
    msgpack::write_value(&mut out, &request, attachments);
    out
}

/// The classic adapter's ids: 6 characters of `[A-Za-z0-9]`, as `uid2(6)`. 6 characters of `[A-Za-z0-9]`, as `uid2(6)`.
pub(crate) fn new_id() -> String {
    new_id_of(
        6,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    )
}

/// The sharded adapter's ids: 16 hex digits, as `randomBytes(8).toString("hex")`.
pub(crate) fn new_hex_id() -> String {
    new_id_of(16, b"0123456789abcdef")
}

fn new_id_of(len: usize, alphabet: &[u8]) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests;
