//! The long-polling transport on the shard that owns the session: the
//! handshake, GET (answered at once or parked) and POST.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::state::Shard;
use crate::engine::{HandshakeInfo, SessionEntry, SessionHost, Socket};
use crate::engineio::jsonp::{unwrap_jsonp_post, wrap_jsonp, JSONP_CONTENT_TYPE};
use crate::engineio::payload::{decode_payload, encode_payload};
use crate::engineio::session::{CloseReason, GetOutcome, Session};
use crate::engineio::{Data, EngineQuery, ErrorCode, Packet, Sid, TransportKind};

const TEXT: &str = "text/plain; charset=UTF-8";

/// An answer from the Engine.IO layer, before HTTP and CORS dress it.
/// `Send`, so an owner shard can return it to the shard holding the connection.
#[derive(Debug)]
pub(crate) struct EngineResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
    /// A GET's packets that may be compressed (engine.io's rule: unless
    /// every packet in it was sent with `compress: false`); always false
    /// for answers that carry no packets.
    pub compressible: bool,
}

impl EngineResponse {
    pub fn error(code: ErrorCode) -> EngineResponse {
        EngineResponse {
            status: 400,
            content_type: "application/json",
            body: Bytes::from(code.json()),
            compressible: false,
        }
    }

    pub fn status(status: u16) -> EngineResponse {
        EngineResponse {
            status,
            content_type: TEXT,
            body: Bytes::new(),
            compressible: false,
        }
    }

    fn ok() -> EngineResponse {
        EngineResponse {
            status: 200,
            content_type: TEXT,
            body: Bytes::from_static(b"ok"),
            compressible: false,
        }
    }
}

/// A polling request for an existing session, as forwarded between shards.
#[derive(Debug)]
pub(crate) struct PollRequest {
    pub is_get: bool,
    pub is_post: bool,
    pub query: EngineQuery,
    pub sid: Sid,
    pub body: Bytes,
    pub binary_body: bool,
}

/// Open a session over polling: the handshake GET.
pub(crate) fn handshake(
    shard: &Rc<Shard>,
    endpoint: usize,
    query: &EngineQuery,
    target: &str,
    headers: Vec<(String, String)>,
    remote_addr: SocketAddr,
) -> EngineResponse {
    let entry = open_session(
        shard,
        endpoint,
        query,
        target,
        headers,
        remote_addr,
        TransportKind::Polling,
    );
    let outcome = entry.session.borrow_mut().on_get(Instant::now());
    shard.settle_contained(endpoint, &entry);
    match outcome {
        GetOutcome::Respond(packets) => encode(query, &entry.session, &packets),
        // The open packet is always queued, so the handshake never parks.
        _ => EngineResponse::status(500),
    }
}

/// Create a session on this shard, start its clock and tell the application.
pub(crate) fn open_session(
    shard: &Rc<Shard>,
    endpoint: usize,
    query: &EngineQuery,
    target: &str,
    headers: Vec<(String, String)>,
    remote_addr: SocketAddr,
    transport: TransportKind,
) -> Rc<SessionEntry> {
    let ep = &shard.endpoints[endpoint];
    let sid = Sid::generate(shard.id);
    let session = Session::new(
        sid.as_str(),
        query.version,
        transport,
        ep.session_config.clone(),
        Instant::now(),
    )
    .with_base64_payloads(query.b64);
    let handshake = Arc::new(HandshakeInfo {
        remote_addr,
        url: target.to_string(),
        query: query.params.iter().map(|(n, v)| (n, v)).collect(),
        headers: headers.into_iter().collect(),
        issued: SystemTime::now(),
        secure: shard.config.tls.is_some(),
    });
    let host: Weak<dyn SessionHost> = Rc::downgrade(shard) as Weak<Shard>;
    let entry = SessionEntry::new(sid, session, endpoint, handshake, ep.handler.clone(), host);
    ep.sessions.borrow_mut().insert(sid, entry.clone());
    crate::metrics::with(|m| {
        m.handshakes.inc();
        m.connections.inc();
    });
    shard.clock.rearm(&entry);
    ep.handler.on_open(&Socket(entry.clone()));
    entry
}

/// A GET or POST for a session this shard owns.
pub(crate) async fn handle(shard: Rc<Shard>, endpoint: usize, req: PollRequest) -> EngineResponse {
    let Some(entry) = shard.session(endpoint, &req.sid) else {
        return EngineResponse::error(ErrorCode::UnknownSid);
    };
    let version = entry.session.borrow().version();
    if version != req.query.version {
        return EngineResponse::error(ErrorCode::BadRequest);
    }
    if req.is_get {
        get(&shard, endpoint, &entry, &req.query).await
    } else if req.is_post {
        post(&shard, endpoint, &entry, &req)
    } else {
        EngineResponse::error(ErrorCode::BadRequest)
    }
}

