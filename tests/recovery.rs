//! Connection-state recovery across shards under load, against the real
//! `hub` binary (`--shards 2 --recovery-window 60000`): one publisher keeps
//! publishing numbered messages to room `r` (a window of acks in flight,
//! every ack `{"ok":true}`) while six subscribers drop their connections
//! abruptly (a TCP reset, with whatever their kernel had received and they
//! had not read) and come back with their private id and last offset, on
//! whichever shard the kernel gives their new connection.
//!
//! Checked: every return is a recovery (same socket id and private id); a
//! subscriber gets every message exactly once and in order across its
//! returns (lost 0, duplicated 0, against the acknowledged publishes); some
//! returns land on the shard the socket id does not name; the hub counts
//! every recovery as succeeded and none failed.
//!
//! One drop at a time, and each subscriber comes back only once the hub
//! keeps its session (`hub_recovery_sessions`): a client that reconnects
//! before the hub has seen its old connection go gets a fresh session, as
//! with socket.io, which is not what this test is about.

mod support;

use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use support::{eventually, start_hub, tcp_connect, Before, Proc, RawWs};

const SUBSCRIBERS: usize = 6;
const MESSAGES: u64 = 3_000;
/// Publishes in flight (sent, not yet acknowledged).
const WINDOW: u64 = 16;
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A relay client over a WebSocket written by hand (`support::RawWs`).
struct Client {
    ws: RawWs,
    /// Packets that came before the CONNECT answer (a recovered socket's
    /// missed events, sent first as socket.io does), given out first.
    early: std::collections::VecDeque<String>,
}

impl Client {
    /// Connects and opens the Engine.IO session (no namespace yet).
    fn open(addr: SocketAddr) -> Client {
        let stream = tcp_connect(addr, Before::default());
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        Client {
            ws: RawWs::open(stream, addr),
            early: Default::default(),
        }
    }

    /// CONNECT to `/` with `auth`; the answer's socket id and private id.
    fn connect(&mut self, auth: &Value) -> (String, String) {
        self.send(&format!("40{auth}"));
        // As socket.io-client: events before the CONNECT are buffered and
        // emitted once connected.
        let answer = loop {
            let text = self.ws.text();
            if text.starts_with("40") {
                break text;
            }
            self.early.push_back(text);
        };
        let body: Value = serde_json::from_str(answer.strip_prefix("40").unwrap_or_else(|| {
            panic!("a CONNECT answer, got {answer}");
        }))
        .unwrap();
        let field = |name: &str| {
            body[name]
                .as_str()
                .unwrap_or_else(|| panic!("{name} in {answer}"))
                .to_string()
        };
        (field("sid"), field("pid"))
    }

    /// The next Engine.IO packet that is not a ping, those that came
    /// before the CONNECT answer first.
    fn text(&mut self) -> String {
        match self.early.pop_front() {
            Some(text) => text,
            None => self.ws.text(),
        }
    }

    fn send(&mut self, text: &str) {
        self.ws.send(text);
    }

    /// Lose the connection abruptly: a reset, nothing more read.
    fn reset(self) {
        support::close_with_reset(&self.ws.stream);
    }
}

/// The shard a session or socket id names (its first two characters).
fn shard_of(id: &str) -> usize {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let at = |c: u8| ALPHABET.iter().position(|a| *a == c).unwrap();
    let b = id.as_bytes();
    at(b[0]) * 64 + at(b[1])
}

/// What one subscriber saw.
#[derive(Debug, Default)]
struct Tally {
    received: u64,
    returns: u64,
    /// Returns on the shard its socket id does not name.
    elsewhere: u64,
}

