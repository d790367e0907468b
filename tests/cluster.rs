//! A hub cluster on Redis when things go wrong (issue 12, points 6 and 7),
//! with the real `hub` binary and a real redis-server of each test's own
//! (`support::RedisServer`: a missing redis-server fails the test). Each
//! test starts its own Redis and nodes on free ports and stops them.
//!
//! - Redis unreachable at start: the node serves its own clients, logs the
//!   failure once, says it is degraded (`/readyz` 503, `connected` false),
//!   and joins the cluster when Redis comes.
//! - Redis killed (SIGKILL) and restarted under load, classic and sharded:
//!   no node dies, both reconnect, delivery resumes, local delivery never
//!   stops, nothing is duplicated or reordered, and every publish the
//!   other node missed is accounted for. Redis's `MONITOR` tells where each
//!   was lost: one that Redis never ran must be in the publisher's
//!   `publish_failed`; one Redis ran before the other node had subscribed
//!   again (Redis pub/sub keeps nothing for a subscriber to come) is
//!   reported; one Redis ran to a subscribed node must have arrived.
//! - A publish in flight (written, no reply yet) when Redis dies is counted
//!   as failed: made certain with a frozen Redis.
//! - Redis frozen (SIGSTOP) under load: local delivery goes on, what waits
//!   for Redis stays within its bound (publishes past it dropped and
//!   counted); once it thaws, cluster delivery resumes.
//! - Malformed messages on every channel a node listens to (garbage,
//!   truncated or hostile msgpack and JSON, wrong shapes, unknown types, a
//!   channel name that is not UTF-8): each ignored and counted once in
//!   `malformed`, none reaching a client, the node serving on.
//! - A node that dies (SIGKILL): the others deliver to each other at once
//!   and count it gone (`nodes`) at their next count; a connected node
//!   counts itself and the others (`nodes`) at once when it joins, and a
//!   node that joins later at its next count (every 2 s).
//! - SIGTERM of a clustered node under load, Redis up, gone or frozen:
//!   exit 0 within `--shutdown-timeout`.
//! - An admin publish reaches the room's sockets on every node.
//! - A node that hangs (SIGSTOP): a fetch from another ends at the request
//!   timeout with the answers that came, counted.
//!
//! Clients speak the relay protocol (docs/relay-protocol.md) over raw
//! Engine.IO v4 WebSockets (`cluster/clients.rs`); `cluster/payloads.rs`
//! holds the malformed messages, `cluster/monitor.rs` reads `MONITOR`.
//! Every wait has a deadline; the one fixed wait is the window in which
//! log lines are counted.

mod support;

#[path = "cluster/clients.rs"]
mod clients;
#[path = "cluster/monitor.rs"]
mod monitor;
#[path = "cluster/payloads.rs"]
mod payloads;

use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use clients::*;
use monitor::*;
use payloads::*;
use support::*;

/// What a loaded machine running debug builds may add to a deadline.
const MARGIN: Duration = Duration::from_secs(3);
/// The link's longest wait between two attempts to reconnect
/// (`ClusterConfig::max_backoff`).
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a node counts the nodes (`COUNT_NODES_EVERY` in the link).
const COUNT_NODES_EVERY: Duration = Duration::from_secs(2);
/// How long a publish may take to cross the cluster.
const DELIVERY: Duration = Duration::from_secs(5);
/// Pause between two publishes of a load publisher: a steady load that
/// leaves the two shared cores to the servers.
const LOAD_PAUSE: Duration = Duration::from_millis(4);

// ---------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------

/// A `hub` node of the cluster on `redis_url`: loopback, free ports.
fn node(redis_url: &str, mode: &str, shards: usize, more: &[&str]) -> Proc {
    let shards = shards.to_string();
    let mut args = vec![
        "--shards",
        &shards,
        "--redis-url",
        redis_url,
        "--redis-mode",
        mode,
    ];
    args.extend_from_slice(more);
    start_hub(&args, &[])
}

/// The `cluster` object of the node's `/api/stats`.
fn cluster(hub: &Proc) -> Value {
    let stats = Conn::open(hub.admin).get("/api/stats").json();
    let cluster = stats["cluster"].clone();
    assert!(cluster.is_object(), "no cluster in /api/stats: {stats}");
    cluster
}

