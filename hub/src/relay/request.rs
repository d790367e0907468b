//! The relay protocol's requests, parsed and checked without IO.

use serde_json::Value;

use crate::server::Args;
use crate::socketio::raw::{array_elements, object_members, string_of};
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
            Value::String(room) => room_name(room),
            _ => Err(Refusal::BadRequest),
        })
        .collect()
}

/// One room name's rule: non-empty, at most [`MAX_ROOM_BYTES`].
fn room_name(room: &str) -> Result<String, Refusal> {
    if room.is_empty() || room.len() > MAX_ROOM_BYTES {
        return Err(Refusal::BadRequest);
    }
    Ok(room.to_owned())
}

/// A publish's event name's rule: non-empty, not reserved.
fn event_name(event: &str) -> Result<(), Refusal> {
    if event.is_empty() {
        return Err(Refusal::BadRequest);
    }
    if is_reserved_event(event) {
        return Err(Refusal::ReservedEvent);
    }
    Ok(())
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
        Some(Value::String(event)) => {
            event_name(event)?;
            event.clone()
        }
        _ => return Err(Refusal::BadRequest),
    };
    let volatile = match volatile {
        None | Some(Value::Null) => false,
        Some(Value::Bool(v)) => *v,
        Some(_) => return Err(Refusal::BadRequest),
    };
    Ok((to, event, volatile))
}

