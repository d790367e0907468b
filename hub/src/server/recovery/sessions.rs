//! Sessions kept for connection-state recovery on one shard: what a
//! socket that left for a recoverable reason needs to come back (its id,
//! private id, namespace, rooms and data), for the window. Sans-IO: the
//! time comes in as an argument. Bounded in count: past the bound the
//! oldest session goes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ahash::AHashMap;

use crate::server::socket::SocketData;

/// A socket's state, kept after it left.
pub(crate) struct KeptSession {
    pub sid: String,
    pub pid: String,
    pub nsp: String,
    /// Its own room (its id) included.
    pub rooms: Vec<String>,
    pub data: Option<SocketData>,
    pub disconnected_at: Instant,
    /// Restored here from another shard's answer before: how this shard's
    /// log relates to what the socket got (see [`super::Resume`]).
    pub resume: Option<super::Resume>,
}

/// Why no session was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionMiss {
    /// Never kept here, already restored, or evicted for the bound.
    Unknown,
    /// Kept, but for longer than the window.
    Expired,
}

pub(crate) struct SessionStore {
    by_pid: AHashMap<String, KeptSession>,
    /// Pids in the order they were kept, with the time (an entry whose
    /// session was taken, or kept again later, is skipped when it comes up).
    order: VecDeque<(Instant, String)>,
    window: Duration,
    max: usize,
}

impl SessionStore {
    pub fn new(window: Duration, max: usize) -> SessionStore {
        SessionStore {
            by_pid: AHashMap::new(),
            order: VecDeque::new(),
            window,
            max: max.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.by_pid.len()
    }

    /// Places in the keeping order (for tests of its bound).
    #[cfg(test)]
    pub fn order_len(&self) -> usize {
        self.order.len()
    }

    pub fn contains(&self, pid: &str) -> bool {
        self.by_pid.contains_key(pid)
    }

    /// Keep a session. Returns the sessions that went for it: expired, or
    /// the oldest when the bound is reached.
    #[must_use]
    pub fn keep(&mut self, session: KeptSession, now: Instant) -> Vec<KeptSession> {
        let mut gone = self.purge(now);
        while self.by_pid.len() >= self.max {
            match self.pop_oldest() {
                Some(old) => gone.push(old),
                None => break,
            }
        }
        if self.order.len() >= 2 * self.max {
            // Sessions taken back leave their place in the queue until the
            // window passes: drop those places, so that sockets dropping
            // and coming back often cannot grow it past twice the bound.
            let by_pid = &self.by_pid;
            self.order
                .retain(|(at, pid)| by_pid.get(pid).is_some_and(|s| s.disconnected_at == *at));
        }
        self.order
            .push_back((session.disconnected_at, session.pid.clone()));
        self.by_pid.insert(session.pid.clone(), session);
        gone
    }

    /// Take the session of `pid` (it is kept no longer either way). An
    /// expired one's ids (socket id, private id) come back with the miss,
    /// so that they can be forgotten where they are recorded.
    pub fn take(
        &mut self,
        pid: &str,
        now: Instant,
    ) -> Result<KeptSession, (SessionMiss, Option<(String, String)>)> {
        let session = self
            .by_pid
            .remove(pid)
            .ok_or((SessionMiss::Unknown, None))?;
        if now.saturating_duration_since(session.disconnected_at) > self.window {
            return Err((SessionMiss::Expired, Some((session.sid, session.pid))));
        }
        Ok(session)
    }

    /// Drop the sessions kept for longer than the window; they are returned.
    #[must_use]
    pub fn purge(&mut self, now: Instant) -> Vec<KeptSession> {
        let mut gone = Vec::new();
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) <= self.window {
                break;
            }
            let (at, pid) = self.order.pop_front().expect("front exists");
            if self
                .by_pid
                .get(&pid)
                .is_some_and(|s| s.disconnected_at == at)
            {
                gone.extend(self.by_pid.remove(&pid));
            }
        }
        if self.order.is_empty() && self.order.capacity() > 64 {
            self.order = VecDeque::new();
            self.by_pid.shrink_to_fit();
        }
        gone
    }

    fn pop_oldest(&mut self) -> Option<KeptSession> {
        while let Some((at, pid)) = self.order.pop_front() {
            let current = self
                .by_pid
                .get(&pid)
                .is_some_and(|s| s.disconnected_at == at);
            if current {
                return self.by_pid.remove(&pid);
            }
        }
        None
    }
}
