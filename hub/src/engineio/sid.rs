//! Engine.IO session ids.
//!
//! 24 URL-safe base64 characters: 2 for the owning shard (12 bits), then 22
//! encoding 16 bytes from a CSPRNG. Any shard can route a request to the
//! session's owner from the id alone, and the 128 random bits make ids
//! unguessable, which is all that protects a polling session.

use std::fmt;

use rand::RngCore;

/// Shard indexes must be below this (12 bits).
pub const MAX_SHARDS: usize = 4096;

const SHARD_CHARS: usize = 2;
const RANDOM_BYTES: usize = 16;
const RANDOM_CHARS: usize = 22;
/// Length of every session id.
pub const SID_LEN: usize = SHARD_CHARS + RANDOM_CHARS;

/// URL-safe base64 (RFC 4648 §5): safe in query strings and cookies unescaped.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn value(c: u8) -> Option<u8> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    })
}

/// A session id; always valid ASCII by construction.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sid([u8; SID_LEN]);

/// Hashed by sixteen of its random characters (96 random bits) as two
/// words, not all 24 bytes with a length prefix: the shard maps look a
/// session up once per message. Equal ids hash equally; ids are made by
/// the server from a CSPRNG, so a client cannot choose colliding ones.
impl std::hash::Hash for Sid {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&self.0[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        state.write_u64(word(SHARD_CHARS));
        state.write_u64(word(SHARD_CHARS + 8));
    }
}

impl Sid {
    /// A fresh id owned by `shard`, random bits from the thread-local
    /// CSPRNG (ChaCha, seeded from the OS).
    ///
    /// # Panics
    /// If `shard >= MAX_SHARDS`: a configuration error, checked at startup.
    pub fn generate(shard: usize) -> Sid {
        let mut random = [0u8; RANDOM_BYTES];
        rand::rng().fill_bytes(&mut random);
        Sid::from_parts(shard, &random)
    }

    fn from_parts(shard: usize, random: &[u8; RANDOM_BYTES]) -> Sid {
        assert!(shard < MAX_SHARDS, "shard {shard} >= {MAX_SHARDS}");
        let mut out = [0u8; SID_LEN];
        out[0] = ALPHABET[shard >> 6];
        out[1] = ALPHABET[shard & 63];
        // 16 bytes = 128 bits = 21 full 6-bit groups + 2 bits in the last char
        let mut acc: u32 = 0;
        let mut bits = 0;
        let mut pos = SHARD_CHARS;
        for &b in random {
            acc = (acc << 8) | b as u32;
            bits += 8;
            while bits >= 6 {
                bits -= 6;
                out[pos] = ALPHABET[((acc >> bits) & 63) as usize];
                pos += 1;
            }
        }
        out[pos] = ALPHABET[((acc << (6 - bits)) & 63) as usize];
        debug_assert_eq!(pos + 1, SID_LEN);
        Sid(out)
    }

    /// Parse an id from a query string or cookie. Anything a generated id
    /// could not be is refused: wrong length, a character outside URL-safe
    /// base64, or a last character with bits set beyond the 128 random ones.
    /// A well-formed but forged id parses; the session lookup refuses it.
    pub fn parse(s: &str) -> Option<Sid> {
        let bytes: [u8; SID_LEN] = s.as_bytes().try_into().ok()?;
        for &c in &bytes {
            value(c)?;
        }
        // the last char carries 2 bits; the low 4 must be zero
        if value(bytes[SID_LEN - 1])? & 0x0f != 0 {
            return None;
        }
        Some(Sid(bytes))
    }

    /// The shard that owns the session.
    pub fn shard(&self) -> usize {
        // both chars were validated on construction
        let hi = value(self.0[0]).unwrap_or(0) as usize;
        let lo = value(self.0[1]).unwrap_or(0) as usize;
        (hi << 6) | lo
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("sid bytes are ASCII")
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.as_str())
    }
}

impl std::str::FromStr for Sid {
    type Err = ();

