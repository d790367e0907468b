//! Byte-level codecs, free of IO: WebSocket client frames, HTTP/1.1
//! requests and responses, Engine.IO and Socket.IO packets.

pub mod http;
pub mod packet;
pub mod ws;
