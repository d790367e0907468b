//! How the test servers run: start, stop on SIGTERM/SIGINT, say where they
//! listen (the one stdout line the test harnesses wait for), serve to the end.

use std::io::Write;
use std::time::Duration;

use hub::engine::EngineConfig;
use hub::shard::{RunningServer, ServerError};

/// An endpoint at `path` with the heartbeat, payload and v3 options the
/// test servers share.
pub fn engine(
    path: &str,
    ping_interval: u64,
    ping_timeout: u64,
    max_payload: u64,
    no_eio3: bool,
) -> EngineConfig {
    let mut engine = EngineConfig::new(path);
    engine.session.ping_interval = Duration::from_millis(ping_interval);
    engine.session.ping_timeout = Duration::from_millis(ping_timeout);
    engine.session.max_payload = max_payload;
    engine.allow_eio3 = !no_eio3;
    engine
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
