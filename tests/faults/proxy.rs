//! A TCP proxy that goes silent on cue, and the clients that talk through
//! it: how a peer vanishes without a FIN.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tungstenite::Message;

use crate::clients::*;
use crate::support::*;
use crate::{PATH, PING_INTERVAL};

/// A TCP proxy between the test's client and a server. On `silence()` it
/// stops forwarding in both directions and stops reading from the server,
/// keeping every socket open: the server sees a peer that has gone quiet
/// without a FIN or a reset, as when a cable is pulled or a NAT forgets the
/// flow. The sockets close when the proxy is dropped.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    /// Nothing more is passed on from the client.
    pub(crate) silent: Arc<AtomicBool>,
    /// Nothing more is read from the server (nor passed on).
    pub(crate) deaf: Arc<AtomicBool>,
    /// Every socket it opened, kept open until the proxy is dropped.
    pub(crate) held: Arc<Mutex<Vec<TcpStream>>>,
    pub(crate) upstream: Arc<Mutex<Vec<SocketAddr>>>,
    pub(crate) stop: Arc<AtomicBool>,
}

impl Proxy {
    /// `small_window`: the server-side sockets get a small receive buffer,
    /// so that a server writing to a silent peer fills it quickly.
    pub(crate) fn start(server_addr: SocketAddr, small_window: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = Arc::new(AtomicBool::new(false));
        let deaf = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let upstream = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (silent, deaf, held, stop) =
                (silent.clone(), deaf.clone(), held.clone(), stop.clone());
            let upstream_addrs = upstream.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let client = match listener.accept() {
                        Ok((client, _)) => client,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                        Err(_) => break,
                    };
                    client.set_nonblocking(false).unwrap();
                    let server = connect_with_window(server_addr, small_window);
                    for (from, to, flag) in [
                        (
                            client.try_clone().unwrap(),
                            server.try_clone().unwrap(),
                            &silent,
                        ),
                        (
                            server.try_clone().unwrap(),
                            client.try_clone().unwrap(),
                            &deaf,
                        ),
                    ] {
                        let flag = flag.clone();
                        thread::spawn(move || forward(from, to, &flag));
                    }
                    upstream_addrs
                        .lock()
                        .unwrap()
                        .push(server.local_addr().unwrap());
                    held.lock().unwrap().extend([client, server]);
                }
            });
        }
        Proxy {
            addr,
            silent,
            deaf,
            held,
            upstream,
            stop,
        }
    }

    /// The addresses the proxy connected to the server from: the server's
    /// peers for this client.
    pub(crate) fn upstream(&self) -> Vec<SocketAddr> {
        self.upstream.lock().unwrap().clone()
    }

    /// Stop reading from the server; still pass the client's bytes on.
    pub(crate) fn deafen(&self) {
        self.deaf.store(true, Ordering::SeqCst);
    }

    /// Stop in both directions.
    pub(crate) fn silence(&self) {
        self.deafen();
        self.silent.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for stream in self.held.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Copy `from` to `to` until the proxy goes silent; then stop reading.
pub(crate) fn forward(mut from: TcpStream, mut to: TcpStream, silent: &AtomicBool) {
    from.set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let mut buf = [0u8; 16 * 1024];
    while !silent.load(Ordering::SeqCst) {
        match from.read(&mut buf) {
            Ok(0) => {
                // A FIN passes only while the link is up.
                if !silent.load(Ordering::SeqCst) {
                    let _ = to.shutdown(Shutdown::Write);
                }
                return;
            }
            Ok(n) => {
                // Read just before the silence: dropped, as on a dead link.
                if silent.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// A connection to `addr`; with `small_window`, a 4 KiB receive buffer set
/// before the handshake (so the window offered is small from the start).
pub(crate) fn connect_with_window(addr: SocketAddr, small_window: bool) -> TcpStream {
    if !small_window {
        return TcpStream::connect(addr).unwrap();
    }
    crate::support::tcp_connect(
        addr,
        crate::support::Before {
            rcvbuf: Some(4096),
            ..crate::support::Before::default()
        },
    )
}

/// What a vanishing client speaks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Peer {
    WebSocket { eio: u8 },
    Polling { eio: u8 },
}

pub(crate) const PEERS: [Peer; 4] = [
    Peer::WebSocket { eio: 4 },
    Peer::WebSocket { eio: 3 },
    Peer::Polling { eio: 4 },
    Peer::Polling { eio: 3 },
];

/// A client behind a proxy, connected to `/` (and joined to `room`, if
/// given) and kept alive by its own thread (answering v4 pings, sending v3
/// pings every ping interval, a GET always parked) until `stop`. Returns
/// its sid and its socket id on `/`.
pub(crate) fn live_peer(
    proxy: SocketAddr,
    peer: Peer,
    room: Option<&str>,
    stop: Arc<AtomicBool>,
) -> (String, String, JoinHandle<()>) {
    let join = room.map(|room| format!("420[\"join\",\"{room}\"]"));
    let joined = "430[{\"ok\":true}]";
    match peer {
        Peer::WebSocket { eio } => {
            let mut ws = ws_try_connect_at(proxy, PATH, &format!("EIO={eio}&transport=websocket"))
                .expect("websocket through the proxy");
            let (sid, _) = parse_open(&ws_text(&mut ws));
            if eio == 4 {
                ws_send_text(&mut ws, "40");
            }
            let connected = ws_text(&mut ws);
            let socket = socket_id(eio, &sid, &connected);
            if let Some(join) = &join {
                ws_send_text(&mut ws, join);
                loop {
                    match ws_text(&mut ws).as_str() {
                        "2" => ws_send_text(&mut ws, "3"),
                        text => {
                            assert_eq!(text, joined);
                            break;
                        }
                    }
                }
            }
            let thread = thread::spawn(move || {
                let mut last_ping = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    if eio == 3 && last_ping.elapsed() >= PING_INTERVAL {
                        let _ = ws.send(Message::text("2"));
                        last_ping = Instant::now();
                    }
                    ws_set_timeout(&mut ws, Duration::from_millis(20));
                    match ws.read() {
                        Ok(Message::Text(t)) if t.as_str() == "2" => {
                            let _ = ws.send(Message::text("3"));
                        }
                        Ok(_) => {}
                        Err(tungstenite::Error::Io(e))
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => return,
                    }
                }
            });
            (sid, socket, thread)
        }
        Peer::Polling { eio } => {
            let (sid, mut packets) = polling_handshake_packets(proxy, eio);
            let path = session_path(eio, &sid);
            let encode = move |packets: &[&str]| -> Vec<u8> {
                if eio == 3 {
                    v3_payload(packets).into_bytes()
                } else {
                    packets.join("\x1e").into_bytes()
                }
            };
            let decode = move |payload: &str| -> Vec<String> {
                if eio == 3 {
                    v3_decode(payload)
                } else {
                    payload.split('\x1e').map(str::to_owned).collect()
                }
            };
            if eio == 4 {
                assert_eq!(post_fresh(proxy, &path, b"40").status, 200);
                packets.extend(decode(&get_fresh(proxy, &path).text()));
            }
            let connected = packets.remove(0);
            let socket = socket_id(eio, &sid, &connected);
            if let Some(join) = &join {
                assert_eq!(post_fresh(proxy, &path, &encode(&[join])).status, 200);
                loop {
                    let answer = decode(&get_fresh(proxy, &path).text());
                    if answer.iter().any(|p| p == "2") {
                        assert_eq!(post_fresh(proxy, &path, &encode(&["3"])).status, 200);
                    }
                    if answer.iter().any(|p| p == joined) {
                        break;
                    }
                }
            }
            let thread = thread::spawn(move || {
                // One GET always out: v4 pings and v3 pongs come back on it.
                let (tx, rx) = std::sync::mpsc::channel::<String>();
                let mut last_ping = Instant::now();
                let mut parked = false;
                while !stop.load(Ordering::SeqCst) {
                    if !parked {
                        let (tx, path) = (tx.clone(), path.clone());
                        thread::spawn(move || {
                            if let Ok(answer) = try_request(proxy, "GET", &path, b"") {
                                let _ = tx.send(answer);
                            }
                        });
                        parked = true;
                    }
                    if eio == 3 && last_ping.elapsed() >= PING_INTERVAL {
                        let _ = try_request(proxy, "POST", &path, &encode(&["2"]));
                        last_ping = Instant::now();
                    }
                    if let Ok(answer) = rx.recv_timeout(Duration::from_millis(20)) {
                        parked = false;
                        let pinged = eio == 4 && decode(&answer).iter().any(|p| p == "2");
                        if pinged && !stop.load(Ordering::SeqCst) {
                            let _ = try_request(proxy, "POST", &path, b"3");
                        }
                    }
                }
            });
            (sid, socket, thread)
        }
    }
}
