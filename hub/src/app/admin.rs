//! The admin HTTP listener, on shard 0: publish to rooms, read stats,
//! health and Prometheus metrics. One request per connection; the body is
//! bounded and must arrive within a few seconds. `/` and `/api/stream` are
//! the live dashboard (see `dashboard`): the stream holds its connection.

use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::timer::Timer;
use serde_json::{json, Value};

use crate::auth::constant_time_eq;
use crate::engine::TlsConfig;
use crate::http::request::{parse_request, Limits, Method, Request};
use crate::http::response::Response;
use crate::server::{Args, Io, LocalIo};
use crate::server::{ClusterSnapshot, ClusterStatus};
use crate::shard::accept::AcceptBackoff;
use crate::shard::stream::Stream;
use crate::shard::{spawn_contained, LocalTask, ShardTask};

use super::dashboard::{self, Dashboard, DashboardConfig};

/// Largest request body the admin API reads.
pub const MAX_BODY: usize = 1 << 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const JSON: &str = "application/json";

#[derive(Clone)]
pub struct AdminConfig {
    pub bind: SocketAddr,
    /// Without a key only loopback callers are served.
    pub api_key: Option<String>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The node's link to its cluster, when it is in one.
    pub cluster: Option<Arc<ClusterStatus>>,
    /// HTTPS only, when set.
    pub tls: Option<TlsConfig>,
    /// The live dashboard's bounds and pace.
    pub dashboard: DashboardConfig,
}

/// The shard task that runs the listener on shard 0; the bound address (or
/// why binding failed) is sent on `bound`.
pub fn task(
    io: Io,
    config: AdminConfig,
    bound: mpsc::Sender<Result<SocketAddr, String>>,
) -> ShardTask {
    let bound = Arc::new(Mutex::new(Some(bound)));
    Arc::new(move |shard| {
        if shard != 0 {
            return None;
        }
        let (io, config) = (io.clone(), config.clone());
        let bound = bound.lock().ok()?.take()?;
        let task: LocalTask = Box::pin(async move {
            let listener = match TcpListener::bind(config.bind) {
                Ok(listener) => listener,
                Err(error) => {
                    let _ = bound.send(Err(format!("cannot listen on {}: {error}", config.bind)));
                    return;
                }
            };
            let _ = bound.send(Ok(listener.local_addr().unwrap_or(config.bind)));
            let Some(local) = io.local() else {
                tracing::error!("admin listener: no Socket.IO server on shard 0");
                return;
            };
            let dashboard = Dashboard::start(local.clone(), &config);
            let mut backoff = AcceptBackoff::new();
            loop {
                match listener.accept().await {
                    Ok(stream) => {
                        backoff.on_accepted();
                        let (local, config) = (local.clone(), config.clone());
                        let peer = stream
                            .peer_addr()
                            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                        spawn_contained(peer, serve(local, config, dashboard.clone(), stream));
                    }
                    Err(error) => {
                        // Out of descriptors, say: as the shards' listeners do.
                        crate::metrics::with(|m| {
                            m.accept_errors.inc();
                        });
                        let retry = backoff.on_failed(Instant::now());
                        if let Some(failures) = retry.report {
                            tracing::warn!(
                                %error,
                                failures,
                                retry_ms = retry.wait.as_millis() as u64,
                                "admin accept failed; backing off (failures: since the last such line)"
                            );
                        }
                        Timer::new(retry.wait).await;
                    }
                }
            }
        });
        Some(task)
    })
}

async fn serve(
    io: LocalIo,
    config: AdminConfig,
    dashboard: std::rc::Rc<Dashboard>,
    stream: TcpStream,
) {
    let peer = stream.peer_addr().ok();
    let mut stream = match Stream::accept(stream, config.tls.as_ref()).await {
        Ok(stream) => stream,
        Err(error) => {
            tracing::debug!(?peer, %error, "admin: closing a TLS connection before its request");
            return;
        }
    };
    let response = match future::or(read(&mut stream), async {
        Timer::new(REQUEST_TIMEOUT).await;
        Err(Response::new(408))
    })
    .await
    {
        Ok(request) if dashboard::is_stream(&request) => {
            dashboard::limit_send_buffer(std::os::fd::AsRawFd::as_raw_fd(&stream));
            dashboard::serve_stream(&dashboard, &config, peer, &request, &mut stream).await;
            let _ = stream.close().await;
            return;
        }
        Ok(request) => handle(&io, &config, peer, request).await,
        Err(response) => response,
    };
    let mut out = Vec::new();
    response.write_to(false, &mut out);
    let _ = stream.write_all(&out).await;
    let _ = stream.close().await;
}

