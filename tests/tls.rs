//! TLS on the `hub` binary's listeners (`--tls-cert`/`--tls-key`), with
//! certificates made by the test (rcgen) and a rustls client: polling and
//! WebSocket over TLS on one and two shards, the upgrade handed to the
//! shard owning its session (the TLS session moves with the descriptor),
//! plain HTTP on the TLS port refused, TLS 1.2 and 1.3, ALPN, the handshake
//! timeout, bad files at start (exit 2), and certificate reloads on SIGHUP.

mod support;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use support::{
    hub_command, parse_open, start_hub, tcp_connect, Before, Proc, TestCert, IO_TIMEOUT,
};
use tungstenite::Message;

type TlsConn = StreamOwned<ClientConnection, TcpStream>;
type Wss = tungstenite::WebSocket<TlsConn>;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client trusting `roots`, speaking `versions`, offering `alpn`.
fn client_config(
    roots: &[&CertificateDer<'static>],
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add((*root).clone()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Every handshake a full one: a resumed session would report the
    // certificate of the session it resumes, not the one served now.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

fn trusting(cert: &TestCert) -> Arc<ClientConfig> {
    client_config(&[&cert.der], rustls::ALL_VERSIONS, &[b"http/1.1"])
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// A TLS connection to `addr` for "localhost", its handshake done.
fn try_connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> io::Result<TlsConn> {
    try_connect_over(tcp(addr), config)
}

/// TLS for "localhost" over `stream`, its handshake done.
fn try_connect_over(stream: TcpStream, config: &Arc<ClientConfig>) -> io::Result<TlsConn> {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config.clone(), name).unwrap();
    let mut tls = StreamOwned::new(conn, stream);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> TlsConn {
    try_connect(addr, config).unwrap_or_else(|e| panic!("TLS handshake with {addr}: {e}"))
}

/// An HTTP/1.1 answer: status and body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Write a request and read its answer, exactly (the connection may go on).
fn request(stream: &mut impl ReadWrite, method: &str, path: &str, body: &[u8]) -> Answer {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\
         Content-Type: text/plain;charset=UTF-8\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    stream.flush().unwrap();
    read_answer(stream)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn read_answer(stream: &mut impl Read) -> Answer {
    // Byte by byte up to the end of the head: nothing of what follows is
    // taken from the stream (a WebSocket may follow on it).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "reading an answer's head: {other:?} after {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let head = String::from_utf8(head).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    Answer { status, body }
}

/// GET over a fresh TLS connection.
fn https_get(addr: SocketAddr, config: &Arc<ClientConfig>, path: &str) -> Answer {
    request(&mut connect(addr, config), "GET", path, b"")
}

/// The sum of a metric's samples whose labels contain `labels`, read
/// from the admin listener (over TLS: it shares the main certificate).
fn metric(hub: &Proc, config: &Arc<ClientConfig>, name: &str, labels: &str) -> f64 {
    let text = https_get(hub.admin, config, "/metrics").text();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The shard a session id names (its first two characters).
fn shard_of(sid: &str) -> usize {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let at = |c: u8| ALPHABET.iter().position(|a| *a == c).unwrap();
    let b = sid.as_bytes();
    at(b[0]) * 64 + at(b[1])
}

const PATH: &str = "/socket.io/";

/// A polling handshake on `stream`: the sid.
fn polling_open(stream: &mut impl ReadWrite) -> String {
    let answer = request(
        stream,
        "GET",
        &format!("{PATH}?EIO=4&transport=polling"),
        b"",
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    parse_open(&answer.text()).0
}

fn poll_path(sid: &str) -> String {
    format!("{PATH}?EIO=4&transport=polling&sid={sid}")
}

/// A WebSocket over TLS on `stream` (fresh, or after polling requests).
fn wss_on(stream: TlsConn, addr: SocketAddr, query: &str) -> Wss {
    let url = format!("wss://localhost:{}{PATH}?{query}", addr.port());
    let (ws, answer) = tungstenite::client(url.as_str(), stream)
        .unwrap_or_else(|e| panic!("WebSocket over TLS ({query}): {e}"));
    assert_eq!(answer.status(), 101);
    ws
}

/// The next text message that is not a ping (pings are answered).
fn ws_text(ws: &mut Wss) -> String {
    loop {
        match ws.read() {
            Ok(Message::Text(text)) if text.as_str() == "2" => {
                ws.send(Message::text("3")).unwrap();
            }
            Ok(Message::Text(text)) => return text.to_string(),
            Ok(_) => {}
            Err(e) => panic!("reading a WebSocket over TLS: {e}"),
        }
    }
}

/// Connect the main namespace on a WebSocket session and check an
/// acknowledged echo comes back.
fn ws_connect_and_echo(ws: &mut Wss, what: &str) {
    ws.send(Message::text("40")).unwrap();
    let connected = ws_text(ws);
    assert!(connected.starts_with("40{"), "{what}: {connected}");
    ws.send(Message::text(format!("421[\"echo\",\"{what}\"]")))
        .unwrap();
    assert_eq!(ws_text(ws), format!("431[\"{what}\"]"), "{what}");
}

fn polling_and_websocket(shards: &str) {
    let cert = TestCert::new();
    let mut args = vec!["--shards", shards];
    args.extend(cert.args());
    let hub = start_hub(&args, &[]);
    let config = trusting(&cert);

    // Polling: handshake, connect, an acknowledged echo, keep-alive.
    let mut conn = connect(hub.addr, &config);
    let sid = polling_open(&mut conn);
    let posted = request(&mut conn, "POST", &poll_path(&sid), b"40");
    assert_eq!((posted.status, posted.text().as_str()), (200, "ok"));
    let got = request(&mut conn, "GET", &poll_path(&sid), b"");
    assert!(got.text().starts_with("40{\"sid\":"), "{}", got.text());
    let posted = request(&mut conn, "POST", &poll_path(&sid), b"420[\"echo\",\"p\"]");
    assert_eq!(posted.status, 200);
    let got = request(&mut conn, "GET", &poll_path(&sid), b"");
    assert_eq!(got.text(), "430[\"p\"]");

    // WebSocket only.
    let mut ws = wss_on(
        connect(hub.addr, &config),
        hub.addr,
        "EIO=4&transport=websocket",
    );
    let open = ws_text(&mut ws);
    assert!(open.starts_with("0{"), "{open}");
    ws_connect_and_echo(&mut ws, "websocket");

    // Polling, then the upgrade on another connection.
    let mut conn = connect(hub.addr, &config);
    let sid = polling_open(&mut conn);
    let mut ws = wss_on(
        connect(hub.addr, &config),
        hub.addr,
        &format!("EIO=4&transport=websocket&sid={sid}"),
    );
    upgrade(&mut ws);
    ws_connect_and_echo(&mut ws, "upgraded");
}

/// The probe and the upgrade packet of a polling session's WebSocket.
fn upgrade(ws: &mut Wss) {
    ws.send(Message::text("2probe")).unwrap();
    assert_eq!(ws_text(ws), "3probe");
    ws.send(Message::text("5")).unwrap();
}

#[test]
fn polling_and_websocket_over_tls_on_one_shard() {
    polling_and_websocket("1");
}

#[test]
fn polling_and_websocket_over_tls_on_two_shards() {
    polling_and_websocket("2");
}

/// The upgrade arrives on the shard that does not own the session: the
/// connection, TLS session and all, is handed to the owner, and the
/// session lives on over it.
#[test]
fn an_upgrade_on_the_other_shard_is_handed_over_with_its_tls_session() {
    let cert = TestCert::new();
    let mut args = vec!["--shards", "2"];
    args.extend(cert.args());
    let hub = start_hub(&args, &[]);
    let config = trusting(&cert);
    let mut handed = 0;
    for _ in 0..40 {
        // A handshake on a connection opens its session on the shard that
        // accepted the connection: the sid says which.
        let mut first = connect(hub.addr, &config);
        let sid = polling_open(&mut first);
        let mut second = connect(hub.addr, &config);
        let other = polling_open(&mut second);
        if shard_of(&other) == shard_of(&sid) {
            continue;
        }
        // The second connection, accepted by the other shard, carries the
        // upgrade of the first session after a request of its own: its TLS
        // session has records behind it.
        let mut ws = wss_on(
            second,
            hub.addr,
            &format!("EIO=4&transport=websocket&sid={sid}"),
        );
        upgrade(&mut ws);
        ws_connect_and_echo(&mut ws, &format!("handed {handed}"));
        // Frames large enough to take several records both ways.
        let big = "x".repeat(100_000);
        ws.send(Message::text(format!("422[\"echo\",\"{big}\"]")))
            .unwrap();
        assert_eq!(ws_text(&mut ws), format!("432[\"{big}\"]"));
        handed += 1;
        if handed == 3 {
            return;
        }
    }
    panic!("only {handed} of 3 upgrades landed on the other shard in 40 tries");
}

#[test]
fn plain_http_on_the_tls_port_gets_a_400_and_a_close() {
    let cert = TestCert::new();
    let hub = start_hub(&cert.args(), &[]);
    let mut stream = tcp(hub.addr);
    stream
        .write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("Connection: close"), "{answer}");
    assert!(
        answer.ends_with("This port speaks HTTPS: use https:// or wss://"),
        "{answer}"
    );
    // The admin listener shares the main certificate, and refuses the same.
    let mut admin = tcp(hub.admin);
    admin
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    admin.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 400 "));
    let config = trusting(&cert);
    assert_eq!(https_get(hub.admin, &config, "/healthz").status, 200);
    assert_eq!(
        metric(&hub, &config, "hub_tls_handshake_failures_total", ""),
        1.0,
        "the main listener counts the refusal"
    );
}

#[test]
fn tls_1_2_and_1_3_both_work_and_alpn_agrees_on_http_1_1_only() {
    let cert = TestCert::new();
    let hub = start_hub(&cert.args(), &[]);
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = client_config(&[&cert.der], &[version], &[b"h2", b"http/1.1"]);
        let mut conn = connect(hub.addr, &config);
        assert_eq!(conn.conn.protocol_version(), Some(version.version));
        assert_eq!(conn.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        polling_open(&mut conn);
    }
    // No ALPN offered (Node's clients): fine, none agreed.
    let config = client_config(&[&cert.der], rustls::ALL_VERSIONS, &[]);
    let mut conn = connect(hub.addr, &config);
    assert_eq!(conn.conn.alpn_protocol(), None);
    polling_open(&mut conn);
    // h2 only: refused in the handshake.
    let config = client_config(&[&cert.der], rustls::ALL_VERSIONS, &[b"h2"]);
    let error = try_connect(hub.addr, &config).expect_err("an h2-only client is refused");
    assert!(
        error.to_string().contains("NoApplicationProtocol"),
        "{error}"
    );
}

#[test]
fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let cert = TestCert::new();
    let mut args = vec!["--tls-handshake-timeout", "300"];
    args.extend(cert.args());
    let hub = start_hub(&args, &[]);
    let config = trusting(&cert);
    // One says nothing; one starts a handshake record and stops.
    let mut silent = tcp(hub.addr);
    let mut stalled = tcp(hub.addr);
    stalled.write_all(&[0x16, 0x03, 0x01]).unwrap();
    for (name, stream) in [("silent", &mut silent), ("stalled", &mut stalled)] {
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "{name}: {rest:?}"),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{name}: not closed by the server: {e}"),
        }
    }
    assert_eq!(
        metric(&hub, &config, "hub_tls_handshake_failures_total", ""),
        2.0
    );
}

/// A WSS subscriber that stops reading (a small receive window, nothing
/// read) is closed as a slow consumer: rustls takes no more plaintext while
/// its ciphertext waits for the socket, so the writer blocks and the byte
/// budget is reached, as on a plain connection.
#[test]
fn a_wss_subscriber_that_stops_reading_is_closed_as_a_slow_consumer() {
    let cert = TestCert::new();
    let mut args = vec!["--shards", "1", "--max-buffered-bytes", "1000000"];
    args.extend(cert.args());
    let hub = start_hub(&args, &[]);
    let config = trusting(&cert);
    let small_window = tcp_connect(
        hub.addr,
        Before {
            rcvbuf: Some(4096),
            ..Before::default()
        },
    );
    small_window.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let tls = try_connect_over(small_window, &config).unwrap();
    let mut slow = wss_on(tls, hub.addr, "EIO=4&transport=websocket");
    assert!(ws_text(&mut slow).starts_with("0{"));
    ws_connect_and_echo(&mut slow, "slow");
    slow.send(Message::text("421[\"join\",\"room\"]")).unwrap();
    assert_eq!(ws_text(&mut slow), "431[{\"ok\":true}]");
    let mut publisher = wss_on(
        connect(hub.addr, &config),
        hub.addr,
        "EIO=4&transport=websocket",
    );
    assert!(ws_text(&mut publisher).starts_with("0{"));
    ws_connect_and_echo(&mut publisher, "publisher");
    // 5 MB to a client that reads nothing, with a 1 MB budget.
    let data = "x".repeat(50_000);
    for i in 0..100 {
        publisher
            .send(Message::text(format!(
                "42{}[\"publish\",{{\"to\":\"room\",\"event\":\"m\",\"data\":\"{data}\"}}]",
                i + 10
            )))
            .unwrap();
        assert_eq!(
            ws_text(&mut publisher),
            format!("43{}[{{\"ok\":true}}]", i + 10)
        );
    }
    let deadline = Instant::now() + IO_TIMEOUT;
    while metric(&hub, &config, "hub_slow_consumer_disconnects_total", "") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the subscriber that reads nothing was not closed as a slow consumer"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `hub` with `args`, which must stop it at start: its exit code and stderr.
fn start_fails(args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["--bind", "127.0.0.1", "--port", "0"];
    all.extend_from_slice(args);
    let mut child = hub_command(&all, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return (status.code(), stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hub {args:?} did not stop at start");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_files_at_start_exit_2_naming_the_option() {
    let cert = TestCert::new();
    let other = TestCert::new();
    let garbage = cert.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let garbage = garbage.to_str().unwrap();
    let missing = cert.dir.join("missing.pem");
    let missing = missing.to_str().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (
            &["--tls-cert", garbage, "--tls-key", cert.key()],
            "--tls-cert",
        ),
        (
            &["--tls-cert", missing, "--tls-key", cert.key()],
            "--tls-cert",
        ),
        (
            &["--tls-cert", cert.cert(), "--tls-key", missing],
            "--tls-key",
        ),
        (
            &["--tls-cert", cert.cert(), "--tls-key", garbage],
            "--tls-key",
        ),
        (
            &["--tls-cert", cert.cert(), "--tls-key", other.key()],
            "--tls-key",
        ),
        (&["--tls-cert", cert.cert()], "--tls-key"),
        (
            &[
                "--tls-cert",
                cert.cert(),
                "--tls-key",
                cert.key(),
                "--admin-tls-cert",
                cert.cert(),
                "--admin-tls-key",
                other.key(),
            ],
            "--admin-tls-key",
        ),
    ];
    for (args, option) in cases {
        let (code, stderr) = start_fails(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(option),
            "{args:?} should name {option}: {stderr}"
        );
        assert!(!stderr.contains("listening"), "{args:?}: {stderr}");
    }
    // The key that does not match: the message says so.
    let (_, stderr) = start_fails(&["--tls-cert", cert.cert(), "--tls-key", other.key()]);
    assert!(stderr.contains("does not match"), "{stderr}");
}

/// The certificate a new handshake sees.
fn served_cert(addr: SocketAddr, config: &Arc<ClientConfig>) -> CertificateDer<'static> {
    let conn = connect(addr, config);
    conn.conn.peer_certificates().unwrap()[0].clone()
}

fn sighup(hub: &Proc) {
    // SAFETY: a plain kill(2) of the child this test started.
    let sent = unsafe { libc::kill(hub.pid() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(sent, 0, "SIGHUP: {}", io::Error::last_os_error());
}

/// Waits for the reloads counted with `result` to reach `count`.
fn wait_reloads(hub: &Proc, config: &Arc<ClientConfig>, result: &str, count: f64) {
    let deadline = Instant::now() + IO_TIMEOUT;
    let labels = format!("result=\"{result}\"");
    while metric(hub, config, "hub_tls_reloads_total", &labels) < count {
        assert!(Instant::now() < deadline, "no {result} reload counted");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A subscriber and a publisher on WebSockets over TLS: publishes keep
/// arriving, each once, while the certificate is reloaded; a new handshake
/// then sees the new certificate. A broken file on the next SIGHUP keeps it.
#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let cert = TestCert::new();
    let first = cert.der.clone();
    let mut args = vec!["--shards", "2"];
    args.extend(cert.args());
    let hub = start_hub(&args, &[]);
    // The client trusts the first and the next certificate.
    let next_dir = TestCert::new();
    let next = next_dir.der.clone();
    let config = client_config(&[&first, &next], rustls::ALL_VERSIONS, &[b"http/1.1"]);
    assert_eq!(served_cert(hub.addr, &config), first);

    let open = |what: &str| {
        let mut ws = wss_on(
            connect(hub.addr, &config),
            hub.addr,
            "EIO=4&transport=websocket",
        );
        assert!(ws_text(&mut ws).starts_with("0{"));
        ws_connect_and_echo(&mut ws, what);
        ws
    };
    let mut subscriber = open("subscriber");
    subscriber
        .send(Message::text("421[\"join\",\"room\"]"))
        .unwrap();
    assert_eq!(ws_text(&mut subscriber), "431[{\"ok\":true}]");
    let mut publisher = open("publisher");

    let mut publish = |n: u32| {
        publisher
            .send(Message::text(format!(
                "42{}[\"publish\",{{\"to\":\"room\",\"event\":\"m\",\"data\":{n}}}]",
                n + 10
            )))
            .unwrap();
        assert_eq!(
            ws_text(&mut publisher),
            format!("43{}[{{\"ok\":true}}]", n + 10)
        );
        let got = ws_text(&mut subscriber);
        assert_eq!(got, format!("42[\"m\",{n}]"));
    };
    let mut n = 0;
    for _ in 0..20 {
        publish(n);
        n += 1;
    }
    // The new pair goes in place of the old files, then SIGHUP.
    std::fs::copy(&next_dir.cert, &cert.cert).unwrap();
    std::fs::copy(&next_dir.key, &cert.key).unwrap();
    sighup(&hub);
    // Publishing goes on while the reload happens.
    let deadline = Instant::now() + IO_TIMEOUT;
    while metric(&hub, &config, "hub_tls_reloads_total", "result=\"ok\"") < 1.0 {
        assert!(Instant::now() < deadline, "no reload counted");
        publish(n);
        n += 1;
    }
    for _ in 0..20 {
        publish(n);
        n += 1;
    }
    assert_eq!(
        served_cert(hub.addr, &config),
        next,
        "a new handshake sees the new certificate"
    );
    assert_eq!(
        served_cert(hub.admin, &config),
        next,
        "so does the admin listener's (it shares the pair)"
    );

    // A broken certificate file: the reload fails, the certificate stays.
    std::fs::write(&cert.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    sighup(&hub);
    wait_reloads(&hub, &config, "failed", 1.0);
    assert_eq!(served_cert(hub.addr, &config), next);
    publish(n);
    assert!(
        hub.stderr().contains(cert.cert()),
        "the failed reload names the file: {}",
        hub.stderr()
    );
    assert_eq!(
        metric(&hub, &config, "hub_tls_reloads_total", "result=\"ok\""),
        1.0
    );
}

/// The live dashboard over the admin listener's TLS: the page, and its
/// event stream (long-lived, written sample by sample: each must come out
/// of rustls, not wait in it for the next).
#[test]
fn the_dashboard_and_its_event_stream_are_served_over_tls() {
    let cert = TestCert::new();
    let mut args = vec!["--shards", "2", "--dashboard-interval", "100"];
    args.extend(cert.args());
    let hub = start_hub(&args, &[]);
    let config = trusting(&cert);
    let page = https_get(hub.admin, &config, "/");
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("<canvas"),
        "not the page: {}",
        page.text()
    );
    let mut stream = connect(hub.admin, &config);
    stream
        .write_all(b"GET /api/stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    stream.flush().unwrap();
    // The history, then samples: at 100 ms each, three come within a
    // second, each in a record of its own (nothing kept back by TLS).
    let mut seen = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let started = Instant::now();
    while String::from_utf8_lossy(&seen).matches("\nid: ").count() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "three samples within 10 s: {}",
            String::from_utf8_lossy(&seen)
        );
        match stream.read(&mut buf) {
            Ok(0) => panic!("the stream ended: {}", String::from_utf8_lossy(&seen)),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
            }
            Err(e) => panic!("reading the stream: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/event-stream"), "{text}");
    assert!(text.contains("event: history"), "{text}");
}

/// A connection past `--max-connections-per-ip` on a TLS listener is held
/// no longer than on a plain one: its handshake and its request share the
/// refusal's second, not the (long) handshake timeout. A client that
/// handshakes at once still reads its 429.
#[test]
fn a_connection_past_the_per_address_limit_is_not_held_for_the_handshake_timeout() {
    let cert = TestCert::new();
    let mut args = vec![
        "--max-connections-per-ip",
        "1",
        "--tls-handshake-timeout",
        "60000",
    ];
    args.extend(cert.args());
    let hub = start_hub(&args, &[]);
    let config = trusting(&cert);
    let mut held = connect(hub.addr, &config);
    polling_open(&mut held);
    // Past the limit: a TLS client is answered 429 over TLS.
    let mut refused = connect(hub.addr, &config);
    assert_eq!(request(&mut refused, "GET", "/", b"").status, 429);
    // Past the limit, a handshake started and never finished: closed well
    // before the 60 s handshake timeout (the read would time out at 5 s).
    let mut stalled = tcp(hub.addr);
    stalled.write_all(&[0x16, 0x03, 0x01]).unwrap();
    let mut rest = Vec::new();
    match stalled.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{rest:?}"),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("a stalled handshake past the limit is still open: {e}"),
    }
    // The connection within the limit is untouched.
    assert_eq!(
        request(
            &mut held,
            "GET",
            &format!("{PATH}?EIO=4&transport=polling"),
            b""
        )
        .status,
        200
    );
}
