//! Prometheus metrics, per shard. Each shard resolves its own counter
//! handles once at start and keeps them in a thread-local, so counting is
//! an uncontended atomic add on the shard's own cache lines, with no lock
//! and no lookup on the message path.

use std::cell::RefCell;
use std::rc::Rc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    pub shard: String,
}

/// A shard and the limit that refused something (`hub_limit_refusals_total`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    pub shard: String,
    /// `namespaces_per_connection`, `rooms_per_socket` or `connections_per_ip`.
    pub limit: &'static str,
}

/// A shard and why a connection-state recovery failed
/// (`hub_recoveries_failed_total`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecoveryFailLabel {
    pub shard: String,
    /// `unknown`, `expired`, `offset`, `buffer` or `timeout`.
    pub cause: &'static str,
}

/// How a certificate reload ended (`hub_tls_reloads_total`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabel {
    /// `ok` or `failed`.
    pub result: &'static str,
}

/// The causes `hub_recoveries_failed_total` counts.
const RECOVERY_FAIL_CAUSES: [&str; 5] = ["unknown", "expired", "offset", "buffer", "timeout"];

/// Every metric of the process, by shard.
pub struct Metrics {
    registry: Registry,
    connections: Family<ShardLabel, Gauge>,
    handshakes: Family<ShardLabel, Counter>,
    packets_in: Family<ShardLabel, Counter>,
    packets_out: Family<ShardLabel, Counter>,
    bytes_in: Family<ShardLabel, Counter>,
    bytes_out: Family<ShardLabel, Counter>,
    broadcasts: Family<ShardLabel, Counter>,
    deliveries: Family<ShardLabel, Counter>,
    volatile_dropped: Family<ShardLabel, Counter>,
    slow_consumer_disconnects: Family<ShardLabel, Counter>,
    panics: Family<ShardLabel, Counter>,
    cross_shard_queue: Family<ShardLabel, Gauge>,
    cross_shard_backlog_bytes: Family<ShardLabel, Gauge>,
    input_pauses: Family<ShardLabel, Counter>,
    limit_refusals: Family<LimitLabel, Counter>,
    rate_limit_disconnects: Family<ShardLabel, Counter>,
    accept_errors: Family<ShardLabel, Counter>,
    namespaces: Family<ShardLabel, Gauge>,
    outgoing_buffered_bytes: Family<ShardLabel, Gauge>,
    ws_read_ring_connections: Family<ShardLabel, Gauge>,
    ws_read_ring_failures: Family<ShardLabel, Counter>,
    polling_compressed: Family<ShardLabel, Counter>,
    polling_compression_saved_bytes: Family<ShardLabel, Counter>,
    deflate_compressions: Family<ShardLabel, Counter>,
    deflated_messages: Family<ShardLabel, Counter>,
    deflated_bytes_before: Family<ShardLabel, Counter>,
    deflated_bytes_after: Family<ShardLabel, Counter>,
    recoveries_attempted: Family<ShardLabel, Counter>,
    recoveries_succeeded: Family<ShardLabel, Counter>,
    recoveries_failed: Family<RecoveryFailLabel, Counter>,
    recovery_bytes: Family<ShardLabel, Gauge>,
    recovery_sessions: Family<ShardLabel, Gauge>,
    tls_handshake_failures: Family<ShardLabel, Counter>,
    tls_reloads: Family<ReloadLabel, Counter>,
    admin_ui_sockets: Family<ShardLabel, Gauge>,
    admin_ui_sessions: Family<ShardLabel, Gauge>,
    admin_ui_failed_logins: Family<ShardLabel, Counter>,
    admin_ui_dropped_events: Family<ShardLabel, Counter>,
    /// Dashboard event streams open on the admin listener.
    pub dashboard_streams: Gauge,
    /// Dashboard streams refused at the open-streams bound.
    pub dashboard_streams_refused: Counter,
    /// Dashboard streams closed because their client stopped reading.
    pub dashboard_streams_stalled: Counter,
}

