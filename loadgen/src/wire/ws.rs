//! WebSocket frames as a client writes and reads them (RFC 6455).

/// An opcode of interest; anything else is a protocol error for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

/// One frame found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// RSV1: a message compressed with permessage-deflate (on its first frame).
    pub rsv1: bool,
    pub opcode: Opcode,
    /// Where the payload lies in the buffer.
    pub payload: std::ops::Range<usize>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("the server sent a masked frame")]
    Masked,
    #[error("unknown WebSocket opcode {0:#x}")]
    Opcode(u8),
    #[error("a frame of {0} bytes is over the limit")]
    TooLong(u64),
}

/// Frames longer than this end the connection: no scenario receives them.
pub const MAX_FRAME: u64 = 16 << 20;

/// Parses the frame at the start of `buf`; `Ok(None)` until it is whole.
pub fn decode(buf: &[u8]) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    let rsv1 = buf[0] & 0x40 != 0;
    let opcode = match buf[0] & 0x0f {
        0 => Opcode::Continuation,
        1 => Opcode::Text,
        2 => Opcode::Binary,
        8 => Opcode::Close,
        9 => Opcode::Ping,
        10 => Opcode::Pong,
        other => return Err(FrameError::Opcode(other)),
    };
    if buf[1] & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (len, header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()), 10),
        126 | 127 => return Ok(None),
        n => (n as u64, 2),
    };
    if len > MAX_FRAME {
        return Err(FrameError::TooLong(len));
    }
    let end = header + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(Frame {
        fin,
        rsv1,
        opcode,
        payload: header..end,
    }))
}

/// Appends a client frame. The mask key is zero, which RFC 6455 allows: the
/// key exists to defeat cache poisoning by browser scripts, and a zero key
/// spares the load generator a pass over every payload.
pub fn encode(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
}

/// Inflate one message compressed with permessage-deflate whose sender kept
/// no context (what loadgen offers), into `out`; false if it does not inflate.
pub fn inflate(compressed: &[u8], out: &mut Vec<u8>) -> bool {
    use flate2::{Decompress, FlushDecompress, Status};
    thread_local! {
        static INFLATER: std::cell::RefCell<Decompress> =
            std::cell::RefCell::new(Decompress::new(false));
    }
    INFLATER.with(|inflater| {
        let mut inflater = inflater.borrow_mut();
        inflater.reset(false);
        out.clear();
        for part in [compressed, &[0, 0, 0xff, 0xff][..]] {
            let mut used = 0;
            loop {
                if out.capacity() - out.len() < 1024 {
                    out.reserve(out.capacity().max(4096));
                }
                let before = inflater.total_in();
                match inflater.decompress_vec(&part[used..], out, FlushDecompress::Sync) {
                    Ok(Status::StreamEnd) => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
                used += (inflater.total_in() - before) as usize;
                if used == part.len() && out.len() < out.capacity() {
                    break;
                }
                if out.len() as u64 > MAX_FRAME {
                    return false;
                }
            }
        }
        true
    })
}

pub const TEXT: u8 = 1;
pub const CLOSE: u8 = 8;
pub const PONG: u8 = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_masked_frames_of_each_length_form() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let payload = vec![b'a'; len];
            let mut out = Vec::new();
            encode(TEXT, &payload, &mut out);
            assert_eq!(out[0], 0x81);
            assert_ne!(out[1] & 0x80, 0, "client frames are masked");
            let header = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            assert_eq!(out.len(), header + 4 + len);
            assert!(out.ends_with(&payload));
        }
    }

    #[test]
    fn inflates_compressed_messages() {
        use flate2::{Compress, Compression, FlushCompress};
        let text =
            b"42[\"m\",\"{id:1,name:user1},{id:2,name:user2},{id:3,name:user3}\"]".repeat(50);
        let mut z = Vec::with_capacity(text.len() + 64);
        Compress::new(Compression::default(), false)
            .compress_vec(&text, &mut z, FlushCompress::Sync)
            .unwrap();
        assert!(z.ends_with(&[0, 0, 0xff, 0xff]));
        z.truncate(z.len() - 4);
        let mut out = Vec::new();
        for _ in 0..2 {
            assert!(inflate(&z, &mut out));
            assert_eq!(out, text);
        }
        assert!(!inflate(&[0xff, 0xff, 0xff], &mut out));
        let frame = decode(&[0xc1, 1, 0]).unwrap().unwrap();
        assert!(frame.rsv1 && frame.fin);
    }

    #[test]
    fn decodes_server_frames() {
        assert_eq!(decode(&[0x81]).unwrap(), None);
        let frame = decode(&[0x81, 2, b'4', b'2', 0xff]).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame {
                fin: true,
                rsv1: false,
                opcode: Opcode::Text,
                payload: 2..4
            }
        );
        let mut long = vec![0x82, 126, 1, 0];
        assert_eq!(decode(&long).unwrap(), None);
        long.extend(vec![0; 256]);
        assert_eq!(decode(&long).unwrap().unwrap().payload, 4..260);
        let frag = decode(&[0x01, 0]).unwrap().unwrap();
        assert!(!frag.fin);
        assert_eq!(decode(&[0x81, 0x80, 0, 0, 0, 0]), Err(FrameError::Masked));
        assert_eq!(decode(&[0x83, 0]), Err(FrameError::Opcode(3)));
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert!(matches!(decode(&huge), Err(FrameError::TooLong(_))));
    }
}
