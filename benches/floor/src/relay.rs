//! The shard's state (rooms, links to the other shards) and the Engine.IO /
//! Socket.IO packets a connection sends: open, connect, join, leave,
//! publish, echo (docs/relay-protocol.md, text only).

use std::borrow::Cow;
use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Poll, Waker};

use bytes::Bytes;
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::conn::Conn;
use crate::frame;

pub const MAX_PAYLOAD: usize = 1_000_000;
const MAX_ROOM_BYTES: usize = 256;
const MAX_ROOMS: usize = 64;
const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];
const OK: &[u8] = br#"{"ok":true}"#;
const BAD_REQUEST: &[u8] = br#"{"ok":false,"error":"bad request"}"#;
const RESERVED: &[u8] = br#"{"ok":false,"error":"reserved event"}"#;

/// A publish handed to the other shards: the frame, built once, and where it goes.
pub struct Post {
    pub frame: Bytes,
    pub rooms: Vec<Box<str>>,
    pub sender: u64,
}

pub type PostSender = SharedSender<Arc<Post>>;
pub type PostReceiver = SharedReceiver<Arc<Post>>;

/// The way to one other shard. Posts go straight into the channel; when it
/// is full (or not connected yet) they wait in `backlog`, in order, for the
/// pump task.
#[derive(Default)]
struct Peer {
    tx: OnceCell<ConnectedSender<Arc<Post>>>,
    backlog: RefCell<VecDeque<Arc<Post>>>,
    waker: Cell<Option<Waker>>,
}

pub struct Shard {
    pub id: usize,
    pub ping_interval: u64,
    pub ping_timeout: u64,
    next_conn: Cell<u64>,
    /// Bumped per delivery; a member whose mark equals it already has the frame.
    delivery: Cell<u64>,
    /// Room key (see `room_key`) -> local members.
    rooms: RefCell<HashMap<Box<str>, Vec<Rc<Conn>>>>,
    /// Every open connection, for the pings (closed ones until the next prune).
    conns: RefCell<Vec<Weak<Conn>>>,
    /// Prune `conns` when it gets this long, so churn does not grow it between pings.
    prune_at: Cell<usize>,
    peers: Vec<Peer>,
}

impl Shard {
    pub fn new(id: usize, peers: usize, ping_interval: u64, ping_timeout: u64) -> Shard {
        Shard {
            id,
            ping_interval,
            ping_timeout,
            next_conn: Cell::new(0),
            delivery: Cell::new(0),
            rooms: RefCell::default(),
            conns: RefCell::default(),
            prune_at: Cell::new(1024),
            peers: (0..peers).map(|_| Peer::default()).collect(),
        }
    }

    /// A new connection, with a process-wide unique id (the shard in the top bits).
    pub fn open(&self) -> Rc<Conn> {
        let n = self.next_conn.get() + 1;
        self.next_conn.set(n);
        let conn = Rc::new(Conn::new(((self.id as u64) << 48) | n));
        let mut conns = self.conns.borrow_mut();
        if conns.len() >= self.prune_at.get() {
            conns.retain(|weak| weak.strong_count() > 0);
            self.prune_at.set((conns.len() * 2).max(1024));
        }
        conns.push(Rc::downgrade(&conn));
        drop(conns);
        conn
    }

    /// The connection is gone: out of all its rooms.
    pub fn close(&self, conn: &Rc<Conn>) {
        for key in conn.rooms.take() {
            self.remove_member(&key, conn);
        }
    }

    /// Queue a ping to every connection (and forget the closed ones).
    pub fn ping_all(&self) {
        static PING: [u8; 3] = [0x81, 0x01, b'2'];
        let ping = Bytes::from_static(&PING);
        self.conns.borrow_mut().retain(|weak| match weak.upgrade() {
            Some(conn) => {
                conn.push(ping.clone());
                true
            }
            None => false,
        });
    }

    fn join(&self, conn: &Rc<Conn>, key: &str) {
        if conn.rooms.borrow().iter().any(|k| &**k == key) {
            return;
        }
        conn.rooms.borrow_mut().push(key.into());
        let mut rooms = self.rooms.borrow_mut();
        match rooms.get_mut(key) {
            Some(members) => members.push(conn.clone()),
            None => {
                rooms.insert(key.into(), vec![conn.clone()]);
            }
        }
    }

    fn leave(&self, conn: &Rc<Conn>, key: &str) {
        let mut mine = conn.rooms.borrow_mut();
        if let Some(at) = mine.iter().position(|k| &**k == key) {
            mine.swap_remove(at);
            drop(mine);
            self.remove_member(key, conn);
        }
    }