/// One shard's handles.
pub struct ShardMetrics {
    pub connections: Gauge,
    pub handshakes: Counter,
    pub packets_in: Counter,
    pub packets_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub broadcasts: Counter,
    pub deliveries: Counter,
    pub volatile_dropped: Counter,
    pub slow_consumer_disconnects: Counter,
    pub panics: Counter,
    pub cross_shard_queue: Gauge,
    /// Bytes of the messages waiting to go to other shards (an estimate
    /// that counts each message's shared payload in full).
    pub cross_shard_backlog_bytes: Gauge,
    /// Times the shard stopped taking client input for its cross-shard backlog.
    pub input_pauses: Counter,
    /// A CONNECT past `max_namespaces_per_connection`.
    pub refused_namespaces: Counter,
    /// A join past `max_rooms_per_socket` (one per socket refused).
    pub refused_rooms: Counter,
    /// A TCP connection past `max_connections_per_ip`.
    pub refused_connections_per_ip: Counter,
    /// Sessions closed for sending over their packet rate.
    pub rate_limit_disconnects: Counter,
    /// Failed `accept`s (out of descriptors, say), on the shard's
    /// listeners and, on shard 0, the admin listener.
    pub accept_errors: Counter,
    /// Namespaces that exist on the shard.
    pub namespaces: Gauge,
    /// Bytes of messages held for clients (queued, or taken by a writer and
    /// not yet written): raised once per send batch, lowered once per write
    /// or GET, never per packet (see `engine::SessionEntry`).
    pub outgoing_buffered_bytes: Gauge,
    /// Plain WebSocket connections whose reads the shard's readiness ring
    /// watches (the others read through glommio).
    pub ws_read_ring_connections: Gauge,
    pub ws_read_ring_failures: Counter,
    /// Long-polling answers sent compressed (gzip or deflate), counted on
    /// the shard that wrote them.
    pub polling_compressed: Counter,
    /// Bytes those answers shrank by.
    pub polling_compression_saved_bytes: Counter,
    /// Messages compressed (permessage-deflate): a broadcast's shared frame
    /// counts once, however many recipients it goes to.
    pub deflate_compressions: Counter,
    /// WebSocket messages sent compressed, and their payload bytes before
    /// and after compression.
    pub deflated_messages: Counter,
    pub deflated_bytes_before: Counter,
    pub deflated_bytes_after: Counter,
    /// Connection-state recoveries asked for (a CONNECT with a private id
    /// and an offset), on the shard the client reconnected to.
    pub recoveries_attempted: Counter,
    pub recoveries_succeeded: Counter,
    /// Failed recoveries, by cause (in `RECOVERY_FAIL_CAUSES` order).
    recoveries_failed: Vec<Counter>,
    /// Bytes of packets kept for recovery.
    pub recovery_bytes: Gauge,
    /// Sessions kept for recovery.
    pub recovery_sessions: Gauge,
    /// TLS connections closed before their first request (handshake
    /// failed or timed out, or plain HTTP on the TLS port).
    pub tls_handshake_failures: Counter,
    /// Admin UI sockets connected on the shard.
    pub admin_ui_sockets: Gauge,
    /// Admin UI login sessions held (the process's, on shard 0's label).
    pub admin_ui_sessions: Gauge,
    /// Admin UI logins refused (wrong username or password, or too many checks at once).
    pub admin_ui_failed_logins: Counter,
    /// Admin UI development notices dropped at the shard's queue bound.
    pub admin_ui_dropped_events: Counter,
}

