//! The conformance server: a raw Engine.IO echo endpoint at `/engine.io/`
//! and a Socket.IO endpoint at `/socket.io/`, which the test suites and the
//! protocols' own test tools drive.
//!
//! `cargo run --release -p hub --example conformance -- --port 3000 --ping-interval 300 --ping-timeout 200`

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

#[path = "common/serve.rs"]
mod serve;

use clap::Parser;
use hub::engine::{Echo, Handler, ServerConfig};
use hub::server::{Args as SioArgs, Io, Socket};
use hub::shard::Server;

#[derive(Parser, Debug)]
#[command(about = "Engine.IO conformance server: echoes every message on /engine.io/")]
struct Args {
    #[command(flatten)]
    server: serve::ServerArgs,
    /// Milliseconds a request may take to arrive whole.
    #[arg(long, default_value_t = 10_000)]
    request_timeout: u64,
    /// Refuse Engine.IO v3 clients.
    #[arg(long)]
    no_eio3: bool,
}

/// The Socket.IO part, as the Socket.IO protocol's own test suite expects:
/// `/` and `/custom`; each socket first gets its auth back; on `/`,
/// `message` is echoed as `message-back` (`message-uncompressed` too, with
/// `compress(false)`) and `message-with-ack` acknowledged,
/// all arguments kept (binary as binary).
fn socket_io(connect_timeout: Duration) -> Io {
    let greet = |socket: &Socket| {
        let _ = socket.emit("auth", SioArgs::new().arg(socket.handshake().auth.clone()));
    };
    Io::builder()
        .connect_timeout(connect_timeout)
        .of("/", move |nsp| {
            nsp.on_connection(move |socket| {
                greet(socket);
                socket.on("message", |socket, args, _| {
                    let _ = socket.emit("message-back", args);
                });
                // The same, with Socket.IO's compress(false): never compressed.
                socket.on("message-uncompressed", |socket, args, _| {
                    let _ = socket.compress(false).emit("message-back", args);
                });
                socket.on("message-with-ack", |_, args, ack| {
                    if let Some(ack) = ack {
                        ack.send(args);
                    }
                });
            })
        })
        .of("/custom", move |nsp| nsp.on_connection(greet))
        .build()
}

fn main() {
    let args = Args::parse();
    let engine = args.server.engine("/engine.io/", args.no_eio3);
    let config = ServerConfig {
        request_timeout: Duration::from_millis(args.request_timeout),
        ..args.server.server_config()
    };
    let mut sio = engine.clone();
    sio.path = "/socket.io/".to_string();
    let io = socket_io(args.server.connect_timeout());
    let server = Server::new(config)
        .endpoint(engine, Arc::new(|_| Rc::new(Echo) as Rc<dyn Handler>))
        .endpoint(sio, io.handler_factory())
        .start();
    serve::run("conformance", server);
}
