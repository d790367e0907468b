//! Compressing a long-polling answer on the shard that writes it (the one
//! that accepted the request, which holds its `Accept-Encoding`; for a GET
//! forwarded to another shard, the owner encodes the packets and this
//! shard compresses them). No session is borrowed here.

use bytes::Bytes;

use super::polling::EngineResponse;
use crate::http::compression::{BodyCompressor, ContentCoding};

/// Input compressed between two yields to the other tasks of the shard.
/// zlib's default level takes well under a millisecond for this much text;
/// a GET's answer holds up to a session's byte budget (8 MiB by default),
/// about 100 ms of compression in one piece.
const PIECE: usize = 64 * 1024;

/// What became of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compressed {
    /// Not a candidate (compression off, an answer without packets, under
    /// the threshold, or only packets sent with `compress: false`): the
    /// client's `Accept-Encoding` played no part.
    NotCandidate,
    /// A candidate sent as it is: the client accepts neither coding, or
    /// the coded body would not have been smaller.
    Plain,
    /// Sent in this coding.
    Coded(ContentCoding),
}

impl Compressed {
    /// Whether the answer depends on the request's `Accept-Encoding` (for `Vary`).
    pub(crate) fn varies(self) -> bool {
        self != Compressed::NotCandidate
    }
}

/// Compress `answer`'s body in place when it qualifies: compression is on
/// (`threshold`), the answer carries compressible packets, its body has at
/// least `threshold` bytes, and the client accepts a coding (`accepted`,
/// from [`crate::http::compression::negotiate`]), as engine.io's polling
/// transport decides. A large body is compressed a piece at a time,
/// yielding between pieces, so other connections of the shard are served
/// meanwhile. A body that does not shrink is sent as it is (engine.io
/// would send it coded).
pub(crate) async fn compress_answer(
    answer: &mut EngineResponse,
    threshold: Option<usize>,
    accepted: Option<ContentCoding>,
) -> Compressed {
    let Some(threshold) = threshold else {
        return Compressed::NotCandidate;
    };
    if !answer.compressible || answer.status != 200 || answer.body.len() < threshold {
        return Compressed::NotCandidate;
    }
    let Some(coding) = accepted else {
        return Compressed::Plain;
    };
    let body = &answer.body;
    let mut compressor = BodyCompressor::new(coding, body.len());
    let mut pieces = body.chunks(PIECE).peekable();
    while let Some(piece) = pieces.next() {
        compressor.feed(piece);
        if pieces.peek().is_some() {
            futures_lite::future::yield_now().await;
        }
    }
    let coded = compressor.finish();
    if coded.len() >= body.len() {
        return Compressed::Plain;
    }
    let saved = (body.len() - coded.len()) as u64;
    crate::metrics::with(|m| {
        m.polling_compressed.inc();
        m.polling_compression_saved_bytes.inc_by(saved);
    });
    answer.body = Bytes::from(coded);
    Compressed::Coded(coding)
}
