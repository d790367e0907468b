//! Comparison peer for hub's benchmarks: the relay protocol
//! (docs/relay-protocol.md: `join` / `leave` / `publish` / `echo`, open, no
//! auth, no admin API) on [socketioxide] as a layer of an [axum] router, on a
//! multi-thread tokio runtime.
//!
//! ```text
//! socketioxide-peer [--port P] [--bind IP] [--ping-interval MS] [--ping-timeout MS]
//!                   [--threads N] [--max-buffer-size PACKETS] [--shards N]
//! ```
//!
//! `--port 0` (the default) takes a free port; `--bind` defaults to
//! 127.0.0.1; `--threads` defaults to the available cores;
//! `--max-buffer-size` (packets queued per connection) defaults to 16,384,
//! hub's bound (socketioxide's default, 128, drops events in any burst);
//! `--shards` is accepted and ignored. Prints `listening on <host>:<port>` on stdout once
//! ready. SIGTERM / SIGINT: every socket gets a DISCONNECT (clients see
//! `io server disconnect`), the connections are closed and the process exits 0.
//!
//! Every namespace is served (`/` and the dynamic namespace `/{*path}`);
//! rooms are per namespace. The crate's `v4` feature is on, so Socket.IO v2
//! clients (protocol v4 over Engine.IO v3) are served as well as v3/v4 ones.
//!
//! ## Handlers run synchronously, in packet order
//!
//! socketioxide calls a message handler as soon as the packet is decoded, in
//! the order the packets arrive, and then `tokio::spawn`s the future the
//! handler returns. With `async` handlers the work of two consecutive events
//! of one socket runs in two tasks that a multi-thread runtime may run in
//! either order (a `publish` could overtake the one before it, an `echo` a
//! `join`). Socket.IO guarantees in-order handling of one socket's events, and
//! the relay protocol relies on it, so these handlers do all their work in
//! the synchronous part (joins, leaves and acks are synchronous in
//! socketioxide; a broadcast on the in-memory `LocalAdapter` completes on its
//! first poll) and return a ready future.
//!
//! [socketioxide]: https://docs.rs/socketioxide
//! [axum]: https://docs.rs/axum

use std::fmt;
use std::future::{Future, Ready, ready};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::task::{Context, Waker};
use std::time::Duration;

use rmpv::Value;
use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeTuple, Serializer};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef, TryData};

const USAGE: &str = "usage: socketioxide-peer [--port P] [--bind IP] [--ping-interval MS] [--ping-timeout MS] \
[--threads N] [--max-buffer-size PACKETS] [--shards N]";

/// Room names are 1..=256 bytes of UTF-8.
const MAX_ROOM_BYTES: usize = 256;
/// A join, leave or `to` list has 1..=64 names.
const MAX_ROOMS: usize = 64;
/// socket.io's own event names, which a `publish` may not use.
const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];
/// socket.io's `maxHttpBufferSize` default (socketioxide's own is 100 kB).
const MAX_PAYLOAD: u64 = 1_000_000;
/// Packets queued per connection before socketioxide drops what is emitted
/// to it: hub's per-connection bound (socketioxide's own default is 128,
/// which silently drops relayed events and acks in any burst).
const MAX_BUFFER_SIZE: usize = 16_384;

// ---------------------------------------------------------------- arguments

