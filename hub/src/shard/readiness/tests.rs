use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use super::{ReadReadiness, Readiness, Token, IGNORED_USER_DATA};

/// A waker that counts its wakes.
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counter() -> (Arc<Counter>, Waker) {
    let counter = Arc::new(Counter(AtomicUsize::new(0)));
    (counter.clone(), Waker::from(counter))
}

fn poll(table: &mut Readiness, token: Token, waker: &Waker) -> Poll<ReadReadiness> {
    table.poll_read_ready(token, &mut Context::from_waker(waker))
}

const POLLIN: i32 = libc::POLLIN as i32;

/// The waker a readable completion of `token`'s (still armed) poll hands
/// out: a reader waits.
fn woken_by_completion(table: &mut Readiness, token: Token) -> Waker {
    table
        .handle_completion(token.user_data(), POLLIN, true)
        .wake
        .expect("a reader waits")
}

/// Whether the slot of the table's first registration keeps `waker`.
fn keeps(table: &Readiness, waker: &Waker) -> bool {
    table.slots[0]
        .waker
        .as_ref()
        .is_some_and(|kept| kept.will_wake(waker))
}

#[test]
fn a_new_registration_is_ready_then_waits_once_cleared() {
    let mut table = Readiness::default();
    let token = table.register(7);
    let (count, waker) = counter();
    assert_eq!(
        poll(&mut table, token, &waker),
        Poll::Ready(ReadReadiness::Ready)
    );
    table.clear_ready(token);
    assert_eq!(poll(&mut table, token, &waker), Poll::Pending);
    let done = table.handle_completion(token.user_data(), POLLIN, true);
    assert!(done.rearm.is_none());
    done.wake.expect("the reader waits").wake();
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        poll(&mut table, token, &waker),
        Poll::Ready(ReadReadiness::Ready)
    );
    assert_eq!(table.registered(), 1);
}

#[test]
fn a_completion_without_a_waiting_reader_leaves_it_ready() {
    let mut table = Readiness::default();
    let token = table.register(7);
    table.clear_ready(token);
    let done = table.handle_completion(token.user_data(), POLLIN, true);
    assert!(done.wake.is_none());
    let (_, waker) = counter();
    assert_eq!(
        poll(&mut table, token, &waker),
        Poll::Ready(ReadReadiness::Ready)
    );
}

#[test]
fn a_stale_generation_after_slot_reuse_is_ignored() {
    let mut table = Readiness::default();
    let old = table.register(7);
    table.deregister(old);
    assert_eq!(table.registered(), 0);
    let new = table.register(9);
    assert_ne!(
        old.user_data(),
        new.user_data(),
        "the slot is reused with a new generation"
    );
    assert_eq!(old.slot, new.slot);
    table.clear_ready(new);
    let (count, waker) = counter();
    assert_eq!(poll(&mut table, new, &waker), Poll::Pending);
    // The old poll's last completion (cancelled) and a late event.
    let late = table.handle_completion(old.user_data(), POLLIN, true);
    assert!(late.wake.is_none() && late.rearm.is_none());
    let cancelled = table.handle_completion(old.user_data(), -libc::ECANCELED, false);
    assert!(cancelled.wake.is_none() && cancelled.rearm.is_none());
    assert_eq!(poll(&mut table, new, &waker), Poll::Pending);
    assert_eq!(count.0.load(Ordering::SeqCst), 0);
    // The old token reads through nothing of the new connection's.
    assert_eq!(
        poll(&mut table, old, &waker),
        Poll::Ready(ReadReadiness::Unwatched)
    );
}

#[test]
fn an_ended_multishot_poll_asks_for_a_rearm_with_the_same_token() {
    let mut table = Readiness::default();
    let token = table.register(11);
    table.clear_ready(token);
    let (_, waker) = counter();
    assert_eq!(poll(&mut table, token, &waker), Poll::Pending);
    let done = table.handle_completion(token.user_data(), POLLIN, false);
    assert_eq!(done.rearm, Some((11, token)));
    assert!(
        done.wake.is_some(),
        "the event it carried still wakes the reader"
    );
    assert_eq!(
        poll(&mut table, token, &waker),
        Poll::Ready(ReadReadiness::Ready)
    );
}

