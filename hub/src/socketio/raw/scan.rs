//! One pass over a JSON array that checks it as a parse into a `Value`
//! would, and notes where each element lies, building nothing.
//!
//! Written by hand: serde_json's `RawValue` pass checks the syntax only
//! (its string and number skips accept lone surrogates and numbers out of
//! `f64`'s range), so it needed a second look at each element and a
//! nesting count on top, and its visitor machinery cost more than the scan
//! itself. No crate validates JSON to exactly serde_json's verdict without
//! building values. The fuzz target `sio_decoder` holds this scanner to
//! that verdict (refused here exactly when `serde_json::from_str::<Value>`
//! refuses).
//!
//! What a `Value` parse refuses, and so this does (serde_json 1.0):
//! - anything outside the JSON grammar (RFC 8259), trailing commas and
//!   trailing non-whitespace included; whitespace is space, tab, LF, CR;
//! - a control character (below 0x20) inside a string;
//! - a `\u` escape that is a lone surrogate: a trailing one (DC00-DFFF),
//!   or a leading one (D800-DBFF) not followed at once by `\u` and a
//!   trailing one;
//! - nesting 128 deep (the outer array is level 1);
//! - a number out of `f64`'s range: numbers that may be (an exponent, or
//!   at least [`LONG_NUMBER`] bytes) are handed to serde_json alone, the
//!   only values this pass parses.
//!
//! The input is a `str`: it is UTF-8 already, so the scan looks at ASCII
//! bytes only and skips the rest.

use std::fmt;

use smallvec::SmallVec;

/// serde_json's nesting limit: a value parse fails at this depth.
pub(super) const MAX_DEPTH: usize = 128;

/// A number token this long (sign, digits, point) may be out of `f64`'s
/// range (about 1.8e308: 309 digits); shorter ones without an exponent
/// never are.
const LONG_NUMBER: usize = 300;

/// Why the text is not a JSON array a value parse accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScanError {
    /// Not an array: no `[` first.
    NotAnArray,
    /// The text ends inside a value.
    Eof,
    /// A byte the grammar does not allow here.
    Unexpected(usize),
    /// A control character in a string.
    ControlCharacter(usize),
    /// A backslash not followed by a valid escape.
    InvalidEscape(usize),
    /// A `\u` escape that is half a surrogate pair.
    LoneSurrogate(usize),
    /// Nested [`MAX_DEPTH`] deep.
    TooDeep(usize),
    /// A number a value parse refuses (out of range).
    Number(usize),
    /// Bytes after the array.
    Trailing(usize),
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ScanError::NotAnArray => f.write_str("expected a JSON array"),
            ScanError::Eof => f.write_str("EOF while parsing a value"),
            ScanError::Unexpected(at) => write!(f, "unexpected character at byte {at}"),
            ScanError::ControlCharacter(at) => {
                write!(f, "control character in a string at byte {at}")
            }
            ScanError::InvalidEscape(at) => write!(f, "invalid escape at byte {at}"),
            ScanError::LoneSurrogate(at) => {
                write!(f, "lone surrogate in a hex escape at byte {at}")
            }
            ScanError::TooDeep(at) => write!(
                f,
                "recursion limit exceeded (over {MAX_DEPTH} levels) at byte {at}"
            ),
            ScanError::Number(at) => write!(f, "number out of range at byte {at}"),
            ScanError::Trailing(at) => write!(f, "trailing characters at byte {at}"),
        }
    }
}

/// Check `json[start..]`, a JSON array with optional whitespace around it,
/// and push each element's range in `json` (trimmed of whitespace).
/// Returns whether the first element is a string without escapes (an
/// event's name, most often), whose text is then its quotes' inside.
pub(super) fn scan_array(
    json: &[u8],
    start: usize,
    items: &mut SmallVec<[(u32, u32); 4]>,
) -> Result<bool, ScanError> {
    let scan = Scanner { b: json };
    let mut i = scan.skip_ws(start);
    if json.get(i) != Some(&b'[') {
        return Err(ScanError::NotAnArray);
    }
    i = scan.skip_ws(i + 1);
    let mut plain_first = false;
    if json.get(i) == Some(&b']') {
        i += 1;
    } else {
        let mut first = true;
        loop {
            let end = if first && json.get(i) == Some(&b'"') {
                let (end, escaped) = scan.string_escaped(i + 1)?;
                plain_first = !escaped;
                end
            } else {
                scan.value(i, 1)?
            };
            first = false;
            // The caller keeps texts under 4 GiB.
            items.push((i as u32, end as u32));
            i = scan.skip_ws(end);
            match json.get(i) {
                Some(b',') => i = scan.skip_ws(i + 1),
                Some(b']') => {
                    i += 1;
                    break;
                }
                Some(_) => return Err(ScanError::Unexpected(i)),
                None => return Err(ScanError::Eof),
            }
        }
    }
    let end = scan.skip_ws(i);
    if end != json.len() {
        return Err(ScanError::Trailing(end));
    }
    Ok(plain_first)
}

