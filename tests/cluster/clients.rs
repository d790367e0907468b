//! The cluster tests' clients: relay clients on raw Engine.IO v4
//! WebSockets (docs/relay-protocol.md), a subscriber that reads on its own
//! thread, and a load publisher that numbers what it publishes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::Message;

use crate::support::*;
use crate::{DELIVERY, LOAD_PAUSE, MARGIN};

/// A relay client on a raw Engine.IO v4 WebSocket, connected to `/`; it
/// answers the server's pings while it reads.
pub(crate) struct Relay {
    ws: Ws,
    next_ack: u64,
    sid: String,
    /// Events that came while an ack was awaited.
    early: Vec<String>,
}

impl Relay {
    pub(crate) fn connect(addr: SocketAddr) -> Relay {
        let mut ws = ws_try_connect_at(addr, "/socket.io/", "EIO=4&transport=websocket")
            .unwrap_or_else(|e| panic!("websocket to {addr}: {e}"));
        let (sid, _) = parse_open(&ws_text(&mut ws));
        ws_send_text(&mut ws, "40");
        let connected = ws_text(&mut ws);
        assert!(connected.starts_with("40{\"sid\""), "{connected}");
        Relay {
            ws,
            next_ack: 0,
            sid,
            early: Vec::new(),
        }
    }

    /// A client whose session is on `shard` (the sid's second character
    /// names it).
    pub(crate) fn connect_on_shard(addr: SocketAddr, shard: usize) -> Relay {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for _ in 0..64 {
            let client = Relay::connect(addr);
            if client.sid.as_bytes()[..2] == [b'A', ALPHABET[shard]] {
                return client;
            }
        }
        panic!("no session landed on shard {shard} in 64 tries");
    }

    /// The next message that is not a ping, within `within`.
    pub(crate) fn next(&mut self, within: Duration) -> Result<Option<String>, String> {
        if !self.early.is_empty() {
            return Ok(Some(self.early.remove(0)));
        }
        ws_next_text(&mut self.ws, within)
    }

    /// Emit `event` with `arg` and wait for its ack's first argument.
    pub(crate) fn request(&mut self, event: &str, arg: &Value) -> Result<Value, String> {
        let id = self.next_ack;
        self.next_ack += 1;
        self.ws
            .send(Message::text(format!("42{id}{}", json!([event, arg]))))
            .map_err(|e| format!("send: {e}"))?;
        let prefix = format!("43{id}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            // From the socket, not `next`: what comes meanwhile is kept
            // for `next`, and must not be read here again.
            match ws_next_text(&mut self.ws, deadline - Instant::now())? {
                Some(text) if text.starts_with(&prefix) => {
                    let args: Value = serde_json::from_str(&text[prefix.len()..])
                        .map_err(|e| format!("ack {text}: {e}"))?;
                    return Ok(args[0].clone());
                }
                Some(text) => self.early.push(text),
                None => break,
            }
        }
        Err(format!("no ack for {event} #{id} within 5 s"))
    }

    pub(crate) fn join(&mut self, room: &str) {
        let answer = self.request("join", &json!(room)).unwrap();
        assert_eq!(answer, json!({"ok": true}), "join {room}");
    }

    pub(crate) fn publish(&mut self, room: &str, event: &str, data: Value) -> Result<(), String> {
        let answer = self.request(
            "publish",
            &json!({"to": room, "event": event, "data": data}),
        )?;
        if answer != json!({"ok": true}) {
            return Err(format!("publish answered {answer}"));
        }
        Ok(())
    }
}

/// An event a client received: `42["name",data]`, or `42<id>[..]` when
/// it asks for an answer (the ack id is skipped).
pub(crate) fn event_of(text: &str) -> Option<(String, Value)> {
    let body = text
        .strip_prefix("42")?
        .trim_start_matches(|c: char| c.is_ascii_digit());
    let packet: Value = serde_json::from_str(body).ok()?;
    Some((packet[0].as_str()?.to_owned(), packet[1].clone()))
}

/// A relay client joined to a room, reading on its own thread what comes.
pub(crate) struct Subscriber {
    pub(crate) who: String,
    pub(crate) events: Arc<Mutex<Vec<(String, Value)>>>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) thread: Option<JoinHandle<Result<(), String>>>,
}

