//! The cluster tests' redis-server (`support::RedisServer`): it answers on
//! its own port, `kill()` takes it away, `restart()` brings an empty one
//! back on the same port, dropping it stops it, and a missing redis-server
//! fails the test that wanted one.

mod support;

use std::time::Duration;

use support::*;

/// True while something accepts connections on the port.
fn answers(port: u16) -> bool {
    redis_command(port, &["PING"], Duration::from_secs(1)).is_ok_and(|r| r == "+PONG\r\n")
}

#[test]
fn started_server_answers_on_its_url() {
    let redis = RedisServer::start();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    assert_eq!(redis.command(&["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(redis.command(&["GET", "k"]), "$1\r\nv\r\n");
    // Nothing is saved: no RDB snapshots, no append-only file.
    assert_eq!(
        redis.command(&["CONFIG", "GET", "appendonly"]),
        "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"
    );
    assert_eq!(
        redis.command(&["CONFIG", "GET", "save"]),
        "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    );
}

#[test]
fn kill_then_restart_comes_back_empty_on_the_same_port() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    assert_eq!(redis.command(&["SET", "k", "v"]), "+OK\r\n");

    redis.kill();
    let refused = redis_command(port, &["PING"], Duration::from_secs(1));
    assert!(refused.is_err(), "killed server still answers: {refused:?}");

    redis.restart();
    assert_eq!(redis.port(), port);
    assert!(answers(port), "restarted server does not answer PING");
    assert_eq!(redis.command(&["GET", "k"]), "$-1\r\n", "data survived");

    // Restarting a running server kills it first.
    redis.restart();
    assert!(answers(port), "second restart does not answer PING");
}

#[test]
fn dropping_the_server_stops_it() {
    let redis = RedisServer::start();
    let port = redis.port();
    assert!(answers(port));
    drop(redis);
    assert!(!answers(port), "redis-server still answers after drop");
}

#[test]
#[should_panic(expected = "redis-server is not installed")]
fn missing_redis_server_fails_the_test() {
    RedisServer::start_program("/nonexistent/redis-server");
}
