//! Authentication for the relay: HS256 JSON Web Tokens and the glob patterns
//! their claims carry (see `docs/relay-protocol.md`, "Authentication").
//!
//! Pure code, no IO: [`TokenVerifier::verify`] takes the current time as an
//! argument, so callers (and tests) decide what "now" is.

pub mod compare;
pub mod glob;
pub mod jwt;

pub use compare::constant_time_eq;
pub use glob::glob_match;
pub use jwt::{Claims, TokenError, TokenVerifier};