    fn remove_member(&self, key: &str, conn: &Rc<Conn>) {
        let mut rooms = self.rooms.borrow_mut();
        if let Some(members) = rooms.get_mut(key) {
            if let Some(at) = members.iter().position(|m| Rc::ptr_eq(m, conn)) {
                members.swap_remove(at);
            }
            if members.is_empty() {
                rooms.remove(key);
            }
        }
    }

    /// Queue `frame` to every local member of `rooms` but the sender, each once.
    pub fn deliver<R: AsRef<str>>(&self, rooms: &[R], frame: &Bytes, sender: u64) {
        let mark = self.delivery.get() + 1;
        self.delivery.set(mark);
        let index = self.rooms.borrow();
        for room in rooms {
            let Some(members) = index.get(room.as_ref()) else {
                continue;
            };
            for member in members {
                if member.id != sender && member.mark.replace(mark) != mark {
                    member.push(frame.clone());
                }
            }
        }
    }

    /// Hand a publish to every other shard.
    fn post(&self, post: Arc<Post>) {
        for peer in &self.peers {
            let mut backlog = peer.backlog.borrow_mut();
            if backlog.is_empty() {
                if let Some(tx) = peer.tx.get() {
                    if tx.try_send(post.clone()).is_ok() {
                        continue;
                    }
                }
            }
            backlog.push_back(post.clone());
            if let Some(waker) = peer.waker.take() {
                waker.wake();
            }
        }
    }
}

/// Moves the backlog of peer `index` into its channel, in order.
pub async fn pump(shard: Rc<Shard>, index: usize, tx: PostSender) {
    let peer = &shard.peers[index];
    let _ = peer.tx.set(tx.connect().await);
    let tx = peer.tx.get().expect("just set");
    loop {
        poll_fn(|cx| {
            if peer.backlog.borrow().is_empty() {
                peer.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        // Sent before it leaves the backlog, so `post` cannot overtake it.
        let next = peer.backlog.borrow().front().cloned().expect("not empty");
        if tx.send(next).await.is_err() {
            return;
        }
        peer.backlog.borrow_mut().pop_front();
    }
}

/// Delivers what another shard publishes to this shard's members.
pub async fn receive(shard: Rc<Shard>, rx: PostReceiver) {
    let rx = rx.connect().await;
    while let Some(post) = rx.recv().await {
        shard.deliver(&post.rooms, &post.frame, post.sender);
    }
}

/// The peer broke the protocol: close its connection.
#[derive(Debug, PartialEq, Eq)]
pub struct Close;

/// The Engine.IO open packet.
pub fn open_packet(shard: &Shard, conn: &Conn) -> Bytes {
    let text = format!(
        r#"0{{"sid":"{}","upgrades":[],"pingInterval":{},"pingTimeout":{},"maxPayload":{MAX_PAYLOAD}}}"#,
        conn.sid(),
        shard.ping_interval,
        shard.ping_timeout
    );
    frame::text(&[text.as_bytes()])
}

/// Handle one Engine.IO packet (a whole text message).
pub fn on_message(shard: &Shard, conn: &Rc<Conn>, text: &str) -> Result<(), Close> {
    match text.as_bytes().first() {
        Some(b'4') => on_socketio(shard, conn, &text[1..]),
        Some(b'3') => Ok(()),
        // A client ping (only probes send one): answer it.
        Some(b'2') => {
            conn.push(frame::text(&[b"3", &text.as_bytes()[1..]]));
            Ok(())
        }
        _ => Err(Close),
    }
}

/// A Socket.IO packet, split: `<kind>[/nsp,][ack id]<body>`.
#[derive(Debug, PartialEq, Eq)]
struct Packet<'a> {
    kind: u8,
    nsp: &'a str,
    id: Option<&'a str>,
    body: &'a str,
}

fn split_packet(text: &str) -> Result<Packet<'_>, Close> {
    let kind = *text.as_bytes().first().ok_or(Close)?;
    let rest = &text[1..];
    let (nsp, rest) = match rest.strip_prefix('/') {
        Some(_) => match rest.find(',') {
            Some(comma) => (&rest[..comma], &rest[comma + 1..]),
            None => (rest, ""),
        },
        None => ("/", rest),
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && rest[..digits].parse::<u64>().is_err() {
        return Err(Close);
    }
    Ok(Packet {
        kind,
        nsp,
        id: (digits > 0).then(|| &rest[..digits]),
        body: &rest[digits..],
    })
}

/// Rooms are per namespace: `/`'s keep their name, others are `nsp\0room`.
fn room_key<'a>(nsp: &str, room: Cow<'a, str>) -> Cow<'a, str> {
    if nsp == "/" {
        room
    } else {
        Cow::Owned(format!("{nsp}\0{room}"))
    }
}

