//! The server's own cost, read from /proc: CPU time and resident memory,
//! of one process or summed over several (one per node of a cluster).

use std::fs;
use std::time::{Duration, Instant};

/// CPU seconds the process has used, user and system, all threads.
pub fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e} (is --server-pid right?)"))?;
    // The command name may hold spaces; the fields after it do not.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `after` starts at field 3.
    let ticks = |i: usize| -> Result<u64, String> {
        fields
            .get(i - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("/proc/{pid}/stat: no field {i}"))
    };
    let total = ticks(14)? + ticks(15)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(total as f64 / hz)
}

/// Resident memory in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64, String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e} (is --server-pid right?)"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("/proc/{pid}/status has no VmRSS"))
}

/// CPU seconds of each of `pids`, in order.
pub fn cpu_seconds_each(pids: &[u32]) -> Result<Vec<f64>, String> {
    pids.iter().map(|&pid| cpu_seconds(pid)).collect()
}

/// Resident memory of all of `pids` together; `None` when there are none.
pub fn rss_bytes_sum(pids: &[u32]) -> Result<Option<u64>, String> {
    if pids.is_empty() {
        return Ok(None);
    }
    pids.iter()
        .map(|&pid| rss_bytes(pid))
        .sum::<Result<u64, String>>()
        .map(Some)
}

/// The servers' RSS, summed over their processes, sampled at a fixed
/// interval from the start of a run.
pub struct RssCurve {
    pids: Vec<u32>,
    every: Duration,
    started: Instant,
    next: Instant,
    /// Seconds since the start, bytes.
    pub samples: Vec<(f64, u64)>,
    /// Set when a process could not be read (it has exited, most likely).
    pub gone: Option<String>,
    /// When that was noticed, in seconds since the start.
    pub gone_at: Option<f64>,
}

impl RssCurve {
    /// Starts with a first sample now; `pids` is not empty.
    pub fn start(pids: Vec<u32>, every: Duration) -> RssCurve {
        let now = Instant::now();
        let mut curve = RssCurve {
            pids,
            every,
            started: now,
            next: now,
            samples: Vec::new(),
            gone: None,
            gone_at: None,
        };
        curve.poll();
        curve
    }

    /// Samples if the next sample is due.
    pub fn poll(&mut self) {
        if Instant::now() >= self.next {
            self.next += self.every;
            self.sample();
        }
    }

    /// Samples now, and returns the value.
    pub fn sample(&mut self) -> Option<u64> {
        if self.gone.is_some() {
            return None;
        }
        match rss_bytes_sum(&self.pids) {
            Ok(None) => None,
            Ok(Some(bytes)) => {
                let at = self.started.elapsed().as_secs_f64();
                self.samples.push(((at * 10.0).round() / 10.0, bytes));
                Some(bytes)
            }
            Err(e) => {
                self.gone = Some(e);
                self.gone_at = Some(self.started.elapsed().as_secs_f64());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(rss_bytes(pid).unwrap() > 0);
        assert!(cpu_seconds(u32::MAX).unwrap_err().contains("--server-pid"));
    }

    #[test]
    fn rss_curve_samples_at_its_interval_and_notes_a_gone_process() {
        let mut curve = RssCurve::start(vec![std::process::id()], Duration::from_secs(3600));
        assert_eq!(curve.samples.len(), 1, "a first sample at the start");
        curve.poll();
        assert_eq!(curve.samples.len(), 1, "the next is an hour away");
        assert!(curve.sample().is_some());
        assert_eq!(curve.samples.len(), 2);
        let mut gone = RssCurve::start(vec![std::process::id(), u32::MAX], Duration::from_secs(1));
        assert!(gone.samples.is_empty());
        let why = gone.gone.as_deref().unwrap();
        assert!(why.contains("--server-pid") && why.contains(&u32::MAX.to_string()));
        assert!(gone.gone_at.is_some());
        assert_eq!(gone.sample(), None);
    }

    #[test]
    fn several_processes_are_summed() {
        let me = std::process::id();
        let one = rss_bytes_sum(&[me]).unwrap().unwrap();
        // The same process twice is twice its RSS (give or take its growth
        // between the reads): the sum is over every pid given.
        let twice = rss_bytes_sum(&[me, me]).unwrap().unwrap();
        assert!(twice >= one + one / 2, "{one} {twice}");
        assert_eq!(rss_bytes_sum(&[]).unwrap(), None);
        assert!(rss_bytes_sum(&[me, u32::MAX]).is_err());
        let cpu = cpu_seconds_each(&[me, me]).unwrap();
        assert_eq!(cpu.len(), 2);
        assert!(cpu_seconds_each(&[u32::MAX]).is_err());
    }
}
