//! The WebSocket transport: the handshake, WebSocket-only sessions, the
//! probe and upgrade of a polling session, then frames both ways.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use bytes::BytesMut;
use futures_lite::io::{AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::Timer;

use super::buffers::{self, Chunk};
use super::deflated::Deflating;
use super::flusher::send_one_packet;
use super::mesh::Handoff;
use super::per_ip::IpSlot;
use super::polling::{open_session, EngineResponse};
use super::ring::{self, Registration};
use super::state::Shard;
use super::stream::Stream;
use super::tls::TlsStream;
use crate::engine::SessionEntry;
use crate::engineio::session::{CloseReason, UpgradeStep};
use crate::engineio::{
    Data, EngineQuery, ErrorCode, Packet, ProtocolVersion, Sid, TransportKind, WsFrame,
};
use crate::http::request::Request;
use crate::http::response::Response;
use crate::panics::CatchUnwind;
use crate::signal::Listener;
use crate::ws::codec::{self, Decoder, Message, WsError};
use crate::ws::handshake;

/// A WebSocket connection after its handshake. Waiting for its peer, it
/// owns no buffer: reads borrow the shard's read buffer, and writes a buffer
/// from the shard's pool until they are written (see `buffers`).
struct WsConn {
    /// The shard's readiness ring watching `stream` for reads (a plain
    /// connection, when the ring is there). Declared before `stream` so it
    /// drops first: its poll must be removed before the descriptor closes.
    watched: Option<Registration>,
    stream: Stream,
    /// The start of a frame still incomplete; empty, with no allocation,
    /// between frames.
    inbox: BytesMut,
    /// Frames to write: a pool buffer while there are any.
    wbuf: Vec<u8>,
    decoder: Decoder,
    version: ProtocolVersion,
    /// permessage-deflate, when negotiated.
    deflate: Option<Deflating>,
}

enum Wake {
    Read(std::io::Result<Chunk>),
    Changed,
}

/// An incomplete frame kept in an allocation this many times its size is
/// copied into a smaller one.
const INBOX_SLACK: usize = 4;

/// The writer takes packets from the outbox until its buffer holds this
/// much (and at least one packet), writes them, then takes more. So a
/// connection holds at most its byte budget (the outbox and the bytes taken
/// and not yet written count against it) and a batch is one `send`.
pub(super) const WRITE_BATCH: usize = 64 * 1024;

/// How a write that races its session's close ended.
enum Flushed {
    Written,
    /// The peer closed or reset the connection.
    PeerGone,
    /// The session is closed and its peer did not read before the
    /// session's write deadline.
    GaveUp,
}

impl WsConn {
    /// The write buffer, taken from the shard's pool if the connection has none.
    fn out(&mut self) -> &mut Vec<u8> {
        if self.wbuf.capacity() == 0 {
            self.wbuf = buffers::take_write();
        }
        &mut self.wbuf
    }

    /// Write what is buffered, then give the buffer back to the pool.
    async fn flush(&mut self) -> bool {
        let ok = self.wbuf.is_empty()
            || (self.stream.write_all(&self.wbuf).await.is_ok()
                && self.stream.flush().await.is_ok());
        buffers::give_write(std::mem::take(&mut self.wbuf));
        ok
    }

    /// Write what is buffered, racing the session (see [`WriteRacing`]),
    /// then give the buffer back to the pool.
    async fn flush_racing(&mut self, entry: &SessionEntry) -> Flushed {
        let outcome = WriteRacing {
            stream: &mut self.stream,
            bytes: &self.wbuf,
            entry,
            written: 0,
            race: None,
        }
        .await;
        buffers::give_write(std::mem::take(&mut self.wbuf));
        outcome
    }

    /// Drop the connection abortively (see [`reset_on_close`]).
    fn abort(&mut self) {
        reset_on_close(&self.stream);
    }

    /// Frame `packet` into the write buffer. It is taken by value, each kind
    /// dropped in its own arm: a broadcast's text is a refcount, and the
    /// generic drop of a `Packet` cost more than the rest of this.
    fn push_packet(&mut self, packet: Packet) {
        let version = self.version;
        if let (Some(mut deflating), Packet::Message(data)) = (self.deflate, &packet) {
            let compressed = deflating.push(data, version, self.out());
            self.deflate = Some(deflating);
            if compressed {
                return;
            }
        }
        frame_packet(packet, version, self.out());
    }

    /// Send the outbox's only packet of an open session, when it is a text
    /// message framed once (an ack, a broadcast's text), from that frame
    /// with one nonblocking `send`, as the shard's flusher does: no write
    /// buffer is taken and nothing copied, unless the socket takes less
    /// than all of it (the rest is buffered, for [`WsConn::flush_racing`],
    /// which also finds a failed connection). Any other lone packet is
    /// framed into the write buffer. False, with nothing taken, when the
    /// outbox does not hold one packet to write now. For a
    /// [`WsConn::parkable`] connection only (plain, no compression, nothing
    /// buffered before it).
    fn send_lone_frame(&mut self, entry: &SessionEntry) -> bool {
        let mut session = entry.session.borrow_mut();
        if session.outbox_len() != 1 || session.is_closed() {
            return false;
        }
        // The writer's own descriptor, open while `self.stream` is (the
        // condition `send_nonblocking`'s system call relies on).
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.stream);
        // Not `self.out()`: a pool buffer taken here would stay with the
        // connection when the socket takes the whole frame (the usual
        // case), since no flush follows to give it back.
        send_one_packet(&mut session, fd, &mut self.wbuf).is_some()
    }

    /// Whether the shard's flusher may write for this connection while its
    /// writer waits: a plain connection (a nonblocking `send` is all a write
    /// takes) without compression (whose state is the writer's), with
    /// nothing held.
    fn parkable(&self) -> bool {
        matches!(self.stream, Stream::Plain(_)) && self.deflate.is_none() && self.wbuf.is_empty()
    }

    async fn close(&mut self, code: u16) {
        codec::encode_close(code, "", self.out());
        self.flush().await;
        let _ = self.stream.close().await;
    }

    /// Wait for bytes from the peer or a change of the session.
    /// While the shard takes no input (its backlog for the other shards is
    /// over its limit), only a change of the session or the end of the
    /// pause wakes it: the peer's frames wait in the kernel.
    async fn wait(&mut self, entry: &SessionEntry, shard: &Shard) -> Wake {
        let mut listen = entry.io_changed.listen();
        let mut resumed = shard.mesh.get().map(|mesh| mesh.input_resumed.listen());
        let paused = shard.input_paused();
        let stream = &mut self.stream;
        let watched = self.watched.as_ref();
        poll_fn(|cx| {
            if paused {
                if let Some(resumed) = &mut resumed {
                    if Pin::new(resumed).poll(cx).is_ready() {
                        return Poll::Ready(Wake::Changed);
                    }
                }
            } else if let Poll::Ready(read) = buffers::poll_read(stream, watched, cx) {
                return Poll::Ready(Wake::Read(read));
            }
            Pin::new(&mut listen).poll(cx).map(|()| Wake::Changed)
        })
        .await
    }

    /// The next complete message: from the incomplete frame kept from earlier
    /// reads, then from `fresh`, bytes just read. `fresh` is moved past what
    /// is used; a frame that cannot be completed yet is kept.
    ///
    /// Inlined for its first test: all read bytes used, the usual end of a
    /// read's loop, costs no call.
    #[inline]
    fn next_message(&mut self, fresh: &mut &[u8]) -> Result<Option<Message>, WsError> {
        if self.inbox.is_empty() && fresh.is_empty() {
            return Ok(None);
        }
        self.decode_next(fresh)
    }

    /// [`WsConn::next_message`] once there are bytes to look at.
    fn decode_next(&mut self, fresh: &mut &[u8]) -> Result<Option<Message>, WsError> {
        if self.inbox.is_empty() {
            // The usual case: whole frames, decoded where they were read.
            let message = self.decoder.decode_from(fresh)?;
            if message.is_none() {
                self.keep(fresh);
            }
            return Ok(message);
        }
        self.keep(fresh);
        let message = self.decoder.decode(&mut self.inbox)?;
        if self.inbox.is_empty() {
            self.inbox = BytesMut::new();
        } else if message.is_none() && self.inbox.capacity() > INBOX_SLACK * self.inbox.len() {
            self.inbox = BytesMut::from(&self.inbox[..]);
        }
        Ok(message)
    }

    /// Keep bytes not used yet for the next read.
    fn keep(&mut self, fresh: &mut &[u8]) {
        if !fresh.is_empty() {
            self.inbox.extend_from_slice(fresh);
            *fresh = &[];
        }
    }

    /// Decode one Engine.IO packet from a complete WebSocket message.
    fn packet(&self, message: Message) -> Result<Option<Packet>, CloseReason> {
        match message {
            Message::Text(text) => Packet::decode_ws_text(self.version, text)
                .map(Some)
                .map_err(|_| CloseReason::ParseError),
            Message::Binary(bytes) => Packet::decode_ws_binary(self.version, bytes)
                .map(Some)
                .map_err(|_| CloseReason::ParseError),
            _ => Ok(None),
        }
    }
}

