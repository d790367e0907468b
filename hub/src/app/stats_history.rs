//! The dashboard's arithmetic, with no IO and no clock of its own: rates
//! per second from counters read at given instants, and a bounded history
//! of samples that readers follow by sequence number (a reader that falls
//! behind skips to the newest sample, and is told how many it missed).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Turns counters (monotonic totals) read at successive instants into
/// rates per second over the time between two reads.
#[derive(Debug, Default)]
pub struct RateMeter {
    last: Option<(Instant, Vec<u64>)>,
}

impl RateMeter {
    pub fn new() -> RateMeter {
        RateMeter::default()
    }

    /// The rates of `counters` since the previous call: zero for each at the
    /// first call, for a counter the previous call did not have, and when
    /// no time passed; a counter that went down (restarted) counts from 0.
    #[must_use]
    pub fn rates(&mut self, now: Instant, counters: &[u64]) -> Vec<f64> {
        let rates = match &self.last {
            Some((then, previous)) => {
                let elapsed = now.saturating_duration_since(*then);
                counters
                    .iter()
                    .enumerate()
                    .map(|(i, &now_total)| match previous.get(i) {
                        Some(&before) => {
                            per_second(now_total.checked_sub(before).unwrap_or(now_total), elapsed)
                        }
                        None => 0.0,
                    })
                    .collect()
            }
            None => vec![0.0; counters.len()],
        };
        self.last = Some((now, counters.to_vec()));
        rates
    }
}

/// `delta` over `elapsed` per second, to a tenth; zero over no time.
fn per_second(delta: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    (delta as f64 / secs * 10.0).round() / 10.0
}

/// The newest `capacity` samples, numbered from 0 in the order pushed.
#[derive(Debug)]
pub struct History<T> {
    samples: VecDeque<T>,
    /// The number of `samples[0]`.
    first: u64,
    capacity: usize,
}

/// What a reader that has had every sample before `cursor` gets next.
#[derive(Debug, PartialEq, Eq)]
pub struct CatchUp<'a, T> {
    /// The newest sample.
    pub sample: &'a T,
    /// Its number: the reader's next cursor is one past it.
    pub seq: u64,
    /// Samples between the cursor and it that the reader will not get.
    pub skipped: u64,
}

impl<T> History<T> {
    /// An empty history of at most `capacity` samples (at least one).
    pub fn new(capacity: usize) -> History<T> {
        History {
            samples: VecDeque::with_capacity(capacity.max(1)),
            first: 0,
            capacity: capacity.max(1),
        }
    }

    /// Keep `sample`, forgetting the oldest when full; returns its number.
    pub fn push(&mut self, sample: T) -> u64 {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
            self.first += 1;
        }
        self.samples.push_back(sample);
        self.next_seq() - 1
    }

    /// The number the next sample will get: a reader that has had every
    /// sample kept now starts there.
    pub fn next_seq(&self) -> u64 {
        self.first + self.samples.len() as u64
    }

    /// The samples kept, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.samples.iter()
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// For a reader at `cursor`: the newest sample when it has not had it,
    /// and how many it skips to get there. A slow reader is sent only what
    /// is current, never a queue of old samples.
    pub fn catch_up(&self, cursor: u64) -> Option<CatchUp<'_, T>> {
        let sample = self.samples.back()?;
        let seq = self.next_seq() - 1;
        let skipped = seq.checked_sub(cursor)?;
        Some(CatchUp {
            sample,
            seq,
            skipped,
        })
    }
}

#[cfg(test)]
mod tests;
