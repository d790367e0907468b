use std::any::Any;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::engineio::session::{CloseReason, Event, SendError, Session, SessionConfig};
use crate::engineio::{Data, ProtocolVersion, Sid, TransportKind};
use crate::signal::Signal;

use super::host::SessionHost;
use super::write_queue::BroadcastSends;
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
    /// Whether the connection is TLS (HTTPS or WSS).
    pub secure: bool,
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
    /// The session id (which names the shard that owns the session).
    pub sid: Sid,
    pub session: RefCell<Session>,
    /// The endpoint the session belongs to, on its shard. A `u16`, beside
    /// the id's bytes and the flags, where a `usize` took a word of its own
    /// (idle memory per connection).
    endpoint: u16,
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
    /// The bytes held for this session as counted in the shard's
    /// `hub_outgoing_buffered_bytes`: raised by every send (the gauge by
    /// the send's [`Tally`]), brought back to the session's own count
    /// after each dispatch (see [`SessionEntry::sync_buffered_gauge`]).
    pub gauged_bytes: Cell<u64>,
    /// While its WebSocket writer is parked (waiting, nothing held, a plain
    /// connection without compression): the connection's descriptor, which
    /// the shard's flusher writes to in the writer's stead, so that a send
    /// costs no task switch of its own. -1 while the writer runs.
    parked_fd: Cell<RawFd>,
    /// Queued for the flusher (see [`super::write_queue`]).
    write_queued: Cell<bool>,
    /// A broadcast's lone packet, taken by the session for the parked
    /// writer and not yet written: its frame's index in the thread's
    /// [`super::write_queue::Frames`]. Written by the flusher before
    /// anything queued, or copied by the writer if it runs first.
    lone_frame: Cell<Option<u32>>,
    /// Bytes the flusher took from the outbox and could not write (the
    /// peer's window was full): the writer, woken, writes them first.
    unwritten: Cell<Vec<u8>>,
    /// The state the layer above keeps for this session (see
    /// [`Socket::set_upper`]).
    upper: UpperSlot,
}

/// The state the layer above the engine keeps for a session (the Socket.IO
/// layer's client), so that it finds it from the session without a lookup
/// by id per message. The engine does not know its type (it is `Any`, the
/// upper layer downcasts it) and holds it weakly: the upper layer owns it,
/// and it holds the session.
#[derive(Default)]
struct UpperSlot(Cell<Option<Weak<dyn Any>>>);

impl UpperSlot {
    fn set(&self, state: Option<Weak<dyn Any>>) {
        self.0.set(state);
    }