impl ShardMetrics {
    /// The failed-recoveries counter of `cause` (one of `RECOVERY_FAIL_CAUSES`).
    pub fn recovery_failed(&self, cause: &str) -> &Counter {
        let index = RECOVERY_FAIL_CAUSES
            .iter()
            .position(|c| *c == cause)
            .unwrap_or(0);
        &self.recoveries_failed[index]
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hub");
        let mut family = |name: &str, help: &str| {
            let f = Family::<ShardLabel, Counter>::default();
            registry.register(name, help, f.clone());
            f
        };
        let handshakes = family("handshakes", "Engine.IO sessions opened");
        let packets_in = family("packets_in", "Engine.IO messages received");
        let packets_out = family("packets_out", "Engine.IO messages queued to clients");
        let bytes_in = family("bytes_in", "Bytes of messages received");
        let bytes_out = family("bytes_out", "Bytes of messages queued to clients");
        let broadcasts = family(
            "broadcasts",
            "Broadcasts emitted (counted on the emitting shard)",
        );
        let deliveries = family("deliveries", "Broadcast packets queued to a recipient");
        let volatile_dropped = family(
            "volatile_dropped",
            "Volatile packets dropped for clients that could not take them",
        );
        let slow_consumer_disconnects = family(
            "slow_consumer_disconnects",
            "Connections closed because their send queue passed its limit",
        );
        let input_pauses = family(
            "input_pauses",
            "Times a shard stopped reading its clients because its backlog for other shards passed its limit",
        );
        let panics = family(
            "panics",
            "Panics caught in application code or in one connection's code (that connection was closed)",
        );
        let rate_limit_disconnects = family(
            "rate_limit_disconnects",
            "Connections closed because the client sent packets faster than its packet rate",
        );
        let accept_errors = family(
            "accept_errors",
            "Failed accepts (out of descriptors, say); the listener backs off",
        );
        let polling_compressed = family(
            "polling_compressed",
            "Long-polling answers sent compressed (gzip or deflate)",
        );
        let polling_compression_saved_bytes = family(
            "polling_compression_saved_bytes",
            "Bytes saved by compressing long-polling answers",
        );
        let deflate_compressions = family(
            "ws_deflate_compressions",
            "Messages compressed with permessage-deflate (a broadcast's shared frame once)",
        );
        let deflated_messages =
            family("ws_deflated_messages", "WebSocket messages sent compressed");
        let deflated_bytes_before = family(
            "ws_deflated_bytes_before",
            "Payload bytes of the WebSocket messages sent compressed, before compression",
        );
        let deflated_bytes_after = family(
            "ws_deflated_bytes_after",
            "Payload bytes of the WebSocket messages sent compressed, as sent",
        );
        let recoveries_attempted = family(
            "recoveries_attempted",
            "Connection-state recoveries asked for (CONNECT with a private id and an offset)",
        );
        let recoveries_succeeded = family(
            "recoveries_succeeded",
            "Connection-state recoveries that gave the socket back",
        );
        let ws_read_ring_failures = family(
            "ws_read_ring_failures",
            "Times the shard's readiness ring was given up (its connections read through glommio since)",
        );
        let tls_handshake_failures = family(
            "tls_handshake_failures",
            "TLS connections closed before their first request: a failed or too slow handshake, or plain HTTP on the TLS port",
        );
        let mut gauge = |name: &str, help: &str| {
            let f = Family::<ShardLabel, Gauge>::default();
            registry.register(name, help, f.clone());
            f
        };
        let connections = gauge("connections", "Engine.IO sessions open");
        let cross_shard_queue = gauge(
            "cross_shard_queue",
            "Messages waiting to go to other shards",
        );
        let namespaces = gauge("namespaces", "Socket.IO namespaces on the shard");
        let cross_shard_backlog_bytes = gauge(
            "cross_shard_backlog_bytes",
            "Bytes of messages waiting to go to other shards",
        );
        let outgoing_buffered_bytes = gauge(
            "outgoing_buffered_bytes",
            "Bytes of messages held for clients: queued, or being written",
        );
        let ws_read_ring_connections = gauge(
            "ws_read_ring_connections",
            "WebSocket connections whose reads the shard's io_uring readiness ring watches",
        );
        let recovery_bytes = gauge(
            "recovery_bytes",
            "Bytes of packets kept for connection-state recovery",
        );
        let recovery_sessions = gauge(
            "recovery_sessions",
            "Sessions kept for connection-state recovery",
        );
        let admin_ui_sockets = gauge("admin_ui_sockets", "Socket.IO Admin UI sockets connected");
        let admin_ui_sessions = gauge(
            "admin_ui_sessions",
            "Socket.IO Admin UI login sessions held (the process's, on shard 0)",
        );
        let admin_ui_failed_logins = Family::<ShardLabel, Counter>::default();
        registry.register(
            "admin_ui_failed_logins",
            "Socket.IO Admin UI logins refused",
            admin_ui_failed_logins.clone(),
        );
        let admin_ui_dropped_events = Family::<ShardLabel, Counter>::default();
        registry.register(
            "admin_ui_dropped_events",
            "Socket.IO Admin UI development notices dropped (the shard's queue for the admin sockets was full)",
            admin_ui_dropped_events.clone(),
        );
        let recoveries_failed = Family::<RecoveryFailLabel, Counter>::default();
        registry.register(
            "recoveries_failed",
            "Connection-state recoveries that gave a fresh session (label cause: unknown, expired, offset, buffer, timeout)",
            recoveries_failed.clone(),
        );
        let dashboard_streams = Gauge::default();
        registry.register(
            "dashboard_streams",
            "Dashboard event streams open on the admin listener",
            dashboard_streams.clone(),
        );
        let dashboard_streams_refused = Counter::default();
        registry.register(
            "dashboard_streams_refused",
            "Dashboard event streams refused because the most allowed were open",
            dashboard_streams_refused.clone(),
        );
        let dashboard_streams_stalled = Counter::default();
        registry.register(
            "dashboard_streams_stalled",
            "Dashboard event streams closed because their client stopped reading",
            dashboard_streams_stalled.clone(),
        );
        let limit_refusals = Family::<LimitLabel, Counter>::default();
        registry.register(
            "limit_refusals",
            "Requests refused by a limit (label limit: namespaces_per_connection, rooms_per_socket, connections_per_ip)",
            limit_refusals.clone(),
        );
        let tls_reloads = Family::<ReloadLabel, Counter>::default();
        registry.register(
            "tls_reloads",
            "Certificate reloads on SIGHUP (label result: ok, failed; a failed one keeps the certificate in use)",
            tls_reloads.clone(),
        );
        for result in ["ok", "failed"] {
            let _ = tls_reloads.get_or_create(&ReloadLabel { result });
        }
        Metrics {
            tls_handshake_failures,
            tls_reloads,
            registry,
            connections,
            handshakes,
            packets_in,
            packets_out,
            bytes_in,
            bytes_out,
            broadcasts,
            deliveries,
            volatile_dropped,
            slow_consumer_disconnects,
            panics,
            cross_shard_queue,
            cross_shard_backlog_bytes,
            input_pauses,
            limit_refusals,
            rate_limit_disconnects,
            accept_errors,
            namespaces,
            outgoing_buffered_bytes,
            ws_read_ring_connections,
            ws_read_ring_failures,
            polling_compressed,
            polling_compression_saved_bytes,
            deflate_compressions,
            deflated_messages,
            deflated_bytes_before,
            deflated_bytes_after,
            recoveries_attempted,
            recoveries_succeeded,
            recoveries_failed,
            recovery_bytes,
            recovery_sessions,
            admin_ui_sockets,
            admin_ui_sessions,
            admin_ui_failed_logins,
            admin_ui_dropped_events,
            dashboard_streams,
            dashboard_streams_refused,
            dashboard_streams_stalled,
        }
    }

