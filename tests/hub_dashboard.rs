//! The live dashboard on the hub's admin listener, against the real binary:
//! the event stream's history and samples under a known load (clients
//! connected, publishes delivered), the API key on the page and the
//! stream, the bound on open streams, a stream client that stops reading,
//! and SIGTERM with a stream open.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// One server-sent event.
#[derive(Debug)]
struct Event {
    name: String,
    id: Option<u64>,
    data: String,
}

impl Event {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event {:?}: bad JSON ({e}): {}", self.name, self.data))
    }
}

/// A `GET /api/stream` as a plain HTTP client reads it.
struct Stream {
    tcp: TcpStream,
    buf: Vec<u8>,
    status: u16,
    head: String,
}

impl Stream {
    fn open(admin: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Stream {
        let tcp = TcpStream::connect(admin).unwrap();
        Stream::send(tcp, target, headers)
    }

    fn send(mut tcp: TcpStream, target: &str, headers: &[(&str, &str)]) -> Stream {
        tcp.write_all(&build_request("GET", target, headers, b""))
            .unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = tcp.read(&mut chunk).expect("the stream's head");
            assert!(n > 0, "closed before the head: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let status = head[9..12].parse().unwrap();
        buf.drain(..end);
        Stream {
            tcp,
            buf,
            status,
            head,
        }
    }

    /// The next event, or None when the server closed the stream.
    fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block = String::from_utf8(self.buf.drain(..at + 2).collect()).unwrap();
                let mut event = Event {
                    name: "message".into(),
                    id: None,
                    data: String::new(),
                };
                let mut fields = 0;
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event: ") {
                        event.name = name.into();
                    } else if let Some(id) = line.strip_prefix("id: ") {
                        event.id = Some(id.parse().unwrap());
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        event.data.push_str(data);
                        fields += 1;
                    }
                }
                if fields > 0 {
                    return Some(event);
                }
                continue; // `retry:` alone
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no event within {within:?}");
            self.tcp.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 16 * 1024];
            match self.tcp.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("reading the stream: {e}"),
            }
        }
    }

    fn expect(&mut self, name: &str) -> Event {
        let event = self
            .next(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("the stream closed before a {name} event"));
        assert_eq!(event.name, name, "{event:?}");
        event
    }

    /// The next sample (skipping `errors` events).
    fn sample(&mut self) -> Value {
        loop {
            let event = self
                .next(Duration::from_secs(10))
                .expect("the stream closed before a sample");
            if event.name == "message" {
                assert!(event.id.is_some(), "a sample has an id: {event:?}");
                return event.json();
            }
        }
    }
}

/// Opens the stream and reads what comes first: the history and the
/// recent errors.
fn open_stream(admin: SocketAddr, target: &str) -> (Stream, Vec<Value>) {
    let mut stream = Stream::open(admin, target, &[]);
    assert_eq!(stream.status, 200, "{}", stream.head);
    assert!(
        stream
            .head
            .to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{}",
        stream.head
    );
    let history = stream.expect("history").json();
    let errors = stream.expect("errors").json();
    assert!(
        errors["recent"].is_array() && errors["dropped"].is_u64(),
        "{errors}"
    );
    // Every hub here starts without --auth-secret, and warns so: the log
    // ring caught that line.
    assert!(
        errors["recent"].as_array().unwrap().iter().any(|e| {
            e["level"] == "WARN"
                && e["text"]
                    .as_str()
                    .unwrap_or("")
                    .contains("no --auth-secret")
        }),
        "the start's warning is not among the recent errors: {errors}"
    );
    (stream, history.as_array().unwrap().clone())
}

/// A relay client on `/` over a raw WebSocket.
fn client(hub: &Proc) -> Ws {
    let mut ws = ws_try_connect_at(hub.addr, "/socket.io/", "EIO=4&transport=websocket").unwrap();
    assert!(ws_text(&mut ws).starts_with("0{"));
    ws_send_text(&mut ws, "40{}");
    assert!(ws_text(&mut ws).starts_with("40{\"sid\""));
    ws
}

