//! What a socket may do, and the rules of a token refresh, without IO: the
//! time comes in as an argument.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::auth::{Claims, TokenError, TokenVerifier};

use super::expiry;
use super::request::Refusal;
use super::sweeper::RelayShard;

/// What a socket may do: everything (open hub) or what its token says.
pub enum Grant {
    Open,
    Token(TokenGrant),
}

/// A socket's token: its claims, and where its expiry is watched. It is
/// the socket's data, which a session recovered on another shard takes
/// along: so it names its relay (instance and verifier) rather than
/// holding a shard's state, and its key is unique in the process.
pub struct TokenGrant {
    pub claims: Claims,
    /// The socket's key in its shard's expiry queue.
    pub key: u64,
    /// The relay it belongs to.
    pub instance: u64,
    pub verifier: Arc<TokenVerifier>,
}

impl TokenGrant {
    /// The relay's state on the calling shard.
    pub fn shard(&self) -> Rc<RelayShard> {
        RelayShard::local(self.instance)
    }
}

impl Grant {
    pub fn may_join(&self, room: &str) -> bool {
        match self {
            Grant::Open => true,
            Grant::Token(token) => token.claims.may_join(room),
        }
    }

    pub fn may_publish(&self, room: &str) -> bool {
        match self {
            Grant::Open => true,
            Grant::Token(token) => token.claims.may_publish(room),
        }
    }

    /// Whether the socket's token has expired at `now` (an open hub's
    /// sockets have none).
    pub fn expired(&self, now: SystemTime) -> bool {
        match self {
            Grant::Open => false,
            Grant::Token(token) => expiry::expired(token.claims.exp, now),
        }
    }
}

/// What a `refresh` with a new token comes to.
#[derive(Debug, PartialEq, Eq)]
pub enum Refresh {
    /// The new claims apply from now on; the socket leaves `leave`, the
    /// rooms they no longer allow.
    Accepted { claims: Claims, leave: Vec<String> },
    /// The new token is refused (why, for the log); nothing changes, the
    /// old expiry still holds. The client is told `unauthorized`.
    Refused(TokenError),
    /// The socket's own token had already expired: too late to refresh; the
    /// socket is disconnected as at its expiry.
    Expired,
    /// A valid token of another user (`sub`): refused, and the socket is
    /// disconnected, as Centrifugo does (a connection's user never changes;
    /// a client that wants another user reconnects with that user's token).
    UserMismatch,
}

impl Refresh {
    /// The answer the client gets when the token is not accepted.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Refresh::Accepted { .. } => None,
            Refresh::Refused(_) => Some(Refusal::Unauthorized),
            Refresh::Expired => Some(Refusal::TokenExpired),
            Refresh::UserMismatch => Some(Refusal::UserMismatch),
        }
    }
}

/// The rules of a refresh: a socket with `current` claims, its own id
/// `socket_id`, in `rooms`, presents `token` at `now`.
///
/// - the current token must not have expired yet ([`Refresh::Expired`]);
/// - the new token must verify at `now` like a connect token: right key,
///   HS256, `exp` present and ahead ([`Refresh::Refused`]);
/// - it must name the same user: the same `sub`, or none on both
///   ([`Refresh::UserMismatch`]);
/// - then its claims replace the old ones, and the socket leaves every
///   room but its own id, its user room and those the new `rooms`
///   patterns allow.
pub fn refresh<'a>(
    verifier: &TokenVerifier,
    current: &Claims,
    token: &str,
    now: SystemTime,
    socket_id: &str,
    rooms: impl IntoIterator<Item = &'a str>,
) -> Refresh {
    if expiry::expired(current.exp, now) {
        return Refresh::Expired;
    }
    let claims = match verifier.verify(token, unix_seconds(now)) {
        Ok(claims) => claims,
        Err(error) => return Refresh::Refused(error),
    };
    if claims.sub != current.sub {
        return Refresh::UserMismatch;
    }
    let user_room = claims.user_room();
    let leave = rooms
        .into_iter()
        .filter(|room| *room != socket_id && Some(*room) != user_room.as_deref())
        .filter(|room| !claims.may_join(room))
        .map(str::to_string)
        .collect();
    Refresh::Accepted { claims, leave }
}