/// Frame `packet` uncompressed into `out`, dropping each kind in its own
/// arm: a broadcast's text is a refcount, and the generic drop of a
/// `Packet` cost more than the rest of this. Always inlined: the
/// flusher calls it from two places, and out of line the call cost 26
/// instructions per delivery in a closed-loop fanout.
#[inline(always)]
pub(super) fn frame_packet(packet: Packet, version: ProtocolVersion, out: &mut Vec<u8>) {
    // Messages go straight into the write buffer: no per-recipient allocation.
    match (packet, version) {
        (Packet::Message(Data::Text(text)), _) => match text.ws_message_frame() {
            // Framed once for all its recipients.
            Some(frame) => out.extend_from_slice(frame),
            None => codec::encode_parts(true, &[b"4", text.as_bytes()], out),
        },
        (Packet::Message(Data::Binary(bytes)), ProtocolVersion::V4) => {
            codec::encode_binary(&bytes, out)
        }
        (Packet::Message(Data::Binary(bytes)), ProtocolVersion::V3) => {
            codec::encode_parts(false, &[&[4], &bytes], out)
        }
        (other, _) => match other.encode_ws(version) {
            WsFrame::Text(text) => codec::encode_text(text.as_bytes(), out),
            WsFrame::Binary(bytes) => codec::encode_binary(&bytes, out),
        },
    }
}

