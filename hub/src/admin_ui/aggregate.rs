//! The `aggregatedEvents` of `server_stats`: connections, disconnections
//! (by Engine.IO close reason), packets and bytes in and out, counted per
//! whole second as `@socket.io/admin-ui` buckets them.
//!
//! Nothing here runs per packet: each shard's sampler reads its counters
//! once a second ([`Sampler`]) and adds the differences to the process's
//! [`Buckets`], which the `server_stats` tick drains.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// What a bucket counts (the `type` of an aggregated event).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventType {
    RawConnection,
    RawDisconnection,
    PacketsIn,
    PacketsOut,
    BytesIn,
    BytesOut,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::RawConnection => "rawConnection",
            EventType::RawDisconnection => "rawDisconnection",
            EventType::PacketsIn => "packetsIn",
            EventType::PacketsOut => "packetsOut",
            EventType::BytesIn => "bytesIn",
            EventType::BytesOut => "bytesOut",
        }
    }
}

/// Most buckets held between two drains; more are dropped (a drain comes
/// every 2 s, and a second makes at most a dozen).
pub const MAX_BUCKETS: usize = 1024;

/// Counts by (second, type, subtype).
#[derive(Debug, Default)]
pub struct Buckets {
    counts: BTreeMap<(u64, EventType, Option<&'static str>), u64>,
    /// Counts dropped because the buckets were full.
    pub dropped: u64,
}

impl Buckets {
    /// Add `count` events of `kind` that happened at `at_ms` (Unix ms).
    pub fn add(&mut self, at_ms: u64, kind: EventType, subtype: Option<&'static str>, count: u64) {
        if count == 0 {
            return;
        }
        let key = (at_ms - at_ms % 1000, kind, subtype);
        if let Some(held) = self.counts.get_mut(&key) {
            *held += count;
        } else if self.counts.len() < MAX_BUCKETS {
            self.counts.insert(key, count);
        } else {
            self.dropped += count;
        }
    }

    /// The buckets as `[{timestamp, type, subType?, count}]`, emptied.
    pub fn drain(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.counts)
            .into_iter()
            .map(|((timestamp, kind, subtype), count)| {
                let mut event =
                    json!({"timestamp": timestamp, "type": kind.as_str(), "count": count});
                if let Some(subtype) = subtype {
                    event["subType"] = Value::from(subtype);
                }
                event
            })
            .collect()
    }
}

/// The Engine.IO close reasons, in the order [`Totals::disconnections`] counts them.
pub const CLOSE_REASONS: [&str; 6] = [
    "ping timeout",
    "transport close",
    "transport error",
    "parse error",
    "forced close",
    "server shutting down",
];

/// One shard's running totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub connections: u64,
    pub disconnections: [u64; CLOSE_REASONS.len()],
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Turns a shard's running totals into bucket counts: what grew since the
/// last sample.
#[derive(Debug, Default)]
pub struct Sampler {
    last: Option<Totals>,
}

impl Sampler {
    /// Add to `buckets` what grew since the last call, at `now_ms`. The
    /// first call only sets the baseline (what came before the Admin UI
    /// was counted nowhere).
    pub fn sample(&mut self, totals: Totals, now_ms: u64, buckets: &mut Buckets) {
        let Some(last) = self.last.replace(totals) else {
            return;
        };
        let grew = |now: u64, before: u64| now.saturating_sub(before);
        buckets.add(
            now_ms,
            EventType::RawConnection,
            None,
            grew(totals.connections, last.connections),
        );
        for (i, reason) in CLOSE_REASONS.iter().enumerate() {
            buckets.add(
                now_ms,
                EventType::RawDisconnection,
                Some(reason),
                grew(totals.disconnections[i], last.disconnections[i]),
            );
        }
        buckets.add(
            now_ms,
            EventType::PacketsIn,
            None,
            grew(totals.packets_in, last.packets_in),
        );
        buckets.add(
            now_ms,
            EventType::PacketsOut,
            None,
            grew(totals.packets_out, last.packets_out),
        );
        buckets.add(
            now_ms,
            EventType::BytesIn,
            None,
            grew(totals.bytes_in, last.bytes_in),
        );
        buckets.add(
            now_ms,
            EventType::BytesOut,
            None,
            grew(totals.bytes_out, last.bytes_out),
        );
    }
}