    fn from_str(s: &str) -> Result<Sid, ()> {
        Sid::parse(s).ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use std::collections::HashSet;

    #[test]
    fn format() {
        let sid = Sid::generate(5);
        let s = sid.as_str();
        assert_eq!(s.len(), 24);
        assert!(s.bytes().all(|c| value(c).is_some()), "{s}");
        assert_eq!(&s[..2], "AF");
        assert!(b"AQgw".contains(&s.as_bytes()[23]), "{s}");
        assert_eq!(sid.to_string(), s);
        assert_eq!(format!("{sid:?}"), format!("Sid({s})"));
    }

    #[test]
    fn random_part_is_base64url_of_the_bytes() {
        let random: [u8; 16] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xa5);
        let sid = Sid::from_parts(4095, &random);
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
        assert_eq!(&sid.as_str()[2..], expected);
        assert_eq!(&sid.as_str()[..2], "__");
        let zero = Sid::from_parts(0, &[0; 16]);
        assert_eq!(zero.as_str(), "AAAAAAAAAAAAAAAAAAAAAAAA");
        let ones = Sid::from_parts(64, &[0xff; 16]);
        assert_eq!(ones.as_str(), "BA_____________________w");
    }

    #[test]
    fn shard_round_trip_all() {
        for shard in 0..MAX_SHARDS {
            let sid = Sid::generate(shard);
            assert_eq!(sid.shard(), shard);
            let parsed = Sid::parse(sid.as_str()).unwrap();
            assert_eq!(parsed, sid);
            assert_eq!(parsed.shard(), shard);
        }
    }

    #[test]
    fn unique() {
        let mut seen = HashSet::new();
        for i in 0..20_000 {
            assert!(seen.insert(Sid::generate(i % 3)));
        }
        // and the random parts differ, not just the shard
        let randoms: HashSet<String> = seen.iter().map(|s| s.as_str()[2..].to_owned()).collect();
        assert_eq!(randoms.len(), 20_000);
    }

    #[test]
    #[should_panic(expected = "shard 4096")]
    fn shard_out_of_range() {
        let _ = Sid::generate(MAX_SHARDS);
    }

    #[test]
    fn parse_rejects_tampering() {
        let good = Sid::generate(7).to_string();
        assert!(Sid::parse(&good).is_some());
        assert_eq!(good.parse::<Sid>().ok(), Sid::parse(&good));
        // length
        assert_eq!(Sid::parse(""), None);
        assert_eq!(Sid::parse(&good[..23]), None);
        assert_eq!(Sid::parse(&format!("{good}A")), None);
        assert_eq!(Sid::parse(&format!("{good}=")), None);
        // charset, at every position
        for bad in [b'+', b'/', b'=', b' ', b'.', b'%', 0, 0x7f] {
            for i in 0..SID_LEN {
                let mut b = good.clone().into_bytes();
                b[i] = bad;
                let s = String::from_utf8(b).unwrap();
                assert_eq!(Sid::parse(&s), None, "{s:?}");
            }
        }
        // 24 bytes but not 24 ASCII chars
        let mut s = good[..22].to_owned();
        s.push('é');
        assert_eq!(s.len(), 24);
        assert_eq!(Sid::parse(&s), None);
        // non-canonical last char (bits beyond the 128)
        for last in ['B', 'R', 'h', 'x', '_', '9'] {
            let s = format!("{}{last}", &good[..23]);
            assert_eq!(Sid::parse(&s), None, "{s}");
        }
        for last in ['A', 'Q', 'g', 'w'] {
            let s = format!("{}{last}", &good[..23]);
            assert!(Sid::parse(&s).is_some(), "{s}");
        }
        // a forged but well-formed id parses; the session table refuses it
        let mut b = good.into_bytes();
        b[10] = if b[10] == b'x' { b'y' } else { b'x' };
        assert!(Sid::parse(std::str::from_utf8(&b).unwrap()).is_some());
    }

    #[test]
    fn garbage_never_panics() {
        for input in crate::engineio::packet::tests::garbage_inputs() {
            let s = String::from_utf8_lossy(&input);
            if let Some(sid) = Sid::parse(&s) {
                assert_eq!(sid.as_str(), s);
                assert!(sid.shard() < MAX_SHARDS);
            }
        }
    }
}
