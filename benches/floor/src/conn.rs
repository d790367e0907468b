//! One client connection: the HTTP upgrade, then one task that reads frames
//! and writes what is queued for the connection.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::task::{Poll, Waker};

use bytes::{Buf, Bytes};
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::frame::{self, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
use crate::relay::{self, Shard, MAX_PAYLOAD};

const MAX_HEAD: usize = 8 << 10;
const INITIAL_BUF: usize = 4 << 10;
/// Frames handed to one `sendmsg`.
const MAX_IOV: usize = 64;

pub struct Conn {
    pub id: u64,
    /// Frames to write, in order; shared with every other recipient.
    out: RefCell<VecDeque<Bytes>>,
    /// The connection's task, when it waits for something to write.
    waker: Cell<Option<Waker>>,
    /// The last delivery this connection got (see `Shard::deliver`).
    pub mark: Cell<u64>,
    /// Keys of the rooms it is in.
    pub rooms: RefCell<Vec<Box<str>>>,
}

impl Conn {
    pub fn new(id: u64) -> Conn {
        Conn {
            id,
            out: RefCell::default(),
            waker: Cell::new(None),
            mark: Cell::new(0),
            rooms: RefCell::default(),
        }
    }

    pub fn sid(&self) -> String {
        format!("{:016x}", self.id)
    }

    /// Queue a frame and wake the writer.
    pub fn push(&self, frame: Bytes) {
        self.out.borrow_mut().push_back(frame);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    #[cfg(test)]
    pub fn take_queued(&self) -> Vec<Bytes> {
        self.out.take().into()
    }

    /// Drop the first `n` written bytes from the queue.
    fn consume(&self, mut n: usize) {
        let mut out = self.out.borrow_mut();
        while n > 0 {
            let front = out.front_mut().expect("wrote more than was queued");
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            out.pop_front();
        }
    }

    /// Completes when something is queued.
    async fn queued(&self) {
        poll_fn(|cx| {
            if self.out.borrow().is_empty() {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }

    /// Write everything queued: one `sendmsg` per batch of frames, straight
    /// from the shared buffers. When the socket is full, glommio's `write`
    /// waits for room.
    async fn flush(&self, stream: &mut TcpStream) -> io::Result<()> {
        loop {
            let sent = {
                let out = self.out.borrow();
                if out.is_empty() {
                    return Ok(());
                }
                let empty = libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                };
                let mut iov = [empty; MAX_IOV];
                let mut count = 0;
                for (slot, bytes) in iov.iter_mut().zip(out.iter()) {
                    slot.iov_base = bytes.as_ptr() as *mut libc::c_void;
                    slot.iov_len = bytes.len();
                    count += 1;
                }
                // SAFETY: zeroed is a valid msghdr; the iovecs point into
                // frames the queue holds, which nothing touches until sendmsg returns.
                unsafe {
                    let mut msg: libc::msghdr = std::mem::zeroed();
                    msg.msg_iov = iov.as_mut_ptr();
                    msg.msg_iovlen = count as _;
                    libc::sendmsg(
                        stream.as_raw_fd(),
                        &msg,
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                }
            };
            if sent >= 0 {
                self.consume(sent as usize);
                continue;
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    let front = self.out.borrow().front().cloned().expect("not empty");
                    let n = stream.write(&front).await?;
                    self.consume(n);
                }
                _ => return Err(error),
            }
        }
    }
}

/// Bytes read from the socket: `data[lo..hi]` is not parsed yet.
struct ReadBuf {
    data: Vec<u8>,
    lo: usize,
    hi: usize,
}

impl ReadBuf {
    fn pending(&mut self) -> &mut [u8] {
        &mut self.data[self.lo..self.hi]
    }

    /// Read more; `Ok(0)` at end of stream.
    async fn fill(&mut self, stream: &mut TcpStream) -> io::Result<usize> {
        if self.lo == self.hi {
            (self.lo, self.hi) = (0, 0);
            if self.data.len() > 64 << 10 {
                // A big frame is done: do not keep its buffer per connection.
                self.data = vec![0; INITIAL_BUF];
            }
        }
        if self.hi == self.data.len() {
            if self.lo > 0 {
                self.data.copy_within(self.lo..self.hi, 0);
                (self.lo, self.hi) = (0, self.hi - self.lo);
            } else {
                // Never more than one frame of the largest size plus its header.
                let len = (self.data.len() * 2).min(MAX_PAYLOAD + 14);
                if len == self.data.len() {
                    return Err(io::ErrorKind::InvalidData.into());
                }
                self.data.resize(len, 0);
            }
        }
        let n = stream.read(&mut self.data[self.hi..]).await?;
        self.hi += n;
        Ok(n)
    }
}

pub async fn serve(shard: Rc<Shard>, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = ReadBuf {
        data: vec![0; INITIAL_BUF],
        lo: 0,
        hi: 0,
    };
    let Some((head, accept)) = handshake(&mut stream, &mut buf).await else {
        return;
    };
    let Some(accept) = accept else {
        let refuse = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let _ = stream.write_all(refuse).await;
        let _ = stream.close().await;
        return;
    };
    buf.lo = head;
    let conn = shard.open();
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    conn.push(Bytes::from(response));
    conn.push(relay::open_packet(&shard, &conn));
    run(&shard, &conn, &mut stream, &mut buf).await;
    shard.close(&conn);
}

/// Read the request head; `None` if the peer went away or sent no HTTP,
/// else its length and the `Sec-WebSocket-Accept` value if it is a
/// WebSocket upgrade of Engine.IO v4.
async fn handshake(stream: &mut TcpStream, buf: &mut ReadBuf) -> Option<(usize, Option<String>)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf.data[..buf.hi]) {
            Ok(httparse::Status::Complete(len)) => return Some((len, upgrade(&request))),
            Ok(httparse::Status::Partial) if buf.hi < MAX_HEAD => {}
            _ => return Some((buf.hi, None)),
        }
        if buf.fill(stream).await.ok()? == 0 {
            return None;
        }
    }
}

fn upgrade(request: &httparse::Request) -> Option<String> {
    let (path, query) = request.path?.split_once('?')?;
    let param = |name: &str| {
        query.split('&').find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v)
        })
    };
    if request.method != Some("GET")
        || !(path == "/socket.io/" || path == "/socket.io")
        || param("EIO") != Some("4")
        || param("transport") != Some("websocket")
    {
        return None;
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let is = |value: Option<&[u8]>, want: &str| {
        value.is_some_and(|v| v.eq_ignore_ascii_case(want.as_bytes()))
    };
    if !is(header("upgrade"), "websocket") || !is(header("sec-websocket-version"), "13") {
        return None;
    }
    let key = header("sec-websocket-key")?;
    Some(tungstenite::handshake::derive_accept_key(key))
}

