//! A shard-local (single-threaded) "something changed" signal with any number of waiters.
//!
//! Waiters take a [`Listener`] *before* checking their condition, then await
//! it; any [`Signal::notify`] after that point wakes them, so no wake-up is
//! lost between the check and the wait. A listener dropped before it fired
//! (its task stopped waiting for something else) stops listening: a notify
//! after that would wake a task that no longer waits for it (the WebSocket
//! task woke itself once per echo ack that way). So a task holds at most
//! one listener of a signal at a time: dropping one would stop the waker
//! another listener of the same task relies on.
//!
//! A waker that stopped listening is kept, idle, so that its task listening
//! again (a session's WebSocket task, once per message it reads) finds it
//! and only marks it listening: no clone of the waker (a refcount) to
//! register and no drop to take it back (together about 120 instructions
//! per echo ack). Idle wakers are let go when another task's waker is
//! registered, so they are bounded by the wakers that listened since then.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, RawWakerVTable, Waker};

use smallvec::SmallVec;

#[derive(Default)]
pub struct Signal {
    /// Bumped by every notify. 32 bits, beside `listening` in one word: a
    /// listener would miss a notify only if exactly 2^32 of them came
    /// between its `listen` and its next poll, with its task already woken
    /// by the first.
    generation: Cell<u32>,
    /// How many of `waiters`, from the first, are listening; the rest are
    /// idle (see the module's comment).
    listening: Cell<u32>,
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
        let listening = self.listening.replace(0) as usize;
        if listening == 0 {
            return;
        }
        // Woken outside the borrow; the idle wakers stay.
        let batch: SmallVec<[Waker; 1]> = self.waiters.borrow_mut().drain(..listening).collect();
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

    /// Make `waker` listen: an idle one already there is moved among the
    /// listening (no clone); a new one is cloned in, in place of the idle
    /// ones (their tasks register again if they listen again).
    #[inline]
    fn register(&self, waker: &Waker) {
        let listening = self.listening.get() as usize;
        let waiters = self.waiters.borrow();
        // The usual case: the task's own waker, idle, the first after the
        // listening ones (a session's signal: the only one).
        if waiters.get(listening).is_some_and(|w| w.will_wake(waker)) {
            self.listening.set(listening as u32 + 1);
            return;
        }
        drop(waiters);
        self.register_elsewhere(waker);
    }

    /// [`Signal::register`] when the waker is not the first idle one.
    #[cold]
    #[inline(never)]
    fn register_elsewhere(&self, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        let listening = self.listening.get() as usize;
        let stale: SmallVec<[Waker; 1]> = match waiters.iter().position(|w| w.will_wake(waker)) {
            Some(at) if at < listening => return,
            Some(at) => {
                waiters.swap(at, listening);
                SmallVec::new()
            }
            None => {
                let stale = waiters.drain(listening..).collect();
                waiters.push(waker.clone());
                stale
            }
        };
        self.listening.set(listening as u32 + 1);
        // Dropped outside the borrow.
        drop(waiters);
        drop(stale);
    }

    /// The waker `key` stops listening (it stays, idle).
    #[inline]
    fn unregister(&self, key: WakerKey) {
        let listening = self.listening.get() as usize;
        let mut waiters = self.waiters.borrow_mut();
        // The usual case: the last (a session's signal: the only) listening.
        let last = listening.wrapping_sub(1);
        if waiters.get(last).is_some_and(|w| is_key(w, key)) {
            self.listening.set(last as u32);
            return;
        }
        if let Some(at) = waiters[..listening].iter().position(|w| is_key(w, key)) {
            waiters.swap(at, last);
            self.listening.set(last as u32);
        }
    }
}

pub struct Listener<'a> {
    signal: &'a Signal,
    generation: u32,
    /// Which waker this listener made listen (its data and vtable, what
    /// `Waker::will_wake` compares), to make idle on drop if no notify
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
        this.signal.register(cx.waker());
        this.registered = Some(key_of(cx.waker()));
        Poll::Pending
    }
}

