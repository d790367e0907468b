//! WebSocket frame codec (RFC 6455), server side, sans-IO.
//!
//! Decoding validates everything a server must reject (and that Autobahn tests) and reassembles
//! fragmented messages. Encoding writes unmasked server frames, so one encoded frame can be
//! written unchanged to every recipient of a broadcast.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// A complete message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// `None` for an empty close frame, else the status code and reason.
    Close(Option<(u16, String)>),
}

/// A protocol violation. The connection must be closed with [`WsError::close_code`].
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum WsError {
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("WebSocket message too big")]
    TooBig,
    #[error("invalid UTF-8 in WebSocket text")]
    InvalidUtf8,
    /// A compressed message (permessage-deflate) that does not inflate.
    #[error("invalid compressed WebSocket message")]
    InvalidDeflate,
}

impl WsError {
    /// The close code to send: 1002 protocol error, 1009 message too big, 1007 invalid data.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => 1002,
            WsError::TooBig => 1009,
            WsError::InvalidUtf8 | WsError::InvalidDeflate => 1007,
        }
    }
}

/// A data message being reassembled from fragments.
#[derive(Debug)]
struct Partial {
    text: bool,
    /// Sent compressed (RSV1 on its first frame): inflated once whole.
    compressed: bool,
    data: Vec<u8>,
    /// For text: bytes known to be valid UTF-8 so far, so invalid text fails on the fragment that
    /// breaks it (RFC 6455 8.1 "fail fast") without re-scanning earlier fragments.
    utf8_checked: usize,
}

/// One whole frame from the client, validated.
struct Frame {
    fin: bool,
    /// RSV1: the first frame of a compressed message.
    compressed: bool,
    /// The opcode's four bits, one of those [`Decoder::next_frame`] accepts.
    opcode: u8,
    /// Unmasked.
    payload: Vec<u8>,
    /// Every payload byte is below 0x80: as text, it is UTF-8 without a
    /// further look (noted by the unmasking copy, which sees every byte).
    ascii: bool,
}

/// Incremental frame decoder. Holds only the reassembly state of a fragmented message; when no
/// message is in flight it owns no heap memory, so idle connections stay cheap.
///
/// After an error the connection must be closed; the decoder is not meant to be reused.
#[derive(Debug)]
pub struct Decoder {
    max_message_bytes: usize,
    /// permessage-deflate was negotiated: a message's first frame may have
    /// RSV1 set, and such a message is inflated (see [`super::deflate`]).
    inflate: bool,
    /// Boxed: most connections never see a fragmented message, and this keeps the decoder small.
    partial: Option<Box<Partial>>,
}

impl Decoder {
    /// `max_message_bytes` bounds each reassembled message (Engine.IO's `maxPayload`).
    pub fn new(max_message_bytes: usize) -> Self {
        Decoder {
            max_message_bytes,
            inflate: false,
            partial: None,
        }
    }

    /// A decoder for a connection that negotiated permessage-deflate: a
    /// compressed message is inflated within the same `max_message_bytes`.
    pub fn with_inflate(max_message_bytes: usize) -> Self {
        Decoder {
            inflate: true,
            ..Decoder::new(max_message_bytes)
        }
    }

