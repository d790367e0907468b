//! The hub's admin API against the real binary: publish (with and without a
//! key, bad input, unknown namespaces), stats, health, and metrics that move
//! by what the test did.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hub::auth::TokenVerifier;
use serde_json::{json, Value};
use support::*;

/// A relay client over a raw WebSocket: connected to `nsp` with `auth`.
fn client(hub: &Proc, nsp: &str, auth: &Value) -> Ws {
    let mut ws = ws_try_connect_at(hub.addr, "/socket.io/", "EIO=4&transport=websocket").unwrap();
    assert!(ws_text(&mut ws).starts_with("0{"));
    let prefix = if nsp == "/" {
        String::new()
    } else {
        format!("{nsp},")
    };
    ws_send_text(&mut ws, &format!("40{prefix}{auth}"));
    let reply = ws_text(&mut ws);
    assert!(
        reply.starts_with(&format!("40{prefix}{{\"sid\"")),
        "{reply}"
    );
    ws
}

fn join(ws: &mut Ws, nsp: &str, room: &str) {
    let prefix = if nsp == "/" {
        String::new()
    } else {
        format!("{nsp},")
    };
    ws_send_text(ws, &format!("42{prefix}7[\"join\",\"{room}\"]"));
    assert_eq!(ws_text(ws), format!("43{prefix}7[{{\"ok\":true}}]"));
}

fn admin(hub: &Proc, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut conn = Conn::open(hub.admin);
    conn.request(method, path, headers, body)
}

fn publish(hub: &Proc, key: Option<&str>, body: &Value) -> Response {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth.as_str()));
    }
    admin(
        hub,
        "POST",
        "/api/publish",
        &headers,
        body.to_string().as_bytes(),
    )
}

