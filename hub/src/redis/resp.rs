//! RESP2 over a glommio stream, with `redis-protocol` as the codec: the
//! commands hub sends and the replies and pub/sub pushes it reads.

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::encode::extend_encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, BytesFrame};

/// Most bytes one reply may hold before the connection is dropped: a
/// message is at most Redis's `proto-max-bulk-len` (512 MB); hub refuses
/// far less, as no Socket.IO packet it takes is that large.
pub(crate) const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Append a command (an array of bulk strings) to `out`.
pub(crate) fn command(out: &mut BytesMut, parts: &[&[u8]]) {
    let frames: smallvec::SmallVec<[BorrowedFrame<'_>; 4]> =
        parts.iter().map(|p| BorrowedFrame::BulkString(p)).collect();
    extend_encode_borrowed(out, &BorrowedFrame::Array(&frames), false)
        .expect("an array of bulk strings always encodes");
}

/// Why a connection to Redis failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RespError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("bad reply: {0}")]
    Protocol(String),
    #[error("a reply of more than {MAX_FRAME_BYTES} bytes")]
    TooLarge,
    #[error("Redis said: {0}")]
    Server(String),
}

/// One connection: a buffered reader of frames and a writer of commands.
pub(crate) struct RespConn {
    stream: TcpStream,
    read: BytesMut,
    /// Where a read lands before it joins `read`: a read future dropped
    /// half way (the subscriber waits for reads and for other work at
    /// once) leaves `read` whole.
    scratch: Box<[u8]>,
}

impl RespConn {
    pub fn new(stream: TcpStream) -> RespConn {
        RespConn {
            stream,
            read: BytesMut::with_capacity(16 * 1024),
            scratch: vec![0; 16 * 1024].into_boxed_slice(),
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), RespError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// The next whole frame.
    pub async fn read_frame(&mut self) -> Result<BytesFrame, RespError> {
        loop {
            if let Some(frame) = self.try_frame()? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    /// A frame already read, if there is a whole one.
    pub fn try_frame(&mut self) -> Result<Option<BytesFrame>, RespError> {
        match decode_bytes_mut(&mut self.read) {
            Ok(Some((frame, _, _))) => Ok(Some(frame)),
            Ok(None) if self.read.len() > MAX_FRAME_BYTES => Err(RespError::TooLarge),
            Ok(None) => Ok(None),
            Err(e) => Err(RespError::Protocol(e.to_string())),
        }
    }

    /// Read more bytes from the server. Safe to drop before it finishes:
    /// nothing is lost.
    pub async fn fill(&mut self) -> Result<(), RespError> {
        let n = self.stream.read(&mut self.scratch).await?;
        if n == 0 {
            return Err(RespError::Closed);
        }
        self.read.extend_from_slice(&self.scratch[..n]);
        Ok(())
    }

    /// Send one command and read its reply (before the connection is
    /// shared: `AUTH`, `SELECT`).
    pub async fn call(&mut self, parts: &[&[u8]]) -> Result<BytesFrame, RespError> {
        let mut out = BytesMut::new();
        command(&mut out, parts);
        self.write(&out).await?;
        match self.read_frame().await? {
            BytesFrame::Error(e) => Err(RespError::Server(e.to_string())),
            frame => Ok(frame),
        }
    }
}

/// A message pushed on a subscribed connection.
#[derive(Debug, PartialEq)]
pub(crate) enum Push {
    /// `message` (SUBSCRIBE), `pmessage` (PSUBSCRIBE) or `smessage`
    /// (SSUBSCRIBE): the channel and the payload.
    Message { channel: Bytes, payload: Bytes },
    /// A subscription's confirmation (`subscribe`, `psubscribe`, `ssubscribe`).
    Subscribed,
    /// An unsubscription's confirmation, or anything else.
    Other,
}

pub(crate) fn push_of(frame: BytesFrame) -> Result<Push, RespError> {
    let BytesFrame::Array(mut parts) = frame else {
        return match frame {
            BytesFrame::Error(e) => Err(RespError::Server(e.to_string())),
            _ => Ok(Push::Other),
        };
    };
    let kind = match parts.first() {
        Some(BytesFrame::BulkString(k) | BytesFrame::SimpleString(k)) => k.clone(),
        _ => return Ok(Push::Other),
    };
    let bulk = |f: BytesFrame| match f {
        BytesFrame::BulkString(b) | BytesFrame::SimpleString(b) => Some(b),
        _ => None,
    };
    let (channel, payload) = match (&kind[..], parts.len()) {
        (b"message" | b"smessage", 3) => {
            let payload = parts.pop().and_then(bulk);
            (parts.pop().and_then(bulk), payload)
        }
        (b"pmessage", 4) => {
            let payload = parts.pop().and_then(bulk);
            (parts.pop().and_then(bulk), payload)
        }
        (b"subscribe" | b"psubscribe" | b"ssubscribe", _) => return Ok(Push::Subscribed),
        _ => return Ok(Push::Other),
    };
    match (channel, payload) {
        (Some(channel), Some(payload)) => Ok(Push::Message { channel, payload }),
        _ => Err(RespError::Protocol(
            "a message with non-string parts".into(),
        )),
    }
}

/// An integer reply (`PUBLISH`'s count), or the count of `PUBSUB NUMSUB`'s
/// one channel.
pub(crate) fn count_of(frame: &BytesFrame) -> Option<i64> {
    match frame {
        BytesFrame::Integer(n) => Some(*n),
        BytesFrame::Array(parts) => match parts.get(1) {
            Some(BytesFrame::Integer(n)) => Some(*n),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_protocol::resp2::decode::decode_bytes_mut;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = BytesMut::new();
        command(&mut out, &[b"PUBLISH", b"socket.io#/#", b"\x93\x00"]);
        assert_eq!(
            &out[..],
            b"*3\r\n$7\r\nPUBLISH\r\n$12\r\nsocket.io#/#\r\n$2\r\n\x93\x00\r\n"
        );
    }

    fn frame(bytes: &[u8]) -> BytesFrame {
        let mut buf = BytesMut::from(bytes);
        decode_bytes_mut(&mut buf).unwrap().unwrap().0
    }

    #[test]
    fn pushes_are_told_apart() {
        assert_eq!(
            push_of(frame(
                b"*4\r\n$8\r\npmessage\r\n$3\r\np#*\r\n$3\r\np#x\r\n$2\r\nhi\r\n"
            ))
            .unwrap(),
            Push::Message {
                channel: Bytes::from_static(b"p#x"),
                payload: Bytes::from_static(b"hi")
            }
        );
        assert_eq!(
            push_of(frame(b"*3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$0\r\n\r\n")).unwrap(),
            Push::Message {
                channel: Bytes::from_static(b"c"),
                payload: Bytes::new()
            }
        );
        assert_eq!(
            push_of(frame(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n")).unwrap(),
            Push::Subscribed
        );
        assert_eq!(
            push_of(frame(b"*3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0\r\n")).unwrap(),
            Push::Other
        );
        assert!(push_of(frame(b"*3\r\n$7\r\nmessage\r\n:1\r\n$1\r\nx\r\n")).is_err());
        assert_eq!(count_of(&frame(b"*2\r\n$1\r\nc\r\n:3\r\n")), Some(3));
    }
}
