//! What the Admin UI asks: `emit`, `join`, `leave`, `_disconnect`, read
//! from its event arguments. A filter is a room (a socket's id is its own
//! room); no filter (missing, null, empty, false) means the whole namespace.

use serde_json::Value;

/// A command of the Admin UI.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `emit(nsp, filter, event, ...args)`.
    Emit {
        nsp: String,
        filter: Option<String>,
        event: String,
        args: Vec<Value>,
    },
    /// `join(nsp, room, filter)`.
    Join {
        nsp: String,
        room: String,
        filter: Option<String>,
    },
    /// `leave(nsp, room, filter)`.
    Leave {
        nsp: String,
        room: String,
        filter: Option<String>,
    },
    /// `_disconnect(nsp, close, filter)`: `close` ends the whole connection.
    Disconnect {
        nsp: String,
        close: bool,
        filter: Option<String>,
    },
}

/// The event names of the commands.
pub const COMMANDS: [&str; 4] = ["emit", "join", "leave", "_disconnect"];

/// A room given as a filter: a non-empty string or a number; anything
/// falsy is no filter.
fn filter(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn string(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Read a command, or None when its arguments do not make one.
pub fn parse(event: &str, args: &[Value]) -> Option<Command> {
    let nsp = string(args.first())?;
    match event {
        "emit" => Some(Command::Emit {
            nsp,
            filter: filter(args.get(1)),
            event: string(args.get(2))?,
            args: args.get(3..).map(<[Value]>::to_vec).unwrap_or_default(),
        }),
        "join" => Some(Command::Join {
            nsp,
            room: string(args.get(1))?,
            filter: filter(args.get(2)),
        }),
        "leave" => Some(Command::Leave {
            nsp,
            room: string(args.get(1))?,
            filter: filter(args.get(2)),
        }),
        "_disconnect" => Some(Command::Disconnect {
            nsp,
            close: matches!(args.get(1), Some(Value::Bool(true))),
            filter: filter(args.get(2)),
        }),
        _ => None,
    }
}
