//! What a run counts. Each loadgen shard owns one `Counters`, written only
//! by that shard (plain load and store, no read-modify-write) and read by
//! the main thread for the progress line and the summary.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a client or an operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    ConnectRefused,
    ConnectTimeout,
    ConnectFailed,
    /// The server answered the handshake with a status other than 101/200.
    HttpStatus,
    /// The handshake response or packet was not what Engine.IO specifies.
    BadHandshake,
    /// The TLS handshake failed (an untrusted certificate, say).
    TlsHandshake,
    /// The namespace CONNECT was refused (CONNECT_ERROR).
    NamespaceRefused,
    /// The server closed the connection or the session.
    ServerClosed,
    /// A read or write failed.
    Io,
    /// The server sent bytes that are not the protocol.
    Protocol,
    /// No ack within --timeout.
    AckTimeout,
    /// A join or publish answered `{"ok":false}`.
    Refused,
}

impl Cause {
    pub const ALL: [Cause; 12] = [
        Cause::ConnectRefused,
        Cause::ConnectTimeout,
        Cause::ConnectFailed,
        Cause::HttpStatus,
        Cause::BadHandshake,
        Cause::TlsHandshake,
        Cause::NamespaceRefused,
        Cause::ServerClosed,
        Cause::Io,
        Cause::Protocol,
        Cause::AckTimeout,
        Cause::Refused,
    ];

    /// A cause that ends a connection attempt (before the namespace
    /// CONNECT is accepted).
    pub fn fails_a_connect(self) -> bool {
        matches!(
            self,
            Cause::ConnectRefused
                | Cause::ConnectTimeout
                | Cause::ConnectFailed
                | Cause::HttpStatus
                | Cause::BadHandshake
                | Cause::TlsHandshake
                | Cause::NamespaceRefused
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Cause::ConnectRefused => "connect_refused",
            Cause::ConnectTimeout => "connect_timeout",
            Cause::ConnectFailed => "connect_failed",
            Cause::HttpStatus => "http_status",
            Cause::BadHandshake => "bad_handshake",
            Cause::TlsHandshake => "tls_handshake",
            Cause::NamespaceRefused => "namespace_refused",
            Cause::ServerClosed => "server_closed",
            Cause::Io => "io",
            Cause::Protocol => "protocol",
            Cause::AckTimeout => "ack_timeout",
            Cause::Refused => "refused",
        }
    }
}

/// A shard's running totals.
#[derive(Default)]
#[repr(align(128))]
pub struct Counters {
    /// Handshakes completed (through the namespace CONNECT).
    pub connects: AtomicU64,
    /// Clients that finished setting up or gave up: the run starts when
    /// every client has.
    pub settled: AtomicU64,
    /// Emits (echo) and publishes (fanout) written.
    pub sent: AtomicU64,
    /// Acks of those.
    pub acks: AtomicU64,
    /// Fanout deliveries, each (receiver, publisher, sequence) once.
    pub deliveries: AtomicU64,
    /// Deliveries received again.
    pub duplicated: AtomicU64,
    /// Deliveries that came too far out of order to check for a duplicate.
    pub unchecked: AtomicU64,
    /// Deliveries the publishes so far should make (sum of room sizes).
    pub expected: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    pub errors: [AtomicU64; Cause::ALL.len()],
    pub churn: ChurnCounters,
}

