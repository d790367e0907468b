//! The fault server: a Socket.IO application whose handlers panic on
//! demand, for the fault tests (`tests/clients/node/faults-panic.test.mjs`,
//! `tests/faults.rs`). Each panic must cost the connection it served and
//! nothing else.
//!
//! ```text
//! fault_server --port P [--host 127.0.0.1] [--shards N] [--ping-interval MS]
//!              [--ping-timeout MS] [--connect-timeout MS] [--max-payload BYTES]
//!              [--request-timeout MS] [--idle-timeout MS]
//!              [--max-cross-shard-backlog BYTES]
//! ```
//!
//! Prints `admin listening on <addr>` (the hub's admin API: `/metrics`
//! counts `hub_panics_total` and `hub_connections`), then
//! `listening on <addr>`, on stdout. Socket.IO at `/socket.io/`, namespaces
//! `/` and `/other`. Logs at info on stderr: the hub's own lines (a caught
//! panic is an error line with the socket id and the panic message), and
//! one line per socket that leaves, `socket left socket=<id> nsp=<nsp>
//! reason=<reason>`.
//!
//! Where it panics, always with a message starting `injected fault:`:
//!
//! - a namespace middleware, for a CONNECT whose auth has `"panic": <text>`
//!   (v2 clients: the CONNECT query `panic=<text>`);
//! - the connection handler, for an Engine.IO handshake whose query has
//!   `panic=<text>`;
//! - the event `panic` (`<text>`): its listener;
//! - the event `panic-on-disconnect` (`<text>`, ack): acks `true`, then the
//!   socket's `disconnect` handler panics when it leaves;
//! - the event `panic-in-ack` (`<text>`, ack): acks `true`, then asks the
//!   client `ask` with an ack; the code awaiting the client's answer (a task
//!   spawned with `hub::server::spawn_local`) panics when it comes;
//! - the event `panic-in-task` (`<text>`, ack): acks `true`, then a task
//!   spawned with `spawn_local` panics after a yield.
//!
//! Other events: `echo` (acks its arguments), `whoami` (acks
//! `{"id", "sid", "shard"}`), and the relay's `join` (a room; acks
//! `{"ok":true}`) and `publish` (`{"to": room, "event", "data"}`: to the
//! room but the sender; acks `{"ok":true}`), so that the relay's clients
//! of the fault tests work here too; `block` (`ms`) blocks the shard's
//! thread that long, as a handler stuck in a loop would.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[path = "common/serve.rs"]
mod serve;

use clap::Parser;
use hub::app::admin::{self, AdminConfig};
use hub::engine::ServerConfig;
use hub::metrics::Metrics;
use hub::server::{spawn_local, Args, ConnectError, Io, Socket};
use hub::shard::Server;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "A Socket.IO server whose handlers panic on demand (fault tests)")]
struct Cli {
    #[command(flatten)]
    server: serve::ServerArgs,
    /// Milliseconds a request may take to arrive whole (a new connection's
    /// first one: from the accept).
    #[arg(long, default_value_t = 10_000)]
    request_timeout: u64,
    /// Milliseconds a kept-alive HTTP connection may wait for its next request.
    #[arg(long, default_value_t = 120_000)]
    idle_timeout: u64,
    /// Bytes a shard may hold for the others before it stops reading its clients.
    #[arg(long, default_value_t = 64 << 20)]
    max_cross_shard_backlog: usize,
}

fn ack_true(ack: Option<hub::server::Ack>) {
    if let Some(ack) = ack {
        ack.send(Args::new().arg(true));
    }
}

fn text(args: &Args) -> String {
    args.str(0).unwrap_or("(no text)").to_string()
}

/// The namespace middleware: panics when asked to by the CONNECT's auth.
fn middleware(socket: &Socket) -> Result<(), ConnectError> {
    if let Some(what) = socket.handshake().auth.get("panic") {
        let what = what
            .as_str()
            .map_or_else(|| what.to_string(), str::to_string);
        panic!("injected fault: namespace middleware: {what}");
    }
    Ok(())
}