    /// Consume complete frames from the front of `buf` and return the next complete message,
    /// or `Ok(None)` when more bytes are needed (a partial frame stays in `buf`, untouched).
    ///
    /// Control frames that arrive between the fragments of a message are returned as soon as
    /// they are read; the fragments so far are kept. Header-level violations (including a
    /// declared length over the limit) are reported as soon as the header bytes are present,
    /// before the payload arrives.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WsError> {
        let mut input = &buf[..];
        let result = self.decode_from(&mut input);
        let used = buf.len() - input.len();
        buf.advance(used);
        result
    }

    /// [`Decoder::decode`] over a slice: `input` is moved past the frames used, and a partial
    /// frame is left in it for the caller to keep and offer again with the bytes that follow.
    pub fn decode_from(&mut self, input: &mut &[u8]) -> Result<Option<Message>, WsError> {
        loop {
            let Some(Frame {
                fin,
                compressed,
                opcode,
                payload,
                ascii,
            }) = self.next_frame(input)?
            else {
                return Ok(None);
            };
            match opcode {
                OP_CLOSE => return parse_close(payload).map(Some),
                OP_PING => return Ok(Some(Message::Ping(payload.into()))),
                OP_PONG => return Ok(Some(Message::Pong(payload.into()))),
                OP_TEXT | OP_BINARY => {
                    let text = opcode == OP_TEXT;
                    if fin {
                        if text && ascii && !compressed {
                            // SAFETY: every byte is below 0x80 (the unmasking
                            // copy checked each), and ASCII is UTF-8.
                            let text = unsafe { String::from_utf8_unchecked(payload) };
                            return Ok(Some(Message::Text(text)));
                        }
                        return self.finish(text, compressed, payload).map(Some);
                    }
                    let mut p = Partial {
                        text,
                        compressed,
                        data: payload,
                        utf8_checked: 0,
                    };
                    check_utf8_prefix(&mut p)?;
                    self.partial = Some(Box::new(p));
                }
                OP_CONTINUE => {
                    // next_frame guarantees a message is in flight.
                    let Some(p) = self.partial.as_mut() else {
                        return Err(WsError::Protocol("continuation frame without a start"));
                    };
                    p.data.extend_from_slice(&payload);
                    check_utf8_prefix(p)?;
                    if fin {
                        let p = self.partial.take().expect("checked above");
                        return self.finish(p.text, p.compressed, p.data).map(Some);
                    }
                }
                // Rejected by next_frame.
                _ => return Err(WsError::Protocol("unknown opcode")),
            }
        }
    }

    /// Validate and take the next whole frame.
    fn next_frame(&self, buf: &mut &[u8]) -> Result<Option<Frame>, WsError> {
        // Checks on the first two bytes come first so a bad frame fails as early as possible.
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        let op = b0 & 0x0f;
        let is_control = op & 0x08 != 0;
        let rsv1 = b0 & 0x40 != 0;
        // RSV2 and RSV3 have no meaning here; RSV1 marks a compressed
        // message (RFC 7692 6), set on its first frame only, never on a
        // control frame, and only once permessage-deflate was negotiated.
        if b0 & 0x30 != 0 || (rsv1 && (!self.inflate || is_control || op == 0)) {
            return Err(WsError::Protocol("reserved bits set"));
        }
        match op {
            0 if self.partial.is_none() => {
                return Err(WsError::Protocol("continuation frame without a start"))
            }
            1 | 2 if self.partial.is_some() => {
                return Err(WsError::Protocol(
                    "new data frame inside a fragmented message",
                ))
            }
            0..=2 | 8..=10 => {}
            _ => return Err(WsError::Protocol("unknown opcode")),
        }
        if is_control && !fin {
            return Err(WsError::Protocol("fragmented control frame"));
        }
        if let Some(&b1) = buf.get(1) {
            if b1 & 0x80 == 0 {
                return Err(WsError::Protocol("unmasked client frame"));
            }
            if is_control && b1 & 0x7f > 125 {
                return Err(WsError::Protocol("control frame payload over 125 bytes"));
            }
        }

        // The declared length is known before the mask arrives: refuse an oversized data frame
        // right away rather than waiting for (or buffering) any more of it.
        let Some(len) = declared_len(buf) else {
            return Ok(None);
        };
        if len >> 63 != 0 {
            return Err(WsError::Protocol("payload length with the high bit set"));
        }
        if !is_control {
            self.check_size(len)?;
        }
        // The rest of the header, read here (the checks above saw its first two bytes, the
        // mask bit set among them): the extended length, then the mask.
        let mask_at = match buf[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        let header_len = mask_at + 4;
        let Some(mask) = buf.get(mask_at..header_len) else {
            return Ok(None);
        };
        let mask: [u8; 4] = mask.try_into().expect("four bytes");
        // Checked above: <= max_message_bytes for data, <= 125 for control frames, so it
        // fits in usize.
        let len = len as usize;
        if buf.len() - header_len < len {
            return Ok(None);
        }
        // Copy out rather than split the read buffer, so a retained message never pins the
        // connection's (larger) read buffer allocation; unmasked as it is copied.
        let (payload, ascii) = unmask_copy(&buf[header_len..header_len + len], mask);
        *buf = &buf[header_len + len..];
        Ok(Some(Frame {
            fin,
            compressed: rsv1,
            opcode: op,
            payload,
            ascii,
        }))
    }

    /// Turn a whole data message into a [`Message`], inflating it first if
    /// it came compressed, within the same size limit.
    fn finish(&self, text: bool, compressed: bool, data: Vec<u8>) -> Result<Message, WsError> {
        if !compressed {
            return finish(text, data);
        }
        match super::deflate::inflate(&data, self.max_message_bytes) {
            Ok(data) => finish(text, data),
            Err(super::deflate::InflateError::TooBig) => Err(WsError::TooBig),
            Err(super::deflate::InflateError::Invalid) => Err(WsError::InvalidDeflate),
        }
    }

    /// A data frame of `len` bytes must fit in what is left of the message budget.
    fn check_size(&self, len: u64) -> Result<(), WsError> {
        let so_far = self.partial.as_ref().map_or(0, |p| p.data.len());
        let room = self.max_message_bytes.saturating_sub(so_far) as u64;
        if len > room {
            return Err(WsError::TooBig);
        }
        Ok(())
    }
}

/// The payload length declared by the frame header at the front of `buf`, once its length
/// bytes (but not necessarily the mask) are present.
fn declared_len(buf: &[u8]) -> Option<u64> {
    let short = *buf.get(1)? & 0x7f;
    match short {
        126 => Some(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as u64),
        127 => Some(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)),
        n => Some(n as u64),
    }
}

/// Turn a whole data message into a [`Message`].
fn finish(text: bool, data: Vec<u8>) -> Result<Message, WsError> {
    if text {
        String::from_utf8(data)
            .map(Message::Text)
            .map_err(|_| WsError::InvalidUtf8)
    } else {
        Ok(Message::Binary(Bytes::from(data)))
    }
}

/// For a fragmented text message, fail as soon as the bytes so far cannot be a UTF-8 prefix.
fn check_utf8_prefix(p: &mut Partial) -> Result<(), WsError> {
    if !p.text || p.compressed {
        return Ok(());
    }
    match std::str::from_utf8(&p.data[p.utf8_checked..]) {
        Ok(_) => p.utf8_checked = p.data.len(),
        // A definite error, not merely a sequence cut at the end of the fragment.
        Err(e) if e.error_len().is_some() => return Err(WsError::InvalidUtf8),
        Err(e) => p.utf8_checked += e.valid_up_to(),
    }
    Ok(())
}