    /// Resolve shard `shard`'s handles (once, at shard start).
    pub fn for_shard(&self, shard: usize) -> ShardMetrics {
        let label = ShardLabel {
            shard: shard.to_string(),
        };
        ShardMetrics {
            connections: self.connections.get_or_create(&label).clone(),
            handshakes: self.handshakes.get_or_create(&label).clone(),
            packets_in: self.packets_in.get_or_create(&label).clone(),
            packets_out: self.packets_out.get_or_create(&label).clone(),
            bytes_in: self.bytes_in.get_or_create(&label).clone(),
            bytes_out: self.bytes_out.get_or_create(&label).clone(),
            broadcasts: self.broadcasts.get_or_create(&label).clone(),
            deliveries: self.deliveries.get_or_create(&label).clone(),
            volatile_dropped: self.volatile_dropped.get_or_create(&label).clone(),
            slow_consumer_disconnects: self.slow_consumer_disconnects.get_or_create(&label).clone(),
            panics: self.panics.get_or_create(&label).clone(),
            cross_shard_queue: self.cross_shard_queue.get_or_create(&label).clone(),
            cross_shard_backlog_bytes: self.cross_shard_backlog_bytes.get_or_create(&label).clone(),
            input_pauses: self.input_pauses.get_or_create(&label).clone(),
            refused_namespaces: self.refusals(shard, "namespaces_per_connection"),
            refused_rooms: self.refusals(shard, "rooms_per_socket"),
            refused_connections_per_ip: self.refusals(shard, "connections_per_ip"),
            rate_limit_disconnects: self.rate_limit_disconnects.get_or_create(&label).clone(),
            accept_errors: self.accept_errors.get_or_create(&label).clone(),
            namespaces: self.namespaces.get_or_create(&label).clone(),
            outgoing_buffered_bytes: self.outgoing_buffered_bytes.get_or_create(&label).clone(),
            ws_read_ring_connections: self.ws_read_ring_connections.get_or_create(&label).clone(),
            ws_read_ring_failures: self.ws_read_ring_failures.get_or_create(&label).clone(),
            polling_compressed: self.polling_compressed.get_or_create(&label).clone(),
            polling_compression_saved_bytes: self
                .polling_compression_saved_bytes
                .get_or_create(&label)
                .clone(),
            deflate_compressions: self.deflate_compressions.get_or_create(&label).clone(),
            deflated_messages: self.deflated_messages.get_or_create(&label).clone(),
            deflated_bytes_before: self.deflated_bytes_before.get_or_create(&label).clone(),
            deflated_bytes_after: self.deflated_bytes_after.get_or_create(&label).clone(),
            recoveries_attempted: self.recoveries_attempted.get_or_create(&label).clone(),
            recoveries_succeeded: self.recoveries_succeeded.get_or_create(&label).clone(),
            recoveries_failed: RECOVERY_FAIL_CAUSES
                .iter()
                .map(|cause| {
                    let label = RecoveryFailLabel {
                        shard: shard.to_string(),
                        cause,
                    };
                    self.recoveries_failed.get_or_create(&label).clone()
                })
                .collect(),
            recovery_bytes: self.recovery_bytes.get_or_create(&label).clone(),
            recovery_sessions: self.recovery_sessions.get_or_create(&label).clone(),
            tls_handshake_failures: self.tls_handshake_failures.get_or_create(&label).clone(),
            admin_ui_sockets: self.admin_ui_sockets.get_or_create(&label).clone(),
            admin_ui_sessions: self.admin_ui_sessions.get_or_create(&label).clone(),
            admin_ui_failed_logins: self.admin_ui_failed_logins.get_or_create(&label).clone(),
            admin_ui_dropped_events: self.admin_ui_dropped_events.get_or_create(&label).clone(),
        }
    }

