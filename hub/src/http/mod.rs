//! HTTP/1.1 codec, sans-IO: request parsing, response serialization and CORS headers.
//! The shard's connection tasks move bytes; everything protocol-shaped lives here so it can be
//! unit-tested and fuzzed without sockets.

pub mod compression;
pub mod cors;
pub mod request;
pub mod response;

pub use cors::{AllowedOrigins, Cors};
pub use request::{parse_request, HttpError, Limits, Method, Request};
pub use response::Response;
