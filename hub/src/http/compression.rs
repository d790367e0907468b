//! HTTP response compression for long-polling answers (engine.io's
//! `httpCompression`), sans-IO: choosing a content coding from a request's
//! `Accept-Encoding`, and compressing a body in pieces.
//!
//! The negotiation is written here rather than taken from a crate: what
//! hub needs is one small rule over two codings (the choice engine.io makes
//! through Node's `accepts`), and the HTTP crates that parse the header
//! bring a whole header-map type with them.

use std::io::Write;

use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;

/// The default `threshold`: answers smaller than this go out as they are
/// (engine.io's default, `httpCompression: { threshold: 1024 }`).
pub const DEFAULT_THRESHOLD: usize = 1024;

/// A content coding hub can apply to a response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentCoding {
    /// `gzip` (RFC 1952).
    Gzip,
    /// `deflate`: the zlib format (RFC 1950), which is what HTTP's
    /// `deflate` means and what Node's `zlib.createDeflate` writes.
    Deflate,
}

impl ContentCoding {
    /// The token for `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentCoding::Gzip => "gzip",
            ContentCoding::Deflate => "deflate",
        }
    }
}

/// One element of `Accept-Encoding` that matched a coding.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Match {
    /// Its quality, in thousandths (the most precision RFC 9110 allows).
    q: u16,
    /// Named the coding (not through `*`).
    exact: bool,
    /// Its position in the header.
    position: usize,
}

impl Match {
    /// Whether `self` is a better match for one coding than `other`: an
    /// exact one before `*`, then the higher quality.
    fn beats(&self, other: &Match) -> bool {
        (self.exact, self.q) > (other.exact, other.q)
    }
}

/// The coding to compress an answer with, from the values of the request's
/// `Accept-Encoding` fields (every occurrence, in order), or `None` for
/// the body as it is.
///
/// As engine.io (through Node's `accepts`): of `gzip` and `deflate`, the
/// one with the higher quality; an element naming a coding overrides `*`
/// for it (`gzip;q=0, *` refuses gzip); `q=0` refuses; on equal quality,
/// the one named first in the header, then gzip. No header (or an empty
/// one) asks for no coding. One difference: a client that prefers
/// `identity` (names it with a higher quality than the best coding) gets
/// the body as it is, where engine.io would compress (RFC 9110, 12.5.3).
/// `x-gzip` counts as `gzip` (RFC 9110, 8.4.1.3). Elements that do not
/// parse (a bad `q`) are skipped.
pub fn negotiate<'a>(accept_encoding: impl IntoIterator<Item = &'a str>) -> Option<ContentCoding> {
    let mut gzip: Option<Match> = None;
    let mut deflate: Option<Match> = None;
    let mut identity: Option<u16> = None;
    let mut position = 0;
    for element in accept_encoding.into_iter().flat_map(|v| v.split(',')) {
        let Some((coding, q)) = parse_element(element) else {
            continue;
        };
        position += 1;
        let offer = |slot: &mut Option<Match>, exact: bool| {
            let candidate = Match { q, exact, position };
            let better = match slot {
                None => true,
                Some(best) => candidate.beats(best),
            };
            if better {
                *slot = Some(candidate);
            }
        };
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            offer(&mut gzip, true);
        } else if coding.eq_ignore_ascii_case("deflate") {
            offer(&mut deflate, true);
        } else if coding == "*" {
            offer(&mut gzip, false);
            offer(&mut deflate, false);
        } else if coding.eq_ignore_ascii_case("identity") {
            identity = Some(identity.map_or(q, |best| best.max(q)));
        }
    }
    let gzip = gzip.filter(|m| m.q > 0);
    let deflate = deflate.filter(|m| m.q > 0);
    let (coding, best) = match (gzip, deflate) {
        (None, None) => return None,
        (Some(g), None) => (ContentCoding::Gzip, g),
        (None, Some(d)) => (ContentCoding::Deflate, d),
        (Some(g), Some(d)) => {
            // Higher quality, then exact, then named first; gzip on a full tie.
            let key = |m: Match| (m.q, m.exact, std::cmp::Reverse(m.position));
            if key(d) > key(g) {
                (ContentCoding::Deflate, d)
            } else {
                (ContentCoding::Gzip, g)
            }
        }
    };
    if identity.is_some_and(|q| q > best.q) {
        return None;
    }
    Some(coding)
}

/// `coding[;q=value][;other=param]`: the coding and its quality in
/// thousandths (1000 when absent), or `None` for an empty or bad element.
fn parse_element(element: &str) -> Option<(&str, u16)> {
    let mut parts = element.split(';');
    let coding = parts.next()?.trim();
    if coding.is_empty() {
        return None;
    }
    let mut q = 1000;
    for param in parts {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("q") {
            q = parse_qvalue(value.trim())?;
        }
    }
    Some((coding, q))
}

/// RFC 9110's `qvalue`: `0[.ddd]` or `1[.000]`, in thousandths.
fn parse_qvalue(value: &str) -> Option<u16> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths = 0u16;
    for (i, digit) in fraction.bytes().enumerate() {
        thousandths += u16::from(digit - b'0') * [100, 10, 1][i];
    }
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// A body being compressed, fed in pieces so that a large one can be
/// compressed between other work (see `shard::http_compression`).
///
/// The level is zlib's default (6), as Node's `zlib.createGzip()` that
/// engine.io calls. A compressor holds zlib's state, about 270 KB, until
/// it finishes.
pub struct BodyCompressor {
    encoder: Encoder,
}

enum Encoder {
    Gzip(GzEncoder<Vec<u8>>),
    Deflate(ZlibEncoder<Vec<u8>>),
}

impl BodyCompressor {
    /// Start a body in `coding`; `size_hint` is the uncompressed length,
    /// used to size the output.
    pub fn new(coding: ContentCoding, size_hint: usize) -> BodyCompressor {
        // Text polling payloads (JSON) usually shrink several times; start
        // with a quarter and let the vector grow if they do not.
        let out = Vec::with_capacity(size_hint / 4 + 64);
        let level = Compression::default();
        let encoder = match coding {
            ContentCoding::Gzip => Encoder::Gzip(GzEncoder::new(out, level)),
            ContentCoding::Deflate => Encoder::Deflate(ZlibEncoder::new(out, level)),
        };
        BodyCompressor { encoder }
    }

    /// Compress the next piece of the body.
    pub fn feed(&mut self, piece: &[u8]) {
        // Writing into a `Vec` cannot fail, nor can zlib on valid state.
        let result = match &mut self.encoder {
            Encoder::Gzip(e) => e.write_all(piece),
            Encoder::Deflate(e) => e.write_all(piece),
        };
        result.expect("compressing into memory does not fail");
    }

    /// The compressed body.
    #[must_use]
    pub fn finish(self) -> Vec<u8> {
        let result = match self.encoder {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Deflate(e) => e.finish(),
        };
        result.expect("compressing into memory does not fail")
    }
}

/// Compress a whole body at once.
#[must_use]
pub fn compress(coding: ContentCoding, body: &[u8]) -> Vec<u8> {
    let mut compressor = BodyCompressor::new(coding, body.len());
    compressor.feed(body);
    compressor.finish()
}

#[cfg(test)]
mod tests;
