//! Connection-state recovery (socket.io 4.6+ `connectionStateRecovery`):
//! a client whose connection drops for a moment comes back, on any shard,
//! with its socket id, rooms and data, and gets the broadcasts it missed.
//!
//! Per shard: a [`RecoveryLog`] per namespace (every broadcast EVENT that
//! reached the shard, not volatile and asking no ack), the
//! [`SessionStore`] of sockets that left for a recoverable reason, and a
//! small relocation map. How a restore across shards loses and repeats
//! nothing is in `docs/architecture.md` ("Connection-state recovery").

mod log;
mod offset;
mod restore;
mod sessions;
#[cfg(test)]
mod shard_tests;
#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use glommio::channels::local_channel::LocalSender;

pub(crate) use log::{LogMiss, LoggedTarget, RecoveryLog, Resume, MAX_KEPT_ANSWER};
pub(crate) use offset::Offset;
pub(crate) use sessions::{KeptSession, SessionMiss, SessionStore};

use super::outgoing::Outgoing;
use super::reason::DisconnectReason;
use super::socket::SocketData;

/// Connection-state recovery settings ([`IoBuilder::recovery`](super::IoBuilder::recovery)).
#[derive(Clone, Debug)]
pub struct RecoveryConfig {
    /// How long a disconnected socket's state and the packets it may miss
    /// are kept (socket.io's `maxDisconnectionDuration`).
    pub window: Duration,
    /// A recovered socket skips the namespace middlewares (socket.io's
    /// `skipMiddlewares`, true by default there too).
    pub skip_middlewares: bool,
    /// Most bytes of packets kept per namespace per shard; past it the
    /// oldest go (a client whose offset went gets a fresh session).
    pub buffer_bytes: usize,
    /// Most bytes of packets kept per shard, every namespace's log
    /// together (dynamic namespaces can be many); past it the oldest
    /// packet of any namespace goes.
    pub shard_buffer_bytes: usize,
    /// Most sessions kept per shard; past it the oldest goes.
    pub max_sessions: usize,
}

impl Default for RecoveryConfig {
    /// socket.io's defaults (2 minutes, middlewares skipped), 8 MiB per
    /// namespace per shard, 64 MiB per shard in all, and 100,000 sessions
    /// per shard.
    fn default() -> Self {
        RecoveryConfig {
            window: Duration::from_secs(120),
            skip_middlewares: true,
            buffer_bytes: 8 << 20,
            shard_buffer_bytes: 64 << 20,
            max_sessions: 100_000,
        }
    }
}

/// Why a recovery failed (the `cause` label of `hub_recoveries_failed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailCause {
    /// No such session kept (never, already restored, evicted, or a
    /// malformed private id or offset).
    Unknown,
    /// The session was older than the window.
    Expired,
    /// The client's offset is no longer held.
    Offset,
    /// Packets the restore needed were evicted for the byte budget.
    Buffer,
    /// The shard holding the session did not answer in time.
    Timeout,
}

impl FailCause {
    pub fn as_str(self) -> &'static str {
        match self {
            FailCause::Unknown => "unknown",
            FailCause::Expired => "expired",
            FailCause::Offset => "offset",
            FailCause::Buffer => "buffer",
            FailCause::Timeout => "timeout",
        }
    }
}

impl From<SessionMiss> for FailCause {
    fn from(miss: SessionMiss) -> Self {
        match miss {
            SessionMiss::Unknown => FailCause::Unknown,
            SessionMiss::Expired => FailCause::Expired,
        }
    }
}

impl From<LogMiss> for FailCause {
    fn from(miss: LogMiss) -> Self {
        match miss {
            LogMiss::Offset => FailCause::Offset,
            LogMiss::Buffer => FailCause::Buffer,
        }
    }
}

/// The reasons after which a socket's state is kept (socket.io's
/// `RECOVERABLE_DISCONNECT_REASONS`).
pub(crate) fn recoverable(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::TransportError
            | DisconnectReason::TransportClose
            | DisconnectReason::ForcedClose
            | DisconnectReason::PingTimeout
            | DisconnectReason::ServerShuttingDown
            | DisconnectReason::ForcedServerClose
    )
}

