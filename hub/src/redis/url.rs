//! `redis://[user[:password]@]host[:port][/db]`, as Node's `redis` client
//! takes it.

use std::fmt;

/// Where a Redis server is and how to log in to it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// Host name or address.
    pub host: String,
    /// TCP port (6379 unless given).
    pub port: u16,
    /// `AUTH` user (Redis 6 ACLs); None: the default user.
    pub username: Option<String>,
    /// `AUTH` password; None: no `AUTH`.
    pub password: Option<String>,
    /// `SELECT`ed database (pub/sub ignores it, commands do not).
    pub db: u32,
}

/// Why a Redis URL was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedisUrlError {
    /// Not `redis://`.
    #[error("`{0}`: only redis:// URLs are supported")]
    Scheme(String),
    /// No host after the scheme.
    #[error("`{0}` has no host")]
    NoHost(String),
    /// The port is not a number from 1 to 65535.
    #[error("`{0}`: bad port")]
    Port(String),
    /// The path is not a database number.
    #[error("`{0}`: the path must be a database number")]
    Db(String),
}

impl RedisUrl {
    /// Parse a `redis://` URL; user and password may be percent-encoded.
    pub fn parse(url: &str) -> Result<RedisUrl, RedisUrlError> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| RedisUrlError::Scheme(url.to_string()))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let decode = |s: &str| {
            form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => match info.split_once(':') {
                Some((user, pass)) => (
                    Some(decode(user)).filter(|u| !u.is_empty()),
                    Some(decode(pass)),
                ),
                None => (None, Some(decode(info))),
            },
        };
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            let end = bracketed
                .find(']')
                .ok_or_else(|| RedisUrlError::NoHost(url.to_string()))?;
            let port = bracketed[end + 1..].strip_prefix(':');
            (&bracketed[..end], port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(RedisUrlError::NoHost(url.to_string()));
        }
        let port = match port {
            None | Some("") => 6379,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| RedisUrlError::Port(url.to_string()))?,
        };
        let path = path.split(['?', '#']).next().unwrap_or("");
        let db = if path.is_empty() {
            0
        } else {
            path.parse()
                .map_err(|_| RedisUrlError::Db(url.to_string()))?
        };
        Ok(RedisUrl {
            host: host.to_string(),
            port,
            username,
            password,
            db,
        })
    }
}

/// Shown without the password.
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis://")?;
        match (&self.username, &self.password) {
            (Some(user), _) => write!(f, "{user}:***@")?,
            (None, Some(_)) => write!(f, ":***@")?,
            (None, None) => {}
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{}:{}", self.host, self.port)?;
        }
        if self.db != 0 {
            write!(f, "/{}", self.db)?;
        }
        Ok(())
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_password_and_db() {
        let url = RedisUrl::parse("redis://:s%40cret@10.0.0.1:6380/2").unwrap();
        assert_eq!(url.host, "10.0.0.1");
        assert_eq!(url.port, 6380);
        assert_eq!(url.username, None);
        assert_eq!(url.password.as_deref(), Some("s@cret"));
        assert_eq!(url.db, 2);
        assert_eq!(url.to_string(), "redis://:***@10.0.0.1:6380/2");

        let url = RedisUrl::parse("redis://alice:pw@localhost").unwrap();
        assert_eq!(
            (url.username.as_deref(), url.port, url.db),
            (Some("alice"), 6379, 0)
        );
        let url = RedisUrl::parse("redis://[::1]:7000/").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 7000));
        assert_eq!(RedisUrl::parse("redis://h/").unwrap().db, 0);
    }

    #[test]
    fn refuses_what_is_not_a_redis_url() {
        assert!(matches!(
            RedisUrl::parse("http://h"),
            Err(RedisUrlError::Scheme(_))
        ));
        assert!(matches!(
            RedisUrl::parse("rediss://h"),
            Err(RedisUrlError::Scheme(_))
        ));
        assert!(matches!(
            RedisUrl::parse("redis://"),
            Err(RedisUrlError::NoHost(_))
        ));
        assert!(matches!(
            RedisUrl::parse("redis://h:0"),
            Err(RedisUrlError::Port(_))
        ));
        assert!(matches!(
            RedisUrl::parse("redis://h:99999"),
            Err(RedisUrlError::Port(_))
        ));
        assert!(matches!(
            RedisUrl::parse("redis://h/x"),
            Err(RedisUrlError::Db(_))
        ));
    }
}
