//! One accepted TCP connection: read HTTP requests, route them to the
//! Engine.IO endpoint and the shard that owns their session, answer.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use futures_lite::future;
use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;
use glommio::timer::Timer;

use super::buffers;
use super::http_compression::{self, Compressed};
use super::mesh::{Handoff, Mesh};
use super::per_ip::IpSlot;
use super::polling::{self, EngineResponse, PollRequest};
use super::state::Shard;
use super::stream::Stream;
use super::websocket;
use crate::engineio::query::parse_query;
use crate::engineio::{ErrorCode, Sid, TransportKind};
use crate::http::compression;
use crate::http::request::{parse_request, HttpError, Method, Request};
use crate::http::response::Response;

enum ReadOutcome {
    Request(Request),
    /// The peer went away or stayed idle: close quietly.
    Closed,
    /// The request is bad or too slow: answer with this status and close.
    Refuse(u16),
}

/// Serve one connection; `slot` is its place in its address's count,
/// held for as long as the connection is open (a WebSocket's task, or the
/// shard it is handed to, takes it over).
pub(crate) async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr, slot: IpSlot) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(shard.write_timeout()));
    let Some(mut stream) = secure(&shard, stream, peer).await else {
        return;
    };
    let mut buf = BytesMut::new();
    let mut first = true;
    loop {
        let request = match read_request(&shard, &mut stream, &mut buf, first).await {
            ReadOutcome::Request(request) => request,
            ReadOutcome::Closed => return,
            ReadOutcome::Refuse(status) => {
                let mut out = buffers::take_write();
                Response::new(status).write_to(false, &mut out);
                let _ = write_answer(&mut stream, &out).await;
                buffers::give_write(out);
                let _ = stream.close().await;
                return;
            }
        };
        first = false;
        // A POST carries the client's packets (publishes, say): while the
        // shard's backlog for the other shards is over its limit, it waits.
        if request.method == Method::Post {
            shard.input_allowed().await;
        }
        let keep_alive = request.keep_alive();
        // Shutdown waits for requests in flight, so a last long poll is answered.
        let in_flight = InFlight::new(shard.clone());
        // A long poll may wait long: notice meanwhile if the client hangs up.
        // Boxed, as are the WebSocket paths below: a connection waiting
        // between requests then holds a task sized for reading only.
        let routed = Box::pin(async {
            let route = route(&shard, request, peer);
            let hangup = watch_hangup(&shard, &mut stream, &mut buf);
            future::or(async { Some(route.await) }, async {
                hangup.await;
                None
            })
            .await
        })
        .await;
        let Some(routed) = routed else {
            let _ = stream.close().await;
            return;
        };
        let response = match routed {
            Routed::Respond(response) => response,
            Routed::WebSocket(endpoint, request, query) => {
                drop(in_flight);
                Box::pin(websocket::serve(
                    shard, endpoint, stream, peer, request, query, buf, slot,
                ))
                .await;
                return;
            }
            Routed::HandOff(owner, endpoint, request, query) => {
                drop(in_flight);
                Box::pin(hand_off(
                    &shard, owner, endpoint, stream, peer, request, query, buf, slot,
                ))
                .await;
                return;
            }
        };
        // The answer is written from a buffer of the shard's: between
        // requests, the connection keeps none.
        let mut out = buffers::take_write();
        response.write_to(keep_alive, &mut out);
        let written = write_answer(&mut stream, &out).await;
        buffers::give_write(out);
        drop(in_flight);
        if !written {
            // Gone, or not reading within the write timeout.
            websocket::reset_on_close(&stream);
            return;
        }
        if !keep_alive {
            let _ = stream.close().await;
            return;
        }
    }
}

