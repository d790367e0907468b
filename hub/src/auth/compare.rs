//! Constant-time comparison of secrets.

use subtle::ConstantTimeEq;

/// Equal-length inputs compared without early exit; unequal lengths are
/// unequal (length may leak, content must not).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn equal_inputs() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"a", b"a"));
        assert!(constant_time_eq(b"secret value", b"secret value"));
        let long = vec![0xa5u8; 4096];
        assert!(constant_time_eq(&long, &long.clone()));
    }

    #[test]
    fn different_content() {
        assert!(!constant_time_eq(b"a", b"b"));
        assert!(!constant_time_eq(b"secret value", b"secret valuf"));
        assert!(!constant_time_eq(b"xecret value", b"secret value"));
        assert!(!constant_time_eq(
            &[0u8; 32],
            &[
                0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0, 0
            ]
        ));
    }

    #[test]
    fn every_single_bit_flip_is_unequal() {
        let a: Vec<u8> = (0..32u8).collect();
        for i in 0..a.len() {
            for bit in 0..8 {
                let mut b = a.clone();
                b[i] ^= 1 << bit;
                assert!(!constant_time_eq(&a, &b), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn different_lengths() {
        assert!(!constant_time_eq(b"", b"a"));
        assert!(!constant_time_eq(b"a", b""));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        // A prefix is not equal.
        assert!(!constant_time_eq(&[0u8; 31], &[0u8; 32]));
    }
}
