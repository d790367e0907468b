//! The sessions' clock: one task per shard sleeps until the earliest
//! deadline of the shard's sessions and runs the timers of those due.
//!
//! Sessions wait in a queue ordered by the deadline they were queued for.
//! An input that moves a session's deadline earlier queues it again (and
//! wakes the clock if that is now the earliest); one that moves it later
//! leaves it where it is: the clock looks at it then, runs what is due, and
//! queues it for its real next deadline. So a busy session costs the clock
//! nothing, and an idle one a place in the queue rather than a task.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use futures_lite::future;
use glommio::timer::Timer;

use super::state::Shard;
use crate::engine::SessionEntry;
use crate::signal::Signal;

#[derive(Default)]
pub(crate) struct Clock {
    /// (deadline, session) -> session. The key's second half is the
    /// session's address, unique while the queue holds it.
    queue: RefCell<BTreeMap<(Instant, usize), Rc<SessionEntry>>>,
    /// The deadline the clock task sleeps until; None while it runs timers
    /// or waits for a first deadline.
    sleeping_until: Cell<Option<Instant>>,
    /// Wakes the clock task for an earlier deadline.
    changed: Signal,
}

fn key(at: Instant, entry: &SessionEntry) -> (Instant, usize) {
    (at, entry as *const SessionEntry as usize)
}

impl Clock {
    /// Queue `entry` for its next deadline if that is earlier than the one
    /// it is queued for (see [`SessionEntry::rearm_timer`]).
    pub fn rearm(&self, entry: &Rc<SessionEntry>) {
        let Some(next) = entry.session.borrow().next_deadline() else {
            return;
        };
        let armed = entry.armed_deadline.get();
        if armed.is_some_and(|armed| armed <= next) {
            return;
        }
        {
            let mut queue = self.queue.borrow_mut();
            if let Some(armed) = armed {
                queue.remove(&key(armed, entry));
            }
            queue.insert(key(next, entry), entry.clone());
        }
        entry.armed_deadline.set(Some(next));
        let sleeps_past = match self.sleeping_until.get() {
            Some(at) => next < at,
            None => true,
        };
        if sleeps_past {
            self.changed.notify();
        }
    }

    /// Take a forgotten session out of the queue.
    pub fn cancel(&self, entry: &SessionEntry) {
        if let Some(armed) = entry.armed_deadline.take() {
            self.queue.borrow_mut().remove(&key(armed, entry));
        }
    }

    /// The first session due at `now`, out of the queue.
    fn pop_due(&self, now: Instant) -> Option<Rc<SessionEntry>> {
        let mut queue = self.queue.borrow_mut();
        let (&(at, _), _) = queue.first_key_value()?;
        if at > now {
            return None;
        }
        let (_, entry) = queue.pop_first()?;
        entry.armed_deadline.set(None);
        Some(entry)
    }

    fn earliest(&self) -> Option<Instant> {
        self.queue
            .borrow()
            .first_key_value()
            .map(|(&(at, _), _)| at)
    }
}

/// The shard's clock task.
pub(crate) async fn run(shard: Rc<Shard>) {
    let clock = &shard.clock;
    loop {
        let listen = clock.changed.listen();
        let now = Instant::now();
        while let Some(entry) = clock.pop_due(now) {
            entry.session.borrow_mut().handle_timeout(now);
            // Queues the session again for its next deadline, or forgets it
            // once finished.
            shard.settle_contained(entry.endpoint(), &entry);
        }
        let next = clock.earliest();
        clock.sleeping_until.set(next);
        match next {
            Some(at) => {
                future::or(
                    async {
                        Timer::new(at.saturating_duration_since(Instant::now())).await;
                    },
                    listen,
                )
                .await
            }
            None => listen.await,
        }
        clock.sleeping_until.set(None);
    }
}
