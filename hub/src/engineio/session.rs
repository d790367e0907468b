//! The Engine.IO session state machine, sans-IO.
//!
//! A [`Session`] is fed with what happened (a poll GET, a decoded packet, a
//! WebSocket probe, the current time) and answers with what to do next: the
//! packets to put on the wire, the application events, its next deadline.
//! It owns no sockets and reads no clock, so every heartbeat, timeout and
//! upgrade rule is tested with a fake clock.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::handshake::open_json;
use super::packet::{Data, Packet, ProtocolVersion};
use super::query::TransportKind;

/// How long a polling session closed by its client, with no GET waiting,
/// keeps answering one GET with a noop. The GET it waits for was sent
/// before the close and is late only by its trip (a forward between
/// shards, another connection's scheduling), so a second is ample; the
/// session costs its memory, and a place under `max_sessions`, until then.
pub const CLIENT_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The longest a v3 WebSocket-only session holds its first packets (the
/// open packet and what the application queued with it) after the 101 that
/// completed its WebSocket handshake, waiting for the client to answer the
/// WebSocket ping the IO layer sends right after the 101 (see
/// [`Session::on_ws_pong`]).
///
/// Why: the 101 and the open packet always left in two writes, two TCP
/// segments, as they do from the reference server; but a client that reads
/// after both have arrived gets them in one read. Node's `ws` (what the
/// engine.io-protocol test suite runs on) then emits `open` inside that
/// read and the first `message` from a `process.nextTick`, which runs
/// before any promise continuation: a client that awaits `open` and only
/// then listens for messages never sees the open packet. In v3 the session
/// then stays silent, as the server never pings and such a client waits
/// for the handshake before it speaks. The reference server loses the open
/// packet to such a client as often (about one connection in five from an
/// idle client, three in four from a busy one). A client answers the ping
/// while it reads the bytes behind the 101, so after it has handled the
/// 101: the open packet, sent on the pong, comes in a read of its own
/// however late the client reads. (A fixed hold instead leaves it to
/// chance: on a loaded two-core machine 10 and 25 ms still lost a few open
/// packets in 2,000 connections.) Only a client that never answers pings
/// waits this long. Real v3 clients (engine.io-client 3,
/// socket.io-client 2) listen before they open and lost nothing even
/// before; v4 is not held (its first ping reaches such a client).
pub const V3_WEBSOCKET_OPEN_HOLD: Duration = Duration::from_secs(1);

/// The timing and size settings a session runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub upgrade_timeout: Duration,
    pub max_payload: u64,
    /// Most packets queued to a client before it counts as too slow.
    pub max_buffered: usize,
    /// Most bytes of messages held for a client (queued, or handed to its
    /// WebSocket writer and not yet written) before it counts as too slow.
    pub max_buffered_bytes: usize,
    /// Most Engine.IO packets a client may send per second, with a burst;
    /// past it the session closes ([`CloseReason::PacketRateExceeded`]).
    /// `None` (the default): no limit.
    pub packet_rate: Option<PacketRate>,
}

/// A token bucket for the packets a client sends: `per_second` tokens come
/// back each second, at most `burst` are saved up, each packet takes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketRate {
    per_second: u32,
    burst: u32,
    /// What one token takes to come back, and how far ahead of now the
    /// bucket's time may run (the burst): worked out once, not per packet.
    interval: Duration,
    tolerance: Duration,
}

impl PacketRate {
    /// `per_second` packets a second on average (at least 1), with bursts
    /// of up to `burst` (at least 1).
    pub fn new(per_second: u32, burst: u32) -> PacketRate {
        let interval = Duration::from_nanos((1_000_000_000 / u64::from(per_second.max(1))).max(1));
        PacketRate {
            per_second,
            burst,
            interval,
            tolerance: interval.saturating_mul(burst.max(1) - 1),
        }
    }

    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            upgrade_timeout: Duration::from_millis(10_000),
            max_payload: 1_000_000,
            max_buffered: 16_384,
            max_buffered_bytes: 8 << 20,
            packet_rate: None,
        }
    }
}

/// Why a message was not queued ([`Session::send`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The session is closed.
    Closed,
    /// The client is too slow: queueing the message would pass one of its
    /// limits. The session is unchanged; the caller closes it.
    TooSlow(Overflow),
}

/// The limit a slow client would pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// `queued` packets wait already: the most allowed (`max_buffered`).
    Packets { queued: usize, limit: usize },
    /// `held` bytes wait (queued, or handed to the writer and not yet
    /// written), and `len` more would pass `max_buffered_bytes`.
    Bytes {
        held: usize,
        len: usize,
        limit: usize,
    },
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Overflow::Packets { queued, limit } => {
                write!(f, "{queued} packets queued, the most allowed is {limit}")
            }
            Overflow::Bytes { held, len, limit } => write!(
                f,
                "{held} bytes held, {len} more would pass the budget of {limit} bytes"
            ),
        }
    }
}

/// Why a session closed, with the reference server's wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// No pong (v4) or no ping (v3) in time.
    PingTimeout,
    /// The client closed: a `1` packet or its WebSocket went away.
    TransportClose,
    /// The client broke a protocol rule (overlapping GETs, wrong heartbeat direction).
    TransportError,
    /// The client sent bytes that do not decode.
    ParseError,
    /// The client sent packets faster than [`SessionConfig::packet_rate`]
    /// allows (hub's own reason; the Socket.IO layer reports it to the
    /// application as "transport error", the nearest reference reason).
    PacketRateExceeded,
    /// The application closed the session.
    ForcedClose,
    /// The server is stopping.
    ServerShuttingDown,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::ParseError => "parse error",
            CloseReason::PacketRateExceeded => "packet rate exceeded",
            CloseReason::ForcedClose => "forced close",
            CloseReason::ServerShuttingDown => "server shutting down",
        }
    }

    /// Closes the client asked for are acknowledged with a noop; the others
    /// tell the client with a close packet. A client over its packet rate is
    /// treated as one that broke a rule: what was queued for it is dropped
    /// and a polling session ends at once, so a flood holds no memory.
    fn initiated_by_client(self) -> bool {
        matches!(
            self,
            CloseReason::TransportClose
                | CloseReason::TransportError
                | CloseReason::ParseError
                | CloseReason::PacketRateExceeded
        )
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the application hears from a session.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Message(Data),
    /// The session moved from polling to WebSocket (once, when the
    /// client's upgrade packet arrives on the probed WebSocket).
    Upgraded,
    Closed(CloseReason),
}

/// The answer to a long-polling GET.
#[derive(Debug, PartialEq)]
pub enum GetOutcome {
    /// Answer now with these packets.
    Respond(Vec<Packet>),
    /// Hold the request until [`Session::take_parked`] yields packets.
    Park,
    /// A GET is already waiting: the session is closed, this one gets a bare 400.
    Overlap,
    /// The session is not on polling any more: 400 "Bad request".
    WrongTransport,
}

/// What to do with a packet that arrived on a WebSocket still probing for an upgrade.
#[derive(Debug, PartialEq)]
pub enum UpgradeStep {
    /// Write this packet on the probing WebSocket.
    Reply(Packet),
    /// The session now lives on the WebSocket.
    Upgraded,
    /// The upgrade failed: close the probing WebSocket, the session stays on polling.
    Abort,
    /// Nothing to do.
    Ignore,
}

