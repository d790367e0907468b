//! `loadgen` against a real hub: each scenario briefly, over WebSocket and
//! long-polling, checking that the reported counts add up (churn's loss
//! accounting included, and that it finds a loss); several `--url`s (two
//! hubs, or two URLs of one hub) with the clients spread over them; and its
//! command line: help, bad options, an unreachable server.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use hub::auth::TokenVerifier;
use serde_json::{json, Value};
use support::{build_workspace, start_hub, Proc, TestCert, HUB};

/// The loadgen binary next to the hub binary, built ([`build_workspace`])
/// in the hub binary's profile.
fn loadgen() -> Command {
    build_workspace(HUB.contains("/release/"));
    Command::new(PathBuf::from(HUB).with_file_name("loadgen"))
}

fn url(hub: &Proc) -> String {
    format!("http://{}", hub.addr)
}

/// Runs loadgen with `args` and `--json --quiet`; returns its summary.
fn run_json(args: &[&str]) -> Value {
    let out = loadgen()
        .args(args)
        .args(["--json", "--quiet"])
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("loadgen printed no JSON ({e}): {stdout}"))
}

fn n(summary: &Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {summary:#}"))
}

fn assert_no_errors(summary: &Value) {
    let errors = summary["errors"].as_object().expect("errors by cause");
    assert!(errors.contains_key("connect_refused") && errors.contains_key("ack_timeout"));
    let total: u64 = errors.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, 0, "errors: {summary:#}");
}

fn assert_latency_ordered(summary: &Value) {
    let l = &summary["latency_us"];
    let get = |k: &str| {
        l[k].as_f64()
            .unwrap_or_else(|| panic!("no latency {k} in {summary:#}"))
    };
    assert!(n(l, "count") > 0, "no latency samples: {summary:#}");
    assert!(get("p50") > 0.0);
    assert!(get("p50") <= get("p90") && get("p90") <= get("p99"));
    assert!(get("p99") <= get("p999") && get("p999") <= get("max"));
}

fn fanout_adds_up(transport: &str) {
    let hub = start_hub(&[], &[]);
    let summary = run_json(&[
        "fanout",
        "--url",
        &url(&hub),
        "--transport",
        transport,
        "--clients",
        "60",
        "--rooms",
        "3",
        "--publishers",
        "3",
        "--rate",
        "60",
        "--duration",
        "1.5s",
        "--warmup",
        "500ms",
        "--source-ips",
        "127.0.0.2-127.0.0.4",
    ]);
    assert_eq!(summary["scenario"], "fanout");
    assert_eq!(n(&summary, "connects"), 63);
    assert_no_errors(&summary);
    // Every publish goes to one room of 20: all of them arrive, once.
    let expected = n(&summary, "expected_deliveries");
    assert!(expected >= 20 * 60, "too few publishes: {summary:#}");
    assert_eq!(expected % 20, 0);
    assert_eq!(n(&summary, "lost"), 0, "{summary:#}");
    assert_eq!(n(&summary, "duplicated"), 0, "{summary:#}");
    assert_eq!(n(&summary, "unchecked"), 0, "{summary:#}");
    // In the window: about 60 publishes a second, 20 deliveries each.
    let per_sec = summary["deliveries_per_sec"].as_f64().unwrap();
    assert!(
        (600.0..=1800.0).contains(&per_sec),
        "deliveries/s {per_sec}: {summary:#}"
    );
    // Sends and acks are counted in the same window: a publish in flight at
    // either edge may land on the other side of it.
    assert!(
        n(&summary, "acks").abs_diff(n(&summary, "sent")) <= 6,
        "every publish acked: {summary:#}"
    );
    assert_latency_ordered(&summary);
}

#[test]
fn fanout_over_websocket_delivers_every_publish_once() {
    fanout_adds_up("websocket");
}

#[test]
fn fanout_over_polling_delivers_every_publish_once() {
    fanout_adds_up("polling");
}