#[test]
fn a_failed_poll_is_not_rearmed_and_the_reader_falls_back() {
    let mut table = Readiness::default();
    let token = table.register(11);
    table.clear_ready(token);
    let (count, waker) = counter();
    assert_eq!(poll(&mut table, token, &waker), Poll::Pending);
    let done = table.handle_completion(token.user_data(), -libc::ENOMEM, false);
    assert!(done.rearm.is_none());
    done.wake.expect("the reader waits").wake();
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        poll(&mut table, token, &waker),
        Poll::Ready(ReadReadiness::Unwatched)
    );
}

#[test]
fn the_waker_is_replaced_by_a_later_reader() {
    let mut table = Readiness::default();
    let token = table.register(3);
    table.clear_ready(token);
    let (first, first_waker) = counter();
    let (second, second_waker) = counter();
    assert_eq!(poll(&mut table, token, &first_waker), Poll::Pending);
    assert_eq!(poll(&mut table, token, &second_waker), Poll::Pending);
    woken_by_completion(&mut table, token).wake();
    assert_eq!(first.0.load(Ordering::SeqCst), 0);
    assert_eq!(second.0.load(Ordering::SeqCst), 1);
}

#[test]
fn removal_completions_are_ignored() {
    let mut table = Readiness::default();
    let token = table.register(3);
    table.clear_ready(token);
    let done = table.handle_completion(IGNORED_USER_DATA, 0, false);
    assert!(done.wake.is_none() && done.rearm.is_none());
    let (_, waker) = counter();
    assert_eq!(poll(&mut table, token, &waker), Poll::Pending);
}

#[test]
fn generations_skip_the_ignored_user_data() {
    let mut table = Readiness::default();
    let mut token = table.register(1);
    table.slots[0].generation = u32::MAX - 1;
    token.generation = u32::MAX - 1;
    table.deregister(token);
    let next = table.register(1);
    assert_eq!(next.generation, 0);
    assert_ne!(next.user_data(), IGNORED_USER_DATA);
}

#[test]
fn unwatch_all_wakes_every_waiting_reader() {
    let mut table = Readiness::default();
    let a = table.register(1);
    let b = table.register(2);
    let gone = table.register(3);
    table.deregister(gone);
    table.clear_ready(a);
    table.clear_ready(b);
    let (count, waker) = counter();
    assert_eq!(poll(&mut table, a, &waker), Poll::Pending);
    assert_eq!(poll(&mut table, b, &waker), Poll::Pending);
    assert_eq!(table.watched(), 2);
    for waker in table.unwatch_all() {
        waker.wake();
    }
    assert_eq!(count.0.load(Ordering::SeqCst), 2);
    assert_eq!(table.watched(), 0);
    assert_eq!(
        poll(&mut table, a, &waker),
        Poll::Ready(ReadReadiness::Unwatched)
    );
    // A completion still queued for a poll of the ring given up (an ended
    // multishot poll, say) neither wakes nor asks for a re-arm: a poll
    // armed again would watch a connection whose reader no longer looks.
    let done = table.handle_completion(a.user_data(), POLLIN, false);
    assert!(done.wake.is_none() && done.rearm.is_none());
    assert_eq!(
        poll(&mut table, a, &waker),
        Poll::Ready(ReadReadiness::Unwatched)
    );
    // Unwatching twice changes nothing.
    assert!(table.unwatch_all().is_empty());
    assert_eq!(table.watched(), 0);
    table.deregister(a);
    table.deregister(b);
    assert_eq!(table.watched(), 0);
    assert_eq!(table.registered(), 0);
}

