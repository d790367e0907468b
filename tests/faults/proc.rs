//! The server processes of the fault tests: `hub` or the fault server with
//! the fault tests' short heartbeats, and their client connections as
//! `/proc` shows them (descriptors and TCP sockets).

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;
use crate::{PING_INTERVAL, PING_TIMEOUT};

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
        let shards = shards.to_string();
        let mut all: Vec<String> = vec!["--shards".into(), shards];
        if !args.contains(&"--ping-interval") {
            all.extend(heartbeat_args());
        }
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        start_hub(&all, &[])
    }

    /// The fault server, `--shards N`, short heartbeats (unless `args` set
    /// them), plus `args`.
    pub(crate) fn fault_server(shards: usize, args: &[&str]) -> Proc {
        let mut command = std::process::Command::new(example("fault_server"));
        command.args(["--port", "0", "--shards", &shards.to_string()]);
        if !args.contains(&"--ping-interval") {
            command.args(heartbeat_args());
        }
        command.args(args);
        Proc::spawn("fault_server", command)
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
        eventually_or(
            within,
            || f(self),
            || {
                format!(
                    "{}: {what}: not within {within:?}; sessions {}, client sockets:\n{}",
                    self.name,
                    self.sessions(),
                    self.describe_fds()
                )
            },
        )
    }

    /// What the descriptors are, for a failure message: the TCP sockets
    /// with their addresses, state and queues, then the others.
    pub(crate) fn describe_fds(&self) -> String {
        let mut out: Vec<String> = self
            .tcp_sockets()
            .iter()
            .map(|s| format!("{s:?}"))
            .collect();
        let others = self
            .fd_links()
            .into_iter()
            .filter(|p| !p.starts_with("socket:"));
        let mut others: Vec<String> = others.collect();
        others.sort();
        out.push(format!("and {} others: {}", others.len(), others.join(" ")));
        out.join("\n")
    }

    /// What each of the process's descriptors points at (`socket:[inode]`,
    /// `anon_inode:[eventfd]`, a path).
    fn fd_links(&self) -> Vec<String> {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|p| p.display().to_string())
            .collect()
    }

    /// The process's IPv4 TCP sockets (from `/proc/net/tcp`, matched by inode).
    pub(crate) fn tcp_sockets(&self) -> Vec<TcpSocket> {
        let inodes: Vec<u64> = self
            .fd_links()
            .iter()
            .filter_map(|p| p.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok())
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