/// Where the value at `json[i]` ends, for text already checked by
/// [`scan_array`] (an element or a part of one); `None` when it is not
/// a value there. Whitespace after `i` is the caller's.
pub(super) fn value_end(json: &[u8], i: usize) -> Option<usize> {
    Scanner { b: json }.value(i, 1).ok()
}

/// The first index from `i` on that is not JSON whitespace.
pub(super) fn skip_ws(json: &[u8], i: usize) -> usize {
    Scanner { b: json }.skip_ws(i)
}

struct Scanner<'a> {
    b: &'a [u8],
}

/// A bit per byte of `chunk` that is `"`, `\\` or below 0x20 (a string's
/// end, an escape, a refused control character), lowest byte first.
#[cfg(target_arch = "x86_64")]
#[inline]
fn specials(chunk: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2, all these need, is part of x86-64's baseline (every
    // x86-64 processor has it); the load is unaligned and reads the
    // sixteen bytes `chunk` refers to.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Below 0x20 (unsigned): min(byte, 0x1f) is the byte.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
    }
}

/// A bit per byte of `chunk` that is `"`, `\\` or below 0x20, lowest byte
/// first (without SSE2: a byte at a time).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn specials(chunk: &[u8; 16]) -> u32 {
    let mut mask = 0u32;
    for (k, &c) in chunk.iter().enumerate() {
        mask |= u32::from((c == b'"') | (c == b'\\') | (c < 0x20)) << k;
    }
    mask
}