struct Options {
    port: u16,
    bind: IpAddr,
    ping_interval: u64,
    ping_timeout: u64,
    threads: usize,
    max_buffer_size: usize,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        port: 0,
        bind: IpAddr::from([127, 0, 0, 1]),
        ping_interval: 25_000,
        ping_timeout: 20_000,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        max_buffer_size: MAX_BUFFER_SIZE,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let known = [
            "--port",
            "--bind",
            "--ping-interval",
            "--ping-timeout",
            "--threads",
            "--max-buffer-size",
            "--shards",
        ];
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown argument: {flag}"));
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag}: {what}: {value}");
        match flag.as_str() {
            "--port" => opts.port = value.parse().map_err(|_| bad("not a port"))?,
            "--bind" => opts.bind = value.parse().map_err(|_| bad("not an IP address"))?,
            "--ping-interval" => {
                opts.ping_interval = value.parse().map_err(|_| bad("not a number of ms"))?
            }
            "--ping-timeout" => {
                opts.ping_timeout = value.parse().map_err(|_| bad("not a number of ms"))?
            }
            "--threads" => match value.parse() {
                Ok(n) if n > 0 => opts.threads = n,
                _ => return Err(bad("not a positive integer")),
            },
            "--max-buffer-size" => match value.parse() {
                Ok(n) if n > 0 => opts.max_buffer_size = n,
                _ => return Err(bad("not a positive integer")),
            },
            "--shards" => {
                value.parse::<u32>().map_err(|_| bad("not a number"))?;
            }
            _ => unreachable!(),
        }
    }
    Ok(opts)
}

// --------------------------------------------------------------- arguments

/// Every argument of an event (after its name), binary attachments included
/// (`rmpv::Value::Binary`). Deserialized and serialized as a tuple, so that
/// socketioxide spreads it: all the arguments in, all of them back out (an
/// ack with `Args` carries each element as an argument of its own).
struct Args(Vec<Value>);

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArgsVisitor;
        impl<'de> Visitor<'de> for ArgsVisitor {
            type Value = Args;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the arguments of an event")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Args, S::Error> {
                let mut args = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(arg) = seq.next_element()? {
                    args.push(arg);
                }
                Ok(Args(args))
            }
        }
        // A tuple (of any length): socketioxide then hands over every argument.
        deserializer.deserialize_tuple(usize::MAX, ArgsVisitor)
    }
}

impl Serialize for Args {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(self.0.len())?;
        for arg in &self.0 {
            tuple.serialize_element(arg)?;
        }
        tuple.end()
    }
}

impl Args {
    /// The first argument, taken out (`None` when there is none).
    fn into_first(self) -> Option<Value> {
        self.0.into_iter().next()
    }
}

// ---------------------------------------------------------------- protocol

