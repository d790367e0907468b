//! The shapes the Admin UI reads: the feature list of `config`, the
//! serialized socket of `all_sockets` and `socket_connected`, the
//! `server_stats` payload.

use serde_json::{json, Map, Value};

use super::Mode;
use crate::server::{RemoteSocket, ShardStats};

/// `config.supportedFeatures`, in `@socket.io/admin-ui` 0.5.1's order:
/// the commands unless readonly, then `AGGREGATED_EVENTS`, then
/// `ALL_EVENTS` in development mode.
pub fn features(readonly: bool, mode: Mode) -> Vec<&'static str> {
    let mut features = if readonly {
        Vec::new()
    } else {
        vec![
            "EMIT",
            "JOIN",
            "LEAVE",
            "DISCONNECT",
            "MJOIN",
            "MLEAVE",
            "MDISCONNECT",
        ]
    };
    features.push("AGGREGATED_EVENTS");
    if mode == Mode::Development {
        features.push("ALL_EVENTS");
    }
    features
}

/// A socket as the UI shows it: `{id, clientId, transport, nsp, data,
/// handshake, rooms}`. `handshake` is Node's serialization of it (as
/// [`crate::server::Handshake::to_json`] writes it); its `auth` is left
/// out, and its `address` is the client's as proxies report it
/// (`cf-connecting-ip`, else `x-forwarded-for`), else the peer's.
pub fn socket(socket: &RemoteSocket) -> Value {
    let mut handshake = match &socket.handshake {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    handshake.remove("auth");
    let header = |name: &str| {
        handshake
            .get("headers")
            .and_then(|h| h.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if let Some(address) = header("cf-connecting-ip").or_else(|| header("x-forwarded-for")) {
        handshake.insert("address".into(), Value::from(address));
    }
    let client_id: String = socket
        .client_id
        .as_deref()
        .unwrap_or(&socket.id)
        .chars()
        .take(12)
        .collect();
    json!({
        "id": socket.id,
        "clientId": client_id,
        "transport": socket.transport.map_or("websocket", |t| t.as_str()),
        "nsp": socket.nsp,
        "data": {},
        "handshake": handshake,
        "rooms": socket.rooms,
    })
}

/// Who this process is in `server_stats`.
#[derive(Clone, Debug)]
pub struct ServerIdentity {
    pub server_id: String,
    pub hostname: String,
    pub pid: u32,
}

/// The `server_stats` payload from every shard's stats and the drained
/// aggregated events. `uptime` is in seconds.
pub fn server_stats(
    identity: &ServerIdentity,
    uptime: f64,
    shards: &[ShardStats],
    aggregated: Vec<Value>,
) -> Value {
    let clients: usize = shards.iter().map(|s| s.connections).sum();
    let polling: usize = shards.iter().map(|s| s.polling).sum();
    let mut namespaces = std::collections::BTreeMap::<&str, usize>::new();
    for shard in shards {
        for (name, stats) in &shard.namespaces {
            *namespaces.entry(name).or_default() += stats.sockets;
        }
    }
    let namespaces: Vec<Value> = namespaces
        .into_iter()
        .map(|(name, count)| json!({"name": name, "socketsCount": count}))
        .collect();
    json!({
        "serverId": identity.server_id,
        "hostname": identity.hostname,
        "pid": identity.pid,
        "uptime": uptime,
        "clientsCount": clients,
        "pollingClientsCount": polling,
        "aggregatedEvents": aggregated,
        "namespaces": namespaces,
    })
}
