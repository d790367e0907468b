//! hub's live dashboard, on the admin listener: the page (`GET /`, one
//! hand-written HTML file with its script and a canvas chart) and the
//! server-sent event stream it reads (`GET /api/stream`).
//!
//! A sampler task on shard 0 takes one sample per interval (1 s by
//! default): connections per shard and transport (the shards' stats over
//! the mesh), rates per second of the shards' counters (handshakes,
//! deliveries, bytes out and in), the cross-shard queues, slow-consumer
//! disconnects and the cluster link. It keeps the last [`HISTORY`] samples,
//! each serialized once. A stream gets them all when it opens, then every
//! new sample, and `errors` events when the log ring has new WARN/ERROR
//! lines.
//!
//! Bounds: at most `max_streams` streams at once (503 past it, counted);
//! a stream that falls behind gets only the newest sample (it never queues
//! old ones); a stream whose client does not take one event within its
//! stall time is closed (counted). Streams end when the shard stops.
//!
//! Authentication: the API key when one is set, as a Bearer header or, for
//! a browser that cannot send one on page load, `?key=` in the URL (the
//! page passes it on to its stream). The key is compared in constant time
//! and never logged.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_lite::future;
use futures_lite::io::{AsyncWrite, AsyncWriteExt};
use glommio::timer::Timer;
use serde_json::{json, Value};

use super::admin::{self, AdminConfig};
use super::log_ring;
use super::stats_history::{History, RateMeter};
use crate::auth::constant_time_eq;
use crate::http::request::{Method, Request};
use crate::http::response::Response;
use crate::metrics::{Metrics, ShardMetrics};
use crate::server::{ClusterStatus, LocalIo, ShardStats};
use crate::shard::context;
use crate::signal::Signal;

/// The page, served as is.
const PAGE: &str = include_str!("dashboard.html");

/// Samples kept and sent to a stream when it opens: five minutes at the
/// default interval.
pub const HISTORY: usize = 300;

/// The dashboard's bounds and pace.
#[derive(Clone, Debug)]
pub struct DashboardConfig {
    /// Event streams open at once; more are refused with 503.
    pub max_streams: usize,
    /// Time between samples.
    pub interval: Duration,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            max_streams: 8,
            interval: Duration::from_secs(1),
        }
    }
}

impl DashboardConfig {
    /// How long a stream's client may take to accept one event before the
    /// stream is closed: ten intervals, at least two seconds.
    pub fn stall_timeout(&self) -> Duration {
        (self.interval * 10).max(Duration::from_secs(2))
    }
}

/// The dashboard's state on shard 0: the samples and the open streams.
pub(super) struct Dashboard {
    config: DashboardConfig,
    metrics: Arc<Metrics>,
    /// Each sample as the JSON text of its event.
    history: RefCell<History<Rc<str>>>,
    /// Raised for every new sample.
    fresh: Signal,
    streams: Cell<usize>,
}

impl Dashboard {
    /// The dashboard of the admin listener, its sampler started (on the
    /// current shard: call it on shard 0).
    pub(super) fn start(io: LocalIo, admin: &AdminConfig) -> Rc<Dashboard> {
        let mut config = admin.dashboard.clone();
        // A file may give any interval: no faster than 100 samples a second.
        config.interval = config.interval.max(Duration::from_millis(10));
        let dashboard = Rc::new(Dashboard {
            config,
            metrics: admin.metrics.clone(),
            history: RefCell::new(History::new(HISTORY)),
            fresh: Signal::new(),
            streams: Cell::new(0),
        });
        glommio::spawn_local(sample_every_interval(
            dashboard.clone(),
            io,
            admin.cluster.clone(),
        ))
        .detach();
        dashboard
    }

    /// Take a stream slot, or None when every slot is taken.
    fn open_stream(self: &Rc<Self>) -> Option<StreamSlot> {
        if self.streams.get() >= self.config.max_streams {
            self.metrics.dashboard_streams_refused.inc();
            return None;
        }
        self.streams.set(self.streams.get() + 1);
        self.metrics.dashboard_streams.inc();
        Some(StreamSlot(self.clone()))
    }
}

/// An open stream's slot, given back when the stream ends.
struct StreamSlot(Rc<Dashboard>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.set(self.0.streams.get().saturating_sub(1));
        self.0.metrics.dashboard_streams.dec();
    }
}