impl Drop for Listener<'_> {
    fn drop(&mut self) {
        let Some(mine) = self.registered else {
            return;
        };
        // Fired: the notify took every listening waker already.
        if self.signal.generation.get() != self.generation {
            return;
        }
        self.signal.unregister(mine);
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
        assert_eq!(signal.listening.get(), 0);
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

    /// A waker that counts its wakes, and the count's handle.
    fn counting_waker() -> (std::sync::Arc<CountingWaker>, Waker) {
        let counter = std::sync::Arc::new(CountingWaker(Default::default()));
        (counter.clone(), Waker::from(counter))
    }

    /// Two tasks wait on one signal; one stops waiting: the other is still woken.
    #[test]
    fn dropping_one_listener_keeps_the_others() {
        let ((first, w1), (second, w2)) = (counting_waker(), counting_waker());
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

    /// The WebSocket task's usual round: the read wins, then it listens
    /// again. Its waker stays, idle, between the two: listening again takes
    /// no clone, and a notify while it is idle wakes nothing.
    #[test]
    fn an_idle_waker_listens_again_without_a_clone() {
        let counter = std::sync::Arc::new(CountingWaker(Default::default()));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let signal = Signal::new();
        let clones = || std::sync::Arc::strong_count(&counter);
        let before = clones();

        let mut listener = Box::pin(signal.listen());
        assert!(listener.as_mut().poll(&mut cx).is_pending());
        assert_eq!(clones(), before + 1);
        drop(listener);
        assert_eq!((signal.listening.get(), clones()), (0, before + 1));
        signal.notify();
        assert_eq!(wakes(&counter), 0);

        for round in 1..=3 {
            let mut listener = Box::pin(signal.listen());
            assert!(listener.as_mut().poll(&mut cx).is_pending());
            assert!(listener.as_mut().poll(&mut cx).is_pending());
            assert_eq!((signal.listening.get(), clones()), (1, before + 1));
            signal.notify();
            assert_eq!(wakes(&counter), round);
            assert!(listener.as_mut().poll(&mut cx).is_ready());
            // The notify took the listening waker (it woke with it).
            assert_eq!(clones(), before);
        }
    }

    /// Another task registering lets the idle wakers go (they are bounded by
    /// the tasks that listened since), and they are not woken.
    #[test]
    fn idle_wakers_go_when_another_task_registers() {
        let ((first, w1), (second, w2)) = (counting_waker(), counting_waker());
        let signal = Signal::new();
        let mut l1 = Box::pin(signal.listen());
        assert!(l1.as_mut().poll(&mut Context::from_waker(&w1)).is_pending());
        drop(l1);
        assert_eq!(std::sync::Arc::strong_count(&first), 3);
        let mut l2 = Box::pin(signal.listen());
        assert!(l2.as_mut().poll(&mut Context::from_waker(&w2)).is_pending());
        assert_eq!(std::sync::Arc::strong_count(&first), 2);
        assert_eq!(signal.waiters.borrow().len(), 1);
        signal.notify();
        assert_eq!((wakes(&first), wakes(&second)), (0, 1));
    }

    /// Of two listening tasks, the one that stops listening is not woken;
    /// the other is, and the first listening again is woken by the next.
    #[test]
    fn one_of_two_stops_listening_then_listens_again() {
        let ((first, w1), (second, w2)) = (counting_waker(), counting_waker());
        let signal = Signal::new();
        let mut l1 = Box::pin(signal.listen());
        let mut l2 = Box::pin(signal.listen());
        assert!(l1.as_mut().poll(&mut Context::from_waker(&w1)).is_pending());
        assert!(l2.as_mut().poll(&mut Context::from_waker(&w2)).is_pending());
        drop(l1);
        let mut l1 = Box::pin(signal.listen());
        assert!(l1.as_mut().poll(&mut Context::from_waker(&w1)).is_pending());
        assert_eq!(signal.listening.get(), 2);
        drop(l2);
        signal.notify();
        assert_eq!((wakes(&first), wakes(&second)), (1, 0));
        assert!(l1.as_mut().poll(&mut Context::from_waker(&w1)).is_ready());
    }
}
