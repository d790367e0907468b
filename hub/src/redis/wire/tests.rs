use super::*;
use serde_json::json;

#[test]
fn a_broadcast_decodes_to_what_was_encoded() {
    let target = WireTarget {
        rooms: vec!["r".into()],
        except: vec!["x".into(), "y".into()],
    };
    let flags = WireFlags {
        volatile: true,
        compress: Some(true),
        local: false,
        timeout: None,
    };
    let args = [
        json!({"n": 1, "b": {"_placeholder": true, "num": 0}}),
        json!("s"),
    ];
    let attachments = [Bytes::from_static(b"\xff\x00")];
    let bytes = encode_broadcast(
        "abc123",
        "/chat",
        "news",
        &args,
        &attachments,
        &target,
        &flags,
    );
    let back = decode_broadcast(&bytes).unwrap();
    assert_eq!(back.uid, "abc123");
    assert_eq!(back.event.nsp, "/chat");
    assert_eq!(back.event.data[0], json!("news"));
    assert_eq!(&back.event.data[1..], &args);
    assert_eq!(back.event.attachments, attachments);
    assert_eq!(back.target, target);
    assert_eq!(back.flags, flags);
}

#[test]
fn channels_are_named_as_the_node_adapter_names_them() {
    let c = Channels {
        prefix: "socket.io".into(),
    };
    assert_eq!(c.broadcast("/", &[]), "socket.io#/#");
    assert_eq!(c.broadcast("/", &["r".into()]), "socket.io#/#r#");
    assert_eq!(c.broadcast("/", &["a".into(), "b".into()]), "socket.io#/#");
    assert_eq!(c.broadcast_pattern("/x"), "socket.io#/x#*");
    assert_eq!(c.request("/"), "socket.io-request#/#");
    assert_eq!(c.response("/"), "socket.io-response#/#");
    assert_eq!(c.own_response("/", "u1"), "socket.io-response#/#u1#");
    assert_eq!(c.namespace_of_broadcast("socket.io#/x#room#"), Some("/x"));
    assert_eq!(
        c.namespace_of_request("socket.io-request#/#"),
        Some(("/", false))
    );
    assert_eq!(
        c.namespace_of_request("socket.io-response#/#u1#"),
        Some(("/", true))
    );
    assert_eq!(c.namespace_of_request("other-request#/#"), None);
}

#[test]
fn malformed_messages_are_errors() {
    for bad in [
        &b""[..],
        b"{",
        b"[1]",
        b"{\"type\":\"x\"}",
        b"{\"type\":6,\"data\":5}",
        b"\x93\xa1u\x01\x80",         // packet not an object
        b"\x92\xa1u\x81\xa4type\x00", // CONNECT is not broadcast
    ] {
        assert!(
            decode_request(bad).is_err() && decode_broadcast(bad).is_err(),
            "{bad:?}"
        );
    }
    assert!(decode_response(b"{\"sockets\":[]}").is_err());
}

#[test]
fn ids_look_like_uid2s() {
    let id = new_id();
    assert_eq!(id.len(), 6);
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
}

#[test]
fn arguments_nested_past_the_limit_are_refused() {
    // 100 levels pass, 101 do not, in a broadcast and in a server-side emit.
    let nested = |levels: usize| "[".repeat(levels) + &"]".repeat(levels);
    for (levels, ok) in [(100, true), (101, false)] {
        let request = format!(r#"{{"type":6,"data":["ev",{}]}}"#, nested(levels));
        assert_eq!(
            decode_request(request.as_bytes()).is_ok(),
            ok,
            "{levels} levels"
        );
        let args: Value = serde_json::from_str(&nested(levels)).unwrap();
        let broadcast = encode_broadcast(
            "u",
            "/",
            "ev",
            &[args],
            &[],
            &WireTarget::default(),
            &WireFlags::default(),
        );
        assert_eq!(decode_broadcast(&broadcast).is_ok(), ok, "{levels} levels");
    }
}
