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
