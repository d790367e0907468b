//! Packets the server sends, encoded once: a broadcast's text and
//! attachments are shared (refcounted) by every recipient on every shard.

use std::cell::RefCell;

use bytes::Bytes;
use serde_json::{json, Value};

use super::args::Args;
use crate::engineio::{FramedTextWriter, Text};
use crate::socketio::{
    encode_header, encode_header_into, header_len, HeaderOut, PacketType, Protocol,
};

/// An encoded Socket.IO packet: its text message and the binary messages after it.
#[derive(Clone, Debug)]
pub(crate) struct Outgoing {
    pub text: Text,
    pub attachments: Vec<Bytes>,
}

impl Outgoing {
    /// Bytes of the packet: its text and its attachments.
    pub fn bytes(&self) -> usize {
        self.text.len() + self.attachments.iter().map(|a| a.len()).sum::<usize>()
    }

    /// Apply Socket.IO's `compress` flag: `Some(false)` sends the packet
    /// uncompressed whatever the connection negotiated (the flag rides on
    /// the text; a WebSocket writer sends the binary messages queued behind
    /// such a text, its attachments, plain too).
    pub fn compress(self, compress: Option<bool>) -> Outgoing {
        match compress {
            Some(false) => Outgoing {
                text: self.text.without_compression(),
                attachments: self.attachments,
            },
            _ => self,
        }
    }
}

thread_local! {
    /// Where packets are encoded before they are copied into an allocation
    /// of their exact size: no reallocation as the JSON grows, and no
    /// allocation for the header.
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A scratch buffer this large after encoding is freed rather than kept.
const KEEP_SCRATCH: usize = 64 * 1024;

/// The packet text: its header (`<type>[<n>-][<nsp>,][<id>]`) then what
/// `write_json` writes, framed once for every WebSocket recipient.
fn finish(
    kind: PacketType,
    nsp: &str,
    attachments: usize,
    id: Option<u64>,
    write_json: impl FnOnce(&mut Vec<u8>),
) -> Text {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        scratch.clear();
        encode_header(kind, nsp, attachments, id, &mut scratch);
        // SAFETY: what `write_json` appends is JSON text from serde_json's
        // writer or copied from arguments received as text (`Args`), all
        // UTF-8; the callers below write nothing else.
        write_json(unsafe { scratch.as_mut_vec() });
        let text = Text::framed_message(&scratch);
        if scratch.capacity() > KEEP_SCRATCH {
            *scratch = String::new();
        }
        text
    })
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    serde_json::to_writer(out, value).expect("a Vec never fails to write");
}

/// `[<first>, args..., <last>]` without building a new array.
fn write_array(out: &mut Vec<u8>, first: Option<&str>, args: &Args, last: Option<&str>) {
    out.push(b'[');
    let mut comma = false;
    if let Some(first) = first {
        serde_json::to_writer(&mut *out, first).expect("a Vec never fails to write");
        comma = true;
    }
    args.write_json(out, &mut comma);
    if let Some(last) = last {
        if comma {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, last).expect("a Vec never fails to write");
    }
    out.push(b']');
}

/// EVENT (BINARY_EVENT with attachments), optionally asking for an ack.
pub(crate) fn event(nsp: &str, event: &str, args: &Args, ack_id: Option<u64>) -> Outgoing {
    event_with_offset(nsp, event, args, ack_id, None)
}

/// EVENT with a recovery offset appended as its last argument (where
/// socket.io's session-aware adapter puts it).
pub(crate) fn event_with_offset(
    nsp: &str,
    event: &str,
    args: &Args,
    ack_id: Option<u64>,
    offset: Option<&str>,
) -> Outgoing {
    let attachments = args.attachments().len();
    let kind = if attachments == 0 {
        PacketType::Event
    } else {
        PacketType::BinaryEvent
    };
    let text = finish(kind, nsp, attachments, ack_id, |out| {
        write_array(out, Some(event), args, offset)
    });
    Outgoing {
        // Events are broadcast (and logged for recovery): cloned per
        // recipient. (An ack goes to one client and is moved, not cloned.)
        text: text.into_shared(),
        attachments: args.attachments().to_vec(),
    }
}

