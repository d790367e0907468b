//! A churn publisher's side of the accounting, free of IO: the numbers it
//! gives its publishes, which are still unanswered, which failed, and the
//! fences it owes an answer for.

use std::collections::{BTreeSet, VecDeque};

use super::Settled;

/// What an ack answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    Publish { seq: u64, ok: bool },
    Fence { ok: bool },
}

/// What `expire` gave up on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    pub publishes: u64,
    pub fences: u64,
}

#[derive(Debug)]
enum What {
    Publish(u64),
    Fence,
}

#[derive(Debug)]
struct Pending {
    id: u64,
    sent_ns: u64,
    what: What,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FenceState {
    /// Sent with this ack id, not answered yet.
    Waiting(u64),
    /// Answered ok or not (a timeout is not ok).
    Answered(bool),
    /// None was sent: the subscriber only asked.
    None,
}

/// A subscriber's request waiting to be settled; `T` is where the answer
/// goes.
#[derive(Debug)]
struct Owed<T> {
    ticket: T,
    from: u64,
    upto: u64,
    fence: FenceState,
}

/// One publisher's book.
#[derive(Debug)]
pub struct Book<T> {
    publisher: u32,
    next_seq: u64,
    next_id: u64,
    /// Sent and not answered, in the order sent.
    pending: VecDeque<Pending>,
    /// Publishes not acknowledged ok; grows only with failures.
    failed: BTreeSet<u64>,
    owed: Vec<Owed<T>>,
}

impl<T> Book<T> {
    pub fn new(publisher: u32) -> Book<T> {
        Book {
            publisher,
            next_seq: 0,
            next_id: 1,
            pending: VecDeque::new(),
            failed: BTreeSet::new(),
            owed: Vec::new(),
        }
    }

    /// Publishes sent and not answered.
    pub fn publishes_in_flight(&self) -> usize {
        self.pending
            .iter()
            .filter(|p| matches!(p.what, What::Publish(_)))
            .count()
    }

    /// When the oldest unanswered packet was sent.
    pub fn oldest_sent(&self) -> Option<u64> {
        self.pending.front().map(|p| p.sent_ns)
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Numbers a publish about to be written: its ack id and sequence number.
    #[must_use]
    pub fn publish(&mut self, now_ns: u64) -> (u64, u64) {
        let id = self.take_id();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back(Pending {
            id,
            sent_ns: now_ns,
            what: What::Publish(seq),
        });
        (id, seq)
    }

    /// A fence about to be written for a subscriber counting from `from`:
    /// its ack id and `upto`, the sequence number of the next publish (every
    /// one below was written before it).
    #[must_use]
    pub fn fence(&mut self, now_ns: u64, from: u64, ticket: T) -> (u64, u64) {
        let id = self.take_id();
        self.pending.push_back(Pending {
            id,
            sent_ns: now_ns,
            what: What::Fence,
        });
        let upto = self.next_seq;
        self.owed.push(Owed {
            ticket,
            from,
            upto,
            fence: FenceState::Waiting(id),
        });
        (id, upto)
    }

    /// A subscriber the server closed asks which of its publishes in
    /// `from..until` failed; no fence is written.
    pub fn ask(&mut self, from: u64, until: u64, ticket: T) {
        self.owed.push(Owed {
            ticket,
            from,
            upto: until.min(self.next_seq),
            fence: FenceState::None,
        });
    }

    /// An ack arrived; `None` when its id is not unanswered (late, after
    /// its timeout).
    pub fn on_ack(&mut self, id: u64, ok: bool) -> Option<Answered> {
        let at = self.pending.iter().position(|p| p.id == id)?;
        let pending = self.pending.remove(at).expect("position is in range");
        Some(self.answer(pending, ok))
    }

    fn answer(&mut self, pending: Pending, ok: bool) -> Answered {
        match pending.what {
            What::Publish(seq) => {
                if !ok {
                    self.failed.insert(seq);
                }
                Answered::Publish { seq, ok }
            }
            What::Fence => {
                for owed in &mut self.owed {
                    if owed.fence == FenceState::Waiting(pending.id) {
                        owed.fence = FenceState::Answered(ok);
                    }
                }
                Answered::Fence { ok }
            }
        }
    }

    /// Gives up on everything sent at or before `now_ns - timeout_ns`: a
    /// publish counts as failed, a fence as not acknowledged.
    pub fn expire(&mut self, now_ns: u64, timeout_ns: u64) -> Expired {
        let mut expired = Expired::default();
        while let Some(oldest) = self.pending.front() {
            if now_ns < oldest.sent_ns.saturating_add(timeout_ns) {
                break;
            }
            let pending = self.pending.pop_front().expect("front exists");
            match self.answer(pending, false) {
                Answered::Publish { .. } => expired.publishes += 1,
                Answered::Fence { .. } => expired.fences += 1,
            }
        }
        expired
    }

    /// The next request whose answer is ready: its fence (if any) has been
    /// answered and so has every publish below its `upto`.
    pub fn poll_settled(&mut self) -> Option<(T, Settled)> {
        let ready = |owed: &Owed<T>| {
            !matches!(owed.fence, FenceState::Waiting(_))
                && !self
                    .pending
                    .iter()
                    .any(|p| matches!(p.what, What::Publish(seq) if seq < owed.upto))
        };
        let at = self.owed.iter().position(ready)?;
        let owed = self.owed.swap_remove(at);
        let settled = Settled {
            publisher: self.publisher,
            upto: owed.upto,
            fence_acked: match owed.fence {
                FenceState::Answered(ok) => Some(ok),
                _ => None,
            },
            failed: self
                .failed
                .range(owed.from..owed.upto.max(owed.from))
                .copied()
                .collect(),
        };
        Some((owed.ticket, settled))
    }
}