/// Why a WebSocket may not take over a session.
#[derive(Debug, PartialEq, Eq)]
pub enum UpgradeRefusal {
    AlreadyUpgraded,
    AlreadyUpgrading,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UpgradeState {
    None,
    Started {
        attempt: u32,
        deadline: Instant,
        probed: bool,
    },
}

/// An Engine.IO session: heartbeats, buffering, long-polling and upgrade rules.
#[derive(Debug)]
pub struct Session {
    version: ProtocolVersion,
    /// Shared by the sessions of an endpoint (it is the same for all of
    /// them: 120 bytes a session, held once).
    config: Rc<SessionConfig>,
    transport: TransportKind,
    upgrade: UpgradeState,
    upgrade_attempts: u32,
    outbox: VecDeque<Packet>,
    /// The bytes of the messages held for the client: in `outbox`, and
    /// taken by the WebSocket writer and not yet written. One counter, so
    /// queueing a message updates one number.
    held_bytes: usize,
    /// Of `held_bytes`, those the WebSocket writer has taken and not yet
    /// written ([`Session::take_ws_batch`], [`Session::on_ws_written`]).
    unwritten_bytes: usize,
    events: VecDeque<Event>,
    parked: bool,
    /// v4: when to send the next ping; v3: unused.
    next_ping: Option<Instant>,
    /// v4: the pong deadline; v3: the silence deadline.
    heartbeat_deadline: Option<Instant>,
    closed: Option<CloseReason>,
    /// A polling session closed by the server waits this long for a GET to take its last packets.
    linger_deadline: Option<Instant>,
    /// The client's close packet came with no GET waiting (see `note_client_left`).
    client_left: bool,
    /// Once closed: how long a writer may wait for a peer that does not read.
    write_deadline: Option<Instant>,
    finished: bool,
    /// The packet rate's bucket, as the time at which it would be full
    /// again (GCRA: one instant rather than a count and a refill time);
    /// unused without [`SessionConfig::packet_rate`].
    rate_full_at: Instant,
    /// v3 WebSocket-only: nothing is written before the client's first
    /// WebSocket pong or this instant (see [`V3_WEBSOCKET_OPEN_HOLD`]).
    first_write_at: Option<Instant>,
    /// v3 polling: binary may go out as an XHR2 binary payload. False when
    /// the handshake asked for base64 (`b64`); decided once for the session.
    binary_payloads: bool,
}

impl Session {
    /// A new session; its open packet is the first thing in the outbox and
    /// its heartbeat timers start now.
    pub fn new(
        sid: &str,
        version: ProtocolVersion,
        transport: TransportKind,
        config: impl Into<Rc<SessionConfig>>,
        now: Instant,
    ) -> Session {
        let config: Rc<SessionConfig> = config.into();
        let upgrades: &[&str] = match transport {
            TransportKind::Polling => &["websocket"],
            TransportKind::WebSocket => &[],
        };
        let open = open_json(
            sid,
            upgrades,
            config.ping_interval.as_millis() as u64,
            config.ping_timeout.as_millis() as u64,
            config.max_payload,
        );
        let (next_ping, heartbeat_deadline) = match version {
            ProtocolVersion::V4 => (Some(now + config.ping_interval), None),
            ProtocolVersion::V3 => (None, Some(now + config.ping_interval + config.ping_timeout)),
        };
        let mut outbox = VecDeque::with_capacity(2);
        outbox.push_back(Packet::Open(open));
        Session {
            version,
            config,
            transport,
            upgrade: UpgradeState::None,
            upgrade_attempts: 0,
            outbox,
            held_bytes: 0,
            unwritten_bytes: 0,
            // Room for one event: a read usually brings one message, so a
            // session seldom holds more between two dispatches, and the
            // first push would otherwise allocate room for four (160 bytes
            // kept until the next heartbeat).
            events: VecDeque::with_capacity(1),
            parked: false,
            next_ping,
            heartbeat_deadline,
            closed: None,
            linger_deadline: None,
            client_left: false,
            write_deadline: None,
            finished: false,
            rate_full_at: now,
            first_write_at: (version == ProtocolVersion::V3
                && transport == TransportKind::WebSocket)
                .then(|| now + V3_WEBSOCKET_OPEN_HOLD),
            binary_payloads: true,
        }
    }

    /// For a session whose handshake carried `b64`: its polling answers are
    /// text for its whole life, whatever later requests say. The reference
    /// server decides this once, when the session's polling transport is
    /// made from the handshake request.
    #[must_use]
    pub fn with_base64_payloads(mut self, b64: bool) -> Session {
        self.binary_payloads = !b64;
        self
    }

    /// Whether a polling answer may be an XHR2 binary payload (v3 only: v4
    /// polling is always text).
    pub fn binary_payloads(&self) -> bool {
        self.version == ProtocolVersion::V3 && self.binary_payloads
    }

    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    pub fn transport(&self) -> TransportKind {
        self.transport
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        self.closed
    }

    /// True once nothing more will be sent: the IO layer forgets the session.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Queue a message; `Ok` with the bytes it counts for. Refused when the
    /// session is closed, or when the client is too slow: `max_buffered`
    /// packets wait already, or the message would bring the bytes held for
    /// it past `max_buffered_bytes` (a message larger than the whole budget
    /// still goes into an empty queue). A client found too slow is for the
    /// caller to close.
    #[inline]
    pub fn send(&mut self, data: Data) -> Result<usize, SendError> {
        let len = message_len(&data);
        self.send_sized(len, move || data).map(|()| len)
    }

    /// As [`Session::send`], for a message of `len` bytes that `data` makes
    /// only once it is taken: a broadcast measures its message once for
    /// every recipient, and clones it only for those that take it.
    #[inline]
    pub fn send_sized(&mut self, len: usize, data: impl FnOnce() -> Data) -> Result<(), SendError> {
        if self.closed.is_some()
            || self.outbox.len() >= self.config.max_buffered
            || (self.held_bytes + len > self.config.max_buffered_bytes && self.held_bytes > 0)
        {
            return Err(self.refusal(len));
        }
        self.held_bytes += len;
        self.outbox.push_back(Packet::Message(data()));
        Ok(())
    }

    /// For a WebSocket session whose writer holds nothing and has nothing
    /// queued: a message of `len` bytes goes to the writer at once, as if
    /// queued and taken by [`Session::take_ws_batch`] in one step (its
    /// bytes count against the budget until [`Session::on_ws_written`]).
    /// False, and nothing changed, otherwise: the caller queues it with
    /// [`Session::send_sized`]. For a broadcast's lone packet, which the
    /// IO layer writes from the frame shared by every recipient.
    #[inline]
    pub fn take_lone(&mut self, len: usize) -> bool {
        let lone = self.closed.is_none()
            && self.outbox.is_empty()
            && self.unwritten_bytes == 0
            && self.transport == TransportKind::WebSocket
            && self.first_write_at.is_none();
        if lone {
            self.held_bytes += len;
            self.unwritten_bytes += len;
        }
        lone
    }

    /// Why [`Session::send`] refuses a message of `len` bytes (out of the
    /// way of the queueing path, which inlines into every broadcast).
    #[cold]
    #[inline(never)]
    fn refusal(&self, len: usize) -> SendError {
        if self.closed.is_some() {
            return SendError::Closed;
        }
        if self.outbox.len() >= self.config.max_buffered {
            return SendError::TooSlow(Overflow::Packets {
                queued: self.outbox.len(),
                limit: self.config.max_buffered,
            });
        }
        SendError::TooSlow(Overflow::Bytes {
            held: self.held_bytes,
            len,
            limit: self.config.max_buffered_bytes,
        })
    }

    /// How many packets wait to be written.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// The bytes of messages held for the client: queued, or taken by its
    /// WebSocket writer and not yet written.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// The whole outbox, for a GET.
    fn take_outbox(&mut self) -> Vec<Packet> {
        self.held_bytes = self.unwritten_bytes;
        self.outbox.drain(..).collect()
    }

    fn clear_outbox(&mut self) {
        self.held_bytes = self.unwritten_bytes;
        self.outbox.clear();
    }

