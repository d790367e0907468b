//! How the test servers run: start, stop on SIGTERM/SIGINT, say where they
//! listen (the one stdout line the test harnesses wait for), serve to the end.

use std::io::Write;

use hub::shard::{RunningServer, ServerError};

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
