//! The conformance server: a raw Engine.IO echo endpoint at `/engine.io/`
//! that the test suites and protocol test tools drive.
//!
//! `cargo run --release -p hub --example conformance -- --port 3000 --ping-interval 300 --ping-timeout 200`

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hub::engine::{Echo, EngineConfig, Handler, ServerConfig};
use hub::shard::Server;

#[derive(Parser, Debug)]
#[command(about = "Engine.IO conformance server: echoes every message on /engine.io/")]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// 0 picks a free port.
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Shards (executors); 0 = one per core.
    #[arg(long, default_value_t = 0)]
    shards: usize,
    /// Milliseconds between server pings.
    #[arg(long, default_value_t = 25_000)]
    ping_interval: u64,
    /// Milliseconds to wait for a pong.
    #[arg(long, default_value_t = 20_000)]
    ping_timeout: u64,
    /// Largest payload accepted, in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    max_payload: u64,
    /// Milliseconds a request may take to arrive whole.
    #[arg(long, default_value_t = 10_000)]
    request_timeout: u64,
    /// Refuse Engine.IO v3 clients.
    #[arg(long)]
    no_eio3: bool,
}

fn main() {
    let args = Args::parse();
    let mut engine = EngineConfig::new("/engine.io/");
    engine.session.ping_interval = Duration::from_millis(args.ping_interval);
    engine.session.ping_timeout = Duration::from_millis(args.ping_timeout);
    engine.session.max_payload = args.max_payload;
    engine.allow_eio3 = !args.no_eio3;
    let config = ServerConfig {
        bind: SocketAddr::new(args.host, args.port),
        shards: args.shards,
        request_timeout: Duration::from_millis(args.request_timeout),
        ..ServerConfig::default()
    };
    let server = Server::new(config)
        .endpoint(engine, Arc::new(|_| Rc::new(Echo) as Rc<dyn Handler>))
        .start();
    let server = match server {
        Ok(server) => server,
        Err(error) => {
            eprintln!("conformance: {error}");
            std::process::exit(1);
        }
    };
    println!("listening on {}", server.local_addr());
    let _ = std::io::stdout().flush();
    if let Err(error) = server.join() {
        eprintln!("conformance: {error}");
        std::process::exit(1);
    }
}
