//! The arguments of an event or an acknowledgement.

use std::fmt;
use std::sync::OnceLock;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::socketio::packet::{placeholder, placeholder_num};
use crate::socketio::RawArray;

/// JSON values with binary attachments. Binary sits anywhere in the values
/// as a placeholder, `{"_placeholder":true,"num":N}`, naming attachment N,
/// the way the protocol carries it; so arguments pass through unchanged
/// (binary stays binary) without walking them.
///
/// Arguments received from a client stay the JSON text they came in
/// (checked in full when decoded): they are parsed into [`Value`]s the
/// first time a method asks for values, and sent on by copying that text
/// as long as they are not changed (`push`, `arg` and `binary` turn them
/// into values first). So a server that only forwards arguments never
/// parses them, and forwards the client's JSON as it was written (its
/// spacing and number spelling; see docs/architecture.md).
#[derive(Clone, Default)]
pub struct Args {
    values: Values,
    attachments: Vec<Bytes>,
}

#[derive(Clone)]
enum Values {
    Parsed(Vec<Value>),
    /// As received; `parsed` filled on first use (a cache: the text stays
    /// what is written). A `OnceLock`, not a `OnceCell`, so that `Args`
    /// stays `Send + Sync` as it was when it held values only (an
    /// application may share received arguments between threads); its
    /// check is an acquire load, a plain load on x86. Boxed: most
    /// arguments are never parsed, and `Args` is moved several times per
    /// message (decoder, event, handler, ack), so each word kept out of it
    /// is a word less to copy at every move.
    Raw {
        array: RawArray,
        // A thin pointer on purpose: a `Vec` in place is three words.
        #[allow(clippy::box_collection)]
        parsed: OnceLock<Box<Vec<Value>>>,
    },
}

impl Default for Values {
    fn default() -> Values {
        Values::Parsed(Vec::new())
    }
}

impl Args {
    pub fn new() -> Args {
        Args::default()
    }

    /// Arguments as decoded: values and the attachments their placeholders name.
    pub fn from_parts(values: Vec<Value>, attachments: Vec<Bytes>) -> Args {
        Args {
            values: Values::Parsed(values),
            attachments,
        }
    }

    /// Arguments kept as received: the elements of `array` and the
    /// attachments their placeholders name.
    pub fn from_raw(array: RawArray, attachments: Vec<Bytes>) -> Args {
        Args {
            values: Values::Raw {
                array,
                parsed: OnceLock::new(),
            },
            attachments,
        }
    }

    /// Append a JSON argument.
    pub fn arg(mut self, value: impl Into<Value>) -> Args {
        self.values_mut().push(value.into());
        self
    }

    /// Append a binary argument.
    pub fn binary(mut self, bytes: impl Into<Bytes>) -> Args {
        let placeholder = self.attach(bytes);
        self.values_mut().push(placeholder);
        self
    }

    /// Add an attachment and return the placeholder to put anywhere in a
    /// value, for binary nested in objects or arrays.
    pub fn attach(&mut self, bytes: impl Into<Bytes>) -> Value {
        self.attachments.push(bytes.into());
        placeholder(self.attachments.len() - 1)
    }

    pub fn push(&mut self, value: Value) {
        self.values_mut().push(value);
    }

