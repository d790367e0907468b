//! The relay's handlers over sessions that only queue.

use super::{relay, RelayConfig};
use crate::server::testing::{shard_of, TestClient};
use crate::server::IoSettings;

#[test]
fn a_join_past_the_room_limit_is_refused_and_the_socket_still_works() {
    let relay = relay(RelayConfig {
        settings: IoSettings {
            max_rooms_per_socket: 2,
            ..IoSettings::default()
        },
        ..Default::default()
    });
    let shard = shard_of(&relay);
    let c = TestClient::new(&shard);
    c.connect("/");
    c.send(r#"21["join",["a","b"]]"#);
    c.send(r#"22["join","c"]"#);
    assert_eq!(
        c.sent(),
        [
            r#"31[{"ok":true}]"#,
            r#"32[{"ok":false,"error":"too many rooms"}]"#
        ]
    );
    assert_eq!(c.socket("/").rooms().len(), 3, "its own, a and b");
    c.send(r#"23["publish",{"to":"a","event":"e"}]"#);
    assert_eq!(c.sent(), [r#"33[{"ok":true}]"#], "the socket still works");
}

#[test]
fn publish_and_echo_pass_the_data_on_as_the_client_wrote_it() {
    let relay = relay(RelayConfig::default());
    let shard = shard_of(&relay);
    let (member, publisher) = (TestClient::new(&shard), TestClient::new(&shard));
    member.connect("/");
    publisher.connect("/");
    member.send(r#"21["join","r"]"#);
    assert_eq!(member.sent(), [r#"31[{"ok":true}]"#]);
    // The spec is read (a repeated key: the last one, as JSON.parse); the
    // data is not parsed, so its spelling stays.
    publisher.send(
        r#"25["publish",{"to":"nowhere","event":"e","data":{"n":1.50, "s" : "\u00e9"},"to":["r"]}]"#,
    );
    assert_eq!(publisher.sent(), [r#"35[{"ok":true}]"#]);
    assert_eq!(member.sent(), [r#"2["e",{"n":1.50, "s" : "\u00e9"}]"#]);
    publisher.send(r#"26["publish",{"to":"r","event":"e"}]"#);
    assert_eq!(publisher.sent(), [r#"36[{"ok":true}]"#]);
    assert_eq!(member.sent(), [r#"2["e",null]"#], "no data: null");
    for bad in [
        r#"27["publish",["r","e"]]"#,
        r#"27["publish",{"to":"r","event":"e","volatile":"yes"}]"#,
    ] {
        publisher.send(bad);
        assert_eq!(
            publisher.sent(),
            [r#"37[{"ok":false,"error":"bad request"}]"#],
            "{bad}"
        );
    }
    publisher.send(r#"28["echo",1.0E2, {"a" :[]}]"#);
    assert_eq!(publisher.sent(), [r#"38[1.0E2,{"a" :[]}]"#]);
}

#[test]
fn a_publish_to_several_rooms_reaches_each_member_once() {
    let relay = relay(RelayConfig::default());
    let shard = shard_of(&relay);
    let (both, one, publisher) = (
        TestClient::new(&shard),
        TestClient::new(&shard),
        TestClient::new(&shard),
    );
    for c in [&both, &one, &publisher] {
        c.connect("/");
    }
    both.send(r#"21["join",["a","b"]]"#);
    one.send(r#"21["join","b"]"#);
    assert_eq!(both.sent(), [r#"31[{"ok":true}]"#]);
    assert_eq!(one.sent(), [r#"31[{"ok":true}]"#]);
    for (id, to) in [(2, r#"["a","b"]"#), (3, r#"["b","b"]"#), (4, r#""a""#)] {
        publisher.send(&format!(
            r#"2{id}["publish",{{"to":{to},"event":"e","data":{id}}}]"#
        ));
        assert_eq!(
            publisher.sent(),
            [format!(r#"3{id}[{{"ok":true}}]"#)],
            "{to}"
        );
        assert_eq!(both.sent(), [format!(r#"2["e",{id}]"#)], "{to}");
        let expected: Vec<String> = match id {
            4 => vec![],
            _ => vec![format!(r#"2["e",{id}]"#)],
        };
        assert_eq!(one.sent(), expected, "{to}");
    }
}
