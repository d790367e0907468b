//! The server processes of the fault tests: `hub` or the fault server,
//! their admin API's metrics, their descriptors and TCP sockets.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;
use crate::{PING_INTERVAL, PING_TIMEOUT};

/// A server process: the `hub` binary or the fault server, with its admin
/// listener; killed when dropped (its stderr tail printed if the test failed).
pub(crate) struct Proc {
    pub(crate) name: &'static str,
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) stderr: Arc<Mutex<Vec<u8>>>,
}

/// The short heartbeat every fault test's server runs with unless told.
pub(crate) fn heartbeat_args() -> Vec<String> {
    vec![
        "--ping-interval".into(),
        PING_INTERVAL.as_millis().to_string(),
        "--ping-timeout".into(),
        PING_TIMEOUT.as_millis().to_string(),
    ]
}

impl Proc {
    /// `hub --shards N` on loopback, free ports, short heartbeats (unless
    /// `args` set them), plus `args`.
    pub(crate) fn hub(shards: usize, args: &[&str]) -> Proc {
        let mut all: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--port".into(),
            "0".into(),
            "--shards".into(),
            shards.to_string(),
        ];
        if !args.contains(&"--ping-interval") {
            all.extend(heartbeat_args());
        }
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        Proc::spawn("hub", hub_command(&all, &[]))
    }

    /// The fault server, `--shards N`, short heartbeats (unless `args` set
    /// them), plus `args`.
    pub(crate) fn fault_server(shards: usize, args: &[&str]) -> Proc {
        let mut command = Command::new(fault_server_path());
        command.args(["--port", "0", "--shards", &shards.to_string()]);
        if !args.contains(&"--ping-interval") {
            command.args(heartbeat_args());
        }
        command.args(args);
        Proc::spawn("fault_server", command)
    }

    pub(crate) fn spawn(name: &'static str, mut command: Command) -> Proc {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        {
            let mut pipe = child.stderr.take().unwrap();
            let stderr = stderr.clone();
            thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    stderr.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            });
        }
        // Both print `listening on A` and `admin listening on B`, in either order.
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let (mut addr, mut admin) = (None, None);
        while addr.is_none() || admin.is_none() {
            let line = rx.recv_timeout(READY_TIMEOUT).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "{name} did not say where it listens; stderr:\n{}",
                    String::from_utf8_lossy(&stderr.lock().unwrap())
                )
            });
            if let Some(a) = line.strip_prefix("admin listening on ") {
                admin = Some(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("listening on ") {
                addr = Some(a.parse().unwrap());
            }
        }
        Proc {
            name,
            child,
            addr: addr.unwrap(),
            admin: admin.unwrap(),
            stderr,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The sum over shards of a metric.
    pub(crate) fn metric(&self, name: &str) -> f64 {
        let mut conn = Conn::open(self.admin);
        let text = conn.request("GET", "/metrics", &[], b"").text();
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Engine.IO sessions open.
    pub(crate) fn sessions(&self) -> u64 {
        self.metric("hub_connections") as u64
    }

    /// Descriptors the process holds.
    pub(crate) fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|dir| dir.count())
            .unwrap_or(0)
    }

    pub(crate) fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}); stderr:\n{}",
                self.name,
                self.stderr()
            );
        }
    }

    /// Nothing went to the default panic hook: every panic was contained.
    pub(crate) fn assert_no_uncaught_panic(&self) {
        let stderr = self.stderr();
        assert!(
            !stderr
                .lines()
                .any(|l| l.starts_with("thread '") && l.contains("panicked")),
            "{}: a panic escaped:\n{stderr}",
            self.name
        );
        assert!(!stderr.contains("died"), "{}: {stderr}", self.name);
    }

    /// The descriptors of client connections: TCP sockets on the serving
    /// port that are not its listeners. (The process's other descriptors,
    /// eventfds and io_uring instances, come and go with its executors.)
    pub(crate) fn client_sockets(&self) -> usize {
        self.tcp_sockets()
            .iter()
            .filter(|s| s.local.port() == self.addr.port() && s.state != "LISTEN")
            .count()
    }

    /// The process's sockets connected to one of `peers`.
    pub(crate) fn sockets_from(&self, peers: &[SocketAddr]) -> Vec<TcpSocket> {
        self.tcp_sockets()
            .into_iter()
            .filter(|s| peers.contains(&s.remote))
            .collect()
    }

    /// Waits until `f()` holds, within `within`; says how long it took.
    pub(crate) fn wait_for(
        &self,
        within: Duration,
        what: &str,
        mut f: impl FnMut(&Proc) -> bool,
    ) -> Duration {
        let started = Instant::now();
        while !f(self) {
            assert!(
                started.elapsed() < within,
                "{}: {what}: not within {within:?}; sessions {}, client sockets:\n{}",
                self.name,
                self.sessions(),
                self.describe_fds()
            );
            thread::sleep(Duration::from_millis(20));
        }
        started.elapsed()
    }

    /// What the descriptors are, for a failure message: the TCP sockets
    /// with their addresses, state and queues, then the others.
    pub(crate) fn describe_fds(&self) -> String {
        let mut out: Vec<String> = self
            .tcp_sockets()
            .iter()
            .map(|s| format!("{s:?}"))
            .collect();
        let others = std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|p| p.display().to_string())
            .filter(|p| !p.starts_with("socket:"));
        let mut others: Vec<String> = others.collect();
        others.sort();
        out.push(format!("and {} others: {}", others.len(), others.join(" ")));
        out.join("\n")
    }

    /// The process's IPv4 TCP sockets (from `/proc/net/tcp`, matched by inode).
    pub(crate) fn tcp_sockets(&self) -> Vec<TcpSocket> {
        let inodes: Vec<u64> = std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter_map(|p| {
                let p = p.display().to_string();
                p.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
            })
            .collect();
        let table =
            std::fs::read_to_string(format!("/proc/{}/net/tcp", self.pid())).unwrap_or_default();
        table
            .lines()
            .skip(1)
            .filter_map(TcpSocket::parse)
            .filter(|s| inodes.contains(&s.inode))
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let stderr = self.stderr();
            let lines: Vec<&str> = stderr.lines().collect();
            eprintln!(
                "--- {} stderr (last 40 lines) ---\n{}\n---",
                self.name,
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

/// A line of `/proc/net/tcp`.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug, in failure messages
pub(crate) struct TcpSocket {
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    pub(crate) state: &'static str,
    /// Bytes written and not yet acknowledged by the peer.
    pub(crate) send_queue: u64,
    /// Bytes received and not yet read.
    pub(crate) receive_queue: u64,
    pub(crate) inode: u64,
}

impl TcpSocket {
    pub(crate) fn parse(line: &str) -> Option<TcpSocket> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let addr = |text: &str| -> Option<SocketAddr> {
            let (ip, port) = text.split_once(':')?;
            let ip = u32::from_str_radix(ip, 16).ok()?;
            let port = u16::from_str_radix(port, 16).ok()?;
            Some(SocketAddr::from((u32::from_be(ip).to_be_bytes(), port)))
        };
        let (tx, rx) = fields.get(4)?.split_once(':')?;
        Some(TcpSocket {
            local: addr(fields.get(1)?)?,
            remote: addr(fields.get(2)?)?,
            state: match *fields.get(3)? {
                "01" => "ESTABLISHED",
                "06" => "TIME_WAIT",
                "07" => "CLOSE",
                "08" => "CLOSE_WAIT",
                "0A" => "LISTEN",
                "04" => "FIN_WAIT1",
                "05" => "FIN_WAIT2",
                "09" => "LAST_ACK",
                "0B" => "CLOSING",
                _ => "other",
            },
            send_queue: u64::from_str_radix(tx, 16).ok()?,
            receive_queue: u64::from_str_radix(rx, 16).ok()?,
            inode: fields.get(9)?.parse().ok()?,
        })
    }
}

/// `cargo test` does not build examples for integration tests: build the
/// fault server once per test binary, so that it is never stale.
pub(crate) fn fault_server_path() -> std::path::PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "hub", "--example", "fault_server"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo to build the fault server");
        assert!(status.success(), "building the fault server failed");
    });
    let target = match std::env::var("CARGO_TARGET_DIR") {
        Ok(dir) if !dir.is_empty() => std::path::PathBuf::from(dir),
        _ => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    };
    target.join("debug/examples/fault_server")
}

impl Proc {
    /// `hub --shards 2` with `args` only (its own heartbeat defaults).
    pub(crate) fn hub_plain(args: &[&str]) -> Proc {
        let mut all = vec!["--bind", "127.0.0.1", "--port", "0", "--shards", "2"];
        all.extend_from_slice(args);
        Proc::spawn("hub", hub_command(&all, &[]))
    }

    /// Resident memory, in KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}
