//! TLS on a shard's connections: a small async adapter over rustls's
//! `ServerConnection` and glommio's `TcpStream`, and the accept step (a
//! plain-HTTP client refused, the handshake under a deadline).
//!
//! Written here rather than taken from `futures-rustls` because the session
//! must move between shards with its descriptor: a WebSocket upgrade whose
//! Engine.IO session lives on another shard is handed to that shard as a
//! duplicated fd (`conn::hand_off`, `websocket::adopt`), and under TLS the
//! keys, sequence numbers and buffered records live in the accepting
//! shard's `ServerConnection`. `futures-rustls` can give its parts up
//! (`into_inner`) but cannot be built again from them; [`TlsStream`] can
//! ([`TlsStream::into_parts`], [`TlsStream::from_parts`]).
//!
//! Readiness is kept as the rest of hub relies on it (`buffers`,
//! `websocket::WriteRacing`):
//! - a read fills the caller's buffer (the shard's, for a moment) with
//!   plaintext; rustls keeps its own ciphertext buffer (at least 4 KiB, the
//!   one thing an idle TLS connection holds beyond the session state);
//! - `poll_write` takes no plaintext while ciphertext of an earlier write is
//!   still waiting for the socket, so rustls holds at most one write's worth
//!   (bounded by its buffer limit, [`SEND_BUFFER_LIMIT`]);
//! - `poll_flush` is pending until that ciphertext is in the kernel, so a
//!   writer that flushes sees a peer that does not read exactly as it does
//!   on a plain connection.

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use glommio::timer::Timer;
use rustls::ServerConnection;

use super::stream::Stream;
use crate::engine::TlsConfig;
use crate::http::response::Response;

/// Most ciphertext rustls holds for a connection whose peer is not reading
/// (its default; said here because the slow-consumer accounting counts on it).
pub(crate) const SEND_BUFFER_LIMIT: usize = 64 * 1024;

/// The first byte of a TLS handshake record.
const HANDSHAKE_RECORD: u8 = 0x16;

// The session crosses the shard mesh with its descriptor.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<ServerConnection>();
};

/// A TLS connection over a glommio `TcpStream`.
pub(crate) struct TlsStream {
    io: TcpStream,
    session: Box<ServerConnection>,
}

/// `std::io` over glommio's readiness-based stream for one poll: a socket
/// that would block is `WouldBlock`, with the task's waker armed.
struct SyncIo<'a, 'b> {
    io: &'a mut TcpStream,
    cx: &'a mut Context<'b>,
}

impl Read for SyncIo<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_read(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for SyncIo<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsStream {
    /// A connection whose session (handshaken or not) is `session`: a new
    /// one, or one another shard gave up with [`TlsStream::into_parts`].
    pub(crate) fn from_parts(io: TcpStream, session: Box<ServerConnection>) -> TlsStream {
        TlsStream { io, session }
    }

    /// The socket and the session, to move to another shard.
    pub(crate) fn into_parts(self) -> (TcpStream, Box<ServerConnection>) {
        (self.io, self.session)
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.io
    }

    /// Write the ciphertext rustls holds; ready once it is all in the kernel.
    fn poll_write_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.session.wants_write() {
            let mut io = SyncIo {
                io: &mut self.io,
                cx,
            };
            match self.session.write_tls(&mut io) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Read ciphertext once and process it; `Ok(0)` at the end of the stream.
    fn poll_read_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut io = SyncIo {
            io: &mut self.io,
            cx,
        };
        let n = match self.session.read_tls(&mut io) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if let Err(error) = self.session.process_new_packets() {
            // rustls queued an alert saying why: send it if the socket takes it.
            let _ = self.poll_write_tls(cx);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
        }
        Poll::Ready(Ok(n))
    }

    /// Drive the handshake to its end.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_write_tls(cx))?;
            if !self.session.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if ready!(self.poll_read_tls(cx))? == 0 {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.session.reader().read(buf) {
                // Ok(0): the peer's close_notify.
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The stream ended without a close_notify: an end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(0)),
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Records processed may have produced some to send (a key
            // update's answer, an alert): they go out when the socket takes
            // them, without holding up the read.
            if this.session.wants_write() {
                if let Poll::Ready(Err(e)) = this.poll_write_tls(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            if ready!(this.poll_read_tls(cx))? == 0 {
                // rustls now knows of the end; the reader says how it ended.
                continue;
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // No new plaintext while earlier ciphertext waits for the socket.
        ready!(this.poll_write_tls(cx))?;
        let n = this.session.writer().write(buf)?;
        if let Poll::Ready(Err(e)) = this.poll_write_tls(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.session.writer().flush()?;
        this.poll_write_tls(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.session.is_handshaking() {
            // Queued once: a second call finds only its ciphertext, if any left.
            this.session.send_close_notify();
        }
        // A peer that reads nothing does not hold the close up: the
        // socket's write timeout, or the caller's race, ends it.
        ready!(this.poll_write_tls(cx))?;
        Pin::new(&mut this.io).poll_close(cx)
    }
}

/// Why an accepted connection is not a TLS connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AcceptError {
    #[error("plain HTTP on the TLS port (refused with 400)")]
    PlainHttp,
    #[error("no handshake within {0:?}")]
    Timeout(Duration),
    #[error("handshake failed: {0}")]
    Handshake(io::Error),
}

/// Accept a TLS connection by `tls`'s configuration. Peek at the first
/// byte: a client speaking plain HTTP is answered a short 400 and closed; a
/// TLS client is handshaken. Both within the handshake timeout, so a silent
/// client does not hold its slot.
pub(crate) async fn accept(io: TcpStream, tls: &TlsConfig) -> Result<TlsStream, AcceptError> {
    let timeout = tls.handshake_timeout;
    let deadline = Instant::now() + timeout;
    let accepting = async {
        let mut first = [0u8; 1];
        match io.peek(&mut first).await {
            Ok(1) if first[0] == HANDSHAKE_RECORD => {}
            Ok(1) => {
                // Its request head is read first: closing with unread bytes
                // would reset the connection, and the client could lose the
                // answer.
                let refusal = Response::new(400).body(
                    "text/plain; charset=UTF-8",
                    "This port speaks HTTPS: use https:// or wss://",
                );
                super::conn::answer_after_head(Stream::Plain(io), deadline, refusal).await;
                return Err(AcceptError::PlainHttp);
            }
            Ok(_) => return Err(AcceptError::Handshake(io::ErrorKind::UnexpectedEof.into())),
            Err(e) => return Err(AcceptError::Handshake(e.into())),
        }
        let mut session = ServerConnection::new(tls.rustls.clone())
            .map_err(|e| AcceptError::Handshake(io::Error::other(e)))?;
        session.set_buffer_limit(Some(SEND_BUFFER_LIMIT));
        let mut stream = TlsStream::from_parts(io, Box::new(session));
        poll_fn(|cx| stream.poll_handshake(cx))
            .await
            .map_err(AcceptError::Handshake)?;
        Ok(stream)
    };
    future::or(accepting, async {
        Timer::new(timeout).await;
        Err(AcceptError::Timeout(timeout))
    })
    .await
}