/// Read messages `0..MESSAGES` in order; drop and come back every
/// `drop_every` messages. One drop at a time in the process (`turn`).
/// `joined` is told once the subscriber is in the room.
fn subscribe(
    hub: &Proc,
    index: usize,
    drop_every: u64,
    turn: &Mutex<()>,
    joined: &mpsc::Sender<()>,
) -> Result<Tally, String> {
    let mut client = Client::open(hub.addr);
    let (sid, pid) = client.connect(&serde_json::json!({}));
    client.send("421[\"join\",\"r\"]");
    if client.text() != "431[{\"ok\":true}]" {
        return Err("join refused".into());
    }
    let _ = joined.send(());
    let mut tally = Tally::default();
    let mut next = 0u64;
    let mut offset;
    while next < MESSAGES {
        let packet = client.text();
        let Some(body) = packet.strip_prefix("42") else {
            return Err(format!(
                "subscriber {index}: unexpected packet {packet:.80}"
            ));
        };
        let args: Value = serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))?;
        let (Some("m"), Some(n), Some(o)) = (args[0].as_str(), args[1].as_u64(), args[2].as_str())
        else {
            return Err(format!(
                "subscriber {index}: not a message with an offset: {body}"
            ));
        };
        if n != next {
            return Err(format!(
                "subscriber {index}: got message {n} where {next} was due (after {} returns)",
                tally.returns
            ));
        }
        next += 1;
        tally.received += 1;
        offset = o.to_string();
        if next.is_multiple_of(drop_every) && next < MESSAGES {
            let _one_at_a_time = turn.lock().unwrap();
            let kept = hub.metric("hub_recovery_sessions");
            client.reset();
            eventually(
                Duration::from_secs(10),
                "the hub keeps the dropped session",
                || hub.metric("hub_recovery_sessions") > kept,
            );
            client = Client::open(hub.addr);
            let auth = serde_json::json!({ "pid": pid, "offset": offset });
            let (back, back_pid) = client.connect(&auth);
            if back != sid || back_pid != pid {
                return Err(format!(
                    "subscriber {index}: return {} was a fresh session ({back} for {sid})",
                    tally.returns + 1
                ));
            }
            tally.returns += 1;
            if shard_of(&client.ws.eio_sid) != shard_of(&sid) {
                tally.elsewhere += 1;
            }
        }
    }
    Ok(tally)
}

/// Publish `MESSAGES` to `r`, `WINDOW` in flight; every ack must be ok.
fn publish(hub: &Proc) -> Result<u64, String> {
    let mut client = Client::open(hub.addr);
    client.connect(&serde_json::json!({}));
    client.ws.publish_acked(MESSAGES, WINDOW, |n| n.to_string())
}

#[test]
fn subscribers_dropping_and_recovering_across_shards_lose_and_repeat_nothing() {
    dropping_and_recovering(2);
}

/// Three shards: a restore between two of them while the publisher is on
/// the third, whose broadcasts reach the two over separate channels (a
/// broadcast the answer held may reach the new shard after the socket
/// joined there: it must not be delivered twice).
#[test]
fn subscribers_dropping_and_recovering_across_three_shards_lose_and_repeat_nothing() {
    dropping_and_recovering(3);
}

fn dropping_and_recovering(shards: u32) {
    let shards = shards.to_string();
    let hub = Arc::new(start_hub(
        &["--shards", shards.as_str(), "--recovery-window", "60000"],
        &[],
    ));
    let turn = Arc::new(Mutex::new(()));
    // Subscribers join first, so that every publish is theirs to get.
    let (joined_tx, joined_rx) = mpsc::channel();
    let subscribers: Vec<_> = (0..SUBSCRIBERS)
        .map(|i| {
            let hub = hub.clone();
            let turn = turn.clone();
            let joined = joined_tx.clone();
            thread::spawn(move || {
                let drop_every = 150 + 37 * i as u64;
                subscribe(&hub, i, drop_every, &turn, &joined)
            })
        })
        .collect();
    for _ in 0..SUBSCRIBERS {
        joined_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("every subscriber joined");
    }
    let published = publish(&hub);
    let tallies: Vec<_> = subscribers
        .into_iter()
        .map(|s| {
            s.join()
                .unwrap_or_else(|_| Err("a subscriber panicked".into()))
        })
        .collect();
    assert_eq!(published, Ok(MESSAGES), "every publish acknowledged ok");
    let mut returns = 0;
    let mut elsewhere = 0;
    for (i, tally) in tallies.iter().enumerate() {
        let tally = tally.as_ref().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            tally.received, MESSAGES,
            "subscriber {i}: lost 0, duplicated 0"
        );
        returns += tally.returns;
        elsewhere += tally.elsewhere;
    }
    eprintln!(
        "{SUBSCRIBERS} subscribers x {MESSAGES} messages: {returns} returns, {elsewhere} on the \
         other shard; lost 0, duplicated 0"
    );
    assert!(returns >= SUBSCRIBERS as u64 * 10, "{returns} returns");
    assert!(elsewhere > 0, "some returns landed on the other shard");
    assert_eq!(hub.metric("hub_recoveries_succeeded_total"), returns as f64);
    assert_eq!(hub.metric("hub_recoveries_attempted_total"), returns as f64);
    assert_eq!(hub.metric("hub_recoveries_failed_total"), 0.0);
}
