//! How the test servers run: start, stop on SIGTERM/SIGINT, say where they
//! listen (the one stdout line the test harnesses wait for), serve to the end.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hub::engine::{DeflateConfig, EngineConfig, ServerConfig};
use hub::shard::{RunningServer, ServerError};

/// The options every test server takes, so that the suites start each of
/// them (and the reference servers) with the same flags.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// 0 picks a free port.
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
    /// Shards (executors); 0 = one per core.
    #[arg(long, default_value_t = 0)]
    pub shards: usize,
    /// Milliseconds between server pings.
    #[arg(long, default_value_t = 25_000)]
    pub ping_interval: u64,
    /// Milliseconds to wait for a pong.
    #[arg(long, default_value_t = 20_000)]
    pub ping_timeout: u64,
    /// Milliseconds a Socket.IO client has to join a namespace.
    #[arg(long, default_value_t = 45_000)]
    pub connect_timeout: u64,
    /// Largest payload accepted, in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_payload: u64,
    /// Compress long-polling answers of at least this many bytes (default:
    /// the library's, 1024).
    #[arg(long, value_name = "BYTES")]
    pub http_compression_threshold: Option<usize>,
    /// Never compress long-polling answers.
    #[arg(long)]
    pub no_http_compression: bool,
    /// WebSocket messages of at least this many bytes go compressed to
    /// clients that negotiated permessage-deflate.
    #[arg(long, default_value_t = 1024)]
    pub deflate_threshold: usize,
    /// Never negotiate permessage-deflate.
    #[arg(long)]
    pub no_deflate: bool,
}

impl ServerArgs {
    /// An endpoint at `path` with these heartbeat and payload options;
    /// Engine.IO v3 clients refused with `no_eio3`.
    pub fn engine(&self, path: &str, no_eio3: bool) -> EngineConfig {
        let mut engine = EngineConfig::new(path);
        engine.session.ping_interval = Duration::from_millis(self.ping_interval);
        engine.session.ping_timeout = Duration::from_millis(self.ping_timeout);
        engine.session.max_payload = self.max_payload;
        engine.allow_eio3 = !no_eio3;
        if let Some(threshold) = self.http_compression_threshold {
            engine.http_compression_threshold = Some(threshold);
        }
        if self.no_http_compression {
            engine.http_compression_threshold = None;
        }
        engine.deflate = (!self.no_deflate).then_some(DeflateConfig {
            threshold: self.deflate_threshold,
        });
        engine
    }

    /// Where to listen and how many shards; the rest as the defaults.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            bind: SocketAddr::new(self.host, self.port),
            shards: self.shards,
            ..ServerConfig::default()
        }
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout)
    }
}

pub fn run(name: &str, started: Result<RunningServer, ServerError>) {
    let fail = |what: String| -> ! {
        eprintln!("{name}: {what}");
        std::process::exit(1);
    };
    let server = started.unwrap_or_else(|error| fail(error.to_string()));
    if let Err(error) = hub::shard::stop_on_signals(server.shutdown_handle()) {
        fail(format!("cannot handle signals: {error}"));
    }
    println!("listening on {}", server.local_addr());
    let _ = std::io::stdout().flush();
    if let Err(error) = server.join() {
        fail(error.to_string());
    }
}
