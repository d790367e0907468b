//! CORS headers, byte-for-byte what the Node `cors` middleware (2.8.5, the one engine.io
//! applies for its `cors` option) sends for the equivalent config, so browsers and tests that
//! were written against a Node Socket.IO server see the same answers.
//!
//! Config mapping:
//! - `Any` without credentials = `{ origin: "*" }`: `Access-Control-Allow-Origin: *`, no `Vary`.
//! - `Any` with credentials = `{ origin: true, credentials: true }`: the request's origin is
//!   echoed, never `*`, because browsers reject `*` on credentialed requests.
//! - `List` = `{ origin: [..] }`: an exactly matching origin is echoed; `Vary: Origin` is always
//!   sent (the answer depends on the origin, caches must know), even when the origin is absent
//!   or refused.
//!
//! As in Node, `Access-Control-Allow-Credentials: true` is sent whenever `credentials` is on,
//! whatever the origin; without an allowed `Access-Control-Allow-Origin` it has no effect.

use super::response::Response;

/// Which origins may read responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    Any,
    /// Exact (case-sensitive) origins such as `https://example.com`.
    List(Vec<String>),
}

/// CORS configuration. Without one, the server sends no CORS headers at all (as engine.io does
/// when its `cors` option is unset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    pub origins: AllowedOrigins,
    pub credentials: bool,
    pub max_age_secs: Option<u32>,
}

/// Methods allowed by preflights, joined the way Node joins a `methods` array.
const ALLOW_METHODS: &str = "GET,POST,OPTIONS";

impl Cors {
    /// Whether `origin` may read responses.
    pub fn is_allowed(&self, origin: &str) -> bool {
        match &self.origins {
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => list.iter().any(|o| o == origin),
        }
    }

    /// Headers to add to a normal (non-preflight) response, given the request's `Origin`.
    pub fn response_headers(&self, origin: Option<&str>) -> Vec<(&'static str, String)> {
        let mut h = Vec::with_capacity(3);
        self.origin_headers(origin, &mut h);
        if self.credentials {
            h.push(("Access-Control-Allow-Credentials", "true".to_owned()));
        }
        h
    }

    /// The full answer to an `OPTIONS` preflight: 204 with the origin headers, credentials,
    /// `Access-Control-Allow-Methods`, `Access-Control-Allow-Headers` echoing
    /// `Access-Control-Request-Headers` (when non-empty), and `Access-Control-Max-Age` when set.
    /// `Content-Length: 0` is written by [`Response::write_to`], which Node's `cors` also sends
    /// (a Safari work-around).
    pub fn preflight(&self, origin: Option<&str>, request_headers: Option<&str>) -> Response {
        let mut h = Vec::with_capacity(7);
        self.origin_headers(origin, &mut h);
        if self.credentials {
            h.push(("Access-Control-Allow-Credentials", "true".to_owned()));
        }
        h.push(("Access-Control-Allow-Methods", ALLOW_METHODS.to_owned()));
        // The allowed headers are reflected from the request, so the answer varies with them.
        push_vary(&mut h, "Access-Control-Request-Headers");
        if let Some(req) = request_headers.filter(|v| !v.is_empty()) {
            h.push(("Access-Control-Allow-Headers", req.to_owned()));
        }
        if let Some(age) = self.max_age_secs {
            h.push(("Access-Control-Max-Age", age.to_string()));
        }
        let mut resp = Response::new(204);
        resp.headers = h;
        resp
    }

