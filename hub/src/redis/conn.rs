//! Opening a connection to Redis: TCP, then `AUTH` and `SELECT` as the URL says.

use std::time::Duration;

use glommio::net::TcpStream;

use super::resp::{RespConn, RespError};
use super::url::RedisUrl;

/// Connect and log in within `timeout`. The host is resolved with the
/// system resolver (blocking: use an address, or a name in /etc/hosts,
/// on a busy shard).
pub(crate) async fn connect(url: &RedisUrl, timeout: Duration) -> Result<RespConn, RespError> {
    let addr = (url.host.as_str(), url.port);
    let stream = TcpStream::connect_timeout(addr, timeout)
        .await
        .map_err(|e| RespError::Io(std::io::Error::other(e.to_string())))?;
    stream
        .set_nodelay(true)
        .map_err(|e| RespError::Io(std::io::Error::other(e.to_string())))?;
    let mut conn = RespConn::new(stream);
    if let Some(password) = &url.password {
        match &url.username {
            Some(user) => {
                conn.call(&[b"AUTH", user.as_bytes(), password.as_bytes()])
                    .await?
            }
            None => conn.call(&[b"AUTH", password.as_bytes()]).await?,
        };
    }
    if url.db != 0 {
        conn.call(&[b"SELECT", url.db.to_string().as_bytes()])
            .await?;
    }
    Ok(conn)
}