    pub fn len(&self) -> usize {
        match &self.values {
            Values::Parsed(values) => values.len(),
            Values::Raw { array, .. } => array.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, index: usize) -> Option<&Value> {
        self.values().get(index)
    }

    /// Argument `index` deserialized (placeholders are plain objects to
    /// serde). Arguments still as received are read from their text; when
    /// that fails they are read as values, which differ in one case: an
    /// object with a repeated key is one key in a value (the last), which a
    /// derived struct accepts and refuses from text.
    pub fn parse<T: DeserializeOwned>(&self, index: usize) -> Option<T> {
        if let Values::Raw { array, parsed } = &self.values {
            if parsed.get().is_none() {
                if let Ok(value) = serde_json::from_str(array.get(index)?) {
                    return Some(value);
                }
            }
        }
        self.get(index).and_then(|v| T::deserialize(v).ok())
    }

    /// Argument `index` as a string, if it is one.
    pub fn str(&self, index: usize) -> Option<&str> {
        self.get(index).and_then(Value::as_str)
    }

    /// The bytes of argument `index` when it is binary.
    pub fn binary_at(&self, index: usize) -> Option<&Bytes> {
        self.get(index).and_then(|v| self.resolve(v))
    }

    /// The bytes a placeholder value names.
    pub fn resolve(&self, value: &Value) -> Option<&Bytes> {
        placeholder_num(value).and_then(|n| self.attachments.get(n))
    }

    /// The arguments as values (parsed on the first call for arguments
    /// still as received).
    pub fn values(&self) -> &[Value] {
        match &self.values {
            Values::Parsed(values) => values,
            Values::Raw { array, parsed } => parsed.get_or_init(|| Box::new(array.values())),
        }
    }

    /// The JSON text of argument `index` when the arguments are still as
    /// received (`None` once changed, or for arguments built as values).
    pub fn raw(&self, index: usize) -> Option<&str> {
        match &self.values {
            Values::Raw { array, .. } => array.get(index),
            Values::Parsed(_) => None,
        }
    }

    /// The arguments as received, while they are (see [`Args::raw`]).
    pub fn raw_array(&self) -> Option<&RawArray> {
        match &self.values {
            Values::Raw { array, .. } => Some(array),
            Values::Parsed(_) => None,
        }
    }

    pub fn attachments(&self) -> &[Bytes] {
        &self.attachments
    }

    pub fn into_parts(self) -> (Vec<Value>, Vec<Bytes>) {
        let values = match self.values {
            Values::Parsed(values) => values,
            Values::Raw { array, parsed } => parsed
                .into_inner()
                .map_or_else(|| array.values(), |values| *values),
        };
        (values, self.attachments)
    }

    /// All arguments as one JSON array, placeholders included.
    pub fn to_json(&self) -> Value {
        Value::Array(self.values().to_vec())
    }

    /// Write each argument as JSON into `out`, each preceded by a comma
    /// when `comma` (set after the first): arguments as received are
    /// copied, values serialised.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>, comma: &mut bool) {
        let mut item = |out: &mut Vec<u8>| {
            if std::mem::replace(comma, true) {
                out.push(b',');
            }
        };
        match &self.values {
            Values::Raw { array, .. } => {
                for json in array.iter() {
                    item(out);
                    out.extend_from_slice(json.as_bytes());
                }
            }
            Values::Parsed(values) => {
                for value in values {
                    item(out);
                    serde_json::to_writer(&mut *out, value).expect("a Vec never fails to write");
                }
            }
        }
    }

    /// The values, to change: arguments as received are parsed (once).
    fn values_mut(&mut self) -> &mut Vec<Value> {
        if let Values::Raw { array, parsed } = &mut self.values {
            let values = parsed
                .take()
                .map_or_else(|| array.values(), |values| *values);
            self.values = Values::Parsed(values);
        }
        match &mut self.values {
            Values::Parsed(values) => values,
            Values::Raw { .. } => unreachable!("made values above"),
        }
    }
}

impl PartialEq for Args {
    /// Equal values and attachments, however each side holds its values
    /// (text as received or parsed).
    fn eq(&self, other: &Args) -> bool {
        self.values() == other.values() && self.attachments == other.attachments
    }
}

impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Args");
        match &self.values {
            Values::Parsed(values) => d.field("values", values),
            Values::Raw { array, .. } => d.field("raw", array),
        };
        d.field("attachments", &self.attachments).finish()
    }
}

impl From<Value> for Args {
    /// An array gives one argument per element; any other value is one argument.
    fn from(value: Value) -> Args {
        match value {
            Value::Array(values) => Args::from_parts(values, Vec::new()),
            other => Args::from_parts(vec![other], Vec::new()),
        }
    }
}

// `Args` is `Send + Sync`, which applications may rely on.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Args>();
};

#[cfg(test)]
mod tests {

    use super::*;
    use serde_json::json;

    #[test]
    fn nested_binary_is_a_placeholder_naming_its_attachment() {
        let mut args = Args::new().arg("name");
        let file = args.attach(vec![1u8, 2, 3]);
        args.push(json!({"file": file, "list": [1]}));
        let args = args.binary(vec![9u8]);
        assert_eq!(args.len(), 3);
        assert_eq!(args.attachments().len(), 2);
        let nested = &args.get(1).unwrap()["file"];
        assert_eq!(args.resolve(nested).unwrap().as_ref(), &[1, 2, 3]);
        assert_eq!(args.binary_at(2).unwrap().as_ref(), &[9]);
        assert_eq!(args.binary_at(0), None);
        assert_eq!(args.str(0), Some("name"));
    }

    use crate::engineio::Text;
    use crate::server::outgoing;
    use crate::socketio::{DecodeError, Decoder, Payload, Protocol};