/// A counter of the `cluster` object.
fn counter(hub: &Proc, name: &str) -> u64 {
    let cluster = cluster(hub);
    cluster[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {cluster}"))
}

fn connected(hub: &Proc) -> bool {
    cluster(hub)["connected"] == json!(true)
}

fn readyz(hub: &Proc) -> u16 {
    Conn::open(hub.admin).get("/readyz").status
}

/// Waits until the node is connected to Redis and says it is ready.
fn wait_ready(hub: &Proc, within: Duration, who: &str) -> Duration {
    eventually_or(
        within,
        || connected(hub) && readyz(hub) == 200,
        || {
            format!(
                "{who}: not connected and ready within {within:?}: readyz {}, cluster {}",
                readyz(hub),
                cluster(hub)
            )
        },
    )
}

/// Waits until the node sees its link to Redis down and says so.
fn wait_degraded(hub: &Proc, within: Duration, who: &str) -> Duration {
    eventually_or(
        within,
        || !connected(hub) && readyz(hub) == 503,
        || {
            format!(
                "{who}: still connected or ready {within:?} after Redis went: readyz {}, cluster {}",
                readyz(hub),
                cluster(hub)
            )
        },
    )
}

/// The node runs and no panic reached its log.
fn assert_sound(hub: &mut Proc, who: &str) {
    hub.assert_alive();
    let stderr = hub.stderr();
    assert!(
        !stderr.contains("panicked") && !stderr.contains(" died"),
        "{who}: a panic in its log:\n{stderr}"
    );
}

// ---------------------------------------------------------------------------
// 1. Redis unreachable at start
// ---------------------------------------------------------------------------

#[test]
fn redis_unreachable_at_start_degrades_then_joins_the_cluster() {
    // A port of Redis's own, closed: the server comes back on it later.
    let mut redis = RedisServer::start();
    redis.kill();
    let url = redis.url();
    let started = Instant::now();
    let mut a = node(&url, "classic", 2, &[]);
    let mut b = node(&url, "classic", 1, &[]);

    // Degraded, and says so.
    assert_eq!(readyz(&a), 503, "/readyz while Redis is unreachable");
    let stats = cluster(&a);
    assert_eq!(stats["connected"], json!(false), "{stats}");

    // Serves its own clients meanwhile: a publish reaches a subscriber of
    // another shard.
    let sub = Subscriber::start("a's subscriber", Relay::connect_on_shard(a.addr, 0), "r");
    let mut publisher = Relay::connect_on_shard(a.addr, 1);
    let local_publishes = 20;
    for n in 0..local_publishes {
        publisher.publish("r", "local", json!(n)).unwrap();
    }
    wait_delivered(&[&sub], "local", &json!(local_publishes - 1), DELIVERY);
    assert_eq!(
        sub.data_of("local"),
        (0..local_publishes).map(|n| json!(n)).collect::<Vec<_>>()
    );
    assert_eq!(
        counter(&a, "publish_failed"),
        local_publishes,
        "each cluster publish that could not be sent is counted: {}",
        cluster(&a)
    );

    // The failure is logged once, not a line per attempt to connect nor
    // per publish dropped. Counted over a window of a few seconds, in which
    // the link tried again five times (after 100 ms, then 200, 400...).
    let window = Duration::from_secs(3);
    thread::sleep(window.saturating_sub(started.elapsed()));
    for (hub, who) in [(&a, "a"), (&b, "b")] {
        let log = hub.stderr();
        let about_redis: Vec<&str> = log.lines().filter(|l| l.contains("Redis")).collect();
        let cannot_connect: Vec<&&str> = about_redis
            .iter()
            .filter(|l| l.contains("cannot connect"))
            .collect();
        let dropped = about_redis.iter().filter(|l| l.contains("dropped")).count();
        assert!(
            cannot_connect.len() == 1 && about_redis.len() <= 2 && dropped <= 1,
            "{who}: one line saying it cannot connect (and at most one about dropped \
             publishes) in the first {:?}, got:\n{}",
            started.elapsed(),
            about_redis.join("\n")
        );
        assert!(
            cannot_connect[0].contains("WARN") && cannot_connect[0].contains(&url),
            "{who}: a warning naming the URL: {}",
            cannot_connect[0]
        );
    }
    assert_eq!(readyz(&a), 503);
    assert_eq!(readyz(&b), 503);

    // Redis comes: both join within the capped backoff.
    redis.restart();
    let came = Instant::now();
    wait_ready(&a, MAX_BACKOFF + MARGIN, "a");
    wait_ready(&b, MAX_BACKOFF + MARGIN, "b");
    let joined = came.elapsed();
    assert!(counter(&a, "reconnects") >= 1, "{}", cluster(&a));

    // A publish on the other node reaches this node's subscriber: once,
    // with no retry (the node said it was ready).
    let mut remote = Relay::connect(b.addr);
    remote.publish("r", "remote", json!(1)).unwrap();
    wait_delivered(&[&sub], "remote", &json!(1), DELIVERY);
    // And the other way.
    let sub_b = Subscriber::start("b's subscriber", Relay::connect(b.addr), "r");
    converge(&mut publisher, "r", &[&sub_b]);

    assert_sound(&mut a, "a");
    assert_sound(&mut b, "b");
    sub.finish();
    sub_b.finish();
    eprintln!(
        "nodes ready {joined:?} after Redis came; a: {}",
        cluster(&a)
    );
}

// ---------------------------------------------------------------------------
// 2. Redis killed and restarted under load
// ---------------------------------------------------------------------------

#[test]
fn redis_killed_and_restarted_under_load_classic() {
    redis_killed_and_restarted_under_load("classic");
}

#[test]
fn redis_killed_and_restarted_under_load_sharded() {
    redis_killed_and_restarted_under_load("sharded");
}

fn redis_killed_and_restarted_under_load(mode: &str) {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let mut a = node(&url, mode, 2, &[]);
    let mut b = node(&url, mode, 1, &[]);
    wait_ready(&a, DELIVERY, "a");
    wait_ready(&b, DELIVERY, "b");
    let uid_b = cluster(&b)["uid"].as_str().unwrap().to_owned();

    let room = "load";
    let remote = [
        Subscriber::start("b's subscriber 1", Relay::connect(b.addr), room),
        Subscriber::start("b's subscriber 2", Relay::connect(b.addr), room),
    ];
    // The publisher on shard 1 of a, a local subscriber on shard 0.
    let local = Subscriber::start("a's subscriber", Relay::connect_on_shard(a.addr, 0), room);
    let mut prober = Relay::connect_on_shard(a.addr, 1);
    converge(&mut prober, room, &[&remote[0], &remote[1], &local]);

    let monitor_before = Monitor::start(redis.port());
    let load = Load::start(Relay::connect_on_shard(a.addr, 1), room);
    load.wait_more(50, "before the kill");
    let before = cluster(&a);

    // Redis dies: both nodes see it; the publisher goes on.
    redis.kill();
    let killed_at = load.acked();
    wait_degraded(&a, MARGIN, "a");
    wait_degraded(&b, MARGIN, "b");
    load.wait_more(100, "while Redis is gone");
    let during = cluster(&a);

    // An empty Redis on the same port: both reconnect within the backoff.
    redis.restart();
    let monitor_after = Monitor::start(redis.port());
    let restarted_at = load.acked();
    let came = Instant::now();
    wait_ready(&a, MAX_BACKOFF + MARGIN, "a");
    wait_ready(&b, MAX_BACKOFF + MARGIN, "b");
    let back = came.elapsed();
    for (hub, who) in [(&a, "a"), (&b, "b")] {
        assert!(counter(hub, "reconnects") >= 1, "{who}: {}", cluster(hub));
    }

    // Delivery resumes: what is published now reaches b.
    let resumed_from = load.acked();
    for s in &remote {
        eventually_or(
            DELIVERY + MARGIN,
            || s.numbers().last().is_some_and(|&n| n >= resumed_from),
            || {
                format!(
                    "{}: nothing published after the reconnect ({resumed_from}) arrived; \
                     gaps {:?}",
                    s.who,
                    gaps(s, load.acked.load(Ordering::Relaxed))
                )
            },
        );
    }
    load.wait_more(50, "after the restart");
    let published = load.finish();

    // Everything is in: the last publish reached every subscriber.
    let last = load_data(published - 1);
    wait_delivered(&[&local, &remote[0], &remote[1]], "m", &last, DELIVERY);

    // Local delivery never stopped: every publish, in order, once.
    let expected: Vec<u64> = (0..published).collect();
    assert_eq!(
        local.numbers(),
        expected,
        "a's own subscriber gets every publish, outage or not"
    );

    // b: in order, nothing twice. What b misses, by what Redis did with
    // it (MONITOR):
    // - never run by Redis: lost on a's side, to be counted in a's
    //   publish_failed;
    // - run by the restarted Redis before b subscribed again: a was back
    //   first and published to a cluster of one (Redis pub/sub keeps
    //   nothing for a subscriber to come); reported;
    // - run by Redis just before it was killed, after the last publish b
    //   got from it: Redis ran the command (and may have answered a) but
    //   died with the message in its output buffer for b; reported;
    // - run while b was subscribed, with a later one reaching b: lost on
    //   b's side, never acceptable.
    let after = cluster(&a);
    let failed = after["publish_failed"].as_u64().unwrap();
    let ran_before_kill = monitor_before.load_numbers();
    let after_restart = monitor_after.all();
    let b_subscribed_at = resubscribed_at(&after_restart, mode, &uid_b);
    let ran_after_restart = numbers_in(&after_restart);
    for s in &remote {
        let missing = missing_of(s, published);
        let got: std::collections::HashSet<u64> = s.numbers().into_iter().collect();
        // The last publish b got of those the first Redis ran.
        let last_got_before_kill = ran_before_kill.iter().filter(|n| got.contains(n)).max();
        let (mut never_ran, mut before_b, mut lost_at_b) = (Vec::new(), Vec::new(), Vec::new());
        let mut died_with_redis = Vec::new();
        for n in (0..published).filter(|n| !got.contains(n)) {
            if ran_before_kill.contains(&n) {
                if !matches!(last_got_before_kill, Some(last) if n <= *last) {
                    died_with_redis.push(n);
                } else {
                    lost_at_b.push(n);
                }
            } else if let Some(&(line, _)) = ran_after_restart.iter().find(|(_, m)| *m == n) {
                if b_subscribed_at.is_some_and(|at| line < at) {
                    before_b.push(n);
                } else {
                    lost_at_b.push(n);
                }
            } else {
                never_ran.push(n);
            }
        }
        // MONITOR's own output dies with Redis: the last commands it ran
        // before the SIGKILL may never reach the monitoring connection
        // (seen: one). Those read as "never run" although Redis may have
        // run them (and answered a, which then counted them as sent).
        // So the run of "never run" right after the last publish MONITOR
        // showed, up to MONITOR_TAIL of them, is not held against a's
        // count of failures; anything beyond is.
        const MONITOR_TAIL: usize = 4;
        let last_seen = ran_before_kill.iter().max().copied();
        let monitor_tail = match last_seen {
            Some(last) => never_ran
                .iter()
                .zip(last + 1..)
                .take_while(|(n, want)| **n == *want)
                .count()
                .min(MONITOR_TAIL),
            None => 0,
        };
        let context = || {
            format!(
                "{mode}: {}: {missing} of {published} missing {:?}: {} never run by Redis {:?} \
                 ({monitor_tail} of them right after MONITOR's last line before the kill), \
                 {} in Redis's buffers at the kill {:?}, \
                 {} run before b subscribed again {:?}, {} lost at b {:?}; a's publish_failed \
                 {failed} ({killed_at} acked at the kill, {restarted_at} at the restart, \
                 {resumed_from} once both were back)\n\
                 a before the kill: {before}\na during the outage: {during}\na after: {after}\n\
                 the last commands Redis ran before the kill:\n{}\n\
                 the first commands of the restarted Redis:\n{}",
                s.who,
                gaps(s, published),
                never_ran.len(),
                runs(&never_ran),
                died_with_redis.len(),
                runs(&died_with_redis),
                before_b.len(),
                runs(&before_b),
                lost_at_b.len(),
                runs(&lost_at_b),
                monitor_before.tail(4).join("\n"),
                after_restart[..after_restart.len().min(16)].join("\n"),
            )
        };
        assert!(lost_at_b.is_empty(), "lost at b: {}", context());
        assert!(
            (never_ran.len() - monitor_tail) as u64 <= failed,
            "publishes that never reached Redis are not all counted as failed: {}",
            context()
        );
        eprintln!("{}", context().lines().next().unwrap());
    }
    assert!(
        failed >= restarted_at.saturating_sub(killed_at) / 2,
        "{mode}: the publishes of the outage ({killed_at}..{restarted_at}) are counted: {after}"
    );

    assert_sound(&mut a, "a");
    assert_sound(&mut b, "b");
    for s in remote {
        s.finish();
    }
    local.finish();
    eprintln!("{mode}: both nodes back {back:?} after the restart; a: {after}");
}

/// A publish the link wrote to Redis and whose reply never came, Redis
/// gone, may never have been run: it is counted as failed, as the ones
/// still queued are. Made certain with a frozen Redis (SIGSTOP): the link
/// writes the first publish and waits for its reply, the others queue;
/// then Redis is killed. Whichever of the link's two connections sees
/// the close first, the written publish is counted (when the subscriber
/// connection's error won, it cancelled the command loop and the publish
/// it held went uncounted: 19 of 20, once in a CI run).
#[test]
fn publishes_in_flight_when_redis_dies_are_counted_as_failed() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let mut a = node(&url, "classic", 2, &[]);
    let mut b = node(&url, "classic", 1, &[]);
    wait_ready(&a, DELIVERY, "a");
    wait_ready(&b, DELIVERY, "b");
    let room = "r";
    let remote = Subscriber::start("b's subscriber", Relay::connect(b.addr), room);
    let mut publisher = Relay::connect(a.addr);
    converge(&mut publisher, room, &[&remote]);
    let before = cluster(&a);

    redis.pause();
    let count = 20;
    for n in 0..count {
        publisher.publish(room, "m", load_data(n)).unwrap();
    }
    // The first is written, the others wait for its reply.
    eventually_or(
        DELIVERY,
        || counter(&a, "pending_bytes") > 0,
        || format!("nothing queued behind the frozen Redis: {}", cluster(&a)),
    );
    redis.kill();
    wait_degraded(&a, MARGIN, "a");
    // A publish acknowledged on shard 1 may still be on its way to the
    // link on shard 0 when the link sees Redis go: it is counted when it
    // arrives (dropped while Redis is unreachable), so wait for the count.
    let failed = || counter(&a, "publish_failed") - before["publish_failed"].as_u64().unwrap();
    eventually_or(
        MARGIN,
        || failed() >= count,
        || {
            format!(
                "{count} publishes never reached Redis (frozen, then killed), {} counted in \
                 publish_failed\nbefore: {before}\nafter:  {}",
                failed(),
                cluster(&a)
            )
        },
    );
    assert!(
        remote.numbers().is_empty(),
        "b got some: {:?}",
        remote.numbers()
    );
    assert_sound(&mut a, "a");
    assert_sound(&mut b, "b");
    remote.finish();
}

