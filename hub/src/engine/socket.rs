use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::engineio::session::{CloseReason, Event, Session};
use crate::engineio::{Data, ProtocolVersion, Sid, TransportKind};
use crate::signal::Signal;

use super::host::SessionHost;
use super::{Handler, Pairs};

/// What the client said when it opened the session. Kept for the session's
/// life and shared (the Socket.IO handshake of each namespace refers to it).
#[derive(Clone, Debug)]
pub struct HandshakeInfo {
    pub remote_addr: SocketAddr,
    /// The request target of the handshake, path and query.
    pub url: String,
    /// The query parameters, in order, Engine.IO's own included.
    pub query: Pairs,
    /// Header names are lower case.
    pub headers: Pairs,
    pub issued: SystemTime,
}

impl HandshakeInfo {
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.get(name)
    }

    pub fn header(&self, lower_name: &str) -> Option<&str> {
        self.headers.get(lower_name)
    }
}

/// A session as a shard holds it: the state machine and the signals that
/// wake its IO.
pub(crate) struct SessionEntry {
    pub sid: Sid,
    pub shard: usize,
    pub session: RefCell<Session>,
    /// The endpoint the session belongs to, on its shard.
    pub endpoint: usize,
    /// The outbox, a parked GET's answer or the upgrade state changed.
    pub io_changed: Signal,
    /// The deadline the session is queued for on its shard's clock (None:
    /// not queued).
    pub armed_deadline: Cell<Option<Instant>>,
    pub handshake: Arc<HandshakeInfo>,
    pub handler: Rc<dyn Handler>,
    /// The runtime hosting the session: its clock and deferred dispatch.
    pub host: Weak<dyn SessionHost>,
    /// Queued on the host for a deferred dispatch.
    pub dispatch_deferred: Cell<bool>,
}

/// The host of a session that has none (see [`SessionEntry::detached`]).
#[cfg(test)]
struct NoHost;

#[cfg(test)]
impl SessionHost for NoHost {
    fn rearm(&self, _entry: &Rc<SessionEntry>) {}

    fn defer_dispatch(&self, _entry: &Rc<SessionEntry>) {}
}

impl SessionEntry {
    /// A session with no transport task or timer behind it, for benchmarks
    /// of the layers above: what is sent to it stays in its outbox, and its
    /// deferred events wait until [`SessionEntry::dispatch`] is called.
    #[cfg(test)]
    pub(crate) fn detached(
        sid: Sid,
        version: ProtocolVersion,
        transport: TransportKind,
        handler: Rc<dyn Handler>,
    ) -> Rc<SessionEntry> {
        Self::detached_on(sid, version, transport, handler, Weak::<NoHost>::new())
    }

    /// As [`SessionEntry::detached`], on a host of the caller's (a test's).
    pub(crate) fn detached_on(
        sid: Sid,
        version: ProtocolVersion,
        transport: TransportKind,
        handler: Rc<dyn Handler>,
        host: Weak<dyn SessionHost>,
    ) -> Rc<SessionEntry> {
        let now = Instant::now();
        let session = Session::new(sid.as_str(), version, transport, Default::default(), now);
        let handshake = Arc::new(HandshakeInfo {
            remote_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            url: "/socket.io/?EIO=4&transport=websocket".to_string(),
            query: Pairs::default(),
            headers: Pairs::default(),
            issued: SystemTime::now(),
        });
        SessionEntry::new(sid, session, 0, handshake, handler, host)
    }

    /// A session of endpoint `endpoint` on the shard its sid names.
    pub(crate) fn new(
        sid: Sid,
        session: Session,
        endpoint: usize,
        handshake: Arc<HandshakeInfo>,
        handler: Rc<dyn Handler>,
        host: Weak<dyn SessionHost>,
    ) -> Rc<SessionEntry> {
        Rc::new(SessionEntry {
            sid,
            shard: sid.shard(),
            session: RefCell::new(session),
            endpoint,
            io_changed: Signal::new(),
            armed_deadline: Cell::new(None),
            handshake,
            handler,
            host,
            dispatch_deferred: Cell::new(false),
        })
    }

