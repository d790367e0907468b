//! The `hub` binary's settings: flags, then `HUB_*` environment variables,
//! then a TOML file (`--config`), then defaults; each checked at start with
//! a message naming the option.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};
use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// hub: a Socket.IO message hub. Clients connect with any Socket.IO client
/// (v2, v3, v4), join rooms and publish to them; see docs/relay-protocol.md.
#[derive(Parser, Debug, Clone)]
#[command(name = "hub", version, about, long_about = None)]
pub struct Settings {
    /// Read settings from this TOML file (keys are the long option names, e.g. `ping-interval = 25000`);
    /// flags and HUB_* variables override it.
    #[arg(long, env = "HUB_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "HUB_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "HUB_PORT", default_value_t = 3000)]
    pub port: u16,
    /// Shards (one executor each); 0 = one per available core.
    #[arg(long, env = "HUB_SHARDS", default_value_t = 0)]
    pub shards: usize,
    /// Pin shard i to core i.
    #[arg(long, env = "HUB_PIN_CORES")]
    pub pin_cores: bool,
    /// Request path of the Socket.IO endpoint.
    #[arg(long, env = "HUB_PATH", default_value = "/socket.io/")]
    pub path: String,
    /// Milliseconds between server pings.
    #[arg(
        long,
        env = "HUB_PING_INTERVAL",
        default_value_t = 25_000,
        value_name = "MS"
    )]
    pub ping_interval: u64,
    /// Milliseconds to wait for a pong before closing.
    #[arg(
        long,
        env = "HUB_PING_TIMEOUT",
        default_value_t = 20_000,
        value_name = "MS"
    )]
    pub ping_timeout: u64,
    /// Largest message or HTTP body accepted, in bytes.
    #[arg(
        long,
        env = "HUB_MAX_PAYLOAD",
        default_value_t = 1_000_000,
        value_name = "BYTES"
    )]
    pub max_payload: u64,
    /// Milliseconds a client has to join a namespace after connecting.
    #[arg(
        long,
        env = "HUB_CONNECT_TIMEOUT",
        default_value_t = 45_000,
        value_name = "MS"
    )]
    pub connect_timeout: u64,
    /// An origin allowed by CORS (repeatable; default: any origin).
    #[arg(
        long = "cors-origin",
        env = "HUB_CORS_ORIGIN",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub cors_origin: Vec<String>,
    /// Refuse Engine.IO v3 clients (Socket.IO v1/v2), accepted by default.
    #[arg(long, env = "HUB_NO_EIO3")]
    pub no_eio3: bool,
    /// Most connections at once; more are refused (503 on polling, close on WebSocket). 0 = no limit.
    #[arg(long, env = "HUB_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,
    /// Most namespaces one connection may have open; a CONNECT past it gets a connect_error ("too many namespaces"). 0 = no limit.
    #[arg(
        long,
        env = "HUB_MAX_NAMESPACES_PER_CONNECTION",
        default_value_t = 100,
        value_name = "N"
    )]
    pub max_namespaces_per_connection: usize,
    /// Most rooms a socket may be in (its own room not counted); a join past it is answered {"ok":false,"error":"too many rooms"}. 0 = no limit.
    #[arg(
        long,
        env = "HUB_MAX_ROOMS_PER_SOCKET",
        default_value_t = 1_000,
        value_name = "N"
    )]
    pub max_rooms_per_socket: usize,
    /// Connection-state recovery: how long (ms) a client that lost its connection may come back with its socket id, rooms and missed broadcasts (socket.io's connectionStateRecovery). Every broadcast event then carries an offset as its last argument. 0 = off.
    #[arg(
        long,
        env = "HUB_RECOVERY_WINDOW",
        default_value_t = 0,
        value_name = "MS"
    )]
    pub recovery_window: u64,
    /// Most bytes of broadcasts kept for recovery per namespace per shard (all namespaces of a shard: 8 times this); past it the oldest go, and a client whose last one went gets a fresh session.
    #[arg(
        long,
        env = "HUB_RECOVERY_BUFFER_BYTES",
        default_value_t = 8 << 20,
        value_name = "BYTES"
    )]
    pub recovery_buffer_bytes: usize,
    // The default is far above any real client (a browser game sends tens
    // a second) and above what loadgen's echo reaches on one connection
    // with up to 4 emits in flight (measured, release, loopback: 22,000/s
    // with 1 in flight, as scripts/bench-compare and scripts/instructions
    // run it, 67,000/s with 4, 147,000/s with 8), yet well below what one
    // pipelining client reaches (730,000/s with 128 in flight, all of a
    // shard): such a client is closed within a fraction of a second.
    /// Most Engine.IO packets a client may send per second, on average; a connection going faster is closed. 0 = no limit.
    #[arg(
        long,
        env = "HUB_MAX_PACKETS_PER_SECOND",
        default_value_t = 100_000,
        value_name = "N"
    )]
    pub max_packets_per_second: u32,
    /// Packets a client may send at once above --max-packets-per-second (the bucket's size).
    #[arg(
        long,
        env = "HUB_PACKET_BURST",
        default_value_t = 100_000,
        value_name = "N"
    )]
    pub packet_burst: u32,
    /// Most TCP connections at once from one client address (an IPv6 /64); more are answered 429 and closed. 0 = no limit.
    #[arg(
        long,
        env = "HUB_MAX_CONNECTIONS_PER_IP",
        default_value_t = 0,
        value_name = "N"
    )]
    pub max_connections_per_ip: usize,
    /// Bytes of messages one connection may hold (queued, or being written); a client that
    /// would pass it is disconnected as a slow consumer. At least --max-payload.
    #[arg(
        long,
        env = "HUB_MAX_BUFFERED_BYTES",
        default_value_t = 8 << 20,
        value_name = "BYTES"
    )]
    pub max_buffered_bytes: usize,
    /// Packets one connection may have queued; a client that would pass it is disconnected as a
    /// slow consumer.
    #[arg(
        long,
        env = "HUB_MAX_BUFFERED_PACKETS",
        default_value_t = 16_384,
        value_name = "N"
    )]
    pub max_buffered_packets: usize,
    /// Long-polling answers of at least this many bytes are gzip- or deflate-compressed when the
    /// client accepts it (Accept-Encoding), as engine.io's httpCompression.
    #[arg(
        long,
        env = "HUB_HTTP_COMPRESSION_THRESHOLD",
        default_value_t = crate::http::compression::DEFAULT_THRESHOLD,
        value_name = "BYTES"
    )]
    pub http_compression_threshold: usize,
    /// Send long-polling answers uncompressed whatever the client accepts.
    #[arg(long, env = "HUB_NO_HTTP_COMPRESSION")]
    pub no_http_compression: bool,
    /// Bytes of messages a shard may hold for the other shards; past it the shard stops reading
    /// its clients until the backlog is down to half (publishers slow down; nothing is dropped).
    #[arg(
        long,
        env = "HUB_MAX_CROSS_SHARD_BACKLOG",
        default_value_t = 64 << 20,
        value_name = "BYTES"
    )]
    pub max_cross_shard_backlog: usize,
    /// WebSocket messages of at least this many bytes go compressed (permessage-deflate) to
    /// clients that offer it, as browsers and Node clients do; a broadcast is compressed once per
    /// shard, not once per recipient.
    #[arg(
        long,
        env = "HUB_DEFLATE_THRESHOLD",
        default_value_t = 1024,
        value_name = "BYTES"
    )]
    pub deflate_threshold: usize,
    /// Never negotiate permessage-deflate: WebSocket messages go uncompressed both ways.
    #[arg(long, env = "HUB_NO_DEFLATE")]
    pub no_deflate: bool,
    /// Namespaces served, as glob patterns (repeatable; default: all).
    #[arg(
        long = "namespace",
        env = "HUB_NAMESPACE",
        value_delimiter = ',',
        value_name = "PATTERN"
    )]
    pub namespace: Vec<String>,
    /// Require an HS256 token signed with this secret (see docs/relay-protocol.md). Without it the hub is open.
    #[arg(
        long,
        env = "HUB_AUTH_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub auth_secret: Option<String>,
    /// Join a cluster on this Redis (`redis://[user:password@]host[:port][/db]`), wire-compatible
    /// with Node socket.io's @socket.io/redis-adapter (see docs/cluster.md). Without it: one node.
    #[arg(
        long,
        env = "HUB_REDIS_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub redis_url: Option<String>,
    /// Channel prefix on Redis (the Node adapter's `key`).
    #[arg(
        long,
        env = "HUB_REDIS_PREFIX",
        default_value = "socket.io",
        value_name = "PREFIX"
    )]
    pub redis_prefix: String,
    /// Redis pub/sub mode, as the Node servers of the cluster use it: `classic` (createAdapter:
    /// PUBLISH/PSUBSCRIBE) or `sharded` (createShardedAdapter, Redis 7: SPUBLISH/SSUBSCRIBE).
    #[arg(long, env = "HUB_REDIS_MODE", value_enum, default_value_t = RedisMode::Classic)]
    pub redis_mode: RedisMode,
    /// In sharded mode, the adapter's subscriptionMode: `dynamic` (a channel per room, the
    /// Node default) or `static` (one channel per namespace).
    #[arg(
        long,
        env = "HUB_REDIS_SUBSCRIPTION_MODE",
        value_enum,
        default_value_t = SubscriptionMode::Dynamic
    )]
    pub redis_subscription_mode: SubscriptionMode,
    /// Bytes of publishes waiting to be written to Redis; past it a publish is dropped and
    /// counted (hub_cluster_publish_failed_total), never queued.
    #[arg(
        long,
        env = "HUB_REDIS_MAX_PENDING_BYTES",
        default_value_t = 16 << 20,
        value_name = "BYTES"
    )]
    pub redis_max_pending_bytes: usize,
    /// Milliseconds a request to the other nodes (fetch sockets, server-side emit with ack)
    /// waits for their answers.
    #[arg(
        long,
        env = "HUB_REDIS_REQUEST_TIMEOUT",
        default_value_t = 5_000,
        value_name = "MS"
    )]
    pub redis_request_timeout: u64,
    /// Bearer key for the admin API; without one it serves loopback callers only.
    #[arg(long, env = "HUB_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Address of the admin HTTP listener (with --port 0 and no --admin-bind: a free loopback port).
    #[arg(
        long,
        env = "HUB_ADMIN_BIND",
        default_value = "127.0.0.1:3001",
        value_name = "ADDR"
    )]
    pub admin_bind: SocketAddr,
    /// Serve HTTPS and WSS with this certificate chain (PEM; with --tls-key).
    /// SIGHUP reloads it and the key from the same files.
    #[arg(long, env = "HUB_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "HUB_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Certificate chain of the admin listener (PEM; with --admin-tls-key).
    /// Without it, the admin listener uses --tls-cert/--tls-key when given.
    #[arg(long, env = "HUB_ADMIN_TLS_CERT", value_name = "PEM")]
    pub admin_tls_cert: Option<PathBuf>,
    /// The private key of --admin-tls-cert (PEM).
    #[arg(long, env = "HUB_ADMIN_TLS_KEY", value_name = "PEM")]
    pub admin_tls_key: Option<PathBuf>,
    /// Milliseconds a TLS client has, from its connection, to finish its handshake.
    #[arg(
        long,
        env = "HUB_TLS_HANDSHAKE_TIMEOUT",
        default_value_t = 10_000,
        value_name = "MS"
    )]
    pub tls_handshake_timeout: u64,
    /// Serve the Socket.IO Admin UI (https://admin.socket.io, or @socket.io/admin-ui's ui/dist) on a namespace of the main port; also allows the origin https://admin.socket.io (with credentials) when --cors-origin is set.
    #[arg(long, env = "HUB_ADMIN_UI")]
    pub admin_ui: bool,
    /// The Admin UI's namespace.
    #[arg(
        long,
        env = "HUB_ADMIN_UI_NAMESPACE",
        default_value = "/admin",
        value_name = "NSP"
    )]
    pub admin_ui_namespace: String,
    /// The Admin UI's username (used with --admin-ui-password-hash).
    #[arg(
        long,
        env = "HUB_ADMIN_UI_USERNAME",
        default_value = "admin",
        value_name = "NAME"
    )]
    pub admin_ui_username: String,
    /// bcrypt hash of the Admin UI's password (e.g. from `htpasswd -bnBC 10 "" PASSWORD | tr -d ':'`); without one anyone reaching the port may use the Admin UI.
    #[arg(
        long,
        env = "HUB_ADMIN_UI_PASSWORD_HASH",
        hide_env_values = true,
        value_name = "HASH"
    )]
    pub admin_ui_password_hash: Option<String>,
    /// The Admin UI may look but not act: its emit, join, leave and disconnect commands are ignored.
    #[arg(long, env = "HUB_ADMIN_UI_READONLY")]
    pub admin_ui_readonly: bool,
    /// development: the UI also sees every socket, room and event (a notice per event and per broadcast recipient: costly on a busy hub); production: only the server stats every 2 s.
    #[arg(long, env = "HUB_ADMIN_UI_MODE", value_enum, default_value_t = AdminUiMode::Development)]
    pub admin_ui_mode: AdminUiMode,
    /// development mode: the most notices (socket, room and event news) a shard queues for the admin sockets between two sends; past it they are dropped and counted (hub_admin_ui_dropped_events_total).
    #[arg(
        long,
        env = "HUB_ADMIN_UI_MAX_PENDING_EVENTS",
        default_value_t = 10_000,
        value_name = "N"
    )]
    pub admin_ui_max_pending_events: usize,
    /// Milliseconds to finish sending and close connections on SIGTERM/SIGINT.
    #[arg(
        long,
        env = "HUB_SHUTDOWN_TIMEOUT",
        default_value_t = 10_000,
        value_name = "MS"
    )]
    pub shutdown_timeout: u64,
    /// Live dashboard event streams (`GET /api/stream` on the admin listener) open at once; more get 503.
    #[arg(
        long,
        env = "HUB_DASHBOARD_STREAMS",
        default_value_t = 8,
        value_name = "N"
    )]
    pub dashboard_streams: usize,
    /// Milliseconds between the live dashboard's samples (it keeps the last 300).
    #[arg(
        long,
        env = "HUB_DASHBOARD_INTERVAL",
        default_value_t = 1_000,
        value_parser = clap::value_parser!(u64).range(10..),
        value_name = "MS"
    )]
    pub dashboard_interval: u64,
    /// Log line format.
    #[arg(long, env = "HUB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter: error, warn, info, debug, trace, or per-module directives.
    #[arg(
        long,
        env = "HUB_LOG_LEVEL",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub log_level: String,
}

