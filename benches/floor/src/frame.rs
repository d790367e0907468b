//! WebSocket framing (RFC 6455), only what the floor needs: parsing masked
//! client frames in place and building unmasked server frames.

use bytes::Bytes;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// One parsed frame; its payload is `buf[start..end]` of the parsed buffer,
/// already unmasked.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Clients must mask every frame.
    Unmasked,
    /// Reserved bits set or an unknown opcode: no extension was negotiated.
    Reserved,
    /// A control frame that is fragmented or longer than 125 bytes.
    BadControl,
    TooBig,
}

/// Parse the frame at the start of `buf`, unmasking its payload in place.
/// `Ok(None)`: not all of it has arrived yet. On success, also returns the
/// frame's whole length.
pub fn parse(buf: &mut [u8], max_payload: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    if b0 & 0x70 != 0 || !matches!(opcode, 0x0..=0x2 | 0x8..=0xA) {
        return Err(FrameError::Reserved);
    }
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (len, mut at) = match b1 & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()), 10),
        126 | 127 => return Ok(None),
        n => (n as u64, 2),
    };
    if opcode >= OP_CLOSE && (!fin || len > 125) {
        return Err(FrameError::BadControl);
    }
    if len > max_payload as u64 {
        return Err(FrameError::TooBig);
    }
    let len = len as usize;
    if buf.len() < at + 4 + len {
        return Ok(None);
    }
    let key: [u8; 4] = buf[at..at + 4].try_into().unwrap();
    at += 4;
    unmask(&mut buf[at..at + len], key);
    let frame = Frame {
        fin,
        opcode,
        start: at,
        end: at + len,
    };
    Ok(Some((frame, at + len)))
}

/// XOR with the masking key, eight bytes at a time.
fn unmask(payload: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes((&*chunk).try_into().unwrap()) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

fn header(opcode: u8, len: usize, out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= 0xffff {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// One unmasked, unfragmented frame whose payload is `parts` concatenated:
/// a single allocation, shared by every recipient afterwards.
pub fn build(opcode: u8, parts: &[&[u8]]) -> Bytes {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(10 + len);
    header(opcode, len, &mut out);
    for part in parts {
        out.extend_from_slice(part);
    }
    Bytes::from(out)
}

pub fn text(parts: &[&[u8]]) -> Bytes {
    build(OP_TEXT, parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(b0: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut out = vec![b0];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        out
    }

    #[test]
    fn parses_and_unmasks_a_text_frame() {
        let mut buf = masked(0x81, b"42[\"echo\",1]", [1, 2, 3, 4]);
        let total = buf.len();
        let (frame, used) = parse(&mut buf, 1000).unwrap().unwrap();
        assert_eq!(used, total);
        assert!(frame.fin);
        assert_eq!(frame.opcode, OP_TEXT);
        assert_eq!(&buf[frame.start..frame.end], b"42[\"echo\",1]");
    }

    #[test]
    fn extended_lengths_and_partial_input() {
        for len in [125usize, 126, 300, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut buf = masked(0x81, &payload, [9, 8, 7, 6]);
            for cut in [1, 2, 3, buf.len() - 1] {
                assert_eq!(parse(&mut buf[..cut].to_vec(), 100_000), Ok(None));
            }
            let (frame, used) = parse(&mut buf, 100_000).unwrap().unwrap();
            assert_eq!(used, buf.len());
            assert_eq!(&buf[frame.start..frame.end], &payload[..]);
        }
    }

    #[test]
    fn two_frames_back_to_back() {
        let mut buf = masked(0x01, b"4", [1, 1, 1, 1]);
        buf.extend(masked(0x80, b"0", [2, 2, 2, 2]));
        let (first, used) = parse(&mut buf, 10).unwrap().unwrap();
        assert!(!first.fin);
        let (second, _) = parse(&mut buf[used..], 10).unwrap().unwrap();
        assert_eq!(second.opcode, OP_CONTINUATION);
        assert_eq!(&buf[used + second.start..used + second.end], b"0");
    }

    #[test]
    fn refuses_bad_frames() {
        assert_eq!(
            parse(&mut [0x81, 0x01, b'x'], 10),
            Err(FrameError::Unmasked)
        );
        assert_eq!(
            parse(&mut masked(0xC1, b"x", [0; 4]), 10),
            Err(FrameError::Reserved)
        );
        assert_eq!(
            parse(&mut masked(0x83, b"x", [0; 4]), 10),
            Err(FrameError::Reserved)
        );
        assert_eq!(
            parse(&mut masked(0x09, b"x", [0; 4]), 10),
            Err(FrameError::BadControl)
        );
        assert_eq!(
            parse(&mut masked(0x89, &[0; 126], [0; 4]), 1000),
            Err(FrameError::BadControl)
        );
        assert_eq!(
            parse(&mut masked(0x81, &[0; 11], [0; 4]), 10),
            Err(FrameError::TooBig)
        );
    }

    #[test]
    fn builds_headers() {
        assert_eq!(&text(&[b"4", b"2"])[..], b"\x81\x0242");
        let mid = text(&[&[b'x'; 200]]);
        assert_eq!(&mid[..4], &[0x81, 126, 0, 200]);
        let big = build(0x2, &[&vec![0; 70_000]]);
        assert_eq!(&big[..2], &[0x82, 127]);
        assert_eq!(u64::from_be_bytes(big[2..10].try_into().unwrap()), 70_000);
    }
}
