use serde_json::{json, Value};

use super::aggregate::{Buckets, EventType, Sampler, Totals, MAX_BUCKETS};
use super::commands::{parse, Command};
use super::serialize::{features, server_stats, socket, ServerIdentity};
use super::sessions::{new_session_id, SessionSet};
use super::{AdminUi, AdminUiConfig, AdminUiError, BasicAuth, Mode};
use crate::engine::TransportKind;
use crate::server::{NamespaceStats, RemoteSocket, ShardStats};

#[test]
fn features_follow_the_upstream_order_per_mode() {
    let all = [
        "EMIT",
        "JOIN",
        "LEAVE",
        "DISCONNECT",
        "MJOIN",
        "MLEAVE",
        "MDISCONNECT",
        "AGGREGATED_EVENTS",
        "ALL_EVENTS",
    ];
    assert_eq!(features(false, Mode::Development), all);
    assert_eq!(features(false, Mode::Production), all[..8]);
    assert_eq!(
        features(true, Mode::Development),
        ["AGGREGATED_EVENTS", "ALL_EVENTS"]
    );
    assert_eq!(features(true, Mode::Production), ["AGGREGATED_EVENTS"]);
}

#[test]
fn a_bad_hash_is_refused_a_good_one_taken() {
    let config = |hash: &str| AdminUiConfig {
        auth: Some(BasicAuth {
            username: "admin".into(),
            password_hash: hash.into(),
        }),
        ..AdminUiConfig::default()
    };
    assert!(matches!(
        AdminUi::new(config("changeit")),
        Err(AdminUiError::InvalidHash(_))
    ));
    let good = "$2b$10$nu1FHRkuxkZkqID.31gz4uQsyERZAn.m4IIruysTsHDODBtrqS5Me";
    assert!(AdminUi::new(config(good)).is_ok());
    assert!(bcrypt::verify("changeit", good).unwrap());
}

#[test]
fn the_session_set_forgets_the_oldest_past_its_bound() {
    let mut set = SessionSet::new(2);
    assert_eq!(set.insert("a".into()), 0);
    assert_eq!(set.insert("b".into()), 0);
    assert_eq!(set.insert("b".into()), 0, "a repeat takes no place");
    assert_eq!(set.insert("c".into()), 1);
    assert!(!set.contains("a"));
    assert!(set.contains("b") && set.contains("c"));
    assert_eq!(set.len(), 2);
    let id = new_session_id();
    assert_eq!(id.len(), 16);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_ne!(id, new_session_id());
}

#[test]
fn buckets_add_up_per_whole_second_and_drain() {
    let mut buckets = Buckets::default();
    buckets.add(10_100, EventType::PacketsIn, None, 2);
    buckets.add(10_900, EventType::PacketsIn, None, 3);
    buckets.add(11_000, EventType::PacketsIn, None, 1);
    buckets.add(11_000, EventType::RawDisconnection, Some("ping timeout"), 1);
    buckets.add(11_000, EventType::BytesOut, None, 0);
    let mut drained = buckets.drain();
    drained.sort_by_key(|v| {
        (
            v["timestamp"].as_u64(),
            v["type"].as_str().map(str::to_string),
        )
    });
    assert_eq!(
        drained,
        vec![
            json!({"timestamp": 10_000, "type": "packetsIn", "count": 5}),
            json!({"timestamp": 11_000, "type": "packetsIn", "count": 1}),
            json!({"timestamp": 11_000, "type": "rawDisconnection", "subType": "ping timeout", "count": 1}),
        ]
    );
    assert!(buckets.drain().is_empty());
}

#[test]
fn buckets_are_bounded() {
    let mut buckets = Buckets::default();
    for second in 0..MAX_BUCKETS as u64 + 10 {
        buckets.add(second * 1000, EventType::PacketsOut, None, 1);
    }
    assert_eq!(buckets.dropped, 10);
    assert_eq!(buckets.drain().len(), MAX_BUCKETS);
}

#[test]
fn the_sampler_counts_what_grew_after_its_baseline() {
    let mut sampler = Sampler::default();
    let mut buckets = Buckets::default();
    let mut totals = Totals {
        connections: 100,
        packets_in: 50,
        ..Totals::default()
    };
    sampler.sample(totals, 1_000, &mut buckets);
    assert!(
        buckets.drain().is_empty(),
        "the first sample is the baseline"
    );
    totals.connections += 2;
    totals.disconnections[1] += 1; // transport close
    totals.bytes_out += 40;
    sampler.sample(totals, 2_500, &mut buckets);
    let mut drained = buckets.drain();
    drained.sort_by_key(|v| v["type"].as_str().map(str::to_string));
    assert_eq!(
        drained,
        vec![
            json!({"timestamp": 2_000, "type": "bytesOut", "count": 40}),
            json!({"timestamp": 2_000, "type": "rawConnection", "count": 2}),
            json!({"timestamp": 2_000, "type": "rawDisconnection", "subType": "transport close", "count": 1}),
        ]
    );
}

