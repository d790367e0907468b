use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::engine::{HandshakeInfo, Pairs, Socket as EngineSocket};

/// What the client sent when its socket connected, as the reference
/// server's `socket.handshake`. The HTTP part is the connection's, shared by
/// the sockets of all its namespaces; the rest is this socket's.
#[derive(Clone, Debug)]
pub struct Handshake {
    info: Arc<HandshakeInfo>,
    /// v2 clients: the namespace's CONNECT query, which follows the handshake's.
    /// Boxed: the other clients have none, and every socket holds a handshake.
    connect_query: Option<Box<Pairs>>,
    /// The CONNECT auth object (v3/v4 clients); `{}` when none.
    pub auth: Value,
}

impl Handshake {
    pub(crate) fn new(conn: &EngineSocket, auth: Value, connect_query: Option<&str>) -> Handshake {
        let connect_query =
            connect_query.map(|extra| Box::new(form_urlencoded::parse(extra.as_bytes()).collect()));
        Handshake {
            info: conn.handshake_shared(),
            connect_query,
            auth,
        }
    }

    /// The request headers; names are lower case.
    pub fn headers(&self) -> &Pairs {
        &self.info.headers
    }

    pub fn header(&self, lower_name: &str) -> Option<&str> {
        self.info.header(lower_name)
    }

    /// When the connection opened, as an HTTP date.
    pub fn time(&self) -> String {
        httpdate::fmt_http_date(self.info.issued.min(SystemTime::now()))
    }

    pub fn address(&self) -> SocketAddr {
        self.info.remote_addr
    }

    /// Whether the request came from another origin (an `Origin` header was sent).
    pub fn xdomain(&self) -> bool {
        self.header("origin").is_some()
    }

    /// Whether the connection is TLS (hub's own: a proxy in front that
    /// ends TLS is not seen).
    pub fn secure(&self) -> bool {
        self.info.secure
    }

    /// Milliseconds since the Unix epoch.
    pub fn issued(&self) -> u64 {
        self.info
            .issued
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// The request target of the Engine.IO handshake.
    pub fn url(&self) -> &str {
        &self.info.url
    }

    /// The handshake query, then (v2 clients) the namespace's CONNECT query.
    pub fn query(&self) -> impl DoubleEndedIterator<Item = (&str, &str)> + '_ {
        let connect_query = self.connect_query.iter().flat_map(|pairs| pairs.iter());
        self.info.query.iter().chain(connect_query)
    }

    /// The last value of a query parameter (a CONNECT query overrides the handshake's).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.connect_query
            .as_ref()
            .and_then(|pairs| pairs.get_last(name))
            .or_else(|| self.info.query.get_last(name))
    }
}

/// The HTTP request that opened the connection, as the reference server's `socket.request`.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
}

impl Handshake {
    /// As Node's `socket.handshake` serializes (what a cluster's
    /// `fetchSockets` answer carries): headers, time, address, xdomain,
    /// secure, issued (ms), url, query, auth.
    pub fn to_json(&self) -> Value {
        let pairs = |pairs: &mut dyn Iterator<Item = (&str, &str)>| {
            let mut map = serde_json::Map::new();
            for (k, v) in pairs {
                map.insert(k.to_string(), Value::from(v));
            }
            Value::Object(map)
        };
        serde_json::json!({
            "headers": pairs(&mut self.headers().iter()),
            "time": self.time(),
            "address": self.address().ip().to_string(),
            "xdomain": self.xdomain(),
            "secure": self.secure(),
            "issued": self.issued(),
            "url": self.url(),
            "query": pairs(&mut self.query()),
            "auth": self.auth,
        })
    }
}
