//! hub: a thread-per-core Socket.IO server.
//!
//! Layers, bottom up (see `docs/architecture.md`):
//! - [`engineio`]: Engine.IO codecs and the session state machine, sans-IO;
//! - [`http`] and [`ws`]: HTTP/1.1 and WebSocket codecs, sans-IO;
//! - [`shard`]: glommio executors, listeners, cross-shard routing, the IO around the above;
//! - [`engine`]: the Engine.IO server API an application sits on.

pub mod admin_ui;
pub mod app;
pub mod auth;
pub mod engine;
pub mod engineio;
pub mod http;
pub mod metrics;
pub mod panics;
pub mod redis;
pub mod relay;
pub mod server;
pub mod shard;
pub(crate) mod signal;
pub mod socketio;
pub mod ws;

#[cfg(test)]
mod layering;
#[cfg(test)]
mod test_rng;

/// The README's Rust examples compile as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
