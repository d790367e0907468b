//! Server processes of the integration tests: the `hub` binary, or an
//! example of the hub library with the same ready lines (the fault server);
//! starting one and reading its ready lines, keeping its stderr, and what a
//! test reads of it: its admin API's metrics and what `/proc` says of it.
//!
//! * [`start_hub`] starts `hub` on loopback with free ports; [`Proc::spawn`]
//!   starts any command that prints `listening on A` and
//!   `admin listening on B`.
//! * [`build_workspace`] builds the workspace's binaries and examples once
//!   per test binary; [`example`] says where a hub example is, built.
//! * [`Captured`] and [`stdout_lines`] read a child's pipes on threads, so
//!   that the child never blocks on a full pipe.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{mpsc, Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use super::{Conn, READY_TIMEOUT};

/// The `hub` binary Cargo built for these tests.
pub const HUB: &str = env!("CARGO_BIN_EXE_hub");

/// `program` with `args`, and of the HUB_* variables only those in `env`:
/// a test's server reads no configuration from the environment the tests
/// run in.
pub fn isolated_command(
    program: impl AsRef<OsStr>,
    args: &[&str],
    env: &[(&str, &str)],
) -> Command {
    let mut command = Command::new(program);
    command.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("HUB_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command
}

/// `hub` with `args`, and of the HUB_* variables only those in `env`.
pub fn hub_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    isolated_command(HUB, args, env)
}

/// The workspace's target directory.
fn target_dir() -> PathBuf {
    match std::env::var("CARGO_TARGET_DIR") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

/// Builds the workspace's binaries, examples and tests, once per test
/// binary and profile (`release`: `--release`): `cargo test` builds no
/// example and no other package's binary for integration tests, and a stale
/// one would test old code. The same build as `cargo test --workspace`
/// (with `-p hub` the features differ, and the hub library and its
/// dependencies were built again: about 50 s of a clean CI run), so after it
/// this finds everything fresh. One test file runs the same way with
/// `cargo test --test NAME` (from the workspace; `-p hub` would select other
/// features, and the two builds would replace each other's artifacts).
pub fn build_workspace(release: bool) {
    static DEBUG: Once = Once::new();
    static RELEASE: Once = Once::new();
    let once = if release { &RELEASE } else { &DEBUG };
    once.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
        let mut command = Command::new(cargo);
        command.args([
            "build",
            "--quiet",
            "--workspace",
            "--bins",
            "--examples",
            "--tests",
        ]);
        if release {
            command.arg("--release");
        }
        let status = command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            // Set for this test by cargo test; in a build's environment it
            // makes ring's build script run again, and ring, rustls and the
            // hub library build again (30 s), then again for the next build
            // without it.
            .env_remove("CARGO_MANIFEST_DIR")
            .status()
            .unwrap_or_else(|e| panic!("run cargo to build the workspace: {e}"));
        assert!(status.success(), "building the workspace failed");
    });
}

/// Where the hub example `name` is, built first ([`build_workspace`]).
pub fn example(name: &str) -> PathBuf {
    build_workspace(false);
    target_dir().join("debug/examples").join(name)
}

/// A child's output, read on a thread to its end and kept to be read.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Reads `pipe` on a thread until it ends.
    pub fn read(mut pipe: impl Read + Send + 'static) -> Captured {
        let captured = Captured::default();
        let sink = captured.0.clone();
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        captured
    }

    /// What was read so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// For a test that failed, once its child is killed: the last 40 lines,
    /// on the test's stderr.
    pub fn print_tail(&self, who: &str) {
        // The reader thread may still hold the last bytes.
        thread::sleep(Duration::from_millis(50));
        let text = self.text();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!(
            "--- {who} stderr (last 40 lines) ---\n{}\n---",
            lines[lines.len().saturating_sub(40)..].join("\n")
        );
    }
}

/// A child's stdout lines, read on a thread that keeps draining the pipe
/// after the lines a test waits for.
pub fn stdout_lines(stdout: ChildStdout) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    rx
}

