//! Engine.IO HTTP error codes, answered to requests the server refuses.

/// The reference server's error codes; clients read `code` from the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    Forbidden = 4,
    UnsupportedProtocolVersion = 5,
}

/// Content type of error bodies.
pub const ERROR_CONTENT_TYPE: &str = "application/json";

impl ErrorCode {
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::UnknownTransport => "Transport unknown",
            ErrorCode::UnknownSid => "Session ID unknown",
            ErrorCode::BadHandshakeMethod => "Bad handshake method",
            ErrorCode::BadRequest => "Bad request",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// The HTTP status: the reference answers 403 for `Forbidden` and 400 for
    /// everything else.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Forbidden => 403,
            _ => 400,
        }
    }

    /// The error body, `{"code":0,"message":"Transport unknown"}`.
    pub fn json(self) -> String {
        self.json_with_message(self.message())
    }

    /// The error body with a custom message: the reference uses the message
    /// an `allowRequest` hook refused with, when there is one.
    pub fn json_with_message(self, message: &str) -> String {
        let mut out = format!("{{\"code\":{},\"message\":", self.code());
        super::jsonp::push_json_string(&mut out, message, false);
        out.push('}');
        out
    }

    pub fn from_code(code: u8) -> Option<ErrorCode> {
        Some(match code {
            0 => ErrorCode::UnknownTransport,
            1 => ErrorCode::UnknownSid,
            2 => ErrorCode::BadHandshakeMethod,
            3 => ErrorCode::BadRequest,
            4 => ErrorCode::Forbidden,
            5 => ErrorCode::UnsupportedProtocolVersion,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ErrorCode {}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ErrorCode; 6] = [
        ErrorCode::UnknownTransport,
        ErrorCode::UnknownSid,
        ErrorCode::BadHandshakeMethod,
        ErrorCode::BadRequest,
        ErrorCode::Forbidden,
        ErrorCode::UnsupportedProtocolVersion,
    ];

    #[test]
    fn json_bodies_exact() {
        let bodies: Vec<String> = ALL.iter().map(|c| c.json()).collect();
        assert_eq!(
            bodies,
            [
                r#"{"code":0,"message":"Transport unknown"}"#,
                r#"{"code":1,"message":"Session ID unknown"}"#,
                r#"{"code":2,"message":"Bad handshake method"}"#,
                r#"{"code":3,"message":"Bad request"}"#,
                r#"{"code":4,"message":"Forbidden"}"#,
                r#"{"code":5,"message":"Unsupported protocol version"}"#,
            ]
        );
    }

    #[test]
    fn codes_round_trip() {
        for (i, c) in ALL.iter().enumerate() {
            assert_eq!(c.code() as usize, i);
            assert_eq!(ErrorCode::from_code(i as u8), Some(*c));
            assert_eq!(c.to_string(), c.message());
        }
        assert_eq!(ErrorCode::from_code(6), None);
    }

    #[test]
    fn statuses() {
        for c in ALL {
            let expected = if c == ErrorCode::Forbidden { 403 } else { 400 };
            assert_eq!(c.http_status(), expected);
        }
    }

    #[test]
    fn custom_message_is_escaped() {
        assert_eq!(
            ErrorCode::Forbidden.json_with_message("no \"way\"\n"),
            r#"{"code":4,"message":"no \"way\"\n"}"#
        );
    }
}
