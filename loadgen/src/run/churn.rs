//! The churn scenario's phases after setup: run (subscribers come and go,
//! publishers publish) → drain (publishers stop publishing but keep
//! answering fences; every live subscriber fences and leaves; wait for all
//! of them) → stop. The report covers the whole run, drain included: a
//! life's tally is only known when it ends.

use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;

use super::{errors_by_cause, stop, url_reports, Outcome, Progress, RunError};
use crate::args::Args;
use crate::output::HistLog;
use crate::placement::ClientPlacement;
use crate::procfs::{self, RssCurve};
use crate::report::{ChurnSummary, Disconnects, Latency, RssReport, ServerClosed, Summary};
use crate::shard::{now_ns, Control, Phase};
use crate::stats::{Cause, Snapshot};

/// Where setup left the run.
pub(super) struct Started {
    pub args: Arc<Args>,
    pub control: Arc<Control>,
    pub handles: Vec<glommio::ExecutorJoinHandle<Histogram<u64>>>,
    pub progress: Progress,
    pub intervals: crossbeam_channel::Receiver<Histogram<u64>>,
    pub hist_log: Option<HistLog>,
    pub setup: Snapshot,
    pub rss_before: Option<u64>,
    pub rss_curve: Option<RssCurve>,
}

pub(super) fn phases(started: Started) -> Result<Outcome, RunError> {
    let Started {
        args,
        control,
        handles,
        mut progress,
        intervals,
        mut hist_log,
        setup,
        rss_before,
        mut rss_curve,
    } = started;
    let servers = args.server_pids.as_slice();

    // Run: no warmup; every publish and every life counts.
    let start = now_ns();
    let end = start + args.duration.as_nanos() as u64;
    let _ = control.window.set((start, end));
    control.set_phase(Phase::Run);
    let first = Snapshot::sum(&control.counters);
    // A server that dies during the run is a finding, not a reason to
    // report nothing: the CPU time is then left out.
    let cpu = || {
        (!servers.is_empty())
            .then(|| procfs::cpu_seconds_each(servers).ok())
            .flatten()
    };
    let cpu_first = cpu();
    let began = Instant::now();
    while now_ns() < end {
        progress.tick("run", &intervals, hist_log.as_mut());
        if let Some(curve) = rss_curve.as_mut() {
            curve.poll();
            if curve.gone.is_some() {
                // A server has exited: nothing more to learn; account for what was.
                eprintln!(
                    "loadgen: a server is gone ({}); draining",
                    curve.gone.as_deref().unwrap_or_default()
                );
                break;
            }
        }
    }
    let last = Snapshot::sum(&control.counters);
    let cpu_last = cpu();
    let seconds = began.elapsed().as_secs_f64();

    // Drain: each subscriber may still be connecting and joining (--timeout
    // each), then waits for its fences (twice --timeout).
    control.set_phase(Phase::Drain);
    let give_up = Instant::now() + args.drain + args.timeout * 4;
    loop {
        let s = progress.tick("drain", &intervals, hist_log.as_mut());
        if let Some(curve) = rss_curve.as_mut() {
            curve.poll();
        }
        if s.churn.finished as usize >= args.clients || Instant::now() >= give_up {
            break;
        }
    }
    let total = Snapshot::sum(&control.counters);
    let rss_end = rss_curve.as_mut().and_then(RssCurve::sample);
    let measured = stop(&control, handles, &intervals, &progress, hist_log)?;

    let c = total.churn;
    let disconnects = Disconnects {
        clean: c.clean,
        abrupt: c.abrupt,
        reset: c.reset,
        by_server: c.by_server,
    };
    let ended = disconnects.clean + disconnects.abrupt + disconnects.reset + disconnects.by_server;
    let churn = ChurnSummary {
        subscribers: args.clients,
        lifetime_s: args.lifetime.as_secs_f64(),
        abrupt_ratio: args.abrupt_ratio,
        reset_ratio: args.reset_ratio,
        polling_ratio: args.polling_ratio,
        publishes_sent: total.sent,
        publishes_acked: total.acks,
        publishes_failed: c.failed,
        fences: c.fences,
        expected_deliveries: total.expected,
        delivered: c.delivered,
        lost: c.lost,
        fences_lost: c.fences_lost,
        duplicated: total.duplicated,
        unexpected: c.unexpected,
        misrouted: c.misrouted,
        unsettled: c.unsettled,
        connects: c.connects,
        polling_connects: c.polling_connects,
        server_closed: ServerClosed {
            lives: c.by_server,
            expected: c.closed_expected,
            delivered: c.closed_delivered,
            lost: c.closed_lost,
            duplicated: c.closed_duplicated,
            unexpected: c.closed_unexpected,
        },
        disconnects,
        unfinished: c.connects.saturating_sub(ended),
        server_rss: match (rss_before, rss_curve) {
            (Some(start_bytes), Some(curve)) => Some(RssReport {
                pids: servers.to_vec(),
                start_bytes,
                end_bytes: rss_end,
                peak_bytes: curve.samples.iter().map(|&(_, b)| b).max().unwrap_or(0),
                every_s: args.rss_every.as_secs_f64(),
                curve: curve.samples,
                gone: curve.gone,
                gone_after_s: curve.gone_at,
            }),
            _ => None,
        },
    };
    let per_sec = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds.max(1e-9);
    let errors = errors_by_cause(&total, &setup, args.total_clients());
    let summary = Summary {
        scenario: args.scenario,
        transport: args.transport,
        urls: url_reports(&args, &ClientPlacement::of(&args), &control),
        publishers_on: args.publishers_on,
        clients: args.clients,
        publishers: args.publishers,
        rooms: args.rooms,
        loadgen_shards: control.counters.len(),
        duration_s: seconds,
        warmup_s: 0.0,
        connects: total.connects,
        connect_failures: Cause::ALL
            .iter()
            .filter(|c| c.fails_a_connect())
            .map(|&c| total.errors[c as usize])
            .sum(),
        connects_per_sec: per_sec(first.connects, last.connects),
        sent: total.sent,
        sent_per_sec: per_sec(first.sent, last.sent),
        acks: total.acks,
        acks_per_sec: per_sec(first.acks, last.acks),
        deliveries: total.deliveries,
        deliveries_per_sec: per_sec(first.deliveries, last.deliveries),
        expected_deliveries: churn.expected_deliveries,
        lost: churn.lost,
        duplicated: churn.duplicated,
        unchecked: 0,
        errors,
        latency_us: Latency::of(&measured),
        server: cpu_first.zip(cpu_last).map(|(cpu_first, cpu_last)| {
            let cpu_s_by_pid: Vec<f64> = cpu_last
                .iter()
                .zip(&cpu_first)
                .map(|(b, a)| b - a)
                .collect();
            let cpu_s = cpu_s_by_pid.iter().sum();
            crate::report::ServerCost {
                pids: servers.to_vec(),
                cpu_s,
                cpu_s_by_pid,
                cores_busy: cpu_s / seconds.max(1e-9),
                deliveries_per_cpu_s: None,
                acks_per_cpu_s: None,
                rss_before_bytes: rss_before.unwrap_or(0),
                rss_after_bytes: rss_end.unwrap_or(0),
            }
        }),
        server_rss_bytes_per_conn: None,
        churn: Some(churn),
    };
    Ok(Outcome {
        summary,
        latency: measured,
    })
}
