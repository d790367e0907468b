//! The WebSocket transport of a client.

use std::net::Ipv4Addr;

use super::dial::{connect, io_cause, reset_on_close};
use super::tls::ClientStream;
use super::{Outbox, Spec};
use crate::stats::Cause;
use crate::wire::http::{accept_key, parse_response, upgrade_request};
use crate::wire::ws::{self, Opcode};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

const READ_SIZE: usize = 8192;

pub struct WsConn {
    stream: ClientStream,
    rbuf: Vec<u8>,
    /// Unread bytes are `rbuf[start..end]`.
    start: usize,
    end: usize,
    /// A text message arriving in fragments.
    fragments: Vec<u8>,
    /// The server agreed permessage-deflate.
    inflate: bool,
    /// The message being reassembled came compressed.
    fragments_compressed: bool,
    /// Where a compressed message is inflated (kept: its room is reused).
    inflated: Vec<u8>,
    /// Send a close frame when dropped.
    close_on_drop: bool,
}

impl WsConn {
    pub async fn open(spec: &Spec, source: Option<Ipv4Addr>) -> Result<WsConn, Cause> {
        let mut stream = connect(spec.addr, source, spec.tls.as_ref()).await?;
        let key = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>())
        };
        let request = upgrade_request(&spec.host, &spec.path, &key, spec.deflate);
        stream
            .write_all(&request)
            .await
            .map_err(|e| io_cause(&e, false))?;
        stream.flush().await.map_err(|e| io_cause(&e, false))?;
        let mut conn = WsConn {
            stream,
            rbuf: vec![0; READ_SIZE],
            start: 0,
            end: 0,
            fragments: Vec::new(),
            inflate: false,
            fragments_compressed: false,
            inflated: Vec::new(),
            close_on_drop: true,
        };
        loop {
            conn.read().await.map_err(|cause| match cause {
                Cause::ServerClosed | Cause::Io => Cause::BadHandshake,
                other => other,
            })?;
            let head = parse_response(&conn.rbuf[..conn.end]).map_err(|_| Cause::BadHandshake)?;
            if let Some(head) = head {
                if head.status != 101 {
                    return Err(Cause::HttpStatus);
                }
                if head.accept.as_deref() != Some(accept_key(&key).as_str()) {
                    return Err(Cause::BadHandshake);
                }
                conn.start = head.len;
                conn.inflate = head.deflate;
                return Ok(conn);
            }
            if conn.end == conn.rbuf.len() {
                return Err(Cause::BadHandshake);
            }
        }
    }

    async fn read(&mut self) -> Result<(), Cause> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.rbuf.len() {
            if self.start > 0 {
                self.rbuf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let len = self.rbuf.len();
                self.rbuf.resize(len * 2, 0);
            }
        }
        match self.stream.read(&mut self.rbuf[self.end..]).await {
            Ok(0) => Err(Cause::ServerClosed),
            Ok(n) => {
                self.end += n;
                Ok(())
            }
            Err(e) => Err(io_cause(&e, true)),
        }
    }

    pub async fn recv(
        &mut self,
        out: &mut Outbox,
        on: &mut impl FnMut(&[u8], &mut Outbox),
    ) -> Result<(), Cause> {
        // Frames already buffered (left over from the handshake) come
        // first; read only when there is no whole frame to hand over.
        let mut handed = false;
        loop {
            let buf = &self.rbuf[self.start..self.end];
            let frame = match ws::decode(buf) {
                Ok(Some(frame)) => frame,
                Ok(None) if handed => return Ok(()),
                Ok(None) => {
                    self.read().await?;
                    continue;
                }
                Err(_) => return Err(Cause::Protocol),
            };
            handed = true;
            let payload = &buf[frame.payload.clone()];
            if frame.rsv1 && !self.inflate {
                return Err(Cause::Protocol);
            }
            match frame.opcode {
                Opcode::Text if frame.fin && self.fragments.is_empty() && frame.rsv1 => {
                    if !ws::inflate(payload, &mut self.inflated) {
                        return Err(Cause::Protocol);
                    }
                    on(&self.inflated, out);
                }
                Opcode::Text if frame.fin && self.fragments.is_empty() => on(payload, out),
                Opcode::Text | Opcode::Continuation => {
                    if frame.opcode == Opcode::Text {
                        self.fragments_compressed = frame.rsv1;
                    }
                    self.fragments.extend_from_slice(payload);
                    if frame.fin {
                        if self.fragments_compressed {
                            if !ws::inflate(&self.fragments, &mut self.inflated) {
                                return Err(Cause::Protocol);
                            }
                            on(&self.inflated, out);
                        } else {
                            on(&self.fragments, out);
                        }
                        self.fragments.clear();
                    }
                }
                // Engine.IO v4 sends binary only for binary attachments; no scenario uses them.
                Opcode::Binary | Opcode::Pong => {}
                Opcode::Ping => out.push_frame(ws::PONG, payload),
                Opcode::Close => return Err(Cause::ServerClosed),
            }
            self.start += frame.payload.end;
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), Cause> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| io_cause(&e, true))?;
        self.stream.flush().await.map_err(|e| io_cause(&e, true))
    }
}

impl WsConn {
    /// When dropped, close the TCP connection without a close frame: with a
    /// FIN, or with `reset` a RST.
    pub fn close_silently(&mut self, reset: bool) {
        self.close_on_drop = false;
        if reset {
            use std::os::fd::AsRawFd;
            reset_on_close(self.stream.tcp().as_raw_fd());
        }
    }
}

impl Drop for WsConn {
    fn drop(&mut self) {
        // Over TLS a close frame would have to be a record: the TCP close
        // is all the server gets.
        if !self.close_on_drop || self.stream.is_tls() {
            return;
        }
        // A close frame, best effort, so servers log a clean close.
        let mut frame = Vec::with_capacity(8);
        ws::encode(ws::CLOSE, &1000u16.to_be_bytes(), &mut frame);
        // SAFETY: a non-blocking send on the descriptor this stream owns.
        unsafe {
            use std::os::fd::AsRawFd;
            libc::send(
                self.stream.tcp().as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            );
        }
    }
}
