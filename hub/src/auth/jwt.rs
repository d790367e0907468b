//! HS256 JSON Web Tokens (RFC 7519 over a compact RFC 7515 JWS): just what
//! the relay needs, strict about everything else.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::compare::constant_time_eq;
use super::glob::glob_match;

type HmacSha256 = Hmac<Sha256>;

/// What a verified token allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// Expiry, seconds since the Unix epoch (a fractional `exp` is floored).
    pub exp: u64,
    /// The user, if any.
    pub sub: Option<String>,
    /// Glob patterns of the rooms the client may join.
    pub rooms: Vec<String>,
    /// Glob patterns of the rooms the client may publish to.
    pub publish: Vec<String>,
}

impl Claims {
    /// Whether some pattern in `rooms` matches `room`.
    pub fn may_join(&self, room: &str) -> bool {
        self.rooms.iter().any(|p| glob_match(p, room))
    }

    /// Whether some pattern in `publish` matches `room`.
    pub fn may_publish(&self, room: &str) -> bool {
        self.publish.iter().any(|p| glob_match(p, room))
    }

    /// The user's own room, `user:<sub>`, when there is a `sub`.
    pub fn user_room(&self) -> Option<String> {
        self.sub.as_ref().map(|sub| format!("user:{sub}"))
    }
}

/// Why a token was refused. Clients only ever see `unauthorized`; these are
/// for logs and tests.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url segments, or a header or payload that is not a
    /// JSON object.
    #[error("malformed token")]
    Malformed,
    /// A header `alg` other than `HS256` (the string is the `alg` as JSON,
    /// or `missing`).
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// The HMAC-SHA256 signature does not match.
    #[error("bad signature")]
    BadSignature,
    /// No `exp` claim.
    #[error("missing exp claim")]
    MissingExpiry,
    /// `now >= exp`.
    #[error("token expired")]
    Expired,
    /// A known claim of the wrong type.
    #[error("invalid claims: {0}")]
    InvalidClaims(String),
}

/// Verifies (and mints) HS256 tokens with one shared secret.
#[derive(Clone)]
pub struct TokenVerifier {
    /// HMAC-SHA256 keyed with the secret, cloned for every token.
    mac: HmacSha256,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str("TokenVerifier { .. }")
    }
}

impl TokenVerifier {
    /// A verifier for tokens signed with `secret` (any length, empty included).
    pub fn new(secret: &[u8]) -> TokenVerifier {
        let mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
            .expect("HMAC accepts keys of any length");
        TokenVerifier { mac }
    }

    /// Verify a compact JWS: header must be {"alg":"HS256"} (a "typ" of
    /// "JWT" or absent is fine; any other alg, "none" included, is
    /// UnsupportedAlgorithm), signature HMAC-SHA256 over
    /// "<header>.<payload>" compared in constant time, base64url without
    /// padding (refuse padding and non-url alphabet), payload a JSON object;
    /// `exp` required, a number (integer or float; floor it); expired when
    /// now_unix >= exp; `sub` a string if present (a number sub:
    /// InvalidClaims); `rooms`/`publish` arrays of strings if present (else
    /// InvalidClaims). Unknown claims are ignored. Never panic on any input.
    ///
    /// The checks run in this order: structure and base64 of all three
    /// segments, header, signature, then the payload, so nothing in an
    /// unauthenticated payload is looked at.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header = decode_segment(header_b64)?;
        let payload = decode_segment(payload_b64)?;
        let signature = decode_segment(signature_b64)?;

        check_header(&header)?;

        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        if !constant_time_eq(&self.mac_of(signing_input.as_bytes()), &signature) {
            return Err(TokenError::BadSignature);
        }