impl Scanner<'_> {
    #[inline]
    fn skip_ws(&self, mut i: usize) -> usize {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(i) {
            i += 1;
        }
        i
    }

    /// The value at `i` (no whitespace before it), inside a container at
    /// level `depth`; returns where it ends.
    fn value(&self, i: usize, depth: usize) -> Result<usize, ScanError> {
        match self.b.get(i) {
            Some(b'"') => self.string(i + 1),
            Some(b'-' | b'0'..=b'9') => self.number(i),
            Some(b'[') => self.array(i, depth + 1),
            Some(b'{') => self.object(i, depth + 1),
            Some(b't') => self.literal(i, b"true"),
            Some(b'f') => self.literal(i, b"false"),
            Some(b'n') => self.literal(i, b"null"),
            Some(_) => Err(ScanError::Unexpected(i)),
            None => Err(ScanError::Eof),
        }
    }

    fn literal(&self, i: usize, word: &[u8]) -> Result<usize, ScanError> {
        let end = i + word.len();
        match self.b.get(i..end) {
            Some(found) if found == word => Ok(end),
            Some(_) => Err(ScanError::Unexpected(i)),
            None => Err(ScanError::Eof),
        }
    }

    /// A string whose opening quote is before `i`; returns the index past
    /// its closing quote.
    #[inline]
    fn string(&self, i: usize) -> Result<usize, ScanError> {
        self.string_escaped(i).map(|(end, _)| end)
    }

    /// [`Scanner::string`], and whether the string has escapes.
    fn string_escaped(&self, mut i: usize) -> Result<(usize, bool), ScanError> {
        let b = self.b;
        let mut escaped = false;
        loop {
            i = self.next_special(i);
            match b.get(i) {
                Some(b'"') => return Ok((i + 1, escaped)),
                Some(b'\\') => {
                    i = self.escape(i + 1)?;
                    escaped = true;
                }
                Some(c) if *c < 0x20 => return Err(ScanError::ControlCharacter(i)),
                Some(_) => i += 1,
                None => return Err(ScanError::Eof),
            }
        }
    }

    /// The first byte from `i` on that is `"`, `\\` or below 0x20, or the
    /// end of the text.
    #[inline]
    fn next_special(&self, mut i: usize) -> usize {
        let b = self.b;
        while let Some(chunk) = b.get(i..i + 16) {
            let found = specials(chunk.try_into().expect("sixteen bytes"));
            if found != 0 {
                return i + found.trailing_zeros() as usize;
            }
            i += 16;
        }
        if i >= b.len() {
            return b.len();
        }
        // Under sixteen bytes left: the text's last sixteen, those before
        // `i` shifted out (0 < i - window < 16).
        if let Some(window) = b.len().checked_sub(16) {
            let chunk = b[window..].try_into().expect("sixteen bytes");
            let found = specials(chunk) >> (i - window);
            return match found {
                0 => b.len(),
                _ => i + found.trailing_zeros() as usize,
            };
        }
        while let Some(&c) = b.get(i) {
            if c == b'"' || c == b'\\' || c < 0x20 {
                break;
            }
            i += 1;
        }
        i
    }

    /// The escape after a backslash at `i - 1`; returns where it ends.
    #[cold]
    fn escape(&self, i: usize) -> Result<usize, ScanError> {
        match self.b.get(i) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 1),
            Some(b'u') => {
                let unit = self.hex4(i + 1)?;
                match unit {
                    0xDC00..=0xDFFF => Err(ScanError::LoneSurrogate(i)),
                    0xD800..=0xDBFF => {
                        // A trailing surrogate must follow at once.
                        let next = i + 5;
                        if self.b.get(next..next + 2) != Some(b"\\u".as_slice()) {
                            return match self.b.get(next) {
                                None => Err(ScanError::Eof),
                                Some(_) => Err(ScanError::LoneSurrogate(i)),
                            };
                        }
                        match self.hex4(next + 2)? {
                            0xDC00..=0xDFFF => Ok(next + 6),
                            _ => Err(ScanError::LoneSurrogate(next)),
                        }
                    }
                    _ => Ok(i + 5),
                }
            }
            Some(_) => Err(ScanError::InvalidEscape(i)),
            None => Err(ScanError::Eof),
        }
    }

    /// Four hex digits at `i`.
    fn hex4(&self, i: usize) -> Result<u16, ScanError> {
        let Some(digits) = self.b.get(i..i + 4) else {
            return Err(ScanError::Eof);
        };
        let mut unit = 0u16;
        for (k, &c) in digits.iter().enumerate() {
            let digit = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(ScanError::InvalidEscape(i + k)),
            };
            unit = unit << 4 | u16::from(digit);
        }
        Ok(unit)
    }

    fn digits(&self, mut i: usize) -> usize {
        while let Some(b'0'..=b'9') = self.b.get(i) {
            i += 1;
        }
        i
    }

    /// A number at `i`: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&self, start: usize) -> Result<usize, ScanError> {
        let b = self.b;
        let mut i = start + usize::from(b[start] == b'-');
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = self.digits(i + 1),
            Some(_) => return Err(ScanError::Unexpected(i)),
            None => return Err(ScanError::Eof),
        }
        if b.get(i) == Some(&b'.') {
            let end = self.digits(i + 1);
            if end == i + 1 {
                return Err(self.no_digit(end));
            }
            i = end;
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let end = self.digits(i);
            if end == i {
                return Err(self.no_digit(end));
            }
            i = end;
            exponent = true;
        }
        if exponent || i - start >= LONG_NUMBER {
            self.number_in_range(start, i)?;
        }
        Ok(i)
    }

    fn no_digit(&self, i: usize) -> ScanError {
        match self.b.get(i) {
            Some(_) => ScanError::Unexpected(i),
            None => ScanError::Eof,
        }
    }

    /// The number `b[start..end]` (valid grammar) as a value parse reads
    /// it: refused when out of `f64`'s range.
    #[cold]
    fn number_in_range(&self, start: usize, end: usize) -> Result<(), ScanError> {
        // ASCII digits, signs, point and exponent: UTF-8.
        let token =
            std::str::from_utf8(&self.b[start..end]).map_err(|_| ScanError::Number(start))?;
        serde_json::from_str::<serde_json::Value>(token)
            .map(drop)
            .map_err(|_| ScanError::Number(start))
    }

    /// An array at `i` at level `depth`; returns where it ends.
    fn array(&self, i: usize, depth: usize) -> Result<usize, ScanError> {
        if depth >= MAX_DEPTH {
            return Err(ScanError::TooDeep(i));
        }
        let mut i = self.skip_ws(i + 1);
        if self.b.get(i) == Some(&b']') {
            return Ok(i + 1);
        }
        loop {
            i = self.skip_ws(self.value(i, depth)?);
            match self.b.get(i) {
                Some(b',') => i = self.skip_ws(i + 1),
                Some(b']') => return Ok(i + 1),
                Some(_) => return Err(ScanError::Unexpected(i)),
                None => return Err(ScanError::Eof),
            }
        }
    }

    /// An object at `i` at level `depth`; returns where it ends.
    fn object(&self, i: usize, depth: usize) -> Result<usize, ScanError> {
        if depth >= MAX_DEPTH {
            return Err(ScanError::TooDeep(i));
        }
        let mut i = self.skip_ws(i + 1);
        if self.b.get(i) == Some(&b'}') {
            return Ok(i + 1);
        }
        loop {
            match self.b.get(i) {
                Some(b'"') => i = self.skip_ws(self.string(i + 1)?),
                Some(_) => return Err(ScanError::Unexpected(i)),
                None => return Err(ScanError::Eof),
            }
            match self.b.get(i) {
                Some(b':') => i = self.skip_ws(i + 1),
                Some(_) => return Err(ScanError::Unexpected(i)),
                None => return Err(ScanError::Eof),
            }
            i = self.skip_ws(self.value(i, depth)?);
            match self.b.get(i) {
                Some(b',') => i = self.skip_ws(i + 1),
                Some(b'}') => return Ok(i + 1),
                Some(_) => return Err(ScanError::Unexpected(i)),
                None => return Err(ScanError::Eof),
            }
        }
    }
}