/// What goes between a packet's type and its ack id or body: nothing for `/`, else `nsp` and `,`.
fn nsp_prefix(nsp: &str) -> (&[u8], &[u8]) {
    if nsp == "/" {
        (b"", b"")
    } else {
        (nsp.as_bytes(), b",")
    }
}

fn in_namespace(nsp: &str, key: &str) -> bool {
    match key.split_once('\0') {
        Some((of, _)) => of == nsp,
        None => nsp == "/",
    }
}

fn on_socketio(shard: &Shard, conn: &Rc<Conn>, text: &str) -> Result<(), Close> {
    let packet = split_packet(text)?;
    let (nsp, comma) = nsp_prefix(packet.nsp);
    match packet.kind {
        b'0' => {
            if !packet.body.is_empty() {
                let auth: &RawValue = serde_json::from_str(packet.body).map_err(|_| Close)?;
                if !auth.get().starts_with('{') {
                    return Err(Close);
                }
            }
            let sid = format!(r#"{{"sid":"{}"}}"#, conn.sid());
            conn.push(frame::text(&[b"40", nsp, comma, sid.as_bytes()]));
            Ok(())
        }
        b'1' => {
            let keys: Vec<Box<str>> = conn
                .rooms
                .borrow()
                .iter()
                .filter(|key| in_namespace(packet.nsp, key))
                .cloned()
                .collect();
            for key in keys {
                shard.leave(conn, &key);
            }
            Ok(())
        }
        b'2' => {
            let answer = on_event(shard, conn, &packet)?;
            if let (Some(id), Some(answer)) = (packet.id, answer) {
                let parts = [&b"43"[..], nsp, comma, id.as_bytes(), b"[", &answer, b"]"];
                conn.push(frame::text(&parts));
            }
            Ok(())
        }
        _ => Err(Close),
    }
}

/// An event's name and the first and last of its arguments (borrowed from
/// the packet, so the arguments' text can be copied as it came).
struct EventArgs<'a> {
    name: &'a str,
    first: Option<&'a RawValue>,
    last: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for EventArgs<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Args;
        impl<'de> Visitor<'de> for Args {
            type Value = EventArgs<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an event: [name, ...args]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                use serde::de::Error;
                let name: &RawValue = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let first: Option<&RawValue> = seq.next_element()?;
                let mut last = first;
                while let Some(arg) = seq.next_element()? {
                    last = Some(arg);
                }
                Ok(EventArgs {
                    name: name.get(),
                    first,
                    last,
                })
            }
        }
        deserializer.deserialize_seq(Args)
    }
}

#[derive(Deserialize)]
struct PublishArgs<'a> {
    #[serde(borrow)]
    to: &'a RawValue,
    #[serde(borrow)]
    event: &'a RawValue,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(default, rename = "volatile")]
    _volatile: Option<bool>,
}

/// Carry out an event; the ack's arguments (without brackets), if it has one.
fn on_event<'a>(
    shard: &Shard,
    conn: &Rc<Conn>,
    packet: &Packet<'a>,
) -> Result<Option<Cow<'a, [u8]>>, Close> {
    let args: EventArgs = serde_json::from_str(packet.body).map_err(|_| Close)?;
    let ok = |done: bool| Some(Cow::Borrowed(if done { OK } else { BAD_REQUEST }));
    match args.name {
        r#""join""# | r#""leave""# => {
            let Some(rooms) = args.first.and_then(room_list) else {
                return Ok(ok(false));
            };
            for room in rooms {
                let key = room_key(packet.nsp, room);
                if args.name == r#""join""# {
                    shard.join(conn, &key);
                } else {
                    shard.leave(conn, &key);
                }
            }
            Ok(ok(true))
        }
        r#""publish""# => Ok(Some(Cow::Borrowed(publish(
            shard, conn, packet, args.first,
        )))),
        r#""echo""# => Ok(Some(match (args.first, args.last) {
            (Some(first), Some(last)) => Cow::Borrowed(span(packet.body, first, last)?.as_bytes()),
            _ => Cow::Borrowed(&b""[..]),
        })),
        name if name.starts_with('"') => Ok(None),
        _ => Err(Close),
    }
}

