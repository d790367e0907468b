//! Messages no node should take, for every channel a hub listens to, in
//! both dialects of Node's Redis adapter (classic: `[uid, packet, opts]`
//! broadcasts and JSON or msgpack requests and responses; sharded:
//! `{type, data, uid, nsp}`), and the valid broadcast they are made from.

/// msgpack bytes of `value`.
pub(crate) fn msgpack(value: rmpv::Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &value).unwrap();
    out
}

pub(crate) fn mp_str(s: &str) -> rmpv::Value {
    rmpv::Value::from(s)
}

pub(crate) fn mp_map(entries: Vec<(&str, rmpv::Value)>) -> rmpv::Value {
    rmpv::Value::Map(entries.into_iter().map(|(k, v)| (mp_str(k), v)).collect())
}

/// A broadcast as Node's classic adapter publishes it, to `room`.
pub(crate) fn classic_broadcast(uid: &str, event: &str, room: &str) -> Vec<u8> {
    msgpack(rmpv::Value::Array(vec![
        mp_str(uid),
        mp_map(vec![
            ("type", 2.into()),
            ("data", rmpv::Value::Array(vec![mp_str(event), mp_str("x")])),
            ("nsp", mp_str("/")),
        ]),
        mp_map(vec![
            ("rooms", rmpv::Value::Array(vec![mp_str(room)])),
            ("except", rmpv::Value::Array(vec![])),
            ("flags", mp_map(vec![])),
        ]),
    ]))
}

