//! permessage-deflate (RFC 7692), sans-IO: the negotiation of the
//! `Sec-WebSocket-Extensions` offers, and the inflate and deflate of one
//! message.
//!
//! What hub agrees to, whatever the client offers: `server_no_context_takeover`
//! (7.1.1.1 lets a server add it unoffered) so that a compressed message does
//! not depend on the connection it goes to, and one compressed frame serves
//! every recipient of a broadcast; and `client_no_context_takeover` (7.1.1.2
//! lets a server add it unoffered too) so that a client's message does not
//! depend on its earlier ones, and one inflater per shard, reset for each
//! message, serves every connection: a connection holds no zlib state
//! (tens of KB each) between messages.
//!
//! The compressor and the inflater are per thread (per shard): they are
//! scratch state, used whole within one call, never across an await.
//!
//! The offers' grammar (tokens, quoted strings, parameters; RFC 7692 5 and
//! RFC 6455 9.1) is parsed here by hand: `tungstenite`, which hub uses for
//! the rest of the handshake, keeps `Sec-WebSocket-Extensions` as raw
//! bytes, and flate2 does only the compression.

use std::borrow::Cow;
use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension's name in `Sec-WebSocket-Extensions`.
const NAME: &str = "permessage-deflate";

/// The LZ77 window hub inflates with: the largest, so it reads anything a
/// client may send whatever `client_max_window_bits` it uses.
const INFLATE_WINDOW_BITS: u8 = 15;

/// What hub agreed with one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The window hub compresses with: 15, or the client's
    /// `server_max_window_bits` (9 to 15).
    pub server_window_bits: u8,
    /// The client asked for `server_max_window_bits`: the answer repeats it
    /// (7.1.2.1: a server that accepts it must include it).
    window_bits_asked: bool,
}

impl Negotiated {
    /// The default agreement: a 15-bit window on both sides.
    pub const DEFAULT: Negotiated = Negotiated {
        server_window_bits: 15,
        window_bits_asked: false,
    };