/// Close payload: empty, or a 2-byte valid status code followed by a UTF-8 reason.
fn parse_close(payload: Vec<u8>) -> Result<Message, WsError> {
    match payload.len() {
        0 => Ok(Message::Close(None)),
        1 => Err(WsError::Protocol("close payload of one byte")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_close_code(code) {
                return Err(WsError::Protocol("invalid close code"));
            }
            let reason =
                String::from_utf8(payload[2..].to_vec()).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Message::Close(Some((code, reason))))
        }
    }
}

/// Codes a peer may send (the same set Node `ws` accepts): the defined 1000-1014 except the
/// reserved 1004-1006, and the registered/private range 3000-4999.
fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The opcodes a client frame may carry (RFC 6455 5.2), as [`Frame::opcode`] holds them.
const OP_CONTINUE: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xa;

/// `masked` XORed with the 4-byte mask, in a new allocation of its size, and
/// whether every byte of the result is ASCII. One pass does the copy, the
/// unmasking and the ASCII test, sixteen bytes at a time (SSE2), then eight,
/// then one (the mask's period divides 8 and 16, so every block sees the
/// mask at the same phase): a text frame found ASCII needs no UTF-8
/// validation after it.
///
/// Written by hand: the copy (`to_vec`), the XOR and `str::from_utf8` were
/// three passes over the bytes.
fn unmask_copy(masked: &[u8], mask: [u8; 4]) -> (Vec<u8>, bool) {
    let len = masked.len();
    let mut out: Vec<u8> = Vec::with_capacity(len);
    let dst = &mut out.spare_capacity_mut()[..len];
    let (blocks, mut ascii) = unmask_blocks(masked, dst, mask);
    let rest = len - blocks;
    let (dst_words, dst_tail) = dst[blocks..].split_at_mut(rest & !7);
    let (src_words, src_tail) = masked[blocks..].split_at(rest & !7);
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut high = 0u64;
    for (dst, src) in dst_words.chunks_exact_mut(8).zip(src_words.chunks_exact(8)) {
        let plain = u64::from_ne_bytes(src.try_into().expect("eight bytes")) ^ wide;
        high |= plain;
        dst.copy_from_slice(&plain.to_ne_bytes().map(MaybeUninit::new));
    }
    let mut high_tail = 0u8;
    for (i, (dst, &src)) in dst_tail.iter_mut().zip(src_tail).enumerate() {
        let plain = src ^ mask[i & 3];
        high_tail |= plain;
        dst.write(plain);
    }
    // SAFETY: the blocks, the words and the tail wrote all of the first
    // `len` bytes, within the capacity reserved for them.
    unsafe { out.set_len(len) };
    ascii &= high & 0x8080_8080_8080_8080 == 0 && high_tail & 0x80 == 0;
    (out, ascii)
}

/// [`unmask_copy`] of `src`'s whole sixteen-byte blocks into `dst` (as long
/// as `src`): how many bytes that is, and whether they were all ASCII.
#[cfg(target_arch = "x86_64")]
fn unmask_blocks(src: &[u8], dst: &mut [MaybeUninit<u8>], mask: [u8; 4]) -> (usize, bool) {
    use std::arch::x86_64::{
        _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi32, _mm_setzero_si128,
        _mm_storeu_si128, _mm_xor_si128,
    };
    assert_eq!(src.len(), dst.len());
    let blocks = src.len() / 16;
    // SAFETY: SSE2, all these need, is part of x86-64's baseline. Each load
    // and store is unaligned and of sixteen bytes at `16 * k` for
    // `k < blocks`, within `src` and `dst` (of equal lengths, checked).
    unsafe {
        let wide = _mm_set1_epi32(i32::from_ne_bytes(mask));
        let mut seen = _mm_setzero_si128();
        for k in 0..blocks {
            let plain = _mm_xor_si128(_mm_loadu_si128(src.as_ptr().add(16 * k).cast()), wide);
            seen = _mm_or_si128(seen, plain);
            _mm_storeu_si128(dst.as_mut_ptr().add(16 * k).cast(), plain);
        }
        // The high bit of every byte seen.
        (16 * blocks, _mm_movemask_epi8(seen) == 0)
    }
}

/// Elsewhere the words and the tail do it all.
#[cfg(not(target_arch = "x86_64"))]
fn unmask_blocks(_src: &[u8], _dst: &mut [MaybeUninit<u8>], _mask: [u8; 4]) -> (usize, bool) {
    (0, true)
}

/// The longest head of a frame the server sends (unmasked, 64-bit length).
pub const MAX_SERVER_HEAD: usize = 10;

/// FIN set, no extension bits.
const FIN: u8 = 0x80;