/// What the churn scenario counts besides the common counters (`sent` and
/// `acks` are publishes, `deliveries` first copies received, `expected`
/// and `duplicated` come from the lives that left).
#[derive(Default)]
pub struct ChurnCounters {
    /// Tallies of the lives that fenced and left ([`crate::ledger::Tally`]).
    pub delivered: AtomicU64,
    pub lost: AtomicU64,
    pub unexpected: AtomicU64,
    pub misrouted: AtomicU64,
    pub fences_lost: AtomicU64,
    pub unsettled: AtomicU64,
    /// Subscriber connections (lives), and those over long-polling.
    pub connects: AtomicU64,
    pub polling_connects: AtomicU64,
    /// Fences published.
    pub fences: AtomicU64,
    /// Publishes not acknowledged ok (refused or timed out).
    pub failed: AtomicU64,
    /// How lives ended: Socket.IO and WebSocket close, TCP FIN only, TCP
    /// RST only, closed by the server unasked.
    pub clean: AtomicU64,
    pub abrupt: AtomicU64,
    pub reset: AtomicU64,
    pub by_server: AtomicU64,
    /// Tallies of the lives the server closed, kept apart.
    pub closed_expected: AtomicU64,
    pub closed_delivered: AtomicU64,
    pub closed_lost: AtomicU64,
    pub closed_duplicated: AtomicU64,
    pub closed_unexpected: AtomicU64,
    /// Subscriber slots that have stopped for good (the drain waits for all).
    pub finished: AtomicU64,
}

/// [`ChurnCounters`] read at one moment.
#[derive(Default, Clone, Copy, Debug)]
pub struct ChurnSnapshot {
    pub delivered: u64,
    pub lost: u64,
    pub unexpected: u64,
    pub misrouted: u64,
    pub fences_lost: u64,
    pub unsettled: u64,
    pub connects: u64,
    pub polling_connects: u64,
    pub fences: u64,
    pub failed: u64,
    pub clean: u64,
    pub abrupt: u64,
    pub reset: u64,
    pub by_server: u64,
    pub closed_expected: u64,
    pub closed_delivered: u64,
    pub closed_lost: u64,
    pub closed_duplicated: u64,
    pub closed_unexpected: u64,
    pub finished: u64,
}

impl ChurnCounters {
    fn snapshot(&self) -> ChurnSnapshot {
        let r = |c: &AtomicU64| c.load(Relaxed);
        ChurnSnapshot {
            delivered: r(&self.delivered),
            lost: r(&self.lost),
            unexpected: r(&self.unexpected),
            misrouted: r(&self.misrouted),
            fences_lost: r(&self.fences_lost),
            unsettled: r(&self.unsettled),
            connects: r(&self.connects),
            polling_connects: r(&self.polling_connects),
            fences: r(&self.fences),
            failed: r(&self.failed),
            clean: r(&self.clean),
            abrupt: r(&self.abrupt),
            reset: r(&self.reset),
            by_server: r(&self.by_server),
            closed_expected: r(&self.closed_expected),
            closed_delivered: r(&self.closed_delivered),
            closed_lost: r(&self.closed_lost),
            closed_duplicated: r(&self.closed_duplicated),
            closed_unexpected: r(&self.closed_unexpected),
            finished: r(&self.finished),
        }
    }
}

impl ChurnSnapshot {
    fn add(&mut self, o: &ChurnSnapshot) {
        self.delivered += o.delivered;
        self.lost += o.lost;
        self.unexpected += o.unexpected;
        self.misrouted += o.misrouted;
        self.fences_lost += o.fences_lost;
        self.unsettled += o.unsettled;
        self.connects += o.connects;
        self.polling_connects += o.polling_connects;
        self.fences += o.fences;
        self.failed += o.failed;
        self.clean += o.clean;
        self.abrupt += o.abrupt;
        self.reset += o.reset;
        self.by_server += o.by_server;
        self.closed_expected += o.closed_expected;
        self.closed_delivered += o.closed_delivered;
        self.closed_lost += o.closed_lost;
        self.closed_duplicated += o.closed_duplicated;
        self.closed_unexpected += o.closed_unexpected;
        self.finished += o.finished;
    }
}

/// Adds to a counter only this thread writes.
pub fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed) + n, Relaxed);
}

/// Takes from a counter only this thread writes.
pub fn unbump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).saturating_sub(n), Relaxed);
}