enum Wake {
    Read(io::Result<usize>),
    Queued,
}

/// Write what is queued, read and handle frames, until either side closes.
async fn run(shard: &Shard, conn: &Rc<Conn>, stream: &mut TcpStream, buf: &mut ReadBuf) {
    // A text message split over several frames.
    let mut fragments: Option<Vec<u8>> = None;
    loop {
        // Frames first: some may have come with the request head.
        loop {
            let (frame, used) = match frame::parse(buf.pending(), MAX_PAYLOAD) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break,
                Err(_) => return,
            };
            let at = buf.lo;
            buf.lo += used;
            let payload = &buf.data[at + frame.start..at + frame.end];
            match (frame.opcode, &mut fragments) {
                (OP_TEXT, None) if frame.fin => {
                    if !message(shard, conn, payload) {
                        return;
                    }
                }
                (OP_TEXT, None) => fragments = Some(payload.to_vec()),
                (OP_CONTINUATION, Some(message_so_far)) => {
                    if message_so_far.len() + payload.len() > MAX_PAYLOAD {
                        return;
                    }
                    message_so_far.extend_from_slice(payload);
                    if frame.fin {
                        let whole = fragments.take().expect("some");
                        if !message(shard, conn, &whole) {
                            return;
                        }
                    }
                }
                (OP_PING, _) => conn.push(frame::build(OP_PONG, &[payload])),
                (OP_PONG, _) => {}
                (OP_CLOSE, _) => {
                    // Echo the status code, then hang up once it is written.
                    conn.push(frame::build(OP_CLOSE, &[payload.get(..2).unwrap_or(&[])]));
                    let _ = conn.flush(stream).await;
                    let _ = stream.close().await;
                    return;
                }
                // Binary (text only here), or a fragment out of place.
                _ => return,
            }
        }
        if conn.flush(stream).await.is_err() {
            return;
        }
        let wake = future::or(async { Wake::Read(buf.fill(stream).await) }, async {
            conn.queued().await;
            Wake::Queued
        })
        .await;
        if let Wake::Read(Ok(0) | Err(_)) = wake {
            return;
        }
    }
}

/// Handle one whole text message; `false` closes the connection.
fn message(shard: &Shard, conn: &Rc<Conn>, payload: &[u8]) -> bool {
    match std::str::from_utf8(payload) {
        Ok(text) => relay::on_message(shard, conn, text).is_ok(),
        Err(_) => false,
    }
}
