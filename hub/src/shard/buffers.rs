//! IO buffers lent by the shard to a connection for the time of one read or
//! one write, so that a connection waiting for its peer owns none.
//!
//! glommio's unbuffered `TcpStream` reads are readiness-based: `poll_read`
//! either `recv`s into the buffer it is given, synchronously, or arms a poll
//! and keeps no reference to the buffer. So a read can borrow the shard's
//! read buffer for the length of one `poll_read`, and the caller handles the
//! bytes before it next awaits ([`Chunk`]); only an incomplete frame or
//! request is copied into memory the connection owns.
//!
//! Writes are encoded into a buffer taken from a small per-shard pool and
//! handed back once written ([`take_write`], [`give_write`]). A write the
//! kernel takes at once (the usual case) leaves the connection with nothing;
//! one that must wait keeps its buffer until the peer has read enough.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::AsyncRead;

use super::readiness::ReadReadiness;
use super::ring::Registration;
use super::stream::Stream;

/// The most one read takes: a whole burst of small frames, or a good part of
/// a large one, in one `recv`.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// Write buffers kept for reuse, per shard. More are allocated while many
/// connections wait for their peers, and freed as they finish.
const SPARE_WRITES: usize = 8;

/// A write buffer that grew past this is freed rather than kept.
const KEEP_WRITE_CAPACITY: usize = 256 * 1024;

thread_local! {
    static READ_BUF: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
    static WRITE_BUFS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Bytes just read, in the shard's read buffer. Handle them before the next
/// `await`: the buffer goes back to the shard when the chunk is dropped (held
/// longer, it only makes the next read allocate its own).
pub(crate) struct Chunk {
    buf: Option<Box<[u8]>>,
    len: usize,
}

impl Deref for Chunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.buf {
            Some(buf) => &buf[..self.len],
            None => &[],
        }
    }
}

impl Chunk {
    /// The read filled the whole buffer: the peer may have more waiting.
    pub(crate) fn is_full(&self) -> bool {
        self.buf.as_ref().is_some_and(|buf| self.len == buf.len())
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            READ_BUF.with(|slot| slot.set(Some(buf)));
        }
    }
}

fn take_read_buf() -> Box<[u8]> {
    READ_BUF
        .with(Cell::take)
        .unwrap_or_else(|| vec![0; READ_CHUNK].into_boxed_slice())
}

/// Poll for what the peer has sent: the bytes, an empty chunk at end of
/// stream, or an error. Nothing is read while pending, so dropping the
/// future between polls loses nothing. A connection the shard's readiness
/// ring watches (`watched`) reads when the ring says so, else through
/// glommio.
pub(crate) fn poll_read(
    stream: &mut Stream,
    watched: Option<&Registration>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<Chunk>> {
    // A watched connection asks the ring first: a reader that waits takes
    // no buffer (and gives none back).
    let watched = match watched {
        Some(watched) => match watched.poll_readable(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(ReadReadiness::Ready) => Some(watched),
            Poll::Ready(ReadReadiness::Unwatched) => None,
        },
        None => None,
    };
    let mut chunk = Chunk {
        buf: Some(take_read_buf()),
        len: 0,
    };
    let buf = chunk.buf.as_mut().expect("just taken");
    let read = match watched.and_then(|watched| watched.poll_recv(cx, buf)) {
        Some(read) => read,
        None => Pin::new(stream).poll_read(cx, buf),
    };
    match read {
        Poll::Ready(Ok(len)) => {
            chunk.len = len;
            Poll::Ready(Ok(chunk))
        }
        // Dropping the chunk gives the buffer back.
        Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
        Poll::Pending => Poll::Pending,
    }
}

/// Wait for what the peer sends next (see [`poll_read`]).
pub(crate) async fn read(stream: &mut Stream) -> io::Result<Chunk> {
    poll_fn(|cx| poll_read(stream, None, cx)).await
}

/// An empty write buffer, from the pool when it has one.
pub(crate) fn take_write() -> Vec<u8> {
    WRITE_BUFS
        .with(|pool| pool.borrow_mut().pop())
        .unwrap_or_default()
}

/// Give back a write buffer whose bytes are written (or no longer wanted).
pub(crate) fn give_write(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > KEEP_WRITE_CAPACITY {
        return;
    }
    buf.clear();
    WRITE_BUFS.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < SPARE_WRITES {
            pool.push(buf);
        }
    });
}