async fn read(stream: &mut Stream) -> Result<Request, Response> {
    let limits = Limits {
        max_body_bytes: MAX_BODY,
        ..Limits::default()
    };
    let mut buf = BytesMut::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match parse_request(&buf, &limits) {
            Ok(Some((request, _))) => return Ok(request),
            Ok(None) => {}
            Err(error) => return Err(error_response(error.status(), &error.to_string())),
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(Response::new(400)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

pub(super) fn error_response(status: u16, message: &str) -> Response {
    json_response(status, &json!({"ok": false, "error": message}))
}

fn json_response(status: u16, body: &Value) -> Response {
    Response::new(status).body(JSON, serde_json::to_vec(body).unwrap_or_default())
}

/// A key, when set, is required (compared in constant time); without one
/// only loopback callers are served.
pub(super) fn authorized(
    config: &AdminConfig,
    peer: Option<SocketAddr>,
    request: &Request,
) -> Result<(), Response> {
    match &config.api_key {
        Some(key) => {
            let given = request
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if constant_time_eq(given.as_bytes(), key.as_bytes()) {
                Ok(())
            } else {
                Err(error_response(401, "unauthorized").header("WWW-Authenticate", "Bearer"))
            }
        }
        None if peer.is_some_and(|p| p.ip().is_loopback()) => Ok(()),
        None => Err(error_response(
            403,
            "forbidden: set --api-key to serve other hosts",
        )),
    }
}

async fn handle(
    io: &LocalIo,
    config: &AdminConfig,
    peer: Option<SocketAddr>,
    request: Request,
) -> Response {
    match (request.method, request.path()) {
        (Method::Get, "/healthz") => Response::new(200).body("text/plain; charset=utf-8", "ok\n"),
        (_, "/healthz") => error_response(405, "method not allowed"),
        // Ready to take clients as a node of its cluster: 503 while the
        // link to Redis is down (the node still serves its own clients).
        (Method::Get, "/readyz") => match &config.cluster {
            Some(cluster) if !cluster.connected() => Response::new(503).body(
                "text/plain; charset=utf-8",
                "degraded: not connected to Redis; serving local clients only\n",
            ),
            _ => Response::new(200).body("text/plain; charset=utf-8", "ready\n"),
        },
        (_, "/readyz") => error_response(405, "method not allowed"),
        (_, "/") => dashboard::page(config, peer, &request),
        (method, path @ ("/api/publish" | "/api/stats" | "/metrics")) => {
            if let Err(refusal) = authorized(config, peer, &request) {
                return refusal;
            }
            match (method, path) {
                (Method::Post, "/api/publish") => publish(io, &request.body),
                (Method::Get, "/api/stats") => {
                    let shards = io.stats().await;
                    let connections: usize = shards.iter().map(|s| s.connections).sum();
                    let cluster = config.cluster.as_ref().map(|c| cluster_json(&c.snapshot()));
                    json_response(
                        200,
                        &json!({"connections": connections, "shards": shards, "cluster": cluster}),
                    )
                }
                (Method::Get, "/metrics") => {
                    let mut text = config.metrics.encode();
                    if let Some(cluster) = &config.cluster {
                        let at = text.rfind("# EOF").unwrap_or(text.len());
                        text.insert_str(at, &cluster_metrics(&cluster.snapshot()));
                    }
                    Response::new(200).body(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        text,
                    )
                }
                _ => error_response(405, "method not allowed"),
            }
        }
        _ => error_response(404, "not found"),
    }
}

fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    match value {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::String(s)) if !s.is_empty() => Some(vec![s.clone()]),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_string))
            .collect(),
        _ => None,
    }
}

/// A `POST /api/publish` body, parsed and checked by [`parse_publish`].
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq)]
pub struct PublishSpec {
    /// `"/"` when the body names none.
    pub namespace: String,
    pub to: Vec<String>,
    pub except: Vec<String>,
    pub event: String,
    /// `null` when the body has no `data`.
    pub data: Value,
    pub volatile: bool,
}