// ---------------------------------------------------------------------------
// Redis frozen under load
// ---------------------------------------------------------------------------

#[test]
fn redis_frozen_under_load_does_not_stall_local_delivery() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut a = node(&url, "classic", 2, &[]);
    let mut b = node(&url, "classic", 1, &[]);
    wait_ready(&a, DELIVERY, "a");
    wait_ready(&b, DELIVERY, "b");
    let room = "load";
    let remote = Subscriber::start("b's subscriber", Relay::connect(b.addr), room);
    let local = Subscriber::start("a's subscriber", Relay::connect_on_shard(a.addr, 0), room);
    let mut prober = Relay::connect_on_shard(a.addr, 1);
    converge(&mut prober, room, &[&remote, &local]);
    let load = Load::start(Relay::connect_on_shard(a.addr, 1), room);
    load.wait_more(50, "before the freeze");

    // Redis stops answering, its connections open: publishes are acked and
    // delivered locally all the same.
    redis.pause();
    let frozen_at = load.acked();
    load.wait_more(200, "while Redis is frozen");
    let during = load.acked();
    let expected: Vec<u64> = (0..during).collect();
    eventually_or(
        DELIVERY,
        || local.numbers().len() as u64 >= during,
        || format!("a's subscriber got {} of {during}", local.numbers().len()),
    );
    assert_eq!(local.numbers()[..during as usize], expected[..]);
    let pending = counter(&a, "pending_bytes");
    assert!(
        pending <= 16 << 20,
        "pending bytes within the bound: {pending}"
    );

    // Publishes of 1 MB while it is frozen: what waits for Redis stays
    // within the bound (16 MiB); past it, publishes are dropped and counted.
    let failed_before = counter(&a, "publish_failed");
    let big = "x".repeat(1_000_000);
    let bulk = 24;
    for n in 0..bulk {
        let body = json!({"to": "bulk", "event": "big", "data": format!("{n}{big}")}).to_string();
        let answer = Conn::open(a.admin).post("/api/publish", body.as_bytes());
        assert_eq!(answer.status, 200, "publish {n}: {}", answer.text());
    }
    let pending = counter(&a, "pending_bytes");
    let dropped = counter(&a, "publish_failed") - failed_before;
    assert!(
        pending <= 16 << 20 && dropped >= bulk - 16,
        "{bulk} publishes of 1 MB to a frozen Redis: {pending} bytes pending, {dropped} \
         dropped: {}",
        cluster(&a)
    );
    // Local delivery still goes on.
    load.wait_more(50, "after the big publishes");

    // It thaws: what a publishes reaches b again, and the queue drains.
    redis.resume();
    let thawed_at = load.acked();
    eventually_or(
        DELIVERY + MARGIN,
        || remote.numbers().last().is_some_and(|&n| n >= thawed_at),
        || format!("b: nothing after the thaw ({thawed_at}); {}", cluster(&a)),
    );
    let published = load.finish();
    wait_delivered(&[&local, &remote], "m", &load_data(published - 1), DELIVERY);
    eventually_or(
        DELIVERY,
        || counter(&a, "pending_bytes") == 0,
        || format!("the queue to Redis does not drain: {}", cluster(&a)),
    );
    let missing = missing_of(&remote, published);
    let failed = counter(&a, "publish_failed");
    assert!(
        missing <= failed,
        "b: {missing} missing {:?}, {failed} counted as failed; {}",
        gaps(&remote, published),
        cluster(&a)
    );
    assert_eq!(local.numbers(), (0..published).collect::<Vec<_>>());
    assert_sound(&mut a, "a");
    assert_sound(&mut b, "b");
    remote.finish();
    local.finish();
    eprintln!(
        "frozen at {frozen_at}, thawed at {thawed_at} of {published}: b missed {missing}, \
         a: {}",
        cluster(&a)
    );
}