    fn origin_headers(&self, origin: Option<&str>, h: &mut Vec<(&'static str, String)>) {
        if self.origins == AllowedOrigins::Any && !self.credentials {
            h.push(("Access-Control-Allow-Origin", "*".to_owned()));
            return;
        }
        if let Some(o) = origin.filter(|o| self.is_allowed(o)) {
            h.push(("Access-Control-Allow-Origin", o.to_owned()));
        }
        push_vary(h, "Origin");
    }
}

/// Append a field to `Vary`, merging into an existing `Vary` entry like Node's `vary` module.
fn push_vary(h: &mut Vec<(&'static str, String)>, field: &str) {
    if let Some((_, v)) = h.iter_mut().find(|(n, _)| *n == "Vary") {
        v.push_str(", ");
        v.push_str(field);
    } else {
        h.push(("Vary", field.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: AllowedOrigins, credentials: bool, max_age_secs: Option<u32>) -> Cors {
        Cors {
            origins,
            credentials,
            max_age_secs,
        }
    }

    fn list() -> AllowedOrigins {
        AllowedOrigins::List(vec![
            "https://a.example".into(),
            "http://localhost:3000".into(),
        ])
    }

    fn hv(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        pairs.iter().map(|(n, v)| (*n, v.to_string())).collect()
    }

    #[test]
    fn any_without_credentials_is_star() {
        let c = cors(AllowedOrigins::Any, false, None);
        let want = hv(&[("Access-Control-Allow-Origin", "*")]);
        assert_eq!(c.response_headers(Some("https://x.example")), want);
        assert_eq!(c.response_headers(None), want);
    }

    #[test]
    fn any_with_credentials_echoes_never_star() {
        let c = cors(AllowedOrigins::Any, true, None);
        assert_eq!(
            c.response_headers(Some("https://x.example")),
            hv(&[
                ("Access-Control-Allow-Origin", "https://x.example"),
                ("Vary", "Origin"),
                ("Access-Control-Allow-Credentials", "true"),
            ])
        );
        assert_eq!(
            c.response_headers(None),
            hv(&[
                ("Vary", "Origin"),
                ("Access-Control-Allow-Credentials", "true")
            ])
        );
    }

    #[test]
    fn list_allowed_refused_absent() {
        let c = cors(list(), false, None);
        assert_eq!(
            c.response_headers(Some("http://localhost:3000")),
            hv(&[
                ("Access-Control-Allow-Origin", "http://localhost:3000"),
                ("Vary", "Origin")
            ])
        );
        assert_eq!(
            c.response_headers(Some("https://evil.example")),
            hv(&[("Vary", "Origin")])
        );
        // Exact match only: case, scheme and port matter.
        assert_eq!(
            c.response_headers(Some("HTTPS://A.EXAMPLE")),
            hv(&[("Vary", "Origin")])
        );
        assert_eq!(
            c.response_headers(Some("http://a.example")),
            hv(&[("Vary", "Origin")])
        );
        assert_eq!(c.response_headers(None), hv(&[("Vary", "Origin")]));
        assert!(c.is_allowed("https://a.example"));
        assert!(!c.is_allowed("null"));
    }

    #[test]
    fn list_with_credentials() {
        let c = cors(list(), true, None);
        assert_eq!(
            c.response_headers(Some("https://a.example")),
            hv(&[
                ("Access-Control-Allow-Origin", "https://a.example"),
                ("Vary", "Origin"),
                ("Access-Control-Allow-Credentials", "true"),
            ])
        );
        assert_eq!(
            c.response_headers(Some("https://evil.example")),
            hv(&[
                ("Vary", "Origin"),
                ("Access-Control-Allow-Credentials", "true")
            ])
        );
    }

    #[test]
    fn preflight_full_bytes() {
        let c = cors(list(), true, Some(600));
        let r = c.preflight(Some("https://a.example"), Some("content-type,x-token"));
        assert_eq!(
            String::from_utf8(r.to_bytes(true)).unwrap(),
            "HTTP/1.1 204 No Content\r\n\
             Access-Control-Allow-Origin: https://a.example\r\n\
             Vary: Origin, Access-Control-Request-Headers\r\n\
             Access-Control-Allow-Credentials: true\r\n\
             Access-Control-Allow-Methods: GET,POST,OPTIONS\r\n\
             Access-Control-Allow-Headers: content-type,x-token\r\n\
             Access-Control-Max-Age: 600\r\n\
             Content-Length: 0\r\n\
             Connection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn preflight_any_minimal() {
        let c = cors(AllowedOrigins::Any, false, None);
        let r = c.preflight(Some("https://x.example"), None);
        assert_eq!(r.status, 204);
        assert!(r.body.is_empty());
        assert_eq!(
            r.headers,
            hv(&[
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Methods", "GET,POST,OPTIONS"),
                ("Vary", "Access-Control-Request-Headers"),
            ])
        );
        // Empty Access-Control-Request-Headers is not echoed; max-age 0 is sent.
        let c = cors(AllowedOrigins::Any, false, Some(0));
        assert_eq!(
            c.preflight(None, Some("")).headers,
            hv(&[
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Methods", "GET,POST,OPTIONS"),
                ("Vary", "Access-Control-Request-Headers"),
                ("Access-Control-Max-Age", "0"),
            ])
        );
    }

    #[test]
    fn preflight_refused_origin() {
        let c = cors(list(), false, None);
        assert_eq!(
            c.preflight(Some("https://evil.example"), Some("x-a"))
                .headers,
            hv(&[
                ("Vary", "Origin, Access-Control-Request-Headers"),
                ("Access-Control-Allow-Methods", "GET,POST,OPTIONS"),
                ("Access-Control-Allow-Headers", "x-a"),
            ])
        );
    }

    #[test]
    fn preflight_any_with_credentials_echoes() {
        let c = cors(AllowedOrigins::Any, true, None);
        assert_eq!(
            c.preflight(Some("https://x.example"), Some("authorization"))
                .headers,
            hv(&[
                ("Access-Control-Allow-Origin", "https://x.example"),
                ("Vary", "Origin, Access-Control-Request-Headers"),
                ("Access-Control-Allow-Credentials", "true"),
                ("Access-Control-Allow-Methods", "GET,POST,OPTIONS"),
                ("Access-Control-Allow-Headers", "authorization"),
            ])
        );
    }
}
