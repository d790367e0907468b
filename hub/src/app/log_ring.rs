//! The last WARN and ERROR log events, for the dashboard's "recent errors":
//! a `tracing` layer the binary installs keeps them in a bounded ring,
//! process-wide (any shard or thread may log).
//!
//! The ring takes a lock, but only on a WARN or ERROR event and once a
//! second when the dashboard reads it: never on the message path.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Events the process-wide ring keeps.
pub const CAPACITY: usize = 50;
/// A longer event's text is cut to this many bytes (at a char boundary).
const MAX_TEXT: usize = 400;

/// One log event, as the dashboard shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogEvent {
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// `WARN` or `ERROR`.
    pub level: &'static str,
    /// The module that logged it.
    pub target: String,
    /// The message, then its fields as `name=value`.
    pub text: String,
}

/// A bounded ring of log events: the newest `capacity`, and counts of all
/// that came and of those pushed out.
#[derive(Debug)]
pub struct LogRing {
    events: Mutex<VecDeque<LogEvent>>,
    capacity: usize,
    total: AtomicU64,
}

impl LogRing {
    /// An empty ring keeping the newest `capacity` events.
    pub const fn new(capacity: usize) -> LogRing {
        LogRing {
            events: Mutex::new(VecDeque::new()),
            capacity,
            total: AtomicU64::new(0),
        }
    }

    /// Keep `event`, pushing out the oldest when full.
    pub fn push(&self, event: LogEvent) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if events.len() >= self.capacity {
            events.pop_front();
        }
        if self.capacity > 0 {
            events.push_back(event);
        }
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// Events kept since the start; a change means there is something new.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The events kept, oldest first, and how many were pushed out.
    pub fn recent(&self) -> (Vec<LogEvent>, u64) {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let kept: Vec<LogEvent> = events.iter().cloned().collect();
        let dropped = self.total().saturating_sub(kept.len() as u64);
        (kept, dropped)
    }
}

/// The process's ring, which [`layer`] fills.
pub static RECENT: LogRing = LogRing::new(CAPACITY);

/// The layer that keeps WARN and ERROR events in [`RECENT`] (whatever the
/// log level of the output: an operator who turned logging down still sees
/// the errors on the dashboard).
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    RingLayer { ring: &RECENT }.with_filter(tracing_subscriber::filter::LevelFilter::WARN)
}

struct RingLayer {
    ring: &'static LogRing,
}

impl<S: Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let level = match *metadata.level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARN",
            _ => return,
        };
        let mut text = TextVisitor::default();
        event.record(&mut text);
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.ring.push(LogEvent {
            unix_ms,
            level,
            target: metadata.target().to_string(),
            text: text.finish(),
        });
    }
}

/// The message first, then the other fields, cut to `MAX_TEXT`.
#[derive(Default)]
struct TextVisitor {
    message: String,
    fields: String,
}

impl TextVisitor {
    fn finish(mut self) -> String {
        if !self.fields.is_empty() {
            if !self.message.is_empty() {
                self.message.push(' ');
            }
            self.message.push_str(&self.fields);
        }
        truncate(&mut self.message, MAX_TEXT);
        self.message
    }
}

impl Visit for TextVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.message.len() + self.fields.len() > MAX_TEXT {
            return;
        }
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={value:?}", field.name());
        }
    }
}

fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn event(n: u64) -> LogEvent {
        LogEvent {
            unix_ms: n,
            level: "WARN",
            target: "t".into(),
            text: format!("event {n}"),
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_and_counts_the_rest() {
        let ring = LogRing::new(3);
        for n in 0..5 {
            ring.push(event(n));
        }
        let (kept, dropped) = ring.recent();
        assert_eq!(kept, vec![event(2), event(3), event(4)]);
        assert_eq!((dropped, ring.total()), (2, 5));
    }

    #[test]
    fn the_layer_keeps_warnings_and_errors_only_with_their_fields() {
        static RING: LogRing = LogRing::new(4);
        let subscriber = tracing_subscriber::registry().with(
            RingLayer { ring: &RING }.with_filter(tracing_subscriber::filter::LevelFilter::WARN),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not kept");
            tracing::warn!(shard = 1, "accept failed");
            tracing::error!(reason = %"boom", "exiting");
            tracing::warn!("{}", "x".repeat(1000));
        });
        let (kept, dropped) = RING.recent();
        assert_eq!(dropped, 0);
        assert_eq!(kept.len(), 3);
        assert_eq!(
            (kept[0].level, kept[0].text.as_str()),
            ("WARN", "accept failed shard=1")
        );
        assert_eq!(
            (kept[1].level, kept[1].text.as_str()),
            ("ERROR", "exiting reason=boom")
        );
        assert!(kept[0].target.ends_with("log_ring::tests"), "{kept:?}");
        assert!(kept[2].text.len() <= MAX_TEXT + '…'.len_utf8());
        assert!(kept[2].text.ends_with('…'));
    }
}
