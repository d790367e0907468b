//! The relay protocol's requests, parsed and checked without IO.

use serde_json::Value;

use crate::server::Args;
use crate::socketio::is_reserved_event;

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
pub fn publish(args: &Args) -> Result<Publish, Refusal> {
    let Some(Value::Object(spec)) = args.get(0) else {
        return Err(Refusal::BadRequest);
    };
    let to = rooms(spec.get("to"))?;
    let event = match spec.get("event") {
        Some(Value::String(event)) if !event.is_empty() => event.clone(),
        _ => return Err(Refusal::BadRequest),
    };
    if is_reserved_event(&event) {
        return Err(Refusal::ReservedEvent);
    }
    let volatile = match spec.get("volatile") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(v)) => *v,
        Some(_) => return Err(Refusal::BadRequest),
    };
    // The data's placeholders still name the request's attachments.
    let data = spec.get("data").cloned().unwrap_or(Value::Null);
    Ok(Publish {
        to,
        event,
        data: Args::from_parts(vec![data], args.attachments().to_vec()),
        volatile,
    })
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
