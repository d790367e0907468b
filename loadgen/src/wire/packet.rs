//! Engine.IO v4 and Socket.IO v5 packets: the few a load generator sends,
//! and a classifier for what it receives that reads no further than the
//! scenario needs (a fanout receiver never parses JSON).

/// What one Engine.IO packet is, for this client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// `0{...}`: the handshake, with its JSON.
    Open(&'a [u8]),
    Close,
    Ping,
    Pong,
    Noop,
    /// Socket.IO CONNECT for our namespace.
    Connect,
    /// Socket.IO CONNECT_ERROR for our namespace, with its JSON.
    ConnectError(&'a [u8]),
    /// Socket.IO DISCONNECT for our namespace.
    Disconnect,
    /// Socket.IO EVENT: the argument array's JSON (ack ids are skipped).
    Event(&'a [u8]),
    /// Socket.IO ACK: its id and the argument array's JSON.
    Ack {
        id: u64,
        args: &'a [u8],
    },
    /// Anything else: other namespaces, binary packets, upgrades.
    Other,
}

/// Reads one Engine.IO packet. `nsp` is the namespace prefix as sent,
/// empty for `/` or like `/chat,`.
pub fn classify<'a>(packet: &'a [u8], nsp: &[u8]) -> Incoming<'a> {
    let Some((&kind, rest)) = packet.split_first() else {
        return Incoming::Other;
    };
    match kind {
        b'0' => Incoming::Open(rest),
        b'1' => Incoming::Close,
        b'2' => Incoming::Ping,
        b'3' => Incoming::Pong,
        b'6' => Incoming::Noop,
        b'4' => socketio(rest, nsp),
        _ => Incoming::Other,
    }
}

fn socketio<'a>(packet: &'a [u8], nsp: &[u8]) -> Incoming<'a> {
    let Some((&kind, mut rest)) = packet.split_first() else {
        return Incoming::Other;
    };
    if rest.first() == Some(&b'/') {
        let Some(comma) = rest.iter().position(|&b| b == b',') else {
            // `40/chat` with nothing after the name
            return if rest == nsp.strip_suffix(b",").unwrap_or(b"") {
                simple(kind, b"")
            } else {
                Incoming::Other
            };
        };
        if &rest[..=comma] != nsp {
            return Incoming::Other;
        }
        rest = &rest[comma + 1..];
    } else if !nsp.is_empty() {
        return Incoming::Other;
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let id = std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|d| d.parse::<u64>().ok());
    let body = &rest[digits..];
    match (kind, id) {
        (b'2', _) => Incoming::Event(body),
        (b'3', Some(id)) => Incoming::Ack { id, args: body },
        _ => simple(kind, body),
    }
}

fn simple(kind: u8, body: &[u8]) -> Incoming<'_> {
    match kind {
        b'0' => Incoming::Connect,
        b'1' => Incoming::Disconnect,
        b'4' => Incoming::ConnectError(body),
        _ => Incoming::Other,
    }
}

/// The namespace prefix of every Socket.IO packet: empty for `/`.
pub fn namespace_prefix(namespace: &str) -> Vec<u8> {
    if namespace == "/" {
        Vec::new()
    } else {
        format!("{namespace},").into_bytes()
    }
}

/// `40[/nsp,][{"token":...}]`
pub fn connect(nsp: &[u8], token: Option<&str>) -> Vec<u8> {
    let mut out = b"40".to_vec();
    out.extend_from_slice(nsp);
    if let Some(token) = token {
        let auth = serde_json::json!({ "token": token });
        out.extend_from_slice(auth.to_string().as_bytes());
    }
    out
}

/// `42[/nsp,]<id>` followed by the caller's argument array.
pub fn event_head(nsp: &[u8], ack: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"42");
    out.extend_from_slice(nsp);
    push_decimal(ack, out);
}

pub fn push_decimal(n: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// The relay's positive answer.
pub fn is_ok(args: &[u8]) -> bool {
    args.starts_with(b"[{\"ok\":true")
}

/// What the handshake packet tells a client.
#[derive(Debug, serde::Deserialize)]
pub struct Open {
    pub sid: String,
}

pub fn parse_open(json: &[u8]) -> Option<Open> {
    serde_json::from_slice(json).ok()
}

/// The string a fanout publish or echo carries: `<sender>:<seq>:<nanos>:`
/// padded with `x` to the payload size, so a receiver reads three numbers
/// and no JSON.
pub fn stamp(sender: u32, seq: u64, nanos: u64, size: usize, out: &mut Vec<u8>) {
    stamp_padded(sender, seq, nanos, size, false, out);
}

/// [`stamp`], padded with JSON-like records when `json` (no quote or
/// backslash, so the stamp stays one JSON string): `{id:N,name:userN,score:N},`
/// with numbers drawn from the sequence number, about as compressible as a
/// real JSON payload.
pub fn stamp_padded(sender: u32, seq: u64, nanos: u64, size: usize, json: bool, out: &mut Vec<u8>) {
    let start = out.len();
    push_decimal(sender as u64, out);
    out.push(b':');
    push_decimal(seq, out);
    out.push(b':');
    push_decimal(nanos, out);
    out.push(b':');
    let end = start + size.max(out.len() - start);
    if json {
        let mut x = seq
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        while out.len() < end {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            out.extend_from_slice(b"{id:");
            push_decimal((x >> 40) % 100_000, out);
            out.extend_from_slice(b",name:user");
            push_decimal((x >> 20) % 1000, out);
            out.extend_from_slice(b",score:");
            push_decimal(x % 10_000, out);
            out.extend_from_slice(b"},");
        }
        out.truncate(end);
    }
    out.resize(end, b'x');
}

/// A stamp read back: sender, sequence number, send time.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Stamp {
    pub sender: u32,
    pub seq: u64,
    pub nanos: u64,
}

