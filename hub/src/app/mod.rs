//! The `hub` binary's application: settings, logging, descriptors, and the
//! relay mounted on the shards.

pub mod admin;
pub mod config;
pub mod dashboard;
pub mod log_ring;
pub mod stats_history;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::admin_ui::{AdminUi, AdminUiConfig, BasicAuth, Mode};
use crate::auth::TokenVerifier;
use crate::engine::{DeflateConfig, EngineConfig, ServerConfig};
use crate::engineio::session::PacketRate;
use crate::http::cors::AllowedOrigins;
use crate::metrics::Metrics;
use crate::relay::{relay, RelayConfig};
use crate::server::{ClusterConfig, IoSettings, RecoveryConfig};
use crate::shard::{reload_on_hangup, stop_on_signals, Server, ServerError};
use config::{LogFormat, Settings};

/// Where the hosted Socket.IO Admin UI is served from.
pub const ADMIN_UI_ORIGIN: &str = "https://admin.socket.io";

/// The Admin UI add-on the settings ask for (None when `--admin-ui` is off).
fn admin_ui(settings: &Settings) -> Result<Option<AdminUi>, config::ConfigError> {
    if !settings.admin_ui {
        return Ok(None);
    }
    let config = AdminUiConfig {
        namespace: settings.admin_ui_namespace.clone(),
        auth: settings
            .admin_ui_password_hash
            .clone()
            .map(|password_hash| BasicAuth {
                username: settings.admin_ui_username.clone(),
                password_hash,
            }),
        readonly: settings.admin_ui_readonly,
        mode: match settings.admin_ui_mode {
            config::AdminUiMode::Production => Mode::Production,
            config::AdminUiMode::Development => Mode::Development,
        },
        max_pending_events: settings.admin_ui_max_pending_events,
        server_id: cluster_server_id(settings),
        ..AdminUiConfig::default()
    };
    AdminUi::new(config)
        .map(Some)
        .map_err(|error| config::ConfigError::Invalid {
            option: "admin-ui-password-hash",
            message: error.to_string(),
        })
}

/// The Admin UI's `serverId` in a cluster: `<hostname>#<pid>`, as the
/// Node package names a cluster worker, so that the UI, which keys servers
/// by it, tells apart two nodes on one host. None (the host name) alone.
fn cluster_server_id(settings: &Settings) -> Option<String> {
    settings
        .redis_url
        .as_ref()
        .map(|_| format!("{}#{}", crate::admin_ui::hostname(), std::process::id()))
}

/// Why the hub could not run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot start: {0}")]
    Start(#[from] ServerError),
    /// The running server failed: a shard died, or shutdown overran its timeout.
    #[error("{0}")]
    Run(ServerError),
    #[error("cannot handle signals: {0}")]
    Signals(std::io::Error),
    #[error("admin listener: {0}")]
    Admin(String),
}

pub fn init_logging(settings: &Settings) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let output = match settings.log_format {
        LogFormat::Text => output.boxed(),
        LogFormat::Json => output.json().boxed(),
    };
    // The dashboard's recent errors: WARN and ERROR whatever the level.
    tracing_subscriber::registry()
        .with(output.with_filter(filter))
        .with(log_ring::layer())
        .init();
}

/// Raise the soft open-file limit to the hard limit: each connection is a
/// descriptor. Returns the limit in force.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    limit.rlim_cur
}

/// Run the hub until SIGTERM/SIGINT; `on_listening` hears the bound
/// Socket.IO and admin addresses.
pub fn run(
    settings: Settings,
    on_listening: impl FnOnce(SocketAddr, SocketAddr),
) -> Result<(), AppError> {
    run_with(settings, None, on_listening)
}

