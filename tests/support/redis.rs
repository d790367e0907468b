//! A redis-server of a test's own, for the cluster tests: on a free
//! loopback port, in a directory of its own, nothing saved to disk.
//!
//! `redis-server` is found on `PATH` (Debian's package; `scripts/test`
//! installs it when missing), or `HUB_REDIS_SERVER` names another program.
//! A missing redis-server fails the test, saying how to get one: the
//! cluster tests never skip.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::Captured;

/// How long a redis-server gets to answer its first PING.
pub const REDIS_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many free ports are tried when another process takes one first.
const PORT_ATTEMPTS: u32 = 5;

/// A redis-server child process; killed (SIGKILL) and its directory removed
/// on drop.
pub struct RedisServer {
    program: String,
    child: Option<Child>,
    output: Captured,
    port: u16,
    dir: PathBuf,
}

/// The program: `HUB_REDIS_SERVER`, or `redis-server` on `PATH`.
fn redis_program() -> String {
    match std::env::var("HUB_REDIS_SERVER") {
        Ok(p) if !p.trim().is_empty() => p.trim().to_owned(),
        _ => "redis-server".to_owned(),
    }
}

/// A loopback port nothing listens on (as the OS hands it out; another
/// process may take it before redis-server binds it, hence the retries).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener.local_addr().unwrap().port()
}

/// One RESP command on a fresh connection; the raw reply, or why there was
/// none within `timeout`.
pub fn redis_command(port: u16, args: &[&str], timeout: Duration) -> Result<String, String> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    redis_command_bytes(port, &args, timeout)
}

/// As [`redis_command`], with arguments of any bytes (msgpack, garbage).
pub fn redis_command_bytes(port: u16, args: &[&[u8]], timeout: Duration) -> Result<String, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg);
        request.extend_from_slice(b"\r\n");
    }
    stream.write_all(&request).map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while !reply.ends_with(b"\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) => return Err("connection closed before a reply".to_owned()),
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Why a redis-server did not come up: `Err(AddrInUse)` is worth another
/// port; anything else fails the test.
enum SpawnError {
    AddrInUse(String),
    Fatal(String),
}

/// Spawns redis-server on `port` in `dir` and waits until it answers PING.
fn spawn_redis(program: &str, port: u16, dir: &Path) -> Result<(Child, Captured), SpawnError> {
    let port_arg = port.to_string();
    let dir_arg = dir.to_string_lossy().into_owned();
    let args = [
        "--port",
        &port_arg,
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir_arg,
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ];
    let describe = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (redis-server is not installed: `apt-get install redis-server`, which \
                 scripts/test does, or set HUB_REDIS_SERVER to a redis-server 7.x)"
            } else {
                ""
            };
            SpawnError::Fatal(format!("cannot start `{describe}`: {e}{hint}"))
        })?;
    // Both pipes into one log: redis-server writes its log to stdout.
    let output = Captured::read(child.stdout.take().unwrap());
    let errors = Captured::read(child.stderr.take().unwrap());
    let deadline = Instant::now() + REDIS_READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            thread::sleep(Duration::from_millis(50));
            let log = format!("{}{}", output.text(), errors.text());
            let why = format!("`{describe}` exited before answering PING ({status}):\n{log}");
            return Err(if log.contains("Address already in use") {
                SpawnError::AddrInUse(why)
            } else {
                SpawnError::Fatal(why)
            });
        }
        if redis_command(port, &["PING"], Duration::from_millis(500))
            .is_ok_and(|reply| reply.starts_with("+PONG"))
        {
            return Ok((child, output));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SpawnError::Fatal(format!(
                "`{describe}` did not answer PING within {REDIS_READY_TIMEOUT:?}:\n{}",
                output.text()
            )));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

impl RedisServer {
    /// Starts a redis-server on a free loopback port and waits until it
    /// answers PING; panics (fails the test) if it cannot.
    pub fn start() -> RedisServer {
        RedisServer::start_program(&redis_program())
    }

    /// As [`RedisServer::start`], with `program` as the redis-server.
    pub fn start_program(program: &str) -> RedisServer {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hub-redis-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port();
            match spawn_redis(program, port, &dir) {
                Ok((child, output)) => {
                    return RedisServer {
                        program: program.to_owned(),
                        child: Some(child),
                        output,
                        port,
                        dir,
                    }
                }
                Err(SpawnError::AddrInUse(_)) if attempt < PORT_ATTEMPTS => continue,
                Err(SpawnError::AddrInUse(why) | SpawnError::Fatal(why)) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    panic!("{why}");
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// One command (`&["PUBSUB", "NUMSUB", "ch"]`), its raw RESP reply;
    /// panics if the server does not answer.
    pub fn command(&self, args: &[&str]) -> String {
        redis_command(self.port, args, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// As [`RedisServer::command`], with arguments of any bytes.
    pub fn command_bytes(&self, args: &[&[u8]]) -> String {
        redis_command_bytes(self.port, args, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("redis {:?}: {e}", args.first()))
    }

    /// SIGSTOP: the server stays, its connections open, and answers
    /// nothing (a Redis that is slow without end) until [`RedisServer::resume`].
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("redis-server is running");
        // SAFETY: a plain kill(2) of the child this test started.
        let sent = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// What redis-server logged so far.
    pub fn output(&self) -> String {
        self.output.text()
    }

    /// SIGKILL: the server is gone (connections cut, port closed) until
    /// [`RedisServer::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL (if it still runs), then a new, empty redis-server on the
    /// same port, as after a crash without persistence; returns once it
    /// answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + REDIS_READY_TIMEOUT;
        loop {
            match spawn_redis(&self.program, self.port, &self.dir) {
                Ok((child, output)) => {
                    self.child = Some(child);
                    self.output = output;
                    return;
                }
                // The killed server's socket may linger for a moment.
                Err(SpawnError::AddrInUse(_)) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(50));
                }
                Err(SpawnError::AddrInUse(why) | SpawnError::Fatal(why)) => {
                    panic!("restart redis-server on port {}: {why}", self.port)
                }
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
        if thread::panicking() {
            self.output.print_tail("redis-server");
        }
    }
}
