//! Loss accounting for the churn scenario, free of IO: what one subscriber
//! life (connect, join, receive, leave) should have received, and what it
//! did.
//!
//! # The rule
//!
//! Publisher `p` numbers its publishes 0, 1, 2, ... (`seq`) and sends them
//! all on one connection; publish `seq` goes to the shared room
//! [`room_of`]`(p, seq)`. For a subscriber life S:
//!
//! - **start**: once S's `join` is acknowledged, S reads each publisher's
//!   next sequence number. Every publish numbered `start` or above was
//!   numbered, so written, after S's join was acknowledged, so it reached
//!   the hub after S was in its rooms.
//! - **fence**: when S wants to leave, it asks every publisher for a
//!   *fence*: a publish to S's own private room whose payload is the
//!   publisher's next sequence number `upto`, written on the same
//!   connection after every publish below `upto`. A hub shard handles a
//!   connection's packets in order, queues to a connection in order, and
//!   messages from one shard to another arrive in order, so when S has the
//!   fence of `p`, every publish of `p` below `upto` has been delivered to S
//!   or never will be. A timestamp could not say this: the hub
//!   acknowledges a publish once it has queued it locally and posted it to
//!   the other shards, so a delivery can trail its ack.
//! - **settled**: the publisher also tells S, out of band, once the fence's
//!   ack has arrived and every publish below `upto` has been answered,
//!   which of those were not acknowledged `{"ok":true}` (refused or timed
//!   out); those are not expected.
//!
//! Publish `seq` of `p` is then expected by S exactly once iff
//! `start <= seq < upto`, it went to a room S joined, and it was
//! acknowledged. A fence is expected by S iff it was acknowledged. Anything
//! else S receives is *unexpected* (sent before S joined, after its fence,
//! or never acknowledged: allowed, counted), except a publish to a shared
//! room S never joined in this life, which is *misrouted* (the hub must
//! never do that). Every copy after the first is *duplicated*.
//!
//! A life the server closed cannot fence. Its window for `p` ends after the
//! highest sequence number it received from `p` (the fence's `upto` if it
//! had the fence): in-order delivery makes every gap below that a loss.
//! It is tallied apart ([`End::ServerClosed`]).

pub mod book;
#[cfg(test)]
mod tests;

use ahash::AHashMap;

/// The shared room publish `seq` of publisher `p` goes to: round robin over
/// publishers and sequence numbers, so every room gets its share.
pub fn room_of(publisher: u32, seq: u64, publishers: usize, rooms: usize) -> usize {
    ((seq * publishers as u64 + publisher as u64) % rooms.max(1) as u64) as usize
}

/// A publisher's answer to a leaving subscriber, sent once its fence (or,
/// with no fence, the point asked for) is settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    pub publisher: u32,
    /// Every publish below this was written before the fence, and has been
    /// answered or timed out.
    pub upto: u64,
    /// Whether the fence was acknowledged `{"ok":true}`; `None` when no
    /// fence was published (a subscriber the server closed only asks).
    pub fence_acked: Option<bool>,
    /// Sequence numbers in the subscriber's window below `upto` that were
    /// not acknowledged ok, ascending.
    pub failed: Vec<u64>,
}

/// How a life ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The subscriber fenced (or gave up waiting) and left.
    Left,
    /// The server closed the connection unasked.
    ServerClosed,
}

/// What one life comes to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Acknowledged publishes and fences the life should have received.
    pub expected: u64,
    /// Of those, received.
    pub delivered: u64,
    /// Of those, never received.
    pub lost: u64,
    /// Copies received after the first, of anything.
    pub duplicated: u64,
    /// Distinct messages received though not expected.
    pub unexpected: u64,
    /// Of the unexpected: publishes to a shared room this life never joined.
    pub misrouted: u64,
    /// Expected fences never received (counted in `lost` too).
    pub fences_lost: u64,
    /// Publishers that never answered (dead, or the hub never acked): their
    /// window ended at the fence or the highest delivery, with no list of
    /// failed publishes.
    pub unsettled: u64,
}

/// Copies of sequence numbers counted in a vector from `start` up to this
/// many; the rare ones outside go in a map.
const MAX_DENSE: u64 = 1 << 22;

/// One publisher, as one life sees it.
#[derive(Debug)]
struct Window {
    start: u64,
    /// Copies received of `start + i`.
    copies: Vec<u8>,
    /// Copies received of sequence numbers outside the dense range (sent
    /// before the join was acknowledged, mostly).
    sparse: AHashMap<u64, u32>,
    highest: Option<u64>,
    /// The fence's `upto`, once received.
    fence: Option<u64>,
    fence_copies: u32,
    settled: Option<Settled>,
}

impl Window {
    fn copies_of(&self, seq: u64) -> u32 {
        match seq.checked_sub(self.start) {
            Some(i) if i < MAX_DENSE => self.copies.get(i as usize).map_or(0, |&c| c as u32),
            _ => self.sparse.get(&seq).copied().unwrap_or(0),
        }
    }

    /// Every distinct sequence number received and its copies.
    fn received(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        let dense = self
            .copies
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| (self.start + i as u64, c as u32));
        dense.chain(self.sparse.iter().map(|(&s, &c)| (s, c)))
    }
}

/// Whether a delivery is the first copy of its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copy {
    First,
    Again,
}