/// An unlabelled metric (the dashboard's are process-wide).
fn plain_metric(hub: &Proc, name: &str) -> f64 {
    let text = Conn::open(hub.admin).get("/metrics").text();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn get(admin: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Response {
    Conn::open(admin).request("GET", target, headers, b"")
}

/// The fields every sample has, per shard and in total, consistent.
fn check_sample(sample: &Value, shards: usize) {
    for field in [
        "unix_ms",
        "connections",
        "polling",
        "websocket",
        "handshakes_per_s",
        "deliveries_per_s",
        "bytes_out_per_s",
        "bytes_in_per_s",
        "deliveries_total",
        "cross_shard_queue",
        "cross_shard_backlog_bytes",
        "slow_consumer_disconnects",
    ] {
        assert!(sample[field].is_number(), "{field} in {sample}");
    }
    let per_shard = sample["shards"].as_array().unwrap();
    assert_eq!(per_shard.len(), shards, "{sample}");
    let sum = |field: &str| -> u64 { per_shard.iter().map(|s| s[field].as_u64().unwrap()).sum() };
    assert_eq!(sum("connections"), sample["connections"].as_u64().unwrap());
    assert_eq!(
        sample["polling"].as_u64().unwrap() + sample["websocket"].as_u64().unwrap(),
        sample["connections"].as_u64().unwrap(),
        "{sample}"
    );
    assert!(sample["cluster"].is_null(), "no cluster: {sample}");
}

#[test]
fn the_stream_shows_the_connected_clients_and_the_deliveries_of_publishes() {
    let hub = start_hub(&["--dashboard-interval", "200"], &[]);
    // Let the sampler keep a few samples: the next stream starts with them.
    let (mut early, _) = open_stream(hub.admin, "/api/stream");
    for _ in 0..3 {
        check_sample(&early.sample(), 2);
    }
    drop(early);
    let (mut stream, history) = open_stream(hub.admin, "/api/stream");
    assert!(history.len() >= 3 && history.len() <= 300);
    for sample in &history {
        check_sample(sample, 2);
    }
    assert!(history
        .windows(2)
        .all(|w| w[0]["unix_ms"].as_u64() <= w[1]["unix_ms"].as_u64()));
    let first = stream.sample();
    let second = stream.sample();
    check_sample(&first, 2);
    check_sample(&second, 2);
    assert!(second["unix_ms"].as_u64() > first["unix_ms"].as_u64());
    // This stream counts itself (the ones above may not be gone yet).
    assert!(
        second["dashboard_streams"].as_u64().unwrap() >= 1,
        "{second}"
    );

    // N clients connected: N on the dashboard, all on WebSocket.
    const N: u64 = 5;
    let mut clients: Vec<Ws> = (0..N).map(|_| client(&hub)).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (deliveries_before, mut previous_ms) = loop {
        let sample = stream.sample();
        assert!(Instant::now() < deadline, "never {N} connections: {sample}");
        check_sample(&sample, 2);
        if sample["connections"] == N {
            assert_eq!(sample["websocket"], N, "{sample}");
            assert_eq!(sample["polling"], 0, "{sample}");
            assert_eq!(sample["handshakes_total"], N, "{sample}");
            break (
                sample["deliveries_total"].as_u64().unwrap(),
                sample["unix_ms"].as_u64(),
            );
        }
    };
    for ws in clients.iter_mut() {
        ws_send_text(ws, r#"427["join","lobby"]"#);
        assert_eq!(ws_text(ws), r#"437[{"ok":true}]"#);
    }
    // M publishes to the room of N: M x N deliveries, in the total and in
    // the rates (their sum over the samples' times comes to the same).
    const M: u64 = 20;
    for i in 0..M {
        let resp = Conn::open(hub.admin).post(
            "/api/publish",
            json!({"to": "lobby", "event": "n", "data": i})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(resp.status, 200);
    }
    for ws in clients.iter_mut() {
        for i in 0..M {
            assert_eq!(ws_text(ws), format!(r#"42["n",{i}]"#));
        }
    }
    // Every sample since, in order (this reader keeps up, so the server
    // skips none).
    let mut from_rates = 0.0;
    let mut peak = 0.0f64;
    let mut bytes_out_peak = 0.0f64;
    let started = Instant::now();
    loop {
        let sample = stream.sample();
        let at = sample["unix_ms"].as_u64().unwrap();
        let rate = sample["deliveries_per_s"].as_f64().unwrap();
        if let Some(before) = previous_ms {
            from_rates += rate * (at - before) as f64 / 1000.0;
        }
        previous_ms = Some(at);
        peak = peak.max(rate);
        bytes_out_peak = bytes_out_peak.max(sample["bytes_out_per_s"].as_f64().unwrap());
        let total = sample["deliveries_total"].as_u64().unwrap() - deliveries_before;
        if total == M * N && rate == 0.0 {
            break;
        }
        assert!(
            total <= M * N && started.elapsed() < Duration::from_secs(10),
            "deliveries: {total} of {} ({sample})",
            M * N
        );
    }
    assert!(peak > 0.0 && bytes_out_peak > 0.0, "rates moved: {peak}");
    // The rates of the samples read add up to the deliveries, give or take
    // the gap between the sampler's clock and the sample's timestamp.
    let want = (M * N) as f64;
    assert!(
        (from_rates - want).abs() <= want * 0.2,
        "deliveries from the rates: {from_rates}, want {want}"
    );
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sample = stream.sample();
        if sample["connections"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never back to 0: {sample}");
    }
}

#[test]
fn the_api_key_guards_the_page_and_the_stream() {
    let hub = start_hub(&["--api-key", "s3cret/+"], &[]);
    let form = get(hub.admin, "/", &[]);
    assert_eq!(form.status, 401);
    assert!(
        form.text().contains("name=\"key\""),
        "a form: {}",
        form.text()
    );
    assert!(!form.text().contains("<canvas"));
    let wrong = get(hub.admin, "/?key=s3cret", &[]);
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("wrong"));
    // The key in the URL (percent-encoded as a form sends it) or as a header.
    let page = get(hub.admin, "/?key=s3cret%2F%2B", &[]);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text().contains("<canvas") && page.text().contains("EventSource"));
    let page = get(hub.admin, "/", &[("authorization", "Bearer s3cret/+")]);
    assert_eq!(page.status, 200);
    // The stream: refused without the key, open with it.
    for target in ["/api/stream", "/api/stream?key=nope"] {
        let refused = Stream::open(hub.admin, target, &[]);
        assert_eq!(refused.status, 401, "{target}: {}", refused.head);
    }
    let (mut stream, _) = open_stream(hub.admin, "/api/stream?key=s3cret%2F%2B");
    check_sample(&stream.sample(), 2);
    let mut bearer = Stream::open(
        hub.admin,
        "/api/stream",
        &[("authorization", "Bearer s3cret/+")],
    );
    assert_eq!(bearer.status, 200);
    assert_eq!(bearer.expect("history").name, "history");
    // The other routes do not take the key from the URL.
    assert_eq!(
        get(hub.admin, "/api/stats?key=s3cret%2F%2B", &[]).status,
        401
    );
    assert!(!hub.stderr().contains("s3cret"), "the key is never logged");
}

#[test]
fn open_streams_are_bounded() {
    let hub = start_hub(
        &["--dashboard-streams", "2", "--dashboard-interval", "100"],
        &[],
    );
    let (first, _) = open_stream(hub.admin, "/api/stream");
    let (mut second, _) = open_stream(hub.admin, "/api/stream");
    let refused = Stream::open(hub.admin, "/api/stream", &[]);
    assert_eq!(refused.status, 503, "{}", refused.head);
    assert_eq!(plain_metric(&hub, "hub_dashboard_streams"), 2.0);
    assert_eq!(
        plain_metric(&hub, "hub_dashboard_streams_refused_total"),
        1.0
    );
    // The page is not a stream: it is served meanwhile.
    assert_eq!(get(hub.admin, "/", &[]).status, 200);
    // A client that goes frees its slot (the next write finds it gone).
    drop(first);
    eventually_or(
        Duration::from_secs(5),
        || plain_metric(&hub, "hub_dashboard_streams") == 1.0,
        || {
            format!(
                "a slot freed: {}",
                Conn::open(hub.admin).get("/metrics").text()
            )
        },
    );
    let (_third, _) = open_stream(hub.admin, "/api/stream");
    check_sample(&second.sample(), 2);
    assert_eq!(plain_metric(&hub, "hub_dashboard_streams"), 2.0);
}

#[test]
fn a_stream_client_that_stops_reading_is_closed() {
    // Samples every 10 ms fill the socket buffers fast; the stall time is
    // then its floor, 2 s.
    let hub = start_hub(&["--dashboard-interval", "10"], &[]);
    let tcp = TcpStream::connect(hub.admin).unwrap();
    // A small receive buffer: the server's writes block sooner.
    support::set_rcvbuf(&tcp, 4096);
    let mut stalled = Stream::send(tcp, "/api/stream", &[]);
    assert_eq!(stalled.status, 200);
    // A reading stream beside it keeps going.
    let (mut reading, _) = open_stream(hub.admin, "/api/stream");
    let rss_before = hub.rss_kib();
    eventually(Duration::from_secs(60), "the stalled stream closed", || {
        let _ = reading.sample();
        plain_metric(&hub, "hub_dashboard_streams_stalled_total") == 1.0
    });
    assert_eq!(plain_metric(&hub, "hub_dashboard_streams"), 1.0);
    // What the server holds for it did not grow meanwhile.
    let rss_after = hub.rss_kib();
    assert!(
        rss_after < rss_before + 8 * 1024,
        "RSS {rss_before} KiB -> {rss_after} KiB"
    );
    // Its client, reading at last, finds the end of the stream.
    let mut events = 0;
    while stalled.next(Duration::from_secs(10)).is_some() {
        events += 1;
    }
    assert!(events > 0);
    check_sample(&reading.sample(), 2);
}

#[test]
fn sigterm_with_a_stream_open_exits_in_time() {
    let mut hub = start_hub(&["--shutdown-timeout", "3000"], &[]);
    let (mut stream, _) = open_stream(hub.admin, "/api/stream");
    check_sample(&stream.sample(), 2);
    let _client = client(&hub);
    let asked = Instant::now();
    hub.sigterm();
    let status = hub.exit_within(Duration::from_secs(5), "SIGTERM with a stream open");
    assert!(status.success(), "{status}");
    // The stream ended with the process, within the shutdown timeout.
    while stream.next(Duration::from_secs(5)).is_some() {}
    assert!(asked.elapsed() < Duration::from_secs(5));
}
