//! Token expiry without IO: the sockets of one shard whose tokens expire,
//! in deadline order. The shard's sweeper (`sweeper.rs`) feeds it the time
//! and disconnects what comes out due; nothing here reads a clock.
//!
//! Tokens expire on the wall clock (`exp` is Unix seconds), so deadlines
//! are [`SystemTime`]s. A socket has one entry, under a key the caller
//! chooses; a refresh replaces it and a disconnect removes it, so the queue
//! never holds more entries than the shard has sockets with a token.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ahash::AHashMap;

/// The longest the sweeper sleeps, however far off the first deadline: it
/// sleeps on the monotonic clock, so a step of the system clock (an NTP
/// correction) delays an expiry by at most this much.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);

/// When a token with this `exp` expires: `exp` seconds after the epoch, the
/// first instant at which `now >= exp` holds in whole seconds. `None` when
/// no [`SystemTime`] is that far (such a token never expires).
pub fn deadline(exp: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(exp))
}

/// Whether a token with this `exp` has expired at `now`.
pub fn expired(exp: u64, now: SystemTime) -> bool {
    deadline(exp).is_some_and(|at| now >= at)
}

/// Entries `T` under keys `u64`, each with a deadline, taken out in
/// deadline order (ties in key order).
#[derive(Debug)]
pub struct ExpiryQueue<T> {
    /// (deadline, key), in the order they come due.
    order: BTreeSet<(SystemTime, u64)>,
    /// key -> (deadline, value).
    entries: AHashMap<u64, (SystemTime, T)>,
}

impl<T> Default for ExpiryQueue<T> {
    fn default() -> Self {
        ExpiryQueue {
            order: BTreeSet::new(),
            entries: AHashMap::new(),
        }
    }
}

impl<T> ExpiryQueue<T> {
    pub fn new() -> Self {
        ExpiryQueue::default()
    }

    /// Watch `key` until `deadline`, replacing its earlier deadline and
    /// value if it had one. True when the entry is now the first due: a
    /// sweeper asleep until a later deadline must wake up and look again.
    #[must_use = "a sweeper sleeping until a later deadline must be woken"]
    pub fn insert(&mut self, key: u64, deadline: SystemTime, value: T) -> bool {
        if let Some((old, _)) = self.entries.insert(key, (deadline, value)) {
            self.order.remove(&(old, key));
        }
        self.order.insert((deadline, key));
        self.order.first() == Some(&(deadline, key))
    }

    /// Stop watching `key`; its value, if it was there.
    pub fn remove(&mut self, key: u64) -> Option<T> {
        let (deadline, value) = self.entries.remove(&key)?;
        self.order.remove(&(deadline, key));
        if self.entries.is_empty() {
            // Give back the map's room: a burst of sockets should not pin it.
            self.entries = AHashMap::new();
        }
        Some(value)
    }

    /// The next entry due at `now` (deadline `<= now`), taken out; `None`
    /// when none is due. Call until `None`.
    #[must_use]
    pub fn poll_expired(&mut self, now: SystemTime) -> Option<(u64, T)> {
        let &(deadline, key) = self.order.first()?;
        if deadline > now {
            return None;
        }
        let value = self.remove(key).expect("every ordered key has an entry");
        Some((key, value))
    }

    /// How long the sweeper may sleep from `now`: until the first deadline,
    /// at most [`MAX_SLEEP`], zero when one is due; `None` when the queue
    /// is empty (the sweeper may stop).
    pub fn poll_timeout(&self, now: SystemTime) -> Option<Duration> {
        let &(deadline, _) = self.order.first()?;
        let wait = deadline.duration_since(now).unwrap_or(Duration::ZERO);
        Some(wait.min(MAX_SLEEP))
    }

    /// The deadline of `key`, if it is watched.
    pub fn deadline_of(&self, key: u64) -> Option<SystemTime> {
        self.entries.get(&key).map(|(deadline, _)| *deadline)
    }