#[test]
fn a_short_read_waits_for_the_poll_unless_the_peer_ended() {
    let mut table = Readiness::default();
    let token = table.register(7);
    let (_, waker) = counter();
    // Plain bytes: a short read emptied the queue, a later byte posts.
    let _ = table.handle_completion(token.user_data(), POLLIN, true);
    table.read_short(token);
    assert_eq!(poll(&mut table, token, &waker), Poll::Pending);
    // Bytes and the FIN in one segment: the read that takes the bytes
    // takes the FIN too, and no wakeup follows, so the reader must read
    // again (and find the end) without waiting.
    let rdhup = (libc::POLLIN | libc::POLLRDHUP) as i32;
    let _ = table.handle_completion(token.user_data(), rdhup, true);
    table.read_short(token);
    assert_eq!(
        poll(&mut table, token, &waker),
        Poll::Ready(ReadReadiness::Ready)
    );
}

#[test]
fn a_failed_poll_is_no_longer_watched() {
    let mut table = Readiness::default();
    let token = table.register(7);
    assert_eq!(table.watched(), 1);
    let done = table.handle_completion(token.user_data(), -libc::EINVAL, false);
    assert!(done.rearm.is_none());
    assert_eq!(table.watched(), 0);
    table.deregister(token);
    assert_eq!(table.watched(), 0);
    assert_eq!(table.registered(), 0);
}

#[test]
fn the_watched_count_follows_registrations_failures_and_unwatch_all() {
    let mut table = Readiness::default();
    let a = table.register(1);
    let b = table.register(2);
    let c = table.register(3);
    assert_eq!(table.watched(), 3);
    // One poll fails: that connection falls back alone.
    let _ = table.handle_completion(b.user_data(), -libc::ENOMEM, false);
    assert_eq!(table.watched(), 2);
    table.deregister(a);
    assert_eq!(table.watched(), 1);
    // The rest when the ring is given up; the fallen back are counted once.
    let _ = table.unwatch_all();
    assert_eq!(table.watched(), 0);
    table.deregister(b);
    table.deregister(c);
    assert_eq!((table.watched(), table.registered()), (0, 0));
    // A connection registered on a table whose slots were unwatched
    // starts watched.
    let d = table.register(4);
    assert_eq!(table.watched(), 1);
    let (_, waker) = counter();
    assert_eq!(
        poll(&mut table, d, &waker),
        Poll::Ready(ReadReadiness::Ready)
    );
}

#[test]
fn a_woken_waker_given_back_serves_the_next_wait_and_wakes_only_a_waiting_reader() {
    let mut table = Readiness::default();
    let token = table.register(5);
    table.clear_ready(token);
    let (count, waker) = counter();
    assert_eq!(poll(&mut table, token, &waker), Poll::Pending);
    let woken = woken_by_completion(&mut table, token);
    woken.wake_by_ref();
    table.give_back(token.user_data(), woken);
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    assert!(keeps(&table, &waker), "the table keeps the waker it woke");
    // Woken, not waiting: a completion before the reader's next wait marks
    // it ready and wakes nothing.
    let early = table.handle_completion(token.user_data(), POLLIN, true);
    assert!(early.wake.is_none());
    assert_eq!(
        poll(&mut table, token, &waker),
        Poll::Ready(ReadReadiness::Ready)
    );
    // The next wait finds its waker in place, and the next completion
    // wakes it again.
    table.clear_ready(token);
    assert_eq!(poll(&mut table, token, &waker), Poll::Pending);
    woken_by_completion(&mut table, token).wake();
    assert_eq!(count.0.load(Ordering::SeqCst), 2);
}

#[test]
fn a_waker_given_back_to_a_gone_or_taken_slot_is_dropped() {
    let mut table = Readiness::default();
    let token = table.register(5);
    table.clear_ready(token);
    let (_, first) = counter();
    let (second_count, second) = counter();
    assert_eq!(poll(&mut table, token, &first), Poll::Pending);
    let woken = woken_by_completion(&mut table, token);
    // Another waker came in meanwhile: it stays.
    table.clear_ready(token);
    assert_eq!(poll(&mut table, token, &second), Poll::Pending);
    table.give_back(token.user_data(), woken.clone());
    assert!(keeps(&table, &second));
    // The slot freed: nothing is kept for the old token.
    table.deregister(token);
    table.give_back(token.user_data(), woken);
    assert!(table.slots[0].waker.is_none());
    assert_eq!(second_count.0.load(Ordering::SeqCst), 0);
}