/// A session given back, with what the socket missed.
pub(crate) struct RestoredSession {
    pub sid: String,
    pub pid: String,
    pub rooms: Vec<String>,
    pub data: Option<SocketData>,
    /// The packets after the client's offset, in the answering shard's
    /// order, with their offsets.
    pub missed: Vec<(Offset, Outgoing)>,
    /// Per origin shard, the highest sequence number the answering shard
    /// had logged (see [`RecoveryLog::replay_above`]).
    pub cut: Vec<u64>,
    /// Answered by this shard itself: what the kept session carried from
    /// an earlier restore from another shard, if anything (it stays with
    /// the socket). Never sent to another shard.
    pub resume: Option<Resume>,
}

pub(crate) type RestoreAnswer = Result<RestoredSession, FailCause>;

/// The recovery state of one shard.
pub(crate) struct RecoveryShard {
    pub config: RecoveryConfig,
    shard: usize,
    next_seq: Cell<u64>,
    logs: RefCell<AHashMap<String, RecoveryLog>>,
    /// Bytes held by every log (bounded by `shard_buffer_bytes`).
    total_bytes: Cell<usize>,
    sessions: RefCell<SessionStore>,
    /// On the shard a socket id (or private id) names: where the socket
    /// lives (or its session is kept) now, when that is another shard.
    moved: RefCell<AHashMap<String, usize>>,
    /// Restored sockets of this shard (by key) and the cut of the answer
    /// that restored them: a broadcast from another shard at or below it
    /// (per origin) was in the answer or had reached the client, so it is
    /// not delivered to them again. Bounded by the restored sockets alive.
    cuts: RefCell<AHashMap<u64, Resume>>,
    /// The place of the next entry logged on this shard, every namespace.
    next_pos: Cell<u64>,
    /// This shard's restores waiting for another shard's answer.
    pub(crate) waiting: RefCell<AHashMap<u64, LocalSender<RestoreAnswer>>>,
    next_request: Cell<u64>,
    /// A purge task runs.
    pub(crate) purging: Cell<bool>,
}

impl RecoveryShard {
    pub fn new(config: RecoveryConfig, shard: usize) -> RecoveryShard {
        let sessions = SessionStore::new(config.window, config.max_sessions);
        RecoveryShard {
            config,
            shard,
            next_seq: Cell::new(0),
            logs: RefCell::new(AHashMap::new()),
            total_bytes: Cell::new(0),
            sessions: RefCell::new(sessions),
            moved: RefCell::new(AHashMap::new()),
            cuts: RefCell::new(AHashMap::new()),
            next_pos: Cell::new(0),
            waiting: RefCell::new(AHashMap::new()),
            next_request: Cell::new(0),
            purging: Cell::new(false),
        }
    }

    /// The offset of the next packet this shard encodes.
    pub fn next_offset(&self) -> Offset {
        let seq = self.next_seq.get() + 1;
        self.next_seq.set(seq);
        Offset::new(self.shard, seq)
    }

    pub fn next_request(&self) -> u64 {
        let id = self.next_request.get();
        self.next_request.set(id + 1);
        id
    }

    /// Keep a packet in namespace `nsp`'s log.
    pub fn log(&self, nsp: &str, offset: Offset, target: Arc<LoggedTarget>, packet: Outgoing) {
        self.log_at(Instant::now(), nsp, offset, target, packet);
    }

