//! A shard-local (single-threaded) "something changed" signal with any number of waiters.
//!
//! Waiters take a [`Listener`] *before* checking their condition, then await
//! it; any [`Signal::notify`] after that point wakes them, so no wake-up is
//! lost between the check and the wait. A listener dropped before it fired
//! (its task stopped waiting for something else) takes its waker back: a
//! notify after that would wake a task that no longer waits for it (the
//! WebSocket task woke itself once per echo ack that way). So a task holds
//! at most one listener of a signal at a time: dropping one would take back
//! the waker another listener of the same task relies on.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, RawWakerVTable, Waker};

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
            registered: None,
        }
    }
}

pub struct Listener<'a> {
    signal: &'a Signal,
    generation: u64,
    /// Which waker this listener left in `waiters` (its data and vtable,
    /// what `Waker::will_wake` compares), to take back on drop if no notify
    /// took it. Not a clone: that would cost a refcount both ways per wait.
    registered: Option<WakerKey>,
}

type WakerKey = (*const (), &'static RawWakerVTable);

fn key_of(waker: &Waker) -> WakerKey {
    (waker.data(), waker.vtable())
}

fn is_key(waker: &Waker, key: WakerKey) -> bool {
    std::ptr::eq(waker.data(), key.0) && std::ptr::eq(waker.vtable(), key.1)
}

impl Future for Listener<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let this = self.get_mut();
        let mut waiters = this.signal.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        this.registered = Some(key_of(cx.waker()));
        Poll::Pending
    }
}

impl Drop for Listener<'_> {
    fn drop(&mut self) {
        let Some(mine) = self.registered else {
            return;
        };
        // Fired: the notify took every waker already.
        if self.signal.generation.get() != self.generation {
            return;
        }
        let mut waiters = self.signal.waiters.borrow_mut();
        if let Some(at) = waiters.iter().position(|w| is_key(w, mine)) {
            waiters.swap_remove(at);
        }
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

    /// A waker that counts its wakes.
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn wakes(waker: &std::sync::Arc<CountingWaker>) -> usize {
        waker.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The WebSocket task's round: it waits for a read or a notify, the read
    /// wins (the listener is dropped unfired), a notify follows while it
    /// works, then it listens again. The notify must not wake it (it was not
    /// waiting), and the next one must.
    #[test]
    fn read_wins_then_notify_then_listen_again() {
        let counter = std::sync::Arc::new(CountingWaker(Default::default()));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let signal = Signal::new();

        let mut listener = Box::pin(signal.listen());
        assert!(listener.as_mut().poll(&mut cx).is_pending());
        // The read won: the wait ends without the listener firing.
        drop(listener);
        assert!(signal.waiters.borrow().is_empty());
        signal.notify();
        assert_eq!(wakes(&counter), 0, "a task that no longer waits was woken");

        // Waiting again: a notify between `listen` and the first poll is
        // not lost, and one after the poll wakes the task.
        let mut listener = Box::pin(signal.listen());
        signal.notify();
        assert!(listener.as_mut().poll(&mut cx).is_ready());
        drop(listener);
        let mut listener = Box::pin(signal.listen());
        assert!(listener.as_mut().poll(&mut cx).is_pending());
        signal.notify();
        assert_eq!(wakes(&counter), 1);
        assert!(listener.as_mut().poll(&mut cx).is_ready());
    }

    /// Two tasks wait on one signal; one stops waiting: the other is still woken.
    #[test]
    fn dropping_one_listener_keeps_the_others() {
        let first = std::sync::Arc::new(CountingWaker(Default::default()));
        let second = std::sync::Arc::new(CountingWaker(Default::default()));
        let (w1, w2) = (Waker::from(first.clone()), Waker::from(second.clone()));
        let signal = Signal::new();
        let mut l1 = Box::pin(signal.listen());
        let mut l2 = Box::pin(signal.listen());
        assert!(l1.as_mut().poll(&mut Context::from_waker(&w1)).is_pending());
        assert!(l2.as_mut().poll(&mut Context::from_waker(&w2)).is_pending());
        drop(l1);
        signal.notify();
        assert_eq!((wakes(&first), wakes(&second)), (0, 1));
        assert!(l2.as_mut().poll(&mut Context::from_waker(&w2)).is_ready());
    }
}