/// One subscriber life's record.
#[derive(Debug)]
pub struct Ledger {
    /// Shared rooms this life joined, by index.
    joined: Vec<bool>,
    publishers: usize,
    windows: Vec<Window>,
}

impl Ledger {
    /// A life that joined the shared rooms `joined` (of `rooms`) and read
    /// `starts[p]`, publisher p's next sequence number, after the join's ack.
    pub fn new(joined: &[usize], rooms: usize, starts: &[u64]) -> Ledger {
        let mut in_room = vec![false; rooms];
        for &r in joined {
            in_room[r] = true;
        }
        Ledger {
            joined: in_room,
            publishers: starts.len(),
            windows: starts
                .iter()
                .map(|&start| Window {
                    start,
                    copies: Vec::new(),
                    sparse: AHashMap::new(),
                    highest: None,
                    fence: None,
                    fence_copies: 0,
                    settled: None,
                })
                .collect(),
        }
    }

    /// The first sequence number of `publisher` this life counts.
    pub fn start(&self, publisher: u32) -> u64 {
        self.windows[publisher as usize].start
    }

    /// A publish arrived; `None` when the publisher is not one of the run's.
    pub fn on_publish(&mut self, publisher: u32, seq: u64) -> Option<Copy> {
        let w = self.windows.get_mut(publisher as usize)?;
        w.highest = Some(w.highest.map_or(seq, |h| h.max(seq)));
        let first = match seq.checked_sub(w.start) {
            Some(i) if i < MAX_DENSE => {
                let i = i as usize;
                if w.copies.len() <= i {
                    w.copies.resize(i + 1, 0);
                }
                w.copies[i] = w.copies[i].saturating_add(1);
                w.copies[i] == 1
            }
            _ => {
                let c = w.sparse.entry(seq).or_default();
                *c += 1;
                *c == 1
            }
        };
        Some(if first { Copy::First } else { Copy::Again })
    }

    /// A fence arrived: the publisher had written everything below `upto`.
    pub fn on_fence(&mut self, publisher: u32, upto: u64) {
        if let Some(w) = self.windows.get_mut(publisher as usize) {
            w.fence_copies += 1;
            if w.fence.is_none() {
                w.fence = Some(upto);
            }
        }
    }

    /// A publisher's out-of-band answer.
    pub fn on_settled(&mut self, settled: Settled) {
        if let Some(w) = self.windows.get_mut(settled.publisher as usize) {
            w.settled = Some(settled);
        }
    }

    /// Whether a leaving life still waits for publisher `p`: it has not
    /// answered, or its fence was acknowledged and has not arrived.
    pub fn awaits(&self, publisher: u32) -> bool {
        let w = &self.windows[publisher as usize];
        match &w.settled {
            None => true,
            Some(s) => s.fence_acked == Some(true) && w.fence.is_none(),
        }
    }

    /// Whether publisher `p` has answered.
    pub fn is_settled(&self, publisher: u32) -> bool {
        self.windows[publisher as usize].settled.is_some()
    }

    /// Where a life the server closed should ask `p` to settle: just past
    /// the highest sequence number received from it (its start when none).
    pub fn received_upto(&self, publisher: u32) -> u64 {
        let w = &self.windows[publisher as usize];
        w.highest.map_or(w.start, |h| (h + 1).max(w.start))
    }

    /// The accounting of the life, by the rule in the module's comment.
    pub fn tally(&self, end: End) -> Tally {
        let mut t = Tally::default();
        for (p, w) in self.windows.iter().enumerate() {
            let settled = w.settled.as_ref();
            if settled.is_none() {
                t.unsettled += 1;
            }
            let upto = match (end, w.fence) {
                (_, Some(f)) => f,
                (End::Left, None) => match settled {
                    Some(s) if s.fence_acked.is_some() => s.upto,
                    _ => self.received_upto(p as u32),
                },
                (End::ServerClosed, None) => {
                    let seen = self.received_upto(p as u32);
                    settled.map_or(seen, |s| s.upto.min(seen))
                }
            };
            let failed: &[u64] = settled.map_or(&[], |s| &s.failed);
            let is_expected = |seq: u64| {
                seq >= w.start
                    && seq < upto
                    && self.joined[room_of(p as u32, seq, self.publishers, self.joined.len())]
                    && failed.binary_search(&seq).is_err()
            };
            for seq in w.start..upto {
                if is_expected(seq) {
                    t.expected += 1;
                    if w.copies_of(seq) > 0 {
                        t.delivered += 1;
                    } else {
                        t.lost += 1;
                    }
                }
            }
            for (seq, copies) in w.received() {
                t.duplicated += u64::from(copies - 1);
                if !is_expected(seq) {
                    t.unexpected += 1;
                    if !self.joined[room_of(p as u32, seq, self.publishers, self.joined.len())] {
                        t.misrouted += 1;
                    }
                }
            }
            // The fence itself: a publish to this life's private room.
            let fence_acked = settled.and_then(|s| s.fence_acked) == Some(true);
            if w.fence_copies > 0 {
                t.duplicated += u64::from(w.fence_copies - 1);
                if fence_acked {
                    t.expected += 1;
                    t.delivered += 1;
                } else {
                    t.unexpected += 1;
                }
            } else if fence_acked && end == End::Left {
                t.expected += 1;
                t.lost += 1;
                t.fences_lost += 1;
            }
        }
        t
    }
}