fn on_connection(socket: &Socket) {
    if let Some(what) = socket.handshake().query_param("panic") {
        panic!("injected fault: connection handler: {what}");
    }
    socket.on_disconnect(|socket, reason| {
        tracing::info!(
            socket = socket.id(),
            nsp = socket.nsp(),
            reason = reason.as_str(),
            "socket left"
        );
    });
    socket.on("echo", |_, args, ack| {
        if let Some(ack) = ack {
            ack.send(args);
        }
    });
    socket.on("whoami", |socket, _, ack| {
        if let Some(ack) = ack {
            let sid = socket.conn().sid().to_string();
            let shard = hub::shard::context::shard_id();
            ack.send(Args::new().arg(json!({"id": socket.id(), "sid": sid, "shard": shard})));
        }
    });
    socket.on("join", |socket, args, ack| {
        if let Some(room) = args.str(0) {
            socket.join(room);
        }
        if let Some(ack) = ack {
            ack.send(Args::new().arg(json!({"ok": true})));
        }
    });
    socket.on("publish", |socket, args, ack| {
        let spec = args.get(0).cloned().unwrap_or_default();
        let (room, event) = (spec["to"].as_str(), spec["event"].as_str());
        if let (Some(room), Some(event)) = (room, event) {
            let _ = socket
                .to(room)
                .emit(event, Args::new().arg(spec["data"].clone()));
        }
        if let Some(ack) = ack {
            ack.send(Args::new().arg(json!({"ok": true})));
        }
    });
    socket.on("block", |_, args, _| {
        // A handler stuck for a while: its shard's thread does nothing else.
        let ms = args.get(0).and_then(serde_json::Value::as_u64).unwrap_or(0);
        std::thread::sleep(Duration::from_millis(ms));
    });
    socket.on("panic", |_, args, _| {
        panic!("injected fault: event handler: {}", text(&args));
    });
    socket.on("panic-on-disconnect", |socket, args, ack| {
        let what = text(&args);
        socket.on_disconnect(move |_, reason| {
            panic!("injected fault: disconnect handler ({reason}): {what}");
        });
        ack_true(ack);
    });
    socket.on("panic-in-ack", |socket, args, ack| {
        let what = text(&args);
        let Ok(reply) = socket.emit_with_ack("ask", Args::new(), Duration::from_secs(10)) else {
            return;
        };
        ack_true(ack);
        spawn_local(async move {
            let answer = reply.await;
            panic!("injected fault: ack callback ({}): {what}", answer.is_ok());
        });
    });
    socket.on("panic-in-task", |_, args, ack| {
        let what = text(&args);
        ack_true(ack);
        spawn_local(async move {
            futures_lite::future::yield_now().await;
            panic!("injected fault: spawned task: {what}");
        });
    });
}

fn io(connect_timeout: Duration) -> Io {
    let app = |nsp: hub::server::NamespaceBuilder| {
        nsp.use_middleware(middleware).on_connection(on_connection)
    };
    Io::builder()
        .connect_timeout(connect_timeout)
        .of("/", app)
        .of("/other", app)
        .build()
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let engine = cli.server.engine("/socket.io/", false);
    let metrics = Arc::new(Metrics::new());
    let config = ServerConfig {
        request_timeout: Duration::from_millis(cli.request_timeout),
        idle_timeout: Duration::from_millis(cli.idle_timeout),
        max_cross_shard_backlog: cli.max_cross_shard_backlog,
        metrics: Some(metrics.clone()),
        ..cli.server.server_config()
    };
    let io = io(cli.server.connect_timeout());
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let admin = AdminConfig {
        bind: SocketAddr::new(cli.server.host, 0),
        api_key: None,
        metrics,
        cluster: None,
        tls: None,
        dashboard: Default::default(),
    };
    let started = Server::new(config)
        .endpoint(engine, io.handler_factory())
        .task(admin::task(io.clone(), admin, bound_tx))
        .start();
    if started.is_ok() {
        match bound_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(addr)) => println!("admin listening on {addr}"),
            other => {
                eprintln!("fault_server: the admin listener did not start: {other:?}");
                std::process::exit(1);
            }
        }
        let _ = std::io::stdout().flush();
    }
    serve::run("fault_server", started);
}