// ---------------------------------------------------------------------------
// 3. Malformed messages on the channels
// ---------------------------------------------------------------------------

/// Each case sent on `channel` with `verb` (PUBLISH, SPUBLISH), followed
/// by a barrier: a publish through `barrier` to `room`, which reaches
/// `sub` after whatever Redis sent the node before. Returns the cases
/// that did not add exactly one to the node's `malformed`.
#[allow(clippy::too_many_arguments)]
fn send_malformed(
    redis: &RedisServer,
    verb: &str,
    channel: &[u8],
    cases: &[(&'static str, Vec<u8>)],
    hub: &Proc,
    barrier: &mut Relay,
    room: &str,
    sub: &Subscriber,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for (name, payload) in cases {
        let before = counter(hub, "malformed");
        let reply = redis.command_bytes(&[verb.as_bytes(), channel, payload]);
        let channel = String::from_utf8_lossy(channel);
        // The number of subscribers that got it: the node did.
        let receivers: i64 = reply
            .strip_prefix(':')
            .and_then(|r| r.trim().parse().ok())
            .unwrap_or_else(|| panic!("{verb} {channel}: {reply:?}"));
        assert!(receivers >= 1, "{verb} {channel} {name}: nobody listens");
        let mark = json!(format!("{channel} {name}"));
        barrier.publish(room, "barrier", mark.clone()).unwrap();
        wait_delivered(&[sub], "barrier", &mark, DELIVERY);
        let after = counter(hub, "malformed");
        if after != before + 1 {
            wrong.push(format!(
                "{verb} {channel} {name}: malformed {before} -> {after}"
            ));
        }
    }
    wrong
}

/// Two nodes of `mode` on a Redis of their own; `cases(uid of a)` says what
/// to send on which channel. Each case must add one to a's `malformed`,
/// reach no client, and leave both nodes serving.
fn malformed_are_ignored_and_counted(
    mode: &str,
    cases: impl Fn(&str) -> Vec<(Vec<u8>, Vec<(&'static str, Vec<u8>)>)>,
) {
    let verb = if mode == "classic" {
        "PUBLISH"
    } else {
        "SPUBLISH"
    };
    let redis = RedisServer::start();
    let url = redis.url();
    let mut a = node(&url, mode, 2, &[]);
    let mut b = node(&url, mode, 1, &[]);
    wait_ready(&a, DELIVERY, "a");
    wait_ready(&b, DELIVERY, "b");
    let uid = cluster(&a)["uid"].as_str().unwrap().to_owned();
    let room = "r";
    let sub = Subscriber::start("a's subscriber", Relay::connect(a.addr), room);
    let mut barrier = Relay::connect(b.addr);
    converge(&mut barrier, room, &[&sub]);

    let mut wrong = Vec::new();
    let mut sent = 0;
    for (channel, cases) in cases(&uid) {
        sent += cases.len();
        wrong.extend(send_malformed(
            &redis,
            verb,
            &channel,
            &cases,
            &a,
            &mut barrier,
            room,
            &sub,
        ));
    }

    // Nothing of it reached a client; the node serves on: a publish from
    // the other node, and a local one.
    assert!(sub.data_of("evil").is_empty(), "{:?}", sub.data_of("evil"));
    barrier.publish(room, "after", json!(1)).unwrap();
    let mut local = Relay::connect(a.addr);
    local.publish(room, "after", json!(2)).unwrap();
    wait_delivered(&[&sub], "after", &json!(1), DELIVERY);
    wait_delivered(&[&sub], "after", &json!(2), DELIVERY);
    assert_sound(&mut a, "a");
    assert_sound(&mut b, "b");
    assert!(connected(&a) && connected(&b), "still connected");
    sub.finish();
    assert!(
        wrong.is_empty(),
        "{mode}: {} of {sent} malformed messages not counted once each:\n{}\na: {}",
        wrong.len(),
        wrong.join("\n"),
        cluster(&a)
    );
    eprintln!(
        "{mode}: {sent} malformed messages; a after them: {}",
        cluster(&a)
    );
}

#[test]
fn malformed_messages_are_ignored_and_counted_classic() {
    malformed_are_ignored_and_counted("classic", |uid| {
        vec![
            ("socket.io#/#".into(), classic_bad_broadcasts("r")),
            ("socket.io#/#r#".into(), classic_bad_broadcasts("r")),
            ("socket.io-request#/#".into(), classic_bad_requests()),
            ("socket.io-response#/#".into(), classic_bad_responses()),
            (
                format!("socket.io-response#/#{uid}#").into(),
                classic_bad_responses(),
            ),
        ]
    });
}

#[test]
fn malformed_messages_are_ignored_and_counted_sharded() {
    // The namespace's channel, the room's (dynamic mode: a subscribes it
    // while it has the room), and a's own.
    malformed_are_ignored_and_counted("sharded", |uid| {
        [
            "socket.io#/#".to_string(),
            "socket.io#/#r#".into(),
            format!("socket.io#/#{uid}#"),
        ]
        .into_iter()
        .map(|channel| (channel.into_bytes(), sharded_bad_messages()))
        .collect()
    });
}

#[test]
fn a_channel_name_that_is_not_utf8_is_ignored_and_counted() {
    // Under the classic broadcast pattern `socket.io#/#*`.
    malformed_are_ignored_and_counted("classic", |_| {
        vec![(
            b"socket.io#/#\xff\xfe#".to_vec(),
            vec![("a broadcast", classic_broadcast("zz", "evil", "r"))],
        )]
    });
}

// Issue 12: "malformed messages on the channels (garbage, wrong msgpack
// shapes, unknown types): ignored with a counter and a debug log".
#[test]
fn unknown_message_types_are_ignored_and_counted_classic() {
    malformed_are_ignored_and_counted("classic", |_| {
        vec![("socket.io-request#/#".into(), unknown_types("classic"))]
    });
}

#[test]
fn unknown_message_types_are_ignored_and_counted_sharded() {
    malformed_are_ignored_and_counted("sharded", |uid| {
        vec![
            ("socket.io#/#".into(), unknown_types("sharded")),
            (
                format!("socket.io#/#{uid}#").into(),
                unknown_types("sharded"),
            ),
        ]
    });
}

// ---------------------------------------------------------------------------
// 4. A node that dies
// ---------------------------------------------------------------------------

#[test]
fn a_node_that_dies_leaves_the_others_working_and_is_counted_gone_classic() {
    a_node_that_dies("classic");
}

#[test]
fn a_node_that_dies_leaves_the_others_working_and_is_counted_gone_sharded() {
    a_node_that_dies("sharded");
}

fn a_node_that_dies(mode: &str) {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut a = node(&url, mode, 2, &[]);
    let mut b = node(&url, mode, 1, &[]);
    let mut c = node(&url, mode, 1, &[]);
    for (hub, who) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        wait_ready(hub, DELIVERY, who);
    }
    let room = "r";
    let sub_a = Subscriber::start("a's subscriber", Relay::connect(a.addr), room);
    let sub_b = Subscriber::start("b's subscriber", Relay::connect(b.addr), room);
    let sub_c = Subscriber::start("c's subscriber", Relay::connect(c.addr), room);
    let mut pub_a = Relay::connect(a.addr);
    let mut pub_b = Relay::connect(b.addr);
    converge(&mut pub_a, room, &[&sub_b, &sub_c]);
    converge(&mut pub_b, room, &[&sub_a]);

    // Each counts three nodes (within one count).
    let count_bound = COUNT_NODES_EVERY + MARGIN;
    for (hub, who) in [(&a, "a"), (&b, "b")] {
        eventually_or(
            count_bound,
            || counter(hub, "nodes") == 3,
            || format!("{mode}: {who} does not count 3 nodes: {}", cluster(hub)),
        );
    }

    // c dies mid-run, its clients with it.
    c.child.kill().unwrap();
    c.child.wait().unwrap();
    drop(sub_c);

    // The others deliver to each other at once.
    pub_a.publish(room, "after", json!("a")).unwrap();
    pub_b.publish(room, "after", json!("b")).unwrap();
    wait_delivered(&[&sub_b], "after", &json!("a"), DELIVERY);
    wait_delivered(&[&sub_a], "after", &json!("b"), DELIVERY);

    // And count two nodes at their next count.
    let died = Instant::now();
    for (hub, who) in [(&a, "a"), (&b, "b")] {
        eventually_or(
            count_bound,
            || counter(hub, "nodes") == 2,
            || format!("{mode}: {who} still counts c: {}", cluster(hub)),
        );
    }
    let counted = died.elapsed();
    pub_a.publish(room, "later", json!("a")).unwrap();
    wait_delivered(&[&sub_b], "later", &json!("a"), DELIVERY);
    assert_sound(&mut a, "a");
    assert_sound(&mut b, "b");
    assert!(!c.stderr().contains("panicked"), "c: {}", c.stderr());
    sub_a.finish();
    sub_b.finish();
    eprintln!("{mode}: the dead node was counted gone {counted:?} after it died");
}

/// How soon after it is connected a node has counted the nodes: the
/// count's round trip to Redis, on a loaded machine.
const FIRST_COUNT: Duration = Duration::from_secs(1);
/// How often a node counts the nodes (hub's `COUNT_NODES_EVERY`): a node
/// that joins after it is seen at its next count.
const COUNT_EVERY: Duration = Duration::from_secs(2);

// `nodes` counts the nodes subscribed, this one included: once a node is
// connected (and so subscribed), its count is at least 1, and a node that
// joins counts the others at once, not at the count after.
#[test]
fn a_connected_node_counts_itself_and_the_others_classic() {
    a_connected_node_counts_itself_and_the_others("classic");
}

#[test]
fn a_connected_node_counts_itself_and_the_others_sharded() {
    a_connected_node_counts_itself_and_the_others("sharded");
}

fn a_connected_node_counts_itself_and_the_others(mode: &str) {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let mut wrong = Vec::new();
    let mut counts = |hub: &Proc, nodes: u64, who: &str, within: Duration| {
        let deadline = Instant::now() + within;
        while counter(hub, "nodes") != nodes {
            if Instant::now() > deadline {
                wrong.push(format!(
                    "{who}, connected, does not count {nodes} node(s) within {within:?}: {}",
                    cluster(hub)
                ));
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    };
    let a = node(&url, mode, 1, &[]);
    wait_ready(&a, DELIVERY, "a");
    counts(&a, 1, "a alone", FIRST_COUNT);
    let b = node(&url, mode, 1, &[]);
    wait_ready(&b, DELIVERY, "b");
    counts(&b, 2, "b, joining a", FIRST_COUNT);
    counts(&a, 2, "a, joined by b", COUNT_EVERY + FIRST_COUNT);
    // Each restart of Redis: both connect again, and count again.
    for restart in 1..=3 {
        redis.restart();
        wait_ready(&a, MAX_BACKOFF + MARGIN, "a");
        wait_ready(&b, MAX_BACKOFF + MARGIN, "b");
        // The first back counts the other at its next count.
        let within = COUNT_EVERY + FIRST_COUNT;
        counts(
            &a,
            2,
            &format!("a, after restart {restart} of Redis"),
            within,
        );
        counts(
            &b,
            2,
            &format!("b, after restart {restart} of Redis"),
            within,
        );
    }
    assert!(
        wrong.is_empty(),
        "{mode}: {} of 9 counts wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 5. SIGTERM of a clustered hub under load
// ---------------------------------------------------------------------------

/// How long a node has to stop on SIGTERM (`--shutdown-timeout`).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(2000);

/// What Redis is doing when the node gets SIGTERM.
#[derive(Clone, Copy, Debug)]
enum RedisState {
    Up,
    Gone,
    Frozen,
}

fn sigterm_under_load(state: RedisState) {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let timeout = SHUTDOWN_TIMEOUT.as_millis().to_string();
    let mut a = node(&url, "classic", 2, &["--shutdown-timeout", &timeout]);
    let mut b = node(&url, "classic", 1, &[]);
    wait_ready(&a, DELIVERY, "a");
    wait_ready(&b, DELIVERY, "b");
    let room = "load";
    let sub_a = Subscriber::start("a's subscriber", Relay::connect_on_shard(a.addr, 0), room);
    let sub_b = Subscriber::start("b's subscriber", Relay::connect(b.addr), room);
    let mut prober = Relay::connect(b.addr);
    converge(&mut prober, room, &[&sub_a]);
    let mut prober = Relay::connect(a.addr);
    converge(&mut prober, room, &[&sub_b]);
    // Load both ways: a publishes to the cluster, b to a.
    let load_a = Load::start(Relay::connect_on_shard(a.addr, 1), room);
    let load_b = Load::start(Relay::connect(b.addr), room);
    load_a.wait_more(50, "before the SIGTERM");
    match state {
        RedisState::Up => {}
        RedisState::Gone => {
            redis.kill();
            wait_degraded(&a, MARGIN, "a");
        }
        RedisState::Frozen => {
            redis.pause();
            // Commands pile up towards a Redis that reads none.
            load_a.wait_more(100, "while Redis is frozen");
        }
    }

    let sent = Instant::now();
    a.sigterm();
    let status = a.exit_within(
        SHUTDOWN_TIMEOUT + MARGIN,
        &format!("SIGTERM with Redis {state:?}"),
    );
    let took = sent.elapsed();
    let stderr = a.stderr();
    assert!(
        status.success(),
        "Redis {state:?}: exit {status} after {took:?}\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // a's publisher saw its connection end; b goes on, alone.
    let _ = load_a.thread.join();
    if matches!(state, RedisState::Frozen) {
        redis.resume();
    }
    load_b.wait_more(50, "after a's exit");
    let got = sub_b.data_of("m").len();
    eventually(
        DELIVERY,
        "b's subscriber gets b's load after a's exit",
        || sub_b.data_of("m").len() > got,
    );
    let published_b = load_b.finish();
    assert_sound(&mut b, "b");
    drop(sub_a);
    sub_b.finish();
    eprintln!(
        "Redis {state:?}: a exited 0 {took:?} after SIGTERM (timeout {SHUTDOWN_TIMEOUT:?}); \
         b published {published_b} meanwhile"
    );
}

#[test]
fn sigterm_under_load_exits_0_within_the_shutdown_timeout() {
    sigterm_under_load(RedisState::Up);
}

#[test]
fn sigterm_under_load_with_redis_gone_exits_0_within_the_shutdown_timeout() {
    sigterm_under_load(RedisState::Gone);
}

#[test]
fn sigterm_under_load_with_redis_frozen_exits_0_within_the_shutdown_timeout() {
    sigterm_under_load(RedisState::Frozen);
}

// ---------------------------------------------------------------------------
// The admin API's publish reaches every node.

#[test]
fn an_admin_publish_reaches_the_rooms_sockets_on_every_node() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut a = node(&url, "classic", 2, &[]);
    let mut b = node(&url, "classic", 1, &[]);
    wait_ready(&a, DELIVERY, "a");
    wait_ready(&b, DELIVERY, "b");
    let room = "admin-room";
    let on_b = Subscriber::start("b's subscriber", Relay::connect(b.addr), room);
    let on_a = Subscriber::start("a's subscriber", Relay::connect_on_shard(a.addr, 1), room);
    let mut prober = Relay::connect_on_shard(a.addr, 0);
    converge(&mut prober, room, &[&on_a, &on_b]);
    let body = json!({"to": [room], "event": "notice", "data": {"from": "admin"}}).to_string();
    let answer = Conn::open(a.admin).post("/api/publish", body.as_bytes());
    assert_eq!(answer.status, 200, "{}", answer.text());
    let data = json!({"from": "admin"});
    wait_delivered(&[&on_a, &on_b], "notice", &data, DELIVERY);
    assert_eq!(
        on_b.data_of("notice"),
        std::slice::from_ref(&data),
        "b got it once"
    );
    assert_eq!(on_a.data_of("notice"), [data], "a got it once");
    assert_sound(&mut a, "a");
    assert_sound(&mut b, "b");
    on_a.finish();
    on_b.finish();
}

// ---------------------------------------------------------------------------
// A node that hangs: requests end at their timeout with what came.

/// `hub/examples/cluster_relay` (the hub with the `--cluster-test` events)
/// as a node of the cluster on `redis_url`.
fn test_node(redis_url: &str, more: &[&str]) -> Proc {
    let mut command = std::process::Command::new(example("cluster_relay"));
    command.args([
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--shards",
        "1",
        "--redis-url",
        redis_url,
        "--cluster-test",
    ]);
    command.args(more);
    Proc::spawn("cluster_relay", command)
}

fn signal(hub: &Proc, signal: libc::c_int) {
    // SAFETY: a plain kill(2) of a child this test started.
    let done = unsafe { libc::kill(hub.pid() as libc::pid_t, signal) };
    assert_eq!(done, 0, "kill({}, {signal})", hub.pid());
}

// A node that stops answering (SIGSTOP: still subscribed, so still counted
// as a node by PUBSUB NUMSUB, but silent) makes a fetch from another node
// end at the request timeout, with the sockets of the nodes that answered;
// counted in `requests_timed_out`. Once it is back, fetches complete again.
#[test]
fn a_hung_node_makes_requests_end_at_their_timeout_with_what_came() {
    let redis = RedisServer::start();
    let url = redis.url();
    let timeout = ["--redis-request-timeout", "1500"];
    let a = test_node(&url, &timeout);
    let b = test_node(&url, &timeout);
    let c = test_node(&url, &timeout);
    for (hub, who) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        wait_ready(hub, DELIVERY, who);
    }
    let room = "fetched";
    let mut members = Vec::new();
    for hub in [&a, &b, &c] {
        let mut member = Relay::connect(hub.addr);
        member.join(room);
        members.push(member);
    }
    // Every node counted the three before it is asked.
    eventually_or(
        COUNT_NODES_EVERY + MARGIN,
        || counter(&a, "nodes") == 3,
        || format!("a counts {}", cluster(&a)),
    );
    let mut asker = Relay::connect(a.addr);
    let all = asker
        .request("fetch_sockets", &json!({"to": room}))
        .unwrap();
    assert_eq!(all.as_array().map(Vec::len), Some(3), "all three: {all}");

    signal(&c, libc::SIGSTOP);
    let started = Instant::now();
    let some = asker
        .request("fetch_sockets", &json!({"to": room}))
        .unwrap();
    let took = started.elapsed();
    signal(&c, libc::SIGCONT);
    let some = some.as_array().cloned().unwrap_or_default();
    assert_eq!(some.len(), 2, "a's and b's members, not c's: {some:?}");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(4500),
        "ended at the 1.5 s request timeout: {took:?}"
    );
    assert_eq!(counter(&a, "requests_timed_out"), 1, "{}", cluster(&a));
    // c is back: a fetch gets all three again.
    eventually_or(
        DELIVERY,
        || {
            asker
                .request("fetch_sockets", &json!({"to": room}))
                .is_ok_and(|v| v.as_array().map(Vec::len) == Some(3))
        },
        || "c answers again".to_string(),
    );
    drop(members);
    eprintln!("a fetch with a hung node ended after {took:?}");
}

// ---------------------------------------------------------------------------
// Requests from other nodes are bounded.

// Broadcasts with acks from another node whose recipient never answers
// each hold a collector until their timeout: past 256 at once, a request
// is ignored and counted (`publish_failed`), and the node serves on.
#[test]
fn broadcasts_with_acks_from_other_nodes_are_bounded() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut a = node(&url, "classic", 1, &[]);
    wait_ready(&a, DELIVERY, "a");
    // A socket of `/` that never acknowledges anything.
    let silent = Relay::connect(a.addr);
    let room = "after";
    let sub = Subscriber::start("a's subscriber", Relay::connect(a.addr), room);
    let mut publisher = Relay::connect(a.addr);
    converge(&mut publisher, room, &[&sub]);
    let failed_before = counter(&a, "publish_failed");
    let requests = 300;
    for n in 0..requests {
        let request = json!({
            "uid": "another-node",
            "requestId": format!("ack{n}"),
            "type": 7,
            "packet": {"type": 2, "data": ["ask", n], "nsp": "/"},
            "opts": {"rooms": [], "except": [], "flags": {"timeout": 60_000}},
        })
        .to_string();
        redis.command_bytes(&[b"PUBLISH", b"socket.io-request#/#", request.as_bytes()]);
    }
    let mark = json!("after the requests");
    publisher.publish(room, "barrier", mark.clone()).unwrap();
    wait_delivered(&[&sub], "barrier", &mark, DELIVERY);
    let ignored = counter(&a, "publish_failed") - failed_before;
    assert_eq!(
        ignored,
        requests - 256,
        "past 256 in flight: {}",
        cluster(&a)
    );
    assert_sound(&mut a, "a");
    drop(silent);
    sub.finish();
}
