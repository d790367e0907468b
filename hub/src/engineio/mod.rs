//! Engine.IO: pure codecs (no IO, no clocks) for packets, polling payloads,
//! JSONP, the handshake, query strings, error bodies and session ids.

pub mod error;
pub mod handshake;
pub mod jsonp;
pub mod packet;
pub mod payload;
pub mod query;
pub mod session;
pub mod sid;
pub mod text;

pub use error::ErrorCode;
pub use packet::{Data, DecodeError, Packet, ProtocolVersion, WsFrame};
pub use payload::EncodedPayload;
pub use query::{EngineQuery, TransportKind};
pub use sid::Sid;
pub use text::{FramedTextWriter, Text};
