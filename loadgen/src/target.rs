//! Where the clients connect: the server's address, the Engine.IO path, the
//! Host header and whether TLS is spoken, from `--url`.

use std::net::{SocketAddr, ToSocketAddrs};

#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// The Host header value.
    pub host: String,
    /// The Engine.IO path, ending in `/`.
    pub path: String,
    /// `https://` or `wss://`: the name the server's certificate must
    /// carry (the host without its port).
    pub tls_name: Option<String>,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let (rest, tls) = [
            ("http://", false),
            ("ws://", false),
            ("https://", true),
            ("wss://", true),
        ]
        .iter()
        .find_map(|(scheme, tls)| url.strip_prefix(scheme).map(|rest| (rest, *tls)))
        .ok_or_else(|| format!("`{url}` is not an http://, https://, ws:// or wss:// URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        let path = if path == "/" { "/socket.io/" } else { path };
        if path.contains(['?', '#', ' ']) {
            return Err(format!("`{url}`: give the path without a query"));
        }
        let path = if path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:{}", if tls { 443 } else { 80 })
        };
        let tls_name = tls.then(|| {
            let host = match authority.rsplit_once(':') {
                Some((host, port)) if port.parse::<u16>().is_ok() && !authority.ends_with(']') => {
                    host
                }
                _ => authority,
            };
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        });
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("`{url}`: cannot resolve {authority}: {e}"))?
            .find(|a| a.is_ipv4())
            .ok_or_else(|| format!("`{url}`: {authority} has no IPv4 address"))?;
        Ok(Target {
            addr,
            host: authority.to_string(),
            path,
            tls_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("http://127.0.0.1:3000").unwrap();
        assert_eq!(t.addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(t.path, "/socket.io/");
        assert_eq!(t.host, "127.0.0.1:3000");
        let t = Target::parse("ws://127.0.0.1:8080/engine").unwrap();
        assert_eq!(t.path, "/engine/");
        let t = Target::parse("http://localhost:9/x/").unwrap();
        assert_eq!(t.addr.port(), 9);
        assert_eq!(t.path, "/x/");
        assert_eq!(t.tls_name, None);
        assert!(Target::parse("127.0.0.1:3000").is_err());
        let t = Target::parse("https://127.0.0.1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:443".parse().unwrap());
        assert_eq!(t.tls_name.as_deref(), Some("127.0.0.1"));
        let t = Target::parse("wss://localhost:8443/x").unwrap();
        assert_eq!(t.addr.port(), 8443);
        assert_eq!(t.host, "localhost:8443");
        assert_eq!(t.tls_name.as_deref(), Some("localhost"));
        assert!(Target::parse("http://:3000").is_err());
        assert!(Target::parse("http://127.0.0.1:3000/x?y").is_err());
    }
}