/// Whether `request` is for the event stream (which takes the connection
/// over, so the listener hands it to [`serve_stream`]).
pub(super) fn is_stream(request: &Request) -> bool {
    request.path() == "/api/stream"
}

/// Kernel send buffer of a stream's socket: the kernel would otherwise
/// grow it to megabytes for a client that does not read, and the stall
/// timeout would start only once that is full.
const STREAM_SEND_BUFFER: libc::c_int = 32 * 1024;

/// Bound the kernel's send buffer of the socket `fd` that carries a
/// stream (the kernel doubles the value for its bookkeeping).
pub(super) fn limit_send_buffer(fd: std::os::fd::RawFd) {
    // SAFETY: setsockopt on a socket the caller owns, with a c_int value
    // that lives across the call.
    let done = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&STREAM_SEND_BUFFER as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "cannot bound a dashboard stream's send buffer"
        );
    }
}

/// As the admin API's check, and `?key=` in the URL as well.
fn authorized(
    config: &AdminConfig,
    peer: Option<SocketAddr>,
    request: &Request,
) -> Result<(), Response> {
    if let Some(key) = &config.api_key {
        let given = form_urlencoded::parse(request.query().as_bytes())
            .find(|(name, _)| name == "key")
            .map(|(_, value)| value);
        if given.is_some_and(|given| constant_time_eq(given.as_bytes(), key.as_bytes())) {
            return Ok(());
        }
    }
    admin::authorized(config, peer, request)
}

/// `GET /`: the page; without the key, a form that asks for it.
pub(super) fn page(config: &AdminConfig, peer: Option<SocketAddr>, request: &Request) -> Response {
    if request.method != Method::Get {
        return admin::error_response(405, "method not allowed");
    }
    let response = match authorized(config, peer, request) {
        Ok(()) => Response::new(200).body("text/html; charset=utf-8", PAGE),
        Err(refusal) if refusal.status == 401 => {
            let wrong = request.query().contains("key=");
            Response::new(401).body("text/html; charset=utf-8", key_form(wrong))
        }
        Err(refusal) => return refusal,
    };
    response
        .header("Cache-Control", "no-store")
        .header("Referrer-Policy", "no-referrer")
        .header(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        )
}

fn key_form(wrong: bool) -> String {
    let note = if wrong {
        "<p>That key is wrong.</p>"
    } else {
        ""
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>hub dashboard</title></head>\
         <body style=\"font-family:sans-serif;margin:3em\"><h1>hub dashboard</h1>{note}\
         <form method=\"get\" action=\"/\"><label>API key <input type=\"password\" name=\"key\" autofocus></label> \
         <button>Open</button></form></body></html>"
    )
}

/// `GET /api/stream`: check the caller, take a slot, then send events on
/// `out` until the client goes, stops reading, or the shard stops.
pub(super) async fn serve_stream<S: AsyncWrite + Unpin>(
    dashboard: &Rc<Dashboard>,
    config: &AdminConfig,
    peer: Option<SocketAddr>,
    request: &Request,
    out: &mut S,
) {
    let refusal = if request.method != Method::Get {
        Some(admin::error_response(405, "method not allowed"))
    } else {
        authorized(config, peer, request).err()
    };
    let slot = match refusal {
        Some(refusal) => Err(refusal),
        None => dashboard.open_stream().ok_or_else(|| {
            admin::error_response(503, "too many dashboard streams open").header("Retry-After", "5")
        }),
    };
    let _slot = match slot {
        Ok(slot) => slot,
        Err(response) => {
            let mut bytes = Vec::new();
            response.write_to(false, &mut bytes);
            let _ = out.write_all(&bytes).await;
            return;
        }
    };
    let stall = dashboard.config.stall_timeout();
    match send_events(dashboard, out, stall).await {
        Ended::Stalled => {
            dashboard.metrics.dashboard_streams_stalled.inc();
            tracing::debug!(
                ?peer,
                "closed a dashboard stream whose client stopped reading"
            );
        }
        Ended::Gone | Ended::Stopping => {}
    }
}

/// Why a stream ended.
enum Ended {
    /// The client went (a write failed).
    Gone,
    /// The client did not take an event within the stall time.
    Stalled,
    /// The shard is stopping.
    Stopping,
}