#[test]
fn commands_read_their_filters() {
    assert_eq!(
        parse("join", &[json!("/"), json!("room1"), json!("abc")]),
        Some(Command::Join {
            nsp: "/".into(),
            room: "room1".into(),
            filter: Some("abc".into())
        })
    );
    assert_eq!(
        parse("leave", &[json!("/"), json!("room1")]),
        Some(Command::Leave {
            nsp: "/".into(),
            room: "room1".into(),
            filter: None
        })
    );
    assert_eq!(
        parse("_disconnect", &[json!("/chat"), json!(true), Value::Null]),
        Some(Command::Disconnect {
            nsp: "/chat".into(),
            close: true,
            filter: None
        })
    );
    assert_eq!(
        parse(
            "emit",
            &[
                json!("/"),
                json!(""),
                json!("hello"),
                json!("world"),
                json!(1)
            ]
        ),
        Some(Command::Emit {
            nsp: "/".into(),
            filter: None,
            event: "hello".into(),
            args: vec![json!("world"), json!(1)]
        })
    );
    assert_eq!(parse("join", &[json!("/")]), None, "no room");
    assert_eq!(parse("emit", &[json!("/"), json!("r")]), None, "no event");
    assert_eq!(parse("nope", &[json!("/")]), None);
}

#[test]
fn a_socket_serializes_as_the_ui_reads_it() {
    let remote = RemoteSocket {
        id: "sock1".into(),
        nsp: "/chat".into(),
        rooms: vec!["sock1".into(), "lobby".into()],
        shard: 1,
        on_this_node: true,
        handshake: json!({
            "headers": {"x-forwarded-for": "10.0.0.9", "host": "h"},
            "time": "t", "address": "127.0.0.1", "xdomain": false, "secure": false,
            "issued": 5, "url": "/socket.io/?EIO=4", "query": {"EIO": "4"}, "auth": {"token": "secret"}
        }),
        client_id: Some("AAAABBBBCCCCDDDDEEEEFFFF".into()),
        transport: Some(TransportKind::Polling),
    };
    let value = socket(&remote);
    assert_eq!(value["id"], "sock1");
    assert_eq!(value["clientId"], "AAAABBBBCCCC");
    assert_eq!(value["transport"], "polling");
    assert_eq!(value["nsp"], "/chat");
    assert_eq!(value["data"], json!({}));
    assert_eq!(value["rooms"], json!(["sock1", "lobby"]));
    assert_eq!(value["handshake"]["address"], "10.0.0.9");
    assert_eq!(value["handshake"]["issued"], 5);
    assert!(
        value["handshake"].get("auth").is_none(),
        "auth is never shown"
    );
}

#[test]
fn server_stats_sum_the_shards() {
    let shard = |id, polling, websocket, sockets: &[(&str, usize)]| ShardStats {
        shard: id,
        connections: polling + websocket,
        polling,
        websocket,
        namespaces: sockets
            .iter()
            .map(|(n, s)| {
                (
                    n.to_string(),
                    NamespaceStats {
                        sockets: *s,
                        rooms: 0,
                    },
                )
            })
            .collect(),
        ..ShardStats::default()
    };
    let identity = ServerIdentity {
        server_id: "box".into(),
        hostname: "box".into(),
        pid: 7,
    };
    let stats = server_stats(
        &identity,
        1.5,
        &[
            shard(0, 1, 2, &[("/", 3), ("/admin", 1)]),
            shard(1, 2, 0, &[("/", 2)]),
        ],
        vec![json!({"timestamp": 0, "type": "packetsIn", "count": 1})],
    );
    assert_eq!(stats["serverId"], "box");
    assert_eq!(stats["pid"], 7);
    assert_eq!(stats["uptime"], 1.5);
    assert_eq!(stats["clientsCount"], 5);
    assert_eq!(stats["pollingClientsCount"], 3);
    assert_eq!(
        stats["namespaces"],
        json!([{"name": "/", "socketsCount": 5}, {"name": "/admin", "socketsCount": 1}])
    );
    assert_eq!(stats["aggregatedEvents"].as_array().map(Vec::len), Some(1));
}