    /// The next application event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest instant at which [`Session::handle_timeout`] has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        let upgrade = match self.upgrade {
            UpgradeState::Started { deadline, .. } => Some(deadline),
            UpgradeState::None => None,
        };
        if self.closed.is_some() {
            return self.linger_deadline;
        }
        // Pairwise, not `min` over an array's flattened iterator: asked
        // after every dispatch, where the iterator's glue cost more than
        // the comparisons.
        earliest(
            earliest(self.next_ping, self.heartbeat_deadline),
            earliest(upgrade, self.first_write_at),
        )
    }

    /// Run the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(closed_at) = self.linger_deadline {
            if now >= closed_at {
                self.finished = true;
                self.linger_deadline = None;
            }
        }
        if self.closed.is_some() {
            return;
        }
        if matches!(self.first_write_at, Some(at) if now >= at) {
            self.first_write_at = None;
        }
        if let UpgradeState::Started { deadline, .. } = self.upgrade {
            if now >= deadline {
                self.upgrade = UpgradeState::None;
            }
        }
        if matches!(self.heartbeat_deadline, Some(d) if now >= d) {
            self.close(CloseReason::PingTimeout, now);
            return;
        }
        if matches!(self.next_ping, Some(d) if now >= d) {
            self.next_ping = None;
            self.outbox.push_back(Packet::Ping(String::new()));
            self.heartbeat_deadline = Some(now + self.config.ping_timeout);
        }
    }

    /// Close the session from the server side (or for a protocol error).
    /// The application hears [`Event::Closed`] once.
    pub fn close(&mut self, reason: CloseReason, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(reason);
        // What is queued goes out with the close, held no longer.
        self.first_write_at = None;
        self.write_deadline = Some(match reason {
            CloseReason::ForcedClose | CloseReason::ServerShuttingDown => {
                now + self.config.ping_timeout
            }
            _ => now,
        });
        self.next_ping = None;
        self.heartbeat_deadline = None;
        self.upgrade = UpgradeState::None;
        self.events.push_back(Event::Closed(reason));
        match self.transport {
            // A stopping server does not wait for idle pollers to come back.
            TransportKind::Polling
                if !reason.initiated_by_client()
                    && (self.parked
                        || (reason != CloseReason::PingTimeout
                            && !(reason == CloseReason::ServerShuttingDown
                                && self.outbox.is_empty()))) =>
            {
                // The client learns of the close from its pending or next GETs.
                self.linger_deadline =
                    Some(now + self.config.ping_interval + self.config.ping_timeout);
            }
            TransportKind::Polling if self.parked => {}
            TransportKind::Polling if reason == CloseReason::TransportClose => {
                self.note_client_left(now)
            }
            _ => {
                if reason.initiated_by_client() {
                    self.clear_outbox();
                }
                // WebSocket sessions finish when the IO layer has written the
                // outbox and closed the socket; see `take_ws_packets`.
                if self.transport == TransportKind::Polling {
                    self.finished = true;
                }
            }
        }
    }

    /// The client's close packet came (in a POST) while no GET of its was
    /// waiting. A GET it sent before the close may still be on its way: it
    /// travels on another connection, and when another shard accepted that
    /// connection it is forwarded here, so it can arrive after the POST
    /// that followed it (with two shards, about one such race in five did,
    /// and nearly every one whose GET came through the other shard). The
    /// session cannot tell that GET from one sent after the close: when each
    /// request was read says nothing, as shards read in parallel and the
    /// POST is often read first. So the session stays, with nothing queued,
    /// for [`CLIENT_CLOSE_GRACE`], and the first GET in that time is answered
    /// as if it had been waiting (a noop, or the close packet of a session
    /// the server had closed first); after it, or after the grace, the
    /// session is gone. POSTs find no session at once.
    fn note_client_left(&mut self, now: Instant) {
        self.outbox.clear();
        self.client_left = true;
        let grace = now + CLIENT_CLOSE_GRACE;
        self.linger_deadline = Some(self.linger_deadline.map_or(grace, |d| d.min(grace)));
    }

    /// True once the client's close packet came with no GET waiting: the
    /// client has left; its POSTs find no session (one GET is still
    /// answered, see [`Session::on_get`]).
    pub fn closed_by_client(&self) -> bool {
        self.client_left
    }

    /// A long-polling GET arrived.
    pub fn on_get(&mut self, now: Instant) -> GetOutcome {
        if self.transport != TransportKind::Polling {
            return GetOutcome::WrongTransport;
        }
        if self.parked {
            self.close(CloseReason::TransportError, now);
            return GetOutcome::Overlap;
        }
        if self.client_left {
            // The one GET a client that left may still have had on its way.
            self.finished = true;
            self.linger_deadline = None;
            let answer = match self.closed {
                Some(CloseReason::TransportClose) => Packet::Noop,
                _ => Packet::Close,
            };
            return GetOutcome::Respond(vec![answer]);
        }
        if let Some(reason) = self.closed {
            if !reason.initiated_by_client() {
                return GetOutcome::Respond(self.closing_answer());
            }
            self.finished = true;
            self.linger_deadline = None;
            self.clear_outbox();
            return GetOutcome::Respond(vec![Packet::Noop]);
        }
        if let UpgradeState::Started { probed: true, .. } = self.upgrade {
            return GetOutcome::Respond(vec![Packet::Noop]);
        }
        if !self.outbox.is_empty() {
            return GetOutcome::Respond(self.take_outbox());
        }
        self.parked = true;
        GetOutcome::Park
    }

    /// The connection of a parked GET went away before it was answered. As
    /// the reference server does, the session closes: packets written into a
    /// dead request would be lost without the client knowing.
    pub fn on_get_aborted(&mut self, now: Instant) {
        if !self.parked {
            return;
        }
        self.parked = false;
        if self.closed.is_none() {
            self.close(CloseReason::TransportError, now);
        }
        if self.transport == TransportKind::Polling {
            self.finished = true;
        }
    }

    /// Whether a message queued now is written at once: nothing queued
    /// before it, no write of the WebSocket's waiting for the peer, and a
    /// WebSocket or a parked GET to carry it. Volatile packets are dropped
    /// otherwise (the reference's `transport.writable`).
    pub fn writable(&self) -> bool {
        self.closed.is_none()
            && self.outbox.is_empty()
            && self.unwritten_bytes == 0
            && (self.transport == TransportKind::WebSocket || self.parked)
    }

    /// What a GET gets from a session the server closed: first what was
    /// still queued, then, on the next GET, the close packet. As with the
    /// reference server, the last packets (a Socket.IO DISCONNECT, say) and
    /// the close arrive apart, so clients act on the packets before the close.
    fn closing_answer(&mut self) -> Vec<Packet> {
        if !self.outbox.is_empty() {
            return self.take_outbox();
        }
        self.finished = true;
        self.linger_deadline = None;
        vec![Packet::Close]
    }

    /// For a stopping server, once its pollers have had a grace period to
    /// come back: a closed polling session whose client is not waiting on a
    /// GET is given up, with whatever it still holds (a final DISCONNECT,
    /// the close packet). A live client polls again within a round trip of
    /// its last answer, so one that has not in the grace period has gone;
    /// and as a closed session takes no more packets, a client that did
    /// come back took everything but the close packet. True if so.
    pub fn abandon_if_polling(&mut self) -> bool {
        if self.transport != TransportKind::Polling
            || self.parked
            || self.finished
            || self.closed.is_none()
        {
            return false;
        }
        self.finished = true;
        self.linger_deadline = None;
        true
    }

    /// True while a GET is parked.
    pub fn has_parked_get(&self) -> bool {
        self.parked
    }

    /// The answer for the parked GET, once there is one.
    pub fn take_parked(&mut self) -> Option<Vec<Packet>> {
        if !self.parked {
            return None;
        }
        let answer = if let Some(reason) = self.closed {
            if reason.initiated_by_client() {
                self.finished = true;
                self.linger_deadline = None;
                self.clear_outbox();
            }
            if reason == CloseReason::TransportClose {
                // The client asked to close: its pending GET is released with a noop.
                vec![Packet::Noop]
            } else if reason.initiated_by_client() {
                // A protocol error: the pending GET learns the session is over.
                vec![Packet::Close]
            } else {
                self.closing_answer()
            }
        } else if self.transport != TransportKind::Polling
            || matches!(self.upgrade, UpgradeState::Started { probed: true, .. })
        {
            vec![Packet::Noop]
        } else if !self.outbox.is_empty() {
            self.take_outbox()
        } else {
            return None;
        };
        self.parked = false;
        Some(answer)
    }

    /// Packets that arrived on the session's own transport (a POST body or a
    /// WebSocket frame after the upgrade).
    pub fn on_packets(&mut self, packets: impl IntoIterator<Item = Packet>, now: Instant) {
        for packet in packets {
            if self.closed.is_none() && !self.take_packet_token(now) {
                self.close(CloseReason::PacketRateExceeded, now);
            }
            if self.closed.is_some() {
                // The client closes too: nobody will come for the last
                // packets, so a polling session lingers only for a GET that
                // crossed the close.
                if packet == Packet::Close
                    && self.transport == TransportKind::Polling
                    && !self.parked
                    && !self.finished
                {
                    self.note_client_left(now);
                }
                return;
            }
            self.on_packet(packet, now);
        }
    }

    /// Take a token for one packet from the client; false when the bucket
    /// is empty. The bucket is the generic cell rate algorithm: each packet
    /// moves `rate_full_at` one interval later (from `now` at the latest);
    /// a packet that would move it more than `burst - 1` intervals past
    /// `now` is over the rate. One instant of state, no counter to refill;
    /// a few integer operations per packet (measured: within the noise of
    /// `scripts/instructions`' echo).
    fn take_packet_token(&mut self, now: Instant) -> bool {
        let Some(rate) = self.config.packet_rate else {
            return true;
        };
        let start = self.rate_full_at.max(now);
        if start > now + rate.tolerance {
            return false;
        }
        self.rate_full_at = start + rate.interval;
        true
    }

    fn on_packet(&mut self, packet: Packet, now: Instant) {
        match packet {
            Packet::Message(data) => self.events.push_back(Event::Message(data)),
            Packet::Close => self.close(CloseReason::TransportClose, now),
            Packet::Ping(data) => match self.version {
                ProtocolVersion::V3 => {
                    self.heartbeat_deadline =
                        Some(now + self.config.ping_interval + self.config.ping_timeout);
                    self.release_spare_room();
                    self.outbox.push_back(Packet::Pong(data));
                }
                ProtocolVersion::V4 => self.close(CloseReason::TransportError, now),
            },
            Packet::Pong(_) => match self.version {
                ProtocolVersion::V4 => {
                    self.heartbeat_deadline = None;
                    self.next_ping = Some(now + self.config.ping_interval);
                    self.release_spare_room();
                }
                ProtocolVersion::V3 => self.close(CloseReason::TransportError, now),
            },
            // Harmless out of place, as in the reference server.
            Packet::Open(_) | Packet::Upgrade | Packet::Noop => {}
        }
    }

    /// Once a heartbeat, give back the room of empty queues: a busy session
    /// keeps it from message to message (queueing to it allocates nothing),
    /// an idle one holds none.
    fn release_spare_room(&mut self) {
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
        if self.outbox.is_empty() {
            self.outbox = VecDeque::new();
        }
    }

    /// Undecodable input on the session's transport.
    pub fn on_parse_error(&mut self, now: Instant) {
        self.close(CloseReason::ParseError, now);
    }

    /// The session's WebSocket went away without a close packet.
    pub fn on_transport_closed(&mut self, now: Instant) {
        self.close(CloseReason::TransportClose, now);
    }

    /// For a new WebSocket session: whether it holds its first packets until
    /// the client answers a WebSocket ping, which the IO layer sends right
    /// after the 101 (see [`V3_WEBSOCKET_OPEN_HOLD`]).
    pub fn holds_first_write(&self) -> bool {
        self.first_write_at.is_some()
    }

    /// The client answered a WebSocket ping: it has handled the 101, and
    /// what is queued may go out.
    pub fn on_ws_pong(&mut self) {
        self.first_write_at = None;
    }

    /// For a WebSocket session: whether [`Session::pop_ws_packet`] has a
    /// packet now (false while the first packets are held).
    pub fn has_ws_packets(&self) -> bool {
        self.transport == TransportKind::WebSocket
            && self.first_write_at.is_none()
            && !self.outbox.is_empty()
    }

    /// For a WebSocket session: take everything queued for the wire, as a
    /// writer that writes it all at once (its bytes no longer count).
    /// Once closed, this is the last call and the session is finished.
    pub fn take_ws_packets(&mut self, out: &mut Vec<Packet>) {
        self.take_ws_batch(|packet| {
            out.push(packet);
            true
        });
        self.on_ws_written();
    }

    /// For a WebSocket session: hand the packets queued for the wire to
    /// `write`, oldest first, for as long as it returns true (it has room
    /// for more). They are handed over, not lent: the writer drops each
    /// where it knows its kind, which keeps that drop out of line of the
    /// generic one (measured: 17 instructions per delivery). Their bytes count against the budget until
    /// [`Session::on_ws_written`]. Once closed, the session is finished
    /// when nothing is left to take.
    #[inline]
    pub fn take_ws_batch(&mut self, mut write: impl FnMut(Packet) -> bool) {
        if self.transport != TransportKind::WebSocket || self.first_write_at.is_some() {
            return;
        }
        let mut taken = 0;
        while let Some(packet) = self.outbox.pop_front() {
            taken += packet_len(&packet);
            if !write(packet) {
                break;
            }
        }
        self.unwritten_bytes += taken;
        if self.outbox.is_empty() && self.closed.is_some() {
            self.finished = true;
        }
    }

    /// For a WebSocket session: the next packet queued for the wire (see
    /// [`Session::take_ws_batch`]). Once closed, the session is finished
    /// when this returns `None`.
    pub fn pop_ws_packet(&mut self) -> Option<Packet> {
        if self.transport != TransportKind::WebSocket || self.first_write_at.is_some() {
            return None;
        }
        let packet = self.outbox.pop_front();
        match &packet {
            Some(packet) => self.unwritten_bytes += packet_len(packet),
            None if self.closed.is_some() => self.finished = true,
            None => {}
        }
        packet
    }

    /// The WebSocket writer has written every packet it took.
    pub fn on_ws_written(&mut self) {
        self.held_bytes -= self.unwritten_bytes;
        self.unwritten_bytes = 0;
    }

    /// Once the session is closed: the instant until which its writer may
    /// wait for a peer that does not read. A writer still blocked then
    /// gives up and drops the connection. `None` while the session is open
    /// (its own limits close a client that stops reading: the byte and
    /// packet budget, the heartbeat).
    ///
    /// A close the client caused, a ping timeout or a slow consumer leave no
    /// time: the client is gone, broken or not reading. A close by the
    /// application or a stopping server leaves `ping_timeout` to write the
    /// last packets (a Socket.IO DISCONNECT, say).
    pub fn write_deadline(&self) -> Option<Instant> {
        self.write_deadline
    }

    /// A stopping server stops waiting for peers that do not read: a
    /// closed session's writer may wait no later than `now`.
    pub fn end_write_grace(&mut self, now: Instant) {
        if let Some(deadline) = &mut self.write_deadline {
            *deadline = (*deadline).min(now);
        }
    }

    /// The IO layer gave the session up (its writer stopped, or the shard
    /// forgot it): what is still queued is dropped, and the session is
    /// finished.
    pub fn abandon(&mut self) {
        self.outbox = VecDeque::new();
        self.held_bytes = 0;
        self.unwritten_bytes = 0;
        self.finished = true;
        self.linger_deadline = None;
        // Closed already whenever the IO layer lets a session go; if not,
        // it takes nothing more all the same.
        self.closed.get_or_insert(CloseReason::TransportClose);
    }

    /// A WebSocket with this session's sid opened; it may take over once probed.
    /// Returns the attempt number the WebSocket quotes back.
    pub fn begin_upgrade(&mut self, now: Instant) -> Result<u32, UpgradeRefusal> {
        if self.closed.is_some() {
            return Err(UpgradeRefusal::Closed);
        }
        if self.transport == TransportKind::WebSocket {
            return Err(UpgradeRefusal::AlreadyUpgraded);
        }
        if self.upgrade != UpgradeState::None {
            return Err(UpgradeRefusal::AlreadyUpgrading);
        }
        self.upgrade_attempts += 1;
        self.upgrade = UpgradeState::Started {
            attempt: self.upgrade_attempts,
            deadline: now + self.config.upgrade_timeout,
            probed: false,
        };
        Ok(self.upgrade_attempts)
    }

    /// Is upgrade `attempt` still under way?
    pub fn upgrade_pending(&self, attempt: u32) -> bool {
        matches!(self.upgrade, UpgradeState::Started { attempt: a, .. } if a == attempt)
    }

    /// A packet arrived on the probing WebSocket of upgrade `attempt`.
    pub fn on_upgrade_packet(&mut self, attempt: u32, packet: Packet) -> UpgradeStep {
        let UpgradeState::Started {
            attempt: current,
            probed,
            ..
        } = self.upgrade
        else {
            return UpgradeStep::Abort;
        };
        if current != attempt || self.closed.is_some() {
            return UpgradeStep::Abort;
        }
        match packet {
            Packet::Ping(data) if data == "probe" => {
                if let UpgradeState::Started { probed, .. } = &mut self.upgrade {
                    *probed = true;
                }
                UpgradeStep::Reply(Packet::Pong(data))
            }
            Packet::Upgrade if probed => {
                self.upgrade = UpgradeState::None;
                self.transport = TransportKind::WebSocket;
                self.events.push_back(Event::Upgraded);
                UpgradeStep::Upgraded
            }
            Packet::Noop => UpgradeStep::Ignore,
            _ => {
                self.upgrade = UpgradeState::None;
                UpgradeStep::Abort
            }
        }
    }

    /// The probing WebSocket of `attempt` closed or failed.
    pub fn abort_upgrade(&mut self, attempt: u32) {
        if self.upgrade_pending(attempt) {
            self.upgrade = UpgradeState::None;
        }
    }
}

