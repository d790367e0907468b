//! What a listener does when `accept` fails, without IO: back off, and say
//! so at most once a second.
//!
//! The usual failure is running out of descriptors (EMFILE for the
//! process, ENFILE for the system). The waiting connection then stays in
//! the kernel's backlog and the listener stays readable, so a loop that
//! retried at once would spin a core and fill the log. Instead the wait
//! starts short (a closing connection frees a descriptor soon) and doubles
//! up to a second, going back to nothing once an accept succeeds; a log
//! line says how many accepts failed since the last one. The descriptor
//! limit itself is the operator's (`ulimit -n`; hub raises its soft limit
//! to the hard one at start).

use std::time::{Duration, Instant};

/// The first wait after a failed accept.
pub const FIRST_WAIT: Duration = Duration::from_millis(5);
/// The longest wait between two attempts.
pub const MAX_WAIT: Duration = Duration::from_secs(1);
/// At most one log line per this long.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// A listener's state of failed accepts.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    /// The last wait; zero after a success.
    wait: Duration,
    /// Failures not reported in a log line yet.
    unreported: u64,
    last_report: Option<Instant>,
}

/// What to do after a failed accept.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "the caller must wait before accepting again"]
pub struct AcceptRetry {
    /// Wait this long before the next accept.
    pub wait: Duration,
    /// Log a line now, with this many failures since the last line.
    pub report: Option<u64>,
}

impl AcceptBackoff {
    pub fn new() -> AcceptBackoff {
        AcceptBackoff::default()
    }

    /// An accept succeeded: the next failure waits briefly again.
    pub fn on_accepted(&mut self) {
        self.wait = Duration::ZERO;
    }

    /// An accept failed at `now`.
    pub fn on_failed(&mut self, now: Instant) -> AcceptRetry {
        self.wait = if self.wait.is_zero() {
            FIRST_WAIT
        } else {
            (self.wait * 2).min(MAX_WAIT)
        };
        self.unreported += 1;
        let report = match self.last_report {
            Some(at) if now.saturating_duration_since(at) < REPORT_EVERY => None,
            _ => {
                self.last_report = Some(now);
                Some(std::mem::take(&mut self.unreported))
            }
        };
        AcceptRetry {
            wait: self.wait,
            report,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_wait_doubles_to_a_second_and_resets_on_success() {
        let t0 = Instant::now();
        let mut b = AcceptBackoff::new();
        let waits: Vec<u64> = (0..10)
            .map(|_| b.on_failed(t0).wait.as_millis() as u64)
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.on_accepted();
        assert_eq!(b.on_failed(t0).wait, FIRST_WAIT);
    }

    #[test]
    fn at_most_one_report_a_second_with_the_failures_since() {
        let t0 = Instant::now();
        let mut b = AcceptBackoff::new();
        assert_eq!(
            b.on_failed(t0).report,
            Some(1),
            "the first failure is said at once"
        );
        let mut now = t0;
        let mut reports = Vec::new();
        // Failures as fast as the waits allow, for ten seconds.
        while now < t0 + Duration::from_secs(10) {
            let retry = b.on_failed(now);
            reports.extend(retry.report.map(|n| (now, n)));
            now += retry.wait;
        }
        assert!(
            reports.len() <= 10,
            "{} reports in 10 s: {reports:?}",
            reports.len()
        );
        for pair in reports.windows(2) {
            assert!(pair[1].0 - pair[0].0 >= REPORT_EVERY, "{reports:?}");
        }
        assert!(reports.iter().all(|(_, n)| *n >= 1));
    }

    #[test]
    fn a_report_counts_the_failures_not_said_before_it() {
        let t0 = Instant::now();
        let mut b = AcceptBackoff::new();
        assert_eq!(b.on_failed(t0).report, Some(1));
        for i in 1..=4 {
            assert_eq!(b.on_failed(t0 + ms(200 * i)).report, None);
        }
        assert_eq!(b.on_failed(t0 + ms(1_000)).report, Some(5));
    }

    #[test]
    fn a_success_does_not_hide_failures_from_the_next_report() {
        let t0 = Instant::now();
        let mut b = AcceptBackoff::new();
        let _ = b.on_failed(t0);
        let _ = b.on_failed(t0 + ms(10));
        b.on_accepted();
        let _ = b.on_failed(t0 + ms(20));
        assert_eq!(b.on_failed(t0 + ms(1_000)).report, Some(3));
    }
}
