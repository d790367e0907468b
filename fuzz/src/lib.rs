//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! Most targets read their input as `<config byte>[<split byte>]<raw bytes>`:
//! the raw bytes are what a peer sends (an HTTP request, WebSocket frames, a
//! polling body...), so seeds are the tests' literal payloads behind one or
//! two bytes, and libFuzzer mutates the configuration (limits, protocol
//! version, how the bytes are split across reads) along with the payload.
//!
//! The helpers' own tests run with
//! `cargo +nightly test --manifest-path fuzz/Cargo.toml --lib` (not in
//! `scripts/test`, where they would cost a second build of hub).

use serde_json::Value;

/// The first byte of `data` (0 when empty) and the rest.
pub fn take_byte(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&b, rest)) => (b, rest),
        None => (0, data),
    }
}

/// Cuts `data` into consecutive pieces, as reads from a socket would: the
/// sizes come from a small PRNG seeded by `seed`, so libFuzzer explores the
/// splits by mutating one byte. One seed in eight feeds byte by byte; the
/// others use pieces of up to 3, 16 or 256 bytes.
pub fn pieces(data: &[u8], seed: u8) -> Vec<&[u8]> {
    let max = match seed & 7 {
        0 => 1,
        1 | 2 => 3,
        3..=5 => 16,
        _ => 256,
    };
    // xorshift64*; any non-zero state will do.
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(seed).wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let n = (1 + (r >> 33) as usize % max).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        out.push(piece);
        rest = tail;
    }
    out
}

/// `value` after a trip through JSON text with serde_json alone: what any
/// correct decoder built on serde_json must give back for it.
///
/// Compare decoded values with this, not with the value encoded: without
/// serde_json's `float_roundtrip` feature (hub does not enable it) its float
/// parser is not correctly rounded and lands up to a few ULPs away from the
/// value that was printed (seen: `-9.926155996112947e-234` parses two ULPs
/// off), which is serde_json's precision, not a bug of the code under test.
pub fn through_json_text(value: &Value) -> Value {
    serde_json::from_str(&value.to_string()).expect("serde_json reads what it writes")
}

/// `Option<Value>` through [`through_json_text`].
pub fn through_json_text_opt(value: Option<&Value>) -> Option<Value> {
    value.map(through_json_text)
}

/// Turn a frame as the server writes it (unmasked, from `hub::ws::codec`'s
/// encoders) into the same frame as a client must send it: mask bit set,
/// `key` after the length, payload XORed with it.
pub fn mask_server_frame(frame: &[u8], key: [u8; 4]) -> Vec<u8> {
    let head_len = match frame[1] & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mut out = Vec::with_capacity(frame.len() + 4);
    out.extend_from_slice(&frame[..head_len]);
    out[1] |= 0x80;
    out.extend_from_slice(&key);
    out.extend(
        frame[head_len..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4]),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_input_in_order() {
        let data: Vec<u8> = (0..=255).collect();
        for seed in 0..=255 {
            let joined: Vec<u8> = pieces(&data, seed).concat();
            assert_eq!(joined, data);
        }
        assert!(pieces(&data, 0).iter().all(|p| p.len() == 1));
        assert!(pieces(&[], 9).is_empty());
    }

    #[test]
    fn json_text_trip_is_serde_json_alone() {
        let v = serde_json::json!([1.5, {"b": [null, "é"], "a": 2}, -7]);
        assert_eq!(through_json_text(&v), v);
        // serde_json's best-effort float parsing, which the targets tolerate.
        let printed = f64::from_bits(0x8f8f_8f8f_3b8f_8f8f);
        let back = through_json_text(&serde_json::json!(printed));
        assert_eq!(back.as_f64().map(f64::to_bits), Some(0x8f8f_8f8f_3b8f_8f91));
    }

    #[test]
    fn masking_matches_rfc6455_example() {
        // RFC 6455 5.7: "Hello", masked with 37 fa 21 3d.
        let unmasked = [0x81, 0x05, b'H', b'e', b'l', b'l', b'o'];
        let masked = mask_server_frame(&unmasked, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(
            masked,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }
}
