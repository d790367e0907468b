//! The relay protocol's requests, parsed and checked without IO.

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::server::Args;
use crate::socketio::{is_reserved_event, RawArray};

/// Longest room name, in bytes.
pub const MAX_ROOM_BYTES: usize = 256;
/// Most rooms in one join, leave or publish.
pub const MAX_ROOMS: usize = 64;

/// Why a request is refused; its text is the ack's `error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    BadRequest,
    Forbidden,
    ReservedEvent,
    /// A `refresh` token that does not verify.
    Unauthorized,
    /// The socket's token has expired: the socket is being disconnected.
    TokenExpired,
    /// A `refresh` token of another user: the socket is being disconnected.
    UserMismatch,
    /// The join would put the socket in more rooms than
    /// `--max-rooms-per-socket`; it joined none of them.
    TooManyRooms,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::BadRequest => "bad request",
            Refusal::Forbidden => "forbidden",
            Refusal::ReservedEvent => "reserved event",
            Refusal::Unauthorized => "unauthorized",
            Refusal::TokenExpired => "token expired",
            Refusal::UserMismatch => "user mismatch",
            Refusal::TooManyRooms => "too many rooms",
        }
    }
}

/// A room name or a non-empty array of them (at most [`MAX_ROOMS`]), each
/// non-empty and at most [`MAX_ROOM_BYTES`].
pub fn rooms(value: Option<&Value>) -> Result<Vec<String>, Refusal> {
    let names: Vec<&Value> = match value {
        Some(Value::String(_)) => vec![value.expect("matched")],
        Some(Value::Array(list)) if !list.is_empty() && list.len() <= MAX_ROOMS => {
            list.iter().collect()
        }
        _ => return Err(Refusal::BadRequest),
    };
    names
        .into_iter()
        .map(|name| match name {
            Value::String(room) if !room.is_empty() && room.len() <= MAX_ROOM_BYTES => {
                Ok(room.clone())
            }
            _ => Err(Refusal::BadRequest),
        })
        .collect()
}

/// A `publish` request.
#[derive(Debug, PartialEq)]
pub struct Publish {
    pub to: Vec<String>,
    pub event: String,
    /// The one argument the recipients get, binary kept.
    pub data: Args,
    pub volatile: bool,
}

/// `{"to", "event", "data", "volatile"}` as the first argument.
///
/// Arguments still as received are read from their text: `data` is passed
/// on as the client wrote it, never parsed (see [`RawSpec`]).
pub fn publish(args: &Args) -> Result<Publish, Refusal> {
    if let Some(array) = args.raw_array() {
        return publish_raw(args, array);
    }
    let Some(Value::Object(spec)) = args.get(0) else {
        return Err(Refusal::BadRequest);
    };
    let (to, event, volatile) = checked(spec.get("to"), spec.get("event"), spec.get("volatile"))?;
    // The data's placeholders still name the request's attachments.
    let data = spec.get("data").cloned().unwrap_or(Value::Null);
    Ok(Publish {
        to,
        event,
        data: Args::from_parts(vec![data], args.attachments().to_vec()),
        volatile,
    })
}

/// The rules for a publish's `to`, `event` and `volatile`.
fn checked(
    to: Option<&Value>,
    event: Option<&Value>,
    volatile: Option<&Value>,
) -> Result<(Vec<String>, String, bool), Refusal> {
    let to = rooms(to)?;
    let event = match event {
        Some(Value::String(event)) if !event.is_empty() => event.clone(),
        _ => return Err(Refusal::BadRequest),
    };
    if is_reserved_event(&event) {
        return Err(Refusal::ReservedEvent);
    }
    let volatile = match volatile {
        None | Some(Value::Null) => false,
        Some(Value::Bool(v)) => *v,
        Some(_) => return Err(Refusal::BadRequest),
    };
    Ok((to, event, volatile))
}

/// [`publish`] of arguments as received: the spec's fields as JSON text
/// (a repeated key: the last one, as a parse into a `Value` keeps);
/// `to`, `event` and `volatile` parsed, `data` kept as text.
fn publish_raw(args: &Args, array: &RawArray) -> Result<Publish, Refusal> {
    let spec = array.get(0).ok_or(Refusal::BadRequest)?;
    let spec: RawSpec = serde_json::from_str(spec).map_err(|_| Refusal::BadRequest)?;
    let value = |raw: Option<&RawValue>| -> Option<Value> {
        // Valid JSON: the decoder checked every argument.
        raw.and_then(|raw| serde_json::from_str(raw.get()).ok())
    };
    let (to, event, volatile) = checked(
        value(spec.to).as_ref(),
        value(spec.event).as_ref(),
        value(spec.volatile).as_ref(),
    )?;
    // The data's placeholders still name the request's attachments.
    let attachments = args.attachments().to_vec();
    let data = match spec.data.and_then(|data| array.part(data.get())) {
        Some(data) => Args::from_raw(data, attachments),
        None => Args::from_parts(vec![Value::Null], attachments),
    };
    Ok(Publish {
        to,
        event,
        data,
        volatile,
    })
}

