//! A shard-local (single-threaded) "something changed" signal with any number of waiters.
//!
//! Waiters take a [`Listener`] *before* checking their condition, then await
//! it; any [`Signal::notify`] after that point wakes them, so no wake-up is
//! lost between the check and the wait.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use smallvec::SmallVec;

#[derive(Default)]
pub struct Signal {
    generation: Cell<u64>,
    /// Room for one waiter in place: a session's signal has one (its
    /// WebSocket task or parked GET), so notifying it on every broadcast
    /// allocates nothing, and an idle session keeps no heap memory for it.
    waiters: RefCell<SmallVec<[Waker; 1]>>,
}

impl Signal {
    pub fn new() -> Signal {
        Signal::default()
    }

    /// Wake every current listener.
    pub fn notify(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        if self.waiters.borrow().is_empty() {
            return;
        }
        let batch = std::mem::take(&mut *self.waiters.borrow_mut());
        for waker in batch {
            waker.wake();
        }
    }

    /// A future that completes at the first `notify` after this call.
    pub fn listen(&self) -> Listener<'_> {
        Listener {
            signal: self,
            generation: self.generation.get(),
        }
    }
}

pub struct Listener<'a> {
    signal: &'a Signal,
    generation: u64,
}

impl Future for Listener<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut waiters = self.signal.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn notify_before_await_is_not_lost() {
        let signal = Signal::new();
        let listener = signal.listen();
        signal.notify();
        future::block_on(listener);
    }

    #[test]
    fn listener_pends_until_notified() {
        let signal = Signal::new();
        let mut listener = Box::pin(signal.listen());
        assert!(future::block_on(future::poll_once(&mut listener)).is_none());
        signal.notify();
        assert!(future::block_on(future::poll_once(&mut listener)).is_some());
    }
}
