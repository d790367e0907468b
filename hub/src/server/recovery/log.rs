//! The packets a namespace keeps on one shard for connection-state
//! recovery: every broadcast EVENT that reached the shard (not volatile,
//! asking no ack), whether or not it had local recipients, in arrival
//! order. Sans-IO: the time comes in as an argument.
//!
//! Bounded by the window (entries older than it are purged) and by a
//! byte budget (past it, the oldest go first). Eviction is only ever from
//! the front, so when an offset is held, everything after it is held.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::offset::Offset;
use crate::server::outgoing::Outgoing;

/// Rooms a logged packet was sent to and the rooms it left out (the
/// sender's own room included when the sender was excluded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LoggedTarget {
    /// Empty: every socket of the namespace.
    pub rooms: Vec<String>,
    pub except: Vec<String>,
    /// Kept on its socket's shard only (a `socket.emit`), not sent to
    /// every shard: other shards' cuts say nothing about it.
    pub local_only: bool,
}

impl LoggedTarget {
    /// Whether a socket in `rooms` would have received the packet
    /// (socket.io's `shouldIncludePacket`).
    pub fn includes<'a>(&self, rooms: impl Iterator<Item = &'a str> + Clone) -> bool {
        let included =
            self.rooms.is_empty() || rooms.clone().any(|r| self.rooms.iter().any(|t| t == r));
        let excluded = rooms.clone().any(|r| self.except.iter().any(|e| e == r));
        included && !excluded
    }

    fn bytes(&self) -> usize {
        self.rooms
            .iter()
            .chain(&self.except)
            .map(|r| r.len() + std::mem::size_of::<String>())
            .sum()
    }
}

struct Entry {
    /// Its place among every entry the shard logged (all namespaces): a
    /// restore remembers where the shard's logs stood.
    pos: u64,
    offset: Offset,
    at: Instant,
    /// Shared by the logs of every shard the packet reached.
    target: Arc<LoggedTarget>,
    packet: Outgoing,
    weight: usize,
}

/// What a socket restored from another shard's answer got, in the terms
/// of this shard's log: first the answer's packets (`answer`, their
/// offsets in the answering shard's order); then this log's entries logged
/// before `from` above the answer's `cut` (per origin), in this log's
/// order; then, live, the entries logged from `from` on, those at or below
/// the cut left out (they were in the answer, or had reached the client).
/// A later restore from this log follows the same rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resume {
    pub from: u64,
    pub cut: Box<[u64]>,
    /// Empty when the answer was too long to keep (a client whose last
    /// packet was in it then gets a fresh session).
    pub answer: Arc<[Offset]>,
}

/// Most offsets of an answer a restored socket keeps (8 bytes each).
pub(crate) const MAX_KEPT_ANSWER: usize = 4096;

impl Resume {
    /// Whether a packet kept everywhere with `offset` came in the answer
    /// (or before it), not live.
    pub fn covers(&self, offset: Offset) -> bool {
        offset.seq() <= slot(&self.cut, offset.origin())
    }
}

/// Fixed cost counted for an entry besides its packet and rooms.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>();

/// Why missed packets cannot be given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogMiss {
    /// The client's offset is not (or no longer) held.
    Offset,
    /// Entries above the cut were evicted for the budget.
    Buffer,
}

/// One namespace's recovery log on one shard.
pub(crate) struct RecoveryLog {
    entries: VecDeque<Entry>,
    bytes: usize,
    budget: usize,
    window: Duration,
    /// Per origin shard: the highest sequence number logged here, evicted
    /// or not (0: none).
    last_seen: Vec<u64>,
    /// Per origin shard: the highest sequence number evicted for the
    /// budget (0: none).
    evicted: Vec<u64>,
    /// The place of the last entry evicted for the budget.
    evicted_through: Option<u64>,
}

fn raise(slots: &mut Vec<u64>, origin: usize, seq: u64) {
    if slots.len() <= origin {
        slots.resize(origin + 1, 0);
    }
    if slots[origin] < seq {
        slots[origin] = seq;
    }
}

fn slot(slots: &[u64], origin: usize) -> u64 {
    slots.get(origin).copied().unwrap_or(0)
}

impl RecoveryLog {
    pub fn new(window: Duration, budget: usize) -> RecoveryLog {
        RecoveryLog {
            entries: VecDeque::new(),
            bytes: 0,
            budget,
            window,
            last_seen: Vec::new(),
            evicted: Vec::new(),
            evicted_through: None,
        }
    }

    /// Bytes held (what the budget counts).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keep a packet. Returns the change in bytes held (for the gauge):
    /// the oldest entries go while the budget is exceeded, and those older
    /// than the window.
    #[must_use]
    pub fn push(
        &mut self,
        pos: u64,
        offset: Offset,
        now: Instant,
        target: Arc<LoggedTarget>,
        packet: Outgoing,
    ) -> isize {
        let before = self.bytes as isize;
        let weight = ENTRY_OVERHEAD + packet.bytes() + target.bytes();
        if !target.local_only {
            raise(&mut self.last_seen, offset.origin(), offset.seq());
        }
        self.entries.push_back(Entry {
            pos,
            offset,
            at: now,
            target,
            packet,
            weight,
        });
        self.bytes += weight;
        self.purge_expired(now);
        while self.bytes > self.budget {
            if self.evict_oldest() == 0 {
                break;
            }
        }
        self.bytes as isize - before
    }

    /// When the oldest entry was logged.
    pub fn oldest(&self) -> Option<Instant> {
        self.entries.front().map(|e| e.at)
    }

