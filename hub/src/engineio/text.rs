//! Message text that is cheap to share: one encoded broadcast is queued to
//! many sessions, and cloning it must not copy or allocate.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::{Buf, Bytes};

use crate::ws::codec;

/// An immutable UTF-8 string backed by reference-counted [`Bytes`].
///
/// A text built by [`Text::framed_message`] sits behind the head of the
/// WebSocket frame that carries it as an Engine.IO message, in the same
/// allocation: every WebSocket recipient of a broadcast copies that frame
/// as it is, instead of framing the text again.
#[derive(Clone, Default)]
pub struct Text {
    bytes: Bytes,
    /// Where the string starts in `bytes`; anything before it is the frame head.
    start: u8,
    /// Never sent compressed (the Socket.IO `compress(false)` flag). In
    /// what was padding: a text is no larger for it.
    uncompressed: bool,
}

impl Text {
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor takes a `str` or `String`, so the bytes
        // from `start` on are UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.bytes[self.start as usize..]) }
    }

    /// The UTF-8 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start as usize..]
    }

    /// The length in bytes, without slicing (counted for every recipient
    /// of a broadcast).
    #[inline]
    pub fn len(&self) -> usize {
        self.bytes.len() - self.start as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub const fn from_static(s: &'static str) -> Text {
        Text {
            bytes: Bytes::from_static(s.as_bytes()),
            start: 0,
            uncompressed: false,
        }
    }

    /// `text` laid out behind the head of a WebSocket text frame holding the
    /// Engine.IO message packet `4<text>` (the same for Engine.IO v3 and v4).
    pub fn framed_message(text: &str) -> Text {
        let mut writer = FramedTextWriter::new(text.len());
        writer.push_str(text);
        writer.finish()
    }

    /// `s[at..]` without a copy: the text keeps `s`'s allocation (the
    /// bytes before `at` included) while it lives. For a message received
    /// whole, whose packet type byte is all there is to drop.
    ///
    /// Panics if `at` is not on a char boundary.
    pub fn from_string_tail(s: String, at: usize) -> Text {
        assert!(s.is_char_boundary(at), "a text starts on a char boundary");
        let mut bytes = Bytes::from(s.into_bytes());
        // `advance` moves the start without a clone: no shared header is
        // allocated for a buffer owned once.
        bytes.advance(at);
        Text {
            bytes,
            start: 0,
            uncompressed: false,
        }
    }

    /// The text's UTF-8 bytes, shared (a frame head in front is left out).
    pub fn into_bytes(self) -> Bytes {
        let mut bytes = self.bytes;
        bytes.advance(self.start as usize);
        bytes
    }

    /// The same text, its clones sharing a reference count from the start.
    /// A text that owns its allocation alone (as [`Text::framed_message`]
    /// makes it: one allocation) checks at every clone whether it was
    /// shared yet; one to be cloned for many recipients saves that check
    /// per recipient (its first clone, here, allocates the count).
    pub fn into_shared(self) -> Text {
        Text {
            bytes: self.bytes.clone(),
            ..self
        }
    }

    /// The whole WebSocket frame of the Engine.IO message holding this text,
    /// when it was built with one ([`Text::framed_message`]).
    pub fn ws_message_frame(&self) -> Option<&[u8]> {
        (self.start > 0).then_some(&self.bytes[..])
    }

    /// The same text, never to be sent compressed (Socket.IO's `compress(false)`).
    pub fn without_compression(mut self) -> Text {
        self.uncompressed = true;
        self
    }

    /// May this text be sent compressed?
    pub fn compressible(&self) -> bool {
        !self.uncompressed
    }

    /// Do both share one allocation (clones of one text)? While one of
    /// them lives, no other text can have its address.
    pub fn same_bytes(&self, other: &Text) -> bool {
        self.bytes.as_ptr() == other.bytes.as_ptr() && self.bytes.len() == other.bytes.len()
    }
}

/// A text written straight into the allocation [`Text::framed_message`]
/// lays out (the WebSocket frame head, the Engine.IO `4`, the text), for a
/// text whose length is known before it is written: no scratch buffer to
/// encode into and copy from. Only `str`s are written, so the text is UTF-8.
pub struct FramedTextWriter {
    bytes: Vec<u8>,
    /// Where the text starts (after the frame head and the `4`).
    start: u8,
    /// The length the frame head announces, frame included.
    end: usize,
}