/// ACK (BINARY_ACK with attachments) of the client's packet `id`.
pub(crate) fn ack(nsp: &str, id: u64, args: &Args) -> Outgoing {
    let attachments = args.attachments().len();
    let kind = if attachments == 0 {
        PacketType::Ack
    } else {
        PacketType::BinaryAck
    };
    let text = match args.raw_array() {
        // Arguments as received (an echo's): their length is known, so the
        // text is written in place, in its one allocation.
        Some(array) => {
            let items = array.len();
            let json_len = array.iter().map(str::len).sum::<usize>() + items.saturating_sub(1) + 2;
            let mut out =
                FramedTextWriter::new(header_len(kind, nsp, attachments, Some(id)) + json_len);
            encode_header_into(kind, nsp, attachments, Some(id), &mut out);
            out.push_ascii(b'[');
            for (i, json) in array.iter().enumerate() {
                if i > 0 {
                    out.push_ascii(b',');
                }
                out.push_str(json);
            }
            out.push_ascii(b']');
            out.finish()
        }
        None => finish(kind, nsp, attachments, Some(id), |out| {
            write_array(out, None, args, None)
        }),
    };
    Outgoing {
        text,
        attachments: args.attachments().to_vec(),
    }
}

impl HeaderOut for FramedTextWriter {
    #[inline]
    fn push_str(&mut self, s: &str) {
        FramedTextWriter::push_str(self, s)
    }
}

fn plain(kind: PacketType, nsp: &str, data: Option<&Value>) -> Outgoing {
    let text = match data {
        Some(data) => finish(kind, nsp, 0, None, |out| write_value(out, data)),
        None => finish(kind, nsp, 0, None, |_| {}),
    };
    Outgoing {
        text,
        attachments: Vec::new(),
    }
}

/// The CONNECT reply: v5 names the socket id (and, with recovery on, the
/// private id), v4 has no payload.
pub(crate) fn connected(
    nsp: &str,
    protocol: Protocol,
    socket_id: &str,
    pid: Option<&str>,
) -> Outgoing {
    match protocol {
        Protocol::V5 => {
            let mut body = json!({ "sid": socket_id });
            if let Some(pid) = pid {
                body["pid"] = json!(pid);
            }
            plain(PacketType::Connect, nsp, Some(&body))
        }
        Protocol::V4 => plain(PacketType::Connect, nsp, None),
    }
}

/// CONNECT_ERROR: v5 sends `{"message", "data"?}`; v4 the data, or the
/// message as a string, except for an unknown namespace, which both answer
/// with an object.
pub(crate) fn connect_error(
    nsp: &str,
    protocol: Protocol,
    message: &str,
    data: Option<&Value>,
    invalid_namespace: bool,
) -> Outgoing {
    let payload = match (protocol, invalid_namespace) {
        // The reference gives v2 clients the error's data when there is some.
        (Protocol::V4, false) => match data {
            Some(data) => data.clone(),
            None => Value::String(message.to_string()),
        },
        (Protocol::V5, _) | (Protocol::V4, true) => {
            let mut object = serde_json::Map::new();
            object.insert("message".into(), Value::String(message.to_string()));
            if let (Some(data), Protocol::V5) = (data, protocol) {
                object.insert("data".into(), data.clone());
            }
            Value::Object(object)
        }
    };
    plain(PacketType::ConnectError, nsp, Some(&payload))
}

/// DISCONNECT of one namespace.
pub(crate) fn disconnect(nsp: &str) -> Outgoing {
    plain(PacketType::Disconnect, nsp, None)
}

