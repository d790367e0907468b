//! The `hub` binary with the `--cluster-test` events of
//! `tests/clients/node/reference-relay.mjs`: a client drives the
//! cluster's server-side operations (fetch sockets, room operations,
//! server-side emits, broadcasts with acks, all rooms) from any node, so
//! `tests/clients/node/cluster.test.mjs` checks them between hub and Node
//! nodes in both directions (`HUB_CLUSTER_CMD`).
//!
//! ```sh
//! cargo run --example cluster_relay -- --redis-url redis://127.0.0.1:6379 --cluster-test
//! ```
//!
//! Every option of `hub` is taken; `--cluster-test` adds the events (see
//! reference-relay.mjs's header for each event's request and answer).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hub::app::config::Settings;
use hub::relay::NamespaceCustomizer;
use hub::server::{Ack, Args, BroadcastOperator, Namespace, NamespaceBuilder, Socket};
use serde_json::{json, Value};

/// This node as the answers to server-side emits name it: `<host>:<port>`.
static NODE: OnceLock<String> = OnceLock::new();
/// Per namespace, the server-side emits this node received: `{event, args}`.
/// (They run on shard 0; a client may ask on any shard: a lock, in a test server.)
static SEEN: OnceLock<Mutex<HashMap<String, Vec<Value>>>> = OnceLock::new();

fn seen() -> &'static Mutex<HashMap<String, Vec<Value>>> {
    SEEN.get_or_init(Mutex::default)
}

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let cluster_test = args.iter().any(|a| a == "--cluster-test");
    args.retain(|a| a != "--cluster-test");
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("cluster_relay: the hub with --cluster-test (events to test a cluster's server-side operations)\n\n      --cluster-test  add the cluster test events (see tests/clients/node/reference-relay.mjs)\n");
    }
    let settings = match Settings::load_from(args) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("cluster_relay: {error}");
            std::process::exit(2);
        }
    };
    hub::app::init_logging(&settings);
    let customize: Option<NamespaceCustomizer> =
        cluster_test.then(|| Arc::new(add_test_events) as NamespaceCustomizer);
    let result = hub::app::run_with(settings, customize, |addr, admin| {
        let _ = NODE.set(addr.to_string());
        println!("listening on {addr}");
        println!("admin listening on {admin}");
        let _ = std::io::stdout().flush();
    });
    if let Err(error) = result {
        eprintln!("cluster_relay: {error}");
        std::process::exit(1);
    }
}

fn add_test_events(nsp: NamespaceBuilder) -> NamespaceBuilder {
    nsp.on_server_side_any(|nsp, event, args, ack| {
        let record = json!({"event": event, "args": args.values()});
        seen()
            .lock()
            .expect("not poisoned")
            .entry(nsp.name().to_string())
            .or_default()
            .push(record);
        if let Some(ack) = ack {
            let node = NODE.get().cloned().unwrap_or_default();
            ack.send(Args::new().arg(json!({"node": node, "event": event, "args": args.values()})));
        }
    })
    .on_connection(|socket| {
        let answer = |socket: &Socket, event: &str, run: fn(&Socket, Value, Ack)| {
            socket.on(event, move |socket, args, ack| {
                let spec = match args.get(0) {
                    Some(v @ Value::Object(_)) => v.clone(),
                    _ => json!({}),
                };
                if let Some(ack) = ack {
                    run(socket, spec, ack);
                }
            });
        };
        answer(socket, "fetch_sockets", |socket, spec, ack| {
            let fetch = target(&socket.namespace(), &spec).fetch_sockets();
            hub::server::spawn_local(async move {
                let sockets: Vec<Value> = fetch
                    .await
                    .into_iter()
                    .map(|s| json!({"id": s.id, "rooms": s.rooms}))
                    .collect();
                ack.send(Args::new().arg(sockets));
            });
        });
        answer(socket, "sockets_join", |socket, spec, ack| {
            for room in rooms(&spec["room"]) {
                target(&socket.namespace(), &spec).sockets_join(&room);
            }
            ack.send(Args::new().arg(json!({"ok": true})));
        });
        answer(socket, "sockets_leave", |socket, spec, ack| {
            for room in rooms(&spec["room"]) {
                target(&socket.namespace(), &spec).sockets_leave(&room);
            }
            ack.send(Args::new().arg(json!({"ok": true})));
        });
        answer(socket, "disconnect_sockets", |socket, spec, ack| {
            // Answer first: the asking socket may be one of those to go.
            ack.send(Args::new().arg(json!({"ok": true})));
            let close = spec["close"] == Value::Bool(true);
            target(&socket.namespace(), &spec).disconnect_sockets(close);
        });
        answer(socket, "server_side_emit", |socket, spec, ack| {
            let event = spec["event"].as_str().unwrap_or_default().to_string();
            let mut args = Args::new();
            if let Value::Array(list) = &spec["args"] {
                for value in list {
                    args.push(value.clone());
                }
            }
            let nsp = socket.namespace();
            if spec["ack"] != Value::Bool(true) {
                let answer = match nsp.server_side_emit(&event, args) {
                    Ok(()) => json!({"ok": true}),
                    Err(e) => json!({"ok": false, "error": e.to_string()}),
                };
                ack.send(Args::new().arg(answer));
                return;
            }
            let pending = nsp.server_side_emit_with_ack(&event, args);
            hub::server::spawn_local(async move {
                let answer = match pending.await {
                    Ok(responses) => json!({"ok": true, "responses": responses}),
                    Err(e) => json!({"ok": false, "error": e.to_string(), "responses": e.responses}),
                };
                ack.send(Args::new().arg(answer));
            });
        });
        answer(socket, "broadcast_with_ack", |socket, spec, ack| {
            let timeout = spec["timeout"].as_u64().unwrap_or(3000);
            let event = spec["event"].as_str().unwrap_or("ask").to_string();
            let data = spec["data"].clone();
            let pending = target(&socket.namespace(), &spec)
                .timeout(Duration::from_millis(timeout))
                .emit_with_ack(&event, Args::new().arg(data));
            let pending = match pending {
                Ok(pending) => pending,
                Err(e) => {
                    ack.send(Args::new().arg(json!({"ok": false, "error": e.to_string()})));
                    return;
                }
            };
            hub::server::spawn_local(async move {
                let first = |args: &Args| args.get(0).cloned().unwrap_or(Value::Null);
                let answer = match pending.await {
                    Ok(responses) => {
                        json!({"ok": true, "responses": responses.iter().map(first).collect::<Vec<_>>()})
                    }
                    Err(e) => json!({
                        "ok": false,
                        "error": e.to_string(),
                        "responses": e.responses.iter().map(first).collect::<Vec<_>>(),
                    }),
                };
                ack.send(Args::new().arg(answer));
            });
        });
        answer(socket, "all_rooms", |socket, _spec, ack| {
            let rooms = socket.namespace().all_rooms();
            hub::server::spawn_local(async move {
                ack.send(Args::new().arg(rooms.await));
            });
        });
        answer(socket, "server_side_seen", |socket, _spec, ack| {
            let list = seen()
                .lock()
                .expect("not poisoned")
                .get(socket.nsp())
                .cloned()
                .unwrap_or_default();
            ack.send(Args::new().arg(list));
        });
    })
}

/// `to`: a room, rooms, or absent (every socket of the namespace).
fn target(nsp: &Namespace, spec: &Value) -> BroadcastOperator {
    let mut op = nsp.all();
    for room in rooms(&spec["to"]) {
        op = op.to(&room);
    }
    op
}

fn rooms(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(list) => list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}
