//! The summary of a run: as a table for people, as JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::Write;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::args::{Scenario, Transport};

#[derive(Serialize, Debug)]
pub struct Summary {
    pub scenario: Scenario,
    pub transport: Transport,
    pub url: String,
    pub clients: usize,
    pub publishers: usize,
    pub rooms: usize,
    pub loadgen_shards: usize,
    /// The measured window (for connect: the time all handshakes took).
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connects: u64,
    pub connect_failures: u64,
    pub connects_per_sec: f64,
    /// Emits or publishes written in the window.
    pub sent: u64,
    pub sent_per_sec: f64,
    pub acks: u64,
    pub acks_per_sec: f64,
    pub deliveries: u64,
    pub deliveries_per_sec: f64,
    /// Over the whole run: what the publishes should have delivered.
    pub expected_deliveries: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Deliveries too far out of order to check for duplicates.
    pub unchecked: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub latency_us: Latency,
    pub server: Option<ServerCost>,
    pub server_rss_bytes_per_conn: Option<f64>,
}

#[derive(Serialize, Debug, Default)]
pub struct Latency {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(hist: &Histogram<u64>) -> Latency {
        if hist.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
        Latency {
            count: hist.len(),
            mean: (hist.mean() / 100.0).round() / 10.0,
            p50: us(hist.value_at_quantile(0.50)),
            p90: us(hist.value_at_quantile(0.90)),
            p99: us(hist.value_at_quantile(0.99)),
            p999: us(hist.value_at_quantile(0.999)),
            max: us(hist.max()),
        }
    }
}

#[derive(Serialize, Debug)]
pub struct ServerCost {
    pub pid: u32,
    /// Server CPU over the measured window (user + system).
    pub cpu_s: f64,
    /// cpu_s over duration_s: 1.0 is one core busy.
    pub cores_busy: f64,
    pub deliveries_per_cpu_s: Option<f64>,
    pub acks_per_cpu_s: Option<f64>,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
}

fn rate(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

impl Summary {
    pub fn table(&self) -> String {
        let mut t = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(t, "  {k:<26} {v}");
        };
        row(
            "scenario",
            format!(
                "{:?} over {:?}, {} clients{}",
                self.scenario,
                self.transport,
                self.clients,
                if self.scenario == Scenario::Fanout {
                    format!(", {} publishers, {} rooms", self.publishers, self.rooms)
                } else {
                    String::new()
                }
            )
            .to_lowercase(),
        );
        row("server", self.url.clone());
        row(
            "measured",
            format!(
                "{:.1} s after {:.1} s warmup",
                self.duration_s, self.warmup_s
            ),
        );
        row(
            "connects",
            format!(
                "{} ok, {} failed, {}/s",
                self.connects,
                self.connect_failures,
                rate(self.connects_per_sec)
            ),
        );
        if matches!(self.scenario, Scenario::Echo | Scenario::Fanout) {
            row(
                "sent",
                format!("{} ({}/s)", self.sent, rate(self.sent_per_sec)),
            );
            row(
                "acks",
                format!("{} ({}/s)", self.acks, rate(self.acks_per_sec)),
            );
        }
        if self.scenario == Scenario::Fanout {
            row(
                "deliveries",
                format!("{} ({}/s)", self.deliveries, rate(self.deliveries_per_sec)),
            );
            row(
                "lost / duplicated",
                format!(
                    "{} / {} of {} expected{}",
                    self.lost,
                    self.duplicated,
                    self.expected_deliveries,
                    if self.unchecked > 0 {
                        format!(" ({} unchecked)", self.unchecked)
                    } else {
                        String::new()
                    }
                ),
            );
        }
        let l = &self.latency_us;
        let what = match self.scenario {
            Scenario::Connect => "handshake latency",
            Scenario::Echo => "ack latency",
            Scenario::Fanout => "delivery latency",
            Scenario::Idle => "latency",
        };
        if l.count > 0 {
            row(
                what,
                format!(
                    "p50 {} p90 {} p99 {} p99.9 {} max {} (µs, {} samples)",
                    l.p50, l.p90, l.p99, l.p999, l.max, l.count
                ),
            );
        }
        let errors: Vec<String> = self
            .errors
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        row(
            "errors",
            if errors.is_empty() {
                "none".into()
            } else {
                errors.join(", ")
            },
        );
        if let Some(s) = &self.server {
            row(
                "server cpu",
                format!(
                    "{:.2} s ({:.2} cores), pid {}",
                    s.cpu_s, s.cores_busy, s.pid
                ),
            );
            if let Some(d) = s.deliveries_per_cpu_s {
                row("deliveries per cpu-second", rate(d));
            }
            if let Some(a) = s.acks_per_cpu_s {
                row("acks per cpu-second", rate(a));
            }
            row(
                "server rss",
                format!(
                    "{:.1} MB before, {:.1} MB after",
                    s.rss_before_bytes as f64 / 1e6,
                    s.rss_after_bytes as f64 / 1e6
                ),
            );
        }
        if let Some(b) = self.server_rss_bytes_per_conn {
            row("server rss per connection", format!("{b:.0} bytes"));
        }
        t
    }
}
