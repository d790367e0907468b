//! Socket.IO: the packet codec, sans-IO.
//!
//! Protocol V5 (Socket.IO v3/v4 clients, Engine.IO v4) and V4 (v1/v2 clients,
//! Engine.IO v3) share one wire format,
//! `<type>[<attachments>-][<nsp>,][<ack id>][<JSON>]`; they differ in how
//! CONNECT carries auth (JSON object vs. query string in the namespace).
//! Binary packets are a text message with placeholders followed by one
//! binary message per attachment.

pub mod decoder;
pub mod encode;
pub mod packet;
pub mod raw;

pub use decoder::{DecodeError, Decoder};
pub use encode::{encode_header, encode_header_into, encode_packet, header_len, HeaderOut};
pub use packet::{
    is_reserved_event, Packet, PacketType, Payload, Protocol, RawPacket, RESERVED_EVENTS,
};
pub use raw::RawArray;
