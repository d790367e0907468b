//! A TCP connection from a chosen source address.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::FromRawFd;

use glommio::net::TcpStream;

use super::tls::{ClientStream, TlsClient};
use crate::stats::Cause;

/// Starts connecting and returns the stream at once: the first write waits
/// for the handshake (io_uring polls the socket for writability), so no
/// executor thread ever blocks in `connect`.
pub fn dial(addr: SocketAddr, source: Option<Ipv4Addr>) -> Result<TcpStream, Cause> {
    let SocketAddr::V4(addr) = addr else {
        return Err(Cause::ConnectFailed);
    };
    // SAFETY: plain socket calls on a descriptor this function owns until it
    // is handed to the TcpStream.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(Cause::ConnectFailed);
        }
        let fail = |fd| {
            let errno = *libc::__errno_location();
            libc::close(fd);
            Err(match errno {
                libc::ECONNREFUSED => Cause::ConnectRefused,
                _ => Cause::ConnectFailed,
            })
        };
        let one: libc::c_int = 1;
        let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let one_ptr = &one as *const libc::c_int as *const libc::c_void;
        libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, one_ptr, size);
        if let Some(ip) = source {
            // Leave the port to connect(): ports are then unique per
            // destination, not per source address.
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                one_ptr,
                size,
            );
            let local = sockaddr(ip, 0);
            if libc::bind(fd, sockaddr_ptr(&local), sockaddr_len()) != 0 {
                return fail(fd);
            }
        }
        let remote = sockaddr(*addr.ip(), addr.port());
        if libc::connect(fd, sockaddr_ptr(&remote), sockaddr_len()) != 0
            && *libc::__errno_location() != libc::EINPROGRESS
        {
            return fail(fd);
        }
        Ok(TcpStream::from_raw_fd(fd))
    }
}

fn sockaddr(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn sockaddr_ptr(addr: &libc::sockaddr_in) -> *const libc::sockaddr {
    addr as *const libc::sockaddr_in as *const libc::sockaddr
}

fn sockaddr_len() -> libc::socklen_t {
    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
}

/// Connects, then (for a TLS target) does the TLS handshake.
pub async fn connect(
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
    tls: Option<&TlsClient>,
) -> Result<ClientStream, Cause> {
    let stream = dial(addr, source)?;
    match tls {
        None => Ok(ClientStream::Plain(stream)),
        Some(tls) => match tls.handshake(stream).await {
            Ok(stream) => Ok(ClientStream::Tls(Box::new(stream))),
            Err(e) => Err(match e.kind() {
                std::io::ErrorKind::InvalidData => {
                    // The cause is counted; why is said once (an untrusted
                    // certificate, say, which --ca or --insecure fixes).
                    static SAID: std::sync::Once = std::sync::Once::new();
                    SAID.call_once(|| eprintln!("loadgen: TLS handshake with {addr} failed: {e}"));
                    Cause::TlsHandshake
                }
                _ => io_cause(&e, false),
            }),
        },
    }
}

/// The cause behind a failed first write or read.
pub fn io_cause(err: &std::io::Error, connected: bool) -> Cause {
    match err.raw_os_error() {
        Some(libc::ECONNREFUSED) => Cause::ConnectRefused,
        Some(libc::ETIMEDOUT) if !connected => Cause::ConnectTimeout,
        _ if !connected => Cause::ConnectFailed,
        Some(libc::ECONNRESET) | Some(libc::EPIPE) => Cause::ServerClosed,
        _ => Cause::Io,
    }
}

/// Makes the next close of `fd` send a RST instead of a FIN.
pub fn reset_on_close(fd: std::os::fd::RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a descriptor the caller owns, with a value on the stack.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
