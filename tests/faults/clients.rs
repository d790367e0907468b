//! The fault tests' clients: a relay client over a WebSocket, a bystander
//! that echoes on its own thread, and raw requests.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tungstenite::Message;

use crate::support::*;
use crate::PATH;

/// Closes a TCP connection with a reset (SO_LINGER 0) instead of a FIN.
pub(crate) fn reset(stream: TcpStream) {
    crate::support::close_with_reset(&stream);
    drop(stream);
}

/// A relay client over a WebSocket: handshake, CONNECT to `/`, answers the
/// server's pings while it reads.
pub(crate) struct RelayWs {
    pub(crate) ws: Ws,
    pub(crate) next_ack: u64,
    /// The Engine.IO session id (its first two characters name the shard).
    pub(crate) sid: String,
}

impl RelayWs {
    pub(crate) fn connect(addr: SocketAddr) -> RelayWs {
        let mut ws = ws_try_connect_at(addr, PATH, "EIO=4&transport=websocket")
            .unwrap_or_else(|e| panic!("websocket to {addr}: {e}"));
        let (sid, _) = parse_open(&ws_text(&mut ws));
        ws_send_text(&mut ws, "40");
        let connected = ws_text(&mut ws);
        assert!(connected.starts_with("40{\"sid\""), "{connected}");
        RelayWs {
            ws,
            next_ack: 0,
            sid,
        }
    }

    /// A client whose session is on `shard` (of fewer than 64).
    pub(crate) fn connect_on_shard(addr: SocketAddr, shard: usize) -> RelayWs {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for _ in 0..64 {
            let client = RelayWs::connect(addr);
            if client.sid.as_bytes()[..2] == [b'A', ALPHABET[shard]] {
                return client;
            }
        }
        panic!("no session landed on shard {shard} in 64 tries");
    }

    /// The next Engine.IO message within `within` that is not a ping (pings
    /// are answered); None on timeout.
    pub(crate) fn next(&mut self, within: Duration) -> Result<Option<String>, String> {
        ws_next_text(&mut self.ws, within)
    }

    /// Emit `event` with `args` (a JSON array's inside) and wait for its ack.
    pub(crate) fn request(&mut self, event: &str, args: &str) -> Result<String, String> {
        let id = self.next_ack;
        self.next_ack += 1;
        self.ws
            .send(Message::text(format!("42{id}[\"{event}\",{args}]")))
            .map_err(|e| format!("send: {e}"))?;
        let prefix = format!("43{id}[");
        loop {
            match self.next(Duration::from_secs(5))? {
                Some(text) if text.starts_with(&prefix) => {
                    return Ok(text[prefix.len()..text.len() - 1].to_owned())
                }
                Some(_) => {}
                None => return Err(format!("no ack for {event} #{id} within 5 s")),
            }
        }
    }
}

/// A relay client that echoes without pause on its own thread while the
/// faults happen, and says whether anything went wrong.
pub(crate) struct Bystander {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) round_trips: Arc<AtomicU64>,
    pub(crate) thread: JoinHandle<Result<(), String>>,
}

impl Bystander {
    pub(crate) fn start(addr: SocketAddr) -> Bystander {
        let mut client = RelayWs::connect(addr);
        let stop = Arc::new(AtomicBool::new(false));
        let round_trips = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, round_trips) = (stop.clone(), round_trips.clone());
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let args = format!("{{\"n\":{n}}}");
                    let answer = client.request("echo", &args)?;
                    if answer != args {
                        return Err(format!("echo {args} answered {answer}"));
                    }
                    n += 1;
                    round_trips.fetch_add(1, Ordering::Relaxed);
                    // Not back to back: leave the hub's cores to the faults.
                    if let Some(other) = client.next(Duration::from_millis(10))? {
                        return Err(format!("unexpected message {other}"));
                    }
                }
                Ok(())
            })
        };
        Bystander {
            stop,
            round_trips,
            thread,
        }
    }

    pub(crate) fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Waits for `more` round trips past what was counted so far.
    pub(crate) fn wait_round_trips(&self, more: u64) {
        let target = self.round_trips() + more;
        eventually(Duration::from_secs(5), "the bystander is stuck", || {
            assert!(
                !self.thread.is_finished(),
                "the bystander stopped: see its result"
            );
            self.round_trips() >= target
        });
    }

    pub(crate) fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let n = self.round_trips();
        match self.thread.join() {
            Ok(Ok(())) => n,
            Ok(Err(e)) => panic!("the bystander was disturbed after {n} round trips: {e}"),
            Err(_) => panic!("the bystander thread panicked"),
        }
    }
}