/// The connection as the HTTP loop reads it: plain, or (on a TLS listener)
/// once its handshake is done. None: a plain-HTTP client refused, or a
/// client that did not finish its handshake in time; it is closed.
async fn secure(shard: &Shard, stream: TcpStream, peer: SocketAddr) -> Option<Stream> {
    match Stream::accept(stream, shard.config.tls.as_ref()).await {
        Ok(stream) => Some(stream),
        Err(error) => {
            crate::metrics::with(|m| {
                m.tls_handshake_failures.inc();
            });
            tracing::debug!(%peer, %error, "closing a TLS connection before its first request");
            None
        }
    }
}

/// How long a connection refused for its address's limit may take to send
/// its first request: it holds a descriptor meanwhile.
const REFUSAL_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// A connection past `max_connections_per_ip`: its first request (read for
/// at most [`REFUSAL_READ_TIMEOUT`]) is answered 429 Too Many Requests, and
/// the connection closed. Reading the request first lets the close be a
/// clean one: closing with unread bytes would reset the connection, and the
/// client could lose the answer.
///
/// Under TLS the handshake counts against the same deadline: with the
/// handshake timeout instead (10 s by default), a flood from one address
/// past its limit would hold ten times the descriptors it holds on a plain
/// listener.
pub(crate) async fn refuse_too_many(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr) {
    let deadline = Instant::now() + REFUSAL_READ_TIMEOUT;
    let secured = future::or(secure(&shard, stream, peer), async {
        Timer::new(REFUSAL_READ_TIMEOUT).await;
        None
    })
    .await;
    let Some(stream) = secured else {
        return;
    };
    let refusal = Response::new(429).body(
        "text/plain; charset=UTF-8",
        "Too many connections from your address",
    );
    answer_after_head(stream, deadline, refusal).await;
}

/// Read a request head (to its blank line, or 16 KiB) by `deadline`, then
/// answer `response` and close; a peer gone or silent gets nothing. Reading
/// first lets the close be a clean one: closing with unread bytes would
/// reset the connection, and the client could lose the answer.
pub(crate) async fn answer_after_head(mut stream: Stream, deadline: Instant, response: Response) {
    let mut buf = BytesMut::new();
    loop {
        match read_some(&mut stream, &mut buf, deadline).await {
            Some(Ok(n)) if n > 0 => {}
            // Gone, or silent: nothing to answer.
            _ => return,
        }
        // The whole head is there (or as much as a head may be): answer.
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() >= 16 * 1024 {
            break;
        }
    }
    let mut out = buffers::take_write();
    response.write_to(false, &mut out);
    let _ = stream.write_all(&out).await;
    buffers::give_write(out);
    let _ = stream.close().await;
}

/// Write an answer. The connection's write timeout (`Shard::write_timeout`,
/// set when it was accepted) gives up on a peer that takes none of it: a
/// client that stopped reading must not hold its connection, and a request
/// in flight that shutdown waits for, for ever.
async fn write_answer(stream: &mut Stream, answer: &[u8]) -> bool {
    // The flush: under TLS, until the ciphertext is in the kernel.
    stream.write_all(answer).await.is_ok() && stream.flush().await.is_ok()
}

/// Counts a request from its head to its answer written.
struct InFlight {
    shard: Rc<Shard>,
}

impl InFlight {
    fn new(shard: Rc<Shard>) -> InFlight {
        shard.in_flight.set(shard.in_flight.get() + 1);
        InFlight { shard }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shard.in_flight.set(self.shard.in_flight.get() - 1);
        self.shard.settled.notify();
    }
}

