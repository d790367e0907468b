//! A client connection, plain or TLS: what the HTTP, polling and WebSocket
//! paths read and write. An enum rather than a trait object, so the plain
//! path (the hot one) costs a branch per call and nothing else: no
//! allocation, no dynamic dispatch.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::tls::{AcceptError, TlsStream};
use crate::engine::TlsConfig;

/// A connection as accepted: plain TCP, or TLS over it (whose session is
/// boxed, so a plain connection carries a pointer's size more, no more).
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(TlsStream),
}

impl Stream {
    /// The connection as the listener serves it: plain without `tls`, else
    /// once the client's handshake is done (see [`super::tls::accept`]).
    pub(crate) async fn accept(
        stream: TcpStream,
        tls: Option<&TlsConfig>,
    ) -> Result<Stream, AcceptError> {
        let Some(tls) = tls else {
            return Ok(Stream::Plain(stream));
        };
        // Boxed: the plain path's connection future (every idle keep-alive
        // or long poll holds one) stays clear of the TLS accept's state.
        Box::pin(super::tls::accept(stream, tls))
            .await
            .map(Stream::Tls)
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(io) => io,
            Stream::Tls(tls) => tls.tcp(),
        }
    }

    /// A write the peer takes nothing of for `timeout` fails (under TLS, the
    /// writes of ciphertext to the socket).
    pub(crate) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_write_timeout(timeout).map_err(Into::into)
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

impl AsyncRead for Stream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            // Plain writes go straight to the kernel: nothing to flush.
            Stream::Plain(_) => Poll::Ready(Ok(())),
            Stream::Tls(tls) => Pin::new(tls).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(io) => Pin::new(io).poll_close(cx),
            Stream::Tls(tls) => Pin::new(tls).poll_close(cx),
        }
    }
}