/// A writer parked for the shard's flusher (see `super::flusher`), until
/// dropped: also when the task is dropped or unwinds in its wait, so the
/// flusher never writes to a descriptor the connection no longer owns.
struct Parked<'a>(&'a SessionEntry);

impl Parked<'_> {
    fn new<'a>(entry: &'a SessionEntry, stream: &Stream) -> Parked<'a> {
        entry.park_writer(std::os::fd::AsRawFd::as_raw_fd(stream));
        Parked(entry)
    }

    /// The writer runs again: what the flusher could not write, to write first.
    fn unpark(self) -> Vec<u8> {
        let entry = self.0;
        // Unparked here: the drop would unpark a second time.
        std::mem::forget(self);
        entry.unpark_writer()
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        drop(self.0.unpark_writer());
    }
}

/// Writes `bytes`, racing the session: while the peer does not read, a
/// closed session's writer waits only until the session's write deadline,
/// then gives up. An open session's writer waits as long as the session
/// lives: its limits (the byte budget, the heartbeat) close a client that
/// stops reading, and that close wakes the writer.
///
/// glommio's writes are readiness-based like its reads (a `send` that would
/// block arms a poll and keeps no reference to the buffer), so giving up a
/// write loses nothing but the bytes not written. Nothing is set up for
/// the race until a write would block: most writes complete at once.
struct WriteRacing<'a> {
    stream: &'a mut Stream,
    bytes: &'a [u8],
    entry: &'a SessionEntry,
    written: usize,
    /// Set up once a write would block.
    race: Option<Race<'a>>,
}

