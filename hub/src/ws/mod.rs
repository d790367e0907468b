//! WebSocket (RFC 6455) server side, sans-IO: the upgrade handshake and the frame codec.

pub mod codec;
pub mod deflate;
pub mod handshake;

pub use codec::{
    encode_binary, encode_close, encode_ping, encode_pong, encode_text, Decoder, Message, WsError,
};
pub use handshake::{accept, Accepted, WsHandshakeError};
