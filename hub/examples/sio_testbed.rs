//! The Socket.IO testbed: a small application over the whole server API,
//! which the real-client suites drive. `tests/clients/TESTBED.md` is its
//! specification; `tests/clients/node/reference-testbed.mjs` implements the
//! same on the reference Node server.

use std::time::Duration;

#[path = "common/serve.rs"]
mod serve;

use clap::Parser;
use hub::server::{spawn_local, Ack, Args, BroadcastOperator, ConnectError, Io, Socket};
use hub::shard::Server;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "The Socket.IO testbed server (see tests/clients/TESTBED.md)")]
struct Cli {
    #[command(flatten)]
    server: serve::ServerArgs,
    /// Refuse Engine.IO v3 clients.
    #[arg(long)]
    no_eio3: bool,
}

fn sorted(mut rooms: Vec<String>) -> Value {
    rooms.sort();
    json!(rooms)
}

/// Tell every `/monitor` socket, on every shard.
fn report(socket: &Socket, event: Value) {
    if let Some(monitor) = socket.of("/monitor") {
        let _ = monitor.emit("server-event", Args::new().arg(event));
    }
}

fn refuse(socket: &Socket) -> Result<(), ConnectError> {
    // v3/v4 clients send `{"refuse": true}`; v2 clients' CONNECT query is their auth.
    let refuse = socket.handshake().auth.get("refuse");
    if refuse == Some(&Value::Bool(true)) || refuse == Some(&json!("1")) {
        return Err(ConnectError::new("refused by middleware").with_data(json!({"reason": "test"})));
    }
    Ok(())
}

/// `{"rooms", "except", "volatile"}` applied to an operator.
fn narrow(mut op: BroadcastOperator, spec: &Value) -> BroadcastOperator {
    for room in spec["rooms"].as_array().into_iter().flatten() {
        if let Some(room) = room.as_str() {
            op = op.to(room);
        }
    }
    for room in spec["except"].as_array().into_iter().flatten() {
        if let Some(room) = room.as_str() {
            op = op.except(room);
        }
    }
    if spec["volatile"] == Value::Bool(true) {
        op = op.volatile();
    }
    op
}

/// The `args` array of a spec object, its binary placeholders still naming
/// the attachments that came with it.
fn inner_args(spec: &Value, args: &Args) -> Args {
    let values = spec["args"].as_array().cloned().unwrap_or_default();
    Args::from_parts(values, args.attachments().to_vec())
}

fn answer(ack: &Option<Ack>, value: Value) {
    if let Some(ack) = ack {
        ack.send(Args::new().arg(value));
    }
}

