//! What a redis-server did, as `MONITOR` shows it: which publishes of the
//! load it ran, and when a node subscribed again, to tell where a publish
//! that a node missed was lost.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::clients::LOAD_TAG;

/// The commands a redis-server runs, as `MONITOR` shows them (one line
/// each, bytes escaped), read on a thread: where a publish was lost.
pub(crate) struct Monitor {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Monitor {
    pub(crate) fn start(port: u16) -> Monitor {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("MONITOR on port {port}: {e}"));
        stream.write_all(b"*1\r\n$7\r\nMONITOR\r\n").unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(stream).split(b'\n') {
                let Ok(line) = line else { break };
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&line).trim_end().to_owned());
            }
        });
        Monitor { lines }
    }

    pub(crate) fn all(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub(crate) fn tail(&self, n: usize) -> Vec<String> {
        let lines = self.all();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }

    /// The load numbers of the publishes Redis ran.
    pub(crate) fn load_numbers(&self) -> std::collections::HashSet<u64> {
        numbers_in(&self.all())
            .into_iter()
            .map(|(_, n)| n)
            .collect()
    }
}

/// (line index, load number) of each publish of the load in MONITOR lines.
pub(crate) fn numbers_in(lines: &[String]) -> Vec<(usize, u64)> {
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("PUBLISH"))
        .filter_map(|(i, l)| {
            let at = l.find(LOAD_TAG)? + LOAD_TAG.len();
            Some((i, l.get(at..at + 6)?.parse().ok()?))
        })
        .collect()
}

/// Consecutive numbers as runs `(first, last)`, for messages.
pub(crate) fn runs(numbers: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &n in numbers {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == n => *last = n,
            _ => out.push((n, n)),
        }
    }
    out
}

/// The index of the MONITOR line where node `uid`'s subscriber connection
/// subscribed again to what carries the load (`PSUBSCRIBE socket.io#/#*`;
/// sharded: `SSUBSCRIBE socket.io#/#load#`): its address from the line
/// subscribing its own channel, which names it.
pub(crate) fn resubscribed_at(lines: &[String], mode: &str, uid: &str) -> Option<usize> {
    let addr_of = |line: &str| -> Option<String> {
        let start = line.find('[')?;
        let end = line[start..].find(']')? + start;
        line[start..end].split(' ').nth(1).map(str::to_owned)
    };
    let own = lines.iter().find(|l| l.contains(&format!("#{uid}#\"")))?;
    let addr = addr_of(own)?;
    let wanted = match mode {
        "classic" => "\"PSUBSCRIBE\" \"socket.io#/#*\"",
        _ => "\"SSUBSCRIBE\" \"socket.io#/#load#\"",
    };
    lines
        .iter()
        .position(|l| l.contains(wanted) && addr_of(l).as_deref() == Some(&addr))
}