/// The first request of a connection must come within the request timeout
/// of the accept (so silent connections cannot hold descriptors); later ones
/// may wait the idle timeout before their first byte.
async fn read_request(
    shard: &Shard,
    stream: &mut Stream,
    buf: &mut BytesMut,
    first: bool,
) -> ReadOutcome {
    let now = Instant::now();
    let idle_deadline = now + shard.config.idle_timeout;
    let mut request_deadline = first.then(|| now + shard.config.request_timeout);
    loop {
        if !buf.is_empty() {
            match parse_request(buf, &shard.limits) {
                Ok(Some((request, used))) => {
                    buf.advance(used);
                    if buf.is_empty() {
                        // Between requests a connection keeps no buffer.
                        *buf = BytesMut::new();
                    }
                    return ReadOutcome::Request(request);
                }
                Ok(None) => {}
                Err(error) => return ReadOutcome::Refuse(refusal_status(&error)),
            }
            request_deadline.get_or_insert_with(|| Instant::now() + shard.config.request_timeout);
        }
        let deadline = request_deadline.unwrap_or(idle_deadline);
        match read_some(stream, buf, deadline).await {
            Some(Ok(0)) | Some(Err(_)) => return ReadOutcome::Closed,
            Some(Ok(_)) => {}
            None if request_deadline.is_some() => return ReadOutcome::Refuse(408),
            None => return ReadOutcome::Closed,
        }
    }
}

