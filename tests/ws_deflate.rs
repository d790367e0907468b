//! permessage-deflate (RFC 7692) on the WebSocket transport, with raw
//! frames against the conformance server (raw Engine.IO at `/engine.io/`,
//! echoing every message): what is negotiated, compressed messages both
//! ways, the threshold, `--no-deflate`, and every way a client can misuse
//! compression (a decompression bomb closes 1009, RSV1 where it does not
//! belong 1002, data that does not inflate 1007).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use support::*;

const OFFER: &str = "permessage-deflate; client_max_window_bits";
const AGREED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

fn start(shards: u32, extra: &[&str]) -> Server {
    let n = shards.to_string();
    let mut args = vec!["--shards", n.as_str()];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// A WebSocket opened by hand: the 101's `Sec-WebSocket-Extensions` (if
/// any), then frames read and written raw.
struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
    extensions: Option<String>,
}

/// A server frame: its first byte and payload.
#[derive(Debug)]
struct Frame {
    b0: u8,
    payload: Vec<u8>,
}

impl Frame {
    fn rsv1(&self) -> bool {
        self.b0 & 0x40 != 0
    }
    fn opcode(&self) -> u8 {
        self.b0 & 0x0f
    }
    fn close_code(&self) -> u16 {
        assert_eq!(self.opcode(), 8, "a close frame: {self:?}");
        u16::from_be_bytes([self.payload[0], self.payload[1]])
    }
}

impl RawWs {
    fn open(addr: SocketAddr, offer: Option<&str>) -> RawWs {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut ws = RawWs {
            stream,
            buf: Vec::new(),
            extensions: None,
        };
        let mut request = format!(
            "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        if let Some(offer) = offer {
            request.push_str(&format!("Sec-WebSocket-Extensions: {offer}\r\n"));
        }
        request.push_str("\r\n");
        ws.stream.write_all(request.as_bytes()).unwrap();
        let end = loop {
            if let Some(end) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            ws.fill();
        };
        let head = String::from_utf8(ws.buf[..end].to_vec()).unwrap();
        ws.buf.drain(..end + 4);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        ws.extensions = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
            .map(str::to_owned);
        let open = ws.frame();
        assert!(
            !open.rsv1() && open.payload.starts_with(b"0{"),
            "open packet: {open:?}"
        );
        ws
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk).expect("read");
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    fn need(&mut self, n: usize) {
        while self.buf.len() < n {
            assert!(self.fill() > 0, "connection closed mid-frame");
        }
    }