impl Counters {
    pub fn error(&self, cause: Cause) {
        bump(&self.errors[cause as usize], 1);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            connects: self.connects.load(Relaxed),
            settled: self.settled.load(Relaxed),
            sent: self.sent.load(Relaxed),
            acks: self.acks.load(Relaxed),
            deliveries: self.deliveries.load(Relaxed),
            duplicated: self.duplicated.load(Relaxed),
            unchecked: self.unchecked.load(Relaxed),
            expected: self.expected.load(Relaxed),
            open: self.open.load(Relaxed),
            errors: std::array::from_fn(|i| self.errors[i].load(Relaxed)),
            churn: self.churn.snapshot(),
        }
    }
}

/// Counters read at one moment, summed over shards.
#[derive(Default, Clone, Copy, Debug)]
pub struct Snapshot {
    pub connects: u64,
    pub settled: u64,
    pub sent: u64,
    pub acks: u64,
    pub deliveries: u64,
    pub duplicated: u64,
    pub unchecked: u64,
    pub expected: u64,
    pub open: u64,
    pub errors: [u64; Cause::ALL.len()],
    pub churn: ChurnSnapshot,
}

impl Snapshot {
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Counters>) -> Snapshot {
        all.into_iter().fold(Snapshot::default(), |mut total, c| {
            let s = c.snapshot();
            total.connects += s.connects;
            total.settled += s.settled;
            total.sent += s.sent;
            total.acks += s.acks;
            total.deliveries += s.deliveries;
            total.duplicated += s.duplicated;
            total.unchecked += s.unchecked;
            total.expected += s.expected;
            total.open += s.open;
            for (t, e) in total.errors.iter_mut().zip(s.errors) {
                *t += e;
            }
            total.churn.add(&s.churn);
            total
        })
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// Duplicate detection for one (receiver, publisher) pair: the highest
/// sequence number seen and a bitmap of the 64 before it, as in IPsec's
/// anti-replay window. Relays that keep order never leave the window.
#[derive(Default, Clone, Copy)]
pub struct SeqWindow {
    highest: u64,
    seen: u64,
    any: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    New,
    Duplicate,
    /// Older than the window: counted, not checked.
    TooOld,
}

impl SeqWindow {
    pub fn record(&mut self, seq: u64) -> Seen {
        if !self.any {
            *self = SeqWindow {
                highest: seq,
                seen: 1,
                any: true,
            };
            return Seen::New;
        }
        if seq > self.highest {
            let shift = seq - self.highest;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = seq;
            return Seen::New;
        }
        let back = self.highest - seq;
        if back >= 64 {
            return Seen::TooOld;
        }
        let bit = 1u64 << back;
        if self.seen & bit != 0 {
            Seen::Duplicate
        } else {
            self.seen |= bit;
            Seen::New
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_finds_duplicates_and_accepts_reordering() {
        let mut w = SeqWindow::default();
        assert_eq!(w.record(5), Seen::New);
        assert_eq!(w.record(5), Seen::Duplicate);
        assert_eq!(w.record(7), Seen::New);
        assert_eq!(w.record(6), Seen::New, "late but new");
        assert_eq!(w.record(6), Seen::Duplicate);
        assert_eq!(w.record(200), Seen::New);
        assert_eq!(w.record(7), Seen::TooOld);
        assert_eq!(w.record(199), Seen::New);
        assert_eq!(w.record(200), Seen::Duplicate);
    }

    #[test]
    fn counters_sum_over_shards() {
        let a = Counters::default();
        let b = Counters::default();
        bump(&a.deliveries, 3);
        bump(&b.deliveries, 4);
        a.error(Cause::AckTimeout);
        b.error(Cause::AckTimeout);
        let total = Snapshot::sum([&a, &b]);
        assert_eq!(total.deliveries, 7);
        assert_eq!(total.errors[Cause::AckTimeout as usize], 2);
        assert_eq!(total.errors_total(), 2);
    }
}