    /// Hand the session's pending events to the application and wake the IO.
    /// Called by the runtime after every input, from its own tasks: never
    /// from inside the application, and never with the session borrowed.
    ///
    /// A panic in the application (or in the layers above the engine)
    /// while it handles one of these events closes this session only; it is
    /// logged with the session id and counted (`hub_panics_total`).
    pub fn dispatch(self: &Rc<Self>) {
        self.dispatch_deferred.set(false);
        let socket = Socket(self.clone());
        loop {
            let event = self.session.borrow_mut().poll_event();
            let handled = match event {
                Some(Event::Message(data)) => {
                    crate::metrics::with(|m| {
                        m.packets_in.inc();
                        m.bytes_in.inc_by(data_len(&data));
                    });
                    crate::panics::catch(|| self.handler.on_message(&socket, data))
                }
                Some(Event::Closed(reason)) => {
                    if reason == CloseReason::PacketRateExceeded {
                        self.report_rate_exceeded();
                    }
                    crate::panics::catch(|| self.handler.on_close(&socket, reason))
                }
                None => break,
            };
            if let Err(panic) = handled {
                tracing::error!(
                    sid = self.sid.as_str(),
                    panic = %panic,
                    "closing a connection whose handler panicked"
                );
                // The Closed event this queues is dispatched by this loop.
                self.session
                    .borrow_mut()
                    .close(CloseReason::ForcedClose, Instant::now());
            }
        }
        self.io_changed.notify();
        self.rearm_timer();
    }

    /// The session closed for sending faster than its packet rate: say so,
    /// with the limit, and count it (`hub_rate_limit_disconnects_total`).
    fn report_rate_exceeded(&self) {
        crate::metrics::with(|m| {
            m.rate_limit_disconnects.inc();
        });
        let rate = self.session.borrow().config().packet_rate;
        tracing::info!(
            sid = self.sid.as_str(),
            peer = %self.handshake.remote_addr,
            per_second = rate.map_or(0, |r| r.per_second),
            burst = rate.map_or(0, |r| r.burst),
            "closing a connection over its packet rate"
        );
    }

    /// Dispatch the session's events later, once the current dispatch on
    /// the shard has finished (see [`SessionHost`]); wake its IO now.
    fn defer_dispatch(self: &Rc<Self>) {
        self.io_changed.notify();
        if self.dispatch_deferred.replace(true) {
            return;
        }
        // Detached (no host): whoever drives the session dispatches it.
        if let Some(host) = self.host.upgrade() {
            host.defer_dispatch(self);
        }
    }

    /// Queue the session on its shard's clock when its next deadline is
    /// earlier than the one it is queued for (a later one is found when the
    /// clock gets to the earlier).
    pub fn rearm_timer(self: &Rc<Self>) {
        let next = self.session.borrow().next_deadline();
        let earlier = match (next, self.armed_deadline.get()) {
            (Some(next), Some(armed)) => next < armed,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if earlier {
            if let Some(host) = self.host.upgrade() {
                host.rearm(self);
            }
        }
    }
}

/// A handle on one Engine.IO session, valid on the shard that owns it.
#[derive(Clone)]
pub struct Socket(pub(crate) Rc<SessionEntry>);

impl Socket {
    /// The Engine.IO session id.
    pub fn sid(&self) -> &str {
        self.0.sid.as_str()
    }

    /// The session id as a key, without parsing it back from text.
    pub(crate) fn sid_key(&self) -> Sid {
        self.0.sid
    }

    /// The shard that owns this session.
    pub fn shard(&self) -> usize {
        self.0.shard
    }

    /// Queue a message for the client; false once the session is closed.
    /// A client whose queue passes `max_buffered` packets is too slow to
    /// keep: its session closes ("transport error") rather than grow. That
    /// close is deferred (see [`SessionHost`]): `send` never calls back into
    /// the application, so it may be called anywhere, a room walk included.
    pub fn send(&self, data: Data) -> bool {
        let mut tally = Tally::default();
        let queued = self.send_tallied(data, &mut tally);
        tally.flush();
        queued
    }