/// Completes when the peer closes its end while a request is being served.
/// Bytes it sends meanwhile (a pipelined request) are kept in `buf`.
async fn watch_hangup(shard: &Shard, stream: &mut Stream, buf: &mut BytesMut) {
    let cap = shard.limits.max_header_bytes + shard.limits.max_body_bytes;
    loop {
        if buf.len() > cap {
            // Enough is buffered; stop reading and let the request finish.
            return future::pending().await;
        }
        match read_more(stream, buf).await {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}

fn refusal_status(error: &HttpError) -> u16 {
    error.status()
}

/// Read what is available into `buf`; None when `deadline` passes first.
/// Cancel-safe: if the future is dropped mid-read, nothing was read.
async fn read_some(
    stream: &mut Stream,
    buf: &mut BytesMut,
    deadline: Instant,
) -> Option<std::io::Result<usize>> {
    let wait = deadline.saturating_duration_since(Instant::now());
    future::or(async { Some(read_more(stream, buf).await) }, async {
        Timer::new(wait).await;
        None
    })
    .await
}

/// Read what is available into `buf`, with no deadline. Cancel-safe as
/// [`read_some`]: nothing is read until the bytes can be appended.
async fn read_more(stream: &mut Stream, buf: &mut BytesMut) -> std::io::Result<usize> {
    let chunk = buffers::read(stream).await?;
    buf.extend_from_slice(&chunk);
    Ok(chunk.len())
}

enum Routed {
    Respond(Response),
    WebSocket(usize, Request, crate::engineio::EngineQuery),
    HandOff(usize, usize, Request, crate::engineio::EngineQuery),
}

async fn route(shard: &Rc<Shard>, request: Request, peer: SocketAddr) -> Routed {
    let Some(endpoint) = shard.route(request.path()) else {
        return Routed::Respond(Response::new(404).body("text/plain; charset=UTF-8", "Not Found"));
    };
    let config = shard.endpoints[endpoint].config.clone();
    let origin = request.header("origin").map(str::to_string);
    if request.method == Method::Options {
        return Routed::Respond(config.cors.preflight(
            origin.as_deref(),
            request.header("access-control-request-headers"),
        ));
    }
    let accepted = match config.http_compression_threshold {
        Some(_) if request.method == Method::Get => {
            compression::negotiate(request.header_values("accept-encoding"))
        }
        _ => None,
    };
    let mut answer = match engine_request(shard, endpoint, request, peer).await {
        Ok(answer) => answer,
        Err(routed) => return routed,
    };
    let compressed =
        http_compression::compress_answer(&mut answer, config.http_compression_threshold, accepted)
            .await;
    let mut response = Response::new(answer.status).body(answer.content_type, answer.body);
    if let Compressed::Coded(coding) = compressed {
        response = response.header("Content-Encoding", coding.as_str());
    }
    let mut headers = config.cors.response_headers(origin.as_deref());
    if compressed.varies() {
        add_vary(&mut headers, "Accept-Encoding");
    }
    for (name, value) in headers {
        response = response.header(name, value);
    }
    Routed::Respond(response)
}

/// Name `field` in the `Vary` header (CORS may have written one).
fn add_vary(headers: &mut Vec<(&'static str, String)>, field: &str) {
    match headers.iter_mut().find(|(name, _)| *name == "Vary") {
        Some((_, value)) => {
            value.push_str(", ");
            value.push_str(field);
        }
        None => headers.push(("Vary", field.to_owned())),
    }
}

/// The Engine.IO part of routing. Err carries a WebSocket that leaves the HTTP loop.
async fn engine_request(
    shard: &Rc<Shard>,
    endpoint: usize,
    request: Request,
    peer: SocketAddr,
) -> Result<EngineResponse, Routed> {
    let config = &shard.endpoints[endpoint].config;
    let query = match parse_query(request.query(), config.allow_eio3) {
        Ok(query) => query,
        Err(code) => return Ok(EngineResponse::error(code)),
    };
    let sid = match &query.sid {
        None => None,
        Some(raw) => match Sid::parse(raw).filter(|sid| sid.shard() < shard.count) {
            Some(sid) => Some(sid),
            None => return Ok(EngineResponse::error(ErrorCode::UnknownSid)),
        },
    };
    if request.is_websocket_upgrade() {
        if query.transport != TransportKind::WebSocket {
            return Ok(EngineResponse::error(ErrorCode::BadRequest));
        }
        return Err(match sid {
            Some(sid) if sid.shard() != shard.id => {
                Routed::HandOff(sid.shard(), endpoint, request, query)
            }
            _ => Routed::WebSocket(endpoint, request, query),
        });
    }
    if query.transport == TransportKind::WebSocket {
        return Ok(EngineResponse::error(ErrorCode::BadRequest));
    }
    let Some(sid) = sid else {
        if request.method != Method::Get {
            return Ok(EngineResponse::error(ErrorCode::BadHandshakeMethod));
        }
        if !shard.admit_session() {
            return Ok(EngineResponse::status(503));
        }
        let target = request.target.clone();
        return Ok(polling::handshake(
            shard,
            endpoint,
            &query,
            &target,
            request.headers,
            peer,
        ));
    };
    let binary_body = request
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/octet-stream"));
    let poll = PollRequest {
        is_get: request.method == Method::Get,
        is_post: request.method == Method::Post,
        query,
        sid,
        body: request.body,
        binary_body,
    };
    let owner = sid.shard();
    if owner == shard.id {
        return Ok(polling::handle(shard.clone(), endpoint, poll).await);
    }
    if shard.mesh.get().is_none() {
        return Ok(EngineResponse::error(ErrorCode::UnknownSid));
    }
    Ok(Mesh::forward_poll(shard, owner, endpoint, poll).await)
}

/// Give a WebSocket upgrade to the shard owning its session: the connection's
/// file descriptor moves, duplicated, with the request and unread bytes.
#[allow(clippy::too_many_arguments)]
async fn hand_off(
    shard: &Rc<Shard>,
    owner: usize,
    endpoint: usize,
    stream: Stream,
    peer: SocketAddr,
    request: Request,
    query: crate::engineio::EngineQuery,
    leftover: BytesMut,
    slot: IpSlot,
) {
    let Some(mesh) = shard.mesh.get() else {
        return;
    };
    // Under TLS the session's state (keys, sequence numbers, records read
    // and not yet returned) goes with the descriptor.
    let (stream, tls) = match stream {
        Stream::Plain(stream) => (stream, None),
        Stream::Tls(tls) => {
            let (stream, session) = tls.into_parts();
            (stream, Some(session))
        }
    };
    // SAFETY: dup returns a fresh descriptor that nothing else owns.
    let dup = unsafe { libc::dup(stream.as_raw_fd()) };
    if dup < 0 {
        return;
    }
    let fd = unsafe { OwnedFd::from_raw_fd(dup) };
    drop(stream);
    let handoff = Handoff {
        fd,
        tls,
        peer,
        endpoint,
        request,
        query,
        leftover,
        slot,
    };
    mesh.hand_off(owner, handoff).await;
}