/// With `--deflate`, every delivery of a 2 KB JSON-like payload comes
/// compressed, is inflated by loadgen and counted once; hub compressed each
/// publish once per shard, not once per recipient.
#[test]
fn fanout_with_deflate_inflates_every_delivery() {
    let hub = start_hub(&[], &[]);
    let summary = run_json(&[
        "fanout",
        "--url",
        &url(&hub),
        "--clients",
        "40",
        "--rooms",
        "1",
        "--publishers",
        "2",
        "--rate",
        "40",
        "--duration",
        "1s",
        "--warmup",
        "300ms",
        "--payload-bytes",
        "2000",
        "--json-padding",
        "--deflate",
    ]);
    assert_no_errors(&summary);
    let expected = n(&summary, "expected_deliveries");
    assert!(expected >= 40 * 30, "too few publishes: {summary:#}");
    assert_eq!(n(&summary, "lost"), 0, "{summary:#}");
    assert_eq!(n(&summary, "duplicated"), 0, "{summary:#}");
    let deflated = hub.metric("hub_ws_deflated_messages_total");
    let compressions = hub.metric("hub_ws_deflate_compressions_total");
    let deliveries = hub.metric("hub_deliveries_total");
    assert!(
        deflated >= deliveries && deliveries >= expected as f64,
        "{deflated} {deliveries}"
    );
    // One per publish on each of the two shards at most (publish acks are short: plain).
    assert!(
        compressions <= 2.0 * deliveries / 40.0,
        "{compressions} for {deliveries}"
    );
    let (before, after) = (
        hub.metric("hub_ws_deflated_bytes_before_total"),
        hub.metric("hub_ws_deflated_bytes_after_total"),
    );
    assert!(after < before / 2.0, "{after} of {before}");
}

fn echo_adds_up(transport: &str) {
    let hub = start_hub(&["--shards", "1"], &[]);
    let summary = run_json(&[
        "echo",
        "--url",
        &url(&hub),
        "--transport",
        transport,
        "--clients",
        "20",
        "--rate",
        "200",
        "--duration",
        "1s",
        "--warmup",
        "300ms",
    ]);
    assert_eq!(n(&summary, "connects"), 20);
    assert_no_errors(&summary);
    assert_eq!(n(&summary, "lost"), 0);
    let acks = n(&summary, "acks");
    assert!(
        (100..=300).contains(&acks),
        "about 200 acks in 1 s: {summary:#}"
    );
    assert!(n(&summary, "sent").abs_diff(acks) <= 20, "{summary:#}");
    assert_latency_ordered(&summary);
}

#[test]
fn echo_over_websocket_acks_every_emit() {
    echo_adds_up("websocket");
}

#[test]
fn echo_over_polling_acks_every_emit() {
    echo_adds_up("polling");
}

#[test]
fn echo_closed_loop_keeps_the_inflight_window() {
    let hub = start_hub(&[], &[]);
    let summary = run_json(&[
        "echo",
        "--url",
        &url(&hub),
        "--clients",
        "10",
        "--rate",
        "0",
        "--inflight",
        "4",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--payload-bytes",
        "1000",
    ]);
    assert_no_errors(&summary);
    assert_eq!(n(&summary, "lost"), 0);
    assert!(n(&summary, "acks") > 100, "{summary:#}");
}

/// `--mark-window`: the three edges in order on stderr, each held until a
/// line comes on stdin, and the summary's window taken after the answers:
/// held at its end, the window is about that much longer than
/// `--duration`. (Its end is fixed at warmup + duration from the start,
/// and its start is taken at the first progress tick after the warmup
/// (50 ms apart) and after the answer: so it can start up to a tick and an
/// answer late. A window that did not include the hold would be about
/// `--duration` long, well under the bound.)
#[test]
fn mark_window_prints_the_edges_and_waits_for_an_answer_at_each() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let hub = start_hub(&["--shards", "1"], &[]);
    let mut child = loadgen()
        .args([
            "echo",
            "--url",
            &url(&hub),
            "--clients",
            "5",
            "--rate",
            "100",
        ])
        .args(["--duration", "500ms", "--warmup", "200ms", "--drain", "1s"])
        .args(["--json", "--quiet", "--mark-window"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run loadgen");
    let mut stdin = child.stdin.take().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let held = Duration::from_millis(400);
    let mut edges = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        let Some(edge) = line.strip_prefix("loadgen: ") else {
            panic!("an unexpected line on stderr: {line}");
        };
        edges.push(edge.to_string());
        if edge == "window end" {
            thread::sleep(held); // what a profiler's dump takes
        }
        stdin.write_all(b"\n").unwrap();
        if edge == "window end" {
            break;
        }
    }
    drop(stdin);
    let out = child.wait_with_output().expect("loadgen ends");
    assert!(out.status.success(), "loadgen failed");
    assert_eq!(edges, ["warmup start", "window start", "window end"]);
    let summary: Value = serde_json::from_slice(&out.stdout).expect("the JSON summary");
    assert_no_errors(&summary);
    assert!(n(&summary, "acks") > 0, "{summary:#}");
    let seconds = summary["duration_s"].as_f64().unwrap();
    let late_start = 0.1;
    assert!(
        seconds >= 0.5 + held.as_secs_f64() - late_start,
        "the window ends after the answer at its end: {summary:#}"
    );
}

