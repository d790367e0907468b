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
    static QUEUE: Rc<WriteQueue> = Rc::default();
}

/// Sessions queued for the flusher, and the signal that wakes it.
#[derive(Default)]
pub(crate) struct WriteQueue {
    sessions: RefCell<Vec<Rc<SessionEntry>>>,
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
        std::mem::swap(batch, &mut *self.sessions.borrow_mut());
    }
}

/// Queue `entry` on this thread's queue (at most once until the flusher
/// takes it: see `SessionEntry::take_write_turn`); the first one queued
/// wakes the flusher.
#[inline]
pub(crate) fn push(entry: &Rc<SessionEntry>) {
    QUEUE.with(|queue| {
        let mut sessions = queue.sessions.borrow_mut();
        sessions.push(entry.clone());
        if sessions.len() == 1 {
            drop(sessions);
            queue.ready.notify();
        }
    });
}
