//! Outgoing permessage-deflate: what a WebSocket that negotiated it sends
//! compressed, and the shard's recently compressed broadcast frames, so that
//! a broadcast (its text and its binary attachments) is compressed once per
//! shard rather than once per recipient.
//!
//! Why a per-shard cache rather than a compressed frame carried by the
//! shared text itself (filled once for every shard): that costs every
//! recipient of every broadcast, compressed or not, a wider `Text` to clone
//! and drop; measured with `scripts/instructions`, fanout went from 533 to
//! 556 instructions per delivery. The cache costs a connection without
//! deflate nothing, and one with deflate a look at the most recent entries.
//! With `server_no_context_takeover` a compressed frame depends on the
//! message alone, so any recipient on the shard can take the cached one.

use std::cell::RefCell;
use std::collections::VecDeque;

use bytes::Bytes;

use crate::engineio::{Data, ProtocolVersion, Text};
use crate::ws::{codec, deflate};

/// How a connection that negotiated permessage-deflate compresses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deflating {
    /// Messages (the Engine.IO packet) shorter than this go plain.
    pub threshold: usize,
    /// The window the client allows (`server_max_window_bits`, else 15).
    pub window_bits: u8,
    /// The last text went plain by its `compress(false)` flag: the binary
    /// messages behind it (a Socket.IO packet's attachments, queued right
    /// after its text) go plain too.
    pub plain_binary: bool,
}

impl Deflating {
    /// Write `data` as one compressed frame into `out` if it is long enough,
    /// allowed and shrinks; false when it is to go plain (nothing written).
    pub fn push(&mut self, data: &Data, version: ProtocolVersion, out: &mut Vec<u8>) -> bool {
        match data {
            Data::Text(text) => {
                self.plain_binary = !text.compressible();
                if 1 + text.len() < self.threshold || self.plain_binary {
                    return false;
                }
                let parts: [&[u8]; 2] = [b"4", text.as_bytes()];
                // A framed text is a Socket.IO packet, maybe a broadcast's:
                // worth keeping. Other windows than 15 are rare: compressed
                // for the connection alone.
                if text.ws_message_frame().is_none() || self.window_bits != 15 {
                    return self.compress(true, &parts, out);
                }
                shared(Key::Text(text), true, &parts, out)
            }
            Data::Binary(bytes) => {
                let prefix: &[u8] = match version {
                    ProtocolVersion::V3 => &[4],
                    ProtocolVersion::V4 => &[],
                };
                if prefix.len() + bytes.len() < self.threshold || self.plain_binary {
                    return false;
                }
                let parts = [prefix, &bytes[..]];
                if self.window_bits != 15 {
                    return self.compress(false, &parts, out);
                }
                // A broadcast's attachments are shared as its text is.
                let key = Key::Binary(bytes, version == ProtocolVersion::V3);
                shared(key, false, &parts, out)
            }
        }
    }

    /// Compress a message for this connection alone.
    fn compress(&self, text: bool, parts: &[&[u8]], out: &mut Vec<u8>) -> bool {
        count_compression();
        let at = out.len();
        if !deflate::deflate_frame(text, parts, self.window_bits, out) {
            return false;
        }
        count_deflated(parts.iter().map(|p| p.len()).sum(), out.len() - at);
        true
    }
}

/// Write the frame of the message `key` (whose payload is `parts` joined)
/// from the shard's frames, compressing it if they lack it; false when it
/// does not shrink.
fn shared(key: Key<'_>, text: bool, parts: &[&[u8]], out: &mut Vec<u8>) -> bool {
    FRAMES.with(|frames| {
        let mut frames = frames.borrow_mut();
        let frame = frames.get_or_make(key, || {
            count_compression();
            let mut frame = Vec::new();
            if !deflate::deflate_frame(text, parts, 15, &mut frame) {
                frame.clear();
            }
            frame.into_boxed_slice()
        });
        if frame.is_empty() {
            return false;
        }
        out.extend_from_slice(frame);
        count_deflated(parts.iter().map(|p| p.len()).sum(), frame.len());
        true
    })
}