/// The protocol v4 ERROR packet (type 4 with a string), which v2 clients
/// surface as an `error` event: how a socket middleware refusal reaches them.
pub(crate) fn v4_error(nsp: &str, message: &str) -> Outgoing {
    plain(
        PacketType::ConnectError,
        nsp,
        Some(&Value::String(message.to_string())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_text_and_attachments() {
        let mut args = Args::new().arg("a");
        let p = args.attach(vec![1u8]);
        args.push(json!({ "f": p }));
        let out = event("/chat", "up", &args, Some(3));
        assert_eq!(
            &*out.text,
            r#"51-/chat,3["up","a",{"f":{"_placeholder":true,"num":0}}]"#
        );
        assert_eq!(out.attachments.len(), 1);
        assert_eq!(&*event("/", "x", &Args::new(), None).text, r#"2["x"]"#);
    }

    /// Arguments as received, as the decoder keeps them.
    fn raw_args(json: &str, attachments: Vec<Bytes>) -> Args {
        use crate::socketio::raw::{split_array, Utf8Bytes};
        let array = split_array(Utf8Bytes::copy_from_str(json), 0).unwrap();
        Args::from_raw(array, attachments)
    }

    #[test]
    fn acks_of_arguments_as_received_are_written_in_place() {
        let binary = vec![Bytes::from_static(b"\x01"), Bytes::new()];
        let cases = [
            ("/", 7, "[]", Vec::new(), "37[]"),
            (
                "/",
                0,
                r#"[ 1 ,"é", {"a" : [2]}]"#,
                Vec::new(),
                r#"30[1,"é",{"a" : [2]}]"#,
            ),
            ("/chat", 123, r#"["x"]"#, Vec::new(), r#"3/chat,123["x"]"#),
            (
                "/chat",
                10,
                r#"[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
                binary.clone(),
                r#"62-/chat,10[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            ),
        ];
        for (nsp, id, json, attachments, want) in cases {
            let args = raw_args(json, attachments.clone());
            let out = ack(nsp, id, &args);
            assert_eq!(&*out.text, want);
            assert_eq!(out.attachments, attachments);
            if json.contains(' ') {
                // Kept as written: values would be written without the spaces.
                continue;
            }
            // The same text and frame as the same arguments as values give.
            let parsed = ack(
                nsp,
                id,
                &Args::from_parts(args.values().to_vec(), attachments),
            );
            assert_eq!(out.text, parsed.text);
            assert_eq!(out.text.ws_message_frame(), parsed.text.ws_message_frame());
        }
        // Long enough for a 16-bit frame length.
        let long = format!(r#"["{}"]"#, "y".repeat(300));
        let out = ack("/", 1, &raw_args(&long, Vec::new()));
        assert_eq!(&*out.text, format!("31{long}"));
        assert_eq!(
            out.text.ws_message_frame(),
            Text::framed_message(&format!("31{long}")).ws_message_frame()
        );
    }

    #[test]
    fn acks_and_control_packets() {
        assert_eq!(&*ack("/", 7, &Args::new().arg(1).arg(2)).text, "37[1,2]");
        assert_eq!(
            &*connected("/", Protocol::V5, "abc", None).text,
            r#"0{"sid":"abc"}"#
        );
        assert_eq!(
            &*connected("/", Protocol::V5, "abc", Some("p")).text,
            r#"0{"sid":"abc","pid":"p"}"#
        );
        assert_eq!(
            &*connected("/admin", Protocol::V4, "abc", None).text,
            "0/admin,"
        );
        assert_eq!(
            &*event_with_offset("/", "x", &Args::new().arg(1), None, Some("a-0")).text,
            r#"2["x",1,"a-0"]"#
        );
        assert_eq!(
            &*connect_error("/x", Protocol::V5, "no", Some(&json!({"a":1})), false).text,
            r#"4/x,{"message":"no","data":{"a":1}}"#
        );
        assert_eq!(
            &*connect_error("/x", Protocol::V4, "no", None, false).text,
            r#"4/x,"no""#
        );
        assert_eq!(
            &*connect_error("/r", Protocol::V4, "Invalid namespace", None, true).text,
            r#"4/r,{"message":"Invalid namespace"}"#
        );
        assert_eq!(&*disconnect("/chat").text, "1/chat,");
    }
}