/// Byte strings no decoder should take, whatever the channel.
pub(crate) fn garbage() -> Vec<(&'static str, Vec<u8>)> {
    let deep_msgpack = vec![0x91u8; 100_000];
    let mut deep_json = b"{\"a\":".to_vec();
    deep_json.extend(std::iter::repeat_n(b'[', 100_000));
    vec![
        ("empty", Vec::new()),
        (
            "garbage bytes",
            vec![0xc1, 0xff, 0x00, 0x13, 0x37, 0xde, 0xad],
        ),
        ("not UTF-8 text", vec![0xff, 0xfe, b'{', 0x80]),
        ("huge array length", vec![0xdd, 0xff, 0xff, 0xff, 0xff]),
        (
            "huge map length",
            vec![0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, b'a'],
        ),
        (
            "huge bin length",
            vec![0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        ),
        ("huge str length", vec![0xdb, 0x7f, 0xff, 0xff, 0xff, b'a']),
        ("deep msgpack nesting", deep_msgpack),
        ("deep JSON nesting", deep_json),
        ("truncated JSON", b"{\"uid\":\"zz\",\"type\":".to_vec()),
        ("trailing bytes", {
            let mut v = msgpack(rmpv::Value::Array(vec![mp_str("zz")]));
            v.extend_from_slice(&[0x01, 0x02]);
            v
        }),
    ]
}

/// Malformed broadcasts in the classic dialect (`[uid, packet, opts]`).
pub(crate) fn classic_bad_broadcasts(room: &str) -> Vec<(&'static str, Vec<u8>)> {
    use rmpv::Value as M;
    let good = classic_broadcast("zz", "evil", room);
    let mut out = garbage();
    out.extend([
        ("truncated msgpack", good[..good.len() / 2].to_vec()),
        ("truncated by one byte", good[..good.len() - 1].to_vec()),
        (
            "JSON object",
            br#"{"uid":"zz","type":2,"data":["evil"]}"#.to_vec(),
        ),
        ("not an array", msgpack(mp_map(vec![("uid", mp_str("zz"))]))),
        ("array of one", msgpack(M::Array(vec![mp_str("zz")]))),
        (
            "uid not a string",
            msgpack(M::Array(vec![
                7.into(),
                mp_map(vec![
                    ("type", 2.into()),
                    ("data", M::Array(vec![mp_str("evil")])),
                ]),
            ])),
        ),
        (
            "packet not a map",
            msgpack(M::Array(vec![mp_str("zz"), mp_str("packet")])),
        ),
        (
            "packet of a CONNECT",
            msgpack(M::Array(vec![
                mp_str("zz"),
                mp_map(vec![
                    ("type", 0.into()),
                    ("data", M::Array(vec![mp_str("evil")])),
                ]),
            ])),
        ),
        (
            "data not an array",
            msgpack(M::Array(vec![
                mp_str("zz"),
                mp_map(vec![("type", 2.into()), ("data", mp_str("evil"))]),
            ])),
        ),
        (
            "event name not a string",
            msgpack(M::Array(vec![
                mp_str("zz"),
                mp_map(vec![("type", 2.into()), ("data", M::Array(vec![5.into()]))]),
            ])),
        ),
        (
            "empty data",
            msgpack(M::Array(vec![
                mp_str("zz"),
                mp_map(vec![("type", 2.into()), ("data", M::Array(vec![]))]),
            ])),
        ),
        (
            "nsp not a string",
            msgpack(M::Array(vec![
                mp_str("zz"),
                mp_map(vec![
                    ("type", 2.into()),
                    ("data", M::Array(vec![mp_str("evil")])),
                    ("nsp", 3.into()),
                ]),
            ])),
        ),
        (
            "opts not a map",
            msgpack(M::Array(vec![
                mp_str("zz"),
                mp_map(vec![
                    ("type", 2.into()),
                    ("data", M::Array(vec![mp_str("evil")])),
                ]),
                mp_str("opts"),
            ])),
        ),
        (
            "rooms not an array",
            msgpack(M::Array(vec![
                mp_str("zz"),
                mp_map(vec![
                    ("type", 2.into()),
                    ("data", M::Array(vec![mp_str("evil")])),
                ]),
                mp_map(vec![("rooms", mp_str(room))]),
            ])),
        ),
        (
            "a room not a string",
            msgpack(M::Array(vec![
                mp_str("zz"),
                mp_map(vec![
                    ("type", 2.into()),
                    ("data", M::Array(vec![mp_str("evil")])),
                ]),
                mp_map(vec![("rooms", M::Array(vec![M::Map(vec![])]))]),
            ])),
        ),
    ]);
    out
}

/// Malformed requests in the classic dialect (JSON or msgpack objects).
pub(crate) fn classic_bad_requests() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = garbage();
    out.extend([
        ("JSON array", br#"[1,2,3]"#.to_vec()),
        ("no type", br#"{"uid":"zz","requestId":"r1"}"#.to_vec()),
        ("type a string", br#"{"uid":"zz","type":"2"}"#.to_vec()),
        ("type negative", br#"{"uid":"zz","type":-1}"#.to_vec()),
        ("type fractional", br#"{"uid":"zz","type":2.5}"#.to_vec()),
        (
            "join: opts a string",
            br#"{"uid":"zz","type":2,"opts":"x","rooms":["a"]}"#.to_vec(),
        ),
        (
            "join: rooms an object",
            br#"{"uid":"zz","type":2,"opts":{"rooms":[],"except":[]},"rooms":{"a":1}}"#.to_vec(),
        ),
        (
            "leave: except of objects",
            br#"{"uid":"zz","type":3,"opts":{"rooms":[],"except":[{}]},"rooms":["a"]}"#.to_vec(),
        ),
        (
            "fetch: rooms a number",
            br#"{"uid":"zz","requestId":"r3","type":5,"opts":{"rooms":5}}"#.to_vec(),
        ),
        (
            "serverSideEmit: data a number",
            br#"{"uid":"zz","type":6,"data":5}"#.to_vec(),
        ),
        (
            "serverSideEmit: empty data",
            br#"{"uid":"zz","type":6,"data":[]}"#.to_vec(),
        ),
        (
            "broadcast with ack: no packet",
            br#"{"uid":"zz","requestId":"r4","type":7,"opts":{}}"#.to_vec(),
        ),
        (
            "broadcast with ack: packet of a CONNECT",
            br#"{"uid":"zz","requestId":"r5","type":7,"packet":{"type":0,"data":["x"]}}"#.to_vec(),
        ),
        (
            "msgpack: type a map",
            msgpack(mp_map(vec![
                ("uid", mp_str("zz")),
                ("type", mp_map(vec![])),
            ])),
        ),
    ]);
    out
}

/// Malformed responses in the classic dialect.
pub(crate) fn classic_bad_responses() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = garbage();
    out.extend([
        ("no requestId", br#"{"sockets":[]}"#.to_vec()),
        (
            "requestId an object",
            br#"{"requestId":{},"sockets":[]}"#.to_vec(),
        ),
        ("JSON string", br#""requestId""#.to_vec()),
        (
            "msgpack array",
            msgpack(rmpv::Value::Array(vec![mp_str("r")])),
        ),
    ]);
    out
}

/// Malformed messages in the sharded dialect (`{type, data, uid, nsp}`).
pub(crate) fn sharded_bad_messages() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = garbage();
    out.extend([
        ("JSON array", br#"[3,{}]"#.to_vec()),
        ("no type", br#"{"uid":"zz","nsp":"/","data":{}}"#.to_vec()),
        ("type a string", br#"{"type":"3","uid":"zz","nsp":"/","data":{}}"#.to_vec()),
        ("type fractional", br#"{"type":3.5,"uid":"zz","nsp":"/","data":{}}"#.to_vec()),
        ("data a number", br#"{"type":3,"uid":"zz","nsp":"/","data":5}"#.to_vec()),
        ("no data", br#"{"type":3,"uid":"zz","nsp":"/"}"#.to_vec()),
        ("broadcast: no packet", br#"{"type":3,"uid":"zz","nsp":"/","data":{"opts":{}}}"#.to_vec()),
        (
            "broadcast: packet data a string",
            br#"{"type":3,"uid":"zz","nsp":"/","data":{"packet":{"type":2,"data":"x"}}}"#.to_vec(),
        ),
        (
            "broadcast: rooms a string",
            br#"{"type":3,"uid":"zz","nsp":"/","data":{"packet":{"type":2,"data":["evil"]},"opts":{"rooms":"r"}}}"#
                .to_vec(),
        ),
        (
            "join: rooms a number",
            br#"{"type":4,"uid":"zz","nsp":"/","data":{"opts":{},"rooms":5}}"#.to_vec(),
        ),
        (
            "serverSideEmit: packet a number",
            br#"{"type":9,"uid":"zz","nsp":"/","data":{"packet":5}}"#.to_vec(),
        ),
        (
            "fetch response without requestId",
            br#"{"type":8,"uid":"zz","nsp":"/","data":{"sockets":[]}}"#.to_vec(),
        ),
        (
            "msgpack: data an array",
            msgpack(mp_map(vec![
                ("type", 3.into()),
                ("uid", mp_str("zz")),
                ("data", rmpv::Value::Array(vec![])),
            ])),
        ),
    ]);
    out
}

/// Messages of types neither adapter has (a newer adapter's, or noise).
pub(crate) fn unknown_types(mode: &str) -> Vec<(&'static str, Vec<u8>)> {
    match mode {
        "classic" => vec![
            (
                "unknown type",
                br#"{"uid":"zz","requestId":"r2","type":99}"#.to_vec(),
            ),
            (
                "unknown huge type",
                br#"{"uid":"zz","type":18446744073709551615}"#.to_vec(),
            ),
            (
                "unknown type in msgpack",
                msgpack(mp_map(vec![("uid", mp_str("zz")), ("type", 42.into())])),
            ),
        ],
        _ => vec![
            (
                "unknown type",
                br#"{"type":99,"uid":"zz","nsp":"/","data":{}}"#.to_vec(),
            ),
            (
                "unknown huge type",
                br#"{"type":18446744073709551615,"uid":"zz","nsp":"/","data":{}}"#.to_vec(),
            ),
            (
                "unknown type in msgpack",
                msgpack(mp_map(vec![
                    ("type", 42.into()),
                    ("uid", mp_str("zz")),
                    ("nsp", mp_str("/")),
                    ("data", mp_map(vec![])),
                ])),
            ),
        ],
    }
}
