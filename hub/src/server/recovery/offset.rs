//! A recovery offset: the shard that encoded a packet and that shard's
//! sequence number for it, written into the packet as a short string
//! (`<seq>-<shard>`, both in hex) appended as its last argument.

use std::fmt;

/// Shard bits in the packed value (as many as `engineio::sid::MAX_SHARDS`).
const SHARD_BITS: u32 = 12;
const SEQ_MASK: u64 = (1 << (64 - SHARD_BITS)) - 1;

/// Origin shard and its per-shard sequence number (from 1), in one u64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Offset(u64);

impl Offset {
    pub fn new(origin: usize, seq: u64) -> Offset {
        debug_assert!(origin < crate::engineio::sid::MAX_SHARDS);
        Offset(((origin as u64) << (64 - SHARD_BITS)) | (seq & SEQ_MASK))
    }

    pub fn origin(self) -> usize {
        (self.0 >> (64 - SHARD_BITS)) as usize
    }

    pub fn seq(self) -> u64 {
        self.0 & SEQ_MASK
    }

    /// Read an offset a client sent back; None for anything this server
    /// could not have written.
    pub fn parse(s: &str) -> Option<Offset> {
        let (seq, origin) = s.split_once('-')?;
        if seq.is_empty() || origin.is_empty() || seq.len() > 13 || origin.len() > 3 {
            return None;
        }
        let seq = u64::from_str_radix(seq, 16).ok()?;
        let origin = usize::from_str_radix(origin, 16).ok()?;
        if origin >= crate::engineio::sid::MAX_SHARDS || seq == 0 || seq > SEQ_MASK {
            return None;
        }
        Some(Offset::new(origin, seq))
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}-{:x}", self.seq(), self.origin())
    }
}