    fn refusals(&self, shard: usize, limit: &'static str) -> Counter {
        let label = LimitLabel {
            shard: shard.to_string(),
            limit,
        };
        self.limit_refusals.get_or_create(&label).clone()
    }

    /// Count a certificate reload (process-wide: it runs on the signal thread).
    pub fn count_tls_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.tls_reloads
            .get_or_create(&ReloadLabel { result })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

thread_local! {
    static SHARD: RefCell<Option<Rc<ShardMetrics>>> = const { RefCell::new(None) };
}

/// Install this thread's (shard's) handles.
pub(crate) fn enter(metrics: ShardMetrics) {
    SHARD.with(|s| *s.borrow_mut() = Some(Rc::new(metrics)));
}

/// Count something on this shard; nothing when metrics are off.
#[inline]
pub(crate) fn with(f: impl FnOnce(&ShardMetrics)) {
    SHARD.with(|s| {
        if let Some(m) = s.borrow().as_deref() {
            f(m)
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_on_their_shard_label() {
        let metrics = Metrics::new();
        let s0 = metrics.for_shard(0);
        let s1 = metrics.for_shard(1);
        s0.deliveries.inc_by(3);
        s1.deliveries.inc();
        s1.connections.inc();
        let text = metrics.encode();
        assert!(
            text.contains("hub_deliveries_total{shard=\"0\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("hub_deliveries_total{shard=\"1\"} 1"),
            "{text}"
        );
        assert!(text.contains("hub_connections{shard=\"1\"} 1"), "{text}");
    }
}