        let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(&payload) else {
            return Err(TokenError::Malformed);
        };
        let claims = parse_claims(&claims)?;
        if now_unix >= claims.exp {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// Mint a token (tests, tools): header {"alg":"HS256","typ":"JWT"}, the
    /// given claims as a JSON object. (Whatever JSON `claims` is gets
    /// signed; anything but an object will not verify.)
    pub fn sign(&self, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(self.mac_of(signing_input.as_bytes()));
        format!("{signing_input}.{signature}")
    }

    fn mac_of(&self, data: &[u8]) -> Vec<u8> {
        let mut mac = self.mac.clone();
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
}

/// base64url without padding; the engine refuses `=`, `+`, `/`, whitespace
/// and non-canonical trailing bits.
fn decode_segment(segment: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed)
}

fn check_header(header: &[u8]) -> Result<(), TokenError> {
    let Ok(Value::Object(header)) = serde_json::from_slice::<Value>(header) else {
        return Err(TokenError::Malformed);
    };
    match header.get("alg") {
        Some(Value::String(alg)) if alg == "HS256" => {}
        Some(other) => return Err(TokenError::UnsupportedAlgorithm(alg_name(other))),
        None => return Err(TokenError::UnsupportedAlgorithm("missing".into())),
    }
    match header.get("typ") {
        None => {}
        // RFC 7519 §5.1 recommends "JWT" and compares it case-insensitively.
        Some(Value::String(typ)) if typ.eq_ignore_ascii_case("JWT") => {}
        Some(_) => return Err(TokenError::Malformed),
    }
    // RFC 7515 §4.1.11: extensions marked critical that we do not
    // understand (we understand none) make the token invalid.
    if header.contains_key("crit") {
        return Err(TokenError::Malformed);
    }
    Ok(())
}

/// How to name an `alg` in the error: the string itself, else its JSON.
fn alg_name(alg: &Value) -> String {
    let mut name = match alg {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    // It goes into logs: keep it short.
    if name.len() > 32 {
        let mut end = 32;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
        name.push('…');
    }
    name
}

fn parse_claims(claims: &Map<String, Value>) -> Result<Claims, TokenError> {
    let exp = match claims.get("exp") {
        None => return Err(TokenError::MissingExpiry),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                u
            } else if let Some(f) = n.as_f64() {
                // Floored; negative is long past (0), beyond u64 saturates.
                // `as` saturates and maps NaN (which JSON cannot carry) to 0.
                f.floor() as u64
            } else {
                0
            }
        }
        Some(_) => return Err(TokenError::InvalidClaims("exp must be a number".into())),
    };
    let sub = match claims.get("sub") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(TokenError::InvalidClaims("sub must be a string".into())),
    };
    Ok(Claims {
        exp,
        sub,
        rooms: string_array(claims, "rooms")?,
        publish: string_array(claims, "publish")?,
    })
}