/// What the Admin UI sees (`--admin-ui-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminUiMode {
    /// Server stats only.
    Production,
    /// Server stats, and every socket, room and event.
    Development,
}

/// How hub uses Redis pub/sub in a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedisMode {
    /// `PUBLISH`/`PSUBSCRIBE`, as Node's `createAdapter`.
    Classic,
    /// `SPUBLISH`/`SSUBSCRIBE`, as Node's `createShardedAdapter`.
    Sharded,
}

/// Which channels a node subscribes to in sharded mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubscriptionMode {
    /// One per namespace.
    Static,
    /// One per namespace, and one per room the node has.
    Dynamic,
}

/// The TOML file: every option optional, unknown keys refused.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileSettings {
    bind: Option<IpAddr>,
    port: Option<u16>,
    shards: Option<usize>,
    pin_cores: Option<bool>,
    path: Option<String>,
    ping_interval: Option<u64>,
    ping_timeout: Option<u64>,
    max_payload: Option<u64>,
    connect_timeout: Option<u64>,
    cors_origin: Option<Vec<String>>,
    no_eio3: Option<bool>,
    max_connections: Option<usize>,
    max_namespaces_per_connection: Option<usize>,
    max_rooms_per_socket: Option<usize>,
    recovery_window: Option<u64>,
    recovery_buffer_bytes: Option<usize>,
    max_packets_per_second: Option<u32>,
    packet_burst: Option<u32>,
    max_connections_per_ip: Option<usize>,
    max_buffered_bytes: Option<usize>,
    max_buffered_packets: Option<usize>,
    max_cross_shard_backlog: Option<usize>,
    http_compression_threshold: Option<usize>,
    no_http_compression: Option<bool>,
    deflate_threshold: Option<usize>,
    no_deflate: Option<bool>,
    namespace: Option<Vec<String>>,
    auth_secret: Option<String>,
    redis_url: Option<String>,
    redis_prefix: Option<String>,
    redis_mode: Option<RedisMode>,
    redis_subscription_mode: Option<SubscriptionMode>,
    redis_max_pending_bytes: Option<usize>,
    redis_request_timeout: Option<u64>,
    api_key: Option<String>,
    admin_bind: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    admin_tls_cert: Option<PathBuf>,
    admin_tls_key: Option<PathBuf>,
    tls_handshake_timeout: Option<u64>,
    admin_ui: Option<bool>,
    admin_ui_namespace: Option<String>,
    admin_ui_username: Option<String>,
    admin_ui_password_hash: Option<String>,
    admin_ui_readonly: Option<bool>,
    admin_ui_mode: Option<AdminUiMode>,
    admin_ui_max_pending_events: Option<usize>,
    shutdown_timeout: Option<u64>,
    dashboard_streams: Option<usize>,
    dashboard_interval: Option<u64>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
}