fn publish(
    shard: &Shard,
    conn: &Rc<Conn>,
    packet: &Packet,
    arg: Option<&RawValue>,
) -> &'static [u8] {
    let Some(spec) = arg.and_then(|raw| serde_json::from_str::<PublishArgs>(raw.get()).ok()) else {
        return BAD_REQUEST;
    };
    let (Some(rooms), Some(event)) = (room_list(spec.to), json_str(spec.event)) else {
        return BAD_REQUEST;
    };
    if event.is_empty() {
        return BAD_REQUEST;
    }
    if RESERVED_EVENTS.contains(&&*event) {
        return RESERVED;
    }
    let data = spec.data.map_or("null", RawValue::get);
    let (nsp, comma) = nsp_prefix(packet.nsp);
    let built = frame::text(&[
        b"42",
        nsp,
        comma,
        b"[",
        spec.event.get().as_bytes(),
        b",",
        data.as_bytes(),
        b"]",
    ]);
    let keys: Vec<Cow<str>> = rooms.into_iter().map(|r| room_key(packet.nsp, r)).collect();
    shard.deliver(&keys, &built, conn.id);
    if !shard.peers.is_empty() {
        shard.post(Arc::new(Post {
            frame: built,
            rooms: keys.iter().map(|k| Box::from(&**k)).collect(),
            sender: conn.id,
        }));
    }
    OK
}

/// The text of `body` from the start of `first` to the end of `last`.
fn span<'a>(body: &'a str, first: &RawValue, last: &RawValue) -> Result<&'a str, Close> {
    let base = body.as_ptr() as usize;
    let start = (first.get().as_ptr() as usize)
        .checked_sub(base)
        .ok_or(Close)?;
    let end = (last.get().as_ptr() as usize + last.get().len())
        .checked_sub(base)
        .ok_or(Close)?;
    body.get(start..end).ok_or(Close)
}

/// A JSON string's value, borrowed unless it has escapes.
fn json_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    if !text.starts_with('"') {
        return None;
    }
    if text.contains('\\') {
        serde_json::from_str::<String>(text).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(&text[1..text.len() - 1]))
    }
}