fn string_array(claims: &Map<String, Value>, name: &str) -> Result<Vec<String>, TokenError> {
    let invalid = || TokenError::InvalidClaims(format!("{name} must be an array of strings"));
    match claims.get(name) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(invalid))
            .collect(),
        Some(_) => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;
    use serde_json::json;

    const SECRET: &[u8] = b"hub-test-secret";
    /// Far in the future (2033-05-18).
    const LATER: u64 = 2_000_000_000;
    /// 2023-11-14.
    const NOW: u64 = 1_700_000_000;

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(SECRET)
    }

    fn b64(data: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(data)
    }

    /// A token over arbitrary header and payload text, correctly signed, so
    /// that the checks after the signature can be reached.
    fn sign_raw(secret: &[u8], header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let mut mac = HmacSha256::new_from_slice(secret).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(mac.finalize().into_bytes()))
    }

    fn sign_payload(payload: &str) -> String {
        sign_raw(SECRET, r#"{"alg":"HS256","typ":"JWT"}"#, payload)
    }

    fn claims(exp: u64) -> Claims {
        Claims {
            exp,
            sub: None,
            rooms: vec![],
            publish: vec![],
        }
    }

    // ---- known answers: tokens made by Node's crypto.createHmac ----

    /// `{"alg":"HS256","typ":"JWT"}` /
    /// `{"sub":"alice","exp":2000000000,"iat":1700000000,"rooms":["chat:*","news/?"],"publish":["chat:lobby"],"name":"Alice ✓"}`
    /// signed with "hub-test-secret" by Node 20's `crypto.createHmac('sha256', secret)`.
    const NODE_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MjAwMDAwMDAwMCwiaWF0IjoxNzAwMDAwMDAwLCJyb29tcyI6WyJjaGF0OioiLCJuZXdzLz8iXSwicHVibGlzaCI6WyJjaGF0OmxvYmJ5Il0sIm5hbWUiOiJBbGljZSDinJMifQ.pFRXbSg6eo36DEpE0ui8lXhGu8Ml-74I3lF5x_tdMag";
    /// `{"typ":"JWT","alg":"HS256"}` / `{"exp":1700000000.9}`, same secret.
    const NODE_TOKEN_FLOAT_EXP: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDAuOX0.fNrbowntH67oEKiUwikBWKgav08C1kGTRqNSMaPCZDo";
    /// `{"alg":"HS256"}` (no typ) / `{"exp":2000000000,"rooms":[]}`, same secret.
    const NODE_TOKEN_NO_TYP: &str = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjIwMDAwMDAwMDAsInJvb21zIjpbXX0.WPvZ5jqAdRd2bwlQqoSzeSGiDckE6V2DigsmIlEQP4Y";

    #[test]
    fn verifies_a_node_token() {
        let claims = verifier().verify(NODE_TOKEN, NOW).unwrap();
        assert_eq!(
            claims,
            Claims {
                exp: LATER,
                sub: Some("alice".into()),
                rooms: vec!["chat:*".into(), "news/?".into()],
                publish: vec!["chat:lobby".into()],
            }
        );
        assert_eq!(claims.user_room().as_deref(), Some("user:alice"));
        assert!(claims.may_join("chat:lobby"));
        assert!(claims.may_join("news/1"));
        assert!(!claims.may_join("news/12"));
        assert!(!claims.may_join("user:bob"));
        assert!(claims.may_publish("chat:lobby"));
        assert!(!claims.may_publish("chat:other"));
    }

    #[test]
    fn verifies_node_token_with_float_exp_and_reordered_header() {
        let v = verifier();
        assert_eq!(v.verify(NODE_TOKEN_FLOAT_EXP, NOW - 1), Ok(claims(NOW)));
        // Floored: 1700000000.9 expires at 1700000000.
        assert_eq!(
            v.verify(NODE_TOKEN_FLOAT_EXP, NOW),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn verifies_node_token_without_typ() {
        assert_eq!(verifier().verify(NODE_TOKEN_NO_TYP, NOW), Ok(claims(LATER)));
    }

    #[test]
    fn node_token_with_other_secret_is_refused() {
        let other = TokenVerifier::new(b"hub-test-secreT");
        assert_eq!(other.verify(NODE_TOKEN, NOW), Err(TokenError::BadSignature));
        assert_eq!(
            TokenVerifier::new(b"").verify(NODE_TOKEN, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn sign_matches_node_byte_for_byte() {
        // Our header is Node's JSON.stringify of {alg, typ}, and serde_json
        // (preserve_order) keeps the claims' order, so the token is the same.
        let payload = json!({
            "sub": "alice", "exp": 2000000000u64, "iat": 1700000000u64,
            "rooms": ["chat:*", "news/?"], "publish": ["chat:lobby"], "name": "Alice ✓",
        });
        assert_eq!(verifier().sign(&payload), NODE_TOKEN);
    }

    // ---- round trips ----

    #[test]
    fn round_trip_minimal() {
        let v = verifier();
        let token = v.sign(&json!({"exp": LATER}));
        assert_eq!(v.verify(&token, NOW), Ok(claims(LATER)));
        assert_eq!(v.verify(&token, NOW).unwrap().user_room(), None);
    }

    #[test]
    fn round_trip_full_and_unknown_claims_ignored() {
        let v = verifier();
        let token = v.sign(&json!({
            "exp": LATER, "sub": "bob", "rooms": ["a", "b*"], "publish": ["*"],
            "iat": 1, "nbf": "whatever", "aud": ["x"], "nested": {"deep": [1, 2, {}]},
        }));
        let c = v.verify(&token, NOW).unwrap();
        assert_eq!(c.sub.as_deref(), Some("bob"));
        assert_eq!(c.rooms, vec!["a", "b*"]);
        assert_eq!(c.publish, vec!["*"]);
        assert!(c.may_join("a") && c.may_join("b") && c.may_join("bcd"));
        assert!(!c.may_join("ab") && !c.may_join(""));
        assert!(c.may_publish("") && c.may_publish("anything/at:all"));
        assert_eq!(c.user_room().as_deref(), Some("user:bob"));
    }

    #[test]
    fn round_trip_with_unicode_and_empty_and_long_secrets() {
        for secret in [
            &b""[..],
            b"k",
            "sécret ✓".as_bytes(),
            &[0u8; 64],
            &[0xffu8; 200],
        ] {
            let v = TokenVerifier::new(secret);
            let token = v.sign(&json!({"exp": LATER, "sub": "ü", "rooms": ["日本*"]}));
            let c = v.verify(&token, NOW).unwrap();
            assert_eq!(c.sub.as_deref(), Some("ü"));
            assert!(c.may_join("日本語"));
            // And a different secret refuses it.
            let mut other = secret.to_vec();
            other.push(b'x');
            assert_eq!(
                TokenVerifier::new(&other).verify(&token, NOW),
                Err(TokenError::BadSignature)
            );
        }
    }

    #[test]
    fn sign_uses_the_documented_header() {
        let token = verifier().sign(&json!({"exp": 1}));
        let header = token.split('.').next().unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(header).unwrap(),
            br#"{"alg":"HS256","typ":"JWT"}"#
        );
        assert!(!token.contains('='));
    }

    #[test]
    fn no_claims_means_no_rooms() {
        let c = verifier()
            .verify(&verifier().sign(&json!({"exp": LATER})), NOW)
            .unwrap();
        assert!(!c.may_join("lobby"));
        assert!(!c.may_join(""));
        assert!(!c.may_publish("lobby"));
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let s = format!("{:?}", TokenVerifier::new(b"super-secret-value"));
        assert!(!s.contains("super"), "{s}");
    }

    #[test]
    fn verifier_clones_verify_alike() {
        let v = verifier();
        let w = v.clone();
        let token = v.sign(&json!({"exp": LATER}));
        assert_eq!(w.verify(&token, NOW), v.verify(&token, NOW));
        // The MAC state is not shared or consumed between calls.
        for _ in 0..3 {
            assert!(v.verify(&token, NOW).is_ok());
        }
    }

    // ---- malformed ----

    #[test]
    fn wrong_number_of_parts() {
        let v = verifier();
        let good = v.sign(&json!({"exp": LATER}));
        let parts: Vec<&str> = good.split('.').collect();
        for bad in [
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            parts[0].into(),
            format!("{}.{}", parts[0], parts[1]),
            format!("{good}."),
            format!("{good}.{}", parts[2]),
            format!(".{good}"),
            parts.join(".."),
            "not a token".into(),
        ] {
            assert_eq!(v.verify(&bad, NOW), Err(TokenError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn bad_base64() {
        let v = verifier();
        let good = v.sign(&json!({"exp": LATER, "sub": "x"}));
        let parts: Vec<&str> = good.split('.').collect();
        for i in 0..3 {
            for junk in ["!", " ", "*", "\u{e9}", "\0", "%"] {
                let mut p: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
                p[i].insert_str(1, junk);
                assert_eq!(
                    v.verify(&p.join("."), NOW),
                    Err(TokenError::Malformed),
                    "part {i} {junk:?}"
                );
            }
        }
        // A single base64 character is never a whole byte.
        let token = format!("A.{}.{}", parts[1], parts[2]);
        assert_eq!(v.verify(&token, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn padding_is_refused() {
        use base64::engine::general_purpose::URL_SAFE;
        let v = verifier();
        // The signature is 32 bytes: 43 characters, one `=` of padding in
        // padded base64.
        let good = v.sign(&json!({"exp": LATER}));
        let (input, sig) = good.rsplit_once('.').unwrap();
        let padded_sig = URL_SAFE.encode(URL_SAFE_NO_PAD.decode(sig).unwrap());
        assert!(padded_sig.ends_with('='));
        assert_eq!(
            v.verify(&format!("{input}.{padded_sig}"), NOW),
            Err(TokenError::Malformed)
        );
        // A payload (19 bytes) and a header (16 bytes) that need padding,
        // padded, and signed over the padded text: refused all the same.
        let payload = r#"{"exp":2000000000 }"#;
        let header = r#"{"alg":"HS256" }"#;
        for (h, p) in [
            (URL_SAFE_NO_PAD.encode(header), URL_SAFE.encode(payload)),
            (URL_SAFE.encode(header), URL_SAFE_NO_PAD.encode(payload)),
        ] {
            assert!(h.ends_with('=') || p.ends_with('='));
            let input = format!("{h}.{p}");
            let mut mac = HmacSha256::new_from_slice(SECRET).unwrap();
            mac.update(input.as_bytes());
            let token = format!("{input}.{}", b64(mac.finalize().into_bytes()));
            assert_eq!(v.verify(&token, NOW), Err(TokenError::Malformed), "{token}");
        }
        // Sanity: the same without padding verifies.
        assert_eq!(
            v.verify(&sign_raw(SECRET, header, payload), NOW),
            Ok(claims(LATER))
        );
    }

    #[test]
    fn standard_alphabet_is_refused() {
        let v = verifier();
        // Find a token whose signature uses `-` or `_`, then translate it to
        // the standard alphabet.
        let token = (0..1000u64)
            .map(|i| v.sign(&json!({"exp": LATER, "n": i})))
            .find(|t| t.rsplit('.').next().unwrap().contains(['-', '_']))
            .unwrap();
        assert!(v.verify(&token, NOW).is_ok());
        let (input, sig) = token.rsplit_once('.').unwrap();
        let standard = sig.replace('-', "+").replace('_', "/");
        assert_eq!(
            v.verify(&format!("{input}.{standard}"), NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn non_canonical_trailing_bits_are_refused() {
        // 32 bytes = 43 characters whose last carries 2 unused bits; setting
        // them gives a different string for the same bytes. Accepting it
        // would make signatures malleable.
        let v = verifier();
        let token = (0..1000u64)
            .map(|i| v.sign(&json!({"exp": LATER, "n": i})))
            .find(|t| t.ends_with('A'))
            .unwrap();
        let altered = format!("{}B", &token[..token.len() - 1]);
        assert_eq!(v.verify(&altered, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn header_not_json_or_not_object() {
        let v = verifier();
        for header in [
            "",
            "{",
            "not json",
            "[]",
            r#""HS256""#,
            "null",
            "1",
            r#"["alg","HS256"]"#,
            "{\"alg\":\"HS256\"}x",
        ] {
            let token = sign_raw(SECRET, header, r#"{"exp":2000000000}"#);
            assert_eq!(
                v.verify(&token, NOW),
                Err(TokenError::Malformed),
                "{header:?}"
            );
        }
        // Not UTF-8.
        let token = format!("{}.{}.{}", b64([0xff, 0xfe]), b64("{}"), b64([0u8; 32]));
        assert_eq!(v.verify(&token, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn payload_not_json_or_not_object() {
        let v = verifier();
        for payload in [
            "",
            "{",
            "not json",
            "[]",
            "[{\"exp\":2000000000}]",
            r#""exp""#,
            "null",
            "2000000000",
            "true",
            "{\"exp\":2000000000}x",
        ] {
            let token = sign_payload(payload);
            assert_eq!(
                v.verify(&token, NOW),
                Err(TokenError::Malformed),
                "{payload:?}"
            );
        }
        let token = sign_raw(SECRET, r#"{"alg":"HS256"}"#, "\u{0}");
        assert_eq!(v.verify(&token, NOW), Err(TokenError::Malformed));
        // sign() of a non-object signs it, and verify refuses it.
        assert_eq!(
            v.verify(&v.sign(&json!([1, 2])), NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn deeply_nested_payload_is_refused_not_a_stack_overflow() {
        let v = verifier();
        let deep = format!(
            "{{\"exp\":2000000000,\"x\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(
            v.verify(&sign_payload(&deep), NOW),
            Err(TokenError::Malformed)
        );
        let deep_header = format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let token = sign_raw(SECRET, &deep_header, r#"{"exp":2000000000}"#);
        assert_eq!(v.verify(&token, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn header_typ_other_than_jwt_and_crit_are_refused() {
        let v = verifier();
        for header in [
            r#"{"alg":"HS256","typ":"JWS"}"#,
            r#"{"alg":"HS256","typ":""}"#,
            r#"{"alg":"HS256","typ":1}"#,
            r#"{"alg":"HS256","typ":null}"#,
            r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
        ] {
            let token = sign_raw(SECRET, header, r#"{"exp":2000000000}"#);
            assert_eq!(
                v.verify(&token, NOW),
                Err(TokenError::Malformed),
                "{header}"
            );
        }
        // Case-insensitive "JWT", and other header fields, are fine.
        for header in [
            r#"{"alg":"HS256","typ":"jwt"}"#,
            r#"{"kid":"k1","alg":"HS256"}"#,
        ] {
            let token = sign_raw(SECRET, header, r#"{"exp":2000000000}"#);
            assert_eq!(v.verify(&token, NOW), Ok(claims(LATER)), "{header}");
        }
    }

    // ---- algorithms ----

    #[test]
    fn other_algorithms_are_refused() {
        let v = verifier();
        let cases = [
            (r#"{"alg":"none","typ":"JWT"}"#, "none"),
            (r#"{"alg":"None"}"#, "None"),
            (r#"{"alg":"HS512","typ":"JWT"}"#, "HS512"),
            (r#"{"alg":"HS384"}"#, "HS384"),
            (r#"{"alg":"RS256","typ":"JWT"}"#, "RS256"),
            (r#"{"alg":"ES256"}"#, "ES256"),
            (r#"{"alg":"hs256"}"#, "hs256"),
            (r#"{"alg":"HS256 "}"#, "HS256 "),
            (r#"{"alg":""}"#, ""),
            (r#"{"alg":null}"#, "null"),
            (r#"{"alg":256}"#, "256"),
            (r#"{"alg":["HS256"]}"#, r#"["HS256"]"#),
            (r#"{"typ":"JWT"}"#, "missing"),
            (r#"{}"#, "missing"),
        ];
        for (header, name) in cases {
            // Correctly HMAC-signed or not, the algorithm is refused first.
            let token = sign_raw(SECRET, header, r#"{"exp":2000000000}"#);
            assert_eq!(
                v.verify(&token, NOW),
                Err(TokenError::UnsupportedAlgorithm(name.into())),
                "{header}"
            );
        }
    }

    #[test]
    fn alg_none_with_empty_signature_is_refused() {
        let token = format!(
            "{}.{}.",
            b64(r#"{"alg":"none"}"#),
            b64(r#"{"exp":2000000000}"#)
        );
        assert_eq!(
            verifier().verify(&token, NOW),
            Err(TokenError::UnsupportedAlgorithm("none".into()))
        );
    }

    #[test]
    fn long_alg_is_truncated_in_the_error() {
        let header = format!(r#"{{"alg":"{}"}}"#, "é".repeat(100));
        let token = sign_raw(SECRET, &header, r#"{"exp":2000000000}"#);
        match verifier().verify(&token, NOW) {
            Err(TokenError::UnsupportedAlgorithm(name)) => {
                assert!(name.len() <= 32 + '…'.len_utf8(), "{name}");
                assert!(name.ends_with('…'));
            }
            other => panic!("{other:?}"),
        }
    }

    // ---- signatures ----

    #[test]
    fn every_flipped_signature_bit_is_refused() {
        let v = verifier();
        let token = v.sign(&json!({"exp": LATER, "sub": "alice"}));
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        assert_eq!(sig.len(), 32);
        for i in 0..sig.len() {
            for bit in 0..8 {
                let mut bad = sig.clone();
                bad[i] ^= 1 << bit;
                let t = format!("{input}.{}", b64(&bad));
                assert_eq!(
                    v.verify(&t, NOW),
                    Err(TokenError::BadSignature),
                    "byte {i} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn empty_short_and_long_signatures_are_refused() {
        let v = verifier();
        let token = v.sign(&json!({"exp": LATER}));
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        assert_eq!(
            v.verify(&format!("{input}."), NOW),
            Err(TokenError::BadSignature)
        );
        let short = format!("{input}.{}", b64(&sig[..31]));
        assert_eq!(v.verify(&short, NOW), Err(TokenError::BadSignature));
        let mut longer = sig.clone();
        longer.push(0);
        let long = format!("{input}.{}", b64(&longer));
        assert_eq!(v.verify(&long, NOW), Err(TokenError::BadSignature));
        // A 64-byte signature, as HS512 would make.
        let double = format!("{input}.{}", b64([sig.clone(), sig].concat()));
        assert_eq!(v.verify(&double, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn tampered_payload_or_header_is_refused() {
        let v = verifier();
        let token = v.sign(&json!({"exp": LATER, "rooms": ["chat:*"]}));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64(r#"{"exp":2000000000,"rooms":["*"]}"#);
        let t = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(v.verify(&t, NOW), Err(TokenError::BadSignature));
        // Same header JSON, encoded differently (whitespace): the signature
        // covers the text, not the meaning.
        let header = b64(r#"{"alg":"HS256", "typ":"JWT"}"#);
        let t = format!("{header}.{}.{}", parts[1], parts[2]);
        assert_eq!(v.verify(&t, NOW), Err(TokenError::BadSignature));
        // Signature of the other token grafted on.
        let other = v.sign(&json!({"exp": LATER, "rooms": ["*"]}));
        let t = format!(
            "{}.{}.{}",
            parts[0],
            other.split('.').nth(1).unwrap(),
            parts[2]
        );
        assert_eq!(v.verify(&t, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn signature_is_checked_before_the_payload() {
        // An unsigned payload of the wrong shape is a bad signature, not an
        // invalid claim: nothing unauthenticated is interpreted.
        let v = verifier();
        let token = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"HS256"}"#),
            b64(r#"{"sub":1}"#),
            b64([0u8; 32])
        );
        assert_eq!(v.verify(&token, NOW), Err(TokenError::BadSignature));
        let token = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"HS256"}"#),
            b64("not json"),
            b64([0u8; 32])
        );
        assert_eq!(v.verify(&token, NOW), Err(TokenError::BadSignature));
    }

    // ---- exp ----

    #[test]
    fn missing_exp() {
        let v = verifier();
        assert_eq!(
            v.verify(&v.sign(&json!({})), NOW),
            Err(TokenError::MissingExpiry)
        );
        assert_eq!(
            v.verify(&v.sign(&json!({"sub": "a", "EXP": LATER})), NOW),
            Err(TokenError::MissingExpiry)
        );
    }

    #[test]
    fn non_numeric_exp() {
        let v = verifier();
        for exp in [
            json!("2000000000"),
            json!(null),
            json!(true),
            json!([LATER]),
            json!({"t": LATER}),
        ] {
            let token = v.sign(&json!({"exp": exp}));
            assert!(
                matches!(v.verify(&token, NOW), Err(TokenError::InvalidClaims(ref m)) if m.contains("exp")),
                "{exp}"
            );
        }
    }

    #[test]
    fn expiry_boundary() {
        let v = verifier();
        let token = v.sign(&json!({"exp": NOW}));
        assert_eq!(v.verify(&token, NOW - 1), Ok(claims(NOW)));
        assert_eq!(v.verify(&token, NOW), Err(TokenError::Expired));
        assert_eq!(v.verify(&token, NOW + 1), Err(TokenError::Expired));
        assert_eq!(v.verify(&token, u64::MAX), Err(TokenError::Expired));
        assert_eq!(v.verify(&token, 0), Ok(claims(NOW)));
    }

    #[test]
    fn odd_exp_values() {
        let v = verifier();
        // Zero and negative: long expired, even at time 0.
        for exp in [
            json!(0),
            json!(-1),
            json!(-1.5),
            json!(i64::MIN),
            json!(-1e300),
        ] {
            assert_eq!(
                v.verify(&v.sign(&json!({"exp": exp})), 0),
                Err(TokenError::Expired),
                "{exp}"
            );
        }
        // Floats are floored.
        assert_eq!(v.verify(&v.sign(&json!({"exp": 10.5})), 9), Ok(claims(10)));
        assert_eq!(
            v.verify(&v.sign(&json!({"exp": 10.5})), 10),
            Err(TokenError::Expired)
        );
        assert_eq!(
            v.verify(&v.sign(&json!({"exp": 0.99})), 0),
            Err(TokenError::Expired)
        );
        assert_eq!(v.verify(&v.sign(&json!({"exp": 1.0})), 0), Ok(claims(1)));
        // Exponent notation, and huge values saturate.
        assert_eq!(
            v.verify(&sign_payload(r#"{"exp":2e9}"#), NOW),
            Ok(claims(LATER))
        );
        assert_eq!(
            v.verify(&sign_payload(r#"{"exp":1e300}"#), NOW),
            Ok(claims(u64::MAX))
        );
        assert_eq!(
            v.verify(&v.sign(&json!({"exp": u64::MAX})), u64::MAX - 1),
            Ok(claims(u64::MAX))
        );
        assert_eq!(
            v.verify(&v.sign(&json!({"exp": u64::MAX})), u64::MAX),
            Err(TokenError::Expired)
        );
        // Beyond u64 as an integer literal: serde_json reads it as a float.
        assert_eq!(
            v.verify(
                &sign_payload(r#"{"exp":123456789012345678901234567890}"#),
                NOW
            ),
            Ok(claims(u64::MAX))
        );
    }

    #[test]
    fn expired_token_with_bad_claims_reports_the_bad_claims() {
        // Types are checked before expiry; either way the token is refused.
        let v = verifier();
        let token = v.sign(&json!({"exp": 1, "sub": 5}));
        assert!(matches!(
            v.verify(&token, NOW),
            Err(TokenError::InvalidClaims(_))
        ));
    }

    // ---- sub, rooms, publish ----

    #[test]
    fn bad_sub() {
        let v = verifier();
        for sub in [
            json!(1),
            json!(1.5),
            json!(null),
            json!(true),
            json!(["a"]),
            json!({"id": "a"}),
        ] {
            let token = v.sign(&json!({"exp": LATER, "sub": sub}));
            assert!(
                matches!(v.verify(&token, NOW), Err(TokenError::InvalidClaims(ref m)) if m.contains("sub")),
                "{sub}"
            );
        }
    }

    #[test]
    fn string_sub() {
        let v = verifier();
        let c = v
            .verify(&v.sign(&json!({"exp": LATER, "sub": "1234"})), NOW)
            .unwrap();
        assert_eq!(c.user_room().as_deref(), Some("user:1234"));
        let c = v
            .verify(&v.sign(&json!({"exp": LATER, "sub": "a:b*?"})), NOW)
            .unwrap();
        assert_eq!(c.user_room().as_deref(), Some("user:a:b*?"));
    }

    #[test]
    fn bad_rooms_and_publish() {
        let v = verifier();
        for name in ["rooms", "publish"] {
            for value in [
                json!("chat:*"),
                json!(null),
                json!(1),
                json!({"0": "chat:*"}),
                json!([1]),
                json!(["ok", null]),
                json!(["ok", ["nested"]]),
                json!([{"p": "x"}]),
                json!([true]),
            ] {
                let mut payload = json!({"exp": LATER});
                payload[name] = value.clone();
                let token = v.sign(&payload);
                assert!(
                    matches!(v.verify(&token, NOW), Err(TokenError::InvalidClaims(ref m)) if m.contains(name)),
                    "{name}: {value}"
                );
            }
        }
    }

    #[test]
    fn empty_and_present_arrays() {
        let v = verifier();
        let c = v
            .verify(
                &v.sign(&json!({"exp": LATER, "rooms": [], "publish": ["", "x"]})),
                NOW,
            )
            .unwrap();
        assert!(c.rooms.is_empty());
        assert_eq!(c.publish, vec!["", "x"]);
        assert!(c.may_publish("x"));
        assert!(!c.may_publish("y"));
    }

    // ---- never panics ----

    #[test]
    fn mutated_tokens_never_panic() {
        let v = verifier();
        let seeds = [
            v.sign(&json!({"exp": LATER, "sub": "alice", "rooms": ["chat:*"], "publish": ["chat:lobby"]})),
            NODE_TOKEN.to_string(),
            NODE_TOKEN_FLOAT_EXP.to_string(),
            sign_payload(r#"{"exp":"x","sub":[],"rooms":{}}"#),
            sign_raw(SECRET, r#"{"alg":"none"}"#, "[]"),
        ];
        let pieces: [&str; 12] = [
            "", ".", "..", "=", "==", "-", "_", "+", "/", "é", "\0", "eyJ",
        ];
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut accepted = 0;
        for round in 0..20_000 {
            let mut t: Vec<u8> = seeds[rng.below(seeds.len())].clone().into_bytes();
            for _ in 0..=rng.below(4) {
                match rng.below(6) {
                    // Flip a bit in a byte.
                    0 if !t.is_empty() => {
                        let i = rng.below(t.len());
                        t[i] ^= 1 << rng.below(8);
                    }
                    // Overwrite with a random base64url-ish or any byte.
                    1 if !t.is_empty() => {
                        let i = rng.below(t.len());
                        t[i] = if rng.below(2) == 0 {
                            b"ABCxyz019-_.=+/"[rng.below(15)]
                        } else {
                            rng.next() as u8
                        };
                    }
                    // Delete a range.
                    2 if !t.is_empty() => {
                        let i = rng.below(t.len());
                        let j = (i + rng.below(8)).min(t.len());
                        t.drain(i..j);
                    }
                    // Insert a piece.
                    3 => {
                        let i = rng.below(t.len() + 1);
                        let piece = pieces[rng.below(pieces.len())].as_bytes();
                        t.splice(i..i, piece.iter().copied());
                    }
                    // Truncate.
                    4 => t.truncate(rng.below(t.len() + 1)),
                    // Swap in a segment of another seed.
                    _ => {
                        let other = &seeds[rng.below(seeds.len())];
                        let seg = other.split('.').nth(rng.below(3)).unwrap_or("");
                        t.extend_from_slice(b".");
                        t.extend_from_slice(seg.as_bytes());
                    }
                }
            }
            // `verify` takes &str: make the bytes valid UTF-8.
            let token = String::from_utf8_lossy(&t);
            let now = if round % 2 == 0 { NOW } else { rng.next() };
            if v.verify(&token, now).is_ok() {
                accepted += 1;
            }
        }
        // Mutations almost never keep a token valid (a few do: e.g. a
        // truncated extra segment, or identical bytes). Mostly refused.
        assert!(accepted < 2_000, "{accepted}");
    }

    #[test]
    fn random_strings_never_panic() {
        let v = verifier();
        let alphabet: Vec<char> = "ABCDEFabcdef0123456789-_.=+/ {}\"é😀\0".chars().collect();
        let mut rng = Rng(7);
        for _ in 0..5_000 {
            let len = rng.below(200);
            let s: String = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            assert!(v.verify(&s, rng.next()).is_err());
            // And as segments of a correctly signed token.
            let token = sign_raw(SECRET, &s, &s);
            let _ = v.verify(&token, NOW);
            let token = sign_payload(&s);
            let _ = v.verify(&token, NOW);
        }
    }
}
