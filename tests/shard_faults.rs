//! A shard that dies takes the server down at once, loudly; shutdown ends
//! within its timeout whatever state the shards are in. In-process, with the
//! library's `Server`: the `hub` binary exits non-zero with
//! `RunningServer::join`'s error.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hub::engine::{Echo, EngineConfig, Handler, ServerConfig};
use hub::shard::{LocalTask, Server, ServerError, ShardTask};

fn config(shards: usize, shutdown_timeout: Duration) -> ServerConfig {
    ServerConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        shards,
        shutdown_timeout,
        ..ServerConfig::default()
    }
}

fn echo() -> hub::engine::HandlerFactory {
    std::sync::Arc::new(|_| std::rc::Rc::new(Echo) as std::rc::Rc<dyn Handler>)
}

/// A task on shard `shard` that runs `body` after `after`, outside any
/// connection: a panic there is not contained.
fn task_on(shard: usize, after: Duration, body: fn()) -> ShardTask {
    std::sync::Arc::new(move |id| {
        (id == shard).then(|| {
            let task: LocalTask = Box::pin(async move {
                glommio::timer::Timer::new(after).await;
                body();
            });
            task
        })
    })
}

#[test]
fn a_shard_that_dies_ends_join_at_once_naming_it_and_its_panic() {
    let running = Server::new(config(2, Duration::from_secs(10)))
        .endpoint(EngineConfig::new("/engine.io/"), echo())
        .task(task_on(1, Duration::from_millis(200), || {
            panic!("injected fault in shard 1")
        }))
        .start()
        .expect("start");
    let shutdown = running.shutdown_handle();
    let started = Instant::now();
    let error = running.join().expect_err("a dead shard is an error");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    match &error {
        ServerError::ShardDied { shard, message } => {
            assert_eq!(*shard, 1);
            assert!(message.contains("injected fault in shard 1"), "{message}");
            assert!(message.contains("shard_faults.rs"), "{message}");
        }
        other => panic!("expected ShardDied, got {other:?}"),
    }
    assert!(error.to_string().contains("shard 1 died"), "{error}");
    // Shard 0 is still up; stop it.
    shutdown.shutdown();
}

#[test]
fn shutdown_ends_within_its_timeout_even_when_a_shard_is_stuck() {
    // Shard 1 blocks its thread (a bug: a handler that never returns); the
    // server must still give up at the shutdown timeout.
    let timeout = Duration::from_millis(1500);
    let running = Server::new(config(2, timeout))
        .endpoint(EngineConfig::new("/engine.io/"), echo())
        .task(task_on(1, Duration::from_millis(100), || {
            std::thread::sleep(Duration::from_secs(30))
        }))
        .start()
        .expect("start");
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    running.shutdown_handle().shutdown();
    let error = running
        .join()
        .expect_err("a stuck shard overruns the timeout");
    let took = asked.elapsed();
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(500),
        "{took:?}"
    );
    match error {
        ServerError::ShutdownTimeout { running, .. } => assert_eq!(running, vec![1]),
        other => panic!("expected ShutdownTimeout, got {other:?}"),
    }
}

#[test]
fn a_clean_shutdown_ends_well_within_its_timeout() {
    let timeout = Duration::from_secs(5);
    let running = Server::new(config(2, timeout))
        .endpoint(EngineConfig::new("/engine.io/"), echo())
        .start()
        .expect("start");
    let asked = Instant::now();
    running.shutdown_handle().shutdown();
    running.join().expect("a clean stop");
    assert!(asked.elapsed() < timeout, "{:?}", asked.elapsed());
}
