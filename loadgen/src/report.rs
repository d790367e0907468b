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
    /// Every `--url`, in order, with the clients placed on it.
    pub urls: Vec<UrlReport>,
    /// `--publishers-on`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publishers_on: Option<usize>,
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
    /// The churn scenario's accounting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnSummary>,
}

/// One `--url` and the clients that went there.
#[derive(Serialize, Debug)]
pub struct UrlReport {
    pub url: String,
    /// Clients placed on it, publishers included (churn: subscriber slots).
    pub clients: usize,
    /// Of those, publishers.
    pub publishers: usize,
    /// Handshakes completed (churn: every life of a slot connects again).
    pub connects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
}

/// What a churn run comes to, over the whole run (drain included).
#[derive(Serialize, Debug)]
pub struct ChurnSummary {
    /// Subscriber slots, each living one connection after another.
    pub subscribers: usize,
    pub lifetime_s: f64,
    pub abrupt_ratio: f64,
    pub reset_ratio: f64,
    pub polling_ratio: f64,
    pub publishes_sent: u64,
    pub publishes_acked: u64,
    /// Not acknowledged ok (refused or timed out): expected by no one.
    pub publishes_failed: u64,
    pub fences: u64,
    /// Acknowledged publishes and fences the lives that left should have
    /// received, by the fence rule (`docs/reliability.md`).
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Of `lost`: fences.
    pub fences_lost: u64,
    /// Copies after the first, in every life.
    pub duplicated: u64,
    /// Received though not expected: sent before the join's ack, after the
    /// fence, or never acknowledged. Allowed.
    pub unexpected: u64,
    /// Publishes to a room the receiving life never joined. Never allowed.
    pub misrouted: u64,
    /// Windows whose publisher never answered the fence request.
    pub unsettled: u64,
    /// Subscriber connections (lives).
    pub connects: u64,
    pub polling_connects: u64,
    pub disconnects: Disconnects,
    /// The lives the server closed unasked, with their own accounting.
    pub server_closed: ServerClosed,
    /// Lives still connected when the drain gave up: not accounted.
    pub unfinished: u64,
    /// With --server-pid (summed over every one given).
    pub server_rss: Option<RssReport>,
}

#[derive(Serialize, Debug, Default)]
pub struct Disconnects {
    /// Socket.IO DISCONNECT and WebSocket close (or Engine.IO close).
    pub clean: u64,
    /// TCP FIN with no close before it.
    pub abrupt: u64,
    /// TCP RST with no close before it.
    pub reset: u64,
    pub by_server: u64,
}

/// Lives the server closed: what was expected up to the last delivery of
/// each publisher (gaps below it are losses), kept apart from the rest.
#[derive(Serialize, Debug, Default)]
pub struct ServerClosed {
    pub lives: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub unexpected: u64,
}

#[derive(Serialize, Debug)]
pub struct RssReport {
    /// Every --server-pid; the bytes below are their sum.
    pub pids: Vec<u32>,
    pub start_bytes: u64,
    /// After the drain; `None` when the process could no longer be read.
    pub end_bytes: Option<u64>,
    pub peak_bytes: u64,
    pub every_s: f64,
    /// (seconds since loadgen started, bytes)
    pub curve: Vec<(f64, u64)>,
    /// Why sampling stopped early, if it did (the server exited), and when
    /// (seconds since loadgen started); the run then ends early too.
    pub gone: Option<String>,
    pub gone_after_s: Option<f64>,
}

impl ChurnSummary {
    /// Why the run failed: anything lost, duplicated or misrouted.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if self.lost > 0 {
            failures.push(format!(
                "{} of {} expected deliveries lost",
                self.lost, self.expected_deliveries
            ));
        }
        if self.duplicated > 0 {
            failures.push(format!("{} deliveries duplicated", self.duplicated));
        }
        if self.misrouted > 0 {
            failures.push(format!(
                "{} deliveries to rooms never joined",
                self.misrouted
            ));
        }
        failures
    }
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
    /// Every --server-pid; the figures below are summed over them.
    pub pids: Vec<u32>,
    /// Server CPU over the measured window (user + system), all servers.
    pub cpu_s: f64,
    /// The same, each server's own, in the order of `pids`.
    pub cpu_s_by_pid: Vec<f64>,
    /// cpu_s over duration_s: 1.0 is one core busy.
    pub cores_busy: f64,
    /// Per second of CPU of all the servers together.
    pub deliveries_per_cpu_s: Option<f64>,
    pub acks_per_cpu_s: Option<f64>,
    /// All the servers together.
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