    /// Evict the oldest entry (for the shard's budget, over every log).
    /// Returns the change in bytes.
    #[must_use]
    pub fn evict_oldest(&mut self) -> isize {
        let Some(entry) = self.entries.pop_front() else {
            return 0;
        };
        self.bytes -= entry.weight;
        self.evicted_through = Some(entry.pos);
        if !entry.target.local_only {
            raise(&mut self.evicted, entry.offset.origin(), entry.offset.seq());
        }
        -(entry.weight as isize)
    }

    /// Drop the entries older than the window. Returns the change in bytes.
    #[must_use]
    pub fn purge(&mut self, now: Instant) -> isize {
        let before = self.bytes as isize;
        self.purge_expired(now);
        self.bytes as isize - before
    }

    fn purge_expired(&mut self, now: Instant) {
        while let Some(front) = self.entries.front() {
            if now.saturating_duration_since(front.at) <= self.window {
                break;
            }
            let entry = self.entries.pop_front().expect("front exists");
            self.bytes -= entry.weight;
        }
        if self.entries.is_empty() && self.entries.capacity() > 64 {
            self.entries = VecDeque::new();
        }
    }

    /// Change the budget (a test's way to force an eviction).
    #[cfg(test)]
    pub fn budget_for_test(&mut self, budget: usize) {
        self.budget = budget;
    }

    /// Per origin shard, the highest sequence number logged here: the cut
    /// a restore answer carries.
    pub fn cut(&self) -> Vec<u64> {
        self.last_seen.clone()
    }

    /// The packets (with their offsets) after `offset` that a socket in
    /// `rooms` would have received, in this log's order; `Offset` when it is not held (never
    /// a partial replay). With `resume` (the socket was restored here from
    /// another shard's answer), what it got is the answer, then this log
    /// in the terms of [`Resume`].
    pub fn missed_after<'a>(
        &self,
        offset: Offset,
        rooms: impl Iterator<Item = &'a str> + Clone,
        resume: Option<&Resume>,
    ) -> Result<Vec<(Offset, Outgoing)>, LogMiss> {
        let wanted = |e: &Entry| e.target.includes(rooms.clone());
        let Some(resume) = resume else {
            let position = self
                .entries
                .iter()
                .rposition(|e| e.offset == offset)
                .ok_or(LogMiss::Offset)?;
            return Ok(self
                .entries
                .iter()
                .skip(position + 1)
                .filter(|e| wanted(e))
                .map(|e| (e.offset, e.packet.clone()))
                .collect());
        };
        // What the socket got after the answer: this log's entries before
        // `from` above the cut (not one kept here only: the socket lived
        // elsewhere then), and those from `from` on not covered by the cut.
        let got_here = |e: &Entry| {
            let covered = !e.target.local_only && resume.covers(e.offset);
            !covered && (e.pos >= resume.from || !e.target.local_only)
        };
        if let Some(i) = resume.answer.iter().position(|o| *o == offset) {
            // The client's last packet was in the answer: the rest of the
            // answer (found here by offset), then all this log gave it.
            // Whole, or not at all.
            let above_cut_evicted = self
                .evicted
                .iter()
                .enumerate()
                .any(|(origin, &seq)| seq > slot(&resume.cut, origin));
            if above_cut_evicted || self.evicted_through.is_some_and(|p| p >= resume.from) {
                return Err(LogMiss::Buffer);
            }
            // The rest of the answer, found in one pass over this log
            // (not one pass per packet: an answer may hold thousands).
            let rest = &resume.answer[i + 1..];
            let mut found: Vec<Option<&Outgoing>> = vec![None; rest.len()];
            let wanted_at: ahash::AHashMap<Offset, usize> =
                rest.iter().enumerate().map(|(at, o)| (*o, at)).collect();
            for entry in &self.entries {
                if let Some(&at) = wanted_at.get(&entry.offset) {
                    found[at] = Some(&entry.packet);
                }
            }
            let mut missed = Vec::with_capacity(rest.len());
            for (offset, packet) in rest.iter().zip(found) {
                missed.push((*offset, packet.ok_or(LogMiss::Buffer)?.clone()));
            }
            missed.extend(
                self.entries
                    .iter()
                    .filter(|e| got_here(e) && wanted(e))
                    .map(|e| (e.offset, e.packet.clone())),
            );
            return Ok(missed);
        }
        let position = self
            .entries
            .iter()
            .rposition(|e| e.offset == offset)
            .ok_or(LogMiss::Offset)?;
        if !got_here(&self.entries[position]) {
            // Not a packet it got from this log (one the answer held
            // that was not kept with it): it cannot be placed.
            return Err(LogMiss::Offset);
        }
        Ok(self
            .entries
            .iter()
            .skip(position + 1)
            .filter(|e| got_here(e) && wanted(e))
            .map(|e| (e.offset, e.packet.clone()))
            .collect())
    }

    /// The packets above `cut` (per origin) that a socket in `rooms` would
    /// have received: those another shard's answer could not hold. `Buffer`
    /// when any entry above the cut was evicted here.
    pub fn replay_above<'a>(
        &self,
        cut: &[u64],
        rooms: impl Iterator<Item = &'a str> + Clone,
    ) -> Result<Vec<Outgoing>, LogMiss> {
        for (origin, &evicted) in self.evicted.iter().enumerate() {
            if evicted > slot(cut, origin) {
                return Err(LogMiss::Buffer);
            }
        }
        // An entry kept here only (a `socket.emit` to a socket of this
        // shard) is not this socket's: it lived on the answering shard.
        Ok(self
            .entries
            .iter()
            .filter(|e| !e.target.local_only)
            .filter(|e| e.offset.seq() > slot(cut, e.offset.origin()))
            .filter(|e| e.target.includes(rooms.clone()))
            .map(|e| e.packet.clone())
            .collect())
    }
}
