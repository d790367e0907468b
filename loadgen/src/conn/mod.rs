//! One client connection, over WebSocket or long-polling, up to and after
//! its Socket.IO CONNECT. Scenarios see packets and an outbox, never the
//! transport.

mod dial;
mod http;
mod polling;
mod tls;
mod websocket;

use std::net::{Ipv4Addr, SocketAddr};

use crate::args::Transport;
use crate::stats::Cause;
use crate::wire::packet::{self, Incoming};
use crate::wire::ws;

pub use polling::PollConn;
pub use tls::{TlsClient, Trust};
pub use websocket::WsConn;

/// What every connection of a run shares.
pub struct Spec {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    /// The namespace prefix of Socket.IO packets (`/chat,`, or empty).
    pub nsp: Vec<u8>,
    /// The CONNECT packet, auth included.
    pub connect: Vec<u8>,
    /// WebSocket clients offer permessage-deflate.
    pub deflate: bool,
    /// `https://` and `wss://` targets: how to speak TLS to them.
    pub tls: Option<TlsClient>,
}

/// Packets waiting to be written, already framed for the transport.
pub struct Outbox {
    websocket: bool,
    buf: Vec<u8>,
    /// Where a WebSocket packet is written before it is framed.
    scratch: Vec<u8>,
    packets: usize,
}

impl Outbox {
    pub fn push(&mut self, packet: &[u8]) {
        self.push_with(|out| out.extend_from_slice(packet));
    }

    /// Appends one packet written in place by `write`: no intermediate copy.
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        if self.websocket {
            self.scratch.clear();
            write(&mut self.scratch);
            ws::encode(ws::TEXT, &self.scratch, &mut self.buf);
        } else {
            if self.packets > 0 {
                self.buf.push(0x1e);
            }
            write(&mut self.buf);
        }
        self.packets += 1;
    }

    fn push_frame(&mut self, opcode: u8, payload: &[u8]) {
        if self.websocket {
            ws::encode(opcode, payload, &mut self.buf);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take(&mut self) -> &[u8] {
        self.packets = 0;
        &self.buf
    }
}

/// How a client ends its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leave {
    /// A Socket.IO DISCONNECT, then the transport's close (a WebSocket close
    /// frame, or an Engine.IO close packet over polling), then a FIN.
    Clean,
    /// A FIN and nothing before it: no Socket.IO or WebSocket close.
    Abrupt,
    /// A RST (`SO_LINGER` 0) and nothing before it.
    Reset,
}

pub enum Conn {
    Websocket(WsConn),
    Polling(PollConn),
}

impl Conn {
    /// Connects, handshakes and joins the namespace over `transport`.
    pub async fn open_over(
        spec: &Spec,
        transport: Transport,
        source: Option<Ipv4Addr>,
    ) -> Result<(Conn, Outbox), Cause> {
        let mut conn = match transport {
            Transport::Websocket => Conn::Websocket(WsConn::open(spec, source).await?),
            Transport::Polling => Conn::Polling(PollConn::open(spec, source).await?),
        };
        let mut out = Outbox {
            websocket: transport == Transport::Websocket,
            buf: Vec::with_capacity(256),
            scratch: Vec::new(),
            packets: 0,
        };
        let mut result = None;
        while result.is_none() {
            conn.recv(
                &mut out,
                &mut |packet, out| match packet::classify(packet, &spec.nsp) {
                    Incoming::Open(json) => match packet::parse_open(json) {
                        Some(_) => out.push(&spec.connect),
                        None => result = Some(Err(Cause::BadHandshake)),
                    },
                    Incoming::Connect => result = Some(Ok(())),
                    Incoming::ConnectError(_) => result = Some(Err(Cause::NamespaceRefused)),
                    Incoming::Ping => out.push(b"3"),
                    Incoming::Close | Incoming::Disconnect => {
                        result = Some(Err(Cause::ServerClosed))
                    }
                    _ => {}
                },
            )
            .await?;
            conn.send(&mut out).await?;
        }
        result.expect("loop ends with a result")?;
        Ok((conn, out))
    }

    /// Waits for what the server sends next and hands each Engine.IO packet
    /// to `on`. Cancel-safe: nothing is lost when the future is dropped.
    pub async fn recv(
        &mut self,
        out: &mut Outbox,
        on: &mut impl FnMut(&[u8], &mut Outbox),
    ) -> Result<(), Cause> {
        match self {
            Conn::Websocket(c) => c.recv(out, on).await,
            Conn::Polling(c) => c.recv(out, on).await,
        }
    }

    /// Ends the connection the way `how` says; `nsp` is the namespace
    /// prefix for the Socket.IO DISCONNECT.
    pub async fn leave(mut self, out: &mut Outbox, nsp: &[u8], how: Leave) {
        match how {
            Leave::Clean => {
                out.push_with(|buf| {
                    buf.extend_from_slice(b"41");
                    buf.extend_from_slice(nsp);
                });
                if let Conn::Polling(_) = self {
                    out.push(b"1"); // the Engine.IO close; a WebSocket sends its close frame on drop
                }
                // Best effort: a server that is gone already makes this a plain close.
                let _ = self.send(out).await;
            }
            Leave::Abrupt => match &mut self {
                Conn::Websocket(c) => c.close_silently(false),
                Conn::Polling(c) => c.close_silently(false),
            },
            Leave::Reset => match &mut self {
                Conn::Websocket(c) => c.close_silently(true),
                Conn::Polling(c) => c.close_silently(true),
            },
        }
    }

    /// Writes what the outbox holds.
    pub async fn send(&mut self, out: &mut Outbox) -> Result<(), Cause> {
        if out.is_empty() {
            return Ok(());
        }
        let result = match self {
            Conn::Websocket(c) => c.send(out.take()).await,
            Conn::Polling(c) => c.send(out.take()).await,
        };
        out.buf.clear();
        result
    }
}