/// A setting refused at start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read --config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid --config {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("invalid --{option}: {message}")]
    Invalid {
        option: &'static str,
        message: String,
    },
}

fn invalid(option: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        option,
        message: message.into(),
    }
}

impl Settings {
    /// Parse the process's arguments, environment and file. Exits with clap's
    /// message on a bad flag; returns an error for bad file contents or values.
    pub fn load() -> Result<Settings, ConfigError> {
        Settings::load_from(std::env::args_os())
    }

    pub fn load_from<I, T>(args: I) -> Result<Settings, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Settings::command().get_matches_from(args);
        let mut settings = Settings::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let mut admin_given = matches!(
            matches.value_source("admin_bind"),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if let Some(path) = settings.config.clone() {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let file: FileSettings = toml::from_str(&text).map_err(|e| ConfigError::File {
                path: path.clone(),
                message: e.to_string(),
            })?;
            admin_given |= file.admin_bind.is_some();
            settings.apply_file(&matches, file);
        }
        // A hub on a free port (tests, several on one host) gets a free admin port too.
        if settings.port == 0 && !admin_given {
            settings.admin_bind.set_port(0);
        }
        settings.check()?;
        Ok(settings)
    }

    /// Take a file value only where neither a flag nor the environment gave one.
    fn apply_file(&mut self, matches: &ArgMatches, file: FileSettings) {
        let unset = |id: &str| {
            !matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        macro_rules! take {
            ($($field:ident),*) => {$(
                if let Some(value) = file.$field {
                    if unset(stringify!($field)) {
                        self.$field = value.into();
                    }
                }
            )*};
        }
        take!(
            bind,
            port,
            shards,
            pin_cores,
            path,
            ping_interval,
            ping_timeout,
            max_payload,
            connect_timeout,
            cors_origin,
            no_eio3,
            max_connections,
            max_namespaces_per_connection,
            max_rooms_per_socket,
            recovery_window,
            recovery_buffer_bytes,
            max_packets_per_second,
            packet_burst,
            max_connections_per_ip,
            max_buffered_bytes,
            max_buffered_packets,
            max_cross_shard_backlog,
            http_compression_threshold,
            no_http_compression,
            deflate_threshold,
            no_deflate,
            namespace,
            redis_prefix,
            redis_mode,
            redis_subscription_mode,
            redis_max_pending_bytes,
            redis_request_timeout,
            admin_bind,
            tls_handshake_timeout,
            admin_ui,
            admin_ui_namespace,
            admin_ui_username,
            admin_ui_readonly,
            admin_ui_mode,
            admin_ui_max_pending_events,
            shutdown_timeout,
            dashboard_streams,
            dashboard_interval,
            log_format,
            log_level
        );
        if let Some(secret) = file.auth_secret {
            if unset("auth_secret") {
                self.auth_secret = Some(secret);
            }
        }
        if let Some(url) = file.redis_url {
            if unset("redis_url") {
                self.redis_url = Some(url);
            }
        }
        if let Some(hash) = file.admin_ui_password_hash {
            if unset("admin_ui_password_hash") {
                self.admin_ui_password_hash = Some(hash);
            }
        }
        if let Some(key) = file.api_key {
            if unset("api_key") {
                self.api_key = Some(key);
            }
        }
        macro_rules! take_some {
            ($($field:ident),*) => {$(
                if let Some(value) = file.$field {
                    if unset(stringify!($field)) {
                        self.$field = Some(value);
                    }
                }
            )*};
        }
        take_some!(tls_cert, tls_key, admin_tls_cert, admin_tls_key);
    }

    fn check(&mut self) -> Result<(), ConfigError> {
        if self.ping_interval == 0 {
            return Err(invalid("ping-interval", "must be at least 1 ms"));
        }
        if let Some(url) = &self.redis_url {
            crate::redis::RedisUrl::parse(url).map_err(|e| invalid("redis-url", e.to_string()))?;
        }
        if self.redis_max_pending_bytes < self.max_payload as usize {
            return Err(invalid(
                "redis-max-pending-bytes",
                format!(
                    "{} is less than --max-payload ({}): one message must fit",
                    self.redis_max_pending_bytes, self.max_payload
                ),
            ));
        }
        if self.redis_request_timeout == 0 {
            return Err(invalid("redis-request-timeout", "must be at least 1 ms"));
        }
        if self.redis_prefix.is_empty() {
            return Err(invalid("redis-prefix", "must not be empty"));
        }
        if self.ping_timeout == 0 {
            return Err(invalid("ping-timeout", "must be at least 1 ms"));
        }
        if self.connect_timeout == 0 {
            return Err(invalid("connect-timeout", "must be at least 1 ms"));
        }
        if self.max_payload == 0 {
            return Err(invalid("max-payload", "must be at least 1 byte"));
        }
        if self.max_packets_per_second != 0 && self.packet_burst == 0 {
            return Err(invalid(
                "packet-burst",
                "must be at least 1 while --max-packets-per-second is set",
            ));
        }
        if (self.max_cross_shard_backlog as u64) < self.max_payload {
            return Err(invalid(
                "max-cross-shard-backlog",
                format!(
                    "{} is less than --max-payload ({}): one message must fit",
                    self.max_cross_shard_backlog, self.max_payload
                ),
            ));
        }
        if self.max_buffered_packets == 0 {
            return Err(invalid("max-buffered-packets", "must be at least 1"));
        }
        if (self.max_buffered_bytes as u64) < self.max_payload {
            return Err(invalid(
                "max-buffered-bytes",
                format!(
                    "{} is less than --max-payload ({}): one message must fit",
                    self.max_buffered_bytes, self.max_payload
                ),
            ));
        }
        if self.shards > crate::engineio::sid::MAX_SHARDS {
            return Err(invalid(
                "shards",
                format!("at most {} are supported", crate::engineio::sid::MAX_SHARDS),
            ));
        }
        if !self.path.starts_with('/') {
            return Err(invalid(
                "path",
                format!("{:?} must start with /", self.path),
            ));
        }
        for origin in &self.cors_origin {
            let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.trim_end_matches('/').ends_with(':')
                && !origin.contains(char::is_whitespace);
            if !ok {
                return Err(invalid(
                    "cors-origin",
                    format!("{origin:?} is not an origin like https://example.com"),
                ));
            }
        }
        if self.namespace.is_empty() {
            self.namespace.push("*".to_string());
        }
        for pattern in &self.namespace {
            if !(pattern.starts_with('/') || pattern.starts_with('*')) {
                return Err(invalid(
                    "namespace",
                    format!("{pattern:?}: a namespace pattern starts with / (or *)"),
                ));
            }
        }
        if self.auth_secret.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("auth-secret", "must not be empty"));
        }
        if let Some(hash) = &self.admin_ui_password_hash {
            if let Err(error) = hash.parse::<bcrypt::HashParts>() {
                return Err(invalid(
                    "admin-ui-password-hash",
                    format!("not a valid bcrypt hash ({error})"),
                ));
            }
        }
        if !self.admin_ui_namespace.starts_with('/') {
            return Err(invalid(
                "admin-ui-namespace",
                format!("{:?} must start with /", self.admin_ui_namespace),
            ));
        }
        if self.api_key.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("api-key", "must not be empty"));
        }
        for (cert, key, cert_option, key_option) in [
            (&self.tls_cert, &self.tls_key, "tls-cert", "tls-key"),
            (
                &self.admin_tls_cert,
                &self.admin_tls_key,
                "admin-tls-cert",
                "admin-tls-key",
            ),
        ] {
            match (cert, key) {
                (Some(_), None) => {
                    return Err(invalid(
                        key_option,
                        format!("missing: --{cert_option} needs it"),
                    ))
                }
                (None, Some(_)) => {
                    return Err(invalid(
                        cert_option,
                        format!("missing: --{key_option} needs it"),
                    ))
                }
                _ => {}
            }
        }
        if self.tls_handshake_timeout == 0 {
            return Err(invalid("tls-handshake-timeout", "must be at least 1 ms"));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(invalid(
                "log-level",
                format!(
                    "{:?} is not a log filter (try info or debug)",
                    self.log_level
                ),
            ));
        }
        Ok(())
    }

    /// The threshold of long-polling compression, `None` when it is off.
    pub fn http_compression(&self) -> Option<usize> {
        (!self.no_http_compression).then_some(self.http_compression_threshold)
    }

    /// The main listener's certificate files, when TLS is on.
    pub fn tls_files(&self) -> Option<super::tls::CertFiles> {
        Some(super::tls::CertFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            cert_option: "tls-cert",
            key_option: "tls-key",
        })
    }

    /// The admin listener's own certificate files, when given.
    pub fn admin_tls_files(&self) -> Option<super::tls::CertFiles> {
        Some(super::tls::CertFiles {
            cert: self.admin_tls_cert.clone()?,
            key: self.admin_tls_key.clone()?,
            cert_option: "admin-tls-cert",
            key_option: "admin-tls-key",
        })
    }

    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    pub fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str]) -> Result<Settings, ConfigError> {
        Settings::load_from(std::iter::once("hub").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_a_working_hub() {
        let s = load(&[]).unwrap();
        assert_eq!(s.listen_addr().port(), 3000);
        assert_eq!(s.path, "/socket.io/");
        assert_eq!(s.namespace, vec!["*"]);
        assert!(!s.no_eio3 && s.auth_secret.is_none());
    }

    #[test]
    fn deflate_is_on_above_1024_bytes_unless_turned_off() {
        let s = load(&[]).unwrap();
        assert_eq!((s.deflate_threshold, s.no_deflate), (1024, false));
        let s = load(&["--deflate-threshold", "0", "--no-deflate"]).unwrap();
        assert_eq!((s.deflate_threshold, s.no_deflate), (0, true));
        // The file's keys.
        let dir = std::env::temp_dir().join(format!("hub-deflate-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hub.toml");
        std::fs::write(&file, "deflate-threshold = 4096\nno-deflate = true\n").unwrap();
        let s = load(&["--config", file.to_str().unwrap()]).unwrap();
        assert_eq!((s.deflate_threshold, s.no_deflate), (4096, true));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_values_name_their_option() {
        for (args, option) in [
            (&["--ping-interval", "0"][..], "--ping-interval"),
            (&["--path", "socket.io"][..], "--path"),
            (&["--cors-origin", "example.com"][..], "--cors-origin"),
            (&["--namespace", "chat"][..], "--namespace"),
            (&["--log-level", "loud=["][..], "--log-level"),
            (&["--shards", "5000"][..], "--shards"),
            (&["--packet-burst", "0"][..], "--packet-burst"),
            (
                &["--max-buffered-packets", "0"][..],
                "--max-buffered-packets",
            ),
            (&["--max-buffered-bytes", "0"][..], "--max-buffered-bytes"),
            (
                &["--max-buffered-bytes", "999999", "--max-payload", "1000000"][..],
                "--max-buffered-bytes",
            ),
        ] {
            let message = load(args).unwrap_err().to_string();
            assert!(message.contains(option), "{args:?}: {message}");
        }
    }

    #[test]
    fn the_outgoing_budget_has_defaults_and_a_file_key() {
        let s = load(&[]).unwrap();
        assert_eq!(
            (s.max_buffered_bytes, s.max_buffered_packets),
            (8 * 1024 * 1024, 16_384)
        );
        let dir = std::env::temp_dir().join(format!("hub-config-budget-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hub.toml");
        std::fs::write(
            &file,
            "max-buffered-bytes = 2000000\nmax-buffered-packets = 100\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let s = load(&["--config", path, "--max-buffered-packets", "200"]).unwrap();
        assert_eq!(
            (s.max_buffered_bytes, s.max_buffered_packets),
            (2_000_000, 200)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn http_compression_is_on_at_1024_bytes_unless_turned_off() {
        assert_eq!(load(&[]).unwrap().http_compression(), Some(1024));
        let s = load(&["--http-compression-threshold", "0"]).unwrap();
        assert_eq!(s.http_compression(), Some(0));
        let s = load(&[
            "--http-compression-threshold",
            "10",
            "--no-http-compression",
        ])
        .unwrap();
        assert_eq!(s.http_compression(), None);
        let dir = std::env::temp_dir().join(format!("hub-config-gzip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hub.toml");
        std::fs::write(&file, "http-compression-threshold = 4096\n").unwrap();
        let path = file.to_str().unwrap();
        assert_eq!(
            load(&["--config", path]).unwrap().http_compression(),
            Some(4096)
        );
        std::fs::write(&file, "no-http-compression = true\n").unwrap();
        assert_eq!(load(&["--config", path]).unwrap().http_compression(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_file_fills_what_flags_leave() {
        let dir = std::env::temp_dir().join(format!("hub-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hub.toml");
        std::fs::write(
            &file,
            "port = 4000\nping-interval = 1234\nnamespace = [\"/a*\"]\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let s = load(&["--config", path, "--port", "5000"]).unwrap();
        assert_eq!(s.port, 5000, "the flag wins");
        assert_eq!(s.ping_interval, 1234, "the file fills");
        assert_eq!(s.namespace, vec!["/a*"]);
        std::fs::write(&file, "prot = 1\n").unwrap();
        let message = load(&["--config", path]).unwrap_err().to_string();
        assert!(message.contains("prot"), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