/// [`publish`] of arguments as received, read from their text without
/// building values: the spec's fields found by walking its object (a
/// repeated key: the last one, as a parse into a `Value` keeps), `to`,
/// `event` and `volatile` checked as [`checked`] checks their values,
/// `data` kept as text.
fn publish_raw(args: &Args, array: &RawArray) -> Result<Publish, Refusal> {
    let spec = array.get(0).ok_or(Refusal::BadRequest)?;
    let mut fields = RawSpec::default();
    for (key, value) in object_members(spec).ok_or(Refusal::BadRequest)? {
        let slot = match string_of(key).as_deref() {
            Some("to") => &mut fields.to,
            Some("event") => &mut fields.event,
            Some("data") => &mut fields.data,
            Some("volatile") => &mut fields.volatile,
            _ => continue,
        };
        *slot = Some(value);
    }
    // In `checked`'s order, so that a request wrong twice gets its refusal.
    let to = raw_rooms(fields.to)?;
    let event = fields
        .event
        .and_then(string_of)
        .ok_or(Refusal::BadRequest)?;
    event_name(&event)?;
    let event = event.into_owned();
    let volatile = match fields.volatile {
        None | Some("null") | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(Refusal::BadRequest),
    };
    // The data's placeholders still name the request's attachments.
    let attachments = args.attachments().to_vec();
    let data = match fields.data.and_then(|data| array.part(data)) {
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

/// [`rooms`] of a value's JSON text (checked JSON, e.g. a field of a
/// received argument).
fn raw_rooms(json: Option<&str>) -> Result<Vec<String>, Refusal> {
    let room = |json: &str| room_name(&string_of(json).ok_or(Refusal::BadRequest)?);
    let json = json.ok_or(Refusal::BadRequest)?;
    if json.starts_with('"') {
        return Ok(vec![room(json)?]);
    }
    let mut names = Vec::new();
    for name in array_elements(json).ok_or(Refusal::BadRequest)? {
        if names.len() == MAX_ROOMS {
            return Err(Refusal::BadRequest);
        }
        names.push(room(name)?);
    }
    if names.is_empty() {
        return Err(Refusal::BadRequest);
    }
    Ok(names)
}

/// A publish spec's fields: their values' JSON text, borrowed from the
/// request's.
#[derive(Default)]
struct RawSpec<'a> {
    to: Option<&'a str>,
    event: Option<&'a str>,
    data: Option<&'a str>,
    volatile: Option<&'a str>,
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

    /// Arguments as received, from their JSON text (an array).
    fn received(json: &str) -> Args {
        let text = crate::socketio::raw::Utf8Bytes::copy_from_str(json);
        let array = crate::socketio::raw::split_array(text, 0).expect("valid arguments");
        Args::from_raw(array, Vec::new())
    }

    /// A publish's fields, and its data parsed.
    fn fields(
        publish: Result<Publish, Refusal>,
    ) -> Result<(Vec<String>, String, bool, Value), Refusal> {
        publish.map(|p| {
            let data = p.data.get(0).cloned().unwrap_or(Value::Null);
            (p.to, p.event, p.volatile, data)
        })
    }

    #[test]
    fn a_received_spec_reads_as_its_parsed_value_does() {
        let long = format!(r#""{}""#, "x".repeat(MAX_ROOM_BYTES));
        let too_long = format!(r#""{}""#, "x".repeat(MAX_ROOM_BYTES + 1));
        let list = |n: usize| {
            let names: Vec<String> = (0..n).map(|i| format!(r#""r{i}""#)).collect();
            format!("[{}]", names.join(","))
        };
        let (most, too_many) = (list(MAX_ROOMS), list(MAX_ROOMS + 1));
        let specs = [
            r#"{"to":"r","event":"e","data":{"n":1.50,"s":"\u00e9"}}"#.to_string(),
            r#"{ "to" : [ "a" , "b" ] , "event" : "e" , "volatile" : true }"#.to_string(),
            r#"{"to":"r","event":"e","volatile":false,"data":[1,{"x":[]}]}"#.to_string(),
            r#"{"to":"r","event":"e","volatile":null}"#.to_string(),
            r#"{"to":"r","event":"e","volatile":"yes"}"#.to_string(),
            r#"{"to":"r","event":"e","volatile":0}"#.to_string(),
            r#"{"to":"nowhere","event":"e","to":["r"],"event":"f"}"#.to_string(),
            r#"{"\u0074o":"r","ev\u0065nt":"e","data":"\"}\""}"#.to_string(),
            r#"{"to":"r\"s","event":"\u00e9"}"#.to_string(),
            r#"{"other":{"to":"x"},"to":"r","event":"e","more":[{"event":1}]}"#.to_string(),
            r#"{"to":"r","event":"disconnect"}"#.to_string(),
            r#"{"to":"r","event":"connect","volatile":"yes"}"#.to_string(),
            r#"{"to":1,"event":"disconnect"}"#.to_string(),
            r#"{"to":"r","event":""}"#.to_string(),
            r#"{"to":"r","event":3}"#.to_string(),
            r#"{"to":"r"}"#.to_string(),
            r#"{"event":"e"}"#.to_string(),
            r#"{"to":"","event":"e"}"#.to_string(),
            r#"{"to":[],"event":"e"}"#.to_string(),
            r#"{"to":["a",""],"event":"e"}"#.to_string(),
            r#"{"to":["a",1],"event":"e"}"#.to_string(),
            r#"{"to":null,"event":"e"}"#.to_string(),
            r#"{"to":{"a":"b"},"event":"e"}"#.to_string(),
            format!(r#"{{"to":{long},"event":"e"}}"#),
            format!(r#"{{"to":{too_long},"event":"e"}}"#),
            format!(r#"{{"to":[{too_long}],"event":"e"}}"#),
            format!(r#"{{"to":{most},"event":"e"}}"#),
            format!(r#"{{"to":{too_many},"event":"e"}}"#),
            "{}".to_string(),
            r#""r""#.to_string(),
            r#"["r","e"]"#.to_string(),
            "null".to_string(),
        ];
        for spec in &specs {
            let raw = fields(publish(&received(&format!("[{spec}]"))));
            let value: Value = serde_json::from_str(spec).unwrap();
            let parsed = fields(publish(&Args::new().arg(value)));
            assert_eq!(raw, parsed, "{spec}");
        }
        assert_eq!(publish(&received("[]")), Err(Refusal::BadRequest));
        let p = publish(&received(r#"[{"to":"r","event":"e","data":{"n":1.50}}]"#)).unwrap();
        assert_eq!(
            p.data.raw_array().and_then(|data| data.get(0)),
            Some(r#"{"n":1.50}"#),
            "the data as written"
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