fn count_compression() {
    crate::metrics::with(|m| {
        m.deflate_compressions.inc();
    });
}

/// A message of `plain` payload bytes went out as a compressed frame of
/// `frame` bytes: counted as frames, heads included, before and after.
fn count_deflated(plain: usize, frame: usize) {
    crate::metrics::with(|m| {
        m.deflated_messages.inc();
        m.deflated_bytes_before
            .inc_by((codec::server_head_len(plain) + plain) as u64);
        m.deflated_bytes_after.inc_by(frame as u64);
    });
}

/// Frames kept at most, and bytes (compressed frames and the texts they
/// keep alive): a broadcast's recipients on a shard are written within
/// moments of each other, so the last few are what matters.
const MAX_FRAMES: usize = 32;
const MAX_BYTES: usize = 4 << 20;

thread_local! {
    static FRAMES: RefCell<DeflatedFrames> = RefCell::new(DeflatedFrames::default());
}

/// The shard's most recently compressed messages and their frames.
#[derive(Default)]
struct DeflatedFrames {
    /// Oldest first.
    entries: VecDeque<Entry>,
    /// Bytes of the texts and frames held.
    bytes: usize,
    /// Frames made (for tests).
    #[cfg(test)]
    made: usize,
}

/// A message, held by the entry so that its allocation, the entry's key,
/// cannot be reused by another while the entry lives (shared bytes never
/// change, so the same address and length mean the same message).
enum Pinned {
    /// A framed text (`4` + text in the frame).
    Text(Text),
    /// A binary message; true for Engine.IO v3 (a `4` byte before it).
    Binary(Bytes, bool),
}

/// A message being written, looked up by reference: a recipient whose
/// frame is held clones nothing.
#[derive(Clone, Copy)]
enum Key<'a> {
    Text(&'a Text),
    Binary(&'a Bytes, bool),
}

impl Key<'_> {
    fn is(&self, pinned: &Pinned) -> bool {
        match (self, pinned) {
            (Key::Text(a), Pinned::Text(b)) => a.same_bytes(b),
            (Key::Binary(a, v3), Pinned::Binary(b, w3)) => {
                v3 == w3 && a.as_ptr() == b.as_ptr() && a.len() == b.len()
            }
            _ => false,
        }
    }

    /// Held by an entry (a refcount, no copy).
    fn pin(self) -> Pinned {
        match self {
            Key::Text(text) => Pinned::Text(text.clone()),
            Key::Binary(bytes, v3) => Pinned::Binary(bytes.clone(), v3),
        }
    }
}

impl Pinned {
    fn len(&self) -> usize {
        match self {
            Pinned::Text(text) => text.len(),
            Pinned::Binary(bytes, _) => bytes.len(),
        }
    }
}

struct Entry {
    message: Pinned,
    /// The compressed frame; empty when the message does not shrink.
    frame: Box<[u8]>,
}

impl DeflatedFrames {
    /// The compressed frame of `message`, made by `make` unless held.
    fn get_or_make(&mut self, key: Key<'_>, make: impl FnOnce() -> Box<[u8]>) -> &[u8] {
        // The most recent first: the broadcast being written is usually the last one.
        if let Some(at) = self.entries.iter().rposition(|e| key.is(&e.message)) {
            return &self.entries[at].frame;
        }
        let message = key.pin();
        let frame = make();
        #[cfg(test)]
        {
            self.made += 1;
        }
        self.bytes += message.len() + frame.len();
        self.entries.push_back(Entry { message, frame });
        while self.entries.len() > MAX_FRAMES || (self.bytes > MAX_BYTES && self.entries.len() > 1)
        {
            let old = self.entries.pop_front().expect("more than one entry");
            self.bytes -= old.message.len() + old.frame.len();
        }
        &self.entries.back().expect("just pushed").frame
    }
}

#[cfg(test)]
mod tests;