/// A room name or a list of 1..=64 of them, each 1..=256 bytes.
fn room_list(raw: &RawValue) -> Option<Vec<Cow<'_, str>>> {
    let names: Vec<Cow<str>> = if raw.get().starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(raw.get()).ok()?;
        items.into_iter().map(json_str).collect::<Option<_>>()?
    } else {
        vec![json_str(raw)?]
    };
    let fits = |n: &Cow<str>| !n.is_empty() && n.len() <= MAX_ROOM_BYTES;
    (!names.is_empty() && names.len() <= MAX_ROOMS && names.iter().all(fits)).then_some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(conn: &Conn) -> Vec<String> {
        conn.take_queued()
            .into_iter()
            .map(|f| {
                let skip = if f[1] == 126 { 4 } else { 2 };
                String::from_utf8(f[skip..].to_vec()).unwrap()
            })
            .collect()
    }

    #[test]
    fn splits_packets() {
        let p = split_packet("2/chat,12[\"x\"]").unwrap();
        assert_eq!(
            (p.kind, p.nsp, p.id, p.body),
            (b'2', "/chat", Some("12"), "[\"x\"]")
        );
        let p = split_packet("2[\"x\"]").unwrap();
        assert_eq!((p.nsp, p.id, p.body), ("/", None, "[\"x\"]"));
        let p = split_packet("0/admin").unwrap();
        assert_eq!((p.nsp, p.body), ("/admin", ""));
        let p = split_packet("0{\"token\":1}").unwrap();
        assert_eq!((p.nsp, p.body), ("/", "{\"token\":1}"));
        assert_eq!(split_packet(""), Err(Close));
        assert_eq!(split_packet("2999999999999999999999[]"), Err(Close));
    }

    #[test]
    fn parses_event_args() {
        let body = r#"[ "echo" , 1, {"a":[2]} , "x" ]"#;
        let args: EventArgs = serde_json::from_str(body).unwrap();
        assert_eq!(args.name, r#""echo""#);
        assert_eq!(
            span(body, args.first.unwrap(), args.last.unwrap()),
            Ok(r#"1, {"a":[2]} , "x""#)
        );
        let args: EventArgs = serde_json::from_str(r#"["echo"]"#).unwrap();
        assert!(args.first.is_none());
        assert!(serde_json::from_str::<EventArgs>("[]").is_err());
        assert!(serde_json::from_str::<EventArgs>(r#"["a",]"#).is_err());
        assert!(serde_json::from_str::<EventArgs>(r#"{"a":1}"#).is_err());
    }

    #[test]
    fn room_lists() {
        let raw = |s: &str| serde_json::from_str::<Box<RawValue>>(s).unwrap();
        assert_eq!(room_list(&raw(r#""a""#)).unwrap(), vec!["a"]);
        assert_eq!(
            room_list(&raw(r#"["a","b\u0063"]"#)).unwrap(),
            vec!["a", "bc"]
        );
        assert!(room_list(&raw(r#"[]"#)).is_none());
        assert!(room_list(&raw(r#""""#)).is_none());
        assert!(room_list(&raw(r#"["a",1]"#)).is_none());
        assert!(room_list(&raw(r#"{}"#)).is_none());
    }

    #[test]
    fn join_publish_echo() {
        let shard = Shard::new(0, 0, 25000, 20000);
        let (a, b, c) = (shard.open(), shard.open(), shard.open());
        for conn in [&a, &b, &c] {
            on_message(&shard, conn, "40").unwrap();
            assert_eq!(texts(conn), [format!(r#"40{{"sid":"{}"}}"#, conn.sid())]);
        }
        on_message(&shard, &a, r#"420["join",["r","s"]]"#).unwrap();
        on_message(&shard, &b, r#"42["join","r"]"#).unwrap();
        on_message(&shard, &c, r#"421["join",[]]"#).unwrap();
        assert_eq!(texts(&a), [r#"430[{"ok":true}]"#]);
        assert!(texts(&b).is_empty());
        assert_eq!(texts(&c), [r#"431[{"ok":false,"error":"bad request"}]"#]);

        let publish = r#"427["publish",{"to":["r","s","r"],"event":"m","data":{"n": 1}}]"#;
        on_message(&shard, &c, publish).unwrap();
        assert_eq!(texts(&a), [r#"42["m",{"n": 1}]"#]);
        assert_eq!(texts(&b), [r#"42["m",{"n": 1}]"#]);
        assert_eq!(texts(&c), [r#"437[{"ok":true}]"#]);

        // The sender is left out.
        on_message(&shard, &a, r#"42["publish",{"to":"r","event":"m"}]"#).unwrap();
        assert!(texts(&a).is_empty());
        assert_eq!(texts(&b), [r#"42["m",null]"#]);

        on_message(&shard, &a, r#"428["leave","r"]"#).unwrap();
        on_message(
            &shard,
            &c,
            r#"42["publish",{"to":"r","event":"m","data":2}]"#,
        )
        .unwrap();
        assert_eq!(texts(&a), [r#"438[{"ok":true}]"#]);
        assert_eq!(texts(&b), [r#"42["m",2]"#]);

        on_message(&shard, &a, r#"429["echo",1, "two" ,[3]]"#).unwrap();
        on_message(&shard, &a, r#"4210["echo"]"#).unwrap();
        on_message(&shard, &a, r#"4211["nothing",1]"#).unwrap();
        assert_eq!(texts(&a), [r#"439[1, "two" ,[3]]"#, r#"4310[]"#]);

        assert_eq!(on_message(&shard, &a, r#"42["echo""#), Err(Close));
        assert_eq!(on_message(&shard, &a, r#"45-["x"]"#), Err(Close));
        assert_eq!(on_message(&shard, &a, "x"), Err(Close));

        shard.close(&b);
        assert!(shard.rooms.borrow().get("r").is_none());
    }

    #[test]
    fn namespaces_have_their_own_rooms() {
        let shard = Shard::new(0, 0, 25000, 20000);
        let (a, b) = (shard.open(), shard.open());
        on_message(&shard, &a, r#"40/chat,{"token":"x"}"#).unwrap();
        assert_eq!(texts(&a), [format!(r#"40/chat,{{"sid":"{}"}}"#, a.sid())]);
        on_message(&shard, &a, r#"42/chat,["join","r"]"#).unwrap();
        on_message(&shard, &b, r#"42["join","r"]"#).unwrap();
        on_message(
            &shard,
            &b,
            r#"42/chat,5["publish",{"to":"r","event":"m","data":1}]"#,
        )
        .unwrap();
        assert_eq!(texts(&a), [r#"42/chat,["m",1]"#]);
        assert_eq!(texts(&b), [r#"43/chat,5[{"ok":true}]"#]);
        on_message(&shard, &a, "41/chat,").unwrap();
        assert!(a.rooms.borrow().is_empty());
        assert_eq!(b.rooms.borrow().len(), 1);
    }
}