    /// The first deadline.
    pub fn next_deadline(&self) -> Option<SystemTime> {
        self.order.first().map(|(deadline, _)| *deadline)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake clock: seconds after an arbitrary epoch-relative origin.
    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn drain(queue: &mut ExpiryQueue<&'static str>, now: SystemTime) -> Vec<(u64, &'static str)> {
        std::iter::from_fn(|| queue.poll_expired(now)).collect()
    }

    #[test]
    fn deadline_is_exp_seconds_after_the_epoch() {
        let exp = 1_700_000_010;
        let at_exp = UNIX_EPOCH + Duration::from_secs(exp);
        assert_eq!(deadline(exp), Some(at_exp));
        assert!(!expired(exp, at_exp - Duration::from_nanos(1)));
        assert!(
            expired(exp, at_exp),
            "expired at exp itself, as verify does"
        );
        assert!(expired(exp, at_exp + Duration::from_secs(1)));
        assert!(expired(0, UNIX_EPOCH));
        // Beyond what SystemTime holds (a huge float exp saturates to
        // u64::MAX): never expires, and does not panic.
        assert_eq!(deadline(u64::MAX), None);
        assert!(!expired(u64::MAX, at(1_000_000_000)));
    }

    #[test]
    fn entries_come_out_in_deadline_order_once_due() {
        let mut q = ExpiryQueue::new();
        assert!(q.insert(1, at(30), "c"));
        assert!(q.insert(2, at(10), "a"), "earlier: the sweeper must wake");
        assert!(!q.insert(3, at(20), "b"), "later than the first: no wake");
        assert_eq!(q.len(), 3);
        assert_eq!(q.next_deadline(), Some(at(10)));

        assert_eq!(drain(&mut q, at(9)), vec![]);
        assert_eq!(drain(&mut q, at(10)), vec![(2, "a")], "due at its deadline");
        assert_eq!(drain(&mut q, at(25)), vec![(3, "b")]);
        assert_eq!(drain(&mut q, at(100)), vec![(1, "c")]);
        assert!(q.is_empty());
        assert_eq!(q.poll_expired(at(1000)), None);
    }

    #[test]
    fn several_due_at_once_come_out_together_ties_by_key() {
        let mut q = ExpiryQueue::new();
        let _ = q.insert(7, at(5), "x");
        let _ = q.insert(3, at(5), "y");
        let _ = q.insert(5, at(4), "z");
        let _ = q.insert(9, at(6), "later");
        assert_eq!(drain(&mut q, at(5)), vec![(5, "z"), (3, "y"), (7, "x")]);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn reinserting_a_key_moves_its_deadline_either_way() {
        let mut q = ExpiryQueue::new();
        let _ = q.insert(1, at(10), "one");
        let _ = q.insert(2, at(20), "two");
        // A refresh with a longer token: key 1 moves past key 2.
        assert!(!q.insert(1, at(30), "one, refreshed"));
        assert_eq!(q.len(), 2, "replaced, not added");
        assert_eq!(q.deadline_of(1), Some(at(30)));
        assert_eq!(
            drain(&mut q, at(10)),
            vec![],
            "the old deadline no longer holds"
        );
        assert_eq!(drain(&mut q, at(20)), vec![(2, "two")]);
        // A refresh with a shorter token moves it earlier, and is first.
        assert!(q.insert(1, at(15), "one, shortened"));
        assert_eq!(drain(&mut q, at(15)), vec![(1, "one, shortened")]);
        assert!(q.is_empty());
    }

    #[test]
    fn removed_entries_are_gone() {
        let mut q = ExpiryQueue::new();
        let _ = q.insert(1, at(10), "a");
        let _ = q.insert(2, at(10), "b");
        assert_eq!(q.remove(1), Some("a"));
        assert_eq!(q.remove(1), None, "twice is harmless");
        assert_eq!(q.remove(42), None);
        assert_eq!(q.deadline_of(1), None);
        assert_eq!(drain(&mut q, at(10)), vec![(2, "b")]);
        assert_eq!(q.poll_timeout(at(0)), None);
    }

    #[test]
    fn bounded_by_the_live_keys_through_churn() {
        // Sockets come, refresh many times and go: the queue holds one
        // entry per live key, never a trail of old deadlines.
        let mut q = ExpiryQueue::new();
        for key in 0..1000u64 {
            let _ = q.insert(key, at(100 + key), key);
            for refresh in 1..5 {
                let _ = q.insert(key, at(100 + key + refresh * 10), key);
            }
            assert_eq!(q.len(), q.order.len());
            if key % 2 == 0 {
                assert_eq!(q.remove(key), Some(key));
            }
        }
        assert_eq!(q.len(), 500);
        assert_eq!(q.order.len(), 500);
        for key in (0..1000u64).step_by(2) {
            let _ = q.remove(key + 1);
        }
        assert!(q.is_empty());
        assert!(q.order.is_empty());
        assert_eq!(q.entries.capacity(), 0, "an empty queue holds no memory");
    }

    #[test]
    fn poll_timeout_sleeps_until_the_first_deadline_capped() {
        let mut q = ExpiryQueue::new();
        assert_eq!(q.poll_timeout(at(0)), None, "empty: the sweeper stops");
        let _ = q.insert(1, at(12), ());
        assert_eq!(q.poll_timeout(at(10)), Some(Duration::from_secs(2)));
        assert_eq!(
            q.poll_timeout(at(10) + Duration::from_millis(1500)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(q.poll_timeout(at(12)), Some(Duration::ZERO), "due now");
        assert_eq!(q.poll_timeout(at(50)), Some(Duration::ZERO), "overdue");
        // Far off: capped, so that a clock step is noticed.
        let _ = q.insert(1, at(3600), ());
        assert_eq!(q.poll_timeout(at(0)), Some(MAX_SLEEP));
        // The clock stepped back: still capped, nothing due.
        assert_eq!(
            q.poll_timeout(at(0) - Duration::from_secs(86_400)),
            Some(MAX_SLEEP)
        );
        assert_eq!(q.poll_expired(at(0)), None);
    }

    #[test]
    fn a_sweep_with_a_fake_clock() {
        // What the sweeper does: sleep poll_timeout, then drain; the clock
        // only moves by what it slept.
        let mut q = ExpiryQueue::new();
        let _ = q.insert(1, at(2), "short");
        let _ = q.insert(2, at(65), "long");
        let mut now = at(0);
        let mut expired = Vec::new();
        let mut wakes = 0;
        while let Some(wait) = q.poll_timeout(now) {
            now += wait;
            wakes += 1;
            expired.extend(drain(&mut q, now).into_iter().map(|(_, v)| (v, now)));
            assert!(wakes < 10, "the sweeper must not spin");
        }
        assert_eq!(expired, vec![("short", at(2)), ("long", at(65))]);
        // 2 s, then 30 s, 30 s and 3 s (capped sleeps).
        assert_eq!(wakes, 4);
    }
}