// ---------------------------------------------------------------------------
// Raw requests
// ---------------------------------------------------------------------------

pub(crate) fn upgrade_request(query: &str) -> Vec<u8> {
    build_request(
        "GET",
        &format!("{PATH}?{query}"),
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", WS_KEY),
        ],
        b"",
    )
}

/// A raw WebSocket session connected to `/`: the open packet and the
/// CONNECT reply read.
pub(crate) fn raw_ws_session(addr: SocketAddr) -> Conn {
    let mut conn = Conn::open(addr);
    conn.send(&upgrade_request("EIO=4&transport=websocket"));
    let resp = conn.read_response().expect("an answer to the upgrade");
    assert_eq!(resp.status, 101, "{resp:?}");
    let (_, open) = raw_ws_read_frame(&mut conn);
    assert!(open.starts_with(b"0{"), "{open:?}");
    conn.send(&ws_frame(0x1, b"40", Some([1, 2, 3, 4])));
    let (_, connected) = raw_ws_read_frame(&mut conn);
    assert!(connected.starts_with(b"40{"), "{connected:?}");
    conn
}

/// A polling handshake; returns the sid.
pub(crate) fn polling_handshake(addr: SocketAddr, eio: u8) -> String {
    polling_handshake_packets(addr, eio).0
}

/// A polling handshake; returns the sid and the packets after the open
/// packet (a v2 client's CONNECT to `/` comes with it).
pub(crate) fn polling_handshake_packets(addr: SocketAddr, eio: u8) -> (String, Vec<String>) {
    let resp = get_fresh(addr, &format!("{PATH}?EIO={eio}&transport=polling"));
    assert_eq!(resp.status, 200, "{resp:?}");
    let text = resp.text();
    let mut packets = if eio == 3 {
        v3_decode(&text)
    } else {
        text.split('\x1e').map(str::to_owned).collect()
    };
    let open = packets.remove(0);
    (parse_open(&open).0, packets)
}

/// A polling request's path for session `sid`.
pub(crate) fn session_path(eio: u8, sid: &str) -> String {
    format!("{PATH}?EIO={eio}&transport=polling&sid={sid}")
}

/// The socket id on `/` from the CONNECT reply (v2 clients: the sid).
pub(crate) fn socket_id(eio: u8, sid: &str, connected: &str) -> String {
    assert!(connected.starts_with("40"), "connected to /: {connected}");
    if eio == 3 {
        return sid.to_owned();
    }
    let reply: serde_json::Value = serde_json::from_str(&connected[2..]).unwrap();
    reply["sid"].as_str().unwrap().to_owned()
}

/// One request on a fresh connection; its body, or why there is none. Never
/// panics (used from threads that outlive a vanished peer).
pub(crate) fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let headers: &[(&str, &str)] = if method == "POST" {
        &[("Content-Type", "text/plain;charset=UTF-8")]
    } else {
        &[]
    };
    stream
        .write_all(&build_request(method, path, headers, body))
        .map_err(|e| e.to_string())?;
    let mut conn = Conn::from_stream(stream);
    let resp = conn.read_response().map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&resp.body).into_owned())
}

/// One WebSocket frame from the client, masked; `fin` false leaves the
/// message open.
pub(crate) fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = ws_frame(opcode, payload, Some([9, 8, 7, 6]));
    if !fin {
        frame[0] &= 0x7f;
    }
    frame
}

/// The next server frame on a raw connection, or None once it is closed.
pub(crate) fn parse_next_frame(conn: &mut Conn) -> Option<(u8, Vec<u8>)> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| raw_ws_read_frame(conn))).ok()
}
