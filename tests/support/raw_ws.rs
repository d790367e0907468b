//! A WebSocket client written by hand over a blocking `TcpStream`, for the
//! tests that run many of them against a debug hub: frames are parsed in
//! place from one buffer (no copy of the stream per message), and the
//! stream stays the test's to tune (receive buffer, linger, non-blocking).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::WS_KEY;

/// One server frame.
pub enum RawFrame {
    Text(String),
    /// Any other opcode (binary, close, ping, pong).
    Other(u8),
}

/// An Engine.IO v4 WebSocket session on `/socket.io/`.
pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
    at: usize,
    /// The Engine.IO session id (names the shard of the connection).
    pub eio_sid: String,
}

impl RawWs {
    /// Upgrades `stream` (connected to `addr`) to a WebSocket at
    /// `/socket.io/?EIO=4&transport=websocket` and reads the open packet.
    pub fn open(mut stream: TcpStream, addr: SocketAddr) -> RawWs {
        write!(
            stream,
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: {WS_KEY}\r\n\r\n",
        )
        .unwrap();
        let mut ws = RawWs {
            stream,
            buf: Vec::new(),
            at: 0,
            eio_sid: String::new(),
        };
        let end = loop {
            if let Some(end) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            assert!(ws.fill().unwrap() > 0, "closed during the upgrade");
        };
        let head = String::from_utf8_lossy(&ws.buf[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        ws.at = end;
        let open = ws.text();
        let json: serde_json::Value =
            serde_json::from_str(open.strip_prefix('0').expect("an open packet")).unwrap();
        ws.eio_sid = json["sid"].as_str().unwrap().to_string();
        ws
    }

    /// Read more from the peer; 0 at the end of the stream.
    pub fn fill(&mut self) -> io::Result<usize> {
        if self.at > 0 && self.at * 2 > self.buf.len() {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + 64 * 1024, 0);
        let read = self.stream.read(&mut self.buf[len..]);
        self.buf.truncate(len + *read.as_ref().unwrap_or(&0));
        read
    }

    /// The next frame (whole: the hub does not fragment); None at the end
    /// of the stream.
    pub fn frame(&mut self) -> io::Result<Option<RawFrame>> {
        loop {
            let b = &self.buf[self.at..];
            if b.len() >= 2 {
                assert_eq!(b[1] & 0x80, 0, "server frames are not masked");
                let (len, head) = match b[1] & 0x7f {
                    126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
                    127 if b.len() >= 10 => (
                        u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    n @ 0..=125 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if len != usize::MAX && b.len() >= head + len {
                    assert_eq!(b[0] & 0x80, 0x80, "no fragmented frames expected");
                    let frame = match b[0] & 0x0f {
                        1 => {
                            RawFrame::Text(String::from_utf8(b[head..head + len].to_vec()).unwrap())
                        }
                        other => RawFrame::Other(other),
                    };
                    self.at += head + len;
                    return Ok(Some(frame));
                }
            }
            if self.fill()? == 0 {
                return Ok(None);
            }
        }
    }

    /// The next Engine.IO packet that is not a ping (pings are answered).
    pub fn text(&mut self) -> String {
        loop {
            match self.frame() {
                Ok(Some(RawFrame::Text(t))) if t == "2" => self.send("3"),
                Ok(Some(RawFrame::Text(t))) => return t,
                Ok(Some(RawFrame::Other(op))) => panic!("unexpected frame, opcode {op}"),
                Ok(None) => panic!("connection closed"),
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Send a text frame (masked with a zero key, which RFC 6455 allows).
    pub fn send(&mut self, text: &str) {
        let mut frame = vec![0x81];
        match text.len() {
            n @ 0..=125 => frame.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(text.as_bytes());
        self.stream.write_all(&frame).unwrap();
    }

    /// Publish `count` relay messages (event `m`, `data(n)` the JSON of the
    /// n-th) to room `r`, `window` acks in flight; every ack must be
    /// `{"ok":true}`. How many were acknowledged.
    pub fn publish_acked(
        &mut self,
        count: u64,
        window: u64,
        data: impl Fn(u64) -> String,
    ) -> Result<u64, String> {
        let (mut sent, mut acked) = (0u64, 0u64);
        while acked < count {
            while sent < count && sent - acked < window {
                self.send(&format!(
                    "42{}[\"publish\",{{\"to\":\"r\",\"event\":\"m\",\"data\":{}}}]",
                    sent + 1,
                    data(sent)
                ));
                sent += 1;
            }
            let ack = self.text();
            if ack != format!("43{}[{{\"ok\":true}}]", acked + 1) {
                return Err(format!("publish {} answered {ack}", acked + 1));
            }
            acked += 1;
        }
        Ok(acked)
    }
}
