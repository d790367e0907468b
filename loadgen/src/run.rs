//! The main thread: starts the shards, steers the phases, shows progress
//! and gathers the summary.

use std::io::{BufRead, IsTerminal, Write};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;

use crate::args::{Args, Scenario};
use crate::conn::Spec;
use crate::conn::TlsClient;
use crate::output::HistLog;
use crate::placement::ClientPlacement;
use crate::procfs::{self, RssCurve};
use crate::report::{Latency, ServerCost, Summary, UrlReport};
use crate::scenario;
use crate::shard::{new_histogram, now_ns, Control, Phase, Shard};
use crate::stats::{Cause, Snapshot};
use crate::target::Target;
use crate::wire::packet;

mod churn;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Setup(String),
    #[error("no client could connect to {urls}: {cause} ({count} of {total} failed)")]
    Unreachable {
        /// Every --url, space-separated.
        urls: String,
        cause: &'static str,
        count: u64,
        total: usize,
    },
    #[error("loadgen shard {0} failed: {1}")]
    Shard(usize, String),
}

/// Everything the run produced.
pub struct Outcome {
    pub summary: Summary,
    /// Latency over the measured window.
    pub latency: Histogram<u64>,
}

pub fn run(args: Args) -> Result<Outcome, RunError> {
    let targets = args
        .urls
        .iter()
        .map(|url| {
            let target = Target::parse(url)?;
            let tls = match &target.tls_name {
                Some(name) => Some(TlsClient::new(name, args.trust())?),
                None => None,
            };
            Ok((target, tls))
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(RunError::Setup)?;
    let placement = ClientPlacement::of(&args);
    let shards = args.shard_count();
    let args = Arc::new(args);
    now_ns(); // fix the clock's origin before any thread reads it
    let servers = args.server_pids.as_slice();
    let rss_before = procfs::rss_bytes_sum(servers).map_err(RunError::Setup)?;
    let mut hist_log = args
        .hist
        .as_ref()
        .map(|path| HistLog::create(path))
        .transpose()
        .map_err(RunError::Setup)?;

    let (tx, intervals) = crossbeam_channel::unbounded();
    let churn_publishers = if args.scenario == Scenario::Churn {
        args.publishers
    } else {
        0
    };
    let control = Arc::new(Control::new(
        shards,
        args.rooms,
        churn_publishers,
        targets.len(),
        tx,
    ));
    // The servers' RSS over the whole churn run, setup and drain included.
    let mut rss_curve = (args.scenario == Scenario::Churn && !servers.is_empty())
        .then(|| RssCurve::start(servers.to_vec(), args.rss_every));
    if args.scenario == Scenario::Connect {
        // Handshakes are what connect measures: all of them count.
        let _ = control.window.set((0, u64::MAX));
    }
    let io_memory = ((4 << 20) / shards).clamp(256 << 10, 1 << 20);
    let mut handles = Vec::with_capacity(shards);
    for id in 0..shards {
        let args = args.clone();
        let control = control.clone();
        let targets = targets.clone();
        let handle = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("loadgen-{id}"))
            .io_memory(io_memory)
            .spawn(move || async move {
                shard_main(id, shards, args, control, targets, placement).await
            })
            .map_err(|e| RunError::Shard(id, e.to_string()))?;
        handles.push(handle);
    }

    let mut progress = Progress::new(&args, control.clone());
    let total = args.total_clients();

    // Setup: every client connects (and subscribers join) or gives up.
    let setup_start = Instant::now();
    let mut last_settled = (0, Instant::now());
    loop {
        let s = progress.tick("setup", &intervals, hist_log.as_mut());
        if let Some(curve) = rss_curve.as_mut() {
            curve.poll();
        }
        if s.settled as usize >= total {
            break;
        }
        if s.settled != last_settled.0 {
            last_settled = (s.settled, Instant::now());
        } else if last_settled.1.elapsed() > args.timeout * 3 {
            break; // stuck: count what did not settle as failed below
        }
    }
    let setup = Snapshot::sum(&control.counters);
    let setup_time = setup_start.elapsed().as_secs_f64();
    if setup.connects == 0 {
        control.set_phase(Phase::Stop);
        join(handles)?;
        progress.finish();
        let (cause, count) = Cause::ALL
            .iter()
            .map(|&c| (c, setup.errors[c as usize]))
            .max_by_key(|&(_, n)| n)
            .unwrap_or((Cause::ConnectFailed, 0));
        return Err(RunError::Unreachable {
            urls: args.urls.join(" "),
            cause: cause.name(),
            count,
            total,
        });
    }
    let sizes = control
        .room_joins
        .iter()
        .map(|n| n.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    let _ = control.room_sizes.set(sizes);
    if args.scenario == Scenario::Churn {
        return churn::phases(churn::Started {
            args,
            control,
            handles,
            progress,
            intervals,
            hist_log,
            setup,
            rss_before,
            rss_curve,
        });
    }

    // Run: warmup, then the measured window, then the drain.
    let mut summary_window = (setup, setup, setup_time);
    // Each server's CPU seconds at the window's edges; connect has no window.
    let mut cpu = (Vec::new(), Vec::new());
    let mut rss_after = rss_before;
    if args.scenario != Scenario::Connect {
        mark(&args, "warmup start");
        let start = now_ns();
        let warm_end = start + args.warmup.as_nanos() as u64;
        let end = warm_end + args.duration.as_nanos() as u64;
        let _ = control.window.set((warm_end, end));
        control.set_phase(Phase::Run);
        let mut begin = None;
        while now_ns() < end {
            let s = progress.tick(
                if now_ns() < warm_end { "warmup" } else { "run" },
                &intervals,
                hist_log.as_mut(),
            );
            if begin.is_none() && now_ns() >= warm_end {
                let s = if args.mark_window {
                    mark(&args, "window start");
                    Snapshot::sum(&control.counters)
                } else {
                    s
                };
                begin = Some((s, cpu_now(servers)?, Instant::now()));
            }
        }
        let (first, cpu_first, first_at) = match begin {
            Some(b) => b,
            None => {
                mark(&args, "window start");
                let s = Snapshot::sum(&control.counters);
                (s, cpu_now(servers)?, Instant::now())
            }
        };
        mark(&args, "window end");
        let last = Snapshot::sum(&control.counters);
        cpu = (cpu_first, cpu_now(servers)?);
        // The snapshots' own times, a few milliseconds off the window's edges.
        let seconds = first_at.elapsed().as_secs_f64();
        if args.scenario == Scenario::Idle {
            rss_after = procfs::rss_bytes_sum(servers).map_err(RunError::Setup)?;
        }
        summary_window = (first, last, seconds);
        control.set_phase(Phase::Drain);
        let drain_end = Instant::now() + args.drain;
        while Instant::now() < drain_end
            && matches!(args.scenario, Scenario::Echo | Scenario::Fanout)
        {
            let s = progress.tick("drain", &intervals, hist_log.as_mut());
            let timeouts = s.errors[Cause::AckTimeout as usize];
            let acked = s.acks + timeouts >= s.sent;
            let delivered =
                args.scenario != Scenario::Fanout || s.deliveries + s.unchecked >= s.expected;
            if acked && delivered {
                break;
            }
        }
    }
    let end = Snapshot::sum(&control.counters);
    let measured_hist = stop(&control, handles, &intervals, &progress, hist_log)?;

    let (first, last, seconds) = summary_window;
    let per_sec = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / seconds.max(1e-9);
    let deliveries_per_sec = per_sec(first.deliveries, last.deliveries);
    let acks_per_sec = per_sec(first.acks, last.acks);
    let measured_server = !servers.is_empty() && args.scenario != Scenario::Connect;
    let server_cost = measured_server.then(|| {
        let cpu_s_by_pid: Vec<f64> = cpu.1.iter().zip(&cpu.0).map(|(b, a)| b - a).collect();
        let cpu_s: f64 = cpu_s_by_pid.iter().sum();
        let per_cpu = |n: f64| (cpu_s > 0.0).then(|| n * seconds / cpu_s);
        ServerCost {
            pids: servers.to_vec(),
            cpu_s,
            cpu_s_by_pid,
            cores_busy: cpu_s / seconds.max(1e-9),
            deliveries_per_cpu_s: (args.scenario == Scenario::Fanout)
                .then(|| per_cpu(deliveries_per_sec))
                .flatten(),
            acks_per_cpu_s: (args.scenario == Scenario::Echo)
                .then(|| per_cpu(acks_per_sec))
                .flatten(),
            rss_before_bytes: rss_before.unwrap_or(0),
            rss_after_bytes: rss_after.unwrap_or(0),
        }
    });
    let connect_failures = (total as u64).saturating_sub(setup.connects);
    let lost = match args.scenario {
        Scenario::Fanout => end.expected.saturating_sub(end.deliveries + end.unchecked),
        Scenario::Echo => end.sent.saturating_sub(end.acks),
        _ => 0,
    };
    let errors = errors_by_cause(&end, &setup, total);
    let summary = Summary {
        scenario: args.scenario,
        transport: args.transport,
        urls: url_reports(&args, &placement, &control),
        publishers_on: args.publishers_on,
        clients: args.clients,
        publishers: if args.scenario == Scenario::Fanout {
            args.publishers
        } else {
            0
        },
        rooms: if args.scenario == Scenario::Fanout {
            args.rooms
        } else {
            0
        },
        loadgen_shards: shards,
        duration_s: seconds,
        warmup_s: if args.scenario == Scenario::Connect {
            0.0
        } else {
            args.warmup.as_secs_f64()
        },
        connects: setup.connects,
        connect_failures,
        connects_per_sec: setup.connects as f64 / setup_time.max(1e-9),
        sent: last.sent - first.sent,
        sent_per_sec: per_sec(first.sent, last.sent),
        acks: last.acks - first.acks,
        acks_per_sec,
        deliveries: last.deliveries - first.deliveries,
        deliveries_per_sec,
        expected_deliveries: end.expected,
        lost,
        duplicated: end.duplicated,
        unchecked: end.unchecked,
        errors,
        latency_us: Latency::of(&measured_hist),
        server: server_cost,
        server_rss_bytes_per_conn: match (args.scenario, rss_before, rss_after) {
            (Scenario::Idle, Some(before), Some(after)) if setup.connects > 0 => {
                Some((after as f64 - before as f64) / setup.connects as f64)
            }
            _ => None,
        },
        churn: None,
    };
    Ok(Outcome {
        summary,
        latency: measured_hist,
    })
}

/// With --mark-window, one line on stderr (`loadgen: {edge}`), then a wait
/// for a line (or the end) of stdin before the snapshot at that edge is
/// taken: scripts/instructions zeroes or dumps callgrind's counts and then
/// answers, so the window counted here lies within the one it counted, off
/// by the return of its answer only. The clients keep running meanwhile.
fn mark(args: &Args, edge: &str) {
    if !args.mark_window {
        return;
    }
    {
        let mut err = std::io::stderr().lock();
        if err.is_terminal() && !args.quiet {
            let _ = writeln!(err); // off the live progress line
        }
        let _ = writeln!(err, "loadgen: {edge}");
        let _ = err.flush();
    }
    let _ = std::io::stdin().lock().read_line(&mut String::new());
}

/// Stops the shards; the latency they measured over the window. Writes
/// the last intervals to the histogram log and closes it.
fn stop(
    control: &Control,
    handles: Vec<glommio::ExecutorJoinHandle<Histogram<u64>>>,
    intervals: &crossbeam_channel::Receiver<Histogram<u64>>,
    progress: &Progress,
    mut hist_log: Option<HistLog>,
) -> Result<Histogram<u64>, RunError> {
    control.set_phase(Phase::Stop);
    let mut measured = new_histogram();
    for hist in join(handles)? {
        measured.add(&hist).expect("same bounds");
    }
    while let Ok(h) = intervals.try_recv() {
        if let Some(log) = hist_log.as_mut() {
            log.write(&h);
        }
    }
    progress.finish();
    if let Some(log) = hist_log.as_mut() {
        log.finish().map_err(RunError::Setup)?;
    }
    Ok(measured)
}

/// The errors of the run by cause, the clients that never settled within
/// the setup wait (of `clients` in all) counted as connect timeouts.
fn errors_by_cause(
    end: &Snapshot,
    setup: &Snapshot,
    clients: usize,
) -> std::collections::BTreeMap<&'static str, u64> {
    let mut errors: std::collections::BTreeMap<&'static str, u64> = Cause::ALL
        .iter()
        .map(|&c| (c.name(), end.errors[c as usize]))
        .collect();
    let unsettled = (clients as u64).saturating_sub(setup.settled);
    *errors.entry(Cause::ConnectTimeout.name()).or_default() += unsettled;
    errors
}

/// Each server's CPU seconds now, in --server-pid order.
fn cpu_now(servers: &[u32]) -> Result<Vec<f64>, RunError> {
    procfs::cpu_seconds_each(servers).map_err(RunError::Setup)
}

/// Every --url with the clients placed on it and what their connects came to.
fn url_reports(args: &Args, placement: &ClientPlacement, control: &Control) -> Vec<UrlReport> {
    let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    placement
        .plan(args)
        .into_iter()
        .enumerate()
        .map(|(i, planned)| UrlReport {
            url: args.urls[i].clone(),
            clients: planned.clients,
            publishers: planned.publishers,
            connects: load(&control.url_connects[i]),
            connect_failures: load(&control.url_connect_failures[i]),
        })
        .collect()
}

fn join(
    handles: Vec<glommio::ExecutorJoinHandle<Histogram<u64>>>,
) -> Result<Vec<Histogram<u64>>, RunError> {
    handles
        .into_iter()
        .enumerate()
        .map(|(id, h)| h.join().map_err(|e| RunError::Shard(id, e.to_string())))
        .collect()
}

async fn shard_main(
    id: usize,
    shards: usize,
    args: Arc<Args>,
    control: Arc<Control>,
    targets: Vec<(Target, Option<TlsClient>)>,
    placement: ClientPlacement,
) -> Histogram<u64> {
    let nsp = packet::namespace_prefix(&args.namespace);
    let connect = packet::connect(&nsp, args.token.as_deref());
    let specs = targets
        .into_iter()
        .map(|(target, tls)| Spec {
            tls,
            addr: target.addr,
            host: target.host,
            path: target.path,
            connect: connect.clone(),
            nsp: nsp.clone(),
            deflate: args.deflate,
        })
        .collect();
    let shard = Rc::new(Shard {
        id,
        specs,
        placement,
        control,
        phase: std::cell::Cell::new(Phase::Setup),
        started: Default::default(),
        gate: glommio::sync::Semaphore::new(args.concurrency as u64),
        measured: std::cell::RefCell::new(new_histogram()),
        interval: std::cell::RefCell::new(new_histogram()),
        args,
    });
    let follower = glommio::spawn_local({
        let shard = shard.clone();
        async move { shard.follow().await }
    });
    let mine: Vec<usize> = (id..shard.args.total_clients()).step_by(shards).collect();
    // --rate paces the connect scenario's connections, shared by the shards.
    let gap = (shard.args.scenario == Scenario::Connect && shard.args.rate > 0.0)
        .then(|| Duration::from_secs_f64(shards as f64 / shard.args.rate));
    let mut tasks = Vec::with_capacity(mine.len());
    let begun = Instant::now();
    for (n, index) in mine.into_iter().enumerate() {
        if let Some(gap) = gap {
            let due = begun + gap * n as u32;
            let now = Instant::now();
            if due > now {
                glommio::timer::sleep(due - now).await;
            }
        }
        if shard.phase.get() == Phase::Stop {
            break;
        }
        tasks.push(glommio::spawn_local(scenario::client(shard.clone(), index)));
    }
    follower.await;
    drop(tasks); // cancels every client and closes its connection
    let measured = std::mem::replace(&mut *shard.measured.borrow_mut(), new_histogram());
    measured
}

/// The live line on stderr, once a second.
struct Progress {
    quiet: bool,
    tty: bool,
    control: Arc<Control>,
    started: Instant,
    next: Instant,
    last: (Snapshot, Instant),
    total: usize,
    interval: Histogram<u64>,
}

impl Progress {
    fn new(args: &Args, control: Arc<Control>) -> Progress {
        Progress {
            quiet: args.quiet,
            tty: std::io::stderr().is_terminal(),
            control,
            started: Instant::now(),
            next: Instant::now() + Duration::from_secs(1),
            last: (Snapshot::default(), Instant::now()),
            total: args.total_clients(),
            interval: new_histogram(),
        }
    }

    /// Sleeps to the next second, prints the line and returns the counters.
    fn tick(
        &mut self,
        phase: &str,
        intervals: &crossbeam_channel::Receiver<Histogram<u64>>,
        log: Option<&mut HistLog>,
    ) -> Snapshot {
        self.wait(Duration::from_millis(50), intervals, log);
        let s = Snapshot::sum(&self.control.counters);
        if Instant::now() >= self.next {
            self.next += Duration::from_secs(1);
            self.print(phase, s);
        }
        s
    }

    fn wait(
        &mut self,
        step: Duration,
        intervals: &crossbeam_channel::Receiver<Histogram<u64>>,
        mut log: Option<&mut HistLog>,
    ) {
        let until = Instant::now() + step;
        while let Ok(h) = intervals.recv_deadline(until) {
            self.interval.add(&h).expect("same bounds");
            if let Some(log) = log.as_mut() {
                log.write(&h);
            }
        }
    }

    fn print(&mut self, phase: &str, s: Snapshot) {
        let (prev, at) = self.last;
        let dt = at.elapsed().as_secs_f64().max(1e-3);
        self.last = (s, Instant::now());
        let p99 = if self.interval.is_empty() {
            "-".to_string()
        } else {
            format!(
                "{:.2}ms",
                self.interval.value_at_quantile(0.99) as f64 / 1e6
            )
        };
        self.interval.reset();
        if self.quiet {
            return;
        }
        let line = format!(
            "[{:>4.0}s] {:<6} open {}/{}  sent {:.0}/s  acks {:.0}/s  deliveries {:.0}/s  p99 {}  errors {}",
            self.started.elapsed().as_secs_f64(),
            phase,
            s.open,
            self.total,
            (s.sent - prev.sent) as f64 / dt,
            (s.acks - prev.acks) as f64 / dt,
            (s.deliveries - prev.deliveries) as f64 / dt,
            p99,
            s.errors_total(),
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.tty && !self.quiet {
            eprintln!();
        }
    }
}