async fn get(
    shard: &Rc<Shard>,
    endpoint: usize,
    entry: &Rc<SessionEntry>,
    query: &EngineQuery,
) -> EngineResponse {
    let outcome = entry.session.borrow_mut().on_get(Instant::now());
    let packets = match outcome {
        GetOutcome::Respond(packets) => packets,
        GetOutcome::Overlap => {
            shard.settle_contained(endpoint, entry);
            return EngineResponse::status(400);
        }
        GetOutcome::WrongTransport => return EngineResponse::error(ErrorCode::BadRequest),
        GetOutcome::Park => {
            // Dropped before an answer (its connection closed): the session hears of it.
            let mut parked = ParkedGet {
                shard,
                endpoint,
                entry,
                answered: false,
            };
            let packets = loop {
                let listen = entry.io_changed.listen();
                if let Some(packets) = entry.session.borrow_mut().take_parked() {
                    break packets;
                }
                listen.await;
            };
            parked.answered = true;
            packets
        }
    };
    shard.settle_contained(endpoint, entry);
    encode(query, &entry.session, &packets)
}

struct ParkedGet<'a> {
    shard: &'a Rc<Shard>,
    endpoint: usize,
    entry: &'a Rc<SessionEntry>,
    answered: bool,
}

impl Drop for ParkedGet<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.entry
                .session
                .borrow_mut()
                .on_get_aborted(Instant::now());
            self.shard.settle_contained(self.endpoint, self.entry);
        }
    }
}

fn post(
    shard: &Rc<Shard>,
    endpoint: usize,
    entry: &Rc<SessionEntry>,
    req: &PollRequest,
) -> EngineResponse {
    let (version, transport, max_payload, closed_by_client) = {
        let session = entry.session.borrow();
        (
            session.version(),
            session.transport(),
            session.config().max_payload,
            session.closed_by_client(),
        )
    };
    // The session waits only for a GET that crossed the client's close.
    if closed_by_client {
        return EngineResponse::error(ErrorCode::UnknownSid);
    }
    if transport != TransportKind::Polling {
        return EngineResponse::error(ErrorCode::BadRequest);
    }
    if req.body.len() as u64 > max_payload {
        return EngineResponse::status(413);
    }
    let decoded = match &req.query.jsonp {
        Some(_) => unwrap_jsonp_post(&req.body)
            .and_then(|text| decode_payload(version, text.as_bytes(), false)),
        None => decode_payload(version, &req.body, req.binary_body),
    };
    let now = Instant::now();
    match decoded {
        Ok(packets) => {
            let reason = {
                let mut session = entry.session.borrow_mut();
                session.on_packets(packets, now);
                session.close_reason()
            };
            shard.settle_contained(endpoint, entry);
            match reason {
                // The POST broke a rule (a v4 client ping, say): the client hears it.
                Some(CloseReason::TransportError | CloseReason::ParseError) => {
                    EngineResponse::error(ErrorCode::BadRequest)
                }
                // Over its packet rate: the session is gone.
                Some(CloseReason::PacketRateExceeded) => EngineResponse::status(429),
                _ => EngineResponse::ok(),
            }
        }
        Err(_) => {
            entry.session.borrow_mut().on_parse_error(now);
            shard.settle_contained(endpoint, entry);
            EngineResponse::error(ErrorCode::BadRequest)
        }
    }
}

/// A GET's answer. JSONP (`j`) is read from the request; whether binary may
/// go out as XHR2 belongs to the session (its handshake's `b64`). The
/// session is borrowed only to read those: the payload is encoded (and
/// compressed later, by the shard writing the answer) with no borrow held.
fn encode(query: &EngineQuery, session: &RefCell<Session>, packets: &[Packet]) -> EngineResponse {
    let (version, binary) = {
        let session = session.borrow();
        (session.version(), session.binary_payloads())
    };
    let compressible = compressible(packets);
    match &query.jsonp {
        Some(j) => {
            let payload = encode_payload(version, packets, false);
            let text = String::from_utf8(payload.body).unwrap_or_default();
            EngineResponse {
                status: 200,
                content_type: JSONP_CONTENT_TYPE,
                body: Bytes::from(wrap_jsonp(j, &text)),
                compressible,
            }
        }
        None => {
            let payload = encode_payload(version, packets, binary);
            EngineResponse {
                status: 200,
                content_type: payload.content_type,
                body: Bytes::from(payload.body),
                compressible,
            }
        }
    }
}

/// Whether an answer holding `packets` may be compressed, as engine.io
/// decides: when any packet in it was sent with options (open, heartbeats,
/// messages) that did not say `compress: false`. The packets its
/// transports write bare (the noop that ends a GET, the close packet) do
/// not count. A text sent with Socket.IO's `compress(false)` carries the
/// flag; the binary attachments queued right behind it belong to the same
/// Socket.IO packet, so they follow it (in engine.io every engine packet of
/// that Socket.IO packet has the option).
fn compressible(packets: &[Packet]) -> bool {
    let mut attachments_of_uncompressed = false;
    for packet in packets {
        match packet {
            Packet::Message(Data::Text(text)) => {
                if text.compressible() {
                    return true;
                }
                attachments_of_uncompressed = true;
            }
            Packet::Message(Data::Binary(_)) => {
                if !attachments_of_uncompressed {
                    return true;
                }
            }
            Packet::Open(_) | Packet::Ping(_) | Packet::Pong(_) => return true,
            Packet::Close | Packet::Noop | Packet::Upgrade => {}
        }
    }
    false
}
