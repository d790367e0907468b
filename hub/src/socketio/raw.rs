//! JSON arrays kept as the text they arrived in: an event's or an ack's
//! arguments, validated in full at decode but parsed into values only when
//! asked, and written back by copying their bytes.
//!
//! One hand-written pass (`scan`) checks the array as a `Value` parse
//! would and notes each element's bytes, without building values.

use std::fmt;

use bytes::Bytes;
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
    /// The first element is a string without escapes (known from the
    /// scan: [`RawArray::str`] of it needs no second look).
    plain_first: bool,
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
        self.plain_first = false;
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
            plain_first: false,
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

    /// The first element's string, when it is a string without escapes
    /// (known from the scan: no second look).
    #[inline]
    pub(crate) fn plain_first(&self) -> Option<&str> {
        if !self.plain_first {
            return None;
        }
        // Inside the quotes (one byte each).
        let &(start, end) = self.items.first()?;
        self.text.as_str().get(start as usize + 1..end as usize - 1)
    }

    /// Element `index` as a string when it is one, borrowed from the text
    /// when it has no escapes.
    #[inline]
    pub fn str(&self, index: usize) -> Option<std::borrow::Cow<'_, str>> {
        if index == 0 && self.plain_first {
            return self.plain_first().map(std::borrow::Cow::Borrowed);
        }
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

/// Each member of `json`, a JSON object that was checked (an element of a
/// [`RawArray`] or a part of one), in order: its key's text (quotes and
/// escapes as written) and its value's text. `None` when `json` is not an
/// object.
pub(crate) fn object_members(json: &str) -> Option<Members<'_>> {
    let b = json.as_bytes();
    if b.first() != Some(&b'{') {
        return None;
    }
    let at = scan::skip_ws(b, 1);
    let at = if b.get(at) == Some(&b'}') {
        b.len()
    } else {
        at
    };
    Some(Members { json, at })
}

/// The members of an object, from [`object_members`].
pub(crate) struct Members<'a> {
    json: &'a str,
    /// Where the next key starts, or the text's length at the end.
    at: usize,
}

impl<'a> Iterator for Members<'a> {
    /// A key's text (a JSON string, quotes included) and its value's.
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        let (json, b) = (self.json, self.json.as_bytes());
        let key = self.at;
        if b.get(key) != Some(&b'"') {
            self.at = b.len();
            return None;
        }
        let key_end = scan::value_end(b, key)?;
        let colon = scan::skip_ws(b, key_end);
        let value = scan::skip_ws(b, colon + 1);
        let value_end = match b.get(colon) {
            Some(b':') => scan::value_end(b, value),
            _ => None,
        };
        let Some(value_end) = value_end else {
            self.at = b.len();
            return None;
        };
        let next = scan::skip_ws(b, value_end);
        self.at = match b.get(next) {
            Some(b',') => scan::skip_ws(b, next + 1),
            _ => b.len(),
        };
        Some((&json[key..key_end], &json[value..value_end]))
    }
}

/// Each element's text of `json`, a JSON array that was checked (a part
/// of a [`RawArray`]'s element), in order. `None` when `json` is not an
/// array.
pub(crate) fn array_elements(json: &str) -> Option<impl Iterator<Item = &str> + '_> {
    let b = json.as_bytes();
    if b.first() != Some(&b'[') {
        return None;
    }
    let mut at = scan::skip_ws(b, 1);
    Some(std::iter::from_fn(move || {
        let end = scan::value_end(b, at)?;
        let start = at;
        let next = scan::skip_ws(b, end);
        at = match b.get(next) {
            Some(b',') => scan::skip_ws(b, next + 1),
            _ => b.len(),
        };
        Some(&json[start..end])
    }))
}

/// Split `text[start..]`, which begins with `[`, into a [`RawArray`], with
/// the checks a [`Value`] parse of it would make (see [`scan`]).
pub(crate) fn split_array(text: Utf8Bytes, start: usize) -> Result<RawArray, String> {
    let whole = text.as_str();
    if u32::try_from(whole.len()).is_err() {
        // Far past any message limit; ranges are kept as u32.
        return Err("message too large".to_string());
    }
    let mut items = SmallVec::new();
    let plain_first =
        scan::scan_array(whole.as_bytes(), start, &mut items).map_err(|e| e.to_string())?;
    Ok(RawArray {
        text,
        items,
        plain_first,
    })
}

mod scan;

#[cfg(test)]
mod tests;