/// Parse `{"namespace", "to", "except", "event", "data", "volatile"}`; the
/// error is the message of the 400 answer. Public (hidden) only so that the
/// fuzz target `admin_publish` in `fuzz/` reaches it.
#[doc(hidden)]
pub fn parse_publish(body: &[u8]) -> Result<PublishSpec, &'static str> {
    let Ok(Value::Object(spec)) = serde_json::from_slice::<Value>(body) else {
        return Err("bad request: the body must be a JSON object");
    };
    let namespace = match spec.get("namespace") {
        None => "/",
        Some(Value::String(name)) => name.as_str(),
        Some(_) => return Err("bad request: namespace must be a string"),
    };
    let (Some(to), Some(except)) = (strings(spec.get("to")), strings(spec.get("except"))) else {
        return Err("bad request: to and except are room names");
    };
    let Some(Value::String(event)) = spec.get("event") else {
        return Err("bad request: event must be a string");
    };
    let volatile = match spec.get("volatile") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(v)) => *v,
        Some(_) => return Err("bad request: volatile must be a boolean"),
    };
    Ok(PublishSpec {
        namespace: namespace.to_string(),
        to,
        except,
        event: event.clone(),
        data: spec.get("data").cloned().unwrap_or(Value::Null),
        volatile,
    })
}

fn publish(io: &LocalIo, body: &[u8]) -> Response {
    let spec = match parse_publish(body) {
        Ok(spec) => spec,
        Err(message) => return error_response(400, message),
    };
    let Some(nsp) = io.of(&spec.namespace) else {
        return error_response(404, "unknown namespace");
    };
    let mut op = nsp.all().to_many(spec.to.iter().map(String::as_str));
    for room in &spec.except {
        op = op.except(room);
    }
    if spec.volatile {
        op = op.volatile();
    }
    match op.emit(&spec.event, Args::new().arg(spec.data)) {
        Ok(()) => json_response(200, &json!({"ok": true})),
        Err(error) => error_response(400, &format!("bad request: {error}")),
    }
}

fn cluster_json(c: &ClusterSnapshot) -> Value {
    json!({
        "uid": c.uid,
        "connected": c.connected,
        "nodes": c.nodes,
        "published": c.published,
        "publish_failed": c.publish_failed,
        "received": c.received,
        "malformed": c.malformed,
        "reconnects": c.reconnects,
        "bytes_out": c.bytes_out,
        "bytes_in": c.bytes_in,
        "pending_bytes": c.pending_bytes,
        "requests_timed_out": c.requests_timed_out,
    })
}

/// The cluster's figures in OpenMetrics text (they live in the link's
/// atomics, not in the per-shard registry).
fn cluster_metrics(c: &ClusterSnapshot) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let sample = if kind == "counter" {
            format!("{name}_total")
        } else {
            name.to_string()
        };
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{sample} {value}\n"
        );
    };
    metric(
        "hub_cluster_connected",
        "gauge",
        "1 while the link to Redis is up.",
        u64::from(c.connected),
    );
    metric(
        "hub_cluster_nodes",
        "gauge",
        "Nodes on the cluster's / request channel, this one included.",
        c.nodes,
    );
    metric(
        "hub_cluster_published",
        "counter",
        "Publishes Redis took (written and answered).",
        c.published,
    );
    metric(
        "hub_cluster_publish_failed",
        "counter",
        "Cluster publishes dropped (Redis unreachable or too slow).",
        c.publish_failed,
    );
    metric(
        "hub_cluster_received",
        "counter",
        "Messages heard from other nodes.",
        c.received,
    );
    metric(
        "hub_cluster_malformed",
        "counter",
        "Messages from Redis ignored as malformed.",
        c.malformed,
    );
    metric(
        "hub_cluster_reconnects",
        "counter",
        "Connections to Redis made again after a loss.",
        c.reconnects,
    );
    metric(
        "hub_cluster_sent_bytes",
        "counter",
        "Bytes written to Redis.",
        c.bytes_out,
    );
    metric(
        "hub_cluster_received_bytes",
        "counter",
        "Payload bytes heard from Redis.",
        c.bytes_in,
    );
    metric(
        "hub_cluster_pending_bytes",
        "gauge",
        "Bytes of commands waiting to be written to Redis.",
        c.pending_bytes,
    );
    metric(
        "hub_cluster_requests_timed_out",
        "counter",
        "Requests to other nodes that ended at their timeout.",
        c.requests_timed_out,
    );
    let _ = writeln!(out, "# HELP hub_cluster_node This node's uid on the cluster's channels.\n# TYPE hub_cluster_node info\nhub_cluster_node_info{{uid=\"{}\"}} 1", c.uid);
    out
}