/// Reads the stamp from a delivered event `["<event>","<stamp>..."]`.
pub fn read_delivery(args: &[u8]) -> Option<Stamp> {
    read_named_delivery(args).map(|(_, stamp)| stamp)
}

/// Reads the event name and the stamp from `["<event>","<stamp>..."]`.
pub fn read_named_delivery(args: &[u8]) -> Option<(&[u8], Stamp)> {
    let rest = args.strip_prefix(b"[\"")?;
    // the first `","` ends the name (names never hold quotes here)
    let at = rest.windows(3).position(|w| w == b"\",\"")?;
    Some((&rest[..at], read_stamp(&rest[at + 3..])?))
}

pub fn read_stamp(text: &[u8]) -> Option<Stamp> {
    let mut fields = text.splitn(4, |&b| b == b':');
    let mut number = || -> Option<u64> {
        let field = fields.next()?;
        if field.is_empty() || field.len() > 20 {
            return None;
        }
        field.iter().try_fold(0u64, |n, &b| {
            b.is_ascii_digit()
                .then(|| n.wrapping_mul(10).wrapping_add((b - b'0') as u64))
        })
    };
    let sender = number()?;
    let seq = number()?;
    let nanos = number()?;
    Some(Stamp {
        sender: u32::try_from(sender).ok()?,
        seq,
        nanos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_engineio_packets() {
        assert_eq!(
            classify(b"0{\"sid\":1}", b""),
            Incoming::Open(b"{\"sid\":1}")
        );
        assert_eq!(classify(b"2", b""), Incoming::Ping);
        assert_eq!(classify(b"3", b""), Incoming::Pong);
        assert_eq!(classify(b"1", b""), Incoming::Close);
        assert_eq!(classify(b"6", b""), Incoming::Noop);
        assert_eq!(classify(b"", b""), Incoming::Other);
        assert_eq!(classify(b"5", b""), Incoming::Other);
    }

    #[test]
    fn classifies_socketio_packets_of_the_namespace() {
        assert_eq!(classify(b"40{\"sid\":\"a\"}", b""), Incoming::Connect);
        assert_eq!(
            classify(b"40/chat,{\"sid\":\"a\"}", b"/chat,"),
            Incoming::Connect
        );
        assert_eq!(classify(b"40/chat", b"/chat,"), Incoming::Connect);
        assert_eq!(classify(b"40/other,{}", b"/chat,"), Incoming::Other);
        assert_eq!(classify(b"40{}", b"/chat,"), Incoming::Other);
        assert_eq!(
            classify(b"44{\"message\":\"no\"}", b""),
            Incoming::ConnectError(b"{\"message\":\"no\"}")
        );
        assert_eq!(classify(b"41", b""), Incoming::Disconnect);
        assert_eq!(classify(b"42[\"m\",1]", b""), Incoming::Event(b"[\"m\",1]"));
        assert_eq!(classify(b"4212[\"m\"]", b""), Incoming::Event(b"[\"m\"]"));
        assert_eq!(
            classify(b"43/chat,7[{\"ok\":true}]", b"/chat,"),
            Incoming::Ack {
                id: 7,
                args: b"[{\"ok\":true}]"
            }
        );
        assert_eq!(
            classify(b"43[1]", b""),
            Incoming::Other,
            "an ack needs an id"
        );
    }

    #[test]
    fn builds_packets() {
        assert_eq!(connect(b"", None), b"40");
        assert_eq!(
            connect(b"/a,", Some("t\"k")),
            b"40/a,{\"token\":\"t\\\"k\"}"
        );
        let mut out = Vec::new();
        event_head(&namespace_prefix("/a"), 120, &mut out);
        assert_eq!(out, b"42/a,120");
        assert!(is_ok(b"[{\"ok\":true}]"));
        assert!(!is_ok(b"[{\"ok\":false,\"error\":\"forbidden\"}]"));
    }

    #[test]
    fn stamps_round_trip_at_the_requested_size() {
        let mut out = Vec::new();
        stamp(7, 42, 123456789, 100, &mut out);
        let mut json = Vec::new();
        stamp_padded(7, 42, 123456789, 100, true, &mut json);
        assert_eq!(json.len(), 100);
        assert!(json.starts_with(b"7:42:123456789:{id:"));
        assert!(!json.contains(&b'"') && !json.contains(&b'\\'));
        assert_eq!(
            read_stamp(&json),
            Some(Stamp {
                sender: 7,
                seq: 42,
                nanos: 123456789
            })
        );
        assert_eq!(out.len(), 100);
        let stamp = read_stamp(&out).unwrap();
        assert_eq!(
            stamp,
            Stamp {
                sender: 7,
                seq: 42,
                nanos: 123456789
            }
        );
        let mut event = b"[\"m\",\"".to_vec();
        event.extend_from_slice(&out);
        event.extend_from_slice(b"\"]");
        assert_eq!(read_delivery(&event), Some(stamp));
        assert_eq!(read_named_delivery(&event), Some((&b"m"[..], stamp)));
        assert_eq!(
            read_named_delivery(b"[\"f\",\"3:9:1:\"]"),
            Some((
                &b"f"[..],
                Stamp {
                    sender: 3,
                    seq: 9,
                    nanos: 1
                }
            ))
        );
        assert_eq!(read_named_delivery(b"\"m\",\"1:2:3:\"]"), None);
        assert_eq!(read_delivery(b"[\"m\",\"x:1:2:\"]"), None);
        assert_eq!(read_delivery(b"[\"m\",17]"), None);
        assert_eq!(read_stamp(b"1:2"), None);
    }
}