#[test]
fn publish_reaches_the_room_and_metrics_count_it() {
    let hub = start_hub(&[], &[]);
    let mut members: Vec<Ws> = (0..3).map(|_| client(&hub, "/", &json!({}))).collect();
    let mut outsider = client(&hub, "/", &json!({}));
    for ws in members.iter_mut() {
        join(ws, "/", "lobby");
    }
    let deliveries = hub.metric("hub_deliveries_total");
    let resp = publish(
        &hub,
        None,
        &json!({"to": ["lobby"], "event": "news", "data": {"n": 1}}),
    );
    assert_eq!((resp.status, resp.json()), (200, json!({"ok": true})));
    for ws in members.iter_mut() {
        assert_eq!(ws_text(ws), r#"42["news",{"n":1}]"#);
    }
    assert_eq!(
        ws_read_within(&mut outsider, Duration::from_millis(200)),
        None
    );
    eventually(Duration::from_secs(5), "3 more deliveries", || {
        hub.metric("hub_deliveries_total") == deliveries + 3.0
    });
    assert_eq!(hub.metric("hub_handshakes_total"), 4.0);
    // `except` and an empty `to` (the whole namespace).
    publish(
        &hub,
        None,
        &json!({"to": [], "except": ["lobby"], "event": "all"}),
    );
    assert_eq!(ws_text(&mut outsider), r#"42["all",null]"#);
    eventually(Duration::from_secs(5), "stats", || {
        let stats = admin(&hub, "GET", "/api/stats", &[], b"").json();
        stats["connections"] == 4
            && stats["shards"].as_array().map(Vec::len) == Some(2)
            && stats["shards"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["websocket"].as_u64().unwrap())
                .sum::<u64>()
                == 4
    });
    assert_eq!(admin(&hub, "GET", "/healthz", &[], b"").status, 200);
    drop(members);
    eventually(
        Duration::from_secs(5),
        "connections gauge back to 1",
        || hub.metric("hub_connections") == 1.0,
    );
}

#[test]
fn the_api_key_is_required_when_set() {
    let hub = start_hub(&["--api-key", "s3cret"], &[]);
    let body = json!({"to": ["r"], "event": "e"});
    assert_eq!(publish(&hub, None, &body).status, 401);
    assert_eq!(publish(&hub, Some("s3cre"), &body).status, 401);
    assert_eq!(publish(&hub, Some("s3cret!"), &body).status, 401);
    assert_eq!(publish(&hub, Some("s3cret"), &body).status, 200);
    assert_eq!(admin(&hub, "GET", "/api/stats", &[], b"").status, 401);
    assert_eq!(admin(&hub, "GET", "/metrics", &[], b"").status, 401);
    let ok = admin(
        &hub,
        "GET",
        "/metrics",
        &[("authorization", "Bearer s3cret")],
        b"",
    );
    assert_eq!(ok.status, 200);
    assert!(ok.text().contains("hub_connections"));
    assert_eq!(
        admin(&hub, "GET", "/healthz", &[], b"").status,
        200,
        "health needs no key"
    );
}

#[test]
fn bad_requests_get_clear_answers() {
    let hub = start_hub(&["--namespace", "/chat*"], &[]);
    let bad = |body: &[u8]| {
        let resp = admin(&hub, "POST", "/api/publish", &[], body);
        (resp.status, resp.json())
    };
    let (status, body) = bad(b"{not json");
    assert_eq!(status, 400);
    assert_eq!(body["ok"], false);
    assert!(body["error"].as_str().unwrap().starts_with("bad request"));
    for body in [
        json!([1]),
        json!({"namespace": "/chat", "to": "r"}),
        json!({"namespace": "/chat", "to": [1], "event": "e"}),
        json!({"namespace": "/chat", "to": "r", "event": "e", "volatile": "no"}),
        json!({"namespace": "/chat", "to": "r", "event": "disconnect"}),
    ] {
        assert_eq!(bad(body.to_string().as_bytes()).0, 400, "{body}");
    }
    let (status, body) = bad(json!({"namespace": "/other", "to": "r", "event": "e"})
        .to_string()
        .as_bytes());
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown namespace"))
    );
    assert_eq!(
        bad(json!({"namespace": "/chat", "to": "r", "event": "e"})
            .to_string()
            .as_bytes())
        .0,
        200
    );
    // Refused from its declared length: the body is never read (sending it
    // whole would race the server's close).
    let mut conn = Conn::open(hub.admin);
    let _ = conn
        .write_all(b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n{");
    assert_eq!(conn.read_response().expect("an answer").status, 413);
    assert_eq!(admin(&hub, "GET", "/api/publish", &[], b"").status, 405);
    assert_eq!(admin(&hub, "GET", "/nope", &[], b"").status, 404);
    // The hub still serves after all that.
    assert_eq!(admin(&hub, "GET", "/healthz", &[], b"").status, 200);
}

#[test]
fn a_user_room_is_reached_through_the_api() {
    let secret = "hub-test-secret";
    let hub = start_hub(&["--auth-secret", secret], &[]);
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = TokenVerifier::new(secret.as_bytes()).sign(&json!({"exp": exp, "sub": "42"}));
    let mut user = client(&hub, "/", &json!({ "token": token }));
    let resp = publish(
        &hub,
        None,
        &json!({"to": "user:42", "event": "notice", "data": "hi"}),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(ws_text(&mut user), r#"42["notice","hi"]"#);
    // Without a token the same client is refused.
    let mut ws = ws_try_connect_at(hub.addr, "/socket.io/", "EIO=4&transport=websocket").unwrap();
    ws_text(&mut ws);
    ws_send_text(&mut ws, "40");
    assert_eq!(ws_text(&mut ws), r#"44{"message":"unauthorized"}"#);
}

#[test]
fn compressed_polling_answers_are_counted_with_the_bytes_saved() {
    let hub = start_hub(&[], &[]);
    let mut c = Client::keep_alive(hub.addr);
    let open = c.get("/socket.io/?EIO=4&transport=polling").text();
    let (sid, _) = parse_open(&open);
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    c.post(&path, b"40").assert_post_ok("CONNECT");
    assert!(c.get(&path).text().starts_with("40{\"sid\""));
    c.post(&path, br#"427["join","lobby"]"#)
        .assert_post_ok("join");
    assert_eq!(c.get(&path).text(), r#"437[{"ok":true}]"#);
    assert_eq!(hub.metric("hub_polling_compressed_total"), 0.0);

    let text = "compressible ".repeat(300);
    let resp = publish(
        &hub,
        None,
        &json!({"to": ["lobby"], "event": "news", "data": text}),
    );
    assert_eq!(resp.status, 200);
    let resp = c.request("GET", &path, &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(resp.header("content-encoding"), Some("gzip"));
    let mut plain = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&resp.body[..]),
        &mut plain,
    )
    .unwrap();
    assert_eq!(plain, format!(r#"42["news","{text}"]"#));
    assert_eq!(hub.metric("hub_polling_compressed_total"), 1.0);
    assert_eq!(
        hub.metric("hub_polling_compression_saved_bytes_total"),
        (plain.len() - resp.body.len()) as f64
    );
}
