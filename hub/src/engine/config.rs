use std::net::SocketAddr;
use std::time::Duration;

use crate::engineio::session::SessionConfig;
use crate::http::cors::{AllowedOrigins, Cors};

/// One Engine.IO endpoint (a path on the shared port).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The request path prefix, with leading and trailing slash: `/engine.io/`.
    pub path: String,
    pub session: SessionConfig,
    pub cors: Cors,
    /// Accept Engine.IO v3 (Socket.IO v1/v2 clients).
    pub allow_eio3: bool,
    /// Long-polling answers of at least this many bytes are compressed
    /// (gzip or deflate, as the request's `Accept-Encoding` allows), as
    /// engine.io's `httpCompression`; `None` sends every answer as it is.
    /// Default: 1024 bytes, engine.io's threshold.
    pub http_compression_threshold: Option<usize>,
    /// permessage-deflate on WebSockets whose client offers it; `None`: never.
    pub deflate: Option<DeflateConfig>,
}

/// permessage-deflate (RFC 7692) settings of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Messages (the Engine.IO packet, type digit included) shorter than
    /// this go uncompressed: compressing a short one costs more than it
    /// saves. 1024 by default, as socket.io's.
    pub threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig { threshold: 1024 }
    }
}

impl EngineConfig {
    pub fn new(path: &str) -> EngineConfig {
        let mut path = path.to_string();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        if !path.ends_with('/') {
            path.push('/');
        }
        EngineConfig {
            path,
            session: SessionConfig::default(),
            cors: Cors {
                origins: AllowedOrigins::Any,
                credentials: true,
                max_age_secs: None,
            },
            allow_eio3: true,
            http_compression_threshold: Some(crate::http::compression::DEFAULT_THRESHOLD),
            deflate: Some(DeflateConfig::default()),
        }
    }

    /// Does a request path belong to this endpoint? `/engine.io` and `/engine.io/...` do.
    pub(crate) fn matches(&self, path: &str) -> bool {
        let base = &self.path[..self.path.len() - 1];
        path == base || path.starts_with(&self.path)
    }
}

/// The process-wide settings: listeners, shards, HTTP limits.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    /// Executors to run; 0 means one per available core.
    pub shards: usize,
    /// Pin shard `i` to core `i % cores`.
    pub pin_cores: bool,
    /// A request must arrive whole within this time of its first byte; an
    /// HTTP answer the peer takes nothing of for this long is given up on.
    pub request_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// Messages each cross-shard channel holds before senders wait.
    pub mesh_capacity: usize,
    /// Bytes of messages (broadcasts, room operations) a shard may hold
    /// for the other shards beyond what their channels hold. Past it, the
    /// shard stops taking new input from its clients (WebSocket frames, POST
    /// bodies) until the backlog is down to half, so a shard that cannot keep
    /// up slows the publishers rather than growing the others' memory.
    pub max_cross_shard_backlog: usize,
    /// How long a stopping shard waits for its sessions to flush and close.
    pub shutdown_timeout: Duration,
    /// Most sessions open at once over all shards; 0 = no limit. Beyond it a
    /// polling handshake gets 503 and a WebSocket handshake is closed.
    pub max_sessions: usize,
    /// Most TCP connections open at once from one client address (an IPv6
    /// address's /64), over all shards; 0 = no limit (the default: load
    /// generators and proxies put many clients behind one address). A
    /// connection past it is answered 429 to its first request and closed,
    /// counted in `hub_limit_refusals_total{limit="connections_per_ip"}`.
    pub max_connections_per_ip: usize,
    /// Where the shards count what they do (none: not counted).
    pub metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    /// TLS on the listeners (none: plain HTTP).
    pub tls: Option<TlsConfig>,
}

/// TLS on a listener: HTTPS and WSS only.
#[derive(Clone)]
pub struct TlsConfig {
    /// The rustls configuration; its certificate resolver may swap the
    /// certificate (a reload), which new handshakes then see.
    pub rustls: std::sync::Arc<rustls::ServerConfig>,
    /// How long a client has from its accept to the end of its handshake
    /// (a plain-HTTP client: to send its request and be refused).
    pub handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn", &self.rustls.alpn_protocols)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([0, 0, 0, 0], 3000)),
            shards: 0,
            pin_cores: false,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            mesh_capacity: 1024,
            max_cross_shard_backlog: 64 << 20,
            shutdown_timeout: Duration::from_secs(10),
            max_sessions: 0,
            max_connections_per_ip: 0,
            metrics: None,
            tls: None,
        }
    }
}
