//! When a sender sends next, at --rate: open loop, each send stamped with
//! the time it was due, so that a stalled server shows as latency instead
//! of hiding behind fewer sends. Echo clients, fanout publishers and churn
//! publishers are paced alike.

use crate::shard::now_ns;

/// Sends that may go out at once when a sender falls behind its schedule.
const MAX_BURST: usize = 64;

/// The schedule of sender `me` of `senders` sharing --rate: one send every
/// `senders / rate` seconds, the senders spread over one interval so that
/// they do not send in step. At --rate 0 there is none: the sender keeps
/// --inflight sends in flight instead (closed loop).
pub struct Pace {
    interval_ns: u64,
    next_due: u64,
}

impl Pace {
    /// The schedule from now.
    pub fn new(rate: f64, senders: usize, me: u32) -> Pace {
        let interval_ns = if rate > 0.0 {
            (senders as f64 / rate * 1e9).max(1.0) as u64
        } else {
            0
        };
        Pace {
            interval_ns,
            next_due: now_ns() + interval_ns * me as u64 / senders.max(1) as u64,
        }
    }

    /// --rate 0: no schedule.
    pub fn closed_loop(&self) -> bool {
        self.interval_ns == 0
    }

    /// Calls `send(due)` for each send due by `now`, `due` the time it was
    /// due; at most [`MAX_BURST`] at once.
    pub fn due(&mut self, now: u64, mut send: impl FnMut(u64)) {
        if self.closed_loop() {
            return;
        }
        let mut burst = 0;
        while self.next_due <= now && burst < MAX_BURST {
            send(self.next_due);
            self.next_due += self.interval_ns;
            burst += 1;
        }
    }

    /// When the next send is due; None in a closed loop.
    pub fn next_due(&self) -> Option<u64> {
        (!self.closed_loop()).then_some(self.next_due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_share_the_rate_spread_over_one_interval() {
        let before = now_ns();
        // 2 senders at 1,000 a second: each every 2 ms, the second 1 ms in.
        let mut pace = Pace::new(1000.0, 2, 1);
        let first = pace.next_due().unwrap();
        assert!(first >= before + 1_000_000 && first <= now_ns() + 1_000_000);
        let mut sent = Vec::new();
        pace.due(first - 1, |due| sent.push(due));
        assert!(sent.is_empty(), "nothing before it is due");
        pace.due(first + 4_000_000, |due| sent.push(due));
        assert_eq!(sent, [first, first + 2_000_000, first + 4_000_000]);
        assert_eq!(pace.next_due(), Some(first + 6_000_000));
    }

    #[test]
    fn a_sender_behind_its_schedule_catches_up_in_bursts() {
        let mut pace = Pace::new(1e9, 1, 0);
        let first = pace.next_due().unwrap();
        let mut sent = 0;
        pace.due(first + 1_000_000, |_| sent += 1);
        assert_eq!(sent, MAX_BURST);
    }

    #[test]
    fn at_rate_zero_there_is_no_schedule() {
        let mut pace = Pace::new(0.0, 4, 2);
        assert!(pace.closed_loop());
        assert_eq!(pace.next_due(), None);
        pace.due(u64::MAX, |_| panic!("a closed loop has nothing due"));
    }
}