impl ChurnSummary {
    fn rows(&self, row: &mut impl FnMut(&str, String)) {
        row(
            "subscribers",
            format!(
                "{} slots, lives of {:.1} s mean, {:.0}% over polling; leaves {:.0}% abrupt, {:.0}% of those reset",
                self.subscribers,
                self.lifetime_s,
                self.polling_ratio * 100.0,
                self.abrupt_ratio * 100.0,
                self.reset_ratio * 100.0
            ),
        );
        row(
            "publishes",
            format!(
                "{} sent, {} acked, {} failed; {} fences",
                self.publishes_sent, self.publishes_acked, self.publishes_failed, self.fences
            ),
        );
        row(
            "expected deliveries",
            format!(
                "{} ({} delivered)",
                self.expected_deliveries, self.delivered
            ),
        );
        row(
            "lost / duplicated",
            format!(
                "{} / {}{}",
                self.lost,
                self.duplicated,
                if self.fences_lost > 0 {
                    format!(" ({} fences lost)", self.fences_lost)
                } else {
                    String::new()
                }
            ),
        );
        row(
            "unexpected / misrouted",
            format!("{} / {}", self.unexpected, self.misrouted),
        );
        row(
            "subscriber connects",
            format!("{} ({} over polling)", self.connects, self.polling_connects),
        );
        let d = &self.disconnects;
        row(
            "disconnects",
            format!(
                "{} clean, {} abrupt, {} reset, {} by the server",
                d.clean, d.abrupt, d.reset, d.by_server
            ),
        );
        let c = &self.server_closed;
        if c.lives > 0 {
            row(
                "closed by the server",
                format!(
                    "{} lives: {} of {} expected lost, {} duplicated (up to each one's last delivery)",
                    c.lives, c.lost, c.expected, c.duplicated
                ),
            );
        }
        if self.unsettled > 0 || self.unfinished > 0 {
            row(
                "not accounted",
                format!(
                    "{} windows unsettled (publisher never answered), {} lives unfinished",
                    self.unsettled, self.unfinished
                ),
            );
        }
        if let Some(r) = &self.server_rss {
            row(
                "server rss",
                format!(
                    "{} at start, {} at end, {} peak ({}, {} samples every {:.0} s)",
                    mb(r.start_bytes),
                    r.end_bytes.map_or("gone".to_string(), mb),
                    mb(r.peak_bytes),
                    pids(&r.pids),
                    r.curve.len(),
                    r.every_s
                ),
            );
            if let Some(gone) = &r.gone {
                row(
                    "server gone",
                    format!("after {:.0} s: {gone}", r.gone_after_s.unwrap_or_default()),
                );
            }
        }
    }
}

/// `pid 12`, or `summed over 2 servers: pids 12, 13`.
fn pids(pids: &[u32]) -> String {
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    match pids.len() {
        1 => format!("pid {}", list[0]),
        n => format!("summed over {n} servers: pids {}", list.join(", ")),
    }
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
                if matches!(self.scenario, Scenario::Fanout | Scenario::Churn) {
                    format!(", {} publishers, {} rooms", self.publishers, self.rooms)
                } else {
                    String::new()
                }
            )
            .to_lowercase(),
        );
        let many = self.urls.len() > 1;
        for (i, u) in self.urls.iter().enumerate() {
            let placed = match self.scenario {
                Scenario::Fanout | Scenario::Churn => format!(
                    "{} subscribers, {} publishers",
                    u.clients - u.publishers,
                    u.publishers
                ),
                _ => format!("{} clients", u.clients),
            };
            let value = format!(
                "{}: {placed}; {} connects, {} failed",
                u.url, u.connects, u.connect_failures
            );
            let key = if many {
                format!("server {i}")
            } else {
                "server".to_string()
            };
            row(&key, value);
        }
        if let Some(n) = self.publishers_on.filter(|_| many) {
            row(
                "placement",
                format!("publishers on server {n}, subscribers on the others"),
            );
        }
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
        if let Some(churn) = &self.churn {
            churn.rows(&mut row);
        }
        let l = &self.latency_us;
        let what = match self.scenario {
            Scenario::Connect => "handshake latency",
            Scenario::Echo => "ack latency",
            Scenario::Fanout => "delivery latency",
            Scenario::Idle => "latency",
            Scenario::Churn => "delivery latency",
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
            let each = if s.pids.len() > 1 {
                let each: Vec<String> = s.cpu_s_by_pid.iter().map(|c| format!("{c:.2}")).collect();
                format!(" ({} s each)", each.join(" + "))
            } else {
                String::new()
            };
            row(
                "server cpu",
                format!(
                    "{:.2} s ({:.2} cores), {}{each}",
                    s.cpu_s,
                    s.cores_busy,
                    pids(&s.pids)
                ),
            );
            let of = if s.pids.len() > 1 {
                format!(" (the {} servers' CPU summed)", s.pids.len())
            } else {
                String::new()
            };
            if let Some(d) = s.deliveries_per_cpu_s {
                row("deliveries per cpu-second", format!("{}{of}", rate(d)));
            }
            if let Some(a) = s.acks_per_cpu_s {
                row("acks per cpu-second", format!("{}{of}", rate(a)));
            }
            if self.churn.is_none() {
                // churn gives its own, with the curve.
                row(
                    "server rss",
                    format!(
                        "{:.1} MB before, {:.1} MB after{}",
                        s.rss_before_bytes as f64 / 1e6,
                        s.rss_after_bytes as f64 / 1e6,
                        if s.pids.len() > 1 {
                            ", all servers"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
        if let Some(b) = self.server_rss_bytes_per_conn {
            row("server rss per connection", format!("{b:.0} bytes"));
        }
        t
    }
}