/// A publish spec's fields, borrowed from the request's text. (By hand
/// rather than derived: a derived struct refuses a repeated key, which a
/// `Value` parse accepts, keeping the last.)
#[derive(Default)]
struct RawSpec<'a> {
    to: Option<&'a RawValue>,
    event: Option<&'a RawValue>,
    data: Option<&'a RawValue>,
    volatile: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for RawSpec<'de> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<RawSpec<'de>, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = RawSpec<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a publish object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSpec<'de>, A::Error> {
                let mut spec = RawSpec::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let slot = match &*key {
                        "to" => &mut spec.to,
                        "event" => &mut spec.event,
                        "data" => &mut spec.data,
                        "volatile" => &mut spec.volatile,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value()?);
                }
                Ok(spec)
            }
        }
        de.deserialize_map(Fields)
    }
}

/// A `refresh` request: `{"token": "<JWT>"}`; the token.
pub fn refresh(value: Option<&Value>) -> Result<&str, Refusal> {
    match value {
        Some(Value::Object(spec)) => match spec.get("token") {
            Some(Value::String(token)) => Ok(token),
            _ => Err(Refusal::BadRequest),
        },
        _ => Err(Refusal::BadRequest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rooms_accepts_a_name_or_a_list() {
        assert_eq!(rooms(Some(&json!("a"))), Ok(vec!["a".to_string()]));
        assert_eq!(
            rooms(Some(&json!(["a", "b"]))),
            Ok(vec!["a".into(), "b".into()])
        );
        for bad in [
            json!(42),
            json!([]),
            json!([1]),
            json!(""),
            json!(["a", ""]),
            json!(null),
            json!({"a": 1}),
        ] {
            assert_eq!(rooms(Some(&bad)), Err(Refusal::BadRequest), "{bad}");
        }
        assert_eq!(rooms(None), Err(Refusal::BadRequest));
        let long = "x".repeat(MAX_ROOM_BYTES + 1);
        assert_eq!(rooms(Some(&json!(long))), Err(Refusal::BadRequest));
        assert!(rooms(Some(&json!("x".repeat(MAX_ROOM_BYTES)))).is_ok());
        let many: Vec<String> = (0..=MAX_ROOMS).map(|i| i.to_string()).collect();
        assert_eq!(rooms(Some(&json!(many))), Err(Refusal::BadRequest));
    }

    #[test]
    fn refresh_wants_an_object_with_a_token_string() {
        assert_eq!(refresh(Some(&json!({"token": "a.b.c"}))), Ok("a.b.c"));
        assert_eq!(
            refresh(Some(&json!({"token": "t", "other": 1}))),
            Ok("t"),
            "other fields are ignored"
        );
        for bad in [
            json!("a.b.c"),
            json!({}),
            json!({"token": 42}),
            json!({"token": null}),
            json!([{"token": "t"}]),
            json!(null),
        ] {
            assert_eq!(refresh(Some(&bad)), Err(Refusal::BadRequest), "{bad}");
        }
        assert_eq!(refresh(None), Err(Refusal::BadRequest));
    }

    #[test]
    fn publish_reads_its_spec_and_keeps_binary() {
        let mut args = Args::new();
        let file = args.attach(vec![1u8, 2]);
        args.push(
            json!({"to": ["r1", "r2"], "event": "news", "data": {"f": file}, "volatile": true}),
        );
        let p = publish(&args).unwrap();
        assert_eq!(p.to, vec!["r1", "r2"]);
        assert_eq!(p.event, "news");
        assert!(p.volatile);
        assert_eq!(
            p.data
                .resolve(&p.data.get(0).unwrap()["f"])
                .unwrap()
                .as_ref(),
            &[1, 2]
        );
    }

    #[test]
    fn publish_refusals() {
        let bad = |v: serde_json::Value| publish(&Args::new().arg(v));
        assert_eq!(bad(json!({"event": "e"})), Err(Refusal::BadRequest));
        assert_eq!(bad(json!({"to": "r"})), Err(Refusal::BadRequest));
        assert_eq!(
            bad(json!({"to": "r", "event": 3})),
            Err(Refusal::BadRequest)
        );
        assert_eq!(
            bad(json!({"to": "r", "event": "e", "volatile": "yes"})),
            Err(Refusal::BadRequest)
        );
        assert_eq!(
            bad(json!({"to": "r", "event": "disconnect"})),
            Err(Refusal::ReservedEvent)
        );
        assert_eq!(bad(json!("r")), Err(Refusal::BadRequest));
        assert_eq!(publish(&Args::new()), Err(Refusal::BadRequest));
        assert!(
            bad(json!({"to": "r", "event": "e"})).is_ok(),
            "data is optional (null)"
        );
    }
}
