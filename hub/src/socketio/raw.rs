//! JSON arrays kept as the text they arrived in: an event's or an ack's
//! arguments, validated in full at decode but parsed into values only when
//! asked, and written back by copying their bytes.
//!
//! serde_json's `RawValue` checks the syntax and gives each element's
//! bytes; it does not build values, so three things a `Value` parse would
//! refuse are checked here on top (a few bytes looked at per element, the
//! suspicious ones parsed): numbers out of `f64`'s range (`1e999`), `\u`
//! escapes that are lone surrogates, and nesting past serde_json's limit.

use std::fmt;

use bytes::Bytes;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use smallvec::SmallVec;

use crate::engineio::Text;

/// Bytes known to be UTF-8: made only from a `str` or a [`Text`].
#[derive(Clone, Default)]
pub(crate) struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    pub(crate) fn from_text(text: Text) -> Utf8Bytes {
        Utf8Bytes(text.into_bytes())
    }

    pub(crate) fn copy_from_str(s: &str) -> Utf8Bytes {
        Utf8Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }

    pub(crate) fn as_str(&self) -> &str {
        // SAFETY: both constructors take UTF-8 (a `str`, or a `Text`, whose
        // bytes are a `str`'s), and the bytes are never changed.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

/// A JSON array as received: the message text and each element's place in
/// it. Every element is valid JSON that parses into a [`Value`].
#[derive(Clone, Default)]
pub struct RawArray {
    text: Utf8Bytes,
    /// Byte ranges of the elements in `text`.
    items: SmallVec<[(u32, u32); 4]>,
}

impl RawArray {
    /// How many elements.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// No elements.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The JSON text of element `index`, as received.
    pub fn get(&self, index: usize) -> Option<&str> {
        let &(start, end) = self.items.get(index)?;
        Some(&self.text.as_str()[start as usize..end as usize])
    }

    /// The JSON text of each element, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let text = self.text.as_str();
        self.items
            .iter()
            .map(move |&(start, end)| &text[start as usize..end as usize])
    }

    /// Drop the first element (an event's name).
    pub fn remove_first(&mut self) {
        if !self.items.is_empty() {
            self.items.remove(0);
        }
    }

    /// A one-element array of `json`, a part of one of this array's
    /// elements (e.g. a field's value in an object element), sharing the
    /// text. `None` when `json` does not lie in the text.
    pub fn part(&self, json: &str) -> Option<RawArray> {
        let whole = self.text.as_str();
        let start = (json.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
        let end = start + json.len();
        if end > whole.len() {
            return None;
        }
        let mut items = SmallVec::new();
        items.push((start as u32, end as u32));
        Some(RawArray {
            text: self.text.clone(),
            items,
        })
    }

    /// Element `index` parsed.
    pub fn value(&self, index: usize) -> Option<Value> {
        self.get(index).map(parse_checked)
    }

    /// Every element parsed.
    pub fn values(&self) -> Vec<Value> {
        self.iter().map(parse_checked).collect()
    }

    /// Element `index` as a string when it is one, borrowed from the text
    /// when it has no escapes.
    pub fn str(&self, index: usize) -> Option<std::borrow::Cow<'_, str>> {
        string_of(self.get(index)?)
    }
}

impl fmt::Debug for RawArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Parse an element the decoder validated.
fn parse_checked(json: &str) -> Value {
    match serde_json::from_str(json) {
        Ok(value) => value,
        Err(error) => {
            // The decoder refuses what would fail here.
            debug_assert!(false, "validated JSON {json:?} does not parse: {error}");
            Value::Null
        }
    }
}

/// A JSON string element's text: borrowed without escapes, else unescaped.
pub(crate) fn string_of(json: &str) -> Option<std::borrow::Cow<'_, str>> {
    let inner = json.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(std::borrow::Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(json)
        .ok()
        .map(std::borrow::Cow::Owned)
}

/// serde_json's nesting limit: a value parse fails at this depth.
const MAX_DEPTH: usize = 128;

/// A number this many digits long may be out of `f64`'s range.
const LONG_DIGITS: usize = 300;

/// Split `text[start..]`, which begins with `[`, into a [`RawArray`], with
/// the checks a [`Value`] parse of it would make. The error is serde_json's
/// message.
pub(crate) fn split_array(text: Utf8Bytes, start: usize) -> Result<RawArray, String> {
    let items = {
        let whole = text.as_str();
        if u32::try_from(whole.len()).is_err() {
            // Far past any message limit; ranges are kept as u32.
            return Err("message too large".to_string());
        }
        let json = &whole[start..];
        let mut items = SmallVec::new();
        let mut de = serde_json::Deserializer::from_str(json);
        ItemsSeed {
            base: whole.as_ptr() as usize,
            items: &mut items,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| e.to_string())?;
        if too_deep(json) {
            return Err(format!(
                "recursion limit exceeded (over {MAX_DEPTH} levels)"
            ));
        }
        for &(s, e) in &items {
            let item = &whole[s as usize..e as usize];
            if needs_value_parse(item) {
                serde_json::from_str::<Value>(item).map_err(|e| e.to_string())?;
            }
        }
        items
    };
    Ok(RawArray { text, items })
}

/// Collects each element's byte range (relative to `base`) without
/// building values.
struct ItemsSeed<'a> {
    base: usize,
    items: &'a mut SmallVec<[(u32, u32); 4]>,
}

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            let json = raw.get();
            let start = json.as_ptr() as usize - self.base;
            // The text is under 4 GiB (checked by `split_array`).
            self.items.push((start as u32, (start + json.len()) as u32));
        }
        Ok(())
    }
}

/// Whether valid JSON `json` nests deeper than a value parse allows. Only
/// counts when there are enough brackets to matter.
fn too_deep(json: &str) -> bool {
    let b = json.as_bytes();
    // Each level takes an opening and a closing bracket.
    if b.len() < 2 * MAX_DEPTH {
        return false;
    }
    // `[` (0x5b) and `{` (0x7b) are the only bytes that are `{` with bit
    // 0x20 set: a branchless count.
    let opening: usize = b.iter().map(|&c| usize::from(c | 0x20 == b'{')).sum();
    if opening < MAX_DEPTH {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &c in b {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth >= MAX_DEPTH {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Whether valid JSON `item` may hold what only a value parse refuses: a
/// `\u` escape (a lone surrogate), an exponent or a very long number (out
/// of range). A string without escapes, the usual argument, is answered
/// by one `memchr` (`contains` on bytes).
fn needs_value_parse(item: &str) -> bool {
    let b = item.as_bytes();
    if b.first() == Some(&b'"') && !b.contains(&b'\\') {
        return false;
    }
    let (mut in_string, mut escaped, mut digits) = (false, false, 0usize);
    let mut prev = 0u8;
    for &c in b {
        if in_string {
            match c {
                _ if escaped => {
                    if c == b'u' {
                        return true;
                    }
                    escaped = false;
                }
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'0'..=b'9' => {
                digits += 1;
                if digits >= LONG_DIGITS {
                    return true;
                }
            }
            // After a digit (not in `true`/`false`): an exponent.
            b'e' | b'E' if prev.is_ascii_digit() || prev == b'.' => return true,
            _ => digits = 0,
        }
        prev = c;
    }
    false
}

#[cfg(test)]
mod tests;