impl FramedTextWriter {
    /// A writer for a text of `len` bytes.
    #[inline]
    pub fn new(len: usize) -> FramedTextWriter {
        let payload = 1 + len;
        let end = codec::server_head_len(payload) + payload;
        // Exactly the size: `Bytes` takes a full `Vec` as it is, where one
        // with spare room costs a second allocation (its shared header).
        let mut bytes = Vec::with_capacity(end);
        codec::server_text_head(payload, &mut bytes);
        bytes.push(b'4');
        let start = bytes.len() as u8;
        FramedTextWriter { bytes, start, end }
    }

    /// Append `s`.
    #[inline]
    pub fn push_str(&mut self, s: &str) {
        self.bytes.extend_from_slice(s.as_bytes());
    }

    /// Append an ASCII byte (punctuation). Panics on any other byte, which
    /// could break the text's UTF-8.
    #[inline]
    pub fn push_ascii(&mut self, byte: u8) {
        assert!(byte.is_ascii(), "a text takes whole characters");
        self.bytes.push(byte);
    }

    /// The text written. Written to another length than announced (a
    /// caller's mistake), it is framed again, correctly, at the cost of a
    /// copy.
    pub fn finish(self) -> Text {
        if self.bytes.len() != self.end {
            debug_assert!(
                false,
                "announced {} bytes, wrote {}",
                self.end,
                self.bytes.len()
            );
            // SAFETY: only `str`s were appended after `start`.
            let text = unsafe { std::str::from_utf8_unchecked(&self.bytes[self.start as usize..]) };
            return Text::framed_message(text);
        }
        Text {
            bytes: Bytes::from(self.bytes),
            start: self.start,
            uncompressed: false,
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Text) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text {
            bytes: Bytes::from(s.into_bytes()),
            start: 0,
            uncompressed: false,
        }
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text {
            bytes: Bytes::copy_from_slice(s.as_bytes()),
            start: 0,
            uncompressed: false,
        }
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_their_bytes() {
        let a = Text::from(String::from("héllo"));
        let b = a.clone();
        assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr());
        assert_eq!(&*b, "héllo");
        assert_eq!(b, "héllo");
    }

    #[test]
    fn tails_and_bytes_share_the_allocation() {
        let s = String::from("4héllo");
        let ptr = s.as_ptr();
        let text = Text::from_string_tail(s, 1);
        assert_eq!(text, "héllo");
        assert_eq!(text.as_bytes().as_ptr(), ptr.wrapping_add(1));
        assert_eq!(text.ws_message_frame(), None);
        let bytes = text.into_bytes();
        assert_eq!(&bytes[..], "héllo".as_bytes());
        assert_eq!(bytes.as_ptr(), ptr.wrapping_add(1));
        let framed = Text::framed_message("abc");
        assert_eq!(&framed.into_bytes()[..], b"abc");
    }

    #[test]
    fn written_in_place_as_framed() {
        for len in [0, 1, 123, 124, 125, 126, 65_533, 65_534, 65_535, 70_000] {
            let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let (head, tail) = text.split_at(text.len() / 2 / 2 * 2);
            let mut writer = FramedTextWriter::new(text.len() + 1);
            writer.push_str(head);
            writer.push_ascii(b'-');
            writer.push_str(tail);
            let written = writer.finish();
            let text = format!("{head}-{tail}");
            assert_eq!(written, text.as_str());
            assert_eq!(
                written.ws_message_frame(),
                Text::framed_message(&text).ws_message_frame(),
                "len {len}"
            );
        }
    }

    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "announced"))]
    fn a_wrong_announced_length_is_framed_again() {
        let mut writer = FramedTextWriter::new(3);
        writer.push_str("abcd");
        let written = writer.finish();
        assert_eq!(written, "abcd");
        assert_eq!(
            written.ws_message_frame(),
            Text::framed_message("abcd").ws_message_frame()
        );
    }

    #[test]
    fn framed_messages_carry_their_websocket_frame() {
        for len in [0, 1, 124, 125, 126, 65_534, 65_535, 70_000] {
            let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let framed = Text::framed_message(&text);
            assert_eq!(framed.as_str(), text);
            assert_eq!(framed, Text::from(text.clone()));
            let mut expected = Vec::new();
            codec::encode_parts(true, &[b"4", text.as_bytes()], &mut expected);
            assert_eq!(framed.ws_message_frame(), Some(&expected[..]), "len {len}");
            assert_eq!(framed.clone().ws_message_frame(), Some(&expected[..]));
        }
        assert_eq!(Text::from("plain").ws_message_frame(), None);
    }
}