/// The bytes a packet counts for against the budget: a message's data;
/// nothing for the small control packets.
#[inline]
fn packet_len(packet: &Packet) -> usize {
    match packet {
        Packet::Message(Data::Text(text)) => text.len(),
        Packet::Message(Data::Binary(bytes)) => bytes.len(),
        _ => 0,
    }
}

/// The bytes a message counts for against the budget.
#[inline]
fn message_len(data: &Data) -> usize {
    match data {
        Data::Text(text) => text.len(),
        Data::Binary(bytes) => bytes.len(),
    }
}

/// The earlier of two optional deadlines (`None` is no deadline).
#[inline]
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (None, b) => b,
        (a, None) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "AAAAAAAAAAAAAAAAAAAAAAAA";

    fn config() -> SessionConfig {
        SessionConfig {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            upgrade_timeout: Duration::from_millis(1000),
            max_payload: 1000,
            max_buffered: 100,
            packet_rate: None,
            max_buffered_bytes: 1000,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A polling session whose handshake GET was answered.
    fn polling(version: ProtocolVersion, t0: Instant) -> Session {
        polling_with(version, config(), t0)
    }

    fn polling_with(version: ProtocolVersion, config: SessionConfig, t0: Instant) -> Session {
        let mut s = Session::new(SID, version, TransportKind::Polling, config, t0);
        match s.on_get(t0) {
            GetOutcome::Respond(p) => assert!(matches!(p.as_slice(), [Packet::Open(_)])),
            other => panic!("handshake answered {other:?}"),
        }
        s
    }

    /// A WebSocket-only session, its open packet still queued (or held).
    fn websocket(version: ProtocolVersion, t0: Instant) -> Session {
        websocket_with(version, config(), t0)
    }

    fn websocket_with(version: ProtocolVersion, config: SessionConfig, t0: Instant) -> Session {
        Session::new(SID, version, TransportKind::WebSocket, config, t0)
    }

    /// A v4 WebSocket session whose open packet was taken.
    fn open_websocket(t0: Instant) -> Session {
        open_websocket_with(config(), t0)
    }

    fn open_websocket_with(config: SessionConfig, t0: Instant) -> Session {
        let mut s = websocket_with(ProtocolVersion::V4, config, t0);
        s.take_ws_packets(&mut Vec::new());
        s
    }

    fn text(s: &str) -> Packet {
        Packet::Message(Data::Text(s.into()))
    }

    /// A WebSocket session (open packet taken) allowing `per_second`
    /// packets with a burst of `burst`.
    fn rate_limited(per_second: u32, burst: u32, t0: Instant) -> Session {
        open_websocket_with(
            SessionConfig {
                packet_rate: Some(PacketRate::new(per_second, burst)),
                ..config()
            },
            t0,
        )
    }

    #[test]
    fn a_burst_is_allowed_and_one_packet_more_closes() {
        let t0 = Instant::now();
        let mut s = rate_limited(10, 5, t0);
        s.on_packets((0..5).map(|i| text(&i.to_string())), t0);
        assert!(!s.is_closed(), "the whole burst at once is allowed");
        assert_eq!((0..5).filter(|_| s.poll_event().is_some()).count(), 5);
        s.on_packets([text("one too many")], t0);
        assert_eq!(s.close_reason(), Some(CloseReason::PacketRateExceeded));
        assert_eq!(
            s.poll_event(),
            Some(Event::Closed(CloseReason::PacketRateExceeded)),
            "the packet over the rate is not delivered"
        );
        assert_eq!(s.outbox_len(), 0, "nothing is kept for a flooding client");
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let t0 = Instant::now();
        // 10 per second: one token every 100 ms, at most 2 saved.
        let mut s = rate_limited(10, 2, t0);
        s.on_packets([text("a"), text("b")], t0);
        // One token back after 100 ms, not before.
        s.on_packets([text("c")], t0 + ms(100));
        assert!(!s.is_closed());
        // A client that keeps to the rate is never closed, for as long as it goes.
        for i in 2..200 {
            s.on_packets([text("steady")], t0 + ms(100 * i));
        }
        assert!(!s.is_closed());
        // Idle time refills the bucket up to the burst, no more.
        let later = t0 + Duration::from_secs(60);
        s.on_packets([text("x"), text("y")], later);
        assert!(!s.is_closed(), "the burst is back after a pause");
        s.on_packets([text("z")], later + ms(50));
        assert_eq!(s.close_reason(), Some(CloseReason::PacketRateExceeded));
    }

    #[test]
    fn a_packet_before_its_token_is_back_closes() {
        let t0 = Instant::now();
        let mut s = rate_limited(10, 1, t0);
        s.on_packets([text("a")], t0);
        s.on_packets([text("b")], t0 + ms(99));
        assert_eq!(s.close_reason(), Some(CloseReason::PacketRateExceeded));
    }

    #[test]
    fn every_packet_counts_and_polling_ends_at_once() {
        let t0 = Instant::now();
        let mut s = polling_with(
            ProtocolVersion::V3,
            SessionConfig {
                packet_rate: Some(PacketRate::new(1, 3)),
                ..config()
            },
            t0,
        );
        // Pings and noops are packets too.
        s.on_packets(
            [Packet::Ping(String::new()), Packet::Noop, Packet::Noop],
            t0,
        );
        assert!(!s.is_closed());
        s.send(Data::Text("queued for the client".into())).unwrap();
        s.on_packets([Packet::Noop], t0);
        assert_eq!(s.close_reason(), Some(CloseReason::PacketRateExceeded));
        assert!(s.is_finished(), "no linger, nothing kept for the client");
    }

    #[test]
    fn without_a_rate_nothing_is_limited() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        s.on_packets((0..10_000).map(|_| Packet::Noop), t0);
        assert!(!s.is_closed());
    }

    #[test]
    fn open_packet_lists_upgrades_per_transport() {
        let t0 = Instant::now();
        let mut p = Session::new(
            SID,
            ProtocolVersion::V4,
            TransportKind::Polling,
            config(),
            t0,
        );
        let GetOutcome::Respond(packets) = p.on_get(t0) else {
            panic!()
        };
        assert_eq!(
            packets,
            vec![Packet::Open(format!(
                r#"{{"sid":"{SID}","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000}}"#
            ))]
        );
        let mut w = websocket(ProtocolVersion::V4, t0);
        let mut out = Vec::new();
        w.take_ws_packets(&mut out);
        let Packet::Open(json) = &out[0] else {
            panic!()
        };
        assert!(json.contains(r#""upgrades":[]"#));
    }

    #[test]
    fn binary_payloads_are_decided_by_the_handshake() {
        let t0 = Instant::now();
        let v3 = |b64| {
            Session::new(
                SID,
                ProtocolVersion::V3,
                TransportKind::Polling,
                config(),
                t0,
            )
            .with_base64_payloads(b64)
        };
        assert!(v3(false).binary_payloads());
        assert!(!v3(true).binary_payloads());
        // v4 polling is always text.
        assert!(!polling(ProtocolVersion::V4, t0).binary_payloads());
    }

    #[test]
    fn v4_first_ping_at_interval_not_before() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        assert_eq!(s.next_deadline(), Some(t0 + ms(300)));
        s.handle_timeout(t0 + ms(299));
        assert_eq!(s.outbox_len(), 0);
        s.handle_timeout(t0 + ms(300));
        assert_eq!(
            s.on_get(t0 + ms(300)),
            GetOutcome::Respond(vec![Packet::Ping(String::new())])
        );
        assert_eq!(s.next_deadline(), Some(t0 + ms(500)));
    }

    #[test]
    fn v4_pong_schedules_next_ping() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        s.handle_timeout(t0 + ms(300));
        s.on_packets([Packet::Pong(String::new())], t0 + ms(350));
        assert_eq!(s.next_deadline(), Some(t0 + ms(650)));
        s.handle_timeout(t0 + ms(600));
        assert!(!s.is_closed());
    }

    #[test]
    fn v4_missing_pong_times_out() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        s.handle_timeout(t0 + ms(300));
        s.handle_timeout(t0 + ms(499));
        assert!(!s.is_closed());
        s.handle_timeout(t0 + ms(500));
        assert_eq!(s.close_reason(), Some(CloseReason::PingTimeout));
        assert_eq!(
            s.poll_event(),
            Some(Event::Closed(CloseReason::PingTimeout))
        );
        assert_eq!(s.poll_event(), None);
    }

    #[test]
    fn v4_client_ping_is_an_error() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        s.on_packets([Packet::Ping(String::new())], t0);
        assert_eq!(s.close_reason(), Some(CloseReason::TransportError));
    }

    #[test]
    fn v3_client_pings_and_server_pongs() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V3, t0);
        assert_eq!(s.next_deadline(), Some(t0 + ms(500)));
        s.on_packets([Packet::Ping(String::new())], t0 + ms(400));
        assert_eq!(s.next_deadline(), Some(t0 + ms(900)));
        assert_eq!(
            s.on_get(t0 + ms(400)),
            GetOutcome::Respond(vec![Packet::Pong(String::new())])
        );
        s.handle_timeout(t0 + ms(899));
        assert!(!s.is_closed());
        s.handle_timeout(t0 + ms(900));
        assert_eq!(s.close_reason(), Some(CloseReason::PingTimeout));
    }

    #[test]
    fn v3_server_never_pings_and_pong_is_an_error() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V3, t0);
        s.handle_timeout(t0 + ms(499));
        assert_eq!(s.outbox_len(), 0);
        s.on_packets([Packet::Pong(String::new())], t0 + ms(10));
        assert_eq!(s.close_reason(), Some(CloseReason::TransportError));
    }

    #[test]
    fn parked_get_answered_when_data_arrives() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        assert_eq!(s.on_get(t0), GetOutcome::Park);
        assert_eq!(s.take_parked(), None);
        assert_eq!(s.send(Data::Text("a".into())), Ok(1));
        assert_eq!(s.send(Data::Binary(vec![1u8, 2].into())), Ok(2));
        assert_eq!(
            s.take_parked(),
            Some(vec![
                text("a"),
                Packet::Message(Data::Binary(vec![1u8, 2].into()))
            ])
        );
        assert!(!s.has_parked_get());
    }

    #[test]
    fn duplicate_get_closes_the_session() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        assert_eq!(s.on_get(t0), GetOutcome::Park);
        assert_eq!(s.on_get(t0), GetOutcome::Overlap);
        assert_eq!(s.close_reason(), Some(CloseReason::TransportError));
        // The first GET learns the session is over with a close packet.
        assert_eq!(s.take_parked(), Some(vec![Packet::Close]));
        assert!(s.is_finished());
    }

    #[test]
    fn client_close_answers_parked_get_with_noop() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        assert_eq!(s.on_get(t0), GetOutcome::Park);
        s.on_packets([Packet::Close, text("ignored")], t0);
        assert_eq!(
            s.poll_event(),
            Some(Event::Closed(CloseReason::TransportClose))
        );
        assert_eq!(s.poll_event(), None, "nothing after close is delivered");
        assert_eq!(s.take_parked(), Some(vec![Packet::Noop]));
        assert!(s.is_finished());
    }

    #[test]
    fn client_close_without_parked_get_answers_a_late_get_with_noop() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        s.send(Data::Text("dropped".into())).unwrap();
        s.on_packets([Packet::Close], t0);
        assert_eq!(
            s.poll_event(),
            Some(Event::Closed(CloseReason::TransportClose)),
            "the application hears of the close at once"
        );
        assert!(s.closed_by_client());
        assert_eq!(s.send(Data::Text("late".into())), Err(SendError::Closed));
        // A GET the client sent before its close, arriving after it.
        assert!(!s.is_finished());
        assert_eq!(
            s.on_get(t0 + CLIENT_CLOSE_GRACE - ms(1)),
            GetOutcome::Respond(vec![Packet::Noop])
        );
        assert!(s.is_finished(), "one GET only");
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn client_close_without_a_get_is_forgotten_after_the_grace() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V3, t0);
        s.on_packets([Packet::Close], t0 + ms(10));
        assert_eq!(s.next_deadline(), Some(t0 + ms(10) + CLIENT_CLOSE_GRACE));
        s.handle_timeout(t0 + ms(9) + CLIENT_CLOSE_GRACE);
        assert!(!s.is_finished());
        s.handle_timeout(t0 + ms(10) + CLIENT_CLOSE_GRACE);
        assert!(s.is_finished());
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn a_stopping_server_gives_up_a_client_closed_session_at_once() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        s.on_packets([Packet::Close], t0);
        assert!(s.abandon_if_polling(), "nothing is left to hand over");
        assert!(s.is_finished());
    }

    #[test]
    fn server_close_on_polling_hands_last_packets_to_next_get() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        s.send(Data::Text("bye".into())).unwrap();
        s.close(CloseReason::ForcedClose, t0);
        assert_eq!(s.send(Data::Text("late".into())), Err(SendError::Closed));
        assert!(!s.is_finished());
        // The last packets first, the close packet on the GET after.
        assert_eq!(s.on_get(t0 + ms(5)), GetOutcome::Respond(vec![text("bye")]));
        assert!(!s.is_finished());
        assert_eq!(
            s.on_get(t0 + ms(6)),
            GetOutcome::Respond(vec![Packet::Close])
        );
        assert!(s.is_finished());
    }

    #[test]
    fn server_close_with_a_parked_get_sends_packets_then_close() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        assert_eq!(s.on_get(t0), GetOutcome::Park);
        s.send(Data::Text("bye".into())).unwrap();
        s.close(CloseReason::ForcedClose, t0);
        assert_eq!(s.take_parked(), Some(vec![text("bye")]));
        assert!(!s.is_finished());
        assert_eq!(
            s.on_get(t0 + ms(1)),
            GetOutcome::Respond(vec![Packet::Close])
        );
        assert!(s.is_finished());
    }

    #[test]
    fn shutdown_drops_idle_pollers_at_once() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        s.close(CloseReason::ServerShuttingDown, t0);
        assert!(s.is_finished(), "nothing to hand over and nobody waiting");
        // With something queued, it waits for the GET that takes it.
        let mut s = polling(ProtocolVersion::V4, t0);
        s.send(Data::Text("bye".into())).unwrap();
        s.close(CloseReason::ServerShuttingDown, t0);
        assert!(!s.is_finished());
    }

    #[test]
    fn a_client_close_ends_a_server_closed_polling_session() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        s.send(Data::Text("bye".into())).unwrap();
        s.close(CloseReason::ServerShuttingDown, t0);
        assert_eq!(s.on_get(t0), GetOutcome::Respond(vec![text("bye")]));
        assert!(
            !s.is_finished(),
            "waiting for a GET to take the close packet"
        );
        s.on_packets([Packet::Close], t0);
        assert!(s.closed_by_client(), "the client has left too");
        assert_eq!(s.close_reason(), Some(CloseReason::ServerShuttingDown));
        // The client left: only a GET that crossed its close may still
        // come, within the grace (here longer than what was left of the
        // linger); it gets the close packet.
        assert_eq!(s.next_deadline(), Some(t0 + ms(500)));
        assert_eq!(s.on_get(t0), GetOutcome::Respond(vec![Packet::Close]));
        assert!(s.is_finished());
        assert_eq!(s.next_deadline(), None);
        // With the reference's timings the linger (45 s) is cut to the
        // grace, and packets still queued are of no use any more.
        let mut s = polling_with(ProtocolVersion::V4, SessionConfig::default(), t0);
        s.send(Data::Text("unread".into())).unwrap();
        s.close(CloseReason::ForcedClose, t0);
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(45)));
        s.on_packets([Packet::Close], t0 + ms(5));
        assert_eq!(s.next_deadline(), Some(t0 + ms(5) + CLIENT_CLOSE_GRACE));
        assert_eq!(
            s.on_get(t0 + ms(6)),
            GetOutcome::Respond(vec![Packet::Close])
        );
        assert!(s.is_finished());
    }

    #[test]
    fn a_stopping_server_gives_up_closed_pollers_not_waiting() {
        let t0 = Instant::now();
        // A client that comes back after the close gets its last packets.
        let mut s = polling(ProtocolVersion::V4, t0);
        assert!(!s.abandon_if_polling(), "an open session is kept");
        s.send(Data::Text("last".into())).unwrap();
        s.send(Data::Text("one more".into())).unwrap();
        s.close(CloseReason::ServerShuttingDown, t0);
        assert_eq!(
            s.on_get(t0),
            GetOutcome::Respond(vec![text("last"), text("one more")])
        );
        s.send(Data::Text("late".into())).unwrap_err();
        assert!(s.abandon_if_polling(), "only the close packet is left");
        assert!(s.is_finished());
        // A client that has not polled since the close has gone: even with
        // packets waiting (a final DISCONNECT), it is given up.
        let mut gone = polling(ProtocolVersion::V4, t0);
        gone.send(Data::Text("never fetched".into())).unwrap();
        gone.close(CloseReason::ServerShuttingDown, t0);
        assert!(gone.abandon_if_polling(), "no GET since the close");
        assert!(gone.is_finished());
        let mut parked = polling(ProtocolVersion::V4, t0);
        assert_eq!(parked.on_get(t0), GetOutcome::Park);
        parked.close(CloseReason::ServerShuttingDown, t0);
        assert!(
            !parked.abandon_if_polling(),
            "a waiting GET gets its answer"
        );
    }

    #[test]
    fn aborted_get_closes_the_session() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        assert_eq!(s.on_get(t0), GetOutcome::Park);
        s.on_get_aborted(t0);
        assert_eq!(
            s.poll_event(),
            Some(Event::Closed(CloseReason::TransportError))
        );
        assert!(!s.has_parked_get());
        assert!(s.is_finished());
        assert_eq!(
            s.send(Data::Text("lost".into())),
            Err(SendError::Closed),
            "nothing is queued after the close"
        );
    }

    #[test]
    fn answered_get_is_not_aborted() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        assert_eq!(s.on_get(t0), GetOutcome::Park);
        assert_eq!(s.send(Data::Text("a".into())), Ok(1));
        assert_eq!(s.take_parked(), Some(vec![text("a")]));
        s.on_get_aborted(t0);
        assert!(!s.is_closed());
        assert_eq!(s.poll_event(), None);
    }

    #[test]
    fn server_close_on_polling_lingers_then_finishes() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        s.close(CloseReason::ForcedClose, t0);
        assert_eq!(s.next_deadline(), Some(t0 + ms(500)));
        s.handle_timeout(t0 + ms(500));
        assert!(s.is_finished());
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn ping_timeout_answers_parked_get_with_close() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        s.handle_timeout(t0 + ms(300));
        assert_eq!(
            s.on_get(t0 + ms(300)),
            GetOutcome::Respond(vec![Packet::Ping(String::new())])
        );
        assert_eq!(s.on_get(t0 + ms(301)), GetOutcome::Park);
        s.handle_timeout(t0 + ms(500));
        assert_eq!(s.take_parked(), Some(vec![Packet::Close]));
        assert!(s.is_finished());
    }

    #[test]
    fn upgrade_probe_noop_then_upgrade_moves_the_outbox() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        assert_eq!(s.on_get(t0), GetOutcome::Park);
        let attempt = s.begin_upgrade(t0).unwrap();
        // Before the probe, polling goes on as usual.
        assert_eq!(s.take_parked(), None);
        assert_eq!(
            s.on_upgrade_packet(attempt, Packet::Ping("probe".into())),
            UpgradeStep::Reply(Packet::Pong("probe".into()))
        );
        // The parked GET is released with a noop, and so is any new one.
        assert_eq!(s.take_parked(), Some(vec![Packet::Noop]));
        assert_eq!(s.on_get(t0), GetOutcome::Respond(vec![Packet::Noop]));
        // Messages queued during the upgrade wait for the WebSocket.
        s.send(Data::Text("held".into())).unwrap();
        let mut out = Vec::new();
        s.take_ws_packets(&mut out);
        assert!(out.is_empty());
        assert_eq!(
            s.on_upgrade_packet(attempt, Packet::Upgrade),
            UpgradeStep::Upgraded
        );
        assert_eq!(s.transport(), TransportKind::WebSocket);
        // The application hears of it once.
        assert_eq!(s.poll_event(), Some(Event::Upgraded));
        assert_eq!(s.poll_event(), None);
        s.take_ws_packets(&mut out);
        assert_eq!(out, vec![text("held")]);
        assert_eq!(s.on_get(t0), GetOutcome::WrongTransport);
        assert_eq!(s.begin_upgrade(t0), Err(UpgradeRefusal::AlreadyUpgraded));
    }

    #[test]
    fn a_second_upgrade_is_refused_while_one_runs() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        let a = s.begin_upgrade(t0).unwrap();
        assert_eq!(s.begin_upgrade(t0), Err(UpgradeRefusal::AlreadyUpgrading));
        s.abort_upgrade(a);
        assert!(!s.upgrade_pending(a));
        let b = s.begin_upgrade(t0).unwrap();
        assert_ne!(a, b);
        // A packet from the stale attempt cannot complete the new one.
        assert_eq!(s.on_upgrade_packet(a, Packet::Upgrade), UpgradeStep::Abort);
        assert!(s.upgrade_pending(b));
    }

    #[test]
    fn upgrade_without_probe_aborts() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        let a = s.begin_upgrade(t0).unwrap();
        assert_eq!(s.on_upgrade_packet(a, Packet::Upgrade), UpgradeStep::Abort);
        assert_eq!(s.transport(), TransportKind::Polling);
        assert!(!s.is_closed());
    }

    #[test]
    fn upgrade_times_out_and_polling_goes_on() {
        let t0 = Instant::now();
        let mut s = polling_with(
            ProtocolVersion::V3,
            SessionConfig {
                upgrade_timeout: ms(100),
                ..config()
            },
            t0,
        );
        let a = s.begin_upgrade(t0).unwrap();
        s.on_upgrade_packet(a, Packet::Ping("probe".into()));
        assert_eq!(s.next_deadline(), Some(t0 + ms(100)));
        s.handle_timeout(t0 + ms(100));
        assert!(!s.upgrade_pending(a));
        s.send(Data::Text("x".into())).unwrap();
        assert_eq!(s.on_get(t0 + ms(100)), GetOutcome::Respond(vec![text("x")]));
    }

    #[test]
    fn websocket_session_client_close_drops_outbox() {
        let t0 = Instant::now();
        let mut s = open_websocket(t0);
        s.send(Data::Text("x".into())).unwrap();
        s.on_packets([Packet::Close], t0);
        let mut out = Vec::new();
        s.take_ws_packets(&mut out);
        assert!(out.is_empty());
        assert!(s.is_finished());
    }

    #[test]
    fn websocket_session_forced_close_flushes_outbox() {
        let t0 = Instant::now();
        let mut s = open_websocket(t0);
        s.send(Data::Text("last".into())).unwrap();
        s.close(CloseReason::ForcedClose, t0);
        let mut out = Vec::new();
        s.take_ws_packets(&mut out);
        assert_eq!(out, vec![text("last")]);
        assert!(s.is_finished());
        assert_eq!(s.begin_upgrade(t0), Err(UpgradeRefusal::Closed));
    }

    #[test]
    fn v3_websocket_holds_its_first_packets_until_the_pong() {
        let t0 = Instant::now();
        let mut s = websocket(ProtocolVersion::V3, t0);
        assert!(s.holds_first_write());
        assert!(s.send(Data::Text("0".into())).is_ok(), "queued meanwhile");
        assert_eq!(s.pop_ws_packet(), None);
        s.handle_timeout(t0 + ms(3));
        assert!(!s.has_ws_packets());
        s.on_ws_pong();
        assert!(!s.holds_first_write());
        let mut out = Vec::new();
        s.take_ws_packets(&mut out);
        assert!(matches!(
            out.as_slice(),
            [Packet::Open(_), Packet::Message(_)]
        ));
        assert_eq!(s.next_deadline(), Some(t0 + ms(500)));
    }

    #[test]
    fn v3_websocket_without_a_pong_writes_after_the_hold() {
        let t0 = Instant::now();
        // The reference's timings: the v3 heartbeat deadline is far.
        let mut s = websocket_with(ProtocolVersion::V3, SessionConfig::default(), t0);
        assert!(s.send(Data::Text("0".into())).is_ok(), "queued meanwhile");
        assert!(!s.has_ws_packets());
        assert_eq!(s.pop_ws_packet(), None);
        assert_eq!(s.next_deadline(), Some(t0 + V3_WEBSOCKET_OPEN_HOLD));
        s.handle_timeout(t0 + V3_WEBSOCKET_OPEN_HOLD - ms(1));
        assert!(!s.has_ws_packets());
        s.handle_timeout(t0 + V3_WEBSOCKET_OPEN_HOLD);
        assert!(s.has_ws_packets());
        let mut out = Vec::new();
        s.take_ws_packets(&mut out);
        assert!(matches!(
            out.as_slice(),
            [Packet::Open(_), Packet::Message(_)]
        ));
        assert!(!s.has_ws_packets());
        // Then the v3 heartbeat deadline, as for any v3 session.
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(45)));
    }

    #[test]
    fn only_v3_websocket_only_sessions_are_held() {
        let t0 = Instant::now();
        let mut v4 = websocket(ProtocolVersion::V4, t0);
        assert!(!v4.holds_first_write());
        assert!(v4.has_ws_packets());
        assert!(matches!(v4.pop_ws_packet(), Some(Packet::Open(_))));
        let mut v3 = polling(ProtocolVersion::V3, t0);
        assert_eq!(v3.next_deadline(), Some(t0 + ms(500)));
        // An upgraded v3 session writes on its WebSocket at once.
        let attempt = v3.begin_upgrade(t0).unwrap();
        v3.on_upgrade_packet(attempt, Packet::Ping("probe".into()));
        v3.send(Data::Text("x".into())).unwrap();
        assert_eq!(
            v3.on_upgrade_packet(attempt, Packet::Upgrade),
            UpgradeStep::Upgraded
        );
        assert!(v3.has_ws_packets());
    }

    #[test]
    fn a_close_releases_the_held_packets() {
        let t0 = Instant::now();
        let mut s = websocket(ProtocolVersion::V3, t0);
        s.send(Data::Text("last".into())).unwrap();
        s.close(CloseReason::ForcedClose, t0 + ms(1));
        let mut out = Vec::new();
        s.take_ws_packets(&mut out);
        assert!(matches!(
            out.as_slice(),
            [Packet::Open(_), Packet::Message(_)]
        ));
        assert!(s.is_finished());
    }

    #[test]
    fn websocket_heartbeat_pings_go_through_outbox() {
        let t0 = Instant::now();
        let mut s = open_websocket(t0);
        let mut out = Vec::new();
        s.handle_timeout(t0 + ms(300));
        s.take_ws_packets(&mut out);
        assert_eq!(out, vec![Packet::Ping(String::new())]);
        s.on_packets([Packet::Pong(String::new())], t0 + ms(310));
        s.handle_timeout(t0 + ms(500));
        assert!(!s.is_closed());
    }

    fn bytes(n: usize) -> Data {
        Data::Binary(vec![0u8; n].into())
    }

    #[test]
    fn the_byte_budget_counts_queued_and_unwritten_bytes() {
        let t0 = Instant::now();
        let mut s = open_websocket(t0);
        // config(): a budget of 1000 bytes.
        assert_eq!(s.send(bytes(400)), Ok(400));
        assert_eq!(s.send(Data::Text("x".repeat(400).into())), Ok(400));
        assert_eq!(s.held_bytes(), 800);
        // The writer takes one: its bytes count until they are written.
        assert!(s.pop_ws_packet().is_some());
        assert_eq!(s.held_bytes(), 800);
        assert_eq!(
            s.send(bytes(201)),
            Err(SendError::TooSlow(Overflow::Bytes {
                held: 800,
                len: 201,
                limit: 1000
            }))
        );
        assert!(!s.is_closed(), "closing is the caller's part");
        assert_eq!(s.send(bytes(200)), Ok(200), "up to the budget exactly");
        s.on_ws_written();
        assert_eq!(s.held_bytes(), 600);
        assert_eq!(s.send(bytes(400)), Ok(400));
        // A GET-less drain: everything popped and written frees it all.
        while s.pop_ws_packet().is_some() {}
        s.on_ws_written();
        assert_eq!(s.held_bytes(), 0);
    }

    #[test]
    fn a_writer_batch_counts_what_it_took_until_written() {
        let t0 = Instant::now();
        let mut s = open_websocket(t0);
        for _ in 0..3 {
            s.send(bytes(100)).unwrap();
        }
        let mut taken = Vec::new();
        // A writer with room for one packet only.
        s.take_ws_batch(|packet| {
            taken.push(packet);
            false
        });
        assert_eq!(taken.len(), 1);
        assert_eq!((s.outbox_len(), s.held_bytes()), (2, 300));
        s.on_ws_written();
        assert_eq!(s.held_bytes(), 200);
        // Closed, the session is finished once the writer took the rest.
        s.close(CloseReason::ForcedClose, t0);
        s.take_ws_batch(|_| true);
        assert!(s.is_finished());
        s.on_ws_written();
        assert_eq!(s.held_bytes(), 0);
    }

    #[test]
    fn one_message_larger_than_the_budget_goes_into_an_empty_queue() {
        let t0 = Instant::now();
        let mut s = open_websocket(t0);
        assert_eq!(s.send(bytes(5000)), Ok(5000));
        assert!(matches!(
            s.send(bytes(1)),
            Err(SendError::TooSlow(Overflow::Bytes { held: 5000, .. }))
        ));
    }

    #[test]
    fn the_packet_limit_holds_with_small_messages() {
        let t0 = Instant::now();
        let mut s = open_websocket(t0);
        // config(): 100 packets.
        for _ in 0..100 {
            assert_eq!(s.send(Data::Text("".into())), Ok(0));
        }
        assert_eq!(
            s.send(Data::Text("".into())),
            Err(SendError::TooSlow(Overflow::Packets {
                queued: 100,
                limit: 100
            }))
        );
        assert_eq!(s.held_bytes(), 0);
    }

    #[test]
    fn polling_gets_and_closes_release_the_bytes() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        s.send(bytes(600)).unwrap();
        assert_eq!(s.held_bytes(), 600);
        assert!(matches!(s.on_get(t0), GetOutcome::Respond(_)));
        assert_eq!(s.held_bytes(), 0);
        s.send(bytes(600)).unwrap();
        s.close(CloseReason::TransportError, t0);
        assert_eq!(s.held_bytes(), 0, "a client-side close drops the queue");
        let mut w = open_websocket(t0);
        w.send(bytes(600)).unwrap();
        w.abandon();
        assert_eq!((w.held_bytes(), w.outbox_len()), (0, 0));
        assert!(w.is_finished());
    }

    #[test]
    fn a_websocket_is_writable_with_nothing_queued_nor_being_written() {
        let t0 = Instant::now();
        let mut s = open_websocket(t0);
        assert!(s.writable());
        s.send(bytes(10)).unwrap();
        assert!(!s.writable(), "something is queued");
        assert!(s.pop_ws_packet().is_some());
        assert!(!s.writable(), "the writer waits for the peer");
        s.on_ws_written();
        assert!(s.writable());
        let mut p = polling(ProtocolVersion::V4, t0);
        assert!(!p.writable(), "no GET to carry it");
        assert_eq!(p.on_get(t0), GetOutcome::Park);
        assert!(p.writable());
    }

    #[test]
    fn a_closed_session_gives_its_writer_a_deadline() {
        let t0 = Instant::now();
        let mut open = open_websocket(t0);
        assert_eq!(open.write_deadline(), None, "an open session waits");
        // No time for a client that is gone, broken or not reading...
        for reason in [
            CloseReason::TransportError,
            CloseReason::PingTimeout,
            CloseReason::TransportClose,
            CloseReason::ParseError,
        ] {
            let mut s = open_websocket(t0);
            s.close(reason, t0 + ms(5));
            assert_eq!(s.write_deadline(), Some(t0 + ms(5)), "{reason}");
        }
        // ...ping_timeout to write the last packets otherwise.
        open.close(CloseReason::ForcedClose, t0 + ms(5));
        assert_eq!(open.write_deadline(), Some(t0 + ms(205)));
        // A stopping server cuts it short, never extends it.
        open.end_write_grace(t0 + ms(50));
        assert_eq!(open.write_deadline(), Some(t0 + ms(50)));
        open.end_write_grace(t0 + ms(100));
        assert_eq!(open.write_deadline(), Some(t0 + ms(50)));
        let mut s = open_websocket(t0);
        s.close(CloseReason::ServerShuttingDown, t0);
        assert_eq!(s.write_deadline(), Some(t0 + ms(200)));
    }

    #[test]
    fn earliest_deadline_of_two() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(1);
        assert_eq!(earliest(None, None), None);
        assert_eq!(earliest(Some(t1), None), Some(t1));
        assert_eq!(earliest(None, Some(t1)), Some(t1));
        assert_eq!(earliest(Some(t1), Some(t0)), Some(t0));
        assert_eq!(earliest(Some(t0), Some(t1)), Some(t0));
    }

    #[test]
    fn messages_become_events_in_order() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        s.on_packets([text("1"), Packet::Noop, text("2")], t0);
        assert_eq!(s.poll_event(), Some(Event::Message(Data::Text("1".into()))));
        assert_eq!(s.poll_event(), Some(Event::Message(Data::Text("2".into()))));
        assert_eq!(s.poll_event(), None);
    }

    #[test]
    fn parse_error_closes() {
        let t0 = Instant::now();
        let mut s = polling(ProtocolVersion::V4, t0);
        s.on_parse_error(t0);
        assert_eq!(s.poll_event(), Some(Event::Closed(CloseReason::ParseError)));
        assert!(s.is_finished());
    }
}