struct Race<'a> {
    listen: Listener<'a>,
    /// Armed at the session's write deadline once it is closed.
    timer: Option<Timer>,
}

impl Future for WriteRacing<'_> {
    type Output = Flushed;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Flushed> {
        let this = self.get_mut();
        loop {
            while this.written < this.bytes.len() {
                match Pin::new(&mut *this.stream).poll_write(cx, &this.bytes[this.written..]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        return Poll::Ready(Flushed::PeerGone)
                    }
                    Poll::Ready(Ok(n)) => this.written += n,
                    Poll::Pending => break,
                }
            }
            if this.written == this.bytes.len() {
                // Under TLS, written means in the kernel, not in rustls.
                match Pin::new(&mut *this.stream).poll_flush(cx) {
                    Poll::Ready(Ok(())) => return Poll::Ready(Flushed::Written),
                    Poll::Ready(Err(_)) => return Poll::Ready(Flushed::PeerGone),
                    Poll::Pending => {}
                }
            }
            // The peer is not reading. Listen before looking at the
            // session, so that no change after the look is missed.
            let entry = this.entry;
            let race = this.race.get_or_insert_with(|| Race {
                listen: entry.io_changed.listen(),
                timer: None,
            });
            let deadline = entry.session.borrow().write_deadline();
            if let Some(deadline) = deadline {
                let now = Instant::now();
                if now >= deadline {
                    return Poll::Ready(Flushed::GaveUp);
                }
                // Deadlines only move earlier, and an earlier one comes
                // with a change signal.
                let timer = race.timer.get_or_insert_with(|| Timer::new(deadline - now));
                if Pin::new(timer).poll(cx).is_ready() {
                    return Poll::Ready(Flushed::GaveUp);
                }
            }
            match Pin::new(&mut race.listen).poll(cx) {
                // The session changed (closed, say): look again.
                Poll::Ready(()) => race.listen = entry.io_changed.listen(),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Make the close of `stream` abortive: with `SO_LINGER` 0 it sends a
/// reset and frees the socket's send buffer at once. For a peer that does
/// not read, a `shutdown` would queue the FIN behind bytes it is not
/// reading, so it would not learn of the close, and the kernel would keep
/// the socket and its buffer (up to megabytes) until its orphan retries ran
/// out.
pub(crate) fn reset_on_close(stream: &Stream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a descriptor the stream owns, with a pointer to
    // a local of the size passed.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Close the stream, waiting at most `timeout` for it: over TLS a close
/// writes a close_notify record, which a peer that reads nothing (its
/// window full) would hold up forever, with the descriptor and rustls's
/// buffers. Past the timeout the connection is reset.
async fn close_within(conn: &mut WsConn, timeout: std::time::Duration) {
    let _ = conn.stream.set_write_timeout(Some(timeout));
    if conn.stream.close().await.is_err() {
        reset_on_close(&conn.stream);
    }
}

/// An upgrade request arriving on the shard that owns its session (or a new
/// WebSocket-only session).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve(
    shard: Rc<Shard>,
    endpoint: usize,
    mut stream: Stream,
    peer: SocketAddr,
    request: Request,
    query: EngineQuery,
    leftover: BytesMut,
    slot: IpSlot,
) {
    // Until the session's writer runs (it races the session), no write
    // waits longer than a heartbeat for a peer that reads nothing.
    let _ = stream.set_write_timeout(Some(shard.write_timeout()));
    let config = &shard.endpoints[endpoint].config;
    let accepted = match handshake::accept(&request, config.deflate.is_some()) {
        Ok(accepted) => accepted,
        Err(_) => return refuse(stream, ErrorCode::BadRequest).await,
    };
    let deflate = match (accepted.deflate, config.deflate) {
        (Some(agreed), Some(deflate)) => Some(Deflating {
            threshold: deflate.threshold,
            window_bits: agreed.server_window_bits,
            plain_binary: false,
        }),
        _ => None,
    };
    let existing = match &query.sid {
        Some(raw) => {
            let entry = Sid::parse(raw).and_then(|sid| shard.session(endpoint, &sid));
            match entry {
                Some(entry) => Some(entry),
                None => return refuse(stream, ErrorCode::UnknownSid).await,
            }
        }
        None => None,
    };
    if stream.write_all(&accepted.response).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    let max_payload = shard.endpoints[endpoint].config.session.max_payload as usize;
    let decoder = match deflate {
        Some(_) => Decoder::with_inflate(max_payload),
        None => Decoder::new(max_payload),
    };
    let mut conn = WsConn {
        watched: ring::register(&stream),
        stream,
        // Bytes the client sent right behind its request (rare), in an
        // allocation of their own size.
        inbox: BytesMut::from(&leftover[..]),
        wbuf: Vec::new(),
        decoder,
        version: query.version,
        deflate,
    };
    let entry = match existing {
        Some(entry) => {
            if entry.session.borrow().version() != query.version {
                conn.close(1002).await;
                return;
            }
            let attempt = entry.session.borrow_mut().begin_upgrade(Instant::now());
            let Ok(attempt) = attempt else {
                conn.close(1000).await;
                return;
            };
            entry.rearm_timer();
            if !probe(&shard, endpoint, &mut conn, &entry, attempt).await {
                entry.session.borrow_mut().abort_upgrade(attempt);
                shard.settle_contained(endpoint, &entry);
                conn.close(1000).await;
                return;
            }
            entry
        }
        None => {
            if !shard.admit_session() {
                // Full: the client sees the WebSocket close at once.
                conn.close(1013).await;
                return;
            }
            let target = request.target.clone();
            let entry = open_session(
                &shard,
                endpoint,
                &query,
                &target,
                request.headers,
                peer,
                TransportKind::WebSocket,
            );
            // A v3 session holds its open packet until the client answers
            // this ping, so that the packet never comes in the read that
            // brings the 101 (see `V3_WEBSOCKET_OPEN_HOLD`).
            if entry.session.borrow().holds_first_write() {
                codec::encode_ping(b"", conn.out());
            }
            entry
        }
    };
    let _ = conn.stream.set_write_timeout(None);
    // The session's long life runs in a task of its own, which holds the
    // connection and no state of the handshake (nor of the HTTP task).
    // A panic while serving it closes this session and connection only.
    glommio::spawn_local(async move {
        // The connection's place in its address's count, until it closes.
        let _slot = slot;
        let ran = CatchUnwind::new(run(&shard, endpoint, &mut conn, &entry)).await;
        if let Err(panic) = ran {
            tracing::error!(sid = entry.sid.as_str(), %panic, "closing a WebSocket whose task panicked");
            entry
                .session
                .borrow_mut()
                .close(CloseReason::ForcedClose, Instant::now());
            shard.settle_contained(endpoint, &entry);
        }
        shard.forget(endpoint, &entry);
    })
    .detach();
}

/// Answer an upgrade request with an Engine.IO error instead of upgrading.
async fn refuse(mut stream: Stream, code: ErrorCode) {
    let answer = EngineResponse::error(code);
    let mut out = Vec::new();
    Response::new(answer.status)
        .body(answer.content_type, answer.body)
        .write_to(false, &mut out);
    let _ = stream.write_all(&out).await;
    let _ = stream.close().await;
}

/// A WebSocket handed over by another shard.
pub(crate) async fn adopt(shard: Rc<Shard>, handoff: Handoff) {
    let raw = std::os::fd::IntoRawFd::into_raw_fd(handoff.fd);
    // SAFETY: the descriptor was duplicated for us and is owned by nothing else.
    let stream = unsafe { <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let stream = match handoff.tls {
        Some(session) => Stream::Tls(TlsStream::from_parts(stream, session)),
        None => Stream::Plain(stream),
    };
    serve(
        shard,
        handoff.endpoint,
        stream,
        handoff.peer,
        handoff.request,
        handoff.query,
        handoff.leftover,
        handoff.slot,
    )
    .await;
}

/// Drive the probe of upgrade `attempt`; true once the session moved here.
async fn probe(
    shard: &Rc<Shard>,
    endpoint: usize,
    conn: &mut WsConn,
    entry: &Rc<SessionEntry>,
    attempt: u32,
) -> bool {
    let mut chunk: Option<Chunk> = None;
    loop {
        let mut fresh: &[u8] = chunk.as_deref().unwrap_or_default();
        loop {
            let message = match conn.next_message(&mut fresh) {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(_) => return false,
            };
            if let Message::Ping(payload) = &message {
                codec::encode_pong(payload, conn.out());
                continue;
            }
            if matches!(message, Message::Close(_)) {
                return false;
            }
            let packet = match conn.packet(message) {
                Ok(Some(packet)) => packet,
                Ok(None) => continue,
                Err(_) => return false,
            };
            let step = entry
                .session
                .borrow_mut()
                .on_upgrade_packet(attempt, packet);
            match step {
                UpgradeStep::Reply(reply) => {
                    conn.push_packet(reply);
                    // A parked GET can now be released with a noop.
                    shard.settle_contained(endpoint, entry);
                }
                UpgradeStep::Upgraded => {
                    // Frames behind the upgrade packet are the session's.
                    conn.keep(&mut fresh);
                    drop(chunk);
                    shard.settle_contained(endpoint, entry);
                    return conn.flush().await;
                }
                UpgradeStep::Abort => return false,
                UpgradeStep::Ignore => {}
            }
        }
        // The read buffer goes back to the shard before anything awaits.
        drop(chunk.take());
        if !conn.flush().await {
            return false;
        }
        if !entry.session.borrow().upgrade_pending(attempt) {
            return false;
        }
        match conn.wait(entry, shard).await {
            Wake::Read(Ok(read)) if !read.is_empty() => chunk = Some(read),
            Wake::Read(_) => return false,
            Wake::Changed => {}
        }
    }
}

/// The writer of a closed session whose peer stopped reading: the
/// connection is reset, the session dropped (the caller forgets it).
fn give_up(conn: &mut WsConn, entry: &SessionEntry) {
    tracing::debug!(
        sid = entry.sid.as_str(),
        reason = ?entry.session.borrow().close_reason(),
        "resetting a connection whose peer does not read"
    );
    conn.abort();
    entry.session.borrow_mut().abandon();
}

/// The session lives on this WebSocket: write its outbox, feed it frames.
async fn run(shard: &Rc<Shard>, endpoint: usize, conn: &mut WsConn, entry: &Rc<SessionEntry>) {
    let mut close_code = 1000;
    let mut peer_gone = false;
    let mut chunk: Option<Chunk> = None;
    // The last read filled the read buffer: the peer may have more waiting.
    let mut read_full = false;
    loop {
        // Frames kept from before (e.g. sent right after the upgrade) come first.
        let mut fresh: &[u8] = chunk.as_deref().unwrap_or_default();
        loop {
            let message = match conn.next_message(&mut fresh) {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(error) => {
                    close_code = error.close_code();
                    let reason = match error {
                        WsError::TooBig => CloseReason::TransportError,
                        _ => CloseReason::ParseError,
                    };
                    entry.session.borrow_mut().close(reason, Instant::now());
                    break;
                }
            };
            match message {
                Message::Ping(payload) => codec::encode_pong(&payload, conn.out()),
                Message::Pong(_) => entry.session.borrow_mut().on_ws_pong(),
                Message::Close(_) => {
                    entry
                        .session
                        .borrow_mut()
                        .on_transport_closed(Instant::now());
                    break;
                }
                other => match conn.packet(other) {
                    Ok(Some(packet)) => entry
                        .session
                        .borrow_mut()
                        .on_packets([packet], Instant::now()),
                    Ok(None) => {}
                    Err(_) => {
                        close_code = 1002;
                        entry.session.borrow_mut().on_parse_error(Instant::now());
                        break;
                    }
                },
            }
            if entry.session.borrow().is_closed() {
                break;
            }
        }
        // Nothing read is left behind in the shard's read buffer.
        conn.keep(&mut fresh);
        drop(chunk.take());
        shard.settle(endpoint, entry);
        // A lone framed message (an ack, say) goes to the socket from its
        // own frame; anything else is taken a batch at a time: what the
        // writer holds counts against the session's byte budget until it is
        // written.
        let sent_alone = conn.parkable() && conn.send_lone_frame(entry);
        if !sent_alone {
            entry.session.borrow_mut().take_ws_batch(|packet| {
                conn.push_packet(packet);
                conn.wbuf.len() < WRITE_BATCH
            });
        }
        let finished = entry.session.borrow().is_finished();
        if finished {
            if entry.session.borrow().close_reason() == Some(CloseReason::PacketRateExceeded) {
                // Policy violation: the client sent packets too fast.
                close_code = 1008;
            }
            if peer_gone {
                close_within(conn, shard.write_timeout()).await;
                return;
            }
            codec::encode_close(close_code, "", conn.out());
            match conn.flush_racing(entry).await {
                Flushed::GaveUp => give_up(conn, entry),
                Flushed::Written | Flushed::PeerGone => {
                    close_within(conn, shard.write_timeout()).await;
                }
            }
            return;
        }
        let flushed = if sent_alone && conn.wbuf.is_empty() {
            // The socket took it all: no write to wait for.
            Flushed::Written
        } else {
            conn.flush_racing(entry).await
        };
        match flushed {
            Flushed::Written => {
                entry.session.borrow_mut().on_ws_written();
                entry.sync_buffered_gauge();
            }
            Flushed::PeerGone => {
                entry
                    .session
                    .borrow_mut()
                    .on_transport_closed(Instant::now());
                peer_gone = true;
                continue;
            }
            Flushed::GaveUp => return give_up(conn, entry),
        }
        if entry.session.borrow().has_ws_packets() {
            continue;
        }
        if std::mem::take(&mut read_full) {
            // A peer that sends without pause keeps its reads full, and a
            // read of bytes already there does not wait: without this the
            // task would never give the shard's other tasks (the flusher,
            // other connections) their turn. Then what they queued here
            // meanwhile is taken above before the wait listens for more.
            futures_lite::future::yield_now().await;
            continue;
        }
        // While it waits, the flusher writes what sends queue (one task
        // for every recipient of a broadcast rather than a wake of each).
        let parked = conn.parkable().then(|| Parked::new(entry, &conn.stream));
        let woke = conn.wait(entry, shard).await;
        if let Some(parked) = parked {
            let unwritten = parked.unpark();
            if !unwritten.is_empty() {
                // Before anything this round adds (a pong, say). The writer
                // parked with no buffer.
                debug_assert_eq!(conn.wbuf.capacity(), 0);
                conn.wbuf = unwritten;
            }
        }
        match woke {
            Wake::Read(Ok(read)) if !read.is_empty() => {
                read_full = read.is_full();
                chunk = Some(read);
            }
            Wake::Read(_) => {
                entry
                    .session
                    .borrow_mut()
                    .on_transport_closed(Instant::now());
                peer_gone = true;
            }
            Wake::Changed => {}
        }
    }
}