    #[inline]
    fn get<T: Any>(&self) -> Option<Rc<T>> {
        // Taken out and put back: a `Cell` lends no reference.
        let weak = self.0.take()?;
        let state = weak.upgrade();
        self.0.set(Some(weak));
        state?.downcast().ok()
    }
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
    /// The endpoint the session belongs to, on its shard.
    pub(crate) fn endpoint(&self) -> usize {
        usize::from(self.endpoint)
    }

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
        let session = Session::new(
            sid.as_str(),
            version,
            transport,
            SessionConfig::default(),
            now,
        );
        let handshake = Arc::new(HandshakeInfo {
            remote_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            url: "/socket.io/?EIO=4&transport=websocket".to_string(),
            query: Pairs::default(),
            headers: Pairs::default(),
            issued: SystemTime::now(),
            secure: false,
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
            session: RefCell::new(session),
            endpoint: u16::try_from(endpoint).expect("fewer than 65,536 endpoints"),
            io_changed: Signal::new(),
            armed_deadline: Cell::new(None),
            handshake,
            handler,
            host,
            dispatch_deferred: Cell::new(false),
            gauged_bytes: Cell::new(0),
            parked_fd: Cell::new(-1),
            write_queued: Cell::new(false),
            lone_frame: Cell::new(None),
            unwritten: Cell::new(Vec::new()),
            upper: UpperSlot::default(),
        })
    }

    /// Hand the session's pending events to the application and wake the IO.
    /// Called by the runtime after every input, from its own tasks: never
    /// from inside the application, and never with the session borrowed.
    ///
    /// A panic in the application is caught where the Socket.IO layer calls
    /// it (with the socket's id); one in the layers above the engine unwinds
    /// out of this call to the task serving the connection, which contains
    /// it (see [`SessionEntry::dispatch_contained`] for the shard's own
    /// tasks). Catching it here too would cost every message a catch.
    pub fn dispatch(self: &Rc<Self>) {
        self.dispatch_deferred.set(false);
        let socket = Socket(self.clone());
        loop {
            let event = self.session.borrow_mut().poll_event();
            match event {
                Some(Event::Message(data)) => {
                    crate::metrics::with(|m| {
                        m.packets_in.inc();
                        m.bytes_in.inc_by(data_len(&data));
                    });
                    self.handler.on_message(&socket, data);
                }
                Some(Event::Upgraded) => self.handler.on_upgrade(&socket),
                Some(Event::Closed(reason)) => {
                    if reason == CloseReason::PacketRateExceeded {
                        self.report_rate_exceeded();
                    }
                    self.handler.on_close(&socket, reason);
                }
                None => break,
            }
        }
        self.io_changed.notify();
        self.sync_buffered_gauge();
        self.rearm_timer();
    }

    /// [`SessionEntry::dispatch`] for a task that serves many sessions (the
    /// shard's clock, its deferred dispatches): a panic while handling this
    /// session's events closes this session only. It is logged with the
    /// session id and counted (`hub_panics_total`); the session's other
    /// events, its close included, are still dispatched.
    pub fn dispatch_contained(self: &Rc<Self>) {
        while let Err(panic) = crate::panics::catch(|| self.dispatch()) {
            tracing::error!(
                sid = self.sid.as_str(),
                panic = %panic,
                "closing a connection whose handler panicked"
            );
            // Each round takes at least the event that panicked: this ends.
            self.session
                .borrow_mut()
                .close(CloseReason::ForcedClose, Instant::now());
        }
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
            per_second = rate.map_or(0, |r| r.per_second()),
            burst = rate.map_or(0, |r| r.burst()),
            "closing a connection over its packet rate"
        );
    }

    /// Bring the shard's gauge of bytes held in outgoing queues in line with
    /// this session's count, which written and dropped packets lowered.
    /// Sends raise both at once, so this costs a comparison per dispatch,
    /// and one gauge update only when the session's writer or a GET took
    /// something since.
    pub(crate) fn sync_buffered_gauge(&self) {
        let change = self.buffered_gauge_change();
        if change != 0 {
            crate::metrics::with(|m| {
                m.outgoing_buffered_bytes.inc_by(change);
            });
        }
    }

    /// As [`SessionEntry::sync_buffered_gauge`], leaving the change of the
    /// gauge to the caller (the shard's flusher adds up a round's).
    pub(crate) fn buffered_gauge_change(&self) -> i64 {
        let held = self.session.borrow().held_bytes() as u64;
        let gauged = self.gauged_bytes.replace(held);
        held as i64 - gauged as i64
    }

    /// The shard forgets the session: nothing it still holds will be
    /// written, so it is dropped (and uncounted) now rather than when the
    /// last handle on the session goes.
    pub(crate) fn release(&self) {
        self.session.borrow_mut().abandon();
        self.sync_buffered_gauge();
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

    /// The WebSocket writer parks: until [`SessionEntry::unpark_writer`],
    /// sends queue the session for the shard's flusher, which writes to `fd`,
    /// instead of waking the writer.
    pub(crate) fn park_writer(&self, fd: RawFd) {
        self.parked_fd.set(fd);
    }

    /// The WebSocket writer runs again: what the flusher could not write,
    /// or the lone packet it did not write yet, which goes out before
    /// anything else.
    pub(crate) fn unpark_writer(&self) -> Vec<u8> {
        self.parked_fd.set(-1);
        let mut unwritten = self.unwritten.take();
        if let Some(index) = self.lone_frame.take() {
            // A lone packet is only taken while nothing is handed back.
            debug_assert!(unwritten.is_empty());
            super::write_queue::copy_frame(index, &mut unwritten);
        }
        unwritten
    }

    /// For the shard's flusher: the lone packet taken for the writer (see
    /// `lone_frame`), to write before what is queued.
    #[inline]
    pub(crate) fn take_lone_frame(&self) -> Option<u32> {
        self.lone_frame.take()
    }

    /// For the shard's flusher: the session leaves its queue; the parked
    /// writer's descriptor, or `None` if the writer runs again (it writes).
    pub(crate) fn take_write_turn(&self) -> Option<RawFd> {
        self.write_queued.set(false);
        Some(self.parked_fd.get()).filter(|&fd| fd >= 0)
    }

    /// For the shard's flusher: hand the writing back to the writer, with
    /// the bytes not written, and wake it.
    pub(crate) fn hand_back(&self, unwritten: Vec<u8>) {
        self.parked_fd.set(-1);
        self.unwritten.set(unwritten);
        self.io_changed.notify();
    }

    /// A send queued something: wake the writer, or queue the session for
    /// the shard's flusher if its writer is parked (one task writes for
    /// every session a broadcast reached, rather than each session's writer
    /// waking for its own).
    // Always inlined: with the hint alone the compiler left it out of line
    // in `Socket::send_broadcast_text` (a call per delivery, 17 Ir of which
    // 10 were the call's own, closed-loop fanout under `scripts/instructions`).
    #[inline(always)]
    fn queued_for_writer(self: &Rc<Self>) {
        if self.parked_fd.get() < 0 {
            self.io_changed.notify();
        } else if !self.write_queued.replace(true) {
            super::write_queue::push(self);
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
        self.0.sid.shard()
    }

    /// Keep the layer above's state for this session, weakly (`None`
    /// forgets it): [`Socket::upper`] finds it without a lookup. The engine
    /// never looks at it.
    pub(crate) fn set_upper(&self, state: Option<Weak<dyn Any>>) {
        self.0.upper.set(state);
    }

    /// The state [`Socket::set_upper`] kept, if it is a `T` and still lives.
    #[inline]
    pub(crate) fn upper<T: Any>(&self) -> Option<Rc<T>> {
        self.0.upper.get()
    }

    /// Queue a message for the client; false once the session is closed.
    /// A client too slow to keep is closed ("transport error") rather than
    /// grow: its queue holds `max_buffered` packets already, or the message
    /// would bring the bytes held for it (queued, or taken by its writer and
    /// not yet written) past `max_buffered_bytes`. That close is logged,
    /// counted (`hub_slow_consumer_disconnects_total`) and deferred (see
    /// [`SessionHost`]): `send` never calls back into the application, so
    /// it may be called anywhere, a room walk included.
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
        let sent = self.0.session.borrow_mut().send(data);
        match sent {
            Ok(len) => {
                let len = len as u64;
                tally.packets += 1;
                tally.bytes += len;
                self.0.gauged_bytes.set(self.0.gauged_bytes.get() + len);
                self.0.queued_for_writer();
                true
            }
            Err(error) => self.refused(error),
        }
    }

    /// As [`Socket::send_tallied`], for a broadcast's text (measured once
    /// for the whole walk by `sends`): not tallied here: the walk adds its
    /// length per delivery to its [`Tally`] once, with
    /// [`Tally::add_deliveries`].
    ///
    /// To a parked writer's session with nothing queued or held (each
    /// recipient at low batching), the packet is a *lone* one: the session
    /// counts it as taken by its writer, and keeps only the index of the
    /// broadcast's frame, which `sends` holds once for every recipient; the
    /// flusher writes that frame as it is. Anywhere else the text is cloned
    /// into the outbox.
    // Out of line, as `send_tallied` is (inlining it gained nothing,
    // docs/benchmarks.md): `scripts/instructions` counts its calls.
    #[inline(never)]
    pub(crate) fn send_broadcast_text(&self, sends: &mut BroadcastSends) -> bool {
        let entry = &self.0;
        let len = sends.len;
        if entry.parked_fd.get() >= 0
            && !entry.write_queued.get()
            && sends.framed
            && entry.session.borrow_mut().take_lone(len)
        {
            entry
                .gauged_bytes
                .set(entry.gauged_bytes.get() + len as u64);
            entry.lone_frame.set(Some(sends.frame_index()));
            entry.write_queued.set(true);
            sends.queue(entry);
            return true;
        }
        self.send_broadcast_queued(sends)
    }

    /// [`Socket::send_broadcast_text`] where the text is queued: out of
    /// line, so that the lone packet's path saves and restores only the
    /// few registers it uses (the queueing path's frame cost it 16
    /// instructions per delivery at fanout-1).
    #[inline(never)]
    fn send_broadcast_queued(&self, sends: &mut BroadcastSends) -> bool {
        let entry = &self.0;
        let len = sends.len;
        let sent = entry
            .session
            .borrow_mut()
            .send_sized(len, || Data::Text(sends.text.clone()));
        match sent {
            Ok(()) => {
                entry
                    .gauged_bytes
                    .set(entry.gauged_bytes.get() + len as u64);
                if entry.parked_fd.get() < 0 {
                    entry.io_changed.notify();
                } else if !entry.write_queued.replace(true) {
                    sends.queue(entry);
                }
                true
            }
            Err(error) => self.refused(error),
        }
    }

    /// A send refused: false, and a slow consumer closed (out of line of
    /// the queueing path, which inlines into every broadcast).
    #[cold]
    #[inline(never)]
    fn refused(&self, error: SendError) -> bool {
        if let SendError::TooSlow(overflow) = error {
            crate::metrics::with(|m| {
                m.slow_consumer_disconnects.inc();
            });
            tracing::info!(
                sid = self.sid(),
                remote = %self.0.handshake.remote_addr,
                "closing a slow consumer: {overflow}"
            );
            self.close_with(CloseReason::TransportError);
        }
        false
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

    /// Bytes of messages held for the client: queued, or taken by its
    /// WebSocket writer and not yet written.
    pub fn buffered_bytes(&self) -> usize {
        self.0.session.borrow().held_bytes()
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
    /// Counts `deliveries` packets of `len` bytes each, queued by
    /// [`Socket::send_broadcast_text`].
    pub(crate) fn add_deliveries(&mut self, deliveries: u64, len: usize) {
        self.packets += deliveries;
        self.bytes += deliveries * len as u64;
    }

    /// Adds the counts to the shard's metrics.
    pub fn flush(&mut self) {
        if self.packets > 0 {
            crate::metrics::with(|m| {
                m.packets_out.inc_by(self.packets);
                m.bytes_out.inc_by(self.bytes);
                m.outgoing_buffered_bytes.inc_by(self.bytes as i64);
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
    use crate::engineio::Text;
    use crate::metrics::Metrics;

    /// A v4 WebSocket session of an echo handler, outside any shard, and
    /// its socket.
    fn websocket() -> (Rc<SessionEntry>, Socket) {
        let entry = SessionEntry::detached(
            Sid::generate(0),
            ProtocolVersion::V4,
            TransportKind::WebSocket,
            Rc::new(Echo),
        );
        let socket = Socket(entry.clone());
        (entry, socket)
    }

    /// Metrics entered as this thread's shard 0's.
    fn shard_metrics() -> Metrics {
        let metrics = Metrics::new();
        crate::metrics::enter(metrics.for_shard(0));
        metrics
    }

    /// The upper layer's state is found while it lives and is asked for as
    /// its own type; forgotten, or dropped, it is not.
    #[test]
    fn the_upper_layers_state_is_kept_weakly() {
        let (_entry, socket) = websocket();
        assert!(socket.upper::<String>().is_none());
        let state = Rc::new(String::from("client"));
        let weak: Weak<dyn Any> = Rc::downgrade(&state) as Weak<dyn Any>;
        socket.set_upper(Some(weak.clone()));
        assert_eq!(
            socket.upper::<String>().as_deref().map(String::as_str),
            Some("client")
        );
        // Asked twice: it stays.
        assert!(socket.clone().upper::<String>().is_some());
        assert!(socket.upper::<u32>().is_none(), "another type");
        socket.set_upper(None);
        assert!(socket.upper::<String>().is_none(), "forgotten");
        socket.set_upper(Some(weak));
        drop(state);
        assert!(socket.upper::<String>().is_none(), "dropped");
    }

    /// While the writer is parked, sends queue the session on the thread's
    /// `WriteQueue` once until the flusher takes it, and the first wakes
    /// the flusher; a writer running again is woken instead.
    #[test]
    fn a_parked_writers_session_is_queued_once_for_the_flusher() {
        use futures_lite::future;

        let queue = crate::engine::WriteQueue::current();
        let mut taken = Vec::new();
        queue.release_frames(queue.take(&mut taken));
        assert!(taken.is_empty(), "a test thread starts with an empty queue");
        let (entry, socket) = websocket();
        // A descriptor the test never writes to: no flusher runs here.
        entry.park_writer(1000);
        let mut woken = Box::pin(queue.ready.listen());
        assert!(socket.send(Data::Text("a".into())));
        assert!(socket.send(Data::Text("b".into())));
        assert!(future::block_on(future::poll_once(&mut woken)).is_some());
        queue.release_frames(queue.take(&mut taken));
        assert_eq!(taken.len(), 1);
        assert!(Rc::ptr_eq(&taken[0], &entry));
        assert_eq!(entry.take_write_turn(), Some(1000));
        taken.clear();
        // Taken by the flusher: the next send queues it again.
        assert!(socket.send(Data::Text("c".into())));
        queue.release_frames(queue.take(&mut taken));
        assert_eq!(taken.len(), 1);
        assert_eq!(entry.take_write_turn(), Some(1000));
        taken.clear();
        // The writer runs again: sends wake it and queue nothing.
        assert!(entry.unpark_writer().is_empty());
        let mut writer = Box::pin(entry.io_changed.listen());
        assert!(socket.send(Data::Text("d".into())));
        assert!(future::block_on(future::poll_once(&mut writer)).is_some());
        queue.release_frames(queue.take(&mut taken));
        assert!(taken.is_empty());
    }

    /// A v4 WebSocket session whose writer has written the open packet and
    /// parked on `fd` (never written to here).
    fn parked_websocket(fd: RawFd) -> (Rc<SessionEntry>, Socket) {
        let (entry, socket) = websocket();
        entry.session.borrow_mut().take_ws_packets(&mut Vec::new());
        entry.park_writer(fd);
        (entry, socket)
    }

    /// A broadcast to a parked writer's session with nothing queued or held
    /// is a lone packet: not in the outbox, its bytes held as taken by the
    /// writer, the session queued once and the broadcast's frame held once
    /// for the walk. A send behind it is queued; a writer that runs before
    /// the flusher gets the frame first.
    #[test]
    fn a_broadcast_to_an_idle_parked_writer_is_a_lone_packet() {
        let queue = crate::engine::WriteQueue::current();
        let mut taken = Vec::new();
        let mark = queue.take(&mut taken);
        queue.release_frames(mark);
        assert!(taken.is_empty(), "a test thread starts with an empty queue");
        let (first, first_socket) = parked_websocket(1000);
        let (second, second_socket) = parked_websocket(1001);
        let text = Text::framed_message("hello");
        let frame = text.ws_message_frame().unwrap().to_vec();
        let mut sends = BroadcastSends::new(&text);
        assert!(first_socket.send_broadcast_text(&mut sends));
        assert!(second_socket.send_broadcast_text(&mut sends));
        drop(sends);
        for socket in [&first_socket, &second_socket] {
            assert_eq!(socket.buffered(), 0, "not in the outbox");
            assert_eq!(socket.buffered_bytes(), text.len(), "held until written");
            assert!(!socket.writable());
        }
        // A second broadcast before the flusher runs queues behind it.
        let next = Text::framed_message("next");
        let mut sends = BroadcastSends::new(&next);
        assert!(first_socket.send_broadcast_text(&mut sends));
        drop(sends);
        assert_eq!(first_socket.buffered(), 1);
        assert_eq!(first_socket.buffered_bytes(), text.len() + next.len());

        let mark = queue.take(&mut taken);
        assert_eq!(taken.len(), 2, "each session queued once");
        assert_eq!(first.take_write_turn(), Some(1000));
        let index = first.take_lone_frame().expect("a lone packet");
        crate::engine::WriteQueue::with_frames(|frames| {
            assert_eq!(frames.frame(index), &frame[..]);
        });
        // The second session's writer runs before the flusher: the frame
        // is its to write, first; the flusher finds nothing left.
        assert_eq!(second.unpark_writer(), frame);
        assert_eq!(second.take_write_turn(), None);
        assert_eq!(second.take_lone_frame(), None);
        assert_eq!(second_socket.buffered_bytes(), text.len(), "until written");
        second.session.borrow_mut().on_ws_written();
        assert_eq!(second_socket.buffered_bytes(), 0);
        taken.clear();
        queue.release_frames(mark);
    }

    /// Only an idle parked writer's session takes a lone packet: a running
    /// writer's, a closed one and one with packets queued do not.
    #[test]
    fn a_broadcast_is_queued_where_a_lone_packet_cannot_go() {
        let queue = crate::engine::WriteQueue::current();
        let (running, running_socket) = websocket();
        running
            .session
            .borrow_mut()
            .take_ws_packets(&mut Vec::new());
        let (_queued, queued_socket) = parked_websocket(1002);
        assert!(queued_socket.send(Data::Text("before".into())));
        let (_closed, closed_socket) = parked_websocket(1003);
        closed_socket.close();
        let text = Text::framed_message("hello");
        let mut sends = BroadcastSends::new(&text);
        assert!(running_socket.send_broadcast_text(&mut sends));
        assert!(queued_socket.send_broadcast_text(&mut sends));
        assert!(!closed_socket.send_broadcast_text(&mut sends));
        drop(sends);
        assert_eq!(running_socket.buffered(), 1);
        assert_eq!(queued_socket.buffered(), 2);
        let mut taken = Vec::new();
        let mark = queue.take(&mut taken);
        assert_eq!(
            taken.len(),
            1,
            "the parked writer's, queued by its first send"
        );
        assert_eq!(taken[0].take_lone_frame(), None);
        taken[0].take_write_turn();
        taken.clear();
        queue.release_frames(mark);
    }

    #[test]
    fn a_client_that_falls_too_far_behind_is_closed() {
        let (entry, socket) = websocket();
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

    fn metric(metrics: &Metrics, name: &str) -> i64 {
        let text = metrics.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn a_client_past_its_byte_budget_is_closed_and_counted() {
        let metrics = shard_metrics();
        let (entry, socket) = websocket();
        let budget = entry.session.borrow().config().max_buffered_bytes;
        let mib = bytes::Bytes::from(vec![7u8; 1 << 20]);
        // Far fewer packets than `max_buffered`: the bytes decide.
        for _ in 0..budget >> 20 {
            assert!(socket.send(Data::Binary(mib.clone())));
        }
        assert_eq!(socket.buffered_bytes(), budget);
        assert_eq!(
            metric(&metrics, "hub_outgoing_buffered_bytes"),
            budget as i64
        );
        assert!(!socket.send(Data::Binary(bytes::Bytes::from_static(b"!"))));
        assert!(socket.is_closed());
        assert_eq!(
            entry.session.borrow().close_reason(),
            Some(CloseReason::TransportError)
        );
        assert_eq!(metric(&metrics, "hub_slow_consumer_disconnects_total"), 1);
        // The queue of a client that is too slow is dropped at once.
        assert_eq!(socket.buffered_bytes(), 0);
        assert!(!socket.send(Data::Text("late".into())), "closed");
        assert_eq!(
            metric(&metrics, "hub_slow_consumer_disconnects_total"),
            1,
            "counted once"
        );
        // Its deferred dispatch brings the gauge back down.
        entry.dispatch();
        assert_eq!(metric(&metrics, "hub_outgoing_buffered_bytes"), 0);
    }

    /// A broadcast's text: queued and gauged per session, counted for the
    /// walk by `Tally::add_deliveries`; a closed session takes nothing.
    #[test]
    fn a_broadcast_text_is_queued_and_counted_once_per_walk() {
        let metrics = shard_metrics();
        let (entry, socket) = websocket();
        let (_closed_entry, closed) = websocket();
        closed.close();
        let text = Text::from("y".repeat(50));
        let len = text.len();
        let queued_before = socket.buffered();
        let mut delivered = 0;
        let mut sends = BroadcastSends::new(&text);
        for recipient in [&socket, &closed] {
            if recipient.send_broadcast_text(&mut sends) {
                delivered += 1;
            }
        }
        drop(sends);
        assert_eq!(delivered, 1, "the closed session refused it");
        assert_eq!(socket.buffered(), queued_before + 1);
        assert_eq!(socket.buffered_bytes(), len);
        assert_eq!(entry.gauged_bytes.get(), len as u64);
        assert_eq!(
            metric(&metrics, "hub_packets_out_total"),
            0,
            "not yet tallied"
        );
        let mut tally = Tally::default();
        tally.add_deliveries(delivered, len);
        tally.flush();
        assert_eq!(metric(&metrics, "hub_packets_out_total"), 1);
        assert_eq!(metric(&metrics, "hub_bytes_out_total"), len as i64);
        assert_eq!(metric(&metrics, "hub_outgoing_buffered_bytes"), len as i64);
    }

    #[test]
    fn the_buffered_bytes_gauge_follows_writes_and_release() {
        let metrics = shard_metrics();
        let (entry, socket) = websocket();
        let mut tally = Tally::default();
        for _ in 0..3 {
            assert!(socket.send_tallied(Data::Text("x".repeat(100).into()), &mut tally));
        }
        assert_eq!(
            metric(&metrics, "hub_outgoing_buffered_bytes"),
            0,
            "a broadcast counts once, at its end"
        );
        tally.flush();
        assert_eq!(metric(&metrics, "hub_outgoing_buffered_bytes"), 300);
        // The writer takes two (open packet first): still held until written.
        for _ in 0..3 {
            assert!(entry.session.borrow_mut().pop_ws_packet().is_some());
        }
        entry.dispatch();
        assert_eq!(metric(&metrics, "hub_outgoing_buffered_bytes"), 300);
        entry.session.borrow_mut().on_ws_written();
        entry.dispatch();
        assert_eq!(metric(&metrics, "hub_outgoing_buffered_bytes"), 100);
        entry.release();
        assert_eq!(metric(&metrics, "hub_outgoing_buffered_bytes"), 0);
        assert!(entry.session.borrow().is_finished());
        assert!(!socket.send(Data::Text("late".into())));
    }
}
