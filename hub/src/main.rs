//! The `hub` binary.
//!
//! Until the Socket.IO layer lands it serves the Engine.IO layer at `--path`
//! with an echo application, so clients and load tools can already exercise
//! the transports, the shards and the cross-shard routing.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hub::engine::{Echo, EngineConfig, Handler, ServerConfig};
use hub::shard::Server;

#[derive(Parser, Debug)]
#[command(version, about = "hub: a thread-per-core Socket.IO server")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0", env = "HUB_BIND")]
    bind: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 3000, env = "HUB_PORT")]
    port: u16,
    /// Shards (one executor each); 0 = one per available core.
    #[arg(long, default_value_t = 0, env = "HUB_SHARDS")]
    shards: usize,
    /// Pin shard i to core i.
    #[arg(long, env = "HUB_PIN_CORES")]
    pin_cores: bool,
    /// Request path of the endpoint.
    #[arg(long, default_value = "/socket.io/", env = "HUB_PATH")]
    path: String,
    /// Milliseconds between server pings.
    #[arg(long, default_value_t = 25_000, env = "HUB_PING_INTERVAL")]
    ping_interval: u64,
    /// Milliseconds to wait for a pong before closing.
    #[arg(long, default_value_t = 20_000, env = "HUB_PING_TIMEOUT")]
    ping_timeout: u64,
    /// Largest message or HTTP body accepted, in bytes.
    #[arg(long, default_value_t = 1_000_000, env = "HUB_MAX_PAYLOAD")]
    max_payload: u64,
    /// Refuse Engine.IO v3 (Socket.IO v2) clients.
    #[arg(long, env = "HUB_NO_EIO3")]
    no_eio3: bool,
    /// Log filter (error, warn, info, debug, trace).
    #[arg(long, default_value = "info", env = "HUB_LOG_LEVEL")]
    log_level: String,
}

/// Raise the soft open-file limit to the hard limit: each connection is a descriptor.
fn raise_fd_limit() -> u64 {
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

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log_level)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let fds = raise_fd_limit();
    let mut engine = EngineConfig::new(&args.path);
    engine.session.ping_interval = Duration::from_millis(args.ping_interval);
    engine.session.ping_timeout = Duration::from_millis(args.ping_timeout);
    engine.session.max_payload = args.max_payload;
    engine.allow_eio3 = !args.no_eio3;
    let config = ServerConfig {
        bind: SocketAddr::new(args.bind, args.port),
        shards: args.shards,
        pin_cores: args.pin_cores,
        ..ServerConfig::default()
    };
    let server = Server::new(config)
        .endpoint(engine, Arc::new(|_| Rc::new(Echo) as Rc<dyn Handler>))
        .start();
    let server = match server {
        Ok(server) => server,
        Err(error) => {
            eprintln!("hub: cannot start: {error}");
            std::process::exit(1);
        }
    };
    tracing::info!(
        addr = %server.local_addr(),
        shards = server.shards(),
        path = %args.path,
        eio3 = !args.no_eio3,
        open_files = fds,
        "hub listening (Engine.IO v4{})",
        if args.no_eio3 { "" } else { " and v3" }
    );
    if let Err(error) = hub::shard::stop_on_signals(server.shutdown_handle()) {
        eprintln!("hub: cannot handle signals: {error}");
        std::process::exit(1);
    }
    if let Err(error) = server.join() {
        eprintln!("hub: {error}");
        std::process::exit(1);
    }
}
