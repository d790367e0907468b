//! Sessions whose events wait until the current dispatch has finished.
//!
//! A send that finds its client too slow, or an application that closes a
//! session from inside a handler, marks the session closed and queues it
//! here (`SessionHost::defer_dispatch`); this shard's task then dispatches
//! its events (the application's close handlers, leaving rooms) from the
//! top of a task of its own, where no borrow of the caller is live.

use std::cell::RefCell;
use std::rc::Rc;

use super::state::Shard;
use crate::engine::SessionEntry;
use crate::signal::Signal;

#[derive(Default)]
pub(crate) struct Deferred {
    queue: RefCell<Vec<Rc<SessionEntry>>>,
    ready: Signal,
}

impl Deferred {
    pub fn push(&self, entry: &Rc<SessionEntry>) {
        self.queue.borrow_mut().push(entry.clone());
        self.ready.notify();
    }

    pub fn len(&self) -> usize {
        self.queue.borrow().len()
    }
}

/// The shard's task that dispatches deferred sessions, in the order they
/// were queued.
pub(crate) async fn run(shard: Rc<Shard>) {
    let mut batch = Vec::new();
    loop {
        let listen = shard.deferred.ready.listen();
        std::mem::swap(&mut batch, &mut *shard.deferred.queue.borrow_mut());
        if batch.is_empty() {
            listen.await;
            continue;
        }
        for entry in batch.drain(..) {
            shard.settle_contained(entry.endpoint(), &entry);
        }
    }
}