/// As [`run`], with more for every namespace the relay serves (events,
/// server-side emit handlers): a test server, or an application built on
/// the hub.
pub fn run_with(
    settings: Settings,
    customize: Option<crate::relay::NamespaceCustomizer>,
    on_listening: impl FnOnce(SocketAddr, SocketAddr),
) -> Result<(), AppError> {
    let admin_ui = admin_ui(&settings)?;
    let fds = raise_fd_limit();
    // Each connection is one descriptor; keep some for listeners, the mesh and logs.
    let capacity = fds.saturating_sub(64);
    let mut engine = EngineConfig::new(&settings.path);
    engine.session.ping_interval = Settings::ms(settings.ping_interval);
    engine.session.ping_timeout = Settings::ms(settings.ping_timeout);
    engine.session.max_payload = settings.max_payload;
    engine.session.packet_rate = (settings.max_packets_per_second != 0)
        .then(|| PacketRate::new(settings.max_packets_per_second, settings.packet_burst));
    engine.session.max_buffered_bytes = settings.max_buffered_bytes;
    engine.session.max_buffered = settings.max_buffered_packets;
    engine.allow_eio3 = !settings.no_eio3;
    engine.http_compression_threshold = settings.http_compression();
    engine.deflate = (!settings.no_deflate).then_some(DeflateConfig {
        threshold: settings.deflate_threshold,
    });
    if !settings.cors_origin.is_empty() {
        let mut origins = settings.cors_origin.clone();
        if settings.admin_ui {
            // The hosted Admin UI polls with credentials (engine.cors has them on).
            origins.push(ADMIN_UI_ORIGIN.to_string());
        }
        engine.cors.origins = AllowedOrigins::List(origins);
    }
    // Certificates are read before anything listens: a bad file stops the
    // start with a message naming its option.
    let handshake_timeout = Settings::ms(settings.tls_handshake_timeout);
    let main_cert = settings
        .tls_files()
        .map(tls::ReloadingCert::load)
        .transpose()?;
    let admin_cert = match settings.admin_tls_files() {
        Some(files) => Some(tls::ReloadingCert::load(files)?),
        // The admin listener shares the main certificate (see --admin-tls-cert).
        None => main_cert.clone(),
    };
    let metrics = Arc::new(Metrics::new());
    let server_config = ServerConfig {
        bind: settings.listen_addr(),
        shards: settings.shards,
        pin_cores: settings.pin_cores,
        shutdown_timeout: Settings::ms(settings.shutdown_timeout),
        max_sessions: settings.max_connections,
        max_connections_per_ip: settings.max_connections_per_ip,
        max_cross_shard_backlog: settings.max_cross_shard_backlog,
        metrics: Some(metrics.clone()),
        tls: main_cert
            .as_ref()
            .map(|cert| cert.listener_config(handshake_timeout)),
        ..ServerConfig::default()
    };
    let cluster = settings.redis_url.as_deref().map(|url| {
        let url = crate::redis::RedisUrl::parse(url).expect("checked with the settings");
        let mut cluster = ClusterConfig::new(url);
        cluster.prefix = settings.redis_prefix.clone();
        cluster.max_pending_bytes = settings.redis_max_pending_bytes;
        cluster.request_timeout = Settings::ms(settings.redis_request_timeout);
        cluster.dialect = match settings.redis_mode {
            config::RedisMode::Classic => crate::redis::Dialect::Classic,
            config::RedisMode::Sharded => crate::redis::Dialect::Sharded {
                dynamic: settings.redis_subscription_mode == config::SubscriptionMode::Dynamic,
            },
        };
        cluster
    });
    let recovery = (settings.recovery_window > 0).then(|| RecoveryConfig {
        window: Settings::ms(settings.recovery_window),
        buffer_bytes: settings.recovery_buffer_bytes,
        // Dynamic namespaces can be many: all logs of a shard together
        // hold at most eight namespaces' budgets.
        shard_buffer_bytes: settings.recovery_buffer_bytes.saturating_mul(8),
        ..RecoveryConfig::default()
    });
    let relay_config = RelayConfig {
        recovery,
        cluster,
        customize,
        instrument: admin_ui.clone().map(|admin_ui| {
            Arc::new(move |builder| admin_ui.instrument(builder)) as crate::relay::Instrument
        }),
        namespaces: settings.namespace.clone(),
        auth: settings
            .auth_secret
            .as_deref()
            .map(|secret| TokenVerifier::new(secret.as_bytes())),
        settings: IoSettings {
            connect_timeout: Settings::ms(settings.connect_timeout),
            max_namespaces_per_connection: settings.max_namespaces_per_connection,
            max_rooms_per_socket: settings.max_rooms_per_socket,
            ..IoSettings::default()
        },
    };
    let io = relay(relay_config);
    let (admin_tx, admin_rx) = std::sync::mpsc::channel();
    let admin = admin::AdminConfig {
        bind: settings.admin_bind,
        api_key: settings.api_key.clone(),
        metrics: metrics.clone(),
        cluster: io.cluster_status(),
        tls: admin_cert
            .as_ref()
            .map(|cert| cert.listener_config(handshake_timeout)),
        dashboard: dashboard::DashboardConfig {
            max_streams: settings.dashboard_streams,
            interval: Settings::ms(settings.dashboard_interval),
        },
    };
    let mut server = Server::new(server_config);
    if let Some(admin_ui) = &admin_ui {
        server = server.task(admin_ui.task(&io));
    }
    let server = server
        .endpoint(engine, io.handler_factory())
        .task(io.cluster_task())
        .task(admin::task(io.clone(), admin, admin_tx))
        .start()?;
    let admin_addr = admin_rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .map_err(|_| AppError::Admin("the admin listener did not start".into()))?
        .map_err(AppError::Admin)?;
    stop_on_signals(server.shutdown_handle()).map_err(AppError::Signals)?;
    let mut certs: Vec<Arc<tls::ReloadingCert>> = main_cert.iter().cloned().collect();
    if let Some(admin) = &admin_cert {
        if !certs.iter().any(|c| Arc::ptr_eq(c, admin)) {
            certs.push(admin.clone());
        }
    }
    if !certs.is_empty() {
        let metrics = metrics.clone();
        reload_on_hangup(move || tls::reload_all(&certs, &metrics)).map_err(AppError::Signals)?;
    }
    let protocols = if settings.no_eio3 {
        "Socket.IO v5 (clients v3, v4)"
    } else {
        "Socket.IO v5 and v4 (clients v2, v3, v4)"
    };
    tracing::info!(
        addr = %server.local_addr(),
        tls = main_cert.is_some(),
        path = %settings.path,
        shards = server.shards(),
        protocols,
        auth = if settings.auth_secret.is_some() { "token (HS256)" } else { "off" },
        namespaces = ?settings.namespace,
        "hub listening"
    );
    if settings.auth_secret.is_none() {
        tracing::warn!(
            "no --auth-secret: the hub is open, anyone may join and publish to any room"
        );
    }
    if let Some(admin_ui) = &admin_ui {
        tracing::info!(
            namespace = %settings.admin_ui_namespace,
            mode = ?settings.admin_ui_mode,
            readonly = settings.admin_ui_readonly,
            features = ?admin_ui.features(),
            "Socket.IO Admin UI on (https://admin.socket.io, server URL: this hub's address)"
        );
        if settings.admin_ui_password_hash.is_none() {
            tracing::warn!(
                "--admin-ui without --admin-ui-password-hash: anyone who reaches the hub can use the Admin UI, see every socket and disconnect them"
            );
        }
    }
    let limit = match settings.max_connections {
        0 => capacity,
        max => max.min(capacity as usize) as u64,
    };
    tracing::info!(open_files = fds, connections = limit, "connection capacity");
    tracing::info!(
        addr = %admin_addr,
        key = settings.api_key.is_some(),
        tls = admin_cert.is_some(),
        "admin API listening (without a key: loopback callers only)"
    );
    on_listening(server.local_addr(), admin_addr);
    server.join().map_err(|error| {
        tracing::error!(%error, "exiting");
        AppError::Run(error)
    })?;
    tracing::info!("stopped");
    Ok(())
}