    /// [`RecoveryShard::log`] at `now`. Past the shard's budget, the
    /// oldest packet of whichever log holds it goes (a linear look over
    /// the logs, only while over the budget: there are few logs unless
    /// dynamic namespaces are many).
    pub(crate) fn log_at(
        &self,
        now: Instant,
        nsp: &str,
        offset: Offset,
        target: Arc<LoggedTarget>,
        packet: Outgoing,
    ) {
        let mut logs = self.logs.borrow_mut();
        let log = match logs.get_mut(nsp) {
            Some(log) => log,
            None => logs
                .entry(nsp.to_string())
                .or_insert_with(|| RecoveryLog::new(self.config.window, self.config.buffer_bytes)),
        };
        let pos = self.next_pos.get();
        self.next_pos.set(pos + 1);
        let mut change = log.push(pos, offset, now, target, packet);
        let mut total = self.total_bytes.get().saturating_add_signed(change);
        if total > self.config.shard_buffer_bytes {
            // Oldest first across the logs, down to 7/8 of the budget, so
            // that the logs are looked over once per eighth of the budget,
            // not once per packet.
            let low = self.config.shard_buffer_bytes - self.config.shard_buffer_bytes / 8;
            let mut fronts: BinaryHeap<Reverse<(Instant, String)>> = logs
                .iter()
                .filter_map(|(name, log)| Some(Reverse((log.oldest()?, name.clone()))))
                .collect();
            while total > low {
                let Some(Reverse((_, name))) = fronts.pop() else {
                    break;
                };
                let Some(log) = logs.get_mut(&name) else {
                    continue;
                };
                let evicted = log.evict_oldest();
                change += evicted;
                total = total.saturating_add_signed(evicted);
                if let Some(at) = log.oldest() {
                    fronts.push(Reverse((at, name)));
                }
            }
        }
        self.total_bytes.set(total);
        bytes_held(change);
    }

    /// Where this shard's logs stand: entries logged from now on come at
    /// or after it.
    pub fn position(&self) -> u64 {
        self.next_pos.get()
    }

    /// Keep the state of a socket that left.
    pub fn keep(&self, session: KeptSession) -> Vec<KeptSession> {
        let gone = self.sessions.borrow_mut().keep(session, Instant::now());
        self.sessions_gauge();
        gone
    }

    /// Answer a restore of `pid` in namespace `nsp` after `offset`, from
    /// this shard's store and log. Synchronous: the cut is what the log
    /// holds at this instant. With a failure, the ids of a session that was
    /// taken and not given back (expired, or its offset no longer held),
    /// to be forgotten where they are recorded.
    pub fn answer(
        &self,
        pid: &str,
        nsp: &str,
        offset: Offset,
    ) -> (RestoreAnswer, Vec<(String, String)>) {
        let now = Instant::now();
        let taken = self.sessions.borrow_mut().take(pid, now);
        self.sessions_gauge();
        let session = match taken {
            Ok(session) => session,
            Err((miss, ids)) => return (Err(miss.into()), ids.into_iter().collect()),
        };
        if session.nsp != nsp {
            // Another namespace's session: not this client's to take.
            let gone = self.sessions.borrow_mut().keep(session, now);
            self.sessions_gauge();
            let gone = gone.into_iter().map(|s| (s.sid, s.pid)).collect();
            return (Err(FailCause::Unknown), gone);
        }
        let logs = self.logs.borrow();
        let missed = logs.get(nsp).ok_or(LogMiss::Offset).and_then(|log| {
            let rooms = session.rooms.iter().map(String::as_str);
            let missed = log.missed_after(offset, rooms, session.resume.as_ref())?;
            Ok((missed, log.cut()))
        });
        match missed {
            Ok((missed, cut)) => (
                Ok(RestoredSession {
                    cut,
                    sid: session.sid,
                    pid: session.pid,
                    rooms: session.rooms,
                    data: session.data,
                    missed,
                    resume: session.resume,
                }),
                Vec::new(),
            ),
            Err(miss) => (Err(miss.into()), vec![(session.sid, session.pid)]),
        }
    }

    /// Whether this shard keeps a session under `pid`.
    pub fn holds(&self, pid: &str) -> bool {
        self.sessions.borrow().contains(pid)
    }

    /// What this shard's log of `nsp` holds above another shard's cut for
    /// a socket in `rooms`.
    pub fn replay_above(
        &self,
        nsp: &str,
        cut: &[u64],
        rooms: &[String],
    ) -> Result<Vec<Outgoing>, FailCause> {
        match self.logs.borrow().get(nsp) {
            Some(log) => Ok(log.replay_above(cut, rooms.iter().map(String::as_str))?),
            None => Ok(Vec::new()),
        }
    }

    /// Socket `key` was restored from another shard's answer: see `cuts`.
    pub fn skip_through(&self, key: u64, resume: Resume) {
        self.cuts.borrow_mut().insert(key, resume);
    }

    /// What socket `key` carries from its restore, if it was restored
    /// from another shard's answer.
    pub fn resume_of(&self, key: u64) -> Option<Resume> {
        self.cuts.borrow().get(&key).cloned()
    }