/// How often at least a stream looks whether its shard is stopping.
const STOP_CHECK: Duration = Duration::from_millis(250);

const STREAM_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: text/event-stream\r\n\
Cache-Control: no-store\r\n\
X-Accel-Buffering: no\r\n\
Connection: close\r\n\r\n\
retry: 2000\n\n";

async fn send_events<S: AsyncWrite + Unpin>(
    dashboard: &Dashboard,
    out: &mut S,
    stall: Duration,
) -> Ended {
    // The head and the history, in one write.
    let (mut event, mut cursor) = {
        let history = dashboard.history.borrow();
        let mut event = STREAM_HEAD.to_vec();
        event.extend_from_slice(b"event: history\ndata: [");
        for (i, sample) in history.iter().enumerate() {
            if i > 0 {
                event.push(b',');
            }
            event.extend_from_slice(sample.as_bytes());
        }
        event.extend_from_slice(b"]\n\n");
        (event, history.next_seq())
    };
    let mut errors_seen = None;
    loop {
        let errors_total = log_ring::RECENT.total();
        if errors_seen != Some(errors_total) {
            errors_seen = Some(errors_total);
            push_errors_event(&mut event);
        }
        if !event.is_empty() {
            if let Err(ended) = write_within(out, &event, stall).await {
                return ended;
            }
            event.clear();
        }
        // Wait for a sample; wake every `STOP_CHECK` anyway to see a stop
        // (nothing tells a task beside the listener that its shard stops).
        let fresh = dashboard.fresh.listen();
        if dashboard.history.borrow().catch_up(cursor).is_none() {
            future::or(fresh, async {
                Timer::new(dashboard.config.interval.min(STOP_CHECK)).await;
            })
            .await;
        }
        if context::stopping() {
            return Ended::Stopping;
        }
        if let Some(next) = dashboard.history.borrow().catch_up(cursor) {
            event.extend_from_slice(format!("id: {}\ndata: ", next.seq).as_bytes());
            event.extend_from_slice(next.sample.as_bytes());
            event.extend_from_slice(b"\n\n");
            cursor = next.seq + 1;
        }
    }
}

/// Append an `errors` event: the log ring's recent events and counts.
fn push_errors_event(event: &mut Vec<u8>) {
    let (recent, dropped) = log_ring::RECENT.recent();
    let body = json!({
        "total": log_ring::RECENT.total(),
        "dropped": dropped,
        "recent": recent,
    });
    event.extend_from_slice(b"event: errors\ndata: ");
    let _ = serde_json::to_writer(&mut *event, &body);
    event.extend_from_slice(b"\n\n");
}

async fn write_within<S: AsyncWrite + Unpin>(
    out: &mut S,
    bytes: &[u8],
    within: Duration,
) -> Result<(), Ended> {
    let write = async {
        out.write_all(bytes).await.map_err(|_| Ended::Gone)?;
        out.flush().await.map_err(|_| Ended::Gone)
    };
    future::or(write, async {
        Timer::new(within).await;
        Err(Ended::Stalled)
    })
    .await
}

/// The sampler: one sample per interval until the shard stops.
async fn sample_every_interval(
    dashboard: Rc<Dashboard>,
    io: LocalIo,
    cluster: Option<Arc<ClusterStatus>>,
) {
    let shards = context::shard_count().unwrap_or(1);
    let handles: Vec<ShardMetrics> = (0..shards)
        .map(|s| dashboard.metrics.for_shard(s))
        .collect();
    let mut shard_rates = RateMeter::new();
    let mut cluster_rates = RateMeter::new();
    let interval = dashboard.config.interval;
    let mut next = Instant::now() + interval;
    Timer::new(interval).await;
    loop {
        if context::stopping() {
            return;
        }
        let stats = io.stats().await;
        let now = Instant::now();
        let counters: Vec<u64> = handles.iter().flat_map(ShardCounters::read).collect();
        let rates = shard_rates.rates(now, &counters);
        let cluster = cluster.as_ref().map(|c| {
            let c = c.snapshot();
            let rates = cluster_rates.rates(now, &[c.published, c.received]);
            json!({
                "connected": c.connected,
                "nodes": c.nodes,
                "published_per_s": rates[0],
                "received_per_s": rates[1],
                "publish_failed": c.publish_failed,
                "pending_bytes": c.pending_bytes,
                "reconnects": c.reconnects,
            })
        });
        let sample = sample_json(
            &handles,
            &stats,
            &counters,
            &rates,
            cluster,
            dashboard.streams.get(),
            interval,
        );
        dashboard
            .history
            .borrow_mut()
            .push(Rc::from(sample.to_string()));
        dashboard.fresh.notify();
        next += interval;
        let now = Instant::now();
        if next <= now {
            // Late (a slow stats round): start the pace again from now.
            next = now + interval;
        }
        Timer::new(next - now).await;
    }
}

