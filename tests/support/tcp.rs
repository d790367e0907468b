//! TCP sockets set up the way a test needs, through `socket2`'s safe calls:
//! what std's `TcpStream::connect` cannot set before the connect (a local
//! address, a small receive buffer), and the options a test sets on a live
//! connection (TCP_CORK, an abortive close).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, SockAddr, SockRef, Socket, Type};

/// What to set on a socket before it connects.
#[derive(Clone, Copy, Debug, Default)]
pub struct Before {
    /// The local address (another loopback address than 127.0.0.1, say).
    pub from: Option<Ipv4Addr>,
    /// The receive buffer, in bytes (the kernel doubles it), so that the
    /// window the socket offers stays small from the handshake on.
    pub rcvbuf: Option<usize>,
}

/// A TCP connection to `to`, with what `before` says set before the
/// connect; no timeouts.
pub fn tcp_connect(to: SocketAddr, before: Before) -> TcpStream {
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, None).expect("socket");
    if let Some(size) = before.rcvbuf {
        socket
            .set_recv_buffer_size(size)
            .unwrap_or_else(|e| panic!("SO_RCVBUF {size}: {e}"));
    }
    if let Some(from) = before.from {
        let local = SockAddr::from(SocketAddr::from((from, 0)));
        socket
            .bind(&local)
            .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    }
    socket
        .connect(&SockAddr::from(to))
        .unwrap_or_else(|e| panic!("connect {to}: {e}"));
    socket.into()
}

/// Holds back (`true`) or sends (`false`) a connection's partial segments
/// (TCP_CORK), so that what is written in between leaves in one segment.
pub fn set_cork(tcp: &TcpStream, on: bool) {
    SockRef::from(tcp)
        .set_tcp_cork(on)
        .unwrap_or_else(|e| panic!("TCP_CORK: {e}"));
}

/// Sets a live connection's receive buffer (the kernel doubles it).
pub fn set_rcvbuf(tcp: &TcpStream, size: usize) {
    SockRef::from(tcp)
        .set_recv_buffer_size(size)
        .unwrap_or_else(|e| panic!("SO_RCVBUF {size}: {e}"));
}

/// Makes the connection's close a reset (SO_LINGER 0) instead of a FIN,
/// the way a peer that vanishes abruptly ends it.
pub fn close_with_reset(tcp: &TcpStream) {
    SockRef::from(tcp)
        .set_linger(Some(Duration::ZERO))
        .unwrap_or_else(|e| panic!("SO_LINGER: {e}"));
}