/// Append the head of a final, unmasked frame of `len` payload bytes.
fn server_head(opcode: OpCode, len: usize, out: &mut Vec<u8>) {
    out.push(FIN | u8::from(opcode));
    match len {
        0..=125 => out.push(len as u8),
        126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// Append the head of a final data frame compressed with permessage-deflate
/// (RSV1 set), for `len` compressed payload bytes that follow it.
pub fn server_deflated_head(text: bool, len: usize, out: &mut Vec<u8>) {
    let opcode = if text {
        OpCode::Data(Data::Text)
    } else {
        OpCode::Data(Data::Binary)
    };
    let at = out.len();
    server_head(opcode, len, out);
    out[at] |= RSV1;
}

/// The length of the head of a server frame of `len` payload bytes.
pub fn server_head_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// The bit of a frame's first byte that marks a compressed message.
const RSV1: u8 = 0x40;

/// Append the head of a final text frame the server sends, for `len`
/// payload bytes that follow it.
#[inline]
pub fn server_text_head(len: usize, out: &mut Vec<u8>) {
    // The usual case (an ack, most broadcasts) in one two-byte append:
    // `server_head` out of line, its opcode conversion and two pushes each
    // checking the capacity, cost about 40 instructions per echo ack.
    if len <= 125 {
        out.extend_from_slice(&[FIN | TEXT_OPCODE, len as u8]);
        return;
    }
    server_head(OpCode::Data(Data::Text), len, out);
}

/// The opcode of a text frame (RFC 6455, 5.2).
const TEXT_OPCODE: u8 = 0x1;

/// Append one final, unmasked frame.
fn encode(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(MAX_SERVER_HEAD + payload.len());
    server_head(opcode, payload.len(), out);
    out.extend_from_slice(payload);
}

/// Append one final data frame whose payload is `parts` joined, without
/// joining them first: a shared message body needs no per-recipient copy.
/// Text parts must join to UTF-8 (not checked).
pub fn encode_parts(text: bool, parts: &[&[u8]], out: &mut Vec<u8>) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let opcode = if text {
        OpCode::Data(Data::Text)
    } else {
        OpCode::Data(Data::Binary)
    };
    out.reserve(MAX_SERVER_HEAD + len);
    server_head(opcode, len, out);
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// Append a text frame. `payload` must be UTF-8 (not checked: callers encode from `str`).
pub fn encode_text(payload: &[u8], out: &mut Vec<u8>) {
    encode(OpCode::Data(Data::Text), payload, out);
}

/// Append a binary frame.
pub fn encode_binary(payload: &[u8], out: &mut Vec<u8>) {
    encode(OpCode::Data(Data::Binary), payload, out);
}

/// Append a ping frame. Control payloads are capped at 125 bytes; longer input is truncated.
pub fn encode_ping(payload: &[u8], out: &mut Vec<u8>) {
    encode(
        OpCode::Control(Control::Ping),
        &payload[..payload.len().min(125)],
        out,
    );
}

/// Append a pong frame (echo the ping's payload). Truncated to 125 bytes like [`encode_ping`].
pub fn encode_pong(payload: &[u8], out: &mut Vec<u8>) {
    encode(
        OpCode::Control(Control::Pong),
        &payload[..payload.len().min(125)],
        out,
    );
}

/// Append a close frame with `code` and `reason`, the reason cut at a character boundary to
/// fit the 125-byte control payload limit.
pub fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; 125];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    encode(OpCode::Control(Control::Close), &payload[..2 + end], out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use tungstenite::protocol::frame::FrameHeader;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const MAX: usize = 1_000_000;

    #[test]
    fn text_head_is_the_general_head_of_a_text_frame() {
        for len in (0..=300).chain([65_535, 65_536, 1 << 32]) {
            let (mut fast, mut general) = (Vec::new(), Vec::new());
            server_text_head(len, &mut fast);
            server_head(OpCode::Data(Data::Text), len, &mut general);
            assert_eq!(fast, general, "len {len}");
        }
    }

    #[test]
    fn server_heads_match_tungstenite() {
        let opcodes = [
            OpCode::Data(Data::Text),
            OpCode::Data(Data::Binary),
            OpCode::Control(Control::Ping),
            OpCode::Control(Control::Pong),
            OpCode::Control(Control::Close),
        ];
        for opcode in opcodes {
            for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 1 << 32] {
                let mut ours = Vec::new();
                server_head(opcode, len, &mut ours);
                let header = FrameHeader {
                    is_final: true,
                    opcode,
                    mask: None,
                    ..FrameHeader::default()
                };
                let mut theirs = Vec::new();
                header.format(len as u64, &mut theirs).unwrap();
                assert_eq!(ours, theirs, "{opcode:?} {len}");
                assert!(ours.len() <= MAX_SERVER_HEAD);
            }
        }
    }

    /// Build a client frame by hand (independently of tungstenite's formatter).
    fn frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut v = vec![b0];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => v.push(m | n as u8),
            n if n < 65536 => {
                v.push(m | 126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(m | 127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(k) => {
                v.extend_from_slice(&k);
                v.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => v.extend_from_slice(payload),
        }
        v
    }

    fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
        frame(b0, payload, Some(MASK))
    }

    fn decode_all(bytes: &[u8], max: usize) -> Result<Vec<Message>, WsError> {
        let mut d = Decoder::new(max);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = d.decode(&mut buf)? {
            out.push(m);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(out)
    }

    fn decode_one(bytes: &[u8]) -> Result<Option<Message>, WsError> {
        Decoder::new(MAX).decode(&mut BytesMut::from(bytes))
    }

    fn text(s: &str) -> Message {
        Message::Text(s.into())
    }

    #[test]
    fn rfc6455_5_7_masked_text() {
        let raw = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(masked(0x81, b"Hello"), raw);
        assert_eq!(decode_all(&raw, MAX), Ok(vec![text("Hello")]));
    }

    #[test]
    fn rfc6455_5_7_masked_pong() {
        let raw = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_all(&raw, MAX),
            Ok(vec![Message::Pong(Bytes::from_static(b"Hello"))])
        );
    }

    #[test]
    fn rfc6455_5_7_unmasked_examples_are_rejected_but_encode_identically() {
        // Single-frame unmasked text / ping: what a server sends, what a client must not.
        let text_frame = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let ping_frame = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            decode_one(&text_frame),
            Err(WsError::Protocol("unmasked client frame"))
        );
        assert_eq!(
            decode_one(&ping_frame),
            Err(WsError::Protocol("unmasked client frame"))
        );
        let mut out = Vec::new();
        encode_text(b"Hello", &mut out);
        assert_eq!(out, text_frame);
        out.clear();
        encode_ping(b"Hello", &mut out);
        assert_eq!(out, ping_frame);
    }

    #[test]
    fn rfc6455_5_7_fragmented_text() {
        // The RFC's unmasked fragments 0x01 0x03 "Hel" / 0x80 0x02 "lo", masked as a client must.
        let mut raw = masked(0x01, b"Hel");
        raw.extend(masked(0x80, b"lo"));
        assert_eq!(decode_all(&raw, MAX), Ok(vec![text("Hello")]));
    }

    #[test]
    fn rfc6455_5_7_lengths_encode() {
        let mut out = Vec::new();
        encode_binary(&[7u8; 256], &mut out);
        assert_eq!(out[..4], [0x82, 0x7e, 0x01, 0x00]);
        assert_eq!(out.len(), 4 + 256);
        out.clear();
        encode_binary(&vec![7u8; 65536], &mut out);
        assert_eq!(out[..10], [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(out.len(), 10 + 65536);
        out.clear();
        encode_binary(&[7u8; 125], &mut out);
        assert_eq!(out[..2], [0x82, 125]);
        out.clear();
        encode_binary(&[7u8; 126], &mut out);
        assert_eq!(out[..4], [0x82, 126, 0, 126]);
        out.clear();
        encode_binary(&vec![7u8; 65535], &mut out);
        assert_eq!(out[..4], [0x82, 126, 0xff, 0xff]);
    }

    #[test]
    fn masked_binary_and_16_and_64_bit_lengths() {
        for n in [0usize, 1, 125, 126, 256, 65535, 65536, 100_000] {
            let payload: Vec<u8> = (0..n).map(|i| (i * 31 % 251) as u8).collect();
            let raw = masked(0x82, &payload);
            let header_len = match n {
                0..=125 => 6,
                126..=65535 => 8,
                _ => 14,
            };
            assert_eq!(raw.len(), header_len + n);
            assert_eq!(
                decode_all(&raw, MAX),
                Ok(vec![Message::Binary(payload.into())]),
                "{n}"
            );
        }
    }

    #[test]
    fn empty_and_unicode_text() {
        assert_eq!(decode_all(&masked(0x81, b""), MAX), Ok(vec![text("")]));
        let s = "4héllo €𝄞";
        assert_eq!(
            decode_all(&masked(0x81, s.as_bytes()), MAX),
            Ok(vec![text(s)])
        );
    }

    #[test]
    fn fragmentation_with_interleaved_ping() {
        let mut raw = masked(0x01, b"He");
        raw.extend(masked(0x89, b"p1"));
        raw.extend(masked(0x00, b"ll"));
        raw.extend(masked(0x8a, b""));
        raw.extend(masked(0x80, b"o"));
        raw.extend(masked(0x02, &[1, 2]));
        raw.extend(masked(0x00, &[]));
        raw.extend(masked(0x88, &[0x03, 0xe8, b'b', b'y', b'e']));
        raw.extend(masked(0x80, &[3]));
        assert_eq!(
            decode_all(&raw, MAX),
            Ok(vec![
                Message::Ping(Bytes::from_static(b"p1")),
                Message::Pong(Bytes::new()),
                text("Hello"),
                Message::Close(Some((1000, "bye".into()))),
                Message::Binary(Bytes::from_static(&[1, 2, 3])),
            ])
        );
    }

    #[test]
    fn utf8_split_across_fragments_is_fine() {
        let s = "€".as_bytes(); // e2 82 ac
        let mut raw = masked(0x01, &s[..1]);
        raw.extend(masked(0x00, &s[1..2]));
        raw.extend(masked(0x80, &s[2..]));
        assert_eq!(decode_all(&raw, MAX), Ok(vec![text("€")]));
    }

    #[test]
    fn byte_by_byte_feeding() {
        let mut raw = masked(0x81, b"first");
        raw.extend(masked(0x01, b"sec"));
        raw.extend(masked(0x89, b"ping"));
        raw.extend(masked(0x80, b"ond"));
        raw.extend(masked(0x82, &vec![9u8; 300]));
        raw.extend(masked(0x82, &vec![8u8; 70_000]));
        raw.extend(masked(0x88, &[]));
        let want = vec![
            text("first"),
            Message::Ping(Bytes::from_static(b"ping")),
            text("second"),
            Message::Binary(vec![9u8; 300].into()),
            Message::Binary(vec![8u8; 70_000].into()),
            Message::Close(None),
        ];
        assert_eq!(decode_all(&raw, MAX), Ok(want.clone()));

        let mut d = Decoder::new(MAX);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in &raw {
            buf.extend_from_slice(&[b]);
            while let Some(m) = d.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, want);
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_frame_left_in_buffer() {
        let mut raw = masked(0x81, b"one");
        let second = masked(0x81, b"two");
        raw.extend_from_slice(&second[..4]);
        let mut d = Decoder::new(MAX);
        let mut buf = BytesMut::from(&raw[..]);
        assert_eq!(d.decode(&mut buf), Ok(Some(text("one"))));
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(&buf[..], &second[..4]);
        buf.extend_from_slice(&second[4..]);
        assert_eq!(d.decode(&mut buf), Ok(Some(text("two"))));
        assert!(buf.is_empty());
    }

    #[test]
    fn header_errors() {
        let p = WsError::Protocol;
        assert_eq!(
            decode_one(&masked(0x81 | 0x40, b"x")),
            Err(p("reserved bits set"))
        );
        assert_eq!(
            decode_one(&masked(0x81 | 0x20, b"x")),
            Err(p("reserved bits set"))
        );
        assert_eq!(
            decode_one(&masked(0x81 | 0x10, b"x")),
            Err(p("reserved bits set"))
        );
        for op in (3..=7).chain(11..=15) {
            assert_eq!(
                decode_one(&masked(0x80 | op, b"x")),
                Err(p("unknown opcode")),
                "{op}"
            );
            // Known from the first byte alone.
            assert_eq!(decode_one(&[0x80 | op]), Err(p("unknown opcode")), "{op}");
        }
        assert_eq!(
            decode_one(&frame(0x82, b"x", None)),
            Err(p("unmasked client frame"))
        );
        assert_eq!(decode_one(&[0x82, 0x01]), Err(p("unmasked client frame")));
        assert_eq!(
            decode_one(&masked(0x09, b"x")),
            Err(p("fragmented control frame"))
        );
        assert_eq!(
            decode_one(&masked(0x08, b"")),
            Err(p("fragmented control frame"))
        );
        assert_eq!(
            decode_one(&masked(0x89, &[0; 126])),
            Err(p("control frame payload over 125 bytes"))
        );
        assert_eq!(
            decode_one(&[0x8a, 0xfe]),
            Err(p("control frame payload over 125 bytes"))
        );
        assert_eq!(
            decode_all(&masked(0x89, &[1; 125]), MAX),
            Ok(vec![Message::Ping(vec![1; 125].into())])
        );
        assert_eq!(
            decode_one(&masked(0x80, b"x")),
            Err(p("continuation frame without a start"))
        );
        assert_eq!(
            decode_one(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(p("payload length with the high bit set"))
        );
    }

    #[test]
    fn new_data_frame_inside_fragmented_message() {
        let mut raw = masked(0x01, b"a");
        raw.extend(masked(0x81, b"b"));
        assert_eq!(
            decode_all(&raw, MAX),
            Err(WsError::Protocol(
                "new data frame inside a fragmented message"
            ))
        );
        let mut raw = masked(0x02, b"a");
        raw.extend(masked(0x02, b"b"));
        assert_eq!(
            decode_all(&raw, MAX),
            Err(WsError::Protocol(
                "new data frame inside a fragmented message"
            ))
        );
    }

    #[test]
    fn invalid_utf8() {
        assert_eq!(
            decode_one(&masked(0x81, &[0xff])),
            Err(WsError::InvalidUtf8)
        );
        assert_eq!(
            decode_one(&masked(0x81, &[0xe2, 0x82])),
            Err(WsError::InvalidUtf8)
        );
        // Surrogate code point (U+D800 encoded) is invalid.
        assert_eq!(
            decode_one(&masked(0x81, &[0xed, 0xa0, 0x80])),
            Err(WsError::InvalidUtf8)
        );
        // Binary is never checked.
        assert_eq!(
            decode_one(&masked(0x82, &[0xff])),
            Ok(Some(Message::Binary(vec![0xff].into())))
        );
        // Fragmented: a truncated sequence at the end of the message fails on the final frame.
        let mut raw = masked(0x01, b"ok");
        raw.extend(masked(0x80, &[0xe2, 0x82]));
        assert_eq!(decode_all(&raw, MAX), Err(WsError::InvalidUtf8));
        // Fail fast: the first fragment is already hopeless, no need for the rest.
        assert_eq!(
            decode_one(&masked(0x01, &[b'a', 0xc0, b'b'])),
            Err(WsError::InvalidUtf8)
        );
        let mut raw = masked(0x01, &[0xe2]);
        raw.extend(masked(0x00, &[0x28]));
        assert_eq!(decode_all(&raw, MAX), Err(WsError::InvalidUtf8));
    }

    #[test]
    fn close_payload_rules() {
        let close = |p: &[u8]| decode_one(&masked(0x88, p));
        assert_eq!(close(&[]), Ok(Some(Message::Close(None))));
        assert_eq!(
            close(&[0x03]),
            Err(WsError::Protocol("close payload of one byte"))
        );
        assert_eq!(
            close(&[0x03, 0xe8]),
            Ok(Some(Message::Close(Some((1000, String::new())))))
        );
        assert_eq!(
            close(&[0x0f, 0xa0, b'x']),
            Ok(Some(Message::Close(Some((4000, "x".into())))))
        );
        for ok in [1000u16, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            let got = close(&ok.to_be_bytes());
            assert_eq!(
                got,
                Ok(Some(Message::Close(Some((ok, String::new()))))),
                "{ok}"
            );
        }
        for bad in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
        ] {
            assert_eq!(
                close(&bad.to_be_bytes()),
                Err(WsError::Protocol("invalid close code")),
                "{bad}"
            );
        }
        assert_eq!(close(&[0x03, 0xe8, 0xff]), Err(WsError::InvalidUtf8));
    }

    #[test]
    fn too_big_from_header_alone() {
        // 64-bit length of 2^40 with no mask or payload bytes yet.
        let hdr = [0x82, 0xff, 0, 0, 0x01, 0, 0, 0, 0, 0];
        assert_eq!(decode_one(&hdr), Err(WsError::TooBig));
        // 16-bit length 200 over a 100-byte limit, only the 4 header bytes present.
        let mut d = Decoder::new(100);
        assert_eq!(
            d.decode(&mut BytesMut::from(&[0x81, 0xfe, 0x00, 0xc8][..])),
            Err(WsError::TooBig)
        );
        // 7-bit length.
        let mut d = Decoder::new(100);
        assert_eq!(
            d.decode(&mut BytesMut::from(&[0x82, 0xe5][..])),
            Err(WsError::TooBig)
        );
        // Exactly at the limit is fine.
        assert_eq!(
            decode_all(&masked(0x82, &[0; 100]), 100),
            Ok(vec![Message::Binary(vec![0; 100].into())])
        );
    }

    #[test]
    fn too_big_across_fragments() {
        let mut raw = masked(0x01, &[b'a'; 60]);
        raw.extend(masked(0x89, &[0; 100])); // control frames don't count
        raw.extend(masked(0x00, &[b'a'; 40]));
        raw.extend(masked(0x80, &[b'a'; 1]));
        let mut d = Decoder::new(100);
        let mut buf = BytesMut::from(&raw[..]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Message::Ping(vec![0; 100].into())))
        );
        assert_eq!(d.decode(&mut buf), Err(WsError::TooBig));
        // Only the offending frame's header is needed.
        let mut raw = masked(0x02, &[0; 60]);
        raw.extend_from_slice(&[0x80, 0xa9]); // continuation declaring 41 bytes
        let mut d = Decoder::new(100);
        assert_eq!(
            d.decode(&mut BytesMut::from(&raw[..])),
            Err(WsError::TooBig)
        );
    }

    /// The compressed payload of `data` (RFC 7692 7.2.1: no context, tail removed).
    fn compressed(data: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        assert!(super::super::deflate::deflate_frame(
            false,
            &[data],
            15,
            &mut frame
        ));
        frame[server_head_len(frame.len() - 2)..].to_vec()
    }

    fn decode_inflating(raw: &[u8], max: usize) -> Result<Vec<Message>, WsError> {
        let mut d = Decoder::with_inflate(max);
        let mut buf = BytesMut::from(raw);
        let mut out = Vec::new();
        while let Some(m) = d.decode(&mut buf)? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn compressed_messages_are_inflated() {
        let body = "4".to_string() + &"hello deflate ".repeat(200);
        let z = compressed(body.as_bytes());
        assert!(z.len() < body.len() / 4);
        // Whole, then fragmented (RSV1 on the first frame only), text then binary,
        // with a plain message and a ping between.
        let mut raw = masked(0xc1, &z);
        raw.extend(masked(0x41, &z[..10]));
        raw.extend(masked(0x89, b"p"));
        raw.extend(masked(0x00, &z[10..20]));
        raw.extend(masked(0x80, &z[20..]));
        raw.extend(masked(0x81, b"4plain"));
        raw.extend(masked(0xc2, &compressed(&[9u8; 3000])));
        assert_eq!(
            decode_inflating(&raw, MAX),
            Ok(vec![
                text(&body),
                Message::Ping(Bytes::from_static(b"p")),
                text(&body),
                text("4plain"),
                Message::Binary(vec![9u8; 3000].into()),
            ])
        );
    }

    #[test]
    fn rsv1_misuse_is_a_protocol_error() {
        let p = Err(WsError::Protocol("reserved bits set"));
        let z = compressed(b"abcabcabcabc");
        // Not negotiated.
        assert_eq!(decode_all(&masked(0xc1, &z), MAX), p.clone());
        // On a control frame.
        assert_eq!(decode_inflating(&masked(0xc9, b""), MAX), p.clone());
        assert_eq!(decode_inflating(&masked(0xc8, &[3, 232]), MAX), p.clone());
        // On a continuation frame.
        let mut raw = masked(0x41, &z[..4]);
        raw.extend(masked(0xc0, &z[4..]));
        assert_eq!(decode_inflating(&raw, MAX), p.clone());
        // RSV2, RSV3 stay reserved.
        assert_eq!(decode_inflating(&masked(0xa1, b"x"), MAX), p.clone());
        assert_eq!(decode_inflating(&masked(0x91, b"x"), MAX), p);
    }

    #[test]
    fn inflating_is_bounded_by_the_message_limit() {
        // 1 MB of zeros in about 1 KB: refused as too big (1009) at 100 KB.
        let z = compressed(&vec![0u8; 1 << 20]);
        assert!(z.len() < 2048, "{}", z.len());
        let err = decode_inflating(&masked(0xc2, &z), 100_000);
        assert_eq!(err, Err(WsError::TooBig));
        assert_eq!(WsError::TooBig.close_code(), 1009);
        // Fragmented the same.
        let mut raw = masked(0x42, &z[..100]);
        raw.extend(masked(0x80, &z[100..]));
        assert_eq!(decode_inflating(&raw, 100_000), Err(WsError::TooBig));
        // Within the limit, fine.
        let got = decode_inflating(&masked(0xc2, &z), 1 << 20).unwrap();
        assert_eq!(got, vec![Message::Binary(vec![0u8; 1 << 20].into())]);
    }

    #[test]
    fn bad_compressed_data_and_bad_inflated_text() {
        assert_eq!(
            decode_inflating(&masked(0xc1, &[0xff, 0xff, 0xff]), MAX),
            Err(WsError::InvalidDeflate)
        );
        assert_eq!(WsError::InvalidDeflate.close_code(), 1007);
        assert_eq!(
            decode_inflating(&masked(0xc1, &compressed(&[0xff; 200])), MAX),
            Err(WsError::InvalidUtf8)
        );
    }

    #[test]
    fn close_codes() {
        assert_eq!(WsError::Protocol("x").close_code(), 1002);
        assert_eq!(WsError::TooBig.close_code(), 1009);
        assert_eq!(WsError::InvalidUtf8.close_code(), 1007);
    }

    #[test]
    fn encode_frames() {
        let mut out = Vec::new();
        encode_text(b"4hi", &mut out);
        encode_binary(&[1, 2], &mut out);
        encode_pong(b"", &mut out);
        encode_close(1000, "", &mut out);
        encode_close(1009, "too big", &mut out);
        let mut want = vec![
            0x81, 3, b'4', b'h', b'i', 0x82, 2, 1, 2, 0x8a, 0, 0x88, 2, 0x03, 0xe8,
        ];
        want.extend_from_slice(&[0x88, 9, 0x03, 0xf1]);
        want.extend_from_slice(b"too big");
        assert_eq!(out, want);
    }

    #[test]
    fn encode_control_truncation() {
        let mut out = Vec::new();
        encode_pong(&[5; 200], &mut out);
        assert_eq!(out[..2], [0x8a, 125]);
        assert_eq!(out.len(), 127);
        // 62 two-byte chars = 124 bytes: cut to 61 chars (122 bytes) at a char boundary.
        out.clear();
        encode_close(1000, &"é".repeat(62), &mut out);
        assert_eq!(out[..4], [0x88, 124, 0x03, 0xe8]);
        assert_eq!(std::str::from_utf8(&out[4..]).unwrap(), "é".repeat(61));
    }

    #[test]
    fn encoded_frames_roundtrip_through_tungstenite_parser() {
        let mut out = Vec::new();
        encode_binary(&[3u8; 300], &mut out);
        let mut cur = Cursor::new(&out[..]);
        let (h, len) = FrameHeader::parse(&mut cur).unwrap().unwrap();
        assert_eq!(
            (h.is_final, h.opcode, h.mask, len),
            (true, OpCode::Data(Data::Binary), None, 300)
        );
    }

    #[test]
    fn unmask_matches_naive() {
        for n in 0..80 {
            let orig: Vec<u8> = (0..n as u8).collect();
            let (fast, ascii) = unmask_copy(&orig, MASK);
            let naive: Vec<u8> = orig
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ MASK[i % 4])
                .collect();
            assert_eq!(fast, naive, "{n}");
            assert_eq!(ascii, naive.is_ascii(), "{n}");
        }
    }

    /// The ASCII flag of the unmasking copy, for a high byte at every place
    /// of every length up to 80 (in a block, a word and the tail).
    #[test]
    fn unmask_copy_sees_a_high_byte_anywhere() {
        for n in 1..80 {
            for at in 0..n {
                let mut plain = vec![b'a'; n];
                plain[at] = 0x80 | (at as u8);
                let masked: Vec<u8> = plain
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ MASK[i % 4])
                    .collect();
                let (out, ascii) = unmask_copy(&masked, MASK);
                assert_eq!(out, plain, "{n} {at}");
                assert!(!ascii, "{n} {at}");
            }
            let masked: Vec<u8> = (0..n).map(|i| 0x7f ^ MASK[i % 4]).collect();
            assert_eq!(unmask_copy(&masked, MASK), (vec![0x7f; n], true), "{n}");
        }
    }

    /// Invalid UTF-8 in a text frame is refused wherever it sits, with
    /// ASCII around it, in every length the unmasking copy splits
    /// differently; valid multi-byte text is taken the same way.
    #[test]
    fn invalid_utf8_anywhere_in_a_text_frame() {
        for n in 1..40 {
            for at in 0..n {
                let mut bad = vec![b'x'; n];
                bad[at] = 0xff;
                assert_eq!(
                    decode_one(&masked(0x81, &bad)),
                    Err(WsError::InvalidUtf8),
                    "{n} {at}"
                );
                if at + 2 <= n {
                    let mut good = vec![b'x'; n];
                    good[at..at + 2].copy_from_slice("é".as_bytes());
                    let good = String::from_utf8(good).unwrap();
                    assert_eq!(
                        decode_one(&masked(0x81, good.as_bytes())),
                        Ok(Some(text(&good)))
                    );
                }
            }
        }
    }

    use crate::test_rng::Rng;

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut valid = masked(0x01, b"frag");
        valid.extend(masked(0x89, b"p"));
        valid.extend(masked(0x80, "é".as_bytes()));
        valid.extend(masked(0x82, &[0; 130]));
        valid.extend(masked(0x88, &[0x03, 0xe8]));
        for round in 0..20_000 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                (0..rng.next() % 200).map(|_| rng.next() as u8).collect()
            } else {
                let mut v = valid.clone();
                for _ in 0..1 + rng.next() % 3 {
                    let i = (rng.next() % v.len() as u64) as usize;
                    v[i] = rng.next() as u8;
                }
                v
            };
            let mut d = Decoder::new(64 + (rng.next() % 200) as usize);
            let mut buf = BytesMut::new();
            // Feed in random-sized pieces.
            let mut i = 0;
            'feed: while i < bytes.len() {
                let n = 1 + (rng.next() % 16) as usize;
                buf.extend_from_slice(&bytes[i..(i + n).min(bytes.len())]);
                i += n;
                loop {
                    match d.decode(&mut buf) {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
            }
        }
    }
}
