//! A keep-alive HTTP/1.1 client connection for long-polling.

use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;

use super::dial::{connect, io_cause, reset_on_close};
use super::tls::{ClientStream, TlsClient};
use crate::stats::Cause;
use crate::wire::http::parse_response;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

pub struct HttpConn {
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
    tls: Option<TlsClient>,
    stream: Option<ClientStream>,
    buf: Vec<u8>,
    /// Whether this connection has completed a response: failures before
    /// that are connect failures.
    answered: bool,
    /// Close with a RST when dropped (shared by a polling client's two
    /// connections).
    reset_on_drop: Rc<Cell<bool>>,
}

/// Longest body a poll may bring.
const MAX_BODY: usize = 16 << 20;

impl HttpConn {
    pub fn new(addr: SocketAddr, source: Option<Ipv4Addr>, tls: Option<TlsClient>) -> HttpConn {
        HttpConn {
            addr,
            source,
            tls,
            stream: None,
            buf: Vec::with_capacity(4096),
            answered: false,
            reset_on_drop: Rc::default(),
        }
    }

    /// Closes with a RST when dropped once `flag` is set.
    pub fn reset_on_drop(mut self, flag: Rc<Cell<bool>>) -> HttpConn {
        self.reset_on_drop = flag;
        self
    }

    /// Sends a request and reads its response: status and body.
    pub async fn request(&mut self, request: &[u8]) -> Result<(u16, Vec<u8>), Cause> {
        let result = self.exchange(request).await;
        if result.is_err() {
            // Whatever is left on a failed connection is not a response.
            self.stream = None;
        }
        result
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<(u16, Vec<u8>), Cause> {
        let connected = self.answered;
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => self
                .stream
                .insert(connect(self.addr, self.source, self.tls.as_ref()).await?),
        };
        stream
            .write_all(request)
            .await
            .map_err(|e| io_cause(&e, connected))?;
        stream.flush().await.map_err(|e| io_cause(&e, connected))?;
        self.buf.clear();
        let head = loop {
            read_some(stream, &mut self.buf, connected).await?;
            if let Some(head) = parse_response(&self.buf).map_err(|_| Cause::Protocol)? {
                break head;
            }
            if self.buf.len() > 64 << 10 {
                return Err(Cause::Protocol);
            }
        };
        let length = head.content_length.unwrap_or(0);
        if length > MAX_BODY {
            return Err(Cause::Protocol);
        }
        while self.buf.len() < head.len + length {
            read_some(stream, &mut self.buf, true).await?;
        }
        if head.close {
            self.stream = None;
        }
        self.answered = true;
        Ok((head.status, self.buf[head.len..head.len + length].to_vec()))
    }
}

impl Drop for HttpConn {
    fn drop(&mut self) {
        if let (true, Some(stream)) = (self.reset_on_drop.get(), &self.stream) {
            use std::os::fd::AsRawFd;
            reset_on_close(stream.tcp().as_raw_fd());
        }
    }
}

/// Appends what one read brings; the end of the stream is an error.
async fn read_some(
    stream: &mut ClientStream,
    buf: &mut Vec<u8>,
    connected: bool,
) -> Result<(), Cause> {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) if connected => Err(Cause::ServerClosed),
        Ok(0) => Err(Cause::BadHandshake),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(io_cause(&e, connected)),
    }
}