    /// The arguments of an ACK packet `text` (`3<id>[...]` or `6<n>-<id>[...]`
    /// then `attachments`), as the server receives them.
    fn received(text: &str, attachments: &[&'static [u8]]) -> Result<Args, DecodeError> {
        let mut decoder = Decoder::new(Protocol::V5, 4);
        let mut packet = decoder.decode_message(Text::from(text))?;
        for a in attachments {
            packet = decoder.decode_attachment(Bytes::from_static(a))?;
        }
        let packet = packet.expect("a complete packet");
        match packet.payload {
            Payload::Array(array) => Ok(Args::from_raw(array, packet.attachments)),
            other => panic!("not an array: {other:?}"),
        }
    }

    fn ack_text(args: &Args) -> String {
        outgoing::ack("/", 1, args).text.to_string()
    }

    #[test]
    fn received_arguments_round_trip_byte_for_byte() {
        let args = received(r#"31[ 1.50, {"b":1,"a":[1e2, "\u00e9"]} ,"x"]"#, &[]).unwrap();
        assert_eq!(args.len(), 3);
        assert_eq!(args.raw(0), Some("1.50"));
        assert_eq!(
            ack_text(&args),
            r#"31[1.50,{"b":1,"a":[1e2, "\u00e9"]},"x"]"#,
            "elements as sent, between the encoder's own brackets and commas"
        );
        // Reading values does not change what is written.
        assert_eq!(args.get(1).unwrap()["a"][1], json!("é"));
        assert_eq!(
            ack_text(&args),
            r#"31[1.50,{"b":1,"a":[1e2, "\u00e9"]},"x"]"#
        );
        assert_eq!(args.raw(0), Some("1.50"));
    }

    #[test]
    fn received_arguments_parse_on_demand() {
        let args = received(r#"31[{"n":3},"s",[true]]"#, &[]).unwrap();
        #[derive(serde::Deserialize, PartialEq, Debug)]
        struct N {
            n: u32,
        }
        assert_eq!(args.parse::<N>(0), Some(N { n: 3 }));
        assert_eq!(args.parse::<u32>(1), None);
        assert_eq!(args.str(1), Some("s"));
        assert_eq!(args.values(), &[json!({"n": 3}), json!("s"), json!([true])]);
        assert_eq!(args.parse::<Vec<bool>>(2), Some(vec![true]));
        // A repeated key: the last one, as from a value.
        let twice = received(r#"31[{"n":1,"n":2}]"#, &[]).unwrap();
        assert_eq!(twice.parse::<N>(0), Some(N { n: 2 }));
        assert_eq!(args, Args::from(json!([{"n": 3}, "s", [true]])));
        let (values, attachments) = args.clone().into_parts();
        assert_eq!(values.len(), 3);
        assert!(attachments.is_empty());
        assert_eq!(args.to_json(), json!([{"n": 3}, "s", [true]]));
    }

    #[test]
    fn changed_arguments_are_written_from_values() {
        let mut args = received(r#"31[1.50, "a"]"#, &[]).unwrap();
        args.push(json!({"k": 1}));
        assert_eq!(args.raw(0), None, "no longer as received");
        assert_eq!(args.len(), 3);
        assert_eq!(ack_text(&args), r#"31[1.5,"a",{"k":1}]"#);
        let args = received(r#"31["a"]"#, &[])
            .unwrap()
            .arg(2)
            .binary(vec![7u8]);
        assert_eq!(
            ack_text(&args),
            r#"61-1["a",2,{"_placeholder":true,"num":0}]"#
        );
    }

    #[test]
    fn received_binary_keeps_placeholders_and_attachments() {
        let args = received(
            r#"62-1["a",{"f":{"_placeholder":true,"num":1}},{"_placeholder":true,"num":0}]"#,
            &[b"zero", b"one"],
        )
        .unwrap();
        assert_eq!(args.binary_at(2).unwrap().as_ref(), b"zero");
        assert_eq!(
            args.resolve(&args.get(1).unwrap()["f"]).unwrap().as_ref(),
            b"one"
        );
        assert_eq!(
            ack_text(&args),
            r#"62-1["a",{"f":{"_placeholder":true,"num":1}},{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(outgoing::ack("/", 1, &args).attachments.len(), 2);
        // Placeholders are checked at decode, escaped or not.
        for bad in [
            r#"61-1[{"_placeholder":true,"num":1}]"#,
            r#"61-1[{"_placeholder":true,"num":"0"}]"#,
            r#"61-1[[{"\u005fplaceholder":true,"num":5}]]"#,
        ] {
            assert!(received(bad, &[b"x"]).is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_json_is_refused_when_received() {
        for bad in [
            r#"31[1,]"#,
            r#"31["a" "b"]"#,
            r#"31[1e999]"#,
            r#"31["\ud800"]"#,
            r#"31[{"a":1}"#,
            r#"31[1]x"#,
        ] {
            assert!(
                matches!(received(bad, &[]), Err(DecodeError::InvalidJson(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn from_json_array_spreads_arguments() {
        let args = Args::from(json!([1, "a", {"b": true}]));
        assert_eq!(args.len(), 3);
        assert_eq!(args.parse::<u32>(0), Some(1));
        assert_eq!(Args::from(json!("x")).len(), 1);
    }
}