    /// As [`Socket::send`], leaving the packet and byte counts in `tally`:
    /// a broadcast adds them to the shard's metrics once, not once per
    /// recipient (the counters are atomics, and were the largest user-space
    /// cost of a fanout).
    pub fn send_tallied(&self, data: Data, tally: &mut Tally) -> bool {
        let len = data_len(&data);
        let (queued, overflow) = {
            let mut session = self.0.session.borrow_mut();
            let overflow = session.outbox_len() >= session.config().max_buffered;
            (!overflow && session.send(data), overflow)
        };
        if overflow {
            crate::metrics::with(|m| {
                m.slow_consumer_disconnects.inc();
            });
            tracing::info!(
                sid = self.sid(),
                "closing a slow consumer: its send queue is full"
            );
            self.close_with(CloseReason::TransportError);
            return false;
        }
        if queued {
            tally.packets += 1;
            tally.bytes += len;
            self.0.io_changed.notify();
        }
        queued
    }

    /// Close the session ("forced close"); what is already queued is still sent.
    pub fn close(&self) {
        self.close_with(CloseReason::ForcedClose);
    }

    /// Close the session for `reason` (a layer above found the input invalid, say).
    ///
    /// The session stops taking messages at once; the application hears
    /// of the close (`Handler::on_close`) after the current dispatch, never
    /// from inside this call, so it may be called from anywhere, a handler
    /// or a room walk included.
    pub fn close_with(&self, reason: CloseReason) {
        self.0.session.borrow_mut().close(reason, Instant::now());
        self.0.defer_dispatch();
    }

    /// Whether a message sent now goes out at once: nothing is queued, and
    /// the transport can write (a WebSocket, or a waiting long poll).
    pub fn writable(&self) -> bool {
        self.0.session.borrow().writable()
    }

    pub fn is_closed(&self) -> bool {
        self.0.session.borrow().is_closed()
    }

    pub fn transport(&self) -> TransportKind {
        self.0.session.borrow().transport()
    }

    pub fn protocol(&self) -> ProtocolVersion {
        self.0.session.borrow().version()
    }

    pub fn handshake(&self) -> &HandshakeInfo {
        &self.0.handshake
    }

    /// The handshake, shared.
    pub(crate) fn handshake_shared(&self) -> Arc<HandshakeInfo> {
        self.0.handshake.clone()
    }

    /// Packets queued and not yet written.
    pub fn buffered(&self) -> usize {
        self.0.session.borrow().outbox_len()
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("sid", &self.sid()).finish()
    }
}

/// Packets and bytes queued by [`Socket::send_tallied`], not yet counted.
#[derive(Debug, Default)]
pub struct Tally {
    packets: u64,
    bytes: u64,
}

impl Tally {
    /// Adds the counts to the shard's metrics.
    pub fn flush(&mut self) {
        if self.packets > 0 {
            crate::metrics::with(|m| {
                m.packets_out.inc_by(self.packets);
                m.bytes_out.inc_by(self.bytes);
            });
        }
        *self = Tally::default();
    }
}

fn data_len(data: &Data) -> u64 {
    match data {
        Data::Text(text) => text.len() as u64,
        Data::Binary(bytes) => bytes.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Echo;

    #[test]
    fn a_client_that_falls_too_far_behind_is_closed() {
        let entry = SessionEntry::detached(
            Sid::generate(0),
            ProtocolVersion::V4,
            TransportKind::WebSocket,
            Rc::new(Echo),
        );
        let socket = Socket(entry.clone());
        let limit = entry.session.borrow().config().max_buffered;
        // The open packet is queued first.
        for _ in 1..limit {
            assert!(socket.send(Data::Text("x".into())));
        }
        assert!(!socket.send(Data::Text("one too many".into())));
        assert!(socket.is_closed());
        assert_eq!(
            entry.session.borrow().close_reason(),
            Some(CloseReason::TransportError)
        );
    }
}
