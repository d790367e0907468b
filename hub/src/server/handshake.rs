use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::engine::Socket as EngineSocket;

/// What the client sent when its socket connected, as the reference
/// server's `socket.handshake`.
#[derive(Clone, Debug)]
pub struct Handshake {
    /// Header names are lower case.
    pub headers: Vec<(String, String)>,
    /// When the connection opened, as an HTTP date.
    pub time: String,
    pub address: SocketAddr,
    /// Whether the request came from another origin (an `Origin` header was sent).
    pub xdomain: bool,
    /// Whether the connection is TLS (never: hub speaks plain HTTP; put TLS in front).
    pub secure: bool,
    /// Milliseconds since the Unix epoch.
    pub issued: u64,
    /// The request target of the Engine.IO handshake.
    pub url: String,
    /// The handshake query, then (v2 clients) the namespace's CONNECT query.
    pub query: Vec<(String, String)>,
    /// The CONNECT auth object (v3/v4 clients); `{}` when none.
    pub auth: Value,
}

impl Handshake {
    pub(crate) fn new(conn: &EngineSocket, auth: Value, connect_query: Option<&str>) -> Handshake {
        let info = conn.handshake();
        let mut query = info.query.clone();
        if let Some(extra) = connect_query {
            query.extend(
                form_urlencoded::parse(extra.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned())),
            );
        }
        let issued = info
            .issued
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Handshake {
            headers: info.headers.clone(),
            time: httpdate::fmt_http_date(info.issued.min(SystemTime::now())),
            address: info.remote_addr,
            xdomain: info.header("origin").is_some(),
            secure: false,
            issued,
            url: info.url.clone(),
            query,
            auth,
        }
    }

    pub fn header(&self, lower_name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == lower_name)
            .map(|(_, v)| v.as_str())
    }

    /// The last value of a query parameter (a CONNECT query overrides the handshake's).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The HTTP request that opened the connection, as the reference server's `socket.request`.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
}