/// The addresses of the ready lines, one per prefix (`listening on `, ...),
/// in whatever order they come, within [`READY_TIMEOUT`]; what went wrong
/// otherwise.
pub fn ready_addrs(lines: &Receiver<String>, prefixes: &[&str]) -> Result<Vec<SocketAddr>, String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut addrs: Vec<Option<SocketAddr>> = vec![None; prefixes.len()];
    while addrs.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).map_err(|e| match e {
            RecvTimeoutError::Timeout => {
                format!("no line starting {prefixes:?} within {READY_TIMEOUT:?}")
            }
            RecvTimeoutError::Disconnected => {
                format!("its stdout ended before a line starting {prefixes:?}")
            }
        })?;
        let line = line.trim();
        if let Some(i) = prefixes.iter().position(|p| line.starts_with(p)) {
            let addr = line[prefixes[i].len()..].trim();
            addrs[i] = Some(
                addr.parse()
                    .map_err(|e| format!("bad ready line {line:?}: {e}"))?,
            );
        }
    }
    Ok(addrs.into_iter().flatten().collect())
}

/// Kills a child that did not get ready (if it still runs) and fails the
/// test with why, its exit status and its stderr.
pub fn fail_start(child: &mut Child, stderr: &Captured, who: &str, why: &str) -> ! {
    let _ = child.kill();
    let status = child.wait().ok();
    thread::sleep(Duration::from_millis(100));
    panic!(
        "{who}: {why} (exit status: {status:?})\n--- stderr ---\n{}\n--------------",
        stderr.text()
    );
}

/// A server process with an admin listener: the `hub` binary, or a hub
/// example that prints the same ready lines. Killed when dropped (its
/// stderr's tail printed if the test failed).
pub struct Proc {
    /// What it is, in messages: `hub`, `fault_server`.
    pub name: &'static str,
    pub child: Child,
    /// Where it serves clients.
    pub addr: SocketAddr,
    /// Where its admin API listens.
    pub admin: SocketAddr,
    stderr: Captured,
}

/// `hub` on loopback, free ports, `--shards 2` unless `args` say, plus
/// `args`, with only the HUB_* variables of `env`.
pub fn start_hub(args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut all = vec!["--bind", "127.0.0.1", "--port", "0"];
    if !args.contains(&"--shards") {
        all.extend(["--shards", "2"]);
    }
    all.extend_from_slice(args);
    Proc::spawn("hub", hub_command(&all, env))
}

impl Proc {
    /// Starts `command` (stdout and stderr piped) and waits for its ready
    /// lines, `listening on A` and `admin listening on B`, in either order.
    pub fn spawn(name: &'static str, mut command: Command) -> Proc {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stderr = Captured::read(child.stderr.take().unwrap());
        let lines = stdout_lines(child.stdout.take().unwrap());
        let addrs = ready_addrs(&lines, &["listening on ", "admin listening on "])
            .unwrap_or_else(|why| fail_start(&mut child, &stderr, name, &why));
        Proc {
            name,
            child,
            addr: addrs[0],
            admin: addrs[1],
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its stderr so far (the hub's log).
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// The sum over shards of a metric, from `/metrics` on the admin
    /// listener.
    pub fn metric(&self, name: &str) -> f64 {
        self.metric_where(name, "")
    }

    /// The sum over shards of the samples of `name` whose labels contain
    /// `labels` (e.g. `limit="rooms_per_socket"`).
    pub fn metric_where(&self, name: &str, labels: &str) -> f64 {
        let text = Conn::open(self.admin).get("/metrics").text();
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Engine.IO sessions open.
    pub fn sessions(&self) -> u64 {
        self.metric("hub_connections") as u64
    }

    /// Descriptors the process holds.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap_or_else(|e| panic!("{}'s descriptors: {e}", self.name))
            .count()
    }

    /// A field of `/proc/<pid>/status` in kB (`VmRSS`, `VmHWM`).
    pub fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_else(|e| panic!("{}'s status: {e}", self.name));
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    }

    /// Resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kb("VmRSS")
    }

    /// User and system CPU time so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // The fields after the command (in parentheses, which may hold spaces).
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        // utime and stime are fields 14 and 15 of the whole line.
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / per_second)
    }

    /// Panics if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}); stderr:\n{}",
                self.name,
                self.stderr()
            );
        }
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        // SAFETY: a plain kill(2) of the child this test started.
        let sent = unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM: {}", std::io::Error::last_os_error());
    }

    /// Waits for the process to exit, at most `within`; `what` says why it
    /// should have in the failure message.
    pub fn exit_within(&mut self, within: Duration, what: &str) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "{}: {what}: still running after {within:?}",
                self.name
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            self.stderr.print_tail(self.name);
        }
    }
}