#[test]
fn connect_counts_every_handshake() {
    let hub = start_hub(&[], &[]);
    for transport in ["websocket", "polling"] {
        let summary = run_json(&[
            "connect",
            "--url",
            &url(&hub),
            "--transport",
            transport,
            "--clients",
            "50",
            "--rate",
            "500",
        ]);
        assert_eq!(n(&summary, "connects"), 50, "{summary:#}");
        assert_eq!(n(&summary, "connect_failures"), 0);
        assert_no_errors(&summary);
        assert_eq!(
            n(&summary["latency_us"], "count"),
            50,
            "one handshake latency per client"
        );
        let rate = summary["connects_per_sec"].as_f64().unwrap();
        // 50 clients paced at 500/s take about 0.1 s.
        assert!(rate > 100.0 && rate < 1000.0, "connects/s {rate}");
        assert_latency_ordered(&summary);
    }
}

#[test]
fn idle_reports_server_memory_per_connection() {
    let hub = start_hub(&[], &[]);
    let pid = hub.child.id().to_string();
    let summary = run_json(&[
        "idle",
        "--url",
        &url(&hub),
        "--clients",
        "200",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(n(&summary, "connects"), 200);
    assert_no_errors(&summary);
    let per_conn = summary["server_rss_bytes_per_conn"]
        .as_f64()
        .expect("rss per connection");
    // 200 connections grow the server by their own state: a few KB each,
    // never nothing and never a whole buffer's worth.
    assert!(
        per_conn > 0.0 && per_conn < 64.0 * 1024.0,
        "rss per connection {per_conn}: {summary:#}"
    );
    let server = &summary["server"];
    assert_eq!(server["pids"], json!([hub.child.id()]));
    assert_eq!(server["cpu_s_by_pid"].as_array().map(Vec::len), Some(1));
    assert!(n(server, "rss_after_bytes") > 0);
    assert!(server["cpu_s"].as_f64().unwrap() >= 0.0);
}

/// Runs churn against `hub` briefly with lives short enough that every
/// slot lives many times; returns loadgen's exit status, its summary and
/// its stderr.
fn churn(hub: &Proc, extra: &[&str]) -> (Option<i32>, Value, String) {
    let pid = hub.child.id().to_string();
    let out = loadgen()
        .args([
            "churn",
            "--url",
            &url(hub),
            "--clients",
            "30",
            "--publishers",
            "2",
            "--rooms",
            "4",
            "--rooms-per-client",
            "2",
            "--rate",
            "100",
            "--duration",
            "3s",
            "--lifetime",
            "300ms",
            "--abrupt-ratio",
            "0.5",
            "--reset-ratio",
            "0.5",
            "--polling-ratio",
            "0.5",
            "--server-pid",
            &pid,
            "--rss-every",
            "1s",
            "--json",
            "--quiet",
        ])
        .args(extra)
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "loadgen printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.code(),
        summary,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn churn_accounts_for_every_delivery_across_lives_and_leaves() {
    let hub = start_hub(&["--shards", "2"], &[]);
    let (code, summary, stderr) = churn(&hub, &[]);
    assert_eq!(code, Some(0), "{stderr}\n{summary:#}");
    assert_no_errors(&summary);
    let c = &summary["churn"];
    // Nothing lost, duplicated or misrouted, and nothing left unaccounted.
    for key in ["lost", "duplicated", "misrouted", "unsettled", "unfinished"] {
        assert_eq!(n(c, key), 0, "{key}: {summary:#}");
    }
    assert_eq!(n(&summary, "lost"), 0);
    assert_eq!(n(&summary, "duplicated"), 0);
    let expected = n(c, "expected_deliveries");
    assert!(expected > 1000, "too little traffic: {summary:#}");
    assert_eq!(n(c, "delivered"), expected);
    // Every publish acked; every life that left fenced with both publishers.
    assert_eq!(n(c, "publishes_acked"), n(c, "publishes_sent"));
    assert_eq!(n(c, "publishes_failed"), 0);
    // Slots lived many times, over both transports, and left each way.
    let connects = n(c, "connects");
    assert!(connects > 3 * 30, "little churn: {summary:#}");
    let polling = n(c, "polling_connects");
    assert!(polling > 0 && polling < connects, "{summary:#}");
    let d = &c["disconnects"];
    let (clean, abrupt, reset) = (n(d, "clean"), n(d, "abrupt"), n(d, "reset"));
    assert!(clean > 0 && abrupt > 0 && reset > 0, "{summary:#}");
    assert_eq!(n(d, "by_server"), 0, "{summary:#}");
    assert_eq!(clean + abrupt + reset, connects, "every life ended once");
    assert_eq!(
        n(c, "fences"),
        2 * connects,
        "one fence per publisher per life"
    );
    assert_eq!(n(&c["server_closed"], "lives"), 0);
    // The hub's RSS at the start, the end, and in between.
    let rss = &c["server_rss"];
    assert_eq!(rss["pids"], json!([hub.child.id()]));
    assert!(n(rss, "start_bytes") > 0 && n(rss, "end_bytes") > 0);
    let curve = rss["curve"].as_array().expect("an RSS curve");
    assert!(curve.len() >= 3, "one sample a second: {summary:#}");
    assert!(curve.iter().all(|p| p[1].as_u64().unwrap() > 0));
}

#[test]
fn churn_finds_deliveries_that_never_arrived() {
    // Subscribers that drop every 5th message they receive (a test hook;
    // a life receives some 15 to 25) stand for a server that loses them:
    // lost, and exit status 3.
    let hub = start_hub(&["--shards", "2"], &[]);
    let (code, summary, stderr) = churn(&hub, &["--drop-every", "5", "--timeout", "2s"]);
    assert_eq!(code, Some(3), "{stderr}\n{summary:#}");
    let c = &summary["churn"];
    let lost = n(c, "lost");
    assert!(lost > 0, "{summary:#}");
    assert_eq!(n(c, "delivered") + lost, n(c, "expected_deliveries"));
    assert_eq!(n(c, "duplicated"), 0);
    assert!(
        stderr.contains(&format!("{lost} of ")) && stderr.contains("lost"),
        "{stderr}"
    );
}

/// The per-URL entries of a summary: (url, clients, publishers, connects,
/// connect failures).
fn per_url(summary: &Value) -> Vec<(String, u64, u64, u64, u64)> {
    summary["urls"]
        .as_array()
        .unwrap_or_else(|| panic!("no urls in {summary:#}"))
        .iter()
        .map(|u| {
            (
                u["url"].as_str().expect("a url").to_string(),
                n(u, "clients"),
                n(u, "publishers"),
                n(u, "connects"),
                n(u, "connect_failures"),
            )
        })
        .collect()
}

#[test]
fn echo_over_two_hubs_spreads_the_clients_and_acks_on_both() {
    let (a, b) = (
        start_hub(&["--shards", "1"], &[]),
        start_hub(&["--shards", "1"], &[]),
    );
    let (pid_a, pid_b) = (a.pid().to_string(), b.pid().to_string());
    let summary = run_json(&[
        "echo",
        "--url",
        &url(&a),
        "--url",
        &url(&b),
        "--clients",
        "11",
        "--rate",
        "200",
        "--duration",
        "1s",
        "--warmup",
        "300ms",
        "--server-pid",
        &pid_a,
        "--server-pid",
        &pid_b,
    ]);
    // Round robin: clients 0, 2, .. on the first hub, 1, 3, .. on the second.
    assert_eq!(
        per_url(&summary),
        [(url(&a), 6, 0, 6, 0), (url(&b), 5, 0, 5, 0)],
        "{summary:#}"
    );
    assert_eq!(n(&summary, "connects"), 11);
    assert_no_errors(&summary);
    assert_eq!(n(&summary, "lost"), 0);
    let acks = n(&summary, "acks");
    assert!(
        (100..=300).contains(&acks),
        "about 200 acks in 1 s: {summary:#}"
    );
    assert_latency_ordered(&summary);
    // Each hub saw its share, and was asked for its CPU: the figures are
    // summed over the two.
    assert_eq!(a.metric("hub_handshakes_total"), 6.0);
    assert_eq!(b.metric("hub_handshakes_total"), 5.0);
    let server = &summary["server"];
    assert_eq!(server["pids"], json!([a.pid(), b.pid()]));
    let each: Vec<f64> = server["cpu_s_by_pid"]
        .as_array()
        .expect("cpu by pid")
        .iter()
        .map(|c| c.as_f64().unwrap())
        .collect();
    assert_eq!(each.len(), 2);
    assert!(each.iter().all(|&c| c >= 0.0));
    let sum = server["cpu_s"].as_f64().unwrap();
    assert!((sum - each.iter().sum::<f64>()).abs() < 1e-9, "{server:#}");
    assert!(
        server["acks_per_cpu_s"].is_number() || sum == 0.0,
        "{server:#}"
    );
}

#[test]
fn fanout_with_publishers_on_one_hub_puts_every_subscriber_on_the_other() {
    // Two hubs with no Redis between them share nothing: with the
    // publishers on one and every subscriber on the other, nothing arrives,
    // which shows that none of the subscribers went to the publishers' hub.
    let (a, b) = (
        start_hub(&["--shards", "1"], &[]),
        start_hub(&["--shards", "1"], &[]),
    );
    let summary = run_json(&[
        "fanout",
        "--url",
        &url(&a),
        "--url",
        &url(&b),
        "--publishers-on",
        "1",
        "--clients",
        "20",
        "--publishers",
        "2",
        "--rate",
        "40",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--drain",
        "300ms",
    ]);
    assert_eq!(
        per_url(&summary),
        [(url(&a), 20, 0, 20, 0), (url(&b), 2, 2, 2, 0)],
        "{summary:#}"
    );
    assert_eq!(summary["publishers_on"], 1);
    assert_no_errors(&summary);
    assert!(
        n(&summary, "acks") > 0,
        "the publishes were acked: {summary:#}"
    );
    let expected = n(&summary, "expected_deliveries");
    assert!(expected >= 20 * 20, "too few publishes: {summary:#}");
    assert_eq!(n(&summary, "deliveries"), 0, "{summary:#}");
    assert_eq!(n(&summary, "lost"), expected, "{summary:#}");
    assert_eq!(a.metric("hub_handshakes_total"), 20.0);
    assert_eq!(b.metric("hub_handshakes_total"), 2.0);
}

/// Two spellings of one hub's address: two `--url`s, one server.
fn two_urls_of(hub: &Proc) -> [String; 2] {
    [url(hub), format!("ws://{}/socket.io/", hub.addr)]
}

#[test]
fn fanout_over_two_urls_of_one_hub_delivers_every_publish_once() {
    let hub = start_hub(&[], &[]);
    let urls = two_urls_of(&hub);
    for placement in [&["--publishers-on", "0"][..], &[]] {
        let mut args = vec![
            "fanout",
            "--url",
            &urls[0],
            "--url",
            &urls[1],
            "--clients",
            "30",
            "--rooms",
            "3",
            "--publishers",
            "3",
            "--rate",
            "60",
            "--duration",
            "1s",
            "--warmup",
            "300ms",
        ];
        args.extend_from_slice(placement);
        let summary = run_json(&args);
        let expected_urls = if placement.is_empty() {
            // Subscribers and publishers each round robin from the first URL.
            [
                (urls[0].clone(), 17, 2, 17, 0),
                (urls[1].clone(), 16, 1, 16, 0),
            ]
        } else {
            [
                (urls[0].clone(), 3, 3, 3, 0),
                (urls[1].clone(), 30, 0, 30, 0),
            ]
        };
        assert_eq!(per_url(&summary), expected_urls, "{placement:?}");
        assert_eq!(n(&summary, "connects"), 33);
        assert_no_errors(&summary);
        // Every publish reaches its room of 10, wherever the publisher is.
        let expected = n(&summary, "expected_deliveries");
        assert!(expected >= 10 * 40, "too few publishes: {summary:#}");
        assert_eq!(expected % 10, 0);
        assert_eq!(n(&summary, "lost"), 0, "{summary:#}");
        assert_eq!(n(&summary, "duplicated"), 0, "{summary:#}");
        assert!(n(&summary, "deliveries") > 0);
        // Measured on loadgen's clock from publish to receipt: positive
        // and ordered whichever URL each side used.
        assert_latency_ordered(&summary);
    }
}

#[test]
fn churn_over_two_urls_of_one_hub_accounts_for_every_delivery() {
    let hub = start_hub(&["--shards", "2"], &[]);
    let urls = two_urls_of(&hub);
    let (code, summary, stderr) = churn(&hub, &["--url", &urls[1], "--publishers-on", "1"]);
    assert_eq!(code, Some(0), "{stderr}\n{summary:#}");
    assert_no_errors(&summary);
    // `churn` gives the first URL; the publishers are on the second, every
    // subscriber slot on the first, each of its lives connecting again.
    let spread = per_url(&summary);
    assert_eq!(spread.len(), 2);
    assert_eq!((spread[0].1, spread[0].2), (30, 0), "{summary:#}");
    assert_eq!((spread[1].1, spread[1].2, spread[1].3), (2, 2, 2));
    let c = &summary["churn"];
    assert_eq!(spread[0].3, n(c, "connects"), "every life on the first URL");
    assert!(
        n(c, "connects") > 30,
        "slots lived more than once: {summary:#}"
    );
    for key in ["lost", "duplicated", "misrouted", "unsettled", "unfinished"] {
        assert_eq!(n(c, key), 0, "{key}: {summary:#}");
    }
    assert!(n(c, "expected_deliveries") > 0);
    assert_eq!(n(c, "delivered"), n(c, "expected_deliveries"));
}

#[test]
fn a_url_no_client_reaches_is_counted_and_the_others_run() {
    let hub = start_hub(&["--shards", "1"], &[]);
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let summary = run_json(&[
        "echo",
        "--url",
        &url(&hub),
        "--url",
        &dead,
        "--clients",
        "6",
        "--rate",
        "60",
        "--duration",
        "500ms",
        "--warmup",
        "0s",
    ]);
    assert_eq!(
        per_url(&summary),
        [(url(&hub), 3, 0, 3, 0), (dead, 3, 0, 0, 3)],
        "{summary:#}"
    );
    assert_eq!(n(&summary, "connects"), 3);
    assert_eq!(n(&summary, "connect_failures"), 3);
    assert_eq!(n(&summary["errors"], "connect_refused"), 3);
    assert!(n(&summary, "acks") > 0);
}

#[test]
fn namespace_and_token_reach_an_authenticated_hub() {
    let secret = "loadgen-test-secret";
    let hub = start_hub(&["--auth-secret", secret, "--namespace", "/bench"], &[]);
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = TokenVerifier::new(secret.as_bytes())
        .sign(&json!({"exp": exp, "rooms": ["room-*"], "publish": ["room-*"]}));
    let summary = run_json(&[
        "fanout",
        "--url",
        &url(&hub),
        "--namespace",
        "/bench",
        "--token",
        &token,
        "--clients",
        "10",
        "--publishers",
        "1",
        "--rate",
        "50",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
    ]);
    assert_no_errors(&summary);
    assert_eq!(n(&summary, "lost"), 0);
    assert!(n(&summary, "deliveries") > 0);

    // Without the token every namespace CONNECT is refused, and said so.
    let out = loadgen()
        .args([
            "echo",
            "--url",
            &url(&hub),
            "--namespace",
            "/bench",
            "--clients",
            "3",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("namespace_refused"), "{stderr}");
}

#[test]
fn hist_log_and_plot_are_written() {
    let hub = start_hub(&[], &[]);
    let dir = std::env::temp_dir().join(format!("loadgen-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (hist, plot) = (dir.join("echo.hlog"), dir.join("echo.svg"));
    run_json(&[
        "echo",
        "--url",
        &url(&hub),
        "--clients",
        "5",
        "--rate",
        "100",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--hist",
        hist.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let log = std::fs::read_to_string(&hist).unwrap();
    assert!(log.contains("#[StartTime:"), "{log}");
    let intervals = log
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("\"Start"))
        .count();
    assert!(intervals >= 1, "no interval histograms: {log}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("percentile"),
        "not a chart"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn help_shows_every_scenario_and_option() {
    let out = loadgen().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "connect",
        "echo",
        "fanout",
        "idle",
        "--url",
        "--transport",
        "--clients",
        "--rooms",
        "--rooms-per-client",
        "--publishers",
        "--rate",
        "--inflight",
        "--duration",
        "--warmup",
        "--drain",
        "--payload-bytes",
        "--namespace",
        "--token",
        "--source-ips",
        "--shards",
        "--concurrency",
        "--timeout",
        "--server-pid",
        "--json",
        "--hist",
        "--plot",
        "--quiet",
        "churn",
        "--lifetime",
        "--abrupt-ratio",
        "--reset-ratio",
        "--polling-ratio",
        "--rss-every",
        "--publishers-on",
    ] {
        assert!(
            help.contains(word),
            "--help does not mention {word}:\n{help}"
        );
    }
}

fn fails(args: &[&str]) -> (Option<i32>, String) {
    let Output { status, stderr, .. } = loadgen().args(args).output().unwrap();
    (status.code(), String::from_utf8_lossy(&stderr).into_owned())
}

#[test]
fn wrong_options_are_refused_with_a_reason() {
    let cases: &[(&[&str], &str)] = &[
        (&["echo", "--bogus"], "--bogus"),
        (&["teleport"], "teleport"),
        (&["echo", "--clients", "many"], "--clients"),
        (&["echo", "--duration", "soon"], "duration"),
        (&["fanout", "--rooms", "0"], "--rooms"),
        (
            &["fanout", "--rooms", "2", "--rooms-per-client", "3"],
            "--rooms-per-client",
        ),
        (&["echo", "--payload-bytes", "8"], "--payload-bytes"),
        (&["echo", "--source-ips", "127.0.0.9-127.0.0.2"], "range"),
        (&["echo", "--url", "ftp://x"], "not an http"),
        (
            &[
                "echo",
                "--url",
                "https://127.0.0.1:1",
                "--ca",
                "/nonexistent.pem",
            ],
            "--ca",
        ),
        (
            &[
                "echo",
                "--url",
                "wss://127.0.0.1:1",
                "--ca",
                "x.pem",
                "--insecure",
            ],
            "--insecure",
        ),
        (&["churn", "--abrupt-ratio", "2"], "--abrupt-ratio"),
        (&["churn", "--lifetime", "0s"], "--lifetime"),
        (&["fanout", "--publishers-on", "1"], "--publishers-on"),
        (
            &[
                "echo",
                "--url",
                "http://a:1",
                "--url",
                "http://b:2",
                "--publishers-on",
                "0",
            ],
            "--publishers-on",
        ),
        (&["idle", "--server-pid", "1", "--server-pid", "1"], "twice"),
        (
            &["echo", "--url", "http://127.0.0.1:1", "--url", "ftp://x"],
            "not an http",
        ),
    ];
    for (args, needle) in cases {
        let (code, stderr) = fails(args);
        assert!(
            code == Some(2) || code == Some(1),
            "{args:?} exited {code:?}"
        );
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn an_unreachable_server_is_an_error() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (code, stderr) = fails(&[
        "echo",
        "--url",
        &format!("http://127.0.0.1:{port}"),
        "--clients",
        "4",
        "--quiet",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("no client could connect") && stderr.contains("connect_refused"),
        "{stderr}"
    );
}

#[test]
fn server_pid_that_does_not_exist_is_an_error() {
    let (code, stderr) = fails(&["idle", "--clients", "1", "--server-pid", "4000000000"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--server-pid"), "{stderr}");
}

/// A server that is not Socket.IO: it takes `count` connections, reads the
/// request and answers `reply` (or, given `None`, holds the connection
/// without a word), then closes. Returns its URL.
fn not_socketio(count: usize, reply: Option<&'static [u8]>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(count) {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            match reply {
                Some(reply) => {
                    let _ = stream.write_all(reply);
                }
                None => held.push(stream),
            }
        }
        thread::sleep(Duration::from_secs(5));
    });
    url
}

#[test]
fn a_server_that_is_not_socketio_is_an_error_by_cause() {
    let cases: &[(&str, Option<&'static [u8]>, &str)] = &[
        ("websocket", Some(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"), "http_status"),
        ("polling", Some(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"), "http_status"),
        (
            "websocket",
            Some(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n"),
            "bad_handshake",
        ),
        ("websocket", Some(b"hello\r\n\r\n"), "bad_handshake"),
        ("polling", Some(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), "bad_handshake"),
        ("websocket", Some(b""), "bad_handshake"),
        ("websocket", None, "connect_timeout"),
    ];
    for &(transport, reply, cause) in cases {
        let url = not_socketio(2, reply);
        let (code, stderr) = fails(&[
            "echo",
            "--url",
            &url,
            "--transport",
            transport,
            "--clients",
            "2",
            "--timeout",
            "1s",
            "--quiet",
        ]);
        assert_eq!(code, Some(1), "{transport} {reply:?}: {stderr}");
        assert!(
            stderr.contains("no client could connect") && stderr.contains(cause),
            "{transport} {reply:?}: expected {cause}: {stderr}"
        );
    }
}

/// loadgen over TLS (`https://`, `wss://`) against `hub --tls-cert`, with a
/// certificate made by the test: fanout over both transports with
/// everything delivered once, the upgrade-free WebSocket path and polling's
/// two connections both through rustls, on two shards.
#[test]
fn fanout_over_tls_delivers_every_publish_once_on_both_transports() {
    let cert = TestCert::new();
    let hub = start_hub(&cert.args(), &[]);
    for (scheme, transport) in [("wss", "websocket"), ("https", "polling")] {
        let summary = run_json(&[
            "fanout",
            "--url",
            &format!("{scheme}://{}", hub.addr),
            "--ca",
            cert.cert(),
            "--transport",
            transport,
            "--clients",
            "30",
            "--rooms",
            "1",
            "--publishers",
            "2",
            "--rate",
            "40",
            "--duration",
            "1s",
            "--warmup",
            "300ms",
        ]);
        assert_eq!(n(&summary, "connects"), 32, "{transport}: {summary:#}");
        assert_no_errors(&summary);
        assert!(n(&summary, "expected_deliveries") >= 30 * 20, "{summary:#}");
        assert_eq!(n(&summary, "lost"), 0, "{transport}: {summary:#}");
        assert_eq!(n(&summary, "duplicated"), 0, "{transport}: {summary:#}");
    }
}

/// A certificate loadgen does not trust fails every TLS handshake (counted
/// as `tls_handshake`, the reason said once); `--insecure` accepts it and
/// echo runs.
#[test]
fn an_untrusted_certificate_fails_the_tls_handshake_unless_insecure() {
    let cert = TestCert::new();
    let mut args = vec!["--shards", "1"];
    args.extend(cert.args());
    let hub = start_hub(&args, &[]);
    let https = format!("https://{}", hub.addr);
    let out = loadgen()
        .args([
            "echo",
            "--url",
            &https,
            "--clients",
            "3",
            "--duration",
            "300ms",
        ])
        .args(["--json", "--quiet"])
        .output()
        .expect("run loadgen");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "connected without trusting: {stderr}"
    );
    assert!(
        stderr.contains("tls_handshake (3 of 3 failed)") && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
    let summary = run_json(&[
        "echo",
        "--url",
        &https,
        "--insecure",
        "--clients",
        "5",
        "--rate",
        "100",
        "--duration",
        "500ms",
        "--warmup",
        "200ms",
    ]);
    assert_eq!(n(&summary, "connects"), 5, "{summary:#}");
    assert_no_errors(&summary);
    assert!(n(&summary, "acks") > 0, "{summary:#}");
}
