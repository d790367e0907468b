//! The sessions whose parked WebSocket writers have packets to write: what
//! the shard's flusher writes for them (see [`SessionEntry::park_writer`]).
//!
//! One queue per thread, and so per shard (a shard is one thread), kept here
//! rather than reached through the session's host: a send to a parked
//! writer's session pushes onto it directly. Through the host it upgraded
//! the host's `Weak` and made a dynamic call for each session queued, once
//! per delivery where every delivery is its own write.

use std::cell::RefCell;
use std::rc::Rc;

use super::socket::SessionEntry;
use crate::signal::Signal;

thread_local! {
    /// The sessions queued. Apart from the signal and initialised as a
    /// constant: a push, once per delivery where every delivery is its own
    /// write, reaches it without the lazy initialisation's check and call.
    static SESSIONS: RefCell<Vec<Rc<SessionEntry>>> = const { RefCell::new(Vec::new()) };
    static QUEUE: Rc<WriteQueue> = Rc::default();
}

/// The signal that wakes this thread's flusher, and its way to the
/// sessions queued.
#[derive(Default)]
pub(crate) struct WriteQueue {
    /// Notified by the first session queued into an empty queue.
    pub ready: Signal,
}

impl WriteQueue {
    /// This thread's queue (the flusher keeps it for its lifetime).
    pub fn current() -> Rc<WriteQueue> {
        QUEUE.with(Rc::clone)
    }

    /// Move the queued sessions into `batch`, which must be empty.
    pub fn take(&self, batch: &mut Vec<Rc<SessionEntry>>) {
        debug_assert!(batch.is_empty());
        SESSIONS.with(|sessions| std::mem::swap(batch, &mut *sessions.borrow_mut()));
    }
}

/// Queue `entry` on this thread's queue (at most once until the flusher
/// takes it: see `SessionEntry::take_write_turn`); the first one queued
/// wakes the flusher.
#[inline]
pub(crate) fn push(entry: &Rc<SessionEntry>) {
    let first = SESSIONS.with(|sessions| {
        let mut sessions = sessions.borrow_mut();
        sessions.push(entry.clone());
        sessions.len() == 1
    });
    if first {
        wake_flusher();
    }
}

/// Wake this thread's flusher (out of line: once per round, not per push).
#[inline(never)]
fn wake_flusher() {
    QUEUE.with(|queue| queue.ready.notify());
}
