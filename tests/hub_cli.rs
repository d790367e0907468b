//! The `hub` binary's command line: help, version, precedence of flags over
//! environment over file, bad values refused naming the option, and the
//! connection limit.

mod support;

use std::net::SocketAddr;
use std::process::Output;
use std::time::{Duration, Instant};

use support::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    hub_command(args, env).output().expect("run hub")
}

fn handshake(addr: SocketAddr) -> Response {
    get_fresh(addr, "/socket.io/?EIO=4&transport=polling")
}

#[test]
fn help_lists_every_option_and_version_prints() {
    let help = run(&["--help"], &[]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--bind",
        "--port",
        "--shards",
        "--pin-cores",
        "--path",
        "--ping-interval",
        "--ping-timeout",
        "--max-payload",
        "--connect-timeout",
        "--cors-origin",
        "--no-eio3",
        "--max-connections",
        "--max-connections-per-ip",
        "--max-namespaces-per-connection",
        "--max-rooms-per-socket",
        "--max-packets-per-second",
        "--packet-burst",
        "--max-buffered-bytes",
        "--max-buffered-packets",
        "--max-cross-shard-backlog",
        "--http-compression-threshold",
        "--no-http-compression",
        "HUB_HTTP_COMPRESSION_THRESHOLD",
        "--deflate-threshold",
        "--no-deflate",
        "HUB_DEFLATE_THRESHOLD",
        "HUB_NO_DEFLATE",
        "--redis-url",
        "--redis-prefix",
        "--redis-mode",
        "--redis-subscription-mode",
        "--redis-max-pending-bytes",
        "--redis-request-timeout",
        "HUB_REDIS_URL",
        "HUB_MAX_BUFFERED_BYTES",
        "--auth-secret",
        "--api-key",
        "--admin-bind",
        "--shutdown-timeout",
        "--dashboard-streams",
        "--admin-ui",
        "--admin-ui-namespace",
        "--admin-ui-username",
        "--admin-ui-password-hash",
        "--admin-ui-readonly",
        "--admin-ui-mode",
        "--admin-ui-max-pending-events",
        "--tls-cert",
        "--tls-key",
        "--admin-tls-cert",
        "--admin-tls-key",
        "--tls-handshake-timeout",
        "--dashboard-interval",
        "--log-format",
        "--log-level",
        "--namespace",
        "--config",
        "--version",
        "HUB_PORT",
    ] {
        assert!(text.contains(option), "--help lacks {option}:\n{text}");
    }
    let version = run(&["--version"], &[]);
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("hub "));
}

#[test]
fn bad_values_are_refused_naming_the_option() {
    for (args, env, option) in [
        (&["--ping-interval", "0"][..], &[][..], "--ping-interval"),
        (&["--port", "http"][..], &[][..], "--port"),
        (&["--log-format", "xml"][..], &[][..], "--log-format"),
        (
            &[][..],
            &[("HUB_CORS_ORIGIN", "example.com")][..],
            "--cors-origin",
        ),
        (&[][..], &[("HUB_SHARDS", "many")][..], "--shards"),
        (&["--namespace", "chat"][..], &[][..], "--namespace"),
        (&["--packet-burst", "0"][..], &[][..], "--packet-burst"),
        (
            &[][..],
            &[("HUB_MAX_ROOMS_PER_SOCKET", "lots")][..],
            "--max-rooms-per-socket",
        ),
        (
            &[][..],
            &[("HUB_MAX_BUFFERED_BYTES", "1000")][..],
            "--max-buffered-bytes",
        ),
        (&["--redis-url", "http://x"][..], &[][..], "--redis-url"),
        (
            &[][..],
            &[("HUB_REDIS_URL", "redis://h:99999")][..],
            "--redis-url",
        ),
        (&["--redis-mode", "cluster"][..], &[][..], "--redis-mode"),
        (&["--redis-prefix", ""][..], &[][..], "--redis-prefix"),
        (
            &["--redis-max-pending-bytes", "10"][..],
            &[][..],
            "--redis-max-pending-bytes",
        ),
        (
            &["--redis-request-timeout", "0"][..],
            &[][..],
            "--redis-request-timeout",
        ),
    ] {
        let out = run(args, env);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?} exits 2");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(option), "{args:?} {env:?}: {stderr}");
    }
    let dir = std::env::temp_dir().join(format!("hub-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hub.toml");
    std::fs::write(&file, "ping-intervall = 5\n").unwrap();
    let out = run(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ping-intervall"));
    let out = run(&["--config", "/nonexistent/hub.toml"], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn flags_win_over_env_which_wins_over_the_file() {
    let dir = std::env::temp_dir().join(format!("hub-cli-precedence-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hub.toml");
    std::fs::write(
        &file,
        "ping-interval = 1111\nping-timeout = 2222\nmax-payload = 3333\n",
    )
    .unwrap();
    let hub = start_hub(
        &["--config", file.to_str().unwrap(), "--max-payload", "6666"],
        &[("HUB_PING_TIMEOUT", "4444"), ("HUB_MAX_PAYLOAD", "5555")],
    );
    let resp = handshake(hub.addr);
    let (_, open) = parse_open(&resp.text());
    assert_eq!(
        open["pingInterval"], 1111,
        "the file fills what nothing else set"
    );
    assert_eq!(
        open["pingTimeout"], 4444,
        "the environment wins over the file"
    );
    assert_eq!(open["maxPayload"], 6666, "the flag wins over both");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn connections_beyond_the_limit_are_refused_cleanly() {
    let hub = start_hub(&["--max-connections", "2"], &[]);
    let first = handshake(hub.addr);
    assert_eq!(first.status, 200);
    let (sid, _) = parse_open(&first.text());
    assert_eq!(handshake(hub.addr).status, 200);
    assert_eq!(handshake(hub.addr).status, 503, "polling beyond the limit");
    let mut ws = ws_try_connect_at(hub.addr, "/socket.io/", "EIO=4&transport=websocket")
        .expect("the upgrade itself is answered");
    let (end, data) = ws_expect_close(&mut ws, Duration::from_secs(3));
    assert!(data.is_empty(), "no open packet: {data:?}");
    assert_eq!(end, WsEnd::Close(Some(1013)), "try again later");
    // A place frees when a session ends.
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(post_fresh(hub.addr, &path, b"1").status, 200);
    let t = Instant::now();
    let mut status = handshake(hub.addr).status;
    while status != 200 && t.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
        status = handshake(hub.addr).status;
    }
    assert_eq!(status, 200, "a closed session gives its place back");
}

#[test]
fn pinned_shards_serve_and_more_shards_than_cores_too() {
    for args in [&["--pin-cores"][..], &["--pin-cores", "--shards", "4"][..]] {
        let hub = start_hub(args, &[]);
        let resp = handshake(hub.addr);
        assert_eq!(resp.status, 200, "{args:?}");
        let (sid, _) = parse_open(&resp.text());
        // The session answers on fresh connections, whichever shard takes them.
        let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        for _ in 0..8 {
            assert_eq!(post_fresh(hub.addr, &path, b"40").status, 200);
            let answer = get_fresh(hub.addr, &path);
            assert!(
                answer.text().starts_with("40{\"sid\""),
                "{args:?}: {}",
                answer.text()
            );
            assert_eq!(post_fresh(hub.addr, &path, b"41").status, 200);
        }
    }
}