    /// Append the `Sec-WebSocket-Extensions` header line of the 101 answer.
    pub fn write_header(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(
            b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        );
        if self.window_bits_asked {
            out.extend_from_slice(b"; server_max_window_bits=");
            out.extend_from_slice(self.server_window_bits.to_string().as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// The first `permessage-deflate` offer of the `Sec-WebSocket-Extensions`
/// header values that hub can honour (RFC 7692 5: offers are in the
/// client's order of preference), or `None`: no offer, or none acceptable,
/// or a header that does not parse (then nothing is negotiated rather than
/// the handshake refused: the client still gets a WebSocket).
///
/// Nothing is allocated for an ordinary offer (a value with escapes excepted).
pub fn negotiate<'a>(values: impl Iterator<Item = &'a str>) -> Option<Negotiated> {
    let mut agreed = None;
    for value in values {
        let mut rest = value;
        loop {
            // The whole header is read, so that a malformed one agrees nothing.
            let offer = next_offer(&mut rest)?;
            if agreed.is_none() && offer.name.eq_ignore_ascii_case(NAME) {
                agreed = accept_offer(&offer.params);
            }
            if rest.is_empty() {
                break;
            }
        }
    }
    agreed
}

/// A parameter's name and value (unquoted: borrowed unless it had escapes).
type Param<'a> = (&'a str, Option<Cow<'a, str>>);

/// One offered extension: its name and parameters.
#[derive(Debug, PartialEq, Eq)]
struct Offer<'a> {
    name: &'a str,
    params: smallvec::SmallVec<[Param<'a>; 4]>,
}

/// Accept one offer's parameters or decline it (RFC 7692 7.1): a parameter
/// hub does not know, one given twice, or one with an invalid value
/// declines the offer.
fn accept_offer(params: &[Param<'_>]) -> Option<Negotiated> {
    let mut agreed = Negotiated::DEFAULT;
    let mut seen = [false; 4];
    for (name, value) in params {
        let index = [
            "server_no_context_takeover",
            "client_no_context_takeover",
            "server_max_window_bits",
            "client_max_window_bits",
        ]
        .iter()
        .position(|known| name.eq_ignore_ascii_case(known))?;
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
        match (index, value.as_deref()) {
            // The two no_context_takeover parameters take no value; hub
            // answers with both anyway.
            (0 | 1, None) => {}
            (0 | 1, Some(_)) => return None,
            (2, Some(value)) => {
                let bits = window_bits(value)?;
                // zlib cannot make a raw deflate stream with a 256-byte
                // window (it raises 8 to 9), so the offer cannot be honoured.
                if bits == 8 {
                    return None;
                }
                agreed.server_window_bits = bits;
                agreed.window_bits_asked = true;
            }
            (2, None) => return None,
            // The client says it can limit its window, or limits it: hub
            // inflates with the largest window, so any is fine, and the
            // answer need not mention it (7.1.2.2).
            (3, None) => {}
            (3, Some(value)) => {
                window_bits(value)?;
            }
            _ => unreachable!("four known parameters"),
        }
    }
    Some(agreed)
}

/// A window-bits value: a decimal integer from 8 to 15, no leading zero.
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || value.len() > 2 || value.starts_with('0') {
        return None;
    }
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (8..=15).contains(&bits).then_some(bits)
}

/// Parse the extension at the front of `rest`, a `Sec-WebSocket-Extensions`
/// value (RFC 6455 9.1: `extension *( "," extension )`,
/// `extension = token *( ";" param )`,
/// `param = token [ "=" ( token / quoted-string ) ]`), and move `rest` past
/// it and its comma; `None` if it does not follow the grammar, or if a
/// comma is followed by nothing. Written by hand: it is a few lines, and no
/// well-kept crate parses this header alone.
fn next_offer<'a>(rest: &mut &'a str) -> Option<Offer<'a>> {
    let (name, after) = token(skip_ows(rest))?;
    let mut offer = Offer {
        name,
        params: smallvec::SmallVec::new(),
    };
    let mut at = skip_ows(after);
    while let Some(after) = at.strip_prefix(';') {
        let (param, after) = token(skip_ows(after))?;
        at = skip_ows(after);
        let mut param_value = None;
        if let Some(after) = at.strip_prefix('=') {
            let after = skip_ows(after);
            let (v, after) = if after.starts_with('"') {
                quoted(after)?
            } else {
                let (v, after) = token(after)?;
                (Cow::Borrowed(v), after)
            };
            param_value = Some(v);
            at = skip_ows(after);
        }
        offer.params.push((param, param_value));
    }
    match at.strip_prefix(',') {
        Some(after) if !skip_ows(after).is_empty() => *rest = after,
        None if at.is_empty() => *rest = at,
        _ => return None,
    }
    Some(offer)
}

fn skip_ows(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

/// A token (RFC 7230 tchar+) at the start of `s`, and what follows it.
fn token(s: &str) -> Option<(&str, &str)> {
    let end = s.bytes().position(|b| !is_tchar(b)).unwrap_or(s.len());
    (end > 0).then(|| s.split_at(end))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A quoted-string at the start of `s` (which starts with `"`), unescaped,
/// and what follows it. RFC 6455 9.1: its unescaped value must be a token.
fn quoted(s: &str) -> Option<(Cow<'_, str>, &str)> {
    let body = &s[1..];
    let end = body.find(['"', '\\'])?;
    let (value, after) = if body.as_bytes()[end] == b'"' {
        (Cow::Borrowed(&body[..end]), &body[end + 1..])
    } else {
        // Escapes: unescaped into a string of its own.
        let mut value = String::new();
        let mut chars = body.char_indices();
        loop {
            match chars.next()? {
                (i, '"') => break (Cow::Owned(value), &body[i + 1..]),
                (_, '\\') => value.push(chars.next()?.1),
                (_, c) => value.push(c),
            }
        }
    };
    let ok = !value.is_empty() && value.bytes().all(is_tchar);
    ok.then_some((value, after))
}

/// Why a compressed message could not be inflated.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates past the message limit (it was stopped there).
    #[error("inflated message over the limit")]
    TooBig,
    /// It is not a valid deflate stream.
    #[error("invalid compressed data")]
    Invalid,
}

/// The tail every message's compressed data had before the sender cut it
/// off (RFC 7692 7.2.1), put back before inflating (7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

thread_local! {
    /// The shard's inflater, reset before each message: with
    /// `client_no_context_takeover` no message depends on an earlier one.
    static INFLATER: RefCell<Decompress> =
        RefCell::new(Decompress::new_with_window_bits(false, INFLATE_WINDOW_BITS));
    /// The shard's compressors, by window bits (9 to 15), made on first use.
    static COMPRESSORS: RefCell<[Option<Box<Compress>>; 7]> = const { RefCell::new([None, None, None, None, None, None, None]) };
}

/// Inflate one whole message's compressed payload, stopping as soon as the
/// output would pass `limit` bytes: a small message cannot make the server
/// hold more than `limit + 1` bytes (no decompression bomb).
pub fn inflate(compressed: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    INFLATER.with(|inflater| {
        let mut inflater = inflater.borrow_mut();
        inflater.reset(false);
        let result = inflate_with(&mut inflater, compressed, limit);
        if result.is_err() {
            inflater.reset(false);
        }
        result
    })
}

fn inflate_with(
    inflater: &mut Decompress,
    compressed: &[u8],
    limit: usize,
) -> Result<Vec<u8>, InflateError> {
    let cap = limit.saturating_add(1);
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).max(64).min(cap));
    for part in [compressed, &TAIL[..]] {
        let mut used = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= cap {
                    return Err(InflateError::TooBig);
                }
                let more = out.len().max(4096).min(cap - out.len());
                out.reserve_exact(more);
            }
            let (in_before, out_before) = (inflater.total_in(), out.len());
            let status = inflater
                .decompress_vec(&part[used..], &mut out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Invalid)?;
            used += (inflater.total_in() - in_before) as usize;
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            if status == Status::StreamEnd {
                // A final block ended the stream: what follows is ignored.
                return Ok(out);
            }
            let progressed = inflater.total_in() != in_before || out.len() != out_before;
            if out.len() < out.capacity() && (used == part.len() || !progressed) {
                break;
            }
        }
    }
    Ok(out)
}