    /// Socket `key` left.
    pub fn forget_cut(&self, key: u64) {
        let mut cuts = self.cuts.borrow_mut();
        if cuts.remove(&key).is_some() && cuts.is_empty() && cuts.capacity() > 64 {
            cuts.shrink_to_fit();
        }
    }

    /// Whether any socket of this shard has a cut (the per-recipient check
    /// is skipped otherwise).
    pub fn any_cut(&self) -> bool {
        !self.cuts.borrow().is_empty()
    }

    /// Whether a packet with `offset` is one restored socket `key` must
    /// not get from a live broadcast.
    pub fn covered(&self, key: u64, offset: Offset) -> bool {
        self.cuts
            .borrow()
            .get(&key)
            .is_some_and(|resume| resume.covers(offset))
    }

    /// Where a socket id or private id named by this shard lives now.
    pub fn moved_to(&self, key: &str) -> Option<usize> {
        self.moved.borrow().get(key).copied()
    }

    pub fn any_moved(&self) -> bool {
        !self.moved.borrow().is_empty()
    }

    /// Record (or forget, with None) that a socket named by this shard
    /// lives on `to`.
    pub fn set_moved(&self, sid: &str, pid: &str, to: Option<usize>) {
        let mut moved = self.moved.borrow_mut();
        match to {
            Some(to) if to != self.shard => {
                moved.insert(sid.to_string(), to);
                moved.insert(pid.to_string(), to);
            }
            _ => {
                moved.remove(sid);
                moved.remove(pid);
                if moved.is_empty() && moved.capacity() > 64 {
                    moved.shrink_to_fit();
                }
            }
        }
    }

    /// Drop what is older than the window: returns the sessions that went.
    pub fn purge(&self) -> Vec<KeptSession> {
        let now = Instant::now();
        let mut change = 0;
        self.logs.borrow_mut().retain(|_, log| {
            change += log.purge(now);
            !log.is_empty()
        });
        self.total_bytes
            .set(self.total_bytes.get().saturating_add_signed(change));
        bytes_held(change);
        let gone = self.sessions.borrow_mut().purge(now);
        self.sessions_gauge();
        gone
    }

    /// Sessions kept.
    pub fn session_count(&self) -> usize {
        self.sessions.borrow().len()
    }

    /// Bytes of packets kept, every namespace.
    pub fn bytes_held(&self) -> usize {
        self.total_bytes.get()
    }

    /// Whether anything is held (the purge task stops when nothing is).
    pub fn holds_anything(&self) -> bool {
        self.sessions.borrow().len() > 0 || !self.logs.borrow().is_empty()
    }

    fn sessions_gauge(&self) {
        let count = self.sessions.borrow().len() as i64;
        crate::metrics::with(|m| {
            m.recovery_sessions.set(count);
        });
    }
}

fn bytes_held(change: isize) {
    if change != 0 {
        crate::metrics::with(|m| {
            m.recovery_bytes.inc_by(change as i64);
        });
    }
}

/// A recovery attempt and how it ended, counted.
pub(crate) fn count_attempt(outcome: Result<(), FailCause>) {
    match outcome {
        Ok(()) => tracing::debug!("connection state recovered"),
        Err(cause) => tracing::debug!(
            cause = cause.as_str(),
            "connection state not recovered: a fresh session"
        ),
    }
    crate::metrics::with(|m| {
        m.recoveries_attempted.inc();
        match outcome {
            Ok(()) => {
                m.recoveries_succeeded.inc();
            }
            Err(cause) => {
                m.recovery_failed(cause.as_str()).inc();
            }
        }
    });
}

/// Purge every window (at most every minute, as socket.io) while anything
/// is held on the shard.
pub(crate) async fn purge_task(
    shard: std::rc::Weak<super::shard::SioShard>,
    recovery: Rc<RecoveryShard>,
) {
    let period = recovery
        .config
        .window
        .clamp(Duration::from_millis(100), Duration::from_secs(60));
    loop {
        glommio::timer::Timer::new(period).await;
        let gone = recovery.purge();
        let Some(shard) = shard.upgrade() else {
            return;
        };
        shard.sessions_gone(gone);
        if !recovery.holds_anything() {
            recovery.purging.set(false);
            return;
        }
    }
}