impl Subscriber {
    pub(crate) fn start(who: &str, mut relay: Relay, room: &str) -> Subscriber {
        relay.join(room);
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (events, stop) = (events.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match relay.next(Duration::from_millis(100))? {
                        None => {}
                        Some(text) => match event_of(&text) {
                            Some(event) => events.lock().unwrap().push(event),
                            None => return Err(format!("not an event: {text}")),
                        },
                    }
                }
                Ok(())
            })
        };
        Subscriber {
            who: who.to_owned(),
            events,
            stop,
            thread: Some(thread),
        }
    }

    /// The data of every `event` received, in order.
    pub(crate) fn data_of(&self, event: &str) -> Vec<Value> {
        self.check();
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|(name, _)| name == event)
            .map(|(_, data)| data.clone())
            .collect()
    }

    /// The numbers of the load (event `m`), in the order received.
    pub(crate) fn numbers(&self) -> Vec<u64> {
        self.data_of("m")
            .iter()
            .map(|v| {
                v.as_str()
                    .and_then(|s| s.strip_prefix(LOAD_TAG)?.parse().ok())
                    .unwrap_or_else(|| panic!("bad load data {v}"))
            })
            .collect()
    }

    pub(crate) fn got(&self, event: &str, data: &Value) -> bool {
        self.data_of(event).contains(data)
    }

    /// Panics if the reading thread stopped on an error.
    pub(crate) fn check(&self) {
        if let Some(thread) = &self.thread {
            assert!(
                !thread.is_finished(),
                "{}: its client stopped reading",
                self.who
            );
        }
    }

    pub(crate) fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("{}: {e}", self.who),
                Err(_) => panic!("{}: its thread panicked", self.who),
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Waits until `event` with `data` reached every subscriber.
pub(crate) fn wait_delivered(
    subscribers: &[&Subscriber],
    event: &str,
    data: &Value,
    within: Duration,
) {
    for s in subscribers {
        eventually_or(
            within,
            || s.got(event, data),
            || format!("{}: {event} {data} not delivered within {within:?}", s.who),
        );
    }
}

/// Publishes `probe` events to `room` every 100 ms until each subscriber
/// got one: the path is live (a node subscribes a room's channel when the
/// room appears on it, in sharded dynamic mode).
pub(crate) fn converge(publisher: &mut Relay, room: &str, subscribers: &[&Subscriber]) {
    let deadline = Instant::now() + DELIVERY + MARGIN;
    let mut n = 0;
    while !subscribers.iter().all(|s| !s.data_of("probe").is_empty()) {
        assert!(
            Instant::now() < deadline,
            "no probe reached {:?}",
            subscribers
                .iter()
                .filter(|s| s.data_of("probe").is_empty())
                .map(|s| &s.who)
                .collect::<Vec<_>>()
        );
        publisher.publish(room, "probe", json!(n)).unwrap();
        n += 1;
        thread::sleep(Duration::from_millis(100));
    }
}

/// What the load's publishes carry before their number: text that stays
/// as it is in msgpack and in MONITOR's output, so that a publish can be
/// told there.
pub(crate) const LOAD_TAG: &str = "n=";

/// The data of the load's publish `n`: `"n=000123"`.
pub(crate) fn load_data(n: u64) -> Value {
    json!(format!("{LOAD_TAG}{n:06}"))
}

/// A relay client publishing `m` events numbered from 0 to a room, each
/// acknowledged before the next, on its own thread.
pub(crate) struct Load {
    pub(crate) acked: Arc<AtomicU64>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) thread: JoinHandle<Result<u64, String>>,
}

impl Load {
    pub(crate) fn start(mut relay: Relay, room: &str) -> Load {
        let acked = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (acked, stop, room) = (acked.clone(), stop.clone(), room.to_owned());
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    relay
                        .publish(&room, "m", load_data(n))
                        .map_err(|e| format!("publish #{n}: {e}"))?;
                    n += 1;
                    acked.store(n, Ordering::Relaxed);
                    thread::sleep(LOAD_PAUSE);
                }
                Ok(n)
            })
        };
        Load {
            acked,
            stop,
            thread,
        }
    }

    /// Publishes acknowledged so far.
    pub(crate) fn acked(&self) -> u64 {
        assert!(!self.thread.is_finished(), "the load publisher stopped");
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `more` publishes past the present are acknowledged.
    pub(crate) fn wait_more(&self, more: u64, what: &str) {
        let target = self.acked() + more;
        eventually(
            Duration::from_secs(5) + MARGIN,
            &format!("{what}: {more} more publishes acknowledged"),
            || self.acked() >= target,
        );
    }

    /// Stops; how many were published (0 to n - 1), all acknowledged.
    pub(crate) fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => panic!("the load publisher failed: {e}"),
            Err(_) => panic!("the load publisher panicked"),
        }
    }
}

/// What a subscriber got of a load of `published` numbers: asserts they
/// came in order, none twice; returns how many are missing.
pub(crate) fn missing_of(s: &Subscriber, published: u64) -> u64 {
    let got = s.numbers();
    for pair in got.windows(2) {
        assert!(
            pair[0] < pair[1],
            "{}: {} then {}: out of order or twice (got {} numbers)",
            s.who,
            pair[0],
            pair[1],
            got.len()
        );
    }
    if let Some(last) = got.last() {
        assert!(*last < published, "{}: {last} was never published", s.who);
    }
    published - got.len() as u64
}

/// The runs of numbers below `published` that `s` did not get, for messages.
pub(crate) fn gaps(s: &Subscriber, published: u64) -> Vec<(u64, u64)> {
    let got = s.numbers();
    let mut gaps = Vec::new();
    let mut expected = 0;
    for n in got.into_iter().chain([published]) {
        if n > expected {
            gaps.push((expected, n - 1));
        }
        expected = n + 1;
    }
    gaps
}
