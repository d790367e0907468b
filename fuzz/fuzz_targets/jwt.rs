//! HS256 token verification (`hub::auth::TokenVerifier::verify`), which
//! reads the `token` a client sends in its CONNECT auth or query.
//!
//! Input: `<mode byte><bytes>`. Mode bit 0 clear: the bytes are the token
//! (lossy UTF-8: a token arrives as a JSON or query string). Mode bit 0
//! set: the bytes are `<header JSON>0x00<claims JSON>` (or just the claims
//! JSON, under the usual header), signed with the right key, so that the
//! header checks and the claims parser are reached. Bits 1-2 pick "now".
//!
//! Checks: no panic; a correctly signed token is never refused for its
//! signature; accepted claims are the ones in the payload (`exp` in the
//! future, `sub` and the room patterns as given); and the patterns match
//! rooms (`glob_match`) without panicking.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use hub::auth::{Claims, TokenError, TokenVerifier};
use hub_fuzz::take_byte;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sha2::Sha256;

const SECRET: &[u8] = b"hub-fuzz-secret";
const STANDARD_HEADER: &[u8] = br#"{"alg":"HS256","typ":"JWT"}"#;

/// A token over any header and payload bytes, signed with [`SECRET`]
/// independently of the code under test.
fn sign_raw(header: &[u8], payload: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET).expect("any key length");
    mac.update(input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{input}.{signature}")
}

fn strings(claims: &serde_json::Map<String, Value>, name: &str) -> Vec<String> {
    match claims.get(name) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().expect("checked").to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// Accepted claims say what the payload says.
fn check_claims(claims: &Claims, payload: &[u8], now: u64) {
    assert!(claims.exp > now);
    let Ok(Value::Object(json)) = serde_json::from_slice::<Value>(payload) else {
        panic!("accepted a payload that is not a JSON object");
    };
    assert!(json.get("exp").is_some_and(Value::is_number));
    assert_eq!(
        claims.sub.as_deref(),
        json.get("sub").and_then(Value::as_str)
    );
    assert_eq!(claims.rooms, strings(&json, "rooms"));
    assert_eq!(claims.publish, strings(&json, "publish"));
}

/// The patterns against a few rooms, some of them the patterns themselves.
fn exercise_patterns(claims: &Claims) {
    let mut rooms: Vec<&str> = vec!["", "lobby", "user:42", "chat:é"];
    rooms.extend(claims.rooms.iter().map(String::as_str).take(8));
    rooms.extend(claims.publish.iter().map(String::as_str).take(8));
    for room in rooms {
        let _ = claims.may_join(room);
        let _ = claims.may_publish(room);
    }
    if let Some(own) = claims.user_room() {
        assert!(own.starts_with("user:"));
    }
}

fuzz_target!(|data: &[u8]| {
    let (mode, data) = take_byte(data);
    let now = [0, 1_700_000_000, 2_000_000_000, u64::MAX][usize::from((mode >> 1) & 3)];
    let verifier = TokenVerifier::new(SECRET);

    if mode & 1 == 0 {
        let token = String::from_utf8_lossy(data);
        if let Ok(claims) = verifier.verify(&token, now) {
            assert!(claims.exp > now);
            exercise_patterns(&claims);
        }
        return;
    }

    let (header, payload) = match data.iter().position(|&b| b == 0) {
        Some(zero) => (&data[..zero], &data[zero + 1..]),
        None => (STANDARD_HEADER, data),
    };
    let token = sign_raw(header, payload);
    match verifier.verify(&token, now) {
        Ok(claims) => {
            check_claims(&claims, payload, now);
            exercise_patterns(&claims);
        }
        Err(TokenError::BadSignature) => panic!("correctly signed token refused: {token}"),
        Err(_) => {}
    }
    // The same token with a flipped signature bit never verifies.
    let mut forged = token.into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ASCII");
    assert!(verifier.verify(&forged, now).is_err());
});
