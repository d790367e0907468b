//! The arguments of an event or an acknowledgement.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::socketio::packet::{placeholder, placeholder_num};

/// JSON values with binary attachments. Binary sits anywhere in the values
/// as a placeholder, `{"_placeholder":true,"num":N}`, naming attachment N,
/// the way the protocol carries it; so arguments pass through unchanged
/// (binary stays binary) without walking them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Args {
    values: Vec<Value>,
    attachments: Vec<Bytes>,
}

impl Args {
    pub fn new() -> Args {
        Args::default()
    }

    /// Arguments as decoded: values and the attachments their placeholders name.
    pub fn from_parts(values: Vec<Value>, attachments: Vec<Bytes>) -> Args {
        Args {
            values,
            attachments,
        }
    }

    /// Append a JSON argument.
    pub fn arg(mut self, value: impl Into<Value>) -> Args {
        self.values.push(value.into());
        self
    }

    /// Append a binary argument.
    pub fn binary(mut self, bytes: impl Into<Bytes>) -> Args {
        let placeholder = self.attach(bytes);
        self.values.push(placeholder);
        self
    }

    /// Add an attachment and return the placeholder to put anywhere in a
    /// value, for binary nested in objects or arrays.
    pub fn attach(&mut self, bytes: impl Into<Bytes>) -> Value {
        self.attachments.push(bytes.into());
        placeholder(self.attachments.len() - 1)
    }

    pub fn push(&mut self, value: Value) {
        self.values.push(value);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<&Value> {
        self.values.get(index)
    }

    /// Argument `index` deserialized (placeholders are plain objects to serde).
    pub fn parse<T: DeserializeOwned>(&self, index: usize) -> Option<T> {
        self.values.get(index).and_then(|v| T::deserialize(v).ok())
    }

    /// Argument `index` as a string, if it is one.
    pub fn str(&self, index: usize) -> Option<&str> {
        self.values.get(index).and_then(Value::as_str)
    }

    /// The bytes of argument `index` when it is binary.
    pub fn binary_at(&self, index: usize) -> Option<&Bytes> {
        self.values.get(index).and_then(|v| self.resolve(v))
    }

    /// The bytes a placeholder value names.
    pub fn resolve(&self, value: &Value) -> Option<&Bytes> {
        placeholder_num(value).and_then(|n| self.attachments.get(n))
    }

    pub fn values(&self) -> &[Value] {
        &self.values
    }

    pub fn attachments(&self) -> &[Bytes] {
        &self.attachments
    }

    pub fn into_parts(self) -> (Vec<Value>, Vec<Bytes>) {
        (self.values, self.attachments)
    }

    /// All arguments as one JSON array, placeholders included.
    pub fn to_json(&self) -> Value {
        Value::Array(self.values.clone())
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

    #[test]
    fn from_json_array_spreads_arguments() {
        let args = Args::from(json!([1, "a", {"b": true}]));
        assert_eq!(args.len(), 3);
        assert_eq!(args.parse::<u32>(0), Some(1));
        assert_eq!(Args::from(json!("x")).len(), 1);
    }
}