/// Compress one message whose payload is `parts` joined into one final
/// data frame with RSV1 set, appended to `out`, with a fresh window of
/// `window_bits` (9 to 15; `server_no_context_takeover`: the frame depends
/// on nothing but the payload). Returns false, appending nothing, when the
/// compressed payload would not be smaller: then the plain frame is better.
pub fn deflate_frame(text: bool, parts: &[&[u8]], window_bits: u8, out: &mut Vec<u8>) -> bool {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut payload = Vec::with_capacity(len + len / 16 + 64);
    COMPRESSORS.with(|compressors| {
        let mut compressors = compressors.borrow_mut();
        let slot = &mut compressors[(window_bits.clamp(9, 15) - 9) as usize];
        let compressor = slot.get_or_insert_with(|| {
            Box::new(Compress::new_with_window_bits(
                Compression::default(),
                false,
                window_bits.clamp(9, 15),
            ))
        });
        compressor.reset();
        compress_into(compressor, parts, &mut payload);
    });
    // Sync flush ends the data with an empty stored block, whose last four
    // bytes the sender removes (7.2.1).
    debug_assert!(payload.ends_with(&TAIL));
    payload.truncate(payload.len().saturating_sub(TAIL.len()));
    if payload.len() >= len {
        return false;
    }
    super::codec::server_deflated_head(text, payload.len(), out);
    out.extend_from_slice(&payload);
    true
}

fn compress_into(compressor: &mut Compress, parts: &[&[u8]], out: &mut Vec<u8>) {
    let last = parts.len();
    for (i, part) in parts.iter().enumerate() {
        let flush = if i + 1 == last {
            FlushCompress::Sync
        } else {
            FlushCompress::None
        };
        let mut used = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before = compressor.total_in();
            compressor
                .compress_vec(&part[used..], out, flush)
                .expect("deflate of memory does not fail");
            used += (compressor.total_in() - before) as usize;
            // Done once the input is taken and the output was not filled:
            // the flush had room to finish.
            if used == part.len() && out.len() < out.capacity() {
                break;
            }
        }
    }
    if last == 0 {
        compressor
            .compress_vec(&[], out, FlushCompress::Sync)
            .expect("deflate of memory does not fail");
    }
}

#[cfg(test)]
mod tests;