#[derive(serde::Serialize)]
struct Answer {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

const OK: Answer = Answer {
    ok: true,
    error: None,
};
const BAD_REQUEST: Answer = Answer {
    ok: false,
    error: Some("bad request"),
};
const RESERVED: Answer = Answer {
    ok: false,
    error: Some("reserved event"),
};

/// A room name or a list of 1..=64 names of 1..=256 bytes each.
fn room_list(value: Option<Value>) -> Option<Vec<String>> {
    fn name(value: Value) -> Option<String> {
        match value {
            Value::String(s) => {
                let s = s.into_str()?;
                (!s.is_empty() && s.len() <= MAX_ROOM_BYTES).then_some(s)
            }
            _ => None,
        }
    }
    match value? {
        Value::Array(items) if (1..=MAX_ROOMS).contains(&items.len()) => {
            items.into_iter().map(name).collect()
        }
        Value::Array(_) => None,
        single => name(single).map(|n| vec![n]),
    }
}

/// A checked `publish` request.
struct Publish {
    to: Vec<String>,
    event: String,
    data: Value,
    volatile: bool,
}

fn parse_publish(spec: Option<Value>) -> Result<Publish, Answer> {
    let Some(Value::Map(fields)) = spec else {
        return Err(BAD_REQUEST);
    };
    let (mut to, mut event, mut data, mut volatile) = (None, None, None, None);
    for (key, value) in fields {
        // Last one wins, as with JSON.parse.
        match key.as_str() {
            Some("to") => to = Some(value),
            Some("event") => event = Some(value),
            Some("data") => data = Some(value),
            Some("volatile") => volatile = Some(value),
            _ => {}
        }
    }
    let to = room_list(to).ok_or(BAD_REQUEST)?;
    let event = match event {
        Some(Value::String(s)) => s.into_str().filter(|s| !s.is_empty()).ok_or(BAD_REQUEST)?,
        _ => return Err(BAD_REQUEST),
    };
    let volatile = match volatile {
        None | Some(Value::Nil) => false,
        Some(Value::Boolean(b)) => b,
        Some(_) => return Err(BAD_REQUEST),
    };
    if RESERVED_EVENTS.contains(&event.as_str()) {
        return Err(RESERVED);
    }
    Ok(Publish {
        to,
        event,
        data: data.unwrap_or(Value::Nil),
        volatile,
    })
}

fn join(socket: SocketRef, TryData(args): TryData<Args>, ack: AckSender) -> Ready<()> {
    let answer = match room_list(args.ok().and_then(Args::into_first)) {
        Some(rooms) => {
            socket.join(rooms);
            OK
        }
        None => BAD_REQUEST,
    };
    ack.send(&answer).ok();
    ready(())
}

fn leave(socket: SocketRef, TryData(args): TryData<Args>, ack: AckSender) -> Ready<()> {
    let answer = match room_list(args.ok().and_then(Args::into_first)) {
        Some(rooms) => {
            socket.leave(rooms);
            OK
        }
        None => BAD_REQUEST,
    };
    ack.send(&answer).ok();
    ready(())
}

fn publish(socket: SocketRef, TryData(args): TryData<Args>, ack: AckSender) -> Ready<()> {
    let answer = match parse_publish(args.ok().and_then(Args::into_first)) {
        Ok(Publish {
            to,
            event,
            data,
            volatile,
        }) => {
            // `socket.to(rooms)`: every socket in those rooms once, the sender excluded.
            let mut op = socket.to(to);
            if volatile {
                op = op.volatile();
            }
            run_now(op.emit(event, &data));
            OK
        }
        Err(refusal) => refusal,
    };
    ack.send(&answer).ok();
    ready(())
}

fn echo(TryData(args): TryData<Args>, ack: AckSender) -> Ready<()> {
    if let Ok(args) = args {
        ack.send(&args).ok();
    }
    ready(())
}

/// Polls `fut` once, here: a broadcast on socketioxide's in-memory
/// `LocalAdapter` is done by then (its adapter future is a `future::ready`),
/// in order with the socket's other events. The emit future borrows the
/// data, so it could not be spawned anyway; with another adapter it would
/// not finish (reported once on stderr).
fn run_now<F: Future>(fut: F) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let fut = std::pin::pin!(fut);
    if fut
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_pending()
    {
        WARNED.call_once(|| {
            eprintln!(
                "socketioxide-peer: a broadcast did not complete at once (not a local adapter?)"
            )
        });
    }
}

/// A socket connected to a namespace: the relay's events. Anything else is
/// ignored (no handler, no answer). Registered synchronously, before any
/// event of the socket is handled.
fn on_connect(socket: SocketRef) -> Ready<()> {
    socket.on("join", join);
    socket.on("leave", leave);
    socket.on("publish", publish);
    socket.on("echo", echo);
    ready(())
}

// ------------------------------------------------------------------- server

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(opts) => opts,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(serve(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("socketioxide-peer: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(opts: Options) -> std::io::Result<()> {
    let (layer, io) = SocketIo::builder()
        .req_path("/socket.io")
        .ping_interval(Duration::from_millis(opts.ping_interval))
        .ping_timeout(Duration::from_millis(opts.ping_timeout))
        .max_payload(MAX_PAYLOAD)
        .max_buffer_size(opts.max_buffer_size)
        .build_layer();
    io.ns("/", on_connect);
    io.dyn_ns("/{*path}", on_connect)
        .expect("dynamic namespace pattern");

    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(opts.bind, opts.port)).await?;
    let local = listener.local_addr()?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}:{}", opts.bind, local.port())?;
        out.flush()?;
    }

    let mut server = tokio::spawn(async move { axum::serve(listener, app).await });
    tokio::select! {
        () = shutdown_signal() => {}
        res = &mut server => {
            return match res {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(err),
                Err(err) => Err(std::io::Error::other(err)),
            };
        }
    }

    // A DISCONNECT to every socket of every namespace, a moment for the
    // packets to leave (polling clients fetch them with their pending GET),
    // then close what is left; returning drops the runtime and the listener.
    for nsp in io.nsps() {
        nsp.disconnect().await.ok();
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), io.close()).await;
    server.abort();
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