    /// The next frame from the server (unmasked).
    fn frame(&mut self) -> Frame {
        self.need(2);
        let (b0, short) = (self.buf[0], self.buf[1]);
        assert_eq!(short & 0x80, 0, "server frames are unmasked");
        let (len, head) = match short & 0x7f {
            126 => {
                self.need(4);
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 => {
                self.need(10);
                let len = u64::from_be_bytes(self.buf[2..10].try_into().unwrap());
                (len as usize, 10)
            }
            n => (n as usize, 2),
        };
        self.need(head + len);
        let payload = self.buf[head..head + len].to_vec();
        self.buf.drain(..head + len);
        Frame { b0, payload }
    }

    /// The next data frame, answering pings and skipping pongs.
    fn data_frame(&mut self) -> Frame {
        loop {
            let frame = self.frame();
            match frame.opcode() {
                1 if frame.payload == b"2" => self.send(0x81, b"3"),
                9 | 10 => {}
                _ => return frame,
            }
        }
    }

    /// Send one masked frame with first byte `b0`.
    fn send(&mut self, b0: u8, payload: &[u8]) {
        self.stream.write_all(&masked(b0, payload)).unwrap();
    }

    /// The frame ends the connection: the server's close comes, then EOF.
    fn expect_close(&mut self, code: u16) {
        let frame = loop {
            let frame = self.frame();
            if frame.opcode() == 8 {
                break frame;
            }
        };
        assert_eq!(frame.close_code(), code, "{frame:?}");
        loop {
            match self.stream.read(&mut [0u8; 1024]) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// A client frame with first byte `b0`, masked.
fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    ws_frame_with_head(b0, payload, Some([0x11, 0x22, 0x33, 0x44]))
}

/// A message's compressed payload as a client sends it (RFC 7692 7.2.1).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 1024);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// Inflate a server's compressed payload with a window of `bits`.
fn inflate(data: &[u8], bits: u8) -> Vec<u8> {
    let mut d = Decompress::new_with_window_bits(false, bits);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(4 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

fn json_text(len: usize) -> String {
    let mut s = String::from("4");
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!(
            "{{\"id\":{i},\"text\":\"hello number {}\"}},",
            i % 13
        ));
        i += 1;
    }
    s.truncate(len);
    s
}

fn compressed_both_ways(shards: u32) {
    let srv = start(shards, &[]);
    let mut ws = RawWs::open(srv.addr(), Some(OFFER));
    assert_eq!(ws.extensions.as_deref(), Some(AGREED));
    // Every size class, sent compressed and plain: what reaches the threshold
    // (1024 bytes, the `4` included) comes back compressed.
    for len in [2usize, 1023, 1024, 1025, 65_536, 999_000] {
        let text = json_text(len);
        for compress in [true, false] {
            if compress {
                ws.send(0xc1, &deflate(text.as_bytes()));
            } else {
                ws.send(0x81, text.as_bytes());
            }
            let echo = ws.data_frame();
            assert_eq!(echo.opcode(), 1);
            assert_eq!(echo.rsv1(), len >= 1024, "{len}");
            let got = if echo.rsv1() {
                assert!(
                    echo.payload.len() < len / 3,
                    "{len}: {}",
                    echo.payload.len()
                );
                inflate(&echo.payload, 15)
            } else {
                echo.payload
            };
            assert_eq!(got, text.as_bytes(), "{len} compress={compress}");
        }
    }
    // Binary: the same.
    for len in [10usize, 3000, 500_000] {
        let data: Vec<u8> = (0..len).map(|i| (i % 7) as u8).collect();
        ws.send(0xc2, &deflate(&data));
        let echo = ws.data_frame();
        assert_eq!((echo.opcode(), echo.rsv1()), (2, len >= 1024), "{len}");
        let got = if echo.rsv1() {
            inflate(&echo.payload, 15)
        } else {
            echo.payload
        };
        assert_eq!(got, data);
    }
    // A compressed message split over frames (RSV1 on the first only).
    let text = json_text(5000);
    let z = deflate(text.as_bytes());
    ws.send(0x41, &z[..100]);
    ws.send(0x00, &z[100..200]);
    ws.send(0x80, &z[200..]);
    assert_eq!(inflate(&ws.data_frame().payload, 15), text.as_bytes());
}

fn window_bits_honoured(shards: u32) {
    let srv = start(shards, &[]);
    let mut ws = RawWs::open(
        srv.addr(),
        Some("permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"),
    );
    assert_eq!(
        ws.extensions.as_deref(),
        Some(&*format!("{AGREED}; server_max_window_bits=9"))
    );
    let text = json_text(20_000);
    ws.send(0x81, text.as_bytes());
    let echo = ws.data_frame();
    assert!(echo.rsv1());
    // A 9-bit window inflates it: no distance reaches past 512 bytes.
    assert_eq!(inflate(&echo.payload, 9), text.as_bytes());
    // An offer hub cannot honour (8 bits) is declined; the next is taken.
    let ws = RawWs::open(
        srv.addr(),
        Some("permessage-deflate; server_max_window_bits=8, permessage-deflate"),
    );
    assert_eq!(ws.extensions.as_deref(), Some(AGREED));
    let ws = RawWs::open(
        srv.addr(),
        Some("permessage-deflate; server_max_window_bits=8"),
    );
    assert_eq!(ws.extensions, None);
}

fn threshold_and_no_deflate(shards: u32) {
    let srv = start(shards, &["--deflate-threshold", "10000"]);
    let mut ws = RawWs::open(srv.addr(), Some(OFFER));
    let text = json_text(5000);
    ws.send(0xc1, &deflate(text.as_bytes()));
    let echo = ws.data_frame();
    assert!(!echo.rsv1(), "under the threshold");
    assert_eq!(echo.payload, text.as_bytes());
    let text = json_text(10_000);
    ws.send(0x81, text.as_bytes());
    assert!(ws.data_frame().rsv1(), "at the threshold");

    let srv = start(shards, &["--no-deflate"]);
    let mut ws = RawWs::open(srv.addr(), Some(OFFER));
    assert_eq!(ws.extensions, None);
    ws.send(0x81, json_text(5000).as_bytes());
    assert!(!ws.data_frame().rsv1());
    // Compressed frames were not agreed: a protocol error.
    ws.send(0xc1, &deflate(b"4hello"));
    ws.expect_close(1002);
}

fn decompression_bomb_closes_1009(shards: u32) {
    let srv = start(shards, &["--max-payload", "1000000"]);
    let mut ws = RawWs::open(srv.addr(), Some(OFFER));
    // 20 KB on the wire that would inflate to 20 MB.
    let mut bomb = b"4".to_vec();
    bomb.resize(20 << 20, b'a');
    let z = deflate(&bomb);
    assert!(z.len() < 50_000, "{}", z.len());
    ws.send(0xc1, &z);
    ws.expect_close(1009);
    // One byte over the limit, the same.
    let mut ws = RawWs::open(srv.addr(), Some(OFFER));
    let over = json_text(1_000_001);
    ws.send(0xc1, &deflate(over.as_bytes()));
    ws.expect_close(1009);
    // At the limit, fine.
    let mut ws = RawWs::open(srv.addr(), Some(OFFER));
    let at = json_text(1_000_000);
    ws.send(0xc1, &deflate(at.as_bytes()));
    assert_eq!(inflate(&ws.data_frame().payload, 15), at.as_bytes());
}

fn rsv1_misuse_closes_1002(shards: u32) {
    let srv = start(shards, &[]);
    // On a control frame.
    let mut ws = RawWs::open(srv.addr(), Some(OFFER));
    ws.send(0xc9, b"ping");
    ws.expect_close(1002);
    // On a continuation frame.
    let mut ws = RawWs::open(srv.addr(), Some(OFFER));
    let z = deflate(json_text(3000).as_bytes());
    ws.send(0x41, &z[..10]);
    ws.send(0xc0, &z[10..]);
    ws.expect_close(1002);
    // RSV2 stays reserved.
    let mut ws = RawWs::open(srv.addr(), Some(OFFER));
    ws.send(0xa1, b"4x");
    ws.expect_close(1002);
    // Not offered, not agreed.
    let mut ws = RawWs::open(srv.addr(), None);
    assert_eq!(ws.extensions, None);
    ws.send(0xc1, &deflate(b"4hello"));
    ws.expect_close(1002);
}

fn bad_compressed_data_closes_1007(shards: u32) {
    let srv = start(shards, &[]);
    let mut ws = RawWs::open(srv.addr(), Some(OFFER));
    ws.send(0xc1, &[0xff, 0xff, 0xff, 0xff]);
    ws.expect_close(1007);
}

macro_rules! per_shards {
    ($($name:ident),*) => {
        mod shards_1 {
            $(#[test] fn $name() { super::$name(1) })*
        }
        mod shards_2 {
            $(#[test] fn $name() { super::$name(2) })*
        }
    };
}

per_shards!(
    compressed_both_ways,
    window_bits_honoured,
    threshold_and_no_deflate,
    decompression_bomb_closes_1009,
    rsv1_misuse_closes_1002,
    bad_compressed_data_closes_1007
);