/// The counters read per shard, in the order of `ShardCounters::NAMES`.
struct ShardCounters;

impl ShardCounters {
    const NAMES: [&'static str; 4] = [
        "handshakes_per_s",
        "deliveries_per_s",
        "bytes_out_per_s",
        "bytes_in_per_s",
    ];

    fn read(m: &ShardMetrics) -> [u64; 4] {
        [
            m.handshakes.get(),
            m.deliveries.get(),
            m.bytes_out.get(),
            m.bytes_in.get(),
        ]
    }
}

/// One sample: per shard and in total.
fn sample_json(
    handles: &[ShardMetrics],
    stats: &[ShardStats],
    counters: &[u64],
    rates: &[f64],
    cluster: Option<Value>,
    streams: usize,
    interval: Duration,
) -> Value {
    let width = ShardCounters::NAMES.len();
    let mut totals = [0.0f64; 4];
    let mut counts = [0u64; 4];
    for (i, count) in counters.iter().enumerate() {
        counts[i % width] += count;
    }
    let mut shards = Vec::with_capacity(handles.len());
    let (mut connections, mut polling, mut websocket) = (0u64, 0u64, 0u64);
    let (mut queue, mut backlog_bytes, mut slow) = (0i64, 0i64, 0u64);
    for (id, m) in handles.iter().enumerate() {
        let mut shard = serde_json::Map::new();
        shard.insert("shard".into(), id.into());
        // Connections by transport from the shard's own count; the gauge
        // when the shard did not answer in time.
        match stats.iter().find(|s| s.shard == id) {
            Some(s) => {
                connections += s.connections as u64;
                polling += s.polling as u64;
                websocket += s.websocket as u64;
                shard.insert("connections".into(), s.connections.into());
                shard.insert("polling".into(), s.polling.into());
                shard.insert("websocket".into(), s.websocket.into());
            }
            None => {
                let gauge = m.connections.get().max(0) as u64;
                connections += gauge;
                shard.insert("connections".into(), gauge.into());
                shard.insert("polling".into(), Value::Null);
                shard.insert("websocket".into(), Value::Null);
            }
        }
        for (k, name) in ShardCounters::NAMES.iter().enumerate() {
            let rate = rates.get(id * width + k).copied().unwrap_or(0.0);
            totals[k] += rate;
            shard.insert((*name).into(), rate.into());
        }
        let shard_queue = m.cross_shard_queue.get();
        let shard_backlog = m.cross_shard_backlog_bytes.get();
        let shard_slow = m.slow_consumer_disconnects.get();
        queue += shard_queue;
        backlog_bytes += shard_backlog;
        slow += shard_slow;
        shard.insert("cross_shard_queue".into(), shard_queue.into());
        shard.insert("cross_shard_backlog_bytes".into(), shard_backlog.into());
        shard.insert("slow_consumer_disconnects".into(), shard_slow.into());
        shards.push(Value::Object(shard));
    }
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let round = |x: f64| (x * 10.0).round() / 10.0;
    json!({
        "unix_ms": unix_ms,
        "interval_ms": interval.as_millis() as u64,
        "connections": connections,
        "polling": polling,
        "websocket": websocket,
        "handshakes_per_s": round(totals[0]),
        "deliveries_per_s": round(totals[1]),
        "bytes_out_per_s": round(totals[2]),
        "bytes_in_per_s": round(totals[3]),
        "handshakes_total": counts[0],
        "deliveries_total": counts[1],
        "bytes_out_total": counts[2],
        "bytes_in_total": counts[3],
        "cross_shard_queue": queue,
        "cross_shard_backlog_bytes": backlog_bytes,
        "slow_consumer_disconnects": slow,
        "dashboard_streams": streams,
        "shards": shards,
        "cluster": cluster,
    })
}

#[cfg(test)]
mod tests;