fn on_connection(socket: &Socket) {
    report(
        socket,
        json!({"type": "connection", "nsp": socket.nsp(), "id": socket.id()}),
    );
    let _ = socket.emit("auth", Args::new().arg(socket.handshake().auth.clone()));
    let _ = socket.emit(
        "hello",
        Args::new().arg(json!({"id": socket.id(), "nsp": socket.nsp()})),
    );

    socket.use_middleware(|_, event, _| {
        if event == "use-fail" {
            Err("use-fail refused".to_string())
        } else {
            Ok(())
        }
    });
    socket.on_error(|socket, message| {
        report(
            socket,
            json!({"type": "error", "nsp": socket.nsp(), "id": socket.id(), "message": message}),
        );
    });
    socket.on_disconnecting(|socket, reason| {
        report(
            socket,
            json!({"type": "disconnecting", "nsp": socket.nsp(), "id": socket.id(),
                   "reason": reason.as_str(), "rooms": sorted(socket.rooms())}),
        );
    });
    socket.on_disconnect(|socket, reason| {
        report(
            socket,
            json!({"type": "disconnect", "nsp": socket.nsp(), "id": socket.id(),
                   "reason": reason.as_str(), "rooms": sorted(socket.rooms())}),
        );
    });

    socket.on("message", |socket, args, _| {
        let _ = socket.emit("message-back", args);
    });
    socket.on("message-with-ack", |_, args, ack| {
        if let Some(ack) = ack {
            ack.send(args);
        }
    });
    socket.on("echo", |socket, args, ack| match ack {
        Some(ack) => {
            ack.send(args);
        }
        None => {
            let _ = socket.emit("echo-back", args);
        }
    });
    socket.on("join", |socket, args, ack| {
        match args.get(0) {
            Some(Value::String(room)) => socket.join(room),
            Some(Value::Array(rooms)) => socket.join_many(rooms.iter().filter_map(Value::as_str)),
            _ => {}
        }
        answer(&ack, sorted(socket.rooms()));
    });
    socket.on("leave", |socket, args, ack| {
        if let Some(room) = args.str(0) {
            socket.leave(room);
        }
        answer(&ack, sorted(socket.rooms()));
    });
    socket.on("rooms", |socket, _, ack| {
        answer(&ack, sorted(socket.rooms()))
    });
    socket.on("to", |socket, args, ack| {
        let spec = args.get(0).cloned().unwrap_or(Value::Null);
        let event = spec["event"].as_str().unwrap_or("").to_string();
        let ok = narrow(socket.broadcast(), &spec)
            .emit(&event, inner_args(&spec, &args))
            .is_ok();
        answer(&ack, json!(ok));
    });
    socket.on("server-to", |socket, args, ack| {
        let spec = args.get(0).cloned().unwrap_or(Value::Null);
        let event = spec["event"].as_str().unwrap_or("").to_string();
        let ok = narrow(socket.namespace().all(), &spec)
            .emit(&event, inner_args(&spec, &args))
            .is_ok();
        answer(&ack, json!(ok));
    });
    socket.on("ask", |socket, args, ack| {
        let spec = args.get(0).cloned().unwrap_or(Value::Null);
        let event = spec["event"].as_str().unwrap_or("").to_string();
        let timeout = Duration::from_millis(spec["timeout"].as_u64().unwrap_or(1000));
        let Ok(reply) = socket.emit_with_ack(&event, inner_args(&spec, &args), timeout) else {
            return;
        };
        spawn_local(async move {
            let answer = match reply.await {
                Ok(got) => {
                    let (values, attachments) = got.into_parts();
                    Args::from_parts(vec![json!({"ok": true, "args": values})], attachments)
                }
                Err(_) => Args::new().arg(json!({"ok": false, "error": "timeout"})),
            };
            if let Some(ack) = ack {
                ack.send(answer);
            }
        });
    });
    socket.on("room-sockets", |socket, args, ack| {
        let room = args.str(0).unwrap_or("").to_string();
        let query = socket.namespace().to(&room).fetch_sockets();
        spawn_local(async move {
            let ids = query.await.into_iter().map(|s| s.id).collect();
            answer(&ack, sorted(ids));
        });
    });
    socket.on("room-join", |socket, args, ack| {
        let spec = args.get(0).cloned().unwrap_or(Value::Null);
        let (room, join) = (
            spec["room"].as_str().unwrap_or(""),
            spec["join"].as_str().unwrap_or(""),
        );
        socket.namespace().to(room).sockets_join(join);
        answer(&ack, json!(true));
    });
    socket.on("room-leave", |socket, args, ack| {
        let spec = args.get(0).cloned().unwrap_or(Value::Null);
        let (room, leave) = (
            spec["room"].as_str().unwrap_or(""),
            spec["leave"].as_str().unwrap_or(""),
        );
        socket.namespace().to(room).sockets_leave(leave);
        answer(&ack, json!(true));
    });
    socket.on("room-disconnect", |socket, args, ack| {
        let spec = args.get(0).cloned().unwrap_or(Value::Null);
        answer(&ack, json!(true));
        let room = spec["room"].as_str().unwrap_or("");
        let close = spec["close"] == Value::Bool(true);
        socket.namespace().to(room).disconnect_sockets(close);
    });
    socket.on("disconnect-me", |socket, args, _| {
        let close = args.get(0) == Some(&Value::Bool(true));
        socket.disconnect(close);
    });
}

fn io(connect_timeout: Duration) -> Io {
    let app = |nsp: hub::server::NamespaceBuilder| {
        nsp.use_middleware(refuse).on_connection(on_connection)
    };
    Io::builder()
        .connect_timeout(connect_timeout)
        .of("/", app)
        .of("/custom", app)
        .of("/monitor", |nsp| nsp.close_last())
        .of_dynamic(
            |name| {
                name.strip_prefix("/dyn-").is_some_and(|rest| {
                    !rest.is_empty()
                        && rest
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                })
            },
            app,
        )
        .build()
}

fn main() {
    let cli = Cli::parse();
    let engine = cli.server.engine("/socket.io/", cli.no_eio3);
    let io = io(cli.server.connect_timeout());
    let started = Server::new(cli.server.server_config())
        .endpoint(engine, io.handler_factory())
        .start();
    serve::run("sio_testbed", started);
}
