//! The shard's readiness ring given up (`hub/src/shard/ring.rs`), against
//! the real `hub` binary: `HUB_READINESS_RING_FAULT` makes the ring see a
//! completion the kernel dropped, or a poll removal that cannot be
//! submitted, at a point the test chooses (no sleep, no memory pressure).
//!
//! Checked each time: the failure is logged and counted once; every
//! connection the ring watched goes on through glommio's reads (echoes
//! answered before, across and after the switch, none lost); the gauge of
//! watched connections drops to 0; a new connection works; a connection
//! the hub closes reaches its peer as a close (the ring's polls, which held
//! the sockets open, ended with the ring) and its descriptor goes. The
//! ring's own descriptor goes with it (the eventfd stays, unused).

mod support;

use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::time::Duration;

use support::{eventually, start_hub, tcp_connect, Before, Proc, RawFrame, RawWs};

const FAULT_VAR: &str = "HUB_READINESS_RING_FAULT";
const LOG_LINE: &str = "the WebSocket readiness ring failed";

/// A Socket.IO client of the default namespace over a raw WebSocket.
fn client(addr: SocketAddr) -> RawWs {
    let stream = tcp_connect(addr, Before::default());
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut ws = RawWs::open(stream, addr);
    ws.send("40");
    let connected = ws.text();
    assert!(connected.starts_with("40{\"sid\""), "{connected}");
    ws
}

/// One echo round trip, with an ack id of its own.
fn echo(ws: &mut RawWs, id: u32) {
    ws.send(&format!("42{id}[\"echo\",\"e{id}\"]"));
    assert_eq!(ws.text(), format!("43{id}[\"e{id}\"]"));
}

/// Every client echoes `rounds` times, taking turns.
fn echo_all(clients: &mut [RawWs], rounds: u32, first_id: u32) {
    for round in 0..rounds {
        for (i, ws) in clients.iter_mut().enumerate() {
            echo(ws, first_id + round * 100 + i as u32);
        }
    }
}

/// The hub closes `ws` (an Engine.IO close packet asks it to): the peer
/// reads the close frame, then the end of the stream or a reset, soon.
fn closed_by_the_hub(mut ws: RawWs) {
    ws.send("1");
    loop {
        match ws.frame() {
            Ok(Some(RawFrame::Text(_))) => {}
            Ok(Some(RawFrame::Other(8))) => break,
            Ok(Some(RawFrame::Other(op))) => panic!("unexpected frame, opcode {op}"),
            Ok(None) => return,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
            Err(e) => panic!("no close from the hub: {e}"),
        }
    }
    let mut rest = [0u8; 256];
    match ws.stream.read(&mut rest) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the hub's close did not end the connection: {other:?}"),
    }
}

fn ring_failed_once(hub: &Proc) {
    // The counter and the log line are written by the hub one after the
    // other, and its stderr reaches the test through a pipe: wait for both.
    eventually(
        Duration::from_secs(10),
        "the failure counted and logged",
        || hub.metric("hub_ws_read_ring_failures_total") == 1.0 && hub.stderr().contains(LOG_LINE),
    );
    let log = hub.stderr();
    assert_eq!(log.matches(LOG_LINE).count(), 1, "{log}");
    assert_eq!(hub.metric("hub_ws_read_ring_connections"), 0.0);
}

#[test]
fn a_completion_the_kernel_dropped_gives_the_ring_up_and_every_connection_goes_on() {
    // A handful of completions in: during the first clients' echoes.
    let mut hub = start_hub(&["--shards", "1"], &[(FAULT_VAR, "dropped-after:12")]);
    let fds_idle = hub.fds();
    let mut clients: Vec<RawWs> = (0..4).map(|_| client(hub.addr)).collect();
    // Across the failure: each message answered, in order, none lost.
    echo_all(&mut clients, 10, 0);
    ring_failed_once(&hub);
    // After it, through glommio.
    echo_all(&mut clients, 5, 10_000);
    let mut late = client(hub.addr);
    echo(&mut late, 1);
    assert_eq!(hub.metric("hub_ws_read_ring_connections"), 0.0);
    assert_eq!(hub.metric("hub_connections"), 5.0);
    // Closed by the hub: the peer sees it, the descriptor goes.
    closed_by_the_hub(clients.pop().unwrap());
    closed_by_the_hub(late);
    // Three connections left, and the ring's descriptor gone.
    eventually(Duration::from_secs(10), "two descriptors closed", || {
        hub.fds() == fds_idle + 3 - 1
    });
    eventually(Duration::from_secs(10), "two sessions gone", || {
        hub.metric("hub_connections") == 3.0
    });
    // The others are undisturbed.
    echo_all(&mut clients, 2, 20_000);
    hub.assert_alive();
}

#[test]
fn a_poll_removal_that_fails_gives_the_ring_up_and_the_socket_still_closes() {
    // The first connection to end cannot have its poll removed.
    let mut hub = start_hub(&["--shards", "1"], &[(FAULT_VAR, "removal-fails:0")]);
    let fds_idle = hub.fds();
    let mut clients: Vec<RawWs> = (0..4).map(|_| client(hub.addr)).collect();
    echo_all(&mut clients, 3, 0);
    assert_eq!(hub.metric("hub_ws_read_ring_connections"), 4.0);
    assert_eq!(hub.metric("hub_ws_read_ring_failures_total"), 0.0);
    // Its poll held the socket: the ring is closed with it, so the close
    // reaches the peer.
    closed_by_the_hub(clients.pop().unwrap());
    ring_failed_once(&hub);
    assert!(
        hub.stderr()
            .contains("a WebSocket's read poll could not be removed"),
        "{}",
        hub.stderr()
    );
    // Three connections left, and the ring's descriptor gone.
    eventually(Duration::from_secs(10), "its descriptor closed", || {
        hub.fds() == fds_idle + 3 - 1
    });
    // The rest go on through glommio, and close as well.
    echo_all(&mut clients, 5, 1_000);
    let mut late = client(hub.addr);
    echo(&mut late, 1);
    closed_by_the_hub(late);
    closed_by_the_hub(clients.pop().unwrap());
    eventually(Duration::from_secs(10), "the sessions gone", || {
        hub.metric("hub_connections") == 2.0 && hub.fds() == fds_idle + 2 - 1
    });
    echo_all(&mut clients, 2, 2_000);
    hub.assert_alive();
}

#[test]
fn without_a_fault_the_ring_watches_every_plain_websocket() {
    // The control for the two above: the same steps, nothing given up.
    let mut hub = start_hub(&["--shards", "1"], &[]);
    let mut clients: Vec<RawWs> = (0..4).map(|_| client(hub.addr)).collect();
    echo_all(&mut clients, 10, 0);
    assert_eq!(hub.metric("hub_ws_read_ring_connections"), 4.0);
    closed_by_the_hub(clients.pop().unwrap());
    eventually(
        Duration::from_secs(10),
        "the gauge follows the close",
        || hub.metric("hub_ws_read_ring_connections") == 3.0,
    );
    assert_eq!(hub.metric("hub_ws_read_ring_failures_total"), 0.0);
    assert!(!hub.stderr().contains(LOG_LINE));
    hub.assert_alive();
}
