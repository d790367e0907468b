//! TCP connections set up with plain syscalls, for what std's
//! `TcpStream::connect` cannot set before the connect.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;

/// What to set on a socket before it connects.
#[derive(Clone, Copy, Debug, Default)]
pub struct Before {
    /// The local address (another loopback address than 127.0.0.1, say).
    pub from: Option<Ipv4Addr>,
    /// The receive buffer, in bytes (the kernel doubles it), so that the
    /// window the socket offers stays small.
    pub rcvbuf: Option<libc::c_int>,
}

/// A TCP connection to `to` (IPv4), with what `before` says set before the
/// connect; no timeouts.
pub fn tcp_connect(to: SocketAddr, before: Before) -> TcpStream {
    let SocketAddr::V4(to) = to else {
        panic!("the server listens on IPv4: {to}")
    };
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns (handed
    // whole to the `TcpStream` that closes it), with pointers to locals of
    // the lengths given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        if let Some(size) = before.rcvbuf {
            let set = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            assert_eq!(set, 0, "SO_RCVBUF: {}", io::Error::last_os_error());
        }
        if let Some(from) = before.from {
            let local = sockaddr(from, 0);
            let bound = libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len);
            assert_eq!(bound, 0, "bind {from}: {}", io::Error::last_os_error());
        }
        let remote = sockaddr(*to.ip(), to.port());
        let connected = libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len);
        assert_eq!(connected, 0, "connect: {}", io::Error::last_os_error());
        stream
    }
}