/// Whole seconds since the Unix epoch (0 before it), as tokens count time.
pub fn unix_seconds(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    const SECRET: &[u8] = b"refresh-test-secret";
    const T0: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(SECRET)
    }

    fn claims(exp: u64, sub: Option<&str>, rooms: &[&str]) -> Claims {
        Claims {
            exp,
            sub: sub.map(str::to_string),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            publish: vec![],
        }
    }

    fn run(current: &Claims, token: &str, now: SystemTime, rooms: &[&str]) -> Refresh {
        refresh(
            &verifier(),
            current,
            token,
            now,
            "sid",
            rooms.iter().copied(),
        )
    }

    #[test]
    fn a_valid_token_replaces_the_claims_and_the_rooms_it_no_longer_allows_are_left() {
        let current = claims(T0 + 2, Some("ann"), &["old:*", "both:*"]);
        let token = verifier().sign(&json!({
            "exp": T0 + 60, "sub": "ann", "rooms": ["new:*", "both:*"], "publish": ["new:*"],
        }));
        let rooms = ["sid", "user:ann", "old:1", "both:1", "old:2"];
        let Refresh::Accepted { claims, leave } = run(&current, &token, at(T0 + 1), &rooms) else {
            panic!("accepted");
        };
        assert_eq!(claims.exp, T0 + 60, "the expiry moves to the new exp");
        assert_eq!(claims.rooms, vec!["new:*", "both:*"]);
        assert_eq!(claims.publish, vec!["new:*"]);
        assert!(claims.may_join("new:x") && !claims.may_join("old:x"));
        assert_eq!(
            leave,
            vec!["old:1", "old:2"],
            "its own id and user room stay, allowed rooms stay"
        );
    }

    #[test]
    fn a_shorter_token_is_accepted_and_moves_the_expiry_earlier() {
        let current = claims(T0 + 3600, None, &["*"]);
        let token = verifier().sign(&json!({"exp": T0 + 10, "rooms": ["*"]}));
        match run(&current, &token, at(T0), &["sid", "a"]) {
            Refresh::Accepted { claims, leave } => {
                assert_eq!(claims.exp, T0 + 10);
                assert!(leave.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_rooms_claim_leaves_every_joined_room() {
        let current = claims(T0 + 5, Some("bo"), &["*"]);
        let token = verifier().sign(&json!({"exp": T0 + 50, "sub": "bo"}));
        match run(&current, &token, at(T0), &["sid", "user:bo", "a", "b"]) {
            Refresh::Accepted { leave, .. } => assert_eq!(leave, vec!["a", "b"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_tokens_are_refused_and_change_nothing() {
        let current = claims(T0 + 2, Some("ann"), &["*"]);
        let other_key = TokenVerifier::new(b"another key");
        let cases = [
            ("garbage", "not-a-jwt".to_string(), TokenError::Malformed),
            (
                "other key",
                other_key.sign(&json!({"exp": T0 + 60, "sub": "ann"})),
                TokenError::BadSignature,
            ),
            (
                "expired",
                verifier().sign(&json!({"exp": T0 + 1, "sub": "ann"})),
                TokenError::Expired,
            ),
            (
                "no exp",
                verifier().sign(&json!({"sub": "ann"})),
                TokenError::MissingExpiry,
            ),
        ];
        for (what, token, error) in cases {
            let outcome = run(&current, &token, at(T0 + 1), &["sid", "x"]);
            assert_eq!(outcome, Refresh::Refused(error), "{what}");
            assert_eq!(outcome.refusal(), Some(Refusal::Unauthorized), "{what}");
        }
    }

    #[test]
    fn too_late_once_the_current_token_expired() {
        let current = claims(T0 + 2, None, &["*"]);
        let fresh = verifier().sign(&json!({"exp": T0 + 60}));
        assert!(matches!(
            run(&current, &fresh, at(T0 + 1), &[]),
            Refresh::Accepted { .. }
        ));
        // At exp itself the token has expired (now >= exp), as at connect.
        let outcome = run(&current, &fresh, at(T0 + 2), &[]);
        assert_eq!(outcome, Refresh::Expired);
        assert_eq!(outcome.refusal(), Some(Refusal::TokenExpired));
        // Sub-second: one nanosecond before exp is still in time.
        let just_before = at(T0 + 2) - Duration::from_nanos(1);
        assert!(matches!(
            run(&current, &fresh, just_before, &[]),
            Refresh::Accepted { .. }
        ));
    }

    #[test]
    fn another_user_is_a_mismatch() {
        let v = verifier();
        let cases = [
            (Some("ann"), json!({"exp": T0 + 60, "sub": "bob"})),
            (Some("ann"), json!({"exp": T0 + 60})),
            (None, json!({"exp": T0 + 60, "sub": "ann"})),
        ];
        for (sub, payload) in cases {
            let current = claims(T0 + 2, sub, &["*"]);
            let outcome = run(&current, &v.sign(&payload), at(T0), &[]);
            assert_eq!(outcome, Refresh::UserMismatch, "{sub:?} -> {payload}");
            assert_eq!(outcome.refusal(), Some(Refusal::UserMismatch));
        }
        // The same user, or none on both: fine.
        for (sub, payload) in [
            (Some("ann"), json!({"exp": T0 + 60, "sub": "ann"})),
            (None, json!({"exp": T0 + 60})),
        ] {
            let current = claims(T0 + 2, sub, &["*"]);
            let outcome = run(&current, &v.sign(&payload), at(T0), &[]);
            assert!(matches!(outcome, Refresh::Accepted { .. }), "{payload}");
            assert_eq!(outcome.refusal(), None);
        }
    }

    #[test]
    fn an_invalid_token_is_refused_before_the_user_is_looked_at() {
        // A forged token naming another user is unauthorized, not a
        // mismatch: nothing in an unverified token counts.
        let current = claims(T0 + 2, Some("ann"), &["*"]);
        let forged = TokenVerifier::new(b"x").sign(&json!({"exp": T0 + 60, "sub": "eve"}));
        assert_eq!(
            run(&current, &forged, at(T0), &[]),
            Refresh::Refused(TokenError::BadSignature)
        );
    }

    #[test]
    fn expiry_of_a_grant() {
        assert!(!Grant::Open.expired(at(T0 * 2)));
        assert_eq!(unix_seconds(at(T0) + Duration::from_millis(999)), T0);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), 0);
    }
}