#[test]
fn dates_are_written_as_javascript_iso_strings() {
    use crate::redis::msgpack::iso_date;
    assert_eq!(iso_date(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso_date(951_782_400_123), "2000-02-29T00:00:00.123Z");
    assert_eq!(iso_date(1_796_159_878_045), "2026-12-01T21:17:58.045Z");
}

#[test]
fn a_broadcast_packet_reads_back_as_its_event_and_arguments() {
    use super::dev::packet_args;
    assert_eq!(
        packet_args(r#"2["hello","world"]"#),
        Some(vec![json!("hello"), json!("world")])
    );
    assert_eq!(
        packet_args(r#"2/chat,12["a",{"b":1}]"#),
        Some(vec![json!("a"), json!({"b": 1})])
    );
    assert_eq!(
        packet_args(r#"51-/chat,["bin",{"_placeholder":true,"num":0}]"#),
        Some(vec![json!("bin"), json!({"_placeholder": true, "num": 0})])
    );
    assert_eq!(packet_args("0/chat,"), None);
    assert_eq!(packet_args(r#"3["ack"]"#), None);
}

#[test]
fn a_disconnect_renders_as_socket_disconnected_then_room_left_per_room() {
    use super::dev::{render, Notice};
    let events = render(
        0,
        Notice::SocketDisconnected {
            nsp: "/".into(),
            id: "s1".into(),
            reason: "transport close",
            rooms: vec!["s1".into(), "club".into()],
        },
        &mut Default::default(),
    );
    let names: Vec<&str> = events.iter().map(|(e, _)| *e).collect();
    assert_eq!(names, ["socket_disconnected", "room_left", "room_left"]);
    assert_eq!(
        events[0].1.values(),
        [
            json!("/"),
            json!("s1"),
            json!("transport close"),
            json!("1970-01-01T00:00:00.000Z")
        ]
    );
    assert_eq!(events[2].1.values()[1], json!("club"));
}

#[test]
fn an_upgrade_renders_as_socket_updated_with_the_transport_and_no_date() {
    use super::dev::{render, Notice};
    let events = render(
        0,
        Notice::SocketUpdated {
            nsp: "/chat".into(),
            id: "s1".into(),
            transport: "websocket",
        },
        &mut Default::default(),
    );
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "socket_updated");
    assert_eq!(
        events[0].1.values(),
        [json!({"id": "s1", "nsp": "/chat", "transport": "websocket"})]
    );
}

#[test]
fn notices_past_the_queue_bound_are_dropped_oldest_kept() {
    use super::dev::{enqueue, Notice};
    let mut queue = std::collections::VecDeque::new();
    let notice = |i: usize| Notice::PacketSent {
        nsp: "/".into(),
        id: format!("s{i}"),
        packet: "2[\"m\"]".into(),
    };
    let kept: Vec<bool> = (0..5)
        .map(|i| enqueue(&mut queue, 3, i as u64, notice(i)))
        .collect();
    assert_eq!(kept, [true, true, true, false, false]);
    let ids: Vec<u64> = queue.iter().map(|(at, _)| *at).collect();
    assert_eq!(ids, [0, 1, 2], "the first three kept, in order");
    queue.pop_front();
    assert!(
        enqueue(&mut queue, 3, 9, notice(9)),
        "room again once drained"
    );
}

#[test]
fn the_notices_of_one_broadcast_share_its_text_and_read_it_back_alike() {
    use super::dev::{enqueue, render, LastPacket, Notice};
    use crate::engineio::Text;
    let big = "x".repeat(64 * 1024);
    let packet = Text::from(format!(r#"2["big","{big}"]"#));
    let other = Text::from(r#"2/chat,["small",1]"#);
    let mut queue = std::collections::VecDeque::new();
    for (i, text) in std::iter::repeat_n(&packet, 1000)
        .chain([&other, &packet])
        .enumerate()
    {
        let notice = Notice::PacketSent {
            nsp: "/".into(),
            id: format!("s{i}"),
            packet: text.clone(),
        };
        assert!(enqueue(&mut queue, 10_000, 0, notice));
    }
    // One text in memory for all 1,000 recipients, not 1,000 copies of 64 KB.
    for (_, notice) in queue.iter().take(1000) {
        let Notice::PacketSent { packet: held, .. } = notice else {
            panic!("a packet notice");
        };
        assert_eq!(held.as_str().as_ptr(), packet.as_str().as_ptr());
    }
    let mut last = LastPacket::default();
    let rendered: Vec<Value> = queue
        .into_iter()
        .flat_map(|(at, notice)| render(at, notice, &mut last))
        .map(|(event, args)| {
            assert_eq!(event, "event_sent");
            args.values()[2].clone()
        })
        .collect();
    assert_eq!(rendered.len(), 1002);
    assert!(rendered[..1000].iter().all(|a| *a == json!(["big", big])));
    assert_eq!(
        rendered[1000],
        json!(["small", 1]),
        "another text read anew"
    );
    assert_eq!(rendered[1001], json!(["big", big]), "and the first again");
}
